"""Layer rules (NS201, NS204, NS205, NS214-NS217): one layer, and whether it sits at an exempt position."""

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
    listed,
    num,
    offset_is_uniform,
    rows_constant,
    this,
    units_of,
    waiver_hint,
)
from nnspec.compiler.safety.flow import Context
from nnspec.vocabulary import initializers as inits
from nnspec.vocabulary.kinds import recurrent_tensor_names


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


def _direction(layer: Layer, k: int, sfx: str) -> str:
    where = []
    if layer.args["layers"] > 1:
        where.append(f"layer {k}")
    if layer.args["bidirectional"]:
        where.append("backward" if sfx else "forward")
    return f" ({', '.join(where)})" if where else ""


def _gate_constants(tensor) -> list | None:
    """The constant of each gate block when every block is one (a constant, or `chunks` of constants), else None."""
    if tensor.init.name == "chunks":
        parts = tensor.init.args["parts"]
        values = [inits.constant_value(p.name, p.args, tensor.role) for p in parts]
        return None if any(v is None for v in values) else values
    value = constant_of(tensor)
    return None if value is None else [value]


def recurrent_input_cut(layer: Layer, ctx: Context) -> Iterator[Finding]:
    """NS214: zero weight_ih and zero weight_hh in one layer and direction of an lstm or gru."""
    if layer.kind not in ("lstm", "gru"):
        return
    for k, sfx in recurrent_tensor_names(layer.args):
        ih, hh = layer.tensors[f"weight_ih_l{k}{sfx}"], layer.tensors[f"weight_hh_l{k}{sfx}"]
        if _gate_constants(ih) is None or set(_gate_constants(ih)) != {0} or \
                _gate_constants(hh) is None or set(_gate_constants(hh)) != {0}:
            continue
        yield finding(ih, "NS214", f"{init_name(ih)} on weight_ih and {init_name(hh)} on weight_hh of {this(layer)}"
                                   f"{_direction(layer, k, sfx)}: every gate is its bias alone, so the state, and the "
                                   "output, are the same for every input at init",
                      "give weight_ih a random initializer (glorot_uniform, as Keras; or the default); weight_hh "
                      "orthogonal or eye; " + waiver_hint("NS214"))
        return  # one finding per layer: the first direction named


def recurrent_constant_input(layer: Layer, ctx: Context) -> Iterator[Finding]:
    """NS215: a constant weight_ih (each gate block one value) on an lstm or gru, but for NS214's case."""
    if layer.kind not in ("lstm", "gru"):
        return
    for k, sfx in recurrent_tensor_names(layer.args):
        ih, hh = layer.tensors[f"weight_ih_l{k}{sfx}"], layer.tensors[f"weight_hh_l{k}{sfx}"]
        gates, recurrent = _gate_constants(ih), _gate_constants(hh)
        if gates is None or (set(gates) == {0} and recurrent is not None and set(recurrent) == {0}):
            continue
        effect = ("it ignores its input at init: its state moves with its biases and weight_hh alone"
                  if set(gates) == {0} else
                  f"each gate's {layer.args['hidden']} hidden units get identical input weights, so they read the "
                  "same function of the input and differ only through their biases and weight_hh")
        yield finding(ih, "NS215", f"{init_name(ih)} on weight_ih of {this(layer)}{_direction(layer, k, sfx)}: "
                                   f"{effect}",
                      "give weight_ih a random initializer (glorot_uniform, as Keras; or the default); chunks may "
                      "set a bias per gate, not an input weight; " + waiver_hint("NS215"))
        return


PARTS = ("query", "key", "value")


def _part_constant(layer: Layer, role: str, index: int) -> float | None:
    """The constant that rows of part `index` (query 0, key 1, value 2) of in_weight or in_bias start with; an
    absent in_bias (`bias: false`) is 0."""
    tensor = layer.tensors.get(role)
    if tensor is None or (tensor.init.name == "torch_default" and role == "in_bias"):
        return 0.0  # nn.MultiheadAttention zeroes its in_proj_bias
    d = tensor.shape[0] // 3
    return rows_constant(tensor, index * d, (index + 1) * d)


def frozen_uniform_attention(layer: Layer) -> bool:
    """q = 0 for every input (zero query weight and bias) and k the same for every position (zero key weight)."""
    return (_part_constant(layer, "in_weight", 0) == 0 and _part_constant(layer, "in_bias", 0) == 0
            and _part_constant(layer, "in_weight", 1) == 0)


def uniform_attention(layer: Layer, ctx: Context) -> Iterator[Finding]:
    """NS217: zero query and key weights with a zero query bias: uniform attention that never moves."""
    if layer.kind != "attention" or not frozen_uniform_attention(layer):
        return
    weight, causal = layer.tensors["in_weight"], layer.args["causal"]
    bias = "absent (`bias: false`)" if "in_bias" not in layer.tensors else "zero"
    seen = "every earlier position and itself" if causal else "every position"
    yield finding(weight, "NS217", f"the query and key rows of the in_weight of {this(layer)} are zero and its "
                                   f"query bias is {bias}: every head attends with equal weight to {seen} (the "
                                   "layer outputs a plain average of its value projection), and it stays so: q is "
                                   "0 and k is the same at every position, so the softmax passes no gradient to "
                                   "the query and key weights and biases, ever",
                  "initialise in_weight randomly (the default xavier_uniform, or normal(0.02) as GPT-2 does); to "
                  "start a residual block as the identity, zero the `out_weight` at the end of its branch instead; "
                  + waiver_hint("NS217"))


def constant_attention_weight(layer: Layer, ctx: Context) -> Iterator[Finding]:
    """NS216: a constant query, key or value part of in_weight (not already NS217), or a constant out_weight
    at a hidden position."""
    if layer.kind != "attention":
        return
    weight = layer.tensors["in_weight"]
    frozen = frozen_uniform_attention(layer)
    parts = [(PARTS[i], _part_constant(layer, "in_weight", i)) for i in range(3)
             if not (frozen and i < 2)]
    parts = [(name, value) for name, value in parts if value is not None]
    if parts:
        names = [name for name, _ in parts]
        values = sorted({num(value) for _, value in parts})
        effects = []
        if "query" in names and "key" in names and all(_part_constant(layer, "in_bias", i) is not None
                                                       for i in range(2)):
            effects.append("the query units of a head get identical updates, and so do its key units, so each "
                           "head's attention pattern sees the input through at most one number per position, "
                           "forever")
        elif "query" in names or "key" in names:
            effects.append("each head's attention pattern sees the input through at most one number per position")
        if "value" in names:
            effects.append("each head's output repeats one number per position across its units")
        if len(names) == 3 and all(_part_constant(layer, "in_bias", i) is not None for i in range(3)):
            effects.append("every head computes the same attention and the same output")
        yield finding(weight, "NS216", f"the {listed(names)} rows of the in_weight of {this(layer)} start at "
                                       f"the constant {listed(values)}: the {listed(names)} units start identical "
                                       + ("(zero: each outputs its bias): " if values == ["0"] else
                                          "(the same multiple of the sum of the input, differing only by their "
                                          "biases): ") + "; ".join(effects),
                      "initialise in_weight randomly (the default xavier_uniform over the whole tensor, or "
                      "normal(0.02) as GPT-2 does; per part: `chunks: [query, key, value]`); a zero init belongs on "
                      "the `out_weight` at the end of a residual branch; " + waiver_hint("NS216"))
    out = layer.tensors["out_weight"]
    value = constant_of(out)
    if value is None or ctx.exemption(layer):
        return
    effect = ("its output is its out_bias for every input" if value == 0
              else "its output units start identical, differing only by their biases")
    yield finding(out, "NS216", f"{init_name(out)} on the out_weight of this hidden `attention`: {effect}",
                  "use a random out_weight (the default); a zero out_weight belongs only at the end of a residual "
                  "branch (it starts the block as the identity) or at the output head; " + waiver_hint("NS216"))


LAYER_RULES = (hidden_constant_weight, exploding_constant, zero_norm_scale, recurrent_input_cut,
               recurrent_constant_input, constant_attention_weight, uniform_attention)
