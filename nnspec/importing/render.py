"""The imported spec as YAML text: flow mappings for a layer's arguments, block style for the structure."""

from __future__ import annotations

import math
import re

from nnspec.importing.structure import MERGE_KINDS, Item

PLAIN = re.compile(r"^[A-Za-z_$][A-Za-z0-9_.$*/ ()+-]*$")
YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value}")
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if "." not in mantissa:  # 1e-06 -> 1.0e-06: a float in every YAML version
            mantissa += ".0"
        return mantissa + e + exponent
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {scalar(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "null"
    text = str(value)
    if PLAIN.match(text) and text.lower() not in YAML_WORDS and not text.endswith(" "):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def item_lines(item: Item, indent: int) -> list:
    pad = " " * indent
    extra = {}  # merges are never named nor repeated by the importer: only layers and block calls
    if item.repeat != 1:
        extra["repeat"] = item.repeat
    if item.name:
        extra["name"] = item.name
    if item.kind in MERGE_KINDS:
        head = f"{pad}- {item.kind}:"
        inner = " " * (indent + 4)
        if item.kind == "residual":
            branch, *rest = item.branches
            if rest and rest[0]:
                lines = [head, f"{inner}branch:"] + items_lines(branch, indent + 6)
                lines += [f"{inner}shortcut:"] + items_lines(rest[0], indent + 6)
            else:
                lines = [head] + items_lines(branch, indent + 4)
        else:
            lines = [head]
            for branch in item.branches:
                if not branch:
                    lines.append(f"{inner}- []")
                    continue
                sub = items_lines(branch, indent + 6)
                sub[0] = f"{inner}- " + sub[0].lstrip()
                lines += sub
        return lines
    args = {**item.args, **extra}
    if not args:
        return [f"{pad}- {item.kind}"]
    return [f"{pad}- {item.kind}: {scalar(args)}"]


def items_lines(items: list, indent: int) -> list:
    out = []
    for item in items:
        out += item_lines(item, indent)
    return out
