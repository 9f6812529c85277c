"""The exact code each initializer compiles to, for `nnspec initializers NAME`.

Rendered from the same backend tables the compiler uses, on an example tensor.
"""

from __future__ import annotations

from nnspec.compiler.backends import keras_table, torch_table
from nnspec.compiler.backends.expr import Ref, call, flat
from nnspec.compiler.ir import InitSpec, Layer, Tensor
from nnspec.diagnostics import Span
from nnspec.vocabulary import initializers as inits

EXAMPLE_ARGS = {
    "constant": {"value": 0.1},
    "uniform": {"low": -0.1, "high": 0.1},
    "normal": {"std": 0.02},
    "trunc_normal": {"std": 0.02},
    "sparse": {"sparsity": 0.9},
    "values": {"values": [[1.0, 0.0], [0.5, 1.0]]},
    "log_prior": {"counts": [900.0, 100.0]},
}


def _example_tensor(name: str) -> Tensor:
    span = Span("example.yaml", 1, 1, 1, 1)
    if name == "dirac":
        layer = Layer("conv", "conv", "conv2d", {"out": 16, "groups": 1, "bias": False}, {}, (16, 8, 8),
                      (16, 8, 8), "float32", "float32", span, ())
        shape, fan_in, fan_out, role = (16, 16, 3, 3), 144, 144, "weight"
    elif name == "log_prior":
        layer = Layer("head", "head", "linear", {"out": 2, "bias": True}, {}, (64,), (2,), "float32", "float32",
                      span, ())
        shape, fan_in, fan_out, role = (2,), 64, 2, "bias"
    elif name == "values":
        layer = Layer("fc", "fc", "linear", {"out": 2, "bias": True}, {}, (2,), (2,), "float32", "float32", span, ())
        shape, fan_in, fan_out, role = (2, 2), 2, 2, "weight"
    else:
        layer = Layer("fc", "fc", "linear", {"out": 256, "bias": True}, {}, (128,), (256,), "float32", "float32",
                      span, ())
        shape, fan_in, fan_out, role = (256, 128), 128, 256, "weight"
    if name == "chunks":  # an LSTM's forget-gate bias of one: the bias of a linear layer of 4 gates
        shape, fan_in, fan_out, role = (256,), 128, 256, "bias"
        args = {"parts": tuple(InitSpec(part, {}) for part in ("zeros", "ones", "zeros", "zeros"))}
    else:
        args = inits.REGISTRY[name].args.model_validate(EXAMPLE_ARGS.get(name, {})).model_dump()
    tensor = Tensor(f"{layer.path}.{role}", role, shape, fan_in, fan_out, InitSpec(name, args), "layer", span, layer)
    layer.tensors[role] = tensor
    return tensor


class _Names(dict):
    def __missing__(self, key):
        return {"tensor": "w", "generator": "g"}.get(key, "seed")


def init_source_examples(name: str) -> tuple[str, str]:
    """(PyTorch code, Keras code) that `name` compiles to, on an example tensor that is described."""
    tensor = _example_tensor(name)
    what = f"on {tensor.layer.kind} {tensor.role} {list(tensor.shape)}: "
    kind, args = torch_table.init_plan(tensor)
    torch_code = flat(call("init_tensor_", Ref("tensor"), Ref("seed"), kind, **args), _Names())
    if kind in ("uniform", "normal", "trunc_normal"):
        values = ", ".join(flat(v, _Names()) for v in args.values())
        torch_code += f" (each block of w's stream: nn.init.{kind}_(block, {values}, generator=g))"
    keras_code = flat(keras_table.initializer(tensor), _Names())
    return what + torch_code, what + keras_code
