"""Crashes, hangs, misleading answers and overwrites found by attacking nnspec, each closed as a class.

Radix integers and the digit limit; sizes, seeds and layer floats bounded where the frameworks take them;
initializer arguments in float32 terms; activation memory (check, build, parity, probe); CLI numbers;
seeds of the API; user text in every human output (tables, excerpts); XML characters in junit; report
files that would overwrite a spec; symbolic links out of the tree; FIFOs and devices; repeated
diagnostics; merge keys.
"""

from __future__ import annotations

import json
import math
import os
import threading
import xml.dom.minidom
from pathlib import Path

import pytest

import nnspec
from nnspec.cli import main
from nnspec.compiler.pipeline import analyse_text

HEADER = "nnspec: 1\nname: m\ninput: [4]\n"
SMALL = HEADER + "layers:\n  - linear: {out: 3}\n"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def located(text: str) -> list[tuple[str, int, int]]:
    return [(d.code, d.line, d.column) for d in analyse_text(text, "x.yaml")[1]]


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- integers of every radix ------------------------------------------------------------------------------

@pytest.mark.parametrize("literal", ["0x" + "f" * 3600, "0o" + "7" * 4800, "9" * 4301, "-" + "1" * 4400])
@pytest.mark.parametrize("where", ["p", "input", "seed", "out"])
def test_integers_of_any_radix_share_the_digit_limit(literal, where):
    layer = {"p": f"  - dropout: {{p: {literal}}}\n", "out": f"  - linear: {{out: {literal}}}\n"}
    text = ("nnspec: 1\nname: m\n" + (f"seed: {literal}\n" if where == "seed" else "")
            + (f"input: [{literal}]\n" if where == "input" else "input: [4]\n")
            + "layers:\n" + layer.get(where, "  - relu\n"))
    diags = analyse_text(text, "x.yaml")[1]
    assert [d.code for d in diags] == ["NS004"], diags
    line = text.splitlines().index(next(ln for ln in text.splitlines() if literal in ln)) + 1
    assert diags[0].line == line and text.splitlines()[line - 1][diags[0].column - 1:].startswith(literal[:3])
    assert "4300 digits" in diags[0].message and len(diags[0].message) < 200


@pytest.mark.parametrize("text, where", [
    (HEADER.replace("[4]", "[0x80000000]") + "layers: [relu]\n", (3, 9)),  # 2**31: beyond a C int
    (HEADER + "seed: 0x8000000000000000\nlayers: [relu]\n", (4, 7)),  # 2**63: beyond torch.manual_seed
    (HEADER + "layers:\n  - linear: {out: 0o77777777777777777777}\n", (5, 19)),
])
def test_radix_integers_are_bounded_like_decimal_ones(text, where):
    assert located(text) == [("NS004", *where)]


def test_the_largest_allowed_seed_and_size_build(tmp_path):
    pytest.importorskip("torch")
    spec = nnspec.loads(HEADER + "seed: 0x7fffffffffffffff\nlayers:\n  - linear: {out: 3}\n")
    assert spec.seed == 2**63 - 1
    model = nnspec.build(spec)
    assert all(bool(p.isfinite().all()) for p in model.parameters())
    big = HEADER.replace("[4]", "[2147483647]") + "layers:\n  - linear: {out: 1073741823}\n"
    module = nnspec.build(nnspec.loads(big), device="meta")  # huge sizes, on the device that allocates nothing
    assert tuple(module.state_dict()["linear_1.weight"].shape) == (2**30 - 1, 2**31 - 1)


def test_a_tensor_too_large_for_any_framework_is_an_error():
    """(2**31 - 1)**2 float32 numbers: torch cannot even describe its storage (int64 bytes), on any device."""
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError):
        torch.empty((2**31 - 1, 2**31 - 1), device="meta")
    text = HEADER.replace("[4]", "[2147483647]") + "layers:\n  - linear: {out: 2147483647}\n"
    errors = [d for d in analyse_text(text, "x.yaml")[1] if d.is_error]
    assert [(d.code, d.line, d.column) for d in errors] == [("NS005", 5, 5)], errors
    assert "weight" in errors[0].message


# -- layer arguments a framework takes --------------------------------------------------------------------

@pytest.mark.parametrize("layer, column, words", [
    ("leaky_relu: {slope: 1e39}", 25, "float32"),
    ("elu: {alpha: 3.5e38}", 18, "float32"),
    ("layernorm: {eps: 1e-50}", 22, "smallest normal"),
    ("batchnorm: {eps: 1e39}", 22, "float32"),
    ("softmax: {axis: 99999999999999999999}", 21, "2147483647"),
    ("conv1d: {out: 2, kernel: 1, stride: 4294967296}", 41, "2147483647"),
    ("maxpool1d: {kernel: 1, padding: 4294967296}", 37, "2147483647"),
])
def test_every_number_a_layer_passes_is_range_checked(layer, column, words):
    text = HEADER.replace("[4]", "[4, 8]") + f"layers:\n  - {layer}\n"
    diags = analyse_text(text, "x.yaml")[1]
    assert [(d.code, d.line, d.column) for d in diags] == [("NS004", 5, column)], diags
    assert words in diags[0].message


def test_a_slope_at_the_bound_builds_on_both_targets():
    """The bound is what the frameworks take: the largest slope check accepts builds and runs finite."""
    torch = pytest.importorskip("torch")
    spec = nnspec.loads(HEADER + "layers:\n  - linear: {out: 3}\n  - leaky_relu: {slope: 3.4e38}\n")
    model = nnspec.build(spec, seed=0)
    with torch.no_grad():
        out = model(torch.full((1, 4), 1e-30))
    assert out.shape == (1, 3)


# -- initializer arguments in float32 ---------------------------------------------------------------------

@pytest.mark.parametrize("init, column, words", [
    ("{normal: {std: 3.0e+38}}", 52, "beyond float32"),
    ("{normal: {mean: 3.0e+38, std: 1.0e+37}}", 67, "beyond float32"),
    ("{uniform: {low: -3.0e+38, high: 3.0e+38}}", 69, "high - low"),
    ("{uniform: {low: 1.0, high: 1.00000001}}", 64, "same number in float32"),
    ("{normal: {std: 1.0e-50}}", 52, "0 in float32"),
    ("{sparse: {sparsity: 0.5, std: 1.0e+38}}", 67, "beyond float32"),
    ("{trunc_normal: {std: 3.0e+38}}", 58, "nan"),
    ("{xavier_uniform: 1.0e+38}", 54, "gain"),
    ("{orthogonal: {gain: 1.0e+38}}", 57, "gain"),
    ("{kaiming_normal: {a: 1.0e+39}}", 58, "float32"),
])
def test_initializer_arguments_are_checked_in_float32(init, column, words):
    text = HEADER + f"layers:\n  - linear: {{out: 2, init: {{weight: {init}}}}}\n"
    diags = analyse_text(text, "x.yaml")[1]
    assert [(d.code, d.line, d.column) for d in diags] == [("NS211", 5, column)], diags
    assert words in diags[0].message


@pytest.mark.parametrize("init", [
    "{normal: {std: 3.0e+37}}", "{uniform: {low: -1.7e+38, high: 1.7e+38}}", "{xavier_normal: 3.0e+37}",
    "{trunc_normal: {std: 2.0e+38, low: -3.0e+38, high: 3.0e+38}}", "{sparse: {sparsity: 0.1, std: 3.0e+37}}",
    "{orthogonal: 3.0e+37}", "{constant: 3.4e+38}", "{eye: 3.0e+37}", "{normal: {mean: 3.0e+38, std: 4.0e+36}}",
    "{variance_scaling: {scale: 3.0e+38, distribution: uniform}}",
])
@pytest.mark.parametrize("target", ["torch", "keras"])
def test_what_passes_check_never_builds_inf_or_nan(init, target):
    """At the edge of what check accepts, both frameworks build finite weights (and refuse none of them)."""
    np = pytest.importorskip("numpy")
    pytest.importorskip(target)
    spec = nnspec.loads(HEADER + f"layers:\n  - linear: {{out: 16, init: {{weight: {init}}}}}\n")
    for seed in range(3 if target == "torch" else 1):
        model = nnspec.build(spec, target=target, seed=seed)
        weights = ([t.numpy() for t in model.state_dict().values()] if target == "torch"
                   else model.get_weights())
        assert all(np.isfinite(w).all() for w in weights), (init, weights)


# -- activation memory -------------------------------------------------------------------------------------

BIG = "nnspec: 1\nname: big\ninput: [1, 40000, 40000]\nlayers:\n  - relu\n"


def test_activation_memory_is_estimated_at_check_time():
    diags = analyse_text(BIG, "x.yaml")[1]
    assert [(d.code, d.severity, d.line, d.column) for d in diags] == [("NS005", "warning", 3, 1)]
    assert "190.7 GiB" in diags[0].message and "23.8 GiB" in diags[0].message  # probe (16), parity (2)


def test_the_estimate_is_what_torch_allocates():
    """The per-sample estimate equals the input plus every layer's and residual's output, counted by torch."""
    torch = pytest.importorskip("torch")
    from nnspec.compiler.budget import activation_elements

    spec = nnspec.load(Path(__file__).parent.parent / "examples" / "small_cnn.yaml")
    model = nnspec.build(spec, seed=0)
    counted = []
    for layer in spec.graph.layers():
        dict(model.named_modules())[layer.path].register_forward_hook(
            lambda m, i, o: counted.append(o.numel()))
    x = torch.zeros((1, *spec.graph.input_shape))
    with torch.no_grad():
        model.eval()(x)
    assert activation_elements(spec.graph) == x.numel() + sum(counted)


def test_parity_probe_and_build_refuse_over_the_activation_budget(capsys, tmp_path):
    path = write(tmp_path, BIG)
    for command in ("parity", "probe"):
        code, out, err = run(capsys, command, path)
        assert code == 1 and "NS005" in err and f"`{command}`" in err and out == ""
        assert f"{path}:3:1" in err  # at the input
    code, _out, err = run(capsys, "build", path, "--device", "meta", "--max-activation-bytes", 10**9)
    assert code == 1 and "NS005" in err and "11.9 GiB" in err


def test_the_activation_budget_can_be_raised_and_lowered(capsys, tmp_path):
    pytest.importorskip("torch")
    path = write(tmp_path, SMALL)
    code, out, _ = run(capsys, "build", path)
    assert code == 0 and "activations: 28 B per sample" in out  # 4 inputs + 3 outputs, float32
    code, _out, err = run(capsys, "probe", path, "--max-activation-bytes", 100)  # 16 x 28 = 448 bytes
    assert code == 1 and "448 B" in err
    code, _out, err = run(capsys, "probe", path, "--max-activation-bytes", 448, "--steps", 1)
    assert code == 0, err


# -- CLI numbers --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["parity", "--batch", "0"], "batch size"), (["parity", "--batch", "-1"], "batch size"),
    (["parity", "--atol", "nan"], "tolerance"), (["parity", "--rtol", "-1"], "tolerance"),
    (["parity", "--seed", "-1"], "seed"), (["build", "--seed", "9223372036854775808"], "seed"),
    (["build", "--seed", "1.0"], "seed"), (["build", "--max-params", "-5"], "non-negative"),
    (["probe", "--lr", "nan"], "learning rate"), (["probe", "--lr", "0"], "learning rate"),
    (["probe", "--lr", "inf"], "learning rate"), (["probe", "--steps", "-1"], "steps"),
    (["probe", "--steps", "0"], "steps"), (["probe", "--steps", "9" * 5000], "steps"),
    (["probe", "--max-activation-bytes", "lots"], "bytes"),
])
def test_cli_numbers_are_validated_with_a_clear_message(capsys, tmp_path, argv, words):
    path = write(tmp_path, SMALL)
    code, out, err = run(capsys, *argv[:1], path, *argv[1:])
    assert code == 2 and out == ""
    assert words in err and "Traceback" not in err and len(err) < 2000


def test_the_api_refuses_what_the_cli_refuses():
    pytest.importorskip("torch")
    from nnspec.parity import run_parity
    from nnspec.probe import run_probe

    spec = nnspec.loads(SMALL)
    for kwargs in ({"steps": -1}, {"steps": 0}, {"lr": math.nan}, {"lr": -0.1}, {"batch": 0}, {"seed": -1}):
        with pytest.raises(ValueError):
            run_probe(spec, **kwargs)
    for kwargs in ({"batch": 0}, {"atol": math.nan}, {"rtol": -1.0}, {"seed": 1.5}):
        with pytest.raises(ValueError):
            run_parity(spec, **kwargs)


def test_probe_of_a_model_without_parameters(capsys, tmp_path):
    pytest.importorskip("torch")
    path = write(tmp_path, HEADER + "layers:\n  - relu\n  - dropout\n")
    code, out, err = run(capsys, "probe", path, "--steps", 2)
    assert code == 0 and "no parameters" in out, err


# -- seeds of the API ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", ["abc", math.nan, [1], -1, True, False, 1.0, 2**63, None.__class__])
def test_bad_seeds_are_a_value_error(seed):
    with pytest.raises(ValueError, match="seed must be an integer in"):
        nnspec.build(nnspec.loads(SMALL), seed=seed)


def test_integer_seeds_of_any_integer_type_build_alike():
    np = pytest.importorskip("numpy")
    pytest.importorskip("torch")
    spec = nnspec.loads(SMALL)
    a = nnspec.build(spec, seed=1).state_dict()["linear_1.weight"]
    b = nnspec.build(spec, seed=np.int64(1)).state_dict()["linear_1.weight"]
    c = nnspec.build(spec, seed=2**63 - 1).state_dict()["linear_1.weight"]
    assert bool((a == b).all()) and not bool((a == c).all())


def test_the_backends_check_the_seed_too():
    pytest.importorskip("torch")
    from nnspec.compiler.backends.torch_backend import build_torch

    with pytest.raises(ValueError, match="seed"):
        build_torch(nnspec.loads(SMALL), seed=True)


# -- user text in human output ------------------------------------------------------------------------------

HOSTILE = "zero-init\\n::error file=x.py,line=1::forged\\x1b]0;title\\x07\\x1b[2J\\u2028done"


def test_waiver_reasons_and_names_are_escaped_in_inits(capsys, tmp_path):
    text = HEADER + f'layers:\n  - linear: {{out: 3, init: {{weight: zeros}}, allow: {{NS201: "{HOSTILE}"}}}}\n'
    path = write(tmp_path, text)
    code, out, err = run(capsys, "inits", path)
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out and "\u2028" not in out
    assert not any(line.startswith("::") for line in out.splitlines())
    assert "zero-init\\n::error file=x.py" in out and "\\x1b[2J" in out


def test_the_quoted_source_line_is_escaped_and_cut(capsys, tmp_path):
    long_comment = "y" * 5000
    text = HEADER + f"layers:\n  - relu: {{x: 1}}  # \x07 {long_comment}\n  - relu: {{x: 2}}  # \x1b[2J\n"
    path = tmp_path / "spec.yaml"
    path.write_bytes(text.encode())  # ESC in a comment: YAML refuses it (NS001), and the line is quoted
    code, out, _err = run(capsys, "check", path)
    assert code == 1
    assert "\x1b" not in out and "\x07" not in out
    assert max(len(line) for line in out.splitlines()) < 400
    lines = out.splitlines()
    quote = next(i for i, line in enumerate(lines) if line.startswith("5 | "))
    caret = lines[quote + 1]
    offset = caret.index("^") - len("  | ")
    assert lines[quote][len("5 | ") + offset:].startswith("\\x07")  # the caret under the escaped character


def test_excerpts_keep_the_caret_under_the_span():
    from nnspec.formats import EXCERPT_WIDTH, excerpt

    line = "a" * 3000 + "TARGET" + "b" * 3000
    quoted, offset, width = excerpt(line, 3001, 6)
    assert quoted[offset:offset + width] == "TARGET" and len(quoted) <= EXCERPT_WIDTH
    quoted, offset, width = excerpt("x\x1b[2Jy", 2, 1)
    assert quoted[offset:offset + width] == "\\x1b" and "\x1b" not in quoted


def test_junit_holds_only_characters_xml_allows(capsys, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(HEADER + 'layers:\n  - linear: {out: 2, "a\\uFFFEb\\uFFFF": 1}\n', encoding="utf-8")
    code, out, _err = run(capsys, "check", "--format", "junit", path)
    assert code == 1
    xml.dom.minidom.parseString(out.encode("utf-8"))  # raises on a character XML 1.0 forbids
    assert "\\uFFFE" in out


# -- files --------------------------------------------------------------------------------------------------

def test_the_report_never_overwrites_a_spec(capsys, tmp_path):
    spec = write(tmp_path, SMALL)
    other = write(tmp_path, SMALL, "other.yaml")
    before = spec.read_bytes()
    code, _out, err = run(capsys, "check", spec, "--output-file", spec)
    assert code == 2 and "being checked" in err and spec.read_bytes() == before
    code, _out, err = run(capsys, "check", spec, "-o", other)
    assert code == 2 and "is a spec" in err and other.read_bytes() == before
    link = tmp_path / "link.txt"
    os.symlink(spec, link)
    code, _out, err = run(capsys, "check", spec, "-o", link)
    assert code == 2 and spec.read_bytes() == before
    report = tmp_path / "report.json"
    report.write_text("old")
    code, _out, _err = run(capsys, "check", spec, "--format", "json", "-o", report)
    assert code == 0 and json.loads(report.read_text()) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".nnspec-")]  # no temporary file left
    code, _out, _err = run(capsys, "check", spec, "-o", os.devnull)
    assert code == 0


def test_a_symbolic_link_out_of_the_tree_is_named_and_not_quoted(capsys, tmp_path, monkeypatch):
    secret = tmp_path / "outside" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:SECRET-LINE:/root:/bin/bash\n")
    tree = tmp_path / "tree"
    (tree / "configs").mkdir(parents=True)
    os.symlink(secret, tree / "configs" / "x.yaml")
    monkeypatch.chdir(tree)
    code, out, err = run(capsys, "check", "configs/x.yaml")
    assert code == 1
    assert "SECRET-LINE" not in out + err
    assert "leaves the tree" in err and str(secret) in err
    inside = tree / "real.yaml"
    inside.write_text(SMALL)
    os.symlink(inside, tree / "configs" / "alias.yaml")
    code, _out, err = run(capsys, "check", "configs/alias.yaml")
    assert code == 0 and "leaves the tree" not in err


def test_a_file_that_is_not_a_spec_is_not_quoted(capsys, tmp_path):
    path = tmp_path / "notes.yaml"
    path.write_text("title: SECRET-LINE\n")
    code, out, _err = run(capsys, "check", path)
    assert code == 1 and "NS010" in out and "SECRET-LINE" not in out


def _returns_within(seconds: float, fn):
    result: list = []
    thread = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "hung"
    return result[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_reported_not_opened(capsys, tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    for argv in (["check", fifo], ["check", "--specs-only", fifo], ["build", fifo], ["inits", fifo]):
        code = _returns_within(10, lambda a=argv: main([str(x) for x in a]))
        _out, err = capsys.readouterr()
        assert code == 2
    diags = _returns_within(10, lambda: nnspec.check(fifo))
    assert [(d.code, d.line, d.column) for d in diags] == [("NS001", 1, 1)] and "FIFO" in diags[0].message
    def load():
        try:
            nnspec.load(fifo)
        except nnspec.SpecError as exc:
            return exc
        return None

    assert isinstance(_returns_within(10, load), nnspec.SpecError)


def test_a_device_is_reported_not_read(capsys):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    code, out, _err = run(capsys, "check", "/dev/zero")
    assert code == 2 and "character device" in out and len(out) < 1000


# -- repeated diagnostics ----------------------------------------------------------------------------------

def test_repeated_diagnostics_are_capped_per_code_and_file(capsys, tmp_path):
    from nnspec.formats import MAX_PER_CODE
    from nnspec.names import _did_you_mean

    n = MAX_PER_CODE + 70
    path = write(tmp_path, HEADER + "layers:\n" + "".join("  - lienar\n" for _ in range(n)))
    hits = _did_you_mean.cache_info().hits
    code, out, _ = run(capsys, "check", "--format", "concise", path)
    assert _did_you_mean.cache_info().hits - hits >= n - 1  # one search, then the cache
    assert code == 1 and out.count("NS008") == MAX_PER_CODE + 1
    assert "and 70 more NS008 diagnostics" in out and f"Found {n} errors" in out
    code, out, _ = run(capsys, "check", path)
    assert out.count(": NS008 error:") == MAX_PER_CODE and "and 70 more NS008" in out
    code, out, _ = run(capsys, "check", "--format", "json", path)
    assert len(json.loads(out)) == n  # machine formats keep everything
    code, out, _ = run(capsys, "check", "--format", "github", path)
    assert out.count("::error ") == MAX_PER_CODE and "::notice::" in out


def test_github_annotations_escape_control_characters(capsys, tmp_path):
    text = HEADER + 'layers:\n  - linear: {out: 3}\n  - "k\\x1b[2J\\x07\\nx": {}\n'
    path = write(tmp_path, text)
    code, out, _err = run(capsys, "check", "--format", "github", path)
    assert code == 1 and out.count("\n") == 1 and out.startswith("::error ")
    assert "\x1b" not in out and "\x07" not in out and "\\x1b[2J" in out


def test_a_tensor_too_large_is_reported_once_per_place():
    text = HEADER.replace("[4]", "[2147483647]") + ("blocks:\n  big:\n    layers:\n      - linear: {out: 2147483647}\n"
                                                    "layers:\n  - big: {repeat: 5}\n")
    errors = [d for d in analyse_text(text, "x.yaml")[1] if d.is_error]
    assert [(d.code, d.line) for d in errors] == [("NS005", 7)], errors


def _deep_chain(depth: int) -> str:
    lines = ["nnspec: 1", "name: deep", "input: [4]", "blocks:"]
    for i in range(depth):
        body = f"      - residual: [b{i + 1}, linear: {{out: 4}}]" if i < depth - 1 else "      - linear: {out: 4}"
        lines += [f"  b{i}:", "    layers:", body]
    return "\n".join(lines + ["layers:", "  - b0"]) + "\n"


def test_blocks_nest_to_the_limit_and_emitted_code_compiles():
    """At the deepest nesting check allows (blocks in residuals in blocks...), both targets emit code Python parses."""
    import ast

    from nnspec.compiler.expand import MAX_BLOCK_DEPTH

    spec = nnspec.loads(_deep_chain(MAX_BLOCK_DEPTH))
    for target in ("torch", "keras"):
        ast.parse(nnspec.emit(spec, target=target))
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.loads(_deep_chain(MAX_BLOCK_DEPTH + 1))
    assert [d.code for d in info.value.diagnostics] == ["NS005"]


def test_a_cycle_through_an_argument_is_a_spec_error_not_a_recursion_error():
    text = ("nnspec: 1\nname: m\ninput: [4]\nblocks:\n  a:\n    args: {x: required}\n    layers: [$x]\n"
            "  b:\n    layers: [{a: {x: b}}]\nlayers:\n  - b\n")
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.loads(text)
    assert [d.code for d in info.value.diagnostics] == ["NS105"]
