"""The post-mortem stage: `incidents.write_postmortem`, for every incident that
enters `closing` (resolved, escalated, auto-resolved, nothing to do). The
analyst writes the narrative; the timeline, the cost, the outcome and the
manual steps come from the database."""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from sqlalchemy import bindparam, case, cast, literal, null, select, type_coerce, union_all
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from iras import dispatch, metrics
from iras.analysts.base import PostMortemInput, StepRunView
from iras.db import post_commit, read_connection
from iras.models import AlertEvent, StageResult, StepRun, Transition
from iras.postmortem import timeline_from
from iras.schemas import RemediationPlan, RootCauseHypothesis, Severity, TriageResult, utcnow
from iras.services import cost_summary
from iras.tasks import reads
from iras.tasks.base import PipelineTask, call_analyst, count_usage, guard_db, result_row, stage_task
from iras.workflow import CLOSING_EVENT_FOR_OUTCOME, Event, IncidentStatus, advance

log = logging.getLogger(__name__)
S = IncidentStatus

# The stage results the post-mortem reads: the cost columns of every row, and the
# result of every row but the evidence bundle (the largest document by far, which
# the post-mortem does not use).
_PM_RESULTS = (
    select(
        StageResult.id,
        StageResult.stage,
        StageResult.model,
        StageResult.input_tokens,
        StageResult.output_tokens,
        StageResult.cache_read_tokens,
        StageResult.cache_creation_tokens,
        type_coerce(
            case((StageResult.stage == "context", null()), else_=StageResult.result), StageResult.result.type
        ).label("result"),
    )
    .where(StageResult.incident_id == bindparam("incident_id"))
    .order_by(StageResult.id)
)


class _PmResult(NamedTuple):
    id: int
    stage: str
    model: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    result: Any


class _PmTransition(NamedTuple):
    """A transition as the post-mortem's timeline reads it (`timeline_from`)."""

    at: Any
    event: str
    actor: str
    detail: Any


def _pm_read() -> Any:
    """The stage results (`_PM_RESULTS`), the transitions and the alerts
    (`reads.ALERTS`) as one statement, a UNION ALL of the three told apart by `part`.
    Columns: part, id, name, who, at, the four token counts, doc, raw."""
    # Typed NULLs: PostgreSQL types two untyped NULLs of a UNION as text.
    json_null = cast(null(), StageResult.result.type)
    none_at = cast(null(), Transition.at.type)
    no_tokens = [type_coerce(null(), StageResult.input_tokens.type)] * 4
    r = _PM_RESULTS.subquery()
    results = select(
        literal("r").label("part"), r.c.id, r.c.stage.label("name"), r.c.model.label("who"), none_at.label("at"),
        r.c.input_tokens, r.c.output_tokens, r.c.cache_read_tokens, r.c.cache_creation_tokens,
        r.c.result.label("doc"), json_null.label("raw"),
    )  # fmt: skip
    transitions = select(
        literal("t"), Transition.id, Transition.event, Transition.actor, Transition.at, *no_tokens,
        Transition.detail, json_null,
    ).where(Transition.incident_id == bindparam("incident_id"))  # fmt: skip
    a = reads.ALERTS.add_columns(AlertEvent.id.label("id")).subquery()
    alerts = select(literal("a"), a.c.id, null(), null(), none_at, *no_tokens, a.c.alert, a.c.raw)
    both = union_all(results, transitions, alerts).subquery()
    return select(*both.c).order_by(both.c.part, both.c.id)


_PM_READ = _pm_read()
_PM_RUNS = (
    select(
        StepRun.step_order,
        StepRun.kind,
        StepRun.command,
        StepRun.status,
        StepRun.output_tail,
        StepRun.rolled_back,
    )
    .where(StepRun.incident_id == bindparam("incident_id"))
    .order_by(StepRun.id)
)
_POSTMORTEM_WRITTEN = {"summary": "post-mortem written"}


@stage_task("incidents.write_postmortem")
def write_postmortem(self: PipelineTask, incident_id: str) -> None:
    try:
        with read_connection() as conn:
            incident = reads.load_incident(conn, incident_id, S.CLOSING)
            if incident is None:
                return
            data = postmortem_input(conn, incident)
    except OperationalError as exc:
        self.retry_later(exc)  # a database restart while loading: retry, never escalate
    out, record = _compose(self, incident, data)
    event = CLOSING_EVENT_FOR_OUTCOME.get(data.outcome, Event.CLOSED_RESOLVED)

    def commit() -> None:
        rows = (("stage_results", result_row("postmortem", 1, out)), ("postmortems", record))
        if advance(incident_id, S.CLOSING, event, detail=_POSTMORTEM_WRITTEN, rows=rows) is None:
            return
        count_usage("postmortem", out)
        metrics.emit_committed(("closed", data.outcome))
        post_commit(lambda: dispatch.enqueue_notify("notify.post_postmortem", incident_id))
        if data.outcome in ("resolved", "auto_resolved", "no_action"):
            post_commit(lambda: dispatch.enqueue_notify("notify.resolve_page", incident_id))

    guard_db(self, commit)


def postmortem_input(conn: Connection, incident: Any) -> PostMortemInput:
    """What the post-mortem is written from, every fact read from the database."""
    incident_id = incident.id
    results: list[_PmResult] = []
    transitions: list[_PmTransition] = []
    alert_rows: list[Any] = []
    for part, id_, name, who, at, t1, t2, t3, t4, doc, raw in conn.execute(
        _PM_READ, {"incident_id": incident_id}
    ):
        if part == "r":
            results.append(_PmResult(id_, name, who, t1, t2, t3, t4, doc))
        elif part == "t":
            transitions.append(_PmTransition(at, name, who, doc))
        else:
            alert_rows.append((doc, raw))
    by_stage: dict[str, Any] = {}
    for r in results:
        by_stage[r.stage] = r  # ordered by id: the latest attempt wins
    triage = TriageResult.model_validate(by_stage["triage"].result) if "triage" in by_stage else None
    runs = list(conn.execute(_PM_RUNS, {"incident_id": incident_id}))
    decided = next(
        (t.event for t in reversed(transitions) if t.event in (Event.APPROVED.value, Event.REJECTED.value)),
        None,
    )
    decision = (
        {
            # "approved" | "rejected": a rejected diagnosis is written up as rejected.
            "decision": decided,
            "by": incident.decided_by,
            "via": incident.decided_via,
            "reason": incident.decision_reason,
            "at": incident.decided_at.isoformat() if incident.decided_at else None,
        }
        if incident.decided_by
        else None
    )
    plan_row = next((r for r in results if r.id == incident.plan_id), None) or by_stage.get("plan")
    return PostMortemInput(
        facts=reads.facts_from(incident, alert_rows, triage),
        outcome=incident.outcome or "resolved",
        triage=triage,
        rca=RootCauseHypothesis.model_validate(by_stage["rca"].result) if "rca" in by_stage else None,
        plan=RemediationPlan.model_validate(plan_row.result) if plan_row else None,
        step_runs=[
            StepRunView(
                order=r.step_order,
                command=f"{'rollback: ' if r.kind == 'rollback' else ''}{r.command}",
                status=r.status,
                output_tail=(r.output_tail or "")[-500:],
                rolled_back=r.rolled_back,
            )
            for r in runs
        ],
        timeline=timeline_from(transitions),
        decision=decision,
        cost=cost_summary(results),
    )


def _compose(task: PipelineTask, incident: Any, data: PostMortemInput) -> tuple[Any, dict[str, Any]]:
    """Ask the analyst for the post-mortem and fix what must be facts, not the model's
    version: the timeline, the cost, the outcome, the incident's severity (re-assessed
    from evidence, not triage's first guess), the manual steps a human must confirm.
    Returns the stage output and the `postmortems` row."""
    out = call_analyst(task, "postmortem", data)
    manual_items = [
        f"Confirm manual step {r.order} was carried out: {r.command}"
        for r in data.step_runs
        if r.status == "manual"
    ]
    pm = out.result.model_copy(
        update={
            "timeline": data.timeline,
            "cost": data.cost,
            "outcome": data.outcome,
            "severity": Severity(incident.severity) if incident.severity else out.result.severity,
            "action_items": [*manual_items, *out.result.action_items],
        }
    )
    # The Markdown is rendered from `data` when read (PostMortemRecord.markdown).
    record = {
        "outcome": data.outcome,
        "severity": pm.severity.value if pm.severity else None,
        "data": pm.model_dump(mode="json"),
        "analyst": out.analyst,
        "created_at": utcnow(),
    }
    return out, record
