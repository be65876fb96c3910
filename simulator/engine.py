"""Run a simulation: population -> observing log -> chunks of photometry -> encoded alerts -> truth table.

`iter_alerts` is the in-memory generator (tests, tools); `simulate` writes them to a night archive, per-night
tarballs or Kafka (see sinks.py) and the truth table, optionally with several worker processes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .cadence import schedule
from .chunk import simulate_chunk
from .config import SimConfig
from .lsst_alerts import LsstPacketBuilder
from .population import draw_population
from .sinks import is_kafka, manifest_messages, parse_kafka_url, produce, write_tarballs
from .stamps import StampBank
from .ztf_alerts import Alert, ZtfPacketBuilder

TRUTH_COLUMNS = [
    "oid",
    "object_id",
    "survey",
    "class",
    "subtype",
    "ra",
    "dec",
    "field",
    "rcid",
    "mean_mag",
    "color_gr",
    "period",
    "amplitude",
    "shape_q",
    "n_harm",
    "phase0",
    "depth1",
    "depth2",
    "eclipse_width",
    "peak_mag",
    "peak_mjd",
    "abs_mag",
    "distance_modulus",
    "redshift",
    "tau_rise",
    "tau_fall",
    "plateau_days",
    "plateau_slope",
    "host_mag",
    "host_offset",
    "host_re",
    "tau",
    "sigma",
    "recurrence",
    "outburst_amp",
    "outburst_dur",
    "dip_rate",
    "event_amp",
    "event_dur",
    "ssnamenr",
    "persistence",
    "n_alerts",
    "first_alert_mjd",
]


@dataclass
class World:
    """What every chunk shares: the population (truth) and the observing log."""

    cfg: SimConfig
    pop: pd.DataFrame
    fields: pd.DataFrame
    visits: pd.DataFrame

    @property
    def n_chunks(self) -> int:
        return int(np.ceil(len(self.pop) / self.cfg.chunk_size))


def _cfg_key(cfg: SimConfig) -> tuple:
    return (
        cfg.survey,
        cfg.nights,
        cfg.objects,
        cfg.seed,
        cfg.first_mjd(),
        tuple(sorted(cfg.fractions().items())),
        cfg.n_fields,
        cfg.chunk_size,
    )


_WORLDS: dict[tuple, World] = {}


def build_world(cfg: SimConfig) -> World:
    """The run's population and observing log (cached per configuration: chunks and workers reuse it)."""
    cfg.validate()
    key = _cfg_key(cfg)
    world = _WORLDS.get(key)
    if world is None:
        pop, fields = draw_population(cfg)
        world = World(cfg, pop, fields, schedule(cfg, fields))
        if len(_WORLDS) >= 2:
            _WORLDS.pop(next(iter(_WORLDS)))
        _WORLDS[key] = world
    return world


def _builder(cfg: SimConfig):
    bank = StampBank(cfg.survey, cfg.seed, cfg.stamp_variants) if cfg.stamps else None
    if cfg.survey == "ztf":
        return ZtfPacketBuilder(cfg, bank)
    return LsstPacketBuilder(cfg, bank)


def iter_alerts(cfg: SimConfig, chunks: Iterable[int] | None = None) -> Iterator[Alert]:
    """Every alert of the run (or of the given chunks), chunk by chunk, objects in order, time-sorted per object."""
    world = build_world(cfg)
    builder = _builder(cfg)
    for ci in range(world.n_chunks) if chunks is None else chunks:
        chunk = simulate_chunk(cfg, world.pop, world.visits, ci)
        yield from builder.alerts(chunk, world.visits)


def truth_table(
    world: World, n_alerts: np.ndarray | None = None, first_alert: np.ndarray | None = None
) -> pd.DataFrame:
    """The per-object truth (class and model parameters), with how many alerts each object produced."""
    pop = world.pop
    out = pd.DataFrame(index=pop.index)
    for c in TRUTH_COLUMNS:
        if c == "survey":
            out[c] = world.cfg.survey
        elif c == "mean_mag":
            out[c] = pop["m0"]
        elif c == "n_alerts":
            out[c] = (np.zeros(len(pop)) if n_alerts is None else n_alerts).astype("int32")
        elif c == "first_alert_mjd":
            out[c] = np.full(len(pop), np.nan) if first_alert is None else first_alert
        elif c in pop:
            out[c] = pop[c]
        else:
            out[c] = np.nan
    out["mean_mag"] = np.where(
        np.isin(pop["class"], ["SNIa", "SNIbc", "SNII", "SLSN", "bogus"]), np.nan, out["mean_mag"]
    )
    out["n_harm"] = out["n_harm"].astype("Int16") if out["n_harm"].notna().any() else out["n_harm"]
    out["object_id"] = out["object_id"].astype("int64")
    out["field"] = out["field"].astype("int32")
    out["ssnamenr"] = out["ssnamenr"].astype(object).where(out["ssnamenr"].notna(), None)
    return out.reset_index(drop=True)


@dataclass
class ChunkResult:
    manifest: pd.DataFrame  # night, mjd, candid, oid, obj, path, nbytes
    seconds: float


def run_chunks(cfg: SimConfig, chunk_ids: list[int], root: str) -> ChunkResult:
    """Write the alerts of some chunks as `root/night=YYYYMMDD/<candid>.avro`; return what was written."""
    t0 = time.perf_counter()
    rec: dict[str, list] = {
        "night": [],
        "mjd": [],
        "candid": [],
        "oid": [],
        "obj": [],
        "path": [],
        "nbytes": [],
    }
    made: set[int] = set()
    for a in iter_alerts(cfg, chunk_ids):
        d = os.path.join(root, f"night={a.night}")
        if a.night not in made:
            os.makedirs(d, exist_ok=True)
            made.add(a.night)
        path = os.path.join(d, f"{a.candid}.avro")
        with open(path, "wb") as fh:
            fh.write(a.payload)
        for k, v in (
            ("night", a.night),
            ("mjd", a.mjd),
            ("candid", a.candid),
            ("oid", a.oid),
            ("obj", a.obj),
            ("path", path),
            ("nbytes", len(a.payload)),
        ):
            rec[k].append(v)
    return ChunkResult(pd.DataFrame(rec), time.perf_counter() - t0)


def run_parallel(cfg: SimConfig, root: str) -> pd.DataFrame:
    """All chunks, over `cfg.workers` processes (round-robin); the manifest of every alert written."""
    world = build_world(cfg)
    ids = list(range(world.n_chunks))
    if cfg.workers <= 1 or len(ids) <= 1:
        parts = [run_chunks(cfg, ids, root).manifest]
    else:
        groups = [ids[w :: cfg.workers] for w in range(cfg.workers)]
        with ProcessPoolExecutor(max_workers=cfg.workers) as ex:
            parts = [
                r.manifest for r in ex.map(run_chunks, [cfg] * len(groups), groups, [root] * len(groups))
            ]
    man = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(man):
        man = man.sort_values(["night", "mjd", "candid"], kind="stable").reset_index(drop=True)
    return man


@dataclass
class SimulationReport:
    """What a run produced, and how fast."""

    survey: str
    alerts: int
    objects: int
    nights: list[int]
    seconds: float
    nbytes: int
    outputs: list[str]
    truth_path: str
    kafka: object | None = None  # sinks.ProduceReport

    @property
    def alerts_per_second(self) -> float:
        return self.alerts / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> str:
        lines = [
            f"simulated {self.alerts} {self.survey.upper()} alerts of {self.objects} objects over {len(self.nights)} night(s) "
            f"in {self.seconds:.1f} s ({self.alerts_per_second:.0f} alerts/s, {self.nbytes / 1e6:.1f} MB)",
            f"truth table: {self.truth_path}",
        ]
        lines += [f"output: {p}" for p in self.outputs[:10]] + (
            [f"... and {len(self.outputs) - 10} more"] if len(self.outputs) > 10 else []
        )
        if self.kafka is not None:
            k = self.kafka
            lines.append(
                f"kafka: produced {k.messages} messages in {k.seconds:.1f} s = {k.rate:.0f} alerts/s ({k.mbytes_per_s:.1f} MB/s), {k.bursts} bursts, {k.errors} errors"
            )
        return "\n".join(lines)


def simulate(
    cfg: SimConfig,
    out: str,
    *,
    rate: float = 0.0,
    burst: int = 0,
    tar: bool = False,
    truth_path: str | None = None,
) -> SimulationReport:
    """Simulate a run and write it to `out`: a folder (night=YYYYMMDD/<id>.avro), per-night tarballs, or Kafka."""
    world = build_world(cfg)
    kafka = is_kafka(out)
    target = parse_kafka_url(out) if kafka else None
    if kafka:
        root = tempfile.mkdtemp(prefix=f"sim-{cfg.survey}-spool-")
    else:
        os.makedirs(out, exist_ok=True)
        root = os.path.join(out, f".spool-{cfg.seed}") if tar else out
    t0 = time.perf_counter()
    try:
        man = run_parallel(cfg, root)
        seconds = time.perf_counter() - t0
        n_obj = len(world.pop)
        counts = (
            np.bincount(man["obj"].to_numpy(dtype=np.int64), minlength=n_obj) if len(man) else np.zeros(n_obj)
        )
        first = np.full(n_obj, np.nan)
        if len(man):
            g = man.groupby("obj")["mjd"].min()
            first[g.index.to_numpy()] = g.to_numpy()
        truth = truth_table(world, counts, first)
        if truth_path is None:
            truth_path = (
                f"sim_truth_{cfg.survey}_seed{cfg.seed}.parquet"
                if kafka
                else os.path.join(out, "truth.parquet")
            )
        truth.to_parquet(truth_path, index=False)
        nights = sorted(man["night"].unique().tolist()) if len(man) else []
        kreport = None
        if kafka:
            kreport = produce(manifest_messages(man), target, rate=rate, burst=burst)
            outputs = [out]
        elif tar:
            outputs = write_tarballs(man, out, cfg.survey)
        else:
            outputs = [os.path.join(out, f"night={n}") for n in nights]
        nbytes = int(man["nbytes"].sum()) if len(man) else 0
    finally:
        if kafka or tar:
            shutil.rmtree(root, ignore_errors=True)
    return SimulationReport(
        cfg.survey, len(man), len(world.pop), nights, seconds, nbytes, outputs, truth_path, kreport
    )
