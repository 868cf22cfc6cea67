"""Parsing WEBHOOK_TOKENS, the per-source webhook secrets (checked in
`iras.web.ingest_guard`; parsed here so the settings can validate them at start-up)."""

from __future__ import annotations

import re

from iras.ingest import KNOWN_SOURCES

ANY_SOURCE = "*"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def known_sources() -> tuple[str, ...]:
    return KNOWN_SOURCES


def parse_webhook_tokens(value: object) -> object:
    """Parse WEBHOOK_TOKENS: "source=token,source2=token2" or one token -> {source or "*": token}.

    An unknown source name is an error at start-up (a typo like "alertmanger="
    would otherwise silently leave that sender locked out). A part whose text
    before "=" is not a name, or that is only base64 padding after it
    ("c2VjcmV0=="), is a token for every source.
    """
    if not isinstance(value, str):
        return value
    sources = known_sources()
    tokens: dict[str, str] = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        name, sep, secret = part.partition("=")
        name = name.strip().lower()
        if sep and (name in sources or name == ANY_SOURCE):
            key, token = name, secret.strip()
        elif sep and _NAME.match(name) and secret.strip("= "):
            raise ValueError(f"unknown source {name!r} in WEBHOOK_TOKENS; known: {', '.join(sources)}")
        else:
            key, token = ANY_SOURCE, part
        if not token:
            raise ValueError(f"empty token for {key!r} in WEBHOOK_TOKENS")
        if key in tokens:
            raise ValueError(f"{key!r} is given twice in WEBHOOK_TOKENS")
        tokens[key] = token
    return tokens
