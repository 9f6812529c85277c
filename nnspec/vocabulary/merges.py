"""Merges: `add`, `multiply` and `concat` join the outputs of branches that all read the same input.

`residual` is an `add` of a branch and a shortcut (the identity when omitted).
The shape rules live here, next to the layer kinds' own.
"""

from __future__ import annotations

import math

from nnspec.vocabulary.layouts import FEATURES, MAP, TOKENS, Shape

MERGES = ("add", "multiply", "concat")
MERGE_KEYS = ("branches", "name", "repeat", "init", "allow")
CONCAT_AXES = ("channels", "tokens")
SUMMARY = {
    "add": "the sum of its branches' outputs (same shape, or per-channel broadcast)",
    "multiply": "the product of its branches' outputs (same shape, or per-channel broadcast: a gate)",
    "concat": "its branches' outputs joined along the channel axis (`axis: tokens`: along T)",
}


class MergeError(Exception):
    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message, self.hint = message, hint


def keys_of(op: str) -> tuple:
    return MERGE_KEYS + (("axis",) if op == "concat" else ())


def merge_shape(op: str, shapes: list, names: list, axis: str = "channels") -> Shape:
    """The output of a merge whose branches give `shapes`; MergeError names each branch's shape."""
    if op == "concat":
        return _concat(shapes, names, axis)
    first = shapes[0]
    if all(tuple(s) == tuple(first) and s.layout == first.layout for s in shapes):
        grids = {s.grid for s in shapes}
        return Shape(first, first.layout, grids.pop() if len(grids) == 1 else None)
    full = max(shapes, key=lambda s: (len(s), math.prod(s)))  # what the others broadcast to
    for shape in shapes:
        if not (_same(shape, full) or _per_channel(shape, full)):
            raise MergeError(f"the branches of `{op}` do not agree: {_listed(shapes, names)}",
                             "every branch must give the same shape, or per channel: features [C] or a map "
                             "[C, 1, ...] against a map [C, *S]")
    return Shape(full, full.layout)


def _same(a: Shape, b: Shape) -> bool:
    return tuple(a) == tuple(b) and a.layout == b.layout


def _per_channel(small: Shape, full: Shape) -> bool:
    if full.layout != MAP:
        return False
    if small.layout == FEATURES:
        return tuple(small) == (full[0],)
    return small.layout == MAP and len(small) == len(full) and small[0] == full[0] and set(small[1:]) == {1}


def _concat(shapes: list, names: list, axis: str) -> Shape:
    layouts = {s.layout for s in shapes}
    if len(layouts) != 1 or len({len(s) for s in shapes}) != 1:
        raise MergeError(f"the branches of `concat` do not agree: {_listed(shapes, names)}",
                         "every branch must give the same layout and number of axes")
    layout, first = layouts.pop(), shapes[0]
    if axis == "tokens":
        if layout != TOKENS:
            raise MergeError(f"`axis: tokens` joins tokens [T, D] along T, but the branches give "
                             f"{_listed(shapes, names)}", "use the default `axis: channels` for a map or features")
        at = 0
    else:
        at = first.channel_axis
    others = [tuple(d for i, d in enumerate(s) if i != at) for s in shapes]
    if len(set(others)) != 1:
        joined = "T" if axis == "tokens" else "the channel axis"
        raise MergeError(f"the branches of `concat` disagree on an axis other than {joined}: "
                         f"{_listed(shapes, names)}", "all axes but the joined one must be equal")
    dims = list(first)
    dims[at] = sum(s[at] for s in shapes)
    grids = {s.grid for s in shapes}
    grid = grids.pop() if layout == TOKENS and at == 1 and len(grids) == 1 else None
    return Shape(dims, layout, grid)


def _listed(shapes: list, names: list) -> str:
    return ", ".join(f"{name} gives {shape.describe()}" for name, shape in zip(names, shapes))
