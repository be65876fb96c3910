"""Training the stamp CNN on simulated first alerts, reproducibly from a seed, and saving it to the registry."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from alert_broker.classifiers.hierarchical import temper
from alert_broker.classifiers.registry import ONNX_FILE, save_keras, version_dir
from alert_broker.classifiers.stamp.dataset import StampSet, build_stamp_set
from alert_broker.classifiers.stamp.evaluate import (
    StampEvaluation,
    evaluate_on_simulation,
    evaluate_real_stamps,
)
from alert_broker.classifiers.stamp.inference import StampClassifier
from alert_broker.classifiers.stamp.metadata import METADATA_SPEC
from alert_broker.classifiers.stamp.model import CNNConfig, build_model, compile_model
from alert_broker.classifiers.stamp.onnx_export import keras_to_onnx_bytes
from alert_broker.classifiers.stamp.preprocess import STAMP_FEATURE_VERSION
from alert_broker.classifiers.stamp.rules import DEFAULT_RULES, Rule, apply_rules, rule_names, rules_named
from alert_broker.classifiers.stamp.runtime import OnnxNetwork
from alert_broker.classifiers.stamp.second_stage import (
    DEFAULT_FOLDS,
    REAL_WEIGHT,
    STACK_N_PER_CLASS,
    StackRows,
    fit_stacker,
    fit_temperature,
    simulated_rows,
    stacked_evaluations,
    stacker_training_set,
)
from alert_broker.classifiers.stamp.second_stage import cross_validate as stack_cross_validate
from alert_broker.classifiers.stamp.second_stage import real_rows as stack_real_rows
from alert_broker.classifiers.stamp.surveys import stamp_survey
from alert_broker.classifiers.stamp.taxonomy import (
    DEFAULT_NAME,
    SIM_TO_STAMP,
    STAMP_CLASSES,
    STAMP_TAXONOMY_VERSION,
)

DEFAULT_VERSION = "1.0.0"
BATCH_SIZE = 64
#: Share of training alerts also shown with all metadata missing (see ``fit_model``).
MISSING_METADATA_FRACTION = 0.15


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow's ops deterministic (same seed -> same weights)."""
    tf.keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()


def set_fingerprint(data: StampSet) -> str:
    """SHA-256 of a training set's inputs and labels (row order included: it changes what SGD does)."""
    h = hashlib.sha256()
    for a in (data.images, data.metadata, data.labels):
        arr = np.ascontiguousarray(a)
        h.update(str((arr.dtype.str, arr.shape)).encode())
        h.update(arr.tobytes())
    h.update(",".join(data.features).encode())
    return h.hexdigest()


def fit_model(
    train: StampSet,
    *,
    seed: int,
    epochs: int,
    config: CNNConfig = CNNConfig(),
    batch_size: int = BATCH_SIZE,
    missing_metadata_fraction: float = MISSING_METADATA_FRACTION,
    verbose: int = 0,
):
    """A compiled, trained CNN on ``train`` (deterministic given ``seed``). The learning rate decays by a cosine
    schedule over the run, so the last epochs refine instead of oscillating. A random ``missing_metadata_fraction``
    of the alerts is seen a second time with all metadata missing (the fills), so the network also learns to
    classify from the stamps alone (old schemas, or labelled stamps without alert fields)."""
    set_determinism(seed)
    model = build_model(
        train.metadata.shape[1], config, meta_sample=train.metadata, size=int(train.images.shape[1])
    )
    train = with_missing_metadata(train, missing_metadata_fraction, seed)
    steps = epochs * int(np.ceil(len(train) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, max(steps, 1), alpha=0.05)
    compile_model(model, config, learning_rate=schedule)
    y = np.eye(len(STAMP_CLASSES), dtype=np.float32)[train.labels]
    model.fit(
        {"image": train.images, "metadata": train.metadata},
        y,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=verbose,
    )
    return model


def with_missing_metadata(data: StampSet, fraction: float, seed: int) -> StampSet:
    """``data`` plus a copy of a random ``fraction`` of its alerts whose metadata are all the fills of
    METADATA_SPEC (what an alert without those fields gets), chosen by a generator seeded by ``seed``."""
    if fraction <= 0 or len(data) == 0:
        return data
    rows = np.flatnonzero(np.random.default_rng([seed, 2_718]).random(len(data)) < fraction)
    fill = np.array([METADATA_SPEC[f][0] for f in data.features], dtype=np.float32)

    return StampSet(
        np.concatenate([data.images, data.images[rows]]),
        np.concatenate([data.metadata, np.tile(fill, (len(rows), 1))]),
        np.concatenate([data.labels, data.labels[rows]]),
        pd.concat([data.frame, data.frame.iloc[rows]], ignore_index=True),
        data.features,
    )


def inference_copy(model):
    """The same network without optimizer state (a third of the file size), ready to save and ship."""
    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def model_metadata(
    train: StampSet, config: CNNConfig, *, seed: int, epochs: int, seconds: float, survey: str = "ztf"
) -> dict:
    """What the registry stores with a stamp model (metadata.json)."""
    meta = {
        "survey": survey,
        "taxonomy_version": STAMP_TAXONOMY_VERSION,
        "classes": list(STAMP_CLASSES),
        "class_map": dict(SIM_TO_STAMP),
        "feature_version": STAMP_FEATURE_VERSION,
        "features": list(train.features),
        "metadata_spec": {f: list(METADATA_SPEC[f]) for f in train.features},
        "crop_size": int(train.images.shape[1]),
        "training_fingerprint": set_fingerprint(train),
        "training_counts": train.counts(),
        "training": {"seed": seed, "epochs": epochs, "n": len(train), "seconds": round(seconds, 1)},
        "cnn": config.as_dict(),
        "missing_metadata_fraction": MISSING_METADATA_FRACTION,
        "metrics": {},
    }
    if survey != "ztf":  # ZTF's models before this field name no rules and run ALeRCE's (rules.DEFAULT_RULES)
        meta["rules"] = list(stamp_survey(survey).rules)
    return meta


@dataclass
class TrainResult:
    path: Path
    model: object
    metadata: dict
    seconds: dict = field(default_factory=dict)


def train_stamp_model(
    seed: int = 1,
    n_per_class: int = 3000,
    epochs: int = 12,
    out_root: str | Path | None = None,
    name: str | None = None,
    version: str = DEFAULT_VERSION,
    *,
    config: CNNConfig = CNNConfig(),
    features: tuple[str, ...] | None = None,
    eval_n_per_class: int = 0,
    eval_seed: int | None = None,
    real_data: str | Path | None = None,
    overwrite: bool = False,
    verbose: int = 0,
    second_stage: bool = False,
    survey: str = "ztf",
    stack_n_per_class: int = STACK_N_PER_CLASS,
    real_weight: float = REAL_WEIGHT,
    cv_folds: int = DEFAULT_FOLDS,
) -> TrainResult:
    """Simulate a balanced set of first alerts (``n_per_class`` per class, from ``seed``), train the CNN for
    ``epochs`` and save it to the registry at ``{out_root}/{name}/{version}/`` (``out_root`` None: the default
    root, env BROKER_MODELS or ./models).

    With ``eval_n_per_class`` it is also scored on a held-out simulation (seed ``eval_seed``, default
    ``seed + 1000``), and with ``real_data`` (the shared data root) on ALeRCE's 51 labelled real stamps, each with
    and without the business rules; the figures go into the model's metadata (``metrics``).

    ``second_stage`` (1.2.0 on; needs ``real_data``) also trains the second stage (``second_stage.py``) on
    simulated alerts of seed ``seed + 500`` and the real labelled alerts, reports its out-of-fold real figures
    (``cv_folds``-fold, object-grouped) and ships it beside the CNN (``stacker.joblib``).

    ``survey`` (``surveys.STAMP_SURVEYS``): whose alerts are simulated, cropped and described (``features``
    default: the survey's). ALeRCE's labelled real stamps are ZTF's: ``real_data`` and ``second_stage`` are
    refused for another survey."""
    if survey != "ztf" and (real_data or second_stage):
        raise ValueError(
            f"the labelled real stamps are ZTF's: no real evaluation or second stage for {survey}"
        )
    features = stamp_survey(survey).features if features is None else tuple(features)
    name = stamp_survey(survey).model_name if name is None else name
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    train = build_stamp_set(seed, n_per_class, features, survey=survey)
    times["simulate"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    model = fit_model(train, seed=seed, epochs=epochs, config=config, verbose=verbose)
    times["train"] = time.perf_counter() - t1
    meta = model_metadata(train, config, seed=seed, epochs=epochs, seconds=times["train"], survey=survey)
    meta["training"]["simulate_seconds"] = round(times["simulate"], 1)
    meta.update(name=name, version=version)
    del train
    extra = {}
    if second_stage:
        if not real_data:
            raise ValueError("the second stage trains on the real labelled alerts: pass real_data")
        t3 = time.perf_counter()
        stacker, stack_meta = train_second_stage(
            StampClassifier(model, meta), seed, real_data, stack_n_per_class, real_weight, cv_folds
        )
        times["second_stage"] = time.perf_counter() - t3
        extra[STACKER_FILE] = stacker
        meta["stacker"] = STACKER_FILE
        meta["second_stage"] = stack_meta
    t2 = time.perf_counter()
    cnn_meta = {k: v for k, v in meta.items() if k != "stacker"}
    meta["metrics"] = evaluation_metrics(model, cnn_meta, seed, eval_n_per_class, eval_seed, real_data)
    if second_stage and eval_n_per_class:
        es = seed + 1000 if eval_seed is None else eval_seed
        clf = StampClassifier(model, meta, extra[STACKER_FILE])
        held = build_stamp_set(es, eval_n_per_class, tuple(meta["features"]))
        for k, v in evaluate_stacked_simulation(clf, held).items():
            meta["metrics"][f"heldout_{k}"] = v.summary()
    if eval_n_per_class or real_data:
        times["evaluate"] = time.perf_counter() - t2
    path = save_keras(inference_copy(model), name=name, version=version, metadata=meta, root=out_root,
                      overwrite=overwrite, extra_objects=extra, onnx_bytes=keras_to_onnx_bytes(model))  # fmt: skip
    return TrainResult(path, model, meta, times)


#: File name of the second stage beside ``model.keras``.
STACKER_FILE = "stacker.joblib"


def add_second_stage(
    base_version: str,
    version: str,
    real_data: str | Path,
    *,
    seed: int = 1,
    name: str = DEFAULT_NAME,
    out_root: str | Path | None = None,
    stack_n_per_class: int = STACK_N_PER_CLASS,
    real_weight: float = REAL_WEIGHT,
    cv_folds: int = DEFAULT_FOLDS,
    eval_n_per_class: int = 0,
    eval_seed: int | None = None,
    overwrite: bool = False,
    rules: tuple[Rule, ...] | None = None,
    calibrate: bool = False,
) -> TrainResult:
    """A new version = the CNN of ``base_version`` unchanged (same weights, same inputs) + a second stage trained
    on top of it (:func:`train_second_stage`): the CNN needs hours on a CPU, the second stage minutes, and the
    second stage is where the real labelled alerts can teach. The metadata keeps the base's CNN figures (under
    ``metrics.cnn_base``) and adds the second stage's out-of-fold real figures and held-out simulation.

    ``rules`` (default ALeRCE's, ``rules.DEFAULT_RULES``) are named in the metadata (``rules``): the version is
    evaluated and served with them. ``calibrate`` (needs ``eval_n_per_class``) fits the second stage's
    temperature on its out-of-fold real probabilities and the held-out simulation
    (``second_stage.fit_temperature``)."""
    if calibrate and not eval_n_per_class:
        raise ValueError(
            "calibrate fits the temperature on the held-out simulation too: pass eval_n_per_class"
        )
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    base = StampClassifier.load(
        name, base_version, root=out_root, runtime="keras"
    )  # its Keras model is saved
    if base.stacker is not None:
        raise ValueError(f"{name} {base_version} already has a second stage")
    meta = dict(base.metadata)
    cnn_metrics = meta.pop("metrics", {})
    es = seed + 1000 if eval_seed is None else eval_seed
    held = build_stamp_set(es, eval_n_per_class, tuple(meta["features"])) if eval_n_per_class else None
    rules = DEFAULT_RULES if rules is None else tuple(rules)
    stacker, stack_meta = train_second_stage(
        base, seed, real_data, stack_n_per_class, real_weight, cv_folds,
        rules=rules, calibrate_on=held if calibrate else None,
    )  # fmt: skip
    times["second_stage"] = time.perf_counter() - t0
    meta.update(
        name=name, version=version, stacker=STACKER_FILE, second_stage=stack_meta, base_cnn=base_version
    )
    if rules != DEFAULT_RULES:
        meta["rules"] = rule_names(rules)
    for k in ("created_at", "tensorflow_version", "keras_version"):
        meta.pop(k, None)
    meta["metrics"] = {"cnn_base": cnn_metrics}
    clf = StampClassifier(base.model, meta, stacker)
    if held is not None:
        t1 = time.perf_counter()
        meta["metrics"]["heldout"] = {"seed": es, "n_per_class": eval_n_per_class}
        for k, v in evaluate_stacked_simulation(clf, held).items():
            meta["metrics"][f"heldout_{k}"] = v.summary()
        times["evaluate"] = time.perf_counter() - t1
    path = save_keras(base.model, name=name, version=version, metadata=meta, root=out_root, overwrite=overwrite,
                      extra_objects={STACKER_FILE: stacker}, onnx_bytes=keras_to_onnx_bytes(base.model))  # fmt: skip
    return TrainResult(path, base.model, meta, times)


def train_second_stage(
    classifier: StampClassifier,
    seed: int,
    real_data: str | Path,
    n_per_class: int = STACK_N_PER_CLASS,
    real_weight: float = REAL_WEIGHT,
    cv_folds: int = DEFAULT_FOLDS,
    *,
    rules: tuple[Rule, ...] = DEFAULT_RULES,
    calibrate_on: StampSet | None = None,
):
    """(the fitted second stage, its metadata: rows, weights and out-of-fold real figures, with ``rules``).
    With ``calibrate_on`` (a held-out simulated set) its temperature is fitted on the out-of-fold probabilities
    of each real set and the fitted second stage's on that set, each set counting once, and the out-of-fold
    figures are those of the tempered probabilities (what the version serves)."""
    sim = stacker_training_set(classifier, seed, n_per_class)
    real = stack_real_rows(classifier, real_data, real_weight)
    oof, folds = stack_cross_validate(sim, real, cv_folds, seed)
    stacker = fit_stacker(StackRows.concat([sim, real]), seed)
    calibration = {}
    if calibrate_on is not None:
        held = simulated_rows(classifier, calibrate_on, 0).take(np.arange(len(calibrate_on)))
        sets = {
            str(src): (oof[real.sources == src], real.y[real.sources == src])
            for src in np.unique(real.sources)
        }
        sets["simulation"] = (stacker.predict_proba(held.x), held.y)
        t, table = fit_temperature(sets)
        stacker.temperature_ = t
        oof = temper(oof, t)
        calibration = {"temperature": t, "temperature_fit": table}
    figures = {
        f"oof_{subset.replace(' ', '_')}_{kind.replace(' ', '_')}": ev.summary()
        for subset, res in stacked_evaluations(oof, real, rules).items()
        for kind, ev in res.items()
    }
    meta = {
        "columns": list(stacker.columns),
        "simulated_rows": int(len(sim)),
        "simulated_seed": seed + 500,
        "real_rows": {str(k): int(v) for k, v in pd.Series(real.sources).value_counts().items()},
        "real_weight": real_weight,
        "cv_folds": cv_folds,
        "out_of_fold": figures,
        "hyperparameters": {
            "n_estimators": stacker.n_estimators,
            "max_depth": stacker.max_depth,
            "learning_rate": stacker.learning_rate,
            "subsample": stacker.subsample,
            "colsample_bytree": stacker.colsample_bytree,
        },
        **calibration,
    }
    return stacker, meta


def evaluate_stacked_simulation(classifier: StampClassifier, data: StampSet) -> dict[str, StampEvaluation]:
    """A held-out simulated set through the whole model (CNN, second stage), without and with the rules."""
    rows = simulated_rows(classifier, data, 0)
    rows = rows.take(np.arange(len(data)))  # the set itself, not the no-metadata copies
    p = classifier.stacker.predict_proba(rows.x)
    names = np.array(STAMP_CLASSES, dtype=object)
    ruled = apply_rules(pd.DataFrame(p, columns=list(STAMP_CLASSES)), data.frame, classifier.rules)
    return {
        "stacked": StampEvaluation(rows.y, names[p.argmax(axis=1)]),
        "stacked+rules": StampEvaluation(rows.y, names[ruled.to_numpy().argmax(axis=1)]),
    }


def evaluation_metrics(
    model,
    meta: dict,
    seed: int,
    eval_n_per_class: int,
    eval_seed: int | None = None,
    real_data: str | Path | None = None,
) -> dict:
    """Held-out simulation and real-stamp figures, flat: ``heldout_cnn``, ``heldout_cnn+rules``,
    ``real_<subset>_cnn`` ... each a StampEvaluation summary."""
    metrics: dict = {}
    features = tuple(meta["features"])
    if eval_n_per_class:
        es = seed + 1000 if eval_seed is None else eval_seed
        survey = meta.get("survey", "ztf")
        rules = rules_named(meta["rules"]) if meta.get("rules") else DEFAULT_RULES
        sim = evaluate_on_simulation(model, es, eval_n_per_class, features, survey, rules)
        metrics["heldout"] = {"seed": es, "n_per_class": eval_n_per_class}
        metrics.update({f"heldout_{k}": v.summary() for k, v in sim.results.items()})
    if real_data:
        real = evaluate_real_stamps(StampClassifier(model, meta), real_data)
        for subset, res in real.items():
            for k, v in res.items():
                metrics[f"real_{subset.replace(' ', '_')}_{k}"] = v.summary()
    return metrics


#: Largest difference allowed between the Keras and the ONNX probabilities of an exported network.
ONNX_TOLERANCE = 1e-5


def export_onnx(
    name: str = DEFAULT_NAME, version: str | None = None, *, root: str | Path | None = None, seed: int = 0
) -> tuple[Path, float]:
    """Write ``model.onnx`` beside a registry version's ``model.keras`` (versions saved before ONNX serving), after
    checking both runtimes agree to :data:`ONNX_TOLERANCE` on random inputs. Returns (path, max difference)."""
    clf = StampClassifier.load(name, version, root=root, runtime="keras")
    data = keras_to_onnx_bytes(clf.model)
    rng = np.random.default_rng(seed)
    img = rng.random((64, clf.crop_size, clf.crop_size, 3), dtype=np.float32)
    meta = rng.normal(size=(64, len(clf.features))).astype(np.float32)
    diff = float(np.abs(OnnxNetwork(data)(img, meta) - clf.network(img, meta)).max())
    if not diff <= ONNX_TOLERANCE:
        raise ValueError(f"{name} {clf.version}: ONNX and Keras differ by {diff:.2e} (> {ONNX_TOLERANCE:g})")
    target = version_dir(name, clf.version, root=root) / ONNX_FILE
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target, diff
