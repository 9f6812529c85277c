"""Entry point: a lowered spec and its diagnostics -> the diagram's text in one format."""

from __future__ import annotations

FORMATS = ("html", "svg")


def render_graph(graph, diagnostics: list, fmt: str) -> str:
    """The diagram of `graph` (an IR `Graph`) with `diagnostics` attached, as "html" or "svg" text."""
    from nnspec.diagram.view import build_view

    view = build_view(graph, diagnostics)
    if fmt == "svg":
        from nnspec.diagram.svg import render_svg

        return render_svg(view)
    if fmt == "html":
        from nnspec.diagram.html import render_html

        return render_html(view)
    raise ValueError(f"unknown diagram format {fmt!r}; expected one of {', '.join(FORMATS)}")
