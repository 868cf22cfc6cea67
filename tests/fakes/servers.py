"""Local HTTP servers that speak Loki, Elasticsearch, GitHub, the Slack Web API and
PagerDuty Events v2, on 127.0.0.1 free ports, for the real clients to talk to.

Each fake keeps state (log entries, documents, deployments, messages, alerts),
answers with the real response shapes and headers (GitHub `Link` pagination and
`X-RateLimit-*`, Slack `ok`/`error` bodies and `Retry-After`, PagerDuty 202
bodies), validates what the real service validates that a client could get wrong,
and records every request. `script()` queues error responses (429, 5xx, ...)
served before the normal handling, so tests can drive retries and rate limits.
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

# --------------------------------------------------------------------------- plumbing


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        if self.body is None:
            return b"", "text/plain"
        return json.dumps(self.body).encode(), "application/json; charset=utf-8"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real services: sessions reuse connections
    # Headers and body in one segment, sent at once: otherwise Nagle plus delayed ACKs
    # add ~40 ms to every keep-alive request.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the access log
        return

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        recorded = Recorded(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        reply = self.server.owner.dispatch(recorded)
        if reply.delay:
            time.sleep(reply.delay)
        payload, content_type = reply.encoded()
        self.send_response(reply.status)
        headers = {"Content-Type": content_type, **reply.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up (the timeout tests) is expected, not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FakeServer:
    """Base: a threaded server on a free port, request log and scripted replies."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._scripted: list[tuple[str, Reply]] = []
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        # A short poll interval: shutdown() waits for the next poll, 0.5 s by default.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name=type(self).__name__, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, path_prefix: str, reply: Reply, times: int = 1) -> None:
        """Serve `reply` for the next `times` requests whose path starts with `path_prefix`."""
        with self._lock:
            self._scripted.extend((path_prefix, reply) for _ in range(times))

    def calls(self, path_prefix: str = "") -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def dispatch(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            for i, (prefix, reply) in enumerate(self._scripted):
                if request.path.startswith(prefix):
                    del self._scripted[i]
                    return reply
        try:
            return self.handle(request)
        except Exception as exc:  # a bug in a fake must show up as a 500, not a hung client
            return Reply(500, f"fake server error: {type(exc).__name__}: {exc}")

    def handle(self, request: Recorded) -> Reply:
        raise NotImplementedError


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _go_unquote(quoted: str) -> str:
    """Unquote a double-quoted Go/LogQL string literal (escapes \\\\ and \\")."""
    return re.sub(r"\\(.)", r"\1", quoted)


# --------------------------------------------------------------------------- Loki


_LOGQL = re.compile(
    r'^\{\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*\}'
    r'(?:\s*\|~\s*"(?P<filter>(?:[^"\\]|\\.)*)")?\s*$'
)


class FakeLoki(FakeServer):
    """`GET /loki/api/v1/query_range` over stored streams.

    Understands a one-matcher stream selector (`{label="v"}` or `{label=~"re"}`)
    and an optional `|~ "re"` line filter, the parts a client for IRAS sends.
    Enforces Loki's `max_entries_limit_per_query` (5000) and, if `tenant` is set,
    the `X-Scope-OrgID` header of a multi-tenant Loki.
    """

    max_entries = 5000

    def __init__(self, tenant: str | None = None) -> None:
        super().__init__()
        self.tenant = tenant
        self.entries: list[tuple[dict[str, str], datetime, str]] = []

    def push(self, labels: dict[str, str], at: datetime, line: str) -> None:
        self.entries.append((labels, at, line))

    def handle(self, request: Recorded) -> Reply:
        if request.path != "/loki/api/v1/query_range":
            return Reply(404, "404 page not found\n")
        if self.tenant and request.header("X-Scope-OrgID") != self.tenant:
            return Reply(401, "no org id\n")
        query = request.param("query") or ""
        match = _LOGQL.match(query)
        if not match:
            return Reply(
                400, f"parse error at line 1, col 1: syntax error: unexpected IDENTIFIER in {query!r}\n"
            )
        limit = int(request.param("limit", "100") or 100)
        if limit > self.max_entries:
            return Reply(
                400,
                f"max entries limit per query exceeded, limit > max_entries_limit ({limit} > {self.max_entries})\n",
            )
        start_ns = int(request.param("start") or 0)
        end_ns = int(request.param("end") or time.time_ns())
        backward = (request.param("direction") or "backward") == "backward"
        label, op, value = match["label"], match["op"], _go_unquote(match["value"])
        line_filter = re.compile(_go_unquote(match["filter"])) if match["filter"] else None

        selected: list[tuple[dict[str, str], int, str]] = []
        for labels, at, line in self.entries:
            ns = int(at.timestamp() * 1_000_000_000)
            have = labels.get(label, "")
            if op == "=" and have != value or op == "=~" and not re.fullmatch(value, have):
                continue
            if not start_ns <= ns < end_ns:  # Loki's end is exclusive
                continue
            if line_filter and not line_filter.search(line):
                continue
            selected.append((labels, ns, line))
        selected.sort(key=lambda item: item[1], reverse=backward)
        selected = selected[:limit]

        streams: dict[tuple[tuple[str, str], ...], list[list[str]]] = {}
        for labels, ns, line in selected:
            streams.setdefault(tuple(sorted(labels.items())), []).append([str(ns), line])
        result = [{"stream": dict(key), "values": values} for key, values in streams.items()]
        return Reply(
            200,
            {
                "status": "success",
                "data": {
                    "resultType": "streams",
                    "result": result,
                    "stats": {"summary": {"totalEntriesReturned": len(selected)}},
                },
            },
        )


# --------------------------------------------------------------------------- Elasticsearch


def _dotted(source: dict[str, Any], path: str) -> Any:
    """ECS documents may be nested (`{"log": {"level": ...}}`) or flat (`"log.level"`)."""
    if path in source:
        return source[path]
    node: Any = source
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


class FakeElasticsearch(FakeServer):
    """`POST /<index pattern>/_search` with a `bool.filter` of range/term/terms clauses and sort."""

    def __init__(self, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key
        self.indices: dict[str, list[dict[str, Any]]] = {}

    def index(self, name: str, document: dict[str, Any]) -> None:
        self.indices.setdefault(name, []).append(document)

    @staticmethod
    def _error(status: int, kind: str, reason: str) -> Reply:
        cause = {"type": kind, "reason": reason}
        return Reply(status, {"error": {"root_cause": [cause], **cause}, "status": status})

    def _matches(self, doc: dict[str, Any], clause: dict[str, Any]) -> bool:
        ((kind, spec),) = clause.items()
        if kind == "range":
            ((fieldname, bounds),) = spec.items()
            value = _dotted(doc, fieldname)
            if value is None:
                return False
            at = _parse_time(value)
            if "gte" in bounds and at < _parse_time(bounds["gte"]):
                return False
            return not ("lte" in bounds and at > _parse_time(bounds["lte"]))
        if kind == "terms":
            ((fieldname, allowed),) = spec.items()
            return _dotted(doc, fieldname) in allowed
        if kind == "term":
            ((fieldname, wanted),) = spec.items()
            wanted = wanted["value"] if isinstance(wanted, dict) else wanted
            return _dotted(doc, fieldname) == wanted
        raise ValueError(f"unsupported clause {kind}")

    def handle(self, request: Recorded) -> Reply:
        if self.api_key and request.header("Authorization") != f"ApiKey {self.api_key}":
            return self._error(401, "security_exception", "unable to authenticate with provided credentials")
        parts = request.path.strip("/").split("/")
        if len(parts) != 2 or parts[1] != "_search" or request.method not in {"GET", "POST"}:
            return self._error(400, "illegal_argument_exception", f"no handler for {request.path}")
        pattern = parts[0]
        names = [name for name in self.indices if fnmatch.fnmatchcase(name, pattern)]
        if not names and "*" not in pattern and request.param("ignore_unavailable") != "true":
            return self._error(404, "index_not_found_exception", f"no such index [{pattern}]")
        body = request.json or {}
        size = int(body.get("size", 10))
        if size > 10_000:
            return self._error(
                400, "illegal_argument_exception", "Result window is too large, from + size must be <= 10000"
            )
        filters = body.get("query", {}).get("bool", {}).get("filter", [])
        hits: list[tuple[str, int, dict[str, Any]]] = []
        for name in names:
            for i, doc in enumerate(self.indices[name]):
                if all(self._matches(doc, clause) for clause in filters):
                    hits.append((name, i, doc))
        for sort in reversed(body.get("sort", [])):
            ((fieldname, spec),) = sort.items()
            descending = (spec.get("order") if isinstance(spec, dict) else spec) == "desc"
            hits.sort(key=lambda h, f=fieldname: str(_dotted(h[2], f)), reverse=descending)
        total = len(hits)
        timestamp_field = next(iter(body["sort"][0])) if body.get("sort") else None
        return Reply(
            200,
            {
                "took": 2,
                "timed_out": False,
                "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                "hits": {
                    "total": {"value": total, "relation": "eq"},
                    "max_score": None,
                    "hits": [
                        {
                            "_index": name,
                            "_id": f"{name}-{i}",
                            "_score": None,
                            "_source": doc,
                            **(
                                {"sort": [int(_parse_time(_dotted(doc, timestamp_field)).timestamp() * 1000)]}
                                if timestamp_field and _dotted(doc, timestamp_field)
                                else {}
                            ),
                        }
                        for name, i, doc in hits[:size]
                    ],
                },
            },
        )


# --------------------------------------------------------------------------- GitHub


GITHUB_DOCS = "https://docs.github.com/rest"


class FakeGitHub(FakeServer):
    """Deployments and deployment statuses of the REST API, paginated, rate limited.

    Pagination follows GitHub: `per_page` (default 30, max 100) and `page`, with a
    `Link` header carrying `next`/`last`/`first`/`prev`. Every answer carries
    `X-RateLimit-Limit/-Remaining/-Used/-Reset/-Resource`; when the budget is spent
    the answer is GitHub's 403 "API rate limit exceeded" body.
    """

    def __init__(self, token: str = "ghp_test", rate_limit: int = 5000) -> None:
        super().__init__()
        self.token = token
        self.rate_limit = rate_limit
        self.remaining = rate_limit
        self.reset_at = int(time.time()) + 3600
        self.deployments: dict[str, list[dict[str, Any]]] = {}
        self.statuses: dict[int, list[dict[str, Any]]] = {}
        self._next_id = 1000

    def add_deployment(
        self,
        repo: str,
        *,
        sha: str,
        created_at: datetime,
        environment: str = "production",
        ref: str = "main",
        creator: str = "deployer",
        description: str = "",
        states: list[str] | None = None,
    ) -> int:
        """Add a deployment; `states` are its statuses oldest first (GitHub lists newest first)."""
        self._next_id += 1
        dep_id = self._next_id
        owner, name = repo.split("/")
        self.deployments.setdefault(repo, []).append(
            {
                "url": f"{self.url}/repos/{repo}/deployments/{dep_id}",
                "id": dep_id,
                "node_id": f"DE_{dep_id}",
                "sha": sha,
                "ref": ref,
                "task": "deploy",
                "payload": {},
                "original_environment": environment,
                "environment": environment,
                "description": description or None,
                "creator": {"login": creator, "id": 1, "type": "User"},
                "created_at": created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "updated_at": created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "statuses_url": f"{self.url}/repos/{repo}/deployments/{dep_id}/statuses",
                "repository_url": f"{self.url}/repos/{repo}",
                "transient_environment": False,
                "production_environment": environment == "production",
            }
        )
        self.statuses[dep_id] = [
            {
                "id": dep_id * 100 + n,
                "state": state,
                "description": f"Deployment {state}",
                "environment": environment,
                "created_at": created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "creator": {"login": "ci-bot"},
            }
            for n, state in enumerate(states or [])
        ][::-1]
        return dep_id

    def _rate_headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Used": str(self.rate_limit - self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
            "X-RateLimit-Resource": "core",
            "X-GitHub-Api-Version-Selected": "2022-11-28",
        }

    def _page(self, request: Recorded, items: list[dict[str, Any]]) -> Reply:
        per_page = min(100, int(request.param("per_page", "30") or 30))
        page = max(1, int(request.param("page", "1") or 1))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        links = []

        def link(n: int, rel: str) -> str:
            query = {k: v[0] for k, v in request.query.items()}
            query.update(per_page=str(per_page), page=str(n))
            return f'<{self.url}{request.path}?{urlencode(query)}>; rel="{rel}"'

        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first"), link(page - 1, "prev")]
        headers = self._rate_headers()
        if links:
            headers["Link"] = ", ".join(links)
        return Reply(200, chunk, headers)

    def handle(self, request: Recorded) -> Reply:
        auth = request.header("Authorization") or ""
        if auth not in {f"Bearer {self.token}", f"token {self.token}"}:
            return Reply(
                401, {"message": "Bad credentials", "documentation_url": GITHUB_DOCS, "status": "401"}
            )
        if self.remaining <= 0:
            return Reply(
                403,
                {
                    "message": "API rate limit exceeded for user ID 1. If you reach out to GitHub Support "
                    "for help, please include the request ID.",
                    "documentation_url": f"{GITHUB_DOCS}/overview/rate-limits-for-the-rest-api",
                    "status": "403",
                },
                self._rate_headers(),
            )
        self.remaining -= 1
        match = re.fullmatch(r"/repos/([^/]+/[^/]+)/deployments(?:/(\d+)/statuses)?", request.path)
        if not match or match[1] not in self.deployments:
            return Reply(
                404,
                {"message": "Not Found", "documentation_url": GITHUB_DOCS, "status": "404"},
                self._rate_headers(),
            )
        repo, dep_id = match[1], match[2]
        if dep_id is not None:
            return self._page(request, self.statuses.get(int(dep_id), []))
        items = sorted(self.deployments[repo], key=lambda d: d["created_at"], reverse=True)
        for key in ("environment", "sha", "ref", "task"):
            wanted = request.param(key)
            if wanted is not None:
                items = [d for d in items if d[key] == wanted]
        return self._page(request, items)


# --------------------------------------------------------------------------- Slack


class FakeSlack(FakeServer):
    """`chat.postMessage` and `chat.update` of the Web API (base URL `<url>/api/`).

    Errors are Slack's: HTTP 200 with `{"ok": false, "error": ...}` for a bad token,
    an unknown channel or message; 429 with `Retry-After` when scripted.
    `chat.update` needs the channel *id* the post returned, as on real Slack.
    """

    def __init__(self, token: str = "xoxb-test", channels: dict[str, str] | None = None) -> None:
        super().__init__()
        self.token = token
        self.channels = channels or {"#incidents": "C0INCIDENT"}
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._counter = 0

    @staticmethod
    def rate_limited(retry_after: int = 1) -> Reply:
        return Reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})

    def _args(self, request: Recorded) -> dict[str, Any]:
        content_type = request.header("Content-Type") or ""
        if content_type.startswith("application/json"):
            return dict(request.json or {})
        return {k: v[0] for k, v in parse_qs(request.body.decode()).items()}

    def handle(self, request: Recorded) -> Reply:
        method = request.path.removeprefix("/api/")
        if request.header("Authorization") != f"Bearer {self.token}":
            return Reply(200, {"ok": False, "error": "invalid_auth"})
        args = self._args(request)
        for key in ("blocks", "attachments"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        if method == "chat.postMessage":
            channel = args.get("channel", "")
            channel_id = self.channels.get(channel, channel if channel in self.channels.values() else None)
            if channel_id is None:
                return Reply(200, {"ok": False, "error": "channel_not_found"})
            if not args.get("text") and not args.get("blocks"):
                return Reply(200, {"ok": False, "error": "no_text"})
            if len(args.get("blocks") or []) > 50:
                return Reply(200, {"ok": False, "error": "invalid_blocks"})
            self._counter += 1
            ts = f"{int(time.time())}.{self._counter:06d}"
            message = {
                "type": "message",
                "text": args.get("text", ""),
                "blocks": args.get("blocks"),
                "ts": ts,
            }
            if args.get("thread_ts"):
                message["thread_ts"] = args["thread_ts"]
            self.messages[(channel_id, ts)] = message
            return Reply(200, {"ok": True, "channel": channel_id, "ts": ts, "message": message})
        if method == "chat.update":
            key = (args.get("channel", ""), args.get("ts", ""))
            if key[0] not in self.channels.values():
                return Reply(200, {"ok": False, "error": "channel_not_found"})
            if key not in self.messages:
                return Reply(200, {"ok": False, "error": "message_not_found"})
            self.messages[key].update(text=args.get("text", ""), blocks=args.get("blocks"))
            return Reply(200, {"ok": True, "channel": key[0], "ts": key[1], "text": args.get("text", "")})
        return Reply(200, {"ok": False, "error": "unknown_method"})

    def posts(self) -> list[dict[str, Any]]:
        return list(self.messages.values())


# --------------------------------------------------------------------------- PagerDuty


class FakePagerDuty(FakeServer):
    """Events API v2 (`POST /v2/enqueue`), with its validation and its answers.

    A trigger with an open `dedup_key` is merged into the same alert, as PagerDuty
    does; `alerts` maps dedup_key → {"status", "events"}.
    """

    severities = {"critical", "error", "warning", "info"}

    def __init__(self) -> None:
        super().__init__()
        self.alerts: dict[str, dict[str, Any]] = {}
        self._generated = 0

    @staticmethod
    def throttled() -> Reply:
        return Reply(
            429,
            {
                "status": "throttle event",
                "message": "Requests for this service are arriving too quickly.  Please retry later.",
            },
        )

    @staticmethod
    def server_error() -> Reply:
        return Reply(500, "<html><body><h1>500 Internal Server Error</h1></body></html>")

    @staticmethod
    def _invalid(*errors: str) -> Reply:
        return Reply(
            400, {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)}
        )

    def handle(self, request: Recorded) -> Reply:
        if request.path != "/v2/enqueue" or request.method != "POST":
            return Reply(404, {"status": "not found", "message": "Not found"})
        try:
            event = request.json
        except ValueError:
            return Reply(
                400,
                {"status": "invalid event", "message": "Event object is invalid", "errors": ["Invalid JSON"]},
            )
        errors = []
        key = event.get("routing_key")
        if not isinstance(key, str) or len(key) != 32:
            errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
        action = event.get("event_action")
        if action not in {"trigger", "acknowledge", "resolve"}:
            errors.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
        dedup_key = event.get("dedup_key")
        if action == "trigger":
            payload = event.get("payload") or {}
            for name in ("summary", "source", "severity"):
                if not payload.get(name):
                    errors.append(f"'payload.{name}' is missing or blank")
            if payload.get("severity") and payload["severity"] not in self.severities:
                errors.append(
                    "'payload.severity' is invalid (must be one of: critical, error, warning, info)"
                )
            if len(payload.get("summary") or "") > 1024:
                errors.append("'payload.summary' is too long (maximum is 1024 characters)")
        elif not dedup_key:
            errors.append("'dedup_key' is missing or blank")
        if errors:
            return self._invalid(*errors)
        if not dedup_key:
            self._generated += 1
            dedup_key = f"generated-{self._generated:08x}"
        alert = self.alerts.setdefault(dedup_key, {"status": "triggered", "events": []})
        alert["events"].append(event)
        if action == "resolve":
            alert["status"] = "resolved"
        elif action == "trigger" and alert["status"] == "resolved":
            alert["status"] = "triggered"
        return Reply(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key})


def iter_payloads(server: FakeServer, path_prefix: str = "") -> Iterator[Any]:
    """Decoded JSON bodies of the recorded requests, in order."""
    for request in server.calls(path_prefix):
        yield request.json
