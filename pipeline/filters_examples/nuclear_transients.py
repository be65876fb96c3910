"""Nuclear transients: a brightening at the centre of a galaxy (tidal disruption events, AGN flares, nuclear
supernovae).

Why these cuts. ZTF alerts carry the nearest Pan-STARRS1 source to the candidate (``distpsnr1``, arcsec) and its
star-galaxy score (``sgscore1``, Tachibana & Miller 2018: 0 = extended, 1 = point-like). A PS1 catalogue position
of an extended source is the galaxy's centroid, so a transient within 1" of a PS1 source that is galaxy-like
(``sgscore1 < 0.3``, well on the extended side of ALeRCE's 0.5 star cut) sits on the galaxy's nucleus at ZTF's
resolution (1" is about half a ZTF pixel, a third of its seeing). A positive difference (``isdiffpos > 0``) asks for
new light, not a fading nucleus. Missing values (-999 in ZTF packets: no PS1 source; None or NaN) fail the test,
and so does a known solar-system object within 5". The stamp classifier's bogus class is vetoed when present.
Caveats: the neighbour is the nearest PS1 source, not necessarily the host; compact galaxies can score
point-like; LSST alerts have no PS1 columns, so this filter selects ZTF alerts only.

A Python filter rather than an expression because the sentinel handling (-999, NaN, None) reads better as code.
"""

import math

NAME = "nuclear_transients"
TOPIC = "nuclear_transients"
DESCRIPTION = (
    'Nuclear transients: nearest PS1 source within 1" and galaxy-like (0 <= sgscore1 < 0.3), positive '
    "difference, no known solar-system object, not stamp-classified bogus"
)
REFERENCES = (
    "Tachibana & Miller 2018, PASP 130, 128001 (the PS1 star-galaxy score sgscore1)",
    "Foerster et al. 2021, AJ 161, 242 (ALeRCE's PS1 star cut sgscore1 > 0.5 within 1\")",
)

MAX_DIST_ARCSEC = 1.0  # distance to the nearest PS1 source: "on the nucleus"
MAX_SGSCORE = 0.3  # below: extended, galaxy-like
SSO_DIST_ARCSEC = 5.0  # a known solar-system object closer than this: an asteroid


def _number(value):
    """The value as a float, or None when missing, not a number, NaN/infinite or a negative sentinel (-999)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    if not math.isfinite(value) or value < 0:
        return None
    return value


def accept(record: dict) -> bool:
    dist, sg = _number(record.get("distpsnr1")), _number(record.get("sgscore1"))
    if dist is None or sg is None or dist >= MAX_DIST_ARCSEC or sg >= MAX_SGSCORE:
        return False
    if not (record.get("isdiffpos") or 0) > 0:
        return False
    ss = _number(record.get("ssdistnr"))
    if ss is not None and ss <= SSO_DIST_ARCSEC:
        return False
    stamp = record.get("stamp") or {}
    return stamp.get("class") != "bogus"
