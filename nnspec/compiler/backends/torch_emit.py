"""Emitted PyTorch source: a class per spec block, loops for repeats, initialisation by rule.

Every layer's constructor comes from `torch_table.LAYERS`, as in `build`; `classes` lines up the
calls of each block into one class with the block's arguments. The `init` section becomes one
function, `spec_init`, with a rule per model-wide default (by kind and role) and the exceptions
(block calls, residuals, `init.paths`, a layer's own `init`) after them, each under its spec line.
Each rule is evaluated here for every tensor it reaches and compared with the build's
initializer (`torch_table.init_plan`); a tensor no rule gives exactly gets its own entry, so the
emitted model is the built one, bit for bit.
"""

from __future__ import annotations

import json
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
RESERVED = frozenset({"OrderedDict", "Residual", "Merge", "SEED", "LAYERS", "SPEC_ROLES", "Sequential",
                      *torch_table.HELPERS_BY_KIND.values()})


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
    "SelfAttention": {"dropout": 0.0, "bias": True, "causal": False}, "Slice": {"dim": 1}, "Scale": {"dim": 1},
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
    init_lines, layer_classes, roles, formulas = _init_rules(graph)
    helpers = []
    for name in ("Merge", "Residual"):
        if any(isinstance(n, Merge) and (n.residual == (name == "Residual")) for n in iter_nodes(graph.root)):
            helpers.append(runtime_source(RUNTIME, name))
    helpers += [runtime_source(RUNTIME, h) for h in torch_table.helpers_used(graph.layers())]
    body_text = "\n".join(children) + "\n".join("\n".join(b) for b in blocks)
    if "sequential(" in body_text:
        helpers.append(runtime_source(RUNTIME, "sequential"))
    runtime = [runtime_source(RULES, f) for f in ("draw", *formulas)]
    if any(t.init.name not in SIMPLE for t in graph.tensors()):
        runtime += [runtime_source(RUNTIME, h) for h in FULL_INIT]
        runtime.append(runtime_source(RUNTIME, "init_tensor_"))
    else:
        runtime.append(runtime_source(EMITTED, "init_tensor_"))
    runtime += [runtime_source(RUNTIME, h) for h in PATHS_AND_SHARDS]
    runtime += [runtime_source(EMITTED, h) for h in ("initialize_", "init_plan_")]
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
        "layers_line": _layers_line(layer_classes),
        "roles_lines": _roles_lines(roles),
        "init_lines": init_lines,
        "runtime": "\n\n\n".join(r.strip() for r in runtime),
        "uses": {m: m + "." in text for m in ("math", "os", "hashlib", "functools")}
        | {"OrderedDict": "OrderedDict(" in text},
        "input_shape": list(graph.input_shape),
        "output_shape": list(graph.output_shape),
        "params": graph.params,
    })


SIMPLE = {"zeros", "ones", "constant", "uniform", "normal", "trunc_normal", "xavier_uniform", "xavier_normal",
          "kaiming_uniform", "kaiming_normal", "variance_scaling", "glorot_uniform", "glorot_normal", "he_uniform",
          "he_normal", "lecun_uniform", "lecun_normal", "torch_default"}
FULL_INIT = ("stream_block", "stream_range", "shard_indices", "deterministic", "whole", "chunks_", "fill_")
# what every emitted file carries beside its init runtime: FSDP2-over-TP shards on any torch
PATHS_AND_SHARDS = ("strided_offsets",)


def _class_lines(cls: cl.BlockClass, graph: Graph) -> list:
    file = json.dumps(os.path.basename(graph.file), ensure_ascii=True)[1:-1]
    lines = _class_head(cls.name) + [f'    """Block `{cls.block}` ({file}:{cls.line})."""', ""]
    params = []
    for name, annotation, default in cls.params:
        text = f"{name}: {annotation}" if annotation else name
        if default is not cl.REQUIRED:
            text += f" = {flat(default, {})}" if annotation else f"={flat(default, {})}"
        params.append(text)
    lines += _def_lines("__init__", ["self"] + (["*"] + params if params else []), "None", 4)
    lines.append("        super().__init__()")
    for name, comment, tree in cls.body:
        lines += _commented(f"self.{name}", finish(tree), comment, 8)
    return lines


def _commented(target: str, tree, comment: str, indent: int) -> list:
    """`target = tree` with its spec line: at the end of the line when that fits, else above it."""
    lines = _assign(target, tree, indent)
    if len(lines) == 1 and len(f"{lines[0]}  # {comment}") <= LINE_LENGTH:
        return [f"{lines[0]}  # {comment}"]
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


def _layers_line(layer_classes: list) -> list:
    if not layer_classes:
        return ["LAYERS: tuple = ()"]
    one = f"LAYERS = ({', '.join(layer_classes)}{',' if len(layer_classes) == 1 else ''})"
    if len(one) <= LINE_LENGTH:
        return [one]
    return ["LAYERS = ("] + [f"    {c}," for c in layer_classes] + [")"]


def _roles_lines(roles: dict) -> list:
    if not roles:
        return ["SPEC_ROLES: dict = {}"]
    entries = []
    for cls, mapping in roles.items():
        inner = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in mapping.items())
        entries.append((cls, inner, mapping))
    one = "SPEC_ROLES = {" + ", ".join(f"{c}: {{{i}}}" for c, i, _ in entries) + "}"
    if len(one) <= LINE_LENGTH:
        return [one]
    lines = ["SPEC_ROLES = {"]
    for cls, inner, mapping in entries:
        line = f"    {cls}: {{{inner}}},"
        if len(line) <= LINE_LENGTH:
            lines.append(line)
        else:
            lines += [f"    {cls}: {{"] + [f"        {json.dumps(k)}: {json.dumps(v)}," for k, v in mapping.items()]
            lines.append("    },")
    return lines + ["}"]


# -- initialisation rules ------------------------------------------------------------------

class Rule:
    def __init__(self, comment: str, classes: tuple, name: str, scope, code: Call, fn):
        self.comment, self.classes, self.name, self.scope, self.code, self.fn = comment, classes, name, scope, code, fn

    def applies(self, info) -> bool:
        cls, name, path = info
        if cls not in self.classes or name != self.name:
            return False
        if self.scope is None:
            return True
        return any(path == p or path.startswith(p + ".") for p in self.scope)


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


def _formulas(tensors: list) -> list:
    """(code, fn, helper functions) candidates for one group of tensors that share an initializer."""
    init = tensors[0].init
    out = []
    name, args = init.name, init.args
    shape = Const("shape", None)
    if name in ("kaiming_normal", "kaiming_uniform"):
        gain = scaling.calculate_gain(args["nonlinearity"], args["a"])
        uniform = name == "kaiming_uniform"
        extra = ([Arg(args["mode"])] if args["mode"] != "fan_in" else []) + ([Arg(True, "uniform")] if uniform else [])
        out.append((Call("kaiming", (Arg(shape), Arg(gain), *extra)),
                    lambda t, g=gain, m=args["mode"], u=uniform: torch_rules.kaiming(t.shape, g, m, u),
                    ("fans", "kaiming")))
    if name in ("xavier_normal", "xavier_uniform"):
        uniform = name == "xavier_uniform"
        extra = [Arg(True, "uniform")] if uniform else []
        out.append((Call("xavier", (Arg(shape), Arg(args["gain"]), *extra)),
                    lambda t, g=args["gain"], u=uniform: torch_rules.xavier(t.shape, g, u), ("fans", "xavier")))
    if name == "torch_default":
        import math

        gain = scaling.calculate_gain("leaky_relu", math.sqrt(5))
        out.append((Call("kaiming", (Arg(shape), Arg(gain), Arg(True, "uniform"))),
                    lambda t, g=gain: torch_rules.kaiming(t.shape, g, "fan_in", True), ("fans", "kaiming")))
        out.append((Call("bias_default", (Arg(Const("module.weight.shape", None)),)),
                    lambda t: torch_rules.bias_default(t.layer.tensors["weight"].shape)
                    if "weight" in t.layer.tensors else None, ("fans", "bias_default")))
    first = _expected(tensors[0])
    if all(_expected(t) == first for t in tensors):
        out.append((_const_code(first), lambda t, plan=first: plan, ()))
    return out


def _where(tensor, graph: Graph) -> str:
    if tensor.origin_span is None:
        return "PyTorch's default"
    return f"{os.path.basename(graph.file)}:{tensor.origin_span.line}"


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


def _scope(kind, tensors: list, graph: Graph):
    if kind is None:
        return None
    if kind == "context":
        prefixes = sorted({t.origin.rsplit(" ", 1)[1] for t in tensors})
        return tuple(_collapse(prefixes, graph))
    return tuple(dict.fromkeys(t.layer.path for t in tensors))


def _collapse(prefixes: list, graph: Graph) -> list:
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


def _init_rules(graph: Graph):
    """(lines of spec_init, layer classes, spec roles by class, formula helpers used)."""
    tensors = list(graph.tensors())
    infos = {id(t): _info(t) for t in tensors}
    layer_classes = list(dict.fromkeys(infos[id(t)][0] for t in tensors))
    roles: dict = {}
    for t in tensors:
        cls, name, _ = infos[id(t)]
        spec_name = t.path.rpartition(".")[2]  # its role, or its own name (lstm's weight_ih_l0)
        if name != spec_name:
            roles.setdefault(cls, {})[name] = spec_name
    groups: dict = {}
    for t in tensors:
        groups.setdefault((_group_key(t, graph), infos[id(t)][1]), []).append(t)
    rules, helpers = [], []
    for (key, name), members in sorted(groups.items(), key=lambda kv: (kv[0][0][0], kv[0][0][3] or (0, 0))):
        order, origin, scope_kind, _ = key
        subgroups = [members]
        for sub in subgroups:
            classes = tuple(dict.fromkeys(infos[id(t)][0] for t in sub))
            for code, fn, used in _formulas(sub):
                if all(_safe(fn, t) == _expected(t) for t in sub):
                    text = f"{_where(sub[0], graph)}: {_describe(sub[0], origin)}"
                    rules.append(Rule(_comment(text), classes, name, _scope(scope_kind, sub, graph), code, fn))
                    helpers += [h for h in used if h not in helpers]
                    break
            else:
                if len(classes) > 1:
                    subgroups += [[t for t in sub if infos[id(t)][0] == c] for c in classes]
    # what no rule gives exactly: an entry of its own
    for t in tensors:
        plan = None
        for rule in rules:
            if rule.applies(infos[id(t)]):
                plan = _safe(rule.fn, t)
        if plan != _expected(t):
            cls, name, path = infos[id(t)]
            plan = _expected(t)
            rules.append(Rule(_comment(f"{_where(t, graph)}: {_describe(t, t.origin)}"), (cls,), name, (path,),
                              _const_code(plan), lambda t, plan=plan: plan))
    return _rule_lines(rules), layer_classes, roles, [h for h in ("fans", "kaiming", "xavier", "bias_default")
                                                       if h in helpers]


def _safe(fn, tensor):
    try:
        return fn(tensor)
    except (IndexError, KeyError, ZeroDivisionError, ValueError, TypeError):
        return None


def _describe(tensor, origin: str) -> str:
    what = tensor.init.describe()
    if origin == "default":
        return f"{tensor.layer.kind} {tensor.role}"
    if origin.startswith("init."):
        return f"{origin} = {what}"
    if origin == "layer":
        return f"{tensor.role} = {what}"
    return f"{origin.split(' ')[0]} init: {tensor.layer.kind} {tensor.role} = {what}"


def _rule_lines(rules: list) -> list:
    lines = ['def spec_init(path: str, module: nn.Module, name: str, shape: tuple) -> tuple:',
             '    """The initializer of tensor `name` of the layer at `path`: the rules of the spec\'s',
             '    `init` in order, PyTorch\'s defaults first; the last rule that applies wins."""',
             "    plan = None"]
    uses_within = False
    for rule in rules:
        cls = rule.classes[0] if len(rule.classes) == 1 else "(" + ", ".join(rule.classes) + ")"
        lines.append(f"    # {rule.comment}")
        operands = [f"isinstance(module, {cls})", f"name == {json.dumps(rule.name)}"]
        within = None
        if rule.scope is not None:
            uses_within = True
            within = Call("within", (Arg(Const("path", None)),) + tuple(Arg(p) for p in rule.scope))
            operands.append(flat(within, {}))
        one = f"    if {' and '.join(operands)}:"
        if len(one) <= LINE_LENGTH:
            lines.append(one)
        elif len(f"        {' and '.join(operands)}") <= LINE_LENGTH:
            lines += ["    if (", f"        {' and '.join(operands)}", "    ):"]
        else:
            lines += ["    if ("] + [f"        {'and ' if i else ''}{o}" for i, o in enumerate(operands[:2])]
            if within is not None:
                lines += render(within, 8, "and ")
            lines.append("    ):")
        lines += render(rule.code, 8, "plan = ")
    lines.append("    return plan")
    if uses_within:
        lines = ["def within(path: str, *prefixes: str) -> bool:",
                 '    """Whether the layer at `path` is one of `prefixes` or inside one."""',
                 '    return any(path == p or path.startswith(p + ".") for p in prefixes)', "", ""] + lines
    return lines
