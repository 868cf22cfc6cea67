"""`GET /health`: the database and the broker, each checked with a short timeout.
503 names the failing part."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from sqlalchemy import text

from iras import __version__
from iras.config import get_settings
from iras.db import get_engine

bp = Blueprint("health", __name__)


def _check_db() -> str | None:
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def _check_broker() -> str | None:
    settings = get_settings()
    if settings.embedded_broker:
        return None
    try:
        from iras.celery_app import celery_app

        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


@bp.get("/health")
def health() -> Any:
    from iras.integrations import active_clients, evidence_status

    settings = get_settings()
    db_error, broker_error = _check_db(), _check_broker()
    checks = {
        "database": {
            "ok": db_error is None,
            "error": db_error,
            "kind": "sqlite" if settings.is_sqlite else "postgresql",
        },
        "broker": {
            "ok": broker_error is None,
            "error": broker_error,
            "kind": "embedded" if settings.embedded_broker else "redis",
        },
    }
    doc: dict[str, Any] = {
        "status": "ok" if not (db_error or broker_error) else "unavailable",
        "version": __version__,
        "checks": checks,
        "analyst": "claude" if settings.use_claude else "offline",
        "executor": settings.remediation_executor,
        "integrations": active_clients(settings),
        "evidence": evidence_status(settings),
    }
    if settings.mock_evidence:
        doc["warnings"] = [
            "MOCK EVIDENCE MODE (IRAS_MOCK_EVIDENCE=true): logs, metrics and deployments without a "
            "configured source are canned test/demo data, not your systems; diagnoses are not real"
        ]
    elif doc["evidence"]["not_configured"]:
        missing = doc["evidence"]["not_configured"]
        doc["warnings"] = [
            f"evidence source not configured: {kind} (set {' or '.join(names)}); diagnoses see only the alert"
            for kind, names in missing.items()
        ]
    from iras.web.ingest_guard import health_info

    ingest, warnings = health_info(settings)  # open ingestion is a warning, not a failure
    doc.update(ingest)
    if warnings:
        doc.setdefault("warnings", []).extend(warnings)
    from flask import current_app

    auth_on = bool(current_app.config.get("AUTH_ENABLED", settings.auth_enabled))
    doc["auth"] = {"enabled": auth_on}
    if not auth_on:
        doc.setdefault("warnings", []).append(
            "authentication is OFF (AUTH_ENABLED=false): anyone who can reach IRAS can read incidents "
            "and approve plans; production sets AUTH_ENABLED=true"
        )
    failing = [name for name, c in checks.items() if not c["ok"]]
    if failing:
        doc["failing"] = failing
        return jsonify(doc), 503
    return jsonify(doc), 200
