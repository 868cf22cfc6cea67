"""Facts computed in code, rendered compactly for the model.

A model reading 200 raw log lines re-derives, unreliably, what code can count
exactly: which components appear, who calls whom, when each one started to
misbehave, and which changes landed how many minutes before that. This module
defines the small typed view of those facts the RCA prompt renders
(`ComputedFacts`) and `render_computed_facts`, which prints it as a bounded
`<computed_facts>` block.

`from_evidence_facts` fills the view from `iras.analysts.facts.compute_facts`
(drain3 novelty, onsets, dependency edges, change events linked to onsets, a
root-cause ranking). `basic_facts` fills it from a `ContextBundle` with plain
counting only: per-service ERROR/WARN counts and first error, metric deviations
from the 7-day baseline, edges where one service's log lines name another
service, and deployments as change events; it is the fallback when the facts
computation fails, so a bug there costs the prompt precision, not the stage.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from iras.analysts.prompts.common import clip_lines, data_block, one_line
from iras.schemas import ContextBundle, LogLine

if TYPE_CHECKING:
    from iras.analysts.facts import EvidenceFacts

MAX_CANDIDATES = 8
MAX_EDGES = 12
MAX_CHANGES = 10
MAX_SIGNALS = 4
MAX_QUIET = 20


@dataclass(frozen=True)
class CandidateFact:
    """One component that could hold the cause, with what code measured about it."""

    name: str
    anomaly: float | None = None  # how far from normal (0 = normal); None when not scored
    onset: datetime | None = None  # when this component's own anomaly started
    signals: tuple[str, ...] = ()  # short measured facts ("3 new ERROR templates", "p99 ×6.1")
    rank: float | None = None  # root-cause ranking, best = 1.0, when code ranked the candidates


@dataclass(frozen=True)
class EdgeFact:
    """`caller` depends on `callee`, as the caller's own log lines say."""

    caller: str
    callee: str
    count: int = 1
    example: str = ""  # the phrase that showed it


@dataclass(frozen=True)
class ChangeFact:
    """Something that changed: a deployment, a config or flag change, a rule push, a reload."""

    service: str
    at: datetime
    kind: str
    summary: str = ""
    sha: str | None = None
    # When code linked the change to the anomalous candidate it touches:
    linked: str | None = None
    minutes_before_onset: float | None = None
    verdict: str = ""  # e.g. "3 min before the onset of X", "X shows no anomaly: innocent"


@dataclass(frozen=True)
class ComputedFacts:
    candidates: Sequence[CandidateFact] = ()
    edges: Sequence[EdgeFact] = ()
    changes: Sequence[ChangeFact] = ()
    onset: datetime | None = None  # the incident's onset, when code could date it
    alert_time: datetime | None = None
    method: str = "counts"  # how the facts were computed, said in the block's header
    notes: Sequence[str] = field(default_factory=tuple)
    # Components seen in the evidence that code found nothing anomalous about: the benign
    # actor of a false alarm (a scanner, a load test, an agent) is often one of them.
    quiet: Sequence[str] = ()


# --------------------------------------------------------------------------- rendering


def _hm(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rank_key(candidate: CandidateFact) -> tuple[float, float, float]:
    rank = candidate.rank if candidate.rank is not None else -1.0
    anomaly = candidate.anomaly if candidate.anomaly is not None else -1.0
    onset = candidate.onset.timestamp() if candidate.onset is not None else math.inf
    return (-rank, -anomaly, onset)


def _minutes(later: datetime, earlier: datetime) -> str:
    minutes = (later - earlier).total_seconds() / 60
    if abs(minutes) < 0.05:
        return "at the same time as"
    word = "before" if minutes > 0 else "after"
    return f"{abs(minutes):.1f} min {word}"


def _change_line(change: ChangeFact, facts: ComputedFacts, onsets: dict[str, datetime | None]) -> str:
    head = f"- {_hm(change.at)} {one_line(change.kind, 40)} of {one_line(change.service, 100)}"
    if change.sha:
        head += f" sha={one_line(change.sha, 40)}"
    if change.summary:
        head += f" ({one_line(change.summary, 160)})"
    timing: list[str] = []
    if change.verdict:
        timing.append(one_line(change.verdict, 160))
    elif change.service in onsets:
        own = onsets[change.service]
        timing.append(
            f"{_minutes(own, change.at)} {one_line(change.service, 100)}'s own onset"
            if own is not None
            else f"{one_line(change.service, 100)} shows no anomaly of its own"
        )
    else:
        timing.append(f"{one_line(change.service, 100)} is not among the candidates")
    if facts.onset is not None:
        timing.append(f"{_minutes(facts.onset, change.at)} the incident onset")
    if facts.alert_time is not None:
        timing.append(f"{_minutes(facts.alert_time, change.at)} the alert")
    return f"{head}: {'; '.join(timing)}"


def render_computed_facts(facts: ComputedFacts, max_chars: int = 6000) -> str:
    """The facts as a `<computed_facts>` block of at most about `max_chars` characters.

    Candidates are shown most anomalous first, changes oldest first with their
    distance to the onset of their own service and of the incident, so a
    deployment of a quiet service reads as what it is.
    """
    lines = [
        f"(computed in code from the evidence by {one_line(facts.method, 60)}; check them against the lines)"
    ]
    if facts.alert_time is not None:
        lines.append(f"alert at: {_hm(facts.alert_time)}")
    if facts.onset is not None:
        lines.append(f"incident onset (first anomaly): {_hm(facts.onset)}")
    lines.extend(f"note: {one_line(note, 200)}" for note in facts.notes[:4])

    ranked = sorted(facts.candidates, key=_rank_key)
    ranked_by_code = any(c.rank is not None for c in ranked)
    order = "best root-cause rank first" if ranked_by_code else "most anomalous first"
    lines.append(f"candidates ({len(ranked)}, {order}):")
    if not ranked:
        lines.append("- none found")
    for candidate in ranked[:MAX_CANDIDATES]:
        parts = [one_line(candidate.name, 100)]
        if candidate.rank is not None:
            parts.append(f"rank {candidate.rank:.2f}")
        if candidate.anomaly is not None:
            parts.append(f"anomaly {candidate.anomaly:.2f}")
        parts.append(f"onset {_hm(candidate.onset)}" if candidate.onset else "no onset")
        parts.extend(one_line(signal, 120) for signal in candidate.signals[:MAX_SIGNALS])
        lines.append("- " + "; ".join(parts))
    if len(ranked) > MAX_CANDIDATES:
        lines.append(f"- …[{len(ranked) - MAX_CANDIDATES} quieter candidates not shown]")

    if facts.quiet:
        names = ", ".join(one_line(name, 80) for name in facts.quiet[:MAX_QUIET])
        more = f" …[{len(facts.quiet) - MAX_QUIET} more]" if len(facts.quiet) > MAX_QUIET else ""
        lines.append(f"other components seen, nothing anomalous found: {names}{more}")

    edges = sorted(facts.edges, key=lambda e: -e.count)
    lines.append(f"dependency edges ({len(edges)}, caller -> callee, from the caller's log lines):")
    if not edges:
        lines.append("- none found")
    for edge in edges[:MAX_EDGES]:
        text = f"- {one_line(edge.caller, 100)} -> {one_line(edge.callee, 100)} (×{edge.count})"
        if edge.example:
            text += f": {one_line(edge.example, 140)}"
        lines.append(text)
    if len(edges) > MAX_EDGES:
        lines.append(f"- …[{len(edges) - MAX_EDGES} more edges not shown]")

    onsets = {c.name: c.onset for c in facts.candidates}
    changes = sorted(facts.changes, key=lambda c: c.at)[-MAX_CHANGES:]
    lines.append(f"changes ({len(facts.changes)}, oldest first, with minutes before each onset):")
    if not changes:
        lines.append("- none found")
    lines.extend(_change_line(change, facts, onsets) for change in changes)

    return data_block("computed_facts", clip_lines(lines, max_chars, "computed facts"))


# --------------------------------------------------------------------------- computing the basic view


def _metric_deviation(current: float | None, baseline: float | None) -> float | None:
    """|log ratio| of now over the 7-day baseline; None when either side is missing."""
    if current is None or baseline is None:
        return None
    if baseline == 0 or current == 0:
        return None if current == baseline else math.inf
    if (current > 0) != (baseline > 0):
        return math.inf
    return abs(math.log(abs(current) / abs(baseline)))


def _ratio_text(current: float, baseline: float) -> str:
    if baseline == 0:
        return "from 0"
    return f"×{current / baseline:.3g}"


def basic_facts(bundle: ContextBundle, alert_time: datetime | None = None) -> ComputedFacts:
    """Counting-only facts from the bundle (see the module docstring).

    A candidate's onset is its first ERROR line in the window and its anomaly
    score blends its error share with its largest metric deviation; edges are
    log lines of one service naming another service of the bundle.
    """
    logs: list[LogLine] = sorted(bundle.logs, key=lambda line: line.timestamp)
    names: list[str] = list(
        dict.fromkeys(
            [line.service for line in logs]
            + [metric.service for metric in bundle.metrics]
            + [deployment.service for deployment in bundle.deployments]
        )
    )
    levels: dict[str, Counter[str]] = defaultdict(Counter)
    first_error: dict[str, datetime] = {}
    for line in logs:
        level = line.level.upper()
        levels[line.service][level] += 1
        if level in ("ERROR", "FATAL", "CRITICAL") and line.service not in first_error:
            first_error[line.service] = line.timestamp

    deviation: dict[str, tuple[float, str]] = {}
    for metric in bundle.metrics:
        value = _metric_deviation(metric.current, metric.baseline_7d)
        if value is None or metric.current is None or metric.baseline_7d is None:
            continue
        if metric.service not in deviation or value > deviation[metric.service][0]:
            deviation[metric.service] = (
                value,
                f"{metric.name} {_ratio_text(metric.current, metric.baseline_7d)} vs 7d",
            )

    candidates: list[CandidateFact] = []
    for name in names:
        counts = levels.get(name, Counter())
        total = sum(counts.values())
        errors = counts["ERROR"] + counts["FATAL"] + counts["CRITICAL"]
        signals: list[str] = []
        if total:
            signals.append(f"{errors} ERROR, {counts['WARN'] + counts['WARNING']} WARN of {total} lines")
        score_parts: list[float] = [errors / total if total else 0.0]
        if name in deviation:
            value, text = deviation[name]
            signals.append(text)
            # A tenfold change scores 0.7, a hundredfold ~0.9: saturating, never above 1.
            score_parts.append(1.0 if math.isinf(value) else 1 - math.exp(-value / 2))
        candidates.append(
            CandidateFact(
                name=name,
                anomaly=round(max(score_parts), 2),
                onset=first_error.get(name),
                signals=tuple(signals),
            )
        )

    # Who names whom: a caller's log line that mentions another known component by name.
    patterns = {
        name: re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])") for name in names if len(name) >= 3
    }
    edge_count: Counter[tuple[str, str]] = Counter()
    edge_example: dict[tuple[str, str], str] = {}
    for line in logs:
        if line.level.upper() not in ("ERROR", "WARN", "WARNING", "FATAL", "CRITICAL"):
            continue
        head = line.message.split("\n", 1)[0]
        for name, pattern in patterns.items():
            if name != line.service and pattern.search(head):
                key = (line.service, name)
                edge_count[key] += 1
                edge_example.setdefault(key, head)
    edges = [
        EdgeFact(caller=caller, callee=callee, count=count, example=edge_example[(caller, callee)])
        for (caller, callee), count in edge_count.items()
    ]

    changes = [
        ChangeFact(
            service=d.service,
            at=d.created_at,
            kind="deployment",
            summary=" ".join(part for part in (d.ref, d.description) if part),
            sha=d.sha,
        )
        for d in bundle.deployments
    ]
    onset = min(first_error.values()) if first_error else None
    return ComputedFacts(
        candidates=candidates,
        edges=edges,
        changes=changes,
        onset=onset,
        alert_time=alert_time,
        method="counting log levels, metric deltas and names",
        notes=("onset = first ERROR line in the window; an early error may be unrelated noise",)
        if onset
        else (),
    )


# --------------------------------------------------------------------------- from the facts module


def from_evidence_facts(ef: EvidenceFacts, limit: int = MAX_CANDIDATES * 2) -> ComputedFacts:
    """The view of `iras.analysts.facts.compute_facts`'s result this module renders.

    Candidates come in the facts module's root-cause ranking (drain3 novelty and
    metric deviations, personalized PageRank over the dependency edges), changes
    with the candidate each is linked to and its verdict.
    """
    candidates: list[CandidateFact] = []
    for name, rank in ef.ranking[:limit]:
        anomaly = ef.anomalies.get(name)
        signals: list[str] = []
        candidate = ef.candidates.get(name)
        if candidate is not None and candidate.kind != "service":
            signals.append(candidate.kind)
        if anomaly is not None:
            if anomaly.internal_failure:
                signals.append("internal failure in its own logs")
            new = [t for t in anomaly.templates if t.new and not t.observed]
            if new:
                signals.append(f"{len(new)} new WARN/ERROR template(s)")
            observed = [t for t in anomaly.templates if t.observed]
            if observed:
                signals.append(f"{len(observed)} template(s) reported by others")
            for deviation in sorted(anomaly.metrics, key=lambda d: -d.score)[:1]:
                metric = deviation.metric
                if metric.current is not None and metric.baseline_7d is not None:
                    signals.append(f"{metric.name} {_ratio_text(metric.current, metric.baseline_7d)} vs 7d")
        explained = ef.explained.get(name)
        if explained:
            signals.append(f"{explained:.0%} of its errors name a failing dependency")
        candidates.append(
            CandidateFact(
                name=name,
                anomaly=round(anomaly.score, 2) if anomaly is not None else 0.0,
                onset=anomaly.onset if anomaly is not None else None,
                signals=tuple(signals),
                rank=rank,
            )
        )
    edges = [
        EdgeFact(caller=e.caller, callee=e.dependency, count=e.count, example=e.example) for e in ef.edges
    ]
    changes = [
        ChangeFact(
            service=ch.owner,
            at=ch.at,
            kind=ch.kind,
            summary=ch.text,
            sha=ch.deployment.sha if ch.deployment is not None else None,
            linked=ch.linked,
            minutes_before_onset=ch.minutes_before_onset,
            verdict=ch.verdict,
        )
        for ch in ef.changes
    ]
    shown = {c.name for c in candidates}
    quiet = tuple(sorted(name for name in ef.candidates if name not in shown))
    onsets = [c.onset for c in candidates if c.onset is not None and (c.anomaly or 0) > 0]
    notes = [f"source {item}" for item in ef.unavailable]
    if ef.no_evidence:
        notes.append("no logs, metrics or deployments were available")
    return ComputedFacts(
        candidates=candidates,
        edges=edges,
        changes=changes,
        onset=min(onsets) if onsets else None,
        alert_time=ef.alert_time,
        method="drain3 novelty, metric deltas and PageRank over the edges",
        notes=tuple(notes),
        quiet=quiet,
    )
