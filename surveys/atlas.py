"""ATLAS survey adapter: ALeRCE's ATLAS alert packets (``atlas.alert``, schemavsn 0.1) -> the internal tables.

The packets are those of ALeRCE's ATLAS stream, written by ``alercebroker/atlas_realtime`` from ATLAS's
``.ddc`` difference-detection catalogues: one detection per alert, no history, a science and a difference
cutout (61x61 FITS; no template), string ids. The ``candidate`` record has two layouts: the 2021 one (``RA,
Dec, Mag, Dmag, X, Y, Major, Minor, Phi, Det, ChiN, Pvr..Psc, Dup, WPflx, Dflx, candid, mjd``) and the later
one that adds ``filter, pid, isdiffpos, flux, Dflux, rb``. docs/data-model.md ("ATLAS") lists the columns.

What the fields mean (checked on the real alerts in shared/data/atlas; see the tests):

- ``Mag`` is the AB magnitude of the DIFFERENCE-image PSF flux, signed: negative when the difference flux is
  negative (the source is fainter than in ATLAS's reference "wallpaper"). Its sign is that of the flux at the
  centre of the difference stamp in every alert, and ``|Mag|`` matches the stamp's difference flux through
  the header zero point (``MAGZPT``), while the science stamp is 2-4 mag brighter wherever the reference has
  a star. ``Dmag`` is its 1-sigma error. So ``magpsf = |Mag|``, ``sigmapsf = Dmag`` and ``isdiffpos`` = the
  sign of ``Mag``: ZTF's convention, with no reference-source correction possible (``distnr``, ``magnr``,
  ... are null).
- The packet's ``flux`` (uJy) is not a measurement: the producer computes it as
  ``sign(Mag) 10^(-0.4 (|Mag| - 23.9))`` (it adds nothing to ``Mag``) and ``Dflux = flux * Dmag``, 1.0857
  times the true flux error and negative with the flux. Both are kept as they come, as ``atlas_flux`` and
  ``atlas_Dflux``: the shared ``flux``/``flux_err`` are the difference flux in nJy on every survey's points,
  derived from ``magpsf``, ``sigmapsf`` and ``isdiffpos`` as for ZTF (``surveys.columns.difference_flux``;
  ``flux = 1000 * atlas_flux``).
- The packet's ``isdiffpos`` is NOT used: the producer derives it from ``Det == 5`` (ATLAS's negative-
  detection flag), with the values swapped until May 2022 ("t" for negative detections, as in the 2021 sample
  here) and the right way round since. The sign of ``Mag`` is right in every version; the packet's string is
  kept as ``atlas_isdiffpos``.
- ``rb`` is a placeholder: every version of the producer writes 0.0 (no real/bogus model ran), so ``rb`` is
  null for schema 0.1 (the packet's value is kept as ``atlas_rb``); a later version's ``rb`` is taken as is.
- ``WPflx``/``Dflx``: the wallpaper (reference) flux at the position, scaled to the image (ADU), and its
  error.
- ``Major``/``Minor``: the PSF fit's FWHM along its axes in pixels (1.86"/pixel): their geometric mean
  matches the exposure's ``SEEING`` to a few per cent, and is the shared ``fwhm`` column (pixels, as ZTF's).
- ``diffmaglim``: the exposure's 5-sigma limiting magnitude, ``MAG5SIG`` of the difference stamp's FITS
  header (ATLAS's per-exposure limit; the faintest alerts sit at it); null when no stamp carries it.

Ids and bands:

- ``oid`` = ``"ATLAS" + objectId`` (ATLAS object ids are numeric strings; the prefix keeps them apart from
  ZTF's and LSST's). The packet's candid is the string exposure-detection name (``01a59485o0083o_002297``),
  kept as ``atlas_candid``; the int64 ``candid`` every table keys on is the first 8 bytes of its SHA-256 as a
  positive int63 (deterministic, so replays and redeliveries agree; the odds that one collides with another
  survey's id are ~1e-10 per alert against a billion stored ids).
- An ATLAS exposure name is ``<unit><MJD><type><seq><filter>``: ``01a`` (unit 01, camera a), ``59485`` (the
  night's MJD), ``o`` (an object exposure), ``0083`` (the exposure's number in the night) and the FILTER
  LETTER LAST (``o`` here). The band is ``candidate.filter`` when the packet has one (the later layout; the
  producer copies the exposure's FITS ``FILTER``), else that last letter. ALeRCE's producer's own test alert,
  ``01a59897o0020c_000002``, is a ``c`` exposure with an ``o`` after its MJD: the letter after the MJD is the
  exposure type, not the filter.
- Band ids (``fid``, docs/data-model.md): ``c`` (cyan) = 10, ``o`` (orange) = 11; ZTF uses 1-3, LSST 4-9.
- Night: ``features.night.observing_night`` at the longitude of the unit named by the candid's first three
  characters (``ATLAS_UNITS``: Mauna Loa, Haleakala, Sutherland, El Sauce), else ``SITES["atlas"]``.

A record without ``candidate``, ``objectId``, a candid, ``mjd``, ``RA``, ``Dec``, ``Mag`` or ``Dmag``, with a
non-finite or implausible time, magnitude, error or position (``surveys.plausibility``, docs/input-validation.md),
or whose band is not ``c``/``o``, is a dead letter whose reason names the field and value; a writer schema that
is not an ATLAS alert is refused once (cached by its text).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alert_broker.features.night import ATLAS_UNITS, SITES, observing_night
from alert_broker.features.tables import Tables
from alert_broker.surveys.adapter import SurveyInfo
from alert_broker.surveys.avro import collect_names, load_schema, parse_schema, primitive, record_fields
from alert_broker.surveys.columns import column, difference_flux
from alert_broker.surveys.errors import (
    ImplausibleValueError,
    InvalidValueError,
    MissingFieldError,
    PacketError,
    UnknownSchemaError,
)
from alert_broker.surveys.plausibility import (
    MAG_RANGE,
    SIGMA_MAG_RANGE,
    object_id_problem,
    show,
    time_problem,
)

SURVEY = "atlas"
OID_PREFIX = "ATLAS"
SCHEMA_NAME = "atlas.alert"
#: Band id of each ATLAS band (ZTF: 1-3, LSST: 4-9; docs/data-model.md).
FID = {"c": 10, "o": 11}
#: An ATLAS exposure name, optionally followed by ``_`` and the detection's number in it.
EXPOSURE_NAME = re.compile(
    r"^(?P<unit>\d\d[a-z])(?P<mjd>\d{5})(?P<type>[a-z])(?P<seq>\d{4})(?P<filter>[a-z])(?:_\d+)?$"
)
#: Schema versions whose ``rb`` is the producer's placeholder 0.0 (surveys.atlas doc).
PLACEHOLDER_RB_VERSIONS = frozenset({"0.1"})
_STAMP_FIELDS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")
_NUMBER = {"double", "float", "int", "long"}
_TEXT = {"string", "enum"}

# Column kinds as in surveys.columns (``f`` float64, ``i`` Int32, ``l`` Int64, ``s`` string).
#: ATLAS's own candidate fields, kept in ``alerts`` and ``detections``: the union of both layouts (fields a
#: packet lacks are null), so every ATLAS file of the lake has the same columns. Their names are kept, except
#: where the shared model uses the name for something else (``RENAMED``).
ATLAS_FIELDS: tuple[tuple[str, str], ...] = (
    ("Mag", "f"), ("Dmag", "f"), ("flux", "f"), ("Dflux", "f"), ("X", "f"), ("Y", "f"), ("Major", "f"),
    ("Minor", "f"), ("Phi", "f"), ("Det", "i"), ("ChiN", "f"), ("Pvr", "i"), ("Ptr", "i"), ("Pmv", "i"),
    ("Pkn", "i"), ("Pno", "i"), ("Pbn", "i"), ("Pcr", "i"), ("Pxt", "i"), ("Psc", "i"), ("Dup", "i"),
    ("WPflx", "f"), ("Dflx", "f"), ("filter", "s"), ("pid", "l"),
)  # fmt: skip
#: Packet fields whose name the shared columns take (``flux``/``flux_err`` are the difference flux in nJy on
#: every survey's points): the packet's values are kept under these names.
RENAMED = {"flux": "atlas_flux", "Dflux": "atlas_Dflux", "isdiffpos": "atlas_isdiffpos", "rb": "atlas_rb",
           "candid": "atlas_candid"}  # fmt: skip
#: Avro types each candidate field may have in a writer schema (2021 layout: doubles where later ones have
#: ints); checked once per schema so that no packet can break a batch's columns.
_FIELD_TYPES: dict[str, set[str]] = {
    **{name: {"s": _TEXT, "l": {"int", "long"}}.get(kind, _NUMBER) for name, kind in ATLAS_FIELDS},
    "mjd": _NUMBER, "RA": _NUMBER, "Dec": _NUMBER, "rb": _NUMBER, "isdiffpos": _TEXT,
    "candid": {"string", "long", "int"},
}  # fmt: skip
#: What every ATLAS alert's candidate must carry.
REQUIRED_CANDIDATE = ("mjd", "RA", "Dec", "Mag", "Dmag")
#: ZTF's reference-source columns the shared science reads: null for ATLAS (no ZTF-style correction).
REFERENCE_COLUMNS = ("distnr", "magnr", "sigmagnr", "chinr", "sharpnr", "sgscore1", "distpsnr1")
_INT32 = (-(2**31), 2**31 - 1)


# ------------------------------------------------------------------------------------------- schemas
@dataclass(frozen=True, slots=True)
class AtlasSchema:
    """What we learnt about one ATLAS writer schema (cached by its text)."""

    parsed: object  # fastavro's parsed writer schema
    schema: dict  # the writer schema (JSON)
    candidate_fields: frozenset[str]


def _full_name(schema: dict) -> str:
    name = str(schema.get("name", ""))
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _candidate_fields(schema: dict) -> dict[str, object] | None:
    names: dict[str, dict] = {}
    collect_names(schema, names)
    for f in schema.get("fields", ()):
        if isinstance(f, dict) and f.get("name") == "candidate":
            return record_fields(f.get("type"), names)
    return None


def recognises(schema: object) -> bool:
    """An ATLAS alert schema: named ``atlas.alert``, or a record whose ``candidate`` record has ATLAS's
    capitalised ``RA``, ``Dec`` and ``Mag`` (ZTF's candidate has ``ra``, ``dec``, ``magpsf``; LSST's alerts
    have no candidate)."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return False
    if _full_name(schema) == SCHEMA_NAME:
        return True
    candidate = _candidate_fields(schema)
    return candidate is not None and {"RA", "Dec", "Mag"} <= set(candidate)


def analyse_schema(text: bytes) -> AtlasSchema:
    """What an ATLAS writer schema holds, or the PacketError saying why it is no ATLAS alert we can map."""
    schema = load_schema(text)
    if not recognises(schema):
        raise UnknownSchemaError(
            "unknown schema: neither named atlas.alert nor a record whose candidate has RA, Dec and Mag; "
            "not an ATLAS alert"
        )
    names: dict[str, dict] = {}
    collect_names(schema, names)
    top = {f["name"]: f["type"] for f in schema.get("fields", ()) if isinstance(f, dict) and "name" in f}
    if "candidate" not in top:
        raise MissingFieldError("missing required field candidate (the writer schema has no such field)")
    candidate = record_fields(top["candidate"], names)
    if candidate is None:
        raise UnknownSchemaError("unknown schema: the ATLAS alert's candidate is not a record")
    if "objectId" not in top:
        raise MissingFieldError("missing required field objectId (the writer schema has no such field)")
    if "candid" not in top and "candid" not in candidate:
        raise MissingFieldError("missing required field candid (neither the alert nor its candidate has one)")
    for name in REQUIRED_CANDIDATE:
        if name not in candidate:
            raise MissingFieldError(
                f"missing required field candidate.{name} (the writer schema has no such field)"
            )
    checks = [("candidate", name, avro_type) for name, avro_type in candidate.items()]
    checks += [("alert", name, top[name]) for name in ("objectId", "candid") if name in top]
    for where, name, avro_type in checks:
        accepted = _FIELD_TYPES.get(name, {"string", "long", "int"} if name == "objectId" else None)
        if accepted is not None and primitive(_real_type(avro_type, names)) not in accepted:
            raise UnknownSchemaError(
                f"unknown schema: {where}.{name} has Avro type {json.dumps(avro_type)}, where ATLAS alerts "
                f"carry {' or '.join(sorted(accepted))}; not an ATLAS alert schema we can map"
            )
    return AtlasSchema(parsed=parse_schema(schema), schema=schema, candidate_fields=frozenset(candidate))


def _real_type(avro_type: object, names: dict[str, dict]) -> object:
    """A field's type without ``null``, named references resolved (``record_fields`` does this for the
    candidate's fields already; the top-level ``objectId`` and ``candid`` need it)."""
    if isinstance(avro_type, list):
        real = [t for t in avro_type if t != "null"]
        if len(real) == 1:
            avro_type = real[0]
    return names.get(avro_type, avro_type) if isinstance(avro_type, str) else avro_type


_CACHE: dict[bytes, AtlasSchema | PacketError] = {}
_CACHE_MAX = 64


def schema_info(text: bytes) -> AtlasSchema:
    """The analysed writer schema (cached by its text); raises the schema's PacketError if unusable."""
    info = _CACHE.get(text)
    if info is None:
        try:
            info = analyse_schema(text)
        except PacketError as err:
            info = err
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[text] = info
    if isinstance(info, PacketError):
        raise type(info)(str(info))
    return info


# ------------------------------------------------------------------------------------- ids and bands
def candid_id(name: str) -> int:
    """The int64 key of an ATLAS string candid: the first 8 bytes of its SHA-256, as a positive int63."""
    value = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") & (2**63 - 1)
    return value or 1


def exposure_parts(candid: str) -> dict[str, str] | None:
    """``unit, mjd, type, seq, filter`` of an ATLAS exposure (or detection) name, or None if it is not one."""
    m = EXPOSURE_NAME.match(candid)
    return m.groupdict() if m is not None else None


def unit_longitude(candid: str) -> float:
    """East longitude of the ATLAS unit that took the exposure (``SITES["atlas"]`` for an unknown unit)."""
    return ATLAS_UNITS.get(candid[:3], SITES[SURVEY])


def nights(mjd: np.ndarray, candids: list[str]) -> np.ndarray:
    """The observing night of each detection, at the longitude of its unit."""
    mjd = np.asarray(mjd, dtype=np.float64)
    out = np.empty(len(mjd), dtype=np.int32)
    longitudes = np.array([unit_longitude(c) for c in candids], dtype=np.float64)
    for lon in np.unique(longitudes):
        at = longitudes == lon
        out[at] = observing_night(mjd[at], float(lon))
    return out


def _band(filter_value: object, candid: str) -> str:
    if filter_value is not None:
        if filter_value not in FID:
            raise InvalidValueError(
                f"candidate.filter is {filter_value!r}; ATLAS alert bands are c (cyan) and o (orange)"
            )
        return str(filter_value)
    parts = exposure_parts(candid)
    if parts is None:
        raise InvalidValueError(
            f"candid {candid!r} is not an ATLAS exposure name (like 01a59485o0083o_002297) and the packet "
            "has no candidate.filter: the band cannot be told"
        )
    if parts["filter"] not in FID:
        raise InvalidValueError(
            f"candid {candid!r} names filter {parts['filter']!r} (the exposure name's last letter); ATLAS "
            "alert bands are c (cyan) and o (orange)"
        )
    return parts["filter"]


# ------------------------------------------------------------------------------------------- stamps
_FITS_BLOCK = 2880
_HEADER_MAX = _FITS_BLOCK * 64
_END_CARD = b"END" + b" " * 77


def _card_index(head: bytes, prefix: bytes) -> int:
    """Offset of the first 80-byte card of ``head`` starting with ``prefix`` (-1 if none)."""
    at = head.find(prefix)
    while at >= 0 and at % 80:
        at = head.find(prefix, at + 1)
    return at


def fits_header_number(stamp: bytes | None, key: str) -> float | None:
    """A numeric keyword of a cutout's primary FITS header (plain or gzipped), or None."""
    if not stamp:
        return None
    head = stamp[:_HEADER_MAX]
    if head[:2] == b"\x1f\x8b":
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(stamp, _HEADER_MAX)
        except zlib.error:
            return None
    if not head.startswith(b"SIMPLE  ="):
        return None
    at = _card_index(head, key.encode("ascii").ljust(8) + b"=")
    end = _card_index(head, _END_CARD)
    if at < 0 or (0 <= end < at):
        return None
    try:
        value = float(head[at + 10 : at + 80].split(b"/", 1)[0])
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# -------------------------------------------------------------------------------------------- alerts
@dataclass(frozen=True, slots=True)
class AtlasAlert:
    """One validated ATLAS alert."""

    oid: str
    candid: int
    atlas_candid: str
    schemavsn: str | None
    publisher: str | None
    candidate: dict
    band: str
    diffmaglim: float | None
    stamps: tuple[bytes | None, bytes | None, bytes | None]


def _candid_string(top: object, inner: object) -> str:
    values = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in (top, inner)]
    top_s, inner_s = values
    if top_s is not None and inner_s is not None and top_s != inner_s:
        raise InvalidValueError(
            f"candid {top_s!r} disagrees with candidate.candid {inner_s!r}: a damaged packet"
        )
    name = top_s if top_s is not None else inner_s
    if not isinstance(name, str) or not name.strip():
        got = "null in this packet" if name is None else f"got {show(name)}"
        raise MissingFieldError(f"missing required field candid ({got})")
    return name


def _finite(cand: dict, name: str) -> float:
    value = cand[name]
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidValueError(
            f"candidate.{name} is {show(value)}: an ATLAS detection needs a finite {name}"
        )
    return float(value)


def _implausible(problem: str) -> ImplausibleValueError:
    return ImplausibleValueError(f"{problem}: the alert is not used (docs/input-validation.md)")


def _check_values(cand: dict) -> None:
    """The plausibility rules (docs/input-validation.md): finite values, a time in ATLAS's era, a position on
    the sky, a difference magnitude |Mag| and its error Dmag in their plausible ranges."""
    mjd, ra, dec, mag, dmag = (_finite(cand, name) for name in ("mjd", "RA", "Dec", "Mag", "Dmag"))
    if problem := time_problem("candidate.mjd", mjd, SURVEY):
        raise _implausible(problem)
    if not 0.0 <= ra < 360.0:
        raise _implausible(f"candidate.RA is {show(cand['RA'])}, outside [0, 360) degrees")
    if not -90.0 <= dec <= 90.0:
        raise _implausible(f"candidate.Dec is {show(cand['Dec'])}, outside [-90, 90] degrees")
    low, high = MAG_RANGE
    if not low < abs(mag) < high:
        raise _implausible(
            f"candidate.Mag is {show(cand['Mag'])}: |Mag| outside the plausible range ({low:g}, {high:g}) mag"
        )
    slow, shigh = SIGMA_MAG_RANGE
    if not slow < dmag < shigh:
        raise _implausible(
            f"candidate.Dmag is {show(cand['Dmag'])}, outside the plausible range ({slow:g}, {shigh:g}) mag"
        )


def extract_alert(record: dict, info: AtlasSchema) -> AtlasAlert:  # noqa: ARG001 - schema checked once
    """Validate one ATLAS alert record, or raise the reason it is unusable."""
    cand = record.get("candidate")
    if not isinstance(cand, dict):
        raise MissingFieldError("missing required field candidate (null in this packet)")
    object_id = record.get("objectId")
    if isinstance(object_id, int) and not isinstance(object_id, bool):
        object_id = str(object_id)
    if not isinstance(object_id, str) or not object_id.strip():
        got = "null in this packet" if object_id is None else f"got {show(object_id)}"
        raise MissingFieldError(f"missing required field objectId ({got})")
    if problem := object_id_problem("objectId", object_id.strip()):
        raise InvalidValueError(problem)
    name = _candid_string(record.get("candid"), cand.get("candid"))
    for field in REQUIRED_CANDIDATE:
        if cand.get(field) is None:
            raise MissingFieldError(f"missing required field candidate.{field} (null in this packet)")
    _check_values(cand)
    band = _band(cand.get("filter"), name)
    stamps = tuple(
        s.get("stampData") if isinstance(s := record.get(field), dict) else None for field in _STAMP_FIELDS
    )
    stamps = tuple(bytes(s) if isinstance(s, bytes | bytearray) and s else None for s in stamps)
    limit = fits_header_number(stamps[2], "MAG5SIG")
    if limit is None:
        limit = fits_header_number(stamps[0], "MAG5SIG")
    schemavsn = record.get("schemavsn")
    publisher = record.get("publisher")
    return AtlasAlert(
        oid=f"{OID_PREFIX}{object_id.strip()}",
        candid=candid_id(name),
        atlas_candid=name,
        schemavsn=schemavsn if isinstance(schemavsn, str) else None,
        publisher=publisher if isinstance(publisher, str) else None,
        candidate=cand,
        band=band,
        diffmaglim=limit,
        stamps=stamps,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------------------------------- columns
def _whole(value: object) -> object:
    """An integer field's value as an int (the 2021 layout writes doubles), None if not a whole number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if _INT32[0] <= value <= _INT32[1] else None
    if isinstance(value, float) and value.is_integer() and _INT32[0] <= value <= _INT32[1]:
        return int(value)
    return None


def _field_column(rows: list[dict], name: str, kind: str):
    values = [r.get(name) for r in rows]
    if kind == "i":
        return column([_whole(v) for v in values], "i")
    if kind == "l":
        return column([v if isinstance(v, int) and not isinstance(v, bool) else None for v in values], "l")
    if kind == "s":
        return column([v if isinstance(v, str) else None for v in values], "s")
    return column(
        [float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None for v in values], "f"
    )


class AtlasBatch:
    """Accumulates validated ATLAS alerts of one batch and builds the internal tables from them."""

    def __init__(self) -> None:
        self.alerts: list[AtlasAlert] = []
        self._candids: set[int] = set()
        self._provenance: list[tuple[str, int, int]] = []
        self._raw: list[bytes] = []

    def __len__(self) -> int:
        return len(self.alerts)

    def add(self, alert: AtlasAlert, source: str, partition: int, offset: int, raw_payload: bytes) -> bool:
        if alert.candid in self._candids:
            return False
        self._candids.add(alert.candid)
        self.alerts.append(alert)
        self._provenance.append((source, partition, offset))
        self._raw.append(raw_payload)
        return True

    # -- tables
    def tables(self, batch_id: str) -> Tables:
        return Tables(
            alerts=self.alerts_frame(batch_id),
            detections=self.detections_frame(),
            non_detections=self.non_detections_frame(),
            forced_photometry=self.forced_frame(),
            stamps=self.stamps_frame(),
            survey_objects=self._carrier_frame(),
            solar_system=self._carrier_frame(),
        )

    def _shared(self) -> dict[str, object]:
        """The columns the shared science reads, in ZTF's convention (see the module doc)."""
        alerts = self.alerts
        rows = [a.candidate for a in alerts]
        n = len(rows)
        mag = column([float(r["Mag"]) for r in rows], "f")
        mjd = column([float(r["mjd"]) for r in rows], "f")
        bands = [a.band for a in alerts]
        rb = [None if a.schemavsn in PLACEHOLDER_RB_VERSIONS else a.candidate.get("rb") for a in alerts]
        with np.errstate(invalid="ignore"):
            fwhm = np.sqrt(_field_column(rows, "Major", "f") * _field_column(rows, "Minor", "f"))
        sigma = column([float(r["Dmag"]) for r in rows], "f")
        sign = np.where(mag < 0, -1, 1).astype(np.int8)
        flux, flux_err = difference_flux(np.abs(mag), sigma, sign)
        return {
            "oid": column([a.oid for a in alerts], "s"),
            "candid": column([a.candid for a in alerts], "q"),
            "survey": column([SURVEY] * n, "s"),
            "mjd": mjd,
            "night": nights(mjd, [a.atlas_candid for a in alerts]),
            "fid": np.array([FID[b] for b in bands], dtype=np.int16),
            "band": column(bands, "s"),
            "ra": column([float(r["RA"]) for r in rows], "f"),
            "dec": column([float(r["Dec"]) for r in rows], "f"),
            "magpsf": np.abs(mag),
            "sigmapsf": sigma,
            "isdiffpos": sign,
            "diffmaglim": column([a.diffmaglim for a in alerts], "f"),
            "rb": _field_column([{"rb": v} for v in rb], "rb", "f"),
            "flux": flux,
            "flux_err": flux_err,
            "fwhm": fwhm,
            "atlas_candid": column([a.atlas_candid for a in alerts], "s"),
        }

    def _own(self) -> dict[str, object]:
        """ATLAS's own candidate fields (the fixed union of both layouts) and the packet's raw flags."""
        rows = [a.candidate for a in self.alerts]
        cols = {RENAMED.get(name, name): _field_column(rows, name, kind) for name, kind in ATLAS_FIELDS}
        cols[RENAMED["isdiffpos"]] = _field_column(rows, "isdiffpos", "s")
        cols[RENAMED["rb"]] = _field_column(rows, "rb", "f")
        return cols

    def alerts_frame(self, batch_id: str) -> pd.DataFrame:
        n = len(self.alerts)
        shared = self._shared()
        cols: dict[str, object] = {
            **{k: shared[k] for k in ("oid", "candid", "survey")},
            "schemavsn": column([a.schemavsn for a in self.alerts], "s"),
            **{k: v for k, v in shared.items() if k not in ("oid", "candid", "survey")},
            "publisher": column([a.publisher for a in self.alerts], "s"),
            **self._own(),
            # one detection per alert, no history: nothing is ever dropped (the columns every survey has)
            "dropped_points": np.zeros(n, dtype=np.int32),
            "dropped_reason": column([None] * n, "s"),
            "source": column([p[0] for p in self._provenance], "s"),
            "partition": np.array([p[1] for p in self._provenance], dtype=np.int32),
            "offset": np.array([p[2] for p in self._provenance], dtype=np.int64),
            "batch_id": column([batch_id] * n, "s"),
        }
        return pd.DataFrame(cols)

    def detections_frame(self) -> pd.DataFrame:
        n = len(self.alerts)
        cols = self._shared()
        for name in REFERENCE_COLUMNS:
            cols[name] = np.full(n, np.nan)
        cols["rfid"] = column([None] * n, "l")
        cols.update(self._own())
        cols["parent_candid"] = column([a.candid for a in self.alerts], "q")
        cols["has_stamp"] = np.ones(n, dtype=bool)
        return pd.DataFrame(cols)

    def non_detections_frame(self) -> pd.DataFrame:
        """ATLAS alerts carry no history: always empty (with the table's columns)."""
        return pd.DataFrame(
            {
                "oid": column([], "s"),
                "survey": column([], "s"),
                "fid": np.array([], dtype=np.int16),
                "mjd": np.array([], dtype=np.float64),
                "night": np.array([], dtype=np.int32),
                "diffmaglim": np.array([], dtype=np.float64),
            }
        )

    def forced_frame(self) -> pd.DataFrame:
        """ATLAS alerts carry no forced photometry: always empty (with the key columns)."""
        return pd.DataFrame(
            {
                "oid": column([], "s"),
                "survey": column([], "s"),
                "parent_candid": np.array([], dtype=np.int64),
                "mjd": np.array([], dtype=np.float64),
                "night": np.array([], dtype=np.int32),
                "pid": column([], "l"),
                "fid": np.array([], dtype=np.int16),
            }
        )

    def _carrier_frame(self) -> pd.DataFrame:
        """``survey_objects`` / ``solar_system``: ATLAS alerts carry neither (empty, LSST's key columns)."""
        return pd.DataFrame(
            {
                "oid": column([], "s"),
                "candid": np.array([], dtype=np.int64),
                "survey": column([], "s"),
                "mjd": np.array([], dtype=np.float64),
                "night": np.array([], dtype=np.int32),
            }
        )

    def stamps_frame(self) -> pd.DataFrame:
        def stamp(i: int) -> np.ndarray:
            out = np.empty(len(self.alerts), dtype=object)
            out[:] = [a.stamps[i] for a in self.alerts]
            return out

        return pd.DataFrame(
            {
                "oid": column([a.oid for a in self.alerts], "s"),
                "candid": column([a.candid for a in self.alerts], "q"),
                "cutout_science": stamp(0),
                "cutout_template": stamp(1),
                "cutout_difference": stamp(2),
            }
        )

    def raw_frame(self, nights: np.ndarray) -> pd.DataFrame:
        payload = np.empty(len(self._raw), dtype=object)
        payload[:] = self._raw
        return pd.DataFrame(
            {
                "candid": column([a.candid for a in self.alerts], "q"),
                "oid": column([a.oid for a in self.alerts], "s"),
                "night": np.asarray(nights, dtype=np.int32),
                "payload": payload,
            }
        )


INFO = SurveyInfo(
    name=SURVEY,
    id_types={
        "oid": "string (ATLAS + objectId)",
        "candid": "int64 (SHA-256 of atlas_candid)",
        "atlas_candid": "string (exposure_detection)",
    },
    bands={fid: band for band, fid in FID.items()},
    photometry="magnitude",
    longitude_deg=SITES[SURVEY],
    schema_versions=("0.1",),
)


class AtlasAdapter:
    """ATLAS as a ``SurveyAdapter``."""

    info = INFO

    def recognises(self, schema: object) -> bool:
        return recognises(schema)

    def analyse(self, text: bytes) -> AtlasSchema:
        return schema_info(text)

    def schema_for_id(self, schema_id: int) -> AtlasSchema | None:  # noqa: ARG002 - ATLAS sends containers
        return None

    def extract(self, record: dict, schema: AtlasSchema) -> AtlasAlert:
        return extract_alert(record, schema)

    def new_batch(self) -> AtlasBatch:
        return AtlasBatch()


ATLAS = AtlasAdapter()
