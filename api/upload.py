"""Positions uploaded as CSV for a cross-match with the broker's objects (``POST /crossmatch``).

An astronomer's list of positions comes from anywhere (a spreadsheet, TOPCAT, a proposal's target list), so the
position columns are found by their usual names (or named with ``ra_col`` / ``dec_col``), the separator is read
from the header line (comma, tab, semicolon or blanks), and sexagesimal positions (``12:34:56.7 -05:06:07``,
``12h34m56.7s``) are read as well as decimal degrees. A row that is not a position refuses the whole upload with
its line number and the reason: nothing is stored, so a refusal loses nothing, while a silently skipped row would be
a target the user believes was searched.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import astropy.units as u
import numpy as np
import pandas as pd
from astropy.coordinates import Angle

from alert_broker.api.data import BadRequest

#: The largest upload read (bytes) and the most positions in one: a few seconds of work, far from the server's
#: memory. Larger lists go in several uploads.
MAX_UPLOAD_BYTES = 5 * 2**20
MAX_POSITIONS = 20_000
#: The most columns an upload may have (each comes back on every matched row).
MAX_COLUMNS = 200
#: Column names taken for the position (compared without case), in this order of preference.
RA_NAMES = ("ra", "raj2000", "_raj2000", "ra_j2000", "ra_deg", "radeg", "ra_icrs", "meanra", "alpha")
DEC_NAMES = ("dec", "dej2000", "_dej2000", "decj2000", "dec_j2000", "dec_deg", "decdeg", "de_icrs", "dec_icrs",
             "meandec", "delta", "de")  # fmt: skip
#: Errors named in a refusal (the first ones; the count says how many there were).
ERRORS_SHOWN = 5
_SEXAGESIMAL = re.compile(r"[:\s hdms°'\"]")
#: The plain sexagesimal forms ("12:34:56.7", "-05 06 07", "+41:08:39.8"), read in one vectorised pass; anything
#: else (unit letters, two fields) goes to astropy's parser one value at a time.
_PLAIN = r"^([+-]?)(\d{1,3})[:\s]+(\d{1,2})[:\s]+(\d{1,2}(?:\.\d*)?)$"


@dataclass(frozen=True)
class Positions:
    """The uploaded rows (as text, in upload order, with their file ``line``) and their positions in degrees."""

    table: pd.DataFrame
    ra: np.ndarray
    dec: np.ndarray
    ra_col: str
    dec_col: str
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.ra)


def decode_text(body: bytes) -> str:
    """The upload as text: UTF-8 (a byte-order mark dropped), else a clear refusal."""
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise BadRequest(f"the upload is not UTF-8 text (byte {err.start}): send a CSV file") from None


def _separator(header: str) -> str:
    counts = {sep: header.count(sep) for sep in (",", "\t", ";")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else r"\s+"


def _column(columns: list[str], given: str | None, names: tuple[str, ...], what: str, flag: str) -> str:
    if given is not None:
        if given in columns:
            return given
        raise BadRequest(f"{flag}={given!r}: no such column (the columns are: {', '.join(columns)[:300]})")
    lower = {c.strip().lower(): c for c in reversed(columns)}
    for name in names:
        if name in lower:
            return lower[name]
    raise BadRequest(
        f"no {what} column: name it {' or '.join(names[:3])} (or {', '.join(names[3:6])}, ...) or say which with "
        f"{flag}= (the columns are: {', '.join(columns)[:300]})"
    )


def _angles(values: pd.Series, lines: np.ndarray, kind: str, errors: list[tuple[int, str]]) -> np.ndarray:
    """Degrees of each value: decimal degrees, or sexagesimal (hours for right ascension, degrees for
    declination; explicit ``h``/``d`` units win). A value that is neither is an error of its line."""
    text = values.astype(str).str.strip()
    out = np.array(pd.to_numeric(text, errors="coerce"), dtype=np.float64)  # a copy: filled in below
    unit = u.hourangle if kind == "ra" else u.deg
    todo = np.flatnonzero(~np.isfinite(out))
    if todo.size:
        parts = text.iloc[todo].str.extract(_PLAIN)
        plain = parts[1].notna().to_numpy()
        if plain.any():
            hit = parts[plain]
            whole, minutes, seconds = (hit[i].astype(np.float64).to_numpy() for i in (1, 2, 3))
            ok = (minutes < 60) & (seconds < 60)
            value = (whole + minutes / 60.0 + seconds / 3600.0) * np.where(
                hit[0].to_numpy() == "-", -1.0, 1.0
            )
            scale = 15.0 if kind == "ra" else 1.0  # right ascension in hours
            rows = todo[plain][ok]
            out[rows] = value[ok] * scale
    for k in np.flatnonzero(~np.isfinite(out)):
        raw = text.iloc[k]
        if not raw:
            errors.append((int(lines[k]), f"{kind} is empty"))
            continue
        if _SEXAGESIMAL.search(raw) and not raw.lower().startswith(("nan", "inf", "-inf")):
            try:
                with warnings.catch_warnings():  # astropy only warns of a minute of 60; here it is an error
                    warnings.simplefilter("error")
                    out[k] = Angle(raw, unit=unit).deg
                continue
            except (ValueError, u.UnitsError, Warning):
                pass
        errors.append((int(lines[k]), f"{kind} {raw[:30]!r} is not an angle (degrees, or sexagesimal)"))
    return out


def parse_positions(text: str, ra_col: str | None = None, dec_col: str | None = None) -> Positions:
    """The positions of a CSV upload (a header line, then one row per position). Raises :class:`BadRequest`
    naming the lines that are not positions (at most :data:`ERRORS_SHOWN`), or what else is wrong."""
    lines_of_text = text.splitlines()
    # the header is the first line that is neither blank nor a comment ('#': an ASCII table's preamble)
    first = next(
        (i for i, line in enumerate(lines_of_text) if line.strip() and not line.startswith("#")), None
    )
    if first is None:
        raise BadRequest(
            "the upload is empty: send a CSV with a header line (e.g. id,ra,dec) and one row per position"
        )
    sep = _separator(lines_of_text[first])
    try:  # header=None: the header line sets the number of fields, so a longer row is an error, not an index
        raw = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=None,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            skiprows=first,
            engine="python" if sep == r"\s+" else "c",
        )
    except (pd.errors.ParserError, UnicodeError, ValueError) as err:
        # pandas counts the skipped lines too: its line numbers are the file's
        raise BadRequest(f"the upload is not a CSV table: {str(err).strip()[:200]}") from None
    if raw.shape[1] > MAX_COLUMNS:
        raise BadRequest(f"{raw.shape[1]} columns: at most {MAX_COLUMNS} (keep an id and the position)")
    table = raw.iloc[1:].fillna("").reset_index(drop=True)
    names = [str(c).strip() or f"column_{i + 1}" for i, c in enumerate(raw.iloc[0].fillna(""))]
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise BadRequest(f"the header names a column twice: {', '.join(repeated)[:200]} (each name once)")
    table.columns = names
    lines = np.arange(len(table)) + first + 2  # the file's line of each row (the header is line first + 1)
    blank = (table == "").all(axis=1).to_numpy() if len(table.columns) else np.zeros(len(table), bool)
    table, lines = table[~blank].reset_index(drop=True), lines[~blank]
    if table.empty:
        raise BadRequest("the upload has a header line and no position")
    if len(table) > MAX_POSITIONS:
        raise BadRequest(f"{len(table)} positions: at most {MAX_POSITIONS} in one upload (split the list)")
    columns = list(table.columns)
    ra_name = _column(columns, ra_col, RA_NAMES, "right ascension", "ra_col")
    dec_name = _column(columns, dec_col, DEC_NAMES, "declination", "dec_col")
    errors: list[tuple[int, str]] = []
    ra = _angles(table[ra_name], lines, "ra", errors)
    dec = _angles(table[dec_name], lines, "dec", errors)
    for k in np.flatnonzero(np.isfinite(dec) & (np.abs(dec) > 90.0)):
        errors.append((int(lines[k]), f"dec {dec[k]:g} is outside [-90, 90] degrees"))
    for k in np.flatnonzero(np.isfinite(ra) & (np.abs(ra) > 360.0)):
        errors.append((int(lines[k]), f"ra {ra[k]:g} is outside [-360, 360] degrees"))
    if errors:
        errors.sort()
        shown = "; ".join(f"line {line}: {why}" for line, why in errors[:ERRORS_SHOWN])
        more = f" (and {len(errors) - ERRORS_SHOWN} more)" if len(errors) > ERRORS_SHOWN else ""
        what = "value is not a position" if len(errors) == 1 else "values are not positions"
        raise BadRequest(f"{len(errors)} {what}: {shown}{more}; nothing was matched")
    return Positions(table, np.mod(ra, 360.0), dec, ra_name, dec_name, lines)


def matched_table(positions: Positions, matches: pd.DataFrame, unmatched: bool = False) -> pd.DataFrame:
    """The uploaded rows beside their matches (``BrokerData.match_positions``): every column of the upload as
    sent, then ``dist_arcsec``, the object's columns and its classes; a row matched by several objects repeats.
    ``unmatched`` keeps the rows without a match too (their match columns empty), in upload order. An upload
    column named like one of ours is renamed ``input_<name>``."""
    ours = [c for c in matches.columns if c != "row"] + ["line"]
    table = positions.table.rename(columns={c: f"input_{c}" for c in positions.table.columns if c in ours})
    table.insert(0, "line", positions.lines)
    rows = matches.drop(columns="row")
    joined = pd.concat([table.iloc[matches["row"].to_numpy()].reset_index(drop=True), rows], axis=1)
    joined.insert(1, "row", matches["row"].to_numpy())
    if unmatched:
        missing = np.setdiff1d(np.arange(len(positions)), matches["row"].to_numpy())
        rest = table.iloc[missing].reset_index(drop=True)
        rest.insert(1, "row", missing)
        joined = pd.concat([joined, rest], ignore_index=True).sort_values("row", kind="stable")
    return joined.drop(columns="row").reset_index(drop=True)
