"""Safety invariants, enforced in code on every plan whatever produced it.

The model (or a rule) may claim anything about a step; these checks do not
trust it:
1. a command with shell metacharacters, whose program is not exactly a name in
   REMEDIATION_ALLOWED_COMMANDS, or that is destructive even for an allowed
   program (`kubectl delete`, `--force`, scaling to zero...), is high risk and
   not executable;
2. any high-risk step forces human approval and marks the plan irreversible;
3. any step without a rollback command marks the plan irreversible and forces
   human approval;
4. a plan with a non-executable step still needs a human (who may run it by hand).
Nothing executes without an approved plan: that is the state machine's job
(`EXECUTING` is reachable only from `AWAITING_APPROVAL` on `approved`).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from functools import lru_cache

from iras.schemas import SHELL_METACHARACTERS, RemediationPlan, RemediationStep, RiskLevel

# (program, first argument) pairs that destroy state or open a shell on a host or pod.
# Allowed programs can still do damage: `kubectl` is on the allowlist, yet
# `kubectl delete namespace prod` is not a remediation any model should run unattended.
DESTRUCTIVE_SUBCOMMANDS: dict[str, set[str]] = {
    "kubectl": {
        "delete",
        "drain",
        "exec",
        "cp",
        "replace",
        "run",
        "attach",
        "debug",
        "proxy",
        "port-forward",
    },
    "helm": {"uninstall", "delete", "del", "un"},
    "systemctl": {"disable", "mask", "kill", "poweroff", "reboot", "halt", "isolate", "stop"},
}
DESTRUCTIVE_FLAGS = {"--force", "--grace-period=0", "--all", "--all-namespaces", "-A", "--cascade=orphan"}


def command_problem(command: str | None, allowed: Iterable[str]) -> str | None:
    """Why `command` may not run unattended, or None when it passes every check."""
    return _command_problem(command, tuple(allowed))


# The verdict depends on the command and the allowlist only. The same commands come
# back all the time (the plan checks a step and its rollback, the executor checks
# the step again before running it; runbooks repeat): each is parsed with shlex once.
@lru_cache(maxsize=4096)
def _command_problem(command: str | None, allowed: tuple[str, ...]) -> str | None:
    if command is None or not command.strip():
        return "empty command"
    bad = sorted({ch for ch in command if ch in SHELL_METACHARACTERS})
    if bad:
        return f"shell metacharacter(s) {''.join(bad)!r}"
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return f"cannot be parsed: {exc}"
    if not argv:
        return "empty command"
    program = argv[0]
    allowed_set = set(allowed)
    # Exact match only: "/tmp/kubectl" or "./kubectl" could be any binary.
    if program not in allowed_set:
        return f"program {program!r} is not on the allowlist ({', '.join(sorted(allowed_set)) or 'empty'})"
    # Any argument, not just the first: flags may come first (`kubectl -n prod delete pod x`).
    # A resource that happens to be named "delete" is gated too, which errs on the safe side.
    verbs = sorted(DESTRUCTIVE_SUBCOMMANDS.get(program, set()).intersection(argv[1:]))
    if verbs:
        return f"destructive: `{program} {verbs[0]}`"
    flags = DESTRUCTIVE_FLAGS.intersection(argv[1:])
    if flags:
        return f"destructive flag(s) {', '.join(sorted(flags))}"
    if program == "kubectl" and "scale" in argv[1:] and _replicas(argv) == "0":
        return "destructive: scales to zero replicas"
    return None


def _replicas(argv: list[str]) -> str | None:
    for index, arg in enumerate(argv):
        if arg.startswith("--replicas="):
            return arg.split("=", 1)[1]
        if arg == "--replicas" and index + 1 < len(argv):
            return argv[index + 1]
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
