"""Lake compaction on real PostgreSQL and a real lake (a folder, and S3 over HTTP): one file per folder, the same
rows, and a replay after it still retires exactly the replayed batch's rows."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from alert_broker.storage import compaction, manifest
from alert_broker.storage.lake import Lake
from alert_broker.storage.postgres import SummaryStore

pytestmark = pytest.mark.integration

SOURCE = "kafka:ztf_alerts"
BASE = 2**60
SPLIT = compaction.SPLIT_MARK  # split files: {batch}-s{digest}.parquet


def rows_of(batch_id: str, first: int, last: int, night_of=None) -> pd.DataFrame:
    """One detection per offset, over two nights, each row naming its batch (as every pipeline row does)."""
    off = np.arange(first, last + 1)
    nights = night_of(off) if night_of else np.where(off % 2 == 0, 20210301, 20210302)
    return pd.DataFrame(
        {
            "oid": [f"ZTF21obj{o % 40:03d}" for o in off],
            "candid": (BASE + off).astype(np.int64),
            "alert_night": nights.astype("int32"),
            "mjd": 59274.0 + off * 0.01,
            "magpsf": 18.0 + (off % 7) * 0.1,
            "batch_id": batch_id,
        }
    )


def run_batch(store, lake, batch_id, first, last, *, commit=True, chunks=2, mag_offset=0.0):
    """The driver's steps for one batch (supersede, write in ``chunks`` region files, record, commit)."""
    ranges = {0: (first, last)}
    manifest.supersede(store, lake, SOURCE, ranges, batch_id)
    rows = rows_of(batch_id, first, last)
    rows["magpsf"] += mag_offset
    paths = []
    for i, part in enumerate(np.array_split(np.arange(len(rows)), chunks)):
        paths += lake.write_table("detections", rows.iloc[part], f"{batch_id}-r{i:03d}")
    manifest.record_batch(store, batch_id, {SOURCE: ranges}, paths)
    if commit:
        manifest.mark_committed(store, batch_id)
    return paths


def lake_rows(lake: Lake) -> pd.DataFrame:
    df = lake.read_table("detections")  # no dedupe: every stored row
    return df.sort_values(["candid", "batch_id"]).reset_index(drop=True)


def folder_files(lake: Lake, night: int) -> list[str]:
    return [os.path.basename(p) for p in lake.list_files("detections", nights=[night])]


def test_compaction_folds_each_folder_and_a_replay_retires_exactly_its_rows(
    tmp_path, summary_store: SummaryStore
):
    lake = Lake(str(tmp_path / "lake"))
    for k in range(4):  # 4 batches x 2 region files x 2 nights = 16 files
        run_batch(summary_store, lake, f"ztf-p0o{100 * k}-{100 * k + 99}", 100 * k, 100 * k + 99)
    before = lake_rows(lake)
    assert len(before) == 400 and sum(len(folder_files(lake, n)) for n in (20210301, 20210302)) == 16

    report = compaction.compact(summary_store, lake)
    assert (report.folders, report.files_merged, report.files_written, report.rows) == (2, 16, 2, 400)
    for night in (20210301, 20210302):
        (only,) = folder_files(lake, night)
        assert only.startswith("compacted-")
    after = lake_rows(lake)
    pd.testing.assert_frame_equal(before, after, check_dtype=False)
    # every batch now lists the two compacted files; the journal is empty again
    m = manifest.batches(summary_store, SOURCE)
    assert all(
        sorted(os.path.basename(f) for f in files)
        == sorted(folder_files(lake, 20210301) + folder_files(lake, 20210302))
        for files in m["files"]
    )
    assert summary_store.count("lake_compaction") == 0
    # compacting again finds nothing to do (one file per folder)
    assert compaction.compact(summary_store, lake).folders == 0

    # a replay of offsets 150-249 regrouped: retires the batches 100-199 and 200-299 from inside the compacted
    # files, and rewrites their offsets with new values
    run_batch(summary_store, lake, "ztf-p0o150-249", 150, 249, mag_offset=1.0)
    replayed = lake_rows(lake)
    got = replayed.groupby("candid").size()
    # offsets 100-149 and 250-299 belonged to retired batches: gone until the replay reaches them
    expected = set(range(0, 100)) | set(range(150, 250)) | set(range(300, 400))
    assert set(got.index - BASE) == expected and (got == 1).all()
    new = replayed[replayed["batch_id"] == "ztf-p0o150-249"]
    assert len(new) == 100 and np.allclose(new["magpsf"], rows_of("x", 150, 249)["magpsf"] + 1.0)
    assert set(replayed["batch_id"]) == {"ztf-p0o0-99", "ztf-p0o150-249", "ztf-p0o300-399"}

    # the replay's own files and the compacted ones fold again, the rows unchanged
    again = lake_rows(lake)
    report = compaction.compact(summary_store, lake)
    assert report.files_written == 2 and report.rows == 300
    pd.testing.assert_frame_equal(again, lake_rows(lake), check_dtype=False)


def test_folders_of_batches_in_flight_and_unknown_files_are_left_alone(tmp_path, summary_store):
    lake = Lake(str(tmp_path / "lake"))
    run_batch(summary_store, lake, "b-0-99", 0, 99)
    run_batch(summary_store, lake, "b-100-199", 100, 199, commit=False)  # written, not committed
    report = compaction.compact(summary_store, lake)
    assert report.folders == 0 and report.skipped == {"a batch not yet committed wrote here": 2}
    manifest.mark_committed(summary_store, "b-100-199")
    # a file nobody recorded (a batch that died before recording, an orphan) keeps its folder as it is
    stray = rows_of("b-900-999", 900, 901, night_of=lambda o: np.full(len(o), 20210301))
    lake.write_table("detections", stray, "b-900-999-r000")
    report = compaction.compact(summary_store, lake)
    assert report.folders == 1 and report.skipped == {"files the manifest does not list as committed": 1}
    assert len(folder_files(lake, 20210301)) == 5 and len(folder_files(lake, 20210302)) == 1
    # rows that name another batch than the file's are not folded: a replay could not retire them
    lake.delete_files(lake.list_files("detections", nights=[20210301]))
    manifest.forget_batches(summary_store, ["b-0-99", "b-100-199"])
    odd = run_batch(summary_store, lake, "b-0-99", 0, 99)
    other = rows_of("someone-else", 0, 1, night_of=lambda o: np.full(len(o), 20210301))
    p = lake.write_table("detections", other, "b-0-99-r005")
    manifest.record_batch(summary_store, "b-0-99", {SOURCE: {0: (0, 99)}}, odd + p)
    manifest.mark_committed(summary_store, "b-0-99")
    report = compaction.compact(summary_store, lake, nights=[20210301])
    assert report.skipped == {"rows whose batch_id is not the batch that wrote the file": 1}


def test_a_compaction_that_died_after_its_manifest_update_is_finished(tmp_path, summary_store, monkeypatch):
    lake = Lake(str(tmp_path / "lake"))
    for k in range(3):
        run_batch(summary_store, lake, f"c-{k}", 100 * k, 100 * k + 99)
    before = lake_rows(lake)

    real, calls = compaction.finish_pending, []

    def die(*a, **k):
        calls.append(1)
        if len(calls) > 1:  # the first call is the one before any work
            raise SystemExit("killed")
        return real(*a, **k)

    monkeypatch.setattr(compaction, "finish_pending", die)  # the process dies right after step 3
    with pytest.raises(SystemExit):
        compaction.compact(summary_store, lake, nights=[20210301])
    monkeypatch.undo()
    assert summary_store.count("lake_compaction") == 1
    staged = [
        f for f in os.listdir(tmp_path / "lake/detections/alert_night=20210301") if f.endswith(".staged")
    ]
    assert len(staged) == 1
    pd.testing.assert_frame_equal(before, lake_rows(lake), check_dtype=False)  # readers skip the staged file

    # the next batch's supersede finishes it before it retires anything from the compacted file (a run's start
    # would already have: compaction.recover, tested below)
    run_batch(summary_store, lake, "c-1", 100, 199, mag_offset=2.0)
    assert summary_store.count("lake_compaction") == 0
    files = folder_files(lake, 20210301)
    # renamed into place, then split back into the other batches' own files as the replayed batch retired
    assert len(files) == 4 and files[1:3] == ["c-1-r000.parquet", "c-1-r001.parquet"]
    assert re.fullmatch(r"c-0-s[0-9a-f]{16}\.parquet", files[0]) and files[3] == "c-2" + files[0][3:]
    got = lake_rows(lake)
    assert len(got) == 300 and got["candid"].is_unique
    assert np.allclose(got[got.batch_id == "c-1"]["magpsf"], rows_of("x", 100, 199)["magpsf"] + 2.0)


def test_a_staged_file_without_a_journal_row_is_removed(tmp_path, summary_store, monkeypatch):
    lake = Lake(str(tmp_path / "lake"))
    for k in range(2):
        run_batch(summary_store, lake, f"d-{k}", 100 * k, 100 * k + 99)

    def die(*_a, **_k):
        raise SystemExit("killed")

    monkeypatch.setattr(compaction, "_record", die)  # dies between writing the staged file and step 3
    with pytest.raises(SystemExit):
        compaction.compact(summary_store, lake, nights=[20210302])
    monkeypatch.undo()
    folder = tmp_path / "lake/detections/alert_night=20210302"
    assert any(f.endswith(".staged") for f in os.listdir(folder))
    report = compaction.compact(summary_store, lake)
    assert report.folders == 2
    assert sorted(os.listdir(folder)) == folder_files(lake, 20210302) and len(os.listdir(folder)) == 1


def test_compaction_and_replay_on_s3(s3_lake_url, summary_store):
    url, options = s3_lake_url
    lake = Lake(url, options)
    for k in range(3):
        run_batch(summary_store, lake, f"s-{k}", 100 * k, 100 * k + 99)
    before = lake_rows(lake)
    report = compaction.compact(summary_store, lake)
    assert (report.folders, report.files_merged, report.files_written) == (2, 12, 2)
    pd.testing.assert_frame_equal(before, lake_rows(lake), check_dtype=False)
    assert all(f.startswith("compacted-") for n in (20210301, 20210302) for f in folder_files(lake, n))
    assert not [p for p in lake.fs.find(lake.root) if p.endswith(".staged")]
    run_batch(summary_store, lake, "s-1", 100, 199, mag_offset=3.0)
    got = lake_rows(lake)
    assert len(got) == 300 and got["candid"].is_unique
    assert np.allclose(got[got.batch_id == "s-1"]["magpsf"], rows_of("x", 100, 199)["magpsf"] + 3.0)


def test_a_big_folder_becomes_several_files_in_write_order(tmp_path, summary_store):
    """``max_bytes`` bounds a compacted file; a file that big already stays and ends a run, so rows written
    before it are never put after it (readers let the latest write win: here, a key rewritten by each batch)."""
    lake = Lake(str(tmp_path / "lake"))
    for k in range(6):
        batch = f"e-{6 - k}"  # names sort against the write order: only the write times can order them
        rows = rows_of(batch, 100 * k, 100 * k + 99, night_of=lambda o: np.full(len(o), 20210301))
        rows["oid"] = "ZTF21same"  # every batch rewrites one object: the latest write must win
        rows["magpsf"] = float(k)
        ranges = {0: (100 * k, 100 * k + 99)}
        paths = lake.write_table("objects", rows.iloc[[0]].rename(columns={"alert_night": "night"}), batch)
        manifest.record_batch(summary_store, batch, {SOURCE: ranges}, paths)
        manifest.mark_committed(summary_store, batch)
    sizes = sorted(os.path.getsize(p) for p in lake.list_files("objects"))
    # at most two source files a compacted file: 6 files -> 3
    report = compaction.compact(summary_store, lake, max_bytes=2 * sizes[-1] + 1)
    assert (report.folders, report.files_merged, report.files_written) == (1, 6, 3)
    assert lake.read_table("objects", dedupe=True)["magpsf"].tolist() == [5.0]
    assert sorted(lake.read_table("objects")["magpsf"].tolist()) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    # any two of the three files together are over the cap: nothing more to do at it; a bigger cap, one file
    assert compaction.compact(summary_store, lake, max_bytes=2 * sizes[-1] + 1).files_written == 0
    report = compaction.compact(summary_store, lake)
    assert (report.files_merged, report.files_written) == (3, 1)
    assert lake.read_table("objects", dedupe=True)["magpsf"].tolist() == [5.0]


def test_one_compaction_at_a_time_and_each_run_is_recorded(tmp_path, summary_store):
    lake = Lake(str(tmp_path / "lake"))
    for k in range(2):
        run_batch(summary_store, lake, f"f-{k}", 100 * k, 100 * k + 99)
    other = SummaryStore(summary_store.dsn)  # another process's compaction, holding the lock
    with other.exclusive("lake-compaction") as held:
        assert held
        busy = compaction.recorded_compact(summary_store, lake, {"who": "second"})
    other.close()
    assert busy.skipped == {"another compaction is running": 1} and busy.files_written == 0
    assert len(lake.list_files("detections")) == 8  # 2 batches x 2 region files x 2 nights
    done = compaction.recorded_compact(summary_store, lake, {"who": "third"})
    assert done.files_written == 2
    runs = summary_store.fetch_df(
        "SELECT status, counts, config FROM pipeline_run WHERE source = %s ORDER BY started_at",
        (compaction.RUN_SOURCE,),
    )
    assert list(runs["status"]) == ["busy", "ok"]
    assert runs["counts"][1] == {"folders": 2, "files_merged": 8, "files_written": 2, "rows": 200}
    assert runs["config"][1] == {"who": "third"}


def test_a_run_start_finishes_what_a_dead_compaction_left(tmp_path, summary_store, monkeypatch):
    """``compaction.recover`` (the driver calls it as a run starts): the journal's compactions finished, the
    staged file in place, its sources gone, so the manifest and the folder agree again."""
    lake = Lake(str(tmp_path / "lake"))
    for k in range(2):
        run_batch(summary_store, lake, f"g-{k}", 100 * k, 100 * k + 99)
    before = lake_rows(lake)
    assert compaction.recover(summary_store, lake) == 0  # nothing to finish
    real, calls = compaction.finish_pending, []

    def die(*a, **k):
        calls.append(1)
        if len(calls) > 1:
            raise SystemExit("killed")
        return real(*a, **k)

    monkeypatch.setattr(compaction, "finish_pending", die)
    with pytest.raises(SystemExit):
        compaction.compact(summary_store, lake)
    monkeypatch.undo()
    assert summary_store.count("lake_compaction") == 1
    assert compaction.recover(summary_store, lake) == 1
    assert summary_store.count("lake_compaction") == 0
    listed = {lake._fs_path(f) for files in manifest.batches(summary_store)["files"] for f in files}
    present = {p for n in (20210301, 20210302) for p in lake.list_files("detections", nights=[n])}
    assert present <= listed  # no file the manifest does not know
    pd.testing.assert_frame_equal(before, lake_rows(lake), check_dtype=False)


def _consistent(store, lake) -> None:
    """The manifest and the lake agree: every file present is listed, every listed file is present, no journal
    row and no staged file is left."""
    listed = {lake._fs_path(f) for files in manifest.batches(store)["files"] for f in files}
    present = set(lake.list_files("detections"))
    assert present == listed
    assert store.count("lake_compaction") == 0
    assert not [p for p in lake.fs.find(lake.root) if p.endswith(".staged")]


def test_a_rerun_of_a_compacted_night_splits_each_file_once(tmp_path, summary_store, monkeypatch):
    """Re-running every batch of a compacted night: the first retirement splits each compacted file into its
    other batches' own files (one copy of their rows), every later retirement deletes a file and writes none."""
    lake = Lake(str(tmp_path / "lake"))
    batches = [(f"h-{k}", 100 * k, 100 * k + 99) for k in range(6)]
    for b, first, last in batches:
        run_batch(summary_store, lake, b, first, last)
    compaction.compact(summary_store, lake)
    assert all(f.startswith("compacted-") for n in (20210301, 20210302) for f in folder_files(lake, n))

    written: list[tuple[str, int]] = []  # (file name, rows) of every whole-file write
    real = Lake.write_whole

    def spy(self, table, fs_path, **options):
        written.append((os.path.basename(fs_path), table.num_rows))
        return real(self, table, fs_path, **options)

    monkeypatch.setattr(Lake, "write_whole", spy)
    per_retirement = []
    for b, first, last in batches:
        before = len(written)
        run_batch(summary_store, lake, b, first, last, mag_offset=1.0)
        per_retirement.append([w for w in written[before:] if SPLIT in w[0]])
        _consistent(summary_store, lake)
    # the first re-run splits both nights' files: the other five batches' rows, once; later ones write no split
    assert sum(n for _, n in per_retirement[0]) == 500 and len(per_retirement[0]) == 10
    assert all(not w for w in per_retirement[1:])
    got = lake_rows(lake)
    assert len(got) == 600 and got["candid"].is_unique
    assert np.allclose(got["magpsf"], rows_of("x", 0, 599)["magpsf"] + 1.0)
    assert not [
        f for n in (20210301, 20210302) for f in folder_files(lake, n) if "compacted-" in f or SPLIT in f
    ]


@pytest.mark.parametrize("legacy", [False, True], ids=["batch-times", "compacted-before-batch-times"])
def test_split_files_keep_each_batch_write_order(tmp_path, summary_store, legacy):
    """Readers let the latest write win: after a split, the split files still order the batches as they were
    written, though their names sort against it (from the compacted file's batch times, or, for a file
    compacted before they were kept, from its row order)."""
    lake = Lake(str(tmp_path / "lake"))
    for k in range(4):
        batch = f"i-{4 - k}"  # names sort against the write order
        rows = rows_of(batch, 100 * k, 100 * k + 99, night_of=lambda o: np.full(len(o), 20210301))
        rows = rows.rename(columns={"alert_night": "night"}).iloc[[0]]
        rows["oid"], rows["magpsf"] = "ZTF21same", float(k)  # every batch rewrites one object
        paths = lake.write_table("objects", rows, batch)
        manifest.record_batch(summary_store, batch, {SOURCE: {0: (100 * k, 100 * k + 99)}}, paths)
        manifest.mark_committed(summary_store, batch)
    compaction.compact(summary_store, lake)
    (path,) = lake.list_files("objects")
    if legacy:  # as files compacted before this change: no per-batch write times in the footer
        table = pq.read_table(path)
        meta = {k: v for k, v in table.schema.metadata.items() if k != compaction.META_BATCH_WRITTEN}
        lake.write_whole(table.replace_schema_metadata(meta), path)
    # a replay of the first batch's offsets writes another object: the others keep their order
    manifest.supersede(summary_store, lake, SOURCE, {0: (0, 99)}, "i-4")
    names = sorted(os.path.basename(p) for p in lake.list_files("objects"))
    assert [n.split("-s")[0] for n in names] == ["i-1", "i-2", "i-3"]
    assert lake.read_table("objects", dedupe=True)["magpsf"].tolist() == [3.0]
    times = [
        int(pq.read_schema(p).metadata[b"broker.written_at_ns"]) for p in sorted(lake.list_files("objects"))
    ]
    assert times[0] > times[1] > times[2]  # i-1 was written last
    # the split files fold again into one, in the same order
    compaction.compact(summary_store, lake)
    assert lake.read_table("objects", dedupe=True)["magpsf"].tolist() == [3.0]


def test_a_split_that_died_is_finished_or_redone(tmp_path, summary_store, monkeypatch):
    """A process killed after the split's manifest update: the next replay finishes it first (no retired row
    comes back). One killed while writing the split files: they stay hidden, and the replay redoes the split."""
    lake = Lake(str(tmp_path / "lake"))
    for k in range(3):
        run_batch(summary_store, lake, f"j-{k}", 100 * k, 100 * k + 99)
    compaction.compact(summary_store, lake)
    before = lake_rows(lake)

    real = compaction.finish_pending

    def die(*_a, **_k):
        raise SystemExit("killed")

    monkeypatch.setattr(compaction, "finish_pending", die)
    with pytest.raises(SystemExit):
        run_batch(summary_store, lake, "j-1", 100, 199, mag_offset=2.0)
    monkeypatch.setattr(compaction, "finish_pending", real)
    assert summary_store.count("lake_compaction") == 2  # j-0's and j-2's files of the first folder split
    pd.testing.assert_frame_equal(before, lake_rows(lake), check_dtype=False)  # staged files are hidden
    run_batch(summary_store, lake, "j-1", 100, 199, mag_offset=2.0)
    _consistent(summary_store, lake)
    got = lake_rows(lake)
    assert len(got) == 300 and got["candid"].is_unique
    assert np.allclose(got[got.batch_id == "j-1"]["magpsf"], rows_of("x", 100, 199)["magpsf"] + 2.0)

    # killed while writing: the second split file never written, no transaction
    real_write, calls = Lake.write_whole, []

    def fail_second(self, table, fs_path, **options):
        if SPLIT in os.path.basename(fs_path):
            calls.append(fs_path)
            if len(calls) == 2:
                raise OSError("disk full")
        return real_write(self, table, fs_path, **options)

    compaction.compact(summary_store, lake)
    monkeypatch.setattr(Lake, "write_whole", fail_second)
    with pytest.raises(OSError):
        run_batch(summary_store, lake, "j-2", 200, 299, mag_offset=3.0)
    monkeypatch.setattr(Lake, "write_whole", real_write)
    assert summary_store.count("lake_compaction") == 0
    assert [p for p in lake.fs.find(lake.root) if p.endswith(".staged")]  # left hidden
    run_batch(summary_store, lake, "j-2", 200, 299, mag_offset=3.0)
    _consistent(summary_store, lake)
    got = lake_rows(lake)
    assert len(got) == 300 and got["candid"].is_unique
    assert np.allclose(got[got.batch_id == "j-2"]["magpsf"], rows_of("x", 200, 299)["magpsf"] + 3.0)
