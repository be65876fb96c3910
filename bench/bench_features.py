"""Light-curve feature throughput, ours beside the ``light-curve`` package (Rust), in one run on this machine.

    python -m bench.bench_features [--objects 300] [--sizes 20 100 500]

Light curves are synthetic but ZTF-like: a g and an r exposure on nights about 2.5 days apart, seasonal gaps,
photometric errors growing with magnitude, and a mix of RR Lyrae-like periodic variables, supernova-like
transients (ALeRCE's SPM shape) and damped-random-walk AGN-like sources. ``N points`` counts both bands.
Everything runs on one core (numba kernels are serial; light-curve with ``n_jobs=1``); figures are light curves
per second per core and are only comparable within one run (the machine is shared and noisy).

Columns:
  full set            compute_features end to end (cleaning, layout, every kernel, the wide DataFrame)
  cleaning+layout     prepare() alone (shared by every feature family)
  basic kernels       our 26 variability statistics + 19 SN features on the prepared arrays
  light-curve basic   light-curve's extractors for the 19 statistics both packages define, same arrays
  basic ratio         our time / light-curve's time for the two rows above (lower is better for us)
  periodogram         our multiband periodogram features (grid, refinement, harmonic re-ranking, harmonic fit,
                      folded statistics, power rates)
  light-curve perio.  light-curve's multiband periodogram (best period only) on a grid of the same size
"""

from __future__ import annotations

import argparse
import time

import light_curve as lcpkg
import numpy as np
import pandas as pd

from alert_broker.features.lightcurve import compute_features, prepare, warm_up
from alert_broker.features.lightcurve.api import MIN_BAND_POINTS
from alert_broker.features.lightcurve.periodogram import (
    FMAX,
    FMIN,
    N_PEAKS,
    N_RANK,
    OFAC,
    POWER_RATE_FACTORS,
    period_batch,
)
from alert_broker.features.lightcurve.spm import spm_model
from alert_broker.features.lightcurve.supernova import sn_batch
from alert_broker.features.lightcurve.variability import SF_EDGES, basic_batch


def synthetic_batch(n_objects: int, n_points: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ZTF-like detections (and a few non-detections) of ``n_objects`` objects with ``n_points`` each."""
    rng = np.random.default_rng(seed)
    rows = []
    nd_rows = []
    for k in range(n_objects):
        # Visits every ~2.5 nights with a g and an r exposure each; 120-day gaps between 240-day seasons.
        n_nights = (n_points + 1) // 2
        nights = np.floor(np.cumsum(rng.exponential(2.5, n_nights)))
        nights = nights + (nights // 240) * 120.0
        t = 58300.0 + np.repeat(nights, 2)[:n_points] + np.tile([0.15, 0.19], n_nights)[:n_points]
        t = t + rng.uniform(0.0, 0.02, n_points)
        t = np.sort(t)
        fid = np.where(np.arange(n_points) % 2 == 0, 1, 2)
        kind = k % 3
        if kind == 0:  # RR Lyrae-like sawtooth
            period = rng.uniform(0.3, 0.8)
            ph = (t / period) % 1.0
            shape = np.where(ph < 0.15, ph / 0.15, 1.0 - (ph - 0.15) / 0.85)
            mag = 17.5 - 0.8 * shape + 0.15 * (fid == 2)
            sign = np.ones(n_points)
        elif kind == 1:  # supernova-like in difference flux
            p = np.array([rng.uniform(0.05, 0.5), 10.0, rng.uniform(10, 40), 0.3, 3.0, 30.0])
            tt = t - t[0]
            flux = np.empty(n_points)
            spm_model(tt, p, flux, np.empty((1, 6)), False)
            flux = np.maximum(flux, 0.002)
            mag = -2.5 * np.log10(flux * 1e-26) - 48.6 + 0.2 * (fid == 2)
            sign = np.ones(n_points)
        else:  # damped random walk
            tau, sig = rng.uniform(20, 200), 0.2
            mag = np.empty(n_points)
            mag[0] = 0.0
            for i in range(1, n_points):
                phi = np.exp(-(t[i] - t[i - 1]) / tau)
                mag[i] = phi * mag[i - 1] + sig * np.sqrt(1 - phi * phi) * rng.normal()
            mag = 18.5 + mag + 0.3 * (fid == 2)
            sign = np.where(rng.random(n_points) < 0.8, 1.0, -1.0)
        err = 0.015 + 0.05 * 10 ** (0.4 * (mag - 19.0))
        err = np.clip(err, 0.01, 0.5)
        mag = mag + rng.normal(0, 1, n_points) * err
        oid = f"ZTFbench{k:06d}"
        rows.append(
            pd.DataFrame(
                {
                    "oid": oid,
                    "candid": np.arange(n_points, dtype=np.int64) + k * 10_000,
                    "mjd": t,
                    "fid": fid.astype(np.int16),
                    "magpsf": mag,
                    "sigmapsf": err,
                    "isdiffpos": sign.astype(np.int8),
                    "rb": rng.uniform(0.6, 1.0, n_points),
                    "sgscore1": 0.5,
                    "ra": 150.0 + 1e-5 * rng.normal(size=n_points),
                    "dec": 2.0 + 1e-5 * rng.normal(size=n_points),
                }
            )
        )
        nt = np.sort(t[0] - rng.uniform(1, 60, 5))
        nd_rows.append(pd.DataFrame({"oid": oid, "fid": [1, 2, 1, 2, 1], "mjd": nt, "diffmaglim": 20.5}))
    return pd.concat(rows, ignore_index=True), pd.concat(nd_rows, ignore_index=True)


def _best_of(fn, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def _lc_basic_extractor() -> lcpkg.Extractor:
    """light-curve's counterparts of our per-band basic statistics (see docs/features.md for the mapping)."""
    return lcpkg.Extractor(
        lcpkg.Amplitude(),
        lcpkg.AndersonDarlingNormal(),
        lcpkg.BeyondNStd(1.0),
        lcpkg.Eta(),
        lcpkg.EtaE(),
        lcpkg.ExcessVariance(),
        lcpkg.InterPercentileRange(0.25),
        lcpkg.Kurtosis(),
        lcpkg.LinearTrend(),
        lcpkg.MaximumSlope(),
        lcpkg.Mean(),
        lcpkg.MeanVariance(),
        lcpkg.MedianAbsoluteDeviation(),
        lcpkg.MedianBufferRangePercentage(0.1),
        lcpkg.PercentAmplitude(),
        lcpkg.Skew(),
        lcpkg.StandardDeviation(),
        lcpkg.StetsonK(),
        lcpkg.Chi2Pvar(),
    )


def run(n_objects: int, sizes: list[int], repeat: int) -> list[dict]:
    warm_up()
    results = []
    lc_basic = _lc_basic_extractor()
    for n in sizes:
        det, nd = synthetic_batch(n_objects, n, seed=n)
        batch = prepare(det, nd)
        nobj = batch.n_objects
        compute_features(det.head(4 * n), nd)  # same code path once more, so nothing is compiled below

        t_full = _best_of(lambda det=det, nd=nd: compute_features(det, nd), repeat)
        t_prep = _best_of(lambda det=det, nd=nd: prepare(det, nd), repeat)

        def ours_basic(b=batch):
            basic_batch(b.t, b.mag, b.err, b.seg_off, MIN_BAND_POINTS, SF_EDGES)
            sn_batch(b.t, b.mag, b.sign, b.seg_off, b.nd_t, b.nd_lim, b.nd_off)

        t_basic = _best_of(ours_basic, repeat)

        per_band = []
        for s in range(batch.seg_off.size - 1):
            a, e = batch.seg_off[s], batch.seg_off[s + 1]
            if e - a >= MIN_BAND_POINTS:
                per_band.append((batch.t[a:e], batch.mag[a:e], batch.err[a:e]))
        t_lc_basic = _best_of(lambda pb=per_band: lc_basic.many(pb, n_jobs=1), repeat)

        b = batch
        t_period = _best_of(
            lambda b=b: period_batch(
                b.t,
                b.mag,
                b.err,
                b.seg_off,
                MIN_BAND_POINTS,
                OFAC,
                FMIN,
                FMAX,
                N_PEAKS,
                N_RANK,
                POWER_RATE_FACTORS,
            ),
            repeat,
        )
        names = np.array(["g", "r"])
        lcs = []
        for o in range(nobj):
            a, e = b.seg_off[2 * o], b.seg_off[2 * o + 2]
            band = names[(np.arange(a, e) >= b.seg_off[2 * o + 1]).astype(int)]
            order = np.argsort(b.t[a:e], kind="stable")
            lcs.append((b.t[a:e][order], b.mag[a:e][order], b.err[a:e][order], band[order]))

        # light-curve's multiband periodogram on our grid for the median time span (same number of frequencies).
        span = float(np.median([lc_[0][-1] - lc_[0][0] for lc_ in lcs]))
        df = 1e-3 / max(1, int(np.ceil(1e-3 * OFAC * span)))
        lc_period = lcpkg.Periodogram(
            peaks=1, bands=["g", "r"], fast=False, freqs=2 * np.pi * np.arange(FMIN, FMAX, df)
        )

        def lc_periods(lcs=lcs, lc_period=lc_period):
            for t, m, s, band in lcs:
                lc_period(t, m, s, band=band)

        t_lc_period = _best_of(lc_periods, repeat)
        results.append(
            {
                "N points": n,
                "objects": nobj,
                "full set": nobj / t_full,
                "cleaning+layout": nobj / t_prep,
                "basic kernels": nobj / t_basic,
                "light-curve basic": nobj / t_lc_basic,
                "basic ratio": t_basic / t_lc_basic,
                "periodogram": nobj / t_period,
                "light-curve periodogram": nobj / t_lc_period,
                "periodogram ratio": t_period / t_lc_period,
            }
        )
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=200, help="light curves per size")
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 100, 500])
    ap.add_argument("--repeat", type=int, default=3, help="best of this many timings")
    args = ap.parse_args(argv)
    rows = run(args.objects, args.sizes, args.repeat)
    table = pd.DataFrame(rows).set_index("N points")
    print(
        "light curves / s / core, N points over g + r; ratios = our time / light-curve's time (< 1: we are faster)"
    )
    with pd.option_context("display.float_format", "{:,.1f}".format, "display.width", 160):
        print(table.to_string())


if __name__ == "__main__":
    main()
