"""Task messages on a real Redis (`iras.dispatch`, Celery's `send_task`): each is on
the queue Celery routes its task to, the publish signals fire for it (the queue-lag
stamp of iras.metrics is set there), kombu reads it back as the task call, and a
broker that is down makes the send raise."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from celery.signals import after_task_publish
from kombu import Connection

from iras import dispatch, metrics
from iras.celery_app import create_celery
from iras.config import get_settings, reset_settings
from iras.workflow import IncidentStatus
from tests.support.services import RedisServer, free_port

pytestmark = pytest.mark.integration


def _app_on(url: str, monkeypatch: pytest.MonkeyPatch) -> Celery:
    """A Celery app configured (as production's) for broker `url`, used by dispatch."""
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    reset_settings()
    app = create_celery(get_settings())
    monkeypatch.setattr(dispatch, "celery_app", app)
    return app


@pytest.fixture
def broker(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database of its own on the session's Redis, emptied."""
    url = redis_server.url.rsplit("/", 1)[0] + "/6"
    redis.Redis.from_url(url).flushdb()
    _app_on(url, monkeypatch)
    yield url
    reset_settings()  # monkeypatch restores the variable after this


def receive(url: str, queue: str) -> Any:
    """One message of `queue`, consumed with kombu as a Celery worker does."""
    with Connection(url) as conn, conn.SimpleQueue(queue, no_ack=True) as q:
        return q.get(timeout=5)


def test_a_stage_is_sent_to_the_queue_celery_routes_it_to(broker: str) -> None:
    published: list[str] = []

    def seen(sender: str, headers: dict[str, Any], **_: Any) -> None:
        published.append(headers["id"])

    after_task_publish.connect(seen, weak=False)
    try:
        before = time.time()
        dispatch.enqueue_stage("inc-7", IncidentStatus.EXECUTING)
    finally:
        after_task_publish.disconnect(seen)
    client = redis.Redis.from_url(broker)
    assert (client.llen("ops"), client.llen("analysis")) == (1, 0)
    message = receive(broker, "ops")
    assert message.headers["task"] == "incidents.execute_plan"
    assert published == [message.headers["id"]]
    assert message.decode()[:2] == [["inc-7"], {}]
    assert message.delivery_info["routing_key"] == "ops"
    # iras.metrics' receiver of before_task_publish stamps it: the queue lag.
    assert metrics.QUEUE_LAG is not None and before <= message.headers["iras_sent_at"] <= time.time()


def test_the_triage_of_many_incidents_goes_out_in_order_over_one_producer(broker: str) -> None:
    ids = [f"inc-{n}" for n in range(5)]
    dispatch.enqueue_stages(ids, IncidentStatus.TRIAGING)
    got = [receive(broker, "analysis") for _ in ids]
    assert [m.headers["task"] for m in got] == ["incidents.run_triage"] * len(ids)
    assert [m.decode()[0] for m in got] == [[i] for i in ids]


def test_a_notification_is_sent_to_the_analysis_queue(broker: str) -> None:
    dispatch.enqueue_notify("notify.post_decision", "inc-8")
    message = receive(broker, "analysis")
    assert message.headers["task"] == "notify.post_decision"
    assert message.decode()[:2] == [["inc-8"], {}]


def test_a_send_to_a_broker_that_is_down_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """The post-commit callers log it; the sweeper re-sends."""
    _app_on(f"redis://127.0.0.1:{free_port()}/0", monkeypatch)
    try:
        with pytest.raises(Exception) as raised:
            dispatch.enqueue_stage("inc-9", IncidentStatus.ESCALATING)
        assert "connect" in str(raised.value).lower() or "refused" in str(raised.value).lower()
    finally:
        reset_settings()
