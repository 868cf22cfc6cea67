"""`iras.prepared`: autocommit statements run as server-side prepared statements on a
real PostgreSQL. What must hold: the rows are the ones the statement returns as
text (types, NULLs, percent signs, unicode); a statement (the transitions' CTE
among them) is prepared once per connection; transactions and `DB_PREPARED_STATEMENTS=false` prepare nothing; a
statement the server cannot prepare, a string longer than the column it is
compared with, a plan made stale by a migration and a statement past the
per-connection cap still get their answer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, bindparam, select, text
from sqlalchemy.dialects import postgresql

from iras.db import make_engine
from iras.models import Incident, JsonType, StageResult
from iras.prepared import parameter_type, prepared_form
from iras.schemas import utcnow

# --------------------------------------------------------------------------- unit


def test_a_statement_becomes_a_named_statement_with_numbered_parameters() -> None:
    sql = "SELECT a FROM t WHERE x = %(x)s AND y = %(y_1)s OR x2 = %(x)s AND z LIKE 'a%%'"
    form = prepared_form(sql)
    assert form.body == "SELECT a FROM t WHERE x = $1 AND y = $2 OR x2 = $1 AND z LIKE 'a%'"
    assert form.params == ("x", "y_1")
    assert form.execute == f"EXECUTE {form.name}(%(x)s, %(y_1)s)"
    assert form.name.startswith("iras_") and form.name == prepared_form(sql).name
    assert prepared_form(sql.replace("a FROM", "b FROM")).name != form.name
    assert form.kind_ok and prepared_form("\n WITH moved AS (UPDATE t SET a = %(a)s) SELECT 1").kind_ok
    assert not prepared_form("SET lock_timeout = %(t)s").kind_ok


def test_parameters_are_declared_with_the_bind_type_strings_as_text() -> None:
    dialect = postgresql.psycopg2.dialect()  # type: ignore[attr-defined]

    def declared(column: Any) -> str:
        return parameter_type(bindparam("p", type_=column.type), dialect)

    assert declared(Incident.__table__.c.fingerprint) == "text"  # a VARCHAR(n) column
    assert declared(Incident.__table__.c.alert_count) == "INTEGER"
    assert declared(Incident.__table__.c.created_at) == "TIMESTAMP WITH TIME ZONE"
    assert parameter_type(bindparam("p", type_=JsonType), dialect) == "JSONB"
    assert parameter_type(bindparam("p"), dialect) == "unknown"
    assert parameter_type(None, dialect) == "unknown"


# --------------------------------------------------------------------------- PostgreSQL

_PREPARED = text("SELECT name, statement FROM pg_prepared_statements WHERE name LIKE 'iras%' ORDER BY name")


@pytest.fixture
def engines(pg_database: str) -> Iterator[tuple[Engine, Engine]]:
    """An engine that prepares and one that does not, on the same database."""
    with_prepared = make_engine(pg_database)
    as_text = make_engine(pg_database, prepared_statements=False)
    yield with_prepared, as_text
    with_prepared.dispose()
    as_text.dispose()


def autocommit(engine: Engine) -> Connection:
    conn = engine.connect()
    conn.connection.dbapi_connection.autocommit = True  # type: ignore[union-attr]
    return conn


def seed(engine: Engine) -> str:
    incident_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(
            Incident.__table__.insert().values(
                id=incident_id,
                title="50% of checkout fails — ünïcode",
                source="generic",
                fingerprint=incident_id,
                status="executing",
                alert_count=3,
                approval_deadline=utcnow() + timedelta(minutes=15),
            )  # fmt: skip
        )
        conn.execute(
            StageResult.__table__.insert().values(
                incident_id=incident_id,
                stage="plan",
                attempt=1,
                analyst="test",
                model=None,
                result={"steps": [{"command": "kubectl scale --replicas=3", "ratio": 0.5}], "note": None},
                input_tokens=1,
                output_tokens=2,
                cache_read_tokens=0,
                cache_creation_tokens=0,
                latency_ms=1.5,
                created_at=utcnow(),
            )  # fmt: skip
        )
    return incident_id


_READ = (
    select(
        Incident.title,
        Incident.alert_count,
        Incident.approval_deadline,
        Incident.severity,
        StageResult.result,
        (Incident.title.like(bindparam("pattern"))).label("matches"),
    )
    .join(StageResult, StageResult.incident_id == Incident.id)
    .where(Incident.id == bindparam("id"), Incident.status == bindparam("status"))
)


@pytest.mark.integration
def test_an_autocommit_statement_is_prepared_once_and_answers_as_text_does(
    engines: tuple[Engine, Engine],
) -> None:
    with_prepared, as_text = engines
    incident_id = seed(as_text)
    params = {"id": incident_id, "status": "executing", "pattern": "50%%"}
    with autocommit(as_text) as conn:
        expected = conn.execute(_READ, params).all()
        assert conn.execute(_PREPARED).all() == []
    with autocommit(with_prepared) as conn:
        first = conn.execute(_READ, params).all()
        second = conn.execute(_READ, params).all()
        prepared = conn.execute(_PREPARED).all()
    assert first == second == expected
    assert expected[0].result["steps"][0]["ratio"] == 0.5 and expected[0].severity is None
    assert expected[0].matches is True
    assert len(prepared) == 1 and "FROM incidents JOIN stage_results" in prepared[0].statement


@pytest.mark.integration
def test_a_transaction_prepares_nothing(engines: tuple[Engine, Engine]) -> None:
    """(The setting off: `test_the_setting_reaches_the_apps_engine`.)"""
    with_prepared, as_text = engines
    incident_id = seed(as_text)
    params = {"id": incident_id, "status": "executing", "pattern": "%"}
    with with_prepared.begin() as conn:
        assert len(conn.execute(_READ, params).all()) == 1
        assert conn.execute(_PREPARED).all() == []


@pytest.mark.integration
def test_a_string_longer_than_its_column_is_compared_whole(engines: tuple[Engine, Engine]) -> None:
    """As a literal is: never cut to the column's length (which would find the
    incident whose id is its first 36 characters)."""
    incident_id = seed(engines[1])
    read = select(Incident.id).where(Incident.id == bindparam("id"))
    with autocommit(engines[0]) as conn:
        assert conn.execute(read, {"id": incident_id + "-and-more"}).all() == []
        assert conn.execute(read, {"id": incident_id}).scalar_one() == incident_id
        assert len(conn.execute(_PREPARED).all()) == 1


@pytest.mark.integration
def test_a_statement_the_server_cannot_prepare_runs_as_text(engines: tuple[Engine, Engine]) -> None:
    with autocommit(engines[0]) as conn:
        # The type of a bare `$1 IS NULL` cannot be inferred: PREPARE refuses it.
        undetermined = text("SELECT :x IS NULL AS missing").bindparams(bindparam("x"))
        assert conn.execute(undetermined, {"x": None}).scalar_one() is True
        assert conn.execute(undetermined, {"x": "a"}).scalar_one() is False
        assert conn.execute(_PREPARED).all() == []


@pytest.mark.integration
def test_a_plan_made_stale_by_a_migration_is_prepared_again(engines: tuple[Engine, Engine]) -> None:
    """After `ALTER COLUMN ... TYPE`, PostgreSQL refuses to run the old plan ("cached
    plan must not change result type"): the statement is prepared afresh and answers."""
    with_prepared, _ = engines
    with autocommit(with_prepared) as conn:
        conn.execute(text("CREATE TABLE scratch (id int PRIMARY KEY, n int)"))
        conn.execute(text("INSERT INTO scratch VALUES (1, 7)"))
        read = text("SELECT n FROM scratch WHERE id = :id").bindparams(
            bindparam("id", type_=postgresql.INTEGER)
        )
        assert conn.execute(read, {"id": 1}).scalar_one() == 7
        conn.execute(text("ALTER TABLE scratch ALTER COLUMN n TYPE text"))
        assert conn.execute(read, {"id": 1}).scalar_one() == "7"
        assert len(conn.execute(_PREPARED).all()) == 1


@pytest.mark.integration
def test_a_connection_prepares_no_more_than_its_cap(
    engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `MAX_PER_CONNECTION` a new statement runs as text (the server keeps a plan
    per prepared statement): every statement still answers."""
    import iras.prepared

    monkeypatch.setattr(iras.prepared, "MAX_PER_CONNECTION", 2)
    incident_id = seed(engines[1])
    reads = [
        select(column).where(Incident.id == bindparam("id"))
        for column in (Incident.title, Incident.status, Incident.source)
    ]
    with autocommit(engines[0]) as conn:
        answers = [conn.execute(read, {"id": incident_id}).scalar_one() for read in reads * 2]
        assert answers == ["50% of checkout fails — ünïcode", "executing", "generic"] * 2
        assert len(conn.execute(_PREPARED).all()) == 2


@pytest.mark.integration
def test_the_setting_reaches_the_apps_engine(pg_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`DB_PREPARED_STATEMENTS` decides for the engine every IRAS process uses."""
    from iras.config import reset_settings
    from iras.db import autocommit_connection, reset_engine

    read = select(Incident.id).where(Incident.id == bindparam("id"))
    for setting, expected in (("false", 0), ("true", 1)):
        monkeypatch.setenv("DB_PREPARED_STATEMENTS", setting)
        reset_settings()
        reset_engine()
        with autocommit_connection() as conn:
            assert conn.execute(read, {"id": "none"}).all() == []
            assert len(conn.execute(_PREPARED).all()) == expected
    reset_engine()


@pytest.mark.integration
def test_a_transition_is_a_prepared_statement(engines: tuple[Engine, Engine]) -> None:
    """The hot statement itself: `advance`'s data-modifying CTE (WITH moved AS ...) is
    prepared on its connection once, and a second incident's transition reuses it."""
    from iras.db import autocommit_connection, held_connection
    from iras.workflow import Event, IncidentStatus, advance

    ids = [seed(engines[1]) for _ in range(2)]
    with held_connection():
        for incident_id in ids:
            moved = advance(
                incident_id,
                IncidentStatus.EXECUTING,
                Event.REMEDIATION_SUCCEEDED,
                values={"outcome": "resolved"},
            )
            assert moved is not None
        with autocommit_connection() as conn:
            statements = [" ".join(row.statement.split()) for row in conn.execute(_PREPARED)]
            statuses = conn.execute(select(Incident.status).where(Incident.id.in_(ids))).scalars().all()
    assert statuses == ["closing", "closing"]
    assert len([s for s in statements if " AS WITH moved AS (UPDATE incidents" in s]) == 1
