"""LSST end to end: real Rubin alerts of three schema versions (and a ZTF object) in one run, Rubin's wire
format from a real Kafka-protocol broker, and a simulated LSST night, through a real LocalCluster into the lake,
the history store and PostgreSQL."""

from __future__ import annotations

import io
import os
import struct
import uuid
from pathlib import Path

import fastavro
import pandas as pd
import pytest

from alert_broker.pipeline.config import load_settings
from alert_broker.pipeline.driver import run
from alert_broker.pipeline.kafka import ensure_topic, produce
from alert_broker.storage import Lake, RawArchive
from alert_broker.storage.history import HistoryStore
from alert_broker.surveys.lsst import packaged_schemas

pytestmark = pytest.mark.e2e


def _settings(tmp_path: Path, source: str, dsn: str, **kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    overrides = dict(
        source=source,
        out=str(tmp_path / "out"),
        pg_dsn=dsn,
        n_workers=2,
        threads_per_worker=1,
        batch_size=60,
        dashboard_address=":0",
        progress=False,
        publish_lake=False,  # the analysis tables: tests/e2e/test_lake_publish.py
        kafka_idle_stop_s=6,
        batch_timeout_s=2,
        lc_model="none",
        stamp_model="none",
    )
    overrides.update(kw)
    return load_settings(env=env, overrides=overrides)


def _source_ids(folder: Path) -> tuple[set[int], set[int]]:
    """(alert diaSourceIds, every diaSourceId incl. history) of the packets in ``folder``."""
    alerts, every = set(), set()
    for f in folder.glob("*.avro"):
        with open(f, "rb") as fh:
            for rec in fastavro.reader(fh):
                alerts.add(rec["diaSource"]["diaSourceId"])
                every.add(rec["diaSource"]["diaSourceId"])
                every |= {p["diaSourceId"] for p in rec.get("prvDiaSources") or ()}
    return alerts, every


def test_three_surveys_in_one_night(tmp_path, shared_data, summary_store):
    """LSST alerts of three schema versions, a ZTF object's alerts and the ATLAS alerts, read side by side."""
    lsst = [shared_data / "lsst" / v for v in ("v7_4", "v9_0", "v10_0")]
    ztf = shared_data / "ztf" / "object_sequences" / "ZTF19abaejrh"
    atlas = shared_data / "atlas"
    n_atlas = len(list(atlas.glob("*.avro")))
    settings = _settings(tmp_path, ";".join(map(str, [*lsst, ztf, atlas])), summary_store.dsn)
    report = run(settings)
    assert report.status == "ok" and report.dead_letters == 0
    alerts, every = set(), set()
    for folder in lsst:
        a, e = _source_ids(folder)
        alerts |= a
        every |= e
    assert report.alerts == len(alerts) + 12 + n_atlas

    pg = summary_store.fetch_df("SELECT survey, candid, oid, band, flux FROM alert")
    assert set(pg.loc[pg["survey"] == "lsst", "candid"]) == alerts
    assert pg.loc[pg["survey"] == "lsst", "oid"].str.startswith("LSST").all()
    assert pg["band"].notna().all() and pg["flux"].notna().all()
    assert set(pg["survey"]) == {"lsst", "ztf", "atlas"}
    assert (pg["survey"] == "atlas").sum() == n_atlas and pg.loc[pg["survey"] == "atlas", "band"].isin(
        ["c", "o"]
    ).all()

    lake = Lake(settings.lake)
    store = HistoryStore(lake, order=settings.history_order)
    det = store.read("detections", store.pixels("detections"))
    lsst_det = det[det["survey"] == "lsst"]
    assert set(lsst_det["candid"]) == every and lsst_det["candid"].is_unique  # every diaSourceId once
    per_object = lsst_det.groupby("oid").size()
    assert per_object.max() > 250  # the v10 objects with their ~300 previous sources
    forced = store.read("forced_photometry", store.pixels("forced_photometry"))
    assert (forced["survey"] == "lsst").sum() > 2000

    # LSST objects have magstats per band (magnitudes and difference fluxes) and object statistics
    ms = summary_store.fetch_df(
        "SELECT oid, fid, ndet, flux_mean, snr_max FROM magstats WHERE oid LIKE 'LSST%'"
    )
    assert len(ms) and ms["fid"].between(4, 9).all() and ms["flux_mean"].notna().all()
    objs = summary_store.fetch_df("SELECT oid, survey, ndet, meanra FROM object WHERE survey = 'lsst'")
    assert len(objs) == lsst_det["oid"].nunique()

    # the raw packet of an LSST alert comes back with its three cutouts
    row = summary_store.fetch_df("SELECT candid, raw_path FROM alert WHERE survey = 'lsst' LIMIT 1").iloc[0]
    stamps = RawArchive(lake).fetch_stamps(int(row["candid"]), path=row["raw_path"])
    assert set(stamps) == {"science", "template", "difference"}
    assert all(v.startswith(b"SIMPLE") for v in stamps.values())


def test_rubin_wire_format_from_kafka(tmp_path, shared_data, summary_store, kafka_bootstrap):
    """Messages as Rubin's Kafka stream sends them: magic 0, the schema id, schemaless Avro."""
    packaged = packaged_schemas()[(9, 0)]
    parsed = fastavro.parse_schema(packaged.schema)
    payloads = []
    for f in sorted((shared_data / "lsst" / "v9_0").glob("*.avro"))[:40]:
        with open(f, "rb") as fh:
            record = next(iter(fastavro.reader(fh)))
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, record)
        payloads.append((f.name, b"\0" + struct.pack(">I", packaged.schema_id) + buf.getvalue()))
    payloads.append(("unknown-id", b"\0" + struct.pack(">I", 4242) + b"\x02\x04\x06"))
    topic = f"lsst-{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka_bootstrap, topic, partitions=1)
    produce(kafka_bootstrap, topic, payloads)
    settings = _settings(tmp_path, f"kafka://{kafka_bootstrap}/{topic}", summary_store.dsn)
    report = run(settings)
    assert report.alerts == 40 and report.dead_letters == 1
    dead = summary_store.fetch_df("SELECT reason FROM dead_letter")
    assert "schema id 4242" in dead["reason"].iloc[0]
    got = summary_store.fetch_df("SELECT candid FROM alert WHERE survey = 'lsst'")
    assert len(got) == 40


def test_the_pipeline_reads_a_simulated_lsst_night(tmp_path, summary_store):
    settings = _settings(tmp_path, "sim", summary_store.dsn, survey="lsst", sim_objects=300, sim_seed=3)
    report = run(settings)
    assert report.status == "ok" and report.dead_letters == 0
    truth = pd.read_parquet(next((Path(settings.out) / "sim").glob("lsst-*-truth.parquet")))
    assert report.alerts == int(truth["n_alerts"].sum()) > 0


def _first_lsst_alerts(folders: list[Path]) -> tuple[set[str], set[str]]:
    """(oids whose first alert is in ``folders``, the Rubin solar-system ones among them), from the packets:
    an object's earliest alert, when no earlier diaSource of it precedes that alert in its own history."""
    earliest: dict[str, tuple[float, bool, bool]] = {}
    for folder in folders:
        for f in folder.glob("*.avro"):
            with open(f, "rb") as fh:
                for rec in fastavro.reader(fh):
                    src = rec["diaSource"]
                    sso = bool(src.get("ssObjectId"))
                    oid = f"LSSTSSO{src['ssObjectId']}" if sso else f"LSST{src['diaObjectId']}"
                    mjd = src["midpointMjdTai"]
                    prior = any(p["midpointMjdTai"] < mjd - 1e-6 for p in rec.get("prvDiaSources") or ())
                    if oid not in earliest or mjd < earliest[oid][0]:
                        earliest[oid] = (mjd, not prior, sso)
    first = {oid for oid, (_, ok, _) in earliest.items() if ok}
    return first, {oid for oid in first if earliest[oid][2]}


def test_each_surveys_first_alerts_get_their_own_stamp_model(tmp_path, shared_data, summary_store):
    """``--stamp-model auto``: Rubin's first alerts by stamp_classifier_lsst (its 30-pixel crops), ZTF's by
    stamp_classifier, ATLAS's by none (counted as skipped)."""
    lsst = [shared_data / "lsst" / v for v in ("v7_4", "v9_0")]
    ztf, atlas = shared_data / "ztf" / "alerce_samples_snappy", shared_data / "atlas"
    settings = _settings(
        tmp_path, ";".join(map(str, [*lsst, ztf, atlas])), summary_store.dsn, stamp_model="auto"
    )
    report = run(settings)
    assert report.status == "ok" and report.dead_letters == 0
    rows = summary_store.fetch_df(
        "SELECT oid, classifier_name, class_name, probability FROM probability "
        "WHERE classifier_name LIKE 'stamp_classifier%'"
    )
    by_model = rows.groupby("classifier_name")["oid"].agg(lambda s: set(s))
    first, sso = _first_lsst_alerts(lsst)
    assert len(first) > 50 and len(sso) == 3  # four solar-system alerts of three objects
    assert by_model["stamp_classifier_lsst"] == first
    assert by_model["stamp_classifier"] and all(o.startswith("ZTF") for o in by_model["stamp_classifier"])
    assert rows.groupby("oid").size().eq(5).all()  # five classes, one model per object
    # Rubin's solar-system association decides: probability 1 for asteroid
    ast = rows[rows["oid"].isin(sso) & (rows["class_name"] == "asteroid")]
    assert len(ast) == 3 and (ast["probability"] == 1.0).all()
    assert report.counts.get("stamp_skipped_atlas", 0) > 0 and "stamp_skipped_lsst" not in report.counts
    tax = summary_store.fetch_df("SELECT DISTINCT classifier_name FROM taxonomy")
    assert {"stamp_classifier", "stamp_classifier_lsst"} <= set(tax["classifier_name"])

    # `broker reclassify --stamps` (auto): each model re-scores its own survey's objects from the raw archive, to
    # the same rows
    from alert_broker.pipeline.cli import main

    argv = ["reclassify", "--out", str(settings.out), "--pg-dsn", summary_store.dsn, "--lc-model", "none"]
    assert main([*argv, "--stamps", "--n-workers", "1"]) == 0
    again = summary_store.fetch_df(
        "SELECT oid, classifier_name, class_name, probability FROM probability "
        "WHERE classifier_name LIKE 'stamp_classifier%'"
    )
    both = again.merge(rows, on=["oid", "classifier_name", "class_name"], suffixes=("", "_run"))
    assert len(both) == len(rows) == len(again)
    assert (both["probability"] - both["probability_run"]).abs().max() < 1e-6
    runs = summary_store.fetch_df("SELECT config FROM pipeline_run WHERE source = 'reclassify'")
    assert "stamp_classifier_lsst" in str(runs["config"].iloc[0])
