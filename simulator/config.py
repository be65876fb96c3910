"""Survey descriptions and the run configuration of the alert simulator.

Every number a survey contributes (site, bands, depths, cadence, history length) lives here, so the science
modules stay survey-agnostic: they read a `SurveySpec` and never branch on the survey's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

#: The 15 light-curve classes of the ALeRCE taxonomy plus the two stamp-only kinds.
TRANSIENTS = ("SNIa", "SNIbc", "SNII", "SLSN")
STOCHASTIC = ("QSO", "AGN", "Blazar", "CV/Nova", "YSO")
PERIODIC = ("LPV", "E", "DSCT", "RRL", "CEP", "Periodic-Other")
OTHER = ("asteroid", "bogus")
CLASSES = TRANSIENTS + STOCHASTIC + PERIODIC + OTHER

#: Default share of *objects* per class (see docs/simulator.md for the reasoning). Variable stars dominate the
#: object count, asteroids and bogus artefacts the single-alert tail, SNe are a few per cent.
DEFAULT_FRACTIONS: dict[str, float] = {
    "SNIa": 0.150,
    "SNIbc": 0.025,
    "SNII": 0.075,
    "SLSN": 0.005,
    "QSO": 0.050,
    "AGN": 0.030,
    "Blazar": 0.005,
    "CV/Nova": 0.008,
    "YSO": 0.020,
    "LPV": 0.040,
    "E": 0.090,
    "DSCT": 0.010,
    "RRL": 0.060,
    "CEP": 0.006,
    "Periodic-Other": 0.036,
    "asteroid": 0.300,
    "bogus": 0.090,
}

#: Effective wavelengths [nm] used by the linear-in-wavelength colour and amplitude scalings.
WAVELENGTH_NM = {"u": 367.0, "g": 482.0, "r": 622.0, "i": 755.0, "z": 869.0, "y": 971.0}


@dataclass(frozen=True)
class SurveySpec:
    """What a survey looks like to the simulator: site, bands, depths, cadence and alert contents."""

    name: str
    bands: tuple[str, ...]
    fids: tuple[int, ...]  # the band ids the packets carry (ZTF fid; LSST has band names, ids for the model)
    band_weights: tuple[float, ...]  # share of visits per band
    lon_deg: float  # site longitude (east positive), for night labels and visit times
    m5: tuple[float, ...]  # median single-visit 5-sigma depth per band [mag]
    m5_scatter: float  # per-visit scatter of the depth [mag]
    zeropoint: tuple[float, ...]  # photometric zero point per band (DN for ZTF, nJy scale for LSST)
    seeing_median: float  # FWHM [arcsec]
    seeing_log_sigma: float
    pixel_scale: float  # arcsec / pixel
    stamp_size: int  # cutout side [pixels]
    history_days: float  # how far back prv_candidates / prvDiaSources reach
    revisit_nights: float  # mean number of nights between visits of a field
    visits_per_night: int  # visits of a field on a night it is observed
    pair_gap_days: float  # time between the visits of one night
    clear_fraction: float  # share of usable nights (weather)
    dec_range: tuple[float, float]
    saturation_mag: float
    survey_start_mjd: float
    default_start_mjd: float
    objects_per_field: int  # how many simulated objects share one pointing (sets the visit burst size)

    @property
    def nbands(self) -> int:
        return len(self.bands)

    def band_index(self, band: str) -> int:
        return self.bands.index(band)

    def wavelengths(self) -> np.ndarray:
        return np.array([WAVELENGTH_NM[b] for b in self.bands])


ZTF = SurveySpec(
    name="ztf",
    bands=("g", "r"),
    fids=(1, 2),
    band_weights=(0.5, 0.5),
    lon_deg=-116.8599,  # Palomar
    m5=(20.6, 20.45),  # difference-image depth (template noise included), cf. diffmaglim in real alerts
    m5_scatter=0.25,
    zeropoint=(26.30, 26.22),
    seeing_median=2.3,
    seeing_log_sigma=0.28,
    pixel_scale=1.012,
    stamp_size=63,
    history_days=30.0,
    revisit_nights=2.0,
    visits_per_night=2,  # one g and one r exposure, ~1 h apart (the public survey)
    pair_gap_days=0.045,
    clear_fraction=0.75,
    dec_range=(-30.0, 85.0),
    saturation_mag=12.5,
    survey_start_mjd=58194.0,  # 2018-03-17, start of ZTF survey operations
    default_start_mjd=60676.0,  # 2025-01-01
    objects_per_field=500,
)

LSST = SurveySpec(
    name="lsst",
    bands=("u", "g", "r", "i", "z", "y"),
    fids=(4, 5, 6, 7, 8, 9),
    band_weights=(0.07, 0.10, 0.22, 0.22, 0.20, 0.19),
    lon_deg=-70.7494,  # Cerro Pachon
    m5=(23.9, 25.0, 24.7, 24.0, 23.3, 22.1),
    m5_scatter=0.25,
    zeropoint=(31.4,) * 6,  # AB magnitude of 1 nJy
    seeing_median=0.8,
    seeing_log_sigma=0.25,
    pixel_scale=0.2,
    stamp_size=30,
    history_days=365.0,
    revisit_nights=3.0,
    visits_per_night=2,  # a pair of visits in two bands ~33 min apart
    pair_gap_days=0.023,
    clear_fraction=0.8,
    dec_range=(-75.0, 5.0),
    saturation_mag=16.5,
    survey_start_mjd=60970.0,  # 2025-11
    default_start_mjd=61100.0,  # 2026-03-30
    objects_per_field=1000,
)

SURVEYS = {"ztf": ZTF, "lsst": LSST}


@dataclass
class SimConfig:
    """One simulation run. Everything that changes the output bytes is in here (plus the package version)."""

    survey: str = "ztf"
    nights: int = 1
    objects: int = 1000
    seed: int = 0
    start_mjd: float | None = None  # a time inside the first night; default: the survey's default
    class_fractions: dict[str, float] | None = None
    ztf_schema: str = (
        "ztf"  # "ztf": ZTF's own 4.02 schema (with fp_hists); "fink": the Fink re-serialised 4.02
    )
    codec: str = "null"  # Avro block codec: "null" or "snappy"
    stamps: bool = True
    n_fields: int | None = None  # default: objects / survey.objects_per_field
    chunk_size: int = 20_000  # objects per independent chunk (part of the determinism contract)
    workers: int = 1
    stamp_variants: int = 3  # noise realisations per stamp-bank cell
    # How far back each alert's history reaches [d] (None: the survey's own, 30 d for ZTF). Training sets set
    # ~a year: the pipeline's history store gives the classifiers the accumulated light curve, not one alert's.
    history_days: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def spec(self) -> SurveySpec:
        try:
            spec = SURVEYS[self.survey]
        except KeyError:
            raise ValueError(f"unknown survey {self.survey!r}; expected one of {sorted(SURVEYS)}") from None
        return spec if self.history_days is None else _with_history(spec, float(self.history_days))

    def fractions(self) -> dict[str, float]:
        fr = dict(DEFAULT_FRACTIONS if self.class_fractions is None else self.class_fractions)
        unknown = set(fr) - set(CLASSES)
        if unknown:
            raise ValueError(f"unknown classes in class_fractions: {sorted(unknown)}; known: {list(CLASSES)}")
        total = sum(fr.values())
        if total <= 0:
            raise ValueError("class_fractions must contain a positive share")
        return {c: fr.get(c, 0.0) / total for c in CLASSES}

    def first_mjd(self) -> float:
        return self.spec.default_start_mjd if self.start_mjd is None else float(self.start_mjd)

    def validate(self) -> None:
        _ = self.spec
        if self.nights < 1:
            raise ValueError("nights must be >= 1")
        if self.objects < 1:
            raise ValueError("objects must be >= 1")
        if self.codec not in ("null", "snappy"):
            raise ValueError(f"codec must be 'null' or 'snappy', not {self.codec!r}")
        if self.ztf_schema not in ("ztf", "fink"):
            raise ValueError(f"ztf_schema must be 'ztf' or 'fink', not {self.ztf_schema!r}")
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        if self.history_days is not None and not self.history_days > 0:
            raise ValueError(f"history_days must be positive, not {self.history_days!r}")


@lru_cache(maxsize=16)
def _with_history(spec: SurveySpec, days: float) -> SurveySpec:
    return replace(spec, history_days=days)
