"""The worker plugin on a real LocalCluster: set up on every worker (also one that joins later), resources
owned by it, torn down when removed."""

from __future__ import annotations

import pytest
from distributed import Client, LocalCluster, get_worker

from alert_broker.pipeline.resources import BrokerWorkerPlugin, LakeSpec, resources, startup_seconds

pytestmark = pytest.mark.integration


def _uses_plugin_resources(url: str) -> bool:
    plugin = get_worker().plugins[BrokerWorkerPlugin.name]  # inside a task, as the pipeline's tasks run
    lake = resources().lake(LakeSpec(url))
    return resources() is plugin.resources and plugin.resources.lake(LakeSpec(url)) is lake


def test_plugin_sets_up_every_worker_and_tears_down(tmp_path):
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0", processes=True) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(BrokerWorkerPlugin(log_level="WARNING"))
        first = client.run(startup_seconds)
        assert all(s["science"] > 0 for s in first.values())
        assert client.submit(_uses_plugin_resources, str(tmp_path), pure=False).result()
        cluster.scale(2)
        client.wait_for_workers(2)
        later = client.run(startup_seconds)
        assert len(later) == 2 and all("science" in s for s in later.values())
        client.unregister_worker_plugin(BrokerWorkerPlugin.name)
        plugins = client.run(lambda dask_worker: BrokerWorkerPlugin.name in dask_worker.plugins)
        assert not any(plugins.values())


def test_outside_dask_one_process_instance():
    assert resources() is resources()
    assert startup_seconds() == {}


def _worker_view(dask_worker) -> dict:  # noqa: ARG001 - Dask passes the worker
    import os
    import sys

    from threadpoolctl import threadpool_info

    return {
        "parent": os.getppid(),
        "env": os.environ.get("BROKER_TEST_WORKER_ENV"),
        "preloaded": "alert_broker.pipeline.tasks" in sys.modules,
        "blas_threads": {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"},
    }


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_worker_start_methods(method, monkeypatch):
    """A forkserver worker is forked from a server that imported the worker code already, not from the driver,
    and still gets the driver's environment as it is when the worker starts, and one BLAS thread, as a spawned
    worker does."""
    import os

    import dask

    from alert_broker.pipeline.worker_start import prepare_worker_start, worker_start_config

    with pytest.raises(ValueError, match="forkserver"):
        worker_start_config("fork")
    for value in ("first", "second"):  # the second cluster reuses the server the first one started
        monkeypatch.setenv("BROKER_TEST_WORKER_ENV", value)
        with dask.config.set(worker_start_config(method)):
            env = prepare_worker_start(method)
            with (
                LocalCluster(
                    n_workers=1, threads_per_worker=1, dashboard_address=":0", processes=True, env=env or None
                ) as cluster,
                Client(cluster) as client,
            ):
                (view,) = client.run(_worker_view).values()
        assert view["env"] == value
        assert (view["parent"] != os.getpid()) == (method == "forkserver")
        assert view["preloaded"] == (method == "forkserver")
        assert view["blas_threads"] == {1}  # numpy's BLAS loaded under the nanny's one-thread environment
