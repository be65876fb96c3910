"""Read a catalogue in catsHTM's layout (Soumagnac & Ofek 2018), the format ALeRCE's cross-match service serves
its catalogues in, so that ``broker catalog import`` takes a catsHTM directory as it is.

A catsHTM catalogue ``NAME`` is a directory holding
- ``NAME_htmColCell.mat``: MATLAB (v5) file with ``ColCell`` (the column names) and ``ColUnits`` (their units);
- ``NAME_htm.hdf5``: the hierarchical triangular mesh index, dataset ``NAME_HTM`` of 13 rows per trixel (level,
  father, sons, the three poles, and ``Nsrc``, the sources stored for the trixel);
- ``NAME_htm_NNNN00.hdf5``: the sources, one dataset ``htm_NNNNNN`` per trixel (its index in the mesh, 1-based),
  stored column-major: shape (columns, rows), and ``htm_NNNNNN_Ind`` (a search aid, not read here).
RA and Dec come first, in radians. Here every column whose unit is ``rad`` becomes degrees (the unit ``import``
expects), a name given twice gets its 1-based column number appended (AKARI names its position errors ``RA`` and
``Dec`` again), and each trixel's rows are checked against the index's ``Nsrc``: a file cut short or of another
catalogue is an error, while data files absent altogether (a subset copied, as in the shared samples) are allowed
and logged with how many sources the index lists.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

_DATASET = re.compile(r"^htm_(\d+)$")


@dataclass(frozen=True)
class CatsHTM:
    """What a catsHTM directory holds: its name, columns, units, and the sources its index lists."""

    name: str
    columns: list[str]
    units: list[str]
    counts: np.ndarray | None  # sources per trixel (position = trixel index - 1); None without an index file

    @property
    def listed(self) -> int | None:
        """The sources the HTM index lists."""
        return None if self.counts is None else int(np.nansum(self.counts))


def is_catshtm(path: str | Path) -> bool:
    """A directory with a ``*_htmColCell.mat``."""
    p = Path(path)
    return p.is_dir() and any(p.glob("*_htmColCell.mat"))


def _cell_strings(cell: np.ndarray) -> list[str]:
    return [str(np.ravel(c)[0]) if np.size(c) else "" for c in np.ravel(cell)]


def describe(path: str | Path) -> CatsHTM:
    """The catalogue's name, column names (made unique) and units, and the sources its index lists."""
    from scipy.io import loadmat  # lazy: scipy.io only for catsHTM imports

    p = Path(path)
    mats = sorted(p.glob("*_htmColCell.mat"))
    if len(mats) != 1:
        raise ValueError(f"{p}: a catsHTM catalogue has one *_htmColCell.mat, found {len(mats)}")
    name = mats[0].name[: -len("_htmColCell.mat")]
    mat = loadmat(mats[0])
    if "ColCell" not in mat:
        raise ValueError(f"{mats[0]}: no ColCell (the column names)")
    raw = _cell_strings(mat["ColCell"])
    units = _cell_strings(mat["ColUnits"]) if "ColUnits" in mat else [""] * len(raw)
    columns = [c if raw.index(c) == i else f"{c}_{i + 1}" for i, c in enumerate(raw)]
    index = p / f"{name}_htm.hdf5"
    return CatsHTM(name, columns, units, _index_counts(index, name) if index.exists() else None)


def _index_counts(index: Path, name: str) -> np.ndarray:
    """``Nsrc`` per trixel (position = trixel index - 1) from the HTM index."""
    import h5py  # lazy: h5py only for catsHTM imports

    with h5py.File(index, "r") as f:
        key = f"{name}_HTM"
        if key not in f:
            raise ValueError(f"{index}: no dataset {key}")
        table = f[key]
        names = [table.attrs.get(f"Table.Col.{i + 1}", b"") for i in range(table.shape[0])]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        row = names.index("Nsrc") if "Nsrc" in names else 12
        return np.asarray(table[row, :], dtype=np.float64)


def read_catshtm(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Every source in the catsHTM directory ``path`` as one table (``columns`` only, when given), columns in
    radians converted to degrees; trixels in mesh order, rows as stored."""
    import h5py  # lazy: h5py only for catsHTM imports

    p = Path(path)
    info = describe(p)
    counts = info.counts
    wanted = list(range(len(info.columns)))
    if columns is not None:
        missing = [c for c in columns if c not in info.columns]
        if missing:
            raise ValueError(f"{p}: no column {', '.join(missing)} (it has: {', '.join(info.columns)})")
        wanted = [info.columns.index(c) for c in columns]
    blocks: list[np.ndarray] = []
    files = sorted(f for f in p.glob(f"{info.name}_htm_*.hdf5"))
    for file in files:
        with h5py.File(file, "r") as f:
            for key in sorted(f.keys()):
                m = _DATASET.match(key)
                if not m:
                    continue
                data = f[key]
                if data.shape[0] != len(info.columns):
                    raise ValueError(
                        f"{file.name}/{key}: {data.shape[0]} columns, the catalogue's ColCell names {len(info.columns)}"
                    )
                trixel = int(m.group(1))
                if counts is not None and trixel <= counts.size and data.shape[1] != counts[trixel - 1]:
                    raise ValueError(
                        f"{file.name}/{key}: {data.shape[1]} sources, the index lists {counts[trixel - 1]:g}"
                    )
                blocks.append(np.asarray(data[...], dtype=np.float64)[wanted].T)
    if not files:
        raise ValueError(f"{p}: no {info.name}_htm_*.hdf5 data file")
    values = np.concatenate(blocks) if blocks else np.empty((0, len(wanted)))
    frame = pd.DataFrame(values, columns=[info.columns[i] for i in wanted])
    for i in wanted:
        if info.units[i].strip().lower() in ("rad", "radian", "radians"):
            frame[info.columns[i]] = np.degrees(frame[info.columns[i]].to_numpy())
    if info.listed is not None and len(frame) < info.listed:
        log.warning(
            "catsHTM %s: %d of the %d sources its index lists (the other data files are not in %s)",
            info.name, len(frame), info.listed, p,
        )  # fmt: skip
    return frame
