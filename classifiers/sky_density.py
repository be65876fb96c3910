"""How densely each class populates the sky by Galactic latitude, relative to a uniform sky: a prior for
classifiers whose training sky is uniform.

Why. The simulator places every class uniformly on its fields, so a model trained on it learns nothing from
where an object is; the real sky is not like that: ZTF's variable stars crowd the Galactic plane (an eclipsing
binary is ~200 times as likely per square degree at |b| < 5 deg as at |b| > 60 deg) and dust hides the
extragalactic sky behind it. If the model's probabilities answer "which class, on a uniform sky", Bayes' rule
for a change of prior turns them into "which class, here": multiply each class's probability by the class's
density at the object's |b| relative to its mean over the survey's sky, and renormalise
(:func:`apply_latitude_prior`). The densities are the data's, from real catalogues:

- variable stars, per ALeRCE class: the VSX catalogue (1.9 million stars) within ZTF's sky (dec > -30 deg);
- extragalactic sources (supernovae, AGN, QSOs, blazars): a one-parameter dust model, density ∝ 10^(-k A_V)
  with A_V = a / sin|b|, fitted to the 2,314 real ZTF Bright Transient Survey SNe Ia, plus a 2 % floor.

The weights are the densities to the power :data:`LATITUDE_PRIOR_EXPONENT` (1/2), not 1: VSX counts every
catalogued variable, most of them low-amplitude disk stars near the plane, while the variables that *alert* are
the large-amplitude ones, whose sky is flatter (halo RR Lyrae and cataclysmic variables at |b| ~ 70 deg in the
real alerts): the full contrast called real VSX stars far from the plane AGN (docs/classifiers.md).

``python -m bench.galactic_density`` rebuilds :data:`LATITUDE_DENSITY` from ``../shared/data`` (and a test
checks that it still does). Each row's area-weighted mean over the footprint is 1 (:data:`FOOTPRINT_AREA_SHARE`):
the prior moves probability between places, not into a class. docs/classifiers.md, "1.5.0".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Bin edges in |b| [deg].
LATITUDE_EDGES_DEG: tuple[float, ...] = (0.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0)
#: The survey's sky the densities are relative to (ZTF observes north of dec -30 deg).
FOOTPRINT_MIN_DEC_DEG = -30.0
#: Share of the footprint's area per |b| bin (``bench.galactic_density.footprint_area_shares``).
FOOTPRINT_AREA_SHARE: tuple[float, ...] = (0.0321, 0.0481, 0.0799, 0.0792, 0.0783, 0.1534, 0.2192, 0.1677, 0.1421)  # fmt: skip
#: Population -> density per |b| bin relative to the footprint's mean (``python -m bench.galactic_density``).
LATITUDE_DENSITY: dict[str, tuple[float, ...]] = {
    "E": (4.6036, 9.0193, 2.7447, 0.9273, 0.5111, 0.2731, 0.1209, 0.0663, 0.0432),  # 743,084 objects
    "RRL": (2.4696, 3.8222, 1.8221, 1.4575, 1.0549, 0.7791, 0.5942, 0.4744, 0.4501),  # 105,667 objects
    "DSCT": (3.7341, 4.9496, 3.1351, 1.4727, 0.8645, 0.5399, 0.2739, 0.2135, 0.2013),  # 22,063 objects
    "CEP": (12.9738, 6.0250, 1.3362, 0.5355, 0.3671, 0.3283, 0.1810, 0.0930, 0.0713),  # 3,654 objects
    "LPV": (6.7868, 10.5910, 1.9448, 0.7301, 0.3083, 0.1245, 0.0454, 0.0225, 0.0176),  # 277,020 objects
    "CV/Nova": (1.7926, 2.1686, 1.3172, 1.1238, 1.2408, 1.0729, 0.9024, 0.7131, 0.4557),  # 1,112 objects
    "YSO": (8.0895, 3.9638, 0.5724, 1.5635, 1.5635, 1.5635, 0.0647, 0.0109, 0.0129),  # 2,187 objects
    "Periodic-Other": (5.3616, 5.7010, 2.7042, 1.7319, 1.0663, 0.3973, 0.1493, 0.0863, 0.0621),  # 229,803 objects
    "extragalactic": (0.0200, 0.0695, 0.3469, 0.6516, 0.8560, 1.0490, 1.2236, 1.3275, 1.3928),  # 2,314 objects
}  # fmt: skip

#: The weights are the densities to this power (see the module docstring: VSX's contrast is steeper than the
#: alerting variables').
LATITUDE_PRIOR_EXPONENT = 0.5

#: Class -> population of :data:`LATITUDE_DENSITY`: the light-curve classifier's 15 classes (any other name, an
#: asteroid say, has no population: weight 1).
CLASS_POPULATION: dict[str, str] = {
    **{c: c for c in ("E", "RRL", "DSCT", "CEP", "LPV", "CV/Nova", "YSO", "Periodic-Other")},
    **{c: "extragalactic" for c in ("SNIa", "SNIbc", "SNII", "SLSN", "QSO", "AGN", "Blazar")},
}


def latitude_weights(classes: Sequence[str], gal_b_deg) -> np.ndarray:
    """(n, len(classes)): each class's relative density at each |b| (1 for a class without a population, and for
    rows whose latitude is unknown: NaN or a ZTF "no value" marker)."""
    b = np.abs(np.asarray(gal_b_deg, dtype=np.float64).reshape(-1))
    known = np.isfinite(b) & (b <= 90.0)
    edges = np.asarray(LATITUDE_EDGES_DEG)
    idx = np.clip(np.searchsorted(edges, np.where(known, b, 0.0), side="right") - 1, 0, len(edges) - 2)
    out = np.ones((len(b), len(classes)))
    for j, c in enumerate(classes):
        pop = CLASS_POPULATION.get(c)
        if pop is not None:
            out[:, j] = np.where(known, np.asarray(LATITUDE_DENSITY[pop])[idx], 1.0)
    return out


def gal_b_column(features: pd.DataFrame) -> np.ndarray:
    """Galactic latitude per row of a features table (its ``gal_b``; NaN where it carries none)."""
    if "gal_b" not in features.columns:
        return np.full(len(features), np.nan)
    return pd.to_numeric(features["gal_b"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def apply_latitude_prior(
    proba: pd.DataFrame, gal_b_deg, exponent: float = LATITUDE_PRIOR_EXPONENT
) -> pd.DataFrame:
    """Probabilities (rows x classes, rows summing to 1) times :func:`latitude_weights` to the power
    ``exponent``, renormalised; rows aligned by position with ``gal_b_deg``."""
    p = proba.to_numpy(dtype=np.float64) * latitude_weights(list(proba.columns), gal_b_deg) ** exponent
    total = p.sum(axis=1, keepdims=True)
    p = np.divide(p, total, out=proba.to_numpy(dtype=np.float64, copy=True), where=total > 0)
    return pd.DataFrame(p, index=proba.index, columns=proba.columns)


#: The shipped prior's name, as a model's metadata stores it: a new table gets a new name, so a model keeps the
#: prior it was evaluated with.
GALACTIC_LATITUDE_PRIOR = "galactic-latitude-1"
SKY_PRIORS = (GALACTIC_LATITUDE_PRIOR,)


def apply_sky_prior(name: str, proba: pd.DataFrame, gal_b_deg) -> pd.DataFrame:
    """The sky prior a model names (:data:`SKY_PRIORS`) applied to its probabilities."""
    if name != GALACTIC_LATITUDE_PRIOR:
        raise ValueError(f"unknown sky prior {name!r}; known: {', '.join(SKY_PRIORS)}")
    return apply_latitude_prior(proba, gal_b_deg)
