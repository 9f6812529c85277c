"""Structural lowering shared by both backends: which blocks become classes, comments per item."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
from functools import cache

from nnspec.compiler.ir import Graph, Merge, iter_nodes


def comment_for(node, spec_file: str) -> str:
    """`file:line` of the item a node came from, with the file as the user named it."""
    return json.dumps(f"{os.path.basename(spec_file)}:{node.span.line}", ensure_ascii=True)[1:-1]


@cache
def _module_source(module_name: str) -> tuple[str, dict]:
    """The text of a runtime module (found without importing it, so no framework is loaded)
    and the source segment of each top-level definition, decorators included."""
    spec = importlib.util.find_spec(module_name)
    with open(spec.origin, encoding="utf-8") as fh:
        text = fh.read()
    lines = text.splitlines(keepends=True)
    segments = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            segments[node.name] = "".join(lines[start:node.end_lineno]).strip()
    return text, segments


def runtime_source(module_name: str, name: str) -> str:
    """Source of the runtime helper `name` defined in `module_name`, for emitted files."""
    return _module_source(module_name)[1][name]


def kinds_used(graph: Graph) -> set[str]:
    return {layer.kind for layer in graph.layers()}


def merges_used(graph: Graph) -> list[Merge]:
    return [node for node in iter_nodes(graph.root) if isinstance(node, Merge)]


__all__ = ["comment_for", "kinds_used", "merges_used", "runtime_source"]
