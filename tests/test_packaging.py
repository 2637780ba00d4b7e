"""Packaging: the Dockerfile and deploy/kubernetes agree with the CLI, port, paths and user.

No Docker engine or cluster runs here, so these tests read the files and check them
against the code: every flag the manifests pass is one the CLI accepts, every path they
probe is served, the port and user are the image's, and secrets are only referenced.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import trustme
import yaml
from fixtures_core import free_port
from fixtures_pg import PgCluster
from sizing import assert_sized_from_the_measured_rss

from exporter import cli
from exporter.config import validate
from exporter.web import make_app

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"


# --- Dockerfile ----------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def build_args() -> dict[str, str]:
    """Defaults of the ARGs declared before the first FROM (usable in FROM lines)."""
    out: dict[str, str] = {}
    for ins, args in dockerfile():
        if ins == "FROM":
            break
        if ins == "ARG" and "=" in args:
            name, _, value = args.partition("=")
            out[name] = value
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in dockerfile():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def default_port() -> int:
    return int(cli.DEFAULT_LISTEN.rpartition(":")[2])


def exec_form(args: str) -> list[str]:
    value = yaml.safe_load(args)  # JSON arrays are YAML
    assert isinstance(value, list), f"not exec form: {args}"
    return [str(v) for v in value]


def test_dockerfile_is_multi_stage_on_slim_python() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    defaults = build_args()
    for stage in all_stages:
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], stage[0][1].split()[0])
        # Pinned by digest: a rebuild gets the very same base layers.
        assert re.fullmatch(r"python:3\.11-slim(-bookworm)?@sha256:[0-9a-f]{64}", image), image
    final = all_stages[-1]
    copies = [args for ins, args in final if ins == "COPY"]
    assert copies and all("--from=" in c for c in copies), "the final stage copies from build"
    # Whatever the build stage copies from the context exists and is not dockerignored.
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for stage in all_stages[:-1]:
        for ins, args in stage:
            if ins != "COPY" or "--from=" in args:
                continue
            *sources, _ = shlex.split(args)
            for source in sources:
                assert (ROOT / source).exists(), source
                assert included(source, ignore), f"{source} is excluded by .dockerignore"


def included(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    keep = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        bare = pattern[1:] if negate else pattern
        bare = bare.rstrip("/")
        if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/"):
            keep = negate
    return keep


def test_dockerignore_keeps_secrets_and_tests_out() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (".git", "tests", "bench", ".venv", "deploy", "sparki.yml", ".env"):
        assert not included(path, patterns), path
    for path in ("pyproject.toml", "README.md", "exporter", "LICENSE", "requirements.lock"):
        assert included(path, patterns), path


def test_dependencies_come_from_the_lock_in_their_own_layer_and_are_compiled() -> None:
    build = stages()[0]
    steps = [(ins, args) for ins, args in build if ins in ("COPY", "RUN")]
    text = [f"{ins} {args}" for ins, args in steps]
    lock_copy = next(i for i, t in enumerate(text) if t.startswith("COPY requirements.lock"))
    lock_install = next(i for i, t in enumerate(text) if "-r requirements.lock" in t)
    code_copy = next(i for i, t in enumerate(text) if t.startswith("COPY exporter"))
    # The lock is installed before the code is copied: code changes reuse that layer.
    assert lock_copy < lock_install < code_copy
    assert "--require-hashes" in text[lock_install] and "--only-binary=:all:" in text[lock_install]
    project = next(t for t in text[code_copy:] if "pip install" in t)
    assert "--no-deps" in project and "--no-compile" not in " ".join(text)
    assert "compileall" in project, "bytecode is compiled at build time"
    final_env = " ".join(args for ins, args in stages()[-1] if ins == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in final_env  # read-only root: nothing written


def test_lock_pins_every_dependency_with_a_hash() -> None:
    from packaging.requirements import Requirement

    lock = (ROOT / "requirements.lock").read_text()
    pinned: dict[str, str] = {}
    for entry in re.split(r"\n(?=[a-z0-9])", re.sub(r"(?m)^#.*\n", "", lock).strip()):
        first, *hashes = entry.replace("\\\n", " ").split()
        name, _, version = first.partition("==")
        assert version and hashes and all(h.startswith("--hash=sha256:") for h in hashes), entry
        pinned[name.replace("_", "-")] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in [*project["dependencies"], *project["optional-dependencies"]["otel"]]:
        req = Requirement(spec)
        name = req.name.lower().replace("_", "-")
        assert name in pinned, f"{name} is not in requirements.lock: run scripts/lock"
        assert req.specifier.contains(pinned[name]), (name, pinned[name], str(req.specifier))
        for extra in req.extras:  # psycopg[binary] brings psycopg-binary
            assert f"{name}-{extra}" in pinned, f"{name}-{extra}"


def test_healthcheck_imports_only_the_standard_library() -> None:
    """It runs every 30 s in the container: no pydantic, YAML, aiohttp or drivers."""
    program = (
        "import sys; from exporter import cli; "
        "code = cli.healthcheck(['--web.listen-address', f'127.0.0.1:{sys.argv[1]}', "
        "'--timeout', '1']); "
        "heavy = [m for m in ('pydantic', 'yaml', 'aiohttp', 'psycopg', 'redis', 'boto3') "
        "if m in sys.modules]; print(code, heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "1 []", result.stdout + result.stderr


def test_package_and_image_descriptions_name_every_adapter() -> None:
    from exporter.adapters import servers

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    label = next(
        m.group(1)
        for _, args in dockerfile()
        if (m := re.search(r'org\.opencontainers\.image\.description="([^"]*)"', args))
    )
    for text in (project["description"], label):
        for name, what in servers().items():
            assert what.split(" (")[0] in text, (name, text)


def test_final_stage_runs_as_a_non_root_user() -> None:
    final = stages()[-1]
    users = [args for ins, args in final if ins == "USER"]
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root")
    created = " ".join(args for ins, args in final if ins == "RUN")
    assert re.search(rf"useradd\b.*--uid {user}\b", created), "USER is not created in the image"
    assert image_uid() == int(user)


def image_uid() -> int:
    final = stages()[-1]
    return int([args for ins, args in final if ins == "USER"][-1].split(":")[0])


def test_expose_entrypoint_and_healthcheck_agree_with_the_cli() -> None:
    final = stages()[-1]
    exposed = [args for ins, args in final if ins == "EXPOSE"]
    assert exposed == [str(default_port())]
    entry = [exec_form(args) for ins, args in final if ins == "ENTRYPOINT"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entry == [["sparki-exporter"]] and "sparki-exporter" in scripts
    health = [args for ins, args in final if ins == "HEALTHCHECK"]
    assert len(health) == 1
    options, _, command = health[0].partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = exec_form(command)
    assert argv[0] == "sparki-exporter" and argv[1] in cli.COMMANDS
    assert argv[1] == "healthcheck"
    listen = argv[argv.index("--web.listen-address") + 1]
    assert int(listen.rpartition(":")[2]) == default_port()


# --- Kubernetes -----------------------------------------------------------------------------


def manifests() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out[doc["kind"]] = doc
    return out


def container() -> dict[str, Any]:
    spec = manifests()["Deployment"]["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == "sparki-exporter")


def served_paths() -> set[str]:
    app = make_app([], "/metrics")
    return {r.resource.canonical for r in app.router.routes() if r.resource is not None}


def test_kustomization_lists_every_manifest_including_the_generated_rule() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    resources = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert resources == on_disk
    assert "prometheusrule.yaml" in resources
    kinds = set(manifests())
    assert {"Deployment", "Service", "ServiceMonitor", "ConfigMap", "PrometheusRule"} <= kinds


def test_deployment_args_are_flags_the_exporter_accepts() -> None:
    c = container()
    args = cli._serve_parser().parse_args(c["args"])  # exits on an unknown flag
    assert args.config and args.config.startswith("/")
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert any(args.config.startswith(path.rstrip("/") + "/") for path in mounts)
    assert int(args.listen[0].rpartition(":")[2]) == default_port()
    assert not c.get("command"), "the image's ENTRYPOINT runs the exporter"


def test_ports_and_probe_paths_match_what_is_served() -> None:
    m = manifests()
    c = container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": default_port()}
    paths = served_paths()
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" in paths
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" in paths
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] in ("metrics", default_port())
    service = m["Service"]["spec"]
    assert service["ports"][0]["targetPort"] in ("metrics", default_port())
    assert service["ports"][0]["port"] == default_port()
    pod_labels = m["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in service["selector"].items())
    monitor = m["ServiceMonitor"]["spec"]
    svc_labels = m["Service"]["metadata"]["labels"]
    assert all(svc_labels.get(k) == v for k, v in monitor["selector"]["matchLabels"].items())
    endpoint = monitor["endpoints"][0]
    assert endpoint["port"] == service["ports"][0]["name"]
    telemetry = cli._serve_parser().parse_args(c["args"]).telemetry_path
    assert endpoint["path"] == telemetry == "/metrics" and telemetry in paths


def test_pod_runs_as_the_images_non_root_user_locked_down() -> None:
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == image_uid()
    sc = container()["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]


SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.I)


@pytest.mark.parametrize("path", ["deployment.yaml", "fleet/statefulset.yaml"])
def test_memory_is_sized_from_the_measured_rss(path: str) -> None:
    """As the Helm chart is: a fleet pod polls about as many targets as one exporter
    does before it is worth sharding (the 100 measured)."""
    workload = yaml.safe_load((K8S / path).read_text())
    (c,) = workload["spec"]["template"]["spec"]["containers"]
    assert_sized_from_the_measured_rss(c["resources"])


def test_secrets_are_only_referenced() -> None:
    c = container()
    for env in c.get("env", []):
        if SECRETISH.search(env["name"]):
            assert "value" not in env, f"{env['name']} has a literal value"
            assert "secretKeyRef" in env["valueFrom"], env["name"]
    assert "Secret" not in manifests(), "a Secret with values must not be shipped"
    config_text = manifests()["ConfigMap"]["data"]["sparki.yml"]
    config = yaml.safe_load(config_text)
    secret_mounts = [
        m["mountPath"]
        for m in c["volumeMounts"]
        for v in manifests()["Deployment"]["spec"]["template"]["spec"]["volumes"]
        if v["name"] == m["name"] and "secret" in v
    ]
    for section in ("postgres", "redis", "s3"):
        for target in config.get(section, []):
            for key, value in target.items():
                if key.endswith("_file"):
                    assert any(str(value).startswith(p + "/") for p in secret_mounts), key
                elif SECRETISH.search(key):
                    assert re.fullmatch(r"\$\{[A-Z_]+\}", str(value)), f"{key} is a literal"
    # Every ${VAR} the config uses is set in the container, from a Secret.
    env_names = {e["name"] for e in c.get("env", [])}
    for var in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", config_text):
        assert var in env_names, var


def test_the_shipped_config_validates(tmp_path: Path) -> None:
    text = manifests()["ConfigMap"]["data"]["sparki.yml"]
    secrets_dir = "/etc/sparki/secrets"
    for name in re.findall(re.escape(secrets_dir) + r"/([\w.-]+)", text):
        (tmp_path / name).write_text("placeholder\n")
    data = yaml.safe_load(text.replace(secrets_dir, str(tmp_path)))
    config = validate(data, {"REDIS_PASSWORD": "placeholder"})
    assert {a for a, _ in config.targets()} == {"postgres", "redis", "s3"}


# --- the healthcheck the image runs ---------------------------------------------------------


def healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "healthcheck",
            "--web.listen-address",
            f":{port}",
            "--timeout",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("secure", [False, True])
def test_healthcheck_subcommand(pg_primary: PgCluster, tmp_path: Path, secure: bool) -> None:
    pg_primary.ensure_monitor_role()
    cfg = tmp_path / "c.yml"
    cfg.write_text(
        "poll_interval: 30s\npoll_timeout: 5s\npostgres:\n"
        f"  - name: p\n    dsn: {pg_primary.dsn(user='sparki_monitor')}\n"
    )
    port = free_port()
    args = ["--config", str(cfg), "--web.listen-address", f"127.0.0.1:{port}"]
    if secure:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
        cert.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
        hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
        (tmp_path / "web.yml").write_text(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"
            f"basic_auth_users:\n  prometheus: '{hashed}'\n"
        )
        args += ["--web.config.file", str(tmp_path / "web.yml")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        import time

        deadline = time.monotonic() + 30
        while healthcheck(port).returncode != 0:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "never healthy"
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    done = healthcheck(port)  # nothing listens any more
    assert done.returncode == 1 and "unhealthy" in done.stderr


# --- the fleet (deploy/kubernetes/fleet) ------------------------------------------------------


def test_fleet_pods_get_the_shard_their_labels_claim() -> None:
    """The StatefulSet's flags, its replica count and the ServiceMonitor's relabelling
    agree with the exporter's own reading of the pod name (--shard.index=auto)."""
    from exporter.shard import HA_LABEL
    from exporter.shard import parse as parse_shard

    fleet = K8S / "fleet"
    kustomization = yaml.safe_load((fleet / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {
        p.name for p in fleet.glob("*.yaml") if p.name != "kustomization.yaml"
    }
    docs = {
        d["kind"]: d for p in fleet.glob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if d
    }
    sts = docs["StatefulSet"]
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    args = cli._serve_parser().parse_args(c["args"])
    assert args.shard_index == "auto" and args.shard_count
    count = args.shard_count
    assert sts["spec"]["replicas"] == 2 * count, "an HA pair per shard"
    assert docs["Service"]["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == docs["Service"]["metadata"]["name"]
    monitor = docs["ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"]  # kube-prometheus-stack selects on it
    relabelings = monitor["spec"]["endpoints"][0]["relabelings"]
    for ordinal in range(sts["spec"]["replicas"]):
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
        shard = parse_shard("auto", count, hostname=pod)
        assert shard is not None
        assert labels["instance"] == f"sparki-shard-{shard.index}", (pod, labels)
        # The copies of a shard differ in sparki_replica alone; `replica` stays free for
        # the PostgreSQL and Redis series that carry it (the standby's name).
        assert labels[HA_LABEL] == str(shard.replica), (pod, labels)
        assert "pod" not in labels and "replica" not in labels, (pod, labels)
    assert docs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
