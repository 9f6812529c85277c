"""The pipeline up to the passes: text -> Document -> SpecModel -> Graph -> diagnostics.

Nothing here imports a framework.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from pydantic import ValidationError

from nnspec.compiler.diagnostics import Diagnostic, Span
from nnspec.compiler.ir import Graph
from nnspec.compiler.lower import Lowerer
from nnspec.schema.errors import pydantic_diagnostics
from nnspec.schema.loader import Document, LoadError, decode, load_document
from nnspec.schema.models import SpecModel

SUPPORTED_VERSIONS = (1,)


@dataclass
class Spec:
    """A loaded, validated and lowered spec."""

    file: str
    doc: Document
    model: SpecModel
    graph: Graph
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def seed(self) -> Optional[int]:
        return self.model.seed

    @property
    def input_shape(self) -> tuple:
        return self.graph.input_shape

    @property
    def output_shape(self) -> tuple:
        return self.graph.output_shape

    @property
    def params(self) -> int:
        return self.graph.params

    def __repr__(self) -> str:
        return f"<nnspec.Spec {self.name!r} from {self.file!r}: {self.params:,} parameters>"


def analyse_text(text: str, filename: str) -> tuple[Optional[Spec], list[Diagnostic]]:
    """Run every check-time stage; return the Spec (None when it could not be lowered) and all diagnostics."""
    try:
        doc = load_document(filename, text)
    except LoadError as exc:
        return None, [exc.diagnostic]
    return analyse_document(doc)


def analyse_bytes(raw: bytes, filename: str) -> tuple[Optional[Spec], list[Diagnostic]]:
    try:
        text = decode(filename, raw)
    except LoadError as exc:
        return None, [exc.diagnostic]
    return analyse_text(text, filename)


def analyse_file(path: str) -> tuple[Optional[Spec], list[Diagnostic]]:
    try:
        size = os.path.getsize(path)
        from nnspec.schema.loader import MAX_FILE_BYTES

        if size > MAX_FILE_BYTES:
            return None, [Diagnostic.at(Span(path, 1, 1, 1, 1), "NS005",
                                        f"file is {size} bytes; the limit is {MAX_FILE_BYTES} bytes")]
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except IsADirectoryError:
        return None, [Diagnostic.at(Span(path, 1, 1, 1, 1), "NS001", "this path is a directory, not a file")]
    except FileNotFoundError:
        return None, [Diagnostic.at(Span(path, 1, 1, 1, 1), "NS001", "no such file (or a broken symbolic link)")]
    except PermissionError:
        return None, [Diagnostic.at(Span(path, 1, 1, 1, 1), "NS001", "the file cannot be read: permission denied")]
    except OSError as exc:
        return None, [Diagnostic.at(Span(path, 1, 1, 1, 1), "NS001", f"the file cannot be read: {exc.strerror}")]
    except ValueError:  # os refuses a path with a NUL character before asking the file system
        return None, [Diagnostic.at(Span(path, 1, 1, 1, 1), "NS001", "the path contains a NUL character; no file "
                                                                     "can have this name")]
    return analyse_bytes(raw, path)


def analyse_document(doc: Document) -> tuple[Optional[Spec], list[Diagnostic]]:
    data = doc.data
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a scalar"
        return None, [Diagnostic.at(doc.span(()), "NS010",
                                    f"not an nnspec spec: the top level is {kind}, not a mapping",
                                    "a spec is a mapping that starts with `nnspec: 1`")]
    if "nnspec" not in data:
        return None, [Diagnostic.at(doc.span(()), "NS010", "not an nnspec spec: there is no top-level `nnspec` key",
                                    "add `nnspec: 1` as the first line")]
    version = data["nnspec"]
    if isinstance(version, bool) or not isinstance(version, int) or version not in SUPPORTED_VERSIONS:
        return None, [Diagnostic.at(doc.span(("nnspec",)), "NS011",
                                    f"unsupported format version {version!r}; this nnspec reads version "
                                    + ", ".join(map(str, SUPPORTED_VERSIONS)), "write `nnspec: 1`")]
    try:
        model = SpecModel.model_validate(data)
    except ValidationError as exc:
        diags = pydantic_diagnostics(exc, data, doc, (), SpecModel.model_fields, what="the spec")
        return None, sorted(diags, key=Diagnostic.sort_key)
    lowerer = Lowerer(doc, model)
    graph = lowerer.lower()
    diags = lowerer.merged_diagnostics()
    if graph is not None and not any(d.is_error for d in diags):
        from nnspec.compiler.budget import budget_diagnostics
        from nnspec.compiler.safety import run_rules
        from nnspec.compiler.targets import target_rules

        diags.extend(target_rules(graph, doc))
        diags.extend(budget_diagnostics(graph, doc))
        diags.extend(run_rules(graph, doc))
    diags = sorted(diags, key=Diagnostic.sort_key)
    if graph is None:
        return None, diags
    return Spec(doc.file, doc, model, graph, [d for d in diags if not d.is_error]), diags
