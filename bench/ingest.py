"""Ingest benchmark: `POST /webhook/alert` on granian + PostgreSQL + Redis.

Phases (each bounded in count and time), load from this process on loopback:
1. warm-up;
2. new alerts, closed loop: every request opens a new incident (insert incident,
   alert event, transition; commit; enqueue triage on Redis) -> `new_alerts_per_s`;
3. duplicates, closed loop: alerts for incidents already open -> `dedup_alerts_per_s`;
4. new alerts, open loop at `--rate` offered (1,000/s): `p50_ms`, `p99_ms`
   measured from each request's scheduled start (when the offered rate is above
   capacity the backlog grows for the whole phase, and so does this latency);
5. the same open loop at half the measured capacity (`open_loop_half_capacity`).
Then the database is checked: one incident per distinct key, every alert stored.

No Celery worker consumes during the run (the triage messages wait in Redis), so
the numbers are the ingest path's own; `--with-workers` runs one anyway.

    python bench/ingest.py [--count 20000] [--rate 1000] [--web-workers 2] [--web-threads 16]
                           [--web-args "--backlog 4096"]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402

from bench import _load  # noqa: E402
from bench._load import LoadResult, closed_loop, open_loop, wrk_closed_loop  # noqa: E402
from bench._stack import (  # noqa: E402
    WEBHOOK_HEADERS,
    DirtyPages,
    Stack,
    WorkerSpec,
    alert_body,
    backends_from,
    common_args,
    cpu_seconds,
    engine_for,
    log,
    machine_notes,
    print_summary,
    server_roots,
    tree_cpu_seconds,
    xact_commits,
)


def summarize(name: str, r: LoadResult, dirty: DirtyPages | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "sent": r.sent,
        "ok": r.ok,
        "errors": r.errors,
        "non_2xx": sum(n for s, n in r.statuses.items() if not 200 <= s < 300),
        "per_s": round(r.rate(), 1),
        # wrk reports its own percentiles (no per-request latencies).
        "p50_ms": round(getattr(r, "wrk_p50_ms", None) or r.percentile(50), 2),
        "p99_ms": round(getattr(r, "wrk_p99_ms", None) or r.percentile(99), 2),
        "elapsed_s": round(r.elapsed_s, 2),
    }
    if r.timeline:
        # Open loops: the worst 100 ms windows over 50 ms ([s from start, slowest ms]),
        # and the kernel's writeback bursts in the same span ([s, dirty MB before, after]).
        doc["stalls"] = r.stalls()
    if dirty is not None:
        doc["writeback_bursts"] = dirty.drops()
    log(f"{name}: {doc}")
    return doc


def main() -> None:
    parser = common_args(
        argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    )
    parser.add_argument("--count", type=int, default=20000, help="new alerts in the throughput phase")
    parser.add_argument("--dedup-count", type=int, default=20000, help="duplicate alerts in the dedup phase")
    parser.add_argument(
        "--rate", type=float, default=1000, help="offered rate of the latency phase (alerts/s)"
    )
    parser.add_argument("--rate-seconds", type=float, default=10, help="duration of the latency phase")
    parser.add_argument("--concurrency", type=int, default=32, help="connections in the closed-loop phases")
    parser.add_argument("--web-workers", type=int, default=2)
    # Many requests in flight per process: they share the group commit (iras/ingest/batch.py).
    parser.add_argument("--web-threads", type=int, default=16)
    parser.add_argument(
        "--web-args", default="", help='more granian options, e.g. "--backlog 4096 --backpressure 64"'
    )
    parser.add_argument("--max-seconds", type=float, default=60, help="bound on each phase")
    parser.add_argument(
        "--load",
        choices=("wrk", "asyncio"),
        default="wrk" if _load.WRK else "asyncio",
        help="closed-loop load generator: wrk (Debian package; default when installed) or the asyncio client",
    )
    parser.add_argument(
        "--closed-seconds", type=float, default=10, help="duration of each closed-loop phase with wrk"
    )
    parser.add_argument(
        "--with-workers", action="store_true", help="run a Celery worker consuming triage meanwhile"
    )
    args = parser.parse_args()
    web = f"granian {version('granian')} {args.web_workers} worker(s) x {args.web_threads} blocking thread(s)"
    if args.web_args:
        web += f", {args.web_args}"

    with backends_from(args) as backends:
        assert backends.database_url and backends.broker_url
        stack = Stack(
            backends.database_url,
            backends.broker_url,
            web_workers=args.web_workers,
            web_threads=args.web_threads,
            web_extra=shlex.split(args.web_args),
            workers=[WorkerSpec(concurrency=8)] if args.with_workers else [],
        )
        engine = engine_for(backends.database_url)
        try:
            stack.start()
            url = f"{stack.base}/webhook/alert"
            _load.HEADERS.update(WEBHOOK_HEADERS)
            run = f"{time.time_ns():x}"
            log(f"web on {stack.base} ({web})")

            closed_loop(
                url, lambda i: alert_body(f"{run}-warm-{i}"), count=1000, concurrency=args.concurrency
            )
            dup_keys = 200
            closed_loop(url, lambda i: alert_body(f"{run}-dup-{i}"), count=dup_keys, concurrency=8)

            commits0 = xact_commits(engine)
            cpu0 = cpu_seconds(stack.web.pids())
            server0 = tree_cpu_seconds(server_roots(backends, stack))
            template = alert_body("__KEY__")

            def closed(prefix: str, count: int, cycle: int = 0) -> LoadResult:
                if args.load == "wrk":
                    return wrk_closed_loop(
                        url, template, prefix=prefix, seconds=args.closed_seconds, max_count=10**7,
                        concurrency=args.concurrency, cycle=cycle,
                    )  # fmt: skip
                return closed_loop(
                    url,
                    lambda i: alert_body(f"{prefix}-{i % cycle if cycle else i}"),
                    count=count,
                    concurrency=args.concurrency,
                    max_seconds=args.max_seconds,
                )

            new = closed(f"{run}-new", args.count)
            cpu_new = cpu_seconds(stack.web.pids()) - cpu0
            server_new = tree_cpu_seconds(server_roots(backends, stack)) - server0
            commits_new = xact_commits(engine) - commits0
            s_new = summarize("new alerts (closed loop)", new)

            server0 = tree_cpu_seconds(server_roots(backends, stack))
            dedup = closed(f"{run}-dup", args.dedup_count, cycle=dup_keys)
            server_dedup = tree_cpu_seconds(server_roots(backends, stack)) - server0
            s_dedup = summarize("duplicates (closed loop)", dedup)

            def paced(label: str, key: str, rate: float) -> dict[str, Any]:
                """An open loop of new alerts at `rate`/s, summarised with the kernel's
                writeback bursts in the same span."""
                with DirtyPages() as dirty:
                    result = open_loop(
                        url,
                        lambda i: alert_body(f"{run}-{key}-{i}"),
                        rate=rate,
                        count=int(rate * args.rate_seconds),
                        max_seconds=args.rate_seconds + 1,
                    )
                return summarize(label, result, dirty)

            s_paced = paced(f"new alerts (open loop, {args.rate:g}/s offered)", "paced", args.rate)
            # The same open loop at half the measured capacity: the latency of a system
            # that keeps up, next to the one of the offered target rate.
            half = max(10.0, round(new.rate() / 2))
            s_half = paced(f"new alerts (open loop, {half:g}/s offered = half capacity)", "half", half)

            with engine.connect() as conn:
                incidents = conn.scalar(
                    text("SELECT count(*) FROM incidents WHERE fingerprint LIKE :p"), {"p": f"%{run}-new-%"}
                )
                dup_incidents = conn.scalar(
                    text("SELECT count(*) FROM incidents WHERE fingerprint LIKE :p"), {"p": f"%{run}-dup-%"}
                )
                dup_alerts = conn.scalar(
                    text("SELECT coalesce(sum(alert_count), 0) FROM incidents WHERE fingerprint LIKE :p"),
                    {"p": f"%{run}-dup-%"},
                )
            checks = {
                "new_incidents_stored": int(incidents or 0),
                "new_alerts_accepted": new.ok,
                "dedup_incidents": int(dup_incidents or 0),
                "dedup_alerts_stored": int(dup_alerts or 0) - dup_keys,
                "dedup_alerts_accepted": dedup.ok,
            }
            log(f"checks: {checks}")
            # wrk stops on time: requests in flight then are stored but not counted (at
            # most one per connection). The asyncio client counts every one.
            slack = args.concurrency if args.load == "wrk" else 0
            if (
                not 0 <= checks["new_incidents_stored"] - new.ok <= slack
                or checks["dedup_incidents"] != dup_keys
                or not 0 <= checks["dedup_alerts_stored"] - dedup.ok <= slack
            ):
                raise SystemExit(f"ingest lost or duplicated data: {checks}")
        except BaseException:
            log(stack.logs())
            raise
        finally:
            stack.stop()
            engine.dispose()
            if not args.keep:
                stack.cleanup()

    print_summary(
        {
            "bench": "ingest",
            "new_alerts_per_s": s_new["per_s"],
            "dedup_alerts_per_s": s_dedup["per_s"],
            "p50_ms": s_paced["p50_ms"],
            "p99_ms": s_paced["p99_ms"],
            "offered_per_s": args.rate,
            "open_loop": s_paced,
            "open_loop_half_capacity": {"offered_per_s": half, **s_half},
            "closed_loop_new": s_new,
            "closed_loop_dedup": s_dedup,
            "web_cpu_ms_per_new_alert": round(cpu_new * 1000 / max(1, new.ok), 3),
            # granian + PostgreSQL + Redis (every process of theirs), not the load generator.
            "server_cpu_ms_per_new_alert": round(server_new * 1000 / max(1, new.ok), 3),
            "server_cpu_ms_per_dedup_alert": round(server_dedup * 1000 / max(1, dedup.ok), 3),
            "commits_per_new_alert": round(commits_new / max(1, new.ok), 2),
            "checks": checks,
            "web": web,
            "concurrency": args.concurrency,
            "load_generator": f"{args.load} (closed loops); asyncio client (open loops)",
            "backends": backends.settings(),
            "machine": machine_notes(),
        }
    )


if __name__ == "__main__":
    main()
