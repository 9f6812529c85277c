"""Models bigger than one machine: initialise sharded PyTorch models, lay out Keras ones.

`initialize(model, spec=None, seed=None)` writes the spec's initial values into a
model built by nnspec (in memory or from emitted code), in place, whether its
parameters are plain tensors or DTensors sharded by FSDP2 (`fully_shard`), by
tensor parallelism (`parallelize_module`) or both on a 2-D mesh. Every rank
computes only its own shard, and the values equal the single-process
`nnspec.build(spec, seed=seed)` bit for bit (same device type).

`keras_layout_map(spec, mesh)` is the `keras.distribution.LayoutMap` that
shards the same spec's Keras model over a `keras.distribution.DeviceMesh`.
"""

from __future__ import annotations

from typing import Optional


def _plan_of(model, spec) -> tuple[tuple, dict]:
    """(plan, expected global shape of each key) for `model`; raises if they do not match."""
    if spec is not None:
        from nnspec import _as_spec
        from nnspec.compiler.backends import torch_table
        from nnspec.compiler.backends.torch_backend import init_plan

        spec = _as_spec(spec)
        plan = init_plan(spec.graph)
        shapes = {torch_table.torch_path(t): tuple(t.shape) for t in spec.graph.tensors()}
        where = f"the spec `{spec.name}` ({spec.file})"
    else:
        plan = getattr(model, "_nnspec_plan", None)
        if plan is None:
            raise TypeError(f"{type(model).__name__} was not built by nnspec (nnspec.build or an emitted file), "
                            "so it carries no initializers; pass the spec it was made from: "
                            "nnspec.initialize(model, spec)")
        shapes = None
        where = "the initializers the model was built with"
    params = dict(model.named_parameters())
    keys = [entry[0] for entry in plan]
    problems = []
    missing = [k for k in keys if k not in params]
    if missing:
        problems.append(f"{len(missing)} tensor(s) of {where} are not parameters of the model: "
                        + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    extra = [k for k in params if k not in set(keys)]
    if extra:
        problems.append(f"{len(extra)} parameter(s) of the model are not in {where}: "
                        + ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else ""))
    if shapes is not None:
        wrong = [f"{k} is {list(params[k].shape)}, the spec says {list(shapes[k])}"
                 for k in keys if k in params and tuple(params[k].shape) != shapes[k]]
        if wrong:
            problems.append("shapes differ: " + "; ".join(wrong[:5]) + (" ..." if len(wrong) > 5 else ""))
    meta = [k for k in keys if k in params and params[k].is_meta]
    if meta:
        problems.append(f"{len(meta)} parameter(s) are on the meta device (e.g. {meta[0]}): "
                        "call model.to_empty(device=...) first (after sharding)")
    if problems:
        raise ValueError(f"cannot initialise {type(model).__name__} from {where}; nothing was changed:\n  "
                         + "\n  ".join(problems))
    return plan, shapes


def initialize(model, spec=None, seed: Optional[int] = None, only=None):
    """Initialise every tensor of `model` in place as its spec says; return the model.

    `only` (a path pattern or a list of them: `*` within one dotted segment, `**`
    across segments) limits this to the tensors whose spec path
    (`head.weight`, `layer1.0.residual_1.branch.bn1.gamma`) or state_dict key
    (`...bn1.weight`) matches; they get exactly the values of a full build with the
    same seed, every other tensor and buffer is left as it is (the running
    statistics of a norm layer are reset only when one of its tensors is selected).
    A pattern that matches no tensor raises ValueError, and nothing is changed.

    `spec` (a Spec or a path) defaults to the initializers the model carries; `seed`
    defaults to the model's (the one it was built with, or the spec's). With no seed
    anywhere a fresh one is drawn, the same on every rank of a distributed run.
    Nothing is written unless every tensor of the spec matches a parameter of the model.
    """
    from nnspec.compiler.backends import torch_runtime

    plan, _ = _plan_of(model, spec)
    keys = None if only is None else torch_runtime.select_(plan, only)  # (as model.initialize(only=...))
    state = getattr(model, "_nnspec_state", None)
    if seed is None and state is not None:
        seed = state["seed"]
    if seed is None and spec is not None:
        from nnspec import _as_spec

        seed = _as_spec(spec).seed
    seed = torch_runtime.initialize_(model, plan, seed, keys)
    if state is not None:
        state["seed"] = seed
    return model


KERAS_VARIABLE = {"weight": "kernel", "bias": "bias", "gamma": "gamma", "beta": "beta"}
SPLIT_KINDS = ("linear", "conv1d", "conv2d", "conv3d")


def keras_layout_map(spec, mesh, model_axis: Optional[str] = None):
    """A `keras.distribution.LayoutMap` for the Keras model of `spec` on `mesh`.

    Tensor-parallel layout in Megatron's pattern: a Dense/Conv kernel is split on its
    output axis (the last) over `model_axis` (default: the mesh's last axis), an
    embedding table on its rows; biases and norm scales follow their kernel's output
    axis split when their size divides, everything else is replicated. Keys are the
    Keras variable paths (`layer_name/kernel`), anchored so that no key matches
    another layer's variable.
    """
    import re

    import keras

    from nnspec import _as_spec

    spec = _as_spec(spec)
    axis = model_axis if model_axis is not None else mesh.axis_names[-1]
    if axis not in mesh.axis_names:
        raise ValueError(f"model_axis {axis!r} is not an axis of the mesh; its axes are {list(mesh.axis_names)}")
    size = dict(zip(mesh.axis_names, mesh.shape))[axis]
    layout_map = keras.distribution.LayoutMap(mesh)
    for tensor in spec.graph.tensors():
        kind, role, shape = tensor.layer.kind, tensor.role, tuple(tensor.shape)
        if kind in ("embedding", "position_embedding"):
            variable = "embeddings"
        else:  # class_token's `token` and attention's tensors keep their role's name (replicated)
            variable = KERAS_VARIABLE.get(role, role)
        layout = [None] * len(shape)
        if kind == "embedding" and shape[0] % size == 0:
            layout[0] = axis  # the table's rows
        elif kind in SPLIT_KINDS and shape[0] % size == 0:
            layout[-1] = axis  # the output axis: last in Keras's (.., in, out) kernels, the only one of a bias
        layout_map[f"(^|/){re.escape(tensor.layer.path)}/{variable}$"] = tuple(layout)
    return layout_map
