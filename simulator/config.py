"""Survey descriptions and the run configuration of the alert simulator.

Every number a survey contributes (site, bands, depths, cadence, history length) lives here, so the science
modules stay survey-agnostic: they read a `SurveySpec` and never branch on the survey's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from .rng import stream
from .timeutil import night_start

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

#: ZTF extinction per unit E(B-V) by fid (g, r, i), Schlafly & Finkbeiner 2011 for the ZTF filters: the real
#: templates' extra dust and the simulated SNe's host dust.
ZTF_EXTINCTION = {1: 3.74, 2: 2.64, 3: 1.94}

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
    field_half_width: float = 1.7  # objects lie within +-this many degrees of their pointing's centre
    # Most pointings a run gets by default: as many as one night's exposures can visit (40 s each in ~0.4 d of
    # dark time). Beyond it a run puts more objects on each pointing instead: with more, a night's exposures
    # spilled days past its end, into the next nights' times, and ZTF's time-built ids (pid, candid) repeated.
    max_fields: int = 800

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
    field_half_width=3.4,
    max_fields=800,  # ~730 exposures a night, about what ZTF takes
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
    field_half_width=1.7,
    max_fields=2000,  # ~870 visits a night, about Rubin's
)

SURVEYS = {"ztf": ZTF, "lsst": LSST}

#: Joins the surveys of a joint run: SimConfig(survey="ztf+lsst").
JOINT_SEPARATOR = "+"
#: Joint runs: the closest distance between two distinct objects of the shared sky [arcsec] (default).
DEFAULT_MIN_SEPARATION_ARCSEC = 5.0


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
    # Joint runs only (survey="ztf+lsst"): distinct objects of the shared sky are never closer than this [arcsec].
    min_separation: float = DEFAULT_MIN_SEPARATION_ARCSEC
    # Set on one survey's part of a joint run (`SimConfig.part`): the joint run whose sky that survey observes.
    joint: SimConfig | None = None

    @property
    def surveys(self) -> tuple[str, ...]:
        """The surveys of the run: ("ztf",) or, for a joint run "ztf+lsst", ("ztf", "lsst")."""
        return tuple(self.survey.split(JOINT_SEPARATOR))

    @property
    def is_joint(self) -> bool:
        """True for a joint multi-survey run (survey="ztf+lsst"): one sky, one archive per survey."""
        return len(self.surveys) > 1

    @property
    def spec(self) -> SurveySpec:
        if self.is_joint:
            raise ValueError(
                f"a joint run ({self.survey!r}) has one survey description per survey: use cfg.part(survey).spec"
            )
        try:
            spec = SURVEYS[self.survey]
        except KeyError:
            raise ValueError(
                f"unknown survey {self.survey!r}; expected one of {sorted(SURVEYS)} "
                f"or a joint run such as 'ztf{JOINT_SEPARATOR}lsst'"
            ) from None
        return spec if self.history_days is None else _with_history(spec, float(self.history_days))

    def part(self, survey: str) -> SimConfig:
        """One survey's part of a joint run: that survey's configuration, observing the joint run's sky.

        The part has its own seed (derived from the run's seed and the survey's name), so the surveys' weather,
        cadence, noise, ids and stamps are independent, and a start time at local midnight of the run's first
        night at the survey's site, so that both surveys' alert nights carry the same labels.
        """
        if not self.is_joint:
            raise ValueError(f"{self.survey!r} is not a joint run (e.g. survey='ztf{JOINT_SEPARATOR}lsst')")
        if survey not in self.surveys:
            raise ValueError(f"{survey!r} is not one of the joint run's surveys {list(self.surveys)}")
        ref = SURVEYS[self.surveys[0]].lon_deg
        first_night = night_start(self.first_mjd(), ref) + ref / 360.0 - 0.5  # MJD at 0h of the night's date
        lon = SURVEYS[survey].lon_deg
        return replace(
            self,
            survey=survey,
            seed=part_seed(self.seed, survey),
            start_mjd=float(first_night + 1.0 - lon / 360.0),  # local midnight at the survey's site
            joint=self,
        )

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
        if self.start_mjd is not None:
            return float(self.start_mjd)
        if self.is_joint:  # the latest default start: when every survey of the run operates
            return max(
                (SURVEYS[s].default_start_mjd for s in self.surveys if s in SURVEYS),
                default=ZTF.default_start_mjd,
            )
        return self.spec.default_start_mjd

    def validate(self) -> None:
        if self.is_joint:
            names = self.surveys
            unknown = [s for s in names if s not in SURVEYS]
            if unknown or len(set(names)) != len(names):
                raise ValueError(
                    f"a joint run names distinct known surveys joined by {JOINT_SEPARATOR!r} "
                    f"(e.g. 'ztf{JOINT_SEPARATOR}lsst'), not {self.survey!r}; known: {sorted(SURVEYS)}"
                )
            if self.joint is not None:
                raise ValueError("a joint run cannot itself be part of a joint run")
            if not self.min_separation > 0:
                raise ValueError(f"min_separation must be positive, not {self.min_separation!r}")
        else:
            _ = self.spec
        if self.nights < 1:
            raise ValueError("nights must be >= 1")
        if self.objects < 1:
            raise ValueError("objects must be >= 1")
        if self.n_fields is not None and self.n_fields < 1:
            raise ValueError(f"n_fields (pointings) must be >= 1, not {self.n_fields!r}")
        if self.codec not in ("null", "snappy"):
            raise ValueError(f"codec must be 'null' or 'snappy', not {self.codec!r}")
        if self.ztf_schema not in ("ztf", "fink"):
            raise ValueError(f"ztf_schema must be 'ztf' or 'fink', not {self.ztf_schema!r}")
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        if self.history_days is not None and not self.history_days > 0:
            raise ValueError(f"history_days must be positive, not {self.history_days!r}")


def part_seed(seed: int, survey: str) -> int:
    """The seed of one survey's part of a joint run (31 bits, derived from the run's seed and the survey)."""
    return int(stream(seed, "joint-part", survey).integers(0, 2**31 - 1))


@lru_cache(maxsize=16)
def _with_history(spec: SurveySpec, days: float) -> SurveySpec:
    return replace(spec, history_days=days)
