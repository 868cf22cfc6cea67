"""A real Prometheus Alertmanager (Debian package prometheus-alertmanager) with a
webhook receiver pointing at a running IRAS: granian and a Celery worker as
separate processes on PostgreSQL + Redis.

Alerts go to Alertmanager's own API (`POST /api/v2/alerts`); Alertmanager groups
them (group_by alertname, short group_wait/group_interval) and delivers version-4
notifications with its bearer token. IRAS must open one incident per group, fold
Alertmanager's later notifications for the group into it, note a partial
resolution, and close the incident as auto_resolved once Alertmanager reports
every alert resolved (alerts posted again with `endsAt` in the past).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration._require import require_binaries
from tests.support.services import IrasProcess, PostgresServer, RedisServer, free_port, wait_for_http

pytestmark = pytest.mark.integration

SCENARIO_FILE = Path(__file__).parents[1] / "data" / "checkout-guest-npe-after-release.json"
TOKEN = "am-webhook-secret-7f3a"
ALERTMANAGER_CONFIG = """
route:
  receiver: iras
  group_by: [alertname]
  # Longer than Alertmanager may take to receive a post on a loaded machine (the
  # alerts' startsAt is the time they were built: see alert()).
  group_wait: 3s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: iras
    webhook_configs:
      - url: {url}
        send_resolved: true
        max_alerts: 0
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
"""


class Alertmanager:
    def __init__(self, binary: str, webhook_url: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="iras-am-"))
        (self.dir / "alertmanager.yml").write_text(ALERTMANAGER_CONFIG.format(url=webhook_url, token=TOKEN))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Alertmanager:
        log = open(self.dir / "alertmanager.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.dir / 'alertmanager.yml'}",
                f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # no gossip: a single instance, no settle wait
                "--log.level=debug",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_http(f"{self.base}/-/ready", 30)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)  # a test run leaves nothing in the temp directory

    def log_tail(self) -> str:
        return (self.dir / "alertmanager.log").read_text(errors="replace")[-4000:]

    def post(self, alerts: list[dict[str, Any]]) -> None:
        response = requests.post(f"{self.base}/api/v2/alerts", json=alerts, timeout=5)
        assert response.status_code == 200, response.text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a counter from Alertmanager's /metrics over the series matching `labels`."""
        total = 0.0
        for line in requests.get(f"{self.base}/metrics", timeout=5).text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


def alert(name: str, instance: str, *, resolved: bool = False) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": {
            "alertname": name,
            "service": "checkout-service",
            "instance": instance,
            "severity": "critical",
        },
        "annotations": {
            "summary": f"{name} on {instance}",
            "runbook_url": "https://runbooks.example/checkout",
        },
        # A firing alert starts now: Alertmanager flushes a new group at once, without
        # its group_wait, when the first alert's startsAt + group_wait is already past,
        # and the alerts posted with it may then miss that first notification.
        "startsAt": (now - timedelta(minutes=5) if resolved else now).isoformat(),
        # In the past = resolved now; otherwise firing for the next 10 minutes.
        "endsAt": ((now - timedelta(seconds=1)) if resolved else (now + timedelta(minutes=10))).isoformat(),
        "generatorURL": "http://prometheus.example/graph?g0.expr=up",
    }


class Iras:
    def __init__(self, base: str, procs: list[IrasProcess]) -> None:
        self.base = base
        self.procs = procs

    def logs(self) -> str:
        return "\n".join(f"--- {p.kind}\n{p.log_tail(3000)}" for p in self.procs)

    def incidents(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.base}/incidents?limit=100", timeout=5)
        assert response.status_code == 200, response.text
        return list(response.json()["incidents"])

    def incident(self, incident_id: str) -> dict[str, Any]:
        return dict(requests.get(f"{self.base}/incidents/{incident_id}", timeout=5).json())

    def wait(
        self,
        incident_id: str,
        until: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float,
        on_fail: Callable[[], str],
    ) -> dict[str, Any]:
        """The incident's document once `until(doc)` holds."""

        def check() -> dict[str, Any] | None:
            doc = self.incident(incident_id)
            return doc if until(doc) else None

        return dict(eventually(check, what, timeout, on_fail))


def eventually(check: Callable[[], Any], what: str, timeout: float, on_fail: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout}s (last: {last!r})\n{on_fail()}")


@pytest.fixture(scope="module")
def iras(
    postgres: PostgresServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Iras]:
    env = {
        "DATABASE_URL": postgres.fresh_database("iras_alertmanager"),
        "CELERY_BROKER_URL": redis_server.url.rsplit("/", 1)[0] + "/4",  # its own Redis database
        "WEBHOOK_TOKENS": f"alertmanager={TOKEN}",
        "MOCK_EVIDENCE_FILE": str(SCENARIO_FILE),
        "IRAS_MOCK_EVIDENCE": "true",
        "ANALYST": "offline",
        # The pipeline's mechanics are under test here, not the offline analyst's quality.
        "RCA_CONFIDENCE_THRESHOLD": "0.3",
    }
    port = free_port()
    log_dir = tmp_path_factory.mktemp("iras-am")
    procs = [
        IrasProcess(
            "worker",
            env,
            extra=["-Q", "analysis,ops", "--pool", "threads", "--concurrency", "8"],
            log_dir=log_dir,
        ),
        IrasProcess("web", env, port=port, log_dir=log_dir),
    ]
    for proc in procs:
        proc.start()
    yield Iras(f"http://127.0.0.1:{port}", procs)
    for proc in procs:
        proc.stop()


@pytest.fixture(scope="module")
def alertmanager(iras: Iras) -> Iterator[Alertmanager]:
    binary = require_binaries("prometheus-alertmanager")["prometheus-alertmanager"]
    am = Alertmanager(binary, f"{iras.base}/webhook/alertmanager").start()
    yield am
    am.stop()


def test_alertmanager_groups_dedups_and_resolves_into_iras(iras: Iras, alertmanager: Alertmanager) -> None:
    def diagnostics() -> str:
        return f"{iras.logs()}\n--- alertmanager\n{alertmanager.log_tail()}"

    def by_title(prefix: str) -> list[dict[str, Any]]:
        return [i for i in iras.incidents() if i["title"].startswith(prefix)]

    # Three instances of one alert and one other alert: two groups, so two incidents.
    alertmanager.post(
        [alert("CheckoutHighErrorRate", f"pod-{i}") for i in (1, 2, 3)] + [alert("CheckoutDiskFull", "db-1")]
    )
    errors = eventually(
        lambda: by_title("CheckoutHighErrorRate"), "the error-rate group arrives", 30, diagnostics
    )
    eventually(lambda: by_title("CheckoutDiskFull"), "the disk group arrives", 30, diagnostics)
    assert len(errors) == 1, errors
    incident_id = errors[0]["id"]
    doc = iras.incident(incident_id)
    assert doc["source"] == "alertmanager" and doc["alert_count"] == 3
    assert doc["fingerprint"].startswith("alertmanager:") and "CheckoutHighErrorRate" in doc["fingerprint"]
    fingerprints = {a["fingerprint"] for a in doc["alerts"]}
    assert len(fingerprints) == 3, "each alert of the group keeps its own fingerprint"
    assert {a["labels"]["instance"] for a in doc["alerts"]} == {"pod-1", "pod-2", "pod-3"}
    assert all(a["status"] == "firing" and a["service"] == "checkout-service" for a in doc["alerts"])

    # The same alerts again: Alertmanager deduplicates them itself, nothing new is sent.
    sent_before = alertmanager.metric("alertmanager_notifications_total", integration="webhook")
    alertmanager.post([alert("CheckoutHighErrorRate", f"pod-{i}") for i in (1, 2, 3)])
    time.sleep(3)  # more than group_interval
    assert alertmanager.metric("alertmanager_notifications_total", integration="webhook") == sent_before
    assert iras.incident(incident_id)["alert_count"] == 3

    # A fourth instance: Alertmanager re-sends the whole group, IRAS folds it into the incident.
    alertmanager.post([alert("CheckoutHighErrorRate", "pod-4")])
    doc = iras.wait(
        incident_id, lambda d: d["alert_count"] == 3 + 4, "the grown group is folded in", 20, diagnostics
    )
    assert len(by_title("CheckoutHighErrorRate")) == 1 and len(iras.incidents()) == 2

    # The pipeline runs meanwhile; the incident waits for a human to approve its plan.
    doc = iras.wait(
        incident_id, lambda d: d["status"] == "awaiting_approval", "a plan awaits approval", 45, diagnostics
    )

    # One instance recovers: noted on the timeline, the incident stays open.
    alertmanager.post([alert("CheckoutHighErrorRate", "pod-1", resolved=True)])
    doc = iras.wait(
        incident_id,
        lambda d: any(t["event"] == "alert_resolved" for t in d["timeline"]),
        "the partial resolution is on the timeline",
        20,
        diagnostics,
    )
    assert doc["status"] == "awaiting_approval"
    note = next(t for t in doc["timeline"] if t["event"] == "alert_resolved")
    assert len(note["detail"]["resolved"]) == 1 and len(note["detail"]["still_firing"]) == 3

    # Every instance recovers before anyone approved: closed as auto-resolved, nothing run.
    alertmanager.post([alert("CheckoutHighErrorRate", f"pod-{i}", resolved=True) for i in (1, 2, 3, 4)])
    doc = iras.wait(incident_id, lambda d: d["status"] == "auto_resolved", "auto-resolution", 30, diagnostics)
    assert doc["outcome"] == "auto_resolved" and doc["step_runs"] == [] and doc["decision"] is None
    assert doc["postmortem"]["outcome"] == "auto_resolved"
    assert [t["event"] for t in doc["timeline"]][-2:] == ["alerts_resolved", "closed_auto_resolved"]
    assert {a["status"] for a in doc["alerts"][-4:]} == {"resolved"}

    # The other group is untouched, and every delivery Alertmanager made was accepted.
    disk = by_title("CheckoutDiskFull")[0]
    assert disk["status"] not in ("auto_resolved",) and disk["alert_count"] == 1
    assert alertmanager.metric("alertmanager_notifications_failed_total", integration="webhook") == 0
    assert alertmanager.metric("alertmanager_notifications_total", integration="webhook") >= 4


def test_a_wrong_token_in_alertmanager_is_a_failed_delivery_and_writes_nothing(
    iras: Iras, alertmanager: Alertmanager
) -> None:
    """The same IRAS behind a receiver configured with the wrong secret: Alertmanager
    records failed notifications (it retries them), IRAS stores nothing."""
    binary = require_binaries("prometheus-alertmanager")["prometheus-alertmanager"]
    wrong = Alertmanager(binary, f"{iras.base}/webhook/alertmanager")
    (wrong.dir / "alertmanager.yml").write_text(
        ALERTMANAGER_CONFIG.format(url=f"{iras.base}/webhook/alertmanager", token="not-the-secret")
    )
    wrong.start()
    try:
        before = len(iras.incidents())
        wrong.post([alert("WrongTokenAlert", "x-1")])
        eventually(
            lambda: wrong.metric("alertmanager_notifications_failed_total", integration="webhook") >= 1,
            "Alertmanager reports the refused delivery",
            30,
            wrong.log_tail,
        )
        assert len(iras.incidents()) == before
        assert not [i for i in iras.incidents() if i["title"].startswith("WrongTokenAlert")]
        assert "401" in wrong.log_tail()
    finally:
        wrong.stop()
