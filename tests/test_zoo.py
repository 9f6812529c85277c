"""The convnets of torchvision's model zoo, and a U-Net, written as specs (issue 12's acceptance examples).

Each example is compared with torchvision's own model (torchvision 0.28.0, imported by `tests/tv.py`):
the parameter count, every tensor's shape in state_dict order (the names differ: nnspec's are the
spec's paths), torchvision's initialisation tensor by tensor (constants exactly, random tensors by a
two-sample Kolmogorov-Smirnov test per family of tensors that torchvision draws from one distribution),
and torchvision's eval-mode output when the built model is given torchvision's weights. `nnspec parity
--perturb` runs on each at the smallest input size the model takes. The U-Net is compared in the same
ways with a plain-PyTorch U-Net written below.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("keras")
stats = pytest.importorskip("scipy.stats")

from torch import nn
from tv import torchvision_models as models

import nnspec
from nnspec.parity import run_parity

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCHEMA_LINE = "# yaml-language-server: $schema=../nnspec.schema.json"


class DoubleConv(nn.Sequential):
    def __init__(self, c_in, c_out):
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class UNet(nn.Module):
    """A plain U-Net with three levels of skips, written as PyTorch users write it."""

    def __init__(self, c_in=3, classes=2, width=16):
        super().__init__()
        w = width
        self.enc1, self.enc2, self.enc3 = DoubleConv(c_in, w), DoubleConv(w, 2 * w), DoubleConv(2 * w, 4 * w)
        self.bottleneck = DoubleConv(4 * w, 8 * w)
        self.up3, self.dec3 = nn.ConvTranspose2d(8 * w, 4 * w, 2, stride=2), DoubleConv(8 * w, 4 * w)
        self.up2, self.dec2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2), DoubleConv(4 * w, 2 * w)
        self.up1, self.dec1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2), DoubleConv(2 * w, w)
        self.head = nn.Conv2d(w, classes, 1)
        self.pool = nn.MaxPool2d(2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.ConvTranspose2d):
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        b = self.bottleneck(self.pool(e3))
        d3 = self.dec3(torch.cat([e3, self.up3(b)], 1))
        d2 = self.dec2(torch.cat([e2, self.up2(d3)], 1))
        return self.head(self.dec1(torch.cat([e1, self.up1(d2)], 1)))


@dataclass(frozen=True)
class Zoo:
    make: Callable  # torchvision.models -> the model, as torchvision's constructor builds it
    params: int  # torchvision's published parameter count
    size: int  # input size of the same-function test
    parity_size: int  # the smallest input size the model takes


ZOO = {
    "densenet121": Zoo(lambda models: models.densenet121(), 7_978_856, 64, 32),
    "shufflenet_v2": Zoo(lambda models: models.shufflenet_v2_x1_0(), 2_278_604, 64, 32),
    "squeezenet": Zoo(lambda models: models.squeezenet1_0(), 1_248_424, 64, 32),
    "googlenet": Zoo(lambda models: models.googlenet(aux_logits=False, init_weights=True), 6_624_904, 64, 32),
    "efficientnet_b0": Zoo(lambda models: models.efficientnet_b0(), 5_288_548, 64, 32),
    "mobilenet_v3_large": Zoo(lambda models: models.mobilenet_v3_large(), 5_483_032, 64, 32),
    "mobilenet_v3_small": Zoo(lambda models: models.mobilenet_v3_small(), 2_542_856, 64, 32),
    "convnext_tiny": Zoo(lambda models: models.convnext_tiny(), 28_589_128, 64, 32),
    "unet": Zoo(lambda models: UNet(), 482_754, 64, 8),  # the reference: the plain U-Net above
}
NAMES = list(ZOO)


@cache
def spec(name: str):
    return nnspec.load(EXAMPLES / f"{name}.yaml")


def spec_at(name: str, size: int):
    """The example with a smaller input (the architectures take any size down to their smallest)."""
    text = (EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8")
    written = re.findall(r"^input: \[3, \d+, \d+\]$", text, re.M)
    assert len(written) == 1
    return nnspec.loads(text.replace(written[0], f"input: [3, {size}, {size}]"), f"{name}.yaml")


def reference(name: str, device=None):
    """torchvision's model (or the U-Net above), initialised as it initialises itself (seeded), in eval mode."""
    zoo = models() if name != "unet" else None
    torch.manual_seed(0)
    if device is not None:
        with torch.device(device):
            return ZOO[name].make(zoo).eval()
    return ZOO[name].make(zoo).eval()


def shapes(state_dict) -> list:
    return [tuple(v.shape) for v in state_dict.values()]


def aligned(state_dict) -> dict:
    """torchvision's state_dict in nnspec's order and shapes. They agree everywhere but in ConvNeXt's layer
    scale: torchvision keeps it as a [C, 1, 1] parameter of the block, listed before the block's other
    tensors (`features.1.0.layer_scale`, then `features.1.0.block.0.weight`, ...); nnspec's `scale` is a
    [C] tensor where it acts, after the block's second linear (`block.5`)."""
    moved = {key: value for key, value in state_dict.items() if key.endswith(".layer_scale")}
    out = {}
    for key, value in state_dict.items():
        if key in moved:
            continue
        out[key] = value
        if key.endswith(".block.5.bias") and key.replace("block.5.bias", "layer_scale") in moved:
            scale = key.replace("block.5.bias", "layer_scale")
            out[scale] = moved.pop(scale).reshape(-1)
    assert not moved, list(moved)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_example_checks_without_any_diagnostic(name):
    path = EXAMPLES / f"{name}.yaml"
    assert path.read_text(encoding="utf-8").splitlines()[0] == SCHEMA_LINE
    assert nnspec.check(path) == []


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_and_every_shape_equal_torchvision(name):
    ref = reference(name, "meta")
    ours = nnspec.build(spec(name), "torch", device="meta")
    want = ZOO[name].params
    assert sum(p.numel() for p in ref.parameters()) == want  # the published count
    assert spec(name).params == want
    assert sum(p.numel() for p in ours.parameters()) == want
    # names differ, the order and every shape do not (but for ConvNeXt's layer scale, see `aligned`)
    assert shapes(ours.state_dict()) == shapes(aligned(ref.state_dict()))
    if name == "convnext_tiny":
        differ = [key for key, a, b in zip(ref.state_dict(), shapes(ours.state_dict()), shapes(ref.state_dict()))
                  if a != b]
        assert differ and differ[0] == "features.1.0.layer_scale"
        assert sum(key.endswith("layer_scale") for key in ref.state_dict()) == 18
    else:
        assert shapes(ours.state_dict()) == shapes(ref.state_dict())  # buffers included
        assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]


def hyperparameters(model) -> dict:
    """What a module's type alone does not say, per kind of module, in module order."""
    found = defaultdict(list)
    for module in model.modules():
        kind = type(module).__name__
        if kind.startswith("BatchNorm"):
            found["batchnorm_eps"].append(module.eps)
            found["batchnorm_momentum"].append(module.momentum)
        elif "LayerNorm" in kind:
            found["layernorm"].append(module.eps)
        elif kind == "Dropout":
            found["dropout"].append(module.p)
        elif kind in ("StochasticDepth", "DropPath"):
            found["drop_path"].append(module.p)
        elif kind == "GELU":
            found["gelu"].append(module.approximate)
    return dict(found)


@pytest.mark.parametrize("name", NAMES)
def test_norms_dropouts_and_stochastic_depth_equal_torchvision(name):
    """Batchnorm eps and momentum, layernorm eps, dropout and stochastic-depth probabilities, in order.
    torchvision's EfficientNet gives every MBConv a StochasticDepth, used only where the block has its
    skip: only those are compared."""
    theirs = hyperparameters(reference(name, "meta"))
    ours = hyperparameters(nnspec.build(spec(name), "torch", device="meta"))
    if name == "efficientnet_b0":
        used = [block.stochastic_depth.p for stage in reference(name, "meta").features
                for block in (stage if isinstance(stage, torch.nn.Sequential) else [])
                if getattr(block, "use_res_connect", False)]
        theirs["drop_path"] = used
    assert ours.keys() == theirs.keys()
    for kind, values in ours.items():
        if kind == "gelu":
            assert values == theirs[kind]
        else:  # torchvision computes some probabilities (0.2 * 7 / 16 = 0.08750000000000001)
            assert values == pytest.approx(theirs[kind], rel=1e-12, abs=0), kind


def tensor_families(ref, ours):
    """Pairs (ours, torchvision's) of the tensors torchvision draws at random, grouped by what decides the
    distribution: the owning module's type, the tensor's name and its shape (fans come from the shape)."""
    families = defaultdict(list)
    constants = []
    for (key, theirs), mine in zip(aligned(ref.state_dict()).items(), ours.state_dict().values()):
        assert mine.shape == theirs.shape, key
        if not theirs.is_floating_point() or theirs.numel() == 1 or bool((theirs == theirs.flatten()[0]).all()):
            constants.append((key, mine, theirs))
            continue
        owner, tensor = key.rsplit(".", 1)
        families[(type(ref.get_submodule(owner)).__name__, tensor, tuple(theirs.shape))].append((key, mine, theirs))
    return families, constants


def sample(tensors, n: int, rng) -> np.ndarray:
    values = torch.cat([t.flatten() for t in tensors]).numpy()
    return values if values.size <= n else rng.choice(values, n, replace=False)


@pytest.mark.parametrize("name", NAMES)
def test_initialisation_equals_torchvision(name):
    """torchvision's constants exactly; its random tensors from the same distribution (KS test per family,
    which sees a wrong spread, a wrong law or a truncation) and never constant in ours."""
    ref = reference(name)
    ours = nnspec.build(spec(name), "torch", seed=0)
    families, constants = tensor_families(ref, ours)
    for key, mine, theirs in constants:
        assert mine.dtype == theirs.dtype and torch.equal(mine, theirs), key
    rng = np.random.default_rng(0)
    for family, pairs in families.items():
        for key, mine, _ in pairs:
            assert not bool((mine == mine.flatten()[0]).all()), key
        mine = sample([m for _, m, _ in pairs], 20_000, rng)
        theirs = sample([t for _, _, t in pairs], 20_000, rng)
        result = stats.ks_2samp(mine, theirs)
        assert result.pvalue > 1e-4, (family, pairs[0][0], result)


@pytest.mark.parametrize("name", NAMES)
def test_same_function_as_torchvision(name):
    """torchvision's weights, copied in order into the built model, give torchvision's eval-mode output.
    1-D tensors (and ConvNeXt's layer scales) are perturbed first, so that no batchnorm is the identity,
    no bias is zero and no residual branch is scaled down to nothing."""
    torch.set_num_threads(1)
    ref = reference(name)
    generator = torch.Generator().manual_seed(1)
    state = {}
    for key, value in ref.state_dict().items():
        if key.endswith("running_var"):
            value = torch.rand(value.shape, generator=generator) + 0.5
        elif value.is_floating_point() and (value.ndim == 1 or key.endswith("layer_scale")):
            value = value + 0.1 * torch.randn(value.shape, generator=generator)
        state[key] = value
    ref.load_state_dict(state)
    size = ZOO[name].size
    ours = nnspec.build(spec_at(name, size), "torch", device="meta").eval()
    ours.load_state_dict(dict(zip(ours.state_dict(), aligned(state).values())), assign=True)
    x = torch.randn(1, 3, size, size, generator=generator)
    with torch.no_grad():
        want, got = ref(x), ours(x)
    assert got.shape == want.shape == ((1, 2, size, size) if name == "unet" else (1, 1000))
    assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max())


@pytest.mark.parametrize("name", NAMES)
def test_parity_with_perturbed_weights(name):
    """`nnspec parity --perturb` at the smallest input size the model takes, batch 1."""
    report = run_parity(spec_at(name, ZOO[name].parity_size), seed=0, batch=1, perturb_weights=True)
    assert report.ok, report.text()
