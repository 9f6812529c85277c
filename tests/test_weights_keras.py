"""load_weights with Keras on either side: a Keras model built from the spec as the model (loaded through the
spec's PyTorch model, then transferred) and a Keras model as the source (its variables read back in the
PyTorch layout by the spec, or, for any other Keras model, as `nnspec import keras` reads it); the same
function after loading, in both directions, on a convnet and on recurrent models."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

import nnspec  # noqa: E402
from nnspec.parity import random_batch  # noqa: E402
from nnspec.weights import WeightsError, keras_state_dict  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SMALL_CNN = ROOT / "examples" / "small_cnn.yaml"
LSTM = ROOT / "examples" / "lstm_classifier.yaml"  # two stacked bidirectional layers
GRU = """
nnspec: 1
name: gru_tokens
input: {shape: [5, 3], layout: tokens}
layers:
  - gru: {hidden: 4, layers: 2, bidirectional: true}
  - linear: {out: 6}
  - lstm: {hidden: 3, output: last}
"""


def _spec(which):
    return nnspec.loads(which) if isinstance(which, str) else nnspec.load(which)


def _torch_model(spec, seed):
    torch.set_num_threads(1)
    model = nnspec.build(spec, "torch", seed=seed).eval()
    with torch.no_grad():  # statistics and biases away from their initial values, so that they are tested too
        for name, tensor in model.state_dict().items():
            if name.endswith(("running_mean", "running_var", "bias_hh_l0", "bias_ih_l0")):
                tensor.uniform_(0.5, 1.5)
    return model


def _outputs(spec, torch_model, keras_model):
    x = random_batch(spec, 2, 0)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    keras_x = np.moveaxis(x, 1, -1) if x.ndim > 2 and spec.graph.input_shape.layout == "map" else x
    got = np.asarray(keras_model(keras_x, training=False))
    return expected, got


CASES = [SMALL_CNN, LSTM, GRU]
IDS = ["small_cnn", "lstm", "gru"]


@pytest.mark.parametrize("which", CASES, ids=IDS)
def test_a_keras_model_as_the_source(which):
    spec = _spec(which)
    keras_model = nnspec.build(spec, "keras", seed=3)
    nnspec.transfer(_torch_model(spec, 7), keras_model, spec)  # the Keras model's own weights
    torch_model = _torch_model(spec, 11)
    report = nnspec.load_weights(torch_model, keras_model, spec=spec)
    assert report.ok and {how for _, _, how, _ in report.matches} == {"name"}
    assert report.loaded == len([k for k in torch_model.state_dict() if not k.endswith("num_batches_tracked")])
    assert "Keras" in report.source and any("num_batches_tracked" in note for note in report.notes)
    expected, got = _outputs(spec, torch_model, keras_model)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("which", CASES, ids=IDS)
def test_a_keras_model_as_the_model(which):
    spec = _spec(which)
    torch_model = _torch_model(spec, 7)
    keras_model = nnspec.build(spec, "keras", seed=3)
    report = nnspec.load_weights(keras_model, torch_model.state_dict(), spec=spec)
    assert report.model is keras_model and report.ok and report.loaded == len(report.matches)
    expected, got = _outputs(spec, torch_model, keras_model)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # Keras to Keras: another Keras model of the spec as the source
    other = nnspec.build(spec, "keras", seed=4)
    nnspec.load_weights(other, keras_model, spec=spec)
    x = random_batch(spec, 2, 1)
    x = np.moveaxis(x, 1, -1) if x.ndim > 2 and spec.graph.input_shape.layout == "map" else x
    np.testing.assert_allclose(np.asarray(other(x, training=False)), np.asarray(keras_model(x, training=False)),
                               rtol=1e-5, atol=1e-6)


def test_the_inverse_of_transfer_is_exact_for_every_tensor_but_the_lstm_biases():
    spec = _spec(SMALL_CNN)
    torch_model = _torch_model(spec, 7)
    keras_model = nnspec.build(spec, "keras", seed=3)
    nnspec.transfer(torch_model, keras_model, spec)
    state = keras_state_dict(keras_model, spec)
    expected = {k: v for k, v in torch_model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert list(state) == list(expected)  # the PyTorch model's order
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    # Keras holds an LSTM's bias_ih + bias_hh as one bias: read back as bias_ih, with bias_hh zeros
    spec = _spec(LSTM)
    torch_model = _torch_model(spec, 7)
    keras_model = nnspec.build(spec, "keras", seed=3)
    nnspec.transfer(torch_model, keras_model, spec)
    state = keras_state_dict(keras_model, spec)
    original = torch_model.state_dict()
    for key in original:
        if ".bias_" in key:
            continue
        torch.testing.assert_close(state[key], original[key], rtol=0, atol=0)
    key = "lstm_1.bias_ih_l1_reverse"
    torch.testing.assert_close(state[key], original[key] + original[key.replace("_ih_", "_hh_")])
    assert not state[key.replace("_ih_", "_hh_")].any()


def test_strict_refuses_and_the_keras_model_keeps_its_weights():
    spec = _spec(SMALL_CNN)
    keras_model = nnspec.build(spec, "keras", seed=3)
    before = [w.copy() for w in keras_model.get_weights()]
    partial = {k: v for k, v in _torch_model(spec, 7).state_dict().items() if not k.startswith("head.")}
    with pytest.raises(WeightsError) as info:
        nnspec.load_weights(keras_model, partial, spec=spec)
    assert info.value.report.loaded == 0 and ("head.weight", (10, 128)) in info.value.report.missing
    assert all(np.array_equal(a, b) for a, b in zip(before, keras_model.get_weights()))
    # strict=False loads what matches; the head keeps the Keras model's own values
    report = nnspec.load_weights(keras_model, partial, spec=spec, strict=False)
    assert report.loaded == len(partial) - 1  # num_batches_tracked is not matched
    assert np.array_equal(keras_model.get_layer("head").get_weights()[0], before[-2])
    assert not np.array_equal(keras_model.get_layer("conv2d_1").get_weights()[0], before[0])


def test_what_load_weights_refuses_with_keras():
    spec = _spec(SMALL_CNN)
    keras_model = nnspec.build(spec, "keras", seed=3)
    with pytest.raises(ValueError, match="needs the spec it was built from"):
        nnspec.load_weights(keras_model, {})
    with pytest.raises(ValueError, match="was not built from the spec `lstm_classifier`"):
        nnspec.load_weights(keras_model, {}, spec=LSTM)
    # a Keras model of nnspec read without its spec: not a graph the import reads, and the message says so
    with pytest.raises(ValueError, match="give the spec it was built from"):
        nnspec.load_weights(nnspec.build(spec), nnspec.build(LSTM, "keras"))


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5"])
def test_cli_converts_a_keras_file_to_pytorch_keys(suffix, tmp_path, capsys):
    from nnspec.cli import main

    spec = _spec(SMALL_CNN)
    torch_model = _torch_model(spec, 7)
    keras_model = nnspec.build(spec, "keras", seed=3)
    nnspec.transfer(torch_model, keras_model, spec)
    saved = tmp_path / f"model{suffix}"
    keras_model.save(saved) if suffix == ".keras" else keras_model.save_weights(saved)
    out = tmp_path / "out.safetensors"
    assert main(["weights", str(SMALL_CNN), "--from", str(saved), "--save", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "nothing left over" in printed
    assert f"saved 11 tensor(s) under nnspec's keys to {out} (and 1 num_batches_tracked at 0)" in printed
    loaded = nnspec.build(spec, "torch", seed=11).eval()
    assert nnspec.load_weights(loaded, out).ok  # a whole state dict: the step counters as a fresh model's
    x = torch.from_numpy(random_batch(spec, 2, 0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), torch_model(x))
    # the same file as load_weights' source, and a .weights.h5 without a spec: refused with the reason
    assert nnspec.load_weights(nnspec.build(spec), saved, spec=spec).ok
    if suffix == ".weights.h5":
        with pytest.raises(ValueError, match="holds no architecture"):
            nnspec.load_weights(nnspec.build(spec), saved)
    if suffix == ".keras":  # nnspec transfer reads it too: Keras to Keras through the spec
        out = tmp_path / "again.weights.h5"
        assert main(["transfer", str(SMALL_CNN), "--from", str(saved), "-o", str(out)]) == 0
        again = nnspec.build(spec, "keras", seed=9)
        again.load_weights(out)
        assert all(np.array_equal(a, b) for a, b in zip(again.get_weights(), keras_model.get_weights()))
