"""Latency of the query API (``broker serve``) over a PostgreSQL holding 10^6 simulated objects.

    python -m bench.bench_api [--objects 1000000] [--light-curves 3000] [--requests 300]

A fresh embedded PostgreSQL gets the broker's schema, then, bulk-loaded with COPY: ``--objects`` objects spread
over the sky (with ``hpx29``), two magstats bands, one alert and one cross-survey association each, and five
stamp-classifier probability rows for a fifth of them. A history store gets ``--light-curves`` light curves
(~100 detections and ~30 non-detection limits each). The API then runs in a uvicorn thread and one client asks,
one request at a time: an object page (``/objects/{oid}``), a light curve (``/objects/{oid}/lightcurve``), a 5"
cone search (``/objects?ra=&dec=&radius=5``), the newest objects page and a class-filtered page. Printed: p50
and p95 in milliseconds per call, and PostgreSQL's ``EXPLAIN ANALYZE`` of the cone search's own SQL (an index
scan of ``object_hpx29_idx``). Then one cross-match upload (``POST /crossmatch``) of ``--upload-positions``
positions. The machine is shared and noisy: compare within one run.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from alert_broker.api.data import BrokerData, ObjectQuery
from alert_broker.api.server import BackgroundServer, ServeConfig
from alert_broker.features.healpix import healpix29, pixel_of
from alert_broker.storage import EmbeddedPostgres, Lake, SummaryStore
from alert_broker.storage.history import HistoryStore

STAMP_CLASSES = ("SN", "AGN", "VS", "asteroid", "bogus")


def _copy(store: SummaryStore, table: str, df: pd.DataFrame) -> float:
    """COPY ``df`` into ``table`` (CSV through one buffer); seconds."""
    t = time.perf_counter()
    buf = io.StringIO()
    df.to_csv(buf, index=False, header=False, na_rep="\\N")
    cols = ", ".join(f'"{c}"' for c in df.columns)
    with (
        store.conn.cursor() as cur,
        cur.copy(f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT csv, NULL '\\N')") as cp,
    ):
        cp.write(buf.getvalue())
    return time.perf_counter() - t


def simulate_objects(n: int, rng: np.random.Generator) -> pd.DataFrame:
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    first = rng.uniform(58000, 61000, n)
    span = rng.exponential(60, n)
    ndet = rng.integers(1, 300, n)
    return pd.DataFrame(
        {
            "oid": [f"ZTF{i:09d}" for i in range(n)],
            "survey": "ztf",
            "ndet": ndet,
            "firstmjd": first,
            "lastmjd": first + span,
            "deltajd": span,
            "meanra": ra,
            "meandec": dec,
            "sigmara": rng.uniform(0.05, 0.3, n),
            "sigmadec": rng.uniform(0.05, 0.3, n),
            "corrected": rng.random(n) < 0.5,
            "stellar": rng.random(n) < 0.3,
            "diffpos": rng.random(n) < 0.8,
            "reference_change": False,
            "night": 20240101,
            "hpx29": healpix29(ra, dec),
        }
    )


def load_postgres(store: SummaryStore, objects: pd.DataFrame, rng: np.random.Generator) -> dict[str, float]:
    n = len(objects)
    seconds = {"object": _copy(store, "object", objects)}
    mag = []
    for fid in (1, 2):
        m = rng.uniform(15, 21, n)
        mag.append(pd.DataFrame({"oid": objects["oid"], "fid": fid, "survey": "ztf", "ndet": objects["ndet"] // 2,
                                 "ndubious": 0, "magmean": m, "magmedian": m, "magmax": m + 0.5, "magmin": m - 0.5,
                                 "magsigma": 0.2, "firstmjd": objects["firstmjd"], "lastmjd": objects["lastmjd"],
                                 "corrected": False, "stellar": False, "night": 20240101}))  # fmt: skip
    seconds["magstats"] = _copy(store, "magstats", pd.concat(mag, ignore_index=True))
    seconds["alert"] = _copy(
        store,
        "alert",
        pd.DataFrame(
            {
                "candid": np.arange(n, dtype=np.int64) + 2_000_000_000_000_000_000 // 2,
                "oid": objects["oid"],
                "survey": "ztf",
                "mjd": objects["lastmjd"],
                "night": 20240101,
                "fid": 1,
                "ra": objects["meanra"],
                "dec": objects["meandec"],
                "magpsf": 18.0,
                "sigmapsf": 0.1,
                "band": "g",
            }
        ),  # fmt: skip
    )
    seconds["object_association"] = _copy(
        store,
        "object_association",
        pd.DataFrame(
            {
                "oid": objects["oid"],
                "survey": "ztf",
                "xid": objects["oid"],
                "ra": objects["meanra"],
                "dec": objects["meandec"],
                "firstmjd": objects["firstmjd"],
            }
        ),  # fmt: skip
    )
    classified = objects["oid"].iloc[: max(1, n // 5)]
    p = rng.dirichlet(np.ones(len(STAMP_CLASSES)), len(classified))
    ranks = (-p).argsort(axis=1).argsort(axis=1) + 1
    seconds["probability"] = _copy(
        store,
        "probability",
        pd.DataFrame(
            {
                "oid": np.repeat(classified.to_numpy(), len(STAMP_CLASSES)),
                "classifier_name": "stamp_classifier",
                "classifier_version": "1.1.0",
                "class_name": np.tile(STAMP_CLASSES, len(classified)),
                "probability": p.ravel(),
                "ranking": ranks.ravel(),
            }
        ),  # fmt: skip
    )
    t = time.perf_counter()
    store.conn.execute("ANALYZE")
    seconds["analyze"] = time.perf_counter() - t
    return seconds


def load_history(lake: Lake, objects: pd.DataFrame, rng: np.random.Generator, order: int = 4) -> float:
    """Light curves of ``objects`` (oid, meanra, meandec, firstmjd) in a compacted history store; seconds."""
    t = time.perf_counter()
    store = HistoryStore(lake, order=order)
    pixel = pd.Series(pixel_of(objects["meanra"], objects["meandec"], order), index=objects["oid"].to_numpy())
    det_n = rng.integers(60, 140, len(objects))
    nd_n = rng.integers(10, 50, len(objects))
    oid = np.repeat(objects["oid"].to_numpy(), det_n)
    k = len(oid)
    mjd = np.repeat(objects["firstmjd"].to_numpy(), det_n) + rng.uniform(0, 300, k)
    mag = rng.uniform(16, 20, k)
    candid = np.arange(k, dtype=np.int64) + 1_500_000_000_000_000_000
    det = pd.DataFrame(
        {"oid": oid, "candid": candid, "survey": "ztf", "mjd": mjd, "night": 20240101,
         "fid": rng.integers(1, 3, k).astype(np.int16), "ra": np.repeat(objects["meanra"].to_numpy(), det_n),
         "dec": np.repeat(objects["meandec"].to_numpy(), det_n), "magpsf": mag, "sigmapsf": rng.uniform(0.02, 0.2, k),
         "isdiffpos": np.where(rng.random(k) < 0.8, 1, -1).astype(np.int8), "diffmaglim": 20.5,
         "distnr": rng.uniform(0, 3, k), "magnr": rng.uniform(15, 19, k), "sigmagnr": 0.05,
         "rb": rng.uniform(0.5, 1, k), "flux": 10 ** (-0.4 * (mag - 31.4)), "flux_err": 1000.0,
         "parent_candid": candid, "has_stamp": rng.random(k) < 0.3}
    )  # fmt: skip
    det["band"] = np.where(det["fid"] == 1, "g", "r")
    nd_oid = np.repeat(objects["oid"].to_numpy(), nd_n)
    nd = pd.DataFrame(
        {"oid": nd_oid, "survey": "ztf", "fid": rng.integers(1, 3, len(nd_oid)).astype(np.int16),
         "mjd": np.repeat(objects["firstmjd"].to_numpy(), nd_n) - rng.uniform(0, 30, len(nd_oid)),
         "night": 20240101, "diffmaglim": rng.uniform(19, 21, len(nd_oid))}
    )  # fmt: skip
    index = pd.DataFrame(
        {"oid": objects["oid"], "survey": "ztf", "ra": objects["meanra"], "dec": objects["meandec"],
         "firstmjd": objects["firstmjd"], "pixel": pixel.to_numpy(), "xid": objects["oid"]}
    )  # fmt: skip
    store.write("objects", index.drop(columns=["pixel"]), pixel, "bench-r000")
    store.write("detections", det, pixel, "bench-r000")
    store.write("non_detections", nd, pixel, "bench-r000")
    store.compact()
    return time.perf_counter() - t


def timed(http: httpx.Client, paths: list[tuple[str, dict]]) -> np.ndarray:
    out = []
    for path, params in paths:
        t = time.perf_counter()
        res = http.get(path, params=params)
        out.append((time.perf_counter() - t) * 1000)
        if res.status_code != 200:
            raise RuntimeError(f"{path} {params}: {res.status_code} {res.text[:200]}")
    return np.asarray(out)


def crossmatch_upload(http: httpx.Client, objects: pd.DataFrame, rng: np.random.Generator, n: int) -> None:
    """``POST /crossmatch`` of ``n`` positions as CSV, half of them ~1" from an object and half anywhere: the
    whole request's time (parsing, the hpx29 range scans, the pairs, the classes), three times."""
    near = rng.integers(0, len(objects), n // 2)
    ra = np.r_[
        objects["meanra"].to_numpy()[near] + rng.normal(0, 1 / 3600, n // 2), rng.uniform(0, 360, n - n // 2)
    ]
    dec = np.r_[
        np.clip(objects["meandec"].to_numpy()[near] + rng.normal(0, 1 / 3600, n // 2), -90, 90),
        np.degrees(np.arcsin(rng.uniform(-1, 1, n - n // 2))),
    ]
    body = pd.DataFrame({"id": np.arange(n), "ra": ra % 360, "dec": dec}).to_csv(index=False).encode()
    times = []
    for _ in range(3):
        t = time.perf_counter()
        res = http.post("/crossmatch", params={"radius": 2.0}, content=body)
        times.append(time.perf_counter() - t)
        if res.status_code != 200:
            raise RuntimeError(f"/crossmatch: {res.status_code} {res.text[:200]}")
    got = res.json()
    best = min(times)
    print(
        f'\ncross-match upload POST /crossmatch, {n:,} positions ({len(body) / 1e6:.1f} MB), radius 2": '
        f"{best:.2f} s best of 3 ({n / best:,.0f} positions/s); {got['matched']:,} matched "
        f'(of {n // 2:,} placed ~1" from an object)'
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=1_000_000)
    ap.add_argument("--light-curves", type=int, default=3000)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument(
        "--upload-positions", type=int, default=20_000, help="positions in the cross-match upload"
    )
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    with (
        tempfile.TemporaryDirectory(prefix="broker-bench-api-") as tmp,
        EmbeddedPostgres(Path(tmp) / "pg") as pg,
        SummaryStore(pg.dsn) as store,
    ):
        if True:
            store.ensure_schema()
            t = time.perf_counter()
            objects = simulate_objects(args.objects, rng)
            print(f"simulated {len(objects):,} objects in {time.perf_counter() - t:.1f} s")
            seconds = load_postgres(store, objects, rng)
            print("COPY into PostgreSQL (s): " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
            rows = {
                t: store.count(t)
                for t in ("object", "magstats", "alert", "object_association", "probability")
            }
            print("rows: " + ", ".join(f"{k} {v:,}" for k, v in rows.items()))
            with_lc = objects.iloc[: args.light_curves]
            lake = Lake(str(Path(tmp) / "lake"))
            print(f"history store: {len(with_lc):,} light curves in {load_history(lake, with_lc, rng):.1f} s")

            config = ServeConfig(pg.dsn, lake.url, port=0)
            with BackgroundServer(config) as url, httpx.Client(base_url=url, timeout=60) as http:
                n = args.requests
                pick = rng.integers(0, len(objects), n)
                pick_lc = rng.integers(0, len(with_lc), n)
                jitter = rng.normal(0, 1.0 / 3600, (n, 2))
                cases = {
                    "object page /objects/{oid}": [(f"/objects/{objects['oid'].iat[i]}", {}) for i in pick],
                    "light curve /objects/{oid}/lightcurve": [
                        (f"/objects/{with_lc['oid'].iat[i]}/lightcurve", {}) for i in pick_lc
                    ],
                    'cone search 5" /objects?ra&dec&radius=5': [
                        (
                            "/objects",
                            {
                                "ra": float(objects["meanra"].iat[i] + dx) % 360,
                                "dec": float(np.clip(objects["meandec"].iat[i] + dy, -90, 90)),
                                "radius": 5,
                            },
                        )
                        for i, (dx, dy) in zip(pick, jitter, strict=True)
                    ],  # fmt: skip
                    "newest objects /objects?page_size=20": [("/objects", {"page_size": 20})] * n,
                    "class filter /objects?classifier&class=SN&probability=0.5": [
                        ("/objects", {"classifier": "stamp_classifier", "class": "SN", "probability": 0.5})
                    ]
                    * n,
                }
                for path, params in [c[0] for c in cases.values()]:  # warm caches and connections
                    http.get(path, params=params)
                print(f"\n{n} requests each, one at a time ({len(objects):,} objects in PostgreSQL)")
                print(f"{'call':<58} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
                found = 0
                for name, paths in cases.items():
                    ms = timed(http, paths)
                    print(
                        f"{name:<58} {np.percentile(ms, 50):>8.1f} {np.percentile(ms, 95):>8.1f} {ms.mean():>8.1f}"
                    )
                for path, params in cases['cone search 5" /objects?ra&dec&radius=5'][:50]:
                    found += len(http.get(path, params=params).json()["items"])
                print(f'(the first 50 cone searches found {found} objects: each centre is 1-2" from one)')
                crossmatch_upload(http, objects, rng, args.upload_positions)

            data = BrokerData(pg.dsn, lake.url)
            try:
                i = int(pick[0])
                q = ObjectQuery(
                    ra=float(objects["meanra"].iat[i]), dec=float(objects["meandec"].iat[i]), radius=5.0
                )
                sql, _, params = data.objects_sql(q)
                with data.db.connection() as conn:
                    plan = conn.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}", params).fetchall()
                print("\nEXPLAIN ANALYZE of the 5\" cone search (the API's own SQL):")
                print("\n".join("  " + r[0] for r in plan))
                if "object_hpx29_idx" not in "\n".join(r[0] for r in plan):
                    print("WARNING: the cone search did not use the hpx29 index")
                    return 1
            finally:
                data.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
