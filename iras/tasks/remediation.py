"""Remediation: `incidents.execute_plan` applies the approved plan's steps in
order and, when one fails, rolls back the completed ones in reverse, then
escalates. A step is recorded as `running` (committed) before its command
starts, so a redelivery after a crash never runs it a second time: a step whose
worker died is marked `unknown`, not re-run."""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, exists, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from iras import dispatch, metrics
from iras.config import get_settings
from iras.db import (
    after_commit,
    autocommit_connection,
    get_engine,
    held_connection,
    new_session,
    post_commit,
    read_connection,
    session_scope,
)
from iras.executor import get_executor
from iras.models import Incident, StageResult, StepRun
from iras.schemas import RemediationPlan, utcnow
from iras.tasks import reads
from iras.tasks.base import PipelineTask, stage_task
from iras.workflow import Event, IncidentStatus, advance, step_outcome_cte, store_step_outcome, transition

log = logging.getLogger(__name__)
S = IncidentStatus


class _StepBusy(Exception):
    """Another delivery of the same task holds this step: leave it to that one."""


def _step_lease(settings: Any) -> float:
    """How long a `running` step may go unfinished before its worker is presumed dead."""
    return float(settings.remediation_step_timeout_seconds) + 15


def _rollback_completed(session: Session, incident: Any, plan: RemediationPlan, executor: Any) -> list[str]:
    """Roll back, in reverse order, every step that succeeded. Returns a log of what happened."""
    notes: list[str] = []
    runs = {
        (r.step_order, r.kind): r
        for r in session.scalars(
            select(StepRun).where(StepRun.incident_id == incident.id, StepRun.plan_id == incident.plan_id)
        )
    }
    for step in sorted(plan.steps, key=lambda s: s.order, reverse=True):
        applied = runs.get((step.order, "apply"))
        if applied is None or applied.status != "succeeded" or applied.rolled_back:
            continue
        done = runs.get((step.order, "rollback"))
        if done is not None:
            if done.status == "running":
                if done.started_at > utcnow() - timedelta(seconds=_step_lease(get_settings())):
                    raise _StepBusy  # another worker is rolling it back right now
                # Its worker died mid-rollback: the outcome is unknown and it is not re-run.
                done.status, done.finished_at = "unknown", utcnow()
                done.output_tail = "worker lost while the rollback ran; outcome unknown, not re-run"
                session.commit()
                notes.append(f"step {step.order} rollback outcome unknown (worker lost)")
            continue
        if not step.rollback_command:
            notes.append(f"step {step.order} has no rollback command: left as is")
            continue
        run = StepRun(
            incident_id=incident.id,
            plan_id=incident.plan_id,
            step_order=step.order,
            kind="rollback",
            command=step.rollback_command,
            status="running",
            started_at=utcnow(),
        )
        session.add(run)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            raise _StepBusy from None  # a concurrent delivery claimed this rollback first
        result = executor.run(step.rollback_command)
        run.status, run.exit_code, run.output_tail, run.finished_at = (
            result.status,
            result.exit_code,
            result.output,
            utcnow(),
        )
        if result.status == "succeeded":
            applied.rolled_back = True
        session.commit()
        notes.append(f"step {step.order} rollback {result.status}")
    return notes


# A step's outcome: the finished columns of its `running` row, stored with the
# next write (the next claim, the final transition) or alone.
_Outcome = dict[str, Any]


def _store_outcome_alone(finished: _Outcome) -> None:
    """Store a step's outcome in a transaction of its own (after a failed claim or
    commit). A database restart fails the first statement on each stale connection;
    the next connection works, and the outcome of a step that did run is kept
    (otherwise it would read as `running` until its lease expires)."""
    try:
        with session_scope() as session:
            store_step_outcome(session, finished)
    except OperationalError:
        log.error("step outcome not stored: database unavailable", extra={"step_run_id": finished["id"]})


def _claim_step(row: dict[str, Any], finished: _Outcome | None) -> int | None:
    """Insert a step row (`running`, or `manual` already finished) together with the
    previous step's outcome: one commit per step, and nothing runs unclaimed. Returns
    the row id, or None when a concurrent delivery wrote that step first (the
    previous outcome is then stored on its own, never lost)."""
    try:
        if get_engine().dialect.name == "postgresql":
            with autocommit_connection() as conn:
                return int(conn.execute(_claim_statement(tuple(row), finished is not None), {
                    **{f"_c_{k}": v for k, v in row.items()},
                    **({f"_s_{k}": v for k, v in finished.items()} | {"_s_running": "running"} if finished else {})
                }).scalar_one())  # fmt: skip
        with session_scope() as session:
            if finished is not None:
                store_step_outcome(session, finished)
            return int(session.execute(insert(StepRun).values(row).returning(StepRun.id)).scalar_one())
    except IntegrityError as exc:
        if finished is not None:
            _store_outcome_alone(finished)
        if not _is_unique_violation(exc):
            raise  # a bug (a NOT NULL column left out), not a concurrent claim
        return None


def _is_unique_violation(exc: IntegrityError) -> bool:
    code = getattr(exc.orig, "pgcode", None)
    return code == "23505" if code is not None else "UNIQUE constraint failed" in str(exc.orig)


_OUTCOME_COLUMNS = ("status", "exit_code", "output_tail", "finished_at")


@lru_cache(maxsize=8)
def _claim_statement(columns: tuple[str, ...], with_previous: bool) -> Any:
    """PostgreSQL: [WITH step_done AS (UPDATE step_runs SET <outcome> WHERE id AND status =
    'running')] INSERT INTO step_runs ... RETURNING id: one statement in autocommit."""
    table = StepRun.__table__
    # Every parameter is prefixed: an execution parameter named like a column would
    # also be taken as a SET value of the UPDATE in the CTE.
    stmt = insert(table).values({table.c[c]: bindparam(f"_c_{c}", type_=table.c[c].type) for c in columns})
    if with_previous:
        stmt = stmt.add_cte(step_outcome_cte(_OUTCOME_COLUMNS))
    return stmt.returning(table.c.id)


@stage_task("incidents.execute_plan")
def execute_plan(self: PipelineTask, incident_id: str) -> None:
    """Apply the approved plan; once the incident is in `closing` (this delivery
    closed it, or a redelivery finds it closed) its post-mortem task is sent."""
    # One pooled connection for the remediation's statements (`held_connection`).
    with held_connection():
        closing = _execute(self, incident_id)
    if closing:
        post_commit(lambda: dispatch.enqueue_stage(incident_id, S.CLOSING))


def _execute(self: PipelineTask, incident_id: str) -> bool:
    """The remediation; True when the incident is in `closing` afterwards (its
    post-mortem is owed).

    Core statements in autocommit on PostgreSQL (`_claim_step`, `advance`): a step
    costs one statement, its claim carrying the previous step's outcome."""
    settings = get_settings()
    executor = get_executor(settings)
    # The last step's outcome, not stored yet: it goes out with the next claim, the
    # final transition, or on its own before a rollback or a retry.
    finished: _Outcome | None = None
    try:
        with read_connection() as conn:
            row = conn.execute(_EXECUTION_STATE, {"id": incident_id}).first()
            if row is None:
                log.info("incident gone", extra={"incident_id": incident_id})
                return False
            if row.status == S.CLOSING.value:
                return True  # redelivered or retried after the remediation closed
            if row.status != S.EXECUTING.value:
                log.info("stale delivery ignored", extra={"incident_id": incident_id, "status": row.status})
                return False
            if row.plan is None:
                raise RuntimeError(f"incident {incident_id} is executing without a plan")
            plan_id = row.plan_id
            plan = RemediationPlan.model_validate(row.plan)
            # A first delivery finds no step rows at all (the usual case): nothing to read.
            runs = (
                {
                    r.step_order: r
                    for r in conn.execute(_APPLIED_RUNS, {"id": incident_id, "plan_id": plan_id})
                }
                if row.has_runs
                else {}
            )
        failure: str | None = None
        manual: list[int] = []
        for step in sorted(plan.steps, key=lambda s: s.order):
            run = runs.get(step.order)
            if run is not None:
                if run.status == "succeeded":
                    continue
                if run.status == "manual":
                    manual.append(step.order)
                    continue
                if run.status == "running":
                    lease = _step_lease(settings)
                    if run.started_at > utcnow() - timedelta(seconds=lease):
                        return False  # another worker is running this step right now
                    _store_outcome_alone({
                        "id": run.id, "status": "unknown", "finished_at": utcnow(),
                        "output_tail": "worker lost while the step ran; outcome unknown, not re-run",
                    })  # fmt: skip
                    metrics.emit_committed(("step", "apply", "unknown"))
                    failure = f"step {step.order} unknown"
                else:
                    failure = f"step {step.order} {run.status}"
                break
            claim = {
                "incident_id": incident_id, "plan_id": plan_id, "step_order": step.order, "kind": "apply",
                "command": step.command, "rolled_back": False,
            }  # fmt: skip
            if not step.executable:
                # A manual step (a change IRAS has no safe command for, or a command
                # the safety policy refused): never run, recorded for the human who
                # approved the plan, and the next steps go on.
                claim |= {"status": "manual", "started_at": utcnow(), "exit_code": None, "finished_at": utcnow(),
                          "output_tail": ("manual step, not run by IRAS: " + "; ".join(step.safety_notes))[:4000]}  # fmt: skip
                if _claim_step(claim, finished) is None:
                    return False  # a concurrent delivery recorded it first
                metrics.emit_committed(("step", "apply", "manual"))
                finished = None
                manual.append(step.order)
                continue
            claim |= {"status": "running", "started_at": utcnow(), "exit_code": None, "finished_at": None,
                      "output_tail": None}  # fmt: skip
            run_id = _claim_step(claim, finished)
            if run_id is None:
                return False  # a concurrent delivery claimed this step first
            if finished is not None:
                metrics.emit_committed(("step", "apply", finished["status"]))
            result = executor.run(step.command)
            finished = {"id": run_id, "status": result.status, "exit_code": result.exit_code,
                        "output_tail": result.output, "finished_at": utcnow()}  # fmt: skip
            if result.status != "succeeded":
                failure = f"step {step.order} {result.status}: {result.output[-200:]}"
                break
        if failure is None:
            succeeded = {
                "summary": f"{len(plan.steps) - len(manual)} step(s) applied ({executor.name})"
                + (f"; manual step(s) {', '.join(map(str, manual))} left to a human" if manual else ""),
                "manual_steps": manual,
            }
            moved = advance(
                incident_id,
                S.EXECUTING,
                Event.REMEDIATION_SUCCEEDED,
                detail=succeeded,
                values={"outcome": "resolved"},
                step_outcome=finished,
            )
            if finished is not None:
                metrics.emit_committed(("step", "apply", finished["status"]))
            if moved is None:
                return False
            metrics.observe_remediation("succeeded")
            return True
        if finished is not None:
            _store_outcome_alone(finished)
            metrics.emit_committed(("step", "apply", finished["status"]))
            finished = None
        return _fail_remediation(incident_id, plan, failure, executor)
    except OperationalError as exc:
        if finished is not None:
            _store_outcome_alone(finished)
        self.retry_later(exc)
        return False  # not reached: retry_later raises


# The incident's status and approved plan, and the plan's applied steps: the
# remediation's reads, without ORM objects.
_EXECUTION_STATE = (
    select(
        Incident.__table__,
        StageResult.result.label("plan"),
        exists().where(StepRun.incident_id == Incident.id).label("has_runs"),
    )
    .outerjoin(StageResult, StageResult.id == Incident.plan_id)
    .where(Incident.id == bindparam("id"))
)
_APPLIED_RUNS = select(StepRun.id, StepRun.step_order, StepRun.status, StepRun.started_at).where(
    StepRun.incident_id == bindparam("id"), StepRun.plan_id == bindparam("plan_id"), StepRun.kind == "apply"
)


def _fail_remediation(incident_id: str, plan: RemediationPlan, failure: str, executor: Any) -> bool:
    """A step failed: roll back the completed ones in reverse and escalate. Rare, so
    through the ORM session as it was written first."""
    session = new_session()
    try:
        incident = reads.load_incident(session, incident_id, S.EXECUTING)
        if incident is None:
            return False
        try:
            notes = _rollback_completed(session, incident, plan, executor)
        except _StepBusy:
            return False  # the sweeper re-sends this task; the holder finishes or its lease runs out
        if transition(
            session,
            incident_id,
            S.EXECUTING,
            Event.REMEDIATION_FAILED,
            detail={"summary": failure[:300], "rollback": notes},
            values={"outcome": "escalated"},
        ):
            after_commit(session, lambda: dispatch.enqueue_stage(incident_id, S.ESCALATING))
            after_commit(session, lambda: metrics.observe_remediation("failed"))
        session.commit()
        return False
    finally:
        session.close()
