"""The PyTorch backend: build an nn.Module in memory, or emit its standalone source.

Both walk the IR once through `module_tree`, which turns every node into a
constructor `Call` using the table in `torch_table`; building evaluates the
calls (on the target device with the modules' default initialisation skipped,
then initialises each tensor once; on meta, nothing), emitting renders them.
"""

from __future__ import annotations

import contextlib
import math

from nnspec.compiler.backends import torch_table
from nnspec.compiler.backends.expr import LINE_LENGTH, Arg, Call, Const, Ref, evaluate, render, resolve
from nnspec.compiler.backends.structure import comment_for
from nnspec.compiler.ir import Graph, Layer, Merge, Sequence

RUNTIME = "nnspec.compiler.backends.torch_runtime"


def module_tree(node, graph: Graph, block_class, comments: bool = True) -> Call:
    """The constructor call of `node`; `block_class(node)` names a block call's class; `comments`:
    each named child's `file:line` (what a reader of the source sees; building needs none)."""
    if isinstance(node, Layer):
        return torch_table.LAYERS[node.kind](node)
    if isinstance(node, Merge):
        return merge_call(node, lambda seq: _named(seq, graph, block_class, comments=comments))
    if node.kind == "repeat":
        return Call("nn.Sequential", tuple(Arg(module_tree(c, graph, block_class, comments)) for c in node.items))
    if node.kind == "block":
        return _named(node, graph, block_class, block_class(node), comments)
    return _named(node, graph, block_class, comments=comments)


def merge_call(node: Merge, lower) -> Call:
    """The Residual or Merge call of a merge node, its branches lowered by `lower` (a Sequence ->
    an expression): the one lowering of merges, for building and for emitting."""
    if node.residual:
        branch, shortcut = node.branches
        args = [Arg(lower(branch))]
        if shortcut.items:
            args.append(Arg(lower(shortcut), "shortcut"))
        return Call("Residual", tuple(args))
    args = [Arg(node.op), Arg([b.name for b in node.branches])]
    args += [Arg(lower(b) if b.items else None) for b in node.branches]
    dim = merge_dim(node)
    return Call("Merge", tuple(args + ([Arg(dim, "dim")] if dim != 1 else [])))


def merge_dim(node: Merge) -> int:
    """The torch dim a concat joins (batch first): the channel axis, or T of tokens."""
    shape = node.out_shape
    return 1 if node.axis == "tokens" else shape.channel_axis + 1


def _named(seq: Sequence, graph: Graph, block_class, func: str = "sequential", comments: bool = True) -> Call:
    return Call(func, tuple(Arg(module_tree(child, graph, block_class, comments), child.name,
                                comment_for(child, graph.file) if comments else None)
                            for child in seq.items))


# -- build -----------------------------------------------------------------------

def _namespace():
    import torch
    from torch import nn

    from nnspec.compiler.backends import torch_runtime

    helpers = {"Residual", "Merge", "sequential", "spec_init", "spec_part", *torch_table.HELPERS}
    return {"torch": torch, "nn": nn, "math": math, **{name: getattr(torch_runtime, name) for name in helpers}}


def init_plan(graph: Graph) -> tuple:
    """Every tensor's initializer as (state_dict key, spec path, kind, arguments): what a model
    built by nnspec carries (`_nnspec_plan`), and what the emitted file holds as INITIALIZERS
    (the value of each tensor's `torch_table.plan_entry`, its plain numbers taken as they are)."""
    namespace, plain = _namespace(), (float, int, str, bool)
    plan = []
    for tensor in graph.tensors():
        kind, args = torch_table.init_plan(tensor)
        args = {name: value if type(value) in plain else evaluate(value, namespace, {}) for name, value in args.items()}
        plan.append((torch_table.torch_path(tensor), tensor.path, kind, args))
    return tuple(plan)


def build_torch(spec, seed=None, device="cpu"):
    """The spec's nn.Module, every tensor initialised once from its own stream.

    On the meta device nothing is allocated or initialised. Elsewhere the modules are constructed
    directly on `device` with their own default initialisation skipped (`torch_runtime.NoDefaultInit`): they
    allocate their tensors, which `initialize_` then fills, so each tensor is drawn once and no
    meta-to-device copy of the module tree is needed.
    """
    import gc
    from collections import OrderedDict

    import torch

    from nnspec.compiler.backends import torch_runtime
    from nnspec.compiler.backends.seeding import check_seed

    graph = spec.graph
    namespace = {**_namespace(), "sequential": torch_runtime.checked_sequential}  # the IR's names are checked
    seed = spec.seed if seed is None else check_seed(seed)
    target = torch.device(device)
    root_class = type(graph.class_name, (torch.nn.Sequential,), {
        "__module__": "nnspec.built",
        "initialize": torch_runtime.Initializable.initialize,
        "reset_parameters": torch_runtime.Initializable.reset_parameters,
    })
    # Constructing allocates thousands of small objects that hold no cycles: the cyclic collector's
    # passes over the (large) heap of the loaded spec would cost more than the construction itself.
    collecting = gc.isenabled()
    gc.disable()
    try:
        with _construction(target) as make:
            funcs: dict = {}
            children = OrderedDict((item.name, construct(module_tree(item, graph, _sequential, comments=False),
                                                         namespace, make, funcs))
                                   for item in graph.root.items)
            model = root_class(children)
    finally:
        if collecting:
            gc.enable()
    plan = init_plan(graph)
    modules = torch_runtime.attach_plan_(model, plan, seed)
    if target.type == "meta":  # nothing to initialise: shard, to_empty, then model.initialize()
        return model
    model._nnspec_state["seed"] = torch_runtime.initialize_(model, plan, seed, modules=modules)
    return model


def construct(expr, namespace: dict, make, funcs: dict | None = None):
    """`evaluate` of a module tree, each constructor called as `make(func, args, kwargs)`; `funcs`
    caches the functions that the calls' dotted names resolve to."""
    kind = type(expr)
    if kind is Call:
        funcs = {} if funcs is None else funcs
        args, kwargs = [], {}
        for a in expr.args:
            value = a.value
            if type(value) in _COMPOUND:
                value = construct(value, namespace, make, funcs)
            if a.keyword is None:
                args.append(value)
            else:
                kwargs[a.keyword] = value
        if expr.method:
            return getattr(args[0], expr.func)(*args[1:], **kwargs)
        func = funcs.get(expr.func)
        if func is None:
            func = funcs[expr.func] = resolve(namespace, expr.func)
        return make(func, args, kwargs)
    if kind is list:
        return [construct(v, namespace, make, funcs) for v in expr]
    if kind is tuple:
        return tuple(construct(v, namespace, make, funcs) for v in expr)
    return evaluate(expr, namespace, {})


_COMPOUND = frozenset((Call, list, tuple, Ref, Const))  # what construct() evaluates; anything else is a value


def _sequential(block) -> str:
    return "sequential"


@contextlib.contextmanager
def _construction(target):
    """The constructor of modules, as `make(func, args, kwargs)`, and the modes it runs under: on the
    meta device for a skeleton, plain calls; elsewhere on the target device (no device mode when it
    is already the default one, the CPU as a rule: that mode's cost is a Python call per tensor
    operation), without the modules' default initialisation (`torch_runtime.NoDefaultInit`)."""
    import torch

    from nnspec.compiler.backends.torch_runtime import NoDefaultInit

    if target.type == "meta":
        with torch.device("meta"):
            yield _call
        return
    with contextlib.ExitStack() as stack:
        if torch.get_default_device() != target:  # another device, or a caller's own default or device mode
            stack.enter_context(torch.device(target))
        yield NoDefaultInit()


def _call(func, args, kwargs):
    return func(*args, **kwargs)


def initialize(model, graph: Graph, seed=None) -> None:
    """Apply every tensor's initializer once, from its own stream; reset norm statistics."""
    from nnspec.compiler.backends import torch_runtime

    torch_runtime.initialize_(model, init_plan(graph), seed)


# -- emit ------------------------------------------------------------------------

def emit_torch(spec) -> str:
    """Standalone source of the spec's model: a class per block, loops for repeats, init by rule."""
    from nnspec.compiler.backends.torch_emit import emit_torch as emit

    return emit(spec)


def _assign(target: str, expr, indent: int) -> list[str]:
    """`target = expr` as ruff formats it: split at the call's bracket; but when even the line that
    opens the bracket is too long (a long attribute name), with the value in parentheses instead,
    if every line then fits (black's "second opinion" with the optional parentheses)."""
    lines = render(expr, indent, f"{target} = ")
    if len(lines[0]) > LINE_LENGTH:
        pad = " " * indent
        wrapped = [f"{pad}{target} = ("] + render(expr, indent + 4) + [f"{pad})"]
        if all(len(line) <= LINE_LENGTH for line in wrapped):
            return wrapped
    return lines
