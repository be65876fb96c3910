"""Reliability curves, expected calibration error and the evaluation report's calibration section, on cases
whose answers follow from the definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alert_broker.classifiers import evaluate as ev_mod
from alert_broker.classifiers.calibration import expected_calibration_error, log_loss, reliability
from alert_broker.classifiers.evaluate import evaluate_predictions, write_report
from alert_broker.classifiers.taxonomy import CLASSES


def _two_class(conf: float, n: int, n_right: int) -> tuple[np.ndarray, np.ndarray]:
    """n rows with P = (conf, 1 - conf); the first n_right have class 0 (right), the others class 1."""
    proba = np.tile([conf, 1 - conf], (n, 1))
    truth = np.array([0] * n_right + [1] * (n - n_right))
    return proba, truth


def test_calibrated_bins_have_zero_ece():
    # 0.75 confidence, 3 of 4 right; 0.95 confidence, 19 of 20 right: each bin on the diagonal
    p1, t1 = _two_class(0.75, 4, 3)
    p2, t2 = _two_class(0.95, 20, 19)
    proba, truth = np.vstack([p1, p2]), np.concatenate([t1, t2])
    assert expected_calibration_error(proba, truth) == pytest.approx(0.0, abs=1e-12)
    r = reliability(proba, truth)
    assert r["count"].sum() == 24
    assert r.loc[r["count"] == 4, "accuracy"].item() == pytest.approx(0.75)


def test_over_confident_gap_is_the_ece():
    # 0.9 confidence, half right: gap 0.4 in the only bin; and 0.6 confidence, all right: gap 0.4 the other way
    p, t = _two_class(0.9, 10, 5)
    assert expected_calibration_error(p, t) == pytest.approx(0.4)
    p2, t2 = _two_class(0.6, 30, 30)
    both = expected_calibration_error(np.vstack([p, p2]), np.concatenate([t, t2]))
    assert both == pytest.approx(0.4)  # (10 x 0.4 + 30 x 0.4) / 40


def test_log_loss_and_absent_truth():
    p = np.array([[0.5, 0.5], [0.25, 0.75]])
    assert log_loss(p, np.array([0, 1])) == pytest.approx(-(np.log(0.5) + np.log(0.75)) / 2)
    # a truth outside the columns (-1) is never right and costs the clipped floor
    assert log_loss(p[:1], np.array([-1])) == pytest.approx(-np.log(1e-12))
    assert reliability(p[:1], np.array([-1]))["accuracy"].dropna().item() == 0.0


def _proba(labels: list[str], confidence: float) -> pd.DataFrame:
    """Rows that give their own label ``confidence`` and spread the rest evenly."""
    rest = (1 - confidence) / (len(CLASSES) - 1)
    p = np.full((len(labels), len(CLASSES)), rest)
    for i, lab in enumerate(labels):
        p[i, CLASSES.index(lab)] = confidence
    return pd.DataFrame(p, index=[f"o{i}" for i in range(len(labels))], columns=list(CLASSES))


def test_report_draws_reliability_without_in_sample_duplicates(tmp_path, monkeypatch):
    labels = ["SNIa", "RRL", "QSO", "CEP"] * 5
    in_sample = evaluate_predictions(_proba(labels, 0.99), pd.Series(labels))
    wrong = ["SNIbc", "RRL", "QSO", "CEP"] * 5  # a quarter wrong at 0.8 confidence
    oof = evaluate_predictions(_proba(wrong, 0.8), pd.Series(labels))
    drawn: dict[str, list[str]] = {}
    real_plot = ev_mod.plot_reliability

    def spy(curves, path, title):
        drawn[str(path).rsplit("/", 1)[-1]] = list(curves)
        return real_plot(curves, path, title)

    monkeypatch.setattr(ev_mod, "plot_reliability", spy)
    report = write_report({"setx (real)": in_sample, "setx (out-of-fold)": oof}, tmp_path).read_text()
    assert (tmp_path / "reliability_class.png").stat().st_size > 1000
    assert (tmp_path / "reliability_branch.png").stat().st_size > 1000
    assert drawn["reliability_class.png"] == ["setx (out-of-fold)"]  # in-sample stays in the table only
    # the table: out-of-fold, class level: accuracy 0.75 at confidence 0.8 -> ECE 0.05
    row = next(line for line in report.splitlines() if line.startswith("| setx (out-of-fold) | class |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:4] == ["20", "0.050"]
    assert cells[5] == "0.750"
    probs = pd.read_parquet(tmp_path / "probabilities.parquet")
    assert len(probs) == 40 and set(probs["set"]) == {"setx (real)", "setx (out-of-fold)"}
    assert np.allclose(probs[list(CLASSES)].sum(axis=1), 1.0)
    assert (probs.loc[probs["set"] == "setx (out-of-fold)", "true_class"].to_numpy() == labels).all()
