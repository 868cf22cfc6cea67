"""An alert storm against granian on PostgreSQL (+ Redis as the broker and the
rate-limit store), each scenario with its own database:

1. 5,000 alerts over 50 fingerprints, posted concurrently from a bounded thread
   pool (half generic JSON, half single-alert Alertmanager notifications): exactly
   50 incidents, 5,000 alert events, every alert_count 100, none lost, and only 50
   pipelines enqueued (a storm must not become 5,000 investigations).
2. A storm over the rate limit: the limit is shared by the granian workers
   through Redis, every 429 says when to retry, and a sender that honours it
   loses nothing.

No Celery worker runs: the triage messages stay in Redis where they are counted,
and no incident can close mid-storm (a closed fingerprint would rightly open a
second incident and blur the count).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.support.services import IrasProcess, PostgresServer, RedisServer, free_port

pytestmark = pytest.mark.integration

FINGERPRINTS = 50
PER_FINGERPRINT = 100
THREADS = 32


def storm_alert(k: int, n: int) -> tuple[str, dict[str, Any]]:
    """Alert number `n` of fingerprint `k`: generic JSON for even k, Alertmanager for odd k."""
    ts = f"2026-11-25T10:{n % 60:02d}:00Z"
    if k % 2 == 0:
        return "/webhook/alert", {
            "title": f"Storm alert {k}",
            "timestamp": ts,
            "service": f"svc-{k}",
            "fingerprint": f"storm-{k}",
            "sequence": n,
        }
    return "/webhook/alertmanager", {
        "version": "4",
        "status": "firing",
        "receiver": "iras",
        "groupKey": f'{{}}:{{alertname="Storm{k}"}}',
        "groupLabels": {"alertname": f"Storm{k}"},
        "commonLabels": {"alertname": f"Storm{k}"},
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": f"Storm{k}", "service": f"svc-{k}", "pod": f"pod-{n}"},
                "annotations": {"summary": f"storm {k}/{n}"},
                "startsAt": ts,
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": f"{k:04x}{n:012x}",
            }
        ],
    }


class Web:
    def __init__(self, env: dict[str, str], tmp: Any) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = env
        # 4 workers x 8 threads: more than one process, so the dedup race is a real one.
        self.proc = IrasProcess("web", env, port=self.port, web_workers=4, web_threads=8, log_dir=tmp)

    def __enter__(self) -> Web:
        self.proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.stop()


def _count(url: str, sql: str) -> Any:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).all()
    finally:
        engine.dispose()


@pytest.fixture
def storm_env(
    postgres: PostgresServer, redis_server: RedisServer, request: pytest.FixtureRequest
) -> Iterator[dict[str, str]]:
    import redis

    db_index = 6 if request.node.name.startswith("test_5000") else 7
    broker = redis_server.url.rsplit("/", 1)[0] + f"/{db_index}"
    redis.Redis.from_url(broker).flushdb()
    yield {
        "DATABASE_URL": postgres.fresh_database(f"iras_storm_{db_index}"),
        "CELERY_BROKER_URL": broker,
        "ANALYST": "offline",
        "IRAS_MOCK_EVIDENCE": "true",
        "IRAS_DB_POOL_SIZE": "10",
    }


def _sender() -> Any:
    """One keep-alive HTTP session per thread, as a real sender pool would hold."""
    local = threading.local()

    def post(path: str, body: dict[str, Any], base: str) -> requests.Response:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        return session.post(base + path, json=body, timeout=30)

    return post


def test_5000_alerts_over_50_fingerprints_make_exactly_50_incidents(
    storm_env: dict[str, str], tmp_path: Any
) -> None:
    import redis

    env = {**storm_env, "WEBHOOK_RATE_LIMIT_PER_SECOND": "0"}  # throughput, not the limiter, is measured here
    work = [storm_alert(k, n) for n in range(PER_FINGERPRINT) for k in range(FINGERPRINTS)]
    post = _sender()
    latencies: list[float] = []

    def send(item: tuple[str, dict[str, Any]]) -> tuple[int, Any]:
        start = time.perf_counter()
        response = post(item[0], item[1], web.base)
        latencies.append(time.perf_counter() - start)
        return response.status_code, response.json()

    with Web(env, tmp_path) as web:
        started = time.perf_counter()
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(send, work))
        elapsed = time.perf_counter() - started
        statuses = Counter(status for status, _ in results)
        assert statuses == {202: len(work)}, (
            statuses,
            [d for s, d in results if s != 202][:5],
            web.proc.log_tail(),
        )

    outcomes = Counter(doc["status"] for _, doc in results)
    assert outcomes == {"processing": FINGERPRINTS, "deduplicated": len(work) - FINGERPRINTS}
    ids_by_fingerprint: dict[str, set[str]] = {}
    for (_, body), (_, doc) in zip(work, results, strict=True):
        key = body.get("fingerprint") or body.get("groupKey")
        ids_by_fingerprint.setdefault(key, set()).add(doc["incident_id"])
    assert len(ids_by_fingerprint) == FINGERPRINTS
    assert all(len(ids) == 1 for ids in ids_by_fingerprint.values()), (
        "every duplicate joined its fingerprint's incident"
    )

    url = env["DATABASE_URL"]
    [(incidents, distinct_keys)] = _count(url, "SELECT count(*), count(DISTINCT fingerprint) FROM incidents")
    [(events,)] = _count(url, "SELECT count(*) FROM alert_events")
    counts = {row[0] for row in _count(url, "SELECT alert_count FROM incidents")}
    per_incident = {row[0] for row in _count(url, "SELECT count(*) FROM alert_events GROUP BY incident_id")}
    assert (incidents, distinct_keys, events) == (FINGERPRINTS, FINGERPRINTS, FINGERPRINTS * PER_FINGERPRINT)
    assert counts == per_incident == {PER_FINGERPRINT}
    # Each incident's triage sent exactly once (not once per alert).
    broker = redis.Redis.from_url(env["CELERY_BROKER_URL"])

    def triage_messages() -> list[str]:
        found = []
        for m in broker.lrange("analysis", 0, -1):
            message = json.loads(m)
            assert message["headers"]["task"] == "incidents.run_triage"
            found.append(json.loads(base64.b64decode(message["body"]))[0][0])
        return found

    # A request is answered right after its commit, its batch's messages follow it.
    deadline = time.monotonic() + 10
    while len(sent := triage_messages()) < FINGERPRINTS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(sent) == sorted(i for ids in ids_by_fingerprint.values() for i in ids)

    latencies.sort()
    rate = len(work) / elapsed
    print(
        f"\nSTORM: {len(work)} alerts over {FINGERPRINTS} fingerprints, {THREADS} client threads, "
        f"granian 4x8 on PostgreSQL: {elapsed:.2f} s, {rate:.0f} alerts/s, "
        f"p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms"
    )


def test_a_storm_over_the_rate_limit_loses_nothing_when_the_sender_honours_retry_after(
    storm_env: dict[str, str], tmp_path: Any
) -> None:
    # Well under what this web process accepts unthrottled (~150+/s on a busy 2-core box),
    # so the limiter, not the machine, sets the pace.
    rate, burst, total = 40, 20, 200
    env = {**storm_env, "WEBHOOK_RATE_LIMIT_PER_SECOND": str(rate), "WEBHOOK_RATE_LIMIT_BURST": str(burst)}
    post = _sender()
    refusals: list[dict[str, Any]] = []
    lock = threading.Lock()

    def send(n: int) -> int:
        path, body = storm_alert(0, n)
        for _ in range(200):
            response = post(path, body, web.base)
            if response.status_code != 429:
                return response.status_code
            doc = response.json()
            with lock:
                refusals.append({"header": response.headers.get("Retry-After"), **doc})
            time.sleep(doc["retry_after"])  # the body's precise value; the header is whole seconds
        raise AssertionError("never accepted")

    with Web(env, tmp_path) as web:
        started = time.perf_counter()
        with ThreadPoolExecutor(THREADS) as pool:
            statuses = Counter(pool.map(send, range(total)))
        elapsed = time.perf_counter() - started

    assert statuses == {202: total}
    assert refusals, "the storm did go over the limit"
    assert all(r["error"] == "too_many_requests" and r["source"] == "generic" for r in refusals)
    assert all(int(r["header"]) >= 1 and 0 < r["retry_after"] <= 1 for r in refusals)
    # 4 granian workers share one bucket in Redis: accepting `total` takes at least
    # (total - burst) / rate seconds. Four per-process buckets would take a quarter of it.
    assert elapsed >= (total - burst) / rate * 0.9, elapsed
    [(events,)] = _count(env["DATABASE_URL"], "SELECT count(*) FROM alert_events")
    [(count,)] = _count(env["DATABASE_URL"], "SELECT alert_count FROM incidents")
    assert events == count == total
    print(
        f"\nRATE-LIMITED STORM: {total} alerts at {rate}/s burst {burst}: all accepted in {elapsed:.2f} s "
        f"after {len(refusals)} 429s (expected >= {(total - burst) / rate:.2f} s)"
    )
