"""Logs from Grafana Loki (`GET /loki/api/v1/query_range`).

One LogQL query per fetch: a stream selector on the service label (`=` for one
service, `=~` for several) and, unless disabled, an error/warn line filter, read
backwards from the window's end so the `limit` newest lines are kept when a log
storm exceeds it. The level comes from a stream label when Loki has one
(`level`, `detected_level`), else from the line itself.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from iras.config import Settings
from iras.integrations.base import SourceUnavailable
from iras.integrations.http import RetryPolicy, json_body, new_session, request
from iras.schemas import LogLine

log = logging.getLogger(__name__)

# The first level word of a line: "2025-06-01 ERROR ...", "[warn] ...", `"level":"error"`, "level=info".
_LEVEL_IN_LINE = re.compile(
    r"\b(FATAL|PANIC|CRIT(?:ICAL)?|EMERG(?:ENCY)?|ERROR|ERR|SEVERE|WARN(?:ING)?|INFO|DEBUG|TRACE)\b",
    re.IGNORECASE,
)
_LEVELS = {
    "fatal": "ERROR",
    "panic": "ERROR",
    "crit": "ERROR",
    "critical": "ERROR",
    "emerg": "ERROR",
    "emergency": "ERROR",
    "error": "ERROR",
    "err": "ERROR",
    "severe": "ERROR",
    "warn": "WARN",
    "warning": "WARN",
    "info": "INFO",
    "debug": "DEBUG",
    "trace": "DEBUG",
}
LEVEL_LABELS = ("level", "detected_level", "severity", "lvl")


def normalize_level(value: str | None, line: str = "") -> str:
    """ERROR / WARN / INFO / DEBUG from a level field, or from the line's first level word."""
    if value and value.strip().lower() in _LEVELS:
        return _LEVELS[value.strip().lower()]
    match = _LEVEL_IN_LINE.search(line[:300])
    return _LEVELS[match.group(1).lower()] if match else "INFO"


def clip_message(message: str, max_chars: int) -> str:
    """Keep a huge stack trace from crowding out every other line of evidence."""
    if len(message) <= max_chars:
        return message
    return message[:max_chars] + f"… [{len(message) - max_chars} more characters]"


def logql_string(value: str) -> str:
    """A double-quoted LogQL string literal for `value` (Go escaping)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def logql_query(label: str, services: list[str], line_filter: str) -> str:
    if len(services) == 1:
        selector = f"{{{label}={logql_string(services[0])}}}"
    else:
        # RE2 accepts Python's escaping of punctuation; the regex is anchored by Loki.
        selector = f"{{{label}=~{logql_string('|'.join(re.escape(s) for s in services))}}}"
    return f"{selector} |~ {logql_string(line_filter)}" if line_filter else selector


def _ns(moment: datetime) -> int:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


class LokiLogSource:
    name = "loki"

    def __init__(self, settings: Settings, *, policy: RetryPolicy | None = None) -> None:
        if not settings.loki_url:
            raise ValueError("LOKI_URL is not set")
        self.base_url = settings.loki_url.rstrip("/")
        self.timeout = settings.http_timeout_seconds
        self.label = settings.loki_service_label
        self.line_filter = settings.log_line_filter
        self.max_lines = settings.logs_max_lines
        self.max_chars = settings.logs_max_message_chars
        self.tenant = settings.loki_tenant_id
        self.policy = policy or RetryPolicy.from_settings(settings)

    def fetch_logs(
        self, services: list[str], start: datetime, end: datetime, limit: int = 500
    ) -> list[LogLine]:
        if not services:
            return []
        limit = max(1, min(limit, self.max_lines))
        query = logql_query(self.label, services, self.line_filter)
        headers = {"X-Scope-OrgID": self.tenant} if self.tenant else {}
        with new_session(headers) as session:
            response = request(
                session,
                "GET",
                f"{self.base_url}/loki/api/v1/query_range",
                source="loki",
                timeout=self.timeout,
                policy=self.policy,
                params={
                    "query": query,
                    "start": str(_ns(start)),
                    "end": str(_ns(end) + 1),  # Loki's end is exclusive; the window's is not
                    "limit": str(limit),
                    "direction": "backward",
                },
            )
            body = json_body(response, "loki")
        newest = self._parse(body, services)[:limit]
        return newest[::-1]

    def _parse(self, body: Any, services: list[str]) -> list[LogLine]:
        if not isinstance(body, dict) or body.get("status") != "success":
            raise SourceUnavailable(f"loki: query failed: {str(body)[:200]}")
        data = body.get("data") or {}
        if data.get("resultType") != "streams":
            raise SourceUnavailable(f"loki: expected streams, got {data.get('resultType')!r}")
        lines: list[LogLine] = []
        for stream in data.get("result") or []:
            labels: dict[str, str] = stream.get("stream") or {}
            service = labels.get(self.label) or (services[0] if len(services) == 1 else "unknown")
            label_level = next((labels[k] for k in LEVEL_LABELS if labels.get(k)), None)
            for entry in stream.get("values") or []:
                ns, text = int(entry[0]), str(entry[1])
                seconds, nanos = divmod(ns, 1_000_000_000)
                lines.append(
                    LogLine(
                        timestamp=datetime.fromtimestamp(seconds, UTC).replace(microsecond=nanos // 1000),
                        service=service,
                        level=normalize_level(label_level, text),
                        message=clip_message(text.rstrip("\n"), self.max_chars),
                    )
                )
        lines.sort(key=lambda line: line.timestamp, reverse=True)  # newest first, as requested
        return lines
