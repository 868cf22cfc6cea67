"""Access control: API tokens with roles, the console session, CSRF.

- Tokens are 256-bit random strings (`iras_…`) shown once at creation; only
  their SHA-256 is stored. A fast hash is enough for high-entropy secrets (no
  password stretching needed), and a leaked database holds no usable token.
- Roles are ordered: viewer (read incidents and post-mortems) < approver
  (approve/reject plans) < admin (everything, including token management).
- The API authenticates with `Authorization: Bearer <token>` only. The console
  also accepts a signed session cookie (HttpOnly, SameSite=Lax) set by logging
  in with a token; the cookie holds the token's id, and the token row is checked
  on every request, so revoking a token ends its console sessions too.
- Every console form carries a per-session CSRF token, checked on every POST,
  also when auth is off: otherwise any web page could make an operator's browser
  approve a remediation.
- AUTH_ENABLED defaults to false so the embedded default works out of the box;
  production sets AUTH_ENABLED=true. When it is off, every request acts as an
  unauthenticated admin and the console and /health say so.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Flask, current_app, g, request, session
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from iras.config import Settings
from iras.db import new_session
from iras.models import ApiToken, ConsoleSession
from iras.schemas import utcnow

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("viewer", "approver", "admin")
RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}
TOKEN_PREFIX = "iras_"
# Longer than any token we issue; refuses to hash megabytes sent as a "token".
MAX_TOKEN_CHARS = 200
# last_used_at is written at most this often per token: a write per request would
# serialise every API call behind SQLite's single writer.
LAST_USED_RESOLUTION = timedelta(minutes=5)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Principal:
    """Who is making the request. `authenticated` is False when auth is off."""

    name: str
    role: str
    token_id: int | None = None
    authenticated: bool = True

    def can(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]


ANONYMOUS = Principal(name="anonymous", role="admin", token_id=None, authenticated=False)


# --------------------------------------------------------------------------- tokens


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def validate_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 255:
        raise ValueError("a token name is required (up to 255 characters)")
    return name


def create_token(session: Session, name: str, role: str) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the secret (which is not stored). The caller commits."""
    if role not in RANK:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    token = generate_token()
    row = ApiToken(
        name=validate_name(name),
        role=role,
        token_hash=hash_token(token),
        prefix=token[: len(TOKEN_PREFIX) + 6],
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row, token


def find_token(session: Session, token: str | None) -> ApiToken | None:
    """The active token row for a presented secret, or None."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    digest = hash_token(token)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    # The lookup is by hash, so its timing says nothing about the secret; the
    # constant-time compare guards against a collation-insensitive match.
    if row is None or not hmac.compare_digest(row.token_hash, digest) or row.revoked_at is not None:
        return None
    return row


def list_tokens(session: Session, include_revoked: bool = False) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id)
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    return list(session.scalars(query))


def revoke_tokens(session: Session, ident: str) -> list[ApiToken]:
    """Revoke the active token with this id, or every active token with this name. The caller commits."""
    query = select(ApiToken).where(ApiToken.revoked_at.is_(None))
    if ident.isdigit():
        query = query.where(or_(ApiToken.id == int(ident), ApiToken.name == ident))
    else:
        query = query.where(ApiToken.name == ident)
    rows = list(session.scalars(query))
    now = utcnow()
    for row in rows:
        row.revoked_at = now
    return rows


def _touch(token_id: int, last_used: Any) -> None:
    now = utcnow()
    if last_used is not None and now - last_used < LAST_USED_RESOLUTION:
        return
    try:
        with new_session() as s:
            s.execute(
                update(ApiToken)
                .where(
                    ApiToken.id == token_id,
                    or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < now - LAST_USED_RESOLUTION),
                )
                .values(last_used_at=now)
            )
            s.commit()
    except Exception:  # noqa: BLE001 - bookkeeping must never refuse a valid request
        log.warning("could not record token use", exc_info=True)


def _principal(row: ApiToken) -> Principal:
    return Principal(name=row.name, role=row.role, token_id=row.id)


# --------------------------------------------------------------------------- Flask


def init_app(app: Flask, settings: Settings) -> None:
    """Session cookie settings and the secret key; called by the app factory."""
    app.config.setdefault("AUTH_ENABLED", settings.auth_enabled)
    key = app.config.get("SECRET_KEY") or settings.secret_key
    if not key:
        key = secrets.token_hex(32)
        level = logging.ERROR if app.config["AUTH_ENABLED"] else logging.WARNING
        log.log(
            level,
            "SECRET_KEY is not set: using a random key for this process; console sessions end "
            "at restart and do not work across several web workers. Set SECRET_KEY (32+ characters).",
        )
    app.config.update(
        SECRET_KEY=key,
        SESSION_COOKIE_NAME="iras_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.console_session_hours),
    )
    app.jinja_env.globals["csrf_token"] = csrf_token
    if not app.config["AUTH_ENABLED"]:
        log.warning("AUTH_ENABLED is false: anyone who can reach IRAS can read incidents and approve plans")


def auth_enabled() -> bool:
    return bool(current_app.config.get("AUTH_ENABLED"))


def bearer_token() -> str | None:
    """The token from `Authorization: Bearer …`, '' for a malformed header, None when absent."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return ""
    return value.strip()


_UNSET = object()


def current_principal(allow_session: bool = False) -> Principal | None:
    """Who is asking, or None if nobody valid. A Bearer header, when present,
    decides alone (a bad token is not rescued by a cookie). The session cookie
    counts only where `allow_session` (the console), because the JSON API has no
    CSRF token and must not act on a browser's ambient cookie."""
    if not auth_enabled():
        return ANONYMOUS
    cache_key = "_iras_principal_session" if allow_session else "_iras_principal"
    cached = g.get(cache_key, _UNSET)
    if cached is not _UNSET:
        return cast("Principal | None", cached)
    principal: Principal | None = None
    token = bearer_token()
    with new_session() as s:
        if token is not None:
            row = find_token(s, token)
        elif allow_session and isinstance(session.get("token_id"), int):
            row = _session_token(s, session["token_id"], session.get("sid"))
        else:
            row = None
        if row is not None:
            principal = _principal(row)
            last_used, token_id = row.last_used_at, row.id
    if principal is not None:
        _touch(token_id, last_used)
    setattr(g, cache_key, principal)
    return principal


def authorize(role: str, allow_session: bool = False) -> tuple[Principal | None, int | None]:
    """(principal, None) if allowed, else (principal or None, 401 or 403)."""
    principal = current_principal(allow_session)
    if principal is None:
        return None, 401
    if not principal.can(role):
        return principal, 403
    return principal, None


def require_role(role: str) -> Callable[[F], F]:
    """Decorate a JSON API view: 401 without a valid token, 403 below `role`.
    The principal is in `g.principal` for the view."""
    if role not in RANK:
        raise ValueError(f"unknown role {role!r}")

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            from iras.web.util import error

            principal, status = authorize(role)
            if status == 401:
                response, code = error(401, "a valid API token is required: Authorization: Bearer <token>")
                response.headers["WWW-Authenticate"] = 'Bearer realm="iras"'
                return response, code
            if status == 403:
                assert principal is not None
                return error(403, f"this needs the {role} role; token {principal.name!r} is {principal.role}")
            g.principal = principal
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorator


# --------------------------------------------------------------------------- console session and CSRF


def csrf_token() -> str:
    """The session's CSRF token (created on first use); rendered in every form."""
    token = session.get("csrf")
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_valid(presented: str | None) -> bool:
    expected = session.get("csrf")
    if not isinstance(expected, str) or not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def _session_token(s: Session, token_id: int, sid: Any) -> ApiToken | None:
    """The token of a console session that is still signed in: the cookie's session
    id must name a stored, unrevoked sign-in of an unrevoked token."""
    if not isinstance(sid, str) or not sid or len(sid) > MAX_TOKEN_CHARS:
        return None
    return s.scalar(
        select(ApiToken)
        .join(ConsoleSession, ConsoleSession.token_id == ApiToken.id)
        .where(
            ConsoleSession.id_hash == hash_token(sid),
            ConsoleSession.revoked_at.is_(None),
            ApiToken.id == token_id,
            ApiToken.revoked_at.is_(None),
        )
    )


def login(row: ApiToken) -> None:
    """Start a console session for this token: a fresh session and a fresh CSRF
    token, so nothing planted before login (session fixation) survives it, and a
    stored sign-in that logout can revoke."""
    sid = secrets.token_urlsafe(32)
    with new_session() as s:
        s.add(ConsoleSession(id_hash=hash_token(sid), token_id=row.id))
        s.commit()
    session.clear()
    session.permanent = True
    session["token_id"] = row.id
    session["sid"] = sid
    session["csrf"] = secrets.token_urlsafe(32)


def logout() -> None:
    """End the session on the server too: a copy of the cookie no longer signs in."""
    sid = session.get("sid")
    if isinstance(sid, str) and sid:
        with new_session() as s:
            s.execute(
                update(ConsoleSession)
                .where(ConsoleSession.id_hash == hash_token(sid), ConsoleSession.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            s.commit()
    session.clear()


# --------------------------------------------------------------------------- `iras tokens`


def add_tokens_arguments(parser: Any) -> None:
    """`iras tokens create|list|revoke` (wired in iras/cli.py)."""
    sub = parser.add_subparsers(dest="tokens_command", required=True)
    create = sub.add_parser("create", help="create a token; prints it once, as the last line")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", required=True, help="who holds it: recorded on every decision made with it")
    listing = sub.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked tokens")
    revoke = sub.add_parser("revoke", help="revoke a token by id, or every active token of a name")
    revoke.add_argument("ident", help="token id or name")


def main_tokens(args: Any) -> int:
    from sqlalchemy.exc import OperationalError

    from iras.db import session_scope

    try:
        with session_scope() as s:
            if args.tokens_command == "create":
                try:
                    row, token = create_token(s, args.name, args.role)
                except ValueError as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    return 2
                print(
                    f"created {row.role} token #{row.id} for {row.name}; it is shown once, only its hash is stored:"
                )
                print(token)
                return 0
            if args.tokens_command == "list":
                rows = list_tokens(s, include_revoked=args.all)
                print(
                    f"{'id':>4}  {'name':<24} {'role':<9} {'prefix':<12} {'created':<17} {'last used':<17} state"
                )
                for row in rows:
                    print(
                        f"{row.id:>4}  {row.name[:24]:<24} {row.role:<9} {row.prefix + '…':<12} "
                        f"{row.created_at:%Y-%m-%d %H:%M}  "
                        f"{(f'{row.last_used_at:%Y-%m-%d %H:%M}' if row.last_used_at else 'never'):<17} "
                        f"{'revoked' if row.revoked_at else 'active'}"
                    )
                return 0
            revoked = revoke_tokens(s, args.ident)
            if not revoked:
                print(f"no active token with id or name {args.ident!r}", file=sys.stderr)
                return 1
            for row in revoked:
                print(f"revoked {row.role} token #{row.id} of {row.name}")
            return 0
    except OperationalError as exc:
        print(
            f"error: database not ready ({str(exc).splitlines()[0]}); run `iras db upgrade`", file=sys.stderr
        )
        return 1
