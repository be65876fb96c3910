"""``make bench-stream``: latency under a real, bursty stream, as Rubin sends it.

A real Kafka-protocol broker (tansu) on 127.0.0.1; the simulator produces ZTF-format alerts (with stamps) in
LSST-like bursts: one burst of N alerts every 39 s (one visit), N chosen so the mean rate is R alerts/s, for at
least ten minutes per rate; ``broker run-night`` reads the topic continuously with the `make run-night` defaults
(both classifiers, features, history). Per alert: from its Kafka timestamp (its production) to its row in
PostgreSQL (`alert.ingested_at`), and to its message on the output stream; p50, p99 and max per rate; the
backlog (alerts produced and not yet in PostgreSQL) over time; a PNG of both (`reports/bench-stream.png`).

    python -m bench.bench_stream [--rates 250,350] [--minutes 10] [--out reports]

Memory: tansu keeps its topics in RAM (~80 kB per alert with stamps), so rate x minutes must fit beside the
pipeline: on a 24 GB machine 10 minutes at 250 alerts/s do (tansu ~12 GB), 10 at 350 do not (run 7).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from alert_broker.pipeline.kafka import ensure_topic
from alert_broker.simulator import SimConfig
from alert_broker.simulator.engine import iter_alerts
from alert_broker.simulator.sinks import KafkaTarget, produce
from alert_broker.storage import EmbeddedPostgres, SummaryStore
from bench.bench_output import _tansu

VISIT_SECONDS = 39.0


class Spool:
    """The stream's alerts on disk, read back in order while producing: ten minutes at 350 alerts/s are ~16 GB
    of packets, which must not sit in this process's memory beside the broker's copy."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.index: list[tuple[str, int, int]] = []  # key, offset, length

    def __len__(self) -> int:
        return len(self.index)

    def keys(self) -> list[str]:
        return [key for key, _, _ in self.index]

    def messages(self):
        with open(self.path, "rb") as fh:
            for key, offset, length in self.index:
                fh.seek(offset)
                yield key, fh.read(length)


def _alerts_for(rate: float, minutes: float, seed: int, path: Path) -> Spool:
    """Enough simulated ZTF alerts (with stamps) for ``minutes`` at ``rate``, in observing order, spooled."""
    want = int(rate * minutes * 60)
    spool = Spool(path)
    objects = max(2000, want // 2)
    with open(path, "wb") as fh:
        while len(spool) < want:
            cfg = SimConfig(survey="ztf", nights=3, objects=objects, seed=seed + len(spool))
            for alert in iter_alerts(cfg):
                if len(spool) >= want:
                    break
                spool.index.append((str(alert.candid), fh.tell(), len(alert.payload)))
                fh.write(alert.payload)
            objects *= 2
    return spool


def _sample(store: SummaryStore, since: float) -> pd.DataFrame:
    return store.fetch_df(
        "SELECT candid, extract(epoch from produced_at)::float8 AS produced, "
        "extract(epoch from ingested_at)::float8 AS stored "
        "FROM alert WHERE produced_at IS NOT NULL AND ingested_at >= to_timestamp(%s)",
        (since,),
    )


def run_rate(rate: float, minutes: float, workdir: Path, seed: int) -> dict:
    """One rate on its own broker (tansu keeps topics in memory: a broker per rate frees each rate's ~10 GB)."""
    messages = _alerts_for(rate, minutes, seed, workdir / f"stream-{int(rate)}.bin")
    proc, bootstrap = _tansu()
    try:
        return _measure(rate, minutes, workdir, bootstrap, messages)
    finally:
        proc.terminate()
        proc.wait(30)


def _measure(rate: float, minutes: float, workdir: Path, bootstrap: str, messages: Spool) -> dict:
    topic = f"bench-{int(rate)}"
    ensure_topic(bootstrap, topic, partitions=2)
    out = workdir / f"out-{int(rate)}"
    cmd = [
        str(Path(sys.executable).with_name("broker")), "run-night", "--source", f"kafka://{bootstrap}/{topic}",
        "--out", str(out), "--kafka-idle-stop-s", "60", "--no-progress", "--dashboard-address", ":0",
        "--output", f"kafka://{bootstrap}/{topic}-annotated", "--no-publish-lake",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready = threading.Event()
    log_lines: list[str] = []

    def watch() -> None:
        for line in driver.stdout:  # type: ignore[union-attr]
            log_lines.append(line)
            if "classifiers:" in line:
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    if not ready.wait(300):
        driver.kill()
        raise RuntimeError("the driver did not start:\n" + "".join(log_lines[-30:]))
    with EmbeddedPostgres(out / "pg") as pg:
        store = SummaryStore(pg.dsn)
        t0 = time.time()
        report = {}

        def producer() -> None:
            r = produce(
                messages.messages(),
                KafkaTarget(bootstrap, topic),
                rate=rate,
                burst=int(round(rate * VISIT_SECONDS)),
                create_topic=False,
            )
            report["produce"] = r

        prod = threading.Thread(target=producer)
        prod.start()
        backlog = []
        distinct = len(set(messages.keys()))  # PostgreSQL keeps one row per candid (seeds may repeat one)
        while prod.is_alive() or len(backlog) == 0 or backlog[-1][2] < distinct:
            time.sleep(2.0)
            if driver.poll() is not None:
                if driver.returncode == 0 and not prod.is_alive():
                    break  # it processed the stream and stopped on the idle topic
                raise RuntimeError("the driver stopped early:\n" + "".join(log_lines[-40:]))
            # stored or dead-lettered (a simulated alert may be implausible): either way done with
            done = int(
                store.fetch_df(
                    "SELECT (SELECT count(*) FROM alert) + (SELECT count(*) FROM dead_letter) AS n"
                )["n"].iloc[0]
            )
            sent = report["produce"].messages if "produce" in report else None
            elapsed = time.time() - t0
            # what the producer has sent by now: whole bursts, one every visit (the distinct alerts of them)
            burst = int(round(rate * VISIT_SECONDS))
            scheduled = min(len(messages), burst * (int(elapsed // VISIT_SECONDS) + 1))
            expected_sent = (scheduled if sent is None else sent) * distinct / len(messages)
            backlog.append((elapsed, expected_sent, done))
            if not prod.is_alive() and done >= distinct:
                break
            if elapsed > minutes * 60 * 3 + 300:
                break  # it cannot keep up: stop measuring (the backlog says by how much)
        prod.join()
        lat = _sample(store, t0 - 5)
        store.close()
    driver.send_signal(signal.SIGINT)
    try:
        driver.wait(120)
    except subprocess.TimeoutExpired:
        driver.kill()
    lat["latency"] = lat["stored"] - lat["produced"]
    wall = (
        float(lat["stored"].max() - t0) if len(lat) else 0.0
    )  # from the first burst to the last alert stored
    return {
        "rate": rate,
        "alerts": len(messages),
        "stored": len(lat),
        "p50": float(np.percentile(lat["latency"], 50)) if len(lat) else None,
        "p99": float(np.percentile(lat["latency"], 99)) if len(lat) else None,
        "max": float(lat["latency"].max()) if len(lat) else None,
        "achieved": len(lat) / wall if wall else 0.0,
        "backlog": backlog,
        "latency_series": lat[["produced", "latency"]]
        .assign(produced=lambda d: d["produced"] - t0)
        .to_dict("list"),
        "log_tail": "".join(log_lines[-15:]),
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib  # lazy: plotting only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the backend is chosen

    fig, axes = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for r in results:
        s = pd.DataFrame(r["latency_series"])
        if len(s):
            s = s.sort_values("produced")
            axes[0].plot(s["produced"], s["latency"], ".", ms=1, alpha=0.4, label=f"{r['rate']:.0f} alerts/s")
        b = np.array(r["backlog"])
        if len(b):
            axes[1].plot(b[:, 0], b[:, 1] - b[:, 2], label=f"{r['rate']:.0f} alerts/s")
    axes[0].set_ylabel("produce -> PostgreSQL (s)")
    axes[0].axhline(60, color="r", lw=0.8, ls="--")
    axes[0].set_yscale("log")
    axes[0].legend()
    axes[1].set_ylabel("backlog (alerts)")
    axes[1].set_xlabel("time since the stream started (s)")
    axes[1].legend()
    fig.suptitle("alert broker under LSST-like bursts (one visit every 39 s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="250,350", help="mean alerts/s, comma-separated")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", default="reports")
    args = ap.parse_args(argv)
    out = Path(args.out)
    results = []
    for rate in (float(r) for r in args.rates.split(",")):
        workdir = Path(tempfile.mkdtemp(prefix="broker-bench-stream-"))
        try:
            r = run_rate(rate, args.minutes, workdir, args.seed)
            for report in (workdir / f"out-{int(rate)}" / "reports").glob("run-*.md"):
                out.mkdir(parents=True, exist_ok=True)  # the driver's own night summary, per rate
                shutil.copy(report, out / f"bench-stream-{int(rate)}-run.md")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)  # ~90 kB per alert: the raw archive, lake and spool
        results.append(r)
        print(
            f"  {rate:>5.0f} alerts/s offered ({r['alerts']} alerts, bursts of {int(rate * VISIT_SECONDS)} every "
            f"{VISIT_SECONDS:.0f} s): {r['achieved']:.0f} alerts/s achieved; produce -> PostgreSQL p50 "
            f"{r['p50']:.1f} s, p99 {r['p99']:.1f} s, max {r['max']:.1f} s",
            flush=True,
        )
        # after every rate, so a later rate that fails (memory: tansu keeps its topic in RAM) loses nothing
        plot(results, out / "bench-stream.png")
        (out / "bench-stream.json").write_text(
            json.dumps(
                [{k: v for k, v in r.items() if k not in ("latency_series",)} for r in results], indent=1
            )
        )
    print(f"plot: {out / 'bench-stream.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
