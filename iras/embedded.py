"""`iras run`: the whole service in one process for a laptop or a demo.

- the web app on a threaded WSGI server (main thread),
- a real Celery worker (a WorkController on a thread pool, consuming real
  messages from the in-process `memory://` broker; not eager mode),
- Celery beat as an embedded thread (approval timeouts, the stuck sweeper).
The database defaults to a SQLite file in WAL mode; DATABASE_URL and
CELERY_BROKER_URL are honoured, so the same command can front Postgres/Redis.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from iras.config import Settings, get_settings, redact_url

log = logging.getLogger(__name__)


class EmbeddedWorker:
    """A Celery worker and beat running on background threads of this process."""

    def __init__(self, concurrency: int = 8, beat: bool = True) -> None:
        from iras.celery_app import ANALYSIS_QUEUE, OPS_QUEUE, celery_app

        self.app = celery_app
        self.concurrency = concurrency
        self.with_beat = beat
        self.queues = [ANALYSIS_QUEUE, OPS_QUEUE]
        self._worker: Any = None
        self._beat: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import iras.tasks  # noqa: F401 - register tasks

        self._worker = self.app.WorkController(
            pool_cls="threads",
            concurrency=self.concurrency,
            queues=self.queues,
            loglevel="WARNING",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            prefetch_multiplier=1,
        )
        self._thread = threading.Thread(target=self._worker.start, name="iras-worker", daemon=True)
        self._thread.start()
        if self.with_beat:
            from celery.beat import EmbeddedService

            # The in-memory scheduler: the default persists to a shelve file, which with
            # schedule_filename=":memory:" left `:memory:.bak/.dat/.dir` in the working directory.
            self._beat = EmbeddedService(self.app, thread=True, scheduler_cls="celery.beat:Scheduler")
            self._beat.start()

    def stop(self) -> None:
        if self._beat is not None:
            self._beat.stop()
        if self._worker is not None:
            self._worker.stop(in_sighandler=False)
        if self._thread is not None:
            self._thread.join(timeout=10)


def banner(settings: Settings, url: str, ingest_line: str) -> str:
    """What `iras run` prints once it serves: where, on what, and a first alert to send.
    The database and broker URLs are shown without credentials or query (a terminal's
    scrollback and a process supervisor's log are not places for them)."""
    analyst = "claude" if settings.use_claude else "offline (no ANTHROPIC_API_KEY)"
    from iras.integrations import evidence_status

    evidence = evidence_status(settings)
    if evidence["mock_evidence"]:
        evidence_line = "evidence: MOCK (IRAS_MOCK_EVIDENCE=true): canned demo data, not your systems"
    elif evidence["not_configured"]:
        evidence_line = "evidence: not configured: " + "; ".join(
            f"{kind} (set {' or '.join(names)})" for kind, names in evidence["not_configured"].items()
        )
    else:
        evidence_line = "evidence: logs, metrics and deployments configured"
    return (
        f"IRAS is running at {url}\n"
        f"  database: {redact_url(settings.database_url)}\n  broker: {redact_url(settings.celery_broker_url)}\n"
        f"  analyst: {analyst}\n  executor: {settings.remediation_executor}\n  {evidence_line}\n"
        f"  {ingest_line}\n"
        f"  try: curl -XPOST {url}/webhook/alert -H 'Content-Type: application/json' "
        '-d \'{"title": "High error rate on checkout", "timestamp": "2026-01-01T00:00:00Z", '
        '"service": "checkout"}\''
    )


def make_web_server(host: str, port: int, app: Any, idle_timeout: float) -> Any:
    """werkzeug's threaded server with a socket timeout: a connection idle for
    `idle_timeout` seconds (headers or body not coming) is closed instead of holding
    its thread forever; BodyGuard bounds the body's total time."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class _Handler(WSGIRequestHandler):
        timeout = idle_timeout

    return make_server(host, port, app, threaded=True, request_handler=_Handler)


def start(host: str, port: int) -> tuple[Any, EmbeddedWorker, str]:
    """Migrate, start the worker and beat, and bind the web server (not yet serving):
    (server, worker, url). `run` serves it; `iras demo` serves it on a thread."""
    from iras.logging_setup import configure_logging
    from iras.migrate import upgrade
    from iras.web import create_app
    from iras.web.ingest_guard import startup_line

    configure_logging()
    settings = get_settings()
    upgrade()
    worker = EmbeddedWorker(beat=True)
    if settings.embedded_broker:
        worker.start()
    else:
        log.warning("CELERY_BROKER_URL is external: start workers with `iras worker` and `iras beat`")
    app = create_app()
    server = make_web_server(host, port, app, settings.body_read_timeout_seconds)
    url = f"http://{host}:{server.server_port}"
    print(banner(settings, url, startup_line(settings)), flush=True)
    return server, worker, url


def run(host: str, port: int) -> None:
    server, worker, _ = start(host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        worker.stop()
