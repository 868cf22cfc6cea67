"""An analyst whose "model" answers instantly: the benchmarks measure the
pipeline (queues, transactions, storage), not a model's wall time.

Every answer is a valid typed result built from the incident itself, and the
plan always has three low-risk, reversible, allowlisted steps, the shape the
competing design was measured with. It is not a stub that skips work: the
pipeline still validates, stores, transitions and notifies as in production.
"""

from __future__ import annotations

from iras.analysts.base import IncidentFacts, PostMortemInput, StageOutput
from iras.schemas import (
    Category,
    ContextBundle,
    PostMortem,
    RemediationPlan,
    RemediationStep,
    RiskLevel,
    RootCauseHypothesis,
    RunbookAction,
    Severity,
    TriageResult,
)

MODEL = "instant-stub"


class InstantAnalyst:
    name = "instant"

    def triage(self, facts: IncidentFacts) -> StageOutput[TriageResult]:
        service = facts.service or "unknown-service"
        return StageOutput(
            result=TriageResult(
                severity=Severity.P1,
                affected_services=[service],
                blast_radius=f"Requests to {service} fail for a share of customers.",
                confidence=0.8,
                rationale="The alert reports an elevated error ratio on a customer-facing service.",
            ),
            analyst=self.name,
            model=MODEL,
            input_tokens=900,
            output_tokens=120,
        )

    def analyze(
        self, facts: IncidentFacts, bundle: ContextBundle, attempt: int
    ) -> StageOutput[RootCauseHypothesis]:
        service = facts.service or "unknown-service"
        deploy = bundle.deployments[-1] if bundle.deployments else None
        errors = [line.message for line in bundle.logs if line.level == "ERROR"] or [
            line.message for line in bundle.logs
        ]
        return StageOutput(
            result=RootCauseHypothesis(
                primary_cause=f"Deployment {deploy.sha[:7]} of {deploy.service} introduced errors"
                if deploy
                else f"{service} is failing",
                category=Category.BAD_DEPLOY if deploy else Category.DEPENDENCY_FAILURE,
                culprit_service=deploy.service if deploy else service,
                culprit_deployment_sha=deploy.sha if deploy else None,
                evidence=errors[-1:],
                confidence=0.9,
                reasoning=["Errors start right after the newest deployment of the culprit service."],
            ),
            analyst=self.name,
            model=MODEL,
            input_tokens=6000,
            output_tokens=400,
        )

    def plan(
        self, facts: IncidentFacts, rca: RootCauseHypothesis, bundle: ContextBundle
    ) -> StageOutput[RemediationPlan]:
        svc = rca.culprit_service
        steps = [
            RemediationStep(
                order=1,
                action=RunbookAction.ROLLBACK_DEPLOYMENT,
                description=f"Roll back {svc} to the previous revision",
                command=f"kubectl rollout undo deployment/{svc}",
                rollback_command=f"kubectl rollout undo deployment/{svc}",
                risk_level=RiskLevel.MEDIUM,
            ),
            RemediationStep(
                order=2,
                action=RunbookAction.RESTART_SERVICE,
                description=f"Restart {svc} pods to drop poisoned caches",
                command=f"kubectl rollout restart deployment/{svc}",
                rollback_command=f"kubectl rollout status deployment/{svc}",
                risk_level=RiskLevel.LOW,
            ),
            RemediationStep(
                order=3,
                action=RunbookAction.SCALE_OUT,
                description=f"Scale {svc} out while the error budget recovers",
                command=f"kubectl scale deployment/{svc} --replicas=6",
                rollback_command=f"kubectl scale deployment/{svc} --replicas=3",
                risk_level=RiskLevel.LOW,
            ),
        ]
        return StageOutput(
            result=RemediationPlan(summary=f"Roll back and stabilise {svc}", steps=steps),
            analyst=self.name,
            model=MODEL,
            input_tokens=3000,
            output_tokens=500,
        )

    def postmortem(self, data: PostMortemInput) -> StageOutput[PostMortem]:
        service = data.facts.service or "unknown-service"
        return StageOutput(
            result=PostMortem(
                title=f"{service}: incident review",
                outcome=data.outcome,
                severity=data.triage.severity if data.triage else None,
                summary="An alert fired; the pipeline diagnosed the cause and remediated it.",
                impact=f"Customers of {service} saw errors until remediation completed.",
                root_cause=data.rca.primary_cause if data.rca else "unknown",
                resolution="The remediation plan was approved and executed.",
                action_items=["Add a canary stage to the deployment pipeline."],
            ),
            analyst=self.name,
            model=MODEL,
            input_tokens=2500,
            output_tokens=600,
        )
