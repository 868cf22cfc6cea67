"""`db.held_connection()`: a unit of work (a remediation, a decision) runs its
autocommit statements and read sessions on one pooled connection, on a real
PostgreSQL. What must hold: one backend for the whole block, nested uses
included; a connection left idle past the ping threshold or broken is replaced,
never reused; transactions keep their own connection; outside the block nothing
changes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event, text

import iras.db
from iras.db import autocommit_connection, held_connection, read_connection, read_session, session_scope

pytestmark = pytest.mark.integration

_PID = text("SELECT pg_backend_pid()")


def backend() -> int:
    with autocommit_connection() as conn:
        return int(conn.execute(_PID).scalar_one())


@pytest.fixture
def checkouts(pg_database: str) -> Iterator[list[int]]:
    """Every checkout from the pool, as it happens."""
    engine = iras.db.get_engine()
    seen: list[int] = []

    def count(*_: object) -> None:
        seen.append(1)

    event.listen(engine, "checkout", count)
    yield seen
    event.remove(engine, "checkout", count)


def test_a_block_runs_every_statement_on_one_backend(checkouts: list[int]) -> None:
    with held_connection():
        first = backend()
        with read_session() as session:
            in_session = int(session.execute(_PID).scalar_one())
            assert backend() == first  # a statement inside a read session: the same connection
        assert in_session == first
        assert backend() == first
        with read_connection() as conn:  # Core reads: the same connection
            assert int(conn.execute(_PID).scalar_one()) == first
        assert len(checkouts) == 1
        with session_scope() as session:  # a transaction takes a connection of its own
            assert int(session.execute(_PID).scalar_one()) != first
    assert len(checkouts) == 2
    backend()
    backend()
    assert len(checkouts) == 4  # outside a block: a checkout per use, as before
    # Outside the block: the held connection went back to the pool, in autocommit no more.
    with iras.db.get_engine().connect() as conn:
        assert conn.connection.dbapi_connection.autocommit is False  # type: ignore[union-attr]


def test_the_held_connection_is_in_autocommit(pg_database: str) -> None:
    """Each statement commits on its own: what one wrote is visible to another
    connection at once, with no COMMIT from the block."""
    with held_connection():
        with autocommit_connection() as conn:
            conn.execute(text("CREATE TABLE held_probe (n int)"))
            conn.execute(text("INSERT INTO held_probe VALUES (1)"))
        with session_scope() as session:
            assert session.execute(text("SELECT count(*) FROM held_probe")).scalar_one() == 1


def test_an_idle_held_connection_is_replaced(checkouts: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle past the threshold (a long step), it is returned and the next statement
    checks out one the pool pings; during a nested use it is never swapped."""
    monkeypatch.setattr(iras.db, "PING_AFTER_IDLE_SECONDS", 0.0)
    with held_connection():
        backend()
        assert len(checkouts) == 1
        # The threshold is 0: every use after the last one counts as idle...
        with autocommit_connection() as conn:
            outer = int(conn.execute(_PID).scalar_one())
            assert len(checkouts) == 2
            # ...but not a nested one, while the outer use still holds it.
            assert backend() == outer
            assert len(checkouts) == 2
    with iras.db.get_engine().connect() as conn:  # it went back to the pool
        assert conn.connection.dbapi_connection.autocommit is False  # type: ignore[union-attr]


def test_a_broken_held_connection_is_replaced(pg_database: str) -> None:
    """A backend killed under the block (a database restart) fails the statement that
    finds it; the next statement of the same block works on a new connection."""
    from sqlalchemy.exc import OperationalError

    with held_connection():
        doomed = backend()
        with session_scope() as session:
            session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": doomed})
        with pytest.raises(OperationalError):
            backend()
        assert backend() != doomed
