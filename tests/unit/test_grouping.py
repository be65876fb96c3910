"""features.grouping: orderings equal to pandas' sort_values, statistics equal to pandas' group-by bit for bit.

magstats and object_stats promise the same numbers as the pandas code they replaced, so these tests compare
with pandas itself, exactly (no tolerance), on data built to hit every branch: ties, nulls, single values,
all-NaN groups, and groups long enough for the sequential scans to finish one group at a time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alert_broker.features.grouping import (
    _kahan_sum,
    distinct_counts,
    first_true,
    key_codes,
    lookup,
    mean_probe,
    pandas_mean_by_reduceat,
    segment_stats,
    segments,
    time_order,
    value_codes,
)


def pandas_time_order(df: pd.DataFrame) -> np.ndarray:
    by = ["mjd", "candid"] if "candid" in df.columns else ["mjd"]
    return df.reset_index(drop=True).sort_values(by, kind="stable", na_position="last").index.to_numpy()


def tied_times(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    mjd = rng.integers(0, n // 4, n) / 8.0 + 59000.0
    mjd[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({"mjd": mjd, "candid": rng.integers(0, n // 3, n) + 10**18})


@pytest.mark.parametrize("variant", ["int64", "Int64 with nulls", "float with NaN", "no candid", "no ties"])
def test_time_order_is_the_stable_sort_values_order(variant):
    df = tied_times(3000, seed=1)
    if variant == "Int64 with nulls":
        df["candid"] = df["candid"].astype("Int64").mask(np.arange(len(df)) % 7 == 0)
    elif variant == "float with NaN":
        df["candid"] = (df["candid"] - 10**18).astype(float).mask(np.arange(len(df)) % 5 == 0)
    elif variant == "no candid":
        df = df.drop(columns="candid")
    elif variant == "no ties":
        df["mjd"] = np.random.default_rng(2).permutation(len(df)) * 0.01
    np.testing.assert_array_equal(time_order(df), pandas_time_order(df))


def test_segments_group_by_code_and_keep_the_given_order_inside_groups():
    rng = np.random.default_rng(3)
    for n_codes in (5, 70_000):  # 16-bit radix sort, and the wide-code path
        codes = rng.integers(0, n_codes, 5000)
        within = rng.permutation(5000)
        seg = segments(codes, within)
        position = np.empty(5000, dtype=np.int64)
        position[within] = np.arange(5000)
        np.testing.assert_array_equal(seg.order, np.lexsort((position, codes)))
        np.testing.assert_array_equal(codes[seg.first], np.unique(codes))
        assert seg.sizes.sum() == 5000 and (np.diff(codes[seg.order]) >= 0).all()


def groups_of(sizes: list[int], seed: int, nan_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    x = np.round(rng.normal(18.0, rng.choice([1e-3, 0.3, 3.0], len(labels)), len(labels)), 6)
    x[rng.random(len(x)) < nan_fraction] = np.nan
    return labels, x


SIZES = [1, 2, 1, 3, 40, 1, 7, 300, 2, 9] + [5] * 60 + [12] * 20  # one group long enough to finish alone


@pytest.mark.parametrize("nan_fraction", [0.0, 0.1])
def test_segment_stats_equal_pandas_groupby_bit_for_bit(nan_fraction):
    labels, x = groups_of(SIZES, seed=4, nan_fraction=nan_fraction)
    if nan_fraction:
        x[labels == 2] = np.nan  # a group without any value
        x[labels == 6] = 18.1  # a constant group: std exactly 0 (its reduceat mean need not be 18.1)
    ours = segment_stats(x, segments(labels, np.arange(len(labels))))
    want = pd.Series(x).groupby(labels, sort=False).agg(["mean", "median", "max", "min", "std", "count"])
    want.loc[want["count"] == 1, "std"] = 0.0
    for stat in ("mean", "median", "max", "min", "std", "count"):
        np.testing.assert_array_equal(ours[stat], want[stat].to_numpy(), err_msg=stat)


def test_the_mean_probe_tells_pandas_two_mean_kernels_apart():
    """segment_stats asks pandas (public API) which mean it computes; the probe data must separate the two."""
    x, labels = mean_probe()
    seg = segments(labels, np.arange(len(labels)))
    kahan = _kahan_sum(x, seg.starts, seg.sizes) / seg.sizes
    by_reduceat = np.add.reduceat(x, seg.starts) / seg.sizes.astype(np.float64)
    assert not np.array_equal(kahan, by_reduceat)
    want = pd.Series(x).groupby(labels, sort=False).mean().to_numpy()
    np.testing.assert_array_equal(by_reduceat if pandas_mean_by_reduceat() else kahan, want)
    np.testing.assert_array_equal(segment_stats(x, seg)["mean"], want)
    with_nan = np.append(x, np.nan)  # a NaN in the column: pandas' Kahan kernel, whatever the version
    want = pd.Series(with_nan).groupby(np.append(labels, 39), sort=False).mean().to_numpy()
    np.testing.assert_array_equal(
        segment_stats(with_nan, segments(np.append(labels, 39), np.arange(len(with_nan))))["mean"], want
    )


def test_segment_stats_of_rows_dropped_before_grouping_equal_pandas_on_the_kept_rows():
    labels, x = groups_of(SIZES, seed=5, nan_fraction=0.3)
    kept = ~np.isnan(x)
    ours = segment_stats(x, segments(labels, np.arange(len(labels))), nan_rows_dropped=True)
    grouped = pd.Series(x[kept]).groupby(labels[kept], sort=False)
    want = grouped.agg(["mean", "median", "max", "min", "std", "count"]).reindex(range(len(SIZES)))
    want.loc[want["count"] == 1, "std"] = 0.0
    for stat in ("mean", "median", "max", "min", "std"):
        np.testing.assert_array_equal(ours[stat], want[stat].to_numpy(), err_msg=stat)


def test_first_true_distinct_counts_and_lookup():
    seg = segments(np.array([0, 0, 0, 1, 1, 2]), np.arange(6))
    mask = np.array([False, True, True, False, False, True])
    assert first_true(mask, seg).tolist() == [1, -1, 5]
    assert first_true(mask, seg, last=True).tolist() == [2, -1, 5]
    rfid = pd.Series(pd.array([7, 8, 7, None, None, 3], dtype="Int64"))
    assert distinct_counts(np.array([0, 0, 0, 1, 1, 2]), value_codes(rfid), 3).tolist() == [2, 0, 1]
    codes, uniques = key_codes(pd.Series(["b", "a", "b"]), "test")
    assert codes.tolist() == [1, 0, 1] and uniques.tolist() == ["a", "b"]
    for dtype in ("str", object):
        found = lookup(uniques, pd.Series(["b", "zz", None, "a"], dtype=dtype))
        assert found.tolist() == [1, -1, -1, 0]


def test_null_group_keys_are_refused():
    with pytest.raises(ValueError, match=r"magstats\(\).*'oid' has null values"):
        key_codes(pd.Series(["a", None], name="oid"), "magstats()")
