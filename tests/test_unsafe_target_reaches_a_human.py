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
