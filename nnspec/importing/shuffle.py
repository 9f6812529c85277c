"""ShuffleNet's constructs in a traced graph: the channel shuffle and a split of the channels.

- The channel shuffle, written out as torchvision's `channel_shuffle(x, groups)` does:
  `x.view(b, g, c // g, h, w)`, `torch.transpose(x, 1, 2)` (or `x.transpose(1, 2)`,
  `x.permute(0, 2, 1, 3, 4)`), `.contiguous()` any number of times, and `x.view(b, c, h, w)` (or
  `-1` for `c`, `.reshape`, `.flatten(1, 2)`) is one `channel_shuffle: {groups: g}`. Each step is
  checked against the sizes traced from a forward pass (the split view's output is [b, g, c / g, ...],
  the transpose's [b, c / g, g, ...], the view back the input's [b, c, ...]); the batch size must come
  from the tensor (`x.size(0)`) or be `-1`. A view that splits the channels but is not followed by
  exactly that is an `ImportProblem` naming the module and the step that differs.
- `x.chunk(n, dim=1)` / `torch.chunk` and `x.split(size_or_sizes, dim=1)` / `torch.split`, their pieces
  taken by index (`x1, x2 = x.chunk(2, dim=1)`): each piece is a `slice: {start, stop}` of the channels
  (`stop` left out for the piece that ends the axis),
  so ShuffleNet's `torch.cat((x1, branch2(x2)), 1)` is a `concat` whose two branches each begin with a
  slice. Pieces used otherwise (the tuple handed to `torch.cat`), or a split along another axis, are
  an `ImportProblem`.

`scan(converter, nodes)` is called once per traced graph: it adds the size arithmetic of those
constructs (`c // g` on `x.size()`) to the converter's meta nodes and records, in
`converter.special`, what each node of a recognised construct stands for (a function of the node's
input giving the node's items); the converter's `node` asks `special` first.
"""

from __future__ import annotations

import operator

from nnspec.importing import ImportProblem
from nnspec.importing.structure import Item

_ARITHMETIC = (operator.floordiv, operator.mul, operator.add, operator.sub, operator.truediv, operator.mod,
               operator.neg)


def scan(conv, nodes: list) -> None:
    conv.meta |= _size_arithmetic(nodes, conv.meta)
    for node in nodes:
        if _is_method_or_function(node, ("chunk", "split")):
            _split(conv, node)
        elif _is_method_or_function(node, ("view", "reshape")) and node not in conv.special:
            _shuffle(conv, node)


def _size_arithmetic(nodes: list, meta: set) -> set:
    """Integer arithmetic on a tensor's sizes (`num_channels // groups`): sizes too, not tensors."""
    found: set = set()
    for node in nodes:  # in graph order, so a node's inputs are decided before it
        if node.op != "call_function" or node.target not in _ARITHMETIC or node.kwargs:
            continue
        values = [a for a in node.args if hasattr(a, "op")]
        if values and all(v in meta or v in found for v in values) and \
                all(hasattr(a, "op") or isinstance(a, int) for a in node.args):
            found.add(node)
    return found


def _is_method_or_function(node, names: tuple) -> bool:
    import torch

    if node.op == "call_method":
        return node.target in names
    if node.op == "call_function":
        return any(node.target is getattr(torch, name, None) for name in names)
    return False


def _shape(node):
    meta = node.meta.get("tensor_meta") if hasattr(node, "meta") else None
    shape = getattr(meta, "shape", None)
    return None if shape is None else tuple(int(s) for s in shape)


def _users(conv, node) -> list:
    return [u for u in node.users if u not in conv.meta]


def _where(conv) -> str:
    return conv.label


# -- the channel shuffle ----------------------------------------------------------------

def _view_sizes(node) -> list:
    args = list(node.args[1:])
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        args = list(args[0])
    if "size" in node.kwargs or "shape" in node.kwargs:
        args = list(node.kwargs.get("size", node.kwargs.get("shape")))
    return args


def _batch_from_tensor(conv, value) -> bool:
    """-1, `x.size(0)`, or `x.size()[0]` / `x.shape[0]` (a tuple unpacked from them): the tensor's batch."""
    if value == -1:
        return True
    if not hasattr(value, "op"):
        return False
    if value.op == "call_method" and value.target == "size":
        return list(value.args[1:]) == [0] or value.kwargs == {"dim": 0}
    if value.op == "call_function" and value.target is operator.getitem and value.args[1] == 0:
        sizes = value.args[0]
        return hasattr(sizes, "op") and (
            sizes.op == "call_method" and sizes.target == "size" and len(sizes.args) == 1 and not sizes.kwargs or
            sizes.op == "call_function" and sizes.target is getattr and sizes.args[1] == "shape")
    return False


def _shuffle(conv, view) -> None:
    """Claim `view` and the steps after it when it splits the channel axis in two, [b, c, ...] ->
    [b, g, c / g, ...]; a split the channel shuffle does not follow is a problem at its node."""
    source = view.args[0] if view.args else None
    before, after = _shape(source) if hasattr(source, "op") else None, _shape(view)
    if before is None or after is None or len(before) < 3 or len(after) != len(before) + 1 or \
            after[0] != before[0] or after[3:] != before[2:] or after[1] * after[2] != before[1]:
        return  # not a split of the channels: the converter's own rules say what it is
    groups = after[1]
    split = f"`.{view.target}(...)` from {list(before)} to {list(after)}" if view.op == "call_method" else \
        f"`torch.{view.target.__name__}(...)` from {list(before)} to {list(after)}"
    wanted = (f"the channel shuffle nnspec reads is x.view(b, g, c // g, h, w), torch.transpose(x, 1, 2), "
              f"x.view(b, c, h, w) (torchvision's channel_shuffle); here g = {groups}")

    def fail(problem: str):
        def raise_(cur):
            raise ImportProblem(_where(conv), f"{split} splits the channels into {groups} groups, but {problem}",
                                wanted)
        conv.special[view] = raise_

    if not _batch_from_tensor(conv, _view_sizes(view)[0] if _view_sizes(view) else None):
        return fail("its batch size is not the tensor's (x.size(0), x.shape[0] or -1)")
    steps, cur = [], view
    while True:
        users = _users(conv, cur)
        if len(users) != 1 or conv.tensor_inputs(users[0]) != [cur]:
            what = "nothing" if not users else f"{len(users)} calls" if len(users) > 1 else \
                "a call that takes another tensor as well"
            return fail(f"{'its result' if cur is view else 'the step after it'} goes to {what}, not to the "
                        "transpose and the view back")
        nxt = users[0]
        if nxt.op == "call_method" and nxt.target == "contiguous" and not steps:
            cur = nxt
            continue
        if not steps:
            if not _is_transpose_1_2(nxt, len(after)):
                return fail(f"{_text(nxt)} follows it, not a transpose of dims 1 and 2")
            if _shape(nxt) != (after[0], after[2], after[1]) + after[3:]:
                return fail(f"{_text(nxt)} gives {list(_shape(nxt) or ())}, not "
                            f"{[after[0], after[2], after[1], *after[3:]]}")
            steps.append(nxt)
            cur = nxt
            continue
        if nxt.op == "call_method" and nxt.target == "contiguous":
            steps.append(nxt)
            cur = nxt
            continue
        back = _is_method_or_function(nxt, ("view", "reshape")) and _shape(nxt) == before and \
            _batch_from_tensor(conv, (_view_sizes(nxt) or [None])[0])
        back = back or (_is_method_or_function(nxt, ("flatten",)) and _shape(nxt) == before and
                        _flatten_dims(nxt) == (1, 2))
        if not back:
            return fail(f"after the transpose {_text(nxt)} gives {list(_shape(nxt) or ())}, not the view back "
                        f"to {list(before)} with the tensor's batch size")
        steps.append(nxt)
        break
    conv.special[view] = lambda cur: [Item("channel_shuffle", {"groups": groups})]
    for step in steps:
        conv.special[step] = lambda cur: []


def _is_transpose_1_2(node, rank: int) -> bool:
    import torch

    args = list(node.args[1:])
    if node.op == "call_function" and node.target in (torch.transpose, torch.swapaxes, torch.swapdims) or \
            node.op == "call_method" and node.target in ("transpose", "swapaxes", "swapdims"):
        dims = [node.kwargs.get("dim0", args[0] if args else None), node.kwargs.get("dim1", args[1] if len(args) > 1
                                                                                        else None)]
        return all(isinstance(d, int) for d in dims) and sorted(d % rank for d in dims) == [1, 2]
    if node.op == "call_function" and node.target is torch.permute or \
            node.op == "call_method" and node.target == "permute":
        dims = node.kwargs.get("dims", args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args)
        return all(isinstance(d, int) for d in dims) and \
            [d % rank for d in dims] == [0, 2, 1] + list(range(3, rank))
    return False


def _flatten_dims(node):
    args = list(node.args[1:])
    start = node.kwargs.get("start_dim", args[0] if args else 0)
    end = node.kwargs.get("end_dim", args[1] if len(args) > 1 else -1)
    return start, end


def _text(node) -> str:
    if node.op == "call_method":
        return f"`.{node.target}(...)`"
    if node.op == "call_module":
        return f"the module `{node.target}`"
    name = getattr(node.target, "__name__", str(node.target))
    module = getattr(node.target, "__module__", "") or ""
    return f"`{module + '.' if module.startswith('torch') else ''}{name}(...)`"


# -- splits of the channels -----------------------------------------------------------------

def _split(conv, node) -> None:
    """`x.chunk(n, 1)` / `x.split(s, 1)` with its pieces taken by index: each piece a `slice`."""
    args = list(node.args[1:])
    source = node.args[0] if node.args else None
    shape = _shape(source) if hasattr(source, "op") else None
    name = f"`.{node.target}(...)`" if node.op == "call_method" else f"`torch.{node.target.__name__}(...)`"
    is_chunk = node.target == "chunk" or getattr(node.target, "__name__", "") == "chunk"
    first = node.kwargs.get("chunks" if is_chunk else "split_size_or_sections",
                            node.kwargs.get("split_size", args[0] if args else None))
    dim = node.kwargs.get("dim", args[1] if len(args) > 1 else 0)

    def fail(problem: str, hint: str = ""):
        def raise_(cur):
            raise ImportProblem(_where(conv), f"{name} {problem}", hint or
                                "nnspec cuts the channel axis with `slice`: x1, x2 = x.chunk(2, dim=1) reads as "
                                "two branches that each begin with a slice")
        conv.special[node] = raise_

    if shape is None:
        return fail("on a tensor whose sizes the trace did not record: the pieces' channels are unknown")
    rank = len(shape)
    if not isinstance(dim, int) or dim % rank != 1:
        return fail(f"along dim={dim}: nnspec's slice cuts the channel axis (dim 1) of a [{', '.join(map(str, shape))}]"
                    " tensor only")
    size = shape[1]
    if isinstance(first, int) and is_chunk:
        if first < 1:
            return fail(f"into {first} pieces")
        step = -(-size // first)
        bounds = [(s, min(s + step, size)) for s in range(0, size, step)]
    elif isinstance(first, int):
        if first < 1:
            return fail(f"into pieces of {first} channels")
        bounds = [(s, min(s + first, size)) for s in range(0, size, first)]
    elif isinstance(first, (list, tuple)) and all(isinstance(s, int) and s >= 0 for s in first) and \
            sum(first) == size:
        starts = [sum(first[:i]) for i in range(len(first))]
        bounds = [(s, s + n) for s, n in zip(starts, first)]
    else:
        return fail(f"with {first!r}: the pieces' sizes are not numbers the trace fixes")
    users = list(node.users)
    pieces = []
    for user in users:
        if user.op == "call_function" and user.target is operator.getitem and user.args[0] is node and \
                isinstance(user.args[1], int) and -len(bounds) <= user.args[1] < len(bounds) and not user.kwargs:
            pieces.append(user)
        else:
            return fail(f"gives its pieces to {_text(user)} as one tuple, not each taken by a number "
                        "(x1, x2 = x.chunk(2, dim=1))")
    for piece in pieces:
        start, stop = bounds[piece.args[1]]
        if stop <= start:
            return fail(f"gives an empty piece {piece.args[1]} (channels {start} to {stop})")
        if _shape(piece) is not None and _shape(piece)[1] != stop - start:
            return fail(f"gives piece {piece.args[1]} of {_shape(piece)[1]} channels where {stop - start} were "
                        "computed")
        args_ = ({"start": start} if start else {}) | ({"stop": stop} if stop < size else {})  # no stop: the end
        conv.special[piece] = lambda cur, a=args_: [Item("slice", dict(a))]
    conv.special[node] = lambda cur: []
