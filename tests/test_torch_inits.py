"""Initializers on the PyTorch backend: exact values, exact distributions, seeding, and the promise
that every tensor is initialised exactly once, by its own initializer.

Expectations are computed here, from torch.nn.init itself or from the formulas of the reference
(shared/reference/initializers.md), never from nnspec's own distribution helper.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
stats = pytest.importorskip("scipy.stats")
from helpers import (
    ANY_ROLE,
    BIASES,
    CONV_WEIGHTS,
    MATRICES,
    assert_same_state,
    expected_state_key,
    initializer_specs,
    random_input,
    spec_from_text,
)
from torch import nn

import nnspec

KS_P = 1e-3
TRUNC_STD_CORRECTION = 0.87962566103423978  # std of N(0, 1) cut at +-2 (Keras)


def build(text: str, seed=0, **kwargs):
    spec = spec_from_text(text)
    return spec, nnspec.build(spec, "torch", seed=seed, **kwargs)


def tensor_of(spec, model, path: str) -> torch.Tensor:
    """The built value of the spec's tensor at `path` (e.g. `batchnorm_1.gamma`)."""
    role = path.rsplit(".", 1)[1]
    return model.state_dict()[expected_state_key(path, role)]


def fans(shape) -> tuple[int, int]:
    """PyTorch's rule: fan_in = size(1) * receptive field, fan_out = size(0) * receptive field."""
    field = math.prod(shape[2:])
    return shape[1] * field, shape[0] * field


def one_layer(item: str, input_: str = "[4]") -> str:
    return f"nnspec: 1\nname: m\ninput: {input_}\nlayers:\n  - {item}\n"


# -- deterministic initializers equal torch.nn.init ---------------------------------------

def torch_expectation(name: str, args: dict, shape: tuple, layer) -> torch.Tensor:
    """What torch.nn.init (or plain torch, for values and log_prior) gives for this tensor."""
    empty = torch.empty(shape)
    if name == "zeros":
        return nn.init.zeros_(empty)
    if name == "ones":
        return nn.init.ones_(empty)
    if name == "constant":
        return nn.init.constant_(empty, args["value"])
    if name == "eye":
        return nn.init.eye_(empty) * args["gain"]
    if name == "dirac":
        return nn.init.dirac_(empty, layer.args.get("groups", 1))
    if name == "values":
        return torch.tensor(args["values"], dtype=torch.float32)
    if name == "log_prior":
        counts = torch.tensor(args["counts"], dtype=torch.float64)
        return (counts / counts.sum()).log().float()
    raise AssertionError(name)


DETERMINISTIC = ["zeros", "ones", "constant", "eye", "dirac", "values", "log_prior"]
DETERMINISTIC_CASES = [(name, layout, text) for name in DETERMINISTIC for layout, text in initializer_specs(name)]


@pytest.mark.parametrize("name, layout, text", DETERMINISTIC_CASES, ids=[f"{n}-{la}" for n, la, _ in DETERMINISTIC_CASES])
def test_deterministic_initializer_equals_torch(name, layout, text):
    """On every role it is valid for (conv1d/2d/3d, linear, norms, embedding)."""
    spec, model = build(text, seed=9)
    chosen = [t for t in spec.graph.tensors() if t.origin == "layer"]
    assert chosen
    for t in chosen:
        expected = torch_expectation(name, t.init.args, t.shape, t.layer)
        assert torch.equal(tensor_of(spec, model, t.path), expected), t.path


EYE_CASES = [("linear: {out: 6, init: {weight: eye}}", "[6]", 1.0),
             ("linear: {out: 3, init: {weight: {eye: 2.5}}}", "[7]", 2.5),
             ("linear: {out: 7, init: {weight: {eye: {gain: 0.5}}}}", "[3]", 0.5),
             ("embedding: {num: 9, dim: 4, init: {weight: {eye: 3}}}", "{shape: [2], dtype: int64}", 3.0)]


@pytest.mark.parametrize("item, input_, gain", EYE_CASES)
def test_eye_with_gain(item, input_, gain):
    spec, model = build(one_layer(item + "\n  - linear: {out: 2}", input_))
    weight = model.state_dict()[spec.graph.root.items[0].name + ".weight"]
    assert torch.equal(weight, nn.init.eye_(torch.empty(weight.shape)) * gain)


DIRAC_CASES = [  # (conv item, input): in == out, in < out, in > out, with and without groups
    ("conv1d: {out: 8, kernel: 3, groups: 2}", "[4, 9]"),
    ("conv1d: {out: 3, kernel: 5, padding: 2}", "[6, 9]"),
    ("conv2d: {out: 4, kernel: 3, groups: 2}", "[8, 5, 5]"),
    ("conv2d: {out: 6, kernel: [3, 5], padding: same}", "[3, 5, 6]"),
    ("conv2d: {out: 12, kernel: 1, groups: 4}", "[8, 3, 3]"),
    ("conv3d: {out: 6, kernel: 3, groups: 3}", "[6, 4, 4, 4]"),
    ("conv3d: {out: 4, kernel: [1, 3, 3], groups: 2}", "[8, 3, 4, 4]"),
]


@pytest.mark.parametrize("item, input_", DIRAC_CASES)
def test_dirac_with_groups_equals_torch(item, input_):
    item = item[:-1] + ", init: {weight: dirac, bias: zeros}, allow: {NS209: not an identity on purpose}}"
    spec, model = build(one_layer(item, input_))
    layer = next(spec.graph.layers())
    weight = model.state_dict()[f"{layer.path}.weight"]
    assert torch.equal(weight, nn.init.dirac_(torch.empty(weight.shape), layer.args["groups"]))


IDENTITY_CASES = [
    ("conv1d: {out: 5, kernel: 5, padding: same}", "[5, 11]"),
    ("conv2d: {out: 6, kernel: 3, padding: 1, groups: 2}", "[6, 7, 6]"),
    ("conv2d: {out: 4, kernel: 3, padding: same, dilation: 2}", "[4, 8, 9]"),
    ("conv2d: {out: 3, kernel: [3, 5], padding: same}", "[3, 6, 7]"),
    ("conv3d: {out: 2, kernel: 3, padding: 1}", "[2, 4, 5, 3]"),
]


@pytest.mark.parametrize("item, input_", IDENTITY_CASES)
def test_dirac_conv_is_an_exact_identity(item, input_):
    item = item[:-1] + ", bias: false, init: {weight: dirac}}"
    spec, model = build(one_layer(item, input_))
    x = torch.randn((3, *spec.graph.input_shape), generator=torch.Generator().manual_seed(1))
    assert torch.equal(model(x), x)


def test_log_prior_softmax_is_the_class_frequencies():
    counts = [5, 1, 30, 64]
    _spec, model = build(one_layer(f"linear: {{out: 4, init: {{weight: zeros, bias: {{log_prior: {counts}}}}}}}",
                                  "[3]"))
    probs = torch.softmax(model(torch.randn(2, 3)), dim=-1)
    expected = torch.tensor(counts, dtype=torch.float32) / sum(counts)
    torch.testing.assert_close(probs, expected.expand(2, 4))


def test_values_on_a_conv_weight():
    values = [[[[float(i * 9 + j * 3 + k) for k in range(3)] for j in range(3)]] for i in range(2)]
    _spec, model = build(one_layer(f"conv2d: {{out: 2, kernel: 3, init: {{weight: {{values: {values}}}}}}}",
                                  "[1, 4, 4]"))
    assert torch.equal(model.state_dict()["conv2d_1.weight"], torch.tensor(values))


def test_torch_default_norm_and_bias_free_layers():
    text = """
        nnspec: 1
        name: m
        input: [6, 5]
        layers: [batchnorm, layernorm, {linear: {out: 3, bias: false}}]
        """
    _spec, model = build(text)
    state = model.state_dict()
    for key, fill in (("batchnorm_1.weight", 1.0), ("batchnorm_1.bias", 0.0), ("layernorm_1.weight", 1.0),
                      ("layernorm_1.bias", 0.0)):
        assert torch.equal(state[key], torch.full_like(state[key], fill)), key
    assert "linear_1.bias" not in state


# -- random initializers: Kolmogorov-Smirnov against the exact distribution ------------------

# Layers big enough for KS: (item, input, role). Fans differ in every direction so that a wrong mode,
# a missed `groups` or a transposed layout changes the distribution.
LIN = ("linear: {{out: 512, init: {{weight: {init}}}}}", "[128]", "weight")  # fans 128 / 512
CONV = ("conv2d: {{out: 96, kernel: [3, 5], init: {{weight: {init}}}}}", "[16, 8, 8]", "weight")  # 240 / 1440
GCONV = ("conv2d: {{out: 96, kernel: [3, 5], groups: 2, init: {{weight: {init}}}}}", "[32, 8, 8]", "weight")
CONV1 = ("conv1d: {{out: 192, kernel: 7, init: {{weight: {init}}}}}", "[20, 9]", "weight")  # 140 / 1344
CONV3 = ("conv3d: {{out: 48, kernel: [3, 3, 1], init: {{weight: {init}}}}}", "[54, 3, 3, 2]", "weight")
EMB = ("embedding: {{num: 512, dim: 128, init: {{weight: {init}}}}}", "{shape: [3], dtype: int64}", "weight")
# [in, out/groups, *k] = [32, 48, 3, 5]: fans 720 / 480 by PyTorch's rule on that layout
TCONV = ("conv_transpose2d: {{out: 96, kernel: [3, 5], groups: 2, init: {{weight: {init}}}}}", "[32, 4, 4]", "weight")
TCONV_BIAS = ("conv_transpose2d: {{out: 4096, kernel: [3, 5], groups: 2, init: {{bias: {init}}}}}", "[4, 2, 2]",
              "bias")
BIAS = ("linear: {{out: 4096, init: {{bias: {init}}}}}", "[16]", "bias")
GAMMA = ("batchnorm: {{init: {{gamma: {init}}}}}", "[4096]", "gamma")
BETA = ("layernorm: {{init: {{beta: {init}}}}}", "[4096]", "beta")


def sample(layout, init: str, seed: int = 0):
    """(values as float64 numpy, shape) of the tensor that `init` fills in `layout`."""
    item, input_, role = layout
    spec, model = build(one_layer(item.format(init=init), input_), seed=seed)
    layer = next(spec.graph.layers())
    value = tensor_of(spec, model, f"{layer.path}.{role}")
    return value.double().flatten().numpy(), tuple(value.shape)


def uniform(low, high):
    return stats.uniform(loc=low, scale=high - low)


def variance_scaling(scale, mode, distribution, shape):
    fan_in, fan_out = fans(shape)
    n = max(1.0, {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode])
    if distribution == "uniform":
        limit = math.sqrt(3 * scale / n)
        return uniform(-limit, limit)
    if distribution == "untruncated_normal":
        return stats.norm(0, math.sqrt(scale / n))
    std = math.sqrt(scale / n) / TRUNC_STD_CORRECTION
    return stats.truncnorm(-2, 2, loc=0, scale=std)


def xavier(kind, gain):
    def dist(shape):
        fan_in, fan_out = fans(shape)
        if kind == "uniform":
            bound = gain * math.sqrt(6 / (fan_in + fan_out))
            return uniform(-bound, bound)
        return stats.norm(0, gain * math.sqrt(2 / (fan_in + fan_out)))

    return dist


def kaiming(kind, mode, nonlinearity, a=0.0):
    def dist(shape):
        fan = fans(shape)[0 if mode == "fan_in" else 1]
        gain = nn.init.calculate_gain(nonlinearity, a)
        if kind == "uniform":
            bound = gain * math.sqrt(3 / fan)
            return uniform(-bound, bound)
        return stats.norm(0, gain / math.sqrt(fan))  # untruncated

    return dist


def vs(scale, mode, distribution):
    return lambda shape: variance_scaling(scale, mode, distribution, shape)


def trunc(mean, std, low, high):
    return stats.truncnorm((low - mean) / std, (high - mean) / std, loc=mean, scale=std)


def default_weight(shape):
    bound = 1 / math.sqrt(fans(shape)[0])
    return uniform(-bound, bound)


RANDOM_CASES = [
    # (id, layout, init text, shape -> scipy distribution)
    ("uniform-weight", LIN, "{uniform: {low: -0.3, high: 0.7}}", lambda s: uniform(-0.3, 0.7)),
    ("uniform-bias", BIAS, "{uniform: {low: -2, high: -1}}", lambda s: uniform(-2, -1)),
    ("uniform-gamma", GAMMA, "{uniform: {low: 0.5, high: 1.5}}", lambda s: uniform(0.5, 1.5)),
    ("normal-weight", LIN, "{normal: {mean: 0.5, std: 2}}", lambda s: stats.norm(0.5, 2)),
    ("normal-beta", BETA, "{normal: {std: 0.1}}", lambda s: stats.norm(0, 0.1)),
    ("normal-conv", CONV, "{normal: {mean: -1, std: 0.01}}", lambda s: stats.norm(-1, 0.01)),
    ("trunc_normal-cut", LIN, "{trunc_normal: {mean: 0.2, std: 1, low: -0.5, high: 1.5}}", lambda s: trunc(0.2, 1, -0.5, 1.5)),
    ("trunc_normal-narrow", CONV, "{trunc_normal: {std: 1, low: -0.2, high: 0.2}}", lambda s: trunc(0, 1, -0.2, 0.2)),
    ("trunc_normal-absolute", LIN, "{trunc_normal: {std: 0.02}}", lambda s: trunc(0, 0.02, -2, 2)),
    ("trunc_normal-gamma", GAMMA, "{trunc_normal: {mean: 1, std: 0.5, low: 0, high: 2}}", lambda s: trunc(1, 0.5, 0, 2)),
    ("xavier_uniform", LIN, "xavier_uniform", xavier("uniform", 1.0)),
    ("xavier_uniform-gain-conv", CONV, "{xavier_uniform: 2.0}", xavier("uniform", 2.0)),
    ("xavier_uniform-conv3d", CONV3, "{xavier_uniform: {gain: 0.5}}", xavier("uniform", 0.5)),
    ("xavier_normal-gain", LIN, "{xavier_normal: 0.5}", xavier("normal", 0.5)),
    ("xavier_normal-embedding", EMB, "xavier_normal", xavier("normal", 1.0)),
    ("kaiming_uniform-default", LIN, "kaiming_uniform", kaiming("uniform", "fan_in", "leaky_relu")),
    ("kaiming_uniform-fan_out-relu", CONV, "{kaiming_uniform: {mode: fan_out, nonlinearity: relu}}",
     kaiming("uniform", "fan_out", "relu")),
    ("kaiming_uniform-groups-leaky", GCONV, "{kaiming_uniform: {a: 0.2}}", kaiming("uniform", "fan_in", "leaky_relu", 0.2)),
    ("kaiming_uniform-tanh-embedding", EMB, "{kaiming_uniform: {mode: fan_out, nonlinearity: tanh}}",
     kaiming("uniform", "fan_out", "tanh")),
    ("kaiming_normal-relu", LIN, "{kaiming_normal: {nonlinearity: relu}}", kaiming("normal", "fan_in", "relu")),
    ("kaiming_normal-fan_out-leaky", CONV, "{kaiming_normal: {mode: fan_out, a: 0.3}}",
     kaiming("normal", "fan_out", "leaky_relu", 0.3)),
    ("kaiming_normal-selu-groups", GCONV, "{kaiming_normal: {nonlinearity: selu}}", kaiming("normal", "fan_in", "selu")),
    ("kaiming_normal-linear-conv1d", CONV1, "{kaiming_normal: {mode: fan_out, nonlinearity: linear}}",
     kaiming("normal", "fan_out", "linear")),
    ("kaiming_normal-sigmoid-embedding", EMB, "{kaiming_normal: {nonlinearity: sigmoid}}",
     kaiming("normal", "fan_in", "sigmoid")),
    *[(f"variance_scaling-{d}-{m}", LIN, f"{{variance_scaling: {{scale: 1.5, mode: {m}, distribution: {d}}}}}",
       vs(1.5, m, d)) for d in ("truncated_normal", "untruncated_normal", "uniform")
      for m in ("fan_in", "fan_out", "fan_avg")],
    ("variance_scaling-default-conv", CONV, "variance_scaling", vs(1.0, "fan_in", "truncated_normal")),
    ("variance_scaling-groups", GCONV, "{variance_scaling: {scale: 2, mode: fan_avg, distribution: uniform}}",
     vs(2.0, "fan_avg", "uniform")),
    ("glorot_uniform", LIN, "glorot_uniform", vs(1.0, "fan_avg", "uniform")),
    ("glorot_normal", CONV, "glorot_normal", vs(1.0, "fan_avg", "truncated_normal")),
    ("he_uniform", CONV, "he_uniform", vs(2.0, "fan_in", "uniform")),
    ("he_normal", LIN, "he_normal", vs(2.0, "fan_in", "truncated_normal")),
    ("he_normal-conv1d", CONV1, "he_normal", vs(2.0, "fan_in", "truncated_normal")),
    ("lecun_uniform", EMB, "lecun_uniform", vs(1.0, "fan_in", "uniform")),
    ("lecun_normal", GCONV, "lecun_normal", vs(1.0, "fan_in", "truncated_normal")),
    ("torch_default-linear", LIN, "torch_default", default_weight),
    ("torch_default-conv", CONV, "torch_default", default_weight),
    ("torch_default-groups", GCONV, "torch_default", default_weight),
    ("torch_default-conv3d", CONV3, "torch_default", default_weight),
    ("torch_default-embedding", EMB, "torch_default", lambda s: stats.norm(0, 1)),
    ("torch_default-linear-bias", BIAS, "torch_default", lambda s: uniform(-1 / math.sqrt(16), 1 / math.sqrt(16))),
    ("torch_default-conv_transpose", TCONV, "torch_default", default_weight),
    # fan_in of the weight [4, 2048, 3, 5] is 2048 * 15
    ("torch_default-conv_transpose-bias", TCONV_BIAS, "torch_default",
     lambda s: uniform(-1 / math.sqrt(2048 * 15), 1 / math.sqrt(2048 * 15))),
    ("kaiming_normal-fan_out-conv_transpose", TCONV, "{kaiming_normal: {mode: fan_out, nonlinearity: relu}}",
     kaiming("normal", "fan_out", "relu")),
    ("he_uniform-conv_transpose", TCONV, "he_uniform", vs(2.0, "fan_in", "uniform")),
]


@pytest.mark.parametrize("layout, init, dist", [c[1:] for c in RANDOM_CASES], ids=[c[0] for c in RANDOM_CASES])
def test_random_initializer_distribution(layout, init, dist):
    values, shape = sample(layout, init)
    assert values.size >= 4096
    result = stats.kstest(values, dist(shape).cdf)
    assert result.pvalue > KS_P, f"KS statistic {result.statistic:.4g}, p = {result.pvalue:.3g}"


def test_ks_tells_the_modes_apart():
    """The layouts above are sensitive: fan_in and fan_out differ, so the wrong mode fails KS."""
    values, shape = sample(LIN, "{kaiming_normal: {mode: fan_out}}")
    assert stats.kstest(values, kaiming("normal", "fan_in", "leaky_relu")(shape).cdf).pvalue < KS_P
    values, shape = sample(GCONV, "torch_default")
    fan_in_ignoring_groups = 2 * fans(shape)[0]
    bound = 1 / math.sqrt(fan_in_ignoring_groups)
    assert stats.kstest(values, uniform(-bound, bound).cdf).pvalue < KS_P


def test_torch_default_bias_bound_uses_the_weights_fan_in():
    """Conv bias: U(+-1/sqrt(fan_in of the weight)), groups and kernel included (fan_in = 4 * 3 = 12)."""
    text = one_layer("conv1d: {out: 2048, kernel: 3, groups: 2}", "[8, 5]")
    _spec, model = build(text)
    bias = model.state_dict()["conv1d_1.bias"].double().numpy()
    bound = 1 / math.sqrt(12)
    assert stats.kstest(bias, uniform(-bound, bound).cdf).pvalue > KS_P


TORCH_MODULES = [
    ("linear: {out: 512}", "[128]", lambda: nn.Linear(128, 512)),
    ("linear: {out: 4096}", "[16]", lambda: nn.Linear(16, 4096)),
    ("conv2d: {out: 96, kernel: [3, 5], groups: 2}", "[32, 8, 8]", lambda: nn.Conv2d(32, 96, (3, 5), groups=2)),
    ("conv1d: {out: 1024, kernel: 3}", "[8, 5]", lambda: nn.Conv1d(8, 1024, 3)),
    ("embedding: {num: 512, dim: 128}", "{shape: [3], dtype: int64}", lambda: nn.Embedding(512, 128)),
    ("conv_transpose2d: {out: 96, kernel: [3, 5], groups: 2}", "[32, 4, 4]",
     lambda: nn.ConvTranspose2d(32, 96, (3, 5), groups=2)),
    ("conv_transpose1d: {out: 1024, kernel: 3, stride: 2}", "[8, 5]", lambda: nn.ConvTranspose1d(8, 1024, 3, stride=2)),
    ("prelu: {per_channel: true}", "[64, 2]", lambda: nn.PReLU(64)),
]


@pytest.mark.parametrize("item, input_, make", TORCH_MODULES, ids=[m[0].split(":")[0] + m[1] for m in TORCH_MODULES])
def test_torch_default_matches_pytorch_modules(item, input_, make):
    """Two-sample KS against what PyTorch's own module does in reset_parameters."""
    _spec, model = build(one_layer(item, input_), seed=3)
    torch.manual_seed(3)
    reference = make()
    ours = {name.rsplit(".", 1)[1]: p for name, p in model.named_parameters()}
    theirs = dict(reference.named_parameters())
    assert set(ours) == set(theirs)
    for role, value in ours.items():
        result = stats.ks_2samp(value.detach().flatten().numpy(), theirs[role].detach().flatten().numpy())
        assert result.pvalue > KS_P, (role, result)


@pytest.mark.parametrize("item, input_, gain", [
    ("linear: {out: 200, init: {weight: {orthogonal: 2}}}", "[50]", 2.0),  # tall: W^T W = g^2 I
    ("linear: {out: 40, init: {weight: orthogonal}}", "[90]", 1.0),  # wide: W W^T = g^2 I
    ("conv2d: {out: 24, kernel: 3, init: {weight: {orthogonal: {gain: 0.5}}}}", "[5, 4, 4]", 0.5),  # 24 x 45
    ("conv1d: {out: 30, kernel: 2, init: {weight: {orthogonal: 3}}}", "[4, 4]", 3.0),  # 30 x 8
    ("embedding: {num: 64, dim: 16, init: {weight: {orthogonal: 1.5}}}", "{shape: [2], dtype: int64}", 1.5),
])
def test_orthogonal(item, input_, gain):
    spec, model = build(one_layer(item, input_))
    weight = next(iter(model.parameters())).detach().double()
    flat = weight.reshape(weight.shape[0], -1)
    rows, cols = flat.shape
    gram = flat @ flat.T if rows <= cols else flat.T @ flat
    torch.testing.assert_close(gram, gain**2 * torch.eye(min(rows, cols), dtype=torch.float64), atol=1e-4 * gain**2,
                               rtol=0)
    other = nnspec.build(spec, "torch", seed=1)
    assert not torch.equal(next(iter(other.parameters())), next(iter(model.parameters())))


@pytest.mark.parametrize("item, input_, sparsity, std", [
    ("linear: {out: 300, init: {weight: {sparse: {sparsity: 0.3, std: 0.05}}}}", "[64]", 0.3, 0.05),
    ("linear: {out: 7, init: {weight: {sparse: 0.5}}}", "[40]", 0.5, 0.01),
    ("embedding: {num: 101, dim: 48, init: {weight: {sparse: 0.9}}}", "{shape: [2], dtype: int64}", 0.9, 0.01),
])
def test_sparse(item, input_, sparsity, std):
    spec, model = build(one_layer(item, input_), seed=4)
    weight = next(iter(model.parameters())).detach()
    rows, cols = weight.shape
    zeros_per_column = (weight == 0).sum(dim=0)
    assert torch.equal(zeros_per_column, torch.full((cols,), math.ceil(sparsity * rows)))
    nonzero = weight[weight != 0].double().numpy()
    if nonzero.size >= 1000:
        assert stats.kstest(nonzero, stats.norm(0, std).cdf).pvalue > KS_P
    again = nnspec.build(spec, "torch", seed=4)
    assert torch.equal(next(iter(again.parameters())), weight), "sparse must repeat under a seed"


# -- seeding ------------------------------------------------------------------------------

SEEDED = """
nnspec: 1
name: seeded
input: [3, 8, 8]
{seed}
layers:
  - conv2d: {{out: 4, kernel: 3, name: stem}}
  - batchnorm: {{init: {{gamma: {{normal: {{mean: 1, std: 0.1}}}}}}}}
  - relu
  - flatten
  - linear: {{out: 5, name: head, init: {{weight: {{sparse: 0.5}}, bias: {{uniform: {{low: -1, high: 1}}}}}}}}
{extra}"""


def seeded(seed_line="", extra=""):
    return SEEDED.format(seed=seed_line, extra=extra)


def state(text, seed=None):
    spec = spec_from_text(text)
    return {k: v for k, v in nnspec.build(spec, "torch", seed=seed).state_dict().items()}


def random_keys(values: dict) -> list:
    return [k for k in values if not k.startswith("batchnorm_1.") or k.endswith("weight")]


def test_same_seed_same_weights():
    a, b = state(seeded(), seed=7), state(seeded(), seed=7)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_different_seeds_differ():
    a, b = state(seeded(), seed=7), state(seeded(), seed=8)
    for key in random_keys(a):
        assert not torch.equal(a[key], b[key]), key


def test_spec_seed_is_the_default_and_the_argument_overrides_it():
    text = seeded("seed: 21")
    default, explicit, other = state(text), state(text, seed=21), state(text, seed=22)
    for key in random_keys(default):
        assert torch.equal(default[key], explicit[key]), key
        assert not torch.equal(default[key], other[key]), key


def test_no_seed_anywhere_is_random():
    a, b = state(seeded()), state(seeded())
    assert any(not torch.equal(a[k], b[k]) for k in random_keys(a))


def test_values_do_not_depend_on_construction_order():
    """Adding a layer at the end, or a named one in front, leaves every existing tensor's value alone."""
    base = state(seeded(), seed=3)
    longer = state(seeded(extra="  - relu\n  - linear: {out: 2, name: extra}\n"), seed=3)
    prefixed_text = seeded().replace("layers:\n", "layers:\n  - identity: {name: first}\n"
                                                  "  - layernorm: {name: norm_in}\n")
    prefixed = state(prefixed_text, seed=3)
    for key in base:
        assert torch.equal(base[key], longer[key]), key
        assert torch.equal(base[key], prefixed[key]), key
    assert "extra.weight" in longer and "norm_in.weight" in prefixed


# -- every tensor initialised exactly once ---------------------------------------------------

INIT_FUNCTIONS = ["uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                  "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_"]


def _skipping_default_init() -> bool:
    """Whether nnspec's construction mode is active: torch.nn.init's functions then draw nothing."""
    from torch.overrides import _get_current_function_mode_stack

    from nnspec.compiler.backends.torch_runtime import SkipDefaultInit

    return any(isinstance(mode, SkipDefaultInit) for mode in _get_current_function_mode_stack())


@pytest.fixture
def init_calls(monkeypatch):
    """Every call of a public torch.nn.init function: (name, tensor, draws nothing: on meta, or
    under nnspec's construction mode, which skips the modules' default initialisation)."""
    calls = []
    for name in INIT_FUNCTIONS:
        original = getattr(nn.init, name)

        def wrapper(tensor, *args, _name=name, _original=original, **kwargs):
            calls.append((_name, tensor, tensor.is_meta or _skipping_default_init()))
            return _original(tensor, *args, **kwargs)

        monkeypatch.setattr(nn.init, name, wrapper)
    return calls


EXPLICIT = """
nnspec: 1
name: explicit
input: [3, 6, 6]
layers:
  - conv2d: {out: 4, kernel: 3, init: {weight: {kaiming_normal: {nonlinearity: relu}}, bias: zeros}}
  - batchnorm: {init: {gamma: ones, beta: {constant: 0.1}}}
  - relu
  - conv2d: {out: 4, kernel: 3, padding: 1, init: {weight: dirac, bias: {normal: {std: 0.1}}}}
  - flatten
  - layernorm: {init: {gamma: {uniform: {low: 0.9, high: 1.1}}, beta: zeros}}
  - linear: {out: 8, init: {weight: {orthogonal: 1.4}, bias: {trunc_normal: {std: 0.1}}}}
  - tanh
  - linear: {out: 8, init: {weight: {eye: 1}, bias: zeros}}
  - linear: {out: 3, init: {weight: {xavier_uniform: 1}, bias: {constant: -0.5}}}
"""


def test_every_tensor_is_initialised_once_and_never_by_default(init_calls, monkeypatch):
    """Each parameter goes through the spec's initializer exactly once; torch.nn.init functions only
    ever fill blocks of the tensors' streams (1-D, at most 2**16 elements), never a whole parameter."""
    from nnspec.compiler.backends import torch_runtime

    original, initialised = torch_runtime.init_tensor_, []

    def spy(tensor, *args, **kwargs):
        initialised.append(tensor.data_ptr())
        return original(tensor, *args, **kwargs)

    monkeypatch.setattr(torch_runtime, "init_tensor_", spy)
    spec = spec_from_text(EXPLICIT)
    model = nnspec.build(spec, "torch", seed=0)
    real = [(name, t) for name, t, meta in init_calls if not meta]
    assert real, "the streams draw with torch.nn.init"
    assert all(t.dim() == 1 and t.numel() <= 2**16 for _, t in real), [(n, t.shape) for n, t in real]
    assert not [name for name, t in real for p in model.parameters() if t is p], "torch.nn.init got a parameter"
    for key, param in model.named_parameters():
        assert initialised.count(param.data_ptr()) == 1, key


@pytest.mark.parametrize("device", ["meta", torch.device("meta")], ids=["str", "torch.device"])
def test_meta_device_initialises_nothing(init_calls, device):
    spec = spec_from_text(EXPLICIT)
    model = nnspec.build(spec, "torch", seed=0, device=device)
    assert all(p.is_meta for p in model.parameters())
    assert all(b.is_meta for b in model.buffers())
    assert not [call for call in init_calls if not call[2]]
    assert [k for k, _ in model.named_parameters()] == [expected_state_key(t.path, t.role)
                                                         for t in spec.graph.tensors()]


SEQUENCE = """
nnspec: 1
name: sequence
input: {shape: [6], dtype: int64}
layers:
  - embedding: {num: 11, dim: 8}
  - position_embedding: {length: 10}
  - residual:
      branch: [layernorm, {attention: {heads: 2, causal: true}}]
  - rmsnorm
  - prelu: {per_channel: true}
  - linear: {out: 11, init: {weight: {trunc_normal: {std: 0.02}}}}
"""


@pytest.mark.parametrize("text", [EXPLICIT, SEQUENCE], ids=["explicit", "sequence"])
def test_building_draws_nothing_from_the_global_generator(text):
    """The modules are constructed without their default initialisation (which draws from torch's
    global generator); every value comes from the tensors' own streams."""
    spec = spec_from_text(text)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    model = nnspec.build(spec, "torch", seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    again = nnspec.build(spec, "torch", seed=0)
    assert_same_state(again.state_dict(), model.state_dict())


def test_build_inside_a_device_mode_builds_on_the_asked_device():
    spec = spec_from_text(SEQUENCE)
    plain = nnspec.build(spec, "torch", seed=0)
    with torch.device("meta"):
        inside = nnspec.build(spec, "torch", seed=0)
    assert all(p.device.type == "cpu" for p in inside.parameters())
    assert_same_state(inside.state_dict(), plain.state_dict())


def test_skip_default_init_only_while_active():
    from nnspec.compiler.backends.torch_runtime import SkipDefaultInit

    torch.manual_seed(5)
    state = torch.get_rng_state()
    with SkipDefaultInit():
        attention = nn.MultiheadAttention(8, 2)
        table = nn.Embedding(4, 3)
        noise = torch.randn(3, 2)
    assert torch.equal(torch.get_rng_state(), state)
    assert noise.shape == (3, 2)
    assert attention.in_proj_weight.shape == (24, 8)
    assert table.weight.shape == (4, 3)
    nn.Linear(3, 2)  # outside the mode the defaults draw again
    assert not torch.equal(torch.get_rng_state(), state)


@pytest.fixture
def garbage_memory(monkeypatch):
    """Fill every tensor of the model with NaN just before nnspec initialises it (the modules are
    constructed without their default initialisation), so that anything left uninitialised shows."""
    from nnspec.compiler.backends import torch_runtime

    original = torch_runtime.initialize_

    def initialize_(model, *args, **kwargs):
        with torch.no_grad():
            for tensor in list(model.parameters()) + list(model.buffers()):
                tensor.fill_(float("nan") if tensor.is_floating_point() else 12345)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(torch_runtime, "initialize_", initialize_)


FILL_CASES = [(name, layout, text)
              for name in sorted(ANY_ROLE | BIASES | CONV_WEIGHTS | MATRICES | {"orthogonal", "he_normal"})
              for layout, text in initializer_specs(name)[:1]]


@pytest.mark.parametrize("name, layout, text", FILL_CASES, ids=[f"{n}-{la}" for n, la, _ in FILL_CASES])
def test_nothing_is_left_uninitialised(garbage_memory, name, layout, text):
    _spec, model = build(text, seed=1)
    for key, value in model.state_dict().items():
        assert not value.isnan().any(), f"{key} was never initialised"
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            assert torch.equal(module.running_mean, torch.zeros_like(module.running_mean))
            assert torch.equal(module.running_var, torch.ones_like(module.running_var))
            assert module.num_batches_tracked.item() == 0


def test_batchnorm_statistics_after_build():
    spec, model = build(seeded(), seed=0)
    bn = model.batchnorm_1
    assert torch.equal(bn.running_mean, torch.zeros(4))
    assert torch.equal(bn.running_var, torch.ones(4))
    assert bn.num_batches_tracked.item() == 0
    model.train()
    model(random_input(spec, batch=4))
    assert bn.num_batches_tracked.item() == 1
