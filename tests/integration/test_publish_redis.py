"""Ready-made Celery messages (iras/publish.py) on a real Redis: what `enqueue_stage`
and `enqueue_notify` push is on the queue Celery routes the task to, and kombu reads
it back as the task call; a broker that is down makes the publish raise."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection

from iras.config import reset_settings
from iras.workflow import IncidentStatus
from tests.support.services import RedisServer, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """CELERY_BROKER_URL on its own database of the session's Redis, emptied."""
    url = redis_server.url.rsplit("/", 1)[0] + "/6"
    redis.Redis.from_url(url).flushdb()
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    reset_settings()
    yield url
    reset_settings()  # monkeypatch restores the variable after this


def receive(url: str, queue: str) -> Any:
    """One message of `queue`, consumed with kombu as a Celery worker does."""
    with Connection(url) as conn, conn.SimpleQueue(queue, no_ack=True) as q:
        return q.get(timeout=5)


def test_a_stage_is_pushed_to_the_queue_celery_routes_it_to(broker: str) -> None:
    from iras.tasks import enqueue_stage

    before = time.time()
    enqueue_stage("inc-7", IncidentStatus.EXECUTING)
    client = redis.Redis.from_url(broker)
    assert (client.llen("ops"), client.llen("analysis")) == (1, 0)
    message = receive(broker, "ops")
    assert message.headers["task"] == "incidents.execute_plan"
    assert message.decode()[:2] == [["inc-7"], {}]
    assert message.delivery_info["routing_key"] == "ops"
    assert before <= message.headers["iras_sent_at"] <= time.time()  # queue lag (iras.metrics)


def test_a_configured_notification_is_pushed_to_the_analysis_queue(
    broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import iras.tasks

    monkeypatch.setattr(iras.tasks, "chat_configured", lambda _settings: True)
    iras.tasks.enqueue_notify("notify.post_decision", "inc-8")
    message = receive(broker, "analysis")
    assert message.headers["task"] == "notify.post_decision"
    assert message.decode()[:2] == [["inc-8"], {}]


def test_a_publish_to_a_broker_that_is_down_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """As kombu's did: the post-commit callers log it, the sweeper re-sends."""
    from iras.tasks import enqueue_stage

    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    reset_settings()
    try:
        with pytest.raises(redis.ConnectionError):
            enqueue_stage("inc-9", IncidentStatus.ESCALATING)
    finally:
        reset_settings()
