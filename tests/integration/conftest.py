"""Private PostgreSQL and Redis for the integration tests (skipped locally when
the Debian packages are missing, a failure under CI=true)."""

from __future__ import annotations

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
