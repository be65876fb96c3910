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


def test_stamp_and_light_curve_probabilities(tmp_path, night, summary_store):
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
