"""The spec models and lowering: strict scalars, where diagnostics point, every kind's shapes, names, inits."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import nnspec
from nnspec.compiler.pipeline import analyse_text
from nnspec.vocabulary.kinds import KINDS

ROOT = Path(__file__).parent.parent


def spec_text(layers: str, input_: str = "[16]", extra: str = "") -> str:
    return f"nnspec: 1\nname: m\ninput: {input_}\n{extra}layers:\n{layers}"


def diags(text: str) -> list:
    return analyse_text(text, "<t>")[1]


def found(text: str) -> list[tuple[str, int, int]]:
    return [(d.code, d.line, d.column) for d in diags(text)]


# -- strict scalars ----------------------------------------------------------------------------------


@pytest.mark.parametrize("item, column", [
    ("linear: {out: '16'}", 19),          # numeric string
    ("linear: {out: \"16\"}", 19),
    ("linear: {out: true}", 19),          # boolean for an integer
    ("linear: {out: 16.0}", 19),          # float for an integer
    ("linear: {out: 0}", 19),             # out of range
    ("linear: {out: -3}", 19),
    ("linear: {out: 4, bias: 1}", 28),    # integer for a boolean
    ("linear: {out: 4, bias: 'true'}", 28),
    ("linear: {out: 4, bias: yes}", 28),  # YAML 1.2: `yes` is a string
    ("dropout: {p: '0.5'}", 18),
    ("dropout: {p: true}", 18),
    ("dropout: {p: 1.0}", 18),            # p must be below 1
    ("dropout: {p: .inf}", 18),
    ("dropout: {p: .nan}", 18),
    ("layernorm: {eps: -.inf}", 22),
    ("layernorm: {eps: 0}", 22),
    ("leaky_relu: {slope: 1e999}", 25),   # overflows to inf
    ("softmax: {axis: 1.5}", 21),
    ("softmax: {axis: 1}", 21),           # out of range for a 1-D input
    ("gelu: {approximate: fast}", 25),
])
def test_strict_scalars_are_ns004(item, column):
    assert found(spec_text(f"  - {item}\n")) == [("NS004", 5, column)]


def test_integers_are_accepted_where_floats_are_expected():
    spec = nnspec.loads(spec_text("  - dropout: {p: 0}\n  - leaky_relu: {slope: 1}\n"))
    assert [layer.args for layer in spec.graph.layers()] == [{"p": 0.0}, {"slope": 1.0}]


@pytest.mark.parametrize("init, code, at", [
    ("{constant: '0.1'}", "NS004", "'0.1'"),
    ("{constant: true}", "NS004", "true"),
    ("{constant: .inf}", "NS004", ".inf"),
    ("{normal: {std: .nan}}", "NS004", ".nan"),
    ("{uniform: {low: -.inf, high: 1}}", "NS004", "-.inf"),
    ("{xavier_uniform: {gain: '2'}}", "NS004", "'2'"),
    ("{normal: {std: 1, mean: yes}}", "NS004", "yes"),
    ("{values: [[1, 2]], extra: 1}", "NS004", "{values"),  # an initializer is a one-key mapping
])
def test_initializer_arguments_are_strict(init, code, at):
    line = f"  - linear: {{out: 2, init: {{weight: {init}}}}}"
    got = found(spec_text(line + "\n"))
    assert [(c, n) for c, n, _ in got] == [(code, 5)]
    assert line[got[0][2] - 1:].startswith(at)


def test_values_must_be_finite_numbers():
    got = diags(spec_text("  - linear: {out: 2, init: {weight: {values: [[1, .inf], [0, 1]]}}}\n", "[2]"))
    assert [d.code for d in got] == ["NS211"]


# -- where diagnostics point, and did-you-mean -------------------------------------------------------


def test_ns003_points_at_the_key_with_a_hint():
    got = diags(spec_text("  - conv1d:\n      out: 4\n      kernel: 3\n      dilaton: 2\n", "[2, 16]"))
    assert [(d.code, d.line, d.column, d.end_column) for d in got] == [("NS003", 8, 7, 14)]
    assert "did you mean `dilation`?" in got[0].hint


@pytest.mark.parametrize("text, hint", [
    (spec_text("  - linear: {out: 4}\n", extra="seeed: 1\n"), "did you mean `seed`?"),
    (spec_text("  - relu\n", input_="{shape: [3], dtyp: int64}"), "did you mean `dtype`?"),
    (spec_text("  - relu\n", extra="blocks:\n  b:\n    layers: [relu]\n    arg: {}\n"), "did you mean `args`?"),
    (spec_text("  - linear: {out: 4, init: {wieght: zeros}}\n"), "did you mean `weight`?"),
    (spec_text("  - linear: {out: 4, init: {weight: {normal: {std: 1, maen: 1}}}}\n"), "did you mean `mean`?"),
    (spec_text("  - linear: {out: 4}\n", extra="init:\n  linaer: {weight: zeros}\n"), "did you mean `linear`?"),
    (spec_text("  - residual: {branch: [relu], shortcu: [relu]}\n"), "did you mean `shortcut`?"),
])
def test_ns003_did_you_mean_everywhere(text, hint):
    got = diags(text)
    assert [d.code for d in got] == ["NS003"]
    assert hint in got[0].hint


@pytest.mark.parametrize("item, hint", [
    ("lienar: {out: 4}", "did you mean `linear`?"),
    ("rleu", "did you mean `relu`?"),
    ("residul: [relu]", "did you mean `residual`?"),
    ("linear: {out: 4, init: {weight: kaiming_unifrom}}", "did you mean `kaiming_uniform`?"),
    ("linear: {out: 4, init: {weight: {xavier_normall: 2}}}", "did you mean `xavier_normal`?"),
])
def test_ns008_did_you_mean(item, hint):
    got = diags(spec_text(f"  - {item}\n"))
    assert [d.code for d in got] == ["NS008"]
    assert hint in got[0].hint


def test_ns008_suggests_a_block_name():
    got = diags(spec_text("  - mlp_blok\n", extra="blocks:\n  mlp_block:\n    layers: [relu]\n"))
    assert [d.code for d in got] == ["NS008"]
    assert "did you mean `mlp_block`?" in got[0].hint


@pytest.mark.parametrize("layers, position", [
    ("  - linear: {bias: false}\n", (5, 5)),
    ("  - linear\n", (5, 5)),
    ("  - relu\n  - conv1d:\n      out: 3\n", (6, 5)),
    ("  - embedding: {num: 10}\n", (5, 5)),
])
def test_ns009_points_at_the_item(layers, position):
    got = diags(spec_text(layers, "[2, 8]"))
    assert [(d.code, d.line, d.column) for d in got] == [("NS009", *position)]


def test_ns009_for_initializer_arguments_points_at_the_initializer():
    got = diags(spec_text("  - linear:\n      out: 4\n      init:\n        weight:\n          normal: {mean: 0}\n"))
    assert [(d.code, d.line, d.column) for d in got] == [("NS009", 9, 11)]
    assert "`std`" in got[0].message


def test_missing_top_level_keys():
    got = diags("nnspec: 1\nlayers:\n  - relu\n")
    assert sorted((d.code, d.line, d.column) for d in got) == [("NS009", 1, 1), ("NS009", 1, 1)]
    assert sorted(d.message.split("`")[1] for d in got) == ["input", "name"]


def test_union_errors_name_only_the_relevant_form():
    got = diags(spec_text("  - relu\n", input_="[16, 0]"))
    assert [(d.code, d.line, d.column) for d in got] == [("NS004", 3, 13)]
    got = diags(spec_text("  - relu\n", input_="{shape: [16], dtype: float16}"))
    assert [(d.code, d.line, d.column) for d in got] == [("NS004", 3, 29)]
    assert "'float32' or 'int64'" in got[0].message
    got = diags(spec_text("  - relu\n", input_="[1, 2, 3, 4, 5]"))
    assert [(d.code, d.line) for d in got] == [("NS004", 3)]
    assert "at most 4" in got[0].message


@pytest.mark.parametrize("item", ["5", "null", "[relu]", "{}", "{linear: {out: 3}, relu: null}", "linear: 5",
                                  "residual: 5", "linear: {out: 4, init: 5}", "linear: {out: 4, allow: [NS201]}",
                                  "relu: {repeat: 0}", "relu: {repeat: true}", "relu: {name: 5}"])
def test_malformed_items_are_located(item):
    got = diags(spec_text(f"  - relu\n  - {item}\n"))
    assert got and all(d.line == 6 and d.is_error for d in got), [d.concise() for d in got]


# -- every layer kind, with shapes computed by hand ---------------------------------------------------


def conv_size(length: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """PyTorch's output size: floor((L + 2p - d(k-1) - 1) / s) + 1."""
    return math.floor((length + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1


KIND_CASES = {
    "linear": ("[12]", "{out: 5}", (5,)),
    "conv1d": ("[3, 20]", "{out: 8, kernel: 5, stride: 2, padding: 1}", (8, conv_size(20, 5, 2, 1))),
    "conv2d": ("[3, 17, 9]", "{out: 4, kernel: [3, 2], stride: [2, 1], padding: [1, 0], dilation: 1}",
               (4, conv_size(17, 3, 2, 1), conv_size(9, 2, 1, 0))),
    "conv3d": ("[2, 6, 7, 8]", "{out: 4, kernel: 3, padding: same}", (4, 6, 7, 8)),
    "batchnorm": ("[6, 5, 5]", "{eps: 0.001, momentum: 0.01}", (6, 5, 5)),
    "layernorm": ("[7, 10]", "{eps: 1e-6}", (7, 10)),
    "embedding": ("{shape: [9], dtype: int64}", "{num: 100, dim: 12}", (9, 12)),
    "relu": ("[3, 4]", "null", (3, 4)),
    "relu6": ("[3, 4]", "null", (3, 4)),
    "leaky_relu": ("[3, 4]", "{slope: 0.2}", (3, 4)),
    "gelu": ("[3, 4]", "{approximate: tanh}", (3, 4)),
    "tanh": ("[3, 4]", "null", (3, 4)),
    "sigmoid": ("[3, 4]", "null", (3, 4)),
    "silu": ("[3, 4]", "null", (3, 4)),
    "elu": ("[3, 4]", "{alpha: 0.5}", (3, 4)),
    "softmax": ("[3, 4]", "{axis: 0}", (3, 4)),
    "identity": ("[3, 4]", "null", (3, 4)),
    "dropout": ("[3, 4]", "{p: 0.1}", (3, 4)),
    "flatten": ("[3, 4, 5]", "null", (60,)),
    "maxpool1d": ("[2, 11]", "{kernel: 3, stride: 2, padding: 1}", (2, conv_size(11, 3, 2, 1))),
    "avgpool1d": ("[2, 11]", "{kernel: 2}", (2, conv_size(11, 2, 2))),
    "maxpool2d": ("[3, 9, 8]", "{kernel: [3, 2], stride: 2}", (3, conv_size(9, 3, 2), conv_size(8, 2, 2))),
    "avgpool2d": ("[3, 9, 8]", "{kernel: 3, padding: 1}", (3, conv_size(9, 3, 3, 1), conv_size(8, 3, 3, 1))),
    "maxpool3d": ("[1, 4, 6, 8]", "{kernel: 2}", (1, 2, 3, 4)),
    "avgpool3d": ("[1, 4, 6, 8]", "{kernel: [1, 2, 3], stride: 1}", (1, 4, 5, 6)),
    "global_avg_pool": ("[7, 5, 5]", "null", (7,)),
    "global_max_pool": ("[7, 5, 5]", "{keep_dims: true}", (7, 1, 1)),
    "slice": ("[7, 5, 5]", "{start: 2, stop: 6}", (4, 5, 5)),
    "channel_shuffle": ("[6, 5, 5]", "{groups: 3}", (6, 5, 5)),
    "pad": ("[3, 5, 6]", "{padding: [[0, 1], 2]}", (3, 6, 10)),
    "rescale": ("[3, 5, 6]", "{scale: [0.5, 1.0, 2.0], offset: -1.0}", (3, 5, 6)),
    "to_tokens": ("[7, 5, 4]", "null", (20, 7)),
    "to_map": ("{shape: [12, 7], layout: tokens}", "{size: [3, 4]}", (7, 3, 4)),
    "conv_transpose1d": ("[4, 7]", "{out: 6, kernel: 4, stride: 3, padding: 2, output_padding: 2, groups: 2}",
                         (6, (7 - 1) * 3 - 4 + 3 + 2 + 1)),
    "conv_transpose2d": ("[3, 5, 6]", "{out: 4, kernel: [3, 2], stride: 2, padding: [1, 0], output_padding: 1}",
                         (4, 4 * 2 - 2 + 2 + 1 + 1, 5 * 2 + 1 + 1 + 1)),
    "conv_transpose3d": ("[2, 3, 4, 5]", "{out: 2, kernel: 3, dilation: 2, padding: 1}", (2, 3 + 2, 4 + 2, 5 + 2)),
    "upsample": ("[3, 5, 6]", "{scale: [2, 3], mode: bilinear}", (3, 10, 18)),
    "adaptive_avg_pool": ("[3, 7, 5]", "{size: [3, 2]}", (3, 3, 2)),
    "adaptive_max_pool": ("[3, 7]", "{size: 4}", (3, 4)),
    "hardswish": ("[3, 4]", "null", (3, 4)),
    "hardsigmoid": ("[3, 4]", "null", (3, 4)),
    "softplus": ("[3, 4]", "null", (3, 4)),
    "mish": ("[3, 4]", "null", (3, 4)),
    "prelu": ("[6, 5, 5]", "{per_channel: true}", (6, 5, 5)),
    "groupnorm": ("[6, 5, 5]", "{groups: 3}", (6, 5, 5)),
    "rmsnorm": ("[7, 10]", "{eps: 1.0e-5}", (7, 10)),
    "scale": ("[6, 5, 5]", "null", (6, 5, 5)),
    "drop_path": ("[6, 5, 5]", "{p: 0.1}", (6, 5, 5)),
    "class_token": ("{shape: [9, 8], layout: tokens}", "null", (10, 8)),
    "position_embedding": ("{shape: [9, 8], layout: tokens}", "{length: 12}", (9, 8)),
    "attention": ("{shape: [9, 8], layout: tokens}", "{heads: 2, causal: true}", (9, 8)),
    "lstm": ("{shape: [9, 8], layout: tokens}", "{hidden: 3, layers: 2, bidirectional: true}", (9, 6)),
    "gru": ("{shape: [9, 8], layout: tokens}", "{hidden: 5, output: last}", (5,)),
}


def test_every_kind_has_a_case():
    assert set(KIND_CASES) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(KIND_CASES))
def test_every_kind_lowers_with_its_output_shape(kind):
    input_, args, expected = KIND_CASES[kind]
    item = f"{kind}: {args}"
    if kind == "drop_path":  # it belongs in an add branch; the identity shortcut keeps the shape
        item = f"residual: [{{{item}}}]"
    spec = nnspec.loads(spec_text(f"  - {item}\n", input_))
    (layer,) = spec.graph.layers()
    assert layer.kind == kind
    assert layer.out_shape == expected
    assert spec.output_shape == expected


@pytest.mark.parametrize("kind, input_, expected", [
    ("linear", "[3, 10]", {"weight": ((5, 10), 10, 5), "bias": ((5,), 10, 5)}),
    ("conv2d", "[6, 9, 9]", {"weight": ((4, 3, 3, 3), 27, 36), "bias": ((4,), 27, 36)}),
    ("embedding", "{shape: [4], dtype: int64}", {"weight": ((11, 5), 5, 11)}),
    ("batchnorm", "[6, 9, 9]", {"gamma": ((6,), 6, 6), "beta": ((6,), 6, 6)}),
    ("layernorm", "[3, 10]", {"gamma": ((10,), 10, 10), "beta": ((10,), 10, 10)}),
    ("class_token", "{shape: [3, 10], layout: tokens}", {"token": ((10,), 10, 10)}),
    ("position_embedding", "{shape: [3, 10], layout: tokens}", {"weight": ((7, 10), 10, 7)}),
    ("attention", "{shape: [3, 10], layout: tokens}", {"in_weight": ((30, 10), 10, 30), "in_bias": ((30,), 10, 30),
                                                       "out_weight": ((10, 10), 10, 10),
                                                       "out_bias": ((10,), 10, 10)}),
])
def test_tensor_shapes_and_fans(kind, input_, expected):
    args = {"linear": "{out: 5}", "conv2d": "{out: 4, kernel: 3, groups: 2}", "embedding": "{num: 11, dim: 5}",
            "position_embedding": "{length: 7}", "attention": "{heads: 5}"}
    spec = nnspec.loads(spec_text(f"  - {kind}: {args.get(kind, 'null')}\n", input_))
    (layer,) = spec.graph.layers()
    assert {r: (t.shape, t.fan_in, t.fan_out) for r, t in layer.tensors.items()} == expected


def test_bias_false_removes_the_bias():
    spec = nnspec.loads(spec_text("  - linear: {out: 3, bias: false}\n"))
    assert list(next(spec.graph.layers()).tensors) == ["weight"]


# Geometry against the formula and against PyTorch itself.
CONV_GEOMETRY = [
    # (ndim, input spatial, kernel, stride, padding, dilation)
    (1, (10,), 3, 1, 0, 1),
    (1, (10,), 4, 3, 2, 1),
    (1, (31,), 5, 1, 0, 3),
    (1, (31,), 5, 4, 2, 1),
    (2, (8, 9), 3, 2, 1, 1),
    (2, (8, 9), (2, 4), (1, 3), (0, 2), 1),
    (2, (12, 9), (3, 2), 1, (2, 0), (2, 3)),
    (2, (5, 5), 5, 1, 0, 1),
    (3, (5, 6, 7), 2, 2, 1, 1),
]


def _tup(value, n):
    return (value,) * n if isinstance(value, int) else tuple(value)


def _yaml(value):
    return str(list(value)) if isinstance(value, tuple) else str(value)


@pytest.mark.parametrize("case", CONV_GEOMETRY)
def test_conv_geometry_formula(case):
    n, spatial, kernel, stride, padding, dilation = case
    text = spec_text(f"  - conv{n}d: {{out: 2, kernel: {_yaml(kernel)}, stride: {_yaml(stride)}, "
                     f"padding: {_yaml(padding)}, dilation: {_yaml(dilation)}}}\n", str([3, *spatial]))
    layer = next(nnspec.loads(text).graph.layers())
    expected = tuple(conv_size(L, k, s, p, d) for L, k, s, p, d in zip(
        spatial, _tup(kernel, n), _tup(stride, n), _tup(padding, n), _tup(dilation, n)))
    assert layer.out_shape == (2, *expected)


POOL_GEOMETRY = [
    ("max", 1, (10,), 3, None, 1),
    ("avg", 1, (10,), 4, 3, 2),
    ("max", 2, (9, 8), 2, None, 0),
    ("avg", 2, (9, 8), (3, 2), (2, 1), (1, 1)),
    ("max", 3, (4, 5, 6), 2, 1, 1),
]


@pytest.mark.parametrize("case", POOL_GEOMETRY)
def test_pool_geometry_formula(case):
    op, n, spatial, kernel, stride, padding = case
    stride_text = "" if stride is None else f", stride: {_yaml(stride)}"
    text = spec_text(f"  - {op}pool{n}d: {{kernel: {_yaml(kernel)}{stride_text}, padding: {_yaml(padding)}}}\n",
                     str([2, *spatial]))
    layer = next(nnspec.loads(text).graph.layers())
    strides = _tup(kernel if stride is None else stride, n)
    expected = tuple(conv_size(L, k, s, p) for L, k, s, p in zip(spatial, _tup(kernel, n), strides,
                                                                  _tup(padding, n)))
    assert layer.out_shape == (2, *expected)


@pytest.mark.parametrize("case", CONV_GEOMETRY + [(2, (7, 6), 4, 1, "same", 2), (1, (9,), 2, 1, "same", 1),
                                                  (2, (7, 6), 3, 1, "valid", 1)])
def test_conv_shapes_match_torch(case):
    torch = pytest.importorskip("torch")
    n, spatial, kernel, stride, padding, dilation = case
    text = spec_text(f"  - conv{n}d: {{out: 4, kernel: {_yaml(kernel)}, stride: {_yaml(stride)}, "
                     f"padding: {_yaml(padding)}, dilation: {_yaml(dilation)}, groups: 2}}\n", str([6, *spatial]))
    layer = next(nnspec.loads(text).graph.layers())
    conv = getattr(torch.nn, f"Conv{n}d")(6, 4, kernel, stride=stride, padding=padding, dilation=dilation, groups=2)
    out = conv(torch.randn(1, 6, *spatial))
    assert layer.out_shape == tuple(out.shape[1:])
    assert layer.tensors["weight"].shape == tuple(conv.weight.shape)


@pytest.mark.parametrize("case", POOL_GEOMETRY)
def test_pool_shapes_match_torch(case):
    torch = pytest.importorskip("torch")
    op, n, spatial, kernel, stride, padding = case
    stride_text = "" if stride is None else f", stride: {_yaml(stride)}"
    text = spec_text(f"  - {op}pool{n}d: {{kernel: {_yaml(kernel)}{stride_text}, padding: {_yaml(padding)}}}\n",
                     str([2, *spatial]))
    layer = next(nnspec.loads(text).graph.layers())
    pool = getattr(torch.nn, f"{op.title()}Pool{n}d")(kernel, stride=stride, padding=padding)
    assert layer.out_shape == tuple(pool(torch.randn(1, 2, *spatial)).shape[1:])


CEIL_POOLS = [  # (op, n, spatial, kernel, stride, padding): the last window's start rule decides some of them
    ("max", 1, (10,), 3, 2, 1), ("avg", 1, (10,), 3, 2, 1), ("max", 1, (5,), 2, 2, 0), ("avg", 1, (6,), 3, 3, 1),
    ("max", 2, (9, 8), 3, 2, 0), ("avg", 2, (7, 7), (3, 2), (2, 3), (1, 1)), ("max", 3, (4, 5, 6), 2, 2, 1),
    ("avg", 1, (4,), 2, 3, 1), ("max", 1, (7,), 3, 3, 1),
]


@pytest.mark.parametrize("case", CEIL_POOLS)
def test_ceil_mode_pool_shapes_match_torch(case):
    torch = pytest.importorskip("torch")
    op, n, spatial, kernel, stride, padding = case
    text = spec_text(f"  - {op}pool{n}d: {{kernel: {_yaml(kernel)}, stride: {_yaml(stride)}, "
                     f"padding: {_yaml(padding)}, ceil_mode: true}}\n", str([2, *spatial]))
    layer = next(nnspec.loads(text).graph.layers())
    pool = getattr(torch.nn, f"{op.title()}Pool{n}d")(kernel, stride=stride, padding=padding, ceil_mode=True)
    assert layer.out_shape == tuple(pool(torch.randn(1, 2, *spatial)).shape[1:])


CONV_TRANSPOSE = [  # (n, spatial, kernel, stride, padding, output_padding, dilation, groups)
    (1, (7,), 4, 3, 2, 2, 1, 2), (2, (5, 6), (3, 2), 2, (1, 0), 1, 1, 1), (3, (2, 3, 4), 3, 1, 1, 0, 2, 2),
    (2, (4, 4), 2, (2, 3), 0, (1, 2), 1, 2), (1, (5,), 3, 1, 0, 1, 2, 1),
]


@pytest.mark.parametrize("case", CONV_TRANSPOSE)
def test_conv_transpose_shapes_and_fans_match_torch(case):
    torch = pytest.importorskip("torch")
    n, spatial, kernel, stride, padding, output_padding, dilation, groups = case
    text = spec_text(f"  - conv_transpose{n}d: {{out: 6, kernel: {_yaml(kernel)}, stride: {_yaml(stride)}, "
                     f"padding: {_yaml(padding)}, output_padding: {_yaml(output_padding)}, "
                     f"dilation: {_yaml(dilation)}, groups: {groups}}}\n", str([4, *spatial]))
    layer = next(nnspec.loads(text).graph.layers())
    conv = getattr(torch.nn, f"ConvTranspose{n}d")(4, 6, kernel, stride=stride, padding=padding,
                                                    output_padding=output_padding, dilation=dilation, groups=groups)
    assert layer.out_shape == tuple(conv(torch.randn(1, 4, *spatial)).shape[1:])
    weight = layer.tensors["weight"]
    assert weight.shape == tuple(conv.weight.shape)
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(conv.weight)
    assert (weight.fan_in, weight.fan_out) == (fan_in, fan_out)
    assert (layer.tensors["bias"].shape, layer.tensors["bias"].fan_in) == ((6,), fan_in)


@pytest.mark.parametrize("item, spatial, module", [
    ("upsample: {scale: [2, 3], mode: bilinear}", (5, 4), lambda t: t.nn.Upsample(scale_factor=(2, 3),
                                                                                    mode="bilinear")),
    ("upsample: {scale: 3}", (2, 3, 4), lambda t: t.nn.Upsample(scale_factor=3)),
    ("adaptive_avg_pool: {size: [4, 3]}", (7, 5), lambda t: t.nn.AdaptiveAvgPool2d((4, 3))),
    ("adaptive_max_pool: {size: 9}", (5,), lambda t: t.nn.AdaptiveMaxPool1d(9)),
])
def test_resampling_shapes_match_torch(item, spatial, module):
    torch = pytest.importorskip("torch")
    spec = nnspec.loads(spec_text(f"  - {item}\n", str([2, *spatial])))
    assert spec.output_shape == tuple(module(torch)(torch.randn(1, 2, *spatial)).shape[1:])


@pytest.mark.parametrize("kind, input_, expected", [
    ("prelu", "[6, 4, 4]", {"weight": (1,)}),
    ("prelu: {per_channel: true}", "[6, 4, 4]", {"weight": (6,)}),
    ("prelu: {per_channel: true}", "{shape: [5, 3], layout: tokens}", {"weight": (3,)}),
    ("scale", "[6, 4, 4]", {"gamma": (6,)}),
    ("scale", "{shape: [5, 3], layout: tokens}", {"gamma": (3,)}),
    ("rmsnorm", "{shape: [5, 3], layout: tokens}", {"gamma": (3,)}),
    ("groupnorm: {groups: 2}", "[6, 4, 4]", {"gamma": (6,), "beta": (6,)}),
    ("layernorm: {over: channels}", "[6, 4, 5]", {"gamma": (6,), "beta": (6,)}),
    ("layernorm", "[6, 4, 5]", {"gamma": (5,), "beta": (5,)}),
])
def test_channel_tensors(kind, input_, expected):
    spec = nnspec.loads(spec_text(f"  - {kind}\n", input_))
    (layer,) = spec.graph.layers()
    assert {role: t.shape for role, t in layer.tensors.items()} == expected


def test_prelu_slope_is_not_reached_by_the_model_wide_weight_default():
    spec = nnspec.loads(spec_text("  - linear: {out: 4}\n  - prelu: {per_channel: true}\n", "[3]")
                        .replace("layers:", "init: {weight: kaiming_normal}\nlayers:"))
    linear, prelu = spec.graph.layers()
    assert linear.tensors["weight"].init.name == "kaiming_normal"
    assert prelu.tensors["weight"].init.name == "torch_default"
    spec = nnspec.loads(spec_text("  - prelu\n", "[3]").replace("layers:", "init: {prelu: {weight: zeros}}\nlayers:"))
    assert next(spec.graph.layers()).tensors["weight"].init.name == "zeros"


def test_other_shapes_match_torch():
    torch = pytest.importorskip("torch")
    spec = nnspec.loads(spec_text("  - flatten\n  - linear: {out: 7}\n  - layernorm\n", "[3, 4, 5]"))
    x = torch.randn(1, 3, 4, 5)
    y = torch.nn.LayerNorm(7)(torch.nn.Linear(60, 7)(torch.nn.Flatten()(x)))
    assert spec.output_shape == tuple(y.shape[1:])
    spec = nnspec.loads(spec_text("  - embedding: {num: 50, dim: 6}\n  - linear: {out: 3}\n",
                                  "{shape: [11], dtype: int64}"))
    y = torch.nn.Linear(6, 3)(torch.nn.Embedding(50, 6)(torch.randint(0, 50, (1, 11))))
    assert spec.output_shape == tuple(y.shape[1:])
    spec = nnspec.loads(spec_text("  - global_avg_pool\n", "[5, 6, 7]"))
    assert spec.output_shape == tuple(torch.nn.AdaptiveAvgPool2d(1)(torch.randn(1, 5, 6, 7)).flatten(1).shape[1:])


@pytest.mark.parametrize("layers, input_, code", [
    ("  - conv2d: {out: 4, kernel: 4, padding: 1, stride: 9}\n", "[1, 2, 2]", None),  # (2+2-4)//9+1 = 1: fine
    ("  - conv2d: {out: 4, kernel: 3, dilation: 3}\n", "[1, 6, 6]", "NS102"),        # span 7 > 6
    ("  - maxpool1d: {kernel: 5}\n", "[1, 4]", "NS102"),
    ("  - maxpool1d: {kernel: 3, padding: 1}\n", "[1, 4]", None),
    ("  - avgpool2d: {kernel: 3, padding: 2}\n", "[1, 4, 4]", "NS102"),
    ("  - conv1d: {out: 6, kernel: 3, groups: 4}\n", "[8, 10]", "NS103"),
    ("  - conv1d: {out: 8, kernel: 3, groups: 4}\n", "[8, 10]", None),
    ("  - conv2d: {out: 8, kernel: [3, 3, 3]}\n", "[1, 8, 8]", "NS004"),
    ("  - global_avg_pool\n", "[8]", "NS104"),
    ("  - maxpool2d: {kernel: 2}\n", "[3, 8]", "NS104"),
    ("  - flatten\n  - batchnorm\n  - conv1d: {out: 2, kernel: 1}\n", "[3, 8]", "NS104"),
    ("  - embedding: {num: 4, dim: 2}\n", "[8]", "NS104"),
    ("  - relu\n", "{shape: [8], dtype: int64}", "NS104"),
    ("  - conv_transpose1d: {out: 2, kernel: 3, stride: 2, output_padding: 2}\n", "[3, 8]", "NS102"),
    ("  - conv_transpose1d: {out: 2, kernel: 3, dilation: 3, output_padding: 2}\n", "[3, 8]", None),
    ("  - conv_transpose1d: {out: 2, kernel: 3, padding: 3}\n", "[3, 1]", "NS102"),  # (1-1) - 6 + 2 + 1 < 1
    ("  - conv_transpose2d: {out: 4, kernel: 3, groups: 2}\n", "[3, 8, 8]", "NS103"),
    ("  - conv_transpose2d: {out: 2, kernel: 3}\n", "{shape: [4, 5], layout: tokens}", "NS104"),
    ("  - upsample: {mode: bilinear}\n", "[3, 8]", "NS104"),
    ("  - upsample: {scale: [2, 2]}\n", "[3, 8]", "NS004"),
    ("  - adaptive_avg_pool: {size: [2, 2, 2]}\n", "[3, 8, 8]", "NS004"),
    ("  - groupnorm: {groups: 4}\n", "[6, 8]", "NS103"),
    ("  - groupnorm: {groups: 2}\n", "[6]", "NS104"),
    ("  - maxpool1d: {kernel: 2, stride: 2, ceil_mode: true}\n", "[1, 5]", None),
])
def test_geometry_edges(layers, input_, code):
    got = diags(spec_text(layers, input_))
    assert [d.code for d in got] == ([code] if code else [])


# -- items ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["relu", "relu: null", "relu: {}", "{relu: null}", "relu: ~"])
def test_bare_null_and_empty_mapping_are_the_same_item(form):
    spec = nnspec.loads(spec_text(f"  - linear: {{out: 4}}\n  - {form}\n"))
    layers = list(spec.graph.layers())
    assert [(x.kind, x.name, x.path, x.args, x.out_shape) for x in layers[1:]] == [("relu", "relu_1", "relu_1", {},
                                                                                   (4,))]


@pytest.mark.parametrize("residual", [
    "  - residual:\n      - relu\n      - linear: {out: 16, stirde: 1}\n",
    "  - residual:\n      branch:\n        - relu\n        - linear: {out: 16, stirde: 1}\n",
])
def test_problems_inside_a_residual_point_at_their_line(residual):
    got = diags(spec_text(residual))
    assert [(d.code, d.line) for d in got] == [("NS003", residual.count("\n") + 4)]
    key_column = residual.splitlines()[-1].index("stirde") + 1
    assert got[0].column == key_column


def test_residual_list_and_mapping_forms_are_the_same():
    a = nnspec.loads(spec_text("  - residual:\n      - linear: {out: 16}\n      - relu\n"))
    b = nnspec.loads(spec_text("  - residual:\n      branch:\n        - linear: {out: 16}\n        - relu\n"))
    assert [t.path for t in a.graph.tensors()] == [t.path for t in b.graph.tensors()]
    assert a.output_shape == b.output_shape == (16,)


# -- names ------------------------------------------------------------------------------------------


NAMES_SPEC = """nnspec: 1
name: names
input: [4, 16]
blocks:
  unit:
    args: {ch: 4}
    layers:
      - conv1d: {out: $ch, kernel: 3, padding: 1}
      - relu
layers:
  - conv1d: {out: 4, kernel: 3, padding: 1}
  - relu
  - conv1d: {out: 4, kernel: 3, padding: 1}
  - unit
  - unit: {repeat: 2}
  - unit: {name: stage}
  - linear: {out: 8, repeat: 3, name: mlp}
  - residual:
      branch:
        - linear: {out: 8}
        - relu
        - linear: {out: 8}
      shortcut:
        - linear: {out: 8}
  - residual: [relu, {linear: {out: 8}}]
"""


def test_default_names():
    spec = nnspec.loads(NAMES_SPEC)
    assert [layer.path for layer in spec.graph.layers()] == [
        "conv1d_1", "relu_1", "conv1d_2",
        "unit_1.conv1d_1", "unit_1.relu_1",
        "unit_2.0.conv1d_1", "unit_2.0.relu_1", "unit_2.1.conv1d_1", "unit_2.1.relu_1",
        "stage.conv1d_1", "stage.relu_1",
        "mlp.0", "mlp.1", "mlp.2",
        "residual_1.branch.linear_1", "residual_1.branch.relu_1", "residual_1.branch.linear_2",
        "residual_1.shortcut.linear_1",
        "residual_2.branch.relu_1", "residual_2.branch.linear_1",
    ]
    assert "mlp.1.weight" in {t.path for t in spec.graph.tensors()}


def test_numbering_counts_every_item_of_the_kind():
    """An item's number is its position among the items of its kind in the scope, named or not."""
    spec = nnspec.loads(spec_text("  - linear: {out: 4, name: fc}\n  - linear: {out: 4}\n"))
    assert [layer.path for layer in spec.graph.layers()] == ["fc", "linear_2"]


def test_cifar_resnet_tensor_paths():
    paths = {t.path for t in nnspec.load(ROOT / "examples" / "cifar_resnet.yaml").graph.tensors()}
    for path in ("stem.weight", "batchnorm_1.gamma", "basic_1.0.residual_1.branch.conv2d_1.weight",
                 "basic_1.2.residual_1.branch.batchnorm_2.gamma", "down_1.residual_1.shortcut.conv2d_1.weight",
                 "down_1.residual_1.shortcut.batchnorm_1.beta", "basic_2.1.residual_1.branch.conv2d_2.weight",
                 "head.weight", "head.bias"):
        assert path in paths
    assert not any(".stem" in p or "residual_2" in p for p in paths)


@pytest.mark.parametrize("name", ["forward", "to", "train", "class", "lambda", "match", "_private", "__init__",
                                  "torch", "self", "x", "weight", "9lives", "café", "a-b", "a.b", "", "x" * 65])
def test_unsafe_layer_names_are_ns007(name):
    got = diags(spec_text(f"  - linear: {{out: 4, name: '{name}'}}\n"))
    assert [(d.code, d.line) for d in got] == [("NS007", 5)]


@pytest.mark.parametrize("where", ["name: forward\ninput: [4]\n", "name: m\ninput: [4]\nblocks:\n  def:\n"
                                   "    layers: [relu]\n"])
def test_unsafe_model_and_block_names_are_ns007(where):
    got = diags(f"nnspec: 1\n{where}layers:\n  - relu\n")
    assert "NS007" in [d.code for d in got]


@pytest.mark.parametrize("name", ["weight", "gamma", "zeros", "kaiming_normal", "conv2d", "relu", "residual"])
def test_block_named_like_a_kind_role_or_initializer_is_ns106(name):
    got = diags(spec_text("  - relu\n", extra=f"blocks:\n  {name}:\n    layers: [identity]\n"))
    assert ("NS106", 5) in [(d.code, d.line) for d in got]


def test_duplicate_names_in_one_scope_only():
    assert [d.code for d in diags(spec_text("  - relu: {name: a}\n  - residual: [{relu: {name: a}}]\n"))] == []
    got = diags(spec_text("  - residual: [{relu: {name: a}}, {tanh: {name: a}}]\n"))
    assert [(d.code, d.line) for d in got] == [("NS106", 5)]


def test_repeat_with_arg():
    text = """nnspec: 1
name: m
input: [8]
blocks:
  stack:
    args: {n: required, width: 8}
    layers:
      - linear: {out: $width, repeat: $n}
layers:
  - stack: {n: 3}
"""
    spec = nnspec.loads(text)
    assert [layer.path for layer in spec.graph.layers()] == ["stack_1.linear_1.0", "stack_1.linear_1.1",
                                                             "stack_1.linear_1.2"]


def test_arg_inside_lists():
    text = """nnspec: 1
name: m
input: [3, 16, 16]
blocks:
  conv:
    args: {k: required, ch: 8}
    layers:
      - conv2d: {out: $ch, kernel: [$k, 1], padding: [1, 0]}
layers:
  - conv: {k: 3}
  - conv: {k: 5, ch: 4}
"""
    assert [layer.out_shape for layer in nnspec.loads(text).graph.layers()] == [(8, 16, 16), (4, 14, 16)]


def test_arg_reference_outside_a_block_is_ns105():
    got = diags(spec_text("  - linear: {out: $width}\n  - residual: [{linear: {out: 4, bias: $b}}]\n"))
    assert [(d.code, d.line, d.column) for d in got] == [("NS105", 5, 19), ("NS105", 6, 40)]
    assert "not in a block body" in got[0].message


@pytest.mark.parametrize("arg", ["bias", "x", "weight", "self", "out", "kernel", "forward", "class"])
def test_block_arguments_may_use_any_referable_name(arg):
    """Arguments never reach generated code: only `$name` must be able to refer to them."""
    text = spec_text(f"  - b: {{{arg}: 4}}\n", extra=f"blocks:\n  b:\n    args: {{{arg}: required}}\n"
                     f"    layers:\n      - linear: {{out: ${arg}}}\n")
    assert nnspec.loads(text).output_shape == (4,)


def test_block_argument_clashing_with_an_item_key_is_reported_once():
    got = diags(spec_text("  - b\n", extra="blocks:\n  b:\n    args: {repeat: 2}\n    layers: [relu]\n"))
    assert [(d.code, d.line) for d in got] == [("NS105", 6)]


def test_undeclared_arg_reference_is_ns105():
    text = spec_text("  - b\n", extra="blocks:\n  b:\n    layers:\n      - linear: {out: $widht}\n")
    got = diags(text)
    assert [(d.code, d.line) for d in got] == [("NS105", 7)]


# -- initializer resolution ----------------------------------------------------------------------------


INIT_SPEC = """nnspec: 1
name: inits
input: [2, 16]
init:
  weight: xavier_uniform
  bias: {constant: 0.01}
  linear:
    weight: {kaiming_uniform: {nonlinearity: relu}}
blocks:
  b:
    layers:
      - linear: {out: 16}
      - linear: {out: 16, init: {weight: orthogonal}}
      - residual:
          branch: [{linear: {out: 16}}]
          init: {weight: {xavier_normal: 2}}
layers:
  - conv1d: {out: 2, kernel: 1}
  - linear: {out: 16, init: {weight: {normal: {std: 0.02}}}}
  - linear: {out: 16}
  - b: {init: {weight: {trunc_normal: {std: 0.02}}, linear: {bias: zeros}}}
  - layernorm
"""


def test_init_resolution_order_and_origin():
    spec = nnspec.loads(INIT_SPEC)
    got = {t.path: (t.init.name, t.origin, t.source) for t in spec.graph.tensors()}
    assert got == {
        # nothing more specific: the model's init.<role>
        "conv1d_1.weight": ("xavier_uniform", "init.weight", "<string>:5"),
        "conv1d_1.bias": ("constant", "init.bias", "<string>:6"),
        # the layer's own init wins
        "linear_1.weight": ("normal", "layer", "<string>:19"),
        "linear_1.bias": ("constant", "init.bias", "<string>:6"),
        # the model's init.<kind>.<role> beats init.<role>
        "linear_2.weight": ("kaiming_uniform", "init.linear.weight", "<string>:8"),
        "linear_2.bias": ("constant", "init.bias", "<string>:6"),
        # a block call's init beats the model's defaults, by kind before by role
        "b_1.linear_1.weight": ("trunc_normal", "block call b_1", "<string>:21"),
        "b_1.linear_1.bias": ("zeros", "block call b_1", "<string>:21"),
        "b_1.linear_2.weight": ("orthogonal", "layer", "<string>:13"),
        "b_1.linear_2.bias": ("zeros", "block call b_1", "<string>:21"),
        # the innermost container wins
        "b_1.residual_1.branch.linear_1.weight": ("xavier_normal", "residual b_1.residual_1", "<string>:16"),
        "b_1.residual_1.branch.linear_1.bias": ("zeros", "block call b_1", "<string>:21"),
        # nothing matches: torch_default
        "layernorm_1.gamma": ("torch_default", "default", "default"),
        "layernorm_1.beta": ("torch_default", "default", "default"),
    }
    assert not [d for d in spec.diagnostics if d.code == "NS212"]


def test_short_forms():
    spec = nnspec.loads(spec_text(
        "  - linear: {out: 4, init: {weight: {xavier_uniform: 2}, bias: {constant: 0.5}}}\n"
        "  - linear: {out: 4, init: {weight: xavier_normal, bias: {values: [1, 2, 3, 4]}}}\n"))
    got = [(t.init.name, t.init.args) for t in spec.graph.tensors()]
    assert got == [("xavier_uniform", {"gain": 2.0}), ("constant", {"value": 0.5}),
                   ("xavier_normal", {"gain": 1.0}), ("values", {"values": [1, 2, 3, 4]})]


def test_init_role_the_layer_lacks_is_ns003_at_the_role():
    got = diags(spec_text("  - linear: {out: 4, bias: false, init: {bias: zeros}}\n"))
    assert [(d.code, d.line, d.column) for d in got] == [("NS003", 5, 42)]
    got = diags(spec_text("  - relu: {init: {weight: zeros}}\n"))
    assert [(d.code, d.line, d.column) for d in got] == [("NS003", 5, 19)]


def test_unused_model_default_is_reported():
    got = diags(spec_text("  - linear: {out: 4}\n", extra="init:\n  conv2d: {weight: xavier_uniform}\n"))
    assert [(d.code, d.line, d.severity) for d in got] == [("NS212", 5, "warning")]


@pytest.mark.parametrize("item, input_, code, arg", [
    ("conv_transpose2d: {out: 2, kernel: 3, stride: 2, output_padding: 2}", "[3, 8, 8]", "NS102", "output_padding"),
    ("conv_transpose1d: {out: 3, kernel: 3, groups: 2}", "[4, 8]", "NS103", "groups"),
    ("groupnorm: {groups: 4}", "[6, 8, 8]", "NS103", "groups"),
    ("upsample: {mode: bilinear}", "[3, 8]", "NS104", "mode"),
    ("adaptive_max_pool: {size: [2, 2]}", "[3, 8]", "NS004", "size"),
    ("maxpool1d: {kernel: 2, ceil_mode: 1}", "[3, 8]", "NS004", "ceil_mode"),
])
def test_new_kind_problems_point_at_the_argument(item, input_, code, arg):
    text = spec_text(f"  - {item}\n", input_)
    line = text.splitlines().index(f"  - {item}") + 1
    column = f"  - {item}".index(f"{arg}: ") + len(arg) + 3
    assert found(text) == [(code, line, column)]
