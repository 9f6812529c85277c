"""Lines of emitted code (ruff-formatted, comments included) beside the spec's own length.

    .venv/bin/python benchmarks/emitted_lines.py

The goals are those of the issue "Emitted code a person would write". ruff formats the emitted
file first when it is installed (the emitter writes ruff's layout already, so the counts agree).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nnspec  # noqa: E402

GOALS = {"resnet50.yaml": 250, "mobilenet_v2.yaml": 250, "vgg16.yaml": 150, "vit_b_16.yaml": 250,
         "gpt2_small.yaml": 250}


def formatted(source: str) -> str:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists() and not shutil.which("ruff"):
        return source
    result = subprocess.run([ruff, "format", "--isolated", "-"], input=source, capture_output=True, text=True,
                            check=False)
    return result.stdout if result.returncode == 0 else source


def main() -> None:
    print(f"{'spec':<22} {'spec lines':>10} {'target':>7} {'emitted':>8} {'goal':>6}")
    for name, goal in GOALS.items():
        path = ROOT / "examples" / name
        if not path.exists():
            continue
        spec = nnspec.load(path)
        spec_lines = len(path.read_text(encoding="utf-8").splitlines())
        for target in ("torch", "keras"):
            lines = len(formatted(nnspec.emit(spec, target)).splitlines())
            mark = "ok" if lines <= goal else "over"
            print(f"{name:<22} {spec_lines:>10} {target:>7} {lines:>8} {goal:>6}  {mark}")


if __name__ == "__main__":
    main()
