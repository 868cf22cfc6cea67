"""Generic JSON: any object with a `title` and an RFC 3339 `timestamp`.

Cron health checks, SLO burn checkers, lag exporters... each sends its own
fields. The few with a meaning (service, severity, status, labels, fingerprint)
are mapped; every other top-level field is passed through as an annotation so
the triage reads it, and the body is kept whole in `raw`.
"""

from __future__ import annotations

from typing import Any

from iras.ingest.common import (
    MAX_ANNOTATION,
    PayloadError,
    as_text,
    build_alert,
    clip,
    optional_str,
    parse_time,
    service_from_labels,
    stable_fingerprint,
    str_map,
    unique_links,
    url_annotations,
)
from iras.schemas import NormalizedAlert

SOURCE = "generic"

_RESOLVED = {"resolved", "ok", "recovered", "closed", "cleared", "inactive", "normal", "success"}
# Fields mapped to NormalizedAlert attributes; everything else becomes an annotation.
_MAPPED = frozenset(
    {
        "title",
        "timestamp",
        "status",
        "state",
        "severity",
        "priority",
        "service",
        "description",
        "message",
        "labels",
        "annotations",
        "links",
        "fingerprint",
        "dedup_key",
        "group_key",
    }
)


def shape_missing(payload: dict[str, Any]) -> list[str]:
    """Signature fields absent from `payload` ([] means a generic alert)."""
    return [key for key in ("title", "timestamp") if key not in payload]


def _status(payload: dict[str, Any]) -> str:
    """`status` (or `state`): resolved/ok/recovered/closed... resolve; anything else fires."""
    field = "status" if "status" in payload else "state"
    value = optional_str(payload.get(field), field)
    return "resolved" if value and value.lower() in _RESOLVED else "firing"


def _key(payload: dict[str, Any], field: str) -> str | None:
    value = payload.get(field)
    if value is None or isinstance(value, bool):
        return None
    if not isinstance(value, str | int):
        raise PayloadError(field, "must be a string")
    return str(value).strip() or None


def normalize(payload: dict[str, Any]) -> list[NormalizedAlert]:
    """A generic alert -> one NormalizedAlert; fingerprint is the sender's, else source+service+title."""
    title = payload.get("title")
    if not isinstance(title, str) or not title.strip():
        raise PayloadError("title", "required, a non-empty string")
    if "timestamp" not in payload:
        raise PayloadError("timestamp", "required, an RFC 3339 string")
    timestamp = parse_time(payload["timestamp"], "timestamp")
    labels = str_map(payload.get("labels"), "labels")
    service = optional_str(payload.get("service"), "service") or service_from_labels(labels)

    annotations = str_map(payload.get("annotations"), "annotations", limit=MAX_ANNOTATION)
    for key, value in payload.items():
        if key not in _MAPPED and value not in (None, "", [], {}):
            annotations.setdefault(key, clip(as_text(value), MAX_ANNOTATION))

    links_field = payload.get("links")
    if links_field is not None and not isinstance(links_field, list):
        raise PayloadError("links", "must be a list of URLs")
    links = unique_links(
        [
            *(links_field or []),
            *(v for k, v in payload.items() if k not in _MAPPED),
            *url_annotations(annotations),
        ]
    )
    severity = optional_str(payload.get("severity"), "severity") or optional_str(
        payload.get("priority"), "priority"
    )
    description = optional_str(payload.get("description"), "description") or optional_str(
        payload.get("message"), "message"
    )
    fingerprint = _key(payload, "fingerprint") or _key(payload, "dedup_key")
    return [
        build_alert(
            "",
            source=SOURCE,
            title=title,
            timestamp=timestamp,
            status=_status(payload),
            severity_hint=severity,
            service=service,
            description=description,
            labels=labels,
            annotations=annotations,
            links=links,
            fingerprint=fingerprint or stable_fingerprint(SOURCE, service, title.strip()),
            group_key=_key(payload, "group_key"),
            raw=payload,
        )
    ]
