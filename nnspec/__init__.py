"""nnspec: model architectures and initializations as reviewed, validated config.

Public API: `load`, `loads`, `check`, `build`, `emit`, `transfer`, `initialize`, `load_weights`,
`keras_layout_map`, `from_torch`, `from_keras`, `SpecError`, `Diagnostic`. Importing nnspec never imports a framework; `build`, `emit` and
`transfer` import the one they target when called.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Union

from nnspec.diagnostics import Diagnostic, SpecError
from nnspec.version import __version__

if TYPE_CHECKING:
    from nnspec.compiler.pipeline import Spec

__all__ = ["Diagnostic", "Spec", "SpecError", "build", "check", "emit", "from_keras", "from_torch", "initialize",
           "keras_layout_map", "load", "load_weights", "loads", "transfer", "__version__"]

TARGETS = ("torch", "keras")


def _finish(spec: Optional[Spec], diagnostics: list) -> Spec:
    if spec is None or any(d.is_error for d in diagnostics):
        raise SpecError(diagnostics)
    return spec


def __getattr__(name: str):
    # The pipeline (and pydantic with it) loads on first use, so `import nnspec` stays cheap.
    if name == "Spec":
        from nnspec.compiler.pipeline import Spec

        return Spec
    if name == "check_seed":  # (hashlib, which seeding imports, is a few ms that `check` never needs)
        from nnspec.compiler.backends.seeding import check_seed

        return check_seed
    raise AttributeError(f"module 'nnspec' has no attribute {name!r}")


def _analyse_path(path: str, max_params: Optional[int] = None):
    """analyse_file, except that a FIFO, device or socket is reported (NS001), never opened: reading it could
    block forever or never end."""
    from nnspec.compiler.pipeline import analyse_file
    from nnspec.files import special_file_diagnostic

    diagnostic = special_file_diagnostic(path)
    if diagnostic is not None:
        return None, [diagnostic]
    return analyse_file(path, max_params)


def load(path: Union[str, os.PathLike]) -> Spec:
    """Load, validate and lower a spec file; raise SpecError if it has errors (warnings do not raise)."""
    return _finish(*_analyse_path(os.fspath(path)))


def loads(text: str, filename: str = "<string>") -> Spec:
    """Like `load`, from text."""
    from nnspec.compiler.pipeline import analyse_text

    return _finish(*analyse_text(text, filename))


def check(path: Union[str, os.PathLike]) -> list[Diagnostic]:
    """Every diagnostic of a spec file. Never raises, whatever the file holds."""
    try:
        return _analyse_path(os.fspath(path))[1]
    except Exception as exc:  # a bug in nnspec must still come out as a located diagnostic
        from nnspec.diagnostics import Span

        return [Diagnostic.at(Span(os.fspath(path), 1, 1, 1, 1), "NS001",
                              f"internal error while checking this file: {type(exc).__name__}: {exc}",
                              "please report this file to the nnspec maintainers")]


def _as_spec(spec: Union[Spec, str, os.PathLike]) -> Spec:
    from nnspec.compiler.pipeline import Spec

    return spec if isinstance(spec, Spec) else load(spec)


def _target(target: str) -> str:
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    return target


def build(spec: Union[Spec, str, os.PathLike], target: str = "torch", seed: Optional[int] = None,
          device: str = "cpu", max_params: Optional[int] = None):
    """Build the model in memory: a torch `nn.Module` or a functional `keras.Model`. `seed` (an integer in
    [0, 2**63)) overrides the spec's own."""
    from nnspec.compiler.backends.seeding import check_seed

    seed = check_seed(seed)
    _target(target)
    spec = _as_spec(spec)
    from nnspec.compiler.budget import check_budget

    check_budget(spec, max_params, device)
    if _target(target) == "torch":
        from nnspec.compiler.backends.torch_backend import build_torch

        return build_torch(spec, seed=seed, device=device)
    from nnspec.compiler.backends.keras_backend import build_keras

    return build_keras(spec, seed=seed)


def emit(spec: Union[Spec, str, os.PathLike], target: str = "torch") -> str:
    """The standalone source that `nnspec compile` writes."""
    spec = _as_spec(spec)
    if _target(target) == "torch":
        from nnspec.compiler.backends.torch_backend import emit_torch

        return emit_torch(spec)
    from nnspec.compiler.backends.keras_backend import emit_keras

    return emit_keras(spec)


def transfer(torch_model, keras_model, spec: Union[Spec, str, os.PathLike]) -> None:
    """Copy every weight and buffer of a PyTorch model built from `spec` into its Keras model."""
    from nnspec.compiler.backends.keras_backend import transfer_weights

    transfer_weights(torch_model, keras_model, _as_spec(spec))


def initialize(model, spec: Union[Spec, str, os.PathLike, None] = None, seed: Optional[int] = None,
               only=None):
    """Initialise a PyTorch model built by nnspec in place, as its spec says, also when its parameters
    are DTensors sharded by FSDP2 or tensor parallelism: each rank computes only its own shard, equal
    bit for bit to the single-process build. `only` (a path pattern or a list: `head.*`,
    `layer4.**.bn3.gamma`) re-initialises just the matching tensors (by spec path or state_dict key),
    leaving every other one as it is. See `nnspec.distributed.initialize`."""
    from nnspec.distributed import initialize as initialize_model

    return initialize_model(model, spec, seed, only)


def load_weights(model, source, spec: Union[Spec, str, os.PathLike, None] = None, rename=None,
                 strict: bool = True):
    """Load weights from `source` (a state dict, a .pt/.pth or .safetensors file, a PyTorch model or a
    Keras model) into a PyTorch model built by nnspec, or a Keras model built from `spec`, matching keys
    by name, else by structure, else by `rename` rules; return the report
    (`nnspec.weights.WeightReport`). See `nnspec.weights.load_weights`."""
    from nnspec.weights import load_weights as load

    return load(model, source, spec, rename, strict)


def keras_layout_map(spec: Union[Spec, str, os.PathLike], mesh, model_axis: Optional[str] = None):
    """A `keras.distribution.LayoutMap` for the spec's Keras model on `mesh` (a keras DeviceMesh).
    See `nnspec.distributed.keras_layout_map`."""
    from nnspec.distributed import keras_layout_map as layout_map

    return layout_map(spec, mesh, model_axis)


def from_torch(module, input_shape, name: Optional[str] = None) -> str:
    """The YAML text of a spec that rebuilds `module` (a torch.nn.Module traced with torch.fx);
    `input_shape`: one sample, channels first, e.g. (3, 224, 224). Blocks, `repeat`, the module's
    names and initializers inferred from the tensors' values; raises `nnspec.importing.ImportProblem`
    naming the module and the missing construct when the vocabulary cannot express it. See docs/import.md."""
    from nnspec.importing import from_torch as run

    return run(module, input_shape, name)


def from_keras(model, name: Optional[str] = None) -> str:
    """The YAML text of a spec that rebuilds a Keras Sequential or functional `model` (channels last
    moved to the spec's channels first). See `from_torch` and docs/import.md."""
    from nnspec.importing import from_keras as run

    return run(model, name)
