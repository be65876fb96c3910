"""Kubernetes, offline: the k8s/ manifests against the Kubernetes schemas (kubernetes-validate) and the Dask
operator's CRD schemas shipped in dask-kubernetes, and the DaskCluster spec pipeline/kube.py generates for
``broker run-night --cluster kubernetes`` against the same CRD schema. No cluster, no network.

The CRD schemas are checked the way ``kubectl apply`` (strict field validation, the default) has the API server
check them: unknown fields are errors, so every object of the schema is closed (``additionalProperties: false``)
unless it says otherwise. tests/unit/test_k8s_manifests.py checks the settings and the driver's CLI args.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import importlib.resources
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import dask_kubernetes.operator
import jsonschema
import kubernetes_validate
import pytest
import yaml
from dask.utils import parse_bytes
from kubernetes_validate.utils import SchemaNotFoundError, latest_version

from alert_broker.pipeline import kube
from alert_broker.pipeline.config import ENV_PREFIX, settings_fields

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
DASK_API = "kubernetes.dask.org/v1"
#: The oldest Kubernetes the manifests promise to apply on (kubectl's server-side validation) and the newest
#: kubernetes-validate ships schemas for.
K8S_VERSIONS = ("1.30.0", latest_version())
CRD_DIR = "operator/deployment/helm/dask-kubernetes-operator/crds"  # full schemas (no $ref), as helm installs


def _resources() -> list[tuple[str, dict]]:
    """(file, resource) of every resource kustomize applies (`kubectl apply -k k8s/`)."""
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    out = []
    for name in kust["resources"]:
        out.extend((name, doc) for doc in yaml.safe_load_all((K8S / name).read_text()) if doc)
    return out


def _by_kind(kind: str) -> list[dict]:
    return [r for _, r in _resources() if r["kind"] == kind]


def _one(kind: str) -> dict:
    found = _by_kind(kind)
    assert len(found) == 1, f"expected one {kind} in k8s/, found {len(found)}"
    return found[0]


def _named(kind: str, name: str) -> dict:
    found = [r for r in _by_kind(kind) if r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name} in k8s/, found {len(found)}"
    return found[0]


def _driver() -> dict:
    return _named("Deployment", "broker-driver")


def _pod_spec(resource: dict) -> dict:
    """The pod template's spec of a Deployment, a Job or a CronJob."""
    if resource["kind"] == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return resource["spec"]["template"]["spec"]


# --- the operator's CRD schemas -------------------------------------------------------------------------------


def _closed(schema: Any) -> Any:
    """The schema with every object closed to unknown fields (the API server's strict field validation)."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {name: _closed(sub) for name, sub in out["properties"].items()}
        if "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = _closed(out[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in out:
            out[key] = _closed(out[key])
    return out


@functools.cache
def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """(apiVersion, kind) -> a validator of the operator's CRD schema, from the installed dask-kubernetes."""
    folder = importlib.resources.files("dask_kubernetes").joinpath(CRD_DIR)
    out = {}
    for path in folder.iterdir():
        if not path.name.endswith(".yaml"):
            continue
        crd = yaml.safe_load(path.read_text())
        assert crd["kind"] == "CustomResourceDefinition", path.name
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _closed(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
            api_version = f"{group}/{version['name']}"
            schema["properties"].update(
                apiVersion={"const": api_version},
                kind={"const": kind},
                metadata={"type": "object"},  # ObjectMeta: checked by the API server, not by the CRD
            )
            schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
            jsonschema.Draft202012Validator.check_schema(schema)
            out[(api_version, kind)] = jsonschema.Draft202012Validator(schema)
    assert {k for _, k in out} >= {"DaskCluster", "DaskAutoscaler", "DaskWorkerGroup"}, sorted(out)
    return out


def crd_errors(resource: dict) -> list[str]:
    key = (resource.get("apiVersion"), resource.get("kind"))
    validator = crd_validators().get(key)
    if validator is None:
        return [f"no CRD of the Dask operator defines {key}"]
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(resource), key=lambda e: list(map(str, e.absolute_path)))
    ]


def k8s_errors(resource: dict, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(resource, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}"]
    return []


# --- the manifests --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(version):
    checked = set()
    for name, resource in _resources():
        if resource["apiVersion"].startswith("kubernetes.dask.org/"):
            with pytest.raises(SchemaNotFoundError):  # a custom resource: checked against the CRDs below
                kubernetes_validate.validate(resource, version, strict=True)
            continue
        errors = k8s_errors(resource, version)
        assert not errors, (
            f"{name}: {resource['kind']}/{resource['metadata']['name']} (Kubernetes {version}): {errors}"
        )
        checked.add(resource["kind"])
    assert checked >= {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "CronJob"}


def test_dask_resources_validate_against_the_operators_crds():
    kinds = []
    for name, resource in _resources():
        if resource["apiVersion"].startswith("kubernetes.dask.org/"):
            errors = crd_errors(resource)
            assert not errors, f"{name}: {resource['kind']}/{resource['metadata']['name']}: {errors}"
            kinds.append(resource["kind"])
    assert sorted(kinds) == ["DaskAutoscaler", "DaskCluster"]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["spec"]["worker"].update(replica=2), "'replica' was unexpected"),
        (lambda c: c["spec"]["worker"].update(replicas="2"), "is not of type 'integer'"),
        (
            lambda c: c["spec"]["worker"]["spec"]["containers"][0]["resources"]["limits"].update(cpu=1),
            "is not of type",
        ),
        (
            lambda c: c["spec"]["scheduler"]["service"]["ports"][0].update(targetPort=8786),
            "is not of type 'string'",
        ),
        (
            lambda c: c["spec"]["scheduler"]["spec"]["containers"][0].pop("name"),
            "'name' is a required property",
        ),
        (lambda c: c.update(apiVersion="kubernetes.dask.org/v2"), "no CRD"),
    ],
    ids=[
        "unknown-field",
        "replicas-string",
        "cpu-integer",
        "port-integer",
        "no-container-name",
        "bad-version",
    ],
)
def test_the_crd_check_catches_mistakes(mutate, expected):
    cluster = copy.deepcopy(_one("DaskCluster"))
    assert crd_errors(cluster) == []
    mutate(cluster)
    errors = crd_errors(cluster)
    assert errors and any(expected in e for e in errors), errors


def test_the_kubernetes_check_catches_mistakes():
    driver = copy.deepcopy(_driver())
    container = driver["spec"]["template"]["spec"]["containers"][0]
    container["port"] = [{"containerPort": 9108}]  # "ports"
    assert any("'port' was unexpected" in e for e in k8s_errors(driver, K8S_VERSIONS[0]))
    del container["port"]
    container["ports"][0]["containerPort"] = "9108"
    assert any("is not of type 'integer'" in e for e in k8s_errors(driver, K8S_VERSIONS[0]))


def test_the_autoscaler_and_the_driver_find_the_cluster():
    cluster, autoscaler = _one("DaskCluster"), _one("DaskAutoscaler")
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    assert autoscaler["metadata"]["namespace"] == namespace and autoscaler["spec"]["cluster"] == name
    assert (
        1
        <= autoscaler["spec"]["minimum"]
        <= cluster["spec"]["worker"]["replicas"]
        <= autoscaler["spec"]["maximum"]
    )
    # the operator names the scheduler's Service "<cluster>-scheduler"; the driver reaches it from the ConfigMap
    settings = _one("ConfigMap")
    assert settings["data"]["BROKER_SCHEDULER"] == f"tcp://{name}-scheduler.{namespace}.svc:8786"
    for _, resource in _resources():
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == namespace, resource["metadata"]


def _containers(resource: dict) -> list[dict]:
    if resource["kind"] == "DaskCluster":
        spec = resource["spec"]
        return spec["worker"]["spec"]["containers"] + spec["scheduler"]["spec"]["containers"]
    return _pod_spec(resource)["containers"]


#: The resources whose pods run the broker with credentials: the driver, the API and the jobs.
BROKER_PODS = ("Deployment", "CronJob")


def test_references_resolve_and_the_workers_get_no_secret():
    configmaps = {c["metadata"]["name"] for c in _by_kind("ConfigMap")}
    secret = _one("Secret")
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    settings = {ENV_PREFIX + f.name.upper() for f in settings_fields()}
    pods = [r for kind in BROKER_PODS for r in _by_kind(kind)]
    assert (
        len(pods) == 6
    )  # the driver, the API, the integrity, re-scoring, lake compaction and retention jobs
    for resource in pods:
        pod = _pod_spec(resource)
        mounted = {m["name"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert mounted <= {v["name"] for v in pod.get("volumes", [])}, resource["metadata"]["name"]
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] == secret["metadata"]["name"]
                assert {item["key"] for item in volume["secret"].get("items", [])} <= secret_keys
                # a *_FILE setting points at a file of the mounted Secret
                paths = {item["path"] for item in volume["secret"].get("items", [])}
                for container in pod["containers"]:
                    for var in container.get("env", []):
                        if var["name"].endswith("_FILE"):
                            assert var["value"].rsplit("/", 1)[-1] in paths, (
                                resource["metadata"]["name"],
                                var,
                            )
    for resource in (*pods, _one("DaskCluster")):
        for container in _containers(resource):
            for source in container.get("envFrom", []):
                assert source.get("configMapRef", {}).get("name") in configmaps, source
            for var in container.get("env", []):
                assert var["name"] in settings, f"{var['name']} is not a broker setting"
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret_keys, ref
    for container in _containers(_one("DaskCluster")):
        text = yaml.safe_dump(container)
        assert "secretRef" not in text and "secretKeyRef" not in text, "credentials do not go to the workers"


def test_prometheus_scrapes_the_drivers_metrics_port():
    template = _driver()["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"] == 9108


def test_the_driver_serves_metrics_on_the_scraped_port():
    """The driver's metrics are off by default (--metrics-port 0): the Deployment turns them on at the port
    Prometheus scrapes."""
    template = _driver()["spec"]["template"]
    args = template["spec"]["containers"][0]["args"]
    env = {ENV_PREFIX + k: v for k, v in {f.name.upper(): f.default for f in settings_fields()}.items()}
    env.update(_one("ConfigMap")["data"])
    env.update(
        {v["name"]: v["value"] for v in template["spec"]["containers"][0].get("env", []) if "value" in v}
    )
    port = _arg(args, "--metrics-port") if "--metrics-port" in args else env[ENV_PREFIX + "METRICS_PORT"]
    assert int(port) == int(template["metadata"]["annotations"]["prometheus.io/port"]) != 0


def test_the_image_carries_the_models():
    """`pip install .` in the Dockerfile installs alert_broker.models' package data: every shipped model file."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["alert_broker.models"]
    models = REPO / config["tool"]["setuptools"]["package-dir"]["alert_broker.models"]
    files = [p.relative_to(models).as_posix() for p in models.rglob("*") if p.is_file()]
    data = [f for f in files if not f.endswith((".py", ".pyc")) and "__pycache__" not in f]
    assert data, "no model files"
    missed = [f for f in data if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert not missed, f"model files the wheel (and so the image) would leave out: {missed}"
    assert re.search(r"^COPY models ", (REPO / "Dockerfile").read_text(), re.M)


# --- the spec of `broker run-night --cluster kubernetes` ------------------------------------------------------

_QUANTITY = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}


def _bytes(quantity: str) -> int:
    number, suffix = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", quantity).groups()
    return int(float(number) * _QUANTITY.get(suffix, 1))


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {
            "name": "night-20260101",
            "namespace": "alert-broker",
            "n_workers": 0,
            "env": {"BROKER_LOG_LEVEL": "DEBUG"},
        },
    ],
    ids=["defaults", "options"],
)
def test_the_generated_spec_validates_against_the_crd(kwargs):
    spec = kube.cluster_spec(**kwargs)
    assert crd_errors(spec) == []
    assert spec["metadata"]["name"] == kwargs.get("name", kube.DEFAULT_NAME)
    assert spec["spec"]["worker"]["replicas"] == kwargs.get("n_workers", 2)
    assert spec["metadata"].get("namespace") == kwargs.get("namespace")


def test_the_generated_spec_runs_the_broker_image_and_dask():
    image = "registry.example.org/alert-broker:1.2.3"
    spec = kube.cluster_spec(image=image)
    worker = spec["spec"]["worker"]["spec"]["containers"][0]
    scheduler = spec["spec"]["scheduler"]["spec"]["containers"][0]
    assert worker["image"] == scheduler["image"] == image
    assert worker["args"][:2] == ["dask", "worker"] and _arg(worker["args"], "--nthreads") == "1"
    assert scheduler["args"][:2] == ["dask", "scheduler"]
    # the commands are console scripts of this environment (the image installs the same package set)
    bindir = Path(sys.executable).parent
    assert (bindir / worker["args"][0]).exists() and (bindir / scheduler["args"][0]).exists()
    # the worker's memory limit for Dask is the container's, and the container's requests are its limits
    limits = worker["resources"]["limits"]
    assert parse_bytes(_arg(worker["args"], "--memory-limit")) == _bytes(limits["memory"])
    assert worker["resources"]["requests"] == limits
    # settings from the ConfigMap of k8s/settings.yaml, no Secret
    assert worker["envFrom"] == [
        {"configMapRef": {"name": _one("ConfigMap")["metadata"]["name"], "optional": True}}
    ]
    assert "secret" not in yaml.safe_dump(spec).lower()


def test_the_generated_spec_matches_the_manifest():
    manifest = _one("DaskCluster")
    spec = kube.cluster_spec(name=manifest["metadata"]["name"], namespace=manifest["metadata"]["namespace"])
    for role in ("worker", "scheduler"):
        ours = spec["spec"][role]["spec"]["containers"][0]
        theirs = manifest["spec"][role]["spec"]["containers"][0]
        assert ours["image"] == theirs["image"] == kube.DEFAULT_IMAGE
        assert ours["args"][:2] == theirs["args"][:2]
        assert ours["resources"] == theirs["resources"]
        assert spec["spec"][role]["metadata"] == manifest["spec"][role]["metadata"]  # Prometheus annotations
        assert {p["name"]: p["containerPort"] for p in ours["ports"]} == {
            p["name"]: p["containerPort"] for p in theirs["ports"]
        }
    ours = spec["spec"]["worker"]["spec"]["containers"][0]["args"]
    theirs = manifest["spec"]["worker"]["spec"]["containers"][0]["args"]
    assert _arg(ours, "--nthreads") == _arg(theirs, "--nthreads")
    assert parse_bytes(_arg(ours, "--memory-limit")) == parse_bytes(_arg(theirs, "--memory-limit"))
    assert spec["spec"]["scheduler"]["service"] == manifest["spec"]["scheduler"]["service"]


@pytest.mark.parametrize("kwargs", [{"name": "Broker_1"}, {"name": "x" * 80}, {"n_workers": -1}])
def test_the_generated_spec_refuses_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        kube.cluster_spec(**kwargs)


class FakeKubeCluster:
    """Stands in for dask_kubernetes.operator.KubeCluster: records what the driver asked for."""

    made: list[FakeKubeCluster] = []

    def __init__(self, *, custom_cluster_spec, namespace, quiet):
        self.spec, self.namespace, self.quiet = custom_cluster_spec, namespace, quiet
        self.adapted, self.closed = None, False
        FakeKubeCluster.made.append(self)

    def adapt(self, minimum=None, maximum=None):
        if self.spec["metadata"]["name"] == "fails-to-adapt":
            raise RuntimeError("no DaskAutoscaler CRD")
        self.adapted = (minimum, maximum)

    def close(self):
        self.closed = True


@pytest.fixture
def fake_operator(monkeypatch):
    FakeKubeCluster.made = []
    monkeypatch.setattr(dask_kubernetes.operator, "KubeCluster", FakeKubeCluster)
    return FakeKubeCluster.made


def test_start_kube_cluster_creates_the_spec_and_adapts(fake_operator):
    cluster = kube.start_kube_cluster("broker", "alert-broker:2", "alert-broker", 1, adapt=(2, 8))
    assert fake_operator == [cluster] and cluster.namespace == "alert-broker"
    assert cluster.adapted == (2, 8) and not cluster.closed
    assert cluster.spec["spec"]["worker"]["replicas"] == 2  # the first workers within the bounds
    assert cluster.spec["spec"]["worker"]["spec"]["containers"][0]["image"] == "alert-broker:2"
    assert crd_errors(cluster.spec) == []
    fixed = kube.start_kube_cluster("broker", "alert-broker:2", None, 3, adapt=None)
    assert fixed.adapted is None and fixed.spec["spec"]["worker"]["replicas"] == 3


def test_start_kube_cluster_refuses_bad_bounds_and_closes_on_failure(fake_operator):
    for bounds in [(3, 1), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError):
            kube.start_kube_cluster("broker", kube.DEFAULT_IMAGE, None, 2, adapt=bounds)
    assert fake_operator == []  # refused before anything was created
    with pytest.raises(RuntimeError):
        kube.start_kube_cluster("fails-to-adapt", kube.DEFAULT_IMAGE, None, 2, adapt=(1, 4))
    assert [c.closed for c in fake_operator] == [True]


# --- the examples of docs/kubernetes.md -----------------------------------------------------------------------

#: Kinds of the examples that neither Kubernetes' schemas nor the Dask operator's CRDs describe.
NOT_VALIDATED = ("monitoring.coreos.com/",)


def test_the_yaml_examples_of_the_docs_validate():
    text = (REPO / "docs" / "kubernetes.md").read_text()
    blocks = re.findall(r"^```yaml\n(.*?)^```", text, re.M | re.S)
    kinds = []
    for block in blocks:
        for doc in yaml.safe_load_all(block):
            if not isinstance(doc, dict) or "kind" not in doc:
                continue  # a fragment (annotations) or Prometheus' own configuration
            kinds.append(doc["kind"])
            if doc["apiVersion"].startswith(NOT_VALIDATED):
                continue
            if doc["apiVersion"].startswith("kubernetes.dask.org/"):
                errors = crd_errors(doc)
            else:
                errors = k8s_errors(doc, K8S_VERSIONS[0])
            assert not errors, f"docs/kubernetes.md: {doc['kind']}/{doc['metadata']['name']}: {errors}"
    assert {"Role", "RoleBinding", "ServiceAccount", "PodMonitor"} <= set(kinds)
