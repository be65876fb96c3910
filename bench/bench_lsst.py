"""``make bench``, LSST rows: the decode-only ceiling against the pipeline on the same LSST alerts, in one run,
and the survey decoders' alerts/s per core, LSST beside ZTF.

The LSST night is simulated (the latest lsst.alert schema, 12 months of history and forced photometry per
alert, three cutouts): the real LSST samples are too few, and repeating them would repeat their diaSourceIds.
Figures are only comparable within one run: the machine is shared and noisy.

    python -m bench.bench_lsst [--objects 6000] [--batch-size 500] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import shutil
import struct
import tempfile
import time
from pathlib import Path

import fastavro

from alert_broker.pipeline.config import SHARED_ZTF, load_settings
from alert_broker.pipeline.driver import run
from alert_broker.simulator import SimConfig, simulate
from alert_broker.surveys import RawMessage, decode_batch
from alert_broker.surveys.lsst import _version_of, packaged_schemas
from bench.run_bench import PeakRSS, _ceiling


def _payloads(folder: Path) -> list[bytes]:
    return [f.read_bytes() for f in sorted(folder.rglob("*.avro"))]


def _fastavro_per_core(payloads: list[bytes]) -> float:
    t = time.perf_counter()
    n = sum(1 for p in payloads for _ in fastavro.reader(io.BytesIO(p)))
    return n / (time.perf_counter() - t)


def _adapter_per_core(payloads: list[bytes]) -> float:
    """Our decoder: packets -> the internal tables (what a decode task does before archiving)."""
    msgs = [RawMessage("bench", 0, i, p) for i, p in enumerate(payloads)]
    decode_batch(msgs[:50], "warm")
    t = time.perf_counter()
    tables, dead, _ = decode_batch(msgs, "bench")
    assert not dead, dead[0].reason
    return len(tables.alerts) / (time.perf_counter() - t)


def _wire_frames(payloads: list[bytes]) -> list[bytes]:
    """The same alerts as Rubin's Kafka stream frames them: magic 0, the 4-byte schema id (major * 100 +
    minor), the bare datum (decoding these also wraps each datum in a container for the raw archive)."""
    frames = []
    for p in payloads:
        reader = fastavro.reader(io.BytesIO(p))
        major, minor = _version_of(reader.writer_schema)
        registered = fastavro.parse_schema(packaged_schemas()[(major, minor)].schema)  # what the id names
        for record in reader:
            datum = io.BytesIO()
            fastavro.schemaless_writer(datum, registered, record)
            frames.append(b"\0" + struct.pack(">I", major * 100 + minor) + datum.getvalue())
    return frames


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=15000, help="simulated LSST objects (one night)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="broker-bench-lsst-"))
    try:
        night = tmp / "lsst"
        simulate(SimConfig(survey="lsst", nights=1, objects=args.objects, seed=args.seed), str(night))
        payloads = _payloads(night)
        n, mb = len(payloads), sum(map(len, payloads)) / 1e6
        lsst_fastavro = _fastavro_per_core(payloads[:1500])
        lsst_adapter = _adapter_per_core(payloads[:1500])
        lsst_wire = _adapter_per_core(_wire_frames(payloads[:1500]))
        ztf = _payloads(SHARED_ZTF)[:1000] if SHARED_ZTF.is_dir() else []
        ztf_fastavro = _fastavro_per_core(ztf) if ztf else float("nan")
        ztf_adapter = _adapter_per_core(ztf) if ztf else float("nan")
        ceiling_before = _ceiling(payloads, args.workers)
        runs = {}
        for label, defaults in (("core", False), ("defaults", True)):
            settings = load_settings(
                env={},
                overrides=dict(
                    source=str(night),
                    out=str(tmp / f"out-{label}"),
                    batch_size=args.batch_size,
                    n_workers=args.workers,
                    threads_per_worker=1,
                    dashboard_address=":0",
                    progress=False,
                    features=defaults,
                    lc_model="auto" if defaults else "none",
                    stamp_model="auto" if defaults else "none",
                ),
            )
            with PeakRSS() as mem:
                report = run(settings)
            runs[label] = (report.summary(), mem.peak_total)
        ceiling = max(ceiling_before, _ceiling(payloads, args.workers))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    core, core_mem = runs["core"]
    full, full_mem = runs["defaults"]
    print(f"bench LSST: {n} simulated LSST alerts ({mb:.0f} MB), {args.workers} workers x 1 thread")
    print(f"  decode only (fastavro), on the Dask workers  {ceiling:>8.1f} alerts/s  (ceiling)")
    print(
        f"  core pipeline                                {core['alerts_per_second']:>8.1f} alerts/s  "
        f"(ratio {core['alerts_per_second'] / ceiling:.3f}; {core['counts'].get('detections', 0)} detections, "
        f"{core['counts'].get('forced_photometry', 0)} forced points)"
    )
    print(
        f"  + flux features + LSST classifier            {full['alerts_per_second']:>8.1f} alerts/s  "
        f"(ratio {full['alerts_per_second'] / ceiling:.3f}; {full['counts'].get('flux_features', 0)} feature "
        f"vectors, {full['counts'].get('classified', 0)} classified; the run-night defaults)"
    )
    print(
        f"  peak memory (driver+workers+pg)              {core_mem / 1e6:>8.0f} MB  ({full_mem / 1e6:.0f} MB defaults)"
    )
    print("  decoders per core, in-process (alerts/s):     fastavro records   our adapter (-> tables)")
    print(f"    LSST (simulated, latest schema)           {lsst_fastavro:>10.1f}   {lsst_adapter:>10.1f}")
    print(f"    LSST, schema-registry (wire) frames                          {lsst_wire:>10.1f}")
    print(f"    ZTF  (real, fink sample)                  {ztf_fastavro:>10.1f}   {ztf_adapter:>10.1f}")
    print(f"  worker CPU per step, defaults (s)            {full['worker_seconds']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
