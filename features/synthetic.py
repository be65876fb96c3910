"""Synthetic ZTF-like detections for tests and benchmarks of the science functions (not realistic light curves:
use pipeline.simulator for those). Deterministic for a seed."""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_detections(n: int, n_objects: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ZTF-like detections of ``n_objects`` objects (two bands) and half as many non-detections."""
    rng = np.random.default_rng(seed)
    oid = np.array([f"ZTF20syn{i:05d}" for i in range(n_objects)])[rng.integers(0, n_objects, n)]

    def f32(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, n).astype("float32")

    det = pd.DataFrame(
        {
            "oid": oid,
            "candid": np.arange(n, dtype="int64") + 10**17,
            "survey": "ztf",
            "mjd": 58000.0 + rng.uniform(0, 1000, n),
            "night": np.full(n, 20200101, dtype="int32"),
            "fid": rng.integers(1, 3, n).astype("int16"),
            "ra": 100.0 + rng.normal(0, 1e-5, n),
            "dec": 20.0 + rng.normal(0, 1e-5, n),
            "magpsf": f32(15, 21),
            "sigmapsf": f32(0.01, 0.3),
            "isdiffpos": rng.choice(np.array([1, -1], dtype="int8"), n),
            "distnr": f32(0, 3),
            "magnr": f32(14, 20),
            "sigmagnr": f32(0.01, 0.1),
            "chinr": f32(0, 3),
            "sharpnr": f32(-0.3, 0.3),
            "sgscore1": f32(0, 1),
            "distpsnr1": f32(0, 3),
            "rfid": rng.integers(1, 3, n),
            "fwhm": f32(1.5, 4),
        }
    )
    m = n // 2
    nd = pd.DataFrame(
        {
            "oid": oid[:m],
            "fid": rng.integers(1, 3, m).astype("int16"),
            "mjd": 57900.0 + rng.uniform(0, 1000, m),
            "diffmaglim": rng.uniform(19, 21, m).astype("float32"),
        }
    )
    return det, nd
