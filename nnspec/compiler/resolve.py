"""The initializer pass: every tensor of every layer with its initializer and where that came from.

First match wins: the layer's own `init`; the first pattern of the model's
`init.paths` (file order) that matches the tensor's path; the enclosing block
calls' and residuals' `init`, innermost first; the model's `init.<kind>.<role>`; the
model's `init.<role>`; `torch_default`. A model-level default that applies to
no tensor is reported. Waivers (`allow`) of the layer and its containers are
attached here too.
"""

from __future__ import annotations

from nnspec.compiler.ir import InitSpec, Tensor
from nnspec.compiler.paths import resolve_path, unused_paths
from nnspec.compiler.report import Recorder, Scoped
from nnspec.compiler.syntax import parse_allow, parse_layer_init
from nnspec.diagnostics import Diagnostic
from nnspec.vocabulary.kinds import KINDS


def resolve_inits(reached: list, model_init: dict, out: Recorder) -> set:
    """Give each reached layer its waivers and tensors; return the model-level defaults that were used."""
    used: set = set()
    for entry in reached:
        item, layer = entry.item, entry.layer
        scoped = Scoped(out, item.calls)
        kind = KINDS[item.kind]
        kpath = item.ipath + (item.kind,)
        body = item.body
        roles = kind.roles(item.args)
        if not entry.input_known:  # only what does not depend on the input
            if body.get("init") is not None:
                parse_layer_init(scoped, body["init"], kpath + ("init",), item.kind, roles)
            if body.get("allow") is not None:
                parse_allow(scoped, body["allow"], kpath + ("allow",))
            continue
        if layer is None:  # its shape failed (reported)
            continue
        own_init = {}
        if body.get("init") is not None:
            own_init = parse_layer_init(scoped, body["init"], kpath + ("init",), item.kind, roles)
        elif "init" in body:
            scoped.error(kpath + ("init",), "NS004", "`init` must be a mapping role -> initializer")
        if body.get("allow") is not None:
            layer.allow = parse_allow(scoped, body["allow"], kpath + ("allow",))
        for context in item.inherited:
            for code, waiver in context.allow.items():
                layer.allow.setdefault(code, waiver)
        if kind.tensors is None:
            continue
        for ts in kind.tensors(item.args, layer.in_shape):
            init, origin, span = _resolve(item.kind, ts.role, own_init, item.inherited, model_init, used,
                                          f"{layer.path}.{ts.key}")
            if init.name == "chunks" and ts.shape[0] % len(init.args["parts"]):
                n = len(init.args["parts"])
                scoped.report(Diagnostic.at(init.span, "NS004", f"`chunks` splits the first axis of the "
                                            f"{ts.role} of this `{item.kind}` ({list(ts.shape)}) into {n} parts, "
                                            f"but {ts.shape[0]} is not divisible by {n}",
                                            f"give a number of parts that divides {ts.shape[0]}"))
                continue
            layer.tensors[ts.key] = Tensor(f"{layer.path}.{ts.key}", ts.role, ts.shape, ts.fan_in, ts.fan_out,
                                            init, origin, span, layer)
    return used


def _resolve(kind: str, role: str, own: dict, inherited: tuple, model_init: dict, used: set, path: str):
    rule = resolve_path(model_init.get(("paths",), ()), path, role in own)
    if role in own:
        spec = own[role]
        return spec, "layer", spec.span
    if rule is not None:
        return rule.spec, rule.origin, rule.spec.span
    # a role of the same name but another nature (a PReLU's slope `weight`) is reached only by kind
    generic = () if role in KINDS[kind].own_roles else ((role,),)
    for context in reversed(inherited):
        for key in ((kind, role), *generic):
            if key in context.init:
                context.used.add(key)
                spec = context.init[key]
                return spec, context.label, spec.span
    for key, origin in (((kind, role), f"init.{kind}.{role}"), *((k, f"init.{role}") for k in generic)):
        if key in model_init:
            used.add(key)
            spec = model_init[key]
            return spec, origin, spec.span
    return InitSpec("torch_default", {}), "default", None


def unused_model_defaults(model_init: dict, used: set, out: Recorder) -> None:
    for key in model_init:
        if key == ("paths",):
            unused_paths(model_init[key], out)
        elif key not in used:
            out.error(("init",) + key, "NS212", f"the default `init.{'.'.join(key)}` applies to no tensor",
                      "every matching tensor sets its own initializer, or no layer has this kind/role; remove it",
                      key=True)


def unused_container_defaults(contexts: list, out: Recorder) -> None:
    """An `init` entry of a block call, residual or merge that no tensor inside took: NS212, as at model level."""
    for context in contexts:
        what = context.label.split(" ")[0] if not context.label.startswith("block call") else "block call"
        for key in context.init:
            if key not in context.used:
                Scoped(out, context.calls).error(
                    context.init_path + key, "NS212", f"`init.{'.'.join(key)}` of this {what} applies to no tensor "
                    "inside it", "no layer inside has this kind and role, or each sets its own; remove it", key=True)
