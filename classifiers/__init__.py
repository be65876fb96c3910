"""Classifiers: the balanced hierarchical light-curve classifier, its outlier score, the model registry,
training on simulated (or user-labelled) light curves and evaluation."""

from alert_broker.classifiers.hierarchical import SENTINEL, HierarchicalClassifier
from alert_broker.classifiers.outlier import BranchOutlierScorer
from alert_broker.classifiers.registry import fingerprint, list_models, load, read_metadata, save, versions
from alert_broker.classifiers.taxonomy import (
    BRANCH_OF,
    BRANCHES,
    CLASSES,
    HIERARCHY,
    TAXONOMY_VERSION,
    normalise_labels,
    taxonomy_table,
)

__all__ = [
    "BRANCHES",
    "BRANCH_OF",
    "BranchOutlierScorer",
    "CLASSES",
    "HIERARCHY",
    "HierarchicalClassifier",
    "SENTINEL",
    "TAXONOMY_VERSION",
    "fingerprint",
    "list_models",
    "load",
    "normalise_labels",
    "read_metadata",
    "save",
    "taxonomy_table",
    "versions",
]
