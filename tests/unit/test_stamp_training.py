"""Stamp classifier training: simulated first-alert sets, determinism, a tiny model that learns, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("keras")

from alert_broker.classifiers.stamp.dataset import build_stamp_set  # noqa: E402
from alert_broker.classifiers.stamp.evaluate import evaluate_arrays  # noqa: E402
from alert_broker.classifiers.stamp.metadata import DEFAULT_FEATURES, METADATA_SPEC  # noqa: E402
from alert_broker.classifiers.stamp.taxonomy import SIM_TO_STAMP, STAMP_CLASSES  # noqa: E402
from alert_broker.classifiers.stamp.training import fit_model, train_stamp_model, with_missing_metadata  # noqa: E402

NAMES = np.array(STAMP_CLASSES, dtype=object)


@pytest.fixture(scope="module")
def train_set():
    return build_stamp_set(3, 100)


@pytest.fixture(scope="module")
def test_set():
    return build_stamp_set(4, 60)


def test_sets_are_balanced_first_alerts_with_consistent_labels(train_set):
    assert train_set.counts() == {c: 100 for c in STAMP_CLASSES}
    f = train_set.frame
    assert f["oid"].is_unique and f["candid"].is_unique  # one (the first) alert per object
    assert (f["sim_class"].map(SIM_TO_STAMP) == NAMES[train_set.labels]).all()
    assert train_set.images.shape == (500, 21, 21, 3) and np.isfinite(train_set.images).all()
    assert train_set.metadata.shape == (500, len(DEFAULT_FEATURES))
    # every kind of object behind a class is there: SN subtypes, QSOs and AGN, several variable classes
    assert f.loc[f["class"] == "SN", "sim_class"].nunique() >= 3
    assert f.loc[f["class"] == "VS", "sim_class"].nunique() >= 5


def test_same_seed_same_set():
    a, b = build_stamp_set(9, 15), build_stamp_set(9, 15)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.metadata, b.metadata)
    assert a.frame["candid"].tolist() == b.frame["candid"].tolist()


def test_missing_metadata_copies_use_the_fills(train_set):
    aug = with_missing_metadata(train_set, 0.2, seed=1)
    extra = len(aug) - len(train_set)
    assert 60 < extra < 140  # ~20% of 500
    fill = np.array([METADATA_SPEC[f][0] for f in DEFAULT_FEATURES], dtype=np.float32)
    assert (aug.metadata[len(train_set) :] == fill).all()
    np.testing.assert_array_equal(aug.metadata[: len(train_set)], train_set.metadata)


def test_same_seed_same_weights_other_seed_other_weights(train_set):
    small = train_set.subset(np.arange(0, 500, 4))
    w1 = fit_model(small, seed=5, epochs=1).get_weights()
    w2 = fit_model(small, seed=5, epochs=1).get_weights()
    w3 = fit_model(small, seed=6, epochs=1).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2, strict=True))
    assert not all(np.array_equal(a, c) for a, c in zip(w1, w3, strict=True))


def test_tiny_model_beats_chance_clearly_on_a_held_out_simulation(train_set, test_set):
    model = fit_model(train_set, seed=1, epochs=8)
    res = evaluate_arrays(model, test_set.images, test_set.metadata, NAMES[test_set.labels], test_set.frame)
    assert res["cnn"].balanced_accuracy > 0.5  # chance is 0.2
    assert res["cnn+rules"].balanced_accuracy >= res["cnn"].balanced_accuracy - 0.02
    assert (
        res["cnn+rules"].per_class()["recall"]["asteroid"] == 1.0
    )  # every simulated asteroid is a known SSO


def test_train_stamp_model_saves_a_small_registered_model(tmp_path):
    result = train_stamp_model(seed=2, n_per_class=20, epochs=1, out_root=tmp_path, version="0.0.1")
    assert result.path == tmp_path / "stamp_classifier" / "0.0.1"
    md = json.loads((result.path / "metadata.json").read_text())
    assert md["classes"] == list(STAMP_CLASSES) and md["features"] == list(DEFAULT_FEATURES)
    assert md["training_counts"] == {c: 20 for c in STAMP_CLASSES}
    assert md["training"]["seed"] == 2 and len(md["training_fingerprint"]) == 64
    assert (result.path / "model.keras").stat().st_size < 2_000_000
    assert {"simulate", "train"} <= set(result.seconds)


def test_broker_train_stamp_is_registered_beside_train_lc():
    from alert_broker.classifiers.stamp.cli import cmd_train_stamp
    from alert_broker.pipeline.cli import build_parser

    args = build_parser().parse_args(["train", "stamp", "--n-per-class", "5", "--epochs", "1", "--seed", "4"])
    assert args.func is cmd_train_stamp and (args.n_per_class, args.epochs, args.seed) == (5, 1, 4)
    assert build_parser().parse_args(["train", "lc"]).func.__name__ == "cmd_train_lc"
