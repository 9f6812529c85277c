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


class GlobalAvgPool(nn.Module):
    """Mean over every spatial axis: [N, C, *S] -> [N, C]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).mean(dim=2)


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
