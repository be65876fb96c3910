"""Period selection of lc-features-1.1.0 (periodogram.SELECTION_SCAN) on synthetic non-sinusoidal light curves
of known period, sampled as ZTF samples (a g and an r point per night, seasons, ~2.5 d apart)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alert_broker.features.lightcurve import FEATURE_VERSIONS, compute_features

from .test_lc_period import frame, ztf_times


def rrab(phase: np.ndarray) -> np.ndarray:
    """A fundamental-mode RR Lyrae shape: rise over 15 % of the cycle, linear decline (peak-to-peak 1)."""
    ph = phase % 1.0
    return np.where(ph < 0.15, 0.5 - ph / 0.15, -0.5 + (ph - 0.15) / 0.85)


def eclipsing(
    phase: np.ndarray, primary: float = 0.7, secondary: float = 0.25, width: float = 0.04
) -> np.ndarray:
    """Detached binary: two Gaussian eclipses of unequal depth (magnitudes, fainter = larger) half a cycle apart."""
    ph = phase % 1.0
    d = np.minimum(ph, 1 - ph)
    return primary * np.exp(-0.5 * (d / width) ** 2) + secondary * np.exp(-0.5 * ((ph - 0.5) / width) ** 2)


def _sample(kind: str, n: int, nights: int = 70) -> tuple[pd.DataFrame, pd.Series]:
    frames, truth = [], {}
    for seed in range(n):
        rng = np.random.default_rng(100 + seed)
        period = rng.uniform(0.3, 0.8) if kind == "rrab" else rng.uniform(0.8, 4.0)
        t, fid = ztf_times(rng, nights)
        shape = 0.8 * rrab(t / period) if kind == "rrab" else eclipsing(t / period)
        m = 17 + 0.1 * (fid == 2) + shape + rng.normal(0, 0.03, t.size)
        frames.append(frame(f"{kind}{seed}", t, fid, m, np.full(t.size, 0.03)))
        truth[f"{kind}{seed}"] = period
    return pd.concat(frames, ignore_index=True), pd.Series(truth)


@pytest.mark.parametrize("version", FEATURE_VERSIONS)
def test_rr_lyrae_shapes_recovered_within_one_percent(version):
    det, truth = _sample("rrab", 10)
    out = compute_features(det, None, feature_version=version).set_index("oid")
    ratio = out["Multiband_period"] / truth.reindex(out.index)
    assert len(out) == 10 and (np.abs(ratio - 1) < 0.01).all(), ratio.round(4).to_dict()


def test_eclipsing_binaries_at_their_period_or_half_of_it():
    """Narrow eclipses need many harmonics; at half the orbital period the even harmonics fit them, so the
    selection may answer P/2 (counted right, as for ALeRCE's EA); never another alias."""
    det, truth = _sample("eb", 10)
    out = compute_features(det, None).set_index("oid")
    ratio = out["Multiband_period"] / truth.reindex(out.index)
    ok = (np.abs(ratio - 1) < 0.01) | (np.abs(ratio - 0.5) < 0.005)
    assert ok.sum() >= 9, ratio.round(4).to_dict()


@pytest.mark.parametrize("period", [95.0, 151.0, 230.0])
def test_a_long_sinusoid_is_not_taken_at_a_subharmonic(period):
    """A k-harmonic model at P*k holds the sinusoid at P, so its chi-square is never worse: the scan must not
    slide to 2P or 3P (it did before the scan was capped at +-f/4 and the shortest well-fitting period won)."""
    rng = np.random.default_rng(int(period))
    t, fid = ztf_times(rng, 200)
    m = 17.0 + 0.3 * np.sin(2 * np.pi * t / period + 0.4) + rng.normal(0, 0.01, t.size)
    row = compute_features(frame("s", t, fid, m, np.full(t.size, 0.01)), None).iloc[0]
    assert row["Multiband_period"] == pytest.approx(period, rel=3e-3)
