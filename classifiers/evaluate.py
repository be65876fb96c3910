"""Evaluation of the light-curve classifier: metrics at both levels, a Markdown report and PNG confusion
matrices; and scoring on real data: ALeRCE's stored feature vectors (mapped onto ours by ``classifiers.alerce``)
and the real labelled sets of ``classifiers.real_sets``.
"""

from __future__ import annotations

import datetime as _dt
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from alert_broker.classifiers.alerce import (
    ALERCE_FEATURES_FILE,
    ALERCE_LABELS_FILE,
    ALERCE_RENAMES,
    ALERCE_UNMATCHED,
    alerce_feature_frame,
)
from alert_broker.classifiers.calibration import (
    expected_calibration_error,
    log_loss,
    plot_reliability,
    truth_indices,
)
from alert_broker.classifiers.hierarchical import as_oid_indexed
from alert_broker.classifiers.real_sets import LIGHT_CURVE_SETS, REAL_SETS, load_real_set
from alert_broker.classifiers.taxonomy import BRANCH_OF, BRANCHES, CLASSES, normalise_labels
from alert_broker.features.lightcurve import FEATURE_VERSIONS

__all__ = [
    # re-exported from classifiers.alerce (they lived here; real_sets shares them)
    "ALERCE_FEATURES_FILE",
    "ALERCE_LABELS_FILE",
    "ALERCE_RENAMES",
    "ALERCE_UNMATCHED",
    "Evaluation",
    "alerce_feature_frame",
    "evaluate",
    "evaluate_alerce_features",
    "evaluate_predictions",
    "evaluate_real",
    "branch_sums",
    "recall_vs_magnitude",
    "write_report",
]


@dataclass
class Evaluation:
    """Metrics of one labelled set at the class and branch levels."""

    n: int
    class_balanced_accuracy: float
    class_macro_f1: float
    branch_balanced_accuracy: float
    branch_macro_f1: float
    per_class: pd.DataFrame  # index class: precision, recall, f1, support
    per_branch: pd.DataFrame
    confusion_class: pd.DataFrame  # rows true, columns predicted (counts)
    confusion_branch: pd.DataFrame
    recall_vs_mag: pd.DataFrame = field(default_factory=pd.DataFrame)
    description: str = ""  # what the set is (printed under its heading)
    notes: list[str] = field(default_factory=list)  # what was mapped, approximated or left out
    # class probabilities (rows x the 15 classes) and true classes of the scored rows, for reliability diagrams
    proba: pd.DataFrame | None = None
    y_true: np.ndarray | None = None

    def calibration(self, level: str = "class") -> tuple[np.ndarray, np.ndarray] | None:
        """(probabilities, column index of the truth) at the ``class`` or ``branch`` level, None without
        probabilities: what ``calibration.reliability`` and ``plot_reliability`` take."""
        if self.proba is None or self.y_true is None:
            return None
        if level == "class":
            return self.proba.to_numpy(float), truth_indices(self.y_true, CLASSES)
        truth = [BRANCH_OF[c] for c in self.y_true]
        return branch_sums(self.proba).to_numpy(float), truth_indices(truth, BRANCHES)

    @property
    def n_classes(self) -> int:
        """Classes present in the set (balanced accuracy is the mean recall over these)."""
        return int((self.per_class["support"] > 0).sum())

    def summary(self) -> dict:
        out = {
            "n": self.n,
            "class_balanced_accuracy": round(self.class_balanced_accuracy, 4),
            "class_macro_f1": round(self.class_macro_f1, 4),
            "branch_balanced_accuracy": round(self.branch_balanced_accuracy, 4),
            "branch_macro_f1": round(self.branch_macro_f1, 4),
        }
        if self.n_classes <= 4:  # small real sets: the recalls say more than the averages
            present = self.per_class[self.per_class["support"] > 0]
            out["recall"] = {str(c): round(float(r), 4) for c, r in present["recall"].items()}
            branches = self.per_branch[self.per_branch["support"] > 0]
            out["branch_recall"] = {str(b): round(float(r), 4) for b, r in branches["recall"].items()}
        return out


def _level(y_true: np.ndarray, y_pred: np.ndarray, names: tuple[str, ...]):
    present = [c for c in names if c in set(y_true)]  # macro averages over the classes the set contains
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(names), zero_division=0)
    per = pd.DataFrame(
        {"precision": p, "recall": r, "f1": f, "support": s}, index=pd.Index(names, name="class")
    )
    cm = pd.DataFrame(
        confusion_matrix(y_true, y_pred, labels=list(names)),
        index=pd.Index(names, name="true"),
        columns=pd.Index(names, name="predicted"),
    )
    with warnings.catch_warnings():  # a prediction of a class absent from the set is legitimate here
        warnings.simplefilter("ignore", UserWarning)
        bacc = float(balanced_accuracy_score(y_true, y_pred))
    macro_f1 = float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
    return bacc, macro_f1, per, cm


def recall_vs_magnitude(y_true: np.ndarray, y_pred: np.ndarray, mag: np.ndarray, width: float = 1.0):
    """Recall per class in bins of magnitude (NaN magnitudes left out): a table class x bin."""
    ok = np.isfinite(mag)
    if not ok.any():
        return pd.DataFrame()
    lo, hi = np.floor(np.nanmin(mag[ok])), np.ceil(np.nanmax(mag[ok]))
    edges = np.arange(lo, hi + width, width)
    bins = pd.cut(pd.Series(mag[ok]), edges, right=False).astype(str).to_numpy()
    df = pd.DataFrame({"true": y_true[ok], "hit": y_true[ok] == y_pred[ok], "bin": bins})
    return df.pivot_table(index="true", columns="bin", values="hit", aggfunc="mean").reindex(
        [c for c in CLASSES if c in set(df["true"])]
    )


def evaluate(model, features: pd.DataFrame, labels: pd.Series) -> Evaluation:
    """Score ``model`` on a labelled features table (labels indexed by oid; non-taxonomy labels dropped): its
    ``predict`` for the class, its ``predict_branch_proba`` for the branch."""
    feats = as_oid_indexed(features)
    lab = labels.set_axis(labels.index.astype(str), axis=0)
    y = normalise_labels(lab.reindex(feats.index))
    keep = y.notna().to_numpy()
    if not keep.any():
        raise ValueError("evaluate(): no object has a label among the 15 classes")
    feats, y_true = feats[keep], y[keep].to_numpy(dtype=object)
    y_pred = model.predict(feats).to_numpy(dtype=object)
    top = model.predict_branch_proba(feats)
    b_pred = top.columns.to_numpy()[top.to_numpy().argmax(axis=1)]
    ev = _scores(y_true, y_pred, b_pred, feats)
    if hasattr(model, "predict_proba"):
        ev.proba = model.predict_proba(feats).reindex(columns=list(CLASSES), fill_value=0.0)
        ev.y_true = y_true
    return ev


def evaluate_predictions(
    proba: pd.DataFrame, labels: pd.Series, features: pd.DataFrame | None = None
) -> Evaluation:
    """Metrics of given class probabilities (rows x the 15 classes; e.g. out-of-fold predictions) against
    labels aligned with their rows. The branch prediction is the branch with the largest summed probability
    (equal to the top-level model's, by the product rule). ``features`` (same rows) gives recall vs magnitude."""
    y = normalise_labels(pd.Series(np.asarray(labels, dtype=object), index=proba.index))
    keep = y.notna().to_numpy()
    if not keep.any():
        raise ValueError("evaluate_predictions(): no object has a label among the 15 classes")
    p = proba[keep].reindex(columns=list(CLASSES), fill_value=0.0)
    y_true = y[keep].to_numpy(dtype=object)
    y_pred = p.columns.to_numpy(dtype=object)[p.to_numpy().argmax(axis=1)]
    top = branch_sums(p)
    b_pred = top.columns.to_numpy()[top.to_numpy().argmax(axis=1)]
    ev = _scores(y_true, y_pred, b_pred, None if features is None else features[keep])
    ev.proba, ev.y_true = p, y_true
    return ev


def _scores(
    y_true: np.ndarray, y_pred: np.ndarray, b_pred: np.ndarray, feats: pd.DataFrame | None
) -> Evaluation:
    b_true = np.array([BRANCH_OF[c] for c in y_true], dtype=object)
    cb, cf, per_c, cm_c = _level(y_true, y_pred, CLASSES)
    bb, bf, per_b, cm_b = _level(b_true, b_pred, BRANCHES)
    rvm = pd.DataFrame()
    if feats is not None:
        mag_col = next((c for c in ("Mean_2", "mean_mag_2", "Mean_1") if c in feats.columns), None)
        if mag_col:
            rvm = recall_vs_magnitude(y_true, y_pred, feats[mag_col].to_numpy(dtype=float))
    return Evaluation(len(y_true), cb, cf, bb, bf, per_c, per_b, cm_c, cm_b, rvm)


def branch_sums(proba: pd.DataFrame) -> pd.DataFrame:
    """P(branch) = the sum of its classes' probabilities (rows x Transient/Stochastic/Periodic)."""
    return pd.DataFrame(
        {b: proba[[c for c in CLASSES if BRANCH_OF[c] == b]].sum(axis=1) for b in BRANCHES}, index=proba.index
    )


def evaluate_alerce_features(model, data_root: Path) -> tuple[Evaluation, list[str]]:
    """Score ``model`` on ALeRCE's 150 labelled real ZTF feature vectors (10 per class) in the shared data."""
    feats = pd.read_parquet(Path(data_root) / ALERCE_FEATURES_FILE)
    labels = pd.read_parquet(Path(data_root) / ALERCE_LABELS_FILE)["classALeRCE"]
    mapped, notes = alerce_feature_frame(feats)
    return evaluate(model, mapped, labels), notes


def model_feature_version(model) -> str | None:
    """The magnitude feature version ``model`` was trained on (its registry metadata), None (= the current one)
    when it names none or one this code does not compute."""
    version = getattr(model, "metadata", {}).get("feature_version") or getattr(model, "feature_version", None)
    return version if version in FEATURE_VERSIONS else None


def evaluate_real(
    model, data_root: str | Path, names: list[str] | None = None, *, alert_day: float | None = None
) -> dict[str, Evaluation]:
    """Score ``model`` on real labelled sets (``classifiers.real_sets.REAL_SETS``; all when ``names`` is None).

    Keys are readable set names; each Evaluation carries the set's description and mapping notes. With
    ``alert_day`` the light-curve sets are cut to a single alert's 30-day history (see ``real_sets``).
    """
    out: dict[str, Evaluation] = {}
    version = model_feature_version(model)
    for name in names or list(REAL_SETS):
        feats, labels = load_real_set(name, data_root, alert_day=alert_day, feature_version=version)
        if feats.empty:
            raise ValueError(f"real set {name}: no labelled object has features")
        ev = evaluate(model, feats, labels)
        ev.description = REAL_SETS[name][1]
        ev.notes = list(feats.attrs.get("notes", []))
        title = f"{name} (real)"
        if alert_day is not None and name in LIGHT_CURVE_SETS:
            title = f"{name} (real, alert {alert_day:g} d after first detection)"
        out[title] = ev
    return out


def _plot_confusion(cm: pd.DataFrame, title: str, path: Path) -> None:
    import matplotlib  # lazy: only the report's figures need it; pyplot (~0.2 s) must follow use("Agg")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after matplotlib.use("Agg"), only for the report's figures

    counts = cm.to_numpy(dtype=float)
    norm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 3 + 0.45 * len(cm)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(cm)), cm.columns, rotation=60, ha="right")
    ax.set_yticks(range(len(cm)), cm.index)
    for i in range(len(cm)):
        for j in range(len(cm)):
            if counts[i, j]:
                ax.text(
                    j,
                    i,
                    f"{norm[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _md_table(df: pd.DataFrame, floatfmt: str = "{:.2f}") -> str:
    cols = [df.index.name or ""] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in df.astype(object).iterrows():  # object: ints stay ints
        cells = [
            floatfmt.format(v) if isinstance(v, float) and np.isfinite(v) else ("" if pd.isna(v) else str(v))
            for v in row
        ]
        lines.append("| " + " | ".join([str(idx), *cells]) + " |")
    return "\n".join(lines)


def _shown(per: pd.DataFrame, cm: pd.DataFrame) -> pd.DataFrame:
    """Rows of a per-class table whose class is in the set or was predicted (others are all zero)."""
    keep = (per["support"] > 0).to_numpy() | (cm.sum(axis=0).reindex(per.index).to_numpy() > 0)
    return per[keep]


def _compact_confusion(cm: pd.DataFrame) -> pd.DataFrame:
    """The confusion counts restricted to true classes present and predicted classes used."""
    rows = cm.sum(axis=1) > 0
    cols = cm.sum(axis=0) > 0
    return cm.loc[rows, cols]


def _reliability_section(results: dict[str, Evaluation], out: Path) -> list[str]:
    """Reliability diagrams (one per level, a curve per set with probabilities) and a table of expected
    calibration error, log loss and accuracy of the predicted class: how far the probabilities can be trusted."""
    with_proba = {name: ev for name, ev in results.items() if ev.proba is not None and ev.n}
    if not with_proba:
        return []
    lines = [
        "## Calibration",
        "",
        "Reliability: objects binned by the probability of their predicted class (the confidence), each bin's "
        "mean confidence against the fraction predicted right; a calibrated model lies on the diagonal. ECE: "
        "the count-weighted mean gap (10 bins).",
        "",
        "| set | level | n | ECE | log loss | accuracy | mean confidence |",
        "|---|---|---|---|---|---|---|",
    ]
    # a set the model trained on (in-sample) says nothing of its calibration where the same set is also scored
    # out of fold: those stay in the table, out of the diagrams
    scored_apart = {n.split(" (")[0] for n in with_proba if "(out-of-fold)" in n or "(leave-set-out)" in n}
    for level in ("branch", "class"):
        curves = {}
        for name, ev in with_proba.items():
            proba, idx = ev.calibration(level)
            if not (name.split(" (")[0] in scored_apart and name.endswith("(real)")):
                curves[name] = (proba, idx)
            lines.append(
                f"| {name} | {level} | {len(idx)} | {expected_calibration_error(proba, idx):.3f} | "
                f"{log_loss(proba, idx):.3f} | {(proba.argmax(axis=1) == idx).mean():.3f} | "
                f"{proba.max(axis=1).mean():.3f} |"
            )
        title = "top level (Transient / Stochastic / Periodic)" if level == "branch" else "15 classes"
        plot_reliability(curves, out / f"reliability_{level}.png", f"Reliability, {title}")
    _probabilities_frame(with_proba).to_parquet(out / "probabilities.parquet")
    lines += [
        "",
        "Sets scored both in-sample and out of fold (or leave-set-out) are drawn out of fold only. Every scored "
        "row's probabilities: `probabilities.parquet` (set, row, true class, the 15 classes).",
        "",
        "![reliability, top level](reliability_branch.png)",
        "![reliability, 15 classes](reliability_class.png)",
        "",
    ]
    return lines


def _probabilities_frame(results: dict[str, Evaluation]) -> pd.DataFrame:
    """One row per scored object of every set: set name, row key, true class and the 15 probabilities."""
    parts = []
    for name, ev in results.items():
        part = ev.proba.reset_index(drop=False)
        part = part.rename(columns={part.columns[0]: "row"})
        part["row"] = part["row"].astype(str)
        part.insert(0, "set", name)
        part.insert(2, "true_class", np.asarray(ev.y_true, dtype=object).astype(str))
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def write_report(
    results: dict[str, Evaluation], out_dir: str | Path, *, model=None, notes: list[str] | None = None
) -> Path:
    """Write ``report.md``, one PNG per (set, level) confusion matrix and the reliability diagrams of the sets
    with probabilities into ``out_dir``; returns the .md path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Light-curve classifier evaluation", ""]
    if model is not None:
        md = getattr(model, "metadata", {}) or {}
        lines += [
            f"Model `{model.name}` version `{model.version}` (backend `{getattr(model, 'backend', 'rf')}`), "
            f"taxonomy `{model.taxonomy_version}`, features "
            f"`{md.get('feature_version', '?')}` ({len(model.feature_columns_)} columns), training fingerprint "
            f"`{str(md.get('training_fingerprint', '?'))[:16]}`.",
            "",
        ]
    lines += [f"Written {_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')}.", ""]
    lines += [
        "| set | n | top balanced acc. | top macro F1 | 15-class balanced acc. | 15-class macro F1 |",
        "|---|---|---|---|---|---|",
    ]
    for name, ev in results.items():
        lines.append(
            f"| {name} | {ev.n} | {ev.branch_balanced_accuracy:.3f} | {ev.branch_macro_f1:.3f} | "
            f"{ev.class_balanced_accuracy:.3f} | {ev.class_macro_f1:.3f} |"
        )
    lines += [
        "",
        "Targets (held-out simulation): top-level balanced accuracy >= 0.95, 15-class macro F1 >= 0.75.",
        "",
    ]
    lines += _reliability_section(results, out)
    for k, (name, ev) in enumerate(results.items()):
        slug = f"set{k}"
        for level, cm in (("branch", ev.confusion_branch), ("class", ev.confusion_class)):
            _plot_confusion(
                cm, f"{name}\n{level} level (row-normalised)", out / f"confusion_{slug}_{level}.png"
            )
        lines += [f"## {name}", ""]
        if ev.description:
            lines += [
                f"{ev.description}. n = {ev.n}, {ev.n_classes} class{'es' if ev.n_classes != 1 else ''} present.",
                "",
            ]
        if ev.n_classes == 1:
            lines += [
                "One class only: its balanced accuracy is its recall, and precision is 1 by construction.",
                "",
            ]
        lines += [
            "### Per class (classes present or predicted)",
            "",
            _md_table(_shown(ev.per_class, ev.confusion_class)),
            "",
            "### Per branch",
            "",
            _md_table(_shown(ev.per_branch, ev.confusion_branch)),
            "",
            "### Confusion (counts; rows true, columns predicted)",
            "",
            _md_table(_compact_confusion(ev.confusion_class)),
            "",
            f"![branch confusion](confusion_{slug}_branch.png)",
            f"![class confusion](confusion_{slug}_class.png)",
            "",
        ]
        if not ev.recall_vs_mag.empty:
            lines += ["### Recall vs magnitude (mean r, else g)", "", _md_table(ev.recall_vs_mag), ""]
        if ev.notes:
            lines += ["Notes:", ""] + [f"- {n}" for n in ev.notes] + [""]
    if notes:
        lines += ["## Notes on the real-data mapping", ""] + [f"- {n}" for n in notes] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
