"""Local cross-match catalogues, HEALPix-partitioned on disk (a HATS-like layout) so a region task reads only
the pixels around its own objects, and no network is needed at run time.

Layout under ``{root}/{name}/`` (see docs/crossmatch.md for how close this is to HATS)::

    properties, hats.properties     HATS key=value properties (hats_nrows, hats_col_ra, ...)
    catalog_info.json               the same facts as JSON (name, ra/dec/id columns, order, total rows)
    partition_info.csv              Norder,Npix,num_rows
    dataset/_common_metadata        the Parquet schema
    dataset/_metadata               the Parquet footers of every pixel file
    dataset/Norder={k}/Dir={d}/Npix={p}.parquet   rows of one pixel, sorted by ``_healpix_29``
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from astropy_healpix import core as hp

#: The HEALPix order of the spatial index column, as HATS (nside = 2**29, nested).
INDEX_ORDER = 29
INDEX_COLUMN = "_healpix_29"
#: Column holding the catalogue's source id when the input has none (its 0-based row number in the file).
ROW_ID_COLUMN = "_row"
#: Rows kept in the per-process pixel cache (env ``BROKER_CATALOG_CACHE_ROWS``).
DEFAULT_CACHE_ROWS = 5_000_000


@dataclass(frozen=True)
class CatalogInfo:
    """What a reader needs to know about an imported catalogue (``catalog_info.json``)."""

    name: str
    ra_column: str
    dec_column: str
    id_column: str
    order: int
    total_rows: int
    columns: tuple[str, ...]
    source: str = ""


def healpix29(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Nested HEALPix index at order 29 (int64) of each position: the finest sort key, shared with HATS."""
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    if ra.size == 0:
        return np.empty(0, dtype=np.int64)
    return np.asarray(
        hp.lonlat_to_healpix(ra * u.deg, dec * u.deg, 2**INDEX_ORDER, order="nested"), dtype=np.int64
    )


def pixel_path(base: Path, order: int, npix: int) -> Path:
    """Where pixel ``npix`` of order ``order`` lives (``Dir`` groups pixels by 10000, as HATS does)."""
    return base / "dataset" / f"Norder={order}" / f"Dir={npix // 10000 * 10000}" / f"Npix={npix}.parquet"


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV, Parquet or FITS table into pandas (only ``columns`` when given)."""
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return pd.read_parquet(p, columns=columns)
    if any(s in (".fits", ".fit", ".fts") for s in suffixes):
        from astropy.table import Table

        table = Table.read(p)
        if columns is not None:
            table = table[columns]
        # multidimensional columns cannot go to pandas; keep only the scalar ones
        scalar = [c for c in table.colnames if len(table[c].shape) <= 1]
        return table[scalar].to_pandas()
    if any(s in (".csv", ".tsv", ".txt") for s in suffixes):
        sep = "\t" if ".tsv" in suffixes else ","
        return pd.read_csv(p, usecols=columns, sep=sep)
    raise ValueError(f"{p}: unknown catalogue format (expected .csv, .tsv, .parquet or .fits)")


def import_catalog(
    name: str,
    path: str | Path,
    ra_col: str,
    dec_col: str,
    root: str | Path,
    columns: list[str] | None = None,
    id_col: str | None = None,
    order: int = 5,
) -> CatalogInfo:
    """Import a catalogue file into ``{root}/{name}/``, one Parquet file per HEALPix pixel of ``order``.

    Keeps ``ra_col``, ``dec_col``, ``id_col`` (or ``_row``, the row number, when there is none) and ``columns``
    (all columns when None). Strings are stripped of padding (VSX/GCVS types come space-padded). Replaces an
    earlier import of the same name.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad catalogue name {name!r}: use a plain name such as 'vsx'")
    if not 0 <= order <= 13:
        raise ValueError(f"order must be in [0, 13], got {order}")
    wanted = None
    if columns is not None:
        wanted = list(dict.fromkeys([ra_col, dec_col, *([id_col] if id_col else []), *columns]))
    df = read_table(path, wanted)
    missing = [c for c in [ra_col, dec_col, *([id_col] if id_col else [])] if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing}; it has {list(df.columns)}")
    df = df.reset_index(drop=True)
    if id_col is None:
        id_col = ROW_ID_COLUMN
        df[ROW_ID_COLUMN] = np.arange(len(df), dtype=np.int64)
    for c in df.columns:
        if pd.api.types.is_string_dtype(df[c]) or df[c].dtype == object:
            df[c] = df[c].astype("string").str.strip()
    ra = pd.to_numeric(df[ra_col], errors="coerce").to_numpy(dtype=np.float64)
    dec = pd.to_numeric(df[dec_col], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(ra) | ~np.isfinite(dec) | (np.abs(dec) > 90)
    if bad.any():
        raise ValueError(f"{path}: {int(bad.sum())} rows have no valid position in {ra_col}/{dec_col}")

    h29 = healpix29(ra, dec)
    sort = np.argsort(h29, kind="stable")
    df = df.iloc[sort].reset_index(drop=True)
    h29 = h29[sort]
    df.insert(0, INDEX_COLUMN, h29)
    npix = h29 >> (2 * (INDEX_ORDER - order))

    base = Path(root) / name
    _clear(base)
    PIXEL_CACHE.drop(str(base.resolve()))
    table = pa.Table.from_pandas(df, preserve_index=False)
    pixels, starts, counts = np.unique(npix, return_index=True, return_counts=True)
    collector: list = []
    for p, s, n in zip(pixels.tolist(), starts.tolist(), counts.tolist(), strict=True):
        out = pixel_path(base, order, p)
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.slice(s, n), out, metadata_collector=collector)
        collector[-1].set_file_path(str(out.relative_to(base / "dataset")))
    pq.write_metadata(table.schema, base / "dataset" / "_common_metadata")
    pq.write_metadata(table.schema, base / "dataset" / "_metadata", metadata_collector=collector)
    pd.DataFrame({"Norder": order, "Npix": pixels, "num_rows": counts}).to_csv(
        base / "partition_info.csv", index=False
    )
    info = CatalogInfo(
        name=name,
        ra_column=ra_col,
        dec_column=dec_col,
        id_column=id_col,
        order=order,
        total_rows=len(df),
        columns=tuple(c for c in df.columns if c != INDEX_COLUMN),
        source=str(path),
    )
    (base / "catalog_info.json").write_text(json.dumps(asdict(info), indent=2) + "\n")
    props = _properties(info, int(counts.max()) if len(counts) else 0)
    for f in ("properties", "hats.properties"):
        (base / f).write_text(props)
    return info


def _properties(info: CatalogInfo, max_rows: int) -> str:
    """HATS ``properties`` (Java key=value) with the keys hats' ``TableProperties`` requires or reads."""
    props = {
        "obs_collection": info.name,
        "dataproduct_type": "object",
        "hats_nrows": info.total_rows,
        "hats_col_ra": info.ra_column,
        "hats_col_dec": info.dec_column,
        "hats_col_healpix": INDEX_COLUMN,
        "hats_col_healpix_order": INDEX_ORDER,
        "hats_npix_suffix": ".parquet",
        "hats_max_rows": max_rows,
        "hats_order": info.order,
        "hats_builder": "alert-broker storage.catalogs",
        "hats_version": "v1.0",
    }
    return "#HATS catalog\n" + "".join(f"{k}={v}\n" for k, v in props.items())


def _clear(base: Path) -> None:
    """Remove an earlier import (only the files this module writes)."""
    if (base / "dataset").is_dir():
        for f in sorted((base / "dataset").rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
    for f in ("catalog_info.json", "properties", "hats.properties", "partition_info.csv"):
        (base / f).unlink(missing_ok=True)


class _PixelCache:
    """Per-process LRU cache of pixel frames, bounded by the total number of rows it holds."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.rows = 0
        self._frames: OrderedDict[tuple, pd.DataFrame] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple, loader) -> pd.DataFrame:
        with self._lock:
            if key in self._frames:
                self._frames.move_to_end(key)
                self.hits += 1
                return self._frames[key]
        frame = loader()  # outside the lock: two threads may read the same file once each, harmlessly
        with self._lock:
            self.misses += 1
            if key not in self._frames:
                self._frames[key] = frame
                self.rows += len(frame)
            while self.rows > self.max_rows and len(self._frames) > 1:
                _, old = self._frames.popitem(last=False)
                self.rows -= len(old)
        return frame

    def drop(self, base: str) -> None:
        """Forget the frames of one catalogue (it was re-imported)."""
        with self._lock:
            for key in [k for k in self._frames if k[0] == base]:
                self.rows -= len(self._frames.pop(key))

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()
            self.rows = self.hits = self.misses = 0


PIXEL_CACHE = _PixelCache(int(os.environ.get("BROKER_CATALOG_CACHE_ROWS", DEFAULT_CACHE_ROWS)))


class Catalog:
    """Read side of an imported catalogue: which pixels a set of cones touches, and their rows."""

    def __init__(self, root: str | Path, name: str) -> None:
        self.base = Path(root) / name
        info_path = self.base / "catalog_info.json"
        if not info_path.is_file():
            raise FileNotFoundError(
                f"no catalogue {name!r} under {root} (import it with `broker catalog import`)"
            )
        raw = json.loads(info_path.read_text())
        raw["columns"] = tuple(raw["columns"])
        self.info = CatalogInfo(**raw)
        parts = pd.read_csv(self.base / "partition_info.csv")
        self.partitions = pd.Series(parts["num_rows"].to_numpy(), index=parts["Npix"].to_numpy())

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def order(self) -> int:
        return self.info.order

    def pixels_for(self, ra_deg, dec_deg, radius_arcsec: float) -> set[int]:
        """The catalogue pixels (that hold rows) a cone of ``radius_arcsec`` around any position can reach.

        Works at the finest order ``m`` whose pixels are still >= 4 radii wide: the circle around a position
        lies inside its order-``m`` pixel and that pixel's 8 neighbours, which map to catalogue pixels by a
        bit shift. So a position deep inside a catalogue pixel costs one pixel, one near a border two or more.
        Radii wider than a catalogue pixel fall back to a HEALPix cone search per position.
        """
        ra = np.atleast_1d(np.asarray(ra_deg, dtype=np.float64))
        dec = np.atleast_1d(np.asarray(dec_deg, dtype=np.float64))
        if ra.size == 0:
            return set()
        k = self.order
        mean_width_arcsec = float(hp.nside_to_pixel_resolution(1).to_value(u.arcsec))
        m = int(np.floor(np.log2(mean_width_arcsec / (4.0 * max(radius_arcsec, 1e-9)))))
        m = min(m, INDEX_ORDER)
        if m >= k:
            fine = np.unique(healpix29(ra, dec) >> (2 * (INDEX_ORDER - m)))
            # the pixels at the 8 corners of the base faces have only 7 neighbours (the 8th is -1)
            with np.errstate(invalid="ignore"):
                nb = np.asarray(hp.neighbours(fine, 2**m, order="nested"), dtype=np.int64).ravel()
            allpix = np.concatenate([fine, nb[nb >= 0]]) >> (2 * (m - k))
            wanted = np.unique(allpix)
        else:
            radius = radius_arcsec * u.arcsec
            found = [
                hp.healpix_cone_search(r * u.deg, d * u.deg, radius, 2**k, order="nested")
                for r, d in zip(ra, dec, strict=True)
            ]
            wanted = np.unique(np.concatenate(found))
        present = self.partitions.index.intersection(wanted)
        return {int(p) for p in present}

    def load(self, pixels, columns: list[str] | None = None) -> pd.DataFrame:
        """Rows of ``pixels`` (missing ones are skipped), from the per-process cache when there."""
        frames = []
        for p in sorted(int(p) for p in pixels):
            if p not in self.partitions.index:
                continue
            path = pixel_path(self.base, self.order, p)
            frames.append(
                PIXEL_CACHE.get((str(self.base.resolve()), self.order, p), lambda q=path: pd.read_parquet(q))
            )
        if not frames:
            schema = pq.read_schema(self.base / "dataset" / "_common_metadata")
            empty = schema.empty_table().to_pandas()
            return empty if columns is None else empty[columns]
        out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        return out if columns is None else out[columns]

    def cone(self, ra_deg: float, dec_deg: float, radius_arcsec: float) -> pd.DataFrame:
        """Rows within ``radius_arcsec`` of one position, with their distance (``dist_arcsec``)."""
        from features.xmatch import angular_distance_arcsec

        rows = self.load(self.pixels_for([ra_deg], [dec_deg], radius_arcsec))
        d = angular_distance_arcsec(
            ra_deg, dec_deg, rows[self.info.ra_column].to_numpy(), rows[self.info.dec_column].to_numpy()
        )
        keep = d <= radius_arcsec
        return rows[keep].assign(dist_arcsec=d[keep]).sort_values("dist_arcsec").reset_index(drop=True)
