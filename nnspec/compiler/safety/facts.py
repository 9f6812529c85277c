"""What the rules ask of layers and tensors, the finding type, and where a finding points."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from nnspec.compiler.ir import Layer, Tensor, chunk_parts
from nnspec.diagnostics import Span
from nnspec.vocabulary import initializers as inits
from nnspec.vocabulary.kinds import KINDS

WEIGHT_CATEGORIES = ("linear", "conv", "conv_transpose", "embedding")
RELU_LIKE = ("relu", "relu6")
# Codes a layer's `allow` can waive. The others are not choices: NS206, NS208, NS210 and NS211 describe an
# initializer the frameworks refuse on that tensor (the model could not be built), NS0xx/NS1xx are problems
# of the spec itself, NS212 is about model-level defaults, NS213 about waivers.
WAIVABLE = ("NS201", "NS202", "NS203", "NS204", "NS205", "NS207", "NS209", "NS214", "NS215", "NS216", "NS217")


def category(layer: Layer) -> str:
    return KINDS[layer.kind].category


def is_weighted(layer: Layer) -> bool:
    return category(layer) in WEIGHT_CATEGORIES


def is_norm(layer: Layer) -> bool:
    return category(layer) == "norm"


def is_activation(layer: Layer) -> bool:
    return KINDS[layer.kind].activation


def kills_non_positive(layer: Layer) -> bool:
    """ReLU-like: slope 0 at and below 0 (leaky_relu with slope 0 is a ReLU)."""
    return layer.kind in RELU_LIKE or (layer.kind == "leaky_relu" and layer.args["slope"] == 0)


def constant_of(tensor: Tensor | None) -> float | None:
    if tensor is None:
        return None
    return inits.constant_value(tensor.init.name, tensor.init.args, tensor.role)


def has_constant_weight(layer: Layer) -> bool:
    return is_weighted(layer) and constant_of(layer.tensors["weight"]) is not None


def offset_is_uniform(layer: Layer) -> bool:
    """The bias is absent or one value for every unit: it does not tell the units apart."""
    bias = layer.tensors.get("bias")
    if bias is None:
        return True
    values = fixed_values(bias)
    return values is not None and len(set(values)) == 1


def fixed_values(tensor: Tensor) -> list | None:
    """Every element when the initializer is deterministic and input-free, else None."""
    value = constant_of(tensor)
    if value is not None:
        return [value]
    if tensor.init.name == "values":
        return list(_leaves(tensor.init.args["values"]))
    if tensor.init.name == "log_prior":
        return inits.log_prior(tensor.init.args["counts"])
    return None


def rows_constant(tensor: Tensor, start: int, stop: int) -> float | None:
    """The one value every element of rows [start, stop) (first axis) starts with, or None: through `chunks`
    (each part covers its rows), a constant, or `values` holding one number there."""
    if tensor.init.name == "chunks":
        parts = chunk_parts(tensor)
        rows = tensor.shape[0] // len(parts)
        found = set()
        for i, part in enumerate(parts):
            low, high = i * rows, (i + 1) * rows
            if high <= start or low >= stop:
                continue
            value = rows_constant(part, max(start, low) - low, min(stop, high) - low)
            if value is None:
                return None
            found.add(value)
        return found.pop() if len(found) == 1 else None
    value = constant_of(tensor)
    if value is not None or tensor.init.name != "values":
        return value
    width = 1
    for size in tensor.shape[1:]:
        width *= size
    found = set(list(_leaves(tensor.init.args["values"]))[start * width:stop * width])
    return found.pop() if len(found) == 1 else None


def _leaves(values) -> Iterator[float]:
    if isinstance(values, list):
        for v in values:
            yield from _leaves(v)
    else:
        yield float(values)


def describe(tensor: Tensor) -> str:
    if tensor.origin == "default":
        value = constant_of(tensor)
        return f"{num(value)} (the default)" if value is not None else "torch_default"
    return f"`{tensor.init.describe()}`"


def num(value: float) -> str:
    return f"{value:g}"


def at_line(layer: Layer) -> str:
    return f"`{layer.kind}` on line {layer.span.line}"


def this(layer: Layer) -> str:
    return f"this `{layer.kind}`"


def units_of(layer: Layer) -> str:
    if layer.kind == "embedding":
        return "embedding coordinates"
    return "output channels" if category(layer) in ("conv", "conv_transpose") else "output units"


def listed(items: list) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def init_name(tensor: Tensor) -> str:
    return f"`{tensor.init.describe()}`"


@dataclass
class Finding:
    """One rule firing on one layer, before waivers and merging."""

    layer: Layer
    span: Span
    code: str
    message: str
    hint: str


def site(tensor: Tensor) -> tuple[Span, str]:
    """Where a diagnostic about this tensor's initializer points, and a note naming a default's line."""
    if tensor.origin == "layer" and tensor.init.span is not None:
        return tensor.init.span, ""
    return tensor.layer.span, f" ({tensor.role} {describe(tensor)} from {origin_phrase(tensor)})"


def origin_phrase(tensor: Tensor) -> str:
    line = tensor.origin_span.line if tensor.origin_span else None
    if tensor.origin.startswith("init."):
        return f"the model default `{tensor.origin}` on line {line}"
    if tensor.origin.startswith("block call "):
        return f"the `init` of the enclosing block call on line {line}"
    if tensor.origin.startswith("residual "):
        return f"the `init` of the enclosing residual on line {line}"
    if tensor.origin.split(" ")[0] in ("add", "multiply", "concat"):
        return f"the `init` of the enclosing `{tensor.origin.split(' ')[0]}` on line {line}"
    return "PyTorch's default"


def finding(tensor: Tensor, code: str, message: str, hint: str) -> Finding:
    span, note = site(tensor)
    return Finding(tensor.layer, span, code, message + note, hint)


def waiver_hint(code: str) -> str:
    return f'or, if it is deliberate, waive it on this layer: `allow: {{{code}: "reason"}}`'
