"""The ATLAS adapter on the real ATLAS alerts in shared/data/atlas (ALeRCE's ``atlas.alert``, schemavsn 0.1).

Expectations come from the packets read with plain ``fastavro.reader``, from the stamps read with astropy, and
from hashlib/datetime computations written here, never from the adapter's own output. Broken packets are real
records re-encoded with their file's writer schema (made nullable where a field must be null).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from datetime import datetime, timedelta
from pathlib import Path

import fastavro
import numpy as np
import pytest
from astropy.io import fits

from alert_broker.features.night import ATLAS_UNITS, SITES
from alert_broker.features.science import science
from alert_broker.surveys import DEFAULT_REGISTRY, RawMessage, decode_batch
from alert_broker.surveys.atlas import ATLAS, ATLAS_FIELDS, FID, RENAMED, exposure_parts
from alert_broker.surveys.avro import schema_header
from alert_broker.surveys.errors import UnknownSchemaError
from alert_broker.surveys.lsst import LSST
from alert_broker.surveys.ztf import ZTF

MJD0 = datetime(1858, 11, 17)
N_ATLAS = 22


def _messages(folder: Path, source: str, files: list[Path] | None = None) -> list[RawMessage]:
    files = sorted(folder.glob("*.avro")) if files is None else files
    return [RawMessage(source, 0, i, f.read_bytes(), key=f.name) for i, f in enumerate(files)]


def _reader(payload: bytes) -> fastavro.reader:
    return fastavro.reader(io.BytesIO(payload))


def _record(payload: bytes) -> dict:
    (record,) = list(_reader(payload))
    return record


def _encode(schema: dict, record: dict) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), [record])
    return out.getvalue()


def _nullable(schema: dict, *fields: str) -> dict:
    """The writer schema with the named top-level fields made nullable."""
    schema = copy.deepcopy(schema)
    for f in schema["fields"]:
        if f["name"] in fields:
            f["type"] = ["null", f["type"]]
            f["default"] = None
    return schema


def _hash_id(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") & (2**63 - 1)


def _night(mjd: float, longitude: float) -> int:
    """Independent of features.night: stdlib datetime, local mean time minus 12 h."""
    return int((MJD0 + timedelta(days=mjd, hours=longitude / 15.0 - 12.0)).strftime("%Y%m%d"))


def _band_of_name(candid: str) -> str:
    """The filter letter closing an ATLAS exposure name (``01a59485o0083o`` -> ``o``)."""
    return candid.split("_")[0][-1]


def _fits(stamp: bytes) -> fits.PrimaryHDU:
    return fits.open(io.BytesIO(stamp))[0]


@pytest.fixture(scope="module")
def atlas(shared_data):
    msgs = _messages(shared_data / "atlas", "archive:atlas")
    assert len(msgs) == N_ATLAS
    records = [_record(m.payload) for m in msgs]
    tables, dead, raw = decode_batch(msgs, "atlas-0")
    return msgs, records, tables, dead, raw


@pytest.fixture(scope="module")
def atlas_schemas(shared_data) -> dict[str, dict]:
    """The writer schema of each layout: 'old' (2021 candidate) and 'new' (with filter, flux, ...)."""
    out = {}
    for f in sorted((shared_data / "atlas").glob("*.avro")):
        schema = _reader(f.read_bytes()).writer_schema
        cand = next(x for x in schema["fields"] if x["name"] == "candidate")["type"]
        layout = "new" if any(x["name"] == "filter" for x in cand["fields"]) else "old"
        out.setdefault(layout, (schema, _record(f.read_bytes())))
    assert set(out) == {"old", "new"}
    return out


def _row(tables, name: str):
    """The alert and detection row of the alert whose ATLAS candid is ``name``."""
    a = tables.alerts.set_index("atlas_candid").loc[name]
    d = tables.detections.set_index("atlas_candid").loc[name]
    return a, d


# ------------------------------------------------------------------------------------------- real data
def test_every_real_alert_decodes(atlas):
    msgs, records, tables, dead, raw = atlas
    assert dead == []
    assert len(tables.alerts) == len(tables.detections) == len(tables.stamps) == len(raw) == N_ATLAS
    assert (tables.alerts["survey"] == "atlas").all() and (tables.detections["survey"] == "atlas").all()
    assert set(tables.alerts["schemavsn"]) == {r["schemavsn"] for r in records} == {"0.1"}
    assert tables.non_detections.empty and tables.forced_photometry.empty
    assert set(tables.alerts["source"]) == {"archive:atlas"}
    assert sorted(tables.alerts["offset"]) == [m.offset for m in msgs]


def test_columns_are_the_same_for_both_layouts(shared_data, atlas_schemas):
    frames = {}
    for layout, (schema, record) in atlas_schemas.items():
        tables, dead, _ = decode_batch([RawMessage("t", 0, 0, _encode(schema, record))], layout)
        assert dead == []
        frames[layout] = tables
    for table in ("alerts", "detections"):
        old, new = getattr(frames["old"], table), getattr(frames["new"], table)
        assert list(old.columns) == list(new.columns)
        assert old.dtypes.astype(str).to_dict() == new.dtypes.astype(str).to_dict()
        for name, _ in ATLAS_FIELDS:
            assert RENAMED.get(name, name) in old.columns
    # fields the 2021 layout lacks are null there, present in the later one
    for name in ("filter", "pid", "atlas_flux", "atlas_Dflux", "atlas_isdiffpos", "atlas_rb"):
        assert frames["old"].detections[name].isna().all() and frames["new"].detections[name].notna().all()


def test_bands_are_c_or_o_and_agree_with_the_exposure_names(atlas):
    _, records, tables, _, _ = atlas
    for rec in records:
        a, d = _row(tables, rec["candid"])
        expected = _band_of_name(rec["candid"])
        assert a["band"] == d["band"] == expected and expected in ("c", "o")
        assert int(d["fid"]) == {"c": 10, "o": 11}[expected]
        if "filter" in rec["candidate"]:  # the later layout carries both: they agree
            assert rec["candidate"]["filter"] == expected == d["filter"]
    assert tables.detections["fid"].dtype == np.int16
    assert ATLAS.info.bands == {10: "c", 11: "o"} and FID == {"c": 10, "o": 11}


def test_the_filter_is_the_last_letter_of_the_exposure_name(atlas_schemas):
    # ALeRCE's producer's test alert is a c exposure with an 'o' (the exposure type) after its MJD
    assert exposure_parts("01a59897o0020c_000002") == {
        "unit": "01a", "mjd": "59897", "type": "o", "seq": "0020", "filter": "c",
    }  # fmt: skip
    schema, record = atlas_schemas["old"]  # no filter field: the band comes from the name
    record = copy.deepcopy(record)
    record["candid"] = record["candidate"]["candid"] = "01a59897o0020c_000002"
    tables, dead, _ = decode_batch([RawMessage("t", 0, 0, _encode(schema, record))], "c")
    assert dead == []
    assert tables.detections["band"].tolist() == ["c"] and tables.detections["fid"].tolist() == [10]


def test_ids_are_prefixed_unique_and_deterministic(atlas, shared_data):
    msgs, records, tables, _, raw = atlas
    for rec in records:
        a, d = _row(tables, rec["candid"])
        assert a["oid"] == d["oid"] == "ATLAS" + rec["objectId"]
        assert a["candid"] == d["candid"] == _hash_id(rec["candid"]) > 0
        assert rec["candidate"]["candid"] == rec["candid"]
    for frame in (tables.alerts, tables.detections, tables.stamps, raw):
        assert frame["candid"].dtype == np.int64 and frame["candid"].is_unique
    assert (tables.detections["parent_candid"] == tables.detections["candid"]).all()
    again, _, _ = decode_batch(_messages(shared_data / "atlas", "again"), "atlas-1")
    assert again.alerts["candid"].tolist() == tables.alerts["candid"].tolist()
    assert set(raw["candid"]) == set(tables.alerts["candid"])


def test_photometry_is_the_difference_magnitude_with_the_sign_of_mag(atlas):
    _, records, tables, _, _ = atlas
    for rec in records:
        c = rec["candidate"]
        a, d = _row(tables, rec["candid"])
        assert d["magpsf"] == pytest.approx(abs(c["Mag"])) and d["sigmapsf"] == pytest.approx(c["Dmag"])
        assert d["isdiffpos"] == (-1 if c["Mag"] < 0 else 1) == a["isdiffpos"]
        assert d["Mag"] == pytest.approx(c["Mag"]) and d["WPflx"] == pytest.approx(c["WPflx"])
        assert d["flux"] == pytest.approx(np.sign(c["Mag"]) * 10 ** (-0.4 * (abs(c["Mag"]) - 31.4)), rel=1e-6)
        assert np.isnan(d["rb"])  # schema 0.1's rb is the producer's placeholder 0.0
        if "flux" in c:
            # the packet's flux (uJy) is sign(Mag) 10^(-0.4 (|Mag| - 23.9)), its Dflux = flux * Dmag ...
            assert d["flux"] == pytest.approx(1000 * c["flux"], rel=1e-5)
            assert c["Dflux"] == pytest.approx(c["flux"] * c["Dmag"], rel=1e-4)
            # ... and its isdiffpos, in these 2021 packets, is 't' exactly for negative detections (swapped)
            assert c["isdiffpos"] == ("t" if c["Mag"] < 0 else "f") == d["atlas_isdiffpos"]
            assert c["rb"] == 0.0 == d["atlas_rb"]
    assert tables.detections["isdiffpos"].dtype == np.int8
    assert set(tables.detections["isdiffpos"]) == {-1, 1}


def test_the_sign_of_mag_is_the_sign_of_the_difference_stamp(atlas):
    """The evidence for ``isdiffpos``: the flux at the centre of the difference cutout has the sign of Mag."""
    _, records, _, _, _ = atlas
    for rec in records:
        diff = _fits(rec["cutoutDifference"]["stampData"]).data.astype(float)
        diff[diff <= -31000] = np.nan  # masked pixels (MASKVAL -31415)
        yy, xx = np.mgrid[: diff.shape[0], : diff.shape[1]]
        r = np.hypot(yy - diff.shape[0] // 2, xx - diff.shape[1] // 2)
        centre = np.nansum(diff[r <= 3] - np.nanmedian(diff[r > 15]))
        assert np.sign(centre) == np.sign(rec["candidate"]["Mag"]), rec["candid"]


def test_stamps_limits_and_reference_columns(atlas):
    _, records, tables, _, _ = atlas
    stamps = tables.stamps.set_index("candid")
    for rec in records:
        a, d = _row(tables, rec["candid"])
        s = stamps.loc[d["candid"]]
        assert s["cutout_science"] == rec["cutoutScience"]["stampData"]
        assert s["cutout_difference"] == rec["cutoutDifference"]["stampData"]
        assert s["cutout_template"] is None
        assert _fits(s["cutout_difference"]).data.shape == (61, 61)
        header = _fits(rec["cutoutDifference"]["stampData"]).header
        assert d["diffmaglim"] == pytest.approx(header["MAG5SIG"]) == a["diffmaglim"]
        assert d["fwhm"] == pytest.approx(np.sqrt(rec["candidate"]["Major"] * rec["candidate"]["Minor"]))
    det = tables.detections
    for name in ("distnr", "magnr", "sigmagnr", "chinr", "sharpnr", "sgscore1", "distpsnr1"):
        assert det[name].dtype == np.float64 and det[name].isna().all()
    assert str(det["rfid"].dtype) == "Int64" and det["rfid"].isna().all()
    assert det["has_stamp"].dtype == bool and det["has_stamp"].all()


def test_raw_archive_keeps_each_packet(atlas):
    msgs, _, tables, _, raw = atlas
    by_candid = raw.set_index("candid")
    for m, (_, alert) in zip(msgs, tables.alerts.sort_values("offset").iterrows(), strict=True):
        assert by_candid.loc[alert["candid"], "payload"] == m.payload
        assert by_candid.loc[alert["candid"], "night"] == alert["night"]
    assert list(raw.columns) == ["candid", "oid", "night", "payload"]


def test_nights_use_the_longitude_of_the_unit(atlas, atlas_schemas):
    _, _, tables, _, _ = atlas
    # by hand: 02a59543o0040o_006230 at MJD 59543.194825 (2021-11-25 04:40 UTC) from Haleakala (02a, 156.257 W)
    # is 18:55 local mean time on 2021-11-24, the evening of night 20211124
    _, d = _row(tables, "02a59543o0040o_006230")
    assert ATLAS_UNITS["02a"] == pytest.approx(-156.257, abs=0.01)
    assert d["night"] == _night(59543.194825, -156.257) == 20211124
    _, d = _row(tables, "01a59485o0083o_002297")  # Mauna Loa, 2021-09-28 05:38 UTC
    assert d["night"] == _night(59485.234788, ATLAS_UNITS["01a"]) == 20210927
    assert tables.detections["night"].dtype == np.int32
    # 14:24 UTC: daytime in Hawaii (still the night before) but the evening in Sutherland (unit 03a)
    schema, record = atlas_schemas["new"]
    packets = []
    for i, unit in enumerate(("02a", "03a", "99z")):
        r = copy.deepcopy(record)
        r["candid"] = r["candidate"]["candid"] = f"{unit}59543o0040o_00623{i}"
        r["candidate"]["mjd"] = 59543.6
        packets.append(RawMessage("t", 0, i, _encode(schema, r)))
    tables, dead, _ = decode_batch(packets, "units")
    assert dead == []
    nights = dict(zip(tables.detections["atlas_candid"].str[:3], tables.detections["night"], strict=True))
    assert nights == {
        "02a": _night(59543.6, ATLAS_UNITS["02a"]),
        "03a": _night(59543.6, ATLAS_UNITS["03a"]),
        "99z": _night(59543.6, SITES["atlas"]),  # an unknown unit: the default site
    }
    assert nights["02a"] == 20211124 and nights["03a"] == 20211125


# --------------------------------------------------------------------------------------- dead letters
@pytest.mark.parametrize("field", ["candidate", "objectId"])
def test_a_null_required_field_is_a_dead_letter_naming_it(atlas_schemas, field):
    for layout, (schema, record) in atlas_schemas.items():
        record = {**record, field: None}
        payload = _encode(_nullable(schema, field), record)
        tables, dead, raw = decode_batch([RawMessage("t", 3, 7, payload)], layout)
        assert tables.alerts.empty and raw.empty
        (letter,) = dead
        assert letter.reason == f"missing required field {field} (null in this packet)"
        assert letter.error == "MissingFieldError" and letter.payload == payload
        assert (letter.partition, letter.offset) == (3, 7)


def _candidate_changed(schema: dict, record: dict, **values) -> bytes:
    record = copy.deepcopy(record)
    record["candidate"].update(values)
    return _encode(schema, record)


def test_invalid_values_are_dead_letters_with_reasons(atlas_schemas):
    new_schema, new = atlas_schemas["new"]
    old_schema, old = atlas_schemas["old"]
    cases = [
        (_candidate_changed(new_schema, new, mjd=float("nan")), "candidate.mjd is nan"),
        (_candidate_changed(new_schema, new, filter="w"), "candidate.filter is 'w'"),
        (_candidate_changed(new_schema, new, Dec=95.0), "candidate.Dec is 95.0"),
        (_candidate_changed(new_schema, new, candid="other"), "disagrees with candidate.candid"),
        # the 2021 layout has no filter: a candid that is no exposure name leaves the band unknown
        (
            _encode(old_schema, {**old, "candid": "x1", "candidate": {**old["candidate"], "candid": "x1"}}),
            "x1",
        ),
        (_encode(old_schema, {**old, "objectId": ""}), "missing required field objectId"),
    ]
    tables, dead, _ = decode_batch([RawMessage("t", 0, i, p) for i, (p, _) in enumerate(cases)], "bad")
    assert tables.alerts.empty and len(dead) == len(cases)
    for letter, (_, words) in zip(dead, cases, strict=True):
        assert words in letter.reason, letter.reason
    assert "band cannot be told" in dead[4].reason


def test_schemas_without_a_required_field_are_refused(atlas_schemas):
    schema, record = atlas_schemas["old"]
    no_object = copy.deepcopy(schema)
    no_object["fields"] = [f for f in no_object["fields"] if f["name"] != "objectId"]
    no_ra = copy.deepcopy(schema)
    cand = next(f for f in no_ra["fields"] if f["name"] == "candidate")["type"]
    cand["fields"] = [f for f in cand["fields"] if f["name"] != "RA"]
    r_no_ra = copy.deepcopy(record)
    del r_no_ra["candidate"]["RA"]
    packets = [_encode(no_object, record), _encode(no_ra, r_no_ra)]
    _, dead, _ = decode_batch([RawMessage("t", 0, i, p) for i, p in enumerate(packets)], "schemas")
    assert [d.reason for d in dead] == [
        "missing required field objectId (the writer schema has no such field)",
        "missing required field candidate.RA (the writer schema has no such field)",
    ]
    with pytest.raises(UnknownSchemaError, match="not an ATLAS alert"):
        ATLAS.analyse(json.dumps({"type": "record", "name": "x", "fields": []}).encode())


def test_a_redelivered_alert_is_kept_once(atlas):
    msgs, _, _, _, _ = atlas
    tables, dead, raw = decode_batch([msgs[0], msgs[0], msgs[1]], "redelivery")
    assert dead == [] and len(tables.alerts) == len(tables.detections) == len(raw) == 2


# --------------------------------------------------------------------------------------- mixed surveys
@pytest.fixture(scope="module")
def samples(shared_data) -> dict[str, list[RawMessage]]:
    ztf = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:5]
    lsst = sorted((shared_data / "lsst" / "v9_0").glob("*.avro"))[:5]
    return {
        "ztf": _messages(shared_data, "ztf", ztf),
        "lsst": _messages(shared_data, "lsst", lsst),
        "atlas": _messages(shared_data / "atlas", "atlas"),
    }


def test_the_registry_picks_the_right_adapter(samples, shared_data):
    for survey, msgs in samples.items():
        for m in msgs:
            assert DEFAULT_REGISTRY.analyse(schema_header(m.payload)).adapter.info.name == survey
    atlas_schemas = {schema_header(m.payload) for m in samples["atlas"]}
    other = {schema_header(m.payload) for s in ("ztf", "lsst") for m in samples[s]}
    for folder in ("old_versions", "alerce_samples_snappy", "forced_photometry", "object_sequences"):
        for f in sorted((shared_data / "ztf" / folder).rglob("*.avro")):
            if f.read_bytes()[:4] == b"Obj\x01":
                other.add(schema_header(f.read_bytes()))
    for text in atlas_schemas:
        schema = json.loads(text)
        assert ATLAS.recognises(schema)
        assert not ZTF.recognises(schema) and not LSST.recognises(schema)
    for text in other:
        assert not ATLAS.recognises(json.loads(text))


def test_a_mixed_batch_decodes_into_one_set_of_tables(samples):
    ztf, lsst, atlas = samples["ztf"], samples["lsst"], samples["atlas"]
    mixed = []
    for i in range(max(map(len, samples.values()))):
        mixed += [group[i] for group in (atlas, ztf, lsst) if i < len(group)]
    tables, dead, raw = decode_batch(mixed, "mixed-0")
    assert dead == []
    counts = tables.alerts["survey"].value_counts().to_dict()
    assert counts == {"ztf": len(ztf), "lsst": len(lsst), "atlas": len(atlas)}
    assert (tables.alerts["survey"] == tables.alerts["source"]).all()  # each packet went to its survey
    assert set(tables.detections["survey"]) == {"ztf", "lsst", "atlas"}
    assert len(raw) == len(mixed) and raw["candid"].is_unique and tables.alerts["candid"].is_unique
    det = tables.detections
    assert det["candid"].dtype == np.int64 and det["fid"].dtype == np.int16 and det["night"].dtype == np.int32
    atlas_det = det[det["survey"] == "atlas"]
    assert set(atlas_det["fid"]) <= {10, 11} and atlas_det["oid"].str.startswith("ATLAS").all()
    assert det.loc[det["survey"] != "atlas", "atlas_candid"].isna().all()
    # the shared science reads the combined tables
    state = science(tables, with_features=False)
    atlas_objects = state.objects[state.objects["survey"] == "atlas"]
    assert len(atlas_objects) == atlas_det["oid"].nunique()
    assert set(state.magstats.loc[state.magstats["survey"] == "atlas", "fid"]) <= {10, 11}
