"""Compare simulated ZTF alerts with real ones: the same per-alert quantities, their ranges and medians.

Used by the realism test and to draw docs/simulator_vs_real.png (`python -m alert_broker.simulator.validate`).
The real sample (Fink's ztf/fink_sample_1166) contains 329 alerts from one night (2023-10-18) whose
cross-match fields hold placeholder values (distpsnr1 = 120, sgscore1 = 0.2, neargaia = 300, ssdistnr = 60);
they are left out of the PS1 comparisons.
"""

from __future__ import annotations

import gzip
import io
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

import fastavro
import numpy as np
import pandas as pd
from astropy.io import fits

from .avro import shared_data_dir
from .config import SimConfig
from .engine import iter_alerts

#: Quantity -> (tolerance on the median, kind). "abs": |median_sim - median_real| <= tol;
#: "ratio": |log(median_sim / median_real)| <= log(tol).
TOLERANCES: dict[str, tuple[float, str]] = {
    "magpsf": (0.5, "abs"),
    "sigmapsf": (0.03, "abs"),
    "diffmaglim": (0.3, "abs"),
    "nprv": (6.0, "abs"),
    "distnr": (2.0, "ratio"),
    "sgscore1": (0.3, "abs"),
    "sci_median": (1.5, "ratio"),
    "tpl_mad": (1.5, "ratio"),
    "dif_mad": (1.5, "ratio"),
}
PS1_COLUMNS = ("sgscore1", "distpsnr1")


def _stamp_stats(cut: dict | None, prefix: str) -> dict[str, float]:
    if not cut or not cut.get("stampData"):
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = fits.getdata(io.BytesIO(gzip.decompress(cut["stampData"]))).astype(float)
    a = arr[np.isfinite(arr)]
    med = float(np.median(a))
    return {f"{prefix}_median": med, f"{prefix}_mad": float(1.4826 * np.median(np.abs(a - med)))}


def alert_features(records: Iterable[dict], stamps_every: int = 1) -> pd.DataFrame:
    """One row per ZTF alert record: the compared candidate fields, history length and stamp statistics."""
    rows = []
    for k, r in enumerate(records):
        c = r["candidate"]
        prv = r.get("prv_candidates") or []
        d = {
            f: c.get(f)
            for f in (
                "magpsf",
                "sigmapsf",
                "diffmaglim",
                "distnr",
                "magnr",
                "sgscore1",
                "distpsnr1",
                "rb",
                "drb",
                "fwhm",
                "isdiffpos",
                "ssnamenr",
                "ndethist",
            )
        }
        d["nprv"] = len(prv)
        d["nprv_det"] = sum(p.get("candid") is not None for p in prv)
        d["schemavsn"] = r.get("schemavsn")
        d["placeholder"] = bool(
            np.isclose(c.get("distpsnr1") or 0, 120.0) and np.isclose(c.get("sgscore1") or 0, 0.2)
        )
        if stamps_every and k % stamps_every == 0:
            d.update(_stamp_stats(r.get("cutoutScience"), "sci"))
            d.update(_stamp_stats(r.get("cutoutTemplate"), "tpl"))
            d.update(_stamp_stats(r.get("cutoutDifference"), "dif"))
        rows.append(d)
    return pd.DataFrame(rows)


def read_real(folder: str | Path) -> list[dict]:
    out = []
    for p in sorted(Path(folder).glob("*.avro")):
        with open(p, "rb") as fh:
            out.extend(fastavro.reader(fh))
    return out


def decode_payloads(payloads: Iterable[bytes]) -> list[dict]:
    return [rec for b in payloads for rec in fastavro.reader(io.BytesIO(b))]


def _values(df: pd.DataFrame, col: str) -> np.ndarray:
    d = df[~df["placeholder"]] if col in PS1_COLUMNS and "placeholder" in df else df
    if col not in d:
        return np.array([])
    v = pd.to_numeric(d[col], errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    if col in PS1_COLUMNS:
        v = v[v > -900]  # -999: no PS1 source within 30"
    return v


def compare(real: pd.DataFrame, sim: pd.DataFrame, columns: Iterable[str] = TOLERANCES) -> pd.DataFrame:
    """Per quantity: real and simulated 5/50/95th percentiles and ranges, the median gap, and whether it passes.

    Passing = median gap within TOLERANCES and the same support: the central 90% of the simulated values lies
    inside the real range and the central 80% of the real values inside the simulated range (both widened by 5%
    of the real 5-95% spread). Real tails come from years of nights; a small simulated run samples fewer.
    """
    out = []
    for col in columns:
        r, s = _values(real, col), _values(sim, col)
        if len(r) == 0 or len(s) == 0:
            out.append({"quantity": col, "n_real": len(r), "n_sim": len(s), "ok": False})
            continue
        rp, sp = np.percentile(r, [5, 50, 95]), np.percentile(s, [5, 50, 95])
        tol, kind = TOLERANCES.get(col, (np.inf, "abs"))
        gap = abs(sp[1] - rp[1]) if kind == "abs" else abs(np.log(max(sp[1], 1e-9) / max(rp[1], 1e-9)))
        limit = tol if kind == "abs" else np.log(tol)
        pad = 0.05 * (rp[2] - rp[0])
        r10, r90 = np.percentile(r, [10, 90])
        support = bool(
            (sp[0] >= r.min() - pad)
            and (sp[2] <= r.max() + pad)
            and (r10 >= s.min() - pad)
            and (r90 <= s.max() + pad)
        )
        out.append(
            {
                "quantity": col,
                "n_real": len(r),
                "n_sim": len(s),
                "real_p05": rp[0],
                "real_median": rp[1],
                "real_p95": rp[2],
                "real_min": r.min(),
                "real_max": r.max(),
                "sim_p05": sp[0],
                "sim_median": sp[1],
                "sim_p95": sp[2],
                "sim_min": s.min(),
                "sim_max": s.max(),
                "median_gap": gap,
                "tolerance": limit,
                "same_support": support,
                "ok": bool(support and gap <= limit),
            }
        )
    return pd.DataFrame(out)


def plot(
    real: pd.DataFrame,
    sim: pd.DataFrame,
    path: str | Path,
    columns=("magpsf", "sigmapsf", "diffmaglim", "nprv", "distnr", "sgscore1", "sci_median", "dif_mad"),
) -> None:
    """Small multiples of normalised histograms, real vs simulated."""
    import matplotlib  # lazy: plotting is only for the docs figure; pyplot takes ~0.2 s and needs Agg first

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after matplotlib.use("Agg"), only for the docs figure

    fig, axes = plt.subplots(2, 4, figsize=(11, 5))
    for ax, col in zip(axes.ravel(), columns, strict=False):
        r, s = _values(real, col), _values(sim, col)
        if col == "distnr":
            r, s = np.log10(np.maximum(r, 1e-2)), np.log10(np.maximum(s, 1e-2))
        lo, hi = np.percentile(np.r_[r, s], [0.5, 99.5])
        bins = np.linspace(lo, hi, 30)
        ax.hist(
            r,
            bins=bins,
            density=True,
            histtype="stepfilled",
            alpha=0.45,
            label=f"real ({len(r)})",
            color="tab:blue",
        )
        ax.hist(
            s,
            bins=bins,
            density=True,
            histtype="step",
            lw=1.6,
            label=f"simulated ({len(s)})",
            color="tab:red",
        )
        ax.set_title("log10 distnr [arcsec]" if col == "distnr" else col, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Simulated ZTF alerts vs the real fink_sample_1166 (medians compared in tests)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def simulated_sample(objects: int = 3000, nights: int = 4, seed: int = 11) -> pd.DataFrame:
    cfg = SimConfig(objects=objects, nights=nights, seed=seed)
    return alert_features(decode_payloads(a.payload for a in iter_alerts(cfg)), stamps_every=3)


def main() -> None:  # pragma: no cover - produces the docs figure
    root = shared_data_dir()
    if root is None:
        sys.exit("shared data not found (set BROKER_SHARED_DATA)")
    real = alert_features(read_real(root / "ztf" / "fink_sample_1166"))
    sim = simulated_sample(objects=8000, nights=4)
    print(compare(real, sim).to_string())
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/simulator_vs_real.png")
    plot(real, sim, out)
    print(f"wrote {out}")


if __name__ == "__main__":  # pragma: no cover
    main()
