"""Root-cause analysis: what broke, where, and which deployment did it? (Sonnet.)

The evidence block is produced by `iras.analysts.budget` and fits the token
budget whatever the size of the bundle; the prompt around it is small and
constant so the budget arithmetic in the analyst stays simple.
"""

from __future__ import annotations

from iras.analysts.base import IncidentFacts
from iras.analysts.prompts.common import UNTRUSTED_DATA_RULES, one_line, render_facts
from iras.schemas import Category

_CATEGORIES = ", ".join(category.value for category in Category)

SYSTEM = f"""\
You are the root-cause analysis step of IRAS, an incident-response pipeline. You receive the alert, \
the triage result and the evidence gathered for a time window around it: the status of each \
evidence source, recent production deployments, metrics as computed now-versus-7-days-ago deltas, \
log lines grouped into templates with counts, and the newest log lines verbatim. Find the most \
likely root cause.

How to reason:
- The cause often lives in a different service from the one that alerted: follow the errors \
upstream (timeouts and connection errors point at the dependency, not the caller).
- A deployment is the culprit only when its timing and its service fit the evidence: errors start \
after it, in the service it changed or in its callers. A deployment that merely happened recently \
is not evidence by itself. Name a culprit deployment only by a sha listed in the evidence.
- A source marked UNAVAILABLE or NOT CONFIGURED is a gap: say what you could not check and lower \
your confidence, never read missing data as health.
- A planned event (load test, maintenance) or a metric that is not customer-facing can make this a \
false alarm.

Fill the RootCauseHypothesis tool:
- primary_cause: one or two sentences, specific (what failed and why).
- category: one of {_CATEGORIES}.
- culprit_service: the service where the cause lives.
- culprit_deployment_sha: the full sha of the deployment that caused it, copied from the \
evidence, or null when no deployment did.
- evidence: two to four log lines copied character for character from the evidence (the verbatim \
lines, never a template with <NUM>/<*> placeholders, never paraphrased). Citations are checked \
mechanically: any line that is not found verbatim is dropped and lowers your confidence.
- contributing_factors: other conditions that made it worse, if any.
- reasoning: the short chain of observations that led you here.
- confidence: 0 to 1. Use at least 0.7 only when the evidence points clearly at one cause; below \
that the pipeline gathers evidence over a wider window and asks again.

{UNTRUSTED_DATA_RULES}
"""


def build_user(
    facts: IncidentFacts, evidence_text: str, attempt: int, window_minutes: int, alert_max_chars: int = 60_000
) -> str:
    """`evidence_text` already fits the budget; the alert block is capped at `alert_max_chars`."""
    lines = [f"Diagnose incident {one_line(facts.incident_id)}."]
    if attempt > 1:
        lines.append(
            f"This is attempt {attempt}: earlier attempts did not reach enough confidence, so the evidence "
            f"window has been widened to {window_minutes} minutes. Look further back for the start of the "
            "problem."
        )
    triage = facts.triage
    if triage is not None:
        lines.append(
            f"Triage said: severity {triage.severity.value}, affected services "
            f"{', '.join(one_line(s, 100) for s in triage.affected_services)} "
            f"(confidence {triage.confidence:.2f})."
        )
    lines.append("")
    lines.append(render_facts(facts, alert_max_chars))
    lines.append("")
    lines.append("<evidence>")
    lines.append(evidence_text)
    lines.append("</evidence>")
    lines.append("")
    lines.append("Call the RootCauseHypothesis tool with your diagnosis.")
    return "\n".join(lines)
