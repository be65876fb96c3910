"""The survey's observing log: which field was observed when, in which band, how deep, under what seeing.

One row per (field, visit). Nights are opened by local noon (the contract's night labels); a field is observable
while it is within ~110 deg of the anti-Sun in right ascension (seasons), on clear nights (weather), at the
survey's revisit rate, near its transit, one exposure at a time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .config import SimConfig
from .rng import stream
from .timeutil import night_label, night_start, sun_ra_deg

EXPOSURE_SLOT_DAYS = 40.0 / 86400.0  # 30 s exposure + ~10 s overhead: one pointing at a time


def simulated_span(cfg: SimConfig) -> tuple[float, float, float]:
    """(first MJD simulated, first MJD of the alert window, end of the alert window)."""
    spec = cfg.spec
    w0 = night_start(cfg.first_mjd(), spec.lon_deg)
    w1 = w0 + cfg.nights
    lead = max(spec.history_days, 60.0) + 1.0
    return w0 - lead, w0, w1


def joint_span(cfg: SimConfig) -> tuple[float, float]:
    """Joint runs: (first MJD, end of the alert window) covering every survey's simulated span."""
    spans = [simulated_span(cfg.part(s)) for s in cfg.surveys]
    return min(s[0] for s in spans), max(s[2] for s in spans)


def schedule(cfg: SimConfig, fields: pd.DataFrame) -> pd.DataFrame:
    """All visits of all fields between the start of the simulated history and the end of the alert window."""
    spec = cfg.spec
    rng = stream(cfg.seed, "cadence")
    t_from, _, t_to = simulated_span(cfg)
    starts = np.arange(night_start(t_from, spec.lon_deg), t_to, 1.0)
    n_n, n_f = len(starts), len(fields)
    midnight = starts + 0.5
    # Weather: closed nights, and per-night cloud losses on the open ones.
    open_night = rng.random(n_n) < spec.clear_fraction
    # The requested nights are observing nights (a run asked for alerts); weather closes history nights only.
    open_night[starts >= night_start(cfg.first_mjd(), spec.lon_deg) - 1e-6] = True
    cloudy = rng.random(n_n) < 0.25
    night_cloud = np.where(cloudy, rng.exponential(0.7, n_n), 0.0)
    night_seeing = spec.seeing_median * np.exp(rng.normal(0, spec.seeing_log_sigma * 0.8, n_n))
    # Seasons: hour angle of the field at local midnight.
    ha0 = (
        (fields["field_ra"].to_numpy()[None, :] - (sun_ra_deg(midnight)[:, None] + 180.0) + 180.0) % 360.0
    ) - 180.0
    visible = np.abs(ha0) < 110.0
    # Each field has its own revisit probability per night: most follow the survey's mean cadence (with
    # scheduling scatter), ~20% get a high-cadence programme (nightly, extra visits).
    frng = stream(cfg.seed, "cadence", "fields")
    high = frng.random(n_f) < 0.15
    p_night = np.where(high, 0.85, np.clip(frng.beta(4, 4, n_f) * 1.5 / spec.revisit_nights, 0.1, 1.0))
    cadence_ok = rng.random((n_n, n_f)) < p_night[None, :]
    observed = visible & cadence_ok & open_night[:, None]
    ni, fi = np.nonzero(observed)
    k = spec.visits_per_night
    n_obs = len(ni)
    # Transit time, clipped to the dark hours (~ +-4 h around local midnight).
    transit = midnight[ni] + ha0[ni, fi] / 360.0
    t1 = np.clip(
        transit + rng.normal(0, 0.08, n_obs), midnight[ni] - 0.17, midnight[ni] + 0.17 - spec.pair_gap_days
    )
    gap = spec.pair_gap_days * (1 + 0.3 * rng.random((n_obs, k)))
    gap[:, 0] = 0.0
    times = t1[:, None] + np.cumsum(gap, axis=1)
    if spec.name == "ztf":
        first_g = rng.random(n_obs) < 0.5
        bands = np.where(first_g[:, None], np.array([[0, 1]]), np.array([[1, 0]]))
        # High-cadence fields sometimes get a second pair of exposures a few hours later.
        extra = high[fi] & (rng.random(n_obs) < 0.25)
        if extra.any():
            ni = np.concatenate([ni, ni[extra]])
            fi = np.concatenate([fi, fi[extra]])
            later = np.clip(
                times[extra, -1] + rng.uniform(0.06, 0.12, extra.sum()), None, midnight[ni[n_obs:]] + 0.2
            )
            times = np.concatenate([times, later[:, None] + np.cumsum(gap[extra], axis=1)])
            bands = np.concatenate([bands, bands[extra]])
            n_obs = len(ni)
    else:
        w = np.asarray(spec.band_weights)
        b1 = rng.choice(len(w), n_obs, p=w)
        b2 = rng.choice(len(w), n_obs, p=w)
        b2 = np.where(b2 == b1, (b1 + 1 + rng.integers(0, len(w) - 1, n_obs)) % len(w), b2)
        bands = np.stack([b1, b2], axis=1)[:, :k]
    v = pd.DataFrame(
        {
            "field_index": np.repeat(fi, k).astype("int32"),
            "night_index": np.repeat(ni, k).astype("int32"),
            "mjd": times.ravel(),
            "band": bands.ravel().astype("int16"),
        }
    )
    # One exposure at a time: sort the night's visits and push overlapping ones later.
    v = v.sort_values(["night_index", "mjd"], kind="stable").reset_index(drop=True)
    slot = v.groupby("night_index").cumcount().to_numpy() * EXPOSURE_SLOT_DAYS
    v["mjd"] = (
        np.maximum.accumulate((v["mjd"] - slot).to_numpy() + v["night_index"].to_numpy() * 10.0)
        - v["night_index"].to_numpy() * 10.0
        + slot
    )
    n = len(v)
    nidx = v["night_index"].to_numpy()
    band = v["band"].to_numpy()
    fwhm = night_seeing[nidx] * np.exp(rng.normal(0, spec.seeing_log_sigma * 0.5, n))
    cloud = night_cloud[nidx] * rng.exponential(1.0, n)
    m5 = (
        np.asarray(spec.m5)[band]
        + rng.normal(0, spec.m5_scatter * 0.6, n)
        - cloud
        - 2.5 * np.log10(fwhm / spec.seeing_median)
    )
    # Rare very poor exposures (twilight, moon, thick clouds) give the low tail of the limit distribution.
    bad = rng.random(n) < 0.06
    m5 = np.where(bad, m5 - rng.uniform(0.8, 4.0, n), m5)
    v["maglim"] = np.minimum(m5, np.asarray(spec.m5)[band] + 0.4)  # good seeing cannot beat the template
    v["fwhm"] = fwhm
    if spec.name == "ztf":  # instrumental zero point: clouds and bad conditions lower the counts per flux
        v["zp"] = (
            np.asarray(spec.zeropoint)[band]
            - cloud
            - np.where(bad, rng.uniform(0, 2.5, n), 0.0)
            + rng.normal(0, 0.03, n)
        )
    else:  # LSST fluxes are calibrated nJy
        v["zp"] = np.asarray(spec.zeropoint)[band]
    v["night"] = night_label(v["mjd"].to_numpy(), spec.lon_deg)
    v["visit_seq"] = v.groupby("night_index").cumcount().astype("int32") + 1
    v["sky"] = 185.0 * np.exp(rng.normal(0, 0.45, n)) * (1 + cloud)  # ZTF science background [DN]
    # Calibration metadata of each exposure (ZTF packet fields; shared by every source on the exposure).
    v["magzpsciunc"] = np.exp(rng.normal(np.log(1.0e-5), 0.3, n))
    v["magzpscirms"] = np.exp(rng.normal(np.log(0.03), 0.2, n))
    v["nmatches"] = rng.integers(150, 1500, n).astype("int32")
    v["clrcoeff"] = np.where(band == 0, rng.normal(-0.03, 0.02, n), rng.normal(0.10, 0.02, n))
    v["clrcounc"] = np.exp(rng.normal(np.log(1.5e-5), 0.3, n))
    v["zpclrcov"] = -np.exp(rng.normal(np.log(1.0e-5), 0.3, n))
    v["clrmed"] = rng.normal(0.65, 0.05, n)
    v["clrrms"] = rng.normal(0.31, 0.02, n)
    v["scisigpix"] = np.sqrt(v["sky"].to_numpy() / 6.2 + 2.0)
    v["adpctdif1"] = np.exp(rng.normal(np.log(0.1), 0.2, n))
    v["adpctdif2"] = np.exp(rng.normal(np.log(0.1), 0.2, n))
    v = v.sort_values(["field_index", "mjd"], kind="stable").reset_index(drop=True)
    v.index.name = "epoch"
    return v


def rows_for_objects(field_index: np.ndarray, visits: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(object position, epoch index) for every visit of every object's field; sorted by object then time."""
    fi = visits["field_index"].to_numpy()
    n_fields = int(max(fi.max(initial=-1), field_index.max(initial=-1)) + 1)
    counts = np.bincount(fi, minlength=n_fields)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    c = counts[field_index]
    obj = np.repeat(np.arange(len(field_index)), c)
    offs = np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c)
    epoch = np.repeat(first[field_index], c) + offs
    return obj, epoch
