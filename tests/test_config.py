"""Settings that are easy to get wrong when deploying."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import create_engine

from iras.config import Settings


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgres://iras:pw@db:5432/iras", "postgresql+psycopg2://iras:pw@db:5432/iras"),
        (
            "postgresql://iras:pw@db/iras?sslmode=require",
            "postgresql+psycopg2://iras:pw@db/iras?sslmode=require",
        ),
        ("postgresql+psycopg2://iras@db/iras", "postgresql+psycopg2://iras@db/iras"),
        ("sqlite:///iras.db", "sqlite:///iras.db"),
    ],
)
def test_a_plain_postgres_url_uses_the_installed_driver(given: str, used: str) -> None:
    url = Settings(database_url=given).database_url
    assert url == used
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3 (not installed) and does
    # not know postgres:// at all: both failed here before.
    create_engine(url).dispose()


def test_a_worker_has_what_its_tasks_use_imported_before_its_pool_forks() -> None:
    """Prefork children inherit what the parent imported: the task modules (Celery's
    `imports`, with `iras.services` that the post-mortem uses) and, at `worker_init`, the
    database driver. Imported lazily, psycopg2 and the services module cost each child
    0.1-0.2 s of CPU on its first remediation."""
    probe = (
        "import sys, iras.celery_app as c\n"
        "lazy = ('psycopg2', 'psycopg2.extras', 'iras.services')\n"
        "before = [m for m in lazy if m in sys.modules]\n"
        "c.celery_app.loader.import_default_modules()\n"
        "c._import_task_modules()\n"
        "print(before, [m for m in lazy if m not in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={"DATABASE_URL": "postgres://iras@127.0.0.1:1/iras", "ANALYST": "offline", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # None imported by the app module itself (else this test proves nothing), all after.
    assert out.stdout.strip().splitlines()[-1] == "[] []", out.stdout + out.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg2://iras:s3cret@db:5432/iras", "postgresql+psycopg2://db:5432/iras"),
        (
            "postgresql+psycopg2://iras@db/iras?password=s3cret&sslmode=require",
            "postgresql+psycopg2://db/iras",
        ),
        ("redis://:hunter2@redis:6379/0", "redis://redis:6379/0"),
        ("rediss://default:p%40ss@[::1]:6380/1", "rediss://[::1]:6380/1"),
        ("https://u:p@h:9/a?b=c#d", "https://h:9/a"),
        ("sqlite:///iras.db", "sqlite:///iras.db"),
        ("memory://", "memory://"),
    ],
)
def test_urls_are_shown_without_credentials_or_query(url: str, shown: str) -> None:
    from iras.config import redact_url

    assert redact_url(url) == shown


def test_iras_run_prints_where_it_runs_without_secrets() -> None:
    from iras.embedded import banner

    settings = Settings(
        database_url="postgres://iras:s3cret@db:5432/iras", celery_broker_url="redis://:hunter2@redis:6379/0"
    )
    text = banner(settings, "http://127.0.0.1:8080", "ingestion: open")
    assert "s3cret" not in text and "hunter2" not in text
    assert "database: postgresql+psycopg2://db:5432/iras" in text
    assert "broker: redis://redis:6379/0" in text
    assert text.startswith("IRAS is running at http://127.0.0.1:8080")
