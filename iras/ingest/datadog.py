"""Datadog webhook, as users template it from the documented variables.

Datadog POSTs whatever JSON the user wrote around `$ALERT_ID`, `$ALERT_TRANSITION`,
`$ALERT_SCOPE`, `$TAGS`, `$DATE`, `$LINK`... Every value arrives as a rendered
string (`date` is epoch milliseconds). Keys are matched case-insensitively
because templates spell them `alert_id` or `ALERT_ID`. The monitor id plus the
group it fired for (`$ALERT_SCOPE`) is the incident key: a multi-alert monitor
firing for two hosts is two incidents, its recovery for one host closes one.
"""

from __future__ import annotations

import re
from typing import Any

from iras.ingest.common import (
    MAX_ANNOTATION,
    PayloadError,
    as_text,
    build_alert,
    clip,
    optional_str,
    parse_time,
    stable_fingerprint,
    unique_links,
)
from iras.schemas import NormalizedAlert

SOURCE = "datadog"

# Keys of the common template besides alert_id; one of them with alert_id marks Datadog.
_TEMPLATE_KEYS = frozenset(
    {
        "event_type",
        "alert_type",
        "alert_status",
        "alert_title",
        "alert_scope",
        "alert_query",
        "alert_metric",
        "alert_priority",
        "alert_cycle_key",
        "aggreg_key",
        "last_updated",
    }
)
# Fields mapped to NormalizedAlert attributes; the rest become annotations.
_MAPPED = frozenset({"title", "alert_title", "event_title", "body", "event_msg", "tags", "link", "date"})
# "[Triggered on {host:a}] ", "[P1] ", "[Recovered] " prefixes Datadog puts on event titles.
_TITLE_PREFIX = re.compile(
    r"^(?:\s*\[(?:P\d|(?:Re-)?(?:Triggered|Warn(?:ing)?|No Data|Renotify)|(?:Warn(?:ing)? |Alert |No Data )?Recovered)"
    r"(?: on \{[^}]*\})?\]\s*)+",
    re.IGNORECASE,
)
_RESOLVED_TRANSITIONS = {"ok", "resolved", "success"}


def _fields(payload: dict[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in payload.items()}


def shape_missing(payload: dict[str, Any]) -> list[str]:
    """Signature fields absent from `payload` ([] means this is a Datadog webhook)."""
    fields = _fields(payload)
    if "alert_transition" in fields or ("alert_id" in fields and fields.keys() & _TEMPLATE_KEYS):
        return []
    return ["alert_transition"] if "alert_id" in fields else ["alert_id", "alert_transition"]


def parse_tags(value: Any, field: str) -> dict[str, str]:
    """`$TAGS` / `$ALERT_SCOPE` ("env:prod,service:x,monitor") as labels; a bare tag maps to ""."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        raise PayloadError(field, 'must be a comma-separated string or a list of "key:value" tags')
    tags: dict[str, str] = {}
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        key, _, tag_value = text.partition(":")
        key, tag_value = key.strip(), tag_value.strip()
        # A repeated key (team:a,team:b) keeps both values rather than the last one.
        if not tags.get(key):
            tags[key] = tag_value
        elif tag_value and tag_value not in tags[key].split(","):
            tags[key] = f"{tags[key]},{tag_value}"
    return tags


def _status(fields: dict[str, Any]) -> str:
    """$ALERT_TRANSITION: Recovered (and Warn/No Data Recovered) resolve; Triggered, Warn, No Data... fire."""
    transition = optional_str(fields.get("alert_transition"), "alert_transition")
    if transition:
        lowered = transition.lower()
        return "resolved" if "recover" in lowered or lowered in _RESOLVED_TRANSITIONS else "firing"
    # Templates without $ALERT_TRANSITION: $ALERT_TYPE is "success" on recovery.
    return "resolved" if str(fields.get("alert_type", "")).lower() == "success" else "firing"


def _description(body: str | None) -> str | None:
    """$EVENT_MSG without Datadog's %%% markdown fences and the @-notification handles."""
    if not body:
        return None
    lines = [
        line
        for line in body.splitlines()
        if line.strip() != "%%%" and not all(w.startswith("@") for w in line.split() or ["x"])
    ]
    text = "\n".join(lines).strip()
    return text or None


def normalize(payload: dict[str, Any]) -> list[NormalizedAlert]:
    """A Datadog monitor notification -> one alert keyed by monitor id + scope."""
    fields = _fields(payload)
    raw_title = optional_str(fields.get("alert_title"), "alert_title")
    event_title = optional_str(fields.get("title"), "title") or optional_str(
        fields.get("event_title"), "event_title"
    )
    # $ALERT_TITLE is the monitor name without the transition prefix, so the
    # firing and the recovery event get the same title (and fallback fingerprint).
    title = raw_title or (_TITLE_PREFIX.sub("", event_title) if event_title else None)
    if not title:
        raise PayloadError("alert_title", "required (or title), the monitor's name")

    if fields.get("date") not in (None, ""):
        timestamp = parse_time(fields["date"], "date")
    elif fields.get("last_updated") not in (None, ""):
        timestamp = parse_time(fields["last_updated"], "last_updated")
    else:
        raise PayloadError("date", "required ($DATE, epoch milliseconds) or last_updated")

    tags = parse_tags(fields.get("tags"), "tags")
    scope_raw = optional_str(fields.get("alert_scope"), "alert_scope")
    scope = parse_tags(scope_raw, "alert_scope")
    labels = dict(tags)
    for key, value in scope.items():
        labels.setdefault(key, value)
    service = tags.get("service") or scope.get("service") or None

    alert_id = optional_str(fields.get("alert_id"), "alert_id")
    if alert_id:
        # Sorted so "host:a,env:p" and "env:p,host:a" are the same group; "*" is a simple monitor.
        group = ",".join(sorted(p.strip() for p in (scope_raw or "").split(",") if p.strip()))
        fingerprint = f"{alert_id}/{group}" if group and group != "*" else alert_id
    else:
        fingerprint = stable_fingerprint(SOURCE, service, title)

    annotations = {
        key: clip(as_text(value), MAX_ANNOTATION)
        for key, value in fields.items()
        if key not in _MAPPED and value not in (None, "", [], {})
    }
    body = optional_str(fields.get("body"), "body") or optional_str(fields.get("event_msg"), "event_msg")
    severity = (
        optional_str(fields.get("alert_priority"), "alert_priority")
        or optional_str(fields.get("alert_type"), "alert_type")
        or optional_str(fields.get("priority"), "priority")
    )
    return [
        build_alert(
            "",
            source=SOURCE,
            title=title,
            timestamp=timestamp,
            status=_status(fields),
            severity_hint=severity,
            service=service,
            description=_description(body),
            labels=labels,
            annotations=annotations,
            links=unique_links([fields.get("link"), fields.get("url"), fields.get("snapshot")]),
            fingerprint=fingerprint,
            raw=payload,
        )
    ]
