"""Reading the incident document the notifiers receive.

The Celery notify tasks pass `iras.services.serialize_incident(...)`: top-level
`id, status, severity, title, service, approval_deadline, decision {by, via, at,
reason}, outcome`, plus `stages` (every stage result, oldest first), `plan` (the
current plan with its row `id`), `timeline` (the transitions) and `postmortem`.
Every accessor tolerates a missing key, so a notifier never fails on a partly
filled incident (an escalation before triage finished, a test's minimal dict).
"""

from __future__ import annotations

from typing import Any

from iras.config import Settings


def incident_url(settings: Settings, incident_id: str) -> str:
    # The console page: a person follows this link from Slack or PagerDuty.
    return f"{settings.public_url.rstrip('/')}/ui/incidents/{incident_id}"


def latest_result(doc: dict[str, Any], stage: str) -> dict[str, Any]:
    """The newest result of a stage (the RCA loop stores one per attempt), or {}."""
    for entry in reversed(doc.get("stages") or []):
        if entry.get("stage") == stage and isinstance(entry.get("result"), dict):
            return dict(entry["result"])
    direct = doc.get(stage)
    return dict(direct) if isinstance(direct, dict) else {}


def rca(doc: dict[str, Any]) -> dict[str, Any]:
    return latest_result(doc, "rca") or latest_result(doc, "hypothesis")


def plan(doc: dict[str, Any]) -> dict[str, Any]:
    current = doc.get("plan")
    return dict(current) if isinstance(current, dict) else latest_result(doc, "plan")


def affected_services(doc: dict[str, Any]) -> list[str]:
    services = latest_result(doc, "triage").get("affected_services") or []
    if not services and doc.get("service"):
        services = [doc["service"]]
    return [str(s) for s in services]


def last_transition(
    doc: dict[str, Any], *, to: str | None = None, events: set[str] | None = None
) -> dict[str, Any]:
    for entry in reversed(doc.get("timeline") or []):
        if (to is None or entry.get("to") == to) and (events is None or entry.get("event") in events):
            return dict(entry)
    return {}


def escalation_reason(doc: dict[str, Any]) -> str | None:
    """Why the incident went to a human: the event that moved it to `escalating`,
    with the reason or summary recorded on that transition."""
    if doc.get("escalation_reason"):
        return str(doc["escalation_reason"])
    entry = last_transition(doc, to="escalating")
    if not entry:
        return None
    detail = entry.get("detail") or {}
    why = detail.get("reason") or detail.get("summary") or detail.get("error")
    event = str(entry.get("event") or "escalated").replace("_", " ")
    return f"{event}: {why}" if why else event


def decision(doc: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """("approved" | "rejected" | None, {by, via, at, reason})."""
    made = doc.get("decision") if isinstance(doc.get("decision"), dict) else {}
    entry = last_transition(doc, events={"approved", "rejected"})
    kind = entry.get("event") if entry else None
    if kind is None and made:
        kind = "rejected" if doc.get("outcome") == "escalated" else "approved"
    return kind, dict(made or {})
