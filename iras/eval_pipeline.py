"""The pipeline runner for `iras eval`: every scenario goes through the real
webhook (its source adapter), the real Celery stage tasks on an in-process
worker, and a throwaway SQLite database; the context tools are the mock clients
serving the scenario's evidence (fixture mode). What is scored is what the
pipeline stored, not what an analyst returned in isolation.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from iras.schemas import RemediationPlan, RootCauseHypothesis, TriageResult

SETTLED = {"awaiting_approval", "closing", "resolved", "escalated", "auto_resolved", "escalating"}


@contextmanager
def pipeline_runner(analyst_name: str = "offline", timeout: float = 120.0) -> Iterator[Any]:
    from iras.analysts import set_analyst
    from iras.config import reset_settings, restore_environ
    from iras.db import reset_engine
    from iras.embedded import EmbeddedWorker
    from iras.eval import get_analyst, predicted_from_results
    from iras.integrations import mock
    from iras.migrate import upgrade
    from iras.web import create_app

    saved = {k: os.environ.get(k) for k in ("DATABASE_URL", "CELERY_BROKER_URL", "IRAS_MOCK_EVIDENCE")}
    workdir = Path(tempfile.mkdtemp(prefix="iras-eval-"))
    template = workdir / "template.db"
    upgrade(f"sqlite:///{template}")
    os.environ["CELERY_BROKER_URL"] = "memory://"
    # The scenario's evidence is served through the mock sources (fixture mode).
    os.environ["IRAS_MOCK_EVIDENCE"] = "true"
    counter = iter(range(1_000_000))

    def fresh_database() -> None:
        # Each scenario gets its own database: two scenarios may carry the same alert
        # fingerprint, and the second must not be deduplicated into the first.
        path = workdir / f"scenario-{next(counter)}.db"
        shutil.copy(template, path)
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
        reset_settings()
        reset_engine()

    fresh_database()
    set_analyst(get_analyst(analyst_name))
    worker = EmbeddedWorker(concurrency=4, beat=False)
    worker.start()
    client = create_app().test_client()

    def run(scenario: dict[str, Any]) -> dict[str, Any]:
        fresh_database()
        mock.set_fixture(scenario["evidence"])
        response = client.post(f"/webhook/{scenario['source']}", json=scenario["alert"])
        if response.status_code != 202:
            raise RuntimeError(f"webhook answered {response.status_code}: {response.get_json()}")
        incident_id = response.get_json()["incident_id"]
        deadline = time.monotonic() + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            doc = client.get(f"/incidents/{incident_id}").get_json()
            if doc["status"] in SETTLED:
                break
            time.sleep(0.02)
        else:
            raise TimeoutError(f"incident stuck in {doc.get('status')}")
        latest: dict[str, Any] = {}
        for stage in doc["stages"]:
            latest[stage["stage"]] = stage["result"]
        triage = TriageResult.model_validate(latest["triage"]) if "triage" in latest else None
        rca = RootCauseHypothesis.model_validate(latest["rca"]) if "rca" in latest else None
        plan_doc = {k: v for k, v in (doc.get("plan") or {}).items() if k != "id"}
        plan = RemediationPlan.model_validate(plan_doc) if plan_doc else None
        predicted = predicted_from_results(triage, rca, plan, {"severity": doc.get("severity")})
        predicted["status"] = doc["status"]
        return predicted

    try:
        yield run
    finally:
        worker.stop()
        mock.set_fixture(None)
        set_analyst(None)
        restore_environ(saved)
        reset_engine()
        shutil.rmtree(workdir, ignore_errors=True)
