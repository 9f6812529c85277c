"""Per-tensor seeds, derived from the model seed and the tensor's path.

A tensor's random stream is cut into blocks of 2**16 elements; block k is drawn
from a generator seeded with tensor_seed + k (`torch_runtime.stream_block`), so
any slice of a tensor can be computed alone. Values do not depend on
construction order, and the emitted code (which carries this function's source)
gives the same values as `build`.
"""

from __future__ import annotations

import hashlib
import os


def tensor_seed(seed: int, path: str) -> int:
    """A 63-bit seed for the tensor at `path`, derived from the model seed."""
    digest = hashlib.sha256(f"{seed}/{path}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def fresh_seed() -> int:
    """A random model seed, for builds without one."""
    return int.from_bytes(os.urandom(8), "little") >> 1


def keras_seed(seed: int, path: str) -> int:
    """The 31-bit seed Keras initializers take, derived like tensor_seed."""
    return tensor_seed(seed, path) % 2**31
