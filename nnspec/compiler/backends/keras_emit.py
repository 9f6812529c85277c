"""Emitted Keras source: a function of the functional API per spec block, loops for repeats.

Each block call becomes `x = block(x, "its.path", seed, arg=...)`; the function applies the
block's layers, named `f"{name}.child"` as the build names them, each with its initializer
seeded from the model seed and the tensor's path as in `build`. The steps are `keras_backend`'s
(`program`), so the emitted model is the built one, layer names and weights alike.
"""

from __future__ import annotations

import json
import os

from nnspec.compiler.backends import classes as cl
from nnspec.compiler.backends import keras_backend as kb
from nnspec.compiler.backends import keras_table as kt
from nnspec.compiler.backends.expr import LINE_LENGTH, Arg, Call, Const, render
from nnspec.compiler.backends.structure import comment_for, runtime_source
from nnspec.compiler.ir import Graph, Sequence

RESERVED = frozenset({"keras", "math", "np", "os", "hashlib", "build", "tensor_seed", "keras_seed", "SEED",
                      "inputs", "x", "seed", "name", "i", *kt.CUSTOM_INITIALIZERS, *kt.CUSTOM_LAYERS})
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


def _trim(tree):
    """`tree` without the keyword arguments that repeat a Keras default."""
    if isinstance(tree, Call):
        omit = KERAS_OMIT.get(tree.func, {})
        args = tuple(Arg(_trim(a.value), a.keyword, a.comment) for a in tree.args
                     if not (a.keyword in omit and a.value == omit[a.keyword]))
        return Call(tree.func, args, tree.method)
    return tree


def _tree(step):
    return _trim(kb._seed_calls(step.layer)) if step.layer is not None else None


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
        return Call(cls.name, (Arg(node.path), Arg(Const("seed", None))) + ctor.args)


def _step_lines(label: str, comment, tree, indent: int) -> list:
    target, inputs, kind = label.split("|")
    inputs = inputs.split(",")
    pad = " " * indent
    lines = [f"{pad}# {comment}"] if comment else []
    if kind == "copy":
        return lines + [f"{pad}{target} = {inputs[0]}"]
    if kind == "call":
        return lines + render(Call(tree.func, (Arg(Const(inputs[0], None)),) + tree.args), indent, f"{target} = ")
    if kind == "loop":
        count, path, inner = (a.value for a in tree.args)
        path = path.code[:-1] + '.{i}"' if isinstance(path, Const) else json.dumps(path + ".{i}")
        path = path if path.startswith("f") else "f" + path
        call = Call(inner.func, (Arg(Const(inputs[0], None)), Arg(Const(path, None))) + inner.args)
        count = count.code if isinstance(count, Const) else str(count)
        return lines + [f"{pad}for i in range({count}):"] + render(call, indent + 4, f"{target} = ")
    arg = f"[{', '.join(inputs)}]" if len(inputs) > 1 else inputs[0]
    step = kb.Step(target, tree, tuple(inputs))
    if indent == 4:
        return lines + kb._render_step(step, arg, {})
    return lines + render(tree, indent, f"{target} = ", f"({arg})")


def _function_lines(cls, graph: Graph) -> list:
    file = json.dumps(os.path.basename(graph.file), ensure_ascii=True)[1:-1]
    params = ["x", "name: str", "seed: int"]
    keyword = []
    for pname, annotation, default in cls.params:
        text = f"{pname}: {annotation}" if annotation else pname
        if default is not cl.REQUIRED:
            from nnspec.compiler.backends.expr import flat

            text += f" = {flat(default, {})}" if annotation else f"={flat(default, {})}"
        keyword.append(text)
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
        if step.layer is not None:
            used |= kb._names_in(step.layer)
        lines += _step_lines(_label(step), step.comment, tree, 4)
    functions = []
    for cls in em.classes.classes:
        for _, _, tree in cls.body:
            used |= kb._names_in(tree) if tree is not None else set()
        functions.append("\n".join(_function_lines(cls, graph)))
    classes = [runtime_source(kb.RUNTIME, n) for n in kt.CUSTOM_INITIALIZERS + kt.CUSTOM_LAYERS if n in used]
    source_text = "\n".join(lines) + "\n" + "\n".join(classes) + "\n".join(functions)
    return render_template("keras.py.j2", {
        "version": __version__,
        "spec_file": spec.file,
        "spec_name": spec.name,
        "seed": spec.seed,
        "tensor_seed": runtime_source(kb.SEEDING, "tensor_seed"),
        "keras_seed": runtime_source(kb.SEEDING, "keras_seed"),
        "classes": "\n\n\n".join(classes),
        "functions": functions,
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


__all__ = ["emit_keras", "LINE_LENGTH"]
