"""Initializer formulas that emitted PyTorch files carry: (draw, arguments) from a tensor's shape.

Pure Python, so that the emitter can evaluate each rule it writes and compare it, tensor by
tensor, with `torch_table.init_plan` (the build's): a rule that would give another value is
not written as a rule. The arithmetic is `torch_table`'s, operation for operation.
"""

from __future__ import annotations

import math


def draw(kind: str, **args) -> tuple:  # an initializer: what init_tensor_ draws
    return kind, args


def fans(shape: tuple) -> tuple:  # torch.nn.init's (fan_in, fan_out)
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def kaiming(shape: tuple, gain: float, mode: str = "fan_in", uniform: bool = False):
    fan = fans(shape)[0 if mode == "fan_in" else 1]
    std = gain / math.sqrt(fan) if fan else 0.0
    if uniform:
        return draw("uniform", low=-math.sqrt(3.0) * std, high=math.sqrt(3.0) * std)
    return draw("normal", mean=0.0, std=std)


def xavier(shape: tuple, gain: float, uniform: bool = False):
    fan_in, fan_out = fans(shape)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out)) if fan_in + fan_out else 0.0
    if uniform:
        return draw("uniform", low=-math.sqrt(3.0) * std, high=math.sqrt(3.0) * std)
    return draw("normal", mean=0.0, std=std)


def bias_default(weight_shape: tuple):  # nn.Linear's and nn.ConvNd's bias
    fan_in = fans(weight_shape)[0]
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return draw("uniform", low=-bound, high=bound)
