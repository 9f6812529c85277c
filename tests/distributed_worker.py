"""Worker of tests/test_distributed.py: for each job, build a spec on meta, shard it, initialise it
with nnspec, gather the full state dict; rank 0 saves every job's result.

    python distributed_worker.py OUT WORLD PORT JOB [JOB ...]     (JOB: MODE:SPEC:SEED)

MODE: fsdp (fully_shard per layer and the root), tp (ColwiseParallel and RowwiseParallel on
alternate linears), 2d (tp over the mesh's "tp" axis, fully_shard over "dp"), reset (FSDP2, then
every module's reset_parameters, as PyTorch's meta-device flows do), emitted (fsdp on the model
of the emitted file), and on the emitted file's model with its own code: emitted_own (fsdp, then
model.initialize), emitted_reset (fsdp, then every module's reset_parameters), emitted_2d (2d, then
model.initialize). All jobs share one process group: only 127.0.0.1, every wait bounded.
"""

from __future__ import annotations

import datetime
import os
import sys


def run_job(mode: str, spec_path: str, seed: int, world: int) -> dict:
    import torch
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    import nnspec

    spec = nnspec.load(spec_path)
    if mode.startswith("emitted"):
        namespace: dict = {}
        exec(compile(nnspec.emit(spec, "torch"), "emitted_model.py", "exec"), namespace)
        model = namespace["build"](device="meta")
    else:
        model = nnspec.build(spec, "torch", device="meta")
    owners = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    if mode in ("2d", "emitted_2d"):
        mesh = init_device_mesh("cpu", (world // 2, 2), mesh_dim_names=("dp", "tp"))
        tp_mesh, dp_mesh = mesh["tp"], mesh["dp"]
    else:
        tp_mesh = dp_mesh = init_device_mesh("cpu", (world,))
    if mode in ("tp", "2d", "emitted_2d"):
        linears = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
        plan = {name: ColwiseParallel() if i % 2 == 0 else RowwiseParallel() for i, name in enumerate(linears)}
        parallelize_module(model, tp_mesh, plan)
    if mode != "tp":
        for module in owners:
            fully_shard(module, mesh=dp_mesh)
        fully_shard(model, mesh=dp_mesh)
    model.to_empty(device="cpu")
    placements = sorted({str(p.placements) for p in model.parameters() if isinstance(p, DTensor)})
    if mode in ("reset", "emitted_reset"):
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    elif mode in ("emitted_own", "emitted_2d"):
        model.initialize(seed)
    else:
        nnspec.initialize(model, seed=seed)
    state = {}
    for key, value in model.state_dict().items():
        state[key] = value.full_tensor() if isinstance(value, DTensor) else value
    return {"state": state, "placements": placements}


def run(rank: int, out: str, world: int, port: int, jobs: list) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        results = {job: run_job(*job.rsplit(":", 2)[:2], int(job.rsplit(":", 1)[1]), world) for job in jobs}
        if rank == 0:
            torch.save(results, out)
        # no rank tears its connections down while another still reads from them (under load a
        # rank that left early made the other abort inside gloo)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def main() -> None:
    out, world, port, *jobs = sys.argv[1:]
    import torch.multiprocessing as mp

    mp.spawn(run, args=(out, int(world), int(port), jobs), nprocs=int(world), join=True)


if __name__ == "__main__":
    main()
