"""The stamp classifier's five classes and how the simulator's truth classes map onto them.

ALeRCE's stamp classifier (Carrasco-Davis et al. 2021; Förster et al. 2021, Sect. 3.1.2) sorts the first alert of
a new object into SN, AGN, VS, asteroid or bogus. The simulator labels objects with the 15 light-curve classes plus
asteroid and bogus; :data:`SIM_TO_STAMP` says which stamp class each one trains.
"""

from __future__ import annotations

import pandas as pd

#: Bump when a class is added, removed or renamed, or when a simulator class moves to another stamp class.
STAMP_TAXONOMY_VERSION = "stamp-taxonomy-1.0.0"

#: The classifier's name in the registry and the `probability` table (ALeRCE's name for it).
DEFAULT_NAME = "stamp_classifier"

#: The five classes, in ALeRCE's order (the order of the softmax outputs).
STAMP_CLASSES: tuple[str, ...] = ("SN", "AGN", "VS", "asteroid", "bogus")

#: Simulator truth class -> stamp class. Transients are SN; the extragalactic stochastic sources (AGN, QSO,
#: Blazar) are AGN, as in ALeRCE's stamp training set (its AGN class is built from AGN/QSO catalogues).
#: Everything galactic and persistent is VS: the periodic classes, YSO and CV/Nova. YSOs and CVs are stochastic for
#: the light-curve classifier, but on a first stamp they look like variable stars (a point source present in the
#: reference, with a star-like PS1 counterpart), which is what ALeRCE's VS class means; a nova erupting on a
#: faint progenitor can look like an SN, and that confusion is real, not a labelling choice.
SIM_TO_STAMP: dict[str, str] = {
    "SNIa": "SN",
    "SNIbc": "SN",
    "SNII": "SN",
    "SLSN": "SN",
    "AGN": "AGN",
    "QSO": "AGN",
    "Blazar": "AGN",
    "RRL": "VS",
    "E": "VS",
    "LPV": "VS",
    "CEP": "VS",
    "DSCT": "VS",
    "Periodic-Other": "VS",
    "YSO": "VS",
    "CV/Nova": "VS",
    "asteroid": "asteroid",
    "bogus": "bogus",
}

#: Other spellings found in labelled stamp sets (ALeRCE's files use these five names; people write others).
_ALIASES = {
    "sn": "SN",
    "agn": "AGN",
    "vs": "VS",
    "ast": "asteroid",
    "asteroids": "asteroid",
    "artifact": "bogus",
}


def stamp_labels(labels: pd.Series) -> pd.Series:
    """Labels (stamp classes, simulator classes or aliases) mapped onto :data:`STAMP_CLASSES`; others -> NA."""

    def one(s):
        if s is pd.NA or s is None:
            return pd.NA
        if s in STAMP_CLASSES:
            return s
        if s in SIM_TO_STAMP:
            return SIM_TO_STAMP[s]
        low = str(s).lower()
        return next((c for c in STAMP_CLASSES if c.lower() == low), _ALIASES.get(low, pd.NA))

    return labels.astype("object").map(one).astype("string")
