"""The SQL statements the application's engine sends, for tests that assert how many."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def statements_sent() -> Iterator[list[str]]:
    """Every statement text sent through `iras.db.get_engine()` inside the block."""
    from sqlalchemy import event

    from iras.db import get_engine

    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)
