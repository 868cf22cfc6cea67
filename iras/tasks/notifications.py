"""Notifications, one Celery task each (`notify.*`): the plan and the decision in
chat, the escalation, the page and its resolution, the post-mortem. Each has its
own retries; a notifier that keeps failing is logged and dropped, never allowed
to hold up the incident."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sqlalchemy import update

from iras.celery_app import celery_app
from iras.config import get_settings
from iras.db import read_session, session_scope
from iras.integrations import chat_notifier, pager
from iras.integrations.base import TransientNotifyError
from iras.models import Incident, PostMortemRecord
from iras.services import serialize_incident
from iras.tasks.base import PipelineTask
from iras.workflow import IncidentStatus

log = logging.getLogger(__name__)
S = IncidentStatus


class IncidentDocument(Mapping[str, Any]):
    """The incident as notifiers read it (`services.serialize_incident`). The incident's
    own columns are read up front; its stages, plan, timeline, alerts and post-mortem
    (several queries and the stage documents to decode) the first time a notifier
    reads one of them, so a notifier that needs only the id never pays for them."""

    def __init__(self, incident_id: str, summary: dict[str, Any]) -> None:
        self.incident_id = incident_id
        self._summary = summary
        self._full: dict[str, Any] | None = None

    def full(self) -> dict[str, Any]:
        if self._full is None:
            with read_session() as session:
                incident = session.get(Incident, self.incident_id)
                doc = serialize_incident(session, incident) if incident is not None else {}
            self._full = {**self._summary, **doc}
        return self._full

    def __getitem__(self, key: str) -> Any:
        if key in self._summary:
            return self._summary[key]
        return self.full()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.full())

    def __len__(self) -> int:
        return len(self.full())


def _incident_doc(incident_id: str) -> IncidentDocument | None:
    with read_session() as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            return None
        summary = serialize_incident(session, incident, full=False)
        # The chat message of this incident, if one was posted: notify.post_plan checks it
        # (a redelivered task must not post the plan twice), post_decision updates it.
        summary["notify_ref"] = incident.notify_ref
        return IncidentDocument(incident_id, summary)


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
    with read_session() as session:
        pm = session.get(PostMortemRecord, incident_id)
        markdown = pm.markdown if pm else None
    doc = _incident_doc(incident_id)
    if doc is not None and markdown:
        _notify(self, lambda: chat_notifier(get_settings()).post_postmortem(doc, markdown))
