"""Log clients (Loki, Elasticsearch) driven through `requests` against local fakes
that speak the real wire formats."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from iras.config import Settings
from iras.integrations.base import SourceUnavailable
from iras.integrations.elasticsearch import ElasticsearchLogSource
from iras.integrations.http import RetryPolicy
from iras.integrations.loki import LokiLogSource, logql_query, normalize_level
from tests.fakes.servers import FakeElasticsearch, FakeLoki, Reply

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
START, END = T0 - timedelta(minutes=30), T0 + timedelta(minutes=5)
NO_WAIT = RetryPolicy(attempts=3, backoff_seconds=0, max_sleep_seconds=1, sleep=lambda _: None)


@pytest.fixture
def loki() -> Iterator[FakeLoki]:
    with FakeLoki() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def es() -> Iterator[FakeElasticsearch]:
    with FakeElasticsearch(api_key="es-key") as fake:
        yield fake  # type: ignore[misc]


def _loki(url: str, **overrides: object) -> LokiLogSource:
    return LokiLogSource(Settings(loki_url=url, **overrides), policy=NO_WAIT)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Loki


def test_loki_returns_the_services_errors_and_warnings_inside_the_window(loki: FakeLoki) -> None:
    checkout = {"service": "checkout", "namespace": "shop"}
    loki.push(
        {**checkout, "level": "error"}, T0 - timedelta(minutes=3), "NullPointerException at Order.total"
    )
    loki.push(checkout, T0 - timedelta(minutes=2), "2025-06-01T11:58:00Z WARN pool exhausted, waiting")
    loki.push(checkout, T0 - timedelta(minutes=1), "INFO GET /health 200")  # not an error: filtered out
    loki.push(checkout, T0 - timedelta(hours=2), "ERROR long before the window")
    loki.push({"service": "cart"}, T0, "ERROR another service")

    lines = _loki(loki.url).fetch_logs(["checkout"], START, END)

    assert [(line.level, line.message) for line in lines] == [
        ("ERROR", "NullPointerException at Order.total"),
        ("WARN", "2025-06-01T11:58:00Z WARN pool exhausted, waiting"),
    ]
    assert all(line.service == "checkout" for line in lines)
    assert lines[0].timestamp == T0 - timedelta(minutes=3)
    sent = loki.calls("/loki/api/v1/query_range")[0]
    assert (
        sent.param("query")
        == '{service="checkout"} |~ "(?i)(error|warn|fatal|panic|exception|traceback|critical)"'
    )
    assert sent.param("direction") == "backward"
    assert int(sent.param("start") or 0) == int(START.timestamp()) * 10**9


def test_loki_selects_several_services_with_an_escaped_regex(loki: FakeLoki) -> None:
    loki.push({"app": "api.v2"}, T0, "ERROR in api.v2")
    loki.push({"app": "apixv2"}, T0, "ERROR in a look-alike")
    loki.push({"app": "worker"}, T0, "ERROR in worker")

    lines = _loki(loki.url, loki_service_label="app").fetch_logs(["api.v2", "worker"], START, END)

    assert sorted(line.service for line in lines) == ["api.v2", "worker"]
    assert logql_query("app", ["a.b", "c"], "") == '{app=~"a\\\\.b|c"}'


def test_loki_keeps_the_newest_lines_of_a_storm_in_time_order(loki: FakeLoki) -> None:
    for i in range(50):
        loki.push({"service": "checkout"}, T0 - timedelta(seconds=50 - i), f"ERROR storm {i}")

    lines = _loki(loki.url, logs_max_lines=10).fetch_logs(["checkout"], START, END, limit=500)

    assert [line.message for line in lines] == [f"ERROR storm {i}" for i in range(40, 50)]
    assert loki.calls()[0].param("limit") == "10"


def test_loki_keeps_multiline_traces_and_clips_huge_ones(loki: FakeLoki) -> None:
    trace = "ERROR Traceback (most recent call last):\n  File \"app.py\", line 3\nKeyError: 'sku'"
    loki.push({"service": "checkout"}, T0, trace)
    loki.push({"service": "checkout"}, T0 + timedelta(seconds=1), "ERROR " + "x" * 5000)

    lines = _loki(loki.url, logs_max_message_chars=300).fetch_logs(["checkout"], START, END)

    assert lines[0].message == trace
    assert lines[1].message.startswith("ERROR xxx") and "[4706 more characters]" in lines[1].message


def test_loki_sends_the_tenant_header_a_multi_tenant_loki_requires() -> None:
    with FakeLoki(tenant="team-a") as fake:
        fake.push({"service": "checkout"}, T0, "ERROR boom")  # type: ignore[attr-defined]
        with pytest.raises(SourceUnavailable, match="HTTP 401: no org id"):
            _loki(fake.url).fetch_logs(["checkout"], START, END)
        assert len(_loki(fake.url, loki_tenant_id="team-a").fetch_logs(["checkout"], START, END)) == 1


def test_loki_rejecting_the_query_is_reported_with_loki_s_reason(loki: FakeLoki) -> None:
    loki.script("/loki", Reply(400, "parse error at line 1, col 14: syntax error: unexpected |\n"))

    with pytest.raises(SourceUnavailable, match="HTTP 400: parse error at line 1, col 14"):
        _loki(loki.url).fetch_logs(["checkout"], START, END)
    assert len(loki.calls()) == 1  # a bad query is not retried


def test_loki_a_hostile_service_name_stays_inside_the_label_matcher(loki: FakeLoki) -> None:
    loki.push({"service": 'x"} |= "'}, T0, "ERROR odd but real")

    lines = _loki(loki.url).fetch_logs(['x"} |= "'], START, END)

    assert [line.message for line in lines] == ["ERROR odd but real"]


def test_loki_overloaded_is_retried(loki: FakeLoki) -> None:
    loki.push({"service": "checkout"}, T0, "ERROR boom")
    loki.script("/loki", Reply(429, "too many outstanding requests\n"), times=2)

    assert len(_loki(loki.url).fetch_logs(["checkout"], START, END)) == 1
    assert len(loki.calls()) == 3


def test_loki_down_is_source_unavailable_after_bounded_retries(loki: FakeLoki) -> None:
    loki.script("/loki", Reply(503, "Service Unavailable\n"), times=10)

    with pytest.raises(SourceUnavailable, match="loki GET .*/loki/api/v1/query_range: HTTP 503"):
        _loki(loki.url).fetch_logs(["checkout"], START, END)
    assert len(loki.calls()) == NO_WAIT.attempts


@pytest.mark.parametrize(
    ("field", "line", "expected"),
    [
        ("warning", "", "WARN"),
        (None, '{"level":"error","msg":"boom"}', "ERROR"),
        (None, "[crit] upstream gone", "ERROR"),
        (None, "plain text", "INFO"),
        ("FATAL", "", "ERROR"),
    ],
)
def test_levels_are_normalised_from_fields_or_lines(field: str | None, line: str, expected: str) -> None:
    assert normalize_level(field, line) == expected


# --------------------------------------------------------------------------- Elasticsearch


def _es(url: str, **overrides: object) -> ElasticsearchLogSource:
    settings = Settings(elasticsearch_url=url, elasticsearch_api_key="es-key", **overrides)  # type: ignore[arg-type]
    return ElasticsearchLogSource(settings, policy=NO_WAIT)


def _doc(at: datetime, service: str, level: str, message: str, nested: bool = True) -> dict[str, object]:
    stamp = at.isoformat().replace("+00:00", "Z")
    if nested:
        return {
            "@timestamp": stamp,
            "service": {"name": service},
            "log": {"level": level},
            "message": message,
        }
    return {"@timestamp": stamp, "service.name": service, "log.level": level, "message": message}


def test_elasticsearch_filters_by_time_service_and_level_and_sorts(es: FakeElasticsearch) -> None:
    es.index("logs-2025.06.01", _doc(T0 - timedelta(minutes=2), "checkout", "ERROR", "NullPointerException"))
    es.index(
        "logs-2025.06.01", _doc(T0 - timedelta(minutes=4), "checkout", "warn", "slow query", nested=False)
    )
    es.index("logs-2025.06.01", _doc(T0 - timedelta(minutes=1), "checkout", "info", "GET /health 200"))
    es.index("logs-2025.06.01", _doc(T0 - timedelta(hours=3), "checkout", "error", "too old"))
    es.index("logs-2025.06.01", _doc(T0, "cart", "error", "other service"))
    es.index("metrics-2025.06.01", _doc(T0, "checkout", "error", "not a log index"))

    lines = _es(es.url).fetch_logs(["checkout"], START, END)

    assert [(line.level, line.message) for line in lines] == [
        ("WARN", "slow query"),
        ("ERROR", "NullPointerException"),
    ]
    sent = es.calls()[0]
    assert sent.path == "/logs-*/_search" and sent.header("Authorization") == "ApiKey es-key"
    assert sent.json["sort"] == [{"@timestamp": {"order": "desc", "unmapped_type": "date"}}]


def test_elasticsearch_caps_the_size_and_keeps_the_newest(es: FakeElasticsearch) -> None:
    for i in range(30):
        es.index("logs-a", _doc(T0 - timedelta(seconds=30 - i), "checkout", "error", f"boom {i}"))

    lines = _es(es.url, logs_max_lines=5).fetch_logs(["checkout"], START, END, limit=100)

    assert [line.message for line in lines] == [f"boom {i}" for i in range(25, 30)]
    assert es.calls()[0].json["size"] == 5


def test_elasticsearch_custom_field_names(es: FakeElasticsearch) -> None:
    es.index("app", {"ts": (T0).isoformat(), "svc": "checkout", "severity": "ERROR", "log": "custom boom"})

    lines = _es(
        es.url,
        elasticsearch_index="app",
        elasticsearch_timestamp_field="ts",
        elasticsearch_service_field="svc",
        elasticsearch_level_field="severity",
        elasticsearch_message_field="log",
    ).fetch_logs(["checkout"], START, END)

    assert [(line.service, line.level, line.message) for line in lines] == [
        ("checkout", "ERROR", "custom boom")
    ]


def test_elasticsearch_errors_carry_the_reason_from_the_error_body(es: FakeElasticsearch) -> None:
    source = ElasticsearchLogSource(
        Settings(elasticsearch_url=es.url, elasticsearch_api_key="wrong"), policy=NO_WAIT
    )
    with pytest.raises(SourceUnavailable, match="HTTP 401: unable to authenticate"):
        source.fetch_logs(["checkout"], START, END)

    es.script(
        "/logs-*",
        FakeElasticsearch._error(503, "cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE]"),
        times=5,
    )
    with pytest.raises(SourceUnavailable, match="HTTP 503: blocked by"):
        _es(es.url).fetch_logs(["checkout"], START, END)


def test_elasticsearch_a_missing_index_is_no_logs_rather_than_an_error(es: FakeElasticsearch) -> None:
    assert _es(es.url, elasticsearch_index="logs-2030.01.01").fetch_logs(["checkout"], START, END) == []
