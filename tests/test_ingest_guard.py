"""What guards `POST /webhook/*`: per-source tokens (401), Content-Type (415),
size (413), the per-source rate limit (429 with Retry-After), and the rule that
refused requests never write a row (no dead letter either)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from pydantic import ValidationError
from sqlalchemy import func, select

from iras.config import Settings, reset_settings
from iras.db import new_session
from iras.ingest.tokens import parse_webhook_tokens
from iras.models import AlertEvent, DeadLetter, Incident
from iras.web import ingest_guard
from iras.web.ingest_guard import MemoryLimiter, RedisLimiter

PAYLOADS = Path(__file__).parent / "payloads"
AM = json.loads((PAYLOADS / "alertmanager_firing.json").read_text())
GRAFANA = json.loads((PAYLOADS / "grafana_firing.json").read_text())
DATADOG = json.loads((PAYLOADS / "datadog_firing.json").read_text())
GENERIC = {"title": "Disk full", "timestamp": "2026-11-25T10:00:00Z", "service": "db"}


def _counts() -> tuple[int, int, int]:
    with new_session() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(m)) or 0
            for m in (Incident, AlertEvent, DeadLetter)
        )


@pytest.fixture
def configure(iras_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Set environment variables, then build a fresh app (and so fresh rate-limit buckets).

    Stage messages are dropped: these tests are about the door, and a session-wide
    embedded worker (started by another module) must not work on their incidents
    while the next test swaps the database and settings under it."""
    from iras import dispatch
    from iras.web import create_app

    monkeypatch.setattr(dispatch, "enqueue_stage", lambda *_: None)
    monkeypatch.setattr(dispatch, "enqueue_stages", lambda *_: None)

    def _configure(**env: str) -> FlaskClient:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reset_settings()
        return create_app().test_client()

    yield _configure
    reset_settings()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------- token parsing


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("", {}),
        ("s3cret-for-all", {"*": "s3cret-for-all"}),
        ("c2VjcmV0IHRva2Vu==", {"*": "c2VjcmV0IHRva2Vu=="}),  # base64 padding is not "source="
        ("alertmanager=a1, Grafana=g1 ,", {"alertmanager": "a1", "grafana": "g1"}),
        ("alertmanager=a=b", {"alertmanager": "a=b"}),
        ("shared,datadog=d1", {"*": "shared", "datadog": "d1"}),
    ],
)
def test_webhook_tokens_forms(raw: str, parsed: dict[str, str]) -> None:
    assert parse_webhook_tokens(raw) == parsed
    assert Settings(webhook_tokens=raw).webhook_tokens == parsed  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("alertmanger=a1", "unknown source 'alertmanger'"),  # a typo must not pass silently
        ("grafana=", "empty token"),
        ("grafana=a,grafana=b", "given twice"),
        ("one,two", "given twice"),
    ],
)
def test_bad_webhook_tokens_stop_the_start(raw: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(webhook_tokens=raw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- auth


@pytest.fixture
def per_source(configure: Any) -> FlaskClient:
    return configure(WEBHOOK_TOKENS="alertmanager=am-secret,grafana=gf-secret,generic=gen-secret")


@pytest.mark.parametrize(
    "headers",
    [{}, _bearer("wrong"), _bearer(""), {"Authorization": "Basic YW06YW0tc2VjcmV0"}, _bearer("am-secre")],
)
def test_missing_or_wrong_token_is_401_and_writes_nothing(
    per_source: FlaskClient, headers: dict[str, str]
) -> None:
    for body in (AM, {"not": "an alert"}):  # a malformed body is not dead-lettered either
        response = per_source.post("/webhook/alertmanager", json=body, headers=headers)
        assert response.status_code == 401
        doc = response.get_json()
        assert doc["error"] == "unauthorized" and "token" in doc["reason"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert per_source.post("/webhook/alert?token=nope", json=AM).status_code == 401
    assert _counts() == (0, 0, 0)


def test_a_token_opens_its_own_source_only(per_source: FlaskClient) -> None:
    ok = per_source.post("/webhook/alertmanager", json=AM, headers=_bearer("am-secret"))
    assert ok.status_code == 202, ok.get_json()
    by_query = per_source.post("/webhook/grafana?token=gf-secret", json=GRAFANA)
    assert by_query.status_code == 202, by_query.get_json()

    crossed = per_source.post("/webhook/alertmanager", json=AM, headers=_bearer("gf-secret"))
    assert crossed.status_code == 401 and "alertmanager" in crossed.get_json()["reason"]
    assert per_source.post("/webhook/datadog", json=DATADOG, headers=_bearer("am-secret")).status_code == 401
    assert _counts() == (2, 5, 0)


def test_on_the_detecting_route_the_token_names_the_source(per_source: FlaskClient) -> None:
    ok = per_source.post("/webhook/alert", json=GRAFANA, headers=_bearer("gf-secret"))
    assert ok.status_code == 202
    with new_session() as session:
        assert session.scalar(select(Incident.source)) == "grafana"
    # The Alertmanager token cannot smuggle a Datadog payload: it is read as Alertmanager,
    # fails there, and (the caller being authenticated) is kept as a dead letter.
    response = per_source.post("/webhook/alert", json=DATADOG, headers=_bearer("am-secret"))
    assert response.status_code == 400
    with new_session() as session:
        row = session.get(DeadLetter, response.get_json()["dead_letter_id"])
        assert row is not None and row.source == "alertmanager"


def test_a_token_shared_by_two_sources_is_checked_against_the_detected_one(configure: Any) -> None:
    client = configure(WEBHOOK_TOKENS="datadog=shared,generic=shared")
    assert client.post("/webhook/alert", json=DATADOG, headers=_bearer("shared")).status_code == 202
    assert client.post("/webhook/alert", json=GENERIC, headers=_bearer("shared")).status_code == 202
    refused = client.post("/webhook/alert", json=GRAFANA, headers=_bearer("shared"))
    assert refused.status_code == 401 and "grafana" in refused.get_json()["reason"]
    assert _counts() == (2, 2, 0)


def test_one_token_for_every_source(configure: Any) -> None:
    client = configure(WEBHOOK_TOKENS="one-for-all")
    for path, body in (
        ("/webhook/alert", DATADOG),
        ("/webhook/grafana", GRAFANA),
        ("/webhook/generic", GENERIC),
    ):
        assert client.post(path, json=body, headers=_bearer("one-for-all")).status_code == 202
    assert client.post("/webhook/generic", json=GENERIC).status_code == 401


def test_every_secret_is_compared_in_constant_time(
    per_source: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmac

    calls: list[bytes] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return real(a, b)

    monkeypatch.setattr(ingest_guard.hmac, "compare_digest", spy)
    per_source.post("/webhook/alertmanager", json=AM, headers=_bearer("am-secret"))
    # All three compared even though the first one matched: no early exit.
    assert sorted(calls) == [b"am-secret", b"gen-secret", b"gf-secret"]


def test_health_says_when_ingestion_is_open_and_never_shows_secrets(configure: Any) -> None:
    open_doc = configure().get("/health").get_json()
    assert open_doc["ingest_auth"] == "open"
    assert any("WEBHOOK_TOKENS" in w for w in open_doc["warnings"])
    assert open_doc["ingest"]["rate_limit"] == {"per_second": 50.0, "burst": 500, "backend": "memory"}

    doc = configure(WEBHOOK_TOKENS="alertmanager=am-secret,grafana=gf-secret").get("/health").get_json()
    assert doc["ingest_auth"] == "token" and doc["ingest"]["token_sources"] == ["alertmanager", "grafana"]
    assert not any("WEBHOOK_TOKENS" in w for w in doc.get("warnings", []))
    assert "am-secret" not in json.dumps(doc)


def test_startup_line_and_log_warning(configure: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="iras.web.webhooks"):
        configure()
    assert any("ingestion is open" in r.getMessage() for r in caplog.records)
    assert ingest_guard.startup_line().startswith("ingest auth: OPEN")
    configure(WEBHOOK_TOKENS="grafana=x1")
    assert ingest_guard.startup_line() == "ingest auth: token (grafana)"


# --------------------------------------------------------------------------- size and type


def test_a_body_over_the_limit_is_a_json_413_and_writes_nothing(configure: Any) -> None:
    client = configure(MAX_PAYLOAD_BYTES="2048")
    body = json.dumps({**GENERIC, "blob": "x" * 4000}).encode()
    response = client.post("/webhook/alert", data=body, content_type="application/json")
    assert response.status_code == 413
    doc = response.get_json()
    assert doc["error"] == "payload_too_large" and doc["limit_bytes"] == 2048 and "2048" in doc["reason"]
    assert _counts() == (0, 0, 0)


def test_a_chunked_body_over_the_limit_is_the_same_413(configure: Any) -> None:
    """No Content-Length: werkzeug stops reading at the limit and raises."""
    import io

    client = configure(MAX_PAYLOAD_BYTES="2048")
    body = json.dumps({**GENERIC, "blob": "x" * 4000}).encode()
    response = client.post(
        "/webhook/alert",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"
    assert _counts() == (0, 0, 0)


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_only_json_is_accepted(configure: Any, content_type: str | None) -> None:
    client = configure()
    response = client.post("/webhook/alert", data=json.dumps(GENERIC), content_type=content_type)
    assert response.status_code == 415
    assert response.get_json()["error"] == "unsupported_media_type"
    assert _counts() == (0, 0, 0)


def test_json_with_a_charset_or_a_vendor_type_is_fine(configure: Any) -> None:
    client = configure()
    for content_type in ("application/json; charset=utf-8", "application/vnd.pagerduty+json"):
        response = client.post("/webhook/alert", data=json.dumps(GENERIC), content_type=content_type)
        assert response.status_code == 202, response.get_json()


# --------------------------------------------------------------------------- rate limit


def test_over_the_rate_limit_is_a_json_429_with_retry_after(configure: Any) -> None:
    client = configure(WEBHOOK_RATE_LIMIT_PER_SECOND="0.5", WEBHOOK_RATE_LIMIT_BURST="3")
    statuses = [client.post("/webhook/generic", json=GENERIC).status_code for _ in range(3)]
    assert statuses == [202, 202, 202]
    limited = client.post("/webhook/generic", json=GENERIC)
    assert limited.status_code == 429
    doc = limited.get_json()
    assert doc["error"] == "too_many_requests" and doc["source"] == "generic"
    assert 0 < doc["retry_after"] <= 2.0 and "retry in" in doc["reason"]
    assert int(limited.headers["Retry-After"]) == 2  # whole seconds, rounded up
    with new_session() as session:
        assert session.scalar(select(Incident.alert_count)) == 3


def test_each_source_has_its_own_bucket(configure: Any) -> None:
    client = configure(WEBHOOK_RATE_LIMIT_PER_SECOND="0.1", WEBHOOK_RATE_LIMIT_BURST="1")
    assert client.post("/webhook/alert", json=GENERIC).status_code == 202  # detected: generic
    assert client.post("/webhook/generic", json=GENERIC).status_code == 429  # same bucket
    assert client.post("/webhook/alert", json=DATADOG).status_code == 202
    assert client.post("/webhook/alert", json=GRAFANA).status_code == 202
    assert client.post("/webhook/grafana", json=GRAFANA).status_code == 429


def test_rate_limited_garbage_is_not_dead_lettered(configure: Any) -> None:
    """The dead-letter table grows at most as fast as the rate limit allows."""
    client = configure(WEBHOOK_RATE_LIMIT_PER_SECOND="0.1", WEBHOOK_RATE_LIMIT_BURST="2")
    statuses = [client.post("/webhook/alert", json={"junk": i}).status_code for i in range(20)]
    statuses += [
        client.post(f"/webhook/random-{i}", data=b"{", content_type="application/json").status_code
        for i in range(5)
    ]
    assert statuses.count(400) == 2 and statuses.count(429) == 23
    assert _counts() == (0, 0, 2)


def test_unauthenticated_requests_do_not_drain_the_senders_bucket(configure: Any) -> None:
    client = configure(
        WEBHOOK_TOKENS="generic=gen-secret", WEBHOOK_RATE_LIMIT_PER_SECOND="0.1", WEBHOOK_RATE_LIMIT_BURST="2"
    )
    for _ in range(10):
        assert client.post("/webhook/generic", json=GENERIC).status_code == 401
    assert [
        client.post("/webhook/generic", json=GENERIC, headers=_bearer("gen-secret")).status_code
        for _ in range(3)
    ] == [
        202,
        202,
        429,
    ]


def test_rate_zero_disables_the_limit(configure: Any) -> None:
    client = configure(WEBHOOK_RATE_LIMIT_PER_SECOND="0", WEBHOOK_RATE_LIMIT_BURST="1")
    assert all(client.post("/webhook/generic", json=GENERIC).status_code == 202 for _ in range(5))
    assert client.get("/health").get_json()["ingest"]["rate_limit"]["backend"] == "disabled"


def test_memory_bucket_refills_at_the_rate() -> None:
    limiter = MemoryLimiter()
    assert limiter.acquire("k", rate=50, burst=2) == 0 and limiter.acquire("k", rate=50, burst=2) == 0
    wait = limiter.acquire("k", rate=50, burst=2)
    assert 0 < wait <= 0.02
    time.sleep(wait + 0.01)
    assert limiter.acquire("k", rate=50, burst=2) == 0
    assert limiter.acquire("other", rate=50, burst=2) == 0


def test_unknown_source_names_share_one_bucket() -> None:
    assert ingest_guard.bucket_for("Grafana") == "grafana"
    assert {ingest_guard.bucket_for(f"x{i}") for i in range(100)} == {"unknown"}
    assert ingest_guard.bucket_for(None) == "unknown"


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    from tests.support.services import RedisServer, redis_available

    if not redis_available():
        pytest.skip("redis-server not installed")
    server = RedisServer().start()
    yield server.url
    server.stop()


def test_redis_bucket_is_shared_by_several_web_processes(redis_url: str) -> None:
    # Two limiters = two web worker processes: together they allow the burst once, not twice.
    workers = [RedisLimiter(redis_url), RedisLimiter(redis_url)]
    waits = [workers[i % 2].acquire("shared-test", rate=0.5, burst=5) for i in range(10)]
    assert sum(1 for w in waits if w == 0) == 5
    assert all(0 < w <= 2.0 for w in waits[5:])


def test_redis_down_falls_back_to_the_process_bucket_quickly() -> None:
    from tests.support.services import free_port

    limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2, cooldown=60)
    start = time.monotonic()
    waits = [limiter.acquire("k", rate=1, burst=3) for _ in range(50)]
    assert time.monotonic() - start < 1.0, "one failed try, then no Redis round trip per request"
    assert waits[:3] == [0, 0, 0] and all(w > 0 for w in waits[3:])


def test_a_redis_broker_selects_the_shared_limiter(configure: Any, redis_url: str) -> None:
    client = configure(
        CELERY_BROKER_URL=redis_url, WEBHOOK_RATE_LIMIT_PER_SECOND="0.1", WEBHOOK_RATE_LIMIT_BURST="1"
    )
    assert client.get("/health").get_json()["ingest"]["rate_limit"]["backend"] == "redis"
    # The bucket lives in Redis: a second app (another process) sees it drained.
    other = configure()
    first = client.post("/webhook/datadog", json=DATADOG)
    assert first.status_code == 202, first.get_json()
    assert other.post("/webhook/datadog", json=DATADOG).status_code == 429
