"""The broker's Dask cluster on Kubernetes, started from the driver (``broker run-night --cluster kubernetes``).

The alternative to applying ``k8s/`` (docs/kubernetes.md): the driver creates a ``DaskCluster`` through the Dask
Kubernetes operator (dask-kubernetes' ``KubeCluster``), optionally with a ``DaskAutoscaler`` (``adapt``), and
deletes both when it closes the cluster. The spec is the one of ``k8s/dask-cluster.yaml``, built with the
operator's ``make_cluster_spec``: the broker image for the scheduler and the workers, one thread per worker, the
workers' settings from the ``broker-settings`` ConfigMap (optional here: a namespace without it still starts),
no Secret. ``cluster_spec`` is pure (no cluster, no network) and is checked against the operator's CRD schema in
tests/unit/test_kubernetes.py.

The operator must be installed in the cluster (its CRDs), and the driver needs a kubeconfig or a service account
allowed to create ``daskclusters`` and ``daskautoscalers`` in the namespace.
"""

from __future__ import annotations

from typing import Any

#: The image built from the repository's Dockerfile (``docker build -t alert-broker:latest .``).
DEFAULT_IMAGE = "alert-broker:latest"
DEFAULT_NAME = "broker"
#: The ConfigMap of k8s/settings.yaml (BROKER_* settings shared by the driver and the workers).
SETTINGS_CONFIGMAP = "broker-settings"
#: One core and 3 GiB per worker, as k8s/dask-cluster.yaml (a worker runs one task at a time: --nthreads 1).
WORKER_CPU = "1"
WORKER_MEMORY = "3Gi"
SCHEDULER_RESOURCES = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
#: Dask's own Prometheus metrics, on each Pod's dashboard port (docs/kubernetes.md, "Prometheus").
DASHBOARD_PORTS = {"scheduler": 8787, "worker": 8788}


def prometheus_annotations(port: int) -> dict[str, str]:
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}


#: The scheduler's command in the broker image (the operator's default, ``dask-scheduler``, is not installed).
SCHEDULER_ARGS = ["dask", "scheduler", "--host", "0.0.0.0"]


def worker_command(memory: str = WORKER_MEMORY) -> list[str]:
    """The worker's command; the operator appends ``--name $(DASK_WORKER_NAME) --dashboard --dashboard-address
    8788``. Dask reads Kubernetes quantities (``3Gi``, ``500M``) as Kubernetes does."""
    return ["dask", "worker", "--nthreads", "1", "--memory-limit", memory]


def cluster_spec(
    name: str = DEFAULT_NAME,
    image: str = DEFAULT_IMAGE,
    n_workers: int = 2,
    namespace: str | None = None,
    env: dict[str, str] | None = None,
    settings_configmap: str | None = SETTINGS_CONFIGMAP,
    worker_cpu: str = WORKER_CPU,
    worker_memory: str = WORKER_MEMORY,
    idle_timeout: int = 0,
) -> dict[str, Any]:
    """The ``DaskCluster`` resource (a dict, as ``kubectl apply`` would take it) of the broker's cluster.

    ``env``: extra variables for the scheduler and the workers (e.g. ``BROKER_*`` settings), beside the ones of
    the ``settings_configmap`` ConfigMap (loaded by the workers when it exists; ``None`` loads none).
    ``worker_cpu`` / ``worker_memory``: Kubernetes quantities, the workers' requests and limits; the memory is
    also the Dask worker's ``--memory-limit``. ``idle_timeout``: seconds after which the operator deletes an
    idle cluster (0: never).
    """
    from dask_kubernetes.exceptions import ValidationError  # lazy: kr8s, rich, httpx-ws: ~0.3 s, 300 modules
    from dask_kubernetes.operator import make_cluster_spec  # lazy: as above
    from dask_kubernetes.operator.validation import validate_cluster_name  # lazy: as above

    try:  # a lowercase RFC 1123 name, short enough for the names the operator derives from it
        validate_cluster_name(name)
    except ValidationError as err:
        raise ValueError(getattr(err, "message", None) or f"invalid DaskCluster name {name!r}") from None
    if n_workers < 0:
        raise ValueError(f"n_workers must be >= 0, got {n_workers}")
    resources = {
        "requests": {"cpu": worker_cpu, "memory": worker_memory},
        "limits": {"cpu": worker_cpu, "memory": worker_memory},
    }
    spec = make_cluster_spec(
        name=name,
        image=image,
        n_workers=n_workers,
        resources=resources,
        env=[{"name": key, "value": str(value)} for key, value in sorted((env or {}).items())],
        worker_command=worker_command(worker_memory),
        idle_timeout=idle_timeout,
    )
    if namespace:
        spec["metadata"]["namespace"] = namespace
    worker = spec["spec"]["worker"]["spec"]["containers"][0]
    worker["imagePullPolicy"] = "IfNotPresent"
    if settings_configmap:
        worker["envFrom"] = [{"configMapRef": {"name": settings_configmap, "optional": True}}]
    scheduler = spec["spec"]["scheduler"]["spec"]["containers"][0]
    scheduler["args"] = list(SCHEDULER_ARGS)
    scheduler["imagePullPolicy"] = "IfNotPresent"
    scheduler["resources"] = {kind: dict(values) for kind, values in SCHEDULER_RESOURCES.items()}
    for role, port in DASHBOARD_PORTS.items():
        spec["spec"][role]["metadata"] = {"annotations": prometheus_annotations(port)}
    for container in (worker, scheduler):
        if not container["env"]:
            del container["env"]  # null or empty: the API server would drop it anyway
    return spec


def start_kube_cluster(
    name: str = DEFAULT_NAME,
    image: str = DEFAULT_IMAGE,
    namespace: str | None = None,
    n_workers: int = 2,
    adapt: tuple[int, int] | None = None,
    env: dict[str, str] | None = None,
    settings_configmap: str | None = SETTINGS_CONFIGMAP,
    quiet: bool = True,
) -> Any:
    """Create the broker's ``DaskCluster`` (``cluster_spec``) with the Dask operator and return the
    ``dask_kubernetes.operator.KubeCluster`` connected to it (blocks until the scheduler answers).

    ``namespace``: ``None`` is the kubeconfig's current namespace. ``adapt=(minimum, maximum)`` adds a
    ``DaskAutoscaler`` scaling the workers between those bounds from the scheduler's adaptive target; the first
    ``n_workers`` are then clamped into them. Closing the returned cluster (``cluster.close()``, or leaving
    ``with``) deletes the resources it created. Give the cluster to ``distributed.Client``.
    """
    from dask_kubernetes.operator import KubeCluster  # lazy: pulls kr8s, rich, httpx-ws (~0.3 s, 300 modules)

    if adapt is not None:
        minimum, maximum = adapt
        if not 0 <= minimum <= maximum or maximum < 1:
            raise ValueError(
                f"adapt must be (minimum, maximum) with 0 <= minimum <= maximum >= 1, got {adapt}"
            )
        n_workers = min(max(n_workers, minimum), maximum)
    spec = cluster_spec(
        name=name,
        image=image,
        n_workers=n_workers,
        namespace=namespace,
        env=env,
        settings_configmap=settings_configmap,
    )
    cluster = KubeCluster(custom_cluster_spec=spec, namespace=namespace, quiet=quiet)
    if adapt is not None:
        try:
            cluster.adapt(minimum=adapt[0], maximum=adapt[1])
        except BaseException:
            cluster.close()
            raise
    return cluster
