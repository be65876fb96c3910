"""Cross-match throughput against a 10^6-row catalogue, on one core.

    python -m bench.bench_xmatch [--catalog-rows 1000000] [--queries 200000] [--radius 1.5]

Two figures: (a) ``features.xmatch.CatalogTree`` alone (tree built once, as a worker that keeps a catalogue
in memory would), and (b) the whole ``crossmatch`` path through an imported HEALPix catalogue (pixel lookup,
Parquet read through the per-process cache, tree over the loaded pixels), objects clustered in one order-5
pixel's neighbourhood the way a region task sees them. The synthetic catalogue is uniform on the sphere; half of
the queries sit 0-1 arcsec from a catalogue source, half are random (mostly no match). Single-threaded (the
k-d tree query runs with ``workers=1``), so the figures are per core. The machine is shared: compare only
figures from one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pandas as pd

from alert_broker.features.xmatch import CatalogTree, crossmatch
from alert_broker.storage.catalogs import PIXEL_CACHE, Catalog, import_catalog


def uniform_sky(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` positions uniform on the sphere (degrees)."""
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    return ra, dec


def queries(cat_ra, cat_dec, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Half near catalogue sources (within ~1 arcsec), half random."""
    half = n // 2
    pick = rng.integers(0, len(cat_ra), half)
    jitter = rng.normal(0.0, 0.5 / 3600.0, (2, half))
    ra_near = (cat_ra[pick] + jitter[0] / np.maximum(np.cos(np.radians(cat_dec[pick])), 1e-3)) % 360.0
    dec_near = np.clip(cat_dec[pick] + jitter[1], -90.0, 90.0)
    ra_far, dec_far = uniform_sky(n - half, rng)
    return np.concatenate([ra_near, ra_far]), np.concatenate([dec_near, dec_far])


def bench_tree(catalog_rows: int, n_queries: int, radius: float, seed: int = 1) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    cat_ra, cat_dec = uniform_sky(catalog_rows, rng)
    q_ra, q_dec = queries(cat_ra, cat_dec, n_queries, rng)
    t0 = time.perf_counter()
    tree = CatalogTree(cat_ra, cat_dec)
    t1 = time.perf_counter()
    idx, _ = tree.nearest(q_ra, q_dec, radius)
    t2 = time.perf_counter()
    return {
        "build_s": t1 - t0,
        "query_s": t2 - t1,
        "matched": int((idx >= 0).sum()),
        "queries_per_s": n_queries / (t2 - t1),
    }


def bench_catalog(catalog_rows: int, n_queries: int, radius: float, seed: int = 2) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    cat_ra, cat_dec = uniform_sky(catalog_rows, rng)
    with tempfile.TemporaryDirectory() as tmp:
        pd.DataFrame({"ra": cat_ra, "dec": cat_dec}).to_parquet(f"{tmp}/syn.parquet")
        t0 = time.perf_counter()
        import_catalog("syn", f"{tmp}/syn.parquet", "ra", "dec", tmp, order=5)
        t_import = time.perf_counter() - t0
        cat = Catalog(tmp, "syn")
        # a region task: objects within ~2 deg of one point, half of them on catalogue sources
        near = np.flatnonzero((np.abs(cat_dec - 30.0) < 2.0) & (np.abs(cat_ra - 150.0) < 2.0))
        sub_ra, sub_dec = queries(cat_ra[near], cat_dec[near], n_queries, rng)
        box = rng.uniform(-2.0, 2.0, (2, n_queries - n_queries // 2))
        sub_ra[n_queries // 2 :] = 150.0 + box[0]
        sub_dec[n_queries // 2 :] = 30.0 + box[1]
        objects = pd.DataFrame(
            {"oid": np.arange(n_queries).astype(str), "meanra": sub_ra, "meandec": sub_dec}
        )
        PIXEL_CACHE.clear()
        t0 = time.perf_counter()
        cold = crossmatch(objects, cat, radius)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        crossmatch(objects, cat, radius)
        t_warm = time.perf_counter() - t0
    return {
        "import_s": t_import,
        "cold_s": t_cold,
        "warm_s": t_warm,
        "matched": len(cold),
        "warm_queries_per_s": n_queries / t_warm,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog-rows", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200_000)
    ap.add_argument("--radius", type=float, default=1.5, help="arcsec")
    args = ap.parse_args(argv)
    t = bench_tree(args.catalog_rows, args.queries, args.radius)
    print(
        f"k-d tree, {args.catalog_rows:,} rows: build {t['build_s']:.2f} s, {args.queries:,} queries in "
        f"{t['query_s']:.2f} s = {t['queries_per_s']:,.0f} queries/s/core ({t['matched']:,} matched)"
    )
    c = bench_catalog(args.catalog_rows, min(args.queries, 20_000), args.radius)
    print(
        f"crossmatch via imported catalogue (order 5): import {c['import_s']:.1f} s; one region of "
        f"{min(args.queries, 20_000):,} objects: cold {c['cold_s'] * 1e3:.0f} ms, warm {c['warm_s'] * 1e3:.0f} ms "
        f"= {c['warm_queries_per_s']:,.0f} objects/s/core ({c['matched']:,} matched)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
