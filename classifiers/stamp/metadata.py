"""Alert metadata -> the CNN's second input: a fixed vector per alert with documented fills and clipping.

The fields are ALeRCE's stamp-classifier features (Carrasco-Davis et al. 2021; the feature list and clipping
ranges of ALeRCE's training scripts): the three nearest Pan-STARRS1 sources (star/galaxy score and distance), the
sign of the difference, seeing, the alert's magnitude, error and limit, SExtractor's star score, the detection
history counts, and the reference source's chi and sharpness. All come from the `alerts` table (the ZTF candidate
record, docs/data-model.md).

Missing values: NaN, or ZTF's "no value" markers (-999, and -99 in old schemas: any value <= -99) become the fill
of :data:`METADATA_SPEC`. For the PS1 neighbours and the reference-source shape the fill is -1, just below the
valid range, meaning "no such source", exactly as ALeRCE's clipping at -1 turns ZTF's -999 into -1. Other
fills are typical values (median seeing, a mid-range limit, an undecided star score) so a field absent from an
old schema does not look like an extreme. Then every value is clipped to its range (ALeRCE's ranges; the network
sees standardised values, see ``classifiers.stamp.model``).

Fields computed here but left out of :data:`DEFAULT_FEATURES`, because in a *simulated* training set they say
something real alerts do not (the network would learn a shortcut that fails on the sky):
- ``ncovhist`` and ``non_detections``: how often the position was covered measures the survey's age, not the
  source. The shipped models were chosen when the simulator gave transients no coverage before their explosion
  (which made "small ncovhist" mean SN); it now counts every visit since the survey began, as real alerts do, so
  these two are candidates for the next model, once a retrain shows they help on real stamps (only 21 of the 51
  labelled real stamps carry metadata to check it on).
- ``classtar``: the simulator draws it from the class (high and drifting to 0.5 near the limit for real
  sources, Beta(2, 2) for artefacts), while real faint AGN and stars have 0.6-0.9 (ALeRCE's labelled stamps): a
  network trained on it calls them bogus.
- ecliptic and galactic latitude (ALeRCE uses them): the simulator places every class uniformly on its fields,
  so they carry no information there.
- ``distnr`` / ``magnr`` (the nearest reference-image source), which ALeRCE's list does not use either.
A model trained on real labels can switch any of them on through its feature list (stored with the model).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: name -> (fill for missing, lower clip, upper clip). Units as in the ZTF candidate record.
METADATA_SPEC: dict[str, tuple[float, float, float]] = {
    "sgscore1": (-1.0, -1.0, 1.0),  # PS1 star/galaxy score of the nearest PS1 source (1 = star)
    "distpsnr1": (-1.0, -1.0, 30.0),  # its distance [arcsec]; ZTF searches within 30"
    "sgscore2": (-1.0, -1.0, 1.0),
    "distpsnr2": (-1.0, -1.0, 30.0),
    "sgscore3": (-1.0, -1.0, 1.0),
    "distpsnr3": (-1.0, -1.0, 30.0),
    "isdiffpos": (1.0, -1.0, 1.0),  # +1 positive difference, -1 negative
    "fwhm": (2.2, 0.0, 10.0),  # seeing [pixels ~ arcsec]; fill = median of real ZTF alerts
    "magpsf": (19.0, 10.0, 23.0),
    "sigmapsf": (0.12, 0.0, 0.5),
    "diffmaglim": (20.3, 15.0, 23.0),
    "classtar": (0.5, 0.0, 1.0),  # SExtractor star score; 0.5 = undecided
    "ndethist": (1.0, 0.0, 20.0),  # earlier detections at this position (ALeRCE clips at 20)
    "ncovhist": (1.0, 0.0, 3000.0),  # times the position was covered
    "non_detections": (0.0, 0.0, 2000.0),  # ncovhist - ndethist
    "distnr": (-1.0, -1.0, 30.0),  # distance to the nearest source in the reference image [arcsec]
    "magnr": (23.0, 10.0, 23.0),  # its magnitude; no source = fainter than the reference depth
    "chinr": (-1.0, -1.0, 15.0),  # reference source chi; -1 = no reference source
    "sharpnr": (-1.0, -1.0, 1.5),  # reference source sharpness
    "ecl_lat": (0.0, -90.0, 90.0),  # [deg], from ra, dec
    "gal_lat": (0.0, -90.0, 90.0),  # [deg], from ra, dec
    # LSST: the alert's magnitude on LSST's deeper range (it reads ``magpsf``; ZTF's range would clip at 23)
    "lsst_magpsf": (23.5, 14.0, 26.5),
}

#: Fields read from another column than their own name (one column, two clipping ranges for two surveys).
SOURCE_COLUMN: dict[str, str] = {"lsst_magpsf": "magpsf"}

#: The metadata the shipped model uses, in input order: ALeRCE's list without the fields a simulated training set
#: would teach wrongly (see the module docstring): ``ncovhist`` / ``non_detections``, ``classtar`` and sky position.
DEFAULT_FEATURES: tuple[str, ...] = (
    "sgscore1", "distpsnr1", "sgscore2", "distpsnr2", "sgscore3", "distpsnr3", "isdiffpos", "fwhm", "magpsf",
    "sigmapsf", "diffmaglim", "ndethist", "chinr", "sharpnr",
)  # fmt: skip

#: The metadata of the LSST stamp model: the sign, magnitude and error of the difference, quantities the simulator
#: derives from the same photometry as the cutouts. Not used: ``reliability``, ``extendedness`` and the trail and
#: dipole fits, which the simulator draws from the class (a shortcut that real alerts would not honour: the real
#: reliability's distribution changes with Rubin's model version, 0.99 median in the 7.4 sample, 0.37 in 9.0), and
#: ``ssObjectId``, which the business rules use (``rules.known_solar_system_object``).
LSST_FEATURES: tuple[str, ...] = ("isdiffpos", "lsst_magpsf", "sigmapsf")

#: Values at or below this are ZTF "no value" markers (-999; -99 in 2018 schemas).
SENTINEL_BELOW = -99.0

# J2000 north galactic pole and obliquity of the ecliptic (IAU 1958 / 2006 conventions, as astropy uses).
_NGP_RA, _NGP_DEC = np.deg2rad(192.85948), np.deg2rad(27.12825)
_OBLIQUITY = np.deg2rad(23.4392911)


def sky_latitudes(ra_deg, dec_deg) -> tuple[np.ndarray, np.ndarray]:
    """(ecliptic latitude, galactic latitude) in degrees from ICRS ra, dec in degrees (closed form, vectorised)."""
    ra = np.deg2rad(np.asarray(ra_deg, dtype=np.float64))
    dec = np.deg2rad(np.asarray(dec_deg, dtype=np.float64))
    sin_b = np.sin(dec) * np.sin(_NGP_DEC) + np.cos(dec) * np.cos(_NGP_DEC) * np.cos(ra - _NGP_RA)
    sin_beta = np.sin(dec) * np.cos(_OBLIQUITY) - np.cos(dec) * np.sin(_OBLIQUITY) * np.sin(ra)
    return np.rad2deg(np.arcsin(np.clip(sin_beta, -1, 1))), np.rad2deg(np.arcsin(np.clip(sin_b, -1, 1)))


def _isdiffpos(col: pd.Series) -> np.ndarray:
    """+1 / -1 from the contract's int8, or from ZTF's raw 't'/'f'/'1'/'0' strings; NaN when unknown."""
    if pd.api.types.is_numeric_dtype(col):
        v = col.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.where(np.isnan(v), np.nan, np.where(v > 0, 1.0, -1.0))
    m = {"t": 1.0, "1": 1.0, "true": 1.0, "f": -1.0, "0": -1.0, "false": -1.0}
    return col.astype("string").str.lower().map(m).astype("float64").to_numpy(na_value=np.nan)


def _raw(alerts: pd.DataFrame, name: str) -> np.ndarray:
    if name not in alerts.columns:
        return np.full(len(alerts), np.nan)
    if name == "isdiffpos":
        return _isdiffpos(alerts[name])
    v = pd.to_numeric(alerts[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(v <= SENTINEL_BELOW, np.nan, v)


def metadata_frame(alerts: pd.DataFrame) -> pd.DataFrame:
    """Every field of :data:`METADATA_SPEC` for every alert, filled and clipped (float32, index of ``alerts``).

    Accepts the contract's `alerts` table or any frame with the same column names (e.g. ALeRCE's labelled stamp
    files); absent columns are filled. ``non_detections`` is ncovhist - ndethist when the alert does not carry it.
    """
    raw = {
        name: _raw(alerts, SOURCE_COLUMN.get(name, name))
        for name in METADATA_SPEC
        if name not in ("ecl_lat", "gal_lat")
    }
    if "non_detections" not in alerts.columns:
        raw["non_detections"] = raw["ncovhist"] - raw["ndethist"]
    if "ra" in alerts.columns and "dec" in alerts.columns:
        raw["ecl_lat"], raw["gal_lat"] = sky_latitudes(
            pd.to_numeric(alerts["ra"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan),
            pd.to_numeric(alerts["dec"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan),
        )
    out = {}
    for name, (fill, lo, hi) in METADATA_SPEC.items():
        v = raw.get(name, np.full(len(alerts), np.nan))
        out[name] = np.clip(np.where(np.isfinite(v), v, fill), lo, hi).astype(np.float32)
    return pd.DataFrame(out, index=alerts.index)


def metadata_matrix(
    alerts: pd.DataFrame, features: tuple[str, ...] | list[str] = DEFAULT_FEATURES
) -> np.ndarray:
    """The (N, len(features)) float32 metadata input of the CNN, in ``features`` order."""
    unknown = [f for f in features if f not in METADATA_SPEC]
    if unknown:
        raise ValueError(f"unknown metadata features {unknown}; known: {list(METADATA_SPEC)}")
    return metadata_frame(alerts)[list(features)].to_numpy(dtype=np.float32)
