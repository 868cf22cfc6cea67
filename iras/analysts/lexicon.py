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


def _lex(name: str, *alternatives: str, documented: bool = False, source: str = "") -> Lexicon:
    lex = Lexicon(name, tuple(alternatives), documented, source, case_sensitive=documented)
    REGISTRY[name] = lex
    return lex


# --------------------------------------------------------------------------- dependency phrasing
# How a caller says its failure comes from somewhere else: the named component is the
# dependency, the line's own service the victim.
DEPENDENCY_PHRASE = _lex(
    "dependency_phrase",
    r"\bcall(?:ing|ed)?\b",
    r"\brequests? to\b",
    r"\bconnect(?:ing|ion)?\b",
    r"\bupstream\b",
    r"\bdownstream\b",
    r"\btimed? ?out\b",
    r"\btimeout\b",
    r"\brefused\b",
    r"\bunreachable\b",
    r"\bunavailable\b",
    r"\bcircuit\b",
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
    r"\bcall(?:ing)?\b",
    r"\brequests? to\b",
    r"\bconnect(?:ing|ion)?\b",
    r"\bupstream\b",
    r"\btimed? ?out\b",
    r"\btimeout\b",
    r"\brefused\b",
    r"\bunreachable\b",
    r"\bunavailable\b",
    r"\bcircuit\b",
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
    r"\bapplied\b",
    r"\bapply\b",
    r"\bupdated?\b",
    r"\bchanged?\b",
    r"\bmodified\b",
    r"\bpatch(?:ed)?\b",
    r"\bchanges\b",
    r"\bloaded\b",
    r"\brolled out\b",
    r"\brollout\b",
    r"\breload(?:ed|ing)?\b",
    r"\benabled\b",
    r"\bdisabled\b",
    r"\btoggled\b",
    r"\bpush(?:ed)?\b",
    r"\bpublished\b",
    r"\bsync(?:ed|hronized)?\b",
    r"\breconciled\b",
    r"\bset\b",
    r"\bswitched\b",
    r"\breplaced\b",
    r"\bmerged?\b",
    r"\bconverged\b",
    r"\brenamed\b",
    r"\bremoved\b",
    r"\bupgraded?\b",
    r"\bswapped\b",
    r"\bconfigured\b",
)
CHANGE_OBJECT = _lex(
    "change_object",
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
    r"\bweights?\b",
    r"\bmodule\b",
    r"\bhelm\b",
    r"\bplaybook\b",
    r"\brole\b",
    r"\bmanifest\b",
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
# A before/after value: "a -> b", "(was x)", "from x to y", "rolled out to 50%".
VALUE_DIFF = _lex(
    "value_diff",
    r"\S\s*->\s*\S",
    r"\S\s*=>\s*\S",
    r"\(was [^)]+\)",
    r"\bfrom \S+ to \S+",
    r"\bto \d+ ?%",
    r"\bold=\S+",
    r"\bnew=\S+",
    r"\bprevious(?:ly)?\b",
)

# --------------------------------------------------------------------------- what failed
# An internal failure: the line's own process failed, not a peer it called.
INTERNAL_FAILURE = _lex(
    "internal_failure",
    r"\bexception\b",
    r"\bpanic",
    r"\btraceback\b",
    r"\bstack ?trace\b",
    r"^\s+at \S+\(",
    r"\bfatal\b",
    r"\bcrash",
    r"\bsegfault\b",
    r"\bkilled\b",
    r"\bexit(?:ed)? (?:code|status) [1-9]",
    r"\bdeadlock",
    r"\bnull ?pointer\b",
    r"\bnil (?:map|pointer)\b",
    r"\bundefined\b",
    r"\bunknown (?:column|property|field|key)\b",
    r"\bkeyerror\b",
    r"\bhung\b",
    r"\bstuck\b",
    r"\bnot responding\b",
    r"\bback-?off\b",
    r"\bout of\b",
    r"\bexhausted\b",
    r"\bno space\b",
    r"\bcorrupt",
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
    source="Kubernetes kubelet image events (kubernetes.io/docs/concepts/containers/images)",
)
K8S_CONFIG = _lex(
    "k8s_config",
    r"CreateContainerConfigError",
    r"CreateContainerError",
    r"couldn't find key \S+ in (?:Secret|ConfigMap)",
    r"(?:secret|configmap) \"?[\w.-]+\"? not found",
    documented=True,
    source="Kubernetes kubelet container config errors (kubernetes.io/docs/tasks/debug/debug-application)",
)
K8S_OOM = _lex(
    "k8s_oom",
    r"OOMKilled",
    r"exit code 137",
    r"Memory cgroup out of memory",
    documented=True,
    source="Kubernetes container last state reason OOMKilled (kubernetes.io/docs/tasks/configure-pod-container/assign-memory-resource)",
)
K8S_SCHEDULING = _lex(
    "k8s_scheduling",
    r"FailedScheduling",
    r"Insufficient (?:cpu|memory|nvidia\.com/gpu|ephemeral-storage)",
    r"didn't match (?:Pod's )?node (?:affinity|selector)",
    r"had untolerated taint",
    documented=True,
    source="Kubernetes scheduler events (kubernetes.io/docs/concepts/scheduling-eviction)",
)
K8S_PROBE = _lex(
    "k8s_probe",
    r"Unhealthy",
    r"(?:Readiness|Liveness|Startup) probe failed",
    documented=True,
    source="Kubernetes kubelet probe events (kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes)",
)
K8S_MOUNT = _lex(
    "k8s_mount",
    r"FailedMount",
    r"FailedAttachVolume",
    r"MountVolume\.SetUp failed",
    documented=True,
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
    source="Kubernetes node-pressure eviction (kubernetes.io/docs/concepts/scheduling-eviction/node-pressure-eviction)",
)
K8S_CRASHLOOP = _lex(
    "k8s_crashloop",
    r"CrashLoopBackOff",
    r"Back-off restarting failed container",
    documented=True,
    source="Kubernetes container waiting reason (kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle)",
)
K8S_HPA_MAX = _lex(
    "k8s_hpa_max",
    r"ScalingLimited",
    r"desired replica count is more than the maximum",
    r"TooManyReplicas",
    documented=True,
    source="Kubernetes HorizontalPodAutoscaler conditions (kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale)",
)

# --------------------------------------------------------------------------- categories
# Resource words x failure words: a process ran out of something.
RESOURCE_WORD = _lex(
    "resource_word",
    r"\bmemory\b",
    r"\bheap\b",
    r"\bmetaspace\b",
    r"\bOOM",
    r"out ?of ?memory",
    r"\bfile descriptors?\b",
    r"\bopen files\b",
    r"\bfds?\b",
    r"\bdisk\b",
    r"\binodes?\b",
    r"\bspace\b",
    r"\bephemeral",
    r"\bvolume\b",
    r"\bfilesystem\b",
    r"\bpids?\b",
    r"\bprocesses\b",
    r"\bports?\b",
    r"\bmaxmemory\b",
    r"\bquota\b",
)
EXHAUSTED_WORD = _lex(
    "exhausted_word",
    r"\bout of\b",
    r"\bexhaust",
    r"\bno space\b",
    r"\bfull\b",
    r"\btoo many\b",
    r"\blimit\b",
    r"\bexceeded\b",
    r"\bkilled\b",
    r"\bleak",
    r"\bgrowing\b",
    r"\b(?:9[5-9]|100)(?:\.\d+)? ?%",
    r"\bcannot allocate\b",
    r"\bunable to (?:allocate|create)\b",
    r"\bevict",
    r"\bENOSPC\b",
    r"\bEMFILE\b",
    r"\bin use\b",
    r"OutOfMemory",
    r"\bOOM",
)
DATASTORE_WORD = _lex(
    "datastore_word",
    r"\bdb\b",
    r"\bdatabase\b",
    r"\bpostgres",
    r"\bmysql",
    r"\bmariadb\b",
    r"\bredis\b",
    r"\bmongo",
    r"\boracle\b",
    r"\bsql\b",
    r"\belasticsearch\b",
    r"\bindex\b",
    r"\betcd\b",
    r"\bsentinel\b",
    r"\bpatroni\b",
    r"\btablespace\b",
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
    r"\bprimary\b",
    r"\breplica",
    r"\breplication\b",
    r"\blag\b",
    r"\bbehind\b",
    r"\block",
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
    r"\bdeadlock",
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
    r"\bexpired\b",
    r"\bexpires?\b",
    r"\bexpiring\b",
    r"\bexpiry\b",
    r"\bnot ?after\b",
    r"\bverify failed\b",
    r"\bunknown (?:ca|authority)\b",
    r"\bbad certificate\b",
    r"\brenew",
    r"\bvalid(?:ity)?\b",
)
NETWORK_WORD = _lex(
    "network_word",
    r"\blink\b",
    r"\bBGP\b",
    r"\btunnel\b",
    r"\bDNS\b",
    r"\bresolv",
    r"\bNXDOMAIN\b",
    r"\bSERVFAIL\b",
    r"\bpacket",
    r"\bNIC\b",
    r"\binterface\b",
    r"\broute",
    r"\bMTU\b",
    r"\bVIP\b",
    r"\bload.?balancer\b",
    r"\bgateway\b",
    r"\bnameserver\b",
    r"\biptables\b",
    r"\bARP\b",
    r"\bneighbou?r\b",
    r"\bport-channel\b",
    r"\bswitch\b",
    r"\bAZ\b",
    r"\bupstream\b",
)
NETWORK_FAILURE = _lex(
    "network_failure",
    r"\bdown\b",
    r"\bflap",
    r"\bloss\b",
    r"\bdrop",
    r"\bunreachable\b",
    r"\bno route\b",
    r"\btimed? ?out\b",
    r"\breset\b",
    r"\bstale\b",
    r"\berrors?\b",
    r"\bblackhol",
    r"\bretransmi",
    r"\bi/o timeout\b",
)
CORRUPTION = _lex(
    "corruption",
    r"\bcorrupt",
    r"\bchecksum\b",
    r"\bmismatch",
    r"\bNaN\b",
    r"\binvalid (?:page|data|value|record|format|encoding)",
    r"\bmojibake\b",
    r"\bencoding\b",
    r"\butf-?8",
    r"\bzero\b",
    r"\b0\.00\b",
    r"\bduplicate",
    r"\bdouble",
    r"\bschema\b",
    r"\bdeserializ",
    r"\bwrong\b",
    r"\bscale\b",
    r"\bshifted\b",
    r"\boff by\b",
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
    r"\bscan(?:ner|ning)?\b",
    r"\bsynthetic",
    r"(?<!user-)(?<!user )\bagent\b",
    r"\bmaintenance\b",
    r"\bbackup\b",
    r"\bno ?data\b",
    r"\bload ?test",
    r"\bgame ?day\b",
    r"\bchaos\b",
    r"\bdrain(?:ed|ing)?\b",
    r"\bplanned\b",
    r"\brotat(?:e|ed|ion)\b",
    r"\bsilence",
    r"\bupgrad(?:e|ed|ing)\b",
    r"\brolling restart\b",
    r"\bexporter\b",
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
    r"\bleak",
    r"\bgrowing\b",
    r"\bstuck\b",
    r"\bhung\b",
    r"\bhang",
    r"\bdeadlock",
    r"\bzombie",
    r"\bnot (?:responding|released|closed)\b",
    r"\bnever (?:released|closed)\b",
    r"\bunclosed\b",
    r"\bwatchdog\b",
    r"\bno (?:requests?|progress|responses?) (?:completed|made)\b",
    r"\bblocked\b",
)
PRIMARY_DOWN = _lex(
    "primary_down",
    r"\bno primary\b",
    r"\bprimary (?:is )?(?:down|unavailable|unreachable|failed|lost)\b",
    r"\bno (?:leader|master|quorum)\b",
    r"\bquorum\b",
    r"\bfailover\b",
    r"\bI/O error\b",
    r"\bread-?only\b",
    r"\bstopped\b",
    r"\bsplit.?brain\b",
    r"\bpromot",
)
ALTERNATIVE_PATH = _lex(
    "alternative_path",
    r"\bsecondary\b",
    r"\bstandby\b",
    r"\bfailover\b",
    r"\bbackup\b",
    r"\balternat",
    r"\bfallback\b",
    r"\bother (?:region|provider|route|zone)\b",
    r"\bredundan",
)
FALLBACK_ACTIVE = _lex(
    "fallback_active",
    r"\bfallback\b",
    r"\bfalling back\b",
    r"\bserved from cache\b",
    r"\bstale cache\b",
    r"\bdegraded mode\b",
    r"\bqueued for retry\b",
)
LOAD_WORD = _lex(
    "load_word",
    r"\brequests?\b",
    r"\brps\b",
    r"\breq/s\b",
    r"\bqps\b",
    r"\btraffic\b",
    r"\bthroughput\b",
    r"\bsessions?\b",
    r"\busers?\b",
    r"\bconnections?\b",
    r"\bmessages?\b",
    r"\barrival",
    r"\bper_?(?:min|sec|second|minute)\b",
    r"\benqueued\b",
    r"\bincoming\b",
    r"\borders\b",
    r"\bjobs\b",
)
