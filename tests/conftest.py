"""Shared fixtures: a migrated SQLite database per test (copied from a template
built once by running the Alembic migrations), the Flask test client, and a real
Celery worker on the in-process broker for end-to-end tests."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from iras.analysts import set_analyst
from iras.config import reset_settings
from iras.db import reset_engine
from iras.integrations import mock

pytest_plugins = ["tests.fakes.anthropic_server"]


@pytest.fixture(scope="session", autouse=True)
def no_real_cluster() -> Iterator[None]:
    """A developer's KUBECONFIG (or running inside a pod) would turn the Kubernetes
    source on against a real cluster in every test: tests that want it point
    KUBECONFIG at the fake API server themselves."""
    import os

    saved = {name: os.environ.pop(name, None) for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    yield
    os.environ.update({name: value for name, value in saved.items() if value is not None})


@pytest.fixture(scope="session", autouse=True)
def in_process_broker() -> Iterator[None]:
    """Bind this process's Celery producer pool to the in-process broker.

    Celery reads CELERY_BROKER_URL from the environment whenever it builds a
    connection and caches the pool it builds first: a test that points the
    environment at a (later stopped) Redis must not capture the pool for the
    rest of the session. The variable stays `memory://` for the whole session
    (tests that need Redis set it with monkeypatch, which restores it), so a
    connection built from the environment at any time, in any thread, is
    in-process too: with it unset, one task retry in CI published to Celery's
    default `amqp://localhost` and the message was lost.
    """
    import os

    from iras.celery_app import celery_app

    saved = os.environ.get("CELERY_BROKER_URL")
    os.environ["CELERY_BROKER_URL"] = "memory://"
    # A task that outlives its test must not create ./iras.db in the checkout.
    sink = tempfile.mkdtemp(prefix="iras-sink-")
    os.environ.setdefault("DATABASE_URL", "sqlite:///" + os.path.join(sink, "sink.db"))
    celery_app.conf.broker_url = "memory://"
    assert celery_app.pool.connection.transport_cls in ("memory", "memory://") or "memory" in str(
        celery_app.pool.connection.as_uri()
    )
    celery_app.producer_pool  # noqa: B018 - build it now, bound to memory://
    yield
    shutil.rmtree(sink, ignore_errors=True)
    if saved is None:
        os.environ.pop("CELERY_BROKER_URL", None)
    else:
        os.environ["CELERY_BROKER_URL"] = saved


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from iras.migrate import upgrade

    path = tmp_path_factory.mktemp("template") / "iras.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def iras_env(tmp_path: Path, template_db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    db = tmp_path / "iras.db"
    shutil.copy(template_db, db)
    url = f"sqlite:///{db}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("CELERY_BROKER_URL", "memory://")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("MOCK_EVIDENCE_FILE", raising=False)
    # Tests serve scenario evidence through the mock sources (`mock.set_fixture`); the
    # tests of the honest default (nothing configured) set IRAS_MOCK_EVIDENCE=false.
    monkeypatch.setenv("IRAS_MOCK_EVIDENCE", "true")
    reset_settings()
    reset_engine()
    set_analyst(None)
    mock.set_fixture(None)
    mock.SENT.clear()
    yield url
    wait_for_idle_worker()
    set_analyst(None)
    mock.set_fixture(None)
    reset_engine()
    reset_settings()


_worker_running = False


def wait_for_idle_worker(timeout: float = 5.0) -> None:
    """Let the session's embedded worker finish what this test started, so a task
    never runs against the next test's settings: nothing running or reserved, and
    no message waiting in the in-memory broker (a message published just before the
    test ended is not yet reserved), for 0.1 s in a row."""
    from celery.worker import state
    from kombu.transport import memory

    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        busy = bool(state.active_requests or state.reserved_requests) or (
            _worker_running and any(q.qsize() for q in list(memory.Channel.queues.values()))
        )
        now = time.monotonic()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since > 0.1:
            return
        time.sleep(0.02)


@pytest.fixture
def client(iras_env: str) -> FlaskClient:
    from iras.web import create_app

    return create_app().test_client()


@pytest.fixture(scope="session")
def embedded_worker() -> Iterator[Any]:
    from iras.embedded import EmbeddedWorker

    global _worker_running
    worker = EmbeddedWorker(concurrency=4, beat=False)
    worker.start()
    _worker_running = True
    yield worker
    _worker_running = False
    worker.stop()


@pytest.fixture
def pipeline(client: FlaskClient, embedded_worker: Any) -> FlaskClient:
    """A test client whose alerts flow through a real Celery worker."""
    return client


WaitFor = Callable[..., dict[str, Any]]


@pytest.fixture
def wait_for(client: FlaskClient) -> WaitFor:
    def _wait(incident_id: str, *statuses: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            doc = client.get(f"/incidents/{incident_id}").get_json()
            if doc.get("status") in statuses:
                return doc
            time.sleep(0.05)
        raise AssertionError(f"incident {incident_id} is {doc.get('status')!r}, wanted {statuses}")

    return _wait


def fire(client: FlaskClient, **fields: Any) -> str:
    body = {
        "title": "High error rate on checkout",
        "timestamp": "2026-11-25T10:00:00Z",
        "service": "checkout",
    }
    body.update(fields)
    response = client.post("/webhook/alert", json=body)
    assert response.status_code == 202, response.get_json()
    return str(response.get_json()["incident_id"])
