"""Safety invariants hold whatever the plan claims."""

from __future__ import annotations

import time

import pytest

from iras.config import Settings
from iras.executor import DryRunExecutor, ShellExecutor
from iras.safety import command_problem, enforce_invariants
from iras.schemas import RemediationPlan, RemediationStep, RiskLevel, RunbookAction

ALLOWED = ["kubectl", "helm", "true", "false", "sleep", "sh"]


def _step(
    command: str, rollback: str | None, risk: RiskLevel = RiskLevel.LOW, order: int = 1
) -> RemediationStep:
    return RemediationStep(
        order=order,
        action=RunbookAction.ROLLBACK_DEPLOYMENT,
        description="d",
        command=command,
        rollback_command=rollback,
        risk_level=risk,
    )


def _plan(*steps: RemediationStep) -> RemediationPlan:
    return RemediationPlan(summary="s", steps=list(steps), requires_human_approval=False, reversible=True)


def test_a_low_risk_claim_on_a_disallowed_destructive_command_is_gated() -> None:
    plan = enforce_invariants(_plan(_step("rm -rf /var/lib/postgresql", "true")), ALLOWED)
    step = plan.steps[0]
    assert step.risk_level == RiskLevel.HIGH and not step.executable
    assert plan.requires_human_approval and not plan.reversible


def test_shell_metacharacters_are_refused_even_for_an_allowed_program() -> None:
    for command in (
        "kubectl get pods; rm -rf /",
        "kubectl get pods | sh",
        "kubectl $(whoami)",
        "kubectl `id`",
    ):
        plan = enforce_invariants(_plan(_step(command, "true")), ALLOWED)
        assert not plan.steps[0].executable, command
        assert plan.steps[0].risk_level == RiskLevel.HIGH


def test_an_empty_rollback_forces_approval_and_marks_the_plan_irreversible() -> None:
    for rollback in (None, "", "   "):
        plan = enforce_invariants(_plan(_step("kubectl rollout restart deployment/api", rollback)), ALLOWED)
        assert plan.requires_human_approval and not plan.reversible
        assert plan.steps[0].rollback_command is None
        assert plan.steps[0].risk_level != RiskLevel.LOW


def test_a_high_risk_step_forces_approval_and_irreversibility() -> None:
    plan = enforce_invariants(
        _plan(
            _step(
                "kubectl scale deployment/api --replicas=6",
                "kubectl scale deployment/api --replicas=3",
                RiskLevel.HIGH,
            )
        ),
        ALLOWED,
    )
    assert plan.requires_human_approval and not plan.reversible


def test_a_safe_plan_keeps_its_claims() -> None:
    plan = enforce_invariants(
        _plan(_step("kubectl rollout undo deployment/api", "kubectl rollout undo deployment/api")), ALLOWED
    )
    assert plan.steps[0].executable and plan.steps[0].risk_level == RiskLevel.LOW
    assert not plan.requires_human_approval and plan.reversible


def test_steps_are_renumbered_in_order() -> None:
    plan = enforce_invariants(_plan(_step("true", "true", order=7), _step("false", "true", order=3)), ALLOWED)
    assert [(s.order, s.command) for s in plan.steps] == [(1, "false"), (2, "true")]


def test_paths_to_programs_are_refused() -> None:
    assert command_problem("/usr/bin/kubectl get pods", ALLOWED)
    assert command_problem("./kubectl get pods", ALLOWED)
    assert command_problem("kubectl get pods", ALLOWED) is None


def test_dry_run_never_runs_anything_and_still_refuses_disallowed_commands() -> None:
    ex = DryRunExecutor(Settings(remediation_allowed_commands=ALLOWED))
    assert ex.run("false").status == "succeeded"  # not executed: a dry run
    assert ex.run("rm -rf /").status == "refused"


def test_shell_executor_kills_the_whole_process_group_on_timeout() -> None:
    ex = ShellExecutor(Settings(remediation_allowed_commands=ALLOWED, remediation_step_timeout_seconds=0.5))
    started = time.monotonic()
    # The child sleeps in a grandchild; killing only the child would leave it holding stdout open.
    result = ex.run("sh -c 'sleep 30 & sleep 30'")
    assert result.status == "refused"  # metacharacter '&' refused before anything runs
    result = ex.run("sleep 30")
    assert result.status == "failed" and "timeout" in result.output
    assert time.monotonic() - started < 10


def test_shell_executor_reports_exit_codes_and_output() -> None:
    ex = ShellExecutor(Settings(remediation_allowed_commands=ALLOWED))
    ok = ex.run("true")
    bad = ex.run("false")
    assert (ok.status, ok.exit_code) == ("succeeded", 0)
    assert (bad.status, bad.exit_code) == ("failed", 1)
    assert ex.run("kubectl-missing-binary x").status == "refused"


@pytest.mark.parametrize(
    "command",
    [
        "kubectl delete namespace prod",
        "kubectl -n prod delete pod api-0",
        "kubectl drain node-1",
        "kubectl scale deployment/api --replicas=0",
        "kubectl scale deployment/api --replicas 0",
        "kubectl rollout restart deployment/api --all",
        "helm uninstall checkout",
    ],
)
def test_destructive_commands_of_allowed_programs_are_never_executable(command: str) -> None:
    plan = enforce_invariants(_plan(_step(command, "kubectl rollout undo deployment/api")), ALLOWED)
    assert not plan.steps[0].executable and plan.steps[0].risk_level == RiskLevel.HIGH
    assert plan.requires_human_approval and not plan.reversible
    assert DryRunExecutor(Settings(remediation_allowed_commands=ALLOWED)).run(command).status == "refused"
