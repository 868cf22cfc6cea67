"""The offline analyst: deterministic rules, no network, every conclusion explained.

IRAS must work with no API key (air-gapped sites, cost caps, provider outages).
This analyst implements the same `Analyst` protocol as the Claude analyst with
plain rules over the alert and the evidence bundle: `iras.analysts.facts` reads the
evidence's structure (candidates, dependency edges, anomalies, onsets, changes),
`iras.analysts.offline_rules` decides (false alarm, root, category, action, severity,
confidence), the remediation steps come from `iras.analysts.runbooks`.
"""

from __future__ import annotations

import time

from iras.analysts.base import IncidentFacts, PostMortemInput, StageOutput
from iras.analysts.offline_rules import assess_alert_severity, choose_action, diagnose, runbook_target
from iras.analysts.runbooks import (
    DEFAULT_NAMESPACE,
    UnsafeArgument,
    manual_plan,
    no_remediation_plan,
    step_for,
)
from iras.schemas import (
    Category,
    ContextBundle,
    NormalizedAlert,
    PostMortem,
    RemediationPlan,
    RootCauseHypothesis,
    RunbookAction,
    Severity,
    TimelineEntry,
    TriageResult,
)

ANALYST_NAME = "offline"


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


_NAMESPACE_LABELS = ("namespace", "kubernetes_namespace", "kube_namespace", "ns")


def _namespace(facts: IncidentFacts, service: str) -> str:
    """The namespace of `service`, read from the alert that names it, never from
    another alert of the group: a namespace belongs with its own alert's service.
    With no namespace anywhere, the default. Raises UnsafeArgument rather than guess:
    the service's alerts disagree, or they carry none while other alerts do (unless
    the service is in no alert and every alert names the same namespace)."""

    def namespace_of(alert: NormalizedAlert) -> str | None:
        return next((alert.labels[k] for k in _NAMESPACE_LABELS if alert.labels.get(k)), None)

    wanted = service.strip().lower()
    own = [a for a in facts.alerts if (a.service or "").strip().lower() == wanted]
    own_named = {n for n in map(namespace_of, own) if n}
    all_named = {n for n in map(namespace_of, facts.alerts) if n}
    if len(own_named) > 1:
        raise UnsafeArgument(f"the alerts of {service[:80]!r} name different namespaces")
    if own_named:
        return own_named.pop()
    if not all_named:
        return DEFAULT_NAMESPACE
    if not own and len(all_named) == 1 and all(map(namespace_of, facts.alerts)):
        return all_named.pop()
    raise UnsafeArgument(
        f"no alert of {service[:80]!r} names its namespace and other alerts name "
        f"{', '.join(sorted(all_named))[:120]}: refusing to guess"
    )


class OfflineAnalyst:
    """Rules-based analyst; deterministic for a given alert and bundle."""

    name = ANALYST_NAME

    # ------------------------------------------------------------------ triage
    def triage(self, facts: IncidentFacts) -> StageOutput[TriageResult]:
        start = time.perf_counter()
        assessment = assess_alert_severity(facts)
        services = [facts.service] if facts.service else []
        for alert in facts.alerts:
            if alert.service and alert.service not in services:
                services.append(alert.service)
        if not services:
            services = ["unknown"]
        blast = (
            f"{', '.join(services)}: {assessment.impact}"
            if assessment.impact
            else f"{', '.join(services)} as reported by the {facts.source} alert"
        )
        result = TriageResult(
            severity=assessment.severity,
            affected_services=services,
            blast_radius=blast[:500],
            confidence=assessment.confidence,
            rationale="; ".join(assessment.reasons) or "no measurable impact in the alert",
        )
        return StageOutput(result=result, analyst=self.name, latency_ms=_ms_since(start))

    # ------------------------------------------------------------------ RCA
    def analyze(
        self, facts: IncidentFacts, bundle: ContextBundle, attempt: int
    ) -> StageOutput[RootCauseHypothesis]:
        start = time.perf_counter()
        diagnosis = diagnose(facts, bundle)
        return StageOutput(
            result=diagnosis.hypothesis,
            analyst=self.name,
            latency_ms=_ms_since(start),
            note=f"attempt {attempt}",
            extra={
                # Severity re-assessed with the evidence (error ratios, latency); the
                # triage stage only saw the alert. The pipeline may adopt it.
                "severity": (diagnosis.hypothesis.severity or diagnosis.severity).value,
                "severity_reasons": diagnosis.severity_reasons,
                "remediation_action": diagnosis.action.value,
            },
        )

    # ------------------------------------------------------------------ plan
    def plan(
        self, facts: IncidentFacts, rca: RootCauseHypothesis, bundle: ContextBundle
    ) -> StageOutput[RemediationPlan]:
        start = time.perf_counter()
        severity = rca.severity or (facts.triage.severity if facts.triage else None)
        action = choose_action(rca, bundle, severity)
        if not bundle.logs and not bundle.metrics and not bundle.deployments:
            plan = no_remediation_plan(
                "no evidence was available (logs, metrics and deployments not gathered); "
                "a human must investigate before anything is changed"
            )
            return StageOutput(result=plan, analyst=self.name, latency_ms=_ms_since(start))
        if rca.category is Category.FALSE_ALARM or action is RunbookAction.NONE:
            reason = (
                "the alert is a false alarm; metrics are within baseline and no error evidence"
                if rca.category is Category.FALSE_ALARM
                else f"{rca.primary_cause}; nothing on our side to change, monitor and follow up"
            )
            plan = no_remediation_plan(reason)
            return StageOutput(result=plan, analyst=self.name, latency_ms=_ms_since(start))
        target = runbook_target(rca, bundle, namespace=DEFAULT_NAMESPACE)
        try:
            target.namespace = _namespace(facts, target.service)
            step = step_for(action, target, rca.category)
        except UnsafeArgument as exc:
            # A culprit name that cannot be a resource name must never reach a command line,
            # and the problem is still real: it goes to a human, never closes as "no action".
            plan = manual_plan(action, f"no safe command could be built ({exc})")
            return StageOutput(result=plan, analyst=self.name, latency_ms=_ms_since(start))
        irreversible = step.rollback_command is None
        plan = RemediationPlan(
            summary=f"{step.description} ({action.value}, {step.risk_level.value} risk) "
            f"to address: {rca.primary_cause}"[:1000],
            steps=[step],
            requires_human_approval=True,
            reversible=not irreversible,
            safety_notes=list(step.safety_notes),
        )
        return StageOutput(result=plan, analyst=self.name, latency_ms=_ms_since(start))

    # ------------------------------------------------------------------ post-mortem
    def postmortem(self, data: PostMortemInput) -> StageOutput[PostMortem]:
        start = time.perf_counter()
        return StageOutput(result=build_postmortem(data), analyst=self.name, latency_ms=_ms_since(start))


def _rejection(data: PostMortemInput) -> dict[str, str] | None:
    """The decision when the approver rejected the plan (and with it its diagnosis)."""
    decision = data.decision or {}
    if decision.get("decision") != "rejected":
        return None
    return {
        "by": str(decision.get("by") or "the approver"),
        "reason": " ".join(str(decision.get("reason") or "no reason given").split()),
    }


def _unconfirmed(data: PostMortemInput) -> bool:
    """The diagnosis never led to a plan: it stayed below the confidence gate (or had
    no evidence at all), so it is a hypothesis, not the cause of record."""
    return data.rca is not None and data.plan is None and _rejection(data) is None


def _resolution(data: PostMortemInput) -> str:
    runs = data.step_runs
    rejected = _rejection(data)
    if rejected is not None:
        return (
            f"No remediation was executed: {rejected['by']} rejected the plan "
            f"(\u201c{rejected['reason']}\u201d) and the incident was escalated to on-call."
        )
    if data.plan is not None and not data.plan.steps:
        return f"No remediation was executed: {data.plan.summary}"
    if not runs:
        return f"Outcome {data.outcome}; no remediation step was executed."
    parts = []
    for run in sorted(runs, key=lambda r: r.order):
        text = f"step {run.order} `{run.command}` {run.status}"
        if run.rolled_back:
            text += " (rolled back)"
        parts.append(text)
    return f"Outcome {data.outcome}: " + "; ".join(parts)


def _action_items(data: PostMortemInput) -> list[str]:
    rca = data.rca
    items: list[str] = []
    if rca is None:
        return ["Complete the root-cause analysis by hand: no automated diagnosis was recorded."]
    rejected = _rejection(data)
    if rejected is not None:
        # The rejected diagnosis is not the cause of record: no follow-ups built on it.
        return [
            f"Investigate the approver's lead ({rejected['by']}: \u201c{rejected['reason']}\u201d) "
            "and record the root cause actually found.",
            f"Find why the diagnosis pointed at {rca.culprit_service} "
            f"({rca.category.value.replace('_', ' ')}) and what evidence would have shown otherwise.",
        ]
    if _unconfirmed(data):
        items = [
            "Establish the root cause by hand: the automated diagnosis was not confident enough to act on."
        ]
        gap = next((r for r in reversed(rca.reasoning) if "no evidence" in r), None)
        if gap:
            items.append(f"Give IRAS evidence to diagnose from: {gap.split(': ', 1)[-1]}.")
        return items
    culprit = rca.culprit_service
    per_category = {
        Category.BAD_DEPLOY: [
            f"Add a regression test for the failure in {culprit} and gate its releases on canary error rate.",
            "Make the release pipeline roll back automatically when the error budget burns after a deploy.",
        ],
        Category.CONFIG_CHANGE: [
            f"Route configuration changes of {culprit} through review and a staged rollout.",
            "Alert on configuration changes that are followed by an error increase.",
        ],
        Category.RESOURCE_EXHAUSTION: [
            f"Right-size the limits of {culprit} and alert on saturation before exhaustion.",
            f"Find and fix the leak or growth that exhausted the resource in {culprit}.",
        ],
        Category.DEPENDENCY_FAILURE: [
            f"Add or verify a circuit breaker and fallback for calls to {culprit}.",
            f"Subscribe to {culprit} status updates and alert on its error rate directly.",
        ],
        Category.CAPACITY: [
            f"Revisit autoscaling limits and load tests for {culprit} against expected peaks.",
            "Pre-scale ahead of planned campaigns and traffic events.",
        ],
        Category.CERTIFICATE_EXPIRY: [
            f"Monitor certificate expiry for {culprit} with a 30-day warning and test renewal.",
            "Fix the renewal path (issuer permissions, automation) that let the certificate lapse.",
        ],
        Category.DATABASE: [
            f"Review connection limits, failover automation and storage health of {culprit}.",
            "Add alerts on replication lag, connection saturation and I/O errors.",
        ],
        Category.NETWORK: [
            f"Add redundancy and health checks for {culprit}; alert on link or resolver errors.",
        ],
        Category.DATA_CORRUPTION: [
            f"Validate the data produced by {culprit} before it is published and quarantine bad batches.",
            "Audit and repair the records written during the incident window.",
        ],
        Category.FALSE_ALARM: [
            "Tune the alert rule (duration, threshold, scope) so this condition does not page.",
        ],
    }
    items.extend(per_category.get(rca.category, []))
    if rca.culprit_deployment_sha:
        items.append(f"Review release {rca.culprit_deployment_sha[:12]} and its test coverage.")
    if any(run.status not in ("succeeded", "skipped") for run in data.step_runs):
        items.append("Investigate the remediation step that did not succeed and fix its runbook.")
    return items


def build_postmortem(data: PostMortemInput) -> PostMortem:
    """Assemble a blameless post-mortem from what the pipeline recorded."""
    facts = data.facts
    severity: Severity | None = data.triage.severity if data.triage else None
    rca = data.rca
    rejected = _rejection(data)
    root_cause = rca.primary_cause if rca else "Not determined: no root-cause analysis was recorded."
    if rca and rca.culprit_deployment_sha:
        root_cause += f" (release {rca.culprit_deployment_sha[:12]} of {rca.culprit_service})"
    if rca and _unconfirmed(data):
        suspects = ", ".join(f"{s.service} ({s.score:.0%})" for s in rca.suspects)
        root_cause = (
            f"Not established: the diagnosis stayed at {rca.confidence:.0%} confidence, below the gate, "
            f"and was not acted on. Leading hypothesis: {root_cause}"
            + (f". Suspects: {suspects}." if suspects else "")
        )
    if rca and rejected is not None:
        # The approver's reason leads: it is what the next responder should follow.
        root_cause = (
            f"Not established. {rejected['by']} rejected the proposed diagnosis: \u201c{rejected['reason']}\u201d. "
            f"Rejected diagnosis: {root_cause}"
        )
    timeline = sorted(data.timeline, key=lambda e: e.at)
    if not timeline and facts.alert is not None:
        timeline = [TimelineEntry(at=facts.alert.timestamp, event="alert received", detail=facts.title)]
    impact = data.triage.blast_radius if data.triage else ""
    if rca and rejected is not None:
        summary = (
            f"{facts.title}: the proposed diagnosis ({rca.category.value.replace('_', ' ')} in "
            f"{rca.culprit_service}) was rejected by {rejected['by']}: \u201c{rejected['reason']}\u201d; "
            f"outcome {data.outcome}."
        )
    elif rca and _unconfirmed(data):
        summary = (
            f"{facts.title}: root cause not established (below the confidence gate); outcome {data.outcome}."
        )
    elif rca:
        summary = (
            f"{facts.title}: {rca.category.value.replace('_', ' ')} in {rca.culprit_service}; "
            f"outcome {data.outcome}."
        )
    else:
        summary = f"{facts.title}; outcome {data.outcome}."
    return PostMortem(
        title=f"Post-mortem: {facts.title}"[:300],
        outcome=data.outcome,
        severity=severity,
        summary=summary,
        impact=impact,
        root_cause=root_cause,
        resolution=_resolution(data),
        timeline=timeline,
        action_items=_action_items(data),
        cost=dict(data.cost),
    )
