"""Reading the broker's Parquet lake with dask: a cone search on ``objects``, joined with each object's most
probable class from ``probabilities``.

    python docs/lake_example.py LAKE [--ra DEG --dec DEG] [--radius ARCSEC] [--classifier NAME]

LAKE is the lake's folder (or ``s3://bucket/prefix``). Without ``--ra/--dec`` the cone is centred on the most
recently detected object. Each table is a folder of Parquet files partitioned hive-style (``night=YYYYMMDD/`` or
``alert_night=YYYYMMDD/``, docs/data-model.md), so ``dask.dataframe.read_parquet`` opens it as one dataset and
gets the partition column back from the folder names.

Two things to know about the lake's tables:

* They are per-batch snapshots, not current state: an object seen on three nights has three ``objects`` rows
  (one per batch that saw it). Keep the latest one (largest ``lastmjd``; PostgreSQL's ``object`` table holds
  only that one).
* ``probabilities`` has one row per (object, classifier, class, batch), ``ranking`` 1 = the most probable
  class. The latest classification is the one of the object's latest batch (``batch_id``), else of its latest
  alert night.

The cone search pushes a declination band down to Parquet (row groups outside it are not read), then keeps the
rows within the radius by exact great-circle distance (Vincenty's formula), right at RA 0/360 and near the poles.
"""

from __future__ import annotations

import argparse
import sys

import dask.dataframe as dd
import numpy as np
import pandas as pd

OBJECT_COLUMNS = ["oid", "survey", "meanra", "meandec", "firstmjd", "lastmjd", "ndet"]


def read(lake: str, table: str, storage_options: dict | None = None, **kwargs) -> dd.DataFrame:
    """One lake table as a dask DataFrame (``kwargs`` go to ``read_parquet``: ``columns``, ``filters``...)."""
    if storage_options:
        kwargs["storage_options"] = storage_options
    return dd.read_parquet(f"{str(lake).rstrip('/')}/{table}", **kwargs)


def angular_distance_arcsec(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance in arcsec (Vincenty: accurate at every separation)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(x, dtype=np.float64)) for x in (ra1, dec1, ra2, dec2))
    dra = ra2 - ra1
    num = np.hypot(
        np.cos(dec2) * np.sin(dra), np.cos(dec1) * np.sin(dec2) - np.sin(dec1) * np.cos(dec2) * np.cos(dra)
    )
    den = np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(dra)
    return np.degrees(np.arctan2(num, den)) * 3600.0


def latest_objects(objects: pd.DataFrame) -> pd.DataFrame:
    """One row per oid: the latest snapshot (largest ``lastmjd``, then ``ndet``)."""
    keys = [c for c in ("lastmjd", "ndet") if c in objects.columns]
    return objects.sort_values(keys, kind="stable").drop_duplicates("oid", keep="last")


def cone_search(
    lake: str, ra: float, dec: float, radius_arcsec: float, storage_options: dict | None = None
) -> pd.DataFrame:
    """Objects whose mean position lies within ``radius_arcsec`` of (ra, dec) degrees, nearest first, with
    ``dist_arcsec``. One row per object (its latest snapshot)."""
    r_deg = radius_arcsec / 3600.0
    band = [("meandec", ">=", dec - r_deg), ("meandec", "<=", dec + r_deg)]  # pushed down to row groups
    ddf = read(lake, "objects", storage_options, filters=band)
    cols = [c for c in OBJECT_COLUMNS + ["batch_id"] if c in ddf.columns]
    df = ddf[cols].compute()
    df = df[(df["meandec"] >= dec - r_deg) & (df["meandec"] <= dec + r_deg)]
    dist = angular_distance_arcsec(ra, dec, df["meanra"].to_numpy(), df["meandec"].to_numpy())
    df = df.assign(dist_arcsec=dist)[dist <= radius_arcsec]
    df = latest_objects(df)
    return df.sort_values(["dist_arcsec", "oid"]).reset_index(drop=True)


def top_classes(
    lake: str,
    objects: pd.DataFrame,
    classifier: str | None = None,
    storage_options: dict | None = None,
) -> pd.DataFrame:
    """The most probable class of each of ``objects`` (``oid``, optionally ``batch_id`` of its latest snapshot)
    per classifier: ``oid``, ``classifier_name``, ``classifier_version``, ``class_name``, ``probability``."""
    cols = ["oid", "classifier_name", "classifier_version", "class_name", "probability"]
    oids = objects["oid"].astype(str).unique().tolist()
    if not oids:
        return pd.DataFrame(columns=cols)
    filters = [("ranking", "==", 1), ("oid", "in", oids)]
    if classifier:
        filters.append(("classifier_name", "==", classifier))
    probs = read(lake, "probabilities", storage_options, filters=filters).compute()
    probs = probs[(probs["ranking"] == 1) & probs["oid"].isin(oids)]
    if classifier:
        probs = probs[probs["classifier_name"] == classifier]
    if probs.empty:
        return pd.DataFrame(columns=cols)
    # the latest classification: the object's latest batch first, then the latest alert night
    night = pd.to_numeric(
        probs.get("alert_night", pd.Series(0, index=probs.index)).astype(str), errors="coerce"
    )
    probs = probs.assign(_night=night.to_numpy())
    if "batch_id" in probs.columns and "batch_id" in objects.columns:
        latest_batch = objects.set_index("oid")["batch_id"]
        probs = probs.assign(_own=(probs["batch_id"] == probs["oid"].map(latest_batch)).to_numpy())
    else:
        probs = probs.assign(_own=False)
    probs = probs.sort_values(["_own", "_night"], kind="stable")
    probs = probs.drop_duplicates(["oid", "classifier_name"], keep="last")
    return probs[cols].sort_values(["oid", "classifier_name"]).reset_index(drop=True)


def cone_with_classes(
    lake: str,
    ra: float,
    dec: float,
    radius_arcsec: float,
    classifier: str | None = None,
    storage_options: dict | None = None,
) -> pd.DataFrame:
    """The cone search joined (left) with the top class per classifier: one row per (object, classifier)."""
    cone = cone_search(lake, ra, dec, radius_arcsec, storage_options)
    classes = top_classes(lake, cone, classifier, storage_options)
    return cone.merge(classes, on="oid", how="left")


def latest_position(lake: str, storage_options: dict | None = None) -> tuple[float, float]:
    """(meanra, meandec) of the object with the largest ``lastmjd``: a default centre for the demo."""
    obj = read(lake, "objects", storage_options, columns=["meanra", "meandec", "lastmjd"]).compute()
    if obj.empty:
        raise SystemExit(f"{lake}/objects holds no rows")
    row = obj.iloc[int(np.argmax(obj["lastmjd"].to_numpy()))]
    return float(row["meanra"]), float(row["meandec"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("lake", help="the lake's folder or s3:// URL")
    p.add_argument("--ra", type=float, help="cone centre, degrees (default: the latest object)")
    p.add_argument("--dec", type=float, help="cone centre, degrees")
    p.add_argument("--radius", type=float, default=60.0, help="cone radius, arcsec (default 60)")
    p.add_argument("--classifier", help="only this classifier_name (default: every classifier)")
    args = p.parse_args(argv)
    if (args.ra is None) != (args.dec is None):
        p.error("give both --ra and --dec, or neither")
    ra, dec = (args.ra, args.dec) if args.ra is not None else latest_position(args.lake)
    out = cone_with_classes(args.lake, ra, dec, args.radius, args.classifier)
    print(f'{out["oid"].nunique()} object(s) within {args.radius:g}" of ({ra:.6f}, {dec:+.6f})')
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(out.to_string(index=False) if len(out) else "(none)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
