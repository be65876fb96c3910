"""Draw the simulated sky: one row per object with its class and every parameter of its light-curve model.

The returned frame *is* the truth table (plus a few internal columns). All draws are vectorised per class; the
parameter ranges are class-typical values from the literature cited in docs/simulator.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .config import CLASSES, PERIODIC, STOCHASTIC, TRANSIENTS, ZTF_EXTINCTION, SimConfig, SurveySpec
from .rng import stream
from .timeutil import sun_ra_deg

#: Peak absolute magnitude (r) mean, sigma; rest-frame rise/fall e-folding times [d]; plateau length [d] and
#: fractional flux decline per day on it; g-r at peak. Richardson et al. 2014; Villar et al. 2019; Gal-Yam 2019.
#: SN Ia shape calibrated on the ZTF BTS SNe Ia (lightcurves/ztf_bts_snia; docs/simulator.md, "SN Ia decline"):
#: the same model-free statistics (bench/sn_shapes.py) measured on the BTS light curves and on simulated SNe as
#: bright as BTS's, observed with noise: r fades 0.62 / 1.07 mag 15 / 30 d after its peak and falls to half its
#: peak flux in 18.9 d (the previous tail, 32-45 d, took 30), g fades 0.89 mag in 15 d, half-max rise 11 d.
SN_PARAMS = {
    #          M_mean  M_sig  rise(lo,hi)   fall(lo,hi)   plateau(lo,hi)  slope(lo,hi)      g-r(mu,sig)
    "SNIa": (-19.25, 0.15, (3.0, 4.5), (20.0, 28.0), (3.0, 14.0), (0.020, 0.032), (-0.12, 0.08)),
    "SNIbc": (-17.6, 0.9, (2.0, 4.0), (15.0, 25.0), (0.0, 5.0), (0.01, 0.03), (0.30, 0.15)),
    "SNII": (-16.8, 1.0, (2.0, 6.0), (10.0, 25.0), (40.0, 110.0), (0.002, 0.008), (-0.10, 0.15)),
    "SLSN": (-21.5, 0.7, (8.0, 20.0), (40.0, 90.0), (0.0, 20.0), (0.003, 0.008), (-0.20, 0.10)),
}

#: How much faster bluer bands fade (lightcurves.sn_band_params): (tail, plateau) chromaticity per unit of
#: colour_factor. SNe Ia: fitted with the shape above to the BTS colour curve (g-r +0.40 / +1.05 mag 15 / 30 d
#: after the r peak; the model reaches +0.43 / +0.85: a single exponential tail has no r-band second maximum);
#: stripped-envelope SNe redden fast too (Stritzinger et al. 2018; kept at 0.55 / 0.4); SNe II and SLSNe 0.25 / 0.8.
SN_DECLINE_CHROMA = {"SNIa": (0.43, 0.33), "SNIbc": (0.55, 0.4), "SNII": (0.25, 0.8), "SLSN": (0.25, 0.8)}

#: Host-galaxy reddening E(B-V) ~ Exp(scale) per SN class, and what one magnitude of it does in ZTF's r and to
#: g-r. SNe Ia: the scale that gives the red tail of the BTS SNe Ia's g-r at peak (90 / 95th percentiles 0.35 /
#: 0.52 mag; without dust the simulated ones stopped at 0.23 / 0.29; bench/sn_shapes.py, docs/simulator.md).
#: Core-collapse SNe sit in star-forming regions and are dustier (stripped-envelope SNe most: Drout et al. 2011,
#: Stritzinger et al. 2018); SLSNe in faint dwarf hosts have little.
SN_HOST_EBV = {"SNIa": 0.12, "SNIbc": 0.15, "SNII": 0.10, "SLSN": 0.03}
HOST_A_R = ZTF_EXTINCTION[2]
HOST_E_GR = ZTF_EXTINCTION[1] - ZTF_EXTINCTION[2]

#: Share of Miras among simulated LPVs (the rest semi-regulars). ALeRCE's labelled ZTF LPVs are mostly of small
#: amplitude (half-range `Amplitude` in r: median 0.31 mag, quartiles 0.22-0.42; a 40 % share gave 0.64): bright
#: Miras saturate ZTF and drop out of its alerts.
LPV_MIRA_SHARE = 0.15

#: Periodic classes: (period law, period range [d], r-band peak-to-peak amplitude range [mag], rise fraction q
#: range, harmonics, amplitude chromaticity, g-r range, bright mag limit). See lightcurves.periodic_mag.
PERIODIC_PARAMS = {
    "DSCT": (
        "loguniform",
        (0.03, 0.25),
        ("loguniform", 0.02, 0.40),
        (0.40, 0.50),
        2,
        0.3,
        (0.05, 0.30),
        11.0,
    ),
    "CEP": ("lognormal", (1.0, 100.0), ("uniform", 0.30, 0.80), (0.25, 0.40), 6, 0.3, (0.40, 0.90), 10.0),
    # LPV colour and chromaticity from ALeRCE's labelled ZTF LPVs (docs/simulator.md, "Simulated vs real, per
    # class"): g-r 2.0-3.2 (real corrected g-r_mean median 2.39; 1.2-1.9 gave 1.32) and nearly the same relative
    # flux change in g and r (real difference-magnitude g-r only ~0.1 bluer than the corrected one; 0.6 gave 0.6).
    "LPV": ("lognormal", (100.0, 1000.0), ("mixed_lpv", 0.20, 4.00), (0.35, 0.50), 2, 0.1, (2.00, 3.20), 9.0),
    "Periodic-Other": (
        "loguniform",
        (0.3, 50.0),
        ("loguniform", 0.05, 0.50),
        (0.45, 0.50),
        2,
        0.1,
        (0.2, 1.2),
        11.0,
    ),
}


def _loguniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def _counts_mag(rng: np.random.Generator, lo: float, hi: float, n: int, slope: float = 0.25) -> np.ndarray:
    """Magnitudes with number counts N(<m) ~ 10^(slope m) between lo and hi (faint sources outnumber bright)."""
    a = 10 ** (slope * lo)
    b = 10 ** (slope * hi)
    return np.log10(a + (b - a) * rng.random(n)) / slope


def class_counts(cfg: SimConfig, rng: np.random.Generator) -> dict[str, int]:
    """Split `cfg.objects` over the classes: the expected counts, rounded so they sum exactly."""
    fr = cfg.fractions()
    exp = np.array([fr[c] * cfg.objects for c in CLASSES])
    base = np.floor(exp).astype(int)
    rest = cfg.objects - base.sum()
    if rest > 0:
        order = np.argsort(-(exp - base) + rng.random(len(exp)) * 1e-9, kind="stable")
        base[order[:rest]] += 1
    return dict(zip(CLASSES, base.tolist(), strict=True))


def _luminosity_distance_table() -> tuple[np.ndarray, np.ndarray]:
    """(z, distance modulus) on a grid, flat LCDM H0=70, Om=0.3 (closed-form integral by trapezoid)."""
    z = np.linspace(0.0, 4.0, 4001)
    ez = np.sqrt(0.3 * (1 + z) ** 3 + 0.7)
    dc = np.concatenate([[0.0], np.cumsum(0.5 * (1 / ez[1:] + 1 / ez[:-1]) * np.diff(z))]) * 299792.458 / 70.0
    dl = (1 + z) * dc  # Mpc
    with np.errstate(divide="ignore"):
        mu = 5 * np.log10(np.maximum(dl, 1e-9)) + 25
    return z[1:], mu[1:]


_Z_GRID, _MU_GRID = _luminosity_distance_table()


def redshift_from_mu(mu: np.ndarray) -> np.ndarray:
    return np.interp(mu, _MU_GRID, _Z_GRID)


def mu_from_redshift(z: np.ndarray) -> np.ndarray:
    return np.interp(z, _Z_GRID, _MU_GRID)


def _draw_transients(cls: str, n: int, rng, spec: SurveySpec, t_lo: float, t_hi: float) -> dict:
    m_mean, m_sig, rise, fall, plat, slope, gr = SN_PARAMS[cls]
    depth = spec.m5[spec.band_index("r")]
    absmag = rng.normal(m_mean, m_sig, n)
    # Volume-limited sampling: N(<mu) ~ 10^(0.6 mu), up to where the peak is 0.7 mag below the typical depth.
    mu_hi = depth + 0.7 - absmag
    mu_lo = np.full(n, 33.0)
    u = rng.random(n)
    a, b = 10 ** (0.6 * mu_lo), 10 ** (0.6 * np.maximum(mu_hi, mu_lo + 0.1))
    mu = np.log10(a + (b - a) * u) / 0.6
    z = redshift_from_mu(mu)
    dil = 1 + z
    peak_mag = absmag + mu
    # Host galaxies: luminosity ~ N(-20.3, 1) (SLSN: dwarfs, -17.5), exponential disks with R_e ~ 3 kpc.
    host_abs = rng.normal(-17.5 if cls == "SLSN" else -20.3, 1.0, n)
    host_mag = host_abs + mu
    hostless = rng.random(n) < 0.05
    host_mag[hostless] = np.nan
    d_a_kpc = 10 ** ((mu - 25) / 5) * 1e3 / dil**2  # angular-diameter distance [kpc]
    re_arcsec = np.exp(rng.normal(np.log(3.0), 0.4, n)) / d_a_kpc * 206264.8
    re_arcsec = np.clip(re_arcsec, 0.3, 30.0)
    offset = rng.gamma(2.0, re_arcsec / 1.678)  # r e^{-r/h}: surface density of an exponential disk
    offset[hostless] = np.nan
    out = {
        "abs_mag": absmag,
        "distance_modulus": mu,
        "redshift": z,
        "peak_mag": peak_mag,
        "m0": peak_mag,
        "peak_mjd": rng.uniform(t_lo, t_hi, n),
        "tau_rise": rng.uniform(*rise, n) * dil,
        "tau_fall": rng.uniform(*fall, n) * dil,
        "plateau_days": rng.uniform(*plat, n) * dil,
        "plateau_slope": rng.uniform(*slope, n) / dil,
        "color_gr": rng.normal(gr[0], gr[1], n),
        "fall_chroma": np.full(n, SN_DECLINE_CHROMA[cls][0]),
        "plateau_chroma": np.full(n, SN_DECLINE_CHROMA[cls][1]),
        "host_mag": host_mag,
        "host_offset": offset,
        "host_re": re_arcsec,
        "host_pa": rng.uniform(0, 180, n),
        "host_axis_ratio": rng.uniform(0.3, 1.0, n),
        "subtype": np.full(n, "", dtype=object),
    }
    # Host-galaxy dust (drawn last: the draws above are the same as without it): dimmer and redder by
    # A_r = 2.64 E(B-V) and E(g-r) = 1.10 E(B-V) (ZTF filters, Schlafly & Finkbeiner 2011); other bands follow
    # the linear colour scaling of every simulated colour.
    ebv = rng.exponential(SN_HOST_EBV[cls], n)
    out["host_ebv"] = ebv
    out["peak_mag"] = out["m0"] = peak_mag + HOST_A_R * ebv
    out["color_gr"] = out["color_gr"] + HOST_E_GR * ebv
    return out


def draw_transients(cls: str, n: int, rng: np.random.Generator, spec: SurveySpec) -> pd.DataFrame:
    """Light-curve parameters of ``n`` supernovae of ``cls`` as the population draws them, peaking at MJD 0
    (no positions or ids): for comparing the simulated shapes with real ones (bench/sn_shapes.py)."""
    return pd.DataFrame(_draw_transients(cls, n, rng, spec, 0.0, 0.0))


def _draw_periodic(cls: str, n: int, rng, spec: SurveySpec) -> dict:
    depth = spec.m5[spec.band_index("r")]
    out: dict = {"subtype": np.full(n, "", dtype=object)}
    if cls == "RRL":
        ab = rng.random(n) < 0.7  # RRab dominate (~70%)
        out["subtype"] = np.where(ab, "RRab", "RRc").astype(object)
        out["period"] = np.where(
            ab, np.clip(rng.normal(0.57, 0.07, n), 0.42, 0.9), rng.uniform(0.30, 0.42, n)
        )
        out["amplitude"] = np.where(ab, rng.uniform(0.4, 0.9, n), rng.uniform(0.2, 0.45, n))
        out["shape_q"] = np.where(ab, rng.uniform(0.12, 0.20, n), rng.uniform(0.38, 0.46, n))
        out["n_harm"] = np.where(ab, 6, 3)
        out["chroma"] = np.full(n, 0.3)
        out["color_gr"] = rng.uniform(0.10, 0.35, n)
        out["m0"] = _counts_mag(rng, max(12.5, spec.saturation_mag), depth + 0.3, n, 0.15)
    elif cls == "E":
        ea = rng.random(n) < 0.5
        out["subtype"] = np.where(ea, "EA", "EW").astype(object)
        out["period"] = np.where(
            ea, _loguniform(rng, 0.8, 20.0, n), np.clip(np.exp(rng.normal(np.log(0.37), 0.2, n)), 0.22, 1.0)
        )
        d1 = np.where(ea, rng.uniform(0.2, 1.0, n), rng.uniform(0.2, 0.7, n))
        out["depth1"] = d1
        out["depth2"] = np.where(ea, d1 * rng.uniform(0.05, 1.0, n), d1 * rng.uniform(0.0, 0.15, n))
        out["eclipse_width"] = np.where(ea, rng.uniform(0.02, 0.06, n), np.nan)
        out["amplitude"] = d1
        out["chroma"] = np.full(n, 0.05)
        out["color_gr"] = rng.uniform(0.2, 0.9, n)
        out["m0"] = _counts_mag(rng, max(11.0, spec.saturation_mag), depth + 0.3, n, 0.15)
    else:
        law, (plo, phi), amp, qr, nh, chroma, gr, bright = PERIODIC_PARAMS[cls]
        if law == "loguniform":
            out["period"] = _loguniform(rng, plo, phi, n)
        else:  # log-normal centred in log space between the bounds, clipped to them
            mid = np.sqrt(plo * phi) if cls != "CEP" else 5.0
            out["period"] = np.clip(np.exp(rng.normal(np.log(mid), 0.6, n)), plo, phi)
        if amp[0] == "loguniform":
            out["amplitude"] = _loguniform(rng, amp[1], amp[2], n)
        elif amp[0] == "uniform":
            out["amplitude"] = rng.uniform(amp[1], amp[2], n)
        else:  # LPV: Miras (V amplitude > 2.5 mag) and semi-regulars
            mira = rng.random(n) < LPV_MIRA_SHARE
            out["subtype"] = np.where(mira, "Mira", "SR").astype(object)
            out["amplitude"] = np.where(mira, rng.uniform(1.5, 4.0, n), rng.uniform(0.2, 1.2, n))
        out["shape_q"] = rng.uniform(*qr, n)
        out["n_harm"] = np.full(n, nh)
        out["chroma"] = np.full(n, chroma)
        out["color_gr"] = rng.uniform(*gr, n)
        out["m0"] = _counts_mag(rng, max(bright, spec.saturation_mag), depth + 0.3, n, 0.15)
    out["phase0"] = rng.random(n)
    return out


def _draw_stochastic(cls: str, n: int, rng, spec: SurveySpec, t_lo: float, t_hi: float) -> dict:
    depth = spec.m5[spec.band_index("r")]
    out: dict = {"subtype": np.full(n, "", dtype=object)}
    if cls in ("QSO", "AGN", "Blazar"):
        # Damped random walk (Kelly et al. 2009; MacLeod et al. 2010): tau_rest ~ 200 d, SF_inf ~ 0.2 mag.
        if cls == "QSO":
            z = rng.uniform(0.4, 2.5, n)
            sf = np.exp(rng.normal(np.log(0.20), 0.35, n))
            tau = np.exp(rng.normal(np.log(200.0), 0.5, n)) * (1 + z)
            out["m0"] = _counts_mag(rng, 16.0 if spec.name == "ztf" else 17.5, depth + 0.3, n, 0.35)
            out["color_gr"] = rng.normal(0.2, 0.1, n)
        elif cls == "AGN":
            z = rng.uniform(0.02, 0.3, n)
            sf = np.exp(rng.normal(np.log(0.18), 0.35, n))
            tau = np.exp(rng.normal(np.log(150.0), 0.5, n)) * (1 + z)
            out["m0"] = _counts_mag(rng, 16.0 if spec.name == "ztf" else 17.5, depth + 0.3, n, 0.3)
            out["color_gr"] = rng.normal(0.55, 0.15, n)
            out["host_mag"] = out["m0"] - rng.uniform(0.3, 2.0, n)  # the host outshines the nucleus
            out["host_re"] = np.exp(rng.normal(np.log(3.0), 0.4, n)) / (z * 4283.0 / (1 + z) ** 2) * 206.2648
        else:  # Blazars: larger, faster variability
            z = rng.uniform(0.05, 2.0, n)
            sf = np.exp(rng.normal(np.log(0.7), 0.4, n))
            tau = np.exp(rng.normal(np.log(40.0), 0.6, n))
            out["m0"] = _counts_mag(rng, 14.5 if spec.name == "ztf" else 16.5, depth + 0.3, n, 0.3)
            out["color_gr"] = rng.normal(0.45, 0.15, n)
        out["redshift"] = z
        out["tau"] = tau
        out["sigma"] = sf / np.sqrt(2.0)
        out["chroma"] = np.full(n, 0.2)
    elif cls == "CV/Nova":
        nova = rng.random(n) < 0.15
        out["subtype"] = np.where(nova, "nova", "dwarf_nova").astype(object)
        # Quiescent magnitude: dwarf novae near the depth, nova progenitors fainter.
        out["m0"] = np.where(
            nova, rng.uniform(depth, depth + 3.0, n), rng.uniform(depth - 3.0, depth + 1.0, n)
        )
        out["outburst_amp"] = np.where(nova, rng.uniform(8.0, 13.0, n), rng.uniform(2.0, 5.0, n))
        out["recurrence"] = np.where(nova, np.inf, np.clip(np.exp(rng.normal(np.log(60.0), 0.6, n)), 10, 500))
        out["outburst_dur"] = np.where(nova, 0.0, rng.uniform(2.0, 12.0, n))
        out["tau_rise"] = np.where(nova, rng.uniform(0.5, 2.0, n), rng.uniform(0.3, 1.0, n))
        # t2 (time to fade by 2 mag) ~ 5-100 d for novae; DN decline e-fold of 1-3 d.
        t2 = np.exp(rng.normal(np.log(20.0), 0.7, n))
        out["tau_fall"] = np.where(nova, t2 / 1.842, rng.uniform(1.0, 3.0, n))
        out["peak_mjd"] = rng.uniform(t_lo, t_hi, n)  # nova eruption; DN: one outburst epoch, others recur
        out["color_gr"] = rng.normal(0.1, 0.15, n)
        out["chroma"] = np.full(n, 0.1)
    elif cls == "YSO":
        kind = rng.choice(np.array(["dipper", "burster", "stochastic"], dtype=object), n, p=[0.5, 0.2, 0.3])
        out["subtype"] = kind
        out["m0"] = _counts_mag(rng, 13.0 if spec.name == "ztf" else 16.5, depth + 0.3, n, 0.15)
        out["tau"] = np.exp(rng.normal(np.log(5.0), 0.5, n))
        out["sigma"] = np.exp(rng.normal(np.log(0.12), 0.5, n))
        out["dip_rate"] = np.where(
            kind == "dipper",
            1 / rng.uniform(5, 30, n),
            np.where(kind == "burster", 1 / rng.uniform(50, 300, n), 0.0),
        )
        out["event_amp"] = np.where(kind == "dipper", rng.uniform(0.3, 1.5, n), rng.uniform(0.5, 3.0, n))
        out["event_dur"] = np.where(kind == "dipper", rng.uniform(0.5, 3.0, n), rng.uniform(10.0, 60.0, n))
        out["color_gr"] = rng.uniform(0.9, 1.6, n)
        out["chroma"] = np.full(n, 0.3)
    return out


def _draw_asteroids(n: int, rng, spec: SurveySpec) -> dict:
    depth = spec.m5[spec.band_index("r")]
    numbered = rng.random(n) < 0.6
    num = rng.integers(1000, 700000, n)
    year = rng.integers(1990, 2024, n)
    half = np.array(list("ABCDEFGHJKLMNOPQRSTUVWXY"))
    letters = half[rng.integers(0, len(half), n)].astype(object) + np.array(
        list("ABCDEFGHJKLMNOPQRSTUVWXYZ")
    )[rng.integers(0, 25, n)].astype(object)
    cyc = rng.integers(0, 300, n)
    prov = year.astype(str).astype(object) + letters + np.where(cyc > 0, cyc.astype(str), "").astype(object)
    return {
        "m0": _counts_mag(rng, 15.0 if spec.name == "ztf" else 17.0, depth + 0.1, n, 0.25),
        "color_gr": rng.normal(0.6, 0.1, n),
        "ssnamenr": np.where(numbered, num.astype(str).astype(object), prov),
        "ss_rate": np.exp(rng.normal(np.log(0.25), 0.5, n)),  # arcsec/min, main belt ~0.25
        "subtype": np.where(rng.random(n) < 0.05, "NEO", "MBA").astype(object),
    }


def _draw_bogus(n: int, rng) -> dict:
    kind = rng.choice(
        np.array(["hot_pixel", "dipole", "cosmic_ray", "streak", "ghost"], dtype=object),
        n,
        p=[0.3, 0.35, 0.15, 0.1, 0.1],
    )
    return {
        "subtype": kind,
        # Bad subtractions around bright stars and ghosts recur at the same place; the rest are one-off.
        "persistence": np.where(np.isin(kind, ["dipole", "ghost"]), rng.uniform(0.1, 0.5, n), 0.0),
        "m0": np.full(n, np.nan),
        "color_gr": np.zeros(n),
    }


def _object_ids(cfg: SimConfig, cls: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """(oid strings, 64-bit object ids). ZTF: 'ZTF' + 2-digit year + 7 letters, collision-free per run."""
    n = len(cls)
    idx = np.arange(n, dtype=np.int64)
    if cfg.survey == "lsst":
        base = 170_000_000_000_000_000 + (int(cfg.seed) % 10_000) * 10_000_000_000
        ids = base + idx
        return ids.astype(str).astype(object), ids
    start_year = int(str(_year_of(cfg.first_mjd()))[2:])
    persistent = np.isin(cls, PERIODIC + STOCHASTIC)
    yy = np.where(persistent, rng.integers(18, start_year + 1, n), start_year)
    code = (int(rng.integers(0, 26**7 // 2)) + idx * 7919) % 26**7
    letters = np.empty(n, dtype=object)
    letters[:] = ""
    for _ in range(7):
        letters = np.char.mod("%c", (code % 26 + 97).astype(int)).astype(object) + letters
        code = code // 26
    oids = np.char.mod("ZTF%02d", yy).astype(object) + letters
    return oids, idx


def _year_of(mjd: float) -> int:
    return int(
        (np.datetime64("1858-11-17") + np.timedelta64(int(mjd), "D")).astype("datetime64[Y]").astype(int)
        + 1970
    )


def default_fields(objects: int, objects_per_field: int, max_fields: int) -> int:
    """Pointings of a run of ``objects``: one per ``objects_per_field`` objects, at least 40 (fewer only for
    tiny runs), at most ``max_fields``."""
    return int(min(objects, max(40, min(max_fields, np.ceil(objects / objects_per_field)))))


def make_fields(cfg: SimConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Pointings of the simulated footprint, placed where the night sky is during the run (RA near anti-Sun)."""
    spec = cfg.spec
    # At least ~40 pointings (fewer only for tiny runs), so that cadence and conditions vary as across a survey;
    # at most what one night's exposures can visit (SurveySpec.max_fields).
    nf = cfg.n_fields or default_fields(cfg.objects, spec.objects_per_field, spec.max_fields)
    mid = cfg.first_mjd() + cfg.nights / 2
    anti = (sun_ra_deg(mid) + 180.0) % 360.0
    ra = (anti + rng.uniform(-75, 75, nf)) % 360.0
    s0, s1 = np.sin(np.deg2rad(spec.dec_range))
    dec = np.rad2deg(np.arcsin(rng.uniform(s0, s1, nf)))
    return pd.DataFrame(
        {
            "field": field_ids(spec, nf, rng),
            "field_ra": ra,
            "field_dec": dec,
            "phase": rng.integers(0, 1000, nf),
        }
    )


def field_ids(spec: SurveySpec, nf: int, rng: np.random.Generator) -> np.ndarray:
    """Survey field numbers for `nf` pointings (ZTF's primary grid 245-1124; LSST 1-5000), distinct."""
    field_id = (
        rng.permutation(880 if spec.name == "ztf" else 5000)[:nf] + (245 if spec.name == "ztf" else 1)
    ).astype("int32")
    if nf > len(field_id):
        field_id = np.arange(1, nf + 1, dtype="int32")
    return field_id


def draw_population(cfg: SimConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(objects, fields). One row per object, sorted by object index, with class, position and model parameters."""
    cfg.validate()
    spec = cfg.spec
    rng = stream(cfg.seed, "population")
    counts = class_counts(cfg, rng)
    t_start = cfg.first_mjd()
    t_end = t_start + cfg.nights
    parts = []
    for cls in CLASSES:
        n = counts[cls]
        if n == 0:
            continue
        parts.append(
            pd.DataFrame(draw_class(cls, n, stream(cfg.seed, "population", cls), spec, t_start, t_end))
        )
    pop = pd.concat(parts, ignore_index=True)
    # Shuffle so that classes interleave across fields and chunks.
    pop = pop.iloc[rng.permutation(len(pop))].reset_index(drop=True)
    fields = make_fields(cfg, stream(cfg.seed, "fields"))
    rp = stream(cfg.seed, "positions")
    n = len(pop)
    fidx = rp.integers(0, len(fields), n)
    half = spec.field_half_width
    dec = np.clip(fields["field_dec"].to_numpy()[fidx] + rp.uniform(-half, half, n), -89.9, 89.9)
    ra = (fields["field_ra"].to_numpy()[fidx] + rp.uniform(-half, half, n) / np.cos(np.deg2rad(dec))) % 360.0
    pop["field_index"] = fidx.astype("int32")
    pop["field"] = fields["field"].to_numpy()[fidx]
    pop["ra"] = ra
    pop["dec"] = dec
    return finish_population(cfg, pop, rp), fields


def draw_class(
    cls: str, n: int, rng: np.random.Generator, spec: SurveySpec, t_start: float, t_end: float
) -> dict:
    """The model parameters of `n` objects of class `cls` (columns of the population frame, plus `class`)."""
    if cls in TRANSIENTS:
        lo = t_start - (90 if cls == "SLSN" else 30)
        d = _draw_transients(cls, n, rng, spec, lo, t_end + (30 if cls == "SLSN" else 15))
        d["subtype"] = np.where(np.isnan(d["host_mag"]), "hostless", "").astype(object)
    elif cls in PERIODIC:
        d = _draw_periodic(cls, n, rng, spec)
    elif cls in STOCHASTIC:
        d = _draw_stochastic(cls, n, rng, spec, t_start - 20, t_end)
    elif cls == "asteroid":
        d = _draw_asteroids(n, rng, spec)
    else:
        d = _draw_bogus(n, rng)
    d["class"] = np.full(n, cls, dtype=object)
    return d


def finish_population(cfg: SimConfig, pop: pd.DataFrame, rp: np.random.Generator) -> pd.DataFrame:
    """Add what the survey gives placed objects (`field`, `ra`, `dec` set): detector (rcid), pixel position,
    ZTF's tblid, the survey's object names and ids, and empty columns for parameters no class drew."""
    spec = cfg.spec
    n = len(pop)
    pop["rcid"] = (
        rp.integers(0, 64, n).astype("int32")
        if spec.name == "ztf"
        else rp.integers(0, 189, n).astype("int32")
    )
    pop["xpos"] = rp.uniform(20, 3050, n)
    pop["ypos"] = rp.uniform(20, 3060, n)
    # Candidate index within its (field, quadrant): ZTF's tblid, unique per exposure quadrant.
    pop["tblid"] = pop.groupby(["field", "rcid"]).cumcount().astype("int64")
    oids, ids = _object_ids(cfg, pop["class"].to_numpy(), stream(cfg.seed, "names"))
    pop.insert(0, "oid", oids)
    pop.insert(1, "object_id", ids)
    for col in (
        "period",
        "amplitude",
        "tau",
        "sigma",
        "host_mag",
        "host_offset",
        "redshift",
        "peak_mjd",
        "tau_rise",
        "tau_fall",
    ):
        if col not in pop:
            pop[col] = np.nan
    return pop
