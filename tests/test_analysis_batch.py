"""`incidents.analyze_batch`: the incidents of one ingest commit analysed in one task,
each exactly as `run_triage` would (its own compare-and-set commits), one's failure
or retry never the others'."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from iras import tasks
from iras.analysts import set_analyst
from iras.analysts.base import IncidentFacts, StageOutput, TransientAnalystError
from iras.db import new_session
from iras.ingest.batch import Prepared, commit_batch, prepare
from iras.models import Incident, StageResult, Transition
from iras.schemas import TriageResult
from tests.support.analysts import ScriptedAnalyst


def _open(*titles: str) -> list[str]:
    """Incidents written as the ingest writer writes them, without their triage message."""
    items = [
        prepare({"title": t, "timestamp": "2026-11-26T10:00:00Z", "service": "checkout", "fingerprint": t})
        for t in titles
    ]
    _, opened = commit_batch([i for i in items if isinstance(i, Prepared)])
    assert len(opened) == len(titles)
    return opened


def _status(incident_id: str) -> str:
    with new_session() as session:
        return str(session.scalar(select(Incident.status).where(Incident.id == incident_id)))


def _results(incident_id: str) -> int:
    with new_session() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(StageResult).where(StageResult.incident_id == incident_id)
            )
        )


class _FailsFor(ScriptedAnalyst):
    """Triage fails for the incidents given, with the exception given."""

    def __init__(self, failures: dict[str, Exception]) -> None:
        super().__init__(confidence=0.9)
        self.failures = failures

    def triage(self, facts: IncidentFacts) -> StageOutput[TriageResult]:
        if facts.incident_id in self.failures:
            raise self.failures[facts.incident_id]
        return super().triage(facts)


@pytest.fixture
def resent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """The incidents a batch re-sent alone (`run_triage`), with their countdown."""
    sent: list[tuple[Any, Any]] = []
    monkeypatch.setattr(
        tasks.run_triage, "apply_async", lambda args, countdown=None, **_: sent.append((args, countdown))
    )
    return sent


def test_a_batch_analyses_each_incident_and_a_redelivery_writes_nothing(
    client: FlaskClient, resent: list[Any]
) -> None:
    set_analyst(ScriptedAnalyst(confidence=0.9))
    ids = _open("batch a", "batch b", "batch c")
    tasks.analyze_batch(ids)
    assert [_status(i) for i in ids] == ["awaiting_approval"] * 3
    assert [_results(i) for i in ids] == [4, 4, 4]  # triage, context, rca, plan: one each

    tasks.analyze_batch(ids)  # redelivered after a worker died, say
    assert [_results(i) for i in ids] == [4, 4, 4]
    with new_session() as session:
        events = session.scalar(
            select(func.count()).select_from(Transition).where(Transition.incident_id.in_(ids))
        )
    assert events == 3 * 5  # ingested, triaged, context_gathered, rca_confident, plan_ready
    assert resent == []


def test_one_incidents_failure_or_retry_in_a_batch_is_its_own(client: FlaskClient, resent: list[Any]) -> None:
    ids = _open("fine", "broken", "overloaded", "fine too")
    set_analyst(
        _FailsFor(
            {ids[1]: ValueError("model returned nonsense"), ids[2]: TransientAnalystError("529 overloaded")}
        )
    )
    tasks.analyze_batch(ids)
    assert _status(ids[0]) == _status(ids[3]) == "awaiting_approval"
    # The failure escalates that incident alone, as run_triage's on_failure would.
    assert _status(ids[1]) in ("escalating", "closing", "escalated")
    with new_session() as session:
        detail = session.scalar(
            select(Transition.detail).where(
                Transition.incident_id == ids[1], Transition.event == "stage_failed"
            )
        )
    assert "model returned nonsense" in detail["summary"]
    # The transient error re-sends that incident alone, after a backoff; it was not analysed.
    assert _status(ids[2]) == "triaging" and _results(ids[2]) == 0
    assert [(args, countdown > 0) for args, countdown in resent] == [((ids[2],), True)]


def test_a_model_backed_analyst_gets_a_task_per_incident(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(tasks, "_analyst_is_local", lambda: False)
    monkeypatch.setattr(tasks, "enqueue_stage", lambda i, status: sent.append((i, status.value)))
    ids = _open("slow a", "slow b")
    tasks.analyze_batch(ids)
    assert sent == [(ids[0], "triaging"), (ids[1], "triaging")]
    assert [_results(i) for i in ids] == [0, 0]


def test_a_real_evidence_source_gets_a_task_per_incident(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The offline analyst with Prometheus configured: gathering waits on the network,
    so the incidents are not analysed one after the other in one task."""
    from iras.config import reset_settings

    sent: list[str] = []
    set_analyst(ScriptedAnalyst(confidence=0.9))
    monkeypatch.setenv("PROMETHEUS_URL", "http://127.0.0.1:9")
    reset_settings()
    monkeypatch.setattr(tasks, "enqueue_stage", lambda i, status: sent.append(i))
    ids = _open("remote a", "remote b")
    tasks.analyze_batch(ids)
    assert sent == ids and [_results(i) for i in ids] == [0, 0]


def test_log_lines_inside_a_batch_carry_the_member_incident_id(client: FlaskClient) -> None:
    """The task's arguments name no single incident: each member's lines name theirs."""
    import logging

    from iras.metrics import LogContextFilter

    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    class Chatty(ScriptedAnalyst):
        def triage(self, facts: IncidentFacts) -> StageOutput[TriageResult]:
            logging.getLogger("tests.chatty").warning("triaging now")
            return super().triage(facts)

    handler = Capture()
    handler.addFilter(LogContextFilter())
    logger = logging.getLogger("tests.chatty")
    logger.addHandler(handler)
    try:
        set_analyst(Chatty(confidence=0.9))
        ids = _open("chatty a", "chatty b")
        tasks.analyze_batch(ids)
    finally:
        logger.removeHandler(handler)
    assert [getattr(r, "incident_id", None) for r in records] == ids
