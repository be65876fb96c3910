"""Group-by on sorted integer codes: the per-(object, band) machinery of magstats and object_stats.

The broker calls the statistics once per sky-region task per micro-batch on frames of a few thousand rows,
where pandas' ``groupby`` / ``sort_values`` cost is mostly fixed per-call overhead. Here the keys are
factorised to integer codes once; the rows are put in time order once (``mjd``, then ``candid``, then input
position, nulls last, exactly as ``DataFrame.sort_values(kind="stable", na_position="last")`` orders them) and
grouped by a stable integer sort of the codes; every statistic is then a numpy segment reduction
(``ufunc.reduceat``) over the contiguous groups. The two statistics pandas computes by a sequential recurrence
(a Kahan-compensated mean, Welford's variance) are replayed with the same floating-point operations, one
step for all groups at a time, so the results are identical to pandas' bit for bit.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


class Segments(NamedTuple):
    """Rows grouped by key (groups in ascending key order), in time order inside each group."""

    order: np.ndarray  #: input row positions, grouped and time-sorted
    starts: np.ndarray  #: offset in ``order`` of each group's first row
    sizes: np.ndarray  #: rows per group (int64)

    @property
    def first(self) -> np.ndarray:
        """Input position of each group's first row (earliest ``mjd``, then ``candid``)."""
        return self.order[self.starts]

    @property
    def last(self) -> np.ndarray:
        """Input position of each group's last row."""
        return self.order[self.starts + self.sizes - 1]

    def ids(self) -> np.ndarray:
        """Group number of every row of the sorted order."""
        return np.repeat(np.arange(len(self.starts)), self.sizes)


def key_codes(values: pd.Series, what: str) -> tuple[np.ndarray, pd.Index]:
    """Codes 0..k-1 in ascending value order (as ``sort_values`` orders them) and the k distinct values.

    Group keys are ids and must not be null: a null would silently drop rows from a group-by.
    """
    codes, uniques = pd.factorize(values, sort=True)
    if len(codes) and codes.min() < 0:
        raise ValueError(
            f"{what}: column {values.name!r} has null values; ids must be set (docs/data-model.md)"
        )
    return codes.astype(np.int64, copy=False), uniques


def value_codes(values: pd.Series) -> np.ndarray:
    """Integer codes of equal values (order arbitrary), -1 for null; for counting distinct values."""
    return pd.factorize(values)[0].astype(np.int64, copy=False)


def sort_keys(values: pd.Series) -> list[np.ndarray]:
    """``np.lexsort`` keys (least significant first) ordering ``values`` ascending with nulls last."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        return [values.to_numpy()]  # numpy sorts NaN last
    if pd.api.types.is_float_dtype(dtype):
        return [values.to_numpy(dtype="float64", na_value=np.nan)]
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        null = values.isna().to_numpy()
        return [values.to_numpy(dtype="int64", na_value=0), null]
    codes, uniques = pd.factorize(values, sort=True)
    return [np.where(codes < 0, len(uniques), codes)]


def _dense_rank(values: pd.Series, rows: np.ndarray) -> np.ndarray:
    """Rank 0..k-1 of ``values[rows]`` in ascending order, equal values sharing a rank, nulls last."""
    keys = [k[rows] for k in sort_keys(values)]
    order = np.lexsort(keys)
    changed = np.zeros(len(rows), dtype=bool)
    for k in keys:
        ks = k[order]
        differ = ks[1:] != ks[:-1]
        if ks.dtype.kind == "f":
            differ &= ~(np.isnan(ks[1:]) & np.isnan(ks[:-1]))  # nulls are all equal
        changed[1:] |= differ
    rank = np.empty(len(rows), dtype=np.int64)
    rank[order] = np.cumsum(changed)
    return rank


def time_order(df: pd.DataFrame) -> np.ndarray:
    """Row positions in "earliest first" order: ``mjd``, then ``candid`` when the frame has one, then input
    position; nulls last (the order of ``sort_values(kind="stable", na_position="last")``).

    A quicksort of ``mjd`` orders every row whose ``mjd`` is unique; the rows of tied ``mjd`` runs (same
    exposure, or null) are re-sorted by one distinct key built from the ranks of ``mjd`` and ``candid`` and
    the position.
    """
    n = len(df)
    mjd = df["mjd"].to_numpy(dtype="float64", na_value=np.nan)
    order = np.argsort(mjd)  # NaN last
    ms = mjd[order]
    tie = (ms[1:] == ms[:-1]) | (np.isnan(ms[1:]) & np.isnan(ms[:-1]))
    if tie.any():
        slots = np.zeros(n, dtype=bool)
        slots[1:] |= tie
        slots[:-1] |= tie
        tied = order[slots]
        # Dense rank of mjd along the sorted order, then of candid, then the position: one distinct key.
        mjd_rank = np.cumsum(np.concatenate(([0], ~tie)))[slots]
        candid_rank = (
            _dense_rank(df["candid"], tied) if "candid" in df.columns else np.zeros(len(tied), np.int64)
        )
        width = int(candid_rank.max(initial=0)) + 1
        if (int(mjd_rank[-1]) + 1) * width * n < 2**62:
            order[slots] = tied[np.argsort((mjd_rank * width + candid_rank) * n + tied)]
        else:
            order[slots] = tied[np.lexsort((tied, candid_rank, mjd_rank))]
    return order


def stable_order(codes: np.ndarray, within: np.ndarray) -> np.ndarray:
    """Positions ordered by integer ``codes`` (>= 0), rows of equal code in the order of ``within``.

    A stable sort of 16-bit codes is numpy's O(n) radix sort; wider codes sort a distinct composite key.
    """
    n = len(codes)
    top = int(codes.max(initial=0))
    if top < 2**16:
        return within[np.argsort(codes[within].astype(np.uint16), kind="stable")]
    rank = np.empty(n, dtype=np.int64)
    rank[within] = np.arange(n)
    if (top + 1) * n < 2**62:
        return np.argsort(codes * n + rank)  # distinct keys: any sort algorithm gives the same order
    return np.lexsort((rank, codes))


def segments(codes: np.ndarray, order_in_time: np.ndarray) -> Segments:
    """Group rows by integer ``codes`` (>= 0), each group in the order of permutation ``order_in_time``."""
    n = len(codes)
    if n == 0:
        return Segments(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    order = stable_order(codes, order_in_time)
    k = codes[order]
    starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
    sizes = np.diff(np.append(starts, n))
    return Segments(order, starts, sizes)


def mean_probe() -> tuple[np.ndarray, np.ndarray]:
    """Values and sorted group labels (groups of 1 to 40 values) on which an ``np.add.reduceat`` mean and a
    Kahan-compensated mean differ in the last bit for some groups."""
    labels = np.repeat(np.arange(40), np.arange(1, 41))
    return 18.0 + np.sin(np.arange(len(labels), dtype=np.float64)), labels


@functools.cache
def pandas_mean_by_reduceat() -> bool:
    """Whether pandas averages a NaN-free column of sorted groups with ``np.add.reduceat`` (pandas >= 3.1)
    rather than with its Kahan-compensated kernel (older pandas); mirroring it keeps our means identical to
    a pandas group-by.

    Asked of pandas itself, through its public API, once: its group means of :func:`mean_probe`.
    """
    x, labels = mean_probe()
    got = pd.Series(x).groupby(labels, sort=False).mean().to_numpy()
    starts = np.flatnonzero(np.concatenate(([True], labels[1:] != labels[:-1])))
    by_reduceat = np.add.reduceat(x, starts) / np.diff(np.append(starts, len(x))).astype(np.float64)
    return bool(np.array_equal(got, by_reduceat))


#: Below this many groups still running, the sequential scans go on one group at a time in plain Python.
_SCALAR_TAIL = 8


def _active(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups by decreasing size, and for each step k how many groups have more than k values."""
    perm = np.argsort(-counts, kind="stable")
    sizes = counts[perm]
    return perm, np.searchsorted(-sizes, -np.arange(int(sizes[0]) if len(sizes) else 0), side="left")


def _welford_m2(xc: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sum of squared deviations per group by Welford's update, in row order, as pandas' ``group_var``.

    Step k updates the k-th value of every group that has one, all groups at once; the few longest groups
    finish in plain Python (same IEEE operations) so one very long light curve stays O(n).
    """
    perm, active = _active(counts)
    first, sizes = starts[perm], counts[perm]
    mean, m2 = np.zeros(len(perm)), np.zeros(len(perm))
    k = 0
    while k < len(active) and active[k] >= _SCALAR_TAIL:
        m = active[k]
        v = xc[first[:m] + k]
        delta = v - mean[:m]
        mean[:m] += delta / (k + 1)
        m2[:m] += (v - mean[:m]) * delta
        k += 1
    for g in range(active[k] if k < len(active) else 0):
        mu, s2 = float(mean[g]), float(m2[g])
        for i, v in enumerate(xc[first[g] + k : first[g] + sizes[g]].tolist(), start=k + 1):
            delta = v - mu
            mu += delta / i
            s2 += (v - mu) * delta
        m2[g] = s2
    out = np.empty(len(perm))
    out[perm] = m2
    return out


def _kahan_sum(xc: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Compensated (Kahan) sum per group in row order, as pandas' ``group_sum`` / ``group_mean``."""
    perm, active = _active(counts)
    first, sizes = starts[perm], counts[perm]
    total, comp = np.zeros(len(perm)), np.zeros(len(perm))
    k = 0
    while k < len(active) and active[k] >= _SCALAR_TAIL:
        m = active[k]
        y = xc[first[:m] + k] - comp[:m]
        t = total[:m] + y
        c = (t - total[:m]) - y
        comp[:m] = np.where(np.isfinite(c), c, 0.0)  # an infinite value must not turn the sum into NaN
        total[:m] = t
        k += 1
    for g in range(active[k] if k < len(active) else 0):
        tot, cmp = float(total[g]), float(comp[g])
        for v in xc[first[g] + k : first[g] + sizes[g]].tolist():
            y = v - cmp
            t = tot + y
            cmp = (t - tot) - y
            cmp = cmp if math.isfinite(cmp) else 0.0
            tot = t
        total[g] = tot
    out = np.empty(len(perm))
    out[perm] = total
    return out


def segment_stats(x: np.ndarray, seg: Segments, *, nan_rows_dropped: bool = False) -> dict[str, np.ndarray]:
    """NaN-skipping ``count``, ``mean``, ``median``, ``max``, ``min`` and ``std`` of each group, bit for bit
    as pandas computes them with a ``groupby(sort=False)`` over rows sorted by group.

    ``x`` is float64 in the sorted order of ``seg``. ``std`` is the sample standard deviation (ddof=1), 0 for
    a single value, NaN for none. pandas' std is Welford's update in row order; its mean (3.1) is
    ``np.add.reduceat / size`` when the grouped column has no NaN, a Kahan sum otherwise. ``nan_rows_dropped``
    says the NaNs of ``x`` stand for rows the caller's pandas reference filtered out before grouping (so its
    column had none), not for NaN values inside the groups.
    """
    valid = ~np.isnan(x)
    count = np.add.reduceat(valid.astype(np.int64), seg.starts)
    present = np.flatnonzero(count > 0)
    xc = x[valid]
    starts_c = (np.cumsum(count) - count)[present]
    n = count[present]
    mean, std = np.full(len(count), np.nan), np.full(len(count), np.nan)
    if pandas_mean_by_reduceat() and (nan_rows_dropped or valid.all()):
        mean[present] = np.add.reduceat(xc, starts_c) / n.astype(np.float64)
    else:
        mean[present] = _kahan_sum(xc, starts_c, n) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        std[present] = np.where(n > 1, np.sqrt(_welford_m2(xc, starts_c, n) / (n - 1)), 0.0)
    xs = x[stable_order(seg.ids(), np.argsort(x))]  # ascending inside each group, NaN last
    lo = seg.starts + np.maximum(count - 1, 0) // 2
    median = (xs[lo] + xs[seg.starts + count // 2]) / 2  # NaN for a group without values
    high, low = np.fmax.reduceat(x, seg.starts), np.fmin.reduceat(x, seg.starts)
    return {"count": count, "mean": mean, "median": median, "max": high, "min": low, "std": std}


def group_order(group: np.ndarray, n_groups: int) -> np.ndarray:
    """Stable order of rows by group number 0..n_groups-1 (a radix sort when the numbers fit 16 bits)."""
    small = group.astype(np.uint16) if n_groups <= 2**16 else group
    return np.argsort(small, kind="stable")


def first_true(mask: np.ndarray, seg: Segments, last: bool = False) -> np.ndarray:
    """Offset (in the sorted order) of each group's first (or last) row where ``mask`` holds; -1 if none."""
    n = len(mask)
    pos = np.arange(n)
    if last:
        return np.maximum.reduceat(np.where(mask, pos, -1), seg.starts)
    found = np.minimum.reduceat(np.where(mask, pos, n), seg.starts)
    return np.where(found < n, found, -1)


def pick(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``values[offsets]`` as float64, NaN where the offset is -1 (no such row)."""
    out = values[np.maximum(offsets, 0)].astype(np.float64)
    out[offsets < 0] = np.nan
    return out


def distinct_counts(group: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Number of distinct non-null ``codes`` (-1 = null, as from :func:`value_codes`) per group 0..n-1.

    ``group`` < 0 marks rows that belong to no group.
    """
    ok = (codes >= 0) & (group >= 0)
    if not ok.any():
        return np.zeros(n_groups, dtype=np.int64)
    width = int(codes.max()) + 1
    pairs = np.unique(group[ok] * width + codes[ok])
    return np.bincount(pairs // width, minlength=n_groups).astype(np.int64)


def take(values: pd.Series, positions: np.ndarray) -> np.ndarray:
    """``values.iloc[positions].to_numpy()`` without building a Series (same dtype rules)."""
    return values.array.take(positions).to_numpy()


#: The dtype pandas gives a column built from an object array of str (``str`` in pandas 3, object before).
_INFERRED_STRING = pd.Series(np.array(["x"], dtype=object)).dtype


def take_column(values: pd.Series, positions: np.ndarray) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """``values.iloc[positions]`` as an output column: ``pd.DataFrame`` gives it the dtype it gives
    ``take(values, positions)``, without a round trip of strings through Python objects."""
    taken = values.array.take(positions)
    return taken if values.dtype == _INFERRED_STRING else taken.to_numpy()


def lookup(uniques: pd.Index, values: pd.Series) -> np.ndarray:
    """Position of each of ``values`` in the distinct ``uniques``, -1 where absent or null (hash join)."""
    left, right = uniques.array, values.array
    if isinstance(left, pd.arrays.ArrowStringArray) and isinstance(right, pd.arrays.ArrowStringArray):
        try:
            found = pc.index_in(right.__arrow_array__(), value_set=left.__arrow_array__().combine_chunks())
            return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass  # e.g. string and large_string storage: let pandas compare them
    return uniques.get_indexer(values)
