"""Settings: one validated object, read from the environment and `.env`.

A bad value stops the process at start-up with a message naming the variable,
instead of failing on the first incident at 3 AM.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from iras.ingest.tokens import parse_webhook_tokens

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- storage and queues -------------------------------------------------
    database_url: str = "sqlite:///iras.db"
    # Server-side prepared statements for the hot statements (iras/prepared.py); off
    # behind a connection pooler in transaction mode (PgBouncer), which drops them.
    db_prepared_statements: bool = True
    celery_broker_url: str = "memory://"
    celery_result_backend: str | None = None
    broker_visibility_timeout_seconds: int = Field(3600, ge=5)
    public_url: str = "http://127.0.0.1:8080"

    # --- analysis -----------------------------------------------------------
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    analyst: Literal["auto", "offline", "claude"] = "auto"
    rca_confidence_threshold: float = Field(0.7, ge=0.0, le=1.0)
    rca_max_attempts: int = Field(3, ge=1, le=10)
    evidence_window_minutes: int = Field(30, ge=1)

    # --- Claude analyst (iras/analysts/claude.py) ---------------------------
    # Fast, cheap stages on Haiku; diagnosis, plan and write-up on Sonnet.
    triage_model: str = Field("claude-haiku-5-5", min_length=1)
    context_model: str = Field("claude-haiku-5-5", min_length=1)
    rca_model: str = Field("claude-sonnet-5-5", min_length=1)
    plan_model: str = Field("claude-sonnet-5-5", min_length=1)
    postmortem_model: str = Field("claude-sonnet-5-5", min_length=1)
    llm_timeout_seconds: float = Field(60, gt=0)
    llm_max_validation_retries: int = Field(2, ge=0, le=5)
    rca_token_budget: int = Field(20000, ge=4000)
    # USD per million tokens, merged over iras.analysts.pricing.DEFAULT_PRICES, e.g.
    # LLM_PRICE_TABLE='{"claude-sonnet-5-5": {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75}}'
    llm_price_table: dict[str, dict[str, float]] = Field(default_factory=dict)

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
    # Seconds a client has to send its whole request body (408 after): a slow sender
    # must not hold a server thread (iras/web/body_guard.py).
    body_read_timeout_seconds: float = Field(10, gt=0, le=600)
    # Secrets for POST /webhook/*: "alertmanager=s1,grafana=s2" (one per source) or one
    # token for every source. Unset = open, said at startup and in /health (iras/web/ingest_guard.py).
    webhook_tokens: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # Per-source token bucket (sustained requests/s, burst); rate 0 disables it. Shared
    # across web worker processes through Redis when CELERY_BROKER_URL is redis://.
    webhook_rate_limit_per_second: float = Field(50, ge=0)
    webhook_rate_limit_burst: int = Field(500, ge=1)
    # Bytes of a rejected webhook body kept in the dead-letter table (the rest is cut).
    dead_letter_max_bytes: int = Field(256 * 1024, ge=1024)

    @field_validator("webhook_tokens", mode="before")
    @classmethod
    def _parse_webhook_tokens(cls, value: object) -> object:
        return parse_webhook_tokens(value)

    # --- access control and the console (iras/auth.py) -----------------------
    # Off in the embedded default so `iras run` works out of the box; production
    # sets AUTH_ENABLED=true (docs, docker-compose). The console and /health say
    # plainly when it is off.
    auth_enabled: bool = False
    # Signs the console session cookie. Unset: a random key per process (logged as
    # a warning), so sessions end at restart and differ between web worker processes.
    secret_key: str | None = Field(None, min_length=32)
    console_session_hours: float = Field(12, gt=0)
    # Celery workers serve /metrics on this port when set (the web app serves its own).
    worker_metrics_port: int | None = Field(None, ge=1, le=65535)

    # --- integrations -------------------------------------------------------
    # An evidence source (logs, metrics, deployments) without its URL or token is
    # "not configured": it returns nothing and the diagnosis says so. The canned
    # evidence of iras/integrations/mock.py (a scenario fixture, or a synthetic demo
    # bundle) is served only with IRAS_MOCK_EVIDENCE=true: tests, `iras demo`,
    # `iras eval` and scripted checks; /health and the console say when it is on.
    mock_evidence: bool = Field(False, validation_alias=AliasChoices("IRAS_MOCK_EVIDENCE", "mock_evidence"))
    # Chat and pager without a token use the recording mocks (nothing leaves the process).
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

    # --- integration details (real clients, iras/integrations/*) -------------
    # The deployment environment IRAS watches (GitHub deployments, PagerDuty details).
    environment: str = Field("production", min_length=1)
    # Transient failures (timeouts, 429, 5xx) are retried this many times in total,
    # sleeping at most this long between tries (Retry-After beyond it is not waited for).
    http_max_attempts: int = Field(3, ge=1, le=10)
    http_max_backoff_seconds: float = Field(8, ge=0)
    # PromQL templates: `$service` is the service name (escaped), `$window` the rate
    # window, `$offset` is "" for the current value and "offset 7d" for the baseline;
    # put `$offset` after every selector. Defaults fit the Prometheus client
    # libraries' HTTP metrics, cAdvisor and kube-state-metrics.
    prometheus_rate_window: str = Field("5m", pattern=r"^[0-9]+(ms|s|m|h|d|w)$")
    prometheus_query_error_rate: str = (
        'sum(rate(http_requests_total{service="$service",code=~"5.."}[$window] $offset))'
        ' / sum(rate(http_requests_total{service="$service"}[$window] $offset))'
    )
    prometheus_query_request_rate: str = 'sum(rate(http_requests_total{service="$service"}[$window] $offset))'
    prometheus_query_latency_p99: str = (
        "histogram_quantile(0.99, sum by (le) "
        '(rate(http_request_duration_seconds_bucket{service="$service"}[$window] $offset)))'
    )
    prometheus_query_cpu: str = (
        'sum(rate(container_cpu_usage_seconds_total{container="$service"}[$window] $offset))'
    )
    prometheus_query_memory: str = 'sum(container_memory_working_set_bytes{container="$service"} $offset)'
    prometheus_query_restarts: str = (
        'sum(increase(kube_pod_container_status_restarts_total{container="$service"}[$window] $offset))'
    )
    # Logs: Loki stream label naming the service, an error/warn line filter (RE2;
    # empty = no filter), and caps so a log storm cannot flood the evidence.
    loki_service_label: str = Field("service", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    loki_tenant_id: str | None = None
    log_line_filter: str = "(?i)(error|warn|fatal|panic|exception|traceback|critical)"
    logs_max_lines: int = Field(500, ge=1, le=5000)
    logs_max_message_chars: int = Field(4000, ge=200)
    # Elasticsearch / OpenSearch: ECS field names by default.
    elasticsearch_index: str = "logs-*"
    elasticsearch_api_key: str | None = None
    elasticsearch_timestamp_field: str = "@timestamp"
    elasticsearch_service_field: str = "service.name"
    elasticsearch_level_field: str = "log.level"
    elasticsearch_message_field: str = "message"
    # GitHub: which repository deploys each service, "svc=owner/repo,svc2=owner/repo2".
    github_repos: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    github_max_pages: int = Field(5, ge=1, le=50)
    slack_api_url: str = "https://slack.com/api/"
    pagerduty_source: str = "iras"
    # Kubernetes (iras/integrations/kubernetes.py), read-only: on when KUBECONFIG is set or
    # IRAS runs in a pod (KUBERNETES_SERVICE_HOST); KUBERNETES_ENABLED=false turns it off.
    kubernetes_enabled: bool | None = None
    kubeconfig: str | None = None
    kubernetes_context: str | None = None
    kubernetes_service_host: str | None = None
    # Namespaces to look in (empty: every namespace, which needs the ClusterRole).
    kubernetes_namespaces: CommaList = Field(default_factory=list)
    # Label selector per service, JSON: {"checkout": "app=checkout-web,tier=web"}. Unlisted
    # services: app.kubernetes.io/name=<service>, then app=<service>.
    kubernetes_label_selectors: dict[str, str] = Field(default_factory=dict)
    kubernetes_page_size: int = Field(200, ge=1, le=5000)
    kubernetes_max_pages: int = Field(10, ge=1, le=100)

    @field_validator("database_url")
    @classmethod
    def _installed_postgres_driver(cls, value: str) -> str:
        """`postgres://` and `postgresql://` (as hosting platforms and most docs write
        them) name the driver IRAS ships, psycopg2: SQLAlchemy 2.1 reads a bare
        `postgresql://` as psycopg 3, which is not installed, and `postgres://` not at all."""
        scheme, sep, rest = value.partition("://")
        if sep and scheme in ("postgres", "postgresql"):
            return f"postgresql+psycopg2://{rest}"
        return value

    @field_validator(
        "prometheus_query_error_rate",
        "prometheus_query_request_rate",
        "prometheus_query_latency_p99",
        "prometheus_query_cpu",
        "prometheus_query_memory",
        "prometheus_query_restarts",
    )
    @classmethod
    def _has_offset(cls, value: str) -> str:
        # Without `$offset` the "7 days ago" baseline would silently equal the current value.
        if "$offset" not in value:
            raise ValueError("the PromQL template must contain $offset after each selector")
        return value

    @field_validator("github_repos", mode="before")
    @classmethod
    def _parse_repo_map(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        repos: dict[str, str] = {}
        for part in value.split(","):
            if not part.strip():
                continue
            service, sep, repo = part.partition("=")
            owner, slash, name = repo.strip().partition("/")
            if not sep or not service.strip() or not slash or not owner or not name or "/" in name:
                raise ValueError(f"expected service=owner/repo, got {part.strip()!r}")
            repos[service.strip()] = f"{owner}/{name}"
        return repos

    _split = field_validator(
        "remediation_allowed_commands", "slack_approver_ids", "kubernetes_namespaces", mode="before"
    )(_split_commas)

    @field_validator("llm_price_table")
    @classmethod
    def _known_price_keys(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        # A misspelt key ("ouput") would otherwise price those tokens at zero.
        from iras.analysts.pricing import validate_price_table

        return validate_price_table(value)

    @property
    def kubernetes_configured(self) -> bool:
        if self.kubernetes_enabled is not None:
            return self.kubernetes_enabled
        return bool(self.kubeconfig or self.kubernetes_service_host)

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


def redact_url(url: str) -> str:
    """The URL without its credentials, query string and fragment (where passwords and
    API keys travel): safe for start-up lines, logs and evidence. The host keeps its
    port and IPv6 brackets; `sqlite:///iras.db` and `memory://` stay as they are."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else f"{host}{parts.path}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment)."""
    get_settings.cache_clear()


def restore_environ(saved: Mapping[str, str | None]) -> None:
    """Put back environment variables saved as `{name: value or None}`, then re-read settings.

    The demo and the eval pipeline run IRAS in-process on settings of their own and must
    leave the caller's environment as they found it."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    reset_settings()
