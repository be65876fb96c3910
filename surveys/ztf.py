"""ZTF survey adapter: ZTF Avro alert packets -> the internal columnar model (docs/data-model.md).

Three steps, each testable on its own:

1. ``analyse_schema``: a writer schema -> ``SchemaInfo`` (what the records hold, which fields were renamed in
   old versions), or a ``PacketError`` saying why it is not a ZTF alert we can map; cached by the schema text.
   Reading the container itself is ``surveys.avro``'s.
2. ``extract_alert``: one record -> an ``Alert`` (candidate, history split into detections, non-detections
   and forced photometry, stamps), or a ``PacketError`` naming the missing or invalid field.
3. ``ZtfBatch``: accumulates alerts as lists of row dicts and turns them into typed columns in one pass per
   column (never a DataFrame per alert), deduplicating detections within the batch.

``ZTF`` (a ``SurveyAdapter``) ties them together for the survey-independent decoder (``surveys.decode``).

Schema versions: 3.0-4.02 map directly. Older ones: 1.x-2.x (2018 commissioning) lack the later fields, which
stay null; 3.5 (a 2021 test release) carried forced photometry in ``prv_candidates``, which we route to the
forced-photometry table. ZTF's 2016 prototypes are rejected: their list-of-types schema bundle is not an
alert schema, their ``alertId`` is not an object id, and their ids are negative (see ``_check_candid``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alert_broker.features.night import SITES
from alert_broker.features.tables import Tables
from alert_broker.surveys.adapter import SurveyInfo
from alert_broker.surveys.avro import (
    Container,
    array_item_fields,
    collect_names,
    load_schema,
    parse_schema,
    primitive,
    record_fields,
)
from alert_broker.surveys.avro import read_container as read_avro_container
from alert_broker.surveys.columns import ACCEPTS, ISDIFFPOS, band_names, column, difference_flux, fields
from alert_broker.surveys.compiled_reader import ItemBlock
from alert_broker.surveys.errors import (
    ImplausibleValueError,
    InvalidValueError,
    MissingFieldError,
    OversizeError,
    PacketError,
    UnknownSchemaError,
)
from alert_broker.surveys.plausibility import (
    ERA_START_MJD,
    MAG_RANGE,
    MJD_END,
    SIGMA_MAG_RANGE,
    Dropped,
    history_size_problem,
    id_problem,
    magnitude_problem,
    object_id_problem,
    position_problem,
    show,
    time_problem,
)
from alert_broker.surveys.ztf_history import Forced, History, check_forced, check_history, mixed_columns

SURVEY = "ztf"
JD_MJD_OFFSET = 2400000.5
#: ZTF's facts (surveys.adapter.SurveyInfo): ids, bands, photometry, site, schema versions.
INFO = SurveyInfo(
    name=SURVEY,
    id_types={"oid": "string", "candid": "int64"},
    bands={1: "g", 2: "r", 3: "i"},
    photometry="magnitude",
    longitude_deg=SITES[SURVEY],
    schema_versions=("1.x", "2.x", "3.0", "3.1", "3.2", "3.3", "3.5", "4.01", "4.02"),
)

# Column kinds as in surveys.columns.
#: Every scalar field of the ZTF 4.02 ``candidate`` record, in schema order (older versions have a subset).
CANDIDATE_FIELDS: tuple[tuple[str, str], ...] = (
    ("jd", "f"), ("fid", "h"), ("pid", "q"), ("diffmaglim", "f"), ("pdiffimfilename", "s"),
    ("programpi", "s"), ("programid", "i"), ("candid", "q"), ("isdiffpos", "b"), ("tblid", "l"),
    ("nid", "i"), ("rcid", "i"), ("field", "i"), ("xpos", "f"), ("ypos", "f"), ("ra", "f"), ("dec", "f"),
    ("magpsf", "f"), ("sigmapsf", "f"), ("chipsf", "f"), ("magap", "f"), ("sigmagap", "f"),
    ("distnr", "f"), ("magnr", "f"), ("sigmagnr", "f"), ("chinr", "f"), ("sharpnr", "f"), ("sky", "f"),
    ("magdiff", "f"), ("fwhm", "f"), ("classtar", "f"), ("mindtoedge", "f"), ("magfromlim", "f"),
    ("seeratio", "f"), ("aimage", "f"), ("bimage", "f"), ("aimagerat", "f"), ("bimagerat", "f"),
    ("elong", "f"), ("nneg", "i"), ("nbad", "i"), ("rb", "f"), ("ssdistnr", "f"), ("ssmagnr", "f"),
    ("ssnamenr", "s"), ("sumrat", "f"), ("magapbig", "f"), ("sigmagapbig", "f"), ("ranr", "f"),
    ("decnr", "f"), ("sgmag1", "f"), ("srmag1", "f"), ("simag1", "f"), ("szmag1", "f"), ("sgscore1", "f"),
    ("distpsnr1", "f"), ("ndethist", "i"), ("ncovhist", "i"), ("jdstarthist", "f"), ("jdendhist", "f"),
    ("scorr", "f"), ("tooflag", "i"), ("objectidps1", "l"), ("objectidps2", "l"), ("sgmag2", "f"),
    ("srmag2", "f"), ("simag2", "f"), ("szmag2", "f"), ("sgscore2", "f"), ("distpsnr2", "f"),
    ("objectidps3", "l"), ("sgmag3", "f"), ("srmag3", "f"), ("simag3", "f"), ("szmag3", "f"),
    ("sgscore3", "f"), ("distpsnr3", "f"), ("nmtchps", "i"), ("rfid", "l"), ("jdstartref", "f"),
    ("jdendref", "f"), ("nframesref", "i"), ("rbversion", "s"), ("dsnrms", "f"), ("ssnrms", "f"),
    ("dsdiff", "f"), ("magzpsci", "f"), ("magzpsciunc", "f"), ("magzpscirms", "f"), ("nmatches", "i"),
    ("clrcoeff", "f"), ("clrcounc", "f"), ("zpclrcov", "f"), ("zpmed", "f"), ("clrmed", "f"),
    ("clrrms", "f"), ("neargaia", "f"), ("neargaiabright", "f"), ("maggaia", "f"), ("maggaiabright", "f"),
    ("exptime", "f"), ("drb", "f"), ("drbversion", "s"),
)  # fmt: skip
_CANDIDATE_KIND = dict(CANDIDATE_FIELDS)

#: The candidate fields kept per detection (docs/data-model.md), in the contract's column order.
DETECTION_FIELDS: tuple[str, ...] = (
    "fid", "pid", "ra", "dec", "magpsf", "sigmapsf", "magap", "sigmagap", "isdiffpos", "diffmaglim",
    "distnr", "magnr", "sigmagnr", "chinr", "sharpnr", "rb", "drb", "rfid", "nid", "field", "rcid",
    "magzpsci", "fwhm", "sgscore1", "distpsnr1",
)  # fmt: skip

#: Every scalar field of the ZTF 4.x ``fp_hist`` record except ``jd`` (the table carries ``mjd``).
FORCED_FIELDS: tuple[tuple[str, str], ...] = (
    ("field", "i"), ("rcid", "i"), ("fid", "h"), ("pid", "q"), ("rfid", "l"), ("sciinpseeing", "f"),
    ("scibckgnd", "f"), ("scisigpix", "f"), ("magzpsci", "f"), ("magzpsciunc", "f"), ("magzpscirms", "f"),
    ("clrcoeff", "f"), ("clrcounc", "f"), ("exptime", "f"), ("adpctdif1", "f"), ("adpctdif2", "f"),
    ("diffmaglim", "f"), ("programid", "i"), ("forcediffimflux", "f"), ("forcediffimfluxunc", "f"),
    ("procstatus", "s"), ("distnr", "f"), ("ranr", "f"), ("decnr", "f"), ("magnr", "f"), ("sigmagnr", "f"),
    ("chinr", "f"), ("sharpnr", "f"),
)  # fmt: skip
_FORCED_KIND = {**dict(FORCED_FIELDS), "jd": "f"}
#: The fields the forced-photometry table takes from each point.
_FORCED_COLUMNS = ("jd", *(name for name, _ in FORCED_FIELDS))

#: Names of ZTF's 2016-17 (v1.x) candidate fields that later versions renamed.
_OLD_CANDIDATE_NAMES = {"sgscore": "sgscore1", "sgmag": "sgmag1", "srmag": "srmag1", "simag": "simag1",
                        "szmag": "szmag1"}  # fmt: skip

#: What the brief and the science need of every alert; a packet lacking one is dead-lettered.
REQUIRED_CANDIDATE = ("jd", "fid", "pid", "ra", "dec", "magpsf", "sigmapsf", "isdiffpos")
_REQUIRED_PRV_DETECTION = ("pid", "ra", "dec", "magpsf", "sigmapsf")
#: Take prv_candidates and fp_hists as columns when the rules pass them all (``surveys.ztf_history``); False:
#: always dicts.
COLUMNAR_HISTORY = True
ZTF_FIDS = frozenset((1, 2, 3))  # g, r, i
_STAMP_FIELDS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")
#: The candidate's string fields: none may hold a NUL (PostgreSQL text cannot; ZTF never writes one).
_CANDIDATE_STRINGS = tuple(name for name, kind in CANDIDATE_FIELDS if kind == "s")
# The plausibility rules (surveys.plausibility, docs/input-validation.md) as bare bounds, for the per-point loop.
_JD_START, _JD_END = ERA_START_MJD[SURVEY] + JD_MJD_OFFSET, MJD_END + JD_MJD_OFFSET
_MAG_LO, _MAG_HI = MAG_RANGE
_SIG_LO, _SIG_HI = SIGMA_MAG_RANGE
_BOUNDS = np.array([_JD_START, _JD_END, _MAG_LO, _MAG_HI, _SIG_LO, _SIG_HI], dtype=np.float64)


# ------------------------------------------------------------------------------------ container reading
@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """What we learnt once about a writer schema (cached by its JSON text)."""

    parsed: dict
    renames: tuple[tuple[str, str], ...]  # old candidate field name -> current one
    prv_is_forced: bool  # schema 3.5: prv_candidates hold fp_hist records
    #: the field names of a prv_candidates entry (empty: none, or forced photometry); when there are some, the
    #: compiled reader leaves the entries in columns (``surveys.ztf_history``)
    prv_fields: frozenset[str] = frozenset()
    #: the field names of an fp_hists entry (empty: no fp_hists); likewise left in columns
    fp_fields: frozenset[str] = frozenset()

    @property
    def columnar(self) -> frozenset[str]:
        """The arrays the compiled reader may leave in columns (``surveys.avro.read_container(columnar=True)``)."""
        if not COLUMNAR_HISTORY:
            return frozenset()
        return frozenset(
            name for name, has in (("prv_candidates", self.prv_fields), ("fp_hists", self.fp_fields)) if has
        )


_SCHEMA_CACHE: dict[bytes, SchemaInfo | PacketError] = {}
_SCHEMA_CACHE_MAX = 256


def _check_types(where: str, fields: dict[str, object], kinds: dict[str, str]) -> None:
    for name, avro_type in fields.items():
        kind = kinds.get(name)
        if kind is not None and primitive(avro_type) not in ACCEPTS[kind]:
            raise UnknownSchemaError(
                f"unknown schema: {where}.{name} has Avro type {json.dumps(avro_type)}, where ZTF alerts "
                f"carry {' or '.join(sorted(ACCEPTS[kind]))}; not a ZTF alert schema we can map"
            )


def analyse_schema(text: bytes) -> SchemaInfo:
    """What a ZTF writer schema holds, or the PacketError saying why it is not a ZTF alert we can map."""
    schema = load_schema(text)
    if isinstance(schema, list):
        names = [t.get("name", "?") if isinstance(t, dict) else str(t) for t in schema]
        versions = {t.get("version") for t in schema if isinstance(t, dict) and t.get("version")}
        version = f" version {', '.join(sorted(versions))}" if versions else ""
        raise UnknownSchemaError(
            f"unknown schema: the writer schema is a list of {len(schema)} types ({', '.join(names)}), "
            f"ZTF's 2016-17 prototype schema bundle{version}, not one alert record; prototype packets "
            "predate the ZTF alert format and are not supported"
        )
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise UnknownSchemaError(
            f"unknown schema: the writer schema is {json.dumps(schema)[:80]}, not a record; not a ZTF alert"
        )
    parsed = parse_schema(schema)

    names: dict[str, dict] = {}
    collect_names(schema, names)
    top = {f["name"]: f["type"] for f in schema.get("fields", ())}
    if "candidate" not in top:
        raise UnknownSchemaError(
            f"unknown schema: no 'candidate' record (top-level fields: {', '.join(top) or 'none'}); "
            "not a ZTF alert"
        )
    candidate = record_fields(top["candidate"], names)
    if candidate is None:
        raise UnknownSchemaError("unknown schema: 'candidate' is not a record; not a ZTF alert")
    if "objectId" not in top:
        if "alertId" in top:
            raise MissingFieldError(
                "missing required field objectId: this is ZTF's 2016 prototype schema, whose 'alertId' is an "
                "alert id, not an object id, so its detections cannot be attached to an object"
            )
        raise MissingFieldError("missing required field objectId (the writer schema has no such field)")
    if "candid" not in top and "candid" not in candidate:
        raise MissingFieldError("missing required field candid (neither the alert nor its candidate has one)")
    renames = tuple(
        (old, new) for old, new in _OLD_CANDIDATE_NAMES.items() if old in candidate and new not in candidate
    )
    present = set(candidate) | {new for _, new in renames}
    for name in REQUIRED_CANDIDATE:
        if name not in present:
            raise MissingFieldError(
                f"missing required field candidate.{name} (the writer schema has no such field)"
            )
    _check_types("candidate", candidate, _CANDIDATE_KIND)

    prv_is_forced = False
    if "prv_candidates" in top:
        prv = array_item_fields(top["prv_candidates"], names)
        if prv is None:
            raise UnknownSchemaError("unknown schema: prv_candidates is not an array of records")
        prv_is_forced = "forcediffimflux" in prv
        _check_types("prv_candidates", prv, _FORCED_KIND if prv_is_forced else _CANDIDATE_KIND)
    fp_fields: frozenset[str] = frozenset()
    if "fp_hists" in top:
        fp = array_item_fields(top["fp_hists"], names)
        if fp is None:
            raise UnknownSchemaError("unknown schema: fp_hists is not an array of records")
        _check_types("fp_hists", fp, _FORCED_KIND)
        fp_fields = frozenset(fp)
    prv_fields = frozenset(prv) if "prv_candidates" in top and not prv_is_forced else frozenset()
    return SchemaInfo(
        parsed=parsed,
        renames=renames,
        prv_is_forced=prv_is_forced,
        prv_fields=prv_fields,
        fp_fields=fp_fields,
    )


def schema_info(text: bytes) -> SchemaInfo:
    """The analysed writer schema (cached by its JSON text); raises the schema's PacketError if unusable."""
    info = _SCHEMA_CACHE.get(text)
    if info is None:
        try:
            info = analyse_schema(text)
        except PacketError as err:
            info = err
        if len(_SCHEMA_CACHE) >= _SCHEMA_CACHE_MAX:
            _SCHEMA_CACHE.clear()
        _SCHEMA_CACHE[text] = info
    if isinstance(info, PacketError):
        raise type(info)(str(info))
    return info


def read_container(payload: bytes) -> Container:
    """A ZTF Avro container's records, or the PacketError that says why it cannot be read."""
    return read_avro_container(payload, schema_info)


def decode_packet(payload: bytes) -> list[dict]:
    """The records of one Avro container file (one ZTF alert each; Fink's multi-alert files hold many)."""
    return read_container(payload).records


# ----------------------------------------------------------------------------------------------- alerts
@dataclass(frozen=True, slots=True)
class Alert:
    """One validated alert, split the way the tables need it."""

    oid: str
    candid: int
    schemavsn: str | None
    candidate: dict
    detections: list[dict]  # prv_candidates entries with a candid
    non_detections: list[dict]  # prv_candidates entries without one
    forced: list[dict]  # fp_hists entries (or schema 3.5's fp-shaped prv_candidates)
    stamps: tuple[bytes | None, bytes | None, bytes | None]
    dropped: int = 0  # history points dropped by the plausibility rules
    dropped_reason: str | None = None  # the first few, field and value
    history: History | None = (
        None  # prv_candidates taken as columns (then detections/non_detections are empty)
    )
    fp_history: Forced | None = None  # fp_hists taken as columns (then forced holds none of them)


def _jd_date(jd: float) -> str:
    return str(np.datetime64(int(round((jd - 2440587.5) * 86400)), "s").astype("datetime64[D]"))


def _check_candid(candid: object, jd: object) -> int:
    if not isinstance(candid, int) or isinstance(candid, bool):
        raise InvalidValueError(f"candid {candid!r} is not an integer")
    if candid <= 0:
        when = f" (jd {jd} = {_jd_date(jd)})" if isinstance(jd, float) and math.isfinite(jd) else ""
        raise InvalidValueError(
            f"candid {candid} is not a positive ZTF candidate id: negative ids mark ZTF's 2016 prototype "
            f"(simulated, pre-survey) alerts{when}; not survey data"
        )
    return candid


def _check_fid(fid: object, where: str) -> None:
    if fid not in ZTF_FIDS:
        if fid is None:
            raise MissingFieldError(f"missing required field {where}.fid")
        raise InvalidValueError(f"{where}.fid is {fid!r}; ZTF filters are 1 (g), 2 (r) and 3 (i)")


def _check_forced(entry: object, where: str) -> dict:
    if not isinstance(entry, dict):
        raise MissingFieldError(f"missing required field {where} (null in this packet)")
    if entry.get("pid") is None:
        raise MissingFieldError(f"missing required field {where}.pid")
    _check_fid(entry.get("fid"), where)
    jd = entry.get("jd")
    if jd is None or not math.isfinite(jd):
        raise MissingFieldError(f"missing required field {where}.jd (got {jd!r})")
    return entry


def _forced_problem(entry: dict, where: str) -> str | None:
    """Why a forced-photometry point is dropped (None if it is kept). Its fluxes are kept as they come (ZTF's
    -99999 markers included: docs/correction.md); its time and id must be plausible."""
    jd, pid = entry["jd"], entry["pid"]
    if _JD_START <= jd < _JD_END and isinstance(pid, int) and pid > 0:
        return None
    return id_problem(f"{where}.pid", pid) or time_problem(f"{where}.jd", jd - JD_MJD_OFFSET, SURVEY, jd)


def _detection_problem(p: dict, where: str) -> str | None:
    """Why a detection (the candidate or a ``prv_candidates`` entry with a candid) is implausible, or None."""
    jd, ra, dec, mag, sigma = p["jd"], p["ra"], p["dec"], p["magpsf"], p["sigmapsf"]
    if (
        _JD_START <= jd < _JD_END
        and 0.0 <= ra < 360.0
        and -90.0 <= dec <= 90.0
        and _MAG_LO < mag < _MAG_HI
        and _SIG_LO < sigma < _SIG_HI
        and p["pid"] > 0
    ):
        return None
    return (
        id_problem(f"{where}.pid", p["pid"])
        or time_problem(f"{where}.jd", jd - JD_MJD_OFFSET, SURVEY, jd)
        or position_problem(where, ra, dec)
        or magnitude_problem(where, "magpsf", mag, "sigmapsf", sigma)
    )


def _non_detection_problem(p: dict, where: str) -> str | None:
    """Why a non-detection is dropped (None if it is kept): a time in ZTF's era and, when it has one, a
    plausible limiting magnitude (a null ``diffmaglim`` is kept as null)."""
    jd, limit = p["jd"], p.get("diffmaglim")
    if _JD_START <= jd < _JD_END and (limit is None or _MAG_LO < limit < _MAG_HI):
        return None
    return time_problem(f"{where}.jd", jd - JD_MJD_OFFSET, SURVEY, jd) or magnitude_problem(
        where, "diffmaglim", limit
    )


def extract_alert(record: dict, info: SchemaInfo) -> Alert:
    """Validate one decoded alert record and split it for the tables, or raise the reason it is unusable."""
    cand = record.get("candidate")
    if not isinstance(cand, dict):
        raise MissingFieldError("missing required field candidate (null in this packet)")
    if info.renames:
        cand = dict(cand)
        for old, new in info.renames:
            cand[new] = cand.pop(old)
    oid = record.get("objectId")
    if not isinstance(oid, str) or not oid:
        raise MissingFieldError(f"missing required field objectId (got {show(oid)})")
    if problem := object_id_problem("objectId", oid):
        raise InvalidValueError(problem)
    candid = record.get("candid")
    inner = cand.get("candid")
    if candid is None:
        candid = inner
    elif inner is not None and inner != candid:
        raise InvalidValueError(f"candid {candid} disagrees with candidate.candid {inner}: a damaged packet")
    if candid is None:
        raise MissingFieldError("missing required field candid (null in this packet)")
    for name in REQUIRED_CANDIDATE:
        if cand.get(name) is None:
            raise MissingFieldError(f"missing required field candidate.{name} (null in this packet)")
    jd = cand["jd"]
    candid = _check_candid(candid, jd)
    if not math.isfinite(jd):
        raise InvalidValueError(f"candidate.jd is {jd}: an alert needs a finite observation time")
    if cand["isdiffpos"] not in ISDIFFPOS:
        raise InvalidValueError(f"candidate.isdiffpos is {cand['isdiffpos']!r}, not one of t, f, 1, 0")
    _check_fid(cand["fid"], "candidate")
    if problem := _detection_problem(cand, "candidate"):
        raise ImplausibleValueError(f"{problem}: the alert is not used (docs/input-validation.md)")
    for name in _CANDIDATE_STRINGS:
        value = cand.get(name)
        if isinstance(value, str) and "\0" in value:
            raise InvalidValueError(
                f"candidate.{name} is {show(value)}: a NUL character, which no ZTF string holds and PostgreSQL "
                "text cannot store"
            )

    detections: list[dict] = []
    non_detections: list[dict] = []
    forced: list[dict] = []
    dropped = Dropped()
    prv = record.get("prv_candidates") or ()
    fp = record.get("fp_hists") or ()
    for where, entries in (("prv_candidates", prv), ("fp_hists", fp)):
        if problem := history_size_problem(where, entries):
            raise OversizeError(problem)
    history = None
    if isinstance(prv, ItemBlock):  # every entry passes the rules: columns; else the dicts, and their reasons
        history = check_history(prv, _BOUNDS, DETECTION_FIELDS, info.prv_fields)
        prv = () if history is not None else prv.rows()
    fp_history = None
    if isinstance(fp, ItemBlock):
        fp_history = check_forced(fp, _BOUNDS, _FORCED_COLUMNS, info.fp_fields)
        fp = () if fp_history is not None else fp.rows()
    if info.prv_is_forced:
        for i, p in enumerate(prv):
            where = f"prv_candidates[{i}]"
            if why := _forced_problem(_check_forced(p, where), where):
                dropped.add(why)
            else:
                forced.append(p)
    else:
        for i, p in enumerate(prv):
            if not isinstance(p, dict):
                raise MissingFieldError(f"missing required field prv_candidates[{i}] (null in this packet)")
            pjd = p.get("jd")
            if pjd is None or not math.isfinite(pjd):
                raise MissingFieldError(f"missing required field prv_candidates[{i}].jd (got {pjd!r})")
            if p.get("fid") not in ZTF_FIDS:
                _check_fid(p.get("fid"), f"prv_candidates[{i}]")
            if p.get("candid") is None:
                if why := _non_detection_problem(p, f"prv_candidates[{i}]"):
                    dropped.add(why)
                else:
                    non_detections.append(p)
                continue
            for name in _REQUIRED_PRV_DETECTION:
                if p.get(name) is None:
                    raise MissingFieldError(
                        f"missing required field prv_candidates[{i}].{name} (detection candid {p['candid']})"
                    )
            if p.get("isdiffpos") not in ISDIFFPOS:
                raise InvalidValueError(
                    f"prv_candidates[{i}].isdiffpos is {show(p.get('isdiffpos'))}, not one of t, f, 1, 0"
                )
            if p["candid"] <= 0:
                dropped.add(id_problem(f"prv_candidates[{i}].candid", p["candid"]) or "")
            elif why := _detection_problem(p, f"prv_candidates[{i}]"):
                dropped.add(why)
            else:
                detections.append(p)
    for i, p in enumerate(fp):
        where = f"fp_hists[{i}]"
        if why := _forced_problem(_check_forced(p, where), where):
            dropped.add(why)
        else:
            forced.append(p)

    stamps = tuple(
        s.get("stampData") if isinstance(s := record.get(name), dict) else None for name in _STAMP_FIELDS
    )
    for name, stamp in zip(_STAMP_FIELDS, stamps, strict=True):
        if stamp is not None and not isinstance(stamp, bytes):
            raise InvalidValueError(
                f"{name}.stampData is a {type(stamp).__name__}, not bytes (a FITS cutout)"
            )
    schemavsn = record.get("schemavsn")
    return Alert(
        oid=oid,
        candid=candid,
        schemavsn=schemavsn if isinstance(schemavsn, str) else None,
        candidate=cand,
        detections=detections,
        non_detections=non_detections,
        forced=forced,
        stamps=stamps,  # type: ignore[arg-type]
        dropped=dropped.count,
        dropped_reason=dropped.reason(),
        history=history,
        fp_history=fp_history,
    )


# ----------------------------------------------------------------------------------------------- columns
def _mjd_night(jd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mjd = jd - JD_MJD_OFFSET
    return mjd, INFO.night(mjd)


class ZtfBatch:
    """Accumulates validated alerts of one batch and builds the contract's tables from them."""

    def __init__(self) -> None:
        self._candids: set[int] = set()
        self.alerts: list[Alert] = []
        self._provenance: list[tuple[str, int, int]] = []
        self._raw: list[bytes] = []
        self._det_rows: list[dict] = []
        self._det_oid: list[str] = []
        self._det_candid: list[int] = []
        self._det_parent: list[int] = []
        self._det_own: list[bool] = []
        self._det_index: dict[tuple[str, int], int] = {}
        self._nd_rows: list[dict] = []
        self._nd_oid: list[str] = []
        self._nd_keys: set[tuple[str, int, float]] = set()
        self._fp_rows: list[dict] = []
        self._fp_oid: list[str] = []
        self._fp_parent: list[int] = []
        self._fp_keys: set[tuple[str, int]] = set()
        self._histories: list[
            History
        ] = []  # rows of _det_rows / _nd_rows that are (index, row) refer to these
        self._fp_histories: list[Forced] = []  # and rows of _fp_rows to these

    def __len__(self) -> int:
        return len(self.alerts)

    def add(self, alert: Alert, source: str, partition: int, offset: int, raw_payload: bytes) -> bool:
        """Add one alert; False (and nothing added) when its candid is already in the batch."""
        candid = alert.candid
        if candid in self._candids:
            return False
        self._candids.add(candid)
        oid = alert.oid
        self.alerts.append(alert)
        self._provenance.append((source, partition, offset))
        self._raw.append(raw_payload)

        index = self._det_index
        key = (oid, candid)
        at = index.get(key)
        if at is None:
            index[key] = len(self._det_rows)
            self._det_rows.append(alert.candidate)
            self._det_oid.append(oid)
            self._det_candid.append(candid)
            self._det_parent.append(candid)
            self._det_own.append(True)
        else:  # seen earlier as another alert's history: the alert's own, fuller row wins
            self._det_rows[at] = alert.candidate
            self._det_parent[at] = candid
            self._det_own[at] = True
        for p in alert.detections:
            key = (oid, p["candid"])
            if key not in index:
                index[key] = len(self._det_rows)
                self._det_rows.append(p)
                self._det_oid.append(oid)
                self._det_candid.append(p["candid"])
                self._det_parent.append(candid)
                self._det_own.append(False)
        for p in alert.non_detections:
            nd_key = (oid, p["fid"], p["jd"])
            if nd_key not in self._nd_keys:
                self._nd_keys.add(nd_key)
                self._nd_rows.append(p)
                self._nd_oid.append(oid)
        if alert.history is not None:
            self._add_history(alert.history, oid, candid)
        for p in alert.forced:
            fp_key = (oid, p["pid"])
            if fp_key not in self._fp_keys:
                self._fp_keys.add(fp_key)
                self._fp_rows.append(p)
                self._fp_oid.append(oid)
                self._fp_parent.append(candid)
        if alert.fp_history is not None:
            self._add_forced(alert.fp_history, oid, candid)
        return True

    def _add_forced(self, f: Forced, oid: str, candid: int) -> None:
        """``add`` for forced photometry taken as columns: the same keys and order; rows are references."""
        b = len(self._fp_histories)
        self._fp_histories.append(f)
        for j, pid in zip(f.rows, f.pids, strict=True):
            fp_key = (oid, pid)
            if fp_key not in self._fp_keys:
                self._fp_keys.add(fp_key)
                self._fp_rows.append((b, j))
                self._fp_oid.append(oid)
                self._fp_parent.append(candid)

    def _add_history(self, h: History, oid: str, candid: int) -> None:
        """``add`` for history entries taken as columns: the same keys and order; rows are references."""
        b = len(self._histories)
        self._histories.append(h)
        index = self._det_index
        for j, c in zip(h.det_rows, h.det_candid, strict=True):
            key = (oid, c)
            if key not in index:
                index[key] = len(self._det_rows)
                self._det_rows.append((b, j))
                self._det_oid.append(oid)
                self._det_candid.append(c)
                self._det_parent.append(candid)
                self._det_own.append(False)
        for j, fid, jd in zip(h.nd_rows, h.nd_fid, h.nd_jd, strict=True):
            nd_key = (oid, fid, jd)
            if nd_key not in self._nd_keys:
                self._nd_keys.add(nd_key)
                self._nd_rows.append((b, j))
                self._nd_oid.append(oid)

    def _columns(self, rows: list, names: list[tuple[str, str]]) -> dict[str, object]:
        if self._histories:
            return mixed_columns(rows, self._histories, names)
        return fields(rows, names)

    # -- tables
    def alerts_frame(self, batch_id: str) -> pd.DataFrame:
        cands = [a.candidate for a in self.alerts]
        jd = column([c["jd"] for c in cands], "f")
        mjd, night = _mjd_night(jd)
        n = len(cands)
        cols: dict[str, object] = {
            "oid": column([a.oid for a in self.alerts], "s"),
            "candid": column([a.candid for a in self.alerts], "q"),
            "survey": column([SURVEY] * n, "s"),
            "schemavsn": column([a.schemavsn for a in self.alerts], "s"),
            "mjd": mjd,
            "night": night,
            "jd": jd,
        }
        cols.update(fields(cands, ((f, k) for f, k in CANDIDATE_FIELDS if f not in ("jd", "candid"))))
        cols["band"] = band_names(cols["fid"], INFO.bands)
        cols["flux"], cols["flux_err"] = difference_flux(cols["magpsf"], cols["sigmapsf"], cols["isdiffpos"])
        cols["dropped_points"] = np.array([a.dropped for a in self.alerts], dtype=np.int32)
        cols["dropped_reason"] = column([a.dropped_reason for a in self.alerts], "s")
        cols["source"] = column([p[0] for p in self._provenance], "s")
        cols["partition"] = np.array([p[1] for p in self._provenance], dtype=np.int32)
        cols["offset"] = np.array([p[2] for p in self._provenance], dtype=np.int64)
        cols["batch_id"] = column([batch_id] * n, "s")
        return pd.DataFrame(cols)

    def detections_frame(self) -> pd.DataFrame:
        rows = self._det_rows
        taken = self._columns(rows, [("jd", "f")] + [(f, _CANDIDATE_KIND[f]) for f in DETECTION_FIELDS])
        mjd, night = _mjd_night(taken.pop("jd"))
        cols: dict[str, object] = {
            "oid": column(self._det_oid, "s"),
            "candid": column(self._det_candid, "q"),
            "survey": column([SURVEY] * len(rows), "s"),
            "mjd": mjd,
            "night": night,
        }
        cols.update(taken)
        cols["band"] = band_names(cols["fid"], INFO.bands)
        cols["flux"], cols["flux_err"] = difference_flux(cols["magpsf"], cols["sigmapsf"], cols["isdiffpos"])
        cols["parent_candid"] = column(self._det_parent, "q")
        cols["has_stamp"] = np.array(self._det_own, dtype=bool)
        return pd.DataFrame(cols)

    def non_detections_frame(self) -> pd.DataFrame:
        rows = self._nd_rows
        taken = self._columns(rows, [("jd", "f"), ("fid", "h"), ("diffmaglim", "f")])
        mjd, night = _mjd_night(taken["jd"])
        return pd.DataFrame(
            {
                "oid": column(self._nd_oid, "s"),
                "survey": column([SURVEY] * len(rows), "s"),
                "fid": taken["fid"],
                "mjd": mjd,
                "night": night,
                "diffmaglim": taken["diffmaglim"],
            }
        )

    def forced_frame(self) -> pd.DataFrame:
        rows = self._fp_rows
        if self._fp_histories:
            taken = mixed_columns(rows, self._fp_histories, [("jd", "f"), *FORCED_FIELDS])
        else:
            taken = fields(rows, [("jd", "f"), *FORCED_FIELDS])
        mjd, night = _mjd_night(taken.pop("jd"))
        cols: dict[str, object] = {
            "oid": column(self._fp_oid, "s"),
            "survey": column([SURVEY] * len(rows), "s"),
            "parent_candid": column(self._fp_parent, "q"),
            "mjd": mjd,
            "night": night,
        }
        cols.update(taken)
        return pd.DataFrame(cols)

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

    def tables(self, batch_id: str) -> Tables:
        return Tables(
            alerts=self.alerts_frame(batch_id),
            detections=self.detections_frame(),
            non_detections=self.non_detections_frame(),
            forced_photometry=self.forced_frame(),
            stamps=self.stamps_frame(),
        )


def recognises(schema: object) -> bool:
    """A ZTF alert schema: a record with a ``candidate`` record and an ``objectId`` (or ZTF's 2016 prototype
    bundle, which ``analyse_schema`` names in its dead letter)."""
    if isinstance(schema, list):
        return any(isinstance(t, dict) and str(t.get("name", "")).startswith("ztf") for t in schema)
    if not isinstance(schema, dict):
        return False
    top = {f.get("name") for f in schema.get("fields", ()) if isinstance(f, dict)}
    if not ("candidate" in top and bool({"objectId", "alertId"} & top)):
        return False
    # ATLAS alerts (surveys.atlas) have the same top level; their candidate has RA/Dec/Mag, not ra/dec/magpsf
    names: dict[str, dict] = {}
    collect_names(schema, names)
    found = (f.get("type") for f in schema["fields"] if isinstance(f, dict) and f.get("name") == "candidate")
    candidate = record_fields(next(found), names) or {}
    return not ({"RA", "Mag"} <= set(candidate) or str(schema.get("name", "")).startswith("atlas."))


class ZtfAdapter:
    """ZTF as a ``SurveyAdapter``."""

    info = INFO

    def recognises(self, schema: object) -> bool:
        return recognises(schema)

    def analyse(self, text: bytes) -> SchemaInfo:
        return schema_info(text)

    def schema_for_id(self, schema_id: int) -> SchemaInfo | None:  # noqa: ARG002 - ZTF sends containers
        return None

    def extract(self, record: dict, schema: SchemaInfo) -> Alert:
        return extract_alert(record, schema)

    def new_batch(self) -> ZtfBatch:
        return ZtfBatch()


ZTF = ZtfAdapter()
