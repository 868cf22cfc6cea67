"""Domain operations shared by the web API, Slack and the console: deciding on a
plan, reading an incident. (Ingesting alerts is `iras.ingest.store`.)
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.orm import Session

from iras import dispatch, metrics
from iras.analysts.pricing import Usage, incident_totals
from iras.config import get_settings
from iras.db import get_engine, held_connection, post_commit, read_session
from iras.models import AlertEvent, Incident, PostMortemRecord, StageResult, StepRun, Transition
from iras.schemas import utcnow
from iras.workflow import TERMINAL, Event, IncidentStatus, advance, advance_decision

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- decisions


class DecisionError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class Decision:
    """What a decision wrote on the incident: what its callers answer with (the API
    returns id, status and decided_by), without loading the incident."""

    id: str
    status: str
    plan_id: int | None
    decided_by: str
    decided_via: str
    decided_at: datetime
    decision_reason: str | None


@contextmanager
def decision_session() -> Iterator[Session]:
    """The session `decide` is given by its callers (API, console, Slack): a read session
    whose pooled connection the decision statement shares (`db.held_connection`)."""
    with held_connection(), read_session() as session:
        yield session


def decide(
    session: Session,
    incident_id: str,
    *,
    approve: bool,
    actor: str,
    via: str,
    reason: str | None = None,
    plan_id: int | None = None,
) -> Decision:
    """Approve or reject the pending plan: one compare-and-set, so two approvers
    (or an approver racing the timeout) cannot both win. Raises DecisionError.

    `plan_id`: the plan the decider reviewed; the decision applies only while it is
    the incident's plan. On PostgreSQL the compare-and-set comes first, as one
    statement (`workflow.advance_decision`) that also reports the incident's plan and
    when it was ready; the incident is read only to say why it did not match. SQLite
    reads first (the read's transaction is ended before the write)."""
    # Every caller (API, console, Slack) ends here: what the database cannot hold is
    # refused or made storable before it is bound (NUL in text, an id past BIGINT).
    try:
        uuid.UUID(incident_id)
    except ValueError:
        raise DecisionError(404, f"incident {incident_id[:64]!r} not found") from None
    if plan_id is not None and not 0 < plan_id < 2**63:
        raise DecisionError(400, "plan id out of range (1 to 2**63-1)")
    actor = actor.replace("\x00", "\ufffd")
    reason = reason.replace("\x00", "\ufffd") if reason is not None else None
    now = utcnow()
    event = Event.APPROVED if approve else Event.REJECTED
    values: dict[str, Any] = {
        "decided_by": actor[:255],
        "decided_via": via,
        "decided_at": now,
        "decision_reason": reason,
    }
    if not approve:
        values["outcome"] = "escalated"
    detail = {"reason": reason, "via": via, "by": actor}
    if get_engine().dialect.name == "postgresql":
        decided = advance_decision(
            incident_id,
            event,
            actor=f"{via}:{actor}"[:255],
            detail=detail,  # + the incident's plan_id, added by the statement
            values=values,
            also_equal={"plan_id": plan_id} if plan_id is not None else None,
            now=now,
        )
        if decided is None:
            raise _refusal(_decision_state(session, incident_id), incident_id, plan_id) or DecisionError(
                409, _DECIDED_FIRST
            )
        current_plan, ready = decided.plan_id, decided.plan_ready_at
    else:
        current_plan, ready = _decide_after_reading(
            session, incident_id, event, actor, via, detail, values, plan_id, now
        )
    next_status = IncidentStatus.EXECUTING if approve else IncidentStatus.ESCALATING
    post_commit(lambda: dispatch.enqueue_stage(incident_id, next_status))
    post_commit(lambda: dispatch.enqueue_notify("notify.post_decision", incident_id))
    post_commit(lambda: metrics.observe_approval_wait(via, event.value, ready, now))
    return Decision(
        id=incident_id,
        status=next_status.value,
        plan_id=current_plan,
        decided_by=values["decided_by"],
        decided_via=via,
        decided_at=now,
        decision_reason=reason,
    )


def _decision_state(session: Session, incident_id: str) -> Any:
    """The incident's status and plan_id (a row), None if there is no such incident."""
    return session.execute(_DECISION_STATE, {"incident_id": incident_id}).first()


def _refusal(incident: Any, incident_id: str, plan_id: int | None) -> DecisionError | None:
    """Why a decision cannot apply to `incident` (`_decision_state`) as it is now, or
    None when it can."""
    if incident is None:
        return DecisionError(404, f"incident {incident_id} not found")
    if incident.status != IncidentStatus.AWAITING_APPROVAL.value:
        return DecisionError(409, f"incident is {incident.status}, not awaiting approval")
    if plan_id is not None and plan_id != incident.plan_id:
        return DecisionError(409, f"plan {plan_id} is no longer the current plan ({incident.plan_id})")
    return None


# The compare-and-set lost though the incident looked decidable: a racing decision won.
_DECIDED_FIRST = "the incident was decided by someone else first"
_DECISION_STATE = select(Incident.status, Incident.plan_id).where(Incident.id == bindparam("incident_id"))


def _decide_after_reading(
    session: Session,
    incident_id: str,
    event: Event,
    actor: str,
    via: str,
    detail: dict[str, Any],
    values: dict[str, Any],
    plan_id: int | None,
    now: datetime,
) -> tuple[int | None, datetime | None]:
    """SQLite: read the incident, then the compare-and-set with "the plan reviewed is
    still the current plan". Returns the incident's plan_id and when it was ready."""
    incident = _decision_state(session, incident_id)
    refused = _refusal(incident, incident_id, plan_id)
    if refused is not None:
        raise refused
    # For the approval-wait metric, read with the incident (no session of its own).
    ready = metrics.plan_ready_at(session, incident_id)
    # The decision is its own statement (`advance`): end the read first. On SQLite
    # the read's transaction holds the write lock the decision needs.
    session.commit()
    moved = advance(
        incident_id,
        IncidentStatus.AWAITING_APPROVAL,
        event,
        actor=f"{via}:{actor}"[:255],
        detail={**detail, "plan_id": incident.plan_id},
        values=values,
        # "The plan reviewed is still the current plan".
        also_equal={"plan_id": incident.plan_id},
        now=now,
    )
    if moved is None:
        raise DecisionError(409, _DECIDED_FIRST)
    return incident.plan_id, ready


# --------------------------------------------------------------------------- reading


def approval_deadline_for(severity: str | None, settings: Any) -> Any:
    return utcnow() + timedelta(minutes=settings.approval_timeout_minutes(severity))


def stage_results(session: Session, incident_id: str) -> list[StageResult]:
    return list(
        session.scalars(
            select(StageResult).where(StageResult.incident_id == incident_id).order_by(StageResult.id)
        )
    )


def cost_summary(results: list[Any]) -> dict[str, Any]:
    """Per-incident token totals and estimated cost (price table in settings)."""
    calls = [
        (r.model, Usage(r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_creation_tokens))
        for r in results
    ]
    return incident_totals(calls, get_settings())


def serialize_incident(session: Session, incident: Incident, *, full: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": incident.id,
        "status": incident.status,
        "severity": incident.severity,
        "title": incident.title,
        "service": incident.service,
        "source": incident.source,
        "fingerprint": incident.fingerprint,
        "alert_count": incident.alert_count,
        "rca_attempts": incident.rca_attempts,
        "approval_deadline": incident.approval_deadline.isoformat() if incident.approval_deadline else None,
        "decision": (
            {
                "by": incident.decided_by,
                "via": incident.decided_via,
                "at": incident.decided_at.isoformat() if incident.decided_at else None,
                "reason": incident.decision_reason,
            }
            if incident.decided_by
            else None
        ),
        "outcome": incident.outcome,
        "created_at": incident.created_at.isoformat(),
        "updated_at": incident.updated_at.isoformat(),
        "last_seen": incident.last_seen.isoformat() if incident.last_seen else None,
    }
    if not full:
        return doc
    results = stage_results(session, incident.id)
    events = list(
        session.scalars(
            select(AlertEvent).where(AlertEvent.incident_id == incident.id).order_by(AlertEvent.id).limit(100)
        )
    )
    doc["payload"] = events[0].raw if events else None
    doc["stages"] = [
        {
            "id": r.id,
            "stage": r.stage,
            "attempt": r.attempt,
            "analyst": r.analyst,
            "model": r.model,
            "tokens": {
                "input": r.input_tokens,
                "output": r.output_tokens,
                "cache_read": r.cache_read_tokens,
                "cache_creation": r.cache_creation_tokens,
            },
            "latency_ms": round(r.latency_ms, 1),
            "note": r.note,
            "details": r.details,
            "result": r.result,
            "created_at": r.created_at.isoformat(),
        }
        for r in results
    ]
    plan = next((r for r in results if r.id == incident.plan_id), None)
    doc["plan"] = {"id": plan.id, **plan.result} if plan else None
    doc["cost"] = cost_summary(results)
    doc["step_runs"] = [
        {
            "step": s.step_order,
            "kind": s.kind,
            "command": s.command,
            "status": s.status,
            "exit_code": s.exit_code,
            "output_tail": s.output_tail,
            "started_at": s.started_at.isoformat(),
            "finished_at": s.finished_at.isoformat() if s.finished_at else None,
            "rolled_back": s.rolled_back,
        }
        for s in session.scalars(
            select(StepRun).where(StepRun.incident_id == incident.id).order_by(StepRun.id)
        )
    ]
    doc["timeline"] = [
        {
            "at": t.at.isoformat(),
            "from": t.from_status,
            "to": t.to_status,
            "event": t.event,
            "actor": t.actor,
            "detail": t.detail,
        }
        for t in session.scalars(
            select(Transition).where(Transition.incident_id == incident.id).order_by(Transition.id)
        )
    ]
    doc["alerts"] = [
        {
            "received_at": a.received_at.isoformat(),
            "status": a.status,
            "fingerprint": a.fingerprint,
            **a.alert,
        }
        for a in events
    ]
    pm = session.get(PostMortemRecord, incident.id)
    doc["postmortem"] = {"markdown": pm.markdown, **pm.data, "analyst": pm.analyst} if pm else None
    return doc


# Counting every incident per status is a scan of the whole history, growing with
# it, on every console page view. Terminal
# statuses are final and a closed incident's `updated_at` never changes again, so
# the count of closed incidents last updated before a cut-off only changes by
# deletion: it is computed once per process every _HISTORY_TTL_SECONDS, and
# everything after the cut-off (plus every open incident) is counted live on
# indexed ranges. The cut-off trails the clock by _HISTORY_MARGIN so a
# transaction that computed its `updated_at` a moment before the cut-off but
# committed after it is still counted live, never missed.
_HISTORY_TTL_SECONDS = 300.0
_HISTORY_MARGIN = timedelta(seconds=60)
_TERMINAL_VALUES = [s.value for s in TERMINAL]
_history_lock = threading.Lock()
_history: dict[str, tuple[float, Any, dict[str, int]]] = {}


def _grouped(session: Session, *where: Any) -> dict[str, int]:
    rows = session.execute(select(Incident.status, func.count()).where(*where).group_by(Incident.status))
    return {str(status): int(n) for status, n in rows}


def count_by_status(session: Session) -> dict[str, int]:
    """Incidents per status, exact, without scanning the closed history each time."""
    counts = _grouped(session, Incident.status.not_in(_TERMINAL_VALUES))
    key = f"{os.getpid()}:{session.get_bind().engine.url}"
    with _history_lock:
        cached = _history.get(key)
    if cached is None or time.monotonic() - cached[0] > _HISTORY_TTL_SECONDS:
        cutoff = utcnow() - _HISTORY_MARGIN
        base = _grouped(session, Incident.status.in_(_TERMINAL_VALUES), Incident.updated_at < cutoff)
        cached = (time.monotonic(), cutoff, base)
        with _history_lock:
            _history[key] = cached
    _, cutoff, base = cached
    recent = _grouped(session, Incident.status.in_(_TERMINAL_VALUES), Incident.updated_at >= cutoff)
    for status, n in [*base.items(), *recent.items()]:
        counts[status] = counts.get(status, 0) + n
    return counts


def distinct_services(session: Session, limit: int = 200) -> list[str]:
    """The services incidents were opened for, sorted, at most `limit`.

    `SELECT DISTINCT service` reads every incident; this walks the service index
    (ix_incidents_service) from one value to the next instead, a "skip scan" in one
    recursive query: one index probe per distinct service, whatever the size of the
    history.
    """
    return [str(v) for v in session.execute(_DISTINCT_SERVICES, {"limit": limit}).scalars()]


_DISTINCT_SERVICES = text(
    """
    WITH RECURSIVE s(v) AS (
        SELECT min(service) FROM incidents WHERE service IS NOT NULL
        UNION ALL
        SELECT (SELECT min(service) FROM incidents WHERE service > s.v) FROM s WHERE s.v IS NOT NULL
    )
    SELECT v FROM s WHERE v IS NOT NULL LIMIT :limit
    """
)
