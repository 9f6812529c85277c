"""Block classes of emitted code: one class per spec block, its constructor taking the block's arguments.

The IR keeps, for every block call, the values of its arguments (`Sequence.args`) and, for every
`repeat`, its count as written (`Sequence.count`). A backend lowers each call of a block to a tree
of constructor `Call`s with concrete values; `unify` lines up the trees of all calls of a block and
replaces every value that differs between calls with the Python expression (a block argument, an
expression written in the block's body such as `$ch * 4`, or the block's input channels `in_ch`)
that gives it in every call. Calls that no expression reconciles (a different layer kind, another
number of layers) are split into classes of their own. A `repeat` whose copies lower to the same
tree becomes a loop (`Loop`).
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass, field
from typing import Any, Optional

from nnspec.compiler.arithmetic import ExpressionError, evaluate, tokens_of
from nnspec.compiler.backends.expr import Arg, Call, Const, flat
from nnspec.compiler.blocks import ARG_REF
from nnspec.compiler.ir import Graph, Sequence, iter_nodes

IN_CH = "in_ch"  # the parameter of a block class that stands for its input's channels


@dataclass(frozen=True)
class Loop:
    """`*[item for _ in range(count)]`, after `first` when the first copy differs (`range(1, count)`)."""

    item: Any
    count: Any
    first: Any = None


@dataclass
class BlockClass:
    name: str  # Python class name
    block: str  # spec block name
    params: list  # (python name, annotation, default or REQUIRED); IN_CH first when used
    body: list  # (child name, comment, symbolic tree)
    line: int
    names: dict = field(default_factory=dict)  # spec argument name -> Python parameter name


REQUIRED = object()


class Mismatch(Exception):
    """Trees that no expression reconciles; `keys[i]` tells the calls apart at the first difference."""

    def __init__(self, keys: list):
        super().__init__("mismatch")
        self.keys = keys


def python_names(args: dict, taken: set) -> dict:
    """Block argument name -> a Python parameter name (a keyword or a name the class needs gets `_`)."""
    import builtins

    out = {}
    for i, name in enumerate(args):
        ok = isinstance(name, str) and name.isascii() and name.isidentifier() and not name.startswith("_") \
            and not hasattr(builtins, name)
        py = name if ok else f"arg_{i}"
        while py in taken or py in out.values() or keyword.iskeyword(py):
            py += "_"
        out[name] = py
    return out


def literal_ok(value) -> bool:
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, list):
        return all(literal_ok(v) for v in value)
    return False


def expressions(raw, names: dict) -> list:
    """(python code, written text) of every `$arg` and arithmetic expression in a block body."""
    found: dict = {}
    stack = [raw]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if ARG_REF.match(value):
                continue  # a plain `$arg` is the argument itself
            tokens = tokens_of(value)
            if tokens is not None and all(v in names for k, v in tokens if k == "name"):
                code = " ".join(names[v] if k == "name" else v for k, v in tokens)
                code = code.replace("( ", "(").replace(" )", ")")
                found.setdefault(code, value)
        elif isinstance(value, list):
            stack.extend(reversed(value))
        elif isinstance(value, dict):
            stack.extend(reversed(list(value.values())))
    return list(found.items())


def candidates(call: Sequence, names: dict, exprs: list, block: str) -> dict:
    """Python expression -> its value in this call of the block: the arguments, the body's expressions,
    the input channels."""
    env = {}
    for name, value in (call.args or {}).items():
        if name in names and literal_ok(value):
            env[names[name]] = value
    for code, text in exprs:
        try:
            env[code] = evaluate(text, call.args or {}, block)
        except (ExpressionError, TypeError, ValueError, ZeroDivisionError):
            pass
    env[PATH] = call.path
    shape = call.in_shape
    if shape is not None and getattr(shape, "layout", None) is not None and len(shape):
        env[IN_CH] = shape.channels
    return env


def same(a, b) -> bool:
    return type(a) is type(b) and a == b


def unify(trees: list, envs: list, defaults) -> Any:
    """One symbolic tree for the concrete `trees` (one per call), or Mismatch."""
    first = trees[0]
    if all(isinstance(t, Call) for t in trees):
        if any(t.func != first.func or t.method != first.method for t in trees):
            raise Mismatch([t.func for t in trees])
        positional = [len([a for a in t.args if a.keyword is None]) for t in trees]
        if len(set(positional)) != 1:
            raise Mismatch(positional)
        args = []
        for i in range(positional[0]):
            values = [[a for a in t.args if a.keyword is None][i] for t in trees]
            args.append(Arg(unify([a.value for a in values], envs, defaults), None, values[0].comment))
        fullest = max(trees, key=lambda t: len(t.args))
        keywords = list(dict.fromkeys([a.keyword for a in fullest.args if a.keyword is not None]
                                      + [a.keyword for t in trees for a in t.args if a.keyword is not None]))
        known = None
        for key in keywords:
            values, comment = [], None
            for t in trees:
                found = [a for a in t.args if a.keyword == key]
                if found:
                    values.append(found[0].value)
                    comment = comment or found[0].comment
                    continue
                known = defaults(first.func) if known is None else known
                if key not in known:
                    raise Mismatch([tuple(a.keyword for a in t.args) for t in trees])
                values.append(known[key])
            value = unify(values, envs, defaults)
            if not isinstance(value, Const) and key in (known or defaults(first.func)) and \
                    same(value, (known or defaults(first.func))[key]):
                continue  # the constructor's default in every call: leave it out
            args.append(Arg(value, key, comment))
        return Call(first.func, tuple(args), first.method)
    if all(isinstance(t, Loop) for t in trees):
        if any(t.first is not None for t in trees):
            firsts = [t.first if t.first is not None else t.item for t in trees]
            head = unify(firsts, envs, defaults)
        else:
            head = None
        return Loop(unify([t.item for t in trees], envs, defaults), leaf([t.count for t in trees], envs), head)
    if all(isinstance(t, (list, tuple)) for t in trees) and len({(type(t), len(t)) for t in trees}) == 1:
        try:
            items = [unify([t[i] for t in trees], envs, defaults) for i in range(len(first))]
            return type(first)(items)
        except Mismatch:
            return leaf(trees, envs)
    if any(isinstance(t, (Call, Loop)) for t in trees):
        raise Mismatch([type(t).__name__ for t in trees])
    return leaf(trees, envs)


PATH = "\0path"  # in a candidate environment: the path of the block call (Keras layer names start with it)


def leaf(values: list, envs: list):
    if all(isinstance(v, str) and PATH in env and v.startswith(env[PATH] + ".") for v, env in zip(values, envs)):
        suffixes = {v[len(env[PATH]):] for v, env in zip(values, envs)}
        if len(suffixes) == 1 and all(c.isalnum() or c in "._" for c in next(iter(suffixes))):
            return Const('f"{name}' + suffixes.pop() + '"', None)
    if all(same(v, values[0]) for v in values):
        return values[0]
    for code in envs[0]:
        if code == PATH:
            continue
        if all(code in env and same(env[code], v) for env, v in zip(envs, values)):
            return Const(code, None)
    if all(type(v) is int for v in values):  # a multiple of one (a fan-in: in_ch * 9)
        for code in envs[0]:
            if code == PATH or " " in code:
                continue
            bases = [env.get(code) for env in envs]
            if all(type(b) is int and b > 0 and v % b == 0 for b, v in zip(bases, values)):
                factors = {v // b for b, v in zip(bases, values)}
                if len(factors) == 1:
                    return Const(f"{code} * {factors.pop()}", None)
    raise Mismatch([repr(v) for v in values])  # one call never gets here: its values are all the same


def uses(tree, code: str) -> bool:
    if isinstance(tree, Const):
        return tree.code == code or tree.code.startswith(code + " ") or f" {code} " in f" {tree.code} " \
            or f"({code}" in tree.code or f"{code})" in tree.code
    if isinstance(tree, Call):
        return any(uses(a.value, code) for a in tree.args)
    if isinstance(tree, Loop):
        return uses(tree.item, code) or uses(tree.count, code) or uses(tree.first, code)
    if isinstance(tree, (list, tuple)):
        return any(uses(v, code) for v in tree)
    return False


def loop_of(copies: list, count) -> Any:
    """A repeat's copies (concrete trees) as a Loop when they allow one, else the plain list."""
    if len(copies) >= 2 and all(c == copies[1] for c in copies[2:]):
        if copies[0] == copies[1]:
            return Loop(copies[0], count)
        return Loop(copies[1], count, copies[0])
    if len(copies) == 1:
        return Loop(copies[0], count)
    return list(copies)


@dataclass
class Classes:
    """The classes of a model's blocks, filled innermost first."""

    taken: set
    by_call: dict = field(default_factory=dict)  # id(block call Sequence) -> BlockClass
    classes: list = field(default_factory=list)

    def claim(self, base: str) -> str:
        name, n = base, 2
        while name in self.taken:
            name, n = f"{base}{n}", n + 1
        self.taken.add(name)
        return name


def block_calls(root) -> list:
    """Every block call (Sequence of kind "block") below `root`, innermost first (one pass)."""
    from nnspec.compiler.ir import Merge

    heights: dict = {}
    calls: list = []

    def visit(node) -> int:
        children = node.items if isinstance(node, Sequence) else node.branches if isinstance(node, Merge) else ()
        best = max((visit(c) for c in children), default=0)
        if isinstance(node, Sequence) and node.kind == "block" and node is not root:
            heights[id(node)] = best + 1
            calls.append(node)
            return best + 1
        return best

    visit(root)
    return sorted(calls, key=lambda c: heights[id(c)])


def build_classes(graph, spec_blocks: dict, lower_body, defaults, class_name, taken: set, key=None) -> Classes:
    """Classes for every block call of `graph`. `lower_body(call, classes)` gives the concrete
    [(child name, comment, tree)] of one call (nested calls as their classes' constructor calls)."""
    out = Classes(set(taken))
    groups: dict = {}
    for call in block_calls(graph.root):
        extra = key(call) if key is not None else None
        groups.setdefault((call.block, tuple(c.name for c in call.items), extra), []).append(call)
    # a group's calls may sit at different depths: classify a group once all calls nested in it are
    pending = list(groups.items())
    nested = {key: {id(n) for c in group for n in block_calls(c)} for key, group in pending}
    while pending:
        index = next((i for i, (key, _) in enumerate(pending) if nested[key] <= out.by_call.keys()), 0)
        key, calls = pending.pop(index)
        block = key[0]
        definition = spec_blocks.get(block)
        args = dict(definition.args) if definition is not None else {}
        names = python_names(args, {"self", IN_CH, "x", "torch", "nn", "math", "super", "keras", "seed"})
        exprs = expressions(definition.layers, names) if definition is not None else []
        _classify(out, block, calls, args, names, exprs, lower_body, defaults, class_name, graph)
    return out


def _classify(out, block, calls, args, names, exprs, lower_body, defaults, class_name, graph) -> None:
    parts = [calls]
    while parts:
        part = parts.pop(0)
        bodies = [lower_body(call, out) for call in part]
        envs = [candidates(call, names, exprs, block) for call in part]
        try:
            body = []
            for i, (name, comment, _) in enumerate(bodies[0]):
                if any(len(b) != len(bodies[0]) or b[i][0] != name for b in bodies):
                    raise Mismatch([tuple(n for n, _, _ in b) for b in bodies])
                body.append((name, comment, unify([b[i][2] for b in bodies], envs, defaults)))
        except Mismatch as exc:
            if len(part) == 1:
                raise AssertionError(f"one call of block `{block}` does not unify with itself") from exc
            split: dict = {}
            for call, k in zip(part, exc.keys):
                split.setdefault(repr(k), []).append(call)
            if len(split) == 1:  # nothing tells them apart at that point: one class per call
                split = {str(i): [c] for i, c in enumerate(part)}
            parts = list(split.values()) + parts
            continue
        params = []
        used_in = any(uses(tree, IN_CH) for _, _, tree in body)
        if used_in:
            params.append((IN_CH, "int", REQUIRED))
        for name, default in args.items():
            values = [call.args.get(name) for call in part if call.args is not None]
            if not all(literal_ok(v) for v in values):
                continue
            annotation = _annotation(values)
            params.append((names[name], annotation, REQUIRED if default == "required" or not literal_ok(default)
                           else default))
        cls = BlockClass(out.claim(class_name(block)), block, params, body, graph.blocks[block].line
                         if block in graph.blocks else 0, names)
        out.classes.append(cls)
        for call in part:
            out.by_call[id(call)] = cls


def _annotation(values: list) -> Optional[str]:
    kinds = {type(v) for v in values}
    if kinds <= {int}:
        return "int"
    if kinds <= {int, float}:
        return "float"
    if kinds <= {bool}:
        return "bool"
    if kinds <= {str}:
        return "str"
    if kinds <= {list}:
        return "list"
    return None


def constructor_call(cls: BlockClass, call: Sequence) -> Call:
    """`Class(in_ch=..., arg=...)` for one block call, concrete; arguments equal to defaults left out."""
    args = []
    for name, _, default in cls.params:
        if name == IN_CH:
            args.append(Arg(call.in_shape.channels, IN_CH))
            continue
        if name.startswith("\0"):  # a backend's own leading parameters (Keras: the call's path)
            continue
        spec_name = next(k for k, v in cls.names.items() if v == name)
        value = call.args[spec_name]
        if default is not REQUIRED and same(value, default):
            continue
        args.append(Arg(value, name))
    return Call(cls.name, tuple(args))


def class_defaults(cls: BlockClass) -> dict:
    return {name: default for name, _, default in cls.params if default is not REQUIRED}


def collapse_repeats(prefixes: list, graph: Graph) -> list:
    """`encoder.0` ... `encoder.11` as `encoder` when they are every copy of the repeat `encoder`."""
    repeats = {n.path: len(n.items) for n in iter_nodes(graph.root) if isinstance(n, Sequence) and n.kind == "repeat"}
    out, seen = [], set(prefixes)
    for p in prefixes:
        parent = p.rpartition(".")[0]
        if parent in repeats and all(f"{parent}.{i}" in seen for i in range(repeats[parent])):
            if parent not in out:
                out.append(parent)
        else:
            out.append(p)
    return out


def parameter_texts(cls) -> list:
    """A block class's parameters as written in its signature: `name: annotation = default`."""
    out = []
    for name, annotation, default in cls.params:
        text = f"{name}: {annotation}" if annotation else name
        if default is not REQUIRED:
            text += f" = {flat(default, {})}" if annotation else f"={flat(default, {})}"
        out.append(text)
    return out
