"""The one diagnostic type, its source span, and the error raised by the API."""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Span:
    """A 1-based, end-inclusive-start / end-exclusive range in one file."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def at(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Diagnostic:
    file: str
    line: int
    column: int
    end_line: int
    end_column: int
    code: str
    severity: str
    message: str
    hint: str = ""

    @classmethod
    def at(cls, span: Span, code: str, message: str, hint: str = "", severity: str | None = None) -> Diagnostic:
        from nnspec.codes import CODES

        sev = severity or CODES[code].severity
        return cls(span.file, span.line, span.column, span.end_line, span.end_column, code, sev, message, hint)

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
        }

    def concise(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.code} {self.severity}: {self.message}"

    def sort_key(self) -> tuple:
        return (self.file, self.line, self.column, self.code, self.message)


class SpecError(Exception):
    """Raised by `nnspec.load` / `nnspec.loads` when a spec has errors."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        errors = [d for d in self.diagnostics if d.is_error]
        head = "\n".join(d.concise() for d in errors[:20])
        more = f"\n... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"{len(errors)} error(s) in spec:\n{head}{more}")
