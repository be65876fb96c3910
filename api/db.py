"""A small pool of read-only PostgreSQL connections for the query API.

Every connection is opened in autocommit mode with ``default_transaction_read_only`` on and a statement timeout,
so no statement the API runs can write, and a pathological query ends instead of holding a worker. Queries are
always parametrised (values travel as parameters, never in the SQL text); identifiers come from whitelists and
are composed with ``psycopg.sql``.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

# PostgreSQL type OIDs -> nullable pandas dtypes that keep integers exact (never float)
_NULLABLE_BY_OID = {20: "Int64", 23: "Int32", 21: "Int16", 16: "boolean"}


class DatabaseBusy(RuntimeError):
    """Every connection stayed in use for longer than the pool waits: the service is overloaded."""


class ReadOnlyDatabase:
    """At most ``size`` read-only connections to ``dsn``, opened on demand and reused (thread-safe)."""

    def __init__(self, dsn: str, size: int = 6, statement_timeout_ms: int = 20_000, wait_s: float = 30.0):
        self.dsn = dsn
        self.size = int(size)
        self.statement_timeout_ms = int(statement_timeout_ms)
        self.wait_s = float(wait_s)
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(self.size)
        self._closed = False

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.dsn, autocommit=True)
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(self.statement_timeout_ms)))
        return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection for the duration of the block (returned to the pool after, closed if it broke)."""
        if self._closed:
            raise RuntimeError("the database pool is closed")
        if not self._slots.acquire(timeout=self.wait_s):
            raise DatabaseBusy(f"no database connection became free within {self.wait_s:g} s")
        conn: psycopg.Connection | None = None
        try:
            try:
                conn = self._idle.get_nowait()
                if conn.closed or conn.broken:
                    conn = None
            except queue.Empty:
                conn = None
            if conn is None:
                conn = self._connect()
            yield conn
        except psycopg.OperationalError:
            if conn is not None:
                conn.close()
            conn = None
            raise
        finally:
            if conn is not None and not conn.closed and not conn.broken and not self._closed:
                self._idle.put(conn)
            elif conn is not None:
                conn.close()
            self._slots.release()

    def rows(self, query: str | sql.Composable, params: Sequence[Any] | dict | None = None) -> list[dict]:
        """The query's rows as dicts of Python values."""
        with self.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)
            return list(cur.fetchall()) if cur.description else []

    def frame(self, query: str | sql.Composable, params: Sequence[Any] | dict | None = None) -> pd.DataFrame:
        """The query's rows as a DataFrame; BIGINT and INTEGER columns stay exact (nullable Int64/Int32)."""
        with self.connection() as conn, conn.cursor() as cur:
            cur.execute(query, params)
            desc = cur.description or []
            rows = cur.fetchall() if desc else []
        data = {}
        for i, d in enumerate(desc):
            values = [r[i] for r in rows]
            dtype = _NULLABLE_BY_OID.get(d.type_code)
            data[d.name] = pd.array(values, dtype=dtype) if dtype else values
        return pd.DataFrame(data, columns=[d.name for d in desc])

    def scalar(self, query: str | sql.Composable, params: Sequence[Any] | dict | None = None) -> Any:
        with self.connection() as conn:
            row = conn.execute(query, params).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                break


def clean(value: Any) -> Any:
    """A JSON-safe copy of ``value``: NaN and infinities become None, numpy and pandas scalars plain Python."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    if hasattr(value, "item"):  # numpy scalar
        return clean(value.item())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return None
    return str(value)
