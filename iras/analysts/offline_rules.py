"""Rules of the offline analyst: severity, category, culprit, remediation action.

The diagnosis is built in steps, each leaving a line in `reasoning`:

1. Read the alert: affected service, failure ratios and wording it states.
2. Classify every log line: noise (dropped), benign explanation, or failure /
   context signature from the catalogue; place each finding on the component it
   is about (its own service, the host or pod it names, or the peer it failed to
   reach — including third-party APIs outside our domains).
3. Read the metrics: failure ratios, latency ratios, availability, async queues.
4. Decide, in order of precedence:
   a. false alarm — only benign explanations and probe noise, user metrics at baseline;
   b. bad deploy — a release shortly before its own service's first code failures
      (or slow requests that callers time out on), confirmed by the version it logs;
   c. config change — a ConfigMap/flag/config reload shortly before the failures;
   d. otherwise the category with the most signature weight, and its culprit by
      category-specific placement, earliest deviation and metric support.
5. Severity from customer impact (README rules), action from the runbook rules,
   confidence from how much of the evidence agrees, evidence = verbatim lines.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from iras.analysts import signatures as S
from iras.analysts.base import IncidentFacts
from iras.analysts.runbooks import RunbookTarget
from iras.schemas import (
    Category,
    ContextBundle,
    Deployment,
    LogLine,
    MetricDelta,
    RootCauseHypothesis,
    RunbookAction,
    Severity,
)

MAX_EVIDENCE = 8
LEVEL_FACTOR = {"ERROR": 1.0, "CRITICAL": 1.0, "FATAL": 1.0, "WARN": 0.8, "WARNING": 0.8, "INFO": 0.4}
ROLE_VOTE = {"cause": 1.0, "symptom": 0.5, "context": 0.2}
# A release is suspected when its service's own failures begin within this window.
DEPLOY_WINDOW = timedelta(hours=2)
CONFIG_WINDOW = timedelta(minutes=45)

# Components that report on others (kernels, orchestrators, monitors, config tooling):
# a line they log is about the host/pod/service it names, never about themselves.
_REPORTER = re.compile(
    r"^(kernel|kubelet|systemd|kube-[\w-]+|alertmanager|prometheus|patroni|reloader|audit"
    r"|[\w-]*(exporter|monitor|poller|forwarder|audit|quality|inventory|checker|prober|synthetics?|watch|watcher)"
    r"|config-[\w-]+|[\w-]+-relay|[\w-]+-scheduler|[\w-]+-runner)$"
)
_DATASTORE = re.compile(r"(^|-)(db|database|postgres\w*|pg|mysql|maria\w*|redis|mongo\w*|sql|rds)(-|$)")
_DATASTORE_PORT = re.compile(r":(5432|3306|6379|27017|1433|1521)\b")
_DNS_COMPONENT = re.compile(r"dns")
_POD_SEGMENT = re.compile(r"^(?=[a-z0-9]*\d)[a-z0-9]{4,10}$")
_ROLE_SUFFIX = {
    "primary",
    "replica",
    "leader",
    "master",
    "follower",
    "standby",
    "secondary",
    "canary",
    "headless",
}
_TOKEN = re.compile(r"[a-z0-9][a-z0-9_.-]*[a-z0-9]", re.IGNORECASE)
_HOST_PREFIX = re.compile(r"^\s*(?:\[[^\]]*\]\s*)?([a-z0-9][a-z0-9.-]+[a-z0-9]):\s")
_URL_HOST = re.compile(r"https?://([a-z0-9.-]+\.[a-z]{2,})", re.IGNORECASE)
# A bare host name ending in a public suffix; not a dotted code path ("celery.app.trace").
_DOMAIN = re.compile(
    r"(?<![\w.-])([a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|dev|co|cloud|app|ai))(?![\w.-]*\w)",
    re.IGNORECASE,
)
_EMAIL_DOMAIN = re.compile(r"@([a-z0-9-]+\.[a-z.]+)", re.IGNORECASE)
_INTERNAL_SUFFIX = re.compile(r"\.(svc|local|internal|lan|cluster|corp)(\.|$)|\.svc\.", re.IGNORECASE)
_PERCENT_FAIL = re.compile(
    r"(?P<a>\d+(?:\.\d+)?)\s*%\s*(?:of\s+[\w\s/-]{0,40}?)?(?:fail|error|5xx|declin|time[sd]? ?out)"
    r"|(?:fail\w*|errors?|5xx|error rate|5xx ratio|failure ratio)\s*(?:ratio|rate)?\s*(?:is|at|of|above|:|=)?\s*(?P<b>\d+(?:\.\d+)?)\s*%",
    re.IGNORECASE,
)
_PERCENT_SUCCESS = re.compile(
    r"(?:success|availability|good)[\w\s]{0,20}?(?:below|under|at|=|:)\s*(?P<s>\d+(?:\.\d+)?)\s*%",
    re.IGNORECASE,
)
_DOWN_WORDS = re.compile(
    r"\bdown\b|unreachable|probe_success == 0|from (\d+)/\1 (probe )?locations|completely unavailable",
    re.IGNORECASE,
)
_ASYNC_WORDS = re.compile(r"backlog|\blag\b|queue|ready messages|consumer|enqueued|delayed", re.IGNORECASE)
_MONEY_WORDS = re.compile(r"price|total=|amount|invoice|\b0\.00\b|EUR|USD|GBP|revenue|refund", re.IGNORECASE)
_SLOW = re.compile(r"slow (request|query)|timed out after|took \d+ ?ms|duration_ms=\d{4,}", re.IGNORECASE)
_NO_DATA = re.compile(r"\bno ?data\b|\babsent\(|metrics? (missing|absent)", re.IGNORECASE)
_TENANT = re.compile(r"tenant=(\S+)", re.IGNORECASE)
_LOADTEST_TOOL = re.compile(r"\b(k6|locust|jmeter|gatling|vegeta|artillery)\b", re.IGNORECASE)


# --------------------------------------------------------------------------- data


@dataclass
class Finding:
    line: LogLine
    index: int
    sig: S.Signature
    weight: float
    location: str | None
    external: bool = False


@dataclass
class MetricRead:
    metric: MetricDelta
    ratio: float | None
    deviating: bool


@dataclass
class Context:
    facts: IncidentFacts
    bundle: ContextBundle
    alert_service: str | None
    alert_text: str
    alert_time: datetime | None
    known: set[str]
    own_domains: set[str]
    findings: list[Finding] = field(default_factory=list)
    benign: list[tuple[LogLine, str]] = field(default_factory=list)
    noise: int = 0
    metrics: list[MetricRead] = field(default_factory=list)
    externals: dict[str, str] = field(default_factory=dict)  # host -> culprit name
    status_lines: list[str] = field(default_factory=list)  # vendor status-page updates


@dataclass
class SeverityAssessment:
    severity: Severity
    confidence: float
    reasons: list[str] = field(default_factory=list)
    impact: str = ""


@dataclass
class Diagnosis:
    hypothesis: RootCauseHypothesis
    severity: Severity
    severity_reasons: list[str]
    action: RunbookAction


# --------------------------------------------------------------------------- alert


def alert_service(facts: IncidentFacts) -> str | None:
    if facts.service:
        return facts.service
    for alert in facts.alerts:
        if alert.service:
            return alert.service
        for key in ("service", "app", "container", "job"):
            if alert.labels.get(key):
                return alert.labels[key]
    return None


def alert_text(facts: IncidentFacts) -> str:
    parts: list[str] = [facts.title]
    for alert in facts.alerts:
        parts.append(alert.title)
        if alert.description:
            parts.append(alert.description)
        parts.extend(str(v) for v in alert.annotations.values())
        parts.extend(f"{k}={v}" for k, v in alert.labels.items())
    return "\n".join(p for p in parts if p)


def _alert_failure_ratio(text: str) -> float | None:
    """Largest failure share the alert text states, as a ratio (0..1)."""
    values: list[float] = []
    for m in _PERCENT_FAIL.finditer(text):
        raw = m.group("a") or m.group("b")
        if raw:
            values.append(float(raw) / 100)
    for m in _PERCENT_SUCCESS.finditer(text):
        values.append(1 - float(m.group("s")) / 100)
    values = [v for v in values if 0 <= v <= 1]
    return max(values) if values else None


def assess_alert_severity(facts: IncidentFacts) -> SeverityAssessment:
    """Severity from the alert alone (triage runs before the evidence is gathered).

    Failure shares stated in the alert decide (>= 90% P0, >= 20% P1, else P2);
    "down/unreachable from every location" is P0; otherwise the sender's label is
    only a hint (README: sender priorities can be wrong), so confidence stays low.
    """
    text = alert_text(facts)
    ratio = _alert_failure_ratio(text)
    if ratio is not None:
        if ratio >= 0.9:
            return SeverityAssessment(
                Severity.P0, 0.6, [f"alert states {ratio:.0%} failing (>= 90%)"], "service unavailable"
            )
        if ratio >= 0.2:
            return SeverityAssessment(
                Severity.P1, 0.6, [f"alert states {ratio:.0%} failing (>= 20%)"], "major degradation"
            )
        return SeverityAssessment(
            Severity.P2, 0.5, [f"alert states {ratio:.0%} failing (< 20%)"], "partial degradation"
        )
    if _DOWN_WORDS.search(text):
        return SeverityAssessment(
            Severity.P0, 0.5, ["alert says the service is down/unreachable"], "service unavailable"
        )
    hint = " ".join(a.severity_hint or "" for a in facts.alerts).lower()
    if any(w in hint for w in ("info", "p4", "p5", "low")):
        return SeverityAssessment(
            Severity.P3, 0.3, [f"sender severity {hint.strip()!r}; no impact stated"], ""
        )
    return SeverityAssessment(
        Severity.P2,
        0.3,
        ["no failure share in the alert; partial degradation assumed until evidence is read"],
        "",
    )


# --------------------------------------------------------------------------- entities


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def resolve(token: str, known: set[str]) -> str | None:
    """Map a host, pod, replica or URL name to a known service (or None).

    `orders-db-0`, `orders-db-primary.db.svc:5432`, `inventory-db-replica-2`,
    `ledger-service-pn22mmpwjd-zkg7b`, `userdirectory.v1.Directory` all resolve to the
    service they belong to; ambiguous prefixes resolve to nothing.
    """
    name = token.lower().strip("'\"()[]{},;<>`")
    name = re.sub(r"^[a-z]+://", "", name).split("/")[0]
    name = re.sub(r":\d+$", "", name)
    if not name:
        return None
    if name in known:
        return name
    first = name.split(".")[0]
    if first in known:
        return first
    parts = first.split("-")
    while len(parts) > 1:
        last = parts[-1]
        if last.isdigit() or last in _ROLE_SUFFIX or _POD_SEGMENT.match(last):
            parts = parts[:-1]
            candidate = "-".join(parts)
            if candidate in known:
                return candidate
        else:
            break
    squashed = _squash(first)
    for svc in known:
        if _squash(svc) == squashed:
            return svc
    if len(first) >= 5 and "." not in token:
        # Only at a name boundary: "recommendations" -> "recommendations-service", never
        # an English word that happens to start a service name ("payment", "check").
        matches = [svc for svc in known if svc.startswith(first + "-")]
        if len(matches) == 1:
            return matches[0]
    return None


def _is_reporter(service: str) -> bool:
    return bool(_REPORTER.match(service.lower()))


def _registered(domain: str) -> str:
    labels = domain.lower().split(".")
    return ".".join(labels[-2:]) if len(labels) >= 2 else domain.lower()


def _own_domains(facts: IncidentFacts, logs: list[LogLine]) -> set[str]:
    """Registered domains that belong to us: seen in our alert's links or staff e-mails."""
    text = repr(facts.payload) + " " + " ".join(a.model_dump_json() for a in facts.alerts)
    owned = {_registered(h) for h in _URL_HOST.findall(text)}
    for line in logs:
        owned.update(_registered(d) for d in _EMAIL_DOMAIN.findall(line.message))
    # Monitoring vendors' own domains in alert links are not our product either way.
    return owned


def _vendor_name(host: str, status_lines: list[str]) -> str:
    """Name a third-party dependency from its API host: api.vendor.com -> vendor-api.

    (A status-page component qualifier was tried and dropped: it guessed product
    names, e.g. "Programmable Messaging", that no one would call the dependency.)
    """
    return f"{host.lower().split('.')[-2]}-api"


def _mentions(message: str, own: str, known: set[str]) -> list[str]:
    out: list[str] = []
    for token in _TOKEN.findall(message):
        if len(token) < 3:
            continue
        svc = resolve(token, known)
        if svc and svc != own and svc not in out:
            out.append(svc)
    return out


def _host_subject(message: str, known: set[str]) -> str | None:
    m = _HOST_PREFIX.match(message)
    return resolve(m.group(1), known) if m else None


def _external_host(message: str, ctx_own: set[str]) -> str | None:
    for host in _URL_HOST.findall(message) + _DOMAIN.findall(message):
        if _INTERNAL_SUFFIX.search(host) or _registered(host) in ctx_own:
            continue
        if host.lower().startswith("status."):
            continue
        return host.lower()
    return None


# --------------------------------------------------------------------------- classification


def _probe_benign(logs: list[LogLine]) -> set[int]:
    """Failed synthetic-probe lines from a single location while >= 2 others pass."""
    passed: set[str] = set()
    failed: dict[str, list[int]] = defaultdict(list)
    for i, line in enumerate(logs):
        m = S.PROBE_RESULT.search(line.message)
        if not m:
            continue
        if m.group(2).lower() in ("passed", "success"):
            passed.add(m.group(1))
        else:
            failed[m.group(1)].append(i)
    if len(failed) == 1:
        (location,) = failed
        if len(passed - {location}) >= 2:
            return set(failed[location])
    return set()


def _locate(line: LogLine, sig: S.Signature, ctx: Context) -> tuple[str | None, bool]:
    """Where a finding belongs: (service or third-party name, is_external)."""
    own = line.service
    subject = _host_subject(line.message, ctx.known)
    mentions = _mentions(line.message, own, ctx.known)
    reporter = _is_reporter(own)
    if sig.locus == "target" or sig.name in ("replication_lag", "corrupt_page", "storage_burst_exhausted"):
        if mentions:
            return mentions[0], False
        if sig.category in (Category.DEPENDENCY_FAILURE, None):
            host = _external_host(line.message, ctx.own_domains)
            if host:
                return ctx.externals.setdefault(host, _vendor_name(host, ctx.status_lines)), True
            # "CircuitBreaker 'psp-vendor' OPEN": the vendor named without its host.
            for ext_host, name in ctx.externals.items():
                vendor = ext_host.split(".")[-2]
                if len(vendor) >= 3 and re.search(
                    r"\b" + re.escape(vendor) + r"\b", line.message, re.IGNORECASE
                ):
                    return name, True
        if subject:
            return subject, False
        if sig.locus == "target":
            # The line is about a peer (or a certificate, a host) it does not name in a
            # way we can place: unknown location, never the reporter itself.
            return None, False
        return (None if reporter else own), False
    if sig.category in (Category.DATABASE, Category.DATA_CORRUPTION) and not _DATASTORE.search(own):
        # A client quoting its data store's failure ("no primary", "too many clients")
        # places it on the data store it names.
        stores = [m for m in mentions if _DATASTORE.search(m)]
        if stores:
            return stores[0], False
    if sig.name == "dns_failure":
        # Name-resolution failures belong to the resolver when it reports them itself.
        return (own if _DNS_COMPONENT.search(own) else None), False
    if subject:
        return subject, False
    if reporter:
        return (mentions[0] if mentions else None), False
    if sig.role == "symptom":
        return own, False
    return own, False


def _unclassified_failure(line: LogLine) -> bool:
    """An ERROR, or a WARN that says something failed, that no signature explains."""
    level = line.level.upper()
    if level in ("ERROR", "CRITICAL", "FATAL"):
        return True
    return level in ("WARN", "WARNING") and bool(S.FAILURE_WORDS.search(line.message))


def _cross_service_chatter(logs: list[LogLine]) -> set[str]:
    """Warning/error shapes that unrelated services all log, already early in the window.

    The same message from three or more services that was there before anything broke
    is shared-library chatter (an APM agent, a log shipper), not the incident: real
    failures are logged differently by each caller, or start at the onset.
    """
    if not logs:
        return set()
    start, end = logs[0].timestamp, logs[-1].timestamp
    midpoint = start + (end - start) / 2
    services: dict[str, set[str]] = defaultdict(set)
    first: dict[str, datetime] = {}
    for line in logs:
        if line.level.upper() == "INFO":
            continue
        key = _template(line.message)
        services[key].add(line.service)
        if key not in first or line.timestamp < first[key]:
            first[key] = line.timestamp
    return {key for key, svcs in services.items() if len(svcs) >= 3 and first[key] <= midpoint}


def classify(ctx: Context) -> None:
    logs = ctx.bundle.logs
    probe_benign = _probe_benign(logs)
    load_tenants: set[str] = set()
    for line in logs:
        for sig in S.benign_of(line.message):
            if sig.name == "load_test":
                load_tenants.update(t for t in _TENANT.findall(line.message))
    # Vendor status pages and third-party hosts are read before lines are placed, so a
    # line that names only the vendor ("psp-vendor OPEN") can be placed on it too.
    ctx.status_lines = [
        ln.message for ln in logs if re.search(r"statuspage|status page", ln.message, re.IGNORECASE)
    ]
    for line in logs:
        if line.level.upper() == "INFO" or S.noise_of(line.message):
            continue
        host = _external_host(line.message, ctx.own_domains)
        if host and host not in ctx.externals:
            ctx.externals[host] = _vendor_name(host, ctx.status_lines)
    chatter = _cross_service_chatter(logs)
    for i, line in enumerate(logs):
        msg = line.message
        if S.noise_of(msg) or _template(msg) in chatter:
            ctx.noise += 1
            continue
        if i in probe_benign:
            ctx.benign.append((line, "single_location_probe"))
            continue
        benign = S.benign_of(msg)
        if benign or any(f"tenant={t}" in msg for t in load_tenants):
            ctx.benign.append((line, benign[0].name if benign else "load_test"))
            continue
        matched = S.failure_signatures(msg)
        level = LEVEL_FACTOR.get(line.level.upper(), 0.5)
        if not any(sig.role in ("cause", "symptom") for sig, _ in matched) and _unclassified_failure(line):
            matched.append((S.UNCLASSIFIED, S.UNCLASSIFIED.weight))
        for sig, weight in matched:
            location, external = _locate(line, sig, ctx)
            ctx.findings.append(Finding(line, i, sig, weight * level, location, external))


# --------------------------------------------------------------------------- metrics


_FAILURE_METRIC = re.compile(r"5xx|error|fail|429|4xx|declin|reject|timeout", re.IGNORECASE)
_SUCCESS_METRIC = re.compile(r"success|availability|probe_success|good", re.IGNORECASE)
_ASYNC_METRIC = re.compile(
    r"task|job|queue|consumer|_post_|sync|batch|import|export|lag|backlog|bulk", re.IGNORECASE
)
_LATENCY_METRIC = re.compile(r"latency|p99|p95|duration", re.IGNORECASE)
_DOWN_METRIC = re.compile(r"probe_success|ready_pods|available_replicas|availability", re.IGNORECASE)
_NON_USER_METRIC = re.compile(r"synthetic|canary|internal|grpc_client|dependency", re.IGNORECASE)


def read_metrics(ctx: Context) -> None:
    for m in ctx.bundle.metrics:
        ratio = m.ratio
        deviating = False
        if m.current is not None and m.baseline_7d is not None:
            cur, base = m.current, m.baseline_7d
            if base == 0:
                deviating = abs(cur) > 0
            elif ratio is not None:
                deviating = ratio >= 2 or ratio <= 0.5 or (abs(cur - base) / abs(base) >= 0.5)
        ctx.metrics.append(MetricRead(m, ratio, deviating))


def _is_subset_metric(m: MetricDelta, metrics: list[MetricDelta]) -> bool:
    """`edge_5xx_ratio_edge2` is one slice of `edge_5xx_ratio`: judge by the whole."""
    return any(o is not m and o.service == m.service and m.name.startswith(o.name + "_") for o in metrics)


def _failure_share(m: MetricDelta) -> float | None:
    if m.current is None or m.baseline_7d is None:
        return None
    unit = (m.unit or "").lower()
    if unit not in ("ratio", "", "percent", "%"):
        return None
    cur, base = float(m.current), float(m.baseline_7d)
    if unit in ("percent", "%"):
        cur, base = cur / 100, base / 100
    if not 0 <= cur <= 1:
        return None
    if _SUCCESS_METRIC.search(m.name) and not _FAILURE_METRIC.search(m.name):
        cur, base = 1 - cur, 1 - base
    elif not _FAILURE_METRIC.search(m.name):
        return None
    if cur - base < 0.01 or (base > 0 and cur / base < 2):
        return None
    return cur


def assess_severity(ctx: Context, category: Category, prospective_only: bool) -> tuple[Severity, list[str]]:
    """Severity from customer impact, following the scenario README's rules.

    The worst customer-facing signal decides: >= 90% failing or down is P0; >= 20%
    failing or a p99 on the alerted path >= 5x normal is P1; wrong money data is P1;
    async work that is only delayed, a fallback that hides the impact, or a minority
    of failures is P2; false alarms and not-yet-broken warnings are P3.
    """
    reasons: list[str] = []
    if category is Category.FALSE_ALARM:
        return Severity.P3, ["rule false_alarm => P3"]
    metrics = [r.metric for r in ctx.metrics]
    alerted = {ctx.alert_service} if ctx.alert_service else set()
    alerted |= {svc for svc in ctx.known if svc in ctx.alert_text}
    worst = Severity.P3 if prospective_only else Severity.P2
    if prospective_only:
        reasons.append("only prospective signals (e.g. expiry in the future): nothing broken yet")

    def bump(sev: Severity, why: str) -> None:
        nonlocal worst
        reasons.append(why)
        if sev.rank < worst.rank:
            worst = sev

    fallback_seen = False
    # The user path is the one that alerted: when it measures its own failures, a
    # dependency's worse error ratio (absorbed by retries or other providers) does not
    # set the severity.
    user_path = [
        m
        for m in metrics
        if m.service in alerted and _failure_share(m) is not None and not _ASYNC_METRIC.search(m.name)
    ]
    for m in metrics:
        if _is_subset_metric(m, metrics) or _NON_USER_METRIC.search(m.name):
            continue
        if user_path and m.service not in alerted and _failure_share(m) is not None:
            continue
        if "fallback" in m.name.lower():
            if (m.current or 0) > (m.baseline_7d or 0) * 2:
                fallback_seen = True
                bump(Severity.P2, f"{m.service} {m.name}={m.current} (fallback hides most impact) => P2")
            continue
        if _DOWN_METRIC.search(m.name) and m.current == 0 and (m.baseline_7d or 0) > 0:
            bump(Severity.P0, f"{m.service} {m.name}=0 (was {m.baseline_7d}): unavailable => P0")
            continue
        share = _failure_share(m)
        if share is None:
            continue
        if _ASYNC_METRIC.search(m.name):
            bump(Severity.P2, f"{m.service} {m.name}={share:.0%} on asynchronous work (delayed) => P2")
            continue
        if share >= 0.9:
            bump(Severity.P0, f"{m.service} {m.name}={share:.0%} failing (>= 90%) => P0")
        elif share >= 0.2:
            bump(Severity.P1, f"{m.service} {m.name}={share:.0%} failing (>= 20%) => P1")
        else:
            bump(Severity.P2, f"{m.service} {m.name}={share:.0%} failing (minority) => P2")
    for m in metrics:
        if not _LATENCY_METRIC.search(m.name) or _is_subset_metric(m, metrics):
            continue
        if m.service not in alerted or not m.ratio or m.ratio == float("inf"):
            continue
        if m.ratio >= 5 and not fallback_seen:
            bump(
                Severity.P1,
                f"{m.service} {m.name} is {m.ratio:.1f}x normal on the alerted path (>= 5x) => P1",
            )
    if category is Category.DATA_CORRUPTION and any(
        _MONEY_WORDS.search(f.line.message)
        for f in ctx.findings
        if f.sig.category is Category.DATA_CORRUPTION
    ):
        bump(Severity.P1, "wrong money data that customers act on => P1")
    if not any(r for r in reasons if "=>" in r):
        alert_ratio = _alert_failure_ratio(ctx.alert_text)
        if alert_ratio is not None and not _ASYNC_WORDS.search(ctx.alert_text):
            sev = Severity.P0 if alert_ratio >= 0.9 else Severity.P1 if alert_ratio >= 0.2 else Severity.P2
            bump(sev, f"alert states {alert_ratio:.0%} failing => {sev.value}")
        elif not prospective_only:
            reasons.append("no failure ratio measured: partial degradation => P2")
    return worst, reasons


# --------------------------------------------------------------------------- decisions


def _category_votes(findings: list[Finding]) -> dict[Category, float]:
    votes: dict[Category, float] = defaultdict(float)
    per_sig: dict[tuple[Category, str], list[float]] = defaultdict(list)
    for f in findings:
        cat = f.sig.category
        if cat is None:
            continue
        if (
            cat is Category.DEPENDENCY_FAILURE
            and f.sig.role == "symptom"
            and f.location
            and _looks_datastore(f)
        ):
            cat = Category.DATABASE
        per_sig[(cat, f.sig.name)].append(f.weight * ROLE_VOTE.get(f.sig.role, 0.2))
    for (cat, _), weights in per_sig.items():
        # Diminishing returns: 30 copies of one line are not 30 independent facts.
        weights.sort(reverse=True)
        votes[cat] += sum(w / math.sqrt(i + 1) for i, w in enumerate(weights))
    return votes


def _looks_datastore(f: Finding) -> bool:
    return bool((f.location and _DATASTORE.search(f.location)) or _DATASTORE_PORT.search(f.line.message))


def _first_time(findings: list[Finding]) -> datetime | None:
    return min((f.line.timestamp for f in findings), default=None)


def _own_failures(findings: list[Finding], service: str) -> list[Finding]:
    """Failures located in `service` itself (not ones it observed in a peer)."""
    return [
        f
        for f in findings
        if f.location == service and f.sig.role in ("cause", "symptom") and f.line.level.upper() != "INFO"
    ]


def _version_confirms(logs: list[LogLine], deploy: Deployment) -> LogLine | None:
    """The start-up line in which the deployed service names the released version."""
    version = re.sub(r"^(refs/tags/|v)", "", deploy.ref or "").lstrip("v")
    sha7 = deploy.sha[:7].lower()
    for line in logs:
        if line.service != deploy.service or line.timestamp < deploy.created_at - timedelta(minutes=2):
            continue
        text = line.message.lower()
        named = sha7 in text or (
            version and re.search(r"(?<![\d.])v?" + re.escape(version.lower()) + r"(?![\d])", text)
        )
        if named and (S.STARTUP_WORDS.search(line.message) or sha7 in text):
            return line
    return None


@dataclass
class DeploySuspect:
    deploy: Deployment
    first_failure: datetime
    kind: str
    version_line: LogLine | None
    findings: list[Finding]


def find_bad_deploy(ctx: Context) -> DeploySuspect | None:
    """A release followed by its own service's first code failures, or by a slowdown callers feel.

    Deployments of services whose own logs show no new failure are discounted, as are
    services whose errors only report a failing peer.
    """
    suspects: list[DeploySuspect] = []
    for deploy in ctx.bundle.deployments:
        svc = deploy.service
        own = _own_failures(ctx.findings, svc)
        code = [f for f in own if f.sig.category in (Category.BAD_DEPLOY,) or f.sig.name == "crashloop"]
        before = [f for f in code if f.line.timestamp < deploy.created_at]
        after = [
            f for f in code if deploy.created_at <= f.line.timestamp <= deploy.created_at + DEPLOY_WINDOW
        ]
        version_line = _version_confirms(ctx.bundle.logs, deploy)
        if after and not before:
            suspects.append(
                DeploySuspect(deploy, _first_time(after) or deploy.created_at, "code", version_line, after)
            )
            continue
        # Performance regression: the released service turns slow and callers time out on it.
        slow = [
            f
            for f in ctx.findings
            if f.line.service == svc
            and f.sig.name == "slow_request"
            and f.line.timestamp >= deploy.created_at
        ]
        slow_before = [
            f
            for f in ctx.findings
            if f.line.service == svc and f.sig.name == "slow_request" and f.line.timestamp < deploy.created_at
        ]
        callers = [
            f
            for f in ctx.findings
            if f.location == svc
            and f.line.service != svc
            and f.sig.role == "symptom"
            and f.line.timestamp >= deploy.created_at
        ]
        if slow and callers and not slow_before and version_line is not None:
            first = _first_time(slow) or deploy.created_at
            if first - deploy.created_at <= timedelta(minutes=30):
                suspects.append(DeploySuspect(deploy, first, "performance", version_line, slow + callers))
    if not suspects:
        return None
    # The release closest before its failures wins.
    return min(suspects, key=lambda s: s.first_failure - s.deploy.created_at)


@dataclass
class ConfigSuspect:
    owner: str
    at: datetime
    lines: list[LogLine]
    name: str | None


def _config_owner(lines: list[LogLine], ctx: Context, failing: set[str]) -> tuple[str | None, str | None]:
    """Which service a config change belongs to: named by the config object, else who applied it."""
    names: list[str] = []
    for line in lines:
        for m in S.CONFIG_NAME.finditer(line.message):
            value = next((g for g in m.groups() if g), None)
            if value:
                names.append(value)
    for value in names:
        base = re.sub(r"[-_.](config|configmap|cfg|settings|yaml|yml|json)$", "", value.lower())
        svc = resolve(base, ctx.known)
        if svc is None:
            tokens = [t for t in re.split(r"[-_.]", base) if len(t) >= 4]
            cands = sorted({s for s in ctx.known for t in tokens if t in s.split("-")})
            cands = [c for c in cands if not _is_reporter(c)]
            if len(cands) > 1 and failing:
                cands = [c for c in cands if c in failing] or cands
            svc = cands[0] if len(cands) == 1 else None
        if svc and not _is_reporter(svc):
            return svc, value
    # Otherwise the service that applied the change, preferring one that fails after it
    # (a flag proxy relays the change; the service that loaded it is the one breaking).
    appliers = [ln.service for ln in lines if not _is_reporter(ln.service)]
    failing_appliers = [svc for svc in appliers if svc in failing]
    chosen = failing_appliers or appliers
    return (chosen[0] if chosen else None), (names[0] if names else None)


def find_config_change(ctx: Context, onset: datetime | None) -> ConfigSuspect | None:
    """A config/flag change shortly before the first failures (not a code deploy)."""
    if onset is None:
        return None
    events: list[LogLine] = []
    last_settings: dict[str, str] = {}
    for line in ctx.bundle.logs:
        if S.noise_of(line.message):
            continue
        m = S.SETTINGS_LOADED.search(line.message)
        if m:
            body = re.sub(r"\s+", " ", m.group("body")).strip()
            previous = last_settings.get(line.service)
            last_settings[line.service] = body
            if previous is not None and previous != body:
                events.append(line)
            continue
        if S.CONFIG_CHANGE.search(line.message):
            events.append(line)
    window = [e for e in events if onset - CONFIG_WINDOW <= e.timestamp <= onset + timedelta(minutes=1)]
    if not window:
        return None
    failing = {f.location for f in ctx.findings if f.location and f.line.timestamp >= window[0].timestamp}
    owner, name = _config_owner(window, ctx, failing)
    if owner is None:
        return None
    # Settings lines of the owner show the value it now runs with.
    cited = list(window)
    for line in ctx.bundle.logs:
        recent = line.timestamp >= window[0].timestamp - timedelta(minutes=1)
        if line.service == owner and recent and S.SETTINGS_LOADED.search(line.message) and line not in cited:
            cited.append(line)
    return ConfigSuspect(owner, window[0].timestamp, cited, name)


def _onset(ctx: Context, findings: list[Finding]) -> datetime | None:
    """First failure that is part of the incident: clusters near the alert, not old warnings."""
    relevant = [f for f in findings if f.sig.role in ("cause", "symptom") and f.line.level.upper() != "INFO"]
    if not relevant:
        return None
    all_times = sorted(f.line.timestamp for f in relevant)
    # A lone warning is not an onset: failures start where they keep coming (>= 2 more
    # within the next 10 minutes).
    times = [
        t
        for i, t in enumerate(all_times)
        if sum(1 for u in all_times[i + 1 :] if u - t <= timedelta(minutes=10)) >= 2
    ] or all_times
    if ctx.alert_time is not None:
        # Ignore failures long before the alert (a renewal failing for weeks, a panic last night).
        recent = [t for t in times if t >= ctx.alert_time - timedelta(hours=2)]
        if recent:
            return recent[0]
    return times[0]


def _location_scores(findings: list[Finding], category: Category, ctx: Context) -> dict[str, float]:
    scores: dict[str, float] = defaultdict(float)
    per: dict[tuple[str, str], list[float]] = defaultdict(list)
    for f in findings:
        cat = f.sig.category
        if (
            cat is Category.DEPENDENCY_FAILURE
            and f.sig.role == "symptom"
            and f.location
            and _looks_datastore(f)
        ):
            cat = Category.DATABASE
        if cat is not category or not f.location:
            continue
        per[(f.location, f.sig.name)].append(f.weight * (1.0 if f.sig.role == "cause" else 0.6))
    for (loc, _), weights in per.items():
        weights.sort(reverse=True)
        scores[loc] += sum(w / math.sqrt(i + 1) for i, w in enumerate(weights))
    # Metric support: a location whose own metrics moved is more likely the culprit.
    for read in ctx.metrics:
        if read.deviating and read.metric.service in scores:
            scores[read.metric.service] += 0.5
    return scores


def _earliest_weighted(findings: list[Finding], scores: dict[str, float], category: Category) -> str | None:
    """Among strong candidates (>= half the best score), the one whose failures start first."""
    if not scores:
        return None
    best = max(scores.values())
    strong = [loc for loc, s in scores.items() if s >= best * 0.5]
    first: dict[str, datetime] = {}
    for f in findings:
        if f.location in strong and f.sig.category is category and f.sig.role != "context":
            t = f.line.timestamp
            if f.location not in first or t < first[f.location]:
                first[f.location] = t
    if category in (Category.DATA_CORRUPTION,) and first:
        return min(first, key=lambda loc: first[loc])
    return max(scores, key=lambda loc: scores[loc])


def _false_alarm(ctx: Context) -> tuple[bool, list[str]]:
    """No customer-facing failure left once noise and benign explanations are removed."""
    failure = sum(
        f.weight
        for f in ctx.findings
        if f.sig.role in ("cause", "symptom") and f.line.level.upper() != "INFO"
    )
    failing_metrics = [
        r.metric
        for r in ctx.metrics
        if _failure_share(r.metric) is not None
        and not _NON_USER_METRIC.search(r.metric.name)
        and not _is_subset_metric(r.metric, [x.metric for x in ctx.metrics])
    ]
    reasons: list[str] = []
    explained = [name for _, name in ctx.benign]
    if _NO_DATA.search(ctx.alert_text):
        # The alert is about missing telemetry, not a bad value.
        explained.append("no_data_alert")
    if failing_metrics:
        return False, reasons
    if explained and failure < 4.0:
        kinds = sorted(set(explained))
        reasons.append(
            f"rule false_alarm: benign explanation in the logs ({', '.join(kinds)}), "
            f"failure signature weight {failure:.1f} < 4, no user-facing failure metric above baseline"
        )
        return True, reasons
    if failure < 1.0:
        reasons.append("rule false_alarm: no failure signature in the logs and metrics within baseline")
        return True, reasons
    return False, reasons


def _false_alarm_culprit(ctx: Context) -> str:
    """The benign activity behind the alert: the load test, the probe, the maintenance job."""
    kinds = defaultdict(list)
    for line, name in ctx.benign:
        kinds[name].append(line)
    if kinds.get("load_test"):
        for line in kinds["load_test"]:
            tool = _LOADTEST_TOOL.search(line.message)
            if tool:
                return f"{tool.group(1).lower()}-loadtest"
        return kinds["load_test"][0].service
    if kinds.get("single_location_probe"):
        source = ctx.facts.source.lower()
        vendor = source if source not in ("generic", "") else kinds["single_location_probe"][0].service
        return f"{vendor}-synthetics"
    if kinds.get("monitoring_gap"):
        for line in kinds["monitoring_gap"]:
            named = re.search(r"\b([a-z0-9-]*(exporter|agent))\b", line.message, re.IGNORECASE)
            if named:
                return named.group(1).lower()
        return kinds["monitoring_gap"][0].service
    for name in ("maintenance_job", "log_rotation", "planned_change"):
        if kinds.get(name):
            return kinds[name][0].service
    return ctx.alert_service or (
        kinds["alert_flapping"][0].service if kinds.get("alert_flapping") else "unknown"
    )


# --------------------------------------------------------------------------- evidence


def _template(message: str) -> str:
    """A line's shape: tokens carrying digits (ids, paths, counters) collapse to '#'."""
    first_line = message.splitlines()[0].lower() if message else ""
    return re.sub(r"\S*\d\S*", "#", first_line)[:100]


def _kind(message: str) -> str:
    matched = S.failure_signatures(message)
    if matched:
        return matched[0][0].name
    benign = S.benign_of(message)
    return benign[0].name if benign else "other"


_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\d])")


def _corroborated(cited: list[tuple[float, LogLine]], ctx: Context) -> list[tuple[float, LogLine]]:
    """Prefer the line that shows the value the alert measured (the alert's "lag 942s"
    and the log's "lag=942s"), and lines up to the alert over lines after it."""
    alert_numbers = {n for n in _NUMBER.findall(ctx.alert_text) if len(n.replace(".", "")) >= 2}
    out: list[tuple[float, LogLine]] = []
    for score, line in cited:
        if alert_numbers and alert_numbers & set(_NUMBER.findall(line.message)):
            score += 0.3
        if ctx.alert_time is not None and line.timestamp > ctx.alert_time + timedelta(minutes=1):
            score -= 0.05
        out.append((score, line))
    return out


def _pick_evidence(ranked: list[tuple[float, LogLine]], limit: int = MAX_EVIDENCE) -> list[str]:
    """Verbatim lines, most relevant first and diverse.

    Lines are grouped by (service, kind of signature). Round one cites the best group
    members in group order, taking the latest of identical-shaped lines (the current
    state: the last lag, the last fd count); round two adds each group's earliest
    distinct line (the onset); the rest fills by score.
    """
    best: dict[str, tuple[float, LogLine]] = {}
    for score, line in ranked:
        prev = best.get(line.message)
        if prev is None or score > prev[0]:
            best[line.message] = (score, line)
    groups: dict[tuple[str, str], dict[str, tuple[float, LogLine]]] = defaultdict(dict)
    for score, line in best.values():
        shapes = groups[(line.service, _kind(line.message))]
        key = _template(line.message)
        prev = shapes.get(key)
        if prev is None or score > prev[0] or (score == prev[0] and line.timestamp > prev[1].timestamp):
            shapes[key] = (score, line)
    ordered_groups = sorted(
        groups.values(),
        key=lambda g: (-max(sc for sc, _ in g.values()), min(ln.timestamp for _, ln in g.values())),
    )
    out: list[str] = []

    def take(line: LogLine) -> None:
        if line.message not in out and len(out) < limit:
            out.append(line.message)

    for group in ordered_groups:
        members = sorted(group.values(), key=lambda item: (-item[0], -item[1].timestamp.timestamp()))
        take(members[0][1])
    for group in ordered_groups:
        members = sorted(group.values(), key=lambda item: (-item[0], item[1].timestamp))
        if len(members) > 1:
            take(members[0][1] if members[0][1].message not in out else members[1][1])
    rest = sorted(best.values(), key=lambda item: (-item[0], item[1].timestamp))
    cited_shapes = {_template(m) for m in out}
    for _, line in rest:
        if _template(line.message) not in cited_shapes:
            cited_shapes.add(_template(line.message))
            take(line)
    for _, line in rest:
        take(line)
    return out


# --------------------------------------------------------------------------- main


def build_context(facts: IncidentFacts, bundle: ContextBundle) -> Context:
    svc = alert_service(facts)
    known = {ln.service for ln in bundle.logs} | {m.service for m in bundle.metrics}
    known |= {d.service for d in bundle.deployments}
    if svc:
        known.add(svc)
    alert_time = facts.alert.timestamp if facts.alert else None
    ctx = Context(
        facts=facts,
        bundle=bundle,
        alert_service=svc,
        alert_text=alert_text(facts),
        alert_time=alert_time,
        known=known,
        own_domains=_own_domains(facts, bundle.logs),
    )
    classify(ctx)
    read_metrics(ctx)
    return ctx


_GAUGE = re.compile(
    r"\b(rss\w*|heap\w*|open_fds|fds|goroutines|threads|memory\w*|conns\w*)=(\d+)", re.IGNORECASE
)


def _growing_series(lines: list[str]) -> bool:
    """A leak: the same gauge logged >= 3 times, rising every time (fds, rss, heap)."""
    series: dict[str, list[int]] = defaultdict(list)
    for line in lines:
        for name, value in _GAUGE.findall(line):
            series[name.lower()].append(int(value))
    return any(len(v) >= 3 and all(b > a for a, b in zip(v, v[1:], strict=False)) for v in series.values())


def choose_action(
    rca: RootCauseHypothesis, bundle: ContextBundle, severity: Severity | None = None
) -> RunbookAction:
    """Runbook action for a diagnosis (README categories -> runbook enum)."""
    cat = rca.category
    # What the culprit itself logged decides between "restart it" and "give it more".
    own_lines = [
        ln.message
        for ln in bundle.logs
        if (ln.service == rca.culprit_service or ln.message.startswith(rca.culprit_service))
        and not S.noise_of(ln.message)
    ]
    text = "\n".join(rca.evidence + rca.contributing_factors + own_lines)
    hung = any(sig.name == "process_hang" for msg in own_lines for sig, _ in S.failure_signatures(msg))
    if cat is Category.FALSE_ALARM:
        return RunbookAction.NONE
    if cat is Category.BAD_DEPLOY:
        return (
            RunbookAction.ROLLBACK_DEPLOYMENT if rca.culprit_deployment_sha else RunbookAction.RESTART_SERVICE
        )
    if cat is Category.CONFIG_CHANGE:
        return RunbookAction.REVERT_CONFIG
    if cat is Category.CAPACITY:
        return RunbookAction.SCALE_OUT
    if cat is Category.CERTIFICATE_EXPIRY:
        return RunbookAction.RENEW_CERTIFICATE
    if cat is Category.RESOURCE_EXHAUSTION:
        return (
            RunbookAction.RESTART_SERVICE
            if S.LEAK_OR_STUCK.search(text) or _growing_series(own_lines)
            else RunbookAction.INCREASE_RESOURCE_LIMIT
        )
    if cat is Category.DATABASE:
        return (
            RunbookAction.FAILOVER if S.PRIMARY_DOWN.search(text) else RunbookAction.INCREASE_RESOURCE_LIMIT
        )
    if cat is Category.DATA_CORRUPTION:
        if rca.culprit_deployment_sha:
            return RunbookAction.ROLLBACK_DEPLOYMENT
        if _DATASTORE.search(rca.culprit_service) or re.search(
            r"replica|medium error|invalid page", text, re.I
        ):
            return RunbookAction.FAILOVER
        return RunbookAction.REVERT_CONFIG
    if cat is Category.NETWORK:
        return (
            RunbookAction.RESTART_SERVICE
            if _DNS_COMPONENT.search(rca.culprit_service)
            else RunbookAction.FAILOVER
        )
    if cat is Category.DEPENDENCY_FAILURE:
        if hung:
            # A hung or deadlocked internal service recovers by restarting it.
            return RunbookAction.RESTART_SERVICE
        if S.FAILOVER_AVAILABLE.search(text):
            return RunbookAction.FAILOVER
        if re.search(r"fallback", text, re.I) and severity is not None and severity.rank >= 2:
            return RunbookAction.NONE
        return RunbookAction.FAILOVER
    return RunbookAction.RESTART_SERVICE


def diagnose(facts: IncidentFacts, bundle: ContextBundle) -> Diagnosis:
    ctx = build_context(facts, bundle)
    reasoning: list[str] = [
        f"read {len(bundle.logs)} log lines ({ctx.noise} background noise ignored), "
        f"{len(bundle.metrics)} metrics, {len(bundle.deployments)} deployments",
    ]
    findings = [f for f in ctx.findings]

    # a. false alarm ---------------------------------------------------------
    is_fa, fa_reasons = _false_alarm(ctx)
    if is_fa:
        culprit = _false_alarm_culprit(ctx)
        ranked = [(2.0 if name != "alert_flapping" else 1.5, line) for line, name in ctx.benign]
        ranked += [(1.0, f.line) for f in findings if f.sig.role == "context"]
        evidence = _pick_evidence(ranked)
        reasoning += fa_reasons + [f"benign activity attributed to {culprit}"]
        hyp = RootCauseHypothesis(
            primary_cause=f"False alarm: the alert reflects {culprit} activity, not customer impact",
            category=Category.FALSE_ALARM,
            culprit_service=culprit,
            evidence=evidence,
            # No failure evidence and metrics at baseline already agree; a benign
            # explanation in the logs is a third, independent fact.
            confidence=0.8 if ctx.benign else 0.7,
            reasoning=reasoning,
            contributing_factors=["user-facing metrics within baseline"],
        )
        return Diagnosis(hyp, Severity.P3, ["rule false_alarm => P3"], RunbookAction.NONE)

    votes = _category_votes(findings)
    onset = _onset(ctx, findings)
    reasoning.append(
        "signature votes: "
        + ", ".join(f"{c.value}={v:.1f}" for c, v in sorted(votes.items(), key=lambda kv: -kv[1]))
    )

    # b. bad deploy ----------------------------------------------------------
    deploy = find_bad_deploy(ctx)
    config = None if deploy else find_config_change(ctx, onset)
    category: Category
    culprit: str
    sha: str | None = None
    cited: list[tuple[float, LogLine]] = []
    non_deploy_votes = {c: v for c, v in votes.items() if c is not Category.BAD_DEPLOY}
    top = (
        max(non_deploy_votes.items(), key=lambda kv: kv[1])[0]
        if non_deploy_votes
        else Category.DEPENDENCY_FAILURE
    )

    if deploy is not None:
        d = deploy.deploy
        category = Category.BAD_DEPLOY
        culprit, sha = d.service, d.sha
        delay = deploy.first_failure - d.created_at
        reasoning.append(
            f"rule deploy_before_first_failure: {d.service} {d.ref or ''} ({d.sha[:7]}) released at "
            f"{d.created_at:%H:%M}Z, its first own {deploy.kind} failure {int(delay.total_seconds() // 60)} min later"
            + (
                f"; running version confirmed by: {deploy.version_line.message[:120]!r}"
                if deploy.version_line
                else ""
            )
        )
        others = [x for x in bundle.deployments if x is not d]
        if others:
            reasoning.append(
                "discounted deployments: "
                + ", ".join(f"{x.service} ({x.sha[:7]})" for x in others)
                + " - no new own failures after them"
            )
        cited += [(3.0, f.line) for f in deploy.findings if f.location == d.service]
        cited += [
            (1.5, f.line) for f in deploy.findings if f.location != d.service or f.line.service != d.service
        ]
        if deploy.version_line:
            cited.append((2.8, deploy.version_line))
        # Lines the new version logs that the old never did (new code paths, new queries).
        before = {
            _template(ln.message)
            for ln in bundle.logs
            if ln.service == d.service and ln.timestamp < d.created_at
        }
        new_lines = [
            ln
            for ln in bundle.logs
            if ln.service == d.service
            and ln.timestamp >= d.created_at
            and _template(ln.message) not in before
            and not S.noise_of(ln.message)
        ]
        first_of_shape: dict[str, LogLine] = {}
        for ln in new_lines:
            first_of_shape.setdefault(_template(ln.message), ln)
        cited += [(1.2, ln) for ln in list(first_of_shape.values())[:6]]
        # Symptoms elsewhere that name the culprit (callers timing out, crash loops of its pods).
        cited += [(1.4, f.line) for f in findings if f.location == d.service and f.line.service != d.service]
        if top is Category.DATA_CORRUPTION and votes.get(Category.DATA_CORRUPTION, 0) > votes.get(
            Category.BAD_DEPLOY, 0
        ):
            category = Category.DATA_CORRUPTION
    elif config is not None:
        category = Category.CONFIG_CHANGE
        culprit = config.owner
        reasoning.append(
            f"rule config_change_before_failures: {config.name or 'configuration'} changed at {config.at:%H:%M:%S}Z "
            f"(applied by {', '.join(sorted({ln.service for ln in config.lines}))}), first failure at "
            f"{onset:%H:%M:%S}Z; owner {config.owner}"
            if onset
            else "rule config_change_before_failures"
        )
        cited += [(3.0, ln) for ln in config.lines]
        cited += [
            (2.0 if f.line.service == culprit else 1.6, f.line)
            for f in findings
            if f.sig.role in ("cause", "symptom") and f.line.timestamp >= config.at
        ]
    else:
        category = top
        # Release-less diagnosis: code failures alone are not a bad deploy.
        scores = _location_scores(findings, category, ctx)
        if category is Category.CERTIFICATE_EXPIRY:
            renewals = [f for f in findings if f.sig.name == "cert_renewal_failed" and f.location]
            if renewals:
                scores = defaultdict(float)
                for f in renewals:
                    scores[f.location] += f.weight  # type: ignore[index]
                reasoning.append("rule certificate_owner: the component whose renewal fails owns the expiry")
            elif not scores and ctx.alert_service:
                scores = {ctx.alert_service: 1.0}
        culprit_opt = _earliest_weighted(findings, scores, category)
        if culprit_opt is None:
            culprit_opt = ctx.alert_service or next(iter(sorted(ctx.known)), "unknown")
            reasoning.append(
                f"no located evidence for {category.value}: culprit defaults to the alerted service"
            )
        culprit = culprit_opt
        reasoning.append(
            f"rule strongest_signatures: {category.value} located at "
            + ", ".join(f"{loc}={s:.1f}" for loc, s in sorted(scores.items(), key=lambda kv: -kv[1])[:4])
        )
        if category is Category.DATA_CORRUPTION:
            producer = _corruption_release(ctx, findings)
            if producer is not None:
                culprit, sha = producer.service, producer.sha
                reasoning.append(
                    f"rule release_before_corruption: {producer.service} ({producer.sha[:7]}) released at "
                    f"{producer.created_at:%H:%M}Z before the first corrupted data and logs the data handling"
                )
                line = _version_confirms(bundle.logs, producer)
                if line:
                    cited.append((2.5, line))
        if bundle.deployments and sha is None:
            reasoning.append(
                "discounted deployments: "
                + ", ".join(f"{d.service} ({d.sha[:7]})" for d in bundle.deployments)
                + " - their services show no new own code failures after release"
            )

    # Evidence: the chosen category's lines, the culprit's first.
    for f in findings:
        cat = f.sig.category
        if (
            cat is Category.DEPENDENCY_FAILURE
            and f.sig.role == "symptom"
            and f.location
            and _looks_datastore(f)
        ):
            cat = Category.DATABASE
        # The category's lines, anything placed on the culprit, and how the alerted
        # service experiences it (its own symptoms).
        related = (
            cat is category
            or f.location == culprit
            or (
                f.line.service == ctx.alert_service
                and f.sig.role == "symptom"
                and f.sig is not S.UNCLASSIFIED
            )
            or (
                f.sig is S.UNCLASSIFIED
                and f.line.service == ctx.alert_service
                and bool(_mentions(f.line.message, f.line.service, ctx.known))
            )
        )
        if category is Category.CONFIG_CHANGE and f.sig.role in ("cause", "symptom"):
            related = True
        if not related:
            continue
        base = {"cause": 2.0, "symptom": 1.6, "context": 1.1}.get(f.sig.role, 1.0)
        if f.location == culprit:
            base += 0.6
        if f.line.service == ctx.alert_service:
            base += 0.2
        cited.append((base * (0.7 + 0.3 * LEVEL_FACTOR.get(f.line.level.upper(), 0.5)), f.line))
    if category is Category.CAPACITY:
        cited += [(2.1, f.line) for f in findings if f.sig.name == "load_driver"]
    evidence = _pick_evidence(_corroborated(cited, ctx))

    severity, sev_reasons = assess_severity(ctx, category, _prospective_only(findings, category))

    # Confidence reflects how many independent kinds of evidence agree.
    total = sum(votes.values()) or 1.0
    share = votes.get(category, 0.0) / total
    agreement: list[tuple[str, float]] = [("base", 0.3)]
    if deploy is not None or config is not None:
        # The change-before-failure correlation is the category's support.
        agreement.append(("a change precedes the first failures", 0.25))
        if (deploy is not None and deploy.version_line is not None) or (
            config is not None and len(config.lines) >= 2
        ):
            agreement.append(("the change is confirmed by the service's own logs", 0.1))
    else:
        agreement.append(
            (f"{share:.0%} of signature weight agrees with {category.value}", 0.25 * min(1.0, share * 1.5))
        )
    if any(f.location == culprit and f.sig.role in ("cause", "symptom") for f in findings):
        agreement.append((f"failures are placed on {culprit}", 0.1))
    # A third party has no metrics of ours: the services that report its failures stand in.
    reporters_of_culprit = {f.line.service for f in findings if f.location == culprit and f.external}
    if any(r.deviating and r.metric.service in ({culprit} | reporters_of_culprit) for r in ctx.metrics):
        agreement.append((f"metrics of {culprit} deviate from their 7-day baseline", 0.1))
        reasoning.append(f"metrics of {culprit} deviate from their 7-day baseline")
    if len(evidence) >= 3:
        agreement.append(("at least three supporting log lines", 0.1))
    if _alert_agrees(ctx, culprit, evidence):
        agreement.append(("the alert names the same component as the evidence", 0.1))
    confidence = round(min(0.95, sum(w for _, w in agreement)), 2)
    reasoning.append("confidence " + f"{confidence:.2f}: " + "; ".join(n for n, _ in agreement[1:]))

    primary = _primary_cause(category, culprit, sha, evidence)
    factors = [
        f"{r.metric.service} {r.metric.name} {r.metric.current} vs {r.metric.baseline_7d} {r.metric.unit}"
        for r in ctx.metrics
        if r.deviating
    ][:6]
    hyp = RootCauseHypothesis(
        primary_cause=primary,
        category=category,
        culprit_service=culprit,
        culprit_deployment_sha=sha,
        contributing_factors=factors,
        evidence=evidence,
        confidence=confidence,
        reasoning=reasoning + sev_reasons,
    )
    action = choose_action(hyp, bundle, severity)
    hyp.reasoning.append(f"runbook action {action.value} for {category.value}")
    return Diagnosis(hyp, severity, sev_reasons, action)


_NAME_TOKEN = re.compile(r"[a-z0-9][a-z0-9-]*[.-][a-z0-9.-]*[a-z0-9]", re.IGNORECASE)


def _alert_agrees(ctx: Context, culprit: str, evidence: list[str]) -> bool:
    """The alert and the cited lines point at the same thing (culprit or a host/resource name)."""
    text = ctx.alert_text.lower()
    if culprit.lower() in text:
        return True
    alert_names = {t.lower() for t in _NAME_TOKEN.findall(text) if len(t) >= 8}
    return any(
        t.lower() in alert_names for line in evidence for t in _NAME_TOKEN.findall(line) if len(t) >= 8
    )


def _prospective_only(findings: list[Finding], category: Category) -> bool:
    if category is not Category.CERTIFICATE_EXPIRY:
        return False
    active = [
        f for f in findings if f.sig.category is Category.CERTIFICATE_EXPIRY and f.sig.name != "cert_expiring"
    ]
    return not active


def _corruption_release(ctx: Context, findings: list[Finding]) -> Deployment | None:
    """A release shortly before the first corrupted data, by a service that handles that data."""
    corrupt = [f for f in findings if f.sig.category is Category.DATA_CORRUPTION and f.sig.role == "cause"]
    first = _first_time(corrupt)
    if first is None:
        return None
    candidates = []
    for d in ctx.bundle.deployments:
        if not (d.created_at <= first <= d.created_at + timedelta(hours=6)):
            continue
        handles = [
            f
            for f in findings
            if f.location == d.service
            and f.line.service == d.service
            and f.sig.category is Category.DATA_CORRUPTION
            and f.line.timestamp >= d.created_at
        ]
        if handles:
            candidates.append(d)
    return max(candidates, key=lambda d: d.created_at) if candidates else None


_CAUSE_TEXT = {
    Category.BAD_DEPLOY: "a faulty release of {svc}",
    Category.CONFIG_CHANGE: "a configuration change in {svc}",
    Category.RESOURCE_EXHAUSTION: "{svc} exhausted a resource (memory, file descriptors or disk)",
    Category.DEPENDENCY_FAILURE: "the dependency {svc} is failing or hanging",
    Category.CAPACITY: "load beyond the provisioned capacity of {svc}",
    Category.CERTIFICATE_EXPIRY: "an expired or expiring certificate ({svc})",
    Category.DATABASE: "the data store {svc} is failing",
    Category.NETWORK: "a network fault at {svc}",
    Category.DATA_CORRUPTION: "wrong or unreadable data produced by {svc}",
}


def _primary_cause(category: Category, culprit: str, sha: str | None, evidence: list[str]) -> str:
    text = _CAUSE_TEXT.get(category, "{svc}").format(svc=culprit)
    if sha:
        text += f" (release {sha[:7]})"
    if evidence:
        first = evidence[0].splitlines()[0]
        text += f"; e.g. {first[:160]}"
    return text[0].upper() + text[1:]


_POSTGRES = re.compile(r"postgres|patroni|PSQLException|pg_wal|\bWAL\b|:5432\b", re.IGNORECASE)
_TLS_NAME = re.compile(r"\b([a-z0-9][a-z0-9-]*-tls)\b")
_CERT_WORDS = re.compile(r"certif|tls|x509|ssl", re.IGNORECASE)
_MEMBER = re.compile(r"\b([a-z0-9][a-z0-9-]*?-(?:replica-|)\d+)\b")


def _resource_kind(text: str) -> str | None:
    """Which resource ran out, from the cited lines: decides what a limit increase raises."""
    lowered = text.lower()
    if re.search(r"max_connections|connection slots|too many (clients|connections)", lowered):
        return "connections"
    if re.search(
        r"burstbalance|iops|burst credits|seconds_behind|replica(tion)? lag|lag=\d+s|\bbehind\b", lowered
    ):
        return "iops"
    if re.search(
        r"no space left|disk (is )?full|usage (9\d|100)|used_pct=(9\d|100)|enospc|filesystem", lowered
    ):
        return "disk"
    if re.search(r"outofmemory|oomkill|heap|memory", lowered):
        return "memory"
    return None


def runbook_target(rca: RootCauseHypothesis, bundle: ContextBundle, namespace: str) -> RunbookTarget:
    """Fill the runbook step's parameters from the evidence (limits, replica counts, names).

    A third-party culprit is acted on through the service that calls it; a data store's
    failing member and a healthy member to promote are read from the lines that name them.
    """
    culprit = rca.culprit_service
    services = {ln.service for ln in bundle.logs} | {m.service for m in bundle.metrics}
    services |= {d.service for d in bundle.deployments}
    caller: str | None = None
    if culprit not in services:
        vendor = culprit.split("-")[0]
        counts: dict[str, int] = defaultdict(int)
        for ln in bundle.logs:
            if ln.level.upper() != "INFO" and re.search(
                r"\b" + re.escape(vendor) + r"\b", ln.message, re.IGNORECASE
            ):
                counts[ln.service] += 1
        caller = max(counts, key=lambda k: counts[k]) if counts else None
    text = "\n".join(ln.message for ln in bundle.logs if culprit in ln.message or ln.service == culprit)
    evidence_text = "\n".join(rca.evidence)
    hpa = re.search(r"maxReplicas=(\d+)", text)
    mem = re.search(r"memory limit=(\d+(?:Mi|Gi))", text)
    max_conn = re.search(r"max_connections=(\d+)", text)
    tls_counts: dict[str, int] = defaultdict(int)
    for ln in bundle.logs:
        if _CERT_WORDS.search(ln.message):
            for name in _TLS_NAME.findall(ln.message):
                tls_counts[name] += 1
    cert = max(tls_counts, key=lambda k: tls_counts[k]) if tls_counts else None
    cfg = None
    for ln in bundle.logs:
        m = re.search(r"(?:configmap/|name=|')([a-z0-9][a-z0-9.-]*-config)\b", ln.message)
        if m and culprit in m.group(1):
            cfg = m.group(1)
            break
    replicas = None
    for metric in bundle.metrics:
        if metric.service == culprit and metric.name in ("replicas", "ready_pods", "pods") and metric.current:
            replicas = int(metric.current)
    if replicas is None:
        found = re.search(r"\b(?:replicas|consumers|workers)=(\d+)\b", text)
        replicas = int(found.group(1)) if found else None
    # Members of a replicated store: the one in the failing lines, and another one seen healthy.
    failing_member = healthy_member = None
    # The failing member is the host that logs the errors itself ("orders-db-0: PANIC");
    # failing that, the member the cited lines name most.
    failing = [
        m.group(1)
        for ln in bundle.logs
        if ln.level.upper() == "ERROR"
        and (m := _HOST_PREFIX.match(ln.message))
        and m.group(1).startswith(culprit + "-")
    ] or [m for m in _MEMBER.findall(evidence_text) if m.startswith(culprit + "-")]
    if failing:
        failing_member = max(set(failing), key=failing.count)
        others = [m for m in _MEMBER.findall(text) if m.startswith(culprit + "-") and m != failing_member]
        healthy_member = max(set(others), key=others.count) if others else None
    notes = []
    if caller:
        notes.append(f"{culprit} is a third party: the step acts on {caller}, the service that calls it.")
    return RunbookTarget(
        service=caller or culprit,
        namespace=namespace,
        deployment_sha=rca.culprit_deployment_sha,
        config_name=cfg,
        certificate_name=cert,
        current_replicas=replicas,
        hpa_max_replicas=int(hpa.group(1)) if hpa else None,
        memory_limit=mem.group(1) if mem else None,
        resource_kind=_resource_kind(evidence_text),
        max_connections=int(max_conn.group(1)) if max_conn else None,
        failing_member=failing_member,
        healthy_member=healthy_member,
        primary_down=bool(S.PRIMARY_DOWN.search(evidence_text)),
        postgres=bool(_POSTGRES.search(text + evidence_text)),
        third_party=culprit if caller else None,
        extra_notes=notes,
    )
