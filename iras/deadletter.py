"""The dead-letter table: webhook bodies the adapters rejected, kept with the
error so an operator can see what a sender posts, fix the sender or the adapter,
and replay them (`iras alerts replay`).

Only requests that passed the token check and the rate limit reach `store()`
(see iras/web/webhooks.py), and each body is cut to DEAD_LETTER_MAX_BYTES, so an
anonymous client cannot fill the database through this table.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from iras.config import get_settings
from iras.ingest import PayloadError
from iras.ingest import store as ingest_store
from iras.models import DeadLetter
from iras.schemas import utcnow

log = logging.getLogger(__name__)


def _bounded_text(raw: bytes, limit: int) -> tuple[str, bool]:
    """The body as text, at most `limit` bytes of it. Invalid UTF-8 and NUL (which
    PostgreSQL text cannot hold, and valid JSON never contains raw) become U+FFFD."""
    truncated = len(raw) > limit
    text = raw[:limit].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    return text, truncated


def store(
    session: Session,
    *,
    source: str | None,
    error: str,
    field: str | None,
    raw: bytes,
    content_type: str | None,
) -> int:
    """Write one dead letter and commit. Returns its id."""
    text, truncated = _bounded_text(raw, get_settings().dead_letter_max_bytes)
    row = DeadLetter(
        received_at=utcnow(),
        source=source.strip().lower()[:32] if source else None,
        error=error[:2000],
        field=field[:255] if field else None,
        content_type=content_type[:255] if content_type else None,
        raw_body=text,
        body_bytes=len(raw),
        truncated=truncated,
        replay_count=0,
    )
    session.add(row)
    session.commit()
    return int(row.id)


@dataclass
class ReplayResult:
    id: int
    ok: bool
    incident_id: str | None = None
    status: str | None = None
    error: str | None = None
    field: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _claim(session: Session, row: DeadLetter) -> bool:
    """Compare-and-set on replay_count, so two operators replaying at once do
    not ingest the same body twice."""
    result = session.execute(
        update(DeadLetter)
        .where(DeadLetter.id == row.id, DeadLetter.replay_count == row.replay_count)
        .values(replay_count=DeadLetter.replay_count + 1)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined]


def replay_one(session: Session, row: DeadLetter, source: str | None = None) -> ReplayResult:
    """Run ingestion again on a stored body (with `source` overriding the stored one),
    through the webhook's implementation (`iras.ingest.store`).

    Success sets `replayed_at`; a failure keeps the row dead, with the new error
    in `replay_result`, so it can be replayed again after the next fix.
    """
    row_id = int(row.id)
    if not _claim(session, row):
        return ReplayResult(row_id, False, error="being replayed by someone else")
    result: ReplayResult
    if row.truncated:
        result = ReplayResult(
            row_id, False, error=f"body was cut at {len(row.raw_body)} characters; cannot replay"
        )
    else:
        try:
            body = json.loads(row.raw_body)
        except (ValueError, RecursionError) as exc:
            result = ReplayResult(row_id, False, error=f"body is not valid JSON: {str(exc)[:200]}")
        else:
            try:
                outcome = ingest_store.ingest(body, source or row.source)
            except PayloadError as exc:
                result = ReplayResult(row_id, False, error=exc.message, field=exc.field)
            else:
                result = ReplayResult(row_id, True, incident_id=outcome.incident_id, status=outcome.status)
    values: dict[str, Any] = {"replay_result": result.as_dict()}
    if result.ok:
        values["replayed_at"] = utcnow()
    session.execute(update(DeadLetter).where(DeadLetter.id == row_id).values(**values))
    session.commit()
    return result


def replay(
    session: Session, *, ids: list[int] | None = None, source: str | None = None, limit: int = 1000
) -> list[ReplayResult]:
    """Replay the given rows (even ones already replayed), or every row not yet
    replayed successfully, oldest first."""
    query = select(DeadLetter).order_by(DeadLetter.id)
    if ids:
        query = query.where(DeadLetter.id.in_(ids))
    else:
        query = query.where(DeadLetter.replayed_at.is_(None)).limit(limit)
    rows = list(session.scalars(query))
    found = {int(r.id) for r in rows}
    results = [ReplayResult(i, False, error="no such dead letter") for i in (ids or []) if i not in found]
    for row in rows:
        results.append(replay_one(session, row, source))
    return sorted(results, key=lambda r: r.id)


def listing(session: Session, *, include_replayed: bool = False, limit: int = 50) -> list[DeadLetter]:
    """Newest first."""
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
    if not include_replayed:
        query = query.where(DeadLetter.replayed_at.is_(None))
    return list(session.scalars(query))


# --------------------------------------------------------------------------- `iras alerts`


def add_alerts_arguments(parser: Any) -> None:
    """`iras alerts dead-letters` and `iras alerts replay` (parser: an argparse parser)."""
    sub = parser.add_subparsers(dest="alerts_command", required=True)
    dl = sub.add_parser("dead-letters", help="list rejected webhook bodies (newest first)")
    dl.add_argument("--all", action="store_true", help="include rows already replayed")
    dl.add_argument("--limit", type=int, default=50)
    dl.add_argument("--show", type=int, metavar="ID", help="print one row in full, body included")
    rp = sub.add_parser("replay", help="run ingestion again on dead letters")
    target = rp.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--id", type=int, action="append", dest="ids", metavar="N", help="this row (repeatable)"
    )
    target.add_argument("--all", action="store_true", help="every row not replayed yet")
    rp.add_argument("--source", help="adapter to use instead of the stored one (e.g. alertmanager)")


def main_alerts(args: Any) -> int:
    from iras.db import new_session

    with new_session() as session:
        if args.alerts_command == "replay":
            results = replay(session, ids=args.ids, source=args.source)
            for r in results:
                if r.ok:
                    print(f"{r.id}: ok, incident {r.incident_id} ({r.status})")
                else:
                    print(f"{r.id}: FAILED {('[' + r.field + '] ') if r.field else ''}{r.error}")
            if not results:
                print("nothing to replay")
            return 0 if all(r.ok for r in results) else 1
        if args.show is not None:
            row = session.get(DeadLetter, args.show)
            if row is None:
                print(f"no dead letter {args.show}")
                return 1
            doc = {c.name: getattr(row, c.name) for c in DeadLetter.__table__.columns if c.name != "raw_body"}
            print(json.dumps(doc, default=str, indent=2))
            print(row.raw_body)
            return 0
        rows = listing(session, include_replayed=args.all, limit=args.limit)
        # Errors and sizes only: bodies can be large and hold secrets; --show prints one.
        print(f"{'ID':<8} {'RECEIVED (UTC)':<20} {'SOURCE':<13} {'BYTES':>8} {'REPLAYS':>7}  FIELD: ERROR")
        for row in rows:
            field = f"{row.field}: " if row.field else ""
            print(
                f"{row.id:<8} {row.received_at:%Y-%m-%d %H:%M:%S} {row.source or '(detect)':<13} "
                f"{row.body_bytes:>8} {row.replay_count:>7}  {field}{row.error[:120]}"
            )
        if not rows:
            print("no dead letters")
        return 0
