"""Initializer safety analysis: the NS2xx rules.

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

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from nnspec.compiler import initializers as inits
from nnspec.compiler.diagnostics import Diagnostic, Span
from nnspec.compiler.ir import Graph, Layer, Residual, Sequence, Tensor
from nnspec.compiler.kinds import KINDS

WEIGHT_CATEGORIES = ("linear", "conv", "embedding")
RELU_LIKE = ("relu", "relu6")
# Codes a layer's `allow` can waive. The others are not choices: NS206, NS208, NS210 and NS211 describe an
# initializer the frameworks refuse on that tensor (the model could not be built), NS0xx/NS1xx are problems
# of the spec itself, NS212 is about model-level defaults, NS213 about waivers.
WAIVABLE = ("NS201", "NS202", "NS203", "NS204", "NS205", "NS207", "NS209")
MAX_NAMED = 5


# -- the flow: chains of layers and residuals ------------------------------------------------------


@dataclass(frozen=True)
class End:
    """The end of a chain: the model output (residual None) or a residual's add."""

    residual: Residual | None


Token = Layer | Residual | End


@dataclass
class Chain:
    tokens: list  # Layer | Residual, in order
    end: End


@dataclass
class Flow:
    root: Chain
    where: dict = field(default_factory=dict)  # id(layer) -> (chain, index)
    paths: dict = field(default_factory=dict)  # id(residual) -> (branch chain, shortcut chain or None)
    in_repeat: set = field(default_factory=set)  # id(layer) of layers inside a `repeat` container

    def after(self, layer: Layer) -> Iterator[Token]:
        """Everything downstream of a layer on its own chain, ending with the chain's End."""
        chain, index = self.where[id(layer)]
        yield from chain.tokens[index + 1:]
        yield chain.end


def build_flow(graph: Graph) -> Flow:
    flow = Flow(Chain([], End(None)))
    _flatten(graph.root, flow, flow.root, in_repeat=False)
    return flow


def _flatten(node, flow: Flow, chain: Chain, in_repeat: bool) -> None:
    if isinstance(node, Layer):
        flow.where[id(node)] = (chain, len(chain.tokens))
        if in_repeat:
            flow.in_repeat.add(id(node))
        chain.tokens.append(node)
    elif isinstance(node, Sequence):
        for item in node.items:
            _flatten(item, flow, chain, in_repeat or node.kind == "repeat")
    else:
        chain.tokens.append(node)
        branch = Chain([], End(node))
        _flatten(node.branch, flow, branch, in_repeat)
        shortcut = None
        if node.shortcut is not None:
            shortcut = Chain([], End(node))
            _flatten(node.shortcut, flow, shortcut, in_repeat)
        flow.paths[id(node)] = (branch, shortcut)


# -- layer and tensor predicates -------------------------------------------------------------------


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


def _leaves(values) -> Iterator[float]:
    if isinstance(values, list):
        for v in values:
            yield from _leaves(v)
    else:
        yield float(values)


def describe(tensor: Tensor) -> str:
    if tensor.origin == "default":
        value = constant_of(tensor)
        return f"{_num(value)} (the default)" if value is not None else "torch_default"
    return f"`{tensor.init.describe()}`"


def _num(value: float) -> str:
    return f"{value:g}"


def at_line(layer: Layer) -> str:
    return f"`{layer.kind}` on line {layer.span.line}"


def this(layer: Layer) -> str:
    return f"this `{layer.kind}`"


# -- exempt positions ---------------------------------------------------------------------------------


def exempt_positions(flow: Flow) -> dict:
    """id(layer) -> why it is exempt: the output head and the tail of each residual path."""
    exempt = {}
    head = _last_holder(flow.root, passes=lambda layer: True)
    if head is not None:
        exempt[id(head)] = "the output head"
    for branch, shortcut in flow.paths.values():
        for chain in (branch, shortcut):
            if chain is None:
                continue
            tail = _last_holder(chain, passes=lambda layer: not is_activation(layer))
            if tail is not None:
                exempt.setdefault(id(tail), "the last layer of a residual path")
    return exempt


def _last_holder(chain: Chain, passes: Callable[[Layer], bool]) -> Layer | None:
    """The last tensor-holding layer of a chain, walking back through parameter-free layers that `passes`."""
    for token in reversed(chain.tokens):
        if isinstance(token, Residual):
            return None
        if token.tensors:
            return token
        if not passes(token):
            return None
    return None


# -- findings and where they point ---------------------------------------------------------------------


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
    return "PyTorch's default"


def finding(tensor: Tensor, code: str, message: str, hint: str) -> Finding:
    span, note = site(tensor)
    return Finding(tensor.layer, span, code, message + note, hint)


def waiver_hint(code: str) -> str:
    return f'or, if it is deliberate, waive it on this layer: `allow: {{{code}: "reason"}}`'


# -- tensor rules (NS206-NS211) ---------------------------------------------------------------------------

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
    if tensor.role != "weight":
        return f"[{tensor.shape[0]}]"
    if tensor.layer.kind == "embedding":
        return "[num, dim]"
    if category(tensor.layer) == "conv":
        return "[out, in/groups, *kernel]"
    return "[out, in]"


def _plain_init(role: str) -> str:
    return "`ones`" if role == "gamma" else "`zeros`"


TENSOR_RULES: tuple[Callable[[Tensor], Problem], ...] = (
    eye_not_2d, eye_not_square, dirac_not_conv, dirac_not_identity, needs_fans, bad_shape_arguments,
)


def tensor_findings(tensor: Tensor) -> Iterator[Finding]:
    for rule in TENSOR_RULES:
        problem = rule(tensor)
        if problem is not None:
            yield finding(tensor, *problem)


# -- layer rules (NS201, NS204, NS205) -------------------------------------------------------------------


@dataclass
class Context:
    flow: Flow
    exempt: dict  # id(layer) -> why

    def exemption(self, layer: Layer) -> str | None:
        return self.exempt.get(id(layer))


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
    yield finding(weight, "NS201", f"{_init_name(weight)} on the weight of this hidden `{layer.kind}`: {effect}",
                  "use a random initializer (kaiming_uniform before relu, xavier_uniform before tanh); a constant "
                  "weight belongs only at the output head or the last layer of a residual branch; "
                  + waiver_hint("NS201"))


def exploding_constant(layer: Layer, ctx: Context) -> Iterator[Finding]:
    """NS204: a non-zero constant weight with |value| * fan_in > 1 (linear and conv: they sum fan_in inputs)."""
    if category(layer) not in ("linear", "conv"):
        return  # an embedding looks one row up; it sums nothing
    weight = layer.tensors["weight"]
    value = constant_of(weight)
    if not value or abs(value) <= 1 / weight.fan_in:  # not `abs(value) * fan_in`: a fan_in can pass float's range
        return
    factor = abs(value) * weight.fan_in if weight.fan_in < 1e300 else math.inf
    yield finding(weight, "NS204", f"constant weight {_num(value)} with fan_in {weight.fan_in}: each output is "
                                   f"{_num(value)} times the sum of {weight.fan_in} inputs, so inputs of one sign "
                                   f"grow by |value| * fan_in = {_num(factor)} in this layer",
                  f"use a fan-scaled random initializer (kaiming_uniform, xavier_uniform), or a constant of at most "
                  f"1/fan_in = {1 / weight.fan_in:.3g} in magnitude; " + waiver_hint("NS204"))


def zero_norm_scale(layer: Layer, ctx: Context) -> Iterator[Finding]:
    """NS205: gamma = 0 on a norm layer that is neither the output head nor a residual tail."""
    if not is_norm(layer) or constant_of(layer.tensors["gamma"]) != 0 or ctx.exemption(layer):
        return
    gamma = layer.tensors["gamma"]
    yield finding(gamma, "NS205", f"gamma {describe(gamma)} on {this(layer)}, which is not the last layer of a "
                                  "residual branch or shortcut, nor the output head: it outputs its beta for every "
                                  "input, and passes no gradient back until gamma moves away from 0",
                  "zero gamma is meant for the last norm of a residual branch (zero-init residual); use `ones` "
                  "(the default) here, " + waiver_hint("NS205"))


def units_of(layer: Layer) -> str:
    if layer.kind == "embedding":
        return "embedding coordinates"
    return "output channels" if category(layer) == "conv" else "output units"


def _listed(items: list) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _init_name(tensor: Tensor) -> str:
    return f"`{tensor.init.describe()}`"


LAYER_RULES = (hidden_constant_weight, exploding_constant, zero_norm_scale)


# -- flow rules (NS202, NS203) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """An input-independent output: one exact constant, or values at or below an upper bound."""

    value: float
    exact: bool

    def describe(self) -> str:
        return f"the constant {_num(self.value)}" if self.exact else f"fixed values at or below {_num(self.value)}"


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
            return  # a residual (its shortcut carries the gradient) or the chain's end
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
    named = _listed([f"{at_line(n)} ({_init_name(n.tensors['weight'])})" for n in nexts])
    noun = "the next weight layer" if len(nexts) == 1 else "each weight layer it feeds next"
    fate = ("every update keeps them identical: they stay interchangeable forever" if not dropouts else
            "only the random masks of " + _listed([at_line(d) for d in dropouts]) + " tell them apart (with "
            "dropout off, every update keeps them identical)")
    yield finding(weight, "NS203", f"{this(layer)} has a constant weight ({_init_name(weight)}) and so does {noun}, "
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


def next_constant_layers(flow: Flow, tokens: Iterable[Token], entered: Residual | None = None) -> Ahead | None:
    """The first weight layer on every path ahead, if every one of them has a constant weight; else None.

    Units stay interchangeable while everything they meet treats them alike: parameter-free layers, norm
    layers with constant gamma and beta, and weight layers with constant weights (whose columns stay equal).
    A residual is entered on both paths; a path that reaches its add unchanged (an identity shortcut) is
    followed on after the residual. The model output (the loss tells units apart) and the add of a residual
    the units did not enter (the other path adds values of its own) end the search with None.
    """
    ahead = Ahead()
    for token in tokens:
        if isinstance(token, End):
            if entered is not None and token.residual is entered:
                ahead.reaches_add = True
                return ahead
            return None
        if isinstance(token, Residual):
            inner = _into_residual(flow, token)
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
        if token.kind == "dropout":
            ahead.dropouts.append(token)
    return None


def _into_residual(flow: Flow, residual: Residual) -> Ahead | None:
    total = Ahead()
    for chain in flow.paths[id(residual)]:
        tokens = chain.tokens + [chain.end] if chain is not None else [End(residual)]
        path = next_constant_layers(flow, tokens, entered=residual)
        if path is None:
            return None
        total.extend(path)
    return total


FLOW_RULES = (dead_relu, constant_chain)


# -- waivers (NS213) ----------------------------------------------------------------------------------------


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


# -- merging block-body findings -------------------------------------------------------------------------------


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


# -- entry ---------------------------------------------------------------------------------------------------------


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
