"""`iras eval` through the real pipeline (webhook adapter, Celery worker, SQLite),
with the offline analyst and with Claude against the fake Messages API."""

from __future__ import annotations

import json
import os
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


def test_eval_defaults_to_the_scenarios_bundled_in_the_package(tmp_path: Path) -> None:
    """A fresh clone or a pip install has no ../shared: `iras eval` alone scores the bundled set."""
    from iras.demo import BUNDLED_SCENARIOS

    out = tmp_path / "bundled.json"
    assert main(["eval", "--direct", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert {row["id"] for row in doc["scenarios"]} == {p.stem for p in BUNDLED_SCENARIOS.glob("*.json")}
    assert doc["invalid_files"] == {}


def test_make_eval_defaults_to_the_projects_own_scenarios_and_takes_a_dir() -> None:
    import subprocess

    root = Path(__file__).resolve().parents[1]
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")

    def command(*extra: str) -> str:
        # -n prints the recipe; -o skips the install stamp so nothing is rebuilt.
        # Under `make test` the parent make's MAKEFLAGS/MAKELEVEL would turn on
        # "Entering/Leaving directory" lines: run this make as a top-level one.
        env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}}
        done = subprocess.run(
            [make, "-n", "--no-print-directory", "-o", ".venv/.installed-stamp", "eval", *extra],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout.strip().splitlines()[-1]

    assert command() == ".venv/bin/iras eval tests/scenarios_own --analyst offline"
    assert OWN.is_dir() and any(OWN.glob("*.json")), "the default folder is in the repository"
    assert command("DIR=../shared/scenarios") == ".venv/bin/iras eval ../shared/scenarios --analyst offline"
