"""Database engine, sessions, and "enqueue only after commit".

SQLite (the embedded default) is opened in WAL mode with a busy timeout, and every
transaction starts with BEGIN IMMEDIATE: a deferred transaction that reads and
then writes can fail at once with SQLITE_BUSY_SNAPSHOT when another thread
committed in between, and the busy timeout does not help in that case. With
IMMEDIATE, writers queue up behind the lock instead of failing.

Celery messages sent while a transaction is open are collected in
`session.info` and published from `after_commit` (dropped on rollback), so a
worker can never receive an id whose row is not committed yet.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from iras import prepared
from iras.config import get_settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_engine: Engine | None = None
_factory: sessionmaker[Session] | None = None
_engine_pid: int | None = None


def make_engine(url: str, *, prepared_statements: bool = True) -> Engine:
    """An engine for `url`. On PostgreSQL, with `prepared_statements`, the hot
    statements run as server-side prepared statements (`iras.prepared`)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=10,
            max_overflow=20,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # Kept open: IRAS_DB_POOL_SIZE (one per thread that may use it, set per process
    # type). Overflow connections (closed on return) cap a process at 30 connections,
    # or pool + 5 beyond that, so a larger pool does not raise the worst case on
    # PostgreSQL's max_connections much.
    pool_size = int(os.environ.get("IRAS_DB_POOL_SIZE") or "10")
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max(5, 30 - pool_size),
        connect_args={"connect_timeout": 10},
    )
    _ping_after_idle(engine, PING_AFTER_IDLE_SECONDS)
    if prepared_statements and engine.dialect.driver == "psycopg2":
        prepared.install(engine)
    return engine


# A pooled connection idle longer than this is checked (SELECT 1) before use.
PING_AFTER_IDLE_SECONDS = 2.0


def _ping_after_idle(engine: Engine, idle_seconds: float) -> None:
    """Check a connection before use only if it sat idle in the pool.

    `pool_pre_ping` pings on *every* checkout: under load that was one extra
    round trip and one extra (autocommit) transaction per session, ~20 per
    incident. A connection that was in use a moment ago is as good as a ping;
    one that sat idle may be dead (a database restart, an idle timeout on a
    proxy), so it is pinged and, if dead, replaced before anyone uses it. A
    restart in the last `idle_seconds` under load surfaces as one
    OperationalError per pool (webhook 503, task retry), and SQLAlchemy then
    recycles the whole pool.
    """

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _fresh(_dbapi_conn: Any, record: Any) -> None:
        record.info["iras_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("iras_idle_since")
        if since is not None and time.monotonic() - since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # noqa: BLE001 - any failure: this connection is unusable
            # The pool discards this connection and checks out another (a fresh one).
            raise DisconnectionError(f"stale pooled connection: {exc}") from exc


def get_engine() -> Engine:
    """The process's engine; re-created after a fork so children never share sockets."""
    global _engine, _factory, _engine_pid
    with _lock:
        if _engine is None or _engine_pid != os.getpid():
            if _engine is not None:
                _engine.dispose(close=False)
            settings = get_settings()
            _engine = make_engine(settings.database_url, prepared_statements=settings.db_prepared_statements)
            _factory = sessionmaker(bind=_engine, expire_on_commit=False)
            _engine_pid = os.getpid()
        return _engine


def reset_engine() -> None:
    global _engine, _factory
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None
        _factory = None


def new_session() -> Session:
    get_engine()
    assert _factory is not None
    return _factory()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work: commit on success, roll back on error, always close."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def _checkout_autocommit() -> Iterator[Connection]:
    """A pooled connection in autocommit: each statement is its own transaction,
    with no BEGIN/COMMIT round trips. For work that is one statement (a transition
    with its rows, `iras.workflow.advance`) or reads that need no snapshot.

    The driver's `autocommit` flag is set on the connection for this use only and
    cleared before it returns to the pool. SQLAlchemy's `isolation_level=
    "AUTOCOMMIT"` option would do the same but restores the level on check-in with a
    `SET default_transaction_isolation` and makes psycopg2 send `BEGIN ISOLATION
    LEVEL ...` from then on: two more round trips per use. With the flag, an idle
    connection is not in a transaction, so SQLAlchemy's rollback on check-in sends
    nothing.
    """
    with get_engine().connect() as conn:
        raw = conn.connection.dbapi_connection
        raw.autocommit = True  # type: ignore[union-attr]
        try:
            yield conn
        finally:
            if not conn.invalidated:  # else a disconnect: the pool discards it
                raw.autocommit = False  # type: ignore[union-attr]


@contextmanager
def autocommit_connection() -> Iterator[Connection]:
    """A pooled connection in autocommit (`_checkout_autocommit`): each statement is its
    own transaction. Inside `held_connection()` it is that block's one connection."""
    held = _held.get()
    if held is None:
        with _checkout_autocommit() as conn:
            yield conn
        return
    conn = held.connection()
    held.in_use += 1
    try:
        yield conn
    finally:
        held.in_use -= 1
        held.used_at = time.monotonic()


class _HeldConnection:
    """The connection of a `held_connection()` block, checked out on first use."""

    def __init__(self) -> None:
        self._stack: ExitStack | None = None
        self._conn: Connection | None = None
        self.used_at = 0.0
        self.in_use = 0  # nested uses (a read session, a statement inside it)

    def connection(self) -> Connection:
        conn = self._conn
        # Broken (a database restart), or idle long enough to need the pool's ping;
        # never while an outer use still has it.
        if (
            conn is not None
            and not self.in_use
            and (conn.invalidated or time.monotonic() - self.used_at > PING_AFTER_IDLE_SECONDS)
        ):
            self.release()
            conn = None
        if conn is None:
            self._stack = ExitStack()
            conn = self._conn = self._stack.enter_context(_checkout_autocommit())
            self.used_at = time.monotonic()
        return conn

    def release(self) -> None:
        stack, self._stack, self._conn = self._stack, None, None
        if stack is not None:
            stack.close()


_held: ContextVar[_HeldConnection | None] = ContextVar("iras_held_connection", default=None)


@contextmanager
def held_connection() -> Iterator[None]:
    """Within this block (one thread), every `autocommit_connection()` and `read_session()`
    on PostgreSQL uses one pooled connection instead of a checkout and check-in each.

    For a unit of work that runs a few autocommit statements in a row: a remediation (a
    read, a claim per step, the closing statement), a decision: one checkout and
    check-in instead of one per statement. The connection
    is idle between statements, in no transaction: holding it through a step's command
    holds no lock and no snapshot, and a prefork process runs one task at a time
    anyway. One left idle longer than `PING_AFTER_IDLE_SECONDS`, or broken, is returned
    and the next statement checks out another (pinged by the pool, as always).
    Transactions (`session_scope`) still take a connection of their own."""
    if _held.get() is not None or get_engine().dialect.name != "postgresql":
        yield
        return
    held = _HeldConnection()
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
        held.release()


@contextmanager
def read_session() -> Iterator[Session]:
    """A session for reads only. On PostgreSQL it runs on an autocommit connection:
    each SELECT is its own snapshot, with no BEGIN/ROLLBACK round trips (two of the
    four statements of a typical load). Writes do not belong here."""
    if get_engine().dialect.name != "postgresql":
        with new_session() as session:
            yield session
        return
    with autocommit_connection() as conn, Session(bind=conn, expire_on_commit=False) as session:
        yield session


@contextmanager
def read_connection() -> Iterator[Connection]:
    """`read_session` without the ORM session, for Core reads (rows, not objects): a
    task's reads skip the session's construction, execute path and close. On PostgreSQL the
    autocommit connection (the held one inside `held_connection`); on SQLite a
    connection whose transaction ends, rolled back, with the block."""
    if get_engine().dialect.name != "postgresql":
        with get_engine().connect() as conn:
            yield conn
        return
    with autocommit_connection() as conn:
        yield conn


def after_commit(session: Session, callback: Callable[[], Any]) -> None:
    """Run `callback` once the current transaction commits; drop it on rollback."""
    session.info.setdefault("after_commit", []).append(callback)


def post_commit(callback: Callable[[], Any]) -> None:
    """Run what follows a commit already made outside a session (`iras.workflow.advance`):
    as with `after_commit`'s callbacks (which run through here), a failure (a broker
    outage) is logged, never raised: a broker outage must not undo a committed
    incident, and the sweeper re-sends a stage whose message was lost."""
    try:
        callback()
    except Exception:  # noqa: BLE001
        log.exception("post-commit enqueue failed; the sweeper will pick it up")


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop("after_commit", []):
        post_commit(callback)


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop("after_commit", None)
