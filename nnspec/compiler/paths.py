"""Tensor path patterns: `init.paths` of the model, `nnspec.initialize(..., only=...)`.

A pattern is a dotted path whose segments may hold `*` (any run of characters
within one segment) or be `**` (any number of whole segments, none included);
`**` inside a segment matches across dots. Patterns match a tensor's full
path: `layer1.0.residual_1.branch.conv1.weight`, `head.*`, `layer4.**.bn3.gamma`.
"""

from __future__ import annotations

import re
from typing import Optional

from nnspec.compiler.syntax import parse_init

_SEGMENT = re.compile(r"^[A-Za-z0-9_*]+$")


def pattern_problem(pattern) -> Optional[str]:
    """Why `pattern` is not a tensor path pattern, or None."""
    if not isinstance(pattern, str) or not pattern:
        return "a path pattern is non-empty text such as `head.*` or `layer4.**.bn3.gamma`"
    for segment in pattern.split("."):
        if not _SEGMENT.match(segment):
            shown = segment or "(empty)"
            return (f"the segment `{shown}` of `{pattern}` is not a name, a number, `*` or `**`: a path pattern "
                    "is dotted names, numbers and `*`/`**`")
    return None


class PathPattern:
    """A compiled path pattern. Matching runs over sets of positions (no backtracking), so it takes time
    linear in the pattern and at most quadratic in the path, whatever the pattern."""

    def __init__(self, pattern: str) -> None:
        problem = pattern_problem(pattern)
        if problem:
            raise ValueError(problem)
        self.pattern = pattern
        self.tokens: list = []
        segments = pattern.split(".")
        for i, segment in enumerate(segments):
            last = i == len(segments) - 1
            if segment == "**":
                if last:  # `a.**`: one or more characters after the dot; `**` alone: anything
                    self.tokens.append(("any+",))
                else:  # `a.**.b`, `**.b`: nothing, or whole segments each ending with its dot
                    self.tokens.append(("segments",))
                continue
            for tok in re.split(r"(\*+)", segment):
                if tok.startswith("**"):
                    self.tokens.append(("any",))
                elif tok == "*":
                    self.tokens.append(("star",))
                else:
                    self.tokens.extend(("lit", c) for c in tok)
            if not last:
                self.tokens.append(("lit", "."))

    def match(self, path: str) -> bool:
        n = len(path)
        reach = {0}
        for token in self.tokens:
            if not reach:
                return False
            kind = token[0]
            if kind == "lit":
                reach = {j + 1 for j in reach if j < n and path[j] == token[1]}
            elif kind == "star":
                nxt: set = set()
                for j in sorted(reach):
                    k = j
                    while k not in nxt:
                        nxt.add(k)
                        if k >= n or path[k] == ".":
                            break
                        k += 1
                reach = nxt
            elif kind in ("any", "any+"):
                low = min(reach) + (kind == "any+")
                reach = set(range(low, n + 1))
            else:  # segments
                low = min(reach)
                reach = reach | {k + 1 for k in range(low, n) if path[k] == "."}
        return n in reach

    def __repr__(self) -> str:
        return f"PathPattern({self.pattern!r})"


def compile_pattern(pattern: str) -> PathPattern:
    """A path pattern, compiled (see the module text); raises ValueError on a bad one."""
    return PathPattern(pattern)


def matches(patterns, path: str) -> bool:
    return any(p.match(path) for p in patterns)


def compile_patterns(only) -> list:
    """`only` of `initialize`: one pattern or a list of them."""
    items = [only] if isinstance(only, str) else list(only)
    if not items:
        raise ValueError("`only` is empty: give a pattern such as 'head.*' or a list of them")
    compiled = []
    for item in items:
        problem = pattern_problem(item)
        if problem:
            raise ValueError(f"only={item!r}: {problem}")
        compiled.append(compile_pattern(item))
    return compiled


class PathRule:
    """One entry of `init.paths`: a pattern, its initializer, and whether any tensor matched or took it."""

    def __init__(self, pattern: str, spec) -> None:
        self.pattern, self.spec = pattern, spec
        self.compiled = compile_pattern(pattern)
        self.matched = False
        self.used = False

    @property
    def origin(self) -> str:
        return f'init.paths["{self.pattern}"]'


def parse_paths(out, raw, path: tuple) -> list:
    """The model's `init.paths`: pattern -> initializer, in file order."""
    if not isinstance(raw, dict):
        out.error(path, "NS004", "`init.paths` must map tensor path patterns to initializers",
                  '`paths: {"head.*": zeros, "layer4.**.bn3.gamma": zeros}`')
        return []
    rules = []
    for pattern, value in raw.items():
        problem = pattern_problem(pattern)
        if problem:
            out.error(path + (pattern,), "NS004", f"`init.paths` key {pattern!r}: {problem}",
                      "`*` matches within one segment, `**` across segments", key=True)
            continue
        spec = parse_init(out, value, path + (pattern,))
        if spec is not None:
            rules.append(PathRule(pattern, spec))
    return rules


def resolve_path(rules: list, tensor_path: str, own: bool):
    """The first rule matching `tensor_path` (marking every matching rule as matched); None if none."""
    found = None
    for rule in rules:
        if rule.compiled.match(tensor_path):
            rule.matched = True
            if found is None and not own:
                found = rule
    if found is not None:
        found.used = True
    return found


def unused_paths(rules: list, out) -> None:
    for rule in rules:
        if rule.used:
            continue
        if rule.matched:
            message = (f"the pattern `init.paths[\"{rule.pattern}\"]` decides no tensor's initializer: every "
                       "tensor it matches sets its own `init` or matches an earlier pattern")
            hint = "remove it, or move it before the pattern that wins"
        else:
            message = f"the pattern `init.paths[\"{rule.pattern}\"]` matches no tensor"
            hint = ("patterns match full tensor paths such as `layer1.0.conv1.weight` (`nnspec inits` lists "
                    "them); `*` stays within one segment, `**` spans several")
        out.error(("init", "paths", rule.pattern), "NS212", message, hint, key=True)
