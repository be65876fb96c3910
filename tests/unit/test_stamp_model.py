"""The stamp CNN: rotation invariance by construction, the entropy-regularised loss, registry round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from alert_broker.classifiers.registry import load, load_keras, save_keras, versions  # noqa: E402
from alert_broker.classifiers.stamp.layers import CyclicPool, RotationStack  # noqa: E402
from alert_broker.classifiers.stamp.model import CNNConfig, build_model, entropy_regularised_loss  # noqa: E402
from alert_broker.classifiers.stamp.training import inference_copy, set_determinism  # noqa: E402

N_META = 5


@pytest.fixture(scope="module")
def model():
    set_determinism(0)
    rng = np.random.default_rng(0)
    return build_model(N_META, CNNConfig(), meta_sample=rng.normal(size=(64, N_META)).astype("float32"))


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(1)
    return rng.random((16, 21, 21, 3)).astype("float32"), rng.normal(size=(16, N_META)).astype("float32")


def _predict(m, images, meta):
    return np.asarray(m({"image": images, "metadata": meta}, training=False))


def test_rotation_stack_matches_numpy_rot90_and_cyclic_pool_inverts_it():
    x = np.arange(2 * 4 * 4 * 3, dtype="float32").reshape(2, 4, 4, 3)
    stacked = np.asarray(RotationStack()(x))
    assert stacked.shape == (8, 4, 4, 3)
    for k in range(4):
        np.testing.assert_array_equal(stacked[2 * k : 2 * k + 2], np.rot90(x, k, axes=(1, 2)))
    feats = np.arange(8 * 3, dtype="float32").reshape(8, 3)
    pooled = np.asarray(CyclicPool()(feats))
    np.testing.assert_allclose(pooled, feats.reshape(4, 2, 3).mean(axis=0))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_predictions_are_invariant_to_90_degree_rotations(model, inputs, k):
    images, meta = inputs
    p0 = _predict(model, images, meta)
    pk = _predict(model, np.ascontiguousarray(np.rot90(images, k, axes=(1, 2))), meta)
    np.testing.assert_allclose(pk, p0, atol=1e-5)
    np.testing.assert_allclose(p0.sum(axis=1), 1.0, atol=1e-5)


def test_invariance_is_not_blindness(model, inputs):
    """A mirror image is not a rotation: the network must be able to tell it apart (it sees the pixels)."""
    images, meta = inputs
    p0 = _predict(model, images, meta)
    flipped = _predict(model, np.ascontiguousarray(images[:, ::-1]), meta)
    assert np.abs(flipped - p0).max() > 1e-4
    other = _predict(model, np.ascontiguousarray(images[::-1]), meta)
    assert np.abs(other - p0).max() > 1e-4


def test_entropy_regularised_loss_on_analytic_cases():
    y = np.array([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0]], dtype="float32")
    uniform = np.full((2, 5), 0.2, dtype="float32")
    loss = np.asarray(entropy_regularised_loss(y, uniform, 0.5))
    np.testing.assert_allclose(loss, (1 - 0.5) * np.log(5), rtol=1e-5)  # CE = H = log 5
    p = np.array([[0.7, 0.1, 0.1, 0.05, 0.05]] * 2, dtype="float32")
    h = -(p[0] * np.log(p[0])).sum()
    loss = np.asarray(entropy_regularised_loss(y, p, 0.3))
    np.testing.assert_allclose(loss, [-np.log(0.7) - 0.3 * h, -np.log(0.1) - 0.3 * h], rtol=1e-5)
    # beta = 0 is plain cross-entropy
    np.testing.assert_allclose(
        np.asarray(entropy_regularised_loss(y, p, 0.0)), [-np.log(0.7), -np.log(0.1)], rtol=1e-5
    )


def test_metadata_standardisation_is_part_of_the_model(model):
    norm = model.get_layer("metadata_norm")
    mean = np.asarray(norm.mean).ravel()
    assert mean.shape == (N_META,) and np.abs(mean).max() < 0.5  # adapted on N(0, 1) samples


def test_keras_model_registry_round_trip(tmp_path, model, inputs):
    images, meta = inputs
    path = save_keras(
        inference_copy(model), name="stamp_test", version="0.1.0", metadata={"features": ["a"]}, root=tmp_path
    )
    assert (path / "model.keras").is_file()
    md = json.loads((path / "metadata.json").read_text())
    assert md["name"] == "stamp_test" and md["kind"] == "keras" and md["features"] == ["a"]
    assert md["keras_version"] == keras.__version__ and md["created_at"]
    assert (path / "model.keras").stat().st_size < 2_000_000
    loaded, md2 = load_keras("stamp_test", root=tmp_path)
    assert md2 == md
    np.testing.assert_array_equal(_predict(loaded, images, meta), _predict(model, images, meta))
    assert versions("stamp_test", root=tmp_path) == ["0.1.0"]
    with pytest.raises(FileExistsError):
        save_keras(model, name="stamp_test", version="0.1.0", root=tmp_path)
    save_keras(model, name="stamp_test", version="0.1.0", root=tmp_path, overwrite=True)
    with pytest.raises(ValueError, match="load_keras"):
        load("stamp_test", root=tmp_path)
    with pytest.raises(ValueError, match="simple tokens"):
        save_keras(model, name="bad name", version="1", root=tmp_path)
