"""The envelope of one raw alert packet and of a packet that could not be used (docs/data-model.md).

Survey adapters take ``RawMessage`` bytes in and give the internal tables or ``DeadLetter`` rows out; the
coordinates (source, partition, offset) travel with every packet so a batch is replayable and its outputs
idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import pandas as pd


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One raw alert packet and where it came from.

    The coordinates (source, partition, offset) are what makes a batch replayable and its outputs
    idempotent: for Kafka they are the topic/partition/offset, for a night archive the archive's name,
    partition 0 and the file's index in sorted order.
    """

    source: str
    partition: int
    offset: int
    payload: bytes
    key: str | None = None  # a file name or Kafka key, for people reading dead letters
    path: str | None = None  # a file the payload is still to be read from (workers sharing the driver's disk)
    timestamp: float | None = None  # when it was produced (Kafka's message timestamp, Unix seconds): latency

    def loaded(self) -> RawMessage:
        """This message with its payload in memory (reads ``path`` when the payload was left on disk)."""
        if self.payload or not self.path:
            return self
        with open(self.path, "rb") as fh:
            return replace(self, payload=fh.read(), path=None)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A packet that could not be used, with a reason a person can act on. The payload is kept untouched."""

    source: str
    partition: int
    offset: int
    reason: str
    error: str
    payload: bytes
    key: str | None = None


def dead_letters_frame(letters: list[DeadLetter], batch_id: str) -> pd.DataFrame:
    cols = [f.name for f in fields(DeadLetter)]
    df = pd.DataFrame([{c: getattr(d, c) for c in cols} for d in letters], columns=cols)
    df["partition"] = df["partition"].astype("int32")
    df["offset"] = df["offset"].astype("int64")
    df["batch_id"] = batch_id
    return df
