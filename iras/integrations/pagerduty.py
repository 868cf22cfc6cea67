"""Pages through the PagerDuty Events API v2 (`POST /v2/enqueue`).

`dedup_key` is always the IRAS incident id, so a retried or repeated trigger
(a Celery redelivery, a second escalation) lands on the same PagerDuty alert
instead of paging twice, and `resolve` closes exactly that alert.

Failures: 429 and 5xx are retried briefly here, then raised as
`TransientNotifyError` for the Celery task to retry later; a 400 ("invalid
event", e.g. a wrong routing key) is permanent and raised as `SourceUnavailable`.
"""

from __future__ import annotations

import logging
from typing import Any

from iras.config import Settings
from iras.integrations import incident_doc as docs
from iras.integrations.http import RetryPolicy, json_body, new_session, request

log = logging.getLogger(__name__)

SEVERITY = {"P0": "critical", "P1": "error", "P2": "warning", "P3": "info"}
# Not yet triaged (escalated because a stage failed): page as an error, not as info.
DEFAULT_SEVERITY = "error"
SUMMARY_LIMIT = 1024  # PagerDuty rejects longer summaries


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


class PagerDutyPager:
    name = "pagerduty"

    def __init__(self, settings: Settings, *, policy: RetryPolicy | None = None) -> None:
        if not settings.pagerduty_routing_key:
            raise ValueError("PAGERDUTY_ROUTING_KEY is not set")
        self.settings = settings
        self.routing_key = settings.pagerduty_routing_key
        self.url = settings.pagerduty_events_url
        self.timeout = settings.http_timeout_seconds
        self.policy = policy or RetryPolicy.from_settings(settings)

    def trigger_event(self, incident: dict[str, Any]) -> dict[str, Any]:
        incident_id = str(incident["id"])
        severity = incident.get("severity")
        service = incident.get("service") or self.settings.pagerduty_source
        title = str(incident.get("title") or f"IRAS incident {incident_id}")
        summary = f"[{severity}] {title}" if severity else title
        rca = docs.rca(incident)
        plan = docs.plan(incident)
        decided_kind, decided = docs.decision(incident)
        link = docs.incident_url(self.settings, incident_id)
        details = {
            "incident_id": incident_id,
            "status": incident.get("status"),
            "severity": severity,
            "service": incident.get("service"),
            "affected_services": docs.affected_services(incident) or None,
            "environment": self.settings.environment,
            "reason": docs.escalation_reason(incident),
            "root_cause": rca.get("primary_cause"),
            "category": rca.get("category"),
            "culprit_service": rca.get("culprit_service"),
            "rca_confidence": rca.get("confidence"),
            # The ranked candidates, for a responder paged because the diagnosis was unsure.
            "suspects": [
                f"{s.get('service')} ({float(s.get('score') or 0):.0%}): {s.get('reason') or ''}".rstrip(": ")
                for s in rca.get("suspects") or []
                if isinstance(s, dict)
            ][:3]
            or None,
            "evidence_not_configured": [
                str(src.get("kind"))
                for src in docs.latest_result(incident, "context").get("sources") or []
                if isinstance(src, dict) and src.get("status") == "not_configured"
            ]
            or None,
            "plan": plan.get("summary"),
            "decision": f"{decided_kind} by {decided.get('by')}" if decided_kind and decided else None,
            "iras_url": link,
        }
        return {
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "dedup_key": incident_id,
            "payload": _without_none(
                {
                    "summary": summary[:SUMMARY_LIMIT],
                    "source": str(service),
                    "severity": SEVERITY.get(str(severity), DEFAULT_SEVERITY),
                    "component": incident.get("service"),
                    "group": self.settings.environment,
                    "class": rca.get("category"),
                    "custom_details": _without_none(details),
                }
            ),
            "links": [{"href": link, "text": "Incident in IRAS"}],
            "client": "IRAS",
            "client_url": link,
        }

    def trigger(self, incident: dict[str, Any]) -> None:
        self._send(self.trigger_event(incident))

    def resolve(self, incident_id: str) -> None:
        self._send({"routing_key": self.routing_key, "event_action": "resolve", "dedup_key": incident_id})

    def _send(self, event: dict[str, Any]) -> None:
        with new_session() as session:
            # Retrying a POST is safe here: the dedup_key makes the event idempotent.
            response = request(
                session,
                "POST",
                self.url,
                source="pagerduty",
                timeout=self.timeout,
                policy=self.policy,
                notifier=True,
                json=event,
            )
            body = json_body(response, "pagerduty")
        if isinstance(body, dict) and body.get("dedup_key") not in (None, event["dedup_key"]):
            log.warning("pagerduty answered dedup_key %s for %s", body.get("dedup_key"), event["dedup_key"])
        log.info("pagerduty %s accepted for %s", event["event_action"], event["dedup_key"])
