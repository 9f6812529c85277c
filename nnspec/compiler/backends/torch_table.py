"""The PyTorch lowering table: IR layer kind -> module constructor, initializer -> calls.

Both the in-memory builder and the emitted source use these entries; a new
layer kind or initializer is one entry here.
"""

from __future__ import annotations

import math

from nnspec.compiler.backends.expr import Call, Const, Ref, call, method
from nnspec.compiler.ir import Layer, Tensor
from nnspec.vocabulary import initializers as inits
from nnspec.vocabulary import scaling

T, G = Ref("tensor"), Ref("generator")
TORCH_ROLE = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}
PRELU_DEFAULT = 0.25  # nn.PReLU's init


def torch_path(tensor: Tensor) -> str:
    """The state_dict key of a tensor: norm gamma/beta are PyTorch's weight/bias."""
    return tensor.path[: -len(tensor.role)] + TORCH_ROLE[tensor.role]


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


def _global_pool(mode: str):
    def lower(layer: Layer) -> Call:
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
    "to_tokens": _simple("ToTokens"),
    "to_map": lambda layer: call("ToMap", tuple(layer.out_shape[1:])),
}

# torch_runtime helpers that the emitted code of a kind must carry
HELPERS_BY_KIND = {"global_avg_pool": "GlobalPool", "global_max_pool": "GlobalPool", "slice": "Slice",
                   "to_tokens": "ToTokens", "to_map": "ToMap", "layernorm": "ChannelLayerNorm",
                   "prelu": "LastAxisPReLU", "scale": "Scale", "drop_path": "DropPath"}
HELPERS_BY_INIT = {"sparse": "sparse_"}  # torch_runtime helpers that emitted code must carry


def helpers_used(layers) -> list:
    """The torch_runtime helpers that these layers' constructors call, in a fixed order."""
    called = {LAYERS[layer.kind](layer).func for layer in layers}
    return [helper for helper in dict.fromkeys(HELPERS_BY_KIND.values()) if helper in called]


def _nonzero(**kwargs) -> dict:
    return {k: v for k, v in kwargs.items() if v is not None}


def _from_distribution(tensor: Tensor) -> list[Call]:
    d = scaling.variance_scaling_distribution(tensor.init.name, tensor.init.args, tensor.fan_in, tensor.fan_out)
    if d.kind == "uniform":
        return [call("nn.init.uniform_", T, d.a, d.b, generator=G)]
    if d.kind == "normal":
        return [call("nn.init.normal_", T, std=d.b, generator=G)]
    return [call("nn.init.trunc_normal_", T, std=d.b, a=d.low, b=d.high, generator=G)]


def _kaiming(fn: str):
    def lower(tensor: Tensor) -> list[Call]:
        a = tensor.init.args
        kwargs = _nonzero(a=a["a"] if a["a"] != 0 else None,
                          mode=a["mode"] if a["mode"] != "fan_in" else None,
                          nonlinearity=a["nonlinearity"] if a["nonlinearity"] != "leaky_relu" else None)
        return [call(fn, T, **kwargs, generator=G)]

    return lower


def _gain(fn: str, random: bool = True):
    def lower(tensor: Tensor) -> list[Call]:
        gain = tensor.init.args["gain"]
        extra = {"gain": gain} if gain != 1.0 else {}
        if random:
            extra["generator"] = G
        return [call(fn, T, **extra)]

    return lower


def _eye(tensor: Tensor) -> list[Call]:
    gain = tensor.init.args["gain"]
    return [call("nn.init.eye_", T)] + ([method(T, "mul_", gain)] if gain != 1.0 else [])


def _dirac(tensor: Tensor) -> list[Call]:
    groups = tensor.layer.args.get("groups", 1)
    return [call("nn.init.dirac_", T, groups)] if groups != 1 else [call("nn.init.dirac_", T)]


def _copy(values) -> list[Call]:
    return [method(T, "copy_", call("torch.tensor", values))]


def torch_default(tensor: Tensor) -> list[Call]:
    kind = tensor.layer.kind
    if tensor.role == "gamma":
        return [call("nn.init.ones_", T)]
    if tensor.role == "beta":
        return [call("nn.init.zeros_", T)]
    if kind == "embedding":
        return [call("nn.init.normal_", T, generator=G)]
    if kind == "prelu":
        return [call("nn.init.constant_", T, PRELU_DEFAULT)]
    if tensor.role == "bias":
        bound = 1.0 / math.sqrt(tensor.fan_in) if tensor.fan_in > 0 else 0.0
        return [call("nn.init.uniform_", T, -bound, bound, generator=G)]
    return [call("nn.init.kaiming_uniform_", T, a=Const("math.sqrt(5)", math.sqrt(5)), generator=G)]


INITS = {
    "zeros": lambda t: [call("nn.init.zeros_", T)],
    "ones": lambda t: [call("nn.init.ones_", T)],
    "constant": lambda t: [call("nn.init.constant_", T, t.init.args["value"])],
    "eye": _eye,
    "dirac": _dirac,
    "uniform": lambda t: [call("nn.init.uniform_", T, t.init.args["low"], t.init.args["high"], generator=G)],
    "normal": lambda t: [call("nn.init.normal_", T, t.init.args["mean"], t.init.args["std"], generator=G)],
    "trunc_normal": lambda t: [call("nn.init.trunc_normal_", T, t.init.args["mean"], t.init.args["std"],
                                    t.init.args["low"], t.init.args["high"], generator=G)],
    "xavier_uniform": _gain("nn.init.xavier_uniform_"),
    "xavier_normal": _gain("nn.init.xavier_normal_"),
    "kaiming_uniform": _kaiming("nn.init.kaiming_uniform_"),
    "kaiming_normal": _kaiming("nn.init.kaiming_normal_"),
    "orthogonal": _gain("nn.init.orthogonal_"),
    # nnspec's own sparse_ (torch_runtime): PyTorch's draws the zeroed rows from the global generator
    "sparse": lambda t: [call("sparse_", T, t.init.args["sparsity"], std=t.init.args["std"], generator=G)],
    "variance_scaling": _from_distribution,
    "glorot_uniform": _from_distribution,
    "glorot_normal": _from_distribution,
    "he_uniform": _from_distribution,
    "he_normal": _from_distribution,
    "lecun_uniform": _from_distribution,
    "lecun_normal": _from_distribution,
    "values": lambda t: _copy(t.init.args["values"]),
    "log_prior": lambda t: _copy(inits.log_prior(t.init.args["counts"])),
    "torch_default": torch_default,
}


def init_calls(tensor: Tensor) -> list[Call]:
    return INITS[tensor.init.name](tensor)
