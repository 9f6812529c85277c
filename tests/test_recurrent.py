"""`lstm` and `gru`: the same function as torch.nn.LSTM/GRU with the same weights, PyTorch's keys and
initialisation, and on Keras the same function (keras.layers.LSTM/GRU, Bidirectional) and the same
distributions through Keras's own initializers."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
stats = pytest.importorskip("scipy.stats")

from helpers import EXAMPLES, spec_from_text  # noqa: E402

import nnspec  # noqa: E402
from nnspec.parity import run_parity  # noqa: E402

torch.set_num_threads(1)


def recurrent_spec(kind: str, args: str, init: str = "", width: int = 5, length: int = 6):
    return spec_from_text(f"""
        nnspec: 1
        name: {kind}_only
        input: {{shape: [{length}, {width}], layout: tokens}}
        layers:
          - {kind}: {{{args}{', init: ' + init if init else ''}}}
    """, f"{kind}.yaml")


CASES = [("lstm", "hidden: 3"), ("lstm", "hidden: 4, layers: 2, bidirectional: true"),
         ("lstm", "hidden: 3, layers: 2, output: last"), ("lstm", "hidden: 2, bidirectional: true, output: last"),
         ("gru", "hidden: 3"), ("gru", "hidden: 4, layers: 3, bidirectional: true"),
         ("gru", "hidden: 3, output: last"), ("gru", "hidden: 2, layers: 2, bidirectional: true, output: last")]


@pytest.mark.parametrize("kind, args", CASES)
def test_equal_to_torch_recurrent_module_with_the_same_weights(kind, args):
    spec = recurrent_spec(kind, args)
    model = nnspec.build(spec, "torch", seed=2).eval()
    (layer,) = spec.graph.layers()
    a = layer.args
    cls = torch.nn.LSTM if kind == "lstm" else torch.nn.GRU
    reference = cls(5, a["hidden"], num_layers=a["layers"], batch_first=True, bidirectional=a["bidirectional"])
    state = {key.split(".", 1)[1]: value for key, value in model.state_dict().items()}
    assert list(state) == list(reference.state_dict())  # PyTorch's keys, in PyTorch's order
    reference.load_state_dict(state)
    x = torch.randn(3, 6, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, h = reference(x)
        h = h[0] if kind == "lstm" else h
        got = model(x)
    if a["output"] == "sequence":
        torch.testing.assert_close(got, out)
        return
    dirs = 2 if a["bidirectional"] else 1
    torch.testing.assert_close(got, torch.cat(list(h[-dirs:]), dim=1))  # h_n of the top layer, forward first
    width = a["hidden"]
    torch.testing.assert_close(got[:, :width], out[:, -1, :width])  # forward: its output at the last step
    if dirs == 2:
        torch.testing.assert_close(got[:, width:], out[:, 0, width:])  # backward: its output at step 0
    assert tuple(got.shape[1:]) == layer.out_shape


@pytest.mark.parametrize("kind, args", CASES)
def test_keras_computes_the_same_function(kind, args):
    report = run_parity(recurrent_spec(kind, args), seed=3, perturb_weights=True)
    assert report.ok, report.text()


def test_tensor_names_roles_shapes_and_fans():
    spec = recurrent_spec("gru", "hidden: 4, layers: 2, bidirectional: true")
    (layer,) = spec.graph.layers()
    assert list(layer.tensors)[:8] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                       "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse",
                                       "bias_hh_l0_reverse"]
    t = layer.tensors
    assert (t["weight_ih_l0"].role, t["weight_ih_l0"].shape, t["weight_ih_l0"].fan_in) == ("weight_ih", (12, 5), 5)
    assert (t["weight_ih_l1"].shape, t["weight_ih_l1"].fan_in, t["weight_ih_l1"].fan_out) == ((12, 8), 8, 12)
    assert t["weight_hh_l1_reverse"].shape == (12, 4) and t["bias_hh_l1_reverse"].role == "bias_hh"
    assert t["weight_ih_l1"].path == "gru_1.weight_ih_l1"
    assert layer.params == sum(p.numel() for p in torch.nn.GRU(5, 4, 2, bidirectional=True).parameters())


def test_init_by_role_reaches_every_layer_and_direction_and_paths_reach_one():
    spec = spec_from_text("""
        nnspec: 1
        name: roles
        input: {shape: [4, 3], layout: tokens}
        init:
          lstm: {weight_hh: orthogonal}
          paths:
            "lstm_1.weight_hh_l1_reverse": eye
        layers:
          - lstm: {hidden: 3, layers: 2, bidirectional: true, init: {bias_ih: {chunks: [zeros, ones, zeros, zeros]}}}
    """, "roles.yaml")
    (layer,) = spec.graph.layers()
    inits = {key: t.init.name for key, t in layer.tensors.items()}
    assert [inits[f"weight_hh_l{k}{s}"] for k in (0, 1) for s in ("", "_reverse")] == \
        ["orthogonal", "orthogonal", "orthogonal", "eye"]
    assert all(inits[f"bias_ih_l{k}{s}"] == "chunks" for k in (0, 1) for s in ("", "_reverse"))
    model = nnspec.build(spec, "torch", seed=0)
    bias = model.lstm_1.bias_ih_l1_reverse.detach()
    assert torch.equal(bias, torch.tensor([0.0] * 3 + [1.0] * 3 + [0.0] * 6))
    torch.testing.assert_close(model.lstm_1.weight_hh_l1_reverse.detach(), torch.eye(12, 3))


def test_torch_default_is_pytorchs_uniform_over_one_over_sqrt_hidden():
    spec = recurrent_spec("lstm", "hidden: 16", width=16)
    model = nnspec.build(spec, "torch", seed=0)
    bound = 1 / math.sqrt(16)
    for name, p in model.named_parameters():
        values = p.detach().numpy().ravel()
        assert stats.kstest(values, stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-3, name


# -- Keras: its variables are PyTorch's tensors, and its initializers draw the same distributions ------------

def keras_tensors(spec, model) -> dict:
    """The Keras model's recurrent variables as PyTorch's tensors: kernels transposed, gates in PyTorch's
    order; a bias as Keras holds it (LSTM: bias_ih + bias_hh; GRU: the two rows)."""
    out = {}
    for layer in spec.graph.layers():
        if layer.kind not in ("lstm", "gru"):
            continue
        a = layer.args
        for k in range(a["layers"]):
            name = layer.path if k == a["layers"] - 1 else f"{layer.path}.l{k}"
            values = [keras.ops.convert_to_numpy(v) for v in model.get_layer(name).weights]
            for d, sfx in enumerate(("", "_reverse") if a["bidirectional"] else ("",)):
                kernel, recurrent, bias = values[3 * d: 3 * d + 3]
                back = (lambda v: v) if layer.kind == "lstm" else (
                    lambda v: np.concatenate([np.split(v, 3, axis=-1)[i] for i in (1, 0, 2)], axis=-1))
                out[f"{layer.path}.weight_ih_l{k}{sfx}"] = back(kernel).T
                out[f"{layer.path}.weight_hh_l{k}{sfx}"] = back(recurrent).T
                out[f"{layer.path}.bias_l{k}{sfx}"] = back(bias)
    return out


def torch_tensors(model, kind: str) -> dict:
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    for key in list(state):
        if ".bias_ih_l" in key:
            other = key.replace(".bias_ih_", ".bias_hh_")
            joined = np.stack([state[key], state[other]]) if kind == "gru" else state[key] + state[other]
            state[key.replace(".bias_ih_", ".bias_")] = joined
    return state


KERAS_LSTM_DEFAULTS = "{weight_ih: glorot_uniform, weight_hh: orthogonal, " \
                      "bias_ih: {chunks: [zeros, ones, zeros, zeros]}, bias_hh: zeros}"


@pytest.mark.parametrize("kind, init", [
    ("lstm", ""), ("gru", ""), ("lstm", KERAS_LSTM_DEFAULTS),
    ("gru", "{weight_ih: {chunks: [he_normal, lecun_uniform, {normal: {std: 0.3}}]}, "
            "weight_hh: {chunks: [orthogonal, {uniform: {low: -0.1, high: 0.2}}, orthogonal]}, "
            "bias_ih: {chunks: [ones, zeros, {constant: 0.5}]}, bias_hh: {uniform: {low: 0, high: 1}}}"),
])
def test_keras_initializers_draw_pytorchs_distributions(kind, init):
    spec = recurrent_spec(kind, "hidden: 16, bidirectional: true", init=init, width=24)
    k_model = keras_tensors(spec, nnspec.build(spec, "keras", seed=5))
    t_model = torch_tensors(nnspec.build(spec, "torch", seed=5), kind)
    assert k_model
    gates = 4 if kind == "lstm" else 3
    for key, got in k_model.items():
        want = t_model[key]
        assert got.shape == want.shape, key
        for g in range(gates):  # gate by gate: a chunk sits where PyTorch has it
            a = np.split(got, gates, axis=-1 if got.ndim == 2 and ".bias_" in key else 0)[g]
            b = np.split(want, gates, axis=-1 if want.ndim == 2 and ".bias_" in key else 0)[g]
            if np.ptp(b) == 0:
                assert np.array_equal(a, b), (key, g)
            else:
                assert stats.ks_2samp(a.ravel(), b.ravel()).pvalue > 1e-4, (key, g)
    if init == KERAS_LSTM_DEFAULTS:
        w = k_model["lstm_1.weight_hh_l0"]  # orthogonal over the whole [4H, H]: orthonormal columns
        np.testing.assert_allclose(w.T @ w, np.eye(16), atol=1e-5)
        bias = k_model["lstm_1.bias_l0_reverse"]
        assert np.array_equal(bias, np.repeat([0.0, 1.0, 0.0, 0.0], 16))  # Keras's unit_forget_bias, by chunks


def test_transfer_moves_exact_weights():
    spec = recurrent_spec("gru", "hidden: 3, layers: 2, bidirectional: true")
    t, k = nnspec.build(spec, "torch", seed=1), nnspec.build(spec, "keras", seed=9)
    nnspec.transfer(t, k, spec)
    got, want = keras_tensors(spec, k), torch_tensors(t, "gru")
    for key, value in got.items():
        assert np.array_equal(value, want[key]), key


@pytest.mark.parametrize("name", ["lstm_classifier", "gru_tagger"])
def test_examples_equal_torch_and_pass_parity(name):
    spec = nnspec.load(EXAMPLES / f"{name}.yaml")
    report = run_parity(spec, seed=2, perturb_weights=True)
    assert report.ok, report.text()
    model = nnspec.build(spec, "torch", seed=2).eval()
    layers = {layer.kind: layer for layer in spec.graph.layers()}
    x = torch.randint(0, layers["embedding"].args["num"], (2, *spec.graph.input_shape),
                      generator=torch.Generator().manual_seed(0))
    kind = "lstm" if "lstm" in layers else "gru"
    a = layers[kind].args
    cls = torch.nn.LSTM if kind == "lstm" else torch.nn.GRU
    rnn = cls(layers[kind].in_shape[-1], a["hidden"], num_layers=a["layers"], batch_first=True,
              bidirectional=a["bidirectional"])
    prefix = layers[kind].path + "."
    rnn.load_state_dict({k[len(prefix):]: v for k, v in model.state_dict().items() if k.startswith(prefix)})
    head = layers["linear"]
    with torch.no_grad():
        tokens = torch.nn.functional.embedding(x, model.get_parameter(layers["embedding"].path + ".weight"))
        out, h = rnn(tokens)
        if a["output"] == "last":
            h = h[0] if kind == "lstm" else h
            out = torch.cat([h[-2], h[-1]], dim=1)
        expected = torch.nn.functional.linear(out, model.get_parameter(head.path + ".weight"),
                                              model.get_parameter(head.path + ".bias"))
        torch.testing.assert_close(model(x), expected)


def test_build_summary_and_inits_name_every_tensor_with_its_origin():
    from nnspec.tables import build_table

    spec = nnspec.load(EXAMPLES / "lstm_classifier.yaml")
    table = build_table(spec)
    row = next(line for line in table.splitlines() if line.startswith("lstm_1"))
    assert "weight_ih=glorot_uniform, weight_hh=orthogonal(gain=1.0), bias_ih=chunks(zeros, ones, zeros, zeros), " \
           "bias_hh=zeros" in row  # one entry per role: every layer and direction shares it
    assert "features" in row and " 128 " in row
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "nnspec", "inits", str(EXAMPLES / "lstm_classifier.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for k in (0, 1):
        for sfx in ("", "_reverse"):
            line = next(x for x in proc.stdout.splitlines() if x.startswith(f"lstm_1.weight_hh_l{k}{sfx} "))
            assert "orthogonal" in line and "init.lstm.weight_hh" in line, line


def test_load_weights_takes_a_torch_lstm_state_dict_by_name():
    spec = recurrent_spec("lstm", "hidden: 3, layers: 2, bidirectional: true")
    model = nnspec.build(spec, "torch", seed=0)
    source = torch.nn.LSTM(5, 3, num_layers=2, bidirectional=True, batch_first=True)
    report = nnspec.load_weights(model, {f"lstm_1.{k}": v for k, v in source.state_dict().items()})
    assert report.matches and all(how == "name" for _, _, how, _ in report.matches)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[f"lstm_1.{key}"], value)
