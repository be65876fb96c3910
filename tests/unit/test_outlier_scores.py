"""The compiled isolation-forest walk (classifiers.outlier.CompiledForest) against scikit-learn's own
``score_samples``: the same scores to the bit, missing values and degenerate forests included."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from alert_broker.classifiers.outlier import BranchOutlierScorer, CompiledForest


def _data(rng: np.random.Generator, n: int, d: int = 12) -> np.ndarray:
    scales = rng.choice([1e-3, 1.0, 50.0, 1e4], size=d)
    x = rng.normal(size=(n, d)) * scales
    x[:, 0] = np.round(x[:, 0])  # a feature with ties on the thresholds
    return x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_equal_scikit_learns_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    train = _data(rng, 400)
    train[rng.random(train.shape) < 0.03] = np.nan  # trees that learnt where missing values go
    forest = IsolationForest(n_estimators=60, max_samples=128, random_state=seed).fit(train)
    test = np.vstack([_data(rng, 300), train[:50]])
    test[rng.random(test.shape) < 0.05] = np.nan
    test[3, 2] = np.inf
    test[4, 5] = -np.inf
    want = forest.score_samples(test)
    got = CompiledForest(forest).score_samples(test)
    assert np.array_equal(got, want)
    # and the float32 cast is the same one: a value between two float32 neighbours of a threshold
    assert np.array_equal(CompiledForest(forest).score_samples(test.astype(np.float32)), want)


def test_a_forest_of_one_sample_scores_one_like_scikit_learn():
    x = np.array([[1.0, 2.0]])
    forest = IsolationForest(n_estimators=5, random_state=0).fit(x)
    probe = np.array([[1.0, 2.0], [5.0, -3.0]])
    assert np.array_equal(CompiledForest(forest).score_samples(probe), forest.score_samples(probe))


def test_a_wrong_width_is_refused():
    forest = IsolationForest(n_estimators=5, random_state=0).fit(np.zeros((10, 3)) + np.arange(10)[:, None])
    with pytest.raises(ValueError, match="expected 3 features"):
        CompiledForest(forest).score_samples(np.zeros((2, 4)))


def test_branch_scorer_uses_the_compiled_walk_and_pickles_without_it():
    rng = np.random.default_rng(7)
    x = _data(rng, 300)
    branches = np.array(["Transient", "Stochastic", "Periodic"])[rng.integers(0, 3, len(x))]
    scorer = BranchOutlierScorer(n_estimators=40, random_state=3).fit(x, branches)
    probe = _data(rng, 90)
    pb = branches[:90]
    want = np.full(len(probe), np.nan)
    for branch, forest in scorer.forests_.items():
        rows = pb == branch
        want[rows] = -forest.score_samples(probe[rows])
    assert np.array_equal(scorer.score(probe, pb), want)
    assert "_compiled_forests" in scorer.__dict__
    back = pickle.loads(pickle.dumps(scorer))
    assert "_compiled_forests" not in back.__dict__
    assert np.array_equal(back.score(probe, pb), want)
