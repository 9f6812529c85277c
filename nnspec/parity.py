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
    shape: tuple  # one example's output shape (batch excluded), or Keras's whole output shape on a mismatch
    ok: bool
    elements: int = 0  # elements compared (batch included)
    outside: int = 0  # elements outside atol + rtol*|torch|
    index: tuple = ()  # the worst element: the largest excess over the tolerance, else the largest difference
    torch_value: float = 0.0
    keras_value: float = 0.0
    batch: int = 0
    perturbed: bool = False
    torch_shape: tuple = ()

    def text(self) -> str:
        what = (f"{self.name}: output {list(self.shape)}, batch {self.batch}, "
                f"{'perturbed weights' if self.perturbed else 'weights as initialised'}")
        if self.torch_shape and tuple(self.torch_shape) != tuple(self.shape) and self.elements == 0:
            return (f"{self.name}: PyTorch output shape {list(self.torch_shape)} but Keras output shape "
                    f"{list(self.shape)}: MISMATCH\n")
        tolerance = f"atol + rtol*|torch| (atol {self.atol:g}, rtol {self.rtol:g})"
        where = (f"at index {list(self.index)} (torch {self.torch_value:.6g}, keras {self.keras_value:.6g})"
                 if self.index else "")
        if self.ok:
            verdict = f"all {self.elements:,} elements within {tolerance}"
            worst = f"max abs diff {self.max_abs:.3g} {where}".rstrip()
        else:
            verdict = f"{self.outside:,} of {self.elements:,} elements outside {tolerance}"
            worst = f"worst {where}; max abs diff {self.max_abs:.3g}"
        return (f"{what}: {verdict}; {worst}, max rel diff {self.max_rel:.3g}: "
                f"{'ok' if self.ok else 'MISMATCH'}\n")


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
    # predict_on_batch runs the model as one traced function; calling it eagerly would retrace, at each
    # call, the tf.function that Keras's TensorFlow backend creates inside every grouped convolution
    # (keras/src/backend/tensorflow/nn.py, conv: `_conv_xla`), and TensorFlow warns about the retracing.
    got = keras_model.predict_on_batch(input_to_keras(x, spec))
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
        return ParityReport(spec.name, float("inf"), float("inf"), atol, rtol, got.shape, False, batch=batch,
                            perturbed=perturb_weights, torch_shape=expected.shape)
    diff = np.abs(expected.astype("float64") - got.astype("float64"))
    allowed = atol + rtol * np.abs(expected.astype("float64"))
    inside = diff <= allowed  # NaN differences are outside
    max_abs = float(diff.max()) if diff.size else 0.0  # NaN when any element is NaN
    max_rel = float((diff / np.maximum(np.abs(expected), 1e-12)).max()) if diff.size else 0.0
    ok = bool(np.all(inside))
    index: tuple = ()
    if diff.size:
        excess = np.where(np.isnan(diff), np.inf, diff - allowed)
        flat = int(np.argmax(excess)) if not ok else int(np.argmax(np.nan_to_num(diff, nan=np.inf)))
        index = tuple(int(i) for i in np.unravel_index(flat, diff.shape))
    return ParityReport(spec.name, max_abs, max_rel, atol, rtol, expected.shape[1:], ok,
                        elements=int(diff.size), outside=int(diff.size - np.count_nonzero(inside)), index=index,
                        torch_value=float(expected[index]) if index else 0.0,
                        keras_value=float(got[index]) if index else 0.0, batch=batch, perturbed=perturb_weights)
