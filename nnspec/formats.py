"""Rendering diagnostics for people and machines: full, concise, json, github, sarif, junit, gitlab."""

from __future__ import annotations

import json
import os
from collections import Counter

from nnspec.codes import CODES
from nnspec.diagnostics import Diagnostic

FORMATS = ("full", "concise", "json", "github", "sarif", "junit", "gitlab")


# control characters and line separators in user text (keys, names, file names) are printed as escapes, so a
# diagnostic is one line and no user text starts a line (CI logs read `::error::...` at a line start as a command)
_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(0x20), *range(0x7F, 0xA0)) if i != 0x09}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def _unsurrogate(text: str) -> str:
    """Undecodable bytes of a file name (surrogate escapes) as \\xNN, so the text can be written as UTF-8."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not a surrogate escape
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _one_line(text: str) -> str:
    if text.isprintable():
        return text
    return _unsurrogate(text).translate(_ESCAPES)


def _display_path(path: str) -> str:
    text = _one_line(path)
    return "./" + text if text.startswith(":") else text


def _concise(d: Diagnostic) -> str:
    return f"{_display_path(d.file)}:{d.line}:{d.column}: {d.code} {d.severity}: {_one_line(d.message)}"


def _relative_path(path: str) -> str | None:
    """`path` relative to the working directory with forward slashes, or None when it lies outside it."""
    absolute = os.path.abspath(path)
    try:
        rel = os.path.relpath(absolute, os.getcwd())
    except ValueError:  # another drive
        return None
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return None
    return rel.replace(os.sep, "/")


def _source_line(path: str, line: int, cache: dict) -> str:
    if path not in cache:
        try:
            with open(path, "rb") as fh:
                cache[path] = fh.read(4 * 1024 * 1024).decode("utf-8", "replace").splitlines()
        except OSError:
            cache[path] = []
    lines = cache[path]
    return lines[line - 1] if 0 < line <= len(lines) else ""


def render_full(diags: list[Diagnostic], sources: dict | None = None) -> str:
    cache: dict = dict(sources or {})
    out = []
    for d in diags:
        out.append(_concise(d))
        text = _source_line(d.file, d.line, cache).replace("\t", " ")
        if text:
            gutter = " " * len(str(d.line))
            width = max(1, (d.end_column - d.column) if d.end_line == d.line else len(text) - d.column + 1)
            width = min(width, max(1, len(text) - d.column + 1))
            out.append(f"{gutter} |")
            out.append(f"{d.line} | {text}")
            out.append(f"{gutter} | {' ' * (d.column - 1)}{'^' * width}")
        if d.hint:
            out.append(f"  = hint: {_one_line(d.hint)}")
        out.append("")
    return "\n".join(out)


def render_concise(diags: list[Diagnostic]) -> str:
    return "".join(_concise(d) + "\n" for d in diags)


def render_json(diags: list[Diagnostic]) -> str:
    return json.dumps([d.as_dict() for d in diags], indent=2) + "\n"


def _gh_data(text: str) -> str:
    return _unsurrogate(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(diags: list[Diagnostic]) -> str:
    level = {"error": "error", "warning": "warning", "info": "notice"}
    out = []
    for d in diags:
        path = _relative_path(d.file) or os.path.abspath(d.file)
        props = (f"file={_gh_prop(path)},line={d.line},col={d.column},endLine={d.end_line},"
                 f"endColumn={d.end_column},title={_gh_prop(d.code + ' ' + CODES[d.code].name)}")
        message = d.message + (f" (hint: {d.hint})" if d.hint else "")
        out.append(f"::{level[d.severity]} {props}::{_gh_data(message)}\n")
    return "".join(out)


STEP_SUMMARY_ROWS = 1000  # GitHub takes at most 1 MiB of summary per step


def _md_cell(text: str) -> str:
    """Text for a Markdown table cell: one line, no table or HTML syntax of its own."""
    return (_one_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("|", "\\|").replace("`", "\\`"))


def render_step_summary(diags: list[Diagnostic], nfiles: int) -> str:
    """Markdown for $GITHUB_STEP_SUMMARY: every finding in one table, since the annotations of a step stop
    at 10 errors and 10 warnings."""
    out = ["## nnspec check", "", summary(diags, nfiles), ""]
    if diags:
        out += ["| location | code | severity | message |", "|---|---|---|---|"]
        for d in diags[:STEP_SUMMARY_ROWS]:
            path = _relative_path(d.file) or os.path.abspath(d.file)
            message = d.message + (f" (hint: {d.hint})" if d.hint else "")
            out.append(f"| {_md_cell(f'{path}:{d.line}:{d.column}')} | {d.code} {CODES[d.code].name} | "
                       f"{d.severity} | {_md_cell(message)} |")
        if len(diags) > STEP_SUMMARY_ROWS:
            out += ["", f"... and {len(diags) - STEP_SUMMARY_ROWS} more; run `nnspec check` locally for all."]
        out.append("")
    return "\n".join(out) + "\n"


def write_step_summary(diags: list[Diagnostic], nfiles: int) -> None:
    """Append the Markdown summary to $GITHUB_STEP_SUMMARY when GitHub Actions sets it."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    try:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(render_step_summary(diags, nfiles))
    except OSError as exc:
        import sys

        print(f"nnspec: warning: cannot write the step summary {target}: {exc.strerror or exc}", file=sys.stderr)


GITLAB_SEVERITY = {"error": "major", "warning": "minor", "info": "info"}


def render_gitlab(diags: list[Diagnostic]) -> str:
    """A GitLab Code Quality report (a subset of the Code Climate format): a JSON array of findings with
    description, check_name, fingerprint, severity and location (path relative to the repository root,
    lines.begin). The fingerprint hashes the path, code and message (not the line, so a finding keeps it
    when lines above it move) and the occurrence number of that triple."""
    import hashlib

    seen: Counter = Counter()
    out = []
    for d in diags:
        path = _relative_path(d.file) or os.path.abspath(d.file)
        path = _unsurrogate(path)
        key = (path, d.code, d.message)
        seen[key] += 1
        digest = hashlib.sha256("\0".join([*key, str(seen[key])]).encode("utf-8", "surrogatepass")).hexdigest()
        out.append({
            "description": f"{d.code} {_unsurrogate(d.message)}" + (f" (hint: {_unsurrogate(d.hint)})" if d.hint
                                                                     else ""),
            "check_name": d.code,
            "fingerprint": digest,
            "severity": GITLAB_SEVERITY[d.severity],
            "location": {"path": path, "lines": {"begin": d.line, "end": max(d.end_line, d.line)}},
        })
    return json.dumps(out, indent=2) + "\n"


def _relative_uri(path: str) -> str:
    """A URI reference relative to the working directory (the repository root in CI), percent-encoded; an
    absolute file URI for a file outside it."""
    rel = _relative_path(path)
    if rel is None:
        from pathlib import Path

        return Path(os.path.abspath(path)).as_uri()
    from urllib.parse import quote

    return quote(rel, errors="surrogateescape")


def render_sarif(diags: list[Diagnostic], version: str) -> str:
    level = {"error": "error", "warning": "warning", "info": "note"}
    rules = [{
        "id": c.code,
        "name": c.name,
        "shortDescription": {"text": c.summary},
        "fullDescription": {"text": c.what},
        "help": {"text": c.render(), "markdown": c.render()},
        "defaultConfiguration": {"level": level[c.severity]},
    } for c in CODES.values()]
    index = {c: i for i, c in enumerate(CODES)}
    results = [{
        "ruleId": d.code,
        "ruleIndex": index[d.code],
        "level": level[d.severity],
        "message": {"text": d.message + (f" (hint: {d.hint})" if d.hint else "")},
        "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": _relative_uri(d.file)},
            "region": {"startLine": d.line, "startColumn": d.column, "endLine": max(d.end_line, d.line),
                       "endColumn": d.end_column if d.end_line > d.line else max(d.end_column, d.column)},
        }}],
    } for d in diags]
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "nnspec", "version": version,
                                "rules": rules}},
            "results": results,
        }],
    }
    return json.dumps(doc, indent=2) + "\n"


def render_junit(diags: list[Diagnostic], files: list[str], strict: bool = False) -> str:
    """One testcase per file; a file fails on errors (with `strict`, on warnings too)."""
    from xml.sax.saxutils import escape as xml_escape

    def attr(text: str) -> str:
        return xml_escape(text, {'"': "&quot;"})

    def fails(d: Diagnostic) -> bool:
        return d.severity == "error" or (strict and d.severity == "warning")

    by_file: dict[str, list[Diagnostic]] = {f: [] for f in files}
    for d in diags:
        by_file.setdefault(d.file, []).append(d)
    failed = sum(1 for ds in by_file.values() if any(fails(d) for d in ds))
    cases = []
    for f, ds in by_file.items():
        bad = [d for d in ds if fails(d)]
        text = "".join(_concise(d) + "\n" for d in ds)  # one line each, no control characters (invalid in XML)
        body = ""
        if bad:
            kind = "error" if all(d.severity == "error" for d in bad) else "problem"
            body = (f'<failure message="{len(bad)} {kind}{"s" if len(bad) != 1 else ""}" type="nnspec">'
                    f"{xml_escape(text)}</failure>")
        elif ds:
            body = f"<system-out>{xml_escape(text)}</system-out>"
        name = attr(_display_path(f))
        cases.append(f'    <testcase classname="nnspec" name="{name}" file="{name}">{body}</testcase>')
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<testsuites name="nnspec" tests="{len(by_file)}" failures="{failed}" errors="0">\n'
            f'  <testsuite name="nnspec check" tests="{len(by_file)}" failures="{failed}" errors="0" skipped="0">\n'
            + "".join(c + "\n" for c in cases) + "  </testsuite>\n</testsuites>\n")


def summary(diags: list[Diagnostic], nfiles: int) -> str:
    counts = Counter(d.severity for d in diags)
    if not diags:
        return f"All checks passed ({nfiles} file{'s' if nfiles != 1 else ''})."
    parts = [f"{counts[s]} {s}{'s' if counts[s] != 1 else ''}" for s in ("error", "warning", "info") if counts[s]]
    return f"Found {', '.join(parts)} in {nfiles} file{'s' if nfiles != 1 else ''}."
