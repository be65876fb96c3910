"""LSST (Rubin) survey adapter: ``lsst.alert`` packets of every published schema version -> the internal tables.

Rubin alerts report DIFFERENCE FLUXES (``psfFlux``, nJy, negative when the source faded below the template) in
six bands, with the alert's own ``diaSource``, up to twelve months of earlier detections (``prvDiaSources``),
forced photometry at every visit since 30 days before the first detection (``prvDiaForcedSources``), the
``diaObject`` summary, ``ssSource``/``MPCORB`` (``mpc_orbits`` from 10.0) for solar-system objects, and three
cutouts. The internal tables keep that nature (docs/data-model.md, "LSST"):

- ``detections``: ``diaSource`` + ``prvDiaSources``; fluxes kept always (``psfFlux``, ``psfFluxErr``,
  ``scienceFlux``, ``scienceFluxErr``), ids as int64 (``candid`` = ``diaSourceId``, ``diaObjectId``), band
  ``u g r i z y`` (``fid`` 4..9), ``rb`` = ``reliability``. The columns the shared science reads are derived
  in ZTF's convention: ``magpsf``/``sigmapsf`` = the AB magnitude of ``|psfFlux|`` and its error, ``isdiffpos``
  = the sign of ``psfFlux``, ``diffmaglim`` = the 5-sigma limit from ``psfFluxErr``; ZTF's reference-source
  columns are null (there is no ZTF-style correction: the apparent magnitude comes from ``scienceFlux``).
- ``forced_photometry``: ``prvDiaForcedSources`` (``pid`` = ``diaForcedSourceId``).
- ``non_detections``: schema 7.x's ``prvDiaNondetectionLimits`` (5-sigma limit from ``diaNoise``).
- ``survey_objects``: the ``diaObject`` summary carried by each alert; ``solar_system``: ``ssSource`` and the
  MPC orbit of solar-system alerts.
- ``alerts``: every scalar field of the alert's ``diaSource`` (the union over all known schema versions, so
  every LSST file of the lake has the same columns), plus the derived columns above.

Object ids: ``oid`` = ``"LSST" + diaObjectId`` (``"LSSTSSO" + ssObjectId`` for a solar-system source without a
diaObject), so ids never collide with ZTF's or ATLAS's. Observing night: the site-local evening at Cerro Pachon.

Versions: every ``lsst.vM_m.alert`` schema lsst-alert-packet ships (7.0 to the newest) is known; a container's
version comes from its schema name, or (Fink's re-serialised ``topLevelRecord`` containers, extra fields and
all) from the field set of its ``diaSource``; a wire-format message's from its schema id (``M * 100 + m``).
An unknown version or schema id is a dead letter whose reason names it.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import fastavro
import lsst.alert.packet as lsst_packet
import numpy as np
import pandas as pd

from alert_broker.features.night import SITES
from alert_broker.features.tables import Tables
from alert_broker.surveys.adapter import SurveyInfo
from alert_broker.surveys.avro import collect_names, load_schema, parse_schema, record_fields, unwrap
from alert_broker.surveys.columns import KIND_OF_AVRO, column, lenient_column
from alert_broker.surveys.errors import (
    ImplausibleValueError,
    InvalidValueError,
    MissingFieldError,
    OversizeError,
    UnknownSchemaError,
)
from alert_broker.surveys.plausibility import (
    ERA_START_MJD,
    FLUX_MAX_NJY,
    MJD_END,
    Dropped,
    flux_problem,
    history_size_problem,
    id_problem,
    is_number,
    position_problem,
    show,
    time_problem,
)

SURVEY = "lsst"
OID_PREFIX = "LSST"
SSO_PREFIX = "LSSTSSO"
BANDS = ("u", "g", "r", "i", "z", "y")
#: Band id of each LSST band (ZTF uses 1-3; docs/data-model.md).
FID = {b: 4 + i for i, b in enumerate(BANDS)}
#: AB magnitude of a flux in nJy: m = 31.4 - 2.5 log10(f / nJy).
AB_ZERO_POINT_NJY = 31.4
_MAG_PER_LN = 2.5 / math.log(10.0)
_STAMP_FIELDS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")
_REQUIRED_SOURCE = ("diaSourceId", "midpointMjdTai", "ra", "dec", "band", "psfFlux", "psfFluxErr")
_SCHEMA_ROOT = Path(os.path.dirname(lsst_packet.__file__)) / "schema"
_NAME = re.compile(r"lsst\.v(\d+)_(\d+)\.alert$")
#: The oldest schema major version the broker maps (the first of LSSTCam's commissioning alerts).
OLDEST_MAJOR = 7
#: The history arrays of an alert (each capped at ``plausibility.MAX_HISTORY`` entries).
HISTORY_FIELDS = ("prvDiaSources", "prvDiaForcedSources", "prvDiaNondetectionLimits")
_MJD_START = ERA_START_MJD[SURVEY]


# ------------------------------------------------------------------------------------- known versions
@dataclass(frozen=True)
class PackagedSchema:
    """One ``lsst.vM_m`` alert schema shipped by lsst-alert-packet, and the field kinds of its records."""

    version: tuple[int, int]
    schema: dict
    source_fields: frozenset[str]
    alert_fields: frozenset[str]

    @property
    def name(self) -> str:
        return f"lsst.v{self.version[0]}_{self.version[1]}"

    @property
    def schema_id(self) -> int:
        return self.version[0] * 100 + self.version[1]


def _kinds(fields: dict[str, object] | None) -> dict[str, str]:
    """Column kinds of a record's scalar fields (records, arrays and bytes left out)."""
    out = {}
    for name, avro_type in (fields or {}).items():
        t = avro_type.get("type") if isinstance(avro_type, dict) else avro_type
        logical = avro_type.get("logicalType", "") if isinstance(avro_type, dict) else ""
        kind = KIND_OF_AVRO.get(t) if isinstance(t, str) else None
        if kind is not None and str(logical).startswith("timestamp"):
            kind = "T"
        if kind is not None:
            out[name] = kind
    return out


def _sub_records(schema: dict) -> dict[str, dict[str, object] | None]:
    """The field maps of an alert schema's sub-records (diaSource, diaObject, forced sources, ...)."""
    names: dict[str, dict] = {}
    collect_names(schema, names)
    top = {f["name"]: f["type"] for f in schema.get("fields", ())}
    out: dict[str, dict[str, object] | None] = {}
    for field in ("diaSource", "diaObject", "ssSource", "ssObject", "MPCORB", "mpc_orbits"):
        out[field] = record_fields(top[field], names) if field in top else None
    for field in ("prvDiaSources", "prvDiaForcedSources", "prvDiaNondetectionLimits"):
        item = None
        if field in top:
            t = unwrap(top[field], names)
            if isinstance(t, dict) and t.get("type") == "array":
                item = record_fields(t.get("items"), names)
        out[field] = item
    return out


@functools.cache
def packaged_schemas() -> dict[tuple[int, int], PackagedSchema]:
    """Every alert schema version lsst-alert-packet ships, by (major, minor)."""
    out = {}
    for path in sorted(_SCHEMA_ROOT.glob("*/*/lsst.v*_*.alert.avsc")):
        m = re.search(r"lsst\.v(\d+)_(\d+)\.alert\.avsc$", path.name)
        if m is None:
            continue
        version = (int(m.group(1)), int(m.group(2)))
        if version[0] < OLDEST_MAJOR:
            continue
        schema = fastavro.schema.load_schema(str(path), _write_hint=False)
        subs = _sub_records(schema)
        out[version] = PackagedSchema(
            version,
            schema,
            frozenset(subs["diaSource"] or ()),
            frozenset(f["name"] for f in schema["fields"]),
        )
    return dict(sorted(out.items()))


def known_versions() -> str:
    versions = list(packaged_schemas())
    return ", ".join(f"{a}.{b}" for a, b in versions)


@functools.cache
def field_kinds() -> dict[str, dict[str, str]]:
    """For each sub-record, the kinds of the union of its scalar fields over every known version (newest
    version's kind wins), so every LSST file of the lake has the same columns whatever versions it holds."""
    out: dict[str, dict[str, str]] = {}
    for packaged in packaged_schemas().values():
        for name, fields in _sub_records(packaged.schema).items():
            out.setdefault(name, {}).update(_kinds(fields))
    return out


# ------------------------------------------------------------------------------------------- schemas
@dataclass(frozen=True, slots=True)
class LsstSchema:
    """What we learnt about one LSST writer schema (cached by its text)."""

    parsed: object  # fastavro's parsed writer schema
    version: tuple[int, int]
    schema: dict  # the writer schema (JSON), for re-encoding single alerts


def _version_of(schema: dict) -> tuple[int, int]:
    name = str(schema.get("name", ""))
    m = _NAME.search(name if "." in name else f"{schema.get('namespace', '')}.{name}")
    known = packaged_schemas()
    if m is not None:
        version = (int(m.group(1)), int(m.group(2)))
        if version[0] < OLDEST_MAJOR:
            raise UnknownSchemaError(
                f"unknown schema: LSST alert schema version {version[0]}.{version[1]} ({name}) predates "
                f"{OLDEST_MAJOR}.0, the oldest version the broker maps (pre-survey simulated alerts)"
            )
        if version not in known:
            raise UnknownSchemaError(
                f"unknown schema: LSST alert schema version {version[0]}.{version[1]} ({name}) is not one the "
                f"broker knows (known: {known_versions()}); upgrade lsst-alert-packet and the broker"
            )
        return version
    # a re-serialised container (Fink's topLevelRecord, extra fields): the diaSource field set names the version
    source = set(_sub_records(schema)["diaSource"] or ())
    top = {f["name"] for f in schema.get("fields", ())}
    best = [v for v, p in known.items() if p.source_fields == source]
    if len(best) > 1:  # equal diaSource in several versions: the alert-level fields tell them apart
        exact = [v for v in best if known[v].alert_fields <= top]
        best = [max(exact or best, key=lambda v: len(known[v].alert_fields & top))]
    if not best:
        raise UnknownSchemaError(
            f"unknown schema: an LSST alert whose diaSource has {len(source)} fields matching no lsst.alert "
            f"version the broker knows (known: {known_versions()})"
        )
    return best[0]


def analyse_schema(text: bytes) -> LsstSchema:
    """What an LSST writer schema holds, or the PacketError saying why it cannot be mapped."""
    schema = load_schema(text)
    if not recognises(schema):
        raise UnknownSchemaError("unknown schema: no 'diaSource' record; not an LSST alert")
    version = _version_of(schema)
    return LsstSchema(parsed=parse_schema(schema), version=version, schema=schema)


_CACHE: dict[bytes, LsstSchema | Exception] = {}


def schema_info(text: bytes) -> LsstSchema:
    info = _CACHE.get(text)
    if info is None:
        try:
            info = analyse_schema(text)
        except (UnknownSchemaError, MissingFieldError, InvalidValueError) as err:
            info = err
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[text] = info
    if isinstance(info, Exception):
        raise type(info)(str(info))
    return info


@functools.cache
def schema_for_id(schema_id: int) -> LsstSchema | None:
    """The packaged schema of a Rubin schema-registry id (``major * 100 + minor``), or None."""
    for packaged in packaged_schemas().values():
        if packaged.schema_id == schema_id:
            return LsstSchema(parse_schema(packaged.schema), packaged.version, packaged.schema)
    return None


def recognises(schema: object) -> bool:
    """An LSST alert schema: a record with a ``diaSource`` record field."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return False
    return any(isinstance(f, dict) and f.get("name") == "diaSource" for f in schema.get("fields", ()))


# -------------------------------------------------------------------------------------------- alerts
@dataclass(frozen=True, slots=True)
class LsstAlert:
    oid: str
    candid: int
    version: str
    source: dict
    previous: list[dict]
    forced: list[dict]
    limits: list[dict]
    dia_object: dict | None
    solar_system: dict | None
    stamps: tuple[bytes | None, bytes | None, bytes | None]
    dropped: int = 0  # history points dropped by the plausibility rules
    dropped_reason: str | None = None  # the first few, field and value


def _present(record: object) -> dict | None:
    """A sub-record, or None when absent or all-null (Fink writes all-null ssSource records)."""
    if not isinstance(record, dict) or all(v is None for v in record.values()):
        return None
    return record


def _check_source(src: object, where: str) -> dict:
    """A diaSource's structure: the required fields, a positive id, a finite time, a known band."""
    if not isinstance(src, dict):
        raise MissingFieldError(f"missing required field {where} (null in this packet)")
    for name in _REQUIRED_SOURCE:
        if src.get(name) is None:
            raise MissingFieldError(f"missing required field {where}.{name} (null in this packet)")
    if problem := id_problem(f"{where}.diaSourceId", src["diaSourceId"]):
        raise InvalidValueError(problem)
    t = src["midpointMjdTai"]
    if not is_number(t) or not math.isfinite(t):
        raise InvalidValueError(f"{where}.midpointMjdTai is {show(t)}: a detection needs a finite time")
    band = src["band"]
    if not isinstance(band, str) or band not in FID:
        raise InvalidValueError(f"{where}.band is {show(band)}; LSST bands are {', '.join(BANDS)}")
    return src


def _source_problem(src: dict, where: str) -> str | None:
    """Why a diaSource's values are implausible (None if they are plausible): time in Rubin's era, a position
    on the sky, a finite difference flux no brighter than magnitude 5, a finite positive flux error."""
    t, ra, dec, flux, err = src["midpointMjdTai"], src["ra"], src["dec"], src["psfFlux"], src["psfFluxErr"]
    try:
        if (
            _MJD_START <= t < MJD_END
            and 0.0 <= ra < 360.0
            and -90.0 <= dec <= 90.0
            and -FLUX_MAX_NJY <= flux <= FLUX_MAX_NJY
            and 0.0 < err < math.inf
        ):
            return None
    except TypeError:  # a field of another type (a re-serialised schema): named below
        pass
    return (
        time_problem(f"{where}.midpointMjdTai", t, SURVEY)
        or position_problem(where, ra, dec)
        or flux_problem(where, flux, err)
        or f"{where}: a value of the wrong type"
    )


def _forced_problem(f: dict, where: str) -> str | None:
    """Why a forced-photometry point is dropped (None if it is kept): time, flux and error as a diaSource's;
    its position, when it has one, on the sky."""
    t, flux, err = f["midpointMjdTai"], f.get("psfFlux"), f.get("psfFluxErr")
    ra, dec = f.get("ra"), f.get("dec")
    try:
        if (
            _MJD_START <= t < MJD_END
            and -FLUX_MAX_NJY <= flux <= FLUX_MAX_NJY
            and 0.0 < err < math.inf
            and (ra is None or 0.0 <= ra < 360.0)
            and (dec is None or -90.0 <= dec <= 90.0)
        ):
            return None
    except TypeError:
        pass
    return (
        (time_problem(f"{where}.midpointMjdTai", t, SURVEY) if is_number(t) else None)
        or flux_problem(where, flux, err)
        or (position_problem(where, ra, dec) if ra is not None and dec is not None else None)
        or f"{where}: a value of the wrong type"
    )


def _limit_problem(lim: object, where: str) -> str | None:
    """Why a 7.x non-detection limit is dropped (None if it is kept): a time in Rubin's era, a known band and
    a finite positive noise (``diaNoise``, nJy)."""
    if not isinstance(lim, dict):
        return f"{where} is {show(lim)}, not a record"
    t, band, noise = lim.get("midpointMjdTai"), lim.get("band"), lim.get("diaNoise")
    if not (isinstance(band, str) and band in FID):
        return f"{where}.band is {show(band)}, not an LSST band"
    if not (is_number(t) and _MJD_START <= t < MJD_END):
        return (
            time_problem(f"{where}.midpointMjdTai", t, SURVEY)
            if is_number(t)
            else f"{where}.midpointMjdTai is {show(t)}"
        )
    if not (is_number(noise) and 0.0 < noise < math.inf):
        return f"{where}.diaNoise is {show(noise)}, not a finite positive noise"
    return None


def _object_id(src: dict, dia_object: dict | None) -> str:
    dia = src.get("diaObjectId") or (dia_object or {}).get("diaObjectId")
    if isinstance(dia, int) and dia > 0:
        return f"{OID_PREFIX}{dia}"
    sso = src.get("ssObjectId")
    if isinstance(sso, int) and sso > 0:
        return f"{SSO_PREFIX}{sso}"
    raise MissingFieldError(
        "missing required field diaSource.diaObjectId (and no ssObjectId): the detection belongs to no object"
    )


def extract_alert(record: dict, info: LsstSchema) -> LsstAlert:
    """Validate one LSST alert record and split it for the tables, or raise the reason it is unusable."""
    src = _check_source(record.get("diaSource"), "diaSource")
    if problem := _source_problem(src, "diaSource"):
        raise ImplausibleValueError(f"{problem}: the alert is not used (docs/input-validation.md)")
    dia_object = _present(record.get("diaObject"))
    oid = _object_id(src, dia_object)
    for name in HISTORY_FIELDS:
        if problem := history_size_problem(name, record.get(name)):
            raise OversizeError(problem)
    dropped = Dropped()
    previous = []
    for i, p in enumerate(record.get("prvDiaSources") or ()):
        where = f"prvDiaSources[{i}]"
        if why := _source_problem(_check_source(p, where), where):
            dropped.add(why)
        else:
            previous.append(p)
    forced = []
    for i, f in enumerate(record.get("prvDiaForcedSources") or ()):
        band = f.get("band") if isinstance(f, dict) else None
        if (
            not isinstance(f, dict)
            or f.get("midpointMjdTai") is None
            or not isinstance(band, str)
            or band not in FID
        ):
            raise InvalidValueError(f"prvDiaForcedSources[{i}] has no time or no LSST band")
        if why := _forced_problem(f, f"prvDiaForcedSources[{i}]"):
            dropped.add(why)
        else:
            forced.append(f)
    limits = []
    for i, lim in enumerate(record.get("prvDiaNondetectionLimits") or ()):
        if why := _limit_problem(lim, f"prvDiaNondetectionLimits[{i}]"):
            dropped.add(why)
        else:
            limits.append(lim)
    ss = _present(record.get("ssSource")) or _present(record.get("ssObject"))
    orbit = _present(record.get("mpc_orbits")) or _present(record.get("MPCORB"))
    solar = None
    if ss is not None or orbit is not None:
        solar = {**(ss or {}), **{f"mpc_{k}": v for k, v in (orbit or {}).items()}}
    version = record.get("lsst_schema_version")
    if not isinstance(version, str) or not version.startswith("lsst."):
        version = f"lsst.v{info.version[0]}_{info.version[1]}"
    stamps = tuple(
        bytes(v) if isinstance(v := record.get(name), bytes | bytearray) and v else None
        for name in _STAMP_FIELDS
    )
    return LsstAlert(
        oid=oid,
        candid=int(src["diaSourceId"]),
        version=version,
        source=src,
        previous=previous,
        forced=forced,
        limits=limits,
        dia_object=dia_object,
        solar_system=solar,
        stamps=stamps,  # type: ignore[arg-type]
        dropped=dropped.count,
        dropped_reason=dropped.reason(),
    )


# ------------------------------------------------------------------------------------------- columns
#: The LSST fields kept per detection (besides the derived ZTF-convention columns), in order.
DETECTION_FIELDS = (
    "psfFlux", "psfFluxErr", "scienceFlux", "scienceFluxErr", "snr", "reliability", "visit", "detector",
    "diaObjectId", "ssObjectId", "raErr", "decErr", "extendedness", "pixelFlags", "isDipole", "isNegative",
)  # fmt: skip
#: ZTF's reference-source columns the shared science reads: null for LSST (no ZTF-style correction).
REFERENCE_COLUMNS = ("distnr", "magnr", "sigmagnr", "chinr", "sharpnr", "sgscore1", "distpsnr1")
FORCED_FIELDS = ("psfFlux", "psfFluxErr", "scienceFlux", "scienceFluxErr", "visit", "detector", "ra", "dec")


def magnitudes(flux: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(magnitude of |flux|, its error, sign of flux) in ZTF's convention for a difference flux in nJy."""
    flux = np.asarray(flux, dtype=np.float64)
    err = np.asarray(err, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.abs(flux)
        mag = np.where(a > 0, AB_ZERO_POINT_NJY - 2.5 * np.log10(a), np.nan)
        sigma = np.where(a > 0, _MAG_PER_LN * err / a, np.nan)
    sign = np.where(flux < 0, -1, 1).astype(np.int8)
    return mag, sigma, sign


def limiting_magnitude(err: np.ndarray, n_sigma: float = 5.0) -> np.ndarray:
    """The ``n_sigma`` limiting AB magnitude of a flux error in nJy."""
    err = np.asarray(err, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(err > 0, AB_ZERO_POINT_NJY - 2.5 * np.log10(n_sigma * err), np.nan)


def _get(rows: list[dict], name: str, kind: str):
    return lenient_column([r.get(name) for r in rows], kind)


def _fid(bands: list[str]) -> np.ndarray:
    return np.array([FID[b] for b in bands], dtype=np.int16)


class LsstBatch:
    """Accumulates validated LSST alerts of one batch and builds the internal tables from them."""

    def __init__(self) -> None:
        self.alerts: list[LsstAlert] = []
        self._candids: set[int] = set()
        self._provenance: list[tuple[str, int, int]] = []
        self._raw: list[bytes] = []
        self._det: list[dict] = []
        self._det_oid: list[str] = []
        self._det_parent: list[int] = []
        self._det_own: list[bool] = []
        self._det_index: dict[tuple[str, int], int] = {}
        self._fp: list[dict] = []
        self._fp_oid: list[str] = []
        self._fp_parent: list[int] = []
        self._fp_keys: set[tuple[str, int]] = set()
        self._nd: list[dict] = []
        self._nd_oid: list[str] = []
        self._nd_keys: set[tuple[str, str, float]] = set()

    def __len__(self) -> int:
        return len(self.alerts)

    def add(self, alert: LsstAlert, source: str, partition: int, offset: int, raw_payload: bytes) -> bool:
        if alert.candid in self._candids:
            return False
        self._candids.add(alert.candid)
        self.alerts.append(alert)
        self._provenance.append((source, partition, offset))
        self._raw.append(raw_payload)
        oid = alert.oid
        key = (oid, alert.candid)
        at = self._det_index.get(key)
        if at is None:
            self._det_index[key] = len(self._det)
            self._det.append(alert.source)
            self._det_oid.append(oid)
            self._det_parent.append(alert.candid)
            self._det_own.append(True)
        else:  # seen as another alert's history first: the alert's own row wins
            self._det[at] = alert.source
            self._det_parent[at] = alert.candid
            self._det_own[at] = True
        for p in alert.previous:
            key = (oid, int(p["diaSourceId"]))
            if key not in self._det_index:
                self._det_index[key] = len(self._det)
                self._det.append(p)
                self._det_oid.append(oid)
                self._det_parent.append(alert.candid)
                self._det_own.append(False)
        for f in alert.forced:
            pid = f.get("diaForcedSourceId")
            fkey = (oid, int(pid) if isinstance(pid, int) else hash((f["midpointMjdTai"], f["band"])))
            if fkey not in self._fp_keys:
                self._fp_keys.add(fkey)
                self._fp.append(f)
                self._fp_oid.append(oid)
                self._fp_parent.append(alert.candid)
        for lim in alert.limits:
            nkey = (oid, lim["band"], float(lim["midpointMjdTai"]))
            if nkey not in self._nd_keys:
                self._nd_keys.add(nkey)
                self._nd.append(lim)
                self._nd_oid.append(oid)
        return True

    # -- tables
    def tables(self, batch_id: str) -> Tables:
        return Tables(
            alerts=self.alerts_frame(batch_id),
            detections=self.detections_frame(),
            non_detections=self.non_detections_frame(),
            forced_photometry=self.forced_frame(),
            stamps=self.stamps_frame(),
            survey_objects=self.objects_frame(),
            solar_system=self.solar_frame(),
        )

    def _photometry(self, rows: list[dict]) -> dict[str, object]:
        """The shared columns of detection-like rows: time, night, band, position, derived magnitudes."""
        mjd = _get(rows, "midpointMjdTai", "f")
        bands = [r["band"] for r in rows]
        flux, err = _get(rows, "psfFlux", "f"), _get(rows, "psfFluxErr", "f")
        mag, sigma, sign = magnitudes(flux, err)
        return {
            "mjd": mjd,
            "night": INFO.night(mjd),
            "fid": _fid(bands),
            "band": pd.array(bands, dtype="str"),
            "ra": _get(rows, "ra", "f"),
            "dec": _get(rows, "dec", "f"),
            "magpsf": mag,
            "sigmapsf": sigma,
            "isdiffpos": sign,
            "diffmaglim": limiting_magnitude(err),
            "flux": flux,
            "flux_err": err,
        }

    def alerts_frame(self, batch_id: str) -> pd.DataFrame:
        rows = [a.source for a in self.alerts]
        n = len(rows)
        cols: dict[str, object] = {
            "oid": column([a.oid for a in self.alerts], "s"),
            "candid": column([a.candid for a in self.alerts], "q"),
            "survey": column([SURVEY] * n, "s"),
            "schemavsn": column([a.version for a in self.alerts], "s"),
        }
        cols.update(self._photometry(rows))
        cols["rb"] = _get(rows, "reliability", "f")
        for name, kind in field_kinds()["diaSource"].items():
            if name not in cols:
                cols[name] = _get(rows, name, kind)
        cols["dropped_points"] = np.array([a.dropped for a in self.alerts], dtype=np.int32)
        cols["dropped_reason"] = column([a.dropped_reason for a in self.alerts], "s")
        cols["source"] = column([p[0] for p in self._provenance], "s")
        cols["partition"] = np.array([p[1] for p in self._provenance], dtype=np.int32)
        cols["offset"] = np.array([p[2] for p in self._provenance], dtype=np.int64)
        cols["batch_id"] = column([batch_id] * n, "s")
        return pd.DataFrame(cols)

    def detections_frame(self) -> pd.DataFrame:
        rows = self._det
        n = len(rows)
        kinds = field_kinds()["diaSource"]
        cols: dict[str, object] = {
            "oid": column(self._det_oid, "s"),
            "candid": column([int(r["diaSourceId"]) for r in rows], "q"),
            "survey": column([SURVEY] * n, "s"),
        }
        cols.update(self._photometry(rows))
        cols["rb"] = _get(rows, "reliability", "f")
        for name in REFERENCE_COLUMNS:
            cols[name] = np.full(n, np.nan)
        cols["rfid"] = column([None] * n, "l")
        for name in DETECTION_FIELDS:
            cols[name] = _get(rows, name, kinds.get(name, "f"))
        cols["parent_candid"] = column(self._det_parent, "q")
        cols["has_stamp"] = np.array(self._det_own, dtype=bool)
        return pd.DataFrame(cols)

    def forced_frame(self) -> pd.DataFrame:
        rows = self._fp
        n = len(rows)
        mjd = _get(rows, "midpointMjdTai", "f")
        bands = [r["band"] for r in rows]
        kinds = field_kinds()["prvDiaForcedSources"] or {}
        cols: dict[str, object] = {
            "oid": column(self._fp_oid, "s"),
            "survey": column([SURVEY] * n, "s"),
            "parent_candid": column(self._fp_parent, "q"),
            "mjd": mjd,
            "night": INFO.night(mjd),
            "pid": column([r.get("diaForcedSourceId") for r in rows], "l"),
            "fid": _fid(bands),
            "band": pd.array(bands, dtype="str"),
        }
        for name in FORCED_FIELDS:
            cols[name] = _get(rows, name, kinds.get(name, "f"))
        return pd.DataFrame(cols)

    def non_detections_frame(self) -> pd.DataFrame:
        rows = self._nd
        mjd = _get(rows, "midpointMjdTai", "f")
        bands = [r["band"] for r in rows]
        return pd.DataFrame(
            {
                "oid": column(self._nd_oid, "s"),
                "survey": column([SURVEY] * len(rows), "s"),
                "fid": _fid(bands),
                "mjd": mjd,
                "night": INFO.night(mjd),
                "diffmaglim": limiting_magnitude(_get(rows, "diaNoise", "f")),
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

    def _carrier_columns(self, alerts: list[LsstAlert]) -> dict[str, object]:
        mjd = column([float(a.source["midpointMjdTai"]) for a in alerts], "f")
        return {
            "oid": column([a.oid for a in alerts], "s"),
            "candid": column([a.candid for a in alerts], "q"),
            "survey": column([SURVEY] * len(alerts), "s"),
            "mjd": mjd,
            "night": INFO.night(mjd),
        }

    def objects_frame(self) -> pd.DataFrame:
        """The diaObject summary each alert carried (one row per alert: the object as Rubin saw it then)."""
        carriers = [a for a in self.alerts if a.dia_object is not None]
        cols = self._carrier_columns(carriers)
        for name, kind in field_kinds()["diaObject"].items():
            key = name if name not in cols else f"dia_{name}"
            cols[key] = _get([a.dia_object for a in carriers], name, kind)  # type: ignore[misc]
        return pd.DataFrame(cols)

    def solar_frame(self) -> pd.DataFrame:
        """ssSource and MPC orbit of the solar-system alerts (MPC fields prefixed ``mpc_``)."""
        carriers = [a for a in self.alerts if a.solar_system is not None]
        cols = self._carrier_columns(carriers)
        kinds = {**field_kinds()["ssSource"], **field_kinds().get("ssObject", {})}
        for orbit in ("mpc_orbits", "MPCORB"):
            kinds.update({f"mpc_{k}": v for k, v in field_kinds().get(orbit, {}).items()})
        for name, kind in kinds.items():
            key = name if name not in cols else f"ss_{name}"
            cols[key] = _get([a.solar_system for a in carriers], name, kind)  # type: ignore[misc]
        return pd.DataFrame(cols)

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
    id_types={"oid": "string (LSST + diaObjectId)", "candid": "int64 (diaSourceId)", "diaObjectId": "int64"},
    bands={fid: band for band, fid in FID.items()},
    photometry="flux",
    longitude_deg=SITES[SURVEY],
    schema_versions=tuple(f"{a}.{b}" for a, b in packaged_schemas()),
)


class LsstAdapter:
    """LSST as a ``SurveyAdapter``."""

    info = INFO

    def recognises(self, schema: object) -> bool:
        return recognises(schema)

    def analyse(self, text: bytes) -> LsstSchema:
        return schema_info(text)

    def schema_for_id(self, schema_id: int) -> LsstSchema | None:
        return schema_for_id(schema_id)

    def extract(self, record: dict, schema: LsstSchema) -> LsstAlert:
        return extract_alert(record, schema)

    def new_batch(self) -> LsstBatch:
        return LsstBatch()


LSST = LsstAdapter()


def schema_json(version: tuple[int, int]) -> str:
    """The JSON text of a packaged schema (what a container written with it carries)."""
    return json.dumps(packaged_schemas()[version].schema)


def iter_versions() -> Iterable[PackagedSchema]:
    return packaged_schemas().values()
