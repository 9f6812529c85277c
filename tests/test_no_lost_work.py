"""No lost work: `nnspec compile -o` writes a temporary file beside the target and renames it.

On any error (a spec with errors, a failing write half-way through, a failing rename, an interrupt)
the target keeps its old content and no `.nnspec-*.tmp` file is left; a file that nnspec did not
generate is never replaced without `--force`; one it generated is; `-o` at a directory is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import nnspec
from nnspec import files
from nnspec.cli import main

SPEC = "nnspec: 1\nname: m\ninput: [4]\nseed: 1\nlayers:\n  - linear: {out: 3}\n"
OTHER = SPEC.replace("out: 3", "out: 5")
USER_CODE = "# my own model, written by hand\nprint('precious')\n"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return path


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".nnspec-") or p.suffix == ".tmp")


def compile_to(capsys, spec: Path, target: Path, *extra, kind: str = "torch"):
    return run(capsys, "compile", spec, "--target", kind, "-o", target, *extra)


@pytest.mark.parametrize("kind", ["torch", "keras"])
def test_a_new_file_is_written_whole(kind, spec, tmp_path, capsys):
    target = tmp_path / "out" / "model.py"
    target.parent.mkdir()
    code, _out, err = compile_to(capsys, spec, target, kind=kind)
    assert code == 0, err
    assert target.read_text(encoding="utf-8") == nnspec.emit(nnspec.load(spec), kind)
    assert os.listdir(target.parent) == ["model.py"]


def test_the_temporary_file_sits_beside_the_target_and_is_renamed(spec, tmp_path, capsys, monkeypatch):
    """The rename is atomic only within one file system: the temporary file is in the target's directory."""
    target = tmp_path / "model.py"
    renames = []
    real_replace = os.replace

    def recording_replace(src, dst):
        renames.append((Path(src), Path(dst)))
        assert Path(src).read_text(encoding="utf-8").startswith(files.GENERATED_MARKER)
        assert not Path(dst).exists() or Path(dst).read_text() == "old generated\n"
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    assert compile_to(capsys, spec, target)[0] == 0
    (src, dst), = renames
    assert src.parent == tmp_path and src.name.startswith(".nnspec-") and src.name.endswith(".tmp")
    assert dst == target
    assert leftovers(tmp_path) == []


class _FailingFile:
    """A text file that writes half of what it is given, then fails like a full disk (or an interrupt)."""

    def __init__(self, fh, error):
        self.fh, self.error = fh, error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()
        return False

    def write(self, text):
        self.fh.write(text[: len(text) // 2])
        self.fh.flush()
        raise self.error

    def __getattr__(self, name):
        return getattr(self.fh, name)


@pytest.mark.parametrize("error, exit_code", [(OSError(28, "No space left on device"), 2),
                                              (KeyboardInterrupt(), 130)])
def test_an_error_in_the_middle_of_writing_loses_nothing(error, exit_code, spec, tmp_path, capsys, monkeypatch):
    target = tmp_path / "model.py"
    assert compile_to(capsys, spec, target)[0] == 0
    before = target.read_bytes()
    spec.write_text(OTHER)  # a change that would give a different file
    partial = []
    real_fdopen = os.fdopen

    def failing_fdopen(fd, *args, **kwargs):
        fh = real_fdopen(fd, *args, **kwargs)
        partial.append(fh.name)
        return _FailingFile(fh, error)

    monkeypatch.setattr(os, "fdopen", failing_fdopen)
    code, _out, err = compile_to(capsys, spec, target)
    assert code == exit_code
    if exit_code == 2:
        assert "cannot write" in err and "No space left" in err
    assert partial, "the write never started: the test proves nothing"
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["model.py", "spec.yaml"]


@pytest.mark.parametrize("step", ["fsync", "chmod", "replace"])
def test_a_failure_at_any_later_step_loses_nothing(step, spec, tmp_path, capsys, monkeypatch):
    target = tmp_path / "model.py"
    assert compile_to(capsys, spec, target)[0] == 0
    before = target.read_bytes()
    spec.write_text(OTHER)

    def fail(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, step, fail)
    code, _out, err = compile_to(capsys, spec, target)
    assert code == 2 and "cannot write" in err
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_an_error_while_emitting_never_touches_the_target(spec, tmp_path, capsys, monkeypatch):
    target = tmp_path / "model.py"
    target.write_text("old generated\n")
    target.write_text(files.GENERATED_MARKER + " by hand, for the test\n")
    before = target.read_bytes()

    def broken_emit(*args, **kwargs):
        raise ImportError("no torch here")

    monkeypatch.setattr(nnspec, "emit", broken_emit)
    code, _out, err = compile_to(capsys, spec, target)
    assert code == 2 and "no torch here" in err
    assert target.read_bytes() == before and leftovers(tmp_path) == []


def test_a_spec_with_errors_never_touches_the_output_path(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.replace("out: 3", "out: 0"))
    target = tmp_path / "model.py"
    for existing in (None, "generated", "user"):
        if existing == "generated":
            target.write_text(files.GENERATED_MARKER + " 0.0 from \"x\".\nold\n")
        elif existing == "user":
            target.write_text(USER_CODE)
        before = target.read_bytes() if target.exists() else None
        mtime = target.stat().st_mtime_ns if target.exists() else None
        code, _out, err = compile_to(capsys, bad, target, "--force")
        assert code == 1 and "NS004" in err
        assert (target.read_bytes() if target.exists() else None) == before
        assert (target.stat().st_mtime_ns if target.exists() else None) == mtime
        assert leftovers(tmp_path) == []


@pytest.mark.parametrize("content", [
    USER_CODE,
    "",  # an empty file is the user's too
    "import torch\n# Generated by nnspec 0.1.0 from \"x.yaml\" (a comment that mentions the marker)\n",
    " # Generated by nnspec 0.1.0 from \"x.yaml\"\n",
    "# Generated by nnspecial tooling\n",
])
def test_a_file_nnspec_did_not_generate_is_kept_without_force(content, spec, tmp_path, capsys):
    target = tmp_path / "model.py"
    target.write_text(content)
    target.chmod(0o640)
    code, _out, err = compile_to(capsys, spec, target)
    assert code == 2 and "--force" in err and "not generated by nnspec" in err
    assert target.read_text() == content
    assert leftovers(tmp_path) == []
    code, _out, err = compile_to(capsys, spec, target, "--force")
    assert code == 0, err
    assert target.read_text().startswith(files.GENERATED_MARKER)
    assert target.stat().st_mode & 0o777 == 0o640, "the file's permissions are kept"


@pytest.mark.parametrize("kind", ["torch", "keras"])
def test_a_file_nnspec_generated_is_replaced(kind, spec, tmp_path, capsys):
    target = tmp_path / "model.py"
    assert compile_to(capsys, spec, target, kind=kind)[0] == 0
    spec.write_text(OTHER)
    code, _out, err = compile_to(capsys, spec, target, kind=kind)
    assert code == 0, err
    assert target.read_text(encoding="utf-8") == nnspec.emit(nnspec.load(spec), kind)
    other = "torch" if kind == "keras" else "keras"
    assert compile_to(capsys, spec, target, kind=other)[0] == 0  # a generated file of the other target, too
    assert leftovers(tmp_path) == []


def test_output_at_a_directory_is_refused(spec, tmp_path, capsys):
    directory = tmp_path / "models"
    directory.mkdir()
    (directory / "keep.py").write_text("x = 1\n")
    targets = [directory, str(directory) + os.sep]
    if hasattr(os, "symlink"):
        os.symlink(directory, tmp_path / "link")
        targets.append(tmp_path / "link")
    for target in targets:
        for force in ((), ("--force",)):
            code, _out, err = compile_to(capsys, spec, target, *force)
            assert code == 2 and "directory" in err, (target, force, err)
    assert os.listdir(directory) == ["keep.py"] and leftovers(tmp_path) == []


def test_output_at_a_fifo_is_refused_without_blocking(spec, tmp_path, capsys):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    fifo = tmp_path / "model.py"
    os.mkfifo(fifo)
    code, _out, err = compile_to(capsys, spec, fifo, "--force")
    assert code == 2 and "not a regular file" in err
    assert leftovers(tmp_path) == []


def test_output_in_a_missing_directory_fails_cleanly(spec, tmp_path, capsys):
    code, _out, err = compile_to(capsys, spec, tmp_path / "nowhere" / "model.py")
    assert code == 2 and "cannot write" in err
    assert not (tmp_path / "nowhere").exists()


def test_the_spec_itself_is_never_overwritten_without_force(spec, tmp_path, capsys):
    code, _out, err = compile_to(capsys, spec, spec)
    assert code == 2 and "--force" in err
    assert spec.read_text() == SPEC
