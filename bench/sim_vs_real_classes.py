"""Per-class distributions of simulated against real objects: stamp statistics and light-curve features.

Why: a classifier trained on simulated objects transfers to the sky only where a feature means the same on both.
Where the same class differs systematically between simulation and real data, either the simulator misses
something (fix the simulator) or the feature/real data has a quirk (ALeRCE's older feature code, a real set's
selection, its light curves being SDSS's and not ZTF's: fix or mask the feature). This module puts the two side
by side for each class so that the difference, and the change it justifies, can be seen (docs/simulator.md,
"Real data in the simulator").

Two areas:

- stamps: the cutout statistics of ``classifiers.stamp.stampstats`` and raw alert metadata, per stamp class, of
  simulated first alerts (``dataset.build_stamp_set``, the second stage's seed) against ALeRCE's 51 labelled
  stamps and the SIMBAD-labelled alerts (weak labels). No CNN is needed: the statistics are what
  ``dataset.to_stamp_set`` puts in the frame, measured the same way on both sides;
- light curves: lc-features (``features.lightcurve``) per taxonomy class, of a simulated training set built as
  lc_hierarchical 1.2.0's (``training.build_training_set``, 20 nights, the history store's 30-day window) against
  the real sets of ``classifiers.real_sets`` (our features from real light curves, or ALeRCE's own vectors).

``compare`` is a pure function over frames (medians, inter-quartile-range shift, two-sample KS statistic);
loading and plotting are separate. Run::

    python -m bench.sim_vs_real_classes --data ../shared/data --objects 5000 --out docs/img
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from alert_broker.classifiers.hierarchical import SENTINEL

#: Stamp statistics shown (rows of the stamp figure): PSF widths, noise, template source, dipole, trail,
#: brightness, and the PS1 neighbour and history fields the second stage reads.
STAMP_COLUMNS: tuple[str, ...] = (
    "sci_fwhm",
    "ref_fwhm",
    "diff_fwhm",
    "diff_sci_bkg_ratio",
    "ref_concentration",
    "ref_peak_snr",
    "diff_neg_ratio",
    "diff_elongation",
    "sci_peak_snr",
    "sgscore1",
    "distpsnr1",
    "ndethist",
)
STAMP_LOG: frozenset[str] = frozenset(
    {"ref_peak_snr", "sci_peak_snr", "distpsnr1", "ndethist", "diff_neg_ratio"}
)
STAMP_CLASS_ORDER: tuple[str, ...] = ("SN", "AGN", "VS", "asteroid", "bogus")

#: Light-curve features shown (rows of the light-curve figure; _2 = ZTF r): period, amplitude, variability,
#: colour, the rise of a transient, and the sampling (detections, time span) that the real sets' selection sets.
LC_COLUMNS: tuple[str, ...] = (
    "Multiband_period",
    "Amplitude_2",
    "ExcessVar_2",
    "Meanvariance_2",
    "g-r_mean",
    "delta_mag_fid_2",
    "SPM_tau_rise_2",
    "n_det_2",
    "delta_mjd_fid_2",
)
LC_LOG: frozenset[str] = frozenset(
    {"Multiband_period", "Amplitude_2", "ExcessVar_2", "Meanvariance_2", "SPM_tau_rise_2", "n_det_2",
     "delta_mjd_fid_2"}
)  # fmt: skip
#: Real light-curve sets whose features our code computed from light curves, vs ALeRCE's own feature vectors.
OWN_FEATURE_SETS = ("alerce_sne", "alerce_periodic", "bts", "simbad", "s82_rrlyrae")
ALERCE_VECTOR_SETS = ("alerce_labelled", "alerce_features")
#: Real objects a class needs to be drawn in the light-curve figure.
MIN_REAL_LC = 5
#: Below this many real values of one source in a panel, they are drawn as points, not a histogram.
POINTS_BELOW = 10


# -- comparison (pure) -------------------------------------------------------------------------------------
def _finite(values: pd.Series, log: bool) -> np.ndarray:
    """Finite values (log10 of the positive ones when ``log``)."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    v = v[np.isfinite(v)]
    if log:
        v = np.log10(v[v > 0])
    return v


def compare(
    sim: pd.DataFrame,
    real: pd.DataFrame,
    by: str = "class",
    columns: Sequence[str] = (),
    *,
    log_columns: Sequence[str] = (),
    min_n: int = 3,
) -> pd.DataFrame:
    """Per (class, statistic): simulated and real medians, counts, the shift of the real median from the simulated
    one in units of the simulated inter-quartile range, and the two-sample Kolmogorov-Smirnov statistic.

    Why both: KS (0..1) says *whether* the distributions differ, whatever the shape; the IQR shift says *how far
    and which way* the real class sits, in the simulation's own spread. ``log_columns`` are compared in log10
    (their non-positive values dropped: periods, amplitudes, counts span decades and a linear IQR would be set
    by the tail). Non-finite values (NaN, the -999 sentinel turned NaN by the loaders) are left out.

    A class on one side only is reported with ``status`` "no real" or "no sim" (numbers NaN); fewer than
    ``min_n`` finite values on either side gives medians but no shift or KS ("too few"). Means are tabled too
    (geometric for log columns; for a +1/-1 flag such as isdiffpos the mean gives the share of each)."""
    logs = set(log_columns)
    classes = list(dict.fromkeys([*sim[by].dropna().tolist(), *real[by].dropna().tolist()]))
    rows = []
    for cls in classes:
        s_rows, r_rows = sim[sim[by] == cls], real[real[by] == cls]
        for col in columns:
            rec: dict = {by: cls, "statistic": col, "log": col in logs}
            s = _finite(s_rows[col], col in logs) if col in s_rows else np.array([])
            r = _finite(r_rows[col], col in logs) if col in r_rows else np.array([])
            rec.update(n_sim=len(s), n_real=len(r))
            back = (lambda x: 10.0**x) if col in logs else (lambda x: x)
            rec["sim_median"] = float(back(np.median(s))) if len(s) else np.nan
            rec["real_median"] = float(back(np.median(r))) if len(r) else np.nan
            rec["sim_mean"] = float(back(np.mean(s))) if len(s) else np.nan
            rec["real_mean"] = float(back(np.mean(r))) if len(r) else np.nan
            rec["sim_iqr"] = float(np.subtract(*np.percentile(s, [75, 25]))) if len(s) else np.nan
            rec["shift_iqr"], rec["ks"], rec["ks_p"] = np.nan, np.nan, np.nan
            if len(r_rows) == 0 or len(r) == 0:
                rec["status"] = "no real"
            elif len(s_rows) == 0 or len(s) == 0:
                rec["status"] = "no sim"
            elif len(s) < min_n or len(r) < min_n:
                rec["status"] = "too few"
            else:
                rec["status"] = "ok"
                diff = float(np.median(r) - np.median(s))
                rec["shift_iqr"] = diff / rec["sim_iqr"] if rec["sim_iqr"] > 0 else np.nan
                ks = ks_2samp(s, r)
                rec["ks"], rec["ks_p"] = float(ks.statistic), float(ks.pvalue)
            rows.append(rec)
    cols = [by, "statistic", "n_sim", "n_real", "sim_median", "real_median", "sim_iqr", "shift_iqr", "ks"]
    return pd.DataFrame(rows, columns=[*cols, "ks_p", "sim_mean", "real_mean", "log", "status"])


def largest_differences(table: pd.DataFrame, min_real: int = 5, top: int = 20) -> pd.DataFrame:
    """The rows with the largest KS statistic among those with at least ``min_real`` real values."""
    ok = table[(table["status"] == "ok") & (table["n_real"] >= min_real)]
    return ok.sort_values("ks", ascending=False).head(top).reset_index(drop=True)


# -- loading -----------------------------------------------------------------------------------------------
def _with_bkg_ratio(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``diff_sci_bkg_ratio``: difference-image noise over science-image noise (unit-free, unlike either)."""
    out = frame.copy()
    sci = out["sci_bkg_sigma"].where(out["sci_bkg_sigma"] > 0)
    out["diff_sci_bkg_ratio"] = out["diff_bkg_sigma"] / sci
    return out


def _stamp_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Stamp statistics (already in a ``to_stamp_set`` frame) and raw metadata as the second stage sees them."""
    from alert_broker.classifiers.stamp.stacker import raw_metadata
    from alert_broker.classifiers.stamp.stampstats import STAT_COLUMNS

    md = raw_metadata(frame).reset_index(drop=True)
    # ndethist unclipped (raw_metadata clips it to the CNN's range, 20): the history's length is the point here
    nd = pd.to_numeric(frame.get("ndethist", pd.Series(np.nan, index=frame.index)), errors="coerce")
    md["ndethist"] = nd.reset_index(drop=True).where(lambda v: v >= 0)
    stats = frame[list(STAT_COLUMNS)].reset_index(drop=True)
    out = pd.concat([stats, md[["sgscore1", "distpsnr1", "ndethist", "isdiffpos"]]], axis=1)
    out["class"] = frame["class"].astype(str).to_numpy()
    return _with_bkg_ratio(out)


def simulated_stamps(seed: int = 1, n_per_class: int = 300) -> pd.DataFrame:
    """Simulated first alerts, ``n_per_class`` per stamp class, from the second stage's seed (``seed + 500``)."""
    from alert_broker.classifiers.stamp.dataset import build_stamp_set

    data = build_stamp_set(seed + 500, n_per_class)
    return _stamp_rows(data.frame).assign(source="simulation")


def real_stamps(shared_data: str | Path) -> pd.DataFrame:
    """ALeRCE's labelled stamps (source "alerce") and the SIMBAD-labelled alerts ("simbad", weak labels),
    measured with the same ``to_stamp_set`` as the simulation (alerts without three readable cutouts dropped)."""
    from alert_broker.classifiers.stamp.dataset import to_stamp_set
    from alert_broker.classifiers.stamp.evaluate import load_real_stamps, load_simbad_stamps

    parts = []
    for source, loader in (("alerce", load_real_stamps), ("simbad", load_simbad_stamps)):
        alerts, stamps = loader(shared_data)
        data = to_stamp_set(alerts, stamps.drop_duplicates("candid"))
        parts.append(_stamp_rows(data.frame).assign(source=source))
    return pd.concat(parts, ignore_index=True)


def _sentinel_to_nan(features: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns with the model's -999 sentinel ("cannot be computed") as NaN, so it is not compared."""
    out = features.copy()
    num = out.select_dtypes("number").columns
    out[num] = out[num].where(out[num] != SENTINEL)
    return out


def simulated_light_curves(n_objects: int = 5000, nights: int = 20, seed: int = 1) -> pd.DataFrame:
    """Features of a simulated ZTF training set as lc_hierarchical 1.2.0's (20 nights, the history store's
    30-day non-detection window), with ``class``; the -999 sentinel as NaN."""
    from alert_broker.classifiers.training import ALERT_HISTORY_DAYS, build_training_set

    feats, labels = build_training_set(n_objects, nights, seed, history_store_window=ALERT_HISTORY_DAYS)
    out = _sentinel_to_nan(feats.drop(columns=["FEATURE_VERSION"], errors="ignore"))
    return out.assign(**{"class": labels.astype(str).to_numpy(), "source": "simulation"})


def real_light_curves(shared_data: str | Path) -> pd.DataFrame:
    """Every real set's features with ``class``, ``set`` and ``source``: "our features" (our code on real light
    curves) or "ALeRCE vectors" (ALeRCE's older feature code, renamed); an object in two sets of one source is
    kept once."""
    from alert_broker.classifiers.real_sets import load_real_set

    parts = []
    for name in (*OWN_FEATURE_SETS, *ALERCE_VECTOR_SETS):
        feats, labels = load_real_set(name, shared_data)
        source = "our features" if name in OWN_FEATURE_SETS else "ALeRCE vectors"
        f = _sentinel_to_nan(feats.drop(columns=["FEATURE_VERSION"], errors="ignore"))
        f = f.copy().assign(**{"class": labels.astype(str).to_numpy(), "set": name, "source": source})
        parts.append(f.rename_axis("oid").reset_index())
    real = pd.concat(parts, ignore_index=True)
    return real.drop_duplicates(["oid", "source"], keep="first").reset_index(drop=True)


# -- plotting ----------------------------------------------------------------------------------------------
_REAL_STYLE = {
    "alerce": ("tab:blue", "o", "ALeRCE labelled stamps"),
    "simbad": ("tab:orange", "s", "SIMBAD-labelled alerts (weak labels)"),
    "our features": ("tab:blue", "o", "real, our features from real light curves"),
    "ALeRCE vectors": ("tab:orange", "s", "real, ALeRCE's feature vectors (older code)"),
}


def _limits(values: np.ndarray) -> tuple[float, float]:
    """The 1-99 % range of a row's pooled values (extreme tails clipped to the edges), never empty."""
    if len(values) == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [1, 99])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.03 * (hi - lo)
    return float(lo - pad), float(hi + pad)


def plot_grid(
    sim: pd.DataFrame,
    real: pd.DataFrame,
    columns: Sequence[str],
    classes: Sequence[str],
    path: str | Path,
    *,
    by: str = "class",
    log_columns: Sequence[str] = (),
    table: pd.DataFrame | None = None,
    title: str = "",
) -> Path:
    """Rows = statistics, columns = classes: the simulated distribution (grey, density) against the real values
    per real source (step histograms, or points along the bottom where a source has < POINTS_BELOW of them).
    Values outside a row's pooled 1-99 % range are clipped to its edges; log columns are drawn in log10."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    logs = set(log_columns)
    sources = [s for s in _REAL_STYLE if s in set(real["source"])]
    fig, axes = plt.subplots(
        len(columns),
        len(classes),
        figsize=(2.1 * len(classes) + 1.0, 1.55 * len(columns) + 1.2),
        squeeze=False,
    )
    rng = np.random.default_rng(0)
    for i, col in enumerate(columns):
        log = col in logs
        pooled = np.concatenate(
            [
                _finite(sim.loc[sim[by].isin(classes), col], log),
                _finite(real.loc[real[by].isin(classes), col], log),
            ]
        )
        lo, hi = _limits(pooled)
        bins = np.linspace(lo, hi, 31)
        for j, cls in enumerate(classes):
            ax = axes[i, j]
            s = np.clip(_finite(sim.loc[sim[by] == cls, col], log), lo, hi)
            if len(s):
                ax.hist(s, bins=bins, density=True, color="0.75", edgecolor="0.6", linewidth=0.4)
            r_cls = real[real[by] == cls]
            n_real = len(_finite(r_cls[col], log))
            top = [np.histogram(s, bins=bins, density=True)[0].max()] if len(s) else []
            for k, src in enumerate(sources):
                r = np.clip(_finite(r_cls.loc[r_cls["source"] == src, col], log), lo, hi)
                if len(r) == 0:
                    continue
                color, marker, _ = _REAL_STYLE[src]
                if len(r) < POINTS_BELOW:  # a few objects: each one as a point along the bottom
                    y = 0.06 + 0.1 * k + rng.uniform(-0.03, 0.03, len(r))
                    ax.scatter(
                        r, y, transform=ax.get_xaxis_transform(), s=18, color=color, marker=marker,
                        edgecolor="k", linewidth=0.4, zorder=3,
                    )  # fmt: skip
                else:
                    dens = ax.hist(r, bins=bins, density=True, histtype="step", color=color, linewidth=1.5)[0]
                    top.append(dens.max())
            if top:
                ax.set_ylim(0, 1.15 * max(top))
            ax.set_xlim(lo, hi)
            ax.set_yticks([])
            ax.tick_params(labelsize=7)
            note = f"sim {len(s)}\nreal {n_real}"
            if table is not None:
                hit = table[(table[by] == cls) & (table["statistic"] == col) & (table["status"] == "ok")]
                if len(hit):
                    note += f"\nKS {hit['ks'].iloc[0]:.2f}"
            ax.text(
                0.98, 0.95, note, transform=ax.transAxes, ha="right", va="top", fontsize=6.5, color="0.15",
                bbox={"facecolor": "white", "alpha": 0.6, "edgecolor": "none", "pad": 1.0},
            )  # fmt: skip
            if i == 0:
                ax.set_title(cls, fontsize=10, fontweight="bold")
            if j == 0:
                ax.set_ylabel(f"log10 {col}" if log else col, fontsize=8)
    handles = [Patch(facecolor="0.75", edgecolor="0.6", label="simulation (density)")]
    handles += [
        Line2D([], [], color=_REAL_STYLE[s][0], marker=_REAL_STYLE[s][1], label=_REAL_STYLE[s][2], lw=1.5)
        for s in sources
    ]
    height = fig.get_figheight()
    if title:
        fig.suptitle(title, fontsize=11, y=1 - 0.12 / height, va="top")
    fig.legend(
        handles=handles, loc="upper center", ncol=len(handles), fontsize=9, frameon=False,
        bbox_to_anchor=(0.5, 1 - 0.42 / height),
    )  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.8 / height))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# -- the two comparisons -----------------------------------------------------------------------------------
def stamp_comparison(
    shared_data: str | Path, out: str | Path, *, seed: int = 1, n_per_class: int = 300
) -> pd.DataFrame:
    """Stamp statistics per stamp class: the figure ``sim_vs_real_stamps.png`` in ``out`` and the table."""
    sim, real = simulated_stamps(seed, n_per_class), real_stamps(shared_data)
    # isdiffpos (+1 / -1) is tabled, not drawn: its mean gives the share of negative differences
    table = compare(sim, real, columns=(*STAMP_COLUMNS, "isdiffpos"), log_columns=sorted(STAMP_LOG))
    plot_grid(
        sim, real, STAMP_COLUMNS, STAMP_CLASS_ORDER, Path(out) / "sim_vs_real_stamps.png",
        log_columns=sorted(STAMP_LOG), table=table,
        title=f"Stamp statistics per class: simulated first alerts (seed {seed + 500}) vs real labelled alerts",
    )  # fmt: skip
    return table.assign(area="stamps")


def lc_comparison(
    shared_data: str | Path, out: str | Path, *, seed: int = 1, n_objects: int = 5000, nights: int = 20
) -> pd.DataFrame:
    """Light-curve features per taxonomy class with >= MIN_REAL_LC real objects: the figure
    ``sim_vs_real_lc_features.png`` in ``out`` and the table (all real sets pooled, then per real source)."""
    from alert_broker.classifiers.taxonomy import CLASSES

    sim = simulated_light_curves(n_objects, nights, seed)
    real = real_light_curves(shared_data)
    counts = real["class"].value_counts()
    classes = [c for c in CLASSES if counts.get(c, 0) >= MIN_REAL_LC]
    logs = sorted(LC_LOG)
    table = compare(sim, real, columns=LC_COLUMNS, log_columns=logs).assign(real_source="all")
    per_source = [
        compare(sim, real[real["source"] == s], columns=LC_COLUMNS, log_columns=logs).assign(real_source=s)
        for s in ("our features", "ALeRCE vectors")
    ]
    plot_grid(
        sim, real, LC_COLUMNS, classes, Path(out) / "sim_vs_real_lc_features.png", log_columns=logs,
        table=table,
        title=f"Light-curve features per class: simulated ZTF ({n_objects} objects, {nights} nights, seed {seed}) "
        "vs real labelled sets",
    )  # fmt: skip
    both = pd.concat([table, *per_source], ignore_index=True)
    return both[both["status"] != "no real"].assign(area="light curves")


def run(
    shared_data: str | Path,
    out: str | Path,
    *,
    seed: int = 1,
    n_objects: int = 5000,
    n_per_class: int = 300,
    areas: Sequence[str] = ("stamps", "lc"),
) -> pd.DataFrame:
    """Both comparisons: writes the PNGs to ``out`` and returns one table (area, class, statistic, ...)."""
    parts = []
    if "stamps" in areas:
        t0 = time.perf_counter()
        parts.append(stamp_comparison(shared_data, out, seed=seed, n_per_class=n_per_class))
        print(f"stamps: {time.perf_counter() - t0:.0f} s", flush=True)
    if "lc" in areas:
        t0 = time.perf_counter()
        parts.append(lc_comparison(shared_data, out, seed=seed, n_objects=n_objects))
        print(f"light curves: {time.perf_counter() - t0:.0f} s", flush=True)
    table = pd.concat(parts, ignore_index=True)
    front = ["area", "class", "statistic"]
    return table[front + [c for c in table.columns if c not in front]]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data", help="shared data root (read in place)")
    p.add_argument("--objects", type=int, default=5000, help="simulated objects for the light-curve set")
    p.add_argument("--per-class", type=int, default=300, help="simulated first alerts per stamp class")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="docs/img", help="folder for the two PNGs")
    p.add_argument("--table", default=None, help="also write the full table here (CSV)")
    p.add_argument("--areas", default="stamps,lc", help="comma-separated: stamps, lc")
    args = p.parse_args(argv)
    table = run(
        args.data, args.out, seed=args.seed, n_objects=args.objects, n_per_class=args.per_class,
        areas=tuple(a.strip() for a in args.areas.split(",")),
    )  # fmt: skip
    if args.table:
        table.to_csv(args.table, index=False)
    with pd.option_context("display.width", 160, "display.max_rows", 200, "display.precision", 3):
        for area, part in table.groupby("area", sort=False):
            pooled = part[part.get("real_source", pd.Series("all", index=part.index)).fillna("all") == "all"]
            print(f"\n{area}: largest differences (KS, >= 5 real values)")
            top = largest_differences(pooled, top=15)
            print(top.drop(columns=["ks_p", "sim_mean", "real_mean", "log", "status"]).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
