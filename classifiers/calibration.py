"""How far predicted probabilities can be trusted: reliability curves, expected calibration error, log loss, and
reliability diagrams (``plot_reliability``).

A reliability curve bins objects by the probability of their predicted class (the confidence) and compares each
bin's mean confidence with the fraction of its objects whose prediction is right. A calibrated classifier lies on
the diagonal: of objects called a class with 0.8, 80% are that class. The expected calibration error (ECE) is the
count-weighted mean gap between the two (Guo et al. 2017).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: Confidence bins of the reliability curves.
N_BINS = 10


def reliability(proba: np.ndarray, truth_index: np.ndarray, bins: int = N_BINS) -> pd.DataFrame:
    """Per confidence bin: mean confidence, accuracy and count. ``proba`` (n, k); ``truth_index`` the column
    of the true class per row (-1: not among the columns, never right)."""
    p = np.asarray(proba, dtype=float)
    conf = p.max(axis=1)
    right = p.argmax(axis=1) == np.asarray(truth_index)
    edges = np.linspace(0, 1, bins + 1)
    b = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    rows = []
    for i in range(bins):
        sel = b == i
        rows.append(
            {
                "bin": f"{edges[i]:.1f}-{edges[i + 1]:.1f}",
                "confidence": float(conf[sel].mean()) if sel.any() else np.nan,
                "accuracy": float(right[sel].mean()) if sel.any() else np.nan,
                "count": int(sel.sum()),
            }
        )
    return pd.DataFrame(rows)


def expected_calibration_error(proba: np.ndarray, truth_index: np.ndarray, bins: int = N_BINS) -> float:
    r = reliability(proba, truth_index, bins)
    r = r[r["count"] > 0]
    return float((r["count"] * (r["confidence"] - r["accuracy"]).abs()).sum() / max(r["count"].sum(), 1))


def log_loss(proba: np.ndarray, truth_index: np.ndarray) -> float:
    p = np.asarray(proba, dtype=float)
    idx = np.asarray(truth_index)
    q = np.where(idx >= 0, p[np.arange(len(p)), np.clip(idx, 0, None)], 0.0)
    return float(-np.log(np.clip(q, 1e-12, 1.0)).mean()) if len(p) else float("nan")


def truth_indices(labels, columns) -> np.ndarray:
    """Column index of each label among ``columns`` (-1 where absent)."""
    pos = {c: i for i, c in enumerate(columns)}
    return np.array([pos.get(c, -1) for c in labels], dtype=int)


def summary(proba: np.ndarray, labels, columns) -> dict:
    idx = truth_indices(labels, columns)
    return {
        "n": int(len(idx)),
        "ece": round(expected_calibration_error(proba, idx), 4),
        "log_loss": round(log_loss(proba, idx), 4),
        "accuracy": round(float((np.asarray(proba).argmax(axis=1) == idx).mean()), 4) if len(idx) else None,
    }


def plot_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str) -> Path:
    """Reliability diagram: ``curves`` maps a label to (proba, truth_index); the diagonal is perfect
    calibration; marker areas follow the bins' counts (a bin of 3 objects says little); n and ECE in the
    legend, which sits below the axes so that it hides no point."""
    import matplotlib  # lazy: only the figures need it; pyplot must follow use("Agg")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after matplotlib.use("Agg"), only for the figures

    fig, ax = plt.subplots(figsize=(6.4, 5.2 + 0.17 * len(curves)))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
    for label, (proba, idx) in curves.items():
        r = reliability(proba, idx)
        r = r[r["count"] > 0]
        ece = expected_calibration_error(proba, idx)
        share = r["count"].to_numpy(float) / max(len(idx), 1)
        (line,) = ax.plot(
            r["confidence"], r["accuracy"], lw=1.1, label=f"{label} (n={len(idx)}, ECE {ece:.3f})"
        )
        ax.scatter(r["confidence"], r["accuracy"], s=12 + 150 * share, color=line.get_color(), alpha=0.8)
    ax.set_xlabel("confidence (probability of the predicted class)")
    ax.set_ylabel("fraction correct")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1, frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
