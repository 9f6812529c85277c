"""Mutation fuzzing of `check` (a bounded, deterministic run) and the inputs it once failed on.

The longer run is a command: `python tests/fuzz_mutations.py --cases 20000 --seconds 600 --save`.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from fuzz_mutations import LIMIT_S, MUTATIONS, REGRESSIONS, check_case, mutate, run, seeds

REGRESSION_FILES = sorted(REGRESSIONS.glob("*.yaml"))


def test_bounded_fuzz_run():
    """2000 mutated examples and fixtures: located diagnostics only, never a traceback, each within a second."""
    report = run(cases=2000, seed=2026, generated=4)
    assert report.cases == 2000
    details = "\n".join(f"case {case} ({name}: {', '.join(applied)}): {problems}"
                        for case, name, applied, _data, problems in report.failures)
    assert not report.failures, f"{report.summary()}\n{details}"
    assert report.slowest[0] <= LIMIT_S


def test_there_are_regression_fixtures():
    assert REGRESSION_FILES, f"no fuzz regressions in {REGRESSIONS}"


@pytest.mark.parametrize("path", REGRESSION_FILES, ids=[p.name for p in REGRESSION_FILES])
def test_fuzz_regression(path: Path, tmp_path):
    """Every input that once crashed `check` (or took too long) now gets located diagnostics, in time."""
    outcome = check_case(path.read_bytes(), str(tmp_path / path.name))
    assert outcome.ok, outcome.problems


def test_every_mutation_changes_its_input():
    """Each mutation operator does something on a real spec (a no-op operator would fuzz nothing)."""
    corpus = seeds(generated=0)
    contents = [c for _, c in corpus]
    source = next(c for name, c in corpus if name.endswith("cifar_resnet.yaml"))
    rng = random.Random(0)
    for name, mutation in MUTATIONS.items():
        assert any(mutation(rng, source, contents) != source for _ in range(10)), name
    data, applied = mutate(rng, source, contents)
    assert 1 <= len(applied) <= 4 and isinstance(data, bytes)


def test_the_oracle_catches_broken_promises(tmp_path, monkeypatch):
    """The fuzzer's checks can fail: an internal error, a diagnostic without a line, a slow check."""
    import nnspec
    from nnspec.diagnostics import Diagnostic

    path = str(tmp_path / "case.yaml")
    good = b"nnspec: 1\nname: m\ninput: [4]\nlayers: [relu]\n"
    assert check_case(good, path).ok

    def crashing(_path):
        raise RuntimeError("boom")

    monkeypatch.setattr(nnspec, "check", crashing)
    assert not check_case(good, path).ok
    monkeypatch.setattr(nnspec, "check", lambda p: [Diagnostic(p, 0, 1, 0, 1, "NS001", "error", "x")])
    assert any("no location" in p for p in check_case(good, path).problems)
    monkeypatch.setattr(nnspec, "check", lambda p: [Diagnostic(p, 9, 1, 9, 1, "NS001", "error", "x")])
    assert any("past the end" in p for p in check_case(good, path).problems)
    monkeypatch.setattr(nnspec, "check", lambda p: [Diagnostic(p, 1, 1, 1, 1, "NS001", "error",
                                                                "internal error while checking this file: boom")])
    assert any(p.startswith("crash") for p in check_case(good, path).problems)
    assert any(p.startswith("slow") for p in check_case(good, path, limit_s=-1.0).problems)
