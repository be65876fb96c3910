"""Avro object container files, read our own way: bytes -> records, or a ``PacketError`` saying why not.

We parse the container ourselves and cache the analysed writer schema by its JSON text: every alert packet
repeats the same tens of kB of schema, and re-parsing it per packet (what ``fastavro.reader`` does) is a fifth
of the decode cost. Records are read by a reader compiled per writer schema (``surveys.compiled_reader``: the
same records, ~3.5x faster on ZTF alerts), fastavro reading whatever it leaves (schemas it does not compile,
records it refuses, so errors stay fastavro's). Which survey a schema belongs to, and whether we can
map it, is the survey adapters' business: ``read_container`` takes the function that analyses a writer schema
(see ``alert_broker.surveys.registry``).

A payload may also arrive with a schema-registry prefix (Confluent's wire format: a zero byte and a 4-byte
schema id) in front of the container; ``unframe`` strips it. A prefix followed by a bare (schemaless) Avro
datum is told apart and named in the dead letter's reason.

Hostile containers (docs/input-validation.md): a writer schema over ``MAX_SCHEMA_BYTES`` is refused before it
is parsed or cached; a schema whose arrays or maps could hold items that take no bytes (a count of 10^18 items
in a few bytes) is refused; blocks are decompressed within a budget of ``MAX_DECODED_BYTES`` per container (a
decompression bomb stops there), with the codecs whose output can be bounded (null, deflate, snappy, bzip2, xz);
a block whose records average over ``SHAPE_CHECK_BYTES`` is first read for its shape only (the length of each
top-level array, its items decoded as empty records), so an alert with 10^5 history entries is refused before
10^5 dicts are built.
"""

from __future__ import annotations

import bz2
import io
import json
import lzma
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import cramjam
import fastavro

from alert_broker.surveys.compiled_reader import ItemBlock, RecordReader, compile_reader
from alert_broker.surveys.errors import (
    CorruptAvroError,
    NotAvroError,
    OversizeError,
    TruncatedAvroError,
    UnknownSchemaError,
)
from alert_broker.surveys.plausibility import (
    MAX_DECODED_BYTES,
    MAX_SCHEMA_BYTES,
    history_size_problem,
)

MAGIC = b"Obj\x01"
_MAGIC = MAGIC
_SYNC_SIZE = 16
#: Confluent's schema-registry wire format: magic byte 0, then a big-endian 4-byte schema id.
WIRE_PREFIX_SIZE = 5


class AnalysedSchema(Protocol):
    """What an adapter learnt about a writer schema: at least the parsed schema fastavro decodes with."""

    parsed: Any


@dataclass(frozen=True, slots=True)
class Container:
    records: list[dict]
    schema: Any  # the adapter's analysed schema (has ``parsed``)
    codec: str
    #: a schema-registry message's datum (its one record's bytes as they arrived), for ``wrap_datum``
    datum: bytes | memoryview | None = None


Analyse = Callable[[bytes], AnalysedSchema]


def unframe(payload: bytes) -> bytes:
    """The container inside ``payload``: the payload itself, or what follows a schema-registry prefix."""
    if (
        len(payload) > WIRE_PREFIX_SIZE + 4
        and payload[:1] == b"\0"
        and payload[WIRE_PREFIX_SIZE:].startswith(MAGIC)
    ):
        return payload[WIRE_PREFIX_SIZE:]
    return payload


def wire_schema_id(payload: bytes) -> int | None:
    """The schema id of a Confluent wire-format message (``None`` for anything else)."""
    if len(payload) > WIRE_PREFIX_SIZE and payload[:1] == b"\0":
        return int.from_bytes(payload[1:WIRE_PREFIX_SIZE], "big")
    return None


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
            try:
                key.decode("utf-8")  # Avro's metadata keys are strings
            except UnicodeDecodeError:
                raise CorruptAvroError(
                    f"corrupt Avro container: a header metadata key ({bytes(key[:40])!r}) is not UTF-8 text"
                ) from None
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


def load_schema(text: bytes) -> dict:
    """A writer schema's JSON, or the PacketError that says it is not one."""
    if len(text) > MAX_SCHEMA_BYTES:
        raise OversizeError(
            f"writer schema of {len(text)} bytes, over the {MAX_SCHEMA_BYTES // 1024} kB limit (alert schemas "
            "are 8-30 kB): not parsed"
        )
    try:
        schema = json.loads(text)
    except ValueError as err:  # UnicodeDecodeError too
        raise CorruptAvroError(
            f"corrupt Avro container: the writer schema is not valid JSON ({err})"
        ) from err
    except RecursionError:
        raise CorruptAvroError(
            "corrupt Avro container: the writer schema nests too deeply to be one"
        ) from None
    return schema


def _min_size(avro_type, names: dict[str, dict], seen: set[int], bad: list[str], where: str) -> int:
    """The fewest bytes a value of ``avro_type`` takes; records ``where`` an array or map whose items can take
    none (in ``bad``)."""
    if isinstance(avro_type, list):  # a union: the branch index takes a byte at least
        for t in avro_type:
            _min_size(t, names, seen, bad, where)
        return 1
    if isinstance(avro_type, str):
        if avro_type == "null":
            return 0
        if avro_type == "float":
            return 4
        if avro_type == "double":
            return 8
        if avro_type in ("boolean", "int", "long", "string", "bytes"):
            return 1
        named = names.get(avro_type)
        return _min_size(named, names, seen, bad, where) if named is not None else 1
    if not isinstance(avro_type, dict):
        return 1
    kind = avro_type.get("type")
    if kind in ("record", "error"):
        if id(avro_type) in seen:  # a recursive reference: it must go through a union or an array
            return 1
        seen.add(id(avro_type))
        total = 0
        for f in avro_type.get("fields", ()):
            if isinstance(f, dict):
                total += _min_size(f.get("type"), names, seen, bad, f"{where}.{f.get('name')}")
        seen.discard(id(avro_type))
        return total
    if kind in ("array", "map"):
        items = avro_type.get("items" if kind == "array" else "values")
        if _min_size(items, names, seen, bad, f"{where}[]") == 0:
            bad.append(where)
        return 1
    if kind == "fixed":
        size = avro_type.get("size")
        return size if isinstance(size, int) and size > 0 else 0
    if kind == "enum":
        return 1
    if isinstance(kind, dict | list | str):  # {"type": "long", "logicalType": ...}, {"type": {...}}, a name
        return _min_size(kind, names, seen, bad, where)
    return 1


def check_no_free_items(schema: dict) -> None:
    """Refuse a schema whose records, arrays or maps can hold values that take no bytes: a block count or
    array length of 10^18 in a few bytes would make the reader loop (and allocate) for ever."""
    names: dict[str, dict] = {}
    collect_names(schema, names)
    bad: list[str] = []
    name = str(schema.get("name", "record")) if isinstance(schema, dict) else "the schema"
    if _min_size(schema, names, set(), bad, name) == 0:
        bad.insert(0, f"the record {name:.40}")
    if bad:
        raise UnknownSchemaError(
            f"unknown schema: {', '.join(b[:80] for b in bad[:3])} can hold values that take no bytes, so a few "
            "bytes could claim billions of them; no alert schema has that"
        )


def parse_schema(schema: dict) -> Any:
    """fastavro's parsed form of a writer schema, or UnknownSchemaError."""
    try:
        check_no_free_items(schema)
    except RecursionError:
        raise UnknownSchemaError("unknown schema: the writer schema nests too deeply") from None
    try:
        return fastavro.parse_schema(schema)
    except Exception as err:  # fastavro raises several types for an invalid schema
        raise UnknownSchemaError(f"unknown schema: the writer schema is not valid Avro ({err})") from err


def schema_header(payload: bytes) -> bytes:
    """The writer schema text of a container (what adapters recognise a survey by)."""
    meta, _, _ = _read_header(payload)
    text = meta.get(b"avro.schema")
    if text is None:
        raise CorruptAvroError("corrupt Avro container: the header has no avro.schema entry")
    return text


def collect_names(avro_type, names: dict[str, dict], namespace: str = "") -> None:
    """Register every named type (by short and full name) so later references to it can be resolved."""
    if isinstance(avro_type, list):
        for t in avro_type:
            collect_names(t, names, namespace)
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
                collect_names(f.get("type"), names, namespace)
        elif kind == "array":
            collect_names(avro_type.get("items"), names, namespace)
        elif kind == "map":
            collect_names(avro_type.get("values"), names, namespace)
        elif isinstance(kind, (dict, list)):
            collect_names(kind, names, namespace)


def unwrap(avro_type, names: dict[str, dict]):
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
            return unwrap(inner, names)
    return avro_type


def record_fields(avro_type, names: dict[str, dict]) -> dict[str, object] | None:
    t = unwrap(avro_type, names)
    if isinstance(t, dict) and t.get("type") == "record":
        return {f["name"]: unwrap(f["type"], names) for f in t.get("fields", ())}
    return None


def array_item_fields(avro_type, names: dict[str, dict]) -> dict[str, object] | None:
    t = unwrap(avro_type, names)
    if isinstance(t, dict) and t.get("type") == "array":
        return record_fields(t.get("items"), names)
    return None


def primitive(avro_type) -> str:
    if isinstance(avro_type, dict):
        return str(avro_type.get("type"))
    return str(avro_type)


#: The Avro codecs the broker reads: those whose output it can bound while decompressing.
CODECS = ("null", "deflate", "snappy", "bzip2", "xz")
#: A block whose records average more than this (real alerts: 50-500 kB) is read for its shape first.
SHAPE_CHECK_BYTES = 2**20
_SHAPES: dict[bytes, Any] = {}
_SHAPES_MAX = 64


def _empty_records(avro_type: Any) -> Any:
    """A (parsed) type with every record in it emptied (a reader schema that skips the writer's fields)."""
    if isinstance(avro_type, list):
        return [_empty_records(t) for t in avro_type]
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind in ("record", "error"):
            return {"type": "record", "name": avro_type["name"], "fields": []}
        if kind == "array":
            return {"type": "array", "items": _empty_records(avro_type.get("items"))}
        if kind == "map":
            return {"type": "map", "values": _empty_records(avro_type.get("values"))}
    return avro_type


def shape_reader(text: bytes, parsed: Any) -> Any:
    """A reader schema of the top-level record with every nested record emptied (None when it cannot be
    built: the shape check is then skipped and the full decode reports what is wrong)."""
    if text in _SHAPES:
        return _SHAPES[text]
    try:
        fields = [{"name": f["name"], "type": _empty_records(f["type"])} for f in parsed["fields"]]
        shape = fastavro.parse_schema({"type": "record", "name": parsed["name"], "fields": fields})
    except Exception:  # a schema this simple transform does not fit: no shape check
        shape = None
    if len(_SHAPES) >= _SHAPES_MAX:
        _SHAPES.clear()
    _SHAPES[text] = shape
    return shape


def check_shape(data: bytes, count: int, parsed: Any, shape: Any) -> None:
    """Refuse a block one of whose records has a top-level array longer than ``MAX_HISTORY``, reading it with
    every nested record emptied (cheap: no dict per field)."""
    stream = io.BytesIO(data)
    for i in range(count):
        try:
            record = fastavro.schemaless_reader(stream, parsed, shape)
        except Exception:  # damaged data: the full decode says so, with its own reason
            return
        for name, value in record.items() if isinstance(record, dict) else ():
            if isinstance(value, list) and (problem := history_size_problem(name, value)):
                where = f"record {i + 1} of {count} in this block: " if count > 1 else ""
                raise OversizeError(where + problem)


_READERS: dict[tuple[bytes, frozenset[str]], RecordReader | None] = {}


def record_reader(key: bytes, parsed: Any, columnar: frozenset[str] = frozenset()) -> RecordReader | None:
    """The compiled reader of a writer schema (None: fastavro reads its records), cached by ``key`` (the
    schema's text, or ``b"wire:ID"`` for a schema-registry id) as the shape readers are. ``columnar``: the
    top-level arrays of records it leaves in columns (``compiled_reader.ItemBlock``)."""
    cache_key = (key, columnar)
    if cache_key in _READERS:
        return _READERS[cache_key]
    reader = compile_reader(parsed, columnar)
    if len(_READERS) >= _SHAPES_MAX:
        _READERS.clear()
    _READERS[cache_key] = reader
    return reader


def read_records(
    data: bytes, stream: io.BytesIO, count: int, parsed: Any, fast: RecordReader | None, out: list
) -> None:
    """Append the ``count`` records at the position of ``stream`` (a stream over ``data``) to ``out``: the
    compiled reader's while it reads them, fastavro's from the first it leaves (which raises what is wrong
    with it). The stream ends after the last record read."""
    done = 0
    if fast is not None:
        at = stream.tell()
        while done < count:
            got = fast.read(data, at)
            if got is None:
                break
            out.append(got[0])
            at = got[1]
            done += 1
        stream.seek(at)
    for _ in range(done, count):
        out.append(fastavro.schemaless_reader(stream, parsed))


def _uvarint(buf: bytes) -> int:
    """The unsigned varint at the start of ``buf`` (snappy's uncompressed length); -1 if there is none."""
    n = shift = 0
    for b in buf[:10]:
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n
        shift += 7
    return -1


def _too_big(block: int, limit: int) -> OversizeError:
    return OversizeError(
        f"Avro data over the {MAX_DECODED_BYTES // 2**20} MiB one packet may hold once decompressed (block "
        f"{block} would pass it with {limit} bytes left): a decompression bomb or a damaged file; not decoded"
    )


def _decompress(codec: str, data: bytes, block: int, limit: int) -> bytes:
    """A block's data, decompressed; at most ``limit`` bytes, else OversizeError."""
    if codec == "null":
        out = data
    else:
        try:
            if codec == "deflate":
                inflater = zlib.decompressobj(-15)
                out = inflater.decompress(data, limit + 1)
                if len(out) <= limit and not inflater.eof:
                    out += inflater.flush()
                    if not inflater.eof:
                        raise zlib.error("incomplete or truncated stream")
            elif codec == "snappy":
                # raw snappy data (its uncompressed length first) + the big-endian CRC32 of the uncompressed bytes
                declared = _uvarint(data[:-4])
                if declared > limit:
                    raise _too_big(block, limit)
                out = bytes(cramjam.snappy.decompress_raw(data[:-4]))
                if zlib.crc32(out) != int.from_bytes(data[-4:], "big"):
                    raise CorruptAvroError(
                        f"corrupt Avro container: block {block} fails its snappy CRC check"
                    )
            else:
                inflater = bz2.BZ2Decompressor() if codec == "bzip2" else lzma.LZMADecompressor()
                out = inflater.decompress(data, limit + 1)
                if len(out) <= limit and not inflater.eof:
                    raise EOFError("compressed data ends before the end-of-stream marker")
        except (CorruptAvroError, OversizeError):
            raise
        except Exception as err:
            raise CorruptAvroError(
                f"corrupt Avro container: block {block} does not decompress with codec {codec} ({err})"
            ) from err
    if len(out) > limit:
        raise _too_big(block, limit)
    return out


def read_container(payload: bytes, analyse: Analyse, columnar: bool = False) -> Container:
    """Decode an Avro object container file, or raise the PacketError that says why it cannot be. ``analyse``
    turns the writer schema's text into the adapter's analysed schema (raising if no adapter can map it).
    ``columnar``: leave the arrays the adapter names (its analysed schema's ``columnar``) in columns; the
    records then hold ``compiled_reader.ItemBlock``s there (sequences of the same dicts, built on demand)."""
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
    info = analyse(text)
    codec = meta.get(b"avro.codec", b"null").decode("ascii", "replace") or "null"
    if codec not in CODECS:
        raise CorruptAvroError(
            f"unsupported Avro codec {codec[:40]!r}: the broker reads {', '.join(CODECS)} (no alert stream uses "
            "another); re-encode the file with one of them"
        )

    records: list[dict] = []
    block = 0
    budget = MAX_DECODED_BYTES
    parsed = info.parsed
    fast = record_reader(text, parsed, getattr(info, "columnar", frozenset()) if columnar else frozenset())
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
        data = _decompress(codec, payload[pos:end], block, budget)
        budget -= len(data)
        pos = end + _SYNC_SIZE
        if count and len(data) > count * SHAPE_CHECK_BYTES:
            shape = shape_reader(text, parsed)
            if shape is not None:
                check_shape(data, count, parsed, shape)
        stream = io.BytesIO(data)
        try:
            read_records(data, stream, count, parsed, fast, records)
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


#: Container headers (with their sync marker) by writer schema: {id(info): (info, header, sync)}.
_HEADERS: dict[int, tuple[Any, bytes, bytes]] = {}
_MAX_HEADERS = 256


def _header(info: AnalysedSchema) -> tuple[bytes, bytes]:
    """(header, sync marker) of a null-codec container of ``info``'s writer schema: fastavro's own, written once
    per schema (an empty container is its header, the sync marker its last 16 bytes)."""
    got = _HEADERS.get(id(info))
    if got is None or got[0] is not info:
        out = io.BytesIO()
        fastavro.writer(out, info.parsed, [], codec="null")
        header = out.getvalue()
        if len(_HEADERS) >= _MAX_HEADERS:
            _HEADERS.clear()
        got = _HEADERS[id(info)] = (info, header, header[-16:])
    return got[1], got[2]


def _size(n: int) -> bytes:
    """A non-negative Avro long (zig-zag, base-128 varint)."""
    z = n << 1
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def wrap_datum(datum: bytes | memoryview, info: AnalysedSchema) -> bytes:
    """A null-codec container of one record whose Avro bytes are ``datum``, under ``info``'s writer schema: what
    ``single_alert_container`` writes for that record, without re-encoding it. For a schema-registry message
    (Rubin's stream) the archive's container then holds the datum exactly as it arrived, and costs a copy:
    fastavro re-encoding a real LSST alert took 0.45-1.1 ms, ten times reading it."""
    header, sync = _header(info)
    return b"".join((header, b"\x02", _size(len(datum)), datum, sync))


def materialised(record: Any) -> Any:
    """``record`` with any ``ItemBlock`` among its values replaced by its list of dicts (for fastavro's writer)."""
    if isinstance(record, dict) and any(isinstance(v, ItemBlock) for v in record.values()):
        return {k: v.rows() if isinstance(v, ItemBlock) else v for k, v in record.items()}
    return record


def single_alert_container(record: dict, info: AnalysedSchema, codec: str) -> bytes:
    """One record re-encoded as its own Avro container with the original writer schema (and codec)."""
    out = io.BytesIO()
    fastavro.writer(
        out, info.parsed, [record], codec=codec if codec in ("null", "deflate", "snappy") else "null"
    )
    return out.getvalue()
