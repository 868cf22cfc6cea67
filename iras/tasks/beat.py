"""The beat jobs: approval deadlines and the stuck-incident sweeper."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select, update

from iras import dispatch, metrics
from iras.celery_app import celery_app
from iras.config import get_settings
from iras.db import after_commit, new_session, session_scope
from iras.models import Incident
from iras.schemas import utcnow
from iras.tasks.base import PipelineTask
from iras.workflow import WORKING, Event, IncidentStatus, transition

log = logging.getLogger(__name__)
S = IncidentStatus


@celery_app.task(name="incidents.expire_approvals", bind=True, base=PipelineTask)
def expire_approvals(self: PipelineTask, limit: int = 500) -> int:
    """Escalate incidents whose approval deadline passed. Each one is its own
    compare-and-set, so an approver who clicks at the last second either wins
    cleanly or gets a 409."""
    now = utcnow()
    expired = 0
    with new_session() as session:
        ids = list(
            session.scalars(
                select(Incident.id)
                .where(Incident.status == S.AWAITING_APPROVAL.value, Incident.approval_deadline < now)
                .order_by(Incident.approval_deadline)
                .limit(limit)
            )
        )
    for incident_id in ids:
        with session_scope() as session:
            ready = metrics.plan_ready_at(session, incident_id)
            if transition(
                session,
                incident_id,
                S.AWAITING_APPROVAL,
                Event.APPROVAL_TIMED_OUT,
                actor="timeout",
                detail={"summary": "no decision before the approval deadline", "via": "timeout"},
                values={
                    "decided_by": "timeout",
                    "decided_via": "timeout",
                    "decided_at": now,
                    "decision_reason": "approval deadline passed",
                    "outcome": "escalated",
                },
                now=now,
            ):
                expired += 1
                iid = incident_id
                after_commit(session, lambda iid=iid: dispatch.enqueue_stage(iid, S.ESCALATING))  # type: ignore[misc]
                after_commit(
                    session,
                    lambda r=ready: metrics.observe_approval_wait(  # type: ignore[misc]
                        "timeout", Event.APPROVAL_TIMED_OUT.value, r, now
                    ),
                )
    return expired


@celery_app.task(name="incidents.sweep_stuck", bind=True, base=PipelineTask)
def sweep_stuck(self: PipelineTask, limit: int = 500) -> int:
    """Re-enqueue incidents that sat in a working state longer than
    STUCK_AFTER_SECONDS: a lost message or a broker outage must not lose an
    incident. Tasks are idempotent, so a spurious re-send is harmless; the
    touched `updated_at` keeps one incident from being re-sent every beat."""
    settings = get_settings()
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.stuck_after_seconds)
    with session_scope() as session:
        rows = list(
            session.execute(
                select(Incident.id, Incident.status)
                .where(Incident.status.in_([s.value for s in WORKING]), Incident.updated_at < cutoff)
                .order_by(Incident.updated_at)
                .limit(limit)
            )
        )
        for incident_id, status in rows:
            session.execute(
                update(Incident)
                .where(Incident.id == incident_id, Incident.status == status)
                .values(updated_at=now)
            )
            after_commit(
                session, lambda i=incident_id, s=status: dispatch.enqueue_stage(i, IncidentStatus(s))
            )  # type: ignore[misc]
    if rows:
        log.warning("re-enqueued stuck incidents", extra={"count": len(rows)})
    return len(rows)
