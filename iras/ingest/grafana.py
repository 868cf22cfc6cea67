"""Grafana unified alerting webhook (`version "1"`).

The Alertmanager envelope (alerts[], groupKey, per-alert fingerprint and status)
plus `orgId`, `title`, `state`, `message`, and per alert `dashboardURL`,
`panelURL`, `silenceURL`, `values`, `valueString`. Same fingerprint rule as
Alertmanager: the notification's groupKey is the incident, each alert keeps
its own fingerprint.
"""

from __future__ import annotations

from typing import Any

from iras.ingest.alertmanager import normalize_group
from iras.schemas import NormalizedAlert

SOURCE = "grafana"
LINK_FIELDS = ("dashboardURL", "panelURL", "silenceURL")

# Group `state` values (unified alerting sends alerting/ok; the others come from
# older Grafana versions and contact-point templates).
_RESOLVED_STATES = {"ok", "normal", "resolved"}
_FIRING_STATES = {"alerting", "firing", "no_data", "nodata", "error", "pending"}


def shape_missing(payload: dict[str, Any]) -> list[str]:
    """Signature fields absent from `payload` ([] means this is a Grafana notification)."""
    missing = []
    if not isinstance(payload.get("alerts"), list):
        missing.append("alerts")
    if "orgId" not in payload and not ("state" in payload and "title" in payload):
        missing.append("orgId")
    return missing


def _group_status(payload: dict[str, Any]) -> str | None:
    """Status for alerts that lack their own: `status`, else `state` mapped to firing/resolved."""
    status = payload.get("status")
    if status in ("firing", "resolved"):
        return status
    state = str(payload.get("state") or "").lower()
    if state in _RESOLVED_STATES:
        return "resolved"
    if state in _FIRING_STATES:
        return "firing"
    return None


def normalize(payload: dict[str, Any]) -> list[NormalizedAlert]:
    """A Grafana notification -> one alert per `alerts[]` item, all sharing the group key."""
    return normalize_group(payload, SOURCE, link_fields=LINK_FIELDS, fallback_status=_group_status)
