"""The pipeline's statements find their rows through indexes on a database with a
history, as prepared statements run them (iras/prepared.py: a generic plan, the
parameters declared with the types the statement is prepared with).

A statement that cannot use an index (a missing index, a parameter declared with a
type that forces a cast on the column) costs nothing on an empty database and a
sequential scan of the whole table on every call once there is a history: the
pipeline gets slower as it is used, and no other test sees it. Here one incident
goes from alert to post-mortem in process on a database of 3,000 past incidents with
current statistics and is then read through the API and the console; every statement
sent is captured, and each one's generic plan is read with EXPLAIN."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text

from bench._stack import seed_history
from iras.prepared import prepare_sql, prepared_form

pytestmark = pytest.mark.integration

HISTORY = 3000
# Tables that grow with every incident: a sequential scan of one is a bug. (api_tokens,
# dead_letters and alembic_version stay small or are off the pipeline's path.)
GROWING = ("incidents", "alert_events", "stage_results", "transitions", "step_runs", "postmortems")
SCENARIO = json.loads(
    (Path(__file__).parents[1] / "data" / "checkout-guest-npe-after-release.json").read_text()
)


class Captured:
    """Every statement the application's engine sends, as `PREPARE` would declare it."""

    def __init__(self) -> None:
        self.prepares: dict[str, tuple[str, int]] = {}  # name -> (PREPARE text, parameter count)

    def __call__(
        self, _conn: Any, _cursor: Any, statement: str, parameters: Any, context: Any, _many: bool
    ) -> None:
        compiled = getattr(context, "compiled", None)
        if compiled is None or statement is not compiled.string or not isinstance(parameters, dict):
            return  # not a statement iras.prepared would prepare (an expanded IN list, a batch)
        form = prepared_form(statement)
        if form.kind_ok and form.params:
            self.prepares[form.name] = (prepare_sql(form, context), len(form.params))


@pytest.fixture
def captured(pg_database: str) -> Iterator[Captured]:
    from iras.analysts import set_analyst
    from iras.db import get_engine
    from iras.integrations import mock

    admin = create_engine(pg_database)
    seed_history(admin, HISTORY)  # with current statistics (ANALYZE)
    admin.dispose()
    seen = Captured()
    engine = get_engine()
    event.listen(engine, "before_cursor_execute", seen)
    yield seen
    event.remove(engine, "before_cursor_execute", seen)
    set_analyst(None)  # set by the test: leave none behind for the next one
    mock.set_fixture(None)


def one_incident_end_to_end(monkeypatch: pytest.MonkeyPatch) -> str:
    """Ingest, the four analysis stages, the decision, the remediation and its
    post-mortem, each through the code the web process and the workers run."""
    from iras import dispatch
    from iras.analysts import set_analyst
    from iras.config import reset_settings
    from iras.db import read_session, session_scope
    from iras.ingest.store import commit_batch, prepare
    from iras.integrations import mock
    from iras.models import Incident
    from iras.services import decide
    from tests.support.analysts import ScriptedAnalyst, restart_plan

    monkeypatch.setenv("REMEDIATION_EXECUTOR", "dry-run")
    monkeypatch.setenv("IRAS_MOCK_EVIDENCE", "true")  # the scenario's evidence, through the mock sources
    reset_settings()
    from iras.tasks import analysis, postmortem, remediation

    # Each task is run here, in turn, instead of being sent.
    monkeypatch.setattr(dispatch, "enqueue_stage", lambda *_: None)
    monkeypatch.setattr(dispatch, "enqueue_notify", lambda *_: None)
    # Three steps: the second and third claims carry the previous step's outcome.
    set_analyst(ScriptedAnalyst(confidence=0.9, plan=restart_plan(3)))
    mock.set_fixture(SCENARIO["evidence"])
    item = prepare({**SCENARIO["alert"], "fingerprint": uuid.uuid4().hex}, None)
    (outcome,), _ = commit_batch([item])
    iid = outcome.incident_id
    for task in (analysis.run_triage, analysis.gather_context, analysis.run_rca, analysis.run_plan):
        task.apply(args=[iid])
    with read_session() as session:
        plan_id = session.get(Incident, iid).plan_id  # type: ignore[union-attr]
        decide(session, iid, approve=True, actor="alice", via="api", reason="go", plan_id=plan_id)
    remediation.execute_plan.apply(args=[iid])
    postmortem.write_postmortem.apply(args=[iid])
    with session_scope() as session:
        assert session.get(Incident, iid).status == "resolved"  # type: ignore[union-attr]
    return iid


def sequential_scans(url: str, prepares: dict[str, tuple[str, int]]) -> dict[str, list[str]]:
    """For each statement, the growing tables its generic plan reads sequentially."""
    engine = create_engine(url)
    found: dict[str, list[str]] = {}
    try:
        with engine.connect() as conn:
            conn.execute(text("SET plan_cache_mode = force_generic_plan"))
            for name, (prepare_sql, count) in prepares.items():
                conn.exec_driver_sql(prepare_sql.replace("%", "%%"))
                nulls = ", ".join(["NULL"] * count)
                plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN EXECUTE {name}({nulls})"))
                scanned = [t for t in re.findall(r"Seq Scan on (\w+)", plan) if t in GROWING]
                if scanned:
                    found[prepare_sql.split(" AS ", 1)[1][:160]] = scanned
            conn.rollback()
    finally:
        engine.dispose()
    return found


def test_every_statement_from_alert_to_post_mortem_finds_its_rows_by_index(
    captured: Captured, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iras.web import create_app

    iid = one_incident_end_to_end(monkeypatch)
    before_reads = len(captured.prepares)
    web = create_app().test_client()
    # What an on-call engineer opens next: the incident's document and its console page.
    for path in (f"/incidents/{iid}", f"/ui/incidents/{iid}"):
        response = web.get(path)
        assert response.status_code == 200, (path, response.status_code)
    assert len(captured.prepares) > before_reads  # the reads sent statements of their own
    bodies = [sql for sql, _ in captured.prepares.values()]
    # The hot statements are among those checked: not a test that passes on nothing.
    assert any("INSERT INTO step_runs" in b and "step_done" not in b for b in bodies)  # the first claim
    assert any("INSERT INTO step_runs" in b and "step_done" in b for b in bodies)  # the next ones
    assert any("UPDATE incidents" in b and "decided_by" in b for b in bodies)  # the decision
    assert any("INSERT INTO postmortems" in b for b in bodies)  # the closing statement
    assert len(bodies) >= 10
    scans = sequential_scans(pg_database, captured.prepares)
    assert not scans, "statements reading a growing table sequentially:\n" + json.dumps(scans, indent=1)
