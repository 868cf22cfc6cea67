"""The Celery application and its configuration, derived from IRAS settings.

Queues by kind of work:
- `analysis`: stages that wait on a model or an HTTP API (triage, context, RCA,
  plan, post-mortem, notifications). I/O-bound: served by a thread pool with
  high concurrency (`--pool threads --concurrency 64` in the Procfile).
- `ops`: remediation, escalation and the beat jobs, on prefork.
Every task acks late and is rejected (re-queued) if its worker dies, so a
`kill -9` never loses a step; prefetch 1 so a long task never holds others hostage.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_init

from iras.config import Settings, get_settings

ANALYSIS_QUEUE = "analysis"
OPS_QUEUE = "ops"


def build_config(settings: Settings) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "broker_url": settings.celery_broker_url,
        "result_backend": settings.celery_result_backend,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": OPS_QUEUE,
        "task_routes": {
            "incidents.run_triage": {"queue": ANALYSIS_QUEUE},
            "incidents.gather_context": {"queue": ANALYSIS_QUEUE},
            "incidents.run_rca": {"queue": ANALYSIS_QUEUE},
            "incidents.run_plan": {"queue": ANALYSIS_QUEUE},
            "incidents.write_postmortem": {"queue": ANALYSIS_QUEUE},
            "notify.*": {"queue": ANALYSIS_QUEUE},
        },
        "broker_connection_retry_on_startup": True,
        # Redis re-delivers a message whose worker died without acking after this long.
        "broker_transport_options": {"visibility_timeout": settings.broker_visibility_timeout_seconds},
        "worker_hijack_root_logger": False,
        # Task events (task-sent/received/started/succeeded) are one Redis PUBLISH
        # each, three to four per task, for nobody when no monitor listens. Flower
        # switches worker events on remotely when it starts (`enable_events`).
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "enable_utc": True,
        "beat_schedule": {
            "expire-approvals": {
                "task": "incidents.expire_approvals",
                "schedule": settings.beat_interval_seconds,
            },
            "sweep-stuck-incidents": {
                "task": "incidents.sweep_stuck",
                "schedule": settings.beat_interval_seconds,
            },
        },
    }
    if settings.embedded_broker:
        # The in-process transport is polled; the default 1 s poll adds a second per stage.
        conf["broker_transport_options"]["polling_interval"] = 0.01
    if settings.celery_broker_url.startswith("redis"):
        # A publish during a Redis outage must fail fast (the sweeper re-sends
        # later) rather than hang the web request that committed the incident.
        conf["broker_transport_options"].update(
            {"socket_timeout": 5, "socket_connect_timeout": 3, "max_retries": 1}
        )
        conf["broker_connection_timeout"] = 3
        conf["task_publish_retry_policy"] = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5}
    return conf


def create_celery(settings: Settings | None = None) -> Celery:
    app = Celery("iras")
    app.conf.update(build_config(settings or get_settings()))
    app.conf.imports = ("iras.tasks",)
    return app


def _import_task_modules(**_: Any) -> None:
    """Import, when a worker starts, what would otherwise be imported on the first
    task: the analyst with its client libraries (instructor, anthropic and drain3
    take seconds of CPU to import) and the database driver's extras. Otherwise the
    first incident each worker process serves pays for it, every cold process at
    once in a burst. In a prefork worker this runs in the parent, so the children
    inherit the modules (the engine itself is created after the fork)."""
    import importlib
    import logging

    from sqlalchemy.engine import make_url

    try:
        settings = get_settings()
        importlib.import_module("iras.analysts.claude" if settings.use_claude else "iras.analysts.offline")
        dbapi = make_url(settings.database_url).get_dialect().import_dbapi()
        if dbapi.__name__ == "psycopg2":
            importlib.import_module("psycopg2.extras")  # else imported on the first connect
    except Exception:  # noqa: BLE001 - a warm-up must never stop a worker from starting
        logging.getLogger(__name__).warning("worker warm-up import failed", exc_info=True)


def _size_db_pool(sender: Any = None, **_: Any) -> None:
    """A thread-pool worker's database pool holds as many connections as it has
    threads (up to 32) unless IRAS_DB_POOL_SIZE says otherwise: with fewer, the
    connections checked out above the pool size are opened for a statement or two
    and closed on return, a new PostgreSQL backend each time. Prefork children
    serve one task at a time: the default is plenty."""
    pool = getattr(sender, "pool_cls", None)
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    concurrency = getattr(sender, "concurrency", None)
    if "thread" in str(name) and isinstance(concurrency, int) and concurrency > 10:
        os.environ.setdefault("IRAS_DB_POOL_SIZE", str(min(concurrency, 32)))


celery_app = create_celery()
worker_init.connect(_import_task_modules, weak=False)
worker_init.connect(_size_db_pool, weak=False)
