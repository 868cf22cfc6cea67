"""The definitions a model needs to answer the way IRAS is scored, in one place.

The category table, the severity rules, how to name a culprit and which
remediation fits which condition are the project's definitions (the scenario
README), not hints: a model given only the category *names* guesses what
`config_change` versus `bad_deploy`, or `database` versus `dependency_failure`,
means, and picks the alerting service as the culprit. Each stage prompt embeds
the parts it needs, as constant text so the system prompt stays cacheable.
"""

from __future__ import annotations

from iras.schemas import Category

# One line per category, in the order of `Category`; a test checks that every
# category is defined, so a new category cannot ship without its definition.
CATEGORY_DEFINITIONS: dict[Category, str] = {
    Category.BAD_DEPLOY: (
        "a code release caused errors, crashes, slowness or resource use (its sha is always named; a "
        "release that produces wrong data is data_corruption, one that only breaks monitoring is "
        "false_alarm, both with the sha)"
    ),
    Category.CONFIG_CHANGE: (
        "a runtime configuration change that was not a code deploy: ConfigMaps, feature flags, "
        "environment values, rate-limit, firewall, WAF or edge/CDN rules, config sync or agents' settings"
    ),
    Category.RESOURCE_EXHAUSTION: (
        "a process or host running out of memory, file descriptors, disk, inodes, metaspace, "
        "ephemeral storage, threads, pids or ports"
    ),
    Category.DEPENDENCY_FAILURE: (
        "an upstream service or third-party API the alerting service relies on is failing or slow "
        "(and the cause is not better described by database, network or certificate_expiry)"
    ),
    Category.CAPACITY: (
        "legitimate load exceeding provisioned capacity (traffic well above baseline, saturation, "
        "no change event behind it)"
    ),
    Category.CERTIFICATE_EXPIRY: "an expired or soon-to-expire TLS certificate, CA or signing key",
    Category.DATABASE: (
        "a database or data store failing: connections, failover, replication and lag, locks, storage"
    ),
    Category.NETWORK: "links, routing, packet loss, DNS resolution, load-balancer nodes, proxies, tunnels",
    Category.DATA_CORRUPTION: (
        "wrong or unreadable data being produced or served (requests may all succeed); it can coexist "
        "with a release: the category is the failure mode, the sha records the trigger"
    ),
    Category.FALSE_ALARM: (
        "the alert fired but nothing is wrong for users (a scanner, synthetic probe, agent or exporter "
        "change, planned maintenance, backup, a metric gone missing); always P3 with no remediation; "
        "when a deployment made the alert fire (an agent or exporter upgrade) its sha is named"
    ),
}

CATEGORIES_TEXT = "Categories (pick the one that describes the cause):\n" + "\n".join(
    f"- {category.value}: {text}" for category, text in CATEGORY_DEFINITIONS.items()
)

SEVERITY_RULES = """\
Severity describes customer impact, not how loud the alert is and not the priority the sender \
assigned (a PagerDuty or Datadog priority inside the alert is the sender's guess and can be wrong):
- P0: a customer-facing service is completely unavailable: it is down, or at least 90% of its \
requests fail.
- P1: major degradation: at least 20% of requests fail, or p99 latency on a critical user path is \
at least five times its normal value. Wrong data that customers act on and that costs money \
(prices, invoice amounts) is also P1 even when no request fails.
- P2: partial degradation: a minority of requests, a single feature, region, tenant or asynchronous \
flow is affected, or a fallback hides most of the impact. Internal or asynchronous work that is \
only delayed (queued, not lost) is P2.
- P3: a warning or informational alert, including every false alarm: nothing is broken for \
customers yet (or ever).
When several signals are present, the worst customer-facing one decides. A slow dependency whose \
fallback keeps the user path fast is judged by the user path, not by the dependency's latency."""

CULPRIT_RULES = """\
Naming the culprit (culprit_service):
- the component where the cause lives, which is often not the service that alerted: a caller's \
timeouts and connection errors point at what it calls; a proxy, load balancer, DNS resolver, \
network link, node, broker, connector, database or monitoring agent can be the culprit;
- for a third-party API: the vendor API, by the name the evidence uses for it (its host or domain \
as it appears in the log lines);
- for a false alarm: the benign actor that made the alert fire (the scanner, the probe, the agent \
or exporter that changed, the maintenance or backup job), not the service that alerted;
- always a name that appears in the alert or the evidence, spelled as it appears there."""

ACTION_GUIDANCE = """\
Choosing the remediation (by category and condition):
- bad_deploy: rollback_deployment of that deployment (not a restart);
- config_change: revert_config;
- data_corruption: rollback_deployment when a release produced it, revert_config when a \
configuration change did;
- resource_exhaustion: restart_service when usage keeps rising (a leak); increase_resource_limit \
when usage sits flat at a limit that is too low for normal work;
- database: failover when the primary failed; increase_resource_limit when a connection limit is \
reached;
- network: failover when a redundant path exists (another zone, link or node); restart_service for \
a single stuck agent or process;
- dependency_failure: failover when an alternative provider or region exists; none when a fallback \
already hides the impact from customers;
- capacity: scale_out;
- certificate_expiry: renew_certificate;
- any category: restart_service for a single hung or stopped process (a stuck worker, a stopped \
replication thread) when no change is behind it;
- false_alarm: none, nothing to change."""
