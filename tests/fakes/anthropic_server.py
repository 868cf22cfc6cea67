"""A local fake of the Anthropic Messages API, for tests and benchmarks.

It speaks the real wire format, so the real `anthropic` client and `instructor`
run unmodified against it:

* `POST /v1/messages` with `x-api-key` or a bearer token; replies are `message` objects with
  `tool_use` (or `text`) content blocks, `stop_reason` and `usage` including
  `cache_creation_input_tokens` / `cache_read_input_tokens`;
* errors are `{"type": "error", "error": {"type": ..., "message": ...}}` with the
  real status codes (400, 401, 403, 404, 413, 429, 500, 529) and a
  `retry-after` header when asked for.

Each test scripts it: `server.enqueue(...)` queues replies (used in order, one
per request), and when the queue is empty `server.responder` answers (by
default `realistic`, which returns a valid, plausible tool call for whichever
tool the request forces, reading the evidence from the prompt). Every request is
recorded in `server.requests`. `latency` (seconds per model) makes benchmarks
see realistic model wall time.

Use the `fake_anthropic` fixture: it starts a server, points `ANTHROPIC_BASE_URL`
and `ANTHROPIC_API_KEY` at it and resets the cached settings.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

API_KEY = "sk-ant-test-fake-key"

# Status code -> the `error.type` the real API sends with it.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class _Server(ThreadingHTTPServer):
    # The stdlib's listen backlog is 5: 200 workers connecting at once (a benchmark
    # burst) overflow it, the dropped SYNs are retransmitted 1 s, then 3 s later, and
    # the model calls look seconds slower than the configured latency. The real API
    # accepts them: so does the fake.
    request_queue_size = 1024


# --------------------------------------------------------------------------- requests and replies


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def tools(self) -> list[dict[str, Any]]:
        return list(self.body.get("tools") or [])

    @property
    def tool_name(self) -> str | None:
        """The tool the request forces (instructor's tool mode), else the first tool offered."""
        choice = self.body.get("tool_choice") or {}
        if choice.get("type") == "tool":
            return str(choice["name"])
        return str(self.tools[0]["name"]) if self.tools else None

    @property
    def tool_schema(self) -> dict[str, Any] | None:
        for tool in self.tools:
            if tool.get("name") == self.tool_name:
                return dict(tool.get("input_schema") or {})
        return None

    @property
    def system_text(self) -> str:
        system = self.body.get("system")
        if isinstance(system, str):
            return system
        return "\n".join(block.get("text", "") for block in system or [])

    @property
    def system_cache_marked(self) -> bool:
        system = self.body.get("system")
        return isinstance(system, list) and any("cache_control" in block for block in system)

    def message_texts(self) -> list[str]:
        """Every text in the conversation, tool_result contents included, in order."""
        texts: list[str] = []
        for message in self.body.get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                texts.append(content)
                continue
            for block in content or []:
                if block.get("type") == "text":
                    texts.append(block.get("text", ""))
                elif block.get("type") == "tool_result":
                    inner = block.get("content")
                    texts.append(inner if isinstance(inner, str) else json.dumps(inner))
                elif block.get("type") == "tool_use":
                    texts.append(json.dumps(block.get("input")))
        return texts

    @property
    def user_text(self) -> str:
        """The first user message: the prompt the analyst built."""
        texts = self.message_texts()
        return texts[0] if texts else ""

    @property
    def is_reask(self) -> bool:
        return len(self.body.get("messages", [])) > 1

    def prompt_chars(self) -> int:
        """Characters of everything the model reads: tools, system and messages."""
        return len(json.dumps(self.tools)) + len(self.system_text) + sum(len(t) for t in self.message_texts())


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)
    delay: float | None = None  # overrides the model latency for this reply


Responder = Callable[[RecordedRequest], Reply]
Scripted = Reply | Responder


_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_fake{next(_ids):020d}"


def message(request: RecordedRequest, content: list[dict[str, Any]], stop_reason: str) -> Reply:
    """A complete `message` body; usage is filled in by the server."""
    return Reply(
        200,
        {
            "id": _id("msg"),
            "type": "message",
            "role": "assistant",
            "model": request.model or "claude-fake",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": None,
        },
    )


def tool_use(
    tool_input: dict[str, Any], *, name: str | None = None, preamble: str | None = None
) -> Responder:
    """Reply with one `tool_use` block carrying `tool_input` (for the forced tool unless `name`)."""

    def respond(request: RecordedRequest) -> Reply:
        content: list[dict[str, Any]] = []
        if preamble:
            content.append({"type": "text", "text": preamble})
        content.append(
            {
                "type": "tool_use",
                "id": _id("toolu"),
                "name": name or request.tool_name or "tool",
                "input": tool_input,
            }
        )
        return message(request, content, "tool_use")

    return respond


def prose(text: str) -> Responder:
    """Reply with text only, no tool call: a model that ignores the tool."""
    return lambda request: message(request, [{"type": "text", "text": text}], "end_turn")


def truncated(tool_input: dict[str, Any]) -> Responder:
    """A tool call cut off by `max_tokens`."""

    def respond(request: RecordedRequest) -> Reply:
        reply = tool_use(tool_input)(request)
        assert isinstance(reply.body, dict)
        reply.body["stop_reason"] = "max_tokens"
        return reply

    return respond


def error(status: int, message_text: str | None = None, *, retry_after: float | None = None) -> Reply:
    """An API error with the real body shape and status; `retry_after` sets the header (seconds)."""
    error_type = ERROR_TYPES.get(status, "api_error")
    headers = {"request-id": _id("req")}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    # The SDK retries these itself unless told otherwise; the analyst runs with
    # max_retries=0, and this header makes sure a misconfigured client would not either.
    headers["x-should-retry"] = "false"
    body = {
        "type": "error",
        "error": {"type": error_type, "message": message_text or error_type.replace("_", " ")},
        "request_id": headers["request-id"],
    }
    return Reply(status, body, headers)


# --------------------------------------------------------------------------- schema-derived answers


def example_from_schema(schema: dict[str, Any], defs: dict[str, Any] | None = None, key: str = "") -> Any:
    """A value that validates against `schema` (the subset pydantic emits)."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return example_from_schema(defs[schema["$ref"].split("/")[-1]], defs, key)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for union in ("anyOf", "oneOf"):
        if union in schema:
            options = [s for s in schema[union] if s.get("type") != "null"] or schema[union]
            return example_from_schema(options[0], defs, key)
    if "allOf" in schema:
        return example_from_schema(schema["allOf"][0], defs, key)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {
            name: example_from_schema(sub, defs, name) for name, sub in schema.get("properties", {}).items()
        }
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [example_from_schema(schema.get("items", {}), defs, key) for _ in range(count)]
    if kind == "boolean":
        return bool(schema.get("default", True))
    if kind == "integer":
        if "exclusiveMinimum" in schema:
            return int(schema["exclusiveMinimum"]) + 1
        return int(schema.get("minimum", 1))
    if kind == "number":
        low = float(schema.get("minimum", 0.0))
        high = float(schema.get("maximum", low + 1.0))
        return round(low + (high - low) * 0.8, 3)
    if kind == "string":
        if schema.get("format") == "date-time":
            return datetime.now(UTC).isoformat()
        text = f"example {key or 'value'}"
        return text.ljust(int(schema.get("minLength", 0)), "x")
    return None


def schema_example(request: RecordedRequest) -> Reply:
    """Responder: a valid tool call for whichever tool is forced, derived from its JSON schema."""
    schema = request.tool_schema
    if schema is None:
        return prose("I have no tool to call.")(request)
    return tool_use(example_from_schema(schema))(request)


# --------------------------------------------------------------------------- realistic answers

_SHA = re.compile(r"sha=([0-9a-f]{40})\s+service=(\S+)")
_LOG = re.compile(r"^\s*(?:\(x\d+\) )?\S+ (ERROR|WARN|INFO|DEBUG) (\S+) \| (.+)$", re.MULTILINE)
_FIELD = re.compile(r"^(\w+): (.+)$", re.MULTILINE)
_TRIAGE_SEVERITY = re.compile(r"^Triage \(from the alert alone\) said: severity (P[0-3])\b", re.MULTILINE)


def _fields(text: str) -> dict[str, str]:
    return {name: value.strip() for name, value in _FIELD.findall(text)}


def realistic(request: RecordedRequest) -> Reply:
    """Responder: what a competent model would answer for the IRAS stage tools.

    It reads the prompt the analyst built (alert fields, deployments, log lines)
    so an end-to-end run gets a diagnosis that passes verification: the
    citation is a real log line and the culprit deployment is one it was shown.
    Unknown tools get a schema-derived answer.
    """
    prompt = request.user_text
    fields = _fields(prompt)
    service = fields.get("service") or fields.get("culprit_service") or "unknown-service"
    name = request.tool_name
    if name == "TriageResult":
        return tool_use(
            {
                "severity": "P1",
                "affected_services": [service],
                "blast_radius": f"Requests to {service} are failing for a share of customers.",
                "confidence": 0.8,
                "rationale": "The alert reports an elevated error ratio on a customer-facing service.",
            }
        )(request)
    if name == "RootCauseHypothesis":
        # The newest deployment of the alerting service, else the newest of all.
        deploys = [d for d in _SHA.findall(prompt) if d[1] == service] or _SHA.findall(prompt)
        errors = [m for m in _LOG.findall(prompt) if m[0] == "ERROR"] or _LOG.findall(prompt)
        culprit_sha, culprit = (deploys[-1][0], deploys[-1][1]) if deploys else (None, service)
        evidence = [errors[-1][2].strip()] if errors else []
        category = "bad_deploy" if culprit_sha else "dependency_failure"
        triage_severity = _TRIAGE_SEVERITY.search(prompt)
        return tool_use(
            {
                "primary_cause": (
                    f"Deployment {culprit_sha[:7]} of {culprit} introduced errors"
                    if culprit_sha
                    else f"{culprit} is failing"
                ),
                "category": category,
                "culprit_service": culprit,
                "culprit_deployment_sha": culprit_sha,
                "contributing_factors": [],
                "evidence": evidence,
                "confidence": 0.85 if culprit_sha and evidence else 0.6,
                "reasoning": ["Errors start right after the newest deployment of the culprit service."],
                "suspects": [
                    {
                        "service": culprit,
                        "score": 0.8,
                        "category": category,
                        "reason": "its own errors start right after its newest deployment",
                        "evidence": evidence,
                    }
                ],
                # With nothing in the evidence to contradict it, triage's severity stands.
                "severity": triage_severity.group(1) if triage_severity else None,
                "severity_reason": "the evidence agrees with triage" if triage_severity else None,
            }
        )(request)
    if name == "RemediationPlan":
        culprit = fields.get("culprit_service", service)
        has_sha = fields.get("culprit_deployment_sha", "none") not in ("none", "None", "")
        action, verb = ("rollback_deployment", "undo") if has_sha else ("restart_service", "restart")
        return tool_use(
            {
                "summary": f"Roll back {culprit}" if has_sha else f"Restart {culprit}",
                "steps": [
                    {
                        "order": 1,
                        "action": action,
                        "description": f"kubectl rollout {verb} of {culprit}",
                        "command": f"kubectl rollout {verb} deployment/{culprit}",
                        "rollback_command": f"kubectl rollout undo deployment/{culprit}",
                        "risk_level": "medium",
                        "estimated_duration_seconds": 120,
                    }
                ],
                "requires_human_approval": True,
                "reversible": True,
                "safety_notes": [],
            }
        )(request)
    if name == "PostMortemNarrative":
        return tool_use(
            {
                "title": f"{service}: incident review",
                "summary": "An alert fired, the pipeline diagnosed the cause and remediated it.",
                "impact": f"Customers of {service} saw errors until remediation completed.",
                "root_cause": fields.get("primary_cause", "See the root-cause analysis."),
                "resolution": "The remediation plan was approved and executed.",
                "action_items": ["Add a canary stage to the deployment pipeline."],
            }
        )(request)
    return schema_example(request)


# --------------------------------------------------------------------------- server


class FakeAnthropicServer:
    """Threaded HTTP server on 127.0.0.1 (free port) that answers like the Messages API."""

    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        responder: Responder = realistic,
        latency: dict[str, float] | None = None,
        default_latency: float = 0.0,
        min_cacheable_tokens: int = 1024,
    ) -> None:
        self.api_key = api_key
        self.responder = responder
        self.latency = dict(latency or {})
        self.default_latency = default_latency
        # The real API caches a prefix only from 1024 tokens (Sonnet) up; tests lower it.
        self.min_cacheable_tokens = min_cacheable_tokens
        self.requests: list[RecordedRequest] = []
        self._queue: list[Scripted] = []
        self._cached_prefixes: set[str] = set()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting -----------------------------------------------------------
    def enqueue(self, *replies: Scripted) -> None:
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def requests_for(self, tool_name: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.tool_name == tool_name]

    # -- lifecycle -----------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeAnthropicServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body in one segment, Nagle off: otherwise delayed ACKs add ~40 ms per call.
            disable_nagle_algorithm = True
            wbufsize = 1 << 16

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return  # keep test output quiet

            def do_POST(self) -> None:  # noqa: N802 - stdlib naming
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                server._handle(self, raw)

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-anthropic",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeAnthropicServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling ----------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        path = handler.path.split("?")[0]
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send(handler, error(400, "request body is not valid JSON"))
            return
        request = RecordedRequest("POST", path, headers, body)
        if path != "/v1/messages":
            self._send(handler, error(404, f"unknown path {path}"))
            return
        # SDKs send the key as `x-api-key` (1.x) or `Authorization: Bearer` (2.x).
        bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if self.api_key not in (headers.get("x-api-key"), bearer):
            self._send(handler, error(401, "invalid x-api-key"))
            return
        for required in ("model", "max_tokens", "messages"):
            if required not in body:
                self._send(handler, error(400, f"{required}: Field required"))
                return
        with self._lock:
            self.requests.append(request)
            scripted = self._queue.pop(0) if self._queue else self.responder
        reply = scripted if isinstance(scripted, Reply) else scripted(request)
        if reply.status == 200 and isinstance(reply.body, dict) and reply.body.get("type") == "message":
            reply.body["usage"] = self._usage(request, reply.body)
        delay = (
            reply.delay if reply.delay is not None else self.latency.get(request.model, self.default_latency)
        )
        if delay:
            time.sleep(delay)
        self._send(handler, reply)

    def _usage(self, request: RecordedRequest, body: dict[str, Any]) -> dict[str, Any]:
        """Token counts at ~4 characters per token, with prompt caching of tools+system.

        The cached prefix is what precedes the last `cache_control` marker (tools,
        then system); the first request with a given prefix writes the cache, the
        next ones read it, as the real API does within the cache lifetime.
        """
        total = max(1, request.prompt_chars() // 4)
        cache_read = cache_creation = 0
        if request.system_cache_marked:
            prefix_text = json.dumps(request.tools) + request.system_text
            prefix_tokens = len(prefix_text) // 4
            if prefix_tokens >= self.min_cacheable_tokens:
                key = hashlib.sha256(f"{request.model}\0{prefix_text}".encode()).hexdigest()
                with self._lock:
                    seen = key in self._cached_prefixes
                    self._cached_prefixes.add(key)
                if seen:
                    cache_read = prefix_tokens
                else:
                    cache_creation = prefix_tokens
        output = max(1, len(json.dumps(body.get("content"))) // 4)
        return {
            "input_tokens": max(0, total - cache_read - cache_creation),
            "output_tokens": output,
            "cache_creation_input_tokens": cache_creation,
            "cache_read_input_tokens": cache_read,
            "service_tier": "standard",
        }

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        payload = (reply.body if isinstance(reply.body, str) else json.dumps(reply.body)).encode()
        handler.send_response(reply.status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(payload)))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        # The client may have given up first (a timeout test): nothing left to answer.
        with contextlib.suppress(OSError):
            handler.wfile.write(payload)


@pytest.fixture
def fake_anthropic(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAnthropicServer]:
    """A running fake API; `ANTHROPIC_BASE_URL`/`ANTHROPIC_API_KEY` point at it for this test."""
    from iras.config import reset_settings

    server = FakeAnthropicServer().start()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", server.api_key)
    reset_settings()
    try:
        yield server
    finally:
        server.stop()
        reset_settings()


def main(argv: list[str] | None = None) -> None:
    """Run the fake standalone (for benchmarks whose workers are separate processes).

    python -m tests.fakes.anthropic_server --latency claude-sonnet-5-5=2.5 --latency claude-haiku-5-5=0.6
    prints `ANTHROPIC_BASE_URL=...` and `ANTHROPIC_API_KEY=...`, then serves until interrupted.
    """
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--latency", action="append", default=[], metavar="MODEL=SECONDS")
    parser.add_argument("--default-latency", type=float, default=0.0)
    args = parser.parse_args(argv)
    latency = {model: float(seconds) for model, seconds in (item.split("=", 1) for item in args.latency)}
    server = FakeAnthropicServer(latency=latency, default_latency=args.default_latency).start()
    print(f"ANTHROPIC_BASE_URL={server.url}\nANTHROPIC_API_KEY={server.api_key}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
