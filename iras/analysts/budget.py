"""The evidence budget: fit any context bundle into a fixed number of prompt tokens.

A 50,000-line log dump must not become a 50,000-line prompt: it would blow the
model's context, the cost and the latency, and bury the three lines that matter.
`build_evidence` renders a `ContextBundle` into at most `max_tokens` (estimated)
tokens, in this order:

1. **Sources**: each context tool's status; a failed or unconfigured source is
   stated, so missing logs are never read as "no errors".
2. **Deployments** (newest last, full sha) and **metrics** as computed
   now-vs-7-day-baseline deltas, most changed first, never raw series.
3. **Log templates**: lines are de-duplicated into templates with drain3 (the
   Drain log-parsing algorithm: variable tokens such as ids, numbers and
   durations become `<*>`), one row per (service, level, template) with its count,
   first and last time and the newest verbatim example. Errors and warnings
   first by count, then rarer informational templates (a single "starting
   version abc123" line often dates the incident).
4. **Newest log lines verbatim**: identical lines collapsed with a count, newest
   kept; older ones are cut with an explicit marker saying how many were left out.

Every verbatim line shown is returned in `EvidencePack.citable`, so the
verifier checks citations against exactly what the model saw. A broader-window
retry passes a bigger bundle with the same budget: more lines compete for the
same space and the templates keep the older part represented.

Token estimate: the real tokenizer is not available offline, so tokens are
estimated as UTF-8 bytes / 3.5: conservative against the usual ~4 characters
per token, because logs (hex ids, timestamps, punctuation) tokenize denser than prose.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

from iras.analysts.prompts.common import defang, one_line
from iras.schemas import ContextBundle, Deployment, LogLine, MetricDelta

CHARS_PER_TOKEN = 3.5
MAX_DEPLOYMENTS = 30
MAX_METRICS = 40
MAX_EXAMPLE_CHARS = 400  # exemplar line under a template
MAX_LINE_CHARS = 1500  # one verbatim log entry (a stack trace keeps its head)
TEMPLATE_SHARE = 0.4  # of what is left after sources, deployments and metrics
URGENT_SHARE = 0.6  # of the verbatim section, reserved for the newest warnings and errors
HEADER_SHARE = 0.35  # at most this much for sources + deployments + metrics

_LEVEL_RANK = {
    "FATAL": 0,
    "CRITICAL": 0,
    "ERROR": 1,
    "ERR": 1,
    "WARN": 2,
    "WARNING": 2,
    "INFO": 3,
    "DEBUG": 4,
}


def estimate_tokens(text: str) -> int:
    """Conservative token count of `text` (see the module docstring)."""
    return math.ceil(len(text.encode("utf-8")) / CHARS_PER_TOKEN)


@dataclass
class EvidencePack:
    """Rendered evidence plus what the verifier and the stage result need to know about it."""

    text: str
    citable: list[str]
    deployments: list[Deployment]
    estimated_tokens: int
    max_tokens: int
    log_lines_total: int = 0
    log_lines_shown: int = 0
    log_lines_cut: int = 0
    templates_total: int = 0
    templates_shown: int = 0
    sections_cut: list[str] = field(default_factory=list)

    def stats(self) -> dict[str, object]:
        return {
            "evidence_tokens_estimate": self.estimated_tokens,
            "evidence_token_budget": self.max_tokens,
            "log_lines_total": self.log_lines_total,
            "log_lines_shown": self.log_lines_shown,
            "log_lines_cut": self.log_lines_cut,
            "templates_total": self.templates_total,
            "templates_shown": self.templates_shown,
            "sections_cut": self.sections_cut,
        }


class _Writer:
    """Appends lines while they fit in a token allowance."""

    def __init__(self, allowance: int) -> None:
        self.allowance = allowance
        self.used = 0
        self.lines: list[str] = []

    def cost(self, line: str) -> int:
        return estimate_tokens(line + "\n")

    def fits(self, line: str, reserve: int = 0) -> bool:
        return self.used + self.cost(line) + reserve <= self.allowance

    def add(self, line: str, reserve: int = 0) -> bool:
        if not self.fits(line, reserve):
            return False
        self.lines.append(line)
        self.used += self.cost(line)
        return True

    def force(self, line: str) -> None:
        """For cut markers, whose room was reserved."""
        self.lines.append(line)
        self.used += self.cost(line)


# --------------------------------------------------------------------------- rendering helpers


def _ts(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _level(line: LogLine) -> str:
    return line.level.upper()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f" …[{len(text) - limit} more chars]"


def render_log_line(line: LogLine, limit: int = MAX_LINE_CHARS) -> str:
    """`<timestamp> <LEVEL> <service> | <message>`; continuation lines of a stack trace indented."""
    message = defang(_clip(line.message.rstrip(), limit))
    first, *rest = message.splitlines() or [""]
    head = f"{_ts(line.timestamp)} {_level(line)} {one_line(line.service, 100)} | {first}"
    return "\n".join([head, *("    " + part for part in rest)])


def _fmt_number(value: float | None, unit: str) -> str:
    if value is None:
        return "no data"
    return f"{value:.4g}{unit}" if unit in ("%", "ms", "s") else f"{value:.4g}{(' ' + unit) if unit else ''}"


def render_metric(metric: MetricDelta) -> str:
    now, base = metric.current, metric.baseline_7d
    text = (
        f"- {one_line(metric.name, 120)} [{one_line(metric.service, 100)}]:"
        f" now {_fmt_number(now, metric.unit)} vs 7d baseline {_fmt_number(base, metric.unit)}"
    )
    if metric.delta is not None:
        ratio = metric.ratio
        ratio_text = "n/a" if ratio is None else ("∞" if math.isinf(ratio) else f"×{ratio:.2f}")
        text += f"; delta {metric.delta:+.4g} ({ratio_text})"
    return text


def metric_change(metric: MetricDelta) -> float:
    """How far a metric moved from its 7-day baseline (|log ratio|); missing data sorts last."""
    ratio = metric.ratio
    if ratio is None:
        return -1.0  # missing data sorts last
    if math.isinf(ratio):
        return math.inf
    return abs(math.log(ratio)) if ratio > 0 else math.inf


def render_deployment(deployment: Deployment) -> str:
    parts = [
        f"- {_ts(deployment.created_at)} sha={deployment.sha} service={one_line(deployment.service, 100)}",
        f"ref={one_line(deployment.ref, 80) or '-'}",
        f"env={one_line(deployment.environment, 40)}",
        f"by={one_line(deployment.creator, 80) or '-'}",
    ]
    if deployment.status:
        parts.append(f"status={one_line(deployment.status, 40)}")
    text = " ".join(parts)
    if deployment.description:
        text += f": {one_line(deployment.description, 200)}"
    return text


def render_sources(bundle: ContextBundle) -> list[str]:
    lines = []
    reported = {source.kind for source in bundle.sources}
    for source in bundle.sources:
        client = one_line(source.client or source.name, 80)
        if source.status == "ok":
            lines.append(f"- {source.kind}: ok ({client}, {source.items} items)")
            if source.error:  # a partial answer (Kubernetes: a permission or a part that timed out)
                lines[-1] += f"; {one_line(source.error, 240)}"
        elif source.status == "not_configured":
            lines.append(
                f"- {source.kind}: NOT CONFIGURED ({client}); there is no {source.kind} evidence at all,"
                " which says nothing about the system's health"
            )
        else:
            error = one_line(source.error or "unknown error", 240)
            lines.append(
                f"- {source.kind}: UNAVAILABLE ({client}: {error}); missing {source.kind} here is a gap"
                " in the evidence, not a sign that all is well"
            )
    for kind in ("logs", "metrics", "deployments"):
        if kind not in reported:
            lines.append(f"- {kind}: not reported by the context stage (treat as unknown)")
    return lines


# --------------------------------------------------------------------------- templating


@dataclass
class _Template:
    service: str
    level: str
    template: str
    count: int = 0
    first: datetime | None = None
    last: datetime | None = None
    newest: LogLine | None = None
    oldest: LogLine | None = None


def _miner() -> TemplateMiner:
    config = TemplateMinerConfig()
    config.profiling_enabled = False
    config.drain_sim_th = 0.4
    config.drain_depth = 4
    config.masking_instructions = [
        MaskingInstruction(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "ID"
        ),
        MaskingInstruction(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b", "IP"),
        MaskingInstruction(
            r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?", "TS"
        ),
        MaskingInstruction(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{7,}\b", "HEX"),
        MaskingInstruction(
            r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:ms|us|s|m|h|B|KB|MB|GB|Ki|Mi|Gi|%)?(?![\w.])", "NUM"
        ),
    ]
    # config=... given explicitly: TemplateMiner would otherwise look for drain3.ini in the cwd.
    return TemplateMiner(persistence_handler=None, config=config)


def mine_templates(logs: Sequence[LogLine]) -> list[_Template]:
    """Group log lines by (service, level, drain3 template of the first message line)."""
    miner = _miner()
    cluster_of: dict[str, int] = {}
    # Identical first lines are mined once: 50,000 lines are often a few hundred distinct ones.
    for head in dict.fromkeys(line.message.split("\n", 1)[0].strip() for line in logs):
        cluster_of[head] = miner.add_log_message(head)["cluster_id"]
    templates_by_id = {cluster.cluster_id: cluster.get_template() for cluster in miner.drain.clusters}

    groups: dict[tuple[str, str, int], _Template] = {}
    for line in logs:
        head = line.message.split("\n", 1)[0].strip()
        cluster_id = cluster_of[head]
        key = (line.service, _level(line), cluster_id)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Template(line.service, _level(line), templates_by_id[cluster_id])
        group.count += 1
        if group.first is None or line.timestamp < group.first:
            group.first = line.timestamp
            group.oldest = line
        if group.last is None or line.timestamp >= group.last:
            group.last = line.timestamp
            group.newest = line
    return list(groups.values())


def _template_priority(template: _Template) -> tuple[int, int]:
    rank = _LEVEL_RANK.get(template.level, 3)
    # Errors and warnings: the loudest first. Info and below: the rarest first, since
    # one-off events (a restart, a config reload, a new version) date the incident.
    return (rank, -template.count if rank <= 2 else template.count)


# --------------------------------------------------------------------------- the budgeted rendering


def build_evidence(bundle: ContextBundle, max_tokens: int) -> EvidencePack:
    """Render `bundle` into at most `max_tokens` estimated tokens (see the module docstring)."""
    citable: list[str] = []
    cut: list[str] = []
    marker_room = 60  # tokens kept back in every section for its "… cut" marker
    out = _Writer(max_tokens)

    # 1-2. header: window, sources, deployments, metrics ------------------------------------
    header = _Writer(int(max_tokens * HEADER_SHARE))
    header.force(
        f"Evidence window: {_ts(bundle.window_start)} to {_ts(bundle.window_end)}"
        f" ({bundle.window_minutes} minutes); services queried: {', '.join(map(one_line, bundle.services)) or '-'}"
    )
    header.force("")
    header.force("## Sources")
    for line in render_sources(bundle):
        header.force(line)

    deployments = sorted(bundle.deployments, key=lambda d: d.created_at)
    shown_deployments = deployments[-MAX_DEPLOYMENTS:]
    header.force("")
    header.force(f"## Deployments ({len(deployments)}, oldest first; only these shas exist)")
    if not deployments:
        header.force("- none found in the window")
    if len(deployments) > len(shown_deployments):
        header.force(f"- …[{len(deployments) - len(shown_deployments)} older deployments not shown]")
        cut.append("deployments")
    kept: list[Deployment] = []
    for deployment in shown_deployments:
        # Deployments are never cut silently: a culprit must be one the model was shown.
        if not header.add(render_deployment(deployment), reserve=marker_room):
            header.force("- …[further deployments cut by the evidence budget]")
            cut.append("deployments")
            break
        kept.append(deployment)

    metrics = sorted(bundle.metrics, key=metric_change, reverse=True)
    header.force("")
    header.force(f"## Metrics ({len(metrics)}, now vs the same window 7 days ago, most changed first)")
    if not metrics:
        header.force("- none")
    for index, metric in enumerate(metrics):
        if index >= MAX_METRICS or not header.add(render_metric(metric), reserve=marker_room):
            header.force(f"- …[{len(metrics) - index} less-changed metrics cut]")
            cut.append("metrics")
            break
    for line in header.lines:
        out.force(line)

    # 3. log templates ----------------------------------------------------------------------
    logs = sorted(bundle.logs, key=lambda line: line.timestamp)
    templates = sorted(mine_templates(logs), key=_template_priority) if logs else []
    remaining = max(0, max_tokens - out.used)
    tmpl = _Writer(int(remaining * TEMPLATE_SHARE))
    tmpl.force("")
    tmpl.force(
        f"## Log templates ({len(logs)} lines in {len(templates)} templates; <NUM>, <HEX>, <ID>, <IP>, <TS>"
        " and <*> mark variable parts; the 'newest' and 'first' lines under each are verbatim)"
    )
    if not logs:
        tmpl.force("- no log lines")
    shown_templates = 0
    for template in templates:
        assert template.newest is not None and template.first is not None and template.last is not None
        examples = [render_log_line(template.newest, MAX_EXAMPLE_CHARS)]
        row = (
            f"- [{template.level} {one_line(template.service, 100)}] ×{template.count}"
            f" (first {_ts(template.first)}, last {_ts(template.last)}): {one_line(template.template, 300)}\n"
            f"    newest: {examples[0]}"
        )
        # The first occurrence too when it differs: it dates the onset, and a template
        # can hide the one variant that matters ("CLOSED to OPEN" vs "OPEN to HALF_OPEN").
        if template.oldest is not None and template.oldest.message != template.newest.message:
            examples.append(render_log_line(template.oldest, MAX_EXAMPLE_CHARS))
            row += f"\n    first: {examples[1]}"
        if not tmpl.add(row, reserve=marker_room):
            tmpl.force(f"- …[{len(templates) - shown_templates} more templates cut by the evidence budget]")
            cut.append("templates")
            break
        citable.extend(examples)
        shown_templates += 1
    for line in tmpl.lines:
        out.force(line)

    # 4. newest lines verbatim --------------------------------------------------------------
    counts = Counter((line.service, _level(line), line.message) for line in logs)
    newest_first: list[LogLine] = []
    seen: set[tuple[str, str, str]] = set()
    for line in reversed(logs):
        key = (line.service, _level(line), line.message)
        if key not in seen:
            seen.add(key)
            newest_first.append(line)
    body = _Writer(max(0, max_tokens - out.used))
    title = (
        "## Newest log lines (verbatim, oldest first; warnings and errors chosen first;"
        " (xN) = N identical lines in the window, newest shown)"
    )
    body.force("")
    body.force(title)
    # Two passes, newest first: errors and warnings may take up to URGENT_SHARE of the
    # section, so a flood of INFO access logs cannot push the failing lines out; then
    # the newest lines of any level fill the rest.
    urgent = _Writer(int((body.allowance - body.used) * URGENT_SHARE))
    picked: dict[int, str] = {}
    for writer, only_urgent in ((urgent, True), (body, False)):
        for index, line in enumerate(newest_first):
            if index in picked or (only_urgent and _LEVEL_RANK.get(_level(line), 3) > 2):
                continue
            rendered = render_log_line(line)
            count = counts[(line.service, _level(line), line.message)]
            text = f"(x{count}) {rendered}" if count > 1 else rendered
            if not writer.add(text, reserve=marker_room):
                break
            if writer is urgent:
                body.used += body.cost(text)
            picked[index] = text
    # Oldest first on display; `newest_first` order is kept for trimming.
    order = sorted(picked, key=lambda i: (newest_first[i].timestamp, -i))
    chosen_text = [picked[i] for i in reversed(order)]
    chosen_lines = [newest_first[i] for i in reversed(order)]

    def cut_marker(n_chosen: int) -> tuple[int, str | None]:
        shown = sum(counts[(line.service, _level(line), line.message)] for line in chosen_lines[:n_chosen])
        missing = len(logs) - shown
        if missing <= 0:
            return shown, None
        return shown, (
            f"[… {missing} log lines ({len(newest_first) - n_chosen} distinct) not shown verbatim: cut by the"
            " evidence budget, oldest and lowest level first; the templates above summarise them …]"
        )

    def assemble(n_chosen: int) -> str:
        _, marker = cut_marker(n_chosen)
        tail = ["", title, *([marker] if marker else []), *(["- no log lines"] if not logs else [])]
        return "\n".join([*out.lines, *tail, *reversed(chosen_text[:n_chosen])])

    n_chosen = len(chosen_text)
    text = assemble(n_chosen)
    # Forced lines (section titles, markers) are small but unbudgeted: trim the oldest
    # verbatim lines until the whole text is within budget, whatever the bundle.
    while estimate_tokens(text) > max_tokens and n_chosen > 0:
        n_chosen -= 1
        text = assemble(n_chosen)
    citable.extend(chosen_text[:n_chosen])
    shown_lines, marker = cut_marker(n_chosen)
    if marker:
        cut.append("log lines")
    cut_lines = len(logs) - shown_lines

    return EvidencePack(
        text=text,
        citable=citable,
        deployments=kept,
        estimated_tokens=estimate_tokens(text),
        max_tokens=max_tokens,
        log_lines_total=len(logs),
        log_lines_shown=shown_lines,
        log_lines_cut=max(0, cut_lines),
        templates_total=len(templates),
        templates_shown=shown_templates,
        sections_cut=sorted(set(cut)),
    )
