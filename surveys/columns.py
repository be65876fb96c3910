"""Typed columns from decoded Avro values, built once per batch (never a DataFrame per alert).

Column kinds: ``f`` float64 (NaN when missing), ``i`` Int32 / ``l`` Int64 (nullable), ``s`` string, ``t``
boolean (nullable), and the required ones: ``q`` int64 (ids), ``h`` int16 (band ids), ``b`` int8 (the sign of a difference, +1/-1).
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
    "t": {"boolean"},
}

#: The column kind of each Avro primitive type (for surveys whose fields we take as the schema declares them);
#: ``T`` is a timestamp (UTC), for longs with a ``timestamp-*`` logical type.
KIND_OF_AVRO = {"double": "f", "float": "f", "int": "i", "long": "l", "string": "s", "boolean": "t"}


def _clean(value: object, kind: str) -> object:
    """A value of the kind's Python type, or None (a field whose writer type differs from the expected one)."""
    if value is None:
        return None
    if kind == "f":
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    if kind in ("i", "l", "q", "h"):
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if kind == "t":
        return value if isinstance(value, bool) else None
    if kind == "s":
        return value if isinstance(value, str) else str(value)
    return value


def lenient_column(values: list, kind: str):
    """``column`` for fields whose writer types are not checked up front: values of another type become
    missing instead of failing the whole batch's conversion."""
    try:
        return column(values, kind)
    except (TypeError, ValueError, OverflowError):
        return column([_clean(v, kind) for v in values], kind)


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
    if kind == "t":
        return pd.array(values, dtype="boolean")
    if kind == "T":
        return pd.to_datetime(pd.Series(values, dtype=object), utc=True, errors="coerce").array
    raise ValueError(f"unknown column kind {kind!r}")


def fields(rows: list[dict], names: Iterable[tuple[str, str]]) -> dict[str, object]:
    return {name: column([r.get(name) for r in rows], kind) for name, kind in names}


def band_names(fid: np.ndarray, bands: dict[int, str]) -> pd.api.extensions.ExtensionArray:
    """The band name of each band id (``None`` for an id the survey does not have)."""
    fid = np.asarray(fid)
    names = np.empty(len(fid), dtype=object)
    names[:] = None
    for value, name in bands.items():
        names[fid == value] = name
    return pd.array(names, dtype="str")


#: AB magnitude of a flux in nJy: m = 31.4 - 2.5 log10(f / nJy).
AB_ZERO_POINT_NJY = 31.4


def difference_flux(mag: np.ndarray, sigma: np.ndarray, sign: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The signed difference flux (nJy) and its error from a difference magnitude, its error and the sign of
    the difference (ZTF's ``magpsf``, ``sigmapsf``, ``isdiffpos``): one unit for every survey's light curve."""
    mag = np.asarray(mag, dtype=np.float64)
    flux = np.asarray(sign, dtype=np.float64) * np.power(10.0, -0.4 * (mag - AB_ZERO_POINT_NJY))
    return flux, np.abs(flux) * np.asarray(sigma, dtype=np.float64) / (2.5 / np.log(10.0))
