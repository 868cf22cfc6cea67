"""Kubernetes as evidence: pod state, Warning events, rollout history, HPAs and nodes.

Read-only (`deploy/kubernetes/rbac.yaml` grants get/list/watch and nothing else),
through the official `kubernetes` client, with the in-cluster service account or
KUBECONFIG. For each affected service it finds the pods by label selector
(KUBERNETES_LABEL_SELECTORS, else `app.kubernetes.io/name=<service>`, then
`app=<service>`), walks their owners up to the workload, and reports:

* each pod that is not Running and Ready, as `kubectl describe` prints container
  states (waiting reason, last terminated reason and exit code, restart count, node);
* Warning events of those pods, their ReplicaSets, Deployments/StatefulSets/Jobs,
  PVCs and nodes in the window, as `kubectl get events` prints them;
* the rollout history (ReplicaSet revisions, images, change-cause), which doubles
  as the list of deployments when GitHub is not configured;
* HPA current/desired/min/max replicas and the conditions of the pods' nodes.

These become `LogLine`s with service = the workload (cited like any log line) and
`WorkloadFacts` (revisions, replicas, HPA bounds) so remediation names exact
revisions and replica counts. Every request has a timeout and the whole gather a
deadline below the context stage's; a 403 names the missing permission. Losing
the pod listing makes the source unavailable; losing an optional part (events,
HPAs, nodes) keeps the rest and says what is missing.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from iras.config import Settings
from iras.integrations.base import SourceUnavailable
from iras.schemas import Deployment, LogLine, WorkloadFacts, WorkloadRevision

log = logging.getLogger(__name__)

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
# A label value (and so a service name usable in a default selector).
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# Container waiting reasons that mean the container cannot start (not a normal transition).
_BAD_WAITING = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "PreStartHookError",
    "PostStartHookError",
}
MAX_NODES = 10
MAX_POD_LINES_PER_WORKLOAD = 20
MAX_REVISIONS = 10


class _OutOfTime(Exception):
    """The gather's deadline passed before this request could be sent."""


class KubernetesRequestError(SourceUnavailable):
    """One API request failed; `status` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class _What:
    """What a request asks for, so a 403 can name the missing permission."""

    verb: str
    resource: str
    group: str = ""
    namespace: str | None = None

    def permission(self) -> str:
        resource = f"{self.resource}.{self.group}" if self.group else self.resource
        where = f" in namespace {self.namespace}" if self.namespace else " cluster-wide"
        return f"`{self.verb}` on {resource}{where}"


@dataclass
class KubernetesEvidence:
    """What one gather found: evidence lines, rollout history as deployments, facts, gaps."""

    lines: list[LogLine] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)
    workloads: list[WorkloadFacts] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)


@dataclass
class _Workload:
    kind: str
    name: str
    namespace: str
    service: str
    pods: list[dict[str, Any]] = field(default_factory=list)
    replica_sets: list[dict[str, Any]] = field(default_factory=list)
    jobs: set[str] = field(default_factory=set)
    obj: dict[str, Any] | None = None
    hpa: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.namespace, self.kind, self.name)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _age(seconds: float) -> str:
    """A duration the way kubectl prints ages: 45s, 12m, 3h5m, 2d4h."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 180:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _controller(obj: dict[str, Any]) -> tuple[str, str] | None:
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("kind") or ""), str(ref.get("name") or "")
    refs = _meta(obj).get("ownerReferences") or []
    return (str(refs[0].get("kind") or ""), str(refs[0].get("name") or "")) if refs else None


def _status_message(exc: Any) -> str:
    """The `message` of a Kubernetes Status body, else the HTTP reason."""
    body = getattr(exc, "body", None)
    if body:
        try:
            data = json.loads(body)
        except (TypeError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])[:300]
        return " ".join(str(body).split())[:200]
    return str(getattr(exc, "reason", "") or type(exc).__name__)


class KubernetesSource:
    """Reads one incident's Kubernetes state; never writes to the cluster."""

    name = "kubernetes"

    def __init__(self, settings: Settings, *, budget_seconds: float | None = None) -> None:
        self.settings = settings
        self.timeout = settings.http_timeout_seconds
        # Below the context stage's wait (3x the HTTP timeout): a slow API server yields
        # a partial answer that says so, not a source marked unavailable after the fact.
        self.budget = budget_seconds if budget_seconds is not None else settings.http_timeout_seconds * 2.5
        self.namespaces: list[str | None] = list(settings.kubernetes_namespaces) or [None]
        self.page_size = settings.kubernetes_page_size
        self.max_pages = settings.kubernetes_max_pages
        self._deadline = 0.0
        self._now = datetime.now(UTC)
        self._truncated: list[str] = []

    # ------------------------------------------------------------------ client plumbing
    def _client(self) -> Any:
        from kubernetes import client, config
        from urllib3.util.retry import Retry

        configuration = client.Configuration()
        try:
            if self.settings.kubeconfig or not self.settings.kubernetes_service_host:
                config.load_kube_config(
                    config_file=self.settings.kubeconfig,
                    context=self.settings.kubernetes_context,
                    client_configuration=configuration,
                )
            else:
                config.load_incluster_config(client_configuration=configuration)
        except Exception as exc:  # noqa: BLE001 - ConfigException, missing file, bad YAML
            raise SourceUnavailable(f"kubernetes: cannot load the client configuration: {exc}") from exc
        # One quick retry of a refused connection; a read that timed out is not retried
        # (the deadline decides), nor is an error status.
        configuration.retries = Retry(total=1, connect=1, read=0, status=0, redirect=0, other=0)
        return client.ApiClient(configuration)

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0.05:
            raise _OutOfTime()
        return left

    def _call(self, fn: Callable[..., Any], what: _What, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """One request with a timeout inside the deadline; the decoded JSON body."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError, MaxRetryError
        from urllib3.exceptions import TimeoutError as Urllib3Timeout

        left = self._remaining()
        timeout = (min(self.timeout, left), min(self.timeout, left))
        try:
            response = fn(*args, _request_timeout=timeout, _preload_content=False, **kwargs)
            data = response.data
        except ApiException as exc:
            status = int(exc.status or 0) or None
            if status == 403:
                raise KubernetesRequestError(
                    f"kubernetes: forbidden: missing RBAC permission {what.permission()} "
                    f"(see deploy/kubernetes/rbac.yaml): {_status_message(exc)}",
                    403,
                ) from exc
            if status == 401:
                raise KubernetesRequestError(
                    f"kubernetes: unauthorized (token or client certificate rejected): {_status_message(exc)}",
                    401,
                ) from exc
            raise KubernetesRequestError(
                f"kubernetes: {what.verb} {what.resource}: HTTP {status}: {_status_message(exc)}", status
            ) from exc
        except (HTTPError, OSError) as exc:
            reason = exc.reason if isinstance(exc, MaxRetryError) else exc
            if isinstance(reason, Urllib3Timeout | TimeoutError):
                raise KubernetesRequestError(
                    f"kubernetes: {what.verb} {what.resource}: timed out after {timeout[1]:g}s"
                ) from exc
            short = " ".join(str(reason).split())[:200]
            raise KubernetesRequestError(
                f"kubernetes: {what.verb} {what.resource}: connection failed ({short})"
            ) from exc
        try:
            body = json.loads(data or b"null")
        except ValueError as exc:
            raise KubernetesRequestError(
                f"kubernetes: {what.verb} {what.resource}: expected JSON, got {data[:80]!r}"
            ) from exc
        if not isinstance(body, dict):
            raise KubernetesRequestError(f"kubernetes: {what.verb} {what.resource}: unexpected body")
        return body

    def _list(self, fn: Callable[..., Any], what: _What, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """Every item of a list, following `metadata.continue` up to max_pages pages."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(self.max_pages):
            extra = {"_continue": token} if token else {}
            body = self._call(fn, what, *args, limit=self.page_size, **extra, **kwargs)
            items.extend(item for item in body.get("items") or [] if isinstance(item, dict))
            token = (body.get("metadata") or {}).get("continue") or None
            if not token:
                return items
        note = f"kubernetes: {what.verb} {what.resource} stopped after {self.max_pages} pages of {self.page_size}"
        log.warning(note)
        self._truncated.append(note)
        return items

    def _get(self, fn: Callable[..., Any], what: _What, *args: Any) -> dict[str, Any] | None:
        """One object, or None when it does not exist (404)."""
        try:
            return self._call(fn, what, *args)
        except KubernetesRequestError as exc:
            if exc.status == 404:
                return None
            raise

    # ------------------------------------------------------------------ gather
    def gather(
        self, services: list[str], start: datetime, end: datetime, history_start: datetime | None = None
    ) -> KubernetesEvidence:
        """Everything Kubernetes says about `services` in [start, end]; rollout history
        from `history_start`. Raises SourceUnavailable when no pod listing succeeded."""
        self._deadline = time.monotonic() + self.budget
        self._now = datetime.now(UTC)
        self._truncated = []
        evidence = KubernetesEvidence()
        api_client = self._client()
        try:
            from kubernetes import client

            core = client.CoreV1Api(api_client)
            apps = client.AppsV1Api(api_client)
            try:
                workloads = self._find_workloads(core, apps, services, evidence)
            except _OutOfTime as exc:
                raise SourceUnavailable(
                    f"kubernetes: no answer within {self.budget:g}s listing pods"
                ) from exc
            steps: list[tuple[str, Callable[[], None]]] = [
                ("workload objects", lambda: self._read_workloads(apps, workloads, evidence)),
                ("events", lambda: self._events(core, workloads, start, end, evidence)),
                ("horizontalpodautoscalers", lambda: self._hpas(api_client, workloads, evidence)),
                ("nodes", lambda: self._nodes(core, workloads, end, evidence)),
                ("persistentvolumeclaims", lambda: self._pvcs(core, workloads, end, evidence)),
            ]
            for what, step in steps:
                try:
                    step()
                except _OutOfTime:
                    evidence.gaps.append(
                        f"{what} and later parts not read: the {self.budget:g}s deadline passed"
                    )
                    break
                except SourceUnavailable as exc:
                    evidence.gaps.append(str(exc))
            for workload in workloads:
                self._describe(workload, end, history_start or start, evidence)
        finally:
            api_client.close()
        evidence.gaps.extend(self._truncated)
        evidence.lines.sort(key=lambda line: line.timestamp)
        return evidence

    # ------------------------------------------------------------------ pods and owners
    def _selectors(self, service: str) -> list[str]:
        configured = self.settings.kubernetes_label_selectors.get(service)
        if configured:
            return [configured]
        if not _LABEL_VALUE.match(service) or len(service) > 63:
            return []
        return [f"app.kubernetes.io/name={service}", f"app={service}"]

    def _find_workloads(
        self, core: Any, apps: Any, services: list[str], evidence: KubernetesEvidence
    ) -> list[_Workload]:
        workloads: dict[tuple[str, str, str], _Workload] = {}
        listed = False
        errors: list[str] = []
        for service in services:
            selectors = self._selectors(service)
            if not selectors:
                evidence.gaps.append(
                    f"{service!r} is not a label value: set KUBERNETES_LABEL_SELECTORS for it"
                )
                continue
            for namespace in self.namespaces:
                for selector in selectors:
                    try:
                        pods = self._list_in(core, "pod", namespace, label_selector=selector)
                        listed = True
                    except KubernetesRequestError as exc:
                        errors.append(str(exc))
                        break
                    try:
                        replica_sets = self._list_in(apps, "replica_set", namespace, label_selector=selector)
                    except KubernetesRequestError as exc:
                        evidence.gaps.append(str(exc))
                        replica_sets = []
                    if pods or replica_sets:
                        self._group(core, service, pods, replica_sets, workloads, evidence)
                        break  # the first selector that finds something is the service's
        if not listed:
            raise SourceUnavailable("; ".join(dict.fromkeys(errors)) or "kubernetes: no pods listed")
        evidence.gaps.extend(dict.fromkeys(errors))
        return list(workloads.values())

    def _list_in(self, api: Any, kind: str, namespace: str | None, **kwargs: Any) -> list[dict[str, Any]]:
        resource, group = {
            "pod": ("pods", ""),
            "replica_set": ("replicasets", "apps"),
            "event": ("events", ""),
            "horizontal_pod_autoscaler": ("horizontalpodautoscalers", "autoscaling"),
        }[kind]
        what = _What("list", resource, group, namespace)
        if namespace is None:
            return self._list(getattr(api, f"list_{kind}_for_all_namespaces"), what, **kwargs)
        return self._list(getattr(api, f"list_namespaced_{kind}"), what, namespace, **kwargs)

    def _group(
        self,
        core: Any,
        service: str,
        pods: list[dict[str, Any]],
        replica_sets: list[dict[str, Any]],
        workloads: dict[tuple[str, str, str], _Workload],
        evidence: KubernetesEvidence,
    ) -> None:
        """Attach pods and ReplicaSets to their top owner: Deployment, StatefulSet,
        DaemonSet, CronJob (through its Job), or the ReplicaSet/Pod itself."""
        rs_owner: dict[tuple[str, str], tuple[str, str]] = {}
        for rs in replica_sets:
            ns, name = str(_meta(rs).get("namespace") or ""), str(_meta(rs).get("name") or "")
            owner = _controller(rs)
            kind, top = owner if owner and owner[0] == "Deployment" else ("ReplicaSet", name)
            rs_owner[(ns, name)] = (kind, top)
            workload = workloads.setdefault((ns, kind, top), _Workload(kind, top, ns, service))
            workload.replica_sets.append(rs)
        job_owner: dict[tuple[str, str], tuple[str, str]] = {}
        for pod in pods:
            ns, name = str(_meta(pod).get("namespace") or ""), str(_meta(pod).get("name") or "")
            owner = _controller(pod)
            if owner is None:
                kind, top = "Pod", name
            elif owner[0] == "ReplicaSet":
                kind, top = rs_owner.get((ns, owner[1])) or self._rs_guess(pod, owner[1])
            elif owner[0] == "Job":
                if (ns, owner[1]) not in job_owner:
                    job_owner[(ns, owner[1])] = self._job_owner(core, ns, owner[1], evidence)
                kind, top = job_owner[(ns, owner[1])]
            else:
                kind, top = owner
            workload = workloads.setdefault((ns, kind, top), _Workload(kind, top, ns, service))
            workload.pods.append(pod)
            if owner and owner[0] == "Job":
                workload.jobs.add(owner[1])

    @staticmethod
    def _rs_guess(pod: dict[str, Any], rs_name: str) -> tuple[str, str]:
        """A ReplicaSet not listed (other labels): its Deployment is its name minus the template hash."""
        template_hash = str((_meta(pod).get("labels") or {}).get("pod-template-hash") or "")
        if template_hash and rs_name.endswith("-" + template_hash):
            return "Deployment", rs_name[: -len(template_hash) - 1]
        return "ReplicaSet", rs_name

    def _job_owner(
        self, core: Any, namespace: str, job: str, evidence: KubernetesEvidence
    ) -> tuple[str, str]:
        from kubernetes import client

        batch = client.BatchV1Api(core.api_client)
        try:
            obj = self._get(
                batch.read_namespaced_job, _What("get", "jobs", "batch", namespace), job, namespace
            )
        except (KubernetesRequestError, _OutOfTime) as exc:
            evidence.gaps.append(str(exc) or "jobs not read: deadline passed")
            obj = None
        owner = _controller(obj) if obj else None
        if owner and owner[0] == "CronJob":
            return owner
        return "Job", job

    # ------------------------------------------------------------------ workload objects
    def _read_workloads(self, apps: Any, workloads: list[_Workload], evidence: KubernetesEvidence) -> None:
        for workload in workloads:
            if workload.kind == "Deployment":
                fn, what = (
                    apps.read_namespaced_deployment,
                    _What("get", "deployments", "apps", workload.namespace),
                )
            elif workload.kind == "StatefulSet":
                fn, what = (
                    apps.read_namespaced_stateful_set,
                    _What("get", "statefulsets", "apps", workload.namespace),
                )
            else:
                continue
            try:
                workload.obj = self._get(fn, what, workload.name, workload.namespace)
            except KubernetesRequestError as exc:
                evidence.gaps.append(str(exc))

    def _hpas(self, api_client: Any, workloads: list[_Workload], evidence: KubernetesEvidence) -> None:
        from kubernetes import client

        autoscaling = client.AutoscalingV2Api(api_client)
        scalable = [w for w in workloads if w.kind in ("Deployment", "StatefulSet", "ReplicaSet")]
        for namespace in sorted({w.namespace for w in scalable}):
            try:
                hpas = self._list_in(autoscaling, "horizontal_pod_autoscaler", namespace)
            except KubernetesRequestError as exc:
                if exc.status == 404:  # autoscaling/v2 not served: no HPA evidence, said so
                    evidence.gaps.append(f"kubernetes: autoscaling/v2 not served in {namespace} (HTTP 404)")
                    continue
                raise
            for hpa in hpas:
                ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
                for workload in scalable:
                    if workload.namespace == namespace and (ref.get("kind"), ref.get("name")) == (
                        workload.kind,
                        workload.name,
                    ):
                        workload.hpa = hpa

    # ------------------------------------------------------------------ events
    def _events(
        self,
        core: Any,
        workloads: list[_Workload],
        start: datetime,
        end: datetime,
        evidence: KubernetesEvidence,
    ) -> None:
        wanted: dict[tuple[str, str, str], _Workload] = {}
        for workload in workloads:
            ns = workload.namespace
            wanted[(ns, workload.kind, workload.name)] = workload
            for pod in workload.pods:
                wanted[(ns, "Pod", str(_meta(pod).get("name")))] = workload
                for claim in _claims(pod):
                    wanted[(ns, "PersistentVolumeClaim", claim)] = workload
            for rs in workload.replica_sets:
                wanted[(ns, "ReplicaSet", str(_meta(rs).get("name")))] = workload
            for job in workload.jobs:
                wanted[(ns, "Job", job)] = workload
        node_owner = _node_owners(workloads)
        seen: set[str] = set()
        namespaces = sorted({w.namespace for w in workloads})
        for namespace in namespaces:
            for event in self._list_in(core, "event", namespace, field_selector="type=Warning"):
                obj = event.get("involvedObject") or event.get("regarding") or {}
                key = (
                    str(obj.get("namespace") or namespace),
                    str(obj.get("kind") or ""),
                    str(obj.get("name") or ""),
                )
                if key in wanted:
                    self._event_line(event, wanted[key].name, start, end, seen, evidence)
        if node_owner:
            # Node events are recorded in the `default` namespace.
            try:
                events = self._list_in(
                    core, "event", "default", field_selector="involvedObject.kind=Node,type=Warning"
                )
            except KubernetesRequestError as exc:
                evidence.gaps.append(str(exc))
                events = []
            for event in events:
                obj = event.get("involvedObject") or {}
                name = str(obj.get("name") or "")
                if name in node_owner:
                    self._event_line(event, node_owner[name], start, end, seen, evidence)

    def _event_line(
        self,
        event: dict[str, Any],
        service: str,
        start: datetime,
        end: datetime,
        seen: set[str],
        evidence: KubernetesEvidence,
    ) -> None:
        uid = str(_meta(event).get("uid") or id(event))
        if uid in seen:
            return
        seen.add(uid)
        series = event.get("series") or {}
        first = parse_time(event.get("firstTimestamp")) or parse_time(event.get("eventTime"))
        last = (
            parse_time(series.get("lastObservedTime"))
            or parse_time(event.get("lastTimestamp"))
            or first
            or parse_time(_meta(event).get("creationTimestamp"))
        )
        if last is None or last < start or (first or last) > end:
            return
        obj = event.get("involvedObject") or event.get("regarding") or {}
        count = int(event.get("count") or series.get("count") or 1)
        message = " ".join(str(event.get("message") or event.get("note") or "").split())
        text = f"{event.get('type') or 'Warning'} {event.get('reason') or ''} {str(obj.get('kind') or '').lower()}/{obj.get('name')} {message}"
        if count > 1 and first is not None:
            text += f" (x{count} over {_age((last - first).total_seconds())})"
        evidence.lines.append(LogLine(timestamp=last, service=service, level="WARN", message=text.strip()))

    # ------------------------------------------------------------------ nodes and PVCs
    def _nodes(
        self, core: Any, workloads: list[_Workload], end: datetime, evidence: KubernetesEvidence
    ) -> None:
        node_owner = _node_owners(workloads)
        for name in sorted(node_owner)[:MAX_NODES]:
            node = self._get(core.read_node, _What("get", "nodes"), name)
            if node is None:
                evidence.lines.append(
                    LogLine(
                        timestamp=self._at(end),
                        service=node_owner[name],
                        level="WARN",
                        message=f"node/{name} NotFound: the node of these pods no longer exists",
                    )
                )
                continue
            bad = []
            for cond in (node.get("status") or {}).get("conditions") or []:
                ctype, status = cond.get("type"), cond.get("status")
                healthy = status == "True" if ctype == "Ready" else status == "False"
                if not healthy:
                    reason = cond.get("reason") or ""
                    message = " ".join(str(cond.get("message") or "").split())
                    bad.append(
                        f"{ctype}={status} ({reason}: {message})"
                        if message
                        else f"{ctype}={status} ({reason})"
                    )
            unschedulable = bool((node.get("spec") or {}).get("unschedulable"))
            if bad or unschedulable:
                text = f"node/{name} Conditions: " + ", ".join(bad or ["Ready=True"])
                if unschedulable:
                    text += "; SchedulingDisabled"
                evidence.lines.append(
                    LogLine(timestamp=self._at(end), service=node_owner[name], level="WARN", message=text)
                )

    def _pvcs(
        self, core: Any, workloads: list[_Workload], end: datetime, evidence: KubernetesEvidence
    ) -> None:
        for workload in workloads:
            claims = sorted({c for pod in workload.pods for c in _claims(pod)})
            for claim in claims[:MAX_NODES]:
                what = _What("get", "persistentvolumeclaims", "", workload.namespace)
                pvc = self._get(core.read_namespaced_persistent_volume_claim, what, claim, workload.namespace)
                phase = ((pvc or {}).get("status") or {}).get("phase")
                if pvc is None:
                    text = f"persistentvolumeclaim/{claim} NotFound: mounted by pods of {workload.kind.lower()}/{workload.name}"
                elif phase != "Bound":
                    text = f"persistentvolumeclaim/{claim} Status: {phase or 'Unknown'}"
                else:
                    continue
                evidence.lines.append(
                    LogLine(timestamp=self._at(end), service=workload.name, level="WARN", message=text)
                )

    def _at(self, end: datetime) -> datetime:
        """When a state (not an event) was observed: now, inside the window."""
        return min(self._now, end)

    # ------------------------------------------------------------------ describe
    def _describe(
        self, workload: _Workload, end: datetime, history_start: datetime, evidence: KubernetesEvidence
    ) -> None:
        facts = WorkloadFacts(
            kind=workload.kind, name=workload.name, namespace=workload.namespace, service=workload.service
        )
        obj = workload.obj or {}
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if obj:
            facts.replicas = spec.get("replicas") if isinstance(spec.get("replicas"), int) else None
            facts.ready_replicas = int(status.get("readyReplicas") or 0)
            revision = (_meta(obj).get("annotations") or {}).get(REVISION_ANNOTATION)
            facts.current_revision = int(revision) if str(revision or "").isdigit() else None
        facts.revisions = _revisions(workload.replica_sets)
        if facts.current_revision is None and workload.kind == "Deployment" and facts.revisions:
            # Without the Deployment object: the newest ReplicaSet with pods is the live one.
            live = [r for r in facts.revisions if r.replicas > 0] or facts.revisions
            facts.current_revision = max(r.revision for r in live)
        for pod in workload.pods[:1]:
            for container in (pod.get("spec") or {}).get("containers") or []:
                limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
                if limit:
                    facts.memory_limits[str(container.get("name"))] = str(limit)
        hpa = workload.hpa
        if hpa:
            hspec, hstatus = hpa.get("spec") or {}, hpa.get("status") or {}
            facts.hpa_name = str(_meta(hpa).get("name") or "")
            facts.hpa_min_replicas = hspec.get("minReplicas")
            facts.hpa_max_replicas = hspec.get("maxReplicas")
            facts.hpa_current_replicas = hstatus.get("currentReplicas")
            facts.hpa_desired_replicas = hstatus.get("desiredReplicas")
        evidence.workloads.append(facts)
        at = self._at(end)
        ref = f"{workload.kind.lower()}/{workload.name}"
        lines = evidence.lines

        if obj and workload.kind in ("Deployment", "StatefulSet"):
            desired = facts.replicas if facts.replicas is not None else "?"
            # As `kubectl describe` prints the Replicas line.
            text = (
                f"{ref} Replicas: {desired} desired | {int(status.get('updatedReplicas') or 0)} updated | "
                f"{int(status.get('replicas') or 0)} total | {int(status.get('availableReplicas') or 0)} available"
                f" | {int(status.get('unavailableReplicas') or 0)} unavailable"
            )
            if facts.current_revision is not None:
                text += f"; revision {facts.current_revision}"
            bad = [
                f"{c.get('type')}={c.get('status')} {c.get('reason') or ''}: {' '.join(str(c.get('message') or '').split())}"
                for c in status.get("conditions") or []
                if c.get("status") != "True" or c.get("type") == "ReplicaFailure"
            ]
            if bad:
                text += "; " + "; ".join(bad)
            ready_short = (
                isinstance(facts.replicas, int)
                and facts.ready_replicas is not None
                and facts.ready_replicas < facts.replicas
            )
            lines.append(
                LogLine(
                    timestamp=at,
                    service=workload.name,
                    level="WARN" if bad or ready_short else "INFO",
                    message=text,
                )
            )

        for rev in facts.revisions:
            if rev.created_at is None or rev.created_at < history_start or rev.created_at > end:
                continue
            current = " (current)" if rev.revision == facts.current_revision else ""
            text = f"{ref} revision {rev.revision}{current} replicaset/{rev.replica_set} images: {', '.join(rev.images) or '-'}"
            text += f"; change-cause: {rev.change_cause}" if rev.change_cause else "; change-cause: <none>"
            lines.append(LogLine(timestamp=rev.created_at, service=workload.name, level="INFO", message=text))
            if workload.kind == "Deployment":
                evidence.deployments.append(self._as_deployment(workload, facts, rev, obj))

        if hpa:
            limited = next(
                (
                    c
                    for c in (hpa.get("status") or {}).get("conditions") or []
                    if c.get("type") == "ScalingLimited" and c.get("status") == "True"
                ),
                None,
            )
            text = (
                f"horizontalpodautoscaler/{facts.hpa_name} {ref} currentReplicas={facts.hpa_current_replicas} "
                f"desiredReplicas={facts.hpa_desired_replicas} minReplicas={facts.hpa_min_replicas} "
                f"maxReplicas={facts.hpa_max_replicas}"
            )
            at_max = (
                facts.hpa_max_replicas is not None
                and (facts.hpa_current_replicas or 0) >= facts.hpa_max_replicas
            )
            if limited:
                text += f"; ScalingLimited=True {limited.get('reason') or ''}: {' '.join(str(limited.get('message') or '').split())}"
            lines.append(
                LogLine(
                    timestamp=at,
                    service=workload.name,
                    level="WARN" if limited or at_max else "INFO",
                    message=text,
                )
            )

        healthy = 0
        shown = 0
        for pod in workload.pods:
            pod_lines = _pod_lines(pod)
            if not pod_lines:
                healthy += 1
                continue
            if shown >= MAX_POD_LINES_PER_WORKLOAD:
                continue
            shown += 1
            for timestamp, level, text in pod_lines:
                lines.append(
                    LogLine(
                        timestamp=min(timestamp or at, at), service=workload.name, level=level, message=text
                    )
                )
        if workload.pods:
            unhealthy = len(workload.pods) - healthy
            text = f"{ref} pods: {healthy}/{len(workload.pods)} Running and Ready"
            if unhealthy > shown:
                text += f" ({unhealthy - shown} more not ready, not shown)"
            lines.append(
                LogLine(
                    timestamp=at,
                    service=workload.name,
                    level="INFO" if not unhealthy else "WARN",
                    message=text,
                )
            )

    def _as_deployment(
        self, workload: _Workload, facts: WorkloadFacts, rev: WorkloadRevision, obj: dict[str, Any]
    ) -> Deployment:
        """A rollout revision in the shape of a deployment record: sha = the pod-template-hash
        (the suffix of the ReplicaSet and pod names), ref = the first image's tag."""
        template_hash = rev.replica_set.rsplit("-", 1)[-1] if "-" in rev.replica_set else rev.replica_set
        tag = (
            rev.images[0].rsplit(":", 1)[-1] if rev.images and ":" in rev.images[0].rsplit("/", 1)[-1] else ""
        )
        if rev.revision != facts.current_revision:
            state = "inactive"
        else:
            conditions = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}
            progressing = conditions.get("Progressing") or {}
            if progressing.get("reason") == "ProgressDeadlineExceeded":
                state = "failure"
            elif (conditions.get("Available") or {}).get("status") == "True" and progressing.get(
                "reason"
            ) == "NewReplicaSetAvailable":
                state = "success"
            else:
                state = "in_progress" if obj else ""
        description = (
            f"{workload.namespace}/{workload.name} revision {rev.revision}: "
            + (rev.change_cause or "no change-cause")
            + f"; images: {', '.join(rev.images)}"
        )
        return Deployment(
            service=workload.name,
            sha=template_hash,
            ref=tag,
            environment=self.settings.environment,
            created_at=rev.created_at or self._now,
            creator="",
            description=description[:500],
            status=state or None,
        )


# ---------------------------------------------------------------------- helpers


def _claims(pod: dict[str, Any]) -> Iterable[str]:
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            yield str(claim)


def _node_owners(workloads: list[_Workload]) -> dict[str, str]:
    owners: dict[str, str] = {}
    for workload in sorted(workloads, key=lambda w: w.name):
        for pod in workload.pods:
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                owners.setdefault(str(node), workload.name)
    return owners


def _revisions(replica_sets: list[dict[str, Any]]) -> list[WorkloadRevision]:
    revisions = []
    for rs in replica_sets:
        annotations = _meta(rs).get("annotations") or {}
        number = str(annotations.get(REVISION_ANNOTATION) or "")
        if not number.isdigit():
            continue
        containers = ((((rs.get("spec") or {}).get("template") or {}).get("spec")) or {}).get(
            "containers"
        ) or []
        revisions.append(
            WorkloadRevision(
                revision=int(number),
                replica_set=str(_meta(rs).get("name") or ""),
                images=[str(c.get("image")) for c in containers if c.get("image")],
                change_cause=" ".join(str(annotations.get(CHANGE_CAUSE_ANNOTATION) or "").split())[:300],
                created_at=parse_time(_meta(rs).get("creationTimestamp")),
                replicas=int((rs.get("status") or {}).get("replicas") or 0),
            )
        )
    revisions.sort(key=lambda r: r.revision)
    return revisions[-MAX_REVISIONS:]


def _pod_status(pod: dict[str, Any]) -> str:
    """The STATUS column of `kubectl get pods`."""
    meta, status = _meta(pod), pod.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating"
    for c in status.get("initContainerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting") or {}
        terminated = (c.get("state") or {}).get("terminated") or {}
        if waiting.get("reason") and waiting["reason"] != "PodInitializing":
            return f"Init:{waiting['reason']}"
        if terminated and terminated.get("exitCode"):
            return f"Init:{terminated.get('reason') or 'Error'}"
    reason = status.get("reason")
    for c in status.get("containerStatuses") or []:
        state = c.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
    return str(reason or status.get("phase") or "Unknown")


def _pod_lines(pod: dict[str, Any]) -> list[tuple[datetime | None, str, str]]:
    """Describe-style lines for a pod that is not Running and Ready (or has restarted);
    an empty list for a healthy pod."""
    meta, spec, status = _meta(pod), pod.get("spec") or {}, pod.get("status") or {}
    name = meta.get("name")
    phase = status.get("phase") or "Unknown"
    statuses = list(status.get("containerStatuses") or [])
    init = list(status.get("initContainerStatuses") or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    total = len(spec.get("containers") or statuses) or len(statuses)
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses + init)
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    is_ready = (conditions.get("Ready") or {}).get("status") == "True"
    if phase in ("Running", "Succeeded") and (is_ready or phase == "Succeeded") and restarts == 0:
        return []
    limits = {
        str(c.get("name")): str(((c.get("resources") or {}).get("limits") or {}).get("memory") or "")
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
    }
    out: list[tuple[datetime | None, str, str]] = []
    status_word = _pod_status(pod)
    header = f"pod/{name} Ready: {ready}/{total}, Status: {status_word}, Restarts: {restarts}, Node: {spec.get('nodeName') or '<none>'}"
    if status.get("message"):
        header += f", Message: {' '.join(str(status['message']).split())[:300]}"
    scheduled = conditions.get("PodScheduled") or {}
    if scheduled.get("status") == "False" and scheduled.get("message"):
        header += f", PodScheduled=False {scheduled.get('reason') or ''}: {' '.join(str(scheduled['message']).split())[:300]}"
    when = parse_time((conditions.get("Ready") or {}).get("lastTransitionTime")) or parse_time(
        status.get("startTime")
    )
    out.append((when, "WARN" if phase != "Succeeded" else "INFO", header))
    for label, entries in (("init container", init), ("container", statuses)):
        for c in entries:
            cname = str(c.get("name"))
            state = c.get("state") or {}
            waiting = state.get("waiting") or {}
            last = (c.get("lastState") or {}).get("terminated") or {}
            count = int(c.get("restartCount") or 0)
            if waiting.get("reason") and (
                waiting["reason"] in _BAD_WAITING or label == "container" and not c.get("ready")
            ):
                text = f"pod/{name} {label} {cname}: State: Waiting, Reason: {waiting['reason']}"
                if waiting.get("message"):
                    text += f", Message: {' '.join(str(waiting['message']).split())[:400]}"
                text += f", Ready: {'True' if c.get('ready') else 'False'}, Restart Count: {count}"
                level = "WARN" if waiting["reason"] in _BAD_WAITING else "INFO"
                out.append((when, level, text))
            if last:
                text = f"pod/{name} {label} {cname}: Last State: Terminated, Reason: {last.get('reason') or 'Error'}, Exit Code: {last.get('exitCode')}"
                if limits.get(cname):
                    text += f" (limits: memory={limits[cname]})"
                text += f", Restart Count: {count}"
                if last.get("message"):
                    text += f", Message: {' '.join(str(last['message']).split())[:300]}"
                out.append((parse_time(last.get("finishedAt")) or when, "WARN", text))
    return out


def fetch(
    settings: Settings, services: list[str], start: datetime, end: datetime, history_start: datetime
) -> KubernetesEvidence:
    """The context stage's entry point (kept small so tests and production share it)."""
    return KubernetesSource(settings).gather(services, start, end, history_start)
