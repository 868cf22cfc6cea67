"""Private PostgreSQL and Redis for the integration tests (skipped locally when
the Debian packages are missing, a failure under CI=true)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.integration._require import missing
from tests.support.services import PostgresServer, RedisServer, postgres_available, redis_available


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if not postgres_available():
        missing("PostgreSQL server binaries (Debian package postgresql) not installed")
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    if not redis_available():
        missing("redis-server (Debian package redis-server) not installed")
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def pg_database(postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, migrated database on the session's PostgreSQL, set as DATABASE_URL."""
    from sqlalchemy import create_engine, text

    from iras.config import reset_settings
    from iras.db import reset_engine
    from iras.migrate import upgrade

    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    url = postgres.url.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    monkeypatch.setenv("DATABASE_URL", url)
    reset_settings()
    reset_engine()
    yield url
    reset_engine()
    reset_settings()
