"""Night labels and night boundaries (the contract's definition, docs/data-model.md).

`night = date(UTC + longitude/15 h - 12 h)`: a night runs from local (mean solar) noon to the next local noon.
Kept here, vectorised, so the simulator does not depend on the pipeline's own helpers.
"""

from __future__ import annotations

import numpy as np

MJD_UNIX_EPOCH = 40587.0


def night_label(mjd: np.ndarray | float, lon_deg: float) -> np.ndarray:
    """YYYYMMDD (int32) of the night each MJD belongs to."""
    local = np.floor(np.asarray(mjd, dtype=float) + lon_deg / 360.0 - 0.5).astype("int64")
    days = (local - int(MJD_UNIX_EPOCH)).astype("datetime64[D]")
    y = days.astype("datetime64[Y]").astype(int) + 1970
    m = days.astype("datetime64[M]").astype(int) % 12 + 1
    d = (days - days.astype("datetime64[M]")).astype(int) + 1
    return (y * 10000 + m * 100 + d).astype("int32")


def night_start(mjd: float, lon_deg: float) -> float:
    """MJD of the local noon that opens the night containing `mjd`."""
    return float(np.floor(mjd + lon_deg / 360.0 - 0.5) + 0.5 - lon_deg / 360.0)


def local_midnight(night_start_mjd: np.ndarray | float) -> np.ndarray:
    return np.asarray(night_start_mjd, dtype=float) + 0.5


def sun_ra_deg(mjd: np.ndarray | float) -> np.ndarray:
    """Approximate right ascension of the Sun (mean longitude; good to a few degrees, enough for seasons)."""
    d = np.asarray(mjd, dtype=float) - 51544.5
    lam = np.deg2rad((280.460 + 0.9856474 * d) % 360.0)
    eps = np.deg2rad(23.439)
    return np.rad2deg(np.arctan2(np.cos(eps) * np.sin(lam), np.cos(lam))) % 360.0


def mjd_to_iso_parts(mjd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(YYYYMMDD of the UTC date, fraction of the UTC day) for file names and ZTF ids."""
    mjd = np.asarray(mjd, dtype=float)
    day = np.floor(mjd).astype("int64")
    frac = mjd - day
    days = (day - int(MJD_UNIX_EPOCH)).astype("datetime64[D]")
    y = days.astype("datetime64[Y]").astype(int) + 1970
    m = days.astype("datetime64[M]").astype(int) % 12 + 1
    d = (days - days.astype("datetime64[M]")).astype(int) + 1
    return (y * 10000 + m * 100 + d).astype("int64"), frac
