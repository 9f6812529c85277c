"""From an importer's items to the spec's text: blocks, repeats, names, inferred inits, checked."""

from __future__ import annotations

import re

import numpy as np

from nnspec.importing import ImportProblem
from nnspec.importing.inits import choose, infer, key_of
from nnspec.importing.render import items_lines, scalar
from nnspec.importing.structure import assign_names, compress, inline_single, make_blocks, tensor_paths


def reserved_names() -> set:
    from nnspec.vocabulary.initializers import NAMES
    from nnspec.vocabulary.kinds import KINDS
    from nnspec.vocabulary.merges import MERGES

    roles = {"weight", "bias", "gamma", "beta", "token", "in_weight", "in_bias", "out_weight", "out_bias",
             "weight_ih", "weight_hh", "bias_ih", "bias_hh", "paths"}
    return set(KINDS) | set(MERGES) | {"residual"} | set(NAMES) | roles


def compose(items: list, class_names: dict, input_value, name: str, origin: str, keras: bool = False) -> str:
    from nnspec.names import identifier_problem

    try:
        import scipy.stats  # noqa: F401
    except ImportError:
        raise ImportError("nnspec import infers initializers with scipy's statistics: pip install "
                          "'nnspec[import]' (or pip install scipy)") from None

    name = re.sub(r"\W", "_", str(name)).strip("_").lower()
    if identifier_problem(name):
        name = "imported"
    items, blocks = prepare(items, class_names)
    header = [f"# Imported from {origin} by `nnspec import`. Initializers inferred from the values:",
              "# constants exactly, random tensors by a Kolmogorov-Smirnov test (p: its p-value)."]
    structure = _structure_lines(items, blocks)
    spec = _load(_text(header, name, input_value, [], structure), origin)
    expected = _check_tensors(spec, items, origin)
    inferred = []
    for path, kind, role, values, tensor in expected:
        inferred.append((f"{path}.{role}", kind, role,
                         infer(values, kind, role, tensor.fan_in, tensor.fan_out, _bias_fan_in(spec, tensor),
                               keras=keras, seed=len(inferred))))
    choice = choose(inferred)
    if _exceptions_into_blocks(choice, items, blocks):
        structure = _structure_lines(items, blocks)
    init = _init_lines(choice)
    if choice.uncertain:
        header.append(f"# {choice.uncertain} of {choice.total} tensors fit no candidate well: marked `uncertain`.")
    text = _text(header, name, input_value, init, structure)
    problems = _problems(text)
    if problems:
        header.append("# `nnspec check` reports (the import keeps the source's choices):")
        header += [f"#   {p}" for p in problems]
        text = _text(header, name, input_value, init, structure)
    return text


def prepare(items: list, class_names: dict) -> tuple:
    """The importer's items -> (items, blocks): classes used once inlined, blocks, repeats, names."""
    items = inline_single(items)
    blocks = make_blocks(items, reserved_names(), class_names)
    compress(items)
    assign_names(items, blocks)
    return items, blocks


def _exceptions_into_blocks(choice, items, blocks) -> bool:
    """An exception that every call of a block makes for the same layer of its body (the zero-init last
    batchnorm of every residual block) is written once, as that layer's own `init` in the block."""
    from nnspec.importing.structure import at_position, leaf_positions

    calls: dict = {}
    where = {path: (block, position) for path, _, block, position in leaf_positions(items, calls=calls)}
    groups: dict = {}
    for path, value, note in choice.exceptions:
        layer, role = path.rsplit(".", 1)
        block, position = where.get(layer, (None, None))
        if block is not None:
            groups.setdefault((block, position, role), []).append((path, value, note))
    moved = set()
    for (block, position, role), members in groups.items():
        if len(members) != calls[block] or len({key_of(v) for _, v, _ in members}) != 1:
            continue
        item = at_position(blocks[block][1], position)
        item.args = {**item.args, "init": {**item.args.get("init", {}), role: members[0][1]}}
        moved.update(path for path, _, _ in members)
    choice.exceptions = [e for e in choice.exceptions if e[0] not in moved]
    return bool(moved)


def _text(header, name, input_value, init, structure) -> str:
    lines = header + ["nnspec: 1", f"name: {name}", f"input: {scalar(input_value)}", ""]
    if init:
        lines += init + [""]
    lines += structure
    return "\n".join(lines) + "\n"


def _structure_lines(items, blocks) -> list:
    lines = []
    if blocks:
        lines.append("blocks:")
        for block, (args, body) in blocks.items():
            lines.append(f"  {block}:")
            if args:
                lines.append(f"    args: {scalar(args)}")
            lines.append("    layers:")
            lines += items_lines(body, 6)
        lines.append("")
    lines.append("layers:")
    lines += items_lines(items, 2)
    return lines


def _init_lines(choice) -> list:
    lines = ["init:"]
    for role, (value, comment) in choice.roles.items():
        lines.append(f"  {role}: {key_of(value)}   # {comment}")
    kinds: dict = {}
    for (kind, role), entry in choice.defaults.items():
        kinds.setdefault(kind, []).append((role, entry))
    for kind, entries in kinds.items():
        lines.append(f"  {kind}:")
        for role, (value, comment) in entries:
            lines.append(f"    {role}: {key_of(value)}   # {comment}")
    if choice.exceptions:
        lines.append("  paths:                        # tensors that differ from the defaults above")
        for path, value, note in choice.exceptions:
            lines.append(f"    {scalar(path)}: {key_of(value)}   # {note}")
    return lines if len(lines) > 1 else []


def _load(text: str, origin: str):
    import nnspec
    from nnspec.diagnostics import SpecError

    try:
        return nnspec.loads(text, "<imported>")
    except SpecError as exc:
        first = next((d for d in exc.diagnostics if d.is_error), exc.diagnostics[0])
        raise ImportProblem(origin, f"the spec written for it does not check ({first.code}: {first.message})",
                            "please report this model to the nnspec maintainers") from None


def _problems(text: str) -> list:
    from nnspec.compiler.pipeline import analyse_text

    _, diagnostics = analyse_text(text, "<imported>")
    return [f"{d.code} {d.severity}: {d.message}" for d in diagnostics if d.severity in ("error", "warning")]


def _bias_fan_in(spec, tensor):
    if tensor.role != "bias":
        return None
    weight = tensor.path[: -len("bias")] + "weight"
    for other in spec.graph.tensors():
        if other.path == weight:
            return other.fan_in
    return None


def _check_tensors(spec, items, origin) -> list:
    """(layer path, kind, role, values, spec tensor) for every source tensor; an ImportProblem if the spec's
    tensors are not the source's, one for one with equal shapes."""
    ours = {t.path: t for t in spec.graph.tensors()}
    expected = []
    for path, kind, role, tensor, source in tensor_paths(items):
        values = _numpy(tensor)
        spec_tensor = ours.pop(f"{path}.{role}", None)
        if spec_tensor is None or tuple(spec_tensor.shape) != values.shape:
            got = "no such tensor" if spec_tensor is None else f"shape {list(spec_tensor.shape)}"
            raise ImportProblem(source or origin, f"the spec's tensor {path}.{role} ({got}) does not match the "
                                                  f"source's shape {list(values.shape)}",
                                "please report this model to the nnspec maintainers")
        expected.append((path, kind, role, values, spec_tensor))
    if ours:
        raise ImportProblem(origin, f"the spec has tensors the source lacks: {', '.join(list(ours)[:3])}",
                            "please report this model to the nnspec maintainers")
    return expected


def _numpy(tensor) -> np.ndarray:
    if hasattr(tensor, "detach"):
        return tensor.detach().cpu().double().numpy()
    return np.asarray(tensor, dtype=np.float64)
