"""Real light curves as templates: new observations of a real object at another cadence, distance, extinction
and noise level (the data-driven part of the simulator, docs/simulator.md "Real light curves as templates").

The parametric models of ``lightcurves.py`` are physical but idealised; the classifiers trained on them failed on
real light curves (docs/classifiers.md). A template keeps a real object's shape and colours and lets the survey
see it again:

- **periodic** (a labelled variable with a catalogue or measured period): the light curve is folded, each band
  is smoothed in phase (a running median over phase bins, wrapped) and evaluated at the new times with a random
  phase; the star's mean magnitude moves with a new distance;
- **transient** (a supernova): each band is smoothed in time (a running median over time bins) and evaluated at
  the new times relative to its peak, stretched by time dilation when the redshift changes, dimmed by the change
  of distance modulus (flat LCDM, H0 = 70, Om = 0.3; no K-correction), flux 0 before the first and the light
  curve's own decline extrapolated after the last point;
- extinction: an extra E(B-V) with ZTF's A_g = 3.74 E(B-V), A_r = 2.64 E(B-V);
- the new survey (``ZTF_CADENCE`` or ``LSST_CADENCE``): nights a field is observed, g and r (or ugrizy) visits
  with seasonal gaps, per-visit 5-sigma depths; difference photometry as in ``photometry.py``: a persistent
  source has a reference flux (its phase-mean) and is *detected* only when its difference from it exceeds 5
  sigma (isdiffpos its sign; magpsf the difference magnitude, magpsf_corr the total), otherwise the epoch is a
  non-detection at its limit; a transient has no reference flux.

Outputs are the contract's detections and non-detections (docs/data-model.md) that ``features.compute_features``
reads, one object per resampling, named ``<parent>~<k>``: the parent's name travels so a cross-validation can
keep every resampling of an object on the same side of a split as the object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .config import WAVELENGTH_NM
from .config import ZTF_EXTINCTION as EXTINCTION
from .lightcurves import colour_factor
from .rng import stream

#: Days of history a ZTF alert carries: non-detections are kept only where an alert's history reaches them.
HISTORY_WINDOW = 30.0
#: Days of forced photometry (and of earlier detections) a Rubin alert carries.
FORCED_WINDOW = 365.0
#: AB magnitude of 1 nJy: flux [nJy] = 10^(-0.4 (m - NJY_ZP)).
NJY_ZP = 31.4
#: Rubin's bands by the cadence's fid (``LSST_CADENCE.fids``).
LSST_BAND_NAMES = ("u", "g", "r", "i", "z", "y")
#: Flat LCDM for distance moduli (H0 = 70 km/s/Mpc, Om = 0.3), as ``population.py``.
H0, OMEGA_M, C_KMS = 70.0, 0.3, 299_792.458


@dataclass(frozen=True)
class CadenceSpec:
    """A survey's sampling for template resampling: bands (fid), nightly visit probability, depths, seasons."""

    name: str
    fids: tuple[int, ...]
    band_prob: tuple[float, ...]  # probability that a band is taken on an observed night
    night_prob: tuple[float, float]  # per-object range of the probability that its field is observed a night
    m5: tuple[float, ...]  # median 5-sigma depth per band [mag]
    m5_scatter: float
    season_days: float  # observable days per year
    error_floor: float  # mag added in quadrature (calibration, PSF fit)
    saturation: float
    extinction: tuple[float, ...] = ()  # A_band / E(B-V) per fid (default: ZTF's by fid, 2.0 otherwise)


ZTF_CADENCE = CadenceSpec(
    name="ztf",
    fids=(1, 2),
    band_prob=(0.8, 0.9),
    night_prob=(0.15, 0.7),
    m5=(20.6, 20.45),
    m5_scatter=0.45,
    season_days=240.0,
    error_floor=0.015,
    saturation=12.5,
)
LSST_CADENCE = CadenceSpec(
    name="lsst",
    fids=(0, 1, 2, 3, 4, 5),
    band_prob=(0.05, 0.08, 0.18, 0.18, 0.16, 0.15),
    night_prob=(0.25, 0.45),
    m5=(23.9, 25.0, 24.7, 24.0, 23.3, 22.1),
    m5_scatter=0.3,
    season_days=200.0,
    error_floor=0.005,
    saturation=16.5,
    # Schlafly & Finkbeiner (2011), R_V = 3.1, for the LSST filters
    extinction=(4.145, 3.237, 2.273, 1.684, 1.323, 1.088),
)


@dataclass
class Template:
    """One real light curve: ``bands`` maps fid -> (mjd, mag, err) sorted by time."""

    name: str
    label: str
    kind: str  # "periodic" or "transient"
    bands: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
    period: float | None = None
    redshift: float | None = None
    extras: dict = field(default_factory=dict)  # ra, dec, sgscore1 carried into the new detections

    def usable_bands(self, min_points: int = 5) -> list[int]:
        return [b for b, (t, _, _) in self.bands.items() if len(t) >= min_points]


def templates_from_table(
    det: pd.DataFrame,
    labels: pd.Series,
    kind: str,
    *,
    periods: pd.Series | None = None,
    redshifts: pd.Series | None = None,
    mag: str = "magpsf",
    err: str = "sigmapsf",
) -> list[Template]:
    """Templates from a detections table (``oid, mjd, fid`` and ``mag`` / ``err`` columns) and labels by oid.
    Periodic templates need a finite period (``periods`` by oid); objects without one are skipped."""
    out = []
    det = det[np.isfinite(det[mag].to_numpy(dtype=float)) & np.isfinite(det[err].to_numpy(dtype=float))]
    for oid, g in det.groupby("oid", sort=True):
        label = labels.get(oid)
        if label is None or pd.isna(label):
            continue
        period = None
        if kind == "periodic":
            period = float(periods.get(oid, np.nan)) if periods is not None else np.nan
            if not np.isfinite(period) or period <= 0:
                continue
        bands = {}
        for fid, gb in g.groupby("fid"):
            gb = gb.sort_values("mjd")
            bands[int(fid)] = (
                gb["mjd"].to_numpy(dtype=float),
                gb[mag].to_numpy(dtype=float),
                gb[err].to_numpy(dtype=float),
            )
        extras = {}
        for c in ("ra", "dec", "sgscore1"):
            v = g[c].to_numpy(dtype=float) if c in g else np.zeros(0)
            v = v[np.isfinite(v)]
            extras[c] = float(np.median(v)) if v.size else np.nan
        z = float(redshifts.get(oid, np.nan)) if redshifts is not None else None
        out.append(Template(str(oid), str(label), kind, bands, period, z, extras))
    return out


# -- bands a template lacks -----------------------------------------------------------------------------------
#: Template fids are ZTF's (1 = g, 2 = r), which are LSST_CADENCE's fids of g and r; LSST's other bands by fid.
DERIVED_LSST_BANDS = {0: "u", 3: "i", 4: "z", 5: "y"}
#: Limits on the g - r colour a derived band is scaled from (mag).
COLOUR_RANGE = (-0.5, 1.5)


def template_colour(tpl: Template) -> float:
    """The template's g - r (mag): periodic, the difference of the bands' median magnitudes; transient, the
    median g - r of g and r points less than a day apart within 30 days of the first detection (else the
    medians'). Clipped to :data:`COLOUR_RANGE`."""
    tg, mg, _ = tpl.bands[1]
    tr, mr, _ = tpl.bands[2]
    c = float(np.median(mg) - np.median(mr))
    if tpl.kind == "transient":
        early = tr <= min(tg[0], tr[0]) + 30.0
        j = np.clip(np.searchsorted(tg, tr[early]), 1, tg.size - 1)
        near = np.where(np.abs(tg[j - 1] - tr[early]) < np.abs(tg[j] - tr[early]), j - 1, j)
        close = np.abs(tg[near] - tr[early]) < 1.0
        if close.sum() >= 2:
            c = float(np.median(mg[near[close]] - mr[early][close]))
    return float(np.clip(c, *COLOUR_RANGE))


def _spread(m: np.ndarray) -> float:
    return float(np.percentile(m, 95) - np.percentile(m, 5)) if m.size >= 5 else np.nan


def with_lsst_bands(tpl: Template) -> Template:
    """``tpl`` with Rubin's u, i, z and y added from its g and r, by the simulator's own colour model
    (``lightcurves.colour_factor``: colour relative to r linear in wavelength, in units of g - r): a band redder
    than r is the r light curve offset by cf_X (g - r), u the g light curve offset by (cf_u - 1)(g - r), at the
    template's own g - r (:func:`template_colour`); a periodic variable's amplitude scales with the
    chromaticity its g and r amplitudes show (``lightcurves.chroma_factor``: 1 + chroma cf_X, at least 0.3,
    chroma = A_g / A_r - 1 within [0, 1]). The shapes stay real, the extra colours are the model's: a ZTF
    template seen by Rubin in every band. Templates without 5 points in both g and r are returned as they are."""
    if not {1, 2} <= set(tpl.usable_bands()):
        return tpl
    colour = template_colour(tpl)
    chroma = 0.0
    if tpl.kind == "periodic":
        a_g, a_r = _spread(tpl.bands[1][1]), _spread(tpl.bands[2][1])
        if np.isfinite(a_g) and np.isfinite(a_r) and a_r > 0:
            chroma = float(np.clip(a_g / a_r - 1.0, 0.0, 1.0))
    bands = dict(tpl.bands)
    for fid, name in DERIVED_LSST_BANDS.items():
        cf = float(colour_factor(np.array(WAVELENGTH_NM[name])))
        base = 1 if cf > 1.0 else 2  # u from g, i z y from r
        cf_base = 1.0 if base == 1 else 0.0
        t, m, e = bands[base]
        offset = (cf - cf_base) * colour
        if tpl.kind == "periodic":
            scale = max(0.3, 1.0 + chroma * cf) / max(0.3, 1.0 + chroma * cf_base)
            mid = float(np.median(m))
            m = mid + (m - mid) * scale
        bands[fid] = (t, m + offset, e)
    return Template(tpl.name, tpl.label, tpl.kind, bands, tpl.period, tpl.redshift, dict(tpl.extras))


# -- smoothing -----------------------------------------------------------------------------------------------
def _running_median(x: np.ndarray, y: np.ndarray, width: float, wrap: float | None = None) -> np.ndarray:
    """Median of y within +-width/2 of each x (periodic in ``wrap`` when given)."""
    out = np.empty_like(y)
    for i, xi in enumerate(x):
        d = np.abs(x - xi)
        if wrap is not None:
            d = np.minimum(d, wrap - d)
        out[i] = np.median(y[d <= width / 2])
    return out


def periodic_curve(t: np.ndarray, m: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray]:
    """(phase grid in [0, 1), smoothed magnitude) of one band folded at ``period``: a running median over a
    phase window of ~max(0.03, 4/n) (narrow enough to keep an eclipse, wide enough to average noise)."""
    ph = np.mod(t / period, 1.0)
    order = np.argsort(ph)
    ph, m = ph[order], m[order]
    width = min(0.2, max(0.03, 4.0 / len(ph)))
    return ph, _running_median(ph, m, width, wrap=1.0)


def _interp_periodic(ph_grid: np.ndarray, m_grid: np.ndarray, ph: np.ndarray) -> np.ndarray:
    x = np.concatenate([ph_grid - 1.0, ph_grid, ph_grid + 1.0])
    y = np.concatenate([m_grid, m_grid, m_grid])
    return np.interp(ph, x, y)


def transient_curve(t: np.ndarray, m: np.ndarray, width: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """(times, smoothed magnitude) of one band: a running median over ``width`` days."""
    return t, _running_median(t, m, width)


def distance_modulus(z: np.ndarray) -> np.ndarray:
    """Flat LCDM distance modulus of redshift z (numerical integral; z > 0)."""
    z = np.atleast_1d(np.asarray(z, dtype=float))
    grid = np.linspace(0.0, 1.0, 257)
    out = np.empty_like(z)
    for i, zi in enumerate(z):
        zz = grid * zi
        ez = np.sqrt(OMEGA_M * (1 + zz) ** 3 + 1 - OMEGA_M)
        dc = C_KMS / H0 * np.trapezoid(1.0 / ez, zz)
        out[i] = 5 * np.log10(max((1 + zi) * dc, 1e-6) * 1e6 / 10.0)
    return out


def volume_quantile(u: float, z_lo: float, z_hi: float) -> float:
    """The redshift at quantile ``u`` of supernovae per unit observer time in a flat LCDM volume between z_lo and
    z_hi: density dV/dz / (1 + z) with dV/dz proportional to D_C(z)^2 / E(z) (a constant rate per comoving volume
    and rest-frame time), by inverting its cumulative integral on a grid."""
    zz = np.linspace(z_lo, z_hi, 257)
    grid = np.linspace(0.0, 1.0, 129)
    ez = np.sqrt(OMEGA_M * (1 + zz) ** 3 + 1 - OMEGA_M)
    dc = np.array(
        [np.trapezoid(1.0 / np.sqrt(OMEGA_M * (1 + grid * z) ** 3 + 1 - OMEGA_M), grid * z) for z in zz]
    )
    density = dc**2 / ez / (1 + zz)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(zz))])
    return float(np.interp(u * cdf[-1], cdf, zz))


# -- cadence and photometry -----------------------------------------------------------------------------------
def cadence(
    rng: np.random.Generator, spec: CadenceSpec, t0: float, span: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mjd, fid, 5-sigma depth) of the visits of one field over [t0, t0 + span]: observable nights in seasons,
    each observed with the object's nightly probability, bands per night with ``band_prob``, visits of one
    night ~1 h apart around a random time of night."""
    nights = np.arange(np.floor(t0), np.floor(t0) + np.ceil(span) + 1)
    season_phase = rng.random() * 365.25
    in_season = np.mod(nights - season_phase, 365.25) < spec.season_days
    p = rng.uniform(*spec.night_prob)
    observed = nights[in_season & (rng.random(nights.size) < p)]
    t, f = [], []
    for k, fid in enumerate(spec.fids):
        take = rng.random(observed.size) < spec.band_prob[k]
        t.append(observed[take] + 0.6 + 0.04 * k + rng.normal(0, 0.05, take.sum()))
        f.append(np.full(take.sum(), fid))
    t, f = np.concatenate(t), np.concatenate(f)
    order = np.argsort(t)
    t, f = t[order], f[order]
    m5 = np.array([spec.m5[spec.fids.index(x)] for x in f]) + rng.normal(0, spec.m5_scatter, f.size)
    m5 -= rng.exponential(0.15, f.size)  # clouds, bad seeing: a tail to shallow limits
    return t, f, m5


def _extinction(spec: CadenceSpec, fid: np.ndarray) -> np.ndarray:
    """A_band / E(B-V) of each visit's band: the spec's own coefficients, else ZTF's by fid."""
    if spec.extinction:
        return np.asarray(spec.extinction, dtype=float)[np.searchsorted(spec.fids, fid)]
    return np.array([EXTINCTION.get(int(b), 2.0) for b in fid])


def _flux(m):
    return 10.0 ** (-0.4 * np.asarray(m, dtype=float))


def _mag(f):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -2.5 * np.log10(f)


@dataclass
class Resampled:
    """Contract tables of resampled objects and their labels / parents."""

    detections: pd.DataFrame
    non_detections: pd.DataFrame
    labels: pd.Series  # oid -> class
    parents: pd.Series  # oid -> template name
    #: every visit's difference flux (``oid, fid, mjd, flux, flux_err``; flux as 10^(-0.4 m)) from 30 days before
    #: the first detection to the last, within a year of the last: what a Rubin alert's forced photometry holds
    forced: pd.DataFrame = field(default_factory=pd.DataFrame)


def resample(
    templates: list[Template],
    n_per_template: int | dict[str, int],
    seed: int,
    spec: CadenceSpec = ZTF_CADENCE,
    *,
    dm_range: tuple[float, float] = (-1.0, 2.0),
    z_max: float = 0.25,
    ebv_scale: float = 0.05,
    pre_rise: bool = False,
    by_volume: bool = False,
) -> Resampled:
    """``n_per_template`` new observations of every template (a dict gives a count per label), reproducible
    from ``seed`` (one random stream per (seed, template, k)).

    Periodic: distance change dm ~ U(``dm_range``) kept within the survey's range (the median magnitude stays
    2.5 mag inside the saturation and 0.3 mag inside the median depth). Transient: a new redshift up to
    ``z_max`` (never closer than 0.4 of the template's when known), the new light curve starts 10-40 d before
    the first template point; before a band's first point nothing, or with ``pre_rise`` a t^2 rise to it
    (:func:`rise_time`: a survey deeper than the template's sees the supernova before it did). Extinction:
    E(B-V) ~ Exp(``ebv_scale``).
    """
    dets, nds, forced, labels, parents = [], [], [], {}, {}
    for tpl in templates:
        n = n_per_template.get(tpl.label, 0) if isinstance(n_per_template, dict) else int(n_per_template)
        bands = [b for b in tpl.usable_bands() if b in spec.fids]
        if not bands or n <= 0:
            continue
        curves = {}
        for b in bands:
            t, m, _ = tpl.bands[b]
            curves[b] = periodic_curve(t, m, tpl.period) if tpl.kind == "periodic" else transient_curve(t, m)
        for k in range(n):
            rng = stream(seed, "template", tpl.name, k)
            oid = f"{tpl.name}~{k}"
            out = _observe(
                tpl, curves, bands, rng, spec, dm_range, z_max, ebv_scale, oid, pre_rise, by_volume
            )
            if out is None:
                continue
            d, nd, fp = out
            dets.append(d)
            nds.append(nd)
            forced.append(fp)
            labels[oid] = tpl.label
            parents[oid] = tpl.name
    det = pd.concat(dets, ignore_index=True) if dets else pd.DataFrame()
    nd = pd.concat(nds, ignore_index=True) if nds else pd.DataFrame()
    fp = pd.concat(forced, ignore_index=True) if forced else pd.DataFrame()
    return Resampled(det, nd, pd.Series(labels, name="class"), pd.Series(parents, name="parent"), fp)


def _observe(tpl, curves, bands, rng, spec, dm_range, z_max, ebv_scale, oid, pre_rise, by_volume):
    ebv = rng.exponential(ebv_scale)
    if tpl.kind == "periodic":
        span = rng.uniform(150.0, 900.0)
        t0 = 58200.0 + rng.uniform(0, 1500)
        t, fid, m5 = cadence(rng, spec, t0, span)
        med = np.median(np.concatenate([curves[b][1] for b in bands]))
        lo = max(dm_range[0], spec.saturation + 2.5 - med)
        hi = min(dm_range[1], min(spec.m5) - 0.3 - med)
        if hi < lo:
            return None
        dm = rng.uniform(lo, hi)
        phase0 = rng.random()
        true = np.full(t.size, np.nan)
        ref = {}
        for b in bands:
            ph_g, m_g = curves[b]
            sel = fid == b
            true[sel] = _interp_periodic(ph_g, m_g, np.mod(t[sel] / tpl.period + phase0, 1.0))
            ref[b] = _mag(np.mean(_flux(m_g)))  # the reference image holds the phase-mean flux
        keep = np.isin(fid, bands)
        t, fid, m5, true = t[keep], fid[keep], m5[keep], true[keep]
        ext = _extinction(spec, fid) * ebv
        true = true + dm + ext
        m_ref = np.array([ref[int(b)] for b in fid]) + dm + ext
    else:
        t_first = min(curves[b][0][0] for b in bands)
        t_last = max(curves[b][0][-1] for b in bands)
        z_old = tpl.redshift if tpl.redshift and np.isfinite(tpl.redshift) and tpl.redshift > 0 else None
        if z_old is not None:
            z_lo, z_hi = max(0.005, 0.4 * z_old), max(z_max, 1.2 * z_old)
            u = rng.uniform(0.0, 1.0)
            z_new = volume_quantile(u, z_lo, z_hi) if by_volume else z_lo + u * (z_hi - z_lo)
            dm = float(distance_modulus(z_new)[0] - distance_modulus(z_old)[0])
            stretch = (1 + z_new) / (1 + z_old)
        else:
            dm, stretch = rng.uniform(0.0, 1.5), 1.0
        lead = rng.uniform(10.0, 40.0)
        span = (t_last - t_first) * stretch + lead + rng.uniform(0.0, 120.0)
        t0 = 58200.0 + rng.uniform(0, 1500)
        t, fid, m5 = cadence(rng, spec, t0 - lead - 60.0, span + 60.0)
        keep = np.isin(fid, bands)
        t, fid, m5 = t[keep], fid[keep], m5[keep]
        true = np.full(t.size, np.inf)
        for b in bands:
            tt, mm = curves[b]
            sel = fid == b
            rest = t0 + (tt - t_first) * stretch  # template times on the new clock
            x = t[sel]
            v = np.interp(x, rest, mm)
            # after the last point: continue the last 20 days' decline (at least 0.01 mag/d)
            tail = x > rest[-1]
            if tail.any():
                recent = tt >= tt[-1] - 20.0
                slope = 0.01
                if recent.sum() >= 2 and np.ptp(tt[recent]) > 1:
                    slope = max(float(np.polyfit(tt[recent], mm[recent], 1)[0]) / stretch, 0.01)
                v[tail] = mm[-1] + slope * (x[tail] - rest[-1])
            before = x < rest[0]
            v[before] = np.inf  # nothing before the template's first detection ...
            if pre_rise and before.any():  # ... or a t^2 rise to it (a deeper survey sees the SN earlier)
                a = rise_time(tt, mm) * stretch
                dt = x[before] - (rest[0] - a)
                with np.errstate(divide="ignore", invalid="ignore"):
                    v[before] = np.where(dt > 0, mm[0] - 5.0 * np.log10(dt / a), np.inf)
            true[sel] = v
        true = true + dm + _extinction(spec, fid) * ebv
        m_ref = None
    return _photometry(oid, t, fid, m5, true, m_ref, rng, spec, tpl)


#: Limits (days) of the rise time :func:`rise_time` gives, and its value when the light curve shows no rise.
RISE_TIME_RANGE = (1.0, 30.0)
RISE_TIME_DEFAULT = 10.0


def rise_time(t: np.ndarray, m: np.ndarray) -> float:
    """Days from first light to the first point ``(t[0], m[0])`` of a supernova's band under a t^2 flux rise
    (a fireball) through that point and the band's peak: with dm = m[0] - m_peak and dt = t_peak - t[0],
    (t_peak - t_x) / (t[0] - t_x) = 10^(dm / 5) gives t[0] - t_x = dt / (10^(dm / 5) - 1). Clipped to
    :data:`RISE_TIME_RANGE`; :data:`RISE_TIME_DEFAULT` when the first point is the peak (dm < 0.05 mag)."""
    k = int(np.argmin(m))
    dm, dt = float(m[0] - m[k]), float(t[k] - t[0])
    if k == 0 or dm < 0.05 or dt <= 0:
        return RISE_TIME_DEFAULT
    return float(np.clip(dt / (10.0 ** (dm / 5.0) - 1.0), *RISE_TIME_RANGE))


def _photometry(oid, t, fid, m5, true, m_ref, rng, spec, tpl):
    """Difference photometry of one resampled object: detections (|SNR| >= 5), non-detections and forced
    photometry."""
    sigma_f = _flux(m5) / 5.0  # flux error of the difference image at the visit's depth
    f_true = np.where(np.isfinite(true), _flux(true), 0.0)
    f_ref = _flux(m_ref) if m_ref is not None else np.zeros_like(f_true)
    diff = f_true - f_ref
    # source Poisson noise and the calibration floor, relative to the total flux
    sig = np.sqrt(sigma_f**2 + (spec.error_floor * f_true) ** 2)
    obs = diff + rng.normal(0, 1, diff.size) * sig
    snr = obs / sig
    detected = (np.abs(snr) >= 5.0) & (true > spec.saturation)
    if m_ref is None:
        detected &= snr > 0  # a transient on an empty reference only brightens
    if detected.sum() < 2:
        return None
    d = detected
    absd = np.abs(obs[d])
    total = f_ref[d] + obs[d] if m_ref is not None else obs[d]
    magpsf = _mag(absd)
    sigmapsf = 1.0857 * sig[d] / absd
    n = int(d.sum())
    det = pd.DataFrame(
        {
            "oid": oid,
            "candid": np.arange(n, dtype=np.int64),
            "survey": spec.name,
            "mjd": t[d],
            "fid": fid[d].astype(np.int16),
            "magpsf": magpsf,
            "sigmapsf": sigmapsf,
            "isdiffpos": np.where(obs[d] > 0, 1, -1).astype(np.int8),
            "rb": np.clip(rng.beta(9.0, 2.0, n), 0, 1),
            "ra": tpl.extras.get("ra", np.nan),
            "dec": tpl.extras.get("dec", np.nan),
            "sgscore1": tpl.extras.get("sgscore1", np.nan),
        }
    )
    if m_ref is not None:  # a persistent source: corrected magnitudes are the total flux
        good = total > 0
        det["magpsf_corr"] = np.where(good, _mag(np.where(good, total, 1.0)), np.nan)
        det["sigmapsf_corr_ext"] = np.where(good, 1.0857 * sig[d] / np.where(good, total, 1.0), np.nan)
        det["corrected"] = True
    else:
        det["corrected"] = False
    # Non-detections as the history store has them: only those an alert's 30-day history carries (a detection
    # follows within HISTORY_WINDOW days); a year of limits before a supernova is not what real light curves hold.
    t_det = np.sort(t[d])
    t_nd = t[~d]
    nxt = np.searchsorted(t_det, t_nd, side="left")
    has = nxt < t_det.size
    follows = np.zeros(t_nd.size, dtype=bool)
    follows[has] = t_det[nxt[has]] - t_nd[has] <= HISTORY_WINDOW
    nd = pd.DataFrame(
        {
            "oid": oid,
            "fid": fid[~d][follows].astype(np.int16),
            "mjd": t_nd[follows],
            "diffmaglim": m5[~d][follows],
            "survey": spec.name,
        }
    )
    # Forced photometry as a Rubin alert carries it: every visit since 30 days before the first detection,
    # within a year of the last detection (the alert's history window), up to the last detection.
    t_last = t_det[-1]
    fsel = (t >= max(t_det[0] - 30.0, t_last - FORCED_WINDOW)) & (t <= t_last)
    fp = pd.DataFrame(
        {
            "oid": oid,
            "fid": fid[fsel].astype(np.int16),
            "mjd": t[fsel],
            "flux": obs[fsel],
            "flux_err": sig[fsel],
        }
    )
    return det, nd, fp


def as_flux_light_curves(
    res: Resampled, bands: tuple[str, ...] = LSST_BAND_NAMES
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(detections, forced photometry) of resampled objects as difference-flux light curves in nJy (``oid, band,
    mjd, flux, flux_err``, what ``features.compute_flux_features`` reads): a detection's flux is its difference
    magnitude's, signed by ``isdiffpos``, its error from ``sigmapsf``; band names by fid from ``bands``."""
    scale = 10.0 ** (0.4 * NJY_ZP)
    names = np.asarray(bands, dtype=object)
    det, fp = res.detections, res.forced
    if det.empty:  # no object: no forced photometry either (every detection epoch is a forced epoch)
        det = fp = pd.DataFrame(
            {"oid": [], "fid": [], "mjd": [], "magpsf": [], "sigmapsf": [], "isdiffpos": []}
        )
        fp = fp.assign(flux=[], flux_err=[])
    absf = _flux(det["magpsf"].to_numpy(dtype=float)) * scale

    def table(frame: pd.DataFrame, flux: np.ndarray, err: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "oid": frame["oid"].to_numpy(),
                "band": names[frame["fid"].to_numpy(dtype=int)],
                "mjd": frame["mjd"].to_numpy(dtype=float),
                "flux": flux,
                "flux_err": err,
            }
        )

    out_det = table(
        det,
        np.sign(det["isdiffpos"].to_numpy(dtype=float)) * absf,
        det["sigmapsf"].to_numpy(dtype=float) * absf / 1.0857,
    )
    out_fp = table(fp, fp["flux"].to_numpy(dtype=float) * scale, fp["flux_err"].to_numpy(dtype=float) * scale)
    return out_det, out_fp
