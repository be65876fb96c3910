"""Real Rubin alerts for the LSST stamp model: the shared data's 207 LSST alerts, each put in a category by eye.

No labelled LSST cutouts exist in the shared data (Fink's SIMBAD cross-match on them is "Unknown" for 206 of
207), so the categories below were given by looking at every difference cutout once, while the simulator's LSST
cutouts were calibrated (7 Dec 2026; docs/stamp.md, "LSST"). They are one reading, not a catalogue, and most of
this early-commissioning sample is subtraction artefacts:

- ``clean_pos``: a clean positive point source (a transient or variable: SN, AGN or VS for the model);
- ``negative``: a clean negative one (a variable fading: not SN);
- ``trail``: a short streak (an asteroid, or a satellite);
- ``dipole``, ``bullseye`` (a ring around a bright star), ``banding``, ``donut_residual`` (a defocused PSF's
  residual), ``neighbour_residual`` (a neighbour's residual off the centre), ``ghost``, ``edge``: artefacts, bogus;
- ``noise``: no source visible at the centre (detections at SNR 5-6): bogus or a faint real source, unknown.

Keys are ``diaSourceId`` (the alerts table's ``candid``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from alert_broker.classifiers.stamp.taxonomy import STAMP_CLASSES
from alert_broker.surveys.decode import decode_batch
from alert_broker.surveys.messages import RawMessage

#: The by-eye categories of the real LSST alerts (see the module docstring).
EYE_CATEGORIES: dict[str, tuple[int, ...]] = {
    "clean_pos": (
        58804328047050791,
        169298432603193401,
        169298432645136561,
        169298432742653968,
        169298432757858307,
        169298432768344296,
        169298433289486351,
        169298433291583519,
        169298433297350710,
        169298433314652171,
        169298433328283746,
        169298433340342275,
        169298433340342300,
        170094456248729605,
        170094456277565473,
        170094456480989258,
        170094456528175205,
    ),
    "negative": (170094456272322680,),
    "trail": (
        169298432900464695,
        169298433290010627,
        169298433320943633,
        169298433321992201,
        169298433339293699,
    ),
    "dipole": (
        58804293150441527,
        58804293150441529,
        58804293150441531,
        58804293150441532,
        58804293217550338,
        58804302554071047,
        58804302898003989,
        58804310154149891,
        58804310657466373,
        58804310657466376,
        58804310657466377,
        58804310657466378,
        58804310665855002,
        58804310665855004,
        58804310665855007,
        58804310741352461,
        58804311227891753,
        58804311227891754,
        58804311227891755,
        58804311227891756,
        58804311353720877,
        58804311362109448,
        58804311362109450,
        58804311362109451,
        58804311362109453,
        58804318559535108,
        58804319138349059,
        58804319390007300,
        58804326637764649,
        58804326637764654,
        58804326637764659,
        58804326637764660,
        58804326654541839,
        58804326654541840,
        58804327023640707,
        58804327023640711,
        58804327023640713,
        58804327342407719,
        58804327342407720,
        58804327619231772,
        58804328047050783,
        58804328047050788,
        58804328047050789,
        58804328047050790,
        58804328047050795,
        170094456523456557,
    ),
    "bullseye": (
        58804293150441522,
        58804293150441534,
        58804293150441535,
        58804302302412845,
        58804302898003990,
        58804302965112834,
        58804303023833089,
        58804303023833092,
        58804310649077773,
        58804310657466374,
        58804310665855003,
        58804311227891761,
        58804311353720871,
        58804311353720872,
        58804311353720874,
        58804311353720875,
        58804311353720888,
        58804311362109441,
        58804319650054150,
        58804319650054153,
        58804326637764661,
        58804326654541836,
        58804326654541837,
        58804327023640712,
        58804327023640715,
        58804327342407721,
        58804328047050785,
        58804328047050786,
    ),
    "banding": (
        58804311362109455,
        58804318492426251,
        58804319650054147,
        58804319650054149,
        58804319650054155,
    ),
    "donut_residual": (
        169298432623116306,
        169298432627310934,
        169298432734265405,
        169298432753139746,
        169298432755761181,
        169298432766771490,
        169298432772538786,
        169298432807665680,
        169298432807665685,
        169298432871104624,
        169298432875298885,
        169298432878969103,
    ),
    "neighbour_residual": (
        169298432618921989,
        169298432621019382,
        169298432622068181,
        169298432623116318,
        169298432627834966,
        169298432755761170,
        169298432755761177,
        169298432772538728,
        169298432774111247,
        169298432874774798,
        169298433322516820,
    ),
    "ghost": (
        169298432623116308,
        169298433313603602,
        169298433313603614,
    ),
    "edge": (
        169298432772538505,
        169298433320419341,
    ),
    "noise": (
        58804302713454593,
        58804302898003984,
        58804302898003986,
        58804302898003988,
        58804310665855001,
        58804310665855008,
        58804311227891751,
        58804311227891757,
        58804311353720873,
        58804311353720876,
        58804311353720883,
        58804311362109449,
        58804319650054154,
        58804326637764658,
        58804326654541832,
        58804326654541833,
        58804326654541838,
        58804326939754518,
        58804327426293761,
        58804327988330497,
        58804328047050787,
        169298432598474793,
        169298432598474839,
        169298432601096247,
        169298432603193359,
        169298432603193361,
        169298432605814947,
        169298432621019290,
        169298432625737994,
        169298432626262032,
        169298432627834988,
        169298432732692593,
        169298432733216891,
        169298432737411096,
        169298432737411120,
        169298432738459657,
        169298432738983938,
        169298432739508270,
        169298432740556850,
        169298432752615649,
        169298432759955486,
        169298432765198435,
        169298432768344287,
        169298432774111263,
        169298432776208386,
        169298432778830334,
        169298432870580707,
        169298432872677429,
        169298432876871693,
        169298432876871712,
        169298432877395982,
        169298432889454622,
        169298432891027460,
        169298432895221807,
        169298432900464699,
        169298432900464718,
        169298433288962082,
        169298433290534915,
        169298433290534936,
        169298433296826788,
        169298433297350861,
        169298433298923567,
        169298433298923576,
        169298433314127878,
        169298433314127898,
        169298433314652173,
        169298433317273606,
        169298433318322185,
        169298433318846515,
        169298433321992225,
        169298433324089478,
        169298433328283716,
        169298433340342284,
        169298433344012309,
        169298433344012336,
        169298433351876723,
        170094456251351059,
    ),
}

#: Categories that are subtraction artefacts: the stamp class they should get is bogus.
ARTEFACTS = ("dipole", "bullseye", "banding", "donut_residual", "neighbour_residual", "ghost", "edge")
#: Folders of the shared data's LSST alerts (schema versions).
LSST_FOLDERS = ("v7_4", "v9_0", "v10_0")


def load_real_lsst_alerts(shared_data: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The shared data's LSST alerts as the pipeline decodes them: (alerts with an ``eye`` column, stamps)."""
    root = Path(shared_data) / "lsst"
    files = [f for folder in LSST_FOLDERS for f in sorted((root / folder).glob("*.avro"))]
    if not files:
        raise FileNotFoundError(f"no LSST alerts under {root}")
    tables, dead, _ = decode_batch(
        [RawMessage("lsst-real", 0, i, f.read_bytes()) for i, f in enumerate(files)], "lsst-real"
    )
    if dead:
        raise ValueError(f"{len(dead)} real LSST alerts failed to decode: {dead[0].reason}")
    eye = {c: cat for cat, ids in EYE_CATEGORIES.items() for c in ids}
    alerts = tables.alerts.assign(eye=tables.alerts["candid"].map(eye))
    return alerts, tables.stamps


def eye_crosstab(classifier, shared_data: str | Path) -> pd.DataFrame:
    """Alerts per by-eye category (rows) and the class ``classifier`` gives them with its rules (columns)."""
    alerts, stamps = load_real_lsst_alerts(shared_data)
    proba = classifier.predict_proba(alerts, stamps)
    called = pd.Series(
        np.array(STAMP_CLASSES, dtype=object)[proba[list(STAMP_CLASSES)].to_numpy().argmax(axis=1)],
        index=proba.index,
    )
    eye = alerts.set_index("candid")["eye"].reindex(proba.index)
    table = pd.crosstab(eye.rename("eye"), called.rename("called"))
    return table.reindex(columns=list(STAMP_CLASSES), fill_value=0)


def eye_summary(table: pd.DataFrame) -> dict[str, float]:
    """Shares from :func:`eye_crosstab`: artefacts called bogus, clean sources called a real source (any class but
    bogus), trails called asteroid, and of the unknown "noise" detections the share called bogus."""

    def share(rows, cols) -> float:
        sub = table.reindex(index=[r for r in rows if r in table.index])
        total = sub.to_numpy().sum()
        return float(sub[list(cols)].to_numpy().sum() / total) if total else float("nan")

    return {
        "artefacts_called_bogus": share(ARTEFACTS, ["bogus"]),
        "clean_called_real": share(["clean_pos", "negative"], ["SN", "AGN", "VS", "asteroid"]),
        "trails_called_asteroid": share(["trail"], ["asteroid"]),
        "noise_called_bogus": share(["noise"], ["bogus"]),
    }
