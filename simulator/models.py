"""Evaluate each object's light-curve model at its epochs, and its flux in the reference image.

Dispatches the rows of a chunk to the vectorised models of `lightcurves` by class. Rows are (object, epoch)
pairs sorted by object then time; `obj` indexes the chunk's population frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import lightcurves as lc
from .config import SurveySpec


def _col(pop: pd.DataFrame, name: str, default: float = np.nan) -> np.ndarray:
    if name in pop:
        return pop[name].to_numpy(dtype=float, na_value=np.nan)
    return np.full(len(pop), default)


def _gather(pop: pd.DataFrame, names: list[str], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {n: _col(pop, n)[idx] for n in names}


def source_mags(
    pop: pd.DataFrame,
    obj: np.ndarray,
    t: np.ndarray,
    band: np.ndarray,
    spec: SurveySpec,
    rng: np.random.Generator,
    span: tuple[float, float],
) -> np.ndarray:
    """Apparent magnitude of the variable source per row (np.inf where it emits nothing: asteroids, bogus)."""
    lam_b = spec.wavelengths()
    lam = lam_b[band]
    cls = pop["class"].to_numpy()[obj]
    sub = pop["subtype"].to_numpy()[obj]
    m = np.full(len(t), np.inf)
    gr = _col(pop, "color_gr", 0.0)[obj]
    m0 = _col(pop, "m0")[obj] + gr * lc.colour_factor(lam)

    sel = np.isin(cls, ["RRL", "DSCT", "CEP", "LPV", "Periodic-Other"])
    if sel.any():
        p = _gather(pop, ["period", "phase0", "amplitude", "shape_q", "n_harm", "chroma"], obj[sel])
        amp = p["amplitude"] * lc.chroma_factor(lam[sel], p["chroma"])
        objs, inv = np.unique(obj[sel], return_inverse=True)
        norm = lc.triangle_range(_col(pop, "shape_q")[objs], _col(pop, "n_harm")[objs].astype(int))[inv]
        m[sel] = lc.pulsator_mag(
            t[sel], p["period"], p["phase0"], amp, p["shape_q"], p["n_harm"].astype(int), m0[sel], norm
        )

    sel = cls == "E"
    if sel.any():
        p = _gather(pop, ["period", "phase0", "depth1", "depth2", "eclipse_width", "chroma"], obj[sel])
        k = lc.chroma_factor(lam[sel], p["chroma"])
        m[sel] = lc.eclipsing_mag(
            t[sel],
            p["period"],
            p["phase0"],
            p["depth1"] * k,
            p["depth2"] * k,
            p["eclipse_width"],
            sub[sel] == "EA",
            m0[sel],
        )

    sel = np.isin(cls, ["SNIa", "SNIbc", "SNII", "SLSN"])
    if sel.any():
        objs = np.unique(obj[sel])
        q = _gather(pop, ["tau_rise", "tau_fall", "plateau_days", "plateau_slope", "peak_mjd"], objs)
        fch = np.nan_to_num(_col(pop, "fall_chroma", 0.25), nan=0.25)
        pch = np.nan_to_num(_col(pop, "plateau_chroma", 0.8), nan=0.8)
        t0, fpk = lc.sn_shape_params(
            q["tau_rise"],
            q["tau_fall"],
            q["plateau_days"],
            q["plateau_slope"],
            q["peak_mjd"],
            lam_b,
            fch[objs],
            pch[objs],
        )
        k = np.searchsorted(objs, obj[sel])
        p = _gather(pop, ["peak_mag", "tau_rise", "tau_fall", "plateau_days", "plateau_slope"], obj[sel])
        m[sel] = lc.sn_mag(
            t[sel],
            lam[sel],
            t0[k],
            fpk[k, band[sel]],
            p["peak_mag"],
            gr[sel],
            p["tau_rise"],
            p["tau_fall"],
            p["plateau_days"],
            p["plateau_slope"],
            fch[obj[sel]],
            pch[obj[sel]],
        )

    sel = np.isin(cls, ["QSO", "AGN", "Blazar", "YSO"])
    if sel.any():
        idx = np.flatnonzero(sel)
        p = _gather(pop, ["tau", "sigma", "chroma"], obj[idx])
        x = lc.drw_paths(obj[idx], t[idx], p["tau"], p["sigma"], rng)
        m[idx] = m0[idx] + x * lc.chroma_factor(lam[idx], p["chroma"])
        ysel = cls[idx] == "YSO"
        if ysel.any():
            yi = idx[ysel]
            objs, inv = np.unique(obj[yi], return_inverse=True)
            q = _gather(pop, ["dip_rate", "event_amp", "event_dur"], objs)
            times = lc.event_train(len(objs), q["dip_rate"], span, rng)
            ev = lc.yso_events(
                t[yi], times[inv], q["event_amp"][inv], q["event_dur"][inv], sub[yi] == "dipper"
            )
            m[yi] += ev * lc.chroma_factor(lam[yi], np.full(len(yi), 0.3))

    sel = cls == "CV/Nova"
    if sel.any():
        ci = np.flatnonzero(sel)
        objs, inv = np.unique(obj[ci], return_inverse=True)
        q = _gather(
            pop, ["peak_mjd", "recurrence", "outburst_amp", "tau_rise", "outburst_dur", "tau_fall"], objs
        )
        nova = pop["subtype"].to_numpy()[objs] == "nova"
        times = lc.dn_outburst_times(q["peak_mjd"], np.where(nova, 1e9, q["recurrence"]), span, rng)
        times[nova, :] = np.nan
        times[nova, 0] = q["peak_mjd"][nova]
        amp = q["outburst_amp"][inv] * lc.chroma_factor(lam[ci], np.full(len(ci), 0.1))
        m[ci] = lc.cv_mag(
            t[ci], times[inv], m0[ci], amp, q["tau_rise"][inv], q["outburst_dur"][inv], q["tau_fall"][inv]
        )

    sel = cls == "asteroid"
    m[sel] = m0[sel]  # only its one epoch is kept by the photometry
    return m


def reference_mags(pop: pd.DataFrame, spec: SurveySpec) -> np.ndarray:
    """(n_obj, n_bands) magnitude of the variable source in the reference image (np.inf: not in it).

    The reference is a coadd of many epochs, so a periodic star contributes its phase-mean flux, a DRW source its
    mean flux, a CV its quiescence; transients, asteroids and artefacts were not there.
    """
    n = len(pop)
    lam_b = spec.wavelengths()
    ref = np.full((n, len(lam_b)), np.inf)
    cls = pop["class"].to_numpy()
    gr = _col(pop, "color_gr", 0.0)
    m0 = _col(pop, "m0")
    grid = (np.arange(32) + 0.5) / 32.0
    for j, lam in enumerate(lam_b):
        mb = m0 + gr * lc.colour_factor(lam)
        per = np.flatnonzero(np.isin(cls, ["RRL", "DSCT", "CEP", "LPV", "Periodic-Other", "E"]))
        if len(per):
            P = _col(pop, "period")[per]
            ph0 = _col(pop, "phase0")[per]
            tt = lc.T_EPOCH + (grid[None, :] - ph0[:, None]) * P[:, None]
            rep = np.repeat(per, 32)
            tt = tt.ravel()
            chroma = _col(pop, "chroma")[rep]
            k = lc.chroma_factor(np.full(len(rep), lam), chroma)
            is_e = cls[rep] == "E"
            mm = np.empty(len(rep))
            g = ~is_e
            if g.any():
                nh = np.nan_to_num(_col(pop, "n_harm")[per], nan=1.0).astype(int)
                norm = np.repeat(lc.triangle_range(np.nan_to_num(_col(pop, "shape_q")[per], nan=0.5), nh), 32)
                mm[g] = lc.pulsator_mag(
                    tt[g],
                    _col(pop, "period")[rep][g],
                    _col(pop, "phase0")[rep][g],
                    (_col(pop, "amplitude")[rep] * k)[g],
                    _col(pop, "shape_q")[rep][g],
                    _col(pop, "n_harm")[rep][g].astype(int),
                    mb[rep][g],
                    norm[g],
                )
            if is_e.any():
                mm[is_e] = lc.eclipsing_mag(
                    tt[is_e],
                    _col(pop, "period")[rep][is_e],
                    _col(pop, "phase0")[rep][is_e],
                    (_col(pop, "depth1")[rep] * k)[is_e],
                    (_col(pop, "depth2")[rep] * k)[is_e],
                    _col(pop, "eclipse_width")[rep][is_e],
                    pop["subtype"].to_numpy()[rep][is_e] == "EA",
                    mb[rep][is_e],
                )
            flux = 10 ** (-0.4 * mm.reshape(len(per), 32))
            ref[per, j] = -2.5 * np.log10(flux.mean(axis=1))
        drw = np.flatnonzero(np.isin(cls, ["QSO", "AGN", "Blazar", "YSO"]))
        if len(drw):
            s = _col(pop, "sigma")[drw] * lc.chroma_factor(np.full(len(drw), lam), _col(pop, "chroma")[drw])
            ref[drw, j] = mb[drw] - 2.5 * np.log10(np.exp(0.5 * (lc.LN10_04 * s) ** 2))
        cv = np.flatnonzero(cls == "CV/Nova")
        ref[cv, j] = mb[cv]
    return ref
