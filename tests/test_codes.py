"""The code table: documentation of every rule, and a fixture for every code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nnspec.codes import CODES, FAMILIES, lookup
from nnspec.diagnostics import SEVERITIES

FIXTURES = Path(__file__).parent / "fixtures"
NNSPEC = Path(__file__).parent.parent / "nnspec"

# Codes that nothing in format version 1 can trigger: documented, but no fixture can exist.
UNTRIGGERABLE: set[str] = set()


@pytest.mark.parametrize("code", list(CODES))
def test_every_code_is_fully_documented(code):
    c = CODES[code]
    assert c.code == code and re.fullmatch(r"NS\d{3}", code)
    assert code[:3] in FAMILIES
    assert c.severity in SEVERITIES
    for section in ("name", "summary", "what", "why", "example", "use_instead"):
        assert getattr(c, section).strip(), f"{code} has an empty `{section}`"
    assert re.fullmatch(r"[a-z0-9-]+", c.name)
    rendered = c.render()
    for heading in ("## What it does", "## Why is this bad", "## Example", "## Use instead"):
        assert rendered.count(heading) == 1
    assert lookup(code.lower()) is c


def test_names_are_unique():
    names = [c.name for c in CODES.values()]
    assert len(names) == len(set(names))


def _emitted_anywhere(code: str) -> bool:
    """Whether some module other than the code table emits `code`."""
    for path in NNSPEC.rglob("*.py"):
        if path.name != "codes.py" and f'"{code}"' in path.read_text(encoding="utf-8"):
            return True
    return False


@pytest.mark.parametrize("code", list(CODES))
def test_every_code_has_a_fixture(code):
    fixtures = list(FIXTURES.glob(f"{code}_*.yaml"))
    if code in UNTRIGGERABLE:
        assert not fixtures, f"{code} has a fixture: take it out of UNTRIGGERABLE"
        assert not _emitted_anywhere(code), f"{code} is emitted somewhere: write its fixture"
        return
    if not fixtures and code.startswith("NS2"):
        # NS2xx fixtures come with the initializer-safety rules (tests/test_safety.py); until they have all
        # landed a missing one is reported here as an expected failure. Remove this once they have.
        pytest.xfail(f"no tests/fixtures/{code}_*.yaml yet")
    assert fixtures, f"no tests/fixtures/{code}_*.yaml"


@pytest.mark.parametrize("code", list(CODES))
def test_every_code_is_emitted_by_some_module(code):
    assert _emitted_anywhere(code) or code in UNTRIGGERABLE


def test_fixture_names_are_known_codes():
    for path in FIXTURES.glob("NS*.yaml"):
        assert path.name.split("_", 1)[0] in CODES, path.name


def test_readme_rule_table_is_current():
    import pathlib

    from nnspec.codes import render_readme_rules_table

    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    start = readme.index("<!-- rule table: generated")
    end = readme.index("<!-- end of rule table -->")
    table = readme[readme.index("\n", start) + 1:end]
    assert table == render_readme_rules_table(), "regenerate the README rule table from the code table"
