"""Period selection 2 (lc-features-1.2.0, periodogram.SELECTION_FAMILY) on synthetic RR Lyrae of known period
sampled by a drift scan: one g and one r exposure a night at a fixed sidereal time (SDSS Stripe 82's cadence; a
ZTF field observed at the same hour angle night after night is close to it), ~10 nights apart in 70-night seasons.

Such sampling cannot tell f from f + k d nor from k d - f (d the sidereal day), and with 30 epochs the strongest
one-harmonic peaks are often far members of that family: selection 1 scans only the +-1, +-2 d aliases of its
peaks, never the mirrors k d - f of a peak below d, and so answers an alias; selection 2 screens every member."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alert_broker.features.lightcurve import compute_features

from .test_lc_period import frame
from .test_lc_period_selection import rrab

SIDEREAL = 1.0027379093
OLD, NEW = "lc-features-1.1.0", "lc-features-1.2.0"


def drift_scan_times(rng, n_nights: int = 30, spacing: float = 10.0, scatter: float = 0.01):
    """g then r (80 s apart) once a night; the field transits 4 minutes earlier each night (fixed sidereal time);
    seasons of 70 nights a year."""
    nights = np.floor(np.cumsum(rng.exponential(spacing, n_nights)))
    nights = nights + (nights // 70) * 295
    tod = 0.2 - (nights % 365.25) / 365.25 + 35 / 365.25
    t = (
        58300.0
        + np.repeat(nights + tod + rng.uniform(-scatter, scatter, n_nights), 2)
        + np.tile([0.0, 0.001], n_nights)
    )
    return t, np.tile([1, 2], n_nights)


def _stars(seeds) -> tuple[pd.DataFrame, pd.Series]:
    """RRab shapes (0.8 mag in g, 0.6 in r), P uniform in 0.45-0.8 d, noise 0.03 mag."""
    frames, truth = [], {}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        period = rng.uniform(0.45, 0.8)
        t, fid = drift_scan_times(rng)
        shape = 0.8 * rrab(t / period + rng.uniform()) * np.where(fid == 1, 1.0, 0.75)
        m = 17 + 0.1 * (fid == 2) + shape + rng.normal(0, 0.03, t.size)
        frames.append(frame(f"s{seed}", t, fid, m, np.full(t.size, 0.03)))
        truth[f"s{seed}"] = period
    return pd.concat(frames, ignore_index=True), pd.Series(truth)


def _periods(det: pd.DataFrame, version: str) -> pd.Series:
    return compute_features(det, None, feature_version=version).set_index("oid")["Multiband_period"]


def _daily_alias_order(found: float, true: float) -> int | None:
    """k when 1/found = |1/true + k d| or k d - 1/true (within 1 % of 1/true) for some |k| <= 20, else None."""
    f, f0 = 1.0 / found, 1.0 / true
    for k in range(-20, 21):
        if k and (abs(f - abs(f0 + k * SIDEREAL)) < 0.01 * f0 or abs(f - (k * SIDEREAL - f0)) < 0.01 * f0):
            return k
    return None


@pytest.mark.parametrize("seed", [20, 22, 28, 73, 82])
def test_selection_2_finds_the_period_selection_1_takes_a_daily_alias_of(seed):
    """Seed 28: P = 0.748 d (1.337 c/d), selection 1 answers 1.671 c/d = 3 d - f; seed 73: P = 0.622 d, it answers
    f + 4 d; seeds 20, 22 and 82: the +-1 d alias, whose own +-1 d aliases were not among its candidates (the five
    strongest peaks were other members of the family)."""
    det, truth = _stars([seed])
    old = _periods(det, OLD).iloc[0]
    new = _periods(det, NEW).iloc[0]
    true = truth.iloc[0]
    assert abs(new / true - 1) < 0.01, (new, true)
    assert abs(old / true - 1) > 0.01 and _daily_alias_order(old, true) is not None, (old, true)


def test_selection_2_never_loses_a_period_selection_1_found():
    """Over 40 drift-scanned stars: every period selection 1 recovers, selection 2 recovers too, and it recovers
    more. Its candidates are a superset of selection 1's and the same harmonic chi-square decides, so it can lose
    one only where a family member fits better than the period itself (measured: not on these 40, nor on the
    483 Stripe 82 RR Lyrae)."""
    det, truth = _stars(range(40))
    old = np.abs(_periods(det, OLD) / truth - 1) < 0.01
    new = np.abs(_periods(det, NEW) / truth - 1) < 0.01
    assert not (old & ~new).any(), list(old.index[old & ~new])
    assert new.sum() > old.sum()


def test_analytic_sinusoid_and_harmonic_curve_unchanged_by_the_family_screen():
    """A noiseless 3-harmonic curve at 0.37 d sampled by the drift scan: the alias family's members fit it worse
    than the period itself, so selection 2 answers the period to 1e-6."""
    rng = np.random.default_rng(5)
    t, fid = drift_scan_times(rng, n_nights=60)
    ph = 2 * np.pi * t / 0.37
    m = 17 + 0.3 * np.sin(ph) + 0.12 * np.sin(2 * ph + 0.5) + 0.05 * np.sin(3 * ph + 1.1)
    got = _periods(frame("h", t, fid, m, np.full(t.size, 0.01)), NEW).iloc[0]
    assert got == pytest.approx(0.37, rel=1e-6)
