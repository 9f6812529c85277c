"""Redraw the README's pictures with the browser code of the test suite (tests/browser.py):

    .venv/bin/python docs/pictures.py

docs/images/bad_choices.png: `nnspec graph examples/bad_choices.yaml` (HTML), as Chromium shows it.
docs/images/probe_dirac_vs_kaiming.png: `nnspec probe --plot` of examples/deep_plain_dirac.yaml and
its kaiming twin, side by side.
"""

from __future__ import annotations

import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import browser  # noqa: E402

from nnspec.compiler.pipeline import analyse_file  # noqa: E402
from nnspec.diagram import render_graph  # noqa: E402
from nnspec.diagram.chart import render_probe  # noqa: E402

IMAGES = os.path.join(ROOT, "docs", "images")


def main() -> int:
    reason = browser.unavailable()
    if reason:
        print(f"cannot draw: {reason}", file=sys.stderr)
        return 2
    from nnspec.probe import run_probe

    os.chdir(ROOT)  # relative file names in the pictures, as a user types them
    spec, diags = analyse_file("examples/bad_choices.yaml")
    reports = []
    for name in ("deep_plain_dirac", "deep_plain_kaiming"):
        probe_spec, _ = analyse_file(f"examples/{name}.yaml")
        reports.append(run_probe(probe_spec, steps=20, seed=0))
    with tempfile.TemporaryDirectory() as tmp, browser.browser() as b:
        page = os.path.join(tmp, "graph.html")
        with open(page, "w", encoding="utf-8") as fh:
            fh.write(render_graph(spec.graph, diags, "html"))
        browser.screenshot(b, page, os.path.join(IMAGES, "bad_choices.png"), width=1100, height=900,
                           click="#n-conv2d_4")
        chart = os.path.join(tmp, "probe.svg")
        with open(chart, "w", encoding="utf-8") as fh:
            fh.write(render_probe(reports, "svg"))
        browser.screenshot(b, chart, os.path.join(IMAGES, "probe_dirac_vs_kaiming.png"), width=1140, height=500)
    print(f"wrote {IMAGES}/bad_choices.png and {IMAGES}/probe_dirac_vs_kaiming.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
