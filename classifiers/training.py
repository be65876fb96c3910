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

from alert_broker.classifiers.evaluate import evaluate, evaluate_real, write_report
from alert_broker.classifiers.hierarchical import BACKENDS, HierarchicalClassifier, as_oid_indexed
from alert_broker.classifiers.real_sets import REAL_SETS
from alert_broker.classifiers.registry import fingerprint, load, save
from alert_broker.classifiers.stamp.cli import add_train_stamp
from alert_broker.classifiers.taxonomy import CLASSES, normalise_labels
from alert_broker.features import FEATURE_VERSION, FLUX_FEATURE_VERSION, compute_features, correct
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


def last_alert_tables(
    n_objects: int,
    nights: int,
    seed: int,
    class_fractions: dict[str, float] | None = None,
    history_days: float | None = None,
    survey: str = "ztf",
):
    """Simulate alerts (no stamps) of ``survey`` and decode each object's LAST alert (its history holds the
    light curve).

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
) -> tuple[pd.DataFrame, pd.Series]:
    """(features indexed by oid, labels aligned with them) from a simulated run of ``survey``.

    ZTF: ``features.compute_features`` on the decoded, corrected last alert of every object (>= 6 detections in
    g or r). LSST: the difference-flux features (``features.compute_flux_features``) of the last alert's
    detections and forced photometry (>= 6 detections). Only objects whose true class is one of the 15 are kept.
    """
    tables, truth = last_alert_tables(n_objects, nights, seed, class_fractions, history_days, survey)
    if tables.detections.empty:
        raise ValueError(f"the simulation (objects={n_objects}, nights={nights}) produced no alerts")
    if survey == "lsst":
        raw = flux_features_of(tables.detections, tables.forced_photometry)
    else:
        raw = compute_features(tables.detections, tables.non_detections)
    feats = as_oid_indexed(raw)
    labels = normalise_labels(truth["class"].reindex(feats.index))
    keep = labels.notna().to_numpy()
    labels = labels[keep].rename("class")
    return feats[keep], labels


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
    model.fit(features, labels, n_jobs=fit_jobs)
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


def cmd_train_lc(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    survey = getattr(args, "survey", "ztf")
    name = args.name or ("lc_hierarchical_lsst" if survey == "lsst" else "lc_hierarchical")
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
        feats, labels = build_training_set(args.objects, args.nights, args.seed, survey=survey)
        source = {
            "source": "simulation",
            "survey": survey,
            "objects": args.objects,
            "nights": args.nights,
            "seed": args.seed,
        }
    source["rows"] = int(len(feats))
    print(f"training set: {len(feats)} objects, {feats.shape[1]} columns ({time.perf_counter() - t0:.0f} s)")
    model = train(
        feats,
        labels,
        name=name,
        version=args.version,
        backend=args.backend,
        n_estimators=args.n_estimators,
        seed=args.seed,
        fit_jobs=args.n_jobs,
        training_set=source,
        feature_version=FLUX_FEATURE_VERSION if survey == "lsst" else FEATURE_VERSION,
    )
    print(f"{args.backend} model trained in {model.metadata['extra']['training_seconds']:.0f} s")
    metrics = {}
    if args.eval_objects:
        test_f, test_y = build_training_set(args.eval_objects, args.nights, args.seed + 1000, survey=survey)
        metrics = evaluate(model, test_f, test_y).summary()
        metrics["held_out"] = {"survey": survey, "objects": args.eval_objects, "seed": args.seed + 1000}
        print(metrics)
    path = save(model, root=args.models, metrics=metrics, overwrite=args.overwrite)
    size = (path / "model.joblib").stat().st_size
    print(f"saved {path} ({size / 1e6:.1f} MB, {time.perf_counter() - t0:.0f} s in all)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    model = load(args.name, args.version, root=args.models)
    survey = "lsst" if model.metadata.get("feature_version") == FLUX_FEATURE_VERSION else "ztf"
    results = {}
    if args.objects:
        feats, labels = build_training_set(args.objects, args.nights, args.seed, survey=survey)
        name = f"held-out simulation (seed {args.seed}, {args.objects} objects, {args.nights} nights)"
        results[name] = evaluate(model, feats, labels)
    names = real_set_names(args.real, args.data is not None)
    if names and survey != "ztf":
        raise SystemExit("the real labelled sets are ZTF light curves: evaluate a ZTF model on them")
    if names:
        root = Path(args.data or os.environ.get("BROKER_SHARED_DATA", "../shared/data"))
        if not root.is_dir():
            raise SystemExit(f"real data not found at {root} (pass --data or set BROKER_SHARED_DATA)")
        results |= evaluate_real(model, root, names, alert_day=args.alert_day)
    if not results:
        raise SystemExit("nothing to evaluate: --objects 0 and no --real set")
    for name, ev in results.items():
        print(f"{name}: {ev.summary()}")
    path = write_report(results, args.out, model=model)
    print(f"report written to {path}")
    return 0
