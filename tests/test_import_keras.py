"""`nnspec import keras` / `nnspec.from_keras`: small Sequential and functional models and the
keras.applications that decompose (ResNet50, MobileNetV2 on an odd input size, DenseNet121) rebuild on the
Keras target with the source's weights and the same output; what cannot be written is a named diagnostic."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")
pytest.importorskip("scipy.stats")

import numpy as np  # noqa: E402

import nnspec  # noqa: E402
from nnspec.compiler.pipeline import analyse_text  # noqa: E402
from nnspec.importing import ImportProblem, from_keras  # noqa: E402
from nnspec.importing.keras_import import state_dict  # noqa: E402

L = keras.layers


def round_trip(model, shape, atol=1e-5):
    """Import, check clean, build for torch and Keras with the source's weights, compare the outputs."""
    torch.set_num_threads(1)
    text = from_keras(model)
    _, diagnostics = analyse_text(text, "<imported>")
    assert [d for d in diagnostics if d.is_error] == []
    spec = nnspec.loads(text)
    torch_model = nnspec.build(spec).eval()
    report = nnspec.load_weights(torch_model, state_dict(model), strict=False)
    assert not report.mismatched and not report.unexpected
    assert all(key.endswith("num_batches_tracked") for key, _ in report.missing)
    keras_model = nnspec.build(spec, target="keras")
    nnspec.transfer(torch_model, keras_model, spec)
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype("float32")
    expected = np.asarray(model(x, training=False))
    np.testing.assert_allclose(np.asarray(keras_model(x, training=False)), expected, atol=atol)
    channels_first = np.moveaxis(x, -1, 1).copy() if x.ndim > 2 else x
    with torch.no_grad():
        np.testing.assert_allclose(torch_model(torch.from_numpy(channels_first)).numpy(), expected, atol=atol)
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


def test_resnet50():
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classifier_activation=None)
    text = round_trip(model, (32, 32, 3), atol=1e-4)
    assert "repeat: 5" in text and len(text.splitlines()) < 80  # repeated merges become blocks


def test_mobilenet_v2_on_an_odd_input():
    # on an odd size Keras's 'same' padding and correct_pad are symmetric: the model imports
    model = keras.applications.MobileNetV2(weights=None, input_shape=(33, 33, 3), classifier_activation=None)
    round_trip(model, (33, 33, 3), atol=1e-4)


def test_densenet121():
    model = keras.applications.DenseNet121(weights=None, input_shape=(32, 32, 3), classifier_activation=None)
    round_trip(model, (32, 32, 3), atol=1e-4)


@pytest.mark.parametrize("make,where,what", [
    (lambda: keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3)), "Conv1",
     "asymmetric padding"),
    (lambda: keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3)), "rescaling",
     "Rescaling"),
    (lambda: keras.Sequential([keras.Input((8, 8, 3)), L.ZeroPadding2D(((0, 1), (0, 1))), L.Conv2D(2, 3)]),
     "zero_padding2d", "asymmetric"),
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
        "    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255)])\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["import", "keras", "kmodels:small", "--args", '{"width": 5}', "-o", "small.yaml"]) == 0
    assert "conv2d: {out: 5, kernel: 3}" in (tmp_path / "small.yaml").read_text()
    assert main(["check", "small.yaml"]) == 0
    capsys.readouterr()
    assert main(["import", "keras", "kmodels:bad"]) == 1
    assert "rescaling: error: Rescaling" in capsys.readouterr().err
    assert main(["import", "keras", "kmodels:small", "--input", "3,8,8"]) == 2
