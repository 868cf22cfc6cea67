"""Pipeline throughput benchmark: N incidents through the whole pipeline on
granian + Celery workers + PostgreSQL + Redis, with an analyst that answers
instantly (bench/_analyst.py: valid typed results, a 3-step plan) and the
benchmark evidence bundle (50 log lines of ~150 characters, 10 metrics,
3 deployments) served by the context tools.

1. N alerts are posted (closed loop, from this process on loopback); the clock
   runs from the first POST until all N incidents await approval
   -> `to_approval_per_s`.
2. All N are approved through `POST /incidents/<id>/approve`; the clock runs
   from the first approval until all N post-mortems are stored (remediation:
   3 steps through the dry-run executor, each step's execution record written
   before and after it runs) -> `to_completion_per_s`.
3. Cost per incident: `commits_per_incident` (write transactions: transaction ids
   assigned over the whole run / N, everything included: web, workers,
   notifications; each is a durable commit), `xact_commits_per_incident`
   (pg_stat_database.xact_commit delta / N: read-only autocommit statements too),
   `bytes_per_incident` (pg_total_relation_size of every IRAS table: heap, TOAST
   and indexes, / N, on a fresh database), WAL bytes, server CPU.

With `--history N` the database holds N resolved past incidents (each with its
alert, five stage results, eight transitions, three steps and a post-mortem; then
ANALYZE) before the run: the statements must find their rows among those. Storage
is then what the run added.

    python bench/pipeline.py [--n 1000] [--history 100000]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402

from bench import _load  # noqa: E402
from bench._load import LoadResult, closed_loop  # noqa: E402
from bench._stack import (  # noqa: E402
    WEBHOOK_HEADERS,
    Stack,
    WorkerSpec,
    alert_body,
    backend_sessions,
    backends_from,
    common_args,
    count_in,
    engine_for,
    log,
    machine_notes,
    next_xid,
    print_summary,
    seed_history,
    seq_rows_read,
    server_roots,
    status_counts,
    table_bytes,
    tree_cpu_seconds,
    wait_until,
    wal_bytes_since,
    wal_full_page_images,
    wal_lsn,
    xact_commits,
)


def main() -> None:
    parser = common_args(
        argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    )
    parser.add_argument("--n", type=int, default=1000, help="incidents")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="HTTP connections posting alerts and approvals"
    )
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=8)
    parser.add_argument("--analysis-pool", default="threads", help="pool of the analysis queue's worker")
    parser.add_argument("--analysis-concurrency", type=int, default=16)
    parser.add_argument(
        "--analysis-workers", type=int, default=2, help="processes serving the analysis queue"
    )
    # The ops worker as the Procfile runs it: prefork x 4.
    parser.add_argument("--ops-pool", default="prefork")
    parser.add_argument(
        "--ops-workers",
        type=int,
        default=1,
        help="worker processes serving the ops queue (remediation, post-mortem)",
    )
    parser.add_argument("--ops-concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300, help="bound on each phase (s)")
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="resolved past incidents (with their rows, analysed) in the database before the run",
    )
    parser.add_argument("--sql", action="append", default=[], help="SQL to run before the run (experiments)")
    parser.add_argument(
        "--statements",
        action="store_true",
        help="count SQL statements per incident with pg_stat_statements (private PostgreSQL only)",
    )
    args = parser.parse_args()
    n = args.n

    with backends_from(args) as backends:
        assert backends.database_url and backends.broker_url
        stack = Stack(
            backends.database_url,
            backends.broker_url,
            web_workers=args.web_workers,
            web_threads=args.web_threads,
            workers=[
                *[
                    WorkerSpec("analysis", args.analysis_pool, args.analysis_concurrency)
                    for _ in range(args.analysis_workers)
                ],
                *[WorkerSpec("ops", args.ops_pool, args.ops_concurrency) for _ in range(args.ops_workers)],
            ],
            # The approval deadline is far away: nothing times out during the run.
            env={"APPROVAL_TIMEOUT_DEFAULT_MINUTES": "600", "APPROVAL_TIMEOUT_P0_MINUTES": "600"},
        )
        engine = engine_for(backends.database_url)
        _load.HEADERS.update(WEBHOOK_HEADERS)
        if args.statements:
            _enable_statement_stats(backends, engine)
        if args.sql:
            with engine.begin() as conn:
                for statement in args.sql:
                    conn.execute(text(statement))
        try:
            stack.start()
            log(f"stack up: web {stack.base}, workers {[w.extra for w in stack.workers]}")
            # Warm-up: a few incidents end to end, then a fresh count (storage is measured on the N only).
            # Through approval too: each ops child's first remediation otherwise lands in the
            # measured phase with its one-off costs (first connection, statement compiles).
            warm = closed_loop(
                f"{stack.base}/webhook/alert",
                lambda i: alert_body(f"warm-{i}"),
                count=WARM_UP,
                concurrency=4,
                keep=True,
            )
            assert warm.ok == WARM_UP, warm.statuses
            wait_until(
                lambda: status_counts(engine).get("awaiting_approval", 0) == WARM_UP, 60, what="warm-up"
            )
            warm_ids = [json.loads(b)["incident_id"] for b in warm.bodies]
            approved = approve_all(stack.base, warm_ids, concurrency=4)
            assert approved.ok == WARM_UP, approved.statuses
            wait_until(
                lambda: status_counts(engine).get("resolved", 0) == WARM_UP, 60, what="warm-up resolved"
            )
            time.sleep(1.0)  # what trails a post-mortem (notifications)
            # TRUNCATE gives each table fresh, empty files, with statistics that say
            # "never analysed", as a fresh install's are. No VACUUM after it: a VACUUM of
            # an empty table records it as analysed and empty (reltuples 0), a state a
            # running system never has, and the prepared statements' generic plans then
            # scanned step_runs sequentially for every step claim for the whole run
            # (bench/README.md, session 9).
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "TRUNCATE incidents, alert_events, stage_results, transitions, step_runs, postmortems"
                    )
                )
            if args.history:
                t_seed = time.perf_counter()
                seed_history(engine, args.history)
                log(f"{args.history} past incidents written in {time.perf_counter() - t_seed:.1f}s")
            sizes0 = table_bytes(engine) if args.history else {}
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("CHECKPOINT"))

            # Background commits while idle (beat is off; this is what is left).
            c_idle0 = xact_commits(engine)
            time.sleep(2.0)
            idle_commits_per_s = (xact_commits(engine) - c_idle0 - 1) / 2.0

            roots = server_roots(backends, stack)
            if args.statements:
                with engine.begin() as conn:
                    conn.execute(text("SELECT pg_stat_statements_reset()"))
            seq0 = seq_rows_read(engine)
            lsn0 = wal_lsn(engine)
            fpi0 = wal_full_page_images(engine)
            commits0 = xact_commits(engine)
            xid0 = next_xid(engine)
            sessions0 = backend_sessions(engine)
            cpu0 = tree_cpu_seconds(roots)
            parts0 = {r: tree_cpu_seconds([r]) for r in roots}
            load0 = _own_cpu_seconds()

            # ---- phase 1: alerts -> awaiting approval
            run = f"{time.time_ns():x}"
            t0 = time.perf_counter()
            posted = closed_loop(
                f"{stack.base}/webhook/alert",
                lambda i: alert_body(f"{run}-{i}"),
                count=n,
                concurrency=args.concurrency,
                max_seconds=args.timeout,
                keep=True,
            )
            ingest_s = time.perf_counter() - t0
            if posted.ok != n:
                raise SystemExit(f"only {posted.ok}/{n} alerts accepted: {posted.statuses}")
            ids = [json.loads(b)["incident_id"] for b in posted.bodies]
            assert len(set(ids)) == n
            wait_until(
                lambda: count_in(engine, "awaiting_approval") >= n,
                args.timeout,
                0.02,
                "all awaiting approval",
            )
            to_approval_s = time.perf_counter() - t0
            log(f"{n} incidents awaiting approval after {to_approval_s:.2f}s (ingest took {ingest_s:.2f}s)")
            parts1 = {r: tree_cpu_seconds([r]) for r in roots}
            load1 = _own_cpu_seconds()

            # ---- phase 2: approve -> post-mortem stored
            t1 = time.perf_counter()
            approved = approve_all(stack.base, ids, concurrency=args.concurrency, max_seconds=args.timeout)
            if approved.ok != n:
                raise SystemExit(f"only {approved.ok}/{n} approvals accepted: {approved.statuses}")

            # Every approval answered 200: each incident is executing or past it. A resolved
            # incident's post-mortem commits with its last transition; the count is checked below.
            wait_until(
                lambda: count_in(engine, "executing", "closing") == 0,
                args.timeout,
                0.02,
                "all post-mortems stored",
            )
            to_completion_s = time.perf_counter() - t1
            log(f"{n} post-mortems stored {to_completion_s:.2f}s after the first approval")
            # Notifications (post-mortem to chat, resolve page) trail the post-mortem: let them finish.
            time.sleep(2.0)

            commits = xact_commits(engine) - commits0 - 1
            writes = next_xid(engine) - xid0
            sessions = backend_sessions(engine) - sessions0
            wal = wal_bytes_since(engine, lsn0)
            fpi = wal_full_page_images(engine) - fpi0
            cpu = tree_cpu_seconds(roots) - cpu0
            parts2 = {r: tree_cpu_seconds([r]) for r in roots}
            load2 = _own_cpu_seconds()
            kinds = {p.proc.pid: f"{p.kind}{i}" for i, p in enumerate(stack.processes) if p.proc is not None}
            pg_pid = roots[-2] if backends.pg is not None else None

            def per_incident_ms(start: dict[int, float], end: dict[int, float]) -> dict[str, float]:
                return {
                    kinds.get(r, "postgres" if r == pg_pid else "redis"): round(
                        (end[r] - start[r]) * 1000 / n, 1
                    )
                    for r in roots
                }

            cpu_parts = per_incident_ms(parts0, parts2)
            cpu_by_phase = {
                "to_approval": per_incident_ms(parts0, parts1),
                "to_completion": per_incident_ms(parts1, parts2),
            }
            # The load generator (this process: HTTP clients and polling) shares the cores.
            load_cpu = {
                "to_approval": round((load1 - load0) * 1000 / n, 2),
                "to_completion": round((load2 - load1) * 1000 / n, 2),
            }
            statements = _statement_stats(engine, n) if args.statements else None
            sizes = table_bytes(engine)
            seq1 = seq_rows_read(engine)
            seq_rows = {t: round((seq1.get(t, 0) - seq0.get(t, 0)) / n, 1) for t in seq1}
            counts = status_counts(engine)
            with engine.connect() as conn:
                per_table = {
                    t: int(conn.scalar(text(f"SELECT count(*) FROM {t} WHERE {_THIS_RUN}")))  # noqa: S608 - fixed names
                    for t in ("stage_results", "transitions", "step_runs", "alert_events")
                }
                stored = int(conn.scalar(text("SELECT count(*) FROM postmortems")))
                dup_stage = conn.scalar(
                    text(
                        "SELECT count(*) FROM (SELECT 1 FROM stage_results GROUP BY incident_id, stage, attempt HAVING count(*) > 1) d"
                    )
                )
                column_bytes = {
                    stage: {"rows": int(rows), "avg_result_bytes": round(float(size))}
                    for stage, rows, size in conn.execute(
                        text(
                            "SELECT stage, count(*), avg(pg_column_size(result)) FROM stage_results "
                            f"WHERE {_THIS_RUN} GROUP BY stage"
                        )
                    )
                }
                # The alert payload: the request body kept with an incident's first alert event.
                column_bytes["alert_events.raw"] = {
                    "rows": int(
                        conn.scalar(text(f"SELECT count(raw) FROM alert_events WHERE {_THIS_RUN}")) or 0
                    ),
                    "avg_result_bytes": round(
                        float(
                            conn.scalar(
                                text(f"SELECT avg(pg_column_size(raw)) FROM alert_events WHERE {_THIS_RUN}")
                            )
                            or 0
                        )
                    ),
                }
                dead = {
                    t: int(d)
                    for t, d in conn.execute(text("SELECT relname, n_dead_tup FROM pg_stat_user_tables"))
                    if t in per_table or t in ("incidents", "postmortems")
                }
                dup_steps = conn.scalar(
                    text(
                        "SELECT count(*) FROM (SELECT 1 FROM step_runs GROUP BY incident_id, plan_id, step_order, kind HAVING count(*) > 1) d"
                    )
                )
            if (
                counts.get("resolved", 0) != n + args.history
                or stored != n + args.history
                or dup_stage
                or dup_steps
            ):
                raise SystemExit(
                    f"pipeline ended wrong: {counts}, {stored} post-mortems, duplicate stage results {dup_stage}, "
                    f"steps {dup_steps}"
                )
        except BaseException:
            log(stack.logs())
            raise
        finally:
            stack.stop()
            engine.dispose()
            if not args.keep:
                stack.cleanup()

    elapsed = to_approval_s + to_completion_s + 2.0
    print_summary(
        {
            "bench": "pipeline",
            "n": n,
            "to_approval_per_s": round(n / to_approval_s, 1),
            "to_completion_per_s": round(n / to_completion_s, 1),
            # With --history: what the run added to the tables.
            "bytes_per_incident": round((sum(sizes.values()) - sum(sizes0.values())) / n),
            "commits_per_incident": round(writes / n, 2),
            "xact_commits_per_incident": round(commits / n, 2),
            # New PostgreSQL connections (a backend process each) during the run.
            "connections_opened": sessions,
            "wal_bytes_per_incident": round(wal / n),
            "wal_full_page_images_per_incident": round(fpi / n, 2),
            "server_cpu_ms_per_incident": round(cpu * 1000 / n, 1),
            "server_cpu_ms_per_incident_by_process": cpu_parts,
            "server_cpu_ms_per_incident_by_phase": cpu_by_phase,
            "load_generator_cpu_ms_per_incident": load_cpu,
            **({"statements": statements} if statements else {}),
            "background_commits_per_s_idle": round(idle_commits_per_s, 2),
            "background_commits_in_run_est": round(idle_commits_per_s * elapsed),
            "history": args.history,
            "to_approval_s": round(to_approval_s, 2),
            "ingest_s": round(ingest_s, 2),
            "to_completion_s": round(to_completion_s, 2),
            # Rows read by sequential scans per incident, per table. The pipeline's statements
            # read none once a table has rows; incidents shows ~40 at N=1,000: the ingest's lock
            # of open incidents by fingerprint, planned anew each time, scans while the table is
            # a few pages (it takes the partial index at 100,000 incidents, bench/README.md).
            "seq_rows_read_per_incident": seq_rows,
            "table_bytes": sizes,
            "rows": per_table,
            "stored_column_bytes": column_bytes,
            "dead_tuples_at_end": dead,
            "statuses": counts,
            "web": f"granian {args.web_workers} worker(s) x {args.web_threads} blocking thread(s)",
            "workers": {
                "analysis": f"{args.analysis_workers} x {args.analysis_pool} x {args.analysis_concurrency}",
                "ops": f"{args.ops_workers} x {args.ops_pool} x {args.ops_concurrency}",
            },
            "backends": backends.settings(),
            "machine": machine_notes(),
        }
    )


# Incidents taken end to end before the measured run.
WARM_UP = 20
# The rows of the measured run's incidents, not of the past ones `--history` wrote.
_THIS_RUN = "incident_id NOT IN (SELECT id FROM incidents WHERE source = 'history')"


def approve_all(base: str, ids: list[str], *, concurrency: int, max_seconds: float = 60) -> LoadResult:
    """Approve each incident's plan through the API, `concurrency` requests at a time."""
    return closed_loop(
        f"{base}/incidents/x/approve",
        lambda i: (f"{base}/incidents/{ids[i]}/approve", b'{"by": "bench", "reason": "bench"}'),
        count=len(ids),
        concurrency=concurrency,
        max_seconds=max_seconds,
    )


def _own_cpu_seconds() -> float:
    """CPU of this process (the load generator and its probes), user + system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# The benchmark's own probes (polling, counters): not the pipeline's statements.
_PROBES = (
    "SELECT status, count(*) FROM incidents GROUP BY status",
    "SELECT count(*) FROM postmortems",
    "pg_stat",
    "pg_current_wal_lsn",
)


def _enable_statement_stats(backends: Any, engine: Any) -> None:
    """Load pg_stat_statements into the private PostgreSQL (a restart) before the stack starts."""
    if backends.pg is None:
        raise SystemExit("--statements needs the private PostgreSQL (no --database-url)")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"))
    engine.dispose()
    backends.pg.restart()
    with engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))


_PREPARED_PREFIX = re.compile(r"^PREPARE iras_\w+ \(.*?\) AS ")


def statement_label(query: str) -> str:
    """A pg_stat_statements query as the report names it: whitespace collapsed, the
    `PREPARE iras_<hash> (<types>) AS` of a prepared statement (iras/prepared.py) left
    out, cut to 160 characters."""
    return _PREPARED_PREFIX.sub("", " ".join(query.split()))[:160]


def _statement_stats(engine: Any, n: int) -> dict[str, Any]:
    """Statements per incident (BEGIN/COMMIT/ROLLBACK included), and the 30 most frequent."""
    with engine.connect() as conn:
        rows = [
            (str(q), int(calls), float(ms))
            for q, calls, ms in conn.execute(
                text("SELECT query, calls, total_exec_time FROM pg_stat_statements ORDER BY calls DESC")
            )
            if not any(p in str(q) for p in _PROBES)
        ]
    return {
        "per_incident": round(sum(c for _, c, _ in rows) / n, 1),
        "exec_ms_per_incident": round(sum(ms for *_, ms in rows) / n, 2),
        "top_per_incident": {statement_label(q): round(c / n, 2) for q, c, _ in rows[:30]},
        "top_exec_ms_per_incident": {
            statement_label(q): round(ms / n, 3) for q, _, ms in sorted(rows, key=lambda r: -r[2])[:10]
        },
    }


if __name__ == "__main__":
    main()
