"""Alert ingestion: `POST /webhook/alert` (source detected from the payload's
shape) and `POST /webhook/<source>`."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from iras.db import new_session
from iras.ingest import PayloadError
from iras.services import ingest_payload
from iras.web.util import error, json_body

bp = Blueprint("webhooks", __name__)


def _ingest(source: str | None) -> Any:
    body, err = json_body()
    if err:
        return err
    if not isinstance(body, dict):
        return error(400, "the body must be a JSON object")
    with new_session() as session:
        try:
            outcome = ingest_payload(session, body, source)
        except PayloadError as exc:
            return error(400, exc.message, field=exc.field)
    doc = {"incident_id": outcome.incident_id, "status": outcome.status, "alerts": outcome.alerts}
    return jsonify(doc), 202


@bp.post("/webhook/alert")
def webhook_alert() -> Any:
    return _ingest(None)


@bp.post("/webhook/<source>")
def webhook_source(source: str) -> Any:
    return _ingest(source)
