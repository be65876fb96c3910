"""Second stage of the stamp classifier: gradient-boosted trees on the CNN's output, the cutouts' physical
statistics and the alert metadata, trained on simulated *and* real labelled alerts.

Why a second stage. The CNN learns pixel shapes from simulated stamps; 51 real labelled stamps are far too few
to retrain it, and its shapes transfer partly (docs/stamp.md). A small tree model on a few dozen numbers can
learn from real alerts (ALeRCE's 51 labelled stamps, Fink's SIMBAD-labelled alerts) next to simulated ones,
and be cross-validated object by object in seconds. Its inputs:

- ``cnn_<class>``: the log-probabilities of the CNN (the image shapes);
- :data:`~classifiers.stamp.stampstats.STAT_COLUMNS`: template source at the position, its concentration, PSF
  widths, elongation, dipole ratio, how much of the light is new (stampstats.py);
- :data:`STACK_METADATA`: the alert fields of ALeRCE's list and those the CNN leaves out (coverage counts,
  classtar, reference source, ecliptic and galactic latitude, rb / drb), *raw*: a field the alert lacks is
  missing (NaN), not filled, and the trees learn what missing means from simulated rows whose metadata were
  dropped (as old schemas and labelled stamp files without metadata lack it).

Metadata a simulated sky teaches wrongly (docs/stamp.md: coverage counts, classtar, latitudes) are in the list
on purpose: real rows sit beside the simulated ones, each real alert weighs more, and the out-of-fold figures on
the real stamps say whether the field helps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.class_weight import compute_sample_weight

from alert_broker.classifiers.hierarchical import balanced_weights
from alert_broker.classifiers.stamp.metadata import METADATA_SPEC, SENTINEL_BELOW, sky_latitudes
from alert_broker.classifiers.stamp.stampstats import STAT_COLUMNS
from alert_broker.classifiers.stamp.taxonomy import STAMP_CLASSES

#: Alert fields the second stage reads (raw values, NaN when absent).
STACK_METADATA: tuple[str, ...] = (
    "sgscore1", "distpsnr1", "sgscore2", "distpsnr2", "sgscore3", "distpsnr3", "isdiffpos", "fwhm", "magpsf",
    "sigmapsf", "diffmaglim", "classtar", "ndethist", "ncovhist", "non_detections", "distnr", "magnr", "chinr",
    "sharpnr", "ecl_lat", "gal_lat", "rb", "drb", "elong", "known_sso",
)  # fmt: skip
#: Share of simulated asteroids shown as *unknown* solar-system objects (known_sso = 0): every simulated asteroid
#: is a catalogued one, while ZTF's alerts miss the few asteroids the MPC does not know yet at ZTF depth (an
#: assumed upper bound of 10 %); without it the trees would learn that an asteroid always has a match.
UNKNOWN_ASTEROID_SHARE = 0.1
CNN_COLUMNS: tuple[str, ...] = tuple(f"cnn_{c}" for c in STAMP_CLASSES)
STACK_COLUMNS: tuple[str, ...] = CNN_COLUMNS + tuple(STAT_COLUMNS) + STACK_METADATA
#: Share of simulated training rows shown without metadata (labelled stamp files and old schemas lack it).
NO_METADATA_SHARE = 0.3


def raw_metadata(alerts: pd.DataFrame) -> pd.DataFrame:
    """:data:`STACK_METADATA` of every alert: ZTF's "no value" markers (<= -99) and absent columns -> NaN;
    isdiffpos as +1/-1; latitudes from ra, dec; non_detections = ncovhist - ndethist."""
    out = {}
    for name in STACK_METADATA:
        if name in ("ecl_lat", "gal_lat", "non_detections", "known_sso"):
            continue
        if name not in alerts.columns:
            out[name] = np.full(len(alerts), np.nan)
            continue
        col = alerts[name]
        if name == "isdiffpos" and not pd.api.types.is_numeric_dtype(col):
            m = {"t": 1.0, "1": 1.0, "true": 1.0, "f": -1.0, "0": -1.0, "false": -1.0}
            v = col.astype("string").str.lower().map(m).astype("float64").to_numpy(na_value=np.nan)
        else:
            v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            if name == "isdiffpos":
                v = np.where(np.isnan(v), np.nan, np.where(v > 0, 1.0, -1.0))
        out[name] = np.where(v <= SENTINEL_BELOW, np.nan, v)
    out["non_detections"] = out["ncovhist"] - out["ndethist"]
    # ZTF matched a catalogued solar-system object within 5" (the rule's test): 1; searched and none: 0 (ssdistnr
    # -999, or a far one / a null name); the alert does not say (no ssdistnr): NaN
    dist = (
        pd.to_numeric(alerts["ssdistnr"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if "ssdistnr" in alerts.columns
        else np.full(len(alerts), np.nan)
    )
    if "ssnamenr" in alerts.columns:
        name = alerts["ssnamenr"].astype("string").str.strip().str.lower()
        named = (~name.isin(["", "null", "none", "nan"]) & name.notna()).to_numpy(dtype=bool, na_value=False)
    else:
        named = np.ones(len(alerts), dtype=bool)
    out["known_sso"] = np.where(np.isnan(dist), np.nan, ((dist >= 0) & (dist <= 5.0) & named).astype(float))
    if "ra" in alerts.columns and "dec" in alerts.columns:
        ecl, gal = sky_latitudes(
            pd.to_numeric(alerts["ra"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan),
            pd.to_numeric(alerts["dec"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan),
        )
    else:
        ecl = gal = np.full(len(alerts), np.nan)
    out["ecl_lat"], out["gal_lat"] = ecl, gal
    frame = pd.DataFrame({k: out[k] for k in STACK_METADATA}, index=alerts.index)
    for name, (_, lo, hi) in METADATA_SPEC.items():  # the CNN's clipping ranges where it has them
        if name in frame:
            frame[name] = frame[name].clip(lo, hi)
    return frame


def stack_inputs(cnn_proba: np.ndarray, stats: pd.DataFrame, metadata: pd.DataFrame) -> pd.DataFrame:
    """The second stage's input table (rows aligned by position): CNN log-probabilities, stamp statistics and
    raw metadata, in :data:`STACK_COLUMNS` order."""
    cnn = pd.DataFrame(np.log(np.clip(cnn_proba, 1e-6, 1.0)), columns=list(CNN_COLUMNS))
    st = stats.reset_index(drop=True).reindex(columns=list(STAT_COLUMNS))
    md = metadata.reset_index(drop=True).reindex(columns=list(STACK_METADATA))
    return pd.concat([cnn, st, md], axis=1)[list(STACK_COLUMNS)].astype(np.float64)


def drop_metadata(x: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """``x`` with the metadata of ``rows`` set missing (a stamps-only alert)."""
    out = x.copy()
    out.loc[rows, list(STACK_METADATA)] = np.nan
    return out


class StampStacker:
    """XGBoost over :data:`STACK_COLUMNS` (missing values native), classes balanced, rows weighted."""

    def __init__(
        self,
        n_estimators: int = 300,
        max_depth: int = 4,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        colsample_bytree: float = 0.6,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.random_state = random_state
        self.columns: tuple[str, ...] = STACK_COLUMNS
        self.booster_ = None
        self.temperature_: float = 1.0

    def fit(self, x: pd.DataFrame, y: np.ndarray, sample_weight: np.ndarray | None = None) -> StampStacker:
        import xgboost as xgb  # lazy: ~0.75 s to import; only training and the second stage use it

        codes = np.array([STAMP_CLASSES.index(c) for c in y])
        w = (
            compute_sample_weight("balanced", codes)
            if sample_weight is None
            else balanced_weights(codes, sample_weight)
        )
        self.booster_ = xgb.XGBClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            tree_method="hist",
            objective="multi:softprob",
            num_class=len(STAMP_CLASSES),
            random_state=self.random_state,
            n_jobs=1,
        ).fit(x.reindex(columns=list(self.columns)).to_numpy(dtype=np.float64), codes, sample_weight=w)
        return self

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, len(STAMP_CLASSES)))
        p = self.booster_.predict_proba(x.reindex(columns=list(self.columns)).to_numpy(dtype=np.float64))
        p = p.astype(np.float64)
        if self.temperature_ != 1.0:
            logp = np.log(np.clip(p, 1e-12, 1.0)) / self.temperature_
            p = np.exp(logp - logp.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    def set_n_jobs(self, n: int) -> None:
        if self.booster_ is not None:
            self.booster_.set_params(n_jobs=n)
