"""PyTorch -> spec: trace each module of the source with torch.fx, one level at a time.

A module of a known class (`nn.Conv2d`, `nn.BatchNorm2d`, `nn.ReLU`, ...) is one layer; an
`nn.Sequential` is its children in order; any other module is traced with its children as leaves and
its graph decomposed into a chain of calls, with merges where the data flow forks and joins again
(`x + f(x)`, `torch.cat([a(x), b(x)], 1)`, `x * gate(x)`). Functional calls map where the vocabulary
has them (`F.relu`, `torch.flatten(x, 1)`, `x.mean((2, 3))`, `operator.add`, `torch.cat`, ...).
"""

from __future__ import annotations

import math
import operator

from nnspec.importing import ImportProblem, convnext, shuffle, tokens
from nnspec.importing.structure import Item


def _int(value):
    """A tuple of equal numbers as one number (the spec's short form), else a list."""
    if isinstance(value, (tuple, list)):
        values = [int(v) for v in value]
        return values[0] if len(set(values)) == 1 else values
    return int(value)


def _conv(m, where: str) -> Item:
    from torch import nn

    if m.padding_mode != "zeros":
        raise ImportProblem(where, f"{type(m).__name__} with padding_mode={m.padding_mode!r}: nnspec's convs pad "
                                   "with zeros only", "a `padding_mode` argument is not in the vocabulary")
    transposed = isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
    n = len(m.kernel_size)
    kind = (f"conv_transpose{n}d" if transposed else f"conv{n}d")
    args = {"out": m.out_channels, "kernel": _int(m.kernel_size)}
    if any(s != 1 for s in m.stride):
        args["stride"] = _int(m.stride)
    padding = m.padding if isinstance(m.padding, str) else _int(m.padding)
    if padding != 0:
        args["padding"] = padding
    if transposed and any(p != 0 for p in m.output_padding):
        args["output_padding"] = _int(m.output_padding)
    if any(d != 1 for d in m.dilation):
        args["dilation"] = _int(m.dilation)
    if m.groups != 1:
        args["groups"] = m.groups
    if m.bias is None:
        args["bias"] = False
    tensors = {"weight": m.weight} | ({"bias": m.bias} if m.bias is not None else {})
    return Item(kind, args, tensors=tensors)


def _linear(m, where: str) -> Item:
    args = {"out": m.out_features} | ({} if m.bias is not None else {"bias": False})
    return Item("linear", args, tensors={"weight": m.weight} | ({"bias": m.bias} if m.bias is not None else {}))


def _batchnorm(m, where: str) -> Item:
    if not m.affine or not m.track_running_stats:
        raise ImportProblem(where, f"{type(m).__name__}(affine={m.affine}, track_running_stats="
                                   f"{m.track_running_stats}): nnspec's batchnorm has both", "no such argument")
    if m.momentum is None:
        raise ImportProblem(where, "BatchNorm with momentum=None (a cumulative average) is not in the vocabulary")
    args = {}
    if m.eps != 1e-5:
        args["eps"] = float(m.eps)
    if m.momentum != 0.1:
        args["momentum"] = float(m.momentum)
    return Item("batchnorm", args, tensors={"gamma": m.weight, "beta": m.bias})


def _layernorm(m, where: str) -> Item:
    if len(m.normalized_shape) != 1 or not m.elementwise_affine or m.bias is None:
        raise ImportProblem(where, f"LayerNorm(normalized_shape={tuple(m.normalized_shape)}, elementwise_affine="
                                   f"{m.elementwise_affine}, bias={m.bias is not None}): nnspec's layernorm "
                                   "normalises the last axis with both gamma and beta")
    args = {} if m.eps == 1e-5 else {"eps": float(m.eps)}
    return Item("layernorm", args, tensors={"gamma": m.weight, "beta": m.bias})


def _groupnorm(m, where: str) -> Item:
    if not m.affine:
        raise ImportProblem(where, "GroupNorm(affine=False): nnspec's groupnorm has gamma and beta")
    args = {"groups": m.num_groups} | ({} if m.eps == 1e-5 else {"eps": float(m.eps)})
    return Item("groupnorm", args, tensors={"gamma": m.weight, "beta": m.bias})


def _pool(kind: str):
    def lower(m, where: str) -> Item:
        n = int(type(m).__name__[-2])
        name = f"{kind}{n}d"
        if kind == "maxpool" and (_int(m.dilation) != 1 or m.return_indices):
            raise ImportProblem(where, "MaxPool with dilation or return_indices is not in the vocabulary")
        if kind == "avgpool" and (not m.count_include_pad or m.divisor_override is not None):
            raise ImportProblem(where, "AvgPool with count_include_pad=False or divisor_override is not in the "
                                       "vocabulary (nnspec counts padded zeros, as PyTorch's default)")
        args = {"kernel": _int(m.kernel_size)}
        stride = _int(m.stride) if m.stride is not None else args["kernel"]
        if stride != args["kernel"]:
            args["stride"] = stride
        if _int(m.padding) != 0:
            args["padding"] = _int(m.padding)
        if m.ceil_mode:
            args["ceil_mode"] = True
        return Item(name, args)
    return lower


def _adaptive(kind: str):
    def lower(m, where: str) -> Item:
        size = m.output_size
        if size is None or (isinstance(size, tuple) and None in size):
            raise ImportProblem(where, "adaptive pooling that keeps an axis (None in output_size) is not in the "
                                       "vocabulary")
        return Item(kind, {"size": _int(size)})
    return lower


def _simple(kind: str):
    return lambda m, where: Item(kind)


def _leaky(m, where):
    return Item("leaky_relu", {} if m.negative_slope == 0.01 else {"slope": float(m.negative_slope)})


def _gelu(m, where):
    return Item("gelu", {} if m.approximate == "none" else {"approximate": m.approximate})


def _elu(m, where):
    return Item("elu", {} if m.alpha == 1.0 else {"alpha": float(m.alpha)})


def _softplus(m, where):
    if m.beta != 1 or m.threshold != 20:
        raise ImportProblem(where, f"Softplus(beta={m.beta}, threshold={m.threshold}): nnspec's softplus is "
                                   "PyTorch's default (beta 1, threshold 20)")
    return Item("softplus")


def _dropout(m, where):
    return Item("dropout", {} if m.p == 0.5 else {"p": float(m.p)})


def _flatten(m, where):
    if m.start_dim != 1 or m.end_dim != -1:
        raise ImportProblem(where, f"Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}): nnspec's flatten "
                                   "joins every axis but the batch's")
    return Item("flatten")


def _softmax(m, where):
    return Item("softmax", _axis_arg(m.dim, where))


def _axis_arg(dim, where):
    if dim is None or dim == 0:
        raise ImportProblem(where, f"softmax over dim={dim}: nnspec's axes exclude the batch")
    return {} if dim == -1 else {"axis": dim - 1 if dim > 0 else dim}


def _prelu(m, where):
    per = m.weight.numel() > 1
    return Item("prelu", {"per_channel": True} if per else {}, tensors={"weight": m.weight})


def _embedding(m, where):
    if m.padding_idx is not None or m.max_norm is not None:
        raise ImportProblem(where, "Embedding with padding_idx or max_norm is not in the vocabulary")
    return Item("embedding", {"num": m.num_embeddings, "dim": m.embedding_dim}, tensors={"weight": m.weight})


def _upsample(m, where):
    if m.size is not None or m.mode not in ("nearest", "bilinear") or m.align_corners:
        raise ImportProblem(where, f"Upsample(size={m.size}, mode={m.mode!r}, align_corners={m.align_corners}): "
                                   "nnspec's upsample takes a scale factor, mode nearest or bilinear (align_corners "
                                   "false)")
    scale = m.scale_factor
    scale = scale[0] if isinstance(scale, tuple) and len(set(scale)) == 1 else scale
    if isinstance(scale, tuple) or float(scale) != int(scale):
        raise ImportProblem(where, f"Upsample(scale_factor={m.scale_factor}): an integer scale, the same on every "
                                   "axis")
    return Item("upsample", {"scale": int(scale)} | ({} if m.mode == "nearest" else {"mode": m.mode}))


def _stochastic_depth(m, where):
    if m.mode != "row":
        raise ImportProblem(where, f"StochasticDepth(mode={m.mode!r}): nnspec's drop_path drops per sample "
                                   "(mode 'row')")
    return Item("drop_path", {"p": float(m.p)})


def leaf_table() -> dict:
    from torch import nn

    table = {
        nn.Linear: _linear, nn.Conv1d: _conv, nn.Conv2d: _conv, nn.Conv3d: _conv,
        nn.ConvTranspose1d: _conv, nn.ConvTranspose2d: _conv, nn.ConvTranspose3d: _conv,
        nn.BatchNorm1d: _batchnorm, nn.BatchNorm2d: _batchnorm, nn.BatchNorm3d: _batchnorm,
        nn.LayerNorm: _layernorm, nn.GroupNorm: _groupnorm,
        nn.MaxPool1d: _pool("maxpool"), nn.MaxPool2d: _pool("maxpool"), nn.MaxPool3d: _pool("maxpool"),
        nn.AvgPool1d: _pool("avgpool"), nn.AvgPool2d: _pool("avgpool"), nn.AvgPool3d: _pool("avgpool"),
        nn.AdaptiveAvgPool1d: _adaptive("adaptive_avg_pool"), nn.AdaptiveAvgPool2d: _adaptive("adaptive_avg_pool"),
        nn.AdaptiveAvgPool3d: _adaptive("adaptive_avg_pool"), nn.AdaptiveMaxPool2d: _adaptive("adaptive_max_pool"),
        nn.AdaptiveMaxPool1d: _adaptive("adaptive_max_pool"), nn.AdaptiveMaxPool3d: _adaptive("adaptive_max_pool"),
        nn.ReLU: _simple("relu"), nn.ReLU6: _simple("relu6"), nn.LeakyReLU: _leaky, nn.GELU: _gelu,
        nn.Tanh: _simple("tanh"), nn.Sigmoid: _simple("sigmoid"), nn.SiLU: _simple("silu"), nn.ELU: _elu,
        nn.Hardswish: _simple("hardswish"), nn.Hardsigmoid: _simple("hardsigmoid"), nn.Softplus: _softplus,
        nn.Mish: _simple("mish"), nn.Softmax: _softmax, nn.Identity: _simple("identity"),
        nn.Dropout: _dropout, nn.Dropout1d: _dropout, nn.Dropout2d: _dropout, nn.Dropout3d: _dropout,
        nn.Flatten: _flatten, nn.PReLU: _prelu, nn.Embedding: _embedding, nn.Upsample: _upsample,
        nn.ChannelShuffle: lambda m, where: Item("channel_shuffle", {"groups": m.groups}),
    }
    table.update(tokens.leaves())
    return table


# -- functional calls ------------------------------------------------------------------

def _functional() -> dict:
    import torch
    import torch.nn.functional as F

    acts = {"relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "tanh": "tanh", "silu": "silu",
            "hardswish": "hardswish", "hardsigmoid": "hardsigmoid", "mish": "mish", "gelu": "gelu", "elu": "elu",
            "softplus": "softplus", "leaky_relu": "leaky_relu"}
    out = {}
    for name, kind in acts.items():
        for space in (F, torch):
            if hasattr(space, name):
                out[getattr(space, name)] = kind
        out[name] = kind  # x.relu()
        out[name + "_"] = kind
    out.update({operator.add: "add", operator.iadd: "add", torch.add: "add", "add": "add",
                operator.mul: "multiply", operator.imul: "multiply", torch.mul: "multiply", "mul": "multiply",
                torch.cat: "concat", torch.concat: "concat", torch.flatten: "flatten", "flatten": "flatten",
                "view": "view", "reshape": "view", torch.reshape: "view", "mean": "mean", torch.mean: "mean",
                F.adaptive_avg_pool2d: "adaptive_avg_pool", F.adaptive_avg_pool1d: "adaptive_avg_pool",
                F.adaptive_max_pool2d: "adaptive_max_pool", F.dropout: "dropout", F.softmax: "softmax",
                torch.softmax: "softmax", "softmax": "softmax", "contiguous": "pass", "clone": "pass",
                F.max_pool2d: "maxpool2d", F.avg_pool2d: "avgpool2d"})
    return out


META = ("size", "dim")


def _describe(node) -> str:
    target = node.target
    if node.op == "call_method":
        return f"the method call `.{target}(...)`"
    name = getattr(target, "__name__", str(target))
    module = getattr(target, "__module__", "") or ""
    return f"the call `{module + '.' if module and module != '_operator' else ''}{name}(...)`"


def node_args(node) -> list:
    """The nodes among a node's arguments, keyword arguments too, in order (repeats kept)."""
    out = []

    def visit(value):
        if hasattr(value, "op"):
            out.append(value)
        elif isinstance(value, (list, tuple)):
            for v in value:
                visit(v)
        elif isinstance(value, dict):
            for v in value.values():
                visit(v)
    visit(node.args)
    visit(node.kwargs)
    return out


class _Converter:
    def __init__(self, root, inputs: dict):
        self.root, self.inputs = root, inputs
        self.leaves = leaf_table()
        self.functions = _functional()
        self.list_called: set = set()  # ids of modules called with a list of tensors (DenseNet's layers)
        self.class_names: dict = {}
        self.special: dict = {}  # node -> (input -> items): the constructs of pattern modules (shuffle.py)

    # -- modules --------------------------------------------------------------------
    def module(self, m, where: str) -> list:
        from torch import nn

        kind = self._leaf(m) or convnext.leaf(m)
        if kind is not None:
            item = kind(m, where)
            item.source = where
            return [item]
        if type(m) is nn.Sequential:
            return self.children(m, where)
        if isinstance(m, (nn.ModuleList, nn.ModuleDict)) and type(m).forward is nn.Module.forward:
            raise ImportProblem(where or type(m).__name__, f"{type(m).__name__} is called, but it has no forward")
        return [self.instance(m, where)]

    def children(self, m, where: str) -> list:
        """The items of a Sequential's children in order, each with its path below the Sequential."""
        items = []
        for child_name, child in m.named_children():
            for item in self.module(child, f"{where}.{child_name}" if where else child_name):
                if item.name is None and child_name.isidentifier():
                    item.name = child_name
                item.rel = (child_name,) + (item.rel or ())
                items.append(item)
        return items

    def _leaf(self, m):
        for cls in type(m).__mro__:
            if cls in self.leaves:
                if cls is not type(m) and type(m).forward is not cls.forward:
                    return None  # a subclass with its own forward: trace it
                return self.leaves[cls]
            if cls.__name__ == "StochasticDepth" and cls.__module__.startswith("torchvision"):
                return _stochastic_depth
        return None

    def instance(self, m, where: str) -> Item:
        from torch import nn

        cls = type(m)
        key = f"{cls.__module__}.{cls.__qualname__}"
        self.class_names[key] = cls.__name__
        if isinstance(m, nn.Sequential):  # a Sequential subclass with the plain forward: its children in order
            if cls.forward is nn.Sequential.forward:
                return Item("instance", body=self.children(m, where), cls=key, source=where)
        graph = self._trace(m, where)
        body = self.graph(m, graph, where)
        return Item("instance", body=body, cls=key, source=where)

    def _trace(self, m, where: str):
        import torch.fx

        class Tracer(torch.fx.Tracer):
            def is_leaf_module(self, module, qualified_name):
                return True

        label = where or type(m).__name__
        try:
            graph = Tracer().trace(m)
        except Exception as exc:
            raise ImportProblem(label, f"{type(m).__name__}.forward cannot be traced with torch.fx "
                                       f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                                "data-dependent control flow or calls on Python values have no nnspec "
                                "construct") from None
        gm = torch.fx.GraphModule(m, graph)
        args = self.inputs.get(id(m))
        if args is not None:
            import contextlib
            import io

            from torch.fx.passes.shape_prop import ShapeProp

            try:
                with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                    ShapeProp(gm).propagate(*args)
            except Exception:  # shapes are a help for `mean` and `cat`, not a must
                pass
        return gm.graph

    # -- graphs ---------------------------------------------------------------------
    def graph(self, m, graph, where: str) -> list:
        label = where or type(m).__name__
        nodes = list(graph.nodes)
        inputs = [n for n in nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise ImportProblem(label, f"{type(m).__name__}.forward takes {len(inputs)} inputs; a spec's model and "
                                       "each of its parts take one tensor")
        output = next(n for n in nodes if n.op == "output")
        result = output.args[0]
        if not hasattr(result, "op"):
            raise ImportProblem(label, f"{type(m).__name__}.forward returns a {type(result).__name__}, not one "
                                       "tensor; a spec's model returns one")
        saved = (getattr(self, "meta", None), getattr(self, "order", None), getattr(self, "emitted", None),
                 getattr(self, "m", None), getattr(self, "label", None), getattr(self, "where", None))
        self.meta = set()
        self.meta = {n for n in nodes if self._is_meta(n)} | convnext.parameters(m, nodes)
        self.meta |= tokens.shape_values(nodes, self.meta)
        self.order = {n: i for i, n in enumerate(nodes)}
        self.emitted = set()
        self.m, self.label, self.where = m, label, where
        shuffle.scan(self, nodes)
        try:
            dense = self.dense_block(nodes, inputs[0], result)
            return dense if dense is not None else self.chain(inputs[0], result)
        finally:
            self.meta, self.order, self.emitted, self.m, self.label, self.where = saved

    def dense_block(self, nodes, x, result):
        """DenseNet's dense block: layer k is called with [x, out_1, ..., out_k-1] and the block returns
        torch.cat([x, out_1, ..., out_n], 1); in the spec each layer is `concat: [[], [layer]]`, which keeps
        the running concat as its input. None when the graph has no call with a list."""
        listed = [n for n in nodes if n.op == "call_module" and any(isinstance(a, (list, tuple)) for a in n.args)]
        if not listed:
            return None
        outputs = []
        for n in listed:
            if list(n.args) != [[x] + outputs] or n.kwargs:
                break
            outputs.append(n)
        else:
            if self._function_kind(result) == "concat" and list(result.args[0]) == [x] + outputs and \
                    result.kwargs.get("dim", result.args[1] if len(result.args) > 1 else 0) == 1 and \
                    {n.op for n in nodes if n not in outputs and n is not result} <= {"placeholder", "output"}:
                items = []
                for n in outputs:
                    sub = self.m.get_submodule(n.target)
                    self.list_called.add(id(sub))
                    body = self.module(sub, f"{self.where}.{n.target}" if self.where else n.target)
                    for item in body:
                        item.rel = tuple(n.target.split(".")) + (item.rel or ())
                    if len(body) == 1 and body[0].kind == "instance":  # the concat goes inside the layer's block
                        body[0].body = [Item("concat", branches=[[], body[0].body])]
                        items += body
                    else:
                        items.append(Item("concat", branches=[[], body]))
                return items
        n = listed[0]
        raise ImportProblem(f"{self.where}.{n.target}" if self.where else n.target,
                            "the module is called with a list of tensors; a spec's layers take one tensor (the "
                            "one list the import reads is DenseNet's running concat of features)")

    def _is_meta(self, node) -> bool:
        if node.op == "call_method" and node.target in META:
            return True
        if node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "ndim", "dtype"):
            return True
        if node.op == "call_function" and node.target is operator.getitem and \
                getattr(node.args[0], "op", None) and self._is_meta(node.args[0]):
            return True
        return False

    def tensor_inputs(self, node) -> list:
        return [n for n in node_args(node) if n not in self.meta]

    def users(self, node) -> list:
        return [u for u in node.users if u not in self.meta]

    def ancestors(self, node) -> set:
        seen, stack = {node}, [node]
        while stack:
            for parent in self.tensor_inputs(stack.pop()):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen

    def chain(self, start, end) -> list:
        region = self.ancestors(end)
        items, cur = [], start
        while cur is not end:
            nexts = [u for u in self.users(cur) if u in region]
            if not nexts:
                raise ImportProblem(self.label, "the output does not depend on the input through one chain of calls")
            pattern = tokens.step(self, cur, nexts, region)
            if pattern is not None:
                node, found = pattern
                items += found
            elif len(nexts) == 1 and self.tensor_inputs(nexts[0]) == [cur]:
                node = nexts[0]
                items += self.node(node, cur)
            else:
                node = self.merge_point(cur, end, region)
                items.append(self.merge(node, cur))
            if node in self.emitted:
                raise ImportProblem(self.label, f"{_describe(node) if node.op != 'call_module' else node.target} "
                                                "is used by two branches: the graph is not a chain of merges")
            self.emitted.add(node)
            cur = node
        return items

    def merge_point(self, fork, end, region):
        later = sorted((n for n in region if self.order[n] > self.order[fork]), key=self.order.get)
        for candidate in later:
            if not self._reaches(fork, end, region, avoid=candidate):
                return candidate
        raise ImportProblem(self.label, "a fork whose branches never join again")

    def _reaches(self, a, b, region, avoid) -> bool:
        stack, seen = [a], {a}
        while stack:
            node = stack.pop()
            if node is b:
                return True
            for u in self.users(node):
                if u in region and u is not avoid and u not in seen:
                    seen.add(u)
                    stack.append(u)
        return False

    def merge(self, node, fork) -> Item:
        op = self._function_kind(node)
        if op not in ("add", "multiply", "concat"):
            raise ImportProblem(self.label, f"{self._node_text(node)} joins several tensors; nnspec joins branches "
                                            "with add, multiply and concat only")
        inputs = self.tensor_inputs(node)
        args = node.args[0] if op == "concat" else node.args
        if op == "concat":
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            self._check_channel_dim(node, dim, "torch.cat")
        elif len(inputs) != len([a for a in args if a is not None]) or node.kwargs:
            raise ImportProblem(self.label, f"{self._node_text(node)} with a number or keyword (alpha=...): nnspec's "
                                            f"`{op}` joins tensors only")
        branches = [[] if inp is fork else self.chain(fork, inp) for inp in inputs]
        if op == "concat":
            return Item("concat", branches=branches)
        # sums and products do not depend on the order: keep the source's order of tensors
        branches.sort(key=lambda b: (bool(b), self.first_tensor(b)))
        if op == "add" and len(branches) == 2:
            filled = [b for b in branches if b]
            if len(filled) == 1:
                return Item("residual", branches=[filled[0]])
            return Item("residual", branches=sorted(branches, key=self.first_tensor))
        return Item(op, branches=branches)

    def first_tensor(self, items: list) -> float:
        from nnspec.importing.structure import tensor_paths

        found = tensor_paths(items)
        return min((self.param_order.get(id(t), math.inf) for _, _, _, t, _ in found), default=math.inf)

    def _node_text(self, node) -> str:
        return f"the module `{node.target}`" if node.op == "call_module" else _describe(node)

    def _function_kind(self, node):
        if node.op in ("call_function", "call_method"):
            try:
                return self.functions.get(node.target)
            except TypeError:
                return None
        return None

    def _rank(self, node):
        meta = node.meta.get("tensor_meta")
        return len(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    def _check_channel_dim(self, node, dim, what):
        rank = self._rank(node.args[0][0] if isinstance(node.args[0], (list, tuple)) else node.args[0])
        if dim == 1 or (rank is not None and dim == -1 and rank == 2):
            return
        raise ImportProblem(self.label, f"{what} along dim={dim}: nnspec's concat joins the channel axis (dim 1)")

    def node(self, node, cur) -> list:
        if node in self.special:
            return self.special[node](cur)
        if node.op == "call_module":
            sub = self.m.get_submodule(node.target)
            path = f"{self.where}.{node.target}" if self.where else node.target
            items = self.module(sub, path)
            local = node.target.split(".")[-1]
            if len(items) == 1 and items[0].name is None and local.isidentifier():
                items[0].name = local
            if len(items) == 1 and items[0].kind == "instance":
                items[0].name = local if local.isidentifier() else None
            for item in items:  # the module's path in this one, for names (`layer1.0` -> `layer1_0`)
                item.rel = tuple(node.target.split(".")) + (item.rel or ())
            return items
        if node.op not in ("call_function", "call_method"):
            raise ImportProblem(self.label, f"`{node.op} {node.target}`: a parameter or attribute used in forward "
                                            "outside a layer has no nnspec construct")
        kind = self._function_kind(node)
        text = _describe(node)
        found = convnext.node_items(self, node, cur, kind)  # permutes, layer scale
        if found is not None:
            return found
        if kind is None:
            raise ImportProblem(self.label, f"{text} has no nnspec kind",
                                "the layer kinds are listed in the README's reference (`nnspec schema` has them all)")
        extra = [a for a in list(node.args[1:]) + list(node.kwargs.values()) if hasattr(a, "op") and a not in self.meta]
        if extra:
            raise ImportProblem(self.label, f"{text} takes a second tensor that is not a branch of the same input")
        args = list(node.args[1:])
        kwargs = dict(node.kwargs)
        if kind == "pass":
            return []
        if kind in ("relu", "relu6", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid", "mish", "softplus",
                    "elu"):
            return [Item(kind)]
        if kind == "gelu":
            approximate = kwargs.get("approximate", "none")
            return [Item("gelu", {} if approximate == "none" else {"approximate": approximate})]
        if kind == "leaky_relu":
            slope = kwargs.get("negative_slope", args[0] if args else 0.01)
            return [Item("leaky_relu", {} if slope == 0.01 else {"slope": float(slope)})]
        if kind == "flatten":
            start = kwargs.get("start_dim", args[0] if args else 0)
            end = kwargs.get("end_dim", args[1] if len(args) > 1 else -1)
            if start == 1 and end == -1:
                return [Item("flatten")]
            raise ImportProblem(self.label, f"{text} with start_dim={start}, end_dim={end}: nnspec's flatten joins "
                                            "every axis but the batch's (start_dim=1)")
        if kind == "view":
            shape = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
            if len(shape) == 2 and shape[1] == -1 and hasattr(shape[0], "op") and shape[0] in self.meta:
                return [Item("flatten")]
            raise ImportProblem(self.label, f"{text} to {shape}: nnspec has only flatten (view(x.size(0), -1))")
        if kind == "mean":
            dims = kwargs.get("dim", args[0] if args else None)
            keep = kwargs.get("keepdim", args[1] if len(args) > 1 else False)
            rank = self._rank(cur)
            dims = [dims] if isinstance(dims, int) else list(dims or [])
            if rank is not None and rank >= 3 and sorted(d % rank for d in dims) == list(range(2, rank)):
                return [Item("global_avg_pool", {"keep_dims": True} if keep else {})]
            raise ImportProblem(self.label, f"{text} over dims {dims}: nnspec averages over every spatial axis "
                                            "(global_avg_pool) only")
        if kind in ("adaptive_avg_pool", "adaptive_max_pool"):
            size = kwargs.get("output_size", args[0] if args else None)
            return [Item(kind, {"size": _int(size)})]
        if kind == "dropout":
            p = kwargs.get("p", args[0] if args else 0.5)
            return [Item("dropout", {} if p == 0.5 else {"p": float(p)})]
        if kind == "softmax":
            dim = kwargs.get("dim", args[0] if args else None)
            return [Item("softmax", _axis_arg(dim, self.label))]
        if kind in ("maxpool2d", "avgpool2d"):
            names = ("kernel_size", "stride", "padding")
            values = dict(zip(names, args)) | {k: v for k, v in kwargs.items() if k in names}
            item = {"kernel": _int(values["kernel_size"])}
            stride = values.get("stride")
            if stride not in (None, [], ()) and _int(stride) != item["kernel"]:
                item["stride"] = _int(stride)
            if _int(values.get("padding", 0)) != 0:
                item["padding"] = _int(values["padding"])
            rest = {k: v for k, v in kwargs.items() if k not in names}
            if rest.pop("ceil_mode", False):
                item["ceil_mode"] = True
            defaults = {"dilation": 1, "return_indices": False, "count_include_pad": True, "divisor_override": None}
            odd = [f"{k}={v}" for k, v in rest.items() if k not in defaults or _plain(v) != defaults[k]]
            if odd or len(args) > 3:
                raise ImportProblem(self.label, f"{text} with {', '.join(odd) or 'more positional arguments'}: not "
                                                "in the vocabulary")
            return [Item(kind, item)]
        if kind == "concat" and hasattr(node.args[0], "op") and id(self.m) in self.list_called \
                and node.args[0].op == "placeholder" and node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0) == 1:
            return []  # torch.cat(inputs, 1) of the list this module is called with: the caller's running concat
        if kind in ("add", "multiply", "concat"):
            raise ImportProblem(self.label, f"{text} joins the input with a number or an unrelated tensor; nnspec's "
                                            f"`{kind}` joins branches of one input")
        raise ImportProblem(self.label, f"{text} has no nnspec kind")


def _plain(value):
    return _int(value) if isinstance(value, (list, tuple)) and value else value


def record_inputs(module, example) -> dict:
    """id(submodule) -> the positional arguments of its first call, from one forward pass."""
    import torch

    seen: dict = {}
    hooks = []

    def hook(mod, args):
        seen.setdefault(id(mod), args)

    for sub in module.modules():
        hooks.append(sub.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in hooks:
            h.remove()
    return seen


def convert(module, input_shape) -> list:
    import torch

    shape = tuple(int(s) for s in input_shape)
    was_training = module.training
    module.eval()
    try:
        example = torch.randn(1, *shape)
        try:
            inputs = record_inputs(module, example)
        except Exception as exc:
            raise ImportProblem(type(module).__name__, f"the module does not run on an input of shape "
                                                       f"{list(shape)} (one sample, channels first): "
                                                       f"{type(exc).__name__}: {exc}") from None
        converter = _Converter(module, inputs)
        converter.param_order = {id(p): i for i, p in enumerate(module.parameters())}
        items = convnext.pair_permutes(converter.module(module, ""))
        if len(items) == 1 and items[0].kind == "instance":
            items = items[0].body  # the model's own class is the spec's top level
        return items, converter.class_names
    finally:
        module.train(was_training)


def from_torch(module, input_shape, name=None) -> str:
    from torch import nn

    from nnspec.importing.compose import compose

    if not isinstance(module, nn.Module):
        raise ImportProblem(type(module).__name__, "not a torch.nn.Module")
    shape = _input_shape(input_shape)
    items, class_names = convert(module, shape)
    return compose(items, class_names, list(shape), name or _snake_name(type(module).__name__),
                   f"{type(module).__module__}.{type(module).__qualname__}")


def _input_shape(value) -> tuple:
    if isinstance(value, str):
        value = [v for v in value.split(",")]
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ImportProblem("input", f"the input shape is a list of positive integers (one sample, channels "
                                     f"first, e.g. 3,224,224), got {value!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise ImportProblem("input", f"the input shape is a list of positive integers, got {list(shape)}")
    return shape


def _snake_name(text: str) -> str:
    from nnspec.importing.structure import _snake

    return _snake(text)
