"""ZTF history entries taken as columns: the ``prv_candidates`` and ``fp_hists`` of a batch without one dict
per entry.

Why: building the ~25 history dicts of each alert (and then the tables' columns from them) was most of what
decoding still cost once the compiled reader read the bytes (docs/operations.md). The compiled reader can leave
an array of records in its slabs (``compiled_reader.ItemBlock``); here one compiled pass per alert applies the
per-entry rules of ``surveys.ztf.extract_alert`` to the block's columns, and the batch's tables take whole
columns from all blocks at once.

The contract is the dict path's result, exactly: ``check_history`` accepts a block only when every entry passes
every rule the dict path applies (present, a finite time, a ZTF band; a non-detection in ZTF's era with a
plausible limit; a detection with its required fields, a known ``isdiffpos``, a positive candid and plausible
values). Any entry that the dict path would drop or refuse, or a schema whose fields the columns cannot carry,
returns None and the alert goes the dict way, so every reason and dead letter stays the same. Forced photometry
(``fp_hists``, ~30 points per alert in 4.x packets) goes the same way with its own rules (``check_forced``: a
present entry with a pid > 0, a ZTF band and a time in ZTF's era; its one string, ``procstatus``, read as
ASCII bytes, which is all a block holds).
``tests/unit/test_ztf_history.py`` compares both paths' tables on every real ZTF set and on damaged alerts.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import NamedTuple

import fastavro
import numba
import numpy as np
import pandas as pd

from alert_broker.surveys.columns import column
from alert_broker.surveys.compiled_reader import (
    K_FLOAT,
    K_LONG,
    K_STRING,
    ItemBlock,
    ItemLayout,
    compile_reader,
)

#: The fields the rules read, in the order of the kernel's ``spec`` rows.
RULE_FIELDS = ("jd", "fid", "candid", "diffmaglim", "pid", "ra", "dec", "magpsf", "sigmapsf", "isdiffpos")
_JD, _FID, _CANDID, _LIMIT, _PID, _RA, _DEC, _MAG, _SIG, _SIGN = range(len(RULE_FIELDS))
_ABSENT = -2  # a spec row's union slot for a field the schema does not have (always null)
#: ``isdiffpos`` strings and their sign (``surveys.columns.ISDIFFPOS``), by their one byte (a global array:
#: numba freezes it into the kernel).
_SIGN_OF_BYTE = np.zeros(256, dtype=np.int8)
for _text, _sign in (("t", 1), ("1", 1), ("T", 1), ("f", -1), ("0", -1), ("F", -1)):
    _SIGN_OF_BYTE[ord(_text)] = _sign


class History(NamedTuple):
    """An alert's accepted history entries, as rows of its block: detections first, then non-detections, with
    the keys the batch deduplicates on (as Python values, equal to the dicts')."""

    block: ItemBlock
    signs: np.ndarray  # int8 per row of the block: isdiffpos as +1/-1 (0 for non-detections)
    det_rows: list[int]
    det_candid: list[int]
    nd_rows: list[int]
    nd_fid: list[int]
    nd_jd: list[float]


class Forced(NamedTuple):
    """An alert's forced-photometry points, every one kept, as rows of its block (in order) and their pids."""

    block: ItemBlock
    signs: np.ndarray  # zeros (no sign column here; ``mixed_columns`` gathers one per row)
    rows: list[int]
    pids: list[int]


@numba.njit(cache=True)
def _null(ints, r, spec, k):
    u = spec[k, 0]
    return u == _ABSENT or (u >= 0 and ints[r, u] != spec[k, 1])


@numba.njit(cache=True)
def _value(ints, floats, r, spec, k):
    if spec[k, 2] == K_FLOAT:
        return floats[r, spec[k, 3]]
    return np.float64(ints[r, spec[k, 3]])


@numba.njit(cache=True)
def _check(ints, floats, buf, spec, item_union, bounds, signs, order, key_i, key_f):  # noqa: C901 (the rules)
    """Apply the rules to every row; -1 if one fails, else the number of detections (their rows first in
    ``order``, non-detections after), with ``key_i`` (candid, or fid) and ``key_f`` (jd) in the same order."""
    jd_lo, jd_hi, mag_lo, mag_hi, sig_lo, sig_hi = (
        bounds[0],
        bounds[1],
        bounds[2],
        bounds[3],
        bounds[4],
        bounds[5],
    )
    n = ints.shape[0]
    n_det = 0
    n_nd = 0
    for r in range(n):
        if item_union[0] >= 0 and ints[r, item_union[0]] != item_union[1]:
            return -1  # a null entry
        if _null(ints, r, spec, _JD):
            return -1
        jd = _value(ints, floats, r, spec, _JD)
        if not np.isfinite(jd):
            return -1
        if _null(ints, r, spec, _FID):
            return -1
        fid = ints[r, spec[_FID, 3]]
        if fid < 1 or fid > 3:
            return -1
        if _null(ints, r, spec, _CANDID):  # a non-detection
            if not (jd_lo <= jd < jd_hi):
                return -1
            if not _null(ints, r, spec, _LIMIT):
                limit = _value(ints, floats, r, spec, _LIMIT)
                if not (mag_lo < limit < mag_hi):
                    return -1
            signs[r] = 0
            n_nd += 1
            order[n - n_nd] = r
            key_i[n - n_nd] = fid
            key_f[n - n_nd] = jd
            continue
        for k in (_PID, _RA, _DEC, _MAG, _SIG, _SIGN):
            if _null(ints, r, spec, k):
                return -1
        at = ints[r, spec[_SIGN, 3]]
        if ints[r, spec[_SIGN, 3] + 1] != 1:
            return -1
        sign = _SIGN_OF_BYTE[buf[at]]
        if sign == 0:
            return -1
        candid = ints[r, spec[_CANDID, 3]]
        pid = ints[r, spec[_PID, 3]]
        ra = _value(ints, floats, r, spec, _RA)
        dec = _value(ints, floats, r, spec, _DEC)
        mag = _value(ints, floats, r, spec, _MAG)
        sigma = _value(ints, floats, r, spec, _SIG)
        if not (
            candid > 0
            and jd_lo <= jd < jd_hi
            and 0.0 <= ra < 360.0
            and -90.0 <= dec <= 90.0
            and mag_lo < mag < mag_hi
            and sig_lo < sigma < sig_hi
            and pid > 0
        ):
            return -1
        signs[r] = sign
        order[n_det] = r
        key_i[n_det] = candid
        key_f[n_det] = jd
        n_det += 1
    # the non-detections were filled from the end backwards: put them back in their order
    order[n_det:] = order[n_det:][::-1].copy()
    key_i[n_det:] = key_i[n_det:][::-1].copy()
    key_f[n_det:] = key_f[n_det:][::-1].copy()
    return n_det


#: The fields the forced-photometry rules read, in the order of their kernel's ``spec`` rows.
FORCED_RULE_FIELDS = ("jd", "fid", "pid")


@numba.njit(cache=True)
def _check_forced(ints, floats, spec, item_union, bounds, pids):
    """True when every row passes the forced-photometry rules (``pids`` then filled), False at the first that
    does not: the dict path would refuse the alert or drop the point."""
    jd_lo, jd_hi = bounds[0], bounds[1]
    for r in range(ints.shape[0]):
        if item_union[0] >= 0 and ints[r, item_union[0]] != item_union[1]:
            return False  # a null entry
        if _null(ints, r, spec, 0) or _null(ints, r, spec, 1) or _null(ints, r, spec, 2):
            return False
        jd = _value(ints, floats, r, spec, 0)
        if not (jd_lo <= jd < jd_hi):  # NaN fails too
            return False
        fid = ints[r, spec[1, 3]]
        pid = ints[r, spec[2, 3]]
        if fid < 1 or fid > 3 or pid <= 0:
            return False
        pids[r] = pid
    return True


#: Column kinds the rules accept per field (the schema check, ``surveys.ztf._check_types``, already holds the
#: writer types to these; a layout that differs sends the alert the dict way).
_RULE_KINDS = {
    "jd": (K_FLOAT, K_LONG),
    "fid": (K_LONG,),
    "candid": (K_LONG,),
    "diffmaglim": (K_FLOAT, K_LONG),
    "pid": (K_LONG,),
    "ra": (K_FLOAT, K_LONG),
    "dec": (K_FLOAT, K_LONG),
    "magpsf": (K_FLOAT, K_LONG),
    "sigmapsf": (K_FLOAT, K_LONG),
    "isdiffpos": (K_STRING,),
}
_FORCED_RULE_KINDS = {"jd": (K_FLOAT, K_LONG), "fid": (K_LONG,), "pid": (K_LONG,)}


class _Plan(NamedTuple):
    spec: np.ndarray  # (rule fields, 4) int64
    item_union: np.ndarray  # (2,) int64


class _Rules(NamedTuple):
    """Which fields a kernel reads (its ``spec`` rows, in order), the kinds it reads them as, those a layout must
    have, and the columns taken that may be strings."""

    fields: tuple[str, ...]
    kinds: dict[str, tuple[int, ...]]
    required: frozenset[str]
    strings: frozenset[str]


_HISTORY_RULES = _Rules(
    RULE_FIELDS, _RULE_KINDS, frozenset({"jd", "fid", "isdiffpos"}), frozenset({"isdiffpos"})
)
_FORCED_RULES = _Rules(
    FORCED_RULE_FIELDS, _FORCED_RULE_KINDS, frozenset(FORCED_RULE_FIELDS), frozenset({"procstatus"})
)
_PLANS: dict[tuple[int, tuple[str, ...]], tuple[ItemLayout, _Plan | None]] = {}


def _plan(
    layout: ItemLayout, columns: tuple[str, ...], record_fields: frozenset[str], rules: _Rules
) -> _Plan | None:
    """The kernel's spec for a layout, or None when a column the tables take is not a plain number there (or a
    string where ``rules`` allows one), a field the rules read has another kind, or a field the schema has is
    not in the layout."""
    key = (id(layout), rules.fields)
    got = _PLANS.get(key)
    if got is not None and got[0] is layout:
        return got[1]
    plan: _Plan | None = None
    fields = layout.fields
    ok = all(
        (
            name in fields
            and fields[name][2]
            in ((K_FLOAT, K_LONG, K_STRING) if name in rules.strings else (K_FLOAT, K_LONG))
        )
        or (name not in record_fields)
        for name in columns
    )
    rows = []
    for name in rules.fields:
        if name in fields and fields[name][2] in rules.kinds[name]:
            rows.append(fields[name])
        elif name not in record_fields and name not in rules.required:
            rows.append((_ABSENT, -1, K_LONG, 0))
        else:
            ok = False
            break
    if ok:
        plan = _Plan(np.array(rows, dtype=np.int64), np.array(layout.item_union, dtype=np.int64))
    if len(_PLANS) >= 256:
        _PLANS.clear()
    _PLANS[key] = (layout, plan)
    return plan


def check_history(
    block: ItemBlock, bounds: np.ndarray, columns: tuple[str, ...], record_fields: frozenset[str]
) -> History | None:
    """The block's entries as a ``History`` when every one passes the rules (see the module docstring), else
    None (the caller takes the dict path). ``columns``: the fields the detections table takes from each entry;
    ``record_fields``: every field name of the entries' schema."""
    plan = _plan(block.layout, columns, record_fields, _HISTORY_RULES)
    if plan is None:
        return None
    n = len(block)
    signs = np.zeros(n, dtype=np.int8)
    order = np.empty(n, dtype=np.int64)
    key_i = np.empty(n, dtype=np.int64)
    key_f = np.empty(n, dtype=np.float64)
    buf = np.frombuffer(block.buf, dtype=np.uint8)
    n_det = _check(
        block.ints, block.floats, buf, plan.spec, plan.item_union, bounds, signs, order, key_i, key_f
    )
    if n_det < 0:
        return None
    rows, ki = order.tolist(), key_i.tolist()
    return History(block, signs, rows[:n_det], ki[:n_det], rows[n_det:], ki[n_det:], key_f[n_det:].tolist())


def check_forced(
    block: ItemBlock, bounds: np.ndarray, columns: tuple[str, ...], record_fields: frozenset[str]
) -> Forced | None:
    """The block's forced-photometry points as ``Forced`` when every one is kept by the dict path's rules (see
    the module docstring), else None (the caller takes the dict path, which drops or refuses with a reason)."""
    plan = _plan(block.layout, columns, record_fields, _FORCED_RULES)
    if plan is None:
        return None
    n = len(block)
    pids = np.empty(n, dtype=np.int64)
    if not _check_forced(block.ints, block.floats, plan.spec, plan.item_union, bounds, pids):
        return None
    return Forced(block, np.zeros(n, dtype=np.int8), list(range(n)), pids.tolist())


# ------------------------------------------------------------------------------------------- columns
def _gather(histories: Sequence[History | Forced], positions: np.ndarray, refs: np.ndarray) -> list[tuple]:
    """The rows ``refs`` ((history index, row) pairs, at ``positions`` of the table) grouped by layout: (layout,
    table positions, int rows, float rows, signs, history indices), with one concatenation of the layout's
    blocks and one fancy index into it per layout."""
    if len(refs) == 0:
        return []
    layout_ids: dict[int, int] = {}
    layouts: list[ItemLayout] = []
    kind = np.empty(len(histories), dtype=np.int64)  # each history's layout, numbered
    for b, h in enumerate(histories):
        layout = h.block.layout
        k = layout_ids.get(id(layout))
        if k is None:
            k = layout_ids[id(layout)] = len(layouts)
            layouts.append(layout)
        kind[b] = k
    of = kind[refs[:, 0]]
    out = []
    for k, layout in enumerate(layouts):
        members = np.flatnonzero(kind == k)
        sel = np.flatnonzero(of == k) if len(layouts) > 1 else np.arange(len(refs))
        if len(sel) == 0:
            continue
        sizes = np.array([len(histories[b].block) for b in members.tolist()], dtype=np.int64)
        start = np.zeros(len(histories), dtype=np.int64)
        start[members] = np.cumsum(sizes) - sizes
        idx = start[refs[sel, 0]] + refs[sel, 1]
        blocks = [histories[b] for b in members.tolist()]
        out.append(
            (
                layout,
                positions[sel],
                np.concatenate([h.block.ints for h in blocks])[idx],
                np.concatenate([h.block.floats for h in blocks])[idx],
                np.concatenate([h.signs for h in blocks])[idx],
                refs[sel, 0],
            )
        )
    return out


def _strings(
    name: str,
    n: int,
    dict_pos: list[int],
    dict_rows: list,
    groups: list[tuple],
    histories: Sequence[History | Forced],
) -> list:
    """A string column's values (None when null), from the dicts and from the blocks' bytes (ASCII: a block
    holds no other text, ``compiled_reader.ItemBlock``)."""
    values: list = [None] * n
    for i, r in zip(dict_pos, dict_rows, strict=True):
        values[i] = r.get(name)
    for layout, positions, mi, _mf, _signs, blocks in groups:
        entry = layout.fields.get(name)
        if entry is None:  # the schema has no such field: null
            continue
        u, branch, k, slot = entry
        if k != K_STRING:
            raise ValueError(f"column {name!r} is not a string in its history block")
        null = (mi[:, u] != branch).tolist() if u >= 0 else [False] * len(positions)
        bufs = [histories[b].block.buf for b in blocks.tolist()]
        for pos, buf, at, size, missing in zip(
            positions.tolist(), bufs, mi[:, slot].tolist(), mi[:, slot + 1].tolist(), null, strict=True
        ):
            if not missing:
                values[pos] = buf[at : at + size].decode("ascii")
    return values


_NUMPY_KINDS = {"f": np.float64, "h": np.int16, "q": np.int64, "b": np.int8}


def mixed_columns(
    rows: list, histories: Sequence[History | Forced], names: list[tuple[str, str]]
) -> dict[str, object]:
    """``surveys.columns.fields`` for a table whose rows are dicts or ``(history index, row)`` references into
    ``histories``' blocks: the same columns, values and dtypes as if every row were its dict."""
    n = len(rows)
    is_ref = np.fromiter((type(r) is tuple for r in rows), dtype=bool, count=n)
    dict_pos = np.flatnonzero(~is_ref).tolist()
    dict_rows = [rows[i] for i in dict_pos]
    ref_pos = np.flatnonzero(is_ref)
    refs = np.array([rows[i] for i in ref_pos.tolist()], dtype=np.int64).reshape(len(ref_pos), 2)
    groups = _gather(histories, ref_pos, refs)
    out: dict[str, object] = {}
    for name, kind in names:
        if kind == "s":
            out[name] = column(_strings(name, n, dict_pos, dict_rows, groups, histories), "s")
            continue
        from_dicts = column([r.get(name) for r in dict_rows], kind)
        parts = []
        for layout, positions, mi, mf, signs, _blocks in groups:
            entry = layout.fields.get(name)
            if entry is None:  # the schema has no such field: null
                parts.append((positions, np.zeros(len(positions), np.int64), np.ones(len(positions), bool)))
                continue
            u, branch, k, slot = entry
            if k == K_STRING and kind != "b":
                raise ValueError(f"column {name!r} is a string in its history block, not of kind {kind!r}")
            null = mi[:, u] != branch if u >= 0 else np.zeros(len(positions), bool)
            if kind == "b":
                values = signs
            else:
                values = mf[:, slot] if k == K_FLOAT else mi[:, slot]
            parts.append((positions, values, null))
        if kind in _NUMPY_KINDS:
            col = np.empty(n, dtype=_NUMPY_KINDS[kind])
            col[dict_pos] = from_dicts
            for positions, values, null in parts:
                col[positions] = np.where(null, np.nan, values) if kind == "f" else values
        elif kind in ("i", "l"):
            data = np.zeros(n, dtype=np.int64)
            mask = np.zeros(n, dtype=bool)
            data[dict_pos] = from_dicts.to_numpy(dtype=np.int64, na_value=0)
            mask[dict_pos] = from_dicts.isna()
            for positions, values, null in parts:
                data[positions] = np.where(null, 0, values)
                mask[positions] = null
            if kind == "i" and (data.size == 0 or (data.min() >= -(2**31) and data.max() < 2**31)):
                data = data.astype(np.int32)  # as surveys.columns does for an int column that fits
            col = pd.arrays.IntegerArray(data, mask)
        else:
            raise ValueError(f"column kind {kind!r} is not taken from history blocks")
        out[name] = col
    return out


_WARM_UP_ITEM = {
    "type": "record",
    "name": "prv_candidate",
    "fields": [
        {"name": "jd", "type": "double"},
        {"name": "fid", "type": "int"},
        {"name": "pid", "type": "long"},
        {"name": "diffmaglim", "type": ["float", "null"]},
        {"name": "candid", "type": ["null", "long"]},
        {"name": "isdiffpos", "type": ["null", "string"]},
        {"name": "ra", "type": ["null", "double"]},
        {"name": "dec", "type": ["null", "double"]},
        {"name": "magpsf", "type": ["null", "float"]},
        {"name": "sigmapsf", "type": ["null", "float"]},
    ],
}


_WARM_UP_FORCED = {
    "type": "record",
    "name": "fp_hist",
    "fields": [
        {"name": "fid", "type": "int"},
        {"name": "pid", "type": "long"},
        {"name": "jd", "type": "double"},
        {"name": "procstatus", "type": ["null", "string"]},
    ],
}


def warm_up() -> None:
    """Compile the rules' kernels (or load them from numba's cache) with the argument types real blocks give."""
    schema = {
        "type": "record",
        "name": "alert",
        "fields": [
            {"name": "prv_candidates", "type": {"type": "array", "items": _WARM_UP_ITEM}},
            {"name": "fp_hists", "type": {"type": "array", "items": _WARM_UP_FORCED}},
        ],
    }
    reader = compile_reader(schema, frozenset({"prv_candidates", "fp_hists"}))
    assert reader is not None
    out = io.BytesIO()
    entry = {"jd": 2459000.5, "fid": 1, "pid": 1, "diffmaglim": 20.0, "candid": 5, "isdiffpos": "t", "ra": 1.0,
             "dec": 1.0, "magpsf": 18.0, "sigmapsf": 0.1}  # fmt: skip
    forced = {"fid": 2, "pid": 7, "jd": 2459000.5, "procstatus": "0"}
    record = {"prv_candidates": [entry], "fp_hists": [forced]}
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    got = reader.read(out.getvalue())
    assert got is not None
    bounds = np.array([2458000.5, 2488069.5, 5.0, 30.0, 0.0, 10.0])
    fields = frozenset(f["name"] for f in _WARM_UP_ITEM["fields"])
    history = check_history(got[0]["prv_candidates"], bounds, ("ra", "dec", "magpsf"), fields)
    if history is None or history.det_candid != [5]:
        raise RuntimeError("the ZTF history rules misread their warm-up entry")
    fp_fields = frozenset(f["name"] for f in _WARM_UP_FORCED["fields"])
    points = check_forced(got[0]["fp_hists"], bounds, ("jd", "fid", "pid", "procstatus"), fp_fields)
    if points is None or points.pids != [7]:
        raise RuntimeError("the ZTF forced-photometry rules misread their warm-up point")
