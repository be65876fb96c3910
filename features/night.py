"""The observing night of a measurement, and the site longitudes it needs (docs/data-model.md).

A night is labelled by the site-local calendar date of the evening on which it began:
``night = date(UTC + longitude / 15 h - 12 h)``. Shifting by local mean time and then back by half a day puts
the label change at local *noon*, when no optical survey observes, so one night never straddles two labels
(the UTC date does, for every site west of Greenwich: a Chilean night runs from ~23:00 to ~10:00 UTC).
Local mean time is used rather than civil time zones: it needs no time-zone database and no daylight-saving
rules, and the ~1 h difference never matters because the boundary sits in daylight either way.
"""

from __future__ import annotations

import numpy as np

#: Longitudes (degrees, east positive) of the telescopes whose nights we label. The label changes at local
#: noon, so these are far more precise than needed: 0.1 deg moves the boundary by 24 seconds of daylight.
SITES: dict[str, float] = {
    # Palomar Observatory, the value docs/data-model.md uses; ZTF's own MPC code I41 lists 243.14022 E
    # (= -116.8598), 0.005 deg (1.2 s) away.
    "ztf": -116.8650,
    # Vera C. Rubin Observatory, Cerro Pachon, 70 deg 44' 57.9" W.
    "lsst": -70.7494,
    # ATLAS is four units on three continents. The default is unit 01a, Mauna Loa (MPC T08, 204.42395 E); unit
    # 02a, Haleakala (T05, 203.74299 E) is 0.7 deg away and so has the same nights. These two are where the
    # ATLAS alerts ALeRCE receives (and the sample in shared/data/atlas) come from. The southern units have
    # other nights: take their longitude from ATLAS_UNITS by the exposure-name prefix.
    "atlas": -155.5761,
}

#: ATLAS unit (the first three characters of an ATLAS exposure or candid, e.g. "01a59485o0083o_002297")
#: -> longitude. Unit codes as ALeRCE's atlas_realtime and the CATCH archive map them: 01 Mauna Loa (T08),
#: 02 Haleakala (T05), 03 Sutherland, South Africa (M22), 04 El Sauce, Rio Hurtado, Chile (W68). The Hawaiian
#: values are the MPC's; the two southern ones are the sites' published coordinates to ~0.01 deg.
ATLAS_UNITS: dict[str, float] = {
    "01a": -155.5761,
    "02a": -156.2570,
    "03a": 20.8107,
    "04a": -70.7650,
}

_MJD_UNIX_EPOCH = 40587  # MJD of 1970-01-01, the epoch of numpy's datetime64


def observing_night(mjd: np.ndarray, longitude_deg: float) -> np.ndarray:
    """Night label (int32 ``YYYYMMDD``) of each MJD (UTC days) observed at ``longitude_deg`` (east positive).

    Vectorised over ``mjd`` (any shape; a scalar gives a 0-d array). NaN or infinite times have no night and
    raise ValueError rather than producing a bogus label that would partition data into a wrong folder.
    """
    mjd = np.asarray(mjd, dtype=np.float64)
    if not np.isfinite(mjd).all():
        raise ValueError("observing_night: mjd contains NaN or infinite values, which have no night")
    if not -180.0 <= float(longitude_deg) <= 360.0:
        raise ValueError(f"observing_night: longitude {longitude_deg} is not in degrees (-180..360)")
    lon = float(longitude_deg)
    if lon > 180.0:  # accept 0..360 east longitudes too, as the MPC lists them
        lon -= 360.0
    local_day = np.floor(mjd + lon / 360.0 - 0.5).astype(np.int64)
    days = (local_day - _MJD_UNIX_EPOCH).astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    year = days.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (days - months).astype(np.int64) + 1
    return (year * 10000 + month * 100 + day).astype(np.int32)
