"""Source adapters: native payloads -> NormalizedAlert, shape detection, one incident-key rule.

Twin payloads in tests/payloads/ are in the exact shape each sender POSTs (a
firing notification and the resolved one that follows it); the scenario corpus
(shared/scenarios, or $IRAS_SCENARIOS_DIR) checks every real alert body
normalises with its source detected from shape alone.
"""

from __future__ import annotations

import copy
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from iras.ingest import (
    ADAPTERS,
    KNOWN_SOURCES,
    PayloadError,
    detect_source,
    incident_key,
    normalize,
    stable_fingerprint,
)
from iras.ingest.common import MAX_KEY, labelset_fingerprint, parse_time
from iras.ingest.datadog import parse_tags
from iras.schemas import NormalizedAlert

PAYLOADS = Path(__file__).parent / "payloads"
SCENARIOS = Path(os.environ.get("IRAS_SCENARIOS_DIR", "/work/shared/scenarios"))
SCENARIO_FILES = sorted(SCENARIOS.glob("*.json")) if SCENARIOS.is_dir() else []


def load(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / name).read_text())


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def field_of(payload: Any, source: str | None = None) -> str:
    with pytest.raises(PayloadError) as info:
        normalize(payload, source)
    return info.value.field


# --------------------------------------------------------------------------- scenario corpus


@pytest.mark.skipif(not SCENARIO_FILES, reason=f"no scenario corpus at {SCENARIOS}")
@pytest.mark.parametrize("path", SCENARIO_FILES, ids=[p.stem for p in SCENARIO_FILES])
def test_every_scenario_alert_normalises_with_its_source_detected_from_shape(path: Path) -> None:
    scenario = json.loads(path.read_text())
    body, source = scenario["alert"], scenario["source"]

    assert detect_source(body) == source
    alerts = normalize(body)
    assert alerts, "a firing scenario must yield at least one alert"
    assert [a.model_dump() for a in normalize(body, source)] == [a.model_dump() for a in alerts]
    for alert in alerts:
        assert alert.source == source
        assert alert.status == "firing"
        assert alert.timestamp.tzinfo is not None
        assert alert.fingerprint
        assert incident_key(alert).startswith(f"{source}:")
    if source in ("alertmanager", "grafana"):
        # One incident per group, one fingerprint per alert inside it.
        assert len(alerts) == len(body["alerts"])
        assert {a.group_key for a in alerts} == {body["groupKey"]}
        assert [a.fingerprint for a in alerts] == [item["fingerprint"] for item in body["alerts"]]
        assert len({incident_key(a) for a in alerts}) == 1
    else:
        assert len(alerts) == 1
        assert alerts[0].raw == body


# --------------------------------------------------------------------------- twins

TWINS = [
    ("alertmanager", "alertmanager_firing.json", "alertmanager_resolved.json"),
    ("grafana", "grafana_firing.json", "grafana_resolved.json"),
    ("pagerduty", "pagerduty_firing.json", "pagerduty_resolved.json"),
    ("datadog", "datadog_firing.json", "datadog_resolved.json"),
    ("generic", "generic_firing.json", "generic_resolved.json"),
]


@pytest.mark.parametrize(("source", "firing_file", "resolved_file"), TWINS, ids=[t[0] for t in TWINS])
def test_a_resolved_twin_lands_on_the_same_incident_key_as_its_firing_alert(
    source: str, firing_file: str, resolved_file: str
) -> None:
    firing, resolved = load(firing_file), load(resolved_file)
    assert detect_source(firing) == detect_source(resolved) == source

    fired, cleared = normalize(firing), normalize(resolved)
    assert {a.status for a in fired} == {"firing"}
    assert {a.status for a in cleared} == {"resolved"}
    assert {incident_key(a) for a in fired} == {incident_key(a) for a in cleared}
    assert len({incident_key(a) for a in fired}) == 1
    assert [a.fingerprint for a in fired] == [a.fingerprint for a in cleared]
    # The resolution is a later event than the firing it ends.
    assert min(a.timestamp for a in cleared) > max(a.timestamp for a in fired)


def test_the_payload_files_cover_every_known_source() -> None:
    assert {t[0] for t in TWINS} == set(KNOWN_SOURCES) == set(ADAPTERS)


# --------------------------------------------------------------------------- alertmanager


def test_alertmanager_group_yields_one_alert_per_item_sharing_the_group_key() -> None:
    body = load("alertmanager_firing.json")
    alerts = normalize(body)

    assert len(alerts) == 3
    first = alerts[0]
    assert first.source == "alertmanager"
    assert first.title == (
        "CheckoutPodHighErrorRate: checkout-service pod checkout-service-7d9f8b6c5-2xkqp 5xx ratio is 34%"
    )
    assert first.timestamp == datetime(2025, 10, 2, 9, 14, 30, 512000, tzinfo=UTC)
    assert first.severity_hint == "critical"
    assert first.service == "checkout-service"
    assert first.labels["pod"] == "checkout-service-7d9f8b6c5-2xkqp"
    assert first.annotations["runbook_url"] == "https://runbooks.acmeshop.com/checkout/high-error-rate"
    assert first.description.startswith("More than 5% of requests served by checkout-service-7d9f8b6c5-2xkqp")
    assert first.links == [
        body["alerts"][0]["generatorURL"],
        "https://runbooks.acmeshop.com/checkout/high-error-rate",
    ]
    assert [a.fingerprint for a in alerts] == ["5a1c9e0f7b3d2a41", "c04e8d2b91f7a6e3", "e7b2f15a0c6d9384"]
    assert {a.group_key for a in alerts} == {body["groupKey"]}
    assert incident_key(first) == f"alertmanager:{body['groupKey']}"


def test_alertmanager_raw_is_the_item_plus_a_pointer_not_the_whole_group() -> None:
    body = load("alertmanager_firing.json")
    second = normalize(body)[1]

    assert second.raw["pointer"] == "/alerts/1"
    assert second.raw["alert"] == body["alerts"][1]
    assert "alerts" not in second.raw["group"]
    assert second.raw["group"]["groupKey"] == body["groupKey"]
    assert second.raw["group"]["receiver"] == "incident-pipeline"


def test_alertmanager_resolved_alert_is_dated_by_its_end() -> None:
    alerts = normalize(load("alertmanager_resolved.json"))
    assert [a.timestamp for a in alerts] == [
        at("2025-10-02T09:31:30.512Z"),
        at("2025-10-02T09:36:30.512Z"),
        at("2025-10-02T09:36:30.512Z"),
    ]


def test_alertmanager_partial_resolution_keeps_each_alerts_own_status() -> None:
    fired = normalize(load("alertmanager_firing.json"))
    partial = normalize(load("alertmanager_partially_resolved.json"))

    assert [a.status for a in partial] == ["resolved", "firing", "firing"]
    assert [a.fingerprint for a in partial] == [a.fingerprint for a in fired]
    assert {incident_key(a) for a in partial} == {incident_key(fired[0])}
    assert partial[0].timestamp == at("2025-10-02T09:31:30.512Z")
    assert partial[1].timestamp == fired[1].timestamp


def test_alertmanager_nanosecond_timestamps_parse() -> None:
    body = load("alertmanager_firing.json")
    body["alerts"][0]["startsAt"] = "2025-10-02T09:14:30.512345678Z"
    assert normalize(body)[0].timestamp == datetime(2025, 10, 2, 9, 14, 30, 512345, tzinfo=UTC)


def test_alertmanager_alert_without_fingerprint_is_keyed_by_its_label_set() -> None:
    body = load("alertmanager_firing.json")
    for item in body["alerts"]:
        del item["fingerprint"]
    alerts = normalize(body)

    # Same summary on every pod must not collapse three alerts into one.
    assert len({a.fingerprint for a in alerts}) == 3
    reordered = dict(reversed(list(body["alerts"][0]["labels"].items())))
    assert alerts[0].fingerprint == labelset_fingerprint("alertmanager", reordered)


def test_alertmanager_service_falls_back_through_app_container_job_namespace() -> None:
    body = load("alertmanager_firing.json")
    labels = body["alerts"][0]["labels"]
    del labels["service"]
    labels["container"] = "checkout"
    labels["job"] = "kube-state-metrics"
    assert normalize(body)[0].service == "checkout"
    del labels["container"]
    assert normalize(body)[0].service == "kube-state-metrics"
    del labels["job"]
    assert normalize(body)[0].service == "shop"


# --------------------------------------------------------------------------- grafana


def test_grafana_alert_maps_links_labels_and_group() -> None:
    body = load("grafana_firing.json")
    alerts = normalize(body)

    assert [a.source for a in alerts] == ["grafana", "grafana"]
    first = alerts[0]
    assert first.title == "SearchLatencyP99High: search-api p99 latency 2.84s in eu-west-1"
    assert first.service == "search-api"
    assert first.severity_hint == "warning"
    assert first.labels["region"] == "eu-west-1"
    assert first.timestamp == at("2025-11-18T16:42:00Z")
    assert first.links == [
        "https://grafana.acmeshop.com/alerting/grafana/f3a91c7e2/view?orgId=1",
        "https://grafana.acmeshop.com/d/search-api?orgId=1",
        "https://grafana.acmeshop.com/d/search-api?orgId=1&viewPanel=4",
        body["alerts"][0]["silenceURL"],
        "https://runbooks.acmeshop.com/search/latency",
    ]
    assert [a.fingerprint for a in alerts] == ["b9e2d41f07c3a856", "4c71a0e3d9f2b815"]
    assert {a.group_key for a in alerts} == {body["groupKey"]}
    # The group message repeats every alert; it is not copied into each alert's raw.
    assert "message" not in first.raw["group"]
    assert first.raw["alert"]["valueString"].startswith("[ var='B'")


def test_grafana_resolved_notification_is_dated_by_each_end() -> None:
    alerts = normalize(load("grafana_resolved.json"))
    assert [a.timestamp for a in alerts] == [at("2025-11-18T17:05:00Z"), at("2025-11-18T17:06:00Z")]


def test_grafana_alert_without_status_takes_the_group_state() -> None:
    body = load("grafana_resolved.json")
    del body["status"]
    for item in body["alerts"]:
        del item["status"]
    assert {a.status for a in normalize(body)} == {"resolved"}
    body["state"] = "alerting"
    assert {a.status for a in normalize(body)} == {"firing"}


# --------------------------------------------------------------------------- pagerduty


def test_pagerduty_incident_maps_title_service_priority_and_links() -> None:
    body = load("pagerduty_firing.json")
    (alert,) = normalize(body)

    assert alert.source == "pagerduty"
    assert alert.title == "orders-service: 5xx ratio 41% on POST /v2/orders"
    assert alert.timestamp == at("2025-12-09T03:12:44.318Z")
    assert alert.service == "Orders (prod)"
    assert alert.severity_hint == "P1"
    assert alert.fingerprint == "Q2KX7VF3N8BRT1"
    assert alert.group_key is None
    assert incident_key(alert) == "pagerduty:Q2KX7VF3N8BRT1"
    assert alert.links == [
        "https://acmeshop.pagerduty.com/incidents/Q2KX7VF3N8BRT1",
        "https://acmeshop.pagerduty.com/services/PK3N8QW",
    ]
    assert alert.labels["incident_key"] == "7c2f0a9d41e84b6f9a3e5d1c0b8f7a62"
    assert alert.labels["urgency"] == "high"
    assert alert.labels["teams"] == "Fulfillment"
    assert alert.labels["assignees"] == "Mei Tanaka"
    assert alert.labels["client"] == "Prometheus"
    assert alert.raw == body


def test_pagerduty_resolve_is_dated_when_it_happened() -> None:
    (alert,) = normalize(load("pagerduty_resolved.json"))
    assert alert.status == "resolved"
    assert alert.timestamp == at("2025-12-09T03:58:02.907Z")


@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        ("incident.acknowledged", "firing"),
        ("incident.reopened", "firing"),
        ("incident.escalated", "firing"),
        ("incident.priority_updated", "firing"),
        ("incident.resolved", "resolved"),
    ],
)
def test_pagerduty_incident_events_map_to_firing_or_resolved(event_type: str, status: str) -> None:
    body = load("pagerduty_firing.json")
    body["event"]["event_type"] = event_type
    (alert,) = normalize(body)
    assert alert.status == status


def test_pagerduty_events_without_incident_state_yield_nothing() -> None:
    ping = {
        "event": {
            "id": "01F7TQZ0",
            "event_type": "pagey.ping",
            "resource_type": "pagey",
            "occurred_at": "2025-12-09T03:00:00Z",
            "agent": None,
            "client": None,
            "data": {"message": "Hello from your friend Pagey!", "type": "ping"},
        }
    }
    assert detect_source(ping) == "pagerduty"
    assert normalize(ping) == []
    note = load("pagerduty_firing.json")
    note["event"]["event_type"] = "incident.annotated"
    note["event"]["data"] = {
        "incident": {"id": "Q2KX7VF3N8BRT1", "type": "incident_reference"},
        "id": "P7HJ2K1",
        "content": "Rolling back orders-service.",
        "type": "incident_note",
    }
    assert normalize(note) == []


def test_pagerduty_without_incident_id_uses_the_alert_key() -> None:
    body = load("pagerduty_firing.json")
    del body["event"]["data"]["id"]
    (alert,) = normalize(body)
    assert alert.fingerprint == "7c2f0a9d41e84b6f9a3e5d1c0b8f7a62"


# --------------------------------------------------------------------------- datadog


def test_datadog_monitor_maps_tags_scope_and_epoch_date() -> None:
    body = load("datadog_firing.json")
    (alert,) = normalize(body)

    assert alert.source == "datadog"
    assert alert.title == "payments-service 5xx ratio above 10%"
    assert alert.timestamp == datetime.fromtimestamp(1765264380, tz=UTC)
    assert alert.service == "payments-service"
    assert alert.severity_hint == "P1"
    assert alert.fingerprint == "21844930/region:eu-west-1"
    assert incident_key(alert) == "datadog:21844930/region:eu-west-1"
    assert alert.labels == {
        "env": "production",
        "service": "payments-service",
        "team": "payments",
        "region": "eu-west-1",
        "monitor": "",
    }
    assert alert.links == ["https://app.datadoghq.com/event/jump_to?event_id=7403385512938475102"]
    assert alert.description == "5xx ratio on POST /v1/payments is 27.4% in eu-west-1."
    assert alert.annotations["alert_status"].startswith("trace.http.request.errors over region:eu-west-1")
    assert alert.annotations["alert_transition"] == "Triggered"
    assert alert.raw == body


@pytest.mark.parametrize(
    ("transition", "status"),
    [
        ("Triggered", "firing"),
        ("Re-Triggered", "firing"),
        ("Warn", "firing"),
        ("No Data", "firing"),
        ("Recovered", "resolved"),
        ("Warn Recovered", "resolved"),
    ],
)
def test_datadog_transition_decides_the_status(transition: str, status: str) -> None:
    body = load("datadog_firing.json")
    body["alert_transition"] = transition
    assert normalize(body)[0].status == status


def test_datadog_uppercase_template_keys_are_understood() -> None:
    body = {k.upper(): v for k, v in load("datadog_resolved.json").items()}
    assert detect_source(body) == "datadog"
    (alert,) = normalize(body)
    assert alert.status == "resolved"
    assert alert.fingerprint == "21844930/region:eu-west-1"


def test_datadog_scope_order_does_not_change_the_key() -> None:
    body = load("datadog_firing.json")
    body["alert_scope"] = "env:production,service:payments-service"
    first = normalize(body)[0].fingerprint
    body["alert_scope"] = "service:payments-service, env:production"
    assert normalize(body)[0].fingerprint == first == "21844930/env:production,service:payments-service"


def test_datadog_template_without_monitor_id_strips_the_transition_from_the_title() -> None:
    firing, resolved = load("datadog_firing.json"), load("datadog_resolved.json")
    for body in (firing, resolved):
        del body["alert_id"], body["alert_title"]
    assert detect_source(firing) == "datadog"
    (fired,), (cleared,) = normalize(firing), normalize(resolved)

    assert fired.title == cleared.title == "payments-service 5xx ratio above 10%"
    assert (
        fired.fingerprint
        == cleared.fingerprint
        == stable_fingerprint("datadog", "payments-service", fired.title)
    )


def test_datadog_tags_accept_lists_and_repeated_keys() -> None:
    assert parse_tags(["team:a", "team:b", "env:prod", "muted"], "tags") == {
        "team": "a,b",
        "env": "prod",
        "muted": "",
    }


# --------------------------------------------------------------------------- generic


def test_generic_alert_passes_unknown_fields_through_as_annotations() -> None:
    body = load("generic_firing.json")
    (alert,) = normalize(body)

    assert alert.source == "generic"
    assert alert.title == "ledger-reconciler: unmatched settlements 412 (threshold 50)"
    assert alert.timestamp == at("2025-08-14T04:10:00Z")
    assert alert.service == "ledger-reconciler"
    assert alert.severity_hint == "critical"
    assert alert.labels == {"team": "finance-platform", "env": "production"}
    assert alert.annotations["unmatched"] == "412"
    assert alert.annotations["source"] == "recon-cron"
    assert alert.links == ["https://runbooks.acmeshop.com/finance/reconciliation"]
    assert alert.fingerprint == stable_fingerprint("generic", "ledger-reconciler", alert.title)
    assert alert.raw == body


def test_generic_senders_own_fingerprint_wins_over_the_hash() -> None:
    body = load("generic_firing.json")
    body["fingerprint"] = "recon-2025-08-13"
    assert normalize(body)[0].fingerprint == "recon-2025-08-13"


def test_generic_service_comes_from_labels_when_not_top_level() -> None:
    body = load("generic_firing.json")
    del body["service"]
    body["labels"]["service"] = "ledger"
    assert normalize(body)[0].service == "ledger"


@pytest.mark.parametrize(
    ("value", "status"), [("ok", "resolved"), ("RECOVERED", "resolved"), ("alerting", "firing")]
)
def test_generic_status_words_map_to_firing_or_resolved(value: str, status: str) -> None:
    body = load("generic_firing.json")
    body["status"] = value
    assert normalize(body)[0].status == status


# --------------------------------------------------------------------------- malformed and unknown


def _without(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    for key in keys:
        body.pop(key)
    return body


@pytest.mark.parametrize(
    ("mutate", "source", "field"),
    [
        (lambda b: b["alerts"][2].pop("startsAt"), None, "alerts[2].startsAt"),
        (lambda b: b["alerts"][1].update(startsAt="yesterday"), None, "alerts[1].startsAt"),
        (lambda b: b["alerts"][1].update(status="pending"), None, "alerts[1].status"),
        (lambda b: b["alerts"].__setitem__(0, "oops"), None, "alerts[0]"),
        (lambda b: b["alerts"][0].update(labels=["a"]), None, "alerts[0].labels"),
        (lambda b: b["alerts"].clear(), None, "alerts"),
        (lambda b: b.update(version="3"), "alertmanager", "version"),
        (lambda b: b.pop("groupKey"), "alertmanager", "groupKey"),
    ],
)
def test_malformed_alertmanager_payload_names_the_field(mutate: Any, source: str | None, field: str) -> None:
    body = load("alertmanager_firing.json")
    mutate(body)
    assert field_of(body, source) == field


def test_malformed_grafana_alert_names_the_missing_title_field() -> None:
    body = load("grafana_firing.json")
    body["alerts"][1]["labels"].pop("alertname")
    body["alerts"][1]["annotations"].pop("summary")
    assert field_of(body) == "alerts[1].labels.alertname"


@pytest.mark.parametrize(
    ("mutate", "source", "field"),
    [
        (lambda b: b["event"].pop("data"), None, "event.data"),
        (lambda b: b["event"].pop("data"), "pagerduty", "event.data"),
        (lambda b: b["event"]["data"].pop("title"), None, "event.data.title"),
        (lambda b: b["event"].update(occurred_at="soon"), None, "event.occurred_at"),
    ],
)
def test_malformed_pagerduty_payload_names_the_field(mutate: Any, source: str | None, field: str) -> None:
    body = load("pagerduty_firing.json")
    mutate(body)
    assert field_of(body, source) == field


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.update(date="not-a-date"), "date"),
        (lambda b: (b.pop("date"), b.pop("last_updated")), "date"),
        (lambda b: b.update(tags=42), "tags"),
        (lambda b: (b.pop("alert_title"), b.pop("title")), "alert_title"),
    ],
)
def test_malformed_datadog_payload_names_the_field(mutate: Any, field: str) -> None:
    body = load("datadog_firing.json")
    mutate(body)
    assert field_of(body) == field


@pytest.mark.parametrize(
    ("mutate", "source", "field"),
    [
        (lambda b: b.update(timestamp="14/08/2025"), None, "timestamp"),
        (lambda b: b.update(title="  "), "generic", "title"),
        (lambda b: b.update(labels=["team:x"]), None, "labels"),
        (lambda b: b.update(service={"name": "x"}), None, "service"),
    ],
)
def test_malformed_generic_payload_names_the_field(mutate: Any, source: str | None, field: str) -> None:
    body = load("generic_firing.json")
    mutate(body)
    assert field_of(body, source) == field


def test_unknown_shapes_say_what_is_missing() -> None:
    assert field_of({"hello": "world"}) == "payload"
    assert field_of({"title": "disk full"}) == "timestamp"
    am = _without(load("alertmanager_firing.json"), "version")
    assert field_of(am) == "version"
    assert field_of({"alert_id": "42"}) == "alert_transition"
    with pytest.raises(PayloadError, match="Alertmanager"):
        detect_source({"hello": "world"})


@pytest.mark.parametrize("name", ["datadog_firing.json", "grafana_firing.json", "pagerduty_firing.json"])
def test_a_sender_shape_wins_over_generic_even_with_title_and_timestamp(name: str) -> None:
    # Datadog templates often add "timestamp": "$DATE"; the shape must still decide, not the two generic keys.
    body = load(name)
    body.setdefault("title", "x")
    body["timestamp"] = "2025-12-09T07:33:00Z"
    assert detect_source(body) == name.split("_")[0]


def test_non_object_payload_and_unknown_source_name_are_rejected() -> None:
    assert field_of([{"title": "x"}]) == "payload"
    assert field_of(load("generic_firing.json"), "nagios") == "source"


def test_source_named_by_the_route_is_case_insensitive() -> None:
    assert normalize(load("datadog_firing.json"), "Datadog")[0].source == "datadog"


# --------------------------------------------------------------------------- keys and limits


def _alert(**values: Any) -> NormalizedAlert:
    base: dict[str, Any] = {"source": "generic", "title": "t", "timestamp": datetime(2025, 1, 1, tzinfo=UTC)}
    return NormalizedAlert(**(base | values))


def test_incident_key_prefers_the_group_and_is_namespaced_by_source() -> None:
    assert incident_key(_alert(fingerprint="f", group_key="g")) == "generic:g"
    assert incident_key(_alert(fingerprint="f")) == "generic:f"
    # Same sender key from two sources are two incidents.
    assert incident_key(_alert(fingerprint="f")) != incident_key(_alert(source="datadog", fingerprint="f"))
    assert incident_key(_alert()) == "generic:" + stable_fingerprint("generic", None, "t")


def test_long_keys_stay_within_the_index_and_stable() -> None:
    body = load("alertmanager_firing.json")
    body["groupKey"] = "{}/{" + ", ".join(f'label{i}="{"x" * 20}"' for i in range(40)) + "}"
    body["alerts"][0]["fingerprint"] = "f" * 400
    alerts = normalize(body)
    key = incident_key(alerts[0])

    assert len(key) <= MAX_KEY
    assert key == incident_key(normalize(body)[1])
    assert len(alerts[0].fingerprint or "") <= MAX_KEY
    assert alerts[0].fingerprint == normalize(body)[0].fingerprint


def test_an_overlong_title_is_clipped_not_rejected() -> None:
    body = load("generic_firing.json")
    body["title"] = "x" * 5000
    (alert,) = normalize(body)
    assert len(alert.title) == 1000


def test_stable_fingerprint_depends_on_source_service_and_title_only() -> None:
    key = stable_fingerprint("generic", "svc", "title")
    assert key == stable_fingerprint("generic", "svc", "title")
    assert (
        len(
            {key, stable_fingerprint("datadog", "svc", "title"), stable_fingerprint("generic", None, "title")}
        )
        == 3
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1765264380000", datetime.fromtimestamp(1765264380, tz=UTC)),
        (1765264380, datetime.fromtimestamp(1765264380, tz=UTC)),
        ("2025-12-09T08:33:00+01:00", at("2025-12-09T07:33:00Z")),
        ("2025-12-09T07:33:00", at("2025-12-09T07:33:00Z")),
    ],
)
def test_parse_time_accepts_rfc3339_and_epoch_seconds_or_milliseconds(value: Any, expected: datetime) -> None:
    assert parse_time(value, "t") == expected
