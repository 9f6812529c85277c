"""Initialising a sharded model: nnspec.initialize on FSDP2 shards, against one process building
the whole model and against PyTorch's own meta-device flow (to_empty, then each module's default
reset_parameters) on the same sharded model.

    python benchmarks/sharded_init.py single --width 4096 --layers 14 --vocab 16384
    python benchmarks/sharded_init.py nnspec --world 2 --width 4096 --layers 14 --vocab 16384
    python benchmarks/sharded_init.py torch  --world 2 --width 4096 --layers 14 --vocab 16384

The spec keeps PyTorch's default initializers (torch_default), so that both flows draw the same
distributions. Each prints one JSON line: seconds (materialise + initialise; the slowest rank), the processor time
of that work (the largest of the ranks'), the peak resident memory of each process, and its growth over the memory
before the model was materialised.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples", "distributed"))

SPEC = """
nnspec: 1
name: gpt_mlp
input: {{shape: [16], dtype: int64}}
seed: 1
blocks:
  pre_norm_mlp:
    layers:
      - residual:
          branch:
            - layernorm
            - linear: {{out: {hidden}}}
            - gelu
            - linear: {{out: {width}}}
layers:
  - embedding: {{num: {vocab}, dim: {width}, name: tokens}}
  - pre_norm_mlp: {{repeat: {layers}, name: blocks}}
  - layernorm: {{name: final_norm}}
  - linear: {{out: {vocab}, name: head, bias: false}}
"""


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def spec_of(args):
    import nnspec

    return nnspec.loads(SPEC.format(width=args.width, hidden=4 * args.width, layers=args.layers, vocab=args.vocab))


def single(args) -> dict:
    import torch

    import nnspec

    torch.set_num_threads(1)
    nnspec.build(nnspec.loads(SPEC.format(width=8, hidden=32, layers=1, vocab=8)), "torch", seed=0)  # imports
    spec = spec_of(args)
    before = current_bytes()
    start, cpu = time.perf_counter(), time.process_time()
    nnspec.build(spec, "torch", seed=0, max_params=10**12)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "peak": [peak_bytes()], "growth": [peak_bytes() - before],
            "params": spec.params}


def rank_main(rank: int, args, port: int, queue) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    import nnspec

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=args.world)
    mesh = init_device_mesh("cpu", (args.world,))
    model = nnspec.build(spec_of(args), "torch", device="meta")
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    dist.barrier()
    before = current_bytes()
    start, cpu = time.perf_counter(), time.process_time()
    model.to_empty(device="cpu")
    if args.mode == "nnspec":
        nnspec.initialize(model, seed=0)
    else:  # PyTorch's defaults, each module's own reset_parameters on its shards
        with torch.no_grad():
            for module in model.modules():
                if any(True for _ in module.parameters(recurse=False)):
                    type(module).reset_parameters(module)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    queue.put((rank, seconds, peak_bytes(), peak_bytes() - before, cpu))
    dist.barrier()
    dist.destroy_process_group()


def sharded(args) -> dict:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.Queue()
    mp.start_processes(rank_main, args=(args, port, queue), nprocs=args.world, join=True, start_method="spawn")
    results = sorted(queue.get(timeout=60) for _ in range(args.world))
    return {"seconds": max(r[1] for r in results), "cpu": max(r[4] for r in results), "peak": [r[2] for r in results],
            "growth": [r[3] for r in results], "params": spec_of(args).params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["single", "nnspec", "torch"])
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=14)
    parser.add_argument("--vocab", type=int, default=16384)
    args = parser.parse_args()
    result = single(args) if args.mode == "single" else sharded(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
