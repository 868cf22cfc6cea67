"""The incident's statuses; the transitions between them are `iras.workflow`'s
table. Apart from it so the models (whose partial unique index covers the open
incidents) need not import the workflow, which builds its statements on them."""

from __future__ import annotations

from enum import StrEnum


class IncidentStatus(StrEnum):
    TRIAGING = "triaging"
    GATHERING_CONTEXT = "gathering_context"
    ANALYZING = "analyzing"
    PLANNING = "planning"
    AWAITING_APPROVAL = "awaiting_approval"
    EXECUTING = "executing"
    ESCALATING = "escalating"
    CLOSING = "closing"
    RESOLVED = "resolved"
    ESCALATED = "escalated"
    AUTO_RESOLVED = "auto_resolved"


TERMINAL: frozenset[IncidentStatus] = frozenset(
    {IncidentStatus.RESOLVED, IncidentStatus.ESCALATED, IncidentStatus.AUTO_RESOLVED}
)
