"""Celery tasks, one module per concern; every task is named `incidents.*` or
`notify.*` (what Flower shows) and takes an incident id.

- `analysis`: triage, context, RCA, plan (queue `analysis`)
- `remediation`: applying an approved plan, with rollback (queue `ops`)
- `escalation`: handing an incident to a human (queue `ops`)
- `postmortem`: the post-mortem of every closed incident (queue `analysis`)
- `notifications`: chat and pager messages (queue `analysis`)
- `beat`: approval deadlines and the stuck-incident sweeper (queue `ops`)

`base` holds the task class and what the stages share, `reads` their reads.
Tasks are sent by name through `iras.dispatch`, after the commit that makes them due.
Importing this package registers every task (the worker's `imports` setting).
"""

from iras.tasks.analysis import gather_context, run_plan, run_rca, run_triage
from iras.tasks.beat import expire_approvals, sweep_stuck
from iras.tasks.escalation import escalate
from iras.tasks.notifications import (
    notify_page,
    notify_post_decision,
    notify_post_escalation,
    notify_post_plan,
    notify_post_postmortem,
    notify_resolve_page,
)
from iras.tasks.postmortem import write_postmortem
from iras.tasks.remediation import execute_plan

__all__ = [
    "escalate",
    "execute_plan",
    "expire_approvals",
    "gather_context",
    "notify_page",
    "notify_post_decision",
    "notify_post_escalation",
    "notify_post_plan",
    "notify_post_postmortem",
    "notify_resolve_page",
    "run_plan",
    "run_rca",
    "run_triage",
    "sweep_stuck",
    "write_postmortem",
]
