"""Typed columns from decoded Avro values, built once per batch (never a DataFrame per alert).

Column kinds: ``f`` float64 (NaN when missing), ``i`` Int32 / ``l`` Int64 (nullable), ``s`` string, and the
required ones: ``q`` int64 (ids), ``h`` int16 (band ids), ``b`` int8 (the sign of a difference, +1/-1).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

#: ZTF's (and ATLAS's) encodings of a difference's sign.
ISDIFFPOS = {"t": 1, "1": 1, "T": 1, "f": -1, "0": -1, "F": -1}

#: Avro types each column kind accepts from a writer schema: checked once per schema, so that a packet of the
#: wrong shape is dead-lettered instead of breaking a whole batch's column conversion.
ACCEPTS = {
    "f": {"double", "float", "int", "long"},
    "i": {"int", "long"},
    "l": {"int", "long"},
    "q": {"int", "long"},
    "h": {"int", "long"},
    "s": {"string", "enum"},
    "b": {"string", "enum"},
}


def _nullable_int(values: list, dtype: type) -> pd.arrays.IntegerArray:
    try:
        data = np.array(values, dtype=np.int64)
        mask = np.zeros(len(values), dtype=bool)
    except TypeError:  # a None somewhere: the slow path, only for columns that have gaps
        mask = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
        data = np.array([0 if v is None else v for v in values], dtype=np.int64)
    if dtype is np.int32 and (data.size == 0 or (data.min() >= -(2**31) and data.max() < 2**31)):
        data = data.astype(np.int32)
    return pd.arrays.IntegerArray(data, mask)


def column(values: list, kind: str):
    """A typed column from Python values (None = missing) for one of the kinds above."""
    if kind == "f":
        return np.array(values, dtype=np.float64)
    if kind == "q":
        return np.array(values, dtype=np.int64)
    if kind == "h":
        return np.array(values, dtype=np.int16)
    if kind == "b":
        return np.array([ISDIFFPOS[v] for v in values], dtype=np.int8)
    if kind == "i":
        return _nullable_int(values, np.int32)
    if kind == "l":
        return _nullable_int(values, np.int64)
    if kind == "s":
        return pd.array(values, dtype="str")
    raise ValueError(f"unknown column kind {kind!r}")


def fields(rows: list[dict], names: Iterable[tuple[str, str]]) -> dict[str, object]:
    return {name: column([r.get(name) for r in rows], kind) for name, kind in names}
