"""torchvision, imported beside the CPU build of torch the project pins.

torchvision's compiled operators (nms, roi_align, ...) do not load beside that build, and importing
torchvision registers fake implementations for them with `torch.library.register_fake`, which then
fails. The models need none of those operators, so the registration is made a no-op while torchvision
is imported, and restored after.
"""

from __future__ import annotations

import importlib
import importlib.util
from functools import cache

import torch.library


def _no_op_register_fake(*args, **kwargs):
    if args and callable(args[0]) and not isinstance(args[0], str):
        return args[0]
    return lambda function: function


def import_torchvision():
    original = torch.library.register_fake
    torch.library.register_fake = _no_op_register_fake
    try:
        return importlib.import_module("torchvision")
    finally:
        torch.library.register_fake = original


@cache
def torchvision_models():
    """torchvision.models; the calling test is skipped where torchvision is not installed (the `dev` extra
    installs it)."""
    if importlib.util.find_spec("torchvision") is None:
        import pytest

        pytest.skip("torchvision is not installed")
    return import_torchvision().models
