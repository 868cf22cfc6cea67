"""Request helpers shared by the blueprints."""

from __future__ import annotations

import json
import math
import re
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


def _finite_float(value: str) -> float:
    # 1e999 parses to inf, which PostgreSQL's jsonb refuses when it is written back
    # out (it was a 500 at the INSERT): refuse it here, with the number, as a 400.
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"number {value[:40]} is out of range")
    return number


_MAYBE_NUL = re.compile(rb"\\u0000")


def _without_nul(node: Any) -> Any:
    if isinstance(node, str):
        return node.replace("\x00", "\ufffd")
    if isinstance(node, dict):
        return {_without_nul(k): _without_nul(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_nul(v) for v in node]
    return node


def loads_strict(raw: bytes) -> Any:
    """JSON as IRAS stores it: no NaN/Infinity (nor numbers that overflow to them),
    and a NUL character (`\\u0000`) replaced by U+FFFD, since neither PostgreSQL's
    text nor its jsonb can hold NUL; the alert is kept rather than refused.
    Raises ValueError, UnicodeDecodeError or RecursionError."""
    body = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    if _MAYBE_NUL.search(raw):
        body = _without_nul(body)
    return body


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
        body = loads_strict(raw)
    except RecursionError:
        return None, error(400, "JSON nested too deeply")
    except (ValueError, UnicodeDecodeError) as exc:
        return None, error(400, f"body is not valid JSON: {str(exc)[:200]}")
    if _MAYBE_SURROGATE.search(raw) and _has_lone_surrogate(body):
        return None, error(
            400, "body contains an unpaired UTF-16 surrogate (\\ud800-\\udfff): not valid Unicode"
        )
    return body, None


# A JSON escape of an unpaired surrogate decodes to a str no UTF-8 encoder accepts:
# it would surface as a 500 from the adapters' fingerprint hash or the INSERT
# (found by the tests/chaos fuzzing). The raw-bytes check keeps the walk off the
# hot path; a valid surrogate pair ("\\ud83d\\ude00") is one code point after
# decoding and passes the walk.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(doc: Any) -> bool:
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if any("\ud800" <= ch <= "\udfff" for ch in node):
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False
