"""`iras eval --perturb`: rewrite scenarios the way real incidents differ from the written ones.

A diagnosis method that reads the evidence's structure scores the same on a scenario
and on the same incident told differently; one that memorised wording does not. Each
scenario is rewritten, deterministically from `(seed, scenario id)`, by these steps
(in this order, each can be switched off):

1. `rename`: every hyphenated service name (`menu-api`, `pod-sidecar-injector`) gets
   a new first word, everywhere it occurs as a token: alert payload, log services and
   messages, metric services and queries, deployments, summary and the expected answer.
   Single-word names (`kafka`, `kubelet`, `varnish`) name products, not services, and stay.
2. `paraphrase`: common wording in log messages is swapped for synonyms ("failed to" ->
   "could not", "upstream" -> "backend"), never inside an evidence key or a service name.
3. `noise`: 10-16 WARN/ERROR/INFO lines from other scenarios, re-labelled to services
   that do not exist in this one, spread over its time range.
4. `log_format`: per service, messages become JSON or logfmt lines carrying the text as
   a field (escaping included), unless that would break an evidence key.
5. `innocent_deploy`: a release of one of the noise services minutes before the alert.
6. `clock_shift`: every timestamp (logs, deployments, alert fields, ISO times inside
   messages) moves by the same random offset of days and minutes.

Every evidence key still occurs verbatim in some log message afterwards, and the
culprit (or an alias) still occurs in the alert or evidence: `validate_scenario`
accepts every perturbed file, which the tests check.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

Scenario = dict[str, Any]
AlertTime = Callable[[Scenario], datetime]

KINDS = ("rename", "paraphrase", "noise", "log_format", "innocent_deploy", "clock_shift")

MAX_LOGS = 200
MAX_DEPLOYMENTS = 6

# Neutral first words for renamed services; hyphenated compounds built from them do not
# occur in ordinary log text.
_WORDS = (
    "alder", "basalt", "cirrus", "dunlin", "ember", "fjord", "garnet", "heron", "indigo",
    "juniper", "kestrel", "lumen", "marlin", "nimbus", "onyx", "pumice", "quartz", "rowan",
    "sable", "tamarack", "umber", "vireo", "wren", "yarrow", "zephyr", "bramble", "corvid",
    "drumlin", "egret", "fennel", "gannet", "hollis", "ibex", "jasper", "kelvin", "larkin",
)  # fmt: skip
_ROLES = ("sync", "gateway", "worker", "exporter", "api", "scheduler", "cache", "indexer")
_CHANGES = (
    "dependency bumps",
    "log field rename",
    "copy changes",
    "retry tuning",
    "new dashboard panel",
    "config refactor",
)

_SERVICE_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)+")
# Third-party software keeps its name in every organisation (an analyst may rightly know
# that `kube-state-metrics` reports and `otel-collector` ships telemetry), so it is not renamed.
_PRODUCT_PREFIXES = (
    "argocd-", "aws-", "azure-", "calico-", "cert-manager", "cilium-", "cloud-sql-proxy",
    "cluster-autoscaler", "coredns", "datadog-", "envoy-", "external-dns", "external-secrets",
    "fluent-bit", "gke-", "grafana-", "ingress-nginx", "istio-", "kafka-connect", "keda-",
    "kube-", "linkerd-", "metrics-server", "node-exporter", "node-problem-detector", "otel-",
    "opentelemetry-", "prom-", "prometheus-", "schema-registry", "sealed-secrets", "spark-operator",
    "strimzi-", "terraform-", "vault-", "velero-",
)  # fmt: skip

# Synonyms a different library, team or language version would print for the same event.
# Capitalised forms are listed separately so a rewrite keeps the sentence's case.
_SYNONYMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("failed to", ("could not", "was unable to")),
    ("Failed to", ("Could not", "Unable to")),
    ("unable to", ("cannot", "could not")),
    ("Unable to", ("Cannot", "Could not")),
    ("timed out", ("hit its timeout", "ran past its deadline")),
    ("refused", ("rejected",)),
    ("unavailable", ("not available", "down")),
    ("exceeded", ("went over", "surpassed")),
    ("retrying", ("will retry", "trying again")),
    ("started", ("is up", "came up")),
    ("starting", ("booting", "launching")),
    ("errors", ("failures", "faults")),
    ("error", ("failure", "fault")),
    ("requests", ("calls",)),
    ("request", ("call",)),
    ("connection", ("conn", "socket")),
    ("upstream", ("backend", "origin")),
    ("database", ("DB", "datastore")),
    ("slow", ("sluggish", "laggy")),
    ("completed", ("finished", "done")),
    ("succeeded", ("went through", "was successful")),
    ("deadline", ("time limit",)),
    ("waiting", ("pending",)),
    ("received", ("got",)),
    ("Too many", ("Excessive",)),
    ("too many", ("excessive",)),
    ("denied", ("refused",)),
    ("expired", ("lapsed", "is past its validity")),
    ("invalid", ("malformed", "bad")),
    ("missing", ("absent",)),
    ("reached", ("hit",)),
    ("exhausted", ("used up", "depleted")),
    ("cannot", ("can't",)),
    ("could not", ("couldn't",)),
)
# Only prose is rewritten: a word glued to an identifier (`ocr-requests`, `level=error`,
# `[error]`, a tab-separated level column) is part of a name or a field and stays.
_SYNONYM_RE = re.compile(
    r"(?<![\w\-/.=:\t\[])(" + "|".join(re.escape(k) for k, _ in _SYNONYMS) + r")(?![\w\-/.=\t\]])"
)
_SYNONYM_MAP = dict(_SYNONYMS)

_ISO_IN_TEXT = re.compile(
    r"(?<!\d)(\d{4}-\d{2}-\d{2})([T ])(\d{2}:\d{2}:\d{2})([.,]\d{1,9})?(Z|[+-]\d{2}:?\d{2})?(?!\d)"
)
_RFC3339_FULL = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def _rng(seed: int, scenario_id: str, step: str) -> random.Random:
    # A string seed is hashed with SHA-512 by `random`, so results do not depend on
    # PYTHONHASHSEED or on the order scenarios are processed in.
    return random.Random(f"{seed}:{scenario_id}:{step}")


# --------------------------------------------------------------------------- text helpers


def _walk_strings(value: Any, fn: Callable[[str, str | None], str], key: str | None = None) -> Any:
    """Apply `fn(text, key)` to every string value of a JSON structure (keys stay)."""
    if isinstance(value, str):
        return fn(value, key)
    if isinstance(value, list):
        return [_walk_strings(v, fn, key) for v in value]
    if isinstance(value, dict):
        return {k: _walk_strings(v, fn, k) for k, v in value.items()}
    return value


def _all_text(doc: Scenario) -> str:
    return json.dumps([doc.get("alert"), doc.get("evidence"), doc.get("summary")], ensure_ascii=False)


def _keys(doc: Scenario) -> list[str]:
    return [str(k) for k in doc["expected"]["evidence_keys"]]


def keys_survive(doc: Scenario) -> bool:
    """Every evidence key occurs verbatim in at least one log message."""
    messages = [str(x["message"]) for x in doc["evidence"]["logs"]]
    return all(any(k in m for m in messages) for k in _keys(doc))


def _protected_spans(text: str, needles: Iterable[str]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for needle in needles:
        if not needle:
            continue
        start = text.find(needle)
        while start != -1:
            spans.append((start, start + len(needle)))
            start = text.find(needle, start + 1)
    spans.sort()
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _outside(text: str, needles: Iterable[str], fn: Callable[[str], str]) -> str:
    """Rewrite only the parts of `text` that are not inside an occurrence of a needle."""
    out: list[str] = []
    pos = 0
    for a, b in _protected_spans(text, needles):
        out.append(fn(text[pos:a]))
        out.append(text[a:b])
        pos = b
    out.append(fn(text[pos:]))
    return "".join(out)


def _service_names(doc: Scenario) -> set[str]:
    ev = doc["evidence"]
    names = {str(x["service"]) for x in ev["logs"]}
    names |= {str(x["service"]) for x in ev["metrics"]}
    names |= {str(x["service"]) for x in ev["deployments"]}
    names.add(str(doc["expected"]["culprit_service"]))
    return names


# --------------------------------------------------------------------------- rename


def _token_re(names: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted(set(names), key=len, reverse=True)
    if not ordered:
        return None
    # A name is a token when no letter, digit or underscore touches it: `menu-api` matches
    # in `pod/menu-api-5f6c8d9b7-zlz6m` and `menu-api.shop.svc`, not in `mymenu-api`.
    return re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(re.escape(n) for n in ordered) + r")(?![A-Za-z0-9_])")


def _apply_rename(doc: Scenario, mapping: dict[str, str]) -> Scenario:
    pattern = _token_re(mapping)
    if pattern is None:
        return copy.deepcopy(doc)

    def sub(text: str, _key: str | None = None) -> str:
        return pattern.sub(lambda m: mapping[m.group(1)], text)

    out = copy.deepcopy(doc)
    out["summary"] = sub(out["summary"])
    out["alert"] = _walk_strings(out["alert"], sub)
    out["evidence"] = _walk_strings(out["evidence"], sub)
    exp = out["expected"]
    exp["culprit_service"] = sub(exp["culprit_service"])
    exp["evidence_keys"] = [sub(k) for k in exp["evidence_keys"]]
    if "culprit_service_aliases" in exp:
        exp["culprit_service_aliases"] = [sub(a) for a in exp["culprit_service_aliases"]]
    return out


def rename_services(doc: Scenario, rng: random.Random) -> tuple[Scenario, dict[str, str]]:
    """Give every hyphenated service a new first word; returns the document and the map."""
    text = _all_text(doc).lower()
    names = sorted(
        n for n in _service_names(doc) if _SERVICE_NAME.fullmatch(n) and not n.startswith(_PRODUCT_PREFIXES)
    )
    words = list(_WORDS)
    rng.shuffle(words)
    mapping: dict[str, str] = {}
    taken = set(names)
    for name in names:
        rest = name.split("-", 1)[1]
        for word in words:
            candidate = f"{word}-{rest}"
            if candidate not in taken and candidate not in text:
                mapping[name] = candidate
                taken.add(candidate)
                words.remove(word)
                break
    # A key that cuts through a name (e.g. ends in its middle) would stop matching;
    # such names keep their spelling so the answer key stays valid.
    while mapping:
        renamed = _apply_rename(doc, mapping)
        if keys_survive(renamed):
            return renamed, mapping
        broken = [n for n in mapping if not keys_survive(_apply_rename(doc, {n: mapping[n]}))] or [
            sorted(mapping)[0]
        ]
        for name in broken:
            mapping.pop(name, None)
    return copy.deepcopy(doc), {}


# --------------------------------------------------------------------------- paraphrase


def paraphrase(doc: Scenario, rng: random.Random, share: float = 0.8) -> Scenario:
    """Swap common words for synonyms in most log messages, keeping keys and names intact."""
    out = copy.deepcopy(doc)
    exp = out["expected"]
    protected = [*_keys(out), *_service_names(out), *exp.get("culprit_service_aliases", [])]

    def rewrite(segment: str) -> str:
        return _SYNONYM_RE.sub(lambda m: rng.choice(_SYNONYM_MAP[m.group(1)]), segment)

    for entry in out["evidence"]["logs"]:
        if rng.random() < share:
            entry["message"] = _outside(str(entry["message"]), protected, rewrite)
    return out


# --------------------------------------------------------------------------- noise


def _fresh_services(doc: Scenario, rng: random.Random, count: int) -> list[str]:
    text = _all_text(doc).lower()
    out: list[str] = []
    words = list(_WORDS)
    rng.shuffle(words)
    for word in words:
        name = f"{word}-{rng.choice(_ROLES)}"
        if name not in text and name not in out:
            out.append(name)
        if len(out) == count:
            break
    return out


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))


def _format_ts(when: datetime, like: str) -> str:
    """Render `when` in the style of the RFC 3339 string `like` (fraction digits, zone)."""
    m = _RFC3339_FULL.fullmatch(like)
    frac_digits = len(m.group(1)) - 1 if m and m.group(1) else 0
    zone = m.group(2) if m else "Z"
    base = when.strftime("%Y-%m-%dT%H:%M:%S")
    if frac_digits:
        base += "." + f"{when.microsecond:06d}"[:frac_digits].ljust(frac_digits, "0")
    if zone in ("Z", "z"):
        return base + zone
    return base + when.strftime("%z")[:3] + ":" + when.strftime("%z")[3:]


def add_noise(doc: Scenario, rng: random.Random, pool: list[Scenario]) -> tuple[Scenario, list[str]]:
    """Add unrelated lines from other scenarios, re-labelled to services not in this one."""
    out = copy.deepcopy(doc)
    logs = out["evidence"]["logs"]
    room = MAX_LOGS - len(logs)
    others = [p for p in pool if p["id"] != doc["id"]]
    if room <= 0 or not others or not logs:
        return out, []
    exp = out["expected"]
    forbidden = [k.lower() for k in _keys(out)]
    forbidden += [n.lower() for n in _service_names(out)]
    forbidden += [str(a).lower() for a in exp.get("culprit_service_aliases", [])]
    labels = _fresh_services(out, rng, 2)
    candidates: list[tuple[str, str, str]] = []  # (level, message, source service)
    for other in others:
        their_keys = [str(k) for k in other["expected"]["evidence_keys"]]
        for entry in other["evidence"]["logs"]:
            msg = str(entry["message"])
            low = msg.lower()
            # A line carrying the other incident's own root-cause evidence is not noise.
            if any(k in msg for k in their_keys) or any(f in low for f in forbidden):
                continue
            candidates.append((str(entry["level"]), msg, str(entry["service"])))
    if not candidates:
        return out, []
    wanted = min(room, rng.randint(10, 16), len(candidates))
    picked = rng.sample(candidates, wanted)
    times = sorted(_parse_ts(x["timestamp"]) for x in logs)
    first, last = times[0], times[-1]
    span = max((last - first).total_seconds(), 60.0)
    like = str(logs[0]["timestamp"])
    for level, msg, source in picked:
        label = rng.choice(labels)
        if _SERVICE_NAME.fullmatch(source):
            msg = re.sub(r"(?<![A-Za-z0-9_])" + re.escape(source) + r"(?![A-Za-z0-9_])", label, msg)
        when = first + timedelta(seconds=rng.uniform(0, span))
        msg = _restamp_text(msg, when)
        logs.append({"timestamp": _format_ts(when, like), "service": label, "level": level, "message": msg})
    logs.sort(key=lambda x: _parse_ts(x["timestamp"]))
    used = sorted({x["service"] for x in logs if x["service"] in labels})
    return out, used


# --------------------------------------------------------------------------- log formats


def _logfmt_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _wrap(entry: dict[str, Any], style: str) -> str:
    msg, level = str(entry["message"]), str(entry["level"]).lower()
    if style == "json":
        return json.dumps(
            {"time": entry["timestamp"], "level": level, "logger": entry["service"], "message": msg},
            ensure_ascii=False,
        )
    return f"time={entry['timestamp']} level={level} logger={entry['service']} msg={_logfmt_quote(msg)}"


def reformat_logs(doc: Scenario, rng: random.Random) -> tuple[Scenario, dict[str, str]]:
    """Per service, carry each message inside a JSON or logfmt line, keys kept verbatim."""
    out = copy.deepcopy(doc)
    keys = _keys(out)
    styles: dict[str, str] = {}
    for service in sorted({str(x["service"]) for x in out["evidence"]["logs"]}):
        styles[service] = rng.choice(("json", "logfmt", "json", "logfmt", "plain"))
    for entry in out["evidence"]["logs"]:
        style = styles[str(entry["service"])]
        if style == "plain":
            continue
        msg = str(entry["message"])
        wrapped = _wrap(entry, style)
        # Escaping turns `"` and newlines into `\"` and `\n`; a key containing them would
        # no longer be citable, so such a line keeps its original form.
        if all(k in wrapped for k in keys if k in msg):
            entry["message"] = wrapped
    return out, styles


# --------------------------------------------------------------------------- innocent deploy


def add_innocent_deploy(
    doc: Scenario, rng: random.Random, alert_at: datetime, services: list[str]
) -> tuple[Scenario, dict[str, Any] | None]:
    """A release of an unrelated service 3-12 minutes before the alert, with its start-up line."""
    out = copy.deepcopy(doc)
    ev = out["evidence"]
    if len(ev["deployments"]) >= MAX_DEPLOYMENTS:
        return out, None
    service = services[0] if services else (_fresh_services(out, rng, 1) or ["alder-sync"])[0]
    when = (alert_at - timedelta(minutes=rng.uniform(3, 12))).replace(microsecond=0)
    version = f"{rng.randint(1, 14)}.{rng.randint(0, 40)}.{rng.randint(0, 9)}"
    sha = hashlib.sha1(f"{out['id']}:{service}:{version}".encode()).hexdigest()
    deploy = {
        "service": service,
        "sha": sha,
        "ref": f"refs/tags/v{version}",
        "environment": "production",
        "created_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "creator": rng.choice(("ci-bot", "a.kowalski", "m.santos", "release-train")),
        "description": f"{service} v{version}: {rng.choice(_CHANGES)}",
    }
    ev["deployments"].append(deploy)
    ev["deployments"].sort(key=lambda d: d["created_at"])
    if len(ev["logs"]) < MAX_LOGS:
        like = str(ev["logs"][0]["timestamp"]) if ev["logs"] else "2000-01-01T00:00:00.000Z"
        ev["logs"].append(
            {
                "timestamp": _format_ts(when + timedelta(seconds=rng.randint(20, 90)), like),
                "service": service,
                "level": "INFO",
                "message": f"{service} {version} started (commit {sha[:7]})",
            }
        )
        ev["logs"].sort(key=lambda x: _parse_ts(x["timestamp"]))
    return out, deploy


# --------------------------------------------------------------------------- clock shift


def _restamp_text(text: str, when: datetime) -> str:
    """ISO times written inside a borrowed line take the time the line is placed at."""

    def repl(m: re.Match[str]) -> str:
        _date, sep, _clock, frac, zone = m.groups()
        stamp = f"{when:%Y-%m-%d}{sep}{when:%H:%M:%S}"
        if frac:
            stamp += frac[0] + f"{when.microsecond:06d}"[: len(frac) - 1].ljust(len(frac) - 1, "0")
        return stamp + (zone or "")

    return _ISO_IN_TEXT.sub(repl, text)


def _shift_text(text: str, delta: timedelta) -> str:
    def repl(m: re.Match[str]) -> str:
        date, sep, clock, frac, zone = m.groups()
        try:
            when = datetime.fromisoformat(f"{date}T{clock}") + delta
        except ValueError:
            return m.group(0)
        return f"{when:%Y-%m-%d}{sep}{when:%H:%M:%S}{frac or ''}{zone or ''}"

    return _ISO_IN_TEXT.sub(repl, text)


def _shift_alert_value(text: str, key: str | None, delta: timedelta) -> str:
    if text.startswith("0001-"):
        return text  # Alertmanager's "not resolved" marker is not a time.
    if _RFC3339_FULL.fullmatch(text):
        return _format_ts(_parse_ts(text) + delta, text)
    if key in ("date", "last_updated") and text.isdigit() and len(text) >= 12:
        return str(int(text) + int(delta.total_seconds() * 1000))
    return _shift_text(text, delta)


def shift_clock(doc: Scenario, rng: random.Random) -> tuple[Scenario, timedelta]:
    """Move every timestamp by one offset; times written inside messages move too."""
    delta = timedelta(days=rng.randint(-300, 300), minutes=rng.randint(-720, 720))
    if not delta:
        delta = timedelta(days=1)
    out = copy.deepcopy(doc)
    out["alert"] = _walk_strings(out["alert"], lambda t, k: _shift_alert_value(t, k, delta))
    ev = out["evidence"]
    for entry in ev["logs"]:
        entry["timestamp"] = _format_ts(_parse_ts(entry["timestamp"]) + delta, entry["timestamp"])
    for dep in ev["deployments"]:
        dep["created_at"] = _format_ts(_parse_ts(dep["created_at"]) + delta, dep["created_at"])
    shifted_msgs = [_shift_text(str(x["message"]), delta) for x in ev["logs"]]
    shifted_keys = [_shift_text(k, delta) for k in _keys(out)]
    # A key holding only part of a timestamp (a bare "11:24:31") would no longer match a
    # shifted message, so messages keep their embedded times in that case.
    if all(any(k in m for m in shifted_msgs) for k in shifted_keys):
        for entry, msg in zip(ev["logs"], shifted_msgs, strict=True):
            entry["message"] = msg
        out["expected"]["evidence_keys"] = shifted_keys
    return out, delta


# --------------------------------------------------------------------------- driver


def perturb_scenario(
    doc: Scenario,
    seed: int,
    alert_time: AlertTime,
    pool: list[Scenario] | None = None,
    kinds: Iterable[str] = KINDS,
) -> tuple[Scenario, dict[str, Any]]:
    """One scenario rewritten by the selected steps; returns it and a record of what changed."""
    chosen = set(kinds)
    unknown = chosen - set(KINDS)
    if unknown:
        raise ValueError(f"unknown perturbation(s) {sorted(unknown)}; choose from {', '.join(KINDS)}")
    sid = str(doc["id"])
    out = copy.deepcopy(doc)
    record: dict[str, Any] = {"id": sid}
    if "rename" in chosen:
        out, record["renamed"] = rename_services(out, _rng(seed, sid, "rename"))
    if "paraphrase" in chosen:
        out = paraphrase(out, _rng(seed, sid, "paraphrase"))
    noise_services: list[str] = []
    if "noise" in chosen:
        out, noise_services = add_noise(out, _rng(seed, sid, "noise"), pool or [])
        record["noise_services"] = noise_services
    if "log_format" in chosen:
        out, record["log_formats"] = reformat_logs(out, _rng(seed, sid, "log_format"))
    if "innocent_deploy" in chosen:
        out, record["innocent_deploy"] = add_innocent_deploy(
            out, _rng(seed, sid, "innocent_deploy"), alert_time(out), noise_services
        )
    if "clock_shift" in chosen:
        out, delta = shift_clock(out, _rng(seed, sid, "clock_shift"))
        record["clock_shift_minutes"] = int(delta.total_seconds() // 60)
    return out, record


def perturb_scenarios(
    scenarios: list[Scenario], seed: int, alert_time: AlertTime, kinds: Iterable[str] = KINDS
) -> tuple[list[Scenario], list[dict[str, Any]]]:
    """Every scenario perturbed; noise for each comes from the others in the list."""
    kinds = tuple(kinds)
    pairs = [perturb_scenario(s, seed, alert_time, scenarios, kinds) for s in scenarios]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def compare_totals(
    original: dict[str, Any], perturbed: dict[str, Any], fields: Iterable[str]
) -> dict[str, float]:
    """Perturbed minus original, in percentage points, per field."""
    return {f: round((float(perturbed[f]) - float(original[f])) * 100, 1) for f in fields}


def format_comparison(
    original: dict[str, Any],
    perturbed: dict[str, Any],
    fields: Iterable[str],
    seed: int,
    kinds: Iterable[str],
) -> str:
    fields = list(fields)
    diff = compare_totals(original, perturbed, fields)
    lines = [
        f"perturbed (seed {seed}: {', '.join(kinds)})",
        f"{'field':<22} {'original':>9} {'perturbed':>10} {'diff':>7}",
    ]
    for f in fields:
        lines.append(f"{f:<22} {original[f] * 100:>8.1f}% {perturbed[f] * 100:>9.1f}% {diff[f]:>+7.1f}")
    lines.append(
        f"{'confident_wrong':<22} {original['confident_wrong']:>4}/{original['confident_answers']:<4}"
        f" {perturbed['confident_wrong']:>5}/{perturbed['confident_answers']:<4}"
    )
    return "\n".join(lines)
