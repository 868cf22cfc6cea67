"""Web process restart while incidents await approval: approval is state in the
database, not in a web process, so a new gunicorn takes the decisions and the
plans run to the post-mortem."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.chaos.conftest import ChaosStack, report, scale

pytestmark = pytest.mark.chaos


def test_approve_after_a_web_restart_completes(chaos_stack: Callable[..., ChaosStack]) -> None:
    stack = chaos_stack(env={"REMEDIATION_EXECUTOR": "dry-run"})
    n = scale(20, minimum=5)
    ids = stack.fire([f"web-restart-{i}" for i in range(n)])
    stack.wait_for(ids, lambda s: s == "awaiting_approval", 60, "awaiting approval")

    stack.web.kill()  # SIGKILL the whole gunicorn process group, no graceful shutdown
    assert stack.web.proc is not None
    stack.web.proc.wait(10)
    stack.web.proc = None
    stack.web.start()

    answers = [stack.decide(i, True, "after-restart").status_code for i in ids]
    waited = stack.wait_for(ids, lambda s: s == "resolved", 90, "resolved")
    decided = stack.query(
        "SELECT count(*) FROM incidents WHERE id = ANY(:ids) AND decided_by = 'after-restart'", ids=ids
    )
    report(
        "web-restart",
        {
            "incidents": n,
            "approved_200": answers.count(200),
            "resolved": n,
            "resolved_after_s": round(waited, 1),
        },
    )
    assert answers == [200] * n
    assert int(decided[0][0]) == n
