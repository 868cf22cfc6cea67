"""Post-mortems, queryable: `GET /postmortems` (filters: severity, outcome,
since/until on the time the post-mortem was written) and
`GET /incidents/<id>/postmortem.md` (the Markdown, as a download)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select

from iras.auth import require_role
from iras.db import new_session
from iras.models import Incident, PostMortemRecord
from iras.schemas import Severity
from iras.web.util import error

bp = Blueprint("postmortems", __name__)

OUTCOMES = ("resolved", "no_action", "escalated", "auto_resolved")
MAX_LIMIT = 500


def parse_instant(value: str) -> datetime:
    """An ISO 8601 date or date-time; naive values are UTC (the console shows UTC).
    Returned in UTC: an instant whose UTC form falls outside years 1-9999
    (`9999-12-31T23:59:59-14:00`) raises ValueError here, not OverflowError later."""
    text = value.strip()
    if len(text) == 10:
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    try:
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError(f"{text[:40]} is outside the years 1-9999 in UTC") from None


def _instant_arg(name: str) -> tuple[datetime | None, Any]:
    raw = request.args.get(name)
    if not raw:
        return None, None
    try:
        return parse_instant(raw), None
    except ValueError:
        return None, error(
            400, f"{name!r} must be an ISO 8601 date or date-time (e.g. 2026-11-25 or 2026-11-25T10:00:00Z)"
        )


@bp.get("/postmortems")
@require_role("viewer")
def list_postmortems() -> Any:
    query = (
        select(PostMortemRecord, Incident.title, Incident.service, Incident.created_at)
        .join(Incident, Incident.id == PostMortemRecord.incident_id)
        .order_by(PostMortemRecord.created_at.desc(), PostMortemRecord.incident_id)
    )
    severity = request.args.get("severity")
    if severity:
        wanted = [s.strip() for s in severity.split(",") if s.strip()]
        bad = [s for s in wanted if s not in Severity.__members__]
        if bad:
            return error(400, f"unknown severity {bad[0]!r}; one of P0, P1, P2, P3")
        query = query.where(PostMortemRecord.severity.in_(wanted))
    outcome = request.args.get("outcome")
    if outcome:
        wanted = [s.strip() for s in outcome.split(",") if s.strip()]
        bad = [s for s in wanted if s not in OUTCOMES]
        if bad:
            return error(400, f"unknown outcome {bad[0]!r}; one of {', '.join(OUTCOMES)}")
        query = query.where(PostMortemRecord.outcome.in_(wanted))
    since, err = _instant_arg("since")
    if err:
        return err
    until, err = _instant_arg("until")
    if err:
        return err
    if since and until and since > until:
        return error(400, "'since' is after 'until'")
    if since:
        query = query.where(PostMortemRecord.created_at >= since)
    if until:
        query = query.where(PostMortemRecord.created_at < until)
    service = request.args.get("service")
    if service:
        query = query.where(Incident.service == service)
    try:
        limit = int(request.args.get("limit", "100"))
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError
    except ValueError:
        return error(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
    with new_session() as session:
        rows = session.execute(query.limit(limit)).all()
        items = [
            {
                "incident_id": pm.incident_id,
                "title": title,
                "service": service_name,
                "severity": pm.severity,
                "outcome": pm.outcome,
                "analyst": pm.analyst,
                "summary": pm.data.get("summary"),
                "root_cause": pm.data.get("root_cause"),
                "action_items": pm.data.get("action_items", []),
                "incident_created_at": created.isoformat(),
                "written_at": pm.created_at.isoformat(),
                "markdown_url": f"/incidents/{pm.incident_id}/postmortem.md",
                "console_url": f"/ui/incidents/{pm.incident_id}",
            }
            for pm, title, service_name, created in rows
        ]
    return jsonify(postmortems=items, count=len(items))


@bp.get("/incidents/<incident_id>/postmortem.md")
@require_role("viewer")
def postmortem_markdown(incident_id: str) -> Any:
    try:
        uuid.UUID(incident_id)
    except ValueError:
        return error(404, f"incident {incident_id[:64]!r} not found")
    with new_session() as session:
        pm = session.get(PostMortemRecord, incident_id)
        if pm is None:
            exists = session.get(Incident, incident_id) is not None
            reason = (
                "no post-mortem yet: it is written when the incident closes"
                if exists
                else "incident not found"
            )
            return error(404, f"{reason} ({incident_id})")
        markdown = pm.markdown
    response = Response(markdown, mimetype="text/markdown")
    response.headers["Content-Disposition"] = f'attachment; filename="postmortem-{incident_id}.md"'
    # Served as a download, never rendered by the browser as a page from our origin.
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
