"""Weights from elsewhere into a model built by nnspec: `load_weights` and its report.

`load_weights(model, source, spec=None, rename=None, strict=True)` reads `source`
(a state dict, a `.pt`/`.pth`/`.bin` file, a `.safetensors` file, or a PyTorch
module) and pairs each of its tensors with one of the model's state_dict keys:

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
   - the last segment is the tensor's own name (`weight`, `running_mean`).
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
tier made it: never loaded, reported with both keys and both shapes.

The report lists every pair and how it was made, every key left unmatched on
either side, and every pair whose shapes differ (both keys and both shapes).
With `strict=True` (the default) any unmatched key or shape mismatch raises
`WeightsError`, which carries the report, and nothing is loaded; with
`strict=False` the pairs of equal shapes are loaded and the rest reported.

Keras models are reached through the PyTorch one: build the spec for torch,
`load_weights` into it, then `nnspec.transfer(torch_model, keras_model, spec)`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Optional

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
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


def read_source(source) -> tuple[dict, str]:
    """(state dict of tensors, a description) from any accepted source."""
    import torch

    if isinstance(source, torch.nn.Module):
        return dict(source.state_dict()), f"{type(source).__name__} (a PyTorch module)"
    if type(source).__module__.split(".")[0] in ("keras", "tf_keras", "tensorflow"):
        raise TypeError("load_weights reads PyTorch weights; for a Keras model built by nnspec, load into the "
                        "PyTorch model of the same spec and copy with nnspec.transfer(torch_model, keras_model, "
                        "spec)")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such weights file: {path}")
        if path.endswith(".safetensors"):
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise ImportError(f"{path}: reading .safetensors needs the `safetensors` package "
                                  "(pip install 'nnspec[torch]' or pip install safetensors)") from None
            return dict(sorted(load_file(path).items(), key=lambda item: _tree_key(item[0]))), path
        if not path.endswith(TORCH_SUFFIXES):
            raise ValueError(f"{path}: unknown weights format; nnspec reads {', '.join(TORCH_SUFFIXES)} "
                             "(torch.save) and .safetensors")
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: torch.load(weights_only=True) cannot read it: {exc}") from None
        return _state_dict(loaded, path), path
    if isinstance(source, dict):
        return _state_dict(source, "the state dict"), "the state dict"
    raise TypeError(f"cannot read weights from a {type(source).__name__}; give a state dict, a .pt/.pth or "
                    ".safetensors path, or a PyTorch module")


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
        else:
            report.mismatched.append((t, tshape, s, sshape))
    report.missing = [(k, tuple(target[k].shape)) for k in rest_target]
    report.unexpected = [(k, tuple(source[k].shape)) for k in rest_source]
    return report


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
        if i == last:
            key = tree.tensors.get(path, {}).get(segments[i])
            if key is not None and cost < found.get(key, cost + 1):
                found[key] = cost
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
    """Load `source` into `model` (a PyTorch module, usually built by nnspec; None builds one from `spec`)
    and return the report (`print(report)` shows it; `report.model` is the model). See the module text."""
    import torch

    if model is None:
        if spec is None:
            raise ValueError("load_weights needs a model or a spec to build one from")
        import nnspec

        model = nnspec.build(spec)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"load_weights loads into a PyTorch module, not a {type(model).__name__}; for a Keras "
                        "model build the spec for torch, load into it, then nnspec.transfer(torch_model, "
                        "keras_model, spec)")
    if spec is not None:
        _check_against_spec(model, spec)
    tensors, name = read_source(source)
    target = model.state_dict()
    report = match(target, tensors, rename, name, model=model)
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
