"""The incident API: list, read, approve, reject."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, g, jsonify, request
from sqlalchemy import select

from iras.auth import auth_enabled, require_role
from iras.db import read_session
from iras.models import Incident
from iras.schemas import Severity
from iras.services import DecisionError, decide, decision_session, serialize_incident
from iras.web.util import error, json_body
from iras.workflow import IncidentStatus

bp = Blueprint("api", __name__)

MAX_LIMIT = 500


def _valid_id(incident_id: str) -> bool:
    try:
        uuid.UUID(incident_id)
    except ValueError:
        return False
    return True


@bp.get("/incidents")
@require_role("viewer")
def list_incidents() -> Any:
    query = select(Incident).order_by(Incident.created_at.desc(), Incident.id.desc())
    status = request.args.get("status")
    if status:
        wanted = [s.strip() for s in status.split(",") if s.strip()]
        bad = [s for s in wanted if s not in IncidentStatus.__members__.values()]
        if bad:
            return error(
                400, f"unknown status {bad[0]!r}; one of {', '.join(s.value for s in IncidentStatus)}"
            )
        query = query.where(Incident.status.in_(wanted))
    severity = request.args.get("severity")
    if severity:
        if severity not in Severity.__members__:
            return error(400, f"unknown severity {severity!r}; one of P0, P1, P2, P3")
        query = query.where(Incident.severity == severity)
    service = request.args.get("service")
    if service:
        query = query.where(Incident.service == service)
    try:
        limit = int(request.args.get("limit", "50"))
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError
    except ValueError:
        return error(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
    with read_session() as session:
        rows = list(session.scalars(query.limit(limit)))
        return jsonify(incidents=[serialize_incident(session, r, full=False) for r in rows], count=len(rows))


@bp.get("/incidents/<incident_id>")
@require_role("viewer")
def get_incident(incident_id: str) -> Any:
    if not _valid_id(incident_id):
        return error(404, f"incident {incident_id[:64]!r} not found")
    with read_session() as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            return error(404, f"incident {incident_id} not found")
        return jsonify(serialize_incident(session, incident))


def _decision(incident_id: str, approve: bool) -> Any:
    if not _valid_id(incident_id):
        return error(404, f"incident {incident_id[:64]!r} not found")
    body, err = json_body()
    if err:
        return err
    if not isinstance(body, dict):
        return error(400, "the body must be a JSON object with 'by' and optional 'reason', 'plan_id'")
    by = body.get("by")
    if auth_enabled():
        # The token says who decides; a 'by' in the body cannot speak for someone else.
        by = g.principal.name
    elif not isinstance(by, str) or not by.strip() or len(by) > 255:
        return error(
            400, "'by' is required: who decides (a non-empty string up to 255 characters)", field="by"
        )
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 4000):
        return error(400, "'reason' must be a string up to 4000 characters", field="reason")
    if not approve and not (reason and reason.strip()):
        return error(400, "'reason' is required to reject a plan", field="reason")
    plan_id = body.get("plan_id")
    if plan_id is not None and (
        not isinstance(plan_id, int) or isinstance(plan_id, bool) or not 0 < plan_id < 2**63
    ):
        return error(
            400,
            "'plan_id' must be a positive integer (the plan id from GET /incidents/<id>)",
            field="plan_id",
        )
    with decision_session() as session:
        try:
            decision = decide(
                session,
                incident_id,
                approve=approve,
                actor=by.strip(),
                via="api",
                reason=reason,
                plan_id=plan_id,
            )
        except DecisionError as exc:
            return error(exc.status_code, exc.message)
        return jsonify(id=decision.id, status=decision.status, decided_by=decision.decided_by)


@bp.post("/incidents/<incident_id>/approve")
@require_role("approver")
def approve(incident_id: str) -> Any:
    return _decision(incident_id, True)


@bp.post("/incidents/<incident_id>/reject")
@require_role("approver")
def reject(incident_id: str) -> Any:
    return _decision(incident_id, False)
