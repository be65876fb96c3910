"""Real ZTF light curves seen by Rubin (simulator.templates: ``with_lsst_bands``, ``rise_time``, forced
photometry, ``as_flux_light_curves``; classifiers.crossval.lsst_template_rows): checked against analytic values
(Rubin's AB zero point of the nJy, a t^2 rise, colours linear in wavelength computed here from the filters'
effective wavelengths) and against the survey's own rules (forced photometry window, parents kept)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alert_broker.classifiers.crossval import lsst_template_rows
from alert_broker.features.lightcurve.flux import compute_flux_features
from alert_broker.simulator.templates import (
    FORCED_WINDOW,
    LSST_CADENCE,
    RISE_TIME_DEFAULT,
    ZTF_CADENCE,
    Resampled,
    Template,
    _extinction,
    as_flux_light_curves,
    resample,
    rise_time,
    template_colour,
    with_lsst_bands,
)

#: Effective wavelengths (nm) of u g r i z y, as the simulator's colour model uses them.
LAMBDA = {"u": 367.0, "g": 482.0, "r": 622.0, "i": 755.0, "z": 869.0, "y": 971.0}


def _cf(band: str) -> float:
    """Colour relative to r in units of g - r, linear in wavelength: g -> 1, r -> 0."""
    return (LAMBDA["r"] - LAMBDA[band]) / (LAMBDA["r"] - LAMBDA["g"])


def test_flux_light_curves_use_the_njy_zero_point_and_the_sign_of_the_difference():
    det = pd.DataFrame(
        {
            "oid": ["a", "a"],
            "fid": np.array([1, 4], dtype=np.int16),
            "mjd": [1.0, 2.0],
            "magpsf": [31.4 - 2.5 * np.log10(1000.0), 31.4 - 2.5 * np.log10(250.0)],
            "sigmapsf": [0.1, 0.2],
            "isdiffpos": np.array([1, -1], dtype=np.int8),
        }
    )
    forced = pd.DataFrame(
        {"oid": ["a"], "fid": np.array([2], dtype=np.int16), "mjd": [0.5], "flux": [10 ** (-0.4 * 23.9)],
         "flux_err": [10 ** (-0.4 * 26.4)]}
    )  # fmt: skip
    res = Resampled(det, pd.DataFrame(), pd.Series({"a": "SNIa"}), pd.Series({"a": "p"}), forced)
    d, f = as_flux_light_curves(res)
    assert d["band"].tolist() == ["g", "z"] and f["band"].tolist() == ["r"]
    np.testing.assert_allclose(d["flux"], [1000.0, -250.0], rtol=1e-9)
    np.testing.assert_allclose(d["flux_err"], [0.1 * 1000 / 1.0857, 0.2 * 250 / 1.0857], rtol=1e-9)
    np.testing.assert_allclose(f["flux"], [10 ** (0.4 * (31.4 - 23.9))], rtol=1e-9)
    np.testing.assert_allclose(f["flux_err"], [100.0], rtol=1e-9)


def test_rise_time_of_a_t_squared_rise_and_its_limits():
    t_x = -7.0  # first light
    t = np.array([0.0, 4.0, 14.0, 20.0])
    m = 18.0 - 5.0 * np.log10((t[:3] - t_x) / (14.0 - t_x))  # t^2 flux to the peak at t = 14
    m = np.append(m, 18.3)
    assert rise_time(t, m) == pytest.approx(7.0, rel=1e-9)
    assert rise_time(t, 18.0 + 0.05 * t) == RISE_TIME_DEFAULT  # first point brightest: no rise seen
    # a 0.06 mag rise over 40 days implies first light long before: clipped to 30 d
    assert rise_time(np.array([0.0, 40.0]), np.array([18.06, 18.0])) == 30.0


def _periodic(g_amp: float, r_amp: float, colour: float) -> Template:
    t = np.linspace(0.0, 300.0, 200)
    ph = np.sin(2 * np.pi * t / 0.61)
    bands = {
        2: (t, 17.0 + r_amp * ph, np.full(t.size, 0.01)),
        1: (t, 17.0 + colour + g_amp * ph, np.full(t.size, 0.01)),
    }
    return Template("P", "RRL", "periodic", bands, period=0.61)


def test_derived_bands_follow_the_colour_model_linear_in_wavelength():
    tpl = with_lsst_bands(_periodic(0.3, 0.3, 0.4))  # no chromaticity: every band has the same amplitude
    assert sorted(tpl.bands) == [0, 1, 2, 3, 4, 5]
    _, m_r, _ = tpl.bands[2]
    _, m_g, _ = tpl.bands[1]
    for fid, band in ((3, "i"), (4, "z"), (5, "y")):
        np.testing.assert_allclose(tpl.bands[fid][1], m_r + _cf(band) * 0.4, atol=1e-9)
    np.testing.assert_allclose(tpl.bands[0][1], m_g + (_cf("u") - 1.0) * 0.4, atol=1e-9)
    assert template_colour(tpl) == pytest.approx(0.4, abs=1e-9)


def test_derived_amplitudes_scale_with_the_chromaticity_of_g_and_r():
    tpl = with_lsst_bands(_periodic(0.45, 0.3, 0.2))  # A_g / A_r = 1.5: chroma 0.5
    amp = {fid: np.ptp(m) for fid, (_, m, _) in tpl.bands.items()}
    assert amp[3] / amp[2] == pytest.approx(1 + 0.5 * _cf("i"), rel=1e-3)
    assert amp[4] / amp[2] == pytest.approx(0.3, rel=1e-3)  # 1 + 0.5 cf_z < 0.3: floored
    assert amp[0] / amp[1] == pytest.approx((1 + 0.5 * _cf("u")) / 1.5, rel=1e-3)


def test_a_template_without_both_g_and_r_is_left_as_it_is():
    tpl = _periodic(0.3, 0.3, 0.4)
    only_r = Template("P", "RRL", "periodic", {2: tpl.bands[2]}, period=0.61)
    assert sorted(with_lsst_bands(only_r).bands) == [2]


def test_the_colour_of_a_supernova_comes_from_close_pairs_of_early_points():
    t = np.arange(0.0, 80.0, 2.0)
    r = 18.0 + 0.03 * np.abs(t - 15.0)
    g = r + np.where(t < 30, 0.1, 1.0)  # blue early, red late
    tpl = Template("S", "SNIa", "transient", {1: (t + 0.1, g, g * 0 + 0.02), 2: (t, r, r * 0 + 0.02)})
    assert template_colour(tpl) == pytest.approx(0.1 + 0.03 * 0.1, abs=0.02)


def test_extinction_is_the_surveys_own_per_band():
    fids = np.array([0, 1, 2, 3, 4, 5])
    np.testing.assert_allclose(_extinction(LSST_CADENCE, fids), LSST_CADENCE.extinction)
    np.testing.assert_allclose(_extinction(ZTF_CADENCE, np.array([1, 2])), [3.74, 2.64])


def _sn() -> Template:
    t = np.arange(0.0, 60.0, 1.5)
    m = 18.0 + np.where(t < 12, 0.12 * (12 - t), 0.04 * (t - 12))
    return Template("SN", "SNIa", "transient", {1: (t, m + 0.05, t * 0 + 0.02), 2: (t, m, t * 0 + 0.02)},
                    redshift=0.03)  # fmt: skip


def test_rubin_sees_a_supernova_earlier_with_the_rise_and_forced_photometry_before_it():
    tpl = with_lsst_bands(_sn())
    plain = resample([tpl], 6, seed=2, spec=LSST_CADENCE, z_max=0.1)
    rising = resample([tpl], 6, seed=2, spec=LSST_CADENCE, z_max=0.1, pre_rise=True)
    # the rise only adds detections: every object the plain resampling keeps is kept (and maybe more)
    assert set(plain.labels.index) <= set(rising.labels.index) and len(plain.labels) >= 4
    earlier = 0
    for oid, g in plain.detections.groupby("oid"):
        r = rising.detections[rising.detections["oid"] == oid]
        first = g["mjd"].min()
        # the same visits and noise (the rise draws nothing): detections after the plain first one are shared
        assert set(g["mjd"]) <= set(r["mjd"])
        earlier += int((r["mjd"] < first).sum())
        assert (r.loc[~r["mjd"].isin(g["mjd"]), "mjd"] < first).all()
    assert earlier > 0
    assert set(rising.detections["fid"]) >= {2, 3, 4}
    # forced photometry: every visit from 30 d before the first detection to the last, within a year of it
    for oid, fp in rising.forced.groupby("oid"):
        d = rising.detections.loc[rising.detections["oid"] == oid, "mjd"]
        lo = max(d.min() - 30.0, d.max() - FORCED_WINDOW)
        assert fp["mjd"].between(lo, d.max()).all()
        assert set(d) <= set(fp["mjd"])


def test_lsst_template_rows_of_the_real_sets(shared_data):
    rows = lsst_template_rows(shared_data, 3, counts={"periodic": 1, "s82": 0, "sne": 1, "bts": 0})
    assert set(rows.sources) == {"template:alerce_periodic", "template:alerce_sne"}
    assert len(rows) >= 30
    # a row's group is its parent, the part of the oid before "~"
    parents = [k.split("/", 1)[1].split("~")[0] for k in rows.features.index]
    assert rows.groups.tolist() == parents
    # difference-flux features in Rubin's red bands, which ZTF never observed
    assert rows.features["n_det_flux_i"].gt(0).mean() > 0.5
    assert set(compute_flux_features.__module__.split(".")) >= {"flux"}


def test_volume_quantiles_follow_the_euclidean_volume_at_low_redshift_and_flatten_at_high():
    from alert_broker.simulator.templates import volume_quantile

    # at z << 1 the density is ~ z^2: the quantile u of [0, z_hi] is z_hi u^(1/3)
    for u in (0.1, 0.5, 0.9):
        assert volume_quantile(u, 1e-4, 0.02) == pytest.approx(0.02 * u ** (1 / 3), rel=0.01)
    assert volume_quantile(0.0, 0.1, 0.8) == pytest.approx(0.1) and volume_quantile(
        1.0, 0.1, 0.8
    ) == pytest.approx(0.8)
    q = [volume_quantile(u, 0.01, 0.8) for u in np.linspace(0, 1, 11)]
    assert np.all(np.diff(q) > 0)
    # to z = 0.8 the volume grows slower than z^3 (and time dilation thins the rate): median below 0.8 / 2^(1/3)
    assert 0.5 < volume_quantile(0.5, 0.01, 0.8) < 0.8 * 0.5 ** (1 / 3)
