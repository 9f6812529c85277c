"""The everyday surface of the CLI (issue 17): --version, standard input, excludes and .gitignore, project
configuration, help with defaults, rule families, the GitLab and step-summary reports."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_gitlab_report

from nnspec import __version__, formats
from nnspec.cli import _parser, main
from nnspec.codes import CODES

ROOT = Path(__file__).resolve().parent.parent

GOOD = "nnspec: 1\nname: good\ninput: [8]\nlayers:\n  - linear: {out: 4, init: {weight: xavier_uniform}}\n"
BAD = "nnspec: 1\nname: bad\ninput: [8]\nlayers:\n  - linear: {out: 4, stirde: 1}\n"  # NS003 at 5:22
WARN = ("nnspec: 1\nname: warn\ninput: [8]\ninit:\n  conv2d: {weight: xavier_uniform}\nlayers:\n"
        "  - linear: {out: 4, init: {weight: xavier_uniform}}\n")  # NS212 warning
BIG = "nnspec: 1\nname: big\ninput: [1000]\nlayers:\n  - linear: {out: 1000}\n"  # 1,001,000 parameters


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text, encoding="utf-8")


def checked(capsys, *argv) -> tuple[int, list[str]]:
    """(exit code, `file:code` of each finding) of `check --format concise`."""
    code, out, err = run(capsys, "check", "--format", "json", *argv)
    assert err == "", err
    return code, sorted(f"{d['file']}:{d['code']}" for d in json.loads(out))


def sh(argv, cwd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnspec", *argv], cwd=cwd, capture_output=True, text=True,
                          check=False, timeout=120, **kwargs)


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"nnspec {__version__}\n"
    proc = sh(["--version"], ROOT)
    assert (proc.returncode, proc.stdout) == (0, f"nnspec {__version__}\n")


# -- standard input ----------------------------------------------------------------------------------------


def test_check_reads_standard_input(tmp_path):
    proc = sh(["check", "--format", "concise", "-"], tmp_path, input=BAD)
    assert proc.returncode == 1 and proc.stderr == ""
    assert proc.stdout.splitlines() == ["-:5:22: NS003 error: unknown key `stirde` in `linear`",
                                        "Found 1 error in 1 file."]
    proc = sh(["check", "--stdin-filename", "configs/model.yaml", "-"], tmp_path, input=BAD)
    assert proc.returncode == 1
    assert proc.stdout.startswith("configs/model.yaml:5:22: NS003 error")
    assert "5 |   - linear: {out: 4, stirde: 1}" in proc.stdout  # the source line, from standard input
    proc = sh(["check", "-", "--stdin-filename", "x.yaml"], tmp_path, input=GOOD)
    assert (proc.returncode, proc.stdout) == (0, "All checks passed (1 file).\n")


def test_standard_input_with_files_and_per_file_ignores(tmp_path):
    write(tmp_path, {"good.yaml": GOOD, "pyproject.toml": '[tool.nnspec]\nper-file-ignores = {"legacy/*" = ["NS0"]}\n'})
    proc = sh(["check", "--format", "concise", "good.yaml", "-", "--stdin-filename", "legacy/old.yaml"], tmp_path,
              input=BAD)
    assert (proc.returncode, proc.stdout) == (0, "All checks passed (2 files).\n"), proc.stderr
    proc = sh(["check", "--format", "concise", "-", "--stdin-filename", "new.yaml"], tmp_path, input=BAD)
    assert proc.returncode == 1


@pytest.mark.parametrize("argv, message", [
    (["-", "-"], "`-` (standard input) can be named once"),
    (["--stdin-filename", "a.yaml", "good.yaml"], "--stdin-filename applies only with `-`"),
])
def test_standard_input_usage_errors(tmp_path, monkeypatch, capsys, argv, message):
    write(tmp_path, {"good.yaml": GOOD})
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "check", *argv)
    assert code == 2 and out == "" and message in err


# -- excludes and .gitignore ---------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path, monkeypatch):
    write(tmp_path, {"configs/good.yaml": GOOD, "configs/bad.yaml": BAD, "configs/wip/bad.yaml": BAD,
                     "configs/a.draft.yaml": BAD, ".hidden/bad.yaml": BAD, "node_modules/x/bad.yaml": BAD})
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_default_excludes(tree, capsys):
    assert checked(capsys, ".") == (1, ["./configs/a.draft.yaml:NS003", "./configs/bad.yaml:NS003",
                                        "./configs/wip/bad.yaml:NS003"])


def test_exclude_and_extend_exclude(tree, capsys):
    assert checked(capsys, "--extend-exclude", "wip/,*.draft.yaml", ".") == (1, ["./configs/bad.yaml:NS003"])
    assert checked(capsys, "--extend-exclude", "configs/bad.yaml, wip", ".") == (
        1, ["./configs/a.draft.yaml:NS003"])
    # --exclude replaces the defaults: hidden and node_modules folders are walked again
    code, found = checked(capsys, "--exclude", "configs", ".")
    assert found == ["./.hidden/bad.yaml:NS003", "./node_modules/x/bad.yaml:NS003"]
    # a file named on the command line is checked unless --force-exclude
    assert checked(capsys, "--extend-exclude", "*.draft.yaml", "configs/a.draft.yaml") == (
        1, ["configs/a.draft.yaml:NS003"])
    code, out, _ = run(capsys, "check", "--extend-exclude", "*.draft.yaml", "--force-exclude", "--format",
                       "concise", "configs/a.draft.yaml", "configs/good.yaml")
    assert (code, out) == (0, "All checks passed (1 file).\n")


def test_gitignore_is_respected(tree, capsys):
    write(tree, {".gitignore": "# generated\n/configs/wip/\n", "configs/.gitignore": "*.draft.yaml\n!keep.draft.yaml\n",
                 "configs/keep.draft.yaml": BAD})
    expected = ["./configs/bad.yaml:NS003", "./configs/keep.draft.yaml:NS003"]
    assert checked(capsys, ".") == (1, expected)
    assert checked(capsys, "configs") == (1, [p.replace("./", "", 1) for p in expected])  # from a subfolder
    assert len(checked(capsys, "--no-respect-gitignore", ".")[1]) == 4
    # a folder named on the command line is checked though ignored
    assert checked(capsys, "configs/wip") == (1, ["configs/wip/bad.yaml:NS003"])


# -- project configuration -----------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path, monkeypatch):
    write(tmp_path, {"specs/bad.yaml": BAD, "specs/warn.yaml": WARN, "specs/big.yaml": BIG,
                     "specs/legacy/bad.yaml": BAD, "specs/good.yaml": GOOD})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def config(directory: Path, text: str, name: str = "pyproject.toml") -> None:
    (directory / name).write_text(text, encoding="utf-8")


def test_pyproject_configuration(project, capsys):
    everything = ["specs/bad.yaml:NS003", "specs/legacy/bad.yaml:NS003", "specs/warn.yaml:NS212"]
    assert checked(capsys, "specs") == (1, everything)
    config(project, '[project]\nname = "x"\n\n[tool.nnspec]\nignore = ["NS0"]\n')
    assert checked(capsys, "specs") == (0, ["specs/warn.yaml:NS212"])
    assert checked(capsys, "--ignore", "NS212", "specs") == (1, everything[:2])  # the flag wins
    config(project, '[tool.nnspec]\nselect = ["NS2"]\nexclude = ["legacy/"]\n')
    assert checked(capsys, "specs") == (0, ["specs/warn.yaml:NS212"])
    assert checked(capsys, "--select", "NS0", "specs") == (1, ["specs/bad.yaml:NS003"])
    config(project, '[tool.nnspec]\nper-file-ignores = { "**/legacy/*.yaml" = ["NS003"], "warn.yaml" = ["NS2"] }\n')
    assert checked(capsys, "specs") == (1, ["specs/bad.yaml:NS003"])
    config(project, '[tool.nnspec]\nmax-params = 1_000_000\n')
    code, found = checked(capsys, "specs")
    assert "specs/big.yaml:NS005" in found
    assert "specs/big.yaml:NS005" not in checked(capsys, "--max-params", "2000000", "specs")[1]


def test_configuration_is_found_upward_and_nnspec_toml_wins(project, capsys, monkeypatch):
    config(project, '[tool.nnspec]\nignore = ["NS003"]\n')
    monkeypatch.chdir(project / "specs")
    assert checked(capsys, ".") == (0, ["./warn.yaml:NS212"])
    config(project, 'ignore = ["NS2"]\n', "nnspec.toml")
    assert checked(capsys, ".") == (1, ["./bad.yaml:NS003", "./legacy/bad.yaml:NS003"])
    # a pyproject.toml without [tool.nnspec] in between is passed over
    config(project / "specs", '[project]\nname = "inner"\n')
    assert checked(capsys, ".")[0] == 1
    code, found = checked(capsys, "--config", str(project / "pyproject.toml"), ".")
    assert found == ["./warn.yaml:NS212"]


@pytest.mark.parametrize("text, message", [
    ('[tool.nnspec]\nselct = ["NS2"]\n', "unknown key `selct` in the nnspec configuration; did you mean `select`?"),
    ('[tool.nnspec]\nselect = 3\n', "`select` must be a list of strings, got 3"),
    ('[tool.nnspec]\nmax-params = -1\n', "`max-params` must be a positive integer, got -1"),
    ('[tool.nnspec]\nignore = ["NS9"]\n', "`NS9` matches no rule code (in "),
    ('[tool.nnspec]\nper-file-ignores = {"a.yaml" = ["NS2011"]}\n', "`NS2011` matches no rule code (in "),
    ('[tool.nnspec\n', "not valid TOML"),
])
def test_bad_configuration_exits_2(project, capsys, text, message):
    config(project, text)
    code, out, err = run(capsys, "check", "specs")
    assert code == 2 and out == ""
    assert message in err, err


def test_build_reads_max_params(project, capsys):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    config(project, '[tool.nnspec]\nmax-params = 1_000_000\n')
    code, _, err = run(capsys, "build", "--device", "meta", "specs/big.yaml")
    assert code == 0  # meta allocates nothing: no budget
    code, _, err = run(capsys, "build", "specs/big.yaml")
    assert code == 1 and "above the budget of 1,000,000" in err
    code, _, err = run(capsys, "build", "--max-params", "2000000", "specs/big.yaml")
    assert code == 0, err


def test_this_repository_checks_clean():
    proc = sh(["check", "--format", "concise", "."], ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.fullmatch(r"All checks passed \(\d+ files\)\.\n", proc.stdout), proc.stdout


# -- help and rules ------------------------------------------------------------------------------------------


def subcommands():
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("name", list(subcommands()))
def test_every_option_has_help_and_its_default(name):
    parser = subcommands()[name]
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, (name, action.dest)
        if action.default not in (None, False, True, argparse.SUPPRESS) and action.option_strings:
            assert f"(default: {action.default})" in " ".join(text.split()), (name, action.dest)


def test_rule_family(capsys):
    code, out, _ = run(capsys, "rule", "NS2")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == [c for c in CODES if c.startswith("NS2")]
    code, out, _ = run(capsys, "rule", "ns21")
    assert code == 0 and {line.split()[0] for line in out.splitlines()} == {c for c in CODES if c.startswith("NS21")}
    code, out, err = run(capsys, "rule", "NS9")
    assert code == 2 and out == "" and "unknown rule code or family 'NS9'" in err
    code, out, _ = run(capsys, "rule", "ns201")
    assert code == 0 and out.startswith("NS201 (")


# -- GitLab Code Quality and the GitHub step summary ---------------------------------------------------------

def test_gitlab_format(tmp_path, monkeypatch, capsys):
    write(tmp_path, {"sub/bad.yaml": BAD, "warn.yaml": WARN, "twice.yaml": BAD.replace("stirde: 1", "stirde: 1, x: 2")})
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "check", "--format", "gitlab", ".")
    assert code == 1
    report = assert_gitlab_report(out)
    assert {(i["location"]["path"], i["check_name"], i["severity"], i["location"]["lines"]["begin"])
            for i in report} == {("sub/bad.yaml", "NS003", "major", 5), ("warn.yaml", "NS212", "minor", 5),
                                 ("twice.yaml", "NS003", "major", 5)}
    assert len(report) == 4
    assert report[0]["description"].startswith("NS003 unknown key `stirde`")
    # fingerprints do not move with the line
    first = {i["fingerprint"] for i in report}
    (tmp_path / "warn.yaml").write_text("# a comment\n" + WARN)
    _, out, _ = run(capsys, "check", "--format", "gitlab", ".")
    assert {i["fingerprint"] for i in json.loads(out)} == first
    code, out, _ = run(capsys, "check", "--format", "gitlab", "--select", "NS2", "sub")
    assert (code, json.loads(out)) == (0, [])


def test_github_step_summary(tmp_path, monkeypatch, capsys):
    write(tmp_path, {f"bad{i:02d}.yaml": BAD.replace("name: bad", f"name: bad{i}") for i in range(12)})
    write(tmp_path, {"pipe.yaml": BAD.replace("stirde", "a|b<i>")})
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "check", "--format", "github", ".")
    assert code == 1 and out.count("::error ") == 13  # no summary without GITHUB_STEP_SUMMARY
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out2, err = run(capsys, "check", "--format", "github", ".")
    assert (code, out2, err) == (1, out, "")
    text = summary.read_text()
    assert text.startswith("earlier step\n## nnspec check\n\nFound 13 errors in 13 files.\n")
    rows = [line for line in text.splitlines() if line.startswith("| bad") or line.startswith("| pipe")]
    assert len(rows) == 13
    assert rows[0] == ("| bad00.yaml:5:22 | NS003 unknown-key | error | unknown key \\`stirde\\` in \\`linear\\` "
                       "(hint: allowed keys: allow, bias, init, name, out, repeat) |")
    pipe = next(r for r in rows if r.startswith("| pipe"))
    assert "a\\|b&lt;i&gt;" in pipe and pipe.count(" | ") == 3
    # a clean run says so
    run(capsys, "check", "--format", "github", "bad00.yaml", "--ignore", "NS003")
    assert summary.read_text().endswith("## nnspec check\n\nAll checks passed (1 file).\n\n")


def test_formats_list():
    assert formats.FORMATS == ("full", "concise", "json", "github", "sarif", "junit", "gitlab")
