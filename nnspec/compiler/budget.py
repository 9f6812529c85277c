"""The parameter budget: refuse to allocate models larger than asked for."""

from __future__ import annotations

from nnspec.diagnostics import Diagnostic, SpecError

DEFAULT_MAX_PARAMS = 2_000_000_000
BYTES_PER_PARAM = 4


UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def human_bytes(n: float) -> str:
    """`n` bytes in the largest binary unit below it; exact arithmetic, so any size (a spec can ask for
    10**400 parameters) prints without an OverflowError."""
    from decimal import Decimal

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
    if n < 10**24:
        return f"{n:,}"
    from decimal import Decimal

    return f"about {Decimal(n):.3E}"


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


def budget_diagnostics(graph, doc, max_params: int | None = None) -> list[Diagnostic]:
    """At check time: report the count and memory of a model above the build budget (the default when None)."""
    out = activation_diagnostics(graph, doc)
    params = graph.params
    limit = DEFAULT_MAX_PARAMS if max_params is None else max_params
    if params <= limit:
        return out
    return out + [Diagnostic.at(doc.key_span(("layers",)), "NS005",
                                f"the model has {size_text(params)}, above the build budget of {limit:,}: "
                                "`nnspec build` refuses it unless raised; nothing was allocated to check it",
                                "build with --max-params N (max_params=N), or inspect it with --device meta",
                                severity="warning")]


# -- activations ---------------------------------------------------------------------------------------------

DEFAULT_MAX_ACTIVATION_BYTES = 16 * 2**30
PARITY_BATCH = 2  # `nnspec parity`'s default --batch
PROBE_BATCH = 16  # the batch `nnspec probe` trains on
MAX_ELEMENTS = (2**63 - 1) // BYTES_PER_PARAM  # a float32 tensor's size in bytes must fit an int64 (torch)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def activation_elements(graph) -> int:
    """Elements of every tensor a forward pass produces for ONE sample: the input, each layer's output and each
    merge's join (the IR's shapes; nothing is allocated)."""
    from nnspec.compiler.ir import Merge, iter_layers, iter_nodes

    total = _numel(graph.input_shape)
    total += sum(_numel(layer.out_shape) for layer in iter_layers(graph.root))
    total += sum(_numel(node.out_shape) for node in iter_nodes(graph.root) if isinstance(node, Merge))
    return total


def activation_bytes(graph, batch: int = 1) -> int:
    """Memory of the activations of one forward pass over `batch` samples, in float32 (int64 ids count the same
    width: a lower bound, as a framework's workspace and a backward pass come on top)."""
    return activation_elements(graph) * batch * BYTES_PER_PARAM


def check_activation_budget(spec, max_bytes, batch: int, command: str) -> None:
    """Refuse to run a model whose activations for `batch` samples exceed the budget (the default when None)."""
    limit = DEFAULT_MAX_ACTIVATION_BYTES if max_bytes is None else max_bytes
    need = activation_bytes(spec.graph, batch)
    if need > limit:
        raise SpecError([Diagnostic.at(spec.doc.key_span(("input",)), "NS005",
                                       f"`{command}` with a batch of {batch} needs {human_bytes(need)} of float32 "
                                       f"activations ({count_text(need // BYTES_PER_PARAM)} numbers), above the "
                                       f"budget of {human_bytes(limit)}",
                                       "raise it with --max-activation-bytes, use a smaller batch or a smaller input")])


def activation_diagnostics(graph, doc) -> list[Diagnostic]:
    """At check time: activations above the default budget of `probe` (NS005 warning), and any tensor no
    framework can index (NS005 error)."""
    from nnspec.compiler.ir import iter_layers

    out = []
    seen = set()  # one report per place in the file: a block body or a repeat expands to many layers
    for layer in iter_layers(graph.root):
        named = [(t.shape, f"the {t.role}") for t in layer.tensors.values()] + [(layer.out_shape, "the output")]
        for shape, what in named:
            if _numel(shape) > MAX_ELEMENTS and (layer.span, what, shape) not in seen:
                seen.add((layer.span, what, shape))
                out.append(Diagnostic.at(layer.span, "NS005",
                                         f"{what} of this `{layer.kind}`, {list(shape)}, has "
                                         f"{count_text(_numel(shape))} elements: its "
                                         "size in bytes does not fit a 64-bit integer, so no framework can create "
                                         "it, not even on the meta device",
                                         "reduce the sizes: no device could hold this tensor"))
                break
    need = activation_bytes(graph, PROBE_BATCH)
    if need > DEFAULT_MAX_ACTIVATION_BYTES:
        out.append(Diagnostic.at(doc.key_span(("input",)), "NS005",
                                 f"one forward pass needs {human_bytes(activation_bytes(graph))} of float32 activations "
                                 f"per sample: {human_bytes(need)} for `nnspec probe` (batch {PROBE_BATCH}), "
                                 f"{human_bytes(activation_bytes(graph, PARITY_BATCH))} for `nnspec parity` (batch "
                                 f"{PARITY_BATCH}), above the budget of {human_bytes(DEFAULT_MAX_ACTIVATION_BYTES)}: "
                                 "they refuse it unless raised",
                                 "run them with --max-activation-bytes N, or reduce the input", severity="warning"))
    return out
