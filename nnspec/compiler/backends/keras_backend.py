"""The Keras 3 backend: build a functional keras.Model, emit its source, copy PyTorch weights in.

`program` walks the IR once and lowers it, through the table in `keras_table`,
to a list of steps `target = layer(inputs)`; building evaluates the steps,
emitting renders them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from nnspec.compiler.backends import keras_table as kt
from nnspec.compiler.backends import seeding
from nnspec.compiler.backends.expr import LINE_LENGTH, Arg, Call, Const, Ref, evaluate, flat, render
from nnspec.compiler.backends.structure import comment_for
from nnspec.compiler.ir import Graph, Layer, Merge, Sequence

RUNTIME = "nnspec.compiler.backends.keras_runtime"
SEEDING = "nnspec.compiler.backends.seeding"


@dataclass
class Step:
    target: str
    layer: Call | None  # None: the target is a copy of the single input
    inputs: tuple
    comment: str | None = None


@dataclass
class Program:
    input_shape: tuple  # Keras layout, batch excluded
    input_dtype: str
    steps: list = field(default_factory=list)
    output: str = "x"
    output_layout: str = kt.PLAIN
    skips: int = 0
    block_hook: object = None  # emitting: block calls and repeats as calls of emitted functions


def keras_input_shape(shape: tuple, dtype: str) -> tuple:
    if input_layout(shape, dtype) == kt.CL:
        return tuple(shape[1:]) + (shape[0],)
    return tuple(shape)


def input_layout(shape: tuple, dtype: str) -> str:
    if getattr(shape, "layout", None) == "tokens":
        return kt.PLAIN
    return kt.CL if dtype == "float32" and len(shape) >= 2 else kt.PLAIN


def program(graph: Graph) -> Program:
    prog = Program(keras_input_shape(graph.input_shape, graph.input_dtype), graph.input_dtype)
    layout = _walk(graph.root, "x", input_layout(graph.input_shape, graph.input_dtype), prog, graph)
    prog.output_layout = layout if len(graph.output_shape) >= 2 else kt.PLAIN
    return prog


def _walk(node, var: str, layout: str, prog: Program, graph: Graph) -> str:
    if isinstance(node, Layer):
        return _layer(node, var, layout, prog, graph)
    if isinstance(node, Sequence):
        if prog.block_hook is not None and node.kind in ("block", "repeat"):
            hooked = prog.block_hook(node, var, layout, prog)
            if hooked is not None:
                return hooked
        for child in node.items:
            layout = _walk(child, var, layout, prog, graph)
        return layout
    if node.residual:
        return _residual(node, var, layout, prog, graph)
    return _merge(node, var, layout, prog, graph)


def _layer(layer: Layer, var: str, layout: str, prog: Program, graph: Graph) -> str:
    calls, needs, gives = kt.LAYERS[layer.kind](layer, layout)
    rank = len(layer.in_shape)
    comment = comment_for(layer, graph.file)
    if needs is not None and needs != layout and rank >= 2:
        prog.steps.append(Step(var, kt.permute(rank, layout, needs, f"{layer.path}.permute"), (var,), comment))
        comment = None
        layout = needs
    for c in calls:
        prog.steps.append(Step(var, c, (var,), comment))
        comment = None
    out = gives if gives is not None else layout
    return out if len(layer.out_shape) >= 2 else kt.PLAIN


def _residual(node: Merge, var: str, layout: str, prog: Program, graph: Graph) -> str:
    branch, shortcut = node.branches
    prog.skips += 1
    skip = f"skip_{prog.skips}"
    prog.steps.append(Step(skip, None, (var,), comment_for(node, graph.file)))
    b_layout = _walk(branch, var, layout, prog, graph)
    s_layout = _walk(shortcut, skip, layout, prog, graph)
    rank = len(node.out_shape)
    if rank >= 2 and s_layout != b_layout:
        prog.steps.append(Step(skip, kt.permute(rank, s_layout, b_layout, f"{node.path}.permute"), (skip,)))
    prog.steps.append(Step(var, Call("keras.layers.Add", (_kw("name", node.path),)), (var, skip)))
    return b_layout


MERGE_LAYERS = {"add": "keras.layers.Add", "multiply": "keras.layers.Multiply", "concat": "keras.layers.Concatenate"}


def _merge(node: Merge, var: str, layout: str, prog: Program, graph: Graph) -> str:
    """Each branch reads a copy of the input; the outputs are brought to one Keras layout, then joined."""
    prog.skips += 1
    base = f"skip_{prog.skips}"
    prog.steps.append(Step(base, None, (var,), comment_for(node, graph.file)))
    outs = []
    for i, branch in enumerate(node.branches):
        target = f"{base}_{i}"
        prog.steps.append(Step(target, None, (base,)))
        outs.append((target, branch, _walk(branch, target, layout, prog, graph)))
    rank = len(node.out_shape)
    want = kt.native(node.out_shape) if rank >= 2 else kt.PLAIN
    for target, branch, got in outs:
        where = f"{node.path}.{branch.name}"
        if len(branch.out_shape) < rank:  # features [C] against a map: [1, ..., C], channels-last
            size = (1,) * (rank - 1) + (branch.out_shape[0],)
            reshape = Call("keras.layers.Reshape", (Arg(size), _kw("name", f"{where}.reshape")))
            prog.steps.append(Step(target, reshape, (target,)))
        elif rank >= 2 and got != want:
            prog.steps.append(Step(target, kt.permute(rank, got, want, f"{where}.permute"), (target,)))
    extra = ()
    if node.op == "concat":
        logical = 0 if node.axis == "tokens" else node.out_shape.channel_axis
        extra = (_kw("axis", kt.keras_axis(logical, rank, want)),)
    layer = Call(MERGE_LAYERS[node.op], extra + (_kw("name", node.path),))
    prog.steps.append(Step(var, layer, tuple(target for target, _, _ in outs)))
    return want


def _kw(name, value):
    from nnspec.compiler.backends.expr import Arg

    return Arg(value, name)


class _Seeds(dict):
    """Bindings of `seed:<path>` references: the per-tensor Keras seed."""

    def __init__(self, seed):
        super().__init__()
        self.seed = seed

    def __missing__(self, key: str):
        return seeding.keras_seed(self.seed, key.split(":", 1)[1])


def _seed_calls(expr):
    """`expr` with every `seed:<path>` reference replaced by the call `keras_seed(seed, "<path>")`, so that
    a long path is split as ruff splits a call (the emitted file computes each seed as `build` does)."""
    if isinstance(expr, Ref) and expr.name.startswith("seed:"):
        return Call("keras_seed", (Arg(Const("seed", None)), Arg(expr.name.split(":", 1)[1])))
    if isinstance(expr, Call):
        return Call(expr.func, tuple(Arg(_seed_calls(a.value), a.keyword, a.comment) for a in expr.args),
                    expr.method)
    if isinstance(expr, list):
        return [_seed_calls(v) for v in expr]
    if isinstance(expr, tuple):
        return tuple(_seed_calls(v) for v in expr)
    return expr


def _namespace():
    import math

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras

    from nnspec.compiler.backends import keras_runtime

    ns = {"keras": keras, "math": math}
    for name in kt.CUSTOM_INITIALIZERS + kt.CUSTOM_LAYERS:
        ns[name] = getattr(keras_runtime, name)
    return ns


def build_keras(spec, seed=None):
    namespace = _namespace()
    keras = namespace["keras"]

    from nnspec.compiler.backends.seeding import check_seed

    graph = spec.graph
    seed = spec.seed if seed is None else check_seed(seed)
    if seed is None:
        seed = seeding.fresh_seed()
    prog = program(graph)
    bindings = _Seeds(seed)
    inputs = keras.Input(shape=prog.input_shape, dtype=prog.input_dtype, name="inputs")
    env = {"x": inputs}
    for step in prog.steps:
        args = [env[v] for v in step.inputs]
        if step.layer is None:
            env[step.target] = args[0]
            continue
        layer = evaluate(step.layer, namespace, bindings)
        env[step.target] = layer(args if len(args) > 1 else args[0])
    return keras.Model(inputs, env[prog.output], name=spec.name)


def emit_keras(spec) -> str:
    """Standalone source of the spec's Keras model: a function per block, loops for repeats."""
    from nnspec.compiler.backends.keras_emit import emit_keras as emit

    return emit(spec)


def _render_step(step: Step, arg: str, bindings) -> list[str]:
    """`target = Layer(...)(arg)` split as ruff format splits it: when the line is too long but
    everything up to the call's own `(` fits, only `(arg)` is split; else the layer's arguments."""
    lines = render(step.layer, 4, f"{step.target} = ", f"({arg})", bindings)
    if len(lines) > 1:
        head = f"    {step.target} = {flat(step.layer, bindings)}("
        if len(head) <= LINE_LENGTH:
            return [head, f"        {arg}", "    )"]
    return lines


def _names_in(expr) -> set:
    if isinstance(expr, Call):
        names = {expr.func.split(".")[0] if "." not in expr.func else expr.func}
        for a in expr.args:
            names |= _names_in(a.value)
        return names
    if isinstance(expr, (list, tuple)):
        out = set()
        for v in expr:
            out |= _names_in(v)
        return out
    return set()


def output_to_logical(array, spec):
    """A Keras model output (numpy) in the logical, channels-first layout."""
    import numpy as np

    prog = program(spec.graph)
    if prog.output_layout == kt.CL and array.ndim >= 3:
        return np.moveaxis(array, -1, 1)
    return array


def input_to_keras(array, spec):
    """A logical (channels-first) numpy batch in the Keras model's input layout."""
    import numpy as np

    if input_layout(spec.graph.input_shape, spec.graph.input_dtype) == kt.CL:
        return np.moveaxis(array, 1, -1)
    return array


def _transfer_recurrent(layer: Layer, state: dict, keras_model) -> None:
    """PyTorch's weight_ih/weight_hh/bias_ih/bias_hh of each layer and direction as Keras's kernel,
    recurrent_kernel and bias: transposed, gate blocks in Keras's order, the two biases summed (LSTM) or
    stacked as rows (GRU, reset_after)."""
    import numpy as np

    from nnspec.vocabulary.kinds import recurrent_tensor_names

    order = kt.KERAS_GATES[layer.kind]

    def keras_value(key: str):
        tensor = layer.tensors[key]
        value = kt.to_keras_layout(state[f"{layer.path}.{key}"], tensor)
        if order is not None:
            value = np.concatenate([np.split(value, len(order), axis=-1)[i] for i in order], axis=-1)
        return value

    values: dict = {}
    for k, sfx in recurrent_tensor_names(layer.args):
        ih, hh = keras_value(f"bias_ih_l{k}{sfx}"), keras_value(f"bias_hh_l{k}{sfx}")
        bias = np.stack([ih, hh]) if layer.kind == "gru" else ih + hh
        values.setdefault(k, []).extend([keras_value(f"weight_ih_l{k}{sfx}"), keras_value(f"weight_hh_l{k}{sfx}"),
                                         bias])
    top = layer.args["layers"] - 1
    for k, weights in values.items():
        keras_model.get_layer(layer.path if k == top else f"{layer.path}.l{k}").set_weights(weights)


def transfer_weights(torch_model, keras_model, spec) -> None:
    """Copy every parameter and normalisation statistic of the PyTorch model into the Keras model."""
    from nnspec.compiler.backends.torch_table import torch_path

    state = {k: v.detach().cpu().numpy() for k, v in torch_model.state_dict().items()}
    for layer in spec.graph.layers():
        if not layer.tensors:
            continue
        if layer.kind in kt.RECURRENT:
            _transfer_recurrent(layer, state, keras_model)
            continue
        values = [kt.to_keras_layout(state[torch_path(t)], t) for t in layer.tensors.values()]
        if layer.kind == "batchnorm":
            values += [state[f"{layer.path}.running_mean"], state[f"{layer.path}.running_var"]]
        keras_model.get_layer(layer.path).set_weights(values)
