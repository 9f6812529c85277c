"""Emitted Keras source: a function of the functional API per spec block, loops for repeats,
initialisation by rule.

Each block call becomes `x = block(x, "its.path", arg=...)`; the function applies the block's layers,
named `f"{name}.child"` as the build names them. The steps are `keras_backend`'s (`program`), so the
emitted model is the built one, layer for layer. The layers carry no initializer: `build` ends with
`initialize(model, seed)`, which draws every variable from the rule of `spec_init` that gives it (the
spec's `init` section, see "initialisation by rule" below), seeded from the model seed and the tensor's
path as in `build`, so the weights are the built ones, bit for bit.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from nnspec.compiler.backends import classes as cl
from nnspec.compiler.backends import keras_backend as kb
from nnspec.compiler.backends import keras_table as kt
from nnspec.compiler.backends.expr import LINE_LENGTH, Arg, Call, Const, Ref, flat, literal, render
from nnspec.compiler.backends.structure import comment_for, runtime_source
from nnspec.compiler.ir import Graph, Sequence

RESERVED = frozenset({"keras", "math", "np", "os", "hashlib", "build", "tensor_seed", "keras_seed", "SEED",
                      "inputs", "x", "seed", "name", "i", "model", "ROLES", "spec_init", "initialize", "torch_default",
                      *kt.CUSTOM_INITIALIZERS, *kt.CUSTOM_LAYERS})
_CONV = {"groups": 1, "use_bias": True}
KERAS_DEFAULTS = {
    **{f"keras.layers.Conv{n}D": {**_CONV, "strides": (1,) * n, "dilation_rate": (1,) * n} for n in (1, 2, 3)},
    "keras.layers.Dense": {"use_bias": True},
}


def _defaults_for(functions: dict):
    def defaults(func: str) -> dict:
        if func in functions:
            return cl.class_defaults(functions[func])
        return KERAS_DEFAULTS.get(func, {})

    return defaults


def _label(step) -> str:
    return f"{step.target}|{','.join(step.inputs)}|{getattr(step, 'kind', 'layer') if step.layer is not None else 'copy'}"


# Keyword arguments equal to the Keras layer's own default, left out of emitted calls (the same layer).
_ONES, _ZEROS = Call("keras.initializers.Ones"), Call("keras.initializers.Zeros")
KERAS_OMIT = {
    "keras.layers.BatchNormalization": {"axis": -1, "gamma_initializer": _ONES, "beta_initializer": _ZEROS},
    "keras.layers.LayerNormalization": {"axis": -1, "gamma_initializer": _ONES, "beta_initializer": _ZEROS},
    "keras.layers.Dense": {"bias_initializer": _ZEROS},
    **{f"keras.layers.Conv{n}D": {"bias_initializer": _ZEROS} for n in (1, 2, 3)},
}


# Keyword arguments written as the positional argument they are (`Activation("gelu")`).
KERAS_POSITIONAL = {"keras.layers.Activation": "activation"}


def _trim(tree):
    """`tree` without the keyword arguments that repeat a Keras default, its first argument positional."""
    if isinstance(tree, Call):
        omit = KERAS_OMIT.get(tree.func, {})
        first = KERAS_POSITIONAL.get(tree.func)
        args = tuple(Arg(_trim(a.value), None if a.keyword == first and i == 0 else a.keyword, a.comment)
                     for i, a in enumerate(tree.args) if not (a.keyword in omit and a.value == omit[a.keyword]))
        return Call(tree.func, args, tree.method)
    return tree


def _tree(step):
    return _trim(kb._seed_calls(_strip(step.layer))) if step.layer is not None else None


def _uses_seed(tree) -> bool:
    if isinstance(tree, Const):
        return tree.code == "seed"
    if isinstance(tree, Call):
        return tree.func == "keras_seed" or any(_uses_seed(a.value) for a in tree.args)
    if isinstance(tree, (list, tuple)):
        return any(_uses_seed(v) for v in tree)
    return False


class _Emitter:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.entry: dict = {}
        self.exit: dict = {}
        self.classes = None
        self.functions: dict = {}

    def prewalk(self) -> None:
        def record(node, var, layout, prog):
            self.entry[id(node)] = layout

        prog = kb.Program(kb.keras_input_shape(self.graph.input_shape, self.graph.input_dtype),
                          self.graph.input_dtype, block_hook=record)
        kb._walk(self.graph.root, "x", kb.input_layout(self.graph.input_shape, self.graph.input_dtype), prog,
                 self.graph)

    def body(self, call: Sequence, classes) -> list:
        self.classes = classes
        for c in classes.classes:
            self.functions[c.name] = c
        prog = kb.Program((), "float32", block_hook=self.hook)
        layout = self.entry[id(call)]
        for child in call.items:
            layout = kb._walk(child, "x", layout, prog, self.graph)
        self.exit[id(call)] = layout
        return [(_label(step), step.comment, _tree(step)) for step in prog.steps]

    def hook(self, node, var, layout, prog):
        if self.classes is None:
            return None
        if node.kind == "block" and id(node) in self.classes.by_call and id(node) in self.exit:
            cls = self.classes.by_call[id(node)]
            step = kb.Step(var, self._call(cls, node), (var,), comment_for(node, self.graph.file))
            step.kind = "call"
            prog.steps.append(step)
            return self.exit[id(node)]
        if node.kind == "repeat" and node.items:
            copies = node.items
            if not all(isinstance(c, Sequence) and c.kind == "block" and id(c) in self.classes.by_call
                       and id(c) in self.exit for c in copies):
                return None
            cls = self.classes.by_call[id(copies[0])]
            calls = [self._call(cl_, c) for cl_, c in ((self.classes.by_call[id(c)], c) for c in copies)]
            rest = [Call(c.func, c.args[1:]) for c in calls]
            if any(self.classes.by_call[id(c)] is not cls for c in copies) or any(r != rest[0] for r in rest) \
                    or self.exit[id(copies[0])] != self.entry[id(copies[0])]:
                return None
            step = kb.Step(var, Call("__loop__", (Arg(len(copies)), Arg(node.path), Arg(rest[0]))), (var,),
                           comment_for(node, self.graph.file))
            step.kind = "loop"
            prog.steps.append(step)
            return self.exit[id(copies[-1])]
        return None

    def _call(self, cls, node) -> Call:
        ctor = cl.constructor_call(cls, node)
        seed = (Arg(Const("seed", None)),) if needs_seed(cls) else ()
        return Call(cls.name, (Arg(node.path),) + seed + ctor.args)


def needs_seed(cls) -> bool:
    """Whether a block's function takes the model seed: a layer in it (a recurrent one) seeds its own
    initializers, or a block it calls does."""
    return any(_uses_seed(tree) for _, _, tree in cls.body)


def _step_lines(label: str, comment, tree, indent: int) -> list:
    """The lines of one step, its spec line at the end of the line when that fits, else above it."""
    lines = _bare_step_lines(label, tree, indent)
    if not comment:
        return lines
    # at the end of a one-line statement, or after the bracket (or colon) that opens a longer one
    if (len(lines) == 1 or lines[0].endswith(("(", "[", ":"))) and len(f"{lines[0]}  # {comment}") <= LINE_LENGTH:
        return [f"{lines[0]}  # {comment}"] + lines[1:]
    return [" " * indent + f"# {comment}"] + lines


def _bare_step_lines(label: str, tree, indent: int) -> list:
    target, inputs, kind = label.split("|")
    inputs = inputs.split(",")
    if kind == "copy":
        return [" " * indent + f"{target} = {inputs[0]}"]
    if kind == "call":
        return render(Call(tree.func, (Arg(Const(inputs[0], None)),) + tree.args), indent, f"{target} = ")
    if kind == "loop":
        count, path, inner = (a.value for a in tree.args)
        path = path.code[:-1] + '.{i}"' if isinstance(path, Const) else json.dumps(path + ".{i}")
        path = path if path.startswith("f") else "f" + path
        call = Call(inner.func, (Arg(Const(inputs[0], None)), Arg(Const(path, None))) + inner.args)
        count = count.code if isinstance(count, Const) else str(count)
        return [" " * indent + f"for i in range({count}):"] + render(call, indent + 4, f"{target} = ")
    arg = f"[{', '.join(inputs)}]" if len(inputs) > 1 else inputs[0]
    step = kb.Step(target, tree, tuple(inputs))
    if indent == 4:
        return kb._render_step(step, arg, {})
    return render(tree, indent, f"{target} = ", f"({arg})")


def _function_lines(cls, graph: Graph) -> list:
    file = json.dumps(os.path.basename(graph.file), ensure_ascii=True)[1:-1]
    params = ["x", "name: str"] + (["seed: int"] if needs_seed(cls) else [])
    keyword = cl.parameter_texts(cls)
    if keyword:
        params += ["*"] + keyword
    from nnspec.compiler.backends.torch_emit import _def_lines

    lines = [line for line in _def_lines(cls.name, params, "keras.KerasTensor", 0)]
    lines.append(f'    """Block `{cls.block}` ({file}:{cls.line})."""')
    for label, comment, tree in cls.body:
        lines += _step_lines(label, comment, tree, 4)
    lines.append("    return x")
    return lines


def emit_keras(spec) -> str:
    from nnspec.templates import render_template
    from nnspec.version import __version__

    graph = spec.graph
    em = _Emitter(graph)
    em.prewalk()
    taken = set(RESERVED)
    em.classes = cl.build_classes(graph, spec.model.blocks, em.body, _defaults_for(em.functions),
                                  lambda block: block, taken, key=lambda call: em.entry.get(id(call)))
    prog = kb.program(graph) if not em.classes.classes else None
    if prog is None:
        prog = kb.Program(kb.keras_input_shape(graph.input_shape, graph.input_dtype), graph.input_dtype,
                          block_hook=em.hook)
        layout = kb._walk(graph.root, "x", kb.input_layout(graph.input_shape, graph.input_dtype), prog, graph)
        prog.output_layout = layout
    lines = []
    used = set()
    for step in prog.steps:
        tree = _tree(step)
        if tree is not None:
            used |= kb._names_in(tree)
        lines += _step_lines(_label(step), step.comment, tree, 4)
    functions = []
    for cls in em.classes.classes:
        for _, _, tree in cls.body:
            used |= kb._names_in(tree) if tree is not None else set()
        functions.append("\n".join(_function_lines(cls, graph)))
    tracked = tracked_tensors(kb.program(graph), graph)
    rules = init_rules(tracked, graph)
    init = []
    if rules:
        init = rule_lines(rules) + ["", ""] + initialize_lines(tracked)
        for rule in rules:
            used |= kb._names_in(rule.code)
    classes = [runtime_source(kb.RUNTIME, n) for n in kt.CUSTOM_INITIALIZERS + kt.CUSTOM_LAYERS if n in used]
    if "torch_default" in used:
        classes.insert(0, runtime_source(kb.RUNTIME, "torch_default"))
    source_text = "\n".join(lines + classes + functions + init)
    return render_template("keras.py.j2", {
        "version": __version__,
        "spec_file": spec.file,
        "spec_name": spec.name,
        "seed": spec.seed,
        "keras_seed": runtime_source(kb.RUNTIME, "keras_seed") if "keras_seed(" in source_text else None,
        "classes": "\n\n\n".join(classes),
        "functions": functions,
        "init": "\n".join(init),
        "uses_math": "math." in source_text,
        "uses_numpy": "np." in source_text,
        "input_shape": prog.input_shape,
        "input_dtype": prog.input_dtype,
        "body": lines,
        "output": prog.output,
        "logical_input": list(graph.input_shape),
        "logical_output": list(graph.output_shape),
        "params": graph.params,
    })


# -- initialisation by rule -------------------------------------------------------------------------
#
# The build gives every layer its initializers as constructor arguments. The emitted file builds the
# layers with Keras's own initializers and then runs `initialize(model, seed)`: every variable whose
# spec role a rule of `spec_init` names is drawn from that rule's initializer, seeded from the model
# seed and the tensor's path as the build seeds it (the layers' configs keep Keras's initializers;
# the values are the spec's: a saved .keras file carries them). The rules are the
# spec's `init` section: PyTorch's defaults first (those Keras's own initializer already gives are
# left out), the model-wide defaults by kind and role, then the exceptions (block calls, residuals,
# `init.paths`, a layer's own `init`), each under its spec line; the last rule that applies wins.
# The emitter evaluates every rule on every tensor and gives a tensor that no rule gives exactly
# (as the build initialises it) a rule of its own, so the emitted model is the built one, bit for bit.
# Recurrent layers (several spec tensors in one Keras variable) keep their initializers at the layer.

RECURRENT_CALLS = ("keras.layers.LSTM", "keras.layers.GRU", "keras.layers.Bidirectional")
# Keras's variable name -> the spec's role, where they differ
VARIABLE_ROLES = {"kernel": "weight", "embeddings": "weight", "alpha": "weight"}
# Keras's own initializer of a variable, where it is PyTorch's default too (such a rule is left out)
_NORMS = ("keras.layers.BatchNormalization", "keras.layers.LayerNormalization",
          "keras.layers.GroupNormalization", "RMSNorm")
KERAS_OWN = {
    **{(cls, "gamma"): _ONES for cls in _NORMS},
    **{(cls, "beta"): _ZEROS for cls in _NORMS},
    **{(f"keras.layers.Conv{n}D{t}", "bias"): _ZEROS for t in ("", "Transpose") for n in (1, 2, 3)},
    ("keras.layers.Dense", "bias"): _ZEROS,
    ("SelfAttention", "in_bias"): _ZEROS,
    ("SelfAttention", "out_bias"): _ZEROS,
    ("ClassToken", "token"): _ZEROS,
}
# `fan_in` of a PyTorch default from the layer's kernel, for the classes whose kernel is
# (*kernel_size, in / groups, out) or (in, out): PyTorch's fan_in of the weight
FAN_IN = "math.prod(layer.kernel.shape[:-1])"
FAN_IN_CLASSES = ("keras.layers.Dense", "keras.layers.Conv1D", "keras.layers.Conv2D", "keras.layers.Conv3D")


@dataclass
class Tracked:
    """One spec tensor that `spec_init` initialises: its layer's Keras class, Keras variable name, the
    build's initializer (seeds as `Ref`s)."""

    tensor: object
    cls: str
    variable: str
    built: Call

    @property
    def role(self) -> str:
        return VARIABLE_ROLES.get(self.variable, self.variable)

    @property
    def path(self) -> str:
        return self.tensor.layer.path


@dataclass
class Rule:
    comment: str
    classes: tuple | None  # Keras classes; None: any (the scope names the layers)
    role: str
    scope: tuple | None  # None: every layer; ("under", prefixes), ("is", paths) or ("endswith", suffix)
    code: object  # the initializer, with the tensor's seed as `seed`
    fan: bool = False  # `fan_in` from the layer's kernel

    def applies(self, t: Tracked) -> bool:
        if (self.classes is not None and t.cls not in self.classes) or t.role not in self.role.split(","):
            return False
        return self.scope is None or in_scope(self.scope, t.path)

    def gives(self, t: Tracked) -> bool:
        return _template(t, self.fan) == self.code


def in_scope(scope: tuple, path: str) -> bool:
    how, what = scope
    if how == "under":
        return any(path.startswith(p + ".") for p in what)
    if how == "is":
        return path in what
    return path.endswith("." + what)


def scope_code(scope: tuple):
    how, what = scope
    if how == "under":
        prefixes = tuple(p + "." for p in what)
        return Call("path.startswith", (Arg(prefixes[0] if len(prefixes) == 1 else prefixes),))
    if how == "is":
        return Const(f"path == {literal(what[0])}" if len(what) == 1 else f"path in {flat(tuple(what), {})}", None)
    return Call("path.endswith", (Arg("." + what),))


def _template(t: Tracked, fan: bool = False):
    """The build's initializer of `t` as rule code: its seed as `seed` (the part of a `chunks` initializer
    as a seed of its own), with `fan=True` its PyTorch fan_in as the layer kernel's."""
    prefix = "seed:" + t.tensor.path

    def sub(expr):
        if isinstance(expr, Ref) and expr.name.startswith(prefix):
            rest = expr.name[len(prefix):]
            if not rest:
                return Const("seed", None)
            return Const('keras_seed(model_seed, f"{path}.{role}' + rest + '")', None)
        if isinstance(expr, Call):
            args = []
            for a in expr.args:
                if fan and expr is t.built and a.keyword == "fan_in":
                    weight = t.tensor.layer.tensors.get("weight")
                    if weight is None or a.value != weight.fan_in or t.cls not in FAN_IN_CLASSES:
                        return None
                    args.append(Arg(Const(FAN_IN, None), "fan_in"))
                    continue
                args.append(Arg(sub(a.value), a.keyword, a.comment))
            return Call(expr.func, tuple(args), expr.method)
        if isinstance(expr, list):
            return [sub(v) for v in expr]
        if isinstance(expr, tuple):
            return tuple(sub(v) for v in expr)
        return expr

    out = sub(t.built)
    if fan and not any(a.keyword == "fan_in" for a in t.built.args):
        return None
    return _idiom(out, t)


# Keras's named initializers that are VarianceScaling with these arguments (the same draws)
VARIANCE_NAMES = {(1.0, "fan_avg", "uniform"): "GlorotUniform", (1.0, "fan_avg", "truncated_normal"): "GlorotNormal",
                  (2.0, "fan_in", "uniform"): "HeUniform", (2.0, "fan_in", "truncated_normal"): "HeNormal",
                  (1.0, "fan_in", "uniform"): "LecunUniform", (1.0, "fan_in", "truncated_normal"): "LecunNormal"}


def _idiom(code, t: Tracked):
    """Rule code as a Keras user writes it: PyTorch's default as `torch_default(fan_in, seed)` (U(-b, b),
    b = 1/sqrt(fan_in), the draw of nnspec's TorchDefault), a VarianceScaling by its Keras name."""
    if not isinstance(code, Call):
        return code
    kw = {a.keyword: a.value for a in code.args}
    if code.func == "TorchDefault":
        if "fan_in" in kw:
            return Call("torch_default", (Arg(kw["fan_in"]), Arg(kw["seed"])))
        if t.variable == "kernel":  # TorchDefault's fan_in from the kernel's shape
            return Call("torch_default", (Arg(Const(FAN_IN, None)), Arg(kw["seed"])))
    if code.func == "keras.initializers.VarianceScaling":
        name = VARIANCE_NAMES.get((kw.get("scale"), kw.get("mode"), kw.get("distribution")))
        if name is not None and type(kw.get("scale")) is float:
            return Call(f"keras.initializers.{name}", (Arg(kw["seed"], "seed"),))
    return code


def tracked_tensors(prog, graph: Graph) -> list:
    """The spec tensors `spec_init` initialises, from the build's steps."""
    layers = {layer.path: layer for layer in graph.layers()}
    out = []
    for step in prog.steps:
        call = step.layer
        if call is None or call.func in RECURRENT_CALLS:
            continue
        inits = {a.keyword[:-len("_initializer")]: a.value for a in call.args
                 if a.keyword and a.keyword.endswith("_initializer")}
        if not inits:
            continue
        name = next(a.value for a in call.args if a.keyword == "name")
        layer = layers[name]
        for key, tensor in layer.tensors.items():
            built = kt.initializer(tensor)
            variable = next((v for v in (key, "kernel", "embeddings", "alpha")
                             if inits.get(v) == built and VARIABLE_ROLES.get(v, v) == key), None)
            if variable is None:  # the variable's name and the spec's role disagree: not seen so far
                raise AssertionError(f"no Keras variable of {call.func} holds {tensor.path}")
            out.append(Tracked(tensor, call.func, variable, built))
    return out


def _strip(tree):
    """A layer's constructor call without its initializers (`initialize` sets them), recurrent ones kept."""
    if isinstance(tree, Call) and tree.func not in RECURRENT_CALLS and \
            any(a.keyword and a.keyword.endswith("_initializer") for a in tree.args):
        return Call(tree.func, tuple(a for a in tree.args if not (a.keyword or "").endswith("_initializer")),
                    tree.method)
    return tree


def _where(t: Tracked, graph: Graph) -> str:
    span = t.tensor.origin_span
    return "PyTorch's default" if span is None else f"{os.path.basename(graph.file)}:{span.line}"


def _describe(t: Tracked, origin: str) -> str:
    tensor = t.tensor
    what = tensor.init.describe()
    if origin == "default":
        return f"{tensor.layer.kind} {tensor.role}"
    if origin.startswith("init."):
        return f"{origin} = {what}"
    if origin == "layer":
        return f"{tensor.layer.name}.{tensor.role} = {what}"
    return f"{tensor.origin.rsplit(' ', 1)[0]} init.{tensor.layer.kind}.{tensor.role} = {what}"


def _comment(text: str) -> str:
    """`text` for a comment: ASCII, every line break escaped (a quote needs no escape there)."""
    return json.dumps(text, ensure_ascii=True)[1:-1].replace('\\"', '"')


def _group_key(t: Tracked):
    origin, span = t.tensor.origin, t.tensor.origin_span
    where = (span.line, span.column) if span is not None else (0, 0)
    if origin == "default":
        return (0, where, "default", None)
    if origin.startswith("init.paths"):
        return (4, where, origin, "paths")
    if origin.startswith("init."):
        return (1 if origin.count(".") == 1 else 2, where, origin, None)
    if origin == "layer":
        return (5, where, "layer", "layer")
    return (3, where, origin.split(" ")[0], "context")


def _scope(kind, members: list, graph: Graph):
    """Where a rule applies: None (everywhere), under block calls (`under`), or at the layers of `members`
    named by their paths or, shorter, by a suffix of them that no other layer with that role has."""
    if kind is None:
        return None
    if kind == "context":
        return ("under", tuple(cl.collapse_repeats(sorted({t.tensor.origin.rsplit(" ", 1)[1] for t in members}), graph)))
    paths = tuple(dict.fromkeys(t.path for t in members))
    if len(paths) > 1 and all("." in p for p in paths):
        mine = set(paths)
        others = set()  # every other Keras layer name (a recurrent layer's lower layers too)
        for layer in graph.layers():
            others.add(layer.path)
            if layer.kind in kt.RECURRENT:
                others |= {f"{layer.path}.l{k}" for k in range(layer.args["layers"])}
        others -= mine
        words = paths[0].split(".")
        for n in range(1, len(words)):
            suffix = ".".join(words[-n:])
            if all(p.endswith("." + suffix) for p in paths) and not any(p.endswith("." + suffix) for p in others):
                return ("endswith", suffix)
    return ("is", paths)


def init_rules(tracked: list, graph: Graph) -> list:
    """The rules of `spec_init`, in order; every tracked tensor ends with the build's initializer."""
    groups: dict = {}
    for t in tracked:
        key = _group_key(t)
        groups.setdefault((key[0], key[1], key[2], key[3], t.role), []).append(t)
    rules = []
    for (_, _, origin, scope_kind, role), members in sorted(groups.items(), key=lambda kv: kv[0][:2]):
        if origin == "default" and all(KERAS_OWN.get((t.cls, t.variable)) == t.built for t in members):
            continue  # Keras's own initializer is PyTorch's default here
        parts = [members]
        while parts:
            sub = parts.pop(0)
            classes = tuple(dict.fromkeys(t.cls for t in sub))
            for fan in (True, False):
                code = _template(sub[0], fan)
                if code is not None and all(_template(t, fan) == code for t in sub):
                    text = f"{_where(sub[0], graph)}: {_describe(sub[0], origin)}"
                    scope = _scope(scope_kind, sub, graph)
                    rules.append(Rule(_comment(text), classes if scope is None or scope[0] == "under" else None,
                                      role, scope, code, fan))
                    break
            else:
                if len(classes) > 1:  # one rule per Keras class
                    parts += [[t for t in sub if t.cls == c] for c in classes]
                elif scope_kind is None or len(sub) > 1:  # one rule per initializer
                    by_code: dict = {}
                    for t in sub:
                        by_code.setdefault(repr(_template(t)), []).append(t)
                    if len(by_code) == 1:
                        raise AssertionError("a tensor's initializer differs from itself")
                    for same in by_code.values():
                        text = f"{_where(same[0], graph)}: {_describe(same[0], origin)}"
                        rules.append(Rule(_comment(text), None, role, ("is", tuple(dict.fromkeys(t.path for t in same))),
                                          _template(same[0])))
    # what no rule gives as the build does (a later rule of lower precedence reached it): a rule of its own
    for t in tracked:
        last = None
        for rule in rules:
            if rule.applies(t):
                last = rule
        ok = last.gives(t) if last is not None else KERAS_OWN.get((t.cls, t.variable)) == t.built
        if not ok:
            text = f"{_where(t, graph)}: {_describe(t, t.tensor.origin)}"
            rules.append(Rule(_comment(text), None, t.role, ("is", (t.path,)), _template(t)))
    return _merged([part for rule in rules for part in _short_scopes(rule)])


def _short_scopes(rule: Rule) -> list:
    """A rule for several layer paths that do not fit on one line as one rule per path (ruff would split
    `path in (...)` between `path` and `in`)."""
    if rule.scope is None or rule.scope[0] != "is" or len(rule.scope[1]) == 1 or \
            len("        " + flat(scope_code(rule.scope), {}) + " and") <= LINE_LENGTH:
        return [rule]
    return [Rule(rule.comment, rule.classes, rule.role, ("is", (p,)), rule.code, rule.fan) for p in rule.scope[1]]


def _merged(rules: list) -> list:
    """Consecutive rules that differ only in the role as one (`role in (...)`): the same initializers."""
    out = []
    for rule in rules:
        last = out[-1] if out else None
        if last is not None and (last.classes, last.scope, last.code) == (rule.classes, rule.scope, rule.code) \
                and rule.role not in last.role.split(","):
            where, _, what = rule.comment.partition(": ")
            same = last.comment.startswith(where + ": ")
            comment = f"{last.comment}; {what if same else rule.comment}"
            merged = Rule(comment, last.classes, f"{last.role},{rule.role}", last.scope, last.code, last.fan)
            operands = _operands(merged)
            # `and role in (...)` last: ruff splits that bracket when the line is too long; keep such lines short
            if len(operands) > 2 or len("    if " + " and ".join(flat(o, {}) for o in operands) + ":") <= LINE_LENGTH:
                out[-1] = merged
                continue
        out.append(rule)
    return out


def _operands(rule: Rule) -> list:
    """The condition of a rule: the layer's class, the tensor's role, where the layer is (under block calls:
    last; a layer's path: first)."""
    roles = rule.role.split(",")
    operands = [Const(f"role == {json.dumps(roles[0])}" if len(roles) == 1 else f"role in {flat(tuple(roles), {})}",
                      None)]
    if rule.classes is not None:
        classes = tuple(Const(c, None) for c in rule.classes)
        operands.insert(0, Call("isinstance", (Arg(Const("layer", None)),
                                               Arg(classes[0] if len(classes) == 1 else classes))))
    if rule.scope is not None:
        operands.insert(len(operands) if rule.scope[0] == "under" else 0, scope_code(rule.scope))
    return operands


def _condition(operands: list, indent: int) -> list:
    """`if a and b:` as ruff formats it: one line, or in parentheses (every condition either fits on a line
    inside them or has two `and`s or more, or ends with a plain comparison: no bracket of its own to split)."""
    pad = " " * indent
    joined = " and ".join(flat(o, {}) for o in operands)
    if len(f"{pad}if {joined}:") <= LINE_LENGTH:
        return [f"{pad}if {joined}:"]
    if len(f"{pad}    {joined}") <= LINE_LENGTH:
        return [f"{pad}if (", f"{pad}    {joined}", f"{pad}):"]
    lines = [f"{pad}if ("]
    for i, operand in enumerate(operands):
        lines += render(operand, indent + 4, "and " if i else "")
    return lines + [f"{pad}):"]


def _fits(operands: list, indent: int) -> bool:
    return len(" " * indent + "if " + " and ".join(flat(o, {}) for o in operands) + ":") <= LINE_LENGTH


def rule_lines(rules: list) -> list:
    """`spec_init`: the rules, in order, as `if isinstance(layer, ...) and role == ...:`; consecutive rules
    for the same layers whose conditions are too long for a line as one `if` over the layers with one `if`
    per role inside."""
    lines = ["def spec_init(path: str, layer: keras.layers.Layer, role: str, model_seed: int):",
             '    """The initializer of `role` at `path`: the last of the spec\'s rules that applies."""',
             "    init = None  # None: the layer's own initializer, PyTorch's default"]
    if any(_uses_seed(rule.code) for rule in rules):
        lines.insert(2, '    seed = keras_seed(model_seed, f"{path}.{role}")')
    i = 0
    while i < len(rules):
        rule = rules[i]
        operands = _operands(rule)
        where = [o for o in operands if not (isinstance(o, Const) and o.code.startswith("role "))]
        group = [rule]
        while i + len(group) < len(rules) and (rules[i + len(group)].classes, rules[i + len(group)].scope) == \
                (rule.classes, rule.scope):
            group.append(rules[i + len(group)])
        if len(group) == 1 or len(where) == len(operands) or all(_fits(_operands(r), 4) for r in group) or \
                not _fits(where, 4):
            group = [rule]
            lines.append(f"    # {rule.comment}")
            lines += _condition(operands, 4)
            lines += render(rule.code, 8, "init = ")
            i += 1
            continue
        lines += _condition(where, 4)
        for inner in group:
            lines.append(f"        # {inner.comment}")
            lines += _condition([o for o in _operands(inner) if o not in where], 8)
            lines += render(inner.code, 12, "init = ")
        i += len(group)
    lines.append("    return init")
    return lines


def roles_line(tracked: list) -> list:
    """`roles = {...}` of `initialize`: Keras's variable names that are not the spec's role."""
    used = {t.variable: t.role for t in tracked if t.variable != t.role}
    items = [f"{json.dumps(k)}: {json.dumps(used[k])}" for k in sorted(used)]
    line = "    roles = {" + ", ".join(items) + "}"
    return [line + "  # Keras's name -> the spec's"] if len(line) + 29 <= LINE_LENGTH else [line]


def initialize_lines(tracked: list) -> list:
    return ["def initialize(model: keras.Model, seed: int) -> None:",
            '    """Each variable that a rule of `spec_init` names, drawn from its initializer."""',
            *roles_line(tracked),
            "    for layer in model.layers:",
            "        for v in layer.weights:",
            "            init = spec_init(layer.name, layer, roles.get(v.name, v.name), seed)",
            "            if init is not None:",
            "                v.assign(init(v.shape, v.dtype))"]


__all__ = ["emit_keras", "LINE_LENGTH"]
