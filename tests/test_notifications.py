"""The incident document the notification tasks hand to a notifier: its own columns
read up front, the rest (stages, plan, timeline, post-mortem) only when the
notifier reads them, and then exactly what `serialize_incident` gives."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event

from iras import dispatch
from iras.db import get_engine, new_session
from iras.models import Incident
from iras.services import serialize_incident
from iras.tasks.notifications import _incident_doc
from tests.conftest import fire


@pytest.fixture
def incident_id(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(dispatch, "enqueue_stages", lambda *_: None)
    return fire(client, title="Disk full on db-1", service="db")


def _statements() -> list[str]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(get_engine(), "before_cursor_execute", record)
    return seen


def test_a_notifier_that_reads_only_the_summary_costs_no_further_query(incident_id: str) -> None:
    doc = _incident_doc(incident_id)
    assert doc is not None
    seen = _statements()
    assert (doc["id"], doc["status"], doc["title"], doc.get("notify_ref")) == (
        incident_id,
        "triaging",
        "Disk full on db-1",
        None,
    )
    assert seen == []


def test_the_rest_is_read_once_when_a_notifier_asks_and_matches_serialize_incident(incident_id: str) -> None:
    doc = _incident_doc(incident_id)
    assert doc is not None
    seen = _statements()
    assert doc["alerts"][0]["title"] == "Disk full on db-1"
    first = len(seen)
    assert first > 0
    assert doc.get("plan") is None and doc.get("no such key", "default") == "default"
    assert len(seen) == first  # read once
    with new_session() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        expected = serialize_incident(session, incident)
    assert dict(doc) == {**expected, "notify_ref": None}


def test_a_gone_incident_has_no_document(iras_env: str) -> None:
    assert _incident_doc("00000000-0000-0000-0000-000000000000") is None
