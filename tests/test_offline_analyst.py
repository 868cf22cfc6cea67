"""Offline analyst: protocol shape and plan safety (rules are tested further below)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from iras.analysts.base import IncidentFacts, PostMortemInput
from iras.analysts.offline import OfflineAnalyst
from iras.analysts.runbooks import is_plain_command
from iras.schemas import Category, ContextBundle, Deployment, LogLine, MetricDelta, NormalizedAlert

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _facts(
    service: str = "basket-api", title: str = "basket-api 5xx ratio is 41% (threshold 5%)"
) -> IncidentFacts:
    alert = NormalizedAlert(source="generic", title=title, timestamp=T0, service=service)
    return IncidentFacts(incident_id="inc-1", title=title, source="generic", service=service, alerts=[alert])


def _bundle(
    logs: list[LogLine], metrics: list[MetricDelta] | None = None, deploys: list[Deployment] | None = None
) -> ContextBundle:
    return ContextBundle(
        window_start=T0 - timedelta(minutes=30),
        window_end=T0 + timedelta(minutes=5),
        window_minutes=30,
        logs=logs,
        metrics=metrics or [],
        deployments=deploys or [],
    )


def test_it_rolls_back_a_release_that_started_throwing_exceptions() -> None:
    sha = "a" * 40
    logs = [
        LogLine(
            timestamp=T0 - timedelta(minutes=10),
            service="basket-api",
            level="INFO",
            message="basket-api version=3.2.0 commit=aaaaaaa",
        ),
        *[
            LogLine(
                timestamp=T0 - timedelta(minutes=9 - i),
                service="basket-api",
                level="ERROR",
                message="Unhandled java.lang.NullPointerException at com.shop.basket.Totals.sum(Totals.java:44)",
            )
            for i in range(5)
        ],
    ]
    deploy = Deployment(service="basket-api", sha=sha, created_at=T0 - timedelta(minutes=11), ref="v3.2.0")
    analyst = OfflineAnalyst()
    facts = _facts()
    bundle = _bundle(logs, deploys=[deploy])
    rca = analyst.analyze(facts, bundle, 1).result
    assert rca.category is Category.BAD_DEPLOY
    assert rca.culprit_service == "basket-api"
    assert rca.culprit_deployment_sha == sha
    assert any("NullPointerException" in line for line in rca.evidence)
    plan = analyst.plan(facts, rca, bundle).result
    assert plan.steps and plan.steps[0].action.value == "rollback_deployment"
    assert all(is_plain_command(s.command) for s in plan.steps)
    pm = analyst.postmortem(PostMortemInput(facts=facts, outcome="resolved", rca=rca, plan=plan)).result
    assert "basket-api" in pm.summary and pm.action_items


def test_a_quiet_bundle_is_a_false_alarm_with_no_steps() -> None:
    logs = [LogLine(timestamp=T0, service="basket-api", level="INFO", message="GET /basket 200 in 12ms")] * 3
    metrics = [
        MetricDelta(
            name="http_5xx_ratio", service="basket-api", current=0.001, baseline_7d=0.001, unit="ratio"
        )
    ]
    analyst = OfflineAnalyst()
    facts = _facts(title="basket-api p99 latency above 400ms")
    rca = analyst.analyze(facts, _bundle(logs, metrics), 1).result
    assert rca.category is Category.FALSE_ALARM
    plan = analyst.plan(facts, rca, _bundle(logs, metrics)).result
    assert plan.steps == []
    assert "No remediation" in plan.summary
