"""Models as artefacts: a directory per (name, version) holding the pickled model and a metadata.json.

Layout: ``{root}/{name}/{version}/model.joblib`` + ``metadata.json`` (name, version, taxonomy version, feature
list and FEATURE_VERSION, training-set fingerprint, metrics, created_at, library versions). The metadata is
plain JSON so a person (or the PostgreSQL loader) can read what a model is without unpickling it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn

from alert_broker.classifiers.taxonomy import CLASSES, HIERARCHY
from alert_broker.features import FEATURE_VERSION, FLUX_FEATURE_VERSION
from alert_broker.features.lightcurve import FEATURE_VERSIONS
from alert_broker.models import shipped_models

#: The feature sets a model may be trained on: ZTF's magnitude features and the difference-flux features.
#: The definitions this code computes: the current and earlier magnitude feature versions (a model names
#: its own; the pipeline computes that one for it) and LSST's flux features.
KNOWN_FEATURE_VERSIONS = (*FEATURE_VERSIONS, FLUX_FEATURE_VERSION)
#: Default registry root: the models installed with the package; override with the BROKER_MODELS environment
#: variable or the ``root`` argument.
DEFAULT_ROOT = shipped_models()
MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
#: A Keras model (the stamp CNN) is saved as ``model.keras`` beside the same metadata.json (``save_keras``).
KERAS_FILE = "model.keras"
#: ... and served from ``model.onnx`` beside it, the same network exported for ONNX Runtime (``save_keras`` writes
#: it when given ``onnx_bytes``; ``classifiers.stamp.onnx_export``).
ONNX_FILE = "model.onnx"


def registry_root(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``BROKER_MODELS``, else the shipped models."""
    return Path(root) if root else Path(os.environ.get("BROKER_MODELS") or DEFAULT_ROOT)


def fingerprint(features: pd.DataFrame, labels: pd.Series | None = None) -> str:
    """SHA-256 of a training table (features + labels), independent of row and column order, so the same data
    gives the same fingerprint and any changed value, row, column or label gives another."""
    df = features if "oid" not in features.columns else features.set_index("oid")
    df = df.set_axis(df.index.astype(str), axis=0)
    df = df.reindex(columns=sorted(map(str, df.columns)))
    if labels is not None:
        lab = labels.set_axis(labels.index.astype(str), axis=0).astype("string")
        df = df.assign(__label__=lab.reindex(df.index))
    df = df.sort_index(kind="stable")
    h = hashlib.sha256()
    h.update(json.dumps(list(map(str, df.columns))).encode())
    h.update(pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes())
    return h.hexdigest()


def version_key(version: str) -> tuple:
    """Sort key that orders 1.10.0 after 1.9.0 (numeric parts compared as numbers): the registry's order, and the
    order in which the API and the published tables call a classifier version the latest."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-+_]", version))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, pd.DataFrame):
        return _jsonable(obj.to_dict(orient="index"))
    return obj


def save(
    model,
    *,
    root: str | os.PathLike | None = None,
    training_fingerprint: str | None = None,
    metrics: dict | None = None,
    extra: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` to ``{root}/{model.name}/{model.version}/`` and return that directory.

    Refuses to replace an existing version unless ``overwrite``: a version names one artefact forever.
    """
    if not getattr(model, "feature_columns_", None):
        raise ValueError("save(): the model is not trained (no feature columns)")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", model.name) or not re.fullmatch(
        r"[A-Za-z0-9_.\-+]+", model.version
    ):
        raise ValueError(
            f"save(): model name/version must be simple tokens, got {model.name!r} {model.version!r}"
        )
    target = registry_root(root) / model.name / model.version
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target} exists; bump the version or pass overwrite=True")
        shutil.rmtree(target)
    tmp = target.with_name(f".{model.version}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    metadata = {
        "name": model.name,
        "version": model.version,
        "kind": type(model).__name__,
        "taxonomy_version": model.taxonomy_version,
        "classes": list(CLASSES),
        "hierarchy": {b: list(c) for b, c in HIERARCHY.items()},
        "feature_version": getattr(model, "feature_version", None) or FEATURE_VERSION,
        "features": list(model.feature_columns_),
        "training_fingerprint": training_fingerprint or model.metadata.get("training_fingerprint"),
        "metrics": _jsonable(metrics if metrics is not None else model.metadata.get("metrics", {})),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "sklearn_version": sklearn.__version__,
        **({"sky_prior": model.sky_prior_} if getattr(model, "sky_prior_", None) else {}),
        **_jsonable(extra or model.metadata.get("extra", {})),
    }
    model.metadata = metadata
    joblib.dump(model, tmp / MODEL_FILE, compress=3)
    (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    tmp.rename(target)  # atomic on one filesystem: readers never see half a model
    return target


def versions(name: str, *, root: str | os.PathLike | None = None) -> list[str]:
    """The saved versions of model ``name``, oldest first (numeric version order)."""
    base = registry_root(root) / name
    if not base.is_dir():
        return []
    found = [p.name for p in base.iterdir() if (p / METADATA_FILE).is_file() and _has_model_file(p)]
    return sorted(found, key=version_key)


def _has_model_file(path: Path) -> bool:
    return (path / MODEL_FILE).is_file() or (path / KERAS_FILE).is_file()


def read_metadata(name: str, version: str | None = None, *, root: str | os.PathLike | None = None) -> dict:
    """The metadata.json of a model version (the latest when ``version`` is None)."""
    return json.loads((_model_dir(name, version, root) / METADATA_FILE).read_text())


def version_dir(name: str, version: str | None = None, *, root: str | os.PathLike | None = None) -> Path:
    """The folder of a saved version (the latest when ``version`` is None)."""
    return _model_dir(name, version, root)


def onnx_file(name: str, version: str | None = None, *, root: str | os.PathLike | None = None) -> Path | None:
    """The version's ``model.onnx`` (the latest version when None), or None when it has none."""
    path = _model_dir(name, version, root) / ONNX_FILE
    return path if path.is_file() else None


def _model_dir(name: str, version: str | None, root) -> Path:
    known = versions(name, root=root)
    if not known:
        raise FileNotFoundError(f"no model named {name!r} in {registry_root(root).resolve()}")
    if version is None:
        version = known[-1]
    elif version not in known:
        raise FileNotFoundError(f"model {name!r} has no version {version!r}; saved versions: {known}")
    return registry_root(root) / name / version


def load(
    name: str,
    version: str | None = None,
    *,
    root: str | os.PathLike | None = None,
    check_feature_version: bool = True,
):
    """Load model ``name`` at ``version`` (the latest saved version when None).

    With ``check_feature_version`` a model trained on another FEATURE_VERSION is refused: its trees would
    split on numbers whose definition changed.
    """
    path = _model_dir(name, version, root)
    metadata = json.loads((path / METADATA_FILE).read_text())
    if not (path / MODEL_FILE).is_file():
        raise ValueError(f"{path} holds a Keras model ({KERAS_FILE}): load it with load_keras()")
    if check_feature_version and metadata.get("feature_version") not in KNOWN_FEATURE_VERSIONS:
        raise ValueError(
            f"model {name} {metadata.get('version')} was trained on features {metadata.get('feature_version')}, "
            f"this code computes {' and '.join(KNOWN_FEATURE_VERSIONS)}: retrain, or pass check_feature_version=False"
        )
    model = joblib.load(path / MODEL_FILE)
    model.metadata = metadata
    return model


def list_models(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Every saved model version: name, version, taxonomy_version, feature_version, created_at, path."""
    base = registry_root(root)
    rows = []
    if base.is_dir():
        for d in sorted(p for p in base.iterdir() if p.is_dir()):
            for v in versions(d.name, root=base):
                m = json.loads((d / v / METADATA_FILE).read_text())
                rows.append(
                    {
                        "name": d.name,
                        "version": v,
                        "taxonomy_version": m.get("taxonomy_version"),
                        "feature_version": m.get("feature_version"),
                        "created_at": m.get("created_at"),
                        "path": str(d / v),
                    }
                )
    cols = ["name", "version", "taxonomy_version", "feature_version", "created_at", "path"]
    return pd.DataFrame(rows, columns=cols)


# -- Keras models (the stamp CNN) ------------------------------------------------------------------------------
def save_keras(
    model,
    *,
    name: str,
    version: str,
    metadata: dict | None = None,
    root: str | os.PathLike | None = None,
    overwrite: bool = False,
    extra_objects: dict[str, object] | None = None,
    onnx_bytes: bytes | None = None,
) -> Path:
    """Write a Keras model to ``{root}/{name}/{version}/model.keras`` with a metadata.json, atomically as
    :func:`save`. ``metadata`` (taxonomy, features, fingerprint, metrics, ...) is stored as given, plus name,
    version, kind, created_at and the TensorFlow/Keras versions. ``extra_objects`` (file name -> object) are
    written beside it with joblib (e.g. the stamp classifier's second stage, ``stacker.joblib``), ``onnx_bytes``
    as ``model.onnx`` (the network for ONNX Runtime). Refuses to replace a version unless ``overwrite``.
    """
    import keras  # lazy: Keras starts TensorFlow (seconds, ~0.5 GB); only the stamp CNN's models need it

    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name) or not re.fullmatch(r"[A-Za-z0-9_.\-+]+", version):
        raise ValueError(f"save_keras(): model name/version must be simple tokens, got {name!r} {version!r}")
    target = registry_root(root) / name / version
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target} exists; bump the version or pass overwrite=True")
        shutil.rmtree(target)
    tmp = target.with_name(f".{version}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        import tensorflow as tf  # lazy: seconds and ~0.5 GB to start; only to record the stamp CNN's version

        tf_version = tf.__version__
    except ImportError:  # another Keras backend
        tf_version = None
    meta = {
        **_jsonable(metadata or {}),
        "name": name,
        "version": version,
        "kind": "keras",
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "keras_version": keras.__version__,
        "tensorflow_version": tf_version,
    }
    model.save(tmp / KERAS_FILE)
    for fname, obj in (extra_objects or {}).items():
        joblib.dump(obj, tmp / fname, compress=3)
    if onnx_bytes is not None:
        (tmp / ONNX_FILE).write_bytes(onnx_bytes)
    (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp.rename(target)
    return target


def load_extra(name: str, fname: str, version: str | None = None, *, root: str | os.PathLike | None = None):
    """A joblib object saved beside a model by ``save_keras(extra_objects=...)``; None when the version has none."""
    path = _model_dir(name, version, root) / fname
    return joblib.load(path) if path.is_file() else None


def load_keras(name: str, version: str | None = None, *, root: str | os.PathLike | None = None):
    """(Keras model, metadata dict) of ``name`` at ``version`` (the latest when None), loaded uncompiled, in
    Keras' safe mode: the model's custom layers must be registered (import the module that defines them)."""
    import keras  # lazy: Keras starts TensorFlow (seconds, ~0.5 GB); only the stamp CNN's models need it

    path = _model_dir(name, version, root)
    if not (path / KERAS_FILE).is_file():
        raise ValueError(f"{path} holds no Keras model ({KERAS_FILE}): load it with load()")
    metadata = json.loads((path / METADATA_FILE).read_text())
    return keras.models.load_model(path / KERAS_FILE, compile=False), metadata
