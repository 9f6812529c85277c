"""The diagram and the probe chart in a real headless Chromium (see tests/browser.py).

Skipped, with the reason, only where no browser can be driven; `.ci/run` installs Debian's
`chromium` first, so CI runs these.
"""

from __future__ import annotations

import pathlib

import browser
import pytest

from nnspec.compiler.pipeline import analyse_file
from nnspec.diagram import render_graph

ROOT = pathlib.Path(__file__).parent.parent
REASON = browser.unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no headless browser: {REASON}")


@pytest.fixture(scope="module")
def chromium():
    with browser.browser() as b:
        yield b


class Page:
    """A page of a local file, with its console errors, page errors and any request that left it."""

    def __init__(self, b, path: pathlib.Path):
        self.errors: list = []
        self.requests: list = []
        self.page = b.new_page(viewport={"width": 1200, "height": 900})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

        def route(r):
            if r.request.url.startswith("file:"):
                r.continue_()
            else:
                self.requests.append(r.request.url)
                r.abort()

        self.page.route("**/*", route)
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state("load")

    def close(self):
        self.page.close()


def drawn(tmp_path, example: str, fmt: str = "html") -> tuple[pathlib.Path, object]:
    spec, diags = analyse_file(f"examples/{example}.yaml")
    assert spec is not None
    out = tmp_path / f"{example}.{fmt}"
    out.write_text(render_graph(spec.graph, diags, fmt), encoding="utf-8")
    return out, spec


@pytest.fixture(autouse=True)
def _in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_findings_page(chromium, tmp_path):
    path, spec = drawn(tmp_path, "bad_choices")
    p = Page(chromium, path)
    try:
        assert p.page.locator(".layer").count() == sum(1 for _ in spec.graph.layers())
        box = p.page.locator("#n-conv2d_4")
        assert box.is_visible()
        assert {"finding", "error"} <= set(box.get_attribute("class").split())
        assert "examples/bad_choices.yaml:18" in box.get_attribute("title")
        assert "NS201" in box.locator(".badge").inner_text()
        assert p.page.locator(".layer.finding").count() == 14
        assert "finding" not in p.page.locator("#n-relu_1").get_attribute("class")
        box.click()
        panel = p.page.locator("#panel").inner_text()
        assert "conv2d_4" in panel and "examples/bad_choices.yaml:18:74" in panel and "NS202" in panel
        assert "NS212" in p.page.locator("ul.unplaced").inner_text()
        p.page.focus("#n-linear_4")  # the keyboard reaches the details too
        p.page.keyboard.press("Enter")
        assert "NS207" in p.page.locator("#panel").inner_text()
        assert p.errors == [] and p.requests == []
    finally:
        p.close()


def test_collapsed_block_expands_on_click(chromium, tmp_path):
    path, spec = drawn(tmp_path, "resnet50")
    p = Page(chromium, path)
    try:
        page = p.page
        assert page.locator(".layer").count() == sum(1 for _ in spec.graph.layers())  # collapsed ones included
        group = page.locator('details[data-group="layer3"]')
        assert group.get_attribute("data-layers") == "56"
        assert "56 layers" in group.locator("> summary").inner_text()
        assert not group.evaluate("d => d.open")
        inner = page.locator('[data-layer="layer3.block0.residual_1.branch.conv1"]')
        assert not inner.is_visible()
        group.locator("> summary").click()
        assert group.evaluate("d => d.open")
        assert inner.is_visible()
        assert page.locator('details[data-group="layer3.blocks"]').evaluate("d => d.open") is False  # 45 layers
        page.click("#expand")
        rects = page.eval_on_selector_all(".layer", "els => els.map(e => { const r = e.getBoundingClientRect();"
                                                    " return [r.x, r.y, r.width, r.height]; })")
        assert len(rects) == 158 and all(w > 0 and h > 0 for _, _, w, h in rects)
        from nnspec.diagram.layout import overlaps

        assert overlaps([tuple(r) for r in rects]) == []
        page.click("#collapse")
        assert not inner.is_visible()
        assert p.errors == [] and p.requests == []
    finally:
        p.close()


def test_svg_in_the_browser(chromium, tmp_path):
    path, spec = drawn(tmp_path, "resnet50", "svg")
    p = Page(chromium, path)
    try:
        assert p.page.locator("g.layer").count() == sum(1 for _ in spec.graph.layers())
        assert p.errors == [] and p.requests == []
    finally:
        p.close()


def test_probe_plot_page(chromium, tmp_path):
    pytest.importorskip("torch")
    from nnspec.diagram.chart import render_probe
    from nnspec.probe import run_probe

    reports = [run_probe(analyse_file(f"tests/fixtures/{name}.yaml")[0], steps=3)
               for name in ("NS202_dead_relu", "NS201_exempt_head")]
    out = tmp_path / "probe.html"
    out.write_text(render_probe(reports, "html"), encoding="utf-8")
    p = Page(chromium, out)
    try:
        assert p.page.locator("g.panel").count() == 2
        assert p.page.locator("circle.pt").count() > 0
        assert p.page.locator("rect.bar.dead").count() > 0
        assert p.errors == [] and p.requests == []
    finally:
        p.close()
