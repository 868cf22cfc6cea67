"""The reads the stage tasks share: the incident row, the alert facts an analyst
sees, a stage's latest result. Core statements built once with bind parameters:
a task needs rows, not ORM objects."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import bindparam, case, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from iras.analysts.base import IncidentFacts
from iras.models import AlertEvent, Incident, StageResult
from iras.schemas import NormalizedAlert, TriageResult
from iras.workflow import IncidentStatus

log = logging.getLogger(__name__)

INCIDENT_ROW = select(Incident.__table__).where(Incident.id == bindparam("id"))

_FIRST_ALERT_ID = (
    select(func.min(AlertEvent.id))
    .where(AlertEvent.incident_id == bindparam("incident_id"))
    .scalar_subquery()
)
# The incident's alerts (at most 50) and, with the first, the request body it came in.
ALERTS = (
    select(
        AlertEvent.alert, case((AlertEvent.id == _FIRST_ALERT_ID, AlertEvent.raw), else_=None).label("raw")
    )
    .where(AlertEvent.incident_id == bindparam("incident_id"))
    .order_by(AlertEvent.id)
    .limit(50)
)
_LATEST_RESULT = (
    select(StageResult.result)
    .where(StageResult.incident_id == bindparam("incident_id"), StageResult.stage == bindparam("stage"))
    .order_by(StageResult.attempt.desc(), StageResult.id.desc())
    .limit(1)
)


def load_incident(conn: Connection | Session, incident_id: str, expected: IncidentStatus) -> Any:
    """The incident as a row of its columns, or None if it is gone or not in
    `expected` (a duplicate delivery, or someone else moved it): the caller returns."""
    row = conn.execute(INCIDENT_ROW, {"id": incident_id}).first()
    if row is None:
        log.info("incident gone", extra={"incident_id": incident_id})
        return None
    if row.status != expected.value:
        log.info(
            "stale delivery ignored",
            extra={"incident_id": incident_id, "expected": expected.value, "status": row.status},
        )
        return None
    return row


def latest_result(db: Session | Connection, incident_id: str, stage: str) -> Any:
    """The result document of the stage's latest attempt, or None."""
    return db.execute(_LATEST_RESULT, {"incident_id": incident_id, "stage": stage}).scalar()


def facts(db: Session | Connection, incident: Any, *, with_triage: bool = True) -> IncidentFacts:
    """The alert facts the analyst sees (`incident`: a row of the incident's columns),
    with triage's result unless the incident is not triaged yet."""
    triage = None
    if with_triage:
        found = latest_result(db, incident.id, "triage")
        triage = TriageResult.model_validate(found) if found is not None else None
    return facts_from(incident, db.execute(ALERTS, {"incident_id": incident.id}).all(), triage)


def facts_from(incident: Any, alert_rows: list[Any], triage: TriageResult | None) -> IncidentFacts:
    """The facts from rows of `ALERTS`' two columns (alert document, request body).
    The incident's payload is the request body kept with its first alert event."""
    alerts = [NormalizedAlert.model_validate({**row[0], "raw": {}}) for row in alert_rows]
    payload = (alert_rows[0][1] if alert_rows else None) or {}
    return IncidentFacts(
        incident_id=incident.id,
        title=incident.title,
        source=incident.source,
        service=incident.service,
        alerts=alerts,
        payload=payload,
        triage=triage,
    )
