"""Shared benchmark plumbing: private PostgreSQL/Redis (unless URLs are given),
the IRAS processes (granian, Celery workers, beat) as real subprocesses, the
benchmark evidence bundle and alert payloads, and database probes (commit
counts, WAL position, table sizes).

Every bench script imports this first: it puts the repository root on
sys.path so `python bench/x.py` works from a plain checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, bindparam, create_engine, text  # noqa: E402

from tests.support.services import (  # noqa: E402
    IrasProcess,
    PostgresServer,
    RedisServer,
    free_port,
    postgres_available,
    redis_available,
)

SCENARIO = ROOT / "tests" / "data" / "checkout-guest-npe-after-release.json"
# The box may be shared: the load average when the script started and ended goes into
# every summary, so a number measured next to someone else's test run is recognisable.
LOAD_AT_START = os.getloadavg()


def cpu_probe_ms(repeat: int = 5) -> float:
    """The fastest of `repeat` timings of a fixed pure-Python workload, in ms. On a
    shared virtual machine the host's contention is invisible from inside (no steal
    time reported) but slows every process alike: this figure, taken at the start and
    at the end of a run, says how fast the host was while it ran."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        total = 0
        for i in range(300_000):
            total += i * i % 7
        best = min(best, time.perf_counter() - t0)
    return round(best * 1000, 2)


PROBE_AT_START = cpu_probe_ms()
# Ingestion is authenticated as in production; the rate limiter stays active
# (its Redis round trip is part of the measured cost) with a bucket no bench reaches.
WEBHOOK_TOKEN = "bench-webhook-token-0123456789abcdef"
WEBHOOK_HEADERS = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
IRAS_TABLES = ("incidents", "alert_events", "stage_results", "transitions", "step_runs", "postmortems")


def log(msg: str) -> None:
    """Progress goes to stderr: stdout's last line is the JSON summary."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- inputs


def write_evidence(path: Path) -> Path:
    """The evidence size the competing design was measured with: 50 log lines of
    ~150 characters, 10 metrics, 3 deployments (real scenario text, trimmed)."""
    evidence = json.loads(SCENARIO.read_text())["evidence"]
    logs = []
    for i in range(50):
        line = dict(evidence["logs"][i % len(evidence["logs"])])
        message = line["message"].replace("\n", " ")
        line["message"] = (message + f" [req {i:04d}]" + " ." * 80)[:150]
        logs.append(line)
    metrics = []
    for i in range(10):
        metric = dict(evidence["metrics"][i % len(evidence["metrics"])])
        if i >= len(evidence["metrics"]):
            metric["name"] = f"{metric['name']}_{i}"
        metrics.append(metric)
    deployments = [dict(d) for d in evidence["deployments"][:3]]
    path.write_text(json.dumps({"evidence": {"logs": logs, "metrics": metrics, "deployments": deployments}}))
    return path


_ALERT_TEMPLATE = json.loads(SCENARIO.read_text())["alert"]


def alert_body(key: str, service: str = "checkout-service", status: str = "firing") -> bytes:
    """An Alertmanager webhook body (~1.7 KB, the scenario's) with its own group key."""
    alert = json.loads(json.dumps(_ALERT_TEMPLATE))
    alert["groupKey"] = f'{{}}:{{alertname="Bench", key="{key}"}}'
    alert["status"] = status
    for a in alert["alerts"]:
        a["status"] = status
        a["labels"]["service"] = service
        a["fingerprint"] = key[:16]
    alert["commonLabels"]["service"] = service
    alert["groupLabels"]["service"] = service
    return json.dumps(alert).encode()


# --------------------------------------------------------------------------- machine


def machine_notes() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem_gb = round(mem_kb / 1024 / 1024, 1)

    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"

    from tests.support.services import pg_bin

    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "mem_gb": mem_gb,
        "python": platform.python_version(),
        "postgres": version([pg_bin("postgres") or "postgres", "--version"]),
        "redis": version(["redis-server", "--version"]).split(" sha=")[0],
        "loadavg_at_start": [round(x, 2) for x in LOAD_AT_START],
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "cpu_probe_ms_at_start": PROBE_AT_START,
        "cpu_probe_ms_at_end": cpu_probe_ms(),
    }


# --------------------------------------------------------------------------- backends


class Backends:
    """PostgreSQL and Redis: the given URLs, or private durable instances."""

    def __init__(
        self, database_url: str | None = None, broker_url: str | None = None, durable: bool = True
    ) -> None:
        self.database_url = database_url
        self.broker_url = broker_url
        self.durable = durable
        self.pg: PostgresServer | None = None
        self.redis: RedisServer | None = None

    def start(self) -> Backends:
        if self.database_url is None:
            if not postgres_available():
                raise SystemExit(
                    "PostgreSQL server binaries not found (Debian package postgresql); or pass --database-url"
                )
            # Durable settings (fsync=on, synchronous_commit=on): honest commit costs.
            self.pg = PostgresServer(durable=self.durable).start()
            self.database_url = self.pg.url
        if self.broker_url is None:
            if not redis_available():
                raise SystemExit("redis-server not found (Debian package redis-server); or pass --broker-url")
            self.redis = RedisServer().start()
            self.broker_url = self.redis.url
        from iras.migrate import upgrade

        upgrade(self.database_url)
        return self

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.pg is not None:
            self.pg.stop()

    def settings(self) -> dict[str, Any]:
        if self.pg is None:
            return {"postgres": "given URL", "redis": "given URL" if self.redis is None else "private"}
        return {
            "postgres": "private instance, fsync=on, synchronous_commit=on, full_page_writes=on"
            if self.durable
            else "private instance, fsync=off, synchronous_commit=off",
            "redis": "private instance, no persistence" if self.redis is not None else "given URL",
        }


# --------------------------------------------------------------------------- IRAS processes


class BenchProcess(IrasProcess):
    """An IrasProcess whose Celery app module (and web workers/threads) the bench chooses."""

    def __init__(self, kind: str, env: dict[str, str], *, app: str = "celeryconfig", **kwargs: Any) -> None:
        super().__init__(kind, env, **kwargs)
        self.app = app

    def command(self) -> list[str]:
        cmd = super().command()
        if self.kind in ("worker", "beat"):
            cmd[cmd.index("celeryconfig")] = self.app
        return cmd

    def pids(self) -> list[int]:
        """The process and its children (granian workers, prefork children)."""
        if self.proc is None:
            return []
        out = [self.proc.pid]
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            out += [int(c) for c in children]
        return out


@dataclass
class WorkerSpec:
    queues: str = "analysis,ops"
    pool: str = "threads"
    concurrency: int = 8
    app: str = "bench.worker_app"
    extra: list[str] = field(default_factory=list)

    def args(self, name: str) -> list[str]:
        return [
            "-Q", self.queues, "--pool", self.pool, "--concurrency", str(self.concurrency),
            "--hostname", f"{name}@%h", *self.extra,
        ]  # fmt: skip


class Stack:
    """The web process (granian: `web_workers` processes x `web_threads` Python threads,
    `web_extra` more granian options) + Celery workers (+ beat) against the given backends."""

    def __init__(
        self,
        database_url: str,
        broker_url: str,
        *,
        workers: list[WorkerSpec] | None = None,
        web_workers: int = 2,
        web_threads: int = 16,
        web_extra: list[str] | None = None,
        beat: bool = False,
        env: dict[str, str] | None = None,
        tmp: Path | None = None,
    ) -> None:
        self.tmp = tmp or Path(tempfile.mkdtemp(prefix="iras-bench-"))
        evidence = write_evidence(self.tmp / "evidence.json")
        self.env = {
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker_url,
            "MOCK_EVIDENCE_FILE": str(evidence),
            "IRAS_MOCK_EVIDENCE": "true",  # serve that file through the mock sources
            "ANALYST": "offline",
            "LOG_LEVEL": "WARNING",
            "BEAT_INTERVAL_SECONDS": "5",
            "RCA_CONFIDENCE_THRESHOLD": "0.3",
            "PYTHONPATH": str(ROOT),
            "WEBHOOK_TOKENS": WEBHOOK_TOKEN,
            "WEBHOOK_RATE_LIMIT_PER_SECOND": "1000000",
            "WEBHOOK_RATE_LIMIT_BURST": "1000000",
            "MALLOC_ARENA_MAX": os.environ.get(
                "MALLOC_ARENA_MAX", "2"
            ),  # as Procfile/docker-compose run them
            **(env or {}),
        }
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.web = BenchProcess(
            "web",
            # As the Procfile: one pooled connection per request thread.
            {"IRAS_DB_POOL_SIZE": str(max(10, web_threads)), **self.env},
            port=self.port,
            log_dir=self.tmp,
            web_workers=web_workers,
            web_threads=web_threads,
            extra=list(web_extra or []),
        )
        self.workers = [
            BenchProcess(
                "worker", self.env, app=spec.app, log_dir=self._dir(f"worker{i}"), extra=spec.args(f"w{i}")
            )
            for i, spec in enumerate(workers or [])
        ]
        self.beat = (
            BenchProcess("beat", self.env, app="celeryconfig", log_dir=self._dir("beat")) if beat else None
        )

    def _dir(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(exist_ok=True)
        return path

    @property
    def processes(self) -> list[BenchProcess]:
        return [self.web, *self.workers, *([self.beat] if self.beat else [])]

    def start(self, *, web: bool = True, workers: bool = True) -> Stack:
        if workers:
            for w in self.workers:
                w.start()
            if self.beat is not None:
                self.beat.start()
        if web:
            self.web.start()
        return self

    def start_workers(self) -> None:
        for w in self.workers:
            w.start()
        if self.beat is not None:
            self.beat.start()

    def stop(self) -> None:
        for proc in self.processes:
            with contextlib.suppress(Exception):
                proc.stop()

    def logs(self, n: int = 3000) -> str:
        return "\n".join(f"--- {p.kind} {p.log_dir}\n{p.log_tail(n)}" for p in self.processes)

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------- probes


def engine_for(url: str) -> Engine:
    return create_engine(url, pool_size=2, max_overflow=2, connect_args={"connect_timeout": 10})


def status_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            s: int(n) for s, n in conn.execute(text("SELECT status, count(*) FROM incidents GROUP BY status"))
        }


def count_in(engine: Engine, *statuses: str) -> int:
    """Incidents in any of `statuses`, through the status index: a probe polled many
    times a second must not scan a table that grows (a `--history` run's)."""
    query = text("SELECT count(*) FROM incidents WHERE status IN :s").bindparams(
        bindparam("s", expanding=True)
    )
    with engine.connect() as conn:
        return int(conn.scalar(query, {"s": list(statuses)}))


def xact_commits(engine: Engine) -> int:
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        return int(
            conn.scalar(text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"))
        )


def next_xid(engine: Engine) -> int:
    """The next transaction id PostgreSQL will assign (without taking one): its delta
    over a run is the number of transactions that wrote something, each a durable
    commit. Read-only statements in autocommit (each a transaction of its own, counted
    in `xact_commit`) and ROLLBACKs take none."""
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")))


def backend_sessions(engine: Engine) -> int:
    """Connections ever established to this database (pg_stat_database.sessions)."""
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        return int(
            conn.scalar(text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()"))
        )


def wal_lsn(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.scalar(text("SELECT pg_current_wal_lsn()")))


def wal_bytes_since(engine: Engine, lsn: str) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), :lsn)"), {"lsn": lsn}))


def wal_full_page_images(engine: Engine) -> int:
    """Full-page images written to the WAL so far (pg_stat_wal): the first change to
    a page after a checkpoint logs the whole 8 kB page."""
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT wal_fpi FROM pg_stat_wal")))


def table_bytes(engine: Engine) -> dict[str, int]:
    """pg_total_relation_size (heap + TOAST + indexes) of every IRAS table."""
    with engine.connect() as conn:
        return {t: int(conn.scalar(text("SELECT pg_total_relation_size(:t)"), {"t": t})) for t in IRAS_TABLES}


# Past incidents, each with the rows a resolved incident leaves: an alert, five stage
# results, eight transitions, three steps, a post-mortem. Their documents are small: what
# matters here is the number of rows the pipeline's statements must find theirs among.
_HISTORY_SQL = (
    """INSERT INTO incidents (id, status, severity, title, service, source, fingerprint, alert_count,
                              last_seen, rca_attempts, plan_id, outcome, created_at, updated_at)
       SELECT md5('history' || g)::uuid::text, 'resolved', 'P2', 'past incident ' || g, 'svc-' || g % 40,
              'history', 'history-' || g, 1, now(), 1, NULL, 'resolved',
              now() - make_interval(secs => g * 60), now() - make_interval(secs => g * 60)
       FROM generate_series(1, :n) AS g""",
    """INSERT INTO alert_events (incident_id, received_at, status, fingerprint, alert, raw)
       SELECT id, created_at, 'firing', fingerprint, '{"title": "past"}', '{"title": "past"}'
       FROM incidents WHERE source = 'history'""",
    """INSERT INTO stage_results (incident_id, stage, attempt, result, analyst, input_tokens, output_tokens,
                                  cache_read_tokens, cache_creation_tokens, latency_ms, created_at)
       SELECT i.id, s, 1, '{"x": 1}', 'offline', 0, 0, 0, 0, 1.0, i.created_at
       FROM incidents i CROSS JOIN unnest(ARRAY['triage', 'context', 'rca', 'plan', 'postmortem']) AS s
       WHERE i.source = 'history'""",
    """INSERT INTO transitions (incident_id, from_status, to_status, event, actor, at)
       SELECT i.id, 'a', 'b', 'e' || k, 'iras', i.created_at
       FROM incidents i CROSS JOIN generate_series(1, 8) AS k WHERE i.source = 'history'""",
    """INSERT INTO step_runs (incident_id, plan_id, step_order, kind, command, status, started_at, rolled_back)
       SELECT i.id, 1, k, 'apply', 'true', 'succeeded', i.created_at, false
       FROM incidents i CROSS JOIN generate_series(1, 3) AS k WHERE i.source = 'history'""",
    """INSERT INTO postmortems (incident_id, analyst, created_at, data, outcome, severity)
       SELECT id, 'offline', created_at, '{}', 'resolved', 'P2' FROM incidents WHERE source = 'history'""",
)


def seed_history(engine: Engine, n: int) -> None:
    """`n` resolved past incidents (source `history`) with their rows, then ANALYZE, as
    autovacuum keeps a running system's statistics."""
    with engine.begin() as conn:
        for sql in _HISTORY_SQL:
            conn.execute(text(sql), {"n": n})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))


def seq_rows_read(engine: Engine) -> dict[str, int]:
    """Rows each IRAS table has returned to sequential scans so far
    (pg_stat_user_tables.seq_tup_read). A hot statement that cannot find its row by an
    index shows here, growing with the table, long before it shows as a slower run."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT relname, seq_tup_read FROM pg_stat_user_tables WHERE relname = ANY(:t)"),
            {"t": list(IRAS_TABLES)},
        )
        return {str(name): int(count) for name, count in rows}


def wait_until(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = "condition"
) -> float:
    """Poll until `predicate()`; returns the time waited, raises TimeoutError after `timeout`."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what} not reached after {timeout:.0f}s")
        time.sleep(interval)


def rss_kb(pid: int) -> int:
    """Resident set size of one process (kB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class DirtyPages:
    """Samples the kernel's dirty page cache (`Dirty` in /proc/meminfo) on a thread
    while a measurement runs. A large drop between two samples is the kernel writing
    it back in one burst, which a commit's WAL flush then waits behind (session 6 of
    bench/README.md). Linux only; elsewhere it reports nothing."""

    def __init__(self, every_s: float = 0.25) -> None:
        self.every_s = every_s
        self.samples: list[tuple[float, float]] = []  # (s since start, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dirty-pages", daemon=True)

    @staticmethod
    def dirty_mb() -> float | None:
        with contextlib.suppress(OSError, ValueError):
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("Dirty:"):
                    return int(line.split()[1]) / 1024
        return None

    def _run(self) -> None:
        start = time.perf_counter()
        while not self._stop.is_set():
            mb = self.dirty_mb()
            if mb is None:
                return
            self.samples.append((time.perf_counter() - start, mb))
            self._stop.wait(self.every_s)

    def __enter__(self) -> DirtyPages:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def drops(self, min_mb: float = 32.0) -> list[list[float]]:
        """[s since start, MB before, MB after] for each fall of at least `min_mb`."""
        return [
            [round(t, 2), round(before, 1), round(after, 1)]
            for (_, before), (t, after) in zip(self.samples, self.samples[1:], strict=False)
            if before - after >= min_mb
        ]


def cpu_seconds(pids: list[int]) -> float:
    """User+system CPU time of the given processes (their reaped children included)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15]) / tick
    return total


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError, ValueError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def tree_cpu_seconds(roots: list[int]) -> float:
    """CPU of process trees: each root and every live descendant, plus the exited
    children the parents reaped (a PostgreSQL backend that ended, a recycled
    granian worker), so nothing that ran between two readings is lost."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack += _children(pid)
    return cpu_seconds(sorted(seen))


def server_roots(backends: Backends, stack: Stack) -> list[int]:
    """Root pids of everything on the server side: IRAS processes, PostgreSQL, Redis."""
    roots = [p.proc.pid for p in stack.processes if p.proc is not None]
    if backends.pg is not None:
        with contextlib.suppress(OSError, ValueError):
            roots.append(int((backends.pg.data / "postmaster.pid").read_text().split()[0]))
    if backends.redis is not None and backends.redis.proc is not None:
        roots.append(backends.redis.proc.pid)
    return roots


def common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--database-url", help="use this PostgreSQL instead of a private one (it must be empty)"
    )
    parser.add_argument("--broker-url", help="use this Redis instead of a private one")
    parser.add_argument("--keep", action="store_true", help="keep the process logs directory")
    return parser


@contextlib.contextmanager
def backends_from(args: argparse.Namespace) -> Iterator[Backends]:
    backends = Backends(args.database_url, args.broker_url).start()
    try:
        yield backends
    finally:
        backends.stop()


def print_summary(summary: dict[str, Any]) -> None:
    """The JSON summary: always the last line of stdout."""
    sys.stdout.flush()
    print(json.dumps(summary, sort_keys=False), flush=True)
