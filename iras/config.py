"""Settings: one validated object, read from the environment and `.env`.

A bad value stops the process at start-up with a message naming the variable,
instead of failing on the first incident at 3 AM.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- storage and queues -------------------------------------------------
    database_url: str = "sqlite:///iras.db"
    celery_broker_url: str = "memory://"
    celery_result_backend: str | None = None
    public_url: str = "http://127.0.0.1:8080"

    # --- analysis -----------------------------------------------------------
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    analyst: Literal["auto", "offline", "claude"] = "auto"
    rca_confidence_threshold: float = Field(0.7, ge=0.0, le=1.0)
    rca_max_attempts: int = Field(3, ge=1, le=10)
    evidence_window_minutes: int = Field(30, ge=1)

    # --- approval -----------------------------------------------------------
    approval_timeout_p0_minutes: float = Field(15, gt=0)
    approval_timeout_default_minutes: float = Field(120, gt=0)
    stuck_after_seconds: int = Field(300, ge=5)
    beat_interval_seconds: float = Field(30, gt=0)

    # --- remediation --------------------------------------------------------
    remediation_executor: Literal["dry-run", "shell"] = "dry-run"
    remediation_allowed_commands: CommaList = Field(
        default_factory=lambda: ["kubectl", "helm", "systemctl", "echo", "true", "false"]
    )
    remediation_step_timeout_seconds: float = Field(300, gt=0)

    # --- ingestion ----------------------------------------------------------
    max_payload_bytes: int = Field(1024 * 1024, ge=1024)

    # --- integrations (unset -> mock client) --------------------------------
    prometheus_url: str | None = None
    loki_url: str | None = None
    elasticsearch_url: str | None = None
    github_token: str | None = None
    github_api_url: str = "https://api.github.com"
    slack_bot_token: str | None = None
    slack_channel: str = "#incidents"
    slack_signing_secret: str | None = None
    slack_approver_ids: CommaList = Field(default_factory=list)
    pagerduty_routing_key: str | None = None
    pagerduty_events_url: str = "https://events.pagerduty.com/v2/enqueue"
    http_timeout_seconds: float = Field(10, gt=0)

    _split = field_validator("remediation_allowed_commands", "slack_approver_ids", mode="before")(
        _split_commas
    )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def embedded_broker(self) -> bool:
        return self.celery_broker_url.startswith("memory://")

    def approval_timeout_minutes(self, severity: str | None) -> float:
        if severity == "P0":
            return self.approval_timeout_p0_minutes
        return self.approval_timeout_default_minutes

    @property
    def use_claude(self) -> bool:
        if self.analyst == "offline":
            return False
        if self.analyst == "claude":
            return True
        return bool(self.anthropic_api_key)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment)."""
    get_settings.cache_clear()
