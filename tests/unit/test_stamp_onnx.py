"""Serving the stamp CNN with ONNX Runtime: the exported graph computes what the Keras network computes, the
shipped versions carry their model.onnx, and workers load it without starting TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("keras")

from alert_broker.classifiers.registry import ONNX_FILE  # noqa: E402
from alert_broker.classifiers.stamp.runtime import OnnxNetwork, stamp_runtime  # noqa: E402
from alert_broker.models import shipped_models  # noqa: E402

SHIPPED = ("1.1.0", "1.2.0", "1.4.0")


@pytest.fixture(scope="module")
def small_model():
    """An untrained network of the shipped architecture with non-trivial weights and metadata scaling."""
    import keras

    from alert_broker.classifiers.stamp.model import CNNConfig, build_model

    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    meta_sample = rng.normal(5.0, 3.0, size=(200, 6)).astype(np.float32)
    return build_model(6, CNNConfig(filters1=4, filters2=8, dense=16), meta_sample=meta_sample, size=21)


def _inputs(n: int, size: int, n_meta: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, size, size, 3), dtype=np.float32), rng.normal(5, 3, (n, n_meta)).astype(np.float32)


def test_the_exported_graph_computes_the_keras_softmax(small_model):
    from alert_broker.classifiers.stamp.onnx_export import keras_to_onnx_bytes

    img, meta = _inputs(50, 21, 6)
    ref = np.asarray(small_model({"image": img, "metadata": meta}, training=False))
    got = OnnxNetwork(keras_to_onnx_bytes(small_model))(img, meta)
    assert got.shape == ref.shape == (50, 5)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    assert np.ptp(got, axis=0).max() > 1e-3  # inputs that move the output: the comparison means something


def test_the_exported_graph_is_rotation_invariant(small_model):
    # an independent property of the architecture (RotationStack + CyclicPool), not a comparison with Keras
    from alert_broker.classifiers.stamp.onnx_export import keras_to_onnx_bytes

    net = OnnxNetwork(keras_to_onnx_bytes(small_model))
    img, meta = _inputs(20, 21, 6, seed=1)
    base = net(img, meta)
    for k in (1, 2, 3):
        rotated = np.ascontiguousarray(np.rot90(img, k, axes=(1, 2)))
        np.testing.assert_allclose(net(rotated, meta), base, atol=1e-6)
    flipped = np.ascontiguousarray(img[:, ::-1])  # a mirror image is not a rotation: the output may move
    assert not np.allclose(net(flipped, meta), base, atol=1e-6)


def test_an_unknown_layer_is_refused_not_mistranslated():
    import keras

    from alert_broker.classifiers.stamp.layers import CyclicPool, RotationStack
    from alert_broker.classifiers.stamp.onnx_export import UnsupportedLayer, keras_to_onnx

    img = keras.Input((21, 21, 3), name="image")
    meta = keras.Input((2,), name="metadata")
    x = RotationStack(name="rotations")(img)
    x = keras.layers.Conv2D(4, 3, padding="valid", activation="relu", name="conv0")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = CyclicPool(name="cyclic_pool")(keras.layers.Dense(4, name="image_dense")(x))
    m = keras.layers.Normalization(mean=np.zeros(2), variance=np.ones(2), name="metadata_norm")(meta)
    out = keras.layers.Dense(5, activation="softmax", name="probabilities")(
        keras.layers.Concatenate(name="concat")([x, m])
    )
    with pytest.raises(UnsupportedLayer, match="conv0"):
        keras_to_onnx(keras.Model([img, meta], out))


@pytest.fixture(scope="module")
def real_night(shared_data):
    """The 1166 real alerts of the default night sample, decoded as the pipeline decodes them."""
    from alert_broker.surveys.decode import decode_batch
    from alert_broker.surveys.messages import RawMessage

    files = sorted((shared_data / "ztf" / "fink_sample_1166").glob("*.avro"))[::2]
    tables, _, _ = decode_batch(
        [RawMessage("t", 0, i, f.read_bytes(), f.name) for i, f in enumerate(files)], "t"
    )
    return tables.alerts, tables.stamps


@pytest.mark.parametrize("version", SHIPPED)
def test_shipped_versions_answer_the_same_through_both_runtimes_on_real_stamps(
    version, shared_data, real_night
):
    from alert_broker.classifiers.stamp.evaluate import load_real_stamps
    from alert_broker.classifiers.stamp.inference import StampClassifier

    assert (shipped_models() / "stamp_classifier" / version / ONNX_FILE).is_file()
    onnx = StampClassifier.load("stamp_classifier", version, runtime="onnx")
    keras_clf = StampClassifier.load("stamp_classifier", version, runtime="keras")
    assert (onnx.runtime, keras_clf.runtime) == ("onnx", "keras") and onnx.model is None
    labelled, labelled_stamps = load_real_stamps(shared_data)
    for alerts, stamps in ((labelled, labelled_stamps), real_night):
        images, meta, _ = onnx._inputs(alerts, stamps)
        assert len(images) >= 40
        np.testing.assert_allclose(
            onnx.predict_arrays(images, meta), keras_clf.predict_arrays(images, meta), atol=1e-5, rtol=0
        )
        a, b = onnx.predict_proba(alerts, stamps), keras_clf.predict_proba(alerts, stamps)
        assert a.index.equals(b.index)
        assert (a.iloc[:, 1:].to_numpy(float).argmax(1) == b.iloc[:, 1:].to_numpy(float).argmax(1)).all()
    # Final probabilities on alerts no model saw: equal to 1e-5. (1.2.0's second stage trained on the 51 labelled
    # stamps: XGBoost's split points sit exactly on their float32 inputs, so a 1e-7 CNN difference can cross one
    # for them; above, only their calls are compared.)
    np.testing.assert_allclose(
        a.iloc[:, 1:].to_numpy(float), b.iloc[:, 1:].to_numpy(float), atol=1e-5, rtol=0
    )


def test_a_worker_serves_the_shipped_model_without_tensorflow(shared_data):
    code = (
        "import sys\n"
        "from alert_broker.classifiers.stamp.evaluate import load_real_stamps\n"
        "from alert_broker.classifiers.stamp.inference import load_stamp_classifier\n"
        f"alerts, stamps = load_real_stamps({str(shared_data)!r})\n"
        "clf = load_stamp_classifier(None, 'stamp_classifier', None)\n"
        "p = clf.predict_proba(alerts, stamps)\n"
        "print(clf.runtime, len(p), 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    runtime, n, tf_loaded, keras_loaded = out.stdout.split()
    assert runtime == "onnx" and int(n) >= 40
    assert (tf_loaded, keras_loaded) == ("False", "False")


def test_runtime_choice_and_a_version_without_onnx(tmp_path, monkeypatch):
    import shutil

    from alert_broker.classifiers.stamp.inference import StampClassifier
    from alert_broker.classifiers.stamp.training import export_onnx

    with pytest.raises(ValueError, match="BROKER_STAMP_RUNTIME"):
        stamp_runtime("tflite")
    monkeypatch.setenv("BROKER_STAMP_RUNTIME", "keras")
    assert stamp_runtime() == "keras" and stamp_runtime("onnx") == "onnx"
    monkeypatch.delenv("BROKER_STAMP_RUNTIME")

    src = shipped_models() / "stamp_classifier" / "1.1.0"
    dst = tmp_path / "stamp_classifier" / "1.1.0"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(ONNX_FILE))
    with pytest.raises(FileNotFoundError, match="export-onnx"):
        StampClassifier.load(root=tmp_path, runtime="onnx")
    assert StampClassifier.load(root=tmp_path).runtime == "keras"  # auto: falls back, still serves
    path, diff = export_onnx(root=tmp_path)
    assert Path(path) == dst / ONNX_FILE and diff <= 1e-5
    assert (dst / ONNX_FILE).read_bytes() == (src / ONNX_FILE).read_bytes()  # the export is deterministic
    assert StampClassifier.load(root=tmp_path).runtime == "onnx"
