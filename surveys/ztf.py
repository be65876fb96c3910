"""ZTF survey adapter: Avro alert packets -> the internal columnar model (docs/data-model.md).

Three steps, each testable on its own:

1. ``read_container``: the bytes of an Avro object container file (codec null, deflate or snappy) -> its
   records, or a ``PacketError`` whose message says what the bytes are instead (an HTML error page, a
   truncated download, a gzip archive, ...). We parse the container ourselves and cache the parsed writer
   schema by its text: every ZTF packet repeats the same ~30 kB schema, and re-parsing it per packet (what
   ``fastavro.reader`` does) is a fifth of the decode cost. Record decoding is still fastavro's.
2. ``extract_alert``: one record -> an ``Alert`` (candidate, history split into detections, non-detections
   and forced photometry, stamps), or a ``PacketError`` naming the missing or invalid field.
3. ``ZtfBatch``: accumulates alerts as lists of row dicts and turns them into typed columns in one pass per
   column (never a DataFrame per alert), deduplicating detections within the batch.

Schema versions: 3.0-4.02 map directly. Older ones: 1.x-2.x (2018 commissioning) lack the later fields, which
stay null; 3.5 (a 2021 test release) carried forced photometry in ``prv_candidates``, which we route to the
forced-photometry table. ZTF's 2016 prototypes are rejected: their list-of-types schema bundle is not an
alert schema, their ``alertId`` is not an object id, and their ids are negative (see ``_check_candid``).
"""

from __future__ import annotations

import io
import json
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import cramjam
import fastavro
import numpy as np
import pandas as pd

from alert_broker.features.night import SITES, observing_night

SURVEY = "ztf"
JD_MJD_OFFSET = 2400000.5
_MAGIC = b"Obj\x01"
_SYNC_SIZE = 16

# Column kinds: f float64 (NaN when missing), i Int32 / l Int64 (nullable), s string, and the required ones:
# q int64 (ids), h int16 (fid), b int8 (isdiffpos, +1/-1).
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

#: Names of ZTF's 2016-17 (v1.x) candidate fields that later versions renamed.
_OLD_CANDIDATE_NAMES = {"sgscore": "sgscore1", "sgmag": "sgmag1", "srmag": "srmag1", "simag": "simag1",
                        "szmag": "szmag1"}  # fmt: skip

#: What the brief and the science need of every alert; a packet lacking one is dead-lettered.
REQUIRED_CANDIDATE = ("jd", "fid", "pid", "ra", "dec", "magpsf", "sigmapsf", "isdiffpos")
_REQUIRED_PRV_DETECTION = ("pid", "ra", "dec", "magpsf", "sigmapsf")
ISDIFFPOS = {"t": 1, "1": 1, "T": 1, "f": -1, "0": -1, "F": -1}
ZTF_FIDS = frozenset((1, 2, 3))  # g, r, i
_STAMP_FIELDS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")

# Avro types each column kind accepts from a writer schema: checked once per schema, so that a packet of the
# wrong shape is dead-lettered instead of breaking a whole batch's column conversion.
_ACCEPTS = {
    "f": {"double", "float", "int", "long"},
    "i": {"int", "long"},
    "l": {"int", "long"},
    "q": {"int", "long"},
    "h": {"int", "long"},
    "s": {"string", "enum"},
    "b": {"string", "enum"},
}


# ----------------------------------------------------------------------------------------------- errors
class PacketError(ValueError):
    """A packet that cannot be used. ``str(err)`` is the dead letter's reason: what is wrong and what to do."""


class NotAvroError(PacketError):
    """The bytes are not an Avro container at all."""


class TruncatedAvroError(PacketError):
    """An Avro container that ends before its own structure says it should."""


class CorruptAvroError(PacketError):
    """An Avro container whose bytes do not decode against its own writer schema."""


class UnknownSchemaError(PacketError):
    """A well-formed container whose records are not ZTF alerts we can map."""


class MissingFieldError(PacketError):
    """An alert without one of the fields every alert must carry."""


class InvalidValueError(PacketError):
    """An alert whose field holds a value the model cannot take."""


# ------------------------------------------------------------------------------------ container reading
@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """What we learnt once about a writer schema (cached by its JSON text)."""

    parsed: dict
    renames: tuple[tuple[str, str], ...]  # old candidate field name -> current one
    prv_is_forced: bool  # schema 3.5: prv_candidates hold fp_hist records


@dataclass(frozen=True, slots=True)
class Container:
    records: list[dict]
    schema: SchemaInfo
    codec: str


_SCHEMA_CACHE: dict[bytes, SchemaInfo | PacketError] = {}
_SCHEMA_CACHE_MAX = 256


def _read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """Avro's zig-zag varint at ``pos`` -> (value, next position). IndexError past the end."""
    b = buf[pos]
    n = b & 0x7F
    shift = 7
    pos += 1
    while b & 0x80:
        b = buf[pos]
        n |= (b & 0x7F) << shift
        shift += 7
        pos += 1
    return (n >> 1) ^ -(n & 1), pos


def _read_header(buf: bytes) -> tuple[dict[bytes, bytes], bytes, int]:
    pos = 4
    meta: dict[bytes, bytes] = {}
    while True:
        count, pos = _read_long(buf, pos)
        if count == 0:
            break
        if count < 0:
            count = -count
            _, pos = _read_long(buf, pos)  # the block's byte size, which we do not need
        for _ in range(count):
            klen, pos = _read_long(buf, pos)
            key = buf[pos : pos + klen]
            pos += klen
            vlen, pos = _read_long(buf, pos)
            if klen < 0 or vlen < 0:
                raise CorruptAvroError("corrupt Avro container: negative length in the header metadata")
            meta[key] = buf[pos : pos + vlen]
            pos += vlen
    sync = buf[pos : pos + _SYNC_SIZE]
    if len(sync) < _SYNC_SIZE:
        raise IndexError("header ends inside the sync marker")
    return meta, sync, pos + _SYNC_SIZE


def describe_non_avro(payload: bytes) -> str:
    """A reason naming what the bytes look like, for a payload that does not start with Avro's magic."""
    head = payload[:2048]
    if not payload:
        return "empty payload (0 bytes): nothing to decode; check the producer or the download"
    if _MAGIC.startswith(payload):
        return f"truncated Avro container: only {len(payload)} bytes, less than the 4-byte magic; re-fetch it"
    low = head.lstrip().lower()
    if low.startswith((b"<!doctype html", b"<html")) or b"<title>" in low[:512]:
        title = ""
        start = low.find(b"<title>")
        if start >= 0:
            end = low.find(b"</title>", start)
            title = head.lstrip()[start + 7 : end if end > 0 else start + 87].decode("utf-8", "replace")
            title = f" titled {title.strip()!r}"
        return (
            f"not an Avro container: looks like an HTML page{title} (a failed download?); "
            "re-download the alert from the archive"
        )
    if low.startswith(b"<?xml") or low.startswith(b"<"):
        return "not an Avro container: looks like XML/markup text (an error response?); re-download the alert"
    if head.startswith(b"\x1f\x8b"):
        try:
            inner = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 1024)
        except zlib.error:
            inner = b""
        if len(inner) >= 262 and inner[257:262] == b"ustar":
            first = inner[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
            return (
                f"not an Avro container: a gzip-compressed tar archive (first member {first!r}); feed "
                "archives to pipeline.archive.iter_archive, which streams their .avro members"
            )
        return "not an Avro container: gzip-compressed data; decompress it first (or is it a .avro.gz?)"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "not an Avro container: a tar archive; unpack it, or repack it as .tar.gz for iter_archive"
    if head.startswith(b"PK\x03\x04"):
        return "not an Avro container: a ZIP archive; unpack it and ingest the .avro files inside"
    if head.startswith(b"\xff\xd8\xff") or head.startswith(b"\x89PNG"):
        return "not an Avro container: an image (JPEG/PNG), e.g. a stamp saved under a .avro name"
    if head.startswith(b"SIMPLE  ="):
        return "not an Avro container: a FITS file (a stamp or image?), not an alert packet"
    if _MAGIC in head[1:64]:
        at = head.find(_MAGIC)
        return (
            f"not an Avro container: {at} unexpected byte(s) before the Avro magic (a framing header "
            "from a Kafka client or a concatenation?); strip them before decoding"
        )
    if head[:1] == b"\0" and len(payload) > 5:
        schema_id = int.from_bytes(payload[1:5], "big")
        return (
            f"not an Avro container: starts like a Confluent wire-format message (magic 0, schema id "
            f"{schema_id}), a bare Avro datum that needs its schema from a registry; ZTF sends containers"
        )
    text = head.decode("utf-8", "replace")
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    if printable >= 0.95 * len(text):
        first = text.strip().splitlines()[0].strip() if text.strip() else ""
        if first.count("|") >= 3:
            cols = [c.strip() for c in first.split("|")[:5]]
            return (
                f"not an Avro container: a pipe-separated text table (columns {', '.join(cols)}, ...), a "
                "candidate list such as ZTF's 2016 prototype '*_cands.txt', not an alert packet"
            )
        if first.startswith(("{", "[")):
            return "not an Avro container: JSON text; an alert must be a binary Avro container"
        return f"not an Avro container: plain text starting {first[:60]!r}; not an alert packet"
    return (
        f"not an Avro container: starts with bytes {payload[:4].hex(' ')} where an Avro container starts "
        "with 'Obj\\x01'; the file is not an alert packet or is corrupt"
    )


def _collect_names(avro_type, names: dict[str, dict], namespace: str = "") -> None:
    """Register every named type (by short and full name) so later references to it can be resolved."""
    if isinstance(avro_type, list):
        for t in avro_type:
            _collect_names(t, names, namespace)
    elif isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            name = str(avro_type.get("name", ""))
            namespace = str(
                avro_type.get("namespace", namespace if "." not in name else name.rpartition(".")[0])
            )
            short = name.rpartition(".")[2]
            names[short] = avro_type
            names[f"{namespace}.{short}" if namespace else short] = avro_type
            for f in avro_type.get("fields", ()):
                _collect_names(f.get("type"), names, namespace)
        elif kind == "array":
            _collect_names(avro_type.get("items"), names, namespace)
        elif kind == "map":
            _collect_names(avro_type.get("values"), names, namespace)
        elif isinstance(kind, (dict, list)):
            _collect_names(kind, names, namespace)


def _unwrap(avro_type, names: dict[str, dict]):
    """A field's type without 'null' (unions of one real type) and with named references resolved."""
    if isinstance(avro_type, list):
        real = [t for t in avro_type if t != "null"]
        if len(real) != 1:
            return avro_type
        avro_type = real[0]
    if isinstance(avro_type, str) and avro_type in names:
        return names[avro_type]
    if isinstance(avro_type, dict) and isinstance(avro_type.get("type"), (dict, list, str)):
        inner = avro_type["type"]
        if isinstance(inner, (dict, list)) or inner in names:  # {"type": {...}} wrappers
            return _unwrap(inner, names)
    return avro_type


def _record_fields(avro_type, names: dict[str, dict]) -> dict[str, object] | None:
    t = _unwrap(avro_type, names)
    if isinstance(t, dict) and t.get("type") == "record":
        return {f["name"]: _unwrap(f["type"], names) for f in t.get("fields", ())}
    return None


def _array_item_fields(avro_type, names: dict[str, dict]) -> dict[str, object] | None:
    t = _unwrap(avro_type, names)
    if isinstance(t, dict) and t.get("type") == "array":
        return _record_fields(t.get("items"), names)
    return None


def _primitive(avro_type) -> str:
    if isinstance(avro_type, dict):
        return str(avro_type.get("type"))
    return str(avro_type)


def _check_types(where: str, fields: dict[str, object], kinds: dict[str, str]) -> None:
    for name, avro_type in fields.items():
        kind = kinds.get(name)
        if kind is not None and _primitive(avro_type) not in _ACCEPTS[kind]:
            raise UnknownSchemaError(
                f"unknown schema: {where}.{name} has Avro type {json.dumps(avro_type)}, where ZTF alerts "
                f"carry {' or '.join(sorted(_ACCEPTS[kind]))}; not a ZTF alert schema we can map"
            )


def _analyse_schema(text: bytes) -> SchemaInfo:
    try:
        schema = json.loads(text)
    except ValueError as err:
        raise CorruptAvroError(
            f"corrupt Avro container: the writer schema is not valid JSON ({err})"
        ) from err
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
    try:
        parsed = fastavro.parse_schema(schema)
    except Exception as err:  # fastavro raises several types for an invalid schema
        raise UnknownSchemaError(f"unknown schema: the writer schema is not valid Avro ({err})") from err

    names: dict[str, dict] = {}
    _collect_names(schema, names)
    top = {f["name"]: f["type"] for f in schema.get("fields", ())}
    if "candidate" not in top:
        raise UnknownSchemaError(
            f"unknown schema: no 'candidate' record (top-level fields: {', '.join(top) or 'none'}); "
            "not a ZTF alert"
        )
    candidate = _record_fields(top["candidate"], names)
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
        prv = _array_item_fields(top["prv_candidates"], names)
        if prv is None:
            raise UnknownSchemaError("unknown schema: prv_candidates is not an array of records")
        prv_is_forced = "forcediffimflux" in prv
        _check_types("prv_candidates", prv, _FORCED_KIND if prv_is_forced else _CANDIDATE_KIND)
    if "fp_hists" in top:
        fp = _array_item_fields(top["fp_hists"], names)
        if fp is None:
            raise UnknownSchemaError("unknown schema: fp_hists is not an array of records")
        _check_types("fp_hists", fp, _FORCED_KIND)
    return SchemaInfo(parsed=parsed, renames=renames, prv_is_forced=prv_is_forced)


def schema_info(text: bytes) -> SchemaInfo:
    """The analysed writer schema (cached by its JSON text); raises the schema's PacketError if unusable."""
    info = _SCHEMA_CACHE.get(text)
    if info is None:
        try:
            info = _analyse_schema(text)
        except PacketError as err:
            info = err
        if len(_SCHEMA_CACHE) >= _SCHEMA_CACHE_MAX:
            _SCHEMA_CACHE.clear()
        _SCHEMA_CACHE[text] = info
    if isinstance(info, PacketError):
        raise type(info)(str(info))
    return info


def _decompress(codec: str, data: bytes, block: int) -> bytes:
    if codec == "null":
        return data
    try:
        if codec == "deflate":
            return zlib.decompress(data, -15)
        # snappy: raw snappy data followed by the big-endian CRC32 of the uncompressed bytes
        out = bytes(cramjam.snappy.decompress_raw(data[:-4]))
    except Exception as err:
        raise CorruptAvroError(
            f"corrupt Avro container: block {block} does not decompress with codec {codec} ({err})"
        ) from err
    if zlib.crc32(out) != int.from_bytes(data[-4:], "big"):
        raise CorruptAvroError(f"corrupt Avro container: block {block} fails its snappy CRC check")
    return out


def _read_with_fastavro(payload: bytes) -> list[dict]:
    """Codecs we do not decode ourselves (zstandard, bzip2, xz, lz4): fastavro's reader, errors mapped."""
    try:
        return list(fastavro.reader(io.BytesIO(payload)))
    except (EOFError, StopIteration) as err:
        raise TruncatedAvroError(
            f"truncated Avro container: {err or 'data ends early'}; re-fetch it"
        ) from err
    except Exception as err:
        raise CorruptAvroError(f"corrupt Avro container: {type(err).__name__}: {err}") from err


def read_container(payload: bytes) -> Container:
    """Decode an Avro object container file, or raise the PacketError that says why it cannot be."""
    if not payload.startswith(_MAGIC):
        reason = describe_non_avro(payload)
        raise (TruncatedAvroError if reason.startswith("truncated") else NotAvroError)(reason)
    size = len(payload)
    try:
        meta, sync, pos = _read_header(payload)
    except IndexError:
        raise TruncatedAvroError(
            f"truncated Avro container: the file ends ({size} bytes) inside its header; re-fetch it"
        ) from None
    text = meta.get(b"avro.schema")
    if text is None:
        raise CorruptAvroError("corrupt Avro container: the header has no avro.schema entry")
    info = schema_info(text)
    codec = meta.get(b"avro.codec", b"null").decode("ascii", "replace") or "null"
    if codec not in ("null", "deflate", "snappy"):
        return Container(records=_read_with_fastavro(payload), schema=info, codec=codec)

    records: list[dict] = []
    block = 0
    reader = fastavro.schemaless_reader
    parsed = info.parsed
    while pos < size:
        try:
            count, pos = _read_long(payload, pos)
            length, pos = _read_long(payload, pos)
        except IndexError:
            raise TruncatedAvroError(
                f"truncated Avro container: the file ends ({size} bytes) inside the header of block {block}; "
                "re-fetch it"
            ) from None
        if count < 0 or length < 0:
            raise CorruptAvroError(f"corrupt Avro container: block {block} has a negative count or size")
        end = pos + length
        if end + _SYNC_SIZE > size:
            raise TruncatedAvroError(
                f"truncated Avro container: block {block} declares {length} data bytes and a 16-byte sync "
                f"marker, but the file ends {end + _SYNC_SIZE - size} byte(s) short of them ({size} bytes "
                "in all): it was cut short or altered in transfer; re-fetch it"
            )
        if payload[end : end + _SYNC_SIZE] != sync:
            raise CorruptAvroError(
                f"corrupt Avro container: block {block} does not end with the file's sync marker (damaged or "
                "spliced file)"
            )
        data = _decompress(codec, payload[pos:end], block)
        pos = end + _SYNC_SIZE
        stream = io.BytesIO(data)
        try:
            for _ in range(count):
                records.append(reader(stream, parsed))
        except Exception as err:  # fastavro raises EOFError, IndexError, UnicodeDecodeError, ... on bad bytes
            raise CorruptAvroError(
                f"corrupt Avro data: record {len(records)} in block {block} does not decode against the "
                f"file's own writer schema at byte {stream.tell()} of {len(data)} ({type(err).__name__}: "
                f"{err}); the file is damaged"
            ) from err
        if stream.tell() != len(data):
            raise CorruptAvroError(
                f"corrupt Avro data: block {block}'s {count} record(s) end at byte {stream.tell()} of "
                f"{len(data)}; the file is damaged"
            )
        block += 1
    if not records:
        raise CorruptAvroError("empty Avro container: a valid header but no records; nothing to ingest")
    return Container(records=records, schema=info, codec=codec)


def decode_packet(payload: bytes) -> list[dict]:
    """The records of one Avro container file (one ZTF alert each; Fink's multi-alert files hold many)."""
    return read_container(payload).records


def single_alert_container(record: dict, info: SchemaInfo, codec: str) -> bytes:
    """One record re-encoded as its own Avro container with the original writer schema (and codec)."""
    out = io.BytesIO()
    fastavro.writer(
        out, info.parsed, [record], codec=codec if codec in ("null", "deflate", "snappy") else "null"
    )
    return out.getvalue()


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


def _check_forced(entry: dict, where: str) -> dict:
    if entry.get("pid") is None:
        raise MissingFieldError(f"missing required field {where}.pid")
    _check_fid(entry.get("fid"), where)
    jd = entry.get("jd")
    if jd is None or not math.isfinite(jd):
        raise MissingFieldError(f"missing required field {where}.jd (got {jd!r})")
    return entry


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
        raise MissingFieldError(f"missing required field objectId (got {oid!r})")
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

    detections: list[dict] = []
    non_detections: list[dict] = []
    forced: list[dict] = []
    prv = record.get("prv_candidates") or ()
    if info.prv_is_forced:
        forced.extend(_check_forced(p, f"prv_candidates[{i}]") for i, p in enumerate(prv))
    else:
        for i, p in enumerate(prv):
            pjd = p.get("jd")
            if pjd is None or not math.isfinite(pjd):
                raise MissingFieldError(f"missing required field prv_candidates[{i}].jd (got {pjd!r})")
            if p.get("fid") not in ZTF_FIDS:
                _check_fid(p.get("fid"), f"prv_candidates[{i}]")
            if p.get("candid") is None:
                non_detections.append(p)
                continue
            for name in _REQUIRED_PRV_DETECTION:
                if p.get(name) is None:
                    raise MissingFieldError(
                        f"missing required field prv_candidates[{i}].{name} (detection candid {p['candid']})"
                    )
            if p.get("isdiffpos") not in ISDIFFPOS:
                raise InvalidValueError(
                    f"prv_candidates[{i}].isdiffpos is {p.get('isdiffpos')!r}, not one of t, f, 1, 0"
                )
            detections.append(p)
    fp = record.get("fp_hists") or ()
    forced.extend(_check_forced(p, f"fp_hists[{i}]") for i, p in enumerate(fp))

    stamps = tuple(
        s.get("stampData") if isinstance(s := record.get(name), dict) else None for name in _STAMP_FIELDS
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
    )


# ----------------------------------------------------------------------------------------------- columns
def _nullable_int(values: list, dtype: type) -> pd.arrays.IntegerArray:
    try:
        data = np.array(values, dtype=np.int64)
        mask = np.zeros(len(values), dtype=bool)
    except TypeError:  # a None somewhere: the slow path, only for columns that have gaps
        mask = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
        data = np.array([0 if v is None else v for v in values], dtype=np.int64)
    if dtype is np.int32 and (data.size == 0 or (data.min() >= -(2**31) and data.max() < 2**31)):
        data = data.astype(np.int32)
    return pd.arrays.IntegerArray(data, mask)


def column(values: list, kind: str):
    """A typed column from Python values (None = missing) for one of the kinds above."""
    if kind == "f":
        return np.array(values, dtype=np.float64)
    if kind == "q":
        return np.array(values, dtype=np.int64)
    if kind == "h":
        return np.array(values, dtype=np.int16)
    if kind == "b":
        return np.array([ISDIFFPOS[v] for v in values], dtype=np.int8)
    if kind == "i":
        return _nullable_int(values, np.int32)
    if kind == "l":
        return _nullable_int(values, np.int64)
    if kind == "s":
        return pd.array(values, dtype="str")
    raise ValueError(f"unknown column kind {kind!r}")


def _fields(rows: list[dict], names: Iterable[tuple[str, str]]) -> dict[str, object]:
    return {name: column([r.get(name) for r in rows], kind) for name, kind in names}


def _mjd_night(jd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mjd = jd - JD_MJD_OFFSET
    return mjd, observing_night(mjd, SITES[SURVEY])


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
        for p in alert.forced:
            fp_key = (oid, p["pid"])
            if fp_key not in self._fp_keys:
                self._fp_keys.add(fp_key)
                self._fp_rows.append(p)
                self._fp_oid.append(oid)
                self._fp_parent.append(candid)
        return True

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
        cols.update(_fields(cands, ((f, k) for f, k in CANDIDATE_FIELDS if f not in ("jd", "candid"))))
        cols["source"] = column([p[0] for p in self._provenance], "s")
        cols["partition"] = np.array([p[1] for p in self._provenance], dtype=np.int32)
        cols["offset"] = np.array([p[2] for p in self._provenance], dtype=np.int64)
        cols["batch_id"] = column([batch_id] * n, "s")
        return pd.DataFrame(cols)

    def detections_frame(self) -> pd.DataFrame:
        rows = self._det_rows
        mjd, night = _mjd_night(column([r["jd"] for r in rows], "f"))
        cols: dict[str, object] = {
            "oid": column(self._det_oid, "s"),
            "candid": column(self._det_candid, "q"),
            "survey": column([SURVEY] * len(rows), "s"),
            "mjd": mjd,
            "night": night,
        }
        cols.update(_fields(rows, ((f, _CANDIDATE_KIND[f]) for f in DETECTION_FIELDS)))
        cols["parent_candid"] = column(self._det_parent, "q")
        cols["has_stamp"] = np.array(self._det_own, dtype=bool)
        return pd.DataFrame(cols)

    def non_detections_frame(self) -> pd.DataFrame:
        rows = self._nd_rows
        mjd, night = _mjd_night(column([r["jd"] for r in rows], "f"))
        return pd.DataFrame(
            {
                "oid": column(self._nd_oid, "s"),
                "survey": column([SURVEY] * len(rows), "s"),
                "fid": column([r["fid"] for r in rows], "h"),
                "mjd": mjd,
                "night": night,
                "diffmaglim": column([r.get("diffmaglim") for r in rows], "f"),
            }
        )

    def forced_frame(self) -> pd.DataFrame:
        rows = self._fp_rows
        mjd, night = _mjd_night(column([r["jd"] for r in rows], "f"))
        cols: dict[str, object] = {
            "oid": column(self._fp_oid, "s"),
            "survey": column([SURVEY] * len(rows), "s"),
            "parent_candid": column(self._fp_parent, "q"),
            "mjd": mjd,
            "night": night,
        }
        cols.update(_fields(rows, FORCED_FIELDS))
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
