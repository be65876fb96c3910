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

from alert_broker.classifiers.registry import save_keras
from alert_broker.classifiers.stamp.dataset import StampSet, build_stamp_set
from alert_broker.classifiers.stamp.evaluate import evaluate_on_simulation, evaluate_real_stamps
from alert_broker.classifiers.stamp.inference import StampClassifier
from alert_broker.classifiers.stamp.metadata import DEFAULT_FEATURES, METADATA_SPEC
from alert_broker.classifiers.stamp.model import CNNConfig, build_model, compile_model
from alert_broker.classifiers.stamp.preprocess import CROP_SIZE, STAMP_FEATURE_VERSION
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
    model = build_model(train.metadata.shape[1], config, meta_sample=train.metadata)
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


def model_metadata(train: StampSet, config: CNNConfig, *, seed: int, epochs: int, seconds: float) -> dict:
    """What the registry stores with a stamp model (metadata.json)."""
    return {
        "taxonomy_version": STAMP_TAXONOMY_VERSION,
        "classes": list(STAMP_CLASSES),
        "class_map": dict(SIM_TO_STAMP),
        "feature_version": STAMP_FEATURE_VERSION,
        "features": list(train.features),
        "metadata_spec": {f: list(METADATA_SPEC[f]) for f in train.features},
        "crop_size": CROP_SIZE,
        "training_fingerprint": set_fingerprint(train),
        "training_counts": train.counts(),
        "training": {"seed": seed, "epochs": epochs, "n": len(train), "seconds": round(seconds, 1)},
        "cnn": config.as_dict(),
        "missing_metadata_fraction": MISSING_METADATA_FRACTION,
        "metrics": {},
    }


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
    name: str = DEFAULT_NAME,
    version: str = DEFAULT_VERSION,
    *,
    config: CNNConfig = CNNConfig(),
    features: tuple[str, ...] = DEFAULT_FEATURES,
    eval_n_per_class: int = 0,
    eval_seed: int | None = None,
    real_data: str | Path | None = None,
    overwrite: bool = False,
    verbose: int = 0,
) -> TrainResult:
    """Simulate a balanced set of first alerts (``n_per_class`` per class, from ``seed``), train the CNN for
    ``epochs`` and save it to the registry at ``{out_root}/{name}/{version}/`` (``out_root`` None: the default
    root, env BROKER_MODELS or ./models).

    With ``eval_n_per_class`` it is also scored on a held-out simulation (seed ``eval_seed``, default
    ``seed + 1000``), and with ``real_data`` (the shared data root) on ALeRCE's 51 labelled real stamps, each with
    and without the business rules; the figures go into the model's metadata (``metrics``)."""
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    train = build_stamp_set(seed, n_per_class, features)
    times["simulate"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    model = fit_model(train, seed=seed, epochs=epochs, config=config, verbose=verbose)
    times["train"] = time.perf_counter() - t1
    meta = model_metadata(train, config, seed=seed, epochs=epochs, seconds=times["train"])
    meta["training"]["simulate_seconds"] = round(times["simulate"], 1)
    meta.update(name=name, version=version)
    t2 = time.perf_counter()
    meta["metrics"] = evaluation_metrics(model, meta, seed, eval_n_per_class, eval_seed, real_data)
    if eval_n_per_class or real_data:
        times["evaluate"] = time.perf_counter() - t2
    path = save_keras(inference_copy(model), name=name, version=version, metadata=meta, root=out_root,
                      overwrite=overwrite)  # fmt: skip
    return TrainResult(path, model, meta, times)


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
        sim = evaluate_on_simulation(model, es, eval_n_per_class, features)
        metrics["heldout"] = {"seed": es, "n_per_class": eval_n_per_class}
        metrics.update({f"heldout_{k}": v.summary() for k, v in sim.results.items()})
    if real_data:
        real = evaluate_real_stamps(StampClassifier(model, meta), real_data)
        for subset, res in real.items():
            for k, v in res.items():
                metrics[f"real_{subset.replace(' ', '_')}_{k}"] = v.summary()
    return metrics
