"""From findings to diagnostics: waivers (NS213) and one diagnostic per block-body position."""

from __future__ import annotations

from nnspec.compiler.ir import Graph, Layer
from nnspec.compiler.safety.facts import WAIVABLE, Finding, this
from nnspec.compiler.safety.flow import Context, Flow
from nnspec.diagnostics import Diagnostic, Span

MAX_NAMED = 5


def apply_waivers(findings: list[Finding]) -> tuple[list[Finding], set]:
    """Drop waived findings; return the rest and the (code, span) of every waiver that dropped one."""
    kept, used = [], set()
    for item in findings:
        waiver = item.layer.allow.get(item.code)
        if waiver is not None and item.code in WAIVABLE:
            used.add((item.code, waiver[1]))
        else:
            kept.append(item)
    return kept, used


def unused_waivers(graph: Graph, used: set, ctx: Context) -> list[Diagnostic]:
    covered: dict[tuple, list[Layer]] = {}
    for layer in graph.layers():
        for code, (_, span) in layer.allow.items():
            covered.setdefault((code, span), []).append(layer)
    return [unused_waiver(code, span, layers, ctx) for (code, span), layers in covered.items()
            if (code, span) not in used]


def unused_waiver(code: str, span: Span, layers: list, ctx: Context) -> Diagnostic:
    if code not in WAIVABLE:
        return Diagnostic.at(span, "NS213", f"this waiver of {code} waives nothing: {code} cannot be waived, "
                                            f"{_why_not_waivable(code)}",
                             "fix the problem instead and remove the waiver; only "
                             + ", ".join(WAIVABLE) + " can be waived")
    spans = {layer.span for layer in layers}
    if len(spans) == 1:
        subject = this(layers[0]) + (f" in any of its {len(layers)} copies" if len(layers) > 1 else "")
    else:
        subject = f"any of the {len(layers)} layers it covers"
    reasons = {ctx.exemption(layer) for layer in layers} if code in ("NS201", "NS205") else {None}
    why = f" ({reasons.pop()} is exempt from {code})" if len(reasons) == 1 and None not in reasons else ""
    return Diagnostic.at(span, "NS213", f"this waiver of {code} waives nothing: {code} does not fire on {subject}{why}",
                         "remove the waiver: a stale waiver hides the next real problem")


def _why_not_waivable(code: str) -> str:
    if code in ("NS206", "NS208", "NS210", "NS211"):
        return "since the frameworks refuse that initializer on that tensor (the model could not be built)"
    if code == "NS212":
        return "since it is about a model-level `init` default, not a layer"
    if code == "NS213":
        return "since it reports waivers themselves"
    return "since it is a problem of the spec itself, not an initializer choice"


def merge(findings: list[Finding], flow: Flow) -> list[Diagnostic]:
    """One diagnostic per position and code, naming the block calls (or repeat copies) it applies to.

    Where the calls give different messages (other channel counts, say), each message names its own calls.
    """
    groups: dict[tuple, dict[str, tuple[Finding, list, list]]] = {}
    for item in findings:
        key = (item.span.file, item.span.line, item.span.column, item.code)
        _, calls, copies = groups.setdefault(key, {}).setdefault(item.message, (item, [], []))
        if item.layer.calls:
            path, span = item.layer.calls[-1]
            _add_once(calls, f"`{path}` (line {span.line})")
        elif id(item.layer) in flow.in_repeat:
            _add_once(copies, f"`{item.layer.path}`")
    merged = []
    for variants in groups.values():
        first = next(iter(variants.values()))[0]
        message = "; ".join(item.message + _suffix(calls, copies) for item, calls, copies in variants.values())
        merged.append(Diagnostic.at(first.span, first.code, message, first.hint))
    return merged


def _add_once(names: list, name: str) -> None:
    if name not in names:
        names.append(name)


def _suffix(calls: list, copies: list) -> str:
    if calls:
        return f" (in block {'call' if len(calls) == 1 else 'calls'} {_named(calls)})"
    if copies:
        return f" (in {'copy' if len(copies) == 1 else 'copies'} {_named(copies)})"
    return ""


def _named(names: list) -> str:
    shown = ", ".join(names[:MAX_NAMED])
    return shown + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")
