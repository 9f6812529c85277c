"""The convnets of torchvision's model zoo written as specs (issue 12's acceptance examples).

Each example is compared with torchvision's own model (torchvision 0.28.0, imported by `tests/tv.py`):
the parameter count, every tensor's shape in state_dict order (the names differ: nnspec's are the
spec's paths), torchvision's initialisation tensor by tensor (constants exactly, random tensors by a
two-sample Kolmogorov-Smirnov test per family of tensors that torchvision draws from one distribution),
and torchvision's eval-mode output when the built model is given torchvision's weights. `nnspec parity
--perturb` runs on each at the smallest input size the model takes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("keras")
stats = pytest.importorskip("scipy.stats")

import nnspec
from nnspec.parity import run_parity

from tv import import_torchvision

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCHEMA_LINE = "# yaml-language-server: $schema=../nnspec.schema.json"


@dataclass(frozen=True)
class Zoo:
    make: Callable  # torchvision.models -> the model, as torchvision's constructor builds it
    params: int  # torchvision's published parameter count
    size: int  # input size of the same-function test
    parity_size: int  # the smallest input size the model takes


ZOO = {
    "densenet121": Zoo(lambda models: models.densenet121(), 7_978_856, 64, 32),
    "shufflenet_v2": Zoo(lambda models: models.shufflenet_v2_x1_0(), 2_278_604, 64, 32),
}
NAMES = list(ZOO)


@cache
def models():
    return import_torchvision().models


@cache
def spec(name: str):
    return nnspec.load(EXAMPLES / f"{name}.yaml")


def spec_at(name: str, size: int):
    """The example with a smaller input (the architectures take any size down to their smallest)."""
    text = (EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8")
    assert text.count("input: [3, 224, 224]") == 1
    return nnspec.loads(text.replace("input: [3, 224, 224]", f"input: [3, {size}, {size}]"), f"{name}.yaml")


def reference(name: str, device=None):
    """torchvision's model, initialised by torchvision (seeded), in eval mode."""
    torch.manual_seed(0)
    if device is not None:
        with torch.device(device):
            return ZOO[name].make(models()).eval()
    return ZOO[name].make(models()).eval()


def shapes(state_dict) -> list:
    return [tuple(v.shape) for v in state_dict.values()]


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
    # names differ, the order and every shape do not; buffers included
    assert shapes(ours.state_dict()) == shapes(ref.state_dict())
    assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]


def tensor_families(ref, ours):
    """Pairs (ours, torchvision's) of the tensors torchvision draws at random, grouped by what decides the
    distribution: the owning module's type, the tensor's name and its shape (fans come from the shape)."""
    families = defaultdict(list)
    constants = []
    for (key, theirs), mine in zip(ref.state_dict().items(), ours.state_dict().values()):
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
    1-D tensors are perturbed first (so that no batchnorm is the identity and no bias is zero)."""
    torch.set_num_threads(1)
    ref = reference(name)
    generator = torch.Generator().manual_seed(1)
    state = {}
    for key, value in ref.state_dict().items():
        if key.endswith("running_var"):
            value = torch.rand(value.shape, generator=generator) + 0.5
        elif value.is_floating_point() and value.ndim == 1:
            value = value + 0.1 * torch.randn(value.shape, generator=generator)
        state[key] = value
    ref.load_state_dict(state)
    ours = nnspec.build(spec(name), "torch", device="meta").eval()
    ours.load_state_dict(dict(zip(ours.state_dict(), state.values())), assign=True)
    size = ZOO[name].size
    x = torch.randn(1, 3, size, size, generator=generator)
    with torch.no_grad():
        want, got = ref(x), ours(x)
    assert got.shape == want.shape == (1, 1000)
    assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max())


@pytest.mark.parametrize("name", NAMES)
def test_parity_with_perturbed_weights(name):
    """`nnspec parity --perturb` at the smallest input size the model takes, batch 1."""
    report = run_parity(spec_at(name, ZOO[name].parity_size), seed=0, batch=1, perturb_weights=True)
    assert report.ok, report.text()
