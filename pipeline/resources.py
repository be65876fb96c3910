"""What a task needs from its worker process: lakes, history stores, catalogues and models, opened once.

``WorkerResources`` holds them per process (a lake's connection pool, a history store's and a catalogue's pixel
caches, a loaded model) so tasks never reload them. On a Dask worker they belong to ``BrokerWorkerPlugin``: its
``setup`` configures logging, warms the science up and loads the models before the first batch, and its
``teardown`` drops everything. Outside Dask (tests, tools calling a task in-process) ``resources()`` gives one
process-wide instance.

The specs below are the small, hashable, typed descriptions of those resources that travel with each task.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from alert_broker.classifiers import load as load_model
from alert_broker.classifiers.outlier import warm_up_outlier_scores
from alert_broker.classifiers.stamp import StampClassifier
from alert_broker.classifiers.stamp.inference import tf_threads
from alert_broker.classifiers.stamp.preprocess import warm_up_preprocess
from alert_broker.classifiers.stamp.stampstats import warm_up_stamp_statistics
from alert_broker.features.correction import REQUIRED_COLUMNS
from alert_broker.features.lightcurve import compute_flux_features
from alert_broker.features.lightcurve import warm_up as warm_up_features
from alert_broker.features.magstats import REQUIRED_DETECTIONS as MAGSTATS_REQUIRED
from alert_broker.features.objects import REQUIRED_DETECTIONS as OBJECTS_REQUIRED
from alert_broker.features.science import science
from alert_broker.features.tables import Tables
from alert_broker.pipeline.filters import FilterSet
from alert_broker.pipeline.logs import configure_logging
from alert_broker.storage import Catalog, Lake
from alert_broker.storage.catalogs import PIXEL_CACHE
from alert_broker.storage.history import HistoryStore
from alert_broker.storage.watchlists import WatchList
from alert_broker.surveys.compiled_reader import warm_up as warm_up_avro_reader
from alert_broker.surveys.ztf_history import warm_up as warm_up_ztf_history

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LakeSpec:
    """Where the lake is: a folder or ``s3://bucket/prefix``, and the filesystem options (S3 endpoint, keys)."""

    url: str
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    """A model of the registry, its version fixed once per run so every worker runs the same one."""

    root: str
    name: str
    version: str


@dataclass(frozen=True)
class HistorySpec:
    """The light-curve history store: its HEALPix order and each worker's cache size."""

    order: int
    cache_mb: float


class WorkerResources:
    """Per-process handles, opened on first use and kept (thread-safe: a worker runs tasks on several threads)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._lakes: dict[LakeSpec, Lake] = {}
        self._stores: dict[tuple[LakeSpec, HistorySpec], HistoryStore] = {}
        self._catalogs: dict[tuple[str, str], Catalog] = {}
        self._models: dict[ModelSpec, Any] = {}

    def lake(self, spec: LakeSpec) -> Lake:
        with self._lock:
            if spec not in self._lakes:
                self._lakes[spec] = Lake(spec.url, dict(spec.options) or None)
            return self._lakes[spec]

    def history(self, lake: LakeSpec, spec: HistorySpec) -> HistoryStore:
        with self._lock:
            key = (lake, spec)
            if key not in self._stores:
                self._stores[key] = HistoryStore(self.lake(lake), order=spec.order, cache_mb=spec.cache_mb)
            return self._stores[key]

    def catalog(self, root: str, name: str) -> Catalog:
        with self._lock:
            if (root, name) not in self._catalogs:
                self._catalogs[(root, name)] = Catalog(root, name)
            return self._catalogs[(root, name)]

    def watchlist(self, root: str, name: str) -> WatchList:
        with self._lock:
            key = ("watchlist", root, name)
            if key not in self._catalogs:
                self._catalogs[key] = WatchList(root, name)  # type: ignore[index]
            return self._catalogs[key]  # type: ignore[index,return-value]

    def filter_set(self, spec) -> tuple[FilterSet, threading.Lock]:
        """The compiled user filters of a ``FilterSpec`` (``examples`` among the paths: the shipped ones), and
        the lock its counters need."""
        with self._lock:
            key = ("filters", spec)
            if key not in self._catalogs:
                paths = tuple(p for p in spec.paths if p != "examples")
                fs = FilterSet.load(
                    paths, dict(spec.expressions), examples="examples" in spec.paths, report_errors=False
                )
                self._catalogs[key] = (fs, threading.Lock())  # type: ignore[index]
            return self._catalogs[key]  # type: ignore[index,return-value]

    def lc_model(self, spec: ModelSpec):
        """The light-curve classifier (a registry model)."""
        with self._lock:
            if spec not in self._models:
                self._models[spec] = load_model(spec.name, spec.version, root=spec.root)
            return self._models[spec]

    def stamp_model(self, spec: ModelSpec):
        """The stamp classifier (ONNX Runtime when the version ships model.onnx, else TensorFlow starts here), one
        thread per inference: a worker runs one task per thread."""
        with self._lock:
            if spec not in self._models:
                self._models[spec] = StampClassifier.load(
                    spec.name, spec.version, root=spec.root, threads=tf_threads()
                )
            return self._models[spec]

    def clear(self) -> None:
        with self._lock:
            self._lakes.clear()
            self._stores.clear()
            self._catalogs.clear()
            self._models.clear()
            PIXEL_CACHE.clear()


def warm_up_science() -> float:
    """Run the science once on a tiny synthetic light curve, so the first real batch does not pay for lazy
    imports, first calls and numba kernels (compiled, or loaded from the on-disk cache). Returns seconds."""
    t0 = time.perf_counter()
    n = 8
    required = set(REQUIRED_COLUMNS) | set(MAGSTATS_REQUIRED) | set(OBJECTS_REQUIRED)
    cols: dict[str, Any] = {c: np.full(n, 1.0) for c in required}
    cols.update(
        oid=np.array(["warm-up"] * n, dtype=object),
        candid=np.arange(1, n + 1, dtype=np.int64),
        fid=np.array([1, 2] * (n // 2), dtype=np.int16),
        mjd=59000.0 + np.arange(n, dtype=np.float64),
        magpsf=np.full(n, 18.0),
        sigmapsf=np.full(n, 0.05),
        isdiffpos=np.ones(n, dtype=np.int8),
        distnr=np.full(n, 0.5),
        magnr=np.full(n, 17.0),
        sigmagnr=np.full(n, 0.02),
        night=np.full(n, 20200101, dtype=np.int32),
    )
    nondet = pd.DataFrame(
        {"oid": ["warm-up"], "fid": np.array([1], dtype=np.int16), "mjd": [58990.0], "diffmaglim": [20.0]}
    )
    state = science(Tables(detections=pd.DataFrame(cols), non_detections=nondet), with_features=False)
    pq.write_table(pa.Table.from_pandas(state.detections), io.BytesIO())
    warm_up_features()
    warm_up_stamp_statistics()
    warm_up_avro_reader()
    warm_up_ztf_history()
    warm_up_outlier_scores()
    warm_up_preprocess()
    days = np.arange(12, dtype=np.float64)
    compute_flux_features(  # the flux features' compiled fits and periodogram, once per process
        pd.DataFrame(
            {
                "oid": "warm-up",
                "band": np.array(["g", "r"] * 6),
                "mjd": 60000.0 + days,
                "flux": 1000.0 + 100.0 * np.sin(days),
                "flux_err": np.full(12, 20.0),
            }
        )
    )
    return time.perf_counter() - t0


class BrokerWorkerPlugin(WorkerPlugin):
    """The broker's per-worker state: set up when a worker joins (now or later, e.g. when autoscaled), torn
    down when it leaves."""

    name = "alert-broker"

    def __init__(
        self,
        lc_models: tuple[ModelSpec, ...] = (),
        stamp_models: tuple[ModelSpec, ...] = (),
        log_level: str = "INFO",
        log_format: str = "text",
        ignore_sigint: bool = False,
    ) -> None:
        """``ignore_sigint``: the workers are the driver's own processes (a LocalCluster). Ctrl-C in a terminal
        signals the whole process group: the driver stops gracefully (pipeline/shutdown.py) and needs its
        workers to finish the batches in flight, so they ignore SIGINT and stop when the driver closes them."""
        self.ignore_sigint = ignore_sigint
        self.lc_models = lc_models
        self.stamp_models = stamp_models
        self.log_level = log_level
        self.log_format = log_format
        self.resources: WorkerResources | None = None  # made on the worker (it holds locks and handles)
        self.startup_seconds: dict[str, float] = {}

    def setup(self, worker) -> None:  # noqa: ARG002 - the plugin interface
        if self.ignore_sigint and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        configure_logging(self.log_level, self.log_format)
        if self.log_level.upper() != "DEBUG":
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
        self.resources = WorkerResources()
        self.startup_seconds = {"science": warm_up_science()}
        res = self.resources
        loads = [(f"stamp_model {m.name}", m, res.stamp_model) for m in self.stamp_models]
        loads += [(f"lc_model {m.name}", m, res.lc_model) for m in self.lc_models]
        for kind, spec, loader in loads:
            if spec is not None:
                t = time.perf_counter()
                loader(spec)
                self.startup_seconds[kind] = time.perf_counter() - t
        log.info("worker ready", extra={"startup_seconds": self.startup_seconds})

    def teardown(self, worker) -> None:  # noqa: ARG002 - the plugin interface
        if self.resources is not None:
            self.resources.clear()
            self.resources = None


_PROCESS = WorkerResources()


def resources() -> WorkerResources:
    """The resources of the worker running this task, or this process's own outside Dask."""
    try:
        worker = get_worker()
    except ValueError:
        return _PROCESS
    plugin = worker.plugins.get(BrokerWorkerPlugin.name)
    if isinstance(plugin, BrokerWorkerPlugin) and plugin.resources is not None:
        return plugin.resources
    return _PROCESS


def startup_seconds(dask_worker=None) -> dict[str, float]:
    """What the plugin's set-up cost this worker (``client.run(startup_seconds)`` reports worker start-to-ready
    time: Dask passes ``dask_worker``)."""
    if dask_worker is None:
        try:
            dask_worker = get_worker()
        except ValueError:
            return {}
    plugin = dask_worker.plugins.get(BrokerWorkerPlugin.name)
    return dict(plugin.startup_seconds) if isinstance(plugin, BrokerWorkerPlugin) else {}
