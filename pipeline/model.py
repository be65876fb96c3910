"""The in-memory shapes that flow through one micro-batch (see docs/data-model.md)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import pandas as pd

#: Names of the per-batch tables, in the order sinks write them.
TABLE_NAMES = ("alerts", "detections", "non_detections", "forced_photometry", "stamps")


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


@dataclass(slots=True)
class Tables:
    """The decoded tables of one batch (or one part of a batch). Every field is a pandas DataFrame."""

    alerts: pd.DataFrame = field(default_factory=pd.DataFrame)
    detections: pd.DataFrame = field(default_factory=pd.DataFrame)
    non_detections: pd.DataFrame = field(default_factory=pd.DataFrame)
    forced_photometry: pd.DataFrame = field(default_factory=pd.DataFrame)
    stamps: pd.DataFrame = field(default_factory=pd.DataFrame)

    def items(self):
        return [(name, getattr(self, name)) for name in TABLE_NAMES]
