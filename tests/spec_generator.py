"""A generator of random VALID specs, for the property tests and as seeds of the mutation fuzzer.

It writes whole spec files: random stacks of every layer kind with valid arguments (it tracks the
shape as it goes, so every kernel fits and every residual's paths agree), residuals with identity
and projection shortcuts, blocks whose arguments are used through `$arg` (in scalars, lists,
`repeat`, names and initializers), `repeat`, every initializer on the roles it fits, model-,
block-call-, residual- and layer-level `init`, a zero head and a zero-init residual tail (both
exempt), and a constant hidden weight with its waiver (and a reason). Token models too: token ids through
an `embedding`, a tokens input, or an image's patches through `to_tokens`, then a class token and learned
positions, pre-norm attention and MLP blocks as `add` merges or residuals (GPT-2's and ViT's inits, a
zero-init tail, layer scale), norms and linears per token, and a global pool, the class token's slice or
`flatten` down to features (`SpecGenerator.token_model`; the kinds on tokens are the table `TOKEN_LAYERS`).
Models stay tiny: at most 6 channels and spatial sizes of at most 12 (token widths up to 8).

Every choice goes through a `Choices` object: `HypothesisChoices` (a hypothesis `draw`, so failures
shrink) or `RandomChoices` (a `random.Random`, for the fuzzer and for cheap coverage checks).
"""

from __future__ import annotations

import itertools
import math
import random

import yaml

MAX_SPATIAL = 12
MAX_CHANNELS = 6
ACTIVATIONS = ("relu", "relu6", "leaky_relu", "gelu", "tanh", "sigmoid", "silu", "elu", "softmax", "hardswish",
               "hardsigmoid", "softplus", "mish")
NONLINEARITIES = ("linear", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu")
RANDOM_WEIGHT_INITS = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal",
                       "variance_scaling", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
                       "lecun_uniform", "lecun_normal", "uniform", "normal", "trunc_normal", "torch_default")


class Choices:
    def integer(self, low: int, high: int) -> int:
        raise NotImplementedError

    def pick(self, options):
        options = list(options)
        return options[self.integer(0, len(options) - 1)]

    def chance(self, p: float = 0.5) -> bool:
        return self.integer(0, 999) < p * 1000

    def real(self, low: float, high: float) -> float:
        """A short float in [low, high] (3 decimals: readable YAML, exact round trip)."""
        return round(low + (high - low) * self.integer(0, 1000) / 1000, 3)


class RandomChoices(Choices):
    def __init__(self, rng: random.Random):
        self.rng = rng

    def integer(self, low, high):
        return self.rng.randint(low, high)


class HypothesisChoices(Choices):
    def __init__(self, draw):
        from hypothesis import strategies as st

        self.draw, self.st = draw, st

    def integer(self, low, high):
        return self.draw(self.st.integers(low, high))

    def pick(self, options):
        return self.draw(self.st.sampled_from(list(options)))


# -- initializers, by the tensors they fit ---------------------------------------------------------------

def random_weight_init(c: Choices):
    """A random (input-independent, non-constant) initializer that fits any weight of 2 or more axes."""
    name = c.pick(RANDOM_WEIGHT_INITS)
    if name in ("xavier_uniform", "xavier_normal", "orthogonal"):
        gain = c.real(0.2, 2.0)
        return c.pick([name, {name: gain}, {name: {"gain": gain}}, {name: None}])
    if name in ("kaiming_uniform", "kaiming_normal"):
        args = {}
        if c.chance():
            args["a"] = c.real(0.0, 1.0)
        if c.chance():
            args["mode"] = c.pick(["fan_in", "fan_out"])
        if c.chance():
            args["nonlinearity"] = c.pick(NONLINEARITIES)
        return {name: args} if args else name
    if name == "variance_scaling":
        return {name: {"scale": c.real(0.1, 3.0), "mode": c.pick(["fan_in", "fan_out", "fan_avg"]),
                       "distribution": c.pick(["truncated_normal", "untruncated_normal", "uniform"])}}
    if name in ("uniform", "normal", "trunc_normal"):
        return random_init(c, name)
    return name


def random_init(c: Choices, name: str):
    if name == "uniform":
        low = c.real(-1.0, 0.5)
        return {name: {"low": low, "high": round(low + c.real(0.1, 1.0), 3)}}
    if name == "normal":
        return {name: {"mean": c.real(-0.5, 0.5), "std": c.real(0.01, 1.0)}}
    return {name: {"mean": 0.0, "std": c.real(0.01, 1.0), "low": c.real(-2.0, -0.1), "high": c.real(0.1, 2.0)}}


def values_of(c: Choices, shape, low=-1.0, high=1.0):
    rng = random.Random(c.integer(0, 2**16))
    flat = [round(rng.uniform(low, high), 3) for _ in range(math.prod(shape))]

    def nest(items, dims):
        if len(dims) == 1:
            return items
        step = len(items) // dims[0]
        return [nest(items[i * step:(i + 1) * step], dims[1:]) for i in range(dims[0])]

    return {"values": nest(flat, list(shape))}


def weight_init(c: Choices, category: str, shape):
    """Any initializer that fits this weight without a safety error (a warning, e.g. NS207, is fine)."""
    options = ["random"] * 4
    if len(shape) == 2:
        options += ["eye", "sparse"]
    if category == "conv":
        options += ["dirac"]
    if math.prod(shape) <= 48:
        options += ["values"]
    choice = c.pick(options)
    if choice == "eye":
        return c.pick(["eye", {"eye": c.real(0.5, 2.0)}])
    if choice == "sparse":
        return c.pick([{"sparse": 0.5}, {"sparse": {"sparsity": c.real(0.0, 0.9), "std": c.real(0.01, 0.5)}}])
    if choice == "dirac":
        return "dirac"
    if choice == "values":
        return values_of(c, shape)
    return random_weight_init(c)


def bias_init(c: Choices, shape, log_prior=True):
    options = ["zeros", "ones", "constant", "uniform", "normal", "trunc_normal", "torch_default", "values"]
    if log_prior:
        options.append("log_prior")
    if shape[0] % 2 == 0:
        options.append("chunks")
    name = c.pick(options)
    if name == "chunks":  # gate-wise parts, as an LSTM's forget bias of one
        parts = [c.pick(["zeros", "ones", {"constant": c.real(-1.0, 1.0)}, random_init(c, "uniform")])
                 for _ in range(2)]
        return c.pick([{"chunks": parts}, {"chunks": {"parts": parts}}])
    if name == "constant":
        value = c.real(-1.0, 1.0)
        return c.pick([{"constant": value}, {"constant": {"value": value}}])
    if name == "values":
        return values_of(c, shape)
    if name == "log_prior":
        counts = [c.integer(1, 50) for _ in range(shape[0])]
        return c.pick([{"log_prior": counts}, {"log_prior": {"counts": counts}}])
    if name in ("uniform", "normal", "trunc_normal"):
        return random_init(c, name)
    return name


def gamma_init(c: Choices, shape):
    """A norm scale that is never zero (zero gamma is NS205 outside exempt positions)."""
    name = c.pick(["ones", "constant", "uniform", "normal", "torch_default", "values"])
    if name == "constant":
        return {"constant": c.real(0.25, 2.0)}
    if name == "uniform":
        return {"uniform": {"low": 0.5, "high": 1.5}}
    if name == "normal":
        return {"normal": {"mean": 1.0, "std": c.real(0.01, 0.5)}}
    if name == "values":
        return values_of(c, shape, 0.25, 2.0)
    return name


# -- the spec generator ----------------------------------------------------------------------------------

def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


MERGE_KINDS = ("add", "multiply", "concat")
# what a token model's stack is made of, with weights: `SpecGenerator.token_<name>(shape, depth)` writes each
TOKEN_LAYERS = {"attention_block": 4, "mlp_block": 3, "linear": 2, "norm_layer": 1, "block_call": 1}


class SpecGenerator:
    def __init__(self, choices: Choices):
        self.c = choices
        self.names = itertools.count(1)
        self.blocks: dict = {}
        self.block_count = itertools.count()
        self.arg_count = itertools.count()

    def item(self, kind, args):
        """`kind`, `kind: null`, `kind: {}` or `kind: {args}` (the first three are the same item)."""
        if args:
            return {kind: args}
        return self.c.pick([kind, {kind: None}, {kind: {}}])

    def decorate(self, args: dict) -> dict:
        if self.c.chance(0.15):
            args["name"] = f"n{next(self.names)}"
        return args

    # -- layers ---------------------------------------------------------------------------------------
    def linear(self, shape):
        c = self.c
        out = c.integer(1, MAX_CHANNELS)
        bias = not c.chance(0.2)
        args = {"out": out}
        if not bias:
            args["bias"] = False
        init = {}
        if c.chance(0.6):
            init["weight"] = weight_init(c, "linear", (out, shape[-1]))
        if bias and c.chance(0.5):
            init["bias"] = bias_init(c, (out,))
        if init:
            args["init"] = init
        return args, (*shape[:-1], out)

    def conv(self, shape):
        c = self.c
        n = len(shape) - 1
        groups = c.pick([g for g in _divisors(shape[0]) if g <= 4])
        out = groups * c.integer(1, max(1, MAX_CHANNELS // groups))
        strided = c.chance(0.3)
        dilated = not strided and c.chance(0.2)  # stride and dilation together are NS301 (Keras refuses)
        stride = [c.integer(1, 2) if strided else 1 for _ in range(n)]
        dilation = [c.integer(1, 2) if dilated else 1 for _ in range(n)]
        padding_kind = c.pick(["int", "list", "valid"] + ([] if strided else ["same"]))
        pads = {"int": [c.integer(0, 1)] * n, "list": [c.integer(0, 1) for _ in range(n)],
                "valid": [0] * n, "same": None}[padding_kind]
        kernel, sizes = [], []
        for axis in range(n):
            size = shape[axis + 1]
            if pads is None:
                kernel.append(c.integer(1, 3))
                sizes.append(size)
                continue
            limit = size + 2 * pads[axis]
            k = c.pick([k for k in (1, 2, 3) if dilation[axis] * (k - 1) + 1 <= limit])
            kernel.append(k)
            sizes.append((limit - dilation[axis] * (k - 1) - 1) // stride[axis] + 1)
        if any(s > MAX_SPATIAL for s in sizes):
            return None
        args = {"out": out, "kernel": kernel[0] if len(set(kernel)) == 1 and c.chance() else kernel}
        if strided or c.chance(0.2):
            args["stride"] = stride[0] if len(set(stride)) == 1 and c.chance() else stride
        args["padding"] = {"int": pads[0] if pads else 0, "list": pads}.get(padding_kind, padding_kind)
        if dilated or c.chance(0.1):
            args["dilation"] = dilation[0] if len(set(dilation)) == 1 else dilation
        if groups > 1 or c.chance(0.1):
            args["groups"] = groups
        bias = not c.chance(0.3)
        if not bias:
            args["bias"] = False
        init = {}
        if c.chance(0.6):
            init["weight"] = weight_init(c, "conv", (out, shape[0] // groups, *kernel))
        if bias and c.chance(0.5):
            init["bias"] = bias_init(c, (out,))
        if init:
            args["init"] = init
        return args, (out, *sizes)

    def pool(self, shape, kind):
        c = self.c
        kernel, stride, pads, sizes = [], [], [], []
        explicit_stride = c.chance()
        for size in shape[1:]:
            # avgpool3d needs the unpadded input to hold the kernel (PyTorch's avg_pool3d)
            k = c.pick([k for k in (1, 2, 3) if k <= size or (kind != "avgpool3d" and k <= size + 2 * (k // 2))])
            p = c.pick([p for p in range(k // 2 + 1) if size + 2 * p >= k])
            s = c.integer(1, 2) if explicit_stride else k
            kernel.append(k)
            stride.append(s)
            pads.append(p)
        ceil = c.chance(0.3)
        for size, k, s, p in zip(shape[1:], kernel, stride, pads):
            out = (size + 2 * p - k + (s - 1 if ceil else 0)) // s + 1
            if ceil and (out - 1) * s >= size + p:  # the last window must start inside the input
                out -= 1
            sizes.append(out)
        args = {"kernel": kernel[0] if len(set(kernel)) == 1 and c.chance() else kernel}
        if explicit_stride:
            args["stride"] = stride
        if any(pads):
            args["padding"] = pads
        if ceil:
            args["ceil_mode"] = True
        return args, (shape[0], *sizes)

    def conv_transpose(self, shape):
        c = self.c
        groups = c.pick([g for g in _divisors(shape[0]) if g <= 3])
        out = groups * c.integer(1, max(1, MAX_CHANNELS // groups))
        strided = c.chance(0.5)
        dilated = not strided and c.chance(0.3)  # stride and dilation together are NS301 (Keras refuses)
        kernel, stride, dilation, pads, extra, sizes = [], [], [], [], [], []
        for size in shape[1:]:
            k, s = c.integer(1, 3), c.integer(1, 2) if strided else 1
            d = c.integer(1, 2) if dilated else 1
            full = (size - 1) * s + d * (k - 1) + 1
            p = c.integer(0, min(2, (full - 1) // 2))
            op = c.integer(0, max(s, d) - 1)
            kernel.append(k), stride.append(s), dilation.append(d), pads.append(p), extra.append(op)
            sizes.append(full - 2 * p + op)
        if any(size > MAX_SPATIAL for size in sizes):
            return None
        args = {"out": out, "kernel": kernel[0] if len(set(kernel)) == 1 and c.chance() else kernel}
        for key, values, default in (("stride", stride, 1), ("padding", pads, 0), ("output_padding", extra, 0),
                                     ("dilation", dilation, 1)):
            if set(values) != {default} or c.chance(0.1):
                args[key] = values[0] if len(set(values)) == 1 and c.chance() else values
        if groups > 1 or c.chance(0.1):
            args["groups"] = groups
        bias = not c.chance(0.3)
        if not bias:
            args["bias"] = False
        init = {}
        if c.chance(0.5):
            init["weight"] = weight_init(c, "conv_transpose", (shape[0], out // groups, *kernel))
        if bias and c.chance(0.4):
            init["bias"] = bias_init(c, (out,))
        if init:
            args["init"] = init
        return args, (out, *sizes)

    def upsample(self, shape):
        c = self.c
        n = len(shape) - 1
        scale = [c.pick([s for s in (1, 2, 3) if size * s <= MAX_SPATIAL]) for size in shape[1:]]
        args = {"scale": scale[0] if len(set(scale)) == 1 and c.chance() else scale} if scale != [2] * n \
            or c.chance(0.2) else {}
        if n == 2 and c.chance(0.4):
            args["mode"] = "bilinear"
        return args, (shape[0], *(size * s for size, s in zip(shape[1:], scale)))

    def channel_tensors(self, shape, kind):
        """groupnorm, rmsnorm, layernorm over the channels, scale, prelu: tensors of one axis."""
        c = self.c
        args, size = {}, shape[0]
        if kind == "groupnorm":
            args["groups"] = c.pick(_divisors(shape[0]))
        if kind == "rmsnorm":
            size = shape[-1]
        if kind in ("groupnorm", "rmsnorm", "layernorm_channels") and c.chance(0.3):
            args["eps"] = c.pick([1e-5, 1e-3, 1e-6])
        if kind == "layernorm_channels":
            args["over"] = "channels"
        if kind == "prelu":
            per_channel = c.chance()
            if per_channel or c.chance(0.2):
                args["per_channel"] = per_channel
            size = size if per_channel else 1
            if c.chance(0.3):
                args["init"] = {"weight": c.pick([{"constant": c.real(0.0, 0.5)}, values_of(c, (size,), 0.0, 0.5)])}
        elif c.chance(0.4):
            args["init"] = {"gamma": gamma_init(c, (size,)) if kind != "scale" else c.pick(
                [gamma_init(c, (size,)), {"constant": 1e-6}, {"constant": 0.1}])}
            if kind in ("groupnorm", "layernorm_channels") and c.chance():
                args["init"]["beta"] = bias_init(c, (size,), log_prior=False)
        return args, shape

    def norm(self, shape, kind):
        c = self.c
        args = {}
        if c.chance(0.3):
            args["eps"] = c.pick([1e-5, 1e-3, 0.01])
        if kind == "batchnorm" and c.chance(0.3):
            args["momentum"] = c.pick([0.1, 0.01, 0.5])
        size = shape[0] if kind == "batchnorm" else shape[-1]
        init = {}
        if c.chance(0.4):
            init["gamma"] = gamma_init(c, (size,))
        if c.chance(0.4):
            init["beta"] = bias_init(c, (size,), log_prior=False)
        if init:
            args["init"] = init
        return args, shape

    def activation(self, shape, kind):
        c = self.c
        args = {}
        if kind == "leaky_relu" and c.chance():
            args["slope"] = c.pick([0.0, 0.01, 0.2])
        if kind == "elu" and c.chance():
            args["alpha"] = c.pick([0.5, 1.0, 2.0])
        if kind == "gelu" and c.chance():
            args["approximate"] = c.pick(["none", "tanh"])
        if kind == "softmax" and c.chance(0.7):
            args["axis"] = c.integer(-len(shape), len(shape) - 1)
        return args, shape

    def layer(self, shape, preserving=False):
        """(item, output shape) of one layer; `preserving`: only layers that keep the shape."""
        c = self.c
        n = len(shape) - 1
        groups = {"activation": list(ACTIVATIONS), "norm": ["layernorm", "batchnorm", "rmsnorm", "scale", "prelu"],
                  "other": ["identity", "dropout", "rescale"]}
        if 1 <= n <= 3:
            groups["norm"] += ["groupnorm", "layernorm_channels"]
        if not preserving:
            groups["linear"] = ["linear"]
            groups["reshape"] = ["flatten", "slice"] + (["global_avg_pool", "global_max_pool", "tokens_roundtrip"]
                                                        if 1 <= n <= 3 else [])
            if 1 <= n <= 3 and any(shape[0] % g == 0 for g in (2, 3)):
                groups["reshape"].append("channel_shuffle")
            if 1 <= n <= 3:
                groups["tokens"] = ["tokens_roundtrip"]  # the sequence kinds, on the map's positions
                groups["conv"] = [f"conv{n}d", f"conv{n}d", f"conv_transpose{n}d"]
                groups["pool"] = [f"maxpool{n}d", f"avgpool{n}d", "adaptive_avg_pool", "adaptive_max_pool"]
                if any(size * 2 <= MAX_SPATIAL for size in shape[1:]):
                    groups["reshape"].append("upsample")
                if all(size + 2 <= MAX_SPATIAL for size in shape[1:]):
                    groups["pool"].append("pad")  # zero padding, often before a pool
        else:
            groups["linear"] = ["linear_same"]
            if 1 <= n <= 3:
                groups["conv"] = [f"conv{n}d_same"]
        weights = {"activation": 3, "norm": 2, "other": 1, "linear": 2, "reshape": 1, "conv": 4, "pool": 2,
                   "tokens": 2}
        kind = c.pick(groups[c.pick([g for g in groups for _ in range(weights[g])])])
        if kind == "linear_same":
            args, _ = self.linear((*shape[:-1], shape[-1]))
            args["out"] = shape[-1]
            args.pop("init", None)  # drawn for another size
            return {"linear": self.decorate(args)}, shape
        if kind.endswith("_same"):
            args = {"out": shape[0], "kernel": c.pick([1, 3]), "padding": "same"}
            if c.chance():
                args["init"] = {"weight": c.pick(["dirac", "kaiming_normal"])}
            return {kind[:-5]: self.decorate(args)}, shape
        if kind == "linear":
            args, out = self.linear(shape)
        elif kind.startswith("conv_transpose"):
            made = self.conv_transpose(shape)
            if made is None:
                return self.layer(shape, preserving=True)
            args, out = made
        elif kind == "upsample":
            args, out = self.upsample(shape)
        elif kind.startswith("adaptive_"):
            size = [c.integer(1, MAX_SPATIAL // 2) for _ in shape[1:]]
            args = {"size": size[0] if len(set(size)) == 1 and c.chance() else size}
            out = (shape[0], *size)
        elif kind in ("groupnorm", "rmsnorm", "layernorm_channels", "scale", "prelu"):
            args, out = self.channel_tensors(shape, kind)
            kind = "layernorm" if kind == "layernorm_channels" else kind
        elif kind.startswith("conv"):
            made = self.conv(shape)
            if made is None:
                return self.layer(shape, preserving=True)
            args, out = made
        elif kind[:-2] in ("maxpool", "avgpool"):
            args, out = self.pool(shape, kind)
        elif kind in ("batchnorm", "layernorm"):
            args, out = self.norm(shape, kind)
        elif kind in ACTIVATIONS:
            args, out = self.activation(shape, kind)
        elif kind == "dropout":
            args, out = ({"p": c.pick([0.0, 0.1, 0.5])} if c.chance() else {}), shape
        elif kind == "flatten":
            args, out = {}, (math.prod(shape),)
        elif kind in ("global_avg_pool", "global_max_pool"):
            keep = c.chance(0.3)
            args, out = ({"keep_dims": True}, (shape[0],) + (1,) * n) if keep else ({}, (shape[0],))
        elif kind == "slice":
            start = c.integer(0, shape[0] - 1)
            stop = c.integer(start + 1, shape[0])
            args = {"start": start} if start or c.chance() else {}
            if stop != shape[0] or c.chance():
                args["stop"] = stop
            out = (stop - start, *shape[1:])
        elif kind == "channel_shuffle":
            args, out = {"groups": c.pick([g for g in (2, 3) if shape[0] % g == 0])}, shape
        elif kind == "pad":  # one integer, or per axis an integer or [before, after]
            pads = [(c.integer(0, 1), c.integer(0, 1)) for _ in shape[1:]]
            if c.chance(0.3):
                args = {"padding": pads[0][0]}
                pads = [(pads[0][0], pads[0][0])] * n
            else:
                args = {"padding": [b if b == a and c.chance() else [b, a] for b, a in pads]}
            out = (shape[0], *(size + b + a for size, (b, a) in zip(shape[1:], pads)))
        elif kind == "rescale":  # constants, one for all or one per channel
            channels = shape[-1] if n == 0 else shape[0]
            args = {}
            for name in ("scale", "offset"):
                if c.chance():
                    args[name] = ([round(0.25 + 0.5 * c.integer(0, 4), 2) for _ in range(channels)] if c.chance()
                                  else c.pick([0.5, 2.0, -1.0]))
            out = shape
        elif kind == "tokens_roundtrip":  # a map as tokens [prod(S), C], a layer on the tokens, back to the map
            inner = self.on_tokens(shape)
            # a slice of the positions forgets the grid: to_map is given it
            sliced = any(isinstance(i, dict) and "slice" in i for i in inner)
            return ["to_tokens", *inner, {"to_map": {"size": list(shape[1:])}} if sliced else "to_map"], shape
        else:
            args, out = {}, shape
        return self.item(kind, self.decorate(args)), out

    def on_tokens(self, shape) -> list:
        """Items on tokens [prod(S), C] that keep their count and width (a class token is sliced off again)."""
        c = self.c
        tokens, width = math.prod(shape[1:]), shape[0]
        kind = c.pick(["layernorm", "gelu", "linear", "attention", "position_embedding", "class_token", "class_token",
                       "lstm", "gru"])
        if kind == "linear":
            return [{"linear": {"out": width}}]
        if kind in ("lstm", "gru"):  # the sequence, as wide as it came: H, or H per direction
            both = width % 2 == 0 and c.chance()
            args = {"hidden": width // 2 if both else width}
            if both:
                args["bidirectional"] = True
            if c.chance(0.3):
                args["layers"] = 2
            if c.chance(0.3):
                gates = 4 if kind == "lstm" else 3
                role = c.pick(["weight_ih", "weight_hh", "bias_ih"])
                args["init"] = {role: c.pick({"weight_ih": ["glorot_uniform", "xavier_uniform"],
                                              "weight_hh": ["orthogonal", "eye"],
                                              "bias_ih": [{"chunks": ["zeros", "ones", "zeros", "zeros"][:gates]}]
                                              }[role])}
            return [{kind: self.decorate(args)}]
        if kind == "attention":
            args = {"heads": c.pick(_divisors(width))}
            for flag, default in (("causal", False), ("bias", True)):
                if c.chance(0.4):
                    args[flag] = not default if c.chance() else default
            if c.chance(0.2):
                args["dropout"] = c.pick([0.0, 0.1])
            if c.chance(0.3):
                roles = ["in_weight", "out_weight"] + (["in_bias", "out_bias"] if args.get("bias", True) else [])
                role = c.pick(roles)
                args["init"] = {role: c.pick(["xavier_uniform", {"normal": {"std": 0.02}}, "zeros"]
                                             if role.endswith("weight") and role != "in_weight"
                                             else (["xavier_uniform", {"normal": {"std": 0.02}}]
                                                   if role == "in_weight" else ["zeros", {"normal": {"std": 0.02}}]))}
            return [{"attention": self.decorate(args)}]
        if kind == "position_embedding":
            args = {"length": tokens + c.integer(0, 3)}
            if c.chance(0.3):
                args["init"] = {"weight": c.pick([{"normal": {"std": 0.02}}, {"trunc_normal": {"std": 0.02}}])}
            return [{"position_embedding": self.decorate(args)}]
        if kind == "class_token":
            item = {"init": {"token": c.pick(["zeros", {"normal": {"std": 0.02}}])}} if c.chance(0.3) else None
            # the grid is not remembered past a slice of the positions: to_map is given it
            return [{"class_token": item}, {"slice": {"start": 1, "axis": "tokens"}}]
        return [kind]

    # -- token models ---------------------------------------------------------------------------------
    # Shapes here are (T, D): positions, width. Each entry of TOKEN_LAYERS names a method
    # `token_<entry>(shape, depth) -> (items, shape)`; a new kind on tokens is one entry and one method.

    def token_model(self, kind):
        """(input, items before the stack, tokens shape) of a token model's start: ids, tokens or patches."""
        c = self.c
        if kind == "token_ids":
            t, num, dim = c.integer(1, 6), c.integer(2, 12), c.pick([2, 4, 6, 8])
            emb = {"num": num, "dim": dim}
            if c.chance():
                emb["init"] = {"weight": c.pick([{"normal": {"std": 0.02}}, random_weight_init(c)])}
            return {"shape": [t], "dtype": "int64"}, [{"embedding": self.decorate(emb)}], (t, dim)
        if kind == "tokens":
            t, dim = c.integer(1, 6), c.pick([1, 2, 3, 4, 6, 8])
            return {"shape": [t, dim], "layout": "tokens"}, [], (t, dim)
        channels, size, patch = c.integer(1, 3), c.pick([4, 6, 8]), c.pick([2, 4])
        patch = patch if size % patch == 0 else 2
        dim = c.pick([2, 4, 6, 8])
        conv = {"out": dim, "kernel": patch, "stride": patch}
        if c.chance():
            conv["init"] = {"weight": {"trunc_normal": {"std": 0.2}}, "bias": "zeros"}
        return [channels, size, size], [{"conv2d": self.decorate(conv)}, "to_tokens"], ((size // patch) ** 2, dim)

    def token_prefix(self, shape) -> tuple[list, tuple]:
        """A class token (ViT), learned positions at least as long as the sequence (GPT-2, ViT)."""
        c = self.c
        items = []
        t, dim = shape
        if c.chance(0.4):
            items.append(self.item("class_token", {"init": {"token": c.pick(["zeros", {"normal": {"std": 0.02}}])}}
                                   if c.chance(0.5) else {}))
            t += 1
        if c.chance(0.6):
            args = {"length": t + c.integer(0, 3)}
            if c.chance(0.6):
                args["init"] = {"weight": c.pick([{"normal": {"std": 0.02}}, {"trunc_normal": {"std": 0.02}}])}
            items.append({"position_embedding": self.decorate(args)})
        if c.chance(0.2):
            items.append(self.item("dropout", {"p": 0.1}))
        return items, (t, dim)

    def token_stack(self, shape, depth, count=None) -> tuple[list, tuple]:
        c = self.c
        items = []
        for _ in range(count if count is not None else c.integer(1, 3)):
            kind = c.pick([k for k in TOKEN_LAYERS for _ in range(TOKEN_LAYERS[k])])
            made, shape = getattr(self, f"token_{kind}")(shape, depth)
            items.extend(made)
        return items, shape

    def token_end(self, shape) -> tuple[list, tuple]:
        """Down to features (a global pool, the class token's slice, flatten) or stay on tokens; a head."""
        c = self.c
        t, dim = shape
        end = c.pick(["global_avg_pool", "global_max_pool", "class_slice", "flatten", "tokens"])
        items = [self.item("layernorm", {})] if c.chance(0.5) else []
        if end in ("global_avg_pool", "global_max_pool"):
            items.append(end)
            shape = (dim,)
        elif end == "class_slice":
            items += [{"slice": {"stop": 1, "axis": "tokens"}}, "flatten"]
            shape = (dim,)
        elif end == "flatten":
            items.append("flatten")
            shape = (t * dim,)
        if c.chance(0.7):
            out = c.integer(1, MAX_CHANNELS)
            head = {"out": out}
            if c.chance(0.4):
                head["init"] = {"weight": "zeros", "bias": "zeros"}  # the zero head: exempt
            items.append({"linear": self.decorate(head)})
            shape = (*shape[:-1], out)
        return items, shape

    def attention_args(self, dim, tail: bool) -> dict:
        """Arguments of an attention; `tail`: it ends a residual branch, so its out_weight may start at zero."""
        c = self.c
        args = {"heads": c.pick(_divisors(dim))}
        for flag, default in (("causal", False), ("bias", True)):
            if c.chance(0.4):
                args[flag] = not default if c.chance() else default
        if c.chance(0.2):
            args["dropout"] = c.pick([0.0, 0.1])
        init = {}
        style = c.pick(["default", "gpt2", "chunks", "random"])
        if style == "gpt2":
            init["in_weight"] = {"normal": {"std": 0.02}}
            init["out_weight"] = {"normal": {"std": c.pick([0.02, 0.01, 0.004])}}
        elif style == "chunks":  # q, k and v each initialised as a tensor of its own
            init["in_weight"] = {"chunks": [random_weight_init(c) for _ in range(3)]}
        elif style == "random":
            init["in_weight"] = random_weight_init(c)
        if tail and c.chance(0.3):
            init["out_weight"] = "zeros"  # zero-init residual: the block starts as the identity
        if args.get("bias", True) and c.chance(0.3):
            init["in_bias"] = c.pick(["zeros", {"normal": {"std": 0.02}}, {"chunks": ["zeros", "zeros", "zeros"]}])
            init["out_bias"] = c.pick(["zeros", {"normal": {"std": 0.02}}])
        if init:
            args["init"] = init
        return self.decorate(args)

    def token_branch(self, items, shape, depth):
        """A pre-norm residual branch as an `add` merge (list or named branches) or a `residual`."""
        c = self.c
        form = c.pick(["add_list", "add_named", "residual"])
        repeat = {"repeat": c.integer(1, 2)} if c.chance(0.2) else {}
        if form == "residual":
            if repeat or c.chance():
                return [{"residual": self.decorate({"branch": items, **repeat})}], shape
            return [{"residual": items}], shape
        branches = [[], items] if c.chance() else [items, []]
        if form == "add_named":
            names = ["skip", "attn"] if branches[0] == [] else ["attn", "skip"]
            return [{"add": self.decorate({"branches": dict(zip(names, branches)), **repeat})}], shape
        if repeat or c.chance(0.3):
            return [{"add": self.decorate({"branches": branches, **repeat})}], shape
        return [{"add": branches}], shape

    def token_norm(self, shape):
        c = self.c
        kind = c.pick(["layernorm", "layernorm", "rmsnorm"])
        args = {"eps": c.pick([1e-5, 1e-6])} if c.chance(0.3) else {}
        return self.item(kind, self.decorate(args))

    def token_attention_block(self, shape, depth):
        c = self.c
        dim = shape[1]
        tail = [self.item("dropout", {"p": 0.1})] if c.chance(0.3) else []
        if c.chance(0.2):
            tail.append(self.item("drop_path", {"p": c.pick([0.0, 0.1])}))
        items = [self.token_norm(shape), {"attention": self.attention_args(dim, tail=True)}, *tail]
        return self.token_branch(items, shape, depth)

    def token_mlp_block(self, shape, depth):
        c = self.c
        dim, hidden = shape[1], c.integer(1, 2 * MAX_CHANNELS)
        second = {"out": dim}
        scale = c.chance(0.3)
        if not scale and c.chance(0.3):
            second["init"] = {"weight": c.pick(["zeros", {"normal": {"std": 0.01}}])}  # zero tail: exempt
        items = [self.token_norm(shape), {"linear": {"out": hidden}},
                 self.item("gelu", {"approximate": "tanh"} if c.chance() else {}), {"linear": second}]
        if scale:  # layer scale, ConvNeXt / CaiT: small or zero at the end of the branch
            items.append({"scale": {"init": {"gamma": c.pick([{"constant": 1e-6}, "zeros", {"constant": 0.1}])}}})
        return self.token_branch(items, shape, depth)

    def token_linear(self, shape, depth):
        """A linear per token (a new width), sometimes followed by an activation."""
        c = self.c
        args, out = self.linear(shape)
        items = [{"linear": self.decorate(args)}]
        if c.chance(0.5):
            kind = c.pick(["gelu", "relu", "tanh", "silu"])
            items.append(self.item(kind, {}))
        return items, out

    def token_norm_layer(self, shape, depth):
        return [self.token_norm(shape)], shape

    def token_block_call(self, shape, depth):
        """A block of token layers (some values turned into `$arg`s), called once or repeated."""
        c = self.c
        if depth >= 1:
            return self.token_attention_block(shape, depth)
        body, out_shape = self.token_stack(shape, depth + 1, count=c.integer(1, 2))
        name = f"blk{next(self.block_count)}"
        args, call = {}, {}
        body = [self.abstract(item, args, call) for item in body]
        self.blocks[name] = {"args": args, "layers": body} if args else {"layers": body}
        call = self.decorate(call)
        if out_shape == shape and c.chance(0.4):
            call["repeat"] = c.integer(1, 2)
        return [self.item(name, call)], out_shape

    # -- structure ------------------------------------------------------------------------------------
    def stack(self, shape, depth, count=None, preserving=False):
        """(items, output shape) of a random sequence."""
        c = self.c
        items = []
        count = count if count is not None else c.integer(1, 4)
        for _ in range(count):
            roll = c.integer(0, 9)
            if depth < 2 and roll == 0:
                item, after = self.residual(shape, depth, preserving)
            elif depth < 2 and roll == 1 and not preserving:
                item, after = self.block_call(shape, depth)
            elif depth < 2 and roll == 2:
                item, after = self.merge(shape, depth, preserving)
            else:
                item, after = self.layer(shape, preserving)
                if isinstance(item, list):  # several items that belong together
                    items.extend(item)
                    shape = after
                    continue
                if after == shape and c.chance(0.15):
                    item = self.repeat(item)
            items.append(item)
            shape = after
        return items, shape

    def repeat(self, item):
        times = self.c.integer(1, 3)
        if isinstance(item, str) or next(iter(item.values())) is None:
            kind = item if isinstance(item, str) else next(iter(item))
            return {kind: {"repeat": times}}
        kind, args = next(iter(item.items()))
        return {kind: {**args, "repeat": times}}

    def residual(self, shape, depth, preserving=False):
        c = self.c
        projection = not preserving and c.chance()
        if projection and 2 <= len(shape) <= 4:
            conv = f"conv{len(shape) - 1}d"
            out, stride = c.integer(1, MAX_CHANNELS), c.integer(1, 2)
            tail = {"init": {"gamma": "zeros"}} if c.chance(0.3) else None  # zero-init residual: exempt
            branch = [{conv: {"out": out, "kernel": 3, "stride": stride, "padding": 1, "bias": False}},
                      "batchnorm", self.item(c.pick(["relu", "gelu", "tanh"]), {}),
                      {conv: {"out": out, "kernel": 3, "padding": 1, "bias": False}},
                      {"batchnorm": tail} if tail else "batchnorm"]
            shortcut = [{conv: {"out": out, "kernel": 1, "stride": stride, "bias": False}}, "batchnorm"]
            out_shape = (out, *((s - 1) // stride + 1 for s in shape[1:]))
            args = {"branch": branch, "shortcut": shortcut}
        elif projection:
            out = c.integer(1, MAX_CHANNELS)
            branch = [{"linear": {"out": out}}, "tanh", {"linear": {"out": out}}]
            args = {"branch": branch, "shortcut": [{"linear": {"out": out, "bias": False}}]}
            out_shape = (*shape[:-1], out)
        else:
            branch, _ = self.stack(shape, depth + 1, preserving=True)
            if c.chance(0.3):  # stochastic depth belongs in a residual branch
                branch.append(self.item("drop_path", {"p": c.pick([0.0, 0.1, 0.2])}))
            out_shape = shape
            if c.chance():
                return {"residual": branch}, shape  # the short form: the branch, identity shortcut
            args = {"branch": branch}
        if c.chance(0.2):
            args["init"] = {"weight": random_weight_init(c)}
        if out_shape == shape and c.chance(0.2):
            args["repeat"] = c.integer(1, 2)
        return {"residual": self.decorate(args)}, out_shape

    def merge(self, shape, depth, preserving=False):
        """add / multiply / concat: branches as a list or named, an identity branch, a per-channel gate."""
        c = self.c
        n = len(shape) - 1
        op = c.pick(["add", "multiply"] + ([] if preserving else ["concat"]))
        if op == "concat":
            extra = c.integer(1, MAX_CHANNELS)
            widen = ({f"conv{n}d": {"out": extra, "kernel": 1}} if 1 <= n <= 3 else {"linear": {"out": extra}})
            branches = [[], [widen] + ([c.pick(["relu", "gelu"])] if c.chance() else [])]
            out_shape = (shape[0] + extra, *shape[1:])
        else:
            inner, _ = self.stack(shape, depth + 1, count=c.integer(1, 2), preserving=True)
            branches = [[], inner]
            if op == "multiply" and 1 <= n <= 3 and c.chance():  # a squeeze-excitation gate, broadcast per channel
                keep = c.chance()
                pool = {"global_avg_pool": {"keep_dims": True}} if keep else "global_avg_pool"
                squeeze = ({f"conv{n}d": {"out": shape[0], "kernel": 1}} if keep else {"linear": {"out": shape[0]}})
                branches[1] = [pool, squeeze, "sigmoid"]
            out_shape = shape
        if c.chance():
            branches.reverse()
        if c.chance(0.4):
            args = {"branches": {f"b{i}": items for i, items in enumerate(branches)}}
        elif c.chance():
            return {op: branches}, out_shape  # the short form: the list of branches
        else:
            args = {"branches": branches}
        if c.chance(0.2):
            args["init"] = {"weight": random_weight_init(c)}
        return {op: self.decorate(args)}, out_shape

    def block_call(self, shape, depth):
        """Define a block from a random body (some of its values turned into `$arg`s) and call it."""
        c = self.c
        body, out_shape = self.stack(shape, depth + 1)
        name = f"blk{next(self.block_count)}"
        args, call = {}, {}
        body = [self.abstract(item, args, call) for item in body]
        self.blocks[name] = {"args": args, "layers": body} if args or c.chance() else {"layers": body}
        call = self.decorate(call)
        if out_shape == shape and c.chance(0.3):
            call["repeat"] = c.integer(1, 2)
        if c.chance(0.2):
            call["init"] = {"weight": random_weight_init(c), "bias": "zeros"}
        return self.item(name, call), out_shape

    def abstract(self, value, args, call, key=None):
        """`value` with some scalars replaced by `$aN`; each becomes a block argument (required, or with
        the value as its default), and the call passes the value or relies on the default."""
        if isinstance(value, dict):
            if key == "branches":  # named branches: each value is a list of items
                return {k: self.abstract(v, args, call, "branch") for k, v in value.items()}
            return {k: self.abstract(v, args, call, k) for k, v in value.items()}
        if isinstance(value, list):  # a list of items (a residual's) is no value: `- $x` is no item
            if key in MERGE_KINDS:  # the short form: a list of branches, each a list of items
                return [self.abstract(v, args, call, "branch") for v in value]
            inner = None if key in ("residual", "branch", "shortcut", "branches") else key
            return [self.abstract(v, args, call, inner) for v in value]
        if (isinstance(value, int) and not isinstance(value, bool) and value >= 2 and value % 2 == 0
                and key is not None and self.c.chance(0.1)):  # block-argument arithmetic
            arg = f"a{next(self.arg_count)}"
            args[arg] = value // 2
            if self.c.chance():
                call[arg] = value // 2
            return f"${arg} * 2"
        if value is None or key is None or not self.c.chance(0.2):
            return value  # bare items (`- relu`) and nulls stay
        arg = f"a{next(self.arg_count)}"
        if self.c.chance():
            args[arg] = "required"
            call[arg] = value
        else:
            args[arg] = value
            if self.c.chance():
                call[arg] = value
        return f"${arg}"

    def spec(self) -> tuple[dict, tuple]:
        """(spec data, the output shape tracked while generating it)."""
        c = self.c
        kind = c.pick(["features", "sequence", "image", "volume", "ids", "token_ids", "tokens", "patches"])
        if kind in ("token_ids", "tokens", "patches"):
            return self.token_spec(kind)
        shape = {"features": lambda: (c.integer(1, 8),),
                 "sequence": lambda: (c.integer(1, 4), c.integer(1, MAX_SPATIAL)),
                 "image": lambda: (c.integer(1, 3), c.integer(1, 10), c.integer(1, 10)),
                 "volume": lambda: (c.integer(1, 2), c.integer(1, 5), c.integer(1, 5), c.integer(1, 5)),
                 "ids": lambda: (c.integer(1, 6),)}[kind]()
        spec: dict = {"nnspec": 1, "name": "prop_model"}
        layers = []
        if kind == "ids":
            spec["input"] = {"shape": list(shape), "dtype": "int64"}
            num, dim = c.integer(2, 10), c.integer(1, MAX_CHANNELS)
            emb = {"num": num, "dim": dim}
            if c.chance():
                emb["init"] = {"weight": weight_init(c, "embedding", (num, dim))}
            layers.append({"embedding": self.decorate(emb)})
            layers.append("to_map")  # tokens [T, D] -> a map [D, T], which everything below accepts
            shape = (dim, *shape)
        else:
            spec["input"] = list(shape) if c.chance(0.7) else {"shape": list(shape)}
        if c.chance():
            spec["seed"] = c.integer(0, 1000)
        if c.chance(0.1):  # free text: it must never reach emitted code
            spec["description"] = c.pick(["a generated spec", "x; import os", '""" \'\'\' {{ name }}'])
        items, out_shape = self.stack(shape, 0, count=c.integer(1, 6))
        layers += items
        self.zero_head(layers)
        self.waived_constant(layers)
        if c.chance(0.3):
            spec["init"] = self.model_init()
        if self.blocks:
            spec["blocks"] = self.blocks
        spec["layers"] = layers
        return spec, out_shape

    def token_spec(self, kind) -> tuple[dict, tuple]:
        c = self.c
        spec: dict = {"nnspec": 1, "name": "prop_tokens"}
        spec["input"], layers, shape = self.token_model(kind)
        if c.chance():
            spec["seed"] = c.integer(0, 1000)
        prefix, shape = self.token_prefix(shape)
        body, shape = self.token_stack(shape, 0, count=c.integer(1, 4))
        end, shape = self.token_end(shape)
        spec["layers"] = layers + prefix + body + end
        if c.chance(0.3):  # GPT-2's model-wide init, or a random one
            spec["init"] = c.pick([{"weight": {"normal": {"std": 0.02}}, "bias": "zeros"}, self.model_init()])
        if self.blocks:
            spec["blocks"] = self.blocks
        spec = {k: spec[k] for k in ("nnspec", "name", "input", "seed", "init", "blocks", "layers") if k in spec}
        return spec, shape

    def zero_head(self, layers):
        """Sometimes a zero-initialised output head (exempt from NS201) on a last linear layer."""
        last = layers[-1]
        # not a repeated one: only its last copy is the head
        if isinstance(last, dict) and "linear" in last and "repeat" not in last["linear"] and self.c.chance(0.3):
            last["linear"].setdefault("init", {})["weight"] = "zeros"

    def waived_constant(self, layers):
        """Sometimes a constant hidden weight with its NS201 waiver (and a reason)."""
        for item in layers[:-1]:
            if isinstance(item, dict) and "linear" in item and "repeat" not in item["linear"] and self.c.chance(0.3):
                args = item["linear"]
                args.setdefault("init", {})["weight"] = {"constant": 0.05}
                args["allow"] = {"NS201": "a waived constant hidden weight", "NS203": "it may meet another"}
                return

    def model_init(self):
        c = self.c
        init = {}
        if c.chance(0.7):
            init["weight"] = random_weight_init(c)
        if c.chance():
            init["bias"] = c.pick(["zeros", {"constant": 0.1}, {"uniform": {"low": -0.1, "high": 0.1}}])
        if c.chance(0.3):
            init["gamma"] = "ones"
        if c.chance(0.4):
            init["linear"] = {"weight": random_weight_init(c)}
        if c.chance(0.4):  # a kind-level default beats the role default (NS212, a warning, if unused)
            kind = c.pick(["conv1d", "conv2d", "conv3d", "embedding", "batchnorm", "layernorm"])
            init[kind] = ({"gamma": c.pick(["ones", {"constant": 0.5}, {"uniform": {"low": 0.5, "high": 1.5}}]), "beta": "zeros"}
                          if "norm" in kind else {"weight": random_weight_init(c)})
            if kind in ("conv1d", "conv2d", "conv3d") and c.chance():
                init[kind]["bias"] = c.pick(["zeros", {"normal": {"std": 0.1}}])
        return init or {"weight": "torch_default"}


def spec_text(choices: Choices) -> tuple[str, tuple]:
    """(YAML text of a random valid spec, its output shape), in block or mixed flow style."""
    spec, out_shape = SpecGenerator(choices).spec()
    return yaml.safe_dump(spec, sort_keys=False, default_flow_style=choices.pick([False, None])), out_shape


def random_spec_text(seed: int) -> str:
    return spec_text(RandomChoices(random.Random(seed)))[0]
