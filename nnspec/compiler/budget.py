"""The parameter budget: refuse to allocate models larger than asked for."""

from __future__ import annotations

from nnspec.compiler.diagnostics import Diagnostic, SpecError

DEFAULT_MAX_PARAMS = 2_000_000_000
BYTES_PER_PARAM = 4


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"


def check_budget(spec, max_params, device: str) -> None:
    if device == "meta":
        return
    limit = DEFAULT_MAX_PARAMS if max_params is None else max_params
    params = spec.params
    if params > limit:
        span = spec.graph.root.span
        raise SpecError([Diagnostic.at(span, "NS005",
                                       f"the model has {params:,} parameters ({human_bytes(params * BYTES_PER_PARAM)} "
                                       f"in float32), above the budget of {limit:,}",
                                       "raise it with --max-params (max_params=) or build on device `meta`")])


def budget_diagnostics(graph, doc) -> list[Diagnostic]:
    """At check time: report the count and memory of a model above the default build budget."""
    params = graph.params
    if params <= DEFAULT_MAX_PARAMS:
        return []
    return [Diagnostic.at(doc.key_span(("layers",)), "NS005",
                          f"the model has {params:,} parameters ({human_bytes(params * BYTES_PER_PARAM)} in float32), "
                          f"above the build budget of {DEFAULT_MAX_PARAMS:,}: `nnspec build` refuses it unless "
                          "raised; nothing was allocated to check it",
                          "build with --max-params N (max_params=N), or inspect it with --device meta",
                          severity="warning")]
