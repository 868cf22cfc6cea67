"""PagerDuty V3 webhook: `{"event": {id, event_type, resource_type, occurred_at, agent, client, data}}`.

For incident events `data` is the incident itself; its id is the incident key,
so `incident.triggered` and the later `incident.resolved` land on the same
IRAS incident. Events that carry no incident state (`pagey.ping` sent when a
subscription is created, `service.*`, notes and responder events whose data is
not the incident) normalise to an empty list: nothing to ingest, not an error.
"""

from __future__ import annotations

from typing import Any

from iras.ingest.common import (
    PayloadError,
    as_dict,
    build_alert,
    optional_str,
    parse_time,
    stable_fingerprint,
    unique_links,
)
from iras.schemas import NormalizedAlert

SOURCE = "pagerduty"


def shape_missing(payload: dict[str, Any]) -> list[str]:
    """Signature fields absent from `payload` ([] means this is a PagerDuty V3 webhook)."""
    event = payload.get("event")
    if not isinstance(event, dict):
        return ["event"]
    return [f"event.{key}" for key in ("event_type", "data") if key not in event]


def _ref_summary(value: Any) -> str | None:
    """`summary` of a PagerDuty reference object ({id, type, summary, html_url, self})."""
    if isinstance(value, dict) and isinstance(value.get("summary"), str):
        return value["summary"].strip() or None
    return None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _labels(event: dict[str, Any], data: dict[str, Any]) -> dict[str, str]:
    """PagerDuty routing facts the triage and the operator look at, as flat labels."""
    labels: dict[str, str] = {}
    service = data.get("service") if isinstance(data.get("service"), dict) else {}
    candidates: dict[str, Any] = {
        "event_type": event.get("event_type"),
        "incident_id": data.get("id"),
        "incident_number": data.get("number"),
        "incident_key": data.get("incident_key"),
        "pd_status": data.get("status"),
        "urgency": data.get("urgency"),
        "priority": _ref_summary(data.get("priority")),
        "pd_service": _ref_summary(service),
        "pd_service_id": service.get("id"),
        "escalation_policy": _ref_summary(data.get("escalation_policy")),
    }
    client = event.get("client")
    if isinstance(client, dict):
        candidates["client"] = client.get("name")
    # Lists of references; any other type (a number, a string) carries no reference.
    teams = [_ref_summary(t) for t in _as_list(data.get("teams")) if _ref_summary(t)]
    assignees = [_ref_summary(a) for a in _as_list(data.get("assignees")) if _ref_summary(a)]
    if teams:
        candidates["teams"] = ",".join(t for t in teams if t)
    if assignees:
        candidates["assignees"] = ",".join(a for a in assignees if a)
    for key, value in candidates.items():
        if value is not None and value != "":
            labels[key] = str(value)
    return labels


def normalize(payload: dict[str, Any]) -> list[NormalizedAlert]:
    """A V3 webhook -> one alert for incident events, none for events without incident state."""
    event = as_dict(payload.get("event"), "event")
    event_type = optional_str(event.get("event_type"), "event.event_type")
    if not event_type:
        raise PayloadError("event.event_type", 'required, e.g. "incident.triggered"')
    data = as_dict(event.get("data"), "event.data")
    if not event_type.startswith("incident.") or data.get("type", "incident") != "incident":
        return []

    title = optional_str(data.get("title"), "event.data.title") or optional_str(
        data.get("summary"), "event.data.summary"
    )
    if not title:
        raise PayloadError("event.data.title", "required, the incident title")
    # occurred_at is when this event happened (the resolve time for incident.resolved);
    # created_at only dates the incident, so it is the fallback.
    if event.get("occurred_at") is not None or data.get("created_at") is None:
        timestamp = parse_time(event.get("occurred_at"), "event.occurred_at")
    else:
        timestamp = parse_time(data["created_at"], "event.data.created_at")
    pd_status = optional_str(data.get("status"), "event.data.status")
    # incident.resolved is the resolution; data.status also says so on later
    # events (e.g. a priority change delivered after the resolve).
    status = "resolved" if event_type == "incident.resolved" or pd_status == "resolved" else "firing"
    service_ref = data.get("service")
    service = _ref_summary(service_ref)
    incident_id = optional_str(data.get("id"), "event.data.id")
    alert_key = optional_str(data.get("incident_key"), "event.data.incident_key")
    priority = _ref_summary(data.get("priority"))
    description = optional_str(data.get("description"), "event.data.description")
    links = unique_links(
        [data.get("html_url"), service_ref.get("html_url") if isinstance(service_ref, dict) else None]
    )
    return [
        build_alert(
            "event.data",
            source=SOURCE,
            title=title,
            timestamp=timestamp,
            status=status,
            severity_hint=priority or optional_str(data.get("urgency"), "event.data.urgency"),
            service=service,
            description=description if description and description != title else None,
            labels=_labels(event, data),
            links=links,
            fingerprint=incident_id or alert_key or stable_fingerprint(SOURCE, service, title),
            raw=payload,
        )
    ]
