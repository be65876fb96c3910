"""Real light curves as simulator templates (simulator.templates) and the ZTF stamp PSF (simulator.stamps):
checked against analytic values (distance moduli, a known period kept through resampling, time dilation, the
Moffat profile's total and FWHM)."""

from __future__ import annotations

import numpy as np
import pytest

from alert_broker.features.lightcurve import compute_features
from alert_broker.simulator.stamps import moffat_psf
from alert_broker.simulator.templates import ZTF_CADENCE, Template, distance_modulus, resample


def test_distance_modulus_of_flat_lcdm():
    # H0 = 70, Om = 0.3: D_L(0.1) = 460.0 Mpc, D_L(0.5) = 2832.9 Mpc (standard cosmology calculators)
    np.testing.assert_allclose(
        distance_modulus(np.array([0.1, 0.5])), 5 * np.log10(np.array([460.0e6, 2832.9e6]) / 10), atol=0.01
    )


def _rrl_template(period: float = 0.5731) -> Template:
    rng = np.random.default_rng(0)
    bands = {}
    for fid, amp in ((1, 0.9), (2, 0.6)):
        t = np.sort(rng.uniform(0, 600, 120))
        ph = np.mod(t / period, 1.0)
        m = 16.0 + amp * np.where(ph < 0.15, 0.5 - ph / 0.15, -0.5 + (ph - 0.15) / 0.85)
        bands[fid] = (t, m + rng.normal(0, 0.01, t.size), np.full(t.size, 0.01))
    return Template("RRL-test", "RRL", "periodic", bands, period=period)


def test_a_resampled_periodic_template_keeps_its_period_and_parent():
    tpl = _rrl_template()
    res = resample([tpl], 6, seed=3, spec=ZTF_CADENCE)
    assert set(res.parents) == {"RRL-test"} and set(res.labels) == {"RRL"}
    assert res.detections["oid"].str.startswith("RRL-test~").all()
    feats = compute_features(res.detections, res.non_detections).set_index("oid")
    assert len(feats) >= 4
    ratio = feats["Multiband_period"] / tpl.period
    assert (np.abs(ratio - 1) < 0.01).mean() >= 0.75, ratio.round(4).to_dict()
    # the same seed gives the same objects
    again = resample([tpl], 6, seed=3, spec=ZTF_CADENCE)
    assert again.detections.equals(res.detections)


def test_a_resampled_transient_brightens_only_and_keeps_the_history_stores_limits():
    t = np.arange(0.0, 60.0, 1.0)
    m = 18.0 + 0.05 * np.abs(t - 15.0)  # rise 15 d, then decline
    tpl = Template("SN-test", "SNIa", "transient", {1: (t, m, np.full(t.size, 0.02)), 2: (t, m, np.full(t.size, 0.02))},
                   redshift=0.05)  # fmt: skip
    res = resample([tpl], 8, seed=5, spec=ZTF_CADENCE, z_max=0.06)
    assert len(res.labels) >= 4 and set(res.parents) == {"SN-test"}
    det, nd = res.detections, res.non_detections
    assert (det["isdiffpos"] > 0).all()  # a transient on an empty reference only brightens
    # every non-detection is one an alert's 30-day history carries: a detection follows it within 30 days
    for oid, g in nd.groupby("oid"):
        t_det = np.sort(det.loc[det["oid"] == oid, "mjd"].to_numpy())
        nxt = np.searchsorted(t_det, g["mjd"].to_numpy())
        assert (nxt < t_det.size).all()
        assert (t_det[nxt] - g["mjd"].to_numpy() <= 30.0).all()


@pytest.mark.parametrize(("fwhm", "beta"), [(2.15, 3.5), (3.0, 2.5), (4.0, 4.5)])
def test_moffat_psf_is_unit_total_with_the_asked_fwhm(fwhm, beta):
    img = moffat_psf(201, fwhm, beta=beta)
    assert img.sum() == pytest.approx(1.0, rel=2e-3 if beta > 3 else 2e-2)  # power-law wings beyond the grid
    c = 100
    # the profile at a distance FWHM / 2 from the centre is half the peak: move the source by FWHM / 2
    shifted = moffat_psf(201, fwhm, dx=fwhm / 2, beta=beta)
    assert shifted[c, c] / img[c, c] == pytest.approx(0.5, rel=1e-9)
    elongated = moffat_psf(201, fwhm, beta=beta, elong=2.0)
    assert elongated.sum() == pytest.approx(img.sum(), rel=1e-2)


def _stamps(sci: np.ndarray, ref: np.ndarray, diff: np.ndarray):
    import pandas as pd

    from alert_broker.simulator.stamps import ztf_fits_gz

    return pd.DataFrame(
        {
            "cutout_science": [ztf_fits_gz(sci)],
            "cutout_template": [ztf_fits_gz(ref)],
            "cutout_difference": [ztf_fits_gz(diff)],
        }
    )


def _gauss(sx: float, sy: float, dx: float = 0.0, amp: float = 1000.0) -> np.ndarray:
    y, x = np.mgrid[0:63, 0:63].astype(float) - 31.0
    return amp * np.exp(-0.5 * (((x - dx) / sx) ** 2 + (y / sy) ** 2))


def test_stamp_statistics_measure_known_shapes():
    from alert_broker.classifiers.stamp.stampstats import stamp_statistics

    rng = np.random.default_rng(1)
    noise = lambda: rng.normal(100.0, 2.0, (63, 63))  # noqa: E731 - a background of 100 +- 2
    sci, ref = noise() + _gauss(1.5, 1.5), noise() + _gauss(1.5, 1.5)
    point = stamp_statistics(_stamps(sci, ref, noise() - 100 + _gauss(1.5, 1.5))).iloc[0]
    assert point["sci_bkg_sigma"] == pytest.approx(2.0, rel=0.1)
    assert point["ref_fwhm"] == pytest.approx(2.3548 * 1.5, rel=0.1)  # moments of the 9x9 box: truncated
    assert point["diff_elongation"] < 1.15 and point["diff_neg_ratio"] < 0.1
    assert point["ref_offset"] == 0.0 and point["nan_fraction"] == 0.0
    assert point["diff_sci_ratio"] == pytest.approx(1.0, rel=0.05)  # all the light is new
    trail = stamp_statistics(_stamps(sci, ref, noise() - 100 + _gauss(3.0, 1.0))).iloc[0]
    assert trail["diff_elongation"] > 1.5
    dipole = noise() - 100 + _gauss(1.2, 1.2, dx=-1.5) - _gauss(1.2, 1.2, dx=1.5)
    bad = stamp_statistics(_stamps(sci, ref, dipole)).iloc[0]
    assert bad["diff_neg_ratio"] == pytest.approx(1.0, abs=0.1)
    masked = ref.copy()
    masked[:21] = np.nan
    assert stamp_statistics(_stamps(sci, masked, dipole)).iloc[0]["nan_fraction"] == pytest.approx(
        21 * 63 / (3 * 63 * 63)
    )
