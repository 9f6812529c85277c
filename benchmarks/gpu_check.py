"""Checks that need a CUDA GPU (CI has none): run by hand on a machine with one.

    python benchmarks/gpu_check.py [--quick]

1. Built on the GPU, initialised on the GPU: `nnspec.build(spec, device="cuda")` equals, bit for
   bit, the model built on `meta`, moved with `to_empty(device="cuda")` and given
   `nnspec.initialize` (the torchtitan recipe), and the emitted file's `build(device="cuda")`,
   for the reference examples (convnets, ViT, GPT-2, the recurrent ones on cuDNN), whose
   forward pass then runs on the GPU.
2. Sharded on the GPU: FSDP2 (`fully_shard`), tensor parallelism (Colwise/Rowwise) and a 2-D mesh:
   each rank's local shards, initialised by nnspec on the GPU, equal bit for bit to the same
   positions of the single-process GPU build. The ranks are simulated one after the other in one
   process with PyTorch's fake process group (one GPU cannot hold several nccl ranks); the
   collectives themselves are tested on the CPU by tests/test_distributed.py.
3. Fused attention: the attention kind runs on PyTorch's fused scaled-dot-product kernels (flash
   or memory-efficient) in bf16, causal and not, in training and in eval mode.
4. Initialisation speed of a GPT of about 1.6 billion parameters on the GPU: nnspec's meta build
   plus `initialize` against PyTorch's own construction on the device (default init), both timed
   in this run; and the peak memory against the parameters' own size.

Each part prints `ok` or `FAILED` with what differed; the exit status is non-zero if any failed.
Values on the GPU differ from those on the CPU (each device type has its own generator); the
guarantee is the same device type, any world size and placement (docs/distributed.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import nnspec  # noqa: E402

GPT = """
nnspec: 1
name: gpt
input: {{shape: [{context}], dtype: int64}}
seed: 7
init:
  weight: {{normal: {{std: 0.02}}}}
  bias: zeros
blocks:
  block:
    layers:
      - residual:
          branch:
            - layernorm
            - attention: {{heads: {heads}, causal: true}}
      - residual:
          branch:
            - layernorm
            - linear: {{out: {hidden}}}
            - gelu: {{approximate: tanh}}
            - linear: {{out: {width}, init: {{weight: {{normal: {{std: {proj}}}}}}}}}
layers:
  - embedding: {{num: {vocab}, dim: {width}, name: tokens}}
  - position_embedding: {{length: {context}, name: positions}}
  - block: {{repeat: {layers}, name: blocks}}
  - layernorm: {{name: final_norm}}
"""

FAILED: list[str] = []
DEVICE = "cuda"


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def gpt_spec(width: int, layers: int, heads: int, vocab: int = 50257, context: int = 1024):
    return nnspec.loads(GPT.format(width=width, hidden=4 * width, layers=layers, heads=heads, vocab=vocab,
                                   context=context, proj=0.02 / (2 * layers) ** 0.5))


def verdict(name: str, problems: list[str], detail: str = "") -> None:
    if problems:
        FAILED.append(name)
        print(f"{name}: FAILED: " + "; ".join(problems[:5]), flush=True)
    else:
        print(f"{name}: ok {detail}", flush=True)


def differences(a: dict, b: dict) -> list[str]:
    if a.keys() != b.keys():
        return [f"keys differ: {sorted(set(a) ^ set(b))[:5]}"]
    return [k for k in a if not torch.equal(a[k].cpu(), b[k].cpu())]


def check_meta_recipe(paths: list[str]) -> None:
    for path in paths:
        spec = nnspec.load(path)
        start = time.perf_counter()
        direct = nnspec.build(spec, "torch", seed=11, device=DEVICE)
        sync()
        built = time.perf_counter() - start
        model = nnspec.build(spec, "torch", device="meta")
        model.to_empty(device=DEVICE)
        nnspec.initialize(model, seed=11)
        namespace: dict = {}
        exec(compile(nnspec.emit(spec, "torch"), f"{spec.name}_emitted.py", "exec"), namespace)
        emitted = namespace["build"](seed=11, device=DEVICE)
        sync()
        state = direct.state_dict()
        problems = differences(state, model.state_dict())
        problems += [f"emitted: {p}" for p in differences(state, emitted.state_dict())]
        from nnspec.parity import random_batch

        x = torch.from_numpy(random_batch(spec, 2, 0)).to(DEVICE)
        with torch.no_grad():
            y, y_emitted = direct.eval()(x), emitted.eval()(x)
        if not torch.isfinite(y).all() or not torch.allclose(y, y_emitted, rtol=1e-5, atol=1e-6):
            problems.append("the forward pass on the device is not finite or differs from the emitted model's")
        on_cpu = nnspec.build(spec, "torch", seed=11).state_dict()
        same_as_cpu = sum(torch.equal(state[k].cpu(), on_cpu[k]) for k in state)
        verdict(f"meta recipe and emitted {os.path.basename(path)}", problems,
                f"({sum(v.numel() for v in state.values()):,} values; built on the device in {built:.2f} s; "
                f"{same_as_cpu} of {len(state)} tensors equal to the CPU build's: the deterministic ones)")
        del direct, model, emitted


def shard(model, mode: str, world: int):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    if mode == "2d":
        mesh = init_device_mesh(DEVICE, (world // 2, 2), mesh_dim_names=("dp", "tp"))
        tp_mesh, dp_mesh = mesh["tp"], mesh["dp"]
    else:
        tp_mesh = dp_mesh = init_device_mesh(DEVICE, (world,))
    if mode in ("tp", "2d"):
        linears = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]
        parallelize_module(model, tp_mesh, {n: ColwiseParallel() if i % 2 == 0 else RowwiseParallel()
                                            for i, n in enumerate(linears)})
    if mode in ("fsdp", "2d"):
        for block in model.blocks:
            fully_shard(block, mesh=dp_mesh)
        fully_shard(model, mesh=dp_mesh)


def check_sharded(worlds: dict) -> None:
    """Each rank of each mesh in turn, in this one process (PyTorch's fake process group: ranks
    cannot share one GPU under nccl): its local shards, initialised on the device, against the
    same positions of the single-process build."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor
    from torch.testing._internal.distributed.fake_pg import FakeStore

    from nnspec.compiler.backends.torch_runtime import shard_indices

    spec = gpt_spec(width=256, layers=2, heads=4, vocab=1000, context=64)
    reference = nnspec.build(spec, "torch", seed=5, device=DEVICE).state_dict()
    for mode, world in worlds.items():
        problems, placements, values = [], set(), 0
        for rank in range(world):
            dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=world)
            try:
                model = nnspec.build(spec, "torch", device="meta")
                shard(model, mode, world)
                model.to_empty(device=DEVICE)
                nnspec.initialize(model, seed=5)
                for key, param in model.named_parameters():
                    expected = reference[key]
                    if isinstance(param, DTensor):
                        placements.add(str(param.placements))
                        local, index = shard_indices(param)
                        for dim, positions in enumerate(index):
                            expected = expected.index_select(dim, positions.to(expected.device))
                    else:
                        local = param.detach()
                    values += local.numel()
                    if not torch.equal(local, expected):
                        problems.append(f"rank {rank}: {key}")
            except Exception as error:  # say what broke and go on with the other checks
                problems.append(f"rank {rank}: {type(error).__name__}: {error}")
            finally:
                dist.destroy_process_group()
        verdict(f"sharded {mode} on {world} ranks", problems,
                f"({values:,} values over the ranks; placements {', '.join(sorted(placements))})")


def check_fused_attention() -> None:
    from torch.profiler import ProfilerActivity, profile

    for causal in (False, True):
        spec = nnspec.loads(f"""
nnspec: 1
name: attend
input: {{shape: [256, 768], layout: tokens}}
layers:
  - attention: {{heads: 12, causal: {str(causal).lower()}}}
""")
        model = nnspec.build(spec, "torch", device=DEVICE)
        x = torch.randn(8, 256, 768, device=DEVICE)
        for mode in ("train", "eval"):
            model.train(mode == "train")
            with torch.autocast(DEVICE, dtype=torch.bfloat16), profile(activities=[ProfilerActivity.CUDA]) as prof:
                y = model(x)
                if mode == "train":
                    y.float().sum().backward()
                sync()
            names = {e.key for e in prof.key_averages()}
            fused = sorted(n for n in names if any(s in n.lower() for s in ("flash", "fmha", "efficient_attention",
                                                                            "cudnn_attention", "mem_eff")))
            verdict(f"fused attention causal={causal} {mode}", [] if fused else
                    [f"no fused attention kernel among {sorted(names)[:12]}"], f"({fused[0][:70]})" if fused else "")


def check_init_speed(quick: bool) -> None:
    width, layers = (1024, 8) if quick else (2048, 30)
    spec = gpt_spec(width=width, layers=layers, heads=16)
    sync()
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    model = nnspec.build(spec, "torch", device="meta")
    model.to_empty(device=DEVICE)
    nnspec.initialize(model)
    sync()
    ours = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if DEVICE == "cuda" else 0
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    del model
    if DEVICE == "cuda":
        torch.cuda.empty_cache()

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.n1, self.n2 = torch.nn.LayerNorm(width), torch.nn.LayerNorm(width)
            self.attn = torch.nn.MultiheadAttention(width, 16, batch_first=True)
            self.fc1, self.fc2 = torch.nn.Linear(width, 4 * width), torch.nn.Linear(4 * width, width)

    sync()
    start = time.perf_counter()
    with torch.device(DEVICE):
        baseline = torch.nn.ModuleList([torch.nn.Embedding(50257, width), torch.nn.Embedding(1024, width)]
                                       + [Block() for _ in range(layers)] + [torch.nn.LayerNorm(width)])
    sync()
    theirs = time.perf_counter() - start
    count = sum(p.numel() for p in baseline.parameters())
    problems = [] if count == spec.params else [f"baseline has {count:,} parameters, the spec {spec.params:,}"]
    verdict("init speed", problems,
            f"({spec.params:,} parameters: nnspec meta build + initialize {ours:.2f} s, PyTorch's default "
            f"construction on the GPU {theirs:.2f} s, ratio {ours / theirs:.2f}; peak memory "
            f"{peak / 2**30:.2f} GiB for {size / 2**30:.2f} GiB of parameters)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller models (a trial run)")
    parser.add_argument("--cpu", action="store_true", help="a trial of the script itself on the CPU "
                        "(no fused-attention part; the results say nothing about GPUs)")
    args = parser.parse_args()
    global DEVICE
    if args.cpu:
        DEVICE = "cpu"
    elif not torch.cuda.is_available():
        sys.exit("no CUDA GPU: this script checks what needs one (--cpu tries the script itself)")
    else:
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}", flush=True)
    examples = ["resnet50", "efficientnet_b0", "vit_b_16", "convnext_tiny", "gpt2_small", "lstm_classifier",
                "gru_tagger"]
    check_meta_recipe([os.path.join(ROOT, "examples", f"{name}.yaml") for name in (examples[:2] + examples[-2:] if args.quick else examples)])
    check_sharded({"fsdp": 2, "tp": 2, "2d": 4})
    if DEVICE == "cuda":
        check_fused_attention()
    check_init_speed(args.quick)
    if FAILED:
        sys.exit(f"{len(FAILED)} check(s) failed: {', '.join(FAILED)}")
    print("all GPU checks passed")


if __name__ == "__main__":
    main()
