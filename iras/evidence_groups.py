"""Group evidence lines that repeat one template, so a reader sees each distinct
message once with its count instead of six near-identical lines.

Two lines share a template when they are equal after masking the parts that vary
between occurrences of one message: UUIDs, hex ids, IP addresses and numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VARIABLE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"  # UUID
    r"|\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{7,}\b"  # hex ids and shas (with at least one digit)
    r"|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"  # IPv4[:port]
    r"|\d+(?:[.,:]\d+)*"  # numbers, times, versions
)


def template_of(line: str) -> str:
    """The line with its variable parts masked; whitespace runs count as one space."""
    return _VARIABLE.sub("#", " ".join(line.split()))


@dataclass(frozen=True)
class LineGroup:
    example: str  # the first line of the group, verbatim
    count: int


def group_lines(lines: list[str]) -> list[LineGroup]:
    """Lines grouped by template, in order of first appearance."""
    order: list[str] = []
    first: dict[str, str] = {}
    counts: dict[str, int] = {}
    for line in lines:
        key = template_of(line)
        if key not in first:
            order.append(key)
            first[key] = line
            counts[key] = 0
        counts[key] += 1
    return [LineGroup(first[key], counts[key]) for key in order]
