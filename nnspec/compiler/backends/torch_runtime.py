"""Helper modules of PyTorch models built by nnspec.

The emitted source carries the source of the helpers it uses, so the two are
the same code.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn


class Residual(nn.Module):
    """branch(x) + shortcut(x); the shortcut defaults to the identity."""

    def __init__(self, branch: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch(x) + self.shortcut(x)


class Merge(nn.Module):
    """Adds, multiplies or concatenates the outputs of branches that all read the input.

    A branch given as None is the identity. `add` and `multiply` broadcast per
    channel: features [N, C] or a map [N, C, 1, ...] against a map [N, C, *S].
    """

    def __init__(
        self, op: str, names: list, *branches: nn.Module | None, dim: int = 1
    ) -> None:
        super().__init__()
        self.op, self.names, self.dim = op, list(names), dim
        for name, branch in zip(names, branches):
            if branch is not None:
                self.add_module(name, branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self._modules[n](x) if n in self._modules else x for n in self.names]
        if self.op == "concat":
            return torch.cat(outs, dim=self.dim)
        rank = max(out.dim() for out in outs)
        outs = [out.reshape(*out.shape, *[1] * (rank - out.dim())) for out in outs]
        result = outs[0]
        for out in outs[1:]:
            result = result + out if self.op == "add" else result * out
        return result


class GlobalPool(nn.Module):
    """Mean or max over the spatial axes of a map [N, C, *S] -> [N, C], or the positions of tokens
    [N, T, D] -> [N, D]; `keep_dims` keeps the pooled axes with size 1."""

    def __init__(
        self, mode: str = "avg", keep_dims: bool = False, tokens: bool = False
    ) -> None:
        super().__init__()
        self.mode, self.keep_dims, self.tokens = mode, keep_dims, tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = (1,) if self.tokens else tuple(range(2, x.dim()))
        if self.mode == "max":
            return x.amax(dim=dims, keepdim=self.keep_dims)
        return x.mean(dim=dims, keepdim=self.keep_dims)


class Slice(nn.Module):
    """Elements start to stop - 1 of one axis."""

    def __init__(self, start: int, stop: int, dim: int = 1) -> None:
        super().__init__()
        self.start, self.stop, self.dim = start, stop, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.narrow(self.dim, self.start, self.stop - self.start)


class ToTokens(nn.Module):
    """A map [N, C, *S] -> tokens [N, prod(S), C]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class ToMap(nn.Module):
    """Tokens [N, T, D] -> a map [N, D, *size], prod(size) == T."""

    def __init__(self, size: tuple) -> None:
        super().__init__()
        self.size = tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *self.size)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each position of a map [N, C, *S] (ConvNeXt's
    LayerNorm2d); the state_dict keys are `weight` and `bias`, as nn.LayerNorm's."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.layer_norm(
            x.movedim(1, -1), self.weight.shape, self.weight, self.bias, self.eps
        )
        return y.movedim(-1, 1)


class LastAxisPReLU(nn.Module):
    """PReLU with one slope per index of the last axis (nn.PReLU's are axis 1)."""

    def __init__(self, num_parameters: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((num_parameters,), 0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, self.weight * x)


class Scale(nn.Module):
    """x times a learned per-channel factor `weight` on axis `dim` (layer scale)."""

    def __init__(self, channels: int, dim: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dim == -1:
            return x * self.weight
        return x * self.weight.reshape(-1, *(1,) * (x.dim() - 1 - self.dim))


class DropPath(nn.Module):
    """Stochastic depth per sample (torchvision's StochasticDepth, mode "row"): in
    training each sample is zeroed with probability p, the others scaled by 1/(1-p);
    the identity in eval mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask.div_(keep)


def sequential(**layers: nn.Module) -> nn.Sequential:
    """An nn.Sequential whose children carry the spec's names."""
    return nn.Sequential(OrderedDict(layers))


def sparse_(
    tensor: torch.Tensor,
    sparsity: float,
    std: float = 0.01,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """nn.init.sparse_, with the zeroed rows also drawn from `generator`.

    PyTorch's own sparse_ picks the zeroed rows from the global generator, so a
    seeded build would not repeat; the distribution here is the same.
    """
    rows, cols = tensor.shape
    num_zeros = math.ceil(sparsity * rows)
    with torch.no_grad():
        tensor.normal_(0, std, generator=generator)
        for col in range(cols):
            order = torch.randperm(rows, generator=generator, device=tensor.device)
            tensor[order[:num_zeros], col] = 0
    return tensor
