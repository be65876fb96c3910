"""Scoring the stamp classifier: a held-out simulation (another seed) and ALeRCE's 51 labelled real stamps.

Figures: balanced accuracy (mean per-class recall, the paper's headline metric), macro F1, per-class precision
and recall, and the confusion matrix (rows = true class, columns = predicted), each for the network alone and
with the business rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_recall_fscore_support

from alert_broker.classifiers.stamp.dataset import build_stamp_set
from alert_broker.classifiers.stamp.inference import first_alert_mask
from alert_broker.classifiers.stamp.metadata import DEFAULT_FEATURES, sky_latitudes
from alert_broker.classifiers.stamp.rules import (
    DEFAULT_RULES,
    Rule,
    apply_rules,
    known_solar_system_object,
    numeric_column,
)
from alert_broker.classifiers.stamp.taxonomy import STAMP_CLASSES, stamp_labels
from alert_broker.surveys.decode import decode_batch
from alert_broker.surveys.messages import RawMessage
from alert_broker.surveys.ztf import decode_packet

#: The labelled real stamps in the shared data (ALeRCE's examples), and which carry alert metadata.
REAL_STAMP_FILES = {
    "alerce_stamp_small_test_with_features_metadata_21.parquet": True,
    "alerce_stamp_small_dataset_30.parquet": False,
    "alerce_stamp_single_1.parquet": False,
}


@dataclass
class StampEvaluation:
    """True and predicted stamp classes of one labelled set."""

    y_true: np.ndarray  # class names
    y_pred: np.ndarray

    @property
    def labels(self) -> list[str]:
        """The classes present in the truth, in STAMP_CLASSES order (a class never true cannot be recalled)."""
        return [c for c in STAMP_CLASSES if (self.y_true == c).any()]

    @property
    def balanced_accuracy(self) -> float:
        return float(balanced_accuracy_score(self.y_true, self.y_pred)) if len(self.y_true) else float("nan")

    @property
    def macro_f1(self) -> float:
        return float(f1_score(self.y_true, self.y_pred, labels=self.labels, average="macro", zero_division=0))

    def confusion(self) -> pd.DataFrame:
        """Counts: rows true class, columns predicted class (all five)."""
        t = pd.Categorical(self.y_true, categories=STAMP_CLASSES)
        p = pd.Categorical(self.y_pred, categories=STAMP_CLASSES)
        return pd.crosstab(t, p, dropna=False).rename_axis(index="true", columns="predicted")

    def per_class(self) -> pd.DataFrame:
        prec, rec, f1, n = precision_recall_fscore_support(
            self.y_true, self.y_pred, labels=list(STAMP_CLASSES), zero_division=0
        )
        return pd.DataFrame({"precision": prec, "recall": rec, "f1": f1, "n": n}, index=list(STAMP_CLASSES))

    def summary(self) -> dict:
        return {
            "n": int(len(self.y_true)),
            "balanced_accuracy": self.balanced_accuracy,
            "macro_f1": self.macro_f1,
            "recall": {c: float(r) for c, r in self.per_class()["recall"].items() if c in self.labels},
            "confusion": self.confusion().to_dict(orient="index"),
        }


def _predict(model, images: np.ndarray, metadata: np.ndarray) -> np.ndarray:
    """Softmax outputs of a StampClassifier or a bare Keras model, in batches."""
    if hasattr(model, "predict_arrays"):
        return model.predict_arrays(images, metadata)
    out = [
        np.asarray(model({"image": images[s : s + 1024], "metadata": metadata[s : s + 1024]}, training=False))
        for s in range(0, len(images), 1024)
    ]
    return np.concatenate(out) if out else np.zeros((0, len(STAMP_CLASSES)))


def evaluate_arrays(
    model,
    images,
    metadata,
    y_true,
    alerts: pd.DataFrame | None = None,
    rules: tuple[Rule, ...] = DEFAULT_RULES,
) -> dict[str, StampEvaluation]:
    """{"cnn": network alone, "cnn+rules": after the business ``rules`` (needs ``alerts`` rows aligned)}."""
    p = pd.DataFrame(_predict(model, images, metadata), columns=list(STAMP_CLASSES))
    names = np.array(STAMP_CLASSES, dtype=object)
    out = {"cnn": StampEvaluation(np.asarray(y_true, dtype=object), names[p.to_numpy().argmax(axis=1)])}
    if alerts is not None:
        pr = apply_rules(p, alerts.reset_index(drop=True), rules)
        out["cnn+rules"] = StampEvaluation(
            np.asarray(y_true, dtype=object), names[pr.to_numpy().argmax(axis=1)]
        )
    return out


@dataclass
class SimulationEvaluation:
    seed: int
    n_per_class: int
    results: dict[str, StampEvaluation]

    def summary(self) -> dict:
        return {
            "heldout_seed": self.seed,
            "heldout_n_per_class": self.n_per_class,
            **{f"{k}": v.summary() for k, v in self.results.items()},
        }


def evaluate_on_simulation(
    model,
    seed: int,
    n_per_class: int,
    features: tuple[str, ...] = DEFAULT_FEATURES,
    survey: str = "ztf",
    rules: tuple[Rule, ...] = DEFAULT_RULES,
) -> SimulationEvaluation:
    """Score ``model`` on a fresh balanced simulation of ``survey`` (use a seed the model was not trained on),
    without and with the business ``rules``."""
    data = build_stamp_set(seed, n_per_class, features, survey=survey)
    names = np.array(STAMP_CLASSES, dtype=object)[data.labels]
    return SimulationEvaluation(
        seed, n_per_class, evaluate_arrays(model, data.images, data.metadata, names, data.frame, rules)
    )


def load_real_stamps(shared_data: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ALeRCE's labelled real stamps as (alerts, stamps) tables in the contract's column names: one row per
    object (the single-stamp file repeats an object of the 30), a made-up ``candid`` (0..n-1; the files have
    none), ``class`` (stamp class) and ``has_metadata`` (only the 21-alert file carries alert fields)."""
    root = Path(shared_data) / "stamps"
    frames = []
    for fname, has_meta in REAL_STAMP_FILES.items():
        path = root / fname
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (the shared data's labelled stamps)")
        df = pd.read_parquet(path)
        df["has_metadata"] = has_meta
        df["source_file"] = fname
        frames.append(df)
    df = pd.concat(frames, ignore_index=True).drop_duplicates("oid", keep="first").reset_index(drop=True)
    df["candid"] = np.arange(len(df), dtype=np.int64)
    df["class"] = stamp_labels(df["class"])
    df["mjd"] = 0.0
    stamps = pd.DataFrame(
        {
            "oid": df["oid"].astype("string"),
            "candid": df["candid"],
            "cutout_science": df["cutoutScience"],
            "cutout_template": df["cutoutTemplate"],
            "cutout_difference": df["cutoutDifference"],
        }
    )
    alerts = df.drop(columns=["cutoutScience", "cutoutTemplate", "cutoutDifference"])
    return alerts, stamps


#: SIMBAD types (Fink's ``cdsxmatch``) of ``ztf/simbad_labelled`` -> stamp classes: weak labels (a 1.5" match,
#: heterogeneous literature). Extragalactic nuclear sources are AGN, supernovae SN, stars of any kind VS (a point
#: source in the reference that varies); types that name no kind of source (Unknown, UV, IR, Radio, EmObj, Blue,
#: PN, clusters, lenses, Fail, ...) are left out.
SIMBAD_STAMP_CLASSES: dict[str, str] = {
    **dict.fromkeys(
        ["QSO", "QSO_Candidate", "AGN", "AGN_Candidate", "Seyfert", "Seyfert_1", "Seyfert_2", "LINER",
         "Blazar", "Blazar_Candidate", "BLLac", "BLLac_Candidate"],
        "AGN",
    ),
    **dict.fromkeys(["SN", "Candidate_SN*"], "SN"),
}  # fmt: skip
_SIMBAD_STAR_HINTS = ("*", "V*", "Var", "Cepheid", "RRLyr", "Mira", "EllipVar", "BYDra", "RSCVn", "gammaDor",
                      "delSct", "HotSubdwarf", "Candidate_Hsd", "YSO", "Orion", "TTau", "XB", "OH/IR", "Ae")  # fmt: skip
_SIMBAD_NOT_STARS = ("Cl*", "GlCl?", "Candidate_SN*", "PN", "PN?")


def simbad_stamp_class(cds: str | None) -> str | None:
    """Stamp class of a SIMBAD type (see :data:`SIMBAD_STAMP_CLASSES`); stars of any kind -> VS; else None."""
    if cds is None:
        return None
    if cds in SIMBAD_STAMP_CLASSES:
        return SIMBAD_STAMP_CLASSES[cds]
    if cds in _SIMBAD_NOT_STARS:
        return None
    return "VS" if any(h in cds for h in _SIMBAD_STAR_HINTS) else None


def load_simbad_stamps(shared_data: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The SIMBAD-labelled real alerts (``ztf/simbad_labelled``, Fink's cross-match) as (alerts, stamps) with a
    ``class`` column (weak stamp labels, :func:`simbad_stamp_class`) and ``cdsxmatch``; alerts whose type names
    no stamp class are left out. Not first alerts: most carry a history (ndethist 2-100+)."""
    folder = Path(shared_data) / "ztf" / "simbad_labelled"
    messages, cds = [], {}
    for i, f in enumerate(sorted(folder.glob("*.avro"))):
        payload = f.read_bytes()
        messages.append(RawMessage("simbad", 0, i, payload, f.name))
        for rec in decode_packet(payload):
            cds[int(rec["candid"])] = rec.get("cdsxmatch")
    tables, dead, _ = decode_batch(messages, "real-simbad-stamps")
    if dead:
        raise ValueError(f"SIMBAD-labelled alerts failed to decode: {dead[0].reason}")
    alerts = tables.alerts.copy()
    alerts["cdsxmatch"] = alerts["candid"].astype(np.int64).map(cds)
    alerts["class"] = alerts["cdsxmatch"].map(simbad_stamp_class)
    keep = alerts["class"].notna().to_numpy()
    alerts = alerts[keep].reset_index(drop=True)
    stamps = tables.stamps[tables.stamps["candid"].isin(alerts["candid"])].reset_index(drop=True)
    return alerts, stamps


def evaluate_real_stamps(classifier, shared_data: str | Path) -> dict[str, dict[str, StampEvaluation]]:
    """Score a :class:`~classifiers.stamp.inference.StampClassifier` on the 51 real stamps: all of them, the 21
    with alert metadata, and the 30 with stamps only (their metadata are the fills)."""
    alerts, stamps = load_real_stamps(shared_data)
    raw = classifier.predict_proba(alerts, stamps, rules=None)
    ruled = classifier.predict_proba(alerts, stamps)
    truth = alerts.set_index("candid").loc[raw.index]
    names = np.array(STAMP_CLASSES, dtype=object)
    out = {}
    for label, rows in (
        ("all", np.ones(len(truth), dtype=bool)),
        ("with metadata", truth["has_metadata"].to_numpy(dtype=bool)),
        ("stamps only", ~truth["has_metadata"].to_numpy(dtype=bool)),
    ):
        y = truth["class"].to_numpy(dtype=object)[rows]
        out[label] = {
            "cnn": StampEvaluation(y, names[raw[list(STAMP_CLASSES)].to_numpy()[rows].argmax(axis=1)]),
            "cnn+rules": StampEvaluation(
                y, names[ruled[list(STAMP_CLASSES)].to_numpy()[rows].argmax(axis=1)]
            ),
        }
    return out


#: The realistic sample: 1166 real ZTF alerts (the default ``make run-night`` source).
REAL_NIGHT_DIR = "ztf/fink_sample_1166"


def known_sso(alerts: pd.DataFrame, max_dist_arcsec: float = 5.0) -> np.ndarray:
    """Whether ZTF matched a known solar-system object within ``max_dist_arcsec`` (the rule's test, ``rules.py``:
    0 <= ssdistnr <= 5" and a non-null ssnamenr)."""
    zero = pd.DataFrame(0.0, index=range(len(alerts)), columns=list(STAMP_CLASSES))
    hit = known_solar_system_object(zero, alerts.reset_index(drop=True), max_dist_arcsec)
    return hit["asteroid"].to_numpy() == 1.0


#: |ecliptic latitude| below which an asteroid call counts as "near the ecliptic" in the shares below [deg]
#: (90 % of the known solar-system objects of the realistic sample lie within it).
NEAR_ECLIPTIC_DEG = 20.0


def placeholder_metadata(alerts: pd.DataFrame) -> np.ndarray:
    """Alerts of the realistic sample whose metadata Fink's test data replaced (329 of 1166, from one night:
    distpsnr1 = 120, neargaia = 300 and ssdistnr = 60, at six positions each shared by dozens of objects;
    docs/simulator.md): their sky position, and so their ecliptic latitude, and their solar-system match say
    nothing about them. Their cutouts are real."""
    return (
        (numeric_column(alerts, "distpsnr1") == 120.0)
        & (numeric_column(alerts, "neargaia") == 300.0)
        & (numeric_column(alerts, "ssdistnr") == 60.0)
    )


def real_night_tables(shared_data: str | Path):
    """The realistic sample (:data:`REAL_NIGHT_DIR`) decoded as the pipeline decodes it."""
    folder = Path(shared_data) / REAL_NIGHT_DIR
    messages = [
        RawMessage("real", 0, i, f.read_bytes(), f.name) for i, f in enumerate(sorted(folder.glob("*.avro")))
    ]
    tables, _, _ = decode_batch(messages, "real-night")
    return tables


def hidden_sso_recall(classifier, shared_data: str | Path) -> dict:
    """Real asteroids with ZTF's match hidden: every alert of the realistic sample whose known solar-system
    object ZTF matched (:func:`known_sso`), shown to ``classifier`` with ``ssdistnr = -999`` and no name, so that
    no rule can use the catalogue; the share called asteroid is its recall on real asteroids, as it would be on
    unknown ones like them. No shipped model trained on these alerts."""
    tables = real_night_tables(shared_data)
    alerts = tables.alerts[known_sso(tables.alerts)].reset_index(drop=True)
    alerts["ssdistnr"] = -999.0
    alerts["ssnamenr"] = None
    proba = classifier.predict_proba(alerts, tables.stamps)
    called = np.array(STAMP_CLASSES, dtype=object)[proba[list(STAMP_CLASSES)].to_numpy().argmax(axis=1)]
    return {
        "n": int(len(called)),
        "called": {c: int((called == c).sum()) for c in STAMP_CLASSES},
        "asteroid_recall": round(float(np.mean(called == "asteroid")), 4) if len(called) else None,
    }


def real_night_asteroid_shares(classifier, shared_data: str | Path) -> dict:
    """How a :class:`~classifiers.stamp.inference.StampClassifier` calls the first alerts of the new objects of
    the 1166 real alerts (``ztf/fink_sample_1166``; first as the pipeline decides it,
    ``inference.first_alert_mask`` with the alerts' own histories), with the model's rules: the share called
    asteroid, split by whether ZTF matched a known solar-system object near (:func:`known_sso`) and by history
    (ndethist <= 1: no earlier detection at that position) and, for the alerts whose position is real
    (:func:`placeholder_metadata`), by ecliptic latitude (within :data:`NEAR_ECLIPTIC_DEG` or beyond: real
    asteroids keep near the ecliptic)."""
    tables = real_night_tables(shared_data)
    alerts = tables.alerts[first_alert_mask(tables.alerts, tables.detections)].reset_index(drop=True)
    proba = classifier.predict_proba(alerts, tables.stamps)
    al = alerts.set_index("candid").loc[proba.index]
    called = np.array(STAMP_CLASSES, dtype=object)[proba[list(STAMP_CLASSES)].to_numpy().argmax(axis=1)]
    sso = known_sso(al.reset_index())
    nhist = pd.to_numeric(al.get("ndethist", pd.Series(np.nan, index=al.index)), errors="coerce").to_numpy()
    ast = called == "asteroid"
    ecl, _ = sky_latitudes(
        pd.to_numeric(al["ra"], errors="coerce").to_numpy(dtype=np.float64),
        pd.to_numeric(al["dec"], errors="coerce").to_numpy(dtype=np.float64),
    )
    fake = placeholder_metadata(al)
    near = (np.abs(ecl) < NEAR_ECLIPTIC_DEG) & ~fake
    far = (np.abs(ecl) >= NEAR_ECLIPTIC_DEG) & ~fake
    out = {
        "new_objects": int(len(al)),
        "called": {c: int((called == c).sum()) for c in STAMP_CLASSES},
        "asteroid": int(ast.sum()),
        "with_known_sso": int(sso.sum()),
        "asteroid_with_known_sso": int((ast & sso).sum()),
        "without_known_sso": int((~sso).sum()),
        "asteroid_without_known_sso": int((ast & ~sso).sum()),
        "asteroid_without_known_sso_no_history": int((ast & ~sso & (nhist <= 1)).sum()),
        "without_known_sso_near_ecliptic": int((~sso & near).sum()),
        "asteroid_without_known_sso_near_ecliptic": int((ast & ~sso & near).sum()),
        "without_known_sso_far_from_ecliptic": int((~sso & far).sum()),
        "asteroid_without_known_sso_far_from_ecliptic": int((ast & ~sso & far).sum()),
        "placeholder_metadata": int(fake.sum()),
        "asteroid_placeholder_metadata": int((ast & fake).sum()),
    }
    out["asteroid_share"] = round(out["asteroid"] / max(out["new_objects"], 1), 4)
    out["asteroid_share_without_known_sso"] = round(
        out["asteroid_without_known_sso"] / max(out["without_known_sso"], 1), 4
    )
    return out


def confusion_markdown(ev: StampEvaluation) -> str:
    """The confusion matrix as a Markdown table (rows true, columns predicted)."""
    cm = ev.confusion()
    head = "| true \\ predicted | " + " | ".join(cm.columns) + " | recall |"
    sep = "|---" * (len(cm.columns) + 2) + "|"
    rec = ev.per_class()["recall"]
    rows = [
        f"| {t} | " + " | ".join(str(int(v)) for v in cm.loc[t]) + f" | {rec[t]:.3f} |"
        for t in cm.index
        if cm.loc[t].sum() > 0
    ]
    return "\n".join([head, sep, *rows])
