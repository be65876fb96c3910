"""Watch lists: the alerts that land within an entry's radius of positions people care about (pure maths).

An entry is (name, ra, dec, radius_arcsec); an alert hits it when the alert's own position is within the
entry's radius (exact great-circle distance). Every hit counts: overlapping entries (or two lists) may each
claim an alert.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from alert_broker.features.xmatch import arcsec_to_chord, chord_to_arcsec, unit_vectors

#: The columns of a watch-list hit (lake ``watchlist_hits``, PostgreSQL ``watchlist_hit``).
HIT_COLUMNS = ("watchlist", "name", "oid", "survey", "candid", "mjd", "night", "ra", "dec", "dist_arcsec")
ENTRY_COLUMNS = ("name", "ra", "dec", "radius_arcsec")


class WatchIndex:
    """The entries of a watch list in a k-d tree over unit vectors, built once and queried per batch."""

    def __init__(self, entries: pd.DataFrame) -> None:
        self.names = entries["name"].astype(str).to_numpy()
        self.radius = entries["radius_arcsec"].to_numpy(dtype=np.float64)
        vectors = unit_vectors(
            entries["ra"].to_numpy(dtype=np.float64), entries["dec"].to_numpy(dtype=np.float64)
        )
        self.tree = cKDTree(vectors) if len(vectors) else None
        self.bound = arcsec_to_chord(float(np.nanmax(self.radius))) * (1 + 1e-12) if len(self.radius) else 0.0

    def hits(self, alerts: pd.DataFrame, watchlist: str) -> pd.DataFrame:
        """The hits of ``alerts`` (oid, survey, candid, mjd, night, ra, dec) on these entries."""
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in HIT_COLUMNS})
        if alerts.empty or self.tree is None:
            return empty
        a = unit_vectors(alerts["ra"].to_numpy(dtype=np.float64), alerts["dec"].to_numpy(dtype=np.float64))
        pairs = self.tree.query_ball_point(a, self.bound)
        ai = np.repeat(np.arange(len(pairs)), [len(p) for p in pairs])
        if ai.size == 0:
            return empty
        ei = np.fromiter((j for p in pairs for j in p), dtype=np.int64, count=len(ai))
        dist = chord_to_arcsec(np.linalg.norm(a[ai] - self.tree.data[ei], axis=1))
        keep = dist <= self.radius[ei]
        ai, ei, dist = ai[keep], ei[keep], dist[keep]
        hits = alerts.iloc[ai]
        return pd.DataFrame(
            {
                "watchlist": watchlist,
                "name": self.names[ei],
                "oid": hits["oid"].to_numpy(),
                "survey": hits["survey"].to_numpy(),
                "candid": hits["candid"].to_numpy(dtype=np.int64),
                "mjd": hits["mjd"].to_numpy(dtype=np.float64),
                "night": hits["night"].to_numpy(dtype=np.int32),
                "ra": hits["ra"].to_numpy(dtype=np.float64),
                "dec": hits["dec"].to_numpy(dtype=np.float64),
                "dist_arcsec": dist,
            },
            columns=list(HIT_COLUMNS),
        )


def watchlist_hits(alerts: pd.DataFrame, entries: pd.DataFrame, watchlist: str) -> pd.DataFrame:
    """The hits of ``alerts`` (oid, survey, candid, mjd, night, ra, dec) on the ``entries`` of one watch list."""
    return WatchIndex(entries).hits(alerts, watchlist)
