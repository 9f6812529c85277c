"""Initializer formulas that emitted PyTorch files carry: (kind, arguments) from a tensor's shape.

Pure Python, so that the emitter can evaluate each rule it writes and compare it, tensor by
tensor, with `torch_table.init_plan` (the build's): a tensor that a rule would give another value,
or none (a fan of 0 raises), gets a rule of its own before it. The arithmetic is `torch_table`'s,
operation for operation.
"""

from __future__ import annotations

import math


def draw(kind: str, **args) -> tuple:  # an initializer: nn.init's `kind`, its arguments (emitted as such)
    return kind, args


def kaiming(shape: tuple, gain: float, mode: str = "fan_in", uniform: bool = False):
    std = gain / math.sqrt(shape[mode == "fan_in"] * math.prod(shape[2:]))  # the fan
    if uniform:
        return "uniform", {"low": -math.sqrt(3.0) * std, "high": math.sqrt(3.0) * std}
    return "normal", {"mean": 0.0, "std": std}


def xavier(shape: tuple, gain: float, uniform: bool = False):
    std = gain * math.sqrt(2.0 / float((shape[0] + shape[1]) * math.prod(shape[2:])))
    if uniform:
        return "uniform", {"low": -math.sqrt(3.0) * std, "high": math.sqrt(3.0) * std}
    return "normal", {"mean": 0.0, "std": std}


def bias_default(weight_shape: tuple):  # nn.Linear's and nn.ConvNd's bias
    bound = 1.0 / math.sqrt(weight_shape[1] * math.prod(weight_shape[2:]))
    return "uniform", {"low": -bound, "high": bound}
