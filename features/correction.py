"""Light-curve correction of difference photometry (Förster et al. 2021, sec. 4.4 and app. A).

ZTF measures a variable source as the flux of the *difference* image. When the alert sits on a source of the
reference image (``0 <= distnr < 1.4`` pixels) the apparent magnitude of the science image is recovered by
adding the reference flux back (``docs/correction.md`` restates the formulas):

    f_ref = 10^(-0.4 magnr),  f_diff = 10^(-0.4 magpsf),  f_sci = f_ref + isdiffpos * f_diff
    magpsf_corr       = -2.5 log10(f_sci)
    sigmapsf_corr     = sqrt(f_diff^2 sigmapsf^2 - f_ref^2 sigmagnr^2) / f_sci   (eq. A29, point source)
    sigmapsf_corr_ext = f_diff sigmapsf / f_sci                                  (eq. A30, extended)

Divergent cases carry ALeRCE's sentinel ``100``: all three when ``f_sci <= 0``, ``sigmapsf_corr`` alone when
only the variance is negative. Rows that are not corrected get NaN. Everything is computed in float64 whatever
the input precision, since the difference of two nearly equal fluxes loses most of float32's 7 digits.

``distnr = -999`` (ZTF's "no source" marker) is *not* a reference source, so such a detection is not
corrected; ``docs/correction.md`` writes ``distnr < 1.4`` and notes that -999 means no source.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from alert_broker.features.grouping import segments, time_order, value_codes

#: Match radius to a reference-image source, in ZTF pixels (~1 arcsec).
DISTANCE_THRESHOLD = 1.4
#: ALeRCE's marker for a correction that diverges (negative science flux or negative variance).
SENTINEL = 100.0

CORRECTION_COLUMNS = ("magpsf_corr", "sigmapsf_corr", "sigmapsf_corr_ext", "corrected", "dubious")
REQUIRED_COLUMNS = ("oid", "fid", "mjd", "magpsf", "sigmapsf", "isdiffpos", "distnr", "magnr", "sigmagnr")


def require_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise a ValueError that names every missing column, so a caller fixes them all at once."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing required column(s) {missing}; see docs/data-model.md")


def as_float(values: pd.Series | np.ndarray) -> np.ndarray:
    """float64 view of a numeric column; pandas NA (nullable dtypes) becomes NaN."""
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    return np.asarray(values, dtype="float64")


def is_corrected(distnr: pd.Series | np.ndarray) -> np.ndarray:
    """True where the alert lies on a reference-image source: ``0 <= distnr < 1.4`` (NaN and -999 are not)."""
    d = as_float(distnr)
    with np.errstate(invalid="ignore"):
        return (d >= 0.0) & (d < DISTANCE_THRESHOLD)


def correct_magnitudes(
    magnr: np.ndarray | pd.Series,
    magpsf: np.ndarray | pd.Series,
    sigmagnr: np.ndarray | pd.Series,
    sigmapsf: np.ndarray | pd.Series,
    isdiffpos: np.ndarray | pd.Series,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three corrected quantities for every row, ignoring whether the row should be corrected.

    Returns float64 arrays ``(magpsf_corr, sigmapsf_corr, sigmapsf_corr_ext)`` with the sentinel applied.
    A NaN input gives NaN outputs (never a sentinel), so missing data is not mistaken for a divergence.
    """
    magnr, magpsf, sigmagnr, sigmapsf = (as_float(x) for x in (magnr, magpsf, sigmagnr, sigmapsf))
    sign = np.where(as_float(isdiffpos) > 0, 1.0, -1.0)
    # -999 reference magnitudes ("no source") would overflow 10^(-0.4 m); treat them as missing.
    magnr = np.where(magnr > 0, magnr, np.nan)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        f_ref = 10.0 ** (-0.4 * magnr)
        f_diff = 10.0 ** (-0.4 * magpsf)
        f_sci = f_ref + sign * f_diff
        variance = (f_diff * sigmapsf) ** 2 - (f_ref * sigmagnr) ** 2
        mag = -2.5 * np.log10(f_sci)
        err = np.sqrt(variance) / f_sci
        err_ext = f_diff * sigmapsf / f_sci
    negative_flux = f_sci <= 0  # False for NaN
    mag = np.where(negative_flux, SENTINEL, mag)
    err = np.where(negative_flux | (variance < 0), SENTINEL, err)
    err_ext = np.where(negative_flux, SENTINEL, err_ext)
    # A sentinel must only mark a real divergence: keep NaN wherever an error input was missing.
    err = np.where(np.isnan(sigmapsf) | np.isnan(sigmagnr), np.nan, err)
    err_ext = np.where(np.isnan(sigmapsf), np.nan, err_ext)
    return mag, err, err_ext


def first_positions(df: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """For each row, the position of the first detection (smallest ``mjd``, then ``candid``) of its group.

    Positional (not label based) so that duplicated index labels in the caller's frame do not matter. A null
    key is a group of its own (as ``groupby(dropna=False)``).
    """
    group = np.zeros(len(df), dtype=np.int64)
    for key in keys:
        codes = value_codes(df[key]) + 1  # null -> 0
        group = group * (int(codes.max(initial=0)) + 1) + codes
    seg = segments(group, time_order(df))
    out = np.empty(len(df), dtype=np.int64)
    out[seg.order] = np.repeat(seg.first, seg.sizes)
    return out


def is_dubious(corrected: np.ndarray, isdiffpos: np.ndarray, first_corrected: np.ndarray) -> np.ndarray:
    """The correction is inconsistent through time (Förster et al. 2021, algorithm 2).

    Dubious if not corrected but negative, or corrected while the first detection of its (object, band) was
    not, or not corrected while the first was.
    """
    negative = as_float(isdiffpos) < 0
    return (~corrected & negative) | (first_corrected & ~corrected) | (~first_corrected & corrected)


def _check_isdiffpos(isdiffpos: pd.Series) -> None:
    values = isdiffpos.to_numpy() if isdiffpos.dtype.kind in "iu" else None
    if values is not None and ((values == 1) | (values == -1)).all():
        return  # the common case, without pd.unique
    values = pd.unique(isdiffpos.dropna())
    bad = [v for v in values if v not in (1, -1)]
    if bad or isdiffpos.isna().any():
        shown = bad[:5] if bad else ["<null>"]
        raise ValueError(
            f"isdiffpos must be int8 +1/-1 (map ZTF 't'/'1' to +1 and 'f'/'0' to -1 first); found {shown}"
        )


def correct(detections: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``detections`` with ``magpsf_corr``, ``sigmapsf_corr``, ``sigmapsf_corr_ext`` (float64),
    ``corrected`` and ``dubious`` (bool) added; the row order and index are kept.

    ``dubious`` compares each detection with the first detection of its (oid, fid) *within this frame*, so
    pass the whole known light curve of an object, not only the new detections.
    """
    require_columns(detections, REQUIRED_COLUMNS, "correct()")
    if detections.empty:
        out = detections.copy()
        for col in CORRECTION_COLUMNS[:3]:
            out[col] = pd.Series(dtype="float64")
        for col in CORRECTION_COLUMNS[3:]:
            out[col] = pd.Series(dtype="bool")
        return out
    _check_isdiffpos(detections["isdiffpos"])
    corrected = is_corrected(detections["distnr"])
    mag, err, err_ext = correct_magnitudes(
        detections["magnr"],
        detections["magpsf"],
        detections["sigmagnr"],
        detections["sigmapsf"],
        detections["isdiffpos"],
    )
    first = first_positions(detections, ["oid", "fid"])
    added = {
        "magpsf_corr": np.where(corrected, mag, np.nan),
        "sigmapsf_corr": np.where(corrected, err, np.nan),
        "sigmapsf_corr_ext": np.where(corrected, err_ext, np.nan),
        "corrected": corrected,
        "dubious": is_dubious(corrected, detections["isdiffpos"], corrected[first]),
    }
    extra = pd.DataFrame(added, index=detections.index)
    cols = detections.columns
    if (
        type(cols) is pd.Index
        and cols.name is None
        and cols.dtype == extra.columns.dtype
        and not detections.attrs
        and not cols.isin(CORRECTION_COLUMNS).any()
    ):
        # One concat instead of a copy and five column insertions, for the same frame (the guard keeps the
        # cases where they would differ on the slow path); copy-on-write leaves the input untouched.
        return pd.concat([detections, extra], axis=1)
    out = detections.copy()
    for col, values in added.items():
        out[col] = values
    return out
