"""Classification throughput on one core: the light-curve classifier (both backends) and the stamp CNN.

    python -m bench.bench_classify [--objects 20000] [--batch 100] [--seconds 3] [--models DIR]

Both light-curve backends are trained here with their default settings on the same simulated ZTF training set
(``--objects`` simulated objects, 20 nights, seed 1; ~2,700 feature rows for 20,000 objects), saved to a
temporary registry and loaded back, so the figures are for models shaped like the default one (which is trained
on ~5,400 rows). Inference runs single-threaded (``n_jobs=1``: a worker runs one task per thread) on batches of
``--batch`` held-out objects (seed 1001), the size of a region task's share of a micro-batch. Figures are
objects per CPU second (process time), comparable only within one run: the machine is shared and noisy.

Columns:
  fit s            training time of the four models and the outlier forests (CPU seconds, one thread)
  size MB          model.joblib on disk
  load ms          registry ``load`` (unpickling), best of 3: paid once per worker process
  proba obj/s      ``predict_proba`` (the 15 probabilities) alone
  classify obj/s   ``classify``: probability rows (15 classes + 3 branches) and outlier scores, what a worker
                   stores per batch

The stamp CNN is measured when a stamp model is in the registry (``--models``, default ./models; train one with
``broker train stamp``): forward passes on batches of ``--batch`` preprocessed inputs, one TensorFlow thread.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from alert_broker.classifiers.hierarchical import BACKENDS
from alert_broker.classifiers.registry import load, save
from alert_broker.classifiers.training import build_training_set, train


def _rate(fn: Callable[[], object], n: int, seconds: float) -> float:
    """Objects per CPU second of ``fn`` (which handles ``n`` objects), after one warm-up call."""
    fn()
    calls = 0
    t0 = time.process_time()
    while True:
        fn()
        calls += 1
        elapsed = time.process_time() - t0
        if elapsed >= seconds:
            return n * calls / elapsed


def _best_of(fn: Callable[[], object], repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_light_curve(n_objects: int, batch: int, seconds: float) -> pd.DataFrame:
    """One row per backend: fit time, size, load time, predict_proba and classify rates."""
    feats, labels = build_training_set(n_objects, 20, seed=1, history_days=30)
    test, _ = build_training_set(max(n_objects // 2, 4 * batch), 20, seed=1001, history_days=30)
    x = test.iloc[:batch]
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for backend in BACKENDS:
            t0 = time.process_time()
            model = train(feats, labels, backend=backend, seed=1, name=f"bench_{backend}", n_jobs=1)
            fit_s = time.process_time() - t0
            path = save(model, root=root)
            load_s = _best_of(lambda b=backend: load(f"bench_{b}", root=root), 3)
            served = load(f"bench_{backend}", root=root)
            rows.append(
                {
                    "backend": backend,
                    "training rows": len(feats),
                    "fit s": fit_s,
                    "size MB": (path / "model.joblib").stat().st_size / 1e6,
                    "load ms": 1e3 * load_s,
                    "proba obj/s": _rate(lambda m=served: m.predict_proba(x), len(x), seconds),
                    "classify obj/s": _rate(lambda m=served: m.classify(x), len(x), seconds),
                }
            )
    return pd.DataFrame(rows).set_index("backend")


def bench_stamps(models: str | None, batch: int, seconds: float) -> str:
    """Stamps/s of the registry's stamp CNN on preprocessed inputs, or why it could not be measured.

    Hook for the stamp classifier (``classifiers/stamp``): it needs ``StampClassifier.load`` and
    ``predict_arrays(images, metadata)``; preprocessing of the FITS cutouts is not included.
    """
    try:
        from alert_broker.classifiers.stamp.inference import StampClassifier, set_tf_threads
        from alert_broker.classifiers.stamp.training import DEFAULT_NAME
    except ImportError as err:
        return f"stamp CNN: not measured (classifiers.stamp not importable: {err})"
    set_tf_threads(1)
    try:
        t0 = time.perf_counter()
        clf = StampClassifier.load(DEFAULT_NAME, root=models)
        load_s = time.perf_counter() - t0
    except (FileNotFoundError, ValueError) as err:
        return f"stamp CNN: not measured ({err}; train one with `broker train stamp`)"
    rng = np.random.default_rng(0)
    size = clf.crop_size
    images = rng.normal(0.0, 1.0, (batch, size, size, 3)).astype(np.float32)
    meta = rng.normal(0.0, 1.0, (batch, len(clf.features))).astype(np.float32)
    rate = _rate(lambda: clf.predict_arrays(images, meta), batch, seconds)
    return (
        f"stamp CNN {clf.name} {clf.version}: load {load_s * 1e3:.0f} ms, {rate:,.0f} stamps/s/core "
        f"(batches of {batch}, preprocessed inputs, 1 TensorFlow thread)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=20_000, help="simulated objects for the training set")
    ap.add_argument("--batch", type=int, default=100, help="objects per classification call")
    ap.add_argument("--seconds", type=float, default=3.0, help="CPU seconds per timing")
    ap.add_argument("--models", default=None, help="registry holding the stamp model (default ./models)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow start-up chatter
    table = bench_light_curve(args.objects, args.batch, args.seconds)
    print(f"light-curve classifier, batches of {args.batch} objects, one thread (objects per CPU second)")
    with pd.option_context("display.float_format", "{:,.1f}".format, "display.width", 160):
        print(table.to_string())
    print(bench_stamps(args.models, args.batch, args.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
