"""Pure science on the internal data model: light-curve correction, magstats, object statistics and
light-curve features."""

from alert_broker.features.association import ASSOCIATION_COLUMNS, associate
from alert_broker.features.colours import COLOUR_COLUMNS, catalog_colours
from alert_broker.features.correction import (
    DISTANCE_THRESHOLD,
    SENTINEL,
    correct,
    correct_magnitudes,
    is_corrected,
    is_dubious,
)
from alert_broker.features.lightcurve import (
    FEATURE_VERSION,
    FLUX_FEATURE_VERSION,
    MIN_FLUX_DETECTIONS,
    compute_features,
    compute_flux_features,
    feature_names,
    flux_feature_names,
)
from alert_broker.features.magstats import EXTRA_COLUMNS, MAGSTATS_COLUMNS, magstats, stellar_flags
from alert_broker.features.neighbours import NEIGHBOUR_COLUMNS, alert_neighbours, latest_neighbours
from alert_broker.features.objects import OBJECT_COLUMNS, object_stats, position_sigma_arcsec

__all__ = [
    "ASSOCIATION_COLUMNS",
    "COLOUR_COLUMNS",
    "NEIGHBOUR_COLUMNS",
    "alert_neighbours",
    "associate",
    "catalog_colours",
    "latest_neighbours",
    "DISTANCE_THRESHOLD",
    "EXTRA_COLUMNS",
    "FEATURE_VERSION",
    "FLUX_FEATURE_VERSION",
    "MAGSTATS_COLUMNS",
    "MIN_FLUX_DETECTIONS",
    "OBJECT_COLUMNS",
    "SENTINEL",
    "compute_features",
    "compute_flux_features",
    "correct",
    "correct_magnitudes",
    "is_corrected",
    "is_dubious",
    "feature_names",
    "flux_feature_names",
    "magstats",
    "object_stats",
    "position_sigma_arcsec",
    "stellar_flags",
]
