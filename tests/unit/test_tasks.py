"""Worker-side helpers: merging a region's pieces must not depend on how the batch was chunked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alert_broker.features.science import merge_pieces
from alert_broker.features.tables import Tables
from alert_broker.pipeline.sinks import feature_summary, latest_alert_night, with_alert_night


def _det(candid, has_stamp, sgscore1):
    return pd.DataFrame(
        {"oid": ["o1"], "candid": [candid], "has_stamp": [has_stamp], "sgscore1": [sgscore1], "mjd": [1.0]}
    )


def test_own_detection_wins_over_history_copy_in_any_order():
    own, copy = _det(7, True, 0.9), _det(7, False, float("nan"))
    for pieces in (
        [Tables(detections=own), Tables(detections=copy)],
        [Tables(detections=copy), Tables(detections=own)],
    ):
        merged = merge_pieces(pieces).detections
        assert len(merged) == 1
        assert bool(merged["has_stamp"].iloc[0]) and merged["sgscore1"].iloc[0] == 0.9


def test_non_detections_deduplicated_by_key():
    nd = pd.DataFrame({"oid": ["o1", "o1"], "fid": [1, 1], "mjd": [5.0, 5.0], "diffmaglim": [20.0, 20.0]})
    assert len(merge_pieces([Tables(non_detections=nd), Tables(non_detections=nd)]).non_detections) == 1


def test_feature_summary_json_has_no_nan():
    feats = pd.DataFrame(
        {
            "oid": ["a"],
            "Amplitude_1": [0.5],
            "Amplitude_2": [float("nan")],
            "FEATURE_VERSION": ["v"],
            "lastmjd": [1.0],
            "night": [20200101],
        }
    )
    row = feature_summary(feats).iloc[0]
    assert row["features"] == {"Amplitude_1": 0.5, "Amplitude_2": None}
    assert row["n_features"] == 1


def _real_pieces(shared_data, n=30):
    from alert_broker.surveys.decode import decode_batch
    from alert_broker.surveys.messages import RawMessage

    files = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:n]
    msgs = [RawMessage("archive:t", 0, i, f.read_bytes(), key=f.name) for i, f in enumerate(files)]
    tables, dead, raw = decode_batch(msgs, "b0")
    assert not dead
    return tables, raw


def test_a_poisoned_object_is_isolated_and_the_region_goes_on(shared_data, tmp_path, monkeypatch):
    import alert_broker.features.science as science_module
    from alert_broker.pipeline import steps
    from alert_broker.pipeline.resources import LakeSpec
    from alert_broker.pipeline.steps import RegionConfig
    from alert_broker.pipeline.tasks import process_region

    tables, _ = _real_pieces(shared_data)
    poisoned = tables.alerts["oid"].iloc[3]
    real_correct = science_module.correct

    def correct_or_fail(det):
        if (det["oid"] == poisoned).any():
            raise FloatingPointError("simulated science failure")
        return real_correct(det)

    monkeypatch.setattr(science_module, "correct", correct_or_fail)
    assert any(s.guarded for s in steps.REGION_STEPS)
    config = RegionConfig(lake=LakeSpec(str(tmp_path)), with_features=False)
    res = process_region([tables], "b0", 0, config)
    assert set(res.failed["oid"]) == {poisoned}
    assert set(res.failed["candid"]) == set(tables.alerts.loc[tables.alerts["oid"] == poisoned, "candid"])
    assert res.failed["reason"].str.contains("simulated science failure").all()
    assert {"source", "partition", "offset"} <= set(res.failed.columns)
    objects = res.rows["objects"]
    assert poisoned not in set(objects["oid"])
    assert res.counts["alerts"] == len(tables.alerts) - len(res.failed)
    assert set(objects["oid"]) == set(tables.alerts["oid"]) - {poisoned}


def test_failed_alerts_become_dead_letters_with_their_raw_packets(shared_data, tmp_path):
    from alert_broker.pipeline.config import load_settings
    from alert_broker.pipeline.driver import Broker
    from alert_broker.storage import Lake, RawArchive

    tables, raw = _real_pieces(shared_data, n=10)
    lake = Lake(str(tmp_path))
    paths = RawArchive(lake).write(raw, "b0-c000")
    by_night = {int(p.split("night=")[1].split("/")[0]): p for p in paths}
    raw_path = dict(zip(raw["candid"], raw["night"].map(by_night), strict=True))
    failed = tables.alerts.iloc[[2, 5]][["candid", "oid", "source", "partition", "offset"]].assign(
        reason="processing failed for object x: boom", error="ScienceError"
    )
    failed["raw_path"] = failed["candid"].map(raw_path)
    broker = Broker(load_settings(env={}), client=None, lake=lake, store=None)
    letters = broker._science_dead_letters(failed)
    assert [d.offset for d in letters] == failed["offset"].tolist()
    expected = dict(zip(raw["candid"], raw["payload"], strict=True))
    assert [d.payload for d in letters] == [expected[c] for c in failed["candid"]]
    assert all(d.reason.startswith("processing failed") for d in letters)


def test_rows_are_filed_under_their_objects_latest_alert_night():
    """with_alert_night against the plain definition (the max alert night of the row's oid, mapped), with the
    region's lookup computed once and shared by every table, and the same refusal of an object without an alert."""
    rng = np.random.default_rng(8)
    oids = np.array([f"ZTF{i:07d}" for i in range(300)], dtype=object)
    alerts = pd.DataFrame(
        {
            "oid": pd.array(rng.choice(oids, 900), dtype="str"),
            "night": rng.integers(20200101, 20200130, 900).astype("int32"),
        }
    )
    seen = alerts["oid"].unique()
    rows = pd.DataFrame({"oid": pd.array(rng.choice(seen, 2000), dtype="str"), "mag": rng.normal(size=2000)})
    want = alerts.groupby("oid")["night"].max()
    latest = latest_alert_night(alerts)
    for got in (with_alert_night(rows, alerts), with_alert_night(rows, alerts, latest)):
        assert got["alert_night"].dtype == np.int32
        assert got["alert_night"].tolist() == [int(want[o]) for o in rows["oid"]]
        assert got["mag"].equals(rows["mag"])
    with pytest.raises(ValueError):
        with_alert_night(pd.DataFrame({"oid": ["ZTFnever"]}), alerts)
