"""A GPT-style model from a spec, sharded with FSDP2, initialised by nnspec, trained a few steps
and saved as a distributed checkpoint.

    torchrun --nproc-per-node 2 examples/distributed/gpt.py            # CPU (gloo) or GPUs (nccl)
    torchrun --nproc-per-node 2 examples/distributed/gpt.py --width 64 --layers 2 --steps 3

The recipe is PyTorch's own (torchtitan's): build on the meta device (nothing is allocated),
`fully_shard` each block and the root, `to_empty` on the rank's device, then `nnspec.initialize`,
which computes each rank's shard only, and gives the values the single-process
`nnspec.build(spec, seed=...)` gives. The blocks are pre-norm residual MLPs over a token embedding;
the spec gains attention once nnspec has an attention kind.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

import nnspec

SPEC = """
nnspec: 1
name: gpt_mlp
input: {{shape: [{context}], dtype: int64}}
seed: 1234
blocks:
  pre_norm_mlp:
    layers:
      - residual:
          branch:
            - layernorm
            - linear: {{out: {hidden}, init: {{weight: {{normal: {{std: 0.02}}}}, bias: zeros}}}}
            - gelu
            - linear: {{out: {width}, init: {{weight: {{normal: {{std: {proj_std}}}}}, bias: zeros}}}}
layers:
  - embedding: {{num: {vocab}, dim: {width}, name: tokens, init: {{weight: {{normal: {{std: 0.02}}}}}}}}
  - pre_norm_mlp: {{repeat: {layers}, name: blocks}}
  - layernorm: {{name: final_norm}}
  - linear: {{out: {vocab}, name: head, bias: false, init: {{weight: {{normal: {{std: 0.02}}}}}}}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--context", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--checkpoint", default="checkpoints/gpt_mlp")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    mesh = init_device_mesh(device.type, (world,))

    spec = nnspec.loads(SPEC.format(width=args.width, hidden=4 * args.width, layers=args.layers,
                                    vocab=args.vocab, context=args.context,
                                    proj_std=0.02 / (2 * args.layers) ** 0.5))
    model = nnspec.build(spec, "torch", device="meta")  # the skeleton: no memory, no init
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    model.to_empty(device=device)
    start = time.perf_counter()
    nnspec.initialize(model)  # each rank computes its own shard, as the spec says
    if rank == 0:
        print(f"{spec.params:,} parameters on {world} ranks ({device.type}); "
              f"initialised in {time.perf_counter() - start:.2f} s")

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(rank)
    for step in range(args.steps):
        tokens = torch.randint(0, args.vocab, (4, args.context + 1), generator=generator).to(device)
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if rank == 0:
            print(f"step {step}: loss {loss.item():.4f}")

    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=args.checkpoint)
    if rank == 0:
        print(f"saved a distributed checkpoint to {args.checkpoint}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
