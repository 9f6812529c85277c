"""The IR as a tree of things to draw: layer boxes, merges (branches joining) and groups.

A merge is whatever node of the IR computes several branch sequences from one input and joins
them. `MERGES` maps an IR node type to a function returning its branches and the join's label;
supporting a new merge node (concat, multiply, ...) is one such function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional, Union

from nnspec.compiler import ir
from nnspec.compiler.ir import Graph, Layer, Sequence
from nnspec.diagnostics import Diagnostic

# initializer name -> family (the colour of its chip)
FAMILIES = {
    "zeros": "constant", "ones": "constant", "constant": "constant", "values": "constant",
    "log_prior": "constant",
    "eye": "identity", "dirac": "identity",
    "uniform": "uniform",
    "normal": "normal", "trunc_normal": "normal",
    "orthogonal": "orthogonal",
    "sparse": "sparse",
}
VARIANCE_SCALING = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "variance_scaling",
                    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal",
                    "torch_default")
FAMILY_ORDER = ("constant", "identity", "uniform", "normal", "variance-scaling", "orthogonal", "sparse", "other")


def family(init_name: str) -> str:
    if init_name in VARIANCE_SCALING:
        return "variance-scaling"
    return FAMILIES.get(init_name, "other")


@dataclass
class Init:
    role: str
    text: str  # "kaiming_normal(mode='fan_out', ...)"
    family: str
    source: str  # file:line it came from, or "default"


@dataclass
class Box:
    """One layer of the IR."""

    id: str
    path: str
    name: str
    kind: str
    shape: tuple
    params: int
    line: int
    inits: list = field(default_factory=list)
    findings: list = field(default_factory=list)  # Diagnostic


@dataclass
class Branch:
    label: str  # "branch", "shortcut", "identity"
    items: list  # of Item; empty: the input passes through unchanged


@dataclass
class Merge:
    id: str
    path: str
    name: str
    branches: list  # of Branch
    join: str  # "add", "concat", "multiply"
    shape: tuple
    findings: list = field(default_factory=list)


@dataclass
class Group:
    """A block call or a `repeat` container, collapsible in HTML."""

    id: str
    path: str
    name: str
    kind: str  # "block", "repeat"
    label: str  # "block bottleneck", "repeat x3"
    items: list
    shape: tuple
    layers: int = 0
    params: int = 0
    findings: list = field(default_factory=list)  # on the call itself
    inner_findings: int = 0  # findings anywhere inside, its own included
    worst: str = ""  # "error", "warning", "info" or "" over everything inside


Item = Union[Box, Merge, Group]


@dataclass
class View:
    name: str
    file: str
    input_shape: tuple
    output_shape: tuple
    params: int
    layers: int
    items: list
    unplaced: list  # findings that sit on no layer (top-level `init`, blocks never called, ...)
    findings: list  # all of them, sorted


def merge_branches(node: ir.Merge) -> tuple[list[tuple[str, Optional[Sequence]]], str]:
    """(label, branch or None for the identity) per branch, and the join's label."""
    if node.residual:
        branch, shortcut = node.branches
        return [("branch", branch), ("shortcut", shortcut) if shortcut.items else ("identity", None)], "add"
    return [(b.name, b) if b.items else (f"{b.name}: identity", None) for b in node.branches], node.op


MERGES: dict[type, Callable] = {ir.Merge: merge_branches}


def _severity_rank(severity: str) -> int:
    return {"error": 3, "warning": 2, "info": 1}.get(severity, 0)


class _Builder:
    def __init__(self, graph: Graph, diagnostics: list[Diagnostic]):
        self.graph = graph
        self.nodes: list = []  # (span, parent target, target) for finding placement
        self.parents: list = [None]
        self.ids: set = set()
        self.diagnostics = sorted(diagnostics, key=Diagnostic.sort_key)

    def ident(self, path: str) -> str:
        """An HTML id for a node: its path with the characters ids dislike replaced, made unique."""
        base = _ident(path)
        ident, n = base, 1
        while ident in self.ids:
            n += 1
            ident = f"{base}--{n}"
        self.ids.add(ident)
        return ident

    def item(self, node) -> Item:
        if isinstance(node, Layer):
            box = Box(self.ident(node.path), node.path, node.name, node.kind, tuple(node.out_shape), node.params,
                      node.span.line,
                      [Init(t.role, t.init.describe(), family(t.init.name), t.source) for t in node.tensors.values()])
            self.nodes.append((node.span, self.parents[-1], box))
            return box
        if type(node) in MERGES:
            parts, join = MERGES[type(node)](node)
            merge = Merge(self.ident(node.path), node.path, node.name, [], join, tuple(node.out_shape))
            self.nodes.append((node.span, self.parents[-1], merge))
            self.parents.append(merge)
            for label, seq in parts:
                items = [] if seq is None else self.items(seq.items)
                merge.branches.append(Branch(label, items))
            self.parents.pop()
            return merge
        if isinstance(node, Sequence):
            if node.kind == "repeat":
                label = f"repeat \u00d7{len(node.items)}"
            elif node.block:
                label = f"block {node.block}"
            else:
                label = node.kind
            group = Group(self.ident(node.path), node.path, node.name, node.kind, label, [], tuple(node.out_shape))
            self.nodes.append((node.span, self.parents[-1], group))
            self.parents.append(group)
            group.items = self.items(node.items)
            self.parents.pop()
            return group
        raise TypeError(f"no drawing for IR node {type(node).__name__}")

    def items(self, nodes) -> list:
        return [self.item(n) for n in nodes]

    def place(self, diag: Diagnostic) -> list:
        """The drawn nodes of the innermost YAML item that holds the diagnostic's position: one node,
        or one per call when the item is in a block body called several times; when a container and
        the copies inside it share the item (`repeat`), the container."""
        at = (diag.line, diag.column)
        hits = [(span, parent, target) for span, parent, target in self.nodes
                if span.file == diag.file and (span.line, span.column) <= at < (span.end_line, span.end_column)]
        if not hits:
            return []
        inner = max((s.line, s.column, -s.end_line, -s.end_column) for s, _, _ in hits)
        chosen = [(p, t) for s, p, t in hits if (s.line, s.column, -s.end_line, -s.end_column) == inner]
        ids = {id(t) for _, t in chosen}
        parent_of = {id(t): p for _, p, t in self.nodes}
        result = []
        for _, target in chosen:
            up = parent_of.get(id(target))
            while up is not None and id(up) not in ids:
                up = parent_of.get(id(up))
            if up is None:
                result.append(target)
        return result


def _ident(path: str) -> str:
    return "n-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in path)


def _summarise(items: list) -> tuple[int, int, int, int]:
    """(layers, params, findings, worst severity rank) over a list of items, filling in groups."""
    layers = params = found = worst = 0
    for it in items:
        own = it.findings
        found += len(own)
        for d in own:
            worst = max(worst, _severity_rank(d.severity))
        if isinstance(it, Box):
            layers += 1
            params += it.params
        elif isinstance(it, Merge):
            for b in it.branches:
                n, p, f, w = _summarise(b.items)
                layers, params, found, worst = layers + n, params + p, found + f, max(worst, w)
        else:
            n, p, f, w = _summarise(it.items)
            it.layers, it.params = n, p
            it.inner_findings = f + len(own)
            it.worst = {3: "error", 2: "warning", 1: "info"}.get(max(w, max((_severity_rank(d.severity)
                                                                              for d in own), default=0)), "")
            layers, params, found, worst = layers + n, params + p, found + f, max(worst, w)
    return layers, params, found, worst


def build_view(graph: Graph, diagnostics: list[Diagnostic]) -> View:
    builder = _Builder(graph, diagnostics)
    items = builder.items(graph.root.items)
    unplaced = []
    for diag in builder.diagnostics:
        targets = builder.place(diag)
        for target in targets:
            target.findings.append(diag)
        if not targets:
            unplaced.append(diag)
    layers, params, _, _ = _summarise(items)
    return View(graph.name, graph.file, tuple(graph.input_shape), tuple(graph.output_shape), params, layers,
                items, unplaced, builder.diagnostics)


def shape_text(shape: tuple) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def params_text(n: int) -> str:
    if n < 10_000:
        return f"{n:,} params" if n else "no params"
    if n >= 10**12:  # integer arithmetic: a spec may count more parameters than a float can hold
        digits = str(n)
        return f"{digits[0]}.{digits[1:3]}e{len(digits) - 1} params"
    for div, unit in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit} params"
    return f"{n} params"


def finding_text(d: Diagnostic) -> str:
    return f"{d.file}:{d.line}:{d.column}: {d.code} {d.severity}: {d.message}"


def iter_boxes(items: list):
    for it in items:
        if isinstance(it, Box):
            yield it
        elif isinstance(it, Merge):
            for b in it.branches:
                yield from iter_boxes(b.items)
        else:
            yield from iter_boxes(it.items)
