"""nnspec's Keras initializers and helper layers, for what Keras lacks.

Each class and function is self-contained (it uses only `keras`, `numpy`, `math`
and `hashlib`): the emitted source carries the source of those it uses, so a
model built in memory and one built from emitted code are the same code. Random
classes take an integer seed and are deterministic for a given seed. Layers whose
arguments are plain values leave their config to Keras (`get_config` from the
constructor's arguments), and their output shape to Keras where it follows from
`call`.
"""

from __future__ import annotations

import hashlib
import math

import keras
import numpy as np


def keras_seed(seed: int, path: str) -> int:
    """The 31-bit seed of the tensor at `path`, derived from the model seed."""
    digest = hashlib.sha256(f"{seed}/{path}".encode()).digest()
    return (int.from_bytes(digest[:8], "little") >> 1) % 2**31


def torch_default(fan_in: int, seed: int) -> keras.initializers.Initializer:
    """PyTorch's default of a layer's weight and bias: U(-b, b), b = 1/sqrt(fan_in)."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return keras.initializers.RandomUniform(-bound, bound, seed=seed)


@keras.saving.register_keras_serializable(package="nnspec")
class Dirac(keras.initializers.Initializer):
    """Identity convolution kernel in Keras layout (*kernel, in/groups, out).

    K[centre..., d, g*opg + d] = 1 for each group g and d < min(opg, in/groups),
    opg = out/groups: the transpose of torch.nn.init.dirac_(w, groups).
    """

    def __init__(self, groups=1):
        self.groups = int(groups)

    def __call__(self, shape, dtype=None):
        *kernel, in_per_group, out = shape
        if not kernel or out % self.groups:
            raise ValueError(
                f"Dirac needs a conv kernel with out divisible by groups, got {tuple(shape)}"
            )
        values = np.zeros(shape, dtype="float32")
        per_group = out // self.groups
        centre = tuple(k // 2 for k in kernel)
        for g in range(self.groups):
            for d in range(min(per_group, in_per_group)):
                values[centre + (d, g * per_group + d)] = 1.0
        return keras.ops.convert_to_tensor(values, dtype=dtype or "float32")

    def get_config(self):
        return {"groups": self.groups}


@keras.saving.register_keras_serializable(package="nnspec")
class TruncNormal(keras.initializers.Initializer):
    """N(mean, std^2) cut at the ABSOLUTE bounds [low, high], as torch.nn.init.trunc_normal_."""

    def __init__(self, mean=0.0, std=1.0, low=-2.0, high=2.0, seed=None):
        self.mean, self.std, self.low, self.high, self.seed = mean, std, low, high, seed

    def __call__(self, shape, dtype=None):
        lo = math.erf((self.low - self.mean) / self.std / math.sqrt(2.0))
        hi = math.erf((self.high - self.mean) / self.std / math.sqrt(2.0))
        u = keras.random.uniform(shape, lo, hi, "float32", seed=self.seed)
        values = keras.ops.erfinv(u) * (self.std * math.sqrt(2.0)) + self.mean
        values = keras.ops.clip(values, self.low, self.high)
        return keras.ops.cast(values, dtype or "float32")

    def get_config(self):
        return {k: getattr(self, k) for k in ("mean", "std", "low", "high", "seed")}


@keras.saving.register_keras_serializable(package="nnspec")
class Sparse(keras.initializers.Initializer):
    """torch.nn.init.sparse_ in Keras layout: N(0, std^2), then for every index along
    `column_axis` (PyTorch's columns), ceil(sparsity * n) of the n entries along the
    other axis set to zero."""

    def __init__(self, sparsity, std=0.01, column_axis=0, seed=None):
        self.sparsity, self.std = sparsity, std
        self.column_axis, self.seed = column_axis, seed

    def __call__(self, shape, dtype=None):
        rng = np.random.default_rng(self.seed)
        values = rng.normal(0.0, self.std, size=tuple(shape)).astype("float32")
        columns = np.moveaxis(values, self.column_axis, 0)
        zeros = math.ceil(self.sparsity * columns.shape[1])
        for column in columns:
            column[rng.permutation(column.shape[0])[:zeros]] = 0.0
        return keras.ops.convert_to_tensor(values, dtype=dtype or "float32")

    def get_config(self):
        return {
            "sparsity": self.sparsity,
            "std": self.std,
            "column_axis": self.column_axis,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="nnspec")
class TorchDefault(keras.initializers.Initializer):
    """PyTorch's module default: U(-b, b), b = 1/sqrt(fan_in); `fan_in` given for a bias,
    else taken from the Keras kernel shape (its fan_in equals PyTorch's)."""

    def __init__(self, fan_in=None, seed=None):
        self.fan_in, self.seed = fan_in, seed

    def __call__(self, shape, dtype=None):
        fan_in = self.fan_in
        if fan_in is None:
            fan_in = shape[0] if len(shape) == 2 else shape[-2] * math.prod(shape[:-2])
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        return keras.random.uniform(
            shape, minval=-bound, maxval=bound, dtype=dtype or "float32", seed=self.seed
        )

    def get_config(self):
        return {"fan_in": self.fan_in, "seed": self.seed}


@keras.saving.register_keras_serializable(package="nnspec")
class Values(keras.initializers.Initializer):
    """Exactly these numbers (already in the Keras layout)."""

    def __init__(self, values):
        self.values = values

    def __call__(self, shape, dtype=None):
        values = np.asarray(self.values, dtype="float32")
        if values.shape != tuple(shape):
            raise ValueError(
                f"Values has shape {values.shape}, the variable has shape {tuple(shape)}"
            )
        return keras.ops.convert_to_tensor(values, dtype=dtype or "float32")

    def get_config(self):
        return {"values": self.values}


@keras.saving.register_keras_serializable(package="nnspec")
class Mish(keras.layers.Layer):
    """PyTorch's mish, x * tanh(softplus(x)), as x * n / (n + 2) with n = e^x (e^x + 2).

    The same function; written so that TensorFlow's graph optimiser does not
    fuse it with a convolution and an add (it has no kernel for that fusion).
    """

    def call(self, x):
        e = keras.ops.exp(keras.ops.minimum(x, 20.0))
        n = e * (e + 2.0)
        return keras.ops.where(x > 20.0, x, x * n / (n + 2.0))

    def compute_output_shape(self, shape):
        return shape


@keras.saving.register_keras_serializable(package="nnspec")
class Chunks(keras.initializers.Initializer):
    """Equal parts along `axis` (the logical first axis), each from its own initializer."""

    def __init__(self, parts, axis=-1):
        self.parts = [
            keras.initializers.get(p) if isinstance(p, dict) else p for p in parts
        ]
        self.axis = axis

    def __call__(self, shape, dtype=None):
        shape = list(shape)
        axis = self.axis % len(shape)
        if shape[axis] % len(self.parts):
            raise ValueError(
                f"axis {axis} of {tuple(shape)} does not split in {len(self.parts)}"
            )
        shape[axis] //= len(self.parts)
        values = [part(tuple(shape), dtype=dtype) for part in self.parts]
        return keras.ops.concatenate(values, axis=axis)

    def get_config(self):
        parts = [keras.initializers.serialize(p) for p in self.parts]
        return {"parts": parts, "axis": self.axis}


@keras.saving.register_keras_serializable(package="nnspec")
class Gates(keras.initializers.Initializer):
    """A Keras LSTM/GRU variable made of PyTorch tensors: each part gives one PyTorch
    tensor in the Keras layout (gates along the last axis, in PyTorch's order); the gate
    blocks are put in Keras's `order`; two parts are summed (LSTM's one bias is PyTorch's
    bias_ih + bias_hh) or, with `stack`, stacked as rows (GRU's reset_after bias)."""

    def __init__(self, parts, order=None, stack=False):
        self.parts = [
            keras.initializers.get(p) if isinstance(p, dict) else p for p in parts
        ]
        self.order = list(order) if order is not None else None
        self.stack = bool(stack)

    def __call__(self, shape, dtype=None):
        shape = tuple(shape)
        one = shape[1:] if self.stack else shape
        values = [part(one, dtype=dtype) for part in self.parts]
        if self.order is not None:
            values = [self._reorder(v) for v in values]
        if len(values) == 1:
            return values[0]
        if self.stack:
            return keras.ops.stack(values, axis=0)
        return values[0] + values[1]

    def _reorder(self, value):
        blocks = keras.ops.split(value, len(self.order), axis=-1)
        return keras.ops.concatenate([blocks[i] for i in self.order], axis=-1)

    def get_config(self):
        parts = [keras.initializers.serialize(p) for p in self.parts]
        return {"parts": parts, "order": self.order, "stack": self.stack}


@keras.saving.register_keras_serializable(package="nnspec")
class ConstantPad(keras.layers.Layer):
    """Pads the spatial axes of a channels-last tensor with a constant (-inf before max pooling)."""

    def __init__(self, padding, value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.padding = [tuple(p) for p in padding]
        self.value = float(value)

    def call(self, x):
        widths = [(0, 0)] + list(self.padding) + [(0, 0)]
        return keras.ops.pad(x, widths, constant_values=self.value)

    def compute_output_shape(self, shape):
        pads = zip(shape[1:-1], self.padding)
        spatial = [None if s is None else s + a + b for s, (a, b) in pads]
        return (shape[0], *spatial, shape[-1])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "value": self.value}


@keras.saving.register_keras_serializable(package="nnspec")
class Gelu(keras.layers.Layer):
    """GELU with PyTorch's `approximate` argument ("none" or "tanh")."""

    def __init__(self, approximate="none", **kwargs):
        super().__init__(**kwargs)
        self.approximate = approximate

    def call(self, x):
        return keras.activations.gelu(x, approximate=self.approximate == "tanh")

    def compute_output_shape(self, shape):
        return shape


@keras.saving.register_keras_serializable(package="nnspec")
class Slice(keras.layers.Layer):
    """Elements start to stop - 1 of one axis (batch included in `axis`)."""

    def __init__(self, start, stop, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop, self.axis = start, stop, axis

    def call(self, x):
        before = (slice(None),) * (self.axis % len(x.shape))
        return x[before + (slice(self.start, self.stop),)]


@keras.saving.register_keras_serializable(package="nnspec")
class ChannelShuffle(keras.layers.Layer):
    """ShuffleNet's channel shuffle on the last axis: channels [g, C/g] -> [C/g, g], as torch.nn.ChannelShuffle."""

    def __init__(self, groups, **kwargs):
        super().__init__(**kwargs)
        self.groups = groups

    def call(self, x):
        shape = keras.ops.shape(x)
        channels = x.shape[-1]
        grouped = keras.ops.reshape(
            x, (-1, *x.shape[1:-1], self.groups, channels // self.groups)
        )
        swapped = keras.ops.swapaxes(grouped, -1, -2)
        return keras.ops.reshape(swapped, shape)

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


@keras.saving.register_keras_serializable(package="nnspec")
class AdaptivePool(keras.layers.Layer):
    """PyTorch's adaptive average or max pooling of a channels-last tensor's spatial
    axes: output i of an axis of size L pools [floor(i*L/n), ceil((i+1)*L/n))."""

    def __init__(self, size, mode="avg", **kwargs):
        super().__init__(**kwargs)
        self.size, self.mode = [int(s) for s in size], mode

    def call(self, x):
        reduce = keras.ops.max if self.mode == "max" else keras.ops.mean
        for axis, n in enumerate(self.size, start=1):
            length = x.shape[axis]
            bins = []
            for i in range(n):
                index = [slice(None)] * len(x.shape)
                index[axis] = slice(i * length // n, -(-(i + 1) * length // n))
                bins.append(reduce(x[tuple(index)], axis=axis, keepdims=True))
            x = keras.ops.concatenate(bins, axis=axis) if n > 1 else bins[0]
        return x

    def compute_output_shape(self, shape):
        return (shape[0], *self.size, shape[-1])

    def get_config(self):
        return {**super().get_config(), "size": self.size, "mode": self.mode}


@keras.saving.register_keras_serializable(package="nnspec")
class PoolRescale(keras.layers.Layer):
    """Multiplies a channels-last tensor by fixed factors, one list per spatial axis:
    average pooling's divisor where PyTorch's ceil_mode clips the last window."""

    def __init__(self, factors, **kwargs):
        super().__init__(**kwargs)
        self.factors = [[float(v) for v in f] for f in factors]

    def call(self, x):
        for axis, factors in enumerate(self.factors, start=1):
            shape = [1] * len(x.shape)
            shape[axis] = len(factors)
            values = np.asarray(factors, dtype="float32").reshape(shape)
            x = x * keras.ops.cast(values, x.dtype)
        return x

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "factors": self.factors}


@keras.saving.register_keras_serializable(package="nnspec")
class RMSNorm(keras.layers.Layer):
    """x / sqrt(mean(x^2) + epsilon) * gamma over one axis, as torch.nn.RMSNorm."""

    def __init__(self, axis=-1, epsilon=1e-6, gamma_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.axis, self.epsilon = axis, epsilon
        self.gamma_initializer = keras.initializers.get(gamma_initializer)

    def build(self, shape):
        self.gamma = self.add_weight(
            name="gamma", shape=(shape[self.axis],), initializer=self.gamma_initializer
        )

    def call(self, x):
        square = keras.ops.mean(keras.ops.square(x), axis=self.axis, keepdims=True)
        shape = [1] * len(x.shape)
        shape[self.axis] = -1
        gamma = keras.ops.reshape(self.gamma, shape)
        return x * keras.ops.rsqrt(square + self.epsilon) * gamma

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "epsilon": self.epsilon,
            "gamma_initializer": keras.initializers.serialize(self.gamma_initializer),
        }


@keras.saving.register_keras_serializable(package="nnspec")
class LayerScale(keras.layers.Layer):
    """x times a learned factor per index of the last axis (per channel)."""

    def __init__(self, gamma_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)

    def build(self, shape):
        self.gamma = self.add_weight(
            name="gamma", shape=(shape[-1],), initializer=self.gamma_initializer
        )

    def call(self, x):
        return x * self.gamma

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {
            **super().get_config(),
            "gamma_initializer": keras.initializers.serialize(self.gamma_initializer),
        }


@keras.saving.register_keras_serializable(package="nnspec")
class DropPath(keras.layers.Layer):
    """Stochastic depth per sample: in training each sample is zeroed with probability
    `rate`, the others scaled by 1/(1-rate); the identity in inference."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed = rate, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (keras.ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        draw = keras.random.uniform(shape, seed=self.seed_generator)
        return x * keras.ops.cast(draw < keep, x.dtype) / keep

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="nnspec")
class ClassToken(keras.layers.Layer):
    """A learned token `token` (D,) prepended to tokens (B, T, D) -> (B, T + 1, D)."""

    def __init__(self, token_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.token_initializer = keras.initializers.get(token_initializer)

    def build(self, shape):
        init = self.token_initializer
        self.token = self.add_weight(name="token", shape=shape[-1:], initializer=init)

    def call(self, x):
        token = keras.ops.reshape(keras.ops.cast(self.token, x.dtype), (1, 1, -1))
        token = keras.ops.broadcast_to(token, (keras.ops.shape(x)[0], 1, x.shape[-1]))
        return keras.ops.concatenate([token, x], axis=1)

    def get_config(self):
        init = keras.initializers.serialize(self.token_initializer)
        return {**super().get_config(), "token_initializer": init}


@keras.saving.register_keras_serializable(package="nnspec")
class PositionEmbedding(keras.layers.Layer):
    """Tokens (B, T, D) plus the first T rows of a learned table `embeddings` (length, D)."""

    def __init__(self, length, embeddings_initializer="random_normal", **kwargs):
        super().__init__(**kwargs)
        self.length = length
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, shape):
        i, s = self.embeddings_initializer, (self.length, shape[-1])
        self.embeddings = self.add_weight(name="embeddings", shape=s, initializer=i)

    def call(self, x):
        return x + self.embeddings[: x.shape[1]]

    def get_config(self):
        init = keras.initializers.serialize(self.embeddings_initializer)
        config = {"length": self.length, "embeddings_initializer": init}
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="nnspec")
class SelfAttention(keras.layers.Layer):
    """PyTorch's nn.MultiheadAttention as self-attention on tokens (B, T, D), its tensors
    in its layout (`<name>_initializer` each): `in_weight` (3D, D) holding q, k, v, `in_bias`
    (3D,), `out_weight` (D, D), `out_bias` (D,). `causal` masks future positions;
    `dropout` acts on the attention probabilities in training only."""

    TENSORS = ("in_weight", "in_bias", "out_weight", "out_bias")

    def __init__(
        self, heads, causal=False, use_bias=True, dropout=0.0, seed=None, **kwargs
    ):
        inits = {t: kwargs.pop(f"{t}_initializer", None) for t in self.TENSORS}
        super().__init__(**kwargs)
        self.heads, self.causal, self.use_bias = heads, causal, use_bias
        self.dropout, self.seed = dropout, seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        for t, init in inits.items():
            init = init or ("zeros" if t.endswith("bias") else "glorot_uniform")
            setattr(self, f"{t}_initializer", keras.initializers.get(init))

    def build(self, shape):
        d = shape[-1]
        shapes = [(3 * d, d), (3 * d,), (d, d), (d,)]
        for t, size in zip(self.TENSORS, shapes):
            if self.use_bias or not t.endswith("bias"):
                init = getattr(self, f"{t}_initializer")
                setattr(self, t, self.add_weight(name=t, shape=size, initializer=init))

    def call(self, x, training=False):
        ops, d, t, h = keras.ops, x.shape[-1], keras.ops.shape(x)[1], self.heads
        qkv = ops.matmul(x, ops.transpose(self.in_weight))
        qkv = qkv + self.in_bias if self.use_bias else qkv

        def split(z):  # (B, T, D) -> (B, heads, T, D / heads)
            return ops.transpose(ops.reshape(z, (-1, t, h, d // h)), (0, 2, 1, 3))

        q, k, v = (split(qkv[..., i * d : (i + 1) * d]) for i in range(3))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / math.sqrt(d // h)
        if self.causal:  # query i sees keys j <= i
            later = ops.arange(t)[None, :] > ops.arange(t)[:, None]
            scores = ops.where(later, ops.cast(-math.inf, scores.dtype), scores)
        probs = ops.softmax(scores, axis=-1)
        if training and self.dropout > 0.0:
            probs = keras.random.dropout(probs, self.dropout, seed=self.seed_generator)
        out = ops.reshape(ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3)), (-1, t, d))
        out = ops.matmul(out, ops.transpose(self.out_weight))
        return out + self.out_bias if self.use_bias else out

    def get_config(self):
        config = {"heads": self.heads, "causal": self.causal, "use_bias": self.use_bias}
        config.update(dropout=self.dropout, seed=self.seed)
        for t in self.TENSORS:
            init = keras.initializers.serialize(getattr(self, f"{t}_initializer"))
            config[f"{t}_initializer"] = init
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="nnspec")
class GroupedConvTranspose(keras.layers.Layer):
    """A transposed convolution with groups (Keras's ConvNDTranspose has none), padding
    valid: the kernel is (*kernel_size, filters / groups, in), PyTorch's
    [in, filters / groups, *kernel_size] transposed; group g maps input channels
    [g*in/groups, (g+1)*in/groups) to output channels [g*filters/groups, ...).
    `output_padding` adds that many positions (the bias alone) after the full output,
    of any size (Keras's own must be below the stride)."""

    def __init__(
        self,
        filters,
        kernel_size,
        groups,
        strides=1,
        output_padding=0,
        dilation_rate=1,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters, self.groups, self.use_bias = filters, groups, use_bias
        self.kernel_size = tuple(kernel_size)
        n = len(self.kernel_size)
        self.strides = self._tuple(strides, n)
        self.output_padding = self._tuple(output_padding, n)
        self.dilation_rate = self._tuple(dilation_rate, n)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    @staticmethod
    def _tuple(value, n):
        return (value,) * n if isinstance(value, int) else tuple(value)

    def build(self, shape):
        shape = (*self.kernel_size, self.filters // self.groups, shape[-1])
        self.kernel = self.add_weight(
            name="kernel", shape=shape, initializer=self.kernel_initializer
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.filters,), initializer=self.bias_initializer
            )

    def call(self, x):
        per_group = x.shape[-1] // self.groups
        outputs = []
        for g in range(self.groups):
            channels = slice(g * per_group, (g + 1) * per_group)
            outputs.append(
                keras.ops.conv_transpose(
                    x[..., channels],
                    self.kernel[..., channels],
                    strides=self.strides,
                    padding="valid",
                    output_padding=0,
                    dilation_rate=self.dilation_rate,
                )
            )
        y = keras.ops.concatenate(outputs, axis=-1) if self.groups > 1 else outputs[0]
        if any(self.output_padding):
            widths = [(0, 0)] + [(0, p) for p in self.output_padding] + [(0, 0)]
            y = keras.ops.pad(y, widths)
        return y + self.bias if self.use_bias else y

    def compute_output_shape(self, shape):
        spatial = [
            None if s is None else (s - 1) * st + d * (k - 1) + 1 + op
            for s, k, st, d, op in zip(
                shape[1:-1],
                self.kernel_size,
                self.strides,
                self.dilation_rate,
                self.output_padding,
            )
        ]
        return (shape[0], *spatial, self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "groups": self.groups,
            "strides": self.strides,
            "output_padding": self.output_padding,
            "dilation_rate": self.dilation_rate,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
