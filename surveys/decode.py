"""Batch decode: raw packets of one micro-batch -> the internal tables, dead letters and raw-archive rows.

This is the broker's CPU ceiling, so the loop does per packet only what must be per packet (find the adapter,
decode, check, split) and each adapter builds every column once per batch (e.g. ``surveys.ztf.ZtfBatch``).
The loop never names a survey: the registry (``surveys.registry``) finds each packet's adapter from its writer
schema, or from its schema-registry id for schemaless messages; a batch may mix surveys. One bad packet never
stops the batch: anything that goes wrong with it, foreseen or not, becomes a dead letter with a reason.

Hostile input (docs/input-validation.md): a message over ``MAX_PACKET_BYTES`` is a dead letter before it is
read; the containers, schemas and history arrays have their own limits (``surveys.avro``, the adapters), and the
adapters drop or dead-letter physically absurd values (``surveys.plausibility``). Reasons are cut to
``MAX_REASON_CHARS``.
"""

from __future__ import annotations

import io
import logging
from typing import NamedTuple

import pandas as pd

from alert_broker.features.tables import TABLE_NAMES, Tables
from alert_broker.surveys.adapter import SurveyBatch
from alert_broker.surveys.avro import (
    MAGIC,
    SHAPE_CHECK_BYTES,
    WIRE_PREFIX_SIZE,
    Container,
    check_shape,
    materialised,
    read_container,
    read_records,
    record_reader,
    shape_reader,
    single_alert_container,
    unframe,
    wire_schema_id,
    wrap_datum,
)
from alert_broker.surveys.errors import CorruptAvroError, OversizeError, PacketError, UnknownSchemaError
from alert_broker.surveys.messages import DeadLetter, RawMessage
from alert_broker.surveys.plausibility import MAX_PACKET_BYTES, cut_reason
from alert_broker.surveys.registry import DEFAULT_REGISTRY, Analysed, SurveyRegistry

log = logging.getLogger(__name__)

RAW_COLUMNS = ("candid", "oid", "night", "payload")


class DecodedBatch(NamedTuple):
    """What decoding a batch gives: the tables, the dead letters and the raw-archive rows."""

    tables: Tables
    dead: list[DeadLetter]
    raw: pd.DataFrame


def _dead(msg: RawMessage, reason: str, error: str) -> DeadLetter:
    return DeadLetter(
        source=msg.source,
        partition=msg.partition,
        offset=msg.offset,
        reason=cut_reason(reason),
        error=error,
        payload=msg.payload,
        key=msg.key,
    )


def _unexpected(err: Exception, survey: str = "survey") -> str:
    return (
        f"unexpected error while decoding ({type(err).__name__}: {err}); the packet has a shape the {survey} "
        "adapter does not foresee: keep this dead letter and report it"
    )


def _reason(failures: list[tuple[int, Exception]], n_records: int, survey: str) -> str:
    """One reason for all the unusable records of one file (so a big file is dead-lettered once)."""

    def say(err: Exception) -> str:
        return str(err) if isinstance(err, PacketError) else _unexpected(err, survey)

    if n_records == 1:
        return say(failures[0][1])
    if len(failures) == 1:
        i, err = failures[0]
        return f"record {i + 1} of {n_records} in this file: {say(err)}"
    shown = "; ".join(f"record {i + 1}: {say(err)}" for i, err in failures[:3])
    more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
    return f"{len(failures)} of {n_records} records in this file are unusable: {shown}{more}"


def _schemaless(payload: bytes, registry: SurveyRegistry) -> Container:
    """A schema-registry message whose body is a bare Avro datum: decoded with the schema its id names."""
    schema_id = wire_schema_id(payload)
    found = registry.for_schema_id(schema_id) if schema_id is not None else None
    if found is None:
        known = ", ".join(registry.names)
        raise UnknownSchemaError(
            f"unknown schema: a schema-registry message (magic 0) with schema id {schema_id}, which no survey "
            f"adapter ({known}) knows; Rubin's ids are major * 100 + minor of an lsst.alert version"
        )
    if len(payload) - WIRE_PREFIX_SIZE > SHAPE_CHECK_BYTES:  # as for a container's block (surveys.avro)
        shape = shape_reader(b"wire:%d" % schema_id, found.parsed)
        if shape is not None:
            check_shape(payload[WIRE_PREFIX_SIZE:], 1, found.parsed, shape)
    stream = io.BytesIO(payload)
    stream.seek(WIRE_PREFIX_SIZE)
    records: list = []
    try:
        read_records(
            payload, stream, 1, found.parsed, record_reader(b"wire:%d" % schema_id, found.parsed), records
        )
    except Exception as err:  # fastavro raises EOFError, IndexError, UnicodeDecodeError, ... on bad bytes
        raise CorruptAvroError(
            f"corrupt Avro data: the message does not decode against schema id {schema_id} "
            f"({found.adapter.info.name}) ({type(err).__name__}: {err})"
        ) from err
    if stream.tell() != len(payload):
        raise CorruptAvroError(
            f"corrupt Avro data: the datum of schema id {schema_id} ends at byte {stream.tell()} of "
            f"{len(payload)}; the message is damaged"
        )
    return Container(
        records=records, schema=found, codec="wire", datum=memoryview(payload)[WIRE_PREFIX_SIZE:]
    )


def read_packet(
    payload: bytes, registry: SurveyRegistry = DEFAULT_REGISTRY, columnar: bool = False
) -> Container:
    """A packet's records and their adapter (``container.schema`` is an ``Analysed``), or a PacketError.
    ``columnar``: arrays the adapter names may be ``compiled_reader.ItemBlock``s (``read_container``)."""
    body = unframe(payload)
    if not body.startswith(MAGIC) and wire_schema_id(body) is not None:
        return _schemaless(body, registry)
    return read_container(body, registry.analyse, columnar)


def _concat_tables(parts: list[Tables]) -> Tables:
    if len(parts) == 1:
        return parts[0]
    out = Tables()
    for name in TABLE_NAMES:
        frames = [getattr(p, name) for p in parts if not getattr(p, name).empty]
        setattr(out, name, pd.concat(frames, ignore_index=True) if frames else getattr(parts[0], name))
    return out


def decode_batch(
    messages: list[RawMessage], batch_id: str, registry: SurveyRegistry = DEFAULT_REGISTRY
) -> DecodedBatch:
    """Decode packets of any known survey into (tables, dead letters, raw-archive rows).

    Raw rows are ``candid, oid, night, payload``: the payload is the original bytes when the packet held one
    alert, a schema-registry message's datum as it arrived wrapped in a container of its writer schema, else
    (a multi-alert file) that alert re-encoded alone with the file's writer schema, so the raw archive always
    holds one single-alert container per candid. A candid seen twice in the batch (a redelivery) is kept once.
    A multi-alert file with bad records ingests the good ones and yields one dead letter that names the bad
    records and carries the whole file, untouched.
    """
    batches: dict[str, SurveyBatch] = {}
    dead: list[DeadLetter] = []
    for msg in messages:
        if len(msg.payload) > MAX_PACKET_BYTES:
            reason = (
                f"message of {len(msg.payload)} bytes, over the {MAX_PACKET_BYTES // 2**20} MiB limit of one alert "
                "packet (ZTF alerts are ~100 kB, Fink's multi-alert files a few MB): not decoded; split it into "
                "smaller files (docs/input-validation.md)"
            )
            dead.append(_dead(msg, reason, OversizeError.__name__))
            continue
        try:
            container = read_packet(msg.payload, registry, columnar=True)
        except PacketError as err:
            dead.append(_dead(msg, str(err), type(err).__name__))
            continue
        except Exception as err:  # never let one packet stop the batch
            dead.append(_dead(msg, _unexpected(err), type(err).__name__))
            continue
        analysed: Analysed = container.schema
        adapter = analysed.adapter
        name = adapter.info.name
        batch = batches.get(name)
        if batch is None:
            batch = batches[name] = adapter.new_batch()
        records = container.records
        single = len(records) == 1
        failures: list[tuple[int, Exception]] = []
        for i, record in enumerate(records):
            try:
                alert = adapter.extract(record, analysed.info)
                # the archive keeps one self-describing container per alert: a wire message's datum wrapped in
                # one, the packet itself when it is one, else the record re-encoded alone with its writer schema
                if container.datum is not None:
                    raw = wrap_datum(container.datum, analysed.info)
                elif single:  # (without a schema-registry prefix, if one framed the container)
                    raw = unframe(msg.payload)
                else:
                    raw = single_alert_container(materialised(record), analysed.info, container.codec)
            except Exception as err:  # PacketError, or anything unforeseen: a dead letter either way
                failures.append((i, err))
                continue
            batch.add(alert, msg.source, msg.partition, msg.offset, raw)
        if failures:
            dead.append(_dead(msg, _reason(failures, len(records), name), type(failures[0][1]).__name__))

    if not batches:
        batches[registry.names[0]] = registry.adapters[0].new_batch()
    parts = [b.tables(batch_id) for b in batches.values()]
    dropped = [int(t.alerts["dropped_points"].sum()) for t in parts if "dropped_points" in t.alerts]
    if sum(dropped):
        log.info(
            "batch %s: %d history point(s) dropped by the plausibility rules (docs/input-validation.md); "
            "the alerts' dropped_points and dropped_reason say which",
            batch_id, sum(dropped), extra={"batch_id": batch_id, "dropped_points": sum(dropped)},
        )  # fmt: skip
    raws = [b.raw_frame(t.alerts["night"].to_numpy()) for b, t in zip(batches.values(), parts, strict=True)]
    raw = raws[0] if len(raws) == 1 else pd.concat(raws, ignore_index=True)
    return DecodedBatch(_concat_tables(parts), dead, raw)


__all__ = ["RAW_COLUMNS", "DecodedBatch", "decode_batch", "read_packet"]
