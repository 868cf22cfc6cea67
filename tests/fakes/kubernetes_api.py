"""A local Kubernetes API server for the official `kubernetes` client to talk to.

Serves the read paths IRAS uses (pods, events, replicasets, deployments,
statefulsets, jobs, HPAs (autoscaling/v2), nodes, PVCs) from stored objects shaped
as in the API reference, with what a client can get wrong checked as the real
server does: a Bearer token, equality-based label selectors (`k=v`, `k==v`, `k!=v`,
`k`, `!k`), the field selectors the API supports on events, `limit` + `continue`
chunking (`metadata.continue`, `remainingItemCount` only without selectors), a 403
`Status` naming the forbidden verb and resource, a 404 `Status` for a missing object
or an API group it does not serve, and `script()`ed replies (delays, 5xx).
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any

from tests.fakes.servers import FakeServer, Recorded, Reply

_CORE = re.compile(r"^/api/v1(?:/namespaces/(?P<ns>[^/]+))?/(?P<res>[a-z]+)(?:/(?P<name>[^/]+))?$")
_GROUP = re.compile(
    r"^/apis/(?P<group>[a-z0-9.]+)/(?P<version>v[0-9a-z]+)(?:/namespaces/(?P<ns>[^/]+))?/(?P<res>[a-z]+)"
    r"(?:/(?P<name>[^/]+))?$"
)
_SERVED = {
    ("", "v1"): {"pods", "events", "nodes", "persistentvolumeclaims"},
    ("apps", "v1"): {"replicasets", "deployments", "statefulsets", "daemonsets"},
    ("batch", "v1"): {"jobs", "cronjobs"},
    ("autoscaling", "v2"): {"horizontalpodautoscalers"},
}
_KIND = {
    "pods": "Pod",
    "events": "Event",
    "nodes": "Node",
    "persistentvolumeclaims": "PersistentVolumeClaim",
    "replicasets": "ReplicaSet",
    "deployments": "Deployment",
    "statefulsets": "StatefulSet",
    "daemonsets": "DaemonSet",
    "jobs": "Job",
    "cronjobs": "CronJob",
    "horizontalpodautoscalers": "HorizontalPodAutoscaler",
}
_CLUSTER_SCOPED = {"nodes"}
# Fields the API server accepts in a fieldSelector on core/v1 events.
_EVENT_FIELDS = {
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.name",
    "metadata.namespace",
}


def ts(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> Reply:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return Reply(code, body)


def _parse_selector(selector: str) -> list[tuple[str, str, str | None]]:
    """`a=b,c!=d,e,!f` -> [(op, key, value)]; a set-based selector raises ValueError."""
    terms: list[tuple[str, str, str | None]] = []
    for raw in filter(None, (part.strip() for part in selector.split(","))):
        if " in " in raw or " notin " in raw or "(" in raw:
            raise ValueError(f"set-based requirement not supported by this fake: {raw}")
        if "!=" in raw:
            key, value = raw.split("!=", 1)
            terms.append(("!=", key.strip(), value.strip()))
        elif "==" in raw:
            key, value = raw.split("==", 1)
            terms.append(("=", key.strip(), value.strip()))
        elif "=" in raw:
            key, value = raw.split("=", 1)
            terms.append(("=", key.strip(), value.strip()))
        elif raw.startswith("!"):
            terms.append(("!", raw[1:].strip(), None))
        else:
            terms.append(("exists", raw, None))
    return terms


def _matches(values: dict[str, str], terms: list[tuple[str, str, str | None]]) -> bool:
    for op, key, value in terms:
        present = key in values
        if op == "=" and values.get(key) != value:
            return False
        if op == "!=" and present and values[key] == value:
            return False
        if op == "exists" and not present:
            return False
        if op == "!" and present:
            return False
    return True


def _field(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, dict) and path == "source":
        value = value.get("component")
    return "" if value is None else str(value)


class FakeKubernetes(FakeServer):
    """Stores objects by (resource, namespace); `forbid()` denies a verb like RBAC would."""

    def __init__(self, token: str = "k8s-test-token", user: str = "system:serviceaccount:iras:iras") -> None:
        super().__init__()
        self.token = token
        self.user = user
        self.objects: dict[str, list[dict[str, Any]]] = {}
        self.forbidden: set[tuple[str, str, str | None]] = set()
        self.unserved: set[tuple[str, str]] = set()
        self._uid = 0

    # ------------------------------------------------------------------ state
    def add(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        self._uid += 1
        meta.setdefault("uid", f"00000000-0000-4000-8000-{self._uid:012d}")
        meta.setdefault("resourceVersion", str(1000 + self._uid))
        self.objects.setdefault(resource, []).append(obj)
        return obj

    def forbid(self, verb: str, resource: str, namespace: str | None = None) -> None:
        """Deny `verb` on `resource` (in `namespace`, or everywhere when None)."""
        self.forbidden.add((verb, resource, namespace))

    def unserve(self, group: str, version: str) -> None:
        """Answer 404 for a whole API group version (an old cluster without it)."""
        self.unserved.add((group, version))

    def kubeconfig(self, path: str, namespace: str = "default") -> str:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "iras", "user": {"token": self.token}}],
            "contexts": [
                {"name": "fake", "context": {"cluster": "fake", "user": "iras", "namespace": namespace}}
            ],
            "current-context": "fake",
        }
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(config, fh)  # JSON is YAML
        return path

    # ------------------------------------------------------------------ HTTP
    def handle(self, request: Recorded) -> Reply:
        if request.header("Authorization") != f"Bearer {self.token}":
            return status(401, "Unauthorized", "Unauthorized")
        if request.method != "GET":
            return status(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        group = version = ""
        match = _CORE.match(request.path)
        if match:
            version = "v1"
        else:
            match = _GROUP.match(request.path)
            if not match:
                return status(404, "NotFound", "the server could not find the requested resource")
            group, version = match.group("group"), match.group("version")
        ns, resource, name = match.group("ns"), match.group("res"), match.group("name")
        if (group, version) in self.unserved or resource not in _SERVED.get((group, version), set()):
            return status(404, "NotFound", "the server could not find the requested resource")
        verb = "get" if name else "list"
        scope_ns = None if resource in _CLUSTER_SCOPED else ns
        if any(v == verb and r == resource and (n is None or n == scope_ns) for v, r, n in self.forbidden):
            where = f'in the namespace "{scope_ns}"' if scope_ns else "at the cluster scope"
            qualified = f"{resource}.{group}" if group else resource
            subject = f'{qualified} "{name}"' if name else qualified
            return status(
                403,
                "Forbidden",
                f'{subject} is forbidden: User "{self.user}" cannot {verb} resource "{resource}" '
                f'in API group "{group}" {where}',
                {"name": name, "group": group, "kind": resource}
                if name
                else {"group": group, "kind": resource},
            )
        stored = [
            obj
            for obj in self.objects.get(resource, [])
            if resource in _CLUSTER_SCOPED or ns is None or obj["metadata"].get("namespace") == ns
        ]
        api_version = f"{group}/{version}" if group else version
        if name:
            for obj in stored:
                if obj["metadata"].get("name") == name:
                    return Reply(200, {"kind": _KIND[resource], "apiVersion": api_version, **obj})
            qualified = f"{resource}.{group}" if group else resource
            return status(
                404,
                "NotFound",
                f'{qualified} "{name}" not found',
                {"name": name, "group": group, "kind": resource},
            )
        return self._list(request, resource, api_version, stored)

    def _list(
        self, request: Recorded, resource: str, api_version: str, stored: list[dict[str, Any]]
    ) -> Reply:
        label_selector = request.param("labelSelector") or ""
        field_selector = request.param("fieldSelector") or ""
        try:
            labels = _parse_selector(label_selector)
            fields = _parse_selector(field_selector)
        except ValueError as exc:
            return status(400, "BadRequest", f"unable to parse requirement: {exc}")
        if resource == "events":
            unknown = [key for _, key, _ in fields if key not in _EVENT_FIELDS]
        else:
            unknown = [key for _, key, _ in fields if key not in ("metadata.name", "metadata.namespace")]
        if unknown:
            return status(
                400,
                "BadRequest",
                f"field label not supported: {unknown[0]}",
            )
        items = [
            obj
            for obj in stored
            if _matches(obj["metadata"].get("labels") or {}, labels)
            and _matches({key: _field(obj, key) for _, key, _ in fields}, fields)
        ]
        items.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"].get("name") or ""))
        offset = 0
        token = request.param("continue")
        if token:
            try:
                state = json.loads(base64.b64decode(token))
                offset = int(state["start"])
                if state["query"] != [label_selector, field_selector]:
                    raise ValueError("different query")
            except (ValueError, KeyError, TypeError):
                return status(410, "Expired", "The provided continue parameter is too old or invalid")
        limit = int(request.param("limit") or 0)
        page = items[offset : offset + limit] if limit else items[offset:]
        meta: dict[str, Any] = {"resourceVersion": "99999"}
        if limit and offset + limit < len(items):
            meta["continue"] = base64.b64encode(
                json.dumps({"start": offset + limit, "query": [label_selector, field_selector]}).encode()
            ).decode()
            if not label_selector and not field_selector:
                meta["remainingItemCount"] = len(items) - offset - limit
        return Reply(
            200,
            {"kind": f"{_KIND[resource]}List", "apiVersion": api_version, "metadata": meta, "items": page},
        )


# ---------------------------------------------------------------------- object builders


def pod(
    name: str,
    namespace: str,
    labels: dict[str, str],
    *,
    owner: tuple[str, str] | None,
    node: str = "node-a",
    phase: str = "Running",
    containers: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    init_statuses: list[dict[str, Any]] | None = None,
    ready: bool = True,
    claims: list[str] | None = None,
    started: datetime | None = None,
    reason: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """A Pod as the API returns it (metadata, spec, status)."""
    containers = containers or [{"name": labels.get("app", "app"), "image": "registry.example/app:1.0.0"}]
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1" if owner[0] != "Job" else "batch/v1",
                "kind": owner[0],
                "name": owner[1],
                "uid": f"owner-{owner[1]}",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    status_body: dict[str, Any] = {
        "phase": phase,
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "True",
                "lastTransitionTime": ts(started or datetime(2025, 1, 1, tzinfo=UTC)),
            },
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": ts(started or datetime(2025, 1, 1, tzinfo=UTC)),
            },
        ],
        "containerStatuses": statuses
        if statuses is not None
        else [
            {
                "name": c["name"],
                "ready": ready,
                "restartCount": 0,
                "image": c["image"],
                "started": ready,
                "state": {"running": {"startedAt": ts(started or datetime(2025, 1, 1, tzinfo=UTC))}},
            }
            for c in containers
        ],
    }
    if init_statuses is not None:
        status_body["initContainerStatuses"] = init_statuses
    if started:
        status_body["startTime"] = ts(started)
    if reason:
        status_body["reason"] = reason
    if message:
        status_body["message"] = message
    spec: dict[str, Any] = {"containers": containers, "nodeName": node}
    if claims:
        spec["volumes"] = [
            {"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)
        ]
    return {"metadata": meta, "spec": spec, "status": status_body}


def replica_set(
    name: str,
    namespace: str,
    labels: dict[str, str],
    *,
    deployment: str,
    revision: int,
    image: str,
    created: datetime,
    replicas: int,
    change_cause: str | None = None,
) -> dict[str, Any]:
    annotations = {
        "deployment.kubernetes.io/revision": str(revision),
        "deployment.kubernetes.io/desired-replicas": str(replicas),
        "deployment.kubernetes.io/max-replicas": str(replicas + 1),
    }
    if change_cause:
        annotations["kubernetes.io/change-cause"] = change_cause
    template_hash = name.rsplit("-", 1)[-1]
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**labels, "pod-template-hash": template_hash},
            "annotations": annotations,
            "creationTimestamp": ts(created),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": deployment,
                    "uid": f"owner-{deployment}",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {**labels, "pod-template-hash": template_hash}},
            "template": {
                "metadata": {"labels": {**labels, "pod-template-hash": template_hash}},
                "spec": {"containers": [{"name": deployment, "image": image}]},
            },
        },
        "status": {
            "replicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "observedGeneration": revision,
        },
    }


def deployment(
    name: str,
    namespace: str,
    labels: dict[str, str],
    *,
    replicas: int,
    revision: int,
    ready: int | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    ready = replicas if ready is None else ready
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "generation": revision,
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}},
        },
        "status": {
            "observedGeneration": revision,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": replicas - ready,
            "conditions": conditions
            or [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable",
                    "message": f'ReplicaSet "{name}" has successfully progressed.',
                },
            ],
        },
    }


def event(
    namespace: str,
    kind: str,
    name: str,
    reason: str,
    message: str,
    *,
    first: datetime,
    last: datetime | None = None,
    count: int = 1,
    type_: str = "Warning",
    component: str = "kubelet",
) -> dict[str, Any]:
    """A core/v1 Event (the shape `kubectl get events` reads)."""
    last = last or first
    return {
        "metadata": {
            "name": f"{name}.{abs(hash((reason, message, first))) % 10**16:x}",
            "namespace": namespace,
            "creationTimestamp": ts(first),
        },
        "involvedObject": {
            "kind": kind,
            "namespace": namespace if kind != "Node" else "",
            "name": name,
            "apiVersion": "v1",
        },
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "firstTimestamp": ts(first),
        "lastTimestamp": ts(last),
        "count": count,
        "type": type_,
        "eventTime": None,
        "reportingComponent": component,
        "reportingInstance": "",
    }


def hpa(
    name: str,
    namespace: str,
    target: str,
    *,
    minimum: int,
    maximum: int,
    current: int,
    desired: int,
    limited: bool = False,
) -> dict[str, Any]:
    conditions = [
        {
            "type": "AbleToScale",
            "status": "True",
            "reason": "ReadyForNewScale",
            "message": "recommended size matches current size",
        },
    ]
    if limited:
        conditions.append(
            {
                "type": "ScalingLimited",
                "status": "True",
                "reason": "TooManyReplicas",
                "message": "the desired replica count is more than the maximum replica count",
            }
        )
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
        },
        "status": {"currentReplicas": current, "desiredReplicas": desired, "conditions": conditions},
    }


def node(name: str, *, pressure: str | None = None, ready: bool = True) -> dict[str, Any]:
    conditions = []
    for kind in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        on = kind == pressure
        conditions.append(
            {
                "type": kind,
                "status": "True" if on else "False",
                "reason": f"KubeletHas{'' if on else 'No'}{kind}"
                if kind != "DiskPressure"
                else ("KubeletHasDiskPressure" if on else "KubeletHasNoDiskPressure"),
                "message": f"kubelet has {'' if on else 'no '}{kind.replace('Pressure', '').lower()} pressure",
            }
        )
    conditions.append(
        {
            "type": "Ready",
            "status": "True" if ready else "False",
            "reason": "KubeletReady" if ready else "KubeletNotReady",
            "message": "kubelet is posting ready status" if ready else "PLEG is not healthy",
        }
    )
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"conditions": conditions},
    }
