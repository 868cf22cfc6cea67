"""A whole IRAS deployment for integration and chaos tests: granian, a Celery
worker and Celery beat as separate processes on a private PostgreSQL + Redis."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import requests

from tests.support.services import IrasProcess, free_port

SCENARIO_FILE = Path(__file__).parents[1] / "data" / "checkout-guest-npe-after-release.json"


class Stack:
    def __init__(self, env: dict[str, str], tmp: Path, worker_args: list[str] | None = None) -> None:
        self.env = env
        self.tmp = tmp
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.worker_args = worker_args or ["-Q", "analysis,ops", "--pool", "threads", "--concurrency", "8"]
        self.worker: IrasProcess | None = None
        self.beat: IrasProcess | None = None
        self.web: IrasProcess | None = None

    @property
    def procs(self) -> list[IrasProcess]:
        return [p for p in (self.worker, self.beat, self.web) if p is not None]

    def start_worker(self) -> IrasProcess:
        self.worker = IrasProcess("worker", self.env, extra=self.worker_args, log_dir=self.tmp).start()
        return self.worker

    def start_web(self) -> IrasProcess:
        self.web = IrasProcess("web", self.env, port=self.port, log_dir=self.tmp).start()
        return self.web

    def start(self) -> Stack:
        self.start_worker()
        self.beat = IrasProcess("beat", self.env, log_dir=self.tmp).start()
        self.start_web()
        return self

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.kind}\n{p.log_tail(3000)}" for p in self.procs)

    def get(self, incident_id: str) -> dict[str, Any]:
        return dict(requests.get(f"{self.base}/incidents/{incident_id}", timeout=10).json())

    def wait(self, incident_id: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                doc = self.get(incident_id)
            except requests.RequestException:
                doc = {}
            if doc.get("status") in statuses:
                return doc
            time.sleep(0.1)
        raise AssertionError(f"{incident_id} is {doc.get('status')}, wanted {statuses}\n{self.logs()}")

    def fire(self, title: str, **fields: Any) -> str:
        """The scenario's Alertmanager payload under its own group key (one incident per title)."""
        alert = json.loads(SCENARIO_FILE.read_text())["alert"]
        alert["groupKey"] = f'{{}}:{{alertname="{title}"}}'
        alert.update(fields)
        response = requests.post(f"{self.base}/webhook/alert", json=alert, timeout=30)
        assert response.status_code == 202, response.text
        return str(response.json()["incident_id"])
