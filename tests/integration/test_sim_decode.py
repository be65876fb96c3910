"""Simulated ZTF alerts go through the broker's own decoder exactly like real ones."""

from __future__ import annotations

import pytest

from alert_broker.simulator import SimConfig, build_world, iter_alerts
from alert_broker.surveys.messages import RawMessage

try:
    from alert_broker.surveys.decode import decode_batch
except ImportError as exc:  # the decoder is another part of the project
    pytest.skip(f"pipeline.decode.decode_batch is not available yet ({exc})", allow_module_level=True)


@pytest.mark.parametrize("schema", ["ztf", "fink"])
def test_decoder_accepts_every_simulated_alert(schema):
    cfg = SimConfig(objects=700, nights=2, seed=13, ztf_schema=schema)
    alerts = list(iter_alerts(cfg))
    msgs = [RawMessage("sim", 0, i, a.payload, key=f"{a.candid}.avro") for i, a in enumerate(alerts)]
    tables, dead, raw = decode_batch(msgs, "sim-batch")
    assert dead == []
    assert len(tables.alerts) == len(alerts) == len(raw) == len(tables.stamps)
    a = tables.alerts.set_index("candid")
    for al in alerts:
        assert a.at[al.candid, "oid"] == al.oid and a.at[al.candid, "night"] == al.night
    assert set(a["isdiffpos"].unique()) <= {1, -1}
    det = tables.detections
    assert not det.duplicated(["oid", "candid"]).any()
    assert set(a.index) <= set(det["candid"])
    # asteroids: one detection each, no earlier detections in any history
    truth = build_world(cfg).pop
    ast_oids = {al.oid for al in alerts if truth["class"].iat[al.obj] == "asteroid"}
    assert ast_oids and (det[det["oid"].isin(ast_oids)].groupby("oid").size() == 1).all()
    assert len(tables.non_detections) > len(alerts)
    assert (len(tables.forced_photometry) > 0) == (schema == "ztf")
