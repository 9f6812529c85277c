"""Every NS0xx, NS1xx and NS3xx fixture gives exactly the diagnostics its header announces.

A fixture is named after its code (`NS003_unknown_key.yaml`: the code is read from the name) and starts
with comment lines:

    # expect: LINE:COL [TEXT]   one per expected diagnostic; TEXT is what the source holds at that position
    # message: TEXT              every diagnostic's message contains TEXT
    # hint: TEXT                 every diagnostic's hint contains TEXT

The test asserts that the file yields exactly the expected (code, line, column) set, nothing more.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import nnspec
from nnspec.codes import CODES
from nnspec.compiler.pipeline import analyse_file

FIXTURES = Path(__file__).parent / "fixtures"
STRUCTURE_FIXTURES = sorted(p for p in FIXTURES.glob("NS[013]*.yaml"))  # NS2xx: tests/test_safety.py
HEADER = re.compile(r"^# (expect|message|hint): ?(.*)$")


def _header(path: Path) -> dict:
    text = path.read_bytes().decode("latin-1")  # the header is ASCII; some fixtures are not UTF-8 on purpose
    out: dict = {"expect": [], "message": [], "hint": []}
    for line in text.splitlines():
        match = HEADER.match(line)
        if match:
            out[match.group(1)].append(match.group(2))
    return out


def _code(path: Path) -> str:
    return path.name.split("_", 1)[0]


def test_there_are_structure_fixtures():
    assert len(STRUCTURE_FIXTURES) >= 30


@pytest.mark.parametrize("path", STRUCTURE_FIXTURES, ids=lambda p: p.name)
def test_fixture(path: Path):
    code = _code(path)
    assert code in CODES, f"{path.name} is not named after a known code"
    header = _header(path)
    assert header["expect"], f"{path.name} has no `# expect:` line"
    lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    expected = set()
    for entry in header["expect"]:
        position, _, token = entry.partition(" ")
        line, col = (int(x) for x in position.split(":"))
        expected.add((code, line, col))
        if token:
            assert lines[line - 1][col - 1:].startswith(token), (
                f"{path.name}: the fixture's own position {line}:{col} does not hold {token!r}")
    _, diags = analyse_file(str(path))
    got = {(d.code, d.line, d.column) for d in diags}
    assert got == expected, "\n".join(d.concise() for d in diags)
    assert len(diags) == len(expected), "each problem is reported once:\n" + "\n".join(d.concise() for d in diags)
    for d in diags:
        assert d.file == str(path)
        assert d.severity == CODES[code].severity
        assert d.end_line >= d.line and (d.end_line > d.line or d.end_column >= d.column)
        for text in header["message"]:
            assert text in d.message, d.message
        for text in header["hint"]:
            assert text in d.hint, d.hint


@pytest.mark.parametrize("path", STRUCTURE_FIXTURES, ids=lambda p: p.name)
def test_fixture_through_the_api(path: Path):
    """`nnspec.check` gives the same diagnostics; `nnspec.load` raises them."""
    diags = nnspec.check(path)
    assert {d.code for d in diags} == {_code(path)}
    if CODES[_code(path)].severity != "error":  # a warning does not stop loading
        assert nnspec.load(path).diagnostics == diags
        return
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.load(path)
    assert info.value.diagnostics == diags


def test_every_structure_code_has_a_fixture():
    have = {_code(p) for p in STRUCTURE_FIXTURES}
    wanted = {c for c in CODES if c.startswith(("NS0", "NS1", "NS3"))}
    assert wanted <= have, f"codes without a fixture: {sorted(wanted - have)}"


def test_block_body_problem_names_every_call_once():
    diags = nnspec.check(FIXTURES / "NS003_block_body.yaml")
    assert len(diags) == 1
    message = diags[0].message
    for call in ("`unit_1` (line 14)", "`unit_2` (line 15)", "`wide` (line 16)"):
        assert message.count(call) == 1, message


def test_block_body_problem_with_different_values_names_each_call():
    """A problem whose message depends on the call's value is reported per distinct message, at the body."""
    text = """nnspec: 1
name: m
input: [16]
blocks:
  drop:
    args: {p: required}
    layers:
      - dropout: {p: $p}
layers:
  - drop: {p: 1.5}
  - drop: {p: 1.5}
  - drop: {p: 2.5}
"""
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.loads(text)
    diags = info.value.diagnostics
    assert [(d.code, d.line, d.column) for d in diags] == [("NS004", 8, 22), ("NS004", 8, 22)]
    by_value = {("1.5" in d.message): d.message for d in diags}
    assert "`drop_1` (line 10), `drop_2` (line 11)" in by_value[True]
    assert "`drop_3` (line 12)" in by_value[False]


def test_problems_after_a_failed_item_are_still_reported():
    """One run reports every independent problem, not only the first."""
    text = """nnspec: 1
name: m
input: [16]
layers:
  - lineer: {out: 8}
  - linear: {out: 8, stirde: 1}
  - dropout: {p: 7}
  - relu: {name: forward}
"""
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.loads(text)
    assert [(d.code, d.line) for d in info.value.diagnostics] == [
        ("NS008", 5), ("NS003", 6), ("NS004", 7), ("NS007", 8)]
