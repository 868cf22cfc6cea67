"""Checks in code on what a model answered: nothing it says is trusted unverified.

A language model can quote a log line that does not exist, name a deployment it
was never shown, or call `kubectl delete namespace prod` low risk. These
functions catch that deterministically and make the result safer, never
riskier:

* `verify_rca`: cited evidence must be a verbatim substring of a log line the
  model was given (whitespace runs compared as one space); unverified
  citations are dropped and lower the confidence. The culprit deployment must
  be one of the deployments given, else it becomes `None` and the confidence
  drops. Each suspect keeps only its verified citations, and a culprit that is
  not the top suspect, one named nowhere in what the model was shown, or a
  runner-up suspect scored almost as high, caps the confidence below the
  threshold. A false alarm is P3 by definition.
* `verify_plan` (pure, also called by the core's safety module on every plan):
  each command must parse, carry no shell metacharacter, start with a program
  on the allowlist and not be a destructive verb; otherwise the step becomes
  high risk and not executable. A rollback that fails the same checks is
  removed. A missing rollback makes the plan irreversible, and any high-risk
  step or missing rollback forces human approval.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from iras.safety import command_problem
from iras.schemas import (
    Category,
    Deployment,
    RemediationPlan,
    RemediationStep,
    RiskLevel,
    RootCauseHypothesis,
    Severity,
)

if TYPE_CHECKING:
    from iras.config import Settings

# --------------------------------------------------------------------------- RCA

# Shorter "citations" (e.g. "ERROR", "timeout") are substrings of almost any log
# and prove nothing about the diagnosis.
MIN_CITATION_CHARS = 8
# Each fabricated citation costs this much confidence, up to the cap: a model
# that invents evidence is less trustworthy in everything else it said.
PENALTY_PER_UNVERIFIED_CITATION = 0.1
MAX_CITATION_PENALTY = 0.3
# With no verified evidence at all the diagnosis stays below the default
# confidence threshold (0.7), so the pipeline widens the window or escalates
# instead of acting on it.
CONFIDENCE_CAP_WITHOUT_EVIDENCE = 0.5
# A diagnosis whose own ranking puts another component first contradicts itself:
# it stays below the default threshold, so IRAS escalates with the suspects.
CONFIDENCE_CAP_CULPRIT_NOT_TOP_SUSPECT = 0.6
# A runner-up the model itself scores nearly as high as its culprit means the
# evidence does not single one cause out: the diagnosis stays below the default gate.
MIN_SUSPECT_MARGIN = 0.2
CONFIDENCE_CAP_NARROW_MARGIN = 0.65
# A culprit must be nameable from what the model saw (a runbook has to find it).
CONFIDENCE_CAP_UNSEEN_CULPRIT = 0.6
PENALTY_UNKNOWN_DEPLOYMENT = 0.2
PENALTY_DEPLOYMENT_OF_OTHER_SERVICE = 0.1
MIN_SHA_PREFIX = 7

_NULL_SHAS = {"", "none", "null", "n/a", "unknown"}


def _squash(text: str) -> str:
    return " ".join(text.split())


def _same_component(a: str, b: str) -> bool:
    """Case-insensitive equality, or one name inside the other ("stripe" / "api.stripe.com")."""
    a, b = _squash(a).lower(), _squash(b).lower()
    if a == b:
        return True
    shorter, longer = sorted((a, b), key=len)
    return len(shorter) >= 3 and shorter in longer


@dataclass
class RcaVerification:
    """What verification changed, stored with the stage result for the audit trail."""

    verified_citations: list[str] = field(default_factory=list)
    dropped_citations: list[str] = field(default_factory=list)
    deployment_rejected: str | None = None
    confidence_before: float = 0.0
    confidence_after: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_citations(citations: Iterable[str], evidence: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split citations into (verified, dropped); duplicates are kept once."""
    haystack = [_squash(text) for text in evidence]
    verified: list[str] = []
    dropped: list[str] = []
    seen: set[str] = set()
    for citation in citations:
        needle = _squash(citation)
        if not needle or needle in seen:
            continue
        seen.add(needle)
        if len(needle) >= MIN_CITATION_CHARS and any(needle in text for text in haystack):
            verified.append(citation.strip())
        else:
            dropped.append(citation)
    return verified, dropped


def match_deployment(sha: str | None, deployments: Sequence[Deployment]) -> Deployment | None:
    """The deployment `sha` names: exact, or an unambiguous prefix of at least 7 characters."""
    if sha is None:
        return None
    wanted = sha.strip().lower()
    if len(wanted) < MIN_SHA_PREFIX:
        return None
    exact = [d for d in deployments if d.sha.lower() == wanted]
    if exact:
        return exact[0]
    prefixed = {d.sha.lower(): d for d in deployments if d.sha.lower().startswith(wanted)}
    return next(iter(prefixed.values())) if len(prefixed) == 1 else None


def verify_rca(
    hypothesis: RootCauseHypothesis,
    *,
    evidence: Sequence[str],
    deployments: Sequence[Deployment],
    seen: str | None = None,
) -> tuple[RootCauseHypothesis, RcaVerification]:
    """Drop unverifiable citations and unknown deployments; lower the confidence accordingly.

    `seen`, when given, is everything the model was shown: a culprit named nowhere in
    it is a name the model made up, and caps the confidence below the threshold.
    """
    report = RcaVerification(confidence_before=hypothesis.confidence)
    confidence = hypothesis.confidence
    if seen is not None and _squash(hypothesis.culprit_service).lower() not in _squash(seen).lower():
        if confidence > CONFIDENCE_CAP_UNSEEN_CULPRIT:
            report.notes.append(
                f"the culprit {hypothesis.culprit_service!r} is named nowhere in the alert or the evidence:"
                f" confidence capped at {CONFIDENCE_CAP_UNSEEN_CULPRIT:.2f}"
            )
        confidence = min(confidence, CONFIDENCE_CAP_UNSEEN_CULPRIT)

    verified, dropped = verify_citations(hypothesis.evidence, evidence)
    report.verified_citations, report.dropped_citations = verified, dropped
    if dropped:
        penalty = min(MAX_CITATION_PENALTY, PENALTY_PER_UNVERIFIED_CITATION * len(dropped))
        confidence -= penalty
        report.notes.append(
            f"dropped {len(dropped)} cited line(s) not found verbatim in the evidence given (-{penalty:.2f})"
        )
    if not verified:
        if confidence > CONFIDENCE_CAP_WITHOUT_EVIDENCE:
            report.notes.append(
                f"no verified evidence: confidence capped at {CONFIDENCE_CAP_WITHOUT_EVIDENCE:.2f}"
            )
        confidence = min(confidence, CONFIDENCE_CAP_WITHOUT_EVIDENCE)

    sha = hypothesis.culprit_deployment_sha
    if sha is not None and sha.strip().lower() in _NULL_SHAS:
        sha = None
    if sha is not None:
        deployment = match_deployment(sha, deployments)
        if deployment is None:
            report.deployment_rejected = sha
            confidence -= PENALTY_UNKNOWN_DEPLOYMENT
            report.notes.append(
                f"culprit deployment {sha!r} is not among the {len(deployments)} deployment(s) in the evidence:"
                f" set to none (-{PENALTY_UNKNOWN_DEPLOYMENT:.2f})"
            )
            sha = None
        else:
            sha = deployment.sha
            if deployment.service != hypothesis.culprit_service:
                confidence -= PENALTY_DEPLOYMENT_OF_OTHER_SERVICE
                report.notes.append(
                    f"culprit deployment {sha[:12]} belongs to {deployment.service!r}, not to the culprit service"
                    f" {hypothesis.culprit_service!r} (-{PENALTY_DEPLOYMENT_OF_OTHER_SERVICE:.2f})"
                )

    suspects = []
    for suspect in hypothesis.suspects:
        kept, unverified = verify_citations(suspect.evidence, evidence)
        if unverified:
            report.notes.append(
                f"suspect {suspect.service!r}: dropped {len(unverified)} cited line(s) not found verbatim"
            )
        suspects.append(suspect.model_copy(update={"evidence": kept}))
    if suspects and not _same_component(suspects[0].service, hypothesis.culprit_service):
        if confidence > CONFIDENCE_CAP_CULPRIT_NOT_TOP_SUSPECT:
            report.notes.append(
                f"the top suspect {suspects[0].service!r} is not the culprit {hypothesis.culprit_service!r}:"
                f" confidence capped at {CONFIDENCE_CAP_CULPRIT_NOT_TOP_SUSPECT:.2f}"
            )
        confidence = min(confidence, CONFIDENCE_CAP_CULPRIT_NOT_TOP_SUSPECT)
    if len(suspects) >= 2 and suspects[0].score - suspects[1].score < MIN_SUSPECT_MARGIN:
        if confidence > CONFIDENCE_CAP_NARROW_MARGIN:
            report.notes.append(
                f"the runner-up {suspects[1].service!r} scores {suspects[1].score:.2f} against"
                f" {suspects[0].score:.2f}: confidence capped at {CONFIDENCE_CAP_NARROW_MARGIN:.2f}"
            )
        confidence = min(confidence, CONFIDENCE_CAP_NARROW_MARGIN)

    severity, severity_reason = hypothesis.severity, hypothesis.severity_reason
    if hypothesis.category is Category.FALSE_ALARM and severity is not Severity.P3:
        # By definition nothing is broken for users: a false alarm is P3, whatever was said.
        report.notes.append(f"false alarm: severity {severity.value if severity else 'unset'} -> P3")
        severity, severity_reason = Severity.P3, "a false alarm: nothing is broken for customers"

    confidence = round(max(0.0, min(1.0, confidence)), 4)
    report.confidence_after = confidence
    checked = hypothesis.model_copy(
        update={
            "evidence": verified,
            "suspects": suspects,
            "severity": severity,
            "severity_reason": severity_reason,
            "culprit_deployment_sha": sha,
            "confidence": confidence,
            "reasoning": [*hypothesis.reasoning, *(f"verification: {note}" for note in report.notes)],
        }
    )
    return RootCauseHypothesis.model_validate(checked.model_dump()), report


# --------------------------------------------------------------------------- plans

# The command policy lives in iras/safety.py (one rule for every analyst and the executor).


def _allowed(settings_or_allowed: Settings | Iterable[str]) -> list[str]:
    allowed = getattr(settings_or_allowed, "remediation_allowed_commands", settings_or_allowed)
    return list(allowed)  # type: ignore[arg-type]


def verify_step(step: RemediationStep, allowed: Iterable[str]) -> tuple[RemediationStep, list[str]]:
    """One step made safe; returns it with the plan-level notes it produced."""
    allowed = list(allowed)
    update: dict[str, Any] = {}
    step_notes = list(step.safety_notes)
    plan_notes: list[str] = []

    problem = command_problem(step.command, allowed)
    if problem:
        if step.risk_level != RiskLevel.HIGH:
            plan_notes.append(
                f"step {step.order}: risk raised from {step.risk_level.value} to high ({problem})"
            )
        update["risk_level"] = RiskLevel.HIGH
        update["executable"] = False
        step_notes.append(f"not executable: {problem}; run it by hand only after review")

    rollback = step.rollback_command
    if rollback is not None and not rollback.strip():
        rollback = None
    if rollback is not None:
        rollback_problem = command_problem(rollback, allowed)
        if rollback_problem:
            step_notes.append(f"rollback removed ({rollback_problem}): {rollback!r}")
            plan_notes.append(f"step {step.order}: rollback command rejected ({rollback_problem})")
            rollback = None
    if rollback is None:
        step_notes.append("no usable rollback: this step cannot be undone automatically")
    update["rollback_command"] = rollback

    update["safety_notes"] = list(dict.fromkeys(step_notes))
    return step.model_copy(update=update), plan_notes


def verify_plan(plan: RemediationPlan, settings: Settings | Iterable[str]) -> RemediationPlan:
    """The plan made safe: unsafe steps gated, irreversibility stated, approval forced when due.

    Pure: it never lowers a risk, never clears `requires_human_approval`, never
    marks a step executable that was not. `settings` may also be the allowlist itself.
    """
    allowed = _allowed(settings)
    notes = list(plan.safety_notes)
    steps: list[RemediationStep] = []
    for step in plan.steps:
        checked, step_notes = verify_step(step, allowed)
        steps.append(checked)
        notes.extend(step_notes)

    reversible = plan.reversible and all(step.rollback_command for step in steps)
    if plan.reversible and not reversible:
        notes.append("plan is not reversible: at least one step has no usable rollback")
    high = [step.order for step in steps if step.risk_level == RiskLevel.HIGH]
    approval = plan.requires_human_approval or bool(high) or not reversible
    if approval and not plan.requires_human_approval:
        reason = f"high-risk step(s) {high}" if high else "no rollback"
        notes.append(f"human approval required ({reason})")
    checked_plan = plan.model_copy(
        update={
            "steps": steps,
            "reversible": reversible,
            "requires_human_approval": approval,
            "safety_notes": list(dict.fromkeys(notes)),
        }
    )
    return RemediationPlan.model_validate(checked_plan.model_dump())
