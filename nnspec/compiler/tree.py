"""The item tree: a spec with its blocks expanded, arguments substituted, repeats unrolled and every item named.

It is what the expansion pass gives and the shape pass reads. Layer arguments
are validated; shapes are not known yet. Every item keeps its document path,
so later passes report at the YAML line it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from nnspec.diagnostics import Span


@dataclass(eq=False)
class Context:
    """The `init` and `allow` of a block call, residual or merge: every layer inside inherits them."""

    label: str  # "block call stage_1", "residual b.residual_1", "add add_1": the origin `inits` shows
    init: dict  # (role,) or (kind, role) -> InitSpec
    allow: dict  # code -> (reason, span)
    init_path: tuple  # document path of the `init` mapping
    calls: tuple = ()  # the block calls it was written under
    used: set = field(default_factory=set)  # the init keys some tensor took


@dataclass
class LayerItem:
    kind: str
    args: dict  # validated arguments, item keys removed
    body: dict  # the item's mapping as written (after substitution): its `init` and `allow` are read later
    ipath: tuple  # document path of the item
    name: str
    path: str
    calls: tuple = ()  # enclosing block calls, outermost first: (path, span)
    inherited: tuple = ()  # enclosing containers' Contexts, outermost first


@dataclass
class GroupItem:
    """A container: the model, a block call, a `repeat` container, a residual's branch or shortcut."""

    kind: str  # "model", "block", "repeat", "branch"
    name: str
    path: str
    span: Span
    items: list = field(default_factory=list)
    block: Optional[str] = None
    args: Optional[dict] = None  # a block call: its arguments' values (defaults included), for emitted classes
    count: object = None  # a `repeat`: the count as written in a block body (`$n`), for emitted loops


@dataclass
class MergeItem:
    """`add`, `multiply`, `concat`, or `residual` (an add of `branch` and `shortcut`)."""

    op: str
    name: str
    path: str
    ipath: tuple
    branches: list  # GroupItem per branch; one without items is the identity
    calls: tuple = ()
    axis: str = "channels"
    residual: bool = False


@dataclass
class FailedItem:
    """An item that could not be expanded (reported already): what follows it has an unknown input."""

    ipath: tuple


Item = Union[LayerItem, GroupItem, MergeItem, FailedItem]
