"""Emitted PyTorch source: a class per spec block, loops for repeats, initialisation by rule.

Every layer's constructor comes from `torch_table.LAYERS`, as in `build`; `classes` lines up the
calls of each block into one class with the block's arguments. The `init` section becomes one
function, `spec_init`: an `if`/`return` per rule with its spec line, the exceptions (a layer's own
`init`, `init.paths`, block calls, residuals) first and the model-wide defaults by kind and role
after them, so that the first rule that applies is the one the spec gives the tensor. Each rule is
evaluated here for every tensor it reaches and compared with the build's initializer
(`torch_table.init_plan`); a tensor that the first rule to apply would give another value gets a
rule of its own before it, so the emitted model is the built one, bit for bit. Rules of one
initializer and spec line are then made one, and a rule's paths left out, wherever every tensor
keeps its value (the same check).
"""

from __future__ import annotations

import fnmatch
import json
import math
import os

from nnspec.compiler.backends import classes as cl
from nnspec.compiler.backends import torch_rules, torch_table
from nnspec.compiler.backends.expr import LINE_LENGTH, Arg, Call, Comp, Const, evaluate, flat, render
from nnspec.compiler.backends.structure import comment_for, runtime_source
from nnspec.compiler.ir import Graph, Layer, Merge, Sequence, iter_nodes
from nnspec.vocabulary import scaling

RUNTIME = "nnspec.compiler.backends.torch_runtime"
EMITTED = "nnspec.compiler.backends.torch_emitted"
RULES = "nnspec.compiler.backends.torch_rules"

# Module-level names of the emitted file that a generated class must not shadow.
RESERVED = frozenset({"OrderedDict", "Residual", "Merge", "SEED", "SPEC_ROLES", "Sequential", "fnmatchcase",
                      *torch_table.HELPERS})


# -- module trees ------------------------------------------------------------------

def concrete(node, graph: Graph, classes: cl.Classes):
    """The constructor tree of `node` with this call's values; block calls as their class's call."""
    if isinstance(node, Layer):
        return torch_table.LAYERS[node.kind](node)
    if isinstance(node, Merge):
        from nnspec.compiler.backends.torch_backend import merge_call

        return merge_call(node, lambda seq: _branch(seq, graph, classes))
    if node.kind == "repeat":
        copies = [concrete(c, graph, classes) for c in node.items]
        looped = cl.loop_of(copies, len(copies))
        return looped if isinstance(looped, cl.Loop) else Call("nn.Sequential", tuple(Arg(c) for c in looped))
    if node.kind == "block" and id(node) in classes.by_call:
        return cl.constructor_call(classes.by_call[id(node)], node)
    return _branch(node, graph, classes)


def _branch(seq: Sequence, graph: Graph, classes) -> Call:
    return Call("sequential", tuple(Arg(concrete(c, graph, classes), c.name, comment_for(c, graph.file))
                                    for c in seq.items))


def body_of(call: Sequence, graph: Graph, classes) -> list:
    return [(c.name, comment_for(c, graph.file), concrete(c, graph, classes)) for c in call.items]


def finish(tree):
    """Loops as `nn.Sequential(first, *[item for _ in range(...)])`."""
    if isinstance(tree, cl.Loop):
        args = (Arg(finish(tree.first)),) if tree.first is not None else ()
        return Call("nn.Sequential", args + (Arg(Comp(finish(tree.item), tree.count, 1 if args else 0)),))
    if isinstance(tree, Call):
        return Call(tree.func, tuple(Arg(finish(a.value), a.keyword, a.comment) for a in tree.args), tree.method)
    if isinstance(tree, list):
        return [finish(v) for v in tree]
    if isinstance(tree, tuple):
        return tuple(finish(v) for v in tree)
    return tree


# The defaults of the constructor arguments that `torch_table` leaves out when they hold (PyTorch's own
# signatures): calls of one block that differ only there still share a class. Not imported from torch, so
# that emitting never loads it; an argument missing here only splits a class.
_CONV = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True}
TORCH_DEFAULTS = {
    **{f"nn.Conv{n}d": _CONV for n in (1, 2, 3)},
    **{f"nn.ConvTranspose{n}d": {**_CONV, "output_padding": 0} for n in (1, 2, 3)},
    **{f"nn.BatchNorm{n}d": {"eps": 1e-5, "momentum": 0.1} for n in (1, 2, 3)},
    **{f"nn.{k}Pool{n}d": {"padding": 0, "ceil_mode": False} for k in ("Max", "Avg") for n in (1, 2, 3)},
    "nn.Linear": {"bias": True}, "nn.LayerNorm": {"eps": 1e-5}, "nn.GroupNorm": {"eps": 1e-5},
    "ChannelLayerNorm": {"eps": 1e-5}, "nn.ELU": {"alpha": 1.0}, "nn.GELU": {"approximate": "none"},
    "Residual": {"shortcut": None}, "Merge": {"dim": 1}, "GlobalPool": {"keep_dims": False, "tokens": False},
    "SelfAttention": {"dropout": 0.0, "bias": True}, "CausalSelfAttention": {"dropout": 0.0, "bias": True}, "Slice": {"dim": 1}, "Scale": {"dim": 1},
}


def _torch_defaults(func: str) -> dict:
    return TORCH_DEFAULTS.get(func, {})


# -- source ------------------------------------------------------------------------

def emit_torch(spec) -> str:
    from nnspec.names import class_name
    from nnspec.templates import render_template
    from nnspec.version import __version__

    graph = spec.graph
    taken = set(RESERVED)
    model_class = graph.class_name if graph.class_name not in taken else graph.class_name + "Model"
    taken.add(model_class)
    by_name: dict = {}

    def defaults(func: str) -> dict:
        if func in by_name:
            return cl.class_defaults(by_name[func])
        return _torch_defaults(func)

    def lower_body(call, classes):
        for c in classes.classes:
            by_name[c.name] = c
        return body_of(call, graph, classes)

    classes = cl.build_classes(graph, spec.model.blocks, lower_body, defaults, class_name, taken)
    blocks = [_class_lines(c, graph) for c in classes.classes]
    children = []
    for item in graph.root.items:
        tree = finish(cl.unify([concrete(item, graph, classes)], [{}], defaults))
        children += _commented(f"self.{item.name}", tree, comment_for(item, graph.file), 8)
    init_lines, roles, formulas, uses_fnmatch = _init_rules(graph)
    helpers = []
    for name in ("Merge", "Residual"):
        if any(isinstance(n, Merge) and (n.residual == (name == "Residual")) for n in iter_nodes(graph.root)):
            helpers.append(runtime_source(RUNTIME, name))
    helpers += [runtime_source(RUNTIME, h) for h in torch_table.helpers_used(graph.layers())]
    body_text = "\n".join(children) + "\n".join("\n".join(b) for b in blocks)
    if "sequential(" in body_text:
        helpers.append(runtime_source(RUNTIME, "sequential"))
    runtime = [runtime_source(RULES, f) for f in formulas]
    if any(t.init.name not in SIMPLE for t in graph.tensors()):
        runtime += [runtime_source(RUNTIME, h) for h in FULL_INIT]
    else:
        runtime.append(runtime_source(EMITTED, "init_tensor_"))
    runtime += [runtime_source(EMITTED, h) for h in ("initialize_", "init_plan_")]
    if not any(layer.kind == "batchnorm" for layer in graph.layers()):  # no running statistics to reset
        assert BATCHNORM_RESET in runtime[-2]
        runtime[-2] = runtime[-2].replace(BATCHNORM_RESET, "")
    text = "\n".join(helpers + runtime + init_lines + body_text.splitlines())
    return render_template("torch.py.j2", {
        "version": __version__,
        "spec_file": spec.file,
        "spec_name": spec.name,
        "class_name": model_class,
        "seed": spec.seed,
        "helpers": "\n\n\n".join(h.strip() for h in helpers),
        "blocks": ["\n".join(b) for b in blocks],
        "children": children,
        "roles_lines": _roles_lines(roles),
        "init_lines": init_lines,
        "runtime": "\n\n\n".join(r.strip() for r in runtime),
        "uses": {m: m + "." in text for m in ("math", "os", "hashlib", "functools")}
        | {"OrderedDict": "OrderedDict(" in text, "fnmatchcase": uses_fnmatch},
        "input_shape": list(graph.input_shape),
        "output_shape": list(graph.output_shape),
        "params": graph.params,
    })


SIMPLE = {"zeros", "ones", "constant", "uniform", "normal", "trunc_normal", "xavier_uniform", "xavier_normal",
          "kaiming_uniform", "kaiming_normal", "variance_scaling", "glorot_uniform", "glorot_normal", "he_uniform",
          "he_normal", "lecun_uniform", "lecun_normal", "torch_default"}
BATCHNORM_RESET = """
    for module in model.modules():  # and the batch norms' running statistics
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()"""
# what a file carries for the initializers that the compact `torch_emitted.init_tensor_` does not draw
FULL_INIT = ("stream_block", "stream_range", "shard_indices", "strided_offsets", "deterministic", "whole",
             "init_tensor_", "chunks_", "fill_")


def _class_lines(cls: cl.BlockClass, graph: Graph) -> list:
    file = json.dumps(os.path.basename(graph.file), ensure_ascii=True)[1:-1]
    lines = _class_head(cls.name) + [f'    """Block `{cls.block}` ({file}:{cls.line})."""', ""]
    params = cl.parameter_texts(cls)
    lines += _def_lines("__init__", ["self"] + (["*"] + params if params else []), "None", 4)
    lines.append("        super().__init__()")
    for name, comment, tree in cls.body:
        lines += _commented(f"self.{name}", finish(tree), comment, 8)
    return lines


def _commented(target: str, tree, comment: str, indent: int) -> list:
    """`target = tree` with its spec line: at the end of the line when that fits, else above it."""
    lines = _assign(target, tree, indent)
    if len(f"{lines[0]}  # {comment}") <= LINE_LENGTH and (len(lines) == 1 or lines[0].endswith(("(", "["))):
        return [f"{lines[0]}  # {comment}"] + lines[1:]  # after an opening bracket ruff keeps it there
    return [" " * indent + f"# {comment}"] + lines


def _class_head(name: str, base: str = "nn.Sequential") -> list:
    if len(f"class {name}({base}):") <= LINE_LENGTH:
        return [f"class {name}({base}):"]
    return [f"class {name}(", f"    {base}", "):"]


def _def_lines(name: str, params: list, returns: str, indent: int) -> list:
    pad = " " * indent
    one = f"{pad}def {name}({', '.join(params)}) -> {returns}:"
    if len(one) <= LINE_LENGTH:
        return [one]
    middle = f"{pad}    {', '.join(params)}"
    if len(middle) <= LINE_LENGTH:
        return [f"{pad}def {name}(", middle, f"{pad}) -> {returns}:"]
    return [f"{pad}def {name}("] + [f"{pad}    {p}," for p in params] + [f"{pad}) -> {returns}:"]


def _assign(target: str, expr, indent: int) -> list[str]:
    """`target = expr` as ruff formats it (see torch_backend._assign)."""
    from nnspec.compiler.backends.torch_backend import _assign as assign

    return assign(target, expr, indent)


def _roles_lines(roles: dict) -> list:
    """SPEC_ROLES: (layer class, PyTorch's name of a tensor) -> the spec's, where they differ."""
    entries = [f"({cls}, {json.dumps(k)}): {json.dumps(v)}" for cls, mapping in roles.items() for k, v in mapping.items()]
    if not entries:
        return []
    one = "SPEC_ROLES = {" + ", ".join(entries) + "}"
    if len(one) <= LINE_LENGTH:
        return [one]
    return ["SPEC_ROLES = {"] + [f"    {e}," for e in entries] + ["}"]


# -- initialisation rules ------------------------------------------------------------------

def _reading_order(order: list, tensors: list, infos: dict) -> list:
    """The rules most specific first (a layer's own init, paths, block calls, kind and role, role, PyTorch's),
    in the spec's order within each; a rule stays before every later one that applies to a tensor it does."""
    reached = [{i for i, t in enumerate(tensors) if rule.applies(infos[id(t)])} for rule in order]
    before = {j: {i for i in range(j) if reached[i] & reached[j]} for j in range(len(order))}
    out, done = [], set()
    while len(out) < len(order):
        ready = [j for j in range(len(order)) if j not in done and before[j] <= done]
        j = min(ready, key=lambda j: (order[j].rank, min(reached[j], default=0), j))  # then the tensors' order
        out.append(order[j])
        done.add(j)
    return out


class Rule:
    """One `if` of spec_init: layer classes, tensor names (None: any), the paths it is limited to (`test`:
    a path -> whether it applies; `condition`: the same in Python), the initializer's code and its value."""

    def __init__(self, comment: str, classes: tuple, names, test, condition, code: Call, fn, rank=(0, 0)):
        self.comment, self.classes, self.names, self.code, self.fn = comment, classes, names, code, fn
        self.test, self.condition, self.rank = test, condition, rank  # rank: (-specificity, spec line)

    def applies(self, info) -> bool:
        cls, name, path = info
        return cls in self.classes and (self.names is None or name in self.names) and \
            (self.test is None or self.test(path))


def _info(tensor):
    layer = tensor.layer
    return (torch_table.LAYERS[layer.kind](layer).func, torch_table.torch_path(tensor)[len(layer.path) + 1:],
            layer.path)


_EXPECTED: dict = {}


def _expected(tensor):
    key = id(tensor)
    if key in _EXPECTED and _EXPECTED[key][0] is tensor:
        return _EXPECTED[key][1]
    _EXPECTED.clear() if len(_EXPECTED) > 100_000 else None
    value = _plan_of(tensor)
    _EXPECTED[key] = (tensor, value)
    return value


def _plan_of(tensor):
    kind, args = torch_table.init_plan(tensor)
    return evaluate(Call("draw", (Arg(kind),) + tuple(Arg(v, k) for k, v in args.items())),
                    {"draw": torch_rules.draw, "spec_part": torch_rules.draw}, {})


def _const_code(plan) -> Call:
    kind, args = plan
    items = []
    for key, value in args.items():
        if key == "parts":
            value = [_const_code(part) for part in value]
        items.append(Arg(value, key))
    return Call("draw", (Arg(kind),) + tuple(items))


def _dict(args: tuple) -> str:
    """`{"key": value, ...}` of a draw's keyword arguments (a `chunks` initializer's parts as tuples)."""
    return "{" + ", ".join(f"{json.dumps(a.keyword)}: {flat(_source(a.value), {})}" for a in args) + "}"


def _source(code):
    """An initializer's code as the emitted file writes it: `draw(kind, **args)` (the emitter's form) as the
    tuple `kind, {**args}` that spec_init returns."""
    if isinstance(code, Call) and code.func == "draw":
        return (code.args[0].value, Const(_dict(code.args[1:]), None))
    if isinstance(code, list):
        return [_source(v) for v in code]
    return code


def _returns(code) -> list:
    """`return ...` of a rule, as ruff formats it."""
    if not (isinstance(code, Call) and code.func == "draw"):
        return render(code, 8, "return ")
    head = f"        return {json.dumps(code.args[0].value)}, "
    if len(head + _dict(code.args[1:])) <= LINE_LENGTH:
        return [head + _dict(code.args[1:])]
    items = [f"{json.dumps(a.keyword)}: {flat(_source(a.value), {})}" for a in code.args[1:]]
    if len(items) == 1 and len("            " + items[0]) <= LINE_LENGTH:
        return [head + "{", "            " + items[0], "        }"]
    lines = [head + "{"]  # a split dict: an item a line
    for a in code.args[1:]:
        lines += render(_source(a.value), 12, f"{json.dumps(a.keyword)}: ", ",")
    return lines + ["        }"]


def _formulas(tensors: list) -> list:
    """(code, fn) candidates for one group of tensors that share an initializer."""
    init = tensors[0].init
    out = []
    name, args = init.name, init.args
    shape = Const("shape", None)
    if name in ("kaiming_normal", "kaiming_uniform"):
        gain = scaling.calculate_gain(args["nonlinearity"], args["a"])
        uniform = name == "kaiming_uniform"
        extra = ([Arg(args["mode"])] if args["mode"] != "fan_in" else []) + ([Arg(True, "uniform")] if uniform else [])
        shown = Const("math.sqrt(2.0)", gain) if gain == math.sqrt(2.0) else gain  # relu's gain
        out.append((Call("kaiming", (Arg(shape), Arg(shown), *extra)),
                    lambda t, g=gain, m=args["mode"], u=uniform: torch_rules.kaiming(t.shape, g, m, u)))
    if name in ("xavier_normal", "xavier_uniform"):
        uniform = name == "xavier_uniform"
        extra = [Arg(True, "uniform")] if uniform else []
        out.append((Call("xavier", (Arg(shape), Arg(args["gain"]), *extra)),
                    lambda t, g=args["gain"], u=uniform: torch_rules.xavier(t.shape, g, u)))
    if name == "torch_default":
        gain = scaling.calculate_gain("leaky_relu", math.sqrt(5))
        out.append((Call("kaiming", (Arg(shape), Arg(gain), Arg(True, "uniform"))),
                    lambda t, g=gain: torch_rules.kaiming(t.shape, g, "fan_in", True)))
        out.append((Call("bias_default", (Arg(Const("module.weight.shape", None)),)),
                    lambda t: torch_rules.bias_default(t.layer.tensors["weight"].shape)
                    if "weight" in t.layer.tensors else None))
    first = _expected(tensors[0])
    if all(_expected(t) == first for t in tensors):
        out.append((_const_code(first), lambda t, plan=first: plan))
    return out


def _where(tensor, graph: Graph) -> str:
    if tensor.origin_span is None:
        return "PyTorch's init"
    return _comment(f"{os.path.basename(graph.file)}:{tensor.origin_span.line}")


def _comment(text: str) -> str:
    return json.dumps(text, ensure_ascii=True)[1:-1]


def _group_key(tensor, graph: Graph):
    origin = tensor.origin
    span = tensor.origin_span
    where = (span.line, span.column) if span is not None else None
    if origin == "default":
        return (0, "default", None, where)
    if origin.startswith("init.paths"):
        return (4, origin, "paths", where)
    if origin.startswith("init."):
        return (1 if origin.count(".") == 1 else 2, origin, None, where)
    if origin == "layer":
        return (5, "layer", "layer", where)
    return (3, origin.split(" ")[0], "context", where)


def _scope(kind, tensors: list, graph: Graph) -> list:
    """[(test, condition)] limiting a rule to the layers of `tensors`: inside the block calls or repeats
    that gave them their init (`context`), else those very layers; a pattern (`h.*.mlp.c_proj`) where it
    names just them, else one per path where the condition would not fit on a line."""
    if kind is None:
        return [(None, None)]
    layers = [layer.path for layer in graph.layers()]
    if kind == "context":
        prefixes = tuple(p + "." for p in cl.collapse_repeats(sorted({t.origin.rsplit(" ", 1)[1] for t in tensors}), graph))
        inside = {p for p in layers if p.startswith(prefixes)}
        text = "(" + ", ".join(map(json.dumps, prefixes)) + ")"
        if len(prefixes) == 1 or len(f"        and path.startswith({text})") <= LINE_LENGTH:
            return [((lambda path: path.startswith(prefixes)), f"path.startswith({text if len(prefixes) > 1 else json.dumps(prefixes[0])})")]
        pattern = _pattern([p + "*" for p in prefixes], inside, layers)
    else:
        paths = tuple(dict.fromkeys(t.layer.path for t in tensors))
        text = "path in (" + ", ".join(map(json.dumps, paths)) + ")"
        if len(paths) == 1:
            return [((lambda path: path == paths[0]), f"path == {json.dumps(paths[0])}")]
        pattern = _pattern(list(paths), set(paths), layers)
        if pattern is None and len(f"        and {text}") <= LINE_LENGTH:
            return [((lambda path: path in paths), text)]
    if pattern is not None and len(f"        and fnmatchcase(path, {json.dumps(pattern)})") <= LINE_LENGTH:
        return [((lambda path: fnmatch.fnmatchcase(path, pattern)), f"fnmatchcase(path, {json.dumps(pattern)})")]
    if kind == "context":
        return [((lambda path, p=p: path.startswith(p)), f"path.startswith({json.dumps(p)})") for p in prefixes]
    return [((lambda path, p=p: path == p), f"path == {json.dumps(p)}") for p in paths]


def _pattern(paths: list, meant: set, layers: list):
    """`h.*.mlp.c_proj` for `h.0.mlp.c_proj` ... `h.11.mlp.c_proj`: the paths with `*` for the segments in
    which they differ, when of all `layers` it matches just the `meant` ones."""
    parts = [p.split(".") for p in paths]
    if len(paths) < 2 or len({len(p) for p in parts}) != 1:
        return None
    pattern = ".".join(column[0] if len(set(column)) == 1 else "*" for column in zip(*parts))
    return pattern if {p for p in layers if fnmatch.fnmatchcase(p, pattern)} == meant else None


def _init_rules(graph: Graph):
    """(lines of spec_init, spec roles by class, formula helpers used, whether it calls fnmatch)."""
    tensors = list(graph.tensors())
    infos = {id(t): _info(t) for t in tensors}
    roles: dict = {}
    for t in tensors:
        cls, name, _ = infos[id(t)]
        spec_name = t.path.rpartition(".")[2]  # its role, or its own name (lstm's weight_ih_l0)
        if name != spec_name:
            roles.setdefault(cls, {})[name] = spec_name
    groups: dict = {}
    for t in tensors:
        groups.setdefault((_group_key(t, graph), infos[id(t)][1]), []).append(t)
    rules = []
    for (key, name), members in sorted(groups.items(), key=lambda kv: (kv[0][0][0], kv[0][0][3] or (0, 0))):
        order, origin, scope_kind, _ = key
        subgroups = [members]
        for sub in subgroups:
            classes = tuple(dict.fromkeys(infos[id(t)][0] for t in sub))
            for code, fn in _formulas(sub):
                if all(_safe(fn, t) == _expected(t) for t in sub):
                    made = [Rule(_where(sub[0], graph), classes, (name,), test, condition, code, fn)
                            for test, condition in _scope(scope_kind, sub, graph)]
                    for rule in made:
                        rule.rank = (-order, key[3][0] if key[3] else 0)
                    rules += made
                    break
            else:
                if len(classes) > 1:
                    subgroups += [[t for t in sub if infos[id(t)][0] == c] for c in classes]
    # spec_init tries the rules last first: a tensor that the first rule to apply gives another value
    # (or none) gets a rule of its own, tried before every other
    exceptions = []
    for t in tensors:
        rule = next((r for r in reversed(rules) if r.applies(infos[id(t)])), None)
        if rule is None or _safe(rule.fn, t) != _expected(t):
            cls, name, path = infos[id(t)]
            plan = _expected(t)
            exceptions.append(Rule(_where(t, graph), (cls,), (name,), lambda p, path=path: p == path,
                                   f"path == {json.dumps(path)}", _const_code(plan), lambda t, plan=plan: plan))
            exceptions[-1].rank = (-6, t.origin_span.line if t.origin_span is not None else 0)
    rules += exceptions
    used = {id(next(r for r in reversed(rules) if r.applies(infos[id(t)]))) for t in tensors}
    rules = _merged([r for r in reversed(rules) if id(r) in used], tensors, infos)  # none that no tensor reaches
    rules = _reading_order(rules, tensors, infos)
    names = {c.func for r in rules for c in _calls(r.code)}
    helpers = [h for h in ("kaiming", "xavier", "bias_default") if h in names]
    return (_rule_lines(rules), roles, helpers,
            any(r.condition and r.condition.startswith("fnmatchcase(") for r in rules))


def _merged(order: list, tensors: list, infos: dict) -> list:
    """The rules in the order spec_init tries them, those with the same initializer, spec line and paths made
    one (`isinstance(module, (A, B)) and name in (...)`) wherever that gives every tensor the same value."""
    def correct(rules) -> bool:
        for t in tensors:
            rule = next((r for r in rules if r.applies(infos[id(t)])), None)
            if rule is None or _safe(rule.fn, t) != _expected(t):
                return False
        return True

    if len(order) > 200:  # a machine-made spec: every rule as it is
        return order
    for i, rule in enumerate(order):  # a rule without its paths where the kind and name tell them apart
        if rule.condition is not None:
            plain = Rule(rule.comment, rule.classes, rule.names, None, None, rule.code, rule.fn, rule.rank)
            if correct(order[:i] + [plain] + order[i + 1:]):
                order[i] = plain
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order):
            a, b = order[i], order[j]
            if (a.comment, a.condition, a.code) == (b.comment, b.condition, b.code):
                classes = tuple(c for c in dict.fromkeys(infos[id(t)][0] for t in tensors) if c in a.classes + b.classes)
                names = tuple(n for n in dict.fromkeys(infos[id(t)][1] for t in tensors) if n in a.names + b.names)
                if len(f"        and name in ({', '.join(map(json.dumps, names))})") > LINE_LENGTH or \
                        len(f"        isinstance(module, ({', '.join(classes)}))") > LINE_LENGTH:
                    j += 1
                    continue
                reached = {infos[id(t)][1] for t in tensors if infos[id(t)][0] in classes
                           and (a.test is None or a.test(infos[id(t)][2]))}
                rule = Rule(a.comment, classes, None if reached <= set(names) else names, a.test, a.condition,
                            a.code, a.fn, a.rank)
                candidate = order[:i] + [rule] + order[i + 1:j] + order[j + 1:]
                if correct(candidate):
                    order = candidate
                    continue
            j += 1
        i += 1
    return order


def _calls(code) -> list:
    if isinstance(code, Call):
        return [code] + [c for a in code.args for c in _calls(a.value)]
    if isinstance(code, (list, tuple)):
        return [c for v in code for c in _calls(v)]
    return []


def _safe(fn, tensor):
    try:
        return fn(tensor)
    except (IndexError, KeyError, ZeroDivisionError, ValueError, TypeError):
        return None


def _rule_lines(rules: list) -> list:
    """spec_init: each rule with its spec line at the end of a line where that fits, else above it; a run of
    rules from one spec line under one comment where that is shorter."""
    lines = ["def spec_init(path: str, module: nn.Module, name: str, shape: tuple) -> tuple:",
             '    """The initializer of tensor `name` of the layer at `path`, as the spec says."""']
    i = 0
    while i < len(rules):
        j = i
        while j < len(rules) and rules[j].comment == rules[i].comment:
            j += 1
        each = [line for rule in rules[i:j] for line in _rule_code(rule, rule.comment)]
        under_one = [f"    # {rules[i].comment}"] + [line for rule in rules[i:j] for line in _rule_code(rule, None)]
        lines += under_one if len(under_one) < len(each) else each
        i = j
    return lines


def _rule_code(rule, comment) -> list:
    cls = rule.classes[0] if len(rule.classes) == 1 else "(" + ", ".join(rule.classes) + ")"
    operands = [f"isinstance(module, {cls})"]
    if rule.names is not None:
        names = rule.names
        operands.append(f"name == {json.dumps(names[0])}" if len(names) == 1
                        else "name in (" + ", ".join(map(json.dumps, names)) + ")")
    if rule.condition is not None:
        operands.append(rule.condition)
    one = f"    if {' and '.join(operands)}:"
    returns = _returns(rule.code)
    if comment is None:
        if len(one) <= LINE_LENGTH:
            return [one] + returns
        head = ["    if ("]
    elif len(f"{one}  # {comment}") <= LINE_LENGTH:
        return [f"{one}  # {comment}"] + returns
    elif len(one) <= LINE_LENGTH:
        if len(f"{returns[0]}  # {comment}") <= LINE_LENGTH and (len(returns) == 1 or returns[0].endswith("(")):
            return [one, f"{returns[0]}  # {comment}"] + returns[1:]
        return [f"    # {comment}", one] + returns
    elif len(f"    if (  # {comment}") <= LINE_LENGTH:
        head = [f"    if (  # {comment}"]
    else:
        head = [f"    # {comment}", "    if ("]
    if len(f"        {' and '.join(operands)}") <= LINE_LENGTH:
        head.append(f"        {' and '.join(operands)}")
    else:
        for k, o in enumerate(operands):
            head += _operand(f"        {'and ' if k else ''}", o)
    return head + ["    ):"] + returns


def _operand(head: str, operand: str) -> list:
    """One operand of a split `if (...)`, split further as ruff splits what does not fit."""
    if len(head + operand) <= LINE_LENGTH:
        return [head + operand]
    pad = " " * (len(head) - len(head.lstrip()))
    if operand.startswith("path == "):
        return [head + "path", pad + operand[len("path "):]]
    func, _, rest = operand.partition("(")
    return [f"{head}{func}(", f"{pad}    {rest[:-1]}", f"{pad})"]
