"""Initialisation helpers of emitted PyTorch files (their source is copied into each file).

The same streams as `torch_runtime` (docs/distributed.md), in fewer lines: a tensor, or the
shard of a DTensor, is filled block by block, each element from the block that holds its
position in the whole tensor. `nnspec.build` uses `torch_runtime`, which streams whole tensors
in place and the rows of a shard without a per-element index; the tests compare the two bit
for bit.
"""

from __future__ import annotations

import functools
import hashlib
import os

import torch
from torch import nn


def spec_init(path: str, module: nn.Module, name: str, shape: tuple) -> tuple:
    raise NotImplementedError  # written into each emitted file from the spec's `init`


def init_tensor_(tensor: torch.Tensor, seed: int, kind: str, **args) -> None:
    """Fill `tensor` (or this rank's shard of a DTensor) from its stream of blocks."""
    local, index = tensor, [torch.arange(size) for size in tensor.shape]
    if hasattr(tensor, "placements"):  # the positions this rank holds, as DTensor cuts
        local, mesh = tensor.to_local(), tensor.device_mesh
        for dim, p in enumerate(tensor.placements if local.numel() else ()):
            if hasattr(p, "_split_tensor"):  # Shard, _StridedShard (FSDP2 over TP)
                at = index[p.dim][(None,) * p.dim]  # 1 x ... x 1 x size
                parts = p._split_tensor(at, mesh.size(dim), with_padding=False)[0]
                index[p.dim] = parts[mesh.get_local_rank(dim)].flatten()
    if kind in ("zeros", "ones", "constant") or not local.numel():
        local.fill_(args.get("value", float(kind == "ones")))
        return
    flat = torch.zeros((), dtype=torch.long)  # each local element's position
    for size, positions in zip(tensor.shape, index):
        flat = flat.unsqueeze(-1) * size + positions
    out, flat = local.new_empty(local.numel()), flat.flatten()  # any memory layout
    ks, n = (flat // 2**16).unique_consecutive(return_counts=True)  # blocks of 2**16
    for k, part, at in zip(ks.tolist(), out.split(n.tolist()), flat.split(n.tolist())):
        block = out.new_empty(min(2**16, tensor.numel() - k * 2**16))
        generator = torch.Generator(out.device).manual_seed(seed + k)
        getattr(nn.init, kind + "_")(block, *args.values(), generator=generator)
        part.copy_(block[(at - k * 2**16).to(out.device)])
    local.copy_(out.view(local.shape))


def initialize_(model: nn.Module, plan: list, state: dict, seed=None) -> None:
    """Initialise the tensors of `plan` (key, spec path, kind, arguments) in place."""
    state["seed"] = state["seed"] if seed is None else seed
    if state["seed"] is None:  # a fresh one, rank 0's on every rank
        shared = [int.from_bytes(os.urandom(8), "little") >> 1]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast_object_list(shared, src=0)
        state["seed"] = shared[0]
    with torch.no_grad():
        for key, path, kind, args in plan:  # each from its stream, seeded by its path
            digest = hashlib.sha256(f"{state['seed']}/{path}".encode()).digest()
            stream = int.from_bytes(digest[:8], "little") >> 1  # 63 bits
            init_tensor_(model.get_parameter(key), stream, kind, **args)
    for module in model.modules():  # and the batch norms' running statistics
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()


def init_plan_(model: nn.Module, seed: int | None, roles: dict | None = None) -> None:
    """Keep each tensor's initializer on the model; give each layer a reset_parameters."""
    plan, state, own = [], {"seed": seed}, {}
    model._nnspec_plan, model._nnspec_state = plan, state
    layers = {p: m for p, m in model.named_modules() if list(m.parameters(False))}
    for key, tensor in model.named_parameters():
        path = next(p for p in layers if key.startswith(p + "."))  # outermost first
        name, layer = key[len(path) + 1 :], layers[path]
        role = (roles or {}).get((type(layer), name), name)  # the spec's name
        init = (f"{path}.{role}", *spec_init(path, layer, name, tensor.shape))
        plan.append((key, *init))
        own.setdefault(path, []).append((name, *init))
        layer.reset_parameters = functools.partial(initialize_, layer, own[path], state)
