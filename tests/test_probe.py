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


EXEMPT = [p for prefix in ("NS201", "NS202", "NS203", "NS205") for p in fixtures(prefix, exempt=True)]


@pytest.mark.parametrize("path", EXEMPT, ids=lambda p: p.stem)
def test_exempt_and_waived_fixtures_learn(path):
    report, codes = probe(path)
    assert not codes & {"NS202", "NS203"}
    assert not report.failed, report.text()
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
