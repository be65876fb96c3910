"""``--stamp-model``: one stamp classifier per survey, ``auto`` taking those the registry has."""

from __future__ import annotations

import json

import pytest

from alert_broker.pipeline.config import load_settings
from alert_broker.pipeline.driver import stamp_models


def _registry(root, models: dict[str, dict[str, str | None]]):
    """Metadata-only model versions: {name: {version: survey or None (a model before the field)}}."""
    for name, vs in models.items():
        for version, survey in vs.items():
            d = root / name / version
            d.mkdir(parents=True)
            (d / "metadata.json").write_text(json.dumps({} if survey is None else {"survey": survey}))
            (d / "model.keras").write_bytes(b"")


def _names(root, spec: str) -> list[tuple[str, str]]:
    settings = load_settings(env={}, overrides={"models": str(root), "stamp_model": spec})
    return [(m.name, m.version) for m in stamp_models(settings)]


def test_auto_runs_the_latest_of_each_survey_model_the_registry_has(tmp_path):
    _registry(
        tmp_path,
        {"stamp_classifier": {"1.1.0": None, "1.4.0": None}, "stamp_classifier_lsst": {"1.0.0": "lsst"}},
    )
    assert _names(tmp_path, "auto") == [("stamp_classifier", "1.4.0"), ("stamp_classifier_lsst", "1.0.0")]
    assert _names(tmp_path, "stamp_classifier:1.1.0") == [("stamp_classifier", "1.1.0")]
    assert _names(tmp_path, "stamp_classifier_lsst") == [("stamp_classifier_lsst", "1.0.0")]
    assert _names(tmp_path, "none") == []


def test_auto_without_the_lsst_model_runs_ztf_alone_and_without_any_says_what_to_do(tmp_path):
    _registry(tmp_path / "a", {"stamp_classifier": {"1.4.0": None}})
    assert _names(tmp_path / "a", "auto") == [("stamp_classifier", "1.4.0")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no model 'stamp_classifier'.*--stamp-model none"):
        _names(tmp_path / "empty", "auto")


def test_two_models_of_one_survey_are_refused(tmp_path):
    _registry(tmp_path, {"stamp_classifier": {"1.1.0": None, "1.4.0": "ztf"}, "other": {"1.0.0": "lsst"}})
    assert _names(tmp_path, "stamp_classifier:1.1.0,other") == [
        ("stamp_classifier", "1.1.0"),
        ("other", "1.0.0"),
    ]
    with pytest.raises(ValueError, match="both classify ztf alerts"):
        _names(tmp_path, "stamp_classifier:1.1.0,stamp_classifier:1.4.0")
