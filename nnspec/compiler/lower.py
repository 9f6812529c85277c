"""Lowering: validated spec data -> IR graph, with shapes, names and initializers.

Blocks are expanded with their arguments substituted, repeats unrolled, every
item named, every shape inferred and every tensor's initializer resolved.
Problems inside a block body are reported once, at the body line, naming the
calls they apply to.
"""

from __future__ import annotations

import re
from typing import Optional

from pydantic import ValidationError

from nnspec.compiler import initializers as inits
from nnspec.compiler.codes import CODES
from nnspec.compiler.diagnostics import Diagnostic, Span
from nnspec.compiler.ir import Graph, InitSpec, Layer, Residual, Sequence, Tensor
from nnspec.compiler.kinds import KINDS, ROLES, ShapeError, conv_geometry, pool_geometry
from nnspec.schema.errors import class_name, did_you_mean, identifier_problem, pydantic_diagnostics
from nnspec.schema.loader import Document
from nnspec.schema.models import SpecModel

ARG_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ITEM_KEYS = ("name", "repeat", "init", "allow")
RESIDUAL_KEYS = ("branch", "shortcut") + ITEM_KEYS
RESERVED_BLOCK_NAMES = set(KINDS) | {"residual"} | set(ROLES) | set(inits.REGISTRY)


class _Abort(Exception):
    """Stop lowering the current item; its diagnostics are already recorded."""


class _TooLarge(Exception):
    """Stop lowering the whole model: blocks and `repeat` expand it beyond MAX_EXPANDED_ITEMS (reported)."""


# Blocks and `repeat` multiply (a block of 100 repeats called 100 times in a block called 100 times...): bound
# the expanded model like the loader bounds alias expansion, so that `check` stays fast on any input.
MAX_EXPANDED_ITEMS = 10_000
MAX_EXPANDED_VALUES = 200_000  # keys and values copied into block bodies, all calls together


class Lowerer:
    def __init__(self, doc: Document, spec: SpecModel):
        self.doc = doc
        self.spec = spec
        self.file = doc.file
        self.diagnostics: list[tuple[Diagnostic, Optional[tuple]]] = []
        self.calls: list[tuple[str, Span]] = []  # block-call stack
        self.block_stack: list[str] = []
        self.model_init_used: set = set()
        self.model_init: dict = {}
        self.called_blocks: set = set()
        self.failed = False  # an item could not be lowered: later shapes are unknown, no graph
        self.expanded = 0  # items instantiated so far, repeats and block bodies included
        self.substituted = 0  # values copied into block bodies so far
        self.top_item: tuple = ("layers",)  # the top-level item being expanded

    # -- reporting ---------------------------------------------------------
    def report(self, diag: Diagnostic) -> None:
        self.diagnostics.append((diag, tuple(self.calls) if self.calls else None))

    def error(self, path: tuple, code: str, message: str, hint: str = "", key: bool = False) -> None:
        span = self.doc.key_span(path) if key else self.doc.span(path)
        self.report(Diagnostic.at(span, code, message, hint))

    def merged_diagnostics(self) -> list[Diagnostic]:
        """One diagnostic per body position, naming every block call it applies to."""
        merged: dict[tuple, tuple[Diagnostic, list]] = {}
        for diag, calls in self.diagnostics:
            key = (diag.file, diag.line, diag.column, diag.code, diag.message)
            entry = merged.setdefault(key, (diag, []))
            if calls:
                desc = f"`{calls[-1][0]}` (line {calls[-1][1].line})"
                if desc not in entry[1]:
                    entry[1].append(desc)
        out = []
        for diag, calls in merged.values():
            if calls:
                shown = ", ".join(calls[:5]) + (f" and {len(calls) - 5} more" if len(calls) > 5 else "")
                noun = "call" if len(calls) == 1 else "calls"
                diag = Diagnostic(diag.file, diag.line, diag.column, diag.end_line, diag.end_column, diag.code,
                                  diag.severity, f"{diag.message} (in block {noun} {shown})", diag.hint)
            out.append(diag)
        return out

    # -- entry -------------------------------------------------------------
    def lower(self) -> Optional[Graph]:
        spec = self.spec
        name_problem = identifier_problem(spec.name)
        if name_problem:
            self.error(("name",), "NS007", f"model name: {name_problem}", "use a name like `my_model`")
        shape_spec = spec.input_spec()
        path = ("input",) if isinstance(spec.input, list) else ("input", "shape")
        shape = tuple(shape_spec.shape)
        if not 1 <= len(shape) <= 4:
            self.error(path, "NS004", f"`input` must have 1 to 4 axes (batch excluded), got {len(shape)}")
            return None
        self.check_blocks()
        self.model_init = self.parse_container_init(spec.init, ("init",), model=True)
        root = Sequence("", "", "model", [], shape, shape, self.doc.span(("layers",)))
        try:
            root.items, out_shape, _ = self.lower_sequence(spec.layers, ("layers",), "", shape, shape_spec.dtype,
                                                           env=None, inherited=())
        except _Abort:
            return None
        except _TooLarge as exc:
            self.error(self.top_item, "NS005", f"blocks and `repeat` expand the model to more than {exc}",
                       "a spec of this size is almost certainly a mistake (or an expansion bomb); reduce `repeat`")
            return None
        self.check_unused_args()
        if self.failed:
            return None
        root.out_shape = out_shape
        self.check_unused_model_init()
        graph = Graph(spec.name, class_name(spec.name), shape, shape_spec.dtype, spec.seed, root, self.file,
                      {name: self.doc.key_span(("blocks", name)) for name in spec.blocks})
        if class_name(spec.name) in {class_name(b) for b in spec.blocks}:
            self.error(("name",), "NS106", f"the model's class name {class_name(spec.name)} equals a block's class "
                                           "name", "rename the model or the block")
        return graph

    # -- blocks ------------------------------------------------------------
    def check_blocks(self) -> None:
        for name, block in self.spec.blocks.items():
            kpath = ("blocks", name)
            if name in RESERVED_BLOCK_NAMES:
                self.error(kpath, "NS106", f"block `{name}` is named like a layer kind, role or initializer",
                           "rename the block", key=True)
            problem = identifier_problem(name)
            if problem:
                self.error(kpath, "NS007", f"block name: {problem}", key=True)
            for arg in block.args:
                # An argument never reaches generated code (blocks are expanded), so `bias` or `x` are fine
                # names; it only has to be something `$name` can refer to.
                problem = None if ARG_NAME.fullmatch(arg) else (
                    f"{arg!r} is not a name that `$name` can refer to ([A-Za-z_][A-Za-z0-9_]*)")
                if arg in ITEM_KEYS:
                    self.error(kpath + ("args", arg), "NS105", f"block argument `{arg}` clashes with the item key "
                               f"`{arg}`", "rename the argument", key=True)
                elif problem:
                    self.error(kpath + ("args", arg), "NS007", f"block argument: {problem}", key=True)
        # cycles
        graph = {name: set(_called_names(block.layers)) & set(self.spec.blocks) for name, block
                 in self.spec.blocks.items()}
        for name in graph:
            if _reaches(graph, name, name):
                self.error(("blocks", name), "NS105", f"block `{name}` calls itself (directly or through another "
                                                      "block)", "a block may not be recursive", key=True)
                self.spec.blocks[name].layers = []

    def check_unused_args(self) -> None:
        for name, block in self.spec.blocks.items():
            used = _arg_refs(block.layers)
            for arg in block.args:
                if arg not in used and arg not in ITEM_KEYS:  # a clash with an item key is reported already
                    self.error(("blocks", name, "args", arg), "NS105", f"block argument `{arg}` of `{name}` is "
                               "never used in its body", f"use it as `${arg}` or remove it", key=True)

    # -- sequences and items -------------------------------------------------
    def lower_sequence(self, raw_items: list, doc_path: tuple, prefix: str, shape: tuple, dtype: str,
                       env: Optional[dict], inherited: tuple) -> tuple[list, tuple, str]:
        nodes = []
        counters: dict[str, int] = {}
        names: dict[str, tuple] = {}
        for index, raw in enumerate(raw_items):
            ipath = doc_path + (index,)
            if env is None and doc_path == ("layers",):
                self.top_item = ipath
            try:
                if env is not None:
                    raw = self.substitute(raw, ipath, env)
                else:
                    self.refuse_arg_refs(raw, ipath)
                parsed = self.split_item(raw, ipath)
                if parsed is None:
                    raise _Abort
                kind, body = parsed
                counters[kind] = counters.get(kind, 0) + 1
                name = body.get("name") if isinstance(body, dict) else None
                if name is not None:
                    problem = identifier_problem(name)
                    if problem:
                        self.error(ipath + (kind, "name"), "NS007", f"layer name: {problem}",
                                   "use a name like `head` or `conv_in`")
                        self.failed = True
                        name = f"{kind}_{counters[kind]}"
                else:
                    name = f"{kind}_{counters[kind]}"
                if name in names:
                    self.error(ipath + ((kind, "name") if isinstance(body, dict) and "name" in body else ()),
                               "NS106", f"duplicate name `{name}` in this scope; first used on line {names[name][0]}",
                               "give each item a unique `name`")
                    self.failed = True
                names.setdefault(name, (self.doc.span(ipath).line,))
                path = f"{prefix}.{name}" if prefix else name
                node = self.lower_item(kind, body, ipath, name, path, shape, dtype, env, inherited)
            except _Abort:
                # Keep going so that every problem (and every block call a body problem applies to) is
                # reported; what follows has an unknown input shape.
                self.failed = True
                shape = None
                continue
            nodes.append(node)
            shape, dtype = node.out_shape, getattr(node, "out_dtype", "float32")
        return nodes, shape, dtype

    def split_item(self, raw, ipath: tuple) -> Optional[tuple[str, object]]:
        if isinstance(raw, str):
            kind, body = raw, None
        elif isinstance(raw, dict) and len(raw) == 1:
            kind, body = next(iter(raw.items()))
        elif isinstance(raw, dict):
            self.error(ipath, "NS004", f"an item is one kind with its arguments, got {len(raw)} keys: "
                                       + ", ".join(f"`{k}`" for k in raw),
                       "indent the arguments under the kind: `- linear: {out: 10, bias: false}`")
            return None
        else:
            self.error(ipath, "NS004", "an item is a kind name or a one-key mapping `kind: {arguments}`",
                       "e.g. `- relu` or `- linear: {out: 10}`")
            return None
        if kind not in KINDS and kind != "residual" and kind not in self.spec.blocks:
            hint = did_you_mean(kind, list(KINDS) + ["residual"] + list(self.spec.blocks))
            self.error(ipath if isinstance(raw, str) else ipath + (kind,), "NS008",
                       f"unknown layer kind or block `{kind}`", hint or "see `nnspec rule NS008` for the kinds",
                       key=not isinstance(raw, str))
            return None
        if body is None:
            body = {}
        if kind == "residual" and isinstance(body, list):
            body = {"branch": body}
        if not isinstance(body, dict):
            self.error(ipath + (kind,), "NS004", f"the arguments of `{kind}` must be a mapping, got "
                                                 f"{type(body).__name__}", f"e.g. `{kind}: {{...}}`")
            return None
        return kind, body

    def lower_item(self, kind, body, ipath, name, path, shape, dtype, env, inherited):
        repeat = body.get("repeat")
        if repeat is not None:
            if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
                self.error(ipath + (kind, "repeat"), "NS004", f"`repeat` must be an integer >= 1, got {repeat!r}")
                raise _Abort
            body = {k: v for k, v in body.items() if k != "repeat"}
            copies = []
            in_shape, cur, cur_dtype = shape, shape, dtype
            for i in range(repeat):
                node = self.lower_one(kind, body, ipath, str(i), f"{path}.{i}", cur, cur_dtype, env, inherited)
                copies.append(node)
                cur, cur_dtype = node.out_shape, getattr(node, "out_dtype", "float32")
            seq = Sequence(path, name, "repeat", copies, in_shape, cur, self.doc.span(ipath))
            seq.out_dtype = cur_dtype
            return seq
        return self.lower_one(kind, body, ipath, name, path, shape, dtype, env, inherited)

    def lower_one(self, kind, body, ipath, name, path, shape, dtype, env, inherited):
        self.expanded += 1
        if self.expanded > MAX_EXPANDED_ITEMS:
            raise _TooLarge(f"{MAX_EXPANDED_ITEMS:,} layers")
        if kind == "residual":
            return self.lower_residual(body, ipath, name, path, shape, dtype, env, inherited)
        if kind in self.spec.blocks:
            return self.lower_call(kind, body, ipath, name, path, shape, dtype, inherited)
        return self.lower_layer(kind, body, ipath, name, path, shape, dtype, inherited)

    def container_context(self, body: dict, kpath: tuple, label: str, inherited: tuple) -> tuple:
        init = self.parse_container_init(body.get("init") or {}, kpath + ("init",)) if "init" in body else {}
        allow = self.parse_allow(body.get("allow"), kpath + ("allow",)) if "allow" in body else {}
        return inherited + ((label, init, allow),) if init or allow else inherited

    def lower_residual(self, body, ipath, name, path, shape, dtype, env, inherited):
        kpath = ipath + ("residual",)
        for key in body:
            if key not in RESIDUAL_KEYS:
                self.error(kpath + (key,), "NS003", f"unknown key `{key}` in residual",
                           did_you_mean(key, RESIDUAL_KEYS) or "allowed: branch, shortcut, name, repeat, init, allow",
                           key=True)
                raise _Abort
        if "branch" not in body:
            self.error(ipath, "NS009", "missing required argument `branch` of residual",
                       "write `residual: [items]` or `residual: {branch: [...], shortcut: [...]}`")
            raise _Abort
        ctx = self.container_context(body, kpath, f"residual {path}", inherited)
        for part in ("branch", "shortcut"):
            if part in body and not isinstance(body[part], list):
                self.error(kpath + (part,), "NS004", f"`{part}` must be a list of items")
                raise _Abort
        if not body["branch"]:
            self.error(kpath + ("branch",), "NS004", "a residual's branch is empty: the block would compute x + x",
                       "give the branch at least one item")
            raise _Abort
        if shape is not None and dtype != "float32":
            self.error(ipath, "NS104", "a residual needs a float input, got integer ids")
            raise _Abort
        # `residual: [items]` is the branch itself: its items sit directly under `residual` in the document
        branch_path = kpath + ("branch",) if kpath + ("branch",) in self.doc.spans else kpath
        b_items, b_shape, _ = self.lower_sequence(body["branch"], branch_path, f"{path}.branch", shape,
                                                  dtype, env, ctx)
        branch = Sequence(f"{path}.branch", "branch", "branch", b_items, shape, b_shape,
                          self.doc.span(branch_path))
        shortcut = None
        s_shape = shape
        if body.get("shortcut"):
            s_items, s_shape, _ = self.lower_sequence(body["shortcut"], kpath + ("shortcut",), f"{path}.shortcut",
                                                      shape, dtype, env, ctx)
            shortcut = Sequence(f"{path}.shortcut", "shortcut", "shortcut", s_items, shape, s_shape,
                                self.doc.span(kpath + ("shortcut",)))
        if b_shape is None or s_shape is None:
            raise _Abort  # the failure is reported already
        if b_shape != s_shape:
            which = "shortcut" if shortcut is not None else "identity shortcut"
            self.error(ipath, "NS101", f"residual branch gives {list(b_shape)} but the {which} gives "
                                       f"{list(s_shape)}",
                       "add a projection shortcut (e.g. a 1x1 conv with the branch's stride) or fix the branch")
            raise _Abort
        node = Residual(path, name, branch, shortcut, shape, b_shape, self.doc.span(ipath))
        node.out_dtype = "float32"
        return node

    def lower_call(self, block_name, body, ipath, name, path, shape, dtype, inherited):
        block = self.spec.blocks[block_name]
        kpath = ipath + (block_name,)
        self.called_blocks.add(block_name)
        env = {}
        for key, value in body.items():
            if key in ITEM_KEYS:
                continue
            if key not in block.args:
                self.error(kpath + (key,), "NS105", f"block `{block_name}` has no argument `{key}`",
                           did_you_mean(key, block.args) or f"its arguments: {', '.join(block.args) or 'none'}",
                           key=True)
                raise _Abort
            env[key] = value
        for arg, default in block.args.items():
            if arg not in env:
                if default == "required":
                    self.error(ipath, "NS105", f"block `{block_name}` needs argument `{arg}`",
                               f"add `{arg}: ...` to the call")
                    raise _Abort
                env[arg] = default
        ctx = self.container_context(body, kpath, f"block call {path}", inherited)
        self.calls.append((path, self.doc.span(ipath)))
        self.block_stack.append(block_name)
        try:
            items, out_shape, out_dtype = self.lower_sequence(block.layers, ("blocks", block_name, "layers"), path,
                                                              shape, dtype, env, ctx)
        finally:
            self.calls.pop()
            self.block_stack.pop()
        seq = Sequence(path, name, "block", items, shape, out_shape, self.doc.span(ipath), block=block_name)
        seq.out_dtype = out_dtype
        return seq

    def refuse_arg_refs(self, raw, path: tuple) -> None:
        """Outside a block body there is no argument for a `$name` to stand for."""
        found = []
        stack = [(raw, path)]
        while stack:
            value, where = stack.pop()
            if isinstance(value, str) and ARG_REF.match(value):
                found.append((where, value))
            elif isinstance(value, list):
                stack.extend((v, where + (i,)) for i, v in enumerate(value))
            elif isinstance(value, dict):
                stack.extend((v, where + (k,)) for k, v in value.items())
        for where, value in sorted(found, key=lambda f: (self.doc.span(f[0]).line, self.doc.span(f[0]).column)):
            self.error(where, "NS105", f"`{value}` refers to a block argument, but this item is not in a block body",
                       "write the value itself, or move the item into a block that declares the argument")
        if found:
            raise _Abort

    def substitute(self, raw, path: tuple, env: dict):
        self.substituted += 1
        if self.substituted > MAX_EXPANDED_VALUES:
            raise _TooLarge(f"{MAX_EXPANDED_VALUES:,} values in block bodies")
        block = self.block_stack[-1] if self.block_stack else None
        if isinstance(raw, str):
            match = ARG_REF.match(raw)
            if match:
                arg = match.group(1)
                if arg not in env:
                    self.error(path, "NS105", f"`${arg}` is not an argument of block `{block}`",
                               did_you_mean(arg, env) or f"declare it under `args:` of `{block}`")
                    raise _Abort
                return env[arg]
            return raw
        if isinstance(raw, list):
            return [self.substitute(v, path + (i,), env) for i, v in enumerate(raw)]
        if isinstance(raw, dict):
            out = {}
            for key, value in raw.items():
                # items nested in a block body that call other blocks keep their own `$` scope: a block
                # body is substituted only with its own arguments, so nothing below is special.
                out[key] = self.substitute(value, path + (key,), env)
            return out
        return raw

    # -- layers --------------------------------------------------------------
    def lower_layer(self, kind_name, body, ipath, name, path, shape, dtype, inherited):
        kind = KINDS[kind_name]
        kpath = ipath + (kind_name,)
        try:
            model = kind.args.model_validate(body)
        except ValidationError as exc:
            for diag in pydantic_diagnostics(exc, body, self.doc, kpath, kind.args.model_fields,
                                             what=f"`{kind_name}`"):
                self.report(diag)
            raise _Abort from None
        args = model.model_dump(exclude=set(ITEM_KEYS))
        if shape is None:  # an earlier item failed: check only what does not depend on the input
            if body.get("init") is not None:
                self.parse_layer_init(body["init"], kpath + ("init",), kind_name, kind.roles(args))
            if body.get("allow") is not None:
                self.parse_allow(body["allow"], kpath + ("allow",))
            raise _Abort
        if dtype != "float32" and kind_name != "embedding":
            self.error(ipath, "NS104", f"`{kind_name}` needs a float input, got integer ids {list(shape)}",
                       "integer ids feed an `embedding` layer first")
            raise _Abort
        if kind_name == "embedding" and dtype != "int64":
            self.error(ipath, "NS104", f"`embedding` needs integer ids, got a float input {list(shape)}",
                       "declare the input as `input: {shape: [T], dtype: int64}`")
            raise _Abort
        try:
            out_shape = kind.infer(args, shape, dtype)
            geometry = {}
            if kind.category == "conv":
                geometry = conv_geometry(args, kind.ndim)
            elif kind.category == "pool":
                geometry = pool_geometry(args, kind.ndim)
            if any(s < 1 for s in out_shape):
                raise ShapeError("NS102", f"output size {list(out_shape)} has an axis below 1")
        except ShapeError as exc:
            target = kpath + (exc.arg,) if exc.arg and exc.arg in body else ipath
            msg = exc.message if exc.code == "NS004" else f"`{kind_name}` on input {list(shape)}: {exc.message}"
            self.error(target, exc.code, msg, exc.hint or SHAPE_HINTS.get(exc.code, ""))
            raise _Abort from None
        layer = Layer(path, name, kind_name, args, geometry, shape, out_shape, dtype,
                      "float32", self.doc.span(ipath), ipath, calls=tuple(self.calls))
        roles = kind.roles(args)
        own_init = {}
        if "init" in body and body["init"] is not None:
            own_init = self.parse_layer_init(body["init"], kpath + ("init",), kind_name, roles)
        elif "init" in body:
            self.error(kpath + ("init",), "NS004", "`init` must be a mapping role -> initializer")
        if "allow" in body and body["allow"] is not None:
            layer.allow = self.parse_allow(body["allow"], kpath + ("allow",))
        for _label, _, allow in inherited:
            for code, waiver in allow.items():
                layer.allow.setdefault(code, waiver)
        if kind.tensors is not None:
            for ts in kind.tensors(args, shape):
                init, origin, span = self.resolve_init(kind_name, ts.role, own_init, inherited, ipath)
                layer.tensors[ts.role] = Tensor(f"{path}.{ts.role}", ts.role, ts.shape, ts.fan_in, ts.fan_out,
                                                init, origin, span, layer)
        return layer

    def resolve_init(self, kind, role, own, inherited, ipath):
        if role in own:
            spec = own[role]
            return spec, "layer", spec.span
        for label, init, _ in reversed(inherited):
            for key in ((kind, role), (role,)):
                if key in init:
                    spec = init[key]
                    return spec, label, spec.span
        for key, origin in (((kind, role), f"init.{kind}.{role}"), ((role,), f"init.{role}")):
            if key in self.model_init:
                self.model_init_used.add(key)
                spec = self.model_init[key]
                return spec, origin, spec.span
        return InitSpec("torch_default", {}), "default", None

    def check_unused_model_init(self) -> None:
        for key in self.model_init:
            if key in self.model_init_used:
                continue
            path = ("init",) + key
            what = f"init.{'.'.join(key)}"
            self.error(path, "NS212", f"the default `{what}` applies to no tensor",
                       "every matching tensor sets its own initializer, or no layer has this kind/role; remove it",
                       key=True)

    # -- init and allow parsing ----------------------------------------------
    def parse_layer_init(self, raw, path, kind, roles) -> dict:
        if not isinstance(raw, dict):
            self.error(path, "NS004", "`init` must be a mapping role -> initializer, e.g. `init: {weight: zeros}`")
            return {}
        out = {}
        for role, value in raw.items():
            if role not in roles:
                if roles:
                    hint = did_you_mean(role, roles) or f"`{kind}` here has: {', '.join(roles)}"
                else:
                    hint = f"`{kind}` has no tensors to initialise"
                extra = " (bias: false)" if role == "bias" and kind in KINDS and KINDS[kind].category in (
                    "linear", "conv") else ""
                self.error(path + (role,), "NS003", f"`{kind}` has no tensor `{role}`{extra}", hint, key=True)
                continue
            spec = self.parse_init(value, path + (role,))
            if spec is not None:
                out[role] = spec
        return out

    def parse_container_init(self, raw, path, model: bool = False) -> dict:
        """Model/block-call/residual init: role -> init, or kind -> {role -> init}; keyed by tuples."""
        out: dict = {}
        if not isinstance(raw, dict):
            self.error(path, "NS004", "`init` must be a mapping")
            return out
        for key, value in raw.items():
            if key in ROLES:
                spec = self.parse_init(value, path + (key,))
                if spec is not None:
                    out[(key,)] = spec
            elif key in KINDS:
                kind = KINDS[key]
                roles = kind.roles({"bias": True})
                if not roles:
                    self.error(path + (key,), "NS003", f"`{key}` has no tensors to initialise", key=True)
                    continue
                if not isinstance(value, dict):
                    self.error(path + (key,), "NS004", f"`init.{key}` must map roles ({', '.join(roles)}) to "
                                                       "initializers")
                    continue
                for role, sub in value.items():
                    if role not in roles:
                        self.error(path + (key, role), "NS003", f"`{key}` has no tensor `{role}`",
                                   did_you_mean(role, roles) or f"its roles: {', '.join(roles)}", key=True)
                        continue
                    spec = self.parse_init(sub, path + (key, role))
                    if spec is not None:
                        out[(key, role)] = spec
            else:
                self.error(path + (key,), "NS003", f"unknown key `{key}` in init: not a role or a layer kind",
                           did_you_mean(key, list(ROLES) + list(KINDS)) or "roles: weight, bias, gamma, beta",
                           key=True)
        return out

    def parse_init(self, raw, path) -> Optional[InitSpec]:
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
                    self.error(path + (name,), "NS004", f"`{name}` has no short form; give its arguments as a "
                                                        "mapping", f"e.g. `{{{name}: {{...}}}}`")
                    return None
        else:
            self.error(path, "NS004", "an initializer is a name or a one-key mapping `name: {arguments}`",
                       "e.g. `zeros`, `{constant: 0.1}`, `{normal: {std: 0.02}}`")
            return None
        if not isinstance(name, str) or name not in inits.REGISTRY:
            self.error(path if isinstance(raw, str) else path + (name,), "NS008",
                       f"unknown initializer `{name}`",
                       did_you_mean(name, inits.NAMES) or "`nnspec initializers` lists them",
                       key=not isinstance(raw, str))
            return None
        init = inits.REGISTRY[name]
        base = path if isinstance(raw, str) else path + (name,)
        try:
            model = init.args.model_validate(args_raw)
        except ValidationError as exc:
            if short:
                for diag in pydantic_diagnostics(exc, args_raw, self.doc, base[:-1], init.args.model_fields):
                    self.report(Diagnostic.at(self.doc.span(base), diag.code, diag.message.replace(
                        f"`{init.short}`", f"`{name}`"), diag.hint))
            else:
                for diag in pydantic_diagnostics(exc, args_raw, self.doc, base, init.args.model_fields,
                                                 what=f"`{name}`"):
                    self.report(diag)
            return None
        args = model.model_dump()
        problems = inits.check_arguments(name, args)
        for arg, message in problems:
            target = base if short else base + (arg,)
            self.error(target, "NS211", f"{name}: {message}")
        if problems:
            return None
        return InitSpec(name, args, self.doc.span(path))

    def parse_allow(self, raw, path) -> dict:
        out = {}
        if not isinstance(raw, dict):
            self.error(path, "NS004", "`allow` must map rule codes to reasons, e.g. `allow: {NS201: \"why\"}`")
            return out
        for code, reason in raw.items():
            if code not in CODES:
                self.error(path + (code,), "NS213", f"`allow` names unknown rule code `{code}`",
                           did_you_mean(code, CODES) or "`nnspec rule --list` lists the codes", key=True)
                continue
            if not isinstance(reason, str) or not reason.strip():
                self.error(path + (code,), "NS004", f"the waiver of {code} needs a reason (non-empty text)",
                           f'e.g. `{code}: "zero-init residual tail"`')
                continue
            out[code] = (reason, self.doc.key_span(path + (code,)))
        return out


SHAPE_HINTS = {
    "NS102": "use a smaller kernel or dilation, add padding, or downsample less before this layer",
    "NS103": "make the input channels and `out` multiples of `groups`",
    "NS104": "check `input` and the layers before this one (`flatten` turns [C, H, W] into [C*H*W])",
}


def _arg_refs(raw) -> set:
    """Every `$name` a block body refers to, anywhere in its raw data."""
    if isinstance(raw, str):
        match = ARG_REF.match(raw)
        return {match.group(1)} if match else set()
    values = raw.values() if isinstance(raw, dict) else raw if isinstance(raw, list) else ()
    found: set = set()
    for value in values:
        found |= _arg_refs(value)
    return found


def _called_names(items) -> list:
    names = []
    for item in items or []:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict) and len(item) == 1:
            kind, body = next(iter(item.items()))
            names.append(kind)
            if kind == "residual":
                parts = body if isinstance(body, list) else [body.get("branch"), body.get("shortcut")] \
                    if isinstance(body, dict) else []
                if isinstance(body, list):
                    names.extend(_called_names(body))
                else:
                    for part in parts:
                        names.extend(_called_names(part if isinstance(part, list) else []))
    return names


def _reaches(graph: dict, start: str, target: str) -> bool:
    seen, stack = set(), list(graph.get(start, ()))
    while stack:
        node = stack.pop()
        if node == target:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, ()))
    return False
