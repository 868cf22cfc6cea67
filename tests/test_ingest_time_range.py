"""Alert times that cannot be placed on a timeline are refused at ingest (issue 19):
a year-1 or year-9999 instant with an offset overflowed only later, in triage."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.conftest import WaitFor


@pytest.mark.parametrize(
    "timestamp",
    [
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59Z",
        "9999-06-01T00:00:00+01:00",
        253402300000000,  # epoch milliseconds in the year 9999
    ],
)
def test_a_timestamp_at_the_edge_of_the_calendar_is_a_400(client: FlaskClient, timestamp: str | int) -> None:
    response = client.post("/webhook/generic", json={"title": "t", "timestamp": timestamp, "service": "api"})
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["field"] == "timestamp"


@pytest.mark.parametrize("source", ["alertmanager"])
def test_alertmanagers_zero_end_time_still_means_not_ended(client: FlaskClient, source: str) -> None:
    body = {
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "X", "service": "api"},
                "startsAt": "2026-11-25T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": "f1",
            }
        ],
        "groupKey": "g",
        "version": "4",
    }
    assert client.post(f"/webhook/{source}", json=body).status_code == 202


@pytest.mark.parametrize("timestamp", ["0001-01-01T12:00:00+01:00", "9998-12-31T00:00:00-05:00"])
def test_an_accepted_edge_timestamp_is_triaged_without_overflow(
    pipeline: FlaskClient, wait_for: WaitFor, timestamp: str
) -> None:
    response = pipeline.post(
        "/webhook/generic", json={"title": "t", "timestamp": timestamp, "service": "api"}
    )
    if response.status_code == 400:
        return  # refused at ingest: fine
    doc = wait_for(response.get_json()["incident_id"], "awaiting_approval", "escalated", "resolved")
    assert not any("Overflow" in str(t.get("detail")) for t in doc["timeline"]), doc["timeline"]
