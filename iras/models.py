"""Database tables (SQLAlchemy 2.x). History is append-only: `transitions` is the
audit trail and the post-mortem timeline; `stage_results` keeps every attempt.

At most one *open* incident per fingerprint is enforced by the database itself
(a partial unique index, supported by both PostgreSQL and SQLite), so two
concurrent duplicates cannot both open an incident.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from iras.postmortem import render_markdown
from iras.schemas import PostMortem, utcnow
from iras.states import TERMINAL

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on PostgreSQL (compact, indexable), JSON text on SQLite.
JsonType = JSON().with_variant(JSONB(), "postgresql")
# SQLite has no BIGINT autoincrement: INTEGER PRIMARY KEY is its rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend. SQLite stores no offset and
    hands back naive values, which would break comparisons with aware ones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


_terminal_sql = ", ".join(f"'{s.value}'" for s in sorted(TERMINAL))
OPEN_INCIDENT_WHERE = text(f"status NOT IN ({_terminal_sql})")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def new_id() -> str:
    return str(uuid.uuid4())


class Incident(Base):
    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    status: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str | None] = mapped_column(String(2))
    title: Mapped[str] = mapped_column(Text)
    service: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(32))
    fingerprint: Mapped[str] = mapped_column(String(255))
    alert_count: Mapped[int] = mapped_column(Integer, default=1)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    rca_attempts: Mapped[int] = mapped_column(Integer, default=0)
    plan_id: Mapped[int | None] = mapped_column(BigId)
    approval_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decided_via: Mapped[str | None] = mapped_column(String(16))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decision_reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(32))
    notify_ref: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        Index("ix_incidents_status_updated_at", "status", "updated_at"),
        Index("ix_incidents_created_at", "created_at"),
        Index("ix_incidents_service", "service"),
        Index(
            "ix_incidents_awaiting_deadline",
            "approval_deadline",
            postgresql_where=text("status = 'awaiting_approval'"),
            sqlite_where=text("status = 'awaiting_approval'"),
        ),
        Index(
            "uq_incidents_open_fingerprint",
            "fingerprint",
            unique=True,
            postgresql_where=OPEN_INCIDENT_WHERE,
            sqlite_where=OPEN_INCIDENT_WHERE,
        ),
    )


class AlertEvent(Base):
    """Every alert received, with the request body it came in (`raw`). The
    incident's own payload is the `raw` of its first alert event: kept here, not
    in the incident row that every state change rewrites (migration 0007). An
    alert that arrived in the same request as an earlier one has `raw` null."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[str | None] = mapped_column(String(255))
    alert: Mapped[dict[str, Any]] = mapped_column(JsonType)
    raw: Mapped[dict[str, Any] | None] = mapped_column(JsonType)


class StageResult(Base):
    __tablename__ = "stage_results"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    result: Mapped[dict[str, Any]] = mapped_column(JsonType)
    analyst: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(64))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_creation_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    note: Mapped[str | None] = mapped_column(Text)
    # What the analyst reported beside the result (verification report, budget stats).
    details: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("incident_id", "stage", "attempt", name="uq_stage_results_attempt"),)


class Transition(Base):
    __tablename__ = "transitions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    event: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(255), default="iras")
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JsonType)


class StepRun(Base):
    """One execution (or rollback) of one plan step. Written as `running` before
    the command starts, so a redelivered task never runs a step twice."""

    __tablename__ = "step_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    plan_id: Mapped[int] = mapped_column(BigId)
    step_order: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))  # apply | rollback
    command: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed | refused | unknown
    exit_code: Mapped[int | None] = mapped_column(Integer)
    output_tail: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rolled_back: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        UniqueConstraint("incident_id", "plan_id", "step_order", "kind", name="uq_step_runs_step"),
    )


class PostMortemRecord(Base):
    __tablename__ = "postmortems"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str | None] = mapped_column(String(2))
    data: Mapped[dict[str, Any]] = mapped_column(JsonType)
    # Post-mortems written before migration 0006 kept a Markdown copy of `data`;
    # newer ones leave it NULL and render it when read (`markdown` below).
    stored_markdown: Mapped[str | None] = mapped_column("markdown", Text)
    analyst: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)

    @property
    def markdown(self) -> str:
        """The post-mortem as Markdown, rendered from `data` (the same text every time)."""
        if self.stored_markdown is not None:
            return self.stored_markdown
        return render_markdown(PostMortem.model_validate(self.data))


class DeadLetter(Base):
    """An ingestion request the adapters rejected (unknown source, a missing or
    malformed field), kept with its error so an operator can inspect it, fix the
    adapter or the sender, and replay it (`iras alerts replay`).

    Only requests that passed authentication and the rate limit are stored, and
    the body is truncated to a bound, so this table cannot be flooded by anyone.
    """

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    source: Mapped[str | None] = mapped_column(String(32))  # the route's source, None = auto-detect
    error: Mapped[str] = mapped_column(Text)
    field: Mapped[str | None] = mapped_column(String(255))
    content_type: Mapped[str | None] = mapped_column(String(255))
    raw_body: Mapped[str] = mapped_column(Text)
    body_bytes: Mapped[int] = mapped_column(Integer)  # size before truncation
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    replay_count: Mapped[int] = mapped_column(Integer, default=0)
    replay_result: Mapped[dict[str, Any] | None] = mapped_column(JsonType)


class ApiToken(Base):
    """An API / console token. Only the SHA-256 of the token is stored: a leaked
    database (or backup) does not leak usable credentials. Tokens are 256-bit
    random strings, so a fast hash is enough (no password stretching needed).
    Revoked tokens are kept (revoked_at set) so the audit trail keeps its names."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # viewer | approver | admin
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to recognise a token in lists
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ConsoleSession(Base):
    """A console sign-in. The cookie holds a random session id; only its SHA-256 is
    stored. Sign-out sets revoked_at, so a copy of the cookie stops working at once
    instead of when it expires."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[int] = mapped_column(BigId, ForeignKey("api_tokens.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
