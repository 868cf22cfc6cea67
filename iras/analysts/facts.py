"""Facts computed from the evidence's structure, shared by the offline analyst and the prompts.

No phrase list decides here what an incident is (the small generic lexicons of
`iras.analysts.lexicon` only mark dependency phrasing, change verbs and failure
words). From the logs, metrics and deployments this module computes, deterministically:

1. **Candidates**: every service seen in logs, metrics and deployments, plus the
   components named inside messages (host:port, URLs, connection strings, Kubernetes
   `kind/name` references, `key=value` endpoints, vendor domains); a pod or replica
   name resolves to the workload it belongs to.
2. **Dependency edges** caller -> dependency, from lines in which a service names
   another candidate in a dependency phrasing ("timeout calling X", "connection
   refused by X:5432", a connection string in its configuration).
3. **Anomaly per candidate**: log lines are grouped into drain3 templates; a
   WARN/ERROR template that did not occur in the early part of the window (or whose
   rate jumped) is anomalous; each metric's deviation from its 7-day baseline adds.
   Lines of a service that mostly reports on others (an orchestrator, an exporter, a
   status feed) count for the candidate they name.
4. **Onset per candidate**: the first anomalous line of that candidate.
5. **Change events**: deployments, and log lines with a change verb plus a changed
   object or a before/after value; each linked to the candidates it touches and
   scored by how closely it precedes that candidate's onset.
6. **Ranking**: a personalized PageRank over the dependency graph (the MicroRCA /
   MonitorRank family): the walk starts at the alerting service and anomalous
   candidates, moves from a caller to its anomalous dependencies, and stays on a
   candidate in proportion to its own anomaly.

The public entry point is `compute_facts(facts, bundle) -> EvidenceFacts`;
`render_facts` turns the result into short text lines for a prompt.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from iras.analysts import lexicon as L
from iras.analysts.base import IncidentFacts
from iras.analysts.budget import _miner
from iras.schemas import ContextBundle, Deployment, LogLine, MetricDelta

# Share of the window (up to the alert) that serves as the "before" reference.
EARLY_SHARE = 0.35
RATE_JUMP = 3.0
LEVEL_WEIGHT = {"FATAL": 1.0, "CRITICAL": 1.0, "ERROR": 1.0, "ERR": 1.0, "WARN": 0.6, "WARNING": 0.6}
# A change this long before a candidate's onset no longer explains it.
CHANGE_HORIZON = timedelta(hours=12)
MAX_LINES_PER_CANDIDATE = 12


# --------------------------------------------------------------------------- result types


@dataclass
class Candidate:
    name: str
    kind: str  # "service" (has its own logs/metrics/deployments) | "component" | "external"
    sources: set[str] = field(default_factory=set)  # logs, metrics, deployments, mention, alert
    aliases: set[str] = field(default_factory=set)


@dataclass
class Edge:
    caller: str
    dependency: str
    count: int = 0
    weight: float = 0.0
    example: str = ""


@dataclass
class TemplateStat:
    subject: str
    service: str
    level: str
    template: str
    count: int = 0
    early_count: int = 0
    first: datetime | None = None
    first_after: datetime | None = None
    new: bool = False
    jump: float = 0.0
    score: float = 0.0
    observed: bool = False  # the lines are another service's view of `subject`
    first_line: LogLine | None = None
    last_line: LogLine | None = None


@dataclass
class MetricDeviation:
    metric: MetricDelta
    score: float
    failure: bool


@dataclass
class Anomaly:
    candidate: str
    score: float = 0.0
    log_score: float = 0.0
    metric_score: float = 0.0
    onset: datetime | None = None
    templates: list[TemplateStat] = field(default_factory=list)
    metrics: list[MetricDeviation] = field(default_factory=list)
    internal_failure: bool = False
    internal_lines: list[LogLine] = field(default_factory=list)

    @property
    def lines(self) -> list[LogLine]:
        """The first and last line of each anomalous template, strongest template first."""
        out: list[LogLine] = []
        for t in sorted(self.templates, key=lambda t: -t.score):
            for line in (t.first_line, t.last_line):
                if line is not None and line not in out:
                    out.append(line)
        return out[:MAX_LINES_PER_CANDIDATE]


@dataclass
class ChangeEvent:
    at: datetime
    kind: str  # "deployment" | "config"
    owner: str
    text: str
    line: LogLine | None = None
    deployment: Deployment | None = None
    targets: set[str] = field(default_factory=set)
    objects: set[str] = field(default_factory=set)
    # Filled against the candidate the change is linked to.
    linked: str | None = None
    minutes_before_onset: float | None = None
    score: float = 0.0
    verdict: str = ""


@dataclass
class EvidenceFacts:
    alert_service: str | None
    alert_time: datetime | None
    window_start: datetime | None
    window_end: datetime | None
    early_end: datetime | None
    candidates: dict[str, Candidate] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    anomalies: dict[str, Anomaly] = field(default_factory=dict)
    changes: list[ChangeEvent] = field(default_factory=list)
    # Final root-cause ranking (score normalised to the best = 1.0), and its parts.
    ranking: list[tuple[str, float]] = field(default_factory=list)
    pagerank: dict[str, float] = field(default_factory=dict)
    explained: dict[str, float] = field(default_factory=dict)
    mentions: dict[int, list[str]] = field(default_factory=dict)  # id(LogLine) -> candidates it names
    # Candidates that are data stores, by name or by what their own lines and their
    # connection strings say (a product name, a database port, a db scheme).
    datastores: set[str] = field(default_factory=set)
    reporters: set[str] = field(default_factory=set)
    alert_text: str = ""
    no_evidence: bool = False
    unavailable: list[str] = field(default_factory=list)

    def onset(self, name: str) -> datetime | None:
        a = self.anomalies.get(name)
        return a.onset if a else None

    def anomaly(self, name: str) -> float:
        a = self.anomalies.get(name)
        return a.score if a else 0.0

    def dependencies(self, name: str) -> list[Edge]:
        return [e for e in self.edges if e.caller == name]

    def callers(self, name: str) -> list[Edge]:
        return [e for e in self.edges if e.dependency == name]


# --------------------------------------------------------------------------- names


_POD_SEGMENT = re.compile(r"^(?=[a-z0-9]*\d)[a-z0-9]{4,10}$")
_ROLE_SUFFIX = {"primary", "replica", "leader", "master", "follower", "standby", "secondary", "canary"}
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://(?:[^@/\s]+@)?([a-z0-9][a-z0-9.-]*[a-z0-9])(?::\d+)?", re.I)
_HOST_PORT = re.compile(r"(?<![\w.:/-])([a-z][a-z0-9.-]*[a-z0-9]):(\d{2,5})\b", re.I)
_DOMAIN = re.compile(
    # Not followed by "/": "github.com/org/repo" in a stack trace is a code path, not a host.
    r"(?<![\w.@/-])((?:[a-z0-9-]+\.)+(?:com|net|org|io|dev|co|cloud|app|ai|us|eu|de|uk))(?![\w/-]|\.[a-z])",
    re.I,
)
_INTERNAL = re.compile(r"\.(svc|local|internal|lan|cluster|corp|intra)(\.|$)", re.I)
_KIND_REF = re.compile(
    r"\b(?:pod|deployment|statefulset|daemonset|job|cronjob|replicaset|node|service|svc|ingress|pvc"
    r"|persistentvolumeclaim|configmap|secret|hpa|horizontalpodautoscaler)s?/(?:[a-z0-9-]+/)?"
    r"([a-z0-9][a-z0-9.-]*[a-z0-9])",
    re.I,
)
_KV_REF = re.compile(
    r"\b(?:pod|host|hostname|upstream|backend|server|peer|broker|target|node|instance|service|svc|addr"
    r"|endpoint|db|database|cluster|container|app|workload|zone|az|datacenter|rack|link|interface|iface"
    r"|tunnel|router|switch|gateway|vip|nameserver|resolver)=\"?([a-z0-9][a-z0-9._-]*[a-z0-9])(?!:/)",
    re.I,
)
_HOST_PREFIX = re.compile(r"^\s*(?:\[[^\]]*\]\s*)?([a-z0-9][a-z0-9.-]*[-.\d][a-z0-9.-]*[a-z0-9]):\s", re.I)
# Source files in stack traces ("Client.kt:88") are not hosts.
# Distinctive tokens two services' errors can share: error codes (ORA-00257, MY-010055),
# object names with digits or separators (order-events-0, /var/lib/x).
_SHARED_TOKEN = re.compile(r"\b[A-Za-z][A-Za-z0-9]*(?:[-_./][A-Za-z0-9]+)*[-_][A-Za-z0-9]*\d[A-Za-z0-9]*\b")
_NOT_SHARED = re.compile(
    r"^(?:[0-9a-f-]{8,}|\d{4}-\d\d-\d\d.*|http-\S+|exec-\d+|thread-\d+|pool-\d+.*|.*-exec-\d+)$", re.I
)
_STORE_NAME = re.compile(
    r"(^|[-_.])(db|database|postgres\w*|pg|mysql|maria\w*|redis|mongo\w*|sql|rds|etcd|es|elasticsearch"
    r"|oracle|cassandra|kafka|broker|zookeeper|sentinel|memcached?)([-_.\d]|$)",
    re.IGNORECASE,
)
_STORE_PRODUCT = re.compile(
    r"\b(?:postgres(?:ql)?|mysqld?|mariadb|redis|mongod?b?|oracle|ORA-\d+|etcd|elasticsearch|opensearch|cassandra"
    r"|kafka|zookeeper|memcached|patroni|sentinel|innodb|wal|binlog|replica(?:tion)?)\b",
    re.IGNORECASE,
)
_DB_ENDPOINT = re.compile(
    r"(?:\b(?:postgres(?:ql)?|mysql|redis|mongodb|jdbc:\w+)://(?:[^@/\s]+@)?([a-z0-9][a-z0-9.-]*)"
    r"|\b([a-z][a-z0-9.-]*):(?:5432|3306|6379|27017|9042|1521|2379|9092)\b)",
    re.IGNORECASE,
)
_CODE_FILE = re.compile(
    r"\.(java|kt|kts|scala|groovy|py|go|rb|js|mjs|ts|tsx|cs|php|c|cc|cpp|h|rs|ex|exs|erl|clj|swift|vb)$", re.I
)
_TLD = re.compile(r"\.[a-z]{2,24}$", re.I)
_TOKEN = re.compile(r"[a-z0-9][a-z0-9_.-]*[a-z0-9]", re.I)
_OBJECT = re.compile(r"[a-z0-9][a-z0-9_./-]*[-_/.][a-z0-9_./-]*[a-z0-9]", re.I)


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def resolve(token: str, known: set[str]) -> str | None:
    """Map a host, pod, replica, URL or object name to a known candidate (or None).

    `orders-db-0`, `orders-db-primary.db.svc:5432`, `ledger-service-pn22mmpwjd-zkg7b`,
    `statement-renderer-db` resolve to the candidate they belong to; ambiguous
    prefixes resolve to nothing.
    """
    name = token.lower().strip("'\"()[]{},;<>`")
    name = re.sub(r"^[a-z][a-z0-9+.-]*://", "", name).split("/")[-1 if "://" not in token else 0]
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
            if "-".join(parts) in known:
                return "-".join(parts)
        else:
            break
    squashed = _squash(first)
    if len(squashed) >= 4:
        for svc in sorted(known):
            if _squash(svc) == squashed:
                return svc
    # A name built on a candidate's name at a hyphen boundary (`x-db`, `x-config`, `x-tls`):
    # the longest such candidate, when it is long enough not to be an English word.
    prefixed = [svc for svc in known if first.startswith(svc + "-") and len(svc) >= 5]
    if prefixed:
        return max(prefixed, key=len)
    if len(first) >= 6 and "." not in name:
        # "recommendations" for recommendations-service, when only one candidate fits.
        extended = [svc for svc in known if svc.startswith(first + "-")]
        if len(extended) == 1:
            return extended[0]
    return None


def _registered(host: str) -> str:
    labels = host.lower().split(".")
    return ".".join(labels[-2:]) if len(labels) >= 2 else host.lower()


def _external_name(host: str) -> str:
    return host.lower().rstrip(".")


def _vendor_label(host: str) -> str:
    labels = host.lower().split(".")
    return labels[-2] if len(labels) >= 2 else labels[0]


def _raw_mentions(message: str) -> list[tuple[str, str]]:
    """(name, how) for every component named in a message."""
    out: list[tuple[str, str]] = []
    head = message[:2000]
    for m in _URL.finditer(head):
        out.append((m.group(1), "url"))
    for m in _HOST_PORT.finditer(head):
        out.append((m.group(1), "hostport"))
    for m in _DOMAIN.finditer(head):
        out.append((m.group(1), "domain"))
    for m in _KIND_REF.finditer(head):
        out.append((m.group(1), "kind"))
    for m in _KV_REF.finditer(head):
        out.append((m.group(1), "kv"))
    m = _HOST_PREFIX.match(head)
    if m and m.group(1).islower() and re.search(r"[\d-]", m.group(1)):
        # Hosts, not code paths ("sqlalchemy.exc.TimeoutError:", "celery.app.trace:").
        out.append((m.group(1), "prefix"))
    return out


# --------------------------------------------------------------------------- main


def alert_service(facts: IncidentFacts) -> str | None:
    """The service the alert names: the incident's, else the first alert's, else a label."""
    if facts.service:
        return facts.service
    for alert in facts.alerts:
        if alert.service:
            return alert.service
        for key in ("service", "app", "container", "job"):
            if alert.labels.get(key):
                return alert.labels[key]
    return None


def _level(line: LogLine) -> str:
    return (line.level or "INFO").upper()


def _line_weight(line: LogLine) -> float:
    return _weight(_level(line), line.message)


@lru_cache(maxsize=65536)
def _weight(level: str, text: str) -> float:
    """How much a line counts as a failure; cached because every stage asks about every line."""
    w = LEVEL_WEIGHT.get(level, 0.0)
    if w:
        return w
    # Orchestrator events and container states are often logged at INFO.
    return 0.6 if _is_kubernetes_failure(text) else 0.0


def _is_kubernetes_failure(text: str) -> bool:
    return L.K8S_FAILURE_ANY.search(text) is not None


class _Builder:
    def __init__(self, facts: IncidentFacts, bundle: ContextBundle) -> None:
        self.facts = facts
        self.bundle = bundle
        self.logs = sorted(bundle.logs, key=lambda ln: ln.timestamp)
        self.alert_service = alert_service(facts)
        self.alert_time = facts.alert.timestamp if facts.alert else None
        self.candidates: dict[str, Candidate] = {}
        self.mentions: list[list[str]] = []  # per log line: candidates it names (not its own service)
        self.labels: dict[str, str] = {}  # vendor label -> external candidate
        # Domains in the alert itself (dashboards, the product's own site) are ours, not a vendor's.
        alert_blob = repr(facts.payload) + " ".join(a.model_dump_json() for a in facts.alerts)
        self.own_domains = {_registered(h) for h in _URL.findall(alert_blob)} | {
            _registered(h) for h in _DOMAIN.findall(alert_blob)
        }

    # ---------------------------------------------------------------- candidates
    def _add(self, name: str, kind: str, source: str) -> str:
        cand = self.candidates.get(name)
        if cand is None:
            cand = self.candidates[name] = Candidate(name, kind)
        cand.sources.add(source)
        if kind == "service" and cand.kind != "service":
            cand.kind = "service"
        return name

    def build_candidates(self) -> None:
        for ln in self.logs:
            self._add(ln.service, "service", "logs")
        for m in self.bundle.metrics:
            self._add(m.service, "service", "metrics")
        for d in self.bundle.deployments:
            self._add(d.service, "service", "deployments")
        if self.alert_service:
            self._add(self.alert_service, "service", "alert")
        services = set(self.candidates)
        # Components named inside messages.
        for ln in self.logs:
            named: list[str] = []
            failing = _line_weight(ln) > 0
            for raw, how in _raw_mentions(ln.message):
                svc = resolve(raw, services)
                if svc:
                    named.append(svc)
                    continue
                low = raw.lower()
                if _CODE_FILE.search(low) or (raw.isupper() and raw.isalpha()):
                    continue
                if (
                    "." in low
                    and _TLD.search(low)
                    and not _INTERNAL.search(low)
                    and how in ("url", "hostport", "domain")
                ):
                    if _registered(low) in self.own_domains:
                        continue
                    if re.fullmatch(r"[\d.]+", low) or low.startswith("status."):
                        continue
                    if not failing and how == "domain":
                        continue
                    name = self._add(_external_name(low), "external", "mention")
                    label = _vendor_label(low)
                    if len(label) >= 4 and label not in services:
                        self.labels.setdefault(label, name)
                    named.append(name)
                elif failing and how in ("hostport", "kind", "kv", "prefix", "url"):
                    if how == "hostport" and not re.search(r"[.-]", low):
                        # "pid:1234", "line:88": a bare word before a number is not a host.
                        continue
                    base = low.split(".")[0]
                    if re.fullmatch(r"[\d.]+", low) or len(base) < 3 or base.isdigit():
                        continue
                    parts = base.split("-")
                    while len(parts) > 1 and (
                        parts[-1].isdigit() or parts[-1] in _ROLE_SUFFIX or _POD_SEGMENT.match(parts[-1])
                    ):
                        parts = parts[:-1]
                    stem = "-".join(parts)
                    # A node named by its address ("ip-10-0-3-7") keeps its full name.
                    named.append(self._add(stem if len(stem) >= 5 else base, "component", "mention"))
            self.mentions.append(named)
        # Tokens naming a known candidate, and vendor labels ("AvaTax" for rest.avatax.com).
        known = set(self.candidates)
        stems = {svc.split("-")[0] for svc in known if "-" in svc and len(svc.split("-")[0]) >= 6}
        label_re = (
            re.compile(r"\b(" + "|".join(re.escape(k) for k in self.labels) + r")\b", re.I)
            if self.labels
            else None
        )
        for i, ln in enumerate(self.logs):
            named = self.mentions[i]
            for token in _TOKEN.findall(ln.message[:2000]):
                low = token.lower()
                if len(token) < 4 or (
                    "-" not in token and "." not in token and low not in known and low not in stems
                ):
                    continue
                svc = resolve(token, known)
                if svc:
                    named.append(svc)
            if label_re is not None:
                for m in label_re.finditer(ln.message[:2000]):
                    named.append(self.labels[m.group(1).lower()])
            self.mentions[i] = [n for n in dict.fromkeys(named) if n != ln.service]
        for label, name in self.labels.items():
            self.candidates[name].aliases.add(label)

    # ---------------------------------------------------------------- reporters & edges
    def reporters(self) -> set[str]:
        """Services whose failure lines are mostly about other candidates they name."""
        total: dict[str, int] = defaultdict(int)
        about: dict[str, int] = defaultdict(int)
        for i, ln in enumerate(self.logs):
            total[ln.service] += 1
            if self.mentions[i]:
                about[ln.service] += 1
        metric_services = {m.service for m in self.bundle.metrics}
        deployed = {d.service for d in self.bundle.deployments}
        out = set()
        for svc, n in total.items():
            if svc == self.alert_service or svc in deployed:
                continue
            if n >= 2 and about[svc] / n >= 0.6 and svc not in metric_services:
                out.add(svc)
        return out

    def edges(self, reporters: set[str]) -> list[Edge]:
        acc: dict[tuple[str, str], Edge] = {}
        for i, ln in enumerate(self.logs):
            if ln.service in reporters or not self.mentions[i]:
                continue
            first = ln.message.split("\n")[0]
            phrased = bool(L.DEPENDENCY_PHRASE.search(first))
            failing = _line_weight(ln) > 0
            if not (phrased or failing or _URL.search(first) or _HOST_PORT.search(first)):
                continue
            w = 1.0 if failing else 0.3 if phrased else 0.15
            for dep in self.mentions[i][:3]:
                e = acc.setdefault((ln.service, dep), Edge(ln.service, dep))
                e.count += 1
                e.weight += w
                if failing and not e.example:
                    e.example = first[:200]
        return sorted(acc.values(), key=lambda e: (-e.weight, e.caller, e.dependency))

    # ---------------------------------------------------------------- anomaly
    def anomalies(
        self, reporters: set[str], early_end: datetime | None
    ) -> tuple[dict[str, Anomaly], datetime | None]:
        miner = _miner()
        cluster: dict[str, int] = {}
        for head in dict.fromkeys(ln.message.split("\n", 1)[0].strip() for ln in self.logs):
            cluster[head] = miner.add_log_message(head)["cluster_id"]
        templates = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
        services_per_cluster: dict[int, set[str]] = defaultdict(set)
        for ln in self.logs:
            if _line_weight(ln) > 0:
                services_per_cluster[cluster[ln.message.split("\n", 1)[0].strip()]].add(ln.service)
        # A service with almost nothing logged in the early part has no baseline there:
        # its failures are judged as new rather than as "already normal".
        early_lines: dict[str, int] = defaultdict(int)
        if early_end is not None:
            for ln in self.logs:
                if ln.timestamp <= early_end:
                    early_lines[ln.service] += 1
        stats: dict[tuple[str, int, bool], TemplateStat] = {}
        for i, ln in enumerate(self.logs):
            weight = _line_weight(ln)
            if weight <= 0:
                continue
            cid = cluster[ln.message.split("\n", 1)[0].strip()]
            # Shared chatter: the same failure shape from three or more services.
            if len(services_per_cluster[cid]) >= 3:
                continue
            named = self.mentions[i]
            if ln.service in reporters and named:
                subject, observed = named[0], False
            else:
                subject, observed = ln.service, False
            keys = [(subject, cid, observed)]
            # A caller's failure naming a dependency is also evidence about that dependency.
            if ln.service not in reporters and named and L.DEPENDENCY_PHRASE.search(ln.message[:500]):
                keys.append((named[0], cid, True))
            for key in keys:
                st = stats.get(key)
                if st is None:
                    st = stats[key] = TemplateStat(key[0], ln.service, _level(ln), templates[cid])
                    st.observed = key[2]
                st.count += 1
                if st.first is None:
                    st.first = ln.timestamp
                    st.first_line = ln
                st.last_line = ln
                if (
                    early_end is not None
                    and ln.timestamp <= early_end
                    and early_lines[ln.service] >= 3
                    and (early_lines[ln.service] < sum(1 for x in self.logs if x.service == ln.service))
                ):
                    st.early_count += 1
                elif st.first_after is None:
                    st.first_after = ln.timestamp
        out: dict[str, Anomaly] = {name: Anomaly(name) for name in self.candidates}
        start = self.logs[0].timestamp if self.logs else None
        end = self.logs[-1].timestamp if self.logs else None
        early_span = (early_end - start).total_seconds() if early_end and start else 0.0
        late_span = (end - early_end).total_seconds() if early_end and end else 0.0
        for st in stats.values():
            level_w = LEVEL_WEIGHT.get(st.level, 0.6)
            after = st.count - st.early_count
            if after <= 0:
                continue
            if st.early_count == 0:
                st.new = True
                novelty = 1.0
            else:
                early_rate = st.early_count / max(early_span, 60.0)
                late_rate = after / max(late_span, 60.0)
                st.jump = late_rate / early_rate if early_rate else 0.0
                if st.jump < RATE_JUMP:
                    continue
                novelty = 0.4
            # One or two lines of a shape are weak evidence (background noise is rare
            # and scattered); an internal failure counts more than a complaint.
            repeat = 0.4 if after == 1 else 0.7 if after == 2 else 1.0
            head = st.first_line.message if st.first_line is not None else ""
            internal = 1.3 if (L.INTERNAL_FAILURE.search(head) or _is_kubernetes_failure(head)) else 1.0
            st.score = (
                level_w
                * novelty
                * repeat
                * internal
                * (1.0 + math.log1p(after))
                * (0.6 if st.observed else 1.0)
            )
            anomaly = out.setdefault(st.subject, Anomaly(st.subject))
            anomaly.templates.append(st)
        for anomaly in out.values():
            scores = sorted((t.score for t in anomaly.templates), reverse=True)
            # Diminishing returns: ten shapes of one failure are not ten independent facts.
            anomaly.log_score = sum(s / math.sqrt(i + 1) for i, s in enumerate(scores))
            own = [t for t in anomaly.templates if not t.observed]
            # Onset of the main failure: a stray line of a weak template does not start it.
            top_score = max((t.score for t in anomaly.templates), default=0.0)
            firsts = [
                t.first_after
                for t in anomaly.templates
                if t.first_after is not None and t.score >= 0.5 * top_score
            ]
            anomaly.onset = min(firsts) if firsts else None
            for t in own:
                line = t.first_line
                if line is None:
                    continue
                text = line.message
                head = text.split("\n")[0]
                if (L.INTERNAL_FAILURE.search(text) or _is_kubernetes_failure(text)) and not (
                    L.CLIENT_ERROR.search(head) and not _is_kubernetes_failure(head)
                ):
                    anomaly.internal_failure = True
                    anomaly.internal_lines.append(line)
        return out, early_end

    def metric_deviations(self, anomalies: dict[str, Anomaly]) -> None:
        label_re = {
            name: re.compile(r"(^|_)" + re.escape(_vendor_label(name)) + r"(_|$)", re.I)
            for name, c in self.candidates.items()
            if c.kind == "external"
        }
        for m in self.bundle.metrics:
            dev = metric_deviation(m)
            if dev is None:
                continue
            owners = [m.service]
            for name, rx in label_re.items():
                if rx.search(m.name):
                    owners = [name]
            for owner in owners:
                anomalies.setdefault(owner, Anomaly(owner)).metrics.append(dev)
        for a in anomalies.values():
            scores = sorted((d.score for d in a.metrics), reverse=True)
            a.metric_score = sum(s / (i + 1) for i, s in enumerate(scores))
            a.score = round(a.log_score + 0.8 * a.metric_score, 4)

    # ---------------------------------------------------------------- implicit edges
    def datastores(self) -> set[str]:
        """Candidates that are data stores: by name, by their own lines naming a data-store
        product, or by being reached on a database port or scheme."""
        out = {n for n in self.candidates if _STORE_NAME.search(n)}
        own: dict[str, list[str]] = defaultdict(list)
        for ln in self.logs:
            own[ln.service].append(ln.message[:300])
        for name, lines in own.items():
            hits = sum(1 for t in lines if _STORE_PRODUCT.search(t))
            if lines and hits >= max(2, 0.3 * len(lines)):
                out.add(name)
        for ln in self.logs:
            for m in _DB_ENDPOINT.finditer(ln.message[:1000]):
                svc = resolve(m.group(1) or m.group(2), set(self.candidates))
                if svc:
                    out.add(svc)
        return out

    def implicit_edges(self, anomalies: dict[str, Anomaly], ef: EvidenceFacts) -> None:
        """Edges no line states by name: a shared distinctive token, or a datastore client error.

        A victim often quotes its source's error code or object ("ORA-00257", a topic
        partition) without naming the host: the candidate that logged the token first
        is the source. A failing line with datastore client words points at an anomalous
        candidate whose name says it is a data store.
        """
        failing = [(i, ln) for i, ln in enumerate(self.logs) if _line_weight(ln) > 0]
        first_use: dict[str, dict[str, datetime]] = defaultdict(dict)
        services_using: dict[str, set[str]] = defaultdict(set)
        for _, ln in failing:
            for tok in set(_SHARED_TOKEN.findall(ln.message[:1500])):
                if _NOT_SHARED.match(tok) or ln.service.lower() in tok.lower():
                    continue
                services_using[tok].add(ln.service)
                first_use[tok].setdefault(ln.service, ln.timestamp)
        added: dict[tuple[str, str], Edge] = {}

        def add(i: int, caller: str, dep: str, example: str) -> None:
            if caller == dep or dep in self.mentions[i]:
                return
            self.mentions[i].append(dep)
            e = added.setdefault((caller, dep), Edge(caller, dep, example=example[:200]))
            e.count += 1
            e.weight += 0.8

        stores = [
            n for n, a in anomalies.items() if a.log_score > 0 and n in self.candidates and n in ef.datastores
        ]
        for i, ln in failing:
            for tok in set(_SHARED_TOKEN.findall(ln.message[:1500])):
                users = services_using.get(tok, set())
                if not 2 <= len(users) <= 3:
                    continue
                source = min(users, key=lambda u: first_use[tok][u])
                if source != ln.service and first_use[tok][source] <= ln.timestamp:
                    add(i, ln.service, source, ln.message.split("\n")[0])
            if stores and L.DATASTORE_WORD.search(ln.message[:1500]):
                for store in stores:
                    onset = anomalies[store].onset
                    if onset is not None and onset <= ln.timestamp and ln.service not in ef.datastores:
                        add(i, ln.service, store, ln.message.split("\n")[0])
        existing = {(e.caller, e.dependency): e for e in ef.edges}
        for key, e in added.items():
            if key in existing:
                existing[key].weight += e.weight
                existing[key].count += e.count
            else:
                ef.edges.append(e)

    # ---------------------------------------------------------------- changes
    def changes(self) -> list[ChangeEvent]:
        out: list[ChangeEvent] = []
        for d in self.bundle.deployments:
            out.append(
                ChangeEvent(
                    at=d.created_at,
                    kind="deployment",
                    owner=d.service,
                    text=f"deployment {d.ref or d.sha[:7]} of {d.service}: {d.description}"[:300],
                    deployment=d,
                    targets={d.service},
                )
            )
        known = set(self.candidates)
        for i, ln in enumerate(self.logs):
            first = ln.message.split("\n")[0][:600]
            # A change is announced, not failed: failure lines are not change events.
            if _line_weight(ln) >= 1.0 or L.CLIENT_ERROR.search(first) or not is_change_line(first):
                continue
            if re.search(r"\b(?:error|failed|failure|exception)\b", first, re.I):
                continue
            targets = set(self.mentions[i])
            objects = {o.lower() for o in _OBJECT.findall(first) if len(o) >= 6}
            owner = next((t for t in self.mentions[i] if t in known), ln.service)
            out.append(
                ChangeEvent(
                    at=ln.timestamp,
                    kind="config",
                    owner=owner,
                    text=first[:300],
                    line=ln,
                    targets=targets | {ln.service},
                    objects=objects,
                )
            )
        return out


_MESSAGE_KEYS = ("msg", "message", "@message", "log", "event", "text")
# Timestamps, levels and the emitter's own identity (the line's service already says who
# wrote it); the other fields are part of what the line says.
_SKIP_KEYS = {
    "ts",
    "time",
    "timestamp",
    "@timestamp",
    "level",
    "severity",
    "lvl",
    "logger",
    "logger_name",
    "service",
    "service_name",
    "caller",
}


_LOGFMT_PAIR = re.compile(r'([A-Za-z_@][\w.@-]*)=("(?:[^"\\]|\\.)*"|\S*)')


def _logfmt(text: str) -> dict[str, str] | None:
    """A logfmt line (`time=... level=error msg="..."`) as a dict; None when the line is not
    made only of key=value pairs or carries no message key."""
    pairs = list(_LOGFMT_PAIR.finditer(text))
    if len(pairs) < 2 or sum(len(m.group(0)) + 1 for m in pairs) < len(text):
        return None
    doc = {}
    for m in pairs:
        v = m.group(2)
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        doc[m.group(1)] = v
    return doc if any(k in doc for k in _MESSAGE_KEYS) else None


def unwrap_message(message: str) -> str:
    """A JSON-structured or logfmt log line read as text: its message first, then its other fields as
    key=value, so the same reading applies whatever the log format. Other lines unchanged."""
    text = message.strip()
    doc: Any
    if text.startswith("{") and text.endswith("}"):
        try:
            doc = json.loads(text)
        except ValueError:
            return message
    else:
        doc = _logfmt(text)
    if not isinstance(doc, dict) or not doc:
        return message
    head = next((str(doc[k]) for k in _MESSAGE_KEYS if isinstance(doc.get(k), str) and doc.get(k)), "")
    rest = " ".join(
        f"{k}={v}"
        for k, v in doc.items()
        if k not in _MESSAGE_KEYS and k not in _SKIP_KEYS and isinstance(v, str | int | float | bool)
    )
    return (head + (" " + rest if rest else "")).strip() or message


def normalize_bundle(bundle: ContextBundle) -> tuple[ContextBundle, dict[str, str]]:
    """The bundle with structured log lines unwrapped, and the way back to the verbatim text."""
    back: dict[str, str] = {}
    logs: list[LogLine] = []
    changed = False
    for ln in bundle.logs:
        text = unwrap_message(ln.message)
        if text != ln.message:
            changed = True
            back.setdefault(text, ln.message)
            ln = ln.model_copy(update={"message": text})
        logs.append(ln)
    if not changed:
        return bundle, back
    return bundle.model_copy(update={"logs": logs}), back


def is_change_line(text: str) -> bool:
    """A change verb applied to a changed object (config, flag, rule, secret, ...)."""
    return bool(
        L.CHANGE_VERB.search(text) and (L.CHANGE_OBJECT.search(text) or L.FEATURE_TOGGLE.search(text))
    )


_FAILURE_METRIC = re.compile(r"5xx|error|fail|declin|reject|timeout|evict|restart|oom|crash|kill", re.I)


def metric_deviation(m: MetricDelta) -> MetricDeviation | None:
    """How far a metric is from its 7-day baseline, as |log2 ratio|; None when within 1.5x."""
    if m.current is None or m.baseline_7d is None:
        return None
    cur, base = float(m.current), float(m.baseline_7d)
    if base == 0:
        if cur == 0:
            return None
        score = 3.0
    else:
        ratio = cur / base
        if ratio <= 0:
            score = 3.0
        elif 1 / 1.5 < ratio < 1.5:
            return None
        else:
            score = min(abs(math.log2(ratio)), 5.0)
    failure = bool(_FAILURE_METRIC.search(m.name)) and cur > base
    # A failure ratio measures impact (where it hurts), not where the cause lives.
    return MetricDeviation(m, round(score * (0.6 if failure else 1.0), 3), failure)


def _link_changes(ef: EvidenceFacts) -> None:
    """Score each change against the candidate it touches: close before onset = suspicious."""
    for ch in ef.changes:
        best: tuple[float, str, float | None, str] = (0.0, ch.owner, None, "")
        linked = {ch.owner} | ch.targets
        for name, a in ef.anomalies.items():
            shares_object = bool(ch.objects) and any(
                obj in ln.message.lower() for obj in ch.objects for ln in a.lines[:6]
            )
            if name not in linked and not shares_object:
                continue
            if a.score <= 0 or a.onset is None:
                continue
            delta = (a.onset - ch.at).total_seconds() / 60
            if delta < -1:
                verdict = "after the onset"
                score = 0.0
            elif delta > CHANGE_HORIZON.total_seconds() / 60:
                verdict = "long before the onset"
                score = 0.05
            else:
                # Closeness: full at <= 5 min, half at ~1 h, small at the horizon.
                score = 1.0 / (1.0 + max(delta - 5, 0) / 60)
                new_after = sum(
                    1
                    for t in a.templates
                    if t.new and t.first_after is not None and t.first_after >= ch.at - timedelta(minutes=1)
                )
                score *= 0.6 + 0.4 * min(1.0, new_after / 2)
                if shares_object:
                    score = min(1.0, score + 0.3)
                verdict = f"{delta:.0f} min before the onset of {name}"
            if score > best[0] or best[3] == "":
                best = (score, name, delta, verdict)
        score, name, delta, verdict = best
        ch.linked = name
        ch.minutes_before_onset = None if delta is None else round(delta, 1)
        ch.score = round(score, 3)
        ch.verdict = verdict or f"{name} shows no anomaly: innocent"


def _pagerank(ef: EvidenceFacts, iterations: int = 60, damping: float = 0.85) -> list[tuple[str, float]]:
    names = sorted(n for n in ef.candidates if ef.anomaly(n) > 0 or n == ef.alert_service)
    if not names:
        return []
    index = {n: i for i, n in enumerate(names)}
    anomaly = [ef.anomaly(n) for n in names]
    top = max(anomaly) or 1.0
    norm = [a / top for a in anomaly]
    # Transitions: caller -> dependency weighted by the dependency's anomaly; a self
    # loop in proportion to the node's own anomaly; a weak way back to callers.
    out: list[dict[int, float]] = [defaultdict(float) for _ in names]
    for e in ef.edges:
        if e.caller in index and e.dependency in index:
            i, j = index[e.caller], index[e.dependency]
            out[i][j] += min(e.weight, 5.0) * (0.1 + norm[j])
            out[j][i] += 0.1 * min(e.weight, 5.0) * (0.1 + norm[i])
    for i in range(len(names)):
        out[i][i] += 0.5 * norm[i] + 0.01
    personal = [0.2 + norm[i] for i in range(len(names))]
    if ef.alert_service in index:
        personal[index[ef.alert_service]] += 0.1
    total = sum(personal)
    personal = [p / total for p in personal]
    rank = personal[:]
    for _ in range(iterations):
        nxt = [(1 - damping) * p for p in personal]
        for i, row in enumerate(out):
            s = sum(row.values())
            for j, w in row.items():
                nxt[j] += damping * rank[i] * w / s
        rank = nxt
    return sorted(((n, rank[index[n]]) for n in names), key=lambda kv: (-kv[1], kv[0]))


def compute_facts(facts: IncidentFacts, bundle: ContextBundle) -> EvidenceFacts:
    """Everything the structure of the evidence says, before any category is chosen."""
    b = _Builder(facts, bundle)
    start = b.logs[0].timestamp if b.logs else None
    end = b.logs[-1].timestamp if b.logs else None
    ref = end
    if b.alert_time is not None and start is not None and end is not None and start < b.alert_time < end:
        ref = b.alert_time
    early_end = start + (ref - start) * EARLY_SHARE if start is not None and ref is not None else None
    ef = EvidenceFacts(
        alert_service=b.alert_service,
        alert_time=b.alert_time,
        window_start=start,
        window_end=end,
        early_end=early_end,
        alert_text="\n".join(
            [facts.title]
            + [a.title for a in facts.alerts]
            + [a.description or "" for a in facts.alerts]
            + [str(v) for a in facts.alerts for v in a.annotations.values()]
        ),
        no_evidence=not bundle.logs and not bundle.metrics and not bundle.deployments,
        unavailable=[f"{s.name} ({s.kind}): {s.status}" for s in bundle.sources if s.status != "ok"],
    )
    b.build_candidates()
    ef.candidates = b.candidates
    ef.reporters = b.reporters()
    ef.datastores = b.datastores()
    ef.edges = b.edges(ef.reporters)
    anomalies, _ = b.anomalies(ef.reporters, early_end)
    if sum(a.log_score for a in anomalies.values()) < 1.0 and b.logs:
        # Everything failing was already failing at the window's start: judge every
        # warning and error as if new rather than see nothing.
        anomalies, _ = b.anomalies(ef.reporters, None)
        ef.early_end = None
    b.implicit_edges(anomalies, ef)
    b.metric_deviations(anomalies)
    ef.anomalies = {k: v for k, v in anomalies.items() if k in ef.candidates or v.score > 0}
    for name in ef.anomalies:
        if name not in ef.candidates:
            ef.candidates[name] = Candidate(name, "component", {"mention"})
    ef.changes = b.changes()
    _link_changes(ef)
    ef.mentions = {id(ln): b.mentions[i] for i, ln in enumerate(b.logs)}
    ef.pagerank = dict(_pagerank(ef))
    ef.ranking = _root_ranking(ef)
    return ef


def names_in(ef: EvidenceFacts, line: LogLine) -> list[str]:
    """The candidates a log line names (other than its own service)."""
    return ef.mentions.get(id(line), [])


def _root_ranking(ef: EvidenceFacts) -> list[tuple[str, float]]:
    """PageRank, discounted where a candidate's own failures are explained by a failing dependency.

    A victim's errors name their source ("timeout calling X"); the share of its
    anomaly carried by such lines is `explained`. A candidate whose own logs show an
    internal failure, and one with no anomalous dependency failing earlier, is preferred.
    """
    scored: list[tuple[str, float]] = []
    for name, pr in ef.pagerank.items():
        a = ef.anomalies.get(name)
        if a is None or a.score <= 0:
            scored.append((name, pr * 0.2))
            continue
        own = [t for t in a.templates if not t.observed]
        total = sum(t.score for t in own)
        explained = 0.0
        for t in own:
            line = t.first_line
            if line is None:
                continue
            deps = [d for d in names_in(ef, line) if ef.anomaly(d) > 0 and d != name]
            if deps:
                explained += t.score
        share = explained / total if total else 0.0
        ef.explained[name] = round(share, 3)
        factor = 0.35 + 0.65 * (1 - share) if total else 1.0
        if a.internal_failure:
            factor *= 1.25
        earlier_dep = any(
            ef.anomaly(e.dependency) > 0
            and ef.onset(e.dependency) is not None
            and a.onset is not None
            and ef.onset(e.dependency) <= a.onset + timedelta(minutes=2)  # type: ignore[operator]
            for e in ef.dependencies(name)
        )
        if not earlier_dep:
            factor *= 1.2
        else:
            # A dependency went wrong first: this candidate is more likely its victim.
            factor *= 0.6
        scored.append((name, pr * factor))
    # Onset order among comparably anomalous candidates: the earliest is upstream.
    strong = [
        n for n, _ in scored if ef.anomaly(n) >= 0.5 * max((ef.anomaly(m) for m, _ in scored), default=0.0)
    ]
    timed = [n for n in strong if ef.onset(n) is not None]
    if len(timed) >= 2:
        first = min(timed, key=lambda n: (ef.onset(n), n))
        scored = [(n, s * 1.6 if n == first else s) for n, s in scored]
    # Metrics show where it hurts, logs show why: a candidate known only by its metrics
    # yields to one whose own logs fail.
    if any(ef.anomalies[n].log_score > 0 for n, _ in scored if n in ef.anomalies):
        scored = [
            (n, s * 0.5 if n in ef.anomalies and ef.anomalies[n].log_score == 0 else s) for n, s in scored
        ]
    top = max((s for _, s in scored), default=0.0) or 1.0
    return sorted(((n, round(s / top, 4)) for n, s in scored), key=lambda kv: (-kv[1], kv[0]))


# --------------------------------------------------------------------------- rendering


def _hm(t: datetime | None) -> str:
    return t.strftime("%H:%M:%SZ") if t else "-"


def render_facts(ef: EvidenceFacts, limit: int = 12) -> list[str]:
    """Short text lines: ranked candidates, edges, onsets and changes, for a prompt."""
    out: list[str] = []
    if ef.no_evidence:
        return ["no logs, metrics or deployments were available"]
    out.append("candidates (rank score, anomaly, onset, internal failure):")
    for name, score in ef.ranking[:limit]:
        a = ef.anomalies.get(name)
        out.append(
            f"- {name} [{ef.candidates[name].kind}] rank={score:.3f} anomaly={ef.anomaly(name):.2f} "
            f"onset={_hm(a.onset if a else None)}" + (" internal-failure" if a and a.internal_failure else "")
        )
    if ef.edges:
        out.append("dependency edges (caller -> dependency, weight):")
        out += [f"- {e.caller} -> {e.dependency} ({e.weight:.1f})" for e in ef.edges[:limit]]
    if ef.changes:
        out.append("changes (time, owner, minutes before the linked candidate's onset, score):")
        for ch in sorted(ef.changes, key=lambda c: -c.score)[:limit]:
            out.append(
                f"- {_hm(ch.at)} {ch.kind} {ch.owner}: {ch.verdict} score={ch.score:.2f}: {ch.text[:140]}"
            )
    return out
