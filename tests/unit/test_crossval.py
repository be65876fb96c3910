"""Object-grouped cross-validation over real sets (classifiers.crossval): an object never scores with a model that
saw it (through any real set it belongs to, or any template made from it); weights and temperatures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alert_broker.classifiers import crossval
from alert_broker.classifiers.crossval import Rows, assign_folds, cross_validate, leave_set_out, make_rows
from alert_broker.classifiers.hierarchical import balanced_weights, fit_temperatures, temper
from alert_broker.classifiers.taxonomy import BRANCH_OF, BRANCHES, CLASSES
from alert_broker.classifiers.training import history_store_non_detections, tempered_class_proba

LABELS = ("SNIa", "SNII", "QSO", "RRL", "E")


def _rows(source: str, oids: list[str], seed: int, groups: dict[str, str] | None = None) -> Rows:
    rng = np.random.default_rng(seed)
    feats = pd.DataFrame(
        rng.normal(size=(len(oids), 3)), columns=["a", "b", "c"], index=pd.Index(oids, name="oid")
    )
    labels = pd.Series([LABELS[(i * 7 + seed) % len(LABELS)] for i in range(len(oids))], index=oids)
    grp = None if groups is None else pd.Series(groups)
    return make_rows(feats, labels, source, groups=grp)


class _Recorder:
    """A stand-in for the fold models: remembers the groups it trained on, answers uniform probabilities."""

    seen: list[set[str]] = []

    def __init__(self, rows: Rows) -> None:
        self.groups = set(rows.groups.astype(str))
        _Recorder.seen.append(self.groups)

    def predict_proba(self, feats: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(1.0 / len(CLASSES), index=feats.index, columns=list(CLASSES))

    def raw_probabilities(self, feats: pd.DataFrame):
        return np.full((len(feats), 3), 1 / 3), np.full((len(feats), len(CLASSES)), 0.2)


@pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")
def test_no_object_scores_with_a_model_that_saw_it(monkeypatch):
    objs = [f"ZTF{i:03d}" for i in range(60)]
    # the same objects in two real sets (as ALeRCE's SNe are among BTS's), and templates made from real objects
    real = Rows.concat([_rows("alerce_sne", objs[:40], 1), _rows("bts", objs[20:], 2)])
    parents = {f"T{i}": objs[i % 60] for i in range(120)}
    tpl = _rows("template:bts", list(parents), 3, groups=parents)
    sim = _rows("simulation", [f"sim{i}" for i in range(50)], 4)
    _Recorder.seen = []
    monkeypatch.setattr(crossval, "fit_rows", lambda rows, **kw: _Recorder(rows))
    cv = cross_validate(sim, real, tpl, k=5, seed=0)
    assert len(_Recorder.seen) == 5
    for f, trained in enumerate(_Recorder.seen):
        held = set(real.groups[(cv.folds == f).to_numpy()].astype(str))
        assert held and not (held & trained), f"fold {f} trained on held-out objects {held & trained}"
        assert {f"sim{i}" for i in range(50)} <= trained  # simulation always trains
    # every real row scored exactly once, and an object's rows (in either set) share one fold
    assert (cv.folds >= 0).all() and len(cv.proba) == len(real)
    assert (pd.DataFrame({"g": real.groups, "f": cv.folds}).groupby("g")["f"].nunique() == 1).all()


def test_leave_set_out_models_saw_none_of_the_set(monkeypatch):
    objs = [f"ZTF{i:03d}" for i in range(40)]
    real = Rows.concat([_rows("alerce_sne", objs[:30], 1), _rows("bts", objs[20:], 2)])  # 10 objects in both
    parents = {f"T{i}": objs[i % 40] for i in range(80)}
    tpl = _rows("template:bts", list(parents), 3, groups=parents)
    sim = _rows("simulation", [f"sim{i}" for i in range(20)], 4)
    _Recorder.seen = []
    monkeypatch.setattr(crossval, "fit_rows", lambda rows, **kw: _Recorder(rows))
    out = leave_set_out(sim, real, tpl, sources=("bts", "s82_rrlyrae"))
    assert list(out) == ["bts"] and len(out["bts"]) == 20  # a set with no rows is skipped
    (trained,) = _Recorder.seen
    assert not (trained & set(objs[20:]))  # not through bts, not through alerce_sne, not as a template parent
    assert set(objs[:20]) <= trained


def test_folds_are_stratified_by_set_and_class():
    real = Rows.concat([_rows("alerce_periodic", [f"P{i}" for i in range(50)], 5)])
    folds = assign_folds(real, k=5, seed=1)
    counts = pd.crosstab(real.labels, folds)
    assert (counts.max(axis=1) - counts.min(axis=1) <= 1).all()


def test_balanced_weights_balance_classes_and_keep_ratios_within_a_class():
    y = np.array(["a"] * 6 + ["b"] * 2)
    w = np.array([1, 1, 1, 1, 3, 3, 1, 1.0])
    out = balanced_weights(y, w)
    assert out[y == "a"].sum() == pytest.approx(out[y == "b"].sum()) == pytest.approx(len(y) / 2)
    assert out[4] / out[0] == pytest.approx(3.0)
    np.testing.assert_allclose(balanced_weights(np.array(["a", "a", "b"])), [0.75, 0.75, 1.5])


def test_temperature_recovers_the_overconfidence_it_was_given():
    """Labels drawn from calibrated probabilities q; the model reports q sharpened by 1/T (T = 0.5): the fitted
    temperature brings it back (~0.5 applied on top, tempering is composable: p^(1/T') = q^(1/(T T')))."""
    rng = np.random.default_rng(0)
    n = 4000
    logits = rng.normal(0, 1.0, (n, 3))
    q = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_idx = np.array([rng.choice(3, p=row) for row in q])
    reported = temper(q, 0.5)  # over-confident
    top = reported
    cond = np.zeros((n, len(CLASSES)))
    b_first = [next(c for c in CLASSES if BRANCH_OF[c] == b) for b in BRANCHES]
    for c in b_first:
        cond[:, CLASSES.index(c)] = 1.0  # one class per branch: the branch level alone carries information
    labels = np.array([b_first[i] for i in y_idx], dtype=object)
    t_top, _ = fit_temperatures(top, cond, labels)
    assert t_top == pytest.approx(2.0, rel=0.15)
    p = tempered_class_proba(top, cond, t_top, 1.0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[:, [CLASSES.index(c) for c in b_first]], temper(top, t_top), rtol=1e-9)


def test_history_store_keeps_only_non_detections_an_alert_carried():
    det = pd.DataFrame({"oid": ["a", "a", "b"], "mjd": [100.0, 150.0, 300.0]})
    nd = pd.DataFrame(
        {"oid": ["a", "a", "a", "a", "b", "b"], "mjd": [50.0, 75.0, 125.0, 160.0, 250.0, 280.0]}
    )
    kept = history_store_non_detections(det, nd, window=30.0)
    # a: 75 (alert at 100), 125 (alert at 150); not 50 (> 30 d before any alert) nor 160 (after the last)
    assert kept[["oid", "mjd"]].values.tolist() == [["a", 75.0], ["a", 125.0], ["b", 280.0]]


def test_evaluate_puts_out_of_fold_figures_beside_the_models_own():
    from alert_broker.classifiers.evaluate import evaluate_predictions
    from alert_broker.classifiers.training import _beside, predicted_shares

    p = pd.DataFrame(0.0, index=[f"o{i}" for i in range(4)], columns=list(CLASSES))
    p.iloc[:3, CLASSES.index("SNIa")] = 1.0
    p.iloc[3, CLASSES.index("SLSN")] = 1.0
    ev = evaluate_predictions(p, pd.Series("SNIa", index=p.index))
    assert ev.class_balanced_accuracy == pytest.approx(0.75)
    assert predicted_shares({"bts (real)": ev}) == ["bts (real): called SNIa 75.0 %, SLSN 25.0 %."]
    own = {"held-out simulation": ev, "bts (real)": ev, "alerce_sne (real)": ev}
    oof = {
        "alerce_sne (out-of-fold)": ev,
        "bts (out-of-fold)": ev,
        "bts (leave-set-out)": ev,
        "simbad (out-of-fold)": ev,
    }
    assert list(_beside(own, oof)) == [
        "held-out simulation",
        "bts (real)",
        "bts (out-of-fold)",
        "bts (leave-set-out)",
        "alerce_sne (real)",
        "alerce_sne (out-of-fold)",
        "simbad (out-of-fold)",
    ]
