"""The raw archive's retention (storage/retention.py) on real PostgreSQL and a real lake (a folder, and S3 over
HTTP): a night a batch in flight wrote to is left, a process killed between its record and its deletes is
finished by the next run, and the cutoff of ``--keep-days``."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from alert_broker.storage import manifest, retention
from alert_broker.storage.lake import Lake

pytestmark = pytest.mark.integration

SOURCE = "archive:retention"


def write_batch(
    store, lake: Lake, batch_id: str, first: int, nights: list[int], commit: bool = True
) -> list[str]:
    """A batch writing raw packets into ``nights`` and detections beside them, recorded in the manifest."""
    paths = []
    for k, night in enumerate(nights):
        candid = np.arange(first + 10 * k, first + 10 * k + 10, dtype=np.int64)
        raw = pd.DataFrame({"candid": candid, "oid": "ZTF21x", "night": night, "payload": [b"x" * 100] * 10})
        paths += lake.write_table("raw", raw, f"{batch_id}-c{k:03d}")
        det = pd.DataFrame({"oid": "ZTF21x", "candid": candid, "alert_night": night, "batch_id": batch_id})
        paths += lake.write_table("detections", det, f"{batch_id}-c{k:03d}")
    manifest.record_batch(store, batch_id, {SOURCE: {0: (first, first + 99)}}, paths)
    if commit:
        manifest.mark_committed(store, batch_id)
    return paths


def listed(store, lake: Lake) -> set[str]:
    return {lake._fs_path(f) for files in manifest.batches(store)["files"] for f in files}


def present(lake: Lake, *tables: str) -> set[str]:
    return {lake._fs_path(f) for t in tables for f in lake.list_files(t)}


@pytest.mark.parametrize("where", ["local", "s3"])
def test_expiry_keeps_the_manifest_exact_and_leaves_batches_in_flight(
    where, tmp_path, summary_store, request
):
    if where == "s3":
        url, options = request.getfixturevalue("s3_lake_url")
        lake = Lake(url, options)
    else:
        lake = Lake(str(tmp_path / "lake"))
    write_batch(summary_store, lake, "a", 0, [20240101, 20240102])
    write_batch(summary_store, lake, "b", 100, [20240102, 20240103])
    # a late alert of an old night, in flight
    write_batch(summary_store, lake, "c", 200, [20240101], commit=False)
    report = retention.expire(summary_store, lake, 20240103)
    assert report.nights == [20240102] and report.files == 2
    assert report.skipped == {20240101: "a batch not yet committed wrote here"}
    assert {p.rsplit("/", 2)[1] for p in lake.list_files("raw")} == {"night=20240101", "night=20240103"}
    assert len(lake.list_files("detections")) == 5  # nothing but the raw archive expires
    assert present(lake, "raw", "detections") == listed(summary_store, lake)
    manifest.mark_committed(summary_store, "c")
    report = retention.expire(summary_store, lake, 20240103)
    assert report.nights == [20240101] and report.files == 2 and not report.skipped
    assert present(lake, "raw", "detections") == listed(summary_store, lake)
    rows = summary_store.fetch_df("SELECT night, files FROM lake_expired ORDER BY night")
    assert rows.to_dict("list") == {"night": [20240101, 20240102], "files": [2, 2]}


def test_a_process_killed_before_its_deletes_is_finished_by_the_next_run(
    tmp_path, summary_store, monkeypatch
):
    lake = Lake(str(tmp_path / "lake"))
    write_batch(summary_store, lake, "a", 0, [20240101, 20240102])

    def killed(*_a, **_k):
        raise SystemExit("killed")

    monkeypatch.setattr(Lake, "delete_files", killed)
    with pytest.raises(SystemExit):
        retention.expire(summary_store, lake, 20240102)
    monkeypatch.undo()
    # recorded and out of the manifest, the file still there: the next run deletes it
    assert summary_store.count("lake_expired") == 1
    assert len(lake.list_files("raw")) == 2 and len(listed(summary_store, lake) & present(lake, "raw")) == 1
    report = retention.expire(summary_store, lake, 20240102)
    assert report.nights == [20240101] and len(lake.list_files("raw")) == 1
    assert present(lake, "raw") <= listed(summary_store, lake)


def test_dry_run_and_the_keep_days_cutoff(tmp_path, summary_store):
    lake = Lake(str(tmp_path / "lake"))
    write_batch(summary_store, lake, "a", 0, [20240101, 20240102])
    report = retention.expire(summary_store, lake, 20240103, dry_run=True)
    assert (
        report.nights == [20240101, 20240102]
        and report.bytes > 0
        and "would expire 2 nights" in report.render()
    )
    assert len(lake.list_files("raw")) == 2 and summary_store.count("lake_expired") == 0
    today = dt.date(2024, 3, 1)
    assert retention.cutoff(1, today) == 20240301  # today's night kept
    assert retention.cutoff(30, today) == 20240201  # 29 days back: a leap year's February
    assert retention.cutoff(31, today) == 20240131
    with pytest.raises(ValueError, match="at least one day"):
        retention.cutoff(0, today)
    with pytest.raises(ValueError, match="only raw"):
        retention.expire(summary_store, lake, 20240103, table="detections")
