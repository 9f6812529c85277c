"""Layer rules (NS201, NS204, NS205): one layer, and whether it sits at an exempt position."""

from __future__ import annotations

import math
from collections.abc import Iterator

from nnspec.compiler.ir import Layer
from nnspec.compiler.safety.facts import (
    Finding,
    category,
    constant_of,
    describe,
    finding,
    has_constant_weight,
    init_name,
    is_norm,
    num,
    offset_is_uniform,
    this,
    units_of,
    waiver_hint,
)
from nnspec.compiler.safety.flow import Context


def hidden_constant_weight(layer: Layer, ctx: Context) -> Iterator[Finding]:
    """NS201: a constant weight on a layer that is neither the output head nor a residual tail."""
    if not has_constant_weight(layer) or ctx.exemption(layer):
        return
    weight = layer.tensors["weight"]
    if layer.kind == "embedding":
        effect = "every id starts with the same vector, all its coordinates equal"
    elif weight.shape[0] == 1:
        effect = "its one output starts by weighting every input alike"
    elif offset_is_uniform(layer):
        effect = f"its {units_of(layer)} start identical"
    else:
        effect = f"its {units_of(layer)} start with identical weights and differ only by their biases"
    yield finding(weight, "NS201", f"{init_name(weight)} on the weight of this hidden `{layer.kind}`: {effect}",
                  "use a random initializer (kaiming_uniform before relu, xavier_uniform before tanh); a constant "
                  "weight belongs only at the output head or the last layer of a residual branch; "
                  + waiver_hint("NS201"))


def transposed_inputs(layer: Layer) -> tuple[int, int, int]:
    """(inputs one output of a transposed convolution sums at most, input channels per group, kernel taps that
    reach one output). Along an axis, the taps j with j * dilation = r (mod stride) reach the same outputs: at most
    ceil(kernel * gcd(dilation, stride) / stride) of them. (PyTorch's fan_in of its weight, out/groups * kernel
    size, counts something else.)"""
    g = layer.geometry
    taps = math.prod(-(-k * math.gcd(d, s) // s) for k, s, d in zip(g["kernel"], g["stride"], g["dilation"]))
    channels = layer.in_shape[0] // layer.args["groups"]
    return channels * taps, channels, taps


def exploding_constant(layer: Layer, ctx: Context) -> Iterator[Finding]:
    """NS204: a non-zero constant weight with |value| * fan_in > 1 (linear and conv: they sum fan_in inputs; a
    transposed convolution: its input channels per group times the kernel taps that reach one output)."""
    if category(layer) not in ("linear", "conv", "conv_transpose"):
        return  # an embedding looks one row up; it sums nothing
    weight = layer.tensors["weight"]
    value = constant_of(weight)
    if category(layer) == "conv_transpose":
        yield from _exploding_transposed(layer, weight, value)
        return
    if not value or abs(value) <= 1 / weight.fan_in:  # not `abs(value) * fan_in`: a fan_in can pass float's range
        return
    factor = abs(value) * weight.fan_in if weight.fan_in < 1e300 else math.inf
    yield finding(weight, "NS204", f"constant weight {num(value)} with fan_in {weight.fan_in}: each output is "
                                   f"{num(value)} times the sum of {weight.fan_in} inputs, so inputs of one sign "
                                   f"grow by |value| * fan_in = {num(factor)} in this layer",
                  f"use a fan-scaled random initializer (kaiming_uniform, xavier_uniform), or a constant of at most "
                  f"1/fan_in = {1 / weight.fan_in:.3g} in magnitude; " + waiver_hint("NS204"))


def _exploding_transposed(layer: Layer, weight, value) -> Iterator[Finding]:
    n, channels, taps = transposed_inputs(layer)
    if not value or abs(value) <= 1 / n:
        return
    factor = abs(value) * n if n < 1e300 else math.inf
    yield finding(weight, "NS204", f"constant weight {num(value)} on a transposed convolution: each output is "
                                   f"{num(value)} times the sum of up to {n} inputs ({channels} input channel(s) "
                                   f"per group x {taps} kernel tap(s) that reach it), so inputs of one sign grow "
                                   f"by |value| * {n} = {num(factor)} in this layer",
                  f"use a fan-scaled random initializer (kaiming_uniform, xavier_uniform), or a constant of at most "
                  f"1/{n} = {1 / n:.3g} in magnitude; " + waiver_hint("NS204"))


def zero_norm_scale(layer: Layer, ctx: Context) -> Iterator[Finding]:
    """NS205: gamma = 0 on a norm layer (rmsnorm too) that is neither the output head nor a residual tail."""
    rms = layer.kind == "rmsnorm"  # gamma and no beta
    if not (is_norm(layer) or rms) or constant_of(layer.tensors["gamma"]) != 0 or ctx.exemption(layer):
        return
    gamma = layer.tensors["gamma"]
    outputs = "0" if rms else "its beta"
    yield finding(gamma, "NS205", f"gamma {describe(gamma)} on {this(layer)}, which is not the last layer of a "
                                  f"residual branch or shortcut, nor the output head: it outputs {outputs} for every "
                                  "input, and passes no gradient back until gamma moves away from 0",
                  "zero gamma is meant for the last norm of a residual branch (zero-init residual); use `ones` "
                  "(the default) here, " + waiver_hint("NS205"))


LAYER_RULES = (hidden_constant_weight, exploding_constant, zero_norm_scale)
