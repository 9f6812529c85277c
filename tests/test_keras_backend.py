"""The Keras 3 backend: layer names and arguments, emitted source, saving, Keras's PyTorch backend, and
`nnspec compile --target keras`."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from helpers import EXAMPLES, import_source, ruff_problems, spec_from_text
from test_parity import KIND_FIXTURES

import nnspec
from nnspec import cli
from nnspec.compiler.backends import keras_runtime
from nnspec.compiler.ir import Merge, iter_nodes

CUSTOM_CLASSES = {"Dirac", "TruncNormal", "Sparse", "TorchDefault", "Values", "ConstantPad", "Gelu"}

EVERY_CUSTOM = """
nnspec: 1
name: every_custom
input: [4, 6, 6]
seed: 3
layers:
  - conv2d: {out: 4, kernel: 3, padding: 1, init: {weight: dirac, bias: {trunc_normal: {std: 0.5, low: -0.1, high: 0.3}}}}
  - conv2d: {out: 4, kernel: 3, padding: 1, groups: 2, init: {weight: he_normal, bias: {constant: 0.1}}}
  - maxpool2d: {kernel: 3, stride: 1, padding: 1}
  - gelu: {approximate: tanh}
  - flatten
  - linear: {out: 5, init: {weight: {sparse: 0.5}, bias: {log_prior: [1, 2, 3, 4, 5]}}}
  - linear: {out: 2, init: {weight: {values: [[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]]}, bias: torch_default}}
  - linear: {out: 3, init: {weight: torch_default}}
"""


def spec_of(name: str):
    return spec_from_text(KIND_FIXTURES[name], f"{name}.yaml")


def weights(model) -> list:
    return [keras.ops.convert_to_numpy(v) for v in model.weights]


# -- names ----------------------------------------------------------------------------------------

def test_layer_named_by_its_dotted_path():
    model = nnspec.build(EXAMPLES / "cifar_resnet.yaml", "keras", seed=0)
    layer = model.get_layer("basic_1.0.residual_1.branch.conv2d_1")
    assert isinstance(layer, keras.layers.Conv2D)
    assert isinstance(model.get_layer("head"), keras.layers.Dense)  # a top-level layer named X is X
    assert isinstance(model.get_layer("stem"), keras.layers.Conv2D)
    assert isinstance(model.get_layer("basic_1.0.residual_1"), keras.layers.Add)


KERAS_CLASS = {"linear": "Dense", "batchnorm": "BatchNormalization", "layernorm": "LayerNormalization",
               "embedding": "Embedding", "relu": "ReLU", "relu6": "ReLU", "leaky_relu": "LeakyReLU",
               "tanh": "Activation", "sigmoid": "Activation", "silu": "Activation", "elu": "ELU",
               "softmax": "Softmax", "identity": "Identity", "dropout": "Dropout", "flatten": "Flatten",
               "slice": "Slice", "channel_shuffle": "ChannelShuffle", "rescale": "Rescaling", "to_tokens": "Reshape", "to_map": "Reshape",
               "hardswish": "Activation", "hardsigmoid": "Activation", "softplus": "Activation",
               "mish": "Mish", "prelu": "PReLU", "groupnorm": "GroupNormalization", "rmsnorm": "RMSNorm",
               "scale": "LayerScale", "drop_path": "DropPath", "adaptive_avg_pool": "AdaptivePool",
               "adaptive_max_pool": "AdaptivePool", "class_token": "ClassToken",
               "position_embedding": "PositionEmbedding", "attention": "SelfAttention"}


def expected_class(layer) -> str:
    if layer.kind in ("lstm", "gru"):  # the top layer carries the spec's name
        return "Bidirectional" if layer.args["bidirectional"] else layer.kind.upper()
    if layer.kind in KERAS_CLASS:
        return KERAS_CLASS[layer.kind]
    if layer.kind == "gelu":
        return "Gelu" if layer.args["approximate"] == "tanh" else "Activation"
    if layer.kind in ("global_avg_pool", "global_max_pool"):
        pooling = "Average" if layer.kind == "global_avg_pool" else "Max"
        n = 1 if layer.in_shape.layout == "tokens" else len(layer.in_shape) - 1
        return f"Global{pooling}Pooling{n}D"
    n = layer.kind[-2]
    if layer.kind == "upsample":
        return f"UpSampling{len(layer.in_shape) - 1}D"
    if layer.kind == "pad":
        return f"ZeroPadding{len(layer.in_shape) - 1}D"
    if layer.kind.startswith("conv_transpose"):
        g = layer.geometry  # Keras's own has no groups, and adds fewer than `stride` positions past the output
        past = [op - p for op, p in zip(g["output_padding"], g["padding"])]
        grouped = layer.args["groups"] > 1 or any(e >= s for e, s in zip(past, g["stride"]))
        return "GroupedConvTranspose" if grouped else f"Conv{n}DTranspose"
    prefix = {"conv": "Conv", "maxpool": "MaxPooling", "avgpool": "AveragePooling"}[layer.kind[:-2]]
    return f"{prefix}{n}D"


@pytest.mark.parametrize("name", list(KIND_FIXTURES))
def test_every_keras_layer_is_a_spec_path_or_a_named_helper(name):
    spec = spec_of(name)
    model = nnspec.build(spec, "keras", seed=0)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    layers = {layer.path: layer for layer in spec.graph.layers()}
    merges = {node.path: node for node in iter_nodes(spec.graph.root) if isinstance(node, Merge)}
    for path, layer in layers.items():
        assert type(model.get_layer(path)).__name__ == expected_class(layer), path
    joins = {"add": keras.layers.Add, "multiply": keras.layers.Multiply, "concat": keras.layers.Concatenate}
    for path, node in merges.items():
        assert isinstance(model.get_layer(path), joins[node.op])
    served = set(layers) | set(merges)
    branches = {f"{path}.{branch.name}" for path, node in merges.items() for branch in node.branches}
    for keras_name in names:
        if keras_name in served or keras_name == "inputs":
            continue
        owner, _, role = keras_name.rpartition(".")
        below = owner in layers and layers[owner].kind in ("lstm", "gru") and \
            role in {f"l{k}" for k in range(layers[owner].args["layers"] - 1)}  # a recurrent layer's lower layers
        assert below or (owner in served and role in ("pad", "permute", "crop", "count")) or (
            owner in branches and role in ("permute", "reshape")), f"helper layer {keras_name!r} serves no layer"


# -- layer arguments ------------------------------------------------------------------------------

def test_layer_arguments_follow_pytorch_conventions():
    spec = spec_from_text("""
        nnspec: 1
        name: arguments
        input: [4, 9, 9]
        layers:
          - conv2d: {out: 8, kernel: [3, 1], stride: [2, 1], padding: [1, 0], groups: 2}
          - conv2d: {out: 8, kernel: 3, padding: same, dilation: 2, groups: 4, bias: false}
          - batchnorm: {eps: 0.01, momentum: 0.3}
          - leaky_relu: {slope: 0.2}
          - elu: {alpha: 0.4}
          - relu6
          - gelu: {approximate: tanh}
          - gelu
          - dropout: {p: 0.25}
          - layernorm: {eps: 0.002}
          - softmax: {axis: 0}
          - flatten
          - batchnorm: {eps: 0.0002, momentum: 0.05}
    """)
    model = nnspec.build(spec, "keras", seed=0)
    c1, c2 = model.get_layer("conv2d_1"), model.get_layer("conv2d_2")
    assert (c1.groups, tuple(c1.strides), tuple(c1.kernel_size), c1.padding) == (2, (2, 1), (3, 1), "valid")
    assert tuple(model.get_layer("conv2d_1.pad").padding) == ((1, 1), (0, 0))
    assert (c2.groups, tuple(c2.dilation_rate), c2.use_bias) == (4, (2, 2), False)
    assert tuple(model.get_layer("conv2d_2.pad").padding) == ((2, 2), (2, 2))
    bn = model.get_layer("batchnorm_1")
    assert bn.axis in (-1, 3) and bn.epsilon == 0.01  # the channels of [N, H, W, C]
    assert bn.momentum == pytest.approx(0.7)
    bn2 = model.get_layer("batchnorm_2")
    assert bn2.epsilon == 0.0002 and bn2.momentum == pytest.approx(0.95)
    assert model.get_layer("leaky_relu_1").negative_slope == pytest.approx(0.2)
    assert model.get_layer("elu_1").alpha == pytest.approx(0.4)
    assert model.get_layer("relu6_1").max_value == 6.0
    assert model.get_layer("gelu_1").approximate == "tanh"
    assert model.get_layer("dropout_1").rate == 0.25
    ln = model.get_layer("layernorm_1")
    assert ln.epsilon == 0.002 and list(ln.axis) in ([2], [-2])  # last logical axis (W) of [N, H, W, C]
    assert model.get_layer("softmax_1").axis in (-1, 3)  # logical axis 0: the channels


def test_gelu_tanh_is_pytorch_tanh_gelu_not_the_exact_one():
    x = np.linspace(-6, 6, 2001, dtype="float32")
    tanh_torch = torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()
    exact_torch = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    got = keras.ops.convert_to_numpy(keras_runtime.Gelu(approximate="tanh")(x))
    np.testing.assert_allclose(got, tanh_torch, atol=2e-6)
    assert np.abs(tanh_torch - exact_torch).max() > 1e-4  # the two differ by more than parity's tolerance
    exact = keras.ops.convert_to_numpy(keras_runtime.Gelu()(x))
    np.testing.assert_allclose(exact, exact_torch, atol=2e-6)


def test_same_seed_same_weights_other_seed_other_weights():
    spec = spec_of("residuals")
    a, b = nnspec.build(spec, "keras", seed=5), nnspec.build(spec, "keras", seed=5)
    c = nnspec.build(spec, "keras", seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(weights(a), weights(b)))
    kernels = [i for i, v in enumerate(a.weights) if "kernel" in v.path]
    assert not any(np.array_equal(weights(a)[i], weights(c)[i]) for i in kernels)


def test_every_tensor_gets_its_own_initializer_instance():
    """A seeded Keras initializer returns the same values on every call: two same-shaped layers must
    not share one (they would start identical)."""
    spec = spec_from_text("""
        nnspec: 1
        name: twins
        input: [8]
        layers:
          - linear: {out: 8, init: {weight: he_normal}}
          - linear: {out: 8, init: {weight: he_normal}}
          - linear: {out: 8, init: {weight: {trunc_normal: {std: 0.1}}}}
          - linear: {out: 8, init: {weight: {trunc_normal: {std: 0.1}}}}
    """)
    model = nnspec.build(spec, "keras", seed=0)
    k = [keras.ops.convert_to_numpy(model.get_layer(f"linear_{i}").kernel) for i in (1, 2, 3, 4)]
    assert not np.array_equal(k[0], k[1]) and not np.array_equal(k[2], k[3])


# -- emitted source -------------------------------------------------------------------------------

def expected_custom_classes(spec) -> set:
    """The nnspec classes an emitted file needs, worked out from the spec (not from nnspec's emitter)."""
    need = set()
    for layer in spec.graph.layers():
        if layer.kind.startswith("maxpool") and (any(layer.geometry["padding"]) or _ceil_overhang(layer)):
            need.add("ConstantPad")
        if layer.kind.startswith("avgpool") and _ceil_overhang(layer):
            need.add("PoolRescale")
        if layer.kind.startswith("adaptive_"):
            need.add("AdaptivePool")
        if layer.kind.startswith("conv_transpose") and expected_class(layer) == "GroupedConvTranspose":
            need.add("GroupedConvTranspose")
        need |= {name for kind, name in (("rmsnorm", "RMSNorm"), ("scale", "LayerScale"), ("drop_path", "DropPath"),
                                         ("slice", "Slice"),
                                         ("class_token", "ClassToken"), ("position_embedding", "PositionEmbedding"),
                                         ("attention", "SelfAttention"), ("mish", "Mish"))
                 if layer.kind == kind}
        if layer.kind == "gelu" and layer.args["approximate"] == "tanh":
            need.add("Gelu")
        if layer.kind == "gru" or (layer.kind == "lstm" and layer.tensors):  # every bias pair; GRU's gate order
            need.add("Gates")
        for tensor in layer.tensors.values():
            name = tensor.init.name
            if name in ("values", "log_prior"):
                need.add("Values")
            elif name in ("dirac", "sparse"):
                need.add(name.title())
            elif name == "trunc_normal":
                need.add("TruncNormal")
            elif name == "chunks":  # (the fixtures' parts need no class of their own)
                need.add("Chunks")
            # PyTorch's default of a weight or bias is the emitted function `torch_default` (a Keras
            # RandomUniform), not the class TorchDefault
    return need


def _ceil_overhang(layer) -> bool:
    """A ceil_mode pool whose last window runs past the padded input."""
    g = layer.geometry
    return any((size - 1) * s + k > length + 2 * p for size, length, k, s, p in zip(
        layer.out_shape[1:], layer.in_shape[1:], g["kernel"], g["stride"], g["padding"]))


EMIT_CASES = {**{name: KIND_FIXTURES[name] for name in ("conv1d", "conv3d", "residuals", "activations",
                                                         "embedding_conv1d", "linear_layernorm_softmax",
                                                         "conv_transpose2d", "upsample_adaptive_ceil",
                                                         "norms_activations", "vit_like", "gpt_like",
                                                         "recurrent", "recurrent_tokens", "pad_rescale")},
              "every_custom": EVERY_CUSTOM}


@pytest.mark.parametrize("name", list(EMIT_CASES))
def test_emitted_keras_rebuilds_the_same_model(name, tmp_path):
    spec = spec_from_text(EMIT_CASES[name], f"{name}.yaml")
    source = nnspec.emit(spec, "keras")
    tree = ast.parse(source)

    # imports: keras, numpy and the standard library only
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert not {m for m in imported if m not in ("keras", "numpy") and m not in sys.stdlib_module_names}, imported
    assert "nnspec" not in imported and "torch" not in imported and "tensorflow" not in imported

    # only the custom classes it uses
    defined = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert defined == expected_custom_classes(spec), defined
    if name == "every_custom":
        assert defined == CUSTOM_CLASSES - {"TorchDefault"}
        assert "def torch_default(fan_in: int, seed: int)" in source

    module = import_source(source, tmp_path, "emitted_keras")
    problems = ruff_problems(module.__file_path__)
    assert not problems, problems

    emitted = module.build(7)
    built = nnspec.build(spec, "keras", seed=7)
    assert [layer.name for layer in emitted.layers] == [layer.name for layer in built.layers]
    assert [v.path for v in emitted.weights] == [v.path for v in built.weights]
    for path, x, y in zip([v.path for v in built.weights], weights(emitted), weights(built)):
        assert x.dtype == y.dtype and np.array_equal(x, y), path
    if spec.seed is not None:  # build() defaults to the spec's seed
        assert all(np.array_equal(x, y) for x, y in zip(weights(module.build()),
                                                        weights(nnspec.build(spec, "keras"))))


def test_emitted_keras_has_header_and_line_comments():
    spec = spec_from_text(EVERY_CUSTOM, "every_custom.yaml")
    source = nnspec.emit(spec, "keras")
    assert source.startswith("# Generated by nnspec")
    assert "def build(seed: int | None = SEED) -> keras.Model:" in source
    assert "SEED = 3" in source
    for layer in spec.graph.layers():
        assert f"# every_custom.yaml:{layer.span.line}" in source


def test_emitted_long_names_are_ruff_formatted(tmp_path):
    """Long layer names make ruff split `Layer(...)(x)` lines; the emitter must split them the same way."""
    long = "a_rather_long_layer_name_that_forces_line_splits"
    spec = spec_from_text(f"""
        nnspec: 1
        name: long_names
        input: [3, 6, 5, 4]
        blocks:
          block_with_a_long_name:
            args: {{}}
            layers:
              - residual:
                  branch:
                    - conv3d: {{out: 3, kernel: 3, padding: 1, name: {long}}}
                    - maxpool3d: {{kernel: 3, stride: 1, padding: 1, name: {long}_pool}}
                    - avgpool3d: {{kernel: 3, stride: 1, padding: 1, name: {long[:20]}}}
                    - maxpool3d: {{kernel: 3, stride: 1, padding: 1, name: {long[:12]}}}
                    - maxpool3d: {{kernel: 3, stride: 1, padding: 1, name: {long[:8]}}}
                    - maxpool3d: {{kernel: 3, stride: 1, padding: 1, name: {long[:4]}}}
                  shortcut:
                    - identity: {{name: {long}_id}}
        layers:
          - block_with_a_long_name: {{repeat: 2, name: {long}_block}}
          - global_avg_pool
    """, "long_names.yaml")
    module = import_source(nnspec.emit(spec, "keras"), tmp_path, "long_names")
    problems = ruff_problems(module.__file_path__)
    assert not problems, problems
    assert all(np.array_equal(x, y) for x, y in zip(weights(module.build(1)),
                                                    weights(nnspec.build(spec, "keras", seed=1))))


# -- saving and loading ---------------------------------------------------------------------------

def test_save_and_load_round_trip_with_every_custom_class(tmp_path):
    spec = spec_from_text(EVERY_CUSTOM, "every_custom.yaml")
    model = nnspec.build(spec, "keras", seed=2)
    used = {type(layer).__name__ for layer in model.layers}
    for layer in model.layers:
        for attr in ("kernel_initializer", "bias_initializer"):
            if hasattr(layer, attr):
                used.add(type(getattr(layer, attr)).__name__)
    assert CUSTOM_CLASSES <= used, CUSTOM_CLASSES - used

    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [v.path for v in loaded.weights] == [v.path for v in model.weights]
    assert all(np.array_equal(x, y) for x, y in zip(weights(loaded), weights(model)))
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 4)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)))
    for name in ("conv2d_1", "linear_1", "linear_2"):
        for attr in ("kernel_initializer", "bias_initializer"):
            a, b = getattr(model.get_layer(name), attr), getattr(loaded.get_layer(name), attr)
            assert type(a).__name__ == type(b).__name__ and a.get_config() == b.get_config(), (name, attr)
    assert loaded.get_layer("maxpool2d_1.pad").value == -np.inf
    assert loaded.get_layer("gelu_1").approximate == "tanh"


@pytest.mark.parametrize("obj,shape", [
    (keras_runtime.Dirac(groups=2), (3, 3, 2, 4)),
    (keras_runtime.TruncNormal(mean=0.1, std=0.3, low=-0.2, high=0.5, seed=3), (4, 5)),
    (keras_runtime.Sparse(0.4, std=0.2, column_axis=1, seed=4), (6, 5)),
    (keras_runtime.TorchDefault(seed=5), (3, 3, 2, 4)),
    (keras_runtime.TorchDefault(fan_in=7, seed=5), (4,)),
    (keras_runtime.Values([[1.0, 2.0], [3.0, 4.0]]), (2, 2)),
], ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else str(v))
def test_initializer_config_round_trip(obj, shape):
    config = obj.get_config()
    again = type(obj).from_config(config)
    assert again.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(restored).__name__ == type(obj).__name__
    first = keras.ops.convert_to_numpy(obj(shape))
    assert np.array_equal(keras.ops.convert_to_numpy(again(shape)), first)
    assert np.array_equal(keras.ops.convert_to_numpy(restored(shape)), first)
    assert keras.saving.get_registered_name(type(obj)) == f"nnspec>{type(obj).__name__}"


@pytest.mark.parametrize("layer,shape", [
    (keras_runtime.ConstantPad([(1, 2), (0, 1)], value=-np.inf, name="p.pad"), (2, 3, 4, 2)),
    (keras_runtime.ConstantPad([(2, 1)], value=0.5), (1, 4, 3)),
    (keras_runtime.Gelu(approximate="tanh", name="g"), (2, 5)),
    (keras_runtime.AdaptivePool([3, 2], mode="max", name="a"), (2, 7, 5, 3)),
    (keras_runtime.AdaptivePool([4], name="a"), (2, 6, 3)),
    (keras_runtime.PoolRescale([[1.0, 1.5], [1.0, 3.0, 1.0]], name="p.count"), (2, 2, 3, 4)),
    (keras_runtime.RMSNorm(axis=-1, epsilon=1e-5, gamma_initializer="ones", name="r"), (2, 3, 4)),
    (keras_runtime.LayerScale(gamma_initializer=keras.initializers.Constant(1e-6), name="s"), (2, 4)),
    (keras_runtime.DropPath(0.3, name="d"), (2, 5)),
    (keras_runtime.GroupedConvTranspose(4, (3, 2), 2, strides=(2, 1), output_padding=(1, 0),
                                        kernel_initializer=keras.initializers.HeUniform(seed=1), name="c"),
     (2, 3, 4, 6)),
], ids=["pad2d", "pad1d", "gelu", "adaptive2d", "adaptive1d", "rescale", "rmsnorm", "layerscale", "droppath",
        "grouped_conv_transpose"])
def test_layer_config_round_trip(layer, shape):
    again = type(layer).from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again(x)), y)
    assert tuple(layer.compute_output_shape(shape)) == y.shape


# -- Keras's PyTorch backend ----------------------------------------------------------------------

TORCH_BACKEND_SCRIPT = textwrap.dedent("""
    import os, sys, tempfile, importlib.util
    import keras
    assert keras.backend.backend() == "torch", keras.backend.backend()
    import numpy as np
    import nnspec
    from nnspec.parity import run_parity

    spec = nnspec.loads(sys.argv[1], "every_custom.yaml")
    model = nnspec.build(spec, "keras", seed=1)
    assert type(model).__module__.startswith("keras")
    report = run_parity(spec, seed=1, perturb_weights=True)
    assert report.ok, report.text()

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "emitted_torch_backend.py")
        with open(path, "w") as fh:
            fh.write(nnspec.emit(spec, "keras"))
        module_spec = importlib.util.spec_from_file_location("emitted_torch_backend", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        emitted = module.build(1)
        for a, b in zip(emitted.weights, model.weights):
            assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)), b.path
        model.save(os.path.join(tmp, "m.keras"))
        loaded = keras.models.load_model(os.path.join(tmp, "m.keras"))
        for a, b in zip(loaded.weights, model.weights):
            assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)), b.path
    print("ok", report.max_abs)
""")


def test_runs_on_keras_pytorch_backend():
    env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "2"}
    text = textwrap.dedent(EVERY_CUSTOM) + "  - softmax\n"
    result = subprocess.run([sys.executable, "-c", TORCH_BACKEND_SCRIPT, text], capture_output=True, text=True,
                            env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok"), result.stdout


# -- `nnspec compile --target keras` --------------------------------------------------------------

def test_compile_keras_writes_a_file_and_writes_safely(tmp_path, capsys):
    spec = EXAMPLES / "small_cnn.yaml"
    out = tmp_path / "small_cnn_keras.py"
    assert cli.main(["compile", str(spec), "--target", "keras", "-o", str(out)]) == 0
    text = out.read_text()
    assert text == nnspec.emit(spec, "keras")
    assert text.startswith("# Generated by nnspec")
    assert cli.main(["compile", str(spec), "--target", "keras", "-o", str(out)]) == 0  # ours: replaced

    mine = tmp_path / "mine.py"
    mine.write_text("precious = 1\n")
    capsys.readouterr()
    assert cli.main(["compile", str(spec), "--target", "keras", "-o", str(mine)]) == 2
    assert "--force" in capsys.readouterr().err
    assert mine.read_text() == "precious = 1\n"
    assert cli.main(["compile", str(spec), "--target", "keras", "-o", str(mine), "--force"]) == 0
    assert mine.read_text() == text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".nnspec-")]  # no temporary files left

    capsys.readouterr()
    assert cli.main(["compile", str(spec), "--target", "keras"]) == 0
    assert capsys.readouterr().out == text


def test_drop_path_drops_whole_samples_in_training():
    spec = spec_from_text("nnspec: 1\nname: m\ninput: [3, 4]\nlayers:\n  - residual: {branch: [drop_path: {p: 0.25}], shortcut: [scale: {init: {gamma: zeros}}]}\n")  # shortcut 0
    model = nnspec.build(spec, "keras", seed=0)
    rows = keras.ops.convert_to_numpy(model(np.ones((4000, 4, 3), "float32"), training=True)).reshape(4000, -1)
    kept = rows[:, 0] != 0
    np.testing.assert_allclose(rows[kept], 1 / 0.75, rtol=1e-6)
    assert not rows[~kept].any()
    assert abs((~kept).mean() - 0.25) < 0.03
    x = np.random.default_rng(0).standard_normal((5, 4, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x, training=False)), x)


def test_emitted_keras_has_a_function_per_block_and_loops(tmp_path):
    spec = spec_from_text("""
        nnspec: 1
        name: blocks
        input: [3, 8, 8]
        blocks:
          unit:
            args: {ch: required}
            layers:
              - conv2d: {out: $ch, kernel: 3, padding: 1}
              - relu
          stage:
            args: {ch: required, n: required}
            layers:
              - unit: {ch: $ch, name: first}
              - unit: {ch: $ch, repeat: $n, name: rest}
        layers:
          - stage: {ch: 4, n: 2}
          - stage: {ch: 6, n: 3}
          - global_avg_pool
    """, "blocks.yaml")
    source = nnspec.emit(spec, "keras")
    assert "def unit(x, name: str, *, ch: int) -> keras.KerasTensor:" in source
    assert "    for i in range(n):  # blocks.yaml:14\n        x = unit(x, f\"{name}.rest.{i}\", ch=ch)\n" in source
    # initialisation by rule: PyTorch's defaults by Keras class and role, the bias's fan_in from the kernel
    assert "kernel_initializer" not in source and "bias_initializer" not in source
    assert ('    if isinstance(layer, keras.layers.Conv2D) and role in ("weight", "bias"):\n'
            "        init = torch_default(math.prod(layer.kernel.shape[:-1]), seed)\n") in source
    module = import_source(source, tmp_path, "emitted_blocks")
    assert not ruff_problems(module.__file_path__)
    emitted, built = module.build(4), nnspec.build(spec, "keras", seed=4)
    assert [layer.name for layer in emitted.layers] == [layer.name for layer in built.layers]
    assert all(np.array_equal(x, y) for x, y in zip(weights(emitted), weights(built)))


# -- initialisation by rule in emitted files --------------------------------------------------------

RULES_SPEC = """
nnspec: 1
name: rules
input: [3, 8, 8]
seed: 5
init:
  paths:
    "unit_*.conv2d_2.weight": {normal: {std: 0.05}}
  conv2d: {weight: {kaiming_normal: {mode: fan_out, nonlinearity: relu}}}
  batchnorm: {gamma: ones, beta: zeros}
  bias: {constant: 0.1}
blocks:
  unit:
    args: {ch: required}
    layers:
      - conv2d: {out: $ch, kernel: 3, padding: 1}
      - batchnorm
      - relu
      - conv2d: {out: $ch, kernel: 1}
layers:
  - unit: {ch: 4}
  - unit: {ch: 6, init: {conv2d: {weight: he_uniform}}}
  - global_avg_pool
  - linear: {out: 5}
  - linear: {out: 3, init: {weight: zeros}}
"""


def test_emitted_keras_initialises_by_the_spec_rules(tmp_path):
    """`spec_init` mirrors the spec's `init`: a rule per model-wide default under its line, PyTorch's default
    where the spec says nothing, then the block call's, the path pattern's and the layer's exceptions; the
    layers carry no initializer; the model is the built one, bit for bit, and saves and loads."""
    spec = spec_from_text(RULES_SPEC, "rules.yaml")
    source = nnspec.emit(spec, "keras")
    assert "_initializer=" not in source.split("def spec_init")[0]  # the layers carry no initializer
    body = source.split("def spec_init")[1].split("\ndef ")[0]
    expected = [
        "# PyTorch's default: linear weight",
        "# rules.yaml:10: init.bias = constant(value=0.1)",
        "# rules.yaml:8: init.conv2d.weight = kaiming_normal(a=0.0, mode='fan_out', nonlinearity='relu')",
        "# rules.yaml:9: init.batchnorm.gamma = ones",
        "# rules.yaml:21: block call init.conv2d.weight = he_uniform",
        '# rules.yaml:7: init.paths["unit_*.conv2d_2.weight"] = normal(mean=0.0, std=0.05)',
        "# rules.yaml:24: linear_2.weight = zeros",
    ]
    at = [body.index(line) for line in expected]
    assert at == sorted(at), body
    assert 'if isinstance(layer, keras.layers.Dense) and role == "weight":' in body
    assert "init = torch_default(math.prod(layer.kernel.shape[:-1]), seed)" in body
    assert 'path.startswith("unit_2.")' in body  # the block call's exception
    assert 'if path.endswith(".conv2d_2") and role == "weight":' in body  # the pattern's layers
    assert 'if path == "linear_2" and role == "weight":' in body
    module = import_source(source, tmp_path, "emitted_rules")
    assert not ruff_problems(module.__file_path__)
    emitted, built = module.build(), nnspec.build(spec, "keras")
    assert [layer.name for layer in emitted.layers] == [layer.name for layer in built.layers]
    assert [v.path for v in emitted.weights] == [v.path for v in built.weights]
    for v, x, y in zip(built.weights, weights(emitted), weights(built)):
        assert x.dtype == y.dtype and np.array_equal(x, y), v.path
    emitted.save(tmp_path / "emitted.keras")
    loaded = keras.models.load_model(tmp_path / "emitted.keras")
    assert all(np.array_equal(x, y) for x, y in zip(weights(loaded), weights(emitted)))


def test_emitted_keras_models_with_nnspec_layers_save_and_load(tmp_path):
    spec = spec_of("vit_like")
    module = import_source(nnspec.emit(spec, "keras"), tmp_path, "emitted_vit_like")
    model = module.build(2)
    model.save(tmp_path / "vit_like.keras")
    loaded = keras.models.load_model(tmp_path / "vit_like.keras")
    assert [v.path for v in loaded.weights] == [v.path for v in model.weights]
    assert all(np.array_equal(x, y) for x, y in zip(weights(loaded), weights(model)))
    x = np.random.default_rng(0).standard_normal((2, *model.input_shape[1:])).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)))


def test_inlined_keras_seed_is_the_builds():
    from nnspec.compiler.backends import seeding

    for seed, path in ((0, "conv1.weight"), (2**63 - 1, "a.b#chunk3"), (12345, "é")):
        assert keras_runtime.keras_seed(seed, path) == seeding.keras_seed(seed, path)


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "vgg16", "vit_b_16", "gpt2_small"])
def test_emitted_keras_line_goals(name):
    """The goals of benchmarks/emitted_lines.py (ruff-formatted, comments included) on the Keras target."""
    sys.path.insert(0, str(EXAMPLES.parent / "benchmarks"))
    try:
        import emitted_lines
    finally:
        sys.path.pop(0)
    source = emitted_lines.formatted(nnspec.emit(nnspec.load(EXAMPLES / f"{name}.yaml"), "keras"))
    assert len(source.splitlines()) <= emitted_lines.GOALS[f"{name}.yaml"]


def test_every_examples_emitted_keras_file_is_ruff_clean(tmp_path):
    """Every example's emitted Keras file, as ruff checks and formats it (rules, imports, comment places)."""
    problems = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        try:
            spec = nnspec.load(path)
        except nnspec.SpecError:
            continue  # an example of what `check` refuses
        target = tmp_path / f"{path.stem}_keras.py"
        target.write_text(nnspec.emit(spec, "keras"), encoding="utf-8")
        found = ruff_problems(target)
        if found:
            problems[path.name] = found
    assert not problems, problems
