"""Model-free supernova light-curve shapes: real ZTF supernovae against the simulator's, measured the same way.

Why: the light-curve classifier learns SN subtypes from simulated light curves. If the simulated SNe Ia fade more
slowly than real ones, a real SN Ia's decline looks like a simulated SN Ibc's and the classifier calls it one (the
BTS SNe Ia called SNIbc, docs/classifiers.md). The features themselves mix shape with cadence and window, so this
compares a few numbers any astronomer reads off a light curve, with one estimator for both sides
(:func:`shape_statistics`), and the simulated SNe observed like the real ones (as bright as the BTS sample,
sparse epochs, photometric noise) so that the estimator's own biases (the brightest point of a noisy curve is
brighter than the peak) fall on both sides alike. docs/simulator.md, "SN Ia decline", has the table.

Run::

    python -m bench.sn_shapes --data ../shared/data
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from alert_broker.simulator import lightcurves as lc
from alert_broker.simulator.config import WAVELENGTH_NM, ZTF
from alert_broker.simulator.population import draw_transients

#: The statistics, in the order printed: g-r at the r-band peak and 15 / 30 d after it; r fading 15 / 30 d after
#: its peak; g fading 15 d after its own peak; time from half the r peak flux to the peak and from the peak back
#: to half (days, observer frame).
STATISTICS: tuple[str, ...] = (
    "gr_peak",
    "gr_p15",
    "gr_p30",
    "dm15_r",
    "dm30_r",
    "dm15_g",
    "rise_half",
    "fall_half",
)
#: Peak r magnitude of the BTS sample's faint end (bts.csv: peakmag <= 19.07, median 18.1): simulated SNe are
#: compared when at least this bright, so that redshifts (time dilation) and sampling depth match.
BTS_BRIGHT = 18.7


def _interp(t: np.ndarray, m: np.ndarray, at: float, max_gap: float) -> float:
    """Linear interpolation of a sorted light curve at ``at``; NaN outside it or across a gap > ``max_gap``."""
    j = int(np.searchsorted(t, at))
    if j == 0 or j >= len(t) or t[j] - t[j - 1] > max_gap:
        return np.nan
    return float(np.interp(at, t, m))


def _half_crossing(t: np.ndarray, flux: np.ndarray, k: int, before: bool, max_gap: float) -> float:
    """Days between the peak (index k) and the nearest crossing of half its flux before / after it."""
    idx = np.flatnonzero(flux[:k] < 0.5) if before else k + np.flatnonzero(flux[k:] < 0.5)
    if not len(idx):
        return np.nan
    # the crossing lies between a point under half the peak (lo) and its neighbour towards the peak (hi)
    lo = idx[-1] if before else idx[0]
    hi = lo + 1 if before else lo - 1
    if abs(t[hi] - t[lo]) > max_gap:
        return np.nan
    return float(abs(t[k] - np.interp(0.5, [flux[lo], flux[hi]], [t[lo], t[hi]])))


def shape_statistics(mjd: np.ndarray, mag: np.ndarray, fid: np.ndarray, max_gap: float = 12.0) -> dict | None:
    """:data:`STATISTICS` of one SN light curve (difference magnitudes, fid 1 = g, 2 = r); None when r has fewer
    than 4 points or g fewer than 3, or the r peak is its first or last point (not bracketed). A statistic whose
    epoch falls outside the curve or across a gap longer than ``max_gap`` days is NaN."""
    mjd, mag, fid = (np.asarray(a) for a in (mjd, mag, fid))
    r, g = fid == 2, fid == 1
    if r.sum() < 4 or g.sum() < 3:
        return None
    o = np.argsort(mjd[r])
    tr, mr = mjd[r][o], mag[r][o]
    o = np.argsort(mjd[g])
    tg, mg = mjd[g][o], mag[g][o]
    k = int(np.argmin(mr))
    if k == 0 or k == len(tr) - 1:
        return None
    tp, mp = tr[k], mr[k]
    kg = int(np.argmin(mg))

    def colour(days: float) -> float:
        return _interp(tg, mg, tp + days, max_gap) - _interp(tr, mr, tp + days, max_gap)

    flux = 10 ** (-0.4 * (mr - mp))
    return {
        "gr_peak": colour(0.0),
        "gr_p15": colour(15.0),
        "gr_p30": colour(30.0),
        "dm15_r": _interp(tr, mr, tp + 15.0, max_gap) - mp,
        "dm30_r": _interp(tr, mr, tp + 30.0, max_gap) - mp,
        "dm15_g": _interp(tg, mg, tg[kg] + 15.0, max_gap) - mg[kg],
        "rise_half": _half_crossing(tr, flux, k, True, max_gap * 2 / 3),
        "fall_half": _half_crossing(tr, flux, k, False, max_gap),
    }


def _rows(frame: pd.DataFrame, labels: pd.Series, source: str) -> list[dict]:
    out = []
    for oid, lc_ in frame.groupby("oid", sort=False):
        s = shape_statistics(lc_["mjd"].to_numpy(), lc_["magpsf"].to_numpy(), lc_["fid"].to_numpy())
        if s is not None:
            out.append({"source": source, "class": labels.get(oid), **s})
    return out


def real_shapes(root: str | Path, bts_limit: int | None = None) -> pd.DataFrame:
    """Statistics of the BTS SNe Ia and of ALeRCE's 30 spectroscopic SNe (their classes), one row per SN."""
    from alert_broker.classifiers.real_sets import ALERCE_DIR, _alerce_csv_tables, bts_light_curves

    root = Path(root)
    bts_det, meta = bts_light_curves(root, bts_limit)
    rows = _rows(bts_det, pd.Series("SNIa", index=meta.index), "BTS")
    det, _ = _alerce_csv_tables(root, "30_sne")
    labels = pd.read_csv(root / ALERCE_DIR / "30_sne_labels.csv").set_index("objectId")["classALeRCE"]
    rows += _rows(det, labels, "ALeRCE SNe")
    return pd.DataFrame(rows)


def simulated_shapes(
    cls: str,
    n: int = 300,
    seed: int = 1,
    bright: float | None = BTS_BRIGHT,
    epochs: int = 55,
) -> pd.DataFrame:
    """Statistics of ``n`` simulated SNe of ``cls`` (ZTF population, peak r brighter than ``bright`` when given),
    each observed at ``epochs`` random times per band over -40..120 d from peak with ZTF-like errors (0.03 mag
    at r = 19, growing with the flux error) down to r, g = 20.3."""
    rng = np.random.default_rng(seed)
    draws = []
    while sum(len(d) for d in draws) < n:  # bright SNe are rare in a volume-limited population
        d = draw_transients(cls, 20 * n, rng, ZTF)
        draws.append(d[d["peak_mag"] < bright] if bright is not None else d)
    d = pd.concat(draws).iloc[:n]
    lam = np.array([WAVELENGTH_NM["g"], WAVELENGTH_NM["r"]])
    col = {c: d[c].to_numpy() for c in d.columns}
    t0, fpk = lc.sn_shape_params(
        col["tau_rise"], col["tau_fall"], col["plateau_days"], col["plateau_slope"], col["peak_mjd"], lam,
        col["fall_chroma"], col["plateau_chroma"],
    )  # fmt: skip
    rows = []
    for i in range(len(d)):
        times = [np.sort(rng.uniform(-40, 120, epochs)) for _ in lam]
        t = np.concatenate(times)
        fid = np.repeat([1, 2], [len(x) for x in times])
        j = fid - 1
        m = lc.sn_mag(
            t, lam[j], t0[i], fpk[i, j], col["peak_mag"][i], col["color_gr"][i], col["tau_rise"][i],
            col["tau_fall"][i], col["plateau_days"][i], col["plateau_slope"][i], col["fall_chroma"][i],
            col["plateau_chroma"][i],
        )  # fmt: skip
        seen = m < 20.3
        t, m, fid = t[seen], m[seen], fid[seen]
        m = m + rng.normal(0.0, 1.0, len(m)) * (0.03 + 0.05 * np.clip(10 ** (0.4 * (m - 19.0)), 0, 3))
        s = shape_statistics(t, m, fid)
        if s is not None:
            rows.append({"source": "simulation", "class": cls, **s})
    return pd.DataFrame(rows)


def table(real: pd.DataFrame, simulated: pd.DataFrame) -> pd.DataFrame:
    """Median of each statistic per (source, class), with the number of SNe measured (n)."""
    both = pd.concat([real, simulated], ignore_index=True)
    med = both.groupby(["source", "class"])[list(STATISTICS)].median()
    return med.assign(n=both.groupby(["source", "class"]).size())


def quantiles(frame: pd.DataFrame, column: str = "gr_peak", min_n: int = 20) -> pd.DataFrame:
    """Quantiles (10 ... 95 %) of one statistic per (source, class) with at least ``min_n`` values: the red tail
    of g-r at peak is what host-galaxy dust adds (population.SN_HOST_EBV)."""
    q = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
    groups = frame.dropna(subset=[column]).groupby(["source", "class"])[column]
    out = groups.quantile(list(q)).unstack()
    out.columns = [f"{int(100 * c)}%" for c in out.columns]
    return out[groups.size().reindex(out.index) >= min_n]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data", help="the shared data folder")
    ap.add_argument("--n", type=int, default=600, help="simulated SNe per class")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    real = real_shapes(args.data)
    sim = pd.concat(
        [simulated_shapes(c, args.n, args.seed) for c in ("SNIa", "SNIbc", "SNII", "SLSN")], ignore_index=True
    )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table(real, sim).round(2).to_string())
        print("\ng-r at the r peak, quantiles")
        print(quantiles(pd.concat([real, sim], ignore_index=True)).round(2).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
