"""Memory benchmark: resident set size of the web workers and the Celery
workers while 10,000 incidents go through the whole pipeline (alert, analysis
with the instant analyst, approval, remediation, post-mortem, notifications).

RSS (VmRSS from /proc) of every granian worker and every Celery process is
sampled after each batch; growth is reported from the end of warm-up (the
first `--warmup` incidents: imports, caches and pools filled) to the end.
"No growth after warm-up" means a flat line, not a slope per incident.

    python bench/memory.py [--n 10000] [--batch 500]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402

from bench import _load  # noqa: E402
from bench._load import closed_loop  # noqa: E402
from bench._stack import (  # noqa: E402
    WEBHOOK_HEADERS,
    BenchProcess,
    Stack,
    WorkerSpec,
    alert_body,
    backends_from,
    common_args,
    engine_for,
    log,
    machine_notes,
    print_summary,
    rss_kb,
    wait_until,
)


def rss_by_process(stack: Stack) -> dict[str, int]:
    """kB per process: granian workers (not the main process), Celery pool processes."""
    out: dict[str, int] = {}

    def children(proc: BenchProcess) -> list[int]:
        return [p for p in proc.pids() if proc.proc is not None and p != proc.proc.pid]

    for i, pid in enumerate(sorted(children(stack.web))):
        out[f"web_worker_{i}"] = rss_kb(pid)
    for j, worker in enumerate(stack.workers):
        assert worker.proc is not None
        out[f"celery_{j}_main"] = rss_kb(worker.proc.pid)
        for k, pid in enumerate(sorted(children(worker))):
            out[f"celery_{j}_child_{k}"] = rss_kb(pid)
    return out


def main() -> None:
    parser = common_args(
        argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    )
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=300, help="bound on each batch (s)")
    args = parser.parse_args()

    with backends_from(args) as backends:
        assert backends.database_url and backends.broker_url
        stack = Stack(
            backends.database_url,
            backends.broker_url,
            web_workers=2,
            web_threads=8,
            workers=[WorkerSpec("analysis", "threads", 16), WorkerSpec("ops", "prefork", 2)],
            env={"APPROVAL_TIMEOUT_DEFAULT_MINUTES": "600", "APPROVAL_TIMEOUT_P0_MINUTES": "600"},
        )
        engine = engine_for(backends.database_url)
        _load.HEADERS.update(WEBHOOK_HEADERS)
        samples: list[dict[str, int]] = []
        done = 0
        try:
            stack.start()
            time.sleep(1.0)
            samples.append({"incidents": 0, **rss_by_process(stack)})

            def resolved() -> int:
                with engine.connect() as conn:
                    return int(conn.scalar(text("SELECT count(*) FROM incidents WHERE status = 'resolved'")))

            t0 = time.perf_counter()
            while done < args.n:
                size = min(args.batch, args.n - done)
                posted = closed_loop(
                    f"{stack.base}/webhook/alert",
                    lambda i, base=done: alert_body(f"mem-{base + i}"),
                    count=size,
                    concurrency=16,
                    keep=True,
                )
                if posted.ok != size:
                    raise SystemExit(f"batch at {done}: {posted.ok}/{size} accepted {posted.statuses}")
                ids = [json.loads(b)["incident_id"] for b in posted.bodies]

                def awaiting(ids: list[str] = ids) -> bool:
                    with engine.connect() as conn:
                        n = conn.scalar(
                            text("SELECT count(*) FROM incidents WHERE status = 'awaiting_approval'")
                        )
                    return int(n or 0) >= len(ids)

                wait_until(awaiting, args.timeout, 0.05, f"batch at {done} awaiting approval")
                approved = closed_loop(
                    f"{stack.base}/x",
                    lambda i, ids=ids: (f"{stack.base}/incidents/{ids[i]}/approve", b'{"by": "bench"}'),
                    count=size,
                    concurrency=16,
                )
                if approved.ok != size:
                    raise SystemExit(f"batch at {done}: {approved.ok}/{size} approved {approved.statuses}")
                done += size
                wait_until(lambda target=done: resolved() >= target, args.timeout, 0.05, f"{done} resolved")
                samples.append({"incidents": done, **rss_by_process(stack)})
                log(f"{done} incidents, {time.perf_counter() - t0:.0f}s: {samples[-1]}")
        except BaseException:
            log(stack.logs())
            raise
        finally:
            stack.stop()
            engine.dispose()
            if not args.keep:
                stack.cleanup()

    after_warmup = next(s for s in samples if s["incidents"] >= args.warmup)
    last = samples[-1]
    growth = {k: last[k] - after_warmup[k] for k in last if k != "incidents" and k in after_warmup}
    web = [k for k in last if k.startswith("web_worker")]
    celery = [k for k in last if k.startswith("celery")]
    print_summary(
        {
            "bench": "memory",
            "n": done,
            "web_worker_rss_kb": max(last[k] for k in web),
            "celery_worker_rss_kb": max(last[k] for k in celery),
            "web_growth_after_warmup_kb": max(growth[k] for k in web),
            "celery_growth_after_warmup_kb": max(growth[k] for k in celery),
            "warmup_incidents": after_warmup["incidents"],
            "growth_kb": growth,
            "samples": samples,
            "workers": "web: granian 2 x 8 blocking threads; analysis: threads x 16; ops: prefork x 2",
            "backends": backends.settings(),
            "machine": machine_notes(),
        }
    )


if __name__ == "__main__":
    main()
