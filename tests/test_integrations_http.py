"""Shared HTTP plumbing and the Prometheus client's pure parts, against a local server."""

from __future__ import annotations

import email.utils
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from iras.config import Settings
from iras.integrations.base import SourceUnavailable, TransientNotifyError
from iras.integrations.http import (
    HTTPStatusError,
    RetryPolicy,
    describe_error,
    new_session,
    parse_retry_after,
    redact_url,
    request,
)
from iras.integrations.prometheus import PrometheusMetricSource, render, sample_value
from tests.fakes.servers import FakeServer, Recorded, Reply


class Echo(FakeServer):
    """Answers 200 {"ok": true} unless a reply is scripted."""

    def handle(self, request: Recorded) -> Reply:
        return Reply(200, {"ok": True, "path": request.path})


@pytest.fixture
def server() -> Iterator[Echo]:
    with Echo() as fake:
        yield fake  # type: ignore[misc]


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _policy(attempts: int = 3, max_sleep: float = 5.0) -> tuple[RetryPolicy, Sleeps]:
    sleeps = Sleeps()
    return RetryPolicy(
        attempts=attempts, backoff_seconds=0.01, max_sleep_seconds=max_sleep, sleep=sleeps
    ), sleeps


def _get(
    server: FakeServer, policy: RetryPolicy, notifier: bool = False, timeout: float = 2
) -> requests.Response:
    with new_session() as session:
        return request(
            session,
            "GET",
            f"{server.url}/x",
            source="test",
            timeout=timeout,
            policy=policy,
            notifier=notifier,
        )


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("7", now) == 7
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == pytest.approx(30)
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_it_retries_a_5xx_then_returns_the_success(server: Echo) -> None:
    server.script("/x", Reply(503, "upstream connect error"), times=2)
    policy, sleeps = _policy()

    assert _get(server, policy).json()["ok"] is True
    assert len(server.calls("/x")) == 3 and len(sleeps) == 2


def test_it_waits_exactly_what_retry_after_says(server: Echo) -> None:
    server.script("/x", Reply(429, {"message": "slow down"}, {"Retry-After": "2"}))
    policy, sleeps = _policy()

    _get(server, policy)

    assert sleeps == [2.0]


def test_a_retry_after_beyond_the_policy_is_handed_to_the_notifier_caller_without_sleeping(
    server: Echo,
) -> None:
    server.script("/x", Reply(429, {"message": "slow down"}, {"Retry-After": "120"}))
    policy, sleeps = _policy(max_sleep=5)

    with pytest.raises(TransientNotifyError) as caught:
        _get(server, policy, notifier=True)

    assert caught.value.retry_after == 120 and sleeps == [] and len(server.calls()) == 1
    assert "rate limited" in str(caught.value)


def test_a_context_source_out_of_retries_is_unavailable(server: Echo) -> None:
    server.script("/x", Reply(502, "<html>Bad Gateway</html>"), times=3)
    policy, _ = _policy(attempts=3)

    with pytest.raises(SourceUnavailable, match="HTTP 502: <html>Bad Gateway</html>"):
        _get(server, policy)
    assert len(server.calls()) == 3


def test_a_permanent_error_is_not_retried_and_carries_its_status(server: Echo) -> None:
    server.script("/x", Reply(404, {"message": "Not Found"}))
    policy, sleeps = _policy()

    with pytest.raises(HTTPStatusError) as caught:
        _get(server, policy, notifier=True)

    assert caught.value.status == 404 and "Not Found" in str(caught.value)
    assert sleeps == [] and len(server.calls()) == 1


def test_a_github_exhausted_rate_limit_is_waited_for_when_it_resets_soon(server: Echo) -> None:
    reset = datetime.now(UTC).timestamp() + 1
    server.script(
        "/x",
        Reply(
            403,
            {"message": "API rate limit exceeded"},
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{reset:.0f}"},
        ),
    )
    policy, sleeps = _policy(max_sleep=5)

    assert _get(server, policy).status_code == 200
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 2


def test_a_403_that_is_not_a_rate_limit_is_permanent(server: Echo) -> None:
    server.script("/x", Reply(403, {"message": "Resource not accessible by integration"}))
    policy, sleeps = _policy()

    with pytest.raises(HTTPStatusError, match="Resource not accessible"):
        _get(server, policy)
    assert sleeps == []


def test_a_hung_server_times_out_and_is_retried(server: Echo) -> None:
    server.script("/x", Reply(200, {"late": True}, delay=0.5), times=2)
    policy, sleeps = _policy(attempts=2)

    with pytest.raises(SourceUnavailable, match="timed out after 0.1s"):
        _get(server, policy, timeout=0.1)
    assert len(sleeps) == 1


def test_connection_errors_never_leak_credentials_from_the_url() -> None:
    policy, _ = _policy(attempts=2)
    with socket_closed_port() as port, new_session() as session, pytest.raises(SourceUnavailable) as caught:
        request(
            session,
            "GET",
            f"http://admin:s3cret@127.0.0.1:{port}/loki?token=abc",
            source="loki",
            timeout=1,
            policy=policy,
        )
    message = str(caught.value)
    assert "connection failed" in message and f"127.0.0.1:{port}/loki" in message
    assert "s3cret" not in message.split("(")[0] and "token=abc" not in message.split("(")[0]
    assert redact_url("https://u:p@h:9/a?b=c") == "https://h:9/a"


class socket_closed_port:
    """A port nothing listens on (bound then released)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"error": {"type": "index_not_found_exception", "reason": "no such index [x]"}, "status": 404},
            "no such index [x]",
        ),
        (
            {"status": "invalid event", "message": "Event object is invalid", "errors": ["bad key"]},
            'Event object is invalid: ["bad key"]',
        ),
        (
            {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"},
            "parse error at char 5",
        ),
        ("too many outstanding requests\n", "too many outstanding requests"),
    ],
)
def test_error_reasons_are_read_from_each_api_s_body(body: object, expected: str) -> None:
    response = requests.Response()
    response.status_code = 400
    response._content = body.encode() if isinstance(body, str) else __import__("json").dumps(body).encode()
    assert describe_error(response) == expected


# --------------------------------------------------------------------------- Prometheus, pure parts


def test_a_service_name_cannot_break_out_of_the_label_matcher() -> None:
    query = render('up{service="$service"}[$window] $offset', 'x"} or vector(1) or {a="', "5m", "offset 7d")
    assert query == 'up{service="x\\"} or vector(1) or {a=\\""}[5m] offset 7d'


def test_no_data_and_nan_are_reported_as_none_and_several_series_as_the_largest() -> None:
    assert sample_value({"resultType": "vector", "result": []}, "q") is None
    assert (
        sample_value({"resultType": "vector", "result": [{"metric": {}, "value": [1, "NaN"]}]}, "q") is None
    )
    two = [{"metric": {"pod": "a"}, "value": [1, "0.2"]}, {"metric": {"pod": "b"}, "value": [1, "0.7"]}]
    assert sample_value({"resultType": "vector", "result": two}, "q") == 0.7
    assert sample_value({"resultType": "scalar", "result": [1, "3"]}, "q") == 3.0


def test_an_unreachable_prometheus_fails_once_not_once_per_metric(server: Echo) -> None:
    server.script("/api/v1/query", Reply(503, "Service Unavailable"), times=50)
    settings = Settings(prometheus_url=server.url, http_max_attempts=2, http_max_backoff_seconds=0)
    source = PrometheusMetricSource(settings, policy=_policy(attempts=2)[0])
    at = datetime.now(UTC)

    with pytest.raises(SourceUnavailable, match="HTTP 503"):
        source.fetch_metrics(["a", "b"], at, at)
    assert len(server.calls()) == 2
