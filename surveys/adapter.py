"""The survey adapter protocol: what the broker needs to know about a survey to ingest its alerts.

An adapter turns the records of a survey's alert packets into the internal tables (``features.tables``):
``recognises`` tells its writer schemas apart from other surveys', ``analyse`` learns once per schema what the
records hold (or raises the ``PacketError`` that makes the packet a dead letter), ``extract`` validates one
record, and a ``SurveyBatch`` accumulates the alerts of a micro-batch and builds typed columns once per batch.
``SurveyInfo`` says the rest: the id types, the bands, whether photometry comes as magnitudes or fluxes, the
observing site (its longitude fixes the night label) and the schema versions the adapter maps.

The decoder (``surveys.decode``) and the driver never name a survey: adding one is an adapter and a line in
``surveys.registry``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from alert_broker.features.night import observing_night
from alert_broker.features.tables import Tables


@dataclass(frozen=True)
class SurveyInfo:
    """The facts about a survey the rest of the broker relies on."""

    name: str  # the ``survey`` column of every table
    id_types: Mapping[str, str]  # id column -> type ("string", "int64")
    bands: Mapping[int, str]  # band id (``fid``) -> band name
    photometry: Literal["magnitude", "flux"]  # what the survey's detections report
    longitude_deg: float  # the observing site: its local noon separates two nights
    schema_versions: tuple[str, ...] = field(default=())  # the schema versions the adapter maps

    def night(self, mjd: np.ndarray) -> np.ndarray:
        """The observing night (YYYYMMDD, the site-local date of the evening) of each MJD."""
        return observing_night(mjd, self.longitude_deg)


class SurveyBatch(Protocol):
    """The validated alerts of one survey in one micro-batch."""

    def __len__(self) -> int: ...

    def add(self, alert: Any, source: str, partition: int, offset: int, raw_payload: bytes) -> bool:
        """Add one alert; False (nothing added) when it is already in the batch (a redelivery)."""
        ...

    def tables(self, batch_id: str) -> Tables:
        """The batch's internal tables."""
        ...

    def raw_frame(self, nights: np.ndarray) -> pd.DataFrame:
        """``candid, oid, night, payload`` of each alert, for the raw archive."""
        ...


class SurveyAdapter(Protocol):
    """One survey's packets -> the internal tables."""

    info: SurveyInfo

    def recognises(self, schema: Any) -> bool:
        """Whether a writer schema (its parsed JSON) looks like this survey's alerts (a cheap shape test)."""
        ...

    def analyse(self, text: bytes) -> Any:
        """What the writer schema ``text`` holds (has ``parsed`` for fastavro), cached; raises ``PacketError``."""
        ...

    def schema_for_id(self, schema_id: int) -> Any | None:
        """The analysed schema of a schema-registry id (schemaless wire-format messages), or None."""
        ...

    def extract(self, record: dict, schema: Any) -> Any:
        """One validated alert from a decoded record, or the ``PacketError`` saying what is wrong."""
        ...

    def new_batch(self) -> SurveyBatch: ...
