"""`workflow.advance`: a transition committed alone with the rows it produces. On
PostgreSQL one autocommit statement of data-modifying CTEs, on SQLite a plain
transaction; both must behave the same: the rows exist only if the
compare-and-set matched, a plan row's id becomes the incident's plan_id, a
finished step's outcome is stored even when it did not match."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from iras.config import reset_settings
from iras.db import new_session, session_scope
from iras.models import Incident, PostMortemRecord, StageResult, StepRun, Transition
from iras.postmortem import EVENT_WORDS
from iras.schemas import utcnow
from iras.workflow import Event, IncidentStatus, advance

S = IncidentStatus


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "sqlite":
        yield request.getfixturevalue("iras_env")
        return
    request.applymarker(pytest.mark.integration)
    yield request.getfixturevalue("pg_database")


def incident(status: IncidentStatus) -> str:
    incident_id = str(uuid.uuid4())
    with session_scope() as session:
        session.add(
            Incident(
                id=incident_id,
                title="disk full",
                source="generic",
                fingerprint=incident_id,
                status=status.value,
            )
        )
    return incident_id


def result(stage: str, attempt: int = 1) -> dict[str, object]:
    return {"stage": stage, "attempt": attempt, "result": {"stage": stage, "é": [1, None]}, "analyst": "test",
            "model": None, "input_tokens": 3, "output_tokens": 4, "cache_read_tokens": 0,
            "cache_creation_tokens": 0, "latency_ms": 1.5, "note": None, "created_at": utcnow()}  # fmt: skip


def counts(incident_id: str) -> tuple[int, int, int]:
    with new_session() as s:
        return (
            s.scalar(
                select(func.count()).select_from(Transition).where(Transition.incident_id == incident_id)
            )
            or 0,
            s.scalar(
                select(func.count()).select_from(StageResult).where(StageResult.incident_id == incident_id)
            )
            or 0,
            s.scalar(
                select(func.count())
                .select_from(PostMortemRecord)
                .where(PostMortemRecord.incident_id == incident_id)
            )
            or 0,
        )


def test_a_stage_result_is_written_with_its_transition_once(database: str) -> None:
    iid = incident(S.TRIAGING)
    moved = advance(iid, S.TRIAGING, Event.TRIAGED, detail={"summary": "P1"}, values={"severity": "P1"},
                    rows=(("stage_results", result("triage")),))  # fmt: skip
    assert moved == 0
    # A duplicate delivery: the compare-and-set fails, nothing more is written.
    again = advance(iid, S.TRIAGING, Event.TRIAGED, detail={"summary": "P1"}, values={"severity": "P2"},
                    rows=(("stage_results", result("triage", 2)),))  # fmt: skip
    assert again is None
    assert counts(iid) == (1, 1, 0)
    with new_session() as s:
        inc = s.get(Incident, iid)
        assert inc is not None and (inc.status, inc.severity) == ("gathering_context", "P1")
        t = s.scalars(select(Transition).where(Transition.incident_id == iid)).one()
        assert (t.from_status, t.to_status, t.event, t.detail) == (
            "triaging",
            "gathering_context",
            "triaged",
            {"summary": "P1"},
        )
        r = s.scalars(select(StageResult).where(StageResult.incident_id == iid)).one()
        assert (r.stage, r.result, r.input_tokens, r.latency_ms) == (
            "triage",
            {"stage": "triage", "é": [1, None]},
            3,
            1.5,
        )


def test_a_transition_without_detail_stores_sql_null(database: str) -> None:
    iid = incident(S.TRIAGING)
    assert advance(iid, S.TRIAGING, Event.TRIAGED) == 0
    with new_session() as s:
        detail = s.scalar(select(func.count()).select_from(Transition).where(
            Transition.incident_id == iid, Transition.detail.is_(None)))  # fmt: skip
        assert detail == 1


def test_a_plan_row_becomes_the_incidents_plan_only_if_it_matched(database: str) -> None:
    iid = incident(S.PLANNING)
    deadline = utcnow() + timedelta(minutes=15)
    plan_id = advance(iid, S.PLANNING, Event.PLAN_READY, detail={"summary": "2 steps"},
                      values={"approval_deadline": deadline}, plan=result("plan"))  # fmt: skip
    assert isinstance(plan_id, int) and plan_id > 0
    with new_session() as s:
        inc = s.get(Incident, iid)
        assert inc is not None and (inc.status, inc.plan_id) == ("awaiting_approval", plan_id)
        assert (
            inc.approval_deadline is not None and abs((inc.approval_deadline - deadline).total_seconds()) < 1
        )
        row = s.get(StageResult, plan_id)
        assert row is not None and (row.incident_id, row.stage) == (iid, "plan")
        t = s.scalars(select(Transition).where(Transition.incident_id == iid)).one()
        assert t.detail == {"summary": "2 steps", "plan_id": plan_id}
    # Lost the race (someone else moved it): no orphan plan row.
    assert advance(iid, S.PLANNING, Event.PLAN_READY, plan=result("plan", 2)) is None
    assert counts(iid) == (1, 1, 0)


def test_a_post_mortem_and_its_result_go_with_the_closing_transition(database: str) -> None:
    iid = incident(S.CLOSING)
    pm = {
        "outcome": "resolved",
        "severity": "P2",
        "data": {"summary": "ok"},
        "analyst": "test",
        "created_at": utcnow(),
    }
    rows = (("stage_results", result("postmortem")), ("postmortems", pm))
    assert (
        advance(iid, S.CLOSING, Event.CLOSED_RESOLVED, detail={"summary": "post-mortem written"}, rows=rows)
        == 0
    )
    assert advance(iid, S.CLOSING, Event.CLOSED_RESOLVED, rows=rows) is None
    assert counts(iid) == (1, 1, 1)
    with new_session() as s:
        record = s.get(PostMortemRecord, iid)
        assert record is not None and (record.outcome, record.data) == ("resolved", {"summary": "ok"})


def test_a_finished_steps_outcome_is_stored_even_when_the_transition_lost(database: str) -> None:
    iid = incident(S.EXECUTING)
    with session_scope() as session:
        run = StepRun(incident_id=iid, plan_id=1, step_order=1, kind="apply", command="true", status="running",
                      started_at=utcnow())  # fmt: skip
        session.add(run)
        session.flush()
        run_id = run.id
    outcome = {
        "id": run_id,
        "status": "succeeded",
        "exit_code": 0,
        "output_tail": "ok",
        "finished_at": utcnow(),
    }
    # Someone else moved the incident first: the step still ran, its outcome is kept.
    assert advance(iid, S.ESCALATING, Event.ESCALATED, step_outcome=outcome) is None
    with new_session() as s:
        stored = s.get(StepRun, run_id)
        assert stored is not None and (stored.status, stored.exit_code, stored.output_tail) == (
            "succeeded",
            0,
            "ok",
        )
    assert counts(iid) == (0, 0, 0)


def approved_plan(steps: int, monkeypatch: pytest.MonkeyPatch) -> tuple[str, int, list[Any]]:
    """An incident in `executing` whose approved plan has `steps` low-risk steps, run by
    the dry-run executor: (incident id, plan id, the steps)."""
    from tests.support.analysts import restart_plan

    monkeypatch.setenv("REMEDIATION_EXECUTOR", "dry-run")
    reset_settings()
    plan = restart_plan(steps)
    iid = incident(S.PLANNING)
    plan_id = advance(
        iid, S.PLANNING, Event.PLAN_READY, plan={**result("plan"), "result": plan.model_dump(mode="json")}
    )
    assert plan_id
    assert advance(iid, S.AWAITING_APPROVAL, Event.APPROVED, also_equal={"plan_id": plan_id}) == 0
    return iid, plan_id, plan.steps


def test_a_remediation_claims_each_step_once_and_closes(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The remediation's own statements (`_claim_step` carrying the previous step's
    outcome, the final `advance`) on both databases: every step succeeded and
    recorded once, the incident in `closing`, a second delivery changes nothing."""
    from iras import dispatch
    from iras.tasks.remediation import execute_plan

    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(dispatch, "enqueue_stage", lambda iid, status: sent.append((iid, status.value)))
    iid, plan_id, _ = approved_plan(3, monkeypatch)
    execute_plan.apply(args=[iid])
    execute_plan.apply(args=[iid])  # a duplicate delivery
    with new_session() as s:
        inc = s.get(Incident, iid)
        assert inc is not None and (inc.status, inc.outcome) == ("closing", "resolved")
        runs = s.scalars(select(StepRun).where(StepRun.incident_id == iid).order_by(StepRun.step_order)).all()
        assert [(r.step_order, r.kind, r.status, r.exit_code) for r in runs] == [
            (1, "apply", "succeeded", 0), (2, "apply", "succeeded", 0), (3, "apply", "succeeded", 0),
        ]  # fmt: skip
        assert all(r.finished_at is not None and r.plan_id == plan_id for r in runs)
    # The post-mortem task is owed: sent by the delivery that closed, and by the
    # duplicate that found the incident in `closing` (a no-op past the first).
    assert sent == [(iid, "closing"), (iid, "closing")]


@pytest.mark.parametrize("resumed", [False, True], ids=["first delivery", "resumed after step 1"])
def test_the_post_mortem_after_a_remediation_sees_every_step_and_the_timeline(
    database: str, monkeypatch: pytest.MonkeyPatch, resumed: bool
) -> None:
    """The post-mortem task that follows a remediation: executing -> closing ->
    resolved, its timeline ending with the remediation, every step row stored (an
    earlier delivery's too) in what the analyst was given; written once however
    often the task is delivered."""
    from iras import dispatch
    from iras.analysts import set_analyst
    from iras.tasks.postmortem import write_postmortem
    from iras.tasks.remediation import execute_plan
    from tests.support.analysts import ScriptedAnalyst

    monkeypatch.setattr(dispatch, "enqueue_stage", lambda *_: None)
    monkeypatch.setattr(dispatch, "enqueue_notify", lambda *_: None)
    analyst = ScriptedAnalyst()
    set_analyst(analyst)
    iid, plan_id, steps = approved_plan(2, monkeypatch)
    if resumed:  # an earlier delivery ran step 1, stored its outcome, then died
        with session_scope() as session:
            session.add(
                StepRun(
                    incident_id=iid, plan_id=plan_id, step_order=1, kind="apply", command=steps[0].command,
                    status="succeeded", exit_code=0, output_tail="earlier delivery", started_at=utcnow(),
                    finished_at=utcnow(), rolled_back=False,
                )
            )  # fmt: skip
    execute_plan.apply(args=[iid])
    write_postmortem.apply(args=[iid])
    written = counts(iid)
    write_postmortem.apply(args=[iid])  # a duplicate delivery
    assert counts(iid) == written
    with new_session() as s:
        inc = s.get(Incident, iid)
        assert inc is not None and (inc.status, inc.outcome) == ("resolved", "resolved")
        rows = s.scalars(select(StepRun).where(StepRun.incident_id == iid).order_by(StepRun.id)).all()
        moves = s.execute(
            select(Transition.from_status, Transition.to_status, Transition.event, Transition.detail)
            .where(Transition.incident_id == iid)
            .order_by(Transition.id)
        ).all()
        record = s.get(PostMortemRecord, iid)
    assert [(m.from_status, m.to_status, m.event) for m in moves[-3:]] == [
        ("awaiting_approval", "executing", "approved"),
        ("executing", "closing", "remediation_succeeded"),
        ("closing", "resolved", "closed_resolved"),
    ]
    assert moves[-1].detail == {"summary": "post-mortem written"}
    assert [(r.step_order, r.status) for r in rows] == [(1, "succeeded"), (2, "succeeded")]
    assert len(analyst.postmortem_inputs) == 1
    given = analyst.postmortem_inputs[0]
    assert given.timeline[-1].event == EVENT_WORDS["remediation_succeeded"]
    assert [(v.order, v.command, v.status, v.output_tail) for v in given.step_runs] == [
        (r.step_order, r.command, r.status, (r.output_tail or "")[-500:]) for r in rows
    ]
    assert ("earlier delivery" in given.step_runs[0].output_tail) is resumed
    assert record is not None and record.outcome == "resolved"
    assert [e["event"] for e in record.data["timeline"]] == [e.event for e in given.timeline]


def test_a_decision_on_a_replaced_plan_does_not_match(database: str) -> None:
    iid = incident(S.PLANNING)
    plan_id = advance(iid, S.PLANNING, Event.PLAN_READY, plan=result("plan"))
    assert plan_id
    assert advance(iid, S.AWAITING_APPROVAL, Event.APPROVED, also_equal={"plan_id": plan_id + 1000}) is None
    assert advance(iid, S.AWAITING_APPROVAL, Event.APPROVED, also_equal={"plan_id": None}) is None
    assert advance(iid, S.AWAITING_APPROVAL, Event.APPROVED, also_equal={"plan_id": plan_id}) == 0


def test_the_read_paths_answer_on_both_databases(database: str) -> None:
    """The API and console reads run on `read_session` (on PostgreSQL a session bound
    to an autocommit connection, not to the engine): every list and detail page."""
    from iras.web import create_app

    client = create_app().test_client()
    iid = incident(S.PLANNING)
    plan_id = advance(iid, S.PLANNING, Event.PLAN_READY, plan=result("plan"))
    for url in ("/incidents", "/incidents?status=awaiting_approval", f"/incidents/{iid}", "/ui/",
                "/ui/?status=open", f"/ui/incidents/{iid}", "/postmortems"):  # fmt: skip
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code, response.text[:300])
    approved = client.post(f"/incidents/{iid}/approve", json={"by": "alice", "plan_id": plan_id})
    assert approved.status_code == 200 and approved.get_json()["status"] == "executing"
    again = client.post(f"/incidents/{iid}/approve", json={"by": "bob"})
    assert again.status_code == 409


def test_a_step_is_claimed_once_and_a_broken_claim_raises(database: str) -> None:
    """`_claim_step`: a second claim of the same step is a concurrent delivery (None,
    the previous step's outcome still stored); any other integrity error is a bug
    and raises instead of silently skipping the step."""
    from sqlalchemy.exc import IntegrityError

    from iras.tasks.remediation import _claim_step

    iid = incident(S.EXECUTING)
    row = {"incident_id": iid, "plan_id": 1, "step_order": 1, "kind": "apply", "command": "true",
           "rolled_back": False, "status": "running", "started_at": utcnow(), "exit_code": None,
           "finished_at": None, "output_tail": None}  # fmt: skip
    first = _claim_step(row, None)
    assert isinstance(first, int)
    second_row = {**row, "step_order": 2}
    finished = {
        "id": first,
        "status": "succeeded",
        "exit_code": 0,
        "output_tail": "ok",
        "finished_at": utcnow(),
    }
    second = _claim_step(second_row, finished)
    assert isinstance(second, int) and second != first
    # A duplicate delivery claims step 2 again with step 1's outcome: refused, nothing lost.
    assert _claim_step(second_row, finished) is None
    with pytest.raises(IntegrityError):
        _claim_step({**row, "step_order": 3, "command": None}, None)  # NOT NULL: a bug, not a race
    with new_session() as s:
        runs = s.scalars(select(StepRun).where(StepRun.incident_id == iid).order_by(StepRun.step_order)).all()
        assert [(r.step_order, r.status, r.output_tail) for r in runs] == [
            (1, "succeeded", "ok"),
            (2, "running", None),
        ]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """What a decision sends after its commit: its stage, its notification, its
    approval-wait observation (recorded, not sent)."""
    from iras import dispatch, metrics

    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(dispatch, "enqueue_stage", lambda i, s: calls.append(("stage", i, s.value)))
    monkeypatch.setattr(dispatch, "enqueue_notify", lambda n, i: calls.append(("notify", n, i)))
    monkeypatch.setattr(
        metrics,
        "observe_approval_wait",
        lambda via, event, ready, now: calls.append(("wait", via, event, ready)),
    )
    return calls


def decide_now(iid: str, approve: bool = True, by: str = "alice", plan_id: int | None = None) -> object:
    from iras.db import read_session
    from iras.services import decide

    with read_session() as session:
        return decide(
            session, iid, approve=approve, actor=by, via="api", reason=f"{by} decides", plan_id=plan_id
        )


def awaiting() -> tuple[str, int, object]:
    """An incident awaiting approval: its id, plan id and the plan_ready time."""
    iid = incident(S.PLANNING)
    plan_id = advance(iid, S.PLANNING, Event.PLAN_READY, plan=result("plan"))
    assert plan_id
    with new_session() as s:
        ready = s.scalars(select(Transition.at).where(Transition.incident_id == iid)).one()
    return iid, plan_id, ready


def test_a_decision_reports_its_plan_and_is_recorded_once(database: str, sent: list[tuple[str, ...]]) -> None:
    """With the plan reviewed or without: the audit detail names the incident's plan, the
    approval wait is measured from its plan_ready transition, the answer carries the new
    state; a second decision is refused with today's message, nothing written."""
    from iras.services import Decision, DecisionError

    iid, plan_id, ready = awaiting()
    decision = decide_now(iid, plan_id=plan_id)
    assert isinstance(decision, Decision)
    assert (decision.id, decision.status, decision.decided_by, decision.plan_id) == (
        iid, "executing", "alice", plan_id,
    )  # fmt: skip
    assert sent == [("stage", iid, "executing"), ("notify", "notify.post_decision", iid),
                    ("wait", "api", "approved", ready)]  # fmt: skip
    with new_session() as s:
        inc = s.get(Incident, iid)
        assert inc is not None and (inc.status, inc.decided_by, inc.decided_via, inc.decision_reason) == (
            "executing", "alice", "api", "alice decides",
        )  # fmt: skip
        t = s.scalars(
            select(Transition).where(Transition.incident_id == iid, Transition.event == "approved")
        ).one()
        assert (t.from_status, t.to_status, t.actor) == ("awaiting_approval", "executing", "api:alice")
        assert t.detail == {"reason": "alice decides", "via": "api", "by": "alice", "plan_id": plan_id}
    with pytest.raises(DecisionError) as refused:
        decide_now(iid, by="bob")
    assert (refused.value.status_code, refused.value.message) == (
        409,
        "incident is executing, not awaiting approval",
    )
    assert counts(iid) == (2, 1, 0)

    # A rejection without naming the plan: the detail still names it.
    other, other_plan, other_ready = awaiting()
    rejected = decide_now(other, approve=False, by="carol")
    assert (rejected.status, rejected.plan_id) == ("escalating", other_plan)  # type: ignore[attr-defined]
    assert sent[-1] == ("wait", "api", "rejected", other_ready)
    with new_session() as s:
        inc = s.get(Incident, other)
        assert inc is not None and (inc.status, inc.outcome) == ("escalating", "escalated")
        detail = s.scalars(select(Transition.detail).where(Transition.incident_id == other,
                                                           Transition.event == "rejected")).one()  # fmt: skip
        assert detail == {"reason": "carol decides", "via": "api", "by": "carol", "plan_id": other_plan}


def test_a_refused_decision_says_why_and_writes_nothing(database: str, sent: list[tuple[str, ...]]) -> None:
    from iras.services import DecisionError

    iid, plan_id, _ready = awaiting()
    missing = str(uuid.uuid4())
    with pytest.raises(DecisionError) as refused:
        decide_now(missing)
    assert (refused.value.status_code, refused.value.message) == (404, f"incident {missing} not found")
    with pytest.raises(DecisionError) as refused:
        decide_now(iid, plan_id=plan_id + 1000)
    assert (refused.value.status_code, refused.value.message) == (
        409, f"plan {plan_id + 1000} is no longer the current plan ({plan_id})",
    )  # fmt: skip
    with pytest.raises(DecisionError) as refused:
        decide_now(incident(S.PLANNING))
    assert (refused.value.status_code, refused.value.message) == (
        409,
        "incident is planning, not awaiting approval",
    )
    assert sent == [] and counts(iid) == (1, 1, 0)
    with new_session() as s:
        inc = s.get(Incident, iid)
        assert inc is not None and (inc.status, inc.decided_by) == ("awaiting_approval", None)


def test_concurrent_decisions_one_wins(database: str, sent: list[tuple[str, ...]]) -> None:
    """Approvers and rejecters at once: exactly one decision, every other one a 409."""
    from concurrent.futures import ThreadPoolExecutor

    from iras.services import DecisionError

    iid, plan_id, _ready = awaiting()

    def attempt(k: int) -> object:
        try:
            return decide_now(iid, approve=k % 2 == 0, by=f"user{k}", plan_id=plan_id if k % 3 else None)
        except DecisionError as exc:
            return exc.status_code

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(attempt, range(8)))
    winners = [a for a in answers if not isinstance(a, int)]
    assert len(winners) == 1 and sorted(a for a in answers if isinstance(a, int)) == [409] * 7, answers
    with new_session() as s:
        moved = s.scalars(select(Transition).where(Transition.incident_id == iid,
                                                   Transition.from_status == "awaiting_approval")).all()  # fmt: skip
        inc = s.get(Incident, iid)
        assert len(moved) == 1 and inc is not None
        assert inc.decided_by == winners[0].decided_by == moved[0].detail["by"]  # type: ignore[attr-defined]


@pytest.mark.integration
def test_a_decision_on_postgresql_is_one_statement(pg_database: str, sent: list[tuple[str, ...]]) -> None:
    """No read before the compare-and-set: one statement for a decision that applies,
    one more (the read that says why) for one that does not."""
    from iras.services import DecisionError
    from tests.support.sql import statements_sent

    iid, plan_id, _ready = awaiting()
    with statements_sent() as statements:
        decide_now(iid, plan_id=plan_id)
        assert len(statements) == 1 and statements[0].lstrip().startswith("WITH moved AS"), statements
        with pytest.raises(DecisionError):
            decide_now(iid)
        assert len(statements) == 3 and statements[2].lstrip().startswith("SELECT"), statements


def test_the_post_mortem_reads_every_fact_in_one_statement(database: str) -> None:
    """`postmortem_input` reads stage results, transitions and alerts as one UNION ALL
    (`_PM_READ`): the alerts in order with the first one's request body as the payload,
    the latest attempt of each stage, the evidence bundle left out of the documents but
    counted in the cost, the transitions in order, each part kept apart from the others."""
    from iras.db import read_connection
    from iras.models import AlertEvent
    from iras.schemas import NormalizedAlert, RootCauseHypothesis, TriageResult
    from iras.tasks.postmortem import postmortem_input
    from iras.tasks.reads import INCIDENT_ROW

    def doc(stage: str, attempt: int, body: dict[str, Any], tokens: int) -> dict[str, Any]:
        return {**result(stage, attempt), "result": body, "model": "claude-haiku-4-5", "input_tokens": tokens}

    def rca(cause: str, confidence: float) -> dict[str, Any]:
        return RootCauseHypothesis(
            primary_cause=cause, category="bad_deploy", culprit_service="api", confidence=confidence
        ).model_dump(mode="json")

    triage = TriageResult(
        severity="P1", affected_services=["api"], blast_radius="checkout", confidence=0.8, rationale="5xx"
    ).model_dump(mode="json")
    iid = incident(S.TRIAGING)
    with session_scope() as s:
        for i, title in enumerate(["disk full", "disk still full"]):
            alert = NormalizedAlert(source="generic", title=title, timestamp=utcnow(), service="api")
            s.add(AlertEvent(incident_id=iid, status="firing", alert=alert.model_dump(mode="json"),
                             raw={"request": i, "é": "ü"} if i == 0 else None))  # fmt: skip
    steps = [
        (S.TRIAGING, Event.TRIAGED, doc("triage", 1, triage, 10)),
        (S.GATHERING_CONTEXT, Event.CONTEXT_GATHERED, doc("context", 1, {"logs": ["x" * 50]}, 0)),
        (S.ANALYZING, Event.RCA_INCONCLUSIVE, doc("rca", 1, rca("first guess", 0.3), 100)),
        (S.GATHERING_CONTEXT, Event.CONTEXT_GATHERED, doc("context", 2, {"logs": []}, 0)),
        (S.ANALYZING, Event.RCA_CONFIDENT, doc("rca", 2, rca("the release", 0.9), 1000)),
    ]
    for status, event, row in steps:
        assert (
            advance(iid, status, event, detail={"summary": event.value}, rows=(("stage_results", row),)) == 0
        )
    with read_connection() as conn:
        row = conn.execute(INCIDENT_ROW, {"id": iid}).first()
        data = postmortem_input(conn, row)
    assert [a.title for a in data.facts.alerts] == ["disk full", "disk still full"]
    assert data.facts.payload == {"request": 0, "é": "ü"}
    assert data.triage is not None and data.triage.severity == "P1"
    assert data.rca is not None and data.rca.primary_cause == "the release"  # the latest attempt
    assert data.plan is None
    assert [e.detail for e in data.timeline] == [event.value for _, event, _ in steps]
    assert data.cost["input_tokens"] == 1110  # every result's tokens, the evidence bundles' too
