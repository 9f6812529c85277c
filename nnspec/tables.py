"""Plain-text tables for `nnspec inits`, `nnspec build` and `nnspec initializers`."""

from __future__ import annotations

from nnspec.compiler.budget import BYTES_PER_PARAM, PARITY_BATCH, PROBE_BATCH, activation_bytes, human_bytes
from nnspec.compiler.ir import Layer, Merge
from nnspec.formats import _one_line
from nnspec.vocabulary.initializers import REGISTRY


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell; every cell on one line, control characters escaped (a cell holds
    text from the spec: a line break or an escape sequence there would forge lines or drive the terminal)."""
    rows = [[_one_line(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def inits_table(spec) -> str:
    rows = []
    waivers = []
    for layer in spec.graph.layers():
        for t in layer.tensors.values():
            nd = len(t.shape) >= 2
            rows.append([t.path, "x".join(map(str, t.shape)), str(t.fan_in) if nd else "-",
                         str(t.fan_out) if nd else "-", t.init.describe(),
                         f"{t.origin_span.at()} ({t.origin})" if t.origin_span else "default"])
        for code, (reason, span) in layer.allow.items():
            waivers.append(_one_line(f"  {layer.path}: allow {code} ({span.at()}): {reason}"))
    text = table(["tensor", "shape", "fan_in", "fan_out", "initializer", "from"], rows)
    params = spec.params
    text += f"\n{len(rows)} tensors, {params:,} parameters ({human_bytes(params * BYTES_PER_PARAM)} in float32)\n"
    if waivers:
        text += "\nwaivers:\n" + "\n".join(waivers) + "\n"
    return text


def _layer_inits(layer) -> str:
    """`role=init` per tensor; a role of several tensors (every layer and direction of an lstm) that share one
    initializer is written once."""
    by_role: dict = {}
    for key, t in layer.tensors.items():
        by_role.setdefault(t.role, []).append((key, t.init.describe()))
    parts = []
    for role, entries in by_role.items():
        if len({text for _, text in entries}) == 1:
            parts.append(f"{role}={entries[0][1]}")
        else:
            parts += [f"{key}={text}" for key, text in entries]
    return ", ".join(parts)


def build_table(spec) -> str:
    rows = []
    for node in _summary_nodes(spec.graph.root):
        shape = node.out_shape
        output, layout = "x".join(map(str, shape)), getattr(shape, "layout", "-")
        if isinstance(node, Merge):
            joined = ", ".join(b.name + ("" if b.items else " (identity)") for b in node.branches)
            rows.append([node.path, "residual" if node.residual else node.op, layout, output, "0",
                         f"joins {joined}"])
            continue
        inits = _layer_inits(node) or "-"
        rows.append([node.path, node.kind, layout, output, f"{node.params:,}", inits])
    params = spec.params
    text = table(["layer", "kind", "layout", "output", "params", "initializers"], rows)
    graph = spec.graph
    text += (f"\ninput {list(graph.input_shape)} ({graph.input_dtype}) -> output "
             f"{list(graph.output_shape)}\n"
             f"parameters: {params:,}\nmemory: {human_bytes(params * BYTES_PER_PARAM)} of float32 parameters "
             f"(weights only; training with Adam needs about 4x)\n"
             f"activations: {human_bytes(activation_bytes(graph))} per sample in float32 (one forward pass; "
             f"parity's batch of {PARITY_BATCH}: {human_bytes(activation_bytes(graph, PARITY_BATCH))}, probe's batch "
             f"of {PROBE_BATCH}: {human_bytes(activation_bytes(graph, PROBE_BATCH))})\n")
    return text


def _summary_nodes(node):
    """Layers in model order, each merge after the layers of its branches (where its output is made)."""
    if isinstance(node, Layer):
        yield node
    elif isinstance(node, Merge):
        for branch in node.branches:
            yield from _summary_nodes(branch)
        yield node
    else:
        for child in node.items:
            yield from _summary_nodes(child)


def initializers_table() -> str:
    rows = [[i.name, i.summary, i.torch, i.keras] for i in REGISTRY.values()]
    return table(["name", "what it is for", "PyTorch", "Keras 3"], rows)


def initializer_doc(name: str) -> str:
    from nnspec.compiler.backends.docs import init_source_examples

    i = REGISTRY[name]
    fields = i.args.model_fields
    args = ", ".join(f"{k}" + ("" if f.is_required() else f"={f.default!r}") for k, f in fields.items()) or "none"
    torch_code, keras_code = init_source_examples(name)
    parts = [f"{i.name}: {i.summary}", "", f"arguments: {args}"]
    if i.short:
        parts.append(f"short form: {{{i.name}: <{i.short}>}}")
    parts += ["", "formula:", f"  {i.formula}" if i.formula else "  -"]
    if i.detail:
        parts += ["", "what it does:", "  " + i.detail]
    parts += ["", "PyTorch:", f"  {torch_code}", "", "Keras 3:", f"  {keras_code}"]
    safety = []
    if i.safe:
        safety.append(f"  safe: {i.safe}")
    if i.unsafe:
        safety.append(f"  unsafe: {i.unsafe}")
    if i.needs_fans:
        safety.append("  needs a tensor with 2 or more dimensions (NS210 on biases, gamma, beta)")
    if safety:
        parts += ["", "where to use it:"] + safety
    return "\n".join(parts) + "\n"
