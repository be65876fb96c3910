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


def _pod_spec(resource: dict) -> dict:
    if resource["kind"] == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return resource["spec"]["template"]["spec"]


def test_every_broker_container_runs_a_command_the_cli_accepts():
    """The driver, the API and the jobs: ``broker`` is PID 1 (no shell, SIGTERM reaches it) and the CLI parses
    their arguments."""
    parser = build_parser()
    seen = {}
    for doc in _docs():
        if doc["kind"] not in ("Deployment", "CronJob"):
            continue
        (container,) = _pod_spec(doc)["containers"]
        assert container["args"][0] == "broker" and "command" not in container, doc["metadata"]["name"]
        seen[doc["metadata"]["name"]] = parser.parse_args(container["args"][1:])
    assert set(seen) == {
        "broker-driver",
        "broker-api",
        "broker-integrity",
        "broker-reclassify",
        "broker-lake-compact",
        "broker-lake-expire",
    }
    assert seen["broker-lake-compact"].action == "compact"
    assert seen["broker-lake-expire"].action == "expire" and seen["broker-lake-expire"].keep_days >= 1
    assert seen["broker-integrity"].repair is True
    assert seen["broker-reclassify"].stamps is True and seen["broker-reclassify"].lc_model == "auto"
    assert seen["broker-api"].host == "0.0.0.0"


def test_the_api_service_reaches_the_api_pods_and_the_probe_asks_a_real_route():
    from alert_broker.api.app import create_app

    docs = {(d["kind"], d["metadata"]["name"]): d for d in _docs()}
    api, service = docs[("Deployment", "broker-api")], docs[("Service", "broker-api")]
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert api["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = api["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    port = container["args"][container["args"].index("--port") + 1]
    assert ports[container["readinessProbe"]["httpGet"]["port"]] == int(port)
    routes = {getattr(r, "path", None) for r in create_app(None).routes}  # type: ignore[arg-type]
    assert container["readinessProbe"]["httpGet"]["path"] in routes


def test_the_integrity_job_runs_nightly_and_the_reclassify_job_only_on_demand():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _docs()}
    integrity, reclassify = docs[("CronJob", "broker-integrity")], docs[("CronJob", "broker-reclassify")]
    assert not integrity["spec"].get("suspend", False) and reclassify["spec"]["suspend"] is True
    for job in (integrity, reclassify):
        assert job["spec"]["concurrencyPolicy"] == "Forbid"  # two repairs or re-scorings never overlap
        assert job["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
        assert _pod_spec(job)["restartPolicy"] == "Never"
    minute, hour, *_ = integrity["spec"]["schedule"].split()
    assert minute.isdigit() and hour.isdigit() and 14 <= int(hour) <= 23  # after a Palomar night, UTC
    assert integrity["spec"]["timeZone"] == "Etc/UTC"
    # the lake compaction: daily, after the integrity repair (whose re-runs write per-batch files), never two
    compact = docs[("CronJob", "broker-lake-compact")]
    assert not compact["spec"].get("suspend", False) and compact["spec"]["concurrencyPolicy"] == "Forbid"
    assert compact["spec"]["timeZone"] == "Etc/UTC" and _pod_spec(compact)["restartPolicy"] == "Never"
    c_minute, c_hour, *_ = compact["spec"]["schedule"].split()
    assert (int(c_hour), int(c_minute)) > (int(hour), int(minute))
    # the raw archive's retention: daily, after both (the repair may re-run an old night's batches), never two
    expire = docs[("CronJob", "broker-lake-expire")]
    assert not expire["spec"].get("suspend", False) and expire["spec"]["concurrencyPolicy"] == "Forbid"
    assert expire["spec"]["timeZone"] == "Etc/UTC" and _pod_spec(expire)["restartPolicy"] == "Never"
    e_minute, e_hour, *_ = expire["spec"]["schedule"].split()
    assert (int(e_hour), int(e_minute)) > (int(c_hour), int(c_minute))
