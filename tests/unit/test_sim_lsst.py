"""Simulated LSST alerts: the latest lsst.alert schema, 12-month histories, solar-system sources, cutouts."""

from __future__ import annotations

import io
import struct

import fastavro
import numpy as np
import pytest
from astropy.io import fits

from alert_broker.simulator import SimConfig, build_world, iter_alerts
from alert_broker.simulator.avro import ContainerFramer, lsst_schema, sync_marker

CFG = SimConfig(survey="lsst", objects=800, nights=2, seed=9, n_fields=3)


@pytest.fixture(scope="module")
def run():
    alerts = list(iter_alerts(CFG))
    records = [next(fastavro.reader(io.BytesIO(a.payload))) for a in alerts]
    return alerts, records, build_world(CFG).pop


def test_alerts_are_valid_latest_schema_packets(run):
    alerts, records, _ = run
    schema, version, _ = lsst_schema()
    parsed = fastavro.parse_schema(schema)
    framer = ContainerFramer(schema, "null", sync_marker(CFG.seed, "lsst"))
    assert len(alerts) > 100
    for k, (a, r) in enumerate(zip(alerts, records, strict=True)):
        assert fastavro.reader(io.BytesIO(a.payload)).writer_schema["name"] == schema["name"]
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, r, strict=True)
        assert framer.frame(buf.getvalue()) == a.payload
        if k % 10 == 0:
            assert fastavro.validate(r, schema, raise_errors=True)
        assert r["diaSourceId"] == r["diaSource"]["diaSourceId"] == a.candid
    assert version.startswith("11.") or int(version.split(".")[0]) > 11


def test_sources_are_significant_and_histories_span_a_year(run):
    alerts, records, truth = run
    ids = set()
    long_history = 0
    for a, r in zip(alerts, records, strict=True):
        s = r["diaSource"]
        t = s["midpointMjdTai"]
        assert abs(s["psfFlux"] / s["psfFluxErr"]) >= 5 and s["isNegative"] == (s["psfFlux"] < 0)
        assert s["band"] in "ugrizy"
        ids.add(s["diaSourceId"])
        prv = r["prvDiaSources"] or []
        for p in prv:
            assert t - 365 <= p["midpointMjdTai"] < t and p["diaObjectId"] == s["diaObjectId"]
            assert abs(p["psfFlux"] / p["psfFluxErr"]) >= 5
        for f in r["prvDiaForcedSources"] or []:
            assert t - 365 <= f["midpointMjdTai"] < t and f["diaObjectId"] == s["diaObjectId"]
        if prv and t - min(p["midpointMjdTai"] for p in prv) > 180:
            long_history += 1
        if r["diaObject"] is not None:
            o = r["diaObject"]
            assert o["diaObjectId"] == s["diaObjectId"] == truth["object_id"].iat[a.obj]
            assert o["nDiaSources"] >= len(prv) + 1
            band_n = sum(o[f"{b}_psfFluxNdata"] or 0 for b in "ugrizy")
            assert band_n == o["nDiaSources"]
            assert o[f"{s['band']}_psfFluxMin"] <= s["psfFlux"] <= o[f"{s['band']}_psfFluxMax"]
    assert len(ids) == len(alerts)
    assert long_history > 10


def test_solar_system_sources_have_no_object_and_no_history(run):
    alerts, records, truth = run
    n = 0
    for a, r in zip(alerts, records, strict=True):
        if truth["class"].iat[a.obj] == "asteroid":
            n += 1
            assert r["ssSource"] is not None and r["diaObject"] is None
            assert r["prvDiaSources"] is None and r["prvDiaForcedSources"] is None
            assert r["diaSource"]["ssObjectId"] == r["ssSource"]["ssObjectId"] != 0
            assert r["ssSource"]["designation"] == truth["ssnamenr"].iat[a.obj]
        else:
            assert r["ssSource"] is None and r["diaObject"] is not None
    assert n > 5


def test_cutouts_are_lsst_fits_at_the_alert_position(run):
    _, records, _ = run
    for r in records[:60]:
        for key in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
            with fits.open(io.BytesIO(r[key])) as h:
                assert [x.name for x in h] == ["PRIMARY", "UNCERT", "PSFIMAGE"]
                assert h[0].data.shape == (30, 30) and h[0].header["BUNIT"] == "nJy"
                assert h[0].header["CRVAL1"] == pytest.approx(r["diaSource"]["ra"], abs=1e-9)
                assert h[0].header["CRVAL2"] == pytest.approx(r["diaSource"]["dec"], abs=1e-9)
                assert np.all(h[1].data > 0) and h[2].data.sum() == pytest.approx(1.0, abs=0.02)


def test_confluent_wire_format_for_kafka():
    cfg = SimConfig(
        survey="lsst", objects=300, nights=2, seed=9, n_fields=2, extra={"lsst_wire": "confluent"}
    )
    schema, _, schema_id = lsst_schema()
    parsed = fastavro.parse_schema(schema)
    n = 0
    for a in iter_alerts(cfg):
        magic, sid = struct.unpack(">bI", a.payload[:5])
        assert magic == 0 and sid == schema_id
        rec = fastavro.schemaless_reader(io.BytesIO(a.payload[5:]), parsed)
        assert rec["diaSourceId"] == a.candid
        n += 1
    assert n > 10
