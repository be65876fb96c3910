"""Local cross-match catalogues as HATS catalogue collections: a region task reads only the pixels around its
own objects (no network at run time), and analysts open the same files with ``hats`` and ``lsdb``.

Layout under ``{root}/{name}/``, a HATS collection (see docs/crossmatch.md)::

    collection.properties            obs_collection, hats_primary_table_url, all_margins, default_margin
    {name}/                          the object catalogue
        hats.properties, properties  HATS properties (dataproduct_type=object, hats_nrows, hats_col_ra, ...)
        partition_info.csv           Norder,Npix,num_rows
        catalog_info.json            ours: ra/dec/id columns, order, rows (what :class:`Catalog` reads first)
        dataset/_common_metadata     the Parquet schema
        dataset/_metadata            the Parquet footers of every pixel file
        dataset/Norder={k}/Dir={d}/Npix={p}.parquet   rows of one pixel, sorted by ``_healpix_29``
    {name}_{t}arcs/                  the margin catalogue (dataproduct_type=margin), same layout and schema:
                                     pixel p holds the rows of other pixels that lie within t arcsec of p

Catalogues imported before the collection layout (the object catalogue directly in ``{root}/{name}/``, no
margin) are still read by :class:`Catalog`.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.table import Table
from astropy_healpix import core as hp

from alert_broker.features.xmatch import angular_distance_arcsec
from alert_broker.storage.catshtm import is_catshtm, read_catshtm

#: The HEALPix order of the spatial index column, as HATS (nside = 2**29, nested).
INDEX_ORDER = 29
INDEX_COLUMN = "_healpix_29"
#: Column holding the catalogue's source id when the input has none (its 0-based row number in the file).
ROW_ID_COLUMN = "_row"
#: Rows kept in the per-process pixel cache (env ``BROKER_CATALOG_CACHE_ROWS``).
DEFAULT_CACHE_ROWS = 5_000_000
#: Margin written beside each catalogue (arcsec; hats-import's default too): lsdb's ``crossmatch`` is exact
#: for radii up to it. Our own reader does not need it (it reads the neighbouring pixels instead).
DEFAULT_MARGIN_ARCSEC = 5.0
#: Mean width of an order-0 HEALPix pixel (arcsec); order k pixels are 2**k times narrower.
_ORDER0_WIDTH_ARCSEC = float(hp.nside_to_pixel_resolution(1).to_value(u.arcsec))
#: Files this module writes in a catalogue directory (besides ``dataset/``).
_CATALOG_FILES = ("catalog_info.json", "properties", "hats.properties", "partition_info.csv")


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


def fine_order(radius_arcsec: float) -> int:
    """The finest order whose mean pixel width is still >= 4 radii (at most 29): a circle of that radius
    around a position lies inside the position's pixel at that order and the pixel's 8 neighbours."""
    m = int(np.floor(np.log2(_ORDER0_WIDTH_ARCSEC / (4.0 * max(radius_arcsec, 1e-9)))))
    return min(m, INDEX_ORDER)


def pixel_path(base: Path, order: int, npix: int) -> Path:
    """Where pixel ``npix`` of order ``order`` lives (``Dir`` groups pixels by 10000, as HATS does)."""
    return base / "dataset" / f"Norder={order}" / f"Dir={npix // 10000 * 10000}" / f"Npix={npix}.parquet"


def margin_name(name: str, margin_arcsec: float) -> str:
    """Directory (and HATS name) of a catalogue's margin, as hats-import names them: ``vsx_5arcs``."""
    return f"{name}_{margin_arcsec:g}arcs"


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV, Parquet or FITS table, or a catsHTM catalogue directory (``storage.catshtm``), into pandas
    (only ``columns`` when given)."""
    p = Path(path)
    if is_catshtm(p):
        return read_catshtm(p, columns)
    suffixes = [s.lower() for s in p.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return pd.read_parquet(p, columns=columns)
    if any(s in (".fits", ".fit", ".fts") for s in suffixes):
        table = Table.read(p)
        if columns is not None:
            table = table[columns]
        # multidimensional columns cannot go to pandas; keep only the scalar ones
        scalar = [c for c in table.colnames if len(table[c].shape) <= 1]
        return table[scalar].to_pandas()
    if any(s in (".csv", ".tsv", ".txt") for s in suffixes):
        sep = "\t" if ".tsv" in suffixes else ","
        return pd.read_csv(p, usecols=columns, sep=sep)
    raise ValueError(
        f"{p}: unknown catalogue format (expected .csv, .tsv, .parquet, .fits or a catsHTM directory)"
    )


def import_catalog(
    name: str,
    path: str | Path,
    ra_col: str,
    dec_col: str,
    root: str | Path,
    columns: list[str] | None = None,
    id_col: str | None = None,
    order: int = 5,
    margin_arcsec: float = DEFAULT_MARGIN_ARCSEC,
) -> CatalogInfo:
    """Import a catalogue file as the HATS collection ``{root}/{name}/``: one Parquet file per HEALPix pixel
    of ``order``, plus a margin catalogue of ``margin_arcsec`` (0: none) for lsdb's cross-match.

    Keeps ``ra_col``, ``dec_col``, ``id_col`` (or ``_row``, the row number, when there is none) and ``columns``
    (all columns when None). Strings are stripped of padding (VSX/GCVS types come space-padded). Replaces an
    earlier import of the same name.
    """
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name or ""):
        # HATS lists a collection's margins space-separated: no spaces, commas or slashes in names
        raise ValueError(f"bad catalogue name {name!r}: use letters, digits, '_', '-' or '.', e.g. 'vsx'")
    if not 0 <= order <= 13:
        raise ValueError(f"order must be in [0, 13], got {order}")
    if not np.isfinite(margin_arcsec) or margin_arcsec < 0:
        raise ValueError(f"margin must be >= 0 arcsec, got {margin_arcsec}")
    if margin_arcsec > 0 and fine_order(margin_arcsec) < order:
        raise ValueError(
            f"a {margin_arcsec:g} arcsec margin is wider than a quarter of an order-{order} pixel: "
            "use a lower order or a smaller margin"
        )
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
    table = pa.Table.from_pandas(df, preserve_index=False)

    base = Path(root) / name
    _clear(base)
    PIXEL_CACHE.drop(str(base.resolve()))
    PIXEL_CACHE.drop(str((base / name).resolve()))
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
    common = {
        "hats_col_ra": ra_col,
        "hats_col_dec": dec_col,
        "hats_col_healpix": INDEX_COLUMN,
        "hats_col_healpix_order": INDEX_ORDER,
        "hats_npix_suffix": ".parquet",
        "hats_order": order,
        "hats_builder": "alert-broker storage.catalogs",
        "hats_creation_date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%MUTC"),
        "hats_version": "v1.0",
    }
    primary = base / name
    written = _write_partitions(primary, table, h29 >> (2 * (INDEX_ORDER - order)), order)
    (primary / "catalog_info.json").write_text(json.dumps(asdict(info), indent=2) + "\n")
    _write_properties(
        primary,
        {"obs_collection": name, "dataproduct_type": "object", "hats_nrows": len(df), **common, **written},
    )
    collection = {"obs_collection": name, "hats_primary_table_url": name}
    if margin_arcsec > 0:
        rows, pixels = margin_rows(h29, order, margin_arcsec)
        mname = margin_name(name, margin_arcsec)
        written = _write_partitions(base / mname, table.take(rows), pixels, order)
        _write_properties(
            base / mname,
            {
                "obs_collection": mname,
                "dataproduct_type": "margin",
                "hats_nrows": len(rows),
                "hats_primary_table_url": name,
                "hats_margin_threshold": float(margin_arcsec),
                **common,
                **written,
            },
        )
        collection |= {"all_margins": mname, "default_margin": mname}
    _write_properties(base, collection, files=("collection.properties",), comment="HATS Collection")
    return info


def margin_rows(h29: np.ndarray, order: int, margin_arcsec: float) -> tuple[np.ndarray, np.ndarray]:
    """The margin of every pixel of ``order``: (row index, margin pixel) pairs, sorted by pixel then row.

    ``h29`` must be sorted (rows as :func:`import_catalog` writes them), so each pixel's margin rows come out
    sorted by ``_healpix_29`` too. A row joins the margin of every pixel other than its own that holds a
    neighbour of the row's pixel at the fine order ``m`` (mean width >= 4 margins): a point within
    ``margin_arcsec`` of a pixel lies in a fine pixel adjacent to one inside it. Rows up to about one fine
    pixel farther are included too, which HATS allows (a margin must hold at least the rows within its
    threshold). Only fine pixels on the border of their parent can have neighbours outside it; the nested
    index's bits find them, so only those (a few percent) go through ``neighbours``.
    """
    h29 = np.asarray(h29, dtype=np.int64)
    m = fine_order(margin_arcsec)
    if m < order:
        raise ValueError(f"margin {margin_arcsec:g} arcsec is too wide for order {order}")
    d = m - order
    fine = h29 >> (2 * (INDEX_ORDER - m))
    if fine.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    if np.any(np.diff(fine) < 0):
        raise ValueError("margin_rows needs rows sorted by _healpix_29")
    starts = np.flatnonzero(np.r_[True, fine[1:] != fine[:-1]])
    counts = np.diff(np.r_[starts, fine.size])
    ufine = fine[starts]
    local = (ufine & ((1 << (2 * d)) - 1)).astype(np.uint64)
    x, y = _even_bits(local), _even_bits(local >> np.uint64(1))
    edge = np.uint64((1 << d) - 1)
    border = np.flatnonzero((x == 0) | (y == 0) | (x == edge) | (y == edge))
    cand = ufine[border]
    # the pixels at the 8 corners of the base faces have only 7 neighbours (the 8th is -1)
    with np.errstate(invalid="ignore"):
        nb = np.asarray(hp.neighbours(cand, 2**m, order="nested"), dtype=np.int64).reshape(8, -1)
    parent = nb >> (2 * d)  # -1 stays -1
    outside = (nb >= 0) & (parent != (cand >> (2 * d))[None, :])
    j = np.broadcast_to(np.arange(cand.size), nb.shape)[outside]
    target = parent[outside]
    o = np.lexsort((j, target))
    j, target = j[o], target[o]
    keep = np.r_[True, (j[1:] != j[:-1]) | (target[1:] != target[:-1])][: j.size]
    j, target = j[keep], target[keep]
    s, c = starts[border][j], counts[border][j]
    rows = np.repeat(s - np.cumsum(c) + c, c) + np.arange(int(c.sum()))
    return rows, np.repeat(target, c)


def _even_bits(v: np.ndarray) -> np.ndarray:
    """The even bits of ``v`` packed together: one coordinate of a nested index's (x, y) inside its parent."""
    v = v & np.uint64(0x5555555555555555)
    for shift, mask in (
        (1, 0x3333333333333333),
        (2, 0x0F0F0F0F0F0F0F0F),
        (4, 0x00FF00FF00FF00FF),
        (8, 0x0000FFFF0000FFFF),
        (16, 0x00000000FFFFFFFF),
    ):
        v = (v | (v >> np.uint64(shift))) & np.uint64(mask)
    return v


def _write_partitions(cat_dir: Path, table: pa.Table, npix: np.ndarray, order: int) -> dict:
    """Write the rows of ``table`` (grouped by pixel ``npix``, consecutive) as one file per pixel with the
    HATS metadata files; returns the size properties (``hats_max_rows``, ``hats_estsize`` in KiB)."""
    pixels, starts, counts = np.unique(npix, return_index=True, return_counts=True)
    collector: list = []
    size = 0
    made: set[Path] = set()
    for p, s, n in zip(pixels.tolist(), starts.tolist(), counts.tolist(), strict=True):
        out = pixel_path(cat_dir, order, p)
        if out.parent not in made:
            out.parent.mkdir(parents=True, exist_ok=True)
            made.add(out.parent)
        pq.write_table(
            table.slice(s, n), out, metadata_collector=collector, sorting_columns=[pq.SortingColumn(0)]
        )
        collector[-1].set_file_path(str(out.relative_to(cat_dir / "dataset")))
        size += out.stat().st_size
    (cat_dir / "dataset").mkdir(parents=True, exist_ok=True)
    pq.write_metadata(table.schema, cat_dir / "dataset" / "_common_metadata")
    pq.write_metadata(table.schema, cat_dir / "dataset" / "_metadata", metadata_collector=collector)
    pd.DataFrame({"Norder": order, "Npix": pixels, "num_rows": counts}).to_csv(
        cat_dir / "partition_info.csv", index=False
    )
    return {"hats_max_rows": int(counts.max()) if len(counts) else 0, "hats_estsize": -(-size // 1024)}


def _write_properties(
    directory: Path,
    props: dict,
    files: tuple[str, ...] = ("hats.properties", "properties"),
    comment: str = "HATS catalog",
) -> None:
    """Java-style ``key=value`` properties, as hats writes them (both file names for a catalogue)."""
    text = f"#{comment}\n" + "".join(f"{k}={_escape(v)}\n" for k, v in props.items())
    for f in files:
        (directory / f).write_text(text, encoding="utf-8")


def _escape(value) -> str:
    """A properties value: backslashes and line breaks escaped (column names may hold odd characters)."""
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def read_properties(path: str | Path) -> dict[str, str]:
    """A Java-style properties file as written by hats or by this module (``#`` comments, ``key=value``)."""
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, _, value = line.partition("=")
        if "=" not in line and ":" in line:
            key, _, value = line.partition(":")
        out[key.strip()] = _unescape(value.strip())
    return out


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _clear(base: Path) -> None:
    """Remove an earlier import (only the files and directories this module writes)."""
    dirs = [base]
    coll = base / "collection.properties"
    if coll.is_file():
        props = read_properties(coll)
        names = [props.get("hats_primary_table_url", ""), *props.get("all_margins", "").split()]
        dirs += [base / n for n in names if n and "/" not in n and not n.startswith(".")]
        coll.unlink()
    for d in dirs:
        if (d / "dataset").is_dir():
            for f in sorted((d / "dataset").rglob("*"), reverse=True):
                f.unlink() if f.is_file() else f.rmdir()
            (d / "dataset").rmdir()
        for f in _CATALOG_FILES:
            (d / f).unlink(missing_ok=True)
        if d != base and d.is_dir() and not any(d.iterdir()):
            d.rmdir()


def catalog_dir(path: str | Path) -> Path:
    """The object catalogue inside an imported collection (``{root}/{name}/{name}``), or ``path`` itself
    for a catalogue imported before the collection layout."""
    path = Path(path)
    coll = path / "collection.properties"
    if coll.is_file():
        return path / read_properties(coll)["hats_primary_table_url"]
    return path


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
        #: the collection: what ``lsdb.open_catalog`` / ``hats.read_hats`` open
        self.path = Path(root) / name
        #: the object catalogue (its ``dataset/`` holds the pixel files)
        self.base = catalog_dir(self.path)
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
        m = fine_order(radius_arcsec)
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
        rows = self.load(self.pixels_for([ra_deg], [dec_deg], radius_arcsec))
        d = angular_distance_arcsec(
            ra_deg, dec_deg, rows[self.info.ra_column].to_numpy(), rows[self.info.dec_column].to_numpy()
        )
        keep = d <= radius_arcsec
        return rows[keep].assign(dist_arcsec=d[keep]).sort_values("dist_arcsec").reset_index(drop=True)
