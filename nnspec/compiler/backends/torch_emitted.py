"""Initialisation helpers of emitted PyTorch files (their source is copied into each file).

The same streams as `torch_runtime` (docs/distributed.md), in fewer lines: a tensor, or the
shard of a DTensor, is filled block by block, each element from the block that holds its
position in the whole tensor. `nnspec.build` uses `torch_runtime`; the tests compare the two
bit for bit.
"""

from __future__ import annotations

import functools
import hashlib
import os

import torch
from torch import nn

from nnspec.compiler.backends.torch_runtime import strided_offsets  # copied beside these

LAYERS: tuple = ()  # in an emitted file: the classes of the layers that own tensors
SPEC_ROLES: dict = {}  # in an emitted file: class -> {parameter name: spec name} where they differ


def spec_init(path: str, module: nn.Module, name: str, shape: tuple) -> tuple:
    raise NotImplementedError  # written into each emitted file from the spec's `init`


def init_tensor_(tensor: torch.Tensor, seed: int, kind: str, **args) -> None:
    """Fill `tensor` or this rank's shard of a DTensor: element i of the flattened tensor
    is from block i // 2**16, nn.init's `kind` drawn with a generator seeded seed + block."""
    index, local = [torch.arange(size) for size in tensor.shape], tensor
    if hasattr(tensor, "placements") and hasattr(tensor, "to_local"):
        from torch.distributed.tensor import placement_types as types

        mesh, local = tensor.device_mesh, tensor.to_local()
        at = mesh.get_coordinate()
        if at is None:  # this rank holds no part of it
            index = [i[:0] for i in index]
        for dim, p in enumerate(tensor.placements if at is not None else ()):
            args_ = len(index[getattr(p, "dim", 0)]), mesh.size(dim), at[dim]
            if isinstance(p, getattr(types, "_StridedShard", ())):  # FSDP2 over TP
                index[p.dim] = index[p.dim][strided_offsets(p, *args_)]
            elif isinstance(p, types.Shard):
                size, offset = types.Shard.local_shard_size_and_offset(*args_)
                index[p.dim] = index[p.dim][offset : offset + size]
    if kind in ("zeros", "ones", "constant"):
        local.fill_(args.get("value", float(kind == "ones")))
        return
    flat = torch.zeros((), dtype=torch.long)  # each local element's position
    for size, positions in zip(tensor.shape, index):
        flat = flat.unsqueeze(-1) * size + positions
    flat, device = flat.reshape(-1), local.device
    out = torch.empty(len(flat), dtype=local.dtype, device=device)
    blocks = flat // 2**16
    for k in blocks.unique().tolist():
        lo, hi = torch.searchsorted(blocks, torch.tensor([k, k + 1])).tolist()
        length = min(2**16, tensor.numel() - k * 2**16)
        block = torch.empty(length, dtype=local.dtype, device=device)
        generator = torch.Generator(device).manual_seed(seed + k)
        getattr(nn.init, kind + "_")(block, *args.values(), generator=generator)
        out[lo:hi] = block[(flat[lo:hi] - k * 2**16).to(device)]
    local.copy_(out.view(local.shape))


def initialize_(model: nn.Module, plan: list, state: dict) -> None:
    """Initialise the tensors of `plan` (key, spec path, kind, arguments) with the seed in
    `state` (drawn on rank 0 when None); each tensor's stream is seeded from its path."""
    if state["seed"] is None:
        import torch.distributed as dist

        shared = [int.from_bytes(os.urandom(8), "little") >> 1]
        if dist.is_available() and dist.is_initialized():
            dist.broadcast_object_list(shared, src=0)
        state["seed"] = shared[0]
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, path, kind, args in plan:
            digest = hashlib.sha256(f"{state['seed']}/{path}".encode()).digest()
            seed = int.from_bytes(digest[:8], "little") >> 1  # 63 bits
            init_tensor_(params[key], seed, kind, **args)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()


def init_plan_(model: nn.Module, seed: int | None) -> None:
    """Keep each tensor's initializer on the model; give each layer a reset_parameters
    that follows it with the model's seed."""
    model._nnspec_plan, model._nnspec_state = [], {"seed": seed}
    layers = {p: m for p, m in model.named_modules() if isinstance(m, LAYERS)}
    own: dict = {}
    for key, tensor in model.named_parameters():
        path = next(p for p in layers if key.startswith(p + "."))  # outermost first
        name = key[len(path) + 1 :]
        role = SPEC_ROLES.get(type(layers[path]), {}).get(name, name)
        init = spec_init(path, layers[path], name, tensor.shape)
        model._nnspec_plan.append((key, f"{path}.{role}", *init))
        own.setdefault(path, []).append((name, f"{path}.{role}", *init))
    for path, plan in own.items():
        reset = functools.partial(initialize_, layers[path], plan, model._nnspec_state)
        layers[path].reset_parameters = reset
