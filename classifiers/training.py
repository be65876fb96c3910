"""Training sets and training: simulated ZTF light curves (through the real decoder and feature code), or a
user's labelled set joined with features from the lake; plus the ``broker train lc`` / ``broker evaluate`` CLI.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn

from alert_broker.classifiers.calibration import summary as calibration_summary
from alert_broker.classifiers.crossval import (
    DEFAULT_FOLDS,
    LSST_TEMPLATE_DM_RANGE,
    LSST_TEMPLATE_Z_MAX,
    MASK_PROBABILITY,
    MASKED_SHARE,
    MISSING_INPUTS,
    REAL_WEIGHT,
    TEMPLATE_COUNTS,
    Rows,
    cross_validate,
    leave_set_out,
    lsst_template_rows,
    make_rows,
    masked_copies,
    metrics_by_source,
    short_history_rows,
    training_rows,
)
from alert_broker.classifiers.evaluate import (
    evaluate,
    evaluate_predictions,
    evaluate_real,
    model_feature_version,
    write_report,
)
from alert_broker.classifiers.hierarchical import (
    BACKENDS,
    HierarchicalClassifier,
    as_oid_indexed,
    fit_temperatures,
    temper,
)
from alert_broker.classifiers.real_sets import REAL_SETS
from alert_broker.classifiers.registry import fingerprint, load, save
from alert_broker.classifiers.sky_density import SKY_PRIORS, apply_sky_prior, gal_b_column
from alert_broker.classifiers.stamp.cli import add_export_onnx, add_train_stamp
from alert_broker.classifiers.taxonomy import BRANCH_OF, BRANCHES, CLASSES, normalise_labels
from alert_broker.features import FEATURE_VERSION, FLUX_FEATURE_VERSION, compute_features, correct
from alert_broker.features.lightcurve import FEATURE_VERSIONS
from alert_broker.features.science import flux_features_of
from alert_broker.features.tables import Tables
from alert_broker.simulator import SimConfig, build_world, iter_alerts, truth_table
from alert_broker.surveys.decode import decode_batch
from alert_broker.surveys.lsst import OID_PREFIX
from alert_broker.surveys.messages import RawMessage

#: Object shares for training sets. An object gets features only with >= 6 detections in g or r in its last
#: alert's history (HISTORY_DAYS); that happens for ~60-70% of simulated blazars and CVs but ~10% of AGN and SNe
#: Ibc (faint or low-amplitude), so shares are the inverse of the measured yield (365-day histories, 20 nights,
#: seed 1) to give each class a similar number of feature rows. Asteroids and bogus are left out: they never
#: reach this classifier.
FEATURE_YIELD: dict[str, float] = {
    "SNIa": 0.165,
    "SNIbc": 0.103,
    "SNII": 0.323,
    "SLSN": 0.486,
    "QSO": 0.147,
    "AGN": 0.096,
    "Blazar": 0.609,
    "CV/Nova": 0.727,
    "YSO": 0.51,
    "LPV": 0.585,
    "E": 0.422,
    "DSCT": 0.173,
    "RRL": 0.53,
    "CEP": 0.512,
    "Periodic-Other": 0.216,
}
TRAINING_FRACTIONS: dict[str, float] = {c: 1.0 / FEATURE_YIELD[c] for c in CLASSES}

#: Defaults: 20 alert nights, each last alert's history reaching HISTORY_DAYS back, 22,000 objects -> ~5,400
#: feature rows (seed 1).
DEFAULT_OBJECTS = 22_000
DEFAULT_NIGHTS = 20
DEFAULT_SEED = 1
#: XGBoost: better on the held-out simulation and several times faster to classify (docs/classifiers.md).
DEFAULT_BACKEND = "xgb"
DECODE_CHUNK = 5_000
#: Objects per simulator chunk in training runs: year-long histories make ~10x more rows per object, and smaller
#: chunks keep the peak memory near that of the 30-day runs (the chunk size is part of the seed's contract).
SIM_CHUNK = 5_000
#: Light-curve length seen by the classifier in training [d]. In production the classifier reads the history
#: store's accumulated light curve (years for persistent sources, a whole SN), not one alert's 30 days; real
#: labelled periodic light curves span ~400 d (lightcurves/alerce_periodic). One year keeps a full observing
#: season of a variable and a whole supernova, at a few times the cost of 30-day histories.
HISTORY_DAYS = 365.0


#: Days of history one ZTF alert carries (prv_candidates): the window of non-detections the history store gets.
ALERT_HISTORY_DAYS = 30.0


#: ``--short-histories``: simulated objects seen as one alert sees them (its 30-day history, not the history
#: store's year), drawn from seed + this offset so that they are other objects than the year-long ones.
SHORT_HISTORY_SEED_OFFSET = 500
SHORT_HISTORY_SOURCE = "simulation@30"


def history_store_non_detections(
    detections: pd.DataFrame, non_detections: pd.DataFrame, window: float = ALERT_HISTORY_DAYS
) -> pd.DataFrame:
    """The non-detections the pipeline's history store accumulates for these detections: every ZTF detection is
    an alert whose history reaches ``window`` days back, so a non-detection is known only when some detection of
    the object follows it within ``window`` days (none from before that, nor after the last alert).

    A simulated history of ``HISTORY_DAYS`` holds a year of non-detections before a supernova; the real light
    curves (ALeRCE's, the history store's) hold at most a month: the training set keeps what the sky gives."""
    if non_detections is None or non_detections.empty or detections.empty:
        return non_detections
    nd = non_detections.reset_index(drop=True)
    nd_key = pd.DataFrame({"oid": nd["oid"].astype(str).to_numpy(), "mjd": nd["mjd"].to_numpy(dtype=float)})
    nd_key["row"] = np.arange(len(nd))
    det_key = pd.DataFrame(
        {"oid": detections["oid"].astype(str).to_numpy(), "t_det": detections["mjd"].to_numpy(dtype=float)}
    )
    det_key["mjd"] = det_key["t_det"]
    matched = pd.merge_asof(
        nd_key.sort_values("mjd"),
        det_key.sort_values("mjd")[["oid", "mjd", "t_det"]],
        on="mjd",
        by="oid",
        direction="forward",
        tolerance=float(window),
    )
    keep = matched.loc[matched["t_det"].notna(), "row"].to_numpy()
    return nd.iloc[np.sort(keep)].reset_index(drop=True)


def last_alert_tables(
    n_objects: int,
    nights: int,
    seed: int,
    class_fractions: dict[str, float] | None = None,
    history_days: float | None = None,
    survey: str = "ztf",
    history_store_window: float | None = ALERT_HISTORY_DAYS,
):
    """Simulate alerts (no stamps) of ``survey`` and decode each object's LAST alert (its history holds the
    light curve). ZTF non-detections are then cut to what the history store accumulates
    (:func:`history_store_non_detections`; ``history_store_window=None`` keeps the whole simulated history).

    ``history_days`` (default :data:`HISTORY_DAYS`) is how far back that history reaches: longer than a ZTF
    alert's 30 days, it stands for the light curve the pipeline's history store accumulates from every alert
    (LSST alerts carry twelve months themselves). Returns (tables with corrected detections, truth indexed by oid).
    """
    cfg = SimConfig(
        survey=survey,
        nights=nights,
        objects=n_objects,
        seed=seed,
        stamps=False,
        class_fractions=dict(TRAINING_FRACTIONS if class_fractions is None else class_fractions),
        history_days=HISTORY_DAYS if history_days is None else history_days,
        chunk_size=SIM_CHUNK,
    )
    last: dict[str, bytes] = {}
    for alert in iter_alerts(cfg):  # time-sorted per object: the last one seen is the latest
        last[alert.oid] = alert.payload
    payloads = list(last.values())
    parts = []
    for start in range(0, len(payloads), DECODE_CHUNK):
        msgs = [
            RawMessage(f"sim-{seed}", 0, start + i, p)
            for i, p in enumerate(payloads[start : start + DECODE_CHUNK])
        ]
        tables, dead, _ = decode_batch(msgs, f"train-{seed}-{start}")
        if dead:
            raise RuntimeError(f"simulated alerts failed to decode: {dead[0].reason}")
        parts.append(tables)
    tables = Tables(
        detections=pd.concat([p.detections for p in parts], ignore_index=True) if parts else pd.DataFrame(),
        non_detections=pd.concat([p.non_detections for p in parts], ignore_index=True)
        if parts
        else pd.DataFrame(),
        forced_photometry=(
            pd.concat([p.forced_photometry for p in parts], ignore_index=True) if parts else pd.DataFrame()
        ),
    )
    if not tables.detections.empty:
        tables.detections = correct(tables.detections)
        if survey == "ztf" and history_store_window:
            tables.non_detections = history_store_non_detections(
                tables.detections, tables.non_detections, history_store_window
            )
    truth = truth_table(build_world(cfg))
    # the truth names objects by the simulator's id; the tables by the survey's oid (LSST: "LSST" + diaObjectId)
    truth["oid"] = truth["oid"].astype(str)
    if survey == "lsst":
        truth["oid"] = OID_PREFIX + truth["oid"]
    return tables, truth.set_index("oid")


def build_training_set(
    n_objects: int = DEFAULT_OBJECTS,
    nights: int = DEFAULT_NIGHTS,
    seed: int = 1,
    class_fractions: dict[str, float] | None = None,
    history_days: float | None = None,
    survey: str = "ztf",
    history_store_window: float | None = ALERT_HISTORY_DAYS,
    feature_version: str | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """(features indexed by oid, labels aligned with them) from a simulated run of ``survey`` (ZTF: magnitude
    features under ``feature_version``, default the current FEATURE_VERSION).

    ZTF: ``features.compute_features`` on the decoded, corrected last alert of every object (>= 6 detections in
    g or r). LSST: the difference-flux features (``features.compute_flux_features``) of the last alert's
    detections and forced photometry (>= 6 detections). Only objects whose true class is one of the 15 are kept.
    """
    tables, truth = last_alert_tables(
        n_objects, nights, seed, class_fractions, history_days, survey, history_store_window
    )
    if tables.detections.empty:
        raise ValueError(f"the simulation (objects={n_objects}, nights={nights}) produced no alerts")
    if survey == "lsst":
        raw = flux_features_of(tables.detections, tables.forced_photometry)
    else:
        raw = compute_features(tables.detections, tables.non_detections, feature_version=feature_version)
    feats = as_oid_indexed(raw)
    labels = normalise_labels(truth["class"].reindex(feats.index))
    keep = labels.notna().to_numpy()
    labels = labels[keep].rename("class")
    return feats[keep], labels


def short_history_simulation(n_objects: int, nights: int, seed: int) -> Rows:
    """Rows of ``n_objects`` simulated objects seen as one alert sees them, its history reaching 30 days back
    (seed + :data:`SHORT_HISTORY_SEED_OFFSET`: other objects than the year-long ones), with masked copies."""
    feats, labels = build_training_set(
        n_objects, nights, seed + SHORT_HISTORY_SEED_OFFSET, history_days=ALERT_HISTORY_DAYS
    )
    sim = make_rows(feats, labels, SHORT_HISTORY_SOURCE, prefix="sim30")
    return Rows.concat([sim, masked_copies(sim, seed * 7 + 3)])


def one_alert_recipe(
    sim: Rows,
    real: Rows,
    root: str | Path,
    seed: int,
    nights: int,
    *,
    objects: int,
    cuts: bool,
    weight: float,
) -> tuple[Rows, Rows, Rows | None]:
    """(simulation, real, scored) rows with a recipe's one-alert histories: ``objects`` simulated objects seen
    with one alert's history added to the simulation, and the real sets cut to one alert's history
    (``crossval.short_history_rows``) trained on when ``cuts`` (weighted ``weight``), else only scored.

    Why: the pipeline classifies whatever the history store holds, and for every object's first month (for
    every object in a new broker's first month) that is one alert's 30 days; a model that saw only year-long
    light curves sends many real 30-day variables out of their branch (docs/classifiers.md, "1.6.0")."""
    if objects:
        sim = Rows.concat([sim, short_history_simulation(objects, nights, seed)])
    cut = short_history_rows(root, weight=weight)
    if cuts:
        return sim, Rows.concat([real, cut]), None
    return sim, real, cut


def load_labelled_set(labels_path: str | Path, features_path: str | Path) -> tuple[pd.DataFrame, pd.Series]:
    """A user's labelled set: a table of (oid, class) (CSV or Parquet; ALeRCE's ``classALeRCE`` accepted) joined
    with features from a Parquet file or folder (e.g. ``{lake}/features``: the latest row per oid is kept)."""
    labels_path, features_path = Path(labels_path), Path(features_path)
    lab = pd.read_csv(labels_path) if labels_path.suffix == ".csv" else pd.read_parquet(labels_path)
    if "oid" not in lab.columns:
        lab = lab.reset_index()
    col = next((c for c in ("class", "classALeRCE", "class_name", "label") if c in lab.columns), None)
    if col is None or "oid" not in lab.columns:
        raise ValueError(
            f"{labels_path}: need columns oid and class (or classALeRCE), got {list(lab.columns)}"
        )
    labels = normalise_labels(lab.set_index(lab["oid"].astype(str))[col]).dropna()
    feats = pd.read_parquet(features_path)
    if "oid" not in feats.columns:
        feats = feats.reset_index()
    if "FEATURE_VERSION" in feats.columns:
        feats = feats[feats["FEATURE_VERSION"].astype(str) == FEATURE_VERSION]
    if "lastmjd" in feats.columns:
        feats = feats.sort_values("lastmjd", kind="stable")
    feats = as_oid_indexed(feats.drop_duplicates("oid", keep="last"))
    common = feats.index.intersection(labels.index)
    if len(common) == 0:
        raise ValueError(f"no labelled oid of {labels_path} has features in {features_path}")
    return feats.loc[common], labels.loc[common].rename("class")


def train(
    features: pd.DataFrame,
    labels: pd.Series,
    *,
    name: str = "lc_hierarchical",
    version: str = "1.0.0",
    backend: str = DEFAULT_BACKEND,
    n_estimators: int = 300,
    seed: int = 0,
    n_jobs: int | None = 1,
    fit_jobs: int | None = None,
    training_set: dict | None = None,
    feature_version: str = FEATURE_VERSION,
    sample_weight: pd.Series | None = None,
    **kwargs,
) -> HierarchicalClassifier:
    """Fit a :class:`HierarchicalClassifier` (``backend`` "rf" or "xgb", seeded by ``seed``).

    ``n_jobs`` is the model's inference thread count (stored with it), ``fit_jobs`` the threads used to train
    (default ``n_jobs``; the trees do not depend on it). The metadata records the training-set fingerprint,
    class counts, backend and hyper-parameters, library versions, training time and ``training_set`` (a
    description of where the rows came from).
    """
    model = HierarchicalClassifier(
        name=name,
        version=version,
        backend=backend,
        n_estimators=n_estimators,
        random_state=seed,
        n_jobs=n_jobs,
        **kwargs,
    )
    t0 = time.perf_counter()
    model.fit(features, labels, n_jobs=fit_jobs, sample_weight=sample_weight)
    model.feature_version = feature_version  # which feature set it reads (the registry's metadata says it)
    seconds = time.perf_counter() - t0
    y = normalise_labels(labels)
    model.metadata = {
        "training_fingerprint": fingerprint(features, labels),
        "extra": {
            "training_counts": {str(k): int(v) for k, v in y.value_counts().items()},
            "backend": backend,
            "hyperparameters": hyperparameters(model),
            "libraries": library_versions(backend),
            "training_seconds": round(seconds, 2),
            "training_threads": fit_jobs if fit_jobs is not None else n_jobs,
            "training_set": training_set or {"source": "in-memory table", "rows": int(len(features))},
        },
    }
    return model


def hyperparameters(model: HierarchicalClassifier) -> dict:
    """The settings that define a model's trees (what a registry reader needs to retrain it)."""
    keys = ["backend", "n_estimators", "max_depth", "outlier_estimators", "random_state"]
    keys += ["learning_rate"] if model.backend == "xgb" else ["min_samples_leaf", "max_features"]
    out = {k: getattr(model, k) for k in keys}
    if model.backend == "xgb":
        sub = model.top_
        out |= {
            "max_depth": sub.max_depth,
            "subsample": sub.subsample,
            "colsample_bytree": sub.colsample_bytree,
        }
        out |= {"balancing": "sample_weight=balanced", "tree_method": "hist"}
    else:
        out["balancing"] = "class_weight=balanced_subsample"
    return out


def library_versions(backend: str) -> dict[str, str]:
    """Versions of the libraries whose pickles the model holds (a reader must load it with the same ones)."""
    out = {"scikit-learn": sklearn.__version__, "numpy": np.__version__}
    if backend == "xgb":
        import xgboost  # lazy: ~0.75 s to import; only the xgb backend's models hold its pickles

        out["xgboost"] = xgboost.__version__
    return out


# -- command line ------------------------------------------------------------------------------------------
def add_train_lc(train_subparsers) -> None:
    """Add ``lc`` under an existing ``train`` sub-command (so the stamp classifier can add ``stamp`` beside it)."""
    p = train_subparsers.add_parser(
        "lc",
        help="train the hierarchical light-curve classifier",
        description="Train the light-curve classifier. With the defaults the result is a pure function of "
        "--seed: the same command regenerates the same model.joblib, byte for byte.",
    )
    p.add_argument("--objects", type=int, default=DEFAULT_OBJECTS, help="simulated objects")
    p.add_argument("--nights", type=int, default=DEFAULT_NIGHTS, help="simulated alert nights")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="simulation and model seed")
    p.add_argument("--labels", help="a user's labelled set (oid,class CSV/Parquet) instead of simulating")
    p.add_argument("--features", help="features Parquet file or folder (e.g. LAKE/features) for --labels")
    p.add_argument(
        "--survey",
        choices=("ztf", "lsst"),
        default="ztf",
        help="ztf: magnitude features of simulated ZTF nights; lsst: difference-flux features of simulated LSST "
        "nights (default name lc_hierarchical_lsst)",
    )
    p.add_argument("--name", default=None, help="default: lc_hierarchical (ztf), lc_hierarchical_lsst (lsst)")
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND, help="random forest or XGBoost")
    p.add_argument("--n-estimators", type=int, default=300, help="trees per forest / boosting rounds")
    p.add_argument("--n-jobs", type=int, default=1, help="threads for training (the model is the same)")
    p.add_argument(
        "--models",
        "--out",
        dest="models",
        default=None,
        help="registry root (env BROKER_MODELS, default ./models)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    p.add_argument(
        "--eval-objects", type=int, default=0, help="also evaluate on this many held-out objects (seed+1000)"
    )
    p.add_argument(
        "--feature-version",
        default=None,
        choices=FEATURE_VERSIONS,
        help="magnitude feature definition (default: the current one; an earlier one reproduces older models)",
    )
    p.add_argument(
        "--history-window",
        type=float,
        default=ALERT_HISTORY_DAYS,
        help="days of non-detections a simulated light curve keeps before each detection, as the history store "
        "accumulates them from alerts (0: the whole simulated history, as models before 1.2.0 were trained)",
    )
    p.add_argument(
        "--real-data",
        default=None,
        help="shared data root: also train on the real labelled sets and real light curves resampled as "
        "templates; out-of-fold real figures from object-grouped cross-validation (docs/classifiers.md)",
    )
    p.add_argument(
        "--cv-folds", type=int, default=DEFAULT_FOLDS, help="folds for the out-of-fold figures (0: none)"
    )
    p.add_argument("--real-weight", type=float, default=REAL_WEIGHT, help="weight of a real row (sim = 1)")
    p.add_argument(
        "--no-templates", dest="templates", action="store_false", help="no resampled real light curves"
    )
    p.add_argument(
        "--short-histories",
        type=int,
        default=0,
        help="with --real-data: also this many simulated objects seen with one alert's 30-day history (0: none)",
    )
    p.add_argument(
        "--one-alert-cuts",
        action="store_true",
        help="with --real-data: also train on the real light curves cut to one alert's 30-day history "
        "(as models from 1.6.0; without it they are only scored out of fold)",
    )
    p.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="no temperature scaling (fitted on out-of-fold real and held-out simulated predictions)",
    )
    p.add_argument(
        "--sky-prior",
        choices=SKY_PRIORS,
        default=None,
        help="move the final probabilities to the object's Galactic latitude (classifiers/sky_density.py); "
        "ZTF models only",
    )
    p.set_defaults(func=cmd_train_lc)


def add_evaluate(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate a light-curve model; writes a Markdown + PNG report")
    p.add_argument("--name", default="lc_hierarchical")
    p.add_argument("--version", default=None, help="default: the latest")
    p.add_argument("--models", default=None, help="registry root (env BROKER_MODELS, default ./models)")
    p.add_argument("--objects", type=int, default=20_000, help="held-out simulated objects (0: none)")
    p.add_argument("--nights", type=int, default=DEFAULT_NIGHTS)
    p.add_argument("--seed", type=int, default=1001, help="held-out seed (differs from training's)")
    p.add_argument(
        "--real",
        default=None,
        help=f"real labelled sets: 'all' or a comma-separated list of {', '.join(REAL_SETS)}",
    )
    p.add_argument(
        "--data",
        "--real-data",
        dest="data",
        default=None,
        help="shared data root (default $BROKER_SHARED_DATA or ../shared/data); "
        "--real-data alone evaluates on alerce_features",
    )
    p.add_argument(
        "--alert-day",
        type=float,
        default=None,
        help="cut real light curves to one alert's 30-day history, this many days after the first detection",
    )
    p.add_argument(
        "--cross-validate",
        action="store_true",
        help="also the out-of-fold figures of every real set: models trained on simulation + the real sets "
        "(+ real light curves as templates) in object-grouped K-fold cross-validation, beside the model's own",
    )
    p.add_argument("--cv-objects", type=int, default=6000, help="simulated objects of the cross-validation")
    p.add_argument("--cv-folds", type=int, default=DEFAULT_FOLDS)
    p.add_argument(
        "--cv-seed", type=int, default=1, help="seed of the cross-validation's simulation and folds"
    )
    p.add_argument("--cv-estimators", type=int, default=None, help="trees per model (default: the model's)")
    p.add_argument("--real-weight", type=float, default=REAL_WEIGHT, help="weight of a real row (sim = 1)")
    p.add_argument("--no-templates", dest="templates", action="store_false", help="no real templates")
    p.add_argument("--n-jobs", type=int, default=2, help="training threads of the cross-validation")
    p.add_argument("--out", default="reports/classifiers", help="report folder")
    p.set_defaults(func=cmd_evaluate)


def real_set_names(spec: str | None, data_given: bool) -> list[str]:
    """``--real`` -> the list of set names (``all`` = every set); ``--real-data`` alone = alerce_features."""
    if not spec:
        return ["alerce_features"] if data_given else []
    names = list(REAL_SETS) if spec.strip() == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in REAL_SETS]
    if unknown:
        raise SystemExit(f"--real: unknown set(s) {unknown}; known: all, {', '.join(REAL_SETS)}")
    return names


def register(subparsers) -> None:
    """Add ``train lc`` and ``evaluate`` to the ``broker`` parser's sub-commands."""
    train_p = subparsers.choices.get("train") if hasattr(subparsers, "choices") else None
    if train_p is None:
        train_p = subparsers.add_parser("train", help="train a classifier")
        train_p.add_subparsers(dest="model_kind", required=True)
    sub = next(a for a in train_p._actions if isinstance(a, argparse._SubParsersAction))
    add_train_lc(sub)
    add_train_stamp(sub)  # `train stamp`: the stamp CNN (stamp.cli imports no TensorFlow)
    add_evaluate(subparsers)
    add_export_onnx(subparsers)


def cmd_train_lc(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    survey = getattr(args, "survey", "ztf")
    name = args.name or ("lc_hierarchical_lsst" if survey == "lsst" else "lc_hierarchical")
    history_window = getattr(args, "history_window", ALERT_HISTORY_DAYS)
    window = history_window if history_window and history_window > 0 else None
    args.feature_version = getattr(args, "feature_version", None)
    real_data = getattr(args, "real_data", None)
    if real_data and args.labels:
        raise SystemExit(
            "--real-data mixes real light curves into a simulated training set, not a labelled one"
        )
    if real_data and survey == "lsst" and not getattr(args, "templates", True):
        raise SystemExit(
            "--survey lsst --real-data trains on real light curves as templates: drop --no-templates"
        )
    if real_data and args.feature_version not in (None, FEATURE_VERSION):
        raise SystemExit(f"--real-data trains on the current features ({FEATURE_VERSION}) only")
    if getattr(args, "sky_prior", None) and survey != "ztf":
        raise SystemExit("--sky-prior reads gal_b of ZTF features; LSST flux features do not carry it")
    if args.labels:
        if survey != "ztf":
            raise SystemExit(
                "--labels trains on ZTF magnitude features; --survey lsst simulates its training set"
            )
        if not args.features:
            raise SystemExit("--labels needs --features (a Parquet file or folder of feature rows)")
        feats, labels = load_labelled_set(args.labels, args.features)
        source = {"source": "labelled set", "labels": str(args.labels), "features": str(args.features)}
    else:
        feats, labels = build_training_set(
            args.objects,
            args.nights,
            args.seed,
            survey=survey,
            history_store_window=window,
            feature_version=args.feature_version,
        )
        source = {
            "source": "simulation",
            "survey": survey,
            "objects": args.objects,
            "nights": args.nights,
            "seed": args.seed,
            "history_store_window": window,
        }
    source["rows"] = int(len(feats))
    print(f"training set: {len(feats)} objects, {feats.shape[1]} columns ({time.perf_counter() - t0:.0f} s)")
    if real_data and survey == "lsst":
        return _train_lsst_with_templates(args, name, feats, labels, source, t0)
    if real_data:
        return _train_lc_with_real(args, name, feats, labels, source, t0)
    version = FLUX_FEATURE_VERSION if survey == "lsst" else (args.feature_version or FEATURE_VERSION)
    model = _fit(args, name, feats, labels, source, version)
    model.sky_prior_ = getattr(args, "sky_prior", None)
    metrics = {}
    if args.eval_objects:
        test_f, test_y = build_training_set(
            args.eval_objects,
            args.nights,
            args.seed + 1000,
            survey=survey,
            history_store_window=window,
            feature_version=args.feature_version,
        )
        metrics = evaluate(model, test_f, test_y).summary()
        metrics["held_out"] = {"survey": survey, "objects": args.eval_objects, "seed": args.seed + 1000}
        print(metrics)
    return _save_model(model, args, metrics, t0)


def _model_kwargs(args: argparse.Namespace, name: str, seed: int) -> dict:
    """The classifier's arguments for the fold models and the final one of a ``--real-data`` recipe."""
    return dict(
        name=name,
        version=args.version,
        backend=args.backend,
        n_estimators=args.n_estimators,
        random_state=seed,
        n_jobs=1,
        fit_jobs=args.n_jobs,
    )


def _fit(
    args: argparse.Namespace,
    name: str,
    features: pd.DataFrame,
    labels: pd.Series,
    training_set: dict,
    feature_version: str,
    sample_weight: pd.Series | None = None,
) -> HierarchicalClassifier:
    """The model ``broker train lc`` saves, with the command's backend, size, seed and threads."""
    model = train(
        features,
        labels,
        name=name,
        version=args.version,
        backend=args.backend,
        n_estimators=args.n_estimators,
        seed=args.seed,
        fit_jobs=args.n_jobs,
        training_set=training_set,
        feature_version=feature_version,
        sample_weight=sample_weight,
    )
    print(f"{args.backend} model trained in {model.metadata['extra']['training_seconds']:.0f} s")
    return model


def _save_model(model, args: argparse.Namespace, metrics: dict, t0: float) -> int:
    """Save ``model`` with ``metrics`` to the registry and say where, how big, how long in all."""
    path = save(model, root=args.models, metrics=metrics, overwrite=args.overwrite)
    size = (path / "model.joblib").stat().st_size
    print(f"saved {path} ({size / 1e6:.1f} MB, {time.perf_counter() - t0:.0f} s in all)")
    return 0


def _train_lsst_with_templates(
    args: argparse.Namespace, name: str, feats: pd.DataFrame, labels: pd.Series, source: dict, t0: float
) -> int:
    """``broker train lc --survey lsst --real-data``: simulated LSST objects + the real ZTF light curves seen by
    Rubin (``crossval.lsst_template_rows``); the templates' out-of-fold figures from parent-grouped K-fold (a
    parent object's resamplings are never scored by a model that saw one of them), then the model on every row.
    No real labelled LSST light curves exist yet, so these are the real-shape figures of an LSST model."""
    seed = args.seed
    sim = make_rows(feats, labels, "simulation")
    tpl = lsst_template_rows(Path(args.real_data), seed)
    print(
        f"rows: {len(sim)} simulated, {len(tpl)} template "
        f"({ {str(k): int(v) for k, v in tpl.sources.value_counts().items()} }) "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    model_kwargs = _model_kwargs(args, name, seed)
    metrics: dict = {}
    if args.cv_folds and args.cv_folds > 1:
        cv = cross_validate(
            sim, tpl, k=args.cv_folds, seed=seed, **{**model_kwargs, "outlier_estimators": 10}
        )
        oof = metrics_by_source(cv.proba, tpl)
        metrics["out_of_fold"] = {k: v.summary() for k, v in oof.items()}
        metrics["out_of_fold_calibration"] = {
            k: calibration_summary(
                cv.proba[(tpl.sources == k).to_numpy()].to_numpy(), tpl.labels[tpl.sources == k], CLASSES
            )
            for k in pd.unique(tpl.sources)
        }
        for k, v in oof.items():
            print(f"out-of-fold {k}: {v.summary()}")
    everything = Rows.concat([sim, tpl])
    training_set = {
        **source,
        "source": "simulation + real ZTF light curves seen by Rubin (templates)",
        "rows": int(len(everything)),
        "rows_by_source": {str(k): int(v) for k, v in everything.sources.value_counts().items()},
        "template_counts": TEMPLATE_COUNTS,
        "template_dm_range": list(LSST_TEMPLATE_DM_RANGE),
        "template_z_max": LSST_TEMPLATE_Z_MAX,
        "cv_folds": args.cv_folds,
    }
    model = _fit(
        args,
        name,
        everything.features,
        everything.labels,
        training_set,
        FLUX_FEATURE_VERSION,
        everything.weights,
    )
    if args.eval_objects:
        held = build_training_set(args.eval_objects, args.nights, seed + 1000, survey="lsst")
        metrics["held_out_simulation"] = evaluate(model, *held).summary()
        metrics["held_out_simulation"]["calibration"] = calibration_summary(
            model.predict_proba(held[0]).to_numpy(), normalise_labels(held[1]), CLASSES
        )
        metrics["held_out"] = {"survey": "lsst", "objects": args.eval_objects, "seed": seed + 1000}
        print(f"held-out simulation: {metrics['held_out_simulation']}")
    return _save_model(model, args, metrics, t0)


def _train_lc_with_real(
    args: argparse.Namespace, name: str, feats: pd.DataFrame, labels: pd.Series, source: dict, t0: float
) -> int:
    """``broker train lc --real-data``: simulation + real labelled sets + real light curves resampled as
    templates (classifiers.crossval), out-of-fold real figures from object-grouped K-fold cross-validation,
    temperatures fitted on out-of-fold real and held-out simulated predictions, then the model on every row."""
    root = Path(args.real_data)
    seed = args.seed
    sim, real, tpl = training_rows(
        root, feats, labels, seed, real_weight=args.real_weight, templates=args.templates
    )
    short_n = int(getattr(args, "short_histories", 0) or 0)
    cuts_on = bool(getattr(args, "one_alert_cuts", False))
    # one alert's history of the real sets: trained on with --one-alert-cuts, else only scored (out of fold)
    sim, real, scored = one_alert_recipe(
        sim, real, root, seed, args.nights, objects=short_n, cuts=cuts_on, weight=args.real_weight
    )
    print(
        f"rows: {len(sim)} simulated (with masked copies), {len(real)} real "
        f"({dict(real.sources.value_counts())}), {0 if tpl is None else len(tpl)} template "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    model_kwargs = _model_kwargs(args, name, seed)
    metrics: dict = {}
    cv = None
    scored_rows = real
    if args.cv_folds and args.cv_folds > 1:
        cv = cross_validate(
            sim,
            real,
            tpl,
            scored=scored,
            k=args.cv_folds,
            seed=seed,
            **{**model_kwargs, "outlier_estimators": 10},
        )
        scored_rows = real if scored is None else Rows.concat([real, scored])
        bts_cut = short_history_rows(root, ("bts",))  # BTS at one alert's history, by its leave-set-out model
        lso = leave_set_out(
            sim,
            real,
            tpl,
            sky_prior=getattr(args, "sky_prior", None),
            scored=bts_cut,
            **{**model_kwargs, "outlier_estimators": 10},
        )
        pool = Rows.concat([real, bts_cut])
        metrics["leave_set_out"] = {
            src: evaluate_predictions(
                p,
                pool.labels[(pool.sources == src).to_numpy()],
                pool.features[(pool.sources == src).to_numpy()],
            ).summary()
            for src, p in lso.items()
        }
        print(f"cross-validation: {args.cv_folds} folds ({time.perf_counter() - t0:.0f} s)")
    everything = Rows.concat([sim, real] + ([tpl] if tpl is not None and len(tpl) else []))
    training_set = {
        **source,
        "source": "simulation + real labelled sets + real templates",
        "rows": int(len(everything)),
        "rows_by_source": {str(k): int(v) for k, v in everything.sources.value_counts().items()},
        "real_weight": args.real_weight,
        "masked_copies": {
            "share": MASKED_SHARE,
            "probability": MASK_PROBABILITY,
            "inputs": list(MISSING_INPUTS),
        },
        "template_counts": TEMPLATE_COUNTS if args.templates else {},
        "cv_folds": args.cv_folds,
    }
    if short_n or cuts_on:
        training_set["short_histories"] = {
            "objects": short_n,
            "seed": seed + SHORT_HISTORY_SEED_OFFSET,
            "history_days": ALERT_HISTORY_DAYS,
            "real_sets": sorted(str(s) for s in pd.unique(real.sources) if "@" in str(s)),
        }
    model = _fit(
        args, name, everything.features, everything.labels, training_set, FEATURE_VERSION, everything.weights
    )
    model.sky_prior_ = getattr(args, "sky_prior", None)
    held = None
    if args.eval_objects:
        held = build_training_set(args.eval_objects, args.nights, seed + 1000)
    if args.calibrate and cv is not None:
        top, cond = [cv.top_raw[: len(real)]], [cv.cond_raw[: len(real)]]
        y = [real.labels.to_numpy(object)]
        # every real set counts as much as the held-out simulation in the fit, whatever its size
        w = [1.0 / real.sources.map(real.sources.value_counts()).to_numpy(float)]
        if held is not None:
            ht, hc = model.raw_probabilities(held[0])
            top.append(ht)
            cond.append(hc)
            y.append(held[1].to_numpy(object))
            w.append(np.full(len(held[1]), 1.0 / len(held[1])))
        temps = fit_temperatures(np.vstack(top), np.vstack(cond), np.concatenate(y), np.concatenate(w))
        model.temperature_top_, model.temperature_branch_ = temps
        print(f"temperatures: top {temps[0]:.3f}, within branches {temps[1]:.3f}")
    if cv is not None:
        proba = cv.proba
        if args.calibrate:
            proba = tempered_class_proba(
                cv.top_raw, cv.cond_raw, model.temperature_top_, model.temperature_branch_
            )
            proba = pd.DataFrame(proba, index=cv.proba.index, columns=cv.proba.columns)
        answered = proba.notna().all(axis=1).to_numpy()  # a scored row whose object no fold held out: none
        proba, rows = proba[answered], scored_rows.take(answered)
        if model.sky_prior_:
            metrics["out_of_fold_without_sky_prior"] = {
                k: v.summary() for k, v in metrics_by_source(proba, rows).items()
            }
            proba = apply_sky_prior(model.sky_prior_, proba, gal_b_column(rows.features))
        oof = metrics_by_source(proba, rows)
        metrics["out_of_fold"] = {k: v.summary() for k, v in oof.items()}
        for k, v in oof.items():
            print(f"out-of-fold {k}: {v.summary()}")
        metrics["out_of_fold_calibration"] = {
            k: calibration_summary(
                proba[(rows.sources == k).to_numpy()].to_numpy(), rows.labels[rows.sources == k], CLASSES
            )
            for k in pd.unique(rows.sources)
        }
    if held is not None and (short_n or cuts_on):
        # the same held-out objects' seed family, seen as one alert sees them
        held30 = build_training_set(
            args.eval_objects,
            args.nights,
            seed + 1000 + SHORT_HISTORY_SEED_OFFSET,
            history_days=ALERT_HISTORY_DAYS,
        )
        metrics["held_out_simulation_30d"] = evaluate(model, *held30).summary()
        print(f"held-out simulation, one alert's 30-day history: {metrics['held_out_simulation_30d']}")
    if held is not None:
        metrics["held_out_simulation"] = evaluate(model, *held).summary()
        metrics["held_out_simulation"]["calibration"] = calibration_summary(
            model.predict_proba(held[0]).to_numpy(), normalise_labels(held[1]), CLASSES
        )
        metrics["held_out"] = {"survey": "ztf", "objects": args.eval_objects, "seed": seed + 1000}
        print(f"held-out simulation: {metrics['held_out_simulation']}")
        if model.sky_prior_:
            # the simulator's sky is uniform, not the one the prior describes: the figure without it too
            model.sky_prior_, prior = None, model.sky_prior_
            metrics["held_out_simulation_without_sky_prior"] = evaluate(model, *held).summary()
            model.sky_prior_ = prior
    metrics["temperatures"] = {"top": model.temperature_top_, "branch": model.temperature_branch_}
    metrics["sky_prior"] = model.sky_prior_
    return _save_model(model, args, metrics, t0)


def tempered_class_proba(top: np.ndarray, cond: np.ndarray, t_top: float, t_branch: float) -> np.ndarray:
    """P(class) = temper(P(branch)) x temper(P(class | branch)) from untempered outputs (n x 3, n x 15)."""
    top_t = temper(top, t_top)
    out = np.zeros_like(cond)
    for bi, b in enumerate(BRANCHES):
        cols = [CLASSES.index(c) for c in CLASSES if BRANCH_OF[c] == b]
        sub = cond[:, cols]
        ok = sub.sum(axis=1) > 0
        q = np.zeros_like(sub)
        q[ok] = temper(sub[ok], t_branch)
        out[:, cols] = q * top_t[:, [bi]]
    tot = out.sum(axis=1, keepdims=True)
    return out / np.where(tot > 0, tot, 1.0)


def cmd_evaluate(args: argparse.Namespace) -> int:
    model = load(args.name, args.version, root=args.models)
    survey = "lsst" if model.metadata.get("feature_version") == FLUX_FEATURE_VERSION else "ztf"
    results = {}
    if args.objects:
        feats, labels = build_training_set(
            args.objects, args.nights, args.seed, survey=survey, feature_version=model_feature_version(model)
        )
        name = f"held-out simulation (seed {args.seed}, {args.objects} objects, {args.nights} nights)"
        results[name] = evaluate(model, feats, labels)
    names = real_set_names(args.real, args.data is not None)
    if survey == "lsst" and (names or getattr(args, "cross_validate", False)):
        # Rubin has no labelled light curves yet: ZTF's, seen by Rubin, stand in for them
        root = Path(args.data or os.environ.get("BROKER_SHARED_DATA", "../shared/data"))
        if not root.is_dir():
            raise SystemExit(f"real data not found at {root} (pass --data or set BROKER_SHARED_DATA)")
        figures, notes = lsst_template_figures(model, root, args)
        results |= figures
        return _report(results, notes, args, model)
    if names:
        root = Path(args.data or os.environ.get("BROKER_SHARED_DATA", "../shared/data"))
        if not root.is_dir():
            raise SystemExit(f"real data not found at {root} (pass --data or set BROKER_SHARED_DATA)")
        results |= evaluate_real(model, root, names, alert_day=args.alert_day)
    notes: list[str] = []
    if getattr(args, "cross_validate", False):
        if survey != "ztf":
            raise SystemExit("--cross-validate mixes real ZTF light curves into a simulated ZTF training set")
        root = Path(args.data or os.environ.get("BROKER_SHARED_DATA", "../shared/data"))
        oof, notes = out_of_fold_figures(model, root, args)
        results = _beside(results, oof)
    return _report(results, notes, args, model)


def _report(results: dict, notes: list[str], args: argparse.Namespace, model) -> int:
    """Print every evaluation and the notes (with the one-class sets' predicted shares), write the report."""
    if not results:
        raise SystemExit("nothing to evaluate: --objects 0 and no --real set")
    notes = notes + predicted_shares(results)
    for name, ev in results.items():
        print(f"{name}: {ev.summary()}")
    for line in notes:
        print(line)
    path = write_report(results, args.out, model=model, notes=notes or None)
    print(f"report written to {path}")
    return 0


#: Resampling seed of the template rows ``broker evaluate`` scores an LSST model on (``make models`` trains 1.1.0
#: on the rows of seed 1: the same resamplings).
LSST_TEMPLATE_SEED = 1


def _fold_model_kwargs(model, args: argparse.Namespace) -> dict:
    """Fold models of ``broker evaluate --cross-validate``: the evaluated model's backend and size (or
    ``--cv-estimators``), seeded by ``--cv-seed``, with a light outlier forest (its score is not evaluated)."""
    return dict(
        name="cross-validation",
        version="cv",
        backend=getattr(model, "backend", "rf"),
        n_estimators=args.cv_estimators or getattr(model, "n_estimators", 300),
        random_state=args.cv_seed,
        n_jobs=1,
        fit_jobs=args.n_jobs,
        outlier_estimators=10,
    )


def lsst_template_figures(model, root: Path, args: argparse.Namespace) -> tuple[dict, list[str]]:
    """An LSST model on ZTF's real labelled light curves seen by Rubin (``crossval.lsst_template_rows``), and
    with ``--cross-validate`` the out-of-fold figures of its recipe beside them: fold models of its backend
    trained on ``args.cv_objects`` simulated LSST objects and the templates of the other folds' parents."""
    rows = lsst_template_rows(root, LSST_TEMPLATE_SEED)
    own = metrics_by_source(model.predict_proba(rows.features).reindex(columns=list(CLASSES)), rows)
    trained = {str(s) for s in model.metadata.get("training_set", {}).get("rows_by_source", {})}
    out: dict = {}
    for src, ev in own.items():
        seen = src in trained
        ev.description = "real ZTF light curves seen by Rubin" + (
            "; in sample: the model trained on these rows" if seen else "; the model never saw a template"
        )
        out[src] = ev
    notes = [
        f"Template rows (seed {LSST_TEMPLATE_SEED}): ZTF's labelled light curves resampled to Rubin's cadence, "
        "depth and bands (u, i, z, y from the simulator's colour model; docs/simulator.md); no labelled Rubin "
        "light curve exists yet."
    ]
    if not getattr(args, "cross_validate", False):
        return out, notes
    t0 = time.perf_counter()
    seed = args.cv_seed
    feats, labels = build_training_set(args.cv_objects, args.nights, seed, survey="lsst")
    sim = make_rows(feats, labels, "simulation")
    kwargs = _fold_model_kwargs(model, args)
    cv = cross_validate(sim, rows, k=args.cv_folds, seed=seed, **kwargs)
    oof = {}
    for src, ev in metrics_by_source(cv.proba, rows).items():
        ev.description = "real ZTF light curves seen by Rubin; out-of-fold"
        oof[f"{src} (out-of-fold)"] = ev
    notes.append(
        f"Out-of-fold rows: {args.cv_folds}-fold cross-validation grouped by parent object (a real object's "
        f"resamplings never score with a model that saw one of them); each fold model ({kwargs['backend']}, "
        f"{kwargs['n_estimators']} trees) trained on {len(sim)} simulated LSST rows ({args.cv_objects} objects, "
        f"seed {seed}) and the other folds' templates; features {FLUX_FEATURE_VERSION}; "
        f"{time.perf_counter() - t0:.0f} s."
    )
    return _beside(out, oof), notes


def _describe(source: str) -> str:
    """A real source's one-line description; ``<set>@<day>`` is the set cut to one alert's history."""
    name, _, day = source.partition("@")
    if name not in REAL_SETS:
        return source
    desc = REAL_SETS[name][1]
    return f"{desc}; as one alert {day} d after the first detection sees it (30-day history)" if day else desc


def out_of_fold_figures(model, root: Path, args: argparse.Namespace) -> tuple[dict, list[str]]:
    """Out-of-fold figures per real set (``broker evaluate --cross-validate``): fold models of ``model``'s
    backend trained on ``args.cv_objects`` simulated objects, the real sets of the other folds and the real
    templates whose parent is not held out (classifiers.crossval), under the current FEATURE_VERSION. Returns
    ({"<set> (out-of-fold)": Evaluation}, notes for the report)."""
    t0 = time.perf_counter()
    seed = args.cv_seed
    feats, labels = build_training_set(args.cv_objects, args.nights, seed)
    sim, real, tpl = training_rows(
        root, feats, labels, seed, real_weight=args.real_weight, templates=args.templates
    )
    # the evaluated model's recipe: its share of simulated objects seen with one alert's history, and the real
    # sets' one-alert cuts trained on (or, for a recipe without them, only scored)
    short = model.metadata.get("training_set", {}).get("short_histories") or {}
    trained = model.metadata.get("training_set", {}).get("objects") or args.cv_objects
    sim, real, scored = one_alert_recipe(
        sim,
        real,
        root,
        seed,
        args.nights,
        objects=round(args.cv_objects * short.get("objects", 0) / trained),  # the recipe's share
        cuts=bool(short.get("real_sets")),
        weight=args.real_weight,
    )
    kwargs = _fold_model_kwargs(model, args)
    cv = cross_validate(sim, real, tpl, scored=scored, k=args.cv_folds, seed=seed, **kwargs)
    rows = real if scored is None else Rows.concat([real, scored])
    proba = cv.proba
    t_top = float(getattr(model, "temperature_top_", 1.0))
    t_branch = float(getattr(model, "temperature_branch_", 1.0))
    if (t_top, t_branch) != (
        1.0,
        1.0,
    ):  # the fold models answer as the evaluated model would: same temperatures
        tempered = tempered_class_proba(cv.top_raw, cv.cond_raw, t_top, t_branch)
        proba = pd.DataFrame(tempered, index=cv.proba.index, columns=cv.proba.columns)
    answered = proba.notna().all(axis=1).to_numpy()
    proba, rows = proba[answered], rows.take(answered)
    prior = getattr(model, "sky_prior_", None)
    if prior:  # and the evaluated model's sky prior
        proba = apply_sky_prior(prior, proba, gal_b_column(rows.features))
    oof = metrics_by_source(proba, rows)
    out = {}
    for src, ev in oof.items():
        ev.description = f"{_describe(src)}; out-of-fold"
        out[f"{src} (out-of-fold)"] = ev
    temps = (t_top, t_branch) if (t_top, t_branch) != (1.0, 1.0) else None
    bts_cut = short_history_rows(root, ("bts",))
    pool = Rows.concat([real, bts_cut])
    lso = leave_set_out(sim, real, tpl, temperatures=temps, sky_prior=prior, scored=bts_cut, **kwargs)
    for src, proba in lso.items():
        sel = (pool.sources == src).to_numpy()
        ev = evaluate_predictions(proba, pool.labels[sel], pool.features[sel])
        ev.description = f"{_describe(src)}; leave-set-out (a model that saw none of the set)"
        out[f"{src} (leave-set-out)"] = ev
    n_tpl = 0 if tpl is None else len(tpl)
    notes = [
        f"Out-of-fold rows: {args.cv_folds}-fold cross-validation grouped by object (an object never scores with "
        f"a model that saw it, in any set or as a template's parent), stratified by (set, class); each fold "
        f"model ({kwargs['backend']}, {kwargs['n_estimators']} trees) trained on {len(sim)} simulated rows "
        f"({args.cv_objects} objects, seed {seed}, with masked copies), the other folds' real rows (weight "
        f"{args.real_weight:g}) and {n_tpl} template rows; features {FEATURE_VERSION}; "
        f"{time.perf_counter() - t0:.0f} s.",
    ]
    cut_sets = ", ".join(sorted(str(x) for x in pd.unique(rows.sources) if "@" in str(x)))
    notes.append(
        f"`<set>@30`: the set's light curves cut to what one alert 30 days after the first detection carries "
        f"({cut_sets}; BTS by its leave-set-out model); "
        + (
            "trained on, as the evaluated model was"
            if scored is None
            else "scored only, never trained on, as the evaluated model's recipe"
        )
        + f"; {short.get('objects', 0)} of the model's simulated objects were seen with one alert's history."
    )
    if (t_top, t_branch) != (1.0, 1.0):
        notes.append(
            f"Out-of-fold and leave-set-out probabilities are tempered with the evaluated model's temperatures "
            f"(top {t_top:.2f}, within branches {t_branch:.2f}): the classes are the fold models', the "
            f"confidence is scaled as the evaluated model's."
        )
    if prior:
        notes.append(
            f"Out-of-fold and leave-set-out probabilities are moved by the evaluated model's sky prior "
            f"({prior}: each class's density at the object's Galactic latitude, classifiers/sky_density.py)."
        )
    return out, notes


def predicted_shares(results: dict) -> list[str]:
    """For every one-class set (BTS SNe Ia, Stripe 82 RR Lyrae): the share of its objects called each class."""
    lines = []
    for name, ev in results.items():
        if ev.n_classes == 1:
            row = ev.confusion_class.sum(axis=0)
            shares = (row / max(row.sum(), 1)).sort_values(ascending=False)
            top = ", ".join(f"{c} {100 * v:.1f} %" for c, v in shares.items() if v >= 0.01)
            lines.append(f"{name}: called {top}.")
    return lines


def _beside(results: dict, oof: dict) -> dict:
    """``results`` with each set's out-of-fold entry right after the model's own entry for that set."""
    out = {}
    placed = set()
    for name, ev in results.items():
        out[name] = ev
        key = name.split(" (")[0]
        for match in (f"{key} (out-of-fold)", f"{key} (leave-set-out)"):
            if match in oof:
                out[match] = oof[match]
                placed.add(match)
    out |= {k: v for k, v in oof.items() if k not in placed}
    return out
