"""The Claude analyst: every stage in tool mode, typed, budgeted and verified.

Each stage sends one Messages API request in tool mode: the stage's Pydantic
model is forced as the only tool, the answer is validated against it, and the
model is re-asked with the validation error up to `llm_max_validation_retries`
times. That is instructor's TOOLS mode, request for request (the same tool
definition from instructor's schema generator, the same `tool_choice`, the same
re-ask turns), done here on the anthropic SDK directly: instructor rebuilds the
response model and its JSON schema on every call (~25% of a stage's CPU, which
under 200 concurrent incidents is GIL time every thread waits for), while the
tool definition depends only on the stage model and is built once per process
(`stage_tool`). Around that:

* **Failures by kind.** Overload, rate limits, 5xx, timeouts and connection
  errors raise `TransientAnalystError` (with the server's `retry-after`), so the
  Celery task retries with backoff; the SDK's own retries are off so there is
  one retry policy, not two multiplied together. An answer that still fails
  validation, a truncated answer, or a request the API refuses (auth,
  permission, bad request) is not going to improve by retrying: that stage
  falls back to the offline analyst, and the result says so (`analyst="offline"`,
  `note="fallback from claude: <reason>"`).
* **Budget.** The RCA prompt is built to stay under `rca_token_budget` input
  tokens, re-asks included (`iras.analysts.budget`).
* **Verification.** RCA citations and culprit deployments are checked against
  the evidence actually sent; plans go through `verify_plan` (`iras.analysts.verify`).
* **Cost and observability.** Token usage (summed over the re-asks) and
  latency are returned with every stage result, and every call is logged on
  `iras.llm` with structured fields.
"""

from __future__ import annotations

import email.utils
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import anthropic
from instructor.processing.schema import generate_anthropic_schema
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from iras.analysts import verify
from iras.analysts.base import IncidentFacts, PostMortemInput, StageOutput, TransientAnalystError
from iras.analysts.budget import CHARS_PER_TOKEN, build_evidence, estimate_tokens
from iras.analysts.pricing import Usage, estimate_cost_usd, price_table
from iras.analysts.prompts import plan as plan_prompt
from iras.analysts.prompts import postmortem as postmortem_prompt
from iras.analysts.prompts import rca as rca_prompt
from iras.analysts.prompts import triage as triage_prompt
from iras.schemas import ContextBundle, PostMortem, RemediationPlan, RootCauseHypothesis, TriageResult

if TYPE_CHECKING:
    from iras.config import Settings

log = logging.getLogger("iras.llm")

M = TypeVar("M", bound=BaseModel)

# Output ceilings per stage. They also size the re-ask reserve in the RCA budget:
# each re-ask resends the previous answer (at most this long) plus the error.
MAX_OUTPUT_TOKENS: dict[str, int] = {"triage": 1024, "rca": 2048, "plan": 2048, "postmortem": 2048}
REASK_ERROR_TOKENS = 600  # instructor's validation-error message in a re-ask
TOOL_ENVELOPE_TOKENS = 200  # tool name/description and request framing around the schema
MAX_RETRY_AFTER_SECONDS = 3600.0
ALERT_SHARE = 0.2  # of the RCA budget, at most, for the alert block
MIN_EVIDENCE_TOKENS = 1000


class _Fallback(Exception):
    """Internal: this stage should be answered by the offline analyst."""

    def __init__(self, reason: str, usage: Usage, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.usage = usage
        self.attempts = attempts


@dataclass
class _Call:
    result: Any
    usage: Usage
    latency_ms: float
    attempts: int


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` / `retry-after` (seconds or an HTTP date)."""
    if not headers:
        return None
    value: float | None = None
    raw_ms = headers.get("retry-after-ms")
    raw = headers.get("retry-after")
    try:
        if raw_ms is not None:
            value = float(raw_ms) / 1000
        elif raw is not None:
            value = float(raw)
    except ValueError:
        value = None
    if value is None and raw:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            value = (when - datetime.now(UTC)).total_seconds()
    if value is None:
        return None
    # A hostile or broken header must not park an incident for a day.
    return max(0.0, min(value, MAX_RETRY_AFTER_SECONDS))


def _usage_of(raw: Any) -> Usage:
    if raw is None:
        return Usage()
    return Usage(
        input_tokens=int(getattr(raw, "input_tokens", 0) or 0),
        output_tokens=int(getattr(raw, "output_tokens", 0) or 0),
        cache_read_tokens=int(getattr(raw, "cache_read_input_tokens", 0) or 0),
        cache_creation_tokens=int(getattr(raw, "cache_creation_input_tokens", 0) or 0),
    )


def _short(text: object, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


def _is_transient(exc: anthropic.APIError) -> bool:
    if isinstance(exc, anthropic.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, anthropic.APIStatusError):
        # The statuses the SDK itself would retry: timeout, conflict, rate limit, overload, 5xx.
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def _api_error_reason(exc: anthropic.APIError) -> str:
    if isinstance(exc, anthropic.APIStatusError):
        detail = exc.api_message or exc.type or exc.message
        return f"{type(exc).__name__} {exc.status_code}: {_short(detail, 200)}"
    return f"{type(exc).__name__}: {_short(exc.message, 200)}"


_clients: dict[tuple[str, str | None, float], anthropic.Anthropic] = {}
_clients_lock = threading.Lock()


def shared_client(api_key: str, base_url: str | None, timeout: float) -> anthropic.Anthropic:
    """One Messages API client per (key, base URL, timeout) per process.

    Building one costs ~100 ms and opens its own connection pool; the pipeline
    builds an analyst per stage task, so without sharing every stage would pay
    that and leak a pool. The underlying HTTP client is thread-safe.
    """
    key = (api_key, base_url, timeout)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = anthropic.Anthropic(
                api_key=api_key,
                base_url=base_url,
                timeout=timeout,
                max_retries=0,  # Celery owns retries (with backoff that honours retry-after)
            )
        return client


# --------------------------------------------------------------------------- tool mode

# instructor's check that a reply holds exactly one tool call (its error text goes to the re-ask).
_ONE_TOOL_CALL: TypeAdapter[list[Any]] = TypeAdapter(Annotated[list[Any], Field(min_length=1, max_length=1)])
REASK_SUFFIX = "\nRecall the function correctly, fix the errors"


@dataclass(frozen=True)
class StageTool:
    """A stage model as a forced tool: built once per model per process, then only read."""

    model: type[BaseModel]
    definition: dict[str, Any]  # {name, description, input_schema}, as instructor generates it
    choice: dict[str, Any]  # instructor's TOOLS-mode tool_choice
    schema_tokens: int  # estimate_tokens(json of the input schema) + TOOL_ENVELOPE_TOKENS

    @property
    def name(self) -> str:
        return str(self.definition["name"])

    def parse(self, response: Any) -> Any:
        """The reply's single tool call validated against the model, as instructor's TOOLS
        mode does it (strict JSON validation); raises ValidationError / JSONDecodeError."""
        calls = [
            json.dumps(block.input)
            for block in getattr(response, "content", None) or []
            if getattr(block, "type", None) == "tool_use"
        ]
        return self.model.model_validate_json(_ONE_TOOL_CALL.validate_python(calls)[0], strict=True)


_tools: dict[type[BaseModel], StageTool] = {}
_tools_lock = threading.Lock()


def stage_tool(model: type[BaseModel]) -> StageTool:
    tool = _tools.get(model)
    if tool is not None:
        return tool
    with _tools_lock:
        tool = _tools.get(model)
        if tool is None:
            definition = dict(generate_anthropic_schema(model))
            name = getattr(model, "__name__", "response")
            tool = _tools[model] = StageTool(
                model=model,
                definition=definition,
                choice={"type": "tool", "name": name, "disable_parallel_tool_use": True},
                schema_tokens=estimate_tokens(json.dumps(definition["input_schema"])) + TOOL_ENVELOPE_TOKENS,
            )
        return tool


def reask_messages(response: Any, exception: Exception) -> list[dict[str, Any]]:
    """The turns instructor's TOOLS mode appends to re-ask: the answer as given, then the
    validation error as an error result of every tool call in it (or as text if none)."""
    error = f"Validation Error found:\n{exception}{REASK_SUFFIX}"
    assistant: list[dict[str, Any]] = []
    tool_use_ids: list[str] = []
    for block in response.content:
        try:
            assistant.append(block.model_dump(exclude_none=True))
        except TypeError:
            assistant.append(block.model_dump())
        if block.type == "tool_use":
            tool_use_ids.append(block.id)
    if tool_use_ids:
        answer: dict[str, Any] = {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": tool_use_id, "content": error, "is_error": True}
                for tool_use_id in tool_use_ids
            ],
        }
    else:
        answer = {
            "role": "user",
            "content": f"Validation Error due to no tool invocation:\n{exception}{REASK_SUFFIX}",
        }
    return [{"role": "assistant", "content": assistant}, answer]


def tool_schema_tokens(model: type[BaseModel]) -> int:
    return stage_tool(model).schema_tokens


class ClaudeAnalyst:
    """The `Analyst` protocol on Claude; see the module docstring for the failure policy."""

    name = "claude"

    def __init__(
        self,
        settings: Settings,
        *,
        client: anthropic.Anthropic | None = None,
        offline: Any | None = None,
    ) -> None:
        self.settings = settings
        self._offline = offline
        self._prices = price_table(settings)
        self._client: anthropic.Anthropic | None = client
        if client is None and settings.anthropic_api_key:
            self._client = shared_client(
                settings.anthropic_api_key, settings.anthropic_base_url, settings.llm_timeout_seconds
            )

    # ------------------------------------------------------------------ stages
    def triage(self, facts: IncidentFacts) -> StageOutput[TriageResult]:
        return self._stage(
            stage="triage",
            incident_id=facts.incident_id,
            model=self.settings.triage_model,
            response_model=TriageResult,
            system=triage_prompt.SYSTEM,
            user=triage_prompt.build_user(facts),
            finish=lambda result: (result, {}),
            offline=lambda analyst: analyst.triage(facts),
        )

    def analyze(
        self, facts: IncidentFacts, bundle: ContextBundle, attempt: int
    ) -> StageOutput[RootCauseHypothesis]:
        # Budget arithmetic, all in conservative token estimates:
        #   system + tool schema + prompt around the evidence (alert capped at ALERT_SHARE)
        #   + one (previous answer + error) per allowed re-ask + evidence  <=  rca_token_budget.
        # If re-asks would squeeze the evidence under MIN_EVIDENCE_TOKENS, fewer re-asks
        # are allowed for this call rather than breaking the budget.
        budget = self.settings.rca_token_budget
        alert_chars = int(budget * ALERT_SHARE * CHARS_PER_TOKEN)
        skeleton = rca_prompt.build_user(facts, "", attempt, bundle.window_minutes, alert_chars)
        fixed = (
            estimate_tokens(rca_prompt.SYSTEM)
            + tool_schema_tokens(RootCauseHypothesis)
            + estimate_tokens(skeleton)
        )
        per_reask = MAX_OUTPUT_TOKENS["rca"] + REASK_ERROR_TOKENS
        retries = min(
            self.settings.llm_max_validation_retries,
            max(0, (budget - fixed - MIN_EVIDENCE_TOKENS) // per_reask),
        )
        reask_reserve = retries * per_reask
        pack = build_evidence(bundle, max(0, budget - fixed - reask_reserve))
        user = rca_prompt.build_user(facts, pack.text, attempt, bundle.window_minutes, alert_chars)
        stats: dict[str, Any] = {
            **pack.stats(),
            "attempt": attempt,
            "window_minutes": bundle.window_minutes,
            "prompt_tokens_estimate": estimate_tokens(rca_prompt.SYSTEM)
            + tool_schema_tokens(RootCauseHypothesis)
            + estimate_tokens(user),
            "prompt_token_budget": budget,
            "reask_reserve_tokens": reask_reserve,
            "max_validation_retries": retries,
        }

        def finish(result: RootCauseHypothesis) -> tuple[RootCauseHypothesis, dict[str, Any]]:
            checked, report = verify.verify_rca(result, evidence=pack.citable, deployments=pack.deployments)
            return checked, {"evidence": stats, "verification": report.as_dict()}

        return self._stage(
            stage="rca",
            incident_id=facts.incident_id,
            model=self.settings.rca_model,
            response_model=RootCauseHypothesis,
            system=rca_prompt.SYSTEM,
            user=user,
            finish=finish,
            offline=lambda analyst: analyst.analyze(facts, bundle, attempt),
            extra={"evidence": stats},
            max_retries=retries,
        )

    def plan(
        self, facts: IncidentFacts, rca: RootCauseHypothesis, bundle: ContextBundle
    ) -> StageOutput[RemediationPlan]:
        allowed = list(self.settings.remediation_allowed_commands)

        def finish(result: RemediationPlan) -> tuple[RemediationPlan, dict[str, Any]]:
            checked = verify.verify_plan(result, allowed)
            changed = [note for note in checked.safety_notes if note not in result.safety_notes]
            return checked, {"verification": {"notes": changed}}

        output = self._stage(
            stage="plan",
            incident_id=facts.incident_id,
            model=self.settings.plan_model,
            response_model=RemediationPlan,
            system=plan_prompt.SYSTEM,
            user=plan_prompt.build_user(facts, rca, bundle, allowed),
            finish=finish,
            offline=lambda analyst: analyst.plan(facts, rca, bundle),
        )
        if output.analyst != self.name:
            # Defence in depth: the fallback plan passes the same checks.
            output.result = verify.verify_plan(output.result, allowed)
        return output

    def postmortem(self, data: PostMortemInput) -> StageOutput[PostMortem]:
        triage = data.triage or data.facts.triage

        def finish(narrative: postmortem_prompt.PostMortemNarrative) -> tuple[PostMortem, dict[str, Any]]:
            # Facts of record come from the incident history, never from the model.
            result = PostMortem(
                title=narrative.title,
                outcome=data.outcome,
                severity=triage.severity if triage else None,
                summary=narrative.summary,
                impact=narrative.impact,
                root_cause=narrative.root_cause,
                resolution=narrative.resolution,
                timeline=list(data.timeline),
                action_items=list(narrative.action_items),
                cost=dict(data.cost),
            )
            return result, {}

        return self._stage(
            stage="postmortem",
            incident_id=data.facts.incident_id,
            model=self.settings.postmortem_model,
            response_model=postmortem_prompt.PostMortemNarrative,
            system=postmortem_prompt.SYSTEM,
            user=postmortem_prompt.build_user(data),
            finish=finish,
            offline=lambda analyst: analyst.postmortem(data),
        )

    # ------------------------------------------------------------------ machinery
    def _stage(
        self,
        *,
        stage: str,
        incident_id: str,
        model: str,
        response_model: type[M],
        system: str,
        user: str,
        finish: Callable[[Any], tuple[Any, dict[str, Any]]],
        offline: Callable[[Any], StageOutput[Any]],
        extra: dict[str, Any] | None = None,
        max_retries: int | None = None,
    ) -> StageOutput[Any]:
        started = time.perf_counter()
        retries = self.settings.llm_max_validation_retries if max_retries is None else max_retries
        try:
            call = self._call(stage, incident_id, model, response_model, system, user, retries)
        except _Fallback as fallback:
            return self._fall_back(stage, model, fallback, offline, started, extra or {})
        result, checks = finish(call.result)
        cost = estimate_cost_usd(model, call.usage, self._prices)
        return StageOutput(
            result=result,
            analyst=self.name,
            model=model,
            input_tokens=call.usage.input_tokens,
            output_tokens=call.usage.output_tokens,
            cache_read_tokens=call.usage.cache_read_tokens,
            cache_creation_tokens=call.usage.cache_creation_tokens,
            latency_ms=call.latency_ms,
            note=f"{call.attempts} attempts (re-asked)" if call.attempts > 1 else None,
            extra={**(extra or {}), **checks, "attempts": call.attempts, "cost_usd": cost},
        )

    def _call(
        self,
        stage: str,
        incident_id: str,
        model: str,
        response_model: type[M],
        system: str,
        user: str,
        max_retries: int,
    ) -> _Call:
        """One tool-mode exchange, re-asks included; returns the parsed model or raises
        TransientAnalystError / _Fallback."""
        if self._client is None:
            raise _Fallback("ANTHROPIC_API_KEY is not set", Usage(), 0)
        started = time.perf_counter()
        try:
            return self._converse(
                stage, incident_id, model, response_model, system, user, max_retries, started
            )
        except (_Fallback, TransientAnalystError):
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure degrades to the offline analyst
            log.exception("claude %s call failed unexpectedly", stage)
            reason = f"unexpected {type(exc).__name__}: {_short(exc)}"
            self._log(stage, incident_id, model, started, Usage(), "fallback", 1, reason)
            raise _Fallback(reason, Usage(), 1) from exc

    def _converse(
        self,
        stage: str,
        incident_id: str,
        model: str,
        response_model: type[M],
        system: str,
        user: str,
        max_retries: int,
        started: float,
    ) -> _Call:
        assert self._client is not None
        tool = stage_tool(response_model)
        # The system prompt is constant per stage: mark it so the tools + system
        # prefix is cached across incidents (cheaper and faster input).
        system_blocks = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
        messages: list[dict[str, Any]] = [{"role": "user", "content": user}]
        usage = Usage()  # summed over the re-asks: every request is billed
        parse_errors: list[str] = []
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._client.messages.create(
                    model=model,
                    max_tokens=MAX_OUTPUT_TOKENS[stage],
                    system=system_blocks,  # type: ignore[arg-type]
                    messages=messages,  # type: ignore[arg-type]
                    tools=[tool.definition],  # type: ignore[list-item]
                    tool_choice=tool.choice,  # type: ignore[arg-type]
                )
            except anthropic.APIError as exc:
                self._raise_for_api_error(stage, incident_id, model, exc, usage, attempt, started)
            usage = usage + _usage_of(getattr(response, "usage", None))
            if getattr(response, "stop_reason", None) == "max_tokens":
                reason = f"output truncated at max_tokens={MAX_OUTPUT_TOKENS[stage]}"
                self._log(stage, incident_id, model, started, usage, "fallback", attempt, reason)
                raise _Fallback(reason, usage, attempt)
            try:
                result = tool.parse(response)
            except (ValidationError, json.JSONDecodeError) as exc:
                parse_errors.append(_short(exc, 200))
                if attempt > max_retries:
                    reason = f"invalid output after {attempt} attempt(s): {_short(exc)}"
                    self._log(stage, incident_id, model, started, usage, "fallback", attempt, reason)
                    raise _Fallback(reason, usage, attempt) from exc
                messages = [*messages, *reask_messages(response, exc)]
                continue
            reason = f"re-asked after: {'; '.join(parse_errors)}" if parse_errors else None
            latency_ms = self._log(stage, incident_id, model, started, usage, "ok", attempt, reason)
            return _Call(result=result, usage=usage, latency_ms=latency_ms, attempts=attempt)

    def _raise_for_api_error(
        self,
        stage: str,
        incident_id: str,
        model: str,
        exc: anthropic.APIError,
        usage: Usage,
        attempts: int,
        started: float,
    ) -> NoReturn:
        reason = _api_error_reason(exc)
        if _is_transient(exc):
            response = getattr(exc, "response", None)
            retry_after = parse_retry_after(response.headers if response is not None else None)
            self._log(stage, incident_id, model, started, usage, "transient_error", attempts, reason)
            raise TransientAnalystError(f"claude {stage}: {reason}", retry_after=retry_after) from exc
        self._log(stage, incident_id, model, started, usage, "fallback", attempts, reason)
        raise _Fallback(reason, usage, attempts) from exc

    def _fall_back(
        self,
        stage: str,
        model: str,
        fallback: _Fallback,
        offline: Callable[[Any], StageOutput[Any]],
        started: float,
        extra: dict[str, Any],
    ) -> StageOutput[Any]:
        if self._offline is None:
            # Imported lazily: the offline analyst is the default path and must not
            # depend on the anthropic/instructor stack being importable, nor vice versa.
            from iras.analysts.offline import OfflineAnalyst

            self._offline = OfflineAnalyst()
        output = offline(self._offline)
        spent = fallback.usage
        output.analyst = getattr(self._offline, "name", "offline")
        output.note = f"fallback from claude: {fallback.reason}"
        # Tokens already spent on Claude are billed whatever happened next: keep them,
        # attributed to the Claude model, so per-incident cost stays honest.
        if (
            spent.input_tokens
            or spent.output_tokens
            or spent.cache_read_tokens
            or spent.cache_creation_tokens
        ):
            output.model = model
            output.input_tokens += spent.input_tokens
            output.output_tokens += spent.output_tokens
            output.cache_read_tokens += spent.cache_read_tokens
            output.cache_creation_tokens += spent.cache_creation_tokens
        output.latency_ms = round((time.perf_counter() - started) * 1000, 1)
        output.extra = {
            **extra,
            **output.extra,
            "fallback_from": self.name,
            "fallback_reason": fallback.reason,
            "claude_model": model,
            "claude_attempts": fallback.attempts,
            "cost_usd": estimate_cost_usd(model, spent, self._prices) if output.model == model else 0.0,
        }
        return output

    def _log(
        self,
        stage: str,
        incident_id: str,
        model: str,
        started: float,
        usage: Usage,
        outcome: str,
        attempts: int,
        reason: str | None,
    ) -> float:
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        level = logging.INFO if outcome == "ok" else logging.WARNING
        log.log(
            level,
            "llm %s %s model=%s latency_ms=%.0f in=%d out=%d cache_read=%d cache_write=%d%s",
            stage,
            outcome,
            model,
            latency_ms,
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_creation_tokens,
            f" reason={reason}" if reason else "",
            extra={
                "incident_id": incident_id,
                "stage": stage,
                "model": model,
                "latency_ms": latency_ms,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cache_read_tokens": usage.cache_read_tokens,
                "cache_creation_tokens": usage.cache_creation_tokens,
                "outcome": outcome,
                "attempts": attempts,
                "reason": reason,
            },
        )
        return latency_ms
