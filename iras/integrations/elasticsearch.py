"""Logs from Elasticsearch or OpenSearch (`POST /<index>/_search`).

One search per fetch: a `bool.filter` (no scoring) on the time range, the
service field and the level field, sorted newest first and capped by `size`, so
a log storm returns the latest lines instead of an arbitrary sample. Field names
default to ECS (`@timestamp`, `service.name`, `log.level`, `message`) and are
configurable; documents may be nested or flat.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from iras.config import Settings
from iras.integrations.base import SourceUnavailable
from iras.integrations.http import RetryPolicy, json_body, new_session, request
from iras.integrations.loki import clip_message, normalize_level
from iras.schemas import LogLine

log = logging.getLogger(__name__)

# Level fields are usually keywords (case-sensitive): list the spellings loggers use.
ERROR_WARN_LEVELS = [
    variant
    for word in ("error", "err", "fatal", "critical", "crit", "panic", "severe", "warn", "warning")
    for variant in (word, word.upper(), word.capitalize())
]


def field_value(source: dict[str, Any], path: str) -> Any:
    """`source["a.b"]` for flat documents, `source["a"]["b"]` for nested ones."""
    if path in source:
        return source[path]
    node: Any = source
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def parse_timestamp(value: Any) -> datetime | None:
    if isinstance(value, int | float):  # epoch_millis
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _iso(moment: datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ElasticsearchLogSource:
    name = "elasticsearch"

    def __init__(self, settings: Settings, *, policy: RetryPolicy | None = None) -> None:
        if not settings.elasticsearch_url:
            raise ValueError("ELASTICSEARCH_URL is not set")
        self.base_url = settings.elasticsearch_url.rstrip("/")
        self.index = settings.elasticsearch_index
        self.api_key = settings.elasticsearch_api_key
        self.ts_field = settings.elasticsearch_timestamp_field
        self.service_field = settings.elasticsearch_service_field
        self.level_field = settings.elasticsearch_level_field
        self.message_field = settings.elasticsearch_message_field
        self.timeout = settings.http_timeout_seconds
        self.max_lines = settings.logs_max_lines
        self.max_chars = settings.logs_max_message_chars
        self.policy = policy or RetryPolicy.from_settings(settings)

    def search_body(self, services: list[str], start: datetime, end: datetime, size: int) -> dict[str, Any]:
        filters: list[dict[str, Any]] = [
            {
                "range": {
                    self.ts_field: {
                        "gte": _iso(start),
                        "lte": _iso(end),
                        "format": "strict_date_optional_time",
                    }
                }
            },
            {"terms": {self.service_field: services}},
        ]
        if self.level_field:
            filters.append({"terms": {self.level_field: ERROR_WARN_LEVELS}})
        return {
            "size": size,
            "track_total_hits": False,
            # unmapped_type: one index of a `logs-*` pattern without the field must not fail the search.
            "sort": [{self.ts_field: {"order": "desc", "unmapped_type": "date"}}],
            "query": {"bool": {"filter": filters}},
            "_source": [self.ts_field, self.service_field, self.level_field, self.message_field],
            "timeout": f"{max(1, int(self.timeout))}s",
        }

    def fetch_logs(
        self, services: list[str], start: datetime, end: datetime, limit: int = 500
    ) -> list[LogLine]:
        if not services:
            return []
        size = max(1, min(limit, self.max_lines))
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"ApiKey {self.api_key}"
        with new_session(headers) as session:
            response = request(
                session,
                "POST",
                f"{self.base_url}/{self.index}/_search",
                source="elasticsearch",
                timeout=self.timeout,
                policy=self.policy,
                # A pattern that matches no index yet (a new day's index) is "no logs", not an error.
                params={"ignore_unavailable": "true", "allow_no_indices": "true"},
                json=self.search_body(services, start, end, size),
            )
            body = json_body(response, "elasticsearch")
        return self._parse(body, services)[::-1]

    def _parse(self, body: Any, services: list[str]) -> list[LogLine]:
        if not isinstance(body, dict) or not isinstance(body.get("hits"), dict):
            raise SourceUnavailable(f"elasticsearch: unexpected answer: {str(body)[:200]}")
        shards = body.get("_shards") or {}
        if body.get("timed_out") or shards.get("failed"):
            log.warning(
                "elasticsearch returned partial results (timed_out=%s, failed shards=%s)",
                body.get("timed_out"),
                shards.get("failed"),
            )
        lines: list[LogLine] = []
        for hit in body["hits"].get("hits") or []:
            source = hit.get("_source") or {}
            at = parse_timestamp(field_value(source, self.ts_field))
            if at is None:
                continue  # a document without a usable timestamp cannot be placed on the timeline
            message = field_value(source, self.message_field)
            if isinstance(message, list):
                message = "\n".join(map(str, message))
            text = str(message or "")
            level = field_value(source, self.level_field) if self.level_field else None
            lines.append(
                LogLine(
                    timestamp=at,
                    service=str(field_value(source, self.service_field) or services[0]),
                    level=normalize_level(str(level) if level is not None else None, text),
                    message=clip_message(text, self.max_chars),
                )
            )
        return lines
