"""The web console: server-rendered pages for the on-call engineer.

    GET  /                              -> /ui/
    GET  /ui/                           incident list (status, severity, service filters)
    GET  /ui/incidents/<id>             everything IRAS found, the plan, the timeline
    POST /ui/incidents/<id>/decision    approve / reject (approver role, CSRF token)
    GET  /ui/incidents/<id>/postmortem.md
    GET  /ui/login, POST /ui/login, POST /ui/logout

Every piece of alert- or model-supplied text is escaped by Jinja's autoescape;
the post-mortem Markdown is rendered with raw HTML disabled and only http(s),
mailto and relative links kept, and a Content-Security-Policy without inline
script stands behind both, so an alert titled `<script>…` shows as text.
"""

from __future__ import annotations

import html
import logging
import re
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import markdown as md_lib
import nh3
from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor
from markupsafe import Markup
from sqlalchemy import select

from iras import auth
from iras.auth import Principal
from iras.config import get_settings
from iras.db import new_session, read_session
from iras.evidence_groups import group_lines
from iras.integrations import evidence_status
from iras.models import ApiToken, Incident, PostMortemRecord
from iras.postmortem import EVENT_WORDS
from iras.schemas import Severity, utcnow
from iras.services import (
    DecisionError,
    count_by_status,
    decide,
    decision_session,
    distinct_services,
    serialize_incident,
)
from iras.workflow import TERMINAL, WORKING, IncidentStatus

log = logging.getLogger(__name__)

bp = Blueprint(
    "console", __name__, template_folder="templates", static_folder="static", static_url_path="/ui/static"
)

LIST_LIMIT = 200
# What the list page shows of an incident: not the alert payload (~1.7 KB of JSON per
# row to fetch, detoast and parse, 200 times per view) nor the decision details.
_LIST_COLUMNS = (
    Incident.id,
    Incident.status,
    Incident.severity,
    Incident.title,
    Incident.service,
    Incident.source,
    Incident.alert_count,
    Incident.approval_deadline,
    Incident.outcome,
    Incident.created_at,
)
MAX_REASON = 4000
MAX_LOG_LINES_SHOWN = 300
# Refresh intervals (seconds) while something can still change without the reader.
REFRESH_MOVING = 3
REFRESH_WAITING = 20
REFRESH_IDLE = 30

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


# --------------------------------------------------------------------------- Markdown without raw HTML


SAFE_SCHEMES = ("http", "https", "mailto", "")


def safe_url(url: str | None) -> str | None:
    """The URL if it is http(s), mailto or a path on this site; None for javascript:,
    data:, a scheme hidden behind character references (`&#106;avascript:`) and a
    scheme-relative `//evil.example`, which the browser resolves to another host."""
    if not url:
        return None
    # What the browser sees: character references decoded, control characters and
    # whitespace inside the scheme ("java\tscript:") dropped.
    cleaned = "".join(ch for ch in html.unescape(url).strip() if ch > " ")
    try:
        parts = urlsplit(cleaned)
    except ValueError:
        return None
    if parts.scheme.lower() not in SAFE_SCHEMES:
        return None
    if not parts.scheme and (parts.netloc or cleaned.startswith(("//", "\\", "/\\"))):
        return None
    return cleaned


def _relative_url(url: str) -> str | None:
    return url if safe_url(url) == url else None


# What rendered Markdown may contain, checked by nh3 (ammonia) on the final HTML: the
# tags and attributes Markdown produces, links only to these schemes or to this site.
_ALLOWED_TAGS = {
    "p", "a", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li", "br", "hr",
    "h1", "h2", "h3", "h4", "h5", "h6", "span", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}


class _SafeLinks(Treeprocessor):
    def run(self, root: Any) -> None:
        for element in root.iter():
            for attr in ("href", "src"):
                if attr in element.attrib:
                    url = safe_url(element.attrib[attr])
                    if url is None:
                        del element.attrib[attr]
                    else:
                        element.attrib[attr] = url
            if element.tag == "img":  # no remote images: a tracking pixel would leak who reads it
                element.tag = "span"
                element.text = element.attrib.get("alt", "")
                element.attrib.clear()


class _NoRawHtml(Extension):
    """Treat HTML in the source as text: the model or an alert could put
    `<script>` (or `<img onerror>`) in a post-mortem."""

    def extendMarkdown(self, md: md_lib.Markdown) -> None:  # noqa: N802 - the library's name
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")
        md.treeprocessors.register(_SafeLinks(md), "iras_safe_links", 0)


def render_markdown(source: str) -> Markup:
    rendered = md_lib.markdown(source, extensions=[_NoRawHtml(), "sane_lists"], output_format="html")
    # The Markdown library's output is sanitized again by a maintained HTML sanitizer:
    # it decodes character references the way a browser does before checking a scheme.
    clean = nh3.clean(
        rendered,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={s for s in SAFE_SCHEMES if s},
        url_relative=_relative_url,
        link_rel="noopener noreferrer nofollow",
    )
    return Markup(clean)  # noqa: S704 - raw HTML disabled above, sanitized by nh3


# --------------------------------------------------------------------------- template helpers


def _parse(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


@bp.app_template_filter("utc")
def _utc_filter(value: Any, seconds: bool = True) -> str:
    when = _parse(value)
    if when is None:
        return "—"
    return when.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + "Z"


@bp.app_template_filter("hhmm")
def _hhmm_filter(value: Any) -> str:
    when = _parse(value)
    return when.strftime("%H:%M:%S") if when else "—"


def humanize_seconds(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    return f"{int(seconds // 86400)} d"


@bp.app_template_filter("ago")
def _ago_filter(value: Any) -> str:
    when = _parse(value)
    if when is None:
        return ""
    delta = (utcnow() - when).total_seconds()
    return f"{humanize_seconds(delta)} ago" if delta >= 0 else f"in {humanize_seconds(delta)}"


@bp.app_template_filter("safe_url")
def _safe_url_filter(value: Any) -> str | None:
    return safe_url(str(value)) if value else None


@bp.app_template_filter("num")
def _num_filter(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


@bp.app_template_filter("event_words")
def _event_words(value: str) -> str:
    return EVENT_WORDS.get(value, value.replace("_", " "))


@bp.app_template_filter("status_words")
def _status_words(value: str | None) -> str:
    return (value or "").replace("_", " ")


def _status_class(status: str) -> str:
    if status == IncidentStatus.AWAITING_APPROVAL.value:
        return "waiting"
    if status in (IncidentStatus.RESOLVED.value, IncidentStatus.AUTO_RESOLVED.value):
        return "ok"
    if status in (IncidentStatus.ESCALATED.value, IncidentStatus.ESCALATING.value):
        return "bad"
    return "moving"


@bp.app_context_processor
def _globals() -> dict[str, Any]:
    return {
        "status_class": _status_class,
        "auth_on": auth.auth_enabled(),
        "evidence_setup": evidence_status(get_settings()),
    }


@bp.after_request
def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        # Incident pages carry internal detail: keep them out of shared caches and history snapshots.
        response.headers.setdefault("Cache-Control", "no-store")
    return response


# --------------------------------------------------------------------------- access


def _page_error(status: int, title: str, message: str, principal: Principal | None = None) -> tuple[str, int]:
    return render_template("error.html", title=title, message=message, principal=principal), status


def _guard(role: str) -> tuple[Principal | None, Any]:
    """(principal, None) when allowed; else (…, a response): the login page for
    a GET without a session, 401/403 pages otherwise."""
    principal, status = auth.authorize(role, allow_session=True)
    if status is None:
        return principal, None
    if status == 401:
        if request.method == "GET":
            return None, redirect(url_for("console.login", next=request.full_path.rstrip("?")))
        return None, _page_error(401, "Sign in required", "Sign in with an API token to do this.")
    assert principal is not None
    return principal, _page_error(
        403,
        "Not allowed",
        f"This needs the {role} role; you are signed in as {principal.name} ({principal.role}).",
        principal,
    )


def _safe_next(target: str | None) -> str:
    """Only same-site paths: `next` must not become an open redirect.

    Control characters are refused outright: a CR/LF cannot go into a Location
    header (it was a 500), and browsers drop tabs and newlines from URLs, so
    `/\t/evil.example` would have become `//evil.example`."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in target)
    ):
        return url_for("console.incidents")
    return target


def _valid_id(incident_id: str) -> bool:
    try:
        uuid.UUID(incident_id)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- views


@bp.get("/")
def root() -> Any:
    return redirect(url_for("console.incidents"))


@bp.get("/ui")
@bp.get("/ui/")
def incidents() -> Any:
    principal, refused = _guard("viewer")
    if refused is not None:
        return refused
    status = request.args.get("status", "")
    severity = request.args.get("severity", "")
    service = request.args.get("service", "").strip()
    # Plain rows of the listed columns: no ORM identity map or instance state for 200 rows.
    query = select(*_LIST_COLUMNS).order_by(Incident.created_at.desc(), Incident.id.desc())
    if status == "open":
        # NOT IN the terminal statuses: the predicate of the partial index of open
        # incidents (uq_incidents_open_fingerprint), which PostgreSQL reads instead of the whole table.
        query = query.where(Incident.status.not_in([s.value for s in TERMINAL]))
    elif status in IncidentStatus.__members__.values():
        query = query.where(Incident.status == status)
    elif status:
        flash(f"Unknown status {status!r}: showing all.", "error")
        status = ""
    if severity in Severity.__members__:
        query = query.where(Incident.severity == severity)
    elif severity:
        flash(f"Unknown severity {severity!r}: showing all.", "error")
        severity = ""
    if service:
        query = query.where(Incident.service == service[:255])
    with read_session() as s:
        rows = list(s.execute(query.limit(LIST_LIMIT)))
        counts = count_by_status(s)
        # A skip scan of the service index, not SELECT DISTINCT (which reads every incident).
        services = [name for name in distinct_services(s, limit=200) if name]
    moving = any(IncidentStatus(r.status) in WORKING for r in rows)
    waiting = any(r.status == IncidentStatus.AWAITING_APPROVAL.value for r in rows)
    refresh = REFRESH_MOVING if moving else REFRESH_WAITING if waiting else REFRESH_IDLE
    return render_template(
        "incidents.html",
        principal=principal,
        incidents=rows,
        counts=counts,
        services=services,
        statuses=[s.value for s in IncidentStatus],
        severities=[s.value for s in Severity],
        filters={"status": status, "severity": severity, "service": service},
        refresh=refresh,
        limit=LIST_LIMIT,
        # One url_for for the page, not one per row (incident ids are UUIDs: nothing to quote).
        incident_href=url_for("console.incident", incident_id="0")[:-1],
    )


def _latest_stage(doc: dict[str, Any], stage: str) -> dict[str, Any] | None:
    found = [s for s in doc["stages"] if s["stage"] == stage]
    return found[-1] if found else None


def _evidence_view(context: dict[str, Any] | None, rca: dict[str, Any] | None) -> dict[str, Any]:
    """Log lines with the ones the root cause cites marked, metric deltas with
    their ratio, deployments, and which sources answered."""
    if context is None:
        return {"logs": [], "metrics": [], "deployments": [], "sources": [], "more_logs": 0}
    bundle = context["result"]
    cited = {line.strip() for line in (rca or {}).get("evidence", [])}
    logs = []
    for line in bundle.get("logs", []):
        message = str(line.get("message", ""))
        is_cited = any(c and (c in message or message in c) for c in cited)
        logs.append({**line, "cited": is_cited})
    logs.sort(key=lambda line: not line["cited"])  # cited lines first: the reader checks them first
    metrics = []
    for metric in bundle.get("metrics", []):
        current, baseline = metric.get("current"), metric.get("baseline_7d")
        ratio = None
        if isinstance(current, int | float) and isinstance(baseline, int | float) and baseline:
            ratio = current / baseline
        metrics.append({**metric, "ratio": ratio})
    sources = bundle.get("sources", [])
    deployments = bundle.get("deployments", [])
    return {
        "logs": logs[:MAX_LOG_LINES_SHOWN],
        "more_logs": max(0, len(logs) - MAX_LOG_LINES_SHOWN),
        "metrics": metrics,
        "deployments": deployments,
        "sources": sources,
        # Nothing but the alert (iras.integrations.context.evidence_gap): said at the top.
        "no_evidence": not (logs or metrics or deployments)
        and not any(s.get("status") == "ok" for s in sources),
        "missing": [s for s in sources if s.get("status") == "not_configured"],
        "window_minutes": bundle.get("window_minutes"),
        "window_start": bundle.get("window_start"),
        "window_end": bundle.get("window_end"),
    }


def _severity_change(
    doc: dict[str, Any], triage: dict[str, Any] | None, rca: dict[str, Any] | None
) -> dict[str, Any] | None:
    """When the evidence moved the severity away from triage's (which saw only the
    alert): from what, to what, and why, so the header and the Triage card agree."""
    before = (triage or {}).get("result", {}).get("severity")
    after = doc.get("severity")
    if not before or not after or before == after or after not in Severity.__members__:
        return None
    result = (rca or {}).get("result") or {}
    details = (rca or {}).get("details") or {}
    reason = result.get("severity_reason") or "; ".join(str(r) for r in details.get("severity_reasons") or [])
    if not reason:  # the note the RCA stage wrote on the timeline
        note = next(
            (
                str((t.get("detail") or {}).get("summary", ""))
                for t in reversed(doc.get("timeline") or [])
                if "from the evidence" in str((t.get("detail") or {}).get("summary", ""))
            ),
            "",
        )
        reason = note.partition("; severity ")[2]
    raised = Severity(after).rank < Severity(before).rank if before in Severity.__members__ else True
    return {
        "before": before,
        "after": after,
        "direction": "raised" if raised else "lowered",
        "reason": reason,
    }


@bp.get("/ui/incidents/<incident_id>")
def incident(incident_id: str) -> Any:
    principal, refused = _guard("viewer")
    if refused is not None:
        return refused
    assert principal is not None
    if not _valid_id(incident_id):
        return _page_error(404, "Not found", "No incident with this id.", principal)
    with read_session() as s:
        row = s.get(Incident, incident_id)
        if row is None:
            return _page_error(404, "Not found", "No incident with this id.", principal)
        doc = serialize_incident(s, row)
    triage = _latest_stage(doc, "triage")
    context = _latest_stage(doc, "context")
    rca = _latest_stage(doc, "rca")
    alert = doc["alerts"][0] if doc["alerts"] else {}
    status = IncidentStatus(doc["status"])
    awaiting = status == IncidentStatus.AWAITING_APPROVAL
    deadline = _parse(doc["approval_deadline"])
    refresh = REFRESH_MOVING if status in WORKING else REFRESH_WAITING if awaiting else 0
    postmortem_html = render_markdown(doc["postmortem"]["markdown"]) if doc["postmortem"] else None
    rca_result = rca["result"] if rca else None
    gate = get_settings().rca_confidence_threshold
    return render_template(
        "incident.html",
        principal=principal,
        doc=doc,
        alert=alert,
        triage=triage["result"] if triage else None,
        rca=rca_result,
        gate=gate,
        rca_below_gate=bool(rca_result and rca_result.get("confidence", 0) < gate),
        cited_groups=group_lines([str(e) for e in (rca_result or {}).get("evidence") or []]),
        suspects=[
            {**sus, "evidence_groups": group_lines([str(e) for e in sus.get("evidence") or []])}
            for sus in (rca_result or {}).get("suspects") or []
        ],
        severity_change=_severity_change(doc, triage, rca),
        rca_attempts=[s for s in doc["stages"] if s["stage"] == "rca"],
        evidence=_evidence_view(context, rca["result"] if rca else None),
        plan=doc["plan"],
        awaiting=awaiting,
        can_decide=awaiting and principal.can("approver"),
        deadline=deadline,
        deadline_passed=bool(deadline and deadline <= utcnow()),
        refresh=refresh,
        postmortem_html=postmortem_html,
        decider_name=session.get("decider_name", ""),
    )


@bp.post("/ui/incidents/<incident_id>/decision")
def decision(incident_id: str) -> Any:
    """Approve or reject through services.decide (via="console"): the same
    compare-and-set as the API and Slack, so a second click or a racing
    timeout gets a clear "already decided" instead of a second decision."""
    principal, refused = _guard("approver")
    if refused is not None:
        return refused
    assert principal is not None
    if not auth.csrf_valid(request.form.get("csrf_token")):
        return _page_error(
            403,
            "Form refused",
            "This form did not come from this console session (missing or wrong CSRF token). "
            "Reload the incident page and try again.",
            principal,
        )
    if not _valid_id(incident_id):
        abort(404)
    target = url_for("console.incident", incident_id=incident_id)
    action = request.form.get("action")
    if action not in ("approve", "reject"):
        flash("Choose Approve or Reject.", "error")
        return redirect(target, 303)
    reason = (request.form.get("reason") or "").strip() or None
    if reason and len(reason) > MAX_REASON:
        flash(f"The reason is limited to {MAX_REASON} characters.", "error")
        return redirect(target, 303)
    if action == "reject" and not reason:
        flash("A reason is required to reject a plan: the next responder reads it.", "error")
        return redirect(target, 303)
    plan_raw = request.form.get("plan_id", "")
    # ASCII digits within a BIGINT: isdigit() accepts "²" and int() refuses 5,000 digits.
    plan_id = int(plan_raw) if re.fullmatch(r"[0-9]{1,18}", plan_raw) and int(plan_raw) > 0 else None
    if plan_id is None:
        flash("The form did not say which plan you reviewed; reload the page.", "error")
        return redirect(target, 303)
    if principal.authenticated:
        actor = principal.name
    else:
        # Auth off: nobody is signed in, so the form asks who decides (kept for next time).
        actor = (request.form.get("name") or "").strip()
        if not actor or len(actor) > 255:
            flash("Give your name: every decision records who made it.", "error")
            return redirect(target, 303)
        session["decider_name"] = actor
    with decision_session() as s:
        try:
            decide(
                s,
                incident_id,
                approve=action == "approve",
                actor=actor,
                via="console",
                reason=reason,
                plan_id=plan_id,
            )
        except DecisionError as exc:
            flash(f"Not applied: {exc.message}.", "error")
            return redirect(target, 303)
    log.info(
        "console decision",
        extra={"incident_id": incident_id, "event": action, "actor": actor, "via": "console"},
    )
    flash(f"Plan {'approved' if action == 'approve' else 'rejected'} by {actor}.", "ok")
    return redirect(target, 303)


@bp.get("/ui/incidents/<incident_id>/postmortem.md")
def postmortem_download(incident_id: str) -> Any:
    principal, refused = _guard("viewer")
    if refused is not None:
        return refused
    if not _valid_id(incident_id):
        abort(404)
    with new_session() as s:
        pm = s.get(PostMortemRecord, incident_id)
        if pm is None:
            return _page_error(
                404, "No post-mortem yet", "It is written when the incident closes.", principal
            )
        markdown = pm.markdown
    response = Response(markdown, mimetype="text/markdown")
    response.headers["Content-Disposition"] = f'attachment; filename="postmortem-{incident_id}.md"'
    return response


@bp.route("/ui/login", methods=["GET", "POST"])
def login() -> Any:
    next_url = _safe_next(request.values.get("next"))
    if not auth.auth_enabled():
        flash("Authentication is off: no sign-in needed.", "info")
        return redirect(next_url)
    if request.method == "GET":
        return render_template("login.html", principal=None, next_url=next_url)
    if not auth.csrf_valid(request.form.get("csrf_token")):
        return render_template(
            "login.html", principal=None, next_url=next_url, error="The form expired; try again."
        ), 403
    with new_session() as s:
        row: ApiToken | None = auth.find_token(s, (request.form.get("token") or "").strip())
    if row is None:
        log.warning("console sign-in refused", extra={"event": "login_failed", "remote": request.remote_addr})
        return render_template(
            "login.html", principal=None, next_url=next_url, error="That token is not valid (or was revoked)."
        ), 401
    auth.login(row)
    log.info("console sign-in", extra={"event": "login", "actor": row.name, "role": row.role})
    return redirect(next_url, 303)


@bp.post("/ui/logout")
def logout() -> Any:
    if auth.csrf_valid(request.form.get("csrf_token")):
        auth.logout()
    return redirect(url_for("console.login") if auth.auth_enabled() else url_for("console.incidents"), 303)
