"""Business rules applied after the CNN's softmax, as ALeRCE's stamp-classification step applies them.

Source: ALeRCE's ``early_classification_step`` (the production step that ran the stamp classifier on ZTF,
github.com/alercebroker, ``earlyclassifier/step.py``): an alert with a known solar-system object nearby gets
probability 1 for asteroid without running the network (``is_asteroid``: ``ssdistnr != -999``), and an alert the
network calls SN is *not* reported as SN when its difference is negative or when it sits on a PS1 star
(``sn_must_be_saved``: ``isdiffpos`` false, or ``sgscore1 > 0.5 and distpsnr1 < 1``). Förster et al. (2021,
Sect. 4.3) describe the same step.

Two deliberate differences, both so the rules can be tested on their own and rows always reach the
``probability`` table:
- ALeRCE drops the whole classification when an SN rule fires; here the rule sets P(SN) = 0 and renormalises,
  so the next most probable class leads and the row is still stored.
- The asteroid rule needs a *real* match: 0 <= ssdistnr <= ``max_dist_arcsec`` (5": ZTF reports the distance in
  whole arcsec, genuine matches are 0-2") and an SSO name that is not null. Fink-serialised real alerts carry
  ``ssdistnr = 60`` with ``ssnamenr = "null"`` when there is no match (seen in ``ztf/fink_sample_1166``), which
  ALeRCE's ``!= -999`` test would call an asteroid.

One rule of our own, :func:`asteroids_keep_near_the_ecliptic` (models from 1.4.0 on): a sky prior for asteroids.
The second stage learnt asteroids from a simulated sky that puts them anywhere, while real ones keep near the
ecliptic (the 221 known solar-system objects of ``ztf/fink_sample_1166`` all lie within 34 deg of it, none in
the 14 % of that sample's sky beyond 45 deg). The rule moves P(asteroid) from the training's uniform sky to
that prior (a likelihood ratio: Bayes' rule for a change of prior), where ZTF matched no known object.

Each rule is a pure function (probabilities, alerts) -> probabilities over the same rows (aligned by position);
:func:`apply_rules` runs them in order (the asteroid rule last: it overrides) and renormalises. A model names
its rules in its metadata (``rules``; :func:`rules_named`); a model that names none runs :data:`DEFAULT_RULES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from alert_broker.classifiers.stamp.metadata import SENTINEL_BELOW, sky_latitudes
from alert_broker.classifiers.stamp.taxonomy import STAMP_CLASSES

Rule = Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]

#: ALeRCE's star test for SN candidates: the nearest PS1 source is a star (sgscore1 > 0.5) within 1".
STAR_SGSCORE = 0.5
STAR_DIST_ARCSEC = 1.0
#: A known solar-system object at most this far from the alert makes it an asteroid [arcsec].
SSO_DIST_ARCSEC = 5.0
#: Asteroids' sky: ecliptic latitude ~ N(0, sigma) plus a floor, the share of a uniform sky kept everywhere
#: (near-Earth and high-inclination objects). Maximum likelihood on the 221 known solar-system objects of
#: ``ztf/fink_sample_1166`` against the sky the sample covers (docs/stamp.md, "1.4.0"): sigma 10.8 deg without a
#: floor, 10.1 deg with 0.05, the floor we keep (it expects 1.4 of them beyond 45 deg where none is; 0.2 would
#: expect 6.2).
ASTEROID_ECLIPTIC_SIGMA_DEG = 10.0
ASTEROID_SKY_FLOOR = 0.05


def numeric_column(alerts: pd.DataFrame, name: str) -> np.ndarray:
    """An alert field as float64: absent column, unparsable values and ZTF's "no value" markers -> NaN."""
    if name not in alerts.columns:
        return np.full(len(alerts), np.nan)
    v = pd.to_numeric(alerts[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(v <= SENTINEL_BELOW, np.nan, v)


def renormalise(proba: pd.DataFrame) -> pd.DataFrame:
    """Rows scaled to sum to 1; a row with no mass left becomes uniform over the classes (nothing is known)."""
    p = proba.to_numpy(dtype=np.float64)
    total = p.sum(axis=1, keepdims=True)
    p = np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / p.shape[1])
    return pd.DataFrame(p, index=proba.index, columns=proba.columns)


def _zero_class(proba: pd.DataFrame, rows: np.ndarray, cls: str) -> pd.DataFrame:
    out = proba.copy()
    if rows.any():
        p = out.to_numpy(dtype=np.float64, copy=True)
        j = out.columns.get_loc(cls)
        mass = p[rows].copy()
        mass[:, j] = 0.0
        # a row whose whole mass was on the zeroed class spreads evenly over the others
        empty = mass.sum(axis=1) <= 0
        mass[empty] = 1.0
        mass[empty, j] = 0.0
        p[rows] = mass
        out = renormalise(pd.DataFrame(p, index=out.index, columns=out.columns))
    return out


def negative_difference_is_not_sn(proba: pd.DataFrame, alerts: pd.DataFrame) -> pd.DataFrame:
    """P(SN) = 0 where the alert's difference flux is negative (isdiffpos = -1 / 'f'): the first detection of a
    new supernova is a brightening, so a fading first alert is a variable source (or bogus). ALeRCE
    ``sn_must_be_saved``."""
    sign = alerts["isdiffpos"] if "isdiffpos" in alerts.columns else pd.Series(np.nan, index=alerts.index)
    if pd.api.types.is_numeric_dtype(sign):
        neg = pd.to_numeric(sign, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan) < 0
    else:
        neg = sign.astype("string").str.lower().isin(["f", "0", "false"]).to_numpy(dtype=bool, na_value=False)
    return _zero_class(proba, neg, "SN")


def star_counterpart_is_not_sn(proba: pd.DataFrame, alerts: pd.DataFrame) -> pd.DataFrame:
    """P(SN) = 0 where the nearest PS1 source is a star (sgscore1 > 0.5) closer than 1": the alert is the star
    varying, not a supernova in a galaxy. ALeRCE ``sn_must_be_saved``."""
    sg, dist = numeric_column(alerts, "sgscore1"), numeric_column(alerts, "distpsnr1")
    star = (sg > STAR_SGSCORE) & (dist >= 0) & (dist < STAR_DIST_ARCSEC)
    return _zero_class(proba, star, "SN")


def known_solar_system_object(
    proba: pd.DataFrame, alerts: pd.DataFrame, max_dist_arcsec: float = SSO_DIST_ARCSEC
) -> pd.DataFrame:
    """P(asteroid) = 1 where ZTF matched a known solar-system object (non-null ``ssnamenr``) within
    ``max_dist_arcsec`` (``ssdistnr``), ALeRCE ``is_asteroid`` / ``FULL_ASTEROID_PROBABILITY``; or where Rubin
    associated the source with one (``ssObjectId`` non-zero: LSST's alert production does the association)."""
    dist = numeric_column(alerts, "ssdistnr")
    if "ssnamenr" in alerts.columns:
        name = alerts["ssnamenr"].astype("string").str.strip().str.lower()
        named = (~name.isin(["", "null", "none", "nan"]) & name.notna()).to_numpy(dtype=bool, na_value=False)
    else:
        named = np.ones(len(alerts), dtype=bool)
    hit = named & (dist >= 0) & (dist <= max_dist_arcsec)
    if "ssObjectId" in alerts.columns:
        hit |= np.nan_to_num(pd.to_numeric(alerts["ssObjectId"], errors="coerce").to_numpy(np.float64)) != 0
    out = proba.copy()
    if hit.any():
        p = out.to_numpy(dtype=np.float64, copy=True)
        p[hit] = 0.0
        p[hit, out.columns.get_loc("asteroid")] = 1.0
        out = pd.DataFrame(p, index=out.index, columns=out.columns)
    return out


def asteroid_sky_weight(
    ecl_lat_deg, sigma_deg: float = ASTEROID_ECLIPTIC_SIGMA_DEG, floor: float = ASTEROID_SKY_FLOOR
) -> np.ndarray:
    """Asteroids' density on the sky at ecliptic latitude beta, relative to a uniform sky (its mean over the
    sphere is 1): (1 - floor) * 2 N(beta; 0, sigma) / cos(beta) + floor. The factor 2 / cos(beta) turns a density
    in beta into one per steradian relative to the uniform sphere's cos(beta) / 2; the Gaussian is
    normalised on the line (its tails beyond +-90 deg are below 1e-17 for sigma <= 10 deg)."""
    b = np.deg2rad(np.asarray(ecl_lat_deg, dtype=np.float64))
    s = np.deg2rad(sigma_deg)
    gauss = np.exp(-0.5 * (b / s) ** 2) / (s * np.sqrt(2.0 * np.pi))
    with np.errstate(divide="ignore", invalid="ignore"):
        w = (1.0 - floor) * 2.0 * gauss / np.cos(b) + floor
    return np.where(np.abs(b) >= np.pi / 2, floor, w)


def asteroids_keep_near_the_ecliptic(proba: pd.DataFrame, alerts: pd.DataFrame) -> pd.DataFrame:
    """P(asteroid) x :func:`asteroid_sky_weight` at the alert's ecliptic latitude, renormalised: the model learnt
    asteroids on a sky where they are anywhere (the simulator's), real ones keep near the ecliptic. Rows without
    ra / dec are left as they are; a known solar-system object still decides (the override runs after)."""
    ecl, _ = sky_latitudes(numeric_column(alerts, "ra"), numeric_column(alerts, "dec"))
    known = ~np.isnan(ecl)
    if not known.any():
        return proba
    p = proba.to_numpy(dtype=np.float64, copy=True)
    j = proba.columns.get_loc("asteroid")
    p[known, j] *= asteroid_sky_weight(ecl[known])
    return renormalise(pd.DataFrame(p, index=proba.index, columns=proba.columns))


#: ALeRCE's rules, in order (the asteroid override last); a model whose metadata names no rules runs these.
DEFAULT_RULES: tuple[Rule, ...] = (
    negative_difference_is_not_sn,
    star_counterpart_is_not_sn,
    known_solar_system_object,
)
#: ALeRCE's rules with the asteroids' sky prior before the override (stamp_classifier 1.4.0 on).
SKY_PRIOR_RULES: tuple[Rule, ...] = (
    negative_difference_is_not_sn,
    star_counterpart_is_not_sn,
    asteroids_keep_near_the_ecliptic,
    known_solar_system_object,
)
#: Every rule by the name a model's metadata uses.
RULES_BY_NAME: dict[str, Rule] = {r.__name__: r for r in (*DEFAULT_RULES, asteroids_keep_near_the_ecliptic)}


def rule_names(rules: Sequence[Rule]) -> list[str]:
    """The names a model's metadata stores for ``rules`` (each must be one of :data:`RULES_BY_NAME`)."""
    names = [r.__name__ for r in rules]
    unknown = [n for n in names if RULES_BY_NAME.get(n) is None]
    if unknown:
        raise ValueError(f"rules {unknown} are not in RULES_BY_NAME: a model could not name them")
    return names


def rules_named(names: Sequence[str]) -> tuple[Rule, ...]:
    """The rules a model's metadata names, in its order; an unknown name is an error (newer code's rule)."""
    unknown = [n for n in names if n not in RULES_BY_NAME]
    if unknown:
        raise ValueError(f"unknown stamp rules {unknown}: known {sorted(RULES_BY_NAME)}")
    return tuple(RULES_BY_NAME[n] for n in names)


def apply_rules(
    proba: pd.DataFrame, alerts: pd.DataFrame, rules: Sequence[Rule] = DEFAULT_RULES
) -> pd.DataFrame:
    """Run ``rules`` over probabilities (rows aligned by position with ``alerts``; columns the five classes);
    returns float64 probabilities whose rows sum to 1."""
    if len(proba) != len(alerts):
        raise ValueError(f"apply_rules(): {len(proba)} probability rows but {len(alerts)} alerts")
    missing = [c for c in STAMP_CLASSES if c not in proba.columns]
    if missing:
        raise ValueError(f"apply_rules(): probabilities lack classes {missing}")
    out = renormalise(proba[list(STAMP_CLASSES)])
    al = alerts.reset_index(drop=True)
    for rule in rules:
        out = rule(out, al)
    return renormalise(out)
