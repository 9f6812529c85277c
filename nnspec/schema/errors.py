"""Turn pydantic validation errors into located diagnostics."""

from __future__ import annotations

import functools
import keyword
import typing
from typing import Optional

from pydantic import BaseModel, ValidationError

from nnspec.compiler.diagnostics import Diagnostic
from nnspec.schema.loader import Document


def did_you_mean(word: str, choices) -> str:
    return _did_you_mean(str(word), tuple(choices))


@functools.lru_cache(maxsize=8192)
def _did_you_mean(word: str, choices: tuple) -> str:
    """Cached: a spec that repeats one misspelling (or a generated one that repeats thousands) pays once."""
    import difflib

    if len(word) > 200:  # no misspelling is that long, and the search grows with the length
        return ""
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean `{match[0]}`?" if match else ""


def _walk_loc(data, loc: tuple) -> tuple[tuple, Optional[tuple]]:
    """Split a pydantic `loc` into the path that indexes into the data and the first union point.

    Parts that do not index into the data are union tags (`list[...]`, a model's name); they are dropped.
    The union point is (data path where the first tag was met, the tag), or None.
    """
    path, node, union = [], data, None
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif union is None:
            union = (tuple(path), part)
    return tuple(path), union


def _data_path(data, loc: tuple) -> tuple:
    """Keep only the parts of a pydantic `loc` that index into the data (drop union tags)."""
    return _walk_loc(data, loc)[0]


def _models_in(annotation) -> list:
    """Every pydantic model class that appears in a type annotation (through unions, lists, dicts)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out = []
    for arg in typing.get_args(annotation):
        out.extend(m for m in _models_in(arg) if m not in out)
    return out


def _fields_at(fields, loc: tuple) -> dict:
    """The fields of the model(s) that a pydantic `loc` (below the top model) points into."""
    models: list = []
    current = dict(fields)
    for part in loc:
        named = [m for m in models if m.__name__ == part]
        if named:  # a union tag naming one member
            models, current = named, dict(named[0].model_fields)
        elif isinstance(part, str) and part in current and hasattr(current[part], "annotation"):
            models = _models_in(current[part].annotation)
            current = {k: v for m in models for k, v in m.model_fields.items()}
        # list indexes, dict keys and other tags stay in the same model(s)
    return current


def _select_union_branches(errors: list, data) -> list:
    """Of the errors from the members of one union, keep those of the member(s) that got furthest into the
    value: a list value is reported against the list member, a mapping against the model member."""
    depth: dict = {}
    walked = []
    for err in errors:
        path, union = _walk_loc(data, err["loc"])
        walked.append((err, path, union))
        if union is not None:
            key = union[0]
            depth.setdefault(key, {})
            depth[key][union[1]] = max(depth[key].get(union[1], 0), len(path))
    # On a tie, a member that only says "wrong type here" loses to one that accepted the type.
    type_only: dict = {}
    for err, path, union in walked:
        if union is not None:
            mismatch = err["type"] in _TYPE_MISMATCH and path == union[0]
            type_only[union] = type_only.get(union, True) and mismatch
    kept = []
    for err, _path, union in walked:
        if union is not None:
            members = depth[union[0]]
            best = max(members.values())
            if members[union[1]] < best:
                continue
            rivals = [t for t, d in members.items() if d == best and not type_only[(union[0], t)]]
            if type_only[union] and rivals:
                continue
        kept.append(err)
    return kept


_TYPE_MISMATCH = {"int_type", "float_type", "bool_type", "string_type", "list_type", "dict_type", "model_type",
                  "model_attributes_type", "literal_error", "none_required", "is_instance_of"}


def _expected(err: dict) -> str:
    """What a pydantic error says was expected, as a phrase that follows `should be`."""
    ctx = err.get("ctx") or {}
    etype = err["type"]
    if etype == "too_long":
        return f"a list of at most {ctx.get('max_length')} item(s)"
    if etype == "too_short":
        return f"a list of at least {ctx.get('min_length')} item(s)"
    if etype in ("model_type", "model_attributes_type", "dict_type"):
        return "a mapping"
    msg = err["msg"]
    if msg.startswith("Input should be "):
        return msg[len("Input should be "):]
    return msg[:1].lower() + msg[1:]


def _describe(value) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return f"a list of {len(value)} item(s)" if isinstance(value, list) else "a mapping"
    return repr(value)


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def pydantic_diagnostics(exc: ValidationError, data: dict, doc: Document, base: tuple, fields,
                         what: str = "", skip_extra=()) -> list[Diagnostic]:
    """Diagnostics for `exc`, raised validating `data` found at `base` in `doc`."""
    out: list[Diagnostic] = []
    grouped: dict[tuple, list] = {}
    for err in _select_union_branches(exc.errors(), data):
        loc = err["loc"]
        etype = err["type"]
        if etype == "extra_forbidden":
            key = loc[-1]
            parent = _data_path(data, loc[:-1])
            if not parent and key in skip_extra:
                continue
            allowed_fields = fields if not parent else _fields_at(fields, loc[:-1])
            hint = did_you_mean(key, allowed_fields)
            if parent:
                where = f" in `{_dotted(parent)}`"
            else:
                where = f" in {what}" if what else ""
            allowed = ", ".join(sorted(allowed_fields))
            msg = f"unknown key `{key}`{where}"
            if not hint:
                hint = f"allowed keys: {allowed}" if allowed else (f"{what} takes no arguments" if what and
                                                                   not parent else "")
            out.append(Diagnostic.at(doc.key_span(base + parent + (key,)), "NS003", msg, hint))
            continue
        if etype == "missing":
            path = _data_path(data, loc[:-1])
            if path:
                msg = f"missing required key `{loc[-1]}` in `{_dotted(path)}`"
            else:
                msg = f"missing required argument `{loc[-1]}`" + (f" of {what}" if what else "")
            out.append(Diagnostic.at(doc.key_span(base + path), "NS009", msg, f"add `{loc[-1]}: ...`"))
            continue
        path = _data_path(data, loc)
        grouped.setdefault(path, []).append(err)
    for path, errs in grouped.items():
        field = _dotted(path) or "value"
        value = errs[0].get("input")
        expected = []
        for e in errs:
            msg = _expected(e)
            if msg not in expected:
                expected.append(msg)
        wanted = " or ".join(expected)
        hint = ""
        if isinstance(value, str) and ("number" in wanted or "integer" in wanted):
            hint = "numbers are written without quotes"
        elif isinstance(value, bool) and "boolean" not in wanted:
            hint = "true and false are booleans, not numbers"
        elif isinstance(value, str) and "boolean" in wanted:
            hint = "booleans are written true or false"
        out.append(Diagnostic.at(doc.span(base + path), "NS004",
                                 f"`{field}` should be {wanted}; got {_describe(value)}", hint))
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
