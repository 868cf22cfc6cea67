"""Ingestion (iras/ingest/store.py) and the webhook's group commit in front of it
(iras/ingest/batch.py): one transaction per batch, dedup inside a batch, a
request answered only after its own commit, a failed batch answering 503 for all
of its requests and writing nothing, a poisonous alert failing alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from iras import dispatch
from iras.db import new_session
from iras.ingest import batch as ingest_batch
from iras.ingest import store
from iras.ingest.batch import BatchWriter
from iras.ingest.store import IngestOutcome, Prepared, prepare, write_batch
from iras.models import AlertEvent, DeadLetter, Incident, Transition
from iras.schemas import NormalizedAlert


def generic(fp: str, status: str = "firing", title: str = "Disk full") -> dict[str, Any]:
    return {
        "title": title,
        "timestamp": "2026-11-25T10:00:00Z",
        "service": "db",
        "fingerprint": fp,
        "status": status,
    }


def prepared(fp: str, status: str = "firing") -> Prepared:
    item = prepare(generic(fp, status), "generic")
    assert isinstance(item, Prepared)
    return item


def counts() -> tuple[int, int, int]:
    with new_session() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(m)) or 0
            for m in (Incident, AlertEvent, Transition)
        )


class Recorder:
    """A writer's `on_commit`: records the incidents whose triage it would send."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, incident_ids: Any) -> None:
        self.sent.extend(incident_ids)


@pytest.fixture(autouse=True)
def no_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stage messages are dropped: a session-wide embedded worker (started by another
    module) must not work on these tests' incidents while the next test swaps the
    database under it."""
    monkeypatch.setattr(dispatch, "enqueue_stage", lambda *_: None)
    monkeypatch.setattr(dispatch, "enqueue_stages", lambda *_: None)


@pytest.fixture
def writer(iras_env: str) -> Iterator[BatchWriter]:
    yield BatchWriter(Recorder())


def test_duplicates_inside_one_batch_open_one_incident(iras_env: str) -> None:
    items = [prepared("a"), prepared("b"), prepared("a"), prepared("a")]
    with new_session() as session:
        outcomes, opened = write_batch(session, items)
        session.commit()
    assert [o.status for o in outcomes] == ["processing", "processing", "deduplicated", "deduplicated"]
    assert outcomes[0].incident_id == outcomes[2].incident_id == outcomes[3].incident_id
    assert opened == [outcomes[0].incident_id, outcomes[1].incident_id]
    with new_session() as session:
        rows = dict(session.execute(select(Incident.fingerprint, Incident.alert_count)).all())
    assert rows == {"generic:a": 3, "generic:b": 1}
    assert counts() == (2, 4, 2)  # 2 incidents, 4 alert events, 2 "ingested" transitions


def test_a_batch_joins_incidents_opened_by_an_earlier_batch(iras_env: str) -> None:
    with new_session() as session:
        write_batch(session, [prepared("a")])
        session.commit()
    with new_session() as session:
        outcomes, opened = write_batch(session, [prepared("a"), prepared("c")])
        session.commit()
    assert [o.status for o in outcomes] == ["deduplicated", "processing"]
    assert opened == [outcomes[1].incident_id]


def test_a_resolution_in_the_same_batch_sees_the_alerts_before_it(iras_env: str, monkeypatch: Any) -> None:
    enqueued: list[tuple[str, str]] = []
    monkeypatch.setattr(dispatch, "enqueue_stage", lambda iid, s: enqueued.append((iid, s.value)))
    items = [prepared("r"), prepared("r", "resolved"), prepared("gone", "resolved")]
    with new_session() as session:
        outcomes, _ = write_batch(session, items)
        session.commit()
    assert [o.status for o in outcomes] == ["processing", "resolved_noted", "no_open_incident"]
    iid = outcomes[0].incident_id
    with new_session() as session:
        incident = session.get(Incident, iid)
        assert incident is not None
        assert (incident.status, incident.outcome, incident.alert_count) == ("closing", "auto_resolved", 2)
    assert (iid, "closing") in enqueued  # after the commit, by the resolution path


def test_concurrent_requests_share_transactions_and_each_gets_its_own_answer(writer: BatchWriter) -> None:
    fps = [f"k{i % 5}" for i in range(40)]
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda fp: writer.submit(prepared(fp)), fps))
    assert sum(o.status == "processing" for o in outcomes) == 5
    by_fp: dict[str, set[str | None]] = {}
    for fp, o in zip(fps, outcomes, strict=True):
        by_fp.setdefault(fp, set()).add(o.incident_id)
    assert all(len(ids) == 1 for ids in by_fp.values())
    assert writer.items == 40 and writer.batches <= 40
    assert writer.drain(10)  # requests are answered before their batch sends their triage
    assert sorted(writer.on_commit.sent) == sorted(  # type: ignore[attr-defined]
        o.incident_id for o in outcomes if o.status == "processing"
    )
    with new_session() as session:
        assert sorted(session.scalars(select(Incident.alert_count))) == [8] * 5


def test_a_request_is_answered_only_after_its_commit(writer: BatchWriter, monkeypatch: Any) -> None:
    release = threading.Event()
    real = store.commit_batch

    def slow_commit(items: list[Prepared]) -> Any:
        release.wait(10)
        return real(items)

    monkeypatch.setattr(store, "commit_batch", slow_commit)
    answer: list[IngestOutcome] = []
    thread = threading.Thread(target=lambda: answer.append(writer.submit(prepared("wait"))))
    thread.start()
    time.sleep(0.2)
    assert not answer and counts() == (0, 0, 0)
    release.set()
    thread.join(10)
    assert answer and answer[0].status == "processing"
    with new_session() as session:
        assert session.get(Incident, answer[0].incident_id) is not None


def test_a_request_is_answered_before_its_batch_sends_the_triage_and_drain_waits_for_it(
    iras_env: str,
) -> None:
    """The 202 follows the commit, not the send (a slow broker does not hold the
    answer); `drain` (run at exit) waits for the send."""
    release = threading.Event()

    class SlowBroker(Recorder):
        def __call__(self, incident_ids: Any) -> None:
            release.wait(10)
            super().__call__(incident_ids)

    recorder = SlowBroker()
    writer = BatchWriter(recorder)
    outcome = writer.submit(prepared("slow-broker"), timeout=5)  # answered while the send waits
    assert outcome.status == "processing"
    with new_session() as session:
        assert session.get(Incident, outcome.incident_id) is not None
    assert recorder.sent == []
    assert writer.drain(0.2) is False
    release.set()
    assert writer.drain(10) is True
    assert recorder.sent == [outcome.incident_id]


def test_a_failed_batch_commit_answers_503_for_all_and_writes_nothing(
    client: FlaskClient, monkeypatch: Any
) -> None:
    real_commit = store.commit_batch
    gate = threading.Barrier(2, timeout=5)
    batches: list[int] = []

    def failing(items: list[Prepared]) -> Any:
        from iras.db import new_session

        batches.append(len(items))
        if len(batches) == 1:
            gate.wait()  # hold the first batch until the second request is queued behind it
            time.sleep(0.2)
        with new_session() as session:
            write_batch(session, items)  # rows written, then the database goes away
            session.rollback()
        raise OperationalError("COMMIT", None, ConnectionError("server closed the connection"))

    monkeypatch.setattr(store, "commit_batch", failing)
    ingest_batch._writer = None  # a writer of this test's own

    def post(fp: str) -> tuple[int, dict[str, Any]]:
        r = client.post("/webhook/generic", json=generic(fp))
        return r.status_code, r.get_json()

    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(post, "first")
        while not batches:
            time.sleep(0.01)
        rest = [pool.submit(post, f"x{i}") for i in range(5)]
        time.sleep(0.1)
        gate.wait()
        answers = [first.result(), *(f.result() for f in rest)]
    assert all(status == 503 for status, _ in answers), answers
    assert all(doc["reason"] == "database unavailable, retry later" for _, doc in answers)
    assert max(batches) > 1, "the five requests queued behind the first one form one batch"
    assert counts() == (0, 0, 0)
    monkeypatch.setattr(store, "commit_batch", real_commit)
    ingest_batch._writer = None
    assert client.post("/webhook/generic", json=generic("after")).status_code == 202


def test_a_poisonous_alert_fails_alone(writer: BatchWriter, monkeypatch: Any) -> None:
    real = store.write_batch

    def picky(session: Any, items: list[Prepared]) -> Any:
        if any(it.key == "generic:poison" for it in items):
            raise ValueError("cannot store this one")
        return real(session, items)

    monkeypatch.setattr(store, "write_batch", picky)
    results: dict[str, Any] = {}

    def submit(fp: str) -> None:
        try:
            results[fp] = writer.submit(prepared(fp))
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            results[fp] = exc

    threads = [threading.Thread(target=submit, args=(fp,)) for fp in ("ok1", "poison", "ok2", "ok3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert isinstance(results["poison"], ValueError), results
    assert all(getattr(results[fp], "status", None) == "processing" for fp in ("ok1", "ok2", "ok3")), results
    assert counts()[0] == 3


def test_the_webhook_answers_and_counts_each_request_once(client: FlaskClient) -> None:
    from iras import metrics

    def counts() -> tuple[float, ...]:
        """Webhook requests by source, then HTTP requests by route."""
        return tuple(
            series._value.get()  # type: ignore[attr-defined]
            for series in (
                metrics.WEBHOOK_REQUESTS.labels("generic", "202"),
                metrics.WEBHOOK_REQUESTS.labels("auto", "202"),
                metrics.HTTP_REQUESTS.labels("/webhook/<source>", "POST", "202"),
                metrics.HTTP_REQUESTS.labels("/webhook/alert", "POST", "202"),
            )
        )

    before = counts()
    r = client.post("/webhook/generic", json=generic("fast"))
    assert r.status_code == 202 and r.mimetype == "application/json"
    assert r.get_json()["status"] == "processing"
    again = client.post("/webhook/generic", json=generic("fast")).get_json()
    assert again == {
        "incident_id": r.get_json()["incident_id"],
        "status": "deduplicated",
        "alerts_received": 1,
    }
    assert client.post("/webhook/alert", json=generic("fast-auto")).status_code == 202
    # Each request counted once, under its own route and source.
    assert [b - a for a, b in zip(before, counts(), strict=True)] == [2, 1, 2, 1]


def test_each_alert_is_stored_as_its_model_without_the_body(iras_env: str) -> None:
    body = generic("doc") | {"labels": {"team": "paiements-é", "zone": "東京"}}
    item = prepare(body, "generic")
    assert isinstance(item, Prepared)
    with new_session() as session:
        write_batch(session, [item])
        session.commit()
    with new_session() as session:
        doc = session.scalars(select(AlertEvent.alert)).one()
    assert isinstance(doc, dict)  # a JSON object, not a JSON string holding one
    assert "raw" not in doc
    assert NormalizedAlert.model_validate(doc) == item.alerts[0].model_copy(update={"raw": {}})


def test_a_rejected_payload_takes_one_rate_limit_token(client: FlaskClient, monkeypatch: Any) -> None:
    """The webhook asks the limiter once, then writes the 400 and its dead letter."""
    from iras.web import ingest_guard

    asked: list[str] = []
    real = ingest_guard.MemoryLimiter.acquire

    def spy(self: Any, key: str, rate: float, burst: int) -> float:
        asked.append(key)
        return real(self, key, rate, burst)

    monkeypatch.setattr(ingest_guard.MemoryLimiter, "acquire", spy)
    bad = {"title": "x", "timestamp": "not a time", "service": "db"}
    r = client.post("/webhook/generic", json=bad)
    assert r.status_code == 400 and r.get_json()["field"]
    assert asked == ["generic"]
    with new_session() as session:
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 1


def test_concurrent_requests_over_the_rate_limit_are_refused_with_429(
    iras_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent requests of one source share its bucket: the ones left without a
    token are answered 429 with Retry-After, and nothing of theirs is written."""
    from iras.config import reset_settings
    from iras.web import create_app

    monkeypatch.setenv("WEBHOOK_RATE_LIMIT_PER_SECOND", "0.001")
    monkeypatch.setenv("WEBHOOK_RATE_LIMIT_BURST", "4")
    reset_settings()
    client = create_app().test_client()
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda i: client.post("/webhook/generic", json=generic(f"rl{i}")), range(10)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [202] * 4 + [429] * 6
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.get_json()["error"] == "too_many_requests" and refused.headers["Retry-After"]
    assert counts()[0] == 4
    reset_settings()


def test_one_request_ingested_alone_sends_the_triage_of_the_incident_it_opened(
    iras_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`store.ingest` (the dead-letter replay, `iras alerts replay`) writes through the
    same `commit_batch` as the webhook, then sends the triage after the commit."""
    sent: list[tuple[list[str], str]] = []
    monkeypatch.setattr(dispatch, "enqueue_stages", lambda ids, s: sent.append((list(ids), s.value)))
    first = store.ingest(generic("alone"), "generic")
    again = store.ingest(generic("alone"), "generic")
    assert (first.status, again.status) == ("processing", "deduplicated")
    assert again.incident_id == first.incident_id
    assert sent == [([first.incident_id], "triaging")]
    assert counts() == (1, 2, 1)


def test_a_request_that_times_out_in_the_queue_is_never_written(
    writer: BatchWriter, monkeypatch: Any
) -> None:
    """Its 503 must mean "not stored": the sender retries, and the retry must not be
    a second copy of the alert (issue 19)."""
    release = threading.Event()
    real = store.commit_batch

    def stuck_commit(items: list[Prepared]) -> Any:
        release.wait(10)
        return real(items)

    monkeypatch.setattr(store, "commit_batch", stuck_commit)
    first: list[IngestOutcome] = []
    blocker = threading.Thread(target=lambda: first.append(writer.submit(prepared("first"), timeout=10)))
    blocker.start()
    time.sleep(0.2)  # the writer is now stuck committing "first"
    with pytest.raises(OperationalError):
        writer.submit(prepared("queued"), timeout=0.3)  # still queued: withdrawn
    release.set()
    blocker.join(10)
    assert first and first[0].status == "processing"
    assert writer.drain(5)
    with new_session() as session:
        fingerprints = set(session.scalars(select(AlertEvent.fingerprint)))
    assert "queued" not in fingerprints and len(fingerprints) == 1


def test_a_request_whose_batch_is_committing_waits_for_the_real_outcome(
    writer: BatchWriter, monkeypatch: Any
) -> None:
    """Past its wait, a request already in a batch answers what that batch did."""
    real = store.commit_batch

    def slow_commit(items: list[Prepared]) -> Any:
        time.sleep(0.6)
        return real(items)

    monkeypatch.setattr(store, "commit_batch", slow_commit)
    outcome = writer.submit(prepared("slow"), timeout=0.4)
    assert outcome.status == "processing"
    with new_session() as session:
        assert session.get(Incident, outcome.incident_id) is not None
