"""The PyTorch backend: build an nn.Module in memory, or emit its standalone source.

Both walk the IR once through `module_tree`, which turns every node into a
constructor `Call` using the table in `torch_table`; building evaluates the
calls (on the meta device, then materialises and initialises each tensor
once), emitting renders them.
"""

from __future__ import annotations

import math

from nnspec.compiler.backends import seeding, torch_table
from nnspec.compiler.backends.expr import Arg, Call, call, evaluate, render
from nnspec.compiler.backends.structure import (
    block_signatures,
    comment_for,
    kinds_used,
    runtime_source,
    uses_residual,
)
from nnspec.compiler.ir import Graph, Layer, Residual, Sequence


RUNTIME = "nnspec.compiler.backends.torch_runtime"


def module_tree(node, graph: Graph, block_class) -> Call:
    """The constructor call of `node`; `block_class(block_name)` names a block call's class."""
    if isinstance(node, Layer):
        return torch_table.LAYERS[node.kind](node)
    if isinstance(node, Residual):
        kwargs = [Arg(_named(node.branch, graph, block_class), "branch")]
        if node.shortcut is not None:
            kwargs.append(Arg(_named(node.shortcut, graph, block_class), "shortcut"))
        return Call("Residual", tuple(kwargs))
    if node.kind == "repeat":
        return Call("nn.Sequential", tuple(Arg(module_tree(c, graph, block_class)) for c in node.items))
    if node.kind == "block":
        return _named(node, graph, block_class, block_class(node.block))
    return _named(node, graph, block_class)


def _named(seq: Sequence, graph: Graph, block_class, func: str = "sequential") -> Call:
    return Call(func, tuple(Arg(module_tree(child, graph, block_class), child.name, comment_for(child, graph.file))
                            for child in seq.items))


# -- build -----------------------------------------------------------------------

def _namespace():
    import torch
    from torch import nn

    from nnspec.compiler.backends import torch_runtime

    return {"torch": torch, "nn": nn, "math": math, "Residual": torch_runtime.Residual,
            "GlobalAvgPool": torch_runtime.GlobalAvgPool, "sequential": torch_runtime.sequential}


def build_torch(spec, seed=None, device="cpu"):
    import torch

    graph = spec.graph
    namespace = _namespace()
    seed = spec.seed if seed is None else seed
    children = {}
    with torch.device("meta"):
        for item in graph.root.items:
            children[item.name] = evaluate(module_tree(item, graph, lambda b: "sequential"), namespace, {})
    root_class = type(graph.class_name, (torch.nn.Sequential,), {"__module__": "nnspec.built"})
    from collections import OrderedDict

    with torch.device("meta"):
        model = root_class(OrderedDict(children))
    if device == "meta":
        return model
    model = model.to_empty(device=device)
    initialize(model, graph, seed)
    return model


def initialize(model, graph: Graph, seed=None) -> None:
    """Apply every tensor's initializer once, each from its own generator; reset norm statistics."""
    import torch

    if seed is None:
        seed = seeding.fresh_seed()
    namespace = _namespace()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for tensor in graph.tensors():
            path = torch_table.torch_path(tensor)
            param = params[path]
            generator = torch.Generator(param.device).manual_seed(seeding.tensor_seed(seed, tensor.path))
            for c in torch_table.init_calls(tensor):
                evaluate(c, namespace, {"tensor": param, "generator": generator})
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()


# -- emit ------------------------------------------------------------------------

def emit_torch(spec) -> str:
    from nnspec import __version__
    from nnspec.schema.errors import class_name
    from nnspec.templates import render_template

    graph = spec.graph
    classes = {name: class_name(name) for name in block_signatures(graph)}
    helpers = []
    if uses_residual(graph):
        helpers.append(runtime_source(RUNTIME, "Residual"))
    if any(k in kinds_used(graph) for k in torch_table.HELPERS_BY_KIND):
        helpers.append(runtime_source(RUNTIME, "GlobalAvgPool"))
    helpers.append(runtime_source(RUNTIME, "sequential"))
    attributes = []
    for item in graph.root.items:
        tree = module_tree(item, graph, lambda b: classes[b])
        attributes.append({"comment": comment_for(item, graph.file),
                           "lines": render(tree, 8, f"self.{item.name} = ")})
    inits = []
    for tensor in graph.tensors():
        bindings = {"tensor": f'params["{torch_table.torch_path(tensor)}"]',
                    "generator": f'rng("{tensor.path}")'}
        where = tensor.source if tensor.origin_span else "default"
        lines = []
        for c in torch_table.init_calls(tensor):
            lines += render(c, 12, bindings=bindings)
        inits.append({"comment": f"{tensor.path}: {tensor.init.describe()} ({_where(tensor, graph)})",
                      "lines": lines, "where": where})
    uses_rng = any(
        any(isinstance(a.value, type(torch_table.G)) and a.value == torch_table.G for a in c.args)
        for tensor in graph.tensors() for c in torch_table.init_calls(tensor))
    uses_math = any("math." in line for entry in inits for line in entry["lines"])
    blocks = [{"name": name, "class_name": classes[name], "children": children,
               "line": graph.blocks[name].line} for name, children in block_signatures(graph).items()]
    has_bn = any(layer.kind == "batchnorm" for layer in graph.layers())
    return render_template("torch.py.j2", {
        "version": __version__,
        "spec_file": spec.file,
        "spec_name": spec.name,
        "class_name": graph.class_name,
        "seed": spec.seed,
        "helpers": "\n\n\n".join(h.strip() for h in helpers),
        "tensor_seed": runtime_source("nnspec.compiler.backends.seeding", "tensor_seed"),
        "blocks": blocks,
        "attributes": attributes,
        "children": [item.name for item in graph.root.items],
        "inits": inits,
        "uses_rng": uses_rng,
        "uses_math": uses_math,
        "has_bn": has_bn,
        "input_shape": list(graph.input_shape),
        "output_shape": list(graph.output_shape),
        "params": graph.params,
    })


def _where(tensor, graph: Graph) -> str:
    import os

    if tensor.origin_span is None:
        return "default"
    return f"{os.path.basename(graph.file)}:{tensor.origin_span.line}"
