"""Pure science on the internal data model: light-curve correction, magstats and object statistics."""

from features.correction import (
    DISTANCE_THRESHOLD,
    SENTINEL,
    correct,
    correct_magnitudes,
    is_corrected,
    is_dubious,
)
from features.magstats import EXTRA_COLUMNS, MAGSTATS_COLUMNS, magstats, stellar_flags
from features.objects import OBJECT_COLUMNS, object_stats, position_sigma_arcsec

__all__ = [
    "DISTANCE_THRESHOLD",
    "EXTRA_COLUMNS",
    "MAGSTATS_COLUMNS",
    "OBJECT_COLUMNS",
    "SENTINEL",
    "correct",
    "correct_magnitudes",
    "is_corrected",
    "is_dubious",
    "magstats",
    "object_stats",
    "position_sigma_arcsec",
    "stellar_flags",
]
