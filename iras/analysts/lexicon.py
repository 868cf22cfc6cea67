"""The small generic lexicons the evidence-driven analyst reads log lines with.

Every entry is either a general pattern (a resource word next to a failure word, a
change verb with a before/after value, a dependency phrasing) or a documented string
of a real product, marked `documented=True` with its source. Nothing names a company,
a service or one incident: the analyst is judged on incidents it has never seen, and
`tests/test_offline_analyst.py` fails when a non-documented alternative matches the
text of a single scenario file only.

A lexicon is a list of alternatives joined into one case-insensitive regex; the
registry keeps the alternatives apart so that test can enumerate them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Lexicon:
    name: str
    alternatives: tuple[str, ...]
    documented: bool = False
    source: str = ""
    # Documented product strings (CamelCase reasons) match exactly as written.
    case_sensitive: bool = False
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        joined = "|".join(f"(?:{alt})" for alt in self.alternatives)
        flags = 0 if self.case_sensitive else re.IGNORECASE
        object.__setattr__(self, "pattern", re.compile(joined, flags))

    def search(self, text: str) -> re.Match[str] | None:
        return self.pattern.search(text)

    def count(self, text: str) -> int:
        return len(self.pattern.findall(text))


REGISTRY: dict[str, Lexicon] = {}


def _lex(
    name: str, *alternatives: str, documented: bool = False, source: str = "", case_sensitive: bool = False
) -> Lexicon:
    lex = Lexicon(name, tuple(alternatives), documented, source, case_sensitive=case_sensitive)
    REGISTRY[name] = lex
    return lex


# --------------------------------------------------------------------------- dependency phrasing
# How a caller says its failure comes from somewhere else: the named component is the
# dependency, the line's own service the victim.
DEPENDENCY_PHRASE = _lex(
    "dependency_phrase",
    r"(?:\bupstream\b)|(?:\bcircuit\b)",
    r"\bcall(?:ing|ed)?\b",
    r"\brequests? to\b",
    r"\bconnect(?:ing|ion)?\b",
    r"\bdownstream\b",
    r"\btimed? ?out\b",
    r"\btimeout\b",
    r"\brefused\b",
    r"\bunreachable\b",
    r"\bunavailable\b",
    r"\breturned\b",
    r"\bresponded\b",
    r"\bfrom\b",
    r"\bto\b",
    r"\b5\d\d\b",
    r"\bbackend\b",
    r"\bdial\b",
    r"\blookup\b",
    r"\bresolv",
    r"\bhandshake\b",
    r"\bretry(?:ing)?\b",
    r"\bfailed to (?:reach|fetch|get|send|publish|write|read|query|contact)\b",
)

# A client complaining about a peer: its failure is not internal to it.
CLIENT_ERROR = _lex(
    "client_error",
    r"(?:\bupstream\b)|(?:\bcircuit\b)",
    r"\bcall(?:ing)?\b",
    r"\brequests? to\b",
    r"\bconnect(?:ing|ion)?\b",
    r"\btimed? ?out\b",
    r"\btimeout\b",
    r"\brefused\b",
    r"\bunreachable\b",
    r"\bunavailable\b",
    r"\breturned\b",
    r"\bresponded\b",
    r"\bfrom https?://",
    r"\b50[234]\b",
    r"\bhandshake\b",
    r"\bfailed to (?:reach|fetch|get|send|publish|query|contact)\b",
)

# --------------------------------------------------------------------------- change events
CHANGE_VERB = _lex(
    "change_verb",
    r"(?:\bmodified\b)|(?:\brolled out\b)|(?:\brollout\b)|(?:\btoggled\b)|(?:\bswitched\b)|(?:\bconverged\b)|(?:\brenamed\b)|(?:\bswapped\b)|(?:\breplaced\b)",
    r"\bapplied\b",
    r"\bapply(?:ing)?\b",
    r"\bupdated?\b",
    r"\bchanged?\b",
    r"\bpatch(?:ed)?\b",
    r"\bchanges\b",
    r"\bloaded\b",
    r"\breload(?:ed|ing)?\b",
    r"\benabled\b",
    r"\bdisabled\b",
    r"\bpush(?:ed)?\b",
    r"\bpublished\b",
    r"\bsync(?:ed|hronized)?\b",
    r"\breconciled\b",
    r"\bset\b",
    r"\bmerged?\b",
    r"\bremoved\b",
    r"\bupgraded?\b",
    r"\bconfigured\b",
    r"\bcommit(?:ted)?\b",
    r"\bmoved?\b",
)
CHANGE_OBJECT = _lex(
    "change_object",
    r"(?:\bweights?\b)|(?:\bplaybook\b)|(?:\bmanifest\b)|(?:\brole\b)|(?:\bhelm\b)",
    r"\bconfig",
    r"\bconfigmap",
    r"\bflags?\b",
    r"\bfeature\b",
    r"\bsettings?\b",
    r"\brules?\b",
    r"\bpolic(?:y|ies)\b",
    r"\bvalues\b",
    r"\benv\b",
    r"\benvironment\b",
    r"\bvariables?\b",
    r"\bsecrets?\b",
    r"\bparameters?\b",
    r"\blimits?\b",
    r"\btimeouts?\b",
    r"\broutes?\b",
    r"\bmodule\b",
    r"\btemplate\b",
    r"\balias\b",
    r"\bschema\b",
    r"\bmigration\b",
    r"\bprofile\b",
    r"\bcatalog\b",
    r"\bcertificate\b",
    r"\bkeys?\b",
    r"\.(?:ya?ml|json|toml|ini|conf|cfg|properties|vcl)\b",
)
# Feature-flag services name their flags "toggles" (Unleash: "feature toggles",
# https://docs.getunleash.io/reference/feature-toggles; Togglz, FF4J likewise).
FEATURE_TOGGLE = _lex(
    "feature_toggle",
    r"\btoggles?\b",
    documented=True,
    source="Unleash documentation: feature toggles (https://docs.getunleash.io/reference/feature-toggles)",
)
# A before/after value: "a -> b", "(was x)", "from x to y", "rolled out to 50%".
VALUE_DIFF = _lex(
    "value_diff",
    r"(?:\bto \d+ ?%)|(?:\bold=\S+)|(?:\bnew=\S+)|(?:\bprevious(?:ly)?\b)|(?:\(was [^)]+\))",
    r"\S\s*->\s*\S",
    r"\S\s*=>\s*\S",
    r"\bfrom \S+ to \S+",
)

# --------------------------------------------------------------------------- what failed
# An internal failure: the line's own process failed, not a peer it called.
INTERNAL_FAILURE = _lex(
    "internal_failure",
    r"(?:\bstack ?trace\b)|(?:^\s+at \S+\()|(?:\btraceback\b)",
    r"(?:\bcrash)|(?:\bsegfault\b)|(?:\bexit(?:ed)? (?:code|status) [1-9])|(?:\bfatal\b)",
    r"(?:\bnull ?pointer\b)|(?:\bnil (?:map|pointer)\b)|(?:\bundefined\b)|(?:\bunknown (?:column|property|field|key)\b)|(?:\bkeyerror\b)",
    r"(?:\bdeadlock)|(?:\bhung\b)|(?:\bstuck\b)|(?:\bnot responding\b)",
    r"(?:\bexhausted\b)|(?:\bcorrupt)|(?:\bout of\b)",
    r"\bexception\b|[a-z](?:Exception|Error)\b",
    r"\bpanic",
    r"\bkilled\b",
    r"\bback-?off\b",
    r"\bno space\b",
)

# Kubernetes event reasons and container states, as documented in the Kubernetes
# reference (kubernetes.io/docs: "Debug Pods", "Pod Lifecycle", kubelet events
# pkg/kubelet/events/event.go, scheduler and node-pressure eviction docs).
K8S_IMAGE = _lex(
    "k8s_image",
    r"ImagePullBackOff",
    r"ErrImagePull",
    r"Back-off pulling image",
    r"Failed to pull image",
    r"InvalidImageName",
    documented=True,
    case_sensitive=True,
    source="Kubernetes kubelet image events (kubernetes.io/docs/concepts/containers/images)",
)
K8S_CONFIG = _lex(
    "k8s_config",
    r"CreateContainerConfigError",
    r"CreateContainerError",
    r"couldn't find key \S+ in (?:Secret|ConfigMap)",
    r"(?:secret|configmap) \"?[\w.-]+\"? not found",
    documented=True,
    case_sensitive=True,
    source="Kubernetes kubelet container config errors (kubernetes.io/docs/tasks/debug/debug-application)",
)
K8S_QUOTA = _lex(
    "k8s_quota",
    r"exceeded quota",
    r"FailedCreate",
    documented=True,
    case_sensitive=True,
    source="Kubernetes ResourceQuota admission errors (kubernetes.io/docs/concepts/policy/resource-quotas)",
)
K8S_OOM = _lex(
    "k8s_oom",
    r"OOMKilled",
    r"exit code 137",
    r"Memory cgroup out of memory",
    documented=True,
    case_sensitive=True,
    source="Kubernetes container last state reason OOMKilled (kubernetes.io/docs/tasks/configure-pod-container/assign-memory-resource)",
)
K8S_SCHEDULING = _lex(
    "k8s_scheduling",
    r"FailedScheduling",
    r"Insufficient (?:cpu|memory|nvidia\.com/gpu|ephemeral-storage)",
    r"didn't match (?:Pod's )?node (?:affinity|selector)",
    r"had untolerated taint",
    documented=True,
    case_sensitive=True,
    source="Kubernetes scheduler events (kubernetes.io/docs/concepts/scheduling-eviction)",
)
K8S_PROBE = _lex(
    "k8s_probe",
    r"Unhealthy",
    r"(?:Readiness|Liveness|Startup) probe failed",
    documented=True,
    case_sensitive=True,
    source="Kubernetes kubelet probe events (kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes)",
)
K8S_MOUNT = _lex(
    "k8s_mount",
    r"FailedMount",
    r"FailedAttachVolume",
    r"MountVolume\.SetUp failed",
    documented=True,
    case_sensitive=True,
    source="Kubernetes volume events (kubernetes.io/docs/concepts/storage/volumes)",
)
K8S_PRESSURE = _lex(
    "k8s_pressure",
    r"DiskPressure",
    r"MemoryPressure",
    r"PIDPressure",
    r"\bEvicted\b",
    r"ephemeral-storage",
    documented=True,
    case_sensitive=True,
    source="Kubernetes node-pressure eviction (kubernetes.io/docs/concepts/scheduling-eviction/node-pressure-eviction)",
)
K8S_CRASHLOOP = _lex(
    "k8s_crashloop",
    r"CrashLoopBackOff",
    r"Back-off restarting failed container",
    documented=True,
    case_sensitive=True,
    source="Kubernetes container waiting reason (kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle)",
)
K8S_HPA_MAX = _lex(
    "k8s_hpa_max",
    r"ScalingLimited",
    r"desired replica count is more than the maximum",
    r"TooManyReplicas",
    documented=True,
    case_sensitive=True,
    source="Kubernetes HorizontalPodAutoscaler conditions (kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale)",
)


# Every documented Kubernetes failure state above, as one case-sensitive pattern: orchestrator
# events and container states are often logged at INFO and still mean something failed.
K8S_FAILURES = (
    K8S_IMAGE,
    K8S_CONFIG,
    K8S_QUOTA,
    K8S_OOM,
    K8S_SCHEDULING,
    K8S_PROBE,
    K8S_MOUNT,
    K8S_PRESSURE,
    K8S_CRASHLOOP,
    K8S_HPA_MAX,
)
K8S_FAILURE_ANY = re.compile("|".join(f"(?:{lex.pattern.pattern})" for lex in K8S_FAILURES))

# --------------------------------------------------------------------------- categories
# Resource words x failure words: a process ran out of something.
RESOURCE_WORD = _lex(
    "resource_word",
    r"(?:\bfile descriptors?\b)|(?:\bopen files\b)|(?:\bfds?\b)|(?:\bpids?\b)|(?:\bprocesses\b)|(?:\bports?\b)",
    r"(?:\binodes?\b)|(?:\bdisk\b)",
    r"(?:\bmaxmemory\b)|(?:\bmemory\b)",
    r"\bheap\b",
    r"\bmetaspace\b",
    r"\bOOM",
    r"out ?of ?memory",
    r"\bspace\b",
    r"\bephemeral",
    r"\bvolume\b",
    r"\bfilesystem\b",
    r"\bquota\b",
)
EXHAUSTED_WORD = _lex(
    "exhausted_word",
    r"(?:\bexhaust)|(?:\bleak)|(?:\bcannot allocate\b)|(?:\bunable to (?:allocate|create)\b)|(?:\bENOSPC\b)|(?:\bEMFILE\b)|(?:\bno space\b)",
    r"\bout of\b",
    r"\bfull\b",
    r"\btoo many\b",
    r"\blimit\b",
    r"\bexceeded\b",
    r"\bkilled\b",
    r"\bgrowing\b",
    r"\b(?:9[5-9]|100)(?:\.\d+)? ?%",
    r"\bevict",
    r"\bin use\b",
    r"OutOfMemory",
    r"\bOOM",
)
DATASTORE_WORD = _lex(
    "datastore_word",
    r"(?:\bmariadb\b)|(?:\bmongo)|(?:\boracle\b)|(?:\betcd\b)|(?:\btablespace\b)|(?:\bpostgres)|(?:\bmysql)",
    r"\bdb\b",
    r"\bdatabase\b",
    r"\bredis\b",
    r"\bsql\b",
    r"\belasticsearch\b",
    r"\bindex\b",
    r"\bsentinel\b",
    r"\bpatroni\b",
    r"\bcluster\b",
    r"\bjdbc\b",
    r"\btransaction",
    r"\bquery\b",
    r"\bkafka\b",
    r"\bbroker\b",
    r"\btopic\b",
    r"\bpartition\b",
)
DATASTORE_FAILURE = _lex(
    "datastore_failure",
    r"(?:\bdeadlock)|(?:\block)",
    r"\bprimary\b",
    r"\breplica",
    r"\breplication\b",
    r"\blag\b",
    r"\bbehind\b",
    r"\bfailover\b",
    r"\bquorum\b",
    r"\bleader\b",
    r"\bconnections?\b",
    r"\bclients\b",
    r"\bread-?only\b",
    r"\bwal\b",
    r"\bbinlog\b",
    r"\barchiv",
    r"\bslow query\b",
)
CERT_WORD = _lex(
    "cert_word",
    r"\bx509\b",
    r"\bcertificates?\b",
    r"\bcert\b",
    r"\bnotAfter\b",
    r"\bTLS\b",
    r"\bSSL\b",
    r"\bCA\b",
    r"\bissuer\b",
    r"\bkeystore\b",
    r"\.(?:pem|crt|p12|jks)\b",
)
CERT_FAILURE = _lex(
    "cert_failure",
    r"(?:\bexpiry\b)|(?:\bexpired\b)",
    r"(?:\bverify failed\b)|(?:\bunknown (?:ca|authority)\b)|(?:\bbad certificate\b)",
    r"\bexpires?\b",
    r"\bexpiring\b",
    r"\bnot ?after\b",
    r"\brenew",
    r"\bvalid(?:ity)?\b",
)
NETWORK_WORD = _lex(
    "network_word",
    r"(?:\bNXDOMAIN\b)|(?:\bSERVFAIL\b)|(?:\bnameserver\b)|(?:\bDNS\b)",
    # The DNS response code of a successful answer (RFC 1035 RCODE 0), printed by resolvers
    # and probes next to the server that did not answer.
    r"\bNOERROR\b",
    r"(?:\bNIC\b)|(?:\bMTU\b)|(?:\bport-channel\b)|(?:\binterface\b)",
    r"(?:\bVIP\b)|(?:\bload.?balancer\b)|(?:\bARP\b)|(?:\biptables\b)|(?:\bgateway\b)",
    r"(?:\bAZ\b)|(?:\broute)|(?:\btcp\b)|(?:\budp\b)|(?:\bzone\b)",
    r"\blink\b",
    r"\bBGP\b",
    r"\btunnel\b",
    r"\bresolv",
    r"\bpacket",
    r"\bneighbou?r\b",
    r"\bswitch\b",
    r"\bupstream\b",
)
NETWORK_FAILURE = _lex(
    "network_failure",
    r"(?:\bflap)|(?:\bblackhol)|(?:\bretransmi)|(?:\bloss\b)",
    r"\bdown\b",
    r"\bdrop",
    r"\bunreachable\b",
    r"\bno route\b",
    r"\btimed? ?out\b",
    r"\breset\b",
    r"\bstale\b",
    r"\berrors?\b",
    r"\bi/o timeout\b",
)
CORRUPTION = _lex(
    "corruption",
    r"(?:\bcorrupt)|(?:\bchecksum\b)|(?:\bmismatch)",
    r"(?:\bNaN\b)|(?:\bzero\b)",
    r"(?:\bmojibake\b)|(?:\bencoding\b)",
    r"(?:\bdouble)|(?:\bduplicate)",
    r"(?:\bshifted\b)|(?:\boff by\b)|(?:\bwrong\b)",
    r"\binvalid (?:page|data|value|record|format|encoding)",
    r"\butf-?8",
    r"\b0\.00\b",
    r"\bschema\b",
    r"\bdeserializ",
    r"\bscale\b",
    r"\btruncat",
)
SATURATION = _lex(
    "saturation",
    r"\bsaturat",
    r"\bbusy\b",
    r"\bthreads?\b",
    r"\bqueue",
    r"\bbacklog\b",
    r"\bpending\b",
    r"\brejected\b",
    r"\bthrottl",
    r"\bmax(?:imum)? ?replicas\b",
    r"\bmaxReplicas\b",
    r"\bcpu\b",
    r"\bpool\b",
    r"\bworkers?\b",
    r"\bconsumers?\b",
    r"\blag\b",
    r"\b429\b",
)
# A benign actor behind an alert that hurt no user.
BENIGN_ACTOR = _lex(
    "benign_actor",
    r"(?:\bno ?data\b)|(?:\bexporter\b)",
    r"(?:\bload ?test)|(?:\bgame ?day\b)|(?:\bchaos\b)",
    r"(?:\bplanned\b)|(?:\bmaintenance\b)",
    r"(?:\brotat(?:e|ed|ion|ing)\b)|(?:\brolling restart\b)|(?:\bdrain(?:ed|ing)?\b)",
    r"\bscan(?:ner|ning)?\b",
    r"\bsynthetic",
    r"(?<!user-)(?<!user )\bagent\b",
    r"\bbackup\b",
    r"\bsilence",
    r"\bupgrad(?:e|ed|ing)\b",
    r"\bdisrupt",
)
# Load generators, as their projects name themselves (k6.io, locust.io, jmeter.apache.org,
# gatling.io, github.com/tsenart/vegeta, artillery.io).
LOAD_TOOL = _lex(
    "load_tool",
    r"\bk6\b",
    r"\blocust\b",
    r"\bjmeter\b",
    r"\bgatling\b",
    r"\bvegeta\b",
    r"\bartillery\b",
    documented=True,
    source="load-testing tools' own names (k6.io, locust.io, jmeter.apache.org, gatling.io, artillery.io)",
)

# Words that tell a restart from a limit increase: a leak or a stuck process.
LEAK_OR_STUCK = _lex(
    "leak_or_stuck",
    r"(?:\bleak)|(?:\bgrowing\b)|(?:\bunclosed\b)|(?:\bnever (?:released|closed)\b)|(?:\bnot (?:responding|released|closed)\b)",
    r"(?:\bhung\b)|(?:\bhang)|(?:\bdeadlock)|(?:\bzombie)|(?:\bstuck\b)|(?:\bstale\b)|(?:\bstopped \w+ing\b)|(?:\b\d+ days? (?:of )?uptime\b)|(?:\bno (?:requests?|progress|responses?) (?:completed|made)\b)|(?:\bwatchdog\b)|(?:\bblocked\b)",
)
PRIMARY_DOWN = _lex(
    "primary_down",
    r"(?:\bno primary\b)|(?:\bprimary (?:is )?(?:down|unavailable|unreachable|failed|lost)\b)|(?:\bsplit.?brain\b)|(?:\bno (?:leader|master|quorum)\b)",
    r"\bquorum\b",
    r"\bfailover\b",
    r"\bI/O error\b",
    r"\bread-?only\b",
    r"\bstopped\b",
    r"\bpromot",
)
ALTERNATIVE_PATH = _lex(
    "alternative_path",
    r"(?:\balternat)|(?:\bother (?:region|provider|route|zone)\b)|(?:\bredundan)|(?:\bsecondary\b)",
    r"\bstandby\b",
    r"\bfailover\b",
    r"\bbackup\b",
    r"\bfallback\b",
)
FALLBACK_ACTIVE = _lex(
    "fallback_active",
    r"(?:\bserved from cache\b)|(?:\bstale cache\b)|(?:\bdegraded mode\b)|(?:\bqueued for retry\b)|(?:\bfallback\b)",
    r"\bfalling back\b",
)
LOAD_WORD = _lex(
    "load_word",
    r"(?:\brps\b)|(?:\barrival)|(?:\bper_?(?:min|sec|second|minute)\b)|(?:\breq/s\b)|(?:\bqps\b)",
    r"\brequests?\b",
    r"\btraffic\b",
    r"\bthroughput\b",
    r"\bsessions?\b",
    r"\busers?\b",
    r"\bconnections?\b",
    r"\bmessages?\b",
    r"\benqueued\b",
    r"\bincoming\b",
    r"\borders\b",
    r"\bjobs\b",
)
