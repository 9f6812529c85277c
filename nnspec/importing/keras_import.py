"""Keras -> spec: a Sequential or functional model's layer graph as chains and merges.

Keras computes channels last; the spec's logical layout is channels first (PyTorch's), so the input
shape is moved ([H, W, C] -> [C, H, W]) and every tensor is transposed to its logical layout (a Conv2D
kernel [kh, kw, in, out] -> [out, in, kh, kw], a Dense kernel [in, out] -> [out, in]); a Dense right
after a Flatten of a map has its rows reordered from Keras's (H, W, C) order to the spec's (C, H, W).
Keras's batchnorm momentum is the weight of the old statistics, PyTorch's (the spec's) that of the new:
`momentum = 1 - keras momentum`.

Padding: a symmetric ZeroPadding folds into the conv after it (or the max pool after a ReLU); any other
ZeroPadding, and Keras's 'same' that pads one side more (stride 2 on an even size), is a `pad` item.
Rescaling and Normalization are constants, `rescale: {scale, offset}`.
"""

from __future__ import annotations

import numpy as np

from nnspec.importing import ImportProblem
from nnspec.importing.structure import Item

ACTIVATIONS = {"relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "tanh": "tanh", "swish": "silu",
               "silu": "silu", "gelu": "gelu", "elu": "elu", "softmax": "softmax", "hard_sigmoid": "hardsigmoid",
               "hard_swish": "hardswish", "hard_silu": "hardswish", "mish": "mish", "softplus": "softplus",
               "leaky_relu": "leaky_relu"}


def _activation(layer, fn) -> list:
    name = getattr(fn, "__name__", str(fn))
    if name == "linear":
        return []
    if name == "gelu":  # keras.activations.gelu defaults to the tanh approximation
        return [Item("gelu", {"approximate": "tanh"})]
    if name in ACTIVATIONS:
        kind = ACTIVATIONS[name]
        return [Item(kind, {"slope": 0.2} if kind == "leaky_relu" else {})]
    raise ImportProblem(layer.name, f"the activation {name!r} has no nnspec kind")


def _pair(value):
    values = [int(v) for v in (value if isinstance(value, (list, tuple)) else (value,))]
    return values[0] if len(set(values)) == 1 else values


class _Converter:
    def __init__(self, model):
        self.model = model
        self.pending_pad = {}  # id(layer) -> symmetric zero padding to fold into the next conv or max pool
        self.flatten_from = {}  # id(Flatten layer) -> (C, H, W) it flattens
        self.absorbed = set()  # id(layer) of layers written as part of the one before (a pool's Reshape)

    # -- the graph ------------------------------------------------------------------
    def graph(self):
        import keras

        model = self.model
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ImportProblem(model.name, f"the model has {len(model.inputs)} inputs and {len(model.outputs)} "
                                            "outputs; a spec's model has one of each")
        self.parents = {}
        self.users = {}
        layers = [layer for layer in model.layers]
        for layer in layers:
            if isinstance(layer, keras.layers.InputLayer):
                self.parents[id(layer)] = []
                continue
            if len(layer._inbound_nodes) != 1:
                raise ImportProblem(layer.name, f"the layer is called {len(layer._inbound_nodes)} times; a spec's "
                                                "layers are called once (shared weights have no construct)")
            inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
            parents = [t._keras_history.operation for t in inputs]
            self.parents[id(layer)] = parents
            for p in parents:
                self.users.setdefault(id(p), []).append(layer)
        self.layers = {id(layer): layer for layer in layers}
        self.order = {id(layer): i for i, layer in enumerate(layers)}
        start = model.inputs[0]._keras_history.operation
        end = model.outputs[0]._keras_history.operation
        self.emitted = set()
        return start, end

    def ancestors(self, layer) -> set:
        seen, stack = {id(layer)}, [layer]
        while stack:
            for parent in self.parents.get(id(stack.pop()), []):
                if id(parent) not in seen:
                    seen.add(id(parent))
                    stack.append(parent)
        return seen

    def chain(self, start, end) -> list:
        region = self.ancestors(end)
        items, cur = [], start
        while cur is not end:
            nexts = [u for u in self.users.get(id(cur), []) if id(u) in region]
            if not nexts:
                raise ImportProblem(end.name, "the output does not depend on the input through one chain of layers")
            if len(nexts) == 1 and len(self.parents[id(nexts[0])]) == 1:
                node = nexts[0]
                items += self.layer(node)
            else:
                node = self.merge_point(cur, end, region)
                items.append(self.merge(node, cur))
            if id(node) in self.emitted:
                raise ImportProblem(node.name, "the layer is reached by two branches: not a chain of merges")
            self.emitted.add(id(node))
            cur = node
        return items

    def merge_point(self, fork, end, region):
        later = sorted((self.layers[i] for i in region if self.order[i] > self.order[id(fork)]),
                       key=lambda layer: self.order[id(layer)])
        for candidate in later:
            if not self._reaches(fork, end, region, candidate):
                return candidate
        raise ImportProblem(fork.name, "a fork whose branches never join again")

    def _reaches(self, a, b, region, avoid) -> bool:
        stack, seen = [a], {id(a)}
        while stack:
            node = stack.pop()
            if node is b:
                return True
            for u in self.users.get(id(node), []):
                if id(u) in region and u is not avoid and id(u) not in seen:
                    seen.add(id(u))
                    stack.append(u)
        return False

    def merge(self, layer, fork) -> Item:
        import keras

        ops = {keras.layers.Add: "add", keras.layers.Multiply: "multiply", keras.layers.Concatenate: "concat"}
        op = next((name for cls, name in ops.items() if isinstance(layer, cls)), None)
        if op is None:
            raise ImportProblem(layer.name, f"{type(layer).__name__} joins several tensors; nnspec joins branches "
                                            "with add, multiply and concat only")
        if op == "concat":
            rank = len(layer.output.shape)
            if layer.axis not in (-1, rank - 1):
                raise ImportProblem(layer.name, f"Concatenate(axis={layer.axis}): nnspec's concat joins the channel "
                                                "axis (the last, channels last)")
        branches = [[] if p is fork else self.chain(fork, p) for p in self.parents[id(layer)]]
        if op == "add" and len(branches) == 2:
            branches.sort(key=lambda b: -len(b))
            return Item("residual", branches=[branches[0]] + ([branches[1]] if branches[1] else []))
        if op == "multiply":
            branches.sort(key=bool)
        return Item(op, branches=branches)

    # -- layers ---------------------------------------------------------------------
    def layer(self, layer) -> list:
        import keras

        L = keras.layers
        name = layer.name
        parent = self.parents[id(layer)][0]
        pad = self.pending_pad.pop(id(parent), None)
        if id(layer) in self.absorbed:
            return []
        if isinstance(layer, (L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D)):
            pads = _pad_pairs(layer)
            if len({side for pair in pads for side in pair}) == 1 and self._folds(layer, parent, pads[0][0]):
                self.pending_pad[id(layer)] = (pads[0][0], parent)  # into the conv or max pool that follows
                return []
            return [_pad_item(pads)]
        if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv2D)) and \
                not isinstance(layer, (L.Conv2DTranspose, L.Conv1DTranspose, L.Conv3DTranspose)):
            return self.conv(layer, pad)
        if isinstance(layer, L.Dense):
            kernel = np.asarray(layer.kernel.numpy())
            flat = self.flatten_from.get(id(parent))
            if flat is not None:  # Keras flattened (H, W, C); the spec flattens (C, H, W)
                c, *spatial = flat
                kernel = kernel.reshape(*spatial, c, -1)
                kernel = np.moveaxis(kernel, -2, 0).reshape(-1, kernel.shape[-1])
            tensors = {"weight": kernel.T} | ({"bias": layer.bias.numpy()} if layer.use_bias else {})
            item = Item("linear", {"out": layer.units} | ({} if layer.use_bias else {"bias": False}),
                        tensors=tensors, source=name)
            return [item] + _activation(layer, layer.activation)
        if isinstance(layer, L.BatchNormalization):
            axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
            if axis not in (-1, len(layer.input.shape) - 1) or not (layer.center and layer.scale):
                raise ImportProblem(name, "BatchNormalization over an axis other than the channels, or without "
                                          "center/scale, has no nnspec construct")
            args = {"eps": float(layer.epsilon)}
            momentum = round(1 - float(layer.momentum), 10)
            if momentum != 0.1:
                args["momentum"] = momentum
            return [Item("batchnorm", args, source=name,
                         tensors={"gamma": layer.gamma.numpy(), "beta": layer.beta.numpy()},
                         buffers={"running_mean": layer.moving_mean.numpy(),
                                  "running_var": layer.moving_variance.numpy()})]
        if isinstance(layer, L.LayerNormalization):
            rank = len(layer.input.shape)
            axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
            if axis not in (-1, rank - 1) or not (layer.center and layer.scale):
                raise ImportProblem(name, "LayerNormalization over other axes than the last, or without "
                                          "center/scale, has no nnspec construct")
            args = {"eps": float(layer.epsilon)} | ({"over": "channels"} if rank > 2 else {})
            return [Item("layernorm", args, source=name,
                         tensors={"gamma": layer.gamma.numpy(), "beta": layer.beta.numpy()})]
        if isinstance(layer, L.Activation):
            return _activation(layer, layer.activation)
        if isinstance(layer, L.ReLU):
            if layer.negative_slope or layer.threshold:
                raise ImportProblem(name, "ReLU with negative_slope or threshold has no nnspec kind")
            if layer.max_value is None:
                return [Item("relu")]
            if float(layer.max_value) == 6:
                return [Item("relu6")]
            raise ImportProblem(name, f"ReLU(max_value={layer.max_value}) has no nnspec kind (relu6 has 6)")
        if isinstance(layer, L.Softmax):
            axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
            if axis not in (-1, len(layer.input.shape) - 1):
                raise ImportProblem(name, f"Softmax(axis={layer.axis}): the import reads a softmax over the last "
                                          "axis (the channels, channels last)")
            return [Item("softmax", {} if len(layer.input.shape) == 2 else {"axis": 0})]
        if isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D, L.MaxPooling1D, L.AveragePooling1D)):
            return self.pool(layer, pad, parent)
        if isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalAveragePooling1D, L.GlobalMaxPooling2D,
                              L.GlobalMaxPooling1D)):
            kind = "global_avg_pool" if "Average" in type(layer).__name__ else "global_max_pool"
            keep = bool(layer.keepdims)
            users = self.users.get(id(layer), [])
            if not keep and len(users) == 1 and isinstance(users[0], L.Reshape) and \
                    tuple(users[0].target_shape) == (1,) * (len(layer.input.shape) - 2) + (layer.input.shape[-1],):
                keep = True  # GlobalAveragePooling2D then Reshape((1, 1, C)): squeeze-excitation's pool
                self.absorbed.add(id(users[0]))
            return [Item(kind, {"keep_dims": True} if keep else {})]
        if isinstance(layer, L.Flatten):
            shape = layer.input.shape[1:]
            if len(shape) >= 2:
                self.flatten_from[id(layer)] = (shape[-1], *shape[:-1])
                users = self.users.get(id(layer), [])
                if any(s != 1 for s in shape[:-1]) and not (len(users) == 1 and isinstance(users[0], L.Dense)):
                    raise ImportProblem(name, "Flatten of a map not followed by a Dense: Keras flattens in (H, W, "
                                              "C) order and the spec in (C, H, W)")
            return [Item("flatten")]
        if isinstance(layer, (L.Dropout, L.SpatialDropout2D)):
            noise = getattr(layer, "noise_shape", None)
            if isinstance(layer, L.Dropout) and noise is not None:
                if not (len(noise) == len(layer.input.shape) and noise[0] is None and all(n == 1 for n in noise[1:])):
                    raise ImportProblem(name, f"Dropout(noise_shape={tuple(noise)}): the import reads whole-sample "
                                              "dropout (None, 1, ...) as drop_path, other noise shapes have no kind")
                return [Item("drop_path", {"p": _rate(layer.rate)})]  # stochastic depth (EfficientNet's)
            return [Item("dropout", {} if layer.rate == 0.5 else {"p": _rate(layer.rate)})]
        if isinstance(layer, L.Rescaling):
            return [_rescale_item(layer, np.asarray(layer.scale, "float64"), np.asarray(layer.offset, "float64"))]
        if isinstance(layer, L.Normalization):
            return [self.normalization(layer)]
        missing = {"Reshape": "an arbitrary reshape", "Permute": "a transpose", "Lambda": "arbitrary code",
                   "Cropping2D": "cropping", "UpSampling2D": "", "Conv2DTranspose": ""}
        what = missing.get(type(layer).__name__, "")
        raise ImportProblem(name, f"{type(layer).__name__}" + (f" ({what})" if what else "") + " has no nnspec kind",
                            "the kinds the import reads are listed in docs/import.md")

    def conv(self, layer, pad) -> list:
        import keras

        name = layer.name
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        n = len(layer.kernel_size)
        if layer.data_format != "channels_last":
            raise ImportProblem(name, "a channels_first Keras conv: import the channels_last model")
        kernel = np.asarray(layer.kernel.numpy())  # [*k, in, out] (depthwise: [*k, in, multiplier])
        spatial = list(range(n))
        if depthwise:
            cin, mult = kernel.shape[-2], kernel.shape[-1]
            weight = np.transpose(kernel.reshape(*kernel.shape[:n], cin * mult), [n] + spatial)[:, None]
            out, groups = cin * mult, cin
        else:
            weight = np.transpose(kernel, [n + 1, n] + spatial)
            out, groups = layer.filters, getattr(layer, "groups", 1)
        args = {"out": out, "kernel": _pair(layer.kernel_size)}
        if _pair(layer.strides) != 1:
            args["stride"] = _pair(layer.strides)
        padding, before = self._padding(layer, pad)
        if padding not in (0, "valid"):
            args["padding"] = padding
        if _pair(layer.dilation_rate) != 1:
            args["dilation"] = _pair(layer.dilation_rate)
        if groups != 1:
            args["groups"] = groups
        tensors = {"weight": weight}
        if layer.use_bias:
            tensors["bias"] = layer.bias.numpy()
        else:
            args["bias"] = False
        return before + [Item(f"conv{n}d", args, tensors=tensors, source=name)] + \
            _activation(layer, layer.activation)

    def _padding(self, layer, pad) -> tuple:
        """(the conv's `padding`, the items before it): Keras's 'same' pads the extra row of an odd total at
        the end, written as a `pad` before the conv."""
        if pad is not None:
            if layer.padding != "valid":
                raise ImportProblem(layer.name, "ZeroPadding2D before a layer that pads itself")
            return pad[0], []
        if layer.padding == "valid":
            return 0, []
        pads = self._same_pads(layer)
        if any(b != a for b, a in pads):
            return 0, [_pad_item(pads)]
        kernel, strides = layer.kernel_size, layer.strides
        dilation = getattr(layer, "dilation_rate", (1,) * len(kernel))
        if all(s == 1 for s in strides) and all(s == 1 for s in dilation) and all(k % 2 for k in kernel):
            return ("same" if any(b for b, _ in pads) else 0), []
        return _pair([b for b, _ in pads]), []

    @staticmethod
    def _same_pads(layer) -> list:
        """(before, after) per spatial axis of Keras's padding 'same'."""
        kernel = layer.kernel_size if hasattr(layer, "kernel_size") else layer.pool_size
        dilation = getattr(layer, "dilation_rate", (1,) * len(kernel))
        pads = []
        for size, k, s, d in zip(layer.input.shape[1:-1], kernel, layer.strides, dilation):
            span = (k - 1) * d + 1
            total = max((-(-size // s) - 1) * s + span - size, 0)
            pads.append((total // 2, total - total // 2))
        return pads

    def _folds(self, layer, parent, pad: int) -> bool:
        """Whether a symmetric ZeroPadding folds into the one layer after it: a conv that does not pad itself,
        or a max pool after a ReLU (where zero and -inf padding agree) within its padding limit."""
        import keras

        L = keras.layers
        users = self.users.get(id(layer), [])
        if len(users) != 1:
            return False
        user = users[0]
        if isinstance(user, (L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv2D)) and \
                not isinstance(user, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
            return user.padding == "valid"
        if isinstance(user, (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D)):
            return _after_relu(parent) and pad <= min(user.pool_size) // 2 and user.padding == "valid"
        return False

    def normalization(self, layer):
        """Keras's Normalization, (x - mean) / max(sqrt(variance), epsilon), as a `rescale`."""
        import keras

        if getattr(layer, "invert", False):
            raise ImportProblem(layer.name, "Normalization(invert=True) (undoing a normalisation) has no nnspec kind")
        rank = len(layer.input.shape)
        keep = tuple(sorted(a % rank for a in layer.axis))
        if keep not in ((), (rank - 1,)):
            raise ImportProblem(layer.name, f"Normalization(axis={layer.axis}): the import reads a normalisation "
                                            "per channel (the last axis) or of every element alike")
        if layer.input_mean is not None:
            mean, variance = np.asarray(layer.mean, "float64"), np.asarray(layer.variance, "float64")
        else:
            mean = np.asarray(layer.adapt_mean.numpy(), "float64")
            variance = np.asarray(layer.adapt_variance.numpy(), "float64")
        std = np.maximum(np.sqrt(variance), keras.backend.epsilon())
        return _rescale_item(layer, 1.0 / std, -mean / std)

    def pool(self, layer, pad, parent) -> list:
        kind = ("maxpool" if "Max" in type(layer).__name__ else "avgpool") + f"{len(layer.pool_size)}d"
        if pad is not None:  # folded only into a max pool after a ReLU (`_folds`)
            padding = pad[0]
        elif layer.padding == "valid":
            padding = 0
        else:
            pads = self._same_pads(layer)
            if any(b != a for b, a in pads):
                raise ImportProblem(layer.name, f"{type(layer).__name__}(padding='same') pads {pads} (before, after) "
                                                "per axis: Keras's 'same' pooling leaves the padding out, nnspec's "
                                                "pools pad every side alike", "pool an input whose size the stride "
                                                "divides, or pad explicitly")
            padding = _pair([b for b, _ in pads])
            if padding and kind.startswith("avgpool"):
                raise ImportProblem(layer.name, "AveragePooling with padding 'same': Keras leaves the padding out of "
                                                "the average, nnspec (as PyTorch) counts it")
        args = {"kernel": _pair(layer.pool_size)}
        if _pair(layer.strides) != args["kernel"]:
            args["stride"] = _pair(layer.strides)
        if padding:
            args["padding"] = padding
        return [Item(kind, args)]


def _rate(rate) -> float:
    """A dropout rate without the float noise of its arithmetic (EfficientNet's 0.07500000000000001)."""
    return float(f"{float(rate):.12g}")


def _pad_pairs(layer) -> list:
    """(before, after) per spatial axis of a ZeroPadding1D/2D/3D."""
    padding = layer.padding
    if len(padding) == 2 and all(isinstance(p, int) for p in padding):  # ZeroPadding1D: (before, after)
        return [tuple(int(p) for p in padding)]
    return [tuple(int(p) for p in pair) for pair in padding]


def _pad_item(pads: list) -> Item:
    if len({side for pair in pads for side in pair}) == 1:
        return Item("pad", {"padding": pads[0][0]})
    return Item("pad", {"padding": [b if b == a else [b, a] for b, a in pads]})


def _after_relu(layer) -> bool:
    return getattr(getattr(layer, "activation", None), "__name__", "") in ("relu", "relu6") or \
        type(layer).__name__ == "ReLU"


def _constants(values) -> object:
    """One number, or one per channel: a float, or a list of floats (numbers as float32 holds them)."""
    flat = np.asarray(values, "float64").reshape(-1)
    as32 = [float(np.float32(v)) for v in flat]
    if len(set(as32)) == 1:
        return _short(as32[0])
    return [_short(v) for v in as32]


def _short(value: float) -> float:
    """The shortest decimal that float32 reads back as `value`."""
    return float(np.format_float_positional(np.float32(value), unique=True, trim="0"))


def _rescale_item(layer, scale, offset) -> Item:
    scale, offset = np.asarray(scale, "float64"), np.asarray(offset, "float64")
    channels = layer.input.shape[-1]
    for value, what in ((scale, "scale"), (offset, "offset")):
        if value.size not in (1, channels) or value.ndim > 1 and value.shape[-1] != value.size:
            raise ImportProblem(layer.name, f"{type(layer).__name__} with a {what} of shape {list(value.shape)}: "
                                            "the import reads one number, or one per channel (the last axis)")
    args = {}
    if _constants(scale) != 1.0:
        args["scale"] = _constants(scale)
    if _constants(offset) != 0.0:
        args["offset"] = _constants(offset)
    return Item("rescale", args or {"scale": 1.0}, source=layer.name)


def convert(model) -> tuple:
    import keras

    if not isinstance(model, keras.Model):
        raise ImportProblem(type(model).__name__, "not a keras.Model")
    if isinstance(model, keras.Sequential) and not model.built:
        raise ImportProblem(model.name, "the Sequential model is not built: give it an Input or build(input_shape)")
    converter = _Converter(model)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            raise ImportProblem(layer.name, "a nested model: nnspec imports one flat graph of layers")
    start, end = converter.graph()
    items = _group_merges(converter.chain(start, end))
    shape = list(model.inputs[0].shape[1:])
    if any(s is None for s in shape):
        raise ImportProblem(model.name, f"the input shape {shape} has an unknown size: give input_shape")
    logical = shape if len(shape) == 1 else [shape[-1], *shape[:-1]]
    return items, logical


def _group_merges(items: list) -> list:
    """A functional graph has no classes to make blocks of: each merge with the tensor-free layers after
    it (a residual and its ReLU) stands for one, so that repeated ones become a block with `repeat`."""
    from nnspec.importing.structure import MERGE_KINDS

    out = []
    for item in items:
        if item.kind in MERGE_KINDS:
            out.append(Item("instance", body=[item], cls="block"))
        elif out and out[-1].kind == "instance" and item.kind in set(ACTIVATIONS.values()):
            out[-1].body.append(item)
        else:
            out.append(item)
    return out


def from_keras(model, name=None) -> str:
    from nnspec.importing.compose import compose

    items, logical = convert(model)
    return compose(items, {"block": "block"}, logical, name or model.name, f"the Keras model `{model.name}`",
                   keras=True)


def state_dict(model) -> dict:
    """The source model's tensors (and batchnorm statistics) under the state_dict keys of the PyTorch model
    of `spec`, the spec `from_keras(model)` wrote: load it with `nnspec.load_weights`, then
    `nnspec.transfer` to the spec's Keras model."""
    import torch

    from nnspec.importing.compose import prepare

    items, _ = convert(model)
    items, _ = prepare(items, {"block": "block"})
    from nnspec.importing.structure import leaf_paths

    out = {}
    for path, item in leaf_paths(items):
        for role, value in item.tensors.items():
            key = {"gamma": "weight", "beta": "bias"}.get(role, role)
            out[f"{path}.{key}"] = torch.as_tensor(np.ascontiguousarray(value))
        for role, value in item.buffers.items():
            out[f"{path}.{role}"] = torch.as_tensor(np.ascontiguousarray(value))
    return out
