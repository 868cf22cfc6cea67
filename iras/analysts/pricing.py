"""Estimated cost of model calls, from token counts and a configurable price table.

Prices are USD per million tokens and change over time, so the defaults below
are only a starting point: `LLM_PRICE_TABLE` (JSON) overrides or extends them
per model. A model is looked up by its exact id first, then by family
(`claude-haiku`, `claude-sonnet`, `claude-opus`), so dated snapshot ids
(`claude-sonnet-4-5-20250929`) price like their alias. An unknown model costs
`None`, never a made-up number.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iras.analysts.base import StageOutput
    from iras.config import Settings

PRICE_KEYS = ("input", "output", "cache_read", "cache_write")

# USD per million tokens. Cache writes (5-minute TTL) cost 1.25x input, reads 0.1x.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "claude-haiku": {"input": 1.0, "output": 5.0, "cache_read": 0.10, "cache_write": 1.25},
    "claude-sonnet": {"input": 3.0, "output": 15.0, "cache_read": 0.30, "cache_write": 3.75},
    "claude-opus": {"input": 5.0, "output": 25.0, "cache_read": 0.50, "cache_write": 6.25},
}

_FAMILIES = ("claude-haiku", "claude-sonnet", "claude-opus")


def validate_price_table(table: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Reject unknown price keys and negative prices (a typo would silently price at 0)."""
    clean: dict[str, dict[str, float]] = {}
    for model, prices in table.items():
        unknown = set(prices) - set(PRICE_KEYS)
        if unknown:
            raise ValueError(f"price table entry {model!r}: unknown keys {sorted(unknown)}; use {PRICE_KEYS}")
        if any(value < 0 for value in prices.values()):
            raise ValueError(f"price table entry {model!r}: prices must be >= 0")
        clean[model] = {key: float(value) for key, value in prices.items()}
    return clean


def price_table(settings: Settings | None = None) -> dict[str, dict[str, float]]:
    table = {model: dict(prices) for model, prices in DEFAULT_PRICES.items()}
    if settings is not None:
        for model, prices in validate_price_table(settings.llm_price_table).items():
            # A partial override ({"input": 2}) keeps the other prices of the model's family.
            inherited = prices_for(model, table) or {}
            table[model] = {**inherited, **prices}
    return table


def prices_for(model: str | None, table: Mapping[str, Mapping[str, float]]) -> Mapping[str, float] | None:
    if not model:
        return None
    if model in table:
        return table[model]
    for family in _FAMILIES:
        if model.startswith(family) and family in table:
            return table[family]
    return None


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_creation_tokens + other.cache_creation_tokens,
        )


def estimate_cost_usd(
    model: str | None, usage: Usage, table: Mapping[str, Mapping[str, float]] | None = None
) -> float | None:
    """USD for one call (or a sum of calls to one model); `None` when the model has no price."""
    prices = prices_for(model, table if table is not None else DEFAULT_PRICES)
    if prices is None:
        return None
    input_price = prices.get("input", 0.0)
    cost = (
        usage.input_tokens * input_price
        + usage.output_tokens * prices.get("output", 0.0)
        + usage.cache_read_tokens * prices.get("cache_read", input_price * 0.1)
        + usage.cache_creation_tokens * prices.get("cache_write", input_price * 1.25)
    ) / 1_000_000
    return round(cost, 6)


def stage_usage(output: StageOutput[Any]) -> Usage:
    return Usage(
        output.input_tokens, output.output_tokens, output.cache_read_tokens, output.cache_creation_tokens
    )


def stage_cost_usd(output: StageOutput[Any], settings: Settings | None = None) -> float | None:
    if not (
        output.input_tokens
        or output.output_tokens
        or output.cache_read_tokens
        or output.cache_creation_tokens
    ):
        return 0.0
    return estimate_cost_usd(output.model, stage_usage(output), price_table(settings))


def incident_totals(
    calls: Iterable[tuple[str | None, Usage]], settings: Settings | None = None
) -> dict[str, Any]:
    """Per-incident totals for the API and the post-mortem: tokens, USD, and unpriced models.

    `calls` are (model, usage) pairs, one per stage result. A model without a
    price is listed in `unpriced_models` and left out of `estimated_cost_usd`
    rather than counted as free without saying so.
    """
    table = price_table(settings)
    total = Usage()
    cost = 0.0
    unpriced: set[str] = set()
    by_model: dict[str, Usage] = {}
    for model, usage in calls:
        total = total + usage
        if model:
            by_model[model] = by_model.get(model, Usage()) + usage
        spent = (
            usage.input_tokens + usage.output_tokens + usage.cache_read_tokens + usage.cache_creation_tokens
        )
        if not spent:
            continue
        call_cost = estimate_cost_usd(model, usage, table)
        if call_cost is None:
            unpriced.add(model or "unknown")
        else:
            cost += call_cost
    return {
        "input_tokens": total.input_tokens,
        "output_tokens": total.output_tokens,
        "cache_read_tokens": total.cache_read_tokens,
        "cache_creation_tokens": total.cache_creation_tokens,
        "estimated_cost_usd": round(cost, 6),
        "unpriced_models": sorted(unpriced),
        "by_model": {
            model: {
                "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens,
                "cache_read_tokens": u.cache_read_tokens,
                "cache_creation_tokens": u.cache_creation_tokens,
                "estimated_cost_usd": estimate_cost_usd(model, u, table),
            }
            for model, u in sorted(by_model.items())
        },
    }
