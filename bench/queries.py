"""Beat scans and list queries at scale: 200,000 historical incidents.

The history is generated in SQL (a year of incidents: ~85% resolved, ~10%
escalated, ~5% auto-resolved, a few dozen awaiting approval, a few in working
states, some of those stuck; the scenario's 1.7 KB alert payload with every incident's first alert event,
as ingestion stores it), then VACUUM ANALYZE, as autovacuum would have done.

Measured:
- the approval-timeout scan and the stuck-incident sweeper: the exact SELECT
  each beat job runs (EXPLAIN ANALYZE, median of runs) and the whole job
  called in-process (it escalates / re-enqueues what is due);
- `GET /incidents?status=...` and the console list page `GET /ui/...` over
  HTTP against granian (median and p95 of `--repeat` requests).
Target: each under 20 ms. The EXPLAIN plans go to stderr and into the summary.

    python bench/queries.py [--incidents 200000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
from sqlalchemy import Engine, bindparam, text  # noqa: E402

from bench._stack import (  # noqa: E402
    SCENARIO,
    Stack,
    backends_from,
    common_args,
    engine_for,
    log,
    machine_notes,
    print_summary,
)

AWAITING = 40
AWAITING_DUE = 5
WORKING_ROWS = 30
STUCK = 10

GENERATE = """
INSERT INTO incidents (id, status, severity, title, service, source, fingerprint, alert_count,
                       last_seen, rca_attempts, plan_id, approval_deadline, decided_by, decided_via,
                       decided_at, decision_reason, outcome, created_at, updated_at)
SELECT md5('bench' || g)::uuid::text,
       CASE WHEN g % 100 < 85 THEN 'resolved' WHEN g % 100 < 95 THEN 'escalated' ELSE 'auto_resolved' END,
       (ARRAY['P0','P1','P2','P3'])[1 + g % 4],
       'Service ' || (g % 50) || ' error rate above threshold',
       'service-' || (g % 50),
       'alertmanager',
       'bench-history-' || g,
       1 + g % 3,
       now() - make_interval(secs => g * 157),
       1,
       NULL,
       NULL,
       CASE WHEN g % 100 < 85 THEN 'alice' END,
       CASE WHEN g % 100 < 85 THEN 'slack' END,
       CASE WHEN g % 100 < 85 THEN now() - make_interval(secs => g * 157 - 600) END,
       NULL,
       CASE WHEN g % 100 < 85 THEN 'resolved' WHEN g % 100 < 95 THEN 'escalated' ELSE 'auto_resolved' END,
       now() - make_interval(secs => g * 157),
       now() - make_interval(secs => g * 157 - 1800)
FROM generate_series(:start, :stop) AS g
"""


def generate(engine: Engine, total: int) -> None:
    payload = SCENARIO.read_text()
    import json

    payload = json.dumps(json.loads(payload)["alert"])
    historical = total - AWAITING - WORKING_ROWS
    step = 50_000
    t0 = time.perf_counter()
    with engine.begin() as conn:
        for start in range(1, historical + 1, step):
            conn.execute(
                text(GENERATE),
                {"start": start, "stop": min(historical, start + step - 1)},
            )
        # Open incidents: awaiting approval (a few past their deadline) and in working states (a few stuck).
        conn.execute(
            text(
                """
                INSERT INTO incidents (id, status, severity, title, service, source, fingerprint, alert_count,
                                       last_seen, rca_attempts, approval_deadline, created_at, updated_at)
                SELECT md5('open' || g)::uuid::text,
                       CASE WHEN g <= :awaiting THEN 'awaiting_approval'
                            ELSE (ARRAY['triaging','gathering_context','analyzing','planning','executing','closing'])[1 + g % 6] END,
                       'P1', 'open incident ' || g, 'service-' || (g % 50), 'alertmanager', 'bench-open-' || g,
                       1, now(), 1,
                       CASE WHEN g <= :awaiting THEN now() + CASE WHEN g <= :due THEN interval '-1 minute' ELSE interval '1 hour' END END,
                       now() - interval '1 hour',
                       CASE WHEN g > :awaiting AND g <= :awaiting + :stuck THEN now() - interval '1 hour' ELSE now() END
                FROM generate_series(1, :open) AS g
                """
            ),
            {
                "awaiting": AWAITING,
                "due": AWAITING_DUE,
                "stuck": STUCK,
                "open": AWAITING + WORKING_ROWS,
            },
        )
        # Each incident's first alert event, holding the alert payload (migration 0007).
        conn.execute(
            text(
                "INSERT INTO alert_events (incident_id, received_at, status, fingerprint, alert, raw) "
                "SELECT id, created_at, 'firing', fingerprint, CAST(:alert AS jsonb), CAST(:payload AS jsonb) "
                "FROM incidents"
            ),
            {"alert": json.dumps({"title": "bench", "source": "alertmanager"}), "payload": payload},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE incidents"))
        conn.execute(text("VACUUM ANALYZE alert_events"))
    log(f"generated {total} incidents in {time.perf_counter() - t0:.1f}s")


def explain(engine: Engine, sql: str, params: dict[str, Any], runs: int = 7) -> tuple[float, str]:
    """Median execution time (ms, server side) and the plan of the last run."""
    times: list[float] = []
    plan = ""
    stmt = text(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
    for name, value in params.items():
        if isinstance(value, list):
            stmt = stmt.bindparams(bindparam(name, expanding=True))
    with engine.connect() as conn:
        for _ in range(runs):
            rows = [r[0] for r in conn.execute(stmt, params)]
            plan = "\n".join(rows)
            times.append(float(next(r for r in rows if r.startswith("Execution Time")).split()[2]))
        conn.rollback()
    return statistics.median(times), plan


def http_times(url: str, repeat: int) -> dict[str, float]:
    with requests.Session() as s:
        s.get(url, timeout=10).raise_for_status()  # warm
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            r = s.get(url, timeout=10)
            times.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
    }


def main() -> None:
    parser = common_args(
        argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    )
    parser.add_argument("--incidents", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=40, help="HTTP requests per endpoint")
    args = parser.parse_args()

    with backends_from(args) as backends:
        assert backends.database_url and backends.broker_url
        engine = engine_for(backends.database_url)
        generate(engine, args.incidents)
        stack = Stack(backends.database_url, backends.broker_url, web_workers=2, web_threads=1)
        results: dict[str, Any] = {}
        plans: dict[str, str] = {}
        try:
            stack.start()
            from iras.workflow import WORKING

            working = [s.value for s in WORKING]
            scans = {
                "approval_timeout_scan": (
                    "SELECT id FROM incidents WHERE status = 'awaiting_approval' AND approval_deadline < now() "
                    "ORDER BY approval_deadline LIMIT 500",
                    {},
                ),
                "stuck_sweeper_scan": (
                    "SELECT id, status FROM incidents WHERE status IN :working AND updated_at < now() - interval '300 seconds' "
                    "ORDER BY updated_at LIMIT 500",
                    {"working": working},
                ),
                "list_status_awaiting": (
                    "SELECT * FROM incidents WHERE status IN ('awaiting_approval') ORDER BY created_at DESC, id DESC LIMIT 50",
                    {},
                ),
                "list_status_resolved": (
                    "SELECT * FROM incidents WHERE status IN ('resolved') ORDER BY created_at DESC, id DESC LIMIT 50",
                    {},
                ),
                "count_by_status": ("SELECT status, count(*) FROM incidents GROUP BY status", {}),
                "console_services": (
                    "SELECT DISTINCT service FROM incidents WHERE service IS NOT NULL ORDER BY service LIMIT 200",
                    {},
                ),
            }
            for name, (sql, params) in scans.items():
                ms, plan = explain(engine, sql, params)
                results[f"{name}_sql_ms"] = round(ms, 3)
                plans[name] = plan
                log(f"{name}: {ms:.3f} ms\n{plan}")

            # The beat jobs themselves, in this process against the same database.
            os.environ.update(
                {k: v for k, v in stack.env.items() if k in ("DATABASE_URL", "CELERY_BROKER_URL")}
            )
            from iras.config import reset_settings
            from iras.db import reset_engine

            reset_settings()
            reset_engine()
            from iras import tasks

            for name, fn in (
                ("approval_timeout_job", tasks.expire_approvals),
                ("stuck_sweeper_job", tasks.sweep_stuck),
            ):
                fn()  # the due ones are handled on the first call
                times = []
                for _ in range(7):
                    t0 = time.perf_counter()
                    fn()
                    times.append((time.perf_counter() - t0) * 1000)
                results[f"{name}_ms"] = round(statistics.median(times), 2)
                log(f"{name}: {results[f'{name}_ms']} ms (nothing due)")

            # The console list's two aggregates as services.py computes them now:
            # per-status counts (history cached before a trailing cut-off, the rest
            # live) and the service list (skip scan over ix_incidents_service).
            from iras.db import new_session
            from iras.services import _DISTINCT_SERVICES, count_by_status, distinct_services

            for name, fn in (
                ("count_by_status_fn", count_by_status),
                ("distinct_services_fn", distinct_services),
            ):
                with new_session() as session:
                    first_t0 = time.perf_counter()
                    fn(session)  # the first call per process computes the cached history
                    first = (time.perf_counter() - first_t0) * 1000
                    times = []
                    for _ in range(15):
                        t0 = time.perf_counter()
                        fn(session)
                        times.append((time.perf_counter() - t0) * 1000)
                results[f"{name}_ms"] = round(statistics.median(times), 2)
                results[f"{name}_first_call_ms"] = round(first, 2)
                log(f"{name}: {results[f'{name}_ms']} ms (first call {first:.1f} ms)")
            ms, plan = explain(engine, str(_DISTINCT_SERVICES.text).replace(":limit", "200"), {})
            results["distinct_services_sql_ms"] = round(ms, 3)
            plans["distinct_services"] = plan

            endpoints = {
                "GET /incidents?status=awaiting_approval": "/incidents?status=awaiting_approval",
                "GET /incidents?status=resolved": "/incidents?status=resolved",
                "GET /incidents?status=executing,closing": "/incidents?status=executing,closing",
                "GET /incidents": "/incidents",
                "GET /ui/": "/ui/",
                "GET /ui/?status=open": "/ui/?status=open",
                "GET /ui/?status=awaiting_approval": "/ui/?status=awaiting_approval",
            }
            http: dict[str, dict[str, float]] = {}
            for name, path in endpoints.items():
                http[name] = http_times(stack.base + path, args.repeat)
                log(f"{name}: {http[name]}")
        except BaseException:
            log(stack.logs())
            raise
        finally:
            stack.stop()
            engine.dispose()
            if not args.keep:
                stack.cleanup()

    worst_http = max(v["median_ms"] for v in http.values())
    print_summary(
        {
            "bench": "queries",
            "incidents": args.incidents,
            **results,
            "http": http,
            "worst_http_median_ms": worst_http,
            "plans": plans,
            "backends": backends.settings(),
            "machine": machine_notes(),
        }
    )


if __name__ == "__main__":
    main()
