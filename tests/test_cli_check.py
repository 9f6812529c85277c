"""`nnspec check`, `rule`, `inits` and `schema` on the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nnspec.cli import main
from nnspec.codes import CODES

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
CLEAN_EXAMPLES = ["mlp.yaml", "small_cnn.yaml", "resnet_blocks.yaml", "cifar_resnet.yaml"]
GOOD = "nnspec: 1\nname: good\ninput: [8]\nlayers:\n  - linear: {out: 4, init: {weight: xavier_uniform}}\n"
BAD = "nnspec: 1\nname: bad\ninput: [8]\nlayers:\n  - linear: {out: 4, stirde: 1}\n"
WARN = ("nnspec: 1\nname: warn\ninput: [8]\ninit:\n  conv2d: {weight: xavier_uniform}\nlayers:\n"
        "  - linear: {out: 4, init: {weight: xavier_uniform}}\n")


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def tree(tmp_path):
    """A directory of specs, non-specs and other files, with a nested folder."""
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yml").write_text(BAD)
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "warn.yaml").write_text(WARN)
    (tmp_path / "sub" / "other.yaml").write_text("name: some other config\nlayers: [1, 2]\n")
    (tmp_path / "sub" / "notes.txt").write_text(BAD)
    (tmp_path / "sub" / "spec.json").write_text(BAD)
    (tmp_path / "sub" / "bom.yaml").write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "bad.yaml").write_text(BAD)
    return tmp_path


def test_directories_pick_yaml_specs_recursively(tree, capsys):
    code, out, _ = run(capsys, "check", "--format", "json", str(tree))
    assert code == 1
    files = {Path(d["file"]).relative_to(tree).as_posix() for d in json.loads(out)}
    assert files == {"bad.yml", "sub/deeper/warn.yaml"}
    code, out, _ = run(capsys, "check", "--format", "concise", str(tree))
    assert "in 4 files" in out  # good, bad, warn, bom: not other.yaml, notes.txt, spec.json, .hidden


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_directories_skip_fifos(tree, capsys):
    """A named pipe called *.yaml is not read in a directory walk (opening it would wait forever)."""
    os.mkfifo(tree / "sub" / "pipe.yaml")
    code, out, _ = run(capsys, "check", "--format", "concise", str(tree))
    assert code == 1 and "in 4 files" in out


def test_each_file_is_checked_once(tree, capsys):
    code, out, _ = run(capsys, "check", "--format", "json", str(tree), str(tree / "bad.yml"),
                       str(tree / "sub" / ".." / "bad.yml"))
    assert [Path(d["file"]).name for d in json.loads(out)].count("bad.yml") == 1


def test_a_file_named_explicitly_is_always_checked(tree, capsys):
    code, out, _ = run(capsys, "check", "--format", "json", str(tree / "sub" / "other.yaml"),
                       str(tree / "sub" / "notes.txt"))
    assert code == 1
    assert sorted((Path(d["file"]).name, d["code"]) for d in json.loads(out)) == [("notes.txt", "NS003"),
                                                                                   ("other.yaml", "NS010")]


@pytest.mark.parametrize("name", CLEAN_EXAMPLES)
def test_examples_are_clean(name, capsys):
    code, out, _ = run(capsys, "check", str(ROOT / "examples" / name))
    assert (code, out) == (0, "All checks passed (1 file).\n")


def test_clean_examples_as_a_directory(tmp_path, capsys):
    for name in CLEAN_EXAMPLES:
        shutil.copy(ROOT / "examples" / name, tmp_path / name)
    code, out, _ = run(capsys, "check", str(tmp_path))
    assert (code, out) == (0, f"All checks passed ({len(CLEAN_EXAMPLES)} files).\n")


def test_format_full_shows_the_line_a_caret_and_the_hint(capsys):
    code, out, _ = run(capsys, "check", str(FIXTURES / "NS003_unknown_key.yaml"))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"{FIXTURES / 'NS003_unknown_key.yaml'}:7:33: NS003 error: unknown key `stirde` in `conv2d`"
    source = next(ln for ln in lines if ln.startswith("7 | "))
    caret = lines[lines.index(source) + 1]
    assert source[caret.index("^"):].startswith("stirde")
    assert caret.count("^") == len("stirde")
    assert "  = hint: did you mean `stride`?" in lines
    assert lines[-1] == "Found 1 error in 1 file."


def test_format_concise(capsys):
    path = FIXTURES / "NS106_duplicate_name.yaml"
    code, out, _ = run(capsys, "check", "--format", "concise", str(path))
    assert code == 1
    assert out.splitlines() == [f"{path}:8:28: NS106 error: duplicate name `fc` in this scope; first used on line 7",
                                "Found 1 error in 1 file."]


def test_format_json(capsys):
    paths = [str(FIXTURES / "NS003_unknown_key.yaml"), str(FIXTURES / "NS009_missing_out.yaml")]
    code, out, _ = run(capsys, "check", "--format", "json", *paths)
    assert code == 1
    items = json.loads(out)
    assert [list(d) for d in items] == [["file", "line", "column", "end_line", "end_column", "code", "severity",
                                         "message", "hint"]] * 2
    assert [(d["file"], d["line"], d["column"], d["code"], d["severity"]) for d in items] == [
        (paths[0], 7, 33, "NS003", "error"), (paths[1], 7, 5, "NS009", "error")]
    assert items[0]["end_line"] == 7 and items[0]["end_column"] == 39
    assert items[0]["hint"] == "did you mean `stride`?"


def test_json_of_a_clean_file_is_an_empty_list(tmp_path, capsys):
    (tmp_path / "good.yaml").write_text(GOOD)
    assert run(capsys, "check", "--format", "json", str(tmp_path / "good.yaml")) == (0, "[]\n", "")


def test_exit_codes_and_strict(tmp_path, capsys):
    for name, text in (("good.yaml", GOOD), ("bad.yaml", BAD), ("warn.yaml", WARN)):
        (tmp_path / name).write_text(text)
    assert run(capsys, "check", str(tmp_path / "good.yaml"))[0] == 0
    assert run(capsys, "check", str(tmp_path / "good.yaml"), "--strict")[0] == 0
    code, out, _ = run(capsys, "check", str(tmp_path / "warn.yaml"))
    assert code == 0 and "NS212 warning" in out and "Found 1 warning in 1 file." in out
    assert run(capsys, "check", "--strict", str(tmp_path / "warn.yaml"))[0] == 1
    assert run(capsys, "check", str(tmp_path / "bad.yaml"), str(tmp_path / "good.yaml"))[0] == 1
    assert run(capsys, "check", "--exit-zero", str(tmp_path / "bad.yaml"))[0] == 0


def test_usage_errors_exit_2(tmp_path, capsys):
    (tmp_path / "good.yaml").write_text(GOOD)
    code, out, err = run(capsys, "check", str(tmp_path / "missing.yaml"))
    assert code == 2 and "missing.yaml" in err and "All checks passed" not in out
    code, out, err = run(capsys, "check", str(tmp_path / "good.yaml"), str(tmp_path / "missing"))
    assert code == 2 and "All checks passed (1 file)." in out
    assert run(capsys, "check")[0] == 2
    assert run(capsys, "check", "--format", "xml", str(tmp_path / "good.yaml"))[0] == 2
    assert run(capsys, "check", "--select", "NS9", str(tmp_path / "good.yaml"))[0] == 2
    assert run(capsys, "nosuchcommand")[0] == 2
    assert run(capsys)[0] == 2


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a user that permissions apply to")
def test_unreadable_file_exits_2(tmp_path, capsys):
    path = tmp_path / "secret.yaml"
    path.write_text(GOOD)
    path.chmod(0)
    try:
        code, out, _ = run(capsys, "check", "--format", "concise", str(path))
    finally:
        path.chmod(0o644)
    assert code == 2 and "NS001" in out


def test_garbage_files_give_located_diagnostics(tmp_path, capsys):
    (tmp_path / "junk.yaml").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "tabs.yaml").write_text("nnspec: 1\n\tname: x\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    code, out, _ = run(capsys, "check", "--format", "json", *(str(tmp_path / n) for n in
                                                              ("junk.yaml", "tabs.yaml", "list.yaml")))
    assert code == 1
    assert [(Path(d["file"]).name, d["code"], d["line"] >= 1) for d in json.loads(out)] == [
        ("junk.yaml", "NS001", True), ("tabs.yaml", "NS001", True), ("list.yaml", "NS010", True)]


def test_select_and_ignore(tmp_path, capsys):
    (tmp_path / "warn.yaml").write_text(WARN)
    (tmp_path / "bad.yaml").write_text(BAD)
    code, out, _ = run(capsys, "check", "--format", "json", "--ignore", "NS0", str(tmp_path))
    assert code == 0 and [d["code"] for d in json.loads(out)] == ["NS212"]
    code, out, _ = run(capsys, "check", "--format", "json", "--select", "NS003", str(tmp_path))
    assert code == 1 and [d["code"] for d in json.loads(out)] == ["NS003"]


# -- rule, inits, schema ---------------------------------------------------------------------------


def test_rule_prints_every_section(capsys):
    code, out, _ = run(capsys, "rule", "NS201")
    assert code == 0
    assert out.startswith("NS201 (")
    for section in ("## What it does", "## Why is this bad", "## Example", "## Use instead"):
        assert section in out
    assert run(capsys, "rule", "ns003")[0] == 0


def test_rule_unknown_code(capsys):
    code, out, err = run(capsys, "rule", "NS999")
    assert code == 2 and "NS999" in err and out == ""


def test_rule_list(capsys):
    code, out, _ = run(capsys, "rule", "--list")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == list(CODES)


def test_inits_table(capsys):
    code, out, _ = run(capsys, "inits", str(ROOT / "examples" / "cifar_resnet.yaml"))
    assert code == 0
    header, rule, *rows = out.splitlines()
    assert header.split() == ["tensor", "shape", "fan_in", "fan_out", "initializer", "from"]
    by_path = {row.split()[0]: row for row in rows if row and not row.startswith((" ", "waivers"))}
    stem = by_path["stem.weight"].split()
    assert stem[1:4] == ["16x3x3x3", "27", "144"]
    assert "kaiming_normal(" in by_path["stem.weight"] and "cifar_resnet.yaml:8 (init.weight)" in by_path["stem.weight"]
    tail = by_path["basic_1.0.residual_1.branch.batchnorm_2.gamma"]
    assert "zeros" in tail and "cifar_resnet.yaml:23 (layer)" in tail
    assert by_path["batchnorm_1.beta"].split()[-1] == "default"
    assert "head.weight" in by_path and "head.bias" in by_path


def test_inits_of_a_bad_or_missing_spec(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text(BAD)
    code, out, err = run(capsys, "inits", str(tmp_path / "bad.yaml"))
    assert code == 1 and out == "" and "NS003" in err
    code, out, err = run(capsys, "inits", str(tmp_path / "missing.yaml"))
    assert code == 2 and out == ""


def test_schema_command_prints_json_schema(capsys):
    code, out, _ = run(capsys, "schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"


# -- subprocesses ------------------------------------------------------------------------------------


def test_console_script_exit_codes(tmp_path):
    (tmp_path / "bad.yaml").write_text(BAD)
    run_ = [sys.executable, "-m", "nnspec", "check", "--format", "concise"]
    bad = subprocess.run(run_ + [str(tmp_path / "bad.yaml")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1 and "NS003" in bad.stdout and bad.stderr == ""
    good = subprocess.run(run_ + ["examples/mlp.yaml"], capture_output=True, text=True, cwd=ROOT)
    assert (good.returncode, good.stdout) == (0, "All checks passed (1 file).\n")
    missing = subprocess.run(run_ + [str(tmp_path / "nope")], capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 2


FRAMEWORKS = ("torch", "tensorflow", "keras", "jax")

WRAPPER = """
import json, sys
from nnspec.cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
print("\\nMODULES " + json.dumps(sorted(sys.modules)))
"""


def test_check_never_imports_a_framework():
    proc = subprocess.run([sys.executable, "-c", WRAPPER, "check", "--format", "json", "examples/", "tests/fixtures"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode in (0, 1), proc.stderr
    modules = json.loads(proc.stdout.rsplit("MODULES ", 1)[1])
    assert "nnspec.compiler.shapes" in modules
    assert not [m for m in modules if m.split(".")[0] in FRAMEWORKS]


def test_python_m_nnspec_check_never_imports_a_framework():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "nnspec", "check", "examples/"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode in (0, 1)
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "nnspec.cli" in imported and "yaml" in imported
    assert not [m for m in imported if m.split(".")[0] in FRAMEWORKS]
