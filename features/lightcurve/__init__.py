"""Light-curve features of the broker: ALeRCE's ZTF feature set, batched and compiled with numba.

``compute_features(detections, non_detections, objects=None)`` returns one row per object with at least 6 clean
detections in g or r. Definitions: docs/features.md.
"""

from __future__ import annotations

from .api import FEATURE_VERSION, compute_batch, compute_features, feature_names, warm_up
from .prepare import Batch, prepare

__all__ = [
    "FEATURE_VERSION",
    "Batch",
    "compute_batch",
    "compute_features",
    "feature_names",
    "prepare",
    "warm_up",
]
