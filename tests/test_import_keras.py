"""`nnspec import keras` / `nnspec.from_keras`: small Sequential and functional models and the
keras.applications ResNet50, MobileNetV2, DenseNet121 and EfficientNetB0 at 224x224 rebuild on both targets
with the source's weights (loaded by `load_weights` from the Keras model itself) and the same eval output;
Keras's asymmetric padding is a `pad`, Rescaling and Normalization a `rescale`; what cannot be written is a
named diagnostic."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")
pytest.importorskip("scipy.stats")

import numpy as np  # noqa: E402

import nnspec  # noqa: E402
from nnspec.compiler.pipeline import analyse_text  # noqa: E402
from nnspec.importing import ImportProblem, from_keras  # noqa: E402

L = keras.layers


def perturb(model, seed=0):
    """Batchnorm statistics away from their initial values, so that the eval outputs test them too."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.1, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
    return model


def round_trip(model, shape, atol=1e-5, batch=2):
    """Import, check clean, build for torch and Keras with the source's weights (load_weights reads the Keras
    model), compare the outputs."""
    torch.set_num_threads(1)
    text = from_keras(model)
    _, diagnostics = analyse_text(text, "<imported>")
    assert [d for d in diagnostics if d.is_error] == []
    spec = nnspec.loads(text)
    torch_model = nnspec.build(spec).eval()
    report = nnspec.load_weights(torch_model, model)  # strict: every tensor by name
    assert report.ok and {how for _, _, how, _ in report.matches} == {"name"}
    keras_model = nnspec.build(spec, target="keras")
    nnspec.transfer(torch_model, keras_model, spec)
    x = np.random.default_rng(0).standard_normal((batch, *shape)).astype("float32")
    expected = np.asarray(model(x, training=False))
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(np.asarray(keras_model(x, training=False)), expected, atol=atol * scale)
    channels_first = np.moveaxis(x, -1, 1).copy() if x.ndim > 2 else x
    with torch.no_grad():
        got = torch_model(torch.from_numpy(channels_first)).numpy()
    np.testing.assert_allclose(np.moveaxis(got, 1, -1) if got.ndim > 2 else got, expected, atol=atol * scale)
    return text


def test_sequential():
    model = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, padding="same", activation="relu"),
                              L.BatchNormalization(), L.MaxPooling2D(), L.Conv2D(6, 3, strides=2, use_bias=False),
                              L.Flatten(), L.Dropout(0.1), L.Dense(10, activation="softmax")])
    text = round_trip(model, (8, 8, 3))
    assert "input: [3, 8, 8]" in text  # channels last -> the logical layout
    assert "batchnorm: {eps: 0.001, momentum: 0.01}" in text  # Keras's momentum 0.99 in PyTorch's convention
    assert "weight: glorot_uniform" in text and "bias: zeros" in text  # Keras's defaults, inferred


def test_functional_merges():
    inputs = keras.Input((8, 8, 4))
    x = L.Conv2D(4, 3, padding="same")(inputs)
    a = L.Conv2D(4, 1, activation="relu")(x)
    b = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.Activation("relu")(L.Add()([x, a]))
    x = L.Concatenate()([x, b])
    gate = L.Conv2D(8, 1, activation="sigmoid")(L.GlobalAveragePooling2D(keepdims=True)(x))
    x = L.Multiply()([x, gate])
    outputs = L.Dense(3)(L.GlobalAveragePooling2D()(x))
    text = round_trip(keras.Model(inputs, outputs), (8, 8, 4))
    assert "residual:" in text and "concat:" in text and "multiply:" in text and "groups: 4" in text


def test_feature_input_and_a_dense_after_flatten_of_a_map():
    model = keras.Sequential([keras.Input((6,)), L.Dense(5, activation="tanh"), L.Dense(2)])
    assert "input: [6]" in round_trip(model, (6,))
    # Keras flattens (H, W, C), the spec (C, H, W): the Dense's rows are reordered
    model = keras.Sequential([keras.Input((4, 4, 3)), L.Conv2D(5, 3), L.Flatten(), L.Dense(7)])
    round_trip(model, (4, 4, 3))


def test_asymmetric_padding_is_a_pad():
    # ZeroPadding2D of any shape, and Keras's 'same' with stride 2 on an even size (one more row and column at
    # the end): a `pad` before the conv; symmetric padding still folds into the conv and the max pool
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inputs)  # 8 -> 4: pads 0 before, 1 after
    x = L.ZeroPadding2D(1)(x)
    x = L.MaxPooling2D(3, strides=1)(x)
    x = L.ZeroPadding2D(((0, 1), (2, 1)))(x)
    x = L.DepthwiseConv2D(3, strides=2)(x)
    x = L.ZeroPadding2D(1)(x)
    outputs = L.Conv2D(2, 3)(L.ZeroPadding2D(((1, 0), (0, 0)))(L.AveragePooling2D(1)(x)))
    text = round_trip(keras.Model(inputs, outputs), (8, 8, 3))
    layers = text[text.index("layers:"):]
    assert layers.split("\n  - ")[1:] == [
        "pad: {padding: [[0, 1], [0, 1]]}", "conv2d: {out: 4, kernel: 3, stride: 2}", "relu",
        "maxpool2d: {kernel: 3, stride: 1, padding: 1}",  # after a ReLU zero and -inf padding agree
        "pad: {padding: [[0, 1], [2, 1]]}", "conv2d: {out: 4, kernel: 3, stride: 2, groups: 4}",
        "pad: {padding: 1}", "avgpool2d: {kernel: 1}",  # before no conv or max pool: a pad
        "pad: {padding: [[1, 0], 0]}", "conv2d: {out: 2, kernel: 3}\n"]


def test_preprocessing_is_a_rescale():
    # Rescaling (one factor, or one per channel) and Normalization (per channel or of every element) are
    # constants: x * scale + offset
    inputs = keras.Input((6, 6, 3))
    x = L.Rescaling(1 / 255)(inputs)
    x = L.Normalization(mean=[0.485, 0.456, 0.406], variance=[0.052, 0.05, 0.051])(x)
    x = L.Rescaling([2.0, 1.0, 0.5], offset=0.25)(x)
    x = L.Normalization(axis=None, mean=0.5, variance=4.0)(x)
    adapted = L.Normalization()
    adapted.adapt(np.random.default_rng(1).uniform(0, 2, (16, 6, 6, 3)).astype("float32"))
    x = L.Conv2D(4, 3)(adapted(x))
    text = round_trip(keras.Model(inputs, x), (6, 6, 3))
    assert "rescale: {scale: 0.003921569}" in text and "rescale: {scale: [2.0, 1.0, 0.5], offset: 0.25}" in text
    assert "rescale: {scale: 0.5, offset: -0.25}" in text
    assert text.count("rescale:") == 5


def test_pad_and_rescale_emitted_and_saved(tmp_path):
    # the imported spec's emitted files (both targets) and its saved Keras model compute what the source does
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from helpers import import_source

    inputs = keras.Input((8, 8, 3))
    x = L.Normalization(mean=[0.485, 0.456, 0.406], variance=[0.052, 0.05, 0.051])(L.Rescaling(1 / 255)(inputs))
    x = L.Conv2D(4, 3, strides=2, padding="same", activation="relu")(x)
    outputs = L.Conv2D(2, 3)(L.ZeroPadding2D(((1, 2), (0, 1)))(x))
    model = keras.Model(inputs, outputs)
    spec = nnspec.loads(from_keras(model))
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = np.asarray(model(x))
    emitted = import_source(nnspec.emit(spec, "keras"), tmp_path, "keras_emitted").build()
    nnspec.load_weights(emitted, model, spec=spec)
    np.testing.assert_allclose(np.asarray(emitted(x)), expected, rtol=1e-5, atol=1e-5)
    emitted.save(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(keras.models.load_model(tmp_path / "m.keras")(x)), expected, rtol=1e-5,
                               atol=1e-5)
    torch_model = import_source(nnspec.emit(spec), tmp_path, "torch_emitted").build().eval()
    nnspec.load_weights(torch_model, model)
    with torch.no_grad():
        got = torch_model(torch.from_numpy(np.moveaxis(x, -1, 1).copy())).numpy()
    np.testing.assert_allclose(np.moveaxis(got, 1, -1), expected, rtol=1e-5, atol=1e-5)


def test_squeeze_excitation_and_drop_connect():
    # EfficientNet's: a pool then Reshape((1, 1, C)) is a pool that keeps its axes; a Dropout of whole
    # samples (noise_shape (None, 1, 1, 1)) in a residual branch is drop_path
    inputs = keras.Input((6, 6, 8))
    x = L.Conv2D(8, 1, activation="swish")(inputs)
    se = L.Reshape((1, 1, 8))(L.GlobalAveragePooling2D()(x))
    se = L.Conv2D(8, 1, activation="sigmoid")(L.Conv2D(2, 1, activation="swish")(se))
    x = L.Dropout(0.2, noise_shape=(None, 1, 1, 1))(L.Multiply()([x, se]))
    outputs = L.Dense(3)(L.GlobalAveragePooling2D()(L.Add()([x, inputs])))
    text = round_trip(keras.Model(inputs, outputs), (6, 6, 8))
    assert "global_avg_pool: {keep_dims: true}" in text and "drop_path: {p: 0.2}" in text and "silu" in text


def perturbed_application(name):
    keras.backend.clear_session()
    make = getattr(keras.applications, name)
    return perturb(make(weights=None, input_shape=(224, 224, 3), classifier_activation=None))


def test_resnet50():
    text = round_trip(perturbed_application("ResNet50"), (224, 224, 3), atol=1e-4, batch=1)
    assert "repeat: 5" in text and len(text.splitlines()) < 80  # repeated merges become blocks


def test_mobilenet_v2():
    # at 224 Keras's 'same' with stride 2 and correct_pad pad one more row and column at the end: `pad`
    text = round_trip(perturbed_application("MobileNetV2"), (224, 224, 3), atol=1e-4, batch=1)
    assert "pad: {padding: [[0, 1], [0, 1]]}" in text


def test_densenet121():
    round_trip(perturbed_application("DenseNet121"), (224, 224, 3), atol=1e-4, batch=1)


def test_efficientnet_b0():
    # Rescaling and Normalization at the input, asymmetric pads, squeeze-excitation, swish, drop connect
    model = perturbed_application("EfficientNetB0")
    normalization = next(layer for layer in model.layers if isinstance(layer, L.Normalization))
    normalization.adapt_mean.assign(np.array([0.485, 0.456, 0.406], "float32"))
    normalization.adapt_variance.assign(np.array([0.052, 0.05, 0.051], "float32"))
    normalization.finalize_state()
    text = round_trip(model, (224, 224, 3), atol=1e-4, batch=1)
    assert "rescale: {scale: 0.003921569}" in text and "pad: {padding: [[1, 2], [1, 2]]}" in text
    assert "multiply:" in text and "drop_path:" in text


@pytest.mark.parametrize("make,where,what", [
    (lambda: keras.Sequential([keras.Input((8, 8, 3)), L.Normalization(invert=True, mean=0.5, variance=2.0)]),
     "normalization", "invert"),
    (lambda: keras.Sequential([keras.Input((8, 8, 3)), L.Dropout(0.1, noise_shape=(None, 8, 1, 3))]),
     "dropout", "noise_shape"),
    (lambda: keras.Sequential([keras.Input((8, 8, 3)), L.MaxPooling2D(3, strides=2, padding="same")]),
     "max_pooling2d", "leaves the padding out"),
    (lambda: keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(2, 3), L.Reshape((36, 2))]), "reshape",
     "Reshape"),
    (lambda: keras.Sequential([keras.Input((8, 8, 3)), L.AveragePooling2D(3, 1, padding="same")]),
     "average_pooling2d",
     "counts it"),
])
def test_what_cannot_be_written_is_named(make, where, what):
    keras.backend.clear_session()
    with pytest.raises(ImportProblem) as info:
        from_keras(make())
    assert info.value.where == where and what in str(info.value)


def test_cli_import_keras(tmp_path, monkeypatch, capsys):
    import sys

    from nnspec.cli import main

    (tmp_path / "kmodels.py").write_text(
        "import keras\n\n"
        "def small(width=4):\n"
        "    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(width, 3, activation='relu'),\n"
        "                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])\n\n"
        "def bad():\n"
        "    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Reshape((64, 3))])\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["import", "keras", "kmodels:small", "--args", '{"width": 5}', "-o", "small.yaml"]) == 0
    assert "conv2d: {out: 5, kernel: 3}" in (tmp_path / "small.yaml").read_text()
    assert main(["check", "small.yaml"]) == 0
    capsys.readouterr()
    assert main(["import", "keras", "kmodels:bad"]) == 1
    assert "reshape: error: Reshape" in capsys.readouterr().err
    assert main(["import", "keras", "kmodels:small", "--input", "3,8,8"]) == 2


def test_efficientnet_initializers_are_named():
    """keras.applications' EfficientNets draw conv kernels from VarianceScaling(2, fan_out, truncated_normal)
    and the classifier from VarianceScaling(1/3, fan_out, uniform): both are candidates of the inference."""
    from nnspec.importing.inits import infer

    conv = keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal", seed=1)((3, 3, 96, 48))
    torch_layout = np.transpose(np.asarray(conv), (3, 2, 0, 1))  # (out, in, kh, kw)
    found = infer(torch_layout, "conv2d", "weight", 96 * 9, 48 * 9, keras=True)
    assert found.best_value == {"variance_scaling": {"scale": 2.0, "mode": "fan_out"}}
    dense = keras.initializers.VarianceScaling(1 / 3, "fan_out", "uniform", seed=2)((320, 1000))
    found = infer(np.asarray(dense).T, "linear", "weight", 320, 1000, keras=True)
    assert found.best_value == {"variance_scaling": {"scale": 1 / 3, "mode": "fan_out", "distribution": "uniform"}}
