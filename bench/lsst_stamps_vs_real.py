"""Simulated LSST cutouts against the shared data's real Rubin alerts, measured by the same code.

The simulator's LSST cutouts are calibrated against these statistics (docs/simulator.md, "LSST cutouts
calibrated on real Rubin alerts"); this bench regenerates the comparison (a quantile table, and with ``--out``
a figure like docs/img/lsst_stamps_sim_vs_real.png, which was drawn at the calibration with the simulator before
it as a third side) so that a change to the simulator can be checked against real data:

- science noise [nJy] (1.4826 MAD of the ring outside the central 21x21), template / science and difference /
  science noise ratios, and the template noise's adjacent-pixel correlation (resampled templates: > 0);
- the science and template PSF FWHM from a Moffat fit to each cutout's PSF extension, and the template star
  FWHM from a Moffat + background fit in the image (central 19x19, templates with peak SNR > 50);
- the difference peak SNR (central 3x3 mean above the ring median / ring sigma) and the share of cutouts with
  NaN (masked) pixels.

Real: every alert of ``<data>/lsst/{v7_4,v9_0,v10_0}`` (decode_batch). Simulated: the first alert of each
object of ``SimConfig(survey="lsst", stamps=True)``. Noise and peak SNR are ``stamp_statistics``' (the stamp
classifier's own); the rest is numpy / scipy / astropy here.

    python -m bench.lsst_stamps_vs_real [--data ../shared/data] [--objects 10000] [--nights 2] [--seed 5]
                                        [--out lsst_stamps.png]
"""

from __future__ import annotations

import argparse
import io
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from scipy.optimize import curve_fit

from alert_broker.classifiers.stamp.cutouts import decode_cutouts
from alert_broker.classifiers.stamp.lsst_real import load_real_lsst_alerts
from alert_broker.classifiers.stamp.stampstats import stamp_statistics
from alert_broker.simulator import SimConfig, iter_alerts
from alert_broker.surveys.decode import decode_batch
from alert_broker.surveys.messages import RawMessage

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: column, label, x scale and x limits of its figure panel
STATS: tuple[tuple[str, str, str, tuple[float, float]], ...] = (
    ("sci_noise", "science noise [nJy]\n(1.4826 MAD of the outer ring)", "log", (10, 300)),
    ("tpl_sci_noise", "template noise / science noise", "linear", (0, 0.6)),
    ("diff_sci_noise", "difference noise / science noise", "linear", (0.5, 1.3)),
    ("tpl_corr", "template noise: adjacent-pixel correlation", "linear", (-0.2, 1)),
    ("sci_psf_fwhm", "science PSF FWHM [px]\n(Moffat fit to PSF extension)", "linear", (2, 12)),
    ("tpl_psf_fwhm", "template PSF FWHM [px]\n(Moffat fit to PSF extension)", "linear", (2, 12)),
    ("tpl_star_fwhm", "template star FWHM [px]\n(Moffat fit in image, peak SNR>50)", "linear", (2, 7)),
    ("diff_peak_snr", "difference peak SNR\n(central 3x3 mean / ring sigma)", "symlog", (-60, 600)),
)
STYLE = {"real": {"color": "black", "lw": 1.8}, "simulator": {"color": "tab:orange", "lw": 1.8}}


def real_stamps(data: Path) -> pd.DataFrame:
    """The `stamps` rows of every real LSST alert of the shared data."""
    _, stamps = load_real_lsst_alerts(data)
    return stamps.reset_index(drop=True)


def simulated_stamps(objects: int, nights: int, seed: int) -> pd.DataFrame:
    """The `stamps` rows of the first alert of each simulated LSST object (in the decoded alerts' order)."""
    cfg = SimConfig(survey="lsst", nights=nights, objects=objects, seed=seed, stamps=True)
    msgs = [RawMessage("sim", 0, i, a.payload) for i, a in enumerate(iter_alerts(cfg))]
    tables, dead, _ = decode_batch(msgs, "sim")
    if dead:
        raise ValueError(f"{len(dead)} simulated alerts failed to decode: {dead[0].reason}")
    first = tables.alerts.drop_duplicates("oid")["candid"]
    return tables.stamps.set_index("candid").loc[first].reset_index()


def _moffat(
    xy: tuple[np.ndarray, np.ndarray],
    amp: float,
    x0: float,
    y0: float,
    alpha: float,
    beta: float,
    bkg: float = 0.0,
) -> np.ndarray:
    """A circular Moffat profile plus a constant (left at 0 when a fit has five parameters)."""
    x, y = xy
    return amp * (1 + ((x - x0) ** 2 + (y - y0) ** 2) / alpha**2) ** (-beta) + bkg


def _fwhm(alpha: float, beta: float) -> float:
    return float(2 * alpha * np.sqrt(2 ** (1 / beta) - 1))


def psf_fwhm(psf: np.ndarray | None) -> float:
    """FWHM [px] of a Moffat fitted to a PSF image (peak-normalised, no background); NaN if it fails."""
    if psf is None or not np.isfinite(psf).all() or psf.max() <= 0:
        return np.nan
    p = psf / psf.max()
    yy, xx = np.mgrid[: p.shape[0], : p.shape[1]]
    cy, cx = np.unravel_index(p.argmax(), p.shape)
    try:
        lo, hi = [0, 0, 0, 0.3, 1.01], [2, 99, 99, 50, 50]
        q, _ = curve_fit(
            _moffat, (xx.ravel(), yy.ravel()), p.ravel(), p0=[1, cx, cy, 3, 3], bounds=(lo, hi), maxfev=4000
        )
    except (RuntimeError, ValueError):
        return np.nan
    return _fwhm(q[3], q[4])


def source_fwhm(img: np.ndarray, half: int = 9) -> float:
    """FWHM [px] of a Moffat + background fitted to the central (2 half + 1)^2 pixels, its centre within 4 px
    of the cutout's; NaN when over 10 % of them are masked or the fit fails."""
    c = img.shape[0] // 2
    p = img[c - half : c + half + 1, c - half : c + half + 1].astype(float)
    ok = np.isfinite(p)
    if ok.mean() < 0.9:
        return np.nan
    yy, xx = np.mgrid[: p.shape[0], : p.shape[1]]
    amp = np.nanmax(np.abs(p[half - 3 : half + 4, half - 3 : half + 4]))
    lo, hi = [0, half - 4, half - 4, 0.3, 1.01, -np.inf], [np.inf, half + 4, half + 4, 30, 30, np.inf]
    try:
        q, _ = curve_fit(
            _moffat, (xx[ok], yy[ok]), p[ok], p0=[amp, half, half, 3, 3, 0], bounds=(lo, hi), maxfev=3000
        )
    except (RuntimeError, ValueError):
        return np.nan
    return _fwhm(q[3], q[4])


def adjacent_correlation(img: np.ndarray) -> float:
    """Mean correlation of horizontally and vertically adjacent background pixels (outside the central 21x21),
    after clipping the standardised pixels at +-4 sigma (sources)."""
    cy, cx = img.shape[0] // 2, img.shape[1] // 2
    ring = np.ones(img.shape, dtype=bool)
    ring[cy - 10 : cy + 11, cx - 10 : cx + 11] = False
    med = np.nanmedian(img[ring])
    a = np.clip((img - med) / (1.4826 * np.nanmedian(np.abs(img[ring] - med))), -4, 4)
    out = []
    for dy, dx in ((0, 1), (1, 0)):
        h, w = a.shape[0] - dy, a.shape[1] - dx
        both = ring[:h, :w] & ring[dy:, dx:]
        x, y = a[:h, :w][both], a[dy:, dx:][both]
        ok = np.isfinite(x) & np.isfinite(y)
        out.append(np.corrcoef(x[ok], y[ok])[0, 1])
    return float(np.mean(out))


def psf_extension(cutout: bytes | None) -> np.ndarray | None:
    """The PSFIMAGE extension of an LSST cutout (gzipped or plain FITS), or None."""
    if not isinstance(cutout, bytes | bytearray | memoryview):
        return None
    with fits.open(io.BytesIO(bytes(cutout)), memmap=False) as hdul:
        return np.asarray(hdul["PSFIMAGE"].data, dtype=float) if "PSFIMAGE" in hdul else None


def measure(stamps: pd.DataFrame) -> pd.DataFrame:
    """One row of statistics per `stamps` row (the columns of :data:`STATS`, and ``has_nan``)."""
    decoded = decode_cutouts(stamps)
    st = stamp_statistics(stamps, decoded).reset_index(drop=True)
    tpl = decoded["cutout_template"]
    star = st["ref_peak_snr"].to_numpy() > 50
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return pd.DataFrame(
            {
                "sci_noise": st["sci_bkg_sigma"],
                "tpl_sci_noise": st["ref_bkg_sigma"] / st["sci_bkg_sigma"],
                "diff_sci_noise": st["diff_bkg_sigma"] / st["sci_bkg_sigma"],
                "tpl_corr": [np.nan if x is None else adjacent_correlation(x.astype(float)) for x in tpl],
                "sci_psf_fwhm": [psf_fwhm(psf_extension(b)) for b in stamps["cutout_science"]],
                "tpl_psf_fwhm": [psf_fwhm(psf_extension(b)) for b in stamps["cutout_template"]],
                "tpl_star_fwhm": [source_fwhm(x) if s else np.nan for x, s in zip(tpl, star, strict=True)],
                "diff_peak_snr": st["diff_peak_snr"],
                "has_nan": st["nan_fraction"] > 0,
            }
        )


def quantile_table(sides: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Count and quantiles of every statistic's finite values, per side."""
    rows = []
    for col, label, _, _ in STATS:
        for side, m in sides.items():
            x = m[col].to_numpy(float)
            x = x[np.isfinite(x)]
            q = np.quantile(x, QUANTILES) if len(x) else [np.nan] * len(QUANTILES)
            rows.append([label.split("\n")[0], side, len(x), *np.round(q, 3)])
    return pd.DataFrame(rows, columns=["stat", "side", "n", *(f"q{round(100 * q):02d}" for q in QUANTILES)])


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's 95 % interval of a binomial share k / n."""
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return c - h, c + h


def plot(sides: dict[str, pd.DataFrame], path: Path, note: str) -> None:
    """The figure: one CDF panel per statistic, the NaN share with its interval, a legend."""
    import matplotlib  # lazy: only with --out, and the backend must be set before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    fig, axes = plt.subplots(2, 5, figsize=(14, 8), dpi=100)
    for ax, (col, label, scale, lim) in zip(axes.ravel(), STATS, strict=False):
        for side, m in sides.items():
            x = np.sort(m[col].to_numpy(float)[np.isfinite(m[col].to_numpy(float))])
            ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", **STYLE[side])
        if scale == "symlog":
            ax.set_xscale("symlog", linthresh=3)
            ax.axvspan(-3, 3, color="0.93", zorder=0)
            ticks = [-30, -3, 0, 3, 30, 300]
            ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=7)
        elif scale == "log":
            ax.set_xscale("log")
        ax.set_xlim(*lim)
        ax.set_ylim(0, 1)
        ax.set_xlabel(label, fontsize=9)
        ax.set_ylabel("cumulative share of cutouts", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        if col == "tpl_star_fwhm":
            n = " / ".join(str(m[col].notna().sum()) for m in sides.values())
            ax.text(
                0.97, 0.05, f"n = {n}\n(real / simulator)", transform=ax.transAxes, ha="right", fontsize=7
            )
    ax = axes.ravel()[len(STATS)]
    top = 6.0
    for i, (side, m) in enumerate(sides.items()):
        k, n = int(m["has_nan"].sum()), len(m)
        lo, hi = wilson(k, n)
        ax.bar(i, 100 * k / n, color=STYLE[side]["color"], edgecolor="0.4")
        ax.errorbar(
            i, 100 * k / n, yerr=[[100 * (k / n - lo)], [100 * (hi - k / n)]], color="tab:blue", capsize=4
        )
        ax.text(i, 100 * hi + 0.2, f"{k}/{n}", ha="center", fontsize=8)
        top = max(top, 130 * hi)
    ax.set_xticks(range(len(sides)), list(sides), fontsize=9)
    ax.set_ylabel("cutouts with NaN pixels [%]", fontsize=9)
    ax.set_xlabel("share of cutouts with NaN pixels\n(95% binomial interval)", fontsize=9)
    ax.set_ylim(0, top)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3, axis="y")
    ax = axes.ravel()[len(STATS) + 1]
    ax.axis("off")
    for side, m in sides.items():
        name = "real Rubin alerts" if side == "real" else "simulator"
        ax.plot([], [], label=f"{name} (n={len(m)})", **STYLE[side])
    ax.legend(loc="upper left", fontsize=9, frameon=False, title="cumulative distributions", title_fontsize=9)
    ax.text(0, 0.55, note, transform=ax.transAxes, va="top", fontsize=8.5)
    fig.suptitle(f"LSST cutouts: {len(sides['real'])} real alerts vs the simulator", fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data"), help="the shared data (holds lsst/)")
    p.add_argument("--objects", type=int, default=10_000)
    p.add_argument("--nights", type=int, default=2)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--out", type=Path, default=None, help="PNG path of the figure (default: no figure)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    sides = {
        "real": measure(real_stamps(args.data)),
        "simulator": measure(simulated_stamps(args.objects, args.nights, args.seed)),
    }
    with pd.option_context("display.width", 200):
        print(quantile_table(sides).to_string(index=False))
    print("\nshare of cutouts with NaN pixels (any of science / template / difference):")
    for side, m in sides.items():
        k, n = int(m["has_nan"].sum()), len(m)
        lo, hi = wilson(k, n)
        print(f"  {side}: {100 * k / n:.1f} % ({k}/{n}; 95 % interval {100 * lo:.1f}-{100 * hi:.1f} %)")
    if args.out is not None:
        note = (
            f"Simulated: survey lsst, {args.nights} nights,\n"
            f"{args.objects} objects, seed {args.seed}; first alert of\n"
            f"each object. Real: {len(sides['real'])} Rubin alerts\n(schemas v7.4, v9.0, v10.0).\n"
            "All measured by the same code.\nShaded in the SNR panel: |SNR| < 3."
        )
        plot(sides, args.out, note)
        print(f"figure: {args.out}")
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
