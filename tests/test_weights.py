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


DOWNSAMPLE = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}


def _by_how(report) -> dict:
    out = {}
    for target, source, how, _ in report.matches:
        out.setdefault(how, {})[target] = source
    return out


def _check_example_pairs(report):
    """examples/resnet50.yaml follows torchvision's names (conv1, bn1, layer1..4, fc; a block's conv1..bn3):
    every tensor pairs by name through the module tree but the projection shortcuts', which the example leaves
    unnamed (conv2d_1, batchnorm_1 against torchvision's downsample.0, downsample.1): those 24 by structure."""
    by = _by_how(report)
    assert set(by) == {"name", "structure"} and len(by["name"]) == 296
    assert sorted(by["structure"].values()) == sorted(
        f"layer{i}.0.downsample.{k}.{role}" for i in range(1, 5) for k, roles in ((0, {"weight"}), (1, DOWNSAMPLE))
        for role in roles)
    assert all(".shortcut." in target for target in by["structure"])
    names = by["name"]
    assert names["layer1.block0.residual_1.branch.conv1.weight"] == "layer1.0.conv1.weight"  # merges seen through
    assert names["layer1.blocks.0.residual_1.branch.conv1.weight"] == "layer1.1.conv1.weight"  # position 1
    assert names["layer4.blocks.1.residual_1.branch.bn3.running_var"] == "layer4.2.bn3.running_var"
    assert names["fc.weight"] == "fc.weight" and names["conv1.weight"] == "conv1.weight"


def test_plain_resnet50_loads_by_name_with_a_full_report(resnet50_pair):
    reference, model = resnet50_pair
    report = nnspec.load_weights(model, reference.state_dict(), spec=RESNET50)
    assert report.ok and report.loaded == 320 and report.model is model
    _check_example_pairs(report)
    text = str(report)
    assert "320 tensor(s) of the state dict matched (296 by name, 24 by structure); nothing left over; 320 loaded" \
        in text
    assert "note: 288 of the pairs by name read nnspec's module tree" in text
    assert "layer4.blocks.1.residual_1.branch.bn3.weight" in text and "layer4.2.bn3.weight" in text
    _same_output(reference, model)


def test_the_example_with_named_shortcut_layers_loads_every_tensor_by_name():
    reference = _torchvision_resnet50()
    text = RESNET50.read_text().replace(
        "- conv2d: {out: $ch, kernel: 1, stride: $stride, bias: false}",
        "- conv2d: {out: $ch, kernel: 1, stride: $stride, bias: false, name: downsample_0}").replace(
        "            - batchnorm\n", "            - batchnorm: {name: downsample_1}\n")
    assert text.count("downsample_") == 2
    model = nnspec.build(nnspec.loads(text)).eval()
    report = nnspec.load_weights(model, reference)
    assert report.ok and {how for _, _, how, _ in report.matches} == {"name"} and report.loaded == 320
    assert report.mapping()["layer3.block0.residual_1.shortcut.downsample_1.weight"] == "layer3.0.downsample.1.weight"
    _same_output(reference, model)


def test_torchvision_resnet50_state_dict_loads_with_the_same_output():
    reference = _torchvision_resnet50()
    model = nnspec.build(RESNET50).eval()
    report = nnspec.load_weights(model, reference.state_dict())
    assert report.ok and report.loaded == len(reference.state_dict())
    _check_example_pairs(report)
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
    assert "296 by name, 24 by structure" in run.stdout and "saved 320 tensor(s)" in run.stdout
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


# -- the name tier reads nnspec's module tree ------------------------------------------------------------

TREE = """nnspec: 1
name: t
input: [4]
blocks:
  unit:
    layers:
      - residual:
          - linear: {out: 4, name: fc}
      - relu
layers:
  - unit: {repeat: 2, name: layer1}
  - unit: {name: layer2_0}
  - unit: {repeat: 2, name: layer2_1}
  - linear: {out: 3, name: head}
"""


def _zeros_like(model, rename):
    return {rename[k]: torch.full_like(v, float(i)) for i, (k, v) in enumerate(model.state_dict().items())}


def test_names_are_read_through_merges_joins_repeat_copies_and_positions():
    model = nnspec.build(nnspec.loads(TREE))
    keys = list(model.state_dict())
    expected = {  # model key -> the source key that names the same tensor
        "layer1.0.residual_1.branch.fc.weight": "layer1.0.fc.weight",  # the residual and its branch: no segment
        "layer1.1.residual_1.branch.fc.bias": "layer1.1.fc.bias",
        "layer2_0.residual_1.branch.fc.weight": "layer2.0.fc.weight",  # `_` for `.`; not copy 1 of layer1
        "layer2_1.0.residual_1.branch.fc.weight": "layer2.1.fc.weight",  # a repeat named after its first copy
        "layer2_1.1.residual_1.branch.fc.bias": "layer2.2.fc.bias",  # copy 1: the number plus 1
        "head.weight": "head.weight",
    }
    rename = {k: expected.get(k, k.replace("residual_1.branch.", "").replace("layer2_1.1", "layer2.2")
                             .replace("layer2_1.0", "layer2.1").replace("layer2_0", "layer2.0")) for k in keys}
    source = _zeros_like(model, rename)
    report = nnspec.load_weights(model, source)
    assert report.ok and report.loaded == len(keys) == 12
    assert {how for _, _, how, _ in report.matches} == {"name"}
    assert all(report.mapping()[t] == s for t, s in expected.items())
    for key, value in model.state_dict().items():
        assert torch.equal(value, source[rename[key]]), key
    # a pair by name of another shape is a mismatch with both keys and shapes, and nothing is loaded
    source["layer2.2.fc.weight"] = torch.zeros(4, 5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as info:
        nnspec.load_weights(model, source)
    assert info.value.report.mismatched == [
        ("layer2_1.1.residual_1.branch.fc.weight", (4, 4), "layer2.2.fc.weight", (4, 5))]
    assert "layer2_1.1.residual_1.branch.fc.weight [4, 4] <- layer2.2.fc.weight [4, 5]" in str(info.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_number_pairs_only_where_both_sides_number_the_same_modules():
    # positions: the source's numbered modules with tensors are the items with tensors of the sequence
    spec = nnspec.loads("nnspec: 1\nname: t\ninput: [4]\nlayers:\n  - linear: {out: 4, name: a}\n"
                        "  - relu\n  - linear: {out: 4, name: b}\n  - linear: {out: 4, name: c}\n")
    model = nnspec.build(spec)
    lin = torch.nn.Linear
    same = torch.nn.Sequential(lin(4, 4), torch.nn.ReLU(), lin(4, 4), lin(4, 4))
    report = nnspec.load_weights(model, same)
    assert {how for _, _, how, _ in report.matches} == {"name"} and report.mapping()["c.bias"] == "3.bias"
    shifted = torch.nn.Sequential(lin(4, 4), lin(4, 4), lin(4, 4))  # no relu: position 2 is not `b`
    report = nnspec.load_weights(model, shifted)
    assert {how for _, _, how, _ in report.matches} == {"structure"}
    assert report.mapping() == {"a.weight": "0.weight", "a.bias": "0.bias", "b.weight": "1.weight",
                                "b.bias": "1.bias", "c.weight": "2.weight", "c.bias": "2.bias"}
    # names that end in a number: nnspec's default names count from 1, a Sequential from 0
    spec = nnspec.loads("nnspec: 1\nname: t\ninput: [4]\nblocks:\n  unit:\n    layers:\n"
                        "      - linear: {out: 4, name: fc}\nlayers:\n  - unit: {repeat: 3}\n"
                        "  - linear: {out: 4}\n  - linear: {out: 4}\n")
    model = nnspec.build(spec)
    assert list(model.state_dict())[0] == "unit_1.0.fc.weight"
    source = {f"unit.{i}.fc.{r}": torch.zeros(4, 4) if r == "weight" else torch.zeros(4)
              for i in range(3) for r in ("weight", "bias")}
    source |= {f"linear.{i}.{r}": torch.zeros(4, 4) if r == "weight" else torch.zeros(4)
               for i in range(2) for r in ("weight", "bias")}
    report = match(model.state_dict(), source, model=model)
    # `unit.1` is not copy 0 of `unit_1`, nor `linear.1` the layer `linear_1`: structure pairs them in order
    assert {how for _, _, how, _ in report.matches} == {"structure"} and report.ok
    assert report.mapping()["unit_1.0.fc.weight"] == "unit.0.fc.weight"
    assert report.mapping()["linear_1.weight"] == "linear.0.weight"


def test_an_ambiguous_name_falls_to_the_next_tier():
    # two residuals hold a layer `fc`: the source's `fc` could be either, so it does not pair by name
    model = nnspec.build(nnspec.loads("nnspec: 1\nname: t\ninput: [4]\nlayers:\n"
                                      "  - residual: [{linear: {out: 4, name: fc}}]\n"
                                      "  - residual: [{linear: {out: 4, name: fc}}]\n"))
    source = {"fc.weight": torch.ones(4, 4), "fc.bias": torch.ones(4)}
    report = match(model.state_dict(), source, model=model)
    assert report.matches == [] and len(report.missing) == 4 and len(report.unexpected) == 2
    # two source keys for one model key at as few derived steps: neither pairs by name
    target = {"a_b_c.weight": torch.zeros(2)}
    report = match(target, {"a.b_c.weight": torch.ones(2), "a_b.c.weight": torch.ones(2)})
    assert report.matches == [] and len(report.unexpected) == 2
    # one of them alone pairs; the same key always wins over a derived one
    assert [m[:3] for m in match(target, {"a.b_c.weight": torch.ones(2)}).matches] == [
        ("a_b_c.weight", "a.b_c.weight", "name")]
    report = match({"a_b.weight": torch.zeros(2), "a.b.weight": torch.zeros(2)}, {"a.b.weight": torch.ones(2)})
    assert [m[:3] for m in report.matches] == [("a.b.weight", "a.b.weight", "name")]


def test_a_rename_rule_comes_before_names_read_through_the_tree():
    model = nnspec.build(nnspec.loads(TREE))
    source = {k.replace("residual_1.branch.", "").replace("layer2_1.1", "layer2.2").replace("layer2_1.0", "layer2.1")
              .replace("layer2_0", "layer2.0"): v for k, v in model.state_dict().items()}
    report = match(model.state_dict(), source, model=model)
    assert report.ok and {how for _, _, how, _ in report.matches} == {"name"}
    report = match(model.state_dict(), source, rename=[(r"^layer2\.0\.fc\.", "layer2_0.residual_1.branch.fc.")],
                   model=model)
    hows = {t: how for t, _, how, _ in report.matches}
    assert report.ok and [t for t, how in hows.items() if how == "rename"] == [
        "layer2_0.residual_1.branch.fc.weight", "layer2_0.residual_1.branch.fc.bias"]
    assert {how for t, how in hows.items() if not t.startswith("layer2_0")} == {"name"}


LAYER_SCALE = """nnspec: 1
name: t
input: [4, 3, 3]
layers:
  - residual:
      - conv2d: {out: 4, kernel: 1, name: conv}
      - scale: {name: layer_scale}
"""


def test_shapes_that_differ_by_axes_of_size_one_load_with_a_reshape_by_name_only(tmp_path):
    """torchvision ConvNeXt's layer scale is a bare [C, 1, 1] parameter of the block; nnspec's `scale` layer
    holds [C]: the parameter's name stands for the layer that holds one tensor, and the pair loads with a
    reshape, listed with both keys and shapes. A real shape mismatch is still refused, and a reshape is never
    made for a pair by structure."""
    from nnspec.cli import main

    model = nnspec.build(nnspec.loads(LAYER_SCALE))
    gamma = torch.arange(4.0).reshape(4, 1, 1)
    source = {"conv.weight": torch.ones(4, 4, 1, 1), "conv.bias": torch.zeros(4), "layer_scale": gamma}
    report = nnspec.load_weights(model, source)
    key = "residual_1.branch.layer_scale.weight"
    assert report.ok and report.mapping()[key] == "layer_scale"
    assert {how for _, _, how, _ in report.matches} == {"name"}
    assert report.reshaped == [(key, (4,), "layer_scale", (4, 1, 1))]
    assert "1 reshaped (axes of size 1 only)" in report.summary()
    assert f"{key} [4] <- layer_scale [4, 1, 1]" in str(report)
    assert torch.equal(model.state_dict()[key], torch.arange(4.0))
    # the converted file holds the model's shapes
    torch.save(source, tmp_path / "w.pt")
    (tmp_path / "t.yaml").write_text(LAYER_SCALE)
    assert main(["weights", str(tmp_path / "t.yaml"), "--from", str(tmp_path / "w.pt"),
                 "--save", str(tmp_path / "out.pt")]) == 0
    assert torch.load(tmp_path / "out.pt")[key].shape == (4,)
    # other sizes: a mismatch, nothing loaded
    for wrong in (torch.zeros(2, 2, 1), torch.zeros(4, 2), torch.zeros(1, 5)):
        with pytest.raises(WeightsError) as info:
            nnspec.load_weights(model, {**source, "layer_scale": wrong})
        assert info.value.report.mismatched == [(key, (4,), "layer_scale", tuple(wrong.shape))]
        assert info.value.report.reshaped == [] and info.value.report.loaded == 0
    # by structure (the name pairs nothing): a mismatch too
    other = source.pop("layer_scale")
    report = match(model.state_dict(), {**source, "other": other}, model=model)
    assert report.mismatched == [(key, (4,), "other", (4, 1, 1))] and report.reshaped == []


def test_a_parameter_a_module_owns_pairs_by_name_and_loads_without_its_axes_of_size_1():
    """torchvision ViT's `class_token` [1, 1, D] and `encoder.pos_embedding` [1, T, D] are parameters of the
    modules themselves: the one tensor of the layer named after their path, [D] and [T, D] there."""
    model = nnspec.build(nnspec.loads("nnspec: 1\nname: t\ninput: [4, 2, 2]\nlayers:\n  - to_tokens\n"
                                      "  - class_token: {name: cls}\n"
                                      "  - position_embedding: {length: 5, name: encoder_pos_embedding}\n"
                                      "  - linear: {out: 3, name: head}\n"))
    source = {"cls": torch.randn(1, 1, 4), "encoder.pos_embedding": torch.randn(1, 5, 4),
              "head.weight": torch.randn(3, 4), "head.bias": torch.randn(3)}
    report = nnspec.load_weights(model, source)
    assert report.ok and {how for _, _, how, _ in report.matches} == {"name"}
    assert report.mapping() == {"cls.token": "cls", "encoder_pos_embedding.weight": "encoder.pos_embedding",
                                "head.weight": "head.weight", "head.bias": "head.bias"}
    assert report.reshaped == [("cls.token", (4,), "cls", (1, 1, 4)),
                               ("encoder_pos_embedding.weight", (5, 4), "encoder.pos_embedding", (1, 5, 4))]
    state = model.state_dict()
    assert torch.equal(state["cls.token"], source["cls"].reshape(4))
    assert torch.equal(state["encoder_pos_embedding.weight"], source["encoder.pos_embedding"].reshape(5, 4))
    # other shapes stay a mismatch, nothing loaded
    source["cls"] = torch.randn(1, 2, 4)
    with pytest.raises(WeightsError) as info:
        nnspec.load_weights(model, source)
    assert info.value.report.mismatched == [("cls.token", (4,), "cls", (1, 2, 4))]
