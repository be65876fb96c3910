"""How a LocalCluster starts its worker processes.

Dask's default, ``spawn``, starts every worker as a fresh interpreter that imports the whole worker stack itself
(pandas, pyarrow, scikit-learn, XGBoost, ONNX Runtime, the broker's science: about 4 s of CPU each), every time a
worker starts: at the run's start, when a worker dies and its nanny restarts it, when ``--adapt`` adds one.
``forkserver`` starts one server process per driver that imports that stack once; each worker is then a fork of
it, ready in about a second. The driver starts the server at the top of a run, with its environment of that
moment, so each worker is also handed the driver's environment as it is when the worker starts (what ``spawn``
gives it). Kubernetes workers are untouched: their pods run ``dask worker`` themselves.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os

WORKER_START_METHODS = ("forkserver", "spawn")

# what a worker imports to run the broker's tasks; the fork server imports them once (``distributed`` first, as
# Dask's own preload does)
WORKER_MODULES = (
    "distributed",
    "alert_broker.pipeline.resources",
    "alert_broker.pipeline.tasks",
    "alert_broker.pipeline.chain",
)


def available(method: str) -> str:
    """``method``, or ``spawn`` where the platform has no fork server (Windows)."""
    if method not in WORKER_START_METHODS:
        raise ValueError(
            f"worker start method must be one of {', '.join(WORKER_START_METHODS)}, not {method!r}"
        )
    return method if method in multiprocessing.get_all_start_methods() else "spawn"


def worker_start_config(method: str) -> dict[str, str]:
    """The Dask configuration that makes a LocalCluster's nannies start workers with ``method``."""
    return {"distributed.worker.multiprocessing-method": available(method)}


def prepare_worker_start(method: str) -> dict[str, str]:
    """Get ``method`` ready under the current Dask configuration (set it with ``worker_start_config`` first) and
    return the environment to hand each worker (empty for ``spawn``: a spawned worker inherits it anyway).

    For ``forkserver`` the server's preload list becomes the broker's worker modules and the server is started
    (if this process does not run one already: a running server keeps its list, and workers then import the
    rest themselves, as spawned ones do)."""
    if available(method) != "forkserver":
        return {}
    import dask  # lazy: the settings import this module; no Dask for --help
    from distributed.utils import get_mp_context  # lazy: the settings import this module; no Dask for --help

    # what every nanny puts into the driver's environment before it starts a worker (one BLAS / OpenMP thread,
    # the allocator's trim threshold, one hash seed for every worker), put there before the server starts: the
    # server imports numpy with them, and each worker is forked from it rather than started afresh
    pre_spawn = dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}
    for name, value in pre_spawn.items():
        if value is not None:
            os.environ.setdefault(name, str(value))
    if os.environ.get("PYTHONHASHSEED") in (None, "0"):
        os.environ["PYTHONHASHSEED"] = "6640"  # the seed Dask's nanny gives its workers
    # Dask sets its own preload list on first use; ours replaces it
    get_mp_context().set_forkserver_preload(list(WORKER_MODULES))
    # start the server now: it imports while the caller goes on (e.g. starts PostgreSQL), not when the first
    # worker is wanted
    multiprocessing.forkserver.ensure_running()
    return dict(os.environ)
