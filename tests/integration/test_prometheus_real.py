"""The metrics client against a real Prometheus loaded with a known history.

The history is written as OpenMetrics, turned into TSDB blocks with
`promtool tsdb create-blocks-from openmetrics`, and served by a Prometheus
started on that directory. It holds two 20-minute windows for service
`checkout`: one ending at `T` (the incident: twice the traffic, a quarter of it
failing, slow requests, CPU and memory up, a crash loop) and the same window
7 days earlier (the baseline). Counters grow linearly, so `rate()` and
`increase()` are exact and the expected values below are plain arithmetic.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from iras.config import Settings
from iras.integrations.prometheus import PrometheusMetricSource
from tests.integration._require import require_binaries

pytestmark = pytest.mark.integration

STEP = 15  # seconds between samples, as a typical scrape interval
SPAN = 20 * 60  # each window's length
WEEK = 7 * 24 * 3600
# Evaluate an hour ago: blocks must lie in the past, and the client clamps `end` to now.
T = (int(time.time()) // 60) * 60 - 3600

CURRENT = {
    "rps": 400.0,
    "error_ratio": 0.25,
    "slow_share": 0.5,
    "cpu": 3.2,
    "mem": 1.8e9,
    "restarts_per_step": 1,
}
BASELINE = {
    "rps": 200.0,
    "error_ratio": 0.01,
    "slow_share": 0.0,
    "cpu": 0.8,
    "mem": 1.0e9,
    "restarts_per_step": 0,
}
BUCKETS = ["0.1", "0.5", "1", "2.5", "+Inf"]


def _window(end: int, p: dict[str, float]) -> dict[str, list[tuple[str, float, int]]]:
    """Samples per metric family for one window: (series, value, timestamp)."""
    families: dict[str, list[tuple[str, float, int]]] = {
        "http_requests": [],
        "http_request_duration_seconds": [],
        "container_cpu_usage_seconds": [],
        "container_memory_working_set_bytes": [],
        "kube_pod_container_status_restarts": [],
    }
    per_step = p["rps"] * STEP
    errors = per_step * p["error_ratio"]
    slow = per_step * p["slow_share"]  # requests in the (1, 2.5] bucket; the rest are <= 0.1 s
    for n, ts in enumerate(range(end - SPAN, end + 1, STEP), start=1):
        families["http_requests"] += [
            ('http_requests_total{service="checkout",code="200"}', n * (per_step - errors), ts),
            ('http_requests_total{service="checkout",code="500"}', n * errors, ts),
        ]
        cumulative = {"0.1": per_step - slow, "0.5": per_step - slow, "1": per_step - slow}
        cumulative.update({"2.5": per_step, "+Inf": per_step})
        for le in BUCKETS:
            families["http_request_duration_seconds"].append(
                (
                    f'http_request_duration_seconds_bucket{{service="checkout",le="{le}"}}',
                    n * cumulative[le],
                    ts,
                )
            )
        families["http_request_duration_seconds"] += [
            ('http_request_duration_seconds_sum{service="checkout"}', n * per_step * 0.5, ts),
            ('http_request_duration_seconds_count{service="checkout"}', n * per_step, ts),
        ]
        families["container_cpu_usage_seconds"].append(
            ('container_cpu_usage_seconds_total{container="checkout"}', n * p["cpu"] * STEP, ts)
        )
        families["container_memory_working_set_bytes"].append(
            ('container_memory_working_set_bytes{container="checkout"}', p["mem"], ts)
        )
        families["kube_pod_container_status_restarts"].append(
            (
                'kube_pod_container_status_restarts_total{container="checkout"}',
                3 + n * p["restarts_per_step"],
                ts,
            )
        )
    return families


def openmetrics_history() -> str:
    types = {
        "http_requests": "counter",
        "http_request_duration_seconds": "histogram",
        "container_cpu_usage_seconds": "counter",
        "container_memory_working_set_bytes": "gauge",
        "kube_pod_container_status_restarts": "counter",
    }
    baseline, current = _window(T - WEEK, BASELINE), _window(T, CURRENT)
    lines: list[str] = []
    for family, kind in types.items():
        lines.append(f"# TYPE {family} {kind}")
        samples = baseline[family] + current[family]
        # OpenMetrics: the points of one series in increasing time order, families not interleaved.
        for series in dict.fromkeys(name for name, _, _ in samples):
            lines += [f"{name} {value:.17g} {ts}" for name, value, ts in samples if name == series]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tools = require_binaries("prometheus", "promtool")
    root: Path = tmp_path_factory.mktemp("prometheus")
    (root / "history.om").write_text(openmetrics_history())
    data = root / "tsdb"
    created = subprocess.run(
        [tools["promtool"], "tsdb", "create-blocks-from", "openmetrics", str(root / "history.om"), str(data)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
    port = _free_port()
    log_file = (root / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            tools["prometheus"],
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={data}",
            "--storage.tsdb.retention.time=30d",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"prometheus exited with {process.returncode}: {(root / 'prometheus.log').read_text()[-2000:]}"
                )
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail("prometheus did not become ready in 60 s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log_file.close()


def _histogram_p99(slow_share: float) -> float:
    """histogram_quantile's linear interpolation over the buckets written above."""
    rank = 0.99
    fast = 1 - slow_share
    if rank <= fast:
        return 0.1 * rank / fast
    return 1 + (2.5 - 1) * (rank - fast) / slow_share


def _settings(url: str) -> Settings:
    return Settings(prometheus_url=url, prometheus_rate_window="5m", http_timeout_seconds=5)


def test_it_reports_each_signal_now_against_the_same_window_a_week_ago(prometheus_url: str) -> None:
    at = datetime.fromtimestamp(T, UTC)
    source = PrometheusMetricSource(_settings(prometheus_url))

    metrics = {m.name: m for m in source.fetch_metrics(["checkout"], at - timedelta(minutes=30), at)}

    expected = {
        "error_rate": (CURRENT["error_ratio"], BASELINE["error_ratio"]),
        "request_rate": (CURRENT["rps"], BASELINE["rps"]),
        "latency_p99": (_histogram_p99(CURRENT["slow_share"]), _histogram_p99(BASELINE["slow_share"])),
        "cpu": (CURRENT["cpu"], BASELINE["cpu"]),
        "memory": (CURRENT["mem"], BASELINE["mem"]),
        "restarts": (300 / STEP * CURRENT["restarts_per_step"], 0.0),
    }
    assert set(metrics) == set(expected)
    for name, (current, baseline) in expected.items():
        metric = metrics[name]
        assert metric.service == "checkout"
        assert metric.current == pytest.approx(current, rel=1e-6), name
        assert metric.baseline_7d == pytest.approx(baseline, rel=1e-6, abs=1e-9), name
        assert "offset" not in metric.query and "checkout" in metric.query
    assert metrics["error_rate"].ratio == pytest.approx(25.0)
    assert metrics["request_rate"].delta == pytest.approx(200.0)
    assert metrics["latency_p99"].current == pytest.approx(2.47)


def test_an_evaluation_time_in_the_future_is_clamped_to_now(prometheus_url: str) -> None:
    at = datetime.fromtimestamp(T, UTC)
    source = PrometheusMetricSource(_settings(prometheus_url), now=lambda: at)

    metrics = {m.name: m for m in source.fetch_metrics(["checkout"], at, at + timedelta(minutes=5))}

    assert metrics["request_rate"].current == pytest.approx(CURRENT["rps"])


def test_a_service_without_series_yields_no_metrics_rather_than_zeros(prometheus_url: str) -> None:
    at = datetime.fromtimestamp(T, UTC)
    source = PrometheusMetricSource(_settings(prometheus_url))

    assert source.fetch_metrics(["no-such-service"], at - timedelta(minutes=30), at) == []


def test_a_malformed_template_loses_only_its_own_metric(prometheus_url: str) -> None:
    at = datetime.fromtimestamp(T, UTC)
    settings = _settings(prometheus_url).model_copy(
        update={
            "prometheus_query_cpu": "sum(rate(container_cpu_usage_seconds_total{container=$service}[5m] $offset))"
        }
    )

    names = {m.name for m in PrometheusMetricSource(settings).fetch_metrics(["checkout"], at, at)}

    assert "cpu" not in names and {"error_rate", "memory"} <= names
