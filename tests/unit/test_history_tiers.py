"""Tiered compaction of the history store (storage.history): periodic compactions merge new rows only with a
pixel's newest, smallest files, so their cost stops growing with everything stored so far; reads see the same
rows as after a full compaction, later rows winning across files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from alert_broker.storage import Lake
from alert_broker.storage.history import HistoryStore, _compacted_info, _tier

PIXEL = 7


def _forced(batch: int, n: int, pid0: int, flux: float) -> pd.DataFrame:
    """``n`` forced-photometry points of one object (key oid + pid) with pids from ``pid0``."""
    return pd.DataFrame(
        {
            "oid": "ZTF0",
            "pid": np.arange(pid0, pid0 + n, dtype=np.int64),
            "survey": "ztf",
            "mjd": 59000.0 + batch + np.arange(n) * 1e-3,
            "fid": np.int16(1),
            "forcediffimflux": np.full(n, flux),
        }
    )


def _files(store: HistoryStore) -> list[tuple[int, int | None]]:
    folder = Path(store.folder("forced_photometry", PIXEL))
    return sorted(_compacted_info(str(p)) for p in folder.glob("*.parquet"))


def test_tier_merges_like_a_binary_counter():
    name = "compacted-{:06d}-{}-0123456789abcdef.parquet".format
    files = [name(1, 8), name(2, 4), name(3, 2), name(4, 1)]
    assert _tier(files, 1) == files  # 1+1 -> 2, +2 -> 4, +4 -> 8, +8: every file carries
    assert _tier([name(1, 8), name(2, 4), name(3, 1)], 1) == [name(3, 1)]  # 2 rows merged: 4 is bigger
    assert _tier([name(1, 8)], 1) == []
    assert _tier(["compacted-0123456789abcdef.parquet", name(2, 1)], 5) == [name(2, 1)]  # unknown size: kept
    assert _compacted_info("compacted-0123456789abcdef.parquet") == (0, None)


def test_periodic_compactions_keep_log_files_and_read_like_a_full_one(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    store = HistoryStore(lake, order=2)
    home = pd.Series([np.int64(PIXEL)], index=["ZTF0"])
    per, rounds = 100, 8
    rewritten = 0
    for k in range(1, rounds + 1):
        # each batch brings `per` new points and revises the previous batch's first point (a later value wins)
        rows = _forced(k, per, k * per, flux=float(k))
        revised = _forced(k, 1, (k - 1) * per, flux=-float(k)) if k > 1 else rows.iloc[0:0]
        store.write("forced_photometry", pd.concat([revised, rows]), home, f"b{k}-r000")
        stats = store.compact_share(
            deltas={"forced_photometry": store.delta_files("forced_photometry")}, tiered=True
        )
        store.drop_deltas({"forced_photometry": store.delta_files("forced_photometry")})
        rewritten += stats["rows_rewritten"]
        sizes = [rows for _, rows in _files(store)]
        # a binary counter of batches: as many files as ones in k's binary form, sizes halving
        assert len(sizes) == bin(k).count("1"), (k, sizes)
        got = HistoryStore(lake, order=2).read("forced_photometry", [PIXEL])
        assert len(got) == k * per
        flux = got.set_index("pid")["forcediffimflux"]
        for j in range(1, k + 1):
            first = j * per
            assert flux[first] == (-(j + 1.0) if j < k else float(j))  # the revision (newer file) wins
    # every row rewritten ~log2(rounds) times at most, against rounds/2 on average for full rewrites
    full = sum(per * (k - 1) for k in range(1, rounds + 1))
    assert rewritten <= 0.6 * full, (rewritten, full)

    before = HistoryStore(lake, order=2).read("forced_photometry", [PIXEL])
    # one more tiered round leaves k=9 (binary 1001): two files; a full compaction with no new rows joins them
    store.write("forced_photometry", _forced(9, per, 9 * per, flux=9.0), home, "b9-r000")
    deltas = {"forced_photometry": store.delta_files("forced_photometry")}
    store.compact_share(deltas=deltas, tiered=True)
    store.drop_deltas(deltas)
    assert len(_files(store)) == 2
    with_nine = HistoryStore(lake, order=2).read("forced_photometry", [PIXEL])
    assert len(with_nine) == len(before) + per
    stats = HistoryStore(lake, order=2).compact()
    assert stats["pixels"] == 1 and stats["deltas"] == 0
    assert len(_files(store)) == 1
    after = HistoryStore(lake, order=2).read("forced_photometry", [PIXEL])
    pd.testing.assert_frame_equal(with_nine, after)


def test_a_full_compaction_folds_every_tier_and_an_old_style_file(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    store = HistoryStore(lake, order=2)
    home = pd.Series([np.int64(PIXEL)], index=["ZTF0"])
    store.write("forced_photometry", _forced(0, 50, 0, 0.0), home, "b0-r000")
    store.compact()
    # a store written before generations: its one file renamed to the old name
    (path,) = Path(store.folder("forced_photometry", PIXEL)).glob("*.parquet")
    path.rename(path.with_name("compacted-0123456789abcdef.parquet"))
    for k in (1, 2, 3):
        store.write("forced_photometry", _forced(k, 10, 0, float(k)), home, f"b{k}-r000")  # revises pids 0-9
        deltas = {"forced_photometry": store.delta_files("forced_photometry")}
        store.compact_share(deltas=deltas, tiered=True)
        store.drop_deltas(deltas)
    files = _files(store)
    assert files[0] == (0, None) and len(files) >= 2  # the old file is never merged by a tiered compaction
    read = HistoryStore(lake, order=2).read("forced_photometry", [PIXEL]).set_index("pid")
    assert (read.loc[range(10), "forcediffimflux"] == 3.0).all() and (
        read.loc[range(10, 50), "forcediffimflux"] == 0.0
    ).all()

    store.write("forced_photometry", _forced(4, 1, 49, 4.0), home, "b4-r000")
    store.compact()
    ((gen, rows),) = _files(store)
    assert rows == 50 and gen > max(g for g, _ in files)
    (path,) = Path(store.folder("forced_photometry", PIXEL)).glob("*.parquet")
    stored = pq.read_table(path).to_pandas().set_index("pid")["forcediffimflux"]
    assert (
        (stored.loc[range(10)] == 3.0).all()
        and stored.loc[49] == 4.0
        and (stored.loc[range(10, 49)] == 0.0).all()
    )
