"""The light-curve history store: every detection, non-detection and forced-photometry point of every object,
kept across nights and partitioned by the same HEALPix pixels as the catalogues.

ZTF alerts carry 30 days of history and LSST's twelve months; classification needs the whole light curve. Each
region task reads the stored history of its objects, merges it with the batch and writes back only the rows the
store did not have, so features and magstats see every night while no task reads more than its pixels.

Layout (hats-style, so a pixel's files sit together and ``lsdb``-like tools can walk it)::

    {lake}/history/{table}/Norder={k}/Dir={d}/Npix={p}/compacted-{gen}-{rows}-{digest}.parquet  (the pixel's rows)
    {lake}/history/{table}/Norder={k}/deltas/{batch_id}-rNNN.parquet                (new rows, one per task)

A region task writes its new rows as ONE delta file per table (rows carry their ``pixel``, sorted by it), not
one file per pixel: a batch spread over the sky would otherwise write hundreds of tiny files. Readers take a
pixel's compacted files plus the delta rows of that pixel; compaction (at the end of a run, or ``broker history
compact``) folds the deltas into the pixel folders, one file per pixel, and removes them. The periodic
compactions during a run are tiered (``compact_share``): a pixel then holds a few files of geometrically
growing size, oldest generation first. A run that died before compacting leaves
its deltas, which the next run reads and compacts.

with ``table`` one of ``objects`` (the object index: oid, survey, first position, pixel, cross-survey id),
``detections``,
``non_detections``, ``forced_photometry``. An object belongs to exactly one pixel, the pixel of its first
position; all its rows live there, so objects near a pixel border never split. A returning object is found by
id in the object index of the pixels around its current position (within ``margin_arcsec``).

Files are written once and never modified (a replayed batch rewrites its own files with the same content), so a
worker may cache what it read, keyed by file name, size and modification time; the cache is only ever a copy
and a restarted worker simply reads again. A file bigger than an eighth of the cache (a dense pixel after years
of survey) is never held whole: compacted files are sorted by oid in row groups of 32,768 rows, and such a file
is read for the wanted objects only, the Parquet statistics skipping the other row groups. Rows stored twice (a replay that regrouped a batch, or a detection
that arrived as history before the alert's own packet) are merged on read: the key of each table says which
rows are one, and the alert's own detection (``has_stamp``) wins over a history copy of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from alert_broker.features.healpix import pixels_around
from alert_broker.storage.lake import Lake, arrow_to_pandas, dictionary_columns, frame_to_arrow

#: The history tables and the key that identifies one row of each.
HISTORY_KEYS: dict[str, tuple[str, ...]] = {
    "objects": ("oid",),
    "detections": ("oid", "candid"),
    "non_detections": ("oid", "fid", "mjd"),
    "forced_photometry": ("oid", "pid"),
}
LIGHT_CURVE_TABLES = ("detections", "non_detections", "forced_photometry")
#: Rows per row group of a compacted pixel file (sorted by oid): the unit a row-selective read skips or reads.
COMPACTED_ROW_GROUP = 32_768
OBJECT_COLUMNS = ["oid", "survey", "ra", "dec", "firstmjd", "pixel", "xid"]


def dedupe_rows(table: str, df: pd.DataFrame, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per key (plus the ``extra`` columns); for detections the alert's own packet (``has_stamp``)
    beats a history copy, and otherwise the later row in ``df`` wins."""
    if df.empty:
        return df
    key = [k for k in (*HISTORY_KEYS[table], *extra) if k in df.columns]
    if table == "detections" and "has_stamp" in df.columns and df.duplicated(key).any():
        df = df.sort_values("has_stamp", kind="stable", key=lambda s: s.fillna(False).astype(bool))
    return df.drop_duplicates(key, keep="last").sort_index()


@dataclass
class _Folder:
    """What a worker holds of one folder: each file's (size, mtime) and Arrow table, keyed by name."""

    files: dict[str, tuple[tuple, pa.Table, int]]
    nbytes: int


def _rows_of(table: pa.Table, wanted: pa.Array | None, pixels: np.ndarray | None = None) -> pa.Table:
    """The rows of ``table`` whose oid is in ``wanted`` (and, for deltas, whose pixel is in ``pixels``),
    filtered in Arrow: a store of many small pixel files is read row-selectively without a pandas frame per
    file (pandas' boolean indexing and isin on Arrow strings cost milliseconds a file)."""
    mask = None
    if wanted is not None:
        mask = pc.is_in(table.column("oid").cast(pa.string()), value_set=wanted)
    if pixels is not None:
        in_pix = pc.is_in(
            table.column("pixel"), value_set=pa.array(pixels, type=table.schema.field("pixel").type)
        )
        mask = in_pix if mask is None else pc.and_(mask, in_pix)
    return table if mask is None else table.filter(pc.fill_null(mask, False))


def _join(tables: list[pa.Table]) -> pa.Table | None:
    """One table of the non-empty ``tables``, in order, or None when their schemas cannot be unified."""
    tables = [t for t in tables if t.num_rows]
    if len(tables) <= 1:
        return tables[0] if tables else pa.table({})
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None


def _concat(tables: list[pa.Table], wanted: pa.Array | None = None) -> pd.DataFrame:
    """One frame of the tables' rows (of ``wanted`` oids only, if given), in order. Files of different
    batches may differ in columns or null types: Arrow unifies them, pandas where Arrow cannot."""
    joined = _join(tables)
    if joined is None:
        frames = [arrow_to_pandas(_rows_of(t, wanted)) for t in tables if t.num_rows]
        frames = [f for f in frames if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not joined.num_rows:
        return pd.DataFrame()
    return arrow_to_pandas(_rows_of(joined, wanted))


class HistoryStore:
    """The history of ``lake`` at HEALPix ``order``, with a per-process cache of at most ``cache_mb``."""

    def __init__(self, lake: Lake, order: int = 4, cache_mb: float = 256, margin_arcsec: float = 3.0):
        if not 0 <= order <= 13:
            raise ValueError(f"history order {order} must be within 0..13")
        self.lake = lake
        self.order = int(order)
        self.margin_arcsec = float(margin_arcsec)
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: OrderedDict[str, _Folder] = OrderedDict()
        self._cached = 0
        self._lock = threading.Lock()
        self.stats = {"files_read": 0, "files_cached": 0, "files_selective": 0}

    # ------------------------------------------------------------------------------------- layout
    def _base(self, table: str) -> str:
        if table not in HISTORY_KEYS:
            raise ValueError(f"unknown history table {table!r}; known: {sorted(HISTORY_KEYS)}")
        return self.lake._fs_path(f"history/{table}/Norder={self.order}")

    def folder(self, table: str, pixel: int) -> str:
        """The filesystem path of one pixel's folder of ``table``."""
        pixel = int(pixel)
        return f"{self._base(table)}/Dir={(pixel // 10000) * 10000}/Npix={pixel}"

    def delta_folder(self, table: str) -> str:
        return f"{self._base(table)}/deltas"

    def pixels(self, table: str = "objects") -> list[int]:
        """Every pixel that has rows of ``table`` (compacted or in deltas)."""
        base = self._base(table)
        if not self.lake.local:
            self.lake.fs.invalidate_cache()
        out: set[int] = set()
        if self.lake.fs.exists(base):
            for path in self.lake.fs.find(base, withdirs=True):
                name = os.path.basename(str(path).rstrip("/"))
                if name.startswith("Npix="):
                    out.add(int(name.split("=", 1)[1]))
        for t in self._tables(self.delta_folder(table)).values():
            if t.num_rows:
                out.update(pc.unique(t.column("pixel")).to_pylist())
        return sorted(out)

    def delta_files(self, table: str) -> list[str]:
        return sorted(self._listing(self.delta_folder(table)))

    def _listing(self, folder: str) -> dict[str, tuple]:
        """{file path: (size, mtime)} of the Parquet files in a folder (empty if it does not exist)."""
        fs = self.lake.fs
        if self.lake.local:
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                return {}
            out = {}
            for e in entries:
                if e.name.endswith(".parquet") and not e.name.startswith((".", "_")):
                    try:
                        st = e.stat()
                    except FileNotFoundError:
                        continue
                    out[e.path] = (st.st_size, st.st_mtime_ns)
            return out
        fs.invalidate_cache(folder)
        try:
            entries = fs.ls(folder, detail=True)
        except FileNotFoundError:
            return {}
        return {
            e["name"]: (e.get("size"), str(e.get("LastModified") or e.get("mtime") or e.get("ETag")))
            for e in entries
            if e["name"].endswith(".parquet") and not os.path.basename(e["name"]).startswith((".", "_"))
        }

    # ------------------------------------------------------------------------------------- reading
    def _read_file(self, path: str) -> pa.Table:
        self.stats["files_read"] += 1
        return pq.read_table(path, filesystem=self.lake.arrow_fs)

    def _read_rows(self, path: str, wanted: pa.Array) -> pa.Table:
        """Only the rows of ``wanted`` oids of one file: compacted files are sorted by oid in row groups, so
        Parquet statistics skip the row groups of other objects."""
        self.stats["files_selective"] += 1
        return pq.read_table(path, filesystem=self.lake.arrow_fs, filters=pc.field("oid").isin(wanted))

    def _selective(self, sig: tuple) -> bool:
        """A file too big to hold whole: more than an eighth of the cache (a pixel of a dense field after
        years of survey); it is read row-selectively instead, every time, and never cached."""
        size = sig[0] if sig else None
        return isinstance(size, int) and size > self.cache_bytes // 8

    def _tables(self, folder: str, wanted: pa.Array | None = None) -> dict[str, pa.Table]:
        """{path: table} of every file in ``folder``, compacted files first (oldest generation first), then the
        rest by name (later writes win ties). Files already read by this process and unchanged since come from
        the cache; files gone since (compacted away) leave it. With ``wanted`` oids, files too big to cache come
        back with only those objects' rows (the others whole: the caller filters)."""
        listing = self._listing(folder)
        with self._lock:
            held = self._cache.pop(folder, None)
        files: dict[str, tuple[tuple, pa.Table, int]] = {}
        partial: dict[str, pa.Table] = {}
        for path, sig in sorted(listing.items()):
            if held is not None and path in held.files and held.files[path][0] == sig:
                files[path] = held.files[path]
                self.stats["files_cached"] += 1
                continue
            try:
                if wanted is not None and self._selective(sig):
                    partial[path] = self._read_rows(path, wanted)
                    continue
                t = self._read_file(path)
            except FileNotFoundError:  # compacted away between listing and reading: its rows moved
                return self._tables(folder, wanted)
            files[path] = (sig, t, t.nbytes)
        nbytes = sum(size for *_, size in files.values())
        with self._lock:
            self._cache[folder] = _Folder(files, nbytes)
            self._cached += nbytes - (held.nbytes if held is not None else 0)
            while self._cached > self.cache_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cached -= old.nbytes
        order = sorted([*files, *partial], key=lambda p: (not _is_compacted(p), _generation(p), p))
        return {p: files[p][1] if p in files else partial[p] for p in order}

    def read_pixel(self, table: str, pixel: int) -> pd.DataFrame:
        """All stored rows of one pixel of ``table`` (compacted and in deltas), deduplicated."""
        return self.read(table, [pixel])

    def read(self, table: str, pixels: Iterable[int], oids: Iterable[str] | None = None) -> pd.DataFrame:
        """Stored rows of ``table`` in ``pixels`` (optionally only those of ``oids``), deduplicated."""
        pixels = np.unique(np.asarray(list(pixels), dtype=np.int64))
        want = pa.array(sorted({str(o) for o in oids}), type=pa.string()) if oids is not None else None
        parts = []
        for p in pixels:
            parts += self._tables(self.folder(table, int(p)), want).values()
        for t in self._tables(self.delta_folder(table)).values():
            if t.num_rows:
                parts.append(_rows_of(t, None, pixels))
        df = _concat(parts, want)
        if df.empty:
            return df
        return dedupe_rows(table, df).reset_index(drop=True)

    def multisurvey_light_curve(self, oid: str) -> pd.DataFrame:
        """Every stored detection of the source ``oid`` belongs to, across surveys: the objects sharing its
        cross-survey id (``xid``; ``oid`` may be an xid itself), time-ordered, with ``xid``, ``survey`` and
        ``band`` on every point. Empty when the store does not know it. Reads the whole object index: a tool
        for people, not for the pipeline's hot path."""
        index = self.read("objects", self.pixels("objects"))
        if index.empty:
            return pd.DataFrame()
        xid = index["xid"].fillna(index["oid"]) if "xid" in index.columns else index["oid"]
        index = index.assign(xid=xid)
        hit = index[(index["oid"] == oid) | (index["xid"] == oid)]
        if hit.empty:
            return pd.DataFrame()
        members = index[index["xid"].isin(set(hit["xid"]))]
        det = self.read("detections", members["pixel"].unique(), members["oid"].unique())
        if det.empty:
            return det
        det = det.merge(members[["oid", "xid"]].drop_duplicates("oid"), on="oid", how="left")
        return det.sort_values(["mjd", "survey", "oid"], kind="stable").reset_index(drop=True)

    def locate(self, positions: pd.DataFrame) -> pd.Series:
        """oid -> home pixel of the objects of ``positions`` (oid, ra, dec) that the store already knows."""
        if positions.empty:
            return pd.Series(dtype="int64", name="pixel")
        around = pixels_around(
            positions["ra"].to_numpy(), positions["dec"].to_numpy(), self.order, self.margin_arcsec
        )
        known = self.read("objects", around, positions["oid"].unique())
        if known.empty:
            return pd.Series(dtype="int64", name="pixel")
        return known.drop_duplicates("oid").set_index("oid")["pixel"].astype("int64")

    def nearby_objects(self, positions: pd.DataFrame) -> pd.DataFrame:
        """Every stored object in the pixels around ``positions`` (ra, dec): the candidates for associating a
        new object by position (cross-survey association)."""
        if positions.empty:
            return pd.DataFrame(columns=OBJECT_COLUMNS)
        around = pixels_around(
            positions["ra"].to_numpy(), positions["dec"].to_numpy(), self.order, self.margin_arcsec
        )
        return self.read("objects", around)

    # ------------------------------------------------------------------------------------- writing
    def write(self, table: str, df: pd.DataFrame, pixel_of_oid: pd.Series, name: str) -> list[str]:
        """Write ``df``'s rows as one delta file named ``name`` (a batch's region part: a replay of the batch
        overwrites it), each row with its object's home ``pixel``. Returns the paths written."""
        if df is None or df.empty:
            return []
        pix = df["oid"].map(pixel_of_oid)
        if pix.isna().any():
            missing = df.loc[pix.isna(), "oid"].unique()[:5]
            raise ValueError(f"history {table}: no pixel for objects {list(missing)}")
        out = df.assign(pixel=pix.to_numpy(dtype=np.int64))
        out = out.sort_values(["pixel", "oid"], kind="stable").reset_index(drop=True)
        path = f"{self.delta_folder(table)}/{name}.parquet"
        self._write(frame_to_arrow(out), path)
        return [self.lake._public(path)]

    def _write(self, table: pa.Table, path: str, row_group_size: int | None = None) -> None:
        options = {"row_group_size": row_group_size, "use_dictionary": dictionary_columns(table.schema)}
        if self.lake.local:
            folder = os.path.dirname(path)
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{threading.get_ident()}.tmp")
            pq.write_table(table, tmp, **options)
            os.replace(tmp, path)
        else:
            self.lake.put_parquet(table, path, **options)

    def _remove(self, paths: Iterable[str]) -> None:
        paths = list(paths)
        if not paths:
            return
        if self.lake.local:
            for p in paths:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(p)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.lake.fs.rm(paths)
            self.lake.fs.invalidate_cache()

    # ------------------------------------------------------------------------------------- compaction
    def compact_share(
        self,
        share: int = 0,
        shares: int = 1,
        deltas: dict[str, list[str]] | None = None,
        tiered: bool = False,
    ) -> dict[str, int]:
        """Fold the delta rows of the pixels ``p % shares == share`` into their pixel folders: per pixel one
        new compacted file (rows deduplicated, sorted by oid and time), written before the files it replaces are
        removed, so a reader at any moment sees every row at least once. The deltas themselves are left for
        the caller to remove once every share is done (``drop_deltas``). Returns counts.

        A full compaction (the end of a run, ``broker history compact``) merges everything into one file per
        pixel. A ``tiered`` one (periodic, during a run) merges the new rows only with the pixel's newest files
        while each is no bigger than the rows merged so far (``_tier``): rewriting the whole pixel every time
        made a night's periodic compactions cost the square of its history (each one rewrote every row stored
        so far), where tiers keep a row's rewrites to about log2 of the compactions."""
        stats = {"pixels": 0, "files_before": 0, "files_after": 0, "rows_rewritten": 0}
        for table in HISTORY_KEYS:
            paths = sorted((deltas or {}).get(table) or []) if deltas is not None else self.delta_files(table)
            # each delta file cut to this share's pixels as it is read: a share never holds the others' rows
            rows = _concat([self._share_of(self._read_file(p), share, shares) for p in paths])
            folded: set[int] = set()
            if not rows.empty:
                # deduplicate and sort the whole share once, then cut it into pixels: pixels that had no file yet
                # (most of them on a first night) are written straight from an Arrow slice
                within = [c for c in ("oid", "mjd") if c in rows.columns]
                rows = dedupe_rows(table, rows, extra=("pixel",))
                rows = rows.sort_values(["pixel", *within], kind="stable").reset_index(drop=True)
                arrow = frame_to_arrow(rows)
                pix = rows["pixel"].to_numpy()
                cuts = [0, *(np.flatnonzero(np.diff(pix)) + 1).tolist(), len(pix)]
                for a, b in itertools.pairwise(cuts):
                    folded.add(int(pix[a]))
                    folder = self.folder(table, int(pix[a]))
                    old = sorted(self._listing(folder), key=_generation)
                    merge = _tier(old, b - a) if tiered else old
                    self._fold(table, folder, old, merge, rows.iloc[a:b], arrow.slice(a, b - a), paths, stats)
            if not tiered:  # a full compaction also joins the tiers of pixels that got no new rows
                for pixel in self._split_pixels(table):
                    if pixel % shares == share and pixel not in folded:
                        folder = self.folder(table, pixel)
                        old = sorted(self._listing(folder), key=_generation)
                        self._fold(table, folder, old, old, None, None, [], stats)
        return stats

    def _fold(
        self,
        table: str,
        folder: str,
        old: list[str],
        merge: list[str],
        new: pd.DataFrame | None,
        new_arrow: pa.Table | None,
        sources: list[str],
        stats: dict[str, int],
    ) -> None:
        """Write ``merge`` (a pixel's files, oldest first) and its ``new`` rows as one compacted file of the next
        generation, then remove the files merged."""
        if merge:
            stored = _concat([self._read_file(f) for f in merge])  # oldest first: later rows win
            merged = dedupe_rows(
                table, pd.concat([stored, new], ignore_index=True) if new is not None else stored
            )
            within = [c for c in ("oid", "mjd") if c in merged.columns]
            merged = merged.sort_values(within, kind="stable").reset_index(drop=True)
            out = frame_to_arrow(merged)
            stats["rows_rewritten"] += len(stored)
        else:
            out = new_arrow
        digest = hashlib.sha1(("\n".join(sorted(merge)) + "|" + "\n".join(sources)).encode()).hexdigest()[:16]
        generation = 1 + max((_generation(f) for f in old), default=0)
        target = f"{folder}/{_compacted_name(generation, out.num_rows, digest)}"
        self._write(out, target, row_group_size=COMPACTED_ROW_GROUP)
        self._remove(f for f in merge if f != target)
        stats["pixels"] += 1
        stats["files_before"] += len(old) + (new is not None)
        stats["files_after"] += len(old) - len(merge) + 1

    def _split_pixels(self, table: str) -> list[int]:
        """Pixels of ``table`` whose folder holds more than one file (tiers left by periodic compactions)."""
        base = self._base(table)
        if not self.lake.local:
            self.lake.fs.invalidate_cache()
        if not self.lake.fs.exists(base):
            return []
        counts: dict[int, int] = {}
        for path in self.lake.fs.find(base):
            name, parent = os.path.basename(str(path)), os.path.basename(os.path.dirname(str(path)))
            if name.endswith(".parquet") and not name.startswith((".", "_")) and parent.startswith("Npix="):
                pixel = int(parent.split("=", 1)[1])
                counts[pixel] = counts.get(pixel, 0) + 1
        return sorted(p for p, n in counts.items() if n > 1)

    @staticmethod
    def _share_of(table: pa.Table, share: int, shares: int) -> pa.Table:
        if shares <= 1 or not table.num_rows:
            return table
        pixel = table.column("pixel").to_numpy(zero_copy_only=False)
        return table.filter(pa.array(pixel % shares == share))

    def drop_deltas(self, deltas: dict[str, list[str]]) -> None:
        for paths in deltas.values():
            self._remove(paths)

    def compact(self) -> dict[str, int]:
        """Fold every delta into the pixel folders (one process): ``broker history compact``, tests."""
        deltas = {t: self.delta_files(t) for t in HISTORY_KEYS}
        stats = self.compact_share(0, 1, deltas)
        self.drop_deltas(deltas)
        stats["deltas"] = sum(len(v) for v in deltas.values())
        return stats


def _is_compacted(path: str) -> bool:
    return os.path.basename(path).startswith("compacted-")


def _compacted_name(generation: int, rows: int, digest: str) -> str:
    """``compacted-{generation}-{rows}-{digest}.parquet``: the generation orders a pixel's files by age (a
    reader lets later rows win), the row count lets a tiered compaction choose without opening the file."""
    return f"compacted-{generation:06d}-{rows}-{digest}.parquet"


def _compacted_info(path: str) -> tuple[int, int | None]:
    """(generation, rows) from a compacted file's name; (0, None) for other names, e.g. the single
    ``compacted-{digest}.parquet`` of stores written before generations: the oldest, of unknown size."""
    parts = os.path.basename(path).removesuffix(".parquet").split("-")
    if len(parts) == 4 and parts[0] == "compacted" and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1]), int(parts[2])
    return 0, None


def _generation(path: str) -> int:
    return _compacted_info(path)[0]


def _tier(files: list[str], new_rows: int) -> list[str]:
    """Which of a pixel's files (oldest first) a tiered compaction merges with ``new_rows`` new rows: the
    newest ones, while each holds no more rows than those merged so far. With equal deltas the files grow
    like a binary counter (n, 2n, 4n, ... rows), so a pixel keeps about log2(compactions) files and a row is
    rewritten about as often; a file of unknown size is merged only by a full compaction."""
    merged, total = [], new_rows
    for path in reversed(files):
        rows = _compacted_info(path)[1]
        if rows is None or rows > total:
            break
        merged.append(path)
        total += rows
    return merged[::-1]
