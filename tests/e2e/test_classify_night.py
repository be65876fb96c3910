"""Both classifiers in a night, with the shipped models (``--lc-model auto --stamp-model auto``): the stamp CNN on
the first alert of each new object, the light-curve classifier on objects with features; probability rows and the
taxonomy that explains them in the lake and PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import fastavro
import numpy as np
import pandas as pd
import pytest

from alert_broker.pipeline.config import load_settings
from alert_broker.pipeline.driver import run
from alert_broker.storage import Lake

pytestmark = pytest.mark.e2e


def _first_alerts(files: list[Path]) -> dict[str, Path]:
    """oid -> candid of the alerts whose packet carries no earlier detection of the object: what ALeRCE calls
    the first alert, read straight from the Avro packets."""
    out = {}
    for f in files:
        try:
            with open(f, "rb") as fh:
                rec = next(iter(fastavro.reader(fh)))
        except Exception:  # noqa: BLE001 - HTML pages among the sequences
            continue
        jd = rec["candidate"]["jd"]
        earlier = [
            p for p in rec.get("prv_candidates") or [] if p.get("candid") is not None and p["jd"] < jd - 1e-6
        ]
        if not earlier:
            out[rec["objectId"]] = f
    return out


@pytest.fixture(scope="module")
def night(tmp_path_factory, shared_data):
    src = tmp_path_factory.mktemp("night")
    files = []
    for oid in ("ZTF20aaelulu", "ZTF19abaejrh", "ZTF19aazzpje"):
        for f in sorted((shared_data / "ztf" / "object_sequences" / oid).glob("*.avro")):
            os.symlink(f, src / f"{oid}_{f.name}")
            files.append(f)
    for f in sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[:60]:
        os.symlink(f, src / f.name)
        files.append(f)
    return src, files


def test_stamp_and_light_curve_probabilities(tmp_path, night, summary_store, monkeypatch):
    src, files = night
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    settings = load_settings(
        env=env,
        overrides=dict(
            source=str(src),
            out=str(tmp_path / "out"),
            pg_dsn=summary_store.dsn,
            n_workers=2,
            threads_per_worker=1,
            batch_size=40,
            dashboard_address=":0",
            progress=False,
        ),
    )
    report = run(settings)
    assert report.status == "ok"

    probs = summary_store.fetch_df("SELECT * FROM probability")
    stamp = probs[probs["classifier_name"] == "stamp_classifier"]
    first = _first_alerts(files)
    assert len(first) >= 2, "the test needs objects whose first alert is in the night"
    assert set(stamp["oid"]) == set(first)
    for _, rows in stamp.groupby("oid"):
        assert sorted(rows["class_name"]) == sorted(["SN", "AGN", "VS", "asteroid", "bogus"])
        assert rows["probability"].sum() == pytest.approx(1.0, abs=1e-5)
        assert sorted(rows["ranking"]) == [1, 2, 3, 4, 5]

    # the pipeline's answer is the library's answer on the same packet, decoded independently
    from alert_broker.classifiers.stamp import StampClassifier
    from alert_broker.surveys.decode import decode_batch
    from alert_broker.surveys.messages import RawMessage

    oid, path = sorted(first.items())[0]
    tables, dead, _ = decode_batch([RawMessage("t", 0, 0, path.read_bytes())], "check")
    assert not dead
    clf = StampClassifier.load(root=settings.models)
    direct = clf.predict_proba(tables.alerts, tables.stamps)
    got = stamp[stamp["oid"] == oid].set_index("class_name")["probability"]
    for cls in got.index:
        assert got[cls] == pytest.approx(float(direct[cls].iloc[0]), abs=1e-5)

    # the light-curve classifier ran on every object with features, both levels
    feats = summary_store.fetch_df("SELECT oid FROM feature")
    lc = probs[probs["classifier_name"] == "lc_hierarchical"]
    assert len(feats) >= 3 and set(lc["oid"]) == set(feats["oid"])
    assert set(probs["classifier_name"]) == {"stamp_classifier", "lc_hierarchical", "lc_hierarchical_top"}

    # the taxonomy names every (classifier, version, class) that has probabilities
    tax = summary_store.fetch_df("SELECT * FROM taxonomy")
    joined = probs.merge(tax, on=["classifier_name", "classifier_version", "class_name"], how="left")
    assert joined["level"].notna().all()

    lake = Lake(settings.lake).read_table("probabilities", dedupe=True)
    assert set(lake[lake["classifier_name"] == "stamp_classifier"]["oid"]) == set(first)
    assert np.isfinite(pd.to_numeric(lake["probability"])).all()

    # `broker reclassify --stamps`: the first alerts read back from the raw archive give the night's rows again
    # (on a LocalCluster of two workers, 7 alerts a task), and another version scores the same objects beside
    # them (in this process: --n-workers 1)
    from alert_broker.pipeline import reclassify as reclassify_module
    from alert_broker.pipeline.cli import main

    monkeypatch.setattr(reclassify_module, "STAMP_TASK", 7)
    monkeypatch.setattr(reclassify_module, "STAMPS_IN_PROCESS", 0)  # a night this small would stay in-process
    clusters = []
    real_cluster = reclassify_module._cluster
    monkeypatch.setattr(
        reclassify_module, "_cluster", lambda *a: clusters.append(client := real_cluster(*a)) or client
    )

    version = stamp["classifier_version"].iloc[0]
    common = [
        "reclassify",
        "--out",
        str(settings.out),
        "--pg-dsn",
        summary_store.dsn,
        "--lc-model",
        "none",
        "--stamps",
    ]
    assert main([*common, "--stamp-model", f"stamp_classifier:{version}", "--dashboard-address", ":0"]) == 0
    assert len(clusters) == 1 and clusters[0] is not None  # the alerts were scored on two workers
    again = summary_store.fetch_df(
        "SELECT oid, class_name, probability, ranking FROM probability WHERE classifier_name = 'stamp_classifier'"
    )
    both = again.merge(stamp, on=["oid", "class_name"], suffixes=("", "_run"))
    assert len(both) == len(stamp) == len(again) and (both["ranking"] == both["ranking_run"]).all()
    assert np.abs(both["probability"] - both["probability_run"]).max() < 1e-6
    other = next(v for v in ("1.2.0", "1.1.0") if v != version)
    assert main([*common, "--stamp-model", f"stamp_classifier:{other}", "--n-workers", "1"]) == 0
    assert len(clusters) == 2 and clusters[1] is None  # in this process
    mine = summary_store.fetch_df(
        "SELECT oid FROM probability WHERE classifier_name = 'stamp_classifier' AND classifier_version = %s",
        (other,),
    )
    assert set(mine["oid"]) == set(first)
    # the explorer's night statistics and SN candidates read each object's latest stamp version only
    from alert_broker.api.data import BrokerData
    from alert_broker.classifiers.registry import version_key

    data = BrokerData(summary_store.dsn, settings.lake)
    try:
        night_stats = data.stats()
        candidates = pd.DataFrame(data.sn_candidates(max_age_days=1e5, ranking=None)["candidates"])
    finally:
        data.close()
    counts = [c for c in night_stats["classes"] if c["classifier_name"] == "stamp_classifier"]
    tonight = summary_store.fetch_df(
        "SELECT count(DISTINCT oid) AS n FROM probability WHERE classifier_name = 'stamp_classifier'"
        " AND oid IN (SELECT oid FROM alert WHERE night = %s)",
        (night_stats["night"],),
    )["n"].iloc[0]
    assert sum(c["objects"] for c in counts) == tonight > 0  # each object once, not once per version
    latest = max(version, other, key=version_key)
    assert candidates["oid"].is_unique and set(candidates["classifier_version"]) <= {latest}


def test_reclassify_from_the_stored_features(tmp_path, night, summary_store, capsys):
    """`broker reclassify` after a night: the run's own model, re-scoring the vectors PostgreSQL stored, gives
    the probabilities the workers gave (the JSON round trip loses nothing a model reads); another version adds its
    rows beside the run's and reports the class changes the rows show; a model reading a feature version the
    database does not hold gets its vectors from the history store's light curves (refused without one), and
    those vectors, computed for the run's own version, give the night's probabilities again."""
    import json

    from alert_broker.pipeline.cli import main

    src, _ = night
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    settings = load_settings(
        env=env,
        overrides=dict(
            source=str(src), out=str(out), pg_dsn=summary_store.dsn, n_workers=1, threads_per_worker=2,
            batch_size=40, dashboard_address=":0", progress=False, stamp_model="none",
        ),
    )  # fmt: skip
    assert run(settings).status == "ok"
    query = (
        "SELECT oid, classifier_name, class_name, probability, ranking FROM probability"
        " WHERE classifier_version = %s AND classifier_name LIKE 'lc_hierarchical%%' ORDER BY 1, 2, 3"
    )
    run_version = summary_store.fetch_df("SELECT DISTINCT classifier_version FROM probability")[
        "classifier_version"
    ].tolist()
    assert len(run_version) == 1
    by_run = summary_store.fetch_df(query, (run_version[0],))
    n_objects = summary_store.count("feature")
    assert n_objects >= 3 and by_run["oid"].nunique() == n_objects

    def reclassify(*more: str) -> tuple[int, list[dict]]:
        before = set((out / "reports").glob("reclassify-*.json"))
        rc = main(["reclassify", "--out", str(out), "--pg-dsn", summary_store.dsn, *more])
        new = set((out / "reports").glob("reclassify-*.json")) - before
        return rc, [r for p in new for r in json.loads(p.read_text())]

    # the run's model (auto: the LSST model has no stored flux features here and is skipped)
    rc, (rep,) = reclassify("--lc-model", "auto")
    assert rc == 0 and rep["version"] == run_version[0] and rep["objects"] == n_objects
    again = summary_store.fetch_df(query, (run_version[0],))
    pd.testing.assert_frame_equal(again.drop(columns="probability"), by_run.drop(columns="probability"))
    assert np.abs(again["probability"] - by_run["probability"]).max() < 1e-9

    # another version: a dry run writes nothing, the real one adds its rows and its taxonomy
    other = "1.5.0"
    rc, (dry,) = reclassify("--lc-model", f"lc_hierarchical:{other}", "--dry-run")
    assert rc == 0 and not dry["written"] and summary_store.fetch_df(query, (other,)).empty
    rc, (rep,) = reclassify("--lc-model", f"lc_hierarchical:{other}")
    mine = summary_store.fetch_df(query, (other,))
    assert rc == 0 and mine["oid"].nunique() == n_objects == rep["objects"]
    assert summary_store.fetch_df(query, (run_version[0],)).equals(again)  # the run's rows stay
    tax = summary_store.fetch_df(
        "SELECT DISTINCT class_name FROM taxonomy WHERE classifier_version = %s", (other,)
    )
    assert set(mine["class_name"]) <= set(tax["class_name"])
    top = {v: f[(f["ranking"] == 1) & (f["classifier_name"] == "lc_hierarchical")].set_index("oid")["class_name"]
           for v, f in ((other, mine), (run_version[0], again))}  # fmt: skip
    changed = int((top[other] != top[run_version[0]].reindex(top[other].index)).sum())
    assert rep["previous_version"] == run_version[0] and rep["compared"] == n_objects
    assert rep["changed"] == changed == dry["changed"]
    assert sum(rep["top_classes"].values()) == n_objects
    # each re-scoring that wrote is a pipeline_run row (the night page lists it), the dry run none
    runs = summary_store.fetch_df(
        "SELECT status, counts, summary FROM pipeline_run WHERE source = 'reclassify' ORDER BY started_at"
    )
    assert runs["status"].tolist() == ["ok", "ok"]
    last = runs.iloc[-1]
    assert last["counts"] == {"objects": n_objects, "changed": changed}
    assert last["summary"]["reclassify"][0]["version"] == other

    # one object only
    oid = sorted(top[other].index)[0]
    rc, (rep,) = reclassify("--lc-model", "lc_hierarchical:1.4.0", "--oid", oid)
    assert rc == 0 and rep["objects"] == 1
    assert set(summary_store.fetch_df(query, ("1.4.0",))["oid"]) == {oid}

    # a model on features the database does not hold: refused without a history store to compute them from ...
    capsys.readouterr()
    rc, reports = reclassify("--lc-model", "lc_hierarchical:1.1.0", "--no-history")
    err = capsys.readouterr().err
    assert rc == 1 and not reports and summary_store.fetch_df(query, ("1.1.0",)).empty
    assert "lc-features-1.0.0" in err and f"lc-features-1.1.0 ({n_objects} objects)" in err

    # ... and with one, computed from the stored light curves, stored, and read back by the next re-scoring
    # (on a LocalCluster of two workers: the pixel groups are Dask tasks)
    rc, (rep,) = reclassify("--lc-model", "lc_hierarchical:1.1.0", "--dashboard-address", ":0")
    first = summary_store.fetch_df(query, ("1.1.0",))
    held = summary_store.fetch_df("SELECT oid FROM feature WHERE feature_version = 'lc-features-1.0.0'")
    assert rc == 0 and rep["source"] == "history" and rep["objects"] == len(held) > 0
    assert set(first["oid"]) == set(held["oid"])
    rc, (rep,) = reclassify("--lc-model", "lc_hierarchical:1.1.0")
    assert rc == 0 and rep["source"] == "stored" and rep["objects"] == len(held)
    assert (
        np.abs(summary_store.fetch_df(query, ("1.1.0",))["probability"] - first["probability"]).max() < 1e-9
    )

    # the run's model on vectors computed again from the history store: the night's own probabilities
    # (in this process: --n-workers 1)
    rc, (rep,) = reclassify(
        "--lc-model", f"lc_hierarchical:{run_version[0]}", "--from-history", "--n-workers", "1"
    )
    assert rc == 0 and rep["source"] == "history" and rep["objects"] == n_objects
    redone = summary_store.fetch_df(query, (run_version[0],))
    pd.testing.assert_frame_equal(redone.drop(columns="probability"), by_run.drop(columns="probability"))
    assert np.abs(redone["probability"] - by_run["probability"]).max() < 1e-9

    # the API's class queries answer with each object's latest version (one row per object), unless asked
    from alert_broker.api.data import BrokerData, ObjectQuery
    from alert_broker.classifiers.registry import version_key

    data = BrokerData(summary_store.dsn, settings.lake)
    try:
        rows = pd.DataFrame(data.objects(ObjectQuery(classifier="lc_hierarchical", page_size=1000))["items"])
        pinned = pd.DataFrame(
            data.objects(
                ObjectQuery(classifier="lc_hierarchical", classifier_version="1.1.0", page_size=1000)
            )["items"]
        )
    finally:
        data.close()
    every = summary_store.fetch_df(
        "SELECT oid, classifier_version FROM probability WHERE classifier_name = 'lc_hierarchical' AND ranking = 1"
    )
    latest = every.groupby("oid")["classifier_version"].agg(lambda v: max(v, key=version_key))
    assert rows["oid"].is_unique and len(rows) == len(latest)
    assert dict(zip(rows["oid"], rows["classifier_version"], strict=True)) == latest.to_dict()
    assert set(pinned["classifier_version"]) == {"1.1.0"} and set(pinned["oid"]) == set(held["oid"])
