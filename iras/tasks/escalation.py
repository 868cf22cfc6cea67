"""Escalation: `incidents.escalate` hands the incident to a human (a rejected or
expired plan, a failed remediation, an RCA out of attempts, a stage that failed
for good)."""

from __future__ import annotations

from sqlalchemy import select

from iras import dispatch
from iras.db import after_commit, post_commit, session_scope
from iras.models import Incident
from iras.tasks import reads
from iras.tasks.base import PipelineTask, guard_db, stage_task
from iras.workflow import Event, IncidentStatus, transition

S = IncidentStatus


@stage_task("incidents.escalate")
def escalate(self: PipelineTask, incident_id: str) -> None:
    """Page on-call (idempotent per incident id) and post to chat, each as its own
    retried task so a notifier outage never blocks the post-mortem, which follows."""

    def commit() -> bool:
        with session_scope() as session:
            status = session.scalar(select(Incident.status).where(Incident.id == incident_id))
            if status == S.CLOSING.value:
                return True  # redelivered or retried after the escalation committed
            incident = reads.load_incident(session, incident_id, S.ESCALATING)
            if incident is None:
                return False
            if not transition(
                session,
                incident_id,
                S.ESCALATING,
                Event.ESCALATED,
                detail={"summary": "paged on-call"},
                values={"outcome": incident.outcome or "escalated"},
            ):
                return False
            after_commit(session, lambda: dispatch.enqueue_notify("notify.page", incident_id))
            after_commit(session, lambda: dispatch.enqueue_notify("notify.post_escalation", incident_id))
        return True

    if guard_db(self, commit):
        post_commit(lambda: dispatch.enqueue_stage(incident_id, S.CLOSING))
