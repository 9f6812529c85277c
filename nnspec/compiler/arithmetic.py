"""Arithmetic in block arguments: `$width * 4`, `$ch // 2`, `($k - 1) // 2`, `$p * 0.5`.

A string is an expression when it holds at least one `$name` and otherwise
only number literals, `+ - * / //` and parentheses; anything else (a waiver
reason that mentions `$5`) is plain text. Evaluated by a small recursive
descent parser, never by Python's `eval`; integers stay integers except
through `/`, as in Python.
"""

from __future__ import annotations

import math
import re
from typing import Optional

_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)|\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<op>//|[-+*/()]))")
MAX_TOKENS = 200
LIMIT = 2**63  # no argument of a layer needs more; bounds what nested blocks can build up


class ExpressionError(Exception):
    """`code` is NS105 for a name that is not an argument, NS004 for everything else."""

    def __init__(self, code: str, message: str, hint: str = "", name: str = ""):
        super().__init__(message)
        self.code, self.message, self.hint, self.name = code, message, hint, name


def tokens_of(text: str) -> Optional[list]:
    """The tokens of an arithmetic expression, or None when `text` is not one."""
    if not isinstance(text, str) or "$" not in text:
        return None
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None:
            return None
        kind = match.lastgroup
        out.append((kind, match.group(kind)))
        pos = match.end()
    if not any(kind == "name" for kind, _ in out) or not any(kind == "op" for kind, _ in out):
        return None
    return out if len(out) <= MAX_TOKENS else None


def names_in(text: str) -> set:
    """The `$name`s of an expression (empty when `text` is not one)."""
    return {value for kind, value in tokens_of(text) or () if kind == "name"}


def evaluate(text: str, env: dict, block: str):
    tokens = tokens_of(text)
    parser = _Parser(tokens, env, block, text)
    value = parser.expr()
    if parser.pos != len(tokens):
        raise ExpressionError("NS004", f"`{text}` is not an arithmetic expression: unexpected "
                                       f"`{tokens[parser.pos][1]}`", "use numbers, `$name`s, + - * / // and ()")
    return value


class _Parser:
    def __init__(self, tokens: list, env: dict, block: str, text: str):
        self.tokens, self.env, self.block, self.text, self.pos = tokens, env, block, text, 0

    def peek(self) -> Optional[str]:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self):
        if self.pos >= len(self.tokens):
            raise ExpressionError("NS004", f"`{self.text}` ends in the middle of an expression")
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expr(self):
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            value = self.check(value + self.term() if op == "+" else value - self.term())
        return value

    def term(self):
        value = self.unary()
        while self.peek() in ("*", "/", "//"):
            op = self.take()[1]
            right = self.unary()
            if op == "*":
                value = self.check(value * right)
                continue
            if right == 0:
                raise ExpressionError("NS004", f"`{self.text}` divides by zero")
            try:
                value = self.check(value / right if op == "/" else value // right)
            except OverflowError:  # an integer too large for a float, through `/`
                raise self.too_large() from None
        return value

    def unary(self):
        if self.peek() in ("-", "+"):
            op = self.take()[1]
            value = self.unary()
            return -value if op == "-" else value
        return self.atom()

    def atom(self):
        kind, value = self.take()
        if kind == "num":
            if any(c in value for c in ".eE"):
                return self.check(float(value))
            digits = value.lstrip("0") or "0"
            if len(digits) > 19:  # beyond 2**63 (and int() refuses thousands of digits)
                raise self.too_large()
            return int(digits)
        if kind == "name":
            return self.lookup(value)
        if value == "(":
            inner = self.expr()
            if self.peek() != ")":
                raise ExpressionError("NS004", f"`{self.text}` has an unclosed `(`")
            self.take()
            return inner
        raise ExpressionError("NS004", f"`{self.text}` is not an arithmetic expression: unexpected `{value}`",
                              "use numbers, `$name`s, + - * / // and ()")

    def lookup(self, name: str):
        if name not in self.env:
            raise ExpressionError("NS105", f"`${name}` is not an argument of block `{self.block}`", name=name)
        value = self.env[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExpressionError("NS004", f"`${name}` is {value!r:.80} here, not a number: `{self.text}` needs "
                                           "numbers")
        return self.check(value)

    def check(self, value):
        if isinstance(value, float) and not math.isfinite(value) or abs(value) >= LIMIT:
            raise self.too_large()
        return value

    def too_large(self) -> ExpressionError:
        return ExpressionError("NS004", f"`{self.text}` gives a number beyond what any argument takes (|value| < "
                                        "2**63)")
