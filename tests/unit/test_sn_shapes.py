"""Model-free SN light-curve shapes (bench.sn_shapes): the estimator on a light curve with known answers, and
the simulated SNe Ia against the real BTS SNe Ia measured with it (the calibration of population.SN_PARAMS)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.sn_shapes import real_shapes, shape_statistics, simulated_shapes


def _broken_line(t: np.ndarray, peak: float, rise: float, fall: float) -> np.ndarray:
    """Magnitudes rising at ``rise`` mag/d to ``peak`` at t = 0, then fading at ``fall`` mag/d."""
    return peak + np.where(t < 0, -rise * t, fall * t)


def test_statistics_of_a_broken_line_light_curve() -> None:
    """r: rises 0.2 mag/d, fades 0.04 mag/d; g: 0.1 mag redder at peak and fades 0.06 mag/d. Then g-r = 0.1 +
    0.02 t after the peak, r has faded 0.6 / 1.2 mag after 15 / 30 d, g 0.9 mag, and half the peak flux
    (2.5 log10 2 = 0.753 mag) is reached 3.76 d before and 18.8 d after the peak."""
    t = np.arange(-30.0, 60.0, 1.0)
    mag = np.r_[_broken_line(t, 19.1, 0.2, 0.06), _broken_line(t, 19.0, 0.2, 0.04)]
    fid = np.repeat([1, 2], len(t))
    s = shape_statistics(np.r_[t, t], mag, fid)
    half = 2.5 * np.log10(2.0)
    assert s["gr_peak"] == pytest.approx(0.1)
    assert s["gr_p15"] == pytest.approx(0.4)
    assert s["gr_p30"] == pytest.approx(0.7)
    assert s["dm15_r"] == pytest.approx(0.6)
    assert s["dm30_r"] == pytest.approx(1.2)
    assert s["dm15_g"] == pytest.approx(0.9)
    # the flux is interpolated linearly between daily points: within 0.05 d of the exact crossing
    assert s["rise_half"] == pytest.approx(half / 0.2, abs=0.05)
    assert s["fall_half"] == pytest.approx(half / 0.04, abs=0.05)


def test_gaps_and_unbracketed_peaks_give_no_number() -> None:
    t = np.arange(-30.0, 60.0, 1.0)
    mag = _broken_line(t, 19.0, 0.2, 0.04)
    # the r peak is the first point: no shape at all
    late = t >= 0
    assert (
        shape_statistics(np.r_[t[late], t[late]], np.r_[mag[late], mag[late]], np.repeat([1, 2], late.sum()))
        is None
    )
    # a 20-day gap after the peak: no fading or colour measured across it
    keep = (t <= 2) | (t >= 22)
    s = shape_statistics(np.r_[t[keep], t[keep]], np.r_[mag[keep], mag[keep]], np.repeat([1, 2], keep.sum()))
    assert np.isnan(s["dm15_r"]) and np.isnan(s["gr_p15"]) and np.isnan(s["fall_half"])
    assert s["dm30_r"] == pytest.approx(1.2)


def test_simulated_sne_ia_fade_like_the_bts_sne_ia(shared_data) -> None:
    """The simulated SNe Ia, as bright as BTS's and observed with noise, fade in r like the first 400 BTS SNe Ia
    measured the same way: half the peak flux within 3 d of the BTS median (18.9 d on the whole set), 15 and 30
    days after peak within 0.15 mag; the previous parameters (tail 32-45 d) took ~30 d and fail."""
    real = real_shapes(shared_data, bts_limit=400)
    bts = real[real["source"] == "BTS"].median(numeric_only=True)
    sim = simulated_shapes("SNIa", n=300, seed=7).median(numeric_only=True)
    assert abs(sim["fall_half"] - bts["fall_half"]) < 3.0
    assert abs(sim["dm15_r"] - bts["dm15_r"]) < 0.15
    assert abs(sim["dm30_r"] - bts["dm30_r"]) < 0.15
    assert abs(sim["rise_half"] - bts["rise_half"]) < 2.0
    assert abs(sim["gr_p15"] - bts["gr_p15"]) < 0.15

    from alert_broker.simulator import population

    old = (-19.25, 0.15, (2.5, 4.0), (32.0, 45.0), (8.0, 16.0), (0.015, 0.03), (-0.05, 0.10))
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(population.SN_PARAMS, "SNIa", old)
        mp.setitem(population.SN_DECLINE_CHROMA, "SNIa", (0.55, 0.4))
        before = simulated_shapes("SNIa", n=300, seed=7).median(numeric_only=True)
    assert before["fall_half"] - bts["fall_half"] > 6.0
