"""load_weights and `nnspec weights`: pretrained PyTorch weights into a spec's model, matched by name, rename
rules or structure, with a report of every pair, every leftover key and every shape mismatch."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import nnspec
from nnspec.weights import WeightsError, match

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
RESNET50 = ROOT / "examples" / "resnet50.yaml"


def _baseline_resnet50():
    spec = importlib.util.spec_from_file_location("baselines", ROOT / "benchmarks" / "baselines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.torch_resnet50_by_hand()
    with torch.no_grad():  # non-trivial statistics so that eval outputs test them too
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return model.eval()


def _torchvision_resnet50():
    try:  # torchvision registers fake kernels of its C++ ops on import; the pinned torch may refuse them
        original = torch.library.register_fake
        torch.library.register_fake = lambda *a, **k: (lambda f: f)
        try:
            import torchvision
        finally:
            torch.library.register_fake = original
    except Exception:
        pytest.skip("torchvision is not importable here")
    torch.manual_seed(1)
    return torchvision.models.resnet50().eval()


@pytest.fixture(scope="module")
def resnet50_pair():
    return _baseline_resnet50(), nnspec.build(RESNET50).eval()


def _same_output(reference, model):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(reference(x), model(x))


def test_plain_resnet50_loads_by_structure_with_a_full_report(resnet50_pair):
    reference, model = resnet50_pair
    report = nnspec.load_weights(model, reference.state_dict(), spec=RESNET50)
    assert report.ok and report.loaded == 320 and report.model is model
    hows = {how for _, _, how, _ in report.matches}
    assert hows == {"name", "structure"}
    pairs = report.mapping()
    assert pairs["layer1.block0.residual_1.branch.conv1.weight"] == "layer1.0.conv1.weight"
    assert pairs["layer1.block0.residual_1.shortcut.batchnorm_1.running_var"] == "layer1.0.downsample.1.running_var"
    text = str(report)
    assert "320 tensor(s) of the state dict matched (8 by name, 312 by structure); nothing left over; 320 loaded" \
        in text
    assert "layer4.blocks.1.residual_1.branch.bn3.weight" in text and "layer4.2.bn3.weight" in text
    _same_output(reference, model)


def test_torchvision_resnet50_state_dict_loads_with_the_same_output():
    reference = _torchvision_resnet50()
    model = nnspec.build(RESNET50).eval()
    report = nnspec.load_weights(model, reference.state_dict())
    assert report.ok and report.loaded == len(reference.state_dict())
    _same_output(reference, model)


def test_wrong_shape_is_reported_with_both_paths_and_shapes_and_nothing_is_loaded(resnet50_pair):
    reference, _ = resnet50_pair
    model = nnspec.build(RESNET50, seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = dict(reference.state_dict())
    state["layer2.0.conv2.weight"] = torch.zeros(128, 128, 5, 5)
    state["fc.weight"] = torch.zeros(10, 2048)
    with pytest.raises(WeightsError) as info:
        nnspec.load_weights(model, state)
    report = info.value.report
    assert report.loaded == 0
    assert report.mismatched == [
        ("layer2.block0.residual_1.branch.conv2.weight", (128, 128, 3, 3), "layer2.0.conv2.weight", (128, 128, 5, 5)),
        ("fc.weight", (1000, 2048), "fc.weight", (10, 2048)),
    ]
    assert ("layer2.block0.residual_1.branch.conv2.weight [128, 128, 3, 3] <- layer2.0.conv2.weight "
            "[128, 128, 5, 5]") in str(info.value)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # strict: nothing loaded
    report = nnspec.load_weights(model, state, strict=False)
    assert report.loaded == 318 and len(report.mismatched) == 2
    after = model.state_dict()
    assert torch.equal(after["fc.weight"], before["fc.weight"])
    assert torch.equal(after["layer3.block0.residual_1.branch.conv2.weight"], state["layer3.0.conv2.weight"])


def test_leftover_keys_on_both_sides_are_listed():
    target = {"a.weight": torch.zeros(2, 3), "b.weight": torch.zeros(4), "c.bias": torch.zeros(5)}
    source = {"a.weight": torch.ones(2, 3), "x.weight": torch.ones(4), "y.weight": torch.ones(7),
              "z": torch.ones(1)}
    report = match(target, source)
    assert [m[:3] for m in report.matches] == [("a.weight", "a.weight", "name")]
    assert report.missing == [("b.weight", (4,)), ("c.bias", (5,))]
    assert report.unexpected == [("x.weight", (4,)), ("y.weight", (7,)), ("z", (1,))]
    text = str(report)
    assert "unmatched in the model" in text and "  c.bias [5]" in text and "  z [1]" in text


def test_rename_rules_come_before_structure():
    target = {"stem.weight": torch.zeros(3), "head.weight": torch.zeros(2), "head.bias": torch.zeros(2)}
    source = {"backbone.conv.weight": torch.ones(3), "classifier.weight": torch.ones(2),
              "classifier.bias": torch.ones(2)}
    report = match(target, source, rename=[(r"^classifier\.", "head."), "^backbone\\.conv=stem"])
    assert [m[:3] for m in report.matches] == [("stem.weight", "backbone.conv.weight", "rename"),
                                               ("head.weight", "classifier.weight", "rename"),
                                               ("head.bias", "classifier.bias", "rename")]
    # without the rules the same three pair by structure
    assert [m[2] for m in match(target, source).matches] == ["structure"] * 3
    with pytest.raises(ValueError, match="REGEX=REPLACEMENT"):
        match(target, source, rename=["no-equals-sign"])


def test_files_and_modules(tmp_path):
    spec = nnspec.loads("nnspec: 1\nname: t\ninput: [4]\nlayers:\n  - linear: {out: 3, name: a}\n"
                        "  - batchnorm: {name: n}\n  - linear: {out: 2, name: b}\n")
    source = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    torch.save(source.state_dict(), tmp_path / "w.pt")
    torch.save({"epoch": 3, "state_dict": source.state_dict()}, tmp_path / "ckpt.pth")
    for src in (source, source.state_dict(), tmp_path / "w.pt", str(tmp_path / "ckpt.pth")):
        model = nnspec.build(spec).eval()
        assert nnspec.load_weights(model, src).ok
        x = torch.randn(5, 4)
        with torch.no_grad():
            assert torch.equal(model(x), source.eval()(x))
    safetensors = pytest.importorskip("safetensors.torch")
    safetensors.save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    model = nnspec.build(spec)
    assert nnspec.load_weights(model, tmp_path / "w.safetensors").loaded == 9
    named = {"net.lin.weight": torch.ones(3, 4), "net.lin.bias": torch.ones(3), "net.fc.weight": torch.ones(2, 3),
             "net.fc.bias": torch.ones(2)}
    safetensors.save_file(named, str(tmp_path / "named.safetensors"))  # stored sorted: fc before lin
    two = nnspec.loads("nnspec: 1\nname: t\ninput: [4]\nlayers:\n  - linear: {out: 3}\n  - linear: {out: 2}\n")
    with pytest.raises(WeightsError, match="does not keep the order"):
        nnspec.load_weights(nnspec.build(two), tmp_path / "named.safetensors")
    with pytest.raises(ValueError, match="unknown weights format"):
        nnspec.load_weights(model, tmp_path / "ckpt.pth.txt" if (tmp_path / "ckpt.pth.txt").write_text("x") else "")
    with pytest.raises(TypeError, match="nnspec.transfer"):
        nnspec.load_weights(object(), source)
    model = nnspec.load_weights(None, source, spec=spec).model
    assert isinstance(model, torch.nn.Module)


def test_cli_converts_to_nnspec_keys(tmp_path, resnet50_pair):
    reference, _ = resnet50_pair
    state = reference.state_dict()
    torch.save(state, tmp_path / "r50.pt")
    out = tmp_path / "r50.nnspec.pt"
    run = subprocess.run([sys.executable, "-m", "nnspec", "weights", str(RESNET50), "--from", str(tmp_path / "r50.pt"),
                          "--save", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "8 by name, 312 by structure" in run.stdout and "saved 320 tensor(s)" in run.stdout
    converted = torch.load(out, weights_only=True)
    model = nnspec.build(RESNET50).eval()
    model.load_state_dict(converted)  # strict: every key of the model, nnspec's names
    _same_output(reference, model)
    bad = dict(state)
    bad["layer2.0.conv2.weight"] = torch.zeros(128, 128, 5, 5)
    torch.save(bad, tmp_path / "bad.pt")
    run = subprocess.run([sys.executable, "-m", "nnspec", "weights", str(RESNET50), "--from", str(tmp_path / "bad.pt"),
                          "--save", str(tmp_path / "no.pt")], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 1 and not (tmp_path / "no.pt").exists()
    assert "layer2.block0.residual_1.branch.conv2.weight [128, 128, 3, 3] <- layer2.0.conv2.weight " \
           "[128, 128, 5, 5]" in run.stdout
    assert "nothing was saved" in run.stderr
    run = subprocess.run([sys.executable, "-m", "nnspec", "weights", str(RESNET50), "--from", str(tmp_path / "bad.pt"),
                          "--no-strict", "--rename", "^fc\\.=fc.", "--save", str(tmp_path / "some.safetensors")],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0 and "saved 319 tensor(s)" in run.stdout
