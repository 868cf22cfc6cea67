"""`iras eval --perturb`: the rewrites keep every scenario valid and answerable, rename
consistently, are deterministic, and the perturbed run is reported beside the original.

The harness itself is checked on the repository's own and Kubernetes scenarios (fast).
`test_perturbed_scores_stay_within_five_points` measures the analyst, not the harness:
on the public corpus, every field must move by at most 5 points when the incidents are
told differently.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from iras.cli import main
from iras.eval import (
    RATE_KEYS,
    evaluate,
    load_scenarios,
    make_direct_runner,
    run_eval,
    scenario_alert_time,
    totals,
    validate_scenario,
)
from iras.eval_perturb import (
    KINDS,
    compare_totals,
    keys_survive,
    paraphrase,
    perturb_scenario,
    perturb_scenarios,
)

HERE = Path(__file__).parent
OWN = [*load_scenarios(HERE / "scenarios_own").scenarios, *load_scenarios(HERE / "scenarios_k8s").scenarios]
PUBLIC = Path(os.environ.get("IRAS_SCENARIOS_DIR", "/work/shared/scenarios"))


def _services(doc: dict[str, Any]) -> set[str]:
    ev = doc["evidence"]
    return {x["service"] for part in ("logs", "metrics", "deployments") for x in ev[part]}


def _token(name: str) -> re.Pattern[str]:
    return re.compile(r"(?<![A-Za-z0-9_])" + re.escape(name) + r"(?![A-Za-z0-9_])")


def datetime_of(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _perturbed(
    seed: int, kinds: tuple[str, ...] = KINDS
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return perturb_scenarios(OWN, seed, scenario_alert_time, kinds)


def test_the_harness_has_scenarios_to_work_on() -> None:
    assert len(OWN) >= 25


@pytest.mark.parametrize("seed", [0, 7])
def test_every_perturbed_scenario_is_valid_and_keeps_its_evidence_keys(seed: int) -> None:
    docs, _ = _perturbed(seed)
    for doc in docs:
        assert validate_scenario(doc, f"{doc['id']}.json") == [], doc["id"]
        assert keys_survive(doc), doc["id"]


def test_renaming_is_consistent_across_alert_logs_metrics_deployments_and_answer() -> None:
    docs, records = _perturbed(3, ("rename",))
    renamed_any = 0
    for original, doc, record in zip(OWN, docs, records, strict=True):
        mapping: dict[str, str] = record["renamed"]
        renamed_any += bool(mapping)
        assert _services(doc) == {mapping.get(s, s) for s in _services(original)}, doc["id"]
        exp, old_exp = doc["expected"], original["expected"]
        assert exp["culprit_service"] == mapping.get(old_exp["culprit_service"], old_exp["culprit_service"])
        assert exp["culprit_deployment_sha"] == old_exp["culprit_deployment_sha"]
        seen = json.dumps([doc["alert"], doc["evidence"], exp])
        for old, new in mapping.items():
            assert not _token(old).search(seen), f"{doc['id']}: {old} left after renaming to {new}"
            assert _token(new).search(seen)
        # A sha still belongs to the same (renamed) service.
        for before, after in zip(
            original["evidence"]["deployments"], doc["evidence"]["deployments"], strict=True
        ):
            assert after["sha"] == before["sha"] and after["service"] == mapping.get(
                before["service"], before["service"]
            )
    assert renamed_any >= len(OWN) - 2


def test_well_known_software_keeps_its_name() -> None:
    docs, records = _perturbed(3, ("rename",))
    for record in records:
        for old in record["renamed"]:
            assert not old.startswith(("kube-", "otel-", "argocd-", "cert-manager", "cluster-autoscaler"))


def test_same_seed_gives_the_same_rewrite_and_another_seed_a_different_one() -> None:
    first, _ = _perturbed(11)
    again, _ = _perturbed(11)
    other, _ = _perturbed(12)
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert sum(a != b for a, b in zip(first, other, strict=True)) >= len(OWN) - 1
    # A scenario's rewrite does not depend on which other scenarios are processed with it.
    alone, _ = perturb_scenario(OWN[0], 11, scenario_alert_time, OWN, KINDS)
    assert alone == first[0]


def test_paraphrase_rewrites_prose_and_leaves_keys_names_and_identifiers() -> None:
    doc = json.loads(json.dumps(OWN[0]))
    keys = doc["expected"]["evidence_keys"]
    doc["evidence"]["logs"][0]["message"] = (
        "failed to reach upstream: connection refused; queue ocr-requests level=error [error] " + keys[0]
    )
    out = paraphrase(doc, random.Random(1), share=1.0)
    msg = out["evidence"]["logs"][0]["message"]
    assert "failed to" not in msg and "upstream" not in msg and "refused" not in msg
    assert "ocr-requests" in msg and "level=error" in msg and "[error]" in msg and msg.endswith(keys[0])
    changed = sum(
        a["message"] != b["message"]
        for s, p in zip(OWN, _perturbed(5, ("paraphrase",))[0], strict=True)
        for a, b in zip(s["evidence"]["logs"], p["evidence"]["logs"], strict=True)
    )
    assert changed >= 50


def test_log_format_carries_the_message_inside_json_or_logfmt_lines() -> None:
    docs, records = _perturbed(2, ("log_format",))
    as_json = as_logfmt = 0
    for original, doc, record in zip(OWN, docs, records, strict=True):
        for before, after in zip(original["evidence"]["logs"], doc["evidence"]["logs"], strict=True):
            style = record["log_formats"][before["service"]]
            if after["message"] == before["message"]:
                continue
            if style == "json":
                parsed = json.loads(after["message"])
                assert parsed["message"] == before["message"] and parsed["level"] == before["level"].lower()
                as_json += 1
            else:
                assert style == "logfmt" and after["message"].startswith(f"time={before['timestamp']} ")
                assert ' msg="' in after["message"]
                as_logfmt += 1
    assert as_json >= 100 and as_logfmt >= 100


def test_noise_lines_are_borrowed_and_labelled_with_services_the_scenario_does_not_have() -> None:
    docs, records = _perturbed(4, ("noise",))
    for original, doc, record in zip(OWN, docs, records, strict=True):
        labels = set(record["noise_services"])
        assert labels and not labels & _services(original), doc["id"]
        added = [x for x in doc["evidence"]["logs"] if x["service"] in labels]
        assert 10 <= len(added) <= 16
        for line in added:
            assert not any(k in line["message"] for k in original["expected"]["evidence_keys"])
            assert original["expected"]["culprit_service"].lower() not in line["message"].lower()


def test_the_innocent_deploy_is_an_unrelated_release_minutes_before_the_alert() -> None:
    docs, records = _perturbed(6, ("noise", "innocent_deploy"))
    for original, doc, record in zip(OWN, docs, records, strict=True):
        deploy = record["innocent_deploy"]
        if len(original["evidence"]["deployments"]) >= 6:
            assert deploy is None
            continue
        assert deploy in doc["evidence"]["deployments"]
        assert deploy["service"] not in _services(original)
        assert deploy["sha"] != original["expected"]["culprit_deployment_sha"]
        before = scenario_alert_time(doc) - datetime_of(deploy["created_at"])
        assert timedelta(minutes=2) <= before <= timedelta(minutes=13), doc["id"]


def test_the_clock_shift_moves_every_time_by_the_same_offset() -> None:
    docs, records = _perturbed(8, ("clock_shift",))
    for original, doc, record in zip(OWN, docs, records, strict=True):
        delta = timedelta(minutes=record["clock_shift_minutes"])
        assert delta
        assert scenario_alert_time(doc) - scenario_alert_time(original) == delta
        for before, after in zip(original["evidence"]["logs"], doc["evidence"]["logs"], strict=True):
            assert datetime_of(after["timestamp"]) - datetime_of(before["timestamp"]) == delta
        for before, after in zip(
            original["evidence"]["deployments"], doc["evidence"]["deployments"], strict=True
        ):
            assert datetime_of(after["created_at"]) - datetime_of(before["created_at"]) == delta


def test_eval_perturb_reports_both_runs_side_by_side_and_in_json(tmp_path: Path) -> None:
    for doc in OWN[:4]:
        (tmp_path / f"{doc['id']}.json").write_text(json.dumps(doc))
    seen_ids: list[str] = []

    def oracle(scenario: dict[str, Any]) -> dict[str, Any]:
        # Answers from the file it is given: full marks on a perturbed file prove its
        # answer key was rewritten along with its evidence.
        seen_ids.append(scenario["id"])
        e = scenario["expected"]
        return {**e, "evidence": list(e["evidence_keys"])}

    out, report = io.StringIO(), tmp_path / "report.json"
    status = run_eval(tmp_path, "offline", report, None, oracle, out=out, perturb=True, seed=3)
    assert status == 0
    text = out.getvalue()
    assert "perturbed (seed 3: rename, paraphrase" in text
    assert re.search(r"culprit_service\s+100\.0%\s+100\.0%\s+\+0\.0", text)
    doc = json.loads(report.read_text())
    assert doc["perturb"]["seed"] == 3 and doc["perturb"]["totals"]["scenarios"] == 4
    assert all(v == 0 for v in doc["perturb"]["diff_points"].values())
    assert len(doc["perturb"]["changes"]) == 4 and len(seen_ids) == 8


def test_the_cli_runs_the_offline_analyst_on_perturbed_scenarios(tmp_path: Path) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    for doc in OWN[:3]:
        (folder / f"{doc['id']}.json").write_text(json.dumps(doc))
    out, only = tmp_path / "r.json", tmp_path / "only.json"
    args = ["eval", str(folder), "--direct", "--perturb"]
    assert main([*args, "--seed", "5", "--json", str(out)]) == 0
    first = json.loads(out.read_text())["perturb"]
    assert main([*args, "--seed", "5", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["perturb"]["scenarios"] == first["scenarios"]
    assert main([*args, "--perturb-kinds", "clock_shift", "--json", str(only)]) == 0
    assert json.loads(only.read_text())["perturb"]["kinds"] == ["clock_shift"]
    with pytest.raises(SystemExit):
        main([*args, "--perturb-kinds", "shuffle"])


@pytest.mark.perturb
@pytest.mark.skipif(not PUBLIC.is_dir(), reason=f"no public scenario corpus at {PUBLIC}")
def test_perturbed_scores_stay_within_five_points() -> None:
    scenarios = [*load_scenarios(PUBLIC).scenarios, *OWN]
    run = make_direct_runner("offline")
    original = totals(evaluate(scenarios, run))
    perturbed_docs, _ = perturb_scenarios(scenarios, 0, scenario_alert_time)
    perturbed = totals(evaluate(perturbed_docs, run))
    diff = compare_totals(original, perturbed, RATE_KEYS)
    moved = {
        k: f"{original[k]:.3f} -> {perturbed[k]:.3f} ({v:+.1f})" for k, v in diff.items() if abs(v) > 5.0
    }
    assert not moved, f"perturbed scores moved by more than 5 points: {moved}"
