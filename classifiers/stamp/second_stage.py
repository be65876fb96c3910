"""Training and cross-validating the stamp classifier's second stage (``stacker.StampStacker``) on simulated and
real labelled alerts: the CNN's output, the cutouts' statistics and the raw alert metadata.

Rows:
- simulated first alerts of a seed the CNN did not train on (``seed + 500``), each class ``n_per_class``, plus a
  copy of :data:`~classifiers.stamp.stacker.NO_METADATA_SHARE` of them without metadata;
- ALeRCE's 51 labelled real stamps (``alerce``; 30 have no metadata) and Fink's SIMBAD-labelled alerts
  (``simbad``, weak labels), each weighted ``real_weight``.

Real figures are out-of-fold: object-grouped K-fold cross-validation stratified by (set, class), so an object
never scores with a second stage that saw it (the CNN saw no real alert at all). The shipped second stage is then
fitted on every row. From 1.4.0 on its probabilities are temperature-scaled (:func:`fit_temperature`): the trees
are calibrated on simulation and over-confident on real alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from alert_broker.classifiers.hierarchical import TEMPERATURE_GRID, temper
from alert_broker.classifiers.stamp.dataset import StampSet, build_stamp_set
from alert_broker.classifiers.stamp.evaluate import StampEvaluation, load_real_stamps, load_simbad_stamps
from alert_broker.classifiers.stamp.metadata import metadata_matrix
from alert_broker.classifiers.stamp.rules import DEFAULT_RULES, Rule, apply_rules
from alert_broker.classifiers.stamp.stacker import (
    NO_METADATA_SHARE,
    UNKNOWN_ASTEROID_SHARE,
    StampStacker,
    drop_metadata,
    raw_metadata,
    stack_inputs,
)
from alert_broker.classifiers.stamp.taxonomy import STAMP_CLASSES

#: Weight of a real alert relative to a simulated one in the second stage (classes stay balanced).
REAL_WEIGHT = 20.0
DEFAULT_FOLDS = 5
#: Simulated first alerts per class for the second stage (a seed the CNN never saw).
STACK_N_PER_CLASS = 800


@dataclass
class StackRows:
    """Second-stage rows: inputs, stamp classes, groups (objects), sources, weights and the alerts they came
    from (aligned by position)."""

    x: pd.DataFrame
    y: np.ndarray
    groups: np.ndarray
    sources: np.ndarray
    weights: np.ndarray
    alerts: pd.DataFrame

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows: np.ndarray) -> StackRows:
        return StackRows(
            self.x.iloc[rows].reset_index(drop=True),
            self.y[rows],
            self.groups[rows],
            self.sources[rows],
            self.weights[rows],
            self.alerts.iloc[rows].reset_index(drop=True),
        )

    @staticmethod
    def concat(parts: list[StackRows]) -> StackRows:
        return StackRows(
            pd.concat([p.x for p in parts], ignore_index=True),
            np.concatenate([p.y for p in parts]),
            np.concatenate([p.groups for p in parts]),
            np.concatenate([p.sources for p in parts]),
            np.concatenate([p.weights for p in parts]),
            pd.concat([p.alerts for p in parts], ignore_index=True),
        )


def simulated_rows(classifier, data: StampSet, seed: int) -> StackRows:
    """Second-stage rows of a simulated set: the CNN's output on it, the stamp statistics its frame carries
    (``dataset.to_stamp_set``), raw metadata; plus a no-metadata copy of a random share."""
    cnn = classifier.predict_arrays(data.images, metadata_matrix(data.frame, classifier.features))
    x = stack_inputs(cnn, data.frame, raw_metadata(data.frame))
    y = np.array(STAMP_CLASSES, dtype=object)[data.labels]
    groups = data.frame["oid"].astype(str).to_numpy()
    rows = StackRows(x, y, groups, np.full(len(y), "simulation"), np.ones(len(y)), data.frame)
    rng = np.random.default_rng([seed, 37])
    unknown = np.flatnonzero((y == "asteroid") & (rng.random(len(y)) < UNKNOWN_ASTEROID_SHARE))
    rows.x.loc[unknown, "known_sso"] = np.where(rows.x.loc[unknown, "known_sso"].notna(), 0.0, np.nan)
    drop = np.flatnonzero(np.random.default_rng([seed, 31]).random(len(y)) < NO_METADATA_SHARE)
    copy = rows.take(drop)
    copy.x = drop_metadata(copy.x, np.ones(len(copy), dtype=bool))
    return StackRows.concat([rows, copy])


def real_rows(classifier, shared_data: str | Path, weight: float = REAL_WEIGHT) -> StackRows:
    """Second-stage rows of the real labelled alerts: ALeRCE's 51 stamps and the SIMBAD-labelled alerts."""
    parts = []
    for source, (alerts, stamps) in (
        ("alerce", load_real_stamps(shared_data)),
        ("simbad", load_simbad_stamps(shared_data)),
    ):
        x, al = classifier.second_stage_inputs(alerts, stamps)
        y = al["class"].astype(object).to_numpy()
        groups = al["oid"].astype(str).to_numpy()
        parts.append(StackRows(x, y, groups, np.full(len(y), source), np.full(len(y), float(weight)), al))
    return StackRows.concat(parts)


def fit_stacker(rows: StackRows, seed: int = 0) -> StampStacker:
    return StampStacker(random_state=seed).fit(rows.x, rows.y, rows.weights)


def cross_validate(
    sim: StackRows, real: StackRows, k: int = DEFAULT_FOLDS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities (len(real) x 5) of the real rows and their folds: each fold's second stage
    trains on every simulated row and the real rows of the other folds (whole objects)."""
    strata = np.array([f"{s}:{c}" for s, c in zip(real.sources, real.y, strict=True)])
    oof = np.zeros((len(real), len(STAMP_CLASSES)))
    folds = np.full(len(real), -1)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for f, (tr, te) in enumerate(splitter.split(real.x, strata, real.groups)):
        model = fit_stacker(StackRows.concat([sim, real.take(tr)]), seed)
        oof[te] = model.predict_proba(real.x.iloc[te])
        folds[te] = f
    return oof, folds


def stacked_evaluations(
    proba: np.ndarray, real: StackRows, rules: tuple[Rule, ...] = DEFAULT_RULES
) -> dict[str, dict[str, StampEvaluation]]:
    """Evaluations of (out-of-fold) probabilities of the real rows: ALeRCE's stamps (all, with metadata,
    stamps only) and the SIMBAD-labelled alerts, each without and with the business rules ``rules``."""
    names = np.array(STAMP_CLASSES, dtype=object)
    ruled = apply_rules(pd.DataFrame(proba, columns=list(STAMP_CLASSES)), real.alerts, rules)
    pred_raw = names[proba.argmax(axis=1)]
    pred_rules = names[ruled.to_numpy().argmax(axis=1)]
    is_alerce = real.sources == "alerce"
    has_meta = real.alerts.get("has_metadata", pd.Series(False, index=real.alerts.index))
    has_meta = has_meta.fillna(False).to_numpy(dtype=bool)
    subsets = {
        "all": is_alerce,
        "with metadata": is_alerce & has_meta,
        "stamps only": is_alerce & ~has_meta,
        "simbad": real.sources == "simbad",
    }
    out = {}
    for name, rows in subsets.items():
        if rows.any():
            out[name] = {
                "second stage": StampEvaluation(real.y[rows], pred_raw[rows]),
                "second stage+rules": StampEvaluation(real.y[rows], pred_rules[rows]),
            }
    return out


def log_loss(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-probability of the true stamp class (classes as names)."""
    idx = np.array([STAMP_CLASSES.index(c) for c in y], dtype=int)
    if len(idx) == 0:
        return float("nan")
    return float(-np.log(np.clip(proba[np.arange(len(idx)), idx], 1e-12, 1.0)).mean())


def fit_temperature(sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[float, dict[str, dict]]:
    """(T, per-set log loss at T = 1 and at T) minimising the sum over sets of each set's *mean* log loss, so
    each set counts as much however many rows it has (lc_hierarchical's temperatures are fitted the same way:
    the simulation and each real set). ``sets``: name -> (untempered probabilities (n, 5), true classes)."""
    sets = {k: v for k, v in sets.items() if len(v[1])}
    if not sets:
        return 1.0, {}

    def total(t: float) -> float:
        return sum(log_loss(temper(p, t), y) for p, y in sets.values())

    t = float(min(TEMPERATURE_GRID, key=total))
    table = {
        k: {
            "n": int(len(y)),
            "log_loss_t1": round(log_loss(p, y), 4),
            "log_loss": round(log_loss(temper(p, t), y), 4),
        }
        for k, (p, y) in sets.items()
    }
    return t, table


def stacker_training_set(classifier, seed: int, n_per_class: int = STACK_N_PER_CLASS) -> StackRows:
    """Simulated second-stage rows from a seed the CNN did not train on (``seed + 500``)."""
    data = build_stamp_set(seed + 500, n_per_class, tuple(classifier.features))
    return simulated_rows(classifier, data, seed)


def reliability_sets(
    classifier,
    shared_data: str | Path,
    *,
    heldout_per_class: int = 600,
    cv_folds: int = DEFAULT_FOLDS,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Final probabilities (second stage, tempered, then the model's business rules: what the pipeline stores)
    and the truth's column, for reliability diagrams: a held-out simulation (seed + 1000) and the real labelled
    alerts out of fold (the second stage re-fitted per fold as in training, same seed and rows, tempered with
    the model's temperature). Needs a second stage."""
    if classifier.stacker is None:
        raise ValueError("reliability_sets needs a stamp model with a second stage")
    stage = classifier.metadata.get("second_stage", {})
    seed = int(stage.get("simulated_seed", 501)) - 500
    weight = float(stage.get("real_weight", REAL_WEIGHT))
    names = list(STAMP_CLASSES)

    def ruled(proba: np.ndarray, alerts: pd.DataFrame) -> np.ndarray:
        return apply_rules(
            pd.DataFrame(proba, columns=names), alerts.reset_index(drop=True), classifier.rules
        ).to_numpy()

    def truth(y) -> np.ndarray:
        return np.array([names.index(c) for c in y])

    held = build_stamp_set(seed + 1000, heldout_per_class, tuple(classifier.features))
    rows = simulated_rows(classifier, held, 0).take(np.arange(len(held)))
    out = {
        f"held-out simulation (seed {seed + 1000})": (
            ruled(classifier.stacker.predict_proba(rows.x), held.frame),
            truth(rows.y),
        )
    }
    sim = stacker_training_set(classifier, seed, STACK_N_PER_CLASS)  # as `make models` trains it
    real = real_rows(classifier, shared_data, weight)
    oof, _ = cross_validate(sim, real, cv_folds, seed)
    final = ruled(temper(oof, getattr(classifier.stacker, "temperature_", 1.0)), real.alerts)  # as served
    for source, label in (("alerce", "ALeRCE's labelled stamps"), ("simbad", "SIMBAD-labelled alerts, weak")):
        sel = real.sources == source
        out[f"{label} (out-of-fold)"] = (final[sel], truth(real.y[sel]))
    return out
