"""``compute_features``: the whole light-curve feature vector of every qualifying object of a batch."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .mhps import MHPS_CONSTANTS, MHPS_NAMES, mhps_batch
from .objectlevel import COLOR_NAMES, ICRS_TO_GALACTIC, META_NAMES, color_batch, meta_batch
from .periodogram import (
    BAND_NAMES as PERIOD_BAND_NAMES,
)
from .periodogram import (
    FMAX,
    FMIN,
    N_PEAKS,
    N_RANK,
    OFAC,
    POWER_RATE_FACTORS,
    SELECTION_FAMILY,
    SELECTION_RANK,
    SELECTION_SCAN,
    period_batch,
    period_batch_family,
    period_batch_scan,
)
from .periodogram import (
    OBJECT_NAMES as PERIOD_OBJECT_NAMES,
)
from .prepare import BANDS, RB_MIN, RB_MIN_LEGACY, Batch, prepare
from .spm import SPM_NAMES, mag_to_flux, spm_batch
from .stochastic import STOCHASTIC_NAMES, stochastic_batch
from .supernova import SN_NAMES, sn_batch
from .variability import BASIC_NAMES, SF_EDGES, basic_batch

#: Version of the feature definitions; stored with every feature row so the lake and PostgreSQL can tell
#: vectors computed under different definitions apart. Bump on any change of a definition or of the grid.
FEATURE_VERSION = "lc-features-1.1.0"
#: Earlier definitions this code still computes on request (``compute_features(..., feature_version=...)``), so
#: models trained on them stay usable: 1.0.0 = ALeRCE's rb >= 0.55 cut and period selection 0.
LEGACY_FEATURE_VERSIONS = ("lc-features-1.0.0",)
#: Newer definitions computed on request but not yet the default: no shipped model reads them, and
#: ``broker train lc --real-data`` (``make models``) trains on FEATURE_VERSION. 1.2.0 = period selection 2 (the
#: alias families of the strongest peaks screened; docs/features.md). Make it FEATURE_VERSION when a light-curve
#: model is retrained on it.
NEWER_FEATURE_VERSIONS = ("lc-features-1.2.0",)
FEATURE_VERSIONS = (FEATURE_VERSION, *LEGACY_FEATURE_VERSIONS, *NEWER_FEATURE_VERSIONS)
#: What differs between the versions: the rb threshold of the cleaning and the period selection
#: (periodogram.SELECTION_*). The column set is the same.
VERSION_SETTINGS: dict[str, dict] = {
    "lc-features-1.0.0": {"rb_min": RB_MIN_LEGACY, "selection": SELECTION_RANK},
    "lc-features-1.1.0": {"rb_min": RB_MIN, "selection": SELECTION_SCAN},
    "lc-features-1.2.0": {"rb_min": RB_MIN, "selection": SELECTION_FAMILY},
}
#: The compiled period code of each selection: each its own function, so adding one never changes the
#: floating-point code (hence the features) of another.
PERIOD_BATCH = {
    SELECTION_RANK: period_batch,
    SELECTION_SCAN: period_batch_scan,
    SELECTION_FAMILY: period_batch_family,
}


def _settings(feature_version: str | None) -> dict:
    version = feature_version or FEATURE_VERSION
    if version not in VERSION_SETTINGS:
        raise ValueError(
            f"unknown feature version {version!r}; this code computes {', '.join(FEATURE_VERSIONS)}"
        )
    return VERSION_SETTINGS[version]


#: Fewest points a band needs for the variability, stochastic, periodogram, harmonic and MHPS features.
MIN_BAND_POINTS = 6
#: Fewest points a band needs for the supernova parametric model.
MIN_SPM_POINTS = 3

PER_BAND_NAMES: tuple[str, ...] = (
    BASIC_NAMES + STOCHASTIC_NAMES + MHPS_NAMES + SN_NAMES + SPM_NAMES + PERIOD_BAND_NAMES
)
OBJECT_NAMES: tuple[str, ...] = PERIOD_OBJECT_NAMES + COLOR_NAMES + META_NAMES


def feature_names() -> list[str]:
    """Every feature column of ``compute_features``' output, in order (without ``oid`` and the version)."""
    per_band = [f"{name}_{fid}" for name in PER_BAND_NAMES for fid in BANDS]
    return per_band + list(OBJECT_NAMES)


def _wide(seg_values: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """(2 * n_objects, k) segment rows -> {name_fid: column} with one row per object."""
    n = seg_values.shape[0] // 2
    cube = seg_values.reshape(n, 2, len(names))
    return {f"{name}_{fid}": cube[:, b, j] for j, name in enumerate(names) for b, fid in enumerate(BANDS)}


def compute_batch(batch: Batch, *, feature_version: str | None = None) -> pd.DataFrame:
    """Features of an already prepared batch (see ``prepare``) under ``feature_version`` (default the current
    FEATURE_VERSION; prepare the batch with that version's ``rb_min``)."""
    version = feature_version or FEATURE_VERSION
    selection = _settings(version)["selection"]
    b = batch
    cols: dict[str, np.ndarray] = {}
    if b.n_objects:
        with np.errstate(
            over="ignore", invalid="ignore"
        ):  # absurd magnitudes give inf; the SPM kernel skips them
            flux = b.sign * mag_to_flux(b.mag_raw)
            flux_err = mag_to_flux(b.mag_raw - b.err_raw) - mag_to_flux(b.mag_raw)
        cols.update(_wide(basic_batch(b.t, b.mag, b.err, b.seg_off, MIN_BAND_POINTS, SF_EDGES), BASIC_NAMES))
        cols.update(_wide(stochastic_batch(b.t, b.mag, b.err, b.seg_off, MIN_BAND_POINTS), STOCHASTIC_NAMES))
        cols.update(
            _wide(mhps_batch(b.t, b.mag, b.err, b.seg_off, MIN_BAND_POINTS, MHPS_CONSTANTS), MHPS_NAMES)
        )
        cols.update(_wide(sn_batch(b.t, b.mag, b.sign, b.seg_off, b.nd_t, b.nd_lim, b.nd_off), SN_NAMES))
        cols.update(_wide(spm_batch(b.t, flux, flux_err, b.seg_off, MIN_SPM_POINTS), SPM_NAMES))
        # selection 0 runs the untouched compiled code of lc-features-1.0.0 (bit for bit what it was)
        periods = PERIOD_BATCH[selection]
        per_obj, per_seg = periods(
            b.t,
            b.mag,
            b.err,
            b.seg_off,
            MIN_BAND_POINTS,
            OFAC,
            FMIN,
            FMAX,
            N_PEAKS,
            N_RANK,
            POWER_RATE_FACTORS,
        )
        cols.update(_wide(per_seg, PERIOD_BAND_NAMES))
        obj_values = np.hstack(
            [
                per_obj,
                color_batch(b.mag_raw, b.mag, b.seg_off),
                meta_batch(b.ra, b.dec, b.sgscore1, b.rb, b.seg_off[::2].copy(), ICRS_TO_GALACTIC),
            ]
        )
        cols.update({name: obj_values[:, j] for j, name in enumerate(OBJECT_NAMES)})
    names = feature_names()
    data = {"oid": pd.Series(b.oids, dtype=object)}
    for name in names:
        data[name] = pd.Series(cols.get(name, np.zeros(0)), dtype=np.float64)
    out = pd.DataFrame(data)
    out["FEATURE_VERSION"] = version
    return out


def compute_features(
    detections: pd.DataFrame,
    non_detections: pd.DataFrame | None,
    objects: pd.DataFrame | None = None,
    *,
    feature_version: str | None = None,
) -> pd.DataFrame:
    """Light-curve features of every object with at least 6 clean detections in g or r.

    ``detections`` are the contract's detections after correction, ``non_detections`` the contract's
    non-detections (may be empty or None), ``objects`` optionally the objects table whose ``corrected`` column
    decides which magnitudes an object uses. Returns one row per qualifying object: ``oid``, the float64
    features of ``feature_names()`` (per band ``<name>_<fid>``) and ``FEATURE_VERSION``. Undefined values are NaN.
    ``feature_version`` computes an earlier definition (one of ``FEATURE_VERSIONS``) for a model trained on it.
    """
    settings = _settings(feature_version)
    batch = prepare(detections, non_detections, objects, rb_min=settings["rb_min"])
    return compute_batch(batch, feature_version=feature_version)


_WARM = False


def warm_up() -> None:
    """Compile (or load from numba's on-disk cache) every kernel once per process, on a tiny synthetic batch.

    Call it when a worker starts so the first real batch does not pay for compilation.
    """
    global _WARM
    if _WARM:
        return
    rng = np.random.default_rng(0)
    n = 16
    t = np.sort(rng.uniform(58000.0, 58100.0, 2 * n))
    det = pd.DataFrame(
        {
            "oid": ["ZTFwarmup"] * (2 * n),
            "mjd": t,
            "fid": np.tile([1, 2], n),
            "magpsf": 18.0 + 0.3 * np.sin(t),
            "sigmapsf": np.full(2 * n, 0.05),
            "isdiffpos": np.ones(2 * n, dtype=np.int8),
            "rb": np.full(2 * n, 0.9),
            "ra": np.full(2 * n, 10.0),
            "dec": np.full(2 * n, -5.0),
        }
    )
    nd = pd.DataFrame(
        {"oid": ["ZTFwarmup"] * 2, "fid": [1, 2], "mjd": [57990.0, 57991.0], "diffmaglim": [20.0, 20.5]}
    )
    for version in FEATURE_VERSIONS:  # each version has its own compiled period selection
        compute_features(det, nd, feature_version=version)
    _WARM = True
