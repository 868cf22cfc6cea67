"""Remediation plan: the smallest safe change that ends the impact. (Sonnet.)

The model proposes; code disposes. Whatever it answers goes through
`iras.analysts.verify.verify_plan` and the core's safety module, and a human
approves before anything risky runs. The prompt still states the rules, so a
good answer needs no correction.
"""

from __future__ import annotations

from collections.abc import Sequence

from iras.analysts.base import IncidentFacts
from iras.analysts.budget import metric_change, render_deployment, render_metric
from iras.analysts.prompts import definitions
from iras.analysts.prompts.common import UNTRUSTED_DATA_RULES, data_block, one_line, render_facts
from iras.schemas import ContextBundle, RootCauseHypothesis, RunbookAction, WorkloadFacts

_ACTIONS = ", ".join(action.value for action in RunbookAction)

SYSTEM = f"""\
You are the remediation-planning step of IRAS, an incident-response pipeline. Given a diagnosis, \
propose the smallest plan that ends the customer impact quickly and can be undone. A human approves \
the plan before risky steps run, and code checks every command you write.

Runbook actions: {_ACTIONS}.
{definitions.ACTION_GUIDANCE}
The metrics in the evidence tell the conditions apart (memory still rising or flat at its limit; \
connections at a limit or a primary down; whether a fallback keeps customers served).

The first step is the remediation itself, with the action chosen above: not a diagnostic, a \
notification or a check. Verification or follow-up steps may come after it. When the action is \
none (a false alarm, or a fallback already hides the impact), return no steps at all and set \
requires_human_approval to false: nothing is executed.

Rules for every step:
- command: one program with its arguments, starting with a program from the allowed list given in \
the request. No shell syntax at all: no pipes, redirections, `;`, `&&`, `$()`, backticks or \
variables. Commands that fail these rules are not executed.
- rollback_command: the command that undoes the step, following the same rules. Leave it null only \
when the step truly cannot be undone; the plan is then marked irreversible and needs approval.
- a rollback names revisions: `kubectl rollout undo deployment/NAME -n NS --to-revision=PREVIOUS`, \
undone by `--to-revision=LIVE`, from the Kubernetes workloads given; a scale step is undone by \
scaling back to the replica count given.
- risk_level: low for read-only or trivially reversible steps, medium for changes to one service \
that can be rolled back, high for anything that deletes data or resources, affects several \
services, or cannot be undone. Never delete namespaces, volumes, databases or data.
- order from 1, a one-line description, and a realistic estimated_duration_seconds.
Set requires_human_approval to true unless every step is low risk and reversible.

{UNTRUSTED_DATA_RULES}
"""


def render_diagnosis(rca: RootCauseHypothesis) -> str:
    lines = [
        f"category: {rca.category.value}",
        f"culprit_service: {one_line(rca.culprit_service, 200)}",
        f"culprit_deployment_sha: {rca.culprit_deployment_sha or 'none'}",
        f"confidence: {rca.confidence:.2f}",
        f"primary_cause: {one_line(rca.primary_cause, 1000)}",
    ]
    if rca.contributing_factors:
        lines.append("contributing_factors:")
        lines.extend(f"  - {one_line(item, 300)}" for item in rca.contributing_factors[:10])
    if rca.evidence:
        lines.append("evidence (verified log lines):")
        lines.extend(f"  - {one_line(item, 400)}" for item in rca.evidence[:6])
    if rca.reasoning:
        lines.append("reasoning:")
        lines.extend(f"  - {one_line(item, 300)}" for item in rca.reasoning[:8])
    if rca.suspects:
        lines.append("other suspects considered:")
        lines.extend(
            f"  - {one_line(s.service, 100)} (score {s.score:.2f}): {one_line(s.reason, 200)}"
            for s in rca.suspects[1:4]
        )
    return data_block("diagnosis", lines)


def render_workload(workload: WorkloadFacts) -> str:
    """What an exact rollback or scale step needs: namespace, revisions, replicas, HPA."""
    parts = [
        f"- {workload.kind.lower()}/{one_line(workload.name, 100)} -n {one_line(workload.namespace, 100)}"
    ]
    if workload.current_revision is not None:
        before = workload.revision_before(workload.current_revision)
        parts.append(f"live revision {workload.current_revision}")
        parts.append(f"previous revision {before.revision}" if before else "no previous revision recorded")
    if workload.replicas is not None:
        parts.append(f"replicas {workload.replicas} ({workload.ready_replicas or 0} ready)")
    if workload.hpa_name:
        parts.append(
            f"HPA {one_line(workload.hpa_name, 100)} min {workload.hpa_min_replicas} "
            f"max {workload.hpa_max_replicas} current {workload.hpa_current_replicas}"
        )
    return ", ".join(parts)


def build_user(
    facts: IncidentFacts, rca: RootCauseHypothesis, bundle: ContextBundle, allowed_programs: Sequence[str]
) -> str:
    deployments = [d for d in sorted(bundle.deployments, key=lambda d: d.created_at)][-10:]
    evidence = ["Recent production deployments (oldest first):"]
    evidence.extend(render_deployment(d) for d in deployments)
    if not deployments:
        evidence.append("- none found")
    if bundle.workloads:
        evidence.append("Kubernetes workloads (read when the evidence was gathered):")
        evidence.extend(render_workload(w) for w in bundle.workloads[:10])
    return "\n".join(
        [
            f"Plan the remediation of incident {one_line(facts.incident_id)}.",
            f"Allowed programs (the first word of every command): {', '.join(allowed_programs) or 'none'}.",
            "",
            render_facts(facts),
            "",
            "The diagnosis (produced from untrusted evidence, verified in code):",
            render_diagnosis(rca),
            "",
            data_block("evidence", [*evidence, *render_plan_metrics(bundle)]),
            "",
            "Call the RemediationPlan tool with your plan.",
        ]
    )


MAX_PLAN_METRICS = 12


def render_plan_metrics(bundle: ContextBundle) -> list[str]:
    """The most changed metrics: they tell "rising" from "flat at a limit", "primary down" from
    "connections at a limit", and whether a fallback keeps customers served."""
    metrics = sorted(bundle.metrics, key=metric_change, reverse=True)[:MAX_PLAN_METRICS]
    lines = ["Metrics (now vs the same window 7 days ago, most changed first):"]
    lines.extend(render_metric(m) for m in metrics)
    if not metrics:
        lines.append("- none found")
    return lines
