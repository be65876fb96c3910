"""The envelope of one raw alert packet and of a packet that could not be used (docs/data-model.md).

Survey adapters take ``RawMessage`` bytes in and give the internal tables or ``DeadLetter`` rows out; the
coordinates (source, partition, offset) travel with every packet so a batch is replayable and its outputs
idempotent.
"""

from __future__ import annotations

import pickle
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

    def __reduce_ex__(self, protocol: int):
        """Pickled with the payload as an out-of-band buffer where the protocol allows (5): Dask then ships a
        batch's packets to the workers as frames of their own, with no copy into the pickle and no scan of it
        (in a Kafka stream, pickling the packets into the decode tasks was ~40 % of the driver's CPU)."""
        payload = pickle.PickleBuffer(self.payload) if protocol >= 5 and self.payload else self.payload
        return (
            _rebuild_message,
            (self.source, self.partition, self.offset, payload, self.key, self.path, self.timestamp),
        )

    def loaded(self) -> RawMessage:
        """This message with its payload in memory (reads ``path`` when the payload was left on disk)."""
        if self.payload or not self.path:
            return self
        with open(self.path, "rb") as fh:
            return replace(self, payload=fh.read(), path=None)


def _rebuild_message(
    source: str,
    partition: int,
    offset: int,
    payload,
    key: str | None,
    path: str | None,
    timestamp: float | None,
) -> RawMessage:
    """Unpickle a ``RawMessage``: an out-of-band payload arrives as a buffer, and becomes bytes again."""
    return RawMessage(source, partition, offset, bytes(payload), key, path, timestamp)


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
