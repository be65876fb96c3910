"""Alert-internal neighbours: the catalogue sources every ZTF alert already carries, as one long table.

A ZTF ``candidate`` names the three nearest Pan-STARRS1 sources (``objectidps1..3``, ``sgmag/srmag/simag/szmag
1..3``, ``sgscore1..3``, ``distpsnr1..3``), the nearest Gaia source and the nearest Gaia source brighter than
G = 14 (``neargaia`` / ``maggaia``, ``neargaiabright`` / ``maggaiabright``; the alert gives no Gaia id) and the
nearest known solar-system object (``ssnamenr``, ``ssdistnr``, ``ssmagnr``). The ``alerts`` table keeps them as
flat columns (docs/data-model.md); :func:`alert_neighbours` turns them into one row per (alert, catalogue,
rank), the shape of ALeRCE's ``ps1_ztf`` / ``gaia_ztf`` / ``ss_ztf`` tables folded into one, so a query for "the
objects near a bright star" or "alerts on a known asteroid" is one filter.

Missing values, as ALeRCE reads them: ZTF writes ``-999`` (ids, distances, magnitudes, scores) and the string
``"null"`` (``ssnamenr``) for "no source"; they become nulls. A slot becomes a row only when the alert reports a
source there: a PS1 slot needs a valid ``objectidps#``, the solar-system slot a name, a Gaia slot a distance or
a magnitude. Values that cannot be what the field means are nulled too, each on its own:

* a distance that is negative or beyond the search radius ZTF documents for the field (PS1: 30", Gaia: 90"; the
  solar-system search has no documented radius and is not cut). The Fink sample has 329 alerts of night
  2023-10-17 with ``distpsnr1 = 120``, ``neargaia = 300``, ``ssdistnr = 60`` and ``sgscore1 = 0.2`` on every
  row, while their ``distpsnr2`` is smaller than ``distpsnr1``: placeholders, not measurements. Their ids and
  magnitudes are plausible and are kept.
* an ``sgscore`` outside [0, 1]. ZTF's 0.5 ("PS1 source without enough information") is a real value and kept.

Vectorised: one pass per (catalogue, rank) slot, six in all, whatever the number of alerts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from alert_broker.features.correction import as_float, require_columns

#: ZTF's "no source" marker for numeric fields; anything at or below it is a marker, never a value.
ZTF_MISSING = -999.0
#: Search radii ZTF documents for the alert's neighbour fields (arcsec); a larger distance is not a distance.
SEARCH_RADIUS_ARCSEC = {"ps1": 30.0, "gaia": 90.0, "gaia_bright": 90.0, "sso": np.inf}
CATALOGS = ("ps1", "gaia", "gaia_bright", "sso")

NEIGHBOUR_COLUMNS = (
    "oid",
    "candid",
    "mjd",
    "catalog",
    "rank",
    "neighbour_id",
    "dist_arcsec",
    "mag",
    "gmag",
    "rmag",
    "imag",
    "zmag",
    "sgscore",
    "night",
)
REQUIRED_ALERT_COLUMNS = ("oid", "candid", "mjd", "night")
_MAG_COLUMNS = ("mag", "gmag", "rmag", "imag", "zmag")


@dataclass(frozen=True)
class Slot:
    """Where one (catalogue, rank) neighbour lives among the alert's columns (None: the alert has no such field)."""

    catalog: str
    rank: int
    id_column: str | None
    dist_column: str
    mag_column: str | None = None  # the catalogue's own band (Gaia G, MPC V)
    ps1_prefix: int | None = None  # PS1 rank whose sgmag#/srmag#/simag#/szmag#/sgscore# to read
    present_by: str = "id"  # "id": the slot exists when the id is valid; "value": when distance or mag is


SLOTS: tuple[Slot, ...] = (
    *(Slot("ps1", r, f"objectidps{r}", f"distpsnr{r}", ps1_prefix=r) for r in (1, 2, 3)),
    Slot("gaia", 1, None, "neargaia", "maggaia", present_by="value"),
    Slot("gaia_bright", 1, None, "neargaiabright", "maggaiabright", present_by="value"),
    Slot("sso", 1, "ssnamenr", "ssdistnr", "ssmagnr"),
)


def clean_value(values: np.ndarray) -> np.ndarray:
    """float64 copy with ZTF's -999 markers and non-finite values as NaN."""
    out = np.array(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out[~np.isfinite(out) | (out <= ZTF_MISSING)] = np.nan
    return out


def clean_distance(values: np.ndarray, radius_arcsec: float) -> np.ndarray:
    """Distances in arcsec; markers, negatives and values beyond the search radius as NaN."""
    out = clean_value(values)
    with np.errstate(invalid="ignore"):
        out[(out < 0) | (out > radius_arcsec)] = np.nan
    return out


def clean_score(values: np.ndarray) -> np.ndarray:
    """Star/galaxy scores; markers and values outside [0, 1] as NaN."""
    out = clean_value(values)
    with np.errstate(invalid="ignore"):
        out[(out < 0) | (out > 1)] = np.nan
    return out


def _float_column(alerts: pd.DataFrame, name: str | None) -> np.ndarray:
    if name is None or name not in alerts.columns:
        return np.full(len(alerts), np.nan)
    return as_float(pd.to_numeric(alerts[name], errors="coerce"))


def _ids(alerts: pd.DataFrame, slot: Slot) -> pd.Series:
    """The slot's source id as nullable strings (PS1: the int64 objid in decimal, exactly; SSO: the name)."""
    n = len(alerts)
    if slot.id_column is None or slot.id_column not in alerts.columns:
        return pd.Series(pd.array([pd.NA] * n, dtype="string"))
    col = alerts[slot.id_column]
    if slot.catalog == "ps1":
        ids = pd.to_numeric(col, errors="coerce").astype("Int64")
        ids = ids.where(ids > 0)  # -999 (and any non-positive id) is "no source"
        return ids.astype("string").reset_index(drop=True)
    names = col.astype("string").str.strip().reset_index(drop=True)
    return names.where(~names.str.lower().isin(["", "null", "none", "nan", "-999"]))


def alert_neighbours(alerts: pd.DataFrame) -> pd.DataFrame:
    """The long neighbour table of an ``alerts`` frame: one row per (oid, candid, catalog, rank) with a source.

    Columns (``NEIGHBOUR_COLUMNS``): ``oid``, ``candid`` (int64), ``mjd``, ``catalog`` (``ps1`` | ``gaia`` |
    ``gaia_bright`` | ``sso``), ``rank`` (int16; 1..3 for PS1, 1 otherwise), ``neighbour_id`` (string: the PS1
    objid in decimal, the MPC name or number; null for Gaia, whose id the alert does not carry),
    ``dist_arcsec``, ``mag`` (Gaia G, or the solar-system object's MPC magnitude), ``gmag``..``zmag`` (PS1 PSF
    magnitudes), ``sgscore`` (PS1 star/galaxy score), ``night`` (the alert's night: the lake partition). Floats
    are NaN where missing (rules in the module docstring). Neighbour columns absent from the frame (old
    schemas, other surveys) count as missing; ``oid``, ``candid``, ``mjd`` and ``night`` are required.
    """
    require_columns(alerts, REQUIRED_ALERT_COLUMNS, "alert_neighbours()")
    oid = alerts["oid"].astype("str").to_numpy()
    candid = alerts["candid"].to_numpy(dtype=np.int64)
    mjd = as_float(alerts["mjd"])
    night = alerts["night"].to_numpy(dtype=np.int32)
    parts = []
    for slot in SLOTS:
        ids = _ids(alerts, slot)
        dist = clean_distance(_float_column(alerts, slot.dist_column), SEARCH_RADIUS_ARCSEC[slot.catalog])
        mags = {c: np.full(len(alerts), np.nan) for c in _MAG_COLUMNS}
        score = np.full(len(alerts), np.nan)
        if slot.mag_column is not None:
            mags["mag"] = clean_value(_float_column(alerts, slot.mag_column))
        if slot.ps1_prefix is not None:
            for band in "griz":
                mags[f"{band}mag"] = clean_value(_float_column(alerts, f"s{band}mag{slot.ps1_prefix}"))
            score = clean_score(_float_column(alerts, f"sgscore{slot.ps1_prefix}"))
        if slot.present_by == "id":
            present = ids.notna().to_numpy(dtype=bool)
        else:
            present = ~np.isnan(dist) | ~np.isnan(mags["mag"])
        rows = np.flatnonzero(present)
        parts.append(
            pd.DataFrame(
                {
                    "oid": oid[rows],
                    "candid": candid[rows],
                    "mjd": mjd[rows],
                    "catalog": slot.catalog,
                    "rank": np.full(rows.size, slot.rank, dtype=np.int16),
                    "neighbour_id": ids.iloc[rows].to_numpy(),
                    "dist_arcsec": dist[rows],
                    **{c: v[rows] for c, v in mags.items()},
                    "sgscore": score[rows],
                    "night": night[rows],
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)
    return _typed(out)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    out = df[list(NEIGHBOUR_COLUMNS)].copy()
    out["oid"] = out["oid"].astype("str")
    out["candid"] = out["candid"].astype(np.int64)
    out["catalog"] = out["catalog"].astype("str")
    out["rank"] = out["rank"].astype(np.int16)
    out["neighbour_id"] = out["neighbour_id"].astype("string")
    out["night"] = out["night"].astype(np.int32)
    for c in ("mjd", "dist_arcsec", "sgscore", *_MAG_COLUMNS):
        out[c] = out[c].astype(np.float64)
    return out


def latest_neighbours(table: pd.DataFrame) -> pd.DataFrame:
    """Per (oid, catalog, rank), the row of the latest alert (largest ``mjd``, then ``candid``) of ``table``.

    For the PostgreSQL ``neighbour`` summary (current state). A slot that a later alert no longer reports (an
    asteroid that moved on) keeps the row of the last alert that did: its ``candid``/``mjd`` say which, and the
    upsert's ``mjd`` version keeps a replayed older batch from overwriting it.
    """
    require_columns(table, ("oid", "catalog", "rank", "mjd", "candid"), "latest_neighbours()")
    if table.empty:
        return table.reset_index(drop=True)
    ordered = table.sort_values(["oid", "catalog", "rank", "mjd", "candid"], kind="stable")
    keep = ~ordered.duplicated(["oid", "catalog", "rank"], keep="last").to_numpy()
    return ordered[keep].reset_index(drop=True)
