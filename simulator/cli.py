"""`broker simulate`: the command-line face of the simulator (wired into alert_broker.pipeline.cli)."""

from __future__ import annotations

import argparse
import sys

from .config import SimConfig
from .engine import simulate
from .sinks import is_kafka


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `simulate` sub-command to an argparse subparsers object."""
    p = subparsers.add_parser(
        "simulate",
        help="simulate ZTF or LSST alerts (night archives, tarballs or Kafka) with a truth table",
        description=(
            "Simulate the sky as ZTF or LSST sees it and write schema-valid Avro alerts: a folder of "
            "night=YYYYMMDD/<id>.avro, one .tar.gz per night (--tar), or a Kafka topic at a given rate "
            "(--out kafka://host:port/topic). A truth table (Parquet) lists every object's class and parameters. "
            "--survey ztf+lsst: one sky seen by both surveys in the same nights, OUT/ztf/ and OUT/lsst/ archives "
            "and one joint truth table (OUT/truth.parquet: truth_id, class, position, oid_ztf, oid_lsst, ...)."
        ),
    )
    p.add_argument(
        "--survey",
        choices=("ztf", "lsst", "ztf+lsst"),
        default="ztf",
        help="the survey, or ztf+lsst for a joint run (one sky, an archive per survey; default ztf)",
    )
    p.add_argument("--nights", type=int, default=1, help="number of nights with alerts (default 1)")
    p.add_argument("--objects", type=int, default=1000, help="number of simulated objects (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same bytes (default 0)")
    p.add_argument("--out", required=True, help="output folder, or kafka://host:port/topic[?partitions=N]")
    p.add_argument("--rate", type=float, default=0.0, help="Kafka: mean alerts/s (0 = as fast as possible)")
    p.add_argument(
        "--burst", type=int, default=0, help="Kafka: alerts per burst (one LSST visit ~ 10000; 0 = smooth)"
    )
    p.add_argument(
        "--start-mjd", type=float, default=None, help="a time in the first night (default: survey-specific)"
    )
    p.add_argument("--tar", action="store_true", help="write one .tar.gz per night instead of folders")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument(
        "--codec", choices=("null", "snappy"), default="null", help="Avro block codec (default null)"
    )
    p.add_argument(
        "--ztf-schema",
        choices=("ztf", "fink"),
        default="ztf",
        help="ZTF 4.02 as ZTF publishes it (default) or as Fink re-serialises it",
    )
    p.add_argument("--no-stamps", action="store_true", help="leave the cutouts out (faster, smaller)")
    p.add_argument(
        "--fields",
        type=int,
        default=None,
        help="pointings of the footprint (default: one per a survey's objects per field, at least 40, at most what "
        "one night can visit)",
    )
    p.add_argument("--truth", default=None, help="truth table path (default: OUT/truth.parquet)")
    p.add_argument(
        "--lsst-wire",
        choices=("container", "confluent"),
        default="container",
        help="LSST payload framing: Avro container file (default) or Confluent wire format",
    )
    p.set_defaults(func=run)
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        survey=args.survey,
        nights=args.nights,
        objects=args.objects,
        seed=args.seed,
        start_mjd=args.start_mjd,
        codec=args.codec,
        ztf_schema=args.ztf_schema,
        stamps=not args.no_stamps,
        workers=args.workers,
        n_fields=args.fields,
        extra={"lsst_wire": args.lsst_wire},
    )


def run(args: argparse.Namespace) -> int:
    """Run `broker simulate`; returns the process exit status."""
    try:
        cfg = config_from_args(args)
        cfg.validate()
        if cfg.is_joint and is_kafka(args.out):
            raise ValueError("--survey ztf+lsst writes one folder per survey; --out must be a folder")
        report = simulate(
            cfg, args.out, rate=args.rate, burst=args.burst, tar=args.tar, truth_path=args.truth
        )
    except (ValueError, OSError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (`python -m alert_broker.simulator.cli ...`)."""
    parser = argparse.ArgumentParser(prog="simulate")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["simulate", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
