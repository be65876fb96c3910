"""Training on real labelled light curves mixed with simulation, scored honestly: object-grouped K-fold
cross-validation, so every real figure is out-of-fold (an object never scores with a model that saw it, through
any set it belongs to or any template made from it).

Rows come in three kinds, all with a row key (unique), a label, a *group* (the real object a row stands for) and
a *source*:

- ``simulation``: simulated objects (``training.build_training_set``); always trained on;
- the real sets of :data:`REAL_TRAINING_SETS` (``real_sets``): our features from real light curves, or
  ALeRCE's own feature vectors; split into folds by group, stratified by (set, class);
- ``template:*``: real light curves resampled by the simulator (``simulator.templates``) to new cadences,
  distances, extinctions and noise; trained on only in the folds whose held-out part does not hold their parent;
- ``<set>@30``: the real light curves of :data:`SHORT_HISTORY_SETS` cut to what one alert 30 days after the
  first detection carries (``real_sets.alert_window``): the light curves the pipeline classifies in an object's
  first month, and in a broker's first month every object's. Their group is the object's, so a cut and its whole
  light curve are always held out together; a model trained without them still scores them (``scored``).

The shipped model trains on all of them; its real figures are the out-of-fold ones (docs/classifiers.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from alert_broker.classifiers.evaluate import Evaluation, evaluate_predictions
from alert_broker.classifiers.hierarchical import HierarchicalClassifier, as_oid_indexed
from alert_broker.classifiers.real_sets import (
    REAL_SETS,
    load_real_set,
    periodic_templates,
    transient_templates,
)
from alert_broker.classifiers.taxonomy import CLASSES, normalise_labels
from alert_broker.features.lightcurve import compute_features
from alert_broker.features.lightcurve.flux import compute_flux_features
from alert_broker.simulator.templates import (
    LSST_CADENCE,
    ZTF_CADENCE,
    as_flux_light_curves,
    resample,
    with_lsst_bands,
)

#: Real sets that train (every labelled set with features: ours from light curves or ALeRCE's vectors).
REAL_TRAINING_SETS = (
    "alerce_sne",
    "alerce_periodic",
    "bts",
    "simbad",
    "alerce_labelled",
    "alerce_features",
    "s82_rrlyrae",
)
#: Defaults of the shipped model (docs/classifiers.md: chosen on the out-of-fold figures).
DEFAULT_FOLDS = 5
REAL_WEIGHT = 3.0
TEMPLATE_WEIGHT = 1.0
#: Real light-curve sets also cut to one alert's history (``SHORT_HISTORY_DAY`` days after the first detection):
#: the sets of variables and supernovae with ZTF light curves and more than one class. BTS and Stripe 82 are one
#: class each (K-fold over them measures little, ``ONE_CLASS_SETS``); SDSS's cadence leaves 1-3 epochs in 30
#: days; the SIMBAD alerts are one alert's history already.
SHORT_HISTORY_SETS = ("alerce_periodic", "alerce_sne")
SHORT_HISTORY_DAY = 30.0
#: Resamplings per template by class: the rare real classes get more (ALeRCE's 25 periodic variables, the 30
#: spectroscopic SNe); the 483 Stripe 82 RR Lyrae and 1,726 BTS SNe Ia one each.
TEMPLATE_COUNTS = {"periodic": 20, "s82": 1, "sne": 20, "bts": 1}


@dataclass
class Rows:
    """Labelled feature rows: ``features`` (unique index = row key), and per row key its ``labels`` (class),
    ``groups`` (object the row stands for), ``sources`` (simulation, a real set, template:*) and ``weights``."""

    features: pd.DataFrame
    labels: pd.Series
    groups: pd.Series
    sources: pd.Series
    weights: pd.Series

    def __len__(self) -> int:
        return len(self.features)

    def take(self, mask) -> Rows:
        mask = np.asarray(mask, dtype=bool)
        idx = self.features.index[mask]
        return Rows(
            self.features.loc[idx],
            self.labels.loc[idx],
            self.groups.loc[idx],
            self.sources.loc[idx],
            self.weights.loc[idx],
        )

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        parts = [p for p in parts if len(p)]
        feats = pd.concat([p.features for p in parts], axis=0, sort=False)
        if feats.index.duplicated().any():
            raise ValueError("Rows.concat(): duplicate row keys")
        return Rows(
            feats,
            pd.concat([p.labels for p in parts]),
            pd.concat([p.groups for p in parts]),
            pd.concat([p.sources for p in parts]),
            pd.concat([p.weights for p in parts]),
        )


def make_rows(
    features: pd.DataFrame, labels: pd.Series, source: str, weight: float = 1.0, groups=None, prefix=None
) -> Rows:
    """Rows of one source: row keys ``<prefix>/<oid>`` (default prefix = the source), groups default to the oid."""
    feats = as_oid_indexed(features)
    lab = normalise_labels(labels.set_axis(labels.index.astype(str)).reindex(feats.index))
    keep = lab.notna().to_numpy()
    feats, lab = feats[keep], lab[keep]
    oids = feats.index.to_numpy(dtype=object)
    keys = pd.Index([f"{prefix or source}/{o}" for o in oids], name="row")
    grp = (
        pd.Series(oids, index=keys)
        if groups is None
        else pd.Series(groups.reindex(feats.index).to_numpy(dtype=object), index=keys)
    )
    return Rows(
        feats.set_axis(keys),
        pd.Series(lab.to_numpy(dtype=object), index=keys, name="class"),
        grp.rename("group"),
        pd.Series(source, index=keys, name="source"),
        pd.Series(float(weight), index=keys, name="weight"),
    )


def real_rows(
    root: str | Path,
    names=REAL_TRAINING_SETS,
    *,
    weight: float = REAL_WEIGHT,
    feature_version: str | None = None,
    alert_day: float | None = None,
) -> Rows:
    """The real training sets as rows (source = the set's name; group = the ZTF object id). With ``alert_day``
    each light curve is cut to what one alert that many days after the first detection carries, and the source
    is ``<set>@<day>`` (:func:`short_history_source`)."""
    parts = []
    for name in names:
        feats, labels = load_real_set(name, root, alert_day=alert_day, feature_version=feature_version)
        src = name if alert_day is None else short_history_source(name, alert_day)
        parts.append(make_rows(feats, labels, src, weight))
    return Rows.concat(parts)


def short_history_source(name: str, day: float = SHORT_HISTORY_DAY) -> str:
    """Source name of a real set cut to one alert's history ``day`` days after the first detection."""
    return f"{name}@{day:g}"


def short_history_rows(
    root: str | Path,
    names=SHORT_HISTORY_SETS,
    *,
    weight: float = REAL_WEIGHT,
    day: float = SHORT_HISTORY_DAY,
    feature_version: str | None = None,
) -> Rows:
    """The real light curves of ``names`` as one alert ``day`` days after their first detection sees them (its
    30-day history), as rows of source ``<set>@<day>``; group = the object, as its whole light curve's row."""
    return real_rows(root, names, weight=weight, feature_version=feature_version, alert_day=day)


def template_rows(
    root: str | Path,
    seed: int,
    *,
    counts: dict[str, int] | None = None,
    weight: float = TEMPLATE_WEIGHT,
    feature_version: str | None = None,
) -> Rows:
    """Real light curves resampled by the simulator to ZTF cadences, distances, extinctions and noise
    (``simulator.templates``), with our features; group = the parent object (the S82 stars ``S82-<n>``)."""
    counts = {**TEMPLATE_COUNTS, **(counts or {})}
    jobs = _template_jobs(root, counts)
    parts = []
    for k, (templates, n, source) in enumerate(jobs):
        if not templates or n <= 0:
            continue
        res = resample(templates, n, seed * 100 + k, ZTF_CADENCE)
        if res.detections.empty:
            continue
        feats = compute_features(res.detections, res.non_detections, feature_version=feature_version)
        parts.append(make_rows(feats, res.labels, source, weight, groups=res.parents))
    return Rows.concat(parts)


#: How ZTF's real light curves are seen again by Rubin (docs/classifiers.md, lc_hierarchical_lsst 1.1.0): moved
#: up to 7 mag fainter (periodic; Rubin saturates at ~16.5 and reaches ~24.5) or to z <= 0.8 (supernovae; no
#: K-correction), with a t^2 rise before the first ZTF point (a deeper survey sees a supernova earlier).
LSST_TEMPLATE_DM_RANGE = (-1.0, 7.0)
LSST_TEMPLATE_Z_MAX = 0.8


def _template_jobs(root: str | Path, counts: dict[str, int]) -> list[tuple[list, int, str]]:
    """(templates, resamplings each, source) of ALeRCE's periodic variables, the Stripe 82 RR Lyrae, ALeRCE's
    spectroscopic SNe and the BTS SNe Ia."""
    periodic = periodic_templates(root)
    transient = transient_templates(root)
    return [
        (
            [t for t in periodic if not t.name.startswith("S82-")],
            counts["periodic"],
            "template:alerce_periodic",
        ),
        ([t for t in periodic if t.name.startswith("S82-")], counts["s82"], "template:s82_rrlyrae"),
        (
            [t for t in transient if not t.redshift or not np.isfinite(t.redshift)],
            counts["sne"],
            "template:alerce_sne",
        ),
        ([t for t in transient if t.redshift and np.isfinite(t.redshift)], counts["bts"], "template:bts"),
    ]


def lsst_template_rows(
    root: str | Path,
    seed: int,
    *,
    counts: dict[str, int] | None = None,
    weight: float = TEMPLATE_WEIGHT,
    by_volume: bool = False,
) -> Rows:
    """Real ZTF light curves as Rubin would see them, with the difference-flux features LSST objects get:
    Rubin's u, i, z, y added from g and r by the simulator's colour model (``templates.with_lsst_bands``),
    resampled to ``LSST_CADENCE`` with forced photometry; group = the parent object, as :func:`template_rows`."""
    counts = {**TEMPLATE_COUNTS, **(counts or {})}
    parts = []
    for k, (templates, n, source) in enumerate(_template_jobs(root, counts)):
        if not templates or n <= 0:
            continue
        res = resample(
            [with_lsst_bands(t) for t in templates],
            n,
            seed * 100 + k,
            LSST_CADENCE,
            dm_range=LSST_TEMPLATE_DM_RANGE,
            z_max=LSST_TEMPLATE_Z_MAX,
            pre_rise=True,
            by_volume=by_volume,
        )
        if res.detections.empty:
            continue
        det, forced = as_flux_light_curves(res)
        feats = compute_flux_features(det, forced)
        parts.append(make_rows(feats, res.labels, source, weight, groups=res.parents))
    return Rows.concat(parts)


#: Inputs a real set may lack (docs/classifiers.md "Missing inputs"), and the feature columns each one sets: BTS
#: photometry has no non-detections, rb or sgscore1; ALeRCE's periodic light curves no positions, isdiffpos,
#: sgscore1 or non-detections; ALeRCE's vectors lack whole feature groups. A classifier that sees these gaps only
#: in one real set learns "this set" instead of "this class", so simulated and template rows get copies with
#: the same gaps, in every class.
MISSING_INPUTS: dict[str, tuple[str, ...]] = {
    "non_detections": (
        "n_non_det_",
        "diffmaglim_",
        "dmag_non_det_fid_",
        "dmag_first_det_fid_",
        "last_mjd_before_",
    ),
    "rb": ("rb",),
    "sgscore1": ("sgscore1",),
    "position": ("gal_l", "gal_b"),
    "isdiffpos": ("n_neg_", "n_pos_", "positive_fraction_"),
    # ALeRCE's older vectors (alerce_features): no SPM fit, PPE, power rates, delta_period or corrected colours
    "older_vectors": ("SPM_", "PPE", "Power_rate_", "delta_period_", "g-r_max_corr", "g-r_mean_corr"),
}
#: Share of simulated / template rows copied with missing inputs, and the chance each input is dropped in a copy.
MASKED_SHARE = 0.5
MASK_PROBABILITY = 0.5


def _masked(features: pd.DataFrame, drop: dict[str, np.ndarray]) -> pd.DataFrame:
    """``features`` with the inputs of ``drop`` (input -> rows) removed, as the feature code leaves them when
    the input is absent: counts of non-detections 0 and their statistics NaN; rb, sgscore1, positions NaN;
    without isdiffpos every detection counts as positive."""
    out = features.copy()
    cols = list(out.columns)
    for name, rows in drop.items():
        if not rows.any():
            continue
        if name == "non_detections":
            for c in cols:
                if c.startswith("n_non_det_"):
                    out.loc[rows, c] = 0.0
                elif any(c.startswith(pfx) or pfx in c for pfx in MISSING_INPUTS[name][1:]):
                    out.loc[rows, c] = np.nan
        elif name == "isdiffpos":
            for fid in (1, 2):
                if f"n_det_{fid}" in out:
                    n = out.loc[rows, f"n_det_{fid}"]
                    out.loc[rows, f"n_neg_{fid}"] = np.where(n.notna(), 0.0, np.nan)
                    out.loc[rows, f"n_pos_{fid}"] = n
                    out.loc[rows, f"positive_fraction_{fid}"] = np.where(n.notna(), 1.0, np.nan)
        else:  # entries ending in "_" are prefixes, others exact names
            for c in cols:
                if any(c.startswith(e) if e.endswith("_") else c == e for e in MISSING_INPUTS[name]):
                    out.loc[rows, c] = np.nan
    return out


def masked_copies(
    rows: Rows, seed: int, share: float = MASKED_SHARE, probability: float = MASK_PROBABILITY
) -> Rows:
    """Copies of a random ``share`` of ``rows`` with each of :data:`MISSING_INPUTS` dropped with
    ``probability`` (independently; copies that drop nothing are left out). Row keys get a ``#m`` suffix;
    groups, labels, sources and weights are kept."""
    rng = np.random.default_rng(seed)
    chosen = rng.random(len(rows)) < share
    sub = rows.take(chosen)
    drop = {name: rng.random(len(sub)) < probability for name in MISSING_INPUTS}
    any_drop = np.logical_or.reduce(list(drop.values()))
    sub = sub.take(any_drop)
    drop = {k: v[any_drop] for k, v in drop.items()}
    feats = _masked(sub.features, drop)
    keys = pd.Index([f"{k}#m" for k in sub.features.index], name="row")
    return Rows(
        feats.set_axis(keys),
        sub.labels.set_axis(keys),
        sub.groups.set_axis(keys),
        sub.sources.set_axis(keys),
        sub.weights.set_axis(keys),
    )


def training_rows(
    root: str | Path,
    sim_features: pd.DataFrame,
    sim_labels: pd.Series,
    seed: int,
    *,
    real_weight: float = REAL_WEIGHT,
    templates: bool = True,
    feature_version: str | None = None,
) -> tuple[Rows, Rows, Rows | None]:
    """(simulation, real, templates) rows as ``broker train lc --real-data`` trains on them: simulated and
    template rows each with masked copies (:func:`masked_copies`), the real sets of :data:`REAL_TRAINING_SETS`
    weighted ``real_weight``; templates None when ``templates`` is false."""
    sim = make_rows(sim_features, sim_labels, "simulation")
    sim = Rows.concat([sim, masked_copies(sim, seed * 7 + 1)])
    real = real_rows(root, weight=real_weight, feature_version=feature_version)
    tpl = template_rows(root, seed, feature_version=feature_version) if templates else None
    if tpl is not None and len(tpl):
        tpl = Rows.concat([tpl, masked_copies(tpl, seed * 7 + 2)])
    return sim, real, tpl


def assign_folds(real: Rows, k: int = DEFAULT_FOLDS, seed: int = 0) -> pd.Series:
    """Fold (0..k-1) of every real row: groups never split, folds stratified by (source, class)."""
    strata = (real.sources.astype(str) + ":" + real.labels.astype(str)).to_numpy()
    groups = real.groups.astype(str).to_numpy()
    folds = np.full(len(real), -1)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for f, (_, test) in enumerate(splitter.split(np.zeros(len(real)), strata, groups)):
        folds[test] = f
    return pd.Series(folds, index=real.features.index, name="fold")


def fit_rows(rows: Rows, **model_kwargs) -> HierarchicalClassifier:
    """A hierarchical classifier trained on ``rows`` with their weights (classes balanced)."""
    fit_jobs = model_kwargs.pop("fit_jobs", None)
    model = HierarchicalClassifier(**model_kwargs)
    return model.fit(rows.features, rows.labels, sample_weight=rows.weights, n_jobs=fit_jobs)


@dataclass
class CrossValidation:
    """Out-of-fold results of the real rows (then the ``scored`` rows, in that order): class probabilities (row
    key x 15 classes), the fold of each row, and the fold models' untempered outputs (for fitting temperatures,
    ``hierarchical.fit_temperatures``)."""

    proba: pd.DataFrame
    folds: pd.Series
    top_raw: np.ndarray
    cond_raw: np.ndarray


def _fold_of_groups(real: Rows, folds: pd.Series, rows: Rows) -> np.ndarray:
    """The fold of each of ``rows`` by its group's fold among the real rows (-1: a group no real row has)."""
    by_group = pd.Series(folds.to_numpy(), index=real.groups.astype(str).to_numpy())
    by_group = by_group[~by_group.index.duplicated()]
    return by_group.reindex(rows.groups.astype(str).to_numpy()).fillna(-1).to_numpy(dtype=int)


def cross_validate(
    always: Rows,
    real: Rows,
    extra: Rows | None = None,
    *,
    scored: Rows | None = None,
    k: int = DEFAULT_FOLDS,
    seed: int = 0,
    **model_kwargs,
) -> CrossValidation:
    """Out-of-fold predictions of every real row: fold f trains on ``always`` (simulation), the real rows of
    the other folds and the ``extra`` rows (templates) whose group is not held out in fold f. ``scored`` rows
    are never trained on, only scored, each by the fold model that held its group out (a group no real row has
    is left unscored, probabilities NaN): how a recipe without them answers them."""
    folds = assign_folds(real, k, seed)
    if scored is not None and len(scored):
        folds = pd.concat(
            [folds, pd.Series(_fold_of_groups(real, folds, scored), index=scored.features.index)]
        )
        targets = Rows.concat([real, scored])
    else:
        targets = real
    n = len(targets)
    proba = np.full((n, len(CLASSES)), np.nan)
    top_raw = np.full((n, 3), np.nan)
    cond_raw = np.full((n, len(CLASSES)), np.nan)
    train_fold = folds.to_numpy()[: len(real)]
    for f in range(k):
        test = (folds == f).to_numpy()
        if not test.any():
            continue
        held_groups = set(targets.groups[test].astype(str))
        parts = [always, real.take(train_fold != f)]  # a scored row's group is in its real rows' fold
        if extra is not None and len(extra):
            parts.append(extra.take(~extra.groups.astype(str).isin(held_groups).to_numpy()))
        model = fit_rows(Rows.concat(parts), **dict(model_kwargs))
        feats = targets.features[test]
        proba[test] = model.predict_proba(feats).reindex(columns=list(CLASSES)).to_numpy()
        top_raw[test], cond_raw[test] = model.raw_probabilities(feats)
    frame = pd.DataFrame(proba, index=targets.features.index, columns=list(CLASSES))
    return CrossValidation(frame, folds.rename("fold"), top_raw, cond_raw)


#: Real sets of one class: K-fold over them measures little (the other folds' rows of the same set teach "a light
#: curve like these is this class": SDSS's cadence, BTS's missing rb and non-detections), so they are also
#: scored *leave-set-out*: by a model that saw no row of the set, no template made from its objects, and none of
#: its objects through another set.
ONE_CLASS_SETS = ("bts", "s82_rrlyrae")


def leave_set_out(
    always: Rows,
    real: Rows,
    extra: Rows | None = None,
    sources=ONE_CLASS_SETS,
    temperatures: tuple[float, float] | None = None,
    sky_prior: str | None = None,
    scored: Rows | None = None,
    **model_kwargs,
) -> dict[str, pd.DataFrame]:
    """Class probabilities (row key x 15 classes) of each real set in ``sources`` from a model trained on
    ``always``, every other real row whose object is not in the set, and the ``extra`` rows whose parent is not;
    tempered with ``temperatures`` (top, within branches) and moved by ``sky_prior`` when given. The same model
    also answers the ``scored`` rows of the set's objects (e.g. their light curves cut to one alert's history),
    under their own source names."""
    out = {}
    for src in sources:
        test = (real.sources == src).to_numpy()
        if not test.any():
            continue
        held = set(real.groups[test].astype(str))
        parts = [always, real.take(~real.groups.astype(str).isin(held).to_numpy())]
        if extra is not None and len(extra):
            parts.append(extra.take(~extra.groups.astype(str).isin(held).to_numpy()))
        model = fit_rows(Rows.concat(parts), **dict(model_kwargs))
        if temperatures is not None:
            model.temperature_top_, model.temperature_branch_ = temperatures
        model.sky_prior_ = sky_prior
        out[src] = model.predict_proba(real.features[test]).reindex(columns=list(CLASSES))
        if scored is not None and len(scored):
            also = scored.groups.astype(str).isin(held).to_numpy()
            for name in pd.unique(scored.sources[also]):
                sel = also & (scored.sources == name).to_numpy()
                out[str(name)] = model.predict_proba(scored.features[sel]).reindex(columns=list(CLASSES))
    return out


def metrics_by_source(proba: pd.DataFrame, rows: Rows) -> dict[str, Evaluation]:
    """Evaluation per source of out-of-fold (or any) probabilities of ``rows``."""
    out = {}
    for source in pd.unique(rows.sources):
        sel = (rows.sources == source).to_numpy()
        out[str(source)] = evaluate_predictions(proba[sel], rows.labels[sel], rows.features[sel])
    return out


def describe_sources() -> dict[str, str]:
    """One line per real source, for reports."""
    return {name: desc for name, (_, desc) in REAL_SETS.items()}
