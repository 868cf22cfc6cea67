"""Isolation: 50 incidents for 50 different services, all in flight at once
(alerts together, analysis interleaved on the same workers, decisions sent
together), and nothing of one shows up in another: not its evidence, not its
diagnosis or plan, not its decision.

The context tools run without an evidence file here, so each service gets its
own evidence (log lines, deployment sha) derived from its name, and a leak is
visible as another service's name inside an incident.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.chaos.conftest import ChaosStack, report, scale

pytestmark = pytest.mark.chaos


def _token(i: int) -> str:
    return f"isosvc{i:03d}x"


def test_concurrent_incidents_of_distinct_services_do_not_mix(chaos_stack: Callable[..., ChaosStack]) -> None:
    stack = chaos_stack(env={"MOCK_EVIDENCE_FILE": "", "REMEDIATION_EXECUTOR": "dry-run"})
    n = scale(50, minimum=10)
    services = [_token(i) for i in range(n)]
    ids = stack.fire([f"iso-{i}" for i in range(n)], services=services, threads=n)
    stack.wait_for(ids, lambda s: s == "awaiting_approval", 90, "awaiting approval")

    def decide(i: int) -> int:
        approve = i % 2 == 0
        return stack.decide(
            ids[i], approve, f"approver-{services[i]}", reason=f"reason-{services[i]}"
        ).status_code

    with ThreadPoolExecutor(n) as pool:
        codes = list(pool.map(decide, range(n)))
    assert codes == [200] * n
    stack.wait_for(ids, lambda s: s in ("resolved", "escalated"), 90, "closed")

    leaks: list[str] = []
    token = re.compile(r"isosvc\d{3}x")
    for i, incident_id in enumerate(ids):
        doc = stack.http.get(f"{stack.base}/incidents/{incident_id}", timeout=10).json()
        text = json.dumps(doc)
        others = set(token.findall(text)) - {services[i]}
        if others:
            leaks.append(f"{services[i]}: mentions {sorted(others)[:3]}")
        stages = {s["stage"]: s["result"] for s in doc["stages"]}
        context = stages["context"]
        if {line["service"] for line in context["logs"]} != {services[i]}:
            leaks.append(
                f"{services[i]}: evidence logs from {sorted({line['service'] for line in context['logs']})}"
            )
        if {d["service"] for d in context["deployments"]} != {services[i]}:
            leaks.append(f"{services[i]}: deployments of other services")
        if stages["rca"]["culprit_service"] != services[i]:
            leaks.append(f"{services[i]}: culprit {stages['rca']['culprit_service']}")
        # The chaos analyst's plan steps run the recorder with the incident's own id.
        if not all(incident_id in step["command"] for step in doc["plan"]["steps"]):
            leaks.append(f"{services[i]}: plan commands for another incident")
        foreign_ids = [other for other in ids if other != incident_id and other in text]
        if foreign_ids:
            leaks.append(f"{services[i]}: mentions incident {foreign_ids[0]}")
        decision = doc["decision"] or {}
        if (
            decision.get("by") != f"approver-{services[i]}"
            or decision.get("reason") != f"reason-{services[i]}"
        ):
            leaks.append(f"{services[i]}: decision {decision}")
        expected = "resolved" if i % 2 == 0 else "escalated"
        if doc["status"] != expected or (doc["postmortem"] or {}).get("outcome") != expected:
            leaks.append(
                f"{services[i]}: {doc['status']} / post-mortem {(doc['postmortem'] or {}).get('outcome')}"
            )
    report("isolation", {"incidents": n, "services": n, "leaks": len(leaks)})
    assert leaks == [], leaks[:10]
