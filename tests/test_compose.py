"""deploy/docker-compose.yml, checked without a Docker engine.

No engine runs here, so these tests read the compose file the way compose would and
check what would break a `docker compose up`: a mount of a file that does not exist, a
config the exporter rejects, a rule file Prometheus cannot load, an Alertmanager secret
that is not mounted, a Grafana datasource the dashboards do not use. They also pin the
promise that compose runs the same config, rules, dashboards and routing as scripts/demo.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from exporter.config import validate

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"compose has no {name} service"
    return dict(services[name])


def mounts(name: str) -> dict[str, Path]:
    """Container path → host path for every bind mount of a service (a named volume must
    be declared at the top level, and is not a host path)."""
    out: dict[str, Path] = {}
    for volume in service(name).get("volumes", []):
        host, container, *_ = str(volume).split(":")
        if not host.startswith((".", "/")):
            assert host in (compose().get("volumes") or {}), f"{name}: volume {host} undeclared"
            continue
        assert host.startswith("."), f"{name}: {volume} is not a relative bind mount"
        out[container] = (DEPLOY / host).resolve()
    return out


def host_path(name: str, container_path: str) -> Path:
    """Where a path inside a container comes from on the host, through its mounts."""
    wanted = PurePosixPath(container_path)
    for target, host in mounts(name).items():
        base = PurePosixPath(target)
        if wanted == base or base in wanted.parents:
            return host / wanted.relative_to(base)
    raise AssertionError(f"{name}: nothing is mounted at {container_path}")


def test_every_service_the_stack_needs_is_there() -> None:
    services = set(compose()["services"])
    wanted = {
        "postgres",
        "redis",
        "memcached",
        "mysql",
        "minio",
        "etcd",
        "nats",
        "badger-host",
        "exporter",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    assert wanted <= services, f"missing: {sorted(wanted - services)}"


@pytest.mark.parametrize("name", sorted(yaml.safe_load(COMPOSE.read_text())["services"]))
def test_every_bind_mount_exists(name: str) -> None:
    for container, host in mounts(name).items():
        assert host.exists(), f"{name}: {host} (mounted at {container}) does not exist"


def test_postgres_preloads_pg_stat_statements_and_creates_the_monitor_role() -> None:
    command = " ".join(service("postgres")["command"])
    assert "shared_preload_libraries=pg_stat_statements" in command
    init = host_path("postgres", "/docker-entrypoint-initdb.d/10-sparki.sql").read_text()
    assert "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" in init
    role = re.search(r"CREATE ROLE (\w+) LOGIN PASSWORD '([^']+)'", init)
    assert role, "the init script creates no login role"
    env = service("exporter")["environment"]
    assert role.group(2) == env["PG_PASSWORD"], "the exporter's password is not the role's"
    assert f"postgresql://{role.group(1)}@" in (DEPLOY / "sparki.yml").read_text()


def test_exporter_is_built_from_the_dockerfile_and_runs_the_demo_config() -> None:
    exporter = service("exporter")
    assert (DEPLOY / exporter["build"] / "Dockerfile").resolve() == ROOT / "Dockerfile"
    command = exporter["command"]
    config = command[command.index("--config") + 1]
    assert host_path("exporter", config) == (DEPLOY / "sparki.yml").resolve()
    # The local demo starts the exporter on the very same file.
    assert '"deploy" / "sparki.yml"' in (ROOT / "devstack" / "demo.py").read_text()


def test_the_exporter_config_validates_with_the_compose_environment() -> None:
    exporter = service("exporter")
    env = {k: str(v) for k, v in exporter["environment"].items()}
    cfg = validate(yaml.safe_load((DEPLOY / "sparki.yml").read_text()), env)
    pg, redis_target, s3 = cfg.postgres[0], cfg.redis[0], cfg.s3[0]
    # Every target points at its compose service, not at the demo's localhost defaults.
    assert "@postgres:5432/" in pg.dsn
    assert "redis:6379" in str(redis_target.url)
    assert cfg.memcached[0].nodes == ["memcached:11211"]
    assert cfg.etcd[0].endpoints == ["http://etcd:2379"]
    assert cfg.nats[0].url == "nats://nats:4222"
    assert cfg.nats[0].monitor_url == "http://nats:8222"
    # The exporter reads the Badger host's directory through the volume they share.
    lsm = cfg.lsm[0]
    assert lsm.expvar_url == "http://badger-host:8080/debug/vars"
    shared = [v for v in service("badger-host")["volumes"] if not v.startswith(".")]
    assert [v.split(":")[1] for v in shared] == [str(lsm.directory)]
    assert f"badger-data:{lsm.directory}:ro" in service("exporter")["volumes"]
    assert str(s3.endpoint_url).startswith("http://minio:9000")
    assert s3.bucket in service("minio-bucket")["entrypoint"][-1]
    assert not s3.inventory.enabled  # MinIO's usage metrics give the size instead
    # MinIO serves its metrics without a token here, so the traffic panels have data.
    assert (
        s3.minio.enabled
        and service("minio")["environment"]["MINIO_PROMETHEUS_AUTH_TYPE"] == "public"
    )
    minio_env = service("minio")["environment"]
    assert env["S3_ACCESS_KEY"] == minio_env["MINIO_ROOT_USER"]
    assert env["S3_SECRET_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]


def test_prometheus_loads_the_shipped_rules_and_scrapes_the_exporter(tmp_path: Path) -> None:
    prom_cfg_path = host_path("prometheus", "/etc/prometheus/prometheus.yml")
    prom_cfg = yaml.safe_load(prom_cfg_path.read_text())
    loaded = {host_path("prometheus", f) for f in prom_cfg["rule_files"]}
    shipped = set((ROOT / "rules").glob("*.rules.yml"))
    assert loaded == {p.resolve() for p in shipped}, "compose loads other rules than the demo"

    targets = [
        t for job in prom_cfg["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    ]
    command = service("exporter")["command"]
    listen = command[command.index("--web.listen-address") + 1]
    assert f"exporter{listen}" in targets
    am_targets = prom_cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am_targets == ["alertmanager:9093"]

    # promtool checks the file as Prometheus would, with rule paths mapped to the host.
    # Missing promtool fails here as in every other promtool test (scripts/setup installs it).
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    local = dict(prom_cfg, rule_files=[str(p) for p in sorted(loaded)])
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(local))
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_runs_the_shipped_routing_with_its_secrets_mounted() -> None:
    am = service("alertmanager")
    config_arg = next(a for a in am["command"] if a.startswith("--config.file="))
    config = host_path("alertmanager", config_arg.split("=", 1)[1])
    assert config == (DEPLOY / "alertmanager" / "alertmanager.yml").resolve()
    assert "deploy/alertmanager/alertmanager.yml" in (ROOT / "devstack" / "demo.py").read_text()
    files = re.findall(r"\w+_file:\s*(\S+)", config.read_text())
    assert files, "the routing reads no secret from a file"
    for path in files:
        assert host_path("alertmanager", path).is_file(), f"{path} is not mounted"


def test_grafana_provisions_prometheus_and_every_shipped_dashboard() -> None:
    provisioning = host_path("grafana", "/etc/grafana/provisioning")
    datasources = [
        ds
        for f in sorted((provisioning / "datasources").glob("*.y*ml"))
        for ds in yaml.safe_load(f.read_text())["datasources"]
    ]
    prom = [ds for ds in datasources if ds["type"] == "prometheus"]
    assert prom and prom[0]["url"] == "http://prometheus:9090"
    providers = [
        p
        for f in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for p in yaml.safe_load(f.read_text())["providers"]
    ]
    folders = {host_path("grafana", p["options"]["path"]) for p in providers}
    assert folders == {(ROOT / "dashboards").resolve()}
    boards = sorted((ROOT / "dashboards").glob("*.json"))
    assert boards, "no dashboards shipped"
    for board in boards:
        text = board.read_text()
        # Panels use the ${datasource} variable, which a provisioned default resolves.
        assert '"type": "datasource"' in text and '"query": "prometheus"' in text, board.name
