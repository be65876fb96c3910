"""Real labelled sets for scoring the light-curve classifier (all read in place from the shared data folder).

Every loader returns ``(features, labels)``: features indexed by oid (our feature names; a feature we cannot
compute is absent or NaN and becomes the model's -999), labels a string Series aligned with them, mapped onto the
15-class taxonomy (objects whose label has no counterpart are left out). ``features.attrs["notes"]`` says what
was approximated or dropped, so the evaluation report can print it beside the figures.

Where a set has light curves, features are computed by our own code, as the pipeline would: the alerts of the
SIMBAD set go through ``pipeline.decode`` and the region science of ``pipeline.tasks`` (correction, magstats,
object statistics, features); ALeRCE's CSV light curves through the same science from their detections. With
``alert_day`` a light curve is cut to what a single ZTF alert ``alert_day`` days after the first detection
carries (its 30-day history), the only light curve the streaming pipeline sees.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from alert_broker.classifiers.alerce import ALERCE_FEATURES_FILE, ALERCE_LABELS_FILE, alerce_feature_frame
from alert_broker.classifiers.hierarchical import as_oid_indexed
from alert_broker.classifiers.taxonomy import normalise_labels
from alert_broker.features import compute_features
from alert_broker.features.lightcurve.prepare import RB_MIN
from alert_broker.features.night import SITES, observing_night
from alert_broker.features.science import merge_pieces, science
from alert_broker.features.tables import Tables
from alert_broker.simulator.templates import Template, templates_from_table
from alert_broker.surveys.decode import decode_batch
from alert_broker.surveys.messages import RawMessage
from alert_broker.surveys.ztf import decode_packet

ALERCE_DIR = "lightcurves/alerce_labelled"
BTS_DIR = "lightcurves/ztf_bts_snia"
SIMBAD_DIR = "ztf/simbad_labelled"
#: Days of history a ZTF alert carries (prv_candidates).
ZTF_HISTORY_DAYS = 30.0
#: BTS photometry bands -> ZTF fid (i has no feature band and is dropped by the feature code).
BTS_BANDS = {"g": 1, "R": 2, "r": 2, "i": 3}

#: SIMBAD object types (Fink's ``cdsxmatch``) -> our classes. Only types that name one of the 15 classes
#: unambiguously; generic ones (Star, V*, EmObj, Radio, SN without subtype, ...) are left out. Weak labels:
#: SIMBAD types come from heterogeneous literature and a 1.5" match can pick a neighbour.
SIMBAD_CLASSES: dict[str, str] = {
    **dict.fromkeys(["QSO", "QSO_Candidate"], "QSO"),
    **dict.fromkeys(["AGN", "AGN_Candidate", "Seyfert", "Seyfert_1", "Seyfert_2", "LINER"], "AGN"),
    **dict.fromkeys(["Blazar", "Blazar_Candidate", "BLLac", "BLLac_Candidate"], "Blazar"),
    **dict.fromkeys(["CataclyV*", "Candidate_CV*", "Nova", "Candidate_Nova"], "CV/Nova"),
    **dict.fromkeys(["YSO", "Candidate_YSO", "TTau*", "Candidate_TTau*", "Orion_V*", "Ae*"], "YSO"),
    **dict.fromkeys(["Mira", "Candidate_Mi*", "LPV*", "Candidate_LP*"], "LPV"),
    **dict.fromkeys(["EB*", "Candidate_EB*", "EclBin"], "E"),
    **dict.fromkeys(["RRLyr", "Candidate_RRLyr"], "RRL"),
    **dict.fromkeys(
        ["Cepheid", "deltaCep", "cCepheid", "PulsV*WVir", "Type2Cep", "Candidate_Cepheid"], "CEP"
    ),
    **dict.fromkeys(["PulsV*delSct", "delSct", "pulsV*SX"], "DSCT"),
    **dict.fromkeys(
        ["EllipVar", "BYDra", "RSCVn", "RotV*", "alf2CVn", "gammaDor", "PulsV*bCep", "bCepV*"],
        "Periodic-Other",
    ),
}


def _with_notes(features: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    features.attrs["notes"] = list(notes)
    return features


def _aligned(features: pd.DataFrame, labels: pd.Series, notes: list[str]) -> tuple[pd.DataFrame, pd.Series]:
    """Keep objects that have both features and a taxonomy label; say how many were lost and why."""
    labels = labels.set_axis(labels.index.astype(str), axis=0)
    mapped = normalise_labels(labels)
    unmapped = sorted(set(labels[mapped.isna()].dropna().astype(str)))
    if unmapped:
        notes.append(
            f"{int(mapped.isna().sum())} labels outside the taxonomy left out: {', '.join(unmapped)}"
        )
    mapped = mapped.dropna()
    no_features = mapped.index.difference(features.index)
    if len(no_features):
        notes.append(
            f"{len(no_features)} of {len(mapped)} labelled objects have no features "
            "(< 6 clean detections in g and in r)"
        )
    common = features.index.intersection(mapped.index)
    feats = features.loc[common]
    return _with_notes(feats, notes), mapped.loc[common].rename("class")


# -- our features from light curves ---------------------------------------------------------------------
def features_from_detections(
    detections: pd.DataFrame, non_detections: pd.DataFrame, *, feature_version: str | None = None
) -> pd.DataFrame:
    """Correction, magstats, object statistics and features of contract tables, exactly as a pipeline region
    task computes them (``features.science``; its features step, under ``feature_version``), indexed by oid."""
    tables = merge_pieces([Tables(detections=detections, non_detections=non_detections)])
    state = science(tables, False)
    if state.detections.empty:
        return pd.DataFrame(index=pd.Index([], name="oid", dtype=str))
    feats = compute_features(
        state.detections, state.tables.non_detections, state.objects, feature_version=feature_version
    )
    if feats.empty:
        return pd.DataFrame(index=pd.Index([], name="oid", dtype=str))
    return as_oid_indexed(feats)


def alert_window(
    detections: pd.DataFrame, non_detections: pd.DataFrame, alert_day: float | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows a ZTF alert ``alert_day`` days after an object's first detection carries: detections and
    non-detections within the 30 days before it. ``None`` keeps the whole light curve."""
    if alert_day is None:
        return detections, non_detections
    end = detections.groupby("oid")["mjd"].min() + float(alert_day)

    def cut(df: pd.DataFrame) -> pd.DataFrame:
        e = df["oid"].map(end).to_numpy(dtype=float)
        t = df["mjd"].to_numpy(dtype=float)
        return df[(t <= e) & (t >= e - ZTF_HISTORY_DAYS)]

    return cut(detections), (cut(non_detections) if len(non_detections) else non_detections)


def _night(mjd: np.ndarray) -> np.ndarray:
    return observing_night(mjd, SITES["ztf"])


def _alerce_csv_tables(root: Path, stem: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ALeRCE's CSV detections/non-detections as contract tables (their correction dropped: ours is redone)."""
    det = pd.read_csv(root / ALERCE_DIR / f"{stem}_detections_corr.csv")
    theirs = ("magpsf_corr", "sigmapsf_corr", "sigmapsf_corr_ext", "corrected", "dubious", "step_id_corr")
    det = det.drop(columns=[c for c in theirs if c in det]).rename(columns={"objectId": "oid"})
    added = pd.DataFrame(
        {
            "isdiffpos": np.where(det.pop("isdiffpos").astype(float) > 0, 1, -1).astype(np.int8),
            "survey": "ztf",
            "night": _night(det["mjd"].to_numpy(dtype=float)),
        },
        index=det.index,
    )
    det = pd.concat([det, added], axis=1)  # one concat: the 110-column CSV frame would fragment otherwise
    nd = pd.read_csv(
        root / ALERCE_DIR / f"{stem}_non_detections.csv", usecols=["objectId", "jd", "fid", "diffmaglim"]
    )
    nd = nd.rename(columns={"objectId": "oid"})
    nd["mjd"] = nd.pop("jd") - 2400000.5
    nd["survey"] = "ztf"
    return det, nd


def alerce_sne(
    root: str | Path, *, alert_day: float | None = None, feature_version: str | None = None
) -> tuple[pd.DataFrame, pd.Series]:
    """ALeRCE's 30 spectroscopic SNe (19 SNIa, 8 SNIbc, 2 SLSN, 1 SNII): our features from their light curves."""
    root = Path(root)
    det, nd = alert_window(*_alerce_csv_tables(root, "30_sne"), alert_day)
    labels = pd.read_csv(root / ALERCE_DIR / "30_sne_labels.csv").set_index("objectId")["classALeRCE"]
    notes = ["features computed by our code from ALeRCE's detections (our correction redone)"]
    return _aligned(features_from_detections(det, nd, feature_version=feature_version), labels, notes)


def alerce_periodic(
    root: str | Path, *, alert_day: float | None = None, feature_version: str | None = None
) -> tuple[pd.DataFrame, pd.Series]:
    """ALeRCE's 25 periodic variables (5 each of CEP, DSCT, E (EA), LPV, RRL): our features from their light
    curves. Only corrected magnitudes ship (no reference-source columns), so they are used as given, with
    ``sigmapsf_corr`` standing in for ``sigmapsf_corr_ext``; no isdiffpos, no position, no sgscore1."""
    root = Path(root)
    lc = pd.read_parquet(root / ALERCE_DIR / "alerce_periodic_light_curves_25obj.parquet")
    det = lc.reset_index().rename(columns={"index": "oid"})
    det["corrected"] = np.isfinite(det["magpsf_corr"].to_numpy(dtype=float))
    det["sigmapsf_corr_ext"] = det["sigmapsf_corr"]
    det, _ = alert_window(det, det.iloc[0:0], alert_day)
    labels = pd.read_parquet(root / ALERCE_DIR / "alerce_periodic_light_curve_labels_25obj.parquet")
    notes = [
        "features computed by our code from ALeRCE's corrected magnitudes (sigmapsf_corr used as the "
        "extended-source error; no non-detections, positions, isdiffpos or sgscore1: those features are -999)"
    ]
    feats = as_oid_indexed(compute_features(det, None, feature_version=feature_version))
    return _aligned(feats, labels["classALeRCE"], notes)


def _sexagesimal(values: pd.Series, hours: bool) -> np.ndarray:
    """'08:29:47.59' / '+33:54:22.8' -> degrees."""
    parts = values.astype(str).str.strip().str.split(":", expand=True).astype(float)
    sign = np.where(values.astype(str).str.strip().str.startswith("-"), -1.0, 1.0)
    deg = parts[0].abs() + parts[1] / 60.0 + parts[2] / 3600.0
    return (sign * deg * (15.0 if hours else 1.0)).to_numpy()


def bts_light_curves(root: str | Path, limit: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The BTS SN Ia light curves as contract detections (magpsf = the published magnitude, isdiffpos +1,
    no reference source, so no correction) and the BTS metadata table indexed by oid."""
    root = Path(root) / BTS_DIR
    meta = pd.read_csv(root / "bts.csv").drop_duplicates("ZTFID").set_index("ZTFID")
    files = sorted((root / "light-curves").glob("*.csv"))[:limit]
    frames = []
    for f in files:  # one small CSV per object: reading is the only per-object step, the science is batched
        lc = pd.read_csv(f)
        lc.insert(0, "oid", f.stem)
        frames.append(lc)
    lc = pd.concat(frames, ignore_index=True)
    n = len(lc)
    oid = lc["oid"].to_numpy()
    ra = pd.Series(_sexagesimal(meta["RA"], hours=True), index=meta.index)
    dec = pd.Series(_sexagesimal(meta["Dec"], hours=False), index=meta.index)
    mjd = lc["time"].to_numpy(dtype=float)
    det = pd.DataFrame(
        {
            "oid": oid,
            "candid": np.arange(n, dtype=np.int64),
            "survey": "ztf",
            "mjd": mjd,
            "night": _night(mjd),
            "fid": lc["band"].map(BTS_BANDS).fillna(0).astype(np.int16).to_numpy(),
            "ra": pd.Series(oid).map(ra).to_numpy(dtype=float),
            "dec": pd.Series(oid).map(dec).to_numpy(dtype=float),
            "magpsf": lc["mag"].to_numpy(dtype=float),
            "sigmapsf": lc["magerr"].to_numpy(dtype=float),
            "isdiffpos": np.ones(n, dtype=np.int8),
            **{c: np.full(n, np.nan) for c in ("distnr", "magnr", "sigmagnr", "chinr", "sharpnr")},
            **{c: np.full(n, np.nan) for c in ("sgscore1", "distpsnr1", "rb", "rfid")},
        }
    )
    return det, meta


def bts(
    root: str | Path,
    *,
    alert_day: float | None = None,
    limit: int | None = None,
    feature_version: str | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """The ZTF Bright Transient Survey SNe Ia (2289 light curves; every type "SN Ia*" -> SNIa)."""
    det, meta = bts_light_curves(root, limit)
    nd = pd.DataFrame({"oid": pd.Series(dtype=str), "fid": pd.Series(dtype=np.int16)})
    nd = nd.assign(mjd=pd.Series(dtype=float), diffmaglim=pd.Series(dtype=float), survey=pd.Series(dtype=str))
    det, nd = alert_window(det, nd, alert_day)
    types = meta["type"].reindex(sorted(set(det["oid"])))
    labels = types.where(~types.astype(str).str.startswith("SN Ia"), "SNIa")
    notes = [
        "all BTS types 'SN Ia*' (91T, 91bg, pec, Iax, CSM, ...) are SNIa",
        "detections only: no non-detections, rb, sgscore1 or reference source, so no correction and the "
        "non-detection, rb and sgscore1 features are -999",
    ]
    return _aligned(features_from_detections(det, nd, feature_version=feature_version), labels, notes)


def simbad(
    root: str | Path, *, alert_day: float | None = None, feature_version: str | None = None
) -> tuple[pd.DataFrame, pd.Series]:
    """Fink's SIMBAD-labelled ZTF alerts (weak labels via :data:`SIMBAD_CLASSES`): decoded by the broker's
    decoder, light curves from the alerts and their histories, features by the pipeline's science."""
    folder = Path(root) / SIMBAD_DIR
    messages, label = [], {}
    for i, f in enumerate(sorted(folder.glob("*.avro"))):
        payload = f.read_bytes()
        messages.append(RawMessage("simbad", 0, i, payload, f.name))
        for rec in decode_packet(payload):
            label[rec["objectId"]] = rec.get("cdsxmatch")
    tables, dead, _ = decode_batch(messages, "real-simbad")
    if dead:
        raise ValueError(f"SIMBAD-labelled alerts failed to decode: {dead[0].reason}")
    det, nd = alert_window(tables.detections, tables.non_detections, alert_day)
    raw = pd.Series(label, name="cdsxmatch")
    mapped = raw.map(SIMBAD_CLASSES)
    notes = [
        f"{len(raw)} objects; SIMBAD types mapped with classifiers.real_sets.SIMBAD_CLASSES, "
        f"{int(mapped.isna().sum())} with a type that names no class of the taxonomy left out"
    ]
    return _aligned(
        features_from_detections(det, nd, feature_version=feature_version), mapped.dropna(), notes
    )


# -- ALeRCE's own feature vectors -------------------------------------------------------------------------
def alerce_labelled(root: str | Path) -> tuple[pd.DataFrame, pd.Series]:
    """ALeRCE's 98 labelled objects with ALeRCE's feature vectors (their light curves are not shipped)."""
    root = Path(root)
    raw = pd.read_csv(root / ALERCE_DIR / "100_objects_features.csv").set_index("objectId")
    feats, notes = alerce_feature_frame(raw)
    labels = pd.read_csv(root / ALERCE_DIR / "100_objects_labels.csv").set_index("objectId")["classALeRCE"]
    return _aligned(feats, labels, notes)


def alerce_features(root: str | Path) -> tuple[pd.DataFrame, pd.Series]:
    """ALeRCE's 150 labelled feature vectors (10 per class; an older feature version, renamed onto ours)."""
    root = Path(root)
    feats, notes = alerce_feature_frame(pd.read_parquet(root / ALERCE_FEATURES_FILE))
    labels = pd.read_parquet(root / ALERCE_LABELS_FILE)["classALeRCE"]
    return _aligned(feats, labels, notes)


#: Name -> (loader, one-line description). Loaders of light-curve sets accept ``alert_day``.
S82_DIR = "lightcurves/sdss_s82_rrlyrae"


def s82_light_curves(root: str | Path) -> tuple[pd.DataFrame, pd.Series]:
    """SDSS Stripe 82 RR Lyrae (Sesar et al. 2010) as detections in g (fid 1) and r (fid 2), oid ``S82-<Num>``,
    and their catalogue periods by oid."""
    folder = Path(root) / S82_DIR
    periods = pd.read_csv(folder / "periods.csv")
    periods = pd.Series(periods["Per"].to_numpy(dtype=float), index="S82-" + periods["Num"].astype(str))
    frames = []
    for f in sorted((folder / "light-curves").glob("*.csv")):
        lc = pd.read_csv(f)
        lc = lc[lc["band"].isin(["g", "r"])]
        frames.append(
            pd.DataFrame(
                {
                    "oid": f"S82-{f.stem}",
                    "mjd": lc["time"].to_numpy(dtype=float),
                    "fid": lc["band"].map({"g": 1, "r": 2}).to_numpy(dtype=np.int16),
                    "magpsf": lc["mag"].to_numpy(dtype=float),
                    "sigmapsf": lc["magerr"].to_numpy(dtype=float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True), periods


def s82_rrlyrae(
    root: str | Path, *, alert_day: float | None = None, feature_version: str | None = None
) -> tuple[pd.DataFrame, pd.Series]:
    """The 483 SDSS Stripe 82 RR Lyrae (Sesar et al. 2010; g and r as fid 1 and 2, our features): one class,
    RRL, so its figure is the RRL recall. SDSS light curves (~50 epochs per band over ~8 years), not ZTF's:
    ``alert_day`` cuts them like a ZTF alert's history all the same."""
    det, _ = s82_light_curves(root)
    det, _ = alert_window(det, pd.DataFrame(), alert_day)
    det = det.assign(isdiffpos=1, corrected=False)
    notes = [
        "features computed by our code from the SDSS g and r light curves (no non-detections, rb, sgscore1, "
        "positions or isdiffpos: those features are -999); every star labelled RRL"
    ]
    feats = as_oid_indexed(compute_features(det, None, feature_version=feature_version))
    return _aligned(feats, pd.Series("RRL", index=feats.index), notes)


REAL_SETS: dict[str, tuple[Callable, str]] = {
    "alerce_sne": (alerce_sne, "ALeRCE's 30 spectroscopic SNe (our features from their light curves)"),
    "alerce_labelled": (alerce_labelled, "ALeRCE's 98 labelled objects (ALeRCE's feature vectors)"),
    "alerce_periodic": (alerce_periodic, "ALeRCE's 25 periodic variables (our features)"),
    "alerce_features": (alerce_features, "ALeRCE's 150 labelled feature vectors, 10 per class"),
    "bts": (bts, "ZTF Bright Transient Survey SNe Ia (our features from their light curves)"),
    "simbad": (simbad, "SIMBAD-labelled ZTF alerts, weak labels (our decoder and features)"),
    "s82_rrlyrae": (
        s82_rrlyrae,
        "SDSS Stripe 82 RR Lyrae, 483 stars (our features from SDSS g, r light curves)",
    ),
}
LIGHT_CURVE_SETS = ("alerce_sne", "alerce_periodic", "bts", "simbad", "s82_rrlyrae")


def load_real_set(
    name: str, root: str | Path, *, alert_day: float | None = None, feature_version: str | None = None
) -> tuple[pd.DataFrame, pd.Series]:
    """One of :data:`REAL_SETS` by name (light-curve sets: our features under ``feature_version``, default the
    current one; ALeRCE's vector sets are what they are)."""
    if name not in REAL_SETS:
        raise ValueError(f"unknown real set {name!r}; known: {', '.join(REAL_SETS)}")
    loader = REAL_SETS[name][0]
    if name in LIGHT_CURVE_SETS:
        return loader(root, alert_day=alert_day, feature_version=feature_version)
    return loader(root)


# -- real light curves as simulator templates ------------------------------------------------------------
def periodic_templates(root: str | Path, *, include_s82: bool = True) -> list[Template]:
    """Templates of the labelled real periodic variables: ALeRCE's 25 (total magnitudes ``magpsf_corr``; period
    the catalogue's, else our ``Multiband_period``) and the 483 Stripe 82 RR Lyrae (catalogue periods)."""
    root = Path(root)
    lc = pd.read_parquet(root / ALERCE_DIR / "alerce_periodic_light_curves_25obj.parquet")
    det = lc.reset_index().rename(columns={"index": "oid"})
    det = det[~(det["rb"] < RB_MIN)] if "rb" in det else det
    lab = pd.read_parquet(root / ALERCE_DIR / "alerce_periodic_light_curve_labels_25obj.parquet")
    labels = normalise_labels(lab["classALeRCE"])
    period = pd.to_numeric(lab["period"], errors="coerce")
    measured = as_oid_indexed(
        compute_features(det.assign(sigmapsf_corr_ext=det["sigmapsf_corr"], corrected=True), None)
    )["Multiband_period"]
    period = period.fillna(measured.reindex(period.index))
    out = templates_from_table(
        det, labels, "periodic", periods=period, mag="magpsf_corr", err="sigmapsf_corr"
    )
    if include_s82:
        s82, s82_periods = s82_light_curves(root)
        out += templates_from_table(
            s82, pd.Series("RRL", index=s82_periods.index), "periodic", periods=s82_periods
        )
    return out


def transient_templates(root: str | Path, *, include_bts: bool = True) -> list[Template]:
    """Templates of the labelled real supernovae: ALeRCE's 30 spectroscopic SNe (positive detections,
    difference magnitudes) and the BTS SNe Ia (with their redshifts)."""
    root = Path(root)
    det, _ = _alerce_csv_tables(root, "30_sne")
    det = det[(det["isdiffpos"] > 0) & ~(det["rb"] < RB_MIN)]
    labels = normalise_labels(
        pd.read_csv(root / ALERCE_DIR / "30_sne_labels.csv").set_index("objectId")["classALeRCE"]
    )
    out = templates_from_table(det, labels, "transient")
    if include_bts:
        bdet, meta = bts_light_curves(root)
        types = meta["type"].astype(str)
        blabels = normalise_labels(types.where(~types.str.startswith("SN Ia"), "SNIa"))
        z = pd.to_numeric(meta["redshift"], errors="coerce")
        out += templates_from_table(bdet[bdet["fid"].isin([1, 2])], blabels, "transient", redshifts=z)
    return out
