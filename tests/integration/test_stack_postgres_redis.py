"""The same end-to-end flow on PostgreSQL + Redis, with granian, a Celery worker
and Celery beat as separate processes; then a restart of all of them while an
incident awaits approval."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from iras.migrate import upgrade
from tests.support.services import PostgresServer, RedisServer
from tests.support.stack import SCENARIO_FILE, Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(
    postgres: PostgresServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    upgrade(postgres.url)
    env = {
        "DATABASE_URL": postgres.url,
        "CELERY_BROKER_URL": redis_server.url,
        "MOCK_EVIDENCE_FILE": str(SCENARIO_FILE),
        "IRAS_MOCK_EVIDENCE": "true",
        "BEAT_INTERVAL_SECONDS": "1",
        "ANALYST": "offline",
        # The offline analyst's diagnosis quality is measured by `iras eval`;
        # here the pipeline's mechanics are under test.
        "RCA_CONFIDENCE_THRESHOLD": "0.3",
    }
    s = Stack(env, tmp_path_factory.mktemp("stack")).start()
    yield s
    s.stop()


def test_alert_to_resolved_on_postgres_and_redis(stack: Stack) -> None:
    incident_id = stack.fire("pg-happy")
    doc = stack.wait(incident_id, "awaiting_approval")
    assert doc["plan"]["steps"]
    response = requests.post(
        f"{stack.base}/incidents/{incident_id}/approve", json={"by": "alice", "reason": "ok"}, timeout=10
    )
    assert response.status_code == 200, response.text
    doc = stack.wait(incident_id, "resolved")
    assert doc["postmortem"]["outcome"] == "resolved"
    assert all(r["status"] == "succeeded" for r in doc["step_runs"])
    health = requests.get(f"{stack.base}/health", timeout=10).json()
    assert (
        health["checks"]["database"]["kind"] == "postgresql" and health["checks"]["broker"]["kind"] == "redis"
    )


def test_a_restart_of_every_process_while_awaiting_approval_loses_nothing(stack: Stack) -> None:
    incident_id = stack.fire("pg-restart")
    stack.wait(incident_id, "awaiting_approval")
    stack.stop()
    stack.start()
    response = requests.post(f"{stack.base}/incidents/{incident_id}/approve", json={"by": "bob"}, timeout=10)
    assert response.status_code == 200, response.text
    doc = stack.wait(incident_id, "resolved")
    assert doc["decision"]["by"] == "bob"


def test_concurrent_duplicates_open_one_incident(stack: Stack) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        ids = set(pool.map(lambda _: stack.fire("pg-dup"), range(32)))
    assert len(ids) == 1
    doc = requests.get(f"{stack.base}/incidents/{ids.pop()}", timeout=10).json()
    assert doc["alert_count"] == 32


def test_beat_escalates_an_expired_approval(stack: Stack, postgres: PostgresServer) -> None:
    from sqlalchemy import create_engine, text

    incident_id = stack.fire("pg-timeout")
    stack.wait(incident_id, "awaiting_approval")
    engine = create_engine(postgres.url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE incidents SET approval_deadline = now() - interval '1 second' WHERE id = :id"),
            {"id": incident_id},
        )
    engine.dispose()
    doc = stack.wait(incident_id, "escalated", timeout=30)
    assert doc["decision"]["via"] == "timeout"
