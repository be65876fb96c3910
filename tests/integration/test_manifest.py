"""The batch manifest on real PostgreSQL and a real lake folder: crashes and replays never duplicate rows."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from alert_broker.storage import manifest
from alert_broker.storage.lake import Lake
from alert_broker.storage.postgres import SummaryStore

pytestmark = pytest.mark.integration

SOURCE = "kafka:ztf_alerts"
BASE = 2**60  # candids beyond 2**53


def alert_rows(first: int, last: int) -> pd.DataFrame:
    """One detection per message offset in [first, last], spread over two nights by offset."""
    off = np.arange(first, last + 1)
    return pd.DataFrame(
        {
            "oid": [f"ZTF21obj{o % 40:03d}" for o in off],
            "candid": (BASE + off).astype(np.int64),
            "night": np.where(off % 2 == 0, 20210301, 20210302).astype("int32"),
            "mjd": 59274.0 + off * 0.01,
            "magpsf": 18.0 + (off % 7) * 0.1,
        }
    )


def objects_of(rows: pd.DataFrame) -> pd.DataFrame:
    g = rows.groupby("oid", as_index=False).agg(ndet=("candid", "size"), lastmjd=("mjd", "max"))
    return g.assign(survey="ztf")


def run_batch(store, lake, batch_id, first, last, *, commit, partition=0, chunks=1):
    """What the driver does for one batch, written in as many chunk files as ``chunks``."""
    ranges = {partition: (first, last)}
    for old, files in manifest.superseded_files(store, SOURCE, ranges, batch_id):
        lake.delete_files(files)
        manifest.forget_batches(store, [old])
    rows = alert_rows(first, last)
    paths = []
    for i, part in enumerate(np.array_split(np.arange(len(rows)), chunks)):
        paths += lake.write_table("detections", rows.iloc[part], f"{batch_id}-c{i:03d}")
    store.upsert("object", objects_of(rows))
    manifest.record_batch(store, batch_id, {SOURCE: ranges}, paths)
    if commit:
        manifest.mark_committed(store, batch_id)
    return paths


def lake_candids(lake: Lake) -> list[int]:
    return sorted(lake.read_table("detections", columns=["candid"])["candid"].tolist())  # no dedupe!


def test_crash_before_commit_then_replay_with_other_boundaries(tmp_path, summary_store: SummaryStore):
    lake = Lake(str(tmp_path / "lake"))
    # batch A (offsets 0-99) is written, then the process dies before the offset commit
    a_files = run_batch(summary_store, lake, "ztf-p0o0-99", 0, 99, commit=False)
    assert all(os.path.exists(p) for p in a_files)
    objects_after_a = summary_store.count("object")

    # the replay starts at the committed offset (0) and this time cuts 0-149
    stale = manifest.superseded_files(summary_store, SOURCE, {0: (0, 149)}, "ztf-p0o0-149")
    assert stale == [("ztf-p0o0-99", sorted(a_files))]
    run_batch(summary_store, lake, "ztf-p0o0-149", 0, 149, commit=True)

    assert not any(os.path.exists(p) for p in a_files)
    assert lake_candids(lake) == list(range(BASE, BASE + 150))  # every row exactly once
    m = manifest.batches(summary_store, SOURCE)
    assert m[["batch_id", "state", "first_offset", "last_offset"]].values.tolist() == [
        ["ztf-p0o0-149", "committed", 0, 149]
    ]
    # PostgreSQL needed no help: same objects, upserted again
    assert summary_store.count("object") == objects_after_a == 40

    # the next batch continues after the commit: nothing is superseded
    assert manifest.superseded_files(summary_store, SOURCE, {0: (150, 199)}, "ztf-p0o150-199") == []
    run_batch(summary_store, lake, "ztf-p0o150-199", 150, 199, commit=True)
    # another partition's offsets are independent even where the numbers overlap
    assert manifest.superseded_files(summary_store, SOURCE, {1: (0, 49)}, "ztf-p1o0-49") == []
    # ... and so is another source
    assert manifest.superseded_files(summary_store, "kafka:other", {0: (0, 500)}, "x") == []
    assert lake_candids(lake) == list(range(BASE, BASE + 200))


def test_replay_in_smaller_batches_removes_every_uncommitted_batch_it_reaches(tmp_path, summary_store):
    lake = Lake(str(tmp_path))
    run_batch(summary_store, lake, "p0o0-99", 0, 99, commit=True)
    run_batch(summary_store, lake, "p0o100-199", 100, 199, commit=False)
    run_batch(summary_store, lake, "p0o200-299", 200, 299, commit=False)  # crash after this one
    # replay from 100 in batches of 50: each replayed batch supersedes the uncommitted ones it overlaps
    stale = manifest.superseded_files(summary_store, SOURCE, {0: (100, 149)}, "p0o100-149")
    assert [b for b, _ in stale] == ["p0o100-199"]
    for lo in range(100, 300, 50):
        if lo == 200:
            stale = manifest.superseded_files(summary_store, SOURCE, {0: (200, 249)}, "p0o200-249")
            assert [b for b, _ in stale] == ["p0o200-299"]
        run_batch(summary_store, lake, f"p0o{lo}-{lo + 49}", lo, lo + 49, commit=True)
    assert lake_candids(lake) == list(range(BASE, BASE + 300))
    states = manifest.batches(summary_store)
    assert set(states["state"]) == {"committed"} and len(states) == 5


def test_a_rerun_stopped_part_way_keeps_the_later_batches_of_the_earlier_run(tmp_path, summary_store):
    """An archive night re-run from its start and stopped after its first batch (SIGTERM, a crash): the batches
    it has not reached yet keep their files, so the lake still holds every committed alert once."""
    lake = Lake(str(tmp_path))
    for lo in range(0, 300, 100):
        run_batch(summary_store, lake, f"night-p0o{lo}-{lo + 99}", lo, lo + 99, commit=True)
    run_batch(summary_store, lake, "night-p0o0-99", 0, 99, commit=True)  # the re-run, stopped here
    assert lake_candids(lake) == list(range(BASE, BASE + 300))
    # the same re-run with another batch size: its first batch retires only what it overlaps
    stale = manifest.superseded_files(summary_store, SOURCE, {0: (0, 149)}, "night-p0o0-149")
    assert sorted(b for b, _ in stale) == ["night-p0o0-99", "night-p0o100-199"]
    run_batch(summary_store, lake, "night-p0o0-149", 0, 149, commit=True)
    assert lake_candids(lake) == [*range(BASE, BASE + 150), *range(BASE + 200, BASE + 300)]
    run_batch(summary_store, lake, "night-p0o150-299", 150, 299, commit=True)
    assert lake_candids(lake) == list(range(BASE, BASE + 300))


def test_same_batch_rerun_with_different_chunking_leaves_no_duplicates(tmp_path, summary_store):
    lake = Lake(str(tmp_path))
    first = run_batch(summary_store, lake, "night-p0o0-99", 0, 99, commit=True, chunks=4)
    # a re-run of the same archive on a smaller cluster: same batch id, fewer chunk files
    assert manifest.superseded_files(summary_store, SOURCE, {0: (0, 99)}, "night-p0o0-99") == [
        ("night-p0o0-99", sorted(first))
    ]
    assert (
        manifest.superseded_files(summary_store, SOURCE, {0: (0, 99)}, "night-p0o0-99", include_same=False)
        == []
    )
    second = run_batch(summary_store, lake, "night-p0o0-99", 0, 99, commit=True, chunks=2)
    assert len(second) < len(first)
    assert lake_candids(lake) == list(range(BASE, BASE + 100))
    files = manifest.batches(summary_store)["files"].iloc[0]
    assert sorted(files) == sorted(second)


def test_manifest_api_edges(summary_store):
    manifest.record_batch(summary_store, "b1", {0: (5, 9), 3: (1, 2)}, ["f1", "f2", "f1"], source="s")
    m = manifest.batches(summary_store, "s")
    assert m["partition"].tolist() == [0, 3] and m["files"].iloc[0] == ["f1", "f2"]
    assert m["state"].tolist() == ["written", "written"]
    # recording again replaces the entry (and its ranges)
    manifest.record_batch(summary_store, "b1", {"s": {0: (5, 12)}}, ["f3"])
    m = manifest.batches(summary_store, "s")
    assert m[["partition", "last_offset"]].values.tolist() == [[0, 12]] and m["files"].iloc[0] == ["f3"]
    assert manifest.superseded_files(summary_store, "s", {0: (13, 20)}) == []
    assert manifest.superseded_files(summary_store, "s", {0: (12, 20)}) == [("b1", ["f3"])]
    with pytest.raises(KeyError):
        manifest.mark_committed(summary_store, "nope")
    with pytest.raises(ValueError, match="first offset"):
        manifest.record_batch(summary_store, "b2", {0: (9, 5)}, [], source="s")
    with pytest.raises(ValueError, match="source"):
        manifest.record_batch(summary_store, "b2", {0: (1, 5)}, [])
    assert manifest.forget_batches(summary_store, ["b1", "never"]) == 1
    assert manifest.batches(summary_store).empty
    assert summary_store.count("batch_range") == 0


def test_batch_that_died_before_listing_its_files_is_superseded_by_name(tmp_path, summary_store):
    """A crash between writing files and recording them leaves a 'started' entry: the replay removes the
    files by batch id, including chunk/region parts nobody listed."""
    import pandas as pd

    from alert_broker.storage import Lake, manifest

    lake = Lake(str(tmp_path))
    df = pd.DataFrame({"oid": ["a", "b"], "candid": [1, 2], "night": [20200101, 20200101]})
    manifest.begin_batch(summary_store, "src-p0o0-99", {"src": {0: (0, 99)}})
    lake.write_table("alerts", df, "src-p0o0-99-r000")
    lake.write_table("raw", df.assign(payload=b"x"), "src-p0o0-99-c001")
    lake.write_table("alerts", df.assign(candid=[3, 4]), "src-p0o0-9")  # another batch: must stay
    assert len(lake.find_batch_files("src-p0o0-99")) == 2

    deleted = manifest.supersede(summary_store, lake, "src", {0: (0, 149)}, "src-p0o0-149")
    assert len(deleted) == 2 and lake.find_batch_files("src-p0o0-99") == []
    assert sorted(lake.read_table("alerts")["candid"]) == [3, 4]
    assert manifest.batches(summary_store).empty


def test_committed_ranges_merge_touching_batches_and_leave_out_uncommitted_ones(summary_store):
    """What a resumed archive run skips: committed ranges only, per partition, touching ones merged."""
    for batch_id, first, last, committed in [
        ("a", 0, 39, True),
        ("b", 40, 79, True),
        ("c", 80, 119, False),  # written, never committed (a crash): processed again
        ("d", 160, 199, True),
        ("e", 200, 209, True),
    ]:
        manifest.record_batch(summary_store, batch_id, {0: (first, last)}, [], source="archive:n")
        if committed:
            manifest.mark_committed(summary_store, batch_id)
    manifest.record_batch(summary_store, "k", {1: (5, 9)}, [], source="archive:n")
    manifest.mark_committed(summary_store, "k")
    manifest.record_batch(summary_store, "other", {0: (0, 500)}, [], source="archive:m")
    manifest.mark_committed(summary_store, "other")
    assert manifest.committed_ranges(summary_store, "archive:n") == {0: [(0, 79), (160, 209)], 1: [(5, 9)]}
    assert manifest.committed_ranges(summary_store, "archive:none") == {}


def test_committed_digests_are_those_begun_kept_through_the_write_and_committed(summary_store):
    """A batch's keys digest, given when it begins, survives the entry being written again (the file list), and
    is listed once the batch commits; batches without one (Kafka, older manifests) or not committed are not."""
    manifest.begin_batch(
        summary_store, "a", {0: (0, 2)}, source="archive:n", digests={"archive:n": {0: "d-a"}}
    )
    manifest.record_batch(summary_store, "a", {0: (0, 2)}, ["f1"], source="archive:n")
    manifest.begin_batch(
        summary_store, "b", {0: (3, 5)}, source="archive:n", digests={"archive:n": {0: "d-b"}}
    )
    manifest.record_batch(summary_store, "b", {0: (3, 5)}, ["f2"], source="archive:n")  # never committed
    manifest.begin_batch(summary_store, "c", {0: (6, 8)}, source="archive:n")  # no digest given
    manifest.record_batch(summary_store, "c", {0: (6, 8)}, ["f3"], source="archive:n")
    assert manifest.committed_digests(summary_store, "archive:n") == []
    for batch_id in ("a", "c"):
        manifest.mark_committed(summary_store, batch_id)
    assert manifest.committed_digests(summary_store, "archive:n") == [(0, 2, "d-a")]
    assert manifest.committed_digests(summary_store, "archive:other") == []
    listed = manifest.batches(summary_store, "archive:n").set_index("batch_id")["keys_digest"]
    assert listed["a"] == "d-a" and listed["b"] == "d-b" and listed.isna()["c"]


def test_forgetting_a_batch_removes_its_postgres_dead_letters(summary_store):
    """A replay that now decodes a message must not leave its old dead letter behind: the retired batch's
    ``dead_letter`` rows go with it, other batches' stay (``supersede`` retires through ``forget_batches``)."""
    rows = pd.DataFrame(
        {
            "source": "s",
            "partition": [0, 0, 0],
            "offset": [3, 4, 40],
            "key": None,
            "reason": "truncated Avro container",
            "error": "CorruptAvroError",
            "batch_id": ["b0", "b0", "b1"],
        }
    )
    summary_store.upsert("dead_letter", rows)
    for batch, first, last in (("b0", 0, 9), ("b1", 10, 49)):
        manifest.record_batch(summary_store, batch, {"s": {0: (first, last)}}, [])
    assert manifest.forget_batches(summary_store, ["b0"]) == 1
    left = summary_store.fetch_df('SELECT "offset", batch_id FROM dead_letter ORDER BY "offset"')
    assert left.values.tolist() == [[40, "b1"]]
