"""The monitoring bundle (k8s/monitoring: PodMonitor, PrometheusRule, Grafana dashboard) against what the driver
really exports: every series an alert or a panel asks for is one the driver's registry serves after a batch, with
the labels and label values the code writes, and the PodMonitor scrapes the driver's Pod on its metrics port."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from alert_broker.api.metrics import ApiMetrics
from alert_broker.pipeline.metrics import Metrics
from alert_broker.pipeline.report import BatchReport
from tests.conftest import REPO

K8S = REPO / "k8s"
MONITORING = K8S / "monitoring"
DURATION = re.compile(r"^\d+[smhd]$")


def _yaml(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def exported() -> dict[str, list[dict[str, str]]]:
    """Sample name -> the label sets the driver serves after an ordinary batch, a poison batch and an output
    stream (the exposition parsed back, as Prometheus would scrape it)."""
    metrics = Metrics()
    ok = BatchReport(batch_id="b0", messages=10, alerts=9, dead_letters=1)
    ok.counts.update({"alerts_ztf": 5, "alerts_lsst": 4, "published_alerts": 9, "published_filter.sn": 2})
    ok.seconds["postgres"], ok.worker_seconds["features"] = 0.2, 1.5
    poison = BatchReport(batch_id="b1", messages=3, alerts=0, dead_letters=3)
    poison.counts["poison_batches"] = 1
    metrics.observe_batch(ok, alert_latencies=[0.5, 12.0])
    metrics.observe_batch(poison)
    metrics.consumer_lag.set(5)
    metrics.workers.set(2)
    metrics.in_flight.set(1)
    api = ApiMetrics()  # the query API's, after an answer and a server error
    api.observe("/objects/{oid}", "GET", 200, 0.01)
    api.observe("/objects/{oid}", "GET", 503, 30.0)
    out: dict[str, list[dict[str, str]]] = {}
    for registry in (metrics.registry, api.registry):
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            for sample in family.samples:
                out.setdefault(sample.name, []).append(dict(sample.labels))
    return out


def _rules() -> list[dict]:
    (doc,) = _yaml(MONITORING / "prometheus-rules.yaml")
    assert doc["kind"] == "PrometheusRule" and doc["metadata"]["namespace"] == "alert-broker"
    return [r for g in doc["spec"]["groups"] for r in g["rules"]]


def _dashboard() -> dict:
    return json.loads((MONITORING / "grafana-dashboard.json").read_text())


def _expressions() -> list[str]:
    exprs = [str(r["expr"]) for r in _rules()]
    exprs += [t["expr"] for p in _dashboard()["panels"] for t in p["targets"]]
    return exprs


def test_the_bundle_is_complete_and_apart_from_the_broker():
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    for f in kustomization["resources"] + kustomization["configMapGenerator"][0]["files"]:
        assert (MONITORING / f).is_file(), f
    # the broker's own kustomization must not need the Prometheus Operator's CRDs
    main = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert not [r for r in main["resources"] if "monitoring" in r]


def test_the_pod_monitors_scrape_the_driver_and_the_api_on_their_ports():
    monitors = {m["metadata"]["name"]: m for m in _yaml(MONITORING / "podmonitor.yaml")}
    assert set(monitors) == {"broker-driver", "broker-api"}
    for name, manifest, flag in (
        ("broker-driver", "driver.yaml", "--metrics-port"),
        ("broker-api", "api.yaml", "--port"),
    ):
        monitor = monitors[name]
        (deployment,) = [d for d in _yaml(K8S / manifest) if d["kind"] == "Deployment"]
        pod = deployment["spec"]["template"]
        for key, value in monitor["spec"]["selector"]["matchLabels"].items():
            assert pod["metadata"]["labels"][key] == value
        (container,) = pod["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
        args = container["args"]
        assert str(ports[endpoint["port"]]) == args[args.index(flag) + 1]


def test_every_series_asked_for_is_exported_with_its_labels(exported):
    recorded = {r["record"] for r in _rules() if "record" in r}
    names_seen = set()
    for expr in _expressions():
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        for name in re.findall(r"\b(alert_broker:[a-z0-9_:]+)", expr):
            assert name in recorded, (name, expr)
        for name, selector in re.findall(r"\b(alert_broker_[a-z_]+)(\{[^}]*\})?", expr):
            assert name in exported, (name, expr)
            names_seen.add(name)
            for label, op, value in re.findall(r'(\w+)\s*(=~|=)\s*"([^"]*)"', selector):
                match = (lambda v, value=value: re.fullmatch(value, v)) if op == "=~" else value.__eq__
                assert any(match(s.get(label, "")) for s in exported[name]), (name, label, value)
        # a "by (...)" keeps labels the series in the same sub-expression have
        metric_labels = {
            k for n in re.findall(r"\b(alert_broker_[a-z_]+)", expr) for s in exported[n] for k in s
        }
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            for label in (x.strip() for x in group.split(",")):
                assert label in metric_labels, (label, expr)
    # every metric the driver exports has a panel or an alert
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in exported}
    for family in families:
        assert any(n == family or n.startswith(family + "_") for n in names_seen), family


def test_alert_rules_have_durations_severities_and_words():
    rules = _rules()
    alerts = [r for r in rules if "alert" in r]
    assert len(alerts) >= 6
    for rule in alerts:
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert DURATION.match(rule.get("for", "0s")), rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    names = {r["alert"] for r in alerts}
    assert {"BrokerFallingBehind", "BrokerLatencyOverBudget", "BrokerDeadLetters", "BrokerNoWorkers",
            "BrokerApiErrors"} <= names  # fmt: skip
    latency = next(r for r in alerts if r["alert"] == "BrokerLatencyOverBudget")
    assert latency["expr"].endswith("> 60")  # Rubin's one-minute budget


def test_the_dashboard_is_grafana_json_with_a_datasource_variable():
    dash = _dashboard()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 8
    assert dash["templating"]["list"][0]["type"] == "datasource"
    cells = set()
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, panel["title"]  # panels do not overlap
                cells.add((x, y))
