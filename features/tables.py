"""The internal tables of one batch (or one part of a batch): what every survey adapter produces and every
per-region step consumes (docs/data-model.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

#: Names of the per-batch tables, in the order sinks write them.
TABLE_NAMES = (
    "alerts", "detections", "non_detections", "forced_photometry", "stamps", "survey_objects", "solar_system",
)  # fmt: skip


@dataclass(slots=True)
class Tables:
    """The decoded tables of one batch (or one part of a batch). Every field is a pandas DataFrame."""

    alerts: pd.DataFrame = field(default_factory=pd.DataFrame)
    detections: pd.DataFrame = field(default_factory=pd.DataFrame)
    non_detections: pd.DataFrame = field(default_factory=pd.DataFrame)
    forced_photometry: pd.DataFrame = field(default_factory=pd.DataFrame)
    stamps: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: a survey's own object summary carried by each alert (LSST's diaObject), one row per alert
    survey_objects: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: solar-system data carried by alerts (LSST's ssSource and MPC orbit), one row per alert
    solar_system: pd.DataFrame = field(default_factory=pd.DataFrame)

    def items(self):
        return [(name, getattr(self, name)) for name in TABLE_NAMES]
