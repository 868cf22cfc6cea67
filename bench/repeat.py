"""Run one benchmark several times and summarise every number it reports.

    python bench/repeat.py 5 bench/pipeline.py --n 1000

On a shared machine one run says little: the same code measured 173-234
incidents/s in consecutive runs of bench/pipeline.py (bench/README.md). Each run
is a fresh process with its own services; each run's JSON summary is printed as
it ends, and the last line is the median, minimum and maximum of every numeric
key (nested keys joined with dots), with how many runs passed a target when one
is given (`--target to_completion_per_s=200`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def numbers(doc: Any, prefix: str = "") -> dict[str, float]:
    """Every int/float in a JSON document, keyed by its dotted path (booleans left out)."""
    found: dict[str, float] = {}
    if isinstance(doc, dict):
        for key, value in doc.items():
            found.update(numbers(value, f"{prefix}{key}."))
    elif isinstance(doc, (int, float)) and not isinstance(doc, bool):
        found[prefix.rstrip(".")] = float(doc)
    return found


def summarise(runs: list[dict[str, Any]], targets: dict[str, float]) -> dict[str, Any]:
    per_key: dict[str, list[float]] = {}
    for run in runs:
        for key, value in numbers(run).items():
            per_key.setdefault(key, []).append(value)
    stats = {
        key: {"median": round(statistics.median(v), 3), "min": min(v), "max": max(v), "runs": len(v)}
        for key, v in per_key.items()
    }
    met = {
        f"{key} >= {floor:g}": sum(1 for v in per_key.get(key, []) if v >= floor)
        for key, floor in targets.items()
    }
    return {"runs": len(runs), "targets_met": met, "stats": stats}


def target(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected key=number, got {text!r}")
    return key, float(value)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("times", type=int, help="how many runs")
    parser.add_argument("script", help="the benchmark, e.g. bench/pipeline.py")
    parser.add_argument(
        "--target", type=target, action="append", default=[], help="key=floor: count the runs at or above it"
    )
    parser.add_argument(
        "--pause", type=float, default=5.0, help="seconds between runs (let the last one's I/O settle)"
    )
    args, rest = parser.parse_known_args()
    if args.times < 1:
        parser.error("times must be at least 1")
    runs: list[dict[str, Any]] = []
    for i in range(args.times):
        if i:
            time.sleep(args.pause)
        proc = subprocess.run(
            [sys.executable, args.script, *rest], cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False
        )
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"run {i + 1} of {args.script} failed (exit {proc.returncode})")
        runs.append(json.loads(lines[-1]))
        print(lines[-1], flush=True)
    print(
        json.dumps(
            {"bench": "repeat", "script": args.script, "args": rest, **summarise(runs, dict(args.target))}
        )
    )


if __name__ == "__main__":
    main()
