"""The light-curve classifier's taxonomy: ALeRCE's 15 classes under three branches (Sánchez-Sáez et al. 2021).

One place names the classes so the model, the probability table, the registry metadata and the PostgreSQL
taxonomy table agree; the version is stored with every model so a renamed class cannot pass silently.
"""

from __future__ import annotations

import pandas as pd

#: Bump when a class is added, removed, renamed or moves between branches.
TAXONOMY_VERSION = "lc-taxonomy-1.0.0"

#: Branch -> its classes, in ALeRCE's display order.
HIERARCHY: dict[str, tuple[str, ...]] = {
    "Transient": ("SNIa", "SNIbc", "SNII", "SLSN"),
    "Stochastic": ("QSO", "AGN", "Blazar", "CV/Nova", "YSO"),
    "Periodic": ("LPV", "E", "DSCT", "RRL", "CEP", "Periodic-Other"),
}

BRANCHES: tuple[str, ...] = tuple(HIERARCHY)
CLASSES: tuple[str, ...] = tuple(c for classes in HIERARCHY.values() for c in classes)
BRANCH_OF: dict[str, str] = {c: b for b, classes in HIERARCHY.items() for c in classes}

#: Other spellings of our class names (ALeRCE's labelled sets say "Ceph" and "EB"; "CV" and "Nova" were merged).
ALIASES: dict[str, str] = {
    "Ceph": "CEP",
    "EB": "E",
    "EA": "E",
    "EW": "E",
    "CV": "CV/Nova",
    "Nova": "CV/Nova",
    "SNIb": "SNIbc",
    "SNIc": "SNIbc",
    "SNIIP": "SNII",
    "SNIIn": "SNII",
    "Periodic-other": "Periodic-Other",
}


def normalise_labels(labels: pd.Series) -> pd.Series:
    """Labels mapped onto :data:`CLASSES` (aliases resolved); anything else (asteroid, bogus, ...) becomes NA."""
    mapped = labels.astype("string").map(lambda s: ALIASES.get(s, s) if s is not pd.NA else s)
    return mapped.where(mapped.isin(CLASSES)).astype("string")


def branch_labels(labels: pd.Series) -> pd.Series:
    """The branch of each (normalised) class label; NA where the label is not one of :data:`CLASSES`."""
    return labels.astype("string").map(BRANCH_OF).astype("string")


def taxonomy_table() -> pd.DataFrame:
    """The taxonomy as rows for a PostgreSQL table / the lake: class_name, branch, position, taxonomy_version."""
    return pd.DataFrame(
        {
            "class_name": list(CLASSES),
            "branch": [BRANCH_OF[c] for c in CLASSES],
            "position": range(len(CLASSES)),
            "taxonomy_version": TAXONOMY_VERSION,
        }
    )


#: Columns of the PostgreSQL ``taxonomy`` table (storage.postgres.TABLES["taxonomy"]).
TAXONOMY_COLUMNS = (
    "classifier_name",
    "classifier_version",
    "class_name",
    "level",
    "parent",
    "ord",
    "taxonomy_version",
)


def flat_taxonomy_rows(name: str, version: str, classes, taxonomy_version: str) -> pd.DataFrame:
    """``taxonomy`` rows of a one-level classifier (e.g. the stamp CNN): level "class", no parent."""
    classes = [str(c) for c in classes]
    return pd.DataFrame(
        {
            "classifier_name": name,
            "classifier_version": version,
            "class_name": classes,
            "level": "class",
            "parent": None,
            "ord": pd.array(range(len(classes)), dtype="int16"),
            "taxonomy_version": taxonomy_version,
        },
        columns=list(TAXONOMY_COLUMNS),
    )


def taxonomy_rows(model, *, include_top: bool = True) -> pd.DataFrame:
    """``taxonomy`` rows of a light-curve model, one per class it stores probabilities for.

    Under ``model.name``: the 15 classes (level "class", parent = their branch, ord = display order). With
    ``include_top``, under ``<name>_top`` (the classifier name its branch probabilities are stored under): the
    three branches (level "branch", no parent). The hierarchy is the one saved with the model
    (``metadata["hierarchy"]``) when present, so an old model keeps describing the classes it predicts.
    """
    metadata = getattr(model, "metadata", None) or {}
    hierarchy = {b: tuple(c) for b, c in (metadata.get("hierarchy") or HIERARCHY).items()}
    version = str(model.version)
    tax_version = str(getattr(model, "taxonomy_version", None) or metadata.get("taxonomy_version"))
    classes = [(c, b) for b, cs in hierarchy.items() for c in cs]
    out = flat_taxonomy_rows(model.name, version, [c for c, _ in classes], tax_version)
    out["parent"] = [b for _, b in classes]
    if include_top:
        top = flat_taxonomy_rows(f"{model.name}_top", version, list(hierarchy), tax_version)
        out = pd.concat([out, top.assign(level="branch")], ignore_index=True)
    return out
