"""A test analyst that delegates to the real offline analyst and overrides one
aspect (a confidence that never reaches the threshold, a given plan) so a
pipeline path can be driven on purpose. The pipeline under test stays real."""

from __future__ import annotations

from typing import Any

from iras.analysts.base import IncidentFacts, PostMortemInput, StageOutput
from iras.analysts.offline import OfflineAnalyst
from iras.schemas import (
    ContextBundle,
    PostMortem,
    RemediationPlan,
    RemediationStep,
    RootCauseHypothesis,
    Severity,
    TriageResult,
)


def restart_plan(steps: int) -> RemediationPlan:
    """A plan of `steps` low-risk, reversible restarts (the dry-run executor runs them)."""
    return RemediationPlan(
        summary="restart",
        steps=[
            RemediationStep(
                order=i,
                action="restart_service",
                description=f"restart api-{i}",
                command=f"kubectl rollout restart deployment/api-{i}",
                rollback_command=f"kubectl rollout undo deployment/api-{i}",
                risk_level="low",
            )
            for i in range(1, steps + 1)
        ],
    )


class ScriptedAnalyst:
    name = "scripted"

    def __init__(
        self,
        confidence: float | None = None,
        plan: RemediationPlan | None = None,
        fail: dict[str, Exception] | None = None,
        severity: str | None = None,
        severity_in_extra: bool = False,
    ) -> None:
        self.inner = OfflineAnalyst()
        self.severity = severity  # the RCA re-assesses the incident's severity to this
        # ... in the typed field, or only in `extra["severity"]` (an analyst without the field)
        self.severity_in_extra = severity_in_extra
        self.confidence = confidence
        self.fixed_plan = plan
        self.fail = fail or {}
        self.calls: list[tuple[str, Any]] = []
        self.postmortem_inputs: list[PostMortemInput] = []  # what each post-mortem was written from

    def _maybe_fail(self, stage: str) -> None:
        if stage in self.fail:
            raise self.fail[stage]

    def triage(self, facts: IncidentFacts) -> StageOutput[TriageResult]:
        self.calls.append(("triage", facts.incident_id))
        self._maybe_fail("triage")
        return self.inner.triage(facts)

    def analyze(
        self, facts: IncidentFacts, bundle: ContextBundle, attempt: int
    ) -> StageOutput[RootCauseHypothesis]:
        self.calls.append(("rca", bundle.window_minutes))
        self._maybe_fail("rca")
        out = self.inner.analyze(facts, bundle, attempt)
        if self.confidence is not None:
            out.result = out.result.model_copy(update={"confidence": self.confidence})
        if self.severity is not None and self.severity_in_extra:
            out.result = out.result.model_copy(update={"severity": None, "severity_reason": None})
            out.extra["severity"] = self.severity
        elif self.severity is not None:
            out.result = out.result.model_copy(
                update={"severity": Severity(self.severity), "severity_reason": "scripted"}
            )
        return out

    def plan(
        self, facts: IncidentFacts, rca: RootCauseHypothesis, bundle: ContextBundle
    ) -> StageOutput[RemediationPlan]:
        self.calls.append(("plan", facts.incident_id))
        self._maybe_fail("plan")
        if self.fixed_plan is not None:
            return StageOutput(result=self.fixed_plan, analyst=self.name)
        return self.inner.plan(facts, rca, bundle)

    def postmortem(self, data: PostMortemInput) -> StageOutput[PostMortem]:
        self.calls.append(("postmortem", data.outcome))
        self.postmortem_inputs.append(data)
        self._maybe_fail("postmortem")
        return self.inner.postmortem(data)
