"""What an operator asks of the dead letters (``broker dead-letters``): how many, of which error, from where, an
example reason each; the latest ones; and a dead letter's untouched payload back, to look at with other tools.

PostgreSQL's ``dead_letter`` (without payloads) answers the first two; the lake's ``dead_letters`` table keeps
each message's raw bytes (docs/input-validation.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pandas as pd

from alert_broker.storage.lake import Lake

if TYPE_CHECKING:
    from alert_broker.storage.postgres import SummaryStore

#: A dead letter's coordinates: (source, partition, offset).
Coordinates = tuple[str, int, int]

_FILTER = (
    "(%(source)s::text IS NULL OR source = %(source)s) AND (%(error)s::text IS NULL OR error = %(error)s)"
)


def summary(store: SummaryStore, source: str | None = None, error: str | None = None) -> pd.DataFrame:
    """Per source and error: dead letters, batches, first and last offset, and one reason (the latest)."""
    return store.fetch_df(
        "SELECT source, error, count(*) AS dead_letters, count(DISTINCT batch_id) AS batches,"
        ' min("offset") AS first_offset, max("offset") AS last_offset,'
        ' (array_agg(reason ORDER BY partition DESC, "offset" DESC))[1] AS example_reason'
        f" FROM dead_letter WHERE {_FILTER} GROUP BY source, error ORDER BY dead_letters DESC, source, error",
        {"source": source, "error": error},
    )


def latest(
    store: SummaryStore, source: str | None = None, error: str | None = None, limit: int = 20
) -> pd.DataFrame:
    """The dead letters with the highest offsets of each partition first: the newest a stream produced."""
    return store.fetch_df(
        'SELECT source, partition, "offset", key, error, reason, batch_id FROM dead_letter'
        f' WHERE {_FILTER} ORDER BY "offset" DESC, source, partition LIMIT %(limit)s',
        {"source": source, "error": error, "limit": int(limit)},
    )


def parse_coordinates(text: str) -> Coordinates:
    """``SOURCE:PARTITION:OFFSET`` (a source may hold colons: ``archive:night``, ``kafka:topic``)."""
    source, sep, rest = text.rpartition(":")
    source, sep2, partition = source.rpartition(":")
    if not (sep and sep2 and source) or not partition.lstrip("-").isdigit() or not rest.isdigit():
        raise ValueError(f"{text!r} is not SOURCE:PARTITION:OFFSET (e.g. archive:ztf_public_20231017:0:412)")
    return source, int(partition), int(rest)


def payloads(lake: Lake, wanted: Iterable[Coordinates]) -> dict[Coordinates, bytes]:
    """The raw bytes of the dead letters at ``wanted``, as they arrived (those the lake holds)."""
    wanted = set(wanted)
    if not wanted:
        return {}
    sources = sorted({s for s, _, _ in wanted})
    offsets = sorted({o for _, _, o in wanted})
    df = lake.read_table(
        "dead_letters",
        columns=["source", "partition", "offset", "payload"],
        filters=[("source", "in", sources), ("offset", "in", offsets)],
    )
    out: dict[Coordinates, bytes] = {}
    for row in df.itertuples(index=False):
        key = (str(row.source), int(row.partition), int(row.offset))
        if key in wanted:
            out[key] = bytes(row.payload)
    return out
