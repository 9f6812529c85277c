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


MAX_SEED = 2**63 - 1  # what torch.manual_seed takes; the spec's `seed` is bounded the same


def check_seed(seed, what: str = "seed") -> int | None:
    """`seed` if it is None or an integer in [0, 2**63); else a ValueError that says what was given. A bool or a
    float is refused although Python would take it as a number: `True` and `1.0` must not silently seed the same
    as (or differently from) `1`."""
    if seed is None:
        return None
    import numbers

    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"{what} must be an integer in [0, 2**63), got {type(seed).__name__} {seed!r:.80}")
    seed = int(seed)
    if not 0 <= seed <= MAX_SEED:
        shown = str(seed) if seed.bit_length() < 256 else f"a {seed.bit_length()}-bit integer"
        raise ValueError(f"{what} must be an integer in [0, 2**63), got {shown}")
    return seed
