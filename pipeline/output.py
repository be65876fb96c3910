"""The annotated output stream: one Avro message per processed alert, for the astronomers and follow-up systems
downstream (docs/output-stream.md).

``annotate`` builds the records on the worker that ran the region's steps (it has everything: the alert, the
object's statistics, cross-matches, classes, outlier score); they travel to the driver as encoded messages, and
the driver hands them to an ``Output`` after the lake and PostgreSQL have the batch and before the source's
offsets are committed:

- ``kafka://host:port/topic``: a transactional producer; each batch's messages (main topic, filter and watch-list
  topics) are one transaction, so a ``read_committed`` consumer sees a batch whole or not at all. A crash between
  the transaction's commit and the input's offset commit replays the batch: its messages come again, with the same
  keys; consumers deduplicate by key (the alert id, ``survey:candid``).
- ``file://DIR``: one Avro container file per batch and stream (``DIR/alerts/<batch>.avro``,
  ``DIR/filters/<name>/<batch>.avro``, ...), named by the batch, so a replay rewrites rather than adds.

The schema is ``pipeline/schemas/annotated_alert_<version>.avsc`` (shipped with the package); every message
carries its version (the ``schema_version`` field, and a ``schema_version`` Kafka header). Bodies are schemaless
Avro: decode them with ``fastavro.schemaless_reader`` and that schema.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import fastavro
import numpy as np
import pandas as pd
from confluent_kafka import KafkaException, Producer

from alert_broker.classifiers.stamp import STAMP_CLASSES
from alert_broker.pipeline.kafka import client as kafka_client
from alert_broker.pipeline.kafka import ensure_topic

SCHEMA_VERSION = "1.0"
SCHEMA_FILE = Path(__file__).with_name("schemas") / f"annotated_alert_{SCHEMA_VERSION}.avsc"
MAIN_STREAM = "alerts"


@cache
def schema() -> dict:
    """The annotated alert schema (JSON), as published."""
    return json.loads(SCHEMA_FILE.read_text())


@cache
def parsed_schema():
    return fastavro.parse_schema(schema())


@dataclass(frozen=True)
class StreamMessage:
    """One encoded annotated alert and the streams it goes to (the main one, matching filters, watch lists)."""

    key: str
    value: bytes
    streams: tuple[str, ...] = (MAIN_STREAM,)


def alert_key(survey: str, candid: int) -> str:
    return f"{survey}:{int(candid)}"


# ---------------------------------------------------------------------------------------------- records
def _value(v: Any) -> Any:
    """A JSON/Avro-ready scalar: NaN, NA and -inf/inf become None; numpy scalars become Python ones."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _float(v: Any) -> float | None:
    v = _value(v)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _int(v: Any) -> int | None:
    v = _value(v)
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, float):
        return int(v) if v.is_integer() else None
    return int(v) if isinstance(v, int) else None


def _bool(v: Any) -> bool | None:
    v = _value(v)
    return bool(v) if isinstance(v, bool | int) else None


def _str(v: Any) -> str | None:
    v = _value(v)
    return None if v is None else str(v)


def _rows_by_oid(df: pd.DataFrame) -> dict[str, list[dict]]:
    if df is None or df.empty or "oid" not in df.columns:
        return {}
    out: dict[str, list[dict]] = {}
    for rec in df.to_dict(orient="records"):
        out.setdefault(str(rec["oid"]), []).append(rec)
    return out


_MAGSTATS = ("magmin", "magmax", "magmean", "magmedian", "magfirst", "maglast", "magmean_corr", "firstmjd",
             "lastmjd", "dmdt_first", "flux_mean", "flux_max")  # fmt: skip


def _band_of(row: dict, bands: dict[int, str]) -> str:
    return str(row.get("band") or bands.get(int(row["fid"]), row["fid"]))


def _classification(rows: list[dict], top_rows: list[dict]) -> dict | None:
    """The long probability rows of one object and classifier -> the record's classification section."""
    if not rows:
        return None
    best = min(rows, key=lambda r: r["ranking"])
    out = {
        "classifier": str(best["classifier_name"]),
        "version": str(best["classifier_version"]),
        "class": str(best["class_name"]),
        "probability": float(best["probability"]),
        "probabilities": {str(r["class_name"]): float(r["probability"]) for r in rows},
    }
    if top_rows is not None:
        top = min(top_rows, key=lambda r: r["ranking"]) if top_rows else None
        out["top"] = str(top["class_name"]) if top else None
        out["top_probability"] = float(top["probability"]) if top else None
    return out


def _classes(rows: list[dict]) -> tuple[dict | None, dict | None]:
    """(stamp section, light-curve section) from an object's probability rows."""
    by_clf: dict[str, list[dict]] = {}
    for r in rows:
        by_clf.setdefault(str(r["classifier_name"]), []).append(r)
    stamp = lc = None
    for name, group in by_clf.items():
        if name.startswith("stamp"):
            stamp = _classification(group, None)
            if stamp is not None:  # the five classes as fields too: filters say `stamp.SN > 0.6`
                stamp.update({c: stamp["probabilities"].get(c) for c in STAMP_CLASSES})
        elif not name.endswith("_top"):
            lc = _classification(group, by_clf.get(f"{name}_top", []))
    return stamp, lc


def annotate(state: Any, stamp_probabilities: pd.DataFrame, bands: dict[int, str]) -> list[dict]:
    """One annotated record per alert of the region's batch (``state``: the region's ``PipelineState``)."""
    alerts = state.alerts
    if alerts.empty:
        return []
    det = state.detections
    own = {}
    if not det.empty and "has_stamp" in det.columns:
        cols = [c for c in ("candid", "magpsf_corr", "sigmapsf_corr", "corrected") if c in det.columns]
        for rec in det.loc[det["has_stamp"].fillna(False).astype(bool).to_numpy(), cols].to_dict("records"):
            own[int(rec["candid"])] = rec
    objects = {o: rows[0] for o, rows in _rows_by_oid(state.objects).items()}
    magstats = _rows_by_oid(state.magstats)
    xmatch = _rows_by_oid(state.xmatch)
    outliers = {o: rows[0] for o, rows in _rows_by_oid(state.outliers).items()}
    xids = {o: rows[0].get("xid") for o, rows in _rows_by_oid(state.associations).items()}
    probs = _rows_by_oid(state.probabilities)
    for o, rows in _rows_by_oid(stamp_probabilities).items():
        probs.setdefault(o, []).extend(rows)
    watch = _rows_by_oid(getattr(state, "watchlist_hits", pd.DataFrame()))

    records = []
    for a in alerts.to_dict(orient="records"):
        oid, candid, survey = str(a["oid"]), int(a["candid"]), str(a["survey"])
        mine = own.get(candid, {})
        obj = objects.get(oid, {})
        stamp, lc = _classes(probs.get(oid, []))
        record = {
            "schema_version": SCHEMA_VERSION,
            "survey": survey,
            "oid": oid,
            "candid": candid,
            "alert_id": str(a.get("atlas_candid") or candid),
            "mjd": float(a["mjd"]),
            "night": int(a["night"]),
            "ra": float(a["ra"]),
            "dec": float(a["dec"]),
            "band": _str(a.get("band")),
            "fid": int(a["fid"]),
            "magpsf": _float(a.get("magpsf")),
            "sigmapsf": _float(a.get("sigmapsf")),
            "isdiffpos": int(a.get("isdiffpos", 1)),
            "flux": _float(a.get("flux")),
            "flux_err": _float(a.get("flux_err")),
            "magpsf_corr": _float(mine.get("magpsf_corr")),
            "sigmapsf_corr": _float(mine.get("sigmapsf_corr")),
            "corrected": _bool(mine.get("corrected")),
            "rb": _float(a.get("rb")),
            "drb": _float(a.get("drb")),
            "ndethist": _int(a.get("ndethist")),
            "ncovhist": _int(a.get("ncovhist")),
            "sgscore1": _float(a.get("sgscore1")),
            "distpsnr1": _float(a.get("distpsnr1")),
            "ssdistnr": _float(a.get("ssdistnr")),
            "ssnamenr": _str(a.get("ssnamenr")),
            "object": {
                "ndet": _int(obj.get("ndet")),
                "firstmjd": _float(obj.get("firstmjd")),
                "lastmjd": _float(obj.get("lastmjd")),
                "deltajd": _float(obj.get("deltajd")),
                "meanra": _float(obj.get("meanra")),
                "meandec": _float(obj.get("meandec")),
                "corrected": _bool(obj.get("corrected")),
                "stellar": _bool(obj.get("stellar")),
                "xid": _str(xids.get(oid)),
            },
            "magstats": {
                _band_of(m, bands): {"ndet": _int(m.get("ndet")), **{k: _float(m.get(k)) for k in _MAGSTATS}}
                for m in magstats.get(oid, [])
            },
            "xmatch": {
                str(x["catalog"]): {
                    "id": _str(x.get("catalog_id")),
                    "dist_arcsec": float(x["dist_arcsec"]),
                    "properties": {
                        str(k): _str(v) for k, v in json.loads(x.get("properties") or "{}").items()
                    },
                }
                for x in xmatch.get(oid, [])
            },
            "stamp": stamp,
            "lc": lc,
            "outlier_score": _float(outliers.get(oid, {}).get("outlier_score")),
            "stamps_ref": {
                "survey": survey,
                "candid": candid,
                "raw_path": _str(a.get("raw_path")),
                "fetch": f"broker fetch {candid} --survey {survey}",
            },
            "watchlists": [
                {
                    "watchlist": str(w["watchlist"]),
                    "name": str(w["name"]),
                    "dist_arcsec": float(w["dist_arcsec"]),
                }
                for w in watch.get(oid, [])
                if int(w["candid"]) == candid
            ],
        }
        records.append(record)
    return records


def encode(record: dict) -> bytes:
    """A record's schemaless Avro body."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed_schema(), record)
    return out.getvalue()


def decode(body: bytes) -> dict:
    """The record of a message body (what a consumer does with the published schema)."""
    return fastavro.schemaless_reader(io.BytesIO(body), parsed_schema())


# ---------------------------------------------------------------------------------------------- outputs
class Output(Protocol):
    """Where the annotated stream goes. ``publish`` returns only when every message of the batch is durable."""

    url: str

    def publish(self, batch_id: str, messages: list[StreamMessage]) -> dict[str, int]: ...

    def close(self) -> None: ...


@dataclass
class FileOutput:
    """``file://DIR``: one Avro container per batch and stream, named by the batch (a replay rewrites it)."""

    url: str
    folder: Path = field(init=False)

    def __post_init__(self) -> None:
        parsed = urlparse(self.url)
        self.folder = Path(parsed.netloc + parsed.path if parsed.netloc else parsed.path)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, stream: str, batch_id: str) -> Path:
        sub = MAIN_STREAM if stream == MAIN_STREAM else stream.replace(":", "/")
        return self.folder / sub / f"{batch_id}.avro"

    def publish(self, batch_id: str, messages: list[StreamMessage]) -> dict[str, int]:
        by_stream: dict[str, list[StreamMessage]] = {}
        for m in messages:
            for s in m.streams:
                by_stream.setdefault(s, []).append(m)
        counts = {}
        for stream, items in by_stream.items():
            path = self._path(stream, batch_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as fh:
                fastavro.writer(fh, parsed_schema(), (decode(m.value) for m in items), codec="deflate")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)  # atomic: a reader never sees half a batch
            counts[stream] = len(items)
        return counts

    def close(self) -> None:
        pass


class KafkaOutput:
    """``kafka://host:port/topic``: filter and watch-list streams go to ``topic.<stream>`` (e.g.
    ``alerts.filter.young_sn``). One transaction per batch."""

    def __init__(self, url: str, transactional_id: str, extra: dict | None = None) -> None:
        """``extra``: more librdkafka properties, the run's Kafka client settings (security) among them; they
        also go to the admin client that creates the stream's topics."""
        parsed = urlparse(url)
        self.url = str(url)
        self.bootstrap = parsed.netloc
        self.topic = parsed.path.strip("/") or MAIN_STREAM
        self._topics: set[str] = set()
        self._client_config = dict(extra or {})
        self.producer = kafka_client(
            Producer,
            {
                "bootstrap.servers": self.bootstrap,
                "transactional.id": transactional_id,
                "enable.idempotence": True,
                "linger.ms": 20,
                **self._client_config,
            },
        )
        self.producer.init_transactions(30)

    def topic_of(self, stream: str) -> str:
        return self.topic if stream == MAIN_STREAM else f"{self.topic}.{stream.replace(':', '.')}"

    def publish(self, batch_id: str, messages: list[StreamMessage]) -> dict[str, int]:
        counts: dict[str, int] = {}
        topics = {self.topic_of(s) for m in messages for s in m.streams}
        for t in topics - self._topics:
            ensure_topic(self.bootstrap, t, config=self._client_config)
            self._topics.add(t)
        headers = [("schema_version", SCHEMA_VERSION.encode()), ("batch_id", batch_id.encode())]
        self.producer.begin_transaction()
        try:
            for m in messages:
                for s in m.streams:
                    self.producer.produce(self.topic_of(s), key=m.key, value=m.value, headers=headers)
                    counts[s] = counts.get(s, 0) + 1
                    self.producer.poll(0)
            self.producer.commit_transaction(60)
        except KafkaException:
            self.producer.abort_transaction(30)
            raise
        return counts

    def close(self) -> None:
        self.producer.flush(30)


def open_outputs(urls: Iterable[str], run_id: str, kafka_config: dict | None = None) -> list[Output]:
    """The outputs named by ``--output`` (``kafka://host:port/topic`` or ``file://DIR``). A Kafka output's client
    settings (security) are ``kafka_config``, else those its URL carries (``Settings.outputs`` gives
    ``pipeline.kafka.KafkaEndpoint`` URLs)."""
    out: list[Output] = []
    for url in urls:
        if url.startswith("kafka://"):
            config = kafka_config if kafka_config is not None else getattr(url, "client_config", None)
            out.append(
                KafkaOutput(
                    str(url), transactional_id=f"alert-broker-{urlparse(url).path.strip('/')}", extra=config
                )
            )
        elif url.startswith("file://"):
            out.append(FileOutput(url))
        else:
            raise ValueError(f"--output {url!r}: expected kafka://host:port/topic or file://DIR")
    del run_id
    return out
