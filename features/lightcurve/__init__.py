"""Light-curve features of the broker: ALeRCE's ZTF feature set, batched and compiled with numba, and a feature
set on difference fluxes for LSST.

``compute_features(detections, non_detections, objects=None)`` returns one row per object with at least 6 clean
detections in g or r (ZTF magnitudes). ``compute_flux_features(detections, forced=None)`` returns one row per
object with at least 6 detections in u g r i z y (difference fluxes in nJy). Definitions: docs/features.md.
"""

from __future__ import annotations

from .api import (
    FEATURE_VERSION,
    FEATURE_VERSIONS,
    LEGACY_FEATURE_VERSIONS,
    NEWER_FEATURE_VERSIONS,
    compute_batch,
    compute_features,
    feature_names,
    warm_up,
)
from .flux import FLUX_FEATURE_VERSION, MIN_FLUX_DETECTIONS, compute_flux_features, flux_feature_names
from .names import split_feature_name
from .prepare import Batch, prepare

__all__ = [
    "FEATURE_VERSION",
    "FEATURE_VERSIONS",
    "FLUX_FEATURE_VERSION",
    "LEGACY_FEATURE_VERSIONS",
    "MIN_FLUX_DETECTIONS",
    "NEWER_FEATURE_VERSIONS",
    "Batch",
    "compute_batch",
    "compute_features",
    "compute_flux_features",
    "feature_names",
    "flux_feature_names",
    "prepare",
    "split_feature_name",
    "warm_up",
]
