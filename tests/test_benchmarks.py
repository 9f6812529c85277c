"""The benchmark command keeps working (each benchmark once, tiny sizes; no timing assertions)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parent.parent


def test_benchmarks_run_quick():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick"], capture_output=True,
                          text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("benchmark")
    for what in ("check resnet50.yaml, fresh process", "specs in one call", "emit ResNet-50", "10.7e9-parameter",
                 "build --device meta", "PyTorch build", "Keras build", "nnspec graph",
                 "(largest example) vs check resnet50.yaml", "PyTorch build of EfficientNet-B0",
                 "PyTorch build of ConvNeXt-Tiny", "PyTorch build of ViT-B/16", "PyTorch build of GPT-2 small",
                 "check gpt2_small.yaml vs check resnet50.yaml, in process",
                 "check gpt2_small.yaml vs check resnet50.yaml, fresh process"):
        assert any(what in line for line in lines), (what, proc.stdout)
