"""Jinja2 templates of emitted code, and the one environment that renders them."""

from __future__ import annotations

import ast
import json
from functools import lru_cache

import jinja2


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("nnspec", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pystr"] = lambda s: json.dumps(str(s), ensure_ascii=True)
    env.filters["comment"] = lambda s: json.dumps(str(s), ensure_ascii=True)[1:-1]
    return env


def render_template(name: str, context: dict) -> str:
    source = environment().get_template(name).render(**context).rstrip("\n") + "\n"
    ast.parse(source)  # a generated file that does not parse is a bug, never output
    return source
