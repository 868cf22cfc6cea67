"""The transition table: every legal edge, every illegal pair, compare-and-set."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select

from iras.db import new_session
from iras.models import Incident, Transition
from iras.workflow import (
    TERMINAL,
    TRANSITIONS,
    Event,
    IllegalTransition,
    IncidentStatus,
    next_status,
    transition,
)


def _incident(status: IncidentStatus) -> str:
    with new_session() as session:
        incident = Incident(status=status.value, title="t", source="generic", fingerprint=f"fp-{status}")
        session.add(incident)
        session.commit()
        return incident.id


@pytest.mark.parametrize(("edge", "target"), list(TRANSITIONS.items()), ids=lambda v: str(v))
def test_every_legal_edge_moves_the_incident_and_records_it(
    iras_env: str, edge: tuple, target: IncidentStatus
) -> None:
    status, event = edge
    incident_id = _incident(status)
    with new_session() as session:
        assert transition(session, incident_id, status, event, actor="tester")
        session.commit()
        assert session.get(Incident, incident_id).status == target.value
        rows = list(session.scalars(select(Transition).where(Transition.incident_id == incident_id)))
        assert [(r.from_status, r.to_status, r.event, r.actor) for r in rows] == [
            (status.value, target.value, event.value, "tester")
        ]


ILLEGAL = [pair for pair in itertools.product(IncidentStatus, Event) if pair not in TRANSITIONS]


@pytest.mark.parametrize(("status", "event"), ILLEGAL, ids=lambda v: str(v))
def test_every_illegal_pair_raises(status: IncidentStatus, event: Event) -> None:
    with pytest.raises(IllegalTransition):
        next_status(status, event)


def test_terminal_states_have_no_way_out() -> None:
    assert not [key for key in TRANSITIONS if key[0] in TERMINAL]


def test_a_stale_expected_status_is_a_quiet_no_op(iras_env: str) -> None:
    incident_id = _incident(IncidentStatus.AWAITING_APPROVAL)
    with new_session() as session:
        assert transition(session, incident_id, IncidentStatus.AWAITING_APPROVAL, Event.APPROVED)
        session.commit()
        # A second approver (or the timeout) arrives with the old expectation.
        assert not transition(session, incident_id, IncidentStatus.AWAITING_APPROVAL, Event.REJECTED)
        session.commit()
        assert session.get(Incident, incident_id).status == IncidentStatus.EXECUTING.value
        assert (
            len(list(session.scalars(select(Transition).where(Transition.incident_id == incident_id)))) == 1
        )


def test_every_non_terminal_state_can_reach_a_terminal_state() -> None:
    reachable = {s: {t for (f, _), t in TRANSITIONS.items() if f == s} for s in IncidentStatus}
    for start in IncidentStatus:
        seen, frontier = {start}, [start]
        while frontier:
            for nxt in reachable[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & TERMINAL, f"{start} cannot reach a terminal state"


def test_the_readme_diagram_is_the_transition_table() -> None:
    from pathlib import Path

    from iras.workflow import mermaid

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert mermaid() in readme, (
        "regenerate the README diagram: python -c 'from iras.workflow import mermaid; print(mermaid())'"
    )
