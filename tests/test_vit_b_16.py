"""examples/vit_b_16.yaml is torchvision's vit_b_16: parameters, shapes, initialisation and eval output."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
stats = pytest.importorskip("scipy.stats")

from tv import torchvision_models  # noqa: E402

import nnspec  # noqa: E402

SPEC = Path(__file__).resolve().parent.parent / "examples" / "vit_b_16.yaml"
PARAMS = 86_567_656
KS_P = 1e-3


def _squeezed(shape) -> tuple:
    shape = tuple(shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _theirs_in_our_order(model) -> list:
    """torchvision's parameters in the order of the spec's tensors: its class token follows conv_proj."""
    items = list(model.state_dict().items())
    token = [item for item in items if item[0] == "class_token"]
    rest = [item for item in items if item[0] != "class_token"]
    return rest[:2] + token + rest[2:]


@pytest.fixture(scope="module")
def pair():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    models = torchvision_models()
    spec = nnspec.load(SPEC)
    torch.manual_seed(0)
    theirs = models.vit_b_16()
    ours = nnspec.build(spec, "torch", seed=0)
    yield spec, ours, theirs
    torch.set_num_threads(threads)


def test_parameter_count_and_shapes(pair):
    spec, ours, theirs = pair
    assert spec.params == PARAMS
    assert sum(p.numel() for p in ours.parameters()) == PARAMS == sum(p.numel() for p in theirs.parameters())
    mine = list(ours.state_dict().items())
    other = _theirs_in_our_order(theirs)
    assert len(mine) == len(other) == 152
    for (key, value), (their_key, their_value) in zip(mine, other):
        assert _squeezed(value.shape) == _squeezed(their_value.shape), (key, their_key)


def test_initialisation_tensor_by_tensor(pair):
    """Constants equal; random tensors from the same distribution (two-sample KS on up to 20000 values)."""
    _spec, ours, theirs = pair
    gen = torch.Generator().manual_seed(0)
    for (key, value), (their_key, their_value) in zip(ours.state_dict().items(), _theirs_in_our_order(theirs)):
        a, b = value.flatten(), their_value.flatten()
        if torch.unique(b).numel() == 1 or torch.unique(a).numel() == 1:
            assert torch.equal(a, b), (key, their_key)
            continue
        if a.numel() > 20000:
            a, b = a[torch.randperm(a.numel(), generator=gen)[:20000]], b[torch.randperm(b.numel(), generator=gen)[:20000]]
        result = stats.ks_2samp(a.numpy(), b.numpy())
        assert result.pvalue > KS_P, (key, their_key, result)


def test_eval_output_given_torchvision_weights(pair):
    _spec, ours, theirs = pair
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name in ("heads.head.weight", "heads.head.bias", "class_token"):  # not zero, so that the output shows
            theirs.state_dict()[name].copy_(torch.randn(theirs.state_dict()[name].shape, generator=gen) * 0.1)
        state = ours.state_dict()
        for (key, value), (_their_key, their_value) in zip(list(state.items()), _theirs_in_our_order(theirs)):
            value.copy_(their_value.reshape(value.shape))
        ours.eval()
        theirs.eval()
        x = torch.randn(1, 3, 224, 224, generator=gen)
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-4, rtol=1e-4)
