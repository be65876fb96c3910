"""Summary tables of issue 6 on a real PostgreSQL: neighbour (version mjd) and object_association."""

from __future__ import annotations

import pandas as pd
import pytest

from alert_broker.features.association import associate
from alert_broker.features.neighbours import alert_neighbours, latest_neighbours
from alert_broker.surveys.decode import decode_batch
from alert_broker.surveys.messages import RawMessage

pytestmark = pytest.mark.integration
AS = 1.0 / 3600.0


@pytest.fixture(scope="module")
def fink(shared_data):
    files = sorted((shared_data / "ztf" / "fink_sample_1166").rglob("*.avro"))
    msgs = [RawMessage("test", 0, i, p.read_bytes(), p.name) for i, p in enumerate(files)]
    tables, dead, _ = decode_batch(msgs, "neighbours-test")
    return msgs, tables.alerts


def objs(rows, xid: bool = False) -> pd.DataFrame:
    cols = ["oid", "survey", "ra", "dec", "firstmjd"] + (["xid"] if xid else [])
    return pd.DataFrame(rows, columns=cols)


def test_summary_upsert_round_trip(fink, summary_store) -> None:
    _, alerts = fink
    latest = latest_neighbours(alert_neighbours(alerts))
    assert summary_store.upsert("neighbour", latest) == len(latest)
    back = summary_store.fetch_df("SELECT * FROM neighbour")
    assert len(back) == len(latest)
    ids = back.set_index(["oid", "catalog", "rank"])["neighbour_id"]
    want = latest.set_index(["oid", "catalog", "rank"])["neighbour_id"]
    assert (ids.reindex(want.index).fillna("-") == want.fillna("-")).all()
    # a replay of an older alert does not regress a slot (mjd is the version)
    first = latest[latest["catalog"] == "ps1"].head(1)
    summary_store.upsert("neighbour", first.assign(mjd=first["mjd"] - 1, neighbour_id="stale"))
    key = tuple(first.iloc[0][["oid", "catalog", "rank"]])
    row = summary_store.fetch_df(
        "SELECT neighbour_id FROM neighbour WHERE oid = %s AND catalog = %s AND rank = %s", key
    )
    assert row["neighbour_id"].iloc[0] == first["neighbour_id"].iloc[0]
    summary_store.upsert("neighbour", first.assign(mjd=first["mjd"] + 1, neighbour_id="newer"))
    row = summary_store.fetch_df(
        "SELECT neighbour_id FROM neighbour WHERE oid = %s AND catalog = %s AND rank = %s", key
    )
    assert row["neighbour_id"].iloc[0] == "newer"


def test_association_rows_round_trip_postgres(summary_store) -> None:
    known = objs([("Z", "ztf", 10.0, 10.0, 1.0, "Z")], xid=True)
    new = objs([("L", "lsst", 10.0, 10.0 + AS, 2.0), ("A", "atlas", 11.0, 10.0, 3.0)])
    rows = associate(new, known).merge(new, on=["oid", "survey"])
    assert summary_store.upsert("object_association", rows) == 2
    back = summary_store.fetch_df("SELECT * FROM object_association ORDER BY oid")
    assert back["xid"].tolist() == ["A", "Z"] and back["ra"].tolist() == [11.0, 10.0]
    # the stored rows are the next batch's `known`: the same objects again keep their xid
    again = associate(new, back)
    assert again.set_index("oid")["xid"].to_dict() == {"L": "Z", "A": "A"}
