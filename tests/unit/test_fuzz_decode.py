"""Hostile input: property-based fuzzing of ``decode_batch`` over real packets (docs/input-validation.md).

Real ZTF (Fink sample 3.2/3.3/4.02, ALeRCE's snappy containers, forced photometry), LSST (v7.4, v9.0 and the
v10.0 multi-alert container) and ATLAS packets are mutated at the byte level (truncations, bit flips, swapped
chunks and Avro blocks, garbage) and at the record level (NaN/inf/negative/absurd magnitudes, errors, fluxes,
times and coordinates, ids at the int64 limits, null or missing required fields, fields of the wrong type,
non-UTF-8 strings, duplicated candids), then re-encoded with their own writer schema. Whatever comes in:

- ``decode_batch`` never raises;
- every message is an alert of ``tables.alerts`` (by its source, partition, offset), or a dead letter with a
  non-empty reason and its payload untouched, or (documented) a redelivery of a candid already in the batch;
  a multi-alert container counts its records (the good ones are alerts, the dead letter counts the bad ones);
- nothing physically absurd reaches the tables (every row obeys surveys.plausibility's rules).

The big cases (20 MB messages, 10^5 history entries, decompression bombs, zero-byte array items) are tested
one by one, with bounds on tracemalloc's peak and on time. Hypothesis runs derandomized, without a database,
so the file is deterministic; ``max_examples`` keeps it under a minute on a 2-core machine.
"""

from __future__ import annotations

import bz2
import collections
import copy
import io
import json
import math
import re
import time
import tracemalloc
import zlib
from dataclasses import dataclass
from pathlib import Path

import cramjam
import fastavro
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from alert_broker.surveys import RawMessage, decode_batch
from alert_broker.surveys.atlas import candid_id
from alert_broker.surveys.avro import MAGIC, _read_header, collect_names
from alert_broker.surveys.plausibility import (
    ERA_START_MJD,
    FLUX_MAX_NJY,
    MAG_RANGE,
    MAX_HISTORY,
    MAX_PACKET_BYTES,
    MJD_END,
    SIGMA_MAG_RANGE,
)

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
#: The dead letters' error classes: every PacketError (foreseen failures with reasons a person can act on).
FORESEEN = {
    "PacketError", "NotAvroError", "TruncatedAvroError", "CorruptAvroError", "UnknownSchemaError",
    "MissingFieldError", "InvalidValueError", "ImplausibleValueError", "OversizeError",
}  # fmt: skip
#: An oid as the tables hold it: the survey's prefix and an object id of 1-64 printable ASCII characters.
OID = re.compile(r"[\x21-\x7e]{1,80}")


# ------------------------------------------------------------------------------------------- real packets
@dataclass(frozen=True, repr=False)
class Packet:
    name: str
    survey: str
    payload: bytes
    schema: dict  # the writer schema as written in the container's header
    codec: str
    records: tuple[dict, ...]

    def __repr__(self) -> str:  # what Hypothesis prints of a failing example: the file, not megabytes
        return f"Packet({self.name!r})"

    def _repr_pretty_(self, printer, cycle) -> None:  # Hypothesis's pretty-printer (it expands dataclasses)
        del cycle
        printer.text(repr(self))


def _packet(path: Path, survey: str) -> Packet:
    payload = path.read_bytes()
    reader = fastavro.reader(io.BytesIO(payload))
    schema = json.loads(reader.metadata["avro.schema"])
    return Packet(path.name, survey, payload, schema, reader.codec, tuple(reader))


@pytest.fixture(scope="module")
def packets(shared_data) -> dict[str, list[Packet]]:
    ztf = shared_data / "ztf"
    names = {
        "ztf": [
            ztf / "fink_sample_1166" / "005be9bb33382a1f46911fa341cdfeee0ddd33d5.avro",  # 4.02
            ztf / "fink_sample_1166" / "00f0484d637e75b331506906cff08e6a6fa53c4e.avro",  # 3.3
            ztf
            / "fink_sample_1166"
            / "5e7f5196f2f42722af679acb67de982155bc4f0f.avro",  # 3.2, detections in its history
            ztf / "alerce_samples_snappy" / "000010510116973199.avro",  # 3.3, snappy
            ztf / "forced_photometry" / "3044341005815015012.avro",  # 4.02 with fp_hists
        ],
        "lsst": [
            *sorted((shared_data / "lsst" / "v9_0").glob("*.avro"))[:2],
            sorted((shared_data / "lsst" / "v7_4").glob("*.avro"))[0],
        ],
        "atlas": sorted((shared_data / "atlas").glob("*.avro"))[:3],
    }
    out = {survey: [_packet(p, survey) for p in paths] for survey, paths in names.items()}
    # Rubin's v10.0 sample: 7 alerts in one container, ~300 earlier sources and ~330 forced points each. Its
    # first 3 alerts with their histories cut to 12 entries keep it a real multi-alert container at a tenth of
    # the cost per example.
    v10 = _packet(sorted((shared_data / "lsst" / "v10_0").glob("*.avro"))[0], "lsst")
    records = [copy.deepcopy(r) for r in v10.records[:3]]
    for r in records:
        for field in ("prvDiaSources", "prvDiaForcedSources"):
            r[field] = (r[field] or [])[:12] or None
    payload = io.BytesIO()
    fastavro.writer(payload, fastavro.parse_schema(copy.deepcopy(v10.schema)), records, codec=v10.codec)
    out["lsst"].append(
        Packet("v10_0 (3 alerts)", "lsst", payload.getvalue(), v10.schema, v10.codec, tuple(records))
    )
    assert len(out["lsst"][3].records) == 3  # a real multi-alert container
    assert any(p.codec == "snappy" for p in out["ztf"])
    return out


@pytest.fixture(scope="module")
def every_packet(packets) -> list[Packet]:
    return [p for group in packets.values() for p in group]


# ------------------------------------------------------------------------------------------- invariants
def survey_of(record: dict) -> str:
    if "diaSource" in record:
        return "lsst"
    cand = record.get("candidate") or {}
    return "atlas" if "RA" in cand or "Mag" in cand else "ztf"


def key_of(record: dict) -> tuple[str, int]:
    """(survey, candid) of a record, derived here from the packet (the alert key of docs/data-model.md)."""
    survey = survey_of(record)
    if survey == "lsst":
        return survey, record["diaSource"]["diaSourceId"]
    if survey == "atlas":
        name = record.get("candid")
        name = record["candidate"].get("candid") if name is None else name
        return survey, candid_id(str(name))
    top = record.get("candid")
    return survey, top if top is not None else record["candidate"]["candid"]


def independent_records(payload: bytes) -> list[dict]:
    """The packet's records as plain fastavro reads them (only called on packets the decoder accepted)."""
    return list(fastavro.reader(io.BytesIO(payload)))


def bad_records(reason: str, n_records: int) -> int:
    """How many records of a multi-alert file a dead letter's reason says are unusable."""
    if m := re.match(r"record \d+ of (\d+) in this file", reason):
        assert int(m.group(1)) == n_records
        return 1
    if m := re.match(r"(\d+) of (\d+) records in this file are unusable", reason):
        assert int(m.group(2)) == n_records
        return int(m.group(1))
    return n_records


def check_accounting(msgs: list[RawMessage], result) -> None:
    """Every message is alerts, a dead letter or a redelivery; a container counts its records."""
    tables, dead, raw = result
    coords = [(m.source, m.partition, m.offset) for m in msgs]
    by_coords = dict(zip(coords, msgs, strict=True))
    assert len(by_coords) == len(coords), "the test gives every message its own coordinates"
    letters = {}
    for d in dead:
        c = (d.source, d.partition, d.offset)
        assert c not in letters, "one dead letter per message at most"
        letters[c] = d
        assert isinstance(d.reason, str) and d.reason.strip() and d.error
        assert d.payload == by_coords[c].payload  # untouched
        # every failure is a foreseen one, with a reason a person can act on (not "unexpected error ... report it")
        assert d.error in FORESEEN, d.reason
    a = tables.alerts
    got = collections.Counter(zip(a["source"], a["partition"], a["offset"], strict=True))
    assert set(got) <= set(coords) and set(letters) <= set(coords)
    assert len(raw) == len(a) and raw["candid"].tolist() == a["candid"].tolist()
    keys = set(zip(a["survey"], a["candid"], strict=True))
    assert len(keys) == len(a), "an alert key appears once per batch"
    by_message: dict[tuple, set] = collections.defaultdict(set)
    for row in zip(a["source"], a["partition"], a["offset"], a["survey"], a["candid"], strict=True):
        by_message[row[:3]].add(row[3:])
    taken: set[tuple[str, int]] = set()  # the keys of the alerts of the messages before
    for c, m in zip(coords, msgs, strict=True):
        here = by_message.get(c, set())
        if not here and c in letters:
            continue  # the whole message is a dead letter
        records = independent_records(m.payload)  # the decoder took (part of) it: plain fastavro reads it too
        rkeys = [key_of(r) for r in records]
        assert here <= set(rkeys) and not here & taken, "a message's alerts are its own records, first seen"
        dups = len(rkeys) - len(set(rkeys) - taken)  # redeliveries: keys taken before, or twice in the file
        if c not in letters:  # every record is an alert of this message, or a redelivery
            assert set(rkeys) <= taken | here and len(here) == len(set(rkeys) - taken)
        else:  # a multi-alert file with bad records: the good ones are alerts, one letter counts the bad ones
            bad = bad_records(letters[c].reason, len(records))
            assert len(here) + bad <= len(records) <= len(here) + bad + dups, (len(records), len(here), bad)
        taken |= here


def _between(values, low, high, *, low_open=False, high_open=False) -> bool:
    v = np.asarray(values, dtype=np.float64)
    lo = v > low if low_open else v >= low
    hi = v < high if high_open else v <= high
    return bool(np.all(np.isfinite(v) & lo & hi))


def check_plausible(tables) -> None:
    """Nothing physically absurd in any table the science reads (surveys.plausibility's rules)."""
    for name in ("alerts", "detections"):
        df = getattr(tables, name)
        if df.empty:
            continue
        assert (df["candid"] > 0).all()
        assert df["oid"].map(lambda o: bool(OID.fullmatch(o))).all(), name
        for survey, rows in df.groupby("survey"):
            start = ERA_START_MJD[survey]
            assert _between(rows["mjd"], start, MJD_END, high_open=True), (name, survey)
            assert _between(rows["ra"], 0, 360, high_open=True) and _between(rows["dec"], -90, 90), name
            if survey == "lsst":
                assert _between(rows["flux"], -FLUX_MAX_NJY, FLUX_MAX_NJY)
                assert _between(rows["flux_err"], 0, math.inf, low_open=True, high_open=True)
            else:
                assert _between(rows["magpsf"], *MAG_RANGE, low_open=True, high_open=True), (name, survey)
                assert _between(rows["sigmapsf"], *SIGMA_MAG_RANGE, low_open=True, high_open=True)
            assert np.isfinite(rows["flux"]).all() and np.isfinite(rows["flux_err"]).all()
    nd = tables.non_detections
    for survey, rows in nd.groupby("survey"):
        assert _between(rows["mjd"], ERA_START_MJD[survey], MJD_END, high_open=True)
        limits = rows["diffmaglim"].dropna()
        assert _between(limits, *MAG_RANGE, low_open=True, high_open=True), survey
    fp = tables.forced_photometry
    for survey, rows in fp.groupby("survey"):
        assert _between(rows["mjd"], ERA_START_MJD[survey], MJD_END, high_open=True)
        if survey == "lsst":
            assert _between(rows["psfFlux"], -FLUX_MAX_NJY, FLUX_MAX_NJY)
            assert _between(rows["psfFluxErr"], 0, math.inf, low_open=True, high_open=True)
    dropped = tables.alerts.get("dropped_points", pd.Series([], dtype="int32"))
    assert (dropped >= 0).all()
    reasons = tables.alerts.get("dropped_reason", pd.Series([], dtype="str"))
    assert ((dropped > 0) == reasons.notna()).all(), "a dropped point is always named"


#: What the fuzzing saw, per test: alerts taken, alerts with dropped points, dead letters by error class.
OUTCOMES: collections.Counter = collections.Counter()


def decode_checked(msgs: list[RawMessage]):
    result = decode_batch(msgs, "fuzz")  # must never raise
    check_accounting(msgs, result)
    check_plausible(result.tables)
    OUTCOMES["alert"] += len(result.tables.alerts)
    OUTCOMES["alert with dropped points"] += int((result.tables.alerts["dropped_points"] > 0).sum())
    OUTCOMES.update(d.error for d in result.dead)
    return result


def report_outcomes(test: str, *expected: str) -> None:
    """Print what a fuzz test saw (pytest -s shows it) and check it saw what it was written to provoke."""
    print(f"\n{test}: " + ", ".join(f"{k} {v}" for k, v in OUTCOMES.most_common()))
    missing = [e for e in expected if not OUTCOMES[e]]
    OUTCOMES.clear()
    assert not missing, f"the fuzzing never produced {missing}: its strategies have gone blind"


def messages(*payloads: bytes, source: str = "fuzz") -> list[RawMessage]:
    return [RawMessage(source, 0, i, p, key=f"{i}.avro") for i, p in enumerate(payloads)]


# ----------------------------------------------------------------------------------- byte-level mutations
def _blocks(payload: bytes) -> tuple[bytes, bytes, list[bytes]]:
    """(header with its sync marker, sync, blocks) of a container."""
    _, sync, start = _read_header(payload)
    return payload[:start], sync, [p for p in payload[start:].split(sync) if p]


def multi_block(packet: Packet) -> bytes:
    """The packet's records (repeated to 3 if needed) re-encoded with one record per block."""
    records = list(packet.records) * (3 // len(packet.records) + 1)
    out = io.BytesIO()
    fastavro.writer(
        out,
        fastavro.parse_schema(copy.deepcopy(packet.schema)),
        records[:3],
        codec=packet.codec,
        sync_interval=1,
    )
    return out.getvalue()


@st.composite
def byte_mutation(draw, payloads: list[bytes], multi: list[bytes]) -> bytes:
    op = draw(
        st.sampled_from(["truncate", "flip", "flip_head", "swap_chunks", "swap_blocks", "splice", "garbage"])
    )
    pool = multi if op == "swap_blocks" else payloads
    payload = pool[draw(st.integers(0, len(pool) - 1))]  # an index: a strategy over megabytes reprs them
    n = len(payload)
    if op == "truncate":
        return payload[: draw(st.integers(0, n))]
    if op in ("flip", "flip_head"):
        out = bytearray(payload)
        top = min(n, 4096) if op == "flip_head" else n  # the header, schema and first block's varints
        for _ in range(draw(st.integers(1, 6))):
            at = draw(st.integers(0, top - 1))
            out[at] ^= 1 << draw(st.integers(0, 7))
        return bytes(out)
    if op == "swap_chunks":
        size = draw(st.integers(1, max(1, n // 4)))
        a = draw(st.integers(0, n - 2 * size))
        b = draw(st.integers(a + size, n - size))
        return (
            payload[:a]
            + payload[b : b + size]
            + payload[a + size : b]
            + payload[a : a + size]
            + payload[b + size :]
        )
    if op == "swap_blocks":  # whole blocks reordered: still a valid container, its records in another order
        head, sync, blocks = _blocks(payload)
        i, j = draw(st.permutations(range(len(blocks))))[:2]
        blocks[i], blocks[j] = blocks[j], blocks[i]
        return head + b"".join(b + sync for b in blocks)
    if (
        op == "splice"
    ):  # a piece of the packet repeated somewhere else (a retransmission, a bad concatenation)
        a = draw(st.integers(0, n - 1))
        b = draw(st.integers(a, min(n, a + 4096)))
        at = draw(st.integers(0, n))
        return payload[:at] + payload[a:b] + payload[at:]
    garbage = draw(st.binary(min_size=1, max_size=64))
    return payload + garbage if draw(st.booleans()) else garbage + payload


def test_byte_mutations_are_decoded_or_dead_lettered(packets, every_packet):
    payloads = [p.payload for p in every_packet]
    multi = [
        multi_block(p)
        for p in (packets["ztf"][0], packets["ztf"][3], packets["lsst"][0], packets["atlas"][0])
    ]
    assert all(len(_blocks(m)[2]) == 3 for m in multi)

    @settings(FUZZ, max_examples=220)
    @given(st.lists(byte_mutation(payloads, multi), min_size=1, max_size=3))
    def run(mutated):
        decode_checked(messages(*mutated))

    OUTCOMES.clear()
    run()
    report_outcomes("byte mutations", "alert", "TruncatedAvroError", "CorruptAvroError", "NotAvroError")


# --------------------------------------------------------------------------------- record-level mutations
#: Fields the rules are about, per survey: (path to the record, field). ``*`` is every entry of a history array.
FIELDS = {
    "ztf": [
        (("candidate",), f) for f in ("jd", "ra", "dec", "magpsf", "sigmapsf", "fid", "pid", "candid", "diffmaglim",
                                       "isdiffpos", "ssnamenr")
    ] + [(("prv_candidates", "*"), f) for f in ("jd", "ra", "dec", "magpsf", "sigmapsf", "diffmaglim", "candid",
                                                 "pid", "fid")]
    + [(("fp_hists", "*"), f) for f in ("jd", "pid", "forcediffimflux")]
    + [((), "objectId"), ((), "candid")],
    "lsst": [(("diaSource",), f) for f in ("midpointMjdTai", "ra", "dec", "psfFlux", "psfFluxErr", "band",
                                           "diaSourceId", "diaObjectId")]
    + [(("prvDiaSources", "*"), f) for f in ("midpointMjdTai", "ra", "dec", "psfFlux", "psfFluxErr")]
    + [(("prvDiaForcedSources", "*"), f) for f in ("midpointMjdTai", "psfFlux", "psfFluxErr", "band")],
    "atlas": [(("candidate",), f) for f in ("mjd", "RA", "Dec", "Mag", "Dmag", "filter")] + [((), "objectId")],
}  # fmt: skip

HOSTILE_FLOATS = [
    math.nan, math.inf, -math.inf, 99.0, -99.0, 0.0, -0.0, -1.0, 1e30, -1e30, 120.0, -91.0, 360.0, 400.0, 1e-30,
    2400000.5, 1480360995.0, 5.0, 30.0, 2458000.0, 57999.0, 88069.0,
]  # fmt: skip
HOSTILE_INTS = [0, -1, 1, 7, 99, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)]
HOSTILE_STRINGS = ["", " ", "\x00", "t", "z", "q", "ZTF\x00x", "é" * 3, "x" * 200, "null"]


def _names(schema) -> dict[str, dict]:
    names: dict[str, dict] = {}
    collect_names(schema, names)
    return names


def _record_def(avro_type, names):
    """The record definition behind a field type (unions, named references and arrays resolved)."""
    if isinstance(avro_type, list):
        real = [t for t in avro_type if t != "null"]
        return _record_def(real[0], names) if len(real) == 1 else None
    if isinstance(avro_type, str):
        return _record_def(names[avro_type], names) if avro_type in names else None
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind == "record":
            return avro_type
        if kind == "array":
            return _record_def(avro_type.get("items"), names)
        if isinstance(kind, dict | list) or kind in names:
            return _record_def(kind, names)
    return None


def field_of(schema: dict, path: tuple[str, ...], field: str) -> tuple[dict, dict] | None:
    """(the record definition holding ``field``, the field's definition) in a writer schema."""
    names = _names(schema)
    rec = schema
    for name in path:
        if name == "*":
            continue
        f = next((f for f in rec.get("fields", ()) if f.get("name") == name), None)
        if f is None:
            return None
        rec = _record_def(f["type"], names)
        if rec is None:
            return None
    f = next((f for f in rec.get("fields", ()) if f.get("name") == field), None)
    return (rec, f) if f is not None else None


def primitive_of(avro_type, names) -> str | None:
    if isinstance(avro_type, list):
        real = [t for t in avro_type if t != "null"]
        return primitive_of(real[0], names) if len(real) == 1 else None
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        return (
            kind
            if isinstance(kind, str) and kind not in ("record", "array", "map", "enum", "fixed")
            else None
        )
    if isinstance(avro_type, str):
        return primitive_of(names[avro_type], names) if avro_type in names else avro_type
    return None


def instances(value, avro_type, target: dict, names):
    """Every dict of a record value whose schema type is the record definition ``target``."""
    if value is None:
        return
    if isinstance(avro_type, list):
        for t in avro_type:
            if t == "null":
                continue
            yield from instances(value, t, target, names)
            return
    if isinstance(avro_type, str):
        if avro_type in names:
            yield from instances(value, names[avro_type], target, names)
        return
    if not isinstance(avro_type, dict):
        return
    kind = avro_type.get("type")
    if kind == "record" and isinstance(value, dict):
        if avro_type is target:
            yield value
        for f in avro_type.get("fields", ()):
            yield from instances(value.get(f["name"]), f["type"], target, names)
    elif kind == "array" and isinstance(value, list):
        for item in value:
            yield from instances(item, avro_type.get("items"), target, names)
    elif isinstance(kind, dict | list) or (isinstance(kind, str) and kind in names):
        yield from instances(value, kind, target, names)


def targets(record: dict, path: tuple[str, ...]) -> list[dict]:
    """The dicts at ``path`` in a record (every history entry for ``*``)."""
    found = [record]
    for name in path:
        nxt = []
        for d in found:
            if name == "*":
                nxt.extend(x for x in (d or []) if isinstance(x, dict))
            elif isinstance(d, dict):
                nxt.append(d.get(name))
        found = nxt
    return [d for d in found if isinstance(d, dict)]


def encode(schema: dict, records: list[dict], codec: str = "null") -> bytes:
    out = io.BytesIO()
    try:
        fastavro.writer(out, fastavro.parse_schema(copy.deepcopy(schema)), records, codec=codec)
    except Exception:  # a combination fastavro cannot write: not an input anyone can send
        reject()
    return out.getvalue()


@st.composite
def record_mutation(draw, packets: list[Packet]) -> bytes:
    packet = draw(st.sampled_from(packets))
    schema = copy.deepcopy(packet.schema)
    records = [copy.deepcopy(r) for r in packet.records]
    names = _names(schema)
    path, field = draw(st.sampled_from(FIELDS[packet.survey]))
    found = field_of(schema, path, field)
    if found is None:
        reject()
    rec_def, f_def = found
    prim = primitive_of(f_def["type"], names)
    op = draw(st.sampled_from(["value", "value", "value", "null", "drop", "retype", "non_utf8"]))
    record = records[draw(st.integers(0, len(records) - 1))]
    where = targets(record, path)
    if not where:
        reject()
    if path and path[-1] == "*" and draw(st.booleans()):
        where = [where[draw(st.integers(0, len(where) - 1))]]  # one history entry, not all of them
    codec = draw(st.sampled_from(["null", packet.codec]))

    def values_for(prim_type):
        if prim_type in ("float", "double"):
            return st.one_of(
                st.sampled_from(HOSTILE_FLOATS), st.floats(width=32 if prim_type == "float" else 64)
            )
        if prim_type == "int":
            return st.sampled_from([v for v in HOSTILE_INTS if -(2**31) <= v < 2**31])
        if prim_type == "long":
            return st.sampled_from(HOSTILE_INTS)
        if prim_type == "string":
            return st.sampled_from(HOSTILE_STRINGS)
        if prim_type == "boolean":
            return st.booleans()
        return st.nothing()

    if op == "value":
        if prim is None:
            reject()
        value = draw(values_for(prim))
        for d in where:
            d[field] = value
    elif op == "null":
        if not (isinstance(f_def["type"], list) and "null" in f_def["type"]):
            f_def["type"] = ["null", f_def["type"]]
        for d in where:
            d[field] = None
    elif op == "drop":
        rec_def["fields"] = [f for f in rec_def["fields"] if f is not f_def]
        for d in instances_all(records, schema, rec_def, names):
            d.pop(field, None)
    elif op == "retype":
        new = draw(
            st.sampled_from([t for t in ("string", "boolean", "long", "double", "bytes") if t != prim])
        )
        f_def["type"] = new
        f_def.pop("default", None)
        fill = {"string": "42", "boolean": True, "long": 42, "double": 42.0, "bytes": b"42"}[new]
        for d in instances_all(records, schema, rec_def, names):
            d[field] = fill
    else:  # non-UTF-8 bytes inside a string field: written as a placeholder, then patched in the bytes
        if prim != "string":
            reject()
        placeholder = "\u2603PLACEHOLDER\u2603"
        for d in where:
            d[field] = placeholder
        payload = encode(schema, records, "null")
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"]))
        raw = placeholder.encode()
        return payload.replace(raw, (bad * len(raw))[: len(raw)])
    return encode(schema, records, codec)


def instances_all(records, schema, rec_def, names):
    out = []
    for r in records:
        out.extend(instances(r, schema, rec_def, names))
    return out


def test_record_mutations_are_dead_lettered_or_plausible(every_packet):
    @settings(FUZZ, max_examples=260)
    @given(st.lists(record_mutation(every_packet), min_size=1, max_size=3))
    def run(mutated):
        decode_checked(messages(*mutated))

    OUTCOMES.clear()
    run()
    report_outcomes(
        "record mutations", "alert", "alert with dropped points", "ImplausibleValueError", "MissingFieldError",
        "UnknownSchemaError", "CorruptAvroError", "InvalidValueError",
    )  # fmt: skip


@st.composite
def batch_of(draw, packets: list[Packet]) -> list[RawMessage]:
    """A batch mixing surveys, originals, mutated copies and redeliveries (the same message again, or the same
    candid with other content), on two partitions."""
    originals = st.sampled_from(packets).map(lambda p: p.payload)
    payloads = draw(st.lists(st.one_of(originals, record_mutation(packets)), min_size=1, max_size=5))
    repeats = draw(st.lists(st.integers(0, len(payloads) - 1), max_size=3))
    payloads += [payloads[i] for i in repeats]
    order = draw(st.permutations(range(len(payloads))))
    return [RawMessage("fuzz", i % 2, i, payloads[j], key=f"{i}.avro") for i, j in enumerate(order)]


def test_batches_with_duplicates_and_mixed_surveys(every_packet):
    @settings(FUZZ, max_examples=60)
    @given(batch_of(every_packet), batch_of(every_packet))
    def run(first, second):
        one = decode_checked(first)
        two = decode_checked([RawMessage("fuzz2", m.partition, m.offset, m.payload, m.key) for m in second])
        # across batches a candid is decoded again (the keyed upserts and the lake's dedupe make it harmless)
        keys_one = set(zip(one.tables.alerts["survey"], one.tables.alerts["candid"], strict=True))
        keys_two = set(zip(two.tables.alerts["survey"], two.tables.alerts["candid"], strict=True))
        both = decode_checked(first + [RawMessage("fuzz2", m.partition, m.offset, m.payload) for m in second])
        assert (
            set(zip(both.tables.alerts["survey"], both.tables.alerts["candid"], strict=True))
            == keys_one | keys_two
        )

    OUTCOMES.clear()
    run()
    report_outcomes("batches", "alert", "ImplausibleValueError")


# ------------------------------------------------------------------------------------------- big inputs
def _peak(fn):
    """(result, tracemalloc peak in bytes, seconds) of ``fn()``."""
    tracemalloc.start()
    t = time.perf_counter()
    try:
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return out, peak, time.perf_counter() - t


@pytest.mark.timeout(120)
def test_20_mb_messages(packets):
    ztf = packets["ztf"][0]
    rec = copy.deepcopy(ztf.records[0])
    rng = np.random.default_rng(0)
    rec["cutoutScience"]["stampData"] = rng.bytes(20 * 2**20)  # a 20 MB stamp: an odd but decodable alert
    big_stamp = encode(ztf.schema, [rec])
    cases = {
        "big stamp": big_stamp,
        "random bytes": rng.bytes(20 * 2**20),
        "cut in the stamp": big_stamp[: 12 * 2**20],
        "packet + 20 MB of garbage": ztf.payload + rng.bytes(20 * 2**20),
        "over the limit": ztf.payload + bytes(MAX_PACKET_BYTES),
    }
    msgs = messages(*cases.values())
    (result, peak, seconds) = _peak(lambda: decode_checked(msgs))
    tables, dead, raw = result
    reasons = {d.offset: d.reason for d in dead}
    assert tables.alerts["offset"].tolist() == [0]  # the big stamp decodes
    assert len(tables.stamps["cutout_science"].iloc[0]) == 20 * 2**20
    assert raw["payload"].iloc[0] is msgs[0].payload  # archived as it came, not copied
    assert "not an Avro container" in reasons[1]
    assert "truncated Avro container" in reasons[2]
    assert "corrupt Avro" in reasons[3] or "truncated Avro" in reasons[3]
    assert "over the 32 MiB limit" in reasons[4] and dead[-1].error == "OversizeError"
    assert peak < 300 * 2**20, (
        f"tracemalloc peak {peak / 2**20:.0f} MiB for {sum(map(len, cases.values())) / 2**20:.0f} MiB in"
    )
    assert seconds < 60


def _with_history(packet: Packet, field: str, n: int) -> bytes:
    """A container of the packet's alert with ``n`` entries in ``field`` (its own entries repeated). Spliced
    from two small encodings (1 and 2 entries) rather than written entry by entry: fast for 10^5."""
    rec = copy.deepcopy(next(r for r in packet.records if r.get(field)))
    parsed = fastavro.parse_schema(copy.deepcopy(packet.schema))

    def datum(k: int) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, {**rec, field: [rec[field][0]] * k})
        return out.getvalue()

    one, two = datum(1), datum(2)
    at = next(i for i, (a, b) in enumerate(zip(one, two, strict=False)) if a != b)  # the array's count
    size = len(two) - len(one)
    item, rest = two[at + 1 : at + 1 + size], one[at + 1 + size :]
    assert one[at] == _zz(1)[0] and two[at] == _zz(2)[0]
    body = one[:at] + _zz(n) + item * n + rest
    return _container(json.dumps(packet.schema).encode(), "null", 1, body)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("survey, field", [("ztf", "prv_candidates"), ("lsst", "prvDiaForcedSources")])
def test_1e5_history_entries_are_refused_cheaply(packets, survey, field):
    packet = next(p for p in packets[survey] if any(r.get(field) for r in p.records))
    payload = _with_history(packet, field, 10**5)
    (result, peak, seconds) = _peak(lambda: decode_checked(messages(payload)))
    (letter,) = result.dead
    assert result.tables.alerts.empty and letter.error == "OversizeError"
    assert f"{field} has 100000 entries, more than the {MAX_HISTORY}" in letter.reason
    # refused from the block's shape (arrays of empty records), not after building 10^5 dicts
    assert peak < max(4 * len(payload), 64 * 2**20), (
        f"peak {peak / 2**20:.0f} MiB for {len(payload) / 2**20:.1f} MiB"
    )
    assert seconds < 30


def test_history_at_the_limit_is_accepted(packets):
    ztf = packets["ztf"][0]
    payload = _with_history(ztf, "prv_candidates", MAX_HISTORY)
    tables, dead, _ = decode_checked(messages(payload))
    assert not dead and len(tables.alerts) == 1


def _zz(n: int) -> bytes:
    """Avro's zig-zag varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _container(schema: dict | bytes, codec: str, count: int, data: bytes) -> bytes:
    """A container whose single block claims ``count`` records in ``data`` (already compressed)."""
    text = schema if isinstance(schema, bytes) else json.dumps(schema).encode()
    meta = _zz(2) + _zz(11) + b"avro.schema" + _zz(len(text)) + text
    meta += _zz(10) + b"avro.codec" + _zz(len(codec)) + codec.encode() + _zz(0)
    sync = b"S" * 16
    return MAGIC + meta + sync + _zz(count) + _zz(len(data)) + data + sync


def _stream(compressor, chunk: bytes, times: int) -> bytes:
    return b"".join(compressor.compress(chunk) for _ in range(times)) + compressor.flush()


@pytest.mark.timeout(120)
def test_decompression_bombs_stop_at_the_budget(packets):
    schema = packets["ztf"][0].schema
    mib = bytes(2**20)
    bombs = {  # 256 MiB of zeros deflated (~250 kB), a snappy block declaring 4 GiB, 48 MiB of zeros in bzip2
        "deflate": _container(
            schema, "deflate", 1, _stream(zlib.compressobj(9, zlib.DEFLATED, -15), mib, 256)
        ),
        "snappy": _container(schema, "snappy", 1, b"\xff\xff\xff\xff\x0f" + bytes(64) + bytes(4)),
        "bzip2": _container(schema, "bzip2", 1, _stream(bz2.BZ2Compressor(1), mib, 48)),
        "zstandard": _container(schema, "zstandard", 1, b"\x28\xb5\x2f\xfd" + bytes(32)),
    }
    (result, peak, seconds) = _peak(lambda: decode_checked(messages(*bombs.values())))
    reasons = {d.offset: (d.error, d.reason) for d in result.dead}
    assert len(reasons) == 4
    for i in range(3):
        assert reasons[i][0] == "OversizeError" and "decompression bomb" in reasons[i][1], reasons[i]
    assert "unsupported Avro codec 'zstandard'" in reasons[3][1]
    assert peak < 100 * 2**20 and seconds < 60


def test_snappy_and_deflate_still_decode(packets):
    rec = packets["ztf"][0].records[0]
    for codec in ("deflate", "snappy", "bzip2", "xz"):
        tables, dead, _ = decode_checked(messages(encode(packets["ztf"][0].schema, [rec], codec)))
        assert not dead and len(tables.alerts) == 1, codec
    assert cramjam.snappy  # the real snappy codec is what decodes


@pytest.mark.timeout(60)
def test_arrays_of_zero_byte_items_are_refused():
    """An array of nulls takes one varint for any count: 10^15 items in 8 bytes would loop for ever."""
    schema = {
        "type": "record",
        "name": "alert",
        "namespace": "ztf",
        "fields": [
            {"name": "objectId", "type": "string"},
            {
                "name": "candidate",
                "type": {"type": "record", "name": "candidate", "fields": [{"name": "jd", "type": "double"}]},
            },
            {"name": "nothing", "type": {"type": "array", "items": "null"}},
        ],
    }
    datum = b"\x02a" + bytes(8) + _zz(2**55) + b"\0"  # objectId 'a', jd 0, 2^55 nulls, end of the array
    t = time.perf_counter()
    tables, dead, _ = decode_checked(messages(_container(schema, "null", 1, datum)))
    assert time.perf_counter() - t < 5
    (letter,) = dead
    assert letter.error == "UnknownSchemaError" and "take no bytes" in letter.reason


def test_huge_and_deep_schemas_are_refused(packets):
    schema = copy.deepcopy(packets["ztf"][0].schema)
    schema["doc"] = "x" * (600 * 1024)
    huge = encode(schema, list(packets["ztf"][0].records))
    deep = _container(b"[" * 100_000 + b"]" * 100_000, "null", 0, b"")
    tables, dead, _ = decode_checked(messages(huge, deep))
    assert tables.alerts.empty and len(dead) == 2
    assert "writer schema of" in dead[0].reason and "over the 512 kB limit" in dead[0].reason
    assert dead[0].error == "OversizeError"
    assert "nests too deeply" in dead[1].reason


# ------------------------------------------------------------------------------------------- rules
def _mutated(packet: Packet, change) -> bytes:
    records = [copy.deepcopy(r) for r in packet.records[:1]]
    schema = copy.deepcopy(packet.schema)
    change(records[0], schema)
    return encode(schema, records)


def _set(path: tuple, value):
    def change(record, schema):
        del schema
        target = record
        for name in path[:-1]:
            target = target[name]
        target[path[-1]] = value

    return change


def _first_nd(record):
    return next(i for i, p in enumerate(record["prv_candidates"]) if p["candid"] is None)


def _first_det(record):
    return next(i for i, p in enumerate(record["prv_candidates"]) if p["candid"] is not None)


#: (survey, packet index, change, outcome, words the reason must hold): "dead" or "dropped" (the alert kept,
#: its ``dropped_reason`` naming the field and value).
RULES = {
    "ztf magpsf 99": ("ztf", 0, _set(("candidate", "magpsf"), 99.0), "dead", ["candidate.magpsf is 99.0", "(5, 30)"]),
    "ztf magpsf nan": ("ztf", 0, _set(("candidate", "magpsf"), math.nan), "dead", ["candidate.magpsf is nan"]),
    "ztf magpsf negative": ("ztf", 0, _set(("candidate", "magpsf"), -18.0), "dead", ["candidate.magpsf is -18.0"]),
    "ztf sigmapsf 0": ("ztf", 0, _set(("candidate", "sigmapsf"), 0.0), "dead", ["candidate.sigmapsf is 0.0"]),
    "ztf sigmapsf inf": ("ztf", 0, _set(("candidate", "sigmapsf"), math.inf), "dead", ["candidate.sigmapsf is inf"]),
    "ztf dec 120": ("ztf", 0, _set(("candidate", "dec"), 120.0), "dead", ["candidate.dec is 120.0", "[-90, 90]"]),
    "ztf ra 360": ("ztf", 0, _set(("candidate", "ra"), 360.0), "dead", ["candidate.ra is 360.0", "[0, 360)"]),
    "ztf ra -1": ("ztf", 0, _set(("candidate", "ra"), -1.0), "dead", ["candidate.ra is -1.0"]),
    "ztf jd 1990": ("ztf", 0, _set(("candidate", "jd"), 2448000.5), "dead", ["candidate.jd is 2448000.5", "era"]),
    "ztf pid 0": ("ztf", 0, _set(("candidate", "pid"), 0), "dead", ["candidate.pid is 0"]),
    "ztf candid int64 min": ("ztf", 0, lambda r, s: (r.update(candid=-(2**63)), r["candidate"].update(candid=-(2**63))), "dead", [str(-(2**63))]),
    "ztf objectId NUL": ("ztf", 0, _set(("objectId",), "ZTF\x00"), "dead", ["objectId is 'ZTF\\x00'"]),
    "ztf ssnamenr NUL": ("ztf", 0, _set(("candidate", "ssnamenr"), "12\x00"), "dead", ["candidate.ssnamenr", "NUL"]),
    "ztf prv magpsf 99": ("ztf", 2, lambda r, s: r["prv_candidates"][_first_det(r)].update(magpsf=99.0), "dropped", ["].magpsf is 99.0"]),
    "ztf prv dec 120": ("ztf", 2, lambda r, s: r["prv_candidates"][_first_det(r)].update(dec=120.0), "dropped", ["].dec is 120.0"]),
    "ztf prv sigmapsf nan": ("ztf", 2, lambda r, s: r["prv_candidates"][_first_det(r)].update(sigmapsf=math.nan), "dropped", ["].sigmapsf is nan"]),
    "ztf non-detection limit -1006": ("ztf", 2, lambda r, s: r["prv_candidates"][_first_nd(r)].update(diffmaglim=-1006.9), "dropped", ["].diffmaglim is -1006.9"]),
    "ztf fp jd 1990": ("ztf", 4, lambda r, s: r["fp_hists"][0].update(jd=2448000.5), "dropped", ["fp_hists[0].jd is 2448000.5"]),
    "lsst psfFlux nan": ("lsst", 0, _set(("diaSource", "psfFlux"), math.nan), "dead", ["diaSource.psfFlux is nan"]),
    "lsst psfFluxErr 0": ("lsst", 0, _set(("diaSource", "psfFluxErr"), 0.0), "dead", ["diaSource.psfFluxErr is 0.0"]),
    "lsst psfFluxErr -1": ("lsst", 0, _set(("diaSource", "psfFluxErr"), -1.0), "dead", ["diaSource.psfFluxErr is -1.0"]),
    "lsst psfFlux 1e30": ("lsst", 0, _set(("diaSource", "psfFlux"), 1e30), "dead", ["diaSource.psfFlux is 1.0000000150474662e+30"]),
    "lsst dec 120": ("lsst", 0, _set(("diaSource", "dec"), 120.0), "dead", ["diaSource.dec is 120.0"]),
    "lsst unix time": ("lsst", 0, _set(("diaSource", "midpointMjdTai"), 1480360995.0), "dead", ["diaSource.midpointMjdTai is 1480360995.0", "era"]),
    "lsst band w": ("lsst", 0, _set(("diaSource", "band"), "w"), "dead", ["diaSource.band is 'w'"]),
    "lsst prv flux inf": ("lsst", 3, lambda r, s: r["prvDiaSources"][0].update(psfFlux=math.inf), "dropped", ["prvDiaSources[0].psfFlux is inf"]),
    "lsst forced err nan": ("lsst", 3, lambda r, s: r["prvDiaForcedSources"][0].update(psfFluxErr=math.nan), "dropped", ["prvDiaForcedSources[0].psfFluxErr is nan"]),
    "atlas Mag 99": ("atlas", 0, _set(("candidate", "Mag"), 99.0), "dead", ["candidate.Mag is 99.0"]),
    "atlas Dmag -0.1": ("atlas", 0, _set(("candidate", "Dmag"), -0.1), "dead", ["candidate.Dmag is -0.1"]),
    "atlas Dec 120": ("atlas", 0, _set(("candidate", "Dec"), 120.0), "dead", ["candidate.Dec is 120.0"]),
    "atlas RA 360": ("atlas", 0, _set(("candidate", "RA"), 360.0), "dead", ["candidate.RA is 360.0"]),
    "atlas mjd 0": ("atlas", 0, _set(("candidate", "mjd"), 0.0), "dead", ["candidate.mjd is 0.0", "era"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(RULES))
def test_each_plausibility_rule(packets, case):
    survey, index, change, outcome, words = RULES[case]
    packet = packets[survey][index]
    payload = _mutated(packet, change)
    good = packets[survey][1 if index == 0 else 0].payload
    tables, dead, _ = decode_checked(messages(good, payload))
    if outcome == "dead":
        (letter,) = dead
        assert letter.offset == 1 and letter.error in ("ImplausibleValueError", "InvalidValueError")
        for w in words:
            assert w in letter.reason, letter.reason
        assert tables.alerts["offset"].tolist() == [0]
    else:
        assert not dead
        row = tables.alerts.set_index("offset").loc[1]
        assert row["dropped_points"] >= 1
        for w in words:
            assert w in row["dropped_reason"], row["dropped_reason"]
        untouched = tables.alerts.set_index("offset").loc[0]
        assert untouched["dropped_points"] == 0 and pd.isna(untouched["dropped_reason"])


def test_ids_at_the_int64_limit_are_taken(packets):
    packet = packets["ztf"][0]

    def change(record, schema):
        del schema
        record["candid"] = record["candidate"]["candid"] = 2**63 - 1
        record["candidate"]["pid"] = 2**63 - 1

    tables, dead, raw = decode_checked(messages(_mutated(packet, change)))
    assert not dead and tables.alerts["candid"].tolist() == [2**63 - 1] == raw["candid"].tolist()
    assert tables.alerts["pid"].tolist() == [2**63 - 1]


def test_real_absurd_history_points_are_dropped_and_named(shared_data):
    """ZTF17aaaedmd's real alerts carry non-detections whose diffmaglim is -1006.9: dropped, and said."""
    folder = shared_data / "ztf" / "object_sequences" / "ZTF17aaaedmd"
    msgs = [RawMessage("seq", 0, i, p.read_bytes()) for i, p in enumerate(sorted(folder.glob("*.avro")))]
    tables, dead, _ = decode_checked(msgs)
    flagged = tables.alerts[tables.alerts["dropped_points"] > 0]
    assert len(flagged) > 0 and flagged["dropped_reason"].str.contains("diffmaglim is -1006.9").all()
    assert (tables.non_detections["diffmaglim"].dropna() > 5).all()
    assert len(dead) == 5  # its HTML pages, as before


def test_duplicated_candids_within_and_across_batches(packets):
    ztf, lsst = packets["ztf"][0], packets["lsst"][0]
    other = _mutated(ztf, _set(("candidate", "magpsf"), 17.5))  # the same candid, other content
    first = decode_checked(messages(ztf.payload, ztf.payload, other, lsst.payload, lsst.payload))
    assert len(first.tables.alerts) == 2 and not first.dead
    # the first copy wins; the later ones are redeliveries (documented: docs/input-validation.md)
    assert first.tables.alerts["offset"].tolist() == [0, 3]
    assert first.tables.alerts.loc[0, "magpsf"] == ztf.records[0]["candidate"]["magpsf"]
    second = decode_checked(messages(other, ztf.payload, source="later"))
    assert second.tables.alerts["candid"].tolist() == [first.tables.alerts.loc[0, "candid"]]
