"""Model-latency benchmark: the real Claude analyst (anthropic SDK + instructor)
against the fake Anthropic Messages API (tests/fakes/anthropic_server.py) with
realistic per-call latencies (Haiku 0.8 s, Sonnet 4 s by default), on granian
+ Celery + PostgreSQL + Redis.

The stages that call a model run on the `analysis` queue, served by a worker
with a high-concurrency pool (threads by default; model calls are I/O-bound);
remediation and the beat jobs stay on a prefork `ops` worker.

1. `one_incident_s`: one incident alone, from the POST until it awaits approval
   (median of `--singles` runs);
2. `concurrent_200_s`: `--n` (200) incidents posted at once, until all await approval.
Target: concurrent_200_s <= 1.3 x one_incident_s.

    python bench/latency.py [--n 200] [--haiku 0.8] [--sonnet 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, text  # noqa: E402

from bench import _load  # noqa: E402
from bench._load import closed_loop  # noqa: E402
from bench._stack import (  # noqa: E402
    WEBHOOK_HEADERS,
    Stack,
    WorkerSpec,
    alert_body,
    backends_from,
    common_args,
    engine_for,
    log,
    machine_notes,
    print_summary,
    server_roots,
    status_counts,
    tree_cpu_seconds,
    wait_until,
)
from tests.fakes.anthropic_server import FakeAnthropicServer  # noqa: E402

HAIKU = "claude-haiku-5-5"
SONNET = "claude-sonnet-5-5"


def stage_times(engine: Engine, since: datetime) -> dict[str, dict[str, float]]:
    """Seconds from the burst's first POST until its incidents entered each status
    (median and last): where the extra time over one incident alone is spent."""
    query = text(
        "SELECT t.to_status, t.at FROM transitions t JOIN incidents i ON i.id = t.incident_id"
        " WHERE i.created_at >= :since"
    )
    by_status: dict[str, list[float]] = {}
    with engine.connect() as conn:
        for status, at in conn.execute(query, {"since": since}):
            when = at if at.tzinfo else at.replace(tzinfo=UTC)
            by_status.setdefault(str(status), []).append((when - since).total_seconds())
    return {
        status: {"p50": round(statistics.median(v), 2), "max": round(max(v), 2)}
        for status, v in sorted(by_status.items(), key=lambda item: max(item[1]))
    }


def main() -> None:
    parser = common_args(
        argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    )
    parser.add_argument("--n", type=int, default=200, help="incidents fired at once")
    parser.add_argument("--haiku", type=float, default=0.8, help="seconds per Haiku call")
    parser.add_argument("--sonnet", type=float, default=4.0, help="seconds per Sonnet call")
    parser.add_argument("--singles", type=int, default=3, help="lone incidents measured (median)")
    parser.add_argument("--analysis-pool", default="threads")
    parser.add_argument("--analysis-concurrency", type=int, default=128)
    parser.add_argument(
        "--analysis-workers", type=int, default=2, help="processes serving the analysis queue"
    )
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()

    fake = FakeAnthropicServer(latency={HAIKU: args.haiku, SONNET: args.sonnet}).start()
    with backends_from(args) as backends:
        assert backends.database_url and backends.broker_url
        pool_size = max(10, args.analysis_concurrency // 4)
        stack = Stack(
            backends.database_url,
            backends.broker_url,
            web_workers=2,
            web_threads=8,
            workers=[
                *[
                    WorkerSpec("analysis", args.analysis_pool, args.analysis_concurrency, app="celeryconfig")
                    for _ in range(args.analysis_workers)
                ],
                WorkerSpec("ops", "prefork", 2, app="celeryconfig"),
            ],
            env={
                "ANALYST": "claude",
                "ANTHROPIC_BASE_URL": fake.url,
                "ANTHROPIC_API_KEY": fake.api_key,
                "TRIAGE_MODEL": HAIKU,
                "CONTEXT_MODEL": HAIKU,
                "RCA_MODEL": SONNET,
                "PLAN_MODEL": SONNET,
                "POSTMORTEM_MODEL": SONNET,
                "IRAS_DB_POOL_SIZE": str(pool_size),
                "APPROVAL_TIMEOUT_DEFAULT_MINUTES": "600",
                "APPROVAL_TIMEOUT_P0_MINUTES": "600",
            },
        )
        engine = engine_for(backends.database_url)
        _load.HEADERS.update(WEBHOOK_HEADERS)
        url = f"{stack.base}/webhook/alert"
        try:
            stack.start()
            log(
                f"stack up; analysis: {args.analysis_workers} x {args.analysis_pool} x {args.analysis_concurrency}"
            )

            def fire(keys: list[str]) -> float:
                before = status_counts(engine).get("awaiting_approval", 0)
                t0 = time.perf_counter()
                r = closed_loop(
                    url,
                    lambda i: alert_body(keys[i]),
                    count=len(keys),
                    concurrency=min(64, len(keys)),
                    keep=True,
                )
                if r.ok != len(keys):
                    raise SystemExit(f"only {r.ok}/{len(keys)} alerts accepted: {r.statuses}")
                wait_until(
                    lambda: status_counts(engine).get("awaiting_approval", 0) >= before + len(keys),
                    args.timeout,
                    0.02,
                    f"{len(keys)} incident(s) awaiting approval",
                )
                return time.perf_counter() - t0

            # Imports, client pools, prompt caches: a few incidents at once, so that every
            # analysis process has served one before a lone incident is timed.
            fire([f"warm-up-{i}" for i in range(4 * args.analysis_workers)])
            singles = [fire([f"single-{i}"]) for i in range(args.singles)]
            one = statistics.median(singles)
            log(f"one incident alone: {[round(s, 2) for s in singles]} -> median {one:.2f}s")

            calls0 = len(fake.requests)
            roots = server_roots(backends, stack)
            cpu0 = tree_cpu_seconds(roots)
            parts0 = {str(r): tree_cpu_seconds([r]) for r in roots}
            own0 = time.process_time()
            burst_start = datetime.now(UTC)
            many = fire([f"burst-{i}" for i in range(args.n)])
            cpu = tree_cpu_seconds(roots) - cpu0
            own = time.process_time() - own0
            names = {
                str(p.proc.pid): f"{p.kind}{i}" for i, p in enumerate(stack.processes) if p.proc is not None
            }
            cpu_parts = {
                names.get(r, "postgres" if i == len(roots) - 2 else "redis"): round(
                    (tree_cpu_seconds([int(r)]) - c0) * 1000 / args.n, 1
                )
                for i, (r, c0) in enumerate(parts0.items())
            }
            calls = len(fake.requests) - calls0
            stages = stage_times(engine, burst_start)
            log(f"{args.n} at once: {many:.2f}s ({many / one:.2f}x one alone), {calls} model calls")
        except BaseException:
            log(stack.logs())
            raise
        finally:
            stack.stop()
            engine.dispose()
            fake.stop()
            if not args.keep:
                stack.cleanup()

    print_summary(
        {
            "bench": "latency",
            "one_incident_s": round(one, 2),
            "concurrent_200_s": round(many, 2),
            "ratio": round(many / one, 3),
            "n": args.n,
            "singles_s": [round(s, 2) for s in singles],
            "model_calls_in_burst": calls,
            "burst_reached_s": stages,
            "server_cpu_ms_per_incident_in_burst": round(cpu * 1000 / args.n, 1),
            "server_cpu_ms_per_incident_by_process": cpu_parts,
            "fake_api_and_load_cpu_ms_per_incident": round(own * 1000 / args.n, 1),
            "latency_s": {HAIKU: args.haiku, SONNET: args.sonnet},
            "analysis_worker": f"{args.analysis_workers} x {args.analysis_pool} x {args.analysis_concurrency}",
            "backends": backends.settings(),
            "machine": machine_notes(),
            "calls_by_tool": json.loads(
                json.dumps(
                    {
                        t: sum(1 for r in fake.requests if r.tool_name == t)
                        for t in {r.tool_name for r in fake.requests}
                    }
                )
            ),
        }
    )


if __name__ == "__main__":
    main()
