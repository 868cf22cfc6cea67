"""Alembic environment: URL from IRAS settings, batch mode on SQLite, and on
PostgreSQL an advisory lock plus lock/statement timeouts so two deploys cannot
migrate at once and a migration never hangs behind a long transaction."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from iras.config import get_settings
from iras.db import make_engine
from iras.models import Base

config = context.config
target_metadata = Base.metadata
MIGRATION_LOCK_ID = 0x1245A5  # arbitrary, constant: pg_advisory_lock key for IRAS migrations


def _url() -> str:
    return config.attributes.get("url") or get_settings().database_url


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    is_pg = connection.dialect.name == "postgresql"
    if is_pg:
        connection.execute(text("SET lock_timeout = '10s'"))
        connection.execute(text("SET statement_timeout = '300s'"))
        connection.execute(text(f"SELECT pg_advisory_lock({MIGRATION_LOCK_ID})"))
        connection.commit()
    try:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        if is_pg:
            connection.execute(text(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})"))
            connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
