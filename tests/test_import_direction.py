"""The package's imports go one way: front -> compiler -> schema -> vocabulary -> diagnostics.

Read from the source with `ast`, so a forbidden import fails here even when it
sits inside a function (lazy imports count too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "nnspec"
FRONT = ("nnspec", "nnspec.cli", "nnspec.formats")  # the package front: `nnspec/__init__.py`, the CLI, output formats
FOUNDATION = ("nnspec.diagnostics", "nnspec.codes", "nnspec.names", "nnspec.version")
IMPORTING = "nnspec.importing"  # `nnspec import`: beside the front, reads the compiler; nothing below reads it

# (importer prefix, forbidden prefixes, why); "nnspec" alone means the package's __init__, not its submodules.
RULES = (
    ("nnspec.schema", ("nnspec.compiler", IMPORTING), "schema/ is below compiler/: it never imports it"),
    ("nnspec.compiler", FRONT + (IMPORTING,), "compiler/ (backends included) never reaches up to the package front"),
    ("nnspec.compiler.backends", ("nnspec.schema",), "backends read the IR and the vocabulary, never schema/"),
    ("nnspec.vocabulary", ("nnspec.schema", "nnspec.compiler", IMPORTING) + FRONT,
     "the vocabulary is read by schema/ and compiler/ and reads neither"),
    (IMPORTING, ("nnspec.cli", "nnspec.formats"), "importing/ is called by the command line, never the reverse"),
) + tuple((module, ("nnspec.schema", "nnspec.compiler", "nnspec.vocabulary", IMPORTING) + FRONT,
           "diagnostics, codes and names are at the root, used by all") for module in FOUNDATION)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (PACKAGE.parent / relative).with_suffix(".py").exists() or (PACKAGE.parent / relative).is_dir()


def imports_of(module: str, source: str, is_package: bool = False) -> set[str]:
    """Every nnspec module `source` imports, `from nnspec import x` naming `nnspec.x` only when x is a module."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "nnspec")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "nnspec":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if is_package_module(sub) else base)
    return found


def violations(importer: str, imported: set[str]) -> list[str]:
    out = []
    for prefix, forbidden, why in RULES:
        if not (importer == prefix or importer.startswith(prefix + ".")):
            continue
        for target in sorted(imported):
            for bad in forbidden:
                hit = target == bad if bad == "nnspec" else target == bad or target.startswith(bad + ".")
                if hit:
                    out.append(f"{importer} imports {target}: {why}")
    return out


def all_modules() -> list[tuple[str, Path]]:
    return sorted((module_name(p), p) for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("name,path", all_modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_go_one_way(name, path):
    imported = imports_of(name, path.read_text(), path.name == "__init__.py")
    assert violations(name, imported) == []


# -- the rule itself fails when a forbidden import comes back ---------------------------------------------


@pytest.mark.parametrize("importer,source", [
    ("nnspec.schema.loader", "from nnspec.compiler.ir import Graph"),
    ("nnspec.schema.errors", "def f():\n    from nnspec.compiler import pipeline"),
    ("nnspec.compiler.pipeline", "from nnspec import formats"),
    ("nnspec.compiler.backends.torch_backend", "def emit():\n    from nnspec import __version__"),
    ("nnspec.compiler.backends.keras_backend", "from nnspec.schema.errors import pydantic_diagnostics"),
    ("nnspec.compiler.backends.torch_table", "import nnspec.cli"),
    ("nnspec.vocabulary.kinds", "from nnspec.schema import models"),
    ("nnspec.diagnostics", "from nnspec.compiler.ir import Graph"),
    ("nnspec.compiler.safety.flow", "from ... import formats"),
    ("nnspec.compiler.pipeline", "from nnspec.importing import from_torch"),
    ("nnspec.importing.compose", "from nnspec import cli"),
])
def test_a_forbidden_import_is_found(importer, source):
    assert violations(importer, imports_of(importer, source))


@pytest.mark.parametrize("importer,source", [
    ("nnspec.compiler.pipeline", "from nnspec.schema.loader import Document"),
    ("nnspec.compiler.backends.torch_backend", "from nnspec.version import __version__"),
    ("nnspec.compiler.backends.torch_backend", "from nnspec.names import class_name"),
    ("nnspec.schema.jsonschema", "from nnspec.vocabulary.kinds import KINDS"),
    ("nnspec.cli", "from nnspec.compiler.pipeline import analyse_file"),
    ("nnspec.importing.compose", "from nnspec.compiler.pipeline import analyse_text"),
])
def test_an_allowed_import_passes(importer, source):
    assert violations(importer, imports_of(importer, source)) == []
