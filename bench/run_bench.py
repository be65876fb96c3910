"""``make bench``: decode-only ceiling vs the full pipeline on the same alerts, in one run, on this machine.

Prints alerts/s for (a) fastavro decoding alone on the same Dask workers the pipeline uses (the ceiling),
(b) the full pipeline from a night archive (decode, archive, correction, magstats, lake, PostgreSQL, manifest),
their ratio, and peak memory (whole process tree: driver, workers, PostgreSQL); then the same pipeline without
the history store, replayed over the history it stored, with the stamp classifier, and with features and both
classifiers (the `make run-night` defaults); how long workers take from start to ready with the default models
(stamp CNN served by ONNX Runtime, and by TensorFlow for comparison); and the CPU per alert of the driver, the
workers and PostgreSQL while processing, with the ratio that CPU allows on always-busy cores. Figures are only
comparable within one run: the machine is shared and noisy.

    python -m bench.run_bench [--copies N] [--batch-size N] [--workers 2]

The batch size defaults to run-night's; the night is the real sample replicated until it makes at least
``MIN_BATCHES`` batches (with fewer, the first batch's start and the last one's tail, when a core idles, weigh on
the rate more than the pipeline itself).

Every run starts from the same state: once a run's output is no longer needed (the core run's lake serves the
"again" run) it is deleted, and the file system is synced (``os.sync``) before the next run starts, outside the
measured window. Without that each run also paid for writing back the files of the runs before it (kernel
writeback on the same two cores, page cache reclaimed from its input): measured, the last run (the defaults) then
took ~15-25 % more CPU per alert for identical work (its decode step 5.9 s against 4.7 s after a sync).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import fastavro
import psutil

from alert_broker.pipeline.config import SHARED_ZTF, load_settings
from alert_broker.pipeline.worker_start import WORKER_START_METHODS
from alert_broker.surveys.decode import read_packet


class PeakRSS:
    """Samples the RSS of this process, all its children and the PostgreSQL servers started since; keeps the
    peak of the sum, and the CPU seconds each process used (the last sample of each) by kind: the driver
    (with the LocalCluster's scheduler, in this process), PostgreSQL (server and backends: pg_ctl daemonizes it,
    so it is found by name) and the Dask worker processes (nannies and workers).

    The process list is rebuilt every ``rescan`` seconds (default: every second), not at every sample: listing
    every process on the machine (for the children and PostgreSQL's backends) is most of the sampler's own CPU,
    and it runs in the driver's process, on the cores it measures. Sampling every 0.2 s with a full scan cost
    ~5 % of a core; a process found late still has all its CPU counted (from its start)."""

    def __init__(self, interval: float = 0.2, rescan: float | None = None) -> None:
        self.interval = interval
        self.rescan = max(interval, 1.0) if rescan is None else rescan
        self.peak_total = 0
        #: (seconds since start, total RSS) per sample: memory over a run
        self.samples: list[tuple[float, int]] = []
        self._cpu: dict[int, tuple[str, float]] = {}  # pid -> (kind, CPU seconds used since the start)
        #: (perf_counter, CPU seconds by kind since the start) per sample
        self.cpu_samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _by_kind(self) -> dict[str, float]:
        out = {"driver": 0.0, "postgres": 0.0, "workers": 0.0}
        for kind, sec in self._cpu.values():
            out[kind] += sec
        return out

    def cpu_between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds by kind (driver, postgres, workers) from the last sample at or before ``start`` to the
        first at or after ``end`` (``time.perf_counter`` values, e.g. a run's processing window)."""
        before = [c for t, c in self.cpu_samples if t <= start] or [self.cpu_samples[0][1]]
        after = [c for t, c in self.cpu_samples if t >= end] or [self.cpu_samples[-1][1]]
        return {k: after[0][k] - before[-1][k] for k in before[-1]}

    def _processes(self, me: psutil.Process, since: float) -> list[tuple[str, psutil.Process]]:
        procs = [("driver", me)] + [("workers", p) for p in me.children(recursive=True)]
        for p in psutil.process_iter(["name", "create_time"]):
            if (p.info["name"] or "").startswith("postgres") and (p.info["create_time"] or 0) >= since - 1:
                procs.append(("postgres", p))
        seen: dict[int, tuple[str, psutil.Process]] = {}
        for kind, p in procs:  # a postgres child of ours is postgres, not a worker
            if p.pid not in seen or kind == "postgres":
                seen[p.pid] = (kind, p)
        return list(seen.values())

    def _run(self) -> None:
        me = psutil.Process()
        t0 = time.perf_counter()
        since = time.time()
        start: dict[int, float] = {}
        procs, listed = self._processes(me, since), time.perf_counter()
        for _kind, p in procs:  # CPU already used by running processes is not the run's
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                start[p.pid] = t.user + t.system
        while not self._stop.is_set():
            if time.perf_counter() - listed >= self.rescan:
                procs, listed = self._processes(me, since), time.perf_counter()
            total = 0
            for kind, p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
                    t = p.cpu_times()
                    self._cpu[p.pid] = (kind, t.user + t.system - start.get(p.pid, 0.0))
            self.peak_total = max(self.peak_total, total)
            now = time.perf_counter()
            self.samples.append((now - t0, total))
            self.cpu_samples.append((now, self._by_kind()))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _decode_only(payloads: list[bytes]) -> int:
    """The ceiling's decode: fastavro reading each packet, as any Python consumer of the stream would."""
    n = 0
    for p in payloads:
        for _ in fastavro.reader(io.BytesIO(p)):
            n += 1
    return n


def _decode_compiled(payloads: list[bytes]) -> int:
    """The pipeline's own record reading (surveys.read_packet: the compiled reader), for comparison."""
    return sum(len(read_packet(p).records) for p in payloads)


def _ceiling(payloads: list[bytes], workers: int) -> float:
    """Decode-only alerts/s on a fresh LocalCluster of ``workers`` single-thread workers: the best of three."""
    from distributed import Client, LocalCluster

    from alert_broker.pipeline.driver import _chunks

    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        # hash=False: the bench night repeats the sample, so chunks can be equal, and hashed equal chunks would
        # share one key on one worker (a one-worker "ceiling")
        futs = client.scatter(_chunks(payloads, workers * 2), hash=False)
        held = {addr for addrs in client.who_has(futs).values() for addr in addrs}
        if len(held) < min(workers, len(futs)):
            raise RuntimeError(f"the decode-only chunks sit on {len(held)} of {workers} workers")
        client.gather(client.map(_decode_only, futs, pure=False))  # warm the workers
        best = 0.0
        for _ in range(3):
            t = time.perf_counter()
            decoded = sum(client.gather(client.map(_decode_only, futs, pure=False)))
            best = max(best, decoded / (time.perf_counter() - t))
    return best


def _startup(dask_worker) -> dict:
    return dict(dask_worker.plugins["alert-broker"].startup_seconds)


def start_to_ready(workers: int, stamp_runtime: str, method: str = "spawn") -> dict:
    """Seconds from starting a LocalCluster of ``workers`` processes to every worker ready with the default
    models (process start, imports, numba kernels from their cache, science warm-up, models loaded), serving the
    stamp CNN through ``stamp_runtime`` ("onnx" or "keras") with workers started by ``method`` (the first
    forkserver cluster of a process also starts the server, which imports the worker code); and the slowest
    worker's setup steps."""
    import dask
    from distributed import Client, LocalCluster

    from alert_broker.pipeline.driver import RunModels
    from alert_broker.pipeline.resources import BrokerWorkerPlugin
    from alert_broker.pipeline.worker_start import prepare_worker_start, worker_start_config

    models = RunModels.of(load_settings(env={}, overrides=dict(lc_model="auto", stamp_model="auto")))
    before = os.environ.get("BROKER_STAMP_RUNTIME")
    os.environ["BROKER_STAMP_RUNTIME"] = stamp_runtime  # worker processes inherit it
    try:
        t = time.perf_counter()
        with (
            dask.config.set(worker_start_config(method)),
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                dashboard_address=":0",
                env=prepare_worker_start(method) or None,
            ) as cluster,
            Client(cluster) as client,
        ):
            plugin = BrokerWorkerPlugin(lc_models=models.lc, stamp_models=models.stamps, log_level="WARNING")
            client.register_plugin(plugin)  # returns once every worker has run its setup
            seconds = time.perf_counter() - t
            setups = list(client.run(_startup).values())
            rss = max(client.run(lambda: psutil.Process().memory_info().rss).values())
    finally:
        if before is None:
            os.environ.pop("BROKER_STAMP_RUNTIME", None)
        else:
            os.environ["BROKER_STAMP_RUNTIME"] = before
    slowest = max(setups, key=lambda d: sum(d.values()))
    return {
        "seconds": round(seconds, 2),
        "setup_seconds": {k: round(v, 2) for k, v in slowest.items()},
        "worker_rss_mb": round(rss / 1e6),
    }


def cpu_budget(seconds: dict[str, float], alerts: int, decode_per_core: float) -> dict:
    """CPU per alert by process kind, and the pipeline / decode-only ratio that CPU allows on busy cores."""
    per = {k: round(1000 * v / alerts, 3) for k, v in seconds.items()}
    total = sum(seconds.values()) / alerts
    decode = 1 / decode_per_core
    return {**per, "total": round(1000 * total, 3), "cpu_bound_ratio": round(decode / total, 3)}


def settle(tmp: Path, label: str) -> None:
    """Between two runs: delete the output ``label``'s run leaves that no later run reads (the core run's lake is
    read again by the "again" run, then deleted), and flush what is left to disk, so the next run neither writes
    back this one's files nor loses its input from the page cache to them (module docstring)."""
    done = {"again": "core", "no-history": "no-history", "stamps": "stamps", "features": "features"}
    if label in done:
        shutil.rmtree(tmp / f"out-{done[label]}", ignore_errors=True)
    os.sync()


def build_night(src: Path, copies: int, dest: Path) -> list[bytes]:
    files = sorted(src.glob("*.avro"))
    payloads = []
    for k in range(copies):
        d = dest / f"copy{k:02d}"
        d.mkdir(parents=True)
        for f in files:
            shutil.copy(f, d / f.name)
            payloads.append(f.read_bytes())
    return payloads


#: Batches the bench night makes at least (see the module docstring).
MIN_BATCHES = 8


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=str(SHARED_ZTF), help="folder of real .avro alerts")
    ap.add_argument(
        "--copies",
        type=int,
        default=None,
        help=f"replicate the sample (default: >= 4 and {MIN_BATCHES} batches)",
    )
    ap.add_argument("--batch-size", type=int, default=None, help="default: run-night's")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--worker-start",
        choices=WORKER_START_METHODS,
        default=None,
        help="how the runs' LocalCluster starts its workers (default: run-night's)",
    )
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)

    src = Path(args.source)
    if not src.is_dir():
        raise SystemExit(f"no alerts at {src}: pass --source")

    from alert_broker.pipeline.driver import run

    tmp = Path(tempfile.mkdtemp(prefix="broker-bench-"))
    try:
        if args.batch_size is None:
            args.batch_size = load_settings(env={}).batch_size
        if args.copies is None:
            sample = sum(1 for _ in src.glob("*.avro"))
            args.copies = max(4, -(-MIN_BATCHES * args.batch_size // max(1, sample)))
        payloads = build_night(src, args.copies, tmp / "night")
        n = len(payloads)
        mb = sum(map(len, payloads)) / 1e6

        t = time.perf_counter()
        one_core = _decode_only(payloads[: min(n, 1500)])
        single = one_core / (time.perf_counter() - t)
        _decode_compiled(payloads[:50])  # the kernel loaded, the schema compiled
        t = time.perf_counter()
        single_compiled = _decode_compiled(payloads[: min(n, 1500)]) / (time.perf_counter() - t)

        ceiling_before = _ceiling(payloads, args.workers)
        # Dask's spawn (each worker imports everything), then the fork server the runs use: its first cluster
        # starts the server, a second one (a restarted or added worker) only forks
        ready = {f"{rt}, spawn": start_to_ready(args.workers, rt) for rt in ("onnx", "keras")}
        for when in ("first", "again"):
            ready[f"onnx, forkserver ({when})"] = start_to_ready(args.workers, "onnx", "forkserver")
        os.sync()  # the night just written goes to disk before the first run, not during it

        runs = {}
        cpu: dict[str, dict[str, float]] = {}
        # core: what every alert pays (decode, archive, correction, magstats, history, lake, PostgreSQL);
        # stamps: + the stamp CNN on each new object's first alert; features: the defaults of `make run-night`
        # (+ light-curve features and the light-curve classifier)
        # again: the core run once more over the lake the first one filled, so every object's stored history
        # is read back (a broker's second night, or a replay)
        for label, with_features, history, stamps in (
            ("core", False, True, False),
            ("again", False, True, False),
            ("no-history", False, False, False),
            ("stamps", False, True, True),
            ("features", True, True, True),
        ):
            settings = load_settings(
                env={},
                overrides=dict(
                    source=str(tmp / "night"),
                    out=str(tmp / f"out-{'core' if label == 'again' else label}"),
                    batch_size=args.batch_size,
                    n_workers=args.workers,
                    threads_per_worker=1,
                    dashboard_address=":0",
                    progress=False,
                    features=with_features,
                    history=history,
                    lc_model="auto" if with_features else "none",
                    stamp_model="auto" if stamps else "none",
                    worker_start=args.worker_start,
                ),
            )
            with PeakRSS() as mem:
                t = time.perf_counter()
                report = run(settings)
                wall = time.perf_counter() - t
            runs[label] = (report.summary(), wall, mem.peak_total)
            settle(tmp, label)
            # the processing window (first submission to last commit), as the throughput: no start-up
            cpu[label] = mem.cpu_between(report.processing_started, report.processing_ended)
        # the ceiling again after the pipeline runs: the best of both, so a slow spell on a shared machine during
        # one measurement cannot inflate the ratios
        ceiling_after = _ceiling(payloads, args.workers)
        ceiling = max(ceiling_before, ceiling_after)
        s, wall, peak = runs["core"]
        sf, wall_f, peak_f = runs["features"]
        snh = runs["no-history"][0]
        sst = runs["stamps"][0]
        sag = runs["again"][0]
        full = s["alerts_per_second"]
        figures = {
            "alerts": n,
            "megabytes": round(mb, 1),
            "workers": args.workers,
            "batch_size": args.batch_size,
            "decode_one_core_alerts_per_s": round(single, 1),
            "read_one_core_compiled_alerts_per_s": round(single_compiled, 1),
            "decode_only_alerts_per_s": round(ceiling, 1),
            "decode_only_before_after_alerts_per_s": [round(ceiling_before, 1), round(ceiling_after, 1)],
            "pipeline_alerts_per_s": full,
            "pipeline_over_decode_ratio": round(full / ceiling, 3) if ceiling else None,
            "pipeline_without_history_alerts_per_s": snh["alerts_per_second"],
            "history_cost_ratio": round(full / snh["alerts_per_second"], 3)
            if snh["alerts_per_second"]
            else None,
            "history_rows_merged": s["counts"].get("history_rows_read", 0),
            "pipeline_over_stored_history_alerts_per_s": sag["alerts_per_second"],
            "pipeline_over_stored_history_ratio": round(sag["alerts_per_second"] / ceiling, 3),
            "stored_history_rows_merged": sag["counts"].get("history_rows_read", 0),
            "history_compaction": s.get("history_compaction", {}),
            "pipeline_with_stamps_alerts_per_s": sst["alerts_per_second"],
            "pipeline_with_stamps_over_decode_ratio": round(sst["alerts_per_second"] / ceiling, 3),
            "stamps_classified": sst["counts"].get("stamp_classified", 0),
            "pipeline_with_features_alerts_per_s": sf["alerts_per_second"],
            "pipeline_with_features_over_decode_ratio": round(sf["alerts_per_second"] / ceiling, 3),
            "objects_with_features": sf["counts"].get("features", 0),
            "pipeline_wall_s_incl_startup": round(wall, 2),
            "batch_seconds_p50": s["batch_seconds_p50"],
            "batch_seconds_p99": s["batch_seconds_p99"],
            "peak_rss_total_mb": round(peak / 1e6),
            "peak_rss_total_mb_with_features": round(peak_f / 1e6),
            "step_seconds": s["step_seconds"],
            # the serial part: CPU of the driver process (driver + the LocalCluster's scheduler) per alert, and
            # the alerts/s one driver could sustain with a core of its own (Amdahl)
            "driver_cpu_ms_per_alert": s.get("driver_cpu_ms_per_alert"),
            "driver_ceiling_alerts_per_s": s.get("driver_ceiling_alerts_per_second"),
            "driver_cpu_ms_per_alert_with_features": sf.get("driver_cpu_ms_per_alert"),
            "driver_ceiling_alerts_per_s_with_features": sf.get("driver_ceiling_alerts_per_second"),
            "worker_seconds": s["worker_seconds"],
            "worker_seconds_with_features": sf["worker_seconds"],
            # cluster start -> every worker ready with the default models, by stamp CNN runtime
            "workers_start_to_ready": ready,
            # where the CPU goes while processing, ms per alert, and the ratio the pipeline could
            # reach if every core were busy with it all the time: decode-only CPU per alert / all CPU per alert
            "cpu_ms_per_alert": {k: cpu_budget(cpu[k], n, single) for k in ("core", "features")},
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"bench: {n} real ZTF alerts ({mb:.0f} MB), {args.workers} workers x 1 thread, batch {args.batch_size}"
    )
    print(f"  decode only, 1 core in-process    {figures['decode_one_core_alerts_per_s']:>9} alerts/s")
    print(
        f"  the pipeline's compiled reader    {figures['read_one_core_compiled_alerts_per_s']:>9} alerts/s  "
        "(1 core, records only: the ceiling stays fastavro's)"
    )
    print(
        f"  decode only, on the Dask workers  {figures['decode_only_alerts_per_s']:>9} alerts/s  "
        f"(ceiling: best of 3 before and 3 after the runs, {figures['decode_only_before_after_alerts_per_s']})"
    )
    print(
        f"  full pipeline (archive source)    {figures['pipeline_alerts_per_s']:>9} alerts/s  (no features, no classifiers)"
    )
    print(f"  ratio pipeline / ceiling          {figures['pipeline_over_decode_ratio']:>9}")
    print(
        f"  same without the history store    {figures['pipeline_without_history_alerts_per_s']:>9} alerts/s  "
        f"(with/without {figures['history_cost_ratio']}; {figures['history_rows_merged']} stored rows merged)"
    )
    print(
        f"  again, over the stored history    {figures['pipeline_over_stored_history_alerts_per_s']:>9} alerts/s  "
        f"(ratio {figures['pipeline_over_stored_history_ratio']}; "
        f"{figures['stored_history_rows_merged']} stored rows merged)"
    )
    print(
        f"  + stamp classifier                {figures['pipeline_with_stamps_alerts_per_s']:>9} alerts/s  "
        f"(ratio {figures['pipeline_with_stamps_over_decode_ratio']}, {figures['stamps_classified']} objects)"
    )
    print(
        f"  + features + lc classifier        {figures['pipeline_with_features_alerts_per_s']:>9} alerts/s  "
        f"(ratio {figures['pipeline_with_features_over_decode_ratio']}, "
        f"{figures['objects_with_features']} feature vectors; the run-night defaults)"
    )
    hc = figures["history_compaction"]
    if hc:
        print(
            f"  history compaction (end of run)   {hc.get('seconds')} s  "
            f"({hc.get('pixels')} pixel files from {hc.get('deltas')} deltas)"
        )
    print(
        f"  batch latency p50 / p99           {figures['batch_seconds_p50']} s / {figures['batch_seconds_p99']} s"
    )
    print(
        f"  peak memory (driver+workers+pg)   {figures['peak_rss_total_mb']:>9} MB  "
        f"({figures['peak_rss_total_mb_with_features']} MB with features)"
    )
    print(
        f"  driver CPU per alert              {figures['driver_cpu_ms_per_alert']} ms core, "
        f"{figures['driver_cpu_ms_per_alert_with_features']} ms defaults (one driver's ceiling "
        f"{figures['driver_ceiling_alerts_per_s']} / {figures['driver_ceiling_alerts_per_s_with_features']} alerts/s)"
    )
    for rt, r in figures["workers_start_to_ready"].items():
        print(
            f"  workers start -> ready ({rt})  {r['seconds']} s  (slowest worker's setup "
            f"{r['setup_seconds']}; worker RSS {r['worker_rss_mb']} MB)"
        )
    for label, c in figures["cpu_ms_per_alert"].items():
        print(
            f"  CPU per alert, {label:<8}          {c['total']} ms (workers {c['workers']}, driver+scheduler "
            f"{c['driver']}, PostgreSQL {c['postgres']}; decode alone "
            f"{round(1000 / figures['decode_one_core_alerts_per_s'], 3)}): ratio if the cores were always busy "
            f"{c['cpu_bound_ratio']}"
        )
    print(f"  driver time per step (s)          {figures['step_seconds']}")
    print(f"  worker CPU per step (s)           {figures['worker_seconds']}")
    print(f"  worker CPU per step, features (s) {figures['worker_seconds_with_features']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
