"""The IR: a tree of named nodes with inferred shapes and resolved initializers.

The tree mirrors the module structure of the built model: a `Sequence` is a
container (the model, a block call, a `repeat` container, a branch), a `Merge`
joins the outputs of its branches (add, multiply, concat; `residual` is an add
of `branch` and `shortcut`), a `Layer` is one framework layer. Every node
carries the span of the YAML item it came from.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Optional, Union

from nnspec.diagnostics import Span


@dataclass(frozen=True)
class InitSpec:
    name: str
    args: dict
    span: Optional[Span] = None  # where the initializer is written

    def describe(self) -> str:
        if self.name == "chunks":
            return f"chunks({', '.join(part.describe() for part in self.args['parts'])})"
        if not self.args:
            return self.name
        inner = ", ".join(f"{k}={_short(v)}" for k, v in self.args.items())
        return f"{self.name}({inner})"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass
class Tensor:
    path: str
    role: str
    shape: tuple
    fan_in: int
    fan_out: int
    init: InitSpec
    origin: str  # "layer", "block call X", "residual X", "init.<kind>.<role>", "init.<role>", "default"
    origin_span: Optional[Span]
    layer: Layer = field(repr=False, default=None)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def source(self) -> str:
        return self.origin_span.at() if self.origin_span else "default"


def chunk_parts(tensor: Tensor) -> list:
    """The parts of a tensor whose initializer is `chunks`: each a Tensor of its own shape, fans and init.

    The first axis is split into n equal parts. Fans follow PyTorch's rule on the part (fan_out shrinks with
    the rows); a 1-D part (a bias) keeps the fans of the whole, which its default reads from the layer.
    """
    parts = tensor.init.args["parts"]
    rows = tensor.shape[0] // len(parts)
    shape = (rows, *tensor.shape[1:])
    if len(shape) >= 2:
        receptive = 1
        for size in shape[2:]:
            receptive *= size
        fan_in, fan_out = shape[1] * receptive, rows * receptive
    else:
        fan_in, fan_out = tensor.fan_in, tensor.fan_out
    return [Tensor(f"{tensor.path}#chunk{i}", tensor.role, shape, fan_in, fan_out, part, tensor.origin,
                   tensor.origin_span, tensor.layer) for i, part in enumerate(parts)]


@dataclass
class Layer:
    path: str
    name: str
    kind: str
    args: dict  # validated arguments, item keys removed
    geometry: dict  # normalised conv/pool geometry, empty otherwise
    in_shape: tuple
    out_shape: tuple
    in_dtype: str
    out_dtype: str
    span: Span
    doc_path: tuple
    tensors: dict = field(default_factory=dict)  # role -> Tensor
    allow: dict = field(default_factory=dict)  # code -> (reason, span)
    calls: tuple = ()  # enclosing block calls, outermost first: (path, span)

    @property
    def params(self) -> int:
        return sum(t.numel for t in self.tensors.values())


@dataclass
class Sequence:
    path: str
    name: str
    kind: str  # "model", "block", "repeat", "branch", "shortcut"
    items: list
    in_shape: tuple
    out_shape: tuple
    span: Span
    block: Optional[str] = None
    args: Optional[dict] = None  # a block call: the values of its arguments (provenance for emitted classes)
    count: object = None  # a `repeat`: its count as written (`3`, or `$n` in a block body)


@dataclass
class Merge:
    """Every branch reads the merge's input; their outputs are added, multiplied or concatenated."""

    path: str
    name: str
    op: str  # "add", "multiply", "concat"
    branches: list  # Sequence per branch, in order; a branch without items is the identity
    in_shape: tuple
    out_shape: tuple
    span: Span
    axis: str = "channels"  # concat: the channel axis, or "tokens" (T)
    residual: bool = False  # written as `residual`: branches `branch` and `shortcut`

    @property
    def shortcut_is_identity(self) -> bool:
        return self.residual and not self.branches[1].items


Node = Union[Layer, Sequence, Merge]


@dataclass
class Graph:
    name: str
    class_name: str
    input_shape: tuple
    input_dtype: str
    seed: Optional[int]
    root: Sequence
    file: str
    blocks: dict = field(default_factory=dict)  # block name -> span of its definition

    @property
    def output_shape(self) -> tuple:
        return self.root.out_shape

    def layers(self) -> Iterator[Layer]:
        yield from iter_layers(self.root)

    def tensors(self) -> Iterator[Tensor]:
        for layer in self.layers():
            yield from layer.tensors.values()

    @property
    def params(self) -> int:
        return sum(t.numel for t in self.tensors())


def iter_layers(node: Node) -> Iterator[Layer]:
    """The layers under `node`, depth first, in order (a walk with a stack: no generator per level)."""
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, Layer):
            yield node
        else:
            stack.extend(reversed(node.items if isinstance(node, Sequence) else node.branches))


def iter_nodes(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, Sequence):
        for item in node.items:
            yield from iter_nodes(item)
    elif isinstance(node, Merge):
        for branch in node.branches:
            yield from iter_nodes(branch)
