"""class_token, position_embedding and attention: against PyTorch's own modules, their inits, both targets."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
stats = pytest.importorskip("scipy.stats")
from helpers import import_source, spec_from_text  # noqa: E402
from test_parity import KIND_FIXTURES  # noqa: E402
from torch import nn  # noqa: E402

import nnspec  # noqa: E402

KS_P = 1e-3


def tokens_spec(items: str, shape: str = "[5, 64]", init: str = "") -> str:
    head = f"nnspec: 1\nname: m\ninput: {{shape: {shape}, layout: tokens}}\n{init}layers:\n"
    return head + "".join(f"  - {item}\n" for item in items.split("\n") if item)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- the function: nn.MultiheadAttention itself with the same weights -----------------------------

@pytest.mark.parametrize("args", ["{heads: 4}", "{heads: 2, causal: true}", "{heads: 1, bias: false}",
                                  "{heads: 8, causal: true, bias: false, dropout: 0.2}"])
def test_attention_is_multihead_attention(args):
    spec = spec_from_text(tokens_spec(f"attention: {args}", "[7, 16]"))
    model = nnspec.build(spec, "torch", seed=0).eval()
    layer = next(spec.graph.layers())
    a = layer.args
    reference = nn.MultiheadAttention(16, a["heads"], dropout=a["dropout"], bias=a["bias"], batch_first=True).eval()
    state = {k.split(".", 1)[1]: v for k, v in model.state_dict().items()}
    assert list(state) == list(reference.state_dict())  # the same keys, in the same order
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for value in state.values():
            value.copy_(torch.randn(value.shape, generator=gen))
    reference.load_state_dict(state)
    x = torch.randn(3, 7, 16, generator=gen)
    mask = nn.Transformer.generate_square_subsequent_mask(7) if a["causal"] else None
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x, x, x, attn_mask=mask, need_weights=False)[0], atol=1e-4,
                                   rtol=1e-4)


def test_causal_attention_does_not_see_the_future():
    spec = spec_from_text(tokens_spec("attention: {heads: 2, causal: true}", "[6, 8]"))
    model = nnspec.build(spec, "torch", seed=0).eval()
    x = torch.randn(2, 6, 8)
    changed = x.clone()
    changed[:, 4:] += 1.0
    with torch.no_grad():
        y, z = model(x), model(changed)
    torch.testing.assert_close(y[:, :4], z[:, :4])
    assert not torch.allclose(y[:, 4:], z[:, 4:])


def test_attention_dropout_acts_in_training_only():
    spec = spec_from_text(tokens_spec("attention: {heads: 2, dropout: 0.5}", "[6, 8]"))
    model = nnspec.build(spec, "torch", seed=0)
    x = torch.randn(2, 6, 8)
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(x), model(x))
        model.train()
        torch.manual_seed(0)
        assert not torch.allclose(model(x), model(x))


def test_class_token_and_positions():
    spec = spec_from_text(tokens_spec("class_token\nposition_embedding: {length: 9}", "[4, 6]"))
    model = nnspec.build(spec, "torch", seed=0)
    state = model.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {"class_token_1.token": (6,),
                                                             "position_embedding_1.weight": (9, 6)}
    x = torch.randn(2, 4, 6)
    with torch.no_grad():
        y = model(x)
    token, table = state["class_token_1.token"], state["position_embedding_1.weight"]
    expected = torch.cat([token.expand(2, 1, 6), x], dim=1) + table[:5]
    torch.testing.assert_close(y, expected)


# -- initialisation -----------------------------------------------------------------------------

def test_attention_torch_default_matches_multihead_attention():
    """Two-sample KS against nn.MultiheadAttention's reset: xavier_uniform on the whole in_proj_weight, zero
    biases, nn.Linear's kaiming_uniform(a=sqrt(5)) on out_proj.weight."""
    spec = spec_from_text(tokens_spec("attention: {heads: 4}", "[3, 128]"))
    model = nnspec.build(spec, "torch", seed=3)
    torch.manual_seed(3)
    reference = nn.MultiheadAttention(128, 4, batch_first=True)
    ours = {k.split(".", 1)[1]: v for k, v in model.state_dict().items()}
    theirs = reference.state_dict()
    assert list(ours) == list(theirs)
    for key in ("in_proj_bias", "out_proj.bias"):
        assert torch.count_nonzero(ours[key]) == 0 and torch.count_nonzero(theirs[key]) == 0
    for key in ("in_proj_weight", "out_proj.weight"):
        result = stats.ks_2samp(ours[key].flatten().numpy(), theirs[key].flatten().numpy())
        assert result.pvalue > KS_P, (key, result)
    bound = math.sqrt(6 / (128 + 384))  # xavier's fans of the whole [3D, D]
    assert ours["in_proj_weight"].abs().max() <= bound
    assert ours["in_proj_weight"].abs().max() > 0.99 * bound
    assert ours["out_proj.weight"].abs().max() <= 1 / math.sqrt(128)


def test_class_token_and_position_defaults():
    spec = spec_from_text(tokens_spec("class_token\nposition_embedding: {length: 64}", "[8, 64]"))
    state = nnspec.build(spec, "torch", seed=5).state_dict()
    assert torch.count_nonzero(state["class_token_1.token"]) == 0
    table = state["position_embedding_1.weight"].flatten().double().numpy()
    assert stats.kstest(table, stats.norm(0, 1).cdf).pvalue > KS_P


def test_inits_by_kind_and_role():
    init = ("init:\n  weight: zeros\n  class_token: {token: {normal: {std: 0.02}}}\n"
            "  position_embedding: {weight: {trunc_normal: {std: 0.02}}}\n"
            "  attention: {in_weight: {normal: {std: 0.1}}, out_weight: {uniform: {low: -0.1, high: 0.1}}}\n")
    spec = spec_from_text(tokens_spec("class_token\nposition_embedding: {length: 9}\nattention: {heads: 2}\n"
                                      "linear: {out: 3}", "[4, 8]", init))
    tensors = {t.path: (t.init.name, t.origin) for t in spec.graph.tensors()}
    assert tensors["class_token_1.token"] == ("normal", "init.class_token.token")
    # a model-wide `init.weight` does not reach the positions: only init.position_embedding.weight does
    assert tensors["position_embedding_1.weight"] == ("trunc_normal", "init.position_embedding.weight")
    assert tensors["attention_1.in_weight"] == ("normal", "init.attention.in_weight")
    assert tensors["attention_1.out_weight"] == ("uniform", "init.attention.out_weight")
    assert tensors["attention_1.in_bias"] == ("torch_default", "default")
    assert tensors["linear_1.weight"] == ("zeros", "init.weight")
    spec = spec_from_text(tokens_spec("position_embedding: {length: 9}\nlinear: {out: 3}", "[4, 8]",
                                      "init:\n  weight: {normal: {std: 0.02}}\n"))
    assert [t.init.name for t in spec.graph.tensors()] == ["torch_default", "normal", "torch_default"]
    spec = spec_from_text(tokens_spec("position_embedding: {length: 9, init: {weight: zeros}}", "[4, 8]"))
    model = nnspec.build(spec, "torch", seed=0)
    assert torch.count_nonzero(model.state_dict()["position_embedding_1.weight"]) == 0


def test_published_vit_init_is_not_flagged():
    """torchvision's ViT: zero class token, normal(0.02) positions, a zero-init attention output projection at
    the end of a residual branch: no diagnostic."""
    text = tokens_spec("class_token: {init: {token: zeros}}\n"
                       "position_embedding: {length: 9, init: {weight: {normal: {std: 0.02}}}}\n"
                       "residual: [layernorm, {attention: {heads: 2, init: {out_weight: zeros, out_bias: zeros}}}]",
                       "[4, 8]")
    spec = spec_from_text(text)
    assert not [d for d in spec.diagnostics if d.severity in ("error", "warning")], spec.diagnostics


# -- Keras: same function, same initial distributions, save and load -----------------------------

def test_keras_initial_bounds_follow_pytorch():
    keras = pytest.importorskip("keras")
    import numpy as np

    spec = spec_from_text(tokens_spec("attention: {heads: 4, init: {in_bias: {uniform: {low: -1, high: 1}}}}", "[3, 128]"))
    layer = nnspec.build(spec, "keras", seed=1).get_layer("attention_1")
    values = {v.name: keras.ops.convert_to_numpy(v) for v in layer.weights}
    assert values["in_weight"].shape == (384, 128) and values["out_weight"].shape == (128, 128)
    bound = math.sqrt(6 / (128 + 384))
    assert bound * 0.99 < np.abs(values["in_weight"]).max() <= bound
    assert 0.99 / math.sqrt(128) < np.abs(values["out_weight"]).max() <= 1 / math.sqrt(128)
    assert not values["out_bias"].any()
    # kaiming's fan_in is D on the [3D, D] variable, as in PyTorch
    spec = spec_from_text(tokens_spec("attention: {heads: 4, init: {in_weight: kaiming_uniform}}", "[3, 128]"))
    weight = keras.ops.convert_to_numpy(nnspec.build(spec, "keras", seed=1).get_layer("attention_1").weights[0])
    torch_bound = math.sqrt(2) * math.sqrt(3 / 128)
    assert torch_bound * 0.99 < np.abs(weight).max() <= torch_bound


def test_keras_save_and_load_round_trip(tmp_path):
    keras = pytest.importorskip("keras")
    import numpy as np

    spec = spec_from_text(KIND_FIXTURES["vit_like"], "vit_like.yaml")
    model = nnspec.build(spec, "keras", seed=2)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)))


def test_emitted_torch_equals_built(tmp_path):
    for name in ("vit_like", "gpt_like"):
        spec = spec_from_text(KIND_FIXTURES[name], f"{name}.yaml")
        module = import_source(nnspec.emit(spec, "torch"), tmp_path, f"emitted_{name}")
        built, emitted = nnspec.build(spec, "torch", seed=4), module.build(4)
        assert list(built.state_dict()) == list(emitted.state_dict())
        for key, value in built.state_dict().items():
            assert torch.equal(value, emitted.state_dict()[key]), key


def test_keras_layout_map_names_every_variable():
    keras = pytest.importorskip("keras")
    import re

    spec = spec_from_text(KIND_FIXTURES["vit_like"], "vit_like.yaml")
    devices = keras.distribution.list_devices()[:1]
    mesh = keras.distribution.DeviceMesh((1, 1), ["batch", "model"], devices * 1)
    layout_map = nnspec.keras_layout_map(spec, mesh)
    model = nnspec.build(spec, "keras", seed=0)
    keys = list(layout_map.keys())
    for variable in model.weights:
        assert sum(bool(re.search(key, variable.path)) for key in keys) == 1, variable.path
