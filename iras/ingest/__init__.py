"""Turn a webhook payload into normalised alerts.

`normalize(payload, source)` detects the source from the payload's shape when
`source` is None. Source adapters live one per module in this package.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from iras.schemas import NormalizedAlert


class PayloadError(ValueError):
    """The payload cannot be turned into alerts; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def stable_fingerprint(source: str, service: str | None, title: str) -> str:
    return hashlib.sha256(f"{source}\x1f{service or ''}\x1f{title}".encode()).hexdigest()[:32]


def _generic(payload: dict[str, Any]) -> list[NormalizedAlert]:
    title = payload.get("title")
    if not isinstance(title, str) or not title.strip():
        raise PayloadError("title", "required, a non-empty string")
    ts = payload.get("timestamp")
    if not isinstance(ts, str):
        raise PayloadError("timestamp", "required, an RFC 3339 string")
    try:
        timestamp = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError as exc:
        raise PayloadError("timestamp", f"not an RFC 3339 timestamp: {ts[:64]!r}") from exc
    service = payload.get("service")
    if service is not None and not isinstance(service, str):
        raise PayloadError("service", "must be a string")
    status = payload.get("status", "firing")
    if status not in ("firing", "resolved"):
        status = "resolved" if str(status).lower() in ("ok", "resolved", "recovered") else "firing"
    severity = payload.get("severity")
    try:
        return [
            NormalizedAlert(
                source="generic",
                title=title.strip(),
                timestamp=timestamp,
                status=status,
                severity_hint=str(severity) if severity is not None else None,
                service=service,
                description=str(payload["description"]) if "description" in payload else None,
                labels={k: str(v) for k, v in (payload.get("labels") or {}).items()}
                if isinstance(payload.get("labels"), dict)
                else {},
                fingerprint=str(payload["fingerprint"])
                if isinstance(payload.get("fingerprint"), str | int)
                else stable_fingerprint("generic", service, title.strip()),
                raw=payload,
            )
        ]
    except ValidationError as exc:
        err = exc.errors()[0]
        raise PayloadError(".".join(str(p) for p in err["loc"]) or "payload", err["msg"]) from exc


ADAPTERS = {"generic": _generic}


def detect_source(payload: dict[str, Any]) -> str:
    return "generic"


def normalize(payload: Any, source: str | None = None) -> list[NormalizedAlert]:
    if not isinstance(payload, dict):
        raise PayloadError("payload", "must be a JSON object")
    name = source or detect_source(payload)
    adapter = ADAPTERS.get(name)
    if adapter is None:
        raise PayloadError("source", f"unknown source {name!r}; known: {', '.join(sorted(ADAPTERS))}")
    return adapter(payload)
