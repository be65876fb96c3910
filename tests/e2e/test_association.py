"""Three surveys, one sky: the simulator's joint ZTF + LSST sky through the pipeline, and the cross-survey ids
it gives. True pairs (the same simulated object seen by both surveys) must share an xid, distinct objects must
not, and the answer must not depend on which survey came first, in one run or across nights and runs."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from alert_broker.pipeline.config import load_settings
from alert_broker.pipeline.driver import run
from alert_broker.simulator import SimConfig
from alert_broker.simulator.engine import simulate_joint
from alert_broker.storage import Lake
from alert_broker.storage.history import HistoryStore
from tests.fixtures.services import new_database

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def joint_sky(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("joint")
    simulate_joint(SimConfig(survey="ztf+lsst", nights=2, objects=5000, seed=11, stamps=False), str(out))
    return out


def _truth(sky: Path) -> pd.DataFrame:
    t = pd.read_parquet(sky / "truth.parquet")
    t["oid_lsst"] = "LSST" + t["oid_lsst"].astype("string")
    return t


def _run(out: Path, dsn: str, *sources: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    settings = load_settings(
        env=env,
        overrides=dict(
            source=";".join(map(str, sources)),
            out=str(out),
            pg_dsn=dsn,
            n_workers=2,
            batch_size=400,
            dashboard_address=":0",
            progress=False,
            lc_model="none",
            stamp_model="none",
            features=False,
            publish_lake=False,  # the analysis tables are not what these tests look at
        ),
    )
    report = run(settings)
    assert report.status == "ok" and report.dead_letters == 0


def _xids(store, dsn_out: Path) -> pd.Series:
    assoc = store.fetch_df("SELECT oid, xid FROM object_association")
    return assoc.set_index("oid")["xid"]


def _groups(xid: pd.Series) -> set[frozenset]:
    return {frozenset(g.index) for _, g in xid.groupby(xid) if len(g) > 1}


def _score(truth: pd.DataFrame, xid: pd.Series) -> tuple[int, float, float]:
    """(true pairs, share of them sharing an xid, share of associations that join distinct objects)."""
    both = truth[truth["oid_ztf"].isin(xid.index) & truth["oid_lsst"].isin(xid.index)]
    joined = (xid.reindex(both["oid_ztf"]).to_numpy() == xid.reindex(both["oid_lsst"]).to_numpy()).mean()
    truth_of = pd.concat([truth.dropna(subset=[c]).set_index(c)["truth_id"] for c in ("oid_ztf", "oid_lsst")])
    links = 0
    false = 0
    for _, group in xid.groupby(xid):
        if len(group) < 2:
            continue
        ids = truth_of.reindex(group.index)
        links += len(group) - 1
        false += ids.nunique() - 1  # more than one truth object in the group: each extra one is a false link
    return len(both), float(joined), false / max(links, 1)


def test_true_pairs_share_an_xid_and_false_ones_do_not(tmp_path, joint_sky, postgres_dsn):
    with new_database(postgres_dsn) as dsn:
        _run(tmp_path / "both", dsn, joint_sky / "ztf", joint_sky / "lsst")
        from alert_broker.storage import SummaryStore

        xid = _xids(SummaryStore(dsn), tmp_path)
    pairs, joined, false = _score(_truth(joint_sky), xid)
    assert pairs >= 200
    assert joined >= 0.99, f"{joined:.4f} of {pairs} true pairs share an xid"
    assert false < 0.001, f"{false:.4%} of associations are false"

    # the combined light curve of a pair: both surveys, band on every point
    store = HistoryStore(Lake(str(tmp_path / "both" / "lake")))
    truth = _truth(joint_sky)
    pair = truth[truth["oid_ztf"].isin(xid.index) & truth["oid_lsst"].isin(xid.index)].iloc[0]
    lc = store.multisurvey_light_curve(pair["oid_lsst"])
    assert set(lc["survey"]) == {"ztf", "lsst"} and lc["band"].notna().all()
    assert set(lc["oid"]) >= {pair["oid_ztf"], pair["oid_lsst"]}


def test_association_does_not_depend_on_which_survey_came_first(tmp_path, joint_sky, postgres_dsn):
    """ZTF's night processed first and LSST's in a later run, or the other way round: the same groups (the
    association survives across runs through the history store)."""
    from alert_broker.storage import SummaryStore

    groups = []
    for order in (("ztf", "lsst"), ("lsst", "ztf")):
        out = tmp_path / "-".join(order)
        with new_database(postgres_dsn) as dsn:
            for survey in order:
                _run(out, dsn, joint_sky / survey)
            groups.append(_groups(_xids(SummaryStore(dsn), out)))
    assert groups[0] == groups[1]
    assert len(groups[0]) >= 150
