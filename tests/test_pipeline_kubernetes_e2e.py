"""End to end with Kubernetes as the evidence: SQLite, the real Celery worker, the
offline analyst, and the official client reading a local Kubernetes API server."""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from iras.analysts import set_analyst
from iras.config import reset_settings
from iras.integrations import mock
from iras.schemas import RemediationPlan, RemediationStep, RiskLevel, RunbookAction
from tests.conftest import WaitFor, fire
from tests.fakes.kubernetes_api import FakeKubernetes, deployment, event, pod, replica_set
from tests.support.analysts import ScriptedAnalyst

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
SECRET_EVENT = "Error: couldn't find key DB_PASSWORD in Secret billing/invoice-worker-db"


@pytest.fixture
def cluster() -> Iterator[FakeKubernetes]:
    with FakeKubernetes() as fake:
        yield fake  # type: ignore[misc]


def _missing_secret_key(cluster: FakeKubernetes) -> None:
    """invoice-worker: last rolled out four days ago; its Secret lost the key DB_PASSWORD
    (renamed by a secret sync), so every new pod sits in CreateContainerConfigError."""
    labels = {"app.kubernetes.io/name": "invoice-worker"}
    cluster.add(
        "replicasets",
        replica_set(
            "invoice-worker-6c5d4b7f8",
            "billing",
            labels,
            deployment="invoice-worker",
            revision=12,
            image="registry.example/billing/invoice-worker:5.3.1",
            created=T0 - timedelta(days=4),
            replicas=3,
            change_cause="release 5.3.1",
        ),
    )
    cluster.add(
        "replicasets",
        replica_set(
            "invoice-worker-59b8d7c6f",
            "billing",
            labels,
            deployment="invoice-worker",
            revision=11,
            image="registry.example/billing/invoice-worker:5.3.0",
            created=T0 - timedelta(days=9),
            replicas=0,
        ),
    )
    cluster.add(
        "deployments", deployment("invoice-worker", "billing", labels, replicas=3, revision=12, ready=1)
    )
    pod_labels = {**labels, "pod-template-hash": "6c5d4b7f8"}
    cluster.add(
        "pods",
        pod(
            "invoice-worker-6c5d4b7f8-x2k9p",
            "billing",
            pod_labels,
            owner=("ReplicaSet", "invoice-worker-6c5d4b7f8"),
            started=T0 - timedelta(days=4),
        ),
    )
    for suffix, minutes in (("q8w4z", 24), ("m3n7v", 17)):
        name = f"invoice-worker-6c5d4b7f8-{suffix}"
        cluster.add(
            "pods",
            pod(
                name,
                "billing",
                pod_labels,
                owner=("ReplicaSet", "invoice-worker-6c5d4b7f8"),
                node="ip-10-20-44-18.eu-west-2.compute.internal",
                phase="Pending",
                ready=False,
                started=T0 - timedelta(minutes=minutes),
                statuses=[
                    {
                        "name": "invoice-worker",
                        "ready": False,
                        "restartCount": 0,
                        "image": "registry.example/billing/invoice-worker:5.3.1",
                        "state": {
                            "waiting": {
                                "reason": "CreateContainerConfigError",
                                "message": "couldn't find key DB_PASSWORD in Secret billing/invoice-worker-db",
                            }
                        },
                    }
                ],
            ),
        )
        cluster.add(
            "events",
            event(
                "billing",
                "Pod",
                name,
                "Failed",
                SECRET_EVENT,
                first=T0 - timedelta(minutes=minutes),
                last=T0 - timedelta(minutes=1),
                count=minutes // 2,
            ),
        )


def test_a_container_config_error_from_a_missing_secret_key_gets_a_config_plan_citing_the_event(
    pipeline: FlaskClient,
    wait_for: WaitFor,
    cluster: FakeKubernetes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _missing_secret_key(cluster)
    monkeypatch.setenv("KUBECONFIG", cluster.kubeconfig(str(tmp_path / "kubeconfig")))
    monkeypatch.setenv("KUBERNETES_NAMESPACES", "billing")
    reset_settings()
    # No other source has anything to say: the diagnosis rests on Kubernetes alone.
    mock.set_fixture({"logs": [], "metrics": [], "deployments": []})

    incident_id = fire(
        pipeline,
        title="invoice-worker: 2 of 3 pods not ready",
        service="invoice-worker",
        timestamp="2026-11-25T10:00:00Z",
    )
    doc = wait_for(incident_id, "awaiting_approval", "escalated", "resolved", timeout=60)

    context = next(s for s in doc["stages"] if s["stage"] == "context")["result"]
    (kube,) = [s for s in context["sources"] if s["kind"] == "kubernetes"]
    assert kube["status"] == "ok" and kube["items"] > 0
    event_line = f"Warning Failed pod/invoice-worker-6c5d4b7f8-q8w4z {SECRET_EVENT} (x12 over 23m)"
    assert event_line in [line["message"] for line in context["logs"]]
    assert [(w["name"], w["current_revision"]) for w in context["workloads"]] == [("invoice-worker", 12)]

    rca = next(s for s in doc["stages"] if s["stage"] == "rca")["result"]
    assert doc["status"] == "awaiting_approval", (doc["status"], rca)
    assert rca["category"] == "config_change", rca
    assert rca["culprit_service"] in ("invoice-worker", "invoice-worker-db")
    assert any("couldn't find key DB_PASSWORD" in cited for cited in rca["evidence"]), rca["evidence"]
    first = doc["plan"]["steps"][0]
    assert first["action"] == "revert_config", first


def _rollback_plan() -> RemediationPlan:
    """What an analyst writes without looking at the rollout history."""
    step = RemediationStep(
        order=1,
        action=RunbookAction.ROLLBACK_DEPLOYMENT,
        description="Roll invoice-worker back",
        command="kubectl rollout undo deployment/invoice-worker -n billing",
        rollback_command="kubectl rollout undo deployment/invoice-worker -n billing",
        risk_level=RiskLevel.MEDIUM,
    )
    return RemediationPlan(summary="roll back", steps=[step], requires_human_approval=True, reversible=True)


@pytest.mark.parametrize("with_cluster", [True, False], ids=["rollout-history", "no-history"])
def test_the_approved_rollback_names_the_revisions_or_says_it_cannot(
    pipeline: FlaskClient,
    wait_for: WaitFor,
    cluster: FakeKubernetes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    with_cluster: bool,
) -> None:
    if with_cluster:
        _missing_secret_key(cluster)
        monkeypatch.setenv("KUBECONFIG", cluster.kubeconfig(str(tmp_path / "kubeconfig")))
    reset_settings()
    mock.set_fixture({"logs": [], "metrics": [], "deployments": []})
    set_analyst(ScriptedAnalyst(confidence=0.9, plan=_rollback_plan()))

    incident_id = fire(pipeline, service="invoice-worker")
    doc = wait_for(incident_id, "awaiting_approval", timeout=60)
    (step,) = doc["plan"]["steps"]
    if with_cluster:
        # The console's Evidence section shows the source and its lines like any log line.
        page = html.unescape(pipeline.get(f"/ui/incidents/{incident_id}").text)
        assert "kubernetes: kubernetes ok" in page
        assert f"Warning Failed pod/invoice-worker-6c5d4b7f8-q8w4z {SECRET_EVENT}" in page
        assert step["command"] == "kubectl rollout undo deployment/invoice-worker -n billing --to-revision=11"
        assert (
            step["rollback_command"]
            == "kubectl rollout undo deployment/invoice-worker -n billing --to-revision=12"
        )
        assert doc["plan"]["reversible"] is True
    else:
        assert step["command"] == "kubectl rollout undo deployment/invoice-worker -n billing"
        assert step["rollback_command"] is None
        assert any(note.startswith("Revision unknown") for note in step["safety_notes"])
        assert doc["plan"]["reversible"] is False
