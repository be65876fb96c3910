"""The LSST adapter on real Rubin alerts and on every schema version lsst-alert-packet ships."""

from __future__ import annotations

import copy
import io
import json
import math
import os
import struct
from pathlib import Path

import fastavro
import lsst.alert.packet as lsst_packet
import numpy as np
import pytest

from alert_broker.features.night import SITES, observing_night
from alert_broker.surveys import RawMessage, decode_batch
from alert_broker.surveys.lsst import (
    AB_ZERO_POINT_NJY,
    FID,
    OID_PREFIX,
    limiting_magnitude,
    magnitudes,
    packaged_schemas,
)
from alert_broker.surveys.registry import SurveyRegistry

SCHEMA_ROOT = Path(os.path.dirname(lsst_packet.__file__)) / "schema"


def _real(shared_data: Path, version: str) -> list[RawMessage]:
    files = sorted((shared_data / "lsst" / version).glob("*.avro"))
    return [RawMessage(f"archive:{version}", 0, i, f.read_bytes(), key=f.name) for i, f in enumerate(files)]


def _records(payload: bytes) -> list[dict]:
    return list(fastavro.reader(io.BytesIO(payload)))


@pytest.mark.parametrize("version, n_alerts", [("v7_4", 100), ("v9_0", 100), ("v10_0", 7)])
def test_real_packets_decode_without_dead_letters(shared_data, version, n_alerts):
    msgs = _real(shared_data, version)
    tables, dead, raw = decode_batch(msgs, "b1")
    assert dead == []
    assert len(tables.alerts) == n_alerts and len(raw) == n_alerts
    assert (tables.alerts["survey"] == "lsst").all()
    assert set(tables.alerts["schemavsn"]) == {f"lsst.{version}"}
    # every diaSourceId of every packet (alert and history) is a detection exactly once
    expected = set()
    for m in msgs:
        for rec in _records(m.payload):
            expected.add(rec["diaSource"]["diaSourceId"])
            expected |= {p["diaSourceId"] for p in rec.get("prvDiaSources") or ()}
    assert tables.detections["candid"].dtype == np.int64
    assert set(tables.detections["candid"]) == expected and tables.detections["candid"].is_unique
    assert tables.detections["oid"].str.startswith(OID_PREFIX).all()


def test_v10_objects_carry_their_whole_light_curves(shared_data):
    msgs = _real(shared_data, "v10_0")
    tables, _, _ = decode_batch(msgs, "b1")
    per_object = tables.detections.groupby("oid").size()
    oid_of = dict(zip(tables.alerts["candid"], tables.alerts["oid"], strict=True))
    for m in msgs:
        for rec in _records(m.payload):
            oid = oid_of[rec["diaSource"]["diaSourceId"]]
            history = {p["diaSourceId"] for p in rec["prvDiaSources"] or ()} | {
                rec["diaSource"]["diaSourceId"]
            }
            assert per_object[oid] >= len(history)
    assert per_object.max() > 250  # ~300 previous sources
    assert len(tables.forced_photometry) > 1000 and tables.forced_photometry["pid"].notna().all()


def test_photometry_is_kept_as_flux_and_derived_as_ztf_magnitudes(shared_data):
    tables, _, _ = decode_batch(_real(shared_data, "v10_0"), "b1")
    det = tables.detections
    flux, err = det["psfFlux"].to_numpy(), det["psfFluxErr"].to_numpy()
    ok = np.isfinite(flux) & (flux != 0)
    np.testing.assert_allclose(det["magpsf"][ok], 31.4 - 2.5 * np.log10(np.abs(flux[ok])), rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        det["sigmapsf"][ok], 2.5 / math.log(10) * err[ok] / np.abs(flux[ok]), rtol=1e-12
    )
    assert (det["isdiffpos"][ok] == np.sign(flux[ok])).all()
    assert set(det["band"]) <= set(FID) and (det["fid"] == det["band"].map(FID)).all()
    assert det["distnr"].isna().all()  # no ZTF-style reference source
    np.testing.assert_array_equal(det["flux"], det["psfFlux"])


def test_night_is_the_evening_at_cerro_pachon(shared_data):
    tables, _, _ = decode_batch(_real(shared_data, "v9_0"), "b1")
    mjd = tables.alerts["mjd"].to_numpy()
    np.testing.assert_array_equal(tables.alerts["night"], observing_night(mjd, SITES["lsst"]))
    # 60924.33 MJD = 2025-09-06 07:55 UTC = the night that began on the evening of 2025-09-05 in Chile
    assert set(tables.alerts["night"]) == {20250905}


def test_analytic_magnitudes():
    mag, sigma, sign = magnitudes(np.array([3631e9, -1000.0, 0.0]), np.array([3631e8, 100.0, 1.0]))
    assert mag[0] == pytest.approx(AB_ZERO_POINT_NJY - 2.5 * np.log10(3631e9))  # 3631 Jy is AB magnitude 0
    assert mag[0] == pytest.approx(0.0, abs=1e-3)
    assert mag[1] == pytest.approx(31.4 - 7.5) and sign.tolist() == [1, -1, 1]
    assert sigma[1] == pytest.approx(1.0857362 / 10, rel=1e-6)
    assert np.isnan(mag[2])
    assert limiting_magnitude(np.array([200.0]))[0] == pytest.approx(31.4 - 2.5 * np.log10(1000.0))


def _sample(version: tuple[int, int]) -> dict:
    path = SCHEMA_ROOT / str(version[0]) / str(version[1]) / "sample_data" / "fakeAlert.avro"
    return _records(path.read_bytes())[0]


def _plausible_times(record: dict) -> dict:
    """lsst-alert-packet's 7.x fake alerts carry a Unix time (1480360995.0) as ``midpointMjdTai``, an MJD in
    the year 4 million that the plausibility rules refuse (docs/input-validation.md; tested in
    test_fuzz_decode.py): give them, and their history, a time in Rubin's era."""
    for src in [record["diaSource"], *(record.get("prvDiaSources") or ())]:
        if src.get("midpointMjdTai") is not None and src["midpointMjdTai"] > 1e5:
            src["midpointMjdTai"] = 60902.99
    return record


def _wire(schema_id: int, schema: dict, record: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return b"\0" + struct.pack(">I", schema_id) + buf.getvalue()


def test_every_packaged_version_from_7_decodes_from_containers_and_wire_frames():
    versions = list(packaged_schemas())
    assert versions[0] == (7, 0) and len(versions) >= 10
    msgs = []
    for i, (version, packaged) in enumerate(packaged_schemas().items()):
        record = _plausible_times(_sample(version))
        record["diaSource"]["diaSourceId"] += 1000 + i  # distinct alerts
        container = io.BytesIO()
        fastavro.writer(container, fastavro.parse_schema(packaged.schema), [record])
        msgs.append(RawMessage("c", 0, i, container.getvalue()))
        wire_record = copy.deepcopy(record)
        wire_record["diaSource"]["diaSourceId"] += 500
        msgs.append(RawMessage("k", 0, i, _wire(packaged.schema_id, packaged.schema, wire_record)))
    tables, dead, raw = decode_batch(msgs, "b1")
    assert dead == []
    assert len(tables.alerts) == 2 * len(versions)
    got = sorted(set(tables.alerts["schemavsn"]))
    assert got == sorted(f"lsst.v{a}_{b}" for a, b in versions)
    # the archive keeps self-describing containers, wire frames re-encoded
    assert all(bytes(p).startswith(b"Obj\x01") for p in raw["payload"])


def test_unknown_versions_and_schema_ids_are_dead_letters_that_name_them():
    record = _sample((9, 0))
    schema = copy.deepcopy(packaged_schemas()[(9, 0)].schema)
    schema["name"] = "lsst.v99_0.alert"
    container = io.BytesIO()
    fastavro.writer(container, fastavro.parse_schema(schema), [record])
    old = copy.deepcopy(packaged_schemas()[(9, 0)].schema)
    old["name"] = "lsst.v6_0.alert"
    old_container = io.BytesIO()
    fastavro.writer(old_container, fastavro.parse_schema(old), [record])
    msgs = [
        RawMessage("c", 0, 0, container.getvalue()),
        RawMessage("k", 0, 1, _wire(9900, packaged_schemas()[(9, 0)].schema, record)),
        RawMessage("c", 0, 2, old_container.getvalue()),
        RawMessage("k", 0, 3, _wire(900, packaged_schemas()[(9, 0)].schema, record)),  # a good one
    ]
    tables, dead, _ = decode_batch(msgs, "b1")
    assert len(tables.alerts) == 1
    reasons = {d.offset: d.reason for d in dead}
    assert "99.0" in reasons[0] and "lsst.v99_0.alert" in reasons[0]
    assert "schema id 9900" in reasons[1]
    assert "6.0" in reasons[2] and "predates" in reasons[2]


def test_fink_enriched_containers_with_extra_fields_decode(shared_data):
    """The v7.4 and v10.0 samples are Fink's re-serialised topLevelRecord containers with broker fields."""
    for version in ("v7_4", "v10_0"):
        payload = _real(shared_data, version)[0].payload
        schema = json.loads(fastavro.reader(io.BytesIO(payload)).metadata["avro.schema"])
        assert schema["name"].startswith("topLevelRecord")
        assert {"fink_broker_version", "publisher"} & {f["name"] for f in schema["fields"]}
        tables, dead, _ = decode_batch([RawMessage("a", 0, 0, payload)], "b1")
        assert dead == [] and len(tables.alerts) >= 1
        assert "fink_broker_version" not in tables.alerts.columns  # extra fields ignored


def test_missing_required_fields_are_dead_letters(shared_data):
    payload = _real(shared_data, "v9_0")[0].payload
    reader = fastavro.reader(io.BytesIO(payload))
    schema = reader.writer_schema
    record = next(iter(reader))
    bad = copy.deepcopy(record)
    bad["diaSource"]["band"] = "q"
    out = io.BytesIO()
    fastavro.writer(out, schema, [bad])
    tables, dead, _ = decode_batch([RawMessage("a", 0, 0, out.getvalue())], "b1")
    assert tables.alerts.empty and "band" in dead[0].reason and "'q'" in dead[0].reason


def test_solar_system_alerts_keep_their_ss_source(shared_data):
    tables, _, _ = decode_batch(_real(shared_data, "v9_0"), "b1")
    ss = tables.solar_system
    assert len(ss) >= 1 and set(ss["oid"]) <= set(tables.alerts["oid"])
    assert len(tables.survey_objects) + len(ss) >= len(tables.alerts) - 1


def test_a_run_restricted_to_ztf_dead_letters_lsst_packets(shared_data):
    msgs = _real(shared_data, "v9_0")[:3]
    tables, dead, _ = decode_batch(msgs, "b1", SurveyRegistry.of(("ztf",)))
    assert tables.alerts.empty and len(dead) == 3 and all("not a ZTF alert" in d.reason for d in dead)


def test_wire_messages_are_archived_as_their_datum_in_a_container(shared_data):
    """A schema-registry message's archive container wraps its datum as it arrived: the bytes fastavro writes
    when it re-encodes the record (same header and sync marker), and it reads back as the same record."""
    packaged = packaged_schemas()[(9, 0)]
    parsed = fastavro.parse_schema(packaged.schema)
    records = [_records(m.payload)[0] for m in _real(shared_data, "v9_0")[:12]]
    msgs = [
        RawMessage("k", 0, i, _wire(packaged.schema_id, packaged.schema, r)) for i, r in enumerate(records)
    ]
    msgs += [RawMessage("k", 1, i, _pad_first_varint(m.payload)) for i, m in enumerate(msgs[:3])]
    tables, dead, raw = decode_batch(msgs, "b1")
    assert dead == [] and len(raw) == len(records)  # the padded copies are the same alerts: kept once
    by_candid = dict(zip(raw["candid"], raw["payload"], strict=True))
    for msg, record in zip(msgs[: len(records)], records, strict=True):
        payload = by_candid[record["diaSource"]["diaSourceId"]]
        assert payload.endswith(msg.payload[5:] + payload[-16:])  # the datum itself, then the sync marker
        again = io.BytesIO()
        fastavro.writer(again, parsed, [record], codec="null", sync_marker=payload[-16:])
        assert payload == again.getvalue()
        assert _records(payload) == [fastavro.schemaless_reader(io.BytesIO(msg.payload[5:]), parsed)]
    # a datum that is not fastavro's canonical encoding (a varint one byte longer than needed) is kept as it
    # arrived, where re-encoding the record would have rewritten it
    padded = [_pad_first_varint(m.payload) for m in msgs[3:6]]
    _, dead, raw = decode_batch([RawMessage("k", 2, i, p) for i, p in enumerate(padded)], "b2")
    assert dead == [] and len(raw) == 3
    for p, payload in zip(padded, raw["payload"], strict=True):
        assert payload.endswith(p[5:] + payload[-16:])
        assert _records(payload) == [fastavro.schemaless_reader(io.BytesIO(p[5:]), parsed)]


def _pad_first_varint(message: bytes) -> bytes:
    """The wire message with its datum's first varint written one byte longer (a trailing zero group)."""
    end = 5
    while message[end] & 0x80:
        end += 1
    return message[:end] + bytes([message[end] | 0x80, 0]) + message[end + 1 :]


def test_a_non_canonical_datum_is_archived_as_it_arrived():
    """Avro lets a writer split an array into blocks (a negative count gives the block's byte size): the
    archive keeps those bytes, which a re-encoding would have rewritten, and they read back the same."""
    schema = {
        "type": "record",
        "name": "lsst.v9_0.alert",
        "fields": [{"name": "x", "type": {"type": "array", "items": "long"}}],
    }
    from alert_broker.simulator.avro import encode_long
    from alert_broker.surveys.avro import wrap_datum

    class Info:
        parsed = fastavro.parse_schema(schema)

    blocks = (
        encode_long(-2) + encode_long(2) + encode_long(5) + encode_long(7) + encode_long(1) + encode_long(9)
    )
    datum = blocks + encode_long(0)
    wrapped = wrap_datum(datum, Info())
    assert datum in wrapped
    assert _records(wrapped) == [{"x": [5, 7, 9]}]
    canonical = io.BytesIO()
    fastavro.writer(canonical, Info.parsed, [{"x": [5, 7, 9]}], sync_marker=wrapped[-16:])
    assert canonical.getvalue() != wrapped  # a re-encoding would not have kept them
