"""Shared HTTP plumbing for the real clients: one place that decides what is
transient, how long to wait, and what error the caller sees.

* Every request has a timeout (a hung backend must not hold a worker forever).
* Connection errors, timeouts, 429 and 5xx are retried a bounded number of times
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


class _Failure:
    """The last failure seen, kept to build the final error message."""

    def __init__(self) -> None:
        self.message = ""
        self.retry_after: float | None = None
        self.status: int | None = None


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
    """Send one request with bounded retries; return the first non-error response.

    1. Connection errors and timeouts are transient: back off and retry.
    2. 429, 5xx, and a 403 that is a rate limit (GitHub) are transient: wait for
       `Retry-After` / `X-RateLimit-Reset` if that fits in the policy, else give up now.
    3. Any other status >= 400 is permanent: raise at once with the API's reason.
    4. Out of tries: `SourceUnavailable` for a context source, `TransientNotifyError`
       (with the server's retry hint) for a notifier.
    """
    where = f"{source} {method} {redact_url(url)}"
    failure = _Failure()
    for attempt in range(1, policy.attempts + 1):
        wait: float | None
        try:
            response = session.request(method, url, timeout=timeout, **kwargs)
        except requests.Timeout as exc:
            failure.message = f"{where}: timed out after {timeout:g}s ({type(exc).__name__})"
            failure.status, wait = None, policy.backoff(attempt)
        except requests.ConnectionError as exc:
            failure.message = f"{where}: connection failed ({_short(exc)})"
            failure.status, wait = None, policy.backoff(attempt)
        except requests.RequestException as exc:  # invalid URL, too many redirects: not transient
            raise SourceUnavailable(f"{where}: {type(exc).__name__}: {_short(exc)}") from exc
        else:
            if response.status_code < 400:
                return response
            status = response.status_code
            limited = rate_limit_wait(response)
            is_rate_limit = status == 429 or (status == 403 and limited is not None)
            if status not in TRANSIENT_STATUSES and not is_rate_limit:
                raise HTTPStatusError(f"{where}: HTTP {status}: {describe_error(response)}", status)
            reason = describe_error(response)
            if is_rate_limit:
                failure.message = f"{where}: rate limited (HTTP {status}): {reason}"
                if limited is not None and limited > policy.max_sleep_seconds:
                    failure.message += f"; the limit lifts in {limited:.0f}s, not waiting that long"
            else:
                failure.message = f"{where}: HTTP {status}: {reason}"
            failure.status = status
            failure.retry_after = limited
            wait = limited if limited is not None else policy.backoff(attempt)
            response.close()
        if attempt == policy.attempts or wait > policy.max_sleep_seconds:
            break
        log.info("%s; retrying in %.2fs (attempt %d/%d)", failure.message, wait, attempt, policy.attempts)
        policy.sleep(wait)
    if notifier:
        raise TransientNotifyError(failure.message, retry_after=failure.retry_after)
    raise SourceUnavailable(failure.message)


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
