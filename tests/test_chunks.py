"""The `chunks` initializer: the first axis in equal parts, each initialised as a tensor of its own."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import nnspec
from nnspec.compiler.pipeline import analyse_text

torch = pytest.importorskip("torch")

SPEC = """
nnspec: 1
name: gates
input: [12]
seed: 3
layers:
  - linear:
      out: 64
      init:
        weight: {chunks: [xavier_uniform, zeros, {normal: {std: 0.5}}, orthogonal]}
        bias: {chunks: [zeros, ones, zeros, zeros]}
  - relu
  - linear: {out: 4}
"""


@pytest.fixture(scope="module")
def spec():
    return nnspec.loads(SPEC)


def test_parts_are_read_with_their_own_arguments(spec):
    tensor = spec.graph.root.items[0].tensors["weight"]
    assert tensor.init.describe() == "chunks(xavier_uniform(gain=1.0), zeros, normal(mean=0.0, std=0.5), orthogonal(gain=1.0))"
    long_form = SPEC.replace("{chunks: [zeros, ones, zeros, zeros]}", "{chunks: {parts: [zeros, ones, zeros, zeros]}}")
    assert nnspec.loads(long_form).graph.root.items[0].tensors["bias"].init.describe() == "chunks(zeros, ones, zeros, zeros)"


def test_each_part_is_a_tensor_of_its_own_on_torch(spec):
    torch.set_num_threads(1)
    model = nnspec.build(spec, "torch")
    weight, bias = model.state_dict()["linear_1.weight"], model.state_dict()["linear_1.bias"]
    parts = weight.split(16)
    bound = math.sqrt(6 / (12 + 16))  # xavier on the part [16, 12]: fan_out is the part's rows
    assert parts[0].abs().max() <= bound
    assert stats.kstest(parts[0].flatten().numpy(), stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-3
    assert torch.equal(parts[1], torch.zeros(16, 12))
    assert stats.kstest(parts[2].flatten().numpy(), stats.norm(0, 0.5).cdf).pvalue > 1e-3
    q = parts[3]  # orthogonal [16, 12]: orthonormal columns
    torch.testing.assert_close(q.T @ q, torch.eye(12), atol=1e-5, rtol=0)
    assert torch.equal(bias, torch.tensor([0.0] * 16 + [1.0] * 16 + [0.0] * 32))


def test_a_shard_of_a_chunked_tensor_equals_the_whole(spec):
    from nnspec.compiler.backends import torch_runtime
    from nnspec.compiler.backends.torch_backend import init_plan

    _, _, kind, args = init_plan(spec.graph)[0]
    whole = torch.empty(64, 12)
    torch_runtime.init_tensor_(whole, 7, kind, **args)
    for rows in (torch.arange(10, 40), torch.arange(0, 64, 3), torch.arange(48, 64)):
        shard = torch.empty(len(rows), 12)
        torch_runtime.fill_(shard, [rows, torch.arange(12)], (64, 12), 7, kind, args)
        assert torch.equal(shard, whole[rows])


def test_emitted_code_gives_the_same_values(spec, tmp_path):
    from helpers import import_source

    module = import_source(nnspec.emit(spec, target="torch"), tmp_path)
    built = nnspec.build(spec, "torch", seed=5).state_dict()
    emitted = module.build(5).state_dict()
    assert all(torch.equal(built[k], emitted[k]) for k in built)


def test_keras_gives_the_same_distribution_per_part(spec):
    keras = pytest.importorskip("keras")
    model = nnspec.build(spec, "keras", seed=0)
    kernel, bias = (keras.ops.convert_to_numpy(v) for v in model.get_layer("linear_1").weights)
    parts = np.split(kernel.T, 4)  # Keras's Dense kernel is [in, out]
    bound = math.sqrt(6 / (12 + 16))
    assert np.abs(parts[0]).max() <= bound
    assert stats.kstest(parts[0].flatten(), stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-3
    assert not parts[1].any()
    assert stats.kstest(parts[2].flatten(), stats.norm(0, 0.5).cdf).pvalue > 1e-3
    np.testing.assert_allclose(parts[3].T @ parts[3], np.eye(12), atol=1e-5)
    np.testing.assert_array_equal(bias, [0.0] * 16 + [1.0] * 16 + [0.0] * 32)
    assert not np.array_equal(parts[0], parts[2])  # each part has a seed of its own


def test_parity(spec):
    pytest.importorskip("keras")
    from nnspec.parity import run_parity

    assert run_parity(spec, seed=1, perturb_weights=True).ok


@pytest.mark.parametrize("init, code, words", [
    ("{chunks: [zeros, ones, zeros]}", "NS004", "not divisible by 3"),
    ("{chunks: [zeros, {chunks: [zeros, ones]}]}", "NS004", "is itself `chunks`"),
    ("{chunks: [zeros, onez]}", "NS008", "unknown initializer `onez`"),
    ("{chunks: []}", "NS004", "at least 1"),
    ("{chunks: [zeros, xavier_uniform]}", "NS210", "1-D [4]"),
])
def test_mistakes(init, code, words):
    _, diags = analyse_text(f"nnspec: 1\nname: m\ninput: [6]\nlayers:\n  - linear: {{out: 8, init: {{bias: {init}}}}}\n",
                            "m.yaml")
    assert [d.code for d in diags] == [code], diags
    assert words in diags[0].message


def test_safety_rules_see_each_part():
    _, diags = analyse_text("nnspec: 1\nname: m\ninput: [6]\nlayers:\n  - linear: {out: 8, init: {weight: "
                            "{chunks: [xavier_uniform, eye]}}}\n  - relu\n  - linear: {out: 2}\n", "m.yaml")
    assert [d.code for d in diags] == ["NS207"]  # eye on the non-square part [4, 6]
