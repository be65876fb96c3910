"""Batch decode: raw ZTF packets of one micro-batch -> the contract's tables, dead letters and raw archive rows.

This is the broker's CPU ceiling, so the loop does per packet only what must be per packet (decode, check,
split) and builds every column once per batch in ``pipeline.ztf.ZtfBatch``. One bad packet never stops the
batch: anything that goes wrong with it, foreseen or not, becomes a dead letter with a reason.
"""

from __future__ import annotations

import pandas as pd

from alert_broker.features.tables import Tables
from alert_broker.surveys.messages import DeadLetter, RawMessage
from alert_broker.surveys.ztf import (
    PacketError,
    ZtfBatch,
    extract_alert,
    read_container,
    single_alert_container,
)

RAW_COLUMNS = ("candid", "oid", "night", "payload")


def _dead(msg: RawMessage, reason: str, error: str) -> DeadLetter:
    return DeadLetter(
        source=msg.source,
        partition=msg.partition,
        offset=msg.offset,
        reason=reason,
        error=error,
        payload=msg.payload,
        key=msg.key,
    )


def _unexpected(err: Exception) -> str:
    return (
        f"unexpected error while decoding ({type(err).__name__}: {err}); the packet has a shape the ZTF "
        "adapter does not foresee: keep this dead letter and report it"
    )


def _reason(failures: list[tuple[int, Exception]], n_records: int) -> str:
    """One reason for all the unusable records of one file (so a big file is dead-lettered once)."""

    def say(err: Exception) -> str:
        return str(err) if isinstance(err, PacketError) else _unexpected(err)

    if n_records == 1:
        return say(failures[0][1])
    if len(failures) == 1:
        i, err = failures[0]
        return f"record {i + 1} of {n_records} in this file: {say(err)}"
    shown = "; ".join(f"record {i + 1}: {say(err)}" for i, err in failures[:3])
    more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
    return f"{len(failures)} of {n_records} records in this file are unusable: {shown}{more}"


def decode_batch(messages: list[RawMessage], batch_id: str) -> tuple[Tables, list[DeadLetter], pd.DataFrame]:
    """Decode ZTF packets into (tables, dead letters, raw-archive rows).

    Raw rows are ``candid, oid, night, payload``: the payload is the original bytes when the packet held one
    alert, else that alert re-encoded alone with the file's writer schema, so the raw archive always holds
    one single-alert container per candid. A candid seen twice in the batch (a redelivery) is kept once.
    A multi-alert file with bad records ingests the good ones and yields one dead letter that names the bad
    records and carries the whole file, untouched.
    """
    batch = ZtfBatch()
    dead: list[DeadLetter] = []
    for msg in messages:
        try:
            container = read_container(msg.payload)
        except PacketError as err:
            dead.append(_dead(msg, str(err), type(err).__name__))
            continue
        except Exception as err:  # never let one packet stop the batch
            dead.append(_dead(msg, _unexpected(err), type(err).__name__))
            continue
        records = container.records
        single = len(records) == 1
        failures: list[tuple[int, Exception]] = []
        for i, record in enumerate(records):
            try:
                alert = extract_alert(record, container.schema)
                raw = (
                    msg.payload
                    if single
                    else single_alert_container(record, container.schema, container.codec)
                )
            except Exception as err:  # PacketError, or anything unforeseen: a dead letter either way
                failures.append((i, err))
                continue
            batch.add(alert, msg.source, msg.partition, msg.offset, raw)
        if failures:
            dead.append(_dead(msg, _reason(failures, len(records)), type(failures[0][1]).__name__))

    alerts = batch.alerts_frame(batch_id)
    tables = Tables(
        alerts=alerts,
        detections=batch.detections_frame(),
        non_detections=batch.non_detections_frame(),
        forced_photometry=batch.forced_frame(),
        stamps=batch.stamps_frame(),
    )
    return tables, dead, batch.raw_frame(alerts["night"].to_numpy())
