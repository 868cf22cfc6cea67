"""`iras eval DIR`: replay incident scenarios and score the diagnosis against ground truth.

Diagnosis quality is measured, not assumed. Each scenario file (schema in
shared/scenarios/README.md) holds the alert exactly as its sender posts it, the
evidence the context tools would return and the expected answer. A *runner*
turns one scenario into a predicted answer; this module validates the files,
scores the predictions and prints/writes the results.

Runners:
* `direct_runner` (default here) calls the analyst in-process: ingest adapter ->
  triage -> evidence bundle -> analyze -> plan. Fast, for iterating on rules.
* the CLI may pass a pipeline runner that goes through the real webhook, Celery
  tasks and mock context clients (`iras.integrations.mock.set_fixture`).

Scores per scenario: severity exact and within one level, category, culprit
service, culprit deployment, remediation action of the first step (`none` when
the plan has no steps), evidence recall (share of `evidence_keys` found as
substrings of the cited evidence) and, for false alarms, whether nothing was
remediated.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

Predicted = dict[str, Any]
Runner = Callable[[dict[str, Any]], Predicted]

# --------------------------------------------------------------------------- schema

SOURCES = {"alertmanager", "grafana", "pagerduty", "datadog", "generic"}
LEVELS = {"ERROR", "WARN", "INFO"}
SEVERITIES = ["P0", "P1", "P2", "P3"]
CATEGORIES = {
    "bad_deploy",
    "config_change",
    "resource_exhaustion",
    "dependency_failure",
    "capacity",
    "certificate_expiry",
    "database",
    "network",
    "data_corruption",
    "false_alarm",
}
ACTIONS = {
    "rollback_deployment",
    "restart_service",
    "scale_out",
    "failover",
    "renew_certificate",
    "revert_config",
    "increase_resource_limit",
    "none",
}
TOP_KEYS = {"id", "summary", "source", "alert", "evidence", "expected"}
EVIDENCE_KEYS = {"logs", "metrics", "deployments"}
LOG_KEYS = {"timestamp", "service", "level", "message"}
METRIC_KEYS = {"name", "service", "query", "current", "baseline_7d", "unit"}
DEPLOY_KEYS = {"service", "sha", "ref", "environment", "created_at", "creator", "description"}
EXPECTED_KEYS = {
    "severity",
    "category",
    "culprit_service",
    "culprit_deployment_sha",
    "remediation_action",
    "evidence_keys",
}
OPTIONAL_EXPECTED_KEYS = {"culprit_service_aliases"}
_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def _is_time(value: Any) -> bool:
    if not isinstance(value, str) or not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return True


def _nonempty(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Check:
    """Collects every problem in one file instead of stopping at the first."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.errors: list[str] = []

    def err(self, where: str, msg: str) -> None:
        self.errors.append(f"{self.name}: {where}: {msg}")

    def keys(
        self,
        where: str,
        obj: Any,
        required: set[str],
        extra_ok: bool = False,
        optional: frozenset[str] | set[str] = frozenset(),
    ) -> bool:
        if not isinstance(obj, dict):
            self.err(where, f"must be an object, got {type(obj).__name__}")
            return False
        missing = required - obj.keys()
        if missing:
            self.err(where, f"missing keys {sorted(missing)}")
        extra = obj.keys() - required - optional
        if extra and not extra_ok:
            self.err(where, f"unexpected keys {sorted(extra)}")
        return not missing


def validate_scenario(doc: Any, filename: str) -> list[str]:
    """Return every schema problem of one scenario document (empty when valid)."""
    c = _Check(filename)
    if not c.keys("<root>", doc, TOP_KEYS):
        return c.errors
    sid = doc["id"]
    if not isinstance(sid, str) or not _ID.match(sid):
        c.err("id", f"must be kebab-case, got {sid!r}")
    elif Path(filename).stem != sid:
        c.err("id", f"file must be named {sid}.json")
    if not _nonempty(doc["summary"]):
        c.err("summary", "must be a non-empty string")
    if doc["source"] not in SOURCES:
        c.err("source", f"must be one of {sorted(SOURCES)}, got {doc['source']!r}")
    if not isinstance(doc["alert"], dict) or not doc["alert"]:
        c.err("alert", "must be a non-empty object")
    elif doc["source"] == "generic":
        if not _nonempty(doc["alert"].get("title")):
            c.err("alert.title", "generic alerts need a non-empty title")
        if not _is_time(doc["alert"].get("timestamp")):
            c.err("alert.timestamp", "generic alerts need an RFC 3339 timestamp")

    messages: list[str] = []
    shas: dict[str, str] = {}
    ev = doc["evidence"]
    if c.keys("evidence", ev, EVIDENCE_KEYS):
        logs = ev["logs"] if isinstance(ev["logs"], list) else []
        if not isinstance(ev["logs"], list) or not 20 <= len(logs) <= 200:
            c.err("evidence.logs", "must be a list of 20-200 entries")
        for i, line in enumerate(logs):
            where = f"evidence.logs[{i}]"
            if not c.keys(where, line, LOG_KEYS):
                continue
            if not _is_time(line["timestamp"]):
                c.err(where, f"timestamp not RFC 3339: {line['timestamp']!r}")
            if not _nonempty(line["service"]):
                c.err(where, "service must be a non-empty string")
            if line["level"] not in LEVELS:
                c.err(where, f"level must be one of {sorted(LEVELS)}, got {line['level']!r}")
            if _nonempty(line["message"]):
                messages.append(line["message"])
            else:
                c.err(where, "message must be a non-empty string")
        metrics = ev["metrics"] if isinstance(ev["metrics"], list) else []
        if not isinstance(ev["metrics"], list) or not 4 <= len(metrics) <= 12:
            c.err("evidence.metrics", "must be a list of 4-12 series")
        for i, m in enumerate(metrics):
            where = f"evidence.metrics[{i}]"
            if not c.keys(where, m, METRIC_KEYS):
                continue
            for k in ("name", "service", "query", "unit"):
                if not _nonempty(m[k]):
                    c.err(where, f"{k} must be a non-empty string")
            for k in ("current", "baseline_7d"):
                if not _number(m[k]):
                    c.err(where, f"{k} must be a number")
        deps = ev["deployments"] if isinstance(ev["deployments"], list) else []
        if not isinstance(ev["deployments"], list) or len(deps) > 6:
            c.err("evidence.deployments", "must be a list of 0-6 deployments")
        for i, d in enumerate(deps):
            where = f"evidence.deployments[{i}]"
            if not c.keys(where, d, DEPLOY_KEYS):
                continue
            if not isinstance(d["sha"], str) or not _SHA.match(d["sha"]):
                c.err(where, f"sha must be 40 lowercase hex characters, got {d['sha']!r}")
            elif d["sha"] in shas:
                c.err(where, "duplicate sha")
            else:
                shas[d["sha"]] = d["service"]
            if d["environment"] != "production":
                c.err(where, "environment must be 'production'")
            if not _is_time(d["created_at"]):
                c.err(where, f"created_at not RFC 3339: {d['created_at']!r}")

    exp = doc["expected"]
    if c.keys("expected", exp, EXPECTED_KEYS, optional=OPTIONAL_EXPECTED_KEYS):
        if exp["severity"] not in SEVERITIES:
            c.err("expected.severity", f"must be one of {SEVERITIES}, got {exp['severity']!r}")
        if exp["category"] not in CATEGORIES:
            c.err("expected.category", f"must be one of {sorted(CATEGORIES)}, got {exp['category']!r}")
        if exp["remediation_action"] not in ACTIONS:
            c.err("expected.remediation_action", f"must be one of {sorted(ACTIONS)}")
        if not _nonempty(exp["culprit_service"]):
            c.err("expected.culprit_service", "must be a non-empty string")
        sha = exp["culprit_deployment_sha"]
        if sha is not None:
            if not isinstance(sha, str) or not _SHA.match(sha):
                c.err("expected.culprit_deployment_sha", "must be null or 40 lowercase hex characters")
            elif sha not in shas:
                c.err("expected.culprit_deployment_sha", "does not match any evidence.deployments sha")
            elif shas[sha] != exp["culprit_service"]:
                c.err(
                    "expected.culprit_deployment_sha",
                    f"deployment belongs to {shas[sha]!r}, not culprit {exp['culprit_service']!r}",
                )
        if exp["category"] == "false_alarm" and (
            exp["severity"] != "P3" or exp["remediation_action"] != "none"
        ):
            c.err("expected", "false_alarm scenarios must be P3 with remediation_action 'none'")
        keys = exp["evidence_keys"] if isinstance(exp["evidence_keys"], list) else []
        if not isinstance(exp["evidence_keys"], list) or not 2 <= len(keys) <= 4:
            c.err("expected.evidence_keys", "must be a list of 2-4 strings")
        for k in keys:
            if not _nonempty(k):
                c.err("expected.evidence_keys", f"entries must be non-empty strings, got {k!r}")
            elif not any(k in msg for msg in messages):
                c.err("expected.evidence_keys", f"{k!r} does not occur verbatim in any log message")
        aliases = exp.get("culprit_service_aliases", [])
        if not isinstance(aliases, list) or not 1 <= len(aliases) <= 4 or not all(map(_nonempty, aliases)):
            if "culprit_service_aliases" in exp:
                c.err("expected.culprit_service_aliases", "must be a list of 1-4 non-empty strings")
            aliases = []
        if _nonempty(exp["culprit_service"]):
            seen = json.dumps([doc["alert"], doc["evidence"]], ensure_ascii=False).lower()
            names = [exp["culprit_service"], *aliases]
            if not any(str(name).lower() in seen for name in names):
                c.err(
                    "expected.culprit_service",
                    "neither the culprit nor an alias appears in the alert or the evidence",
                )
    return c.errors


@dataclass
class LoadedScenarios:
    scenarios: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)


def load_scenarios(directory: str | Path) -> LoadedScenarios:
    """Read and validate every `*.json` in `directory`; invalid files are reported, not raised."""
    out = LoadedScenarios()
    folder = Path(directory)
    if not folder.is_dir():
        out.errors[str(folder)] = [f"{folder}: not a directory"]
        return out
    seen: dict[str, str] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            out.errors[path.name] = [f"{path.name}: file: cannot parse JSON: {exc}"]
            continue
        problems = validate_scenario(doc, path.name)
        if not problems and doc["id"] in seen:
            problems = [f"{path.name}: id: {doc['id']!r} also used by {seen[doc['id']]}"]
        if problems:
            out.errors[path.name] = problems
            continue
        seen[doc["id"]] = path.name
        out.scenarios.append(doc)
    if not out.scenarios and not out.errors:
        out.errors[str(folder)] = [f"{folder}: no scenario files (*.json) found"]
    return out


# --------------------------------------------------------------------------- scoring


def _sev_rank(value: Any) -> int | None:
    return SEVERITIES.index(value) if value in SEVERITIES else None


def _norm(value: Any) -> str:
    return str(value).strip().lower() if value is not None else ""


def sha_matches(predicted: Any, expected: Any) -> bool:
    """Both null, or the same commit (a predicted short sha of >= 7 characters counts)."""
    if expected is None or predicted is None:
        return expected is None and predicted is None
    p, e = _norm(predicted), _norm(expected)
    return len(p) >= 7 and e.startswith(p)


def culprit_matches(predicted: Any, expected: dict[str, Any]) -> bool:
    """The culprit is right when it names the expected component or one of its aliases."""
    names = [expected["culprit_service"], *expected.get("culprit_service_aliases", [])]
    return bool(_norm(predicted)) and _norm(predicted) in {_norm(name) for name in names}


def evidence_recall(keys: list[str], evidence: list[str]) -> float:
    """Share of evidence keys that occur verbatim in at least one cited evidence line."""
    if not keys:
        return 1.0
    found = sum(1 for key in keys if any(key in line for line in evidence))
    return found / len(keys)


def score(expected: dict[str, Any], predicted: Predicted) -> dict[str, Any]:
    """Score one prediction against the scenario's `expected` block."""
    exp_rank, pred_rank = _sev_rank(expected["severity"]), _sev_rank(predicted.get("severity"))
    evidence = [str(x) for x in predicted.get("evidence") or []]
    action = predicted.get("remediation_action") or "none"
    is_false_alarm = expected["category"] == "false_alarm"
    return {
        "severity_exact": pred_rank is not None and pred_rank == exp_rank,
        "severity_within_one": pred_rank is not None
        and exp_rank is not None
        and abs(pred_rank - exp_rank) <= 1,
        "category": _norm(predicted.get("category")) == _norm(expected["category"]),
        "culprit_service": culprit_matches(predicted.get("culprit_service"), expected),
        "culprit_deployment": sha_matches(
            predicted.get("culprit_deployment_sha"), expected["culprit_deployment_sha"]
        ),
        "remediation_action": _norm(action) == _norm(expected["remediation_action"]),
        "evidence_recall": round(evidence_recall(list(expected["evidence_keys"]), evidence), 4),
        # None when the scenario is not a false alarm, so the total counts only false alarms.
        "false_alarm_not_remediated": (_norm(action) == "none") if is_false_alarm else None,
    }


RATE_KEYS = [
    "severity_exact",
    "severity_within_one",
    "category",
    "culprit_service",
    "culprit_deployment",
    "remediation_action",
    "evidence_recall",
]
# The headline score averages what the targets measure (within-one is implied by exact).
OVERALL_KEYS = [
    "severity_exact",
    "category",
    "culprit_service",
    "culprit_deployment",
    "remediation_action",
    "evidence_recall",
]


CONFIDENCE_GATE = 0.7


def totals(rows: list[dict[str, Any]], invalid_files: int = 0) -> dict[str, Any]:
    """Aggregate per-scenario scores into rates (0..1)."""
    n = len(rows)
    out: dict[str, Any] = {"scenarios": n, "invalid_files": invalid_files}
    out["errors"] = sum(1 for r in rows if r.get("error"))
    for key in RATE_KEYS:
        values = [float(r["scores"][key]) for r in rows]
        out[key] = round(sum(values) / n, 4) if n else 0.0
    fa = [r["scores"]["false_alarm_not_remediated"] for r in rows]
    fa = [v for v in fa if v is not None]
    out["false_alarms"] = len(fa)
    out["false_alarms_remediated"] = sum(1 for v in fa if not v)
    # The 0.7 gate decides whether IRAS proposes a plan or escalates with suspects, so a
    # confident answer that names the wrong culprit or action is the costly mistake.
    confident = [r for r in rows if (r.get("predicted", {}).get("confidence") or 0.0) >= CONFIDENCE_GATE]
    out["confident_answers"] = len(confident)
    out["confident_wrong"] = sum(
        1 for r in confident if not (r["scores"]["culprit_service"] and r["scores"]["remediation_action"])
    )
    out["confident_wrong_rate"] = round(out["confident_wrong"] / len(confident), 4) if confident else 0.0
    out["overall"] = round(sum(out[k] for k in OVERALL_KEYS) / len(OVERALL_KEYS), 4) if n else 0.0
    return out


# --------------------------------------------------------------------------- direct runner


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        number = float(value)
        return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, tz=UTC)
    if isinstance(value, str) and value and not value.startswith("0001-"):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def fallback_alerts(payload: dict[str, Any], source: str) -> list[Any]:
    """Minimal extraction used only while a source adapter is missing from `iras.ingest`.

    Reads the few fields every sender has (title, service, time) so the analyst can
    still be evaluated; the real adapters replace this as soon as they exist.
    """
    from iras.schemas import NormalizedAlert

    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    title = ""
    service: str | None = None
    when: datetime | None = None
    severity_hint: str | None = None
    description: str | None = None
    if isinstance(payload.get("alerts"), list) and payload["alerts"]:
        first = payload["alerts"][0]
        labels = {k: str(v) for k, v in (first.get("labels") or {}).items()}
        annotations = {k: str(v) for k, v in (first.get("annotations") or {}).items()}
        title = payload.get("title") or annotations.get("summary") or labels.get("alertname", "")
        service = labels.get("service") or labels.get("job")
        when = _parse_time(first.get("startsAt"))
        severity_hint = labels.get("severity")
        description = annotations.get("description") or payload.get("message")
        if first.get("valueString"):
            annotations["valueString"] = str(first["valueString"])
    elif isinstance(payload.get("event"), dict):
        data = payload["event"].get("data") or {}
        title = data.get("title", "")
        svc = data.get("service") or {}
        service = svc.get("summary") if isinstance(svc, dict) else None
        when = _parse_time(data.get("created_at") or payload["event"].get("occurred_at"))
        prio = data.get("priority")
        severity_hint = prio.get("summary") if isinstance(prio, dict) else data.get("urgency")
        description = (
            data.get("description") or data.get("body", {}).get("details")
            if isinstance(data.get("body"), dict)
            else data.get("description")
        )
    else:
        title = str(payload.get("title") or payload.get("summary") or "alert")
        description = payload.get("body") or payload.get("description") or payload.get("message")
        when = _parse_time(payload.get("timestamp") or payload.get("date") or payload.get("last_updated"))
        service = payload.get("service")
        tags = payload.get("tags")
        if isinstance(tags, str):
            for tag in tags.split(","):
                key, _, value = tag.strip().partition(":")
                if value:
                    labels[key] = value
            service = service or labels.get("service")
        severity_hint = payload.get("priority") or payload.get("severity")
    return [
        NormalizedAlert(
            source=source,
            title=(str(title) or "alert")[:1000],
            timestamp=when or datetime.now(UTC),
            service=str(service) if service else None,
            severity_hint=str(severity_hint) if severity_hint else None,
            description=str(description) if description else None,
            labels=labels,
            annotations=annotations,
            raw=payload,
        )
    ]


def normalize_alert(payload: dict[str, Any], source: str) -> list[Any]:
    """The real ingest adapter when it exists, the minimal fallback until then."""
    from iras.ingest import PayloadError, normalize

    try:
        alerts = normalize(payload, source)
    except PayloadError as exc:
        if exc.field != "source":
            # The adapter exists and rejected the payload: that is a real failure to report.
            raise
        alerts = fallback_alerts(payload, source)
    return alerts


def bundle_from_evidence(evidence: dict[str, Any], alert_time: datetime, window_minutes: int = 30) -> Any:
    """The bundle the mock context tools would gather for this alert (same window rules)."""
    from iras.schemas import ContextBundle, Deployment, LogLine, MetricDelta

    logs = sorted((LogLine.model_validate(x) for x in evidence.get("logs", [])), key=lambda x: x.timestamp)
    deploys = sorted(
        (Deployment.model_validate(x) for x in evidence.get("deployments", [])), key=lambda d: d.created_at
    )
    services = sorted({x.service for x in logs})
    return ContextBundle(
        window_start=alert_time - timedelta(minutes=window_minutes),
        window_end=alert_time + timedelta(minutes=5),
        window_minutes=window_minutes,
        services=services,
        logs=logs,
        metrics=[MetricDelta.model_validate(x) for x in evidence.get("metrics", [])],
        deployments=deploys,
    )


def predicted_from_results(
    triage: Any, rca: Any, plan: Any, rca_extra: dict[str, Any] | None = None
) -> Predicted:
    """The scored view of one run. Severity: the RCA stage's evidence-based re-assessment
    when the analyst provides one (`extra["severity"]`), else the triage severity."""
    severity = (rca_extra or {}).get("severity") or (triage.severity.value if triage else None)
    return {
        "severity": severity,
        "category": rca.category.value if rca else None,
        "culprit_service": rca.culprit_service if rca else None,
        "culprit_deployment_sha": rca.culprit_deployment_sha if rca else None,
        "remediation_action": plan.first_action.value if plan else "none",
        "evidence": list(rca.evidence) if rca else [],
        "confidence": rca.confidence if rca else None,
    }


def get_analyst(name: str) -> Any:
    if name == "offline":
        from iras.analysts.offline import OfflineAnalyst

        return OfflineAnalyst()
    if name == "claude":
        from iras.analysts import claude  # type: ignore[attr-defined]
        from iras.config import get_settings

        return claude.ClaudeAnalyst(get_settings())
    raise ValueError(f"unknown analyst {name!r}; use offline or claude")


def make_direct_runner(analyst_name: str = "offline") -> Runner:
    """A runner that calls the analyst in-process, bypassing web, queue and database."""
    from iras.config import get_settings

    analyst = get_analyst(analyst_name)
    gate = get_settings().rca_confidence_threshold

    def run(scenario: dict[str, Any]) -> Predicted:
        from iras.analysts.base import IncidentFacts

        alerts = normalize_alert(scenario["alert"], scenario["source"])
        first = alerts[0]
        facts = IncidentFacts(
            incident_id=f"eval-{scenario['id']}",
            title=first.title,
            source=first.source,
            service=first.service,
            alerts=alerts,
            payload=scenario["alert"],
        )
        triage = analyst.triage(facts).result
        facts = facts.model_copy(update={"triage": triage})
        bundle = bundle_from_evidence(scenario["evidence"], first.timestamp)
        rca_out = analyst.analyze(facts, bundle, 1)
        # As in the pipeline: below the confidence gate the incident escalates with its
        # suspects and no plan, so the scored action is "none".
        plan = (
            analyst.plan(facts, rca_out.result, bundle).result if rca_out.result.confidence >= gate else None
        )
        return predicted_from_results(triage, rca_out.result, plan, rca_out.extra)

    return run


def direct_runner(scenario: dict[str, Any]) -> Predicted:
    """Default in-process runner with the offline analyst."""
    return make_direct_runner("offline")(scenario)


# --------------------------------------------------------------------------- run + report


def _mark(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "ok" if value else "XX"
    return f"{value:.2f}"


def format_table(rows: list[dict[str, Any]], total: dict[str, Any]) -> str:
    header = f"{'scenario':<48} {'sev':>7} {'cat':>4} {'svc':>4} {'sha':>4} {'act':>4} {'evid':>5}"
    lines = [header, "-" * len(header)]
    for row in rows:
        s = row["scores"]
        p = row["predicted"]
        sev = f"{p.get('severity') or '?'}/{row['expected_severity']}"
        lines.append(
            f"{row['id'][:48]:<48} {sev:>7} {_mark(s['category']):>4} {_mark(s['culprit_service']):>4} "
            f"{_mark(s['culprit_deployment']):>4} {_mark(s['remediation_action']):>4} "
            f"{_mark(s['evidence_recall']):>5}" + (f"  error: {row['error']}" if row.get("error") else "")
        )
    lines.append("-" * len(header))
    lines.append(
        "totals: "
        + ", ".join(f"{k}={total[k] * 100:.1f}%" for k in RATE_KEYS)
        + f", false_alarms_remediated={total['false_alarms_remediated']}/{total['false_alarms']}"
        + f", confident_wrong={total['confident_wrong']}/{total['confident_answers']}"
        + f", overall={total['overall'] * 100:.1f}%"
    )
    if total["invalid_files"]:
        lines.append(f"invalid scenario files skipped: {total['invalid_files']}")
    return "\n".join(lines)


def evaluate(scenarios: list[dict[str, Any]], runner: Runner) -> list[dict[str, Any]]:
    """Run and score each scenario; a runner failure scores zero and is recorded, never raised."""
    rows: list[dict[str, Any]] = []
    for scenario in scenarios:
        error: str | None = None
        try:
            predicted = runner(scenario)
        except Exception as exc:  # noqa: BLE001 - one broken scenario must not stop the benchmark
            error = f"{type(exc).__name__}: {exc}"[:300]
            predicted = {}
        predicted = {
            "severity": predicted.get("severity"),
            "category": predicted.get("category"),
            "culprit_service": predicted.get("culprit_service"),
            "culprit_deployment_sha": predicted.get("culprit_deployment_sha"),
            "remediation_action": predicted.get("remediation_action") or "none",
            "evidence": list(predicted.get("evidence") or []),
            "confidence": predicted.get("confidence"),
        }
        row: dict[str, Any] = {
            "id": scenario["id"],
            "predicted": predicted,
            "scores": score(scenario["expected"], predicted),
            "expected_severity": scenario["expected"]["severity"],
        }
        if error:
            row["error"] = error
        rows.append(row)
    return rows


def _threshold(value: float) -> float:
    # Accept 0.85 and 85 alike: people type both.
    return value / 100 if value > 1 else value


def run_eval(
    directory: str | Path,
    analyst_name: str = "offline",
    json_path: str | Path | None = None,
    fail_under: float | None = None,
    runner: Runner | None = None,
    out: Any = None,
) -> int:
    """Validate, run, score, print; returns the process exit status.

    Exit 1 when scenario files are invalid, a scenario errored, or the overall score
    is below `fail_under`; 0 otherwise.
    """
    stream = out or sys.stdout
    loaded = load_scenarios(directory)
    for name, problems in loaded.errors.items():
        print(f"INVALID {name}", file=stream)
        for problem in problems:
            print(f"  {problem}", file=stream)
    run = runner or make_direct_runner(analyst_name)
    rows = evaluate(loaded.scenarios, run)
    total = totals(rows, invalid_files=len(loaded.errors))
    total["analyst"] = analyst_name
    print(format_table(rows, total), file=stream)
    if json_path:
        doc = {
            "totals": total,
            "scenarios": [
                {
                    "id": r["id"],
                    "predicted": r["predicted"],
                    "scores": r["scores"],
                    **({"error": r["error"]} if r.get("error") else {}),
                }
                for r in rows
            ],
            "invalid_files": loaded.errors,
        }
        Path(json_path).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    status = 0
    if loaded.errors or total["errors"]:
        status = 1
    if fail_under is not None and total["overall"] < _threshold(fail_under):
        print(
            f"FAIL: overall {total['overall'] * 100:.1f}% is below --fail-under {_threshold(fail_under) * 100:.1f}%",
            file=stream,
        )
        status = 1
    return status


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="folder of scenario *.json files")
    parser.add_argument("--analyst", choices=["offline", "claude"], default="offline")
    parser.add_argument("--json", dest="json_path", metavar="FILE", help="write machine-readable results")
    parser.add_argument(
        "--fail-under",
        type=float,
        default=None,
        metavar="SCORE",
        help="exit non-zero when the overall score (mean of the headline rates) is below SCORE (0-1 or %%)",
    )


def main_eval(args: argparse.Namespace, runner: Runner | None = None) -> int:
    return run_eval(args.directory, args.analyst, args.json_path, args.fail_under, runner)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iras.eval", description=__doc__.splitlines()[0])
    add_eval_arguments(parser)
    return main_eval(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
