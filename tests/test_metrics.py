"""`/metrics`: scraped and parsed with the Prometheus text parser while an
incident moves through the real pipeline (embedded Celery worker)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from iras import metrics
from iras.analysts import set_analyst
from iras.analysts.base import IncidentFacts, StageOutput
from iras.celery_app import celery_app as app
from iras.db import new_session
from iras.models import Incident
from iras.schemas import TriageResult, utcnow
from tests.conftest import WaitFor, fire
from tests.support.analysts import ScriptedAnalyst
from tests.test_console import (
    SCENARIO,
    fire_scenario,
    quiet_worker_after_test,  # noqa: F401 - autouse fixture
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(autouse=True)
def fresh_gauges(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No scrape cache: each scrape in a test reads the database."""
    monkeypatch.setattr(metrics._db_collector, "ttl", 0.0)
    yield


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


class TokenSpendingAnalyst(ScriptedAnalyst):
    """The offline analyst, reporting model usage on triage as the Claude analyst would."""

    def triage(self, facts: IncidentFacts) -> StageOutput[TriageResult]:
        out = super().triage(facts)
        out.model, out.input_tokens, out.output_tokens = "claude-haiku-5-5", 1000, 200
        return out


def test_values_change_as_an_incident_moves(pipeline: FlaskClient, wait_for: WaitFor) -> None:
    before = scrape(pipeline)
    assert value(before, "iras_metrics_database_up") == 1
    assert value(before, "iras_incidents", status="awaiting_approval", severity="P1") == 0

    set_analyst(TokenSpendingAnalyst(confidence=0.9))
    from iras.integrations import mock

    mock.set_fixture(SCENARIO["evidence"])
    response = pipeline.post("/webhook/alert", json=SCENARIO["alert"])
    incident_id = response.get_json()["incident_id"]
    doc = wait_for(incident_id, "awaiting_approval")
    severity = doc["severity"]
    waiting = scrape(pipeline)
    assert value(waiting, "iras_incidents", status="awaiting_approval", severity=severity) == 1
    assert value(waiting, "iras_approval_oldest_pending_seconds") >= 0
    assert value(waiting, "iras_webhook_requests_total", source="auto", status="202") == (
        value(before, "iras_webhook_requests_total", source="auto", status="202") + 1
    )
    for stage in ("triage", "context", "rca", "plan"):
        assert value(waiting, "iras_stage_duration_seconds_count", stage=stage, state="SUCCESS") >= (
            value(before, "iras_stage_duration_seconds_count", stage=stage, state="SUCCESS") + 1
        ), stage
    assert value(waiting, "iras_task_queue_lag_seconds_count", task="incidents.run_triage") > value(
        before, "iras_task_queue_lag_seconds_count", task="incidents.run_triage"
    )
    tokens = ("iras_llm_tokens_total", {"stage": "triage", "model": "claude-haiku-5-5"})
    assert (
        value(waiting, tokens[0], **tokens[1], kind="input")
        - value(before, tokens[0], **tokens[1], kind="input")
        == 1000
    )
    assert (
        value(waiting, tokens[0], **tokens[1], kind="output")
        - value(before, tokens[0], **tokens[1], kind="output")
        == 200
    )
    cost = value(waiting, "iras_llm_cost_usd_total", stage="triage", model="claude-haiku-5-5") - value(
        before, "iras_llm_cost_usd_total", stage="triage", model="claude-haiku-5-5"
    )
    assert cost == pytest.approx((1000 * 1.0 + 200 * 5.0) / 1_000_000)

    approve = pipeline.post(
        f"/incidents/{incident_id}/approve", json={"by": "alice", "plan_id": doc["plan"]["id"]}
    )
    assert approve.status_code == 200
    wait_for(incident_id, "resolved")

    def settled() -> bool:
        now = scrape(pipeline)
        return value(now, "iras_approval_wait_seconds_count", via="api", decision="approved") > value(
            before, "iras_approval_wait_seconds_count", via="api", decision="approved"
        )

    eventually(settled)
    after = scrape(pipeline)
    assert value(after, "iras_incidents", status="awaiting_approval", severity=severity) == 0
    assert value(after, "iras_incidents", status="resolved", severity=severity) == 1
    assert value(after, "iras_remediation_outcomes_total", outcome="succeeded") == (
        value(before, "iras_remediation_outcomes_total", outcome="succeeded") + 1
    )
    steps = len(doc["plan"]["steps"])
    assert value(after, "iras_remediation_steps_total", kind="apply", status="succeeded") == (
        value(before, "iras_remediation_steps_total", kind="apply", status="succeeded") + steps
    )
    assert value(after, "iras_incidents_closed_total", outcome="resolved") == (
        value(before, "iras_incidents_closed_total", outcome="resolved") + 1
    )
    assert value(after, "iras_stage_duration_seconds_count", stage="postmortem", state="SUCCESS") > value(
        before, "iras_stage_duration_seconds_count", stage="postmortem", state="SUCCESS"
    )


def test_a_timeout_is_observed_as_an_approval_wait(pipeline: FlaskClient, wait_for: WaitFor) -> None:
    from iras.tasks import expire_approvals

    incident_id = fire_scenario(pipeline)
    wait_for(incident_id, "awaiting_approval")
    before = scrape(pipeline)
    with new_session() as session:
        session.execute(
            update(Incident).where(Incident.id == incident_id).values(approval_deadline=Incident.created_at)
        )
        session.commit()
    assert expire_approvals() == 1
    after = scrape(pipeline)
    assert value(after, "iras_approval_wait_seconds_count", via="timeout", decision="timed_out") == (
        value(before, "iras_approval_wait_seconds_count", via="timeout", decision="timed_out") + 1
    )


def test_a_stuck_incident_shows_as_pipeline_lag(client: FlaskClient) -> None:
    assert value(scrape(client), "iras_pipeline_oldest_working_seconds") == 0
    # Written directly, with no task sent: as if its message were lost ten minutes ago.
    with new_session() as session:
        session.add(
            Incident(
                status="triaging",
                title="lost message",
                source="generic",
                fingerprint="stuck-1",
                updated_at=utcnow() - timedelta(minutes=10),
            )
        )
        session.commit()
    samples = scrape(client)
    assert 600 <= value(samples, "iras_pipeline_oldest_working_seconds") < 700
    assert value(samples, "iras_incidents", status="triaging", severity="none") == 1


def test_webhook_sources_are_bounded_labels(client: FlaskClient) -> None:
    before = scrape(client)
    client.post("/webhook/alert", data="not json", content_type="application/json")
    client.post("/webhook/made-up-source-123", json={"title": "x", "timestamp": "2026-01-01T00:00:00Z"})
    after = scrape(client)
    assert value(after, "iras_webhook_requests_total", source="auto", status="400") == (
        value(before, "iras_webhook_requests_total", source="auto", status="400") + 1
    )
    assert not any(dict(labels).get("source") == "made-up-source-123" for _, labels in after)
    other = [
        v
        for (name, labels), v in after.items()
        if name == "iras_webhook_requests_total" and ("source", "other") in labels
    ]
    assert other, "an unknown source is counted as 'other'"
    assert value(after, "iras_http_requests_total", endpoint="/metrics", method="GET", status="200") >= 1


def test_a_scrape_still_answers_when_the_database_is_down(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iras.config import reset_settings
    from iras.db import reset_engine

    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://nobody@127.0.0.1:1/none")
    reset_settings()
    reset_engine()
    samples = scrape(client)
    assert value(samples, "iras_metrics_database_up") == 0
    assert not any(name == "iras_incidents" for name, _ in samples)


def test_a_worker_serves_its_own_metrics_when_a_port_is_set(
    iras_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Celery workers in their own processes (docker-compose, Procfile) expose
    what they count on WORKER_METRICS_PORT."""
    import socket

    import requests
    from celery.signals import worker_init

    from iras.config import reset_settings

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("WORKER_METRICS_PORT", str(port))
    reset_settings()
    worker_init.send(sender=None)
    eventually(lambda: _reachable(f"http://127.0.0.1:{port}/metrics"))
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"iras_task_duration_seconds", "iras_incidents", "iras_llm_tokens"} <= names


def _reachable(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


MULTIPROCESS_CHILD = """
import sys
from iras import metrics
assert metrics.MULTIPROCESS
metrics.WEBHOOK_REQUESTS.labels("grafana", "202").inc(int(sys.argv[1]))
"""

MULTIPROCESS_SCRAPE = """
from prometheus_client import generate_latest
from iras import metrics
print(generate_latest(metrics.scrape_registry()).decode())
"""


def test_multiprocess_mode_sums_counters_across_processes(iras_env: str, tmp_path: Any) -> None:
    """granian workers and Celery prefork children each count in their own
    process; with PROMETHEUS_MULTIPROC_DIR one scrape sums them."""
    import os
    import subprocess
    import sys

    prom_dir = tmp_path / "prometheus"  # a directory of its own: every *.db in it is read as metrics
    prom_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(prom_dir), "DATABASE_URL": iras_env}
    for count in ("2", "3"):
        subprocess.run([sys.executable, "-c", MULTIPROCESS_CHILD, count], env=env, check=True, timeout=60)
    scrape_run = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_SCRAPE], env=env, timeout=60, capture_output=True, text=True
    )
    assert scrape_run.returncode == 0, scrape_run.stderr[-2000:]
    out = scrape_run.stdout
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(out)
        for s in family.samples
    }
    assert value(samples, "iras_webhook_requests_total", source="grafana", status="202") == 5
    assert value(samples, "iras_metrics_database_up") == 1, "the database gauges are there too"


def test_every_granian_worker_scrape_counts_the_requests_of_all_workers(iras_env: str, tmp_path: Any) -> None:
    """The real web server (2 granian worker processes, each importing the app after
    it started): alerts land on either worker, and a scrape, whichever worker
    answers it, counts them all."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from tests.support.services import IrasProcess, free_port

    prom_dir = tmp_path / "prometheus"  # emptied, its own: every *.db in it is read as metrics
    prom_dir.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(prom_dir), "WEBHOOK_RATE_LIMIT_PER_SECOND": "0"}
    web = IrasProcess("web", env, port=free_port(), log_dir=tmp_path, web_workers=2, web_threads=4)
    base = f"http://127.0.0.1:{web.port}"
    n = 60

    def post(i: int) -> int:
        alert = {"title": f"multiprocess {i}", "timestamp": "2026-11-25T10:00:00Z", "service": "svc"}
        # A connection per request: the kernel hands them to both workers.
        return requests.post(f"{base}/webhook/alert", json=alert, timeout=30).status_code

    def scraped() -> float:
        text = requests.get(f"{base}/metrics", timeout=30).text
        samples = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        return value(samples, "iras_webhook_requests_total", source="auto", status="202")

    def per_worker_counts() -> list[int]:
        """What each worker counted itself, read from its own file."""
        counts = []
        for db in sorted(prom_dir.glob("counter_*.db")):
            alone = tmp_path / f"alone-{uuid.uuid4().hex}"
            alone.mkdir()
            shutil.copy(db, alone / db.name)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=str(alone))
            counted = registry.get_sample_value(
                "iras_webhook_requests_total", {"source": "auto", "status": "202"}
            )
            counts.append(int(counted or 0))
        return counts

    web.start()
    sent = 0
    try:
        # Which worker accepts a connection is the kernel's choice: on a busy machine one
        # worker can take a whole round. Send rounds (bounded) until both have served.
        for _ in range(10):
            with ThreadPoolExecutor(8) as pool:
                assert list(pool.map(post, range(sent, sent + n))) == [202] * n
            sent += n
            per_worker = per_worker_counts()
            if sum(1 for c in per_worker if c) == 2:
                break
        scrapes = [scraped() for _ in range(8)]
    finally:
        web.stop()
    print(f"requests per granian worker: {per_worker}")
    assert scrapes == [sent] * len(scrapes), web.log_tail()
    assert sum(per_worker) == sent
    assert sum(1 for c in per_worker if c) == 2, f"both workers served alerts: {per_worker}"


@app.task(name="tests.log_a_line")
def log_a_line(incident_id: str) -> None:
    logging.getLogger("iras.tests").warning("a line with no extra fields")


def test_log_lines_carry_the_incident_and_stage_of_their_task_or_request(
    pipeline: FlaskClient, wait_for: WaitFor
) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(metrics.LogContextFilter())
    logger = logging.getLogger("iras.tests")
    logger.addHandler(handler)
    try:
        incident_id = fire(pipeline)
        log_a_line.delay(incident_id)
        eventually(lambda: bool(records))
    finally:
        logger.removeHandler(handler)
    line = records[0]
    assert getattr(line, "incident_id", None) == incident_id
    assert getattr(line, "task", None) == "tests.log_a_line" and getattr(line, "stage", None)
    from iras.logging_setup import JsonFormatter

    doc = json.loads(JsonFormatter().format(line))
    assert doc["incident_id"] == incident_id and doc["event"] == "a line with no extra fields" and doc["ts"]

    app_ = pipeline.application
    with app_.test_request_context(f"/incidents/{incident_id}"):
        app_.preprocess_request()
        assert metrics.log_context() == {
            "stage": "web",
            "endpoint": "api.get_incident",
            "incident_id": incident_id,
        }
    assert metrics.log_context() == {}, "cleared when the request ends"


def test_unknown_http_methods_share_one_label(client: FlaskClient) -> None:
    """`curl -X FOOBAR1` must not create a time series per method name (issue 19)."""
    for method in ("FOOBAR1", "FOOBAR2", "PROPFIND"):
        assert client.open("/health", method=method).status_code == 405
    after = scrape(client)
    methods = {dict(labels).get("method") for (name, labels) in after if name == "iras_http_requests_total"}
    assert "other" in methods
    assert not methods & {"FOOBAR1", "FOOBAR2", "PROPFIND"}
