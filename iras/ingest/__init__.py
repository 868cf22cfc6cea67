"""Turn a webhook payload into normalised alerts.

`normalize(payload, source)` detects the source from the payload's shape when
`source` is None; one adapter module per source does the mapping. Adapters are
pure (no I/O, no DB): the webhook stores the body, the worker calls these.

One fingerprint rule for every path (`incident_key`):
  * Alertmanager / Grafana: a notification is already a group, so the incident
    is the `groupKey`; each alert inside keeps its own `fingerprint`.
  * PagerDuty: the incident id (else its alert key).
  * Datadog: monitor id (`$ALERT_ID`) + group (`$ALERT_SCOPE`).
  * otherwise (generic, or a sender without a key): a stable hash of
    source + service + title.

`normalize` may return an empty list for notifications that carry no alert
state (PagerDuty `pagey.ping`, `service.*`, notes); that is not an error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from iras.ingest import alertmanager, datadog, generic, grafana, pagerduty
from iras.ingest.common import MAX_KEY, PayloadError, stable_fingerprint
from iras.schemas import NormalizedAlert

__all__ = [
    "ADAPTERS",
    "KNOWN_SOURCES",
    "PayloadError",
    "detect_source",
    "incident_key",
    "normalize",
    "stable_fingerprint",
]

Adapter = Callable[[dict[str, Any]], list[NormalizedAlert]]

ADAPTERS: dict[str, Adapter] = {
    "alertmanager": alertmanager.normalize,
    "grafana": grafana.normalize,
    "pagerduty": pagerduty.normalize,
    "datadog": datadog.normalize,
    "generic": generic.normalize,
}
KNOWN_SOURCES: tuple[str, ...] = tuple(ADAPTERS)

# Detection order matters: a Grafana body is an Alertmanager body plus orgId/state/title
# (so Grafana first), and a Datadog template usually has a `title` too (so generic last).
_SHAPES: tuple[tuple[str, Callable[[dict[str, Any]], list[str]]], ...] = (
    ("pagerduty", pagerduty.shape_missing),
    ("grafana", grafana.shape_missing),
    ("alertmanager", alertmanager.shape_missing),
    ("datadog", datadog.shape_missing),
    ("generic", generic.shape_missing),
)
# What each shape needs, for the error when nothing matches.
_SIGNATURES = {
    "pagerduty": ("event",),
    "grafana": ("alerts", "orgId", "state", "title"),
    "alertmanager": ("version", "alerts", "groupKey"),
    "datadog": ("alert_id", "alert_transition"),
    "generic": ("title", "timestamp"),
}
_SIGNATURE_TEXT = (
    'Alertmanager (version "4", alerts, groupKey), Grafana (orgId, state, title, alerts), '
    "PagerDuty V3 (event.event_type, event.data), Datadog (alert_id, alert_transition) "
    "or generic (title, timestamp)"
)


def detect_source(payload: dict[str, Any]) -> str:
    """Name the sender from the payload's shape, or raise PayloadError naming what is missing.

    When no shape matches, the error names the missing field of the closest
    shape (the largest share of its signature fields present), so a
    generic alert without `timestamp` is told "timestamp", not a list of five formats.
    """
    if not isinstance(payload, dict):
        raise PayloadError("payload", "must be a JSON object")
    lowered: set[str] | None = None  # only needed once a shape does not match
    closest: tuple[float, str, list[str]] | None = None
    for name, missing_of in _SHAPES:
        missing = missing_of(payload)
        if not missing:
            return name
        if lowered is None:
            lowered = {str(k).lower() for k in payload}
        signature = _SIGNATURES[name]
        # Share of the signature present, so {"title": ...} is closer to generic (1 of 2)
        # than to Grafana (1 of 4).
        share = sum(1 for key in signature if key.lower() in lowered) / len(signature)
        if share and (closest is None or share > closest[0]):
            closest = (share, name, missing)
    if closest is None:
        raise PayloadError("payload", f"unrecognised alert shape; expected {_SIGNATURE_TEXT}")
    _, name, missing = closest
    raise PayloadError(
        missing[0],
        f"required for a {name} payload (missing: {', '.join(missing)}); expected {_SIGNATURE_TEXT}",
    )


def normalize(payload: Any, source: str | None = None) -> list[NormalizedAlert]:
    """Payload -> alerts. `source` names the adapter (POST /webhook/<source>); None detects it."""
    if not isinstance(payload, dict):
        raise PayloadError("payload", "must be a JSON object")
    name = source.strip().lower() if source else detect_source(payload)
    adapter = ADAPTERS.get(name)
    if adapter is None:
        raise PayloadError("source", f"unknown source {name!r}; known: {', '.join(KNOWN_SOURCES)}")
    return adapter(payload)


def incident_key(alert: NormalizedAlert) -> str:
    """The key an open incident is deduplicated on: the group key if any, else the fingerprint.

    Prefixed with the source so two senders' keys never collide (a generic
    sender may pick any fingerprint), and bounded to MAX_KEY characters for the
    unique index: Alertmanager group keys grow with the route's matchers.
    """
    key = alert.group_key or alert.fingerprint or stable_fingerprint(alert.source, alert.service, alert.title)
    full = f"{alert.source}:{key}"
    if len(full) <= MAX_KEY:
        return full
    return f"{alert.source}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"
