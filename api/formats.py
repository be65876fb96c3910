"""Tables the API answers with, as files an astronomer opens elsewhere: CSV (pandas, spreadsheets) or a VOTable
(TOPCAT, Aladin, astropy), with units and UCDs so that TOPCAT finds the positions and times on its own.

Pure: rows in (the JSON-ready dicts :func:`alert_broker.api.data.records` makes), bytes out; ``app`` picks the
endpoint's rows and the file name. The CSV holds exactly the JSON's values (64-bit ids as digits, null as an empty
field, floats written so they read back to the same double); the VOTable turns the ids back into 64-bit integers.
A value that is itself a list or a mapping (a run's settings) is written as JSON text in both.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from astropy.io.votable import from_table
from astropy.io.votable.tree import Info
from astropy.table import MaskedColumn, Table

#: The formats a tabular endpoint answers in (``format=``); ``json`` is the endpoint's own document.
TableFormat = Literal["json", "csv", "votable"]
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "votable": "application/x-votable+xml",
}
EXTENSIONS = {"csv": "csv", "votable": "vot"}

#: Columns that hold a 64-bit integer id (sent as text in JSON, since JavaScript numbers lose them past 2**53).
ID_COLUMNS = ("candid", "parent_candid", "pid", "diaObjectId", "ssObjectId", "objectidps1", "first_candid",
              "last_candid")  # fmt: skip

_MAG = ("mag", "phot.mag")
_MAG_ERR = ("mag", "stat.error;phot.mag")
#: Units (VOUnit spelling) and UCDs of the columns the API serves; a column not named here gets neither.
COLUMN_META: dict[str, tuple[str | None, str]] = {
    "oid": (None, "meta.id"),
    "candid": (None, "meta.id"),
    "ra": ("deg", "pos.eq.ra"),
    "dec": ("deg", "pos.eq.dec"),
    "meanra": ("deg", "pos.eq.ra"),
    "meandec": ("deg", "pos.eq.dec"),
    "mjd": ("d", "time.epoch"),
    "firstmjd": ("d", "time.start"),
    "lastmjd": ("d", "time.end"),
    "deltajd": ("d", "time.duration"),
    "magpsf": _MAG,
    "sigmapsf": _MAG_ERR,
    "magpsf_corr": _MAG,
    "sigmapsf_corr": _MAG_ERR,
    "sigmapsf_corr_ext": _MAG_ERR,
    "diffmaglim": ("mag", "phot.mag;stat.max"),
    "magmean": _MAG,
    "magmedian": _MAG,
    "magmax": _MAG,
    "magmin": _MAG,
    "magsigma": ("mag", "stat.stdev;phot.mag"),
    "maglast": _MAG,
    "magfirst": _MAG,
    "flux": ("nJy", "phot.flux.density"),
    "flux_err": ("nJy", "stat.error;phot.flux.density"),
    "dist_arcsec": ("arcsec", "pos.angDistance"),
    "distnr": ("arcsec", "pos.angDistance"),
    "probability": (None, "stat.probability"),
    "fid": (None, "meta.code;instr.filter"),
    "band": (None, "instr.bandpass"),
}


def frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """``rows`` as a table: columns in first-seen order (rows may differ in their keys: the missing ones are
    null), lists and mappings as JSON text."""
    rows = list(rows)
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    # object columns keep each value as it came (an integer column with a null stays integers)
    return pd.DataFrame(
        {name: pd.Series([_cell(row.get(name)) for row in rows], dtype=object) for name in columns},
        columns=list(columns),
    )


def _cell(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list | tuple) else value


def to_csv(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """A CSV file of ``rows``: a header line, null as an empty field, floats at full precision."""
    return frame(rows).to_csv(index=False).encode()


def _column(name: str, values: pd.Series) -> np.ma.MaskedArray:
    """One column typed for a VOTable: ids and integers as int64, numbers as float64 (null NaN), booleans as
    booleans, anything else as text; nulls masked."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    mask = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in values], dtype=bool)
    if name in ID_COLUMNS and all(isinstance(v, str | int) and str(v).lstrip("-").isdigit() for v in present):
        data = np.array([int(v) if not m else 0 for v, m in zip(values, mask, strict=True)], dtype=np.int64)
        return np.ma.MaskedArray(data, mask=mask)
    if present and all(isinstance(v, bool | np.bool_) for v in present):
        data = np.array([bool(v) if not m else False for v, m in zip(values, mask, strict=True)], dtype=bool)
        return np.ma.MaskedArray(data, mask=mask)
    if present and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in present):
        data = np.array([int(v) if not m else 0 for v, m in zip(values, mask, strict=True)], dtype=np.int64)
        return np.ma.MaskedArray(data, mask=mask)
    if present and all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in present):
        data = np.array(
            [float(v) if not m else np.nan for v, m in zip(values, mask, strict=True)], dtype=np.float64
        )
        return np.ma.MaskedArray(data, mask=mask)
    text = np.array(["" if m else str(v) for v, m in zip(values, mask, strict=True)], dtype=str)
    if text.dtype.itemsize == 0:  # every value null: a one-character column
        text = text.astype("<U1")
    return np.ma.MaskedArray(text, mask=mask)


def _main_position(columns: Iterable[str]) -> tuple[str, str] | None:
    """The position columns TOPCAT should plot: the row's own (ra, dec), else the object's mean."""
    names = set(columns)
    for pair in (("ra", "dec"), ("meanra", "meandec")):
        if set(pair) <= names:
            return pair
    return None


def to_votable(
    rows: Iterable[Mapping[str, Any]],
    name: str,
    description: str = "",
    params: Mapping[str, Any] | None = None,
) -> bytes:
    """A VOTable 1.4 document (TABLEDATA) of ``rows`` named ``name``, its query ``params`` as INFO elements,
    units and UCDs from :data:`COLUMN_META` (the main position and the object id marked ``meta.main``)."""
    table = frame(rows)
    main = _main_position(table.columns)
    columns = []
    for column in table.columns:
        unit, ucd = COLUMN_META.get(column, (None, None))
        if ucd and main and column in main:
            ucd = f"{ucd};meta.main"
        if column == "oid" and ucd:
            ucd = "meta.id;meta.main"
        values = _column(column, table[column])
        meta = {"ucd": ucd} if ucd else {}
        columns.append(MaskedColumn(values, name=column, unit=unit, meta=meta))
    astropy_table = Table(columns) if columns else Table()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's notes on unit spellings; the units above are VOUnits
        document = from_table(astropy_table)
    resource = document.resources[0]
    votable = document.get_first_table()
    votable.name = name
    if description:
        votable.description = description
    for field, column in zip(votable.fields, columns, strict=True):
        if column.meta.get("ucd"):
            field.ucd = column.meta["ucd"]
        if column.dtype == bool:
            field.datatype = "boolean"  # astropy writes "bit", which has no null
    for key, value in (params or {}).items():
        if value is None:
            continue
        text = json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)
        resource.infos.append(Info(name=str(key), value=text))
    out = io.BytesIO()
    document.to_xml(out, tabledata_format="tabledata")
    return out.getvalue()


def render(
    fmt: str,
    rows: Iterable[Mapping[str, Any]],
    name: str,
    description: str = "",
    params: Mapping[str, Any] | None = None,
) -> tuple[bytes, str, str]:
    """``rows`` as ``fmt`` (``csv`` or ``votable``): the body, its media type and the file name to save it as."""
    if fmt == "csv":
        body = to_csv(rows)
    elif fmt == "votable":
        body = to_votable(rows, name, description, params)
    else:
        raise ValueError(f"no file format {fmt!r} (csv or votable)")
    return body, MEDIA_TYPES[fmt], f"{name}.{EXTENSIONS[fmt]}"


def stacked(
    parts: Mapping[str, Iterable[Mapping[str, Any]]], key: str, sort_by: str | None = None
) -> list[dict]:
    """One table of several lists of rows (a light curve's detections, limits and forced photometry; a cone's
    catalogues), each row led by ``key`` = the name of its list; ordered by ``sort_by`` when every row has it."""
    rows = [{key: part, **row} for part, part_rows in parts.items() for row in part_rows]
    if sort_by and all(row.get(sort_by) is not None for row in rows):
        rows.sort(key=lambda row: row[sort_by])  # stable: ties keep the parts' order
    return rows
