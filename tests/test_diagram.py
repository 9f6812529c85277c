"""`nnspec graph`: the diagram from the IR alone, its findings, its layout at scale, and the page in a
real browser (tests/browser.py; skipped with the reason where no Chromium can be driven)."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from nnspec.compiler.ir import Graph, Sequence
from nnspec.compiler.pipeline import analyse_file, analyse_text
from nnspec.diagram import render_graph
from nnspec.diagram.layout import MAX_HEIGHT, layout, overlaps
from nnspec.diagram.view import MERGES, Box, Merge, build_view, iter_boxes

ROOT = pathlib.Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SVG_NS = "{http://www.w3.org/2000/svg}"
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def analysed(path):
    spec, diags = analyse_file(str(path))
    assert spec is not None, diags
    return spec, diags


def resnet152_text() -> str:
    text = (ROOT / "examples" / "resnet50.yaml").read_text()
    for old, new in (("rest: 3, name: layer2", "rest: 7, name: layer2"), ("rest: 5, name: layer3", "rest: 35, name: layer3")):
        assert old in text
        text = text.replace(old, new)
    return text.replace("name: resnet50", "name: resnet152")


def long_chain_text(n: int = 121) -> str:
    """A DenseNet-121-sized plain chain: n conv-batchnorm-relu triples, no blocks."""
    layers = "".join(f"  - conv2d: {{out: 8, kernel: 3, padding: 1, bias: false, name: conv{i}}}\n"
                     f"  - batchnorm\n  - relu\n" for i in range(n))
    return ("nnspec: 1\nname: long_chain\ninput: [8, 8, 8]\ninit:\n  conv2d: {weight: {kaiming_normal: "
            "{nonlinearity: relu}}}\nlayers:\n" + layers + "  - global_avg_pool\n  - linear: {out: 10}\n")


GPT_TEXT = """nnspec: 1
name: gpt_stack
input: {shape: [16], dtype: int64}
init:
  weight: {normal: {std: 0.02}}
  bias: zeros
blocks:
  transformer_mlp:
    args: {d: required}
    layers:
      - residual:
          - layernorm
          - linear: {out: 64}
          - gelu
          - linear: {out: $d}
      - residual:
          - layernorm
          - linear: {out: $d}
          - gelu
          - linear: {out: $d}
layers:
  - embedding: {num: 100, dim: 16}
  - transformer_mlp: {d: 16, repeat: 12, name: h}
  - layernorm
  - linear: {out: 100, name: lm_head}
"""


def lowered(text: str, name: str):
    spec, diags = analyse_text(text, name)
    assert spec is not None and not [d for d in diags if d.is_error], diags
    return spec, diags


# -- the diagram from the IR ------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_svg_is_xml_with_every_layer_and_its_name(path):
    spec, diags = analysed(path)
    svg = render_graph(spec.graph, diags, "svg")
    root = ET.fromstring(svg)
    layers = [g for g in root.iter(f"{SVG_NS}g") if "layer" in g.get("class", "").split()]
    assert [g.get("data-path") for g in layers] == [layer.path for layer in spec.graph.layers()]
    texts = {"".join(t.itertext()) for t in root.iter(f"{SVG_NS}text")}
    words = " ".join(texts)
    for layer in spec.graph.layers():
        assert f"{layer.kind} {layer.name}" in words or layer.name[:20] in words, layer.path


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_html_has_one_box_per_layer(path):
    spec, diags = analysed(path)
    html = render_graph(spec.graph, diags, "html")
    drawn = re.findall(r'data-layer="([^"]*)"', html)
    assert drawn == [layer.path for layer in spec.graph.layers()]


def test_output_is_deterministic_and_self_contained(tmp_path):
    path = ROOT / "examples" / "resnet50.yaml"
    outputs = []
    for run in range(2):  # separate processes: no dependence on hash seeds or object ids
        for ext in ("html", "svg"):
            out = tmp_path / f"{run}.{ext}"
            proc = subprocess.run([sys.executable, "-m", "nnspec", "graph", str(path), "-o", str(out)],
                                  capture_output=True, text=True, cwd=ROOT,
                                  env={**os.environ, "PYTHONHASHSEED": str(run + 1)})
            assert proc.returncode == 0, proc.stderr
            outputs.append(out.read_text())
    assert outputs[0] == outputs[2] and outputs[1] == outputs[3]
    for text in outputs[:2]:
        assert "http://www.w3.org/2000/svg" in text or text.startswith("<!DOCTYPE html>")
        without_ns = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"https?://|<link\b|@import|url\(|<script[^>]+src=|@font-face", without_ns)


def test_graph_imports_no_framework(tmp_path):
    code = ("import sys; from nnspec.cli import main; "
            f"rc = main(['graph', {str(ROOT / 'examples' / 'bad_choices.yaml')!r}, '-o', {str(tmp_path / 'g.html')!r}]);"
            f"rc2 = main(['graph', {str(ROOT / 'examples' / 'resnet50.yaml')!r}, '-o', {str(tmp_path / 'g.svg')!r}]);"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras', 'jax'));"
            "print(rc, rc2, bad)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip() == "0 0 []", proc.stdout + proc.stderr
    assert (tmp_path / "g.html").stat().st_size > 0 and (tmp_path / "g.svg").stat().st_size > 0


def test_findings_sit_on_their_layers():
    spec, diags = analysed(ROOT / "examples" / "bad_choices.yaml")
    view = build_view(spec.graph, diags)
    by_path = {b.path: sorted(d.code for d in b.findings) for b in iter_boxes(view.items)}
    assert by_path["conv2d_1"] == ["NS211"]
    assert by_path["conv2d_2"] == ["NS209"]
    assert by_path["conv2d_4"] == ["NS201", "NS202"]
    assert by_path["linear_2"] == ["NS201", "NS203", "NS204"]
    assert by_path["linear_5"] == ["NS211", "NS213"]  # a multi-line item: its `allow` line too
    assert by_path["relu_1"] == []
    assert [d.code for d in view.unplaced] == ["NS212"]  # the top-level `init` is no layer
    placed = sum(len(b.findings) for b in iter_boxes(view.items))
    assert placed + len(view.unplaced) == len(diags)
    svg = ET.fromstring(render_graph(spec.graph, diags, "svg"))
    marked = {g.get("data-path"): g.get("class") for g in svg.iter(f"{SVG_NS}g") if g.get("data-path")}
    assert marked["conv2d_4"] == "layer finding error"
    assert marked["linear_4"] == "layer finding warning"
    assert marked["relu_1"] == "layer"
    title = next(g for g in svg.iter(f"{SVG_NS}g") if g.get("data-path") == "conv2d_4").find(f"{SVG_NS}title").text
    assert "examples/bad_choices.yaml:18:" in title.replace(str(ROOT) + os.sep, "") and "NS201" in title


def test_a_finding_in_a_block_body_marks_every_call(tmp_path):
    text = """nnspec: 1
name: twice
input: [8]
blocks:
  hidden:
    args: {n: required}
    layers:
      - linear: {out: $n, init: {weight: zeros}}
      - relu
layers:
  - hidden: {n: 8, name: a}
  - hidden: {n: 8, name: b}
  - linear: {out: 2}
"""
    spec, diags = analyse_text(text, "twice.yaml")
    assert spec is not None and any(d.code == "NS201" for d in diags), diags
    view = build_view(spec.graph, diags)
    flagged = sorted(b.path for b in iter_boxes(view.items) if any(d.code == "NS201" for d in b.findings))
    assert flagged == ["a.linear_1", "b.linear_1"]


def test_initializers_are_shown_with_their_family():
    spec, diags = analysed(ROOT / "examples" / "bad_choices.yaml")
    view = build_view(spec.graph, diags)
    inits = {(b.path, i.role): i.family for b in iter_boxes(view.items) for i in b.inits}
    assert inits[("conv2d_1", "weight")] == "sparse"
    assert inits[("conv2d_2", "weight")] == "identity"
    assert inits[("batchnorm_1", "gamma")] == "constant"
    assert inits[("linear_3", "bias")] == "variance-scaling"
    html = render_graph(spec.graph, diags, "html")
    assert 'class="i fam-sparse"' in html and 'class="i fam-identity"' in html


def test_residual_draws_as_two_branches_joining_at_add():
    spec, diags = analysed(ROOT / "examples" / "resnet50.yaml")
    view = build_view(spec.graph, diags)
    merges = []

    def walk(items):
        for it in items:
            if isinstance(it, Merge):
                merges.append(it)
                for b in it.branches:
                    walk(b.items)
            elif not isinstance(it, Box):
                walk(it.items)

    walk(view.items)
    assert len(merges) == 16
    assert all(m.join == "add" and [b.label for b in m.branches][0] == "branch" for m in merges)
    assert sum(1 for m in merges if m.branches[1].label == "shortcut") == 4  # the projection shortcuts
    assert sum(1 for m in merges if m.branches[1].label == "identity" and not m.branches[1].items) == 12


def test_a_new_merge_node_is_one_function(monkeypatch):
    """What a general merge node (concat, multiply) needs: one adapter in MERGES."""
    spec, diags = analysed(ROOT / "examples" / "mlp.yaml")
    layers = list(spec.graph.layers())

    @dataclasses.dataclass
    class Concat:
        path: str
        name: str
        parts: list
        out_shape: tuple
        span: object

    def seq(path, items):
        return Sequence(path, path, "branch", items, (), (), spec.graph.root.span)

    node = Concat("cat", "cat", [seq("cat.a", layers[:2]), seq("cat.b", layers[2:]), seq("cat.c", [])],
                  (512,), spec.graph.root.span)
    monkeypatch.setitem(MERGES, Concat, lambda n: ([(s.name, s) for s in n.parts], "concat"))
    root = dataclasses.replace(spec.graph.root, items=[node])
    graph = dataclasses.replace(spec.graph, root=root)
    assert isinstance(graph, Graph)
    view = build_view(graph, [])
    assert isinstance(view.items[0], Merge) and view.items[0].join == "concat"
    assert [len(b.items) for b in view.items[0].branches] == [2, len(layers) - 2, 0]
    drawing = layout(view)
    assert len(drawing.of_kind("join")) == 1 and len(drawing.of_kind("layer")) == len(layers)
    ET.fromstring(render_graph(graph, [], "svg"))


def test_every_fixture_that_lowers_draws_with_all_its_findings():
    """Specs with errors draw as long as they lower (safety errors, budgets, huge counts, fuzz finds)."""
    drawn = with_errors = 0
    for path in sorted((ROOT / "tests" / "fixtures").glob("**/*.yaml")):
        spec, diags = analyse_file(str(path))
        if spec is None:
            continue
        drawn += 1
        with_errors += any(d.is_error for d in diags)
        view = build_view(spec.graph, diags)
        placed = [id(d) for b in iter_boxes(view.items) for d in b.findings]
        assert len(set(placed)) + len(view.unplaced) <= len(diags)
        svg = ET.fromstring(render_graph(spec.graph, diags, "svg"))
        assert sum(1 for g in svg.iter(f"{SVG_NS}g") if "layer" in g.get("class", "").split()) == \
            sum(1 for _ in spec.graph.layers()), path.name
        html = render_graph(spec.graph, diags, "html")
        assert html.count('data-layer="') == sum(1 for _ in spec.graph.layers()), path.name
    assert drawn > 50 and with_errors > 20


# -- layout at scale --------------------------------------------------------------------------


def svg_boxes(svg: str) -> list:
    root = ET.fromstring(svg)
    rects = []
    for g in root.iter(f"{SVG_NS}g"):
        classes = g.get("class", "").split()
        if "layer" in classes or "join" in classes:
            r = g.find(f"{SVG_NS}rect")
            rects.append(tuple(float(r.get(k)) for k in ("x", "y", "width", "height")))
    return rects


LARGE = {
    "resnet50": lambda: analysed(ROOT / "examples" / "resnet50.yaml"),
    "resnet152": lambda: lowered(resnet152_text(), "resnet152.yaml"),
    "chain363": lambda: lowered(long_chain_text(), "long_chain.yaml"),
    "gpt12": lambda: lowered(GPT_TEXT, "gpt_stack.yaml"),
}


@pytest.mark.parametrize("name", LARGE)
def test_large_models_stay_readable(name):
    spec, diags = LARGE[name]()
    view = build_view(spec.graph, diags)
    drawing = layout(view)
    n_layers = sum(1 for _ in spec.graph.layers())
    if name == "resnet152":
        assert n_layers == 464  # 50 bottlenecks of 9 layers, 4 projection shortcuts of 2, stem and head
    boxes = drawing.of_kind("layer")
    assert len(boxes) == n_layers
    # bounded: no taller than the wrap height (plus title and margins), no absurd width or area
    assert drawing.height <= MAX_HEIGHT + 120, drawing.height
    assert drawing.width <= 12_000, drawing.width
    assert drawing.width * drawing.height <= 600 * n_layers * 120, (drawing.width, drawing.height)
    rects = [(p.x, p.y, p.w, p.h) for p in drawing.placed if p.kind in ("layer", "join")]
    assert overlaps(rects) == []
    for p in drawing.placed:  # everything inside the page
        assert 0 <= p.x and p.x + p.w <= drawing.width and 0 <= p.y and p.y + p.h <= drawing.height
    # group frames nest or are disjoint, and every box lies inside the frames of its group
    frames = [(p.x, p.y, p.w, p.h) for p in drawing.placed if p.kind == "group"]
    for i, j in overlaps(frames):
        a, b = frames[i], frames[j]
        inside = (lambda s, t: s[0] >= t[0] and s[1] >= t[1] and s[0] + s[2] <= t[0] + t[2]
                  and s[1] + s[3] <= t[1] + t[3])
        assert inside(a, b) or inside(b, a), (a, b)
    svg = render_graph(spec.graph, diags, "svg")
    from_svg = svg_boxes(svg)
    assert len(from_svg) == len(rects)
    assert overlaps(from_svg) == []
    root = ET.fromstring(svg)
    assert float(root.get("width")) <= 12_000 and float(root.get("height")) <= MAX_HEIGHT + 200


def test_overlap_check_finds_overlaps():
    assert overlaps([(0, 0, 10, 10), (5, 5, 10, 10), (20, 0, 5, 5)]) == [(0, 1)]
    assert overlaps([(0, 0, 10, 10), (10, 0, 10, 10)]) == []


# -- the command ------------------------------------------------------------------------------


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "nnspec", *args], capture_output=True, text=True, cwd=cwd)


def test_graph_draws_specs_with_safety_errors(tmp_path):
    out = tmp_path / "bad.svg"
    proc = run_cli("graph", "examples/bad_choices.yaml", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "NS201" in proc.stderr and "wrote" in proc.stderr
    ET.fromstring(out.read_text())


def test_graph_of_a_spec_that_does_not_lower(tmp_path):
    spec = tmp_path / "broken.yaml"
    spec.write_text("nnspec: 1\nname: broken\ninput: [4]\nlayers:\n  - lineer: {out: 3}\n")
    out = tmp_path / "broken.html"
    proc = run_cli("graph", str(spec), "-o", str(out))
    assert proc.returncode == 1
    assert "broken.yaml:5" in proc.stderr and "lineer" in proc.stderr
    assert not out.exists()


def test_graph_usage_errors(tmp_path):
    proc = run_cli("graph", "examples/mlp.yaml", "-o", str(tmp_path / "x.png"))
    assert proc.returncode == 2 and "'.png'" in proc.stderr and "--format" in proc.stderr
    proc = run_cli("graph", "examples/mlp.yaml", "-o", str(tmp_path / "x.png"), "--format", "svg")
    assert proc.returncode == 0
    ET.fromstring((tmp_path / "x.png").read_text())
    proc = run_cli("graph", str(tmp_path / "missing.yaml"), "-o", str(tmp_path / "x.svg"))
    assert proc.returncode == 2
    proc = run_cli("graph", "examples/mlp.yaml", "-o", str(tmp_path / "no" / "dir.svg"))
    assert proc.returncode == 2 and "cannot write" in proc.stderr


def test_ci_installs_the_browser_before_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if line.startswith("python3 -m venv") and "dev]" in line)
    assert command.replace("pip install -c", "pip install -q -c") in ci
    assert ci.index("apt-get install") < ci.index(command.split(" && ")[0])
    assert "command -v chromium" in ci  # only when missing


def test_names_from_the_file_system_are_escaped(tmp_path):
    path = tmp_path / "<b>&\"x'<script>.yaml"
    path.write_text("nnspec: 1\nname: esc\ninput: [4]\nlayers:\n  - linear: {out: 4, init: {weight: zeros}}\n"
                    "  - relu\n  - linear: {out: 2}\n")
    spec, diags = analyse_file(str(path))
    assert spec is not None and diags
    html = render_graph(spec.graph, diags, "html")
    assert "<b>" not in html and "<script>.yaml" not in html
    assert html.count("</script>") == 2  # the data block and the code block, nothing else
    ET.fromstring(render_graph(spec.graph, diags, "svg"))
