"""Nearest-neighbour cross-match of object positions against a catalogue, vectorised.

Positions become unit vectors on the sphere; a k-d tree over the catalogue's vectors answers "nearest within a
chord" for all objects at once. The chord ``c`` between two unit vectors relates exactly to their angle
``theta`` by ``c = 2 sin(theta / 2)``, so a radius in arcsec becomes an exact chord bound and the returned chord
an exact angle. No tangent-plane approximation: correct across RA = 0/360 and at the poles.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

ARCSEC_PER_RAD = 180.0 * 3600.0 / np.pi


def unit_vectors(ra_deg, dec_deg) -> np.ndarray:
    """(n, 3) unit vectors of equatorial positions in degrees."""
    ra = np.radians(np.asarray(ra_deg, dtype=np.float64))
    dec = np.radians(np.asarray(dec_deg, dtype=np.float64))
    cos_dec = np.cos(dec)
    return np.column_stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)])


def chord_to_arcsec(chord: np.ndarray) -> np.ndarray:
    """Angle (arcsec) subtended by a chord of the unit sphere: ``2 asin(c / 2)``."""
    return 2.0 * np.arcsin(np.clip(np.asarray(chord, dtype=np.float64) / 2.0, 0.0, 1.0)) * ARCSEC_PER_RAD


def arcsec_to_chord(arcsec: float) -> float:
    """Chord length on the unit sphere for an angle in arcsec (the inverse of :func:`chord_to_arcsec`)."""
    return 2.0 * np.sin(min(float(arcsec), 180.0 * 3600.0) / ARCSEC_PER_RAD / 2.0)


def angular_distance_arcsec(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance in arcsec (Vincenty's formula: accurate at every separation)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(x, dtype=np.float64)) for x in (ra1, dec1, ra2, dec2))
    dra = ra2 - ra1
    s1, c1, s2, c2 = np.sin(dec1), np.cos(dec1), np.sin(dec2), np.cos(dec2)
    num = np.hypot(c2 * np.sin(dra), c1 * s2 - s1 * c2 * np.cos(dra))
    den = s1 * s2 + c1 * c2 * np.cos(dra)
    return np.arctan2(num, den) * ARCSEC_PER_RAD


class CatalogTree:
    """A k-d tree over catalogue positions, built once and queried for many batches of objects."""

    def __init__(self, cat_ra, cat_dec) -> None:
        self.size = len(np.atleast_1d(cat_ra))
        self._tree = cKDTree(unit_vectors(cat_ra, cat_dec)) if self.size else None

    def nearest(self, ra, dec, radius_arcsec: float) -> tuple[np.ndarray, np.ndarray]:
        """Index (into the catalogue, -1 when none) and distance (arcsec, NaN when none) of the nearest
        catalogue source within ``radius_arcsec`` of each position."""
        ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
        n = ra.size
        idx = np.full(n, -1, dtype=np.int64)
        dist = np.full(n, np.nan)
        if n == 0 or self._tree is None or not radius_arcsec > 0:
            return idx, dist
        # nudge the bound up by a few ulps so a source exactly at the radius is kept; filtered exactly below
        bound = arcsec_to_chord(radius_arcsec) * (1 + 1e-12)
        chord, found = self._tree.query(unit_vectors(ra, dec), k=1, distance_upper_bound=bound)
        ok = np.isfinite(chord)
        angle = chord_to_arcsec(chord[ok])
        within = angle <= radius_arcsec
        rows = np.flatnonzero(ok)[within]
        idx[rows] = found[ok][within]
        dist[rows] = angle[within]
        return idx, dist


def nearest(ra, dec, cat_ra, cat_dec, radius_arcsec: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest catalogue source within ``radius_arcsec`` of each position: ``(index, distance_arcsec)``,
    ``-1`` / NaN where there is none. Builds the tree each call; reuse :class:`CatalogTree` for many calls."""
    return CatalogTree(cat_ra, cat_dec).nearest(ra, dec, radius_arcsec)


def pairs_within(ra, dec, cat_ra, cat_dec, radius_arcsec: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (position, catalogue source) pair at most ``radius_arcsec`` apart: position indices, catalogue
    indices and distances (arcsec, from the chord: exact), ordered by position, then distance."""
    ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    cat_ra = np.atleast_1d(np.asarray(cat_ra, dtype=np.float64))
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
    if ra.size == 0 or cat_ra.size == 0 or not radius_arcsec > 0:
        return empty
    cat = unit_vectors(cat_ra, cat_dec)
    pos = unit_vectors(ra, dec)
    found = cKDTree(cat).query_ball_point(pos, arcsec_to_chord(radius_arcsec) * (1 + 1e-12))
    i = np.repeat(np.arange(ra.size, dtype=np.int64), [len(f) for f in found])
    if i.size == 0:
        return empty
    j = np.concatenate([np.asarray(f, dtype=np.int64) for f in found])
    dist = chord_to_arcsec(np.linalg.norm(pos[i] - cat[j], axis=1))
    keep = dist <= radius_arcsec
    i, j, dist = i[keep], j[keep], dist[keep]
    order = np.lexsort((j, dist, i))
    return i[order], j[order], dist[order]


#: Columns of the ``xmatch`` table.
XMATCH_COLUMNS = ["oid", "catalog", "catalog_id", "dist_arcsec", "properties"]


def _jsonable(v):
    if v is None or v is pd.NA or (isinstance(v, float) and not np.isfinite(v)):
        return None
    return v.item() if isinstance(v, np.generic) else v


def crossmatch(
    objects: pd.DataFrame, catalog, radius_arcsec: float, columns: list[str] | None = None
) -> pd.DataFrame:
    """The ``xmatch`` rows of ``objects`` (``oid``, ``meanra``, ``meandec``) against one catalogue.

    One row per object that has a catalogue source within ``radius_arcsec``: ``oid``, ``catalog`` (its name),
    ``catalog_id`` (the source id as a string: ids are ints in some catalogues, names in others),
    ``dist_arcsec`` and ``properties``, a JSON object string of the selected ``columns`` (NaN -> null), so one
    table holds every catalogue; :func:`properties_frame` spreads it into ``{catalog}_{column}`` columns.
    ``catalog`` is a :class:`storage.catalogs.Catalog`; only the pixels around the objects are read.
    """
    columns = list(columns or [])
    if objects.empty:
        return pd.DataFrame(
            {c: pd.Series(dtype="string" if c != "dist_arcsec" else "float64") for c in XMATCH_COLUMNS}
        )
    ra = objects["meanra"].to_numpy(dtype=np.float64)
    dec = objects["meandec"].to_numpy(dtype=np.float64)
    info = catalog.info
    unknown = [c for c in columns if c not in info.columns]
    if unknown:
        raise ValueError(f"catalogue {info.name!r} has no column(s) {unknown}; it has {list(info.columns)}")
    rows = catalog.load(catalog.pixels_for(ra, dec, radius_arcsec))
    idx, dist = nearest(
        ra, dec, rows[info.ra_column].to_numpy(), rows[info.dec_column].to_numpy(), radius_arcsec
    )
    hit = idx >= 0
    matched = rows.iloc[idx[hit]]
    props = (
        [
            json.dumps({c: _jsonable(v) for c, v in zip(columns, vals, strict=True)})
            for vals in zip(*(matched[c].tolist() for c in columns), strict=True)
        ]
        if columns
        else ["{}"] * int(hit.sum())
    )
    return pd.DataFrame(
        {
            "oid": objects["oid"].to_numpy()[hit],
            "catalog": info.name,
            "catalog_id": matched[info.id_column].astype("string").to_numpy(),
            "dist_arcsec": dist[hit],
            "properties": pd.array(props, dtype="string"),
        }
    )


def properties_frame(xmatch: pd.DataFrame) -> pd.DataFrame:
    """The ``properties`` of ``xmatch`` rows as columns ``{catalog}_{column}``, one row per ``oid`` (for
    classifier features such as W1-W2)."""
    if xmatch.empty:
        return pd.DataFrame(index=pd.Index([], name="oid"))
    parts = []
    for name, sub in xmatch.groupby("catalog", sort=True):
        wide = pd.DataFrame([json.loads(p) for p in sub["properties"]], index=sub["oid"].to_numpy())
        parts.append(wide.add_prefix(f"{name}_"))
    out = pd.concat(parts, axis=1)
    out.index.name = "oid"
    return out
