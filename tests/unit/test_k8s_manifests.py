"""The Kubernetes manifests stay in step with the code: real settings, a CLI that accepts the driver's args."""

from __future__ import annotations

from pathlib import Path

import yaml

from alert_broker.pipeline.cli import build_parser
from alert_broker.pipeline.config import ENV_PREFIX, settings_fields

K8S = Path(__file__).resolve().parents[2] / "k8s"


def _docs():
    out = []
    for f in sorted(K8S.glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        out.extend(d for d in yaml.safe_load_all(f.read_text()) if d)
    return out


def test_every_manifest_is_listed_in_kustomization():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {f.name for f in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == files


def test_settings_env_vars_are_real_settings():
    names = {ENV_PREFIX + f.name.upper() for f in settings_fields()}
    for doc in _docs():
        if doc["kind"] in ("ConfigMap", "Secret"):
            data = doc.get("data") or doc.get("stringData") or {}
            unknown = set(data) - names
            assert not unknown, f"{doc['metadata']['name']} sets unknown settings {unknown}"


def test_driver_args_parse_and_autoscaler_targets_cluster():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _docs()}
    driver = docs[("Deployment", "broker-driver")]
    args = driver["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "broker"
    parsed = build_parser().parse_args(args[1:])
    assert float(parsed.kafka_idle_stop_s) == 0 and parsed.progress is False
    auto = docs[("DaskAutoscaler", "broker")]
    assert auto["spec"]["cluster"] == "broker" and auto["spec"]["minimum"] <= auto["spec"]["maximum"]
    assert ("DaskCluster", "broker") in docs


def test_the_driver_is_pid_1_and_has_time_to_finish_its_batches_on_sigterm():
    """SIGTERM reaches the broker itself (no shell in between: the image's ENTRYPOINT is empty and the args start
    with ``broker``), and the pod waits longer than the kubelet's default 30 s before SIGKILL."""
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _docs()}
    pod = docs[("Deployment", "broker-driver")]["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"][0] == "broker" and "command" not in pod["containers"][0]
    assert "ENTRYPOINT []" in (K8S.parent / "Dockerfile").read_text()
    assert pod["terminationGracePeriodSeconds"] >= 60
