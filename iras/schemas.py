"""Typed results that flow through the pipeline.

Every analysis stage (offline rules or Claude through instructor) returns one of
these models; they are validated before anything is stored, and stored as JSON
in `stage_results.result`. The diagnosis lives in fields that can be checked
(category, culprit service, culprit deployment, verbatim evidence, runbook
action), not in prose.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Severity(StrEnum):
    P0 = "P0"
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"

    @property
    def rank(self) -> int:
        return int(self.value[1])


class Category(StrEnum):
    """Failure modes, as defined in shared/scenarios/README.md."""

    BAD_DEPLOY = "bad_deploy"
    CONFIG_CHANGE = "config_change"
    RESOURCE_EXHAUSTION = "resource_exhaustion"
    DEPENDENCY_FAILURE = "dependency_failure"
    CAPACITY = "capacity"
    CERTIFICATE_EXPIRY = "certificate_expiry"
    DATABASE = "database"
    NETWORK = "network"
    DATA_CORRUPTION = "data_corruption"
    FALSE_ALARM = "false_alarm"


class RunbookAction(StrEnum):
    ROLLBACK_DEPLOYMENT = "rollback_deployment"
    RESTART_SERVICE = "restart_service"
    SCALE_OUT = "scale_out"
    FAILOVER = "failover"
    RENEW_CERTIFICATE = "renew_certificate"
    REVERT_CONFIG = "revert_config"
    INCREASE_RESOURCE_LIMIT = "increase_resource_limit"
    NONE = "none"


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)


# --------------------------------------------------------------------------- ingest


class NormalizedAlert(_Model):
    """One alert as any source adapter hands it to the pipeline."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, max_length=32)
    title: str = Field(min_length=1, max_length=1000)
    timestamp: datetime
    status: Literal["firing", "resolved"] = "firing"
    severity_hint: str | None = None
    service: str | None = Field(default=None, max_length=255)
    description: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    links: list[str] = Field(default_factory=list)
    fingerprint: str | None = Field(default=None, max_length=255)
    group_key: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- triage


class TriageResult(_Model):
    severity: Severity
    affected_services: list[str] = Field(min_length=1)
    blast_radius: str = Field(min_length=1, description="Who and what is affected, in one sentence.")
    confidence: float = Field(ge=0.0, le=1.0)
    rationale: str = Field(min_length=1)


# --------------------------------------------------------------------------- context


class LogLine(_Model):
    timestamp: datetime
    service: str
    level: str = "INFO"
    message: str


class MetricDelta(_Model):
    """A metric now vs the same window 7 days ago; the delta is computed in code."""

    name: str
    service: str
    query: str = ""
    current: float | None = None
    baseline_7d: float | None = None
    unit: str = ""

    @property
    def ratio(self) -> float | None:
        if self.current is None or self.baseline_7d is None:
            return None
        if self.baseline_7d == 0:
            return None if self.current == 0 else float("inf")
        return self.current / self.baseline_7d

    @property
    def delta(self) -> float | None:
        if self.current is None or self.baseline_7d is None:
            return None
        return self.current - self.baseline_7d


class Deployment(_Model):
    service: str
    sha: str
    ref: str = ""
    environment: str = "production"
    created_at: datetime
    creator: str = ""
    description: str = ""
    status: str | None = None


class SourceStatus(_Model):
    """What each context tool returned, so a gap in evidence is stated, never hidden."""

    name: str
    kind: Literal["logs", "metrics", "deployments", "kubernetes"]
    status: Literal["ok", "unavailable", "not_configured"]
    client: str = ""
    error: str | None = None
    items: int = 0
    configure: list[str] = Field(
        default_factory=list, description="Settings that would configure a not_configured source."
    )


class WorkloadRevision(_Model):
    """One entry of a workload's rollout history (a ReplicaSet of a Deployment)."""

    revision: int = Field(ge=0)
    replica_set: str = ""
    images: list[str] = Field(default_factory=list)
    change_cause: str = ""
    created_at: datetime | None = None
    replicas: int = 0


class WorkloadFacts(_Model):
    """What Kubernetes said about one workload: what remediation needs to be exact
    (the live revision and the one before it, the replica count, the HPA bounds)."""

    kind: str = Field(
        min_length=1, description="Deployment, StatefulSet, DaemonSet, CronJob, Job, ReplicaSet or Pod."
    )
    name: str = Field(min_length=1)
    namespace: str = Field(min_length=1)
    service: str = Field(default="", description="The service whose label selector found it.")
    replicas: int | None = Field(default=None, description="spec.replicas when the request was made.")
    ready_replicas: int | None = None
    current_revision: int | None = None
    revisions: list[WorkloadRevision] = Field(default_factory=list)
    hpa_name: str | None = None
    hpa_min_replicas: int | None = None
    hpa_max_replicas: int | None = None
    hpa_current_replicas: int | None = None
    hpa_desired_replicas: int | None = None
    memory_limits: dict[str, str] = Field(default_factory=dict, description="Container name -> memory limit.")

    def revision_before(self, revision: int) -> WorkloadRevision | None:
        """The newest recorded revision older than `revision` (what `rollout undo` returns to)."""
        older = [r for r in self.revisions if r.revision < revision]
        return max(older, key=lambda r: r.revision) if older else None


class ContextBundle(_Model):
    window_start: datetime
    window_end: datetime
    window_minutes: int = Field(ge=1)
    services: list[str] = Field(default_factory=list)
    logs: list[LogLine] = Field(default_factory=list)
    metrics: list[MetricDelta] = Field(default_factory=list)
    deployments: list[Deployment] = Field(default_factory=list)
    sources: list[SourceStatus] = Field(default_factory=list)
    # Facts from the Kubernetes source (revisions, replicas, HPA bounds) for exact remediation.
    workloads: list[WorkloadFacts] = Field(default_factory=list)


# --------------------------------------------------------------------------- RCA


class Suspect(_Model):
    """One candidate cause, ranked; the RCA hands the top few over instead of one guess."""

    service: str = Field(min_length=1, description="The component where this candidate cause would live.")
    score: float = Field(ge=0.0, le=1.0, description="Relative support from the evidence.")
    category: Category | None = None
    reason: str = Field(default="", description="Why this candidate is suspected, in one sentence.")
    evidence: list[str] = Field(
        default_factory=list, description="Log lines quoted verbatim for this candidate."
    )


class RootCauseHypothesis(_Model):
    primary_cause: str = Field(min_length=1)
    category: Category
    culprit_service: str = Field(min_length=1)
    culprit_deployment_sha: str | None = None
    contributing_factors: list[str] = Field(default_factory=list)
    evidence: list[str] = Field(
        default_factory=list, description="Log lines quoted verbatim from the evidence."
    )
    confidence: float = Field(ge=0.0, le=1.0)
    reasoning: list[str] = Field(default_factory=list, description="The rules or observations that led here.")
    suspects: list[Suspect] = Field(
        default_factory=list, max_length=5, description="The top candidates, best first, with their evidence."
    )
    severity: Severity | None = Field(
        default=None,
        description="Severity re-judged from the evidence; replaces triage's when it differs.",
    )
    severity_reason: str | None = Field(default=None, description="Why the evidence changed the severity.")


# --------------------------------------------------------------------------- plan

SHELL_METACHARACTERS = set(";|&`$<>\\\n\r")


class RemediationStep(_Model):
    order: int = Field(ge=1)
    action: RunbookAction
    description: str = Field(min_length=1)
    command: str = Field(min_length=1)
    rollback_command: str | None = None
    risk_level: RiskLevel
    estimated_duration_seconds: int = Field(default=60, ge=0)
    executable: bool = True
    safety_notes: list[str] = Field(default_factory=list)

    def argv(self) -> list[str]:
        return shlex.split(self.command)

    def rollback_argv(self) -> list[str] | None:
        return shlex.split(self.rollback_command) if self.rollback_command else None


class RemediationPlan(_Model):
    summary: str = Field(min_length=1)
    steps: list[RemediationStep] = Field(default_factory=list)
    requires_human_approval: bool = True
    reversible: bool = True
    safety_notes: list[str] = Field(default_factory=list)

    @property
    def first_action(self) -> RunbookAction:
        return self.steps[0].action if self.steps else RunbookAction.NONE


# --------------------------------------------------------------------------- post-mortem


class TimelineEntry(_Model):
    at: datetime
    event: str
    detail: str = ""
    actor: str = "iras"


class PostMortem(_Model):
    title: str = Field(min_length=1)
    outcome: str
    severity: Severity | None = None
    summary: str = Field(min_length=1)
    impact: str = ""
    root_cause: str = Field(min_length=1)
    resolution: str = Field(min_length=1)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    action_items: list[str] = Field(default_factory=list)
    cost: dict[str, Any] = Field(default_factory=dict)
