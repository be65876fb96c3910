"""``broker watchlist import NAME FILE``: a watch list of positions people care about, for ``--watchlists``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from alert_broker.storage.watchlists import import_watchlist


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "watchlist", help="manage watch lists (positions whose alerts get their own stream)"
    )
    sub = p.add_subparsers(dest="watchlist_command", required=True)
    imp = sub.add_parser("import", help="import a CSV/Parquet of name, ra, dec, radius_arcsec")
    imp.add_argument("name", help="watch-list name (letters, digits, _ - .)")
    imp.add_argument("file", help="a .csv, .parquet or .fits file with columns name, ra, dec, radius_arcsec")
    imp.add_argument("--out", default="data", help="the run's OUT folder (the list goes to OUT/watchlists)")
    imp.add_argument("--root", default=None, help="watch-list folder (default OUT/watchlists)")
    imp.add_argument("--order", type=int, default=3, help="HEALPix order of the partitions")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = Path(args.root) if args.root else Path(args.out) / "watchlists"
    t0 = time.perf_counter()
    try:
        summary = import_watchlist(args.name, args.file, root, order=args.order)
    except (ValueError, FileNotFoundError) as err:
        print(f"watchlist import: {err}", file=sys.stderr)
        return 1
    print(
        f"imported watch list {summary['name']}: {summary['entries']} entries (radius up to "
        f'{summary["max_radius_arcsec"]:g}") into {root} in {time.perf_counter() - t0:.1f} s; '
        f"use it with --watchlists {summary['name']}"
    )
    return 0
