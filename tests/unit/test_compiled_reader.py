"""The compiled Avro record reader (surveys.compiled_reader) against values written by hand and against fastavro.

Its contract: a record it reads equals fastavro's (keys in schema order, values and their types), and whatever
it is unsure of it leaves to fastavro (``read`` returns None). Checked on hand-written records of every type it
compiles (the expected values are the ones written, not fastavro's reading of them), on hand-assembled bytes
fastavro's writer never produces (arrays in several blocks with byte sizes), on every real packet kind in
shared/data, and on byte-mutated datums (where both must agree, or the compiled reader must step aside).
"""

from __future__ import annotations

import io
import math
import random
import threading
from datetime import UTC, datetime, timedelta

import fastavro
import pytest

from alert_broker.simulator.avro import encode_long as zigzag  # Avro's zig-zag varint, written independently
from alert_broker.surveys import avro
from alert_broker.surveys.compiled_reader import compile_reader
from alert_broker.surveys.decode import read_packet
from alert_broker.surveys.errors import PacketError

EVERY_TYPE = {
    "type": "record",
    "name": "top",
    "namespace": "test.ns",
    "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "single", "type": "float"},
        {"name": "double", "type": "double"},
        {"name": "text", "type": "string"},
        {"name": "blob", "type": "bytes"},
        {"name": "nothing", "type": "null"},
        {"name": "when", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "unknown_logical", "type": {"type": "long", "logicalType": "no-such-thing"}},
        {
            "name": "inner",
            "type": {"type": "record", "name": "point", "fields": [{"name": "x", "type": "double"}]},
        },
        {"name": "again", "type": "point"},  # a reference, resolved in the enclosing namespace
        {"name": "choice", "type": ["null", "long", "string", "point"]},
        {"name": "maybe_list", "type": ["null", {"type": "array", "items": "point"}]},
        {"name": "longs", "type": {"type": "array", "items": "long"}},
        {"name": "tags", "type": {"type": "map", "values": ["null", "double"]}},
    ],
}


def record(**over):
    base = {
        "flag": True,
        "small": -(2**31),
        "big": 2**63 - 1,
        "single": -2.25,
        "double": 1e308,
        "text": "é€😀",
        "blob": b"",
        "nothing": None,
        "when": datetime(2026, 12, 5, 21, 0, 0, 123456, tzinfo=UTC),
        "unknown_logical": 42,
        "inner": {"x": -0.0},
        "again": {"x": math.inf},
        "choice": None,
        "maybe_list": None,
        "longs": [],
        "tags": {},
    }
    base.update(over)
    return base


def encode(schema, value) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), value)
    return out.getvalue()


def same(a, b) -> bool:
    """Equal values of equal types, dict keys in the same order, NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return a == b


VARIANTS = [
    record(),
    record(flag=False, small=2**31 - 1, big=-(2**63), single=float("nan"), double=-5e-324),
    record(choice=-7, maybe_list=[], longs=[0, -1, 1, 2**40], tags={"a": None, "b": 1.5}),
    record(choice="text", maybe_list=[{"x": 1.0}, {"x": 2.0}], tags={"only": -0.5}),
    record(choice={"x": float("-inf")}, blob=bytes(range(256)), text=""),
]


@pytest.mark.parametrize("value", VARIANTS)
def test_every_type_reads_as_written(value):
    datum = encode(EVERY_TYPE, value)
    reader = compile_reader(fastavro.parse_schema(EVERY_TYPE))
    assert reader is not None
    got, end = reader.read(datum, 0)
    assert end == len(datum)
    assert same(got, value), (got, value)
    # the same from the schema's JSON form, and from an offset inside a larger buffer
    plain = compile_reader(EVERY_TYPE)
    got2, end2 = plain.read(b"\x00" * 7 + datum + b"tail", 7)
    assert same(got2, value) and end2 == 7 + len(datum)


def test_timestamps_are_fastavros_datetimes():
    when = datetime(1999, 1, 1, tzinfo=UTC) + timedelta(microseconds=1)
    datum = encode(EVERY_TYPE, record(when=when))
    got, _ = compile_reader(EVERY_TYPE).read(datum)
    assert got["when"] == when and got["when"].tzinfo is not None


def test_arrays_in_several_blocks_with_byte_sizes():
    """Writers may split an array into blocks, and give a block's byte size (a negative count): fastavro's
    writer never does, so the bytes are assembled here by hand."""
    schema = {
        "type": "record",
        "name": "r",
        "fields": [{"name": "v", "type": {"type": "array", "items": "long"}}],
    }
    datum = (
        zigzag(2) + zigzag(5) + zigzag(-3)  # a block of two
        + zigzag(-1) + zigzag(1) + zigzag(300)  # a block of one, with its byte size (1)
        + zigzag(0)
    )  # fmt: skip
    got, end = compile_reader(schema).read(datum)
    assert got == {"v": [5, -3, 300]} and end == len(datum)
    assert fastavro.schemaless_reader(io.BytesIO(datum), fastavro.parse_schema(schema)) == got


def test_records_too_big_for_the_first_slabs():
    schema = {
        "type": "record",
        "name": "r",
        "fields": [{"name": "rows", "type": {"type": "array", "items": {"type": "record", "name": "row", "fields": [
            {"name": "a", "type": "long"}, {"name": "b", "type": ["null", "double"]}]}}}],
    }  # fmt: skip
    value = {"rows": [{"a": i, "b": None if i % 3 else i / 7} for i in range(20_000)]}
    got, _ = compile_reader(schema).read(encode(schema, value))
    assert same(got, value)


def test_damaged_datums_are_left_to_fastavro():
    reader = compile_reader(EVERY_TYPE)
    datum = encode(EVERY_TYPE, record(choice="text", longs=[1, 2, 3]))
    for cut in range(len(datum)):  # every truncation
        assert reader.read(datum[:cut]) is None
    flag_two = b"\x02" + datum[1:]
    assert reader.read(flag_two) is None  # a boolean byte other than 0 or 1
    schema = {"type": "record", "name": "r", "fields": [{"name": "s", "type": "string"}, {"name": "u", "type": ["null", "long"]}]}  # fmt: skip
    small = compile_reader(schema)
    assert small.read(zigzag(2) + b"\xff\xfe" + zigzag(0)) is None  # not UTF-8
    assert small.read(zigzag(-2) + b"ab" + zigzag(0)) is None  # a negative length
    assert small.read(zigzag(1) + b"a" + zigzag(2)) is None  # union index past its two branches
    assert small.read(zigzag(1) + b"a" + zigzag(-1)) is None  # negative union index
    assert small.read(b"\xff" * 11) is None  # a varint of more than 10 bytes
    assert small.read(b"\xff" * 9 + b"\x7f") is None  # 10 bytes, bits past the 64th
    assert (
        small.read(zigzag(2**62) + b"ab" + zigzag(0)) is None
    )  # a length past the bytes (and near int64's end)
    assert small.read(zigzag(2**63 - 1) + b"ab" + zigzag(0)) is None
    assert small.read(zigzag(1) + b"a" + zigzag(1) + zigzag(9)) == ({"s": "a", "u": 9}, 4)


def test_values_fastavro_cannot_convert_are_left_to_it():
    schema = {"type": "record", "name": "r", "fields": [{"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}}]}  # fmt: skip
    datum = zigzag(2**62)  # ~146,000 years: past datetime's range
    with pytest.raises(OverflowError):
        fastavro.schemaless_reader(io.BytesIO(datum), fastavro.parse_schema(schema))
    assert compile_reader(schema).read(datum) is None


def test_schemas_nested_past_pythons_parser_are_left_to_fastavro():
    """A writer schema comes with its packet: nesting the generated code cannot hold gives no reader, never an
    exception."""
    inner: object = "long"
    for depth in range(300):
        inner = {"type": "record", "name": f"n{depth}", "fields": [{"name": "v", "type": inner}]}
    assert compile_reader(inner) is None
    wide = {"type": "record", "name": "w", "fields": [{"name": "u", "type": ["null"] + [
        {"type": "record", "name": f"b{k}", "fields": [{"name": "x", "type": "long"}]} for k in range(300)]}]}  # fmt: skip
    reader = compile_reader(wide)
    datum = zigzag(299) + zigzag(-5)
    expected = fastavro.schemaless_reader(io.BytesIO(datum), fastavro.parse_schema(wide))
    assert reader is None or reader.read(datum) == (expected, len(datum))


def test_a_record_past_the_slot_limit_is_left_to_fastavro(monkeypatch):
    from alert_broker.surveys import compiled_reader

    schema = {"type": "record", "name": "r", "fields": [{"name": "v", "type": {"type": "array", "items": "long"}}]}  # fmt: skip
    datum = encode(schema, {"v": list(range(10_000))})
    monkeypatch.setattr(compiled_reader, "MAX_SLOTS", 5000)
    assert compile_reader(schema).read(datum) is None
    monkeypatch.setattr(compiled_reader, "MAX_SLOTS", 2**24)
    assert compile_reader(schema).read(datum)[0] == {"v": list(range(10_000))}


@pytest.mark.parametrize(
    "field_type",
    [
        {"type": "enum", "name": "e", "symbols": ["A", "B"]},
        {"type": "fixed", "name": "f", "size": 4},
        {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2},
        {"type": "array", "items": {"type": "array", "items": "long"}},
        {"type": "array", "items": {"type": "map", "values": "long"}},
        {"type": "array", "items": {"type": "record", "name": "empty", "fields": []}},
        "no.such.type",
    ],
)
def test_what_it_does_not_compile_is_left_to_fastavro(field_type):
    schema = {"type": "record", "name": "r", "fields": [{"name": "v", "type": field_type}]}
    assert compile_reader(schema) is None


def test_threads_read_with_their_own_slabs():
    reader = compile_reader(EVERY_TYPE)
    datums = [encode(EVERY_TYPE, v) for v in VARIANTS]
    errors: list[str] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(300):
            k = rng.randrange(len(datums))
            got, _ = reader.read(datums[k])
            if not same(got, VARIANTS[k]):
                errors.append(f"variant {k}")

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# ------------------------------------------------------------------------------------------ real packets
REAL = [
    ("ztf/fink_sample_1166", 120),
    ("ztf/alerce_samples_snappy", 20),
    ("ztf/object_sequences", 30),
    ("ztf/old_versions", None),
    ("ztf/forced_photometry", None),
    ("ztf/simbad_labelled", None),
    ("ztf/bad", None),
    ("lsst/v7_4", 10),
    ("lsst/v9_0", 10),
    ("lsst/v10_0", None),
    ("atlas", None),
]


def _outcome(payload: bytes):
    try:
        return read_packet(payload).records
    except PacketError as err:
        return (type(err).__name__, str(err))


@pytest.mark.parametrize(("folder", "limit"), REAL)
def test_real_packets_read_as_fastavro_reads_them(shared_data, monkeypatch, folder, limit):
    files = sorted(p for p in (shared_data / folder).rglob("*") if p.is_file() and not p.name.endswith(".md"))
    files = files[:limit] if limit else files
    assert files
    compiled = 0
    for path in files:
        payload = path.read_bytes()
        avro._READERS.clear()
        fast = _outcome(payload)
        with monkeypatch.context() as m:
            m.setattr(avro, "record_reader", lambda key, parsed, columnar=frozenset(): None)
            slow = _outcome(payload)
        assert same(fast, slow), path.name
        if not isinstance(fast, tuple):  # decoded: its schema compiled (else it would not be any faster)
            assert [r for r in avro._READERS.values() if r is not None], path.name
            compiled += 1
    assert compiled > 0


def test_mutated_datums_agree_with_fastavro_or_step_aside(shared_data):
    """Byte flips in a real ZTF alert's datum (its history and candidate, not the cutouts' pixels): when the
    compiled reader reads a record, fastavro reads the same record and ends at the same byte."""
    payload = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[3].read_bytes()
    container = fastavro.reader(io.BytesIO(payload))
    schema = fastavro.parse_schema(container.writer_schema)
    datum = encode(schema, next(container))
    reader = compile_reader(schema)
    rng = random.Random(17)
    agreed = stepped_aside = 0
    for _ in range(400):
        damaged = bytearray(datum)
        for _ in range(rng.randint(1, 3)):
            damaged[rng.randrange(min(len(damaged), 12_000))] = rng.randrange(256)
        damaged = bytes(damaged)
        got = reader.read(damaged)
        stream = io.BytesIO(damaged)
        try:
            ref = fastavro.schemaless_reader(stream, schema)
        except Exception:
            ref = None
        if got is None:
            stepped_aside += 1
            continue
        assert ref is not None and same(got[0], ref) and got[1] == stream.tell()
        agreed += 1
    assert agreed > 50 and stepped_aside > 10  # both paths were exercised


def test_columnar_arrays_are_item_blocks_only_where_asked_and_possible():
    """Only the named top-level fields holding arrays of records (or of ["null", record]) become ItemBlocks;
    arrays of primitives, maps, and arrays nested deeper stay lists. Every block equals fastavro's list, and
    its layout says where each plain field is."""
    from alert_broker.surveys.compiled_reader import K_FLOAT, K_LONG, K_STRING, ItemBlock

    item = {
        "type": "record",
        "name": "entry",
        "fields": [
            {"name": "a", "type": "long"},
            {"name": "b", "type": ["null", "double"]},
            {"name": "c", "type": ["string", "null"]},
            {"name": "d", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "e", "type": ["null", "long", "double"]},
        ],
    }
    schema = {
        "type": "record",
        "name": "top",
        "fields": [
            {"name": "rows", "type": {"type": "array", "items": item}},
            {"name": "maybe", "type": ["null", {"type": "array", "items": ["null", "entry"]}]},
            {"name": "plain", "type": {"type": "array", "items": "long"}},
            {"name": "m", "type": {"type": "map", "values": "entry"}},
            {"name": "inner", "type": {"type": "record", "name": "in", "fields": [
                {"name": "rows", "type": {"type": "array", "items": "entry"}}]}},
        ],
    }  # fmt: skip
    e1 = {"a": 1, "b": None, "c": "x", "d": 5, "e": 2.5}
    e2 = {"a": -7, "b": 0.5, "c": None, "d": 6, "e": None}
    record = {"rows": [e1, e2], "maybe": [None, e2], "plain": [3], "m": {"k": e1}, "inner": {"rows": [e2]}}
    datum = encode(schema, record)
    want = fastavro.schemaless_reader(io.BytesIO(datum), fastavro.parse_schema(schema))
    names = frozenset({"rows", "maybe", "plain", "m"})
    got, end = compile_reader(fastavro.parse_schema(schema), names).read(datum)
    assert end == len(datum) and got == want
    assert isinstance(got["rows"], ItemBlock) and isinstance(got["maybe"], ItemBlock)
    assert type(got["plain"]) is list and type(got["m"]) is dict and type(got["inner"]["rows"]) is list
    layout = got["rows"].layout
    assert layout.item_union == (-1, -1) and got["maybe"].layout.item_union == (0, 1)
    assert set(layout.fields) == {"a", "b", "c"}  # the logical type and the three-way union are not columns
    u, branch, kind, slot = layout.fields["b"]
    assert kind == K_FLOAT and branch == 1
    block = got["rows"]
    assert [None if r[u] != branch else f[slot] for r, f in zip(block.ints, block.floats, strict=True)] == [
        None,
        0.5,
    ]
    assert layout.fields["a"][2] == K_LONG and got["rows"].ints[:, layout.fields["a"][3]].tolist() == [1, -7]
    assert layout.fields["c"][2] == K_STRING
    # the block reads the same twice, and a reader without columnar names reads lists
    assert list(got["rows"]) == [e1 | {"d": want["rows"][0]["d"]}, e2 | {"d": want["rows"][1]["d"]}]
    plain, _ = compile_reader(fastavro.parse_schema(schema)).read(datum)
    assert type(plain["rows"]) is list and plain == want


def test_a_block_holds_only_ascii_text():
    """Items with text that is not ASCII come as fastavro's dicts at once (text that is not UTF-8 then makes
    the reader step aside, as for any record, so fastavro refuses it); items with a string outside the layout
    (here in a three-way union) never become blocks, since their text would go unchecked."""
    from alert_broker.surveys.compiled_reader import ItemBlock

    def schema_with(text_type):
        item = {"type": "record", "name": "entry",
                "fields": [{"name": "a", "type": "long"}, {"name": "s", "type": text_type}]}  # fmt: skip
        return {"type": "record", "name": "top",
                "fields": [{"name": "rows", "type": {"type": "array", "items": item}}]}  # fmt: skip

    plain = schema_with(["null", "string"])
    reader = compile_reader(fastavro.parse_schema(plain), frozenset({"rows"}))
    for text, block in (("abc", True), ("gr\u00fcn", False)):
        record = {"rows": [{"a": 1, "s": None}, {"a": 2, "s": text}]}
        got, _ = reader.read(encode(plain, record))
        assert isinstance(got["rows"], ItemBlock) is block and got == record
    broken = encode(plain, {"rows": [{"a": 1, "s": "@@"}]}).replace(b"@@", b"\xff@")
    assert reader.read(broken) is None  # not UTF-8: fastavro's to read (and refuse)
    with pytest.raises(UnicodeDecodeError):
        fastavro.schemaless_reader(io.BytesIO(broken), fastavro.parse_schema(plain))
    wide = schema_with(["null", "string", "long"])
    record = {"rows": [{"a": 1, "s": "abc"}]}
    got, _ = compile_reader(fastavro.parse_schema(wide), frozenset({"rows"})).read(encode(wide, record))
    assert type(got["rows"]) is list and got == record
