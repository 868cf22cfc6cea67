"""Notifications, one Celery task each (`notify.*`): the plan and the decision in
chat, the escalation, the page and its resolution, the post-mortem. Each has its
own retries; a notifier that keeps failing is logged and dropped, never allowed
to hold up the incident."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import update

from iras.celery_app import celery_app
from iras.config import get_settings
from iras.db import new_session, session_scope
from iras.integrations import chat_notifier, pager
from iras.integrations.base import TransientNotifyError
from iras.models import Incident, PostMortemRecord
from iras.services import serialize_incident
from iras.tasks.base import PipelineTask
from iras.workflow import IncidentStatus

log = logging.getLogger(__name__)
S = IncidentStatus


def _incident_doc(incident_id: str) -> dict[str, Any] | None:
    with new_session() as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            return None
        doc = serialize_incident(session, incident)
        # The chat message of this incident, if one was posted: notify.post_plan checks it
        # (a redelivered task must not post the plan twice), post_decision updates it.
        doc["notify_ref"] = incident.notify_ref
        return doc


class NotifyTask(PipelineTask):
    abstract = True
    max_retries = 5


def _notify(task: PipelineTask, fn: Callable[[], Any]) -> None:
    try:
        fn()
    except TransientNotifyError as exc:
        if task.request.retries >= task.max_retries:
            log.error("notification dropped after retries", extra={"task": task.name, "error": str(exc)})
            return
        task.retry_later(exc, exc.retry_after)
    except Exception as exc:  # noqa: BLE001 - a notifier must never break the pipeline
        log.error("notification failed", extra={"task": task.name, "error": str(exc)})


@celery_app.task(name="notify.post_plan", bind=True, base=NotifyTask)
def notify_post_plan(self: PipelineTask, incident_id: str) -> None:
    doc = _incident_doc(incident_id)
    if doc is None or doc["status"] != S.AWAITING_APPROVAL.value or doc.get("notify_ref"):
        return

    def send() -> None:
        ref = chat_notifier(get_settings()).post_plan(doc)
        if ref:
            with session_scope() as session:
                session.execute(update(Incident).where(Incident.id == incident_id).values(notify_ref=ref))

    _notify(self, send)


@celery_app.task(name="notify.post_decision", bind=True, base=NotifyTask)
def notify_post_decision(self: PipelineTask, incident_id: str) -> None:
    doc = _incident_doc(incident_id)
    if doc is None:
        return
    _notify(self, lambda: chat_notifier(get_settings()).post_decision(doc, doc["notify_ref"]))


@celery_app.task(name="notify.post_escalation", bind=True, base=NotifyTask)
def notify_post_escalation(self: PipelineTask, incident_id: str) -> None:
    doc = _incident_doc(incident_id)
    if doc is not None:
        _notify(self, lambda: chat_notifier(get_settings()).post_escalation(doc))


@celery_app.task(name="notify.page", bind=True, base=NotifyTask)
def notify_page(self: PipelineTask, incident_id: str) -> None:
    doc = _incident_doc(incident_id)
    if doc is not None:
        _notify(self, lambda: pager(get_settings()).trigger(doc))


@celery_app.task(name="notify.resolve_page", bind=True, base=NotifyTask)
def notify_resolve_page(self: PipelineTask, incident_id: str) -> None:
    _notify(self, lambda: pager(get_settings()).resolve(incident_id))


@celery_app.task(name="notify.post_postmortem", bind=True, base=NotifyTask)
def notify_post_postmortem(self: PipelineTask, incident_id: str) -> None:
    with new_session() as session:
        pm = session.get(PostMortemRecord, incident_id)
        markdown = pm.markdown if pm else None
    doc = _incident_doc(incident_id)
    if doc is not None and markdown:
        _notify(self, lambda: chat_notifier(get_settings()).post_postmortem(doc, markdown))
