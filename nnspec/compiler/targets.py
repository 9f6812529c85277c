"""Target support (NS3xx): constructs one of the two frameworks cannot express with the same meaning."""

from __future__ import annotations

from nnspec.compiler.ir import Graph
from nnspec.diagnostics import Diagnostic
from nnspec.schema.loader import Document


def target_rules(graph: Graph, doc: Document) -> list[Diagnostic]:
    out = []
    for layer in graph.layers():
        g = layer.geometry
        if layer.kind.startswith("conv") and max(g["stride"]) > 1 and max(g["dilation"]) > 1:
            out.append(Diagnostic.at(
                doc.span(layer.doc_path + (layer.kind, "dilation")), "NS301",
                f"`{layer.kind}` with stride {list(g['stride'])} and dilation {list(g['dilation'])}: Keras "
                "convolutions cannot combine a stride above 1 with a dilation above 1",
                "use stride 1 and subsample with a pooling layer, or drop the dilation"))
    return out

