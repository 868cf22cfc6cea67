"""Post-mortem narrative: a blameless write-up of what happened. (Sonnet.)

The model writes only the prose (title, summary, impact, root cause,
resolution, action items). The facts of record (outcome, severity, timeline,
cost) are copied in code from the incident's history, so the post-mortem can
never contradict what the pipeline actually did.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from iras.analysts.base import PostMortemInput
from iras.analysts.prompts.common import UNTRUSTED_DATA_RULES, data_block, one_line, render_facts


class PostMortemNarrative(BaseModel):
    """The part of the post-mortem the model writes."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200, description="Short title naming service and failure.")
    summary: str = Field(min_length=1, description="Three to five sentences: what happened, end to end.")
    impact: str = Field(default="", description="Who was affected, how, and for how long.")
    root_cause: str = Field(min_length=1, description="The cause, as established by the diagnosis.")
    resolution: str = Field(min_length=1, description="What ended the impact, or why it is still open.")
    action_items: list[str] = Field(
        default_factory=list, description="Concrete follow-ups that prevent a recurrence."
    )


SYSTEM = f"""\
You are the post-mortem writer of IRAS, an incident-response pipeline. From the incident record \
(alert, triage, diagnosis, remediation plan, what ran and how it ended, and the timeline), write a \
blameless post-mortem for engineers who were not there.

Write plainly and precisely. State only what the record shows; if the remediation was rejected, \
failed or was rolled back, or the diagnosis had low confidence, say so rather than implying success. \
Do not invent timestamps, numbers or people. Action items are concrete and owned by a team, not \
generic advice.

Fill the PostMortemNarrative tool: title, summary, impact, root_cause, resolution, action_items.

{UNTRUSTED_DATA_RULES}
"""


def render_record(data: PostMortemInput) -> str:
    lines = [f"outcome: {one_line(data.outcome)}"]
    triage = data.triage or data.facts.triage
    if triage is not None:
        lines.append(
            f"triage: severity {triage.severity.value}; affected {', '.join(triage.affected_services)};"
            f" {one_line(triage.blast_radius)}"
        )
    if data.rca is not None:
        rca = data.rca
        lines.append(
            f"diagnosis: {rca.category.value} in {one_line(rca.culprit_service, 200)}"
            f" (deployment {rca.culprit_deployment_sha or 'none'}, confidence {rca.confidence:.2f})"
        )
        lines.append(f"primary_cause: {one_line(rca.primary_cause, 1000)}")
        if rca.severity is not None:
            reason = f" ({one_line(rca.severity_reason, 300)})" if rca.severity_reason else ""
            lines.append(
                f"severity from the evidence: {rca.severity.value}{reason}; this is the incident's severity"
            )
        lines.extend(f"  evidence: {one_line(item, 300)}" for item in rca.evidence[:4])
    if data.plan is not None:
        plan = data.plan
        lines.append(
            f"plan: {one_line(plan.summary, 500)} (reversible: {plan.reversible},"
            f" approval required: {plan.requires_human_approval})"
        )
        for step in plan.steps:
            lines.append(
                f"  step {step.order}: {step.action.value} `{one_line(step.command, 300)}`"
                f" risk {step.risk_level.value}"
            )
    if data.decision:
        decision = ", ".join(
            f"{one_line(str(k), 40)}={one_line(str(v), 200)}" for k, v in data.decision.items()
        )
        lines.append(f"decision: {decision}")
    for run in data.step_runs:
        rolled = " (rolled back)" if run.rolled_back else ""
        lines.append(f"  ran step {run.order}: `{one_line(run.command, 300)}` -> {run.status}{rolled}")
        if run.output_tail:
            lines.append(f"    output: {one_line(run.output_tail, 300)}")
    if data.timeline:
        lines.append("timeline:")
        for entry in data.timeline[-40:]:
            detail = f": {one_line(entry.detail, 200)}" if entry.detail else ""
            lines.append(
                f"  {entry.at.isoformat()} {one_line(entry.event, 120)} ({one_line(entry.actor, 60)}){detail}"
            )
    return data_block("incident_record", lines)


def build_user(data: PostMortemInput) -> str:
    return "\n".join(
        [
            f"Write the post-mortem of incident {one_line(data.facts.incident_id)}.",
            "",
            render_facts(data.facts),
            "",
            render_record(data),
            "",
            "Call the PostMortemNarrative tool.",
        ]
    )
