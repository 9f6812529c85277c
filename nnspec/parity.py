"""`nnspec parity`: the PyTorch and Keras models of one spec, same weights, same batch, same output."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ParityReport:
    name: str
    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    shape: tuple
    ok: bool

    def text(self) -> str:
        verdict = "ok" if self.ok else "MISMATCH"
        return (f"{self.name}: output {list(self.shape)}: max abs diff {self.max_abs:.3g} (atol {self.atol:g}), "
                f"max rel diff {self.max_rel:.3g} (rtol {self.rtol:g}): {verdict}\n")


def random_batch(spec, batch: int, seed: int):
    """A random batch in the logical (PyTorch) layout: floats, or ids below every embedding's `num`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (batch, *spec.graph.input_shape)
    if spec.graph.input_dtype == "int64":
        nums = [layer.args["num"] for layer in spec.graph.layers() if layer.kind == "embedding"]
        return rng.integers(0, min(nums) if nums else 2, size=shape, dtype="int64")
    return rng.standard_normal(shape).astype("float32")


def compare(spec, torch_model, keras_model, batch: int = 2, seed: int = 0):
    """(logical torch output, logical keras output) on the same random batch, in inference mode."""
    import torch

    from nnspec.compiler.backends.keras_backend import input_to_keras, output_to_logical

    x = random_batch(spec, batch, seed)
    torch_model.eval()
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).cpu().numpy()
    got = keras_model(input_to_keras(x, spec), training=False)
    import keras

    got = output_to_logical(keras.ops.convert_to_numpy(got), spec)
    return expected, got


def perturb(torch_model, seed: int = 0, scale: float = 0.1) -> None:
    """Add noise to every parameter and normalisation statistic, so that zero, constant and identity
    initializers cannot hide a difference between the targets.

    Weights get noise of std 0.5/sqrt(fan_in), the scale of a typical initialisation, so that deep
    models keep activations of order 1; 1-D tensors get noise of std `scale`; running variances stay
    positive."""
    import math

    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in torch_model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if tensor.dim() >= 2:
                noise *= 0.5 / math.sqrt(max(1, tensor[0].numel()))
            else:
                noise *= scale
            if name.endswith("running_var"):
                tensor.copy_(tensor.abs() + noise.abs() + 0.5)
            else:
                tensor.add_(noise)


def _check_number(name: str, value, low: float, integer: bool = False) -> None:
    import math
    import numbers

    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or (not integer and not math.isfinite(value)) \
            or value < low:
        raise ValueError(f"{name} must be {'an integer' if integer else 'a finite number'} >= {low:g}, "
                         f"got {value!r:.80}")


def run_parity(spec, atol: float = 1e-4, rtol: float = 1e-4, seed=None, batch: int = 2,
               perturb_weights: bool = False, max_activation_bytes=None) -> ParityReport:
    """Raises ValueError on a batch below 1, a negative or non-finite tolerance or a bad seed, and SpecError
    (NS005) when the activations of the batch exceed `max_activation_bytes` (default: the budget)."""
    import numpy as np

    import nnspec
    from nnspec.compiler.budget import check_activation_budget

    _check_number("batch", batch, 1, integer=True)
    _check_number("atol", atol, 0)
    _check_number("rtol", rtol, 0)
    seed = nnspec.check_seed(seed)
    check_activation_budget(spec, max_activation_bytes, batch, "parity")

    torch_model = nnspec.build(spec, "torch", seed=seed)
    keras_model = nnspec.build(spec, "keras", seed=seed)
    if perturb_weights:
        perturb(torch_model, 0 if seed is None else seed)
    nnspec.transfer(torch_model, keras_model, spec)
    expected, got = compare(spec, torch_model, keras_model, batch=batch, seed=0 if seed is None else seed)
    if expected.shape != got.shape:
        return ParityReport(spec.name, float("inf"), float("inf"), atol, rtol, got.shape, False)
    diff = np.abs(expected.astype("float64") - got.astype("float64"))
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float((diff / np.maximum(np.abs(expected), 1e-12)).max()) if diff.size else 0.0
    ok = bool(np.all(diff <= atol + rtol * np.abs(expected)))
    return ParityReport(spec.name, max_abs, max_rel, atol, rtol, expected.shape[1:], ok)
