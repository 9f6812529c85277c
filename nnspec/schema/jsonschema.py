"""The JSON Schema of the spec format, for editors (yaml-language-server) and other validators.

Generated from the same pydantic models and registries that `check` uses: the descriptions come from the
layer-kind table (kinds.py), the argument models (their `Field(description=...)`), the initializer table and
the rule table. Draft-07, the draft yaml-language-server supports in full.

Every object that can hold a misspelt key states `additionalProperties: false` on itself, not behind an
`anyOf` with `null`, so that a validator reports the key ("'kernal' was unexpected") instead of "not valid
under any of the given schemas": a layer item dispatches on its one key through `properties` (any other
key is a block call), and a value that may be null or a short form lists those as extra `type`s of the
same object schema. Block calls are user-named kinds, and `$arg` may stand for any scalar inside a block
body, so the schema accepts both.
"""

from __future__ import annotations

import copy
import json

from nnspec.codes import CODES
from nnspec.schema.models import InputSpec
from nnspec.vocabulary.initializers import REGISTRY
from nnspec.vocabulary.kinds import KINDS, ROLES
from nnspec.vocabulary.merges import CONCAT_AXES, MERGES
from nnspec.vocabulary.merges import SUMMARY as MERGE_SUMMARY

SCHEMA_ID = "nnspec.schema.json"
# `$arg`, or block-argument arithmetic such as `$width * 4` (`nnspec check` tells the two from plain text)
ARG_REF_PATTERN = r"^(?=.*\$[A-Za-z_])[-+*/().\s$\w]+$"
IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
ITEM_NAME = r"^\$?[A-Za-z_][A-Za-z0-9_]*$"  # a kind or block name, or in a block `$act` naming one
REF = "#/definitions/"
ITEM_KEY_PROPS = {
    "name": {"type": "string", "pattern": IDENT,
             "description": "the layer's name: a Python identifier, unique in its scope (default: kind and index)"},
    "repeat": {"type": ["integer", "string"], "minimum": 1, "pattern": ARG_REF_PATTERN,
               "description": "the item stands this many times in a row"},
    "init": {"$ref": REF + "InitMap",
             "description": "initializers for the tensors of this item (and, in a block or residual, of the "
                            "items inside it), by role or by layer kind"},
    "allow": {"$ref": REF + "Allow",
              "description": "rules waived for this item, each code with the reason: {NS201: \"zero head on purpose\"}"},
}
ROLE_DESCRIPTIONS = {
    "weight": "initializer of every weight in scope (linear, conv and embedding layers)",
    "bias": "initializer of every bias in scope (linear and conv layers)",
    "gamma": "initializer of every normalisation scale in scope (batchnorm, layernorm, groupnorm, rmsnorm, scale)",
    "beta": "initializer of every normalisation shift in scope (batchnorm, layernorm, groupnorm)",
}
# One example of each kind's arguments; a test validates each against the schema and compiles it.
KIND_EXAMPLES = {
    "linear": {"out": 128},
    "conv1d": {"out": 64, "kernel": 3, "padding": "same"},
    "conv2d": {"out": 64, "kernel": 3, "stride": 1, "padding": 1, "bias": False},
    "conv3d": {"out": 32, "kernel": [3, 3, 3], "padding": 1},
    "batchnorm": {"eps": 1e-5, "momentum": 0.1},
    "layernorm": {"eps": 1e-5},
    "embedding": {"num": 1000, "dim": 64},
    "relu": None,
    "relu6": None,
    "leaky_relu": {"slope": 0.2},
    "gelu": {"approximate": "tanh"},
    "tanh": None,
    "sigmoid": None,
    "silu": None,
    "elu": {"alpha": 1.0},
    "softmax": {"axis": -1},
    "identity": {"name": "skip"},
    "dropout": {"p": 0.1},
    "flatten": None,
    "maxpool1d": {"kernel": 2},
    "avgpool1d": {"kernel": 2},
    "maxpool2d": {"kernel": 3, "stride": 2, "padding": 1},
    "avgpool2d": {"kernel": 2},
    "maxpool3d": {"kernel": 2},
    "avgpool3d": {"kernel": [1, 2, 2]},
    "global_avg_pool": None,
    "global_max_pool": {"keep_dims": True},
    "groupnorm": {"groups": 2},
    "rmsnorm": {"eps": 1e-6},
    "scale": None,
    "prelu": {"per_channel": True},
    "hardswish": None,
    "hardsigmoid": None,
    "softplus": None,
    "mish": None,
    "drop_path": {"p": 0.1},
    "conv_transpose1d": {"out": 16, "kernel": 4, "stride": 2, "padding": 1},
    "conv_transpose2d": {"out": 16, "kernel": 2, "stride": 2},
    "conv_transpose3d": {"out": 8, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1},
    "upsample": {"scale": 2, "mode": "bilinear"},
    "adaptive_avg_pool": {"size": 1},
    "adaptive_max_pool": {"size": [2, 2]},
    "slice": {"start": 0, "stop": 2},
    "channel_shuffle": {"groups": 2},
    "pad": {"padding": [[0, 1], [0, 1]]},
    "rescale": {"scale": [0.0171, 0.0175, 0.0174], "offset": [-2.118, -2.036, -1.804]},
    "to_tokens": None,
    "to_map": {"size": [2, 4]},
    "class_token": None,
    "position_embedding": {"length": 197},
    "attention": {"heads": 12, "causal": True, "dropout": 0.1},
    "lstm": {"hidden": 128, "layers": 2, "bidirectional": True, "output": "last"},
    "gru": {"hidden": 64, "bidirectional": True},
}
_META = ("description", "default", "examples")


def _clean(schema):
    """Drop pydantic's titles."""
    if isinstance(schema, dict):
        return {k: _clean(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_clean(v) for v in schema]
    return schema


def _arg_plain(schema: dict) -> tuple[dict, bool]:
    """(the schema accepting `$arg` where it can within itself, whether a separate `$arg` alternative is
    needed: enums, constants and patterned strings cannot take the reference in the same schema)."""
    kind = schema.get("type")
    if "enum" in schema or "const" in schema or kind == "string":
        return schema, True
    if kind in ("integer", "number", "boolean"):
        return {**schema, "type": [kind, "string"], "pattern": ARG_REF_PATTERN}, False
    if kind == "array" and isinstance(schema.get("items"), dict):
        return {**schema, "items": _arg(schema["items"])}, False
    return schema, False


def _arg(schema: dict) -> dict:
    """A value schema that also accepts a `$arg` reference wherever it accepts a scalar."""
    schema = dict(schema)
    meta = {k: schema.pop(k) for k in _META if k in schema}
    if "anyOf" in schema:
        alternatives, needs_ref = [], False
        for alt in schema.pop("anyOf"):
            out, need = _arg_plain(alt)
            alternatives.append(out)
            needs_ref |= need
        if needs_ref:
            alternatives.append({"type": "string", "pattern": ARG_REF_PATTERN})
        return {**meta, **schema, "anyOf": alternatives}
    out, need = _arg_plain(schema)
    if need:
        return {**meta, "anyOf": [out, {"type": "string", "pattern": ARG_REF_PATTERN}]}
    return {**meta, **out}


def _args_properties(model) -> tuple[dict, list]:
    schema = _clean(model.model_json_schema())
    props = {}
    for key, value in schema.get("properties", {}).items():
        props[key] = copy.deepcopy(ITEM_KEY_PROPS[key]) if key in ITEM_KEY_PROPS else _arg(value)
    return props, list(schema.get("required", []))


def _kind_schema(kind_name: str) -> dict:
    kind = KINDS[kind_name]
    props, required = _args_properties(kind.args)
    out = {"type": ["object", "null"],
           "description": f"`{kind_name}`: {kind.summary}"
                          + ("" if props.keys() - ITEM_KEY_PROPS.keys() else " (no arguments of its own)"),
           "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    roles = kind.roles({"bias": True}) if kind.parametrised else ()
    if set(roles) - set(ROLES):  # tensors of its own (lstm's weight_ih, ...): a layer's `init` names its roles
        props["init"] = {"type": "object", "additionalProperties": False,
                         "description": f"initializers of this layer's tensors, by role ({', '.join(roles)})",
                         "properties": {r: {"$ref": REF + "Init", "description": f"the {r} of this layer"}
                                        for r in roles}}
    out["examples"] = [KIND_EXAMPLES[kind_name]]
    return out


def _merge_short(schema: dict, short: dict) -> dict:
    """The initializer's object schema, also accepting its short form (`xavier_uniform: 2.0`) as another type."""
    short = {k: v for k, v in short.items() if k not in _META}
    types = short.get("type")
    if "anyOf" in short or types is None or set(short) & set(schema) - {"type"}:
        return {"description": schema.pop("description"), "anyOf": [schema, short]}
    types = [types] if isinstance(types, str) else types
    return {**schema, **short, "type": schema["type"] + [t for t in types if t not in schema["type"]]}


def _init_schema() -> dict:
    props = {}
    for name, init in REGISTRY.items():
        args, required = _args_properties(init.args)
        if name == "chunks":  # each part is an initializer
            args["parts"] = {**args["parts"], "items": {"$ref": REF + "Init"}}
        schema = {"type": ["object", "null"], "description": f"`{name}`: {init.summary}"
                  + (f" (short form: the value of `{init.short}`)" if init.short else ""),
                  "properties": args, "additionalProperties": False}
        if required:
            schema["required"] = required
        if init.short:
            schema = _merge_short(schema, args[init.short])
        props[name] = schema
    return {
        "type": ["string", "object"],
        "description": "an initializer: its name (`xavier_uniform`), or a one-key mapping from its name to its "
                       "arguments (`{kaiming_normal: {mode: fan_out}}`); see `nnspec initializers`",
        "if": {"type": "string"},
        "then": {"anyOf": [{"enum": list(REGISTRY)}, {"pattern": ARG_REF_PATTERN}]},
        "minProperties": 1, "maxProperties": 1,
        "properties": props,
        "additionalProperties": False,
    }


def _init_map() -> dict:
    props = {role: {"$ref": REF + "Init", "description": ROLE_DESCRIPTIONS[role]} for role in ROLES}
    for kind_name, kind in KINDS.items():
        if not kind.parametrised:
            continue
        roles = kind.roles({"bias": True})
        props[kind_name] = {
            "type": "object", "additionalProperties": False,
            "description": f"initializers of the tensors of every `{kind_name}` layer in scope",
            "properties": {r: {"$ref": REF + "Init", "description": f"the {r} of every `{kind_name}` layer"}
                           for r in roles},
        }
    return {"type": "object", "additionalProperties": False, "properties": props,
            "description": "initializers by role (weight, bias, gamma, beta) or by layer kind; inner scopes win"}


def _model_init_map() -> dict:
    base = _init_map()
    paths = {
        "type": "object",
        "description": "initializers by tensor path pattern, first match in file order wins (after the layer's own "
                       "`init`, before block calls', residuals' and the kind/role defaults): `*` matches within one "
                       "dotted segment, `**` across segments, e.g. {\"head.*\": zeros, \"layer4.**.bn3.gamma\": zeros}",
        "propertyNames": {"pattern": r"^[A-Za-z0-9_*]+(\.[A-Za-z0-9_*]+)*$"},
        "additionalProperties": {"$ref": REF + "Init"},
    }
    return {**base, "properties": {"paths": paths, **base["properties"]},
            "description": base["description"] + "; `paths` (model level only) targets tensors by path"}


def _allow() -> dict:
    return {
        "type": "object",
        "description": "rules silenced for this item, each with the reason: {NS201: \"zero head on purpose\"}",
        "propertyNames": {"pattern": r"^NS[0-9]{3}$"},
        "properties": {code: {"type": "string", "minLength": 1,
                              "description": f"{code} {c.name} ({c.severity}): {c.summary} The value: why."}
                       for code, c in CODES.items()},
        "additionalProperties": False,
    }


def _merge_schema(op: str, item_list: dict) -> dict:
    branch = {**item_list, "description": "a branch: its layers in order (`[]` is the identity)"}
    props = {"branches": {"type": ["array", "object"], "items": branch, "minItems": 2, "minProperties": 2,
                          "propertyNames": {"pattern": IDENT}, "additionalProperties": branch,
                          "description": "the branches: a list (named 0, 1, ...) or a mapping name -> layers"},
             **copy.deepcopy(ITEM_KEY_PROPS)}
    if op == "concat":
        props["axis"] = {"enum": list(CONCAT_AXES), "default": "channels",
                         "description": "`channels`: join the channel axis; `tokens`: join tokens along T"}
    return {"type": ["array", "object"], "description": f"`{op}`: {MERGE_SUMMARY[op]}; a list is the branches",
            "items": branch, "minItems": 2, "required": ["branches"], "additionalProperties": False,
            "properties": props}


def build_schema() -> dict:
    item_list = {"type": "array", "items": {"$ref": REF + "Item"}}
    residual = {
        "type": ["array", "object"],
        "description": "`residual`: output = branch(x) + shortcut(x); a list is the branch, with an identity "
                       "shortcut",
        "items": {"$ref": REF + "Item"},
        "required": ["branch"],
        "additionalProperties": False,
        "properties": {"branch": {**item_list, "description": "the layers of the residual branch"},
                       "shortcut": {**item_list, "description": "the layers of the shortcut (default: identity)"},
                       **copy.deepcopy(ITEM_KEY_PROPS)},
    }
    merges = {op: _merge_schema(op, item_list) for op in MERGES}
    block_call = {
        "type": ["object", "null"],
        "description": "a call of a block defined under `blocks`: its arguments, and the keys every item takes",
        "properties": copy.deepcopy(ITEM_KEY_PROPS),
    }
    item = {
        "type": ["string", "object"],
        "description": "a layer: a kind or block name alone (`relu`; in a block also `$act`, an argument naming "
                       "one), or a one-key mapping from a layer kind, `residual` or a block name to its arguments",
        "pattern": ITEM_NAME,
        "minProperties": 1, "maxProperties": 1,
        "propertyNames": {"pattern": IDENT},
        "properties": {**{k: _kind_schema(k) for k in KINDS}, "residual": residual, **merges},
        "additionalProperties": block_call,
    }
    input_props, _ = _args_properties(InputSpec)
    block = {
        "type": "object",
        "description": "a reusable block: its arguments (with defaults) and its layers",
        "required": ["layers"],
        "additionalProperties": False,
        "properties": {
            "args": {"type": "object", "propertyNames": {"pattern": IDENT},
                     "description": "argument names with their defaults (`required`: the call must give it); the "
                                    "body refers to them as $name",
                     "additionalProperties": {"type": ["boolean", "integer", "number", "string", "array", "null"]}},
            "layers": {**item_list, "minItems": 1, "description": "the block's layers, in order"},
        },
    }
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        "title": "nnspec model spec, format version 1",
        "description": "A model spec: architecture and initializers. `nnspec check` also checks shapes and "
                       "initializer safety, which no schema can.",
        "type": "object",
        "required": ["nnspec", "name", "input", "layers"],
        "additionalProperties": False,
        "properties": {
            "nnspec": {"const": 1, "description": "format version (1)"},
            "name": {"type": "string", "pattern": IDENT,
                     "description": "the model's name: a Python identifier (the emitted class is named after it)"},
            "description": {"type": "string", "description": "free text, copied into emitted source"},
            "input": {"type": ["array", "object"],
                      "description": "one example's shape, channels first, batch excluded: [3, 32, 32]; or "
                                     "{shape: [...], dtype: int64} for embedding ids",
                      "items": {"type": "integer", "minimum": 1}, "minItems": 1, "maxItems": 4,
                      "required": ["shape"], "additionalProperties": False, "properties": input_props},
            "seed": {"type": ["integer", "null"], "minimum": 0,
                     "description": "random seed for the initializers (`build --seed` overrides it)"},
            "init": {"$ref": REF + "ModelInitMap",
                     "description": "the model's default initializers, by tensor path pattern (`paths`), by role "
                                    "(weight, bias, gamma, beta) or by layer kind; an item's own `init` wins"},
            "blocks": {"type": "object", "propertyNames": {"pattern": IDENT}, "additionalProperties": block,
                       "description": "reusable blocks by name; a layer item names one to call it"},
            "layers": {**item_list, "minItems": 1, "description": "the model's layers, in order"},
        },
        "definitions": {"Item": item, "Init": _init_schema(), "InitMap": _init_map(),
                        "ModelInitMap": _model_init_map(), "Allow": _allow()},
    }


def schema_text() -> str:
    return json.dumps(build_schema(), indent=2, sort_keys=False) + "\n"
