"""The Parquet lake: one folder (local or ``s3://``) of tables partitioned by observing night.

Layout (docs/data-model.md, "Lake layout"): ``{url}/{table}/night=YYYYMMDD/{batch_id}.parquet``, or
``{url}/{table}/{batch_id}.parquet`` for tables without a ``night`` column (dead letters). A file's name is its
batch's name, so re-running a batch overwrites exactly the files it wrote before; a replay that regroups
messages differently is handled by ``storage.manifest``. Each file also records, in its Parquet key-value
metadata, the batch id and the time it was written (ns): readers that deduplicate keep the row of the latest
write without trusting file-system timestamps (S3's have one-second resolution).

The partition column (``night`` or ``alert_night``) lives in the folder name only (the hive layout): pandas,
pyarrow and dask read a table's folder as a partitioned dataset and get it back from the path, and so does
``read_table`` (files written by older versions that still carry it inside are read too).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fsspec
import fsspec.asyn
import fsspec.exceptions
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from alert_broker.storage.secrets import redact

#: Natural key of each table: ``read_table(dedupe=True)`` keeps one row per key (the latest write's).
NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "alerts": ("survey", "candid"),
    "detections": ("oid", "candid"),
    "non_detections": ("oid", "fid", "mjd"),
    "forced_photometry": ("oid", "pid"),
    "stamps": ("candid",),
    "objects": ("oid",),
    "magstats": ("oid", "fid"),
    "features": ("oid", "FEATURE_VERSION"),
    "flux_features": ("oid", "FEATURE_VERSION"),
    "survey_objects": ("oid", "candid"),
    "watchlist_hits": ("watchlist", "name", "survey", "candid"),
    "solar_system": ("oid", "candid"),
    "xmatch": ("oid", "catalog"),
    "neighbours": ("oid", "candid", "catalog", "rank"),
    "probabilities": ("oid", "classifier_name", "classifier_version", "class_name"),
    "outliers": ("oid", "classifier_name", "classifier_version"),
    "raw": ("candid",),
    "dead_letters": ("source", "partition", "offset"),
}

#: Options for S3 lakes unless the caller gives its own: retries with backoff on 5xx, throttling and timeouts.
S3_DEFAULTS: dict[str, Any] = {
    "config_kwargs": {
        "retries": {"max_attempts": 10, "mode": "standard"},
        "connect_timeout": 10,
        "read_timeout": 60,
    },
}

META_BATCH = b"broker.batch_id"
META_WRITTEN = b"broker.written_at_ns"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=-]*$")
_ORDER = "__lake_order"
_INT_NULLABLE = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}

Filters = ds.Expression | Sequence[Any] | None


#: Tables whose files are partitioned by the night of the alert that brought the rows, not the rows' own
#: observing night: a detection history spans 30 nights, and partitioning it by its own night would scatter
#: every batch into ~30 small files per table. The rows keep their own ``night`` column.
PARTITION_KEYS = {
    "detections": "alert_night",
    "non_detections": "alert_night",
    "forced_photometry": "alert_night",
    "features": "alert_night",
    "flux_features": "alert_night",
    "probabilities": "alert_night",
    "outliers": "alert_night",
}


def _partition_of(path: str) -> tuple[str, int] | None:
    """(key, value) of the ``key=value`` folder a lake file sits in, if any."""
    folder = str(path).rstrip("/").rsplit("/", 2)
    if len(folder) >= 2 and "=" in folder[-2]:
        key, _, value = folder[-2].partition("=")
        if value.lstrip("-").isdigit():
            return key, int(value)
    return None


def partition_key(table: str) -> str:
    """The column (and folder key) that partitions ``table``: ``night`` unless PARTITION_KEYS says otherwise."""
    return PARTITION_KEYS.get(table, "night")


def _check_name(kind: str, name: str) -> None:
    if not _NAME_RE.match(name or ""):
        raise ValueError(f"invalid {kind} {name!r}: use letters, digits and _ . + = - (no slashes)")


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow -> pandas keeping integers exact: an int column with nulls becomes a nullable ``Int64`` (never
    float, which would corrupt 64-bit ids), one without nulls its numpy dtype; bool likewise."""
    df = table.to_pandas(types_mapper=_INT_NULLABLE.get, ignore_metadata=True)
    for name, col in zip(table.column_names, table.columns, strict=True):
        if col.type in _INT_NULLABLE and col.null_count == 0:
            df[name] = df[name].to_numpy(dtype=col.type.to_pandas_dtype())
    return df


def _holds_bytes(col: pd.Series) -> bool:
    first = col.first_valid_index()
    return first is not None and isinstance(col[first], bytes | bytearray | memoryview)


#: Mean value size past which a column of bytes enters Arrow without a copy (see ``binary_column``).
ZERO_COPY_MIN_BYTES = 16384


def binary_column(values: np.ndarray) -> pa.Array | pa.ChunkedArray:
    """A column of ``bytes`` (object array; None = null) as Arrow binary.

    Large values (raw packets: ~60 kB a ZTF alert, ~100 MB a chunk) become one chunk each over the value's own
    buffer, with no copy: copying them into one new Arrow buffer faults in fresh pages for every chunk, measured
    at 20-500 us per ZTF packet in a worker against ~3 us a chunk (the Parquet file holds the same bytes). Small
    values, and columns with nulls, are copied into one array (faster than a chunk each)."""
    n = len(values)
    if n and all(isinstance(v, bytes) for v in values):
        total = sum(map(len, values))
        if total >= ZERO_COPY_MIN_BYTES * n:
            chunks = [
                pa.Array.from_buffers(
                    pa.binary(), 1, [None, pa.py_buffer(np.array([0, len(v)], np.int32)), pa.py_buffer(v)]
                )
                for v in values
            ]
            return pa.chunked_array(chunks, type=pa.binary())
    return pa.array(values, type=pa.binary())


def frame_to_arrow(df: pd.DataFrame) -> pa.Table:
    """pandas -> Arrow for the lake. All-null object columns (type ``null``) become strings so files of
    different batches share one schema (a null-typed column cannot be merged with a typed one)."""
    # the dtypes in one call: a column taken out of a wide frame costs ~20 us (a features frame has 178)
    binary = [
        c for c, dtype in df.dtypes.items() if pd.api.types.is_object_dtype(dtype) and _holds_bytes(df[c])
    ]
    if binary:
        # pandas -> Arrow inference on a column of bytes objects is ~10x slower than building the
        # binary array directly (raw packets are tens of MB per batch).
        rest = pa.Table.from_pandas(df.drop(columns=binary), preserve_index=False)
        arrays = {c: binary_column(df[c].to_numpy(dtype=object)) for c in binary}
        cols = [arrays[c] if c in arrays else rest.column(str(c)) for c in df.columns]
        table = pa.Table.from_arrays(cols, names=[str(c) for c in df.columns])
    else:
        table = pa.Table.from_pandas(df, preserve_index=False)
    for i, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.large_string()))
    return table


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns worth Parquet's dictionary encoding: all but the floating-point ones. A float column rarely
    repeats a value, so its dictionary fills up and the writer falls back to plain encoding after paying for both;
    measured on a bench night's lake tables: -31 % writer CPU and -9 % bytes against dictionaries everywhere
    (pyarrow's default), while ids, bands, flags and names keep theirs."""
    return [f.name for f in schema if not pa.types.is_floating(f.type)]


class LakeUnavailable(RuntimeError):
    """The lake's object store did not answer, or has no such bucket, or refuses these credentials."""


#: Deadline of the start-of-run probe (``Lake.check``): an endpoint that does not answer fails a run in seconds,
#: not after the writes' ten attempts with backoff (a minute and more).
CHECK_TIMEOUT_S = 20.0


class Lake:
    """A Parquet lake at ``url`` (a local folder or ``s3://bucket/prefix``; ``storage_options`` go to
    fsspec/s3fs, e.g. ``{"endpoint_url": ..., "key": ..., "secret": ...}``). Picklable, for Dask workers."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        self.storage_options = dict(storage_options or {})
        options = self.storage_options
        if str(url).startswith(("s3://", "s3a://")):
            # an object store answers 500/503 and throttles now and then: retry with backoff (botocore's
            # standard mode: exponential, jittered) rather than fail a batch; a PUT is atomic, so a failed or
            # retried write never leaves a partial object visible
            options = {**S3_DEFAULTS, **options}
        fs, root = fsspec.core.url_to_fs(str(url), **options)
        self.fs = fs
        self.local = isinstance(fs, LocalFileSystem)
        if self.local:
            root = os.path.abspath(root)
            self.url = root
        else:
            root = root.rstrip("/")
            protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
            self.url = f"{protocol}://{root}"
        self.root = root

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    def check(self, timeout: float = CHECK_TIMEOUT_S) -> None:
        """Raise :class:`LakeUnavailable` unless the lake can be written to as far as a run can tell up front: a
        run checks this before it starts anything, so a wrong endpoint, bucket or key fails at once with the
        reason rather than after every batch's retries. On S3: the bucket answers a listing (a missing prefix
        is fine: the first write makes it). A local folder: created if missing."""
        if self.local:
            try:
                os.makedirs(self.root, exist_ok=True)
            except OSError as err:
                raise LakeUnavailable(f"lake {self.url}: cannot create the folder ({err.strerror})") from None
            return
        bucket = self.root.split("/", 1)[0]
        endpoint = self.storage_options.get("endpoint_url") or "default"
        where = f"lake {self.url} (endpoint {endpoint})"
        try:
            # the lake's own client (its retries with backoff) under one deadline: a wrong or dead endpoint
            # fails in ``timeout`` seconds whatever the retries would do
            fsspec.asyn.sync(self.fs.loop, self.fs._ls, bucket, refresh=True, timeout=timeout)
        except FileNotFoundError:
            raise LakeUnavailable(f"{where}: there is no bucket {bucket!r}") from None
        except PermissionError as err:
            raise LakeUnavailable(f"{where}: access refused ({redact(str(err))})") from None
        except fsspec.exceptions.FSTimeoutError:
            raise LakeUnavailable(f"{where}: no answer within {timeout:g} s") from None
        except Exception as err:  # noqa: BLE001 - whatever botocore raises, the run must not start
            raise LakeUnavailable(f"{where}: no answer ({type(err).__name__}: {redact(str(err))})") from None

    @property
    def arrow_fs(self) -> Any:
        """The filesystem to hand to pyarrow: its native one for local paths (faster), else fsspec's."""
        return None if self.local else self.fs

    def __reduce__(self):
        return (Lake, (self.url, self.storage_options))

    # ---------------------------------------------------------------------------------- paths
    def _fs_path(self, path: str) -> str:
        """A path the filesystem understands, from a full URL, a bare path or one relative to the lake."""
        path = str(path)
        if "://" in path:
            return self.fs._strip_protocol(path)
        if self.local:
            return path if os.path.isabs(path) else os.path.join(self.root, path)
        return path if path.startswith(self.root + "/") else f"{self.root}/{path.lstrip('/')}"

    def _public(self, fs_path: str) -> str:
        return fs_path if self.local else f"{self.url.split('://', 1)[0]}://{fs_path}"

    def table_url(self, table: str) -> str:
        _check_name("table", table)
        return f"{self.url}/{table}"

    def file_path(self, table: str, batch_id: str, night: int | None = None) -> str:
        """Where ``batch_id``'s file of ``table`` for ``night`` lives (a full path or URL)."""
        _check_name("table", table)
        _check_name("batch id", batch_id)
        part = f"{partition_key(table)}={int(night):08d}/" if night is not None else ""
        return f"{self.url}/{table}/{part}{batch_id}.parquet"

    # ---------------------------------------------------------------------------------- writing
    def write_table(
        self,
        table: str,
        df: pd.DataFrame,
        batch_id: str,
        row_group_size: int | None = None,
        **parquet_options,
    ) -> list[str]:
        """Write ``df`` as one Parquet file per night (or one file when the table has no ``night``).

        Returns the paths written. An empty frame writes nothing. Same ``batch_id`` => same paths, so a
        re-run overwrites. Local writes go to a hidden temporary file renamed into place (atomic); S3 PUTs
        are atomic by nature. ``parquet_options`` go to ``pyarrow.parquet.write_table`` (e.g. per-column
        ``compression`` or ``use_dictionary``).
        """
        _check_name("table", table)
        _check_name("batch id", batch_id)
        if df is None or df.empty:
            return []
        try:
            arrow = frame_to_arrow(
                df
            )  # once per table: converting each night's slice costs a pass per column
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise TypeError(f"cannot convert the frame for {table} ({batch_id}) to Arrow: {err}") from err
        key = partition_key(table)
        if key not in df.columns:
            return [
                self._write_one(
                    arrow, self.file_path(table, batch_id), batch_id, row_group_size, parquet_options
                )
            ]
        night = df[key]
        if night.isna().any():
            raise ValueError(f"{table}: {int(night.isna().sum())} rows have no night; cannot partition them")
        nights = night.to_numpy(dtype=np.int64)
        unique = np.unique(nights)
        paths = []
        arrow = arrow.drop_columns(
            [key]
        )  # the folder name carries it (hive layout): readers get it from the path
        # Each night's rows as a slice of a table grouped by night: rows already grouped (the raw archive sorts
        # them so) are sliced without a copy; others are put in night order once (a stable sort keeps the frame's
        # order within a night), one copy in all instead of one filter per night over every column.
        if len(unique) > 1 and not bool(np.all(nights[1:] >= nights[:-1])):
            order = np.argsort(nights, kind="stable")
            arrow = arrow.take(pa.array(order))
            nights = nights[order]
        starts = np.searchsorted(nights, unique, side="left")
        ends = np.searchsorted(nights, unique, side="right")
        for i, n in enumerate(unique):
            part = arrow if len(unique) == 1 else arrow.slice(int(starts[i]), int(ends[i] - starts[i]))
            paths.append(
                self._write_one(
                    part, self.file_path(table, batch_id, int(n)), batch_id, row_group_size, parquet_options
                )
            )
        return paths

    def _write_one(
        self,
        table: pa.Table,
        path: str,
        batch_id: str,
        row_group_size: int | None,
        parquet_options: dict | None = None,
    ) -> str:
        opts = dict(parquet_options or {})
        opts.setdefault("use_dictionary", dictionary_columns(table.schema))
        meta = dict(table.schema.metadata or {})
        meta[META_BATCH] = batch_id.encode()
        meta[META_WRITTEN] = str(time.time_ns()).encode()
        table = table.replace_schema_metadata(meta)
        self.write_whole(table, self._fs_path(path), row_group_size=row_group_size, **opts)
        return path

    def write_whole(self, table: pa.Table, fs_path: str, **options) -> None:
        """Write a Parquet file so that no reader ever sees part of it: locally a hidden temporary file in the
        same folder renamed into place, on S3 one PUT (``put_parquet``). ``options`` go to ``pq.write_table``."""
        if self.local:
            folder = os.path.dirname(fs_path)
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".{os.path.basename(fs_path).lstrip('.')}.{uuid.uuid4().hex}.tmp")
            try:
                pq.write_table(table, tmp, **options)
                os.replace(tmp, fs_path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(tmp)
        else:
            self.put_parquet(table, fs_path, **options)

    def put_parquet(self, table: pa.Table, fs_path: str, **options) -> None:
        """Write a Parquet file to an object store in one PUT: the file is built in memory first, so a failure
        anywhere leaves no object at all, never a partial one (a streamed upload closed by an exception would
        commit what it had). The store's client retries the PUT on 5xx and throttling."""
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf, **options)
        self.fs.pipe_file(fs_path, buf.getvalue().to_pybytes())

    def delete_files(self, paths: Iterable[str]) -> int:
        """Delete lake files (full or lake-relative paths); missing ones are fine (a replay may repeat this).
        Returns how many were given. Empty local night folders are removed too."""
        fs_paths = [self._fs_path(p) for p in paths]
        if not fs_paths:
            return 0
        if self.local:
            for p in fs_paths:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(p)
                folder = os.path.dirname(p)
                if "=" in os.path.basename(folder):
                    with contextlib.suppress(OSError):  # not empty
                        os.rmdir(folder)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(fs_paths)  # one bulk request; S3 ignores keys that are already gone
            self.fs.invalidate_cache()
        return len(fs_paths)

    def find_batch_files(self, batch_id: str) -> list[str]:
        """Every file of ``batch_id`` in every table (``{batch_id}.parquet`` and its ``-cNNN``/``-rNNN`` parts).

        Walks the whole lake: for crash recovery only, when a batch died before recording its file list."""
        _check_name("batch id", batch_id)
        if not self.local:
            self.fs.invalidate_cache()
        root = self.root
        if not self.fs.exists(root):
            return []
        pattern = re.compile(rf"^{re.escape(batch_id)}(-[cr]\d+)?\.parquet$")
        found = self.fs.find(root, withdirs=False)
        return sorted(self._public(f) for f in found if pattern.match(os.path.basename(f)))

    # ---------------------------------------------------------------------------------- reading
    def list_files(self, table: str, nights: Iterable[int] | None = None) -> list[str]:
        """The table's Parquet files (full paths), sorted; ``nights`` restricts to those partitions."""
        _check_name("table", table)
        base = self._fs_path(table)
        if not self.local:
            self.fs.invalidate_cache()  # other processes (Dask workers) write here too
        if nights is not None:
            found: list[str] = []
            for n in sorted({int(x) for x in nights}):
                folder = f"{base}/{partition_key(table)}={n:08d}"
                if self.fs.exists(folder):
                    found += self.fs.ls(folder, detail=False)
        elif self.fs.exists(base):
            found = self.fs.find(base, withdirs=False)
        else:
            found = []
        files = [
            f for f in found if f.endswith(".parquet") and not os.path.basename(f).startswith((".", "_"))
        ]
        return sorted(self._public(f) for f in files)

    def read_table(
        self,
        table: str,
        filters: Filters = None,
        columns: Sequence[str] | None = None,
        dedupe: bool = False,
        nights: Iterable[int] | None = None,
    ) -> pd.DataFrame:
        """Read a table as one DataFrame.

        ``filters``: a pyarrow expression or DNF tuples (``[("night", "=", 20200101)]``); ``nights`` prunes
        partitions by folder before any file is opened. Files of different batches may differ in schema
        (a column missing or null in one batch): they are merged permissively. ``dedupe=True`` keeps, per
        natural key (``NATURAL_KEYS``), the row of the latest written file.
        """
        files = self.list_files(table, nights)
        expr = pq.filters_to_expression(filters) if isinstance(filters, list | tuple) else filters
        key = NATURAL_KEYS.get(table) if dedupe else None
        if dedupe and key is None:
            raise ValueError(f"no natural key known for table {table!r}; cannot dedupe")
        want = list(columns) if columns is not None else None
        if want is not None and key is not None:
            want += [k for k in key if k not in want]

        def read(path: str) -> tuple[pa.Table, int] | None:
            try:
                dataset = ds.dataset(self._fs_path(path), filesystem=self.arrow_fs, format="parquet")
            except FileNotFoundError:
                return None  # deleted since listing (a replay superseded its batch)
            cols = [c for c in want if c in dataset.schema.names] if want is not None else None
            partition = _partition_of(path)
            if partition is not None and partition[0] not in dataset.schema.names:
                # the partition column lives in the folder name: restore it, then filter
                tbl = dataset.to_table(columns=cols)
                key_name, value = partition
                tbl = tbl.append_column(key_name, pa.array(np.full(tbl.num_rows, value, dtype=np.int32)))
                if expr is not None:
                    tbl = tbl.filter(expr)
            else:
                tbl = dataset.to_table(columns=cols, filter=expr)
            if tbl.num_rows == 0:
                return None
            meta = dataset.schema.metadata or {}
            written = int(meta.get(META_WRITTEN, b"0"))
            return tbl.replace_schema_metadata(None), written

        workers = max(1, min(8 if self.local else 16, len(files)))  # S3: hide request latency
        with ThreadPoolExecutor(workers) as pool:
            parts = [p for p in pool.map(read, files) if p is not None]
        if not parts:
            return pd.DataFrame(columns=list(columns) if columns is not None else [])
        if key is not None:
            # Rank each file by write time (ties: read order) so "latest" is a property of the data.
            order = np.argsort(np.array([w for _, w in parts], dtype=np.int64), kind="stable")
            rank = np.empty(len(parts), dtype=np.int64)
            rank[order] = np.arange(len(parts))
            parts = [
                (t.append_column(_ORDER, pa.array(np.full(t.num_rows, r))), w)
                for (t, w), r in zip(parts, rank, strict=True)
            ]
        merged = pa.concat_tables([t for t, _ in parts], promote_options="permissive")
        if key is not None:
            if "survey" in key and "survey" not in merged.column_names:
                key = tuple(k for k in key if k != "survey")  # rows of one survey, written without the column
            missing = [k for k in key if k not in merged.column_names]
            if missing:
                raise ValueError(f"{table}: key columns {missing} are absent; cannot dedupe")
            merged = merged.take(pc.sort_indices(merged, [(_ORDER, "ascending")]))
        df = arrow_to_pandas(merged)
        if key is not None:
            df = df.drop_duplicates(list(key), keep="last").drop(columns=[_ORDER])
        if columns is not None:
            df = df[[c for c in columns if c in df.columns]]
        return df.reset_index(drop=True)

    def dask_read(self, table: str, **kwargs: Any):
        """The table as a dask DataFrame (``dask.dataframe.read_parquet`` over the hive-partitioned folder):
        the analysts' path to the whole lake. ``kwargs`` go to ``read_parquet`` (``filters``, ``columns``...)."""
        import dask.dataframe as dd  # lazy: ~0.5 s to import; only the analysts' dask_read needs it

        if self.storage_options:
            kwargs.setdefault("storage_options", self.storage_options)
        return dd.read_parquet(self.table_url(table), **kwargs)
