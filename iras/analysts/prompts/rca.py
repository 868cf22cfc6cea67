"""Root-cause analysis: what broke, where, which change did it, and how bad is it? (Sonnet.)

The prompt carries the project's definitions (categories, severity rules, how
to name a culprit) because the answer is checked against them, and hands the
model facts computed in code (`computed_facts`) before the evidence itself.
The evidence block is produced by `iras.analysts.budget` and fits the token
budget whatever the size of the bundle; the prompt around it is constant or
bounded, so the budget arithmetic in the analyst stays simple.
"""

from __future__ import annotations

from iras.analysts.base import IncidentFacts
from iras.analysts.prompts.common import UNTRUSTED_DATA_RULES, one_line, render_facts
from iras.analysts.prompts.definitions import CATEGORIES_TEXT, CULPRIT_RULES, SEVERITY_RULES

SYSTEM = f"""\
You are the root-cause analysis step of IRAS, an incident-response pipeline. You receive the alert, \
the triage result (triage saw only the alert), facts computed in code from the evidence (candidate \
components with anomaly scores and onsets, dependency edges, changes with the minutes between each \
change and each onset) and the evidence itself for a time window around the alert: the status of \
each evidence source, recent production deployments, metrics as now-versus-7-days-ago deltas, log \
lines grouped into templates with counts, and the newest log lines verbatim. Find the root cause, \
judge the severity from the evidence, and say honestly how sure you are.

{CATEGORIES_TEXT}

{CULPRIT_RULES}

How to reason:
- Start from the computed facts, then check them against the lines. The root is usually the \
earliest anomalous candidate that has no earlier anomalous dependency: follow the dependency edges \
from the alerting service towards what it calls (timeouts, refused connections and 5xx from X point \
at X). Prefer a candidate whose own logs show an internal failure over one that only reports \
errors of others.
- A change (deployment, ConfigMap, flag, rule push, reload, rollout) is the cause only when it \
precedes the onset of its own component by minutes and new errors follow it there. A change to a \
component that shows no anomaly is innocent, however recent. Name a culprit deployment only by a \
sha listed in the evidence; a configuration change is not a deployment (culprit_deployment_sha null).
- Organic load: request rate well above its baseline with saturation and no change behind it is \
capacity.
- False alarm: customer-facing metrics at their baseline and a benign actor explains the alert \
(scanner, synthetic probe from one place, agent or exporter change, maintenance, backup, no data).
- A source marked UNAVAILABLE or NOT CONFIGURED is a gap: say what you could not check and lower \
your confidence, never read missing data as health.

Severity, judged again from the evidence (metrics and logs show what the alert could not):
{SEVERITY_RULES}
Triage chose the more severe level when the alert was ambiguous; give the level the evidence \
supports, and in severity_reason the numbers that decide it.

Suspects and confidence:
- suspects: your top three candidate causes, best first (the first is your culprit), each with \
service, score (0 to 1, its share of the support), category, a one-sentence reason and one or two \
log lines copied verbatim.
- confidence reflects the margin between your first and second suspect and how many independent \
signals agree (the culprit's own errors, metrics, a change's timing, its callers' errors). Use 0.7 \
or more only when one cause clearly wins; a runner-up scored within 0.2 of your first suspect \
means it does not. Below 0.7 IRAS does not act on the diagnosis: it hands \
your suspects and their evidence to a human, which is the right outcome for ambiguous evidence. A \
confident wrong answer is worse than an honest "unsure, here are the suspects".

Fill the RootCauseHypothesis tool:
- primary_cause: one or two sentences, specific (what failed and why).
- category: one of the categories above.
- culprit_service: named by the rules above.
- culprit_deployment_sha: the full sha of the deployment that caused or triggered it (whatever the \
category), copied from the evidence, or null when no deployment did.
- evidence: two to four log lines copied character for character from the evidence (the verbatim \
lines, never a template with <NUM>/<*> placeholders, never paraphrased): the line that shows the \
cause itself first, then the line that dates the trigger (a release's start-up or version line, the \
line recording a config change, the benign actor's own line) and a victim's line that names it. Citations are checked mechanically: a line not found verbatim is dropped and \
lowers your confidence.
- contributing_factors: other conditions that made it worse, if any.
- reasoning: the short chain of observations that led you here.
- suspects, confidence: as above.
- severity: P0 to P3 from the evidence; severity_reason: why, with the deciding numbers.

{UNTRUSTED_DATA_RULES}
"""


def build_user(
    facts: IncidentFacts,
    evidence_text: str,
    attempt: int,
    window_minutes: int,
    alert_max_chars: int = 60_000,
    computed: str = "",
) -> str:
    """`evidence_text` already fits the budget; the alert block is capped at `alert_max_chars`.

    `computed` is a rendered `<computed_facts>` block (bounded by its renderer).
    """
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
            f"Triage (from the alert alone) said: severity {triage.severity.value}, affected services "
            f"{', '.join(one_line(s, 100) for s in triage.affected_services)} "
            f"(confidence {triage.confidence:.2f})."
        )
    lines.append("")
    lines.append(render_facts(facts, alert_max_chars))
    if computed:
        lines.append("")
        lines.append("Facts computed in code from the evidence below:")
        lines.append(computed)
    lines.append("")
    lines.append("<evidence>")
    lines.append(evidence_text)
    lines.append("</evidence>")
    lines.append("")
    lines.append("Call the RootCauseHypothesis tool with your diagnosis, suspects and severity.")
    return "\n".join(lines)
