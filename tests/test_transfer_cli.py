"""`nnspec transfer SPEC --from WEIGHTS -o OUT`: PyTorch weights into the spec's Keras model, saved; the
saved Keras model computes what the PyTorch model with those weights computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.cli import main

ROOT = Path(__file__).resolve().parent.parent
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")


def _weights(spec_path: Path, tmp_path: Path, seed: int = 5):
    """A PyTorch model of the spec with its own weights (not the spec's seed), saved as a state dict."""
    model = nnspec.build(spec_path, "torch", seed=seed).eval()
    with torch.no_grad():
        for buffer_name, buffer in model.named_buffers():
            if buffer_name.endswith(("running_mean", "running_var")):
                buffer.uniform_(0.5, 1.5)
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.mark.parametrize("name, suffix", [("lstm_classifier.yaml", ".weights.h5"), ("small_cnn.yaml", ".keras")])
def test_transfer_writes_a_keras_model_with_the_same_function(name, suffix, tmp_path, capsys):
    spec_path = ROOT / "examples" / name
    torch_model, weights = _weights(spec_path, tmp_path)
    out = tmp_path / f"model{suffix}"
    assert main(["transfer", str(spec_path), "--from", str(weights), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    if suffix == ".keras":
        keras_model = keras.models.load_model(out)
    else:
        keras_model = nnspec.build(spec_path, "keras", seed=99)
        keras_model.load_weights(out)
    spec = nnspec.load(spec_path)
    from nnspec.parity import random_batch

    x = random_batch(spec, 2, 0)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    if x.ndim > 2:  # images: Keras is channels-last
        x = np.moveaxis(x, 1, -1)
    got = np.asarray(keras_model(x, training=False))
    if got.ndim > 2:
        got = np.moveaxis(got, -1, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_transfer_refuses_what_it_should(tmp_path, capsys):
    spec_path = ROOT / "examples" / "small_cnn.yaml"
    _, weights = _weights(spec_path, tmp_path)
    out = tmp_path / "model.weights.h5"
    out.write_text("mine")
    assert main(["transfer", str(spec_path), "--from", str(weights), "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_text() == "mine"
    assert main(["transfer", str(spec_path), "--from", str(weights), "-o", str(tmp_path / "model.h5")]) == 2
    assert ".weights.h5" in capsys.readouterr().err
    other = ROOT / "examples" / "mlp.yaml"  # weights of another model: nothing fits, nothing is written
    fresh = tmp_path / "other.weights.h5"
    assert main(["transfer", str(other), "--from", str(weights), "-o", str(fresh)]) == 1
    assert "nothing was written" in capsys.readouterr().err and not fresh.exists()
    assert main(["transfer", str(spec_path), "--from", str(weights), "-o", str(out), "--force"]) == 0
    assert out.read_bytes()[:4] != b"mine"
