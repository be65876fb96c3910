"""Training and test sets of the stamp classifiers: first alerts of simulated objects, balanced per class.

ALeRCE's stamp classifier sees the *first* alert of an object, so a set holds one alert per object: the earliest
alert the simulation produced for it (the first one a broker started at the simulation's first night receives).
Alerts go through the real decoder (``pipeline.decode.decode_batch``), so the network trains on exactly the tables
the pipeline gives it at run time. Everything is a function of the seed: the simulator is deterministic, and the
per-class subsample uses a generator seeded from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from alert_broker.classifiers.stamp.metadata import DEFAULT_FEATURES, metadata_matrix
from alert_broker.classifiers.stamp.preprocess import CROP_SIZE, stamp_images
from alert_broker.classifiers.stamp.stampstats import STAT_COLUMNS, stamp_statistics
from alert_broker.classifiers.stamp.surveys import stamp_survey
from alert_broker.classifiers.stamp.taxonomy import SIM_TO_STAMP, STAMP_CLASSES
from alert_broker.simulator import SimConfig, build_world, iter_alerts, truth_table
from alert_broker.surveys.decode import decode_batch
from alert_broker.surveys.messages import RawMessage

#: Within each stamp class, the share of first alerts wanted from each simulator class: every kind of object the
#: class stands for is represented, rare kinds (SLSN, DSCT, CEP) more than their sky share, so the network learns
#: what each looks like.
WITHIN_CLASS_SHARE: dict[str, float] = {
    "SNIa": 0.5,
    "SNII": 0.25,
    "SNIbc": 0.15,
    "SLSN": 0.1,
    "AGN": 0.4,
    "QSO": 0.45,
    "Blazar": 0.15,
    "RRL": 0.15,
    "E": 0.15,
    "LPV": 0.12,
    "CEP": 0.08,
    "DSCT": 0.08,
    "Periodic-Other": 0.08,
    "YSO": 0.14,
    "CV/Nova": 0.2,
    "asteroid": 1.0,
    "bogus": 1.0,
}

DECODE_CHUNK = 4000


def balanced_fractions(survey: str = "ztf") -> dict[str, float]:
    """Simulator object shares that give about equal numbers of first alerts per stamp class."""
    yields = stamp_survey(survey).first_alert_yield
    return {c: WITHIN_CLASS_SHARE[c] / yields[c] for c in SIM_TO_STAMP}


@dataclass
class StampSet:
    """Preprocessed first alerts: CNN inputs, integer labels and the alerts' identity and truth."""

    images: np.ndarray  # (N, 21, 21, 3) float32
    metadata: np.ndarray  # (N, F) float32
    labels: np.ndarray  # (N,) int, index into STAMP_CLASSES
    frame: pd.DataFrame  # oid, candid, sim_class, class (and the alerts' metadata columns)
    features: tuple[str, ...] = field(default=DEFAULT_FEATURES)

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(STAMP_CLASSES)}

    def subset(self, rows: np.ndarray) -> StampSet:
        return StampSet(
            self.images[rows],
            self.metadata[rows],
            self.labels[rows],
            self.frame.iloc[rows].reset_index(drop=True),
            self.features,
        )


def first_alert_chunks(
    n_objects: int,
    seed: int,
    nights: int | None = None,
    class_fractions: dict[str, float] | None = None,
    survey: str = "ztf",
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Simulate a survey's alerts with stamps and decode each object's first alert, :data:`DECODE_CHUNK` alerts at
    a time: (alerts, stamps) as ``decode_batch`` makes them, the alerts carrying ``sim_class`` (the truth) and
    ``class`` (its stamp class). Chunks keep memory flat: a raw packet is ~80 kB, its three cutouts ~40 kB.
    ``nights`` default: the survey's recipe (``surveys.StampSurvey.sim_nights``)."""
    recipe = stamp_survey(survey)
    cfg = SimConfig(
        survey=recipe.name,
        nights=recipe.sim_nights if nights is None else nights,
        objects=n_objects,
        seed=seed,
        stamps=True,
        class_fractions=dict(balanced_fractions(survey) if class_fractions is None else class_fractions),
    )
    truth = truth_table(build_world(cfg)).set_index("oid")["class"]
    seen: set[str] = set()
    pending: list[bytes] = []
    candid_class: dict[int, str] = {}

    def decode() -> tuple[pd.DataFrame, pd.DataFrame]:
        start = len(seen) - len(pending)
        msgs = [RawMessage(f"sim-{seed}", 0, start + i, p) for i, p in enumerate(pending)]
        tables, dead, _ = decode_batch(msgs, f"stamp-{seed}-{start}")
        if dead:
            raise RuntimeError(f"simulated alerts failed to decode: {dead[0].reason}")
        pending.clear()
        al = tables.alerts
        # by candid: a survey's alert ids need not be the simulator's object ids (LSST's oid is "LSST<id>")
        al["sim_class"] = al["candid"].map(candid_class).to_numpy()
        al["class"] = al["sim_class"].map(SIM_TO_STAMP)
        keep = al["class"].notna().to_numpy()
        return al[keep].reset_index(drop=True), tables.stamps[keep].reset_index(drop=True)

    # Objects come in order and each object's alerts in time order: the first one seen is its first alert.
    for alert in iter_alerts(cfg):
        if alert.oid not in seen:
            seen.add(alert.oid)
            pending.append(alert.payload)
            candid_class[alert.candid] = truth.get(alert.oid)
            if len(pending) >= DECODE_CHUNK:
                yield decode()
    if pending:
        yield decode()


def simulated_first_alerts(
    n_objects: int,
    seed: int,
    nights: int | None = None,
    class_fractions: dict[str, float] | None = None,
    survey: str = "ztf",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every first alert of a simulation (see :func:`first_alert_chunks`) as one (alerts, stamps) pair."""
    chunks = list(first_alert_chunks(n_objects, seed, nights, class_fractions, survey))
    if not chunks:
        raise ValueError(f"the simulation (objects={n_objects}, nights={nights}, seed={seed}) made no alert")
    return (
        pd.concat([c[0] for c in chunks], ignore_index=True),
        pd.concat([c[1] for c in chunks], ignore_index=True),
    )


def to_stamp_set(
    alerts: pd.DataFrame,
    stamps: pd.DataFrame,
    features: tuple[str, ...] = DEFAULT_FEATURES,
    crop_size: int = CROP_SIZE,
) -> StampSet:
    """Preprocess labelled alerts (a ``class`` column of stamp classes) and their stamps (joined on candid);
    alerts without all three readable cutouts are dropped. The frame carries the alerts' columns and the
    cutouts' physical statistics (``stampstats.STAT_COLUMNS``)."""
    st = stamps.set_index("candid").reindex(alerts["candid"].to_numpy()).reset_index()
    images, complete = stamp_images(st, crop_size)
    labels = alerts["class"].map({c: i for i, c in enumerate(STAMP_CLASSES)}).to_numpy()
    keep = complete & pd.notna(labels)
    stats = stamp_statistics(st[keep].reset_index(drop=True))
    frame = alerts[keep].reset_index(drop=True)
    frame = pd.concat([frame.drop(columns=[c for c in STAT_COLUMNS if c in frame]), stats], axis=1)
    return StampSet(
        images[keep],
        metadata_matrix(frame, features),
        labels[keep].astype(np.int64),
        frame,
        tuple(features),
    )


def build_stamp_set(
    seed: int,
    n_per_class: int,
    features: tuple[str, ...] | None = None,
    max_rounds: int = 6,
    survey: str = "ztf",
) -> StampSet:
    """A balanced set of ``n_per_class`` first alerts per stamp class from simulations of ``survey`` seeded by
    ``seed``, cropped and described as that survey's model sees them (``features`` default: its recipe's).

    Simulates ~1.3 x the objects the measured yields say are needed; if a class is still short (yields vary with
    the seed), simulates again with seed ``seed * 1000 + round`` (deterministic) and pools. Each class is then
    subsampled to exactly ``n_per_class`` with a generator seeded by ``seed``.
    """
    if n_per_class < 1:
        raise ValueError("n_per_class must be >= 1")
    # Expected first alerts of a stamp class = objects * sum over its classes of share/yield * yield / total
    # = objects / total, since the within-class shares sum to 1.
    recipe = stamp_survey(survey)
    features = recipe.features if features is None else tuple(features)
    total = sum(balanced_fractions(survey).values())
    n_objects = int(np.ceil(1.3 * n_per_class * total))
    parts: list[StampSet] = []
    for rnd in range(max_rounds):
        sim_seed = seed if rnd == 0 else seed * 1000 + rnd
        parts += [
            to_stamp_set(al, st, features, recipe.crop_size)
            for al, st in first_alert_chunks(n_objects, sim_seed, survey=survey)
        ]
        pooled = concat_sets(parts)
        counts = pooled.counts()
        if all(counts[c] >= n_per_class for c in STAMP_CLASSES):
            break
    else:
        raise RuntimeError(
            f"after {max_rounds} simulations some stamp class has < {n_per_class} first alerts: {counts}"
        )
    rng = np.random.default_rng([seed, 7_413])
    rows = [
        np.sort(rng.choice(np.flatnonzero(pooled.labels == i), n_per_class, replace=False))
        for i in range(len(STAMP_CLASSES))
    ]
    return pooled.subset(np.concatenate(rows))


def concat_sets(parts: list[StampSet]) -> StampSet:
    """One set from several (same features); an alert (candid) in two of them is kept once."""
    if len(parts) == 1:
        return parts[0]
    frame = pd.concat([p.frame for p in parts], ignore_index=True)
    keep = ~frame["candid"].duplicated().to_numpy()
    return StampSet(
        np.concatenate([p.images for p in parts])[keep],
        np.concatenate([p.metadata for p in parts])[keep],
        np.concatenate([p.labels for p in parts])[keep],
        frame[keep].reset_index(drop=True),
        parts[0].features,
    )
