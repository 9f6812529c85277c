"""Sharded initialisation: FSDP2, tensor parallelism and both on a 2-D mesh give, gathered, the
single-process build bit for bit, for every initializer kind (gloo on 127.0.0.1, CPU)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import nnspec
from nnspec.vocabulary.initializers import REGISTRY

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed.fsdp")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

from helpers import assert_same_state  # noqa: E402

WORKER = Path(__file__).with_name("distributed_worker.py")
WAIVE = "allow: {NS201: t, NS202: t, NS203: t, NS204: t, NS205: t, NS207: t, NS209: t}"

# Odd sizes (uneven shards) and tensors of several 2**16-element blocks of the stream.
IMAGE = f"""
nnspec: 1
name: every_init_image
input: [3, 9, 9]
seed: 3
layers:
  - conv2d: {{out: 6, kernel: 3, padding: same, init: {{weight: dirac, bias: {{values: [1, 2, 3, 4, 5, 6]}}}}, {WAIVE}}}
  - conv2d: {{out: 6, kernel: 3, padding: same, groups: 2,
             init: {{weight: {{kaiming_normal: {{nonlinearity: tanh}}}}, bias: {{log_prior: [1, 2, 3, 4, 5, 6]}}}},
             {WAIVE}}}
  - batchnorm: {{init: {{gamma: torch_default, beta: torch_default}}}}
  - conv2d: {{out: 5, kernel: 3, padding: same, init: {{weight: he_normal, bias: {{normal: {{std: 0.5}}}}}}, {WAIVE}}}
  - conv2d: {{out: 5, kernel: 3, padding: same}}
  - flatten
  - linear: {{out: 301, init: {{weight: {{kaiming_uniform: {{a: 0.2, mode: fan_out}}}},
             bias: {{uniform: {{low: -0.5, high: 0.25}}}}}}, {WAIVE}}}
  - linear: {{out: 300, init: {{weight: {{orthogonal: 2}}, bias: {{trunc_normal: {{std: 1.0, low: -0.5, high: 1.5}}}}}},
             {WAIVE}}}
  - linear: {{out: 257, init: {{weight: {{sparse: {{sparsity: 0.5, std: 0.1}}}}, bias: zeros}}, {WAIVE}}}
  - layernorm: {{init: {{gamma: {{constant: 0.25}}, beta: ones}}}}
  - linear: {{out: 257, init: {{weight: {{eye: 2}}, bias: {{constant: -0.5}}}}, {WAIVE}}}
  - linear: {{out: 33, init: {{weight: {{xavier_uniform: 2.0}}}}, {WAIVE}}}
  - linear: {{out: 33, init: {{weight: {{xavier_normal: {{gain: 0.5}}}}, bias: ones}}, {WAIVE}}}
  - linear: {{out: 33, init: {{weight: {{variance_scaling: {{scale: 2.0, mode: fan_avg, distribution: uniform}}}}}},
             {WAIVE}}}
  - linear: {{out: 33, init: {{weight: glorot_uniform}}, {WAIVE}}}
  - linear: {{out: 33, init: {{weight: glorot_normal}}, {WAIVE}}}
  - linear: {{out: 33, init: {{weight: he_uniform}}, {WAIVE}}}
  - linear: {{out: 33, init: {{weight: lecun_uniform}}, {WAIVE}}}
  - linear: {{out: 33, init: {{weight: lecun_normal}}, {WAIVE}}}
  - linear: {{out: 33, init: {{weight: {{normal: {{mean: 0.1, std: 0.5}}}}}}, {WAIVE}}}
  - linear: {{out: 33, init: {{weight: {{trunc_normal: {{std: 1.0}}}}}}, {WAIVE}}}
  - linear: {{out: 33, init: {{weight: zeros, bias: ones}}, {WAIVE}}}
  - linear: {{out: 300, init: {{weight: {{chunks: [xavier_uniform, zeros, {{normal: {{std: 0.5}}}}]}},
             bias: {{chunks: [zeros, ones, zeros]}}}}, {WAIVE}}}
  - linear: {{out: 3}}
"""

TOKENS = f"""
nnspec: 1
name: every_init_tokens
input: {{shape: [5], dtype: int64}}
seed: 4
layers:
  - embedding: {{num: 1001, dim: 70, init: {{weight: {{normal: {{std: 0.02}}}}}}}}
  - layernorm
  - linear: {{out: 131, init: {{weight: he_uniform}}, {WAIVE}}}
  - gelu
  - linear: {{out: 70}}
  - embedding_free: null
"""
TOKENS = TOKENS.replace("  - embedding_free: null\n", "")


def _spec(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT_TAKEN = ("address already in use", "eaddrinuse", "errno 98")


def _run_on_a_free_port(command, **kwargs) -> subprocess.CompletedProcess:
    """Run `command(port)`; again on another port when the one picked was taken in between (another
    test process can bind it after _free_port let it go)."""
    for _ in range(3):
        result = subprocess.run(command(_free_port()), **kwargs)
        if result.returncode == 0 or not any(t in (result.stderr + result.stdout).lower() for t in PORT_TAKEN):
            return result
    return result


def run_worker(jobs: list, tmp_path: Path, world: int = 2, timeout: int = 300) -> dict:
    """Run (mode, spec path, seed) jobs in one group of `world` processes; {(mode, path, seed): result}."""
    out = tmp_path / f"results-{world}.pt"
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(nnspec.__file__).parent.parent), str(WORKER.parent)]))
    args = [f"{mode}:{path}:{seed}" for mode, path, seed in jobs]
    result = _run_on_a_free_port(lambda port: [sys.executable, str(WORKER), str(out), str(world), str(port), *args],
                                 capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    saved = torch.load(out, weights_only=False)
    return {job: saved[arg] for job, arg in zip(jobs, args)}


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("specs")
    return {"image": _spec(folder, IMAGE, "image"), "tokens": _spec(folder, TOKENS, "tokens")}


@pytest.fixture(scope="module")
def two_processes(specs, tmp_path_factory) -> dict:
    """Every 2-process case in one process group (start-up is most of their time)."""
    jobs = [(mode, specs[which], 11) for mode in ("fsdp", "tp") for which in ("image", "tokens")]
    jobs += [("reset", specs["image"], 0), ("emitted", specs["tokens"], 5)]
    jobs += [("emitted_own", specs[which], 6) for which in ("image", "tokens")] + [("emitted_reset", specs["tokens"], 0)]
    return run_worker(jobs, tmp_path_factory.mktemp("two"))


def test_the_specs_cover_every_initializer():
    names = {t.init.name for text in (IMAGE, TOKENS) for t in nnspec.loads(text).graph.tensors()}
    assert names == set(REGISTRY)


@pytest.mark.parametrize("mode", ["fsdp", "tp"])
@pytest.mark.parametrize("which", ["image", "tokens"])
def test_sharded_initialisation_equals_the_single_process_build(mode, which, specs, two_processes):
    result = two_processes[(mode, specs[which], 11)]
    expected = "Shard(dim=0)" if mode == "fsdp" else "Shard(dim=1)"
    assert any(expected in p for p in result["placements"]), result["placements"]
    assert_same_state(result["state"], nnspec.build(nnspec.load(specs[which]), "torch", seed=11).state_dict())


def test_reset_parameters_of_every_module_follows_the_spec(specs, two_processes):
    """PyTorch's meta-device flow (to_empty, then each module's reset_parameters) on FSDP2 shards."""
    result = two_processes[("reset", specs["image"], 0)]
    assert_same_state(result["state"], nnspec.build(nnspec.load(specs["image"]), "torch").state_dict())  # spec seed


def test_emitted_model_sharded(specs, two_processes):
    result = two_processes[("emitted", specs["tokens"], 5)]
    assert_same_state(result["state"], nnspec.build(nnspec.load(specs["tokens"]), "torch", seed=5).state_dict())


@pytest.mark.parametrize("which", ["image", "tokens"])
def test_emitted_model_initialises_its_own_shards(which, specs, two_processes):
    """The emitted file's own initialize on FSDP2 shards (tokens: its compact init_tensor_; image: the
    full one, which the initializers of every kind need)."""
    result = two_processes[("emitted_own", specs[which], 6)]
    assert_same_state(result["state"], nnspec.build(nnspec.load(specs[which]), "torch", seed=6).state_dict())


def test_emitted_reset_parameters_follow_the_spec_on_shards(specs, two_processes):
    result = two_processes[("emitted_reset", specs["tokens"], 0)]
    assert_same_state(result["state"], nnspec.build(nnspec.load(specs["tokens"]), "torch", seed=4).state_dict())


@pytest.mark.slow
def test_2d_mesh_tensor_parallel_and_fsdp(specs, tmp_path):
    jobs = [("2d", specs["image"], 2), ("2d", specs["tokens"], 2), ("emitted_2d", specs["tokens"], 2)]
    results = run_worker(jobs, tmp_path, world=4, timeout=500)
    for (_, path, _), result in results.items():
        assert any("_StridedShard" in p or "Shard(dim=1)" in p for p in result["placements"]), result["placements"]
        assert_same_state(result["state"], nnspec.build(nnspec.load(path), "torch", seed=2).state_dict())


# -- single process: plain tensors, errors --------------------------------------------------

def test_initialize_in_place_equals_build():
    spec = nnspec.loads(IMAGE)
    model = nnspec.build(spec, "torch", device="meta").to_empty(device="cpu")
    assert nnspec.initialize(model, seed=9) is model
    assert_same_state(model.state_dict(), nnspec.build(spec, "torch", seed=9).state_dict())
    nnspec.initialize(model)  # the seed it was last initialised with
    assert_same_state(model.state_dict(), nnspec.build(spec, "torch", seed=9).state_dict())
    other = nnspec.build(spec, "torch", seed=1)
    nnspec.initialize(other, spec, seed=9)
    assert_same_state(other.state_dict(), model.state_dict())


def test_a_model_not_built_by_nnspec_is_refused():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4))
    with pytest.raises(TypeError, match="not built by nnspec.*pass the spec"):
        nnspec.initialize(model)


def test_a_spec_that_does_not_match_changes_nothing():
    spec = nnspec.loads(TOKENS)
    model = nnspec.build(spec, "torch", seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wider = nnspec.loads(TOKENS.replace("out: 131", "out: 132"))
    with pytest.raises(ValueError, match=r"shapes differ: linear_1.weight is \[131, 70\], the spec says \[132, 70\]"):
        nnspec.initialize(model, wider, seed=2)
    with pytest.raises(ValueError, match="not parameters of the model"):
        nnspec.initialize(model, nnspec.loads(IMAGE), seed=2)
    foreign = torch.nn.Sequential(torch.nn.Linear(3, 4))
    with pytest.raises(ValueError, match="not in the spec"):
        nnspec.initialize(foreign, spec)
    assert_same_state(model.state_dict(), before)


def test_meta_parameters_are_refused():
    model = nnspec.build(nnspec.loads(TOKENS), "torch", device="meta")
    with pytest.raises(ValueError, match="to_empty"):
        nnspec.initialize(model, seed=1)


def test_slices_of_a_stream_are_the_stream():
    """Any range of a tensor's stream, computed alone, is that range of the whole stream."""
    from nnspec.compiler.backends.torch_runtime import stream_range

    numel, draw = 3 * 2**16 + 77, ("normal", (0.0, 1.0))
    whole = torch.empty(numel)
    stream_range(123, numel, 0, numel, draw, whole)
    for lo, hi in [(0, 1), (5, 2**16 + 3), (2**16 - 1, 2**16 + 1), (numel - 80, numel), (70000, 190000)]:
        part = torch.empty(hi - lo)
        stream_range(123, numel, lo, hi, draw, part)
        assert torch.equal(part, whole[lo:hi]), (lo, hi)
    assert len(set(whole[:: 2**16].tolist())) == 4  # every block its own generator


# -- Keras: the layout map, on the JAX backend with two host devices --------------------------

KERAS_SPEC = """
nnspec: 1
name: keras_layout
input: {shape: [5], dtype: int64}
seed: 1
layers:
  - embedding: {num: 50, dim: 8}
  - layernorm
  - linear: {out: 16}
  - gelu
  - linear: {out: 8}
"""


def test_keras_layout_map_shards_the_spec_on_two_devices(tmp_path):
    pytest.importorskip("keras")
    pytest.importorskip("jax")
    import json

    path = _spec(tmp_path, KERAS_SPEC, "keras_layout")
    env = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(Path(nnspec.__file__).parent.parent))
    result = subprocess.run([sys.executable, str(Path(__file__).with_name("keras_layout_worker.py")), str(path)],
                            capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.split("REPORT", 1)[1])
    assert report["devices"] == 2 and report["forward"]
    variables = report["variables"]
    assert variables["linear_1/kernel"]["spec"] == [None, "model"]  # Dense kernel (in, out): out split
    assert variables["linear_1/bias"]["spec"] == ["model"]
    assert variables["embedding_1/embeddings"]["spec"] == ["model", None]
    assert all(v["equal"] for v in variables.values()), variables  # the same values as unsharded
    assert all(v["devices"] == 2 for v in variables.values())


# -- examples/distributed ----------------------------------------------------------------------

def test_distributed_example_runs_on_two_processes(tmp_path):
    script = Path(nnspec.__file__).parent.parent / "examples" / "distributed" / "gpt.py"
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1",
               PYTHONPATH=str(Path(nnspec.__file__).parent.parent))
    result = _run_on_a_free_port(
        lambda port: [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                      "127.0.0.1", "--master-port", str(port), str(script), "--width", "16", "--layers", "2",
                      "--vocab", "32", "--context", "4", "--steps", "2", "--checkpoint", str(tmp_path / "ckpt")],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert "on 2 ranks" in result.stdout and "step 1: loss" in result.stdout
    assert "saved a distributed checkpoint" in result.stdout
    assert (tmp_path / "ckpt" / ".metadata").exists()


def test_reset_parameters_survives_copies_and_pickles(tmp_path):
    """Each layer's reset_parameters follows the spec, also on a deep copy or an unpickled emitted model."""
    import copy
    import importlib
    import pickle

    spec = nnspec.loads(TOKENS)
    expected = nnspec.build(spec, "torch", seed=8).state_dict()
    model = copy.deepcopy(nnspec.build(spec, "torch", seed=8))
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
    for module in model.modules():
        if "reset_parameters" in vars(module):
            module.reset_parameters()
    assert_same_state(model.state_dict(), expected)
    (tmp_path / "emitted_tokens.py").write_text(nnspec.emit(spec, "torch"))
    sys.path.insert(0, str(tmp_path))
    try:
        emitted = importlib.import_module("emitted_tokens").build(seed=8)
        emitted = pickle.loads(pickle.dumps(emitted))
        with torch.no_grad():
            for param in emitted.parameters():
                param.zero_()
        emitted.linear_1.reset_parameters()
        assert torch.equal(emitted.linear_1.weight, expected["linear_1.weight"])
        emitted.reset_parameters()
        assert_same_state(emitted.state_dict(), expected)
    finally:
        sys.path.remove(str(tmp_path))


def test_strided_shard_positions_without_the_offset_mode(monkeypatch):
    """Older torch has _StridedShard without _StridedShardOffsetMode: the positions nnspec computes
    then are the ones newer torch gives."""
    from torch.distributed.tensor import placement_types as types

    from nnspec.compiler.backends.torch_runtime import strided_offsets

    if not hasattr(types, "_StridedShard") or not hasattr(types, "_StridedShardOffsetMode"):
        pytest.skip("this torch has no _StridedShardOffsetMode to compare with")
    cases = [(length, chunks, rank, factor) for length in range(0, 23) for chunks in (1, 2, 3, 4)
             for rank in range(chunks) for factor in (1, 2, 3)]
    expected = [strided_offsets(types._StridedShard(0, split_factor=f), n, c, r).tolist()
                for n, c, r, f in cases]
    monkeypatch.delattr(types, "_StridedShardOffsetMode")
    got = [strided_offsets(types._StridedShard(0, split_factor=f), n, c, r).tolist() for n, c, r, f in cases]
    assert got == expected
