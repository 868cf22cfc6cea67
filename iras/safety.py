"""Safety invariants, enforced in code on every plan whatever produced it.

The model (or a rule) may claim anything about a step; these checks do not
trust it:
1. a command with shell metacharacters, or whose program is not in
   REMEDIATION_ALLOWED_COMMANDS, is high risk and not executable;
2. any high-risk step forces human approval and marks the plan irreversible;
3. any step without a rollback command marks the plan irreversible and forces
   human approval;
4. a plan with a non-executable step still needs a human (who may run it by hand).
Nothing executes without an approved plan: that is the state machine's job
(`EXECUTING` is reachable only from `AWAITING_APPROVAL` on `approved`).
"""

from __future__ import annotations

import os
import shlex

from iras.schemas import SHELL_METACHARACTERS, RemediationPlan, RemediationStep, RiskLevel


def command_problem(command: str | None, allowed: list[str]) -> str | None:
    """Why `command` may not run under the executor, or None when it may."""
    if not command or not command.strip():
        return "empty command"
    bad = sorted({ch for ch in command if ch in SHELL_METACHARACTERS})
    if bad:
        return f"shell metacharacters {''.join(bad)!r} are not allowed (commands run without a shell)"
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return f"unparseable command: {exc}"
    if not argv:
        return "empty command"
    program = os.path.basename(argv[0])
    if program != argv[0] and "/" in argv[0]:
        return f"program must be named, not a path: {argv[0]!r}"
    if program not in allowed:
        return f"program {program!r} is not in REMEDIATION_ALLOWED_COMMANDS"
    return None


def enforce_step(step: RemediationStep, allowed: list[str]) -> RemediationStep:
    notes = list(step.safety_notes)
    risk = step.risk_level
    executable = step.executable
    problem = command_problem(step.command, allowed)
    if problem:
        risk, executable = RiskLevel.HIGH, False
        notes.append(f"command refused: {problem}")
    rollback = step.rollback_command.strip() if step.rollback_command else None
    if rollback:
        rb_problem = command_problem(rollback, allowed)
        if rb_problem:
            notes.append(f"rollback cannot run automatically: {rb_problem}")
            rollback_ok = False
        else:
            rollback_ok = True
    else:
        rollback_ok = False
        notes.append("no rollback command: this step cannot be undone automatically")
    if not rollback_ok and risk == RiskLevel.LOW:
        risk = RiskLevel.MEDIUM
    return step.model_copy(
        update={
            "risk_level": risk,
            "executable": executable,
            "rollback_command": rollback or None,
            "safety_notes": list(dict.fromkeys(notes)),
        }
    )


def enforce_invariants(plan: RemediationPlan, allowed: list[str]) -> RemediationPlan:
    steps = [enforce_step(step, allowed) for step in sorted(plan.steps, key=lambda s: s.order)]
    # Renumber so `order` is 1..n without gaps or duplicates whatever the source said.
    steps = [s.model_copy(update={"order": i}) for i, s in enumerate(steps, start=1)]
    notes = list(plan.safety_notes)
    requires_approval = plan.requires_human_approval
    reversible = plan.reversible
    if any(s.risk_level == RiskLevel.HIGH for s in steps):
        requires_approval, reversible = True, False
        notes.append("high-risk step: human approval required, plan marked irreversible")
    if any(not s.rollback_command or any("rollback" in n for n in s.safety_notes) for s in steps):
        requires_approval, reversible = True, False
        notes.append("a step has no usable rollback: human approval required, plan marked irreversible")
    if any(not s.executable for s in steps):
        requires_approval = True
        notes.append("a step cannot be executed automatically: a human must review it")
    return plan.model_copy(
        update={
            "steps": steps,
            "requires_human_approval": requires_approval,
            "reversible": reversible,
            "safety_notes": list(dict.fromkeys(notes)),
        }
    )
