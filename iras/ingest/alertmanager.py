"""Prometheus Alertmanager webhook (format version "4").

One POST is one notification for one alert group: `alerts[]` holds every alert
of the group, each with its own `fingerprint` and `status`, and `groupKey`
names the group. The group is the incident (`group_key`); each alert keeps its
own fingerprint so the timeline shows which alert fired or resolved.
Grafana unified alerting sends the same envelope plus a few fields, so the
group walk lives here and `grafana.py` reuses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from iras.ingest.common import (
    PayloadError,
    as_dict,
    build_alert,
    is_unset_time,
    labelset_fingerprint,
    optional_str,
    parse_time,
    path,
    service_from_labels,
    str_map,
    unique_links,
    url_annotations,
)
from iras.schemas import NormalizedAlert

SOURCE = "alertmanager"
WEBHOOK_VERSION = "4"

# Group-level fields copied next to each alert's raw item; `alerts` is left out
# because the webhook stores the whole body once, and Grafana's `message` because
# it repeats every alert's text (N alerts would store it N times).
_GROUP_FIELDS_SKIPPED = ("alerts", "message")

# Extra per-alert link fields a sender may add (Grafana: dashboardURL, panelURL, silenceURL).
LinkFields = tuple[str, ...]


def shape_missing(payload: dict[str, Any]) -> list[str]:
    """Signature fields absent from `payload` ([] means this is an Alertmanager notification)."""
    missing = []
    if payload.get("version") != WEBHOOK_VERSION:
        missing.append("version")
    if not isinstance(payload.get("alerts"), list):
        missing.append("alerts")
    if "groupKey" not in payload:
        missing.append("groupKey")
    return missing


def _status(value: Any, fallback: str | None, field: str) -> str:
    """Per-alert status, else the notification's; only firing/resolved exist in this format."""
    status = value if value is not None else fallback
    if status in ("firing", "resolved"):
        return status
    if status is None:
        raise PayloadError(field, 'required, "firing" or "resolved"')
    raise PayloadError(field, f'must be "firing" or "resolved", got {str(status)[:32]!r}')


def _title(labels: dict[str, str], annotations: dict[str, str], field: str) -> str:
    """`alertname: summary`, so a group of different alerts still reads apart in the timeline."""
    name = labels.get("alertname", "").strip()
    summary = (annotations.get("summary") or annotations.get("title") or "").strip()
    if name and summary:
        return f"{name}: {summary}"
    if name or summary:
        return name or summary
    raise PayloadError(path(field, "labels.alertname"), "required (or annotations.summary)")


def normalize_group(
    payload: dict[str, Any],
    source: str,
    *,
    link_fields: LinkFields = (),
    fallback_status: Callable[[dict[str, Any]], str | None] | None = None,
) -> list[NormalizedAlert]:
    """Walk `alerts[]` of an Alertmanager-style notification into one NormalizedAlert per alert.

    Steps: check the envelope (groupKey, alerts[]); per alert validate labels,
    annotations and startsAt with the item's path in any error; take the event
    time (startsAt when firing, endsAt when resolved); keep the item plus a
    pointer to it as `raw`.
    """
    group_key = payload.get("groupKey")
    if not isinstance(group_key, str) or not group_key.strip():
        raise PayloadError("groupKey", "required, a non-empty string (the alert group's key)")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("alerts", "required, a list of alerts")
    if not alerts:
        # Alertmanager never notifies an empty group; an empty list is a hand-made or truncated body.
        raise PayloadError("alerts", "must contain at least one alert")
    group_status = (
        fallback_status(payload) if fallback_status else optional_str(payload.get("status"), "status")
    )
    group = {k: v for k, v in payload.items() if k not in _GROUP_FIELDS_SKIPPED}

    out: list[NormalizedAlert] = []
    for index, item in enumerate(alerts):
        field = path("alerts", index)
        item = as_dict(item, field)
        labels = str_map(item.get("labels"), path(field, "labels"))
        annotations = str_map(item.get("annotations"), path(field, "annotations"))
        status = _status(item.get("status"), group_status, path(field, "status"))
        starts_at = parse_time(item.get("startsAt"), path(field, "startsAt"))
        # The event time: a resolved alert happened when it ended. endsAt is Go's
        # zero time while firing and may be absent from hand-made bodies.
        timestamp = starts_at
        if status == "resolved" and item.get("endsAt") is not None:
            ends_at = parse_time(item["endsAt"], path(field, "endsAt"))
            if not is_unset_time(ends_at):
                timestamp = ends_at
        fingerprint = optional_str(item.get("fingerprint"), path(field, "fingerprint"))
        links = unique_links(
            [item.get("generatorURL"), *(item.get(k) for k in link_fields), *url_annotations(annotations)]
        )
        out.append(
            build_alert(
                field,
                source=source,
                title=_title(labels, annotations, field),
                timestamp=timestamp,
                status=status,
                severity_hint=labels.get("severity") or labels.get("priority"),
                service=service_from_labels(labels),
                description=annotations.get("description") or annotations.get("message"),
                labels=labels,
                annotations=annotations,
                links=links,
                fingerprint=fingerprint or labelset_fingerprint(source, labels),
                group_key=group_key,
                raw={"pointer": f"/alerts/{index}", "alert": item, "group": group},
            )
        )
    return out


def normalize(payload: dict[str, Any]) -> list[NormalizedAlert]:
    """An Alertmanager notification -> one alert per `alerts[]` item, all sharing the group key."""
    version = payload.get("version")
    if version != WEBHOOK_VERSION:
        raise PayloadError(
            "version", f'must be "{WEBHOOK_VERSION}" (Alertmanager webhook format), got {version!r}'
        )
    return normalize_group(payload, SOURCE)
