"""A feature column's name split into the feature and its band, as ALeRCE's API answers them.

The wide tables name per-band features ``{feature}_{band}``: ``Amplitude_1`` is the amplitude in ZTF's g (fid 1),
``Harmonics_mag_2_2`` the second harmonic's amplitude in r, and the LSST set ``{feature}_{u..y}``. Object-level
features (``Multiband_period``, ``g-r_max``, ``Power_rate_1/2``) have no band. A suffix alone cannot tell them
apart (``Power_rate_2`` is object-level), so the split reads the sets' own lists of per-band features.
"""

from __future__ import annotations

from .api import PER_BAND_NAMES
from .flux import FLUX_BAND_NAMES, FLUX_BANDS
from .prepare import BANDS

_ZTF = frozenset(PER_BAND_NAMES)
_FLUX = frozenset(FLUX_BAND_NAMES)


def split_feature_name(column: str) -> tuple[str, int | str | None]:
    """``(feature, band)`` of a wide-table column: the ZTF fid (int) or the LSST band letter for a per-band
    feature, ``None`` for an object-level one (and for names neither set defines)."""
    base, sep, tail = column.rpartition("_")
    if sep and tail.isdigit() and int(tail) in BANDS and base in _ZTF:
        return base, int(tail)
    if sep and tail in FLUX_BANDS and base in _FLUX:
        return base, tail
    return column, None
