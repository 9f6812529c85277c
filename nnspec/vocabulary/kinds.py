"""The layer-kind registry: arguments, roles, tensors and shape inference.

Shapes are logical: channels first, batch excluded. Each kind is one entry
here plus one entry in each backend's table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from nnspec.vocabulary.fast import lazy_models
from nnspec.vocabulary.layouts import FEATURES, MAP, TOKENS, Shape

m = lazy_models("nnspec.vocabulary.args")  # the argument models (pydantic), imported when first used


class ShapeError(Exception):
    def __init__(self, code: str, message: str, arg: str | None = None, hint: str = ""):
        super().__init__(message)
        self.code, self.message, self.arg, self.hint = code, message, arg, hint


@dataclass(frozen=True)
class TensorShape:
    role: str
    shape: Shape
    fan_in: int
    fan_out: int
    name: str = ""  # the tensor's own name where a layer has several of one role (lstm's `weight_ih_l1`)

    @property
    def key(self) -> str:
        return self.name or self.role


@dataclass(frozen=True)
class Kind:
    name: str
    args: type  # its pydantic model in nnspec/vocabulary/args.py, or a lazy reference to one
    category: str
    ndim: int = 0
    infer: Callable = None  # (args, shape, dtype) -> shape
    tensors: Callable = None  # (args, in_shape) -> list[TensorShape]
    activation: bool = False
    summary: str = ""
    layouts: tuple | None = None  # the input layouts it accepts; None: any float layout
    out_layout: object = None  # None: the input's; a layout name; or (in_shape, dims) -> Shape
    geometry: Callable = None  # (args, ndim) -> the normalised geometry the backends read, or None
    role_names: Callable = None  # (args) -> the tensor roles, where the category's rule does not fit
    own_roles: tuple = ()  # roles the model-wide `init.<role>` does not reach (only `init.<kind>.<role>`)

    @property
    def parametrised(self) -> bool:
        return self.tensors is not None

    def roles(self, args: dict) -> tuple:
        if self.role_names is not None:
            return self.role_names(args)
        if self.category in ("linear", "conv", "conv_transpose"):
            return ("weight", "bias") if args.get("bias", True) else ("weight",)
        if self.category == "embedding":
            return ("weight",)
        if self.category == "norm":
            return ("gamma", "beta")
        return ()


def _need_rank(shape: Shape, ranks: tuple, what: str) -> None:
    if len(shape) not in ranks:
        want = " or ".join(f"{r}-D" for r in ranks)
        raise ShapeError("NS104", f"{what} needs a {want} input, got shape {list(shape)}")


def tuple_arg(value, n: int, name: str) -> tuple:
    if isinstance(value, int):
        return (value,) * n
    if len(value) != n:
        raise ShapeError("NS004", f"{name} needs {n} value(s) here, got {len(value)}", name)
    return tuple(value)


def conv_geometry(args: dict, n: int) -> dict:
    """Normalised conv arguments: tuples, and (before, after) padding per axis."""
    kernel = tuple_arg(args["kernel"], n, "kernel")
    stride = tuple_arg(args["stride"], n, "stride")
    dilation = tuple_arg(args["dilation"], n, "dilation")
    padding = args["padding"]
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ShapeError("NS102", "padding `same` needs stride 1 (PyTorch refuses it otherwise)", "padding",
                             "give the padding as an integer, e.g. (kernel - 1) // 2")
        pads = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            pads.append((total // 2, total - total // 2))
    elif padding == "valid":
        pads = [(0, 0)] * n
    else:
        pads = [(p, p) for p in tuple_arg(padding, n, "padding")]
    return {"kernel": kernel, "stride": stride, "dilation": dilation, "pads": tuple(pads)}


def _check_groups(args: dict, c_in: int) -> None:
    groups = args["groups"]
    if c_in % groups:
        raise ShapeError("NS103", f"input channels {c_in} are not divisible by groups={groups}", "groups")
    if args["out"] % groups:
        raise ShapeError("NS103", f"out={args['out']} is not divisible by groups={groups}", "groups")


def _conv_infer(n: int):
    def infer(args: dict, shape: Shape, dtype: str) -> Shape:
        _need_rank(shape, (n + 1,), f"conv{n}d")
        g = conv_geometry(args, n)
        _check_groups(args, shape[0])
        sizes = []
        for size, k, s, d, (pb, pa) in zip(shape[1:], g["kernel"], g["stride"], g["dilation"], g["pads"]):
            span = d * (k - 1) + 1
            if size + pb + pa < span:
                raise ShapeError("NS102", f"kernel {k} (dilation {d}) spans {span}, larger than the padded input "
                                          f"{size + pb + pa}", "kernel")
            sizes.append((size + pb + pa - span) // s + 1)
        return (args["out"], *sizes)

    return infer


def _conv_tensors(n: int):
    def tensors(args: dict, shape: Shape) -> list:
        kernel = tuple_arg(args["kernel"], n, "kernel")
        rf = math.prod(kernel)
        c_in = shape[0] // args["groups"]
        out = [TensorShape("weight", (args["out"], c_in, *kernel), c_in * rf, args["out"] * rf)]
        if args["bias"]:
            out.append(TensorShape("bias", (args["out"],), c_in * rf, args["out"] * rf))
        return out

    return tensors


def _linear_infer(args, shape, dtype):
    return (*shape[:-1], args["out"])


def _linear_tensors(args, shape):
    c_in = shape[-1]
    out = [TensorShape("weight", (args["out"], c_in), c_in, args["out"])]
    if args["bias"]:
        out.append(TensorShape("bias", (args["out"],), c_in, args["out"]))
    return out


def _bn_infer(args, shape, dtype):
    _need_rank(shape, (1, 2, 3, 4), "batchnorm")
    return shape


def _norm_tensors(axis: int):
    def tensors(args, shape):
        c = shape[axis]
        return [TensorShape("gamma", (c,), c, c), TensorShape("beta", (c,), c, c)]

    return tensors


def _same(args, shape, dtype):
    return shape


def _embedding_infer(args, shape, dtype):
    return (*shape, args["dim"])


def _embedding_layout(in_shape: Shape, dims: tuple) -> Shape:
    # ids [T] give tokens; ids of more axes give v1's reading, a map whose channels are the first ids axis
    return Shape(dims, TOKENS if len(dims) == 2 else MAP)


def _embedding_tensors(args, shape):
    return [TensorShape("weight", (args["num"], args["dim"]), args["dim"], args["num"])]


def _flatten_infer(args, shape, dtype):
    return (math.prod(shape),)


def _softmax_infer(args, shape, dtype):
    if not -len(shape) <= args["axis"] < len(shape):
        raise ShapeError("NS004", f"axis {args['axis']} is out of range for a {len(shape)}-D input {list(shape)}",
                         "axis")
    return shape


def pool_geometry(args: dict, n: int) -> dict:
    kernel = tuple_arg(args["kernel"], n, "kernel")
    stride = tuple_arg(args["stride"], n, "stride") if args.get("stride") is not None else kernel
    padding = tuple_arg(args["padding"], n, "padding")
    return {"kernel": kernel, "stride": stride, "padding": padding, "ceil_mode": args.get("ceil_mode", False)}


def pool_size(size: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size: with ceil_mode, the last window must start inside the input or the left
    padding."""
    out = (size + 2 * p - k + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_infer(n: int, name: str):
    def infer(args, shape, dtype):
        _need_rank(shape, (n + 1,), name)
        g = pool_geometry(args, n)
        sizes = []
        for size, k, s, p in zip(shape[1:], g["kernel"], g["stride"], g["padding"]):
            if p > k // 2:
                raise ShapeError("NS102", f"padding {p} is more than half the kernel {k}", "padding",
                                 "PyTorch allows pool padding of at most kernel // 2")
            if size + 2 * p < k:
                raise ShapeError("NS102", f"kernel {k} is larger than the padded input {size + 2 * p}", "kernel")
            if name == "avgpool3d" and size < k:
                raise ShapeError("NS102", f"kernel {k} is larger than the input {size}; PyTorch's avg_pool3d "
                                          "needs the unpadded input to be at least the kernel", "kernel")
            sizes.append(pool_size(size, k, s, p, g["ceil_mode"]))
        return (shape[0], *sizes)

    return infer


def conv_transpose_geometry(args: dict, n: int) -> dict:
    return {"kernel": tuple_arg(args["kernel"], n, "kernel"), "stride": tuple_arg(args["stride"], n, "stride"),
            "dilation": tuple_arg(args["dilation"], n, "dilation"), "padding": tuple_arg(args["padding"], n, "padding"),
            "output_padding": tuple_arg(args["output_padding"], n, "output_padding")}


def _conv_transpose_infer(n: int):
    def infer(args: dict, shape: Shape, dtype: str) -> Shape:
        _need_rank(shape, (n + 1,), f"conv_transpose{n}d")
        g = conv_transpose_geometry(args, n)
        _check_groups(args, shape[0])
        sizes = []
        for size, k, s, d, p, op in zip(shape[1:], g["kernel"], g["stride"], g["dilation"], g["padding"],
                                        g["output_padding"]):
            if op >= max(s, d):
                raise ShapeError("NS102", f"output_padding {op} must be smaller than the stride {s} or the "
                                          f"dilation {d}", "output_padding",
                                 "PyTorch refuses it: output_padding only picks among the sizes a stride allows")
            sizes.append((size - 1) * s - 2 * p + d * (k - 1) + op + 1)
        return (args["out"], *sizes)

    return infer


def _conv_transpose_tensors(n: int):
    def tensors(args: dict, shape: Shape) -> list:
        kernel = tuple_arg(args["kernel"], n, "kernel")
        rf = math.prod(kernel)
        per_group = args["out"] // args["groups"]
        # PyTorch's fans read the layout [in, out/groups, *k]: fan_in = size(1) * rf, fan_out = size(0) * rf
        fan_in, fan_out = per_group * rf, shape[0] * rf
        out = [TensorShape("weight", (shape[0], per_group, *kernel), fan_in, fan_out)]
        if args["bias"]:
            out.append(TensorShape("bias", (args["out"],), fan_in, fan_out))
        return out

    return tensors


def _upsample_infer(args, shape, dtype):
    n = len(shape) - 1
    if args["mode"] == "bilinear" and n != 2:
        raise ShapeError("NS104", f"`mode: bilinear` needs a 2-D map [C, H, W], got {shape.describe()}", "mode",
                         "use `mode: nearest` on a 1-D or 3-D map")
    scale = tuple_arg(args["scale"], n, "scale")
    return (shape[0], *(size * s for size, s in zip(shape[1:], scale)))


def _adaptive_pool_infer(args, shape, dtype):
    return (shape[0], *tuple_arg(args["size"], len(shape) - 1, "size"))


def _groupnorm_infer(args, shape, dtype):
    if shape[0] % args["groups"]:
        raise ShapeError("NS103", f"channels {shape[0]} are not divisible by groups={args['groups']}", "groups")
    return shape


def _layernorm_tensors(args, shape):
    c = shape[shape.channel_axis] if args["over"] == "channels" else shape[-1]
    return [TensorShape("gamma", (c,), c, c), TensorShape("beta", (c,), c, c)]


def _one_tensor(role: str, axis: str):
    def tensors(args, shape):
        c = shape[-1] if axis == "last" else shape.channels
        if role == "weight" and not args["per_channel"]:
            c = 1
        return [TensorShape(role, (c,), c, c)]

    return tensors


def _global_pool(name: str):
    def infer(args, shape, dtype):
        if shape.layout == TOKENS:  # pool over the positions T
            return Shape((1, shape[1]), TOKENS) if args["keep_dims"] else Shape((shape[1],), FEATURES)
        _need_rank(shape, (2, 3, 4), name)
        if args["keep_dims"]:
            return Shape((shape[0],) + (1,) * (len(shape) - 1), MAP)
        return Shape((shape[0],), FEATURES)

    return infer


def _slice_infer(args, shape, dtype):
    if args["axis"] == "tokens":
        if shape.layout != TOKENS:
            raise ShapeError("NS104", f"`axis: tokens` slices the positions of tokens [T, D], got {shape.describe()}",
                             "axis")
        axis = 0
    else:
        axis = shape.channel_axis
    size, start = shape[axis], args["start"]
    stop = size if args["stop"] is None else args["stop"]
    if stop > size:
        raise ShapeError("NS004", f"`stop` {stop} is past the end of an axis of size {size}", "stop",
                         f"a range of 0 to {size}")
    if start >= stop:
        raise ShapeError("NS004", f"`start` {start} must be below `stop` {stop}", "start")
    dims = list(shape)
    dims[axis] = stop - start
    return Shape(dims, shape.layout, shape.grid if shape.layout == TOKENS and axis == 1 else None)


def _channel_shuffle_infer(args, shape, dtype):
    if shape[0] % args["groups"]:
        raise ShapeError("NS103", f"channels {shape[0]} are not divisible by groups={args['groups']}", "groups")
    return shape


def pad_geometry(args: dict, n: int) -> dict:
    """(before, after) zeros per spatial axis."""
    padding = args["padding"]
    if isinstance(padding, int):
        return {"pads": ((padding, padding),) * n}
    if len(padding) != n:
        raise ShapeError("NS004", f"padding needs {n} entr{'y' if n == 1 else 'ies'} here (one per spatial axis), "
                                  f"got {len(padding)}", "padding",
                         "one integer for every side, or per spatial axis an integer or [before, after]")
    return {"pads": tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)}


def _pad_infer(args, shape, dtype):
    g = pad_geometry(args, len(shape) - 1)
    return (shape[0], *(size + b + a for size, (b, a) in zip(shape[1:], g["pads"])))


def _rescale_infer(args, shape, dtype):
    channels = shape.channels
    for name in ("scale", "offset"):
        value = args[name]
        if isinstance(value, list) and len(value) not in (1, channels):
            raise ShapeError("NS004", f"`{name}` has {len(value)} values, but the input {shape.describe()} has "
                                      f"{channels} channels", name, f"one number, or {channels} (one per channel)")
    return shape


def _to_tokens_infer(args, shape, dtype):
    return Shape((math.prod(shape[1:]), shape[0]), TOKENS, grid=shape[1:])


def _to_map_infer(args, shape, dtype):
    tokens, dim = shape
    if args["size"] is not None:
        size = tuple(args["size"])
        if math.prod(size) != tokens:
            raise ShapeError("NS004", f"`size` {list(size)} holds {math.prod(size)} positions, but there are "
                                      f"{tokens} tokens", "size", f"sizes whose product is {tokens}")
    else:
        size = shape.grid or (tokens,)
    return Shape((dim, *size), MAP)


def _need_tokens(shape: Shape, what: str) -> None:
    if shape.layout != TOKENS:
        raise ShapeError("NS104", f"`{what}` needs tokens [T, D], got {shape.describe()}", None,
                         "turn a map into tokens with `to_tokens`, or ids into tokens with `embedding`")


def _class_token_infer(args, shape, dtype):
    _need_tokens(shape, "class_token")
    return Shape((shape[0] + 1, shape[1]), TOKENS)


def _class_token_tensors(args, shape):
    d = shape[-1]
    return [TensorShape("token", (d,), d, d)]


def _position_embedding_infer(args, shape, dtype):
    _need_tokens(shape, "position_embedding")
    if shape[0] > args["length"]:
        raise ShapeError("NS102", f"the sequence has {shape[0]} positions but `length` is {args['length']}: "
                                  "there is no learned position for the ones past it", None,
                         f"a `length` of at least {shape[0]}")
    return shape


def _position_embedding_tensors(args, shape):
    # PyTorch's fans of a [length, D] table, as for an embedding table [num, dim]
    return [TensorShape("weight", (args["length"], shape[-1]), shape[-1], args["length"])]


def _attention_infer(args, shape, dtype):
    _need_tokens(shape, "attention")
    if shape[1] % args["heads"]:
        raise ShapeError("NS103", f"the token width {shape[1]} is not divisible by heads={args['heads']}", "heads",
                         f"a number of heads that divides {shape[1]}")
    return shape


def _attention_tensors(args, shape):
    d = shape[-1]
    out = [TensorShape("in_weight", (3 * d, d), d, 3 * d)]
    if args["bias"]:
        out.append(TensorShape("in_bias", (3 * d,), d, 3 * d))
    out.append(TensorShape("out_weight", (d, d), d, d))
    if args["bias"]:
        out.append(TensorShape("out_bias", (d,), d, d))
    return out


def _attention_roles(args):
    return ("in_weight", "in_bias", "out_weight", "out_bias") if args.get("bias", True) else \
        ("in_weight", "out_weight")


GATES = {"lstm": 4, "gru": 3}  # PyTorch's gate order: i, f, g, o (lstm); r, z, n (gru)
RECURRENT_ROLES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _recurrent_infer(name: str):
    def infer(args, shape, dtype):
        _need_tokens(shape, name)
        width = args["hidden"] * (2 if args["bidirectional"] else 1)
        if args["output"] == "last":
            return Shape((width,), FEATURES)
        return Shape((shape[0], width), TOKENS, shape.grid)

    return infer


def recurrent_tensor_names(args) -> list:
    """(layer, direction suffix) of every layer and direction, in PyTorch's parameter order."""
    suffixes = ("", "_reverse") if args["bidirectional"] else ("",)
    return [(k, sfx) for k in range(args["layers"]) for sfx in suffixes]


def _recurrent_tensors(gates: int):
    def tensors(args, shape):
        h = args["hidden"]
        dirs = 2 if args["bidirectional"] else 1
        out = []
        for k, sfx in recurrent_tensor_names(args):
            width = shape[-1] if k == 0 else h * dirs
            tail = f"_l{k}{sfx}"
            out += [TensorShape("weight_ih", (gates * h, width), width, gates * h, "weight_ih" + tail),
                    TensorShape("weight_hh", (gates * h, h), h, gates * h, "weight_hh" + tail),
                    TensorShape("bias_ih", (gates * h,), width, gates * h, "bias_ih" + tail),
                    TensorShape("bias_hh", (gates * h,), h, gates * h, "bias_hh" + tail)]
        return out

    return tensors


KINDS: dict[str, Kind] = {}


def _add(kind: Kind) -> None:
    KINDS[kind.name] = kind


_add(Kind("linear", m.LinearArgs, "linear", infer=_linear_infer, tensors=_linear_tensors,
          summary="y = x W^T + b on the last axis"))
for _n in (1, 2, 3):
    _add(Kind(f"conv{_n}d", m.ConvArgs, "conv", _n, _conv_infer(_n), _conv_tensors(_n),
              summary=f"{_n}-D convolution, channels first", layouts=(MAP,), geometry=conv_geometry))
_add(Kind("batchnorm", m.BatchNormArgs, "norm", infer=_bn_infer, tensors=_norm_tensors(0),
          summary="batch normalisation over the channel axis (axis 0) of a map or features",
          layouts=(MAP, FEATURES)))
_add(Kind("layernorm", m.LayerNormArgs, "norm", infer=_same, tensors=_layernorm_tensors,
          summary="layer normalisation over the last axis, or (`over: channels`) over the channel axis"))
_add(Kind("groupnorm", m.GroupNormArgs, "norm", infer=_groupnorm_infer, tensors=_norm_tensors(0), layouts=(MAP,),
          summary="group normalisation: the channels of a map in `groups` groups"))
_add(Kind("rmsnorm", m.RMSNormArgs, "scale", infer=_same, tensors=_one_tensor("gamma", "last"),
          role_names=lambda args: ("gamma",), summary="RMS normalisation over the last axis"))
_add(Kind("scale", m.NoLayerArgs, "scale", infer=_same, tensors=_one_tensor("gamma", "channels"),
          role_names=lambda args: ("gamma",), summary="per-channel scale (layer scale) on the channel axis"))
_add(Kind("prelu", m.PReLUArgs, "scale", infer=_same, tensors=_one_tensor("weight", "channels"),
          role_names=lambda args: ("weight",), own_roles=("weight",),
          summary="PReLU: one learned negative slope, or one per channel"))
_add(Kind("embedding", m.EmbeddingArgs, "embedding", infer=_embedding_infer, tensors=_embedding_tensors,
          summary="integer ids [T] -> tokens [T, dim]", out_layout=_embedding_layout))
_add(Kind("class_token", m.NoLayerArgs, "token", infer=_class_token_infer, tensors=_class_token_tensors,
          layouts=(TOKENS,), role_names=lambda args: ("token",), own_roles=("token",),
          summary="a learned token prepended to the sequence: tokens [T, D] -> [T + 1, D]"))
_add(Kind("position_embedding", m.PositionEmbeddingArgs, "position", infer=_position_embedding_infer,
          tensors=_position_embedding_tensors, layouts=(TOKENS,), role_names=lambda args: ("weight",),
          own_roles=("weight",), summary="learned positions: adds the first T rows of a [length, D] table"))
_add(Kind("attention", m.AttentionArgs, "attention", infer=_attention_infer, tensors=_attention_tensors,
          layouts=(TOKENS,), role_names=_attention_roles,
          own_roles=("in_weight", "in_bias", "out_weight", "out_bias"),
          summary="multi-head self-attention on tokens [T, D] (PyTorch's nn.MultiheadAttention)"))
_add(Kind("lstm", m.RecurrentArgs, "recurrent", infer=_recurrent_infer("lstm"), tensors=_recurrent_tensors(4),
          layouts=(TOKENS,), role_names=lambda args: RECURRENT_ROLES,
          summary="LSTM over tokens [T, D] (PyTorch's nn.LSTM, gates i, f, g, o): the sequence or the last state"))
_add(Kind("gru", m.RecurrentArgs, "recurrent", infer=_recurrent_infer("gru"), tensors=_recurrent_tensors(3),
          layouts=(TOKENS,), role_names=lambda args: RECURRENT_ROLES,
          summary="GRU over tokens [T, D] (PyTorch's nn.GRU, gates r, z, n): the sequence or the last state"))
for _name, _args in (("relu", m.NoLayerArgs), ("relu6", m.NoLayerArgs), ("leaky_relu", m.LeakyReluArgs),
                     ("gelu", m.GeluArgs), ("tanh", m.NoLayerArgs), ("sigmoid", m.NoLayerArgs),
                     ("silu", m.NoLayerArgs), ("elu", m.EluArgs), ("hardswish", m.NoLayerArgs),
                     ("hardsigmoid", m.NoLayerArgs), ("softplus", m.NoLayerArgs), ("mish", m.NoLayerArgs)):
    _add(Kind(_name, _args, "activation", infer=_same, activation=True, summary="elementwise activation"))
_add(Kind("softmax", m.SoftmaxArgs, "activation", infer=_softmax_infer, activation=True,
          summary="softmax over a logical axis"))
_add(Kind("identity", m.NoLayerArgs, "reshape", infer=_same, summary="passes its input through"))
_add(Kind("dropout", m.DropoutArgs, "dropout", infer=_same, summary="dropout (off in inference)"))
_add(Kind("drop_path", m.DropPathArgs, "dropout", infer=_same,
          summary="stochastic depth: drops a whole sample with probability p in training (off in inference)"))
_add(Kind("flatten", m.NoLayerArgs, "reshape", infer=_flatten_infer, summary="all axes to one, in logical order",
          out_layout=FEATURES))
for _n in (1, 2, 3):
    _add(Kind(f"maxpool{_n}d", m.PoolArgs, "pool", _n, _pool_infer(_n, f"maxpool{_n}d"),
              summary="max pooling; padding with -inf", layouts=(MAP,), geometry=pool_geometry))
    _add(Kind(f"avgpool{_n}d", m.PoolArgs, "pool", _n, _pool_infer(_n, f"avgpool{_n}d"),
              summary="average pooling; padded zeros count", layouts=(MAP,), geometry=pool_geometry))
    _add(Kind(f"conv_transpose{_n}d", m.ConvTransposeArgs, "conv_transpose", _n, _conv_transpose_infer(_n),
              _conv_transpose_tensors(_n), summary=f"{_n}-D transposed convolution, weight [in, out/groups, *k]",
              layouts=(MAP,), geometry=conv_transpose_geometry))
_add(Kind("upsample", m.UpsampleArgs, "reshape", infer=_upsample_infer, layouts=(MAP,),
          summary="upsampling of a map's spatial axes by `scale` (nearest, or bilinear on a 2-D map)"))
_add(Kind("adaptive_avg_pool", m.AdaptivePoolArgs, "reshape", infer=_adaptive_pool_infer, layouts=(MAP,),
          summary="average pooling to a fixed output size, PyTorch's bins"))
_add(Kind("adaptive_max_pool", m.AdaptivePoolArgs, "reshape", infer=_adaptive_pool_infer, layouts=(MAP,),
          summary="max pooling to a fixed output size, PyTorch's bins"))
_add(Kind("global_avg_pool", m.GlobalPoolArgs, "reshape", infer=_global_pool("global_avg_pool"),
          summary="mean over the spatial axes of a map -> [C], or over the positions of tokens -> [D]",
          layouts=(MAP, TOKENS)))
_add(Kind("global_max_pool", m.GlobalPoolArgs, "reshape", infer=_global_pool("global_max_pool"),
          summary="max over the spatial axes of a map -> [C], or over the positions of tokens -> [D]",
          layouts=(MAP, TOKENS)))
_add(Kind("slice", m.SliceArgs, "reshape", infer=_slice_infer,
          summary="a range [start, stop) of the channel axis (map C, tokens D, features F), or of T"))
_add(Kind("channel_shuffle", m.ChannelShuffleArgs, "reshape", infer=_channel_shuffle_infer, layouts=(MAP,),
          summary="ShuffleNet's channel shuffle: [g, C/g] -> [C/g, g] on the channel axis"))
_add(Kind("pad", m.PadArgs, "reshape", infer=_pad_infer, layouts=(MAP,),
          summary="zeros added to the spatial axes of a map, the same or [before, after] on each axis"))
_add(Kind("rescale", m.RescaleArgs, "reshape", infer=_rescale_infer,
          summary="x * scale + offset with constants, one for all or per channel (input preprocessing)"))
_add(Kind("to_tokens", m.NoLayerArgs, "reshape", infer=_to_tokens_infer, layouts=(MAP,),
          summary="a map [C, *S] -> tokens [prod(S), C] that remember the grid S"))
_add(Kind("to_map", m.ToMapArgs, "reshape", infer=_to_map_infer, layouts=(TOKENS,),
          summary="tokens [T, D] -> a map [D, *S]: S from `size`, the remembered grid, or [D, T]"))

ROLES = ("weight", "bias", "gamma", "beta")
