"""Sending the task that owns an incident's next step, through Celery's public API.

Tasks are sent by name (`Celery.send_task`), so the web process, which only
enqueues, never imports the task modules, and the modules that enqueue (ingest,
decisions, the tasks themselves) do not import one another. Every message goes
through kombu's producer, so `before_task_publish` / `after_task_publish` fire for
each one (iras.metrics stamps the queue lag there; tracing libraries hook them).

Call these only after the commit that made the step due: `db.after_commit` inside a
session, `db.post_commit` after a statement committed on its own. A broker that
refuses raises; those wrappers log it and the stuck-incident sweeper re-sends.
"""

from __future__ import annotations

from collections.abc import Iterable

from iras.celery_app import celery_app
from iras.workflow import IncidentStatus

S = IncidentStatus

# The task that moves an incident out of each working status (the dotted names
# Flower shows). Statuses absent here wait for a person (awaiting_approval) or are final.
STAGE_TASKS: dict[IncidentStatus, str] = {
    S.TRIAGING: "incidents.run_triage",
    S.GATHERING_CONTEXT: "incidents.gather_context",
    S.ANALYZING: "incidents.run_rca",
    S.PLANNING: "incidents.run_plan",
    S.EXECUTING: "incidents.execute_plan",
    S.ESCALATING: "incidents.escalate",
    S.CLOSING: "incidents.write_postmortem",
}

NOTIFICATIONS = frozenset(
    {
        "notify.post_plan",
        "notify.post_decision",
        "notify.post_escalation",
        "notify.post_postmortem",
        "notify.page",
        "notify.resolve_page",
    }
)


def enqueue_stage(incident_id: str, status: IncidentStatus) -> None:
    """Send the task that owns `status` (nothing for a status no task owns)."""
    name = STAGE_TASKS.get(status)
    if name is not None:
        celery_app.send_task(name, args=[incident_id])


def enqueue_stages(incident_ids: Iterable[str], status: IncidentStatus) -> None:
    """`enqueue_stage` for several incidents over one producer (one broker
    connection checked out for all of them): the incidents one ingest commit opened."""
    name = STAGE_TASKS.get(status)
    ids = list(incident_ids)
    if name is None or not ids:
        return
    with celery_app.producer_or_acquire() as producer:
        for incident_id in ids:
            celery_app.send_task(name, args=[incident_id], producer=producer)


def enqueue_notify(name: str, incident_id: str) -> None:
    """Send a notification task (`notify.*`); each has its own retries, so a chat or
    pager outage never holds up a stage."""
    if name not in NOTIFICATIONS:
        raise ValueError(f"unknown notification {name!r}")
    celery_app.send_task(name, args=[incident_id])
