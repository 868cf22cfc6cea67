"""Group commit for webhook ingestion.

Every web process has one writer thread. A request normalises its payload in
its own thread (bad input never gets this far), hands the result to the writer
and waits. The writer takes whatever requests are waiting (up to
`MAX_BATCH`), writes them in ONE transaction (the open incidents of all their
keys looked up and locked in one statement, new incidents, alert events and
transitions as multi-row INSERTs), commits, publishes the triage messages of
the new incidents in one Redis round trip, and only then wakes each request
with its own answer. A request is therefore answered 202 only once its rows
are committed, and a message is never sent for a row that is not.

Deduplication holds inside a batch (the first firing alert of a key opens the
incident, later ones in the same batch join it) and across processes (the
partial unique index: a concurrent duplicate makes the INSERT fail, the batch
is rolled back and written again, and the retry finds the winner's incident
and joins it). Open incidents are locked in id order and new incidents inserted
in key order, so two batches never wait on each other in a cycle.

Failures: a database outage (OperationalError) fails every request of the batch
(each answers 503, nothing was written); any other error retries the batch's
requests one at a time, so one poisonous alert cannot fail its neighbours.

A notification that resolves alerts of an open incident takes the original
path (`services._join`: alert history, timeline entry, auto-resolution),
inside the same transaction, after the rows written before it in the batch.

The same writer serves the embedded SQLite mode: there the triage messages go
through Celery one at a time (`iras.tasks.enqueue_stage`), with Redis they are
LPUSHed in one round trip as ready-made Celery (protocol 2) messages
(`iras.publish`).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from iras.ingest import normalize
from iras.models import OPEN_INCIDENT_WHERE, AlertEvent, Incident, Transition, new_id
from iras.publish import is_redis_url, publisher_for
from iras.schemas import NormalizedAlert, utcnow
from iras.services import IngestOutcome, _join, incident_key
from iras.workflow import TERMINAL, IncidentStatus

log = logging.getLogger(__name__)

MAX_BATCH = int(os.environ.get("IRAS_INGEST_MAX_BATCH", "100"))
# How long a request waits for its batch before answering 503 (the writer is stuck).
WAIT_SECONDS = 30.0
# How long a process at exit waits for its writer to publish what it already answered.
DRAIN_AT_EXIT_SECONDS = 5.0


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
    # The body as received, when it is the UTF-8 text of `payload`: PostgreSQL's jsonb
    # stores it as it would store json.dumps(payload), without re-encoding it here.
    raw_json: str | None = None

    @property
    def source(self) -> str:
        return self.alerts[0].source


def prepare(payload: Any, source: str | None = None, raw_json: str | None = None) -> Prepared | IngestOutcome:
    """Normalise (raises ingest.PayloadError); an outcome when there is nothing to write.
    `raw_json`: the request body `payload` was parsed from, if it is at hand."""
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
        raw_json=raw_json,
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
# id(payload) -> the request body it was parsed from, for the batch being flushed.
_raw_bodies: threading.local = threading.local()


def _json_of(payload: dict[str, Any]) -> str:
    raw: str | None = getattr(_raw_bodies, "map", {}).get(id(payload))
    return raw if raw is not None else _dumps(payload)


def _pg_values(rows: int, columns: int) -> str:
    one = "(" + ",".join(["%s"] * columns) + ")"
    return ",".join([one] * rows)


def _raw_json(payload: dict[str, Any] | None) -> str | None:
    return None if payload is None else _json_of(payload)


# How a column's value is sent, when not as is: jsonb takes JSON text (`alert`
# already is).
_PG_ENCODE: dict[str, Callable[[Any], Any]] = {"raw": _raw_json, "detail": _dumps}
# Sent as ISO 8601 text with its offset, which the column reads whatever the
# session's DateStyle: psycopg2's datetime adapter costs ~4 us a value, a third of
# an incident row's rendering.
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
        the values in C; one statement is one round trip). SQLAlchemy's per-row bind
        processing and insertmanyvalues batching were ~a quarter of a web process's CPU
        per alert; errors still go through SQLAlchemy (IntegrityError, OperationalError
        and invalidation of a dead connection)."""
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
    _raw_bodies.map = {id(it.payload): it.raw_json for it in items if it.raw_json is not None}
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
            outcomes.append(_join(session, iid, it.payload, it.alerts, now))
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
    """One transaction for `items`, retried when a concurrent duplicate won a key."""
    from iras.db import new_session

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


def _is_outage(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and bool(getattr(exc, "connection_invalidated", False))
    )


# --------------------------------------------------------------------------- triage messages


class TriagePublisher:
    """Sends the analysis of new incidents after their commit: `incidents.analyze_batch`
    with up to `iras.tasks.ANALYSIS_BATCH` incident ids a message (a worker analyses
    them in turn when every stage answers locally, else sends each its own
    `run_triage`).

    With a Redis broker: ready-made Celery messages (`iras.publish`) for the whole
    batch in one LPUSH (kombu's publish path costs ~1 ms of CPU per message here:
    routing, producer pool, signals, a round trip each). Otherwise (the embedded
    broker and its in-process worker of a few threads): `iras.tasks.enqueue_stage`,
    a `run_triage` message an incident, as before.

    A failed publish is logged and not retried here: the rows are committed and the
    stuck-incident sweeper re-sends their triage (as for any failed publish).
    """

    TASK = "incidents.analyze_batch"

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self.to_redis = is_redis_url(broker_url)

    def publish(self, incident_ids: Iterable[str]) -> None:
        from iras import tasks

        ids = list(incident_ids)
        chunks = [(ids[i : i + tasks.ANALYSIS_BATCH],) for i in range(0, len(ids), tasks.ANALYSIS_BATCH)]
        if not chunks:
            return
        # Looked up per batch: the process's publisher is a new one after a fork.
        sender = publisher_for(self.broker_url) if self.to_redis else None
        if sender is not None:
            try:
                if sender.publish(self.TASK, chunks):
                    return
            except Exception:  # noqa: BLE001 - committed rows: the sweeper re-sends
                log.exception(
                    "post-commit enqueue of the analysis of %d incident(s) failed; the sweeper will pick them up",
                    len(ids),
                )
                return
        for iid in ids:
            try:
                tasks.enqueue_stage(iid, IncidentStatus.TRIAGING)
            except Exception:  # noqa: BLE001
                log.exception("post-commit enqueue failed; the sweeper will pick it up")


# --------------------------------------------------------------------------- the writer thread


class RateLimited(Exception):
    """The request's rate-limit bucket had no token left when its batch was written."""


@dataclass(frozen=True)
class Quota:
    """The rate-limit token a request still has to take (see BatchWriter.submit)."""

    limiter: Any  # iras.web.ingest_guard.Limiter
    bucket: str
    rate: float
    burst: int


# Guards `_Pending.taken`/`cancelled`: a request that gives up and the writer taking it
# into a batch decide, under this lock, which of them wins.
_claim_lock = threading.Lock()


class _Pending:
    """One waiting request. `_lock` is held until the answer is set: a plain lock is
    the cheapest wake-up there is (an Event builds a Condition per wait)."""

    __slots__ = ("item", "quota", "_lock", "answered", "outcome", "error", "taken", "cancelled")

    def __init__(self, item: Prepared, quota: Quota | None) -> None:
        self.item = item
        self.quota = quota
        self._lock = threading.Lock()
        self._lock.acquire()
        self.answered = False
        self.outcome: IngestOutcome | None = None
        self.error: BaseException | None = None
        self.taken = False  # in a batch the writer is committing
        self.cancelled = False  # given up before the writer took it: never written

    def answer(self, outcome: IngestOutcome | None = None, error: BaseException | None = None) -> None:
        if self.answered:
            return
        self.outcome, self.error, self.answered = outcome, error, True
        self._lock.release()

    def wait(self, timeout: float) -> bool:
        return self._lock.acquire(timeout=timeout)


class BatchWriter:
    """One per web process: batches the waiting requests into one transaction each."""

    def __init__(self, publisher: TriagePublisher, max_batch: int = MAX_BATCH) -> None:
        self.publisher = publisher
        self.max_batch = max(1, max_batch)
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        # Batches taken and not finished (their messages not yet published): `drain`.
        self._in_flight = 0
        self._settled = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="iras-ingest-writer", daemon=True)
        self._thread.start()
        self.batches = 0
        self.items = 0

    def submit(
        self, item: Prepared, quota: Quota | None = None, timeout: float = WAIT_SECONDS
    ) -> IngestOutcome:
        """Wait until `item` is committed (or failed); raises the batch's error.

        With a `quota`, the request's rate-limit token is taken by the writer, for
        the whole batch at once (one Redis round trip per bucket and batch instead
        of one per request); RateLimited when the bucket had none left."""
        pending = _Pending(item, quota)
        self._queue.put(pending)
        if not pending.wait(timeout):
            # The answer must agree with what is stored: a request still queued is
            # withdrawn (the writer skips it) and its 503 means "not written"; one
            # already in a batch waits for that batch's real outcome.
            with _claim_lock:
                if not pending.taken:
                    pending.cancelled = True
            if pending.cancelled or not pending.wait(timeout):
                raise OperationalError(
                    "ingest writer", None, TimeoutError(f"no commit within {timeout:.0f}s")
                )
        if pending.error is not None:
            raise pending.error
        assert pending.outcome is not None
        return pending.outcome

    def _take(self) -> list[_Pending]:
        """The next batch: requests withdrawn after waiting too long are left out."""
        batch: list[_Pending] = []
        while not batch:
            taken = [self._queue.get()]
            while len(taken) < self.max_batch:
                try:
                    taken.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            with _claim_lock:
                for pending in taken:
                    if not pending.cancelled:
                        pending.taken = True
                        batch.append(pending)
        return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            with self._settled:
                self._in_flight += 1
            try:
                self._commit(self._take_tokens(batch))
            except BaseException as exc:  # noqa: BLE001 - the writer must never die
                log.exception("ingest writer failed")
                for p in batch:
                    p.answer(error=exc)
            finally:
                with self._settled:
                    self._in_flight -= 1
                    self._settled.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until the batches of the requests answered so far have published their
        messages (a request is answered before its batch publishes): at exit, so a
        graceful restart sends what it answered for, and in tests. False on timeout."""
        with self._settled:
            return self._settled.wait_for(lambda: not self._in_flight and self._queue.empty(), timeout)

    def _take_tokens(self, batch: list[_Pending]) -> list[_Pending]:
        """Take the batch's rate-limit tokens, bucket by bucket, in arrival order;
        answer the requests left without one. Returns the requests to write."""
        wanted: dict[Quota, list[_Pending]] = {}
        for p in batch:
            if p.quota is not None:
                wanted.setdefault(p.quota, []).append(p)
        if not wanted:
            return batch
        refused: set[int] = set()
        for quota, pendings in wanted.items():
            granted = quota.limiter.acquire_many(quota.bucket, quota.rate, quota.burst, len(pendings))
            for p in pendings[granted:]:
                refused.add(id(p))
                p.answer(error=RateLimited(quota.bucket))
        return [p for p in batch if id(p) not in refused] if refused else batch

    def _commit(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        self.batches += 1
        self.items += len(batch)
        try:
            outcomes, opened = commit_batch([p.item for p in batch])
        except Exception as exc:  # noqa: BLE001
            if _is_outage(exc) or len(batch) == 1:
                for p in batch:
                    p.answer(error=exc)
                return
            # Someone in the batch is poisonous: write each alone.
            log.warning("ingest batch of %d failed (%s); writing its requests one at a time", len(batch), exc)
            for p in batch:
                self._commit([p])
            return
        # Committed: the requests are answered at once, the analysis messages follow.
        # A 202 promises a stored alert, not a queued message (a lost one is re-sent
        # by the sweeper), and a request answered sooner comes back sooner: in a
        # closed loop the next batch is larger (bench/README.md, session 5).
        for p, outcome in zip(batch, outcomes, strict=True):
            p.answer(outcome=outcome)
        self.publisher.publish(opened)


_writer_lock = threading.Lock()
_writer: tuple[tuple[int, str], BatchWriter] | None = None


def get_writer() -> BatchWriter:
    """This process's writer; a new one after a fork or a change of broker."""
    global _writer
    from iras.config import get_settings

    ident = (os.getpid(), get_settings().celery_broker_url)
    held = _writer
    if held is not None and held[0] == ident:
        return held[1]
    with _writer_lock:
        if _writer is None or _writer[0] != ident:
            writer = BatchWriter(TriagePublisher(ident[1]))
            atexit.register(writer.drain, DRAIN_AT_EXIT_SECONDS)
            _writer = (ident, writer)
        return _writer[1]


def ingest(payload: Any, source: str | None = None) -> IngestOutcome:
    """Normalise in this thread, then wait for the batch commit. Raises PayloadError on bad input."""
    prepared = prepare(payload, source)
    if isinstance(prepared, IngestOutcome):
        return prepared
    return get_writer().submit(prepared)
