"""Turn pydantic validation errors into located diagnostics."""

from __future__ import annotations

import difflib
import keyword

from pydantic import ValidationError

from nnspec.compiler.diagnostics import Diagnostic
from nnspec.schema.loader import Document


def did_you_mean(word: str, choices) -> str:
    match = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"did you mean `{match[0]}`?" if match else ""


def _data_path(data, loc: tuple) -> tuple:
    """Keep only the parts of a pydantic `loc` that index into the data (drop union tags)."""
    path, node = [], data
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and not path and part not in node:
            # a missing or extra key directly below
            path.append(part)
            node = None
        elif node is None:
            break
    return tuple(path)


def _describe(value) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "a mapping"
    return repr(value)


def pydantic_diagnostics(exc: ValidationError, data: dict, doc: Document, base: tuple, fields,
                         what: str = "", skip_extra=()) -> list[Diagnostic]:
    """Diagnostics for `exc`, raised validating `data` found at `base` in `doc`."""
    out: list[Diagnostic] = []
    grouped: dict[tuple, list] = {}
    for err in exc.errors():
        loc = err["loc"]
        etype = err["type"]
        if etype == "extra_forbidden":
            key = loc[-1]
            parent = loc[:-1]
            if not parent and key in skip_extra:
                continue
            hint = did_you_mean(key, fields if not parent else ())
            where = f" in {what}" if what else ""
            allowed = ", ".join(sorted(fields)) if not parent else ""
            msg = f"unknown key `{key}`{where}"
            out.append(Diagnostic.at(doc.key_span(base + _data_path(data, parent) + (key,)), "NS003", msg,
                                     hint or (f"allowed keys: {allowed}" if allowed else "")))
            continue
        if etype == "missing":
            path = _data_path(data, loc[:-1])
            where = f" of {what}" if what else ""
            out.append(Diagnostic.at(doc.span(base + path), "NS009",
                                     f"missing required argument `{loc[-1]}`{where}",
                                     f"add `{loc[-1]}: ...`"))
            continue
        path = _data_path(data, loc)
        grouped.setdefault(path, []).append(err)
    for path, errs in grouped.items():
        field = ".".join(str(p) for p in path) or "value"
        value = errs[0].get("input")
        expected = []
        for e in errs:
            msg = e["msg"]
            if msg.startswith("Input should be "):
                msg = msg[len("Input should be "):]
            if msg not in expected:
                expected.append(msg)
        out.append(Diagnostic.at(doc.span(base + path), "NS004",
                                 f"`{field}` should be {' or '.join(expected)}; got {_describe(value)}",
                                 "numbers are written without quotes; booleans are true/false"))
    return out


IDENTIFIER_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")

# Attributes of torch.nn.Module / nn.Sequential: a submodule with one of these names would shadow them.
MODULE_ATTRIBUTES = frozenset("""
T_destination add_module append apply bfloat16 buffers call_super_init children compile cpu cuda double
dump_patches eval extend extra_repr float forward get_buffer get_extra_state get_parameter get_submodule half
insert ipu load_state_dict modules mtia named_buffers named_children named_modules named_parameters parameters
pop register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook
register_load_state_dict_pre_hook register_module register_parameter register_state_dict_post_hook
register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory state_dict to to_empty
train training type xpu zero_grad
""".split())

# Names the generated code itself uses.
GENERATED_NAMES = frozenset("""
torch nn math hashlib keras np numpy self x y inputs outputs model build seed super OrderedDict Residual
GlobalAvgPool ConstantPad initialize tensor_seed generator layers ops initializers params branch shortcut
weight bias gamma beta
""".split())


def identifier_problem(name: str) -> str | None:
    """Why `name` cannot be used in generated code, or None if it can."""
    if not isinstance(name, str) or not name:
        return "a name must be a non-empty string"
    if not name.isascii() or set(name) - IDENTIFIER_CHARS or name[0].isdigit():
        return f"{name!r} is not an ASCII Python identifier ([A-Za-z_][A-Za-z0-9_]*)"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"{name!r} is a Python keyword"
    if name.startswith("_"):
        return f"{name!r} starts with an underscore, which is reserved for private and special names"
    if name in MODULE_ATTRIBUTES:
        return f"{name!r} is an attribute of torch.nn.Module and would shadow it"
    if name in GENERATED_NAMES:
        return f"{name!r} is used by the generated code"
    if len(name) > 64:
        return f"{name!r} is longer than 64 characters"
    return None


def class_name(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Model"
