"""Weights from elsewhere into a model built by nnspec: `load_weights` and its report.

`load_weights(model, source, spec=None, rename=None, strict=True)` reads `source`
(a state dict, a `.pt`/`.pth`/`.bin` file, a `.safetensors` file, a PyTorch
module, or a Keras model) and pairs each of its tensors with one of the model's
state_dict keys:

1. by name: the same key on both sides;
2. by an explicit `rename` rule: a list of `(regex, replacement)` pairs (or
   `"REGEX=REPLACEMENT"` texts); the first rule whose regex is found in a source
   key rewrites it with `re.sub`, and the rewritten key is looked up;
3. by structure: the keys left on both sides, each in its module-tree order
   (state_dict order), are paired one to one when both sides have as many.

The report lists every pair and how it was made, every key left unmatched on
either side, and every pair whose shapes differ (both keys and both shapes).
With `strict=True` (the default) any unmatched key or shape mismatch raises
`WeightsError`, which carries the report, and nothing is loaded; with
`strict=False` the pairs of equal shapes are loaded and the rest reported.

Keras models are reached through the PyTorch one (`keras_state_dict` reads a
Keras model's variables back in the PyTorch layout, the inverse of
`nnspec.transfer`):

- `model` a Keras model built from `spec` (required then): the spec's PyTorch
  model is built and given the Keras model's own values, `source` is loaded into
  it as above, and the result is transferred into the Keras model; `report.model`
  is the Keras model.
- `source` a Keras model: with `spec` given and the source built from it (its
  layers named by the spec's paths), its variables under the spec's PyTorch keys;
  any other Keras model is read as the spec `nnspec import keras` writes of it
  (`nnspec.importing.keras_import.state_dict`), under that spec's keys.

PyTorch's `num_batches_tracked` (a batchnorm step counter) has no Keras
counterpart: with a Keras source or model it is left as it is, not matched.
Keras files are sources too: a saved model (`.keras`) and the weights of the
spec's Keras model (`.weights.h5`, which needs `spec`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Optional

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
KERAS_SUFFIXES = (".keras", ".weights.h5")
WRAPPERS = ("state_dict", "model_state_dict", "model")


class WeightsError(ValueError):
    """The weights do not fit the model (strict): the report says where; nothing was loaded."""

    def __init__(self, message: str, report: Optional[WeightReport] = None) -> None:
        super().__init__(message if report is None else f"{message}\n{report}")
        self.report = report


@dataclass
class WeightReport:
    """What `load_weights` paired, left over and loaded. `matches`: (model key, source key, how, shape), how
    one of "name", "rename", "structure"; `mismatched`: (model key, model shape, source key, source shape)."""

    matches: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)
    missing: list = field(default_factory=list)  # model keys that no source tensor fills: (key, shape)
    unexpected: list = field(default_factory=list)  # source keys that fill no model key: (key, shape)
    loaded: Optional[int] = None  # how many tensors were loaded; None when matching only (`nnspec weights`)
    source: str = "the source"
    model: object = field(default=None, repr=False, compare=False)  # the model loaded into
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.missing or self.unexpected)

    def mapping(self) -> dict:
        """model key -> source key, for every pair of equal shapes."""
        return {target: source for target, source, _, _ in self.matches}

    def summary(self) -> str:
        hows = {}
        for _, _, how, _ in self.matches:
            hows[how] = hows.get(how, 0) + 1
        parts = ", ".join(f"{n} by {how}" for how, n in hows.items()) or "none"
        text = f"{len(self.matches)} tensor(s) of {self.source} matched ({parts})"
        problems = []
        if self.mismatched:
            problems.append(f"{len(self.mismatched)} shape mismatch(es)")
        if self.missing:
            problems.append(f"{len(self.missing)} model key(s) unmatched")
        if self.unexpected:
            problems.append(f"{len(self.unexpected)} source key(s) unmatched")
        text += "; " + ", ".join(problems) if problems else "; nothing left over"
        return text + ("" if self.loaded is None else f"; {self.loaded} loaded")

    def __str__(self) -> str:
        lines = [self.summary()] + [f"note: {note}" for note in self.notes]
        if self.matches:
            width = max(len(t) for t, _, _, _ in self.matches)
            lines.append("matched (model key <- source key, shape, how):")
            lines += [f"  {t:<{width}}  <- {s}  {_shape(shape)}  {how}" for t, s, how, shape in self.matches]
        if self.mismatched:
            lines.append("shape mismatches (model key shape <- source key shape):")
            lines += [f"  {t} {_shape(ts)} <- {s} {_shape(ss)}" for t, ts, s, ss in self.mismatched]
        if self.missing:
            lines.append("unmatched in the model (no source tensor):")
            lines += [f"  {k} {_shape(shape)}" for k, shape in self.missing]
        if self.unexpected:
            lines.append("unmatched in the source (no model tensor):")
            lines += [f"  {k} {_shape(shape)}" for k, shape in self.unexpected]
        return "\n".join(lines)


def _shape(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def parse_rename(rules) -> list:
    """`rename` as a list of (compiled regex, replacement); accepts pairs or "REGEX=REPLACEMENT" texts."""
    if rules is None:
        return []
    if isinstance(rules, (str, tuple)) or isinstance(rules, dict):
        rules = list(rules.items()) if isinstance(rules, dict) else [rules]
    out = []
    for rule in rules:
        if isinstance(rule, str):
            if "=" not in rule:
                raise ValueError(f"rename rule {rule!r}: write it as REGEX=REPLACEMENT, e.g. '^backbone\\.=' ")
            pattern, replacement = rule.split("=", 1)
        elif isinstance(rule, (tuple, list)) and len(rule) == 2:
            pattern, replacement = rule
        else:
            raise ValueError(f"rename rule {rule!r}: a rule is a (regex, replacement) pair or 'REGEX=REPLACEMENT'")
        try:
            out.append((re.compile(pattern), replacement))
        except re.error as exc:
            raise ValueError(f"rename rule {rule!r}: the regex does not compile: {exc}") from None
    return out


def read_source(source, spec=None) -> tuple[dict, str]:
    """(state dict of tensors, a description) from any accepted source; a Keras model is read by `spec` when
    it was built from it, else as the spec `nnspec import keras` writes of it."""
    import torch

    if isinstance(source, torch.nn.Module):
        return dict(source.state_dict()), f"{type(source).__name__} (a PyTorch module)"
    if is_keras(source):
        return _read_keras(source, spec)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such weights file: {path}")
        if path.endswith(KERAS_SUFFIXES):
            return _read_keras_file(path, spec)
        if path.endswith(".safetensors"):
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise ImportError(f"{path}: reading .safetensors needs the `safetensors` package "
                                  "(pip install 'nnspec[torch]' or pip install safetensors)") from None
            return dict(sorted(load_file(path).items(), key=lambda item: _tree_key(item[0]))), path
        if not path.endswith(TORCH_SUFFIXES):
            raise ValueError(f"{path}: unknown weights format; nnspec reads {', '.join(TORCH_SUFFIXES)} "
                             "(torch.save), .safetensors, and Keras's .keras and .weights.h5")
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: torch.load(weights_only=True) cannot read it: {exc}") from None
        return _state_dict(loaded, path), path
    if isinstance(source, dict):
        return _state_dict(source, "the state dict"), "the state dict"
    raise TypeError(f"cannot read weights from a {type(source).__name__}; give a state dict, a .pt/.pth or "
                    ".safetensors path, a PyTorch module or a Keras model")


def keras_side(source) -> bool:
    """Whether `source` is a Keras model or file (whose batchnorm layers have no num_batches_tracked)."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source).endswith(KERAS_SUFFIXES)
    return is_keras(source)


def _read_keras_file(path: str, spec) -> tuple[dict, str]:
    """A saved Keras model (.keras; nnspec's own layers are registered first), or the weights of the spec's
    Keras model (.weights.h5, which holds no architecture: `spec` is needed)."""
    try:
        import keras

        from nnspec.compiler.backends import keras_runtime  # noqa: F401 - registers nnspec's Keras classes
    except ImportError:
        raise ImportError(f"{path}: reading a Keras file needs Keras (pip install 'nnspec[keras]')") from None
    if path.endswith(".weights.h5"):
        if spec is None:
            raise ValueError(f"{path}: a .weights.h5 file holds no architecture; give the spec whose Keras model "
                             "saved it")
        import nnspec
        from nnspec import _as_spec

        spec = _as_spec(spec)
        model = nnspec.build(spec, "keras")
        try:
            model.load_weights(path)
        except Exception as exc:
            raise ValueError(f"{path}: not the weights of the spec `{spec.name}`'s Keras model: {exc}") from None
        return keras_state_dict(model, spec), path
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:
        raise ValueError(f"{path}: keras.saving.load_model cannot read it: {exc}") from None
    tensors, _ = _read_keras(model, spec)
    return tensors, path


def is_keras(obj) -> bool:
    """Whether `obj` is a Keras model (without importing Keras)."""
    return any(cls.__module__.split(".")[0] in ("keras", "tf_keras") for cls in type(obj).__mro__) and \
        hasattr(obj, "get_layer")


def _read_keras(source, spec) -> tuple[dict, str]:
    name = getattr(source, "name", type(source).__name__)
    if spec is not None:
        from nnspec import _as_spec

        spec = _as_spec(spec)
        if built_from(source, spec):
            return keras_state_dict(source, spec), f"the Keras model `{name}` (by the spec `{spec.name}`)"
    from nnspec.importing import ImportProblem
    from nnspec.importing.keras_import import state_dict

    try:
        tensors = state_dict(source)
    except ImportProblem as exc:
        raise ValueError(f"cannot read the weights of the Keras model `{name}`: "
                         + ("its layers are not named by the spec's paths, and " if spec is not None else "")
                         + f"it does not import as a spec ({exc}); give the spec it was built from as `spec`") \
            from None
    return tensors, f"the Keras model `{name}` (as `nnspec import keras` reads it)"


def _keras_layer_names(layer) -> list:
    """The Keras layers that hold a spec layer's variables (a stacked recurrent layer: one per layer)."""
    if layer.kind in ("lstm", "gru"):
        top = layer.args["layers"] - 1
        return [layer.path if k == top else f"{layer.path}.l{k}" for k in range(layer.args["layers"])]
    return [layer.path]


def built_from(keras_model, spec) -> bool:
    """Whether every spec layer with tensors has its Keras layer (by path) with as many variables."""
    for layer in spec.graph.layers():
        if not layer.tensors:
            continue
        for name in _keras_layer_names(layer):
            try:
                keras_layer = keras_model.get_layer(name)
            except ValueError:
                return False
            if layer.kind not in ("lstm", "gru"):
                expected = len(layer.tensors) + (2 if layer.kind == "batchnorm" else 0)
                if len(keras_layer.weights) != expected:
                    return False
    return True


def from_keras_layout(array, tensor):
    """A Keras variable of the spec's Keras model as its logical (PyTorch-layout) tensor: the inverse of
    `keras_table.to_keras_layout`."""
    import numpy as np

    from nnspec.compiler.backends import keras_table as kt

    array = np.asarray(array)
    if tensor.layer.kind == "prelu":
        return array.reshape(tensor.shape)
    if tensor.role != "weight" or tensor.layer.kind in kt.TORCH_LAYOUT_KINDS:
        return array
    if array.ndim == 2:
        return array.T
    perm = list(range(2, array.ndim)) + [1, 0]
    return np.transpose(array, np.argsort(perm))


def keras_state_dict(keras_model, spec) -> dict:
    """The variables of a Keras model built from `spec`, under the spec's PyTorch state_dict keys and in the
    PyTorch layout, in the PyTorch model's order (no `num_batches_tracked`): the inverse of `nnspec.transfer`.
    An LSTM's two biases, summed in Keras, come back as `bias_ih` (the sum) and `bias_hh` (zeros)."""
    import numpy as np
    import torch

    from nnspec import _as_spec
    from nnspec.compiler.backends.torch_table import torch_path

    spec = _as_spec(spec)
    out = {}
    for layer in spec.graph.layers():
        if not layer.tensors:
            continue
        if layer.kind in ("lstm", "gru"):
            values = _recurrent_from_keras(layer, keras_model)
        else:
            weights = keras_model.get_layer(layer.path).get_weights()
            tensors = list(layer.tensors.values())
            values = {torch_path(t): from_keras_layout(w, t) for t, w in zip(tensors, weights)}
            if layer.kind == "batchnorm":
                values[f"{layer.path}.running_mean"] = weights[len(tensors)]
                values[f"{layer.path}.running_var"] = weights[len(tensors) + 1]
        out.update({key: torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
                    for key, value in values.items()})
    return out


def _recurrent_from_keras(layer, keras_model) -> dict:
    """Keras's kernel, recurrent_kernel and bias of each layer and direction as PyTorch's weight_ih, weight_hh,
    bias_ih and bias_hh: gate blocks back in PyTorch's order, transposed; GRU's stacked biases as rows."""
    import numpy as np

    from nnspec.compiler.backends import keras_table as kt
    from nnspec.vocabulary.kinds import recurrent_tensor_names

    order = kt.KERAS_GATES[layer.kind]

    def torch_value(value):
        if order is not None:
            blocks = np.split(value, len(order), axis=-1)
            value = np.concatenate([blocks[order.index(i)] for i in range(len(order))], axis=-1)
        return value.T if value.ndim == 2 else value

    names = _keras_layer_names(layer)
    out = {}
    directions = recurrent_tensor_names(layer.args)
    per_layer = len(directions) // layer.args["layers"]
    for k, name in enumerate(names):
        weights = keras_model.get_layer(name).get_weights()
        for j, (_, sfx) in enumerate(directions[k * per_layer:(k + 1) * per_layer]):
            kernel, recurrent, bias = weights[3 * j:3 * j + 3]
            tail = f"_l{k}{sfx}"
            if layer.kind == "gru":
                bias_ih, bias_hh = bias[0], bias[1]
            else:
                bias_ih, bias_hh = bias, np.zeros_like(bias)
            out.update({f"{layer.path}.weight_ih{tail}": torch_value(kernel),
                        f"{layer.path}.weight_hh{tail}": torch_value(recurrent),
                        f"{layer.path}.bias_ih{tail}": torch_value(bias_ih),
                        f"{layer.path}.bias_hh{tail}": torch_value(bias_hh)})
    return out


ROLE_ORDER = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3, "num_batches_tracked": 4}


def _tree_key(key: str) -> tuple:
    """A guess at module-tree order for keys that lost it (a .safetensors file stores them sorted): numbers
    as numbers, a module's weight before its bias and statistics. Exact for numbered (Sequential) trees."""
    *modules, role = key.split(".")
    return (tuple((0, int(m), "") if m.isdigit() else (1, 0, m) for m in modules), ROLE_ORDER.get(role, 5), role)


def _state_dict(obj, where: str) -> dict:
    import torch

    if isinstance(obj, torch.nn.Module):
        return dict(obj.state_dict())
    if not isinstance(obj, dict):
        raise ValueError(f"{where} holds a {type(obj).__name__}, not a state dict")
    for wrapper in WRAPPERS:  # a training checkpoint: {"state_dict": {...}, "epoch": ...}
        if isinstance(obj.get(wrapper), dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            return _state_dict(obj[wrapper], f"{where}[{wrapper!r}]")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"{where} holds no tensors (keys: {', '.join(map(str, list(obj)[:5]))})")
    return tensors


def match(target: dict, source: dict, rename=None, source_name: str = "the source") -> WeightReport:
    """Pair source tensors with the model's keys (see the module text). `target` and `source`: key -> tensor
    (or anything with `.shape`), both in module-tree order."""
    rules = parse_rename(rename)
    report = WeightReport(source=source_name)
    pairs = {}  # target key -> (source key, how)
    taken = set()
    for key in source:  # by name
        if key in target:
            pairs[key] = (key, "name")
            taken.add(key)
    for key in source:  # by an explicit rule
        if key in taken:
            continue
        for regex, replacement in rules:
            if regex.search(key):
                renamed = regex.sub(replacement, key)
                if renamed in target and renamed not in pairs:
                    pairs[renamed] = (key, "rename")
                    taken.add(key)
                break
    rest_target = [k for k in target if k not in pairs]
    rest_source = [k for k in source if k not in taken]
    if rest_target and len(rest_target) == len(rest_source):  # by structure
        for t, s in zip(rest_target, rest_source):
            pairs[t] = (s, "structure")
            taken.add(s)
        rest_target, rest_source = [], []
    if source_name.endswith(".safetensors") and any(
            how == "structure" and tuple(target[t].shape) != tuple(source[s].shape) for t, (s, how) in pairs.items()):
        report.notes.append("a .safetensors file does not keep the order of its tensors, so pairing by structure "
                            "follows a guessed order (numbered modules in order, named ones by name); save the state "
                            "dict with torch.save, pass the module itself, or give --rename rules")
    for t in target:
        if t not in pairs:
            continue
        s, how = pairs[t]
        tshape, sshape = tuple(target[t].shape), tuple(source[s].shape)
        if tshape == sshape:
            report.matches.append((t, s, how, tshape))
        else:
            report.mismatched.append((t, tshape, s, sshape))
    report.missing = [(k, tuple(target[k].shape)) for k in rest_target]
    report.unexpected = [(k, tuple(source[k].shape)) for k in rest_source]
    return report


def load_weights(model, source, spec=None, rename=None, strict: bool = True) -> WeightReport:
    """Load `source` into `model` (a PyTorch module, usually built by nnspec; a Keras model built from
    `spec`; None builds a PyTorch one from `spec`) and return the report (`print(report)` shows it;
    `report.model` is the model). See the module text."""
    import torch

    if model is not None and is_keras(model):
        return _load_into_keras(model, source, spec, rename, strict)
    if model is None:
        if spec is None:
            raise ValueError("load_weights needs a model or a spec to build one from")
        import nnspec

        model = nnspec.build(spec)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"load_weights loads into a PyTorch module, or a Keras model built from `spec` (through "
                        f"its PyTorch model and nnspec.transfer), not a {type(model).__name__}")
    if spec is not None:
        _check_against_spec(model, spec)
    tensors, name = read_source(source, spec)
    target = model.state_dict()
    keras_source = keras_side(source)
    if keras_source:
        target = without_step_counters(target)
    report = match(target, tensors, rename, name)
    if keras_source:
        report.notes.append(NO_STEP_COUNTER)
    report.model = model
    if strict and not report.ok:
        report.loaded = 0
        raise WeightsError(f"the weights of {name} do not fit {type(model).__name__} (strict); nothing was loaded",
                           report)
    with torch.no_grad():
        for t, s, _, _ in report.matches:
            target[t].copy_(tensors[s])
    report.loaded = len(report.matches)
    return report


NO_STEP_COUNTER = ("num_batches_tracked (PyTorch's batchnorm step counter) has no Keras counterpart: not matched, "
                   "left as it is")


def without_step_counters(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _load_into_keras(keras_model, source, spec, rename, strict) -> WeightReport:
    """Through the spec's PyTorch model: given the Keras model's own values, `source` loaded into it, then
    transferred into the Keras model (nothing, when strict refuses)."""
    if spec is None:
        raise ValueError("load_weights into a Keras model needs the spec it was built from: "
                         "load_weights(keras_model, source, spec=SPEC)")
    import nnspec
    from nnspec import _as_spec

    spec = _as_spec(spec)
    if not built_from(keras_model, spec):
        raise ValueError(f"the Keras model `{keras_model.name}` was not built from the spec `{spec.name}`: its "
                         "layers are not named by the spec's paths")
    torch_model = nnspec.build(spec)
    torch_model.load_state_dict(keras_state_dict(keras_model, spec), strict=False)  # the Keras model's values
    tensors, name = read_source(source, spec)
    tensors = without_step_counters(tensors)
    target = without_step_counters(torch_model.state_dict())
    report = match(target, tensors, rename, name)
    report.notes.append(NO_STEP_COUNTER)
    report.model = keras_model
    if strict and not report.ok:
        report.loaded = 0
        raise WeightsError(f"the weights of {name} do not fit the Keras model `{keras_model.name}` (strict); "
                           "nothing was loaded", report)
    import torch

    with torch.no_grad():
        for t, s, _, _ in report.matches:
            target[t].copy_(tensors[s])
    nnspec.transfer(torch_model, keras_model, spec)
    report.loaded = len(report.matches)
    return report


def _check_against_spec(model, spec) -> None:
    from nnspec import _as_spec
    from nnspec.compiler.backends import torch_table

    spec = _as_spec(spec)
    params = dict(model.named_parameters())
    wrong = [f"{k}: the spec says {list(t.shape)}, the model has "
             + (f"{list(params[k].shape)}" if k in params else "no such parameter")
             for t in spec.graph.tensors() for k in [torch_table.torch_path(t)]
             if k not in params or tuple(params[k].shape) != tuple(t.shape)]
    if wrong:
        raise ValueError(f"the model was not built from the spec `{spec.name}`: " + "; ".join(wrong[:5]))


def save_weights(tensors: dict, path: str) -> None:
    """Write key -> tensor as .safetensors or with torch.save (.pt/.pth/.bin/.ckpt)."""
    import torch

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import save_file
        except ImportError:
            raise ImportError("writing .safetensors needs the `safetensors` package (pip install safetensors)") \
                from None
        save_file(tensors, path)
    elif path.endswith(TORCH_SUFFIXES):
        torch.save(tensors, path)
    else:
        raise ValueError(f"{path}: write .safetensors or one of {', '.join(TORCH_SUFFIXES)}")
