"""The light-curve history store: every detection, non-detection and forced-photometry point of every object,
kept across nights and partitioned by the same HEALPix pixels as the catalogues.

ZTF alerts carry 30 days of history and LSST's twelve months; classification needs the whole light curve. Each
region task reads the stored history of its objects, merges it with the batch and writes back only the rows the
store did not have, so features and magstats see every night while no task reads more than its pixels.

Layout (hats-style, so a pixel's files sit together and ``lsdb``-like tools can walk it)::

    {lake}/history/{table}/Norder={k}/Dir={d}/Npix={p}/{batch_id}-rNNN.parquet   (one per region task)
    {lake}/history/{table}/Norder={k}/Dir={d}/Npix={p}/compacted-{digest}.parquet (after compaction)

with ``table`` one of ``objects`` (the object index: oid, survey, first position, pixel), ``detections``,
``non_detections``, ``forced_photometry``. An object belongs to exactly one pixel, the pixel of its first
position; all its rows live there, so objects near a pixel border never split. A returning object is found by
id in the object index of the pixels around its current position (within ``margin_arcsec``).

Files are written once and never modified (a replayed batch rewrites its own files with the same content), so a
worker may cache what it read, keyed by file name, size and modification time; the cache is only ever a copy
and a restarted worker simply reads again. Rows stored twice (a replay that regrouped a batch, or a detection
that arrived as history before the alert's own packet) are merged on read: the key of each table says which
rows are one, and the alert's own detection (``has_stamp``) wins over a history copy of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from storage.lake import Lake, arrow_to_pandas, frame_to_arrow

#: The history tables and the key that identifies one row of each.
HISTORY_KEYS: dict[str, tuple[str, ...]] = {
    "objects": ("oid",),
    "detections": ("oid", "candid"),
    "non_detections": ("oid", "fid", "mjd"),
    "forced_photometry": ("oid", "pid"),
}
LIGHT_CURVE_TABLES = ("detections", "non_detections", "forced_photometry")
OBJECT_COLUMNS = ["oid", "survey", "ra", "dec", "firstmjd", "pixel"]


def pixel_of(ra_deg: np.ndarray, dec_deg: np.ndarray, order: int) -> np.ndarray:
    from pipeline.regions import healpix_pixels

    return healpix_pixels(ra_deg, dec_deg, order)


def pixels_around(ra_deg: np.ndarray, dec_deg: np.ndarray, order: int, margin_arcsec: float) -> np.ndarray:
    """The distinct pixels within ``margin_arcsec`` of any of the positions: the pixel of each position and of
    eight points on a circle of that radius around it. Pixels are degrees wide and the margin a few arcsec,
    so a neighbour is only ever added for positions that really sit near a border."""
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    if ra.size == 0:
        return np.empty(0, dtype=np.int64)
    r = np.deg2rad(margin_arcsec / 3600.0)
    angles = np.arange(8) * np.pi / 4
    # destination points at angular distance r along 8 position angles (exact spherical formula)
    d0, a0 = np.deg2rad(dec)[:, None], np.deg2rad(ra)[:, None]
    sin_d = np.sin(d0) * np.cos(r) + np.cos(d0) * np.sin(r) * np.cos(angles)
    d1 = np.arcsin(np.clip(sin_d, -1, 1))
    a1 = a0 + np.arctan2(np.sin(angles) * np.sin(r) * np.cos(d0), np.cos(r) - np.sin(d0) * sin_d)
    all_ra = np.concatenate([ra, np.rad2deg(a1).ravel() % 360.0])
    all_dec = np.concatenate([dec, np.rad2deg(d1).ravel()])
    return np.unique(pixel_of(all_ra, all_dec, order))


def dedupe_rows(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """One row per key; for detections the alert's own packet (``has_stamp``) beats a history copy, and
    otherwise the later row in ``df`` wins."""
    if df.empty:
        return df
    key = [k for k in HISTORY_KEYS[table] if k in df.columns]
    if table == "detections" and "has_stamp" in df.columns and df.duplicated(key).any():
        df = df.sort_values("has_stamp", kind="stable", key=lambda s: s.fillna(False).astype(bool))
    return df.drop_duplicates(key, keep="last").sort_index()


@dataclass
class _Folder:
    """What a worker holds of one pixel folder: each file's frame, keyed by name and (size, mtime)."""

    files: dict[str, tuple[tuple, pd.DataFrame]]
    nbytes: int


class HistoryStore:
    """The history of ``lake`` at HEALPix ``order``, with a per-process cache of at most ``cache_mb``."""

    def __init__(self, lake: Lake, order: int = 4, cache_mb: float = 256, margin_arcsec: float = 3.0):
        if not 0 <= order <= 13:
            raise ValueError(f"history order {order} must be within 0..13")
        self.lake = lake
        self.order = int(order)
        self.margin_arcsec = float(margin_arcsec)
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: OrderedDict[tuple[str, int], _Folder] = OrderedDict()
        self._cached = 0
        self._lock = threading.Lock()
        self.stats = {"files_read": 0, "files_cached": 0}

    # ------------------------------------------------------------------------------------- layout
    def folder(self, table: str, pixel: int) -> str:
        """The filesystem path of one pixel's folder of ``table``."""
        if table not in HISTORY_KEYS:
            raise ValueError(f"unknown history table {table!r}; known: {sorted(HISTORY_KEYS)}")
        pixel = int(pixel)
        d = (pixel // 10000) * 10000
        return self.lake._fs_path(f"history/{table}/Norder={self.order}/Dir={d}/Npix={pixel}")

    def pixels(self, table: str = "objects") -> list[int]:
        """Every pixel that has files of ``table``."""
        base = self.lake._fs_path(f"history/{table}/Norder={self.order}")
        if not self.lake.local:
            self.lake.fs.invalidate_cache()
        if not self.lake.fs.exists(base):
            return []
        out = set()
        for path in self.lake.fs.find(base, withdirs=True):
            name = os.path.basename(str(path).rstrip("/"))
            if name.startswith("Npix="):
                out.add(int(name.split("=", 1)[1]))
        return sorted(out)

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
                    st = e.stat()
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
    def _read_file(self, path: str) -> pd.DataFrame:
        self.stats["files_read"] += 1
        return arrow_to_pandas(pq.read_table(path, filesystem=self.lake.arrow_fs))

    def read_pixel(self, table: str, pixel: int) -> pd.DataFrame:
        """All stored rows of one pixel of ``table``, deduplicated. Files already read by this process and
        unchanged since come from the cache; files gone since (compacted away) leave it."""
        folder = self.folder(table, pixel)
        listing = self._listing(folder)
        key = (table, int(pixel))
        with self._lock:
            held = self._cache.pop(key, None)
        files: dict[str, tuple[tuple, pd.DataFrame]] = {}
        for path, sig in sorted(listing.items()):
            if held is not None and path in held.files and held.files[path][0] == sig:
                files[path] = held.files[path]
                self.stats["files_cached"] += 1
                continue
            try:
                files[path] = (sig, self._read_file(path))
            except FileNotFoundError:  # compacted away between listing and reading: its rows moved
                return self.read_pixel(table, pixel)
        frames = [df for _, df in files.values() if not df.empty]
        nbytes = sum(int(df.memory_usage(deep=False).sum()) for df in frames)
        with self._lock:
            self._cache[key] = _Folder(files, nbytes)
            self._cached += nbytes - (held.nbytes if held is not None else 0)
            while self._cached > self.cache_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cached -= old.nbytes
        if not frames:
            return pd.DataFrame()
        # compacted files first, then batch files in name order: later writes win ties
        frames = [files[p][1] for p in sorted(files, key=lambda p: (not _is_compacted(p), p))]
        frames = [f for f in frames if not f.empty]
        return dedupe_rows(table, pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0])

    def read(self, table: str, pixels: Iterable[int], oids: Iterable[str] | None = None) -> pd.DataFrame:
        """Stored rows of ``table`` in ``pixels`` (optionally only those of ``oids``)."""
        frames = [self.read_pixel(table, p) for p in sorted({int(p) for p in pixels})]
        frames = [f for f in frames if not f.empty]
        if not frames:
            return pd.DataFrame()
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        if oids is not None:
            df = df[df["oid"].isin(set(oids))]
        return df.reset_index(drop=True)

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
        """Write ``df``'s rows into the folders of their objects' pixels, one file per pixel named ``name``
        (a batch's region part: a replay of the batch overwrites the same files). Returns the paths."""
        if df is None or df.empty:
            return []
        pix = df["oid"].map(pixel_of_oid)
        if pix.isna().any():
            missing = df.loc[pix.isna(), "oid"].unique()[:5]
            raise ValueError(f"history {table}: no pixel for objects {list(missing)}")
        arrow = frame_to_arrow(df.reset_index(drop=True))
        pix = pix.to_numpy(dtype=np.int64)
        paths = []
        for p in np.unique(pix):
            part = arrow if len(np.unique(pix)) == 1 else arrow.filter(pa.array(pix == p))
            path = f"{self.folder(table, int(p))}/{name}.parquet"
            self._write(part, path)
            paths.append(self.lake._public(path))
        return paths

    def _write(self, table: pa.Table, path: str) -> None:
        if self.lake.local:
            folder = os.path.dirname(path)
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{threading.get_ident()}.tmp")
            pq.write_table(table, tmp)
            os.replace(tmp, path)
        else:
            with self.lake.fs.open(path, "wb") as fh:
                pq.write_table(table, fh)

    # ------------------------------------------------------------------------------------- compaction
    def compact_pixel(self, table: str, pixel: int, min_files: int = 2) -> tuple[int, int]:
        """Merge a pixel folder's files into one (rows deduplicated). The merged file is written before the
        others are removed, so a reader at any moment sees every row at least once. Returns (files before,
        files after)."""
        folder = self.folder(table, pixel)
        listing = self._listing(folder)
        if len(listing) < min_files:
            return len(listing), len(listing)
        frames = []
        for path in sorted(listing, key=lambda p: (not _is_compacted(p), p)):
            frames.append(self._read_file(path))
        merged = dedupe_rows(table, pd.concat([f for f in frames if not f.empty], ignore_index=True))
        sort = [c for c in ("oid", "mjd") if c in merged.columns]
        merged = merged.sort_values(sort, kind="stable").reset_index(drop=True)
        digest = hashlib.sha1("\n".join(sorted(listing)).encode()).hexdigest()[:16]
        target = f"{folder}/compacted-{digest}.parquet"
        self._write(frame_to_arrow(merged), target)
        old = [p for p in listing if p != target]
        if self.lake.local:
            for p in old:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(p)
        else:
            self.lake.fs.rm(old)
            self.lake.fs.invalidate_cache(folder)
        return len(listing), 1

    def compact(self, pixels: Iterable[int] | None = None, min_files: int = 2) -> dict[str, int]:
        """Compact every table's folders of ``pixels`` (all pixels if None). Returns file counts."""
        before = after = 0
        for table in HISTORY_KEYS:
            for p in sorted(set(pixels) if pixels is not None else self.pixels(table)):
                b, a = self.compact_pixel(table, p, min_files)
                before, after = before + b, after + a
        return {"files_before": before, "files_after": after}


def _is_compacted(path: str) -> bool:
    return os.path.basename(path).startswith("compacted-")
