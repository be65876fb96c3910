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
