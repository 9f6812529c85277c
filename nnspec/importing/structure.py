"""The imported model as a tree of items, and the passes that make it a short spec.

An importer gives a list of `Item`s: layers (a kind, its arguments and the source tensors by role),
merges (`residual`, `add`, `multiply`, `concat` with their branches) and instances of the source's own
module classes (`instance`, with the items of their body). Then:

1. `inline_single`: an instance of a class used once is replaced by its body;
2. `make_blocks`: the instances of a class used more than once become calls of a block whose arguments
   are what differs between them (innermost classes first; instances whose bodies differ in structure
   become variants `name`, `name_2`, ...);
3. `compress`: runs of identical block calls become one call with `repeat`;
4. `assign_names`: each item named after its source module's path below the scope, `_` for `.`, where that
   is an identifier (a run after its first module), otherwise nnspec's default names: the names
   `load_weights` reads back (nnspec/weights.py);
5. `tensor_paths`: every source tensor's spec path, walked by the naming rules of the expansion pass.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from nnspec.names import identifier_problem

MERGE_KINDS = ("residual", "add", "multiply", "concat")


@dataclass
class Item:
    kind: str  # a layer kind, a merge kind, "instance", or a block name once it is a call
    args: dict = field(default_factory=dict)
    name: Optional[str] = None
    branches: Optional[list] = None  # merges: a list of item lists
    body: Optional[list] = None  # instances and calls: the concrete items (kept for the tensor walk)
    cls: Optional[str] = None  # instances: the class's key
    tensors: dict = field(default_factory=dict)  # layers: role -> source tensor
    buffers: dict = field(default_factory=dict)  # layers: PyTorch buffer name -> value (batchnorm statistics)
    source: str = ""  # the source module or layer path, for messages
    rel: Optional[tuple] = None  # the source module's path below the module whose body holds the item, for names
    repeat: int = 1
    copies: Optional[list] = None  # a compressed run: the items it stands for, in order
    is_call: bool = False

    @property
    def has_tensors(self) -> bool:
        if self.tensors:
            return True
        return any(i.has_tensors for i in _children(self))


def _children(item: Item) -> list:
    out = []
    for branch in item.branches or ():
        out += branch
    out += item.body or []
    return out


def walk_lists(items: list):
    """Every item list of the tree, the given one first (bodies of instances and calls included)."""
    yield items
    for item in items:
        for branch in item.branches or ():
            yield from walk_lists(branch)
        if item.body is not None:
            yield from walk_lists(item.body)
        for other in (item.copies or ())[1:]:
            yield from walk_lists(other.body)


# -- 1. classes used once ------------------------------------------------------------

def inline_single(items: list) -> list:
    counts = Counter()
    for lst in walk_lists(items):
        for item in lst:
            if item.kind == "instance":
                counts[item.cls] += 1
    return _splice(items, counts)


def _splice(items: list, counts: Counter) -> list:
    out = []
    for item in items:
        if item.branches is not None:
            item.branches = [_splice(b, counts) for b in item.branches]
        if item.body is not None:
            item.body = _splice(item.body, counts)
        if item.kind == "instance" and counts[item.cls] < 2:
            body = item.body
            if len(body) == 1 and body[0].name is None:
                body[0].name = item.name
            if item.rel is not None:  # the body's paths were below the instance; now below its parent
                for inner in body:
                    if inner.rel is not None or len(body) == 1:
                        inner.rel = item.rel + (inner.rel or ())
            out += body
        else:
            out.append(item)
    return out


# -- 2. blocks -----------------------------------------------------------------------

RESERVED = set()


def make_blocks(items: list, reserved: set, hints: dict) -> dict:
    """Turn every instance into a block call; return the blocks: name -> (args with defaults, body)."""
    blocks: dict = {}
    while True:
        instances = [i for lst in walk_lists(items) for i in lst if i.kind == "instance"]
        if not instances:
            return blocks
        # a class is ready when no instance of it holds an instance still
        pending = {i.cls for i in instances if any(j.kind == "instance" for lst in walk_lists(i.body) for j in lst)}
        ready = [i for i in instances if i.cls not in pending]
        by_class: dict = {}
        for inst in ready:
            by_class.setdefault(inst.cls, []).append(inst)
        for cls, group in by_class.items():
            _blockify(cls, group, blocks, reserved, hints.get(cls, cls))
        compress(items)


def _snake(name: str) -> str:
    text = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()
    text = re.sub(r"[^a-z0-9_]", "_", text).strip("_")
    return text or "block"


def _blockify(cls: str, group: list, blocks: dict, reserved: set, label: str) -> None:
    base = _snake(label)
    if base in reserved or identifier_problem(base):
        base = f"{base}_block"
    variants: dict = {}
    for inst in group:
        variants.setdefault(_signature(inst.body), []).append(inst)
    for number, members in enumerate(variants.values(), 1):
        name = base if number == 1 else f"{base}_{number}"
        while name in blocks or name in reserved:
            name += "_"
        _one_block(name, members, blocks)


def _one_block(name: str, members: list, blocks: dict) -> None:
    rows = [dict(_values(m.body)) for m in members]
    positions = list(dict.fromkeys(where for row in rows for where in row))
    defaults = {where: _default(where, blocks) for where in positions}
    columns = [tuple(row.get(where, defaults[where]) for row in rows) for where in positions]
    args: dict = {}  # arg name -> default
    arg_of_column: dict = {}  # column values -> arg name
    at_position: dict = {}
    used = set()
    for where, column in zip(positions, columns):
        if len(set(map(_hashable, column))) == 1:
            continue
        key = tuple(map(_hashable, column))
        if key not in arg_of_column:
            arg = _arg_name(where, used)
            used.add(arg)
            arg_of_column[key] = arg
            common, n = Counter(key).most_common(1)[0]
            args[arg] = column[key.index(common)] if n * 2 > len(column) else "required"
        at_position[where] = arg_of_column[key]
    body = copy.deepcopy(members[0].body)
    _substitute(body, at_position, ())
    blocks[name] = (args, body)
    for m, row in zip(members, rows):
        call_args = {}
        for where in positions:
            arg = at_position.get(where)
            value = row.get(where, defaults[where])
            if arg is not None and arg not in call_args and args[arg] != value:
                call_args[arg] = value
        m.kind, m.args, m.is_call, m.cls = name, call_args, True, None


def _default(where: tuple, blocks: dict):
    """The value an item has when its argument is not written: the kind's default, or the block's."""
    kind, key = where[-2][1], where[-1]
    if key == "repeat":
        return 1
    if kind in blocks:
        return blocks[kind][0].get(key)
    from nnspec.vocabulary.kinds import KINDS

    if kind in KINDS and key in KINDS[kind].args.model_fields:
        return KINDS[kind].args.model_fields[key].default
    return None


def _hashable(value):
    return tuple(map(_hashable, value)) if isinstance(value, list) else value


def _arg_name(position: tuple, used: set) -> str:
    key = "n" if position[-1] == "repeat" else position[-1]  # `repeat` is a key of every item, not an argument
    layer = position[-2][0]
    for candidate in (key, f"{layer}_{key}" if layer else None):
        if candidate and candidate not in used and not identifier_problem(candidate):
            return candidate
    n = 2
    while f"{key}{n}" in used:
        n += 1
    return f"{key}{n}"


def _signature(items: list):
    return tuple((i.kind, i.name, i.rel, i.is_call,
                  None if i.branches is None else tuple(_signature(b) for b in i.branches))
                 for i in items)


def _values(items: list, prefix: tuple = ()):
    """(position, value) of every argument value and repeat count, in order; a position ends with the key
    and names its layer where it has a name."""
    for index, item in enumerate(items):
        here = prefix + (index, (item.name or item.kind, item.kind))
        for key in sorted(item.args):
            yield here + (key,), item.args[key]
        if item.repeat != 1 or item.is_call:
            yield here + ("repeat",), item.repeat
        for b, branch in enumerate(item.branches or ()):
            yield from _values(branch, here + (b,))


def _substitute(items: list, at_position: dict, prefix: tuple) -> None:
    for index, item in enumerate(items):
        here = prefix + (index, (item.name or item.kind, item.kind))
        for key, arg in at_position.items():
            if key[:-1] == here:
                if key[-1] != "repeat":
                    item.args[key[-1]] = "$" + arg
        item.args = _ordered(item.kind, item.args)
        if here + ("repeat",) in at_position:
            item.repeat = "$" + at_position[here + ("repeat",)]
        for b, branch in enumerate(item.branches or ()):
            _substitute(branch, at_position, here + (b,))


def _ordered(kind: str, args: dict) -> dict:
    from nnspec.vocabulary.kinds import KINDS

    if kind not in KINDS:
        return args
    order = {key: i for i, key in enumerate(KINDS[kind].args.model_fields)}
    return dict(sorted(args.items(), key=lambda kv: order.get(kv[0], len(order))))


# -- 3. repeat -----------------------------------------------------------------------

def compress(items: list) -> None:
    for lst in list(walk_lists(items)):
        out = []
        for item in lst:
            last = out[-1] if out else None
            if (last is not None and item.is_call and last.is_call and last.kind == item.kind
                    and last.args == item.args and item.repeat == 1 and _container(last) == _container(item)):
                if last.copies is None:
                    last.copies = [copy.copy(last)]
                last.copies.append(item)
                if item.name != last.name and numbered(last.name, len(last.copies) - 1) != item.name:
                    last.name = None  # the run is none of them
                if last.rel is not None and (item.rel is None or numbered(last.rel[-1], len(last.copies) - 1)
                                             != item.rel[-1]):
                    last.rel = None  # not numbered in order: nnspec's default name
                last.repeat = len(last.copies)
                continue
            out.append(item)
        lst[:] = out


def _container(item: Item):
    """The source container of an item (its path less the last segment), None for no module."""
    return None if item.rel is None else item.rel[:-1]


def numbered(name, j: int):
    """The name of copy j of a repeat named after its first copy: the trailing number plus j (`layer1_1`,
    copy 2: `layer1_3`; `denselayer1`: `denselayer3`; a Sequential's `0`: `2`); None without a trailing number. `load_weights` reads
    a repeat's copies by the same rule."""
    m = re.fullmatch(r"(.*?)([0-9]+)", name) if isinstance(name, str) else None
    return None if m is None else f"{m.group(1)}{int(m.group(2)) + j}"


# -- 4. names ------------------------------------------------------------------------

def assign_names(items: list, blocks: dict) -> None:
    for lst in list(walk_lists(items)) + [lst for _, body in blocks.values() for lst in walk_lists(body)]:
        _name_scope(lst)


def _name_scope(items: list) -> None:
    """Each item named after the source module it stands for, its path below the scope joined by `_`
    (`features.3` -> `features_3`, `features.2.0` -> `features_2_0`); a repeat that is a whole Sequential's
    children from 0 takes the Sequential's name (`layer1`: copies `layer1.0`, `layer1.1`, as the source's)."""
    by_container = Counter(_container(i) for i in items if i.rel is not None)
    taken = set()
    for item in items:
        wanted = item.name
        if item.rel is not None:
            wanted = "_".join(item.rel)
            if item.copies and len(item.rel) > 1 and item.rel[-1] == "0" and by_container[item.rel[:-1]] == 1:
                wanted = "_".join(item.rel[:-1])
        if item.kind in MERGE_KINDS or not (item.has_tensors or item.is_call):
            wanted = None  # merges and layers without tensors keep nnspec's default names
        if wanted is not None and (identifier_problem(wanted) or wanted in taken
                                   or re.fullmatch(r"[a-z0-9_]+_\d+", wanted) and wanted.rsplit("_", 1)[0] in
                                   {i.kind for i in items}):
            wanted = None
        item.name = wanted
        if wanted:
            taken.add(wanted)


# -- 5. tensor paths -----------------------------------------------------------------

def tensor_paths(items: list, prefix: str = "") -> list:
    """(spec path of the layer, kind, role, source tensor, source) for every tensor, in tree order."""
    return [(path, item.kind, role, tensor, item.source)
            for path, item in leaf_paths(items, prefix) for role, tensor in item.tensors.items()]


def leaf_paths(items: list, prefix: str = "") -> list:
    """(spec path, item) of every layer, in tree order."""
    out = []
    counters = Counter()
    for item in items:
        counters[item.kind] += 1
        name = item.name or f"{item.kind}_{counters[item.kind]}"
        path = f"{prefix}.{name}" if prefix else name
        copies = item.copies if item.copies else None
        if copies is not None:
            for i, one in enumerate(copies):
                out += _one_paths(one, f"{path}.{i}")
        else:
            out += _one_paths(item, path)
    return out


def _one_paths(item: Item, path: str) -> list:
    if item.is_call:
        return leaf_paths(item.body, path)
    if item.kind == "residual":
        out = leaf_paths(item.branches[0], f"{path}.branch")
        if len(item.branches) > 1:
            out += leaf_paths(item.branches[1], f"{path}.shortcut")
        return out
    if item.kind in MERGE_KINDS:
        return [p for i, b in enumerate(item.branches) for p in leaf_paths(b, f"{path}.{i}")]
    return [(path, item)]


def leaf_positions(items: list, prefix: str = "", block=None, position: tuple = (), calls=None) -> list:
    """(spec path, item, innermost block, position in that block's body) of every layer; `calls` counts
    the calls of each block (repeats included)."""
    out = []
    counters = Counter()
    for index, item in enumerate(items):
        counters[item.kind] += 1
        name = item.name or f"{item.kind}_{counters[item.kind]}"
        path = f"{prefix}.{name}" if prefix else name
        here = position + (index,)
        for i, one in enumerate(item.copies) if item.copies else [(None, item)]:
            where = path if i is None else f"{path}.{i}"
            if one.is_call:
                if calls is not None:
                    calls[one.kind] = calls.get(one.kind, 0) + 1
                out += leaf_positions(one.body, where, one.kind, (), calls)
            elif one.kind == "residual":
                for b, part in enumerate(("branch", "shortcut")[:len(one.branches)]):
                    out += leaf_positions(one.branches[b], f"{where}.{part}", block, here + (b,), calls)
            elif one.kind in MERGE_KINDS:
                for b, branch in enumerate(one.branches):
                    out += leaf_positions(branch, f"{where}.{b}", block, here + (b,), calls)
            else:
                out.append((where, one, block, here))
    return out


def at_position(items: list, position: tuple) -> Item:
    for k in range(0, len(position) - 1, 2):
        items = items[position[k]].branches[position[k + 1]]
    return items[position[-1]]
