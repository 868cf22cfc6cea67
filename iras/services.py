"""Domain operations shared by the web API, Slack, the console and the CLI:
ingesting alerts (with deduplication), deciding on a plan, reading an incident.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from iras import metrics
from iras.db import after_commit, get_engine, held_connection, post_commit, read_session
from iras.ingest import normalize
from iras.models import AlertEvent, Incident, PostMortemRecord, StageResult, StepRun, Transition, new_id
from iras.schemas import NormalizedAlert, utcnow
from iras.workflow import TERMINAL, Event, IncidentStatus, advance, advance_decision, transition

log = logging.getLogger(__name__)


def incident_key(alert: NormalizedAlert) -> str:
    """The deduplication key: a group key if the source groups alerts, else the fingerprint."""
    from iras import ingest

    custom = getattr(ingest, "incident_key", None)
    if custom is not None:
        return str(custom(alert))
    return alert.group_key or alert.fingerprint or ""


@dataclass
class IngestOutcome:
    incident_id: str | None
    status: str  # processing | deduplicated | resolved_noted | no_open_incident
    alerts: int


def _alert_doc(alert: NormalizedAlert) -> dict[str, Any]:
    return alert.model_dump(mode="json", exclude={"raw"})


def ingest_payload(session: Session, payload: Any, source: str | None = None) -> IngestOutcome:
    """Normalise, then open or join an incident. Raises ingest.PayloadError on bad input.

    Concurrent duplicates race on the partial unique index; the loser's insert
    fails and it joins the winner's incident instead (retried once per alert).
    """
    alerts = normalize(payload, source)
    if not alerts:
        # e.g. PagerDuty's `pagey.ping` when a subscription is created: valid, nothing to do.
        return IngestOutcome(None, "ignored", 0)
    key = incident_key(alerts[0])
    for attempt in range(3):
        try:
            outcome = _ingest_group(session, payload, alerts, key)
            session.commit()
            return outcome
        except IntegrityError:
            session.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


# Ingestion's statements, built once on the tables with bound parameters: no ORM
# compilation or per-call cache key over the values on the hot path.
_incidents = Incident.metadata.tables["incidents"]
_OPEN_STATUSES_SQL = [s.value for s in TERMINAL]
_OPEN_BY_KEY = select(_incidents.c.id).where(
    _incidents.c.fingerprint == bindparam("key"), _incidents.c.status.not_in(_OPEN_STATUSES_SQL)
)
_JOIN_OPEN = (
    _incidents.update()
    .where(_incidents.c.id == bindparam("iid"), _incidents.c.status.not_in(_OPEN_STATUSES_SQL))
    .values(alert_count=_incidents.c.alert_count + bindparam("n"), last_seen=bindparam("now"))
)
_INSERT_INCIDENT = _incidents.insert()
_INSERT_ALERT = AlertEvent.metadata.tables["alert_events"].insert()
_INSERT_TRANSITION = Transition.metadata.tables["transitions"].insert()


def _ingest_group(
    session: Session, payload: dict[str, Any], alerts: list[NormalizedAlert], key: str
) -> IngestOutcome:
    now = utcnow()
    firing = [a for a in alerts if a.status == "firing"]
    for _ in range(3):
        incident_id = session.execute(_OPEN_BY_KEY, {"key": key}).scalar()
        if incident_id is None:
            break
        # Lock the incident row first (the UPDATE holds it to commit): concurrent joins to
        # one incident then run one after another, so the "every alert resolved?" check
        # below sees the alerts committed just before. Two resolutions of different
        # alerts arriving together would otherwise each see the other still firing, and
        # the incident would never auto-resolve.
        joined = session.execute(_JOIN_OPEN, {"iid": incident_id, "n": len(alerts), "now": now})
        if joined.rowcount == 1:  # type: ignore[attr-defined]
            return _join(session, incident_id, payload, alerts, now)
        # Closed between the lookup and the lock (auto-resolved, or the pipeline ended):
        # look again; a firing alert then opens a new incident.

    if not firing:
        return IngestOutcome(None, "no_open_incident", len(alerts))
    first = firing[0]
    iid = new_id()
    # Plain Core INSERTs on the tables with bound parameters, not ORM objects: this
    # is the hot path of ingestion, and the unit of work (identity map, flush
    # ordering, per-object events, per-value cache keys) was ~40% of the request's
    # CPU for three rows nothing reads back (bench/README.md).
    session.execute(
        _INSERT_INCIDENT,
        {
            "id": iid,
            "status": IncidentStatus.TRIAGING.value,
            "title": first.title,
            "service": first.service,
            "source": first.source,
            "fingerprint": key,
            "alert_count": len(alerts),
            "last_seen": now,
            "rca_attempts": 0,
            "created_at": now,
            "updated_at": now,
        },
    )  # the partial unique index fires here on a concurrent duplicate
    session.execute(
        _INSERT_ALERT,
        [
            {
                "incident_id": iid,
                "received_at": now,
                "status": a.status,
                "fingerprint": a.fingerprint,
                "alert": _alert_doc(a),
                # The request body once, with its first alert: the incident's payload.
                "raw": payload if i == 0 else None,
            }
            for i, a in enumerate(alerts)
        ],
    )
    session.execute(
        _INSERT_TRANSITION,
        {
            "incident_id": iid,
            "from_status": None,
            "to_status": IncidentStatus.TRIAGING.value,
            "event": "ingested",
            "actor": f"webhook:{first.source}",
            "at": now,
            "detail": {"summary": first.title[:200]},
        },
    )
    from iras.tasks import enqueue_stage

    after_commit(session, lambda: enqueue_stage(iid, IncidentStatus.TRIAGING))
    return IngestOutcome(iid, "processing", len(alerts))


def _latest_alert_statuses(session: Session, incident_id: str) -> dict[str, str]:
    """fingerprint -> the status of the last alert event received for it (one row per
    fingerprint comes back, however many events a storm left on the incident)."""
    last_ids = (
        select(func.max(AlertEvent.id))
        .where(AlertEvent.incident_id == incident_id)
        .group_by(AlertEvent.fingerprint)
        .scalar_subquery()
    )
    rows = session.execute(
        select(AlertEvent.fingerprint, AlertEvent.status).where(AlertEvent.id.in_(last_ids))
    )
    return {fp or "": status for fp, status in rows}


def _join(
    session: Session, incident_id: str, payload: dict[str, Any], alerts: list[NormalizedAlert], now: Any
) -> IngestOutcome:
    """Record the alerts on the open incident (its row is locked by the caller)."""
    any_resolved = any(a.status == "resolved" for a in alerts)
    # Only a resolution needs the incident's alert history; a storm of firing duplicates
    # skips that query.
    before = _latest_alert_statuses(session, incident_id) if any_resolved else {}
    session.execute(
        _INSERT_ALERT,
        [
            {
                "incident_id": incident_id,
                "received_at": now,
                "status": a.status,
                "fingerprint": a.fingerprint,
                "alert": _alert_doc(a),
                "raw": payload if i == 0 else None,  # the request body once per request
            }
            for i, a in enumerate(alerts)
        ],
    )
    if any_resolved:
        after = dict(before)
        for a in alerts:
            after[a.fingerprint or ""] = a.status
        # Only a change is news: Alertmanager repeats a resolved alert in later notifications.
        newly_resolved = sorted(
            {
                a.fingerprint or ""
                for a in alerts
                if a.status == "resolved" and before.get(a.fingerprint or "") != "resolved"
            }
        )
        still_firing = sorted(fp for fp, status in after.items() if status != "resolved")
        if newly_resolved:
            _note_resolution(session, incident_id, alerts[0].source, newly_resolved, still_firing, now)
    if any(a.status == "firing" for a in alerts):
        return IngestOutcome(incident_id, "deduplicated", len(alerts))
    return IngestOutcome(incident_id, "resolved_noted", len(alerts))


def _note_resolution(
    session: Session,
    incident_id: str,
    source: str,
    newly_resolved: list[str],
    still_firing: list[str],
    now: Any,
) -> None:
    """Put resolved alerts on the incident's timeline. When none is left firing:
    before approval the incident is closed as auto-resolved (the CLOSING stage
    writes a short post-mortem, no remediation runs); after approval the
    resolution is only noted and the operator decides."""
    from iras.tasks import enqueue_stage
    from iras.workflow import BEFORE_APPROVAL

    current = session.scalar(select(Incident.status).where(Incident.id == incident_id))
    if current is None:
        return
    status = IncidentStatus(current)
    actor = f"alert-source:{source}"[:255]
    shown = ", ".join(fp[:40] for fp in newly_resolved[:10]) + (" ..." if len(newly_resolved) > 10 else "")
    detail: dict[str, Any] = {"resolved": newly_resolved[:100], "still_firing": still_firing[:100]}
    if still_firing:
        session.add(
            Transition(
                incident_id=incident_id,
                from_status=status.value,
                to_status=status.value,
                event="alert_resolved",
                actor=actor,
                at=now,
                detail={
                    **detail,
                    "summary": f"{len(newly_resolved)} alert(s) resolved ({shown}); {len(still_firing)} still firing",
                },
            )
        )
        return
    if status in BEFORE_APPROVAL and transition(
        session,
        incident_id,
        status,
        Event.ALERTS_RESOLVED,
        actor=actor,
        detail={
            **detail,
            "summary": f"every alert resolved before approval ({shown}); closing without remediation",
        },
        values={"outcome": "auto_resolved"},
        now=now,
    ):
        after_commit(session, lambda: enqueue_stage(incident_id, IncidentStatus.CLOSING))
        return
    session.add(
        Transition(
            incident_id=incident_id,
            from_status=status.value,
            to_status=status.value,
            event="alerts_resolved_noted",
            actor=actor,
            at=now,
            detail={
                **detail,
                "summary": f"every alert resolved ({shown}) while {status.value}; the operator decides",
            },
        )
    )


# --------------------------------------------------------------------------- decisions


class DecisionError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class Decision:
    """What a decision wrote on the incident: what its callers answer with (the API
    returns id, status and decided_by), without loading the incident."""

    id: str
    status: str
    plan_id: int | None
    decided_by: str
    decided_via: str
    decided_at: datetime
    decision_reason: str | None


@contextmanager
def decision_session() -> Iterator[Session]:
    """The session `decide` is given by its callers (API, console, Slack): a read session
    whose pooled connection the decision statement shares (`db.held_connection`)."""
    with held_connection(), read_session() as session:
        yield session


def decide(
    session: Session,
    incident_id: str,
    *,
    approve: bool,
    actor: str,
    via: str,
    reason: str | None = None,
    plan_id: int | None = None,
) -> Decision:
    """Approve or reject the pending plan: one compare-and-set, so two approvers
    (or an approver racing the timeout) cannot both win. Raises DecisionError.

    `plan_id`: the plan the decider reviewed; the decision applies only while it is
    the incident's plan. On PostgreSQL the compare-and-set comes first, as one
    statement (`workflow.advance_decision`) that also reports the incident's plan and
    when it was ready; the incident is read only to say why it did not match. SQLite
    reads first (the read's transaction is ended before the write)."""
    # Every caller (API, console, Slack) ends here: what the database cannot hold is
    # refused or made storable before it is bound (NUL in text, an id past BIGINT).
    try:
        uuid.UUID(incident_id)
    except ValueError:
        raise DecisionError(404, f"incident {incident_id[:64]!r} not found") from None
    if plan_id is not None and not 0 < plan_id < 2**63:
        raise DecisionError(400, "plan id out of range (1 to 2**63-1)")
    actor = actor.replace("\x00", "\ufffd")
    reason = reason.replace("\x00", "\ufffd") if reason is not None else None
    now = utcnow()
    event = Event.APPROVED if approve else Event.REJECTED
    values: dict[str, Any] = {
        "decided_by": actor[:255],
        "decided_via": via,
        "decided_at": now,
        "decision_reason": reason,
    }
    if not approve:
        values["outcome"] = "escalated"
    detail = {"reason": reason, "via": via, "by": actor}
    if get_engine().dialect.name == "postgresql":
        decided = advance_decision(
            incident_id,
            event,
            actor=f"{via}:{actor}"[:255],
            detail=detail,  # + the incident's plan_id, added by the statement
            values=values,
            also_equal={"plan_id": plan_id} if plan_id is not None else None,
            now=now,
        )
        if decided is None:
            raise _refusal(_decision_state(session, incident_id), incident_id, plan_id) or DecisionError(
                409, _DECIDED_FIRST
            )
        current_plan, ready = decided.plan_id, decided.plan_ready_at
    else:
        current_plan, ready = _decide_after_reading(
            session, incident_id, event, actor, via, detail, values, plan_id, now
        )
    from iras.tasks import enqueue_notify, enqueue_stage

    next_status = IncidentStatus.EXECUTING if approve else IncidentStatus.ESCALATING
    post_commit(lambda: enqueue_stage(incident_id, next_status))
    post_commit(lambda: enqueue_notify("notify.post_decision", incident_id))
    post_commit(lambda: metrics.observe_approval_wait(via, event.value, ready, now))
    return Decision(
        id=incident_id,
        status=next_status.value,
        plan_id=current_plan,
        decided_by=values["decided_by"],
        decided_via=via,
        decided_at=now,
        decision_reason=reason,
    )


def _decision_state(session: Session, incident_id: str) -> Any:
    """The incident's status and plan_id (a row), None if there is no such incident."""
    return session.execute(_DECISION_STATE, {"incident_id": incident_id}).first()


def _refusal(incident: Any, incident_id: str, plan_id: int | None) -> DecisionError | None:
    """Why a decision cannot apply to `incident` (`_decision_state`) as it is now, or
    None when it can."""
    if incident is None:
        return DecisionError(404, f"incident {incident_id} not found")
    if incident.status != IncidentStatus.AWAITING_APPROVAL.value:
        return DecisionError(409, f"incident is {incident.status}, not awaiting approval")
    if plan_id is not None and plan_id != incident.plan_id:
        return DecisionError(409, f"plan {plan_id} is no longer the current plan ({incident.plan_id})")
    return None


# The compare-and-set lost though the incident looked decidable: a racing decision won.
_DECIDED_FIRST = "the incident was decided by someone else first"
_DECISION_STATE = select(Incident.status, Incident.plan_id).where(Incident.id == bindparam("incident_id"))


def _decide_after_reading(
    session: Session,
    incident_id: str,
    event: Event,
    actor: str,
    via: str,
    detail: dict[str, Any],
    values: dict[str, Any],
    plan_id: int | None,
    now: datetime,
) -> tuple[int | None, datetime | None]:
    """SQLite: read the incident, then the compare-and-set with "the plan reviewed is
    still the current plan". Returns the incident's plan_id and when it was ready."""
    incident = _decision_state(session, incident_id)
    refused = _refusal(incident, incident_id, plan_id)
    if refused is not None:
        raise refused
    # For the approval-wait metric, read with the incident (no session of its own).
    ready = metrics.plan_ready_at(session, incident_id)
    # The decision is its own statement (`advance`): end the read first. On SQLite
    # the read's transaction holds the write lock the decision needs.
    session.commit()
    moved = advance(
        incident_id,
        IncidentStatus.AWAITING_APPROVAL,
        event,
        actor=f"{via}:{actor}"[:255],
        detail={**detail, "plan_id": incident.plan_id},
        values=values,
        # "The plan reviewed is still the current plan".
        also_equal={"plan_id": incident.plan_id},
        now=now,
    )
    if moved is None:
        raise DecisionError(409, _DECIDED_FIRST)
    return incident.plan_id, ready


# --------------------------------------------------------------------------- reading


def approval_deadline_for(severity: str | None, settings: Any) -> Any:
    return utcnow() + timedelta(minutes=settings.approval_timeout_minutes(severity))


def stage_results(session: Session, incident_id: str) -> list[StageResult]:
    return list(
        session.scalars(
            select(StageResult).where(StageResult.incident_id == incident_id).order_by(StageResult.id)
        )
    )


def cost_summary(results: list[StageResult]) -> dict[str, Any]:
    """Per-incident token totals and estimated cost (price table in settings)."""
    from iras.analysts.pricing import Usage, incident_totals
    from iras.config import get_settings

    calls = [
        (r.model, Usage(r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_creation_tokens))
        for r in results
    ]
    return incident_totals(calls, get_settings())


def serialize_incident(session: Session, incident: Incident, *, full: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": incident.id,
        "status": incident.status,
        "severity": incident.severity,
        "title": incident.title,
        "service": incident.service,
        "source": incident.source,
        "fingerprint": incident.fingerprint,
        "alert_count": incident.alert_count,
        "rca_attempts": incident.rca_attempts,
        "approval_deadline": incident.approval_deadline.isoformat() if incident.approval_deadline else None,
        "decision": (
            {
                "by": incident.decided_by,
                "via": incident.decided_via,
                "at": incident.decided_at.isoformat() if incident.decided_at else None,
                "reason": incident.decision_reason,
            }
            if incident.decided_by
            else None
        ),
        "outcome": incident.outcome,
        "created_at": incident.created_at.isoformat(),
        "updated_at": incident.updated_at.isoformat(),
        "last_seen": incident.last_seen.isoformat() if incident.last_seen else None,
    }
    if not full:
        return doc
    results = stage_results(session, incident.id)
    events = list(
        session.scalars(
            select(AlertEvent).where(AlertEvent.incident_id == incident.id).order_by(AlertEvent.id).limit(100)
        )
    )
    doc["payload"] = events[0].raw if events else None
    doc["stages"] = [
        {
            "id": r.id,
            "stage": r.stage,
            "attempt": r.attempt,
            "analyst": r.analyst,
            "model": r.model,
            "tokens": {
                "input": r.input_tokens,
                "output": r.output_tokens,
                "cache_read": r.cache_read_tokens,
                "cache_creation": r.cache_creation_tokens,
            },
            "latency_ms": round(r.latency_ms, 1),
            "note": r.note,
            "details": r.details,
            "result": r.result,
            "created_at": r.created_at.isoformat(),
        }
        for r in results
    ]
    plan = next((r for r in results if r.id == incident.plan_id), None)
    doc["plan"] = {"id": plan.id, **plan.result} if plan else None
    doc["cost"] = cost_summary(results)
    doc["step_runs"] = [
        {
            "step": s.step_order,
            "kind": s.kind,
            "command": s.command,
            "status": s.status,
            "exit_code": s.exit_code,
            "output_tail": s.output_tail,
            "started_at": s.started_at.isoformat(),
            "finished_at": s.finished_at.isoformat() if s.finished_at else None,
            "rolled_back": s.rolled_back,
        }
        for s in session.scalars(
            select(StepRun).where(StepRun.incident_id == incident.id).order_by(StepRun.id)
        )
    ]
    doc["timeline"] = [
        {
            "at": t.at.isoformat(),
            "from": t.from_status,
            "to": t.to_status,
            "event": t.event,
            "actor": t.actor,
            "detail": t.detail,
        }
        for t in session.scalars(
            select(Transition).where(Transition.incident_id == incident.id).order_by(Transition.id)
        )
    ]
    doc["alerts"] = [
        {
            "received_at": a.received_at.isoformat(),
            "status": a.status,
            "fingerprint": a.fingerprint,
            **a.alert,
        }
        for a in events
    ]
    pm = session.get(PostMortemRecord, incident.id)
    doc["postmortem"] = {"markdown": pm.markdown, **pm.data, "analyst": pm.analyst} if pm else None
    return doc


# Counting every incident per status is a scan of the whole history (~30 ms at
# 200,000 incidents, growing with it) on every console page view. Terminal
# statuses are final and a closed incident's `updated_at` never changes again, so
# the count of closed incidents last updated before a cut-off only changes by
# deletion: it is computed once per process every _HISTORY_TTL_SECONDS, and
# everything after the cut-off (plus every open incident) is counted live on
# indexed ranges. The cut-off trails the clock by _HISTORY_MARGIN so a
# transaction that computed its `updated_at` a moment before the cut-off but
# committed after it is still counted live, never missed.
_HISTORY_TTL_SECONDS = 300.0
_HISTORY_MARGIN = timedelta(seconds=60)
_TERMINAL_VALUES = [s.value for s in TERMINAL]
_history_lock = threading.Lock()
_history: dict[str, tuple[float, Any, dict[str, int]]] = {}


def _grouped(session: Session, *where: Any) -> dict[str, int]:
    rows = session.execute(select(Incident.status, func.count()).where(*where).group_by(Incident.status))
    return {str(status): int(n) for status, n in rows}


def count_by_status(session: Session) -> dict[str, int]:
    """Incidents per status, exact, without scanning the closed history each time."""
    counts = _grouped(session, Incident.status.not_in(_TERMINAL_VALUES))
    key = f"{os.getpid()}:{session.get_bind().engine.url}"
    with _history_lock:
        cached = _history.get(key)
    if cached is None or time.monotonic() - cached[0] > _HISTORY_TTL_SECONDS:
        cutoff = utcnow() - _HISTORY_MARGIN
        base = _grouped(session, Incident.status.in_(_TERMINAL_VALUES), Incident.updated_at < cutoff)
        cached = (time.monotonic(), cutoff, base)
        with _history_lock:
            _history[key] = cached
    _, cutoff, base = cached
    recent = _grouped(session, Incident.status.in_(_TERMINAL_VALUES), Incident.updated_at >= cutoff)
    for status, n in [*base.items(), *recent.items()]:
        counts[status] = counts.get(status, 0) + n
    return counts


def distinct_services(session: Session, limit: int = 200) -> list[str]:
    """The services incidents were opened for, sorted, at most `limit`.

    `SELECT DISTINCT service` reads every incident (~220 ms at 200,000); this walks
    the service index (ix_incidents_service) from one value to the next instead, a
    "skip scan" in one recursive query: one index probe per distinct service,
    ~0.4 ms for 50 services whatever the size of the history.
    """
    return [str(v) for v in session.execute(_DISTINCT_SERVICES, {"limit": limit}).scalars()]


_DISTINCT_SERVICES = text(
    """
    WITH RECURSIVE s(v) AS (
        SELECT min(service) FROM incidents WHERE service IS NOT NULL
        UNION ALL
        SELECT (SELECT min(service) FROM incidents WHERE service > s.v) FROM s WHERE s.v IS NOT NULL
    )
    SELECT v FROM s WHERE v IS NOT NULL LIMIT :limit
    """
)
