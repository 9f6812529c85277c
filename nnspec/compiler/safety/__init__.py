"""Initializer safety analysis: the NS2xx rules, read from the IR tree the lowering passes give.

Runs on a lowered graph that has no errors. The rules come in three tables:
tensor rules look at one tensor and its initializer (NS206-NS211), layer rules
at one layer and whether it sits at an exempt position (NS201, NS204, NS205),
and flow rules follow a layer's output to the layers after it (NS202, NS203).
Each rule yields `Finding`s; waivers (`allow`) drop findings, a waiver that
drops nothing becomes NS213, and findings at one block-body position are merged
into one diagnostic naming the block calls they apply to.

The flow is read from the IR tree: block calls and `repeat` containers are
flattened into the sequence around them, so "the next layer" after a block
call is the next item of the enclosing sequence; a residual is one opaque step
whose branch and shortcut are chains of their own, ending at the residual's add.
"""

from __future__ import annotations

from nnspec.compiler.ir import Graph
from nnspec.compiler.safety.facts import WAIVABLE, Finding
from nnspec.compiler.safety.flow import Context, build_flow, exempt_positions
from nnspec.compiler.safety.flow_rules import FLOW_RULES
from nnspec.compiler.safety.layer_rules import LAYER_RULES
from nnspec.compiler.safety.report import apply_waivers, merge, unused_waivers
from nnspec.compiler.safety.tensor_rules import tensor_findings
from nnspec.diagnostics import Diagnostic

__all__ = ["WAIVABLE", "run_rules"]


def collect_findings(graph: Graph, ctx: Context) -> list[Finding]:
    findings = []
    for layer in graph.layers():
        broken = False
        for tensor in layer.tensors.values():
            for item in tensor_findings(tensor):
                findings.append(item)
                broken = broken or item.code not in WAIVABLE
        if broken:
            continue  # the layer cannot be built as written; its semantics are moot
        for rule in LAYER_RULES + FLOW_RULES:
            findings.extend(rule(layer, ctx))
    return findings


def run_rules(graph: Graph, doc=None) -> list[Diagnostic]:
    """Every NS2xx diagnostic of a lowered graph (NS212 and the NS211/NS213 parts found while lowering aside)."""
    flow = build_flow(graph)
    ctx = Context(flow, exempt_positions(flow))
    kept, used = apply_waivers(collect_findings(graph, ctx))
    return merge(kept, flow) + unused_waivers(graph, used, ctx)
