"""Remediation that knows revisions and replica counts (issue 22 item 3, issue 21 item 7):
rollback steps name the revision to return to and the one to come back to, or say
they cannot; scale steps restore the replica count Kubernetes reported."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

from iras.analysts.runbooks import RunbookTarget, pin_to_workloads, step_for
from iras.config import Settings
from iras.safety import command_problem, enforce_invariants
from iras.schemas import (
    Category,
    RemediationPlan,
    RemediationStep,
    RiskLevel,
    RunbookAction,
    WorkloadFacts,
    WorkloadRevision,
)

ALLOWED = Settings().remediation_allowed_commands
T = datetime(2025, 11, 1, tzinfo=UTC)


def _facts(**overrides: object) -> WorkloadFacts:
    values: dict[str, object] = {
        "kind": "Deployment",
        "name": "checkout",
        "namespace": "shop",
        "service": "checkout",
        "replicas": 4,
        "current_revision": 9,
        "revisions": [
            WorkloadRevision(revision=5, replica_set="checkout-11aa22bb3", created_at=T),
            WorkloadRevision(revision=8, replica_set="checkout-5f6c8d9b7", created_at=T),
            WorkloadRevision(revision=9, replica_set="checkout-7d4b9c8f6", created_at=T),
        ],
    }
    values.update(overrides)
    return WorkloadFacts(**values)  # type: ignore[arg-type]


def _plan(*steps: RemediationStep) -> RemediationPlan:
    return RemediationPlan(summary="fix", steps=list(steps), requires_human_approval=True, reversible=True)


def _claude_rollback(namespace: str = "shop") -> RemediationStep:
    return RemediationStep(
        order=1,
        action=RunbookAction.ROLLBACK_DEPLOYMENT,
        description="Roll checkout back",
        command=f"kubectl rollout undo deployment/checkout -n {namespace}",
        rollback_command=f"kubectl rollout undo deployment/checkout -n {namespace}",
        risk_level=RiskLevel.MEDIUM,
    )


def _plain_and_allowed(command: str | None) -> None:
    assert command is not None and command_problem(command, ALLOWED) is None, command
    assert shlex.join(shlex.split(command)) == command, "plain argv, nothing to quote"


def test_a_rollback_names_the_previous_revision_and_its_undo_the_live_one() -> None:
    plan = pin_to_workloads(_plan(_claude_rollback()), [_facts()])
    (step,) = plan.steps
    assert step.command == "kubectl rollout undo deployment/checkout -n shop --to-revision=8"
    assert step.rollback_command == "kubectl rollout undo deployment/checkout -n shop --to-revision=9"
    _plain_and_allowed(step.command)
    _plain_and_allowed(step.rollback_command)
    assert "revision 9 -> 8" in step.description
    checked = enforce_invariants(plan, ALLOWED)
    assert checked.reversible and checked.steps[0].executable


def test_the_suspect_revision_from_the_diagnosis_decides_where_to_return() -> None:
    # The culprit sha is revision 8's pod-template-hash: return to 5, the one before it.
    plan = pin_to_workloads(_plan(_claude_rollback()), [_facts()], culprit_sha="5f6c8d9b7")
    (step,) = plan.steps
    assert step.command.endswith("--to-revision=5") and step.rollback_command
    assert step.rollback_command.endswith("--to-revision=9")
    assert any("not the live one" in note for note in step.safety_notes)


def test_the_workload_namespace_replaces_a_guessed_one() -> None:
    (step,) = pin_to_workloads(_plan(_claude_rollback("default")), [_facts()]).steps
    assert " -n shop " in step.command and " -n shop " in (step.rollback_command or "")


def test_an_unknown_revision_leaves_no_rollback_and_an_irreversible_plan() -> None:
    for workloads in ([], [_facts(current_revision=None, revisions=[])], [_facts(revisions=[])]):
        plan = pin_to_workloads(_plan(_claude_rollback()), workloads)
        (step,) = plan.steps
        assert step.rollback_command is None, workloads
        assert any(note.startswith("Revision unknown") for note in step.safety_notes)
        checked = enforce_invariants(plan, ALLOWED)
        assert not checked.reversible and checked.requires_human_approval


def test_the_runbook_builds_the_same_step_from_a_target_that_knows_the_revisions() -> None:
    known = step_for(
        RunbookAction.ROLLBACK_DEPLOYMENT,
        RunbookTarget(service="checkout", namespace="shop", current_revision=9, previous_revision=8),
        Category.BAD_DEPLOY,
    )
    assert known.command.endswith("--to-revision=8") and (known.rollback_command or "").endswith(
        "--to-revision=9"
    )
    unknown = step_for(
        RunbookAction.ROLLBACK_DEPLOYMENT, RunbookTarget(service="checkout"), Category.BAD_DEPLOY
    )
    assert unknown.rollback_command is None and "(revision unknown)" in unknown.description


def test_a_scale_out_restores_the_replica_count_read_from_kubernetes() -> None:
    guessed = RemediationStep(
        order=1,
        action=RunbookAction.SCALE_OUT,
        description="Scale deployment/checkout out to 6 replicas",
        command="kubectl scale deployment/checkout --replicas=6 -n shop",
        rollback_command=None,
        risk_level=RiskLevel.MEDIUM,
        safety_notes=["Current replica count unknown: no exact rollback, scale back by hand."],
    )
    plan = pin_to_workloads(_plan(guessed), [_facts(replicas=4)])
    (step,) = plan.steps
    assert step.command == "kubectl scale deployment/checkout --replicas=6 -n shop"
    assert step.rollback_command == "kubectl scale deployment/checkout --replicas=4 -n shop"
    assert not any("unknown" in note for note in step.safety_notes)
    assert enforce_invariants(plan, ALLOWED).reversible

    # Already at 8: "out to 6" would scale in. The target is raised above the current count.
    (step,) = pin_to_workloads(_plan(guessed), [_facts(replicas=8)]).steps
    assert step.command == "kubectl scale deployment/checkout --replicas=16 -n shop"
    assert step.rollback_command == "kubectl scale deployment/checkout --replicas=8 -n shop"


def test_under_an_hpa_a_scale_out_raises_the_autoscaler_ceiling_instead() -> None:
    guessed = RemediationStep(
        order=1,
        action=RunbookAction.SCALE_OUT,
        description="Scale out",
        command="kubectl scale deployment/checkout --replicas=6 -n shop",
        rollback_command="kubectl scale deployment/checkout --replicas=3 -n shop",
        risk_level=RiskLevel.MEDIUM,
    )
    facts = _facts(replicas=12, hpa_name="checkout-hpa", hpa_min_replicas=4, hpa_max_replicas=12)
    (step,) = pin_to_workloads(_plan(guessed), [facts]).steps
    assert (
        step.command
        == 'kubectl patch hpa/checkout-hpa -n shop --type merge -p \'{"spec":{"maxReplicas":24}}\''
    )
    assert step.rollback_command == (
        'kubectl patch hpa/checkout-hpa -n shop --type merge -p \'{"spec":{"maxReplicas":12}}\''
    )
    assert command_problem(step.command, ALLOWED) is None


def test_steps_it_does_not_know_are_left_alone() -> None:
    restart = RemediationStep(
        order=1,
        action=RunbookAction.RESTART_SERVICE,
        description="Restart",
        command="kubectl rollout restart deployment/checkout -n shop",
        rollback_command=None,
        risk_level=RiskLevel.LOW,
    )
    plan = _plan(restart)
    assert pin_to_workloads(plan, [_facts()]) is plan


def test_the_plan_prompt_gives_the_model_the_revisions_replicas_and_hpa() -> None:
    from iras.analysts.prompts.plan import render_workload

    line = render_workload(
        _facts(ready_replicas=1, hpa_name="checkout", hpa_min_replicas=2, hpa_max_replicas=6)
    )
    assert line.startswith("- deployment/checkout -n shop, live revision 9, previous revision 8")
    assert "replicas 4 (1 ready)" in line and "HPA checkout min 2 max 6" in line
    assert "no previous revision recorded" in render_workload(_facts(revisions=[]))


def test_a_memory_limit_increase_is_undone_by_the_limit_in_the_pod_spec() -> None:
    guessed = RemediationStep(
        order=1,
        action=RunbookAction.INCREASE_RESOURCE_LIMIT,
        description="Raise the memory limit of deployment/checkout to 2Gi",
        command="kubectl set resources deployment/checkout --limits=memory=2Gi -n shop",
        rollback_command=None,
        risk_level=RiskLevel.MEDIUM,
        safety_notes=["Current limit unknown: no exact rollback, record it before applying."],
    )
    facts = _facts(memory_limits={"checkout": "512Mi", "envoy": "128Mi"})
    (step,) = pin_to_workloads(_plan(guessed), [facts]).steps
    assert step.command == "kubectl set resources deployment/checkout -c checkout --limits=memory=2Gi -n shop"
    assert step.rollback_command == (
        "kubectl set resources deployment/checkout -c checkout --limits=memory=512Mi -n shop"
    )
    _plain_and_allowed(step.command)
    assert not any("unknown" in note for note in step.safety_notes)

    # A "raise" to less than the current limit is raised above it.
    (step,) = pin_to_workloads(_plan(guessed), [_facts(memory_limits={"checkout": "4Gi"})]).steps
    assert "--limits=memory=8Gi" in step.command and (step.rollback_command or "").endswith(
        "memory=4Gi -n shop"
    )


def test_names_that_are_not_plain_resource_names_never_reach_a_command() -> None:
    odd = _facts(name="checkout", namespace="shop;rm", replicas=4)
    plan = pin_to_workloads(_plan(_claude_rollback()), [odd])
    assert plan.steps[0].rollback_command is None  # treated as unknown, nothing from `odd` used
    assert "shop;rm" not in plan.steps[0].command
