"""Evaluate each object's light-curve model at its epochs, and its flux in the reference image.

Dispatches the rows of a chunk to the vectorised models of `lightcurves` by class. Rows are (object, epoch)
pairs sorted by object then time; `obj` indexes the chunk's population frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import lightcurves as lc
from .config import SurveySpec
from .rng import stream

#: Joint runs: spacing [d] of the grid on which an object's damped random walk is shared by the surveys.
SHARED_DRW_STEP_DAYS = 0.5


@dataclass(frozen=True)
class SharedRealisation:
    """The random parts of stochastic light curves, shared by every survey of a joint run (sky.py).

    Single-survey runs draw a DRW path, YSO dips or bursts and dwarf-nova outbursts from the chunk's photometry
    stream. In a joint run each survey simulates its own chunks, so these draws come instead from streams keyed
    by the object's `truth_id` over one time span covering every survey's: the surveys see the same outbursts,
    dips and DRW excursions. The DRW is drawn exactly on a grid of SHARED_DRW_STEP_DAYS and bridged (exact
    Ornstein-Uhlenbeck conditional) to each visit with the survey's own stream.
    """

    seed: int  # the joint run's seed
    span: tuple[float, float]  # MJD range covering every survey's simulated span

    def _rngs(self, name: str, truth_ids: np.ndarray) -> list[np.random.Generator]:
        return [stream(self.seed, "joint", name, int(t)) for t in truth_ids]

    def event_train(self, truth_ids: np.ndarray, rate: np.ndarray, kmax: int = 120) -> np.ndarray:
        if len(truth_ids) == 0:
            return np.empty((0, kmax))
        return np.concatenate(
            [
                lc.event_train(1, rate[i : i + 1], self.span, r, kmax)
                for i, r in enumerate(self._rngs("events", truth_ids))
            ]
        )

    def dn_outburst_times(self, truth_ids: np.ndarray, peak_mjd: np.ndarray, recurrence: np.ndarray):
        if len(truth_ids) == 0:
            return np.empty((0, 80))
        return np.concatenate(
            [
                lc.dn_outburst_times(peak_mjd[i : i + 1], recurrence[i : i + 1], self.span, r)
                for i, r in enumerate(self._rngs("outbursts", truth_ids))
            ]
        )

    def drw(
        self,
        truth_ids: np.ndarray,
        tau: np.ndarray,
        sigma: np.ndarray,
        obj: np.ndarray,
        t: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """X(t) per row; `obj` indexes `truth_ids` / `tau` / `sigma` (per object)."""
        if len(t) == 0:
            return np.zeros(0)
        step = SHARED_DRW_STEP_DAYS
        ng = int(np.ceil((self.span[1] - self.span[0]) / step)) + 2
        eps = np.stack([r.standard_normal(ng) for r in self._rngs("drw", truth_ids)])
        a = np.exp(-step / tau)[:, None]
        grid = np.empty_like(eps)
        grid[:, 0] = sigma * eps[:, 0]
        scale = (sigma[:, None] * np.sqrt(np.maximum(1 - a * a, 0.0)))[:, 0]
        for j in range(1, ng):
            grid[:, j] = a[:, 0] * grid[:, j - 1] + scale * eps[:, j]
        u = np.clip((t - self.span[0]) / step, 0.0, ng - 1.000001)
        k = np.floor(u).astype(np.int64)
        x0, x1 = grid[obj, k], grid[obj, k + 1]
        tr = tau[obj]
        ea = np.exp(-(u - k) * step / tr)
        eb = np.exp(-(k + 1 - u) * step / tr)
        den = np.maximum(1 - ea**2 * eb**2, 1e-300)
        mean = (x0 * ea * (1 - eb**2) + x1 * eb * (1 - ea**2)) / den
        var = sigma[obj] ** 2 * (1 - ea**2) * (1 - eb**2) / den
        return mean + np.sqrt(np.maximum(var, 0.0)) * rng.standard_normal(len(t))


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
    shared: SharedRealisation | None = None,
) -> np.ndarray:
    """Apparent magnitude of the variable source per row (np.inf where it emits nothing: asteroids, bogus).

    `shared` (joint runs): draw the stochastic parts per object, the same for every survey (needs `truth_id`)."""
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
        if shared is None:
            x = lc.drw_paths(obj[idx], t[idx], p["tau"], p["sigma"], rng)
        else:
            objs, inv = np.unique(obj[idx], return_inverse=True)
            q = _gather(pop, ["truth_id", "tau", "sigma"], objs)
            x = shared.drw(q["truth_id"], q["tau"], q["sigma"], inv, t[idx], rng)
        m[idx] = m0[idx] + x * lc.chroma_factor(lam[idx], p["chroma"])
        ysel = cls[idx] == "YSO"
        if ysel.any():
            yi = idx[ysel]
            objs, inv = np.unique(obj[yi], return_inverse=True)
            q = _gather(pop, ["dip_rate", "event_amp", "event_dur"], objs)
            if shared is None:
                times = lc.event_train(len(objs), q["dip_rate"], span, rng)
            else:
                times = shared.event_train(_col(pop, "truth_id")[objs], q["dip_rate"])
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
        recurrence = np.where(nova, 1e9, q["recurrence"])
        if shared is None:
            times = lc.dn_outburst_times(q["peak_mjd"], recurrence, span, rng)
        else:
            times = shared.dn_outburst_times(_col(pop, "truth_id")[objs], q["peak_mjd"], recurrence)
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
