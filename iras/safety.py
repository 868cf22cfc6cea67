"""Safety invariants, enforced in code on every plan whatever produced it.

The model (or a rule) may claim anything about a step; these checks do not
trust it:
1. a command with shell metacharacters, whose program is not exactly a name in
   REMEDIATION_ALLOWED_COMMANDS, or that does anything but what the program's
   allowlist of verbs, options and values permits (`kubectl rollout undo`,
   `scale` to a count above zero, a merge patch of an autoscaler's bounds...),
   is high risk and not executable;
2. any high-risk step forces human approval and marks the plan irreversible;
3. any step without a rollback command marks the plan irreversible and forces
   human approval;
4. a plan with a non-executable step still needs a human (who may run it by hand).
Nothing executes without an approved plan: that is the state machine's job
(`EXECUTING` is reachable only from `AWAITING_APPROVAL` on `approved`).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable
from functools import lru_cache

from iras.schemas import SHELL_METACHARACTERS, RemediationPlan, RemediationStep, RiskLevel

# What a step may do is an allowlist per program, not a list of known-bad words: a
# denylist misses `--replicas=00`, `--kubeconfig=...`, `apply -f https://...` and every
# verb nobody thought of. A program that REMEDIATION_ALLOWED_COMMANDS allows but that
# has no policy here (`echo`, a site's own script) takes plain operands only, no options.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # DNS-1123, as runbooks.safe_name
_COUNT = re.compile(r"^[1-9][0-9]{0,4}$")  # canonical decimal, > 0: not "00", "+0", "0x1"
_REVISION = re.compile(r"^(0|[1-9][0-9]{0,8})$")
_DURATION = re.compile(r"^[1-9][0-9]{0,4}(s|m)$")
_QUANTITY = re.compile(r"^(0|[1-9][0-9]{0,6})(\.[0-9]{1,3})?(m|k|Ki|Mi|Gi|Ti|K|M|G|T)?$")
_ENV_KEY = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
_ENV_VALUE = re.compile(r"^[A-Za-z0-9._-]{0,256}$")
# Variables that change how any process in the container loads code or finds programs.
_LOADER_ENV = re.compile(
    r"^(LD_|DYLD_|PYTHON|NODE_OPTIONS$|JAVA_TOOL_OPTIONS$|_JAVA_OPTIONS$|PATH$|PERL5?LIB$|RUBYOPT$)"
)
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$")
_SELECTOR = re.compile(r"^[a-z0-9][-a-z0-9_./]{0,62}(!?=|==)[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$")
_MANIFEST = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_./-]{0,250}\.(ya?ml|json)$")
_UNIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._-]{0,250}$")

# Kinds a step may read: never secrets (a step's output is stored and shown to viewers),
# config maps or service accounts.
_READABLE_KINDS = {
    "pod", "pods", "po", "deployment", "deployments", "deploy", "statefulset", "statefulsets", "sts",
    "daemonset", "daemonsets", "ds", "replicaset", "replicasets", "rs", "service", "services", "svc",
    "pvc", "persistentvolumeclaim", "persistentvolumeclaims", "hpa", "horizontalpodautoscaler",
    "horizontalpodautoscalers", "node", "nodes", "no", "event", "events", "ev", "cluster", "clusters",
    "endpoints", "ep", "ingress", "ingresses", "ing", "certificate", "certificates", "cert",
}  # fmt: skip
_WORKLOAD_KINDS = {
    "deployment",
    "deploy",
    "deployments",
    "statefulset",
    "statefulsets",
    "sts",
    "daemonset",
    "ds",
}
_SCALABLE_KINDS = {"deployment", "deploy", "deployments", "statefulset", "statefulsets", "sts"}
_PATCHABLE_KINDS = {"hpa", "horizontalpodautoscaler", "cluster", "clusters"}
_WHOLE_OBJECT_KINDS = _PATCHABLE_KINDS | {
    "horizontalpodautoscalers",
    "pvc",
    "persistentvolumeclaim",
    "persistentvolumeclaims",
}


class _Refused(Exception):
    """One reason a command is not on the allowlist of what a step may do."""


def _resource(arg: str, kinds: set[str]) -> None:
    kind, sep, name = arg.partition("/")
    if not sep or kind not in kinds or not _NAME.match(name):
        raise _Refused(
            f"destructive or unknown target {arg[:80]!r} (allowed: <{'|'.join(sorted(kinds))}>/<name>)"
        )


def _options(argv: list[str], values: dict[str, re.Pattern[str] | None]) -> tuple[list[str], dict[str, str]]:
    """Split a kubectl command into operands and options, refusing any option not in
    `values` (name -> pattern of its value, None for a switch). `-n`/`--namespace`
    are allowed everywhere; every other global flag (`--kubeconfig`, `--as`,
    `--context`, `--server`, `--token`...) is refused by not being listed."""
    values = {"-n": _NAME, "--namespace": _NAME, **values}
    operands: list[str] = []
    found: dict[str, str] = {}
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name not in values or (name.startswith("-") and not name.startswith("--") and eq):
            raise _Refused(f"destructive flag or unknown option {name[:60]!r}")
        pattern = values[name]
        if pattern is None:
            if eq:
                raise _Refused(f"destructive flag or unknown option {arg[:60]!r} (a switch takes no value)")
            value = ""
        elif not eq:
            if index >= len(argv):
                raise _Refused(f"option {name!r} needs a value")
            value = argv[index]
            index += 1
        if pattern is not None and not pattern.match(value):
            raise _Refused(f"value {value[:60]!r} of {name} is not allowed")
        key = {
            "-n": "namespace",
            "-p": "patch",
            "-f": "filename",
            "-o": "output",
            "-l": "selector",
            "-c": "containers",
        }.get(name, name.lstrip("-"))
        if key in found:
            raise _Refused(f"option {name} given twice")
        found[key] = value
    return operands, found


def _operands(operands: list[str], count: int, what: str) -> None:
    if len(operands) != count:
        raise _Refused(f"expected {what}, got {' '.join(operands)[:80]!r}")


def _merge_patch_problem(body: str) -> str | None:
    """A merge patch may only set the scalars IRAS's runbooks change: an autoscaler's
    replica bounds (> 0) and database parameters. Never `spec.replicas` (scaling to
    zero), lists (a merge patch replaces them whole) or anything else."""
    try:
        doc = json.loads(body)
    except ValueError:
        return "patch body is not JSON"
    spec = doc.get("spec") if isinstance(doc, dict) and set(doc) == {"spec"} else None
    if not isinstance(spec, dict) or not spec:
        return 'patch must be {"spec": {...}}'
    for key, value in spec.items():
        if key in ("maxReplicas", "minReplicas"):
            if type(value) is not int or not 0 < value <= 10000:
                return f"patch {key} must be a positive integer"
        elif key == "postgresql" and isinstance(value, dict) and set(value) == {"parameters"}:
            params = value["parameters"]
            if not isinstance(params, dict) or not params:
                return "patch postgresql.parameters must be an object"
            for pname, pvalue in params.items():
                if not _ENV_KEY.match(str(pname).upper()) or not (
                    isinstance(pvalue, str) and _ENV_VALUE.match(pvalue) or type(pvalue) is int
                ):
                    return f"patch parameter {str(pname)[:40]!r} is not allowed"
        else:
            return f"patch of spec.{str(key)[:40]} is not allowed"
    return None


def _kubectl(argv: list[str]) -> None:
    # Global options before the verb: only the namespace (`kubectl -n prod rollout ...`).
    index = 0
    while index < len(argv) and argv[index].startswith("-"):
        index += 2 if argv[index] in ("-n", "--namespace") else 1
    _options(argv[: min(index, len(argv))], {})
    if index >= len(argv):
        raise _Refused("no kubectl verb")
    verb, rest = argv[index], argv[index + 1 :]
    if verb == "rollout":
        sub = rest[0] if rest else ""
        allowed: dict[str, dict[str, re.Pattern[str] | None]] = {
            "undo": {"--to-revision": _REVISION},
            "restart": {},
            "status": {"--timeout": _DURATION, "--revision": _REVISION},
            "history": {},
        }
        if sub not in allowed:
            raise _Refused(f"destructive or unknown: `kubectl rollout {sub[:40]}`")
        operands, _ = _options(rest[1:], allowed[sub])
        _operands(operands, 1, "one <kind>/<name>")
        _resource(operands[0], _WORKLOAD_KINDS)
    elif verb == "scale":
        operands, opts = _options(rest, {"--replicas": re.compile(r".*"), "--current-replicas": _COUNT})
        _operands(operands, 1, "one <kind>/<name>")
        _resource(operands[0], _SCALABLE_KINDS)
        if not _COUNT.match(opts.get("replicas", "")):
            raise _Refused(
                "destructive: scales to zero replicas or to a count that is not a plain number "
                f"({opts.get('replicas', 'missing')[:20]!r}; a canonical decimal above 0 is required)"
            )
    elif verb == "set":
        sub = rest[0] if rest else ""
        if sub == "resources":
            quantities = re.compile(
                r"^(cpu|memory|ephemeral-storage)=[^,=]+(,(cpu|memory|ephemeral-storage)=[^,=]+)*$"
            )
            operands, opts = _options(
                rest[1:],
                {"--limits": quantities, "--requests": quantities, "-c": _NAME, "--containers": _NAME},
            )
            for spec in (opts.get("limits"), opts.get("requests")):
                for pair in (spec or "").split(",") if spec else []:
                    if not _QUANTITY.match(pair.split("=", 1)[1]):
                        raise _Refused(f"resource quantity {pair[:40]!r} is not allowed")
            if not (opts.get("limits") or opts.get("requests")):
                raise _Refused("`set resources` needs --limits or --requests")
            _operands(operands, 1, "one <kind>/<name>")
        elif sub == "env":
            operands, _ = _options(rest[1:], {"-c": _NAME, "--containers": _NAME})
            if len(operands) < 2:
                raise _Refused("`set env` needs <kind>/<name> and KEY=value or KEY-")
            for pair in operands[1:]:
                key, eq, value = pair.partition("=")
                if _LOADER_ENV.match(key.rstrip("-")):
                    raise _Refused(
                        f"environment change {pair[:60]!r} is not allowed (changes how code loads)"
                    )
                if eq and not (_ENV_KEY.match(key) and _ENV_VALUE.match(value)):
                    raise _Refused(f"environment change {pair[:60]!r} is not allowed")
                if not eq and not (pair.endswith("-") and _ENV_KEY.match(pair[:-1])):
                    raise _Refused(f"environment change {pair[:60]!r} is not allowed")
        else:
            raise _Refused(f"destructive or unknown: `kubectl set {sub[:40]}`")
        _resource(operands[0], _WORKLOAD_KINDS)
    elif verb == "patch":
        operands, opts = _options(
            rest,
            {
                "--type": re.compile(r"^merge$"),
                "-p": re.compile(r".*", re.S),
                "--patch": re.compile(r".*", re.S),
            },
        )
        _operands(operands, 1, "one <kind>/<name>")
        _resource(operands[0], _PATCHABLE_KINDS)
        body = opts.get("patch")
        if opts.get("type") != "merge" or body is None:
            raise _Refused("patch must be `--type merge -p <body>`")
        problem = _merge_patch_problem(body)
        if problem:
            raise _Refused(problem)
    elif verb == "apply":
        # A local manifest from the config repository only: no URL, no stdin, no kustomize,
        # no prune, no path out of the working directory.
        operands, opts = _options(rest, {"-f": _MANIFEST, "--filename": _MANIFEST})
        path = opts.get("filename", "")
        if operands or not path or ".." in path.split("/") or path.startswith("/"):
            raise _Refused("apply takes exactly one relative manifest path (-f configs/...yaml)")
    elif verb in ("get", "describe"):
        switches: dict[str, re.Pattern[str] | None] = {"-l": _SELECTOR, "--selector": _SELECTOR}
        if verb == "get":
            switches |= {
                "-o": re.compile(r"^(wide|name|yaml|json)$"),
                "--output": re.compile(r"^(wide|name|yaml|json)$"),
            }
            switches |= {"-A": None, "--all-namespaces": None}
        operands, opts = _options(rest, switches)
        if not operands or len(operands) > 2:
            raise _Refused(f"`kubectl {verb}` takes <kind> [<name>] or <kind>/<name>")
        kind = operands[0].partition("/")[0]
        if kind.lower() not in _READABLE_KINDS:
            raise _Refused(
                f"`kubectl {verb} {kind[:40]}` is not allowed (secrets and unknown kinds are never read)"
            )
        # A full object of a workload carries its containers' literal environment values:
        # the output is stored and shown to viewers. Only settings objects come whole.
        if opts.get("output") in ("yaml", "json") and kind.lower() not in _WHOLE_OBJECT_KINDS:
            raise _Refused(
                f"`-o {opts['output']}` of {kind[:40]} is not allowed (it shows environment values)"
            )
        names = [operands[0].partition("/")[2]] if "/" in operands[0] else operands[1:]
        if any(not _NAME.match(name) for name in names):
            raise _Refused("not a plain resource name")
    elif verb == "label":
        operands, _ = _options(rest, {"--overwrite": None})
        _operands(operands, 3, "pod <name> key=value")
        key, eq, value = operands[2].partition("=")
        if operands[0] not in ("pod", "pods", "po") or not _NAME.match(operands[1]):
            raise _Refused("only a pod may be labelled")
        if not eq or not _LABEL.match(key) or not _LABEL.match(value):
            raise _Refused(f"label {operands[2][:60]!r} is not allowed")
    elif verb == "cert-manager":
        operands, _ = _options(rest, {})
        if operands[:1] != ["renew"] or len(operands) != 2 or not _NAME.match(operands[1]):
            raise _Refused("only `kubectl cert-manager renew <certificate>` is allowed")
    elif verb == "cnpg":
        operands, _ = _options(rest, {})
        if operands[:1] != ["promote"] or len(operands) != 3 or not all(map(_NAME.match, operands[1:])):
            raise _Refused("only `kubectl cnpg promote <cluster> <member>` is allowed")
    elif verb == "top":
        operands, _ = _options(rest, {"-l": _SELECTOR})
        if not operands or operands[0] not in ("pod", "pods", "node", "nodes") or len(operands) > 2:
            raise _Refused("only `kubectl top pods|nodes` is allowed")
    else:
        raise _Refused(f"destructive or unknown: `kubectl {verb[:40]}` is not an allowed verb")


def _helm(argv: list[str]) -> None:
    verb = argv[0] if argv else ""
    if verb == "rollback":
        operands, _ = _options(argv[1:], {"--wait": None, "--timeout": _DURATION})
        if not 1 <= len(operands) <= 2 or not _NAME.match(operands[0]):
            raise _Refused("only `helm rollback <release> [<revision>]` is allowed")
        if len(operands) == 2 and not _COUNT.match(operands[1]):
            raise _Refused("helm revision must be a positive decimal")
    elif verb in ("status", "history"):
        operands, _ = _options(argv[1:], {})
        if len(operands) != 1 or not _NAME.match(operands[0]):
            raise _Refused(f"only `helm {verb} <release>` is allowed")
    elif verb == "list":
        _operands(_options(argv[1:], {})[0], 0, "no operands")
    else:
        raise _Refused(f"destructive or unknown: `helm {verb[:40]}` is not an allowed verb")


def _systemctl(argv: list[str]) -> None:
    # No options at all: `--host`/`-H` would reach another machine, `--force` skips checks.
    verb = argv[0] if argv else ""
    if verb not in ("restart", "try-restart", "reload", "reload-or-restart", "start", "status"):
        raise _Refused(f"destructive or unknown: `systemctl {verb[:40]}` is not an allowed verb")
    if len(argv) != 2 or not _UNIT.match(argv[1]):
        raise _Refused(f"`systemctl {verb}` takes exactly one unit name")


def _plain_operands(program: str, argv: list[str]) -> None:
    options = [arg for arg in argv if arg.startswith("-")]
    if options:
        raise _Refused(
            f"destructive flag or unknown option {options[0][:60]!r}: `{program}` has no option allowlist, "
            "it takes plain operands only"
        )


_POLICIES = {"kubectl": _kubectl, "helm": _helm, "systemctl": _systemctl}


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
    if any(not arg.isprintable() for arg in argv):
        return "control characters in an argument"
    try:
        _POLICIES.get(program, lambda rest: _plain_operands(program, rest))(argv[1:])
    except _Refused as exc:
        return str(exc)
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
