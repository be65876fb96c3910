"""Simulated LSST light curves beside ZTF's real ones seen by Rubin, per class (docs/classifiers.md, "LSST"):
the difference-flux features of the simulated objects of a class (``training.build_training_set``, survey
lsst) against the template rows of the same class (``crossval.lsst_template_rows``): SNe Ia (BTS and ALeRCE's
spectroscopic ones) and RR Lyrae (Stripe 82 and ALeRCE's). Prints medians and the two-sample Kolmogorov-Smirnov
statistic per (class, feature) and draws the histograms.

    python -m bench.lsst_templates_vs_sim [--data ../shared/data] [--objects 20000] [--out docs/img]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from alert_broker.classifiers.crossval import lsst_template_rows
from alert_broker.classifiers.training import build_training_set

#: (column, label, log10?) of the features drawn; r-i at peak is the colour model's on the templates' side.
FEATURES = (
    ("Peak_flux_r", "log10 peak flux in r [nJy]", True),
    ("ReducedChi2_flux_r", "log10 reduced chi2 about the mean, r", True),
    ("n_det_flux", "detections, all bands", False),
    ("r-i_peak_flux", "r - i at peak [mag]", False),
)
CLASSES = ("SNIa", "RRL")


def _values(frame: pd.DataFrame, column: str, log: bool) -> np.ndarray:
    v = frame[column].to_numpy(dtype=float) if column in frame else np.zeros(0)
    v = v[np.isfinite(v)]
    if log:
        v = np.log10(v[v > 0])
    return v


def compare(
    sim: pd.DataFrame, sim_labels: pd.Series, tpl: pd.DataFrame, tpl_labels: pd.Series
) -> pd.DataFrame:
    """One row per (class, feature): counts, medians of both sides and the KS statistic."""
    rows = []
    for cls in CLASSES:
        s, t = sim[(sim_labels == cls).to_numpy()], tpl[(tpl_labels == cls).to_numpy()]
        for col, _, log in FEATURES:
            a, b = _values(s, col, log), _values(t, col, log)
            ks = ks_2samp(a, b).statistic if a.size and b.size else np.nan
            rows.append(
                {
                    "class": cls,
                    "feature": col + (" (log10)" if log else ""),
                    "n_sim": a.size,
                    "n_real": b.size,
                    "median_sim": float(np.median(a)) if a.size else np.nan,
                    "median_real": float(np.median(b)) if b.size else np.nan,
                    "ks": ks,
                }
            )
    return pd.DataFrame(rows)


def draw(sim, sim_labels, tpl, tpl_labels, path: Path) -> None:
    import matplotlib  # lazy: plotting only when a figure is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    fig, axes = plt.subplots(len(CLASSES), len(FEATURES), figsize=(4 * len(FEATURES), 3.2 * len(CLASSES)))
    for i, cls in enumerate(CLASSES):
        s, t = sim[(sim_labels == cls).to_numpy()], tpl[(tpl_labels == cls).to_numpy()]
        for j, (col, label, log) in enumerate(FEATURES):
            ax = axes[i, j]
            a, b = _values(s, col, log), _values(t, col, log)
            both = np.concatenate([a, b])
            if both.size:
                lo, hi = np.percentile(both, [1, 99])
                bins = np.linspace(lo, hi if hi > lo else lo + 1, 30)
                ax.hist(a, bins=bins, density=True, color="0.6", label=f"simulated ({a.size})")
                ax.hist(
                    b,
                    bins=bins,
                    density=True,
                    histtype="step",
                    lw=2,
                    color="C3",
                    label=f"real, seen by Rubin ({b.size})",
                )
            ax.set_xlabel(label)
            if j == 0:
                ax.set_ylabel(cls)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.suptitle("LSST difference-flux features: simulated objects vs ZTF's real light curves seen by Rubin")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--objects", type=int, default=20000, help="simulated LSST objects (seed 1, 20 nights)")
    p.add_argument("--out", default=None, help="folder for lsst_lc_sim_vs_templates.png (none: no figure)")
    args = p.parse_args(argv)
    sim, sim_labels = build_training_set(args.objects, 20, 1, survey="lsst")
    rows = lsst_template_rows(args.data, 1)
    table = compare(sim, sim_labels, rows.features, rows.labels)
    print(table.round(3).to_string(index=False))
    if args.out:
        draw(sim, sim_labels, rows.features, rows.labels, Path(args.out) / "lsst_lc_sim_vs_templates.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
