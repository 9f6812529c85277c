"""The parameter budget: refuse to allocate models larger than asked for."""

from __future__ import annotations

from decimal import Decimal

from nnspec.diagnostics import Diagnostic, SpecError

DEFAULT_MAX_PARAMS = 2_000_000_000
BYTES_PER_PARAM = 4


UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def human_bytes(n: float) -> str:
    """`n` bytes in the largest binary unit below it; exact arithmetic, so any size (a spec can ask for
    10**400 parameters) prints without an OverflowError."""
    value = Decimal(n)
    for unit in UNITS:
        if value < 1024 or unit == UNITS[-1]:
            break
        value /= 1024
    if unit == "B":
        return f"{int(n)} B"
    return f"{value:.1f} {unit}" if value < 10**6 else f"{value:.3E} {unit}"


def count_text(n: int) -> str:
    """A parameter count: exact with thousands separators, or in scientific notation when absurd."""
    return f"{n:,}" if n < 10**24 else f"about {Decimal(n):.3E}"


def size_text(params: int) -> str:
    return f"{count_text(params)} parameters ({human_bytes(params * BYTES_PER_PARAM)} in float32)"


def check_budget(spec, max_params, device: str) -> None:
    if device == "meta":
        return
    limit = DEFAULT_MAX_PARAMS if max_params is None else max_params
    params = spec.params
    if params > limit:
        span = spec.graph.root.span
        raise SpecError([Diagnostic.at(span, "NS005",
                                       f"the model has {size_text(params)}, above the budget of {limit:,}",
                                       "raise it with --max-params (max_params=) or build on device `meta`")])


def budget_diagnostics(graph, doc) -> list[Diagnostic]:
    """At check time: report the count and memory of a model above the default build budget."""
    params = graph.params
    if params <= DEFAULT_MAX_PARAMS:
        return []
    return [Diagnostic.at(doc.key_span(("layers",)), "NS005",
                          f"the model has {size_text(params)}, above the build budget of {DEFAULT_MAX_PARAMS:,}: "
                          "`nnspec build` refuses it unless raised; nothing was allocated to check it",
                          "build with --max-params N (max_params=N), or inspect it with --device meta",
                          severity="warning")]
