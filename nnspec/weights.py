"""Weights from elsewhere into a model built by nnspec: `load_weights` and its report.

`load_weights(model, source, spec=None, rename=None, strict=True)` reads `source`
(a state dict, a `.pt`/`.pth`/`.bin` file, a `.safetensors` file, a PyTorch
module, or a Keras model) and pairs each of its tensors with one of the model's
state_dict keys:

1. by name: the same key on both sides;
2. by an explicit `rename` rule: a list of `(regex, replacement)` pairs (or
   `"REGEX=REPLACEMENT"` texts); the first rule whose regex is found in a source
   key rewrites it with `re.sub`, and the rewritten key is looked up;
3. by name, read through nnspec's module tree (`match(..., model=)`; `load_weights`
   and `nnspec weights` pass the model): each source key, split at its dots, is
   walked down the model's modules, a step for each module on its path:
   - a merge (an instance of nnspec's `Residual` or `Merge`: `residual_1`,
     `add_1`, `concat_1`) and its branch sequences (`branch`, `shortcut`, `0`,
     `1`, or the branches' names) take no segment: their layers are reached as
     if they sat beside the merge;
   - a model name stands for the source segment that equals it, or for several
     segments joined by `_` (`layer2_0` for `layer2.0`, `features_conv0` for
     `features.conv0`: the names `nnspec import torch` writes);
   - a repeat's copies are `NAME.0`, `NAME.1`, ...; when NAME ends in a number
     the repeat is also read as named after its first copy, copy j standing for
     that number plus j (`layer1_1` copy 1 for `layer1.2`, `denselayer1` copy 5
     for `denselayer6`);
   - a number stands for the item at that position in a sequence, every item
     counted (layers without tensors too) and a repeat counted as its copies
     (`layer1.1` for `layer1.blocks.0` of examples/resnet50.yaml, MobileNetV2's
     `features.0.0` for `features_0.conv2d_1`);
   - the last segment is the tensor's own name (`weight`, `running_mean`), or,
     a derived step, the name of a model layer that holds one tensor: a
     module's bare parameter (torchvision ConvNeXt's `features.1.0.layer_scale`
     for the `scale` layer `features_1.0.residual_1.branch.layer_scale.weight`);
   - a parameter a source module owns directly, outside any layer (torchvision
     ViT's `class_token`, `encoder.pos_embedding`), is the one tensor of the
     model module named after it and the segments before it joined by `_`
     (`class_token.token`, `encoder_pos_embedding.weight`: the names `nnspec
     import torch` writes): a derived step, two when segments are joined.
   A number is read only where both sides number the same modules: a position
   where the source's numbered children holding tensors are the positions of
   the sequence's items holding tensors (no layer added or left out); a name
   ending in a number (`layer2_0`, a copy of `denselayer1`) where the numbers
   that the names of its siblings stand for (their copies counted on) are, once
   each, those of the source's modules written alike. nnspec's default names
   count from 1 and a Sequential from 0: `linear_1` does not pair with
   `linear.1`, nor copy 0 of a repeat `unit_1` with `unit.1`.
   A step by a joined name, a copy number or a position is a derived step. A
   source key pairs with the model key it reaches with the fewest derived steps
   when that is one key, no earlier tier took it, and no other source key
   reaches it with as few; otherwise (two model keys at the fewest, two source
   keys for one model key) the key is left to the next tier. Without the model
   the keys alone are walked: no merges are known and numbers are names only;
4. by structure: the keys left on both sides, each in its module-tree order
   (state_dict order), are paired one to one when both sides have as many.

Tiers 1 and 3 are reported as "name", 2 as "rename", 4 as "structure"; a note
counts the pairs of tier 3. A pair of different shapes is a mismatch, whichever
tier made it: never loaded, reported with both keys and both shapes; but for
one case: a pair by name or rename whose shapes hold the same sizes in the same
order once the axes of size 1 are left out (torchvision ConvNeXt's layer scale,
[C, 1, 1], against nnspec's `scale`, [C]; ViT's class token [1, 1, D], nnspec's [D]) is loaded with a reshape (the values
in their order) and listed in `report.reshaped` with both keys and both shapes,
a line of its own in the report; never by structure, whose pairs are guesses.

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
    one of "name", "rename", "structure"; `mismatched`: (model key, model shape, source key, source shape), never
    loaded; `reshaped`: the matches whose shapes differ by axes of size 1 only, loaded with a reshape."""

    matches: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)
    reshaped: list = field(default_factory=list)  # pairs loaded with a reshape: (model key, shape, source key, shape)
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
        """model key -> source key, for every pair that loads (equal shapes, or reshaped)."""
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
        if self.reshaped:
            text += f"; {len(self.reshaped)} reshaped (axes of size 1 only)"
        return text + ("" if self.loaded is None else f"; {self.loaded} loaded")

    def __str__(self) -> str:
        lines = [self.summary()] + [f"note: {note}" for note in self.notes]
        if self.matches:
            width = max(len(t) for t, _, _, _ in self.matches)
            lines.append("matched (model key <- source key, shape, how):")
            lines += [f"  {t:<{width}}  <- {s}  {_shape(shape)}  {how}" for t, s, how, shape in self.matches]
        if self.reshaped:
            lines.append("reshaped, the shapes differing by axes of size 1 only (model key shape <- source key shape):")
            lines += [f"  {t} {_shape(ts)} <- {s} {_shape(ss)}" for t, ts, s, ss in self.reshaped]
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


def match(target: dict, source: dict, rename=None, source_name: str = "the source", model=None) -> WeightReport:
    """Pair source tensors with the model's keys (see the module text). `target` and `source`: key -> tensor
    (or anything with `.shape`), both in module-tree order; `model`, the module `target` is the state dict of,
    lets the name tier see its tree (merges, repeats, positions); without it names pair as the keys say."""
    rules = parse_rename(rename)
    report = WeightReport(source=source_name)
    pairs = {}  # target key -> (source key, how)
    taken = set()
    for key in source:  # by name: the same key
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
    through = _names_through_tree(target, [k for k in source if k not in taken], set(pairs), model, list(source))
    for t, s in through.items():  # by name, read through nnspec's module tree
        pairs[t] = (s, "name")
        taken.add(s)
    if through:
        report.notes.append(f"{len(through)} of the pairs by name read nnspec's module tree (merges seen through, "
                            "`_` for `.`, repeat copies and positions numbered); the others are the same key")
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
        elif how != "structure" and same_values(tshape, sshape):
            report.matches.append((t, s, how, tshape))
            report.reshaped.append((t, tshape, s, sshape))
        else:
            report.mismatched.append((t, tshape, s, sshape))
    report.missing = [(k, tuple(target[k].shape)) for k in rest_target]
    report.unexpected = [(k, tuple(source[k].shape)) for k in rest_source]
    return report


def same_values(a: tuple, b: tuple) -> bool:
    """Whether tensors of shapes `a` and `b` hold the same values in the same order: the shapes agree once
    their axes of size 1 are left out (torchvision's class token [1, 1, D] and nnspec's [D])."""
    return tuple(a) == tuple(b) or [n for n in a if n != 1] == [n for n in b if n != 1]


# -- by name through nnspec's module tree --------------------------------------------------

MERGE_CLASSES = ("Residual", "Merge")
RUNTIME = "nnspec.compiler.backends.torch_runtime"


class _Tree:
    """The model's modules as the name tier walks them: module path -> its children (name, path) in order,
    its tensors (local name -> state_dict key); which modules are merges (seen through, with their branch
    sequences), repeats (children numbered 0, 1, ...) and sequences (their items have positions)."""

    def __init__(self, target: dict, model=None) -> None:
        self.children: dict = {}
        self.tensors: dict = {}
        self.merges: set = set()
        self.sequences: set = set()
        if model is not None:
            from torch import nn

            # nnspec's merges: the runtime's classes, or an emitted file's own copies (a model nnspec built or
            # emitted carries its initialisation plan)
            own = (RUNTIME, type(model).__module__) if hasattr(model, "_nnspec_plan") else (RUNTIME,)
            for path, module in model.named_modules(remove_duplicate=False):
                self.children[path] = [(n, f"{path}.{n}" if path else n) for n, _ in module.named_children()]
                cls = type(module)
                if cls.__name__ in MERGE_CLASSES and cls.__module__ in own:
                    self.merges.add(path)
                elif isinstance(module, nn.Sequential):
                    self.sequences.add(path)
        else:  # the keys alone: no merges, and no positions (modules without tensors are not in the keys)
            for key in target:
                parts = key.split(".")[:-1]
                for i in range(len(parts)):
                    parent, path = ".".join(parts[:i]), ".".join(parts[:i + 1])
                    kids = self.children.setdefault(parent, [])
                    if (parts[i], path) not in kids:
                        kids.append((parts[i], path))
        for key in target:
            module, _, local = key.rpartition(".")
            self.tensors.setdefault(module, {})[local] = key
        self.repeats = {path for path, kids in self.children.items()
                        if kids and all(n.isdigit() for n, _ in kids) and path not in self.merges}
        self.tensors_below = {".".join(key.split(".")[:i]) for key in target for i in range(key.count(".") + 1)}
        self._visible: dict = {}

    def visible_of(self, path: str) -> list:
        return self.visible_merge(path) if path in self.merges else self.visible(path)

    def visible(self, path: str) -> list:
        """The children that names can reach from `path`: a merge and its branch sequences are seen through."""
        if path not in self._visible:
            out = []
            for name, child in self.children.get(path, ()):
                if child in self.merges:
                    for _, branch in self.children.get(child, ()):
                        out += self.visible(branch) if branch not in self.merges else self.visible_merge(branch)
                else:
                    out.append((name, child))
            self._visible[path] = out
        return self._visible[path]

    def visible_merge(self, path: str) -> list:
        return [item for _, branch in self.children.get(path, ()) for item in self.visible(branch)]

    def items(self, path: str) -> list:
        """The items of a sequence by position: every child, a repeat counted as its copies."""
        out = []
        for _, child in self.children.get(path, ()):
            out += [c for _, c in self.children[child]] if child in self.repeats else [child]
        return out


class _Numbering:
    """Whether a numbered reading accounts for the source's numbering where it is made: a reading by
    position, or by a name whose number the source writes as a segment of its own or continues in a
    repeat's copies, holds only where both sides number the same modules (those holding tensors)."""

    def __init__(self, tree: _Tree, source_keys) -> None:
        self.tree = tree
        self.modules: dict = {}  # source module path (a tuple) -> its child modules' names
        for key in source_keys:
            parts = key.split(".")[:-1]
            for i in range(len(parts)):
                self.modules.setdefault(tuple(parts[:i]), set()).add(parts[i])
        self._cache: dict = {}

    def positions(self, path: str, prefix: tuple) -> bool:
        """A number in the source for the item at that position of the sequence `path`: the numbered
        children of `prefix` that hold tensors must be the positions of the items that hold tensors."""
        key = ("pos", path, prefix)
        if key not in self._cache:
            theirs = {int(c) for c in self.modules.get(prefix, ()) if c.isdigit()}
            ours = {n for n, item in enumerate(self.tree.items(path)) if item in self.tree.tensors_below}
            self._cache[key] = theirs == ours
        return self._cache[key]

    def names(self, path: str, stem_of_ours: str, prefix: tuple, stem_of_theirs: str) -> bool:
        """Names that end in a number (`layer2_0` read as `layer2.0`, copy 1 of `denselayer1` as
        `denselayer2`): the numbers the children of `path` named `stem_of_ours<n>` stand for (a repeat's
        copies counted on from its number) must be, once each, the numbers of the source modules
        `stem_of_theirs<n>` below `prefix` that hold tensors."""
        from nnspec.importing.structure import numbered

        key = ("names", path, stem_of_ours, prefix, stem_of_theirs)
        if key not in self._cache:
            theirs = set()
            for c in self.modules.get(prefix, ()):
                m = re.fullmatch(re.escape(stem_of_theirs) + r"([0-9]+)", c)
                if m:
                    theirs.add(int(m.group(1)))
            whole, inside = [], set()  # numbers a child stands for; numbers a child stands inside of
            for name, child in self.tree.visible_of(path):
                m = re.fullmatch(re.escape(stem_of_ours) + r"([0-9]+)(_.*)?", name)
                if m is None or child not in self.tree.tensors_below:
                    continue
                n = int(m.group(1))
                if m.group(2):  # `features_2_0`: inside `features.2`
                    inside.add(n)
                    continue
                copies = len(self.tree.children[child]) if child in self.tree.repeats else 1
                whole += [int(numbered(str(n), j)) for j in range(copies)]
            self._cache[key] = (len(whole) == len(set(whole)) and not inside & set(whole)
                                and set(whole) | inside == theirs)
        return self._cache[key]


def _stem(text: str) -> str:
    return re.sub(r"[0-9]+$", "", text)


def _walk(tree: _Tree, numbering: _Numbering, segments: list) -> dict:
    """model key -> the fewest derived steps it is reached with from the source key `segments`."""
    from nnspec.importing.structure import numbered

    found: dict = {}
    last = len(segments) - 1

    def numbers_agree(path: str, name: str, i: int, k: int) -> bool:
        """A derived name that ends in a number, matched to segments i .. i+k-1: the numbering agrees."""
        end = segments[i + k - 1]
        if _stem(name) == name or _stem(end) == end:
            return True  # no number at the end: nothing numbered
        return numbering.names(path, _stem(name), tuple(segments[:i + k - 1]), _stem(end))

    def step(path: str, i: int, cost: int) -> None:
        rest = "_".join(segments[i:])
        for name, child in tree.visible_of(path):  # a parameter the source module owns: a one-tensor module
            own = tree.tensors.get(child, {})
            if name == rest and len(own) == 1 and not any(c in tree.tensors_below for _, c in tree.children.get(
                    child, ())):
                key = next(iter(own.values()))
                extra = 1 + (i < last)
                if cost + extra < found.get(key, cost + extra + 1):
                    found[key] = cost + extra
        if i == last:
            key = tree.tensors.get(path, {}).get(segments[i])
            if key is not None and cost < found.get(key, cost + 1):
                found[key] = cost
            for name, child in tree.visible_of(path):  # a bare parameter: a layer of that name with one tensor
                own = tree.tensors.get(child, {})
                if name == segments[i] and len(own) == 1 and not any(
                        c in tree.tensors_below for _, c in tree.children.get(child, ())):
                    key = next(iter(own.values()))
                    if cost + 1 < found.get(key, cost + 2):
                        found[key] = cost + 1
            return
        for name, child in tree.visible_of(path):
            for k, extra in _spans(name, segments, i, last):
                if extra == 0 or numbers_agree(path, name, i, k):
                    step(child, i + k, cost + extra)
            if child in tree.repeats and not name.isdigit():  # a repeat named after its first copy
                for j, (_, copy) in enumerate(tree.children[child]):
                    bumped = numbered(name, j)
                    if bumped is None:
                        break
                    for k, extra in _spans(bumped, segments, i, last):
                        if numbers_agree(path, bumped, i, k):
                            step(copy, i + k, cost + 1 + extra)
        if segments[i].isdigit() and path in tree.sequences \
                and numbering.positions(path, tuple(segments[:i])):  # a number: the item at that position
            items = tree.items(path)
            n = int(segments[i])
            if n < len(items):
                step(items[n], i + 1, cost + 1)

    step("", 0, 0)
    return found


def _spans(name: str, segments: list, i: int, last: int):
    """(how many source segments from i the model name stands for, the derived steps it costs): the same
    segment (0), or several joined by `_` (1)."""
    if name == segments[i]:
        yield 1, 0
    joined = segments[i]
    for k in range(2, last - i + 1):
        joined += "_" + segments[i + k - 1]
        if len(joined) > len(name):
            return
        if joined == name:
            yield k, 1
            return


def _names_through_tree(target: dict, source_keys: list, taken: set, model, all_source=()) -> dict:
    """model key -> source key for every source key that reaches exactly one model key at the fewest derived
    steps, that model key reached by no other source key at as few (ties fall to the next tier)."""
    if not source_keys:
        return {}
    tree = _Tree(target, model)
    numbering = _Numbering(tree, all_source or source_keys)
    best: dict = {}  # model key -> [(cost, source key)]
    for key in source_keys:
        found = _walk(tree, numbering, key.split("."))
        if not found:
            continue
        low = min(found.values())
        winners = [k for k, c in found.items() if c == low]
        if len(winners) == 1 and winners[0] not in taken:  # a key taken by an earlier tier: not another
            best.setdefault(winners[0], []).append((low, key))
    out = {}
    for t, claims in best.items():
        claims.sort()
        if len(claims) == 1 or claims[0][0] < claims[1][0]:
            out[t] = claims[0][1]
    return out


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
    report = match_model(model, tensors, rename, name, keras_side(source))
    target = model.state_dict()
    report.model = model
    if strict and not report.ok:
        report.loaded = 0
        raise WeightsError(f"the weights of {name} do not fit {type(model).__name__} (strict); nothing was loaded",
                           report)
    with torch.no_grad():
        for t, s, _, _ in report.matches:
            target[t].copy_(tensors[s].reshape(target[t].shape))
    report.loaded = len(report.matches)
    return report


NO_STEP_COUNTER = ("num_batches_tracked (PyTorch's batchnorm step counter) has no Keras counterpart: not matched, "
                   "left as it is")


def without_step_counters(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def match_model(model, tensors: dict, rename, name: str, keras_source: bool = False) -> WeightReport:
    """`match` against a PyTorch model (its state dict and module tree). With a Keras side, which keeps no
    batchnorm step counters, those are left out of both sides, and a note says so."""
    target = model.state_dict()
    if keras_source:
        target, tensors = without_step_counters(target), without_step_counters(tensors)
    report = match(target, tensors, rename, name, model=model)
    if keras_source:
        report.notes.append(NO_STEP_COUNTER)
    return report


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
    report = match_model(torch_model, tensors, rename, name, keras_source=True)
    target = torch_model.state_dict()
    report.model = keras_model
    if strict and not report.ok:
        report.loaded = 0
        raise WeightsError(f"the weights of {name} do not fit the Keras model `{keras_model.name}` (strict); "
                           "nothing was loaded", report)
    import torch

    with torch.no_grad():
        for t, s, _, _ in report.matches:
            target[t].copy_(tensors[s].reshape(target[t].shape))
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
