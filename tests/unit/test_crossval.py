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


class _Answering(_Recorder):
    """A fold model that says which model answered: P(SNIa) = its index / 100."""

    def predict_proba(self, feats: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(0.0, index=feats.index, columns=list(CLASSES))
        out["SNIa"] = (len(_Recorder.seen) - 1) / 100.0
        return out


@pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")
def test_scored_rows_are_never_trained_on_and_score_with_their_objects_fold(monkeypatch):
    """A real set cut to one alert's history, scored beside a recipe that never trains on it: each cut is
    answered by the fold model that held its object out, and no fold model saw any cut."""
    objs = [f"ZTF{i:03d}" for i in range(40)]
    real = _rows("alerce_periodic", objs, 1)
    cuts = _rows("alerce_periodic@30", objs[:30], 2)  # row keys alerce_periodic@30/<oid>, group the oid
    orphan = _rows("alerce_sne@30", ["NOBODY"], 3)  # an object with no real row: no fold holds it out
    scored = Rows.concat([cuts, orphan])
    sim = _rows("simulation", [f"sim{i}" for i in range(10)], 4)
    _Recorder.seen = []
    monkeypatch.setattr(crossval, "fit_rows", lambda rows, **kw: _Answering(rows))
    cv = cross_validate(sim, real, None, scored=scored, k=5, seed=0)
    assert len(cv.proba) == len(real) + len(scored) and list(cv.proba.index[: len(real)]) == list(
        real.features.index
    )
    for f, trained in enumerate(_Recorder.seen):
        assert not any(g.startswith("alerce_periodic@30") for g in trained)
        held = set(real.groups[(cv.folds.iloc[: len(real)] == f).to_numpy()].astype(str))
        assert not (held & trained)
    # every cut answered by the model of its object's fold (the Answering model's index), the orphan by none
    for key, grp in cuts.groups.items():
        fold = int(cv.folds[real.features.index[real.groups.to_numpy() == grp][0]])
        assert cv.folds[key] == fold
        assert cv.proba.loc[key, "SNIa"] == pytest.approx(fold / 100.0)
    assert cv.folds["alerce_sne@30/NOBODY"] == -1 and cv.proba.loc["alerce_sne@30/NOBODY"].isna().all()
    # without scored rows the real rows' answers are the same
    _Recorder.seen = []
    plain = cross_validate(sim, real, None, k=5, seed=0)
    pd.testing.assert_frame_equal(plain.proba, cv.proba.iloc[: len(real)])


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
    # the same model answers the set's objects cut to one alert's history, under their source name
    cut = _rows("bts@30", objs[25:], 5)
    _Recorder.seen = []
    out = leave_set_out(
        sim, real, tpl, sources=("bts",), scored=Rows.concat([cut, _rows("bts@30", ["ZTF000"], 6)])
    )
    assert list(out) == ["bts", "bts@30"] and len(out["bts@30"]) == 15  # ZTF000 is not a BTS object
    assert len(_Recorder.seen) == 1


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


def test_one_alert_recipe_trains_on_the_cuts_or_only_scores_them(monkeypatch):
    from alert_broker.classifiers import training

    calls = []

    def fake_set(n, nights, seed, history_days=None, **kw):
        calls.append((n, nights, seed, history_days))
        return _rows("s", [f"o{i}" for i in range(n)], 7).features.set_axis(
            [f"o{i}" for i in range(n)]
        ), pd.Series(["RRL"] * n, index=[f"o{i}" for i in range(n)])

    monkeypatch.setattr(training, "build_training_set", fake_set)
    monkeypatch.setattr(
        training, "short_history_rows", lambda root, weight=3.0: _rows("alerce_sne@30", ["Z1", "Z2"], 8)
    )
    sim = _rows("simulation", ["s1", "s2", "s3"], 4)
    real = _rows("alerce_sne", ["Z1", "Z2", "Z3"], 1)
    s2, r2, scored = training.one_alert_recipe(sim, real, "/d", 5, 20, objects=0, cuts=False, weight=3.0)
    assert s2 is sim and r2 is real and list(scored.sources.unique()) == ["alerce_sne@30"] and not calls
    s2, r2, scored = training.one_alert_recipe(sim, real, "/d", 5, 20, objects=40, cuts=True, weight=3.0)
    assert scored is None and len(r2) == 5 and set(r2.sources) == {"alerce_sne", "alerce_sne@30"}
    assert calls == [(40, 20, 5 + training.SHORT_HISTORY_SEED_OFFSET, training.ALERT_HISTORY_DAYS)]
    added = s2.take((s2.sources == training.SHORT_HISTORY_SOURCE).to_numpy())
    assert len(s2) == 3 + len(added) and len(added) >= 40  # the 40 objects and their masked copies
    assert added.features.index.str.startswith("sim30/").all()  # other row keys than the year-long objects'
