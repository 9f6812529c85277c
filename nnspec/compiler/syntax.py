"""Reading `init` and `allow` mappings: initializers with their arguments and spans, waivers with reasons.

Each function takes the place to report to (a `Recorder` or a `Scoped` one),
the raw value and its document path, and returns what it could read; what it
could not read is reported and left out.
"""

from __future__ import annotations

from typing import Optional

from nnspec.codes import CODES
from nnspec.compiler.ir import InitSpec
from nnspec.diagnostics import Diagnostic
from nnspec.names import did_you_mean
from nnspec.vocabulary import fast
from nnspec.vocabulary import initializers as inits
from nnspec.vocabulary.kinds import KINDS, ROLES


def parse_layer_init(out, raw, path: tuple, kind: str, roles: tuple) -> dict:
    """A layer's own `init`: role -> InitSpec, for the roles the layer has."""
    if not isinstance(raw, dict):
        out.error(path, "NS004", "`init` must be a mapping role -> initializer, e.g. `init: {weight: zeros}`")
        return {}
    found = {}
    for role, value in raw.items():
        if role not in roles:
            if roles:
                hint = did_you_mean(role, roles) or f"`{kind}` here has: {', '.join(roles)}"
            else:
                hint = f"`{kind}` has no tensors to initialise"
            extra = " (bias: false)" if role == "bias" and kind in KINDS and KINDS[kind].category in (
                "linear", "conv", "conv_transpose") else ""
            out.error(path + (role,), "NS003", f"`{kind}` has no tensor `{role}`{extra}", hint, key=True)
            continue
        spec = parse_init(out, value, path + (role,))
        if spec is not None:
            found[role] = spec
    return found


def parse_container_init(out, raw, path: tuple, model: bool = False) -> dict:
    """The model's, a block call's or a residual's `init`: keyed by (role,) or (kind, role). The model's
    may also hold `paths` (pattern -> initializer), kept in file order under the key `("paths",)` as a
    list of `paths.PathRule`."""
    found: dict = {}
    if not isinstance(raw, dict):
        out.error(path, "NS004", "`init` must be a mapping")
        return found
    for key, value in raw.items():
        if key == "paths" and model:
            from nnspec.compiler.paths import parse_paths

            found[("paths",)] = parse_paths(out, value, path + (key,))
        elif key == "paths":
            out.error(path + (key,), "NS003", "`init.paths` is read only in the model's top-level `init`",
                      "move the pattern to the model's `init.paths` with the full path, e.g. "
                      "`\"layer4.**.bn3.gamma\": zeros`", key=True)
        elif key in ROLES:
            spec = parse_init(out, value, path + (key,))
            if spec is not None:
                found[(key,)] = spec
        elif key in KINDS:
            found.update(_kind_defaults(out, key, value, path))
        else:
            out.error(path + (key,), "NS003", f"unknown key `{key}` in init: not a role or a layer kind",
                      did_you_mean(key, list(ROLES) + list(KINDS)) or "roles: weight, bias, gamma, beta", key=True)
    return found


def _kind_defaults(out, key: str, value, path: tuple) -> dict:
    roles = KINDS[key].roles({"bias": True})
    if not roles:
        out.error(path + (key,), "NS003", f"`{key}` has no tensors to initialise", key=True)
        return {}
    if not isinstance(value, dict):
        out.error(path + (key,), "NS004", f"`init.{key}` must map roles ({', '.join(roles)}) to initializers")
        return {}
    found = {}
    for role, sub in value.items():
        if role not in roles:
            out.error(path + (key, role), "NS003", f"`{key}` has no tensor `{role}`",
                      did_you_mean(role, roles) or f"its roles: {', '.join(roles)}", key=True)
            continue
        spec = parse_init(out, sub, path + (key, role))
        if spec is not None:
            found[(key, role)] = spec
    return found


def parse_init(out, raw, path: tuple) -> Optional[InitSpec]:
    """One initializer: a name, `{name: {args}}`, or the short form `{name: value}`."""
    if isinstance(raw, str):
        name, args_raw, short = raw, {}, False
    elif isinstance(raw, dict) and len(raw) == 1:
        name, args_raw = next(iter(raw.items()))
        short = False
        if args_raw is None:
            args_raw = {}
        elif not isinstance(args_raw, dict):
            init = inits.REGISTRY.get(name)
            if init is not None and init.short:
                args_raw, short = {init.short: args_raw}, True
            elif init is not None:
                out.error(path + (name,), "NS004", f"`{name}` has no short form; give its arguments as a "
                                                   "mapping", f"e.g. `{{{name}: {{...}}}}`")
                return None
    else:
        out.error(path, "NS004", "an initializer is a name or a one-key mapping `name: {arguments}`",
                  "e.g. `zeros`, `{constant: 0.1}`, `{normal: {std: 0.02}}`")
        return None
    if not isinstance(name, str) or name not in inits.REGISTRY:
        out.error(path if isinstance(raw, str) else path + (name,), "NS008", f"unknown initializer `{name}`",
                  did_you_mean(name, inits.NAMES) or "`nnspec initializers` lists them", key=not isinstance(raw, str))
        return None
    init = inits.REGISTRY[name]
    base = path if isinstance(raw, str) else path + (name,)
    args = fast.validate(init.args, args_raw)
    if args is None:  # not plainly well-formed: the pydantic model decides, and says what is wrong
        from pydantic import ValidationError

        from nnspec.schema.errors import pydantic_diagnostics

        try:
            args = init.args.model_validate(args_raw).model_dump()
        except ValidationError as exc:
            if short:
                for diag in pydantic_diagnostics(exc, args_raw, out.doc, base[:-1], init.args.model_fields):
                    out.report(Diagnostic.at(out.doc.span(base), diag.code, diag.message.replace(
                        f"`{init.short}`", f"`{name}`"), diag.hint))
            else:
                for diag in pydantic_diagnostics(exc, args_raw, out.doc, base, init.args.model_fields,
                                                 what=f"`{name}`"):
                    out.report(diag)
            return None
    if name == "chunks":  # each part is an initializer of its own
        where = base if short else base + ("parts",)
        parts = [parse_init(out, part, where + (i,)) for i, part in enumerate(args["parts"])]
        if any(part is None for part in parts):
            return None
        nested = [part for part in parts if part.name == "chunks"]
        if nested:
            out.error(where, "NS004", "a part of `chunks` is itself `chunks`", "split the first axis once, "
                      "into as many parts as it needs")
            return None
        return InitSpec(name, {"parts": tuple(parts)}, out.doc.span(path))
    problems = inits.check_arguments(name, args)
    for arg, message in problems:
        out.error(base if short else base + (arg,), "NS211", f"{name}: {message}")
    if problems:
        return None
    return InitSpec(name, args, out.doc.span(path))


def parse_allow(out, raw, path: tuple) -> dict:
    """Waivers: rule code -> (reason, span of the code)."""
    found = {}
    if not isinstance(raw, dict):
        out.error(path, "NS004", "`allow` must map rule codes to reasons, e.g. `allow: {NS201: \"why\"}`")
        return found
    for code, reason in raw.items():
        if code not in CODES:
            out.error(path + (code,), "NS213", f"`allow` names unknown rule code `{code}`",
                      did_you_mean(code, CODES) or "`nnspec rule --list` lists the codes", key=True)
            continue
        if not isinstance(reason, str) or not reason.strip():
            out.error(path + (code,), "NS004", f"the waiver of {code} needs a reason (non-empty text)",
                      f'e.g. `{code}: "zero-init residual tail"`')
            continue
        found[code] = (reason, out.doc.key_span(path + (code,)))
    return found
