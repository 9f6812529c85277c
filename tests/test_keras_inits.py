"""Initializers on the Keras target: exact where deterministic, same distribution where random.

Ground truth is the frameworks themselves: deterministic tensors are compared with what PyTorch's
`nn.init` puts in the PyTorch model, transposed here (independently of nnspec) to Keras's layout;
random tensors are tested with Kolmogorov-Smirnov against the formula computed in this file from the
logical fans, on both targets, as PyTorch's own test/nn/test_init.py does.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("torch")
keras = pytest.importorskip("keras")
stats = pytest.importorskip("scipy.stats")

import torch
from helpers import spec_from_text

import nnspec
from nnspec.compiler.backends import keras_runtime

P_MIN = 1e-3  # KS p-value below which a sample is rejected (every draw is seeded: no flakiness)
TRUNC_STD = 0.87962566103423978  # std of N(0, 1) cut at +-2 (Keras's correction)


# -- layout helpers, written here so that the test does not trust nnspec's own transpose -------------

def torch_to_keras(w: np.ndarray, kind: str) -> np.ndarray:
    """A PyTorch tensor in the Keras variable's layout: Dense kernel W.T, ConvND kernel W.permute(2.., 1, 0)."""
    if kind == "embedding" or w.ndim == 1:
        return w
    if w.ndim == 2:
        return w.T
    return np.transpose(w, (*range(2, w.ndim), 1, 0))


def keras_to_torch(k: np.ndarray, kind: str) -> np.ndarray:
    if kind == "embedding" or k.ndim == 1:
        return k
    if k.ndim == 2:
        return k.T
    return np.transpose(k, (k.ndim - 1, k.ndim - 2, *range(k.ndim - 2)))


KERAS_ATTR = {"bias": "bias", "gamma": "gamma", "beta": "beta"}


def keras_tensor(model, tensor) -> np.ndarray:
    """The Keras variable of an IR tensor, found by layer name and Keras attribute (not by weight order)."""
    layer = model.get_layer(tensor.layer.path)
    if tensor.role == "weight":
        attr = "embeddings" if tensor.layer.kind == "embedding" else "kernel"
    else:
        attr = KERAS_ATTR[tensor.role]
    return keras.ops.convert_to_numpy(getattr(layer, attr))


def torch_tensor(model, tensor) -> np.ndarray:
    role = {"gamma": "weight", "beta": "bias"}.get(tensor.role, tensor.role)
    key = tensor.path[: -len(tensor.role)] + role
    return model.state_dict()[key].detach().numpy()


def both(spec, seed=0):
    return nnspec.build(spec, "torch", seed=seed), nnspec.build(spec, "keras", seed=seed)


# -- deterministic initializers: exactly the transposed PyTorch tensors ----------------------------

DETERMINISTIC = """
nnspec: 1
name: deterministic
input: [6]
layers:
  - residual:
      branch:
        - linear: {out: 6, init: {weight: {eye: 2.5}, bias: {constant: 0.25}}}
        - linear: {out: 6, init: {weight: ones, bias: ones}, allow: {NS201: t, NS203: t, NS204: t}}
        - linear: {out: 6, init: {weight: zeros, bias: zeros}, allow: {NS201: t, NS203: t}}
        - linear: {out: 6, init: {weight: {constant: -0.5}}, allow: {NS201: t, NS203: t, NS204: t}}
        - linear: {out: 4, init: {weight: eye}}
        - linear: {out: 6, init: {weight: {eye: 0.5}, bias: {values: [1, -2, 3.5, 4, 5, 6]}}}
        - batchnorm: {init: {gamma: {values: [1, 2, 3, 4, 5, 6]}, beta: {constant: -1.0}}}
        - layernorm: {init: {gamma: {constant: 3.0}, beta: {values: [0, 1, 2, 3, 4, 5]}}}
  - linear:
      out: 3
      init:
        weight: {values: [[1, 2, 3, 4, 5, 6], [-1, -2, -3, -4, -5, -6], [0.5, 0, 0, 0, 0, 0.25]]}
        bias: {log_prior: [10, 30, 60]}
  - linear: {out: 2, init: {weight: zeros, bias: {log_prior: [1, 3]}}}
"""

CONV_VALUES = """
nnspec: 1
name: conv_values
input: [3, 5, 6]
layers:
  - conv2d:
      out: 2
      kernel: [2, 3]
      padding: 1
      init:
        weight:
          values:
            - [[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [10, 11, 12]], [[13, 14, 15], [16, 17, 18]]]
            - [[[-1, -2, -3], [-4, -5, -6]], [[-7, -8, -9], [-10, -11, -12]], [[0, 0, 1], [0, 2, 0]]]
        bias: {values: [0.5, -0.5]}
  - flatten
  - linear: {out: 3}
"""

EMBEDDING_DET = """
nnspec: 1
name: embedding_det
input: {shape: [4], dtype: int64}
layers:
  - embedding: {num: 5, dim: 3, init: {weight: {values: [[1, 2, 3], [4, 5, 6], [7, 8, 9], [0, 1, 0], [2, 0, 2]]}}}
  - linear: {out: 2, init: {weight: {eye: 3.0}, bias: {values: [1.5, -1.5]}}}
"""

EMBEDDING_EYE = """
nnspec: 1
name: embedding_eye
input: {shape: [4], dtype: int64}
layers:
  - embedding: {num: 5, dim: 3, init: {weight: {eye: 2.0}}}
"""


def _dirac_spec(n: int, c_in: int, out: int, groups: int, kernel, dilation: int = 1) -> str:
    k = kernel if isinstance(kernel, int) else list(kernel)
    ks = [kernel] * n if isinstance(kernel, int) else list(kernel)
    pad = [dilation * (x - 1) // 2 for x in ks]
    spatial = [7, 6, 5][:n]
    return f"""
nnspec: 1
name: dirac_{n}d
input: {[c_in, *spatial]}
layers:
  - conv{n}d:
      out: {out}
      kernel: {k}
      padding: {pad}
      dilation: {dilation}
      groups: {groups}
      init: {{weight: dirac, bias: zeros}}
      allow: {{NS209: "testing dirac where it is not an identity"}}
"""


DIRAC_CASES = [  # (n, in, out, groups, kernel)
    (1, 4, 4, 1, 3), (1, 4, 8, 2, 5), (1, 8, 4, 4, 3),
    (2, 4, 4, 1, 3), (2, 4, 8, 1, [3, 5]), (2, 8, 4, 1, 3), (2, 8, 8, 2, 3), (2, 8, 4, 2, [1, 3]),
    (2, 8, 16, 4, 3), (2, 16, 8, 4, 3), (2, 6, 6, 2, 2),
    (3, 4, 4, 1, 3), (3, 4, 8, 2, [1, 3, 3]), (3, 8, 4, 4, 3), (3, 2, 6, 2, [3, 1, 3]),
]


@pytest.mark.parametrize("text", [DETERMINISTIC, CONV_VALUES, EMBEDDING_DET, EMBEDDING_EYE] +
                         [_dirac_spec(*case) for case in DIRAC_CASES],
                         ids=["linear_norms", "conv_values", "embedding", "embedding_eye"] +
                             [f"dirac{n}d_in{i}_out{o}_g{g}_k{k}" for n, i, o, g, k in DIRAC_CASES])
def test_deterministic_initializers_equal_transposed_torch(text):
    spec = spec_from_text(text, "deterministic.yaml")
    torch_model, keras_model = both(spec, seed=3)
    checked = 0
    for tensor in spec.graph.tensors():
        if tensor.init.name not in ("zeros", "ones", "constant", "eye", "dirac", "values", "log_prior"):
            continue
        expected = torch_to_keras(torch_tensor(torch_model, tensor), tensor.layer.kind)
        got = keras_tensor(keras_model, tensor)
        assert got.shape == expected.shape, tensor.path
        assert got.dtype == np.float32, tensor.path
        assert np.array_equal(got, expected), f"{tensor.path}: {tensor.init.describe()}"
        checked += 1
    assert checked >= 1


def test_deterministic_initializers_match_torch_nn_init_directly():
    """The PyTorch side of the comparison above really is nn.init: guards against both sides being wrong."""
    spec = spec_from_text(DETERMINISTIC, "deterministic.yaml")
    keras_model = nnspec.build(spec, "keras", seed=0)
    t = {x.path: x for x in spec.graph.tensors()}
    eye = torch.empty(6, 6)
    torch.nn.init.eye_(eye)
    np.testing.assert_array_equal(keras_tensor(keras_model, t["residual_1.branch.linear_1.weight"]),
                                  (eye * 2.5).numpy().T)
    rect = torch.empty(4, 6)  # out 4, in 6: rectangular
    torch.nn.init.eye_(rect)
    np.testing.assert_array_equal(keras_tensor(keras_model, t["residual_1.branch.linear_5.weight"]), rect.numpy().T)
    prior = keras_tensor(keras_model, t["linear_1.bias"])
    np.testing.assert_allclose(np.exp(prior), [0.1, 0.3, 0.6], rtol=1e-6)
    np.testing.assert_array_equal(keras_tensor(keras_model, t["linear_1.weight"])[:, 1], [-1, -2, -3, -4, -5, -6])


@pytest.mark.parametrize("n,c,groups,kernel,dilation", [
    (1, 4, 1, 3, 1), (1, 6, 2, 5, 2), (2, 4, 1, 3, 1), (2, 8, 2, 3, 1), (2, 8, 4, [3, 5], 1),
    (2, 4, 1, 3, 2), (3, 4, 1, 3, 1), (3, 4, 2, [1, 3, 3], 1),
])
def test_dirac_conv_is_an_exact_identity_on_keras(n, c, groups, kernel, dilation):
    spec = spec_from_text(_dirac_spec(n, c, c, groups, kernel, dilation), "dirac.yaml")
    model = nnspec.build(spec, "keras", seed=0)
    x = np.random.default_rng(0).standard_normal((2, *[7, 6, 5][:n], c)).astype("float32")
    y = keras.ops.convert_to_numpy(model(x))
    assert np.array_equal(y, x)


# -- nnspec's Dirac class against torch.nn.init.dirac_ ---------------------------------------------

def _torch_dirac_in_keras_layout(keras_shape, groups):
    *kernel, in_per_group, out = keras_shape
    w = torch.empty(out, in_per_group, *kernel)
    torch.nn.init.dirac_(w, groups)
    return torch_to_keras(w.numpy(), "conv")


DIRAC_SHAPES = [  # Keras kernel shapes (*k, in/groups, out) with groups
    ((3, 4, 4), 1), ((1, 2, 6), 3), ((5, 8, 2), 1), ((4, 3, 6), 2),
    ((3, 3, 64, 64), 1), ((3, 5, 8, 8), 1), ((3, 3, 4, 8), 2), ((3, 3, 8, 4), 1), ((1, 1, 2, 8), 4),
    ((3, 3, 2, 8), 4), ((2, 2, 3, 6), 3), ((3, 3, 16, 8), 2), ((5, 3, 1, 4), 4), ((3, 3, 3, 3), 3),
    ((3, 3, 3, 4, 4), 1), ((1, 3, 5, 2, 8), 2), ((3, 3, 3, 8, 4), 4), ((2, 3, 4, 6, 6), 1),
]


@pytest.mark.parametrize("shape,groups", DIRAC_SHAPES, ids=[f"{s}-g{g}" for s, g in DIRAC_SHAPES])
def test_keras_dirac_class_equals_transposed_torch_dirac(shape, groups):
    got = keras.ops.convert_to_numpy(keras_runtime.Dirac(groups)(shape))
    assert np.array_equal(got, _torch_dirac_in_keras_layout(shape, groups))
    assert keras_runtime.Dirac.from_config(keras_runtime.Dirac(groups).get_config()).groups == groups


def test_keras_dirac_refuses_non_conv_and_indivisible_groups():
    with pytest.raises(ValueError):
        keras_runtime.Dirac()((4, 4))
    with pytest.raises(ValueError):
        keras_runtime.Dirac(groups=3)((3, 3, 2, 8))


def tutorial_dirac(shape, dtype=None):
    """The widely copied tutorial snippet quoted in the reference, verbatim in spirit."""
    out_ch, k_h, k_w, in_ch = shape  # wrong: Keras passes (kH, kW, in, out)
    kernel = np.zeros(shape, dtype="float32")
    center_h, center_w = k_h // 2, k_w // 2
    for c in range(min(in_ch, out_ch)):
        kernel[center_h, center_w, c, c] = 1
    return kernel


def test_tutorial_dirac_is_wrong_and_nnspec_is_right():
    with pytest.raises(IndexError):
        tutorial_dirac((3, 3, 64, 64))
    nnspec_kernel = keras.ops.convert_to_numpy(keras_runtime.Dirac()((3, 3, 64, 64)))
    assert np.array_equal(nnspec_kernel, _torch_dirac_in_keras_layout((3, 3, 64, 64), 1))

    wrong = tutorial_dirac((3, 5, 8, 8))
    right = _torch_dirac_in_keras_layout((3, 5, 8, 8), 1)
    assert wrong.sum() == 3 and right.sum() == 8
    assert not np.array_equal(wrong, right)
    assert set(zip(*np.nonzero(wrong)[:2])) == {(2, 4)}  # the wrong tap; the centre is (1, 2)
    assert set(zip(*np.nonzero(right)[:2])) == {(1, 2)}
    assert np.array_equal(keras.ops.convert_to_numpy(keras_runtime.Dirac()((3, 5, 8, 8))), right)


# -- random initializers: Kolmogorov-Smirnov against the formula, on both targets ------------------

def gain(nonlinearity, a=None):
    return torch.nn.init.calculate_gain(nonlinearity, a)


def _uniform(bound):
    return stats.uniform(-bound, 2 * bound)


def _vs(scale, mode, dist):
    def make(fi, fo):
        n = max(1.0, {"fan_in": fi, "fan_out": fo, "fan_avg": (fi + fo) / 2}[mode])
        if dist == "uniform":
            return _uniform(math.sqrt(3 * scale / n))
        if dist == "untruncated_normal":
            return stats.norm(0, math.sqrt(scale / n))
        std = math.sqrt(scale / n) / TRUNC_STD
        return stats.truncnorm(-2, 2, scale=std)

    return make


def _kaiming(uniform, mode, nonlinearity, a=0.0):
    def make(fi, fo):
        g = gain(nonlinearity, a)
        fan = fi if mode == "fan_in" else fo
        return _uniform(g * math.sqrt(3 / fan)) if uniform else stats.norm(0, g / math.sqrt(fan))

    return make


WEIGHT_CASES = {  # id -> (initializer as YAML, distribution from (fan_in, fan_out))
    "uniform": ("{uniform: {low: -0.3, high: 0.7}}", lambda fi, fo: stats.uniform(-0.3, 1.0)),
    "normal": ("{normal: {mean: 0.2, std: 0.5}}", lambda fi, fo: stats.norm(0.2, 0.5)),
    "trunc_normal_abs": ("{trunc_normal: {mean: 0.0, std: 0.1, low: -0.05, high: 0.3}}",
                         lambda fi, fo: stats.truncnorm(-0.5, 3.0, loc=0.0, scale=0.1)),
    "trunc_normal_wide": ("{trunc_normal: {mean: 0.5, std: 1.0}}",
                          lambda fi, fo: stats.truncnorm(-2.5, 1.5, loc=0.5, scale=1.0)),
    "xavier_uniform": ("xavier_uniform", lambda fi, fo: _uniform(math.sqrt(6 / (fi + fo)))),
    "xavier_uniform_g2": ("{xavier_uniform: 2.0}", lambda fi, fo: _uniform(2 * math.sqrt(6 / (fi + fo)))),
    "xavier_normal_g1.5": ("{xavier_normal: {gain: 1.5}}", lambda fi, fo: stats.norm(0, 1.5 * math.sqrt(2 / (fi + fo)))),
    "kaiming_uniform_default": ("kaiming_uniform", _kaiming(True, "fan_in", "leaky_relu", 0.0)),
    "kaiming_uniform_in_relu": ("{kaiming_uniform: {nonlinearity: relu}}", _kaiming(True, "fan_in", "relu")),
    "kaiming_uniform_out_leaky": ("{kaiming_uniform: {a: 0.2, mode: fan_out, nonlinearity: leaky_relu}}",
                                  _kaiming(True, "fan_out", "leaky_relu", 0.2)),
    "kaiming_uniform_out_tanh": ("{kaiming_uniform: {mode: fan_out, nonlinearity: tanh}}",
                                 _kaiming(True, "fan_out", "tanh")),
    "kaiming_uniform_in_linear": ("{kaiming_uniform: {nonlinearity: linear}}", _kaiming(True, "fan_in", "linear")),
    "kaiming_normal_default": ("kaiming_normal", _kaiming(False, "fan_in", "leaky_relu", 0.0)),
    "kaiming_normal_out_relu": ("{kaiming_normal: {mode: fan_out, nonlinearity: relu}}",
                                _kaiming(False, "fan_out", "relu")),
    "kaiming_normal_in_leaky": ("{kaiming_normal: {a: 0.3, nonlinearity: leaky_relu}}",
                                _kaiming(False, "fan_in", "leaky_relu", 0.3)),
    "kaiming_normal_in_tanh": ("{kaiming_normal: {nonlinearity: tanh}}", _kaiming(False, "fan_in", "tanh")),
    "kaiming_normal_out_linear": ("{kaiming_normal: {mode: fan_out, nonlinearity: linear}}",
                                  _kaiming(False, "fan_out", "linear")),
    **{f"vs_{mode}_{dist}": (f"{{variance_scaling: {{scale: 2.0, mode: {mode}, distribution: {dist}}}}}",
                             _vs(2.0, mode, dist))
       for mode in ("fan_in", "fan_out", "fan_avg")
       for dist in ("truncated_normal", "untruncated_normal", "uniform")},
    "vs_default": ("variance_scaling", _vs(1.0, "fan_in", "truncated_normal")),
    "glorot_uniform": ("glorot_uniform", _vs(1.0, "fan_avg", "uniform")),
    "glorot_normal": ("glorot_normal", _vs(1.0, "fan_avg", "truncated_normal")),
    "he_uniform": ("he_uniform", _vs(2.0, "fan_in", "uniform")),
    "he_normal": ("he_normal", _vs(2.0, "fan_in", "truncated_normal")),
    "lecun_uniform": ("lecun_uniform", _vs(1.0, "fan_in", "uniform")),
    "lecun_normal": ("lecun_normal", _vs(1.0, "fan_in", "truncated_normal")),
    "torch_default": ("torch_default", lambda fi, fo: _uniform(1 / math.sqrt(fi))),
}
EMBEDDING_ONLY = {"torch_default": ("torch_default", lambda fi, fo: stats.norm(0, 1))}
EMBEDDING_CASES = ["uniform", "normal", "trunc_normal_abs", "xavier_uniform", "xavier_normal_g1.5",
                   "kaiming_uniform_in_relu", "kaiming_uniform_out_leaky", "kaiming_normal_default",
                   "kaiming_normal_out_relu", "vs_fan_in_truncated_normal", "vs_fan_out_uniform",
                   "vs_fan_avg_untruncated_normal", "vs_fan_out_untruncated_normal", "glorot_normal",
                   "he_uniform", "he_normal", "lecun_normal", "lecun_uniform", "torch_default"]
STRUCTURE_CASES = {"orthogonal": "orthogonal", "orthogonal_g2": "{orthogonal: 2.0}", "sparse": "{sparse: 0.3}",
                   "sparse_std": "{sparse: {sparsity: 0.75, std: 0.5}}"}


def _weight_layers(kind: str) -> tuple[str, list[str]]:
    """(spec text, layer names) with one layer per case, in a chain whose fans differ (fan_in != fan_out)."""
    items, names = [], []
    cases = {**{k: v[0] for k, v in WEIGHT_CASES.items()}, **STRUCTURE_CASES}
    for i, (case, init) in enumerate(cases.items()):
        if kind == "conv2d" and case.startswith("sparse"):
            continue  # sparse is 2-D only, as in PyTorch
        name = "w_" + case.replace(".", "_")
        if kind == "linear":
            out = 96 if i % 2 == 0 else 64
            items.append(f"  - linear: {{out: {out}, name: {name}, init: {{weight: {init}, bias: zeros}}}}")
        else:
            out = 40 if i % 2 == 0 else 24
            items.append(f"  - conv2d: {{out: {out}, kernel: 3, padding: 1, name: {name}, "
                         f"init: {{weight: {init}, bias: zeros}}}}")
        names.append(name)
    # biases: torch_default's bound comes from the weight's fan_in
    if kind == "linear":
        items.append("  - linear: {out: 4096, name: b_torch_default, init: {weight: torch_default, bias: torch_default}}")
    else:
        items.append("  - conv2d: {out: 1024, kernel: [3, 5], padding: [1, 2], name: b_torch_default, "
                     "init: {weight: torch_default, bias: torch_default}}")
    names.append("b_torch_default")
    inp = "[64]" if kind == "linear" else "[24, 3, 3]"
    return f"nnspec: 1\nname: {kind}_inits\ninput: {inp}\nlayers:\n" + "\n".join(items) + "\n", names


def _embedding_spec(init: str) -> str:
    return ("nnspec: 1\nname: embedding_init\ninput: {shape: [3], dtype: int64}\nlayers:\n"
            f"  - embedding: {{num: 300, dim: 40, name: emb, init: {{weight: {init}}}}}\n")


_CACHE: dict = {}


def built(kind: str, case: str | None = None):
    """(spec, {target: model}), built once per test session (several seconds of model construction saved)."""
    key = (kind, case)
    if key not in _CACHE:
        if kind == "embedding":
            init = {**{k: v[0] for k, v in WEIGHT_CASES.items()}, **STRUCTURE_CASES}[case]
            spec = spec_from_text(_embedding_spec(init), "embedding.yaml")
        else:
            spec = spec_from_text(_weight_layers(kind)[0], f"{kind}.yaml")
        _CACHE[key] = (spec, {"torch": nnspec.build(spec, "torch", seed=11),
                              "keras": nnspec.build(spec, "keras", seed=11)})
    return _CACHE[key]


def logical(kind: str, target: str, case: str | None, layer_name: str, role: str = "weight"):
    """(the tensor in the logical PyTorch layout as float64, the IR tensor)."""
    spec, models = built(kind, case)
    tensor = next(t for t in spec.graph.tensors() if t.layer.path == layer_name and t.role == role)
    if target == "torch":
        return torch_tensor(models["torch"], tensor).astype("float64"), tensor
    value = keras_tensor(models["keras"], tensor)
    return keras_to_torch(value, tensor.layer.kind).astype("float64"), tensor


def fans(shape: tuple) -> tuple[int, int]:
    """PyTorch's rule on the logical layout: fan_in = size(1) * rf, fan_out = size(0) * rf."""
    rf = math.prod(shape[2:])
    return shape[1] * rf, shape[0] * rf


def assert_ks(sample: np.ndarray, dist, what: str) -> None:
    result = stats.kstest(sample.ravel(), dist.cdf)
    assert result.pvalue > P_MIN, f"{what}: KS statistic {result.statistic:.4f}, p = {result.pvalue:.2e}"


TARGETS = ("torch", "keras")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("kind", ["linear", "conv2d"])
@pytest.mark.parametrize("case", list(WEIGHT_CASES))
def test_random_weight_distribution(kind, case, target):
    w, tensor = logical(kind, target, None, "w_" + case.replace(".", "_"))
    fi, fo = fans(w.shape)
    assert (fi, fo) == (tensor.fan_in, tensor.fan_out)
    assert fi != fo  # a swapped pair of fans would show
    assert_ks(w, WEIGHT_CASES[case][1](fi, fo), f"{target} {kind} {case} {w.shape}")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", EMBEDDING_CASES)
def test_random_embedding_distribution_uses_logical_fans(case, target):
    w, tensor = logical("embedding", target, case, "emb")
    assert w.shape == (300, 40)
    fi, fo = 40, 300  # the LOGICAL fans: fan_in = dim, fan_out = num
    assert (tensor.fan_in, tensor.fan_out) == (fi, fo)
    dist = (EMBEDDING_ONLY.get(case) or WEIGHT_CASES[case])[1](fi, fo)
    assert_ks(w, dist, f"{target} embedding {case}")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_torch_default_bias_bound_comes_from_the_weight_fan_in(kind, target):
    b, _ = logical(kind, target, None, "b_torch_default", "bias")
    w, _ = logical(kind, target, None, "b_torch_default", "weight")
    fi, _ = fans(w.shape)
    assert b.shape == (w.shape[0],)
    assert_ks(b, _uniform(1 / math.sqrt(fi)), f"{target} {kind} bias")
    assert_ks(w, _uniform(1 / math.sqrt(fi)), f"{target} {kind} weight")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("kind,case", [("linear", "orthogonal"), ("linear", "orthogonal_g2"),
                                       ("conv2d", "orthogonal"), ("conv2d", "orthogonal_g2"),
                                       ("embedding", "orthogonal"), ("embedding", "orthogonal_g2")])
def test_orthogonal_rows_or_columns_orthonormal_times_gain(kind, case, target):
    name = "emb" if kind == "embedding" else "w_" + case
    w, _ = logical(kind, target, case if kind == "embedding" else None, name)
    g = 2.0 if case.endswith("g2") else 1.0
    m = w.reshape(w.shape[0], -1)  # PyTorch's view: (size(0), rest)
    rows, cols = m.shape
    product = m @ m.T if rows <= cols else m.T @ m
    np.testing.assert_allclose(product, g * g * np.eye(min(rows, cols)), atol=2e-5)
    # and the entries are spread like a random orthogonal matrix (not, say, an identity)
    assert np.count_nonzero(np.abs(m) > 1e-3) > 0.9 * m.size


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("kind,case", [("linear", "sparse"), ("linear", "sparse_std"),
                                       ("embedding", "sparse"), ("embedding", "sparse_std")])
def test_sparse_zero_count_per_torch_column(kind, case, target):
    name = "emb" if kind == "embedding" else "w_" + case
    w, _ = logical(kind, target, case if kind == "embedding" else None, name)
    sparsity, std = (0.3, 0.01) if case == "sparse" else (0.75, 0.5)
    rows = w.shape[0]
    zeros_per_column = (w == 0).sum(axis=0)
    assert np.all(zeros_per_column == math.ceil(sparsity * rows)), zeros_per_column
    assert_ks(w[w != 0], stats.norm(0, std), f"{target} {kind} {case} non-zeros")


# -- the untruncated distributions must not be truncated --------------------------------------------

BIG = """
nnspec: 1
name: big
input: [256]
layers:
  - linear: {out: 1024, name: kn, init: {weight: {kaiming_normal: {nonlinearity: relu}}}}
  - linear: {out: 256, name: xn, init: {weight: {xavier_normal: 1.0}}}
  - linear: {out: 1024, name: vsn, init: {weight: {variance_scaling: {distribution: untruncated_normal}}}}
  - linear: {out: 256, name: hn, init: {weight: he_normal}}
"""


def test_untruncated_normals_are_not_truncated_on_keras():
    spec = spec_from_text(BIG, "big.yaml")
    model = nnspec.build(spec, "keras", seed=5)
    expected_std = {"kn": math.sqrt(2 / 256), "xn": math.sqrt(2 / (1024 + 256)), "vsn": math.sqrt(1 / 256)}
    for name, std in expected_std.items():
        layer = model.get_layer(name)
        init = layer.kernel_initializer
        assert type(init) is keras.initializers.VarianceScaling, (name, init)
        assert init.distribution == "untruncated_normal", (name, init.distribution)
        w = keras.ops.convert_to_numpy(layer.kernel).astype("float64").ravel()
        assert w.size >= 250_000
        # a truncated normal of the same std stops at 2/0.88 = 2.27 std; 262144 normal draws reach ~4.5 std
        assert np.abs(w).max() > 2.5 * std, f"{name}: max |w| {np.abs(w).max():.4f} <= 2.5 std: truncated"
        truncated = stats.truncnorm(-2, 2, scale=std / TRUNC_STD)
        assert stats.kstest(w, truncated.cdf).pvalue < 1e-10, f"{name}: indistinguishable from truncated"
        assert stats.kstest(w, stats.norm(0, std).cdf).pvalue > P_MIN, name
    # and the Keras-family normal IS truncated, at 2 std'
    w = keras.ops.convert_to_numpy(model.get_layer("hn").kernel).astype("float64")
    std = math.sqrt(2 / 1024) / TRUNC_STD
    assert np.abs(w).max() <= 2 * std * (1 + 1e-6)
    assert np.abs(w).max() > 1.9 * std


def test_keras_he_normal_would_fail_the_kaiming_normal_test():
    """The test above is sensitive: Keras's HeNormal (same std, truncated) is rejected by it."""
    std = math.sqrt(2 / 256)
    w = keras.ops.convert_to_numpy(keras.initializers.HeNormal(seed=1)((256, 1024))).astype("float64").ravel()
    assert np.isclose(w.std(), std, rtol=0.02)  # same std ...
    assert np.abs(w).max() < 2.5 * std  # ... but truncated
    assert stats.kstest(w, stats.norm(0, std).cdf).pvalue < 1e-10


# -- nnspec's own Keras initializer classes --------------------------------------------------------

def test_trunc_normal_class_cuts_at_absolute_bounds():
    init = keras_runtime.TruncNormal(mean=0.1, std=2.0, low=-0.5, high=0.25, seed=4)
    w = keras.ops.convert_to_numpy(init((200, 100))).astype("float64")
    assert w.min() >= -0.5 and w.max() <= 0.25
    assert_ks(w, stats.truncnorm(-0.3, 0.075, loc=0.1, scale=2.0), "TruncNormal")
    again = keras.ops.convert_to_numpy(keras_runtime.TruncNormal(**init.get_config())((200, 100)))
    assert np.array_equal(again, w.astype("float32"))


def test_torch_default_class_fan_in_from_keras_kernel_shape():
    for shape, fan_in in [((30, 7), 30), ((3, 3, 5, 8), 45), ((2, 4, 6), 8), ((1, 2, 3, 4, 9), 24)]:
        w = keras.ops.convert_to_numpy(keras_runtime.TorchDefault(seed=1)(shape))
        bound = 1 / math.sqrt(fan_in)
        assert np.abs(w).max() <= bound
        assert np.abs(w).max() > 0.9 * bound
    b = keras.ops.convert_to_numpy(keras_runtime.TorchDefault(fan_in=400, seed=2)((5000,)))
    assert_ks(b.astype("float64"), _uniform(1 / 20), "TorchDefault bias")


def test_values_class_refuses_a_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        keras_runtime.Values([[1.0, 2.0]])((2, 1))


# -- transposed convolutions: the weight [in, out/groups, *k], Keras kernel (*k, out/groups, in) ----------

TRANSPOSED = """
nnspec: 1
name: transposed
input: [32, 3, 3]
layers:
  - conv_transpose2d: {out: 96, kernel: [3, 5], name: plain}
  - conv_transpose2d: {out: 96, kernel: [3, 5], groups: 4, name: grouped, init: {weight: torch_default}}
  - conv_transpose2d: {out: 64, kernel: 3, groups: 2, name: he, init: {weight: he_normal, bias: zeros}}
  - conv_transpose2d: {out: 32, kernel: 3, name: vs,
                       init: {weight: {variance_scaling: {scale: 2, mode: fan_out, distribution: uniform}}}}
"""


@pytest.mark.parametrize("target", TARGETS)
def test_conv_transpose_distributions_use_pytorchs_fans(target):
    spec = spec_from_text(TRANSPOSED, "transposed.yaml")
    models = {"torch": nnspec.build(spec, "torch", seed=5), "keras": nnspec.build(spec, "keras", seed=5)}
    tensors = {(t.layer.path, t.role): t for t in spec.graph.tensors()}
    for (path, role), tensor in tensors.items():
        if target == "torch":
            value = torch_tensor(models["torch"], tensor).astype("float64")
        else:
            value = keras_to_torch(keras_tensor(models["keras"], tensor), "conv").astype("float64")
        if role == "weight":
            assert value.shape == tensor.shape
            assert fans(value.shape) == (tensor.fan_in, tensor.fan_out)
        fi, fo = tensor.fan_in, tensor.fan_out
        dist = {("plain", "weight"): _uniform(1 / math.sqrt(fi)), ("plain", "bias"): _uniform(1 / math.sqrt(fi)),
                ("grouped", "weight"): _uniform(1 / math.sqrt(fi)), ("grouped", "bias"): _uniform(1 / math.sqrt(fi)),
                ("he", "weight"): _vs(2.0, "fan_in", "truncated_normal")(fi, fo),
                ("vs", "weight"): _vs(2.0, "fan_out", "uniform")(fi, fo),
                ("vs", "bias"): _uniform(1 / math.sqrt(fi))}.get((path, role))
        if dist is None:
            assert not value.any(), (path, role)  # zeros
            continue
        assert_ks(value, dist, f"{target} {path}.{role} {value.shape}")
