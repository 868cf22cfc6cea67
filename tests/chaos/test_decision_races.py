"""Decision races: approve, reject and a second approve sent at the same time
for each incident, while its approval deadline expires under the beat job.

Every decision is one compare-and-set on the incident's status (and plan), so
exactly one of the four contenders wins per incident; it is recorded once (one
transition out of awaiting_approval), the decision on the incident is the
winner's, and every losing request is answered 409, never 200 and never 5xx.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.chaos.conftest import ChaosStack, report, scale

pytestmark = pytest.mark.chaos


def test_approve_reject_timeout_races_decide_once(chaos_stack: Callable[..., ChaosStack]) -> None:
    stack = chaos_stack(env={"REMEDIATION_EXECUTOR": "dry-run"})
    n = scale(500, minimum=50)
    ids = stack.fire([f"race-{i}" for i in range(n)], threads=16)
    stack.wait_for(ids, lambda s: s == "awaiting_approval", 120, "awaiting approval")

    # The deadlines run out from 1 s ago to 2 s from now, while the requests arrive: the beat job
    # (every second) escalates whichever incidents no request has decided yet.
    stack.execute(
        "UPDATE incidents SET approval_deadline = now() + (random() * interval '3 seconds') - interval '1 second' WHERE id = ANY(:ids)",
        ids=ids,
    )
    contenders = [
        (i, verb, by)
        for i in ids
        for verb, by in (("approve", "alice"), ("reject", "bob"), ("approve", "carol"))
    ]
    random.Random(8).shuffle(contenders)

    # The requests are spread over ~5 s: early ones race each other, late ones race
    # (and often lose to) the timeout.
    spread = 5.0
    start = time.monotonic()

    def send(k: int) -> tuple[str, str, int]:
        incident_id, verb, by = contenders[k]
        time.sleep(max(0.0, start + spread * k / len(contenders) - time.monotonic()))
        r = stack.decide(incident_id, verb == "approve", by, reason=f"{by} says {verb}")
        return incident_id, by, r.status_code

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(send, range(len(contenders))))
    stack.wait_for(ids, lambda s: s != "awaiting_approval", 30, "decided")

    codes = Counter(code for _, _, code in answers)
    winners: dict[str, list[str]] = {}
    for incident_id, by, code in answers:
        if code == 200:
            winners.setdefault(incident_id, []).append(by)
    decided = {
        r[0]: (r[1], r[2])
        for r in stack.query(
            "SELECT id, decided_by, decided_via FROM incidents WHERE id = ANY(:ids)", ids=ids
        )
    }
    recorded = stack.transitions_out_of("awaiting_approval")
    by_timeout = sum(1 for by, via in decided.values() if via == "timeout")
    wrong = [
        i
        for i in ids
        if recorded.get(i) != 1
        or len(winners.get(i, [])) > 1
        or (winners.get(i) and decided[i][0] != winners[i][0])
        or (not winners.get(i) and decided[i][1] != "timeout")
    ]
    report(
        "decision-races",
        {
            "incidents": n,
            "requests": len(answers),
            "answered_200": codes.get(200, 0),
            "answered_409": codes.get(409, 0),
            "answered_other": sum(v for k, v in codes.items() if k not in (200, 409)),
            "decided_by_timeout": by_timeout,
            "decisions_recorded_once": sum(1 for i in ids if recorded.get(i) == 1),
            "inconsistent": len(wrong),
        },
    )
    assert set(codes) <= {200, 409}, codes
    assert codes[200] + by_timeout == n
    assert by_timeout > 0, "the deadline never won a race: the test did not race the timeout"
    assert wrong == [], wrong[:5]
