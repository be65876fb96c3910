"""Plausibility rules and size limits for decoded alerts: docs/input-validation.md states every rule.

Avro guarantees a packet's types, not its values. A value can decode and still be physically absurd (a
magnitude of 99, a declination of 120, a time in the year 4 million): these rules keep such values out of the
tables, so they never reach the features, the classifiers or the summaries.

- The alert's own detection (ZTF ``candidate``, LSST ``diaSource``, ATLAS ``candidate``) breaks a rule: the
  alert is a dead letter (``ImplausibleValueError``) whose reason names the field and the value.
- A history point (ZTF ``prv_candidates`` and ``fp_hists``; LSST ``prvDiaSources``, ``prvDiaForcedSources`` and
  ``prvDiaNondetectionLimits``) breaks a rule: the point is dropped, the alert is kept, and its ``alerts`` row
  says so: ``dropped_points`` (how many) and ``dropped_reason`` (the first few, field and value).

The size limits bound what one packet may cost in memory and time before its content is looked at: the bytes
on the wire, the writer schema, the Avro data after decompression, and each history array.

The checks are plain comparisons written so that NaN fails them (``not low <= x < high`` is true for NaN).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

#: MJD of 2100-01-01: the end of every survey's era (a generous, fixed bound, so a replay decides as the run did).
MJD_END = 88069.0
#: The first MJD each survey's alerts (and their history) can carry: ZTF's first light was 2017-11-01 (MJD
#: 58058; commissioning alerts from 2018), Rubin's first alerts 2025 (ComCam on sky from late 2024), ATLAS's
#: survey 2015-2017 (ALeRCE's ATLAS stream from 2021).
ERA_START_MJD = {"ztf": 58000.0, "lsst": 60000.0, "atlas": 57000.0}
#: Difference magnitudes (ZTF ``magpsf``, ATLAS ``|Mag|``, ZTF ``diffmaglim``): an open interval, in mag.
MAG_RANGE = (5.0, 30.0)
#: Magnitude errors (ZTF ``sigmapsf``, ATLAS ``Dmag``): an open interval, in mag (a 5-sigma detection has 0.22).
SIGMA_MAG_RANGE = (0.0, 10.0)
#: The largest |difference flux| (nJy) of a plausible detection: the flux of magnitude ``MAG_RANGE[0]``.
FLUX_MAX_NJY = 10.0 ** (0.4 * (31.4 - MAG_RANGE[0]))
#: Ids are positive 64-bit integers.
ID_MAX = 2**63 - 1
#: Object ids: 1-64 printable ASCII characters, no space (ZTF's are 12, ATLAS's 19 digits).
OBJECT_ID = re.compile(r"[\x21-\x7e]{1,64}")

# ---------------------------------------------------------------------------------------------- limits
#: The most bytes one message may have (twice the Kafka message size the broker's own producer allows; ZTF
#: alerts are ~100 kB, Fink's multi-alert files a few MB). A bigger message is a dead letter, not decoded.
MAX_PACKET_BYTES = 32 * 1024 * 1024
#: The most Avro data one packet may hold after decompression (all its blocks): a compressed packet holds no
#: more than an uncompressed one may, so a decompression bomb stops here.
MAX_DECODED_BYTES = MAX_PACKET_BYTES
#: The largest writer schema (real alert schemas are 8-30 kB); bigger ones are refused before being parsed
#: or cached.
MAX_SCHEMA_BYTES = 512 * 1024
#: The most entries one history array of one alert may have (ZTF carries 30 days of history, a few hundred
#: points; an LSST alert 12 months, a few thousand): more is a dead letter.
MAX_HISTORY = 10_000
#: Dropped history points named in ``dropped_reason`` (the rest are counted).
SHOWN_DROPS = 3
#: The longest dead-letter reason kept (a reason quotes values; a hostile value may be huge).
MAX_REASON_CHARS = 2000


def era(survey: str) -> tuple[float, float]:
    """The [start, end) MJD interval of a survey's alerts."""
    return ERA_START_MJD[survey], MJD_END


def show(value: object) -> str:
    """A value as a reason quotes it: ``repr``, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def time_problem(where: str, mjd: float, survey: str, value: object = None) -> str | None:
    """Why an MJD is not in the survey's era (None if it is). ``value`` is the field's own value when it is not
    an MJD (ZTF's JD), quoted in the reason."""
    start, end = era(survey)
    if start <= mjd < end:
        return None
    shown = show(mjd) if value is None else f"{show(value)} (MJD {mjd:.1f})"
    return f"{where} is {shown}, outside {survey.upper()}'s era MJD [{start:g}, {end:g}) (up to 2100)"


def position_problem(
    where: str, ra: object, dec: object, ra_name: str = "ra", dec_name: str = "dec"
) -> str | None:
    """Why (ra, dec) is not a position on the sky (None if it is): ra in [0, 360), dec in [-90, 90] degrees."""
    if not (is_number(ra) and 0.0 <= ra < 360.0):
        return f"{where}.{ra_name} is {show(ra)}, outside [0, 360) degrees"
    if not (is_number(dec) and -90.0 <= dec <= 90.0):
        return f"{where}.{dec_name} is {show(dec)}, outside [-90, 90] degrees"
    return None


def magnitude_problem(
    where: str, name: str, mag: object, sigma_name: str | None = None, sigma: object = None
) -> str | None:
    """Why a difference magnitude (and its error) is not plausible (None if it is)."""
    low, high = MAG_RANGE
    if not (is_number(mag) and low < mag < high):
        return f"{where}.{name} is {show(mag)}, outside the plausible range ({low:g}, {high:g}) mag"
    if sigma_name is not None:
        slow, shigh = SIGMA_MAG_RANGE
        if not (is_number(sigma) and slow < sigma < shigh):
            return f"{where}.{sigma_name} is {show(sigma)}, outside the plausible range ({slow:g}, {shigh:g}) mag"
    return None


def flux_problem(
    where: str, flux: object, err: object, flux_name: str = "psfFlux", err_name: str = "psfFluxErr"
) -> str | None:
    """Why a difference flux and its error (nJy) are not plausible (None if they are): a finite flux no brighter
    than magnitude ``MAG_RANGE[0]`` and a finite, positive error."""
    if not (is_number(flux) and math.isfinite(flux) and abs(flux) <= FLUX_MAX_NJY):
        return f"{where}.{flux_name} is {show(flux)}, not a finite difference flux within +-{FLUX_MAX_NJY:.3g} nJy"
    if not (is_number(err) and 0.0 < err < math.inf):
        return f"{where}.{err_name} is {show(err)}, not a finite positive flux error"
    return None


def id_problem(where: str, value: object) -> str | None:
    """Why an id is not a positive 64-bit integer (None if it is)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= ID_MAX:
        return None
    return f"{where} is {show(value)}, not a positive 64-bit id"


def object_id_problem(where: str, value: object) -> str | None:
    """Why an object id is not 1-64 printable ASCII characters without spaces (None if it is)."""
    if isinstance(value, str) and OBJECT_ID.fullmatch(value):
        return None
    return f"{where} is {show(value)}, not 1-64 printable ASCII characters without spaces"


def history_size_problem(where: str, entries: object) -> str | None:
    """Why a history array is too long to take (None if it is not)."""
    n = len(entries) if isinstance(entries, list | Sequence) and not isinstance(entries, str | bytes) else 0
    if n <= MAX_HISTORY:
        return None
    return (
        f"{where} has {n} entries, more than the {MAX_HISTORY} one alert may carry (real alerts carry at most a "
        "few thousand): a damaged or hostile packet, not decoded further"
    )


class Dropped:
    """The history points of one alert dropped by the rules: how many, and why (the first ``SHOWN_DROPS``)."""

    __slots__ = ("count", "shown")

    def __init__(self) -> None:
        self.count = 0
        self.shown: list[str] = []

    def add(self, why: str) -> None:
        self.count += 1
        if len(self.shown) < SHOWN_DROPS:
            self.shown.append(why)

    def reason(self) -> str | None:
        """The ``dropped_reason`` of the alert's row (None when nothing was dropped)."""
        if not self.count:
            return None
        more = f"; and {self.count - len(self.shown)} more" if self.count > len(self.shown) else ""
        return "; ".join(self.shown) + more


def cut_reason(reason: str) -> str:
    """A dead letter's reason, cut to ``MAX_REASON_CHARS``."""
    if len(reason) <= MAX_REASON_CHARS:
        return reason
    return reason[: MAX_REASON_CHARS - 20] + f"... ({len(reason)} chars)"
