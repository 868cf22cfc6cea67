"""Slack: the plan with Approve / Reject buttons, the decision, escalations and
post-mortems (`slack_sdk.WebClient`), and the verification of button clicks.

Posting. Every Web API call has a timeout. Rate limits (429, `ratelimited`),
5xx and connection failures raise `TransientNotifyError` (with Slack's
`Retry-After`) for the Celery notify task to retry; other Slack errors
(`channel_not_found`, `invalid_auth`) are permanent and raise `SourceUnavailable`.
A notifier failure never blocks the pipeline: the tasks swallow it after retries.

Clicks. `POST /slack/actions` (wired in iras/web) calls `handle_slack_action`:

1. verify the signature (`SignatureVerifier`, signing secret) and refuse a
   timestamp more than 5 minutes away (a replayed request);
2. parse the `block_actions` payload: `action_id` approve/reject, the incident
   id as `value`, the clicking Slack user;
3. refuse users not in `SLACK_APPROVER_IDS` (deny by default: an empty list
   approves nobody);
4. apply the decision through the caller's `decide` (the same compare-and-set
   as the API), which refuses a second click once the incident is decided.

The answer is immediate (Slack wants one within 3 s); the original message is
updated by the `notify.post_decision` task through `post_decision`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple
from urllib.error import URLError
from urllib.parse import parse_qs

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import Clock, SignatureVerifier

from iras.config import Settings, get_settings
from iras.evidence_groups import group_lines
from iras.integrations import incident_doc as docs
from iras.integrations.base import SourceUnavailable, TransientNotifyError
from iras.integrations.http import parse_retry_after

log = logging.getLogger(__name__)

ACTION_APPROVE = "approve"
ACTION_REJECT = "reject"
DECISION_ACTIONS = (ACTION_APPROVE, ACTION_REJECT)
REPLAY_WINDOW_SECONDS = 5 * 60
# Slack errors worth retrying (https://api.slack.com/methods/chat.postMessage#errors).
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "service_unavailable", "fatal_error", "internal_error", "request_timeout"}
)
# chat.update cannot reach the original message: post a new one instead.
MESSAGE_GONE = frozenset(
    {"message_not_found", "cant_update_message", "edit_window_closed", "channel_not_found"}
)

SECTION_LIMIT = 2900  # Slack: 3000 characters per section text
MAX_STEP_SECTIONS = 10
SEVERITY_EMOJI = {
    "P0": ":red_circle:",
    "P1": ":large_orange_circle:",
    "P2": ":large_yellow_circle:",
    "P3": ":white_circle:",
}
RISK_EMOJI = {"low": ":large_green_circle:", "medium": ":large_yellow_circle:", "high": ":red_circle:"}


# --------------------------------------------------------------------------- formatting


def esc(text: Any) -> str:
    """Slack mrkdwn needs &, < and > escaped, or `<!channel>` in a log line would ping everyone."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mention(actor: str | None, via: str | None = None) -> str:
    """`<@U123>` for a Slack user id, the escaped name otherwise."""
    if not actor:
        return "someone"
    user = actor.removeprefix("slack:")
    if (via == "slack" or actor.startswith("slack:")) and re.fullmatch(r"[UW][A-Z0-9]{2,}", user):
        return f"<@{user}>"
    return esc(actor)


def markdown_to_mrkdwn(markdown: str) -> str:
    """The post-mortem's Markdown in Slack's dialect: headings and **bold** as *bold*, links as <url|text>."""
    out = []
    for line in esc(markdown).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*)$", line)
        if heading:
            line = f"*{heading.group(1).strip()}*"
        line = re.sub(r"\*\*(.+?)\*\*", r"*\1*", line)
        line = re.sub(r"^(\s*)[-*]\s+", r"\1• ", line)
        line = re.sub(r"\[([^\]]+)\]\((https?://[^)\s]+)\)", r"<\2|\1>", line)
        out.append(line)
    return "\n".join(out)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_LIMIT)}}


def _fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": clip(f"*{name}*\n{esc(value)}", 1900)} for name, value in pairs[:10]
        ],
    }


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, 150), "emoji": True}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, SECTION_LIMIT)}]}


def _link_button(url: str) -> dict[str, Any]:
    # URL buttons also send a block_actions payload: `open_incident` is ignored by the handler.
    return {
        "type": "button",
        "action_id": "open_incident",
        "text": {"type": "plain_text", "text": "Open in IRAS"},
        "url": url,
    }


def _summary_blocks(doc: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """Severity, service and root cause: the top of every incident message."""
    severity = doc.get("severity") or "untriaged"
    cause = docs.rca(doc)
    triage = docs.latest_result(doc, "triage")
    pairs: list[tuple[str, Any]] = [
        ("Severity", severity),
        ("Service", ", ".join(docs.affected_services(doc)) or doc.get("service") or "unknown"),
    ]
    if cause.get("category"):
        pairs.append(("Category", str(cause["category"]).replace("_", " ")))
    if cause.get("confidence") is not None:
        pairs.append(("Confidence", f"{float(cause['confidence']):.0%}"))
    blocks = [_fields(pairs)]
    if triage.get("blast_radius"):
        blocks.append(_section(f"*Impact*\n{esc(triage['blast_radius'])}"))
    if cause.get("primary_cause"):
        confident = float(cause.get("confidence") or 0) >= settings.rca_confidence_threshold
        label = "Root cause" if confident else "Leading hypothesis (below the confidence gate, not acted on)"
        lines = [f"*{label}*\n{esc(cause['primary_cause'])}"]
        if cause.get("culprit_service"):
            culprit = f"Culprit: *{esc(cause['culprit_service'])}*"
            if cause.get("culprit_deployment_sha"):
                culprit += f", deployment `{esc(str(cause['culprit_deployment_sha'])[:12])}`"
            lines.append(culprit)
        evidence = [clip(" ".join(str(e).split()), 280) for e in (cause.get("evidence") or [])[:3]]
        lines += [f">{esc(e)}" for e in evidence]
        blocks.append(_section("\n".join(lines)))
    return blocks


MAX_SUSPECTS = 3


def suspect_blocks(doc: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """The RCA's ranked suspects with their evidence (repeats of one line template
    shown once with a count), and the evidence sources that were not configured:
    what a responder needs when the diagnosis is not one certain answer."""
    cause = docs.rca(doc)
    blocks: list[dict[str, Any]] = []
    suspects = [s for s in cause.get("suspects") or [] if isinstance(s, dict)][:MAX_SUSPECTS]
    if suspects:
        confident = float(cause.get("confidence") or 0) >= settings.rca_confidence_threshold
        lines = ["*Suspects*" if confident else "*Suspects* (not confident: for the responder to check)"]
        for rank, suspect in enumerate(suspects, 1):
            score = suspect.get("score")
            head = f"{rank}. *{esc(suspect.get('service', '?'))}*"
            if isinstance(score, int | float):
                head += f" {float(score):.0%}"
            if suspect.get("category"):
                head += f" · {esc(str(suspect['category']).replace('_', ' '))}"
            if suspect.get("reason"):
                head += f": {esc(suspect['reason'])}"
            lines.append(head)
            for group in group_lines([str(e) for e in suspect.get("evidence") or []])[:2]:
                count = f" (×{group.count})" if group.count > 1 else ""
                lines.append(f">{esc(clip(' '.join(group.example.split()), 240))}{count}")
        blocks.append(_section("\n".join(lines)))
    context = docs.latest_result(doc, "context")
    missing = [
        f"{esc(src.get('kind'))} (set {esc(' or '.join(src.get('configure') or []))})"
        for src in context.get("sources") or []
        if isinstance(src, dict) and src.get("status") == "not_configured"
    ]
    if missing:
        blocks.append(_section("*Evidence not configured*: " + "; ".join(missing)))
    return blocks


def _step_section(step: dict[str, Any]) -> dict[str, Any]:
    risk = str(step.get("risk_level") or "unknown")
    rollback = step.get("rollback_command")
    lines = [
        f"*{step.get('order', '?')}. {esc(step.get('description', ''))}*",
        f"`{esc(step.get('command', ''))}`",
        f"Risk: {RISK_EMOJI.get(risk, ':grey_question:')} {esc(risk)} · "
        + (f"rollback: `{esc(rollback)}`" if rollback else "*no rollback (irreversible)*"),
    ]
    return _section("\n".join(lines))


def plan_blocks(
    doc: dict[str, Any], settings: Settings, *, with_buttons: bool = True
) -> list[dict[str, Any]]:
    """The plan message: header, summary, root cause, each step with its risk, then the buttons."""
    incident_id = str(doc["id"])
    url = docs.incident_url(settings, incident_id)
    severity = doc.get("severity") or ""
    proposal = docs.plan(doc)
    steps = list(proposal.get("steps") or [])
    blocks: list[dict[str, Any]] = [
        _header(
            f"{SEVERITY_EMOJI.get(severity, ':rotating_light:')} {severity} {doc.get('title', 'Incident')}".strip()
        ),
        *_summary_blocks(doc, settings),
        *suspect_blocks(doc, settings),
        {"type": "divider"},
        _section(f"*Proposed plan*\n{esc(proposal.get('summary') or 'no plan')}"),
    ]
    blocks += [_step_section(step) for step in steps[:MAX_STEP_SECTIONS]]
    if len(steps) > MAX_STEP_SECTIONS:
        blocks.append(
            _context(f"…and {len(steps) - MAX_STEP_SECTIONS} more steps: <{url}|see the full plan>")
        )
    notes = [str(n) for n in proposal.get("safety_notes") or []]
    context = [f"Incident <{url}|{esc(incident_id[:8])}>"]
    if doc.get("approval_deadline"):
        context.append(f"approve before {esc(doc['approval_deadline'])}")
    if notes:
        context.append(":warning: " + esc("; ".join(notes)))
    blocks.append(_context(" · ".join(context)))
    if with_buttons:
        risky = proposal.get("reversible") is False or any(s.get("risk_level") == "high" for s in steps)
        approve: dict[str, Any] = {
            "type": "button",
            "action_id": ACTION_APPROVE,
            "text": {"type": "plain_text", "text": "Approve"},
            "style": "primary",
            "value": incident_id,
        }
        if risky:  # a second look before an irreversible or high-risk change
            approve["confirm"] = {
                "title": {"type": "plain_text", "text": "Run this plan?"},
                "text": {"type": "mrkdwn", "text": "It contains a high-risk or irreversible step."},
                "confirm": {"type": "plain_text", "text": "Approve"},
                "deny": {"type": "plain_text", "text": "Cancel"},
                "style": "danger",
            }
        reject = {
            "type": "button",
            "action_id": ACTION_REJECT,
            "text": {"type": "plain_text", "text": "Reject"},
            "style": "danger",
            "value": incident_id,
        }
        # The block id binds the click to the plan shown: a decision on a plan that
        # has since been replaced is refused by services.decide (409).
        plan_id = proposal.get("id")
        blocks.append(
            {
                "type": "actions",
                "block_id": f"decision:{incident_id}:{plan_id}"
                if plan_id is not None
                else f"decision:{incident_id}",
                "elements": [approve, reject, _link_button(url)],
            }
        )
    return blocks


def decision_line(doc: dict[str, Any]) -> str:
    kind, made = docs.decision(doc)
    who = mention(made.get("by"), made.get("via"))
    when = f" at {esc(made['at'])}" if made.get("at") else ""
    reason = f": {esc(made['reason'])}" if made.get("reason") else ""
    if kind == "approved":
        return f":white_check_mark: *Approved* by {who}{when}{reason}"
    if kind == "rejected":
        return f":x: *Rejected* by {who}{when}{reason}"
    return f":hourglass: *No decision*: {esc(docs.escalation_reason(doc) or doc.get('status', 'closed'))}"


# --------------------------------------------------------------------------- notifier


class SlackError(SourceUnavailable):
    """A permanent Slack API error; `error` is Slack's code (`channel_not_found`, ...)."""

    def __init__(self, message: str, error: str) -> None:
        super().__init__(message)
        self.error = error


class SlackNotifier:
    name = "slack"

    def __init__(self, settings: Settings, *, client: WebClient | None = None) -> None:
        if not settings.slack_bot_token and client is None:
            raise ValueError("SLACK_BOT_TOKEN is not set")
        self.settings = settings
        self.channel = settings.slack_channel
        base_url = (
            settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
        )
        # WebClient's timeout is whole seconds; its default retry handler only retries
        # connection errors (once). Rate limits are left to the Celery task.
        self.client = client or WebClient(
            token=settings.slack_bot_token,
            base_url=base_url,
            timeout=max(1, math.ceil(settings.http_timeout_seconds)),
        )

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.client.api_call(method, json=kwargs)
        except SlackApiError as exc:
            status = exc.response.status_code
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            error = str(data.get("error") or f"HTTP {status}")
            if status == 429 or error == "ratelimited":
                headers = {k.lower(): v for k, v in (exc.response.headers or {}).items()}
                retry_after = parse_retry_after(_first(headers.get("retry-after")))
                raise TransientNotifyError(
                    f"slack {method}: rate limited, retry after {retry_after}s", retry_after=retry_after
                ) from exc
            if status >= 500 or error in TRANSIENT_ERRORS:
                raise TransientNotifyError(f"slack {method}: {error}") from exc
            raise SlackError(f"slack {method}: {error}", error) from exc
        except (URLError, TimeoutError, ConnectionError) as exc:
            raise TransientNotifyError(f"slack {method}: {type(exc).__name__}: {exc}") from exc
        return dict(response.data) if isinstance(response.data, dict) else {}

    def post_plan(self, incident: dict[str, Any]) -> dict[str, Any]:
        title = incident.get("title", "Incident")
        # The fallback `text` is mrkdwn too (notifications, screen readers): escaped like the blocks.
        text = f"[{esc(incident.get('severity') or '?')}] {esc(title)}: remediation plan awaiting approval"
        answer = self._call(
            "chat.postMessage",
            channel=self.channel,
            text=clip(text, 3000),
            blocks=plan_blocks(incident, self.settings),
            unfurl_links=False,
        )
        # chat.update needs the channel *id*, which only the answer carries.
        return {"channel": answer.get("channel"), "ts": answer.get("ts")}

    def post_decision(self, incident: dict[str, Any], message_ref: dict[str, Any] | None) -> None:
        line = decision_line(incident)
        blocks = [*plan_blocks(incident, self.settings, with_buttons=False), _section(line)]
        text = f"{esc(incident.get('title', 'Incident'))}: {line}"
        if message_ref and message_ref.get("channel") and message_ref.get("ts"):
            try:
                self._call(
                    "chat.update",
                    channel=message_ref["channel"],
                    ts=message_ref["ts"],
                    text=text,
                    blocks=blocks,
                )
                return
            except SlackError as exc:
                if exc.error not in MESSAGE_GONE:
                    raise
                log.warning("slack: original plan message unavailable (%s), posting the decision anew", exc)
        self._call("chat.postMessage", channel=self.channel, text=text, blocks=blocks, unfurl_links=False)

    def post_escalation(self, incident: dict[str, Any]) -> None:
        url = docs.incident_url(self.settings, str(incident["id"]))
        reason = docs.escalation_reason(incident) or "escalated to on-call"
        title = incident.get("title", "Incident")
        blocks = [
            _header(f":rotating_light: Escalated: {title}"),
            *_summary_blocks(incident, self.settings),
            *suspect_blocks(incident, self.settings),
            _section(f"*Why a human is needed*\n{esc(reason)}"),
            {"type": "actions", "elements": [_link_button(url)]},
        ]
        self._call(
            "chat.postMessage",
            channel=self.channel,
            text=clip(f"Escalated: {esc(title)} ({esc(reason)})", 3000),
            blocks=blocks,
            unfurl_links=False,
        )

    def post_postmortem(self, incident: dict[str, Any], markdown: str) -> None:
        url = docs.incident_url(self.settings, str(incident["id"]))
        title = incident.get("title", "Incident")
        body = markdown_to_mrkdwn(markdown)
        chunks = [
            body[i : i + SECTION_LIMIT] for i in range(0, min(len(body), SECTION_LIMIT * 8), SECTION_LIMIT)
        ]
        blocks = [_header(f":memo: Post-mortem: {title}"), *(_section(chunk) for chunk in chunks)]
        if len(body) > SECTION_LIMIT * 8:
            blocks.append(_context(f"Truncated: <{url}|read the full post-mortem>"))
        blocks.append({"type": "actions", "elements": [_link_button(url)]})
        self._call(
            "chat.postMessage",
            channel=self.channel,
            text=clip(f"Post-mortem: {esc(title)}", 3000),
            blocks=blocks,
            unfurl_links=False,
        )


def _first(value: Any) -> str | None:
    if isinstance(value, list | tuple):
        return str(value[0]) if value else None
    return None if value is None else str(value)


# --------------------------------------------------------------------------- button clicks


class SlackActionError(Exception):
    """A click that is refused; `status` is the HTTP answer to Slack."""

    status = 400
    code = "bad_request"


class InvalidSignature(SlackActionError):
    status, code = 401, "invalid_signature"


class StaleRequest(SlackActionError):
    status, code = 401, "stale_request"


class UnknownApprover(SlackActionError):
    status, code = 403, "not_an_approver"


class NotConfigured(SlackActionError):
    status, code = 503, "not_configured"


class IgnoredAction(SlackActionError):
    """Not a decision (the "Open in IRAS" link button): acknowledged, nothing done."""

    status, code = 200, "ignored"


class SlackAction(NamedTuple):
    incident_id: str
    action: str  # "approve" | "reject"
    user_id: str
    plan_id: int | None = None


def _plan_id_from_block(block_id: Any) -> int | None:
    """The plan id IRAS put in the button's block ("decision:<incident>:<plan>"); None
    for a block without one. A plan part that is not a plan id is refused, never read
    as "whatever plan is current": ASCII digits within a BIGINT only (str.isdigit()
    accepts "²", int() refuses 5,000 digits, PostgreSQL refuses 2**63)."""
    parts = str(block_id or "").split(":")
    if len(parts) != 3 or parts[0] != "decision":
        return None
    if re.fullmatch(r"[0-9]{1,19}", parts[2]) and 0 < int(parts[2]) < 2**63:
        return int(parts[2])
    raise SlackActionError(f"block_id carries no valid plan id: {parts[2][:40]!r}")


class _FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def verify_and_parse_action(
    body: bytes, headers: Mapping[str, str], settings: Settings, *, now: float | None = None
) -> SlackAction:
    """Verify a Slack interactivity request and return the decision it carries.

    Raises a `SlackActionError` subclass: bad or missing signature, a timestamp
    outside the 5-minute window (replay), a payload that is not a decision click,
    or a user who is not an allowed approver.
    """
    if not settings.slack_signing_secret:
        raise NotConfigured("SLACK_SIGNING_SECRET is not set: Slack actions are refused")
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    timestamp = lowered.get("x-slack-request-timestamp", "")
    signature = lowered.get("x-slack-signature", "")
    if not timestamp.isdigit() or not signature:
        raise InvalidSignature("missing or malformed X-Slack-Request-Timestamp / X-Slack-Signature")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > REPLAY_WINDOW_SECONDS:
        raise StaleRequest(
            f"request timestamp is {abs(current - int(timestamp)):.0f}s away from now (max 300s)"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        # Slack signs UTF-8 form bodies; the verifier would raise decoding anything else.
        raise InvalidSignature("body is not UTF-8: not a Slack request") from None
    verifier = SignatureVerifier(settings.slack_signing_secret, clock=_FixedClock(current))
    if not verifier.is_valid(body=text, timestamp=timestamp, signature=signature):
        raise InvalidSignature("signature does not match the signing secret")

    try:
        form = parse_qs(text, strict_parsing=True)
        payload = json.loads(form["payload"][0])
    except (ValueError, KeyError, IndexError, RecursionError) as exc:
        raise SlackActionError(f"not an interactivity payload: {type(exc).__name__}") from exc
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise IgnoredAction(
            f"payload type {payload.get('type') if isinstance(payload, dict) else '?'!r} is not handled"
        )
    actions = payload.get("actions") or []
    user = payload.get("user") or {}
    if not isinstance(actions, list) or not isinstance(user, dict):
        raise SlackActionError("'actions' must be a list and 'user' an object")
    decision = next(
        (a for a in actions if isinstance(a, dict) and a.get("action_id") in DECISION_ACTIONS),
        None,
    )
    if decision is None:
        raise IgnoredAction("no approve/reject action in the payload")
    incident_id = str(decision.get("value") or "").strip()
    user_id = str(user.get("id") or "")
    if "\x00" in incident_id or "\x00" in user_id:
        raise SlackActionError("NUL character in the incident id or the user")
    if not incident_id or not user_id:
        raise SlackActionError("the action carries no incident id or no user")
    # Deny by default: an empty SLACK_APPROVER_IDS lets nobody decide from Slack.
    if user_id not in settings.slack_approver_ids:
        raise UnknownApprover(f"Slack user {user_id[:64]!r} is not in SLACK_APPROVER_IDS")
    return SlackAction(
        incident_id=incident_id,
        action=str(decision["action_id"]),
        user_id=user_id,
        plan_id=_plan_id_from_block(decision.get("block_id")),
    )


DecideCallback = Callable[[str, str, str, str, int | None], Any]


def handle_slack_action(
    body: bytes,
    headers: Mapping[str, str],
    decide: DecideCallback,
    settings: Settings | None = None,
    *,
    now: float | None = None,
) -> tuple[dict[str, Any], int]:
    """The logic of `POST /slack/actions`: returns (JSON body, HTTP status) for Flask.

    `decide(incident_id, action, actor, reason, plan_id)` applies the decision with the
    same compare-and-set as the API (`action` is "approve" or "reject", `actor`
    the Slack user id, to be recorded with via="slack"). To refuse, it raises an
    exception with a `status_code` attribute (e.g. `iras.services.DecisionError`:
    404 unknown incident, 409 already decided); the refusal is answered with that
    status and nothing changes.
    """
    settings = settings or get_settings()
    try:
        action = verify_and_parse_action(body, headers, settings, now=now)
    except SlackActionError as exc:
        if exc.status >= 400:
            log.warning("slack action refused (%s): %s", exc.code, exc)
        return {"ok": exc.status < 400, "error": exc.code, "reason": str(exc)}, exc.status
    reason = f"{action.action} clicked in Slack by <@{action.user_id}>"
    try:
        decide(action.incident_id, action.action, action.user_id, reason, action.plan_id)
    except Exception as exc:
        status = getattr(exc, "status_code", None)
        if not isinstance(status, int):
            raise
        log.info("slack %s of %s by %s refused: %s", action.action, action.incident_id, action.user_id, exc)
        return {"ok": False, "error": "refused", "reason": getattr(exc, "message", str(exc))}, status
    log.info("slack %s of %s by %s", action.action, action.incident_id, action.user_id)
    return {
        "ok": True,
        "incident_id": action.incident_id,
        "action": action.action,
        "decided_by": action.user_id,
    }, 200
