"""A curated catalogue of generic log signatures.

Each signature is a regular expression for a failure mode that shows up in real
systems whoever runs them: connection pool exhaustion, OOM kills, expired
certificates, refused connections, full disks, deadlocks, replication lag, rate
limiting, thread-pool rejections, corrupted pages, panics … Nothing here names a
particular company, service or incident: the analyst is judged on incidents it
has never seen, so a pattern must describe the failure, not the example it came
from.

Roles:
* `cause`    – the failure mode is happening where the line places it;
* `symptom`  – something fails, usually because of something else (timeouts,
               refused connections, 5xx answers); the line's *target* is where to look;
* `context`  – supporting facts that are not failures (limits, stats, version
               lines, traffic drivers); cited as evidence, weigh little;
* `benign`   – explanations of an alert that is not a customer problem (load
               tests, log rotation, flapping, single-location probes);
* `noise`    – ordinary background failures (telemetry exporters, deprecations,
               client aborts) that must never be mistaken for the incident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from iras.schemas import Category

C = Category


@dataclass(frozen=True)
class Signature:
    name: str
    category: Category | None
    pattern: re.Pattern[str]
    weight: float = 1.0
    role: str = "cause"
    # "self": the failure is located where the line places it (its service, or the
    # host/pod it names); "target": the line observes a failure of a peer it names.
    locus: str = "self"
    description: str = ""


def _sig(
    name: str,
    category: Category | None,
    pattern: str,
    weight: float = 1.0,
    role: str = "cause",
    locus: str = "self",
    description: str = "",
) -> Signature:
    return Signature(
        name, category, re.compile(pattern, re.IGNORECASE), weight, role, locus, description or name
    )


# --------------------------------------------------------------------------- noise
# Matched first: a line that is noise is ignored entirely, even if a failure
# pattern also occurs in it ("Failed to export spans … connection error").
NOISE: list[Signature] = [
    _sig(
        "telemetry_export",
        None,
        r"export(ing)? (spans|traces|metrics|logs)|otel-collector|dropped \d+ spans|statsd: failed to flush"
        r"|Sentry transport|background queue full \(\d+ events\)|failed to (send|flush|report) (metrics|telemetry)"
        r"|harvest data|agent_listener|apm[- ]agent|trace[- ]agent|failed to (send|flush) (traces|spans|events|logs)",
        role="noise",
        description="telemetry pipeline failures do not affect users",
    ),
    _sig("deprecation", None, r"\bdeprecat", role="noise", description="deprecation warnings"),
    _sig(
        "client_abort",
        None,
        r"Request aborted by client|context canceled|client closed (the )?connection|broken pipe",
        role="noise",
        description="clients going away",
    ),
    _sig(
        "parsing_chatter",
        None,
        r"Could not parse User-Agent|clock skew of \d+s|DtypeWarning|HHH\d{6}|missing \"sizes\" prop",
        role="noise",
        description="library chatter",
    ),
    _sig(
        "flag_sdk_stream",
        None,
        r"(flag|flags) (SDK|client)[:,]? (streaming|stream)|falling back to polling|stream reconnect",
        role="noise",
        description="feature-flag SDK reconnects",
    ),
    _sig(
        "background_retry",
        None,
        r"^Retrying \S+ \S+ for audit|audit batch|^Retrying call to \S+ \(attempt \d+/\d+\)",
        role="noise",
        description="a single retry of background work",
    ),
    _sig(
        "stale_cron_auth",
        None,
        r"Unauthorized request to /internal/",
        role="noise",
        description="an internal cron with a stale token",
    ),
    _sig(
        "consent_analytics",
        None,
        r"consent-mode|\[analytics\]",
        role="noise",
        description="analytics configuration notices",
    ),
    _sig(
        "housekeeping_slow",
        None,
        r"(JWKS|model|token) cache refresh (slow|took)|cache refresh slow",
        role="noise",
        description="slow housekeeping",
    ),
]

# --------------------------------------------------------------------------- benign
BENIGN: list[Signature] = [
    _sig(
        "load_test",
        None,
        r"\bk6\b|\blocust\b|\bjmeter\b|\bgatling\b|\bvegeta\b|\bartillery\b|load ?test|stress ?test"
        r"|tenant=\S*(loadtest|load-test|perf)",
        role="benign",
        description="a load test generates the traffic",
    ),
    _sig(
        "planned_change",
        None,
        r"change \S+ approved|approved (change|window)|maintenance window|planned (maintenance|test|failover)",
        role="benign",
        description="a planned, approved change window",
    ),
    _sig(
        "maintenance_job",
        None,
        r"\b(nightly|scheduled|weekly) (backup|maintenance|vacuum|compaction)|\bbackup (started|progress|completed|finished)"
        r"|pg_basebackup|pg_dump|mysqldump|xtrabackup",
        role="benign",
        description="a scheduled maintenance job (backup, vacuum) explains the resource usage",
    ),
    _sig(
        "log_rotation",
        None,
        r"\blogrotate\b|rotating (pattern|log)|compressing log|log needs rotating|removing old log",
        role="benign",
        description="log rotation writes temporary files",
    ),
    _sig(
        "alert_flapping",
        None,
        r"\[resolved\]|alert \S+ (is )?flapping|changed state \d+ times",
        role="benign",
        description="the alert itself resolves and re-fires (flapping)",
    ),
    _sig(
        "monitoring_gap",
        None,
        r"scrape (failed|error)|scrape of target|(Killing|Stopping|Started) container \S*(exporter|agent)\b"
        r"|\S*exporter\S* (restarted|rescheduled)",
        role="benign",
        description="the telemetry pipeline itself had a gap (exporter restarted, scrape failed)",
    ),
]

# Synthetic-probe result lines: failures from one location while the others pass
# are a probe problem, not a user problem (decided in offline_rules).
PROBE_RESULT = re.compile(r"location=(\S+)\s+result=(passed|failed|success|failure)", re.IGNORECASE)

# --------------------------------------------------------------------------- failures
CATALOGUE: list[Signature] = [
    # --- resource exhaustion -------------------------------------------------
    _sig(
        "oom_killed",
        C.RESOURCE_EXHAUSTION,
        r"\bOOMKill(ed|ing)\b|Memory cgroup out of memory|out of memory: kill(ed)? process",
        3.0,
    ),
    _sig(
        "heap_exhausted",
        C.RESOURCE_EXHAUSTION,
        r"OutOfMemoryError|Java heap space|GC overhead limit exceeded|JavaScript heap out of memory"
        r"|MemoryError\b|Cannot allocate memory",
        3.0,
    ),
    _sig("full_gc_no_headroom", C.RESOURCE_EXHAUSTION, r"Pause Full\b.*\d+M->\d+M\(\d+M\)", 1.5),
    _sig(
        "fd_exhausted",
        C.RESOURCE_EXHAUSTION,
        r"too many open files|\bEMFILE\b|file descriptors? exhausted",
        3.0,
    ),
    _sig(
        "disk_full",
        C.RESOURCE_EXHAUSTION,
        r"no space left on device|\bENOSPC\b|disk (is )?full|filesystem (is )?full|EvictionThresholdMet"
        r"|DiskPressure|ephemeral[- ]storage",
        3.0,
    ),
    _sig(
        "background_worker_stopped",
        C.RESOURCE_EXHAUSTION,
        r"\b(janitor|cleaner|evict\w*|sweeper|reaper|compactor|purge\w*)\b.{0,60}\b(stopped|disabled|stuck|not running|died)\b",
        1.5,
    ),
    _sig(
        "volume_usage_high",
        C.RESOURCE_EXHAUSTION,
        r"(volume|disk|filesystem) usage high|used_pct=(9\d|100)\b|\busage (9\d|100)(\.\d+)?%"
        r"|(disk|volume|filesystem)\b.{0,40}\b(9\d|100)(\.\d+)?% (full|used)",
        1.5,
    ),
    _sig(
        "resource_limit_stats",
        C.RESOURCE_EXHAUSTION,
        r"open_fds=\d+|max_fds=\d+|heap max=|memory limit=|used_pct=\d+|avail_bytes=|rss(_mb|_bytes)?=\d+"
        r"|heap_used(_mb)?=\d+|memstats",
        0.4,
        role="context",
    ),
    # --- database -------------------------------------------------------------
    _sig(
        "db_connection_slots",
        C.DATABASE,
        r"remaining connection slots are reserved|too many clients already|too many connections"
        r"|connection limit exceeded|max_connections.*(reached|exceeded)",
        3.0,
    ),
    _sig("db_limit_stats", C.DATABASE, r"max_connections=\d+", 0.4, role="context"),
    _sig(
        "pool_timeout",
        C.DATABASE,
        r"Connection is not available, request timed out|pool (is )?exhausted|unable to acquire (a )?(JDBC )?connection"
        r"|could not obtain (a )?connection|Could not open JPA EntityManager",
        1.5,
        role="symptom",
    ),
    _sig(
        "replication_lag",
        C.DATABASE,
        r"replication lag|replica(tion)? lag|\blag=\d+(\.\d+)?s\b|WAL replay is behind|stale reads"
        r"|Seconds_Behind_(Master|Source)|\b\d+\s?s(ec(onds)?)? behind\b|behind (the )?(primary|master|source)",
        2.0,
    ),
    _sig(
        "storage_burst_exhausted",
        C.DATABASE,
        r"BurstBalance=0%|burst (balance|credits) (exhausted|depleted)",
        2.5,
    ),
    _sig(
        "db_io_error",
        C.DATABASE,
        r"could not (fsync|write|read) (file|block)|PANIC:\s|Input/output error",
        3.0,
    ),
    _sig(
        "block_device_error",
        C.DATABASE,
        r"blk_update_request: .*error|Buffer I/O error|medium error",
        1.5,
    ),
    _sig(
        "no_leader",
        C.DATABASE,
        r"cluster has no leader|no (primary|leader) (available|elected|found)|not healthy enough for leader race"
        r"|exceeds maximum replication lag|has no (primary|leader)\b|ReplicaSetNoPrimary|not enough votes",
        2.5,
    ),
    _sig(
        "sql_deadlock",
        C.DATABASE,
        r"deadlock detected|Deadlock found when trying to get lock|lock wait timeout exceeded",
        2.5,
    ),
    # --- certificates ---------------------------------------------------------
    _sig(
        "cert_expired",
        C.CERTIFICATE_EXPIRY,
        r"certificate (has )?expired|CertificateExpiredException|CERTIFICATE_EXPIRED|certificate is not yet valid",
        3.0,
        role="symptom",
        locus="target",
    ),
    _sig(
        "cert_renewal_failed",
        C.CERTIFICATE_EXPIRY,
        r"renewal failed|error renewing|failed to (renew|issue) (the )?cert|error presenting challenge"
        r"|pki\S*/issue\S*.*(denied|error)|Order \S+ state=errored|acme:error|Failed to create Order"
        r"|failed to (obtain|issue|renew)\b.{0,30}certificate|challenge (failed|invalid)",
        2.5,
    ),
    _sig(
        "tls_bad_certificate",
        C.CERTIFICATE_EXPIRY,
        r"tls: bad certificate|SSLHandshakeException|certificate verify failed",
        1.0,
        role="symptom",
    ),
    # expiring soon: weight is decided from the number of days (see expiring_weight)
    _sig(
        "cert_expiring",
        C.CERTIFICATE_EXPIRY,
        r"(certificate|cert)\b.{0,200}?expires? (in )?(?P<days>\d+) days|expires \S+ \((?P<days2>\d+) days?\)",
        2.5,
        locus="target",
    ),
    # --- network --------------------------------------------------------------
    _sig("link_down", C.NETWORK, r"Link (is )?down\b|link status definitely down|carrier (lost|down)", 3.0),
    _sig(
        "tunnel_down",
        C.NETWORK,
        r"DPD timeout|peer \S+ considered dead|tunnel \S* ?(is )?(down|flapping)|IKE_SA \S+ (deleted|failed)",
        3.0,
    ),
    _sig(
        "routing_session_down",
        C.NETWORK,
        r"BGP\S*.{0,60}\b(Down|Idle)\b|hold time(r)? expired|OSPF\S*.{0,60}\b(Down|dead timer)",
        3.0,
    ),
    _sig(
        "unreachable",
        C.NETWORK,
        r"no route to host|Network is unreachable|EHOSTUNREACH|ENETUNREACH",
        1.5,
        role="symptom",
        locus="target",
    ),
    _sig("lb_backend_down", C.NETWORK, r"Layer[47] timeout|<NOSRV>", 1.5),
    _sig(
        "dns_failure",
        C.NETWORK,
        r"UnknownHostException|no such host|Temporary failure in name resolution|SERVFAIL|NXDOMAIN"
        r"|:53: (read udp \S+ )?i/o timeout|:53: i/o timeout|->\S+:53: i/o timeout|DNS: Timeout|could not resolve host",
        2.0,
        role="symptom",
    ),
    _sig("conntrack_full", C.NETWORK, r"nf_conntrack: table full|conntrack table full", 2.0),
    # --- dependencies (symptoms: the line names the peer that fails) ----------
    _sig(
        "connection_refused",
        C.DEPENDENCY_FAILURE,
        r"Connection refused|ECONNREFUSED|Errno 111|ConnectionRefusedError|Connection to \S+ refused",
        1.5,
        role="symptom",
        locus="target",
    ),
    _sig(
        "upstream_5xx",
        C.DEPENDENCY_FAILURE,
        r"\b50[234]\b[^\n]{0,40}(Service Unavailable|Bad Gateway|Gateway Timeout)|(Service Unavailable|Bad Gateway|Gateway Timeout) from"
        r"|no live upstreams|upstream connect error|no healthy upstream",
        1.0,
        role="symptom",
        locus="target",
    ),
    _sig(
        "timeout",
        C.DEPENDENCY_FAILURE,
        r"timed out|DeadlineExceeded|deadline exceeded|SocketTimeoutException|Read timed out|i/o timeout",
        1.0,
        role="symptom",
        locus="target",
    ),
    _sig(
        "circuit_open",
        C.DEPENDENCY_FAILURE,
        r"CircuitBreaker \S+ changed state from \w+ to OPEN|circuit (breaker )?(is )?open|No healthy \S+ available",
        2.0,
        role="symptom",
        locus="target",
    ),
    _sig(
        "provider_unavailable",
        C.DEPENDENCY_FAILURE,
        r"ProviderUnavailable|provider unavailable",
        1.0,
        role="symptom",
        locus="target",
    ),
    _sig(
        "vendor_status",
        C.DEPENDENCY_FAILURE,
        r"statuspage update|status page|Elevated error rates|Degraded performance|Major outage|Partial outage",
        1.0,
        role="context",
        locus="target",
    ),
    _sig(
        "fallback_served",
        C.DEPENDENCY_FAILURE,
        r"fallback=\w+|using fallback|rendering fallback|served from fallback|degraded mode",
        0.7,
        role="symptom",
        locus="target",
    ),
    # --- hung processes (deadlocks in services, lost leadership) --------------
    _sig(
        "process_hang",
        C.DEPENDENCY_FAILURE,
        r"RWMutex\)?\.Lock|Mutex\)\.Lock|\[sync\.\w*Mutex|no request completed in \d+|leaderelection lost"
        r"|lost (the )?leader(ship)? (lease|election)|deadlock",
        2.5,
    ),
    # --- capacity -------------------------------------------------------------
    _sig(
        "threadpool_saturated",
        C.CAPACITY,
        r"rejected execution|es_rejected_execution_exception|thread ?pool \S* ?(is )?(full|exhausted)"
        r"|activeThreads=(\d+)/\3\b|Request queue full|queue capacity = \d+"
        r"|(worker|thread|connection)s? pool (is )?(saturated|exhausted|full)|\b(\d+)/\7 (connections|workers|threads) busy",
        2.5,
    ),
    _sig(
        "autoscaler_maxed",
        C.CAPACITY,
        r"ScalingLimited|desired replica count is more than the maximum|at max(imum)? replicas",
        3.0,
    ),
    _sig("cpu_throttled", C.CAPACITY, r"CPU throttl", 2.0),
    _sig(
        "load_driver",
        C.CAPACITY,
        r"campaign \S+ (sent|enqueued|started|launched)|onboarding|traffic (spike|surge)"
        r"|(live event|flash sale|promotion|product launch|broadcast|newsletter)\b.{0,40}\b(started|sent|launched|live)"
        r"|subscribers notified",
        1.0,
        role="context",
    ),
    _sig(
        "slow_request",
        C.CAPACITY,
        r"slow (request|query)|took \d+ ?ms \(threshold|db_queries=\d{2,}",
        0.6,
        role="symptom",
    ),
    _sig("rate_limited", None, r"rate limit exceeded|\b429\b|Too Many Requests", 0.8, role="symptom"),
    # --- data corruption ------------------------------------------------------
    _sig(
        "corrupt_page",
        C.DATA_CORRUPTION,
        r"invalid page in block|checksum (mismatch|failure|verification failed)|data corruption|corrupted (page|block|record|data)",
        3.0,
    ),
    _sig(
        "mojibake",
        C.DATA_CORRUPTION,
        r"mojibake|encoding check failed|invalid byte sequence|UnicodeDecodeError|Ã[\u00a0-\u00bf]|\ufffd",
        2.0,
    ),
    _sig("encoding_setting", C.DATA_CORRUPTION, r"\bencoding=[\w-]+", 0.5, role="context"),
    _sig(
        "defaulted_values",
        C.DATA_CORRUPTION,
        r"defaulting to 0(\.0+)?\b|defaulted \S+ to 0|total=0\.00\b|zero-value order|priced? (at )?0\.00",
        2.5,
    ),
    _sig(
        "truncated_input",
        C.DATA_CORRUPTION,
        r"\btruncated\b|size dropped \d+%|\(previous [\d.]+\s?[KMG]B\)|missing column",
        1.5,
    ),
    # --- code failures (bad deploys) -----------------------------------------
    _sig(
        "code_exception",
        C.BAD_DEPLOY,
        r"NullPointerException|panic: |\bnil map\b|nil pointer dereference|index out of range|\bTypeError\b"
        r"|\bAttributeError\b|\bKeyError\b|ClassCastException|IllegalStateException|NoSuchMethodError"
        r"|NoClassDefFoundError|undefined is not a function|Cannot read propert|segmentation fault|SIGSEGV",
        3.0,
    ),
    _sig("crashloop", None, r"CrashLoopBackOff|Back-off restarting failed container", 1.0, role="symptom"),
]

# An ERROR (or a WARN that says something failed) that no signature explains still
# counts as failure evidence where it is logged, without voting for a category.
UNCLASSIFIED = _sig("unclassified_failure", None, r".", 0.5, role="symptom")
FAILURE_WORDS = re.compile(
    r"\b(fail(ed|ure|ing)?|declined|rejected|refused|denied|unavailable|error|exception|unable|cannot|timeout)\b",
    re.IGNORECASE,
)

# --------------------------------------------------------------------------- change events
CONFIG_CHANGE = re.compile(
    r"verb=(patch|update|apply|replace) resource=configmaps|Changes detected in '[^']+' of type '?CONFIGMAP"
    r"|configmap/\S+ (configured|updated|patched)|config(uration)? reloaded|reloaded config"
    r"|revision \d+ \(previous \d+\)|git pull \S+: \d+ files? changed|descriptor updated"
    r"|flag (updated|changed)|flag change received|rollout=\d+% \(was|\(was [^)]{1,40}\)"
    r"|(toggle|flag|feature|setting)s? '?[\w.-]*'? ?(updated|changed|enabled|disabled|toggled|refreshed)"
    r"|\(previously:? [^)]{1,40}\)",
    re.IGNORECASE,
)
SETTINGS_LOADED = re.compile(
    r"(Loaded settings|loaded configuration|config loaded)[:\s]+(?P<body>.+)", re.IGNORECASE
)
CONFIG_NAME = re.compile(
    r"name=(?P<a>[\w.-]+)|'(?P<b>[\w.-]+)' of type|configmap/(?P<c>[\w.-]+)|project=(?P<d>[\w.-]+)"
    r"|git pull (?P<e>[\w.-]+?)(@|:)|source=configmap/(?P<f>[\w.-]+)",
    re.IGNORECASE,
)

# Start-up lines that name the running version of a service.
VERSION_LINE = re.compile(
    r"(version[=: ]v?(?P<v>\d+\.\d+[\w.-]*)|\bv(?P<v2>\d+\.\d+\.\d+)\b|\b(?P<v3>\d+\.\d+\.\d+)\b)"
    r"|(commit|build|sha)[=: ](?P<sha>[0-9a-f]{7,40})|\((?P<sha2>[0-9a-f]{7,40})\)",
    re.IGNORECASE,
)
STARTUP_WORDS = re.compile(r"start|version=|listening|ready|started|commit=|build=", re.IGNORECASE)

# Hints for choosing the runbook action.
LEAK_OR_STUCK = re.compile(
    r"\bleak|not drained|until restart|stopped\b|\bstuck\b|\bhung\b|uptime=\d{3,}h|uptime[=: ]\d+d\b|panic recovered",
    re.IGNORECASE,
)
PRIMARY_DOWN = re.compile(
    r"PANIC:|Input/output error|cluster has no leader|no (primary|leader)|primary \S* ?(down|unreachable)",
    re.IGNORECASE,
)
FAILOVER_AVAILABLE = re.compile(r"secondary=\w+|standby|failover to \S+|\bbackup\b", re.IGNORECASE)


def expiring_weight(match: re.Match[str]) -> float:
    """Certificates expiring within two weeks matter; a month away is routine noise."""
    days_text = match.group("days") or match.group("days2")
    if not days_text:
        return 1.0
    days = int(days_text)
    if days <= 14:
        return 2.5
    if days <= 30:
        return 0.2
    return 0.0


def noise_of(message: str) -> Signature | None:
    for sig in NOISE:
        if sig.pattern.search(message):
            return sig
    return None


def benign_of(message: str) -> list[Signature]:
    return [sig for sig in BENIGN if sig.pattern.search(message)]


def failure_signatures(message: str) -> list[tuple[Signature, float]]:
    """Matching failure/context signatures with their effective weight."""
    out: list[tuple[Signature, float]] = []
    for sig in CATALOGUE:
        m = sig.pattern.search(message)
        if not m:
            continue
        weight = expiring_weight(m) if sig.name == "cert_expiring" else sig.weight
        if weight <= 0:
            continue
        out.append((sig, weight))
    return out
