"""Throwaway MariaDB servers: mariadb-install-db and mariadbd on a free port in a temp dir.

Shared by the test fixtures (tests/fixtures_mysql.py) and the benchmark. Tests never
use a system MariaDB (the one on 3306 included): every server here has its own data
directory, so tests can restart it, stop it and change its settings freely. Admin
statements go through the ``mariadb`` command line client over the server's socket as
root, so the tests need no second driver.

Every server has three extra accounts: ``sparki`` (the monitoring user with the grants
docs/mysql.md lists, and a password), ``sparki_bare`` (no privileges at all) and
``app`` (an application's user: every privilege on the ``app`` schema, nothing else).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .postgres import free_port

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
CLIENT = shutil.which("mariadb") or "/usr/bin/mariadb"
GALERA = "/usr/lib/galera/libgalera_smm.so"  # Debian's galera-4
MONITOR_PASSWORD = "sparki-monitor-pw"
BARE_PASSWORD = "sparki-bare-pw"
APP_PASSWORD = "sparki-app-pw"
MONITOR_GRANTS = (
    "GRANT PROCESS, REPLICA MONITOR, BINLOG MONITOR ON *.* TO 'sparki'@'%'",
    "GRANT SELECT ON performance_schema.* TO 'sparki'@'%'",
)


class MysqlServer:
    """One private mariadbd. ``performance_schema`` on unless asked otherwise."""

    def __init__(self, performance_schema: bool = True, extra: tuple[str, ...] = ()) -> None:
        self.performance_schema = performance_schema
        self.extra = extra
        self.dir = Path(tempfile.mkdtemp(prefix="sparki-mysql-"))
        self.port = free_port()
        self.socket = str(self.dir / "mysqld.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    def _args(self) -> list[str]:
        args = [
            MARIADBD,
            "--no-defaults",
            f"--datadir={self.dir / 'data'}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.socket}",
            f"--pid-file={self.dir / 'mysqld.pid'}",
            f"--log-error={self.dir / 'error.log'}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=16M",
            "--innodb-log-file-size=16M",
            "--max-connections=40",
            "--performance-schema=" + ("ON" if self.performance_schema else "OFF"),
            *self.extra,
        ]
        if os.geteuid() == 0:
            args.append("--user=root")
        return args

    def start(self) -> MysqlServer:
        if not (self.dir / "data").exists():
            subprocess.run(
                [
                    INSTALL_DB,
                    "--no-defaults",
                    f"--datadir={self.dir / 'data'}",
                    "--auth-root-authentication-method=normal",
                    f"--user={getpass.getuser()}",
                    "--skip-test-db",
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
            self._launch()
            self.sql(
                f"CREATE USER 'sparki'@'%' IDENTIFIED BY '{MONITOR_PASSWORD}'",
                f"CREATE USER 'sparki_bare'@'%' IDENTIFIED BY '{BARE_PASSWORD}'",
                f"CREATE USER 'app'@'%' IDENTIFIED BY '{APP_PASSWORD}'",
                "GRANT ALL ON app.* TO 'app'@'%'",
                *MONITOR_GRANTS,
                "CREATE DATABASE app",
                "CREATE TABLE app.t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB",
                "INSERT INTO app.t VALUES (1, 1), (2, 2)",
            )
        else:
            self._launch()
        return self

    def _launch(self) -> None:
        log = open(self.dir / "stdout.log", "ab")
        self.proc = subprocess.Popen(self._args(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited: {self.error_log()[-2000:]}")
            done = subprocess.run(
                [CLIENT, f"--socket={self.socket}", "-uroot", "-e", "SELECT 1"],
                capture_output=True,
                timeout=30,
            )
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd did not start: {self.error_log()[-2000:]}")
            time.sleep(0.1)

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client_args(self, user: str = "root") -> list[str]:
        """The mariadb command line client as ``user`` over the socket, batch mode.

        ``app``'s password goes in MYSQL_PWD (see :meth:`client_env`), never on the
        command line."""
        return [CLIENT, f"--socket={self.socket}", f"-u{user}", "--batch", "--skip-column-names"]

    @staticmethod
    def client_env(user: str = "root") -> dict[str, str] | None:
        """The client's environment: ``app``'s password, or None (inherit) for root."""
        return None if user == "root" else {**os.environ, "MYSQL_PWD": APP_PASSWORD}

    def sql(self, *statements: str, database: str | None = None, user: str = "root") -> str:
        """Run statements as root (or ``app``) over the socket; their output, tab-separated."""
        cmd = self.client_args(user)
        if database:
            cmd.append(f"--database={database}")
        done = subprocess.run(
            [*cmd, "-e", ";\n".join(statements)],
            capture_output=True,
            text=True,
            timeout=120,
            env=self.client_env(user),
        )
        if done.returncode != 0:
            raise RuntimeError(f"mariadb client failed: {done.stderr.strip()}")
        return done.stdout

    def status(self, name: str) -> str:
        """One SHOW GLOBAL STATUS variable ("" when the server has none of that name)."""
        out = self.sql(f"SHOW GLOBAL STATUS LIKE '{name}'").split("\t")
        return out[1].strip() if len(out) > 1 else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: a crash (or a pulled cable), with no goodbye to anyone."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self._launch()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def dsn(self, user: str = "sparki") -> str:
        return f"mysql://{user}@127.0.0.1:{self.port}/"

    def target(self, name: str, **extra: Any) -> dict[str, Any]:
        """An exporter target config for the monitoring user."""
        return {"name": name, "dsn": self.dsn(), "password": MONITOR_PASSWORD, **extra}

    def bare_target(self, name: str, **extra: Any) -> dict[str, Any]:
        """A target config for the user without any privilege."""
        return {"name": name, "dsn": self.dsn("sparki_bare"), "password": BARE_PASSWORD, **extra}


class GaleraNode(MysqlServer):
    """A Galera (wsrep) node on 127.0.0.1: the first of a cluster, or one joining peers.

    Its group communication port is its own (``group_port``), its membership timeouts
    are cut to about two seconds so a vanished peer is noticed fast. A joiner is set up
    as a plain server first (so its set-up is not replicated onto nodes that ran the
    same one), then told it already holds the cluster's state at the first peer's
    position (grastate.dat): its data is that same fresh set-up, so it joins without a
    state snapshot transfer. (rsync SST cannot work here: run as root, its daemon drops
    to ``nobody``, who cannot write a private data directory; mariabackup is not
    installed; ``wsrep_sst_method=skip`` leaves the joiner waiting for ever.)
    """

    def __init__(self, peers: Sequence[GaleraNode] = ()) -> None:
        super().__init__()
        self.group_port = free_port()
        self.peers = tuple(peers)

    def galera_options(self) -> tuple[str, ...]:
        provider = ";".join(
            [
                f"gmcast.listen_addr=tcp://127.0.0.1:{self.group_port}",
                f"ist.recv_addr=127.0.0.1:{free_port()}",
                "evs.keepalive_period=PT0.3S",
                "evs.inactive_check_period=PT0.3S",
                "evs.suspect_timeout=PT1S",
                "evs.inactive_timeout=PT2S",
                "evs.install_timeout=PT2S",
            ]
        )
        peers = ",".join(f"127.0.0.1:{p.group_port}" for p in self.peers)  # none: a new cluster
        return (
            "--wsrep-on=ON",
            f"--wsrep-provider={GALERA}",
            f"--wsrep-cluster-address=gcomm://{peers}",
            f"--wsrep-node-address=127.0.0.1:{self.group_port}",
            f"--wsrep-provider-options={provider}",
            "--binlog-format=ROW",
            "--innodb-autoinc-lock-mode=2",
        )

    def start(self) -> GaleraNode:
        if self.peers and not (self.dir / "data").exists():
            super().start()
            self.stop()
            peer = self.peers[0]
            uuid = peer.status("wsrep_cluster_state_uuid")
            seqno = peer.status("wsrep_last_committed")
            (self.dir / "data" / "grastate.dat").write_text(
                f"# GALERA saved state\nversion: 2.1\nuuid: {uuid}\nseqno: {seqno}\n"
                "safe_to_bootstrap: 0\n"
            )
        self.extra = self.galera_options()
        if (self.dir / "data").exists():
            self._launch()
        else:
            super().start()
        return self
