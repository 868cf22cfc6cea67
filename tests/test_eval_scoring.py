"""`iras eval`: scoring rules, schema-error reporting and the JSON output shape."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from iras.eval import (
    culprit_matches,
    evidence_recall,
    load_scenarios,
    run_eval,
    score,
    sha_matches,
    totals,
    validate_scenario,
)

SHA = "0123456789abcdef0123456789abcdef01234567"


def _scenario(sid: str = "basket-oom", **expected: Any) -> dict[str, Any]:
    logs = [
        {
            "timestamp": f"2025-06-01T12:{i:02d}:00Z",
            "service": "basket-api",
            "level": "ERROR" if i % 2 else "INFO",
            "message": f"java.lang.OutOfMemoryError: Java heap space (request {i})",
        }
        for i in range(20)
    ]
    metrics = [
        {
            "name": f"m{i}",
            "service": "basket-api",
            "query": "up",
            "current": 1.0,
            "baseline_7d": 1.0,
            "unit": "ratio",
        }
        for i in range(4)
    ]
    exp = {
        "severity": "P2",
        "category": "resource_exhaustion",
        "culprit_service": "basket-api",
        "culprit_deployment_sha": None,
        "remediation_action": "increase_resource_limit",
        "evidence_keys": ["OutOfMemoryError", "Java heap space"],
    }
    exp.update(expected)
    return {
        "id": sid,
        "summary": "basket ran out of heap",
        "source": "generic",
        "alert": {"title": "basket-api errors", "timestamp": "2025-06-01T12:20:00Z", "service": "basket-api"},
        "evidence": {"logs": logs, "metrics": metrics, "deployments": []},
        "expected": exp,
    }


def test_a_perfect_prediction_scores_full_marks() -> None:
    exp = _scenario()["expected"]
    pred = {
        "severity": "P2",
        "category": "resource_exhaustion",
        "culprit_service": "Basket-API",
        "culprit_deployment_sha": None,
        "remediation_action": "increase_resource_limit",
        "evidence": ["java.lang.OutOfMemoryError: Java heap space (request 3)"],
    }
    s = score(exp, pred)
    assert all(s[k] for k in ("severity_exact", "category", "culprit_service", "culprit_deployment"))
    assert s["evidence_recall"] == 1.0
    assert s["false_alarm_not_remediated"] is None


def test_severity_within_one_and_partial_recall() -> None:
    exp = _scenario()["expected"]
    s = score(exp, {"severity": "P1", "evidence": ["OutOfMemoryError somewhere"], "remediation_action": None})
    assert s["severity_exact"] is False and s["severity_within_one"] is True
    assert s["evidence_recall"] == 0.5
    assert s["remediation_action"] is False
    assert score(exp, {"severity": "P0"})["severity_within_one"] is False


def test_a_remediated_false_alarm_is_counted() -> None:
    exp = _scenario(category="false_alarm", severity="P3", remediation_action="none")["expected"]
    bad = score(exp, {"severity": "P3", "category": "false_alarm", "remediation_action": "restart_service"})
    good = score(exp, {"severity": "P3", "category": "false_alarm", "remediation_action": "none"})
    assert bad["false_alarm_not_remediated"] is False and good["false_alarm_not_remediated"] is True
    rows = [{"scores": bad}, {"scores": good}]
    t = totals(rows)
    assert t["false_alarms"] == 2 and t["false_alarms_remediated"] == 1


def test_sha_matching_accepts_short_prefixes_only_from_seven_characters() -> None:
    assert sha_matches(None, None)
    assert sha_matches(SHA[:7], SHA)
    assert not sha_matches(SHA[:6], SHA)
    assert not sha_matches(SHA, None)
    assert evidence_recall([], []) == 1.0


def test_invalid_files_are_reported_per_file_and_valid_ones_still_run(tmp_path: Path) -> None:
    good = _scenario("basket-oom")
    (tmp_path / "basket-oom.json").write_text(json.dumps(good))
    broken = _scenario("basket-broken", category="meltdown")
    broken["typo_key"] = 1
    (tmp_path / "basket-broken.json").write_text(json.dumps(broken))
    (tmp_path / "not-json.json").write_text("{nope")
    loaded = load_scenarios(tmp_path)
    assert [s["id"] for s in loaded.scenarios] == ["basket-oom"]
    assert set(loaded.errors) == {"basket-broken.json", "not-json.json"}
    assert any("unexpected keys ['typo_key']" in e for e in loaded.errors["basket-broken.json"])
    assert any("cannot parse JSON" in e for e in loaded.errors["not-json.json"])

    out = io.StringIO()
    report = tmp_path / "report.json"

    def runner(scenario: dict[str, Any]) -> dict[str, Any]:
        return {
            "severity": "P2",
            "category": "resource_exhaustion",
            "culprit_service": "basket-api",
            "remediation_action": "increase_resource_limit",
            "evidence": ["OutOfMemoryError: Java heap space"],
        }

    status = run_eval(tmp_path, "offline", report, None, runner, out=out)
    assert status == 1  # invalid files make the run fail, loudly
    text = out.getvalue()
    assert "INVALID basket-broken.json" in text and "expected.category" in text
    doc = json.loads(report.read_text())
    assert set(doc) >= {"totals", "scenarios"}
    (row,) = doc["scenarios"]
    assert row["id"] == "basket-oom"
    assert set(row["predicted"]) == {
        "severity",
        "category",
        "culprit_service",
        "culprit_deployment_sha",
        "remediation_action",
        "evidence",
        "confidence",
    }
    assert row["scores"]["category"] is True
    assert doc["totals"]["invalid_files"] == 2


def test_fail_under_and_runner_errors(tmp_path: Path) -> None:
    (tmp_path / "basket-oom.json").write_text(json.dumps(_scenario()))

    def crashing(scenario: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("analyst exploded")

    out = io.StringIO()
    assert run_eval(tmp_path, "offline", None, None, crashing, out=out) == 1
    assert "analyst exploded" in out.getvalue()

    def perfect(scenario: dict[str, Any]) -> dict[str, Any]:
        e = scenario["expected"]
        return {**e, "evidence": list(e["evidence_keys"])}

    assert run_eval(tmp_path, "offline", None, 0.99, perfect, out=io.StringIO()) == 0
    half = lambda s: {"severity": "P2"}  # noqa: E731
    assert run_eval(tmp_path, "offline", None, 50, half, out=io.StringIO()) == 1


def test_a_culprit_is_right_when_it_names_the_component_or_an_alias_in_any_case() -> None:
    exp = _scenario(
        culprit_service="billing-vendor", culprit_service_aliases=["api.billvend.io", "BillVend"]
    )["expected"]
    for named in ("billing-vendor", "Billing-Vendor", " api.billvend.io ", "API.BILLVEND.IO", "billvend"):
        assert culprit_matches(named, exp), named
        assert score(exp, {"culprit_service": named})["culprit_service"] is True
    for named in ("billing", "billvend.io", "basket-api", "", None):
        assert not culprit_matches(named, exp), named
    # Without aliases only the culprit itself counts.
    assert culprit_matches("BASKET-API", _scenario()["expected"])
    assert not culprit_matches("api.billvend.io", _scenario()["expected"])


def test_a_culprit_named_nowhere_in_the_alert_or_evidence_is_rejected() -> None:
    hidden = _scenario(culprit_service="ledger-db")
    assert any(
        "neither the culprit nor an alias appears" in p for p in validate_scenario(hidden, "basket-oom.json")
    )
    # An alias the evidence uses makes the culprit nameable; the match ignores case.
    aliased = _scenario(culprit_service="ledger-db", culprit_service_aliases=["BASKET-API"])
    assert validate_scenario(aliased, "basket-oom.json") == []
    in_alert = _scenario(culprit_service="edge-proxy")
    in_alert["alert"]["title"] = "basket-api errors behind Edge-Proxy"
    assert validate_scenario(in_alert, "basket-oom.json") == []
    # The expected block itself does not count as evidence.
    assert validate_scenario(_scenario(culprit_service="ledger-db", culprit_service_aliases=["ledger"]), "x")


def test_aliases_must_be_a_short_list_of_names() -> None:
    for bad in ([], "basket-api", ["basket-api", ""], ["a", "b", "c", "d", "e"]):
        doc = _scenario(culprit_service_aliases=bad)
        assert any("culprit_service_aliases" in p for p in validate_scenario(doc, "basket-oom.json")), bad


def _row(culprit: bool, action: bool, confidence: float | None) -> dict[str, Any]:
    scores = score(_scenario()["expected"], {})
    scores.update(culprit_service=culprit, remediation_action=action)
    return {"predicted": {"confidence": confidence}, "scores": scores}


def test_confident_answers_count_only_at_or_above_the_gate_and_wrong_means_culprit_or_action() -> None:
    rows = [
        _row(True, True, 0.9),  # confident and right
        _row(False, True, 0.7),  # at the gate, wrong culprit
        _row(True, False, 0.95),  # confident, wrong action
        _row(False, False, 0.69),  # below the gate: an escalation, not a confident answer
        _row(False, False, None),  # no confidence reported
    ]
    t = totals(rows)
    assert t["confident_answers"] == 3
    assert t["confident_wrong"] == 2
    assert t["confident_wrong_rate"] == round(2 / 3, 4)
    quiet = totals([_row(False, False, 0.2)])
    assert quiet["confident_answers"] == 0 and quiet["confident_wrong_rate"] == 0.0


def test_the_json_report_carries_the_confidence_and_the_confident_wrong_count(tmp_path: Path) -> None:
    (tmp_path / "basket-oom.json").write_text(json.dumps(_scenario()))
    report = tmp_path / "out.json"

    def sure_but_wrong(scenario: dict[str, Any]) -> dict[str, Any]:
        return {
            "culprit_service": "checkout-api",
            "remediation_action": "restart_service",
            "confidence": 0.82,
        }

    out = io.StringIO()
    run_eval(tmp_path, "offline", report, None, sure_but_wrong, out=out)
    doc = json.loads(report.read_text())
    assert doc["scenarios"][0]["predicted"]["confidence"] == 0.82
    assert doc["totals"]["confident_answers"] == 1 and doc["totals"]["confident_wrong"] == 1
    assert "confident_wrong=1/1" in out.getvalue()
