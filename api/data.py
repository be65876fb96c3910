"""Every question the query API answers, as plain Python over PostgreSQL (summaries) and the lake (light curves
from the history store, stamps and raw packets from the raw archive). Read-only; no HTTP here (``app`` maps it).

Values always travel as query parameters; the only SQL text chosen at run time is picked from whitelists
(``ORDER_COLUMNS``, the fixed filter clauses below). Invalid input raises :class:`BadRequest` (HTTP 422 or 409),
an unknown object or alert :class:`NotFound` (404).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from alert_broker.api.cone import MAX_RADIUS_ARCSEC, angular_distance_sql, cone_ranges, positions_ranges
from alert_broker.api.db import ReadOnlyDatabase, clean
from alert_broker.api.formats import ID_COLUMNS  # sent as JSON strings; the Python client makes them int64
from alert_broker.api.stamps import STAMP_KINDS
from alert_broker.classifiers.registry import version_key
from alert_broker.features.correction import correct
from alert_broker.features.fluxstats import apparent_from_science_flux
from alert_broker.features.lightcurve import split_feature_name
from alert_broker.features.xmatch import pairs_within
from alert_broker.storage import Catalog, Lake, RawArchive, retention
from alert_broker.storage.archive import RAW_TABLE
from alert_broker.storage.catalogs import INDEX_COLUMN, catalog_dir
from alert_broker.storage.history import HistoryStore

log = logging.getLogger(__name__)

#: The largest page of objects one call returns.
MAX_PAGE_SIZE = 1000
#: The deepest row a page may start at (deep OFFSETs cost a scan of everything before them).
MAX_OFFSET = 100_000
OBJECT_COLUMNS = (
    "oid", "survey", "ndet", "firstmjd", "lastmjd", "deltajd", "meanra", "meandec", "sigmara", "sigmadec",
    "corrected", "stellar", "diffpos", "reference_change", "g_r_max", "g_r_max_corr", "g_r_mean", "g_r_mean_corr",
    "night",
)  # fmt: skip
#: ``order_by`` values and the column each sorts on.
ORDER_COLUMNS = {
    "oid": "oid", "ndet": "ndet", "firstmjd": "firstmjd", "lastmjd": "lastmjd", "deltajd": "deltajd",
    "meanra": "meanra", "meandec": "meandec", "probability": "probability", "dist_arcsec": "dist_arcsec",
    "dist": "dist_arcsec",
}  # fmt: skip
STAMP_CLASSIFIER = "stamp_classifier"
#: The stamp classifiers whose P(SN) makes SN candidates: one per survey's cutouts (ZTF's, Rubin's).
SN_CANDIDATE_CLASSIFIERS = (STAMP_CLASSIFIER, "stamp_classifier_lsst")
#: The widest radius of a cross-match of uploaded positions (arcsec): an association, not a cone search.
MAX_MATCH_RADIUS_ARCSEC = 60.0
#: Object columns a match of uploaded positions carries.
MATCH_COLUMNS = ("oid", "survey", "meanra", "meandec", "ndet", "firstmjd", "lastmjd")
#: The most (position, object) pairs one cross-match of uploaded positions answers with.
MAX_MATCH_PAIRS = 200_000
#: The widest cone over the local catalogues (arcsec) and the most sources one catalogue answers with.
MAX_CATALOG_RADIUS_ARCSEC = 1800.0
MAX_CATALOG_ROWS = 1000
#: Order-29 ranges sent to PostgreSQL in one query (each one an index range scan).
RANGES_PER_QUERY = 5_000
#: Band names of the unique ``fid`` values (docs/data-model.md).
FID_BANDS = {1: "g", 2: "r", 3: "i", 4: "u", 5: "g", 6: "r", 7: "i", 8: "z", 9: "y", 10: "c", 11: "o"}


class BadRequest(ValueError):
    """The request cannot be answered as asked (the message says why); ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


class NotFound(LookupError):
    """The object or alert does not exist."""


class Gone(LookupError):
    """The alert exists but its raw packet and stamps were removed by the archive's retention (HTTP 410)."""


@dataclass
class ObjectQuery:
    """The filters of ``/objects``, with ALeRCE's names (``class_name`` is ALeRCE's ``class``)."""

    classifier: str | None = None
    classifier_version: str | None = None
    class_name: str | None = None
    probability: float | None = None
    ranking: int | None = None
    ndet: list[int] = field(default_factory=list)  # [min] or [min, max]
    firstmjd: list[float] = field(default_factory=list)
    lastmjd: list[float] = field(default_factory=list)
    survey: list[str] = field(default_factory=list)
    oid: list[str] = field(default_factory=list)
    ra: float | None = None
    dec: float | None = None
    radius: float | None = None  # arcsec
    page: int = 1
    page_size: int = 20
    count: bool = False
    order_by: str | None = None
    order_mode: str = "DESC"


def records(df: pd.DataFrame, drop: tuple[str, ...] = ()) -> list[dict]:
    """JSON-ready rows of ``df``: NaN as null, 64-bit ids as strings."""
    if df is None or df.empty:
        return []
    df = df.drop(columns=[c for c in drop if c in df.columns])
    out = df.astype(object).where(df.notna(), None)
    for c in ID_COLUMNS:
        if c in out.columns:
            out[c] = [None if v is None else str(int(v)) for v in out[c]]
    return [clean(r) for r in out.to_dict(orient="records")]


def _range(name: str, values: list, cast) -> tuple[Any, Any]:
    """ALeRCE's list filters: ``[min]`` or ``[min, max]``."""
    if not values:
        return None, None
    if len(values) > 2:
        raise BadRequest(f"{name} takes one value (minimum) or two (minimum and maximum), got {len(values)}")
    lo = cast(values[0])
    hi = cast(values[1]) if len(values) == 2 else None
    if hi is not None and lo > hi:
        raise BadRequest(f"{name}: minimum {lo} is above maximum {hi}")
    return lo, hi


def _any_of(
    where: list[str], params: dict[str, Any], column: str, key: str, values: list[str] | None
) -> None:
    """Add ``column = ANY(values)`` to a query's conditions when ``values`` are given (a bound list, never text)."""
    if values:
        where.append(f"{column} = ANY(%({key})s)")
        params[key] = list(values)


def check_position(ra: float | None, dec: float | None, radius: float | None) -> None:
    given = [v is not None for v in (ra, dec, radius)]
    if any(given) and not all(given):
        raise BadRequest("a cone search needs ra, dec and radius (arcsec) together")
    if not all(given):
        return
    if not (np.isfinite(ra) and 0.0 <= ra <= 360.0):
        raise BadRequest(f"ra must be within [0, 360] degrees, got {ra}")
    if not (np.isfinite(dec) and -90.0 <= dec <= 90.0):
        raise BadRequest(f"dec must be within [-90, 90] degrees, got {dec}")
    if not (np.isfinite(radius) and 0.0 < radius <= MAX_RADIUS_ARCSEC):
        raise BadRequest(f"radius must be within (0, {MAX_RADIUS_ARCSEC:g}] arcsec, got {radius}")


class _Lru:
    """A small thread-safe LRU of immutable things (stamps never change once archived)."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, loader):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = loader()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


class BrokerData:
    """The read side of a broker: PostgreSQL at ``dsn`` and the lake at ``lake_url``."""

    def __init__(
        self,
        dsn: str,
        lake_url: str,
        storage_options: dict | None = None,
        history_order: int = 4,
        pool_size: int = 6,
        catalog_root: str | None = None,
    ):
        self.db = ReadOnlyDatabase(dsn, size=pool_size)
        self.lake = Lake(lake_url, storage_options or None)
        self.catalog_root = Path(catalog_root) if catalog_root else None
        self._catalogs: dict[str, tuple[float, Catalog]] = {}
        self._catalogs_lock = threading.Lock()
        self.history = HistoryStore(self.lake, order=history_order)
        self.archive = RawArchive(self.lake)
        self._stamps = _Lru(256)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------------------------------- objects
    def objects_sql(self, q: ObjectQuery) -> tuple[str, str, dict[str, Any]]:
        """The SQL of a page of ``/objects`` (and of its count) and their parameters: every value a parameter,
        the rest fixed text chosen from whitelists. ``benchmarks`` EXPLAIN it."""
        if not 1 <= q.page_size <= MAX_PAGE_SIZE:
            raise BadRequest(f"page_size must be within 1..{MAX_PAGE_SIZE}")
        if q.page < 1 or (q.page - 1) * q.page_size > MAX_OFFSET:
            raise BadRequest(f"page must be >= 1 and start within the first {MAX_OFFSET} rows")
        check_position(q.ra, q.dec, q.radius)
        cone = q.radius is not None
        ranked = bool(q.classifier or q.class_name or q.classifier_version or q.probability is not None)
        mode = (q.order_mode or "DESC").upper()
        if mode not in ("ASC", "DESC"):
            raise BadRequest("order_mode must be ASC or DESC")
        order_by = q.order_by or ("dist_arcsec" if cone else "probability" if ranked else "lastmjd")
        if q.order_by is None and cone:
            mode = "ASC"
        if order_by not in ORDER_COLUMNS:
            raise BadRequest(f"order_by must be one of {', '.join(sorted(ORDER_COLUMNS))}")
        order_col = ORDER_COLUMNS[order_by]
        if order_col == "probability" and not ranked:
            raise BadRequest("order_by=probability needs a classifier or class filter")
        if order_col == "dist_arcsec" and not cone:
            raise BadRequest("order_by=dist_arcsec needs a cone search (ra, dec, radius)")

        params: dict[str, Any] = {}
        select = [f"o.{c}" for c in OBJECT_COLUMNS]
        joins: list[str] = []
        where: list[str] = []
        if cone:
            lows, highs = cone_ranges(q.ra, q.dec, q.radius)
            params |= {"ra": float(q.ra), "dec": float(q.dec), "radius": float(q.radius)}
            # one BETWEEN per range, each bound a parameter: the planner estimates each range from hpx29's
            # histogram and ORs bitmap scans of the index (an unnest() join hides the bounds and gets a seq scan)
            ranges = []
            for i, (lo, hi) in enumerate(zip(lows, highs, strict=True)):
                params[f"lo{i}"], params[f"hi{i}"] = lo, hi
                ranges.append(f"o.hpx29 BETWEEN %(lo{i})s AND %(hi{i})s")
            where.append("(" + " OR ".join(ranges) + ")")
            select.append(f"{angular_distance_sql('o.meanra', 'o.meandec')} AS dist_arcsec")
        if ranked:
            joins.append("JOIN probability p ON p.oid = o.oid")
            select += [
                "p.classifier_name",
                "p.classifier_version",
                "p.class_name",
                "p.probability",
                "p.ranking",
            ]
            ranking = q.ranking if q.ranking is not None else 1
            where.append("p.ranking = %(ranking)s")
            params["ranking"] = int(ranking)
            if q.classifier:
                where.append("p.classifier_name = %(classifier)s")
                params["classifier"] = q.classifier
            if q.classifier_version:
                where.append("p.classifier_version = %(classifier_version)s")
                params["classifier_version"] = q.classifier_version
            else:
                where.append(self._latest_version_only("p", params))
            if q.class_name:
                where.append("p.class_name = %(class_name)s")
                params["class_name"] = q.class_name
            if q.probability is not None:
                if not (np.isfinite(q.probability) and 0.0 <= q.probability <= 1.0):
                    raise BadRequest("probability must be within [0, 1]")
                where.append("p.probability >= %(probability)s")
                params["probability"] = float(q.probability)
        elif q.ranking is not None:
            raise BadRequest("ranking needs a classifier or class filter")
        for name, values, cast, col in (
            ("ndet", q.ndet, int, "o.ndet"),
            ("firstmjd", q.firstmjd, float, "o.firstmjd"),
            ("lastmjd", q.lastmjd, float, "o.lastmjd"),
        ):
            lo, hi = _range(name, values, cast)
            if lo is not None:
                where.append(f"{col} >= %({name}_min)s")
                params[f"{name}_min"] = lo
            if hi is not None:
                where.append(f"{col} <= %({name}_max)s")
                params[f"{name}_max"] = hi
        if q.survey:
            where.append("o.survey = ANY(%(survey)s)")
            params["survey"] = [s.lower() for s in q.survey]
        if q.oid:
            where.append("o.oid = ANY(%(oids)s)")
            params["oids"] = list(q.oid)
        inner = f"SELECT {', '.join(select)} FROM object o {' '.join(joins)}"
        if where:
            inner += " WHERE " + " AND ".join(where)
        outer = f"SELECT * FROM ({inner}) q"
        if cone:
            outer += " WHERE q.dist_arcsec <= %(radius)s"
        page_sql = (
            f"{outer} ORDER BY q.{order_col} {mode}, q.oid"
            + (", q.classifier_name, q.classifier_version" if ranked else "")
            + " LIMIT %(limit)s OFFSET %(offset)s"
        )
        params |= {"limit": q.page_size + 1, "offset": (q.page - 1) * q.page_size}
        return page_sql, f"SELECT count(*) FROM ({outer}) c", params

    def match_positions(
        self, ra: np.ndarray, dec: np.ndarray, radius: float, all_matches: bool = False
    ) -> pd.DataFrame:
        """The objects within ``radius`` arcsec of each position (the nearest only unless ``all_matches``):
        ``row`` (the position's index), ``dist_arcsec``, the object's :data:`MATCH_COLUMNS` and, per classifier,
        its most probable class and probability at the object's latest version (``<classifier>_class``,
        ``<classifier>_probability``); ordered by position, then distance.

        The objects come from the ``hpx29`` index: the order-29 ranges of every position's pixel and its
        neighbours (``cone.positions_ranges``), each an index range scan (a LATERAL join over the ranges, so the
        planner scans the index once per range), then the exact distance on the unit sphere decides."""
        if not (np.isfinite(radius) and 0.0 < radius <= MAX_MATCH_RADIUS_ARCSEC):
            raise BadRequest(f"radius must be within (0, {MAX_MATCH_RADIUS_ARCSEC:g}] arcsec, got {radius}")
        ra, dec = np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)
        lows, highs = positions_ranges(ra, dec, radius) if ra.size else ([], [])
        frames = [
            self.db.frame(  # the bounds as one text each: psycopg dumps a list of ints item by item in Python
                f"SELECT {', '.join('o.' + c for c in MATCH_COLUMNS)} FROM unnest("
                "string_to_array(%(lo)s, ',')::bigint[], string_to_array(%(hi)s, ',')::bigint[]) AS r(lo, hi)"
                " CROSS JOIN LATERAL (SELECT * FROM object WHERE hpx29 BETWEEN r.lo AND r.hi) o",
                {
                    "lo": ",".join(map(str, lows[i : i + RANGES_PER_QUERY])),
                    "hi": ",".join(map(str, highs[i : i + RANGES_PER_QUERY])),
                },
            )
            for i in range(0, len(lows), RANGES_PER_QUERY)
        ]
        objects = (
            pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(MATCH_COLUMNS))
        )
        objects = objects.dropna(subset=["meanra", "meandec"]).reset_index(drop=True)
        i, j, dist = pairs_within(
            ra, dec, objects["meanra"].to_numpy(np.float64), objects["meandec"].to_numpy(np.float64), radius
        )
        if not all_matches and i.size:
            first = np.r_[True, i[1:] != i[:-1]]  # ordered by position, then distance: the nearest leads
            i, j, dist = i[first], j[first], dist[first]
        if i.size > MAX_MATCH_PAIRS:
            raise BadRequest(
                f"{i.size} matches: at most {MAX_MATCH_PAIRS} in one answer (a smaller radius, the nearest only, "
                "or fewer positions)"
            )
        out = objects.iloc[j].reset_index(drop=True)
        out.insert(0, "dist_arcsec", dist)
        out.insert(0, "row", i)
        if out.empty:
            return out
        params: dict[str, Any] = {"oids": sorted(set(out["oid"].astype(str)))}
        latest = self._latest_version_only("p", params)
        top = self.db.frame(
            "SELECT p.oid, p.classifier_name, p.class_name, p.probability FROM probability p "
            f"WHERE p.oid = ANY(%(oids)s) AND p.ranking = 1 AND {latest}",
            params,
        )
        for name, rows in top.groupby("classifier_name", sort=True):
            rows = rows.drop_duplicates("oid").set_index("oid")
            out[f"{name}_class"] = out["oid"].map(rows["class_name"])
            out[f"{name}_probability"] = out["oid"].map(rows["probability"]).astype("float64")
        return out

    # ------------------------------------------------------------------------------------------- watch lists
    def watchlists(self) -> list[dict]:
        """Each watch list with hits: hits, targets hit, objects, and the last hit's MJD."""
        return records(
            self.db.frame(
                "SELECT watchlist, count(*) AS hits, count(DISTINCT name) AS targets_hit, "
                "count(DISTINCT oid) AS objects, max(mjd) AS last_mjd FROM watchlist_hit "
                "GROUP BY watchlist ORDER BY watchlist"
            )
        )

    def watchlist_hits(
        self,
        watchlist: list[str] | None = None,
        name: list[str] | None = None,
        night: int | None = None,
        since_mjd: float | None = None,
        limit: int = 200,
    ) -> list[dict]:
        """Watch-list hits, newest first: which entry (``watchlist``, ``name``) an alert landed on, its object,
        time, position, distance and magnitude."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise BadRequest(f"limit must be within 1..{MAX_PAGE_SIZE}")
        where, p = ["TRUE"], {"limit": int(limit)}
        _any_of(where, p, "h.watchlist", "watchlist", watchlist)
        _any_of(where, p, "h.name", "name", name)
        if night is not None:
            where.append("h.night = %(night)s")
            p["night"] = int(night)
        if since_mjd is not None:
            if not np.isfinite(since_mjd):
                raise BadRequest("since_mjd must be a finite MJD")
            where.append("h.mjd >= %(since)s")
            p["since"] = float(since_mjd)
        return records(
            self.db.frame(
                "SELECT h.watchlist, h.name, h.oid, h.survey, h.candid, h.mjd, h.night, h.ra, h.dec, h.dist_arcsec,"
                " a.magpsf, a.band FROM watchlist_hit h"
                " LEFT JOIN alert a ON a.survey = h.survey AND a.candid = h.candid"
                f" WHERE {' AND '.join(where)} ORDER BY h.mjd DESC, h.watchlist, h.name LIMIT %(limit)s",
                p,
            )
        )

    # ------------------------------------------------------------------------------------------- catalogues
    def _catalog(self, name: str) -> Catalog:
        """The imported catalogue ``name`` (opened once, again after a re-import)."""
        if self.catalog_root is None:
            raise NotFound("no catalogue folder is configured (broker serve --catalog-root)")
        try:  # the info file's time: a re-import rewrites it (a walk of the pixel files would cost thousands of stats)
            stamp = (catalog_dir(self.catalog_root / name) / "catalog_info.json").stat().st_mtime
        except (OSError, KeyError):
            raise NotFound(f"no catalogue {name!r} (import it with `broker catalog import`)") from None
        with self._catalogs_lock:
            held = self._catalogs.get(name)
            if held is None or held[0] != stamp:
                held = (stamp, Catalog(self.catalog_root, name))
                self._catalogs[name] = held
            return held[1]

    def catalogs(self) -> list[dict]:
        """The local catalogues ``broker catalog import`` wrote under the catalogue folder."""
        if self.catalog_root is None or not self.catalog_root.is_dir():
            return []
        out = []
        for d in sorted(p for p in self.catalog_root.iterdir() if p.is_dir()):
            try:
                info = self._catalog(d.name).info
            except (NotFound, FileNotFoundError, ValueError, KeyError):
                continue  # not a catalogue (or one being imported)
            out.append(
                {
                    "name": d.name,
                    "rows": info.total_rows,
                    "columns": [c for c in info.columns if c != INDEX_COLUMN],
                    "ra_column": info.ra_column,
                    "dec_column": info.dec_column,
                    "id_column": info.id_column,
                    "source": info.source,
                }
            )
        return out

    def catalog_cone(
        self,
        ra: float,
        dec: float,
        radius: float,
        names: list[str] | None = None,
        nearest: bool = False,
        limit: int = MAX_CATALOG_ROWS,
    ) -> dict:
        """The sources of the local catalogues (``names``, or every one) within ``radius`` arcsec of a position,
        nearest first, each with ``catalog_id``, ``dist_arcsec``, ``ra``, ``dec`` and the catalogue's columns;
        only the nearest of each with ``nearest``. ALeRCE's catsHTM service answers the same question from its
        catsHTM copies; here the catalogues are the HATS ones the pipeline cross-matches with."""
        if not (np.isfinite(radius) and 0.0 < radius <= MAX_CATALOG_RADIUS_ARCSEC):
            raise BadRequest(f"radius must be within (0, {MAX_CATALOG_RADIUS_ARCSEC:g}] arcsec, got {radius}")
        check_position(ra, dec, radius)
        if not 1 <= limit <= MAX_CATALOG_ROWS:
            raise BadRequest(f"limit must be within 1..{MAX_CATALOG_ROWS}")
        wanted = names or [c["name"] for c in self.catalogs()]
        found: dict[str, dict] = {}
        for name in wanted:
            cat = self._catalog(name)
            rows = cat.cone(float(ra), float(dec), float(radius))
            total = len(rows)
            rows = rows.head(1 if nearest else limit)
            info = cat.info
            front = pd.DataFrame(
                {
                    "catalog_id": rows[info.id_column].astype(str).to_numpy(),
                    "dist_arcsec": rows["dist_arcsec"].to_numpy(),
                    "ra": rows[info.ra_column].to_numpy(),
                    "dec": rows[info.dec_column].to_numpy(),
                }
            )
            rest = rows.drop(
                columns=[c for c in (INDEX_COLUMN, "dist_arcsec", info.id_column, info.ra_column, info.dec_column)
                         if c in rows.columns]
            )  # fmt: skip
            found[name] = {
                "total": total,
                "rows": records(pd.concat([front, rest.reset_index(drop=True)], axis=1)),
            }
        return {"ra": ra, "dec": dec, "radius": radius, "catalogs": found}

    def _latest_version_only(self, alias: str, params: dict[str, Any]) -> str:
        """A condition keeping, of the ``probability`` rows ``alias``, those of each object's latest version of
        their classifier (adds its parameters to ``params``). Several versions of one classifier come from nights
        run with different models or from ``broker reclassify``; without this an object would answer once per
        version. ``TRUE`` when every classifier has one version."""
        newer = self._newer_versions()
        if not newer:
            return "TRUE"
        params |= {
            "nv_name": [n for n, _, _ in newer],
            "nv_version": [v for _, v, _ in newer],
            "nv_newer": [w for _, _, w in newer],
        }
        return (
            "NOT EXISTS (SELECT 1 FROM unnest(%(nv_name)s::text[], %(nv_version)s::text[], %(nv_newer)s::text[])"
            " AS nv(name, version, newer) JOIN probability p2 ON p2.oid = {a}.oid AND p2.classifier_name = nv.name"
            " AND p2.classifier_version = nv.newer AND p2.ranking = 1"
            " WHERE nv.name = {a}.classifier_name AND nv.version = {a}.classifier_version)"
        ).replace("{a}", alias)

    def _newer_versions(self) -> list[tuple[str, str, str]]:
        """(classifier, version, a newer version of it) for every classifier with several versions in the
        taxonomy (the registry's numeric order): what a query without a version uses to answer with each
        object's latest version only, as the explorer and ``probabilities_latest`` do."""
        df = self.db.frame("SELECT DISTINCT classifier_name, classifier_version FROM taxonomy")
        out = []
        for name, g in df.groupby("classifier_name"):
            known = sorted(g["classifier_version"].astype(str), key=version_key)
            out += [(str(name), v, w) for i, v in enumerate(known) for w in known[i + 1 :]]
        return out

    def objects(self, q: ObjectQuery) -> dict:
        """A page of objects matching ``q`` (ALeRCE's ``/objects``), with ``total`` when ``q.count``."""
        page_sql, count_sql, params = self.objects_sql(q)
        df = self.db.frame(page_sql, params)
        has_next = len(df) > q.page_size
        total = None
        if q.count:
            total = int(self.db.scalar(count_sql, params))
        return {
            "total": total,
            "page": q.page,
            "page_size": q.page_size,
            "has_next": has_next,
            "next": q.page + 1 if has_next else None,
            "prev": q.page - 1 if q.page > 1 else None,
            "items": records(df.iloc[: q.page_size]),
        }

    def _object_row(self, oid: str) -> dict:
        rows = self.db.rows(
            "SELECT o.*, x.xid, x.xid_distance_arcsec FROM object o "
            "LEFT JOIN object_association x ON x.oid = o.oid AND x.survey = o.survey WHERE o.oid = %s",
            (oid,),
        )
        if not rows:
            raise NotFound(f"object {oid!r} is not known")
        return rows[0]

    def object(self, oid: str) -> dict:
        """The object's summary, magstats, cross-matches, catalogue neighbours, outlier scores, its alerts and
        its association with objects of other surveys (the cross-survey id ``xid``)."""
        row = self._object_row(oid)
        row.pop("hpx29", None)
        out = clean(row)
        out["magstats"] = self.magstats(oid)
        out["xmatch"] = records(
            self.db.frame(
                "SELECT catalog, catalog_id, dist_arcsec, properties, night FROM xmatch "
                "WHERE oid = %s ORDER BY catalog",
                (oid,),
            )
        )
        out["neighbours"] = records(
            self.db.frame(
                "SELECT catalog, rank, neighbour_id, dist_arcsec, mag, gmag, rmag, imag, zmag, sgscore, candid, mjd "
                "FROM neighbour WHERE oid = %s ORDER BY catalog, rank",
                (oid,),
            )
        )
        out["outliers"] = records(
            self.db.frame(
                "SELECT classifier_name, classifier_version, branch, outlier_score FROM outlier_score "
                "WHERE oid = %s ORDER BY classifier_name, classifier_version",
                (oid,),
            )
        )
        out["alerts"] = records(
            self.db.frame(
                "SELECT candid, survey, mjd, night, fid, band, ra, dec, magpsf, sigmapsf, flux, flux_err "
                "FROM alert WHERE oid = %s ORDER BY mjd",
                (oid,),
            )
        )
        xid = row.get("xid") or oid
        members = self.db.frame(
            "SELECT x.oid, x.survey, x.xid_distance_arcsec, o.meanra, o.meandec, o.ndet, o.firstmjd, o.lastmjd "
            "FROM object_association x LEFT JOIN object o ON o.oid = x.oid "
            "WHERE x.xid = %s ORDER BY x.survey, x.oid",
            (xid,),
        )
        out["association"] = {"xid": xid, "members": records(members)}
        return out

    def magstats(self, oid: str) -> list[dict]:
        df = self.db.frame("SELECT * FROM magstats WHERE oid = %s ORDER BY fid", (oid,))
        if not df.empty:
            df.insert(2, "band", df["fid"].astype("int64").map(FID_BANDS))
        return records(df)

    def features(self, oid: str, version: str | None = None, name: str | None = None) -> list[dict]:
        """The object's feature vectors (PostgreSQL's ``feature``, one JSON object per version) as one row per
        feature and band, versions in order, features by name then band."""
        self._object_row(oid)
        df = self.db.frame(
            "SELECT feature_version, lastmjd, features FROM feature WHERE oid = %(oid)s "
            "AND (%(version)s::text IS NULL OR feature_version = %(version)s) ORDER BY feature_version",
            {"oid": oid, "version": version},
        )
        out = []
        for version_, lastmjd, values in df[["feature_version", "lastmjd", "features"]].itertuples(
            index=False
        ):
            rows = []
            for column, value in (values or {}).items():
                feature, band = split_feature_name(column)
                if name is not None and name not in (column, feature):
                    continue
                fid = band if isinstance(band, int) else None
                finite = isinstance(value, int | float) and math.isfinite(value)
                rows.append(
                    {
                        "oid": oid,
                        "version": version_,
                        "feature": column,
                        "name": feature,
                        "fid": fid,
                        "band": FID_BANDS.get(fid) if fid is not None else band,
                        "value": float(value) if finite else None,
                        "lastmjd": lastmjd,
                    }
                )
            out += sorted(rows, key=lambda r: (r["name"], str(r["band"] or "")))
        return out

    def probabilities(
        self, oid: str, classifier: str | None = None, version: str | None = None
    ) -> list[dict]:
        """Every probability row of the object (each classifier and version), with the taxonomy's level,
        parent and display order."""
        self._object_row(oid)
        df = self.db.frame(
            "SELECT p.oid, p.classifier_name, p.classifier_version, p.class_name, p.probability, p.ranking, "
            "t.level, t.parent, t.ord FROM probability p LEFT JOIN taxonomy t "
            "ON t.classifier_name = p.classifier_name AND t.classifier_version = p.classifier_version "
            "AND t.class_name = p.class_name WHERE p.oid = %(oid)s "
            "AND (%(classifier)s::text IS NULL OR p.classifier_name = %(classifier)s) "
            "AND (%(version)s::text IS NULL OR p.classifier_version = %(version)s) "
            "ORDER BY p.classifier_name, p.classifier_version, p.ranking, p.class_name",
            {"oid": oid, "classifier": classifier, "version": version},
        )
        return records(df)

    # ------------------------------------------------------------------------------------------- light curves
    def _members(self, oid: str, all_surveys: bool) -> pd.DataFrame:
        """(oid, survey, ra, dec) of the object, or of every object sharing its cross-survey id."""
        row = self._object_row(oid)
        if not all_surveys:
            return pd.DataFrame(
                [{"oid": oid, "survey": row["survey"], "ra": row["meanra"], "dec": row["meandec"]}]
            )
        return self.db.frame(
            "SELECT o.oid, o.survey, o.meanra AS ra, o.meandec AS dec FROM object_association x "
            "JOIN object o ON o.oid = x.oid WHERE x.xid = %s ORDER BY o.oid",
            (row.get("xid") or oid,),
        )

    def _history(self, members: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        positions = members.dropna(subset=["ra", "dec"])
        if positions.empty:
            return pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
        # an object lives in the pixel of its first position, which its mean position may have left (a stray
        # detection pulls the mean away): look around the mean and every alert's position, then everywhere
        alerts = self.db.frame(
            "SELECT DISTINCT oid, round(ra::numeric, 3)::float8 AS ra, round(dec::numeric, 3)::float8 AS dec "
            "FROM alert WHERE oid = ANY(%s) AND ra IS NOT NULL AND dec IS NOT NULL",
            (positions["oid"].tolist(),),
        )
        around = pd.concat([positions[["oid", "ra", "dec"]], alerts], ignore_index=True)
        pixels = self.history.locate(around)
        missing = sorted(set(positions["oid"]) - set(pixels.index))
        if missing:
            everywhere = self.history.read("objects", self.history.pixels("objects"), missing)
            if not everywhere.empty:
                found = everywhere.drop_duplicates("oid").set_index("oid")["pixel"].astype("int64")
                pixels = pd.concat([pixels, found])
        if pixels.empty:
            return pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
        oids = list(pixels.index)
        pix = sorted(set(pixels.tolist()))
        return tuple(
            self.history.read(t, pix, oids) for t in ("detections", "non_detections", "forced_photometry")
        )

    def lightcurve(self, oid: str, all_surveys: bool = False) -> dict:
        """Every stored detection (corrected and raw photometry), non-detection limit and forced-photometry
        point of the object (or of its cross-survey source), time-ordered. ``source`` says where they came from:
        ``history`` (the light-curve history store) or ``alerts`` (the alert summaries, for a broker run with
        ``--no-history``)."""
        members = self._members(oid, all_surveys)
        det, nondet, forced = self._history(members)
        source = "history"
        if det.empty:
            source = "alerts"
            det = self.db.frame(
                "SELECT oid, candid, survey, mjd, night, fid, band, ra, dec, magpsf, sigmapsf, flux, flux_err, "
                "TRUE AS has_stamp FROM alert WHERE oid = ANY(%s) ORDER BY mjd",
                (members["oid"].tolist(),),
            )
        else:
            try:
                det = apparent_from_science_flux(correct(det))
            except ValueError as err:  # rows the correction cannot read: serve them uncorrected
                log.warning("light curve of %s left uncorrected: %s", oid, err)
        det = det.sort_values(["mjd", "oid"], kind="stable") if not det.empty else det
        nondet = nondet.sort_values("mjd", kind="stable") if not nondet.empty else nondet
        forced = forced.sort_values("mjd", kind="stable") if not forced.empty else forced
        return {
            "oid": oid,
            "oids": members["oid"].tolist(),
            "source": source,
            "detections": records(det, drop=("pixel",)),
            "non_detections": records(nondet, drop=("pixel",)),
            "forced_photometry": records(forced, drop=("pixel",)),
        }

    # ------------------------------------------------------------------------------------------- alerts
    def alert(self, candid: int, survey: str | None = None) -> dict:
        """The alert's summary row (``survey`` picks one when surveys share a candid)."""
        rows = self.db.rows(
            "SELECT * FROM alert WHERE candid = %(candid)s AND (%(survey)s::text IS NULL OR survey = %(survey)s)",
            {"candid": int(candid), "survey": survey.lower() if survey else None},
        )
        if not rows:
            raise NotFound(f"alert {candid} is not known" + (f" in survey {survey!r}" if survey else ""))
        if len(rows) > 1:
            raise BadRequest(
                f"candid {candid} exists in several surveys ({', '.join(r['survey'] for r in rows)}): add survey=",
                status=409,
            )
        return rows[0]

    def _check_kept(self, candid: int, row: dict) -> None:
        """Raise :class:`Gone` when the alert's packet went with its night (``broker lake expire``): said at
        once, without searching the whole archive for it."""
        try:
            expired = self.db.scalar(retention.EXPIRED_AT_SQL, (RAW_TABLE, row.get("night")))
        except psycopg.errors.UndefinedTable:  # a database from before retention existed
            return
        if retention.packet_gone(self.lake, expired, row.get("raw_path")):
            raise Gone(retention.gone_message(candid, row.get("night"), expired))

    def raw_packet(self, candid: int, survey: str | None = None) -> tuple[dict, bytes]:
        row = self.alert(candid, survey)
        self._check_kept(candid, row)
        try:
            payload = self.archive.fetch(int(candid), night=row.get("night"), path=row.get("raw_path"))
        except KeyError as err:
            raise NotFound(str(err)) from None
        return row, payload

    def stamp(self, candid: int, kind: str, survey: str | None = None) -> tuple[dict, bytes]:
        """The alert's ``kind`` cutout (science, template or difference) as carried (FITS, gzipped or not)."""
        if kind not in STAMP_KINDS:
            raise BadRequest(f"stamp kind must be one of {', '.join(STAMP_KINDS)}")
        row = self.alert(candid, survey)

        def load() -> dict[str, bytes]:
            self._check_kept(candid, row)  # on a cache miss only: the three stamps of an alert ask once
            try:
                return self.archive.fetch_stamps(
                    int(candid), night=row.get("night"), path=row.get("raw_path")
                )
            except (KeyError, ValueError) as err:
                raise NotFound(f"the raw packet of alert {candid} is not in the archive: {err}") from None

        stamps = self._stamps.get((row["survey"], int(candid)), load)
        if not stamps.get(kind):
            raise NotFound(f"alert {candid} carries no {kind} cutout")
        return row, stamps[kind]

    # ------------------------------------------------------------------------------------------- nights
    def latest_night(self) -> int | None:
        value = self.db.scalar("SELECT max(night) FROM alert")
        return None if value is None else int(value)

    def nights(self, limit: int = 366) -> list[dict]:
        return records(
            self.db.frame(
                "SELECT night, count(*) AS alerts, count(DISTINCT oid) AS objects FROM alert "
                "GROUP BY night ORDER BY night DESC LIMIT %s",
                (int(limit),),
            )
        )

    def runs(
        self, source: list[str] | None = None, status: list[str] | None = None, limit: int = 50
    ) -> list[dict]:
        """The broker's recorded runs, newest first: nights (their source), integrity checks (``integrity``) and
        re-scorings (``reclassify``), each with its status and counts (settings and summary: ``run``)."""
        where, p = [], {"limit": int(limit)}
        _any_of(where, p, "source", "source", source)
        _any_of(where, p, "status", "status", status)
        return records(
            self.db.frame(
                "SELECT run_id, source, status, started_at, finished_at, "
                "extract(epoch FROM finished_at - started_at)::float8 AS seconds, counts FROM pipeline_run "
                + ("WHERE " + " AND ".join(where) + " " if where else "")
                + "ORDER BY started_at DESC NULLS LAST LIMIT %(limit)s",
                p,
            )
        )

    def run(self, run_id: str) -> dict:
        """One run with its settings (secrets masked when it was recorded) and its summary."""
        rows = records(self.db.frame("SELECT * FROM pipeline_run WHERE run_id = %s", (run_id,)))
        if not rows:
            raise NotFound(f"run {run_id!r} is not known")
        return rows[0]

    def sn_candidates(
        self,
        night: int | None = None,
        max_age_days: float = 5.0,
        min_probability: float = 0.0,
        ranking: int | None = 1,
        exclude_stellar: bool = True,
        max_sgscore: float = 0.4,
        ps1_radius: float = 1.4,
        sso_radius: float = 5.0,
        limit: int = 200,
    ) -> dict:
        """The night's supernova candidates, as ALeRCE's SN Hunter picks them: objects with an alert that night,
        first detected at most ``max_age_days`` before the night's last alert, whose stamp classifier (its survey's:
        :data:`SN_CANDIDATE_CLASSIFIERS`) gives SN
        (top class when ``ranking`` = 1), not star-like (``stellar`` flag, or a PS1 source within ``ps1_radius``
        arcsec with ``sgscore1 > max_sgscore``) and not a known solar-system object within ``sso_radius``;
        ranked by the SN probability."""
        night = night if night is not None else self.latest_night()
        if night is None:
            return {"night": None, "candidates": []}
        params: dict[str, Any] = {}
        latest = self._latest_version_only("p", params)
        df = self.db.frame(
            """
            WITH tonight AS (SELECT oid, max(mjd) AS last_alert_mjd, count(*) AS alerts_tonight
                             FROM alert WHERE night = %(night)s GROUP BY oid),
                 ref AS (SELECT max(mjd) AS mjd FROM alert WHERE night = %(night)s)
            SELECT o.oid, o.survey, o.meanra, o.meandec, o.ndet, o.firstmjd, o.lastmjd, o.stellar,
                   ref.mjd - o.firstmjd AS age_days, n.alerts_tonight,
                   p.probability AS sn_probability, p.ranking AS sn_ranking, p.classifier_name,
                   p.classifier_version,
                   ps1.sgscore AS sgscore1, ps1.dist_arcsec AS distpsnr1,
                   sso.neighbour_id AS ssnamenr, sso.dist_arcsec AS ssdistnr,
                   fa.candid AS first_candid, fa.survey AS first_survey, fa.magpsf AS first_magpsf,
                   fa.band AS first_band, la.candid AS last_candid, la.magpsf AS last_magpsf, la.band AS last_band
            FROM tonight n JOIN object o ON o.oid = n.oid CROSS JOIN ref
            JOIN probability p ON p.oid = o.oid AND p.classifier_name = ANY(%(classifiers)s)
                                  AND p.class_name = 'SN'
            LEFT JOIN neighbour ps1 ON ps1.oid = o.oid AND ps1.catalog = 'ps1' AND ps1.rank = 1
            LEFT JOIN neighbour sso ON sso.oid = o.oid AND sso.catalog = 'sso' AND sso.rank = 1
            LEFT JOIN LATERAL (SELECT candid, survey, magpsf, band FROM alert a WHERE a.oid = o.oid
                               ORDER BY a.mjd LIMIT 1) fa ON TRUE
            LEFT JOIN LATERAL (SELECT candid, magpsf, band FROM alert a WHERE a.oid = o.oid
                               ORDER BY a.mjd DESC LIMIT 1) la ON TRUE
            WHERE o.firstmjd >= ref.mjd - %(max_age)s
              AND p.probability >= %(min_probability)s
              AND (%(ranking)s::int IS NULL OR p.ranking <= %(ranking)s)
              AND NOT (%(exclude_stellar)s AND (COALESCE(o.stellar, FALSE)
                       OR (COALESCE(ps1.sgscore, 0) > %(max_sgscore)s
                           AND COALESCE(ps1.dist_arcsec, 1e9) <= %(ps1_radius)s)))
              AND NOT (sso.dist_arcsec IS NOT NULL AND sso.dist_arcsec <= %(sso_radius)s)
              AND {latest}
            ORDER BY p.probability DESC, o.firstmjd DESC, o.oid
            LIMIT %(limit)s
            """.replace("{latest}", latest),
            {
                "night": int(night),
                "classifiers": list(SN_CANDIDATE_CLASSIFIERS),
                "max_age": float(max_age_days),
                "min_probability": float(min_probability),
                "ranking": ranking,
                "exclude_stellar": bool(exclude_stellar),
                "max_sgscore": float(max_sgscore),
                "ps1_radius": float(ps1_radius),
                "sso_radius": float(sso_radius),
                "limit": int(limit),
                **params,
            },
        )
        if not df.empty:
            df.insert(0, "rank", np.arange(1, len(df) + 1))
        return {"night": int(night), "candidates": records(df)}

    def stats(self, night: int | None = None) -> dict:
        """The night's counts: alerts per survey and per UTC hour, objects seen and new, the top class of each
        classifier, dead letters; and the latest pipeline runs."""
        night = night if night is not None else self.latest_night()
        runs = records(
            self.db.frame(
                "SELECT run_id, started_at, finished_at, source, status, counts FROM pipeline_run "
                "ORDER BY started_at DESC NULLS LAST LIMIT 10"
            )
        )
        if night is None:
            return {"night": None, "alerts": 0, "runs": runs}
        p = {"night": int(night)}
        per_survey = self.db.frame(
            "SELECT survey, count(*) AS alerts, count(DISTINCT oid) AS objects FROM alert WHERE night = %(night)s "
            "GROUP BY survey ORDER BY survey",
            p,
        )
        per_hour = self.db.frame(
            "SELECT survey, floor((mjd - floor(mjd)) * 24)::int AS hour_utc, count(*) AS alerts FROM alert "
            "WHERE night = %(night)s GROUP BY 1, 2 ORDER BY 2, 1",
            p,
        )
        new = self.db.frame(
            "SELECT survey, count(*) AS new_objects FROM (SELECT oid, survey, min(night) AS first_night FROM alert "
            "WHERE oid IN (SELECT oid FROM alert WHERE night = %(night)s) GROUP BY oid, survey) f "
            "WHERE first_night = %(night)s GROUP BY survey ORDER BY survey",
            p,
        )
        latest = self._latest_version_only("p", p)
        classes = self.db.frame(
            "SELECT p.classifier_name, p.class_name, count(DISTINCT p.oid) AS objects FROM probability p "
            f"WHERE p.ranking = 1 AND p.oid IN (SELECT oid FROM alert WHERE night = %(night)s) AND {latest} "
            "GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2",
            p,
        )
        dead = self.db.frame(
            "SELECT error, count(*) AS dead_letters, min(reason) AS example_reason FROM dead_letter "
            "WHERE batch_id IN (SELECT DISTINCT batch_id FROM alert WHERE night = %(night)s) GROUP BY error "
            "ORDER BY 2 DESC",
            p,
        )
        total_dead = self.db.scalar("SELECT count(*) FROM dead_letter")
        return {
            "night": int(night),
            "alerts": int(per_survey["alerts"].sum()) if not per_survey.empty else 0,
            "objects": int(per_survey["objects"].sum()) if not per_survey.empty else 0,
            "surveys": records(per_survey.merge(new, on="survey", how="left").fillna({"new_objects": 0})),
            "alerts_per_hour": records(per_hour),
            "classes": records(classes),
            "dead_letters": int(dead["dead_letters"].sum()) if not dead.empty else 0,
            "dead_letters_by_error": records(dead),
            "dead_letters_all_nights": int(total_dead or 0),
            "runs": runs,
        }

    def classifiers(self) -> list[dict]:
        """Each classifier and version with its classes in display order (the taxonomy table)."""
        df = self.db.frame(
            "SELECT classifier_name, classifier_version, class_name, level, parent, ord FROM taxonomy "
            "ORDER BY classifier_name, classifier_version, ord, class_name"
        )
        out = []
        for (name, version), g in df.groupby(["classifier_name", "classifier_version"], sort=True):
            out.append(
                {
                    "classifier_name": name,
                    "classifier_version": version,
                    "classes": g["class_name"].tolist(),
                    "taxonomy": records(g.drop(columns=["classifier_name", "classifier_version"])),
                }
            )
        return out
