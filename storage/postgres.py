"""PostgreSQL summary tables: current state per object, per band and per alert, plus run bookkeeping.

PostgreSQL holds *current state only* (docs/data-model.md); history lives in the lake. Every write is a bulk,
idempotent upsert: the frame is COPYed into a temporary staging table and merged with one
``INSERT ... ON CONFLICT (key) DO UPDATE`` in a single transaction, so a replayed batch rewrites the same rows
instead of adding new ones. ``object`` and ``magstats`` carry a version (``lastmjd``): a row only replaces a
stored one that is not newer, so replaying an old batch after newer ones never regresses an object's state.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg import sql
from psycopg.types.json import Jsonb

from alert_broker.features.fluxstats import FLUX_STAT_COLUMNS

BIGINT, INT, SMALLINT = "BIGINT", "INTEGER", "SMALLINT"
FLOAT, BOOL, TEXT = "DOUBLE PRECISION", "BOOLEAN", "TEXT"
JSONB, TS = "JSONB", "TIMESTAMPTZ"


@dataclass(frozen=True)
class TableSpec:
    """A summary table: its columns (name -> SQL type), primary key and optional version column."""

    name: str
    columns: dict[str, str]
    key: tuple[str, ...]
    version: str | None = None
    indexes: tuple[tuple[str, ...], ...] = ()


def _mag_columns() -> dict[str, str]:
    out: dict[str, str] = {}
    for stat in ("magmean", "magmedian", "magmax", "magmin", "magsigma", "maglast", "magfirst"):
        out[stat] = FLOAT
    for stat in ("magmean", "magmedian", "magmax", "magmin", "magsigma", "maglast", "magfirst"):
        out[f"{stat}_corr"] = FLOAT
    return out


TABLES: dict[str, TableSpec] = {
    "object": TableSpec(
        "object",
        {
            "oid": TEXT,
            "survey": TEXT,
            "ndet": INT,
            "firstmjd": FLOAT,
            "lastmjd": FLOAT,
            "deltajd": FLOAT,
            "meanra": FLOAT,
            "meandec": FLOAT,
            "sigmara": FLOAT,
            "sigmadec": FLOAT,
            "corrected": BOOL,
            "stellar": BOOL,
            "diffpos": BOOL,
            "reference_change": BOOL,
            "g_r_max": FLOAT,
            "g_r_max_corr": FLOAT,
            "g_r_mean": FLOAT,
            "g_r_mean_corr": FLOAT,
            "night": INT,
            # nested HEALPix index at order 29 of (meanra, meandec): a cone is a few ranges of it (hats' _healpix_29)
            "hpx29": BIGINT,
        },
        key=("oid",),
        version="lastmjd",
        indexes=(("lastmjd",), ("meanra", "meandec"), ("hpx29",)),
    ),
    "magstats": TableSpec(
        "magstats",
        {
            "oid": TEXT,
            "fid": SMALLINT,
            "survey": TEXT,
            "ndet": INT,
            "ndubious": INT,
            **_mag_columns(),
            "firstmjd": FLOAT,
            "lastmjd": FLOAT,
            "corrected": BOOL,
            "stellar": BOOL,
            "saturation_rate": FLOAT,
            "dmdt_first": FLOAT,
            "dm_first": FLOAT,
            "sigmadm_first": FLOAT,
            "dt_first": FLOAT,
            "night": INT,
            # surveys that report difference fluxes (LSST): per-band statistics of the flux, nJy
            **{c: FLOAT for c in FLUX_STAT_COLUMNS},
        },
        key=("oid", "fid"),
        version="lastmjd",
    ),
    "alert": TableSpec(
        "alert",
        {
            "candid": BIGINT,
            "oid": TEXT,
            "survey": TEXT,
            "mjd": FLOAT,
            "night": INT,
            "fid": SMALLINT,
            "ra": FLOAT,
            "dec": FLOAT,
            "magpsf": FLOAT,
            "sigmapsf": FLOAT,
            "raw_path": TEXT,
            "batch_id": TEXT,
            "band": TEXT,
            "flux": FLOAT,  # difference flux, nJy (LSST's psfFlux; derived from ZTF's magpsf and sign)
            "flux_err": FLOAT,
            # latency: when the packet was produced (its Kafka timestamp; null for archives) and when this row
            # first reached PostgreSQL (a replay's upsert keeps the first time)
            "produced_at": TS,
            "ingested_at": f"{TS} DEFAULT now()",
        },
        # candids are unique within a survey (ZTF candid, LSST diaSourceId, ATLAS hashed candid), not across
        key=("survey", "candid"),
        indexes=(("oid",), ("night",), ("candid",)),
    ),
    "feature": TableSpec(
        "feature",
        {
            "oid": TEXT,
            "feature_version": TEXT,
            "lastmjd": FLOAT,
            "n_features": INT,
            "features": JSONB,  # {name: value}, NaN as null; the wide table is in the lake
            "night": INT,
        },
        key=("oid", "feature_version"),
        version="lastmjd",
    ),
    "xmatch": TableSpec(
        "xmatch",
        {
            "oid": TEXT,
            "catalog": TEXT,
            "catalog_id": TEXT,
            "dist_arcsec": FLOAT,
            "properties": JSONB,
            "night": INT,
        },
        key=("oid", "catalog"),
    ),
    # The alert-internal neighbours (PS1 ranks 1-3, Gaia, Gaia bright, solar-system object) of each object's
    # latest alert that reported them (features.neighbours.latest_neighbours); the lake keeps every alert's.
    "neighbour": TableSpec(
        "neighbour",
        {
            "oid": TEXT,
            "catalog": TEXT,
            "rank": SMALLINT,
            "candid": BIGINT,
            "mjd": FLOAT,
            "neighbour_id": TEXT,
            "dist_arcsec": FLOAT,
            "mag": FLOAT,
            "gmag": FLOAT,
            "rmag": FLOAT,
            "imag": FLOAT,
            "zmag": FLOAT,
            "sgscore": FLOAT,
            "night": INT,
        },
        key=("oid", "catalog", "rank"),
        version="mjd",
        indexes=(("catalog", "neighbour_id"),),
    ),
    # One cross-survey id per (oid, survey) (features.association.associate), with the position and first
    # detection it was decided from, so the table itself is the ``known`` input of the next association.
    "object_association": TableSpec(
        "object_association",
        {
            "oid": TEXT,
            "survey": TEXT,
            "xid": TEXT,
            "xid_distance_arcsec": FLOAT,
            "ra": FLOAT,
            "dec": FLOAT,
            "firstmjd": FLOAT,
        },
        key=("oid", "survey"),
        indexes=(("xid",), ("dec", "ra")),
    ),
    "watchlist_hit": TableSpec(
        "watchlist_hit",
        {
            "watchlist": TEXT,
            "name": TEXT,
            "survey": TEXT,
            "candid": BIGINT,
            "oid": TEXT,
            "mjd": FLOAT,
            "night": INT,
            "ra": FLOAT,
            "dec": FLOAT,
            "dist_arcsec": FLOAT,
        },
        key=("watchlist", "name", "survey", "candid"),
        indexes=(("oid",), ("night",)),
    ),
    "probability": TableSpec(
        "probability",
        {
            "oid": TEXT,
            "classifier_name": TEXT,
            "classifier_version": TEXT,
            "class_name": TEXT,
            "probability": FLOAT,
            "ranking": INT,
        },
        key=("oid", "classifier_name", "classifier_version", "class_name"),
        indexes=(("class_name", "ranking", "probability"),),
    ),
    "outlier_score": TableSpec(
        "outlier_score",
        {
            "oid": TEXT,
            "classifier_name": TEXT,
            "classifier_version": TEXT,
            "branch": TEXT,
            "outlier_score": FLOAT,
        },
        key=("oid", "classifier_name", "classifier_version"),
    ),
    # What each (classifier, version) can answer: one row per class it gives a probability for, with its level,
    # parent and display order (classifiers.taxonomy.taxonomy_rows), so `probability` rows join on it.
    "taxonomy": TableSpec(
        "taxonomy",
        {
            "classifier_name": TEXT,
            "classifier_version": TEXT,
            "class_name": TEXT,
            "level": TEXT,
            "parent": TEXT,
            "ord": SMALLINT,
            "taxonomy_version": TEXT,
        },
        key=("classifier_name", "classifier_version", "class_name"),
    ),
    "dead_letter": TableSpec(
        "dead_letter",
        {
            "source": TEXT,
            "partition": INT,
            "offset": BIGINT,
            "key": TEXT,
            "reason": TEXT,
            "error": TEXT,
            "batch_id": TEXT,
        },
        key=("source", "partition", "offset"),
    ),
    "pipeline_run": TableSpec(
        "pipeline_run",
        {
            "run_id": TEXT,
            "started_at": TS,
            "finished_at": TS,
            "source": TEXT,
            "status": TEXT,
            "counts": JSONB,
            "config": JSONB,
            "summary": JSONB,
        },
        key=("run_id",),
    ),
    "batch_manifest": TableSpec(
        "batch_manifest",
        {
            "batch_id": TEXT,
            "state": TEXT,
            "ranges": JSONB,
            "files": JSONB,
            "written_at": TS,
            "committed_at": TS,
        },
        key=("batch_id",),
    ),
    # One row per (batch, source, partition): the manifest's offset ranges in a queryable form.
    "batch_range": TableSpec(
        "batch_range",
        {
            "batch_id": TEXT,
            "source": TEXT,
            "partition": INT,
            "first_offset": BIGINT,
            "last_offset": BIGINT,
            # an archive batch's files, as a digest of their keys in offset order (``--resume`` checks it)
            "keys_digest": TEXT,
        },
        key=("batch_id", "source", "partition"),
        indexes=(("source", "partition", "last_offset"),),
    ),
    # A lake compaction between its manifest update and its file moves (storage/compaction.py): what to finish
    # if the process died there. Empty except for those moments.
    "lake_compaction": TableSpec(
        "lake_compaction",
        {"target": TEXT, "staged": TEXT, "sources": JSONB, "batches": JSONB, "created_at": TS},
        key=("target",),
    ),
    # The nights a table's files were expired from (storage/retention.py: the raw archive's retention).
    "lake_expired": TableSpec(
        "lake_expired",
        {"table_name": TEXT, "night": INT, "expired_at": TS, "files": BIGINT, "bytes": BIGINT},
        key=("table_name", "night"),
    ),
}

_INT_TYPES = {BIGINT, INT, SMALLINT}
# PostgreSQL type OIDs -> dtypes that keep integers exact when NULLs are present (never float).
_NULLABLE_BY_OID = {20: "Int64", 23: "Int32", 21: "Int16", 16: "boolean"}
_NUMPY_BY_OID = {20: "int64", 23: "int32", 21: "int16", 16: "bool"}
_SCHEMA_LOCK = 7_341_902_117  # advisory lock id: concurrent ensure_schema calls take turns


#: Views over the tables. ``multisurvey_lightcurve``: every alert's own point with its object's cross-survey id
#: (``xid``, shared by the ZTF, LSST and ATLAS objects of one source): ``WHERE xid = ...`` is the combined light
#: curve, survey and band on every point, magnitudes and difference fluxes (nJy). The full light curves (every
#: previous detection too) are in the lake's history store (``storage.history.multisurvey_light_curve``).
VIEWS: dict[str, str] = {
    "multisurvey_lightcurve": (
        "CREATE OR REPLACE VIEW multisurvey_lightcurve AS "
        "SELECT COALESCE(x.xid, a.oid) AS xid, a.survey, a.oid, a.candid, a.mjd, a.night, a.band, a.fid, "
        "a.magpsf, a.sigmapsf, a.flux, a.flux_err, a.ra, a.dec "
        "FROM alert a LEFT JOIN object_association x ON x.oid = a.oid AND x.survey = a.survey"
    ),
}


def _ddl(spec: TableSpec) -> list[sql.Composable]:
    cols = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in spec.columns.items()
    )
    key = sql.SQL(", ").join(map(sql.Identifier, spec.key))
    stmts: list[sql.Composable] = [
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))").format(
            sql.Identifier(spec.name), cols, key
        )
    ]
    # Columns added to a spec later reach existing databases too.
    for c, t in spec.columns.items():
        stmts.append(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                sql.Identifier(spec.name), sql.Identifier(c), sql.SQL(t)
            )
        )
    # A key changed in a later version (e.g. the alert key gained the survey) reaches existing databases too.
    stmts.append(
        sql.SQL(
            "DO $$ DECLARE pk text; cols text[]; BEGIN "
            "SELECT c.conname, array_agg(a.attname::text ORDER BY k.n) INTO pk, cols "
            "FROM pg_constraint c CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
            "WHERE c.conrelid = {}::regclass AND c.contype = 'p' GROUP BY c.conname; "
            "IF pk IS NOT NULL AND cols <> {} THEN "
            "EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', {}, pk); "
            "EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY ({})', {}); END IF; END $$"
        ).format(
            sql.Literal(spec.name),
            sql.Literal("{" + ",".join(spec.key) + "}"),
            sql.Literal(spec.name),
            sql.SQL(", ").join(sql.SQL(c) for c in spec.key),
            sql.Literal(spec.name),
        )
    )
    for idx in spec.indexes:
        name = f"{spec.name}_{'_'.join(idx)}_idx"
        stmts.append(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(name), sql.Identifier(spec.name), sql.SQL(", ").join(map(sql.Identifier, idx))
            )
        )
    return stmts


def _coerce(df: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """Make each column's text form acceptable to its SQL type: integral floats to nullable ints (``3.0``
    is not an INTEGER literal), dicts/lists to JSON."""
    out = {}
    for c, t in types.items():
        s = df[c]
        if t in _INT_TYPES and pd.api.types.is_float_dtype(s.dtype):
            vals = s.to_numpy(dtype="float64")
            finite = vals[~np.isnan(vals)]
            if (finite != np.round(finite)).any():
                raise ValueError(f"column {c!r} has non-integral values but is {t}")
            s = s.astype("Int64")
        elif t == BOOL and pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            s = s.astype("boolean")  # 1.0/0.0 is not a BOOLEAN literal
        elif t == JSONB:
            s = s.map(lambda v: None if v is None else json.dumps(v, default=str))
        out[c] = s
    return pd.DataFrame(out)


def _arrow_csv_ok(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_timestamp(t)  # ISO 8601 with a Z when zoned; PostgreSQL rounds nanoseconds to micro
    )


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return str(value)


def _copy_text(frame: pd.DataFrame) -> bytes:
    """``frame`` as COPY's CSV text, read with PostgreSQL's CSV default NULL (an unquoted empty field).

    Arrow's writer (C++) formats a batch's rows ~8x faster than pandas' ``to_csv``, which was ~13 % of the
    driver's CPU in a long night, and it quotes every string and writes a null as an unquoted empty field, so
    NULL, the empty string and even the text ``\\N`` stay apart (pandas' writer, with ``\\N`` for NULL, turned
    that text into NULL); floats come out in their shortest round-trip form, timestamps in ISO 8601 (PostgreSQL
    rounds nanoseconds to microseconds). A column Arrow would not render as a value PostgreSQL reads (mixed
    objects, binary) is written as each value's ``str``.
    """
    columns = {}
    for name in frame.columns:
        series = frame[name]
        try:
            array = pa.Array.from_pandas(series)
            if pa.types.is_dictionary(array.type):
                array = array.dictionary_decode()
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            array = None
        if array is None or not _arrow_csv_ok(array.type):
            array = pa.array([_text(v) for v in series], pa.string())
        columns[str(name)] = array
    out = io.BytesIO()
    options = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
    pa_csv.write_csv(pa.table(columns), out, options)
    return out.getvalue()


class SummaryStore:
    """The PostgreSQL side of the broker. One connection, opened lazily and re-opened if it broke;
    thread-safe by a lock. Picklable (the connection is not carried)."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self._conn: psycopg.Connection | None = None
        self._lock = threading.RLock()
        self._columns: dict[str, dict[str, str]] = {}

    def __getstate__(self) -> dict:
        return {"dsn": self.dsn}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["dsn"])

    def __enter__(self) -> SummaryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Whether this process holds the cluster-wide lock ``name`` (a PostgreSQL advisory lock, on a connection
        of its own, released on exit or if the process dies): True for one holder at a time, False at once for
        the others (they do not wait). Several drivers sharing a lake use it so one compacts at a time."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            got = bool(conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (name,)).fetchone()[0])
            try:
                yield got
            finally:
                if got:
                    conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))

    @property
    def conn(self) -> psycopg.Connection:
        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = psycopg.connect(self.dsn, autocommit=True)
            return self._conn

    # ------------------------------------------------------------------------------- schema
    def ensure_schema(self) -> None:
        """Create every table and index if missing (idempotent; safe from several processes at once)."""
        with self._lock, self.conn.transaction():
            cur = self.conn.cursor()
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for spec in TABLES.values():
                for stmt in _ddl(spec):
                    cur.execute(stmt)
            for view in VIEWS.values():
                cur.execute(view)
        self._columns.clear()

    def table_columns(self, table: str) -> dict[str, str]:
        """The table's columns as they are in the database (name -> SQL type), cached."""
        if table not in self._columns:
            rows = self.conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
                (table,),
            ).fetchall()
            if not rows:
                raise KeyError(f"table {table!r} does not exist (call ensure_schema() first)")
            self._columns[table] = {name: typ.upper() for name, typ in rows}
        return self._columns[table]

    # ------------------------------------------------------------------------------- upserts
    def upsert(self, table: str, df: pd.DataFrame) -> int:
        """Insert or update ``df``'s rows by the table's key, in one transaction. Returns rows written.

        Only columns that exist in the table are written; others are ignored (a frame may carry more).
        Within the frame, one row per key is kept (the newest by version, else the last). For versioned
        tables a stored row is replaced only by a row with ``version >= stored version``.
        """
        spec = TABLES.get(table)
        if spec is None:
            raise KeyError(f"unknown summary table {table!r}; known: {sorted(TABLES)}")
        if df is None or df.empty:
            return 0
        missing = [k for k in spec.key if k not in df.columns]
        if missing:
            raise ValueError(f"upsert into {table}: key columns {missing} are missing from the frame")
        db_cols = self.table_columns(table)
        cols = [c for c in db_cols if c in df.columns]
        frame = df[cols]
        if spec.version and spec.version in frame.columns:
            frame = frame.sort_values(spec.version, kind="stable", na_position="first")
        frame = frame.drop_duplicates(list(spec.key), keep="last")
        frame = _coerce(frame, {c: db_cols[c] for c in cols})
        text = _copy_text(frame)

        ident = sql.Identifier
        stage = ident(f"stage_{table}_{uuid.uuid4().hex[:8]}")
        col_list = sql.SQL(", ").join(map(ident, cols))
        updates = [c for c in cols if c not in spec.key]
        if updates:
            action = sql.SQL("DO UPDATE SET {}").format(
                sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(ident(c)) for c in updates)
            )
            if spec.version and spec.version in cols:
                action += sql.SQL(" WHERE {t}.{v} IS NULL OR EXCLUDED.{v} >= {t}.{v}").format(
                    t=ident(table), v=ident(spec.version)
                )
        else:
            action = sql.SQL("DO NOTHING")
        with self._lock, self.conn.transaction():
            cur = self.conn.cursor()
            cur.execute(
                sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                    stage, ident(table)
                )
            )
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(stage, col_list)
            with cur.copy(copy_sql) as copy:
                copy.write(text)
            cur.execute(
                sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s} ON CONFLICT ({k}) {a}").format(
                    t=ident(table), c=col_list, s=stage, k=sql.SQL(", ").join(map(ident, spec.key)), a=action
                )
            )
            return cur.rowcount

    # ------------------------------------------------------------------------------- runs
    def start_run(self, run_id: str, source: str = "", config: dict[str, Any] | None = None) -> str:
        """Record that a run began (status ``running``). Re-using a run id restarts its record."""
        self.conn.execute(
            "INSERT INTO pipeline_run (run_id, started_at, source, status, config) "
            "VALUES (%s, now(), %s, 'running', %s) ON CONFLICT (run_id) DO UPDATE SET "
            "started_at = now(), finished_at = NULL, source = EXCLUDED.source, status = 'running', "
            "config = EXCLUDED.config",
            (run_id, source, Jsonb(config or {})),
        )
        return run_id

    def finish_run(
        self,
        run_id: str,
        status: str = "ok",
        summary: dict[str, Any] | None = None,
        counts: dict[str, Any] | None = None,
    ) -> None:
        """Record how a run ended, with its counts and summary (JSON)."""
        cur = self.conn.execute(
            "UPDATE pipeline_run SET finished_at = now(), status = %s, summary = %s, "
            "counts = COALESCE(%s, counts) WHERE run_id = %s",
            (status, Jsonb(summary or {}), Jsonb(counts) if counts is not None else None, run_id),
        )
        if cur.rowcount == 0:
            raise KeyError(f"no pipeline run {run_id!r} (start_run was not called)")

    # ------------------------------------------------------------------------------- reading
    def count(self, table: str) -> int:
        if table not in TABLES:
            raise KeyError(f"unknown summary table {table!r}")
        row = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        return int(row[0])

    def fetch_df(
        self, query: str | sql.Composable, params: Sequence[Any] | dict | None = None
    ) -> pd.DataFrame:
        """Run a query and return its rows as a DataFrame (BIGINT columns stay exact int64)."""
        with self._lock:
            cur = self.conn.execute(query, params)
            desc = cur.description or []
            rows = cur.fetchall()
        data = {}
        for i, d in enumerate(desc):
            values = [r[i] for r in rows]
            nullable = _NULLABLE_BY_OID.get(d.type_code)
            data[d.name] = pd.array(values, dtype=nullable) if nullable else values
        df = pd.DataFrame(data, columns=[d.name for d in desc])
        for name, d in zip(df.columns, desc, strict=True):  # no NULLs: plain numpy int/bool
            if _NULLABLE_BY_OID.get(d.type_code) and not df[name].isna().any():
                df[name] = df[name].to_numpy(dtype=_NUMPY_BY_OID[d.type_code])
        return df
