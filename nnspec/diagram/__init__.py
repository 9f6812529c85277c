"""Pictures of a spec: the architecture diagram (`nnspec graph`) and the probe chart (`nnspec probe --plot`).

Everything here reads the IR and the diagnostics of `check`; nothing imports a framework. The
pieces: `view` turns the IR into a small tree of boxes, merges and groups (with the findings and
initializers attached), `layout` places that tree on a plane for SVG, `svg` and `html` write the
two output formats, `chart` draws the probe's figures.
"""

from nnspec.diagram.render import render_graph

__all__ = ["render_graph"]
