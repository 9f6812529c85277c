"""Hostile input: each gets a specific, located diagnostic, and nothing nnspec writes runs what a spec
author smuggled in.

Covered: code injection through every string that reaches emitted code (layer, model, block and
block-call names, block arguments, the spec's file name), object-constructing YAML tags, alias
bombs (also recursive ones), a `repeat` or dimension that would need terabytes (the parameter budget
of `check`, `build` and `build --max-params`, and the meta device), deep nesting, encodings, files
that are not a mapping, a directory of thousands of files, and paths that are a directory, a broken
symbolic link, unreadable or impossible.
"""

from __future__ import annotations

import ast
import json
import os
import time
import tracemalloc
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


def codes(path) -> list[tuple[str, int]]:
    return [(d.code, d.line) for d in nnspec.check(path)]


def write(tmp_path: Path, text, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# -- code injection through names ---------------------------------------------------------------------

PAYLOADS = [
    "x; import os", '__import__("os")', "a\nimport os", "a\rimport os", "ｆｏｒｗａｒｄ",  # fullwidth: NFKC-equal
    "__init__", "__class__", "class", "lambda", "match", "forward", "train", "to", "self", "torch", "keras",
    "None", "_private", "a-b", "1abc", "", "x" * 65, "x'y", 'x"y', "é", "print(1)#", "a\u200bb", "a.b", "a b",
    "{{ name }}", "$(id)",
]
Q = json.dumps  # a YAML double-quoted scalar holds any payload (JSON strings are YAML)

WHERE = {
    "model name": lambda p: f"nnspec: 1\nname: {Q(p)}\ninput: [4]\nlayers:\n  - relu\n",
    "layer name": lambda p: HEADER + f"layers:\n  - linear: {{out: 2, name: {Q(p)}}}\n",
    "layer in a residual": lambda p: HEADER + f"layers:\n  - residual: [{{linear: {{out: 4, name: {Q(p)}}}}}]\n",
    "repeat container": lambda p: HEADER + f"layers:\n  - relu: {{repeat: 2, name: {Q(p)}}}\n",
    "block name": lambda p: HEADER + f"blocks:\n  {Q(p)}:\n    layers: [relu]\nlayers:\n  - {Q(p)}\n",
    "block-call name": lambda p: HEADER + f"blocks:\n  b:\n    layers: [relu]\nlayers:\n  - b: {{name: {Q(p)}}}\n",
    "layer in a block": lambda p: HEADER + f"blocks:\n  b:\n    layers: [{{linear: {{out: 2, name: {Q(p)}}}}}]\n"
                                           "layers:\n  - b\n",
    "name from a block argument": lambda p: HEADER + "blocks:\n  b:\n    args: {nm: required}\n    layers: "
                                                     f"[{{relu: {{name: $nm}}}}]\nlayers:\n  - b: {{nm: {Q(p)}}}\n",
}


@pytest.mark.parametrize("where", list(WHERE))
@pytest.mark.parametrize("payload", PAYLOADS, ids=[ascii(p)[1:-1][:20] for p in PAYLOADS])
def test_unsafe_names_are_ns007_wherever_they_stand(where, payload):
    spec, diags = analyse_text(WHERE[where](payload), "hostile.yaml")
    assert spec is None or any(d.is_error for d in diags)
    ns007 = [d for d in diags if d.code == "NS007"]
    assert ns007, [(d.code, d.message) for d in diags]
    assert all(d.line >= 2 for d in ns007)


@pytest.mark.parametrize("payload", ["x; import os", "a\nimport os", "ｆｏｒｗａｒｄ", "__init__", "class"])
def test_compile_refuses_unsafe_names_and_writes_nothing(payload, tmp_path, capsys):
    for where in ("model name", "layer name", "block name"):
        spec = write(tmp_path, WHERE[where](payload))
        target = tmp_path / "model.py"
        for target_kind in ("torch", "keras"):
            code, out, err = run(capsys, "compile", spec, "--target", target_kind, "-o", target)
            assert code == 1 and "NS007" in err and out == "", (where, err)
            assert not target.exists()
        with pytest.raises(nnspec.SpecError) as info:
            nnspec.emit(str(spec), "torch")
        assert "NS007" in str(info.value)


def _shape_of(source: str) -> str:
    """The AST with every string constant blanked: two sources that differ only inside strings and
    comments have the same shape."""

    class Blank(ast.NodeTransformer):
        def visit_Constant(self, node):
            return ast.Constant("") if isinstance(node.value, str) else node

    return ast.dump(Blank().visit(ast.parse(source)))


HOSTILE_FILE_NAMES = ['x"; import os; "', "a\nimport os\n#", "a\rimport os", "'''", '"""', "back\\slash\\",
                      "{{ name }}{% raw %}", "$(id)`id`", "ｆｏｒｗａｒｄ", "line\u2028sep", "\u202eevil"]


@pytest.mark.parametrize("name", HOSTILE_FILE_NAMES, ids=[ascii(n)[1:-1] for n in HOSTILE_FILE_NAMES])
@pytest.mark.parametrize("target", ["torch", "keras"])
def test_a_file_name_never_becomes_code(name, target, tmp_path, capsys):
    """The spec's path reaches the emitted header and comments: escaped, so the module's code is exactly
    that of a spec named `plain.yaml` (only string constants and comments differ)."""
    text = HEADER + "blocks:\n  b:\n    layers: [relu]\nlayers:\n  - linear: {out: 3}\n  - b\n  - residual: [tanh]\n"
    plain = write(tmp_path, text, "plain.yaml")
    hostile = write(tmp_path, text, name + ".yaml")
    code, reference, err = run(capsys, "compile", plain, "--target", target)
    assert code == 0, err
    code, source, err = run(capsys, "compile", hostile, "--target", target)
    assert code == 0, err
    assert source.isascii()
    assert _shape_of(source) == _shape_of(reference)
    for line in source.splitlines():
        assert not line.lstrip().startswith(("import os;", "__import__")), line


def test_block_argument_names_never_reach_emitted_code(tmp_path, capsys):
    """A block argument may be any name `$name` can refer to (even `forward` or `__import__`): blocks are
    expanded, so the name never appears in the emitted file; one `$name` cannot refer to is NS007."""
    text = HEADER + ("blocks:\n  b:\n    args: {__import__: 3, forward: required}\n"
                     "    layers: [{linear: {out: $__import__}}, {linear: {out: $forward}}]\n"
                     "layers:\n  - b: {forward: 2}\n")
    spec = write(tmp_path, text)
    for target in ("torch", "keras"):
        code, source, err = run(capsys, "compile", spec, "--target", target)
        assert code == 0, err
        assert "__import__" not in source
    bad = write(tmp_path, HEADER + "blocks:\n  b:\n    args: {\"x; import os\": 1}\n    layers: [relu]\n"
                                   "layers:\n  - b\n", "bad.yaml")
    assert ("NS007", 6) in codes(bad)


def test_strings_in_initializer_and_layer_arguments_are_closed_choices():
    """Every other string that could reach emitted code is one of a closed set of choices."""
    cases = {
        "{kaiming_normal: {nonlinearity: \"relu'); import os; ('\"}}": "NS211",
        "{kaiming_normal: {mode: \"fan_in\\nimport os\"}}": "NS211",
        "{variance_scaling: {distribution: \"__import__('os')\"}}": "NS211",
        "\"__import__('os').system\"": "NS008",
        "{\"os.system\": {}}": "NS008",
    }
    for init, code in cases.items():
        _, diags = analyse_text(HEADER + f"layers:\n  - linear: {{out: 2, init: {{weight: {init}}}}}\n", "x.yaml")
        assert code in [d.code for d in diags], (init, diags)
    for item in ("{gelu: {approximate: \"tanh'); import os; ('\"}}", "{conv1d: {out: 2, kernel: 1, padding: \"x\"}}",
                 "\"os.system\""):
        _, diags = analyse_text(HEADER + f"layers:\n  - {item}\n", "x.yaml")
        assert {d.code for d in diags} & {"NS004", "NS008"}, (item, diags)


# -- YAML tags ----------------------------------------------------------------------------------------

TAGGED = {
    "value": "nnspec: 1\nname: !!python/object/apply:os.system [\"touch {flag}\"]\ninput: [4]\nlayers: [relu]\n",
    "item": HEADER + "layers:\n  - !!python/object/apply:os.system [\"touch {flag}\"]\n",
    "key": "nnspec: 1\n? !!python/object/apply:os.system [\"touch {flag}\"]\n: 1\n",
    "top level": "!!python/object/apply:os.system [\"touch {flag}\"]\n",
    "deep": HEADER + "layers:\n  - linear: {{out: 2, init: {{weight: !!python/name:os.system ''}}}}\n",
    "unknown tag": HEADER + "layers:\n  - !custom {{linear: {{out: 2}}}}\n",
    "merge source": HEADER + "base: &b !!python/object:os.system {{}}\nlayers:\n  - linear: {{<<: *b, out: 2}}\n",
    "set": HEADER + "layers: !!set {{relu: null}}\n",
    "binary": HEADER + "description: !!binary aGVsbG8=\nlayers: [relu]\n",
}


@pytest.mark.parametrize("where", list(TAGGED))
def test_object_constructing_tags_are_ns006_and_never_run(where, tmp_path):
    flag = tmp_path / "pwned"
    path = write(tmp_path, TAGGED[where].format(flag=flag))
    found = codes(path)
    assert [c for c, _ in found] == ["NS006"], found
    assert found[0][1] >= 1
    assert not flag.exists()


# -- alias bombs ----------------------------------------------------------------------------------------

def _billion_laughs(levels: int = 12) -> str:
    lines = ["nnspec: 1", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\nname: m\ninput: [4]\nlayers: *a{levels - 1}\n"


@pytest.mark.parametrize("text", [
    _billion_laughs(),
    # the bomb inside a block body, expanded at every call
    HEADER + "x: &x [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]\n" + "".join(f"y{i}: &y{i} [*{'x' if i == 0 else f'y{i - 1}'}, "
                                                                 f"*{'x' if i == 0 else f'y{i - 1}'}]\n"
                                                                 for i in range(40)) + "layers: *y39\n",
    # recursive: the alias refers to the node that holds it
    "nnspec: 1\nname: m\ninput: [4]\nlayers: &l [relu, *l]\n",
    "nnspec: 1\nname: m\ninput: [4]\nlayers:\n  - linear: &m {out: 2, init: *m}\n",
], ids=["billion_laughs", "doubling", "recursive_list", "recursive_mapping"])
def test_alias_bombs_are_ns005_fast_and_small(text, tmp_path):
    path = write(tmp_path, text)
    nnspec.check(write(tmp_path, SMALL, "warm.yaml"))
    tracemalloc.start()
    start = time.process_time()
    found = codes(path)
    elapsed = time.process_time() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [c for c, _ in found] == ["NS005"], found
    assert elapsed < 5.0 and peak < 50 * 2**20, (elapsed, peak)


# -- models that would need terabytes -------------------------------------------------------------------

TERABYTES = HEADER.replace("[4]", "[1000000]") + "layers:\n  - linear: {out: 1000000, repeat: 10}\n"
TERA_PARAMS = 10 * (10**12 + 10**6)


def test_check_reports_a_terabyte_model_without_allocating(tmp_path):
    path = write(tmp_path, TERABYTES)
    nnspec.check(write(tmp_path, SMALL, "warm.yaml"))
    tracemalloc.start()
    start = time.process_time()
    diags = nnspec.check(path)
    elapsed = time.process_time() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [(d.code, d.severity) for d in diags] == [("NS005", "warning")]
    assert f"{TERA_PARAMS:,} parameters" in diags[0].message and "TiB" in diags[0].message
    assert diags[0].line == 4
    assert elapsed < 5.0 and peak < 20 * 2**20
    assert nnspec.load(path).params == TERA_PARAMS


@pytest.mark.parametrize("text, expected", [
    (HEADER + "layers:\n  - relu: {repeat: 1000000000000}\n", ["NS005"]),  # a trillion layers: the expansion limit
    # an absurd dimension: no framework takes a size beyond a C int (2**31 - 1)
    (HEADER.replace("[4]", f"[{10**200}]") + "layers:\n  - flatten\n  - linear: {out: 2}\n", ["NS004"]),
    (HEADER + "layers:\n  - linear: {out: " + "9" * 400 + "}\n  - linear: {out: " + "9" * 400 + "}\n",
     ["NS004", "NS004"]),
])
def test_absurd_sizes_are_answered_quickly(text, expected, tmp_path):
    path = write(tmp_path, text)
    start = time.process_time()
    diags = nnspec.check(path)
    assert time.process_time() - start < 5.0  # processor time, generous: a blow-up takes minutes
    assert [d.code for d in diags] == expected, diags
    assert "internal error" not in diags[0].message


def test_build_refuses_above_max_params_unless_raised(capsys, tmp_path):
    pytest.importorskip("torch")
    spec = nnspec.loads(SMALL)  # 15 parameters
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.build(spec, "torch", max_params=10)
    assert [d.code for d in info.value.diagnostics] == ["NS005"]
    assert "15 parameters" in str(info.value) and "budget of 10" in str(info.value)
    assert sum(p.numel() for p in nnspec.build(spec, "torch", max_params=15).parameters()) == 15

    path = write(tmp_path, SMALL)
    code, out, err = run(capsys, "build", path, "--max-params", "10")
    assert code == 1 and "NS005" in err and "built:" not in out
    code, out, err = run(capsys, "build", path, "--max-params", "100")
    assert code == 0 and "built:" in out, err

    huge = write(tmp_path, TERABYTES, "huge.yaml")
    code, out, err = run(capsys, "build", huge)  # the default budget: 2e9 parameters
    assert code == 1 and "NS005" in err and "built:" not in out
    with pytest.raises(nnspec.SpecError):
        nnspec.build(str(huge), "torch")
    with pytest.raises(nnspec.SpecError):
        nnspec.build(str(huge), "keras")


def test_a_terabyte_model_builds_on_meta_without_allocating(capsys, tmp_path):
    torch = pytest.importorskip("torch")
    model = nnspec.build(nnspec.loads(TERABYTES), "torch", device="meta")
    params = list(model.parameters())
    assert all(p.is_meta for p in params)
    assert sum(p.numel() for p in params) == TERA_PARAMS
    assert isinstance(model, torch.nn.Module)
    code, out, err = run(capsys, "build", write(tmp_path, TERABYTES), "--device", "meta")
    assert code == 0, err
    assert f"parameters: {TERA_PARAMS:,}" in out and "on meta" in out


# -- deep nesting ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    HEADER + "layers: " + "[" * 100_000 + "]" * 100_000 + "\n",
    HEADER + "layers: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n",
    HEADER + "layers:\n" + "".join("  " * i + "- \n" for i in range(2_000)) + "  " * 2_000 + "- relu\n",
    HEADER + "layers:\n  - residual:\n" + "".join("    " * (i + 1) + "  - residual:\n" for i in range(100))
    + "    " * 101 + "  - relu\n",
], ids=["flow_lists", "flow_mappings", "block_lists", "residuals"])
def test_deep_nesting_is_ns005(text, tmp_path):
    path = write(tmp_path, text)
    start = time.process_time()
    found = codes(path)
    assert time.process_time() - start < 5.0  # processor time, generous: a blow-up takes minutes
    assert [c for c, _ in found] == ["NS005"], found
    assert found[0][1] >= 1


# -- encodings and shapes of the file -----------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    (b"nnspec: 1\nname: m\n# caf\xe9\ninput: [4]\nlayers: [relu]\n", [("NS001", 3)]),  # Latin-1
    ("nnspec: 1\nname: m\ninput: [4]\nlayers: [relu]\n".encode("utf-16"), [("NS001", 1)]),
    (b"\xef\xbb\xbf" + SMALL.encode(), []),  # a BOM is accepted
    (b"\xef\xbb\xbf" + SMALL.replace("\n", "\r\n").encode(), []),  # with Windows line ends too
    (b"", [("NS001", 1)]),
    (b"\n\n   \n# only a comment\n", [("NS001", 1)]),
    (b"\xef\xbb\xbf", [("NS001", 1)]),
    (b"- nnspec: 1\n- name: m\n", [("NS010", 1)]),
    (b"just a string\n", [("NS010", 1)]),
    (b"42\n", [("NS010", 1)]),
    (b"null\n", [("NS010", 1)]),
    (b"nnspec: 1\nname: m\ninput: [4]\nlayers: [relu]\n---\nnnspec: 1\n", [("NS001", 5)]),
])
def test_encodings_and_top_levels(raw, expected, tmp_path):
    path = write(tmp_path, raw)
    assert codes(path) == expected


def test_a_directory_of_thousands_of_files(tmp_path, capsys):
    """3000 small specs in one `check` call: each checked, every problem reported, in reasonable time."""
    bad = set(range(0, 3000, 300))
    for i in range(3000):
        text = SMALL.replace("out: 3", "lienar: 3" if i in bad else f"out: {1 + i % 7}")
        (tmp_path / f"s{i:04d}.yaml").write_text(text)
    start = time.process_time()
    code, out, err = run(capsys, "check", tmp_path, "--format", "json")
    elapsed = time.process_time() - start
    assert code == 1, err
    reported = {Path(d["file"]).name for d in json.loads(out)}
    assert reported == {f"s{i:04d}.yaml" for i in bad}
    assert elapsed < 30, elapsed


# -- paths that are not readable files --------------------------------------------------------------------

def test_a_directory_is_ns001_and_exit_2(tmp_path, capsys):
    directory = tmp_path / "spec.yaml"
    directory.mkdir()
    assert codes(directory) == [("NS001", 1)]
    for command in (["compile", directory, "--target", "torch"], ["build", directory], ["inits", directory]):
        code, _out, err = run(capsys, *command)
        assert code == 2 and "NS001" in err and "directory" in err, (command, err)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_a_broken_symlink_is_ns001_and_exit_2(tmp_path, capsys):
    link = tmp_path / "link.yaml"
    os.symlink(tmp_path / "nowhere.yaml", link)
    assert codes(link) == [("NS001", 1)]
    code, out, err = run(capsys, "check", link)
    assert code == 2 and "NS001" in out
    code, _out, err = run(capsys, "compile", link, "--target", "torch")
    assert code == 2 and "NS001" in err


def test_an_unreadable_file_is_ns001_and_exit_2(tmp_path, capsys):
    path = write(tmp_path, SMALL)
    path.chmod(0)
    try:
        if os.geteuid() != 0:  # root reads it anyway: the rest still holds
            assert codes(path) == [("NS001", 1)]
            assert "permission denied" in nnspec.check(path)[0].message
            code, out, _err = run(capsys, "check", path)
            assert code == 2 and "NS001" in out
            code, _out, err = run(capsys, "compile", path, "--target", "torch")
            assert code == 2 and "NS001" in err
        else:
            assert codes(path) == []
    finally:
        path.chmod(0o644)


def test_impossible_paths_are_ns001(tmp_path, capsys):
    assert codes(tmp_path / "missing.yaml") == [("NS001", 1)]
    assert codes("a\x00b.yaml") == [("NS001", 1)]
    assert codes(tmp_path / ("x" * 300 + ".yaml")) == [("NS001", 1)]
    with pytest.raises(nnspec.SpecError):
        nnspec.load("a\x00b.yaml")
    code, _out, err = run(capsys, "check", tmp_path / "missing.yaml")
    assert code == 2 and "missing.yaml" in err


# -- numbers beyond what a float32 tensor holds ---------------------------------------------------------------

@pytest.mark.parametrize("init, role", [
    ("{constant: 1.0e+39}", "bias"),
    ("{uniform: {low: -1.0e+308, high: 1}}", "bias"),
    ("{normal: {std: 1.0e+300}}", "weight"),
    ("{values: [1, 1.0e+39]}", "bias"),
    ("{values: [1, " + "9" * 400 + "]}", "bias"),  # an integer beyond even float64
    ("{log_prior: [1.0e+308, 1.0e+308]}", "bias"),  # the total overflows
    ("{log_prior: [1.0e-320, 1.0e+300]}", "bias"),  # a ratio underflows to 0: log(0)
])
def test_numbers_a_float32_tensor_cannot_hold_are_ns211(init, role):
    _, diags = analyse_text(HEADER + f"layers:\n  - linear: {{out: 2, init: {{{role}: {init}}}}}\n", "x.yaml")
    assert [(d.code, d.line) for d in diags] == [("NS211", 5)], diags
    assert "internal error" not in diags[0].message


def test_sizes_beyond_float_range_are_reported_not_overflowed():
    from nnspec.compiler.budget import human_bytes

    assert human_bytes(4 * 10**400).endswith(" YiB") and "E+" in human_bytes(4 * 10**400)
    big = 2**31 - 1  # the largest size a layer takes (a tensor's bytes must fit an int64: out below 2**30)
    text = HEADER.replace("[4]", f"[{big}]") + f"layers:\n  - linear: {{out: {2**30 - 1}}}\n"
    _, diags = analyse_text(text, "x.yaml")
    assert [(d.code, d.severity) for d in diags] == [("NS005", "warning")] * 2  # parameters and activations
    assert any(f"{(2**30 - 1) * (big + 1):,} parameters" in d.message for d in diags)
