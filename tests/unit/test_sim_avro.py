"""The simulator's Avro layer: piecewise and column-wise encodings must equal fastavro's, byte for byte."""

from __future__ import annotations

import io
import json

import fastavro
import numpy as np
import pytest

from alert_broker.simulator.avro import (
    SCHEMA_DIR,
    ZTF_SCHEMA_SOURCES,
    Assembler,
    ContainerFramer,
    confluent_frame,
    encode_bytes,
    encode_long,
    encode_string,
    lsst_schema,
    sync_marker,
    ztf_schema,
)
from alert_broker.simulator.batch import BatchEncoder, varint_matrix
from alert_broker.simulator.ztf_alerts import _item_union, _items, _record

REAL_402 = "ztf/forced_photometry/3044341005815015012.avro"


def _fastavro_bytes(schema, value) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), value)
    return buf.getvalue()


@pytest.mark.parametrize(
    "n", [0, 1, -1, 63, -64, 64, 127, 128, 300, -300, 2**31, -(2**31), 2**62, -(2**63), 2**63 - 1]
)
def test_encode_long_matches_fastavro(n):
    assert encode_long(n) == _fastavro_bytes("long", n)
    mat, ln = varint_matrix(np.array([n]))
    assert mat[0, : ln[0]].tobytes() == encode_long(n)


def test_strings_and_bytes_match_fastavro():
    assert encode_string("ZTF23ablgler") == _fastavro_bytes("string", "ZTF23ablgler")
    assert encode_bytes(b"\x00\x01" * 300) == _fastavro_bytes("bytes", b"\x00\x01" * 300)


def test_packaged_schemas_equal_the_real_alerts(shared_data):
    for variant, (rel, packaged) in ZTF_SCHEMA_SOURCES.items():
        with open(shared_data / rel, "rb") as fh:
            real = json.loads(fastavro.reader(fh).metadata["avro.schema"])
        assert json.loads((SCHEMA_DIR / packaged).read_text()) == real, variant
        assert ztf_schema(variant) == real


def test_lsst_schema_is_the_latest_major_version():
    import lsst.alert.packet as packet

    schema, version, schema_id = lsst_schema()
    major, minor = packet.get_latest_schema_version()
    assert version == f"{major}.{minor}" and major >= 11
    assert schema["name"] == f"lsst.v{major}_{minor}.alert"
    assert schema_id == int(f"{major}{minor:02d}")


@pytest.mark.parametrize("variant", ["ztf", "fink"])
def test_piecewise_alert_equals_fastavro(shared_data, variant):
    """A real alert re-assembled from separately encoded fields is byte-identical to fastavro's encoding."""
    with open(shared_data / REAL_402, "rb") as fh:
        rec = next(fastavro.reader(fh))
    schema = ztf_schema(variant)
    if variant == "fink":
        rec.pop("fp_hists")
    A = Assembler(schema)
    sch = {f["name"]: f["type"] for f in schema["fields"]}
    prv = BatchEncoder(_record(_items(sch["prv_candidates"])), _item_union(sch["prv_candidates"]))
    rows = rec["prv_candidates"]
    cols = {n: np.array([r[n] for r in rows], dtype=object) for n in prv.names}
    for s in prv.specs:  # numeric object columns -> floats with NaN for null
        if s.kind in ("float", "double"):
            cols[s.name] = np.array([np.nan if v is None else v for v in cols[s.name]], dtype=float)
    nulls = {
        s.name: np.array([r[s.name] is None for r in rows]) for s in prv.specs if s.null_index is not None
    }
    buf, off = prv.encode(cols, len(rows), nulls)
    parts = {
        "schemavsn": A.branch_prefix("schemavsn") + encode_string(rec["schemavsn"]),
        "publisher": A.branch_prefix("publisher") + encode_string(rec["publisher"]),
        "objectId": A.branch_prefix("objectId") + encode_string(rec["objectId"]),
        "candid": A.branch_prefix("candid") + encode_long(rec["candid"]),
        "candidate": A.branch_prefix("candidate") + A.record_encoder("candidate")(rec["candidate"]),
        "prv_candidates": A.array_parts("prv_candidates")(len(rows), buf[off[0] : off[-1]]),
    }
    if "fp_hists" in sch:
        enc = A.item_encoder("fp_hists")
        parts["fp_hists"] = A.array("fp_hists", [enc(r) for r in rec["fp_hists"]])
    for c in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
        parts[c] = A.branch_prefix(c) + A.record_encoder(c)(rec[c])
    assert A.join(parts) == _fastavro_bytes(schema, rec)


def test_batch_encoder_handles_nulls_nan_and_all_primitives():
    schema = {
        "type": "record",
        "name": "r",
        "fields": [
            {"name": "a", "type": "long"},
            {"name": "b", "type": ["null", "float"]},
            {"name": "c", "type": ["double", "null"]},
            {"name": "d", "type": ["null", "string"]},
            {"name": "e", "type": "boolean"},
            {"name": "f", "type": ["null", "int"]},
            {"name": "g", "type": "string"},
        ],
    }
    rng = np.random.default_rng(0)
    n = 500
    cols = {
        "a": rng.integers(-(2**62), 2**62, n),
        "b": np.where(rng.random(n) < 0.3, np.nan, rng.normal(0, 1e3, n)),
        "c": np.where(rng.random(n) < 0.3, np.nan, rng.normal(0, 1e3, n)),
        "d": np.array([None if i % 4 == 0 else f"name-{i}" * (i % 5) for i in range(n)], dtype=object),
        "e": rng.random(n) < 0.5,
        "f": rng.integers(-1000, 1000, n),
        "g": np.array([f"x{i}" for i in range(n)]),
    }
    nulls = {"f": rng.random(n) < 0.5}
    buf, off = BatchEncoder(schema).encode(cols, n, nulls)
    parsed = fastavro.parse_schema(schema)
    for i in range(n):
        rec = {
            "a": int(cols["a"][i]),
            "b": None if np.isnan(cols["b"][i]) else float(cols["b"][i]),
            "c": None if np.isnan(cols["c"][i]) else float(cols["c"][i]),
            "d": cols["d"][i],
            "e": bool(cols["e"][i]),
            "f": None if nulls["f"][i] else int(cols["f"][i]),
            "g": str(cols["g"][i]),
        }
        assert buf[off[i] : off[i + 1]] == _fastavro_bytes(parsed, rec), i


def test_batch_encoder_rejects_nested_types():
    schema = {
        "type": "record",
        "name": "r",
        "fields": [{"name": "x", "type": {"type": "array", "items": "int"}}],
    }
    with pytest.raises(TypeError, match="flat primitive"):
        BatchEncoder(schema)


@pytest.mark.parametrize("codec", ["null", "snappy"])
def test_container_framing_reads_back_and_is_deterministic(codec):
    schema = {
        "type": "record",
        "name": "r",
        "fields": [{"name": "x", "type": "long"}, {"name": "s", "type": "string"}],
    }
    payload = _fastavro_bytes(schema, {"x": 42, "s": "hello" * 100})
    f1 = ContainerFramer(schema, codec, sync_marker(7, "ztf")).frame(payload)
    f2 = ContainerFramer(schema, codec, sync_marker(7, "ztf")).frame(payload)
    assert f1 == f2
    assert ContainerFramer(schema, codec, sync_marker(8, "ztf")).frame(payload) != f1
    reader = fastavro.reader(io.BytesIO(f1))
    assert reader.codec == codec
    assert list(reader) == [{"x": 42, "s": "hello" * 100}]


def test_confluent_wire_format():
    framed = confluent_frame(1101, b"\x54")
    assert framed[0] == 0 and int.from_bytes(framed[1:5], "big") == 1101 and framed[5:] == b"\x54"
