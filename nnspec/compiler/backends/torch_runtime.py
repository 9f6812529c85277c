"""Helper modules of PyTorch models built by nnspec.

The emitted source carries the source of the helpers it uses, so the two are
the same code.
"""

from __future__ import annotations

import math
import os
import weakref
from collections import OrderedDict

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from nnspec.compiler.backends.seeding import tensor_seed


class Residual(nn.Module):
    """branch(x) + shortcut(x); the shortcut defaults to the identity."""

    def __init__(self, branch: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.branch, self.shortcut = branch, shortcut or nn.Identity()

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


class GlobalAvgPool(nn.Module):
    """The mean over the spatial axes of a map [N, C, *S] -> [N, C]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=tuple(range(2, x.dim())))


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


class Rescale(nn.Module):
    """x * scale + offset with constants, each one number or one per channel of axis `dim`
    (kept as numbers, not tensors: nothing in the state dict, nothing to initialise)."""

    def __init__(self, scale, offset, dim: int = 1) -> None:
        super().__init__()
        self.scale, self.offset, self.dim = scale, offset, dim

    def _along(self, value, x: torch.Tensor):
        if not isinstance(value, list):
            return value
        value = torch.tensor(value, dtype=x.dtype, device=x.device)
        if self.dim == -1:
            return value
        return value.reshape(-1, *(1,) * (x.dim() - 1 - self.dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._along(self.scale, x) + self._along(self.offset, x)


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


class ClassToken(nn.Module):
    """A learned token `token` [D] prepended to tokens [B, T, D] -> [B, T + 1, D]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.token.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)


class PositionEmbedding(nn.Module):
    """Adds the first T rows of a learned table `weight` [length, D] to tokens [B, T, D]."""

    def __init__(self, length: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(length, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight[: x.shape[1]]


class SelfAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention (batch first) as self-attention on tokens [B, T, D]."""

    def __init__(self, dim: int, heads: int, **options) -> None:
        super().__init__(dim, heads, batch_first=True, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x, x, x, need_weights=False)[0]


class CausalSelfAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention (batch first) as causal self-attention on tokens [B, T, D]:
    each position attends to itself and the positions before it."""

    def __init__(self, dim: int, heads: int, **options) -> None:
        super().__init__(dim, heads, batch_first=True, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device)
        out, _ = super().forward(
            x, x, x, need_weights=False, attn_mask=mask.triu(1), is_causal=True
        )
        return out


class LSTM(nn.LSTM):
    """nn.LSTM (batch first) on tokens [B, T, D]: the top layer's outputs [B, T, H*dirs], or
    (`last`) its final hidden state of each direction, forward first [B, H*dirs] (h_n[-2:]);
    its tensors and state_dict keys are nn.LSTM's."""

    def __init__(
        self,
        size: int,
        hidden: int,
        layers: int = 1,
        bidirectional: bool = False,
        last: bool = False,
    ) -> None:
        super().__init__(
            size,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
        )
        self.last = last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, (h, _) = super().forward(x)
        if not self.last:
            return out
        dirs = 2 if self.bidirectional else 1
        return torch.cat(list(h[-dirs:]), dim=1)


class GRU(nn.GRU):
    """nn.GRU (batch first) on tokens [B, T, D]: the top layer's outputs [B, T, H*dirs], or
    (`last`) its final hidden state of each direction, forward first [B, H*dirs] (h_n[-2:]);
    its tensors and state_dict keys are nn.GRU's."""

    def __init__(
        self,
        size: int,
        hidden: int,
        layers: int = 1,
        bidirectional: bool = False,
        last: bool = False,
    ) -> None:
        super().__init__(
            size,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
        )
        self.last = last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, h = super().forward(x)
        if not self.last:
            return out
        dirs = 2 if self.bidirectional else 1
        return torch.cat(list(h[-dirs:]), dim=1)


class SkipDefaultInit(TorchFunctionMode):
    """While active, modules' constructors draw no random numbers for their default
    initialisation, which the spec's initializers then overwrite: torch.nn.init's
    functions that dispatch to torch function modes (PyTorch's override protocol;
    looked up by the names they have in torch.nn.init when the mode is made) leave
    their tensor as it is; the random draws that the others make with the tensor's
    own methods become fills with a value of the distribution (uniform_: its low
    end, normal_: its mean); torch.rand/randn only allocate. Everything else runs
    unchanged."""

    INIT_FUNCTIONS = ("uniform_", "normal_", "constant_", "kaiming_uniform_")
    FIRST = {torch.Tensor.uniform_: "from", torch.Tensor.normal_: "mean"}

    def __init__(self) -> None:
        super().__init__()
        self.skipped = {getattr(nn.init, name) for name in self.INIT_FUNCTIONS}
        self.random = {torch.rand, torch.randn}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.skipped:
            return args[0] if args else kwargs["tensor"]
        if func in self.FIRST:
            first = args[1] if len(args) > 1 else kwargs.get(self.FIRST[func], 0.0)
            return args[0].fill_(first)
        if func in self.random:
            kwargs.pop("generator", None)
            return torch.empty(*args, **kwargs)
        return func(*args, **kwargs)


class NoDefaultInit:
    """`make(func, args, kwargs)`: func(*args, **kwargs) without the default initialisation of
    the modules it constructs (nnspec's build, which then initialises every tensor once).

    The layers of RESET_ONLY allocate their tensors and initialise them only in
    reset_parameters, the last step of their constructor: an instance attribute stands in
    for that method while the constructor runs (and is removed after it), so their tensors
    are allocated and left as they are, with no torch function mode (a Python call per
    tensor operation). Anything else is called under SkipDefaultInit; the layers of
    RESET_LAST with the method named there stood in for as well (nn.MultiheadAttention's
    xavier_uniform_ would otherwise fill its largest tensor; the mode still keeps the
    layers it constructs inside from drawing).
    """

    RESET_ONLY = (
        nn.modules.conv._ConvNd,
        nn.Linear,
        nn.modules.batchnorm._NormBase,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.RMSNorm,
        nn.Embedding,
        nn.PReLU,
    )
    RESET_LAST = {nn.MultiheadAttention: "_reset_parameters"}

    def __init__(self) -> None:
        self.mode = SkipDefaultInit()
        self.how: dict = {}  # func -> (method stood in for or None, under the mode)

    def __call__(self, func, args, kwargs):
        how = self.how.get(func)
        if how is None:
            how = self.how[func] = self._how(func)
        method, under_mode = how
        if method is None:
            with self.mode:
                return func(*args, **kwargs)
        module = func.__new__(func)
        module.__dict__[method] = _no_reset
        try:
            if under_mode:
                with self.mode:
                    module.__init__(*args, **kwargs)
            else:
                module.__init__(*args, **kwargs)
        finally:
            del module.__dict__[method]
        return module

    def _how(self, func) -> tuple:
        if not isinstance(func, type):
            return None, True
        if issubclass(func, self.RESET_ONLY):
            return "reset_parameters", False
        for cls, method in self.RESET_LAST.items():
            if issubclass(func, cls):
                return method, True
        return None, True


def _no_reset() -> None:
    """What reset_parameters does while NoDefaultInit constructs a layer: nothing."""


def sequential(**layers: nn.Module) -> nn.Sequential:  # children named as in the spec
    return nn.Sequential(OrderedDict(layers))


def checked_sequential(**layers: nn.Module) -> nn.Sequential:
    """sequential(**layers) of names already checked (a spec's: identifiers that shadow no
    attribute of nn.Module, nnspec.names.identifier_problem): the same nn.Sequential,
    without add_module's checks of each name."""
    container = nn.Sequential()
    container._modules.update(layers)
    return container


def spec_init(key: str, path: str, kind: str, **args) -> tuple:
    """One tensor's initializer: state_dict key, spec path (its seed), kind, arguments."""
    return key, path, kind, args


def stream_block(seed: int, index: int, block: torch.Tensor, draw) -> None:
    """Fill `block` with block `index` of a tensor's stream, in place.

    Block `index` holds elements index * 2**16 ... of the tensor's flattened
    (PyTorch-layout) elements: 2**16 of them, fewer in the last block. Its values
    are torch.nn.init's own `draw` ("uniform", "normal" or "trunc_normal", with
    its arguments) on a tensor of that length, from a fresh generator seeded
    with seed + index.
    """
    kind, args = draw
    generator = torch.Generator(block.device).manual_seed(seed + index)
    getattr(nn.init, kind + "_")(block, *args, generator=generator)


_pools: dict = {}  # threads -> a ThreadPoolExecutor of that many workers
DRAWS = ("uniform", "normal", "trunc_normal")  # the kinds that are their stream as it is
PLAIN = (torch.Tensor, nn.Parameter)  # not DTensors (a shard of a stream)


def draw_deferred(tensors: list, threads: int) -> None:
    """Draw whole tensors' streams (seed, numel, draw, flat tensor) on `threads` threads.

    The blocks are independent (each its own generator), so the values do not depend
    on the order or the threads that draw them; PyTorch's kernels release the GIL.
    Each block is drawn with one intra-op thread, as stream_range does.
    """
    size = 2**16
    jobs = [
        (seed, index, flat[index * size : (index + 1) * size], draw)
        for seed, numel, draw, flat in tensors
        for index in range((numel + size - 1) // size)
    ]
    if threads <= 1 or len(jobs) < 2:
        for seed, _, draw, flat in tensors:
            stream_range(seed, flat.numel(), 0, flat.numel(), draw, flat)
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = _pools.get(threads)
    if pool is None:
        pool = _pools[threads] = ThreadPoolExecutor(threads, "nnspec-draw")
    jobs.sort(key=lambda job: -job[2].numel())  # the largest first: even finishing times
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        list(pool.map(lambda job: stream_block(*job), jobs))
    finally:
        torch.set_num_threads(before)


def stream_range(seed, numel, start, stop, draw, out) -> None:
    """Write elements start..stop of a tensor's stream (numel elements) into `out`.

    The blocks are drawn with one intra-op thread: the draws themselves are serial,
    and splitting a block's few element-wise operations (trunc_normal's) between
    threads costs more than it saves, far more on a busy machine. The values do not
    depend on the number of threads.
    """
    size = 2**16
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for index in range(start // size, (stop - 1) // size + 1):
            first = index * size
            length = min(size, numel - first)
            lo, hi = max(start, first), min(stop, first + length)
            if lo == first and hi == first + length:  # the whole block: in place
                stream_block(seed, index, out[lo - start : hi - start], draw)
            else:
                block = torch.empty(length, device=out.device, dtype=out.dtype)
                stream_block(seed, index, block, draw)
                out[lo - start : hi - start] = block[lo - first : hi - first]
    finally:
        torch.set_num_threads(threads)


def shard_indices(tensor: torch.Tensor) -> tuple[torch.Tensor, list | None]:
    """(local tensor, global index of each of its positions along each dim, or None).

    A DTensor's local shard under Shard / _StridedShard placements on any mesh,
    sharded left to right over the mesh dims as torch.distributed.tensor does.
    """
    if not hasattr(tensor, "placements") or not hasattr(tensor, "to_local"):
        return tensor, None
    from torch.distributed.tensor import placement_types as types

    local = tensor.to_local()
    coordinate = tensor.device_mesh.get_coordinate()
    if coordinate is None:  # this rank holds no part of it
        return local, [torch.arange(0) for _ in tensor.shape]
    index = [torch.arange(size) for size in tensor.shape]
    for mesh_dim, placement in enumerate(tensor.placements):
        if isinstance(placement, types.Replicate):
            continue
        chunks, rank = tensor.device_mesh.size(mesh_dim), coordinate[mesh_dim]
        strided = getattr(types, "_StridedShard", ())
        if isinstance(placement, strided):  # FSDP2 over tensor parallelism, same dim
            dim = placement.dim
            offsets = strided_offsets(placement, len(index[dim]), chunks, rank)
            index[dim] = index[dim][offsets]
        elif isinstance(placement, types.Shard):
            dim = placement.dim
            size, offset = types.Shard.local_shard_size_and_offset(
                len(index[dim]), chunks, rank
            )
            index[dim] = index[dim][offset : offset + size]
        else:
            raise TypeError(f"cannot initialise a shard placed as {placement!r}")
    if tuple(local.shape) != tuple(len(i) for i in index):
        raise ValueError(
            f"local shard {tuple(local.shape)} does not match its placements"
        )
    return local, index


def strided_offsets(placement, length: int, chunks: int, rank: int) -> torch.Tensor:
    """The positions `rank` holds under _StridedShard: the dim is cut into `split_factor`
    pieces (by the mesh dims to its right) and each piece into `chunks`, as torch.chunk does."""
    from torch.distributed.tensor import placement_types as types

    if hasattr(types, "_StridedShardOffsetMode"):
        mode = types._StridedShardOffsetMode.ALL
        _, offsets = placement.local_shard_size_and_offset(length, chunks, rank, mode)
        return torch.tensor(offsets, dtype=torch.long)
    pieces = torch.arange(length).chunk(placement.split_factor)
    parts = [piece.chunk(chunks) for piece in pieces]
    return torch.cat([torch.arange(0)] + [p[rank] for p in parts if rank < len(p)])


def deterministic(kind, args, shape, index, device, dtype) -> torch.Tensor:
    """The values at the positions `index` (one vector per dim) of a deterministic init."""
    if kind == "values":
        full = torch.tensor(args["values"], dtype=dtype, device=device)
        values = full.broadcast_to(shape)
        for dim, positions in enumerate(index):
            values = values.index_select(dim, positions.to(device))
        return values
    # each dim's positions as a broadcastable view: no full-size index grids
    rank = len(index)
    grid = [
        i.to(device).view([-1 if d == k else 1 for k in range(rank)])
        for d, i in enumerate(index)
    ]
    if kind == "eye":
        return (grid[0] == grid[1]).to(dtype).mul_(args["gain"])
    # dirac: out channel o, in channel i, centre of every spatial dim
    per_group = shape[0] // args["groups"]
    hit = (grid[0] % per_group == grid[1]) & (grid[1] < min(per_group, shape[1]))
    for dim in range(2, len(shape)):
        hit = hit & (grid[dim] == shape[dim] // 2)
    return hit.to(dtype)


def whole(kind, args, seed, shape, device, dtype) -> torch.Tensor:
    """orthogonal and sparse need the whole tensor: every rank computes it whole."""
    numel = math.prod(shape)
    rows = shape[0]
    cols = numel // rows
    full = torch.empty(numel, device=device, dtype=dtype)
    if kind == "sparse":
        stream_range(seed, numel, 0, numel, ("normal", (0.0, args["std"])), full)
        full = full.view(rows, cols)
        zeros = math.ceil(args["sparsity"] * rows)
        generator = torch.Generator(device).manual_seed(seed + (numel - 1) // 2**16 + 1)
        for col in range(cols):
            order = torch.randperm(rows, generator=generator, device=device)
            full[order[:zeros], col] = 0
        return full.view(shape)
    # orthogonal: torch's nn.init.orthogonal_ on normals drawn from the stream
    stream_range(seed, numel, 0, numel, ("normal", (0.0, 1.0)), full)
    flattened = full.view(rows, cols)
    if rows < cols:
        flattened.t_()
    # LAPACK's rounding depends on its threads: one, the same values on every machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        q, r = torch.linalg.qr(flattened)
    finally:
        torch.set_num_threads(threads)
    q *= torch.diag(r, 0).sign()
    if rows < cols:
        q.t_()
    return q.contiguous().view(shape).mul_(args["gain"])


def spec_part(kind: str, **args) -> tuple:
    """One part of a `chunks` initializer: its kind and arguments."""
    return kind, args


def init_tensor_(tensor: torch.Tensor, seed: int, kind: str, **args) -> None:
    """Initialise `tensor` (a plain tensor, or this rank's shard of a DTensor) in place."""
    local, index = shard_indices(tensor)
    fill_(local, index, tuple(tensor.shape), seed, kind, args)


def chunks_(local, index, shape, seed, parts) -> None:
    """The first axis in len(parts) equal parts, each initialised as a tensor of its own
    (its own fans, and a stream seeded from the tensor's seed and the part's number)."""
    rows = shape[0] // len(parts)
    if index is None:
        index = [torch.arange(size) for size in shape]
    for number, (kind, args) in enumerate(parts):
        at = ((index[0] >= number * rows) & (index[0] < (number + 1) * rows)).nonzero()
        at = at.flatten()
        if len(at) == 0:
            continue
        part = local.index_select(0, at.to(local.device))
        part_index = [index[0][at] - number * rows, *index[1:]]
        part_seed = (seed * 1_000_003 + number + 1) % 2**63
        fill_(part, part_index, (rows, *shape[1:]), part_seed, kind, args)
        local.index_copy_(0, at.to(local.device), part)


def fill_(local, index, shape, seed, kind, args) -> None:
    """Initialise `local`, the positions `index` (None: all) of a tensor of `shape`."""
    if local.numel() == 0:
        return
    device, dtype = local.device, local.dtype
    if kind == "chunks":
        chunks_(local, index, shape, seed, args["parts"])
        return
    if kind in ("zeros", "ones", "constant"):
        local.fill_({"zeros": 0.0, "ones": 1.0}.get(kind, args.get("value")))
        return
    draw = (kind, tuple(args.values()))
    whole_tensor = index is None and local.is_contiguous()
    if whole_tensor and kind in ("uniform", "normal", "trunc_normal"):
        # its stream, block after block, in place
        stream_range(seed, local.numel(), 0, local.numel(), draw, local.view(-1))
        return
    if index is None:
        index = [torch.arange(size) for size in shape]
    if kind in ("eye", "dirac", "values"):
        local.copy_(deterministic(kind, args, shape, index, device, dtype))
        return
    if kind in ("orthogonal", "sparse"):
        full = whole(kind, args, seed, shape, device, dtype)
        for dim, positions in enumerate(index):
            full = full.index_select(dim, positions.to(device))
        local.copy_(full)
        return
    numel = math.prod(shape)
    row = numel // shape[0]
    inner = torch.zeros((), dtype=torch.long)
    for dim in range(1, len(shape)):
        inner = inner.unsqueeze(-1) * shape[dim] + index[dim].view(
            *([1] * (dim - 1)), -1
        )
    inner = inner.reshape(-1)
    rows = index[0]
    out = (
        local.view(len(rows), -1)
        if local.is_contiguous()
        else local.reshape(len(rows), -1)
    )
    # runs of consecutive rows (found without a Python loop over the rows) ...
    breaks = ((rows[1:] - rows[:-1]) != 1).nonzero().flatten() + 1
    firsts = [0, *breaks.tolist()]
    lasts = [*firsts[1:], len(rows)]
    step = max(1, 2**18 // row)
    pieces = []  # ... cut into pieces of a few blocks
    for first, last in zip(firsts, lasts):
        start_row = int(rows[first])
        for start in range(first, last, step):
            stop = min(start + step, last)
            pieces.append((start, stop, start_row + start - first))
    for start, stop, first_row in pieces:
        lo, hi = first_row * row, (first_row + stop - start) * row
        if len(inner) == row:
            stream_range(seed, numel, lo, hi, draw, out[start:stop].view(-1))
        else:
            buffer = torch.empty(hi - lo, device=device, dtype=dtype)
            stream_range(seed, numel, lo, hi, draw, buffer)
            out[start:stop] = buffer.view(stop - start, row)[:, inner.to(device)]
    if not local.is_contiguous():
        local.copy_(out.view(local.shape))


def resolve_seed(seed: int | None) -> int:
    """`seed`, or a fresh one, the same on every rank of a distributed run."""
    if seed is not None:
        return seed
    seed = int.from_bytes(os.urandom(8), "little") >> 1
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        shared = [seed]
        dist.broadcast_object_list(shared, src=0)
        seed = shared[0]
    return seed


def initialize_(
    model: nn.Module,
    plan,
    seed: int | None = None,
    only: set | None = None,
    modules: dict | None = None,
) -> int:
    """Initialise every tensor of `model` as `plan` says; reset norm statistics.

    Parameters may be plain tensors or DTensors (FSDP2, tensor parallel, a 2-D
    mesh): each rank computes its own shard. `only` (a set of state_dict keys)
    limits both to those tensors and their norm layers. `modules`: the model's
    named_modules as a dict, when the caller has it. Returns the seed used.
    """
    seed = resolve_seed(seed)
    params, norms = {}, []
    walk = model.named_modules() if modules is None else modules.items()
    for name, module in walk:  # one walk: parameters and norm layers
        prefix = f"{name}." if name else ""
        for own, param in module._parameters.items():
            if param is not None:
                params.setdefault(prefix + own, param)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            norms.append((prefix, module))
    threads = torch.get_num_threads()
    later = []  # whole plain tensors on the CPU drawn from their streams: on several threads
    with torch.no_grad():
        for key, path, kind, args in plan:
            if only is None or key in only:
                param = params[key]
                if threads > 1 and kind in DRAWS and type(param) in PLAIN and param.is_cpu and param.is_contiguous():
                    draw = (kind, tuple(args.values()))
                    later.append((tensor_seed(seed, path), param.numel(), draw, param.view(-1)))
                else:
                    init_tensor_(param, tensor_seed(seed, path), kind, **args)
        draw_deferred(later, threads)
        for prefix, module in norms:
            if only is None or any(prefix + own in only for own in module._parameters):
                module.reset_running_stats()
    return seed


def select_(plan, only) -> set:
    """The keys of the `plan` entries whose spec path or state_dict key matches
    `only` (a path pattern or a list of them, nnspec.compiler.paths); ValueError,
    naming it, for a pattern that is malformed or matches no tensor."""
    from nnspec.compiler.paths import compile_patterns

    keys, idle = set(), []
    for pattern in compile_patterns(only):
        hits = {
            key for key, path, _, _ in plan if pattern.match(path) or pattern.match(key)
        }
        if not hits:
            idle.append(pattern.pattern)
        keys |= hits
    if idle:
        example = plan[0][1] if plan else "head.weight"
        raise ValueError(
            f"only: the pattern(s) {', '.join(repr(p) for p in idle)} match no tensor "
            f"of the model; nothing was changed (tensor paths look like {example!r})"
        )
    return keys


class LayerReset:
    """A layer's reset_parameters: its tensors as the spec says, with the model's seed.

    An object rather than a bound function, so that copies and pickles of the model
    keep it, bound to their own layer (`__reduce__`). It holds its layer by a weak
    reference: a strong one would be a reference cycle (layer -> reset_parameters ->
    layer), which would keep every layer and its tensors alive after the model is
    dropped, until the cyclic collector's next full pass.
    """

    def __init__(self, module: nn.Module, entries: list, state: dict) -> None:
        self.layer = weakref.ref(module)
        self.entries, self.state = entries, state

    @property
    def module(self) -> nn.Module:
        module = self.layer()
        if module is None:
            raise ReferenceError(
                "reset_parameters of a layer that no longer exists (kept after its model was dropped)"
            )
        return module

    def __reduce__(self):
        return LayerReset, (self.module, self.entries, self.state)

    def __call__(self) -> None:
        self.state["seed"] = resolve_seed(self.state["seed"])
        with torch.no_grad():
            for name, path, kind, args in self.entries:
                tensor = getattr(self.module, name)
                init_tensor_(
                    tensor, tensor_seed(self.state["seed"], path), kind, **args
                )
            if isinstance(self.module, nn.modules.batchnorm._BatchNorm):
                self.module.reset_running_stats()


def attach_plan_(model: nn.Module, plan, seed: int | None) -> dict:
    """Keep the plan on the model; give each layer a reset_parameters that follows it.
    Returns the model's named_modules as a dict."""
    model._nnspec_plan = plan
    model._nnspec_state = state = {"seed": seed}
    modules = dict(model.named_modules())
    owners = {}
    for key, path, kind, args in plan:
        owner, _, name = key.rpartition(".")
        owners.setdefault(owner, []).append((name, path, kind, args))
    for owner, entries in owners.items():
        layer = modules[owner]
        if layer is not model:  # an instance attribute, as nn.Module's __setattr__ sets
            vars(layer)["reset_parameters"] = LayerReset(layer, entries, state)
    return modules


class Initializable:
    """`initialize` and `reset_parameters` of a model built by nnspec."""

    def initialize(self, seed: int | None = None, only=None) -> None:
        """Initialise every tensor as the spec says, in place.

        Parameters may be plain tensors or DTensors (FSDP2, tensor parallel, any
        mesh): each rank computes only its own shard. `seed` defaults to the
        model's (the spec's SEED, or the one it was last initialised with).
        `only` (a path pattern or a list: `head.*`, `layer4.**.bn3.gamma`; `*`
        within one dotted segment, `**` across segments) re-initialises just the
        tensors whose spec path or state_dict key matches, with the values of a
        full initialisation; every other tensor is left as it is.
        """
        plan, state = self._nnspec_plan, self._nnspec_state
        keys = None if only is None else select_(plan, only)
        state["seed"] = initialize_(
            self, plan, state["seed"] if seed is None else seed, keys
        )

    def reset_parameters(self) -> None:
        """The spec's initialisation, with the model's seed."""
        self.initialize()
