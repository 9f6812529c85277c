"""Fan-scaled initializers as exact distributions: PyTorch's gains and Keras's VarianceScaling."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

TRUNC_STD_CORRECTION = 0.87962566103423978  # std of N(0,1) cut at +-2, as Keras uses


@dataclass(frozen=True)
class Dist:
    """The exact distribution of every element of a fan-scaled initializer."""

    kind: str  # "uniform", "normal", "trunc_normal"
    a: float = 0.0  # low / mean
    b: float = 0.0  # high / std
    low: float = -math.inf
    high: float = math.inf


def calculate_gain(nonlinearity: str, param: Optional[float] = None) -> float:
    """torch.nn.init.calculate_gain."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                        "conv_transpose3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def gain_squared(nonlinearity: str, param: Optional[float] = None) -> float:
    """calculate_gain(...)**2, computed exactly where it is rational (relu: 2.0, not 2.0000000000000004)."""
    if nonlinearity == "relu":
        return 2.0
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return 2.0 / (1 + slope**2)
    if nonlinearity == "tanh":
        return 25.0 / 9
    if nonlinearity == "selu":
        return 9.0 / 16
    return calculate_gain(nonlinearity, param) ** 2


KERAS_FAMILY = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
}


def variance_scaling_params(name: str, args: dict) -> tuple[float, str, str]:
    """(scale, mode, distribution) of an initializer expressed as Keras's VarianceScaling."""
    if name in KERAS_FAMILY:
        return KERAS_FAMILY[name]
    if name == "variance_scaling":
        return args["scale"], args["mode"], args["distribution"]
    if name in ("xavier_uniform", "xavier_normal"):
        return args["gain"] ** 2, "fan_avg", "uniform" if name.endswith("uniform") else "untruncated_normal"
    if name in ("kaiming_uniform", "kaiming_normal"):
        return gain_squared(args["nonlinearity"], args["a"]), args["mode"], \
            "uniform" if name.endswith("uniform") else "untruncated_normal"
    if name == "torch_default":
        return 1.0 / 3, "fan_in", "uniform"
    raise KeyError(name)


def fan_for(mode: str, fan_in: int, fan_out: int) -> float:
    if mode == "fan_in":
        return float(fan_in)
    if mode == "fan_out":
        return float(fan_out)
    return (fan_in + fan_out) / 2.0


def variance_scaling_distribution(name: str, args: dict, fan_in: int, fan_out: int) -> Dist:
    """The exact element distribution of a fan-scaled initializer (as Keras's VarianceScaling) on a
    tensor with these fans: how the Keras family and `variance_scaling` are lowered for PyTorch."""
    scale, mode, dist = variance_scaling_params(name, args)
    n = max(1.0, fan_for(mode, fan_in, fan_out))
    if dist == "uniform":
        limit = math.sqrt(3.0 * scale / n)
        return Dist("uniform", -limit, limit)
    if dist == "untruncated_normal":
        return Dist("normal", 0.0, math.sqrt(scale / n))
    std = math.sqrt(scale / n) / TRUNC_STD_CORRECTION
    return Dist("trunc_normal", 0.0, std, -2 * std, 2 * std)
