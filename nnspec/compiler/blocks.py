"""Checks of the `blocks` section itself: names, argument names, recursion, unused arguments."""

from __future__ import annotations

import re

from nnspec.compiler.arithmetic import names_in
from nnspec.compiler.report import Recorder
from nnspec.names import identifier_problem
from nnspec.vocabulary import initializers as inits
from nnspec.vocabulary.kinds import KINDS, ROLES
from nnspec.vocabulary.merges import MERGES

ARG_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ITEM_KEYS = ("name", "repeat", "init", "allow")
RESERVED_BLOCK_NAMES = set(KINDS) | {"residual"} | set(MERGES) | set(ROLES) | set(inits.REGISTRY)


def check_blocks(blocks: dict, out: Recorder) -> set:
    """Report badly named blocks and arguments; return the names of blocks that call themselves."""
    for name, block in blocks.items():
        kpath = ("blocks", name)
        if name in RESERVED_BLOCK_NAMES:
            out.error(kpath, "NS106", f"block `{name}` is named like a layer kind, role or initializer",
                      "rename the block", key=True)
        problem = identifier_problem(name)
        if problem:
            out.error(kpath, "NS007", f"block name: {problem}", key=True)
        for arg in block.args:
            # An argument never reaches generated code (blocks are expanded), so `bias` or `x` are fine
            # names; it only has to be something `$name` can refer to.
            problem = None if ARG_NAME.fullmatch(arg) else (
                f"{arg!r} is not a name that `$name` can refer to ([A-Za-z_][A-Za-z0-9_]*)")
            if arg in ITEM_KEYS:
                out.error(kpath + ("args", arg), "NS105", f"block argument `{arg}` clashes with the item key "
                          f"`{arg}`", "rename the argument", key=True)
            elif problem:
                out.error(kpath + ("args", arg), "NS007", f"block argument: {problem}", key=True)
    calls = {name: set(_called_names(block.layers)) & set(blocks) for name, block in blocks.items()}
    recursive = set()
    for name in calls:
        if _reaches(calls, name, name):
            out.error(("blocks", name), "NS105", f"block `{name}` calls itself (directly or through another "
                                                 "block)", "a block may not be recursive", key=True)
            recursive.add(name)
    return recursive


def check_unused_args(blocks: dict, out: Recorder) -> None:
    """An argument that the block's body never refers to, read from the body itself."""
    for name, block in blocks.items():
        used = arg_refs(block.layers)
        for arg in block.args:
            if arg not in used and arg not in ITEM_KEYS:  # a clash with an item key is reported already
                out.error(("blocks", name, "args", arg), "NS105", f"block argument `{arg}` of `{name}` is "
                          "never used in its body", f"use it as `${arg}` or remove it", key=True)


def arg_refs(raw) -> set:
    """Every `$name` a block body refers to, anywhere in its raw data."""
    if isinstance(raw, str):
        match = ARG_REF.match(raw)
        return {match.group(1)} if match else names_in(raw)
    values = raw.values() if isinstance(raw, dict) else raw if isinstance(raw, list) else ()
    found: set = set()
    for value in values:
        found |= arg_refs(value)
    return found


def _called_names(items) -> list:
    names = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict) and len(item) == 1:
            kind, body = next(iter(item.items()))
            names.append(kind)
            for part in _nested_lists(kind, body):
                names.extend(_called_names(part))
    return names


def _nested_lists(kind: str, body) -> list:
    """The item lists inside a residual or a merge."""
    if kind == "residual":
        return [body] if isinstance(body, list) else [body.get("branch"), body.get("shortcut")] \
            if isinstance(body, dict) else []
    if kind in MERGES:
        branches = body.get("branches") if isinstance(body, dict) else body
        if isinstance(branches, dict):
            return list(branches.values())
        return branches if isinstance(branches, list) else []
    return []


def _reaches(graph: dict, start: str, target: str) -> bool:
    seen, stack = set(), list(graph.get(start, ()))
    while stack:
        node = stack.pop()
        if node == target:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, ()))
    return False
