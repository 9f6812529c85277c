"""Tensor rules (NS206-NS211): one tensor and its initializer."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from nnspec.compiler.ir import Layer, Tensor, chunk_parts
from nnspec.compiler.safety.facts import Finding, category, finding, this, waiver_hint
from nnspec.vocabulary import initializers as inits

Problem = tuple[str, str, str] | None  # (code, message, hint)


def eye_not_2d(tensor: Tensor) -> Problem:
    if tensor.init.name != "eye" or len(tensor.shape) == 2:
        return None
    hint = ("for an identity convolution use `dirac`" if len(tensor.shape) > 2
            else f"eye is for 2-D weights; use {_plain_init(tensor.role)} for a {tensor.role}")
    return ("NS206", (f"eye needs a 2-D tensor, but the {tensor.role} of {this(tensor.layer)} is "
                     f"{len(tensor.shape)}-D {list(tensor.shape)}"), hint)


def eye_not_square(tensor: Tensor) -> Problem:
    if tensor.init.name != "eye" or len(tensor.shape) != 2 or tensor.shape[0] == tensor.shape[1]:
        return None
    if tensor.role == "weight_hh":  # IRNN: [G*H, H] is G square gate blocks; eye is the first gate's identity
        return None
    rows, cols = tensor.shape
    if tensor.layer.kind == "embedding":
        effect = (f"ids {cols} to {rows - 1} start as zero vectors" if rows > cols
                  else f"coordinates {rows} to {cols - 1} start at zero for every id")
    else:
        effect = (f"outputs {cols} to {rows - 1} start with zero weights (identical to each other)" if rows > cols
                  else f"inputs {rows} to {cols - 1} are dropped")
    return ("NS207", f"eye on the {rows}x{cols} weight of {this(tensor.layer)} is not square: {effect}",
            "make the layer square, or use `orthogonal` for a non-square matrix; " + waiver_hint("NS207"))


def dirac_not_conv(tensor: Tensor) -> Problem:
    if tensor.init.name != "dirac" or (category(tensor.layer) == "conv" and tensor.role == "weight"):
        return None
    if len(tensor.shape) == 2:
        hint = "for an identity matrix use `eye`"
    else:
        hint = f"use {_plain_init(tensor.role)} for a {tensor.role}"
    return ("NS208", (f"dirac needs a conv weight (3-D to 5-D), but this is the {tensor.role} of "
                     f"{this(tensor.layer)}, {len(tensor.shape)}-D {list(tensor.shape)}"), hint)


def dirac_not_identity(tensor: Tensor) -> Problem:
    if tensor.init.name != "dirac" or category(tensor.layer) != "conv" or tensor.role != "weight":
        return None
    reasons = dirac_identity_breakers(tensor.layer)
    if not reasons:
        return None
    return ("NS209", f"dirac cannot make {this(tensor.layer)} an identity: " + "; ".join(reasons),
            "an exact identity needs out equal to the input channels, stride 1, an odd kernel and padding "
            "dilation*(kernel-1)/2 (or `same`); " + waiver_hint("NS209"))


def dirac_identity_breakers(layer: Layer) -> list[str]:
    geometry, groups = layer.geometry, layer.args["groups"]
    per_out, per_in = layer.args["out"] // groups, layer.in_shape[0] // groups
    reasons = []
    if per_out > per_in:
        reasons.append(f"out/groups = {per_out} is more than in/groups = {per_in}: output channels {per_in} to "
                       f"{per_out - 1} of each group start at zero")
    elif per_out < per_in:
        reasons.append(f"out/groups = {per_out} is less than in/groups = {per_in}: input channels {per_out} to "
                       f"{per_in - 1} of each group are dropped")
    if any(s > 1 for s in geometry["stride"]):
        reasons.append(f"stride {_axes(geometry['stride'])} subsamples the input")
    if any(k % 2 == 0 for k in geometry["kernel"]):
        reasons.append(f"the even kernel {_axes(geometry['kernel'])} has no centre tap, so the output is shifted")
    else:
        keep = tuple(d * (k - 1) // 2 for k, d in zip(geometry["kernel"], geometry["dilation"]))
        if any(p != (want, want) for p, want in zip(geometry["pads"], keep)):
            pads = geometry["pads"]
            shown = (_axes(tuple(p[0] for p in pads)) if all(p[0] == p[1] for p in pads)
                     else f"{[list(p) for p in pads]} (before, after per axis)")
            reasons.append(f"padding {shown} changes the size; size-preserving padding is dilation*(kernel-1)/2 = "
                           f"{_axes(keep)}")
    return reasons


def _axes(values: tuple) -> str:
    return str(values[0]) if len(set(values)) == 1 else str(list(values))


def needs_fans(tensor: Tensor) -> Problem:
    init = inits.REGISTRY[tensor.init.name]
    if not init.needs_fans or len(tensor.shape) != 1:
        return None
    n = tensor.shape[0]
    return ("NS210", (f"`{tensor.init.name}` needs a tensor with 2 or more axes (it computes fans or a matrix), "
                     f"but the {tensor.role} of {this(tensor.layer)} is 1-D [{n}]: PyTorch refuses it and Keras "
                     f"would silently use fans ({n}, {n})"),
            f"use {_plain_init(tensor.role)} for a {tensor.role}")


def bad_shape_arguments(tensor: Tensor) -> Problem:
    name, shape, what = tensor.init.name, tensor.shape, f"the {tensor.role} of {this(tensor.layer)}"
    if name == "values":
        got = inits.nested_shape(tensor.init.args["values"])
        if got != tuple(shape):
            return ("NS211", f"values has shape {list(got)} but {what} is {list(shape)}",
                    (f"give a nested list of shape {list(shape)} in the logical layout (PyTorch's: "
                    f"{_layout(tensor)})"))
    if name == "log_prior":
        if tensor.role != "bias":
            return ("NS211", f"log_prior is for a bias (one count per output), not {what} {list(shape)}",
                    "put log_prior on the output layer's bias; use zeros or a random initializer here")
        counts = tensor.init.args["counts"]
        if len(counts) != shape[0]:
            return ("NS211", f"log_prior has {len(counts)} counts but {what} has {shape[0]} outputs",
                    f"give one count per output class ({shape[0]})")
    if name == "sparse" and len(shape) > 2:
        return ("NS211", f"sparse needs a 2-D weight, but {what} is {len(shape)}-D {list(shape)}",
                "use a random initializer such as kaiming_normal for a conv weight")
    return None


def _layout(tensor: Tensor) -> str:
    if tensor.role != "weight" or len(tensor.shape) == 1:
        return f"[{tensor.shape[0]}]"
    if tensor.layer.kind == "embedding":
        return "[num, dim]"
    if category(tensor.layer) == "conv":
        return "[out, in/groups, *kernel]"
    if category(tensor.layer) == "conv_transpose":
        return "[in, out/groups, *kernel]"
    return "[out, in]"


def _plain_init(role: str) -> str:
    return "`ones`" if role == "gamma" else "`zeros`"


TENSOR_RULES: tuple[Callable[[Tensor], Problem], ...] = (
    eye_not_2d, eye_not_square, dirac_not_conv, dirac_not_identity, needs_fans, bad_shape_arguments,
)


def tensor_findings(tensor: Tensor) -> Iterator[Finding]:
    if tensor.init.name == "chunks":  # each part is a tensor of its own
        for part in chunk_parts(tensor):
            yield from tensor_findings(part)
        return
    for rule in TENSOR_RULES:
        problem = rule(tensor)
        if problem is not None:
            yield finding(tensor, *problem)
