"""The stamp classifier's second stage (classifiers.stamp.stacker, second_stage): its raw metadata inputs and the
object-grouped cross-validation of its real rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alert_broker.classifiers.stamp import second_stage
from alert_broker.classifiers.stamp.second_stage import StackRows, cross_validate
from alert_broker.classifiers.stamp.stacker import STACK_COLUMNS, raw_metadata, stack_inputs
from alert_broker.classifiers.stamp.stampstats import STAT_COLUMNS
from alert_broker.classifiers.stamp.taxonomy import STAMP_CLASSES


def test_raw_metadata_keeps_missing_as_missing_and_reads_the_sso_match():
    alerts = pd.DataFrame(
        {
            "ssdistnr": [1.2, -999.0, 60.0, 3.0, np.nan],
            "ssnamenr": ["1234", None, "null", "null", None],
            "isdiffpos": ["t", "f", "1", "0", "t"],
            "sgscore1": [0.5, -999.0, 0.1, 0.9, 0.2],
            "ndethist": [1, 5, 0, 2, 3],
            "ncovhist": [10, 5, 3, 2, 9],
        }
    )
    md = raw_metadata(alerts)
    np.testing.assert_array_equal(md["known_sso"].to_numpy(), [1.0, 0.0, 0.0, 0.0, np.nan])
    np.testing.assert_array_equal(md["isdiffpos"].to_numpy(), [1.0, -1.0, 1.0, -1.0, 1.0])
    assert np.isnan(md.loc[1, "sgscore1"]) and md.loc[0, "sgscore1"] == 0.5  # -999: ZTF's "no value"
    np.testing.assert_array_equal(md["non_detections"].to_numpy(), [9, 0, 3, 0, 6])
    assert md["rb"].isna().all()  # an absent column is missing, never a fill


def test_stack_inputs_are_in_column_order():
    n = 3
    cnn = np.full((n, len(STAMP_CLASSES)), 0.2)
    x = stack_inputs(cnn, pd.DataFrame(np.ones((n, len(STAT_COLUMNS))), columns=list(STAT_COLUMNS)),
                     raw_metadata(pd.DataFrame(index=range(n))))  # fmt: skip
    assert list(x.columns) == list(STACK_COLUMNS) and x.shape == (n, len(STACK_COLUMNS))
    assert x["cnn_SN"].to_numpy() == pytest.approx(np.log(0.2))


class _Recorder:
    seen: list[set[str]] = []

    def __init__(self, rows: StackRows) -> None:
        _Recorder.seen.append(set(rows.groups))

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        return np.full((len(x), len(STAMP_CLASSES)), 0.2)


def _rows(source: str, groups: list[str]) -> StackRows:
    n = len(groups)
    y = np.array([STAMP_CLASSES[i % 5] for i in range(n)], dtype=object)
    x = pd.DataFrame(np.zeros((n, len(STACK_COLUMNS))), columns=list(STACK_COLUMNS))
    return StackRows(x, y, np.array(groups), np.full(n, source), np.ones(n), pd.DataFrame(index=range(n)))


@pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")
def test_second_stage_folds_never_score_an_object_they_saw(monkeypatch):
    # two alerts of one object (its first alert in one set, a later one in the other) must share a fold
    real = StackRows.concat(
        [_rows("alerce", [f"o{i}" for i in range(30)]), _rows("simbad", [f"o{i}" for i in range(20, 45)])]
    )
    sim = _rows("simulation", [f"s{i}" for i in range(25)])
    _Recorder.seen = []
    monkeypatch.setattr(second_stage, "fit_stacker", lambda rows, seed=0: _Recorder(rows))
    oof, folds = cross_validate(sim, real, k=5, seed=0)
    assert (folds >= 0).all() and oof.shape == (len(real), 5)
    for f, trained in enumerate(_Recorder.seen):
        held = set(real.groups[folds == f])
        assert held and not (held & trained)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_temperature_fit_recovers_a_known_over_confidence():
    """Labels drawn from softmax(z); the model answers softmax(2.5 z): the fitted temperature is 2.5 (to the
    grid's step, 4.8 %), a calibrated set gives 1, and a set counts by its mean, not by its size."""
    from alert_broker.classifiers.stamp.second_stage import fit_temperature, log_loss
    from alert_broker.classifiers.stamp.taxonomy import STAMP_CLASSES

    rng = np.random.default_rng(3)
    z = rng.normal(0.0, 1.5, (40_000, 5))
    q = _softmax(z)
    y = np.array(STAMP_CLASSES, dtype=object)[(rng.random((len(q), 1)) > q.cumsum(axis=1)).sum(axis=1)]
    t, table = fit_temperature({"over": (_softmax(2.5 * z), y)})
    assert t == pytest.approx(2.5, rel=0.05)
    assert table["over"]["log_loss"] < table["over"]["log_loss_t1"] and table["over"]["n"] == len(y)
    assert fit_temperature({"calibrated": (q, y)})[0] == pytest.approx(1.0, rel=0.05)
    both = fit_temperature({"over": (_softmax(2.5 * z[:2000]), y[:2000]), "calibrated": (q, y)})[0]
    ten_times = fit_temperature(
        {"over": (np.tile(_softmax(2.5 * z[:2000]), (10, 1)), np.tile(y[:2000], 10)), "calibrated": (q, y)}
    )[0]
    assert 1.0 < both < 2.5 and ten_times == both
    assert log_loss(q, y) < log_loss(_softmax(2.5 * z), y)
    assert fit_temperature({}) == (1.0, {})
