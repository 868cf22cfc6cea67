"""Analysts: the offline rules engine (default, no network) and Claude (when an
ANTHROPIC_API_KEY is set or ANALYST=claude). Both implement `Analyst`."""

from __future__ import annotations

from iras.analysts.base import Analyst
from iras.config import get_settings

_override: Analyst | None = None


def set_analyst(analyst: Analyst | None) -> None:
    """Force an analyst for this process (tests, benchmarks, `iras eval`)."""
    global _override
    _override = analyst


def get_analyst() -> Analyst:
    if _override is not None:
        return _override
    settings = get_settings()
    if settings.use_claude:
        from iras.analysts.claude import ClaudeAnalyst

        return ClaudeAnalyst(settings)
    from iras.analysts.offline import OfflineAnalyst

    return OfflineAnalyst()
