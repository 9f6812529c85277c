"""A tiny expression language shared by building and emitting.

A backend table lowers each layer and initializer to `Call` trees once. The
builder evaluates a tree against the framework's modules; the emitter renders
the same tree as Python source, formatted the way `ruff format` formats it
(88 columns), with `# file:line` comments in front of the arguments that come
from a spec item.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

LINE_LENGTH = 88


@dataclass(frozen=True)
class Ref:
    """A value bound at build/emit time: the tensor being initialised, a generator, ..."""

    name: str


@dataclass(frozen=True)
class Const:
    """A named constant: rendered as `code`, evaluated as `value` (e.g. math.sqrt(5))."""

    code: str
    value: Any


@dataclass(frozen=True)
class Arg:
    value: Any
    keyword: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class Call:
    func: str  # dotted name resolved in the backend's namespace; with `method`, a method of args[0]
    args: tuple = ()
    method: bool = False

    @staticmethod
    def of(func: str, *args, **kwargs) -> Call:
        items = [a if isinstance(a, Arg) else Arg(a) for a in args]
        items += [Arg(v, k) for k, v in kwargs.items()]
        return Call(func, tuple(items))


@dataclass(frozen=True)
class Comp:
    """`*[item for _ in range(count)]`, or `range(start, count)`: the copies of a `repeat`."""

    item: Any
    count: Any
    start: int = 0


def _range(comp: Comp, bindings: dict) -> str:
    count = flat(comp.count, bindings)
    return f"for _ in range({comp.start}, {count})" if comp.start else f"for _ in range({count})"


def call(func: str, *args, **kwargs) -> Call:
    return Call.of(func, *args, **kwargs)


def method(receiver, name: str, *args, **kwargs) -> Call:
    base = Call.of(name, receiver, *args, **kwargs)
    return Call(name, base.args, method=True)


# -- evaluation ----------------------------------------------------------------

def resolve(namespace: dict, dotted: str):
    head, *rest = dotted.split(".")
    obj = namespace[head]
    for part in rest:
        obj = getattr(obj, part)
    return obj


def evaluate(expr, namespace: dict, bindings: dict):
    if isinstance(expr, Call):
        args, kwargs = [], {}
        for a in expr.args:
            value = evaluate(a.value, namespace, bindings)
            if a.keyword is None:
                args.append(value)
            else:
                kwargs[a.keyword] = value
        if expr.method:
            return getattr(args[0], expr.func)(*args[1:], **kwargs)
        return resolve(namespace, expr.func)(*args, **kwargs)
    if isinstance(expr, Ref):
        return bindings[expr.name]
    if isinstance(expr, Const):
        return expr.value
    if isinstance(expr, list):
        return [evaluate(v, namespace, bindings) for v in expr]
    if isinstance(expr, tuple):
        return tuple(evaluate(v, namespace, bindings) for v in expr)
    return expr


# -- rendering -----------------------------------------------------------------

def literal(value) -> str:
    """Python source for a validated scalar; never pastes user text unescaped."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite numbers cannot be emitted")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    raise TypeError(f"cannot emit a literal of type {type(value).__name__}")


def _parts(expr, bindings: dict):
    """(head, items, tail) of a bracketed expression, or None for an atom."""
    if isinstance(expr, Call):
        if expr.method:
            receiver = flat(expr.args[0].value, bindings)
            return f"{receiver}.{expr.func}(", list(expr.args[1:]), ")"
        return f"{expr.func}(", list(expr.args), ")"
    if isinstance(expr, list):
        return "[", [Arg(v) for v in expr], "]"
    if isinstance(expr, tuple):
        return "(", [Arg(v) for v in expr], ",)" if len(expr) == 1 else ")"
    return None


def flat(expr, bindings: dict) -> str:
    if isinstance(expr, Comp):
        return f"*[{flat(expr.item, bindings)} {_range(expr, bindings)}]"
    if isinstance(expr, Ref):
        return bindings[expr.name]
    if isinstance(expr, Const):
        return expr.code
    parts = _parts(expr, bindings)
    if parts is None:
        return literal(expr)
    head, items, tail = parts
    return head + ", ".join(_flat_arg(a, bindings) for a in items) + tail


def _flat_arg(arg: Arg, bindings: dict) -> str:
    return (f"{arg.keyword}=" if arg.keyword else "") + flat(arg.value, bindings)


def _has_comments(expr) -> bool:
    if isinstance(expr, Comp):
        return _has_comments(expr.item)
    if isinstance(expr, Call):
        return any(a.comment or _has_comments(a.value) for a in expr.args)
    if isinstance(expr, (list, tuple)):
        return any(_has_comments(v) for v in expr)
    return False


def render(expr, indent: int, prefix: str = "", suffix: str = "", bindings: dict | None = None) -> list[str]:
    """Lines of `prefix + expr + suffix` at `indent` spaces, split as ruff format splits them."""
    bindings = {} if bindings is None else bindings
    pad = " " * indent
    one = pad + prefix + flat(expr, bindings) + suffix
    if len(one) <= LINE_LENGTH and not _has_comments(expr):
        return [one]
    if isinstance(expr, Comp):
        inner = " " * (indent + 4)
        return ([pad + prefix + "*["] + render(expr.item, indent + 4, "", "", bindings)
                + [inner + _range(expr, bindings), pad + "]" + suffix])
    parts = _parts(expr, bindings)
    if parts is None or not parts[1]:
        return [one]
    head, items, tail = parts
    if tail == ",)":
        tail = ")"
    inner = " " * (indent + 4)
    lines = [pad + prefix + head]
    body = ", ".join(_flat_arg(a, bindings) for a in items)
    # a call's arguments stay on one line when they fit; a list or tuple that must split is one element per line
    if not _has_comments(expr) and isinstance(expr, Call) and len(inner + body) <= LINE_LENGTH:
        return lines + [inner + body, pad + tail + suffix]
    sole = len(items) == 1 and items[0].keyword is None and not items[0].comment
    for a in items:
        kw = f"{a.keyword}=" if a.keyword else ""
        if a.comment:
            trailing = f"{inner}{kw}{flat(a.value, bindings)},  # {a.comment}"
            if len(trailing) <= LINE_LENGTH and not _has_comments(a.value):
                lines.append(trailing)  # ruff keeps a comment at the end of a line that fits
                continue
            lines.append(inner + "# " + a.comment)
        bracketed = _parts(a.value, bindings) or isinstance(a.value, Comp)
        lines += render(a.value, indent + 4, kw, "" if sole and bracketed else ",", bindings)
    lines.append(pad + tail + suffix)
    return lines
