"""Group commit for webhook ingestion.

Every web process has one writer thread. A request normalises its payload in
its own thread (bad input never gets this far), hands the result to the writer
and waits. The writer takes whatever requests are waiting (up to `MAX_BATCH`),
writes them in ONE transaction (`iras.ingest.store.commit_batch`), and wakes each
request with its own answer once the commit is done; then it sends the triage
of the incidents the batch opened. A request is therefore answered 202 only once
its rows are committed, and a message is never sent for a row that is not.

A 202 promises a stored alert, not a queued message: the answer does not wait
for the broker (a message lost to an outage is re-sent by the stuck-incident
sweeper).

Failures: a database outage (OperationalError) fails every request of the batch
(each answers 503, nothing was written); any other error retries the batch's
requests one at a time, so one poisonous alert cannot fail its neighbours.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError

from iras.ingest import store
from iras.ingest.store import IngestOutcome, Prepared

log = logging.getLogger(__name__)

MAX_BATCH = int(os.environ.get("IRAS_INGEST_MAX_BATCH", "100"))
# How long a request waits for its batch before answering 503 (the writer is stuck).
WAIT_SECONDS = 30.0
# How long a process at exit waits for its writer to send the triage of what it answered.
DRAIN_AT_EXIT_SECONDS = 5.0


def _is_outage(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and bool(getattr(exc, "connection_invalidated", False))
    )


# Guards `_Pending.taken`/`cancelled`: a request that gives up and the writer taking it
# into a batch decide, under this lock, which of them wins.
_claim_lock = threading.Lock()


class _Pending:
    """One waiting request. `_lock` is held until the answer is set: a plain lock is
    the cheapest wake-up there is (an Event builds a Condition per wait)."""

    __slots__ = ("item", "_lock", "answered", "outcome", "error", "taken", "cancelled")

    def __init__(self, item: Prepared) -> None:
        self.item = item
        self._lock = threading.Lock()
        self._lock.acquire()
        self.answered = False
        self.outcome: IngestOutcome | None = None
        self.error: BaseException | None = None
        self.taken = False  # in a batch the writer is committing
        self.cancelled = False  # given up before the writer took it: never written

    def answer(self, outcome: IngestOutcome | None = None, error: BaseException | None = None) -> None:
        if self.answered:
            return
        self.outcome, self.error, self.answered = outcome, error, True
        self._lock.release()

    def wait(self, timeout: float) -> bool:
        return self._lock.acquire(timeout=timeout)


class BatchWriter:
    """One per web process: batches the waiting requests into one transaction each.
    `on_commit` gets the ids of the incidents each batch opened, after its requests
    are answered (`store.enqueue_triage`: their triage tasks)."""

    def __init__(
        self,
        on_commit: Callable[[Iterable[str]], None] | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.on_commit = on_commit or (lambda ids: store.enqueue_triage(ids))
        self.max_batch = max(1, max_batch)
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        # Batches taken and not finished (their triage not yet sent): `drain`.
        self._in_flight = 0
        self._settled = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="iras-ingest-writer", daemon=True)
        self._thread.start()
        self.batches = 0
        self.items = 0

    def submit(self, item: Prepared, timeout: float = WAIT_SECONDS) -> IngestOutcome:
        """Wait until `item` is committed (or failed); raises the batch's error."""
        pending = _Pending(item)
        self._queue.put(pending)
        if not pending.wait(timeout):
            # The answer must agree with what is stored: a request still queued is
            # withdrawn (the writer skips it) and its 503 means "not written"; one
            # already in a batch waits for that batch's real outcome.
            with _claim_lock:
                if not pending.taken:
                    pending.cancelled = True
            if pending.cancelled or not pending.wait(timeout):
                raise OperationalError(
                    "ingest writer", None, TimeoutError(f"no commit within {timeout:.0f}s")
                )
        if pending.error is not None:
            raise pending.error
        assert pending.outcome is not None
        return pending.outcome

    def _take(self) -> list[_Pending]:
        """The next batch: requests withdrawn after waiting too long are left out."""
        batch: list[_Pending] = []
        while not batch:
            taken = [self._queue.get()]
            while len(taken) < self.max_batch:
                try:
                    taken.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            with _claim_lock:
                for pending in taken:
                    if not pending.cancelled:
                        pending.taken = True
                        batch.append(pending)
        return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            with self._settled:
                self._in_flight += 1
            try:
                self._commit(batch)
            except BaseException as exc:  # noqa: BLE001 - the writer must never die
                log.exception("ingest writer failed")
                for p in batch:
                    p.answer(error=exc)
            finally:
                with self._settled:
                    self._in_flight -= 1
                    self._settled.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until the batches of the requests answered so far have sent their
        triage (a request is answered first): at exit, so a graceful restart sends
        what it answered for, and in tests. False on timeout."""
        with self._settled:
            return self._settled.wait_for(lambda: not self._in_flight and self._queue.empty(), timeout)

    def _commit(self, batch: list[_Pending]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            outcomes, opened = store.commit_batch([p.item for p in batch])
        except Exception as exc:  # noqa: BLE001
            if _is_outage(exc) or len(batch) == 1:
                for p in batch:
                    p.answer(error=exc)
                return
            # Someone in the batch is poisonous: write each alone.
            log.warning("ingest batch of %d failed (%s); writing its requests one at a time", len(batch), exc)
            for p in batch:
                self._commit([p])
            return
        # Committed: answer first, then send the triage; a request answered sooner
        # frees its sender sooner, and the broker's latency stays out of the answer.
        for p, outcome in zip(batch, outcomes, strict=True):
            p.answer(outcome=outcome)
        self.on_commit(opened)


_writer_lock = threading.Lock()
_writer: tuple[int, BatchWriter] | None = None


def get_writer() -> BatchWriter:
    """This process's writer; a new one after a fork."""
    global _writer
    pid = os.getpid()
    held = _writer
    if held is not None and held[0] == pid:
        return held[1]
    with _writer_lock:
        if _writer is None or _writer[0] != pid:
            writer = BatchWriter()
            atexit.register(writer.drain, DRAIN_AT_EXIT_SECONDS)
            _writer = (pid, writer)
        return _writer[1]


def submit(payload: Any, source: str | None = None) -> IngestOutcome:
    """Normalise in this thread, then wait for the batch commit. Raises PayloadError
    on bad input."""
    prepared = store.prepare(payload, source)
    if isinstance(prepared, IngestOutcome):
        return prepared
    return get_writer().submit(prepared)
