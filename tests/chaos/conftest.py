"""Fault-injection suite: real granian, Celery workers and beat as separate
processes on private PostgreSQL and Redis instances, with faults injected from
the test (kill -9, stopped broker, restarted database, restarted web).

Every test is bounded: each wait has a deadline, every process is stopped in a
finally block. Counts scale with CHAOS_SCALE (default 1.0; CI may lower it to
fit its budget) and each test prints what it used, e.g.
`chaos worker-kill: 200/200 awaiting approval, 0 duplicate stage results, 14 kills`;
with CHAOS_REPORT_DIR set the same figures are written there as JSON.
Missing PostgreSQL/Redis binaries skip locally and fail under CI=true.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, create_engine, text

from bench._stack import WEBHOOK_HEADERS, Backends, Stack, WorkerSpec, alert_body
from tests.chaos._analyst import RECORDER_ENV
from tests.integration._require import missing
from tests.support.services import PostgresServer, RedisServer, postgres_available, redis_available

WORKER_APP = "tests.chaos._worker_app"


def scale(n: int, minimum: int = 10) -> int:
    """`n` scaled by CHAOS_SCALE, never below `minimum`."""
    factor = float(os.environ.get("CHAOS_SCALE", "1.0"))
    return max(minimum, int(n * factor))


def report(name: str, figures: dict[str, Any]) -> None:
    """Print the figures (shown with -rP) and keep them as JSON if CHAOS_REPORT_DIR is set."""
    line = ", ".join(f"{k}={v}" for k, v in figures.items())
    print(f"chaos {name}: {line}")
    directory = os.environ.get("CHAOS_REPORT_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / f"{name}.json").write_text(json.dumps(figures, indent=2))


@pytest.fixture
def backends() -> Iterator[Backends]:
    """Fresh private PostgreSQL (fsync off: the suite tests recovery, not disk speed) and Redis."""
    if not postgres_available():
        missing("PostgreSQL server binaries (Debian package postgresql) not installed")
    if not redis_available():
        missing("redis-server (Debian package redis-server) not installed")
    b = Backends(durable=False)
    b.pg = PostgresServer(durable=False).start()
    b.database_url = b.pg.url
    b.redis = RedisServer().start()
    b.broker_url = b.redis.url
    try:
        from iras.migrate import upgrade

        upgrade(b.database_url)
        yield b
    finally:
        b.stop()


def recorder(directory: Path) -> tuple[Path, Path]:
    """A remediation "command" that appends its arguments to a log (and takes a
    moment, so a kill can land while it runs). Returns (program, log)."""
    log = directory / "steps.log"
    program = directory / "record-step"
    program.write_text(f'#!/bin/sh\necho "$1 $2" >> {log}\nsleep 0.2\n')
    program.chmod(program.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return program, log


class ChaosStack(Stack):
    """The bench stack with the chaos worker app, fast beat and sweeper, the
    shell executor running the recorder, and helpers to drive and inspect it."""

    def __init__(
        self,
        backends: Backends,
        tmp: Path,
        *,
        workers: list[WorkerSpec] | None = None,
        beat: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        program, self.step_log = recorder(tmp)
        self.backends = backends
        assert backends.database_url and backends.broker_url
        super().__init__(
            backends.database_url,
            backends.broker_url,
            workers=workers
            or [
                WorkerSpec("analysis", "threads", 8, app=WORKER_APP),
                WorkerSpec("ops", "prefork", 2, app=WORKER_APP),
            ],
            web_workers=2,
            web_threads=4,
            beat=beat,
            env={
                "BEAT_INTERVAL_SECONDS": "1",
                "STUCK_AFTER_SECONDS": "5",
                "REMEDIATION_EXECUTOR": "shell",
                "REMEDIATION_ALLOWED_COMMANDS": f"{program},kubectl",
                "REMEDIATION_STEP_TIMEOUT_SECONDS": "5",
                "APPROVAL_TIMEOUT_DEFAULT_MINUTES": "600",
                "APPROVAL_TIMEOUT_P0_MINUTES": "600",
                RECORDER_ENV: str(program),
                **(env or {}),
            },
            tmp=tmp,
        )
        self.engine: Engine = create_engine(self.env["DATABASE_URL"], pool_size=4, pool_pre_ping=True)
        self.http = requests.Session()
        self.http.headers.update(WEBHOOK_HEADERS)
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
        self.http.mount("http://", adapter)

    def stop(self) -> None:
        super().stop()
        self.engine.dispose()
        self.http.close()

    # ------------------------------------------------------------------ driving
    def post_alert(
        self, key: str, service: str = "checkout-service", timeout: float = 10
    ) -> requests.Response:
        return self.http.post(
            f"{self.base}/webhook/alert",
            data=alert_body(key, service),
            headers={"Content-Type": "application/json"},
            timeout=timeout,
        )

    def fire(self, keys: list[str], services: list[str] | None = None, threads: int = 16) -> list[str]:
        """Post one alert per key (concurrently); every answer must be 202. Returns incident ids."""

        def one(i: int) -> str:
            r = self.post_alert(keys[i], services[i] if services else "checkout-service")
            assert r.status_code == 202, r.text
            return str(r.json()["incident_id"])

        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, range(len(keys))))

    def fire_paced(self, keys: list[str], seconds: float) -> list[str]:
        """Post the alerts spread evenly over `seconds` (incidents keep flowing while
        faults are injected), each one 202. Returns incident ids in key order."""
        ids: list[str] = []
        start = time.monotonic()
        for i, key in enumerate(keys):
            delay = start + seconds * i / max(1, len(keys)) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            r = self.post_alert(key)
            assert r.status_code == 202, r.text
            ids.append(str(r.json()["incident_id"]))
        return ids

    def decide(self, incident_id: str, approve: bool, by: str, reason: str = "chaos") -> requests.Response:
        verb = "approve" if approve else "reject"
        return self.http.post(
            f"{self.base}/incidents/{incident_id}/{verb}", json={"by": by, "reason": reason}, timeout=15
        )

    # ------------------------------------------------------------------ inspecting
    def query(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    def execute(self, sql: str, **params: Any) -> int:
        """Run a write in its own committed transaction; returns the row count."""
        with self.engine.begin() as conn:
            return int(conn.execute(text(sql), params).rowcount)

    def statuses(self, ids: list[str]) -> dict[str, str]:
        rows = self.query("SELECT id, status FROM incidents WHERE id = ANY(:ids)", ids=ids)
        return {r[0]: r[1] for r in rows}

    def wait_for(
        self,
        ids: list[str],
        accept: Callable[[str], bool],
        timeout: float,
        what: str,
        tick: Callable[[], None] | None = None,
    ) -> float:
        """Wait until every incident's status passes `accept`; `tick` runs between polls."""
        start = time.monotonic()
        while True:
            current = self.statuses(ids)
            pending = [i for i in ids if not accept(current.get(i, "missing"))]
            if not pending:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                sample = {i: current.get(i, "missing") for i in pending[:5]}
                raise AssertionError(
                    f"{len(pending)}/{len(ids)} not {what} after {timeout:.0f}s, e.g. {sample}\n{self.logs(2000)}"
                )
            if tick is not None:
                tick()
            time.sleep(0.2)

    def duplicate_stage_results(self) -> int:
        return int(
            self.query(
                "SELECT count(*) FROM (SELECT 1 FROM stage_results GROUP BY incident_id, stage, attempt HAVING count(*) > 1) d"
            )[0][0]
        )

    def duplicate_step_rows(self) -> int:
        return int(
            self.query(
                "SELECT count(*) FROM (SELECT 1 FROM step_runs GROUP BY incident_id, plan_id, step_order, kind HAVING count(*) > 1) d"
            )[0][0]
        )

    def steps_run_twice(self) -> list[str]:
        """Lines the recorder wrote more than once: a step that really executed twice."""
        if not self.step_log.exists():
            return []
        seen: dict[str, int] = {}
        for line in self.step_log.read_text().splitlines():
            seen[line] = seen.get(line, 0) + 1
        return [line for line, n in seen.items() if n > 1]

    def transitions_out_of(self, status: str) -> dict[str, int]:
        """incident id -> how many transitions left `status` (a decision is one)."""
        rows = self.query(
            "SELECT incident_id, count(*) FROM transitions WHERE from_status = :s AND to_status <> :s GROUP BY incident_id",
            s=status,
        )
        return {r[0]: int(r[1]) for r in rows}


@pytest.fixture
def chaos_stack(backends: Backends, tmp_path: Path) -> Iterator[Callable[..., ChaosStack]]:
    """A factory: `chaos_stack(**kwargs)` builds and starts a ChaosStack, stopped at teardown."""
    made: list[ChaosStack] = []

    def make(**kwargs: Any) -> ChaosStack:
        stack = ChaosStack(backends, tmp_path, **kwargs)
        made.append(stack)
        stack.start()
        return stack

    try:
        yield make
    finally:
        for stack in made:
            with contextlib.suppress(Exception):
                stack.stop()


class Repeater:
    """Run `fn` every `interval` seconds on a thread until stopped (bounded by `limit` seconds)."""

    def __init__(self, fn: Callable[[], None], interval: float, limit: float) -> None:
        self.fn, self.interval, self.limit = fn, interval, limit
        self.count = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.wait(self.interval) and time.monotonic() < deadline:
            try:
                self.fn()
                self.count += 1
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(exc))

    def __enter__(self) -> Repeater:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
