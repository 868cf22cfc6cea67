"""The analysis stages, one Celery task each: triage -> context -> RCA -> plan (and
back to context with a wider window when the RCA is inconclusive).

Every stage task follows the same steps (grafana/oncall's escalation steps and
healthchecks' conditional updates are the model):
1. load the incident by id; return quietly if it is gone or not in the state
   this task expects (a duplicate delivery, or someone else moved it);
2. run the analyst (or the evidence sources) outside any transaction: a model
   call can take seconds;
3. commit the compare-and-set of the status, the typed result and the transition
   row together (`workflow.advance`);
4. only after that commit, send the task of the status the incident entered.
A task that runs twice therefore does its side effect at most once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from iras import dispatch
from iras.analysts.base import IncidentFacts, StageOutput
from iras.analysts.runbooks import pin_to_workloads
from iras.config import get_settings
from iras.db import post_commit, read_connection
from iras.integrations.context import evidence_gap, nothing_configured
from iras.integrations.context import gather_context as collect_evidence
from iras.safety import enforce_invariants
from iras.schemas import ContextBundle, RemediationPlan, RootCauseHypothesis, Severity, utcnow
from iras.tasks import reads
from iras.tasks.base import (
    AnalysisTask,
    PipelineTask,
    call_analyst,
    count_usage,
    guard_db,
    result_row,
    stage_task,
)
from iras.workflow import Event, IncidentStatus, advance

log = logging.getLogger(__name__)
S = IncidentStatus
T = TypeVar("T")


def _read(task: PipelineTask, fn: Callable[[Connection], T]) -> T:
    """Run the stage's reads. A database restart is transient: retry later (failing
    would have the task's on_failure escalate a healthy incident)."""
    try:
        with read_connection() as conn:
            return fn(conn)
    except OperationalError as exc:
        task.retry_later(exc)
        raise  # not reached: retry_later raises


def _then(incident_id: str, status: IncidentStatus) -> None:
    """After the stage's commit: send the task of the status the incident entered."""
    post_commit(lambda: dispatch.enqueue_stage(incident_id, status))


def _loaded(
    conn: Connection, incident_id: str, expected: IncidentStatus, *, with_triage: bool = True
) -> tuple[Any, IncidentFacts] | None:
    incident = reads.load_incident(conn, incident_id, expected)
    if incident is None:
        return None
    return incident, reads.facts(conn, incident, with_triage=with_triage)


def _evidence(conn: Connection, incident_id: str) -> ContextBundle:
    found = reads.latest_result(conn, incident_id, "context")
    if found is None:  # cannot happen through the transition table; be explicit if it does
        raise RuntimeError(f"incident {incident_id} reached analysis without evidence")
    return ContextBundle.model_validate(found)


@stage_task("incidents.run_triage", AnalysisTask)
def run_triage(self: PipelineTask, incident_id: str) -> None:
    loaded = _read(self, lambda conn: _loaded(conn, incident_id, S.TRIAGING, with_triage=False))
    if loaded is None:
        return
    _, facts = loaded
    out = call_analyst(self, "triage", facts)

    def commit() -> None:
        if (
            advance(
                incident_id,
                S.TRIAGING,
                Event.TRIAGED,
                detail={"summary": f"{out.result.severity.value}: {out.result.blast_radius}"[:300]},
                values={"severity": out.result.severity.value},
                rows=(("stage_results", result_row("triage", 1, out)),),
            )
            is not None
        ):
            count_usage("triage", out)
            _then(incident_id, S.GATHERING_CONTEXT)

    guard_db(self, commit)


@stage_task("incidents.gather_context", AnalysisTask)
def gather_context(self: PipelineTask, incident_id: str) -> None:
    """Logs, metrics against their baseline, deployments and Kubernetes state around
    the alert; each RCA attempt that comes back here widens the window."""
    loaded = _read(self, lambda conn: _loaded(conn, incident_id, S.GATHERING_CONTEXT))
    if loaded is None:
        return
    incident, facts = loaded
    attempt = incident.rca_attempts + 1
    services = list(
        dict.fromkeys(
            (facts.triage.affected_services if facts.triage else [])
            + ([facts.service] if facts.service else [])
        )
    )
    alert_time = facts.alert.timestamp if facts.alert else utcnow()
    started = time.perf_counter()
    bundle = collect_evidence(get_settings(), services, alert_time, attempt)
    out = StageOutput(
        result=bundle, analyst="context-tools", latency_ms=(time.perf_counter() - started) * 1000
    )
    unavailable = [s.name for s in bundle.sources if s.status == "unavailable"]
    unconfigured = [s.kind for s in bundle.sources if s.status == "not_configured"]

    def commit() -> None:
        if (
            advance(
                incident_id,
                S.GATHERING_CONTEXT,
                Event.CONTEXT_GATHERED,
                detail={
                    "summary": f"{len(bundle.logs)} log lines, {len(bundle.metrics)} metrics, "
                    f"{len(bundle.deployments)} deployments over {bundle.window_minutes} min"
                    + (f"; unavailable: {', '.join(unavailable)}" if unavailable else "")
                    + (f"; not configured: {', '.join(unconfigured)}" if unconfigured else ""),
                    "attempt": attempt,
                },
                rows=(("stage_results", result_row("context", attempt, out)),),
            )
            is not None
        ):
            count_usage("context", out)
            _then(incident_id, S.ANALYZING)

    guard_db(self, commit)


# The most a diagnosis without any evidence item may claim (iras.integrations.context.evidence_gap).
NO_EVIDENCE_CONFIDENCE = 0.3


@stage_task("incidents.run_rca", AnalysisTask)
def run_rca(self: PipelineTask, incident_id: str) -> None:
    """The root cause from the evidence: confident -> plan; inconclusive -> context
    again with a wider window; out of attempts -> escalate."""

    def load(conn: Connection) -> tuple[Any, IncidentFacts, ContextBundle] | None:
        loaded = _loaded(conn, incident_id, S.ANALYZING)
        return None if loaded is None else (*loaded, _evidence(conn, incident_id))

    loaded = _read(self, load)
    if loaded is None:
        return
    incident, facts, bundle = loaded
    settings = get_settings()
    attempt = incident.rca_attempts + 1
    out = call_analyst(self, "analyze", facts, bundle, attempt)
    rca: RootCauseHypothesis = out.result
    # Triage sees only the alert; an analyst that re-assesses severity from the
    # evidence (customer impact in the metrics) updates the incident's severity.
    # The typed RCA field first; an analyst's extra["severity"] (older analysts set only that) else.
    reassessed: dict[str, Any] = {}
    if rca.severity is not None:
        reassessed = {"severity": Severity(rca.severity).value}
    elif isinstance(out.extra.get("severity"), str) and out.extra["severity"] in Severity.__members__:
        reassessed = {"severity": out.extra["severity"]}
    # Enforced here, not trusted to the analyst: a diagnosis with no evidence at all is a
    # guess from the alert's words. It cannot pass the gate or change the severity, and
    # when no source is configured a wider window cannot help: escalate now with what
    # is known (the escalation hands over the suspects and says what is missing).
    gap = evidence_gap(bundle)
    if gap is not None:
        rca = rca.model_copy(
            update={
                "confidence": min(rca.confidence, NO_EVIDENCE_CONFIDENCE),
                "reasoning": [*rca.reasoning, f"Capped at {NO_EVIDENCE_CONFIDENCE:.0%}: {gap}"],
                "severity": None,
                "severity_reason": None,
            }
        )
        out = replace(out, result=rca)
        reassessed = {}
    if rca.confidence >= settings.rca_confidence_threshold and gap is None:
        event, following, values = Event.RCA_CONFIDENT, S.PLANNING, {}
    elif gap is not None and nothing_configured(bundle):
        event, following, values = Event.RCA_EXHAUSTED, S.ESCALATING, {"outcome": "escalated"}
    elif attempt < settings.rca_max_attempts:
        event, following, values = Event.RCA_INCONCLUSIVE, S.GATHERING_CONTEXT, {}
    else:
        event, following, values = Event.RCA_EXHAUSTED, S.ESCALATING, {"outcome": "escalated"}
    # The timeline says so when the evidence changes triage's severity: a reader
    # otherwise sees "Triage done: P2" above a P1 incident.
    severity_note = (
        f"; severity {incident.severity or 'unset'} -> {reassessed['severity']} from the evidence"
        + (f" ({rca.severity_reason})" if rca.severity_reason else "")
        if reassessed and reassessed["severity"] != incident.severity
        else ""
    )

    def commit() -> None:
        if (
            advance(
                incident_id,
                S.ANALYZING,
                event,
                detail={
                    "summary": f"{rca.category.value} in {rca.culprit_service} "
                    f"(confidence {rca.confidence:.2f}, attempt {attempt})"
                    + severity_note
                    + (f"; not trusted: {gap}" if gap else ""),
                    "attempt": attempt,
                },
                values={"rca_attempts": attempt, **values, **reassessed},
                rows=(("stage_results", result_row("rca", attempt, out)),),
            )
            is not None
        ):
            count_usage("rca", out)
            _then(incident_id, following)

    guard_db(self, commit)


@stage_task("incidents.run_plan", AnalysisTask)
def run_plan(self: PipelineTask, incident_id: str) -> None:
    """The remediation plan, made safe in code whatever the analyst said; a plan with
    steps waits for a human (deadline by severity), one without closes the incident."""

    def load(conn: Connection) -> tuple[Any, IncidentFacts, ContextBundle, RootCauseHypothesis] | None:
        loaded = _loaded(conn, incident_id, S.PLANNING)
        if loaded is None:
            return None
        found = reads.latest_result(conn, incident_id, "rca")
        if found is None:
            raise RuntimeError(f"incident {incident_id} reached planning without a root cause")
        return (*loaded, _evidence(conn, incident_id), RootCauseHypothesis.model_validate(found))

    loaded = _read(self, load)
    if loaded is None:
        return
    incident, facts, bundle, rca = loaded
    settings = get_settings()
    out = call_analyst(self, "plan", facts, rca, bundle)
    # Rollbacks and scale steps name the revisions and replica counts Kubernetes
    # reported (or say they cannot); then the safety invariants, in code.
    pinned = pin_to_workloads(out.result, bundle.workloads, rca.culprit_deployment_sha)
    plan: RemediationPlan = enforce_invariants(pinned, settings.remediation_allowed_commands)
    out.result = plan
    now = utcnow()

    def commit() -> None:
        if not plan.steps:
            if (
                advance(
                    incident_id,
                    S.PLANNING,
                    Event.NO_ACTION_NEEDED,
                    detail={"summary": plan.summary[:300]},
                    values={"outcome": "no_action"},
                    rows=(("stage_results", result_row("plan", 1, out)),),
                    now=now,
                )
                is not None
            ):
                count_usage("plan", out)
                _then(incident_id, S.CLOSING)
            return
        deadline = now + timedelta(minutes=settings.approval_timeout_minutes(incident.severity))
        if (
            advance(
                incident_id,
                S.PLANNING,
                Event.PLAN_READY,
                detail={
                    "summary": f"{len(plan.steps)} step(s), approval needed by {deadline:%H:%M} UTC"
                    + ("" if plan.reversible else "; plan is NOT fully reversible"),
                },
                values={"approval_deadline": deadline},
                plan=result_row("plan", 1, out),
                now=now,
            )
            is not None
        ):
            count_usage("plan", out)
            post_commit(lambda: dispatch.enqueue_notify("notify.post_plan", incident_id))

    guard_db(self, commit)
