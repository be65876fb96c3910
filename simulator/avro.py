"""Avro for the simulator: load the writer schemas, encode alerts fast, frame them as container files.

Speed comes from encoding each record once: an alert's binary encoding is the concatenation of its fields'
encodings, an array is `count, items..., 0`, a union is `branch index, value`. A detection that appears in the
history of ten later alerts is encoded once and its bytes reused ten times. The result is byte-for-byte what
`fastavro.schemaless_writer` gives for the whole record (the unit tests check this).

Container files are framed by hand with a sync marker derived from the run's seed, so that the same seed gives
byte-identical files (fastavro's writer draws a random marker).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import struct
import zlib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import cramjam
import fastavro
import lsst.alert.packet as packet

SCHEMA_DIR = Path(__file__).with_name("schemas")
#: Where the real alerts carrying each ZTF schema live in the shared data (`../shared/data/ztf/...`).
ZTF_SCHEMA_SOURCES = {
    "ztf": ("ztf/forced_photometry/3044341005815015012.avro", "ztf_alert_4.02.avsc"),
    "fink": (
        "ztf/fink_sample_1166/005be9bb33382a1f46911fa341cdfeee0ddd33d5.avro",
        "ztf_alert_4.02_fink.avsc",
    ),
}


def shared_data_dir() -> Path | None:
    """The shared real-data folder if present (BROKER_SHARED_DATA, else ../shared/data beside the repo)."""
    env = os.environ.get("BROKER_SHARED_DATA")
    p = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return p if p.is_dir() else None


@lru_cache(maxsize=4)
def ztf_schema(variant: str = "ztf") -> dict:
    """The ZTF 4.02 writer schema, read from a real alert in the shared data, else from the packaged copy.

    `ztf`: ZTF's own `ztf.alert` schema (with `fp_hists`), as ZTF's Kafka stream and archive publish it.
    `fink`: the same fields as Fink re-serialises them (`topLevelRecord`, every field nullable, no fp_hists).
    """
    try:
        rel, packaged = ZTF_SCHEMA_SOURCES[variant]
    except KeyError:
        raise ValueError(
            f"unknown ZTF schema variant {variant!r}; expected one of {sorted(ZTF_SCHEMA_SOURCES)}"
        ) from None
    root = shared_data_dir()
    if root is not None and (root / rel).is_file():
        with open(root / rel, "rb") as fh:
            return json.loads(fastavro.reader(fh).metadata["avro.schema"])
    return json.loads((SCHEMA_DIR / packaged).read_text())


@lru_cache(maxsize=2)
def lsst_schema() -> tuple[dict, str, int]:
    """(resolved schema, version string, registry id) of the latest `lsst.alert` schema in lsst-alert-packet."""
    schema = packet.Schema.from_file()
    major, minor = packet.get_latest_schema_version()
    return _sorted_keys(schema.definition), f"{major}.{minor}", schema.get_schema_id()


def _sorted_keys(obj):
    """A deep copy with every dict's keys in sorted order. lsst-alert-packet resolves its schema with an order
    of keys that follows Python's string hashing (PYTHONHASHSEED); the container header's JSON must not."""
    if isinstance(obj, dict):
        return {k: _sorted_keys(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [_sorted_keys(v) for v in obj]
    return copy.deepcopy(obj)


# ------------------------------------------------------------------------------------------- primitives ----
def encode_long(n: int) -> bytes:
    """Avro long: zig-zag then base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z & ~0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def encode_bytes(b: bytes) -> bytes:
    return encode_long(len(b)) + b


def encode_string(s: str) -> bytes:
    return encode_bytes(s.encode())


def _is_null(t) -> bool:
    return t == "null" or (isinstance(t, dict) and t.get("type") == "null")


class Assembler:
    """Encode an alert schema's records piecewise and join the pieces into the alert's bytes."""

    def __init__(self, schema: dict):
        self.schema = schema
        self.named: dict = {}
        self.parsed = fastavro.parse_schema(copy.deepcopy(schema), named_schemas=self.named)
        self.fields = [f["name"] for f in schema["fields"]]
        self._types = {f["name"]: f["type"] for f in schema["fields"]}

    def _parse(self, t):
        return fastavro.parse_schema(copy.deepcopy(t), named_schemas=dict(self.named))

    def _array_info(self, name: str) -> tuple[int | None, int | None, object]:
        """(union index of the array branch or None, union index of null or None, item type)."""
        t = self._types[name]
        if isinstance(t, list):
            idx = next(i for i, b in enumerate(t) if isinstance(b, dict) and b.get("type") == "array")
            nul = next((i for i, b in enumerate(t) if _is_null(b)), None)
            return idx, nul, t[idx]["items"]
        return None, None, t["items"]

    def item_encoder(self, name: str) -> Callable[[dict], bytes]:
        """Encoder of one item of array field `name` (bytes include the item's own union index, if any)."""
        _, _, items = self._array_info(name)
        p = self._parse(items)
        writer = fastavro.schemaless_writer

        def enc(value: dict) -> bytes:
            buf = io.BytesIO()
            writer(buf, p, value)
            return buf.getvalue()

        return enc

    def record_encoder(self, name: str) -> Callable[[dict], bytes]:
        """Encoder of the *value* of a record field (or its non-null union branch), without the union index."""
        t = self._types[name]
        if isinstance(t, list):
            t = next(b for b in t if not _is_null(b))
        if isinstance(t, str) and t in self.named:  # a reference to a named type defined earlier
            t = self.named[t]
        p = self._parse(t)
        writer = fastavro.schemaless_writer

        def enc(value: dict) -> bytes:
            buf = io.BytesIO()
            writer(buf, p, value)
            return buf.getvalue()

        return enc

    def branch_prefix(self, name: str, null: bool = False) -> bytes:
        """The union index bytes for field `name` (non-null branch unless `null`); b'' for plain types."""
        t = self._types[name]
        if not isinstance(t, list):
            if null:
                raise ValueError(f"field {name!r} is not nullable")
            return b""
        for i, b in enumerate(t):
            if _is_null(b) == null:
                return encode_long(i)
        raise ValueError(f"field {name!r} has no {'null' if null else 'non-null'} branch")

    def array(self, name: str, items: list[bytes]) -> bytes:
        """Encoding of array field `name` from pre-encoded items; an empty list becomes null where allowed."""
        idx, nul, _ = self._array_info(name)
        if not items:
            if nul is not None:
                return encode_long(nul)
            return b"\x00"
        body = encode_long(len(items)) + b"".join(items) + b"\x00"
        return (encode_long(idx) if idx is not None else b"") + body

    def array_parts(self, name: str) -> Callable[[int, bytes], bytes]:
        """Encoder of array field `name` from (item count, concatenated item bytes); 0 items -> null if allowed."""
        idx, nul, _ = self._array_info(name)
        head = encode_long(idx) if idx is not None else b""
        empty = encode_long(nul) if nul is not None else b"\x00"

        def enc(count: int, block: bytes) -> bytes:
            if count == 0:
                return empty
            return b"".join((head, encode_long(count), block, b"\x00"))

        return enc

    def join(self, parts: dict[str, bytes]) -> bytes:
        try:
            return b"".join([parts[f] for f in self.fields])
        except KeyError as exc:
            raise KeyError(f"no encoding given for alert field {exc.args[0]!r}") from None


# --------------------------------------------------------------------------------------------- container ---
def sync_marker(seed: int, survey: str) -> bytes:
    return hashlib.md5(f"alert-simulator/{survey}/{seed}".encode()).digest()


class ContainerFramer:
    """One-record Avro container files with a fixed header (schema, codec) and sync marker."""

    def __init__(self, schema: dict, codec: str, sync: bytes):
        if codec not in ("null", "snappy"):
            raise ValueError(f"codec must be 'null' or 'snappy', not {codec!r}")
        self.codec = codec
        self.sync = sync
        meta = {
            "avro.codec": codec.encode(),
            "avro.schema": json.dumps(schema, separators=(",", ":")).encode(),
        }
        body = (
            encode_long(len(meta))
            + b"".join(encode_string(k) + encode_bytes(v) for k, v in meta.items())
            + b"\x00"
        )
        self.header = b"Obj\x01" + body + sync
        if codec == "snappy":
            self._snappy = cramjam.snappy.compress_raw

    def frame(self, payload: bytes) -> bytes:
        if self.codec == "snappy":
            payload = bytes(self._snappy(payload)) + struct.pack(">I", zlib.crc32(payload) & 0xFFFFFFFF)
        return b"".join((self.header, b"\x02", encode_long(len(payload)), payload, self.sync))


def confluent_frame(schema_id: int, payload: bytes) -> bytes:
    """Confluent wire format (magic 0, 4-byte schema id, schemaless Avro), as Rubin's Kafka stream sends."""
    return b"\x00" + struct.pack(">I", schema_id) + payload
