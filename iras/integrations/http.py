"""Shared HTTP plumbing for the real clients: one place that decides what is
transient, how long to wait, and what error the caller sees.

* Every request has a timeout (a hung backend must not hold a worker forever).
* Connection errors, timeouts, 429 and 5xx are retried (tenacity) a bounded number of times
  with jittered exponential backoff; a `Retry-After` (or GitHub's exhausted
  `X-RateLimit-Reset`) replaces the backoff. A wait longer than the policy allows
  is not slept through: the call gives up at once and reports the hint, so a
  Celery task can schedule its own retry instead of blocking a worker.
* Context sources raise `SourceUnavailable` (recorded in the evidence as
  "source unavailable"); notifiers raise `TransientNotifyError` for transient
  failures (Celery retries) and `SourceUnavailable` for permanent ones.
* Messages never carry credentials: user:password in URLs and query strings are
  dropped before a URL is quoted.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
import tenacity

from iras import __version__
from iras.config import Settings, redact_url
from iras.integrations.base import SourceUnavailable, TransientNotifyError

log = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = f"iras/{__version__}"


@dataclass(frozen=True)
class RetryPolicy:
    """How many tries, and how long one may wait between them."""

    attempts: int = 3
    backoff_seconds: float = 0.5
    max_sleep_seconds: float = 8.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RetryPolicy:
        values: dict[str, Any] = {
            "attempts": settings.http_max_attempts,
            "max_sleep_seconds": settings.http_max_backoff_seconds,
        }
        values.update(overrides)
        return cls(**values)

    def backoff(self, attempt: int) -> float:
        """Jittered exponential backoff; jitter spreads retries of many workers apart."""
        base = self.backoff_seconds * (2 ** (attempt - 1))
        return min(self.max_sleep_seconds, base * random.uniform(0.5, 1.0))


def new_session(headers: Mapping[str, str] | None = None) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    if headers:
        session.headers.update(headers)
    return session


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` is either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def rate_limit_wait(response: requests.Response, now: float | None = None) -> float | None:
    """Seconds to wait before this response's rate limit lifts, or None if it is not one.

    GitHub answers an exhausted primary limit with 403 (or 429) and
    `X-RateLimit-Remaining: 0` plus `X-RateLimit-Reset` (epoch seconds); secondary
    limits and most other APIs send `Retry-After`.
    """
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
    if retry_after is not None:
        return retry_after
    if response.headers.get("X-RateLimit-Remaining") == "0":
        reset = response.headers.get("X-RateLimit-Reset")
        current = time.time() if now is None else now
        try:
            return max(0.0, float(reset) - current) if reset else None
        except ValueError:
            return None
    return None


def describe_error(response: requests.Response) -> str:
    """A short, human reason from an error body (JSON APIs differ in where they put it)."""
    text = response.text or ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):  # Elasticsearch: {"error": {"type": ..., "reason": ...}}
            reason = error.get("reason") or error.get("type")
            if reason:
                return str(reason)[:300]
        # GitHub and PagerDuty: "message" (+ PagerDuty "errors"); Prometheus: "error".
        message = body.get("message") or (error if isinstance(error, str) else None)
        if message:
            details = body.get("errors")
            return (f"{message}: {json.dumps(details)}" if details else str(message))[:300]
    return " ".join(text.split())[:300] or response.reason or "no body"


class HTTPStatusError(SourceUnavailable):
    """A permanent (non-retryable) HTTP error answer; `status` lets a client treat
    one bad query differently from an unreachable backend."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _TransientFailure(Exception):
    """One try failed in a way worth retrying; carries what the final error must say."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


def _send_once(
    session: requests.Session, method: str, url: str, where: str, timeout: float, kwargs: dict[str, Any]
) -> requests.Response:
    """One try: the response, a permanent error, or a `_TransientFailure` to retry."""
    try:
        response = session.request(method, url, timeout=timeout, **kwargs)
    except requests.Timeout as exc:
        raise _TransientFailure(f"{where}: timed out after {timeout:g}s ({type(exc).__name__})") from exc
    except requests.ConnectionError as exc:
        raise _TransientFailure(f"{where}: connection failed ({_short(exc)})") from exc
    except requests.RequestException as exc:  # invalid URL, too many redirects: not transient
        raise SourceUnavailable(f"{where}: {type(exc).__name__}: {_short(exc)}") from exc
    if response.status_code < 400:
        return response
    status = response.status_code
    limited = rate_limit_wait(response)
    is_rate_limit = status == 429 or (status == 403 and limited is not None)
    if status not in TRANSIENT_STATUSES and not is_rate_limit:
        raise HTTPStatusError(f"{where}: HTTP {status}: {describe_error(response)}", status)
    reason = describe_error(response)
    response.close()
    if is_rate_limit:
        message = f"{where}: rate limited (HTTP {status}): {reason}"
    else:
        message = f"{where}: HTTP {status}: {reason}"
    raise _TransientFailure(message, status, limited)


def _retrying(policy: RetryPolicy) -> tenacity.Retrying:
    """tenacity does the loop; the policy decides the waits.

    A server's retry hint replaces the jittered backoff, and a hint longer than the
    policy allows stops the loop at once: the caller (a Celery task) schedules its
    own retry instead of blocking a worker.
    """

    def hint(state: tenacity.RetryCallState) -> float | None:
        exc = state.outcome.exception() if state.outcome else None
        return exc.retry_after if isinstance(exc, _TransientFailure) else None

    def wait(state: tenacity.RetryCallState) -> float:
        limited = hint(state)
        return limited if limited is not None else policy.backoff(state.attempt_number)

    def hint_too_long(state: tenacity.RetryCallState) -> bool:
        limited = hint(state)
        return limited is not None and limited > policy.max_sleep_seconds

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        sleep = state.next_action.sleep if state.next_action else 0.0
        log.info("%s; retrying in %.2fs (attempt %d/%d)", exc, sleep, state.attempt_number, policy.attempts)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(_TransientFailure),
        stop=tenacity.stop_after_attempt(policy.attempts) | hint_too_long,
        wait=wait,
        sleep=policy.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


def request(
    session: requests.Session,
    method: str,
    url: str,
    *,
    source: str,
    timeout: float,
    policy: RetryPolicy,
    notifier: bool = False,
    **kwargs: Any,
) -> requests.Response:
    """Send one request with bounded retries (tenacity); return the first non-error response.

    1. Connection errors and timeouts are transient: back off and retry.
    2. 429, 5xx, and a 403 that is a rate limit (GitHub) are transient: wait for
       `Retry-After` / `X-RateLimit-Reset` if that fits in the policy, else give up now.
    3. Any other status >= 400 is permanent: raise at once with the API's reason.
    4. Out of tries: `SourceUnavailable` for a context source, `TransientNotifyError`
       (with the server's retry hint) for a notifier.
    """
    where = f"{source} {method} {redact_url(url)}"
    try:
        return _retrying(policy)(_send_once, session, method, url, where, timeout, kwargs)
    except _TransientFailure as failure:
        message = failure.message
        if failure.retry_after is not None and failure.retry_after > policy.max_sleep_seconds:
            message += f"; the limit lifts in {failure.retry_after:.0f}s, not waiting that long"
        if notifier:
            raise TransientNotifyError(message, retry_after=failure.retry_after) from None
        raise SourceUnavailable(message) from None


def json_body(response: requests.Response, source: str) -> Any:
    """The decoded JSON body; a proxy's HTML error page becomes a clear error, not a crash."""
    try:
        return response.json()
    except ValueError as exc:
        snippet = " ".join((response.text or "").split())[:120]
        raise SourceUnavailable(
            f"{source}: expected JSON from {redact_url(response.url)}, got {snippet!r}"
        ) from exc


def _short(exc: BaseException) -> str:
    # requests' connection errors nest urllib3 reprs several levels deep.
    return " ".join(str(exc).split())[:200]
