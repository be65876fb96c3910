"""One independent chunk of objects: their rows of photometry and static context, ready for packet building.

Chunks are the unit of work (and of parallelism): each draws from its own random streams keyed by the chunk
index, so a run gives the same bytes whatever the number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .cadence import rows_for_objects, simulated_span
from .config import PERIODIC, STOCHASTIC, SimConfig
from .models import reference_mags
from .neighbours import context
from .photometry import observe
from .rng import stream


@dataclass
class ChunkData:
    index: int
    pop: pd.DataFrame  # the chunk's objects (index 0..n-1)
    ctx: pd.DataFrame  # per-object context (neighbours, host light)
    rows: pd.DataFrame  # per (object, visit) photometry, sorted by object then time
    window: tuple[float, float]
    span: tuple[float, float]


def simulate_chunk(cfg: SimConfig, pop: pd.DataFrame, visits: pd.DataFrame, index: int) -> ChunkData:
    spec = cfg.spec
    lo = index * cfg.chunk_size
    chunk = pop.iloc[lo : lo + cfg.chunk_size].reset_index(drop=True)
    s0, w0, w1 = simulated_span(cfg)
    obj, epoch = rows_for_objects(chunk["field_index"].to_numpy(), visits)
    ctx = context(chunk, reference_mags(chunk, spec), spec, stream(cfg.seed, "context", index))
    rows = observe(
        chunk, visits, obj, epoch, ctx, spec, (w0, w1), (s0, w1), stream(cfg.seed, "photometry", index)
    )
    rows = add_history_counts(cfg, chunk, rows, stream(cfg.seed, "history", index))
    return ChunkData(index=index, pop=chunk, ctx=ctx, rows=rows, window=(w0, w1), span=(s0, w1))


def add_history_counts(
    cfg: SimConfig, pop: pd.DataFrame, rows: pd.DataFrame, rng: np.random.Generator
) -> pd.DataFrame:
    """ndethist / ncovhist / first-detection time per row, including the survey years before the simulation.

    Persistent sources (variable stars, AGN) were covered since the survey began: their earlier coverage and
    detections are extrapolated from the simulated rate of visits and detection fraction.
    """
    spec = cfg.spec
    obj = rows["obj"].to_numpy()
    det = rows["detected"].to_numpy()
    t = rows["mjd"].to_numpy()
    n_obj = len(pop)
    n_rows = np.bincount(obj, minlength=n_obj)
    n_det = np.bincount(obj, weights=det, minlength=n_obj)
    span_days = max(float(t.max() - t.min()), 1.0) if len(t) else 1.0
    before = max(rows["mjd"].min() - spec.survey_start_mjd, 0.0) if len(rows) else 0.0
    persistent = np.isin(pop["class"].to_numpy(), PERIODIC + STOCHASTIC)
    cov_prior = np.where(
        persistent | np.isin(pop["class"].to_numpy(), ["asteroid", "bogus"]),
        rng.poisson(n_rows / span_days * before * 0.9),
        0,
    )
    p_det = np.divide(n_det, n_rows, out=np.zeros(n_obj), where=n_rows > 0)
    det_prior = np.where(persistent, rng.binomial(cov_prior, np.clip(p_det, 0, 1)), 0)
    start_prior = spec.survey_start_mjd + rng.uniform(0, 60, n_obj)
    first = np.r_[True, obj[1:] != obj[:-1]] if len(obj) else np.zeros(0, bool)
    starts = np.flatnonzero(first)
    pos = np.arange(len(obj)) - np.repeat(starts, np.diff(np.r_[starts, len(obj)]))
    cum_det = np.cumsum(det) - np.repeat(
        np.cumsum(det)[starts] - det[starts], np.diff(np.r_[starts, len(obj)])
    )
    first_det_t = np.full(n_obj, np.nan)
    di = np.flatnonzero(det)
    if len(di):
        # first detection per object: rows are time-sorted within each object
        o_det = obj[di]
        keep = np.r_[True, o_det[1:] != o_det[:-1]]
        first_det_t[o_det[keep]] = t[di[keep]]
    rows = rows.copy()
    is_ast = pop["class"].to_numpy()[obj] == "asteroid"
    rows["ndethist"] = np.where(is_ast, 1, det_prior[obj] + cum_det).astype("int32")
    rows["ncovhist"] = (cov_prior[obj] + pos + 1).astype("int32")
    rows["first_det_mjd"] = np.where(
        is_ast, t, np.where(det_prior[obj] > 0, start_prior[obj], first_det_t[obj])
    )
    return rows
