"""Flow rules (NS202, NS203): a layer's output followed to the layers after it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from nnspec.compiler.ir import Layer, Merge, Tensor
from nnspec.compiler.safety.facts import (
    Finding,
    at_line,
    category,
    constant_of,
    describe,
    finding,
    fixed_values,
    has_constant_weight,
    init_name,
    is_activation,
    is_norm,
    is_weighted,
    kills_non_positive,
    listed,
    num,
    offset_is_uniform,
    this,
    units_of,
    waiver_hint,
)
from nnspec.compiler.safety.flow import Context, End, Flow, Token


@dataclass(frozen=True)
class Level:
    """An input-independent output: one exact constant, or values at or below an upper bound."""

    value: float
    exact: bool

    def describe(self) -> str:
        return f"the constant {num(self.value)}" if self.exact else f"fixed values at or below {num(self.value)}"


def zero_source(layer: Layer) -> tuple[Level, str] | None:
    """A layer whose output ignores its input: zero weight (or zero gamma) plus a fixed offset."""
    if is_weighted(layer) and constant_of(layer.tensors["weight"]) == 0:
        scale, offset = layer.tensors["weight"], layer.tensors.get("bias")
    elif is_norm(layer) and constant_of(layer.tensors["gamma"]) == 0:
        scale, offset = layer.tensors["gamma"], layer.tensors["beta"]
    else:
        return None
    level = Level(0.0, True) if offset is None else offset_level(offset)
    if level is None:
        return None
    cause = f"{scale.role} {describe(scale)}, " + (f"{offset.role} {describe(offset)}" if offset is not None
                                                   else "no bias")
    return level, cause


def offset_level(tensor: Tensor) -> Level | None:
    values = fixed_values(tensor)
    if values is None:
        return None
    if len(set(values)) == 1:
        return Level(values[0], True)
    return Level(max(values), False)


def through(level: Level, layer: Layer) -> Level | None:
    """The level after a layer that is not ReLU-like; None when the output depends on the input or is unknown."""
    if is_activation(layer):
        return through_activation(level, layer)
    if is_norm(layer):
        # a norm maps an input that is exactly 0 everywhere to its beta (x - mean = 0 exactly)
        return offset_level(layer.tensors["beta"]) if level.exact and level.value == 0 else None
    if layer.tensors:
        return None
    if layer.kind == "dropout":  # each element is dropped to 0 or scaled up by 1/(1-p)
        if level.exact and level.value == 0:
            return level
        return Level(0.0, False) if level.value <= 0 else Level(math.inf, False)
    if layer.kind.startswith("avgpool") and any(layer.geometry["padding"]) and level.value != 0:
        return Level(max(level.value, 0.0), False)  # padded zeros are averaged in
    return level  # identity, flatten, max pooling, unpadded average pooling, global_avg_pool


def through_activation(level: Level, layer: Layer) -> Level | None:
    try:
        if level.exact:
            return Level(activate(layer, level.value), True)
        if level.value <= 0 and layer.kind in ("tanh", "leaky_relu", "elu"):  # monotone: the bound maps over
            return Level(activate(layer, level.value), False)
        if level.value <= 0 and layer.kind in ("gelu", "silu"):  # not monotone, but <= 0 on x <= 0
            return Level(0.0, False)
    except OverflowError:
        pass
    return None


def activate(layer: Layer, x: float) -> float:
    kind, args = layer.kind, layer.args
    if kind == "relu":
        return max(0.0, x)
    if kind == "relu6":
        return min(max(0.0, x), 6.0)
    if kind == "leaky_relu":
        return x if x > 0 else args["slope"] * x
    if kind == "elu":
        return x if x > 0 else args["alpha"] * math.expm1(x)
    if kind == "tanh":
        return math.tanh(x)
    if kind == "sigmoid":
        return 0.5 * (1 + math.tanh(x / 2))
    if kind == "silu":
        return x * 0.5 * (1 + math.tanh(x / 2))
    if kind == "gelu" and args.get("approximate") == "tanh":
        return 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    if kind == "gelu":
        return 0.5 * x * (1 + math.erf(x / math.sqrt(2)))
    if kind == "softmax":
        return 1.0 / layer.in_shape[args["axis"]]
    if kind in ("hardsigmoid", "hardswish"):
        gate = min(max(x + 3.0, 0.0), 6.0) / 6.0
        return gate if kind == "hardsigmoid" else x * gate
    if kind == "softplus":  # PyTorch's: linear above 20
        return x if x > 20 else math.log1p(math.exp(x))
    if kind == "mish":
        return x * math.tanh(x if x > 20 else math.log1p(math.exp(x)))
    raise KeyError(kind)


def dead_relu(layer: Layer, ctx: Context) -> Iterator[Finding]:
    """NS202: an input-independent, non-positive output that reaches a ReLU through layers that keep it so."""
    source = zero_source(layer)
    if source is None:
        return
    start, cause = source
    level, norms = start, []
    for token in ctx.flow.after(layer):
        if not isinstance(token, Layer):
            return  # a merge (another branch carries the gradient) or the chain's end
        if kills_non_positive(token):
            if level.value <= 0:
                yield dead_relu_finding(layer, start, cause, token, norms)
            return
        level = through(level, token)
        if level is None:
            return
        if is_norm(token):
            norms.append(token)


def dead_relu_finding(layer: Layer, start: Level, cause: str, sink: Layer, norms: list) -> Finding:
    scale = layer.tensors["weight"] if is_weighted(layer) else layer.tensors["gamma"]
    via = "".join(f" through {at_line(n)} (which maps an input of exactly 0 to its beta)," for n in norms)
    return finding(scale, "NS202", f"{this(layer)} outputs {start.describe()} for every input ({cause}), and{via} "
                                   f"it reaches {at_line(sink)}, whose slope there is 0: no gradient reaches this "
                                   "layer's tensors or passes back through it, so it never trains",
                   f"give the {scale.role} a random initializer, or use an activation with a non-zero slope at 0 "
                   "(leaky_relu, gelu, tanh); " + waiver_hint("NS202"))


def constant_chain(layer: Layer, ctx: Context) -> Iterator[Finding]:
    """NS203: this layer's units have identical incoming weights and every path out meets a constant weight."""
    if not has_constant_weight(layer) or not offset_is_uniform(layer):
        return
    ahead = next_constant_layers(ctx.flow, ctx.flow.after(layer))
    if ahead is None:
        return
    nexts, dropouts = ahead.layers, ahead.dropouts
    weight = layer.tensors["weight"]
    named = listed([f"{at_line(n)} ({init_name(n.tensors['weight'])})" for n in nexts])
    noun = "the next weight layer" if len(nexts) == 1 else "each weight layer it feeds next"
    fate = ("every update keeps them identical: they stay interchangeable forever" if not dropouts else
            "only the random masks of " + listed([at_line(d) for d in dropouts]) + " tell them apart (with "
            "dropout off, every update keeps them identical)")
    yield finding(weight, "NS203", f"{this(layer)} has a constant weight ({init_name(weight)}) and so does {noun}, "
                                   f"{named}: the {units_of(layer)} of this layer have identical incoming and outgoing "
                                   f"weights, so {fate}",
                  "give one of the two a random initializer; a constant weight is safe only where a random layer "
                  "feeds it (zero head, zero-init residual); " + waiver_hint("NS203"))


@dataclass
class Ahead:
    """What the units of a constant layer meet downstream: the next weight layers, and dropouts on the way."""

    layers: list = field(default_factory=list)
    dropouts: list = field(default_factory=list)
    reaches_add: bool = False  # some path carried the units unchanged to the add of the residual entered

    def extend(self, other: Ahead) -> None:
        self.layers += other.layers
        self.dropouts += other.dropouts
        self.reaches_add = self.reaches_add or other.reaches_add


def next_constant_layers(flow: Flow, tokens: Iterable[Token], entered: Merge | None = None) -> Ahead | None:
    """The first weight layer on every path ahead, if every one of them has a constant weight; else None.

    Units stay interchangeable while everything they meet treats them alike: parameter-free layers, norm
    layers with constant gamma and beta, and weight layers with constant weights (whose columns stay equal).
    An add (a residual) is entered on every branch; a path that reaches the add unchanged (an identity
    shortcut) is followed on after it. The model output (the loss tells units apart), the join of a merge
    the units did not enter (the other branches add values of their own), and a concat or multiply (which
    mixes the units with other channels, or gates them) end the search with None.
    """
    ahead = Ahead()
    for token in tokens:
        if isinstance(token, End):
            if entered is not None and token.merge is entered:
                ahead.reaches_add = True
                return ahead
            return None
        if isinstance(token, Merge):
            inner = _into_add(flow, token) if token.op == "add" else None
            if inner is None:
                return None
            ahead.extend(Ahead(inner.layers, inner.dropouts))
            if inner.reaches_add:
                continue
            return ahead
        if is_weighted(token):
            if not has_constant_weight(token):
                return None
            ahead.layers.append(token)
            return ahead
        if is_norm(token) and any(constant_of(t) is None for t in token.tensors.values()):
            return None
        if category(token) == "recurrent":  # its gates mix the units through weight_ih (NS215 judges those)
            return None
        if token.kind == "dropout":
            ahead.dropouts.append(token)
    return None


def _into_add(flow: Flow, merge: Merge) -> Ahead | None:
    total = Ahead()
    for chain in flow.paths[id(merge)]:
        path = next_constant_layers(flow, chain.tokens + [chain.end], entered=merge)
        if path is None:
            return None
        total.extend(path)
    return total


FLOW_RULES = (dead_relu, constant_chain)
