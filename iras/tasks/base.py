"""What every IRAS task shares: the task class (late acks, redelivery on worker
loss, bounded retries with backoff and jitter), the analyst call with its
fallback, the guard that turns a database outage into a retry, and escalation of
an analysis stage that failed for good."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from typing import Any

from celery import Task
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from iras import dispatch, metrics
from iras.analysts import get_analyst
from iras.analysts.base import StageOutput, TransientAnalystError
from iras.analysts.offline import OfflineAnalyst
from iras.celery_app import celery_app
from iras.db import after_commit, session_scope
from iras.models import Incident
from iras.schemas import utcnow
from iras.workflow import ANALYSIS_STATES, Event, IncidentStatus, transition

log = logging.getLogger(__name__)


class PipelineTask(Task):  # type: ignore[misc]
    """Base for IRAS tasks: late acks, redelivery on worker loss, bounded retries
    with exponential backoff and jitter on transient errors (model overload,
    database restart), honouring a provider's retry-after."""

    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    max_retries = 8
    retry_backoff_max = 300

    def retry_later(self, exc: Exception, retry_after: float | None = None) -> Any:
        backoff = min(self.retry_backoff_max, 2 ** (self.request.retries + 1))
        countdown = max(retry_after or 0.0, backoff * random.uniform(0.5, 1.0))
        log.warning(
            "transient error, retrying",
            extra={
                "task": self.name,
                "retries": self.request.retries,
                "countdown": countdown,
                "error": str(exc),
            },
        )
        raise self.retry(exc=exc, countdown=countdown)


class AnalysisTask(PipelineTask):
    """An analysis stage. One that failed for good (a bug, retries exhausted) hands
    the incident to a human instead of leaving it for the sweeper to retry forever."""

    abstract = True

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if args:
            mark_stage_failed(str(args[0]), self.name, exc)


def stage_task(name: str, base: type[PipelineTask] = PipelineTask) -> Callable[[Any], Any]:
    """Register a bound task taking an incident id under its dotted name."""
    return celery_app.task(name=name, bind=True, base=base)  # type: ignore[no-any-return]


def mark_stage_failed(incident_id: str, task_name: str, exc: Exception) -> None:
    try:
        with session_scope() as session:
            current = session.scalar(select(Incident.status).where(Incident.id == incident_id))
            if current is None or IncidentStatus(current) not in ANALYSIS_STATES:
                return
            if transition(
                session,
                incident_id,
                IncidentStatus(current),
                Event.STAGE_FAILED,
                detail={"summary": f"{task_name} failed: {type(exc).__name__}: {exc}"[:300]},
                values={"outcome": "escalated"},
            ):
                after_commit(session, lambda: dispatch.enqueue_stage(incident_id, IncidentStatus.ESCALATING))
    except Exception:  # noqa: BLE001 - the sweeper is the last resort
        log.exception("could not mark stage failed", extra={"incident_id": incident_id})


def call_analyst(task: PipelineTask, method: str, *args: Any) -> Any:
    """Call `method` on the configured analyst. A transient provider error is retried
    by Celery with backoff; once the retries are spent the stage falls back to the
    offline analyst (recorded in the stage result's note) instead of stalling."""
    analyst = get_analyst()
    try:
        return getattr(analyst, method)(*args)
    except TransientAnalystError as exc:
        if task.request.retries < task.max_retries:
            task.retry_later(exc, exc.retry_after)
        if analyst.name == "offline":
            raise
        out = getattr(OfflineAnalyst(), method)(*args)
        out.note = f"fallback from {analyst.name}: still failing after {task.request.retries} retries: {exc}"[
            :500
        ]
        return out


def guard_db(task: PipelineTask, fn: Callable[..., Any], *args: Any) -> Any:
    """Run a stage body; a database outage is transient: retry later. A duplicate
    row (a concurrent delivery wrote the same result first) means nothing is left to do."""
    try:
        return fn(*args)
    except OperationalError as exc:
        task.retry_later(exc)
    except IntegrityError:
        log.info("duplicate result ignored", extra={"task": task.name, "args": args})
        return None


def result_row(stage: str, attempt: int, out: StageOutput[Any]) -> dict[str, Any]:
    """A stage_results row (its incident_id added by `workflow.advance`)."""
    row: dict[str, Any] = {
        "stage": stage,
        "attempt": attempt,
        "result": out.result.model_dump(mode="json"),
        "analyst": out.analyst,
        "model": out.model,
        "input_tokens": out.input_tokens,
        "output_tokens": out.output_tokens,
        "cache_read_tokens": out.cache_read_tokens,
        "cache_creation_tokens": out.cache_creation_tokens,
        "latency_ms": out.latency_ms,
        "note": out.note,
        "created_at": utcnow(),
    }
    if out.extra:  # left out otherwise: SQL NULL, not a JSON null
        row["details"] = json.loads(json.dumps(out.extra, default=str))
    return row


def count_usage(stage: str, out: StageOutput[Any]) -> None:
    """The token usage of a committed stage result, in the metrics."""
    metrics.emit_committed(
        (
            "stage",
            stage,
            out.model,
            {
                "input": out.input_tokens or 0,
                "output": out.output_tokens or 0,
                "cache_read": out.cache_read_tokens or 0,
                "cache_creation": out.cache_creation_tokens or 0,
            },
        )
    )
