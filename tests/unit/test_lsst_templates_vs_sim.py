"""The simulated-vs-templates comparison of bench.lsst_templates_vs_sim: medians (log10 where asked), counts of
finite values and the Kolmogorov-Smirnov statistic on known samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.lsst_templates_vs_sim import FEATURES, compare


def _frame(peak: np.ndarray, n: int) -> pd.DataFrame:
    cols = {c: np.full(n, 1.0) for c, _, _ in FEATURES}
    cols["Peak_flux_r"] = peak
    return pd.DataFrame(cols)


def test_compare_reads_medians_in_log10_and_the_ks_distance():
    sim = _frame(np.array([100.0, 1000.0, 10000.0, np.nan]), 4)
    real = _frame(np.array([1e5, 1e6, 1e7, -5.0]), 4)  # a non-positive flux has no log: dropped
    table = compare(sim, pd.Series(["SNIa"] * 4), real, pd.Series(["SNIa"] * 4)).set_index(
        ["class", "feature"]
    )
    row = table.loc[("SNIa", "Peak_flux_r (log10)")]
    assert (row["n_sim"], row["n_real"]) == (3, 3)
    assert row["median_sim"] == pytest.approx(3.0) and row["median_real"] == pytest.approx(6.0)
    assert row["ks"] == pytest.approx(1.0)  # disjoint samples
    same = table.loc[("SNIa", "n_det_flux")]
    assert same["ks"] == pytest.approx(0.0) and same["median_sim"] == same["median_real"] == 1.0
    # a class absent on one side: counts 0, no statistic
    assert table.loc[("RRL", "n_det_flux")][["n_sim", "n_real"]].tolist() == [0, 0]
    assert np.isnan(table.loc[("RRL", "n_det_flux")]["ks"])
