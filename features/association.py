"""Cross-survey association: one cross-survey id (``xid``) for the ZTF, LSST and ATLAS objects of one source.

Within a survey an object is found again by its id (ZTF's ``objectId``, LSST's ``diaObjectId``), never by
position: each survey already solved that problem with its own astrometry. Across surveys the only link is the
position. :func:`associate` gives each object seen for the first time its ``xid``, in this order:

1. **By id.** An object already in ``known`` (same oid and survey) keeps its stored xid: replaying a batch gives
   the same answer.
2. **By position, to a known object.** The xid of the nearest object of *another* survey within the radius,
   among ``known`` and the new objects this rule has already placed (repeated until nothing changes, so a new
   LSST object next to a new ATLAS object that sits on a known ZTF object joins the ZTF object's xid).
3. **By position, among new objects.** New objects still unplaced that lie within the radius of one another
   (objects of different surveys only) form groups; each group takes the oid of its member with the earliest
   ``firstmjd`` (ties: the smallest oid string) as xid.
4. Otherwise the object's own oid.

Transitivity: rule 3 groups are connected components, so a chain A-B-C of links shorter than the radius joins
A and C even when they are farther apart than the radius, and two objects of the *same* survey can share an xid
through an object of another survey between them (ZTF splits a source into two oids now and then; LSST's object
may sit between them). Rule 2 is nearest-neighbour, not transitive: each object takes one xid, the one of its
nearest placed neighbour of another survey, and an xid group may likewise gain a second object of a survey that
is already in it. With radii of 1.5" against sub-arcsec astrometry such chains are rare; they are the price of
never merging two xids after the fact (an xid, once given, is never rewritten).

Distances are exact great-circle angles: a k-d tree over unit vectors (as features/xmatch.py), chord ``c`` ->
angle ``2 asin(c / 2)``: right across RA 0/360 and at the poles. Vectorised: tree-against-tree pair searches and
a sparse connected-components pass; no loop per object.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from alert_broker.features.correction import as_float, require_columns
from alert_broker.features.xmatch import (
    angular_distance_arcsec,
    arcsec_to_chord,
    chord_to_arcsec,
    unit_vectors,
)

DEFAULT_RADIUS_ARCSEC = 1.5
NEW_COLUMNS = ("oid", "survey", "ra", "dec", "firstmjd")
KNOWN_COLUMNS = (*NEW_COLUMNS, "xid")
ASSOCIATION_COLUMNS = ("oid", "survey", "xid", "xid_distance_arcsec")


def _pairs(a: np.ndarray, b: np.ndarray | None, radius_arcsec: float) -> tuple[np.ndarray, ...]:
    """Index pairs (i into ``a``, j into ``b``) within ``radius_arcsec`` and their angles (arcsec). With ``b``
    None: the pairs i < j within ``a`` itself."""
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    if len(a) == 0 or (b is not None and len(b) == 0):
        return empty
    bound = arcsec_to_chord(radius_arcsec) * (
        1 + 1e-12
    )  # keep a pair exactly at the radius; cut exactly below
    tree_a = cKDTree(a)
    if b is None:
        pairs = tree_a.query_pairs(bound, output_type="ndarray")
        if len(pairs) == 0:
            return empty
        i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
        chord = np.linalg.norm(a[i] - a[j], axis=1)
    else:
        found = tree_a.sparse_distance_matrix(cKDTree(b), bound, output_type="ndarray")
        i, j, chord = found["i"].astype(np.int64), found["j"].astype(np.int64), found["v"]
    angle = chord_to_arcsec(chord)
    keep = angle <= radius_arcsec
    return i[keep], j[keep], angle[keep]


def _nearest_per_row(i: np.ndarray, j: np.ndarray, angle: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """For each row 0..n-1, the pair of smallest angle (ties: smallest j): (j, angle), -1 / NaN when none."""
    best_j = np.full(n, -1, dtype=np.int64)
    best_d = np.full(n, np.nan)
    if i.size:
        order = np.lexsort((j, angle, i))
        i, j, angle = i[order], j[order], angle[order]
        first = np.ones(i.size, dtype=bool)
        first[1:] = i[1:] != i[:-1]
        best_j[i[first]] = j[first]
        best_d[i[first]] = angle[first]
    return best_j, best_d


def _frame(df: pd.DataFrame, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    require_columns(df, columns, what)
    out = pd.DataFrame(
        {
            "oid": df["oid"].astype("str").to_numpy(dtype=object),
            "survey": df["survey"].astype("str").to_numpy(dtype=object),
            "ra": as_float(df["ra"]),
            "dec": as_float(df["dec"]),
            "firstmjd": as_float(df["firstmjd"]),
        }
    )
    bad = ~np.isfinite(out["ra"].to_numpy()) | ~np.isfinite(out["dec"].to_numpy())
    if bad.any() or (np.abs(out["dec"].to_numpy()) > 90).any():
        raise ValueError(f"{what}: {int(bad.sum())} rows without a valid position (ra/dec)")
    if "xid" in columns:
        xid = df["xid"].astype("string").to_numpy(dtype=object)
        out["xid"] = np.where(pd.isna(xid), out["oid"].to_numpy(), xid)
        stored = df["xid_distance_arcsec"] if "xid_distance_arcsec" in df.columns else np.nan
        out["xid_distance_arcsec"] = as_float(pd.Series(stored, index=df.index))
    return out


def associate(
    new: pd.DataFrame, known: pd.DataFrame | None, radius_arcsec: float = DEFAULT_RADIUS_ARCSEC
) -> pd.DataFrame:
    """The cross-survey id of each object of ``new`` (rules in the module docstring).

    ``new``: ``oid``, ``survey``, ``ra``, ``dec`` (deg), ``firstmjd`` of objects seen for the first time, one row
    per (oid, survey). ``known``: the same plus ``xid`` (null = its own oid) and optionally the stored
    ``xid_distance_arcsec``, for the objects already known in the same sky pixel(s) (``known`` must reach
    ``radius_arcsec`` past the pixels' borders to see every pair). Returns ``oid``, ``survey``, ``xid`` and
    ``xid_distance_arcsec`` (the angle to the object the xid came from: the matched object for rule 2, the
    group's leader for rule 3, the stored value for rule 1, NaN for rule 4 and for a group's leader), in the
    order of ``new``.
    """
    if not radius_arcsec > 0:
        raise ValueError(f"radius_arcsec must be positive, got {radius_arcsec}")
    nw = _frame(new, NEW_COLUMNS, "associate() new")
    if nw.duplicated(["oid", "survey"]).any():
        dup = nw.loc[nw.duplicated(["oid", "survey"]), "oid"].iloc[0]
        raise ValueError(f"associate() new: (oid, survey) must be unique; {dup!r} is repeated")
    kn = (
        _frame(known, KNOWN_COLUMNS, "associate() known")
        if known is not None and len(known)
        else pd.DataFrame(
            {
                c: pd.Series(dtype=object if c in ("oid", "survey", "xid") else float)
                for c in (*KNOWN_COLUMNS, "xid_distance_arcsec")
            }
        )
    )
    kn = kn.drop_duplicates(["oid", "survey"], keep="last").reset_index(drop=True)
    n = len(nw)
    xid = np.empty(n, dtype=object)
    dist = np.full(n, np.nan)
    placed = np.zeros(n, dtype=bool)
    if n == 0:
        return pd.DataFrame(
            {c: pd.Series(dtype="str" if c != "xid_distance_arcsec" else float) for c in ASSOCIATION_COLUMNS}
        )

    # 1. by id
    key = pd.MultiIndex.from_arrays([nw["oid"], nw["survey"]])
    at = pd.MultiIndex.from_arrays([kn["oid"], kn["survey"]]).get_indexer(key) if len(kn) else np.full(n, -1)
    by_id = at >= 0
    xid[by_id] = kn["xid"].to_numpy()[at[by_id]]
    dist[by_id] = kn["xid_distance_arcsec"].to_numpy()[at[by_id]]
    placed |= by_id

    vec_new = unit_vectors(nw["ra"].to_numpy(), nw["dec"].to_numpy())
    survey_new = nw["survey"].to_numpy()

    # 2. by position, to known objects and to new objects placed by this rule, until nothing changes
    ref_vec = unit_vectors(kn["ra"].to_numpy(), kn["dec"].to_numpy())
    ref_survey = kn["survey"].to_numpy()
    ref_xid = kn["xid"].to_numpy()
    while True:
        todo = np.flatnonzero(~placed)
        if todo.size == 0 or len(ref_vec) == 0:
            break
        i, j, angle = _pairs(vec_new[todo], ref_vec, radius_arcsec)
        other = survey_new[todo][i] != ref_survey[j]
        best_j, best_d = _nearest_per_row(i[other], j[other], angle[other], todo.size)
        hit = best_j >= 0
        if not hit.any():
            break
        rows = todo[hit]
        xid[rows] = ref_xid[best_j[hit]]
        dist[rows] = best_d[hit]
        placed[rows] = True
        # the objects just placed become references for the rest (only they: the others were tried already)
        ref_vec = vec_new[rows]
        ref_survey = survey_new[rows]
        ref_xid = xid[rows]

    # 3. groups of unplaced new objects of different surveys within the radius of one another
    todo = np.flatnonzero(~placed)
    if todo.size:
        i, j, _ = _pairs(vec_new[todo], None, radius_arcsec)
        other = survey_new[todo][i] != survey_new[todo][j]
        i, j = i[other], j[other]
        graph = coo_matrix((np.ones(i.size), (i, j)), shape=(todo.size, todo.size))
        _, label = connected_components(graph, directed=False)
        # leader of each group: earliest firstmjd, then smallest oid
        firstmjd = nw["firstmjd"].to_numpy()[todo]
        oids = nw["oid"].to_numpy()[todo].astype(str)
        mjd_key = np.where(np.isnan(firstmjd), np.inf, firstmjd)
        order = np.lexsort((oids, mjd_key, label))
        lead_first = np.ones(order.size, dtype=bool)
        lead_first[1:] = label[order][1:] != label[order][:-1]
        leader = np.empty(label.max() + 1, dtype=np.int64)
        leader[label[order][lead_first]] = order[lead_first]
        lead = leader[label]
        xid[todo] = oids[lead]
        follower = lead != np.arange(todo.size)
        rows = todo[follower]
        src = todo[lead[follower]]
        dist[rows] = angular_distance_arcsec(
            nw["ra"].to_numpy()[rows],
            nw["dec"].to_numpy()[rows],
            nw["ra"].to_numpy()[src],
            nw["dec"].to_numpy()[src],
        )
    return pd.DataFrame(
        {
            "oid": pd.array(nw["oid"].to_numpy(), dtype="str"),
            "survey": pd.array(nw["survey"].to_numpy(), dtype="str"),
            "xid": pd.array(xid, dtype="str"),
            "xid_distance_arcsec": dist,
        }
    )
