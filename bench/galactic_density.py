"""Build the Galactic-latitude densities of ``classifiers.sky_density`` from real catalogues (docs/classifiers.md,
"A Galactic-latitude prior").

- Variable stars: the VSX catalogue (``catalogs/vsx.parquet``, 1.9 million stars) within ZTF's sky (dec > -30),
  by type (:data:`VSX_TYPES`);
- extragalactic sources (supernovae, AGN, QSOs, blazars): the 2289 BTS SNe Ia (``lightcurves/ztf_bts_snia``),
  real ZTF transients, through a one-parameter dust model fitted to them: density ∝ 10^(-k A_V(b)) with
  A_V(b) = a / sin|b| (a = the BTS median of A_V sin|b|) and k by maximum likelihood on the SNe at |b| >= 10 deg
  (BTS itself avoids |b| < 7 deg, so its own counts there say nothing about the sky), plus a 2 % uniform floor.

Each density is the class's share of objects per |b| bin over the bin's share of the footprint's area (a fine
equal-area grid over dec > -30), so its area-weighted mean is 1 over the footprint. Prints the table as the
Python literal ``classifiers/sky_density.py`` ships; ``tests/integration/test_sky_density_build.py`` rebuilds it.

    python -m bench.galactic_density [--data ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from alert_broker.classifiers.sky_density import FOOTPRINT_MIN_DEC_DEG, LATITUDE_EDGES_DEG
from alert_broker.classifiers.stamp.metadata import sky_latitudes

#: Population -> VSX types (the first type of a combined one, uncertainty colons removed), ALeRCE's classes.
VSX_TYPES: dict[str, str] = {
    "E": r"E|EA|EB|EW|EC|ESD|ED|EP",
    "RRL": r"RRAB|RRC|RRD|RR",
    "DSCT": r"DSCT|HADS|DSCTC|SXPHE",
    "CEP": r"DCEP|DCEPS|CEP|CWA|CWB|CW|T2CEP|ACEP|BLBOO",
    "LPV": r"M|SR|SRA|SRB|SRC|SRD|SRS|L|LB|LC|LPV",
    "CV/Nova": r"UG|UGSU|UGSS|UGZ|UGWZ|UGER|N|NA|NB|NC|NL|NR|CV|AM|IBWD|ZAND",
    "YSO": r"YSO|TTS|WTTS|CTTS|INS|INSA|INSB|INST|INB|INA|INT|IN|IS|ISA|ISB|ORION|UXOR|EXOR|FUOR|FU",
    "Periodic-Other": r"BY|RS|ROT|GDOR|ELL|ACV|BCEP|SPB|SXARI|ROAP",
}
GRID_RA, GRID_SIN_DEC = 1440, 1000
#: Share of the extragalactic density spread uniformly: supernovae do go off behind thin spots of the plane, so
#: no bin may rule a class out (the dust model alone gives 4e-6 at |b| < 2 deg).
EXTRAGALACTIC_FLOOR = 0.02
#: Population -> a |b| range [deg] whose bins share one density (their area-weighted mean): VSX's young stars at
#: 15-20 deg are Taurus-Auriga and Orion, a few hundred square degrees; a latitude-only density would spread them
#: over the whole band (5 times the sky's mean) and call every variable star there young.
SMOOTHED: dict[str, tuple[float, float]] = {"YSO": (10.0, 30.0)}


def footprint_area_shares(edges: np.ndarray = np.asarray(LATITUDE_EDGES_DEG)) -> np.ndarray:
    """Share of the footprint's area (dec > FOOTPRINT_MIN_DEC_DEG) per |b| bin, on an equal-area grid."""
    ra = (np.arange(GRID_RA) + 0.5) * 360.0 / GRID_RA
    s0 = np.sin(np.deg2rad(FOOTPRINT_MIN_DEC_DEG))
    sin_dec = s0 + (np.arange(GRID_SIN_DEC) + 0.5) * (1.0 - s0) / GRID_SIN_DEC
    rr, ss = np.meshgrid(ra, np.rad2deg(np.arcsin(sin_dec)))
    _, b = sky_latitudes(rr.ravel(), ss.ravel())
    return np.histogram(np.abs(b), edges)[0] / b.size


def relative_density(abs_b: np.ndarray, area: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.histogram(abs_b, edges)[0]
    return (counts / counts.sum()) / area


def vsx_types(vtype: pd.Series) -> pd.Series:
    """The first type of each VSX entry, uncertainty colons dropped ("EA/RS:" -> "EA", "TTS/ROT" -> "TTS")."""
    return (
        vtype.astype(str)
        .str.strip()
        .str.replace(":", "", regex=False)
        .str.split(r"[|+/ ]", regex=True)
        .str[0]
    )


def extragalactic_dust(bts: pd.DataFrame) -> tuple[float, float]:
    """(a, k) of density ∝ 10^(-k a / sin|b|) from the BTS SNe Ia (see the module docstring)."""
    b = np.abs(bts["b"].to_numpy(float))
    a = float(np.median(bts["A_V"].to_numpy(float) * np.sin(np.deg2rad(b))))
    ra = (np.arange(GRID_RA) + 0.5) * 360.0 / GRID_RA
    s0 = np.sin(np.deg2rad(FOOTPRINT_MIN_DEC_DEG))
    sin_dec = s0 + (np.arange(GRID_SIN_DEC) + 0.5) * (1.0 - s0) / GRID_SIN_DEC
    rr, ss = np.meshgrid(ra, np.rad2deg(np.arcsin(sin_dec)))
    sky = np.abs(sky_latitudes(rr.ravel(), ss.ravel())[1])
    sky, sne = sky[sky >= 10.0], b[b >= 10.0]

    def nll(k: float) -> float:
        def f(x):
            return 10.0 ** (-k * a / np.sin(np.deg2rad(x)))

        return -float(np.log(f(sne) / f(sky).mean()).sum())

    k = float(minimize_scalar(nll, bounds=(0.0, 20.0), method="bounded", options={"xatol": 1e-6}).x)
    return a, k


def build(root: Path) -> dict:
    edges = np.asarray(LATITUDE_EDGES_DEG, dtype=float)
    area = footprint_area_shares(edges)
    vsx = pd.read_parquet(root / "catalogs" / "vsx.parquet")
    vsx = vsx[vsx["DEJ2000"] > FOOTPRINT_MIN_DEC_DEG]
    _, b = sky_latitudes(vsx["RAJ2000"].to_numpy(float), vsx["DEJ2000"].to_numpy(float))
    b = np.abs(b)
    types = vsx_types(vsx["VType"])
    density, counts = {}, {}
    for pop, pattern in VSX_TYPES.items():
        m = types.str.fullmatch(pattern).to_numpy()
        density[pop] = relative_density(b[m], area, edges)
        counts[pop] = int(m.sum())
    for pop, (lo, hi) in SMOOTHED.items():
        sel = (edges[:-1] >= lo) & (edges[1:] <= hi)
        density[pop][sel] = float(np.sum(density[pop][sel] * area[sel]) / np.sum(area[sel]))
    bts = pd.read_csv(root / "lightcurves" / "ztf_bts_snia" / "bts.csv")
    a, k = extragalactic_dust(bts)
    mid = np.deg2rad(np.maximum((edges[:-1] + edges[1:]) / 2.0, 1.0))
    dust = 10.0 ** (-k * a / np.sin(mid))
    dust = dust / float(np.sum(dust * area))
    density["extragalactic"] = (1.0 - EXTRAGALACTIC_FLOOR) * dust + EXTRAGALACTIC_FLOOR
    counts["extragalactic"] = int(len(bts))
    return {"area": area, "density": density, "counts": counts, "dust": (a, k)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data")
    args = p.parse_args(argv)
    out = build(Path(args.data))
    print(f"footprint area share per bin: {np.round(out['area'], 4).tolist()}")
    print(f"extragalactic dust model: a = {out['dust'][0]:.4f} mag, k = {out['dust'][1]:.3f}")
    print("LATITUDE_DENSITY = {")
    for pop, d in out["density"].items():
        print(f'    "{pop}": ({", ".join(f"{x:.4f}" for x in d)}),  # {out["counts"][pop]:,} objects')
    print("}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
