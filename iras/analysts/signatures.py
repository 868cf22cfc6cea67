"""A curated catalogue of generic log signatures.

Each signature is a regular expression for a failure mode that shows up in
real systems regardless of who runs them (connection pool exhaustion, OOM kills,
expired certificates, refused connections, config parse errors, full disks,
deadlocks, replication lag, rate limiting …). Nothing here names a particular
company, service or incident: the analyst is judged on incidents it has never
seen, so a pattern must describe the failure, not the example it came from.

A signature has a `role`:
* `cause`     – the line shows a failure mode happening where it is logged;
* `symptom`   – the line shows something failing, usually because of something else
                (5xx answers, timeouts); counts as error evidence but votes weakly;
* `noise`     – ordinary background failures (telemetry exporters, deprecations)
                that must not be mistaken for the incident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from iras.schemas import Category, LogLine


@dataclass(frozen=True)
class Signature:
    name: str
    category: Category
    pattern: re.Pattern[str]
    weight: float = 1.0
    role: str = "cause"
    description: str = ""


def _sig(
    name: str,
    category: Category,
    pattern: str,
    weight: float = 1.0,
    role: str = "cause",
    description: str = "",
) -> Signature:
    return Signature(name, category, re.compile(pattern, re.IGNORECASE), weight, role, description or name)


C = Category

CATALOGUE: list[Signature] = [
    # --- resource exhaustion -------------------------------------------------
    _sig(
        "oom_killed",
        C.RESOURCE_EXHAUSTION,
        r"\bOOMKilled\b|out of memory: kill(ed)? process|oom[-_ ]kill",
        2.0,
    ),
    _sig("jvm_oom", C.RESOURCE_EXHAUSTION, r"OutOfMemoryError|Metaspace|GC overhead limit exceeded", 2.0),
    _sig("too_many_open_files", C.RESOURCE_EXHAUSTION, r"too many open files|EMFILE|open_fds=\d+", 2.0),
    _sig(
        "disk_full",
        C.RESOURCE_EXHAUSTION,
        r"no space left on device|ENOSPC|disk (is )?full|ephemeral[- ]storage",
        2.0,
    ),
    # --- database -------------------------------------------------------------
    _sig(
        "db_connection_slots",
        C.DATABASE,
        r"remaining connection slots are reserved|too many (clients|connections)|max_connections",
        2.0,
    ),
    _sig(
        "pool_exhausted",
        C.DATABASE,
        r"Connection is not available, request timed out|pool exhausted|connection pool",
        1.0,
    ),
    _sig("replication_lag", C.DATABASE, r"replication lag|replica(tion)? lag|lag=\d+s|stale reads", 1.5),
    _sig("db_io_error", C.DATABASE, r"Input/output error|could not (read|write) block|PANIC:", 2.0),
    _sig("deadlock", C.DATABASE, r"deadlock detected|lock wait timeout", 1.5),
    # --- certificates ---------------------------------------------------------
    _sig(
        "cert_expired",
        C.CERTIFICATE_EXPIRY,
        r"certificate (has )?expired|x509: certificate|CERT_HAS_EXPIRED|certificate_expired|expires in \d+ days|expires .*\(\d+ days?\)",
        2.5,
    ),
    # --- network --------------------------------------------------------------
    _sig(
        "dns_failure",
        C.NETWORK,
        r"UnknownHostException|no such host|:53: i/o timeout|SERVFAIL|NXDOMAIN|Temporary failure in name resolution",
        1.5,
    ),
    _sig(
        "link_down",
        C.NETWORK,
        r"Link (is )?down|NIC Link|carrier lost|DPD timeout|tunnel (down|flap)|peer .* considered dead",
        2.0,
    ),
    # --- dependency symptoms --------------------------------------------------
    _sig(
        "connection_refused",
        C.DEPENDENCY_FAILURE,
        r"connection refused|ECONNREFUSED|Errno 111",
        1.0,
        "symptom",
    ),
    _sig(
        "upstream_5xx",
        C.DEPENDENCY_FAILURE,
        r"\b50[234]\b.*(Service Unavailable|Bad Gateway|Gateway Timeout)|Service Unavailable",
        1.0,
        "symptom",
    ),
    _sig(
        "timeout",
        C.DEPENDENCY_FAILURE,
        r"timed out|timeout|DeadlineExceeded|deadline exceeded",
        0.5,
        "symptom",
    ),
    _sig("circuit_open", C.DEPENDENCY_FAILURE, r"circuit ?breaker.*OPEN|CLOSED to OPEN", 1.5, "symptom"),
    # --- capacity -------------------------------------------------------------
    _sig(
        "threadpool_rejected",
        C.CAPACITY,
        r"rejected execution|es_rejected_execution_exception|thread pool .*full|activeThreads=(\d+)/\1",
        1.5,
    ),
    _sig("hpa_maxed", C.CAPACITY, r"maxReplicas|desired replicas .*limited|ScalingLimited", 1.5),
    # --- config ---------------------------------------------------------------
    _sig(
        "config_parse",
        C.CONFIG_CHANGE,
        r"(config|configuration|yaml|json).*(parse|invalid|malformed)|ConfigMap|feature flag|flag .*(changed|updated)|rollout=\d+%",
        1.0,
    ),
    _sig("rate_limited", C.CONFIG_CHANGE, r"\b429\b|rate[- ]?limit(ed)?", 0.5, "symptom"),
    # --- data corruption ------------------------------------------------------
    _sig("invalid_page", C.DATA_CORRUPTION, r"invalid page in block|checksum mismatch|corrupt", 2.0),
    _sig("encoding", C.DATA_CORRUPTION, r"mojibake|encoding=|UnicodeDecodeError|invalid byte sequence", 1.5),
    # --- code bugs (bad deploys) ---------------------------------------------
    _sig(
        "code_exception",
        C.BAD_DEPLOY,
        r"NullPointerException|panic:|nil map|nil pointer dereference|TypeError|AttributeError|KeyError|IndexError|undefined is not",
        1.5,
    ),
    _sig("crashloop", C.BAD_DEPLOY, r"CrashLoopBackOff|Back-off restarting failed container", 0.5, "symptom"),
    # --- noise ----------------------------------------------------------------
    _sig(
        "telemetry_export",
        C.FALSE_ALARM,
        r"export(ing)? (spans|metrics|traces)|otel-collector|dropped \d+ spans",
        0.0,
        "noise",
    ),
    _sig("deprecation", C.FALSE_ALARM, r"deprecated", 0.0, "noise"),
]


@dataclass(frozen=True)
class Match:
    line: LogLine
    signature: Signature


def match_line(line: LogLine) -> list[Signature]:
    """All signatures whose pattern occurs in the line's message."""
    return [sig for sig in CATALOGUE if sig.pattern.search(line.message)]


def match_lines(lines: list[LogLine]) -> list[Match]:
    out: list[Match] = []
    for line in lines:
        for sig in match_line(line):
            out.append(Match(line, sig))
    return out
