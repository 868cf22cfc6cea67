"""A lean WSGI path for the common case of `POST /webhook/*`.

An authenticated, well-formed alert within its size and rate limits is the one
request IRAS must serve thousands of times a second; Flask's request context,
routing, hooks and response objects were ~15% of its CPU. This middleware sits in
front of the Flask app and serves exactly that case itself, with the same checks
in the same order as `iras.web.webhooks` (token -> Content-Type -> size -> JSON
-> rate limit -> normalise -> group commit), the same answers and the same
metrics and log context.

Anything else is handed to Flask unchanged, which then answers exactly as
before: a missing or wrong token, another Content-Type, a chunked or oversized
body, malformed JSON, a payload the adapters reject (400 + dead letter), a
request over the rate limit (429; a refused request takes no token, so Flask's
second look refuses it too). Once the body has been read it is put back for
Flask. This path's rate-limit tokens are taken by the batch writer, for the
whole batch in one call, and only for alerts that are about to be written: a
payload handed to Flask is checked there once.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy.exc import OperationalError

from iras import metrics
from iras.config import get_settings
from iras.ingest import PayloadError, detect_source
from iras.ingest.batch import Quota, RateLimited, get_writer, prepare
from iras.services import IngestOutcome
from iras.web import ingest_guard
from iras.web.util import _MAYBE_SURROGATE, _has_lone_surrogate, has_nul_escape, loads_strict

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_RULE_ALERT = "/webhook/alert"
_RULE_SOURCE = "/webhook/<source>"


class FastWebhook:
    """WSGI middleware: serves the plain success path of `POST /webhook/*`."""

    def __init__(self, flask_app: Any, wsgi_app: WSGIApp) -> None:
        self.flask_app = flask_app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or not path.startswith("/webhook/"):
            return self.wsgi_app(environ, start_response)
        rest = path[9:]
        if not rest or "/" in rest:
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        try:
            answer = self._serve(environ, None if rest == "alert" else rest)
        except Exception:  # noqa: BLE001 - let Flask answer (and log) whatever this path did not expect
            log.exception("webhook fast path failed; handing the request to Flask")
            answer = None
        if answer is None:
            return self.wsgi_app(environ, start_response)
        status, doc = answer
        body = (json.dumps(doc, separators=(",", ":"), sort_keys=True) + "\n").encode()
        start_response(
            _STATUS_LINES[status],
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        _observe(path, rest, status, started)
        return [body]

    def _serve(self, environ: dict[str, Any], route_source: str | None) -> tuple[int, dict[str, Any]] | None:
        """(status, JSON document) when this path answers, None to hand the request to Flask."""
        settings = get_settings()
        # 401: the token, from the header or `?token=`.
        token: str | None = None
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            token = credentials.strip()
        elif environ.get("QUERY_STRING"):
            token = (parse_qs(environ["QUERY_STRING"]).get("token") or [None])[0] or None
        caller, reason = ingest_guard.check_token(token, route_source, settings)
        if reason is not None or caller is None:
            return None
        # 415, 413: only a JSON body of a declared, acceptable length.
        mimetype = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if not (mimetype == "application/json" or mimetype.endswith("+json")):
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        limit = int(self.flask_app.config.get("MAX_CONTENT_LENGTH") or settings.max_payload_bytes)
        if length <= 0 or length > min(limit, settings.max_payload_bytes):
            return None
        raw = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw)  # Flask reads it again if it answers
        if len(raw) != length:
            return None
        # 400s (with their dead letter) are Flask's.
        try:
            body = loads_strict(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        if not isinstance(body, dict) or (_MAYBE_SURROGATE.search(raw) and _has_lone_surrogate(body)):
            return None
        source = route_source.strip().lower() if route_source else caller.single_source
        detected: str | None = None
        if source is None:
            try:
                detected = detect_source(body)
            except PayloadError:
                return None
            if not caller.allows(detected):
                return None
        # The rate-limit token is taken by the writer, one Redis call per batch; a
        # request left without one is Flask's to refuse (429: a refusal takes no token).
        quota: Quota | None = None
        rate = settings.webhook_rate_limit_per_second
        if rate > 0:
            limiter = ingest_guard.get_limiter(settings, self.flask_app)
            bucket = ingest_guard.bucket_for(source or detected)
            quota = Quota(limiter, bucket, rate, settings.webhook_rate_limit_burst)
        try:
            try:
                text: str | None = raw.decode("utf-8")
            except UnicodeDecodeError:  # json.loads also reads UTF-16/32 bodies
                text = None
            if text is not None and (text.startswith("\ufeff") or has_nul_escape(raw)):
                text = None  # a BOM is not JSON text for PostgreSQL; a NUL was replaced in `body`
            prepared = prepare(body, source or detected, text)  # detected once
        except PayloadError:
            return None  # Flask checks the rate, then answers 400 and keeps the dead letter
        token_ctx = metrics._log_context.set(
            {
                "stage": "web",
                "endpoint": "webhooks.webhook_alert" if route_source is None else "webhooks.webhook_source",
            }
        )
        try:
            if isinstance(prepared, IngestOutcome):  # nothing to write, but still rate-limited
                if quota is not None and quota.limiter.acquire(quota.bucket, quota.rate, quota.burst) > 0:
                    return None
                outcome = prepared
            else:
                outcome = get_writer().submit(prepared, quota)
        except RateLimited:
            return None
        except OperationalError as exc:
            log.error("database unavailable: %s", exc)
            return 503, {"error": "service_unavailable", "reason": "database unavailable, retry later"}
        except Exception:  # noqa: BLE001 - as the app's handler: logged, JSON 500
            log.exception("unhandled error")
            return 500, {"error": "internal_error", "reason": "unexpected error; it has been logged"}
        finally:
            metrics._log_context.reset(token_ctx)
        return 202, {
            "incident_id": outcome.incident_id,
            "status": outcome.status,
            "alerts_received": outcome.alerts,
        }


_STATUS_LINES = {
    202: "202 ACCEPTED",
    500: "500 INTERNAL SERVER ERROR",
    503: "503 SERVICE UNAVAILABLE",
}


# (source label, status) -> the three series a request updates (the label decides
# the route: "auto" is /webhook/alert). Bounded: the label is a known source, "auto"
# or "other", and this path answers three statuses. `labels()` validates and locks
# on every call.
_SERIES: dict[tuple[str, int], tuple[Any, Any, Any]] = {}


def _series(path: str, rest: str, status: int) -> tuple[Any, Any, Any]:
    source = metrics._webhook_source(path)
    key = (source, status)
    found = _SERIES.get(key)
    if found is None:
        rule = _RULE_ALERT if rest == "alert" else _RULE_SOURCE
        code = str(status)
        found = (
            metrics.HTTP_REQUESTS.labels(rule, "POST", code),
            metrics.HTTP_DURATION.labels(rule),
            metrics.WEBHOOK_REQUESTS.labels(source, code),
        )
        _SERIES[key] = found
    return found


def _observe(path: str, rest: str, status: int, started: float) -> None:
    """The metrics Flask's hooks record for a webhook request (iras.metrics.init_app)."""
    try:
        requests, duration, webhooks = _series(path, rest, status)
        requests.inc()
        duration.observe(time.perf_counter() - started)
        webhooks.inc()
    except Exception:  # noqa: BLE001 - metrics never fail a request
        log.debug("webhook metrics failed", exc_info=True)
