"""ConvNeXt's constructs for the PyTorch import (torchvision's `convnext_tiny`), read wherever they occur.

- **Channels-last pairs.** nnspec has no `permute`. A permute of a map to channels last
  (`x.permute(0, 2, 3, 1)`, `torch.permute`, torchvision's `Permute([0, 2, 3, 1])`), layers that act on
  each position alone (linear, layernorm over the last axis, activations, dropout), and the permute back
  (`[0, 3, 1, 2]`) compute what `to_tokens`, the same layers on tokens [H*W, C], and `to_map` compute: the
  pair becomes `to_tokens` ... `to_map` (the map's grid is remembered). Any other permute, one without
  its partner, or a pair around something that mixes positions, is an `ImportProblem`.
- **LayerNorm2d.** A subclass of `nn.LayerNorm` whose forward is exactly permute to channels last,
  `F.layer_norm` over the channels with its own weight and bias, permute back, is one
  `layernorm: {over: channels}`.
- **Layer scale.** A module's own `nn.Parameter` of shape [C, 1, ..., 1] multiplied with a map [N, C,
  *S] (`self.layer_scale * self.block(x)`) is a `scale` layer named after the parameter. Its spec
  tensor is [C]: the source's tensor is read as [C] (the same values), and `nnspec.load_weights` pairs
  the [C, 1, 1] tensor with the [C] one by name, with a reshape it reports (nnspec/weights.py).

`torch_import.py` calls `leaf` (module classes), `parameters` (which `get_attr` nodes are layer scales),
`node_items` (permute and layer-scale calls) and `pair_permutes` (the items, once converted).
"""

from __future__ import annotations

import operator

from nnspec.importing import ImportProblem
from nnspec.importing.structure import Item, walk_lists

# layers that act on each position of tokens [T, D] alone, as they do on the last axis of [N, *S, C]
PER_POSITION = {"linear", "layernorm", "rmsnorm", "relu", "relu6", "leaky_relu", "gelu", "silu", "sigmoid",
                "tanh", "hardswish", "hardsigmoid", "mish", "elu", "softplus", "dropout", "identity"}
MARK = "permute"  # the importer's own item for a permute, paired or refused before the spec is written


def to_last(rank: int) -> list:
    """The permutation that moves a map's channels last: [0, 2, ..., rank - 1, 1]."""
    return [0, *range(2, rank), 1]


def to_first(rank: int) -> list:
    """Its inverse: [0, rank - 1, 1, ..., rank - 2]."""
    return [0, rank - 1, *range(1, rank - 1)]


def _dims(node) -> list | None:
    """The permutation of a permute call (`x.permute(0, 2, 3, 1)`, `x.permute([0, 2, 3, 1])`,
    `torch.permute(x, dims)`), or None when the node is no permute or its dims are not numbers."""
    import torch

    if node.op == "call_method" and node.target == "permute":
        dims = list(node.args[1:]) or [node.kwargs.get("dims")]
    elif node.op == "call_function" and node.target is torch.permute:
        dims = [node.args[1] if len(node.args) > 1 else node.kwargs.get("dims")]
    else:
        return None
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = list(dims[0])
    if not dims or not all(isinstance(d, int) for d in dims):
        return None
    return [d % len(dims) for d in dims]


def _text(dims) -> str:
    return f"`.permute({', '.join(map(str, dims))})`"


# -- LayerNorm2d ------------------------------------------------------------------------------------

def leaf(m):
    """A converter (m, where) -> Item for a module class this module reads as one layer, else None."""
    from torch import nn

    if isinstance(m, nn.LayerNorm) and type(m).forward is not nn.LayerNorm.forward and _is_layernorm2d(m):
        return _channel_layernorm
    return None


def _is_layernorm2d(m) -> bool:
    """The forward is permute to channels last, F.layer_norm(x, normalized_shape, weight, bias, eps) with
    the module's own tensors, permute back; nothing else."""
    import torch.fx
    import torch.nn.functional as F

    if len(m.normalized_shape) != 1 or not m.elementwise_affine or m.bias is None:
        return False
    try:
        nodes = list(torch.fx.Tracer().trace(m).nodes)
    except Exception:
        return False
    ops = [n for n in nodes if n.op not in ("placeholder", "output", "get_attr")]
    if len(ops) != 3 or sum(n.op == "placeholder" for n in nodes) != 1:
        return False
    first, norm, back = ops
    before, after = _dims(first), _dims(back)
    if before is None or after is None or len(before) != len(after) or len(before) < 3:
        return False
    rank = len(before)
    if before != to_last(rank) or after != to_first(rank):
        return False
    if norm.op != "call_function" or norm.target is not F.layer_norm:
        return False
    values = dict(zip(("input", "normalized_shape", "weight", "bias", "eps"), norm.args)) | dict(norm.kwargs)
    x, shape, weight, bias, eps = (values.get(k) for k in ("input", "normalized_shape", "weight", "bias", "eps"))
    output = next(n for n in nodes if n.op == "output")
    return (x is first and back.args[0] is norm and output.args[0] is back and first.args[0].op == "placeholder"
            and tuple(shape or ()) == tuple(m.normalized_shape)
            and getattr(weight, "op", None) == "get_attr" and weight.target == "weight"
            and getattr(bias, "op", None) == "get_attr" and bias.target == "bias"
            and (eps is None and m.eps == 1e-5 or getattr(eps, "op", None) is None and eps == m.eps
                 or getattr(eps, "op", None) == "get_attr" and eps.target == "eps"))


def _channel_layernorm(m, where: str) -> Item:
    args = {"over": "channels"} | ({} if m.eps == 1e-5 else {"eps": float(m.eps)})
    return Item("layernorm", args, tensors={"gamma": m.weight, "beta": m.bias})


# -- layer scale ------------------------------------------------------------------------------------

MULTIPLY = ("mul", "mul_")


def _is_multiply(node) -> bool:
    import torch

    if node.op == "call_function":
        return node.target in (operator.mul, operator.imul, torch.mul)
    return node.op == "call_method" and node.target in MULTIPLY


def parameters(m, nodes) -> set:
    """The `get_attr` nodes of parameters of `m` that only multiply (layer-scale candidates): the importer
    leaves them out of the data flow, and `node_items` reads each multiply as a `scale` or refuses it."""
    from torch import nn

    out = set()
    for node in nodes:
        if node.op != "get_attr" or not node.users:
            continue
        try:
            value = m.get_parameter(node.target)
        except AttributeError:
            continue
        if isinstance(value, nn.Parameter) and all(_is_multiply(u) and len(u.args) == 2 and not u.kwargs
                                                   for u in node.users):
            out.add(node)
    return out


def _scale(conv, node, cur) -> list:
    param_node = next(a for a in node.args if a is not cur)
    param = conv.m.get_parameter(param_node.target)
    rank = conv._rank(cur)
    shape = list(param.shape)
    where = conv.label
    text = f"`{param_node.target}` (a parameter of shape {shape}) times the tensor"
    if rank is None:
        raise ImportProblem(where, f"{text}: the tensor's shape is unknown, so the axis it scales is too",
                            "nnspec's `scale` multiplies the channel axis by a [C] tensor")
    if rank < 3 or len(shape) != rank - 1 or any(s != 1 for s in shape[1:]):
        raise ImportProblem(where, f"{text} of rank {rank}: nnspec's `scale` multiplies the channels of a map "
                                   f"[N, C, *S], which is a parameter of shape [C{', 1' * (rank - 2)}]",
                            "other broadcasts have no nnspec kind")
    meta = cur.meta.get("tensor_meta")
    channels = int(meta.shape[1]) if meta is not None and hasattr(meta, "shape") else None
    if shape[0] != channels:
        raise ImportProblem(where, f"{text} with {channels} channels: nnspec's `scale` has one factor per channel",
                            "a parameter broadcast along the channels has no nnspec kind")
    gamma = param.detach().reshape(-1)  # the spec's [C] tensor: the same values
    order = getattr(conv, "param_order", None)
    if order is not None and id(param) in order:
        order[id(gamma)] = order[id(param)]
    name = param_node.target.replace(".", "_")
    return [Item("scale", tensors={"gamma": gamma}, name=name, rel=tuple(param_node.target.split(".")),
                 source=f"{conv.where}.{param_node.target}" if conv.where else param_node.target)]


def node_items(conv, node, cur, kind):
    """The items of a call this module reads (a permute: a mark for `pair_permutes`; a layer scale:
    `scale`), or None for any other call."""
    dims = _dims(node)
    if dims is not None:
        return [Item(MARK, {"dims": dims}, source=conv.label)]
    if _is_multiply(node) and cur in node.args and any(a in conv.meta and getattr(a, "op", None) == "get_attr"
                                                       for a in node.args):
        return _scale(conv, node, cur)
    return None


# -- pairs ------------------------------------------------------------------------------------------

def pair_permutes(items: list) -> list:
    """Every permute mark in the item tree paired into `to_tokens` ... `to_map`, or an ImportProblem.
    A module whose forward is only a permute (torchvision's `Permute`) counts as its mark."""
    for lst in list(walk_lists(items)):
        lst[:] = [_unwrap(item) for item in lst]
    for lst in reversed(list(walk_lists(items))):  # inner lists first: an instance's body is paired when checked
        _pair(lst)
    return items


def _unwrap(item: Item) -> Item:
    if item.kind == "instance" and item.body is not None and len(item.body) == 1 and item.body[0].kind == MARK:
        mark = item.body[0]
        mark.source = item.source or mark.source
        return mark
    return item


def _pair(items: list) -> None:
    out, i = [], 0
    while i < len(items):
        item = items[i]
        if item.kind != MARK:
            out.append(item)
            i += 1
            continue
        dims = item.args["dims"]
        rank = len(dims)
        if rank < 3 or dims != to_last(rank):
            raise ImportProblem(item.source, f"{_text(dims)}: nnspec has no permute; the one it reads is a map's "
                                             f"channels moved last ({_text(to_last(max(rank, 3)))}), layers "
                                             "that act on each position, and the permute back "
                                             f"({_text(to_first(max(rank, 3)))}): `to_tokens` ... `to_map`")
        end = next((j for j in range(i + 1, len(items)) if items[j].kind == MARK), None)
        if end is None or items[end].args["dims"] != to_first(rank):
            found = "no permute back" if end is None else f"{_text(items[end].args['dims'])}"
            raise ImportProblem(item.source, f"{_text(dims)} (channels last) is followed by {found} in the same "
                                             f"chain; nnspec reads a permute only in a pair with "
                                             f"{_text(to_first(rank))} around layers that act on each position "
                                             "(`to_tokens` ... `to_map`)")
        for inner in items[i + 1:end]:
            _check_per_position(inner, item.source, dims)
        out += [Item("to_tokens", source=item.source), *items[i + 1:end], Item("to_map", source=items[end].source)]
        i = end + 1
    items[:] = out


def _check_per_position(item: Item, where: str, dims) -> None:
    if item.kind == "instance":
        for inner in item.body:
            _check_per_position(inner, where, dims)
        return
    if item.kind not in PER_POSITION or item.args.get("over", "last") != "last":
        what = f"`{item.kind}`" + (f" ({item.source})" if item.source else "")
        raise ImportProblem(where, f"{_text(dims)} and the permute back hold {what}, which does not act on each "
                                   "position alone; nnspec reads the pair as `to_tokens` ... `to_map` around "
                                   f"per-position layers only ({', '.join(sorted(PER_POSITION))})")
