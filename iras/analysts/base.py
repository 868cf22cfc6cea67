"""The analyst interface: every analysis stage behind one typed contract.

The pipeline (the stage tasks in iras/tasks/) only ever talks to an `Analyst`; the
offline rules engine and the Claude analyst are interchangeable implementations. Each method
returns a `StageOutput` that carries the typed result plus who produced it and
what it cost, so the stage result row can record both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, Field

from iras.schemas import (
    ContextBundle,
    NormalizedAlert,
    PostMortem,
    RemediationPlan,
    RootCauseHypothesis,
    TimelineEntry,
    TriageResult,
)

T = TypeVar("T", bound=BaseModel)


@dataclass
class StageOutput(Generic[T]):
    result: T
    analyst: str
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    latency_ms: float = 0.0
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class IncidentFacts(BaseModel):
    """What an analyst may know about an incident: the alert(s), never DB handles."""

    incident_id: str
    title: str
    source: str
    service: str | None = None
    alerts: list[NormalizedAlert] = Field(default_factory=list)
    payload: dict[str, Any] = Field(default_factory=dict)
    triage: TriageResult | None = None

    @property
    def alert(self) -> NormalizedAlert | None:
        return self.alerts[0] if self.alerts else None


class StepRunView(BaseModel):
    order: int
    command: str
    status: str
    output_tail: str = ""
    rolled_back: bool = False


class PostMortemInput(BaseModel):
    facts: IncidentFacts
    outcome: str
    triage: TriageResult | None = None
    rca: RootCauseHypothesis | None = None
    plan: RemediationPlan | None = None
    step_runs: list[StepRunView] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    decision: dict[str, Any] | None = None
    cost: dict[str, Any] = Field(default_factory=dict)


class Analyst(Protocol):
    name: str

    def triage(self, facts: IncidentFacts) -> StageOutput[TriageResult]: ...

    def analyze(
        self, facts: IncidentFacts, bundle: ContextBundle, attempt: int
    ) -> StageOutput[RootCauseHypothesis]: ...

    def plan(
        self, facts: IncidentFacts, rca: RootCauseHypothesis, bundle: ContextBundle
    ) -> StageOutput[RemediationPlan]: ...

    def postmortem(self, data: PostMortemInput) -> StageOutput[PostMortem]: ...


class TransientAnalystError(Exception):
    """The model provider is overloaded, rate-limited or timed out: retry the task later.

    `retry_after` (seconds) is honoured by the Celery retry when the provider sent one.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
