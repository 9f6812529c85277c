"""The Python API: load, loads, check, SpecError, Diagnostic."""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path

import pytest

import nnspec
from nnspec import Diagnostic, Spec, SpecError

ROOT = Path(__file__).parent.parent
GOOD = "nnspec: 1\nname: good\ninput: [8]\nlayers:\n  - linear: {out: 4, init: {weight: xavier_uniform}}\n"
BAD = "nnspec: 1\nname: bad\ninput: [8]\nlayers:\n  - linear: {out: 4, stirde: 1}\n  - lienar: {out: 2}\n"
WARN = ("nnspec: 1\nname: warn\ninput: [8]\ninit:\n  conv2d: {weight: xavier_uniform}\nlayers:\n"
        "  - linear: {out: 4, init: {weight: xavier_uniform}}\n")


def test_load_and_loads(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    for spec in (nnspec.load(path), nnspec.load(str(path)), nnspec.loads(GOOD, filename=str(path))):
        assert isinstance(spec, Spec)
        assert spec.name == "good"
        assert spec.input_shape == (8,) and spec.output_shape == (4,)
        assert spec.params == 8 * 4 + 4
        assert spec.diagnostics == []
        assert spec.file == str(path)


def test_loads_default_filename():
    with pytest.raises(SpecError) as info:
        nnspec.loads(BAD)
    assert {d.file for d in info.value.diagnostics} == {"<string>"}


def test_errors_raise_spec_error_with_every_diagnostic(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    with pytest.raises(SpecError) as info:
        nnspec.load(path)
    diags = info.value.diagnostics
    assert [(d.code, d.line) for d in diags] == [("NS003", 5), ("NS008", 6)]
    assert all(isinstance(d, Diagnostic) for d in diags)
    text = str(info.value)
    assert "2 error(s)" in text and f"{path}:5:22: NS003 error" in text
    assert isinstance(info.value, Exception)


def test_warnings_do_not_raise():
    spec = nnspec.loads(WARN)
    assert [(d.code, d.severity) for d in spec.diagnostics] == [("NS212", "warning")]


def test_diagnostic_attributes(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    d = nnspec.check(path)[0]
    assert (d.file, d.line, d.column, d.end_line, d.end_column) == (str(path), 5, 22, 5, 28)
    assert (d.code, d.severity) == ("NS003", "error")
    assert d.message == "unknown key `stirde` in `linear`"
    assert isinstance(d.hint, str) and d.hint
    assert [f.name for f in dataclasses.fields(Diagnostic)] == ["file", "line", "column", "end_line", "end_column",
                                                                "code", "severity", "message", "hint"]
    assert d.severity in ("error", "warning", "info")
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.line = 3


def test_check_returns_every_diagnostic(tmp_path):
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "warn.yaml").write_text(WARN)
    assert nnspec.check(tmp_path / "good.yaml") == []
    assert [d.code for d in nnspec.check(tmp_path / "warn.yaml")] == ["NS212"]


def _never_raises(path) -> list:
    diags = nnspec.check(path)
    assert isinstance(diags, list) and diags
    for d in diags:
        assert isinstance(d, Diagnostic)
        assert d.line >= 1 and d.column >= 1
        assert d.code and d.severity == "error"
        assert "internal error" not in d.message, d.message
    return diags


@pytest.mark.parametrize("content", [
    b"", b"\x00\x01\x02", bytes(range(256)), b"\xff\xfe\x00n", b"{{{{", b"]]]", b"- - - -", b"nnspec: 1\n",
    b"nnspec: 1\nname: m\ninput: [8]\nlayers:\n  - linear: {out: 4}\n  - linear: {out: $x}\n",
    b"nnspec: 1\nname: m\ninput: [8]\nblocks: 5\nlayers: [relu]\n",
    b"nnspec: 1\nname: m\ninput: [8]\nblocks:\n  b: 5\nlayers: [b]\n",
    b"nnspec: 1\nname: m\ninput: [8]\nblocks:\n  b: {args: [1], layers: [relu]}\nlayers: [b]\n",
    b"nnspec: 1\nname: m\ninput: [8]\ninit: [1]\nlayers: [relu]\n",
    b"nnspec: 1\nname: m\ninput: [8]\ninit: {weight: {zeros: 5}}\nlayers: [relu]\n",
    b"nnspec: 1\nname: m\ninput: [8]\nlayers: [{residual: {branch: 5}}]\n",
    b"nnspec: 1\nname: m\ninput: [8]\nlayers: [{residual: {shortcut: [relu]}}]\n",
    b"nnspec: 1\nname: m\ninput: [8]\nlayers: [{linear: {out: 4, init: {weight: [1]}}}]\n",
    b"nnspec: 1\nname: m\ninput: [8]\nlayers: [{linear: {out: 4, allow: {NS201: ''}}}]\n",
    b"nnspec: 1\nname: m\ninput: [8]\nlayers: [{linear: {out: 1" + b"0" * 5000 + b"}}]\n",
    b"nnspec: [1]\n", b"nnspec: .nan\n", b"nnspec: 1\nname: [m]\n",
    b"nnspec: 1\n? [a]\n: 1\n", b"nnspec: 1\n1: 2\ntrue: 3\nnull: 4\n",
])
def test_check_never_raises(tmp_path, content):
    path = tmp_path / "spec.yaml"
    path.write_bytes(content)
    _never_raises(path)


@pytest.mark.parametrize("content", [
    b"nnspec: 1\nname: m\ninput: [8]\nlayers: [{linear: {out: 99999999999999999999999999999999999}}, flatten]\n",
    b"nnspec: 1\nname: m\ninput: [99999999999999999999, 99999999999999999999]\nlayers: [flatten, {linear: {out: 2}}]\n",
])
def test_sizes_beyond_a_c_int_are_refused(tmp_path, content):
    """No framework takes a size beyond 2**31 - 1 on every path: NS004 at check time, not a crash in build."""
    path = tmp_path / "spec.yaml"
    path.write_bytes(content)
    diags = nnspec.check(path)
    assert {(d.code, d.severity) for d in diags} == {("NS004", "error")}
    assert all("less than or equal to 2147483647" in d.message for d in diags)


@pytest.mark.parametrize("content", [
    b"nnspec: 1\nname: m\ninput: [2147483647]\nlayers: [{linear: {out: 1073741823}}, flatten]\n",
    b"nnspec: 1\nname: m\ninput: [1073741823, 1073741823]\nlayers: [flatten, {linear: {out: 2}}]\n",
])
def test_huge_sizes_are_checked_without_overflow(tmp_path, content):
    """Absurd sizes are warnings about the build and activation budgets (nothing is allocated), never an
    overflow."""
    path = tmp_path / "spec.yaml"
    path.write_bytes(content)
    diags = nnspec.check(path)
    assert {(d.code, d.severity) for d in diags} == {("NS005", "warning")} and len(diags) == 2, diags
    assert any("parameters" in d.message for d in diags) and any("activations" in d.message for d in diags)
    assert nnspec.load(path).params > 2**60


def test_check_on_a_directory_and_a_missing_path(tmp_path):
    assert [d.code for d in _never_raises(tmp_path)] == ["NS001"]
    assert [d.code for d in _never_raises(tmp_path / "missing.yaml")] == ["NS001"]
    link = tmp_path / "dangling.yaml"
    if hasattr(os, "symlink"):
        os.symlink(tmp_path / "nowhere", link)
        assert [d.code for d in _never_raises(link)] == ["NS001"]


def test_mutated_examples_never_raise(tmp_path):
    """Flip bytes, delete lines, swap values in every example: always located diagnostics, never a traceback."""
    rng = random.Random(0)
    sources = sorted((ROOT / "examples").glob("*.yaml"))
    path = tmp_path / "mutant.yaml"
    for source in sources:
        original = source.read_bytes()
        lines = original.split(b"\n")
        for _ in range(40):
            mutant = bytearray(original)
            choice = rng.randrange(4)
            if choice == 0:
                for _ in range(3):
                    mutant[rng.randrange(len(mutant))] = rng.randrange(256)
            elif choice == 1:
                kept = [ln for ln in lines if rng.random() > 0.15]
                mutant = bytearray(b"\n".join(kept))
            elif choice == 2:
                swapped = [ln.replace(b": 3", rng.choice([b": -1", b": 0", b": '3'", b": 3.5", b": true", b": []",
                                                          b": {}", b": .inf", b": $x", b": ~"])) for ln in lines]
                mutant = bytearray(b"\n".join(swapped))
            else:
                i = rng.randrange(len(lines))
                mutant = bytearray(b"\n".join(lines[:i] + [lines[i]] + lines[i:]))
            path.write_bytes(bytes(mutant))
            for d in nnspec.check(path):
                assert d.line >= 1 and d.column >= 1
                assert "internal error" not in d.message, (source.name, bytes(mutant), d.message)


def test_public_names():
    for name in ("load", "loads", "check", "SpecError", "Diagnostic", "Spec"):
        assert hasattr(nnspec, name)
    assert issubclass(nnspec.SpecError, Exception)
