"""The two ways to run the stamp CNN's forward pass: ONNX Runtime (serving) and TensorFlow/Keras (training).

Both are callables ``(images (N, H, W, 3) float32, metadata (N, F) float32) -> softmax (N, K) float32`` and give
the same probabilities to ~1e-7 (``onnx_export``; tested). Workers serve with :class:`OnnxNetwork`: it starts in a
fraction of a second and needs neither TensorFlow's ~0.5 GB nor its thread pools. :class:`KerasNetwork` serves a
model that has no ONNX file (one just trained, or an old registry version) and is what training evaluates with.
"""

from __future__ import annotations

import os

import numpy as np

#: Which runtime ``StampClassifier.load`` uses: "auto" (ONNX when the version has a ``model.onnx`` and ONNX
#: Runtime is installed, else Keras), "onnx" or "keras". Environment override: ``BROKER_STAMP_RUNTIME``.
RUNTIMES = ("auto", "onnx", "keras")


def stamp_runtime(runtime: str | None = None) -> str:
    """The requested runtime: ``runtime``, else env ``BROKER_STAMP_RUNTIME``, else "auto"; checked."""
    value = (runtime or os.environ.get("BROKER_STAMP_RUNTIME") or "auto").strip().lower()
    if value not in RUNTIMES:
        raise ValueError(
            f"stamp runtime {value!r} is not one of {', '.join(RUNTIMES)} (BROKER_STAMP_RUNTIME)"
        )
    return value


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401  # lazy: only probed when a stamp model is loaded
    except ImportError:
        return False
    return True


class OnnxNetwork:
    """The CNN as an ONNX Runtime session on the CPU, ``threads`` intra-op threads (a Dask worker runs one task
    per thread, so one thread per inference keeps the cores from being oversubscribed)."""

    runtime = "onnx"

    def __init__(self, model: bytes | str | os.PathLike, threads: int = 1) -> None:
        import onnxruntime as ort  # lazy: only a loaded stamp model needs it (~0.2 s)

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(int(threads), 1)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only: ORT's start-up notices are not the broker's log
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        #: Keras' model object when there is one (never for ONNX): training code saves it
        self.model = None

    def __call__(self, images: np.ndarray, metadata: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"image": images, "metadata": metadata})[0]


class KerasNetwork:
    """A Keras model behind one traced TensorFlow function (no per-call retracing, no per-row ``predict``)."""

    runtime = "keras"

    def __init__(self, model, size: int, n_meta: int) -> None:
        import tensorflow as tf  # lazy: seconds and ~0.5 GB to start; only a Keras-served CNN needs it

        self.model = model
        spec = (tf.TensorSpec((None, size, size, 3), tf.float32), tf.TensorSpec((None, n_meta), tf.float32))
        self._forward = tf.function(
            lambda img, meta: model({"image": img, "metadata": meta}, training=False), input_signature=spec
        )

    def __call__(self, images: np.ndarray, metadata: np.ndarray) -> np.ndarray:
        return np.asarray(self._forward(images, metadata))
