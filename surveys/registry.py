"""The surveys the broker ingests, and how a packet finds its adapter.

A packet's writer schema names its survey: each adapter's ``recognises`` looks at the schema's shape, the first
that claims it analyses it, and the answer is cached by the schema text (every packet of a stream repeats the
same schema). A schema no adapter claims is a dead letter whose reason comes from the default adapter's own
analysis (it says what the schema lacks), or names the adapters that were asked.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from alert_broker.surveys.adapter import SurveyAdapter
from alert_broker.surveys.atlas import ATLAS
from alert_broker.surveys.avro import load_schema, parse_schema
from alert_broker.surveys.errors import PacketError
from alert_broker.surveys.lsst import LSST
from alert_broker.surveys.ztf import ZTF

#: Every adapter, in the order they are asked (the first is the default for a schema nobody recognises).
ADAPTERS: tuple[SurveyAdapter, ...] = (ZTF, LSST, ATLAS)
_CACHE_MAX = 256


@dataclass(frozen=True, slots=True)
class Analysed:
    """A writer schema with the adapter that maps it and that adapter's analysis of it."""

    adapter: SurveyAdapter
    info: Any

    @property
    def parsed(self) -> Any:
        return self.info.parsed

    @property
    def columnar(self) -> frozenset[str]:
        """The arrays the adapter takes as columns (``surveys.avro.read_container``); none unless it says."""
        return getattr(self.info, "columnar", frozenset())


class SurveyRegistry:
    """The adapters a run accepts (``surveys``: their names; empty = every known survey)."""

    def __init__(self, adapters: tuple[SurveyAdapter, ...] = ADAPTERS) -> None:
        if not adapters:
            raise ValueError("a survey registry needs at least one adapter")
        self.adapters = adapters
        self._by_text: dict[bytes, Analysed | PacketError] = {}

    @classmethod
    def of(cls, surveys: tuple[str, ...] = ()) -> SurveyRegistry:
        known = {a.info.name: a for a in ADAPTERS}
        unknown = [s for s in surveys if s not in known]
        if unknown:
            raise ValueError(f"unknown survey(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return cls(tuple(known[s] for s in surveys) if surveys else ADAPTERS)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.info.name for a in self.adapters)

    def analyse(self, text: bytes) -> Analysed:
        """The adapter and analysis of a writer schema, or the PacketError that makes its packets dead letters."""
        found = self._by_text.get(text)
        if found is None:
            try:
                found = self._analyse(text)
            except PacketError as err:
                found = err
            if len(self._by_text) >= _CACHE_MAX:
                self._by_text.clear()
            self._by_text[text] = found
        if isinstance(found, PacketError):
            raise type(found)(str(found))
        return found

    def _analyse(self, text: bytes) -> Analysed:
        schema = load_schema(text)
        try:
            for adapter in self.adapters:
                if adapter.recognises(schema):
                    return Analysed(adapter, adapter.analyse(text))
            # nobody claims it: the default adapter's analysis says what the schema lacks
            default = self.adapters[0]
            return Analysed(default, default.analyse(text))
        except PacketError:
            raise
        except Exception:
            # an adapter tripped on the schema's shape (a field without a type, ...): if it is not valid Avro,
            # that is the reason (UnknownSchemaError); a valid schema that trips an adapter is a bug: re-raised
            parse_schema(schema)
            raise

    def for_schema_id(self, schema_id: int) -> Analysed | None:
        """The adapter that knows a schema-registry id (schemaless wire-format messages), if any."""
        for adapter in self.adapters:
            info = adapter.schema_for_id(schema_id)
            if info is not None:
                return Analysed(adapter, info)
        return None


#: The registry of every known survey (what ``decode_batch`` uses unless told otherwise).
DEFAULT_REGISTRY = SurveyRegistry()


@functools.cache
def registry_for(surveys: tuple[str, ...] = ()) -> SurveyRegistry:
    """The registry of the accepted ``surveys`` (empty: every known one), one per process (its schema cache
    is shared by every batch the process decodes)."""
    return DEFAULT_REGISTRY if not surveys else SurveyRegistry.of(surveys)
