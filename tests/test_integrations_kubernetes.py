"""The Kubernetes context source: the official client against a local server that
speaks the Kubernetes API (tests/fakes/kubernetes_api.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from iras.config import Settings
from iras.integrations.base import SourceUnavailable
from iras.integrations.context import gather_context
from iras.integrations.kubernetes import KubernetesSource
from tests.fakes.kubernetes_api import (
    FakeKubernetes,
    deployment,
    event,
    hpa,
    node,
    pod,
    replica_set,
    status,
)
from tests.fakes.servers import Reply

T0 = datetime(2025, 11, 1, 3, 0, tzinfo=UTC)
START, END = T0 - timedelta(minutes=30), T0 + timedelta(minutes=5)
LABELS = {"app.kubernetes.io/name": "checkout"}


@pytest.fixture
def cluster() -> Iterator[FakeKubernetes]:
    with FakeKubernetes() as fake:
        yield fake  # type: ignore[misc]


def _settings(cluster: FakeKubernetes, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "kubeconfig": cluster.kubeconfig(str(tmp_path / "kubeconfig")),
        "http_timeout_seconds": 2,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def _checkout(cluster: FakeKubernetes, *, namespace: str = "shop") -> None:
    """checkout: revision 7 (2.41.0) rolled out 20 min ago over revision 6; one pod
    cannot start (missing Secret key), one OOMKilled and restarting, one healthy."""
    cluster.add(
        "replicasets",
        replica_set(
            "checkout-5f6c8d9b7",
            namespace,
            LABELS,
            deployment="checkout",
            revision=6,
            image="registry.example/shop/checkout:2.40.0",
            created=T0 - timedelta(days=3),
            replicas=0,
        ),
    )
    cluster.add(
        "replicasets",
        replica_set(
            "checkout-7d4b9c8f6",
            namespace,
            LABELS,
            deployment="checkout",
            revision=7,
            image="registry.example/shop/checkout:2.41.0",
            created=T0 - timedelta(minutes=20),
            replicas=3,
            change_cause="release 2.41.0 (guest checkout)",
        ),
    )
    cluster.add("deployments", deployment("checkout", namespace, LABELS, replicas=3, revision=7, ready=1))
    pod_labels = {**LABELS, "pod-template-hash": "7d4b9c8f6"}
    owner = ("ReplicaSet", "checkout-7d4b9c8f6")
    cluster.add(
        "pods",
        pod(
            "checkout-7d4b9c8f6-abcde",
            namespace,
            pod_labels,
            owner=owner,
            node="node-a",
            phase="Pending",
            ready=False,
            started=T0 - timedelta(minutes=18),
            statuses=[
                {
                    "name": "checkout",
                    "ready": False,
                    "restartCount": 0,
                    "image": "registry.example/shop/checkout:2.41.0",
                    "state": {
                        "waiting": {
                            "reason": "CreateContainerConfigError",
                            "message": f"couldn't find key DB_PASSWORD in Secret {namespace}/checkout-db",
                        }
                    },
                }
            ],
        ),
    )
    cluster.add(
        "pods",
        pod(
            "checkout-7d4b9c8f6-fghij",
            namespace,
            pod_labels,
            owner=owner,
            node="node-b",
            ready=False,
            started=T0 - timedelta(minutes=18),
            containers=[
                {
                    "name": "checkout",
                    "image": "registry.example/shop/checkout:2.41.0",
                    "resources": {"limits": {"memory": "512Mi"}},
                }
            ],
            statuses=[
                {
                    "name": "checkout",
                    "ready": False,
                    "restartCount": 4,
                    "image": "registry.example/shop/checkout:2.41.0",
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s"}},
                    "lastState": {
                        "terminated": {
                            "reason": "OOMKilled",
                            "exitCode": 137,
                            "startedAt": "2025-11-01T02:51:00Z",
                            "finishedAt": "2025-11-01T02:52:10Z",
                        }
                    },
                }
            ],
        ),
    )
    cluster.add(
        "pods",
        pod("checkout-7d4b9c8f6-klmno", namespace, pod_labels, owner=owner, node="node-a", started=T0),
    )
    cluster.add(
        "events",
        event(
            namespace,
            "Pod",
            "checkout-7d4b9c8f6-abcde",
            "Failed",
            f"Error: couldn't find key DB_PASSWORD in Secret {namespace}/checkout-db",
            first=T0 - timedelta(minutes=18),
            last=T0 - timedelta(minutes=2),
            count=7,
        ),
    )
    cluster.add(
        "events",
        event(
            namespace,
            "Pod",
            "checkout-7d4b9c8f6-abcde",
            "Failed",
            "Error: ImagePullBackOff from last week, outside the window",
            first=T0 - timedelta(days=6),
        ),
    )
    cluster.add(
        "events",
        event(namespace, "Pod", "other-app-1", "Unhealthy", "Readiness probe failed: another app", first=T0),
    )
    cluster.add(
        "events",
        event(
            namespace,
            "Pod",
            "checkout-7d4b9c8f6-klmno",
            "Scheduled",
            "Successfully assigned",
            first=T0,
            type_="Normal",
            component="default-scheduler",
        ),
    )
    cluster.add(
        "events",
        event(
            "default",
            "Node",
            "node-b",
            "EvictionThresholdMet",
            "Attempting to reclaim memory",
            first=T0 - timedelta(minutes=5),
        ),
    )
    cluster.add(
        "horizontalpodautoscalers",
        hpa("checkout", namespace, "checkout", minimum=2, maximum=3, current=3, desired=5, limited=True),
    )
    cluster.add("nodes", node("node-a"))
    cluster.add("nodes", node("node-b", pressure="MemoryPressure"))


# --------------------------------------------------------------------------- configuration


def test_the_source_is_on_with_kubeconfig_or_in_cluster_and_can_be_turned_off() -> None:
    assert not Settings().kubernetes_configured
    assert Settings(kubeconfig="/etc/kube/config").kubernetes_configured
    assert Settings(kubernetes_service_host="10.96.0.1").kubernetes_configured
    assert not Settings(kubeconfig="/etc/kube/config", kubernetes_enabled=False).kubernetes_configured


# --------------------------------------------------------------------------- evidence


def test_pod_states_events_history_hpa_and_nodes_become_kubectl_worded_lines(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    _checkout(cluster)
    evidence = KubernetesSource(_settings(cluster, tmp_path)).gather(
        ["checkout"], START, END, T0 - timedelta(hours=6)
    )

    messages = [line.message for line in evidence.lines]
    assert {line.service for line in evidence.lines} == {"checkout"}  # service = the workload
    assert (
        "Warning Failed pod/checkout-7d4b9c8f6-abcde Error: couldn't find key DB_PASSWORD in Secret "
        "shop/checkout-db (x7 over 16m)"
    ) in messages
    assert (
        "pod/checkout-7d4b9c8f6-abcde container checkout: State: Waiting, Reason: CreateContainerConfigError, "
        "Message: couldn't find key DB_PASSWORD in Secret shop/checkout-db, Ready: False, Restart Count: 0"
    ) in messages
    assert (
        "pod/checkout-7d4b9c8f6-fghij container checkout: Last State: Terminated, Reason: OOMKilled, "
        "Exit Code: 137 (limits: memory=512Mi), Restart Count: 4"
    ) in messages
    assert any(
        m.startswith(
            "pod/checkout-7d4b9c8f6-fghij Ready: 0/1, Status: CrashLoopBackOff, Restarts: 4, Node: node-b"
        )
        for m in messages
    )
    assert "deployment/checkout pods: 1/3 Running and Ready" in messages
    assert (
        "deployment/checkout Replicas: 3 desired | 3 updated | 3 total | 1 available | 2 unavailable; revision 7"
        in messages
    )
    assert any(
        m.startswith(
            "deployment/checkout revision 7 (current) replicaset/checkout-7d4b9c8f6 images: "
            "registry.example/shop/checkout:2.41.0; change-cause: release 2.41.0"
        )
        for m in messages
    )
    assert any("maxReplicas=3" in m and "ScalingLimited=True TooManyReplicas" in m for m in messages)
    assert any(m.startswith("node/node-b Conditions: MemoryPressure=True") for m in messages)
    assert "Warning EvictionThresholdMet node/node-b Attempting to reclaim memory" in messages
    # Out of the window, another app's, and Normal events are not evidence.
    assert not any("last week" in m or "another app" in m or "Successfully assigned" in m for m in messages)
    assert not any(m.startswith("node/node-a") for m in messages), "a healthy node says nothing"
    levels = {
        line.message.split(" ")[1]: line.level
        for line in evidence.lines
        if line.message.startswith("Warning")
    }
    assert set(levels.values()) == {"WARN"}

    (facts,) = evidence.workloads
    assert (facts.kind, facts.name, facts.namespace, facts.service) == (
        "Deployment",
        "checkout",
        "shop",
        "checkout",
    )
    assert (facts.replicas, facts.ready_replicas, facts.current_revision) == (3, 1, 7)
    assert [(r.revision, r.images) for r in facts.revisions] == [
        (6, ["registry.example/shop/checkout:2.40.0"]),
        (7, ["registry.example/shop/checkout:2.41.0"]),
    ]
    assert (facts.hpa_name, facts.hpa_max_replicas, facts.hpa_desired_replicas) == ("checkout", 3, 5)
    # Only revisions inside the history window are deployments; revision 6 is 3 days old.
    (release,) = evidence.deployments
    assert (release.service, release.sha, release.ref) == ("checkout", "7d4b9c8f6", "2.41.0")
    assert release.created_at == T0 - timedelta(minutes=20) and "release 2.41.0" in release.description
    assert evidence.gaps == []

    pods_call = cluster.calls("/api/v1/pods")[0]
    assert pods_call.param("labelSelector") == "app.kubernetes.io/name=checkout"
    assert all(r.method == "GET" for r in cluster.requests), "the source never writes"


def test_the_app_label_is_tried_when_the_recommended_label_finds_nothing(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    cluster.add("pods", pod("search-abc-1", "search", {"app": "search"}, owner=("StatefulSet", "search")))
    cluster.add(
        "pods", pod("search-abc-2", "search", {"app": "search"}, owner=("StatefulSet", "search"), ready=False)
    )
    evidence = KubernetesSource(_settings(cluster, tmp_path)).gather(["search"], START, END)
    assert [c.param("labelSelector") for c in cluster.calls("/api/v1/pods")] == [
        "app.kubernetes.io/name=search",
        "app=search",
    ]
    assert [(w.kind, w.name) for w in evidence.workloads] == [("StatefulSet", "search")]
    assert "statefulset/search pods: 1/2 Running and Ready" in [line.message for line in evidence.lines]


def test_a_configured_selector_and_namespaces_are_used_as_given(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    labels = {"app": "checkout-web", "tier": "web"}
    cluster.add("pods", pod("web-1", "shop", labels, owner=None, ready=False))
    cluster.add("pods", pod("web-2", "other", labels, owner=None, ready=False))
    settings = _settings(
        cluster,
        tmp_path,
        kubernetes_namespaces="shop",
        kubernetes_label_selectors={"checkout": "app=checkout-web,tier=web"},
    )
    evidence = KubernetesSource(settings).gather(["checkout"], START, END)
    (call,) = cluster.calls("/api/v1/namespaces/shop/pods")
    assert call.param("labelSelector") == "app=checkout-web,tier=web"
    assert not cluster.calls("/api/v1/pods"), "no cluster-wide listing when namespaces are set"
    assert [(w.kind, w.name, w.namespace) for w in evidence.workloads] == [("Pod", "web-1", "shop")]


def test_continue_pagination_collects_every_page(cluster: FakeKubernetes, tmp_path: Path) -> None:
    for i in range(7):
        cluster.add(
            "pods", pod(f"worker-{i}", "jobs", {"app": "worker"}, owner=("DaemonSet", "worker"), ready=False)
        )
    settings = _settings(cluster, tmp_path, kubernetes_page_size=3)
    evidence = KubernetesSource(settings).gather(["worker"], START, END)
    calls = [c for c in cluster.calls("/api/v1/pods") if c.param("labelSelector") == "app=worker"]
    assert [c.param("limit") for c in calls] == ["3", "3", "3"]
    assert calls[0].param("continue") is None and all(c.param("continue") for c in calls[1:])
    assert "daemonset/worker pods: 0/7 Running and Ready" in [line.message for line in evidence.lines]


def test_a_listing_longer_than_the_page_limit_is_reported_as_cut(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    for i in range(5):
        cluster.add(
            "pods", pod(f"worker-{i}", "jobs", {"app": "worker"}, owner=("DaemonSet", "worker"), ready=False)
        )
    settings = _settings(cluster, tmp_path, kubernetes_page_size=2, kubernetes_max_pages=2)
    evidence = KubernetesSource(settings).gather(["worker"], START, END)
    assert "daemonset/worker pods: 0/4 Running and Ready" in [line.message for line in evidence.lines]
    assert "kubernetes: list pods stopped after 2 pages of 2" in evidence.gaps


def test_a_cronjob_pod_is_reported_under_its_cronjob(cluster: FakeKubernetes, tmp_path: Path) -> None:
    cluster.add(
        "jobs",
        {
            "metadata": {
                "name": "statement-renderer-29365980",
                "namespace": "statements",
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "CronJob",
                        "name": "statement-renderer",
                        "uid": "cj",
                        "controller": True,
                    }
                ],
            },
            "spec": {},
            "status": {"active": 1},
        },
    )
    cluster.add(
        "pods",
        pod(
            "statement-renderer-29365980-7xkq2",
            "statements",
            {"app": "statement-renderer"},
            owner=("Job", "statement-renderer-29365980"),
            phase="Pending",
            ready=False,
        ),
    )
    cluster.add(
        "events",
        event(
            "statements",
            "Job",
            "statement-renderer-29365980",
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
            first=T0,
        ),
    )
    evidence = KubernetesSource(_settings(cluster, tmp_path)).gather(["statement-renderer"], START, END)
    assert [(w.kind, w.name) for w in evidence.workloads] == [("CronJob", "statement-renderer")]
    assert (
        "Warning DeadlineExceeded job/statement-renderer-29365980 Job was active longer than specified deadline"
        in [line.message for line in evidence.lines]
    )


# --------------------------------------------------------------------------- failures


def test_forbidden_pod_listing_names_the_missing_permission(cluster: FakeKubernetes, tmp_path: Path) -> None:
    cluster.forbid("list", "pods", "shop")
    settings = _settings(cluster, tmp_path, kubernetes_namespaces="shop")
    with pytest.raises(SourceUnavailable) as caught:
        KubernetesSource(settings).gather(["checkout"], START, END)
    message = str(caught.value)
    assert "missing RBAC permission `list` on pods in namespace shop" in message
    assert 'cannot list resource "pods" in API group "" in the namespace "shop"' in message

    bundle = gather_context(settings, ["checkout"], T0)
    (kube,) = [s for s in bundle.sources if s.kind == "kubernetes"]
    assert kube.status == "unavailable" and "`list` on pods" in (kube.error or "")


def test_a_forbidden_optional_part_keeps_the_rest_and_says_what_is_missing(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    _checkout(cluster)
    cluster.forbid("list", "horizontalpodautoscalers", "shop")
    cluster.forbid("get", "nodes")
    evidence = KubernetesSource(_settings(cluster, tmp_path)).gather(["checkout"], START, END)
    messages = [line.message for line in evidence.lines]
    assert any("couldn't find key DB_PASSWORD" in m for m in messages)
    assert not any(m.startswith(("horizontalpodautoscaler/", "node/node-b Conditions")) for m in messages)
    assert any(
        "`list` on horizontalpodautoscalers.autoscaling in namespace shop" in gap for gap in evidence.gaps
    )
    assert any("`get` on nodes cluster-wide" in gap for gap in evidence.gaps)

    bundle = gather_context(_settings(cluster, tmp_path), ["checkout"], T0)
    (kube,) = [s for s in bundle.sources if s.kind == "kubernetes"]
    assert kube.status == "ok" and (kube.error or "").startswith("partial: ")


def test_a_missing_deployment_and_an_unserved_api_group_are_404s_handled(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    _checkout(cluster)
    cluster.objects["deployments"].clear()  # deleted between listing its ReplicaSets and reading it
    cluster.unserve("autoscaling", "v2")
    evidence = KubernetesSource(_settings(cluster, tmp_path)).gather(["checkout"], START, END)
    (facts,) = evidence.workloads
    # Without the Deployment object the live revision is the newest ReplicaSet with pods.
    assert facts.current_revision == 7 and facts.replicas is None and facts.hpa_name is None
    assert any("autoscaling/v2 not served" in gap for gap in evidence.gaps)
    not_found = cluster.calls("/apis/apps/v1/namespaces/shop/deployments/checkout")
    assert len(not_found) == 1


def test_a_hung_api_server_times_out_as_source_unavailable(cluster: FakeKubernetes, tmp_path: Path) -> None:
    cluster.script("/api/v1/pods", Reply(200, {"kind": "PodList", "items": []}, delay=2.0), times=4)
    settings = _settings(cluster, tmp_path, http_timeout_seconds=0.3)
    started = datetime.now(UTC)
    with pytest.raises(SourceUnavailable, match="timed out after 0.3s"):
        KubernetesSource(settings).gather(["checkout"], START, END)
    assert (datetime.now(UTC) - started).total_seconds() < 2.0, "a read timeout is not retried"


def test_a_slow_optional_part_times_out_without_losing_the_pods(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    _checkout(cluster)
    cluster.script(
        "/api/v1/namespaces/shop/events", Reply(200, {"kind": "EventList", "items": []}, delay=2.0)
    )
    evidence = KubernetesSource(_settings(cluster, tmp_path, http_timeout_seconds=0.3)).gather(
        ["checkout"], START, END
    )
    assert any("CreateContainerConfigError" in line.message for line in evidence.lines)
    assert any("list events: timed out" in gap for gap in evidence.gaps)


def test_an_expired_continue_token_is_reported_not_looped_on(cluster: FakeKubernetes, tmp_path: Path) -> None:
    for i in range(4):
        cluster.add("pods", pod(f"worker-{i}", "jobs", {"app": "worker"}, owner=None, ready=False))
    cluster.script(
        "/api/v1/pods",
        Reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"continue": "bogus"}, "items": []}),
    )
    cluster.script("/api/v1/pods", status(410, "Expired", "The provided continue parameter is too old"))
    settings = _settings(cluster, tmp_path, kubernetes_page_size=2)
    with pytest.raises(SourceUnavailable, match="HTTP 410: The provided continue parameter is too old"):
        KubernetesSource(settings).gather(["worker"], START, END)


def test_rejected_credentials_are_unauthorized(cluster: FakeKubernetes, tmp_path: Path) -> None:
    settings = _settings(cluster, tmp_path)
    cluster.token = "rotated"
    with pytest.raises(SourceUnavailable, match="unauthorized"):
        KubernetesSource(settings).gather(["checkout"], START, END)


# --------------------------------------------------------------------------- the bundle


def test_the_bundle_carries_kubernetes_lines_facts_and_the_rollout_history_without_github(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    from iras.integrations import mock

    _checkout(cluster)
    mock.set_fixture({"logs": [], "metrics": [], "deployments": []})
    try:
        bundle = gather_context(_settings(cluster, tmp_path), ["checkout"], T0)
    finally:
        mock.set_fixture(None)
    (kube,) = [s for s in bundle.sources if s.kind == "kubernetes"]
    assert kube.status == "ok" and kube.items == len(bundle.logs) > 0 and kube.error is None
    assert any("CreateContainerConfigError" in line.message for line in bundle.logs)
    assert bundle.logs == sorted(bundle.logs, key=lambda line: line.timestamp)
    assert [(d.service, d.sha) for d in bundle.deployments] == [("checkout", "7d4b9c8f6")]
    assert [w.current_revision for w in bundle.workloads] == [7]


def test_with_github_configured_its_deployments_are_not_mixed_with_the_rollout_history(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    _checkout(cluster)
    settings = _settings(
        cluster,
        tmp_path,
        github_token="ghp_x",
        github_api_url="http://127.0.0.1:9",
        github_repos="checkout=acme/checkout",
        http_max_attempts=1,
    )
    bundle = gather_context(settings, ["checkout"], T0)
    assert bundle.deployments == []  # GitHub is down here; the rollout history does not stand in
    assert [w.current_revision for w in bundle.workloads] == [7]


# --------------------------------------------------------------------------- RBAC manifest


def test_the_shipped_rbac_grants_reads_only_and_every_request_the_source_makes(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    import re

    import yaml

    manifest = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes" / "rbac.yaml"
    documents = [doc for doc in yaml.safe_load_all(manifest.read_text()) if doc]
    rules = [rule for doc in documents if doc["kind"] in ("ClusterRole", "Role") for rule in doc["rules"]]
    granted = {
        (verb, group, resource)
        for rule in rules
        for verb in rule["verbs"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert {verb for verb, _, _ in granted} == {"get", "list", "watch"}, "read-only"
    bound = {
        doc["roleRef"]["name"]
        for doc in documents
        if doc["kind"] in ("ClusterRoleBinding", "RoleBinding")
        and {"kind": "ServiceAccount", "name": "iras", "namespace": "iras"} in doc["subjects"]
    }
    assert bound == {doc["metadata"]["name"] for doc in documents if doc["kind"] == "ClusterRole"}

    _checkout(cluster)
    cluster.add(
        "pods",
        pod(
            "db-0",
            "shop",
            {"app.kubernetes.io/name": "checkout"},
            owner=("Job", "checkout-migrate"),
            claims=["data-db-0"],
        ),
    )
    KubernetesSource(_settings(cluster, tmp_path)).gather(["checkout"], START, END)
    used = set()
    for request in cluster.requests:
        match = re.match(
            r"^/apis?/(?:(?P<group>[a-z0-9.]+)/)?v[0-9a-z]+(?:/namespaces/[^/]+)?/(?P<res>[a-z]+)(?P<one>/[^/]+)?$",
            request.path,
        )
        assert match, request.path
        group = match.group("group") or ""
        used.add(("get" if match.group("one") else "list", group, match.group("res")))
    assert {res for _, _, res in used} >= {
        "pods",
        "events",
        "replicasets",
        "deployments",
        "jobs",
        "horizontalpodautoscalers",
        "nodes",
        "persistentvolumeclaims",
    }
    assert used <= granted, used - granted


def test_an_init_container_image_pull_and_a_stalled_rollout_read_as_kubectl_shows_them(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    labels = {"app.kubernetes.io/name": "menu-api"}
    cluster.add(
        "replicasets",
        replica_set(
            "menu-api-7d4b9c8f6",
            "shop",
            labels,
            deployment="menu-api",
            revision=31,
            image="registry.example/menu-api:4.21.0",
            created=T0 - timedelta(minutes=25),
            replicas=3,
        ),
    )
    stalled = [
        {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "ok"},
        {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "menu-api-7d4b9c8f6" has timed out progressing.',
        },
    ]
    cluster.add(
        "deployments",
        deployment("menu-api", "shop", labels, replicas=3, revision=31, ready=0, conditions=stalled),
    )
    cluster.add(
        "pods",
        pod(
            "menu-api-7d4b9c8f6-h7mtr",
            "shop",
            {**labels, "pod-template-hash": "7d4b9c8f6"},
            owner=("ReplicaSet", "menu-api-7d4b9c8f6"),
            phase="Pending",
            ready=False,
            statuses=[
                {
                    "name": "menu-api",
                    "ready": False,
                    "restartCount": 0,
                    "image": "registry.example/menu-api:4.21.0",
                    "state": {"waiting": {"reason": "PodInitializing"}},
                }
            ],
            init_statuses=[
                {
                    "name": "log-shipper",
                    "ready": False,
                    "restartCount": 0,
                    "image": "registry.example/platform/log-shipper:v2.3.0",
                    "state": {
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": 'Back-off pulling image "registry.example/platform/log-shipper:v2.3.0"',
                        }
                    },
                }
            ],
        ),
    )
    evidence = KubernetesSource(_settings(cluster, tmp_path)).gather(
        ["menu-api"], START, END, T0 - timedelta(hours=6)
    )
    by_message = {line.message: line.level for line in evidence.lines}
    assert (
        by_message[
            "pod/menu-api-7d4b9c8f6-h7mtr Ready: 0/1, Status: Init:ImagePullBackOff, Restarts: 0, Node: node-a"
        ]
        == "WARN"
    )
    assert (
        by_message[
            "pod/menu-api-7d4b9c8f6-h7mtr init container log-shipper: State: Waiting, Reason: ImagePullBackOff, "
            'Message: Back-off pulling image "registry.example/platform/log-shipper:v2.3.0", Ready: False, '
            "Restart Count: 0"
        ]
        == "WARN"
    )
    stalled_line = next(m for m in by_message if m.startswith("deployment/menu-api Replicas:"))
    assert by_message[stalled_line] == "WARN"
    assert (
        'Progressing=False ProgressDeadlineExceeded: ReplicaSet "menu-api-7d4b9c8f6" has timed out progressing.'
        in (stalled_line)
    )
    (release,) = evidence.deployments
    assert (release.ref, release.status) == ("4.21.0", "failure")


def test_an_unschedulable_pod_says_why_and_its_scheduler_event_is_kept(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    why = "0/41 nodes are available: 8 Insufficient nvidia.com/gpu, 33 node(s) didn't match Pod's node affinity/selector."
    unscheduled = pod(
        "avatar-inference-5d8c7b6f9-59rqb",
        "ml",
        {"app": "avatar-inference"},
        owner=("ReplicaSet", "avatar-inference-5d8c7b6f9"),
        node="",
        phase="Pending",
        ready=False,
        statuses=[],
    )
    unscheduled["metadata"]["labels"]["pod-template-hash"] = "5d8c7b6f9"
    unscheduled["status"]["conditions"][0].update(status="False", reason="Unschedulable", message=why)
    cluster.add("pods", unscheduled)
    cluster.add(
        "events",
        event(
            "ml",
            "Pod",
            "avatar-inference-5d8c7b6f9-59rqb",
            "FailedScheduling",
            why,
            first=T0 - timedelta(minutes=9),
            last=T0 - timedelta(minutes=1),
            count=9,
            component="default-scheduler",
        ),
    )
    evidence = KubernetesSource(_settings(cluster, tmp_path)).gather(["avatar-inference"], START, END)
    messages = [line.message for line in evidence.lines]
    assert [(w.kind, w.name) for w in evidence.workloads] == [("Deployment", "avatar-inference")]
    assert (
        "pod/avatar-inference-5d8c7b6f9-59rqb Ready: 0/1, Status: Pending, Restarts: 0, Node: <none>, "
        f"PodScheduled=False Unschedulable: {why}"
    ) in messages
    assert f"Warning FailedScheduling pod/avatar-inference-5d8c7b6f9-59rqb {why} (x9 over 8m)" in messages
