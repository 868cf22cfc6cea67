"""Post-mortem helpers: the timeline from the audit trail, and Markdown rendering.

The analyst writes the narrative; the timeline and the cost always come from the
database (what happened), never from the model (what it says happened).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from iras.schemas import PostMortem, TimelineEntry

EVENT_WORDS = {
    "ingested": "Alert received",
    "triaged": "Triage done",
    "context_gathered": "Evidence gathered",
    "rca_confident": "Root cause identified",
    "rca_inconclusive": "Root cause inconclusive, widening the evidence window",
    "rca_exhausted": "Root cause not established, escalated",
    "plan_ready": "Remediation plan ready, awaiting approval",
    "no_action_needed": "No remediation needed",
    "approved": "Plan approved",
    "rejected": "Plan rejected",
    "approval_timed_out": "Approval timed out",
    "alerts_resolved": "All alerts resolved",
    "alert_resolved": "Alert resolved (others still firing)",
    "alerts_resolved_noted": "All alerts resolved after approval (noted)",
    "remediation_succeeded": "Remediation succeeded",
    "remediation_failed": "Remediation failed, completed steps rolled back",
    "stage_failed": "A stage failed permanently",
    "escalated": "Escalated to on-call",
    "closed_resolved": "Closed as resolved",
    "closed_escalated": "Closed as escalated",
    "closed_auto_resolved": "Closed as auto-resolved",
}


class TransitionLike(Protocol):
    """A `transitions` row, or any row with its columns the timeline reads."""

    at: datetime
    event: str
    actor: str
    detail: Any


def timeline_from(transitions: Iterable[TransitionLike]) -> list[TimelineEntry]:
    entries = []
    for t in transitions:
        detail = t.detail or {}
        text = detail.get("summary") or detail.get("reason") or ""
        entries.append(
            TimelineEntry(
                at=t.at,
                event=EVENT_WORDS.get(t.event, t.event),
                detail=str(text)[:500],
                actor=t.actor,
            )
        )
    return entries


def render_markdown(pm: PostMortem) -> str:
    title = pm.title
    if title.lower().startswith("post-mortem:"):
        title = title.split(":", 1)[1].strip()
    lines = [f"# Post-mortem: {title}", ""]
    lines.append(f"- **Outcome:** {pm.outcome}")
    if pm.severity:
        lines.append(f"- **Severity:** {pm.severity.value}")
    if pm.cost:
        cost = pm.cost
        lines.append(
            f"- **Analysis cost:** {cost.get('input_tokens', 0)} input / {cost.get('output_tokens', 0)} output tokens"
            f", est. ${cost.get('estimated_cost_usd') or 0:.4f}"
        )
    lines += ["", "## Summary", "", pm.summary, ""]
    if pm.impact:
        lines += ["## Impact", "", pm.impact, ""]
    lines += ["## Root cause", "", pm.root_cause, "", "## Resolution", "", pm.resolution, ""]
    lines += ["## Timeline (UTC)", ""]
    for entry in pm.timeline:
        when = entry.at.strftime("%Y-%m-%d %H:%M:%S")
        extra = f": {entry.detail}" if entry.detail else ""
        lines.append(f"- {when} — {entry.event} ({entry.actor}){extra}")
    lines += ["", "## Action items", ""]
    lines += [f"- [ ] {item}" for item in pm.action_items] or ["- none"]
    return "\n".join(lines) + "\n"
