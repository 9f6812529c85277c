"""Colours and text helpers shared by the SVG and HTML writers."""

from __future__ import annotations

FAMILY_COLOURS = {
    "constant": "#8d6e63",
    "identity": "#8e44ad",
    "uniform": "#00897b",
    "normal": "#1e88e5",
    "variance-scaling": "#43a047",
    "orthogonal": "#fb8c00",
    "sparse": "#d81b60",
    "other": "#607d8b",
}
SEVERITY_COLOURS = {"error": "#d32f2f", "warning": "#e6a100", "info": "#1976d2"}
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
MONO = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace"


def esc(text: object) -> str:
    """Escape for XML/HTML text and double-quoted attributes."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("\n", "&#10;"))


def clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def worst(findings: list) -> str:
    for sev in ("error", "warning", "info"):
        if any(d.severity == sev for d in findings):
            return sev
    return ""
