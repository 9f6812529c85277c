"""Shared test utilities: load a spec from text, build and emit it, and check the two agree.

`assert_compiles(spec, torch=..., keras=...)` is the one-line check in the spirit of sqlglot's
`validate_all`: it builds the spec in memory, emits its standalone source, imports that, and
asserts everything the backends promise about the pair (shapes, module paths, state_dict keys and
values, forward output, a clean `ruff check` / `ruff format --check`).
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import math
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nnspec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# state_dict names of roles: norms' gamma/beta, attention's as nn.MultiheadAttention's
NORM_ROLES = {"gamma": "weight", "beta": "bias", "in_weight": "in_proj_weight", "in_bias": "in_proj_bias",
              "out_weight": "out_proj.weight", "out_bias": "out_proj.bias"}
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
_module_counter = itertools.count()


def ruff_command() -> list[str]:
    """ruff from the test environment: next to the interpreter, else on PATH, else `python -m ruff`."""
    beside = Path(sys.executable).with_name("ruff")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ruff")
    return [found] if found else [sys.executable, "-m", "ruff"]


def spec_from_text(text: str, filename: str = "fixture.yaml"):
    """A loaded spec from YAML text (dedented); raises SpecError on errors."""
    return nnspec.loads(textwrap.dedent(text).lstrip("\n"), filename)


def as_spec(spec, filename: str = "fixture.yaml"):
    if isinstance(spec, str) and "\n" in spec:
        return spec_from_text(spec, filename)
    if isinstance(spec, (str, Path)):
        return nnspec.load(spec)
    return spec


def expected_state_key(tensor_path: str, role: str) -> str:
    """The state_dict key promised by the spec format: the tensor path, gamma/beta as weight/bias; a tensor
    named apart from its role (lstm's `weight_ih_l0` of role `weight_ih`) keeps its path, PyTorch's key."""
    if not tensor_path.endswith("." + role):
        return tensor_path
    layer_path = tensor_path[: -len(role) - 1]
    return f"{layer_path}.{NORM_ROLES.get(role, role)}"


def expected_parameter_keys(spec) -> list[str]:
    return [expected_state_key(t.path, t.role) for t in spec.graph.tensors()]


def random_input(spec, batch: int = 2, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    shape = (batch, *spec.graph.input_shape)
    if spec.graph.input_dtype == "int64":
        num = min(layer.args["num"] for layer in spec.graph.layers() if layer.kind == "embedding")
        return torch.randint(0, num, shape, generator=generator)
    return torch.randn(shape, generator=generator)


def import_source(source: str, directory: Path, stem: str = "emitted"):
    """Write `source` to `directory/<stem>_<n>.py` and import it as a fresh module."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{stem}_{next(_module_counter)}"
    path = directory / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    module.__file_path__ = path
    return module


def ruff_problems(path: Path) -> str:
    """What `ruff check --isolated` and `ruff format --isolated --check` say about a file ('' if clean)."""
    out = []
    for args in (["check", "--isolated", "--no-cache"], ["format", "--isolated", "--check", "--diff", "--no-cache"]):
        result = subprocess.run(ruff_command() + args + [str(path)], check=False, capture_output=True, text=True)
        if result.returncode != 0:
            out.append(f"$ ruff {' '.join(args)}\n{result.stdout}{result.stderr}")
    return "\n".join(out)


def assert_same_state(actual: dict, expected: dict) -> None:
    """Same keys in the same order, and every value equal (bit for bit)."""
    import torch

    assert list(actual) == list(expected)
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype, key
        assert actual[key].shape == value.shape, key
        assert torch.equal(actual[key], value), f"{key} differs"


def assert_same_module_tree(emitted, built) -> None:
    """Every module path of the built model, in its order, each of the built one's class (the model's and a
    block's: in the emitted file its own subclass of nn.Sequential)."""
    from torch import nn

    ours, theirs = dict(emitted.named_modules()), dict(built.named_modules())
    assert list(ours) == list(theirs)
    for path, module in theirs.items():
        assert type(ours[path]).__name__ == type(module).__name__ or (
            (type(module) is nn.Sequential or path == "") and isinstance(ours[path], nn.Sequential)), (path, ours[path])


def expected_module_class(layer):
    """The torch.nn class a layer of this kind and input rank must become."""
    from torch import nn

    if layer.kind == "batchnorm":
        return {1: nn.BatchNorm1d, 2: nn.BatchNorm1d, 3: nn.BatchNorm2d, 4: nn.BatchNorm3d}[len(layer.in_shape)]
    if layer.kind == "attention":
        return nn.MultiheadAttention  # nnspec's SelfAttention is one, with its keys
    if layer.kind in ("lstm", "gru"):
        return nn.LSTM if layer.kind == "lstm" else nn.GRU  # nnspec's LSTM/GRU are ones, with their keys
    if layer.kind in ("global_avg_pool", "global_max_pool", "slice", "to_tokens", "to_map", "scale", "drop_path",
                      "class_token", "position_embedding", "rescale"):
        return nn.Module  # nnspec's own helper modules
    if layer.kind == "pad":
        return getattr(nn, f"ZeroPad{len(layer.in_shape) - 1}d")
    if layer.kind == "layernorm" and layer.args["over"] == "channels" and layer.in_shape.layout == "map":
        return nn.Module  # nnspec's ChannelLayerNorm
    if layer.kind == "prelu":
        return nn.PReLU if layer.in_shape.layout != "tokens" or not layer.args["per_channel"] else nn.Module
    if layer.kind.startswith("conv_transpose"):
        return getattr(nn, f"ConvTranspose{layer.kind[-2:]}")
    if layer.kind.startswith("adaptive_"):
        pool = "AdaptiveAvgPool" if layer.kind == "adaptive_avg_pool" else "AdaptiveMaxPool"
        return getattr(nn, f"{pool}{len(layer.in_shape) - 1}d")
    names = {"channel_shuffle": "ChannelShuffle", "linear": "Linear", "layernorm": "LayerNorm", "embedding": "Embedding", "relu": "ReLU",
             "relu6": "ReLU6", "leaky_relu": "LeakyReLU", "gelu": "GELU", "tanh": "Tanh", "sigmoid": "Sigmoid",
             "silu": "SiLU", "elu": "ELU", "softmax": "Softmax", "identity": "Identity", "dropout": "Dropout",
             "flatten": "Flatten", "hardswish": "Hardswish", "hardsigmoid": "Hardsigmoid", "softplus": "Softplus",
             "mish": "Mish", "groupnorm": "GroupNorm", "rmsnorm": "RMSNorm", "upsample": "Upsample"}
    if layer.kind in names:
        return getattr(nn, names[layer.kind])
    for prefix, cls in (("conv", "Conv"), ("maxpool", "MaxPool"), ("avgpool", "AvgPool")):
        if layer.kind.startswith(prefix):
            return getattr(nn, f"{cls}{layer.kind[len(prefix):]}")
    raise AssertionError(f"no expectation for kind {layer.kind}")


@dataclass
class Compiled:
    spec: Any
    model: Any  # nnspec.build result
    module: Any  # the imported emitted module
    emitted: Any  # module.build(seed) result
    source: str
    path: Path


def assert_compiles(spec, torch: Any = True, keras: Any = None, *, tmp_path: Path, seed: int = 0,
                    filename: str = "fixture.yaml") -> Compiled | None:
    """Build and emit `spec` (text, path or Spec) and check everything the torch backend promises.

    torch: True, or a dict of extra expectations: `output` (shape without batch), `params` (count),
    `keys` (the parameter keys of the state_dict, in order).
    keras: None (skip), True, or a dict of `run_parity` options: the Keras model computes the same
    function as the PyTorch one (skipped where Keras is not installed).
    """
    import torch as th

    spec = as_spec(spec, filename)
    result = None
    if torch:
        expect = torch if isinstance(torch, dict) else {}
        model = nnspec.build(spec, "torch", seed=seed)
        graph = spec.graph

        # (a) forward shape is exactly what check inferred
        x = random_input(spec, batch=2 if spec.params < 2_000_000 else 1)  # big examples: one sample
        model.eval()
        with th.no_grad():
            y = model(x)
        assert tuple(y.shape) == (x.shape[0], *graph.output_shape), (tuple(y.shape), graph.output_shape)
        if "output" in expect:
            assert tuple(graph.output_shape) == tuple(expect["output"])

        # (c) module paths are the spec's layer paths; state_dict keys are the tensor paths
        modules = dict(model.named_modules())
        for layer in graph.layers():
            assert layer.path in modules, f"no module at {layer.path}"
            assert isinstance(modules[layer.path], expected_module_class(layer)), (layer.path, modules[layer.path])
        param_keys = [k for k, _ in model.named_parameters()]
        assert param_keys == expected_parameter_keys(spec)
        buffers = [k for k in model.state_dict() if k not in set(param_keys)]
        assert all(k.rsplit(".", 1)[1] in BN_BUFFERS for k in buffers), buffers
        if "keys" in expect:
            assert param_keys == list(expect["keys"])
        if "params" in expect:
            assert sum(p.numel() for p in model.parameters()) == expect["params"] == spec.params

        # (d) the emitted file parses and is ruff-clean
        source = nnspec.emit(spec, "torch")
        ast.parse(source)
        module = import_source(source, tmp_path, "emitted")
        problems = ruff_problems(module.__file_path__)
        assert not problems, problems

        # (b) emitted build(seed) == nnspec.build(spec, seed): state_dict and forward
        emitted = module.build(seed)
        assert type(emitted).__name__ == graph.class_name or type(emitted).__name__.startswith(graph.class_name)
        assert_same_state(emitted.state_dict(), model.state_dict())
        assert_same_module_tree(emitted, model)
        emitted.eval()
        with th.no_grad():
            assert th.equal(emitted(x), y)
        result = Compiled(spec, model, module, emitted, source, module.__file_path__)
    if keras:
        import pytest

        pytest.importorskip("keras")
        from nnspec.parity import run_parity

        options = keras if isinstance(keras, dict) else {}
        report = run_parity(spec, **{"atol": 1e-4, "rtol": 1e-4, "seed": seed, **options})
        assert report.ok, report.text()
    return result


# -- one spec per initializer and layout, with the initializer on every role it is valid for --------

ANY_ROLE = {"zeros", "ones", "constant", "uniform", "normal", "trunc_normal", "values", "torch_default"}
WEIGHTS = {"xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal",
           "variance_scaling", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
           "lecun_normal"}  # any weight of 2 or more dimensions
MATRICES = {"eye", "sparse"}  # 2-D weights only: linear, embedding
CONV_WEIGHTS = {"dirac"}
BIASES = {"log_prior"}
CHUNKED = {"chunks"}  # parts of any initializer: two parts, on the even first axes of the fixtures

INIT_TEXT = {
    "zeros": "zeros", "ones": "ones", "constant": "{constant: 0.25}",
    "uniform": "{uniform: {low: -0.5, high: 0.25}}", "normal": "{normal: {mean: 0.1, std: 0.5}}",
    "trunc_normal": "{trunc_normal: {mean: 0.0, std: 1.0, low: -0.5, high: 1.5}}",
    "torch_default": "torch_default", "xavier_uniform": "{xavier_uniform: 2.0}",
    "xavier_normal": "{xavier_normal: {gain: 0.5}}", "kaiming_uniform": "{kaiming_uniform: {a: 0.2, mode: fan_out}}",
    "kaiming_normal": "{kaiming_normal: {nonlinearity: tanh}}", "orthogonal": "{orthogonal: 2}",
    "variance_scaling": "{variance_scaling: {scale: 2.0, mode: fan_avg, distribution: uniform}}",
    "glorot_uniform": "glorot_uniform", "glorot_normal": "glorot_normal", "he_uniform": "he_uniform",
    "he_normal": "he_normal", "lecun_uniform": "lecun_uniform", "lecun_normal": "lecun_normal",
    "eye": "{eye: 2}", "sparse": "{sparse: {sparsity: 0.5, std: 0.1}}", "dirac": "dirac",
    "chunks": "{chunks: [ones, {uniform: {low: -0.5, high: 0.25}}]}",
}
WAIVE = "allow: {NS201: t, NS202: t, NS203: t, NS204: t, NS205: t, NS207: t, NS209: t}"


def _values(shape, start=1):
    count = math.prod(shape)
    flat = [round((start + i) * 0.125 - 1.0, 3) for i in range(count)]

    def nest(items, dims):
        if len(dims) == 1:
            return items
        step = len(items) // dims[0]
        return [nest(items[i * step:(i + 1) * step], dims[1:]) for i in range(dims[0])]

    return nest(flat, list(shape))


def _init(name, shape):
    if name == "values":
        return f"{{values: {_values(shape)}}}"
    if name == "log_prior":
        return f"{{log_prior: {[i + 1 for i in range(shape[0])]}}}"
    return INIT_TEXT[name]


def _roles(name, kind):
    """The roles of a layer of `kind` that initializer `name` is valid for."""
    if name == "chunks":  # two parts: every first axis here is even but the embedding's
        return {"linear": ("weight", "bias"), "conv": ("weight", "bias"), "embedding": (),
                "norm": ("gamma", "beta")}[kind]
    if name in ANY_ROLE:
        return {"linear": ("weight", "bias"), "conv": ("weight", "bias"), "embedding": ("weight",),
                "norm": ("gamma", "beta")}[kind]
    if name in WEIGHTS:
        return ("weight",) if kind in ("linear", "conv", "embedding") else ()
    if name in MATRICES:
        return ("weight",) if kind in ("linear", "embedding") else ()
    if name in CONV_WEIGHTS:
        return ("weight",) if kind == "conv" else ()
    return ("bias",) if kind in ("linear", "conv") else ()


def _item(name, kind_name, category, args, shapes):
    roles = _roles(name, category)
    if not roles:
        return None
    init = ", ".join(f"{role}: {_init(name, shapes[role])}" for role in roles)
    return f"  - {kind_name}: {{{args}, init: {{{init}}}, {WAIVE}}}\n"


def initializer_specs(name):
    """(id, spec text) for each layout that exercises initializer `name` on its roles."""
    out = []
    c, length = 4, 10
    items = [
        _item(name, "conv1d", "conv", "out: 4, kernel: 3, padding: same",
              {"weight": (4, c, 3), "bias": (4,)}),
        _item(name, "batchnorm", "norm", "eps: 0.001", {"gamma": (4,), "beta": (4,)}),
        _item(name, "layernorm", "norm", "eps: 0.00001", {"gamma": (length,), "beta": (length,)}),
        _item(name, "linear", "linear", "out: 6", {"weight": (6, length), "bias": (6,)}),
    ]
    if any(items):
        body = "".join(i for i in items if i)
        head = "  - linear: {out: 3, name: head}\n"
        out.append(("1d", f"nnspec: 1\nname: m\ninput: [{c}, {length}]\nseed: 2\nlayers:\n{body}{head}"))
    conv2 = _item(name, "conv2d", "conv", "out: 4, kernel: 3, padding: same, groups: 2",
                  {"weight": (4, 2, 3, 3), "bias": (4,)})
    if conv2:
        out.append(("2d", f"nnspec: 1\nname: m\ninput: [4, 6, 5]\nlayers:\n{conv2}  - global_avg_pool\n"))
    conv3 = _item(name, "conv3d", "conv", "out: 2, kernel: 3, padding: 1", {"weight": (2, 2, 3, 3, 3), "bias": (2,)})
    if conv3:
        out.append(("3d", f"nnspec: 1\nname: m\ninput: [2, 4, 5, 3]\nlayers:\n{conv3}  - flatten\n"))
    emb = _item(name, "embedding", "embedding", "num: 7, dim: 5", {"weight": (7, 5)})
    if emb:
        header = "nnspec: 1\nname: m\ninput: {shape: [3], dtype: int64}\nlayers:\n"
        out.append(("embedding", f"{header}{emb}  - linear: {{out: 2}}\n"))
    return out


GITLAB_SEVERITIES = {"info", "minor", "major", "critical", "blocker"}


def assert_gitlab_report(text: str) -> list:
    """The fields GitLab documents for a Code Quality report: description, check_name, fingerprint,
    severity (info, minor, major, critical, blocker), location.path (relative), location.lines.begin."""
    import json
    import os
    import re

    from nnspec.codes import CODES

    report = json.loads(text)
    assert isinstance(report, list)
    for issue in report:
        assert isinstance(issue["description"], str) and issue["description"]
        assert isinstance(issue["check_name"], str) and issue["check_name"] in CODES
        assert isinstance(issue["fingerprint"], str) and re.fullmatch(r"[0-9a-f]{64}", issue["fingerprint"])
        assert issue["severity"] in GITLAB_SEVERITIES
        path = issue["location"]["path"]
        assert isinstance(path, str) and not os.path.isabs(path) and "\\" not in path
        begin = issue["location"]["lines"]["begin"]
        assert isinstance(begin, int) and begin >= 1
    fingerprints = [i["fingerprint"] for i in report]
    assert len(set(fingerprints)) == len(fingerprints)
    return report
