"""Run a simulation: population -> observing log -> chunks of photometry -> encoded alerts -> truth table.

`iter_alerts` is the in-memory generator (tests, tools); `simulate` writes them to a night archive, per-night
tarballs or Kafka (see sinks.py) and the truth table, optionally with several worker processes. A joint run
(survey="ztf+lsst", `simulate_joint`) writes one archive per survey of one shared sky (sky.py) and a joint truth
table that maps each object to every survey's id.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .cadence import schedule
from .chunk import simulate_chunk
from .config import JOINT_SEPARATOR, SimConfig
from .lsst_alerts import LsstPacketBuilder
from .population import draw_population
from .sinks import is_kafka, manifest_messages, parse_kafka_url, produce, write_tarballs
from .sky import Sky, build_sky, part_population
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
    "host_ebv",
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

#: The joint truth table of a joint run: one row per object of the shared sky; then, per survey S of the run,
#: `oid_S`, `object_id_S` (null where S never alerted on the object), `field_S` (null where S does not observe
#: it), `n_alerts_S`, `first_alert_mjd_S` (JOINT_SURVEY_COLUMNS).
JOINT_TRUTH_COLUMNS = [
    "truth_id",
    "class",
    "subtype",
    "ra",
    "dec",
    "surveys",
    *TRUTH_COLUMNS[TRUTH_COLUMNS.index("mean_mag") : TRUTH_COLUMNS.index("n_alerts")],
]
JOINT_SURVEY_COLUMNS = ("oid", "object_id", "field", "n_alerts", "first_alert_mjd")


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
        cfg.history_days,  # sets how far back the observing log reaches
        None if cfg.joint is None else (_cfg_key(cfg.joint), cfg.joint.min_separation),
    )


_WORLDS: dict[tuple, World] = {}


def build_world(cfg: SimConfig) -> World:
    """The run's population and observing log (cached per configuration: chunks and workers reuse it).

    One survey's part of a joint run (`cfg.part("ztf")`) observes the joint run's sky; a joint run itself has
    one world per survey (`build_joint_world`)."""
    cfg.validate()
    if cfg.is_joint:
        raise ValueError(
            f"a joint run ({cfg.survey!r}) has one world per survey: use build_joint_world(cfg) or "
            "build_world(cfg.part(survey))"
        )
    key = _cfg_key(cfg)
    world = _WORLDS.get(key)
    if world is None:
        pop, fields = draw_population(cfg) if cfg.joint is None else part_population(cfg)
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
    return _truth_frame(world.pop, TRUTH_COLUMNS, world.cfg.survey, n_alerts, first_alert)


def _truth_frame(
    pop: pd.DataFrame,
    columns: list[str],
    survey: str,
    n_alerts: np.ndarray | None = None,
    first_alert: np.ndarray | None = None,
) -> pd.DataFrame:
    out = pd.DataFrame(index=pop.index)
    for c in columns:
        if c == "survey":
            out[c] = survey
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
    for c, dtype in (("object_id", "int64"), ("field", "int32")):
        if c in out:
            out[c] = out[c].astype(dtype)
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
        check_unique_ids(man)
    return man


def check_unique_ids(manifest: pd.DataFrame) -> None:
    """Every alert's id must be its own: files are named by it, so a repeated id means one alert overwrote
    another and the run holds fewer alerts than it reports (a 4-million-object ZTF run once lost 23 %)."""
    repeated = manifest["candid"].duplicated(keep=False)
    if repeated.any():
        example = manifest.loc[repeated, ["candid", "oid", "mjd"]].head(4).to_dict("records")
        raise RuntimeError(
            f"{int(manifest['candid'].duplicated().sum())} of {len(manifest)} simulated alerts repeat another "
            f"alert's id (e.g. {example}): ids are built from the exposure time, so this means one night's "
            "exposures overlap another's; use fewer pointings (SimConfig.n_fields) for this many objects"
        )


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
) -> SimulationReport | JointSimulationReport:
    """Simulate a run and write it to `out`: a folder (night=YYYYMMDD/<id>.avro), per-night tarballs, or Kafka.

    A joint run (survey="ztf+lsst") goes to `simulate_joint`: one folder per survey and a joint truth table."""
    if cfg.is_joint:
        return simulate_joint(cfg, out, tar=tar, truth_path=truth_path)
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
        counts, first = _alert_counts(man, len(world.pop))
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


def _alert_counts(man: pd.DataFrame, n_obj: int) -> tuple[np.ndarray, np.ndarray]:
    """(alerts per object, MJD of each object's first alert) from a run's manifest."""
    counts = (
        np.bincount(man["obj"].to_numpy(dtype=np.int64), minlength=n_obj) if len(man) else np.zeros(n_obj)
    )
    first = np.full(n_obj, np.nan)
    if len(man):
        g = man.groupby("obj")["mjd"].min()
        first[g.index.to_numpy()] = g.to_numpy()
    return counts, first


# ----------------------------------------------------------------------------------------- joint runs ----
@dataclass
class JointWorld:
    """A joint run: the shared sky (truth) and one world per survey, each observing the sky's objects."""

    cfg: SimConfig  # the joint run (survey="ztf+lsst")
    sky: Sky
    worlds: dict[str, World]  # survey -> its part's world (world.cfg = cfg.part(survey))


def joint_config(cfg: SimConfig, surveys: Iterable[str] | None = None) -> SimConfig:
    """The joint run of `cfg` over `surveys` (default: cfg's own if joint, else ZTF and LSST)."""
    if surveys is None:
        return cfg if cfg.is_joint else replace(cfg, survey=JOINT_SEPARATOR.join(("ztf", "lsst")))
    surveys = tuple(surveys)
    name = JOINT_SEPARATOR.join(surveys)
    if cfg.is_joint and cfg.survey != name:
        raise ValueError(f"the configuration is a joint run of {cfg.survey!r}, not of {name!r}")
    joint = replace(cfg, survey=name)
    if not joint.is_joint:
        raise ValueError(f"a joint run needs at least two surveys, not {list(surveys)}")
    return joint


def build_joint_world(cfg: SimConfig, surveys: Iterable[str] | None = None) -> JointWorld:
    """The shared sky of a joint run and every survey's world (population, fields and observing log)."""
    joint = joint_config(cfg, surveys)
    joint.validate()
    return JointWorld(joint, build_sky(joint), {s: build_world(joint.part(s)) for s in joint.surveys})


def joint_truth_table(
    jw: JointWorld, alerts: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
) -> pd.DataFrame:
    """One row per object of the shared sky (truth id, class, true position, model), and per survey S its
    `oid_S` / `object_id_S` (null where S never alerted on it), `field_S` (null where S does not observe it),
    `n_alerts_S` and `first_alert_mjd_S`. `alerts[S]` = (alerts per object, first alert MJD) of S's objects."""
    sky = jw.sky.objects
    out = _truth_frame(sky, JOINT_TRUTH_COLUMNS, jw.cfg.survey)
    n = len(out)
    for s, world in jw.worlds.items():
        pop = world.pop
        tid = pop["truth_id"].to_numpy(dtype=np.int64)
        counts, first = (alerts or {}).get(s, (np.zeros(len(pop)), np.full(len(pop), np.nan)))
        alerted = np.asarray(counts) > 0
        oid = np.full(n, None, dtype=object)
        oid[tid[alerted]] = pop["oid"].to_numpy()[alerted]
        object_id = np.zeros(n, np.int64)
        object_id[tid] = pop["object_id"].to_numpy(dtype=np.int64)
        no_alert = np.ones(n, bool)
        no_alert[tid[alerted]] = False
        field = np.zeros(n, np.int32)
        field[tid] = pop["field"].to_numpy(dtype=np.int32)
        observed = np.zeros(n, bool)
        observed[tid] = True
        n_alerts = np.zeros(n, np.int32)
        n_alerts[tid] = counts
        first_mjd = np.full(n, np.nan)
        first_mjd[tid] = first
        cols = {
            "oid": oid,
            "object_id": pd.arrays.IntegerArray(object_id, no_alert),
            "field": pd.arrays.IntegerArray(field, ~observed),
            "n_alerts": n_alerts,
            "first_alert_mjd": first_mjd,
        }
        for c in JOINT_SURVEY_COLUMNS:
            out[f"{c}_{s}"] = cols[c]
    return out


@dataclass
class JointSimulationReport:
    """What a joint run produced: one report per survey (its archive) and the joint truth table."""

    survey: str  # "ztf+lsst"
    parts: dict[str, SimulationReport]
    objects: int  # objects of the shared sky
    pairs: int  # objects that alerted in every survey of the run
    truth_path: str

    @property
    def alerts(self) -> int:
        return sum(r.alerts for r in self.parts.values())

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.parts.values())

    def summary(self) -> str:
        lines = [
            f"joint run {self.survey.upper()}: {self.objects} objects, {self.pairs} alerted in every survey, "
            f"{self.alerts} alerts in {self.seconds:.1f} s",
            f"joint truth table: {self.truth_path}",
        ]
        for s, r in self.parts.items():
            lines.append(
                f"{s.upper()}: {r.alerts} alerts of {r.objects} objects over {len(r.nights)} night(s), "
                f"{r.nbytes / 1e6:.1f} MB"
            )
            lines += [f"  output: {p}" for p in r.outputs[:10]] + (
                [f"  ... and {len(r.outputs) - 10} more"] if len(r.outputs) > 10 else []
            )
        return "\n".join(lines)


def simulate_joint(
    cfg: SimConfig,
    out: str,
    *,
    surveys: Iterable[str] | None = None,
    tar: bool = False,
    truth_path: str | None = None,
) -> JointSimulationReport:
    """Simulate one sky seen by several surveys (default ZTF and LSST) and write `out/<survey>/` per survey (as
    `simulate` writes a folder: night=YYYYMMDD/<id>.avro, or with `tar` <survey>_public_YYYYMMDD.tar.gz) and
    one joint truth table (`out/truth.parquet` or `truth_path`; columns in `joint_truth_table`)."""
    if is_kafka(out):
        raise ValueError("a joint run writes one folder per survey; Kafka output is for single-survey runs")
    jw = build_joint_world(cfg, surveys)
    os.makedirs(out, exist_ok=True)
    truth_path = truth_path or os.path.join(out, "truth.parquet")
    reports: dict[str, SimulationReport] = {}
    alerts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for s, world in jw.worlds.items():
        part = world.cfg
        sub = os.path.join(out, s)
        os.makedirs(sub, exist_ok=True)
        root = os.path.join(sub, f".spool-{part.seed}") if tar else sub
        t0 = time.perf_counter()
        try:
            man = run_parallel(part, root)
            seconds = time.perf_counter() - t0
            nights = sorted(man["night"].unique().tolist()) if len(man) else []
            if tar:
                outputs = write_tarballs(man, sub, s)
            else:
                outputs = [os.path.join(sub, f"night={n}") for n in nights]
        finally:
            if tar:
                shutil.rmtree(root, ignore_errors=True)
        alerts[s] = _alert_counts(man, len(world.pop))
        nbytes = int(man["nbytes"].sum()) if len(man) else 0
        reports[s] = SimulationReport(
            s, len(man), len(world.pop), nights, seconds, nbytes, outputs, truth_path
        )
    truth = joint_truth_table(jw, alerts)
    truth.to_parquet(truth_path, index=False)
    pairs = int(np.logical_and.reduce([truth[f"oid_{s}"].notna().to_numpy() for s in jw.worlds]).sum())
    return JointSimulationReport(jw.cfg.survey, reports, len(truth), pairs, truth_path)
