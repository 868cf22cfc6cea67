"""Server-side prepared statements for psycopg2 on PostgreSQL.

psycopg2 sends every statement as text with its parameters inlined, so PostgreSQL
parses, analyses and plans each one again. IRAS's hot statements are a fixed set:
the transitions' data-modifying CTEs, the remediation's step claims and the
post-mortem's read. SQLAlchemy compiles each of them once, and each runs thousands
of times per connection, parsed and planned again by the server every time.

Here each such statement is prepared once per connection, as `PREPARE iras_<hash>
(<types>) AS <statement with $n placeholders>`, and then run as `EXECUTE
iras_<hash>(<parameters>)`: the server parses and plans it once.

What is prepared: statements on an autocommit connection (`db.autocommit_connection`,
the read paths), whose text is exactly SQLAlchemy's cached compiled string (not an
expanded IN list, not an insertmanyvalues batch) and that are a SELECT, INSERT,
UPDATE, DELETE or WITH with parameters. In autocommit, a PREPARE that fails (a
parameter whose type the server cannot infer) aborts no transaction: the statement
is marked as not preparable and runs as text.

A statement whose prepared plan went stale is prepared again and re-run once. This
happens when a migration changed a result column's type ("cached plan must not
change result type") or when the prepared statement is gone.

A connection pooler in transaction mode (PgBouncer) does not keep a server session's
prepared statements across transactions. Behind one, set
`DB_PREPARED_STATEMENTS=false`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import weakref
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import Engine, event
from sqlalchemy.sql import sqltypes

log = logging.getLogger(__name__)

# Prepared statements one connection keeps at most (each holds a plan in the server
# backend's memory). The pipeline's hot path uses about a dozen; the rest (console
# filters, rare paths) may run as text.
MAX_PER_CONNECTION = 100
_KINDS = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")
# "Prepared statement does not exist", "cached plan must not change result type".
_STALE = {"26000", "0A000"}
_ALREADY_PREPARED = "42P05"
_PLACEHOLDER = re.compile(r"%%|%\(([^)]+)\)s")


class PreparedForm(NamedTuple):
    kind_ok: bool  # a SELECT, INSERT, UPDATE, DELETE or WITH: what PREPARE accepts
    name: str
    body: str  # the statement with $1..$n placeholders, `%%` unescaped
    params: tuple[str, ...]  # the parameter names, in $n order
    execute: str  # EXECUTE name(%(p1)s, ...), for psycopg2 to fill in


@lru_cache(maxsize=1024)
def prepared_form(statement: str) -> PreparedForm:
    """A pyformat statement (`%(name)s` placeholders, `%%` for a percent sign) as a
    named server-side statement. A name used twice is one parameter."""
    params: list[str] = []

    def renumber(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        if name not in params:
            params.append(name)
        return f"${params.index(name) + 1}"

    body = _PLACEHOLDER.sub(renumber, statement)
    name = "iras_" + hashlib.sha1(statement.encode()).hexdigest()[:20]
    args = ", ".join(f"%({p})s" for p in params)
    kind_ok = statement.lstrip()[:6].upper().startswith(_KINDS)
    execute = f"EXECUTE {name}({args})" if params else f"EXECUTE {name}"
    return PreparedForm(kind_ok, name, body, tuple(params), execute)


def parameter_type(bind: Any, dialect: Any) -> str:
    """The SQL type a parameter is declared with, from SQLAlchemy's bind type. Strings
    are `text`: a declaration keeps no length anyway, and a `String(collation=...)`
    compiles with a COLLATE clause, which a parameter list does not accept (the
    comparison takes the column's collation). Unknown types are left to the server
    to infer, as a literal's are."""
    if bind is None or isinstance(bind.type, sqltypes.NullType):
        return "unknown"
    try:
        compiled = str(bind.type.compile(dialect=dialect))
    except Exception:  # noqa: BLE001 - a type without a DDL form: let the server infer it
        return "unknown"
    if isinstance(bind.type, sqltypes.String) and compiled.split("(")[0].upper() in (
        "VARCHAR",
        "CHAR",
        "TEXT",
        "CHARACTER VARYING",
    ):
        return "text"
    return compiled


def _declared_types(form: PreparedForm, context: Any) -> str:
    compiled = context.compiled
    escaped = getattr(compiled, "escaped_bind_names", None) or {}
    binds = {escaped.get(key, key): bind for key, bind in compiled.binds.items()}
    return ", ".join(parameter_type(binds.get(p), context.dialect) for p in form.params)


def prepare_sql(form: PreparedForm, context: Any) -> str:
    """The PREPARE statement for `form`, its parameters declared with the types of the
    compiled statement in `context`."""
    return f"PREPARE {form.name} ({_declared_types(form, context)}) AS {form.body}"


def install(engine: Engine) -> None:
    """Prepare the eligible statements of `engine` (PostgreSQL through psycopg2)."""
    prepared: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
    refused: set[str] = set()
    lock = threading.Lock()

    def prepare(cursor: Any, form: PreparedForm, context: Any) -> bool:
        try:
            cursor.execute(prepare_sql(form, context))
        except engine.dialect.dbapi.Error as exc:  # type: ignore[union-attr]
            code = getattr(exc, "pgcode", None)
            if code == _ALREADY_PREPARED:
                return True
            if cursor.connection.closed or code is None:
                raise  # the connection, not the statement: SQLAlchemy handles it
            with lock:
                refused.add(form.name)
            log.warning(
                "statement not prepared; it runs as text",
                extra={"statement": form.body[:200], "error": str(exc).strip()[:200]},
            )
            return False
        return True

    @event.listens_for(engine, "do_execute")
    def _execute_prepared(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        compiled = context.compiled
        raw = cursor.connection
        if (
            compiled is None
            or statement is not compiled.string  # expanded IN, insertmanyvalues batch
            or not parameters
            or not isinstance(parameters, dict)
            or not raw.autocommit
        ):
            return False
        form = prepared_form(statement)  # cached: the checks on the text run once
        if not form.kind_ok or form.name in refused:
            return False
        names = prepared.get(raw)
        if names is None:
            with lock:
                names = prepared.setdefault(raw, set())
        if form.name not in names:
            if len(names) >= MAX_PER_CONNECTION or not prepare(cursor, form, context):
                return False
            names.add(form.name)
        try:
            cursor.execute(form.execute, parameters)
        except engine.dialect.dbapi.Error as exc:  # type: ignore[union-attr]
            if getattr(exc, "pgcode", None) not in _STALE or raw.closed:
                raise
            # Autocommit: the failed EXECUTE changed nothing. Prepare afresh, run once more.
            names.discard(form.name)
            if exc.pgcode == "0A000":  # type: ignore[attr-defined]
                cursor.execute(f"DEALLOCATE {form.name}")
            if not prepare(cursor, form, context):
                return False  # not reached in practice; SQLAlchemy then runs it as text
            names.add(form.name)
            cursor.execute(form.execute, parameters)
        return True
