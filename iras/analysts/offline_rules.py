"""Rules of the offline analyst: severity, category, culprit, remediation action."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from iras.analysts.base import IncidentFacts
from iras.analysts.runbooks import RunbookTarget
from iras.analysts.signatures import Match, match_lines
from iras.schemas import (
    Category,
    ContextBundle,
    Deployment,
    RootCauseHypothesis,
    RunbookAction,
    Severity,
)

_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")


@dataclass
class SeverityAssessment:
    severity: Severity
    confidence: float
    reasons: list[str] = field(default_factory=list)
    impact: str = ""


def _alert_text(facts: IncidentFacts) -> str:
    parts = [facts.title]
    for alert in facts.alerts:
        parts.append(alert.title)
        if alert.description:
            parts.append(alert.description)
        parts.extend(alert.annotations.values())
    return " ".join(parts)


def assess_alert_severity(facts: IncidentFacts) -> SeverityAssessment:
    """Severity from what the alert itself says (the evidence is not gathered yet)."""
    text = _alert_text(facts)
    reasons: list[str] = []
    failure_pcts = [float(m.group(1)) for m in _PERCENT.finditer(text)]
    worst = max(failure_pcts, default=0.0)
    if worst >= 90:
        return SeverityAssessment(Severity.P0, 0.6, [f"alert reports {worst}%"], "service unavailable")
    if worst >= 20:
        return SeverityAssessment(Severity.P1, 0.5, [f"alert reports {worst}%"], "major degradation")
    reasons.append("no failure ratio in the alert; partial degradation assumed until evidence is read")
    return SeverityAssessment(Severity.P2, 0.3, reasons, "")


@dataclass
class Diagnosis:
    hypothesis: RootCauseHypothesis
    severity: Severity
    severity_reasons: list[str]
    action: RunbookAction


_ERROR_LEVELS = {"ERROR", "WARN", "WARNING", "CRITICAL", "FATAL"}


def _deployment_before(
    deployments: list[Deployment], service: str, first_error_at: object
) -> Deployment | None:
    candidates = [
        d
        for d in deployments
        if d.service == service
        and first_error_at is not None
        and d.created_at <= first_error_at  # type: ignore[operator]
        and first_error_at - d.created_at <= timedelta(hours=2)  # type: ignore[operator]
    ]
    return max(candidates, key=lambda d: d.created_at) if candidates else None


def diagnose(facts: IncidentFacts, bundle: ContextBundle) -> Diagnosis:
    """First-cut diagnosis: signature votes per service, deploy correlation."""
    error_lines = [line for line in bundle.logs if line.level.upper() in _ERROR_LEVELS]
    matches = [m for m in match_lines(error_lines) if m.signature.role != "noise"]
    by_service: dict[str, float] = defaultdict(float)
    by_category: dict[Category, float] = defaultdict(float)
    for m in matches:
        weight = m.signature.weight * (1.0 if m.signature.role == "cause" else 0.3)
        by_service[m.line.service] += weight
        by_category[m.signature.category] += weight
    reasoning: list[str] = []
    if not matches:
        hyp = RootCauseHypothesis(
            primary_cause="No error signature in the logs; the alert looks like a false alarm",
            category=Category.FALSE_ALARM,
            culprit_service=facts.service or "unknown",
            confidence=0.5,
            reasoning=["rule false_alarm: no log line matched a failure signature"],
        )
        return Diagnosis(hyp, Severity.P3, ["false alarm"], RunbookAction.NONE)
    culprit = max(by_service.items(), key=lambda kv: kv[1])[0]
    category = max(by_category.items(), key=lambda kv: kv[1])[0]
    culprit_matches = [m for m in matches if m.line.service == culprit]
    first_error = min(m.line.timestamp for m in culprit_matches)
    deploy = _deployment_before(bundle.deployments, culprit, first_error)
    if deploy and category is Category.BAD_DEPLOY:
        reasoning.append(f"rule deploy_before_first_error: {deploy.sha[:7]} at {deploy.created_at}")
    elif category is Category.BAD_DEPLOY:
        deploy = None
    else:
        deploy = None
    evidence: list[str] = []
    for m in sorted(culprit_matches, key=lambda m: -m.signature.weight):
        if m.line.message not in evidence:
            evidence.append(m.line.message)
        if len(evidence) >= 8:
            break
    hyp = RootCauseHypothesis(
        primary_cause=f"{category.value.replace('_', ' ')} in {culprit}",
        category=category,
        culprit_service=culprit,
        culprit_deployment_sha=deploy.sha if deploy else None,
        evidence=evidence,
        confidence=0.6,
        reasoning=reasoning + [f"signature votes: {dict(by_category)}"],
    )
    severity = assess_alert_severity(facts)
    action = DEFAULT_ACTIONS.get(category, RunbookAction.RESTART_SERVICE)
    return Diagnosis(hyp, severity.severity, severity.reasons, action)


DEFAULT_ACTIONS: dict[Category, RunbookAction] = {
    Category.BAD_DEPLOY: RunbookAction.ROLLBACK_DEPLOYMENT,
    Category.CONFIG_CHANGE: RunbookAction.REVERT_CONFIG,
    Category.RESOURCE_EXHAUSTION: RunbookAction.INCREASE_RESOURCE_LIMIT,
    Category.DEPENDENCY_FAILURE: RunbookAction.FAILOVER,
    Category.CAPACITY: RunbookAction.SCALE_OUT,
    Category.CERTIFICATE_EXPIRY: RunbookAction.RENEW_CERTIFICATE,
    Category.DATABASE: RunbookAction.FAILOVER,
    Category.NETWORK: RunbookAction.FAILOVER,
    Category.DATA_CORRUPTION: RunbookAction.ROLLBACK_DEPLOYMENT,
    Category.FALSE_ALARM: RunbookAction.NONE,
}


def choose_action(rca: RootCauseHypothesis, bundle: ContextBundle) -> RunbookAction:
    if rca.category is Category.FALSE_ALARM:
        return RunbookAction.NONE
    if rca.category is Category.DATA_CORRUPTION and not rca.culprit_deployment_sha:
        return RunbookAction.REVERT_CONFIG
    return DEFAULT_ACTIONS.get(rca.category, RunbookAction.RESTART_SERVICE)


def runbook_target(rca: RootCauseHypothesis, bundle: ContextBundle, namespace: str) -> RunbookTarget:
    return RunbookTarget(
        service=rca.culprit_service,
        namespace=namespace,
        deployment_sha=rca.culprit_deployment_sha,
    )


__all__ = [
    "Diagnosis",
    "Match",
    "SeverityAssessment",
    "assess_alert_severity",
    "choose_action",
    "diagnose",
    "runbook_target",
]
