"""The runbook catalogue: one concrete, reversible-where-possible step per action.

The offline analyst (and the Claude analyst, as a fallback) turns a diagnosis into
a `RemediationPlan` through this catalogue, so every plan carries a real command
and the exact command that undoes it. Commands are plain argv strings: the
executor runs them through `shlex.split` without a shell, so a value that would
need quoting or contains a shell metacharacter is refused here rather than
silently mangled there.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from iras.schemas import (
    SHELL_METACHARACTERS,
    Category,
    RemediationPlan,
    RemediationStep,
    RiskLevel,
    RunbookAction,
    WorkloadFacts,
)

# Kubernetes object names: DNS-1123 labels. Anything else (spaces, quotes, `$`) is not
# put into a command line, because it could not be a valid resource name anyway and
# would otherwise smuggle arguments into kubectl.
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

DEFAULT_NAMESPACE = "default"


class UnsafeArgument(ValueError):
    """A value destined for a command line is not a plain resource name."""


def safe_name(value: str) -> str:
    """Return `value` lower-cased if it is a valid Kubernetes resource name, else raise."""
    candidate = value.strip().lower()
    if not _K8S_NAME.match(candidate):
        raise UnsafeArgument(f"not a plain resource name: {value[:80]!r}")
    return candidate


def is_plain_command(command: str) -> bool:
    """True when the command has no shell metacharacters and splits cleanly."""
    if any(ch in SHELL_METACHARACTERS for ch in command):
        return False
    try:
        return bool(shlex.split(command))
    except ValueError:
        return False


@dataclass
class RunbookTarget:
    """What a step acts on; filled from the diagnosis, never from free text."""

    service: str
    namespace: str = DEFAULT_NAMESPACE
    deployment_sha: str | None = None
    config_name: str | None = None
    certificate_name: str | None = None
    current_replicas: int | None = None
    # Rollout history (Kubernetes source): the live revision and the one to return to.
    current_revision: int | None = None
    previous_revision: int | None = None
    hpa_max_replicas: int | None = None
    memory_limit: str | None = None
    # What ran out ("memory", "disk", "connections", "iops"): decides what a limit increase raises.
    resource_kind: str | None = None
    max_connections: int | None = None
    # Replicated stores: the member in the failing lines and a member seen healthy.
    failing_member: str | None = None
    healthy_member: str | None = None
    primary_down: bool = False
    postgres: bool = False
    # Set when the culprit is a third party; `service` is then the caller we act on.
    third_party: str | None = None
    extra_notes: list[str] = field(default_factory=list)


def _kubectl(*args: str, namespace: str) -> str:
    return " ".join(["kubectl", *args, "-n", namespace])


def _merge_patch(resource: str, namespace: str, body: str) -> str:
    """`kubectl patch` with a JSON merge patch: the form every reversible
    limit change takes, so its rollback is the same command with the old value."""
    return " ".join(
        ["kubectl", "patch", resource, "-n", namespace, "--type", "merge", "-p", shlex.quote(body)]
    )


def _scaled(value: int) -> int:
    # Doubling is the usual first move for saturation; capped so a bad parse of a
    # large number cannot request an absurd replica count.
    return min(max(value * 2, value + 2), value + 50)


def _bigger_memory(limit: str | None) -> tuple[str, str | None]:
    """Return (new limit, old limit) for a memory bump; old is None when unknown."""
    if limit:
        m = re.fullmatch(r"(\d+)(Mi|Gi|M|G)", limit)
        if m:
            amount, unit = int(m.group(1)), m.group(2)
            return f"{amount * 2}{unit}", limit
    return "2Gi", None


def step_for(
    action: RunbookAction, target: RunbookTarget, category: Category, order: int = 1
) -> RemediationStep:
    """Build the concrete step for `action` on `target`.

    Risk levels are honest: a failover or a config revert that touches every
    replica is high/medium risk; a restart of a stateless deployment is low.
    A step without an exact inverse gets `rollback_command=None`, which the safety
    layer turns into "needs approval, irreversible".
    """
    svc = safe_name(target.service)
    ns = safe_name(target.namespace or DEFAULT_NAMESPACE)
    notes: list[str] = list(target.extra_notes)

    if action is RunbookAction.ROLLBACK_DEPLOYMENT:
        return rollback_step(
            order,
            svc,
            ns,
            sha=target.deployment_sha,
            current=target.current_revision,
            previous=target.previous_revision,
            notes=notes,
        )

    if action is RunbookAction.RESTART_SERVICE:
        return RemediationStep(
            order=order,
            action=action,
            description=f"Rolling restart of deployment/{svc} to clear the stuck or leaking process state",
            command=_kubectl("rollout", "restart", f"deployment/{svc}", namespace=ns),
            rollback_command=None,
            risk_level=RiskLevel.LOW,
            estimated_duration_seconds=240,
            safety_notes=notes
            + ["A restart has no inverse; it only clears state, the underlying leak can return."],
        )

    if action is RunbookAction.SCALE_OUT:
        if target.hpa_max_replicas:
            new_max = _scaled(target.hpa_max_replicas)
            patch = '{"spec":{"maxReplicas":%d}}'
            return RemediationStep(
                order=order,
                action=action,
                description=(
                    f"Raise the autoscaler ceiling of {svc} from {target.hpa_max_replicas} "
                    f"to {new_max} replicas"
                ),
                command=_merge_patch(f"hpa/{svc}", ns, patch % new_max),
                rollback_command=_merge_patch(f"hpa/{svc}", ns, patch % target.hpa_max_replicas),
                risk_level=RiskLevel.MEDIUM,
                estimated_duration_seconds=300,
                safety_notes=notes + ["Check node and database headroom before adding replicas."],
            )
        current = target.current_replicas
        new = _scaled(current) if current else 6
        return RemediationStep(
            order=order,
            action=action,
            description=f"Scale deployment/{svc} out to {new} replicas",
            command=_kubectl("scale", f"deployment/{svc}", f"--replicas={new}", namespace=ns),
            rollback_command=_kubectl("scale", f"deployment/{svc}", f"--replicas={current}", namespace=ns)
            if current
            else None,
            risk_level=RiskLevel.MEDIUM,
            estimated_duration_seconds=300,
            safety_notes=notes
            + ([] if current else ["Current replica count unknown: no exact rollback, scale back by hand."]),
        )

    if action is RunbookAction.FAILOVER:
        return _failover(target, svc, ns, category, order, notes)

    if action is RunbookAction.RENEW_CERTIFICATE:
        cert = safe_name(target.certificate_name) if target.certificate_name else f"{svc}-tls"
        return RemediationStep(
            order=order,
            action=action,
            description=f"Force renewal of certificate {cert} and roll pods that mount it",
            command=_kubectl("cert-manager", "renew", cert, namespace=ns),
            rollback_command=None,
            risk_level=RiskLevel.MEDIUM,
            estimated_duration_seconds=300,
            safety_notes=notes
            + ["Renewal cannot be undone; if issuance fails, fix the issuer before retrying."],
        )

    if action is RunbookAction.REVERT_CONFIG:
        # Config changes land through ConfigMaps, flags or config sync, not deploys:
        # re-apply the last known-good revision kept by the config repo.
        cfg = safe_name(target.config_name) if target.config_name else f"{svc}-config"
        return RemediationStep(
            order=order,
            action=action,
            description=f"Re-apply the last known-good revision of {cfg} and restart {svc} to load it",
            command=f"kubectl apply -n {ns} -f configs/{ns}/{cfg}.last-known-good.yaml",
            rollback_command=f"kubectl apply -n {ns} -f configs/{ns}/{cfg}.yaml",
            risk_level=RiskLevel.MEDIUM,
            estimated_duration_seconds=180,
            safety_notes=notes + ["Confirm the last known-good revision predates the change."],
        )

    if action is RunbookAction.INCREASE_RESOURCE_LIMIT:
        return _increase_limit(target, svc, ns, order, notes)

    raise ValueError(f"no runbook step for action {action}")


def _manual(
    action: RunbookAction,
    svc: str,
    ns: str,
    order: int,
    description: str,
    inspect: str,
    notes: list[str],
    risk: RiskLevel = RiskLevel.MEDIUM,
) -> RemediationStep:
    """A step no command can do safely from here: shown with a read-only command, never run."""
    return RemediationStep(
        order=order,
        action=action,
        description=description,
        command=inspect,
        rollback_command=None,
        risk_level=risk,
        estimated_duration_seconds=1800,
        executable=False,
        safety_notes=notes
        + ["Manual change: the command only shows the current state; a human applies the fix."],
    )


def rollback_step(
    order: int,
    svc: str,
    ns: str,
    *,
    sha: str | None,
    current: int | None,
    previous: int | None,
    notes: list[str],
    description: str | None = None,
) -> RemediationStep:
    """`rollout undo` to a named revision, undone by returning to the live one.

    A plain `rollout undo` toggles to whichever revision precedes the live one *when
    it runs*; run again it does not reliably come back (a deploy in between, a history
    limit). So without both revisions the step says so and has no rollback: the plan
    is irreversible and a human checks `kubectl rollout history` first.
    """
    resource = f"deployment/{svc}"
    base = ["kubectl", "rollout", "undo", resource, "-n", ns]
    suspect = f" ({sha[:12]})" if sha else ""
    if current is not None and previous is not None and previous < current:
        return RemediationStep(
            order=order,
            action=RunbookAction.ROLLBACK_DEPLOYMENT,
            description=(
                description or f"Roll back {resource} to the revision before the suspect release{suspect}"
            )
            + f": revision {current} -> {previous}",
            command=" ".join([*base, f"--to-revision={previous}"]),
            rollback_command=" ".join([*base, f"--to-revision={current}"]),
            risk_level=RiskLevel.MEDIUM,
            estimated_duration_seconds=180,
            safety_notes=notes
            + [
                f"Planned with revision {current} live (rollout history from Kubernetes); "
                f"if {resource} has moved on since, re-plan.",
                "Verify the error rate drops after the previous revision is live.",
            ],
        )
    return RemediationStep(
        order=order,
        action=RunbookAction.ROLLBACK_DEPLOYMENT,
        description=(
            description or f"Roll back {resource} to the revision before the suspect release{suspect}"
        )
        + " (revision unknown)",
        command=" ".join(base),
        rollback_command=None,
        risk_level=RiskLevel.MEDIUM,
        estimated_duration_seconds=180,
        safety_notes=notes
        + [
            "Revision unknown (no rollout history): `rollout undo` returns to whichever revision "
            "precedes the live one and cannot be undone exactly; "
            f"check `kubectl rollout history {resource} -n {ns}` first.",
        ],
    )


def _increase_limit(
    target: RunbookTarget, svc: str, ns: str, order: int, notes: list[str]
) -> RemediationStep:
    action = RunbookAction.INCREASE_RESOURCE_LIMIT
    kind = target.resource_kind or "memory"
    if kind == "connections":
        if target.max_connections:
            new = target.max_connections * 2
            patch = '{"spec":{"postgresql":{"parameters":{"max_connections":"%d"}}}}'
            return RemediationStep(
                order=order,
                action=action,
                description=f"Raise max_connections of {svc} from {target.max_connections} to {new}",
                command=_merge_patch(f"cluster/{svc}", ns, patch % new),
                rollback_command=_merge_patch(f"cluster/{svc}", ns, patch % target.max_connections),
                risk_level=RiskLevel.MEDIUM,
                estimated_duration_seconds=300,
                safety_notes=notes
                + [
                    "Changing max_connections restarts the database instances (rolling).",
                    "A connection pooler in front of the database is the lasting fix.",
                ],
            )
        return _manual(
            action,
            svc,
            ns,
            order,
            f"Raise the connection limit of {svc} (current limit unknown)",
            f"kubectl get cluster/{svc} -n {ns} -o yaml",
            notes,
        )
    if kind == "iops":
        member = safe_name(target.failing_member) if target.failing_member else svc
        return _manual(
            action,
            svc,
            ns,
            order,
            f"Give {member} more storage throughput (provisioned IOPS / larger volume class) so it can keep up",
            f"kubectl get pvc -n {ns} -l app={svc}",
            notes,
        )
    if kind == "disk":
        return _manual(
            action,
            svc,
            ns,
            order,
            f"Expand the full volume of {svc} (PVC resize) and set retention so it stays bounded",
            f"kubectl get pvc -n {ns} -l app={svc}",
            notes,
        )
    new, old = _bigger_memory(target.memory_limit)
    return RemediationStep(
        order=order,
        action=action,
        description=f"Raise the memory limit of deployment/{svc} to {new}",
        command=_kubectl("set", "resources", f"deployment/{svc}", f"--limits=memory={new}", namespace=ns),
        rollback_command=_kubectl(
            "set", "resources", f"deployment/{svc}", f"--limits=memory={old}", namespace=ns
        )
        if old
        else None,
        risk_level=RiskLevel.MEDIUM,
        estimated_duration_seconds=300,
        safety_notes=notes
        + ([] if old else ["Current limit unknown: no exact rollback, record it before applying."]),
    )


def _failover(
    target: RunbookTarget, svc: str, ns: str, category: Category, order: int, notes: list[str]
) -> RemediationStep:
    action = RunbookAction.FAILOVER
    notes = notes + ["Failover moves traffic; confirm the target is healthy and in sync first."]
    if target.third_party:
        return RemediationStep(
            order=order,
            action=action,
            description=f"Switch {svc} from {target.third_party} to its secondary provider",
            command=_kubectl("set", "env", f"deployment/{svc}", "PROVIDER_FAILOVER=secondary", namespace=ns),
            rollback_command=_kubectl("set", "env", f"deployment/{svc}", "PROVIDER_FAILOVER-", namespace=ns),
            risk_level=RiskLevel.HIGH,
            estimated_duration_seconds=300,
            safety_notes=notes,
        )
    if category in (Category.DATABASE, Category.DATA_CORRUPTION):
        if target.failing_member and not target.primary_down:
            member = safe_name(target.failing_member)
            return RemediationStep(
                order=order,
                action=action,
                description=f"Take the failing member {member} out of the read pool; reads fail over to the healthy members",
                command=_kubectl("label", "pod", member, "role=quarantined", "--overwrite", namespace=ns),
                rollback_command=_kubectl(
                    "label", "pod", member, "role=replica", "--overwrite", namespace=ns
                ),
                risk_level=RiskLevel.HIGH,
                estimated_duration_seconds=120,
                safety_notes=notes
                + ["Rebuild the member from a fresh base backup before returning it to the pool."],
            )
        if target.healthy_member and target.postgres:
            healthy = safe_name(target.healthy_member)
            return RemediationStep(
                order=order,
                action=action,
                description=f"Promote {healthy} to primary of {svc}",
                command=" ".join(["kubectl", "cnpg", "promote", svc, healthy, "-n", ns]),
                rollback_command=None,
                risk_level=RiskLevel.HIGH,
                estimated_duration_seconds=600,
                safety_notes=notes
                + ["Promotion cannot be undone automatically; transactions not replicated are lost."],
            )
        return _manual(
            action,
            svc,
            ns,
            order,
            f"Fail {svc} over to a healthy member (promote it with the data store's own tooling)",
            f"kubectl get pods -n {ns} -l app={svc} -o wide",
            notes,
            risk=RiskLevel.HIGH,
        )
    member = safe_name(target.failing_member) if target.failing_member else svc
    return RemediationStep(
        order=order,
        action=action,
        description=f"Fail {svc} over to its standby path and take {member} out of service",
        command=_kubectl("set", "env", f"deployment/{svc}", "FAILOVER_ACTIVE=true", namespace=ns),
        rollback_command=_kubectl("set", "env", f"deployment/{svc}", "FAILOVER_ACTIVE-", namespace=ns),
        risk_level=RiskLevel.HIGH,
        estimated_duration_seconds=600,
        safety_notes=notes + ["Uses the FAILOVER_ACTIVE switch of the service's runbook."],
    )


def manual_plan(action: RunbookAction, reason: str) -> RemediationPlan:
    """A plan for a real problem that no safe command can address from here (the
    target's name cannot go on a command line): one manual step, so the incident
    waits for a human instead of closing as if nothing were wrong."""
    step = RemediationStep(
        order=1,
        action=action,
        description=f"{action.value.replace('_', ' ').capitalize()} by hand: {reason}"[:1000],
        command="kubectl get deployments --all-namespaces",
        rollback_command=None,
        risk_level=RiskLevel.HIGH,
        estimated_duration_seconds=1800,
        executable=False,
        safety_notes=[
            "Manual change: no safe command could be built for this target; "
            "the command only lists deployments, a human finds the target and applies the fix."
        ],
    )
    return RemediationPlan(
        summary=f"A human must act: {reason}"[:1000],
        steps=[step],
        requires_human_approval=True,
        reversible=False,
        safety_notes=list(step.safety_notes),
    )


def no_remediation_plan(reason: str) -> RemediationPlan:
    """A plan that changes nothing: false alarms and issues that need no action."""
    return RemediationPlan(
        summary=f"No remediation: {reason}",
        steps=[],
        requires_human_approval=False,
        reversible=True,
        safety_notes=["Nothing will be executed."],
    )


# --------------------------------------------------------------------------- cluster facts


def _kubectl_target(argv: list[str]) -> tuple[str, str, str | None, dict[str, str]]:
    """(kind, name, namespace, --flags) of a kubectl command acting on one resource."""
    namespace: str | None = None
    flags: dict[str, str] = {}
    positional: list[str] = []
    index = 1
    while index < len(argv):
        arg = argv[index]
        if arg in ("-n", "--namespace") and index + 1 < len(argv):
            namespace = argv[index + 1]
            index += 2
            continue
        if arg.startswith("--namespace="):
            namespace = arg.split("=", 1)[1]
        elif arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            flags[key] = value
        elif not arg.startswith("-"):
            positional.append(arg)
        index += 1
    verbs = 2 if positional[:1] in (["rollout"], ["set"]) else 1
    rest = positional[verbs:]
    kind, name = "", ""
    if rest and "/" in rest[0]:
        kind, name = rest[0].split("/", 1)
    elif len(rest) >= 2:
        kind, name = rest[0], rest[1]
    kind = {
        "deploy": "deployment",
        "deployments": "deployment",
        "sts": "statefulset",
        "statefulsets": "statefulset",
    }.get(kind, kind)
    return kind, name, namespace, flags


def _find(
    workloads: list[WorkloadFacts], kind: str, name: str, namespace: str | None
) -> WorkloadFacts | None:
    matches = [w for w in workloads if w.kind.lower() == kind and w.name == name]
    exact = [w for w in matches if w.namespace == namespace]
    if exact:
        return exact[0]
    # The plan's namespace is a guess (alert label or "default"): a single workload of
    # that name in the cluster is the one meant.
    return matches[0] if len(matches) == 1 else None


def pin_to_workloads(
    plan: RemediationPlan, workloads: list[WorkloadFacts], culprit_sha: str | None = None
) -> RemediationPlan:
    """Make rollback and scale steps exact with what Kubernetes reported, whichever
    analyst wrote them.

    * `kubectl rollout undo deployment/x`: to the revision before the suspect one (the
      ReplicaSet whose pod-template-hash is the culprit sha, else the live one), undone
      by `--to-revision=<live>`; unknown revisions leave the step without a rollback.
    * `kubectl scale deployment/x --replicas=K`: undone by the replica count read now;
      a scale-out below the current count is raised above it; under an HPA, a manual
      scale is reverted by the autoscaler, so the step raises the HPA's ceiling instead.
    * `kubectl set resources deployment/x --limits=memory=M`: undone by the limit in
      the pod spec, on the workload's container.
    """
    # Names from the cluster go into command lines: only plain resource names do.
    workloads = [
        w
        for w in workloads
        if _K8S_NAME.match(w.name)
        and _K8S_NAME.match(w.namespace)
        and (w.hpa_name is None or _K8S_NAME.match(w.hpa_name))
    ]
    steps = [_pin_step(step, workloads, culprit_sha) for step in plan.steps]
    if steps == plan.steps:
        return plan
    missing_before = any(step.rollback_command is None for step in plan.steps)
    missing_now = any(step.rollback_command is None for step in steps)
    # A plan marked irreversible for want of a rollback that is now exact becomes
    # reversible; the safety invariants still re-check every step afterwards.
    reversible = not missing_now and (plan.reversible or missing_before)
    return plan.model_copy(update={"steps": steps, "reversible": reversible})


def _pin_step(
    step: RemediationStep, workloads: list[WorkloadFacts], culprit_sha: str | None
) -> RemediationStep:
    try:
        argv = shlex.split(step.command)
    except ValueError:
        return step
    if argv[:1] != ["kubectl"] or not is_plain_command(step.command):
        return step
    if argv[1:3] == ["rollout", "undo"]:
        return _pin_rollback(step, argv, workloads, culprit_sha)
    if argv[1:2] == ["scale"]:
        return _pin_scale(step, argv, workloads)
    if argv[1:3] == ["set", "resources"]:
        return _pin_memory(step, argv, workloads)
    return step


def _pin_rollback(
    step: RemediationStep, argv: list[str], workloads: list[WorkloadFacts], culprit_sha: str | None
) -> RemediationStep:
    kind, name, namespace, flags = _kubectl_target(argv)
    if kind != "deployment" or not name:
        return step
    facts = _find(workloads, kind, name, namespace)
    rollback_flags = _kubectl_target(shlex.split(step.rollback_command))[3] if step.rollback_command else {}
    if facts is None or facts.current_revision is None:
        if "to-revision" in flags and "to-revision" in rollback_flags:
            return step  # the analyst named both revisions itself
        unknown = rollback_step(
            step.order, name, namespace or DEFAULT_NAMESPACE, sha=None, current=None, previous=None, notes=[]
        )
        return step.model_copy(
            update={
                "rollback_command": None,
                "safety_notes": list(dict.fromkeys(step.safety_notes + unknown.safety_notes)),
            }
        )
    suspect = facts.current_revision
    if culprit_sha:
        for revision in facts.revisions:
            template_hash = revision.replica_set.rsplit("-", 1)[-1]
            if template_hash and culprit_sha.lower().startswith(template_hash.lower()):
                suspect = revision.revision
    before = facts.revision_before(suspect)
    notes = [n for n in step.safety_notes if not n.startswith("Revision unknown")]
    if suspect != facts.current_revision:
        notes.append(
            f"The suspect revision {suspect} is not the live one ({facts.current_revision}): "
            "rolling back before it also drops the revisions after it."
        )
    pinned = rollback_step(
        step.order,
        facts.name,
        facts.namespace,
        sha=None,
        current=facts.current_revision,
        previous=before.revision if before else None,
        notes=notes,
        description=step.description.removesuffix(" (revision unknown)"),
    )
    return pinned.model_copy(
        update={
            "risk_level": step.risk_level,
            "executable": step.executable,
            "safety_notes": list(dict.fromkeys(pinned.safety_notes)),
        }
    )


def _pin_scale(step: RemediationStep, argv: list[str], workloads: list[WorkloadFacts]) -> RemediationStep:
    kind, name, namespace, flags = _kubectl_target(argv)
    facts = _find(workloads, kind, name, namespace) if kind in ("deployment", "statefulset") else None
    if facts is None or facts.replicas is None:
        return step
    resource, ns = f"{kind}/{facts.name}", facts.namespace
    current = facts.replicas
    wanted = int(flags["replicas"]) if flags.get("replicas", "").isdigit() else None
    if facts.hpa_name and facts.hpa_max_replicas and step.action is RunbookAction.SCALE_OUT:
        new_max = _scaled(facts.hpa_max_replicas)
        patch = '{"spec":{"maxReplicas":%d}}'
        hpa = f"hpa/{facts.hpa_name}"
        return step.model_copy(
            update={
                "description": f"Raise the autoscaler ceiling of {resource} from {facts.hpa_max_replicas} "
                f"to {new_max} replicas (HPA {facts.hpa_name} manages its replicas)",
                "command": _merge_patch(hpa, ns, patch % new_max),
                "rollback_command": _merge_patch(hpa, ns, patch % facts.hpa_max_replicas),
                "safety_notes": list(
                    dict.fromkeys(
                        step.safety_notes
                        + [
                            f"A manual `kubectl scale` of {resource} would be reverted by HPA "
                            f"{facts.hpa_name}; its ceiling is raised instead."
                        ]
                    )
                ),
            }
        )
    if wanted is None:
        return step
    notes = [n for n in step.safety_notes if not n.startswith("Current replica count unknown")]
    if step.action is RunbookAction.SCALE_OUT and wanted <= current:
        wanted = _scaled(current)
        notes.append(f"{resource} already runs {current} replicas: the target was raised above it.")
    return step.model_copy(
        update={
            "description": f"Scale {resource} from {current} to {wanted} replicas",
            "command": f"kubectl scale {resource} --replicas={wanted} -n {ns}",
            "rollback_command": f"kubectl scale {resource} --replicas={current} -n {ns}",
            "safety_notes": list(
                dict.fromkeys(
                    notes
                    + [f"Undoing this step restores the {current} replicas {resource} had when planned."]
                )
            ),
        }
    )


_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_UNIT = {
    "": 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def _bytes(quantity: str) -> int | None:
    match = _QUANTITY.match(quantity)
    return int(match.group(1)) * _UNIT[match.group(2) or ""] if match else None


def _pin_memory(step: RemediationStep, argv: list[str], workloads: list[WorkloadFacts]) -> RemediationStep:
    """`kubectl set resources ... --limits=memory=NEW`: undone by the limit read from the
    pod spec, on the workload's own container (`-c`), so sidecars keep theirs."""
    kind, name, namespace, flags = _kubectl_target(argv)
    limits = flags.get("limits", "")
    facts = _find(workloads, kind, name, namespace) if kind in ("deployment", "statefulset") else None
    if facts is None or not limits.startswith("memory=") or "," in limits:
        return step
    if not all(_K8S_NAME.match(name) for name in facts.memory_limits):
        return step
    if len(facts.memory_limits) == 1:
        ((container, old),) = facts.memory_limits.items()
    elif facts.name in facts.memory_limits:
        container, old = facts.name, facts.memory_limits[facts.name]
    else:
        return step
    new = limits.split("=", 1)[1]
    old_bytes, new_bytes = _bytes(old), _bytes(new)
    if old_bytes is None:
        return step
    notes = [n for n in step.safety_notes if not n.startswith("Current limit unknown")]
    if new_bytes is None or new_bytes <= old_bytes:
        doubled, known = _bigger_memory(old)
        new = doubled if known else f"{old_bytes * 2 // 2**20}Mi"
        notes.append(f"{container} already has a {old} memory limit: the new limit was raised above it.")
    resource, ns = f"{kind}/{facts.name}", facts.namespace
    return step.model_copy(
        update={
            "description": f"Raise the memory limit of container {container} in {resource} from {old} to {new}",
            "command": f"kubectl set resources {resource} -c {container} --limits=memory={new} -n {ns}",
            "rollback_command": f"kubectl set resources {resource} -c {container} --limits=memory={old} -n {ns}",
            "safety_notes": list(
                dict.fromkeys(notes + [f"Undoing this step restores the {old} limit read from the pod spec."])
            ),
        }
    )
