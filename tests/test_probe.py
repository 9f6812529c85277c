"""`nnspec probe` proves what the training rules claim, on their own fixtures.

NS202 and NS203 errors must really fail to train (zero gradients, or units still
identical after the SGD steps); NS201 and NS205 fixtures must start exactly as
their messages say (identical weights, a constant output); exempt and waived
fixtures must really learn.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from nnspec.compiler.pipeline import analyse_file

pytest.importorskip("torch")

from nnspec.probe import run_probe  # noqa: E402

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
STEPS = 30


def probe(path: pathlib.Path):
    spec, diags = analyse_file(str(path))
    assert spec is not None, diags
    return run_probe(spec, steps=STEPS, seed=0), {d.code for d in diags if d.is_error}


def fixtures(prefix: str, exempt: bool) -> list[pathlib.Path]:
    found = sorted(FIXTURES.glob(f"{prefix}_*.yaml"))
    marked = [p for p in found if ("exempt" in p.stem or "waived" in p.stem)]
    return marked if exempt else [p for p in found if p not in marked]


@pytest.mark.parametrize("path", fixtures("NS202", exempt=False) + fixtures("NS203", exempt=False),
                         ids=lambda p: p.stem)
def test_dead_and_constant_chain_fixtures_fail_to_train(path):
    report, codes = probe(path)
    assert codes & {"NS202", "NS203"}, "the fixture must raise the rule it is named after"
    assert report.failed, report.text()
    if "NS202" in codes:
        assert any(layer.dead for layer in report.layers), report.text()
    if "NS203" in codes and "NS202" not in codes:
        assert any(layer.stuck for layer in report.layers), report.text()


@pytest.mark.parametrize("path", fixtures("NS201", exempt=False), ids=lambda p: p.stem)
def test_hidden_constant_fixtures_start_with_identical_weights(path):
    report, codes = probe(path)
    assert "NS201" in codes
    flagged = [layer for layer in report.layers if layer.units > 1 and layer.distinct_weights_at_init == 1]
    assert flagged, report.text()


@pytest.mark.parametrize("path", fixtures("NS205", exempt=False), ids=lambda p: p.stem)
def test_zero_gamma_fixtures_start_with_a_constant_output(path):
    report, codes = probe(path)
    assert "NS205" in codes
    norms = [layer for layer in report.layers if layer.kind in ("batchnorm", "layernorm", "groupnorm", "rmsnorm")]
    assert any(layer.init_std == 0.0 for layer in norms), report.text()


@pytest.mark.parametrize("path", fixtures("NS214", exempt=False), ids=lambda p: p.stem)
def test_zero_recurrent_weight_fixtures_give_one_output_for_every_input(path):
    report, codes = probe(path)
    assert "NS214" in codes
    recurrent = [layer for layer in report.layers if layer.kind in ("lstm", "gru")]
    assert recurrent and all(layer.input_spread == 0.0 for layer in recurrent[:1]), report.text()
    assert "the same output for every input at init" in report.text()
    later = [layer for layer in report.layers if layer.kind == "linear"]
    assert all(layer.input_spread == 0.0 for layer in later), report.text()  # nothing after it sees the input


@pytest.mark.parametrize("path", fixtures("NS215", exempt=False), ids=lambda p: p.stem)
def test_constant_input_weight_fixtures_start_with_one_input_row_per_gate(path):
    report, codes = probe(path)
    assert "NS215" in codes
    flagged = [layer for layer in report.layers if layer.kind in ("lstm", "gru") and layer.units > 1
               and layer.distinct_weights_at_init == 1]
    assert flagged, report.text()


def probe_with_diagnostics(path: pathlib.Path):
    spec, diags = analyse_file(str(path))
    assert spec is not None, diags
    return spec, run_probe(spec, steps=STEPS, seed=0), diags


@pytest.mark.parametrize("path", fixtures("NS216", exempt=False), ids=lambda p: p.stem)
def test_constant_attention_fixtures_start_as_their_messages_say(path):
    """NS216: the parts named start with identical rows; a zero out_weight makes the output ignore the input;
    constant query and key (uniform biases) stay one distinct row per head, forever."""
    spec, report, diags = probe_with_diagnostics(path)
    found = [d for d in diags if d.code == "NS216"]
    assert found
    [layer] = [la for la in spec.graph.layers() if la.kind == "attention"]  # one attention per fixture
    [probed] = [p for p in report.layers if p.path == layer.path]
    for diag in found:
        if "out_weight" in diag.message:
            assert probed.parts["out"].distinct_weights_at_init == 1, report.text()
            if "out_bias for every input" in diag.message:
                assert probed.init_std == 0.0, report.text()
            continue
        named = [part for part in ("query", "key", "value") if part in diag.message.split(": ")[0]]
        assert named
        for part in named:
            assert probed.parts[part].units > 1 and probed.parts[part].distinct_weights_at_init == 1, report.text()
        if "forever" in diag.message:
            heads = layer.args["heads"]
            assert probed.parts["query"].distinct_after == heads == probed.parts["key"].distinct_after, \
                report.text()
            assert probed.stuck and report.failed


@pytest.mark.parametrize("path", fixtures("NS217", exempt=False), ids=lambda p: p.stem)
def test_frozen_attention_fixtures_never_move_their_query_and_key(path):
    """NS217: the query and key rows never receive a gradient (the value rows do), and the attention is a plain
    (causal) average of the value projection."""
    import torch

    spec, report, diags = probe_with_diagnostics(path)
    assert "NS217" in {d.code for d in diags}
    assert report.failed, report.text()
    [probed] = [p for p in report.layers if p.kind == "attention"]
    for part in ("query", "key"):
        assert probed.parts[part].dead_units == probed.parts[part].units, report.text()
    assert probed.parts["value"].dead_units == 0 and probed.parts["value"].distinct_after > 1, report.text()
    assert "FROZEN" in report.text()
    [layer] = [la for la in spec.graph.layers() if la.kind == "attention"]
    import nnspec

    module = dict(nnspec.build(spec, "torch", seed=0).eval().named_modules())[layer.path]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        if module.in_proj_bias is not None:  # any value bias: the claim is about the query and the key
            module.in_proj_bias[2 * 16:].normal_(generator=gen)
        x = torch.randn(2, 6, 16, generator=gen)
        v = x @ module.in_proj_weight[2 * 16:].T
        if module.in_proj_bias is not None:
            v = v + module.in_proj_bias[2 * 16:]
        if layer.args["causal"]:
            mean = v.cumsum(dim=1) / torch.arange(1, 7).reshape(1, 6, 1)
        else:
            mean = v.mean(dim=1, keepdim=True).expand_as(v)
        torch.testing.assert_close(module(x), module.out_proj(mean))


EXEMPT = [p for prefix in ("NS201", "NS202", "NS203", "NS205", "NS214", "NS216") for p in fixtures(prefix, exempt=True)]


@pytest.mark.parametrize("path", EXEMPT, ids=lambda p: p.stem)
def test_exempt_and_waived_fixtures_learn(path):
    report, codes = probe(path)
    assert not codes & {"NS202", "NS203", "NS214", "NS215"}
    assert not report.failed, report.text()
    assert all(layer.input_spread > 0 for layer in report.layers if layer.kind in ("lstm", "gru")), report.text()
    assert report.loss_after < report.loss_before


def test_probe_command_exit_codes():
    def run(name):
        return subprocess.run([sys.executable, "-m", "nnspec", "probe", str(FIXTURES / name), "--steps", "10"],
                              capture_output=True, text=True)

    dead = run("NS202_dead_relu.yaml")
    assert dead.returncode == 1
    assert "DEAD" in dead.stdout and "NS202" in dead.stderr
    head = run("NS201_exempt_head.yaml")
    assert head.returncode == 0, head.stdout + head.stderr
    assert "ok" in head.stdout.splitlines()[-1]
    broken = run("NS101_residual_mismatch.yaml")
    assert broken.returncode == 1 and "NS101" in broken.stderr


def test_activations_follow_the_forward_pass_and_dead_units_are_counted():
    spec, _ = analyse_file(str(FIXTURES / "NS202_dead_relu.yaml"))
    report = run_probe(spec, steps=3, seed=0)
    assert [a.path for a in report.activations] == [layer.path for layer in spec.graph.layers()]
    dead = [layer for layer in report.layers if layer.dead]
    assert dead and all(layer.dead_units == layer.units and layer.dead_fraction == 1.0
                        for layer in dead if layer.units and "weight" in layer.zero_grad)
    live = [layer for layer in report.layers if layer.units and not layer.dead]
    assert all(layer.dead_units == 0 for layer in live)


def test_probe_plot(tmp_path):
    import xml.etree.ElementTree as ET

    out = tmp_path / "probe.svg"
    proc = subprocess.run([sys.executable, "-m", "nnspec", "probe", str(FIXTURES / "NS202_dead_relu.yaml"),
                           "--steps", "3", "--plot", str(out)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr  # dead units: the probe fails, and still draws
    root = ET.fromstring(out.read_text())
    ns = "{http://www.w3.org/2000/svg}"
    spec, _ = analyse_file(str(FIXTURES / "NS202_dead_relu.yaml"))
    points = [c for c in root.iter(f"{ns}circle") if c.get("class") == "pt"]
    assert len(points) == sum(1 for _ in spec.graph.layers())
    assert any("dead" in (r.get("class") or "") for r in root.iter(f"{ns}rect"))
    bad = subprocess.run([sys.executable, "-m", "nnspec", "probe", str(FIXTURES / "NS202_dead_relu.yaml"),
                          "--plot", str(tmp_path / "x.pdf")], capture_output=True, text=True)
    assert bad.returncode == 2 and ".pdf" in bad.stderr and "DEAD" not in bad.stdout


def test_probe_command_runs_on_the_attention_rules():
    """NS216 and NS217 are training rules: `nnspec probe` shows them instead of refusing the spec."""
    proc = subprocess.run([sys.executable, "-m", "nnspec", "probe", str(FIXTURES / "NS217_zero_query_key.yaml"),
                           "--steps", "5"], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "NS217" in proc.stderr and "FROZEN: zero gradient for the query, key rows" in proc.stdout
