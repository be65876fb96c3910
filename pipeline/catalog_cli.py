"""``broker catalog ...``: import local cross-match catalogues (no network at run time)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from alert_broker.storage.catalogs import DEFAULT_MARGIN_ARCSEC, import_catalog, margin_name

#: Where catalogues go unless ``--root`` says otherwise.
DEFAULT_ROOT = os.environ.get("BROKER_CATALOG_ROOT", "data/catalogs")


def register(subparsers) -> None:
    """Add ``catalog import NAME FILE --ra COL --dec COL [...]`` to the ``broker`` sub-commands."""
    p = subparsers.add_parser("catalog", help="manage local cross-match catalogues")
    sub = p.add_subparsers(dest="catalog_command", required=True)
    imp = sub.add_parser(
        "import",
        help="import a CSV/Parquet/FITS catalogue or a catsHTM directory as a HATS catalogue (hats/lsdb open it)",
    )
    imp.add_argument("name", help="catalogue name, e.g. vsx")
    imp.add_argument("file", help="a .csv, .parquet or .fits file, or a catsHTM catalogue directory")
    imp.add_argument("--ra", required=True, help="right ascension column (degrees)")
    imp.add_argument("--dec", required=True, help="declination column (degrees)")
    imp.add_argument("--columns", nargs="+", default=None, help="columns to keep (default: all)")
    imp.add_argument("--id", dest="id_col", default=None, help="source id column (default: the row number)")
    imp.add_argument("--order", type=int, default=5, help="HEALPix order of the partitions (default 5)")
    imp.add_argument(
        "--margin",
        type=float,
        default=None,
        help="width (arcsec) of the margin catalogue that lsdb's crossmatch needs (default 5; 0: none)",
    )
    imp.add_argument(
        "--root",
        default=DEFAULT_ROOT,
        help=f"catalogue folder (default {DEFAULT_ROOT}; env BROKER_CATALOG_ROOT)",
    )


def run(args: argparse.Namespace) -> int:
    """Run a ``catalog`` sub-command; 0 on success, 1 with a message on bad input."""
    if args.catalog_command != "import":
        print(f"unknown catalog command {args.catalog_command!r}", file=sys.stderr)
        return 2
    margin_arcsec = DEFAULT_MARGIN_ARCSEC if args.margin is None else args.margin
    t0 = time.perf_counter()
    try:
        info = import_catalog(
            args.name,
            args.file,
            args.ra,
            args.dec,
            args.root,
            columns=args.columns,
            id_col=args.id_col,
            order=args.order,
            margin_arcsec=margin_arcsec,
        )
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"catalog import failed: {exc}", file=sys.stderr)
        return 1
    margin = f" and its margin {margin_name(info.name, margin_arcsec)}" if margin_arcsec > 0 else ""
    print(
        f"imported {info.total_rows} rows of {args.file} as {info.name!r} (order {info.order}){margin} "
        f"into {args.root}/{info.name} in {time.perf_counter() - t0:.1f} s"
    )
    return 0
