"""Helpers every source adapter shares: errors that name the field, time parsing, building the model.

Kept apart from `iras.ingest.__init__` so adapters can import them without a
circular import through the package that imports the adapters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from iras.schemas import NormalizedAlert

# Column and model limits (NormalizedAlert); a sender's value longer than this
# must not turn a real page into a 400.
MAX_KEY = 255
MAX_TITLE = 1000
MAX_SERVICE = 255
MAX_ANNOTATION = 4000

# Labels that name the affected service, most specific first. `container` comes
# before `job` because kube-state-metrics alerts carry job="kube-state-metrics"
# (the exporter, not the victim) next to the container that is failing.
SERVICE_LABELS = (
    "service",
    "service_name",
    "app_kubernetes_io_name",
    "app",
    "application",
    "k8s_app",
    "container",
    "job",
    "namespace",
)


class PayloadError(ValueError):
    """The payload cannot be turned into alerts; `field` names what is wrong (e.g. "alerts[2].startsAt")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def stable_fingerprint(source: str, service: str | None, title: str) -> str:
    """Fallback key for senders without one: same source+service+title -> same incident."""
    return hashlib.sha256(f"{source}\x1f{service or ''}\x1f{title}".encode()).hexdigest()[:32]


def labelset_fingerprint(source: str, labels: Mapping[str, str]) -> str:
    """Key for an Alertmanager-style alert without `fingerprint`: the hash of its label set.

    This is what Alertmanager's own fingerprint is, so two pods crash-looping with
    the same summary stay two alerts instead of collapsing on their shared title.
    """
    canonical = "\x1f".join(f"{k}\x1e{labels[k]}" for k in sorted(labels))
    return hashlib.sha256(f"{source}\x1f{canonical}".encode()).hexdigest()[:32]


def bounded_key(value: str, limit: int = MAX_KEY) -> str:
    """Keep a key within its column; an over-long one becomes a stable hash instead of a 400."""
    if len(value) <= limit:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "\u2026"


def path(parent: str, child: str | int) -> str:
    """Field path as users read it: alerts[2].labels.alertname."""
    if isinstance(child, int):
        return f"{parent}[{child}]"
    return f"{parent}.{child}" if parent else child


def as_dict(value: Any, field: str, *, required: bool = True) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(field, "required, a JSON object" if value is None else "must be a JSON object")
    return value


def as_text(value: Any) -> str:
    """Render a JSON value as a label/annotation string (nested values as compact JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def str_map(value: Any, field: str, *, limit: int | None = None) -> dict[str, str]:
    """A label/annotation object as str -> str; absent or null is empty, anything else not an object is an error."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(field, "must be a JSON object of strings")
    out: dict[str, str] = {}
    for key, item in value.items():
        text = as_text(item)
        out[str(key)] = clip(text, limit) if limit else text
    return out


def optional_str(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise PayloadError(field, "must be a string")


GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


def is_unset_time(value: datetime) -> bool:
    """Go's zero time (0001-01-01T00:00:00Z) is how Alertmanager says "no end yet"."""
    return value.year <= 1


def parse_time(value: Any, field: str) -> datetime:
    """RFC 3339 text, or epoch seconds/milliseconds as a number or numeric string (Datadog's $DATE).

    Always returns an aware datetime; naive text is taken as UTC.
    """
    if isinstance(value, bool) or value is None:
        raise PayloadError(field, "required, an RFC 3339 timestamp or epoch milliseconds")
    if isinstance(value, int | float):
        return _from_epoch(float(value), field)
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(field, "must be an RFC 3339 timestamp or epoch milliseconds")
    text = value.strip()
    try:
        return _from_epoch(float(text), field)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError as exc:
        raise PayloadError(field, f"not an RFC 3339 timestamp: {text[:64]!r}") from exc
    return _on_the_timeline(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC), text, field)


def _on_the_timeline(value: datetime, text: str, field: str) -> datetime:
    """The instant in UTC, within years 2-9998: the pipeline computes windows around
    an alert's time, and `9999-12-31T23:59:59-14:00` or a year-1 instant overflowed
    there (an OverflowError in triage) instead of being refused here. Go's zero
    time stays accepted: it is how Alertmanager says "no end yet"."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise PayloadError(field, f"outside the years 1-9999 once converted to UTC: {text[:64]!r}") from None
    if utc == GO_ZERO_TIME:
        return utc
    if not 1 < utc.year < 9999:
        raise PayloadError(field, f"outside the years 2-9998: {text[:64]!r}")
    return utc


def _from_epoch(number: float, field: str) -> datetime:
    # 1e11 seconds is the year 5138, so anything larger is milliseconds.
    seconds = number / 1000.0 if abs(number) >= 1e11 else number
    try:
        value = datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise PayloadError(field, f"epoch value out of range: {number!r}") from exc
    return _on_the_timeline(value, repr(number), field)


def service_from_labels(labels: Mapping[str, str]) -> str | None:
    for key in SERVICE_LABELS:
        value = labels.get(key)
        if value and value.strip():
            return value.strip()
    return None


def is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def unique_links(values: Iterable[Any]) -> list[str]:
    """http(s) links in order, without duplicates or empty template values."""
    seen: list[str] = []
    for value in values:
        if is_url(value) and value not in seen:
            seen.append(value)
    return seen


def url_annotations(annotations: Mapping[str, str]) -> list[str]:
    """runbook_url, dashboard_url, ...: annotation values that are links."""
    keys = ("url", "link", "runbook", "dashboard")
    return [v for k, v in annotations.items() if any(p in k.lower() for p in keys) and is_url(v)]


def build_alert(field_prefix: str, **values: Any) -> NormalizedAlert:
    """Validate into NormalizedAlert; a model error becomes a PayloadError naming the field."""
    if "title" in values and isinstance(values["title"], str):
        values["title"] = clip(values["title"].strip(), MAX_TITLE)
    if isinstance(values.get("service"), str):
        values["service"] = clip(values["service"], MAX_SERVICE)
    if isinstance(values.get("fingerprint"), str):
        values["fingerprint"] = bounded_key(values["fingerprint"])
    try:
        return NormalizedAlert(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise PayloadError(path(field_prefix, loc) if field_prefix else loc or "payload", err["msg"]) from exc
