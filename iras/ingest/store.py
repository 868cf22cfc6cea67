"""Ingestion's one implementation: open an incident or join the open one with the
same key (deduplication), and record resolutions (auto-resolving an incident
whose every alert resolved before approval). The webhook (through the group
commit, `iras.ingest.batch`), the dead-letter replay and `iras alerts replay`
all write through `commit_batch`.

`write_batch` writes several requests in ONE transaction: the open incidents of
all their keys looked up and locked in one statement, new incidents, alert
events and transitions as multi-row INSERTs. Deduplication holds inside a batch
(the first firing alert of a key opens the incident, later ones join it) and
across processes (the partial unique index on open incidents' keys: a concurrent
duplicate makes the INSERT fail, the transaction is rolled back and written
again, and the retry finds the winner's incident and joins it). Open incidents
are locked in id order and new incidents inserted in key order, so two batches
never wait on each other in a cycle.

The triage of the incidents a batch opened is sent after its commit
(`enqueue_triage`); a message lost to a broker outage is re-sent by the
stuck-incident sweeper.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from iras import dispatch
from iras.db import after_commit, new_session, post_commit
from iras.ingest import incident_key, normalize
from iras.models import OPEN_INCIDENT_WHERE, AlertEvent, Incident, Transition, new_id
from iras.schemas import NormalizedAlert, utcnow
from iras.workflow import BEFORE_APPROVAL, TERMINAL, Event, IncidentStatus, transition

log = logging.getLogger(__name__)


@dataclass
class IngestOutcome:
    incident_id: str | None
    status: str  # processing | deduplicated | resolved_noted | no_open_incident | ignored
    alerts: int


@dataclass
class Prepared:
    """One request's alerts, normalised in the request's thread."""

    payload: dict[str, Any]
    alerts: list[NormalizedAlert]
    key: str
    # Each alert as JSON text (the alert_events.alert column), without its `raw`
    # (kept once per request): pydantic-core writes it ~3x faster than model_dump
    # followed by json.dumps.
    alert_json: list[str]
    any_resolved: bool
    any_firing: bool

    @property
    def source(self) -> str:
        return self.alerts[0].source


def prepare(payload: Any, source: str | None = None) -> Prepared | IngestOutcome:
    """Normalise (raises ingest.PayloadError); an outcome when there is nothing to write."""
    alerts = normalize(payload, source)
    if not alerts:
        # e.g. PagerDuty's `pagey.ping` when a subscription is created: valid, nothing to do.
        return IngestOutcome(None, "ignored", 0)
    return Prepared(
        payload=payload,
        alerts=alerts,
        key=incident_key(alerts[0]),
        alert_json=[a.model_dump_json(exclude={"raw"}) for a in alerts],
        any_resolved=any(a.status == "resolved" for a in alerts),
        any_firing=any(a.status == "firing" for a in alerts),
    )


# --------------------------------------------------------------------------- one batch, one transaction

_incidents = Incident.metadata.tables["incidents"]
_TERMINAL_SQL = [s.value for s in TERMINAL]
# Finds and locks (PostgreSQL; SQLite serialises writers anyway) the open incident of
# every key in the batch, in id order: two batches lock shared rows in the same order.
_LOCK_OPEN = (
    select(_incidents.c.id, _incidents.c.fingerprint)
    .where(
        _incidents.c.fingerprint.in_(bindparam("keys", expanding=True)),
        _incidents.c.status.not_in(_TERMINAL_SQL),
    )
    .order_by(_incidents.c.id)
    .with_for_update()
)
_JOIN = (
    _incidents.update()
    .where(_incidents.c.id == bindparam("iid"))
    .values(alert_count=_incidents.c.alert_count + bindparam("n"), last_seen=bindparam("now"))
)
_INSERT_INCIDENT = _incidents.insert()
_INSERT_ALERT = AlertEvent.metadata.tables["alert_events"].insert()
_INSERT_TRANSITION = Transition.metadata.tables["transitions"].insert()


# The same statements at the driver level, for PostgreSQL (see _Rows._flush_pg).
_OPEN_SQL = str(OPEN_INCIDENT_WHERE.text)
_PG_LOCK_OPEN = (
    "SELECT id, fingerprint FROM incidents WHERE fingerprint IN (%s) AND "
    + _OPEN_SQL
    + " ORDER BY id FOR UPDATE"
)
# Each table's columns in INSERT order (see _pg_insert).
_PG_COLUMNS: dict[str, tuple[str, ...]] = {
    "incidents": (
        "id", "status", "title", "service", "source", "fingerprint",
        "alert_count", "last_seen", "rca_attempts", "created_at", "updated_at",
    ),
    "alert_events": ("incident_id", "received_at", "status", "fingerprint", "alert", "raw"),
    "transitions": ("incident_id", "from_status", "to_status", "event", "actor", "at", "detail"),
}  # fmt: skip
_PG_JOIN = (
    "UPDATE incidents SET alert_count = incidents.alert_count + v.n, last_seen = %%s "
    "FROM (VALUES %s) AS v(id, n) WHERE incidents.id = v.id"
)
_dumps = json.dumps


def _pg_values(rows: int, columns: int) -> str:
    one = "(" + ",".join(["%s"] * columns) + ")"
    return ",".join([one] * rows)


def _raw_json(payload: dict[str, Any] | None) -> str | None:
    return None if payload is None else _dumps(payload)


# How a column's value is sent, when not as is: jsonb takes JSON text (`alert`
# already is).
_PG_ENCODE: dict[str, Callable[[Any], Any]] = {"raw": _raw_json, "detail": _dumps}
# Sent as ISO 8601 text with its offset, which the column reads whatever the
# session's DateStyle, rendered once per batch instead of by psycopg2's datetime
# adapter for every value.
_PG_TIMESTAMPS = frozenset({"last_seen", "created_at", "updated_at", "received_at", "at"})


def _pg_insert(table: str, rows: list[dict[str, Any]], now: Any) -> tuple[str, list[Any]]:
    """`rows` as one multi-row INSERT of the table's _PG_COLUMNS: (SQL, parameters).
    `now`, the batch's timestamp in every one of its rows, is rendered once."""
    columns = _PG_COLUMNS[table]
    stamp = now.isoformat()

    def iso(value: Any) -> str:
        return stamp if value is now else value.isoformat()

    encoders = [iso if name in _PG_TIMESTAMPS else _PG_ENCODE.get(name) for name in columns]
    params: list[Any] = []
    for r in rows:
        params.extend(
            encode(r[name]) if encode else r[name] for name, encode in zip(columns, encoders, strict=True)
        )
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + _pg_values(len(rows), len(columns)), params


def _pg_statement(parts: list[tuple[str, list[Any]]]) -> tuple[str, tuple[Any, ...]]:
    """Several writes as ONE statement: all but the last as data-modifying CTEs (run
    in full, in one snapshot; the foreign keys are checked at the statement's end,
    when the incidents it inserts are there)."""
    *first, (last_sql, _) = parts
    sql = last_sql
    if first:
        sql = "WITH " + ", ".join(f"w{i} AS ({part})" for i, (part, _) in enumerate(first)) + " " + last_sql
    return sql, tuple(p for _, params in parts for p in params)


def _lock_open(session: Session, keys: list[str]) -> dict[str, str]:
    """key -> id of its open incident, each row locked (in id order) until the commit."""
    if session.get_bind().dialect.name == "postgresql":
        sql = _PG_LOCK_OPEN % ",".join(["%s"] * len(keys))
        rows = session.connection().exec_driver_sql(sql, tuple(keys)).all()
    else:
        rows = session.execute(_LOCK_OPEN, {"keys": keys}).all()
    return {fp: iid for iid, fp in rows}


@dataclass
class _Rows:
    """Rows collected for the next multi-row INSERTs."""

    incidents: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    joins: dict[str, int] = field(default_factory=dict)
    # id -> row of the incidents in `incidents` (not yet written).
    opening: dict[str, dict[str, Any]] = field(default_factory=dict)

    def join(self, iid: str, n: int) -> None:
        """`n` more alerts for open incident `iid`. One opened since the last flush gets
        them in its own row: the flush writes in one statement, whose UPDATE would not
        see a row its INSERT adds."""
        row = self.opening.get(iid)
        if row is not None:
            row["alert_count"] += n
        else:
            self.joins[iid] = self.joins.get(iid, 0) + n

    def open(self, row: dict[str, Any]) -> None:
        self.incidents.append(row)
        self.opening[row["id"]] = row

    def flush(self, session: Session, now: Any) -> None:
        if session.get_bind().dialect.name == "postgresql":
            self._flush_pg(session, now)
        else:
            self._flush_core(session, now)
        self.incidents, self.alerts, self.transitions, self.joins, self.opening = [], [], [], {}, {}

    def _flush_pg(self, session: Session, now: Any) -> None:
        """PostgreSQL: every table's rows in ONE driver-level statement (psycopg2 renders
        the values in C; one statement is one round trip) instead of SQLAlchemy's
        per-row bind processing and insertmanyvalues batching; errors still go through
        SQLAlchemy (IntegrityError, OperationalError and invalidation of a dead
        connection)."""
        parts: list[tuple[str, list[Any]]] = []
        if self.incidents:
            parts.append(_pg_insert("incidents", sorted(self.incidents, key=lambda r: r["fingerprint"]), now))
        if self.alerts:
            parts.append(_pg_insert("alert_events", self.alerts, now))
        if self.transitions:
            parts.append(_pg_insert("transitions", self.transitions, now))
        if self.joins:
            params = [now]
            for iid, n in sorted(self.joins.items()):
                params.extend((iid, n))
            parts.append((_PG_JOIN % _pg_values(len(self.joins), 2), params))
        if parts:
            session.connection().exec_driver_sql(*_pg_statement(parts))

    def _flush_core(self, session: Session, now: Any) -> None:
        if self.incidents:
            # Key order (see _LOCK_OPEN); the partial unique index fires here on a
            # concurrent duplicate from another process.
            session.execute(_INSERT_INCIDENT, sorted(self.incidents, key=lambda r: r["fingerprint"]))
        if self.alerts:
            session.execute(_INSERT_ALERT, [{**r, "alert": json.loads(r["alert"])} for r in self.alerts])
        if self.transitions:
            session.execute(_INSERT_TRANSITION, self.transitions)
        if self.joins:
            session.execute(
                _JOIN, [{"iid": iid, "n": n, "now": now} for iid, n in sorted(self.joins.items())]
            )


def _alert_rows(iid: str, it: Prepared, now: Any) -> list[dict[str, Any]]:
    """The alert_events rows of one request: the request body is kept once, with its
    first alert (for a new incident, that is the incident's payload)."""
    return [
        {
            "incident_id": iid,
            "received_at": now,
            "status": a.status,
            "fingerprint": a.fingerprint,
            "alert": doc,  # JSON text
            "raw": it.payload if i == 0 else None,
        }
        for i, (a, doc) in enumerate(zip(it.alerts, it.alert_json, strict=True))
    ]


def write_batch(session: Session, items: list[Prepared]) -> tuple[list[IngestOutcome], list[str]]:
    """Write `items` in the session's transaction (the caller commits).

    Returns one outcome per item, in order, and the ids of the incidents opened
    (to enqueue for triage after the commit). Raises IntegrityError when another
    process opened one of the keys meanwhile: roll back and call again.
    """
    now = utcnow()
    keys = sorted({it.key for it in items})
    open_by_key = _lock_open(session, keys)
    rows = _Rows()
    outcomes: list[IngestOutcome] = []
    opened: list[str] = []
    for it in items:
        n = len(it.alerts)
        iid = open_by_key.get(it.key)
        if iid is not None and it.any_resolved:
            # A resolution needs the incident's alert history: write what came before
            # it in the batch, then take the original path.
            rows.flush(session, now)
            session.execute(_JOIN, {"iid": iid, "n": n, "now": now})
            outcomes.append(join_resolving(session, iid, it.payload, it.alerts, now))
            continue
        if iid is not None:
            rows.join(iid, n)
            rows.alerts.extend(_alert_rows(iid, it, now))
            outcomes.append(IngestOutcome(iid, "deduplicated" if it.any_firing else "resolved_noted", n))
            continue
        firing = next((a for a in it.alerts if a.status == "firing"), None)
        if firing is None:
            outcomes.append(IngestOutcome(None, "no_open_incident", n))
            continue
        iid = new_id()
        open_by_key[it.key] = iid
        opened.append(iid)
        rows.open(
            {
                "id": iid,
                "status": IncidentStatus.TRIAGING.value,
                "title": firing.title,
                "service": firing.service,
                "source": firing.source,
                "fingerprint": it.key,
                "alert_count": n,
                "last_seen": now,
                "rca_attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
        rows.alerts.extend(_alert_rows(iid, it, now))
        rows.transitions.append(
            {
                "incident_id": iid,
                "from_status": None,
                "to_status": IncidentStatus.TRIAGING.value,
                "event": "ingested",
                "actor": f"webhook:{firing.source}",
                "at": now,
                "detail": {"summary": firing.title[:200]},
            }
        )
        outcomes.append(IngestOutcome(iid, "processing", n))
    rows.flush(session, now)
    return outcomes, opened


def commit_batch(items: list[Prepared], attempts: int = 3) -> tuple[list[IngestOutcome], list[str]]:
    """One transaction for `items`, retried when a concurrent duplicate won a key.
    Returns one outcome per item and the ids of the incidents opened."""
    for attempt in range(attempts):
        with new_session() as session:
            try:
                result = write_batch(session, items)
                session.commit()
                return result
            except IntegrityError:
                session.rollback()
                if attempt == attempts - 1:
                    raise
            except BaseException:
                session.rollback()
                raise
    raise AssertionError("unreachable")


def enqueue_triage(incident_ids: Iterable[str]) -> None:
    """After the commit that opened them: send the triage of each new incident."""
    ids = list(incident_ids)
    if ids:
        post_commit(lambda: dispatch.enqueue_stages(ids, IncidentStatus.TRIAGING))


def ingest(payload: Any, source: str | None = None) -> IngestOutcome:
    """Normalise and write one request in a transaction of its own, then send the
    triage of the incident it opened. Raises ingest.PayloadError on bad input."""
    prepared = prepare(payload, source)
    if isinstance(prepared, IngestOutcome):
        return prepared
    (outcome,), opened = commit_batch([prepared])
    enqueue_triage(opened)
    return outcome


# --------------------------------------------------------------------------- resolutions


def _alert_doc(alert: NormalizedAlert) -> dict[str, Any]:
    return alert.model_dump(mode="json", exclude={"raw"})


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


def join_resolving(
    session: Session, incident_id: str, payload: dict[str, Any], alerts: list[NormalizedAlert], now: Any
) -> IngestOutcome:
    """Record a request with a resolved alert on the open incident (its row is locked
    by the caller): the alerts, the resolution on the timeline and, once nothing is
    left firing before approval, the incident closed as auto-resolved."""
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
        after_commit(session, lambda: dispatch.enqueue_stage(incident_id, IncidentStatus.CLOSING))
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
