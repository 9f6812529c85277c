"""`nnspec import torch` / `nnspec.from_torch`: torchvision's models round trip (spec checks clean, same
tensors, weights load from the torchvision model, same eval output), inferred initializers against
torchvision's init code, functional calls and merges, and the diagnostics for what cannot be written."""

from __future__ import annotations

import math
import operator
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("scipy.stats")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import nnspec  # noqa: E402
from nnspec.compiler.pipeline import analyse_text  # noqa: E402
from nnspec.importing import ImportProblem, from_torch  # noqa: E402
from nnspec.importing.inits import infer  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from tv import torchvision_models as models  # noqa: E402


@cache
def imported(name: str, size: int = 64):
    torch.manual_seed(0)
    source = getattr(models(), name)().eval()
    return source, from_torch(source, (3, size, size), name)


def errors_of(text: str) -> list:
    _, diagnostics = analyse_text(text, "<imported>")
    return [d for d in diagnostics if d.is_error]


def round_trip(source, text, shape, atol=1e-5, reshaped=0, batch=2):
    """`reshaped`: how many tensors are known to differ by axes of size 1 only (ConvNeXt's layer scale,
    [C, 1, 1] in the source and [C] in the spec; ViT's class token [1, 1, D] and position embedding
    [1, T, D], parameters of the modules themselves listed first in its state dict): they pair by name,
    load with a reshape the report lists, and the other shapes are compared pair by pair instead of in
    state_dict order."""
    assert errors_of(text) == []
    built = nnspec.build(nnspec.loads(text)).eval()
    ours, theirs = built.state_dict(), source.state_dict()
    if not reshaped:
        assert [tuple(v.shape) for v in ours.values()] == [tuple(v.shape) for v in theirs.values()]
    assert sum(p.numel() for p in built.parameters()) == sum(p.numel() for p in source.parameters())
    report = nnspec.load_weights(built, source)
    assert report.ok and len(report.matches) == len(ours) == len(theirs)
    assert len(report.reshaped) == reshaped
    for t, ts, s, ss in report.reshaped:
        assert [n for n in ts if n != 1] == [n for n in ss if n != 1], (t, s)
    other = {t for t, _, _, _ in report.reshaped}
    assert all(ours[t].shape == theirs[s].shape for t, s, _, _ in report.matches if t not in other)
    by = {}
    for ours_key, their_key, how, _ in report.matches:
        by.setdefault(how, []).append(f"{their_key} -> {ours_key}")
    assert set(by) == {"name"}, {how: keys[:5] for how, keys in by.items()}  # every tensor by name
    x = torch.randn(batch, *shape)
    with torch.no_grad():
        assert torch.allclose(built(x), source(x), atol=atol)
    return built, report


TORCHVISION = ["resnet18", "resnet50", "vgg11_bn", "mobilenet_v2", "efficientnet_b0", "squeezenet1_0", "densenet121",
               "shufflenet_v2_x1_0"]


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_round_trip(name):
    torch.set_num_threads(1)
    source, text = imported(name)
    round_trip(source, text, (3, 64, 64))


# the rest of the families the vocabulary expresses: the same code as above at other sizes, or other code
MORE_TORCHVISION = ["alexnet", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v3_small", "mobilenet_v3_large"]


@pytest.mark.parametrize("name", MORE_TORCHVISION)
def test_more_torchvision_round_trips(name):
    torch.set_num_threads(1)
    source, text = imported(name)
    round_trip(source, text, (3, 64, 64), atol=1e-4)
    found = inits_by_kind_role(text)
    kaiming = "kaiming_normal(a=0.0, mode='fan_out', nonlinearity='relu')"
    if name == "alexnet":  # no init loop: every module's own default
        assert {found[k] == {"torch_default"} for k in found if k[0] in ("conv2d", "linear")} == {True}
    else:  # ResNet.__init__'s, or MobileNetV3's: kaiming_normal_(fan_out) convs, normal(0, 0.01) classifier
        assert found[("conv2d", "weight")] == {kaiming}
    if name.startswith("mobilenet_v3"):
        assert found[("linear", "weight")] == {"normal(mean=0.0, std=0.01)"} and found[("linear", "bias")] == {"zeros"}
    assert "uncertain" not in text


def test_the_emitted_model_loads_by_name_too():
    """The emitted file's model carries its own copies of the merge classes; the names read the same."""
    import types

    torch.set_num_threads(1)
    source, text = imported("resnet18")
    module = types.ModuleType("emitted_resnet18")
    exec(compile(nnspec.emit(nnspec.loads(text)), "emitted_resnet18", "exec"), module.__dict__)
    model = module.build().eval()
    report = nnspec.load_weights(model, source)
    assert report.ok and {how for _, _, how, _ in report.matches} == {"name"}
    assert report.mapping()["layer2_1.residual_1.branch.conv2.weight"] == "layer2.1.conv2.weight"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), source(x), atol=1e-5)


def test_resnet50_uses_blocks_and_repeat_in_under_80_lines():
    _, text = imported("resnet50")
    assert len(text.splitlines()) < 80
    assert "blocks:" in text and "repeat: 5" in text
    spec = nnspec.loads(text)
    # names follow the module names where the format allows: the stem, the head, a block's own layers
    keys = [t.path for t in spec.graph.tensors()]
    assert keys[0] == "conv1.weight" and keys[-1] == "fc.bias"
    assert any(k.endswith("branch.conv3.weight") for k in keys)


def inits_by_kind_role(text):
    found = {}
    for t in nnspec.loads(text).graph.tensors():
        found.setdefault((t.layer.kind, t.role), set()).add(t.init.describe())
    return found


def test_inferred_inits_follow_torchvision_init_code():
    # ResNet.__init__: kaiming_normal_(fan_out, relu) on convs, BN ones/zeros; the fc keeps nn.Linear's own
    found = inits_by_kind_role(imported("resnet18")[1])
    assert found[("conv2d", "weight")] == {"kaiming_normal(a=0.0, mode='fan_out', nonlinearity='relu')"}
    assert found[("batchnorm", "gamma")] == {"ones"} and found[("batchnorm", "beta")] == {"zeros"}
    assert found[("linear", "weight")] == {"torch_default"} and found[("linear", "bias")] == {"torch_default"}
    # MobileNetV2: the classifier normal(0, 0.01), its bias zeros
    found = inits_by_kind_role(imported("mobilenet_v2")[1])
    assert found[("linear", "weight")] == {"normal(mean=0.0, std=0.01)"}
    assert found[("linear", "bias")] == {"zeros"}
    # SqueezeNet: kaiming_uniform_ (fan_in, gain sqrt 2) everywhere but the final conv, normal(0, 0.01)
    text = imported("squeezenet1_0")[1]
    spec = nnspec.loads(text)
    weights = [t for t in spec.graph.tensors() if t.layer.kind == "conv2d" and t.role == "weight"]
    assert weights[-1].init.describe() == "normal(mean=0.0, std=0.01)"
    assert {t.init.describe() for t in weights[:-1]} == {
        "kaiming_uniform(a=0.0, mode='fan_in', nonlinearity='relu')"}
    assert "KS p" in text and "exact" in text  # the confidence is written beside each choice


def test_inferred_inits_reproduce_the_distributions():
    """A model built from the imported spec draws from what the source drew from (KS per tensor)."""
    from scipy import stats

    torch.set_num_threads(1)
    source, text = imported("resnet18")
    built = nnspec.build(nnspec.loads(text), seed=1)
    for (key, ours), theirs in zip(built.state_dict().items(), source.state_dict().values()):
        if ours.numel() >= 1000 and ours.dtype.is_floating_point and "running" not in key:
            assert stats.ks_2samp(ours.flatten().numpy(), theirs.flatten().numpy()).pvalue > 1e-4, key


def test_densenet_dense_blocks_are_running_concats():
    """_DenseBlock calls layer k with [x, out_1, ..., out_k-1] and returns their torch.cat: in the spec each
    dense layer is `concat: [[], [...]]`, the layers of a block one call with `repeat`."""
    _, text = imported("densenet121")
    assert "  dense_layer:\n    layers:\n      - concat:\n          - []" in text
    assert "dense_block: {n: 24, name: features_denseblock3}" in text and len(text.splitlines()) < 80
    # the run of denselayer1, denselayer2, ... is named after its first: copy j stands for denselayer(1 + j)
    assert "dense_layer: {repeat: $n, name: denselayer1}" in text


def test_shufflenet_units_are_slices_a_concat_and_a_channel_shuffle():
    """InvertedResidual: stride 1 `x1, x2 = x.chunk(2, dim=1); cat((x1, branch2(x2)), 1)`, stride 2
    `cat((branch1(x), branch2(x)), 1)`, then channel_shuffle(out, 2) written as view, transpose, view: a
    `concat` whose stride-1 branches begin with a `slice`, then `channel_shuffle: {groups: 2}`."""
    _, text = imported("shufflenet_v2_x1_0")
    assert text.count("      - channel_shuffle: {groups: 2}") == 2  # once in each unit's block
    assert "          - - slice: {stop: $stop}\n          - - slice: {start: $stop}\n" in text
    assert "repeat: 7, name: stage3_1" in text and len(text.splitlines()) < 80
    # ShuffleNetV2 has no init loop: every module keeps its own default
    found = inits_by_kind_role(text)
    assert found[("conv2d", "weight")] == {"torch_default"}
    assert found[("batchnorm", "gamma")] == {"ones"} and found[("batchnorm", "beta")] == {"zeros"}
    assert found[("linear", "weight")] == {"torch_default"} and found[("linear", "bias")] == {"torch_default"}
    assert "uncertain" not in text


def test_the_other_shufflenet_widths_round_trip():
    torch.set_num_threads(1)
    source, text = imported("shufflenet_v2_x0_5", 32)
    round_trip(source, text, (3, 32, 32))


class Split(nn.Module):
    """Another way to write a shuffle (three groups, `.transpose`, `.reshape(b, -1, h, w)`) and uneven
    splits: `chunk(2)` of 9 channels gives 5 and 4, `torch.split` with a list of sizes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 9, 3, padding=1)
        self.a = nn.Conv2d(4, 4, 1)
        self.b = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        x = self.conv(x)
        b, c, h, w = x.shape
        x = x.view(b, 3, c // 3, h, w).transpose(1, 2).contiguous().reshape(b, -1, h, w)
        x1, x2 = x.chunk(2, dim=1)
        x = torch.cat((x1, self.a(x2)), 1)
        y1, y2, y3 = torch.split(x, [3, 4, 2], dim=1)
        return torch.cat((self.b(y3), y1, y2), 1)


def test_other_shuffles_and_splits():
    torch.manual_seed(0)
    source = Split().eval()
    text = from_torch(source, (3, 8, 8))
    assert "channel_shuffle: {groups: 3}" in text
    assert "slice: {stop: 5}" in text and "slice: {start: 5}" in text  # chunk(2) of 9: 5 and 4
    assert "slice: {start: 7}" in text and "slice: {stop: 3}" in text and "slice: {start: 3, stop: 7}" in text
    round_trip(source, text, (3, 8, 8))


def _shuffle_view(x, groups=2):
    b, c, h, w = x.size()
    return x.view(b, groups, c // groups, h, w)


@pytest.mark.parametrize("forward,what", [
    (lambda self, x: _shuffle_view(self.conv(x)).view(1, 4, 6, 6),
     "splits the channels into 2 groups, but `.view(...)` follows it, not a transpose of dims 1 and 2"),
    (lambda self, x: _shuffle_view(self.conv(x)).transpose(1, 3).reshape(1, 4, 6, 6), "not a transpose"),
    (lambda self, x: _shuffle_view(self.conv(x)).sum(1), "`.sum(...)` follows it"),
    (lambda self, x: _shuffle_view(self.conv(x)).transpose(1, 2).flatten(1), "not the view back to [1, 4, 6, 6]"),
    (lambda self, x: self.conv(x).view(1, 2, 2, 6, 6).transpose(1, 2).reshape(1, 4, 6, 6), "batch size is not"),
    (lambda self, x: torch.cat(self.conv(x).chunk(2, dim=1), 1), "as one tuple"),
    (lambda self, x: self.conv(x).chunk(2, dim=2)[0], "along dim=2"),
])
def test_what_is_not_a_shuffle_or_a_split_is_named(forward, what):
    Bad = type("Bad", (nn.Module,), {"forward": forward})
    bad = Bad()
    nn.Module.__init__(bad)
    bad.conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ImportProblem) as info:
        from_torch(bad, (3, 8, 8))
    assert info.value.where == "Bad" and what in info.value.message, str(info.value)


class ListCall(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Identity()

    def forward(self, x):
        return self.inner([x, x])


def test_another_call_with_a_list_is_a_clear_diagnostic():
    with pytest.raises(ImportProblem) as info:
        from_torch(ListCall(), (3, 8, 8))
    assert info.value.where == "inner" and "list of tensors" in info.value.message


# -- small modules: functional calls and merges -----------------------------------------------------------

class SE(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.fc1 = nn.Conv2d(ch, ch // 2, 1)
        self.fc2 = nn.Conv2d(ch // 2, ch, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class Unit(nn.Module):
    def __init__(self, ch, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(ch)
        self.se = SE(ch)

    def forward(self, x):
        return F.relu(operator.add(x, self.se(self.bn(self.conv(x)))))


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.units = nn.Sequential(Unit(8), Unit(8), Unit(8))
        self.a = nn.Conv2d(8, 4, 1)
        self.b = nn.Conv2d(8, 4, 3, padding=1)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = self.units(x)
        x = torch.cat([self.a(x), self.b(x)], 1)
        x = F.max_pool2d(x, 2)
        x = x.mean((2, 3), keepdim=True)
        x = x.view(x.size(0), -1)
        return self.head(torch.flatten(x, 1))


def test_functional_calls_and_merges():
    torch.manual_seed(0)
    source = Functional().eval()
    text = nnspec.from_torch(source, (3, 8, 8))
    assert "multiply:" in text and "concat:" in text and "residual:" in text
    assert "unit: {repeat: 3, name: units}" in text  # three identical Units: one block, repeated
    round_trip(source, text, (3, 8, 8))


class Shared(nn.Module):
    """The same class with different channels and strides: one block with arguments."""

    def __init__(self):
        super().__init__()
        self.one = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.two = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.three = nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.three(self.two(self.one(x))), 1), 1))


class Stage(nn.Sequential):
    def __init__(self, cin, cout, stride):
        super().__init__(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class Stages(nn.Module):
    def __init__(self):
        super().__init__()
        self.s1, self.s2, self.s3, self.s4 = Stage(3, 8, 1), Stage(8, 16, 2), Stage(16, 16, 2), Stage(16, 16, 2)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(self.s4(self.s3(self.s2(self.s1(x)))).mean((2, 3)))


def test_a_class_used_several_times_is_a_block_with_arguments():
    torch.manual_seed(0)
    source = Stages().eval()
    text = from_torch(source, (3, 16, 16))
    assert "  stage:\n    args: {out: 16, stride: 2}" in text  # the defaults: what most calls give
    assert "stage: {out: 8, stride: 1, name: s1}" in text
    assert "stage: {repeat: 3, name: s2}" in text  # s2, s3 and s4 take the same arguments: a run, named s2
    round_trip(source, text, (3, 16, 16))
    round_trip(Shared().eval(), from_torch(Shared().eval(), (3, 16, 16)), (3, 16, 16))


@pytest.mark.parametrize("forward,where,what", [
    (lambda self, x: torch.sort(self.conv(x), dim=1).values, "Bad", "torch.sort"),
    (lambda self, x: self.conv(x) + 1.0, "Bad", "number"),
    (lambda self, x: self.conv(x).permute(0, 2, 3, 1), "Bad", ".permute"),
    (lambda self, x: torch.cat([self.conv(x), self.conv(x)], 2), "Bad", "dim=2"),
])
def test_what_the_vocabulary_cannot_express_is_named(forward, where, what):
    Bad = type("Bad", (nn.Module,), {"forward": forward})
    bad = Bad()
    nn.Module.__init__(bad)
    bad.conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ImportProblem) as info:
        from_torch(bad, (3, 8, 8))
    assert info.value.where == where and what in str(info.value)


def test_an_unknown_module_class_names_its_path_and_call():
    source = nn.Sequential(nn.Conv2d(3, 4, 3), nn.PixelShuffle(2))
    with pytest.raises(ImportProblem) as info:
        from_torch(source, (3, 8, 8))
    assert info.value.where == "1" and "pixel_shuffle" in info.value.message


def test_a_module_option_without_a_construct_is_named():
    source = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ImportProblem, match="padding_mode='reflect'"):
        from_torch(source, (3, 8, 8))


# -- initializer inference ------------------------------------------------------------------------------

def test_constants_are_exact():
    assert infer(torch.zeros(4, 3).numpy(), "linear", "weight", 3, 4).best == "zeros"
    assert infer(torch.ones(4).numpy(), "batchnorm", "gamma", 0, 0).best == "ones"
    assert infer(torch.full((4,), 0.25).numpy(), "prelu", "weight", 0, 0).best == "{constant: 0.25}"
    # a float32 constant is written as the shortest number that is the same float32 (1e-06, not 9.99999997e-07)
    assert infer(torch.full((4,), 1e-6).numpy(), "scale", "gamma", 0, 0).best == "{constant: 1.0e-06}"
    assert infer(2 * torch.eye(5, 3).numpy(), "linear", "weight", 3, 5).best == "{eye: 2.0}"
    w = torch.empty(6, 6, 3, 3)
    nn.init.dirac_(w)
    assert infer(w.numpy(), "conv2d", "weight", 54, 54).best == "dirac"


@pytest.mark.parametrize("draw,expected", [
    (lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"),
     "{kaiming_normal: {mode: fan_out, nonlinearity: relu}}"),
    (lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
     "{kaiming_uniform: {mode: fan_in, nonlinearity: relu}}"),
    (lambda w: nn.init.kaiming_uniform_(w, a=math.sqrt(5)), "torch_default"),
    (lambda w: nn.init.xavier_uniform_(w), "xavier_uniform"),
    (lambda w: nn.init.xavier_normal_(w), "xavier_normal"),
    (lambda w: nn.init.normal_(w, 0, 0.05), "{normal: {std: 0.05}}"),
    (lambda w: nn.init.uniform_(w, -0.3, 0.3), "{uniform: {low: -0.3, high: 0.3}}"),
])
def test_random_tensors_by_ks(draw, expected):
    torch.manual_seed(0)
    w = torch.empty(256, 64, 3, 3)
    draw(w)
    result = infer(w.numpy(), "conv2d", "weight", 64 * 9, 256 * 9)
    assert result.best == expected and expected in result.accepted


# -- the command line -----------------------------------------------------------------------------------

MODELS = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

class Bad(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return torch.sort(self.conv(x), dim=1).values
'''


def test_cli_import_torch(tmp_path, monkeypatch, capsys):
    from nnspec.cli import main

    (tmp_path / "mymodels.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["import", "torch", "mymodels:Net", "--args", '{"width": 4}', "--input", "3,16,16",
                 "-o", "net.yaml"]) == 0
    assert "conv2d: {out: 4, kernel: 3, padding: 1, name: conv}" in (tmp_path / "net.yaml").read_text()
    assert main(["check", "net.yaml"]) == 0
    capsys.readouterr()
    assert main(["import", "torch", "mymodels:Bad", "--input", "3,16,16", "-o", "bad.yaml"]) == 1
    err = capsys.readouterr().err
    assert "Bad: error: the call `torch.sort(...)` has no nnspec kind" in err and "Traceback" not in err
    assert not (tmp_path / "bad.yaml").exists()
    for args in (["mymodels:Nope", "--input", "3,16,16"], ["mymodels:Net"], ["mymodels:Net", "--input", "3,x"],
                 ["mymodels:Net", "--input", "3,16,16", "--args", "{width"], ["nomodule:Net", "--input", "3"]):
        assert main(["import", "torch", *args]) == 2, args
        err = capsys.readouterr().err
        assert "nnspec: error:" in err and "Traceback" not in err, args


def test_cli_import_runs_as_a_command(tmp_path):
    (tmp_path / "mymodels.py").write_text(MODELS)
    run = subprocess.run([sys.executable, "-m", "nnspec", "import", "torch", "mymodels:Bad", "--input", "3,8,8"],
                         capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(Path(nnspec.__file__).parent.parent)})
    assert run.returncode == 1 and "Traceback" not in run.stderr and "torch.sort" in run.stderr


def test_a_per_layer_choice_every_call_makes_goes_into_the_block():
    """torchvision's zero_init_residual: the last BN of every block starts at zero; written once, as that
    layer's own init in the block body, and `check` accepts it (a zero gamma at a residual's end)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    source = models().resnet18(zero_init_residual=True).eval()
    text = from_torch(source, (3, 32, 32))
    assert text.count("batchnorm: {init: {gamma: zeros}, name: bn2}") == 2 and "paths:" not in text
    assert "nnspec check` reports" not in text
    found = {t.path: t.init.describe() for t in nnspec.loads(text).graph.tensors()}
    assert found["layer4_1.residual_1.branch.bn2.gamma"] == "zeros"
    assert found["layer4_1.residual_1.branch.bn1.gamma"] == "ones"
    round_trip(source, text, (3, 32, 32))


def test_a_tensor_no_candidate_fits_is_flagged_uncertain():
    torch.manual_seed(0)
    source = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64))
    with torch.no_grad():
        for layer in (source[0], source[2]):
            layer.weight.copy_(torch.distributions.Laplace(0.0, 0.05).sample(layer.weight.shape))
    text = from_torch(source, (64,))
    assert "# 2 of 4 tensors fit no candidate well: marked `uncertain`." in text
    assert text.count("# uncertain: the best candidate has KS p") == 2
    assert errors_of(text) == []


# -- ConvNeXt: channels-last pairs, LayerNorm2d, layer scale ------------------------------------------

def test_convnext_tiny_round_trip():
    """torchvision's ConvNeXt-Tiny: every tensor by name; the 18 layer scales ([C, 1, 1] in torchvision, [C]
    in nnspec's `scale`) load with a reshape the report lists. The layer scales are set away from 1e-6
    first, so that the output depends on every block's branch."""
    import copy

    torch.set_num_threads(1)
    source, text = imported("convnext_tiny")
    source = copy.deepcopy(source)
    with torch.no_grad():
        for name, p in source.named_parameters():
            if name.endswith("layer_scale"):
                p.uniform_(0.5, 1.5)
    _, report = round_trip(source, text, (3, 64, 64), atol=1e-4, reshaped=18)
    assert report.reshaped[0] == ("features_1_0.residual_1.branch.layer_scale.weight", (96,),
                                  "features.1.0.layer_scale", (96, 1, 1))
    assert ("features_1_0.residual_1.branch.layer_scale.weight [96] <- features.1.0.layer_scale [96, 1, 1]"
            in str(report))


def test_convnext_tiny_spec_and_inits_follow_torchvision():
    _, text = imported("convnext_tiny")
    # CNBlock: the permute pair around the per-position layers is to_tokens ... to_map, then the layer scale
    # and stochastic depth; LayerNorm2d (stem, downsampling, head) is a layernorm over the channels
    assert ("          - to_tokens\n          - layernorm: {eps: 1.0e-06, name: block_2}\n"
            "          - linear: {out: $out, name: block_3}\n          - gelu\n") in text
    assert "          - to_map\n          - scale: {name: layer_scale}\n          - drop_path: {p: $p}\n" in text
    assert text.count("layernorm: {over: channels, eps: 1.0e-06") == 5
    assert "permute" not in text
    # ConvNeXt.__init__: trunc_normal_(std=0.02) on conv and linear weights (its bounds -2, 2 lie 100 std
    # out: the same distribution as normal(0, 0.02)), zero biases; layer scale ones(dim, 1, 1) * 1e-6
    found = inits_by_kind_role(text)
    assert found[("conv2d", "weight")] == found[("linear", "weight")] == {"normal(mean=0.0, std=0.02)"}
    assert found[("conv2d", "bias")] == found[("linear", "bias")] == {"zeros"}
    assert found[("layernorm", "gamma")] == {"ones"} and found[("layernorm", "beta")] == {"zeros"}
    assert found[("scale", "gamma")] == {"constant(value=1e-06)"}
    assert "scale:\n    gamma: {constant: 1.0e-06}" in text and "uncertain" not in text


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ChannelsLast(nn.Module):
    """A small ConvNeXt block written with method calls: permute, per-position MLP, permute back, layer scale."""

    def __init__(self, dim=8):
        super().__init__()
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)
        self.layer_scale = nn.Parameter(torch.rand(dim, 1, 1) + 0.5)

    def forward(self, x):
        y = self.norm(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(y))).permute(0, 3, 1, 2)
        return x + self.layer_scale * y


def test_channels_last_method_calls_and_a_layer_scale_round_trip():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    source = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), ChannelsLast()).eval()
    text = from_torch(source, (3, 6, 5))
    assert "layernorm: {over: channels, eps: 1.0e-06, name: norm}" in text
    assert "- to_tokens\n" in text and "- to_map\n" in text and "scale: {name: layer_scale}" in text
    round_trip(source, text, (3, 6, 5), reshaped=1)


def _bad(forward, **modules):
    Bad = type("Bad", (nn.Module,), {"forward": forward})
    bad = Bad()
    nn.Module.__init__(bad)
    for name, module in modules.items():
        setattr(bad, name, module)
    return bad


@pytest.mark.parametrize("forward,what", [
    # a permute without its partner, another permutation, the partner of another rank
    (lambda self, x: self.fc(self.conv(x).permute(0, 2, 3, 1)), "is followed by no permute back"),
    (lambda self, x: self.conv(x).permute(0, 1, 3, 2), "`.permute(0, 1, 3, 2)`: nnspec has no permute"),
    (lambda self, x: self.conv(x).permute(0, 3, 1, 2), "`.permute(0, 3, 1, 2)`: nnspec has no permute"),
    # a pair around something that mixes positions
    (lambda self, x: self.conv(self.conv(x).permute(0, 2, 3, 1).permute(0, 3, 1, 2).relu()), None),
    (lambda self, x: self.conv(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2),
     "hold `conv2d` (conv), which does not act on each position alone"),
    (lambda self, x: self.fc(torch.permute(self.conv(x), (0, 2, 3, 1))).softmax(1).permute(0, 3, 1, 2),
     "hold `softmax`"),
    # a parameter times the tensor, broadcast along another axis than the channels
    (lambda self, x: self.conv(x) * self.row, "`row` (a parameter of shape [1, 4, 1]) times the tensor of rank 4"),
])
def test_a_permute_or_a_parameter_product_that_is_not_read_stays_an_import_problem(forward, what):
    bad = _bad(forward, conv=nn.Conv2d(4, 4, 3, padding=1), fc=nn.Linear(4, 4), row=nn.Parameter(torch.ones(1, 4, 1)))
    if what is None:  # an empty pair (nothing in between) is to_tokens, to_map: it imports
        text = from_torch(bad, (4, 4, 4))
        assert "- to_tokens\n  - to_map\n" in text
        return
    with pytest.raises(ImportProblem) as info:
        from_torch(bad, (4, 4, 4))  # as many channels as rows: the conv between the permutes runs
    assert info.value.where == "Bad" and what in info.value.message, str(info.value)


def test_a_layernorm_subclass_of_another_forward_is_not_read_as_a_channel_layernorm():
    class Odd(nn.LayerNorm):
        def forward(self, x):
            x = x.permute(0, 2, 3, 1)
            x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps) * 2
            return x.permute(0, 3, 1, 2)

    with pytest.raises(ImportProblem) as info:
        from_torch(nn.Sequential(nn.Conv2d(3, 4, 1), Odd(4)), (3, 4, 4))
    assert info.value.where == "1" and "layer_norm" in info.value.message


def test_a_layer_scale_of_one_factor_for_all_channels_is_named():
    bad = _bad(lambda self, x: self.conv(x) * self.one, conv=nn.Conv2d(3, 4, 1), one=nn.Parameter(torch.ones(1, 1, 1)))
    with pytest.raises(ImportProblem, match=r"`one` \(a parameter of shape \[1, 1, 1\]\) times the tensor with 4 "
                                            "channels"):
        from_torch(bad, (3, 4, 4))


# -- vision transformers: tokens, class token, positions, attention --------------------------------------

VIT_OWNED = ("class_token", "encoder.pos_embedding")


def small_vit():
    torch.manual_seed(0)
    return models().VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                                      mlp_dim=32, num_classes=10).eval()


def _show_the_output(source):
    """torchvision starts the class token and the head at zero (a constant output): random values instead."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name in ("class_token", "heads.head.weight", "heads.head.bias"):
            tensor = source.state_dict()[name]
            tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)


def test_vision_transformer_round_trip():
    """torchvision's VisionTransformer (vit_b_16's code at a small size): the patches' conv, reshape and permute
    -> to_tokens, the expanded class token's torch.cat -> class_token, `+ pos_embedding` -> position_embedding,
    nn.MultiheadAttention(x, x, x)[0] -> attention, x[:, 0] -> slice and flatten; encoder blocks repeated."""
    torch.set_num_threads(1)
    source = small_vit()
    text = from_torch(source, (3, 32, 32))
    assert "  encoder_block:\n    layers:\n      - residual:\n          - layernorm: {eps: 1.0e-06, name: ln_1}\n" \
           "          - attention: {heads: 2, name: self_attention}\n" in text
    layers = text[text.index("\nlayers:"):]
    assert layers == ("\nlayers:\n  - conv2d: {out: 16, kernel: 8, stride: 8, name: conv_proj}\n  - to_tokens\n"
                      "  - class_token: {name: class_token}\n"
                      "  - position_embedding: {length: 17, name: encoder_pos_embedding}\n  - dropout: {p: 0.0}\n"
                      "  - encoder_block: {repeat: 2, name: encoder_layers_encoder_layer_0}\n"
                      "  - layernorm: {eps: 1.0e-06, name: encoder_ln}\n  - slice: {stop: 1, axis: tokens}\n"
                      "  - flatten\n  - linear: {out: 10, name: heads_head}\n")
    _show_the_output(source)
    _, report = round_trip(source, text, (3, 32, 32), reshaped=len(VIT_OWNED))
    assert report.mapping()["class_token.token"] == "class_token"
    assert report.mapping()["encoder_pos_embedding.weight"] == "encoder.pos_embedding"
    assert report.mapping()["encoder_layers_encoder_layer_0.1.residual_1.branch.self_attention.out_proj.weight"] \
        == "encoder.layers.encoder_layer_1.self_attention.out_proj.weight"


@cache
def vit_b_16():
    """torchvision's vit_b_16 (86M parameters) and its import, once."""
    torch.manual_seed(0)
    source = models().vit_b_16().eval()
    return source, from_torch(source, (3, 224, 224), "vit_b_16")


def test_vit_b_16_round_trip():
    """The full model at its fixed 224x224: eval, batch 1, one thread."""
    torch.set_num_threads(1)
    source, text = vit_b_16()
    assert "encoder_block: {repeat: 12, name: encoder_layers_encoder_layer_0}" in text
    assert "position_embedding: {length: 197, name: encoder_pos_embedding}" in text
    assert len(text.splitlines()) < 70 and "uncertain" not in text
    _show_the_output(source)
    round_trip(source, text, (3, 224, 224), atol=1e-4, batch=1, reshaped=len(VIT_OWNED))


@pytest.mark.parametrize("which", ["small", "vit_b_16"])
def test_vision_transformer_inits_follow_torchvision_init_code(which):
    """VisionTransformer.__init__: conv_proj trunc_normal_(std=sqrt(1 / fan_in)) (cut at +-2, dozens of stds
    out: N(0, 1 / fan_in), which is kaiming_normal fan_in with the linear gain), zero bias; class token zeros;
    positions normal(std=0.02); MLPBlock xavier_uniform_ weights, normal(std=1e-6) biases;
    nn.MultiheadAttention's own init (xavier_uniform_ in_proj, nn.Linear's out_proj, zero biases); head zeros.
    Every tensor agrees with it, none is an exception or uncertain but the zero head."""
    text = from_torch(small_vit(), (3, 32, 32)) if which == "small" else vit_b_16()[1]
    assert "uncertain" not in text
    assert text[text.index("  paths:"):text.index("\nblocks:")].count("\n    ") == 2  # the head's weight and bias
    found = {t.path: t.init.describe() for t in nnspec.loads(text).graph.tensors()}
    assert found["conv_proj.weight"] == "kaiming_normal(a=0.0, mode='fan_in', nonlinearity='linear')"
    assert found["conv_proj.bias"] == "zeros" and found["class_token.token"] == "zeros"
    assert found["encoder_pos_embedding.weight"] == "normal(mean=0.0, std=0.02)"
    assert found["heads_head.weight"] == found["heads_head.bias"] == "zeros"
    seen = set()
    for path, init in found.items():
        for part, weight, other in ((".mlp.", "xavier_uniform(gain=1.0)", "normal(mean=0.0, std=1e-06)"),
                                    (".self_attention.", "torch_default", "zeros"),
                                    ("ln", "ones", "zeros")):
            if part in path:
                assert init == (weight if path.endswith(("weight", "gamma")) else other), path
                seen.add(part)
    assert len(seen) == 3


class Tokens(nn.Module):
    """A ViT-like model written otherwise: flatten(2).transpose(1, 2), positions as a [T, D] parameter added
    first, need_weights left on, the last token read with x[:, -1, :]."""

    def __init__(self, **attention):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.pos = nn.Parameter(torch.randn(17, 8))
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True, **attention)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls.expand(x.shape[0], -1, -1), x), 1)
        x = self.pos + x
        x = self.attn(x, x, x)[0]
        return self.head(x[:, -1, :])


def test_token_patterns_written_otherwise():
    torch.manual_seed(0)
    source = Tokens().eval()
    text = from_torch(source, (3, 16, 16))
    assert "  - to_tokens\n  - class_token: {name: cls}\n  - position_embedding: {length: 17, name: pos}\n" in text
    assert "  - slice: {start: 16, stop: 17, axis: tokens}\n  - flatten\n" in text
    round_trip(source, text, (3, 16, 16), reshaped=1)  # cls [1, 1, D]; pos is [T, D] already


def _tokens(body, **attention):
    """Tokens whose forward puts `body` between the patches and the head (fx traces the class's forward)."""
    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        return self.head(body(self, x).mean(1))
    return type("Tokens", (Tokens,), {"forward": forward})(**attention)


@pytest.mark.parametrize("body,attention,where,what", [
    (lambda self, x: self.attn(x, x, x * 2)[0], {}, "attn", "different query, key and value"),
    (lambda self, x: self.attn(x, x, x, attn_mask=torch.zeros(16, 16))[0], {}, "attn", "attn_mask=a tensor"),
    (lambda self, x: self.attn(x, x, x)[0], {"add_bias_kv": True}, "attn", "add_bias_kv=True"),
    (lambda self, x: self.attn(x, x, x)[1].sum() + x, {}, "attn", "attention weights"),
    (lambda self, x: torch.cat((x, self.cls.expand(x.shape[0], -1, -1)), 1), {}, "Tokens",
     "class_token prepends"),
    (lambda self, x: x + self.pos[:16], {}, "Tokens", "computed from the module's own `pos`"),
    (lambda self, x: x + self.table, {}, "Tokens", "not a parameter"),
    (lambda self, x: x[:, 1:].mean(1, keepdim=True).expand(-1, 16, -1), {}, "Tokens", "index [:, 1:]"),
])
def test_token_constructs_without_a_kind_are_named(body, attention, where, what):
    source = _tokens(body, **attention)
    source.register_buffer("table", torch.zeros(16, 8))
    with pytest.raises(ImportProblem) as info:
        from_torch(source, (3, 16, 16))
    assert info.value.where == where and what in str(info.value), str(info.value)


def test_vit_attention_batch_first_false_is_named():
    source = _tokens(lambda self, x: self.attn(x, x, x)[0])
    source.attn.batch_first = False
    with pytest.raises(ImportProblem, match="batch_first=False") as info:
        from_torch(source, (3, 16, 16))
    assert info.value.where == "attn"
