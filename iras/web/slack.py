"""`POST /slack/actions`: Approve/Reject button clicks from the Slack plan message.

The Slack signature is this route's authentication (verified over the raw body,
5-minute replay window), the clicking user must be in SLACK_APPROVER_IDS, and the
decision is the same compare-and-set as the API, recorded with via="slack".
Slack wants an answer within 3 s: the decision is one short transaction and the
message update is a separate Celery task (notify.post_decision).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from iras.integrations.slack import handle_slack_action
from iras.services import decide, decision_session

bp = Blueprint("slack", __name__)


def _decide(incident_id: str, action: str, actor: str, reason: str, plan_id: int | None) -> None:
    with decision_session() as session:
        decide(
            session,
            incident_id,
            approve=action == "approve",
            actor=actor,
            via="slack",
            reason=reason,
            plan_id=plan_id,
        )


@bp.post("/slack/actions")
def slack_actions() -> Any:
    body, status = handle_slack_action(request.get_data(cache=True), request.headers, _decide)
    return jsonify(body), status
