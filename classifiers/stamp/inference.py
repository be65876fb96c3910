"""Serving the stamp CNN: a classifier loaded once per worker process, batched predictions, ALeRCE's rows.

``classify_first_alerts`` is the pure function the pipeline runs on Dask workers: (alerts, stamps, model spec) ->
long probability rows for the alerts that are the first of their object. The model behind a spec is loaded once
per process (``load_stamp_classifier`` is cached), and inference runs on whole batches through ONNX Runtime (the
version's ``model.onnx``, exported from the trained Keras model: ``onnx_export``), or through one traced
TensorFlow function for a version without one (``runtime``); no per-row ``predict``.

Which alerts are "first" (:func:`first_alert_mask`). ALeRCE classifies the first alert of an object it has not
reported before (Förster et al. 2021, Sect. 4.3), which needs to know what the broker has seen. Without state an
alert is taken as first when it is the earliest alert of its object in the batch, and, when the batch's
`detections` table is given, when no detection of the object precedes it: the alert's own 30-day history
(``prv_candidates``) and the batch hold no earlier detection, so no earlier alert of the object can have been
classified in the last 30 days. With ``known_oids`` (e.g. the oids that already have a stamp probability in
PostgreSQL) objects already classified are skipped, which is ALeRCE's rule exactly. Only alerts carrying all three
readable cutouts are classified.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from functools import lru_cache

import numpy as np
import pandas as pd

from alert_broker.classifiers.hierarchical import PROBABILITY_COLUMNS
from alert_broker.classifiers.registry import ONNX_FILE, load_extra, load_keras, onnx_file, read_metadata
from alert_broker.classifiers.stamp.cutouts import decode_cutouts, select_rows
from alert_broker.classifiers.stamp.metadata import metadata_matrix
from alert_broker.classifiers.stamp.preprocess import STAMP_FEATURE_VERSION, stamp_images
from alert_broker.classifiers.stamp.rules import DEFAULT_RULES, Rule, apply_rules, rules_named
from alert_broker.classifiers.stamp.runtime import (
    KerasNetwork,
    OnnxNetwork,
    onnxruntime_available,
    stamp_runtime,
)
from alert_broker.classifiers.stamp.stacker import raw_metadata, stack_inputs
from alert_broker.classifiers.stamp.stampstats import stamp_statistics
from alert_broker.classifiers.stamp.taxonomy import DEFAULT_NAME, STAMP_CLASSES

#: Rows per forward pass: large enough to amortise the call, small enough to keep a worker's memory flat
#: (4 rotations x 1024 x 21 x 21 x 16 float32 activations ~ 115 MB at the widest layer).
PREDICT_BATCH = 1024

#: The module defining the CNN's custom Keras layers; importing it registers them for Keras' safe loading. It
#: imports TensorFlow, so it is loaded by :meth:`StampClassifier.load` (a call), never when this module is.
LAYERS_MODULE = "alert_broker.classifiers.stamp.layers"

#: A model spec: (registry root or None for the default, model name, version or None for the latest).
ModelSpec = tuple[str | os.PathLike | None, str, str | None]

#: ``rules=MODEL_RULES``: the business rules the model's metadata names (``StampClassifier.rules``).
MODEL_RULES = "model"


def set_tf_threads(n: int | None) -> None:
    """Ask TensorFlow for ``n`` intra-op threads (a worker runs one task per thread); ignored once TF has
    started, since TF fixes its thread pools at first use."""
    if not n:
        return
    import tensorflow as tf  # lazy: seconds and ~0.5 GB to start; only a loaded CNN needs it

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(n))
        tf.config.threading.set_inter_op_parallelism_threads(int(n))
    except RuntimeError:
        pass


class StampClassifier:
    """A trained stamp CNN with its registry metadata; ``predict_proba`` / ``probabilities_long`` on tables."""

    def __init__(self, model, metadata: dict, stacker=None) -> None:
        """``model``: a network of ``classifiers.stamp.runtime`` (ONNX or Keras), or a Keras model (served
        through TensorFlow)."""
        self.metadata = dict(metadata)
        self.name: str = metadata.get("name", DEFAULT_NAME)
        self.version: str = metadata.get("version", "0")
        self.features: tuple[str, ...] = tuple(metadata["features"])
        self.classes: tuple[str, ...] = tuple(metadata.get("classes", STAMP_CLASSES))
        if self.classes != STAMP_CLASSES:
            raise ValueError(
                f"model {self.name} {self.version} predicts {self.classes}, expected {STAMP_CLASSES}"
            )
        size = int(metadata.get("crop_size", 21))
        self.crop_size = size
        #: the survey whose cutouts the network was trained on (models before this field: ZTF)
        self.survey: str = metadata.get("survey", "ztf")
        if isinstance(model, OnnxNetwork | KerasNetwork):
            self.network = model
        else:
            self.network = KerasNetwork(model, size, len(self.features))
        #: the Keras model (None when served through ONNX Runtime): training saves it
        self.model = self.network.model
        #: "onnx" or "keras": which runtime answers
        self.runtime: str = self.network.runtime
        #: The second stage (``stacker.StampStacker``: CNN output + stamp statistics + raw metadata), or None
        #: for models before 1.2.0 (the CNN's softmax is the answer).
        self.stacker = stacker
        #: The business rules this version was evaluated with and is served with (metadata ``rules``; versions
        #: before 1.4.0 name none and run ALeRCE's, ``rules.DEFAULT_RULES``).
        self.rules: tuple[Rule, ...] = (
            rules_named(metadata["rules"]) if metadata.get("rules") is not None else DEFAULT_RULES
        )

    @classmethod
    def load(
        cls,
        name: str = DEFAULT_NAME,
        version: str | None = None,
        *,
        root: str | os.PathLike | None = None,
        runtime: str | None = None,
        threads: int | None = None,
    ) -> StampClassifier:
        """From the registry; refuses a model whose inputs were made by other preprocessing code. ``runtime``
        ("auto", "onnx", "keras"; default env ``BROKER_STAMP_RUNTIME``, else "auto": ONNX Runtime when the
        version ships a ``model.onnx``, TensorFlow otherwise); ``threads`` per inference (default
        :func:`tf_threads`)."""
        want = stamp_runtime(runtime)
        onnx_path = onnx_file(name, version, root=root)
        if want == "onnx" and onnx_path is None:
            raise FileNotFoundError(
                f"model {name} {version or '(latest)'} has no {ONNX_FILE}: export it with "
                "`broker export-onnx`, or serve it with BROKER_STAMP_RUNTIME=keras"
            )
        if want == "onnx" or (want == "auto" and onnx_path is not None and onnxruntime_available()):
            metadata = read_metadata(name, version, root=root)
            network = OnnxNetwork(onnx_path, tf_threads(threads))
        else:
            importlib.import_module(LAYERS_MODULE)  # registers the custom layers for safe loading
            set_tf_threads(tf_threads(threads))
            model, metadata = load_keras(name, version, root=root)
            network = KerasNetwork(model, int(metadata.get("crop_size", 21)), len(metadata["features"]))
        if metadata.get("feature_version") != STAMP_FEATURE_VERSION:
            raise ValueError(
                f"model {name} {metadata.get('version')} expects stamp inputs {metadata.get('feature_version')}, "
                f"this code makes {STAMP_FEATURE_VERSION}: retrain it with `broker train stamp`"
            )
        stacker = None
        if metadata.get("stacker"):
            stacker = load_extra(name, metadata["stacker"], metadata.get("version"), root=root)
            if stacker is None:
                raise FileNotFoundError(
                    f"model {name} {metadata.get('version')} lacks its {metadata['stacker']}"
                )
        return cls(network, metadata, stacker)

    # -- arrays -------------------------------------------------------------------------------------------
    def predict_arrays(
        self, images: np.ndarray, metadata: np.ndarray, batch_size: int = PREDICT_BATCH
    ) -> np.ndarray:
        """Softmax probabilities (N, 5), float64, for preprocessed inputs, in batches."""
        n = len(images)
        out = np.empty((n, len(STAMP_CLASSES)), dtype=np.float64)
        for s in range(0, n, batch_size):
            img = np.ascontiguousarray(images[s : s + batch_size], dtype=np.float32)
            meta = np.ascontiguousarray(metadata[s : s + batch_size], dtype=np.float32)
            out[s : s + batch_size] = self.network(img, meta)
        return out

    # -- tables -------------------------------------------------------------------------------------------
    def _inputs(self, alerts: pd.DataFrame, stamps: pd.DataFrame, with_stats: bool = False):
        """(images, CNN metadata, the alerts with complete stamps[, their stamp statistics]), aligned by position;
        the cutouts are decoded once for both the crop and the statistics."""
        if "candid" not in alerts.columns or "candid" not in stamps.columns:
            raise KeyError("alerts and stamps must both carry a candid column (docs/data-model.md)")
        st = stamps.drop_duplicates("candid").set_index("candid").reindex(alerts["candid"].to_numpy())
        st = st.reset_index()
        decoded = decode_cutouts(st)
        images, complete = stamp_images(st, self.crop_size, decoded)
        al = alerts[complete].reset_index(drop=True)
        out = images[complete], metadata_matrix(al, self.features), al
        if not with_stats:
            return out
        stats = stamp_statistics(st[complete].reset_index(drop=True), select_rows(decoded, complete))
        return (*out, stats)

    def second_stage_inputs(
        self, alerts: pd.DataFrame, stamps: pd.DataFrame
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(the second stage's input table, the alerts with complete stamps it describes, aligned by position)."""
        images, meta, al, stats = self._inputs(alerts, stamps, with_stats=True)
        cnn = self.predict_arrays(images, meta)
        return stack_inputs(cnn, stats, raw_metadata(al)), al

    def predict_proba(
        self, alerts: pd.DataFrame, stamps: pd.DataFrame, *, rules: Iterable[Rule] | str | None = MODEL_RULES
    ) -> pd.DataFrame:
        """P(class) for every alert with three readable cutouts: index ``candid``, columns ``oid`` and the five
        classes (rows sum to 1). Models with a second stage (1.2.0 on) answer its probabilities, older ones the
        CNN's softmax. ``rules`` (default: the model's own, :attr:`rules`; see ``classifiers.stamp.rules``) are
        applied after; ``rules=None`` gives the model's output alone. Alerts without complete stamps are left
        out."""
        if isinstance(rules, str):
            if rules != MODEL_RULES:
                raise ValueError(f"rules={rules!r}: pass rule functions, None or {MODEL_RULES!r}")
            rules = self.rules
        if self.stacker is not None:
            x, al = self.second_stage_inputs(alerts, stamps)
            p = pd.DataFrame(self.stacker.predict_proba(x), columns=list(STAMP_CLASSES))
        else:
            images, meta, al = self._inputs(alerts, stamps)
            p = pd.DataFrame(self.predict_arrays(images, meta), columns=list(STAMP_CLASSES))
        if rules:
            p = apply_rules(p, al, tuple(rules))
        p.index = pd.Index(al["candid"].to_numpy(dtype=np.int64), name="candid")
        p.insert(0, "oid", al["oid"].astype("string").to_numpy())
        return p

    def probabilities_long(
        self, alerts: pd.DataFrame, stamps: pd.DataFrame, *, rules: Iterable[Rule] | str | None = MODEL_RULES
    ) -> pd.DataFrame:
        """ALeRCE's probability rows (oid, classifier_name, classifier_version, class_name, probability,
        ranking), the format of ``HierarchicalClassifier.probabilities_long``, for the same `probability`
        table. One object per alert given: pass first alerts only (see :func:`classify_first_alerts`)."""
        return long_rows(self.predict_proba(alerts, stamps, rules=rules), self.name, self.version)


def long_rows(proba: pd.DataFrame, name: str, version: str) -> pd.DataFrame:
    """Wide (oid + five class columns) -> long rows with a 1..5 ranking per row (ties broken by class order)."""
    p = proba[list(STAMP_CLASSES)].to_numpy(dtype=np.float64)
    n, k = p.shape
    order = np.argsort(-p, axis=1, kind="stable")
    ranking = np.empty_like(order)
    np.put_along_axis(ranking, order, np.broadcast_to(np.arange(1, k + 1), (n, k)).copy(), axis=1)
    out = pd.DataFrame(
        {
            "oid": np.repeat(proba["oid"].to_numpy(dtype=object), k),
            "classifier_name": name,
            "classifier_version": version,
            "class_name": np.tile(np.array(STAMP_CLASSES, dtype=object), n),
            "probability": p.ravel(),
            "ranking": ranking.ravel().astype("int16"),
        }
    )
    out["oid"] = out["oid"].astype("string")
    out["class_name"] = out["class_name"].astype("string")
    return out[list(PROBABILITY_COLUMNS)]


@lru_cache(maxsize=4)
def _cached(root: str | None, name: str, version: str | None, threads: int | None) -> StampClassifier:
    return StampClassifier.load(name, version, root=root, threads=threads)


def load_stamp_classifier(
    root: str | os.PathLike | None = None,
    name: str = DEFAULT_NAME,
    version: str | None = None,
    *,
    threads: int | None = None,
) -> StampClassifier:
    """The classifier for (root, name, version), loaded once per process and cached. ``threads`` (default: env
    ``BROKER_TF_THREADS``, else 1) is the threads of one inference (ONNX Runtime's session; TensorFlow's, if TF
    has not started yet): a Dask worker runs one task per thread, so one thread per inference avoids
    oversubscribing the cores."""
    return _cached(None if root is None else str(root), name, version, tf_threads(threads))


def tf_threads(threads: int | None = None) -> int:
    """Threads per stamp inference (either runtime): ``threads``, else env ``BROKER_TF_THREADS``, else 1."""
    return int(threads) if threads is not None else int(os.environ.get("BROKER_TF_THREADS", "1"))


def first_alert_mask(
    alerts: pd.DataFrame, detections: pd.DataFrame | None = None, known_oids: Iterable[str] | None = None
) -> np.ndarray:
    """Which alerts are the first of their object (see the module docstring): earliest alert of the oid in
    ``alerts`` (by mjd, then candid); with ``detections``, no detection of the oid earlier than the alert; with
    ``known_oids``, the oid not among them. Returns a bool array aligned with ``alerts``."""
    n = len(alerts)
    if n == 0:
        return np.zeros(0, dtype=bool)
    oid = alerts["oid"].astype(str).to_numpy()
    mjd = pd.to_numeric(alerts["mjd"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.inf)
    candid = alerts["candid"].to_numpy(dtype=np.int64)
    order = np.lexsort((candid, mjd, oid))
    first = np.zeros(n, dtype=bool)
    s_oid = oid[order]
    first[order[np.r_[True, s_oid[1:] != s_oid[:-1]]]] = True
    if detections is not None and len(detections):
        earliest = (
            pd.DataFrame(
                {
                    "oid": detections["oid"].astype(str).to_numpy(),
                    "mjd": pd.to_numeric(detections["mjd"], errors="coerce").to_numpy(dtype=np.float64),
                }
            )
            .groupby("oid")["mjd"]
            .min()
        )
        prior = earliest.reindex(oid).to_numpy(dtype=np.float64)
        # 1e-6 d (0.09 s): the alert's own detection is in `detections` too, at the same mjd
        first &= ~(prior < mjd - 1e-6)
    if known_oids is not None:
        first &= ~np.isin(oid, np.asarray(list(known_oids), dtype=str))
    return first


def classify_first_alerts(
    alerts: pd.DataFrame,
    stamps: pd.DataFrame,
    model_spec: ModelSpec,
    *,
    detections: pd.DataFrame | None = None,
    known_oids: Iterable[str] | None = None,
    rules: Iterable[Rule] | str | None = MODEL_RULES,
) -> pd.DataFrame:
    """Long probability rows (the `probability` table's columns) for the alerts of a batch that are the first of
    their object and carry all three cutouts. Pure apart from the per-process model cache: safe to map over
    partitions on Dask workers. ``model_spec`` = (registry root or None, name, version or None = latest)."""
    root, name, version = model_spec
    clf = load_stamp_classifier(root, name, version)
    if alerts is None or len(alerts) == 0 or stamps is None or len(stamps) == 0:
        return long_rows(pd.DataFrame(columns=["oid", *STAMP_CLASSES]), clf.name, clf.version)
    mask = first_alert_mask(alerts, detections, known_oids)
    return clf.probabilities_long(alerts[mask], stamps, rules=rules)
