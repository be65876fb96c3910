"""The per-class simulated-vs-real comparison (bench.sim_vs_real_classes.compare) on synthetic frames with known
answers: a known shift is found, identical samples agree, a class on one side only is reported as missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.sim_vs_real_classes import compare, largest_differences


def _frame(rng: np.random.Generator, cls: str, n: int, loc: float, scale: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame({"class": cls, "x": rng.normal(loc, scale, n), "y": rng.lognormal(0.0, 1.0, n)})


def test_known_shift_is_found() -> None:
    rng = np.random.default_rng(1)
    sim = _frame(rng, "A", 4000, 0.0, 2.0)
    real = _frame(rng, "A", 4000, 3.0, 2.0)
    row = compare(sim, real, columns=["x"]).iloc[0]
    assert row["status"] == "ok"
    assert row["real_median"] - row["sim_median"] == pytest.approx(3.0, abs=0.15)
    # a normal's IQR is 1.349 sigma: a 3.0 shift with sigma 2 is 3.0 / 2.698 IQRs
    assert row["shift_iqr"] == pytest.approx(3.0 / (1.349 * 2.0), abs=0.08)
    assert row["ks"] > 0.5
    assert row["ks_p"] < 1e-6


def test_identical_samples_agree() -> None:
    rng = np.random.default_rng(2)
    sim = _frame(rng, "A", 3000, 1.0)
    real = _frame(rng, "A", 3000, 1.0)
    out = compare(sim, real, columns=["x", "y"], log_columns=["y"]).set_index("statistic")
    assert (out["status"] == "ok").all()
    assert (out["ks"] < 0.05).all()
    assert out["shift_iqr"].abs().max() < 0.1
    # log columns: the median is reported in the original units (lognormal(0, 1): median 1)
    assert out.loc["y", "sim_median"] == pytest.approx(1.0, abs=0.1)
    assert bool(out.loc["y", "log"])


def test_missing_classes_and_small_samples_are_flagged() -> None:
    rng = np.random.default_rng(3)
    sim = pd.concat([_frame(rng, "A", 100, 0.0), _frame(rng, "B", 100, 0.0)], ignore_index=True)
    real = pd.concat([_frame(rng, "A", 2, 0.0), _frame(rng, "C", 20, 0.0)], ignore_index=True)
    out = compare(sim, real, columns=["x"]).set_index("class")
    assert out.loc["B", "status"] == "no real" and np.isnan(out.loc["B", "ks"])
    assert out.loc["C", "status"] == "no sim" and out.loc["C", "n_real"] == 20
    assert out.loc["A", "status"] == "too few" and np.isnan(out.loc["A", "ks"])
    assert np.isfinite(out.loc["A", "real_median"])
    assert largest_differences(out.reset_index()).empty


def test_non_finite_values_are_left_out() -> None:
    sim = pd.DataFrame({"class": "A", "x": [1.0, 2.0, 3.0, np.nan, np.inf]})
    real = pd.DataFrame({"class": "A", "x": [np.nan, 5.0, 6.0, 7.0]})
    row = compare(sim, real, columns=["x"]).iloc[0]
    assert (row["n_sim"], row["n_real"]) == (3, 3)
    assert (row["sim_median"], row["real_median"]) == (2.0, 6.0)
    assert row["ks"] == pytest.approx(1.0)
