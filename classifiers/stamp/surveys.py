"""What a stamp model depends on per survey: its cutouts' crop, its metadata, its simulated training night.

A CNN learns one survey's cutouts: ZTF's 63 x 63 cutouts of 1.01" pixels and Rubin's 30 x 30 (or larger) cutouts
of 0.2" pixels show the same source at five times another scale, with other PSFs, noise and artefacts. So each
survey has its own model (``stamp_classifier`` for ZTF, ``stamp_classifier_lsst`` for LSST), its own crop (a few
PSF widths around the source: 21 ZTF pixels = 21", 30 Rubin pixels = 6" = ~8 seeing FWHM) and its own metadata
(the fields its alerts carry). The pipeline runs each model on its survey's first alerts.
"""

from __future__ import annotations

from dataclasses import dataclass

from alert_broker.classifiers.stamp.metadata import DEFAULT_FEATURES, LSST_FEATURES


@dataclass(frozen=True)
class StampSurvey:
    """One survey's stamp-model recipe (the defaults of ``broker train stamp --survey``)."""

    name: str
    #: the registry name of its model
    model_name: str
    #: side of the centre crop fed to the CNN [pixels]
    crop_size: int
    #: the metadata inputs (``metadata.METADATA_SPEC`` names)
    features: tuple[str, ...]
    #: nights simulated for a training set (LSST revisits a field every ~3 nights: one night sees a third of it)
    sim_nights: int
    #: first alerts per simulated object in ``sim_nights``, per simulator class (measured: equal shares, two
    #: seeds, averaged); a training set simulates objects in proportion to their inverse so that every stamp class
    #: gets about the same number of first alerts
    first_alert_yield: dict[str, float]
    #: the business rules its models are served with (``rules.RULES_BY_NAME``)
    rules: tuple[str, ...]


ZTF = StampSurvey(
    name="ztf",
    model_name="stamp_classifier",
    crop_size=21,
    features=DEFAULT_FEATURES,
    sim_nights=1,
    # 60,000 objects, seeds 1 and 2
    first_alert_yield={
        "SNIa": 0.165,
        "SNIbc": 0.10,
        "SNII": 0.245,
        "SLSN": 0.21,
        "AGN": 0.03,
        "QSO": 0.043,
        "Blazar": 0.18,
        "RRL": 0.17,
        "E": 0.13,
        "LPV": 0.235,
        "CEP": 0.145,
        "DSCT": 0.05,
        "Periodic-Other": 0.06,
        "YSO": 0.13,
        "CV/Nova": 0.30,
        "asteroid": 0.32,
        "bogus": 0.42,
    },  # fmt: skip
    rules=("negative_difference_is_not_sn", "star_counterpart_is_not_sn", "known_solar_system_object"),
)

LSST = StampSurvey(
    name="lsst",
    model_name="stamp_classifier_lsst",
    crop_size=30,
    features=LSST_FEATURES,
    sim_nights=1,
    # 30,000 objects, seeds 1 and 2
    first_alert_yield={
        "SNIa": 0.049,
        "SNIbc": 0.035,
        "SNII": 0.053,
        "SLSN": 0.076,
        "AGN": 0.017,
        "QSO": 0.025,
        "Blazar": 0.09,
        "RRL": 0.076,
        "E": 0.072,
        "LPV": 0.19,
        "CEP": 0.072,
        "DSCT": 0.018,
        "Periodic-Other": 0.032,
        "YSO": 0.093,
        "CV/Nova": 0.20,
        "asteroid": 0.19,
        "bogus": 0.27,
    },  # fmt: skip
    # no PS1 neighbours in Rubin alerts (the star rule would never fire); the asteroids' sky prior as ZTF's 1.4.0
    rules=("negative_difference_is_not_sn", "asteroids_keep_near_the_ecliptic", "known_solar_system_object"),
)

STAMP_SURVEYS: dict[str, StampSurvey] = {s.name: s for s in (ZTF, LSST)}


def stamp_survey(name: str) -> StampSurvey:
    """The recipe of survey ``name``; an unknown one is an error naming the known ones."""
    try:
        return STAMP_SURVEYS[name.lower()]
    except KeyError:
        raise ValueError(
            f"no stamp model recipe for survey {name!r}; known: {sorted(STAMP_SURVEYS)}"
        ) from None
