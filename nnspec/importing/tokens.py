"""Token patterns of a traced PyTorch graph (torchvision's VisionTransformer and code written like it).

`torch_import._Converter.chain` asks `step` at each node of a chain whether the calls that follow it are
one of these; each is read as nnspec kinds, or is an `ImportProblem` naming the module and the construct:

- `x.reshape(n, C, H * W).permute(0, 2, 1)` (also `view`, `flatten(2)`, and `transpose(1, 2)`) after a map
  [N, C, H, W]: `to_tokens`;
- `torch.cat([P.expand(n, -1, -1), x], dim=1)` with a parameter P [1, 1, D] owned by a module:
  `class_token` (its token P as [D]);
- `x + P` with a parameter P [1, T, D] (or [T, D]) on tokens [N, T, D]: `position_embedding` of length T
  (its table P as [T, D]);
- `nn.MultiheadAttention(batch_first=True)` called with the same tensor as query, key and value and its
  output's `[0]` taken: `attention` (`leaves` reads the module; PyTorch's tensor names are nnspec's);
- `x[:, i]` on tokens [N, T, D]: `slice: {start: i, stop: i + 1, axis: tokens}` and `flatten` (the class
  token's readout).

`shape_values` widens the converter's set of shape nodes to the arithmetic on them (`h // p`,
`n_h * n_w`, `h == size` of a `torch._assert`), which fx records as calls like any other.
"""

from __future__ import annotations

import operator

from nnspec.importing import ImportProblem
from nnspec.importing.structure import Item

ARITHMETIC = (operator.add, operator.sub, operator.mul, operator.floordiv, operator.truediv, operator.mod,
              operator.neg, operator.pow, operator.eq, operator.ne, operator.lt, operator.le, operator.gt,
              operator.ge, operator.not_, operator.and_, operator.or_)


def shape_values(nodes: list, meta: set) -> set:
    """The nodes computed from shapes only (arithmetic, comparisons and `torch._assert` on sizes)."""
    import torch

    from nnspec.importing.torch_import import node_args

    found = set(meta)
    for node in nodes:  # in graph order: a node's inputs come first
        if node.op != "call_function" or node.target not in ARITHMETIC + (torch._assert,):
            continue
        inputs = node_args(node)
        if inputs and all(n in found for n in inputs):
            found.add(node)
    return found - set(meta)


# -- nn.MultiheadAttention ---------------------------------------------------------------

def _attention(m, where: str) -> Item:
    problems = []
    if not m.batch_first:
        problems.append("batch_first=False (it would read [N, T, D] tokens as [T, N, D])")
    if not m._qkv_same_embed_dim:
        problems.append(f"kdim={m.kdim}, vdim={m.vdim} other than embed_dim={m.embed_dim}")
    if m.bias_k is not None or m.bias_v is not None:
        problems.append("add_bias_kv=True")
    if m.add_zero_attn:
        problems.append("add_zero_attn=True")
    if (m.in_proj_bias is None) != (m.out_proj.bias is None):
        problems.append("a bias on one projection only")
    if problems:
        raise ImportProblem(where, f"nn.MultiheadAttention with {', '.join(problems)}: nnspec's attention is "
                                   "batch-first self-attention of one width, with or without all its biases")
    args = {"heads": m.num_heads}
    if m.dropout:
        args["dropout"] = float(m.dropout)
    tensors = {"in_weight": m.in_proj_weight}
    if m.in_proj_bias is not None:
        tensors["in_bias"] = m.in_proj_bias
    else:
        args["bias"] = False
    tensors["out_weight"] = m.out_proj.weight
    if m.out_proj.bias is not None:
        tensors["out_bias"] = m.out_proj.bias
    return Item("attention", args, tensors=tensors)


def leaves() -> dict:
    """Module classes read as one layer (merged into `torch_import.leaf_table`)."""
    from torch import nn

    return {nn.MultiheadAttention: _attention}


# -- the chain ---------------------------------------------------------------------------

def step(conv, cur, nexts: list, region: set):
    """(the last node read, items) when the calls after `cur` are one of the token patterns, None when they
    are none of them; an ImportProblem when they start like one but the rest is not in the vocabulary."""
    from torch import nn

    if len(nexts) != 1:  # a fork: an attention given `cur` and another tensor is cross-attention
        for node in nexts:
            if node.op == "call_module" and isinstance(conv.m.get_submodule(node.target), nn.MultiheadAttention) \
                    and conv.tensor_inputs(node)[:3] != [cur] * 3:
                _self_attention(conv, cur, node, region)  # raises: not self-attention
        return None
    node = nexts[0]
    if node.op == "call_module":
        if isinstance(conv.m.get_submodule(node.target), nn.MultiheadAttention):
            return _self_attention(conv, cur, node, region)
        return None
    if node.op not in ("call_function", "call_method"):
        return None
    target = node.target
    if target in ("reshape", "view", "flatten") or _is(target, "reshape", "flatten"):
        return _to_tokens(conv, cur, node)
    if _is(target, "cat", "concat"):
        return _class_token(conv, cur, node)
    if target in (operator.add, operator.iadd, "add") or _is(target, "add"):
        return _position_embedding(conv, cur, node)
    if target is operator.getitem:
        return _index(conv, cur, node)
    return None


def _is(target, *names) -> bool:
    import torch

    return any(target is getattr(torch, name, None) for name in names)


def _shape(node):
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _text(conv, node) -> str:
    from nnspec.importing.torch_import import _describe

    return _describe(node)


def _only_user(conv, node):
    users = conv.users(node)
    return users[0] if len(users) == 1 else None


def _to_tokens(conv, cur, flat):
    """[N, C, *S] -> [N, C, prod(S)] (reshape, view, flatten(2)) -> permute(0, 2, 1) / transpose(1, 2)."""
    before, after = _shape(cur), _shape(flat)
    if before is None or after is None or len(before) < 3 or conv.tensor_inputs(flat) != [cur]:
        return None
    import math

    if after != (before[0], before[1], math.prod(before[2:])):
        return None
    if flat.target in ("reshape", "view") or _is(flat.target, "reshape"):
        sizes = list(flat.args[1:]) if not _is(flat.target, "reshape") else list(flat.args[1])
        if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
            sizes = list(sizes[0])
        first = sizes[0] if sizes else None
        if not (first == -1 or (hasattr(first, "op") and first in conv.meta)):
            return None  # a fixed batch size: not the same model for other batches
    else:
        start = flat.kwargs.get("start_dim", flat.args[1] if len(flat.args) > 1 else 0)
        end = flat.kwargs.get("end_dim", flat.args[2] if len(flat.args) > 2 else -1)
        if start != 2 or end not in (-1, len(before) - 1):
            return None
    swap = _only_user(conv, flat)
    if swap is None or swap.op != "call_method" or swap.target not in ("permute", "transpose"):
        return None
    dims = [a for a in swap.args[1:]]
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = list(dims[0])
    dims = [d % 3 if isinstance(d, int) else d for d in dims]
    if (swap.target == "permute" and dims != [0, 2, 1]) or (swap.target == "transpose" and sorted(dims) != [1, 2]):
        raise ImportProblem(conv.label, f"{_text(conv, swap)} with dims {swap.args[1:]} after the map's spatial "
                                        "axes are joined: nnspec's to_tokens gives [N, H*W, C] (permute(0, 2, 1))")
    return swap, [Item("to_tokens")]


def _parameter(conv, node):
    """(the get_attr node, its tensor) when `node` is a module's own tensor, else None."""
    if node.op != "get_attr":
        return None
    try:
        value = conv.m.get_parameter(node.target)
    except AttributeError:
        value = None
    if value is None:
        raise ImportProblem(conv.label, f"the tensor `{node.target}` used in forward is not a parameter (a buffer "
                                        "or constant): nnspec's class_token and position_embedding are learned")
    return node, value


def _owned(conv, attr, value, kind: str, args: dict, role: str, shape: tuple) -> Item:
    parts = tuple(attr.target.split("."))
    tensor = value.detach().reshape(shape)
    name = parts[-1] if parts[-1].isidentifier() else None
    return Item(kind, args, name=name, tensors={role: tensor}, rel=parts,
                source=f"{conv.where}.{attr.target}" if conv.where else attr.target)


def _class_token(conv, cur, cat):
    tensors = conv.tensor_inputs(cat)
    if cur not in tensors or len(tensors) != 2:
        return None
    other = next(t for t in tensors if t is not cur)
    if conv.ancestors(other) & {cur}:
        return None
    seq = cat.args[0] if cat.args else cat.kwargs.get("tensors")
    dim = cat.kwargs.get("dim", cat.args[1] if len(cat.args) > 1 else 0)
    rank = len(_shape(cur) or ()) or 3
    found = None
    if other.op == "call_method" and other.target == "expand" and hasattr(other.args[0], "op"):
        found = _parameter(conv, other.args[0])
    source = other.args[0] if other.op == "call_method" and other.args and hasattr(other.args[0], "op") else other
    what = f"{_text(conv, cat)} of the tokens and `{source.target}`"
    if found is None:
        if source.op == "get_attr":
            raise ImportProblem(conv.label, f"{what}: nnspec's class_token prepends a parameter [1, 1, D] expanded "
                                            "to the batch (P.expand(n, -1, -1))")
        return None
    attr, value = found
    sizes = list(other.args[1:])
    if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
        sizes = list(sizes[0])
    shape = tuple(value.shape)
    ok = (len(shape) == 3 and shape[:2] == (1, 1) and len(sizes) == 3 and rank == 3
          and hasattr(sizes[0], "op") and sizes[0] in conv.meta
          and all(s == -1 or s == shape[i] for i, s in enumerate(sizes[1:], 1))
          and list(seq) == [other, cur] and dim in (1, -2) and len(conv.users(other)) == 1)
    if not ok:
        raise ImportProblem(conv.label, f"{what} (shape {list(shape)}, expanded to {sizes}, joined along dim {dim}, "
                                        f"order {[n.name for n in seq]}): nnspec's class_token prepends a parameter "
                                        "[1, 1, D] expanded to the batch, torch.cat([P.expand(n, -1, -1), x], dim=1)")
    return cat, [_owned(conv, attr, value, "class_token", {}, "token", (shape[-1],))]


def _position_embedding(conv, cur, add):
    tensors = conv.tensor_inputs(add)
    if len(tensors) != 2 or cur not in tensors or add.kwargs:
        return None
    other = next(t for t in tensors if t is not cur)
    found = _parameter(conv, other)
    if found is None:
        made = conv.ancestors(other)
        own = sorted(n.target for n in made if n.op == "get_attr")
        if own and not any(n.op == "placeholder" for n in made):
            raise ImportProblem(conv.label, f"{_text(conv, add)} adds a tensor computed from the module's own "
                                            f"`{'`, `'.join(own)}`: nnspec adds a learned table as "
                                            "position_embedding only, the parameter itself ([1, T, D] or [T, D])")
        return None
    attr, value = found
    shape, here = tuple(value.shape), _shape(cur)
    table = shape[1:] if len(shape) == 3 and shape[0] == 1 else shape
    if here is None or len(here) != 3 or len(table) != 2 or tuple(table) != here[1:]:
        raise ImportProblem(conv.label, f"{_text(conv, add)} adds the parameter `{attr.target}` of shape "
                                        f"{list(shape)} to a tensor of shape {list(here or ())}: nnspec adds a "
                                        "learned table to tokens as position_embedding only, a parameter [1, T, D] "
                                        "or [T, D] on tokens [N, T, D]")
    length = table[0]
    return add, [_owned(conv, attr, value, "position_embedding", {"length": length}, "weight", tuple(table))]


def _self_attention(conv, cur, call, region):
    path = f"{conv.where}.{call.target}" if conv.where else call.target
    names = ("query", "key", "value")
    given = dict(zip(names, call.args)) | {k: v for k, v in call.kwargs.items() if k in names}
    options = {k: v for k, v in call.kwargs.items() if k not in names}
    if len(call.args) > 3:
        options["(more positional arguments)"] = call.args[3:]
    if [given.get(n) for n in names] != [cur, cur, cur]:
        raise ImportProblem(path, "nn.MultiheadAttention called with a different query, key and value: nnspec's "
                                  "attention is self-attention (the same tensor for all three)")
    odd = {k: v for k, v in options.items() if not (k in ("need_weights", "average_attn_weights")
                                                     or (k in ("key_padding_mask", "attn_mask") and v is None)
                                                     or (k == "is_causal" and v is False))}
    if odd:
        shown = ", ".join(f"{k}=" + ("a tensor" if hasattr(v, "op") else repr(v)) for k, v in odd.items())
        raise ImportProblem(path, f"nn.MultiheadAttention called with {shown}: nnspec's attention takes no mask "
                                  "(`causal: true` is its one mask)")
    users = conv.users(call)
    firsts = [u for u in users if u.op == "call_function" and u.target is operator.getitem and u.args[1] == 0]
    rest = [u for u in users if u not in firsts and u in region]
    unused = [u for u in users if u not in firsts and u not in region]
    if len(firsts) != 1 or rest or any(conv.users(u) for u in unused):
        raise ImportProblem(path, "the attention weights of nn.MultiheadAttention are used: nnspec's attention "
                                  "gives its output only (`out, _ = attention(x, x, x)`)")
    items = conv.node(call, cur)
    return firsts[0], items


def _index(conv, cur, node):
    """x[:, i] (or x[:, i, :]) on tokens [N, T, D]: the position i, as [N, D]."""
    here = _shape(cur)
    index = node.args[1]
    if here is None or len(here) != 3 or not isinstance(index, tuple):
        return None
    whole = slice(None, None, None)
    if not (len(index) in (2, 3) and index[0] == whole and isinstance(index[1], int)
            and (len(index) == 2 or index[2] in (whole, Ellipsis))):
        raise ImportProblem(conv.label, f"the index [{', '.join(map(_index_text, index))}] of a tensor of shape "
                                        f"{list(here)}: nnspec reads one position of tokens [N, T, D], x[:, i] "
                                        "(a range of channels or positions is a `slice` layer)")
    i = index[1] % here[1]
    args = ({"start": i} if i else {}) | {"stop": i + 1, "axis": "tokens"}
    return node, [Item("slice", args), Item("flatten")]


def _index_text(value) -> str:
    if isinstance(value, slice):
        return ":".join("" if v is None else str(v) for v in (value.start, value.stop)) + \
            ("" if value.step is None else f":{value.step}")
    return "..." if value is Ellipsis else str(value)
