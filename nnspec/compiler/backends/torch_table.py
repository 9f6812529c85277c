"""The PyTorch lowering table: IR layer kind -> module constructor, initializer -> calls.

Both the in-memory builder and the emitted source use these entries; a new
layer kind or initializer is one entry here.
"""

from __future__ import annotations

import math

from nnspec.compiler.backends.expr import Arg, Call, call
from nnspec.compiler.ir import Layer, Tensor, chunk_parts
from nnspec.vocabulary import initializers as inits
from nnspec.vocabulary import scaling

TORCH_ROLE = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias", "token": "token",
              "in_weight": "in_proj_weight", "in_bias": "in_proj_bias", "out_weight": "out_proj.weight",
              "out_bias": "out_proj.bias"}
PRELU_DEFAULT = 0.25  # nn.PReLU's init


def torch_path(tensor: Tensor) -> str:
    """The state_dict key of a tensor: norm gamma/beta are PyTorch's weight/bias; a tensor named apart from
    its role (lstm's `weight_ih_l0`) is PyTorch's under that name."""
    key = tensor.path.rpartition(".")[2]
    return tensor.path[: -len(key)] + TORCH_ROLE.get(key, key)


def _int_or_tuple(values: tuple):
    return values[0] if len(set(values)) == 1 else tuple(values)


def _linear(layer: Layer) -> Call:
    extra = {} if layer.args["bias"] else {"bias": False}
    return call("nn.Linear", layer.in_shape[-1], layer.args["out"], **extra)


def _conv(n: int):
    def lower(layer: Layer) -> Call:
        g, a = layer.geometry, layer.args
        kwargs: dict = {"kernel_size": _int_or_tuple(g["kernel"])}
        if set(g["stride"]) != {1}:
            kwargs["stride"] = _int_or_tuple(g["stride"])
        if a["padding"] == "same":
            kwargs["padding"] = "same"
        elif any(p for p, _ in g["pads"]):
            kwargs["padding"] = _int_or_tuple(tuple(p for p, _ in g["pads"]))
        if set(g["dilation"]) != {1}:
            kwargs["dilation"] = _int_or_tuple(g["dilation"])
        if a["groups"] != 1:
            kwargs["groups"] = a["groups"]
        if not a["bias"]:
            kwargs["bias"] = False
        return call(f"nn.Conv{n}d", layer.in_shape[0], a["out"], **kwargs)

    return lower


def _batchnorm(layer: Layer) -> Call:
    rank = len(layer.in_shape)
    dims = {1: 1, 2: 1, 3: 2, 4: 3}[rank]
    kwargs = {}
    if layer.args["eps"] != 1e-5:
        kwargs["eps"] = layer.args["eps"]
    if layer.args["momentum"] != 0.1:
        kwargs["momentum"] = layer.args["momentum"]
    return call(f"nn.BatchNorm{dims}d", layer.in_shape[0], **kwargs)


def _layernorm(layer: Layer) -> Call:
    extra = {"eps": layer.args["eps"]} if layer.args["eps"] != 1e-5 else {}
    if layer.args["over"] == "channels" and layer.in_shape.layout == "map":
        return call("ChannelLayerNorm", layer.in_shape[0], **extra)
    return call("nn.LayerNorm", layer.in_shape[-1], **extra)


def _pool(cls: str):
    def lower(layer: Layer) -> Call:
        g = layer.geometry
        kwargs = {}
        if g["stride"] != g["kernel"]:
            kwargs["stride"] = _int_or_tuple(g["stride"])
        if any(g["padding"]):
            kwargs["padding"] = _int_or_tuple(g["padding"])
        if g["ceil_mode"]:
            kwargs["ceil_mode"] = True
        return call(cls, _int_or_tuple(g["kernel"]), **kwargs)

    return lower


def _conv_transpose(n: int):
    def lower(layer: Layer) -> Call:
        g, a = layer.geometry, layer.args
        kwargs: dict = {"kernel_size": _int_or_tuple(g["kernel"])}
        for name in ("stride", "padding", "output_padding", "dilation"):
            default = 1 if name in ("stride", "dilation") else 0
            if set(g[name]) != {default}:
                kwargs[name] = _int_or_tuple(g[name])
        if a["groups"] != 1:
            kwargs["groups"] = a["groups"]
        if not a["bias"]:
            kwargs["bias"] = False
        return call(f"nn.ConvTranspose{n}d", layer.in_shape[0], a["out"], **kwargs)

    return lower


def _upsample(layer: Layer) -> Call:
    scale = layer.args["scale"]
    scale = scale if isinstance(scale, int) else _int_or_tuple(tuple(scale))
    if layer.args["mode"] == "bilinear":
        return call("nn.Upsample", scale_factor=scale, mode="bilinear", align_corners=False)
    return call("nn.Upsample", scale_factor=scale)


def _adaptive(cls: str):
    def lower(layer: Layer) -> Call:
        size = layer.args["size"]
        return call(f"{cls}{len(layer.in_shape) - 1}d", size if isinstance(size, int) else _int_or_tuple(tuple(size)))

    return lower


def _groupnorm(layer: Layer) -> Call:
    extra = {"eps": layer.args["eps"]} if layer.args["eps"] != 1e-5 else {}
    return call("nn.GroupNorm", layer.args["groups"], layer.in_shape[0], **extra)


def _prelu(layer: Layer) -> Call:
    if not layer.args["per_channel"]:
        return call("nn.PReLU")
    if layer.in_shape.layout == "tokens":  # nn.PReLU's channels are axis 1: here they are the last axis
        return call("LastAxisPReLU", layer.in_shape.channels)
    return call("nn.PReLU", layer.in_shape.channels)


def _scale(layer: Layer) -> Call:
    shape = layer.in_shape
    return call("Scale", shape.channels) if shape.layout == "map" else call("Scale", shape.channels, dim=-1)


def _attention(layer: Layer) -> Call:
    a = layer.args
    extra = {}
    if a["dropout"]:
        extra["dropout"] = a["dropout"]
    if not a["bias"]:
        extra["bias"] = False
    return call("CausalSelfAttention" if a["causal"] else "SelfAttention", layer.in_shape[-1], a["heads"], **extra)


def _recurrent(cls: str):
    def lower(layer: Layer) -> Call:
        a = layer.args
        extra = {}
        if a["layers"] != 1:
            extra["layers"] = a["layers"]
        if a["bidirectional"]:
            extra["bidirectional"] = True
        if a["output"] == "last":
            extra["last"] = True
        return call(cls, layer.in_shape[-1], a["hidden"], **extra)

    return lower


def _softmax(layer: Layer) -> Call:
    axis = layer.args["axis"]
    return call("nn.Softmax", dim=axis + 1 if axis >= 0 else axis)


def _gelu(layer: Layer) -> Call:
    return call("nn.GELU", approximate="tanh") if layer.args["approximate"] == "tanh" else call("nn.GELU")


def _simple(cls: str, **fixed):
    return lambda layer: call(cls, **fixed)


def _slice(layer: Layer) -> Call:
    shape, args = layer.in_shape, layer.args
    axis = 0 if args["axis"] == "tokens" else shape.channel_axis
    stop = shape[axis] if args["stop"] is None else args["stop"]
    return call("Slice", args["start"], stop, dim=axis + 1) if axis else call("Slice", args["start"], stop)


def _pad(layer: Layer) -> Call:
    from nnspec.vocabulary.kinds import pad_geometry

    pads = pad_geometry(layer.args, len(layer.in_shape) - 1)["pads"]
    flat = tuple(side for pair in reversed(pads) for side in pair)  # the last axis first, as F.pad
    return call(f"nn.ZeroPad{len(pads)}d", flat[0] if len(set(flat)) == 1 else flat)


def _rescale(layer: Layer) -> Call:
    shape, args = layer.in_shape, layer.args
    extra = {"dim": -1} if shape.layout != "map" else {}
    return call("Rescale", args["scale"], args["offset"], **extra)


def _global_pool(mode: str):
    def lower(layer: Layer) -> Call:
        if mode == "avg" and not layer.args["keep_dims"] and layer.in_shape.layout == "map":
            return call("GlobalAvgPool")
        kwargs = {}
        if layer.args["keep_dims"]:
            kwargs["keep_dims"] = True
        if layer.in_shape.layout == "tokens":
            kwargs["tokens"] = True
        return call("GlobalPool", mode, **kwargs)

    return lower


LAYERS = {
    "linear": _linear,
    "conv1d": _conv(1),
    "conv2d": _conv(2),
    "conv3d": _conv(3),
    "batchnorm": _batchnorm,
    "layernorm": _layernorm,
    "embedding": lambda layer: call("nn.Embedding", layer.args["num"], layer.args["dim"]),
    "relu": _simple("nn.ReLU"),
    "relu6": _simple("nn.ReLU6"),
    "leaky_relu": lambda layer: call("nn.LeakyReLU", layer.args["slope"]),
    "gelu": _gelu,
    "tanh": _simple("nn.Tanh"),
    "sigmoid": _simple("nn.Sigmoid"),
    "silu": _simple("nn.SiLU"),
    "elu": lambda layer: call("nn.ELU", alpha=layer.args["alpha"]) if layer.args["alpha"] != 1.0 else call("nn.ELU"),
    "softmax": _softmax,
    "identity": _simple("nn.Identity"),
    "dropout": lambda layer: call("nn.Dropout", layer.args["p"]),
    "flatten": _simple("nn.Flatten"),
    "maxpool1d": _pool("nn.MaxPool1d"),
    "maxpool2d": _pool("nn.MaxPool2d"),
    "maxpool3d": _pool("nn.MaxPool3d"),
    "avgpool1d": _pool("nn.AvgPool1d"),
    "avgpool2d": _pool("nn.AvgPool2d"),
    "avgpool3d": _pool("nn.AvgPool3d"),
    "conv_transpose1d": _conv_transpose(1),
    "conv_transpose2d": _conv_transpose(2),
    "conv_transpose3d": _conv_transpose(3),
    "upsample": _upsample,
    "adaptive_avg_pool": _adaptive("nn.AdaptiveAvgPool"),
    "adaptive_max_pool": _adaptive("nn.AdaptiveMaxPool"),
    "hardswish": _simple("nn.Hardswish"),
    "hardsigmoid": _simple("nn.Hardsigmoid"),
    "softplus": _simple("nn.Softplus"),
    "mish": _simple("nn.Mish"),
    "prelu": _prelu,
    "groupnorm": _groupnorm,
    "rmsnorm": lambda layer: call("nn.RMSNorm", layer.in_shape[-1], eps=layer.args["eps"]),
    "scale": _scale,
    "drop_path": lambda layer: call("DropPath", layer.args["p"]),
    "global_avg_pool": _global_pool("avg"),
    "global_max_pool": _global_pool("max"),
    "slice": _slice,
    "channel_shuffle": lambda layer: call("nn.ChannelShuffle", layer.args["groups"]),
    "pad": _pad,
    "rescale": _rescale,
    "to_tokens": _simple("ToTokens"),
    "to_map": lambda layer: call("ToMap", tuple(layer.out_shape[1:])),
    "class_token": lambda layer: call("ClassToken", layer.in_shape[-1]),
    "position_embedding": lambda layer: call("PositionEmbedding", layer.args["length"], layer.in_shape[-1]),
    "attention": _attention,
    "lstm": _recurrent("LSTM"),
    "gru": _recurrent("GRU"),
}

# torch_runtime helpers that the emitted code of a kind may carry (the simplest that the layer needs)
HELPERS_BY_KIND = {"global_avg_pool": ("GlobalAvgPool", "GlobalPool"), "global_max_pool": ("GlobalPool",),
                   "slice": ("Slice",), "to_tokens": ("ToTokens",), "to_map": ("ToMap",),
                   "layernorm": ("ChannelLayerNorm",), "prelu": ("LastAxisPReLU",), "scale": ("Scale",),
                   "rescale": ("Rescale",), "drop_path": ("DropPath",), "class_token": ("ClassToken",),
                   "position_embedding": ("PositionEmbedding",),
                   "attention": ("SelfAttention", "CausalSelfAttention"), "lstm": ("LSTM",), "gru": ("GRU",)}
HELPERS = tuple(dict.fromkeys(h for helpers in HELPERS_BY_KIND.values() for h in helpers))


def helpers_used(layers) -> list:
    """The torch_runtime helpers that these layers' constructors call, in a fixed order."""
    called = {LAYERS[layer.kind](layer).func for layer in layers}
    return [helper for helper in HELPERS if helper in called]


# How each tensor is initialised: (kind, arguments) for the runtime's `init_tensor_`, which draws
# every random value from the tensor's counter-based stream (see `torch_runtime.stream_block`), so
# that any shard of the tensor can be computed alone. Distributions follow torch.nn.init exactly.


def torch_fans(shape: tuple) -> tuple[int, int]:
    """torch.nn.init's fans of a tensor of this (PyTorch-layout) shape."""
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _uniform(low: float, high: float) -> tuple[str, dict]:
    return "uniform", {"low": low, "high": high}


def _normal(mean: float, std: float) -> tuple[str, dict]:
    return "normal", {"mean": mean, "std": std}


def _kaiming(uniform: bool):
    def plan(tensor: Tensor) -> tuple[str, dict]:
        a = tensor.init.args
        fan_in, fan_out = torch_fans(tensor.shape)
        fan = fan_in if a["mode"] == "fan_in" else fan_out
        std = scaling.calculate_gain(a["nonlinearity"], a["a"]) / math.sqrt(fan) if fan else 0.0
        return _uniform(-math.sqrt(3.0) * std, math.sqrt(3.0) * std) if uniform else _normal(0.0, std)

    return plan


def _xavier(uniform: bool):
    def plan(tensor: Tensor) -> tuple[str, dict]:
        fan_in, fan_out = torch_fans(tensor.shape)
        std = tensor.init.args["gain"] * math.sqrt(2.0 / float(fan_in + fan_out)) if fan_in + fan_out else 0.0
        return _uniform(-math.sqrt(3.0) * std, math.sqrt(3.0) * std) if uniform else _normal(0.0, std)

    return plan


def _from_distribution(tensor: Tensor) -> tuple[str, dict]:
    d = scaling.variance_scaling_distribution(tensor.init.name, tensor.init.args, tensor.fan_in, tensor.fan_out)
    if d.kind == "uniform":
        return _uniform(d.a, d.b)
    if d.kind == "normal":
        return _normal(0.0, d.b)
    return "trunc_normal", {"mean": 0.0, "std": d.b, "low": d.low, "high": d.high}


def torch_default(tensor: Tensor) -> tuple[str, dict]:
    kind = tensor.layer.kind
    if tensor.role == "gamma":
        return "ones", {}
    if tensor.role == "beta":
        return "zeros", {}
    if kind in ("embedding", "position_embedding"):
        return _normal(0.0, 1.0)
    if kind == "class_token":
        return "zeros", {}
    if kind == "attention":  # nn.MultiheadAttention._reset_parameters; out_proj keeps nn.Linear's weight init
        if tensor.role == "in_weight":
            fan_in, fan_out = torch_fans(tensor.shape)
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            return _uniform(-bound, bound)
        if tensor.role in ("in_bias", "out_bias"):
            return "zeros", {}
    if kind == "prelu":
        return "constant", {"value": PRELU_DEFAULT}
    if kind in ("lstm", "gru"):  # nn.LSTM / nn.GRU reset every tensor to U(-1/sqrt(H), 1/sqrt(H))
        bound = 1.0 / math.sqrt(tensor.layer.args["hidden"])
        return _uniform(-bound, bound)
    if tensor.role == "bias":
        bound = 1.0 / math.sqrt(tensor.fan_in) if tensor.fan_in > 0 else 0.0
        return _uniform(-bound, bound)
    # kaiming_uniform_(a=sqrt(5)), as nn.Linear and nn.ConvNd reset their weight
    fan_in = torch_fans(tensor.shape)[0]
    std = scaling.calculate_gain("leaky_relu", math.sqrt(5)) / math.sqrt(fan_in) if fan_in else 0.0
    return _uniform(-math.sqrt(3.0) * std, math.sqrt(3.0) * std)


INITS = {
    "zeros": lambda t: ("zeros", {}),
    "ones": lambda t: ("ones", {}),
    "constant": lambda t: ("constant", {"value": t.init.args["value"]}),
    "eye": lambda t: ("eye", {"gain": t.init.args["gain"]}),
    "dirac": lambda t: ("dirac", {"groups": t.layer.args.get("groups", 1)}),
    "uniform": lambda t: _uniform(t.init.args["low"], t.init.args["high"]),
    "normal": lambda t: _normal(t.init.args["mean"], t.init.args["std"]),
    "trunc_normal": lambda t: ("trunc_normal", {k: t.init.args[k] for k in ("mean", "std", "low", "high")}),
    "xavier_uniform": _xavier(True),
    "xavier_normal": _xavier(False),
    "kaiming_uniform": _kaiming(True),
    "kaiming_normal": _kaiming(False),
    "orthogonal": lambda t: ("orthogonal", {"gain": t.init.args["gain"]}),
    "sparse": lambda t: ("sparse", {"sparsity": t.init.args["sparsity"], "std": t.init.args["std"]}),
    "variance_scaling": _from_distribution,
    "glorot_uniform": _from_distribution,
    "glorot_normal": _from_distribution,
    "he_uniform": _from_distribution,
    "he_normal": _from_distribution,
    "lecun_uniform": _from_distribution,
    "lecun_normal": _from_distribution,
    "values": lambda t: ("values", {"values": t.init.args["values"]}),
    "log_prior": lambda t: ("values", {"values": inits.log_prior(t.init.args["counts"])}),
    "torch_default": torch_default,
    "chunks": lambda t: ("chunks", {"parts": [call("spec_part", *_part_plan(part)) for part in chunk_parts(t)]}),
}


def _part_plan(part: Tensor) -> tuple:
    kind, args = init_plan(part)
    return (kind, *(Arg(value, name) for name, value in args.items()))


def init_plan(tensor: Tensor) -> tuple[str, dict]:
    """(kind, arguments) of `init_tensor_` for this tensor."""
    return INITS[tensor.init.name](tensor)


def plan_entry(tensor: Tensor) -> Call:
    """The `spec_init(key, path, kind, **args)` entry of the tensor in a model's INITIALIZERS."""
    kind, args = init_plan(tensor)
    return call("spec_init", torch_path(tensor), tensor.path, kind, **args)
