"""Remediation executors.

`dry-run` (the default) records what would run. `shell` runs a step as an argv
list, never through a shell, only when its program is allowlisted, in a new
process group so a timeout kills the step and everything it spawned, with a
minimal environment: a step never inherits IRAS's database URL, secret key,
signing secrets or tokens.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from iras.config import Settings
from iras.safety import command_problem

OUTPUT_TAIL_BYTES = 4000


@dataclass
class ExecResult:
    status: str  # succeeded | failed | refused
    exit_code: int | None
    output: str


class _Executor:
    """Every executor refuses what the command policy refuses, before anything else."""

    name = "base"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, command: str) -> ExecResult:
        problem = command_problem(command, self.settings.remediation_allowed_commands)
        if problem:
            return ExecResult("refused", None, problem)
        return self._run(shlex.split(command))

    def _run(self, argv: list[str]) -> ExecResult:
        raise NotImplementedError


class DryRunExecutor(_Executor):
    name = "dry-run"

    def _run(self, argv: list[str]) -> ExecResult:
        return ExecResult("succeeded", 0, f"dry-run: would run {shlex.join(argv)}")


# The only variables a step sees. KUBECONFIG when the operator configured one: kubectl
# then talks to the cluster that file names, with the credentials it holds.
STEP_ENVIRONMENT = ("PATH", "HOME", "KUBECONFIG", "LANG", "LC_ALL", "TZ")


def step_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a remediation step: PATH, HOME, KUBECONFIG (and locale)
    copied from IRAS's own, nothing else."""
    source = os.environ if environ is None else environ
    env = {name: source[name] for name in STEP_ENVIRONMENT if source.get(name)}
    env.setdefault("PATH", os.defpath)
    return env


class ShellExecutor(_Executor):
    name = "shell"

    def _run(self, argv: list[str]) -> ExecResult:
        try:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=step_environment(),
            )
        except OSError as exc:
            return ExecResult("failed", None, f"could not start {argv[0]!r}: {exc}")
        timeout = self.settings.remediation_step_timeout_seconds
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Kill the whole process group: a step may have spawned children.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            tail = out.decode("utf-8", "replace")[-OUTPUT_TAIL_BYTES:]
            return ExecResult("failed", None, f"{tail}\n[killed after {timeout:g}s timeout]")
        text = out.decode("utf-8", "replace")[-OUTPUT_TAIL_BYTES:]
        return ExecResult("succeeded" if proc.returncode == 0 else "failed", proc.returncode, text)


def get_executor(settings: Settings) -> DryRunExecutor | ShellExecutor:
    if settings.remediation_executor == "shell":
        return ShellExecutor(settings)
    return DryRunExecutor(settings)
