"""The Keras model computes the same function as the PyTorch model, given the same weights.

Every layer kind, every example (but the ImageNet-sized ones, tested elsewhere), and the `nnspec parity`
command and `nnspec.transfer` API that show it. Weights are perturbed before the comparison so that
zero, constant and identity initializers cannot hide a difference between the targets.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from helpers import EXAMPLES, spec_from_text

import nnspec
from nnspec import cli
from nnspec.compiler.backends import keras_table
from nnspec.parity import perturb, run_parity
from nnspec.vocabulary.kinds import KINDS

MAX_EXAMPLE_PARAMS = 2_000_000  # mobilenet_v2/resnet/vgg-sized examples: the architecture tests' (seconds each)

KIND_FIXTURES = {
    "conv_transpose2d": """
        nnspec: 1
        name: conv_transpose2d_all
        input: [4, 5, 6]
        layers:
          - conv_transpose2d: {out: 6, kernel: 3, stride: 2, padding: 1, output_padding: 1}
          - conv_transpose2d: {out: 4, kernel: [2, 3], stride: [2, 1], padding: [0, 2], output_padding: [1, 0]}
          - conv_transpose2d: {out: 6, kernel: 3, dilation: 2, groups: 2, padding: 1, output_padding: 1}
          - conv_transpose2d: {out: 4, kernel: 2, stride: 2, groups: 2, bias: false}
          - conv_transpose2d: {out: 4, kernel: 3, padding: 1}
    """,
    "conv_transpose1d_3d": """
        nnspec: 1
        name: conv_transpose1d_3d
        input: [2, 3, 4, 3]
        layers:
          - conv_transpose3d: {out: 4, kernel: [2, 3, 3], stride: [2, 1, 2], padding: [0, 1, 1],
                               output_padding: [1, 0, 1]}
          - conv_transpose3d: {out: 4, kernel: 1, groups: 4}
          - to_tokens
          - to_map: {size: [168]}
          - conv_transpose1d: {out: 3, kernel: 4, stride: 3, padding: 2, output_padding: 2}
          - conv_transpose1d: {out: 6, kernel: 3, groups: 3, stride: 2, padding: 1, bias: false}
          - conv_transpose1d: {out: 4, kernel: 3, dilation: 3, output_padding: 2}
    """,
    "upsample_adaptive_ceil": """
        nnspec: 1
        name: upsample_adaptive_ceil
        input: [3, 7, 5]
        layers:
          - upsample: {scale: [2, 3], mode: bilinear}
          - adaptive_avg_pool: {size: [5, 4]}
          - upsample
          - adaptive_max_pool: {size: [7, 3]}
          - maxpool2d: {kernel: 3, stride: 2, padding: 1, ceil_mode: true}
          - upsample: {scale: 3}
          - avgpool2d: {kernel: 3, stride: 2, padding: 1, ceil_mode: true}
          - avgpool2d: {kernel: [2, 3], stride: 2, ceil_mode: true}
          - to_tokens
          - to_map: {size: [8]}
          - upsample: {scale: 3}
          - avgpool1d: {kernel: 3, stride: 2, padding: 1, ceil_mode: true}
          - maxpool1d: {kernel: 2, stride: 3, padding: 1, ceil_mode: true}
          - adaptive_avg_pool: {size: 3}
    """,
    "pools_3d": """
        nnspec: 1
        name: pools_3d
        input: [2, 5, 4, 5]
        layers:
          - upsample: {scale: [1, 2, 1]}
          - adaptive_max_pool: {size: [3, 5, 4]}
          - avgpool3d: {kernel: 2, stride: 2, padding: 1, ceil_mode: true}
          - adaptive_avg_pool: {size: [3, 2, 3]}
          - maxpool3d: {kernel: 2, stride: 2, ceil_mode: true}
    """,
    "norms_activations": """
        nnspec: 1
        name: norms_activations
        input: [6, 5, 4]
        layers:
          - groupnorm: {groups: 3}
          - prelu: {per_channel: true}
          - scale
          - layernorm: {over: channels, eps: 1.0e-6}
          - hardswish
          - groupnorm: {groups: 2, eps: 0.001}
          - hardsigmoid
          - residual: [drop_path: {p: 0.1}]
          - mish
          - softplus
          - prelu
          - rmsnorm: {eps: 1.0e-5}
          - to_tokens
          - rmsnorm
          - scale
          - prelu: {per_channel: true}
          - layernorm: {over: channels}
          - residual: [linear: {out: 6}, drop_path: {p: 0.2}]
          - linear: {out: 5}
          - global_avg_pool
          - scale
          - prelu: {per_channel: true}
          - layernorm: {over: channels}
          - rmsnorm
    """,
    "conv1d": """
        nnspec: 1
        name: conv1d_all
        input: [4, 12]
        layers:
          - conv1d: {out: 6, kernel: 3, padding: 1}
          - conv1d: {out: 6, kernel: 3, stride: 2, padding: 2, groups: 2}
          - conv1d: {out: 4, kernel: 3, padding: same, dilation: 2, bias: false}
          - conv1d: {out: 4, kernel: 2, padding: same}
          - conv1d: {out: 8, kernel: 3, padding: valid, groups: 4}
          - maxpool1d: {kernel: 3, stride: 1, padding: 1}
          - avgpool1d: {kernel: 2, padding: 1}
          - avgpool1d: {kernel: 3, stride: 2}
    """,
    "conv2d": """
        nnspec: 1
        name: conv2d_all
        input: [4, 9, 8]
        layers:
          - conv2d: {out: 6, kernel: [3, 2], stride: [2, 1], padding: [1, 0]}
          - conv2d: {out: 6, kernel: 3, padding: same, groups: 3}
          - conv2d: {out: 4, kernel: 3, padding: same, dilation: [2, 1], bias: false}
          - conv2d: {out: 8, kernel: 2, padding: same, groups: 2}
          - conv2d: {out: 8, kernel: 3, padding: 2, dilation: 2, groups: 8}
          - maxpool2d: {kernel: 3, stride: 2, padding: 1}
          - avgpool2d: {kernel: [2, 3], stride: 1, padding: [1, 1]}
          - conv2d: {out: 4, kernel: 1, padding: valid}
          - maxpool2d: {kernel: [2, 1], stride: [1, 2]}
    """,
    "conv3d": """
        nnspec: 1
        name: conv3d_all
        input: [2, 5, 6, 5]
        layers:
          - conv3d: {out: 4, kernel: 3, padding: 1, groups: 2}
          - conv3d: {out: 4, kernel: [1, 3, 3], stride: [1, 2, 2], padding: [0, 1, 1]}
          - conv3d: {out: 4, kernel: 2, padding: same, bias: false}
          - maxpool3d: {kernel: 3, stride: 2, padding: 1}
          - avgpool3d: {kernel: 2, stride: 1, padding: 1}
    """,
    "residuals": """
        nnspec: 1
        name: residuals
        input: [4, 8, 8]
        blocks:
          down:
            args: {ch: required}
            layers:
              - residual:
                  branch:
                    - conv2d: {out: $ch, kernel: 3, stride: 2, padding: 1, bias: false}
                    - batchnorm
                    - relu
                    - conv2d: {out: $ch, kernel: 3, padding: 1}
                  shortcut:
                    - conv2d: {out: $ch, kernel: 1, stride: 2, bias: false}
                    - batchnorm
              - relu
        layers:
          - residual:
              - conv2d: {out: 4, kernel: 3, padding: 1}
              - relu
          - down: {ch: 6, repeat: 2}
          - residual:
              - residual:
                  - conv2d: {out: 6, kernel: 3, padding: same}
              - batchnorm
          - flatten
          - linear: {out: 5}
    """,
    "residual_layouts": """
        nnspec: 1
        name: residual_layouts
        input: [3, 4, 5]
        layers:
          - residual:
              - linear: {out: 5}
          - residual:
              branch:
                - conv2d: {out: 3, kernel: 3, padding: 1}
              shortcut:
                - linear: {out: 5}
          - residual:
              branch:
                - linear: {out: 5}
              shortcut:
                - conv2d: {out: 3, kernel: 1}
          - global_avg_pool
    """,
    "linear_layernorm_softmax": """
        nnspec: 1
        name: linear_layernorm_softmax
        input: [3, 5, 6]
        layers:
          - layernorm
          - softmax: {axis: 0}
          - conv2d: {out: 4, kernel: 3, padding: 1}
          - softmax: {axis: -1}
          - linear: {out: 7}
          - layernorm: {eps: 0.001}
          - conv2d: {out: 2, kernel: 1}
          - softmax: {axis: 1}
          - linear: {out: 3}
          - softmax: {axis: 0}
          - global_avg_pool
    """,
    "batchnorm_ranks": """
        nnspec: 1
        name: batchnorm_ranks
        input: [3, 4, 5, 6]
        layers:
          - batchnorm: {eps: 0.01, momentum: 0.3}
          - conv3d: {out: 2, kernel: 1}
          - global_avg_pool
          - batchnorm: {eps: 0.001, momentum: 0.5}
    """,
    "batchnorm_2d_1d": """
        nnspec: 1
        name: batchnorm_2d_1d
        input: [3, 5, 6]
        layers:
          - batchnorm: {eps: 0.1, momentum: 0.2}
          - flatten
          - batchnorm: {eps: 0.0001}
    """,
    "batchnorm_sequence": """
        nnspec: 1
        name: batchnorm_sequence
        input: [3, 7]
        layers:
          - batchnorm: {eps: 0.02, momentum: 0.01}
          - linear: {out: 5}
          - batchnorm
    """,
    "embedding_conv1d": """
        nnspec: 1
        name: embedding_conv1d
        input: {shape: [6], dtype: int64}
        layers:
          - embedding: {num: 11, dim: 5}
          - to_map
          - conv1d: {out: 4, kernel: 3, padding: 1}
          - relu
          - global_avg_pool
          - linear: {out: 3}
    """,
    "embedding_linear": """
        nnspec: 1
        name: embedding_linear
        input: {shape: [6], dtype: int64}
        layers:
          - embedding: {num: 11, dim: 5}
          - layernorm
          - linear: {out: 4}
          - slice: {start: 1, stop: 4}
          - softmax: {axis: 0}
    """,
    "embedding_2d": """
        nnspec: 1
        name: embedding_2d
        input: {shape: [2, 5], dtype: int64}
        layers:
          - embedding: {num: 7, dim: 6}
          - batchnorm: {eps: 0.2}
          - layernorm
          - conv2d: {out: 3, kernel: 3, padding: 1}
          - softmax: {axis: 0}
          - maxpool2d: {kernel: 2}
          - flatten
    """,
    "layouts": """
        nnspec: 1
        name: layouts
        input: [8, 4, 6]
        layers:
          - channel_shuffle: {groups: 4}
          - slice: {start: 2, stop: 7}
          - to_tokens
          - layernorm
          - linear: {out: 6}
          - slice: {start: 3, axis: tokens}
          - slice: {stop: 5}
          - global_max_pool: {keep_dims: true}
          - to_map
          - conv1d: {out: 3, kernel: 1}
          - to_tokens
          - linear: {out: 4}
          - to_map: {size: [1, 1]}
          - global_max_pool
    """,
    "tokens_input": """
        nnspec: 1
        name: tokens_input
        input: {shape: [6, 8], layout: tokens}
        layers:
          - layernorm
          - linear: {out: 8}
          - to_map: {size: [2, 3]}
          - conv2d: {out: 4, kernel: 3, padding: 1}
          - global_avg_pool: {keep_dims: true}
          - to_tokens
          - global_avg_pool
    """,
    "activations": """
        nnspec: 1
        name: activations
        input: [3, 4, 4]
        layers:
          - gelu: {approximate: tanh}
          - conv2d: {out: 3, kernel: 1}
          - gelu
          - conv2d: {out: 3, kernel: 1}
          - elu: {alpha: 0.5}
          - conv2d: {out: 3, kernel: 1}
          - leaky_relu: {slope: 0.2}
          - conv2d: {out: 3, kernel: 1}
          - relu6
          - conv2d: {out: 3, kernel: 1}
          - tanh
          - conv2d: {out: 3, kernel: 1}
          - sigmoid
          - conv2d: {out: 3, kernel: 1}
          - silu
          - identity
          - dropout: {p: 0.3}
          - relu
    """,
    # each parametrised activation last, on inputs spread over [-4, 4], so a wrong argument shows
    "gelu_tanh": """
        nnspec: 1
        name: gelu_tanh
        input: [32]
        layers:
          - linear: {out: 64, init: {weight: {normal: {std: 0.4}}}}
          - gelu: {approximate: tanh}
    """,
    "elu_alpha": """
        nnspec: 1
        name: elu_alpha
        input: [32]
        layers:
          - linear: {out: 64, init: {weight: {normal: {std: 0.4}}}}
          - elu: {alpha: 0.5}
    """,
    "leaky_relu_slope": """
        nnspec: 1
        name: leaky_relu_slope
        input: [32]
        layers:
          - linear: {out: 64, init: {weight: {normal: {std: 0.4}}}}
          - leaky_relu: {slope: 0.2}
    """,
    "relu6_saturates": """
        nnspec: 1
        name: relu6_saturates
        input: [8]
        layers:
          - linear: {out: 8, init: {weight: {normal: {std: 5.0}}}}
          - relu6
    """,
    "mlp_residual": """
        nnspec: 1
        name: mlp_residual
        input: [6]
        layers:
          - residual:
              branch:
                - linear: {out: 6}
                - tanh
          - residual:
              branch:
                - linear: {out: 4}
              shortcut:
                - linear: {out: 4, bias: false}
          - dropout
          - elu
          - leaky_relu
          - softmax
    """,
    "sequence_input": """
        nnspec: 1
        name: sequence_input
        input: [3, 10]
        layers:
          - softmax: {axis: 0}
          - layernorm
          - linear: {out: 4}
          - conv1d: {out: 5, kernel: 3, stride: 2, padding: 1}
          - flatten
    """,
}


KIND_FIXTURES["recurrent"] = (Path(__file__).parent / "fixtures" / "torch" / "kinds_recurrent.yaml").read_text()
# stacked and bidirectional recurrent layers, both outputs, on tokens from a linear layer
KIND_FIXTURES["recurrent_tokens"] = """
    nnspec: 1
    name: recurrent_tokens
    input: {shape: [5, 3], layout: tokens}
    layers:
      - gru: {hidden: 4, layers: 3}
      - linear: {out: 6}
      - lstm: {hidden: 2, layers: 2, bidirectional: true, output: last}
"""
KIND_FIXTURES["merges"] = (Path(__file__).parent / "fixtures" / "torch" / "merges.yaml").read_text()
# constant preprocessing per channel and for all, on a map, tokens and features; zero padding, also
# one side more than the other (Keras's 'same' with stride 2), before a conv and a max pool
KIND_FIXTURES["pad_rescale"] = """
    nnspec: 1
    name: pad_rescale
    input: [3, 9, 8]
    layers:
      - rescale: {scale: [0.5, 2.0, 1.5], offset: [0.1, -0.2, 0.3]}
      - pad: {padding: [[0, 1], [1, 0]]}
      - conv2d: {out: 4, kernel: 3, stride: 2}
      - pad: {padding: 1}
      - maxpool2d: {kernel: 2}
      - pad: {padding: [2, [0, 1]]}
      - to_tokens
      - rescale: {scale: 0.25, offset: [1.0, 2.0, 3.0, 4.0]}
      - global_avg_pool
      - rescale: {offset: -1.0}
"""
# a small ViT: conv patchify, class token, learned positions, pre-norm blocks, the class token's head
KIND_FIXTURES["vit_like"] = """
    nnspec: 1
    name: vit_like
    input: [3, 8, 8]
    blocks:
      encoder:
        layers:
          - residual:
              branch: [layernorm, {attention: {heads: 2, dropout: 0.1}}]
          - residual:
              branch: [layernorm, {linear: {out: 16}}, gelu, {linear: {out: 8}}]
    layers:
      - conv2d: {out: 8, kernel: 4, stride: 4}
      - to_tokens
      - class_token
      - position_embedding: {length: 5}
      - encoder: {repeat: 2}
      - layernorm
      - slice: {stop: 1, axis: tokens}
      - flatten
      - linear: {out: 3}
"""
# a small GPT: ids, learned positions, causal pre-norm blocks, a per-token head
KIND_FIXTURES["gpt_like"] = """
    nnspec: 1
    name: gpt_like
    input: {shape: [6], dtype: int64}
    blocks:
      decoder:
        layers:
          - residual:
              branch: [layernorm, {attention: {heads: 2, causal: true}}]
          - residual:
              branch: [layernorm, {linear: {out: 16}}, {gelu: {approximate: tanh}}, {linear: {out: 8}}]
    layers:
      - embedding: {num: 11, dim: 8}
      - position_embedding: {length: 10}
      - decoder: {repeat: 2}
      - residual:
          branch: [layernorm, {attention: {heads: 4, bias: false}}]
      - layernorm
      - linear: {out: 11}
"""


def fixture_spec(name: str):
    return spec_from_text(KIND_FIXTURES[name], f"{name}.yaml")


def test_fixtures_cover_every_layer_kind():
    used = set()
    for name in KIND_FIXTURES:
        used |= {layer.kind for layer in fixture_spec(name).graph.layers()}
    assert set(KINDS) <= used, sorted(set(KINDS) - used)
    assert set(KINDS) == set(keras_table.LAYERS)


@pytest.mark.parametrize("name", list(KIND_FIXTURES))
def test_parity_every_layer_kind(name):
    report = run_parity(fixture_spec(name), seed=1, perturb_weights=True)
    assert report.ok, report.text()
    assert report.max_abs < 1e-4


def _small_examples() -> list:
    """Every example but bad_* and the ImageNet-sized ones (loading a spec imports no framework)."""
    return [path for path in sorted(EXAMPLES.glob("*.yaml"))
            if not path.name.startswith("bad_") and nnspec.load(path).params <= MAX_EXAMPLE_PARAMS]


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in _small_examples()])
def test_parity_every_example(path):
    spec = nnspec.load(path)
    report = run_parity(spec, perturb_weights=True)
    assert report.ok, report.text()
    assert report.shape == tuple(spec.graph.output_shape)


def test_small_examples_include_the_readme_ones():
    names = {p.stem for p in _small_examples()}
    assert {"mlp", "small_cnn", "cifar_resnet", "resnet_blocks"} <= names
    assert "resnet50" not in names


# -- direct comparisons on chosen inputs ----------------------------------------------------------

def outputs(spec, x: np.ndarray, seed: int = 0, perturb_seed: int | None = 0):
    """(PyTorch output, Keras output moved back to channels-first) on the channels-first float batch `x`."""
    torch_model = nnspec.build(spec, "torch", seed=seed)
    keras_model = nnspec.build(spec, "keras", seed=seed)
    if perturb_seed is not None:
        perturb(torch_model, perturb_seed)
    nnspec.transfer(torch_model, keras_model, spec)
    torch_model.eval()
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    got = keras.ops.convert_to_numpy(keras_model(np.moveaxis(x, 1, -1), training=False))
    return expected, np.moveaxis(got, -1, 1)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_max_pool_padding_is_minus_infinity(n):
    """All-negative input: PyTorch pads max pooling with -inf, so corners keep their negative maxima.

    Zero padding would give 0 at every window that touches the border."""
    spatial = [5, 6, 4][:n]
    spec = spec_from_text(f"""
        nnspec: 1
        name: maxpool_negative
        input: {[3, *spatial]}
        layers:
          - maxpool{n}d: {{kernel: 3, stride: 2, padding: 1}}
    """)
    x = -1.0 - np.random.default_rng(n).random((2, 3, *spatial)).astype("float32")
    expected, got = outputs(spec, x, perturb_seed=None)
    assert np.all(expected < -1.0)  # zero padding would have produced zeros here
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("n", [1, 2])
def test_avg_pool_padding_counts_zeros(n):
    spatial = [5, 6][:n]
    spec = spec_from_text(f"""
        nnspec: 1
        name: avgpool_padding
        input: {[2, *spatial]}
        layers:
          - avgpool{n}d: {{kernel: 3, stride: 2, padding: 1}}
    """)
    x = np.ones((1, 2, *spatial), dtype="float32")
    expected, got = outputs(spec, x, perturb_seed=None)
    assert expected.min() < 1.0  # the padded zeros count, as PyTorch's count_include_pad=True
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("shape", [[3], [3, 5], [3, 4, 4], [3, 2, 3, 4]], ids=["1d", "2d", "3d", "4d"])
def test_batchnorm_momentum_and_eps_match_in_training(shape):
    """Training mode: both normalise with the batch statistics (eps matters) and update the running mean
    by PyTorch's momentum (Keras's is 1 - m)."""
    spec = spec_from_text(f"""
        nnspec: 1
        name: bn_train
        input: {shape}
        layers:
          - batchnorm: {{eps: 0.5, momentum: 0.3}}
    """)
    torch_model = nnspec.build(spec, "torch", seed=0)
    keras_model = nnspec.build(spec, "keras", seed=0)
    perturb(torch_model, 2)
    nnspec.transfer(torch_model, keras_model, spec)
    x = (np.random.default_rng(0).standard_normal((8, *shape)) * 0.3 + 2.0).astype("float32")
    channels_last = np.moveaxis(x, 1, -1)
    torch_model.train()
    expected = torch_model(torch.from_numpy(x)).detach().numpy()
    got = keras.ops.convert_to_numpy(keras_model(channels_last, training=True))
    np.testing.assert_allclose(np.moveaxis(got, -1, 1), expected, atol=1e-5)
    bn = keras_model.get_layer("batchnorm_1")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean),
                               torch_model.batchnorm_1.running_mean.numpy(), rtol=1e-5, atol=1e-6)


# -- nnspec.transfer: porting a trained PyTorch model ---------------------------------------------

def test_transfer_ports_a_trained_torch_model():
    spec = fixture_spec("residuals")
    torch_model = nnspec.build(spec, "torch", seed=4)
    optimizer = torch.optim.SGD(torch_model.parameters(), lr=0.5)
    generator = torch.Generator().manual_seed(0)
    torch_model.train()
    for _ in range(3):  # a few real training steps: weights and running statistics move
        x = torch.randn(8, 4, 8, 8, generator=generator)
        loss = torch_model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    fresh = nnspec.build(spec, "torch", seed=4)
    assert not torch.equal(fresh.state_dict()["down_1.0.residual_1.branch.batchnorm_1.running_mean"],
                           torch_model.state_dict()["down_1.0.residual_1.branch.batchnorm_1.running_mean"])
    keras_model = nnspec.build(spec, "keras", seed=99)
    nnspec.transfer(torch_model, keras_model, spec)

    state = torch_model.state_dict()
    conv = keras_model.get_layer("down_1.0.residual_1.branch.conv2d_1")
    w = state["down_1.0.residual_1.branch.conv2d_1.weight"].numpy()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(conv.kernel), w.transpose(2, 3, 1, 0))
    dense = keras_model.get_layer("linear_1")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(dense.kernel), state["linear_1.weight"].numpy().T)
    bn = keras_model.get_layer("down_1.1.residual_1.shortcut.batchnorm_1")
    prefix = "down_1.1.residual_1.shortcut.batchnorm_1."
    for attr, key in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                      ("moving_variance", "running_var")):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(getattr(bn, attr)), state[prefix + key].numpy())

    x = np.random.default_rng(1).standard_normal((3, 4, 8, 8)).astype("float32")
    torch_model.eval()
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    got = keras.ops.convert_to_numpy(keras_model(np.moveaxis(x, 1, -1), training=False))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-4)


def test_transfer_accepts_a_spec_path(tmp_path):
    path = EXAMPLES / "mlp.yaml"
    torch_model = nnspec.build(path, "torch", seed=1)
    keras_model = nnspec.build(path, "keras", seed=2)
    nnspec.transfer(torch_model, keras_model, path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras_model.get_layer("head").kernel),
                                  torch_model.head.weight.detach().numpy().T)


def test_parity_detects_a_layout_bug(monkeypatch):
    """Parity is a real check: copying conv kernels without the layout transpose is caught."""
    spec = fixture_spec("conv2d")
    assert run_parity(spec, seed=0, perturb_weights=True).ok

    def no_permute(array, tensor):  # right shape, wrong order: what a naive port does
        array = np.asarray(array)
        return array.reshape(np.transpose(array, (2, 3, 1, 0)).shape) if array.ndim == 4 else array

    monkeypatch.setattr(keras_table, "to_keras_layout", no_permute)
    report = run_parity(spec, seed=0, perturb_weights=True)
    assert not report.ok
    assert report.max_abs > 1e-2


# -- `nnspec parity` ------------------------------------------------------------------------------

def test_cli_parity_ok_prints_differences(capsys):
    code = cli.main(["parity", str(EXAMPLES / "small_cnn.yaml"), "--perturb", "--seed", "3"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "max abs diff" in out and "max rel diff" in out and ": ok" in out
    assert "output [10]" in out


def test_cli_parity_exits_1_above_tolerance(capsys):
    path = EXAMPLES / "mlp.yaml"
    report = run_parity(nnspec.load(path), atol=0.0, rtol=0.0, perturb_weights=True)
    assert report.max_abs > 0, "the two targets agree bit for bit here: pick a spec with rounding differences"
    assert not report.ok
    code = cli.main(["parity", str(path), "--perturb", "--atol", "0", "--rtol", "0"])
    out = capsys.readouterr().out
    assert code == 1
    assert "MISMATCH" in out
    code = cli.main(["parity", str(path), "--perturb", "--atol", "1e-4", "--rtol", "1e-4"])
    assert code == 0, capsys.readouterr().out


def test_cli_parity_exits_1_on_a_real_mismatch(monkeypatch, capsys, tmp_path):
    """A Keras lowering bug (softmax over the wrong axis) makes `nnspec parity` fail at the default tolerance."""
    path = tmp_path / "softmax_last.yaml"
    path.write_text("nnspec: 1\nname: softmax_last\ninput: [3, 4, 5]\nlayers:\n  - softmax: {axis: -1}\n")
    assert cli.main(["parity", str(path)]) == 0
    assert ": ok" in capsys.readouterr().out
    monkeypatch.setitem(keras_table.LAYERS, "softmax", lambda layer, layout: (
        [keras_table.call("keras.layers.Softmax", axis=1, name=layer.path)], None, None))
    assert cli.main(["parity", str(path)]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_cli_parity_bad_spec_exits_1(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("nnspec: 1\nname: bad\ninput: [3]\nlayers:\n  - conv2d: {out: 4, kernel: 3}\n")
    assert cli.main(["parity", str(bad)]) == 1
    assert "NS104" in capsys.readouterr().err


# -- the verdict, --perturb by default, and a quiet TensorFlow (issue 17) -----------------------------------

GROUPED = """nnspec: 1
name: grouped
input: [8, 6, 6]
layers:
  - conv2d: {out: 8, kernel: 3, padding: 1, groups: 4}
  - batchnorm
  - relu
  - conv2d: {out: 8, kernel: 3, padding: 1, groups: 2}
  - conv2d: {out: 8, kernel: 3, padding: 1, groups: 8}
  - conv2d: {out: 8, kernel: 1, groups: 2}
  - conv2d: {out: 8, kernel: 1, groups: 4}
  - conv2d: {out: 8, kernel: 1, groups: 8}
  - global_avg_pool
"""


def test_cli_parity_verdict_says_what_was_compared(capsys):
    code = cli.main(["parity", str(EXAMPLES / "small_cnn.yaml"), "--seed", "3"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.fullmatch(r"small_cnn: output \[10\], batch 2, perturbed weights: all 20 elements within "
                        r"atol \+ rtol\*\|torch\| \(atol 0\.0001, rtol 0\.0001\); max abs diff \S+ at index "
                        r"\[[01], \d\] \(torch \S+, keras \S+\), max rel diff \S+: ok\n", out), out
    code = cli.main(["parity", str(EXAMPLES / "small_cnn.yaml"), "--seed", "3", "--no-perturb", "--batch", "3"])
    out = capsys.readouterr().out
    assert code == 0 and "batch 3, weights as initialised: all 30 elements within" in out, out


def test_parity_report_on_a_mismatch_names_the_worst_element():
    report = run_parity(nnspec.load(EXAMPLES / "mlp.yaml"), atol=0.0, rtol=0.0, perturb_weights=True, seed=0)
    assert not report.ok and report.elements == 20 and 0 < report.outside <= 20
    text = report.text()
    assert f"{report.outside} of 20 elements outside atol + rtol*|torch| (atol 0, rtol 0); worst at index " in text
    assert text.endswith(": MISMATCH\n")
    assert len(report.index) == 2
    assert abs(report.torch_value - report.keras_value) > 0


def test_perturb_is_on_by_default():
    args = cli._parser().parse_args(["parity", "x.yaml"])
    assert args.perturb is True
    assert cli._parser().parse_args(["parity", "x.yaml", "--no-perturb"]).perturb is False


def test_parity_of_grouped_convolutions_is_quiet(tmp_path):
    """No TensorFlow C++ start-up log, no tf.function retracing warning (Keras's TensorFlow backend wraps each
    grouped convolution in a new tf.function: called eagerly, every call retraces)."""
    import os
    import subprocess
    import sys

    path = tmp_path / "grouped.yaml"
    path.write_text(GROUPED)
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "NNSPEC_DEBUG")}
    proc = subprocess.run([sys.executable, "-m", "nnspec", "parity", str(path)], capture_output=True, text=True,
                          env=env, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith("grouped: output [8], batch 2, perturbed weights: all 16 elements within")
    assert len(proc.stdout.splitlines()) == 1


def test_mish_after_a_conv_and_an_add():
    """TensorFlow's graph optimiser fused conv + bias + add + keras.activations.mish and then had no kernel
    for it; nnspec's Mish layer computes the same function without the pattern."""
    spec = spec_from_text("nnspec: 1\nname: m\ninput: [2, 5, 5]\nlayers:\n"
                          "  - add: [[], [conv2d: {out: 2, kernel: 1}]]\n  - mish\n", "mish.yaml")
    assert run_parity(spec, seed=0, perturb_weights=True).ok
