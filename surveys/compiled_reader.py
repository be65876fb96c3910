"""A compiled reader for Avro records: the same Python records as ``fastavro.schemaless_reader``, ~3.5x faster.

Why: decoding is the largest single cost of the pipeline (40 % of the workers' CPU on a stream), and nine tenths
of it is fastavro building the ~25 history entries of each ZTF alert (``prv_candidates``: ~45 fields each,
every value dispatched on its schema type at run time). Here a writer schema is compiled once into a flat
program that a numba kernel runs over the datum's bytes, writing every value into two slabs (integers and
floats); generated Python code then builds the record's dicts from those slabs in one pass, with no type
dispatch left.

The contract is strict: a record read here equals the one fastavro reads (same keys in schema order, same
values and types). Anything the kernel is unsure of (a truncated or damaged datum, a bad union index, a boolean
byte other than 0 or 1, a varint past 64 bits, text that is not UTF-8, a value fastavro's logical-type
conversion refuses) returns ``None`` and the caller reads the record with fastavro, so its errors (and their
messages) are fastavro's. Schemas with types this reader does not handle (enums, fixed, decimals, arrays or maps
nested in array or map items) get no program and are read by fastavro.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, NamedTuple

import numba
import numpy as np
from fastavro.read import LOGICAL_READERS

# op codes of the program (rows of 5 int64: op, a, b, c, d)
_RET, _BOOL, _LONG, _FLOAT, _DOUBLE, _BYTES, _UNION, _BRANCH, _ARRAY, _END_ITEM = range(10)
_OK, _BAD, _MORE = 0, 1, 2
#: Leaves a schema may have before it is left to fastavro (ZTF's: ~260; generated code stays small).
MAX_LEAVES = 4096
#: Slots (8 bytes each, in two slabs) a thread keeps between records (a ZTF alert needs ~2000), and the most
#: one record may use before fastavro reads it instead (a record of millions of values).
KEEP_SLOTS = 2**20
MAX_SLOTS = 2**24
_STACK = 64


@numba.njit(cache=True)
def _varint(buf, pos, end):
    """(zig-zag decoded value, next pos), next pos -1 when the bytes end or the varint runs past 10 bytes."""
    n = np.uint64(0)
    shift = np.uint64(0)
    for _ in range(10):
        if pos >= end:
            return np.int64(0), -1
        b = np.uint64(buf[pos])
        pos += 1
        if shift == np.uint64(63) and b > np.uint64(1):  # bits past 64: fastavro decides what that means
            return np.int64(0), -1
        n |= (b & np.uint64(0x7F)) << shift
        if not b & np.uint64(0x80):
            value = np.int64(n >> np.uint64(1)) ^ -np.int64(n & np.uint64(1))
            return value, pos
        shift += np.uint64(7)
    return np.int64(0), -1


@numba.njit(cache=True)
def _run(buf, pos, end, ops, ints, floats, k_int0, k_float0, scratch):  # noqa: C901 (one interpreter loop)
    """Run ``ops`` over ``buf[pos:end]``: (status, next pos, ints used, floats used)."""
    f4 = scratch[:4].view(np.float32)
    f8 = scratch.view(np.float64)
    ret = np.empty(_STACK, np.int64)
    frames = np.empty(
        (8, 6), np.int64
    )  # saved ibase, fbase, items left in the block, array op pc, count slot
    sp = 0
    fp = 0
    if k_int0 > ints.shape[0] or k_float0 > floats.shape[0]:
        return _MORE, pos, 0, 0
    ibase = 0
    fbase = 0
    itop = k_int0
    ftop = k_float0
    pc = 0
    n_ops = ops.shape[0]
    while pc < n_ops:
        op = ops[pc, 0]
        a = ops[pc, 1]
        if op == _LONG:
            v, pos = _varint(buf, pos, end)
            if pos < 0:
                return _BAD, pos, 0, 0
            ints[ibase + a] = v
            pc += 1
        elif op == _DOUBLE:
            if pos + 8 > end:
                return _BAD, pos, 0, 0
            for j in range(8):
                scratch[j] = buf[pos + j]
            floats[fbase + a] = f8[0]
            pos += 8
            pc += 1
        elif op == _FLOAT:
            if pos + 4 > end:
                return _BAD, pos, 0, 0
            for j in range(4):
                scratch[j] = buf[pos + j]
            floats[fbase + a] = np.float64(f4[0])
            pos += 4
            pc += 1
        elif op == _BYTES:
            n, pos = _varint(buf, pos, end)
            if pos < 0 or n < 0 or n > end - pos:  # (pos + n could overflow for a hostile length)
                return _BAD, pos, 0, 0
            ints[ibase + a] = pos
            ints[ibase + a + 1] = n
            pos += n
            pc += 1
        elif op == _UNION:
            k, pos = _varint(buf, pos, end)
            if pos < 0 or k < 0 or k >= ops[pc, 2] or sp >= _STACK:
                return _BAD, pos, 0, 0
            ints[ibase + a] = k
            ret[sp] = ops[pc, 3]
            sp += 1
            pc = ops[pc + 1 + k, 1]
        elif op == _RET:
            sp -= 1
            pc = ret[sp]
        elif op == _BOOL:
            if pos >= end or buf[pos] > 1:
                return _BAD, pos, 0, 0
            ints[ibase + a] = buf[pos]
            pos += 1
            pc += 1
        elif op >= _ARRAY:  # _ARRAY or _END_ITEM
            if op == _ARRAY:
                # a: slot of the item count (then the items' int and float offsets); b, c: an item's ints and
                # floats; d: pc of the END_ITEM op
                ints[ibase + a] = 0
                ints[ibase + a + 1] = itop
                ints[ibase + a + 2] = ftop
                if fp >= 8:
                    return _BAD, pos, 0, 0
                frames[fp, 0] = ibase
                frames[fp, 1] = fbase
                frames[fp, 2] = 0
                frames[fp, 3] = pc
                fp += 1
            top = fp - 1
            start = frames[top, 3]
            left = frames[top, 2]
            if left == 0:  # the block is done (or none was read yet): the next block's count
                count, pos = _varint(buf, pos, end)
                if pos < 0:
                    return _BAD, pos, 0, 0
                if count < 0:
                    count = -count
                    _, pos = _varint(buf, pos, end)  # the block's byte size
                    if pos < 0:
                        return _BAD, pos, 0, 0
                if count > end - pos:  # every item takes a byte at least (the compiler refuses free items)
                    return _BAD, pos, 0, 0
                if count == 0:  # end of the array
                    ibase = frames[top, 0]
                    fbase = frames[top, 1]
                    fp -= 1
                    pc = ops[start, 4] + 1
                    continue
                left = count
            frames[top, 2] = left - 1
            k_i = ops[start, 2]
            k_f = ops[start, 3]
            if itop + k_i > ints.shape[0] or ftop + k_f > floats.shape[0]:
                return _MORE, pos, 0, 0
            ibase = itop
            fbase = ftop
            itop += k_i
            ftop += k_f
            ints[frames[top, 0] + ops[start, 1]] += 1
            pc = start + 1
        else:  # _BRANCH rows are only jumped over
            return _BAD, pos, 0, 0
    return _OK, pos, itop, ftop


class ItemLayout(NamedTuple):
    """Where an ``ItemBlock``'s columns are: ``fields`` maps a field to ``(union slot, branch, kind, slot)``;
    ``item_union`` is ``(slot, branch)`` of a ``["null", record]`` item union ((-1, -1) when items are records)."""

    fields: dict[str, tuple[int, int, int, int]]
    item_union: tuple[int, int]


@numba.njit(cache=True)
def _ascii_rows(rows, buf, strings):
    """True when every present string of every row is ASCII; ``strings``: (union slot or -1, branch, slot) of
    each string field of the rows."""
    for r in range(rows.shape[0]):
        for s in range(strings.shape[0]):
            u = strings[s, 0]
            if u >= 0 and rows[r, u] != strings[s, 1]:
                continue  # null
            at = rows[r, strings[s, 2]]
            for i in range(at, at + rows[r, strings[s, 2] + 1]):
                if buf[i] >= 128:
                    return False
    return True


def _block_or_rows(
    mi: np.ndarray, mf: np.ndarray, buf: bytes, layout: ItemLayout, build: Any, strings: np.ndarray
):
    """An ``ItemBlock``, or the rows as dicts at once when one of their strings is not ASCII: text is decoded
    (and text that is not UTF-8 refused, as fastavro refuses it) where the dicts are built, so a block never
    holds text that could fail later, and its strings can be read as ASCII bytes."""
    if strings.shape[0] and not _ascii_rows(mi, np.frombuffer(buf, np.uint8), strings):
        return build(mi, mf, buf)
    return ItemBlock(mi, mf, buf, layout, build)


class ItemBlock(Sequence):
    """The items of an array of records, still in the reader's slabs (a copy of their rows): what the compiled
    reader gives for the arrays its caller names ``columnar`` instead of a list of dicts, so that a consumer can
    take columns of the whole array at once (``surveys.ztf``'s history). It is a sequence of exactly the dicts
    fastavro reads (built on first use, once), so code that walks it as a list sees no difference.

    ``layout.fields`` maps each field the block can give as a column to ``(union slot, branch, kind, slot)``: the
    int slot of its ``["null", T]`` union and T's branch index (-1, -1 when the field is not nullable), the kind of
    T (``K_LONG``, ``K_FLOAT``, ``K_BOOL``, ``K_STRING``, ``K_BYTES``) and its slot (a float slot for K_FLOAT, an
    int slot otherwise; strings and bytes take two: offset into ``buf`` and length). Rows are ``ints[i]`` and
    ``floats[i]``; fields outside the layout (nested, logical, wider unions) are only in the dicts. Every string of
    a block is ASCII: items with other text are given as dicts (``_block_or_rows``), and items with a string
    outside the layout never become blocks."""

    __slots__ = ("ints", "floats", "buf", "layout", "_build", "_rows")

    def __init__(self, ints: np.ndarray, floats: np.ndarray, buf: bytes, layout: dict, build: Any) -> None:
        self.ints = ints
        self.floats = floats
        self.buf = buf
        self.layout = layout
        self._build = build
        self._rows: list | None = None

    def rows(self) -> list[dict]:
        """The items as fastavro's dicts."""
        if self._rows is None:
            self._rows = self._build(self.ints, self.floats, self.buf)
        return self._rows

    def __len__(self) -> int:
        return self.ints.shape[0]

    def __getitem__(self, i):  # type: ignore[override]
        return self.rows()[i]

    def __iter__(self):
        return iter(self.rows())

    def __eq__(self, other: object) -> bool:
        return self.rows() == (list(other) if isinstance(other, ItemBlock | tuple) else other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ItemBlock({len(self)} items)"


#: Column kinds of ``ItemBlock.layout``.
K_LONG, K_FLOAT, K_BOOL, K_STRING, K_BYTES = range(5)
_KIND_OF = {"int": K_LONG, "long": K_LONG, "float": K_FLOAT, "double": K_FLOAT, "boolean": K_BOOL,
            "string": K_STRING, "bytes": K_BYTES}  # fmt: skip


def _column_of(field_type: Any, ints_at: int, floats_at: int) -> tuple[int, int, int, int] | None:
    """The layout entry of a record field whose slots start at (``ints_at``, ``floats_at``): a plain primitive or
    a ``["null", T]`` union of one (either order), without a logical type; None for anything else."""

    def plain(t: Any) -> int | None:
        if isinstance(t, dict) and t.get("type") in _KIND_OF and not t.get("logicalType"):
            t = t["type"]
        return _KIND_OF.get(t) if isinstance(t, str) else None

    def slot(kind: int, i: int, f: int) -> int:
        return f if kind == K_FLOAT else i

    kind = plain(field_type)
    if kind is not None:
        return (-1, -1, kind, slot(kind, ints_at, floats_at))
    if isinstance(field_type, list) and len(field_type) == 2 and "null" in field_type:
        branch = 1 - field_type.index("null")
        kind = plain(field_type[branch])
        if kind is not None:  # the union's index takes the first int slot, the value the next
            return (ints_at, branch, kind, slot(kind, ints_at + 1, floats_at))
    return None


class _Unsupported(Exception):
    """The schema holds something this reader does not compile (fastavro reads it)."""


#: fastavro's logical conversions that depend on the value alone (decimals read their scale from the schema).
_VALUE_ONLY_LOGICAL = {
    "int-date",
    "int-time-millis",
    "long-time-micros",
    "long-timestamp-millis",
    "long-timestamp-micros",
    "long-local-timestamp-millis",
    "long-local-timestamp-micros",
    "string-uuid",
}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


class _Compiler:
    """Walks a writer schema: appends the kernel's ops and returns the Python expression that builds a value."""

    def __init__(self) -> None:
        self.ops: list[list[int]] = []
        self.names: dict[str, Any] = {}
        self.leaves = 0
        self.items: list[str] = []  # one builder function's source per array type
        self.helpers: dict[str, Any] = {}  # functions the generated code calls, by name
        self.columnar: frozenset[str] = (
            frozenset()
        )  # top-level fields whose arrays of records become ItemBlocks
        self._columnar_field = False  # compiling one of those fields now
        self._layout: dict[str, tuple[int, int, int, int]] | None = (
            None  # the layout of the item being compiled
        )
        self.names_seen_top = False  # the top record has been entered
        self._item_strings: int | None = None  # strings compiled in the columnar item being compiled

    # slot allocation per table (the top record, or one array's item)
    def _slot(self, table: list[int], kind: int, width: int = 1) -> int:
        at = table[kind]
        table[kind] += width
        self.leaves += 1
        if self.leaves > MAX_LEAVES:
            raise _Unsupported("too many fields")
        return at

    def _emit(self, op: int, a: int = 0, b: int = 0, c: int = 0, d: int = 0) -> int:
        self.ops.append([op, a, b, c, d])
        return len(self.ops) - 1

    def _resolve(self, schema: Any, namespace: str) -> tuple[Any, str]:
        """A reference to a named type -> its definition (Avro: an unqualified name is in the enclosing
        namespace first)."""
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            tries = [schema] if "." in schema or not namespace else [f"{namespace}.{schema}", schema]
            for name in tries:
                if name in self.names:
                    return self.names[name]
            raise _Unsupported(f"unknown named type {schema!r}")
        return schema, namespace

    def compile(self, schema: Any, table: list[int], namespace: str, in_item: bool) -> str:
        schema, namespace = self._resolve(schema, namespace)
        if isinstance(schema, list):
            return self._union(schema, table, namespace, in_item)
        if isinstance(schema, dict):
            kind = schema.get("type")
            if kind in _PRIMITIVES:
                plain = self.compile(kind, table, namespace, in_item)
                return self._logical(schema, kind, plain)
            if kind == "record":
                return self._record(schema, table, namespace, in_item)
            if kind in ("array", "map"):
                if in_item:
                    raise _Unsupported("arrays or maps in array or map items")
                return self._array(schema, table, namespace, kind == "map")
            raise _Unsupported(f"type {kind!r}")
        if schema == "null":
            return "None"
        if schema == "boolean":
            return f"(iv[{self._emit_leaf(_BOOL, table, 0)}] == 1)"
        if schema in ("int", "long"):
            return f"iv[{self._emit_leaf(_LONG, table, 0)}]"
        if schema in ("float", "double"):
            return f"fv[{self._emit_leaf(_FLOAT if schema == 'float' else _DOUBLE, table, 1)}]"
        if schema in ("string", "bytes"):
            if schema == "string" and self._item_strings is not None:
                self._item_strings += 1
            at = self._emit_leaf(_BYTES, table, 0, width=2)
            piece = f"buf[iv[{at}]:iv[{at}] + iv[{at + 1}]]"
            return f"{piece}.decode()" if schema == "string" else piece
        raise _Unsupported(f"type {schema!r}")

    def _logical(self, schema: dict, kind: str, plain: str) -> str:
        """A primitive with a ``logicalType``: converted by fastavro's own function where fastavro converts it
        (timestamps, dates, times, uuids: functions of the value alone); decimals are left to fastavro."""
        logical = schema.get("logicalType")
        if not logical:
            return plain
        key = f"{kind}-{logical}"
        if key not in LOGICAL_READERS:
            return plain  # a logical type fastavro does not know: the plain value, as fastavro gives it
        if key not in _VALUE_ONLY_LOGICAL:
            raise _Unsupported(f"logical type {key}")
        name = f"_logical{len(self.helpers)}"
        self.helpers[name] = LOGICAL_READERS[key]
        return f"{name}({plain}, None, None)"

    def _emit_leaf(self, op: int, table: list[int], kind: int, width: int = 1) -> int:
        at = self._slot(table, kind, width)
        self._emit(op, at)
        return at

    def _record(self, schema: dict, table: list[int], namespace: str, in_item: bool) -> str:
        name = schema.get("name")
        if not isinstance(name, str):
            raise _Unsupported("a record without a name")
        if "." in name:  # a full name: its namespace is its own
            full, space = name, name.rsplit(".", 1)[0]
        else:
            space = schema.get("namespace", namespace) or ""
            full = f"{space}.{name}" if space else name
        # real ZTF schemas define their cutout record inline three times: the last definition is what a later
        # reference means (fastavro's rule too); inline definitions are compiled where they stand
        self.names[full] = (schema, space)
        top = not in_item and not self.names_seen_top
        self.names_seen_top = True
        layout, self._layout = self._layout, None  # an item record's layout is filled by its own fields only
        parts = []
        for field in schema.get("fields", ()):
            fname = field.get("name") if isinstance(field, dict) else None
            if not isinstance(fname, str):
                raise _Unsupported("a field without a name")
            ints_at, floats_at = table
            self._columnar_field = top and fname in self.columnar
            parts.append(f"{fname!r}: {self.compile(field.get('type'), table, space, in_item)}")
            self._columnar_field = False
            if (
                layout is not None
                and (entry := _column_of(field.get("type"), ints_at, floats_at)) is not None
            ):
                layout[fname] = entry
        self._layout = layout
        return "{" + ", ".join(parts) + "}"

    def _union(self, branches: list, table: list[int], namespace: str, in_item: bool) -> str:
        if not branches:
            raise _Unsupported("an empty union")
        at = self._slot(table, 0)
        head = self._emit(_UNION, at, len(branches))
        table_rows = [self._emit(_BRANCH) for _ in branches]
        exprs = []
        for row, branch in zip(table_rows, branches, strict=True):
            self.ops[row][1] = len(self.ops)
            exprs.append(self.compile(branch, table, namespace, in_item))
            self._emit(_RET)
        self.ops[head][3] = len(self.ops)
        out = exprs[-1]
        for k in range(len(exprs) - 2, -1, -1):
            out = f"({exprs[k]} if iv[{at}] == {k} else {out})"
        return out

    def _array(self, schema: dict, table: list[int], namespace: str, is_map: bool) -> str:
        """An array, or a map (on the wire: an array of string keys each followed by its value)."""
        at = self._slot(table, 0, width=3)
        head = self._emit(_ARRAY, at)
        item_table = [0, 0]
        columnar = self._columnar_field and not is_map
        self._columnar_field = False
        item_union = (-1, -1)
        if (
            columnar
        ):  # only for items that are records, or a ["null", record] union (the union's index: slot 0)
            items, _ = self._resolve(schema.get("items"), namespace)
            if isinstance(items, list) and len(items) == 2 and "null" in items:
                item_union = (0, 1 - items.index("null"))
                items, _ = self._resolve(items[item_union[1]], namespace)
            columnar = isinstance(items, dict) and items.get("type") == "record"
        layout: dict[str, tuple[int, int, int, int]] = {}
        if columnar:
            self._layout = layout  # the item record's fields fill it
            self._item_strings = 0
        if is_map:
            key = self.compile("string", item_table, namespace, in_item=True)
            value = self.compile(schema.get("values"), item_table, namespace, in_item=True)
            expr = f"({key}, {value})"
        else:
            expr = self.compile(schema.get("items"), item_table, namespace, in_item=True)
        self._layout = None
        strings = [(u, branch, slot) for u, branch, kind, slot in layout.values() if kind == K_STRING]
        if columnar and self._item_strings != len(strings):
            columnar = (
                False  # a string outside the layout (nested, in a wider union): its text is not checked
            )
        self._item_strings = None
        if item_table == [0, 0]:  # items of no bytes: 10^18 of them fit in a few bytes
            raise _Unsupported("items that take no bytes")
        end = self._emit(_END_ITEM)
        self.ops[head][2], self.ops[head][3], self.ops[head][4] = item_table[0], item_table[1], end
        index = len(self.items)
        self.items.append(
            f"def _items{index}(ints, floats, buf, n, i0, f0):\n"
            f"    if n == 0:\n        return []\n"
            f"    rows_i = ints[i0:i0 + n * {item_table[0]}].reshape(n, {item_table[0]}).tolist()\n"
            f"    rows_f = floats[f0:f0 + n * {item_table[1]}].reshape(n, {item_table[1]}).tolist()\n"
            f"    return [{expr} for iv, fv in zip(rows_i, rows_f)]\n"
        )
        call = f"_items{index}(ints, floats, buf, iv[{at}], iv[{at + 1}], iv[{at + 2}])"
        if columnar and layout:  # the items' rows stay in columns; their dicts are built only if asked for
            ki, kf = item_table
            self.items.append(
                f"def _rows{index}(mi, mf, buf):\n"
                f"    return [{expr} for iv, fv in zip(mi.tolist(), mf.tolist())]\n"
                f"def _block{index}(ints, floats, buf, n, i0, f0):\n"
                f"    return _block_or_rows(ints[i0:i0 + n * {ki}].reshape(n, {ki}).copy(), "
                f"floats[f0:f0 + n * {kf}].reshape(n, {kf}).copy(), buf, _layout{index}, _rows{index}, "
                f"_strings{index})\n"
            )
            self.helpers[f"_layout{index}"] = ItemLayout(layout, item_union)
            self.helpers[f"_strings{index}"] = np.array(strings, dtype=np.int64).reshape(len(strings), 3)
            self.helpers["_block_or_rows"] = _block_or_rows
            return f"_block{index}(ints, floats, buf, iv[{at}], iv[{at + 1}], iv[{at + 2}])"
        return f"dict({call})" if is_map else call


class RecordReader:
    """Reads records of one writer schema (see the module's docstring); build with ``compile_reader``."""

    def __init__(self, ops: np.ndarray, k_int: int, k_float: int, build: Any):
        self._ops = ops
        self._k_int = k_int
        self._k_float = k_float
        self._build = build
        self._local = threading.local()

    def _slabs(self, need: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scratch slabs of at least ``need`` slots: this thread's, or, past ``KEEP_SLOTS``, fresh ones that are
        not kept (one huge record must not pin its memory to the thread)."""
        slabs = getattr(self._local, "slabs", None)
        if slabs is None or slabs[0].shape[0] < need:
            size = max(need, 4096 if slabs is None else 2 * slabs[0].shape[0])
            slabs = (np.empty(size, np.int64), np.empty(size, np.float64), np.empty(8, np.uint8))
            if size <= KEEP_SLOTS:
                self._local.slabs = slabs
        return slabs

    def read(self, data: bytes, pos: int = 0) -> tuple[Any, int] | None:
        """The record at ``data[pos:]`` and the position after it; None when fastavro should read it."""
        view = np.frombuffer(data, np.uint8)
        need = 0
        while need <= MAX_SLOTS:  # slabs double until the record fits
            ints, floats, scratch = self._slabs(need)
            status, end, _, _ = _run(
                view, pos, len(data), self._ops, ints, floats, self._k_int, self._k_float, scratch
            )
            if status == _OK:
                try:
                    return self._build(ints, floats, data), end
                except Exception:  # text not UTF-8, a timestamp past datetime's range: fastavro says which
                    return None
            if status == _BAD:
                return None
            need = 2 * ints.shape[0]
        return None


def compile_reader(schema: Any, columnar: frozenset[str] = frozenset()) -> RecordReader | None:
    """A reader for records of ``schema`` (a writer schema as parsed JSON, or as ``fastavro.parse_schema``
    returns it), or None when the schema holds what this reader leaves to fastavro. Never raises: a schema
    comes with its packet, and one this reader cannot take (unsupported, malformed, or nesting past what
    Python's parser takes) is fastavro's to read or refuse. The top-level fields named in ``columnar`` that
    hold arrays of records are read as ``ItemBlock``s."""
    try:
        compiler = _Compiler()
        compiler.columnar = frozenset(columnar)
        top = [0, 0]
        expr = compiler.compile(schema, top, "", in_item=False)
        source = "".join(compiler.items) + (
            "def build(ints, floats, buf):\n"
            f"    iv = ints[:{top[0]}].tolist()\n"
            f"    fv = floats[:{top[1]}].tolist()\n"
            f"    return {expr}\n"
        )
        namespace: dict[str, Any] = dict(compiler.helpers)
        exec(
            compile(source, "<avro compiled reader>", "exec"), namespace
        )  # names enter as repr() literals only
    except Exception:  # _Unsupported, a malformed schema, SyntaxError/RecursionError from very deep nesting
        return None
    ops = np.array(compiler.ops, dtype=np.int64).reshape(-1, 5)
    return RecordReader(ops, top[0], top[1], namespace["build"])


_WARM_UP_SCHEMA = {
    "type": "record",
    "name": "warm_up",
    "fields": [
        {"name": "n", "type": ["null", "long"]},
        {"name": "x", "type": "float"},
        {"name": "rows", "type": {"type": "array", "items": "double"}},
    ],
}


def warm_up() -> None:
    """Compile the kernel (or load it from numba's cache) before the first packet needs it."""
    reader = compile_reader(_WARM_UP_SCHEMA)
    assert reader is not None
    datum = bytes([2, 2]) + np.float32(1.5).tobytes() + bytes([2]) + np.float64(2.0).tobytes() + bytes([0])
    if reader.read(datum) != ({"n": 1, "x": 1.5, "rows": [2.0]}, len(datum)):
        raise RuntimeError("the compiled Avro reader misreads its warm-up record")


__all__ = [
    "K_BOOL",
    "K_BYTES",
    "K_FLOAT",
    "K_LONG",
    "K_STRING",
    "KEEP_SLOTS",
    "MAX_LEAVES",
    "MAX_SLOTS",
    "ItemBlock",
    "ItemLayout",
    "RecordReader",
    "compile_reader",
    "warm_up",
]
