"""A diagnosis that needs a change IRAS cannot express as a safe command must
reach a human; only a false alarm closes without anyone looking."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import WaitFor

UNSAFE_TARGETS: list[dict[str, Any]] = [
    {"service": "payment_api"},
    {"service": "PAYMENT_API"},
    {"service": "раyment-api"},  # Cyrillic "р" and "а"
    {"service": "a" * 254},
    {"service": "payment-api", "labels": {"namespace": "prod --kubeconfig=/x"}},
]


@pytest.mark.parametrize("fields", UNSAFE_TARGETS, ids=["underscore", "upper", "cyrillic", "long", "ns-flag"])
def test_a_plan_that_cannot_be_built_safely_waits_for_a_human(
    pipeline: FlaskClient, wait_for: WaitFor, fields: dict[str, Any]
) -> None:
    body = {"title": "High error rate", "timestamp": "2026-11-25T10:00:00Z", **fields}
    response = pipeline.post("/webhook/generic", json=body)
    assert response.status_code == 202, response.get_json()
    incident_id = response.get_json()["incident_id"]
    doc = wait_for(incident_id, "awaiting_approval", "escalated", "resolved", "auto_resolved")
    rca = next(s for s in doc["stages"] if s["stage"] == "rca")["result"]
    assert rca["category"] != "false_alarm"
    assert doc["status"] in ("awaiting_approval", "escalated"), doc["timeline"]
    assert doc.get("outcome") != "no_action"
    if doc["status"] == "awaiting_approval":
        # The step shown to the human never runs, and carries nothing of the unsafe name.
        assert doc["plan"]["steps"] and not any(s["executable"] for s in doc["plan"]["steps"])
        assert all("kubeconfig" not in s["command"] for s in doc["plan"]["steps"])


def _group(*labels: dict[str, str]) -> dict[str, Any]:
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": "HighErrorRate", "severity": "critical", **extra},
            "annotations": {"summary": f"{extra.get('service')} 5xx ratio is 30%"},
            "startsAt": "2026-11-25T10:00:00Z",
            "fingerprint": f"fp-{i}",
        }
        for i, extra in enumerate(labels)
    ]
    return {
        "receiver": "iras",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"alertname": "HighErrorRate"},
        "groupKey": f'{{}}:{{alertname="HighErrorRate",n="{len(labels)}{labels[-1]}"}}',
        "version": "4",
    }


def test_a_namespace_is_never_taken_from_another_alert_of_the_group(
    pipeline: FlaskClient, wait_for: WaitFor
) -> None:
    """Alert 1 names cart without a namespace, alert 2 names another service in
    kube-system: no command may act on cart in kube-system (issue 19)."""
    body = _group({"service": "cart"}, {"service": "other", "namespace": "kube-system"})
    response = pipeline.post("/webhook/alertmanager", json=body)
    assert response.status_code == 202, response.get_json()
    doc = wait_for(response.get_json()["incident_id"], "awaiting_approval", "escalated", "resolved")
    for step in (doc.get("plan") or {}).get("steps", []):
        for command in (step["command"], step.get("rollback_command") or ""):
            assert "kube-system" not in command or "cart" not in command, command


def _facts(*labels: dict[str, str]) -> Any:
    from iras.analysts.base import IncidentFacts
    from iras.ingest import normalize

    alerts = normalize(_group(*labels), "alertmanager")
    return IncidentFacts(incident_id="i", title="t", source="alertmanager", alerts=alerts, alert=alerts[0])


def test_the_namespace_comes_from_the_services_own_alert() -> None:
    from iras.analysts.offline import _namespace
    from iras.analysts.runbooks import UnsafeArgument

    mixed = _facts({"service": "cart"}, {"service": "other", "namespace": "kube-system"})
    with pytest.raises(UnsafeArgument):
        _namespace(mixed, "cart")
    assert _namespace(mixed, "other") == "kube-system"
    both = _facts({"service": "cart", "namespace": "shop"}, {"service": "other", "namespace": "kube-system"})
    assert _namespace(both, "cart") == "shop"
    assert _namespace(_facts({"service": "cart"}, {"service": "other"}), "cart") == "default"
    # A culprit in no alert: the group's namespace only when every alert names the same one.
    same = _facts({"service": "cart", "namespace": "shop"}, {"service": "web", "namespace": "shop"})
    assert _namespace(same, "payments") == "shop"
    with pytest.raises(UnsafeArgument):
        _namespace(both, "payments")
    disagree = _facts({"service": "cart", "namespace": "shop"}, {"service": "cart", "namespace": "prod"})
    with pytest.raises(UnsafeArgument):
        _namespace(disagree, "cart")
