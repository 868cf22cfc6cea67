"""The chaos suite's analyst: the benchmark's instant analyst, except that
every plan step runs a recorder program through the shell executor. Each run
of a step appends one line to a log file, so "no step executed twice" is
checked on what actually ran, not only on the execution records.
"""

from __future__ import annotations

import os

from bench._analyst import InstantAnalyst
from iras.analysts.base import IncidentFacts, StageOutput
from iras.schemas import (
    ContextBundle,
    RemediationPlan,
    RemediationStep,
    RiskLevel,
    RootCauseHypothesis,
    RunbookAction,
)

RECORDER_ENV = "CHAOS_STEP_RECORDER"


class RecordingAnalyst(InstantAnalyst):
    name = "chaos-instant"

    def plan(
        self, facts: IncidentFacts, rca: RootCauseHypothesis, bundle: ContextBundle
    ) -> StageOutput[RemediationPlan]:
        out = super().plan(facts, rca, bundle)
        program = os.environ.get(RECORDER_ENV)
        if not program:
            return out
        steps = [
            RemediationStep(
                order=step.order,
                action=RunbookAction.RESTART_SERVICE,
                description=step.description,
                command=f"{program} {facts.incident_id} {step.order}",
                rollback_command=f"{program} {facts.incident_id} rollback-{step.order}",
                risk_level=RiskLevel.LOW,
            )
            for step in out.result.steps
        ]
        out.result = out.result.model_copy(update={"steps": steps})
        return out
