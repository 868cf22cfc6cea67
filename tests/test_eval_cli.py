"""`iras eval` through the real pipeline (webhook adapter, Celery worker, SQLite),
with the offline analyst and with Claude against the fake Messages API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from iras.cli import main
from tests.fakes.anthropic_server import FakeAnthropicServer

OWN = Path(__file__).parent / "scenarios_own"


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Path:
    picked = sorted(OWN.glob("*.json"))[:3]
    for path in picked:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "broken.json").write_text(json.dumps({"id": "broken", "source": "nagios"}))
    return tmp_path


def test_eval_replays_through_the_pipeline_and_writes_json(
    scenario_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.json"
    status = main(["eval", str(scenario_dir), "--json", str(out)])
    printed = capsys.readouterr().out
    assert status == 1, "an invalid scenario file makes the run fail"
    assert "INVALID broken.json" in printed and "totals:" in printed
    doc = json.loads(out.read_text())
    assert len(doc["scenarios"]) == 3 and "broken.json" in doc["invalid_files"]
    for row in doc["scenarios"]:
        assert set(row["predicted"]) >= {
            "severity",
            "category",
            "culprit_service",
            "culprit_deployment_sha",
            "remediation_action",
            "evidence",
        }
    assert doc["totals"]["category"] == 1.0, printed


def test_eval_fail_under_exits_non_zero(scenario_dir: Path) -> None:
    (scenario_dir / "broken.json").unlink()
    assert main(["eval", str(scenario_dir), "--fail-under", "0.5"]) == 0
    assert main(["eval", str(scenario_dir), "--fail-under", "101", "--direct"]) == 1


def test_eval_runs_on_claude_against_the_fake_api(
    scenario_dir: Path, tmp_path: Path, fake_anthropic: FakeAnthropicServer
) -> None:
    (scenario_dir / "broken.json").unlink()
    out = tmp_path / "claude.json"
    status = main(["eval", str(scenario_dir), "--analyst", "claude", "--json", str(out)])
    doc = json.loads(out.read_text())
    assert status == 0 and doc["totals"]["analyst"] == "claude"
    assert len(doc["scenarios"]) == 3 and not any(r.get("error") for r in doc["scenarios"])
    assert fake_anthropic.requests, "the analyst really called the (fake) API"
