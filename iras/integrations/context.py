"""Gather the evidence bundle: logs, metrics, deployments and Kubernetes state in parallel.

A failing source degrades the bundle (recorded in `sources` as unavailable, with
the error), it never fails the incident. A source that is not configured is not
asked: it is recorded as `not_configured` with the settings that would turn it on. Each retry of the RCA loop widens the
window: attempt N looks back `base * 2**(N-1)` minutes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from iras.config import Settings
from iras.integrations import deployment_source, log_source, metric_source
from iras.schemas import ContextBundle, SourceStatus, WorkloadFacts

if TYPE_CHECKING:
    from iras.integrations.kubernetes import KubernetesEvidence

log = logging.getLogger(__name__)

_pool = ThreadPoolExecutor(max_workers=12, thread_name_prefix="iras-context")


def window_for_attempt(base_minutes: int, attempt: int) -> int:
    return base_minutes * (2 ** max(0, attempt - 1))


def gather_context(
    settings: Settings, services: list[str], alert_time: datetime, attempt: int = 1
) -> ContextBundle:
    minutes = window_for_attempt(settings.evidence_window_minutes, attempt)
    end = max(alert_time + timedelta(minutes=5), alert_time)
    start = alert_time - timedelta(minutes=minutes)
    logs_client = log_source(settings)
    metrics_client = metric_source(settings)
    deploys_client = deployment_source(settings)

    jobs: dict[str, tuple[str, Any, Callable[[], list[Any]]]] = {
        "logs": (logs_client.name, logs_client, lambda: logs_client.fetch_logs(services, start, end)),
        "metrics": (
            metrics_client.name,
            metrics_client,
            lambda: metrics_client.fetch_metrics(services, start, end),
        ),
        # Deployments are looked for further back: a bad release often lands hours before the page.
        "deployments": (
            deploys_client.name,
            deploys_client,
            lambda: deploys_client.fetch_deployments(services, start - timedelta(hours=6), end),
        ),
    }
    results: dict[str, list[Any]] = {}
    sources: list[SourceStatus] = []
    for kind, (client_name, client, _) in list(jobs.items()):
        configure = getattr(client, "configure", None)
        if configure is not None:
            del jobs[kind]
            results[kind] = []
            sources.append(
                SourceStatus(
                    name=kind,
                    kind=kind,
                    status="not_configured",
                    client=client_name,
                    configure=list(configure),
                )  # type: ignore[arg-type]
            )
    futures = {kind: _pool.submit(fn) for kind, (_, _, fn) in jobs.items()}
    kube_future = (
        _pool.submit(_kubernetes, settings, services, start, end, start - timedelta(hours=6))
        if settings.kubernetes_configured
        else None
    )
    timeout = settings.http_timeout_seconds * 3
    for kind, future in futures.items():
        client_name = jobs[kind][0]
        try:
            items = future.result(timeout=timeout)
            results[kind] = items
            sources.append(
                SourceStatus(name=client_name, kind=kind, status="ok", client=client_name, items=len(items))  # type: ignore[arg-type]
            )
        except Exception as exc:  # noqa: BLE001 - any failure of a source degrades, never crashes
            log.warning("context source %s failed: %s", client_name, exc)
            results[kind] = []
            sources.append(
                SourceStatus(
                    name=client_name,
                    kind=kind,  # type: ignore[arg-type]
                    status="unavailable",
                    client=client_name,
                    error=f"source unavailable: {type(exc).__name__}: {exc}"[:500],
                )
            )
    workloads: list[WorkloadFacts] = []
    if kube_future is not None:
        kube, status = _kubernetes_result(kube_future, timeout)
        sources.append(status)
        results["logs"] = results["logs"] + kube.lines
        workloads = kube.workloads
        # The rollout history answers "what changed" when GitHub does not.
        if not settings.github_token:
            results["deployments"] = results["deployments"] + kube.deployments
    return ContextBundle(
        window_start=start,
        window_end=end,
        window_minutes=minutes,
        services=services,
        logs=sorted(results["logs"], key=lambda line: line.timestamp),
        metrics=results["metrics"],
        deployments=sorted(results["deployments"], key=lambda d: d.created_at),
        sources=sources,
        workloads=workloads,
    )


def _kubernetes(
    settings: Settings, services: list[str], start: datetime, end: datetime, history_start: datetime
) -> KubernetesEvidence:
    from iras.integrations.kubernetes import KubernetesSource

    return KubernetesSource(settings).gather(services, start, end, history_start)


def _kubernetes_result(
    future: Future[KubernetesEvidence], timeout: float
) -> tuple[KubernetesEvidence, SourceStatus]:
    """The Kubernetes evidence and its status; a gap in an optional part keeps the rest."""
    from iras.integrations.kubernetes import KubernetesEvidence

    try:
        kube = future.result(timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any failure of a source degrades, never crashes
        log.warning("context source kubernetes failed: %s", exc)
        error = f"source unavailable: {type(exc).__name__}: {exc}"[:500]
        status = SourceStatus(
            name="kubernetes", kind="kubernetes", status="unavailable", client="kubernetes", error=error
        )
        return KubernetesEvidence(), status
    gaps = "; ".join(dict.fromkeys(kube.gaps))
    status = SourceStatus(
        name="kubernetes",
        kind="kubernetes",
        status="ok",
        client="kubernetes",
        items=len(kube.lines),
        error=f"partial: {gaps}"[:500] if gaps else None,
    )
    return kube, status


def evidence_gap(bundle: ContextBundle) -> str | None:
    """Why this bundle cannot support a diagnosis, or None when it can: no evidence item
    at all and no source that answered. A diagnosis from the alert alone is a guess, and
    a guess must not pass the confidence gate or drive a remediation plan."""
    if bundle.logs or bundle.metrics or bundle.deployments:
        return None
    if any(source.status == "ok" for source in bundle.sources):
        return None  # a configured source answered "nothing in the window": that is evidence
    missing = [s for s in bundle.sources if s.status == "not_configured"]
    if missing and len(missing) == len(bundle.sources):
        wanted = "; ".join(f"{s.kind}: set {' or '.join(s.configure)}" for s in missing)
        return f"no evidence source is configured ({wanted}); the diagnosis saw only the alert"
    down = ", ".join(f"{s.kind} {s.status.replace('_', ' ')}" for s in bundle.sources)
    return f"no evidence: every source failed or is not configured ({down}); the diagnosis saw only the alert"


def nothing_configured(bundle: ContextBundle) -> bool:
    """Every evidence source is not configured: a wider window cannot find anything."""
    return bool(bundle.sources) and all(s.status == "not_configured" for s in bundle.sources)
