"""What stands in front of `POST /webhook/*`: the per-source secret and the
per-source rate limit.

Order in the webhook (cheapest refusal first, nothing written before the rate
limit passed): token (401) -> Content-Type (415) -> size (413) -> rate limit
(429) -> parse and ingest (400s go to the dead-letter table).

Tokens (`WEBHOOK_TOKENS`): "alertmanager=s1,grafana=s2" gives each sender its
own secret, a bare "s3" is accepted for every source. A request presents it as
`Authorization: Bearer <token>` or `?token=<token>` (for senders that cannot set
headers). With no token configured ingestion is open, and `/health` and the
start-up banner say so.

Rate limit: one token bucket per source (WEBHOOK_RATE_LIMIT_PER_SECOND,
WEBHOOK_RATE_LIMIT_BURST). With a Redis broker the bucket lives in Redis (one
atomic Lua script), so N web worker processes share one limit instead of allowing
N times it; otherwise, and while Redis is unreachable, it is per process.
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from flask import Response, request

from iras.config import Settings, get_settings
from iras.ingest.tokens import ANY_SOURCE, known_sources
from iras.web.util import error

log = logging.getLogger(__name__)

# Rate-limit bucket for requests whose source is not one we know: the URL's
# `<source>` is attacker-chosen, and one bucket per random name would let anyone
# grow the bucket table without bound.
UNKNOWN_SOURCE = "unknown"

ErrorResponse = tuple[Response, int]


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class Caller:
    """Who is posting. `sources` is None when any source is allowed (open
    ingestion, or the token shared by every source)."""

    sources: frozenset[str] | None
    authenticated: bool

    @property
    def single_source(self) -> str | None:
        if self.sources is not None and len(self.sources) == 1:
            return next(iter(self.sources))
        return None

    def allows(self, source: str) -> bool:
        return self.sources is None or source in self.sources


def presented_token() -> str | None:
    """The bearer token, else `?token=`. None when neither is present."""
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    token = request.args.get("token")
    return token or None


def unauthorized(reason: str) -> ErrorResponse:
    response, status = error(401, reason)
    response.headers["WWW-Authenticate"] = 'Bearer realm="iras-webhook"'
    return response, status


def authenticate(
    route_source: str | None, settings: Settings | None = None
) -> tuple[Caller | None, ErrorResponse | None]:
    """Check the presented token against every configured secret (see `check_token`)."""
    settings = settings or get_settings()
    if not settings.webhook_tokens:
        return Caller(sources=None, authenticated=False), None
    caller, reason = check_token(presented_token(), route_source, settings)
    if reason is not None:
        return None, unauthorized(reason)
    return caller, None


def check_token(
    token: str | None, route_source: str | None, settings: Settings
) -> tuple[Caller | None, str | None]:
    """(caller, None) when `token` may post to `route_source`, else (None, the 401 reason).

    Every comparison runs (no early exit) with hmac.compare_digest, so the time
    taken says nothing about which secret, or how much of one, was matched.
    """
    configured = settings.webhook_tokens
    if not configured:
        return Caller(sources=None, authenticated=False), None
    if token is None:
        return None, "missing token: send `Authorization: Bearer <token>` or `?token=<token>`"
    given = token.encode("utf-8", "surrogateescape")
    matched: set[str] = set()
    for source, secret in configured.items():
        if hmac.compare_digest(given, secret.encode("utf-8")):
            matched.add(source)
    if not matched:
        return None, "invalid token"
    if ANY_SOURCE in matched:
        caller = Caller(sources=None, authenticated=True)
    else:
        caller = Caller(sources=frozenset(matched), authenticated=True)
    if route_source is not None and not caller.allows(route_source.strip().lower()):
        return None, f"this token is not valid for source {route_source[:32]!r}"
    return caller, None


def ingest_auth_mode(settings: Settings | None = None) -> str:
    return "token" if (settings or get_settings()).webhook_tokens else "open"


OPEN_WARNING = (
    "webhook ingestion is open: no WEBHOOK_TOKENS configured, anyone who can reach "
    "POST /webhook/* can open incidents"
)


def health_info(settings: Settings | None = None) -> tuple[dict[str, Any], list[str]]:
    """The ingestion part of /health (never the secrets) and its warnings."""
    settings = settings or get_settings()
    mode = ingest_auth_mode(settings)
    info: dict[str, Any] = {
        "ingest_auth": mode,
        "ingest": {
            "auth": mode,
            "token_sources": sorted(settings.webhook_tokens),
            "max_payload_bytes": settings.max_payload_bytes,
            "rate_limit": {
                "per_second": settings.webhook_rate_limit_per_second,
                "burst": settings.webhook_rate_limit_burst,
                "backend": limiter_backend(settings),
            },
        },
    }
    return info, ([OPEN_WARNING] if mode == "open" else [])


def startup_line(settings: Settings | None = None) -> str:
    """One line for the start-up banner."""
    settings = settings or get_settings()
    if not settings.webhook_tokens:
        return f"ingest auth: OPEN ({OPEN_WARNING})"
    return f"ingest auth: token ({', '.join(sorted(settings.webhook_tokens))})"


# --------------------------------------------------------------------------- size


def check_size(settings: Settings | None = None) -> ErrorResponse | None:
    """413 from Content-Length alone, before a byte of the body is read. A chunked
    body has no length: werkzeug stops reading it at MAX_CONTENT_LENGTH and raises
    RequestEntityTooLarge, which the webhook blueprint turns into the same JSON."""
    limit = (settings or get_settings()).max_payload_bytes
    length = request.content_length
    if length is not None and length > limit:
        return too_large(limit)
    return None


def too_large(limit: int) -> ErrorResponse:
    return error(413, f"body larger than the limit of {limit} bytes (MAX_PAYLOAD_BYTES)", limit_bytes=limit)


# --------------------------------------------------------------------------- rate limit


class Limiter(Protocol):
    def acquire(self, key: str, rate: float, burst: int) -> float:
        """Take one token; 0.0 when allowed, else the seconds until one is available."""
        ...


class MemoryLimiter:
    """A token bucket per key in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, key: str, rate: float, burst: int) -> float:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + max(0.0, now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate


# KEYS[1] = bucket; ARGV = rate, burst. The clock is Redis's own (TIME), so web
# processes with skewed clocks still share one bucket correctly. Floats leave Lua
# as strings: a Lua number converted to a Redis reply is truncated to an integer.
_BUCKET_REFILL_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
"""
_TOKEN_BUCKET_LUA = (
    _BUCKET_REFILL_LUA
    + """
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""
)


class RedisLimiter:
    """The same bucket in Redis, shared by every web process.

    A Redis outage must not stop alerts (the broker being down is exactly when the
    webhook still has to answer): on an error it falls back to the per-process
    bucket for `cooldown` seconds instead of trying Redis again on every request.
    """

    prefix = "iras:ratelimit:"

    def __init__(self, url: str, timeout: float = 0.5, cooldown: float = 5.0) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.script = self.client.register_script(_TOKEN_BUCKET_LUA)
        self.fallback = MemoryLimiter()
        self.cooldown = cooldown
        self._down_until = 0.0

    def acquire(self, key: str, rate: float, burst: int) -> float:
        if time.monotonic() < self._down_until:
            return self.fallback.acquire(key, rate, burst)
        try:
            return float(self.script(keys=[self.prefix + key], args=[rate, burst]))
        except Exception as exc:  # noqa: BLE001 - any Redis failure: degrade, never refuse alerts
            self._down_until = time.monotonic() + self.cooldown
            log.warning(
                "rate limiter: Redis unavailable (%s); per-process limit for %.0fs", exc, self.cooldown
            )
            return self.fallback.acquire(key, rate, burst)


def limiter_backend(settings: Settings) -> str:
    if settings.webhook_rate_limit_per_second <= 0:
        return "disabled"
    return "redis" if settings.celery_broker_url.startswith(("redis://", "rediss://")) else "memory"


_limiter_lock = threading.Lock()


def get_limiter(settings: Settings | None = None, app: Any = None) -> Limiter:
    """The app's limiter, kept in `app.extensions`: each app (each test) starts with
    full buckets. Re-created after a fork, so web worker processes never share a Redis
    socket, and when the broker setting changes."""
    if app is None:
        from flask import current_app

        app = current_app
    settings = settings or get_settings()
    backend = limiter_backend(settings)
    ident = (os.getpid(), backend, settings.celery_broker_url)
    held = app.extensions.get("iras_rate_limiter")
    if held is not None and held[0] == ident:
        return held[1]  # type: ignore[no-any-return]
    with _limiter_lock:
        held = app.extensions.get("iras_rate_limiter")
        if held is None or held[0] != ident:
            limiter: Limiter = (
                RedisLimiter(settings.celery_broker_url) if backend == "redis" else MemoryLimiter()
            )
            held = (ident, limiter)
            app.extensions["iras_rate_limiter"] = held
        return held[1]  # type: ignore[no-any-return]


def bucket_for(source: str | None) -> str:
    """The rate-limit key for a source name (bounded set: known sources + "unknown")."""
    name = (source or "").strip().lower()
    return name if name in known_sources() else UNKNOWN_SOURCE


def check_rate(source: str | None, settings: Settings | None = None) -> ErrorResponse | None:
    """None when the request may proceed, else the JSON 429 with Retry-After."""
    settings = settings or get_settings()
    rate = settings.webhook_rate_limit_per_second
    if rate <= 0:
        return None
    bucket = bucket_for(source)
    wait = get_limiter(settings).acquire(bucket, rate, settings.webhook_rate_limit_burst)
    if wait <= 0:
        return None
    retry_after = math.ceil(wait * 1000) / 1000  # rounded up: never tell a sender 0
    response, status = error(
        429,
        f"rate limit for source {bucket!r} exceeded "
        f"({rate:g}/s, burst {settings.webhook_rate_limit_burst}); retry in {retry_after:g}s",
        source=bucket,
        retry_after=retry_after,
    )
    # The header takes whole seconds (RFC 9110); the body keeps the precise value.
    response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return response, status
