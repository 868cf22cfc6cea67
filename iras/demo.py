"""`iras demo`: the whole service with bundled incidents replayed through it.

Starts the embedded service (web, worker, beat) on a throwaway SQLite database,
then posts each bundled scenario's alert to the real webhook over HTTP while the
mock sources serve that scenario's logs, metrics and deployments (the fixture
mode `iras eval` uses; IRAS_MOCK_EVIDENCE=true, which the console and /health
name). Scenarios are replayed one at a time, because the fixture is one per
process. It then approves one plan (dry-run executor) and rejects another, so
the console shows diagnoses, plans awaiting approval and post-mortems.

Everything that could reach the outside is switched off for the demo: the
configured evidence sources, Slack, PagerDuty and the shell executor.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

BUNDLED_SCENARIOS = Path(__file__).parent / "demo_scenarios"
SETTLED = {"awaiting_approval", "resolved", "escalated", "auto_resolved"}
# The demo's own settings: nothing it does may touch a real system of the reader's.
DEMO_ENVIRONMENT = {
    "IRAS_MOCK_EVIDENCE": "true",
    "CELERY_BROKER_URL": "memory://",
    "REMEDIATION_EXECUTOR": "dry-run",
    "LOKI_URL": "",
    "ELASTICSEARCH_URL": "",
    "PROMETHEUS_URL": "",
    "GITHUB_TOKEN": "",
    "SLACK_BOT_TOKEN": "",
    "PAGERDUTY_ROUTING_KEY": "",
    "WEBHOOK_TOKENS": "",
    "AUTH_ENABLED": "false",
}
WAIT_SECONDS = 60.0
HTTP_TIMEOUT = 10.0


def load_scenarios(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(directory.glob("*.json"))]


def _wait_settled(base: str, incident_id: str, statuses: set[str] = SETTLED) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = requests.get(f"{base}/incidents/{incident_id}", timeout=HTTP_TIMEOUT).json()
        if doc.get("status") in statuses:
            return doc
        time.sleep(0.1)
    raise TimeoutError(f"incident {incident_id} still {doc.get('status')!r} after {WAIT_SECONDS:.0f} s")


def _diagnosis(doc: dict[str, Any]) -> dict[str, Any]:
    rca = [s["result"] for s in doc.get("stages") or [] if s["stage"] == "rca"]
    return rca[-1] if rca else {}


def describe(doc: dict[str, Any]) -> str:
    """One line per incident: severity, diagnosis, confidence, status and the first command."""
    rca = _diagnosis(doc)
    steps = (doc.get("plan") or {}).get("steps") or []
    what = (
        f"{str(rca.get('category', '?')).replace('_', ' ')} in {rca.get('culprit_service', '?')} "
        f"({float(rca.get('confidence') or 0):.0%})"
        if rca
        else "no diagnosis"
    )
    action = f": {steps[0]['command']}" if steps else ""
    return f"  {doc.get('severity') or '··'} {doc['title'][:60]:<60} | {what} -> {doc['status']}{action}"


def replay(base: str, scenarios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Post each scenario's alert to the webhook with its evidence served, one at a time."""
    from iras.integrations import mock

    docs = []
    try:
        for scenario in scenarios:
            mock.set_fixture(scenario["evidence"])
            response = requests.post(
                f"{base}/webhook/{scenario['source']}", json=scenario["alert"], timeout=HTTP_TIMEOUT
            )
            if response.status_code != 202:
                raise RuntimeError(
                    f"{scenario['id']}: webhook answered {response.status_code}: {response.text}"
                )
            doc = _wait_settled(base, response.json()["incident_id"])
            print(describe(doc), flush=True)
            docs.append(doc)
    finally:
        mock.set_fixture(None)
    return docs


def decide_two(base: str, docs: list[dict[str, Any]]) -> None:
    """Approve the first plan and reject the second, so both kinds of post-mortem exist."""
    waiting = [d for d in docs if d["status"] == "awaiting_approval" and d.get("plan")]
    for doc, verb, done, reason in (
        (waiting[0] if waiting else None, "approve", "approved", "the evidence matches the diagnosis"),
        (
            waiting[1] if len(waiting) > 1 else None,
            "reject",
            "rejected",
            "not convinced, checking the database first",
        ),
    ):
        if doc is None:
            continue
        response = requests.post(
            f"{base}/incidents/{doc['id']}/{verb}",
            json={"by": "demo", "reason": reason, "plan_id": doc["plan"]["id"]},
            timeout=HTTP_TIMEOUT,
        )
        response.raise_for_status()
        after = _wait_settled(base, doc["id"], {"resolved", "escalated"})
        print(f"  {done} {doc['title'][:60]!r} -> {after['status']} (post-mortem written)", flush=True)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def run_demo(host: str, port: int, directory: Path, analyst: str, stay: bool) -> int:
    scenarios = load_scenarios(directory)
    if not scenarios:
        print(f"no scenario *.json in {directory}")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="iras-demo-"))
    saved = {key: os.environ.get(key) for key in (*DEMO_ENVIRONMENT, "DATABASE_URL", "ANALYST", "LOG_LEVEL")}
    os.environ.update(DEMO_ENVIRONMENT)
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # the replay's lines, not every request's
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'demo.db'}"
    os.environ["ANALYST"] = analyst
    from iras.config import reset_settings, restore_environ
    from iras.db import reset_engine
    from iras.embedded import start

    reset_settings()
    reset_engine()
    server, worker, url = start(host, port)
    if os.environ["LOG_LEVEL"].upper() == "WARNING":
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    thread = threading.Thread(target=server.serve_forever, name="iras-demo-web", daemon=True)
    thread.start()
    # A supervisor's SIGTERM stops the demo like Ctrl-C: its temporary database is removed.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        print(
            f"\nReplaying {len(scenarios)} bundled incidents through {url}/webhook/ (mock evidence):",
            flush=True,
        )
        docs = replay(url, scenarios)
        decide_two(url, docs)
        kinds = {(_diagnosis(d).get("category"), _diagnosis(d).get("culprit_service")) for d in docs}
        print(f"\n{len(kinds)} different diagnoses. Open {url}/ui/ to read them.", flush=True)
        if stay:
            print("The demo database is temporary. Ctrl-C stops the demo.", flush=True)
            while thread.is_alive():
                thread.join(timeout=1)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        worker.stop()
        restore_environ(saved)
        reset_engine()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--scenarios",
        type=Path,
        default=BUNDLED_SCENARIOS,
        help="folder of scenario *.json files (default: the bundled ones)",
    )
    parser.add_argument("--analyst", choices=["offline", "claude"], default="offline")
    parser.add_argument(
        "--exit",
        dest="stay",
        action="store_false",
        help="stop after the replay instead of serving the console",
    )


def main_demo(args: argparse.Namespace) -> int:
    return run_demo(args.host, args.port, args.scenarios, args.analyst, args.stay)
