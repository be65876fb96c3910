"""Watch lists on disk: a CSV of (name, ra, dec, radius_arcsec) imported as a HEALPix-partitioned collection,
like a cross-match catalogue (``storage.catalogs``), so a region task reads only the pixels around its alerts.

``{root}/{name}/`` is the HATS collection; ``{root}/{name}/watchlist.json`` keeps the largest radius (the search
reach) and the number of entries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from alert_broker.features.watchlists import WatchIndex
from alert_broker.storage.catalogs import Catalog, import_catalog, read_table

REQUIRED = ("name", "ra", "dec", "radius_arcsec")
#: Watch lists up to this many entries are held whole in each worker (a k-d tree of ~100 bytes an entry).
IN_MEMORY_ENTRIES = 2_000_000
META_FILE = "watchlist.json"
#: Every entry in one file beside the partitioned collection: what a worker reads to hold a list whole.
ENTRIES_FILE = "entries.parquet"


def import_watchlist(name: str, path: str | Path, root: str | Path, order: int = 3) -> dict:
    """Import a watch list (CSV/Parquet/FITS with columns name, ra, dec, radius_arcsec). Returns its summary."""
    df = read_table(path)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"watch list {path}: missing column(s) {missing}; need {', '.join(REQUIRED)}")
    radius = pd.to_numeric(df["radius_arcsec"], errors="coerce").to_numpy(dtype=float)
    ra = pd.to_numeric(df["ra"], errors="coerce").to_numpy(dtype=float)
    dec = pd.to_numeric(df["dec"], errors="coerce").to_numpy(dtype=float)
    bad = ~(np.isfinite(radius) & (radius > 0) & np.isfinite(ra) & (np.abs(dec) <= 90))
    if bad.any():
        raise ValueError(
            f"watch list {path}: {int(bad.sum())} entries have a bad ra, dec or radius_arcsec (> 0)"
        )
    if df["name"].astype(str).duplicated().any():
        raise ValueError(f"watch list {path}: entry names must be unique")
    max_radius = float(radius.max()) if len(radius) else 0.0
    info = import_catalog(
        name, path, "ra", "dec", root, columns=["name", "radius_arcsec"], id_col="name", order=order,
        margin_arcsec=max(max_radius, 1.0),
    )  # fmt: skip
    summary = {"name": name, "entries": int(info.total_rows), "max_radius_arcsec": max_radius}
    entries = pd.DataFrame(
        {"name": df["name"].astype(str).to_numpy(), "ra": ra, "dec": dec, "radius_arcsec": radius}
    )
    entries.to_parquet(Path(root) / name / ENTRIES_FILE, index=False)
    (Path(root) / name / META_FILE).write_text(json.dumps(summary))
    return summary


@dataclass
class WatchList:
    """Read side: the entries near a set of positions."""

    root: str
    name: str

    def __post_init__(self) -> None:
        self.catalog = Catalog(self.root, self.name)
        meta = Path(self.root) / self.name / META_FILE
        if not meta.is_file():
            raise FileNotFoundError(
                f"{self.root}/{self.name} is a catalogue, not a watch list (no {META_FILE})"
            )
        self.max_radius_arcsec = float(json.loads(meta.read_text())["max_radius_arcsec"])
        self._index: WatchIndex | None = None

    def hits(self, alerts: pd.DataFrame) -> pd.DataFrame:
        """The watch-list hits of ``alerts``. A list of up to ``IN_MEMORY_ENTRIES`` entries is read whole once
        and kept as a k-d tree (a region then costs one tree query); a bigger one is read per region, for the
        pixels around its alerts only."""
        if self.catalog.info.total_rows <= IN_MEMORY_ENTRIES:
            if self._index is None:
                self._index = WatchIndex(pd.read_parquet(Path(self.root) / self.name / ENTRIES_FILE))
            return self._index.hits(alerts, self.name)
        ra, dec = alerts["ra"].to_numpy(dtype=float), alerts["dec"].to_numpy(dtype=float)
        return WatchIndex(self.entries_near(ra, dec)).hits(alerts, self.name)

    def _entries(self, rows: pd.DataFrame) -> pd.DataFrame:
        info = self.catalog.info
        return pd.DataFrame(
            {
                "name": rows["name"].astype(str).to_numpy(),
                "ra": rows[info.ra_column].to_numpy(dtype=float),
                "dec": rows[info.dec_column].to_numpy(dtype=float),
                "radius_arcsec": rows["radius_arcsec"].to_numpy(dtype=float),
            }
        )

    def entries_near(self, ra: np.ndarray, dec: np.ndarray) -> pd.DataFrame:
        """Entries (name, ra, dec, radius_arcsec) of the pixels any of the positions can reach."""
        return self._entries(self.catalog.load(self.catalog.pixels_for(ra, dec, self.max_radius_arcsec)))
