"""The Keras lowering table: IR layer kind -> Keras layers, initializer -> Keras initializer.

Keras tensors are channels-last where the logical tensor has channels (rank >= 2
after an image or sequence input), and in logical order otherwise (after an
embedding, a linear layer on a sequence, a flatten). Each entry says which
layout it needs; `Permute` helper layers are added where the layout must change,
so that the same weights compute the same function as the PyTorch model.
"""

from __future__ import annotations

import math

from nnspec.compiler.backends.expr import Call, Const, Ref, call
from nnspec.compiler.ir import Layer, Tensor, chunk_parts
from nnspec.vocabulary import initializers as inits
from nnspec.vocabulary import scaling

CL, PLAIN = "channels_last", "logical"

KERAS_INIT_ARG = {"weight": "kernel_initializer", "bias": "bias_initializer", "gamma": "gamma_initializer",
                  "beta": "beta_initializer"}
CUSTOM_INITIALIZERS = ("Dirac", "TruncNormal", "Sparse", "TorchDefault", "Values", "Chunks", "Gates")
CUSTOM_LAYERS = ("ConstantPad", "Gelu", "Slice", "ChannelShuffle", "AdaptivePool", "PoolRescale", "RMSNorm",
                 "LayerScale", "DropPath", "GroupedConvTranspose", "ClassToken", "PositionEmbedding", "SelfAttention", "Mish")
# kinds whose Keras variables keep PyTorch's layout ([out, in] for a 2-D weight, [num, dim] for a table)
TORCH_LAYOUT_KINDS = ("embedding", "class_token", "position_embedding", "attention")
PRELU_DEFAULT = 0.25  # nn.PReLU's init
RECURRENT = ("lstm", "gru")
# Keras's gate blocks as PyTorch's blocks: LSTM i, f, c, o = PyTorch's i, f, g, o; GRU z, r, h = PyTorch's z, r, n
KERAS_GATES = {"lstm": None, "gru": [1, 0, 2]}


def seed_ref(tensor: Tensor) -> Ref:
    return Ref("seed:" + tensor.path)


def native(shape) -> str:
    """The Keras layout a logical shape is kept in: a map channels-last, tokens and features as they are."""
    return CL if getattr(shape, "layout", None) == "map" else PLAIN


def keras_axis(logical_axis: int, rank: int, layout: str) -> int:
    """The Keras axis (batch included) of a logical axis (batch excluded)."""
    axis = logical_axis % rank
    if layout == CL and rank >= 2:
        return -1 if axis == 0 else axis
    return -1 if axis == rank - 1 else axis + 1


def to_keras_layout(array, tensor: Tensor):
    """A logical (PyTorch-layout) numpy array in the Keras variable's layout."""
    import numpy as np

    array = np.asarray(array)
    if tensor.layer.kind == "prelu":  # Keras's alpha keeps every non-shared axis: (1, ..., 1, C)
        return array.reshape((1,) * (len(tensor.layer.in_shape) - 1) + array.shape)
    if tensor.layer.kind in RECURRENT:  # [G*H, in] -> Keras's kernel (in, G*H); gates still PyTorch's order
        return array.T if array.ndim == 2 else array
    if tensor.role != "weight" or tensor.layer.kind in TORCH_LAYOUT_KINDS:
        return array
    if array.ndim == 2:
        return array.T
    return np.transpose(array, list(range(2, array.ndim)) + [1, 0])


def _vs(tensor: Tensor, scale: float, mode: str, dist: str) -> Call:
    if tensor.layer.kind in TORCH_LAYOUT_KINDS:  # Keras's fans of (num, dim) or (out, in) are swapped
        mode = {"fan_in": "fan_out", "fan_out": "fan_in"}.get(mode, mode)
    return call("keras.initializers.VarianceScaling", scale=scale, mode=mode, distribution=dist,
                seed=seed_ref(tensor))


def _variance_scaling(tensor: Tensor) -> Call:
    scale, mode, dist = scaling.variance_scaling_params(tensor.init.name, tensor.init.args)
    return _vs(tensor, scale, mode, dist)


def _keras_family(class_name: str):
    def lower(tensor: Tensor) -> Call:
        if tensor.layer.kind in TORCH_LAYOUT_KINDS:
            return _variance_scaling(tensor)
        return call(f"keras.initializers.{class_name}", seed=seed_ref(tensor))

    return lower


def _values(tensor: Tensor, values) -> Call:
    return call("Values", to_keras_layout(values, tensor).tolist())


def _sparse(tensor: Tensor) -> Call:
    a = tensor.init.args
    # PyTorch zeroes rows within each column of the (rows, cols) weight; in Keras's Dense kernel
    # (in, out) the PyTorch columns are axis 0, in an embedding table (num, dim) axis 1.
    axis = 1 if tensor.layer.kind in TORCH_LAYOUT_KINDS else 0
    return call("Sparse", a["sparsity"], std=a["std"], column_axis=axis, seed=seed_ref(tensor))


def torch_default(tensor: Tensor) -> Call:
    if tensor.role == "gamma":
        return call("keras.initializers.Ones")
    if tensor.role == "beta":
        return call("keras.initializers.Zeros")
    kind = tensor.layer.kind
    if kind in ("embedding", "position_embedding"):
        return call("keras.initializers.RandomNormal", mean=0.0, stddev=1.0, seed=seed_ref(tensor))
    if kind == "class_token" or tensor.role in ("in_bias", "out_bias"):
        return call("keras.initializers.Zeros")
    if tensor.role == "in_weight":  # xavier_uniform on the whole [3D, D], as nn.MultiheadAttention
        return call("keras.initializers.VarianceScaling", scale=1.0, mode="fan_avg", distribution="uniform",
                    seed=seed_ref(tensor))
    if tensor.role == "out_weight":  # nn.Linear's default on out_proj; the variable is [out, in]
        return call("TorchDefault", fan_in=tensor.fan_in, seed=seed_ref(tensor))
    if tensor.layer.kind == "prelu":
        return call("keras.initializers.Constant", PRELU_DEFAULT)
    if kind in RECURRENT:  # nn.LSTM / nn.GRU: U(-1/sqrt(H), 1/sqrt(H)) on every tensor
        bound = 1.0 / math.sqrt(tensor.layer.args["hidden"])
        return call("keras.initializers.RandomUniform", minval=-bound, maxval=bound, seed=seed_ref(tensor))
    if tensor.role == "bias" or tensor.layer.kind.startswith("conv_transpose"):
        return call("TorchDefault", fan_in=tensor.fan_in, seed=seed_ref(tensor))
    return call("TorchDefault", seed=seed_ref(tensor))


INITS = {
    "zeros": lambda t: call("keras.initializers.Zeros"),
    "ones": lambda t: call("keras.initializers.Ones"),
    "constant": lambda t: call("keras.initializers.Constant", t.init.args["value"]),
    "eye": lambda t: call("keras.initializers.Identity", gain=t.init.args["gain"]),
    "dirac": lambda t: call("Dirac", groups=t.layer.args.get("groups", 1)),
    "uniform": lambda t: call("keras.initializers.RandomUniform", minval=t.init.args["low"],
                              maxval=t.init.args["high"], seed=seed_ref(t)),
    "normal": lambda t: call("keras.initializers.RandomNormal", mean=t.init.args["mean"],
                             stddev=t.init.args["std"], seed=seed_ref(t)),
    "trunc_normal": lambda t: call("TruncNormal", mean=t.init.args["mean"], std=t.init.args["std"],
                                   low=t.init.args["low"], high=t.init.args["high"], seed=seed_ref(t)),
    "xavier_uniform": _variance_scaling,
    "xavier_normal": _variance_scaling,
    "kaiming_uniform": _variance_scaling,
    "kaiming_normal": _variance_scaling,
    "variance_scaling": _variance_scaling,
    "orthogonal": lambda t: call("keras.initializers.Orthogonal", gain=t.init.args["gain"], seed=seed_ref(t)),
    "sparse": _sparse,
    "glorot_uniform": _keras_family("GlorotUniform"),
    "glorot_normal": _keras_family("GlorotNormal"),
    "he_uniform": _keras_family("HeUniform"),
    "he_normal": _keras_family("HeNormal"),
    "lecun_uniform": _keras_family("LecunUniform"),
    "lecun_normal": _keras_family("LecunNormal"),
    "values": lambda t: _values(t, t.init.args["values"]),
    "log_prior": lambda t: _values(t, inits.log_prior(t.init.args["counts"])),
    "torch_default": torch_default,
    "chunks": lambda t: call("Chunks", [initializer(part) for part in chunk_parts(t)], axis=_keras_first_axis(t)),
}


def _keras_first_axis(tensor: Tensor) -> int:
    """The axis of the Keras variable that holds the logical first axis (`to_keras_layout`)."""
    if tensor.layer.kind in RECURRENT:
        return -1  # the gates: the last axis of a kernel (in, G*H), the only one of a bias
    if tensor.role != "weight" or tensor.layer.kind == "embedding" or len(tensor.shape) < 2:
        return 0
    return -1


def initializer(tensor: Tensor) -> Call:
    return INITS[tensor.init.name](tensor)


def _init_kwargs(layer: Layer, names: dict | None = None) -> dict:
    names = names or KERAS_INIT_ARG
    return {names[role]: initializer(t) for role, t in layer.tensors.items()}


# -- layers: (calls applied in order to the flowing tensor, layout needed, layout produced) -------

def _pads(layer: Layer, pads) -> list:
    """Explicit padding calls for a channels-last tensor; `pads` is ((before, after), ...)."""
    if not any(a or b for a, b in pads):
        return []
    n = len(pads)
    padding = pads[0] if n == 1 else tuple(tuple(p) for p in pads)
    return [call(f"keras.layers.ZeroPadding{n}D", padding=padding, name=f"{layer.path}.pad")]


def _conv(n: int):
    def lower(layer: Layer, layout: str):
        g, a = layer.geometry, layer.args
        kwargs = {}
        if set(g["stride"]) != {1}:
            kwargs["strides"] = g["stride"]
        if set(g["dilation"]) != {1}:
            kwargs["dilation_rate"] = g["dilation"]
        if a["groups"] != 1:
            kwargs["groups"] = a["groups"]
        if not a["bias"]:
            kwargs["use_bias"] = False
        conv = call(f"keras.layers.Conv{n}D", a["out"], g["kernel"], **kwargs,
                    **_init_kwargs(layer), name=layer.path)
        return _pads(layer, g["pads"]) + [conv], CL, CL

    return lower


def _pool(n: int, max_pool: bool):
    def lower(layer: Layer, layout: str):
        g = layer.geometry
        # ceil_mode: the last window may run past the padded input; pad so that it fits
        extra = [(size - 1) * s + k - (length + 2 * p)
                 for size, length, k, s, p in zip(layer.out_shape[1:], layer.in_shape[1:], g["kernel"], g["stride"],
                                                  g["padding"])]
        pads = tuple((p, p + max(e, 0)) for p, e in zip(g["padding"], extra))
        calls = []
        if any(a or b for a, b in pads):
            if max_pool:
                calls.append(call("ConstantPad", [list(p) for p in pads], value=Const("-math.inf", -math.inf),
                                  name=f"{layer.path}.pad"))
            else:
                calls += _pads(layer, pads)
        cls = f"keras.layers.MaxPooling{n}D" if max_pool else f"keras.layers.AveragePooling{n}D"
        calls.append(call(cls, g["kernel"], strides=g["stride"], name=layer.path))
        if not max_pool and any(e > 0 for e in extra):
            calls.append(call("PoolRescale", _avg_divisors(layer), name=f"{layer.path}.count"))
        return calls, CL, CL

    return lower


def _avg_divisors(layer: Layer) -> list:
    """Per axis, kernel / PyTorch's divisor for each output: a window clipped by ceil_mode at the end of the
    padded input divides by its clipped size (count_include_pad counts the padding, not what lies past it)."""
    g = layer.geometry
    out = []
    for size, length, k, s, p in zip(layer.out_shape[1:], layer.in_shape[1:], g["kernel"], g["stride"],
                                     g["padding"]):
        starts = [i * s - p for i in range(size)]
        out.append([k / (min(start + k, length + p) - start) for start in starts])
    return out


def _conv_transpose(n: int):
    def lower(layer: Layer, layout: str):
        g, a = layer.geometry, layer.args
        # the full transposed conv (padding valid) and output_padding - padding positions past it, then
        # PyTorch's padding cropped from both ends
        extra = tuple(max(op - p, 0) for p, op in zip(g["padding"], g["output_padding"]))
        kwargs = {"output_padding": extra}
        if set(g["stride"]) != {1}:
            kwargs["strides"] = g["stride"]
        if set(g["dilation"]) != {1}:
            kwargs["dilation_rate"] = g["dilation"]
        if not a["bias"]:
            kwargs["use_bias"] = False
        if a["groups"] == 1 and all(e < s for e, s in zip(extra, g["stride"])):
            conv = call(f"keras.layers.Conv{n}DTranspose", a["out"], g["kernel"], **kwargs, **_init_kwargs(layer),
                        name=layer.path)
        else:  # Keras's has no groups, and its output_padding must be below the stride
            conv = call("GroupedConvTranspose", a["out"], g["kernel"], a["groups"], **kwargs, **_init_kwargs(layer),
                        name=layer.path)
        calls = [conv]
        crops = tuple((p, max(p - op, 0)) for p, op in zip(g["padding"], g["output_padding"]))
        if any(a or b for a, b in crops):
            calls.append(call(f"keras.layers.Cropping{n}D", crops[0] if n == 1 else crops, name=f"{layer.path}.crop"))
        return calls, CL, CL

    return lower


def _upsample(layer: Layer, layout: str):
    n = len(layer.in_shape) - 1
    scale = layer.args["scale"]
    size = tuple(scale) if isinstance(scale, list) else (scale,) * n
    kwargs = {"interpolation": "bilinear"} if layer.args["mode"] == "bilinear" else {}
    return [call(f"keras.layers.UpSampling{n}D", size[0] if n == 1 else size, **kwargs, name=layer.path)], CL, CL


def _adaptive(mode: str):
    def lower(layer: Layer, layout: str):
        return [call("AdaptivePool", list(layer.out_shape[1:]), mode=mode, name=layer.path)], CL, CL

    return lower


def _groupnorm(layer: Layer, layout: str):
    return [call("keras.layers.GroupNormalization", layer.args["groups"], axis=-1, epsilon=layer.args["eps"],
                 **_init_kwargs(layer), name=layer.path)], CL, CL


def _prelu(layer: Layer, layout: str):
    shape = layer.in_shape
    needs = native(shape)
    rank = len(shape)
    shared = list(range(1, rank)) if layer.args["per_channel"] else list(range(1, rank + 1))
    kwargs = {"shared_axes": shared} if shared else {}
    return [call("keras.layers.PReLU", **_init_kwargs(layer, {"weight": "alpha_initializer"}), **kwargs,
                 name=layer.path)], needs, needs


def _rmsnorm(layer: Layer, layout: str):
    rank = len(layer.in_shape)
    return [call("RMSNorm", axis=keras_axis(rank - 1, rank, layout), epsilon=layer.args["eps"],
                 **_init_kwargs(layer), name=layer.path)], None, None


def _scale(layer: Layer, layout: str):
    needs = native(layer.in_shape)
    return [call("LayerScale", **_init_kwargs(layer), name=layer.path)], needs, needs


def _class_token(layer: Layer, layout: str):
    return [call("ClassToken", **_init_kwargs(layer, {"token": "token_initializer"}), name=layer.path)], \
        PLAIN, PLAIN


def _position_embedding(layer: Layer, layout: str):
    return [call("PositionEmbedding", layer.args["length"],
                 **_init_kwargs(layer, {"weight": "embeddings_initializer"}), name=layer.path)], PLAIN, PLAIN


def _attention(layer: Layer, layout: str):
    a = layer.args
    kwargs = {}
    if a["causal"]:
        kwargs["causal"] = True
    if not a["bias"]:
        kwargs["use_bias"] = False
    if a["dropout"]:
        kwargs["dropout"] = a["dropout"]
    names = {role: f"{role}_initializer" for role in layer.tensors}
    return [call("SelfAttention", a["heads"], **kwargs, **_init_kwargs(layer, names), name=layer.path)], \
        PLAIN, PLAIN


def _recurrent(layer: Layer, layout: str):
    """One Keras LSTM/GRU per layer (`Bidirectional` of a forward and a backward one), PyTorch's tensors as
    Keras's variables through `Gates`; the top layer is named as the spec's layer, the ones below it
    `<path>.l<k>`."""
    a = layer.args
    calls = []
    for k in range(a["layers"]):
        top = k == a["layers"] - 1
        name = layer.path if top else f"{layer.path}.l{k}"
        sequences = not top or a["output"] == "sequence"
        if a["bidirectional"]:
            calls.append(call("keras.layers.Bidirectional", _one_direction(layer, k, "", sequences, f"{name}.forward"),
                              backward_layer=_one_direction(layer, k, "_reverse", sequences, f"{name}.backward"),
                              name=name))
        else:
            calls.append(_one_direction(layer, k, "", sequences, name))
    return calls, PLAIN, PLAIN


def _one_direction(layer: Layer, k: int, sfx: str, sequences: bool, name: str) -> Call:
    kind = layer.kind
    t = {role: layer.tensors[f"{role}_l{k}{sfx}"] for role in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    kwargs = {"unit_forget_bias": False} if kind == "lstm" else {"reset_after": True}
    if sequences:
        kwargs["return_sequences"] = True
    if sfx:
        kwargs["go_backwards"] = True
    gates = {"order": KERAS_GATES[kind]} if KERAS_GATES[kind] is not None else {}
    bias = call("Gates", [initializer(t["bias_ih"]), initializer(t["bias_hh"])], **gates,
                **({"stack": True} if kind == "gru" else {}))
    cls = "keras.layers.LSTM" if kind == "lstm" else "keras.layers.GRU"
    return call(cls, layer.args["hidden"], **kwargs, kernel_initializer=_gates([t["weight_ih"]], gates),
                recurrent_initializer=_gates([t["weight_hh"]], gates), bias_initializer=bias, name=name)


def _gates(tensors: list, gates: dict) -> Call:
    return call("Gates", [initializer(t) for t in tensors], **gates) if gates else initializer(tensors[0])


def _dense(layer: Layer, layout: str):
    kwargs = {} if layer.args["bias"] else {"use_bias": False}
    return [call("keras.layers.Dense", layer.args["out"], **kwargs, **_init_kwargs(layer), name=layer.path)], \
        PLAIN, PLAIN


def _batchnorm(layer: Layer, layout: str):
    rank = len(layer.in_shape)
    return [call("keras.layers.BatchNormalization", axis=keras_axis(0, rank, layout),
                 momentum=1.0 - layer.args["momentum"], epsilon=layer.args["eps"], **_init_kwargs(layer),
                 name=layer.path)], None, None


def _layernorm(layer: Layer, layout: str):
    shape = layer.in_shape
    rank = len(shape)
    axis = shape.channel_axis if layer.args["over"] == "channels" else rank - 1
    return [call("keras.layers.LayerNormalization", axis=keras_axis(axis, rank, layout), epsilon=layer.args["eps"],
                 **_init_kwargs(layer), name=layer.path)], None, None


def _embedding(layer: Layer, layout: str):
    t = layer.tensors["weight"]
    return [call("keras.layers.Embedding", layer.args["num"], layer.args["dim"],
                 embeddings_initializer=initializer(t), name=layer.path)], PLAIN, PLAIN


def _softmax(layer: Layer, layout: str):
    rank = len(layer.in_shape)
    return [call("keras.layers.Softmax", axis=keras_axis(layer.args["axis"], rank, layout), name=layer.path)], \
        None, None


def _same(cls: str, **fixed):
    def lower(layer: Layer, layout: str):
        return [call(cls, **fixed, name=layer.path)], None, None

    return lower


def _activation(name: str):
    return _same("keras.layers.Activation", activation=name)


def _gelu(layer: Layer, layout: str):
    if layer.args["approximate"] == "tanh":
        return [call("Gelu", approximate="tanh", name=layer.path)], None, None
    return [call("keras.layers.Activation", activation="gelu", name=layer.path)], None, None


def _global_pool(mode: str):
    def lower(layer: Layer, layout: str):
        cls = "GlobalAveragePooling" if mode == "avg" else "GlobalMaxPooling"
        extra = {"keepdims": True} if layer.args["keep_dims"] else {}
        if layer.in_shape.layout == "tokens":  # [T, D] is channels-last already: pool over T
            return [call(f"keras.layers.{cls}1D", **extra, name=layer.path)], PLAIN, PLAIN
        n = len(layer.in_shape) - 1
        return [call(f"keras.layers.{cls}{n}D", **extra, name=layer.path)], CL, CL if extra else PLAIN

    return lower


def _slice(layer: Layer, layout: str):
    shape, args = layer.in_shape, layer.args
    axis = 0 if args["axis"] == "tokens" else shape.channel_axis
    stop = shape[axis] if args["stop"] is None else args["stop"]
    needs = native(shape)
    return [call("Slice", args["start"], stop, axis=keras_axis(axis, len(shape), needs), name=layer.path)], \
        needs, needs


def _pad(layer: Layer, layout: str):
    from nnspec.vocabulary.kinds import pad_geometry

    pads = pad_geometry(layer.args, len(layer.in_shape) - 1)["pads"]
    n = len(pads)
    return [call(f"keras.layers.ZeroPadding{n}D", padding=pads[0] if n == 1 else pads, name=layer.path)], CL, CL


def _rescale(layer: Layer, layout: str):
    args = layer.args
    per_channel = isinstance(args["scale"], list) or isinstance(args["offset"], list)
    needs = native(layer.in_shape) if per_channel else None  # Keras's Rescaling broadcasts on the last axis
    return [call("keras.layers.Rescaling", args["scale"], offset=args["offset"], name=layer.path)], needs, needs


def _to_tokens(layer: Layer, layout: str):
    return [call("keras.layers.Reshape", tuple(layer.out_shape), name=layer.path)], CL, PLAIN


def _to_map(layer: Layer, layout: str):
    dim, *size = layer.out_shape
    return [call("keras.layers.Reshape", (*size, dim), name=layer.path)], PLAIN, CL


LAYERS = {
    "linear": _dense,
    "conv1d": _conv(1),
    "conv2d": _conv(2),
    "conv3d": _conv(3),
    "batchnorm": _batchnorm,
    "layernorm": _layernorm,
    "embedding": _embedding,
    "relu": _same("keras.layers.ReLU"),
    "relu6": _same("keras.layers.ReLU", max_value=6.0),
    "leaky_relu": lambda layer, layout: ([call("keras.layers.LeakyReLU", negative_slope=layer.args["slope"],
                                               name=layer.path)], None, None),
    "gelu": _gelu,
    "tanh": _activation("tanh"),
    "sigmoid": _activation("sigmoid"),
    "silu": _activation("silu"),
    "elu": lambda layer, layout: ([call("keras.layers.ELU", alpha=layer.args["alpha"], name=layer.path)], None,
                                  None),
    "softmax": _softmax,
    "identity": _same("keras.layers.Identity"),
    "dropout": lambda layer, layout: ([call("keras.layers.Dropout", layer.args["p"], name=layer.path)], None, None),
    "flatten": lambda layer, layout: ([call("keras.layers.Flatten", name=layer.path)], PLAIN, PLAIN),
    "maxpool1d": _pool(1, True),
    "maxpool2d": _pool(2, True),
    "maxpool3d": _pool(3, True),
    "avgpool1d": _pool(1, False),
    "avgpool2d": _pool(2, False),
    "avgpool3d": _pool(3, False),
    "global_avg_pool": _global_pool("avg"),
    "global_max_pool": _global_pool("max"),
    "conv_transpose1d": _conv_transpose(1),
    "conv_transpose2d": _conv_transpose(2),
    "conv_transpose3d": _conv_transpose(3),
    "upsample": _upsample,
    "adaptive_avg_pool": _adaptive("avg"),
    "adaptive_max_pool": _adaptive("max"),
    "hardswish": _activation("hard_silu"),
    "hardsigmoid": _activation("hard_sigmoid"),  # Keras 3's: relu6(x + 3) / 6, as PyTorch's (Keras 2's differed)
    "softplus": _activation("softplus"),
    "mish": _same("Mish"),  # nnspec's: keras.activations.mish trips TensorFlow's conv + add + mish fusion
    "prelu": _prelu,
    "groupnorm": _groupnorm,
    "rmsnorm": _rmsnorm,
    "scale": _scale,
    "drop_path": lambda layer, layout: ([call("DropPath", layer.args["p"], name=layer.path)], None, None),
    "slice": _slice,
    "channel_shuffle": lambda layer, layout: ([call("ChannelShuffle", layer.args["groups"], name=layer.path)], CL,
                                              CL),
    "pad": _pad,
    "rescale": _rescale,
    "to_tokens": _to_tokens,
    "to_map": _to_map,
    "class_token": _class_token,
    "position_embedding": _position_embedding,
    "attention": _attention,
    "lstm": _recurrent,
    "gru": _recurrent,
}


def permute(rank: int, source: str, target: str, name: str) -> Call:
    """A Permute layer between layouts of a logical rank-`rank` tensor (rank >= 2)."""
    if source == CL and target == PLAIN:
        dims = (rank,) + tuple(range(1, rank))
    else:
        dims = tuple(range(2, rank + 1)) + (1,)
    return call("keras.layers.Permute", dims, name=name)
