"""The JSON Schema of the spec format, for editors (yaml-language-server) and other validators.

Generated from the same pydantic models and registries that `check` uses. Block
calls are user-named kinds, and `$arg` may stand for any scalar inside a block
body, so the schema accepts both.
"""

from __future__ import annotations

import copy
import json

from nnspec.schema.models import BlockDef, InputSpec
from nnspec.vocabulary.initializers import REGISTRY
from nnspec.vocabulary.kinds import KINDS, ROLES

SCHEMA_ID = "nnspec.schema.json"
ARG_REF_PATTERN = r"^\$[A-Za-z_][A-Za-z0-9_]*$"
IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
ITEM_KEY_PROPS = {
    "name": {"type": "string", "pattern": IDENT, "description": "Python identifier, unique in its scope"},
    "repeat": {"type": "integer", "minimum": 1, "description": "the item stands this many times in a row"},
    "init": {"$ref": "#/$defs/InitMap"},
    "allow": {"$ref": "#/$defs/Allow"},
}


def _clean(schema):
    """Drop pydantic's titles and inline its $defs-free output."""
    if isinstance(schema, dict):
        return {k: _clean(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_clean(v) for v in schema]
    return schema


def _allow_arg_refs(schema):
    """Everywhere a scalar is expected, also accept a `$arg` reference."""
    if isinstance(schema, list):
        return [_allow_arg_refs(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _allow_arg_refs(v) if k in ("properties", "items", "anyOf", "oneOf", "additionalProperties",
                                            "$defs", "prefixItems") or isinstance(v, (dict, list)) else v
           for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: _allow_arg_refs(v) for k, v in schema["properties"].items()}
    scalar = schema.get("type") in ("integer", "number", "boolean") or "enum" in schema or "const" in schema \
        or (schema.get("type") == "string" and "pattern" in schema)
    if scalar:
        return {"anyOf": [out, {"type": "string", "pattern": ARG_REF_PATTERN}]}
    return out


def _args_schema(model) -> dict:
    schema = _clean(model.model_json_schema())
    props = schema.get("properties", {})
    for key, value in ITEM_KEY_PROPS.items():
        if key in props:
            props[key] = copy.deepcopy(value)
    schema.pop("required", None) if not schema.get("required") else None
    return schema


def _kind_item(kind_name: str) -> dict:
    args = _args_schema(KINDS[kind_name].args)
    return {
        "type": "object",
        "properties": {kind_name: {"anyOf": [{"type": "null"}, args]}},
        "required": [kind_name],
        "additionalProperties": False,
    }


def _init_schema() -> dict:
    options: list = [{"type": "string", "enum": list(REGISTRY)}]
    for name, init in REGISTRY.items():
        args = _clean(init.args.model_json_schema())
        alts = [{"type": "null"}, args]
        if init.short:
            alts.append(args["properties"][init.short])
        options.append({"type": "object", "properties": {name: {"anyOf": alts}}, "required": [name],
                        "additionalProperties": False})
    return {"anyOf": options}


def build_schema() -> dict:
    kinds_with_tensors = {k: v for k, v in KINDS.items() if v.parametrised}
    init_map_props = {role: {"$ref": "#/$defs/Init"} for role in ROLES}
    for kind_name, kind in kinds_with_tensors.items():
        roles = kind.roles({"bias": True})
        init_map_props[kind_name] = {"type": "object", "additionalProperties": False,
                                     "properties": {r: {"$ref": "#/$defs/Init"} for r in roles}}
    residual_body = {
        "anyOf": [
            {"type": "array", "items": {"$ref": "#/$defs/Item"}},
            {"type": "object", "additionalProperties": False, "required": ["branch"],
             "properties": {"branch": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
                            "shortcut": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
                            **copy.deepcopy(ITEM_KEY_PROPS)}},
        ]
    }
    reserved = sorted(set(KINDS) | {"residual"})
    block_call = {
        "type": "object", "minProperties": 1, "maxProperties": 1,
        "propertyNames": {"pattern": IDENT, "not": {"enum": reserved}},
        "additionalProperties": {"anyOf": [{"type": "null"}, {"type": "object", "properties":
                                            copy.deepcopy(ITEM_KEY_PROPS)}]},
    }
    item = {"anyOf": [{"type": "string", "pattern": IDENT}]
            + [_kind_item(k) for k in KINDS]
            + [{"type": "object", "properties": {"residual": residual_body}, "required": ["residual"],
                "additionalProperties": False}, block_call]}
    defs = {
        "Item": _allow_arg_refs(item),
        "Init": _allow_arg_refs(_init_schema()),
        "InitMap": {"type": "object", "additionalProperties": False, "properties": init_map_props},
        "Allow": {"type": "object", "propertyNames": {"pattern": r"^NS[0-9]{3}$"},
                  "additionalProperties": {"type": "string", "minLength": 1}},
    }
    block = _clean(BlockDef.model_json_schema())
    block["properties"]["layers"] = {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/Item"}}
    block["properties"]["args"] = {"type": "object", "propertyNames": {"pattern": IDENT},
                                   "additionalProperties": {"type": ["boolean", "integer", "number", "string",
                                                                     "array", "null"]}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "nnspec model spec, format version 1",
        "type": "object",
        "required": ["nnspec", "name", "input", "layers"],
        "additionalProperties": False,
        "properties": {
            "nnspec": {"const": 1, "description": "format version"},
            "name": {"type": "string", "pattern": IDENT},
            "description": {"type": "string"},
            "input": {"anyOf": [{"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1,
                                 "maxItems": 4}, _clean(InputSpec.model_json_schema())]},
            "seed": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]},
            "init": {"$ref": "#/$defs/InitMap"},
            "blocks": {"type": "object", "propertyNames": {"pattern": IDENT}, "additionalProperties": block},
            "layers": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/Item"}},
        },
        "$defs": defs,
    }


def schema_text() -> str:
    return json.dumps(build_schema(), indent=2, sort_keys=False) + "\n"
