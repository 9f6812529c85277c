"""Structural lowering shared by both backends: which blocks become classes, comments per item."""

from __future__ import annotations

import json
import os

from nnspec.compiler.ir import Graph, Layer, Residual, Sequence


def comment_for(node, spec_file: str) -> str:
    """`file:line` of the item a node came from, with the file as the user named it."""
    return json.dumps(f"{os.path.basename(spec_file)}:{node.span.line}", ensure_ascii=True)[1:-1]


def block_signatures(graph: Graph) -> dict[str, list[str]]:
    """Block name -> the child names of its first call (one emitted class per block)."""
    found: dict[str, list[str]] = {}

    def walk(node):
        if isinstance(node, Sequence):
            if node.kind == "block" and node.block not in found:
                found[node.block] = [child.name for child in node.items]
            for child in node.items:
                walk(child)
        elif isinstance(node, Residual):
            walk(node.branch)
            if node.shortcut is not None:
                walk(node.shortcut)

    walk(graph.root)
    return found


def kinds_used(graph: Graph) -> set[str]:
    return {layer.kind for layer in graph.layers()}


def uses_residual(graph: Graph) -> bool:
    def walk(node) -> bool:
        if isinstance(node, Residual):
            return True
        if isinstance(node, Sequence):
            return any(walk(child) for child in node.items)
        return False

    return walk(graph.root)


__all__ = ["Layer", "Residual", "Sequence", "block_signatures", "comment_for", "kinds_used", "uses_residual"]
