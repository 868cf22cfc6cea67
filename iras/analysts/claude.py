"""The Claude analyst: every stage through `instructor`, typed, budgeted and verified.

Each stage sends one Messages API request in tool mode (instructor forces the
stage's Pydantic model as the only tool, validates the answer, and re-asks with
the validation error up to `llm_max_validation_retries` times). Around that:

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
* **Facts from code.** The RCA prompt carries facts computed in code from the
  evidence (candidates, dependency edges, onsets, changes with minutes before
  each onset), so the model checks counted facts instead of re-deriving them.
* **Verification.** RCA citations and culprit deployments are checked against
  the evidence actually sent; plans go through `verify_plan` (`iras.analysts.verify`).
* **Cost and observability.** Token usage (summed over instructor's re-asks) and
  latency are returned with every stage result, and every call is logged on
  `iras.llm` with structured fields.
"""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import anthropic
import instructor
from instructor.core import Hooks, IncompleteOutputException, InstructorRetryException
from pydantic import BaseModel

from iras.analysts import verify
from iras.analysts.base import IncidentFacts, PostMortemInput, StageOutput, TransientAnalystError
from iras.analysts.budget import CHARS_PER_TOKEN, build_evidence, estimate_tokens
from iras.analysts.facts import compute_facts
from iras.analysts.pricing import Usage, estimate_cost_usd, price_table
from iras.analysts.prompts import plan as plan_prompt
from iras.analysts.prompts import postmortem as postmortem_prompt
from iras.analysts.prompts import rca as rca_prompt
from iras.analysts.prompts import triage as triage_prompt
from iras.analysts.prompts.computed_facts import (
    ComputedFacts,
    basic_facts,
    from_evidence_facts,
    render_computed_facts,
)
from iras.schemas import (
    Category,
    ContextBundle,
    PostMortem,
    RemediationPlan,
    RootCauseHypothesis,
    TriageResult,
)

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
COMPUTED_SHARE = 0.08  # of the RCA budget, at most, for the computed-facts block
MIN_EVIDENCE_TOKENS = 1000
# The facts computation reads at most about this many log lines (see `facts_sample`).
MAX_FACT_LINES = 4000
_QUIET_LEVELS = frozenset({"INFO", "DEBUG", "TRACE"})
_DIGIT_TOKEN = re.compile(r"[\w.:-]*\d[\w.:-]*")


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


_clients: dict[tuple[str, str | None, float], instructor.Instructor] = {}
_clients_lock = threading.Lock()


def shared_client(api_key: str, base_url: str | None, timeout: float) -> instructor.Instructor:
    """One instructor client per (key, base URL, timeout) per process.

    Building one costs ~100 ms and opens its own connection pool; the pipeline
    builds an analyst per stage task, so without sharing every stage would pay
    that and leak a pool. The underlying HTTP client is thread-safe.
    """
    key = (api_key, base_url, timeout)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            raw = anthropic.Anthropic(
                api_key=api_key,
                base_url=base_url,
                timeout=timeout,
                max_retries=0,  # Celery owns retries (with backoff that honours retry-after)
            )
            # Mode.TOOLS is what Mode.ANTHROPIC_TOOLS became in instructor 1.17 (the old
            # name still works but is deprecated): from_anthropic picks the provider.
            client = _clients[key] = instructor.from_anthropic(raw, mode=instructor.Mode.TOOLS)
        return client


_tool_models: dict[type[BaseModel], type[BaseModel]] = {}
_tool_models_lock = threading.Lock()


def tool_model(model: type[BaseModel]) -> type[BaseModel]:
    """The stage model as instructor's tool schema class, built once per process.

    Given a plain Pydantic model, instructor derives a new `ResponseSchema`
    subclass on every call, so its (lru-cached) tool-definition generator never
    hits its cache and rebuilds the JSON schema each time. Given the derived
    class, it uses it as is; requests, parsing, validation and re-asks are
    unchanged.
    """
    derived = _tool_models.get(model)
    if derived is None:
        with _tool_models_lock:
            derived = _tool_models.get(model)
            if derived is None:
                derived = _tool_models[model] = instructor.openai_schema(model)
    return derived


@functools.cache
def tool_schema_tokens(model: type[BaseModel]) -> int:
    return estimate_tokens(json.dumps(model.model_json_schema())) + TOOL_ENVELOPE_TOKENS


def facts_sample(bundle: ContextBundle, limit: int = MAX_FACT_LINES) -> ContextBundle:
    """`bundle` with at most about `limit` log lines for the facts computation.

    Half the allowance is an even stride over the window, which keeps every
    service's rate and rate changes in proportion; the rest is the first line of
    each distinct shape (service, level, first message line with every token that
    holds a digit masked), warnings and errors before the rest, so a new failure
    and its onset are not thinned away by a flood of repeated lines.
    """
    logs = bundle.logs
    if len(logs) <= limit:
        return bundle
    stride = math.ceil(len(logs) / max(1, limit // 2))
    keep = set(range(0, len(logs), stride))
    seen: set[tuple[str, str, str]] = set()
    in_time = sorted(range(len(logs)), key=lambda i: logs[i].timestamp)
    for urgent in (True, False):
        for index in in_time:
            if len(keep) >= limit:
                break
            line = logs[index]
            level = line.level.upper()
            if (level in _QUIET_LEVELS) is urgent:
                continue
            key = (line.service, level, _DIGIT_TOKEN.sub("#", line.message.split("\n", 1)[0]))
            if key not in seen:
                seen.add(key)
                keep.add(index)
    return bundle.model_copy(update={"logs": [logs[i] for i in sorted(keep)]})


def computed_facts(facts: IncidentFacts, bundle: ContextBundle) -> ComputedFacts:
    """The facts computed in code that the RCA prompt renders before the evidence.

    A huge bundle is sampled first (`facts_sample`): the evidence packer shows the
    model the whole window anyway, and the facts must not cost the stage minutes.
    If the facts computation itself fails, the prompt gets the counting-only view
    instead: the diagnosis loses precision, the stage does not fail.
    """
    sample = facts_sample(bundle)
    try:
        computed = from_evidence_facts(compute_facts(facts, sample))
    except Exception:  # noqa: BLE001 - a bug in the facts must not fail the RCA stage
        log.exception("computing the evidence facts failed; the prompt gets the counting-only view")
        computed = basic_facts(sample, facts.alert.timestamp if facts.alert else None)
    if len(sample.logs) < len(bundle.logs):
        note = f"computed on a sample of {len(sample.logs)} of {len(bundle.logs)} log lines"
        computed = dataclasses.replace(computed, notes=(*computed.notes, note))
    return computed


class ClaudeAnalyst:
    """The `Analyst` protocol on Claude; see the module docstring for the failure policy."""

    name = "claude"

    def __init__(
        self,
        settings: Settings,
        *,
        client: instructor.Instructor | None = None,
        offline: Any | None = None,
    ) -> None:
        self.settings = settings
        self._offline = offline
        self._prices = price_table(settings)
        self._client: instructor.Instructor | None = client
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
        # The alert and computed-facts blocks get their share of what the constant
        # system prompt and tool schema leave, so a small budget still has room for evidence.
        budget = self.settings.rca_token_budget
        room = max(0, budget - estimate_tokens(rca_prompt.SYSTEM) - tool_schema_tokens(RootCauseHypothesis))
        alert_chars = int(min(budget * ALERT_SHARE, room * 2 * ALERT_SHARE) * CHARS_PER_TOKEN)
        computed = render_computed_facts(
            computed_facts(facts, bundle),
            int(min(budget * COMPUTED_SHARE, room * 2 * COMPUTED_SHARE) * CHARS_PER_TOKEN),
        )
        skeleton = rca_prompt.build_user(facts, "", attempt, bundle.window_minutes, alert_chars, computed)
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
        user = rca_prompt.build_user(facts, pack.text, attempt, bundle.window_minutes, alert_chars, computed)
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
            checked, report = verify.verify_rca(
                result, evidence=pack.citable, deployments=pack.deployments, seen=user
            )
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
        if rca.category is Category.FALSE_ALARM:
            # A false alarm needs no remediation by definition: no model call, no guessed step.
            return StageOutput(
                result=RemediationPlan(
                    summary=f"No remediation: the diagnosis is a false alarm ({rca.culprit_service}).",
                    steps=[],
                    requires_human_approval=False,
                    reversible=True,
                    safety_notes=["Nothing will be executed."],
                ),
                analyst=self.name,
                note="false alarm: no remediation, no model call",
            )

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
                # The RCA's evidence-based severity replaced triage's on the incident.
                severity=(data.rca.severity if data.rca and data.rca.severity else None)
                or (triage.severity if triage else None),
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
            note=f"{call.attempts} attempts (instructor re-asked)" if call.attempts > 1 else None,
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
        """One instructor call; returns the parsed model or raises Transient/_Fallback."""
        if self._client is None:
            raise _Fallback("ANTHROPIC_API_KEY is not set", Usage(), 0)
        started = time.perf_counter()
        # Per-call hooks (the client is shared between threads): count the attempts
        # instructor makes and keep the validation errors that caused re-asks.
        responses: list[object] = []
        parse_errors: list[str] = []
        hooks = Hooks()
        hooks.on("completion:response", lambda response, **_: responses.append(response))
        hooks.on("parse:error", lambda error, **_: parse_errors.append(_short(error, 200)))
        try:
            result, completion = self._client.create_with_completion(
                model=model,
                max_tokens=MAX_OUTPUT_TOKENS[stage],
                # The system prompt is constant per stage: mark it so the tools + system
                # prefix is cached across incidents (cheaper and faster input).
                system=[{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
                messages=[{"role": "user", "content": user}],
                response_model=tool_model(response_model),
                max_retries=max_retries,
                hooks=hooks,
            )
        except InstructorRetryException as exc:
            usage = _usage_of(exc.total_usage)
            attempts = int(exc.n_attempts or 0)
            cause = exc.__cause__
            if isinstance(cause, anthropic.APIError):
                self._raise_for_api_error(stage, incident_id, model, cause, usage, attempts, started)
            reason = f"invalid output after {attempts} attempt(s): {_short(cause or exc)}"
            self._log(stage, incident_id, model, started, usage, "fallback", attempts, reason)
            raise _Fallback(reason, usage, attempts) from exc
        except IncompleteOutputException as exc:
            usage = _usage_of(getattr(exc.last_completion, "usage", None))
            reason = f"output truncated at max_tokens={MAX_OUTPUT_TOKENS[stage]}"
            self._log(stage, incident_id, model, started, usage, "fallback", 1, reason)
            raise _Fallback(reason, usage, 1) from exc
        except anthropic.APIError as exc:  # not wrapped by instructor (kept for other versions)
            self._raise_for_api_error(stage, incident_id, model, exc, Usage(), 1, started)
        except Exception as exc:  # noqa: BLE001 - any other failure degrades to the offline analyst
            log.exception("claude %s call failed unexpectedly", stage)
            reason = f"unexpected {type(exc).__name__}: {_short(exc)}"
            self._log(stage, incident_id, model, started, Usage(), "fallback", 1, reason)
            raise _Fallback(reason, Usage(), 1) from exc
        # instructor accumulates usage over re-asks into the returned completion.
        usage = _usage_of(getattr(completion, "usage", None))
        total = getattr(result, "_total_usage", None)
        if total is not None:
            usage = _usage_of(total)
        attempts = max(1, len(responses))
        reason = f"re-asked after: {'; '.join(parse_errors)}" if parse_errors else None
        latency_ms = self._log(stage, incident_id, model, started, usage, "ok", attempts, reason)
        return _Call(result=result, usage=usage, latency_ms=latency_ms, attempts=attempts)

    def _raise_for_api_error(
        self,
        stage: str,
        incident_id: str,
        model: str,
        exc: anthropic.APIError,
        usage: Usage,
        attempts: int,
        started: float,
    ) -> None:
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
