"""Feature versions: the pipeline computes the magnitude features of the version its light-curve classifier was
trained on (a model's metadata names it), and both versions stay computable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alert_broker.classifiers.registry import read_metadata
from alert_broker.features.lightcurve import (
    FEATURE_VERSION,
    FEATURE_VERSIONS,
    LEGACY_FEATURE_VERSIONS,
    NEWER_FEATURE_VERSIONS,
    compute_features,
)
from alert_broker.features.tables import Tables
from alert_broker.models import shipped_models
from alert_broker.pipeline.driver import DEFAULT_LC_MODELS, magnitude_feature_version, resolve_model
from alert_broker.pipeline.resources import LakeSpec, ModelSpec, WorkerResources
from alert_broker.pipeline.steps import REGION_STEPS, PipelineState, RegionConfig, StepContext, run_steps


def _light_curve(oid: str = "o", n: int = 30, rb=0.9) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    t = np.sort(58300 + rng.uniform(0, 200, n))
    return pd.DataFrame(
        {
            "oid": oid,
            "candid": np.arange(n),
            "mjd": t,
            "fid": np.tile([1, 2], n)[:n],
            "magpsf": 17 + 0.3 * np.sin(2 * np.pi * t / 0.61),
            "sigmapsf": 0.02,
            "isdiffpos": 1,
            "rb": rb,
            "ra": 10.0,
            "dec": 5.0,
            "distnr": 5.0,  # no reference source near: not corrected
            "magnr": 20.0,
            "sigmagnr": 0.05,
            "chinr": 1.0,
            "sharpnr": 0.0,
            "sgscore1": 0.5,
            "distpsnr1": 1.0,
            "survey": "ztf",
            "night": 20180701,
            "rfid": 1,
        }
    )


def test_both_versions_compute_and_say_which():
    assert FEATURE_VERSION == "lc-features-1.1.0" and LEGACY_FEATURE_VERSIONS == ("lc-features-1.0.0",)
    # 1.2.0 (period selection 2) is computed on request; no shipped model reads it yet
    assert NEWER_FEATURE_VERSIONS == ("lc-features-1.2.0",) and set(FEATURE_VERSIONS) == {
        FEATURE_VERSION,
        *LEGACY_FEATURE_VERSIONS,
        *NEWER_FEATURE_VERSIONS,
    }
    det = _light_curve()
    for v in FEATURE_VERSIONS:
        out = compute_features(det, None, feature_version=v)
        assert len(out) == 1 and (out["FEATURE_VERSION"] == v).all()
    with pytest.raises(ValueError, match="unknown feature version"):
        compute_features(det, None, feature_version="lc-features-0.9")


def test_rb_threshold_differs_between_versions():
    det = _light_curve(rb=0.4)  # real, genuine detections with 0.3 <= rb < 0.55
    assert compute_features(det, None, feature_version="lc-features-1.0.0").empty
    assert len(compute_features(det, None, feature_version="lc-features-1.1.0")) == 1
    assert len(compute_features(det, None, feature_version="lc-features-1.2.0")) == 1


def test_the_shipped_ztf_model_gets_the_features_it_was_trained_on():
    root = shipped_models()
    specs = tuple(resolve_model("auto", name, root) for name in DEFAULT_LC_MODELS)
    wanted = magnitude_feature_version(specs)
    ztf = read_metadata(specs[0].name, specs[0].version, root=root)
    assert wanted == ztf["feature_version"] and wanted in FEATURE_VERSIONS
    assert magnitude_feature_version(()) == FEATURE_VERSION


def test_models_reading_different_versions_are_refused(tmp_path):
    import json

    for version, fv in (("1.0.0", "lc-features-1.0.0"), ("2.0.0", "lc-features-1.1.0")):
        d = tmp_path / "m" / version
        d.mkdir(parents=True)
        (d / "metadata.json").write_text(json.dumps({"feature_version": fv}))
        (d / "model.joblib").write_bytes(b"")
    specs = (ModelSpec(str(tmp_path), "m", "1.0.0"), ModelSpec(str(tmp_path), "m", "2.0.0"))
    assert magnitude_feature_version(specs[:1]) == "lc-features-1.0.0"
    with pytest.raises(ValueError, match="different feature versions"):
        magnitude_feature_version(specs)


@pytest.mark.parametrize("version", FEATURE_VERSIONS)
def test_the_features_step_computes_the_configured_version(version):
    det = _light_curve()
    state = PipelineState.start(Tables(detections=det, non_detections=pd.DataFrame()))
    ctx = StepContext(RegionConfig(lake=LakeSpec("unused"), feature_version=version), WorkerResources())
    steps = tuple(s for s in REGION_STEPS if s.name in ("correct", "magstats", "features"))
    out = run_steps(state, ctx, steps)
    assert len(out.features) == 1 and (out.features["FEATURE_VERSION"] == version).all()
