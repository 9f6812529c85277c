"""Rendering diagnostics for people and machines: full, concise, json, github, sarif, junit, gitlab."""

from __future__ import annotations

import os
import re
from collections import Counter

from nnspec.codes import CODES
from nnspec.diagnostics import Diagnostic

FORMATS = ("full", "concise", "json", "github", "sarif", "junit", "gitlab")
MAX_PER_CODE = 50  # full, concise and github show this many diagnostics of one code per file, then a count
EXCERPT_WIDTH = 160  # characters of a quoted source line (escaped), at most


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


def _source_lines(path: str) -> list[str]:
    """The lines of a spec file, to quote; none of a file that is not a regular file (reading a FIFO or a device
    would block or never end) or not a spec (no top-level `nnspec` key: a symbolic link to /etc/passwd, say)."""
    import stat

    from nnspec.files import looks_like_spec

    try:
        if not stat.S_ISREG(os.stat(path).st_mode) or not looks_like_spec(path):
            return []
        with open(path, "rb") as fh:
            return fh.read(4 * 1024 * 1024).decode("utf-8", "replace").splitlines()
    except (OSError, ValueError):
        return []


def _source_line(path: str, line: int, cache: dict) -> str:
    if path not in cache:
        cache[path] = _source_lines(path)
    lines = cache[path]
    return lines[line - 1] if 0 < line <= len(lines) else ""


def _excerpt_text(text: str) -> str:
    return _one_line(text.replace("\t", " "))


def excerpt(text: str, column: int, width: int) -> tuple[str, int, int]:
    """(the quoted line, the caret's offset, the caret's width): control characters escaped, so that the quote
    cannot drive the terminal, and cut to EXCERPT_WIDTH characters around the marked span."""
    start = min(max(0, column - 1), len(text))
    before, marked, after = (_excerpt_text(text[:start]), _excerpt_text(text[start:start + width]),
                             _excerpt_text(text[start + width:]))
    if len(before) > EXCERPT_WIDTH // 4:
        before = "..." + before[-(EXCERPT_WIDTH // 4 - 3):]
    if len(marked) > EXCERPT_WIDTH // 2:
        marked, after = marked[:EXCERPT_WIDTH // 2], "..."
    room = EXCERPT_WIDTH - len(before) - len(marked)
    if len(after) > room:
        after = after[:max(0, room - 3)] + "..."
    return before + marked + after, len(before), max(1, len(marked))


def capped(diags: list[Diagnostic]) -> list:
    """The diagnostics with at most MAX_PER_CODE of one code per file; after the last one shown of a (file, code),
    the count of the rest as (file, code, number)."""
    totals = Counter((d.file, d.code) for d in diags)
    if all(n <= MAX_PER_CODE for n in totals.values()):
        return list(diags)
    shown: Counter = Counter()
    out: list = []
    for d in diags:
        key = (d.file, d.code)
        shown[key] += 1
        if shown[key] <= MAX_PER_CODE:
            out.append(d)
        if shown[key] == MAX_PER_CODE and totals[key] > MAX_PER_CODE:
            out.append((d.file, d.code, totals[key] - MAX_PER_CODE))
    return out


def _more(note: tuple) -> str:
    file, code, rest = note
    return (f"{_display_path(file)}: ... and {rest} more {code} diagnostic{'s' if rest != 1 else ''} in this file "
            f"(only the first {MAX_PER_CODE} of a code are shown; --format json lists all)")


def render_full(diags: list[Diagnostic], sources: dict | None = None) -> str:
    cache: dict = {path: lines if not isinstance(lines, str) else lines.splitlines()
                   for path, lines in (sources or {}).items()}
    out = []
    for d in capped(diags):
        if isinstance(d, tuple):
            out.append(_more(d))
            out.append("")
            continue
        out.append(_concise(d))
        text = _source_line(d.file, d.line, cache)
        if text:
            gutter = " " * len(str(d.line))
            width = max(1, (d.end_column - d.column) if d.end_line == d.line else len(text) - d.column + 1)
            width = min(width, max(1, len(text) - d.column + 1))
            quoted, offset, carets = excerpt(text, d.column, width)
            out.append(f"{gutter} |")
            out.append(f"{d.line} | {quoted}")
            out.append(f"{gutter} | {' ' * offset}{'^' * carets}")
        if d.hint:
            out.append(f"  = hint: {_one_line(d.hint)}")
        out.append("")
    return "\n".join(out)


def render_concise(diags: list[Diagnostic]) -> str:
    return "".join((_more(d) if isinstance(d, tuple) else _concise(d)) + "\n" for d in capped(diags))


def render_json(diags: list[Diagnostic]) -> str:
    import json

    return json.dumps([d.as_dict() for d in diags], indent=2) + "\n"


# GitHub encodes line breaks itself (%0A); every other control character is escaped as in the other formats
_GH_ESCAPES = {k: v for k, v in _ESCAPES.items() if k not in (0x0A, 0x0D)}


def _gh_data(text: str) -> str:
    text = _unsurrogate(text).translate(_GH_ESCAPES)
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(diags: list[Diagnostic]) -> str:
    level = {"error": "error", "warning": "warning", "info": "notice"}
    out = []
    for d in capped(diags):
        if isinstance(d, tuple):
            out.append(f"::notice::{_gh_data(_more(d))}\n")
            continue
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
    import json

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
    import json

    return json.dumps(doc, indent=2) + "\n"


def render_junit(diags: list[Diagnostic], files: list[str], strict: bool = False) -> str:
    """One testcase per file; a file fails on errors (with `strict`, on warnings too)."""
    from xml.sax.saxutils import escape

    def xml_escape(text: str) -> str:
        return escape(_xml_chars(text))

    def attr(text: str) -> str:
        return escape(_xml_chars(text), {'"': "&quot;"})

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


# XML 1.0 allows #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]: anything else (U+FFFE,
# U+FFFF, C0 controls, lone surrogates) makes the document invalid, escaped or not
# (compiled on first use, by `re`'s own cache: `check` with the default format never needs it)
_XML_FORBIDDEN = r"[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]"


def _xml_chars(text: str) -> str:
    """`text` with each character XML 1.0 forbids written as a visible escape (\\uFFFE)."""
    return re.sub(_XML_FORBIDDEN, lambda m: f"\\u{ord(m.group(0)):04X}", _unsurrogate(text))


def summary(diags: list[Diagnostic], nfiles: int) -> str:
    counts = Counter(d.severity for d in diags)
    if not diags:
        return f"All checks passed ({nfiles} file{'s' if nfiles != 1 else ''})."
    parts = [f"{counts[s]} {s}{'s' if counts[s] != 1 else ''}" for s in ("error", "warning", "info") if counts[s]]
    return f"Found {', '.join(parts)} in {nfiles} file{'s' if nfiles != 1 else ''}."
