"""Collecting the lowering passes' diagnostics, merged per block-body position.

A problem inside a block body is found once per call of the block; it is
reported once, at the body line, naming every call it applies to.
"""

from __future__ import annotations

from nnspec.diagnostics import Diagnostic
from nnspec.schema.loader import Document

MAX_CALLS_NAMED = 5


class Abort(Exception):
    """Stop lowering the current item; its diagnostics are already recorded."""


class Recorder:
    """The diagnostics of one lowering, each with the block calls (path, span) it was found under."""

    def __init__(self, doc: Document):
        self.doc = doc
        self.entries: list[tuple[Diagnostic, tuple]] = []

    def report(self, diag: Diagnostic, calls: tuple = ()) -> None:
        self.entries.append((diag, calls))

    def error(self, path: tuple, code: str, message: str, hint: str = "", key: bool = False,
              calls: tuple = ()) -> None:
        span = self.doc.key_span(path) if key else self.doc.span(path)
        self.report(Diagnostic.at(span, code, message, hint), calls)

    def merged(self) -> list[Diagnostic]:
        """One diagnostic per body position, naming every block call it applies to."""
        merged: dict[tuple, tuple[Diagnostic, list]] = {}
        for diag, calls in self.entries:
            key = (diag.file, diag.line, diag.column, diag.code, diag.message)
            entry = merged.setdefault(key, (diag, []))
            if calls:
                desc = f"`{calls[-1][0]}` (line {calls[-1][1].line})"
                if desc not in entry[1]:
                    entry[1].append(desc)
        out = []
        for diag, calls in merged.values():
            if calls:
                shown = ", ".join(calls[:MAX_CALLS_NAMED])
                if len(calls) > MAX_CALLS_NAMED:
                    shown += f" and {len(calls) - MAX_CALLS_NAMED} more"
                noun = "call" if len(calls) == 1 else "calls"
                diag = Diagnostic(diag.file, diag.line, diag.column, diag.end_line, diag.end_column, diag.code,
                                  diag.severity, f"{diag.message} (in block {noun} {shown})", diag.hint)
            out.append(diag)
        return out


class Scoped:
    """A recorder seen from inside a stack of block calls: what it reports names those calls."""

    def __init__(self, recorder: Recorder, calls: tuple):
        self.recorder, self.doc, self.calls = recorder, recorder.doc, calls

    def report(self, diag: Diagnostic) -> None:
        self.recorder.report(diag, self.calls)

    def error(self, path: tuple, code: str, message: str, hint: str = "", key: bool = False) -> None:
        self.recorder.error(path, code, message, hint, key, self.calls)
