"""nnspec's benchmarks: each figure beside the baseline a user would otherwise use.

    python benchmarks/run.py            # everything, full size
    python benchmarks/run.py --quick    # each benchmark once, tiny sizes (what the test suite runs)
    python benchmarks/run.py --skip-sharded   # without the 2e9-parameter sharded initialisation
    python benchmarks/run.py --builds 5       # only the PyTorch build rows, 5 rounds, with their spread

Baselines are measured in the same run, alternating with nnspec, and the
median of several repetitions is reported with the ratio nnspec / baseline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
PY = sys.executable
RESNET50 = os.path.join(ROOT, "examples", "resnet50.yaml")
HUGE = os.path.join(HERE, "specs", "huge.yaml")
GPT2 = os.path.join(HERE, "specs", "gpt2_small.yaml")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(ours, baseline, repeats: int) -> tuple[float, float]:
    """Median seconds of `ours` and `baseline`, run alternately so that both see the same machine."""
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(ours))
        b.append(timed(baseline))
    return statistics.median(a), statistics.median(b)


def row(what: str, ours: float, base: float | None, goal: str) -> dict:
    ratio = ours / base if base else None
    return {"what": what, "ours": ours, "base": base, "ratio": ratio, "goal": goal}


def bench_env() -> dict:
    """The environment of a user's shell: bytecode caching on (a CI or sandbox setting of
    PYTHONDONTWRITEBYTECODE would make every run recompile nnspec's sources)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_cmd(args: list[str]) -> None:
    subprocess.run(args, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=bench_env())


def bench_check_startup(repeats: int) -> dict:
    run_cmd([PY, "-m", "nnspec", "check", RESNET50])  # writes the bytecode caches, as a first run does
    ours, base = alternate(lambda: run_cmd([PY, "-m", "nnspec", "check", RESNET50]),
                           lambda: run_cmd([PY, "-c", "import yaml, pydantic, jinja2"]), repeats)
    return row("check resnet50.yaml, fresh process", ours, base, "ratio <= 1.3")


def bench_check_many(n_files: int, repeats: int) -> dict:
    tmp = tempfile.mkdtemp(prefix="nnspec-bench-")
    try:
        sources = [os.path.join(ROOT, "examples", f) for f in sorted(os.listdir(os.path.join(ROOT, "examples")))
                   if f.endswith(".yaml") and not f.startswith("bad_")]
        files = []
        for i in range(n_files):
            dst = os.path.join(tmp, f"spec_{i:04d}.yaml")
            with open(sources[i % len(sources)]) as src, open(dst, "w") as out:
                out.write(src.read().replace("../nnspec.schema.json", os.path.join(ROOT, "nnspec.schema.json")))
            files.append(dst)
        checker = shutil.which("check-jsonschema") or os.path.join(os.path.dirname(PY), "check-jsonschema")
        ours_fn = lambda: run_cmd([PY, "-m", "nnspec", "check", "--format", "concise", tmp])  # noqa: E731
        if not os.path.exists(checker):
            return row(f"check {n_files} specs in one call (check-jsonschema not installed)",
                       statistics.median(timed(ours_fn) for _ in range(repeats)), None,
                       "faster than check-jsonschema")
        schema = os.path.join(ROOT, "nnspec.schema.json")
        base_fn = lambda: run_cmd([checker, "--schemafile", schema, *files])  # noqa: E731
        ours, base = alternate(ours_fn, base_fn, repeats)
        return row(f"check {n_files} specs in one call vs check-jsonschema", ours, base, "ratio < 1")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_torch_build(repeats: int, spec_path: str) -> dict:
    import torch
    from baselines import torch_resnet50_by_hand

    import nnspec

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    spec = nnspec.load(spec_path)
    nnspec.build(spec, "torch", seed=0)  # warm up imports and caches
    torch_resnet50_by_hand()
    ours, base = alternate(lambda: nnspec.build(spec, "torch", seed=0), torch_resnet50_by_hand, repeats)
    return row("PyTorch build of ResNet-50 vs by hand (default init, then re-init)", ours, base, "ratio <= 0.75")


ZOO_BUILDS = (("efficientnet_b0", "EfficientNet-B0"), ("convnext_tiny", "ConvNeXt-Tiny"), ("vit_b_16", "ViT-B/16"))


def bench_zoo_builds(repeats: int) -> list[dict]:
    """PyTorch builds of torchvision's EfficientNet-B0, ConvNeXt-Tiny and ViT-B/16: nnspec vs torchvision's
    own constructors (which initialise every tensor twice: the modules' defaults, then torchvision's loop)."""
    import torch
    from baselines import torchvision_models

    import nnspec

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    models = torchvision_models()
    rows = []
    for name, title in ZOO_BUILDS:
        spec = nnspec.load(os.path.join(ROOT, "examples", f"{name}.yaml"))
        nnspec.build(spec, "torch", seed=0)  # warm up imports and caches
        if models is None:
            t = statistics.median(timed(lambda spec=spec: nnspec.build(spec, "torch", seed=0)) for _ in range(repeats))
            rows.append(row(f"PyTorch build of {title} (torchvision not installed)", t, None, "ratio <= 0.75"))
            continue
        constructor = getattr(models, name)
        constructor()
        ours, base = alternate(lambda spec=spec: nnspec.build(spec, "torch", seed=0), constructor, repeats)
        rows.append(row(f"PyTorch build of {title} vs torchvision.models.{name}()", ours, base, "ratio <= 0.75"))
    return rows


def bench_gpt2_build(repeats: int) -> dict:
    """PyTorch build of GPT-2 small (specs/gpt2_small.yaml) vs the same model written by hand in PyTorch and
    initialised as GPT-2 is (the modules' default initialisation, then GPT-2's)."""
    import torch
    from baselines import torch_gpt2_by_hand

    import nnspec

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    spec = nnspec.load(GPT2)
    nnspec.build(spec, "torch", seed=0)  # warm up imports and caches
    torch_gpt2_by_hand()
    ours, base = alternate(lambda: nnspec.build(spec, "torch", seed=0), torch_gpt2_by_hand, repeats)
    return row("PyTorch build of GPT-2 small vs by hand (default init, then GPT-2's)", ours, base, "ratio <= 0.75")


def bench_check_gpt2(repeats: int) -> list[dict]:
    """`nnspec check` of the GPT-2 spec against `nnspec check resnet50.yaml`: in one process (the command's
    own entry point, output discarded) and in fresh processes, alternating."""
    import contextlib
    import io

    from nnspec.cli import main as nnspec_main

    def in_process(path):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            nnspec_main(["check", path])

    in_process(GPT2), in_process(RESNET50)
    ours, base = alternate(lambda: in_process(GPT2), lambda: in_process(RESNET50), repeats * 3)
    rows = [row("check gpt2_small.yaml vs check resnet50.yaml, in process", ours, base, "ratio <= 1.2")]
    run_cmd([PY, "-m", "nnspec", "check", GPT2])  # writes the bytecode caches, as a first run does
    ours, base = alternate(lambda: run_cmd([PY, "-m", "nnspec", "check", GPT2]),
                           lambda: run_cmd([PY, "-m", "nnspec", "check", RESNET50]), repeats)
    rows.append(row("check gpt2_small.yaml vs check resnet50.yaml, fresh process", ours, base, "ratio <= 1.2"))
    return rows


def bench_check_largest(repeats: int) -> dict:
    """`nnspec check` of the example with the most layers against `nnspec check resnet50.yaml`, fresh
    processes, alternating."""
    spec = largest_example()
    run_cmd([PY, "-m", "nnspec", "check", spec])  # writes the bytecode caches, as a first run does
    ours, base = alternate(lambda: run_cmd([PY, "-m", "nnspec", "check", spec]),
                           lambda: run_cmd([PY, "-m", "nnspec", "check", RESNET50]), repeats)
    return row(f"check {os.path.basename(spec)} (largest example) vs check resnet50.yaml, fresh process",
               ours, base, "ratio <= 1.2")


def bench_keras_build(repeats: int, spec_path: str) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    import nnspec

    spec = nnspec.load(spec_path)
    nnspec.build(spec, "keras", seed=0)
    keras.applications.ResNet50(weights=None)

    def ours():
        nnspec.build(spec, "keras", seed=0)
        keras.backend.clear_session()

    def base():
        keras.applications.ResNet50(weights=None)
        keras.backend.clear_session()

    o, b = alternate(ours, base, repeats)
    return row("Keras build of ResNet-50 vs keras.applications.ResNet50(weights=None)", o, b, "ratio <= 1.1")


def bench_emit(repeats: int, spec_path: str) -> dict:
    import nnspec

    spec = nnspec.load(spec_path)
    nnspec.emit(spec, "torch")
    nnspec.emit(spec, "keras")
    t = statistics.median(timed(lambda: (nnspec.emit(spec, "torch"), nnspec.emit(spec, "keras")))
                          for _ in range(repeats))
    return row("emit ResNet-50 source for both targets, in process", t, None, "under 0.100 s")


def largest_example() -> str:
    """The bundled example with the most layers."""
    from nnspec.compiler.pipeline import analyse_file

    best, most = RESNET50, -1
    examples = os.path.join(ROOT, "examples")
    for name in sorted(os.listdir(examples)):
        if name.endswith(".yaml") and not name.startswith("bad_"):
            spec, _ = analyse_file(os.path.join(examples, name))
            n = sum(1 for _ in spec.graph.layers()) if spec is not None else -1
            if n > most:
                best, most = os.path.join(examples, name), n
    return best


def bench_graph(repeats: int) -> list[dict]:
    """`nnspec graph` of the largest example, a fresh process each time, as a user runs it."""
    spec = largest_example()
    rows = []
    with tempfile.TemporaryDirectory(prefix="nnspec-bench-") as tmp:
        for ext in ("html", "svg"):
            out = os.path.join(tmp, f"graph.{ext}")
            command = [PY, "-m", "nnspec", "graph", spec, "-o", out]
            run_cmd(command)  # writes the bytecode caches, as a first run does
            t = statistics.median(timed(lambda command=command: run_cmd(command)) for _ in range(repeats))
            assert os.path.getsize(out) > 0
            rows.append(row(f"nnspec graph {os.path.basename(spec)} -o graph.{ext} (largest example), fresh process",
                            t, None, "under 1 s"))
    return rows


def bench_huge(repeats: int) -> list[dict]:
    rows = []
    for command in (["check", HUGE], ["inits", HUGE]):
        times, peaks = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            proc = subprocess.run(["/usr/bin/time", "-f", "%M", PY, "-m", "nnspec", *command],
                                  capture_output=True, text=True, env=bench_env())
            times.append(time.perf_counter() - start)
            peaks.append(int(proc.stderr.strip().splitlines()[-1]) / 1024)
        rows.append(row(f"nnspec {command[0]} of a 10.7e9-parameter spec (peak {max(peaks):.0f} MB)",
                        statistics.median(times), None, "under 1 s, under 200 MB"))
    import nnspec

    spec = nnspec.load(HUGE)
    start = time.perf_counter()
    model = nnspec.build(spec, "torch", device="meta")
    elapsed = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    assert all(p.is_meta for p in model.parameters())
    rows.append(row(f"build --device meta of the same spec ({params:,} parameters, {params * 4 / 2**30:.1f} GiB "
                    "as float32)", elapsed, None, "works, nothing allocated"))
    return rows


def bench_sharded_init(width: int = 4096, layers: int = 14, vocab: int = 16384) -> list[dict]:
    """nnspec.initialize on 2 FSDP2 ranks of a >= 2e9-parameter spec, each mode in fresh processes."""
    import json

    results = {}
    for mode in ("nnspec", "torch", "single"):
        proc = subprocess.run([PY, os.path.join(HERE, "sharded_init.py"), mode, "--world", "2", "--width", str(width),
                               "--layers", str(layers), "--vocab", str(vocab)],
                              capture_output=True, text=True, env={**bench_env(), "GLOO_SOCKET_IFNAME": "lo"})
        if proc.returncode != 0:
            raise RuntimeError(f"sharded_init.py {mode} failed:\n{proc.stderr[-3000:]}")
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    ours, full = results["nnspec"], results["single"]
    model_bytes = ours["params"] * 4
    fraction = max(ours["growth"]) / model_bytes
    what = f"{ours['params'] / 1e9:.2f}e9 parameters on 2 FSDP2 ranks"
    return [row(f"initialise {what} vs one process building it", ours["seconds"], full["seconds"], "ratio <= 0.7"),
            row(f"initialise {what} vs to_empty + PyTorch's reset_parameters", ours["seconds"],
                results["torch"]["seconds"], "ratio <= 1.2"),
            row("  each rank's processor time vs the one process's (its work, whatever the load)",
                ours["cpu"], full["cpu"], "(time ratio's floor)"),
            row("  each rank's processor time vs PyTorch's flow's",
                ours["cpu"], results["torch"]["cpu"], "(time ratio's floor)"),
            row(f"  each rank's memory growth: {fraction:.2f} of the model ({model_bytes / 2**30:.1f} GiB); "
                f"peak RSS {max(ours['peak']) / model_bytes:.2f}", ours["seconds"], None, "fraction <= 0.55")]


def builds_only(rounds: int, reps: int) -> int:
    """The PyTorch build rows (ResNet-50 by hand, torchvision's constructors) `rounds` times in one
    process: each round's ratios, then each row's lowest, median and highest ratio. On a machine
    shared with other jobs a single ratio moves with the load; the spread shows by how much."""
    ratios: dict = {}
    for number in range(1, rounds + 1):
        for r in [bench_torch_build(reps, RESNET50), *bench_zoo_builds(reps)]:
            ratios.setdefault(r["what"], []).append(r["ratio"])
            base = f"{r['base']:.3f}s" if r["base"] else "-"
            ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
            print(f"round {number}: {r['what']:<78} {r['ours']:>8.3f}s {base:>9} {ratio:>6}", flush=True)
    print(f"{'ratio over ' + str(rounds) + ' rounds':<86} {'lowest':>7} {'median':>7} {'highest':>7}")
    for what, values in ratios.items():
        if None in values:
            continue
        print(f"{what:<86} {min(values):>7.2f} {statistics.median(values):>7.2f} {max(values):>7.2f}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="each benchmark once at a tiny size")
    parser.add_argument("--skip-sharded", action="store_true",
                        help="leave out sharded initialisation (2e9 parameters: about 9 GiB of memory)")
    parser.add_argument("--builds", type=int, metavar="ROUNDS",
                        help="only the PyTorch build rows against their baselines, ROUNDS times, with the spread "
                             "of each row's ratio")
    args = parser.parse_args(argv)
    if args.builds:
        return builds_only(args.builds, 1 if args.quick else 9)
    quick = args.quick
    reps = 1 if quick else 9
    spec = os.path.join(ROOT, "examples", "cifar_resnet.yaml") if quick else RESNET50
    rows = [bench_check_startup(1 if quick else 15),
            bench_check_largest(1 if quick else 15),
            *bench_check_gpt2(1 if quick else 15),
            bench_check_many(10 if quick else 500, 1 if quick else 5),
            bench_emit(reps, spec),
            *bench_graph(1 if quick else 9),
            *bench_huge(1 if quick else 5)]
    rows.append(bench_torch_build(reps, spec))
    rows.extend(bench_zoo_builds(reps))
    rows.append(bench_gpt2_build(1 if quick else 5))
    rows.append(bench_keras_build(1 if quick else 3, spec))
    if not quick and not args.skip_sharded:
        rows += bench_sharded_init()
    print(f"{'benchmark':<86} {'nnspec':>9} {'baseline':>9} {'ratio':>6}  goal")
    for r in rows:
        base = f"{r['base']:.3f}s" if r["base"] else "-"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        print(f"{r['what']:<86} {r['ours']:>8.3f}s {base:>9} {ratio:>6}  {r['goal']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
