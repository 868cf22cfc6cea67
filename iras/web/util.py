"""Request helpers shared by the blueprints."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, jsonify, request


def error(status: int, reason: str, **extra: Any) -> tuple[Response, int]:
    return jsonify(error=_ERROR_NAMES.get(status, "error"), reason=reason, **extra), status


_ERROR_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    503: "service_unavailable",
}


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")


def json_body() -> tuple[Any, tuple[Response, int] | None]:
    """Parse the body as strict JSON (no NaN/Infinity). Returns (body, error)."""
    if not request.mimetype or not (
        request.mimetype == "application/json" or request.mimetype.endswith("+json")
    ):
        return None, error(415, f"Content-Type must be application/json, got {request.mimetype or 'none'!r}")
    raw = request.get_data(cache=True)
    if not raw:
        return None, error(400, "empty body: a JSON object is required")
    try:
        return json.loads(raw, parse_constant=_reject_constant), None
    except RecursionError:
        return None, error(400, "JSON nested too deeply")
    except (ValueError, UnicodeDecodeError) as exc:
        return None, error(400, f"body is not valid JSON: {str(exc)[:200]}")
