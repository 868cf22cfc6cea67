"""Ingestion's PostgreSQL path (driver-level multi-row statements) and the
group-commit writers of several processes racing, in process against a private
PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select, text

from iras import dispatch
from iras.db import new_session
from iras.ingest.batch import BatchWriter
from iras.ingest.store import Prepared, commit_batch, prepare
from iras.models import AlertEvent, Incident, Transition
from iras.schemas import NormalizedAlert, utcnow
from tests.support.sql import statements_sent

pytestmark = pytest.mark.integration


@pytest.fixture
def pg(pg_database: str) -> str:
    return pg_database


def item(fp: str, status: str = "firing", **extra: Any) -> Prepared:
    body = {"title": f"Disk full {fp}", "timestamp": "2026-11-25T10:00:00Z", "service": "db"}
    body |= {"fingerprint": fp, "status": status, **extra}
    prepared = prepare(body, "generic")
    assert isinstance(prepared, Prepared)
    return prepared


def test_one_transaction_for_a_batch_with_duplicates_and_a_resolution(pg: str, monkeypatch: Any) -> None:
    monkeypatch.setattr(dispatch, "enqueue_stage", lambda *_: None)
    items = [
        item("a", big=1.5, nested={"x": [1, "é", None]}, labels={"team": "paiements-é", "zone": "東京"}),
        item("b"),
        item("a"),
        item("c"),
        item("c", "resolved"),
        item("none", "resolved"),
    ]
    outcomes, opened = commit_batch(items)
    assert [o.status for o in outcomes] == [
        "processing", "processing", "deduplicated", "processing", "resolved_noted", "no_open_incident",
    ]  # fmt: skip
    assert len(opened) == 3 and outcomes[0].incident_id == outcomes[2].incident_id
    with new_session() as s:
        a = s.get(Incident, outcomes[0].incident_id)
        c = s.get(Incident, outcomes[3].incident_id)
        assert a is not None and c is not None
        assert a.alert_count == 2
        assert (c.status, c.outcome, c.alert_count) == ("closing", "auto_resolved", 2)
        raws = s.scalars(select(AlertEvent.raw).where(AlertEvent.incident_id == a.id).order_by(AlertEvent.id))
        # The opening body is the incident's payload; the joiner keeps its own.
        assert list(raws) == [items[0].payload, items[2].payload]
        docs = list(s.scalars(select(AlertEvent.alert).where(AlertEvent.incident_id == a.id)))
        assert all(d["fingerprint"] == "a" and d["source"] == "generic" for d in docs)
        # Each alert is stored as its model, less the body (kept once, in `raw`).
        assert NormalizedAlert.model_validate(docs[0]) == items[0].alerts[0].model_copy(update={"raw": {}})
        events = s.scalars(
            select(Transition.event).where(Transition.incident_id == c.id).order_by(Transition.id)
        )
        assert list(events) == ["ingested", "alerts_resolved"]


def test_a_batch_writes_its_rows_in_one_statement_and_counts_every_alert(pg: str) -> None:
    """New incidents, their alerts and transitions, and joins to incidents opened
    earlier go in one statement; a duplicate of an incident the same statement opens
    is counted in that incident's row (the statement's UPDATE cannot see it)."""
    from iras.db import reset_engine

    # Timestamps are sent as ISO 8601 text: the same instant whatever the session's zone.
    with new_session() as s:
        name = s.scalar(text("SELECT current_database()"))
        s.execute(text(f"ALTER DATABASE {name} SET TimeZone = 'America/Los_Angeles'"))
        s.commit()
    reset_engine()
    commit_batch([item("old")])
    with statements_sent() as statements:
        outcomes, _ = commit_batch([item("old"), item("new"), item("new"), item("old"), item("new")])
    assert [o.status for o in outcomes] == [
        "deduplicated",
        "processing",
        "deduplicated",
        "deduplicated",
        "deduplicated",
    ]
    writes = [s for s in statements if not s.lstrip().upper().startswith("SELECT")]
    assert len(writes) == 1, writes
    with new_session() as s:
        counts = dict(s.execute(select(Incident.fingerprint, Incident.alert_count)).all())
        alerts = s.scalar(select(func.count()).select_from(AlertEvent))
        ingested = s.scalar(select(func.count()).select_from(Transition))
    assert counts == {"generic:old": 3, "generic:new": 3}
    assert (alerts, ingested) == (6, 2)
    with new_session() as s:
        assert s.scalar(text("SHOW TimeZone")) == "America/Los_Angeles"
        new = s.scalars(select(Incident).where(Incident.fingerprint == "generic:new")).one()
        at = s.scalar(select(Transition.at).where(Transition.incident_id == new.id))
        received = s.scalars(select(AlertEvent.received_at).where(AlertEvent.incident_id == new.id)).all()
    assert new.created_at == new.updated_at == new.last_seen == at == received[0]
    assert abs((new.created_at - utcnow()).total_seconds()) < 60


def test_writers_of_several_processes_race_on_the_same_keys(pg: str) -> None:
    """Two writers (two web processes) with overlapping keys in concurrent batches:
    one open incident per key, every alert counted once."""

    writers = [BatchWriter(lambda _ids: None), BatchWriter(lambda _ids: None)]
    fps = [f"k{i % 7}" for i in range(300)]
    with ThreadPoolExecutor(24) as pool:
        outcomes = list(pool.map(lambda i: writers[i % 2].submit(item(fps[i])), range(len(fps))))
    assert sum(o.status == "processing" for o in outcomes) == 7
    with new_session() as s:
        rows = s.execute(select(Incident.fingerprint, Incident.alert_count)).all()
    assert sorted(rows) == sorted((f"generic:k{k}", sum(1 for fp in fps if fp == f"k{k}")) for k in range(7))


def test_values_postgresql_cannot_hold_are_answered_not_crashed_on(pg: str, monkeypatch: Any) -> None:
    """A NUL (`\\u0000`) is kept as U+FFFD (PostgreSQL's text and jsonb refuse NUL); a number
    that overflows to infinity is a 400 with the number (jsonb refuses Infinity). Both were 500s."""
    from iras.web import create_app

    monkeypatch.setattr(dispatch, "enqueue_stages", lambda *_a, **_k: None)
    client = create_app().test_client()
    nul = b'{"title": "disk\\u0000full", "timestamp": "2026-11-25T10:00:00Z", "service": "db", "x": {"k\\u0000": "v"}}'
    response = client.post("/webhook/alert", data=nul, content_type="application/json")
    assert response.status_code == 202, response.get_json()
    with new_session() as session:
        incident = session.get(Incident, response.get_json()["incident_id"])
        assert incident is not None and incident.title == "disk\ufffdfull"
    huge = b'{"title": "t", "timestamp": "2026-11-25T10:00:00Z", "value": 1e999}'
    response = client.post("/webhook/alert", data=huge, content_type="application/json")
    assert response.status_code == 400 and "1e999" in response.get_json()["reason"]
