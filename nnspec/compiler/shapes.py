"""The shape pass: the item tree -> IR nodes with every input and output shape inferred.

Shapes flow through each sequence in order; after an item that failed, the
input of what follows is unknown, so only what does not depend on it is
checked. Every layer the pass reached is listed with what it learnt, for the
initializer pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from nnspec.compiler.ir import Layer, Merge, Sequence
from nnspec.compiler.report import Recorder, Scoped
from nnspec.compiler.tree import FailedItem, GroupItem, LayerItem, MergeItem
from nnspec.vocabulary.kinds import KINDS, ShapeError
from nnspec.vocabulary.layouts import FEATURES, MAP, TOKENS, WRITTEN, Shape, as_shape
from nnspec.vocabulary.merges import MergeError, merge_shape

SHAPE_HINTS = {
    "NS102": "use a smaller kernel or dilation, add padding, or downsample less before this layer",
    "NS103": "make the input channels and `out` multiples of `groups`",
    "NS104": "check `input` and the layers before this one (`flatten` turns [C, H, W] into [C*H*W])",
}
LAYOUT_HINTS = {
    (TOKENS, MAP): "`to_map` first: tokens [T, D] -> a map [D, *S] (the grid the tokens came from, or "
                   "`to_map: {size: [H, W]}`)",
    (MAP, TOKENS): "`to_tokens` first: a map [C, *S] -> tokens [prod(S), C]",
    (FEATURES, TOKENS): "features [F] have no positions: an `lstm`/`gru` with `output: last`, a global pool or "
                        "`flatten` before this ended the sequence; keep tokens (`output: sequence`), or give the "
                        "input as `{shape: [T, D], layout: tokens}`",
}


@dataclass
class Reached:
    """A layer item the pass reached: its IR layer, or None when its input was unknown or its shape failed."""

    item: LayerItem
    layer: Optional[Layer]
    input_known: bool


@dataclass
class Shaped:
    root: Optional[Sequence]
    reached: list = field(default_factory=list)  # Reached, in model order
    failed: bool = False


def infer_shapes(tree: GroupItem, shape: Shape, dtype: str, out: Recorder) -> Shaped:
    result = Shaped(None)
    items, out_shape, _ = _Shapes(out, result).sequence(tree.items, shape, dtype)
    result.root = Sequence("", "", "model", items, shape, out_shape, tree.span)
    return result


class _Shapes:
    def __init__(self, out: Recorder, result: Shaped):
        self.recorder, self.doc, self.result = out, out.doc, result
        self.add_depth = 0  # how many `add`/`residual` branches enclose the current item (for drop_path)

    def sequence(self, items: list, shape: Optional[tuple], dtype: str) -> tuple[list, Optional[tuple], str]:
        nodes = []
        for item in items:
            node = None if isinstance(item, FailedItem) else self.node(item, shape, dtype)
            if node is None:
                self.result.failed = True
                shape = None
                continue
            nodes.append(node)
            shape, dtype = node.out_shape, getattr(node, "out_dtype", "float32")
        return nodes, shape, dtype

    def node(self, item, shape, dtype):
        if isinstance(item, LayerItem):
            return self.layer(item, shape, dtype)
        if isinstance(item, MergeItem):
            return self.merge(item, shape, dtype)
        if item.kind == "repeat":
            return self.repeat(item, shape, dtype)
        nodes, out_shape, out_dtype = self.sequence(item.items, shape, dtype)
        seq = Sequence(item.path, item.name, item.kind, nodes, shape, out_shape, item.span, block=item.block,
                       args=item.args)
        seq.out_dtype = out_dtype
        return seq

    def repeat(self, group: GroupItem, shape, dtype):
        copies, cur, cur_dtype = [], shape, dtype
        for item in group.items:
            node = self.node(item, cur, cur_dtype)
            if node is None:
                return None
            copies.append(node)
            cur, cur_dtype = node.out_shape, getattr(node, "out_dtype", "float32")
        seq = Sequence(group.path, group.name, "repeat", copies, shape, cur, group.span, count=group.count)
        seq.out_dtype = cur_dtype
        return seq

    def merge(self, item: MergeItem, shape, dtype):
        out = Scoped(self.recorder, item.calls)
        if shape is not None and dtype != "float32":
            what = "a residual" if item.residual else f"`{item.op}`"
            out.error(item.ipath, "NS104", f"{what} needs a float input, got integer ids")
            return None
        branches, shapes = [], []
        self.add_depth += item.op == "add"
        try:
            for group in item.branches:
                nodes, b_shape, _ = self.sequence(group.items, shape, dtype)
                branches.append(Sequence(group.path, group.name, "branch", nodes, shape, b_shape, group.span))
                shapes.append(b_shape)
        finally:
            self.add_depth -= item.op == "add"
        if any(s is None for s in shapes):
            return None  # the failure is reported already
        if item.residual and tuple(shapes[0]) != tuple(shapes[1]):
            which = "identity shortcut" if not item.branches[1].items else "shortcut"
            out.error(item.ipath, "NS101", f"residual branch gives {list(shapes[0])} but the {which} gives "
                                           f"{list(shapes[1])}",
                      "add a projection shortcut (e.g. a 1x1 conv with the branch's stride) or fix the branch")
            return None
        try:
            out_shape = merge_shape(item.op, shapes, [b.name for b in branches], item.axis)
        except MergeError as exc:
            out.error(item.ipath, "NS101", exc.message, exc.hint)
            return None
        node = Merge(item.path, item.name, item.op, branches, shape, out_shape, self.doc.span(item.ipath), item.axis,
                     item.residual)
        node.out_dtype = "float32"
        return node

    def layer(self, item: LayerItem, shape, dtype):
        if shape is None:  # an earlier item failed: the initializer pass checks what does not depend on the input
            self.result.reached.append(Reached(item, None, False))
            return None
        layer = self.infer(item, shape, dtype)
        self.result.reached.append(Reached(item, layer, True))
        return layer

    def infer(self, item: LayerItem, shape: tuple, dtype: str) -> Optional[Layer]:
        out = Scoped(self.recorder, item.calls)
        kind_name, args, ipath = item.kind, item.args, item.ipath
        kind = KINDS[kind_name]
        kpath = ipath + (kind_name,)
        if dtype != "float32" and kind_name != "embedding":
            out.error(ipath, "NS104", f"`{kind_name}` needs a float input, got integer ids {list(shape)}",
                      "integer ids feed an `embedding` layer first")
            return None
        if kind_name == "embedding" and dtype != "int64":
            out.error(ipath, "NS104", f"`embedding` needs integer ids, got a float input {list(shape)}",
                      "declare the input as `input: {shape: [T], dtype: int64}`")
            return None
        if kind_name == "drop_path" and not self.add_depth:
            out.error(ipath, "NS104", "`drop_path` drops a whole branch per sample; here it is not inside a branch "
                                      "of an `add` or `residual`, so it would drop the model's whole signal",
                      "put it at the end of a residual branch (stochastic depth), or use `dropout`")
            return None
        if kind.layouts is not None and shape.layout not in kind.layouts:
            want = " or ".join(WRITTEN[layout] for layout in kind.layouts)
            out.error(ipath, "NS104", f"`{kind_name}` needs {want} input, got {shape.describe()}",
                      LAYOUT_HINTS.get((shape.layout, kind.layouts[0]), SHAPE_HINTS["NS104"]))
            return None
        try:
            out_shape = as_shape(kind.infer(args, shape, dtype), shape, kind.out_layout)
            geometry = kind.geometry(args, kind.ndim) if kind.geometry is not None else {}
            if any(s < 1 for s in out_shape):
                raise ShapeError("NS102", f"output size {list(out_shape)} has an axis below 1")
        except ShapeError as exc:
            target = kpath + (exc.arg,) if exc.arg and exc.arg in item.body else ipath
            msg = exc.message if exc.code == "NS004" else f"`{kind_name}` on input {list(shape)}: {exc.message}"
            out.error(target, exc.code, msg, exc.hint or SHAPE_HINTS.get(exc.code, ""))
            return None
        if shape.layout == MAP and _acts_on_last_axis(item):
            out.error(ipath, "NS107", f"`{kind_name}` on {shape.describe()} acts on its last spatial axis "
                                      f"(size {shape[-1]}), not on its channels",
                      "to act on the channels, write `to_tokens` first (a map [C, *S] -> tokens [prod(S), C]) or "
                      "`flatten`; `layernorm: {over: channels}` normalises each position over C")
        return Layer(item.path, item.name, kind_name, args, geometry, shape, out_shape, dtype, "float32",
                     self.doc.span(ipath), ipath, calls=item.calls)


def _acts_on_last_axis(item: LayerItem) -> bool:
    """A kind that acts on the last axis (the channels of features and tokens) with that axis not chosen."""
    if item.kind == "linear":
        return True
    if item.kind in ("layernorm", "rmsnorm"):
        return item.args.get("over", "last") == "last" and "over" not in item.body
    return item.kind == "softmax" and "axis" not in item.body
