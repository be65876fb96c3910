"""Named, order-independent random streams.

Each piece of the simulation draws from its own stream keyed by (seed, name, chunk...), so the output does not
depend on the order in which pieces run, on how many worker processes share the work, or on which optional
parts (stamps, LSST extras) are switched on.
"""

from __future__ import annotations

import zlib

import numpy as np


def _key(k: str | int) -> int:
    return int(k) if isinstance(k, int | np.integer) else zlib.crc32(str(k).encode())


def stream(seed: int, *keys: str | int) -> np.random.Generator:
    """A numpy Generator for the named stream `keys` of run `seed`."""
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(_key(k) for k in keys))
    return np.random.Generator(np.random.PCG64(ss))
