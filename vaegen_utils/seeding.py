"""Seeds are parameters: the same seed gives the same numbers on CPU.

Prefer explicit generators (`make_generator(seed)`) over the global RNG in library code, so that
a notebook cell's randomness does not depend on what ran before it.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch's global generators."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator seeded with `seed` (CPU by default, so results match across devices)."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def derive_seed(seed: int, *labels: object) -> int:
    """A stable child seed for (seed, labels...): e.g. derive_seed(0, 'member', 3)."""
    import hashlib

    text = repr((seed, *labels)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")
