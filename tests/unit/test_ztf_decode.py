"""ZTF decode on packets built here with fastavro: ids, normalisation, history split, dedupe, dead letters.

The packets use a cut-down ZTF schema with the real field names and types, so every expectation below is
derived from the values we put in, not from the decoder's own output.
"""

from __future__ import annotations

import copy
import gzip
import io
import tarfile

import fastavro
import numpy as np
import pandas as pd
import pytest

import alert_broker.surveys.ztf as ztf_module
from alert_broker.features.night import SITES, observing_night
from alert_broker.surveys.avro import _read_header, describe_non_avro
from alert_broker.surveys.decode import decode_batch
from alert_broker.surveys.messages import RawMessage
from alert_broker.surveys.ztf import (
    CANDIDATE_FIELDS,
    FORCED_FIELDS,
    ISDIFFPOS,
    decode_packet,
    read_container,
)

BIG = 2**62 + 12345  # far above 2**53: a float64 cannot hold it


def opt(name: str, avro_type: str) -> dict:
    return {"name": name, "type": ["null", avro_type], "default": None}


CANDIDATE = {
    "type": "record",
    "name": "candidate",
    "namespace": "ztf.alert",
    "fields": [
        {"name": "jd", "type": "double"},
        {"name": "fid", "type": "int"},
        {"name": "pid", "type": "long"},
        opt("diffmaglim", "float"),
        {"name": "candid", "type": "long"},
        {"name": "isdiffpos", "type": "string"},
        opt("nid", "int"),
        {"name": "ra", "type": "double"},
        {"name": "dec", "type": "double"},
        {"name": "magpsf", "type": "float"},
        {"name": "sigmapsf", "type": "float"},
        opt("magnr", "float"),
        opt("rb", "float"),
        opt("ssnamenr", "string"),
        opt("sgscore1", "float"),
        opt("distpsnr1", "float"),
        opt("objectidps1", "long"),
        opt("rfid", "long"),
        opt("drb", "float"),
    ],
}
PRV = {
    "type": "record",
    "name": "prv_candidate",
    "namespace": "ztf.alert",
    "fields": [
        {"name": "jd", "type": "double"},
        {"name": "fid", "type": "int"},
        {"name": "pid", "type": "long"},
        opt("diffmaglim", "float"),
        opt("candid", "long"),
        opt("isdiffpos", "string"),
        opt("ra", "double"),
        opt("dec", "double"),
        opt("magpsf", "float"),
        opt("sigmapsf", "float"),
        opt("magnr", "float"),
        opt("rb", "float"),
    ],
}
FP = {
    "type": "record",
    "name": "fp_hist",
    "namespace": "ztf.alert",
    "fields": [
        opt("field", "int"),
        opt("rcid", "int"),
        {"name": "fid", "type": "int"},
        {"name": "pid", "type": "long"},
        {"name": "rfid", "type": "long"},
        {"name": "jd", "type": "double"},
        opt("forcediffimflux", "float"),
        opt("forcediffimfluxunc", "float"),
        opt("procstatus", "string"),
        opt("diffmaglim", "float"),
    ],
}
CUTOUT = {
    "type": "record",
    "name": "cutout",
    "namespace": "ztf.alert",
    "fields": [{"name": "fileName", "type": "string"}, {"name": "stampData", "type": "bytes"}],
}


def alert_schema(candidate=CANDIDATE, prv=PRV, with_fp=True, top_extra=()) -> dict:
    fields = [
        {"name": "schemavsn", "type": "string"},
        {"name": "publisher", "type": "string"},
        {"name": "objectId", "type": "string"},
        {"name": "candid", "type": "long"},
        {"name": "candidate", "type": copy.deepcopy(candidate)},
        {
            "name": "prv_candidates",
            "type": ["null", {"type": "array", "items": copy.deepcopy(prv)}],
            "default": None,
        },
    ]
    if with_fp:
        fields.append(
            {
                "name": "fp_hists",
                "type": ["null", {"type": "array", "items": copy.deepcopy(FP)}],
                "default": None,
            }
        )
    fields += [
        {"name": "cutoutScience", "type": ["null", copy.deepcopy(CUTOUT)], "default": None},
        {"name": "cutoutTemplate", "type": ["null", "ztf.alert.cutout"], "default": None},
        {"name": "cutoutDifference", "type": ["null", "ztf.alert.cutout"], "default": None},
        *top_extra,
    ]
    return {"type": "record", "name": "alert", "namespace": "ztf", "fields": fields}


SCHEMA = alert_schema()


def cand(candid: int, jd: float, **kw) -> dict:
    base = dict(jd=jd, fid=1, pid=candid // 10**6, diffmaglim=20.5, candid=candid, isdiffpos="t", nid=1000,
                ra=150.0, dec=2.0, magpsf=18.25, sigmapsf=0.05, magnr=17.0, rb=0.9, ssnamenr="null",
                sgscore1=0.1, distpsnr1=0.7, objectidps1=None, rfid=123456789, drb=0.99)  # fmt: skip
    base.update(kw)
    return base


def prv_det(candid: int, jd: float, **kw) -> dict:
    base = dict(jd=jd, fid=2, pid=candid // 10**6, diffmaglim=20.0, candid=candid, isdiffpos="f", ra=150.0001,
                dec=2.0001, magpsf=18.5, sigmapsf=0.07, magnr=17.0, rb=0.8)  # fmt: skip
    base.update(kw)
    return base


def prv_nondet(jd: float, fid: int = 1, diffmaglim: float | None = 19.5) -> dict:
    return dict(jd=jd, fid=fid, pid=int(jd * 1000), diffmaglim=diffmaglim, candid=None, isdiffpos=None, ra=None,
                dec=None, magpsf=None, sigmapsf=None, magnr=None, rb=None)  # fmt: skip


def fp_row(pid: int, jd: float, **kw) -> dict:
    base = dict(field=500, rcid=10, fid=1, pid=pid, rfid=500120110, jd=jd, forcediffimflux=120.5,
                forcediffimfluxunc=10.0, procstatus="0", diffmaglim=20.1)  # fmt: skip
    base.update(kw)
    return base


def alert(oid: str, candidate: dict, prv=(), fp=None, stamps=True, version="4.02") -> dict:
    def cutout(kind: str):
        return {"fileName": f"{kind}.fits.gz", "stampData": gzip.compress(kind.encode())} if stamps else None

    return {
        "schemavsn": version,
        "publisher": "ZTF (www.ztf.caltech.edu)",
        "objectId": oid,
        "candid": candidate["candid"],
        "candidate": candidate,
        "prv_candidates": list(prv) or None,
        "fp_hists": fp,
        "cutoutScience": cutout("science"),
        "cutoutTemplate": cutout("template"),
        "cutoutDifference": cutout("difference"),
    }


def pack(records: list[dict], schema: dict = SCHEMA, codec: str = "null") -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(copy.deepcopy(schema)), records, codec=codec)
    return out.getvalue()


def msg(payload: bytes, offset: int = 0, key: str | None = None) -> RawMessage:
    return RawMessage(
        source="test:ztf", partition=3, offset=offset, payload=payload, key=key or f"{offset}.avro"
    )


def run(*payloads: bytes):
    return decode_batch([msg(p, i) for i, p in enumerate(payloads)], "batch-1")


JD = 2458849.7083333335  # 2020-01-01T05:00 UTC: Palomar night 20191231 (docs/data-model.md)


# ---------------------------------------------------------------------------------------- containers
@pytest.mark.parametrize("codec", ["null", "deflate", "snappy"])
def test_decode_packet_codecs(codec):
    records = [alert("ZTF20aaaaaaa", cand(BIG + i, JD + i)) for i in range(3)]
    payload = pack(records, codec=codec)
    decoded = decode_packet(payload)
    assert decoded == list(fastavro.reader(io.BytesIO(payload)))  # float fields come back float32-rounded
    assert [r["candid"] for r in decoded] == [BIG, BIG + 1, BIG + 2]
    assert read_container(payload).codec == codec


def test_multi_block_container():
    out = io.BytesIO()
    records = [alert("ZTF20aaaaaaa", cand(BIG + i, JD + i)) for i in range(5)]
    fastavro.writer(out, fastavro.parse_schema(copy.deepcopy(SCHEMA)), records, sync_interval=10)
    payload = out.getvalue()
    assert decode_packet(payload) == list(fastavro.reader(io.BytesIO(payload)))
    assert len(list(fastavro.block_reader(io.BytesIO(payload)))) > 1


# ---------------------------------------------------------------------------------------- ids and values
def test_64_bit_ids_survive_exactly():
    prv_candid, ps1 = BIG - 7, 2**55 + 3
    tables, dead, raw = run(
        pack([alert("ZTF20aaaaaaa", cand(BIG, JD, objectidps1=ps1), [prv_det(prv_candid, JD - 1)])])
    )
    assert not dead
    assert float(BIG) != BIG  # the test means something: a float64 would lose it
    a = tables.alerts
    assert a["candid"].dtype == np.int64 and int(a["candid"].iloc[0]) == BIG
    assert a["objectidps1"].dtype == "Int64" and int(a["objectidps1"].iloc[0]) == ps1
    assert a["pid"].dtype == np.int64 and int(a["pid"].iloc[0]) == BIG // 10**6
    det = tables.detections.set_index("candid")
    assert tables.detections["candid"].dtype == np.int64
    assert sorted(det.index.tolist()) == [prv_candid, BIG]
    assert det["parent_candid"].tolist() == [BIG, BIG]
    assert int(raw["candid"].iloc[0]) == BIG and int(tables.stamps["candid"].iloc[0]) == BIG


def test_isdiffpos_normalised_to_int8():
    values = ["t", "f", "1", "0"]
    payloads = [
        pack([alert(f"ZTF20aaaaaa{c}", cand(BIG + i, JD, isdiffpos=v))])
        for i, (c, v) in enumerate(zip("abcd", values, strict=True))
    ]
    tables, dead, _ = run(*payloads)
    assert not dead
    assert tables.alerts["isdiffpos"].dtype == np.int8
    assert tables.alerts["isdiffpos"].tolist() == [1, -1, 1, -1]
    assert tables.detections["isdiffpos"].tolist() == [1, -1, 1, -1]


def test_mjd_night_and_float_values():
    tables, _, raw = run(pack([alert("ZTF20aaaaaaa", cand(BIG, JD, magpsf=18.25, diffmaglim=None))]))
    a = tables.alerts.iloc[0]
    assert a["jd"] == JD and a["mjd"] == JD - 2400000.5
    assert a["night"] == 20191231 and tables.alerts["night"].dtype == np.int32
    assert a["magpsf"] == 18.25 and np.isnan(a["diffmaglim"])
    assert raw["night"].tolist() == [20191231]
    assert a["survey"] == "ztf" and a["schemavsn"] == "4.02" and a["oid"] == "ZTF20aaaaaaa"
    # Fields this schema does not carry are null columns, not missing ones.
    assert set(tables.alerts.columns) >= {f for f, _ in CANDIDATE_FIELDS}
    assert np.isnan(a["zpmed"]) and pd.isna(a["tooflag"]) and pd.isna(a["rbversion"])


def test_provenance_columns():
    tables, _, _ = decode_batch(
        [
            RawMessage("archive:n1", 0, 7, pack([alert("ZTF20aaaaaaa", cand(BIG, JD))])),
            RawMessage("archive:n1", 0, 8, pack([alert("ZTF20aaaaaab", cand(BIG + 1, JD))])),
        ],
        "b-42",
    )
    a = tables.alerts
    assert a["source"].tolist() == ["archive:n1"] * 2 and a["batch_id"].tolist() == ["b-42"] * 2
    assert a["partition"].dtype == np.int32 and a["offset"].dtype == np.int64
    assert a["offset"].tolist() == [7, 8]


# ---------------------------------------------------------------------------------------- history
def test_history_split_detections_non_detections():
    prv = [
        prv_det(BIG - 1, JD - 3),
        prv_nondet(JD - 2, fid=2),
        prv_det(BIG - 2, JD - 1),
        prv_nondet(JD - 0.5, diffmaglim=None),
    ]
    tables, dead, _ = run(pack([alert("ZTF20aaaaaaa", cand(BIG, JD), prv)]))
    assert not dead
    det, nd = tables.detections, tables.non_detections
    assert len(det) == 1 + 2  # own + prv entries with a candid
    assert "candid" not in nd.columns and len(nd) == 2
    assert nd["fid"].tolist() == [2, 1] and nd["fid"].dtype == np.int16
    np.testing.assert_array_equal(nd["mjd"], [JD - 2 - 2400000.5, JD - 0.5 - 2400000.5])
    assert nd["diffmaglim"].iloc[0] == 19.5 and np.isnan(nd["diffmaglim"].iloc[1])
    own = det[det["candid"] == BIG].iloc[0]
    assert own["has_stamp"] and own["sgscore1"] == pytest.approx(0.1) and own["drb"] == pytest.approx(0.99)
    prv_rows = det[det["candid"] != BIG]
    assert not prv_rows["has_stamp"].any()
    # prv_candidates do not carry the PS1 neighbour, drb or rfid: null, not copied from the alert.
    assert prv_rows["distpsnr1"].isna().all() and prv_rows["sgscore1"].isna().all()
    assert prv_rows["rfid"].isna().all() and prv_rows["drb"].isna().all()
    assert (prv_rows["parent_candid"] == BIG).all()
    assert prv_rows["isdiffpos"].tolist() == [-1, -1]


def test_dedupe_within_batch_keeps_own_detection():
    first = alert("ZTF20aaaaaaa", cand(BIG, JD), [prv_det(BIG - 5, JD - 2), prv_nondet(JD - 1)])
    # The later alert repeats the earlier alert's detection (as history), the older prv one and the non-detection.
    later_prv = [prv_det(BIG - 5, JD - 2), prv_nondet(JD - 1), prv_det(BIG, JD, magnr=17.0)]
    later = alert("ZTF20aaaaaaa", cand(BIG + 100, JD + 1), later_prv)
    for order in ([first, later], [later, first]):
        tables, dead, raw = run(*[pack([a]) for a in order])
        det = tables.detections
        assert not dead
        assert len(det) == 3 and det[["oid", "candid"]].duplicated().sum() == 0
        assert len(tables.non_detections) == 1
        rows = det.set_index("candid")
        # BIG was both an alert and another alert's history: its own (stamped, fuller) row wins.
        assert rows.loc[BIG, "has_stamp"] and rows.loc[BIG, "parent_candid"] == BIG
        assert rows.loc[BIG, "distpsnr1"] == pytest.approx(0.7)
        assert rows.loc[BIG - 5, "parent_candid"] in (BIG, BIG + 100)
        assert len(tables.alerts) == 2 and len(raw) == 2


def test_same_candid_twice_in_batch_is_kept_once():
    payload = pack([alert("ZTF20aaaaaaa", cand(BIG, JD))])
    tables, dead, raw = run(payload, payload)
    assert len(tables.alerts) == 1 and len(raw) == 1 and len(tables.stamps) == 1 and not dead


# ---------------------------------------------------------------------------------------- forced photometry
def test_forced_photometry_parsed():
    fps = [fp_row(BIG // 10**6 - 1, JD - 1), fp_row(BIG // 10**6 - 2, JD - 2, forcediffimflux=-99999.0)]
    tables, dead, _ = run(pack([alert("ZTF20aaaaaaa", cand(BIG, JD), fp=fps)]))
    fp = tables.forced_photometry
    assert not dead and len(fp) == 2
    assert set(fp.columns) >= {"oid", "survey", "parent_candid", "mjd", "night"} | {
        f for f, _ in FORCED_FIELDS
    }
    assert "jd" not in fp.columns and fp["pid"].dtype == np.int64
    assert fp["pid"].tolist() == [BIG // 10**6 - 1, BIG // 10**6 - 2]
    assert fp["parent_candid"].tolist() == [BIG, BIG]
    assert fp["forcediffimflux"].tolist() == [120.5, -99999.0]  # ZTF's sentinel kept as it comes
    np.testing.assert_array_equal(fp["night"], observing_night(fp["mjd"].to_numpy(), SITES["ztf"]))
    # Schema versions without fp_hists give an empty table with the same columns.
    no_fp, _, _ = run(pack([alert("ZTF20aaaaaaa", cand(BIG, JD))], alert_schema(with_fp=False)))
    assert len(no_fp.forced_photometry) == 0
    assert list(no_fp.forced_photometry.columns) == list(fp.columns)


def test_schema_35_forced_photometry_in_prv_candidates():
    # ZTF 3.5 (a 2021 test release) put fp_hist-shaped records in prv_candidates.
    schema = alert_schema(prv={**FP, "name": "prv_candidate"}, with_fp=False)
    rec = alert("ZTF21aaaaaaa", cand(BIG, JD), version="3.5")
    rec["prv_candidates"] = [fp_row(11, JD - 1), fp_row(12, JD - 2)]
    del rec["fp_hists"]
    tables, dead, _ = run(pack([rec], schema))
    assert not dead
    assert tables.forced_photometry["pid"].tolist() == [11, 12]
    assert len(tables.detections) == 1 and len(tables.non_detections) == 0


def test_old_candidate_field_names_are_mapped():
    old = copy.deepcopy(CANDIDATE)
    for f in old["fields"]:
        if f["name"] == "sgscore1":
            f["name"] = "sgscore"
    rec = alert(
        "ZTF18aaaaaaa", {**{k: v for k, v in cand(BIG, JD).items() if k != "sgscore1"}, "sgscore": 0.25}
    )
    tables, dead, _ = run(pack([rec], alert_schema(candidate=old)))
    assert not dead and tables.alerts["sgscore1"].tolist() == [0.25]


def test_spark_style_nullable_records_and_named_references():
    # Fink's Spark-written files wrap records in ["record", "null"] unions and reuse types by full name.
    schema = alert_schema()
    for f in schema["fields"]:
        if f["name"] == "candidate":
            f["type"] = [f["type"], "null"]
    schema["fields"].append(
        {"name": "candidate_copy", "type": ["null", "ztf.alert.candidate"], "default": None}
    )
    rec = alert("ZTF20aaaaaaa", cand(BIG, JD), [prv_det(BIG - 1, JD - 1)])
    rec["candidate_copy"] = None
    tables, dead, _ = run(pack([rec], schema))
    assert not dead and tables.alerts["candid"].tolist() == [BIG] and len(tables.detections) == 2


# ---------------------------------------------------------------------------------------- stamps and raw
def test_stamps_and_raw_payload():
    payload = pack([alert("ZTF20aaaaaaa", cand(BIG, JD))])
    nostamp = pack([alert("ZTF20aaaaaab", cand(BIG + 1, JD), stamps=False)])
    tables, _, raw = run(payload, nostamp)
    s = tables.stamps.set_index("candid")
    assert gzip.decompress(s.loc[BIG, "cutout_science"]) == b"science"
    assert gzip.decompress(s.loc[BIG, "cutout_difference"]) == b"difference"
    assert s.loc[BIG + 1, "cutout_template"] is None
    assert list(raw.columns) == ["candid", "oid", "night", "payload"]
    assert raw.set_index("candid").loc[BIG, "payload"] == payload  # single-alert file: original bytes


@pytest.mark.parametrize("codec", ["null", "snappy"])
def test_multi_alert_file(codec):
    records = [alert(f"ZTF20aaaaaa{c}", cand(BIG + i, JD + i)) for i, c in enumerate("abc")]
    payload = pack(records, codec=codec)
    tables, dead, raw = run(payload)
    assert not dead and len(tables.alerts) == 3
    assert tables.alerts["offset"].tolist() == [0, 0, 0]  # one message
    for rec, single in zip(fastavro.reader(io.BytesIO(payload)), raw["payload"], strict=True):
        assert decode_packet(single) == [rec]  # re-encoded alone, with the writer schema
        assert read_container(single).codec == codec


def test_one_bad_record_in_multi_alert_file():
    records = [
        alert("ZTF20aaaaaaa", cand(BIG, JD)),
        alert("ZTF20aaaaaab", cand(-5, JD)),
        alert("ZTF20aaaaaac", cand(BIG + 2, JD)),
    ]
    tables, dead, _ = run(pack(records))
    assert tables.alerts["candid"].tolist() == [BIG, BIG + 2]
    assert len(dead) == 1 and dead[0].reason.startswith("record 2 of 3 in this file: candid -5")


def test_many_bad_records_in_one_file_give_one_dead_letter():
    records = [alert("ZTF20aaaaaaa", cand(BIG, JD))] + [
        alert(f"ZTF20aaaaab{c}", cand(-i - 1, JD)) for i, c in enumerate("abcd")
    ]
    payload = pack(records)
    tables, dead, _ = run(payload)
    assert tables.alerts["candid"].tolist() == [BIG]
    (letter,) = dead  # one per file, not one per record: the payload is stored once
    assert letter.reason.startswith("4 of 5 records in this file are unusable: record 2: candid -1")
    assert letter.reason.endswith("; and 1 more") and letter.payload == payload


# ---------------------------------------------------------------------------------------- dead letters
def _tar_gz() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("candcutouts/x.jpg")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    return out.getvalue()


GOOD = pack([alert("ZTF20aaaaaaa", cand(BIG, JD), [prv_det(BIG - 1, JD - 1)])])


def _schema_without(field: str) -> dict:
    c = copy.deepcopy(CANDIDATE)
    c["fields"] = [f for f in c["fields"] if f["name"] != field]
    return alert_schema(candidate=c)


def _nullable(field: str) -> dict:
    c = copy.deepcopy(CANDIDATE)
    for f in c["fields"]:
        if f["name"] == field:
            f["type"], f["default"] = ["null", f["type"]], None
    return alert_schema(candidate=c)


def _retyped(field: str, avro_type: str) -> dict:
    c = copy.deepcopy(CANDIDATE)
    for f in c["fields"]:
        if f["name"] == field:
            f["type"] = avro_type
    return alert_schema(candidate=c)


def _no_candidate_schema() -> dict:
    return {"type": "record", "name": "thing", "fields": [{"name": "objectId", "type": "string"}]}


def _prototype_schema() -> dict:
    s = alert_schema()
    s["fields"][2] = {"name": "alertId", "type": "long"}
    return s


def _sans_jd():
    c = cand(BIG, JD)
    del c["jd"]
    return c


def _prototype_record():
    r = alert("x", cand(BIG, JD))
    r["alertId"] = r.pop("objectId")
    r["alertId"] = BIG
    return r


BAD_CASES = {
    "html": (b"<!DOCTYPE HTML PUBLIC>\n<title>500 Internal Server Error</title>", "NotAvroError", "looks like an HTML page"),
    "empty": (b"", "NotAvroError", "empty payload"),
    "tar.gz": (_tar_gz(), "NotAvroError", "gzip-compressed tar archive"),
    "gzip": (gzip.compress(b"hello"), "NotAvroError", "gzip-compressed data"),
    "text table": (b"  jd  |  fid  |  pid  |  candid  \n 1 | 2 | 3 | 4\n", "NotAvroError", "pipe-separated text table"),
    "json": (b'{"objectId": "ZTF"}', "NotAvroError", "JSON"),
    "magic only": (b"Obj", "TruncatedAvroError", "truncated Avro container"),
    "cut in header": (GOOD[:300], "TruncatedAvroError", "inside its header"),
    "cut in block": (GOOD[:-100], "TruncatedAvroError", "truncated Avro container: block 0"),
    "cut sync": (GOOD[:-3], "TruncatedAvroError", "byte(s) short"),
    "bad sync": (GOOD[:-16] + b"\0" * 16, "CorruptAvroError", "sync marker"),
    "no candidate": (pack([{"objectId": "a"}], _no_candidate_schema()), "UnknownSchemaError", "no 'candidate' record"),
    "schema list": (None, "UnknownSchemaError", "list of 4 types"),
    "alertId": (pack([_prototype_record()], _prototype_schema()), "MissingFieldError", "alertId"),
    "schema lacks jd": (pack([alert("ZTF20aaaaaaa", _sans_jd())], _schema_without("jd")), "MissingFieldError", "missing required field candidate.jd"),
    "null magpsf": (pack([alert("ZTF20aaaaaaa", cand(BIG, JD, magpsf=None))], _nullable("magpsf")), "MissingFieldError", "missing required field candidate.magpsf"),
    "empty objectId": (pack([alert("", cand(BIG, JD))]), "MissingFieldError", "objectId"),
    "negative candid": (pack([alert("ZTF18aaaaaac", cand(-121540793515135000, 2457632.95921))]), "InvalidValueError", "2016-09-01"),
    "bad fid": (pack([alert("ZTF20aaaaaaa", cand(BIG, JD, fid=7))]), "InvalidValueError", "ZTF filters are 1 (g)"),
    "bad isdiffpos": (pack([alert("ZTF20aaaaaaa", cand(BIG, JD, isdiffpos="x"))]), "InvalidValueError", "isdiffpos"),
    "nan jd": (pack([alert("ZTF20aaaaaaa", cand(BIG, float("nan")))]), "InvalidValueError", "finite"),
    "magpsf string": (pack([alert("ZTF20aaaaaaa", cand(BIG, JD, magpsf="18.2"))], _retyped("magpsf", "string")), "UnknownSchemaError", "candidate.magpsf"),
    "prv without fid": (None, "MissingFieldError", "prv_candidates[0].fid"),
}  # fmt: skip


def _schema_list_payload() -> bytes:
    # ZTF's 2016 prototype wrote a JSON list of its four record types as the container's schema.
    real = pack([alert("ZTF20aaaaaaa", cand(BIG, JD))])
    reader = fastavro.reader(io.BytesIO(real))
    text = reader.metadata["avro.schema"].encode()
    bundle = b'[{"type":"record","name":"candidate","fields":[]},{"type":"record","name":"prv_candidate","fields":[]},'
    bundle += b'{"type":"record","name":"cutout","fields":[]},' + text + b"]"
    # Rebuild the header: magic, metadata map {avro.schema: bundle}, then the original sync and blocks.
    _, sync, data_start = _read_header(real)

    def zz(n: int) -> bytes:
        n = (n << 1) ^ (n >> 63)
        out = bytearray()
        while n & ~0x7F:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out)

    meta = zz(1) + zz(len(b"avro.schema")) + b"avro.schema" + zz(len(bundle)) + bundle + zz(0)
    return b"Obj\x01" + meta + sync + real[data_start:]


def _prv_without_fid() -> bytes:
    prv = copy.deepcopy(PRV)
    for f in prv["fields"]:
        if f["name"] == "fid":
            f["type"], f["default"] = ["null", "int"], None
    return pack(
        [alert("ZTF20aaaaaaa", cand(BIG, JD), [prv_det(BIG - 1, JD - 1, fid=None)])], alert_schema(prv=prv)
    )


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_dead_letter_reasons(case):
    payload, error, phrase = BAD_CASES[case]
    if case == "schema list":
        payload = _schema_list_payload()
    elif case == "prv without fid":
        payload = _prv_without_fid()
    tables, dead, raw = decode_batch([msg(GOOD, 0), msg(payload, 1, key="bad.avro"), msg(GOOD, 2)], "b")
    assert len(tables.alerts) == 1 and len(raw) == 1  # the good packet (sent twice) goes through
    (letter,) = dead
    assert phrase in letter.reason, letter.reason
    assert letter.error == error
    assert (letter.source, letter.partition, letter.offset, letter.key) == ("test:ztf", 3, 1, "bad.avro")
    assert letter.payload == payload  # untouched


def test_unexpected_errors_become_dead_letters(monkeypatch):
    real = ztf_module.extract_alert

    def flaky(record, info):
        if record["objectId"] == "ZTF20boom":
            raise RuntimeError("boom")
        return real(record, info)

    monkeypatch.setattr(ztf_module, "extract_alert", flaky)
    tables, dead, _ = run(GOOD, pack([alert("ZTF20boom", cand(BIG + 9, JD))]))
    assert len(tables.alerts) == 1
    assert (
        dead[0].error == "RuntimeError" and "unexpected error" in dead[0].reason and "boom" in dead[0].reason
    )


def test_real_html_page_reason_names_the_title():
    page = (
        b'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<title>500 Internal Server Error</title>\n'
    )
    assert "'500 Internal Server Error'" in describe_non_avro(page)


# ---------------------------------------------------------------------------------------- shapes
def test_empty_batch_has_the_same_columns_and_dtypes():
    full, _, full_raw = run(
        pack(
            [
                alert(
                    "ZTF20aaaaaaa",
                    cand(BIG, JD),
                    [prv_det(BIG - 1, JD - 1), prv_nondet(JD - 2)],
                    fp=[fp_row(5, JD)],
                )
            ]
        )
    )
    empty, dead, empty_raw = decode_batch([], "b")
    assert not dead
    for (name, a), (_, b) in zip(full.items(), empty.items(), strict=True):
        assert len(b) == 0, name
        assert list(a.columns) == list(b.columns), name
        assert a.dtypes.astype(str).tolist() == b.dtypes.astype(str).tolist(), name
    assert list(full_raw.columns) == list(empty_raw.columns)


def test_isdiffpos_table_is_complete():
    assert ISDIFFPOS == {"t": 1, "1": 1, "T": 1, "f": -1, "0": -1, "F": -1}
