"""Private PostgreSQL and Redis instances on free loopback ports, and IRAS
processes (the granian web server, Celery worker/beat) as real subprocesses.

Used by the integration tests, the chaos suite and bench/. Each server lives in
its own temporary directory and is stopped (and removed) by `stop()`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_bin(name: str) -> str | None:
    for directory in PG_BIN_DIRS:
        candidate = directory / name
        if candidate.exists():
            return str(candidate)
    return shutil.which(name)


def postgres_available() -> bool:
    return pg_bin("initdb") is not None and pg_bin("pg_ctl") is not None


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # initdb refuses to run as root; CI runs as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PostgresServer:
    def __init__(self, durable: bool = False) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="iras-pg-"))
        self.data = self.dir / "data"
        self.durable = durable
        self.url = f"postgresql+psycopg2://iras@127.0.0.1:{self.port}/iras"

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        initdb = pg_bin("initdb")
        assert initdb, "initdb not found"
        subprocess.run(
            _as_postgres_user(
                [initdb, "-D", str(self.data), "-A", "trust", "-U", "iras", "--no-sync", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        self._pg_ctl_start()
        subprocess.run(
            _as_postgres_user(
                [
                    pg_bin("createdb") or "createdb",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "iras",
                    "iras",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=60,
        )
        return self

    def _pg_ctl_start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=400 "
            "-c shared_buffers=256MB"
        )
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        subprocess.run(
            _as_postgres_user(
                [
                    pg_bin("pg_ctl") or "pg_ctl",
                    "-D",
                    str(self.data),
                    "-o",
                    opts,
                    "-l",
                    str(self.dir / "log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=90,
        )

    def fresh_database(self, name: str) -> str:
        """A migrated database of its own on this server (so other tests' rows don't count)."""
        from sqlalchemy import create_engine, text

        from iras.migrate import upgrade

        admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = self.url.rsplit("/", 1)[0] + f"/{name}"
        upgrade(url)
        return url

    def stop_server(self, mode: str = "fast") -> None:
        subprocess.run(
            _as_postgres_user([pg_bin("pg_ctl") or "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop"]),
            capture_output=True,
            timeout=60,
        )

    def restart(self) -> None:
        self.stop_server()
        self._pg_ctl_start()

    def stop(self) -> None:
        self.stop_server("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="iras-redis-"))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, 20)
        return self

    def stop_server(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None

    def stop(self) -> None:
        self.stop_server()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def wait_for_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}")


def granian_command(
    port: int, *, workers: int = 2, threads: int = 4, host: str = "127.0.0.1", extra: list[str] | None = None
) -> list[str]:
    """The web process as the Procfile and docker-compose.yml run it: granian's WSGI
    interface, `workers` processes of `threads` Python threads each, a crashed
    worker respawned, in-flight requests finished on SIGTERM (a worker still busy
    after 10 s is killed: under IrasProcess.stop's 15 s), no access log. The backlog
    also sets granian's --backpressure (backlog / workers): the open connections a
    worker takes, idle keep-alive ones included; more wait in the kernel's queue."""
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--host",
        host,
        "--port",
        str(port),
        "--backlog",
        "4096",
        "--workers",
        str(workers),
        "--blocking-threads",
        str(threads),
        "--respawn-failed-workers",
        "--workers-kill-timeout",
        "10",
        "--no-access-log",
        *(extra or []),
        "wsgi:app",
    ]


class IrasProcess:
    """One IRAS process (the granian web server, a Celery worker or beat) with its own
    environment. `extra` is appended to the command line; for "web", `web_workers`
    and `web_threads` set granian's worker processes and Python threads per worker."""

    def __init__(
        self,
        kind: str,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        extra: list[str] | None = None,
        log_dir: Path | None = None,
        web_workers: int = 2,
        web_threads: int = 4,
    ) -> None:
        self.kind = kind
        self.port = port
        self.env = {**os.environ, **env}
        self.extra = extra or []
        self.web_workers = web_workers
        self.web_threads = web_threads
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix=f"iras-{kind}-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        py = sys.executable
        if self.kind == "web":
            assert self.port, "a web process needs a port"
            return granian_command(
                self.port, workers=self.web_workers, threads=self.web_threads, extra=self.extra
            )
        if self.kind == "beat":
            return [
                py,
                "-m",
                "celery",
                "-A",
                "celeryconfig",
                "beat",
                "--loglevel",
                "WARNING",
                "-s",
                str(self.log_dir / "beat-schedule"),
                *self.extra,
            ]
        return [
            py,
            "-m",
            "celery",
            "-A",
            "celeryconfig",
            "worker",
            "--loglevel",
            "WARNING",
            "--without-mingle",
            "--without-gossip",
            *self.extra,
        ]

    def start(self) -> IrasProcess:
        log = open(self.log_dir / f"{self.kind}.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if self.kind == "web" and self.port:
            wait_for_http(f"http://127.0.0.1:{self.port}/health", 30)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.kill(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def log_tail(self, n: int = 4000) -> str:
        path = self.log_dir / f"{self.kind}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""
