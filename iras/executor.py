"""Remediation executors.

`dry-run` (the default) records what would run. `shell` runs a step as an argv
list, never through a shell, only when its program is allowlisted, in a new
process group so a timeout kills the step and everything it spawned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass

from iras.config import Settings
from iras.safety import command_problem

OUTPUT_TAIL_BYTES = 4000


@dataclass
class ExecResult:
    status: str  # succeeded | failed | refused
    exit_code: int | None
    output: str


class DryRunExecutor:
    name = "dry-run"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, command: str) -> ExecResult:
        problem = command_problem(command, self.settings.remediation_allowed_commands)
        if problem:
            return ExecResult("refused", None, problem)
        return ExecResult("succeeded", 0, f"dry-run: would run {command}")


class ShellExecutor:
    name = "shell"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, command: str) -> ExecResult:
        import shlex

        problem = command_problem(command, self.settings.remediation_allowed_commands)
        if problem:
            return ExecResult("refused", None, problem)
        argv = shlex.split(command)
        try:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            return ExecResult("failed", None, f"could not start {argv[0]!r}: {exc}")
        try:
            out, _ = proc.communicate(timeout=self.settings.remediation_step_timeout_seconds)
        except subprocess.TimeoutExpired:
            # Kill the whole process group: a step may have spawned children.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            tail = out.decode("utf-8", "replace")[-OUTPUT_TAIL_BYTES:]
            return ExecResult(
                "failed",
                None,
                f"{tail}\n[killed after {self.settings.remediation_step_timeout_seconds:g}s timeout]",
            )
        text = out.decode("utf-8", "replace")[-OUTPUT_TAIL_BYTES:]
        return ExecResult("succeeded" if proc.returncode == 0 else "failed", proc.returncode, text)


def get_executor(settings: Settings) -> DryRunExecutor | ShellExecutor:
    if settings.remediation_executor == "shell":
        return ShellExecutor(settings)
    return DryRunExecutor(settings)
