"""`iras demo` as a newcomer runs it: the real command starts the service, replays
the bundled incidents through the real webhook with their evidence, and the
console then shows different diagnoses, plans and post-mortems."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from iras.demo import BUNDLED_SCENARIOS
from iras.eval import load_scenarios


def test_the_bundled_scenarios_are_valid_and_varied() -> None:
    loaded = load_scenarios(BUNDLED_SCENARIOS)
    assert loaded.errors == {}
    assert len(loaded.scenarios) >= 6
    assert len({s["expected"]["category"] for s in loaded.scenarios}) >= 6
    assert len({s["source"] for s in loaded.scenarios}) >= 3
    own = Path(__file__).parent / "scenarios_own"
    for path in BUNDLED_SCENARIOS.glob("*.json"):  # the project's own, kept identical
        assert json.loads(path.read_text()) == json.loads((own / path.name).read_text())


def test_iras_demo_replays_the_bundled_incidents_into_the_console(tmp_path: Path) -> None:
    before = set(Path(tempfile.gettempdir()).glob("iras-demo-*"))
    done = subprocess.run(
        [sys.executable, "-m", "iras.cli", "demo", "--port", "0", "--exit"],
        cwd=tmp_path,  # a clean directory: the demo writes nothing where it is started
        capture_output=True,
        text=True,
        timeout=240,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    lines = [line for line in out.splitlines() if re.match(r"^  P[0-3] ", line)]
    assert len(lines) == len(list(BUNDLED_SCENARIOS.glob("*.json"))), out
    diagnoses = {line.split(" | ", 1)[1].split(" -> ")[0] for line in lines}
    assert len(diagnoses) >= 5, diagnoses
    assert sum("-> awaiting_approval: kubectl" in line for line in lines) >= 3, "plans with commands"
    assert re.search(r"^  approved '.*' -> resolved \(post-mortem written\)$", out, re.M)
    assert re.search(r"^  rejected '.*' -> escalated \(post-mortem written\)$", out, re.M)
    assert "evidence: MOCK (IRAS_MOCK_EVIDENCE=true)" in out, "the banner names the mock evidence"
    assert list(tmp_path.iterdir()) == [], "no database or beat files left where it ran"
    assert set(Path(tempfile.gettempdir()).glob("iras-demo-*")) == before, "its temporary database is removed"
