"""`nnspec probe`: train a few SGD steps and show, per layer, what the initialisation did.

The safety rules are claims about training; this is their empirical check. The
model is built with PyTorch, dropout is switched off (so that only the
initialisation can break symmetry), and N steps of SGD are run on random
inputs against random targets. Reported per parametrised layer: how many
distinct units (weight rows, with their bias) it has at init and after
training, which tensors never received a non-zero gradient, how many units
(weight rows) never did, and the scale of its output at init. An attention's
units are the rows of its in_weight (query, key and value stacked, with their
biases), also reported part by part (`LayerProbe.parts`: query, key, value and
the output projection). Recorded for
every layer, in the order the forward pass runs them: the std of its output at
init (`ProbeReport.activations`, what `nnspec probe --plot` draws through depth).

An `lstm` or `gru` has `hidden` units in each layer and direction; a unit's
weight is its row of every gate in `weight_ih` (with bias_ih + bias_hh), and its
counts are those of the layer and direction with the fewest distinct units.
`input_spread` is the largest std across the batch of any element of a layer's
output at init: 0 when the output is the same for every input.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LayerProbe:
    path: str
    kind: str
    units: int
    distinct_at_init: int  # distinct units (weight row with its bias)
    distinct_after: int
    distinct_weights_at_init: int  # distinct weight rows alone
    init_std: float
    zero_grad: list = field(default_factory=list)  # tensor roles whose gradient was always exactly zero
    dead_units: int = 0  # units (weight rows) whose gradient was always exactly zero
    input_spread: float = float("nan")  # the largest std across the batch of an output element at init
    parts: dict = field(default_factory=dict)  # attention: "query", "key", "value", "out" -> PartProbe

    @property
    def identical_fraction(self) -> float:
        """Share of units that duplicate another after training (0 for a layer without units)."""
        return (self.units - self.distinct_after) / self.units if self.units else 0.0

    @property
    def dead_fraction(self) -> float:
        """Share of units that never received a gradient (0 for a layer without units)."""
        return self.dead_units / self.units if self.units else 0.0

    @property
    def stuck(self) -> bool:
        return self.units > 1 and self.distinct_after < self.units

    @property
    def dead(self) -> bool:
        return bool(self.zero_grad)


@dataclass
class PartProbe:
    """One part of an attention's tensors: the query, key or value rows of in_weight, or out_weight."""

    units: int
    distinct_weights_at_init: int  # distinct weight rows alone
    distinct_at_init: int  # with their biases
    distinct_after: int
    dead_units: int  # rows whose gradient was always exactly zero


@dataclass
class Activation:
    path: str
    kind: str
    std: float  # of the layer's output at init, over the probe's batch


@dataclass
class ProbeReport:
    name: str
    steps: int
    layers: list
    loss_before: float
    loss_after: float
    activations: list = field(default_factory=list)  # Activation, in forward order

    @property
    def failed(self) -> bool:
        return any(layer.stuck or layer.dead for layer in self.layers)

    def text(self) -> str:
        if not self.layers:
            return (f"probe {self.name}: the model has no parameters: nothing to train, no unit to be stuck or "
                    "dead\nok: nothing to probe\n")
        lines = [f"probe {self.name}: {self.steps} SGD steps on random data, dropout off; "
                 f"loss {self.loss_before:.4g} -> {self.loss_after:.4g}",
                 f"{'layer':<48} {'kind':<10} {'units':>6} {'distinct@init':>13} {'distinct@end':>12} "
                 f"{'std@init':>10}  verdict"]
        for p in self.layers:
            verdict = []
            if p.stuck:
                verdict.append(f"STUCK: {p.units - p.distinct_after + 1} units identical")
            if p.dead:
                verdict.append("DEAD: zero gradient for " + ", ".join(p.zero_grad))
            if p.kind in ("lstm", "gru") and p.input_spread == 0:
                verdict.append("the same output for every input at init")
            frozen = [name for name, part in p.parts.items() if part.units and part.dead_units == part.units]
            if frozen and not p.dead:
                verdict.append("FROZEN: zero gradient for the " + ", ".join(frozen) + " rows")
            lines.append(f"{p.path:<48} {p.kind:<10} {p.units:>6} {p.distinct_at_init:>13} {p.distinct_after:>12} "
                         f"{p.init_std:>10.4g}  {'; '.join(verdict) or 'ok'}")
        lines.append("FAILED: stuck or dead units" if self.failed else "ok: every unit moved apart and learns")
        return "\n".join(lines) + "\n"


def _unit_tensors(module) -> tuple:
    """(weight, bias or None) whose rows are the units: an attention's in_weight and in_bias."""
    if hasattr(module, "in_proj_weight"):
        return module.in_proj_weight, module.in_proj_bias
    return module.weight, getattr(module, "bias", None)


def _distinct_rows(weight, bias, with_bias: bool = True, start: int = 0, stop: int | None = None) -> tuple[int, int]:
    import torch

    rows = weight.detach().reshape(weight.shape[0], -1)[start:stop]
    if with_bias and bias is not None:
        rows = torch.cat([rows, bias.detach().reshape(-1, 1)[start:stop]], dim=1)
    return rows.shape[0], torch.unique(rows, dim=0).shape[0]


def _distinct_units(layer, modules, with_bias: bool = True) -> tuple[int, int]:
    """(number of units, number of distinct units) of a linear/conv/embedding/attention layer; a unit is a
    weight row (an output channel's filter) with its bias. An lstm/gru: see the module's docstring."""
    import torch

    module = modules[layer.path]
    if layer.kind in ("lstm", "gru"):
        from nnspec.vocabulary.kinds import GATES, recurrent_tensor_names

        hidden, fewest = layer.args["hidden"], None
        for k, sfx in recurrent_tensor_names(layer.args):
            rows = getattr(module, f"weight_ih_l{k}{sfx}").detach()
            if with_bias:
                bias = getattr(module, f"bias_ih_l{k}{sfx}") + getattr(module, f"bias_hh_l{k}{sfx}")
                rows = torch.cat([rows, bias.detach().reshape(-1, 1)], dim=1)
            units = rows.reshape(GATES[layer.kind], hidden, -1).transpose(0, 1).reshape(hidden, -1)
            distinct = torch.unique(units, dim=0).shape[0]
            fewest = distinct if fewest is None else min(fewest, distinct)
        return hidden, fewest
    return _distinct_rows(*_unit_tensors(module), with_bias=with_bias)


def _attention_parts(module) -> dict:
    """part -> (weight, bias, first row, last row + 1) of an attention module."""
    d = module.out_proj.weight.shape[0]
    parts = {name: (module.in_proj_weight, module.in_proj_bias, i * d, (i + 1) * d)
             for i, name in enumerate(("query", "key", "value"))}
    parts["out"] = (module.out_proj.weight, module.out_proj.bias, 0, d)
    return parts


def _part_counts(module) -> dict:
    """part -> (units, distinct weight rows, distinct rows with bias)."""
    counts = {}
    for name, (weight, bias, start, stop) in _attention_parts(module).items():
        units, alone = _distinct_rows(weight, bias, False, start, stop)
        counts[name] = (units, alone, _distinct_rows(weight, bias, True, start, stop)[1])
    return counts


def run_probe(spec, steps: int = 20, seed: int = 0, lr: float = 0.1, batch: int = 16,
              max_activation_bytes=None) -> ProbeReport:
    """Raises ValueError on steps or batch below 1, a learning rate that is not a finite positive number or a bad
    seed (each would give a confident, meaningless verdict), and SpecError (NS005) when the activations of the
    batch exceed `max_activation_bytes` (default: the budget)."""
    import math
    import numbers

    import torch

    import nnspec
    from nnspec.compiler.budget import check_activation_budget
    from nnspec.parity import _check_number

    _check_number("steps", steps, 1, integer=True)
    _check_number("batch", batch, 1, integer=True)
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r:.80}")
    seed = 0 if seed is None else nnspec.check_seed(seed)
    check_activation_budget(spec, max_activation_bytes, batch, "probe")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: a thread pool only adds contention
    try:
        return _probe(spec, steps, seed, lr, batch)
    finally:
        torch.set_num_threads(threads)


def _probe(spec, steps: int, seed: int, lr: float, batch: int) -> ProbeReport:
    import torch

    import nnspec
    from nnspec.compiler.backends.torch_table import torch_path
    from nnspec.parity import random_batch

    torch.manual_seed(seed)
    model = nnspec.build(spec, "torch", seed=seed)
    if not any(True for _ in model.parameters()):  # SGD needs a parameter; and there is nothing to judge
        return ProbeReport(spec.name, 0, [], float("nan"), float("nan"))
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = 0.0
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    x = torch.from_numpy(random_batch(spec, batch, seed))
    unit_layers = [layer for layer in spec.graph.layers()
                   if layer.kind in ("linear", "embedding", "attention", "lstm", "gru")
                   or layer.kind.startswith("conv")]
    attention_paths = [layer.path for layer in unit_layers if layer.kind == "attention"]
    stds: dict[str, float] = {}  # filled in the order the forward pass runs the layers
    spreads: dict[str, float] = {}

    def record(path):
        def hook(module, inputs, output):
            out = output.detach().float()
            stds.setdefault(path, float(out.std()))
            spreads.setdefault(path, float(out.std(dim=0).max()) if out.shape[0] > 1 and out.numel() else 0.0)

        return hook

    hooks = [modules[layer.path].register_forward_hook(record(layer.path))
             for layer in spec.graph.layers() if layer.path in modules]
    at_init = {layer.path: _distinct_units(layer, modules) for layer in unit_layers}
    weights_at_init = {layer.path: _distinct_units(layer, modules, with_bias=False)[1] for layer in unit_layers}
    parts_at_init = {path: _part_counts(modules[path]) for path in attention_paths}
    with torch.no_grad():
        out = model(x)
    for hook in hooks:
        hook.remove()
    target = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    ever_nonzero = {name: False for name in params}
    # an embedding row only gets a gradient when its token is in the batch: not a dead unit
    row_nonzero = {layer.path: torch.zeros(_unit_tensors(modules[layer.path])[0].shape[0], dtype=torch.bool)
                   for layer in unit_layers if layer.kind not in ("embedding", "lstm", "gru")}
    out_rows_nonzero = {path: torch.zeros(modules[path].out_proj.weight.shape[0], dtype=torch.bool)
                        for path in attention_paths}
    loss_before = loss_after = float("nan")
    for step in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        for name, p in params.items():
            if p.grad is not None and bool(p.grad.abs().sum() > 0):
                ever_nonzero[name] = True
        for path, rows in row_nonzero.items():
            grad = _unit_tensors(modules[path])[0].grad
            if grad is not None:
                rows |= grad.detach().reshape(grad.shape[0], -1).abs().sum(dim=1) > 0
        for path, rows in out_rows_nonzero.items():
            grad = modules[path].out_proj.weight.grad
            if grad is not None:
                rows |= grad.detach().abs().sum(dim=1) > 0
        optimizer.step()
        if step == 0:
            loss_before = float(loss.detach())
        loss_after = float(loss.detach())
    layers = []
    for layer in spec.graph.layers():
        if not layer.tensors:
            continue
        units, distinct_init = at_init.get(layer.path, (0, 0))
        distinct_after = _distinct_units(layer, modules)[1] if layer.path in at_init else 0
        zero = [t.path.rpartition(".")[2] for t in layer.tensors.values() if not ever_nonzero[torch_path(t)]]
        dead_units = int((~row_nonzero[layer.path]).sum()) if layer.path in row_nonzero else 0
        parts = {}
        if layer.path in parts_at_init:
            after = _part_counts(modules[layer.path])
            for name, (count, alone, with_bias) in parts_at_init[layer.path].items():
                weight, _bias, start, stop = _attention_parts(modules[layer.path])[name]
                rows = (out_rows_nonzero[layer.path] if name == "out" else row_nonzero[layer.path])[start:stop]
                parts[name] = PartProbe(count, alone, with_bias, after[name][2], int((~rows).sum()))
        layers.append(LayerProbe(layer.path, layer.kind, units, distinct_init, distinct_after,
                                 weights_at_init.get(layer.path, 0), stds.get(layer.path, float("nan")), zero,
                                 dead_units, spreads.get(layer.path, float("nan")), parts))
    kinds = {layer.path: layer.kind for layer in spec.graph.layers()}
    activations = [Activation(path, kinds[path], std) for path, std in stds.items()]
    return ProbeReport(spec.name, steps, layers, loss_before, loss_after, activations)
