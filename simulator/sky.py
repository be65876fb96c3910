"""The shared sky of a joint multi-survey run (survey="ztf+lsst"): one set of objects that every survey observes.

A joint run draws its objects once: class, light-curve model and true position, with a `truth_id`. Each survey's
part (`SimConfig.part`) then observes them through its own pointings, cadence, bands, depths, astrometric noise,
detectors, names and ids (`part_population`), so the same object alerts in both surveys' packets.

- Shared objects (every class but asteroids and artefacts) are drawn to the depth of the *shallowest* survey of
  the run (ZTF's), so most are bright enough for both; the deeper survey still misses what saturates it.
- Asteroids move (~1' between the ZTF and LSST visits of a night) and artefacts belong to one camera, so each of
  those objects belongs to one survey only (the class share is split between the surveys), drawn with that
  survey's own depth and limits.
- Positions lie in pointings ("patches") inside the declinations every survey of the run reaches (ZTF and LSST:
  -30..+5 deg): each survey observes each patch as one of its fields. Distinct objects are never closer than
  `SimConfig.min_separation` (5" by default): a position drawn nearer is drawn again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from .config import CLASSES, SURVEYS, SimConfig, SurveySpec
from .population import class_counts, default_fields, draw_class, field_ids, finish_population
from .rng import stream
from .timeutil import sun_ra_deg

#: Classes whose objects each belong to one survey of a joint run (moving, or made by one camera).
SURVEY_SPECIFIC = ("asteroid", "bogus")

#: Redraws of too-close positions before giving up (each pass redraws one object of every close pair).
_MAX_SPREAD_PASSES = 200


@dataclass
class Sky:
    """The objects of a joint run (truth) and the pointings that hold them."""

    cfg: SimConfig  # the joint run
    objects: pd.DataFrame  # truth_id, class, subtype, model parameters, ra, dec, patch, surveys
    patches: pd.DataFrame  # patch_ra, patch_dec

    def member(self, survey: str) -> np.ndarray:
        """Which objects `survey` observes: the shared ones and its own asteroids and artefacts."""
        s = self.objects["surveys"].to_numpy()
        return (s == self.cfg.survey) | (s == survey)


def population_spec(cfg: SimConfig) -> SurveySpec:
    """The survey whose depth and bright limits the shared objects are drawn to: the shallowest (r band)."""
    specs = [SURVEYS[s] for s in cfg.surveys]
    return min(specs, key=lambda sp: sp.m5[sp.band_index("r")])


def dec_overlap(cfg: SimConfig) -> tuple[float, float]:
    """The declinations every survey of the run observes (ZTF -30..+85 and LSST -75..+5: -30..+5)."""
    lo = max(SURVEYS[s].dec_range[0] for s in cfg.surveys)
    hi = min(SURVEYS[s].dec_range[1] for s in cfg.surveys)
    return lo, hi


def patch_half_width(cfg: SimConfig) -> float:
    """Half width [deg] of a patch: the smallest field of the run's surveys, so a patch fits every survey's."""
    return min(SURVEYS[s].field_half_width for s in cfg.surveys)


def n_patches(cfg: SimConfig) -> int:
    """As many pointings as the survey with the fewest objects per field would use (at least ~40)."""
    per = min(SURVEYS[s].objects_per_field for s in cfg.surveys)
    most = min(SURVEYS[s].max_fields for s in cfg.surveys)
    return cfg.n_fields or default_fields(cfg.objects, per, most)


def make_patches(cfg: SimConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Pointings inside the common declinations, where the night sky is during the run (RA near anti-Sun)."""
    nf = n_patches(cfg)
    half = patch_half_width(cfg)
    lo, hi = dec_overlap(cfg)
    lo, hi = lo + half, hi - half
    if hi < lo:
        raise ValueError(f"the surveys {list(cfg.surveys)} share no declinations wide enough for a pointing")
    mid = cfg.first_mjd() + cfg.nights / 2
    anti = (sun_ra_deg(mid) + 180.0) % 360.0
    ra = (anti + rng.uniform(-75, 75, nf)) % 360.0
    s0, s1 = np.sin(np.deg2rad((lo, hi)))
    dec = np.rad2deg(np.arcsin(rng.uniform(s0, s1, nf)))
    return pd.DataFrame({"patch_ra": ra, "patch_dec": dec})


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    r, d = np.deg2rad(ra), np.deg2rad(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=1)


def _place(pra: np.ndarray, pdec: np.ndarray, half: float, rng: np.random.Generator):
    dec = np.clip(pdec + rng.uniform(-half, half, len(pdec)), -89.9, 89.9)
    ra = (pra + rng.uniform(-half, half, len(pra)) / np.cos(np.deg2rad(dec))) % 360.0
    return ra, dec


def close_pairs(ra: np.ndarray, dec: np.ndarray, radius_arcsec: float) -> np.ndarray:
    """(k, 2) index pairs i < j of positions closer than `radius_arcsec` (great circle), sorted."""
    if len(ra) < 2:
        return np.empty((0, 2), np.int64)
    chord = 2.0 * np.sin(np.deg2rad(radius_arcsec / 3600.0) / 2.0)
    pairs = cKDTree(_unit(ra, dec)).query_pairs(chord, output_type="ndarray")
    if len(pairs) == 0:
        return np.empty((0, 2), np.int64)
    pairs = np.sort(pairs.astype(np.int64), axis=1)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def place_objects(cfg: SimConfig, n: int, patches: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """(patch index, ra, dec) of `n` objects: uniform in their patch, no two closer than cfg.min_separation."""
    half = patch_half_width(cfg)
    area = len(patches) * (2 * half * 3600.0) ** 2  # arcsec^2 (patches may overlap: an upper bound)
    if n * np.pi * (cfg.min_separation / 2) ** 2 > 0.3 * area:
        raise ValueError(
            f"{n} objects in {len(patches)} pointings cannot keep {cfg.min_separation} arcsec apart: "
            "use more fields (n_fields) or a smaller min_separation"
        )
    rng = stream(cfg.seed, "joint", "positions")
    pidx = rng.integers(0, len(patches), n)
    pra, pdec = patches["patch_ra"].to_numpy()[pidx], patches["patch_dec"].to_numpy()[pidx]
    ra, dec = _place(pra, pdec, half, rng)
    for k in range(_MAX_SPREAD_PASSES):
        pairs = close_pairs(ra, dec, cfg.min_separation)
        if len(pairs) == 0:
            return pidx.astype("int32"), ra, dec
        move = np.unique(pairs[:, 1])  # the later object of each close pair takes a new place in its patch
        ra[move], dec[move] = _place(pra[move], pdec[move], half, stream(cfg.seed, "joint", "spread", k))
    raise RuntimeError(f"could not keep {n} objects {cfg.min_separation} arcsec apart")


def draw_sky(cfg: SimConfig) -> Sky:
    """The joint run's objects: classes and model parameters (shared or per survey), then positions."""
    cfg.validate()
    if not cfg.is_joint:
        raise ValueError(f"draw_sky needs a joint run (survey='ztf+lsst'), not {cfg.survey!r}")
    spec = population_spec(cfg)
    rng = stream(cfg.seed, "joint", "population")
    counts = class_counts(cfg, rng)
    t_start = cfg.first_mjd()
    t_end = t_start + cfg.nights
    parts = []
    for cls in CLASSES:
        n = counts[cls]
        if n == 0:
            continue
        if cls in SURVEY_SPECIFIC:
            k = len(cfg.surveys)
            for j, s in enumerate(cfg.surveys):
                m = n // k + (1 if j < n % k else 0)
                if m:
                    r = stream(cfg.seed, "joint", "population", s, cls)
                    d = draw_class(cls, m, r, SURVEYS[s], t_start, t_end)
                    d["surveys"] = np.full(m, s, dtype=object)
                    parts.append(pd.DataFrame(d))
        else:
            d = draw_class(cls, n, stream(cfg.seed, "joint", "population", cls), spec, t_start, t_end)
            d["surveys"] = np.full(n, cfg.survey, dtype=object)
            parts.append(pd.DataFrame(d))
    objects = pd.concat(parts, ignore_index=True)
    objects = objects.iloc[rng.permutation(len(objects))].reset_index(drop=True)
    objects.insert(0, "truth_id", np.arange(len(objects), dtype=np.int64))
    patches = make_patches(cfg, stream(cfg.seed, "joint", "patches"))
    pidx, ra, dec = place_objects(cfg, len(objects), patches)
    objects["patch"] = pidx
    objects["ra"] = ra
    objects["dec"] = dec
    return Sky(cfg, objects, patches)


def _sky_key(cfg: SimConfig) -> tuple:
    return (
        cfg.survey,
        cfg.nights,
        cfg.objects,
        cfg.seed,
        cfg.first_mjd(),
        tuple(sorted(cfg.fractions().items())),
        cfg.n_fields,
        cfg.min_separation,
    )


_SKIES: dict[tuple, Sky] = {}


def build_sky(cfg: SimConfig) -> Sky:
    """The joint run's sky (cached per configuration: both surveys' parts and every worker reuse it)."""
    key = _sky_key(cfg)
    sky = _SKIES.get(key)
    if sky is None:
        sky = draw_sky(cfg)
        if len(_SKIES) >= 2:
            _SKIES.pop(next(iter(_SKIES)))
        _SKIES[key] = sky
    return sky


def part_population(cfg: SimConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(objects, fields) of one survey's part of a joint run, as `population.draw_population` gives them.

    The objects are the sky's that the survey observes (with their `truth_id`, true position and model); the
    fields are the sky's patches under the survey's own field numbers; detectors, pixel positions, names and ids
    are the survey's own, drawn from the part's seed.
    """
    if cfg.joint is None:
        raise ValueError("part_population needs one survey's part of a joint run (SimConfig.part)")
    sky = build_sky(cfg.joint)
    spec = cfg.spec
    pop = sky.objects[sky.member(cfg.survey)].reset_index(drop=True)
    frng = stream(cfg.seed, "fields")
    nf = len(sky.patches)
    fields = pd.DataFrame(
        {
            "field": field_ids(spec, nf, frng),
            "field_ra": sky.patches["patch_ra"].to_numpy(),
            "field_dec": sky.patches["patch_dec"].to_numpy(),
            "phase": frng.integers(0, 1000, nf),
        }
    )
    fidx = pop.pop("patch").to_numpy().astype("int32")
    pop = pop.drop(columns=["surveys"])
    pop["field_index"] = fidx
    pop["field"] = fields["field"].to_numpy()[fidx]
    return finish_population(cfg, pop, stream(cfg.seed, "positions")), fields
