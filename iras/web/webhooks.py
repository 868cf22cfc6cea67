"""Alert ingestion: `POST /webhook/alert` (source detected from the payload's
shape) and `POST /webhook/<source>`.

Checks run cheapest first, and nothing is written to the database before the
caller proved its token and passed the rate limit: otherwise an anonymous flood
of garbage would become a flood of dead-letter rows.

    401 token  ->  415 Content-Type  ->  413 size  ->  429 rate limit
        ->  400 malformed (kept in the dead-letter table)  ->  202
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from iras.config import get_settings
from iras.db import new_session
from iras.ingest import PayloadError, detect_source
from iras.ingest.batch import get_writer
from iras.ingest.store import IngestOutcome, prepare
from iras.web import ingest_guard
from iras.web.util import error, json_body

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__)


@bp.record_once
def _warn_if_open(state: Any) -> None:
    # The WSGI server has no IRAS banner: say it in the log once per app (per worker).
    if ingest_guard.ingest_auth_mode() == "open":
        log.warning(ingest_guard.OPEN_WARNING)


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(_exc: RequestEntityTooLarge) -> Any:
    """A chunked body (no Content-Length) that grew past the limit while being read."""
    return ingest_guard.too_large(
        int(current_app.config.get("MAX_CONTENT_LENGTH") or get_settings().max_payload_bytes)
    )


def _dead_letter(source: str | None, reason: str, field: str | None) -> int | None:
    """Keep the rejected body. A failure to store it must not turn the sender's
    400 into a 500 (it would retry a body that can never succeed)."""
    from iras import deadletter

    try:
        with new_session() as session:
            return deadletter.store(
                session,
                source=source,
                error=reason,
                field=field,
                raw=request.get_data(cache=True),
                content_type=request.content_type,
            )
    except Exception:  # noqa: BLE001
        log.exception("could not store a dead letter")
        return None


def _rejected(source: str | None, status_reason: str, field: str | None = None) -> Any:
    dead_letter_id = _dead_letter(source, status_reason, field)
    extra: dict[str, Any] = {"dead_letter_id": dead_letter_id}
    if field is not None:
        extra["field"] = field
    return error(400, status_reason, **extra)


def _ingest(route_source: str | None) -> Any:
    settings = get_settings()
    caller, err = ingest_guard.authenticate(route_source, settings)
    if err:
        return err
    assert caller is not None
    err = ingest_guard.check_size(settings)
    if err:
        return err
    body, err = json_body()
    if err and err[1] != 400:  # 415: a transport problem, not a payload worth keeping
        return err
    # The source names the adapter and the rate-limit bucket: the URL's, else the one
    # the token belongs to, else the payload's shape.
    source = route_source.strip().lower() if route_source else caller.single_source
    detected: str | None = None
    if source is None and err is None and isinstance(body, dict):
        try:
            detected = detect_source(body)
        except PayloadError:
            detected = None
    limited = ingest_guard.check_rate(source or detected, settings)
    if limited:
        return limited
    if err:
        return _rejected(source, err[0].get_json()["reason"])
    if not isinstance(body, dict):
        return _rejected(source, "the body must be a JSON object", "payload")
    if detected is not None and not caller.allows(detected):
        # A token shared by several sources, used for another sender's payload.
        return ingest_guard.unauthorized(f"this token is not valid for a {detected} payload")
    try:
        prepared = prepare(body, source)
    except PayloadError as exc:
        return _rejected(source, exc.message, exc.field)
    # Group commit: answered once this alert's batch is committed (iras.ingest.batch).
    # A database outage raises OperationalError here: the app answers 503.
    outcome = prepared if isinstance(prepared, IngestOutcome) else get_writer().submit(prepared)
    # `alerts_received`: the alerts of this request, not the incident's total (GET /incidents/<id>).
    doc = {"incident_id": outcome.incident_id, "status": outcome.status, "alerts_received": outcome.alerts}
    return jsonify(doc), 202


@bp.post("/webhook/alert")
def webhook_alert() -> Any:
    return _ingest(None)


@bp.post("/webhook/<source>")
def webhook_source(source: str) -> Any:
    return _ingest(source)
