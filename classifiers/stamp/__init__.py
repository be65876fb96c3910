"""The stamp classifier: ALeRCE's rotation-invariant CNN on the first alert of an object (docs/stamp.md).

Light names (NumPy / pandas only) import eagerly; the ones that need TensorFlow (the network, training) load on
first use, so importing the package does not start TensorFlow.
"""

import importlib

from alert_broker.classifiers.stamp.cutouts import CUTOUT_COLUMNS, centre_crop, cutout_cube, decode_cutout
from alert_broker.classifiers.stamp.dataset import (
    StampSet,
    build_stamp_set,
    simulated_first_alerts,
    to_stamp_set,
)
from alert_broker.classifiers.stamp.evaluate import (
    StampEvaluation,
    evaluate_on_simulation,
    evaluate_real_stamps,
    load_real_stamps,
)
from alert_broker.classifiers.stamp.inference import (
    StampClassifier,
    classify_first_alerts,
    first_alert_mask,
    load_stamp_classifier,
    long_rows,
)
from alert_broker.classifiers.stamp.lsst_real import eye_crosstab, eye_summary, load_real_lsst_alerts
from alert_broker.classifiers.stamp.metadata import (
    DEFAULT_FEATURES,
    LSST_FEATURES,
    METADATA_SPEC,
    metadata_frame,
    metadata_matrix,
    sky_latitudes,
)
from alert_broker.classifiers.stamp.onnx_export import keras_to_onnx
from alert_broker.classifiers.stamp.preprocess import (
    CROP_SIZE,
    STAMP_FEATURE_VERSION,
    normalise_cutouts,
    stamp_images,
)
from alert_broker.classifiers.stamp.rules import (
    DEFAULT_RULES,
    apply_rules,
    known_solar_system_object,
    negative_difference_is_not_sn,
    star_counterpart_is_not_sn,
)
from alert_broker.classifiers.stamp.runtime import KerasNetwork, OnnxNetwork, stamp_runtime
from alert_broker.classifiers.stamp.surveys import STAMP_SURVEYS, StampSurvey, stamp_survey
from alert_broker.classifiers.stamp.taxonomy import (
    DEFAULT_NAME,
    SIM_TO_STAMP,
    STAMP_CLASSES,
    STAMP_TAXONOMY_VERSION,
    stamp_labels,
)

_LAZY = {
    "CNNConfig": "alert_broker.classifiers.stamp.model",
    "build_model": "alert_broker.classifiers.stamp.model",
    "entropy_regularised_loss": "alert_broker.classifiers.stamp.model",
    "RotationStack": "alert_broker.classifiers.stamp.layers",
    "CyclicPool": "alert_broker.classifiers.stamp.layers",
    "train_stamp_model": "alert_broker.classifiers.stamp.training",
    "fit_model": "alert_broker.classifiers.stamp.training",
    "TrainResult": "alert_broker.classifiers.stamp.training",
    "export_onnx": "alert_broker.classifiers.stamp.training",
}


def __getattr__(name: str):
    if name in _LAZY:  # TensorFlow modules: loaded by a call (not an import statement) on first use
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'alert_broker.classifiers.stamp' has no attribute {name!r}")


__all__ = [
    "CNNConfig",
    "CROP_SIZE",
    "CUTOUT_COLUMNS",
    "CyclicPool",
    "DEFAULT_FEATURES",
    "DEFAULT_NAME",
    "DEFAULT_RULES",
    "KerasNetwork",
    "LSST_FEATURES",
    "METADATA_SPEC",
    "OnnxNetwork",
    "RotationStack",
    "SIM_TO_STAMP",
    "STAMP_CLASSES",
    "STAMP_FEATURE_VERSION",
    "STAMP_SURVEYS",
    "STAMP_TAXONOMY_VERSION",
    "StampClassifier",
    "StampEvaluation",
    "StampSet",
    "StampSurvey",
    "TrainResult",
    "apply_rules",
    "build_model",
    "build_stamp_set",
    "centre_crop",
    "classify_first_alerts",
    "cutout_cube",
    "decode_cutout",
    "entropy_regularised_loss",
    "evaluate_on_simulation",
    "evaluate_real_stamps",
    "export_onnx",
    "eye_crosstab",
    "eye_summary",
    "first_alert_mask",
    "keras_to_onnx",
    "fit_model",
    "known_solar_system_object",
    "load_real_lsst_alerts",
    "load_real_stamps",
    "load_stamp_classifier",
    "long_rows",
    "metadata_frame",
    "metadata_matrix",
    "negative_difference_is_not_sn",
    "normalise_cutouts",
    "simulated_first_alerts",
    "sky_latitudes",
    "stamp_images",
    "stamp_labels",
    "stamp_runtime",
    "stamp_survey",
    "star_counterpart_is_not_sn",
    "to_stamp_set",
    "train_stamp_model",
]
