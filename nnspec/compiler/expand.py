"""The expansion pass: the spec's `layers` -> a tree of named items.

Blocks are expanded with their arguments substituted, repeats unrolled, every
item named, each layer's arguments validated, and the `init`/`allow` of block
calls and residuals read into the context their layers inherit. Shapes are
the next pass's job.
"""

from __future__ import annotations

from typing import Optional

from nnspec.compiler.arithmetic import ExpressionError, evaluate, tokens_of
from nnspec.compiler.blocks import ARG_REF, ITEM_KEYS
from nnspec.compiler.merges import expand_merge
from nnspec.compiler.report import Abort, Recorder, Scoped
from nnspec.compiler.syntax import parse_allow, parse_container_init
from nnspec.compiler.tree import Context, FailedItem, GroupItem, LayerItem
from nnspec.names import did_you_mean, identifier_problem
from nnspec.vocabulary import fast
from nnspec.vocabulary.kinds import KINDS
from nnspec.vocabulary.merges import MERGES

CONTAINERS = ("residual",) + MERGES

# Blocks and `repeat` multiply (a block of 100 repeats called 100 times in a block called 100 times...): bound
# the expanded model like the loader bounds alias expansion, so that `check` stays fast on any input.
MAX_EXPANDED_ITEMS = 10_000
MAX_EXPANDED_VALUES = 200_000  # keys and values copied into block bodies, all calls together
MAX_BLOCK_DEPTH = 32  # block calls inside block calls: the emitted code nests one constructor per level


class Expansion:
    """What the pass gives: the tree (None when the model expands beyond the limits) and whether an item failed."""

    def __init__(self, root: Optional[GroupItem], failed: bool, contexts: list = ()):
        self.root, self.failed, self.contexts = root, failed, list(contexts)


class _TooLarge(Exception):
    """Stop expanding the whole model: blocks and `repeat` expand it beyond the limits (reported)."""


def expand(spec, bodies: dict, out: Recorder) -> Expansion:
    """Expand `spec.layers`; `bodies` maps each block name to the items it expands to."""
    expander = _Expander(spec, bodies, out)
    root = GroupItem("model", "", "", out.doc.span(("layers",)))
    try:
        root.items = expander.sequence(spec.layers, ("layers",), "", env=None, inherited=())
    except _TooLarge as exc:
        out.error(expander.top_item, "NS005", f"blocks and `repeat` expand the model to more than {exc}",
                  "a spec of this size is almost certainly a mistake (or an expansion bomb); reduce `repeat`")
        return Expansion(None, True)
    return Expansion(root, expander.failed, expander.contexts)


class _Expander:
    def __init__(self, spec, bodies: dict, out: Recorder):
        self.spec, self.bodies, self.recorder, self.doc = spec, bodies, out, out.doc
        self.calls: list[tuple[str, object]] = []  # block-call stack: (path, span)
        self.block_stack: list[str] = []
        self.failed = False  # an item could not be expanded: later shapes are unknown, no graph
        self.expanded = 0  # items instantiated so far, repeats and block bodies included
        self.substituted = 0  # values copied into block bodies so far
        self.top_item: tuple = ("layers",)  # the top-level item being expanded
        self.contexts: list = []  # every block call's, residual's and merge's init/allow
        self.sizes: dict = {}  # id(argument value) -> its size in values, counted once per value

    @property
    def out(self) -> Scoped:
        return Scoped(self.recorder, tuple(self.calls))

    def error(self, path: tuple, code: str, message: str, hint: str = "", key: bool = False) -> None:
        self.out.error(path, code, message, hint, key)

    # -- sequences and items -------------------------------------------------
    def sequence(self, raw_items: list, doc_path: tuple, prefix: str, env: Optional[dict], inherited: tuple) -> list:
        items: list = []
        counters: dict[str, int] = {}
        names: dict[str, int] = {}
        for index, raw in enumerate(raw_items):
            ipath = doc_path + (index,)
            if env is None and doc_path == ("layers",):
                self.top_item = ipath
            try:
                written = raw
                if env is not None:
                    raw = self.substitute(raw, ipath, env)
                else:
                    self.refuse_arg_refs(raw, ipath)
                kind, body = self.split_item(raw, ipath)
                name = self.name_of(kind, body, ipath, counters, names)
                path = f"{prefix}.{name}" if prefix else name
                items.append(self.item(kind, body, ipath, name, path, env, inherited, _written_repeat(written)))
            except Abort:
                # Keep going so that every problem (and every block call a body problem applies to) is
                # reported; what follows has an unknown input shape.
                self.failed = True
                items.append(FailedItem(ipath))
        return items

    def name_of(self, kind: str, body: dict, ipath: tuple, counters: dict, names: dict) -> str:
        counters[kind] = counters.get(kind, 0) + 1
        name = body.get("name")
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
            self.error(ipath + ((kind, "name") if "name" in body else ()), "NS106",
                       f"duplicate name `{name}` in this scope; first used on line {names[name]}",
                       "give each item a unique `name`")
            self.failed = True
        names.setdefault(name, self.doc.span(ipath).line)
        return name

    def split_item(self, raw, ipath: tuple) -> tuple[str, dict]:
        if isinstance(raw, str):
            kind, body = raw, None
        elif isinstance(raw, dict) and len(raw) == 1:
            kind, body = next(iter(raw.items()))
        elif isinstance(raw, dict):
            self.error(ipath, "NS004", f"an item is one kind with its arguments, got {len(raw)} keys: "
                                       + ", ".join(f"`{k}`" for k in raw),
                       "indent the arguments under the kind: `- linear: {out: 10, bias: false}`")
            raise Abort
        else:
            self.error(ipath, "NS004", "an item is a kind name or a one-key mapping `kind: {arguments}`",
                       "e.g. `- relu` or `- linear: {out: 10}`")
            raise Abort
        if kind not in KINDS and kind not in CONTAINERS and kind not in self.bodies:
            hint = did_you_mean(kind, list(KINDS) + list(CONTAINERS) + list(self.bodies))
            self.error(ipath if isinstance(raw, str) else ipath + (kind,), "NS008",
                       f"unknown layer kind or block `{kind}`", hint or "see `nnspec rule NS008` for the kinds",
                       key=not isinstance(raw, str))
            raise Abort
        if body is None:
            body = {}
        if kind == "residual" and isinstance(body, list):
            body = {"branch": body}
        elif kind in MERGES and isinstance(body, list):
            body = {"branches": body}
        if not isinstance(body, dict):
            self.error(ipath + (kind,), "NS004", f"the arguments of `{kind}` must be a mapping, got "
                                                 f"{type(body).__name__}", f"e.g. `{kind}: {{...}}`")
            raise Abort
        return kind, body

    def item(self, kind, body, ipath, name, path, env, inherited, count=None):
        repeat = body.get("repeat")
        if repeat is None:
            return self.one(kind, body, ipath, name, path, env, inherited)
        if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
            self.error(ipath + (kind, "repeat"), "NS004", f"`repeat` must be an integer >= 1, got {repeat!r}")
            raise Abort
        body = {k: v for k, v in body.items() if k != "repeat"}
        copies = [self.one(kind, body, ipath, str(i), f"{path}.{i}", env, inherited) for i in range(repeat)]
        return GroupItem("repeat", name, path, self.doc.span(ipath), copies, count=repeat if count is None else count)

    def one(self, kind, body, ipath, name, path, env, inherited):
        self.expanded += 1
        if self.expanded > MAX_EXPANDED_ITEMS:
            raise _TooLarge(f"{MAX_EXPANDED_ITEMS:,} layers")
        if kind == "residual" or kind in MERGES:
            return expand_merge(self, kind, body, ipath, name, path, env, inherited)
        if kind in self.bodies:
            return self.call(kind, body, ipath, name, path, inherited)
        return self.layer(kind, body, ipath, name, path, inherited)

    def container_context(self, body: dict, kpath: tuple, label: str, inherited: tuple) -> tuple:
        init = parse_container_init(self.out, body.get("init") or {}, kpath + ("init",)) if "init" in body else {}
        allow = parse_allow(self.out, body.get("allow"), kpath + ("allow",)) if "allow" in body else {}
        if not init and not allow:
            return inherited
        context = Context(label, init, allow, kpath + ("init",), tuple(self.calls))
        self.contexts.append(context)
        return inherited + (context,)

    def call(self, block_name, body, ipath, name, path, inherited):
        block = self.spec.blocks[block_name]
        kpath = ipath + (block_name,)
        if block_name in self.block_stack:  # through an argument (`- $x` given this block): the static check misses it
            chain = " -> ".join(self.block_stack[self.block_stack.index(block_name):] + [block_name])
            self.error(ipath, "NS105", f"block `{block_name}` calls itself through its arguments ({chain})",
                       "a block may not be recursive, also not through an argument that names a block")
            raise Abort
        if len(self.block_stack) >= MAX_BLOCK_DEPTH:
            self.error(ipath, "NS005", f"blocks call blocks more than {MAX_BLOCK_DEPTH} deep here",
                       "flatten the chain of blocks; no architecture needs this depth of definitions")
            raise Abort
        env = {}
        for key, value in body.items():
            if key in ITEM_KEYS:
                continue
            if key not in block.args:
                self.error(kpath + (key,), "NS105", f"block `{block_name}` has no argument `{key}`",
                           did_you_mean(key, block.args) or f"its arguments: {', '.join(block.args) or 'none'}",
                           key=True)
                raise Abort
            env[key] = value
        for arg, default in block.args.items():
            if arg not in env:
                if default == "required":
                    self.error(ipath, "NS105", f"block `{block_name}` needs argument `{arg}`",
                               f"add `{arg}: ...` to the call")
                    raise Abort
                env[arg] = default
        ctx = self.container_context(body, kpath, f"block call {path}", inherited)
        self.calls.append((path, self.doc.span(ipath)))
        self.block_stack.append(block_name)
        try:
            items = self.sequence(self.bodies[block_name], ("blocks", block_name, "layers"), path, env, ctx)
        finally:
            self.calls.pop()
            self.block_stack.pop()
        return GroupItem("block", name, path, self.doc.span(ipath), items, block=block_name, args=env)

    def layer(self, kind_name, body, ipath, name, path, inherited):
        kind = KINDS[kind_name]
        kpath = ipath + (kind_name,)
        args = fast.validate(kind.args, body)
        if args is None:  # not plainly well-formed: the pydantic model decides, and says what is wrong
            from pydantic import ValidationError

            from nnspec.schema.errors import pydantic_diagnostics

            try:
                args = kind.args.model_validate(body).model_dump(exclude=set(ITEM_KEYS))
            except ValidationError as exc:
                for diag in pydantic_diagnostics(exc, body, self.doc, kpath, kind.args.model_fields,
                                                 what=f"`{kind_name}`"):
                    self.out.report(diag)
                raise Abort from None
        for key in ITEM_KEYS:
            args.pop(key, None)
        return LayerItem(kind_name, args, body, ipath, name, path, tuple(self.calls), inherited)

    # -- block arguments -------------------------------------------------------
    def refuse_arg_refs(self, raw, path: tuple) -> None:
        """Outside a block body there is no argument for a `$name` to stand for."""
        found = []
        stack = [(raw, path)]
        while stack:
            value, where = stack.pop()
            if isinstance(value, str) and (ARG_REF.match(value) or tokens_of(value) is not None):
                found.append((where, value))
            elif isinstance(value, list):
                stack.extend((v, where + (i,)) for i, v in enumerate(value))
            elif isinstance(value, dict):
                stack.extend((v, where + (k,)) for k, v in value.items())
        for where, value in sorted(found, key=lambda f: (self.doc.span(f[0]).line, self.doc.span(f[0]).column)):
            self.error(where, "NS105", f"`{value}` refers to a block argument, but this item is not in a block body",
                       "write the value itself, or move the item into a block that declares the argument")
        if found:
            raise Abort

    def size_of(self, value) -> int:
        """Values in an argument (a list of 1,000 numbers is 1,000; text counts by its length), once per object."""
        if not isinstance(value, (list, dict, str)):
            return 0
        key = id(value)
        if key not in self.sizes:
            self.sizes[key] = (value, _size(value))  # keep the object alive so its id stays its own
        return self.sizes[key][1]

    def substitute(self, raw, path: tuple, env: dict):
        self.substituted += 1
        if self.substituted > MAX_EXPANDED_VALUES:
            raise _TooLarge(f"{MAX_EXPANDED_VALUES:,} values in block bodies")
        if isinstance(raw, str):
            match = ARG_REF.match(raw)
            block = self.block_stack[-1] if self.block_stack else None
            if match:
                arg = match.group(1)
                if arg not in env:
                    self.error(path, "NS105", f"`${arg}` is not an argument of block `{block}`",
                               did_you_mean(arg, env) or f"declare it under `args:` of `{block}`")
                    raise Abort
                value = env[arg]
                self.substituted += self.size_of(value)  # shared, not copied; but every use is validated
                if self.substituted > MAX_EXPANDED_VALUES:
                    raise _TooLarge(f"{MAX_EXPANDED_VALUES:,} values in block bodies")
                return value
            if tokens_of(raw) is not None:
                try:
                    return evaluate(raw, env, block)
                except ExpressionError as exc:
                    hint = exc.hint or (did_you_mean(exc.name, env) or f"declare it under `args:` of `{block}`"
                                        if exc.name else "")
                    self.error(path, exc.code, exc.message, hint)
                    raise Abort from None
            return raw
        if isinstance(raw, list):
            return [self.substitute(v, path + (i,), env) for i, v in enumerate(raw)]
        if isinstance(raw, dict):
            # items nested in a block body that call other blocks keep their own `$` scope: a block body is
            # substituted only with its own arguments, so nothing below is special.
            return {key: self.substitute(value, path + (key,), env) for key, value in raw.items()}
        return raw


def _written_repeat(raw):
    """The `repeat` of an item as written, before block arguments are substituted (`$n`), or None."""
    if isinstance(raw, dict) and len(raw) == 1:
        body = next(iter(raw.values()))
        if isinstance(body, dict):
            return body.get("repeat")
    return None


def _size(value) -> int:
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        total += 1 + (len(item) // 64 if isinstance(item, str) else 0)
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return total
