"""The incident state machine: statuses, events, and the one transition table.

Every status change goes through `transition()`, a compare-and-set

    UPDATE incidents SET status = :next, ... WHERE id = :id AND status = :expected

that also writes the audit row in `transitions`. "0 rows updated" means another
worker (a duplicate delivery, a racing approver, the timeout) got there first:
that is reported as `False`, not raised, and the caller returns quietly.
A (status, event) pair that is not in the table is a programming error and raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, func, insert, literal_column, select, type_coerce, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from iras.db import autocommit_connection, get_engine, session_scope
from iras.models import Base, Incident, JsonType, StepRun, Transition, UTCDateTime
from iras.schemas import utcnow
from iras.states import TERMINAL as TERMINAL
from iras.states import IncidentStatus as IncidentStatus


class Event(StrEnum):
    TRIAGED = "triaged"
    CONTEXT_GATHERED = "context_gathered"
    RCA_CONFIDENT = "rca_confident"
    RCA_INCONCLUSIVE = "rca_inconclusive"
    RCA_EXHAUSTED = "rca_exhausted"
    PLAN_READY = "plan_ready"
    NO_ACTION_NEEDED = "no_action_needed"
    APPROVED = "approved"
    REJECTED = "rejected"
    APPROVAL_TIMED_OUT = "approval_timed_out"
    ALERTS_RESOLVED = "alerts_resolved"
    REMEDIATION_SUCCEEDED = "remediation_succeeded"
    REMEDIATION_FAILED = "remediation_failed"
    STAGE_FAILED = "stage_failed"
    ESCALATED = "escalated"
    CLOSED_RESOLVED = "closed_resolved"
    CLOSED_ESCALATED = "closed_escalated"
    CLOSED_AUTO_RESOLVED = "closed_auto_resolved"


S, E = IncidentStatus, Event

ANALYSIS_STATES: frozenset[IncidentStatus] = frozenset(
    {S.TRIAGING, S.GATHERING_CONTEXT, S.ANALYZING, S.PLANNING}
)
BEFORE_APPROVAL: frozenset[IncidentStatus] = ANALYSIS_STATES | {S.AWAITING_APPROVAL}
# States in which a worker owes the incident a next step; the sweeper re-enqueues
# incidents that stay in one of these too long (a lost message, a broker outage).
WORKING: frozenset[IncidentStatus] = ANALYSIS_STATES | {S.EXECUTING, S.ESCALATING, S.CLOSING}

TRANSITIONS: dict[tuple[IncidentStatus, Event], IncidentStatus] = {
    (S.TRIAGING, E.TRIAGED): S.GATHERING_CONTEXT,
    (S.GATHERING_CONTEXT, E.CONTEXT_GATHERED): S.ANALYZING,
    (S.ANALYZING, E.RCA_CONFIDENT): S.PLANNING,
    (S.ANALYZING, E.RCA_INCONCLUSIVE): S.GATHERING_CONTEXT,
    (S.ANALYZING, E.RCA_EXHAUSTED): S.ESCALATING,
    (S.PLANNING, E.PLAN_READY): S.AWAITING_APPROVAL,
    (S.PLANNING, E.NO_ACTION_NEEDED): S.CLOSING,
    (S.AWAITING_APPROVAL, E.APPROVED): S.EXECUTING,
    (S.AWAITING_APPROVAL, E.REJECTED): S.ESCALATING,
    (S.AWAITING_APPROVAL, E.APPROVAL_TIMED_OUT): S.ESCALATING,
    (S.EXECUTING, E.REMEDIATION_SUCCEEDED): S.CLOSING,
    (S.EXECUTING, E.REMEDIATION_FAILED): S.ESCALATING,
    (S.ESCALATING, E.ESCALATED): S.CLOSING,
    (S.CLOSING, E.CLOSED_RESOLVED): S.RESOLVED,
    (S.CLOSING, E.CLOSED_ESCALATED): S.ESCALATED,
    (S.CLOSING, E.CLOSED_AUTO_RESOLVED): S.AUTO_RESOLVED,
    # Every alert of the incident resolved before anyone approved: close, don't remediate.
    **{(state, E.ALERTS_RESOLVED): S.CLOSING for state in BEFORE_APPROVAL},
    # A stage that failed for good (retries exhausted) hands the incident to a human.
    **{(state, E.STAGE_FAILED): S.ESCALATING for state in ANALYSIS_STATES},
}

# The outcome recorded on the incident when it enters CLOSING, and the event that ends it.
CLOSING_EVENT_FOR_OUTCOME: dict[str, Event] = {
    "resolved": E.CLOSED_RESOLVED,
    "no_action": E.CLOSED_RESOLVED,
    "escalated": E.CLOSED_ESCALATED,
    "auto_resolved": E.CLOSED_AUTO_RESOLVED,
}


class IllegalTransition(Exception):
    pass


def next_status(current: IncidentStatus | str, event: Event | str) -> IncidentStatus:
    key = (IncidentStatus(current), Event(event))
    try:
        return TRANSITIONS[key]
    except KeyError:
        raise IllegalTransition(f"no transition from {key[0].value!r} on {key[1].value!r}") from None


def transition(
    session: Session,
    incident_id: str,
    expected: IncidentStatus,
    event: Event,
    *,
    actor: str = "iras",
    detail: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    also: list[Any] | None = None,
    also_equal: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> bool:
    """Compare-and-set the incident from `expected` to the table's next status.

    Writes the transition row in the same transaction. Returns False when the
    incident was not in `expected` (someone else moved it): nothing is written.
    `also` adds conditions to the same WHERE; `also_equal` adds `column = value`
    conditions (e.g. "the plan reviewed is still the current plan") to the
    prebuilt statement. The caller commits.
    """
    target = next_status(expected, event)
    now = now or utcnow()
    params = {**(values or {}), "status": target.value, "updated_at": now}
    if also:
        equal = [Incident.__table__.c[name] == value for name, value in (also_equal or {}).items()]
        update_stmt: Any = (
            update(Incident.__table__)
            .where(Incident.id == incident_id, Incident.status == expected.value, *also, *equal)
            .values(**params)
        )
        result = session.execute(update_stmt)
    elif session.get_bind().dialect.name == "postgresql":
        # One statement: the compare-and-set and its audit row (a data-modifying
        # CTE): the row is inserted only if the UPDATE matched, atomically.
        equal = also_equal or {}
        result = session.execute(
            _compare_and_set_with_audit(tuple(sorted(params)), tuple(sorted(equal)), bool(detail)),
            {
                **params,
                **{f"_where_{name}": value for name, value in equal.items()},
                **_audit_params(incident_id, expected, target, event, actor, now, detail),
            },
        )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]
    else:
        equal = also_equal or {}
        result = session.execute(
            _compare_and_set(tuple(sorted(params)), tuple(sorted(equal))),
            {
                **params,
                **{f"_where_{name}": value for name, value in equal.items()},
                "_id": incident_id,
                "_expected": expected.value,
            },
        )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    row = {
        "incident_id": incident_id,
        "from_status": expected.value,
        "to_status": target.value,
        "event": event.value,
        "actor": actor,
        "at": now,
    }
    if detail:
        row["detail"] = detail
    session.execute(_insert_transition(bool(detail)), row)
    return True


def _audit_params(
    incident_id: str,
    expected: IncidentStatus,
    target: IncidentStatus,
    event: Event,
    actor: str,
    now: datetime,
    detail: dict[str, Any] | None,
) -> dict[str, Any]:
    """The parameters of a compare-and-set statement with its audit row (PostgreSQL)."""
    return {
        "_id": incident_id,
        "_expected": expected.value,
        "_t_from_status": expected.value,
        "_t_to_status": target.value,
        "_t_event": event.value,
        "_t_actor": actor,
        "_t_at": now,
        **({"_t_detail": detail} if detail else {}),
    }


# The statements are built once per shape and reused (not an UPDATE/INSERT and its
# cache key built on every call, nor the ORM's bulk-update path). They are Core
# statements on the tables: no ORM objects are involved or refreshed.
@lru_cache(maxsize=128)
def _compare_and_set(columns: tuple[str, ...], equal: tuple[str, ...] = ()) -> Any:
    table = Incident.__table__
    return (
        update(table)
        .where(
            table.c.id == bindparam("_id"),
            table.c.status == bindparam("_expected"),
            *[table.c[name] == bindparam(f"_where_{name}") for name in equal],
        )
        .values({table.c[name]: bindparam(name) for name in columns})
    )


@lru_cache(maxsize=128)
def _compare_and_set_with_audit(columns: tuple[str, ...], equal: tuple[str, ...], with_detail: bool) -> Any:
    """PostgreSQL: WITH moved AS (UPDATE incidents ... WHERE id AND status RETURNING id)
    INSERT INTO transitions SELECT ... FROM moved: one round trip instead of two."""
    moved = _compare_and_set(columns, equal).returning(Incident.__table__.c.id).cte("moved")
    audit = Transition.__table__
    fields: list[tuple[str, Any]] = [
        ("from_status", audit.c.from_status.type),
        ("to_status", audit.c.to_status.type),
        ("event", audit.c.event.type),
        ("actor", audit.c.actor.type),
        ("at", UTCDateTime()),
    ]
    if with_detail:
        fields.append(("detail", JsonType))
    rows = select(moved.c.id, *[bindparam(f"_t_{name}", type_=type_) for name, type_ in fields])
    return insert(audit).from_select(["incident_id", *[name for name, _ in fields]], rows)


@lru_cache(maxsize=2)
def _insert_transition(with_detail: bool) -> Any:
    """The audit row; without a detail the column is left out (SQL NULL, not JSON null)."""
    table = Transition.__table__
    skip = {"id"} if with_detail else {"id", "detail"}
    return insert(table).values({c: bindparam(c.name) for c in table.c if c.name not in skip})


def mermaid() -> str:
    """The transition table as a Mermaid state diagram (the README embeds it; a test
    checks that the README and the table agree)."""
    order = list(IncidentStatus)
    lines = ["stateDiagram-v2", f"    [*] --> {S.TRIAGING.value}: ingested"]
    for (status, event), target in sorted(
        TRANSITIONS.items(), key=lambda kv: (order.index(kv[0][0]), list(Event).index(kv[0][1]))
    ):
        lines.append(f"    {status.value} --> {target.value}: {event.value}")
    lines += [f"    {s.value} --> [*]" for s in order if s in TERMINAL]
    return "\n".join(lines)


# --------------------------------------------------------------------------- a transition committed alone


def advance(
    incident_id: str,
    expected: IncidentStatus,
    event: Event,
    *,
    actor: str = "iras",
    detail: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    rows: tuple[tuple[str, dict[str, Any]], ...] = (),
    plan: dict[str, Any] | None = None,
    step_outcome: dict[str, Any] | None = None,
    also_equal: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> int | None:
    """`transition()` in a transaction of its own, together with the rows it produces.

    `rows` are (table name, row) pairs written only if the compare-and-set matched
    (a stage result, a post-mortem); `plan` is a stage result that becomes the
    incident's `plan_id` (and the transition detail's); `step_outcome` (`id` and the
    finished columns of a `running` step row) is stored whether or not it matched:
    the step ran. `also_equal` adds `column = value` (`IS NULL` for None) conditions to
    the compare-and-set. Returns None when the incident was not in `expected` (nothing
    of `rows`/`plan` is written), else the new plan id (0 without a plan).

    On PostgreSQL this is ONE statement run in autocommit: the compare-and-set, its
    audit row and the produced rows are data-modifying CTEs of the same statement,
    atomic without BEGIN/COMMIT, one round trip instead of four (BEGIN, the
    transition, the result INSERT, COMMIT). SQLite (embedded, in-process) keeps a
    plain transaction.
    """
    target = next_status(expected, event)
    now = now or utcnow()
    move = _Move(
        incident_id, expected, event, actor, detail,
        params={**(values or {}), "status": target.value, "updated_at": now},
        now=now, rows=rows, plan=plan, step_outcome=step_outcome, also_equal=also_equal or {},
    )  # fmt: skip
    if get_engine().dialect.name != "postgresql":
        with session_scope() as session:
            return _advance_in_transaction(session, move)
    found = _advance_pg(move, report=False)
    if found is None:
        return None
    return int(found[0]) if plan is not None else 0


@dataclass(frozen=True)
class _Move:
    """One `advance`, as its two implementations take it: one PostgreSQL statement
    (`_advance_pg`) or a SQLite transaction (`_advance_in_transaction`)."""

    incident_id: str
    expected: IncidentStatus
    event: Event
    actor: str
    detail: dict[str, Any] | None
    params: dict[str, Any]  # the incident's new column values, status and updated_at included
    now: datetime
    rows: tuple[tuple[str, dict[str, Any]], ...] = ()
    plan: dict[str, Any] | None = None
    step_outcome: dict[str, Any] | None = None
    also_equal: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> IncidentStatus:
        """The status the transition enters."""
        return next_status(self.expected, self.event)


@dataclass(frozen=True)
class Decided:
    """What `advance_decision` reports of the incident it moved."""

    plan_id: int | None
    plan_ready_at: datetime | None


def advance_decision(
    incident_id: str,
    event: Event,
    *,
    actor: str,
    detail: dict[str, Any],
    values: dict[str, Any],
    also_equal: dict[str, Any] | None = None,
    now: datetime,
) -> Decided | None:
    """PostgreSQL only: `advance` out of awaiting_approval (a decision) as ONE statement
    that also reports what the decision would otherwise read first: the incident's
    plan_id (added to the audit detail as `plan_id`) and when that plan was ready (its
    latest `plan_ready` transition, for the approval-wait metric). None when the
    compare-and-set did not match; nothing is written then."""
    assert get_engine().dialect.name == "postgresql", "SQLite decides with a read first (services.decide)"
    expected = IncidentStatus.AWAITING_APPROVAL
    target = next_status(expected, event)
    move = _Move(
        incident_id, expected, event, actor, detail,
        params={**values, "status": target.value, "updated_at": now}, now=now, also_equal=also_equal or {},
    )  # fmt: skip
    found = _advance_pg(move, report=True)
    return None if found is None else Decided(found[0], found[1])


def _advance_pg(move: _Move, *, report: bool) -> Any:
    """Run `_advance_statement` in autocommit: its row (plan_id[, plan_ready_at]), or
    None when the compare-and-set did not match. Every parameter is prefixed (see
    `_advance_statement`)."""
    m, target, equal = move, move.target, move.also_equal
    shape = (
        tuple(sorted(m.params)),
        bool(m.detail),
        tuple((table, tuple(sorted(row))) for table, row in m.rows),
        tuple(sorted(m.plan)) if m.plan is not None else None,
        tuple(sorted(m.step_outcome)) if m.step_outcome is not None else None,
        tuple((name, equal[name] is None) for name in sorted(equal)),
        report,
    )
    bind: dict[str, Any] = {
        **{f"_where_{name}": value for name, value in equal.items() if value is not None},
        **{f"_v_{name}": value for name, value in m.params.items()},
        **_audit_params(m.incident_id, m.expected, target, m.event, m.actor, m.now, m.detail),
    }
    for i, (_table, row) in enumerate(m.rows):
        bind.update({f"_r{i}_{name}": value for name, value in row.items()})
    if m.plan is not None:
        bind.update({f"_p_{name}": value for name, value in m.plan.items()})
    if m.step_outcome is not None:
        bind.update({f"_s_{name}": value for name, value in m.step_outcome.items()}, _s_running="running")
    with autocommit_connection() as conn:
        return conn.execute(_advance_statement(*shape), bind).first()


def _advance_in_transaction(session: Session, move: _Move) -> int | None:
    m, tables = move, Base.metadata.tables
    if m.step_outcome is not None:
        store_step_outcome(session, m.step_outcome)
    plan_id = 0
    detail = m.detail
    values = {k: v for k, v in m.params.items() if k not in ("status", "updated_at")}
    if m.plan is not None:
        table = tables["stage_results"]
        plan_row = {"incident_id": m.incident_id, **m.plan}
        plan_id = int(session.execute(insert(table).values(plan_row).returning(table.c.id)).scalar_one())
        values["plan_id"] = plan_id
        detail = {**(detail or {}), "plan_id": plan_id}
    equal = {k: v for k, v in m.also_equal.items() if v is not None}
    null = [Incident.__table__.c[k].is_(None) for k, v in m.also_equal.items() if v is None]
    if not transition(
        session, m.incident_id, m.expected, m.event, actor=m.actor, detail=detail, values=values, now=m.now,
        also_equal=equal or None, also=null or None,
    ):  # fmt: skip
        session.rollback()  # the plan row goes with it; a step outcome is stored alone below
        if m.step_outcome is not None:
            store_step_outcome(session, m.step_outcome)
            session.commit()
        return None
    for table_name, row in m.rows:
        session.execute(insert(tables[table_name]).values({"incident_id": m.incident_id, **row}))
    return plan_id


def store_step_outcome(session: Session, outcome: dict[str, Any]) -> None:
    """Store a finished step's outcome (`id` and its finished columns) on its row, if
    that row is still `running`. The caller commits."""
    table = StepRun.__table__
    session.execute(
        update(table)
        .where(table.c.id == outcome["id"], table.c.status == "running")
        .values({k: v for k, v in outcome.items() if k != "id"})
    )


@lru_cache(maxsize=64)
def _advance_statement(
    columns: tuple[str, ...],
    with_detail: bool,
    rows: tuple[tuple[str, tuple[str, ...]], ...],
    plan: tuple[str, ...] | None,
    step_outcome: tuple[str, ...] | None,
    equal: tuple[tuple[str, bool], ...] = (),
    report: bool = False,
) -> Any:
    """WITH moved AS (UPDATE incidents ... WHERE id AND status RETURNING id, plan_id),
    audit AS (INSERT INTO transitions ... FROM moved), r0 AS (INSERT ... FROM moved), ...
    SELECT plan_id FROM moved. A plan row takes its id from the stage_results sequence
    in the UPDATE itself (`plan_id = nextval(...)`), so it too exists only if it matched.

    `report` (a decision, `advance_decision`): the audit detail gets the moved row's
    plan_id, and the SELECT also returns the time of the incident's latest `plan_ready`
    transition (the statement's snapshot: its own audit row is not seen)."""
    tables = Base.metadata.tables
    incidents = Incident.__table__
    update_stmt = (
        update(incidents)
        .where(
            incidents.c.id == bindparam("_id"),
            incidents.c.status == bindparam("_expected"),
            *[
                incidents.c[name].is_(None) if is_null else incidents.c[name] == bindparam(f"_where_{name}")
                for name, is_null in equal
            ],
        )
        .values(
            {incidents.c[name]: bindparam(f"_v_{name}", type_=incidents.c[name].type) for name in columns}
        )
    )
    if plan is not None:
        update_stmt = update_stmt.values(
            plan_id=func.nextval(func.pg_get_serial_sequence("stage_results", "id"))
        )
    moved = update_stmt.returning(incidents.c.id, incidents.c.plan_id).cte("moved")

    def typed(name: str, column: Any) -> Any:
        return bindparam(name, type_=column.type)

    audit = Transition.__table__
    audit_columns = ["incident_id", "from_status", "to_status", "event", "actor", "at"]
    audit_values = [moved.c.id] + [typed(f"_t_{c}", audit.c[c]) for c in audit_columns[1:]]
    if with_detail or plan is not None or report:
        detail: Any = (
            bindparam("_t_detail", type_=JSONB)
            if with_detail
            else literal_column("'{}'::jsonb" if plan is not None or report else "NULL::jsonb")
        )
        if plan is not None or report:
            detail = type_coerce(detail.op("||")(func.jsonb_build_object("plan_id", moved.c.plan_id)), JSONB)
        audit_columns.append("detail")
        audit_values.append(detail)
    audit_rows: Any = select(*audit_values)
    ctes = [insert(audit).from_select(audit_columns, audit_rows, include_defaults=False).cte("audit")]

    def produced(table_name: str, names: tuple[str, ...], prefix: str, with_id: bool) -> Any:
        table = tables[table_name]
        cols = ["incident_id", *names]
        vals = [moved.c.id, *[typed(f"{prefix}{n}", table.c[n]) for n in names]]
        if with_id:
            cols.insert(0, "id")
            vals.insert(0, moved.c.plan_id)
        return insert(table).from_select(cols, select(*vals), include_defaults=False)

    for i, (table_name, names) in enumerate(rows):
        ctes.append(produced(table_name, names, f"_r{i}_", False).cte(f"r{i}"))
    if plan is not None:
        ctes.append(produced("stage_results", plan, "_p_", True).cte("plan_row"))
    if step_outcome is not None:
        ctes.append(step_outcome_cte(tuple(n for n in step_outcome if n != "id")))
    if not report:
        return select(moved.c.plan_id).add_cte(*ctes)
    # Literals, not parameters: every parameter of this statement is named (see above).
    plan_ready_at = (
        select(audit.c.at)
        .where(audit.c.incident_id == moved.c.id, audit.c.event == literal_column(f"'{E.PLAN_READY.value}'"))
        .order_by(audit.c.id.desc())
        .limit(literal_column("1"))
        .scalar_subquery()
    )
    return select(moved.c.plan_id, plan_ready_at).add_cte(*ctes)


def step_outcome_cte(columns: tuple[str, ...]) -> Any:
    """PostgreSQL: `store_step_outcome` as a data-modifying CTE of a larger statement:
    UPDATE step_runs SET <columns> = :_s_<column> WHERE id = :_s_id AND status =
    :_s_running (pass "running"). Every parameter is named: a literal's anonymous
    parameter loses its value in a CTE of an INSERT."""
    steps = StepRun.__table__
    return (
        update(steps)
        .where(steps.c.id == bindparam("_s_id"), steps.c.status == bindparam("_s_running"))
        .values({steps.c[n]: bindparam(f"_s_{n}", type_=steps.c[n].type) for n in columns})
        .cte("step_done")
    )
