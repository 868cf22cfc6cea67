"""The request body, read once, bounded in size and in time, before any handler.

Two things the WSGI servers IRAS runs on do not bound:

* size, however the body is framed: werkzeug enforces MAX_CONTENT_LENGTH on a
  chunked body by stopping at the limit, so the first 1 MiB of a longer body was
  read as if it were all of it (a 202 for a truncated body, or a 400 and a
  truncated dead letter). Here a body over the limit is a 413, with a
  Content-Length or chunked;
* time: a client that sends its headers and then a few bytes of the body holds a
  server thread for as long as it likes. Here the whole body must arrive within
  BODY_READ_TIMEOUT_SECONDS, else 408. On werkzeug's server (`iras run`) the
  socket's own timeout is set to what is left of that time before each read, so an
  idle client is cut off too; on granian a read that waits for bytes that never
  come returns only when the client sends or goes away (granian has no body
  timeout), which is what the buffering proxy in docker-compose is for.

The handlers then read a complete body from memory: `wsgi.input` is replaced with
the bytes read and CONTENT_LENGTH set to their length, so every path (Flask, the
webhook fast path) sees one framing.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

READ_CHUNK = 64 * 1024


class BodyGuard:
    """WSGI middleware: buffer the request body within `max_bytes` and `timeout` seconds."""

    def __init__(self, app: WSGIApp, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        declared = environ.get("CONTENT_LENGTH") or ""
        if not chunked and not declared:
            return self.app(environ, start_response)
        length: int | None = None
        if not chunked:
            if not declared.isdigit() or not declared.isascii():
                return _answer(start_response, 400, "bad_request", "Content-Length is not a number")
            length = int(declared)
            if length > self.max_bytes:
                return _too_large(start_response, self.max_bytes)
            if length == 0:
                return self.app(environ, start_response)
        try:
            body = self._read(environ, length)
        except _TooSlow:
            log.warning("request body not received in time", extra={"event": "body_timeout"})
            return _answer(
                start_response,
                408,
                "request_timeout",
                f"the request body did not arrive within {self.timeout:g} s (BODY_READ_TIMEOUT_SECONDS)",
            )
        if body is None:
            return _too_large(start_response, self.max_bytes)
        if length is not None and len(body) < length:
            return _answer(start_response, 400, "bad_request", "the body is shorter than its Content-Length")
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["wsgi.input_terminated"] = True
        return self.app(environ, start_response)

    def _read(self, environ: dict[str, Any], length: int | None) -> bytes | None:
        """The body, or None when a chunked body grows past the limit. Raises _TooSlow."""
        stream = environ["wsgi.input"]
        sock = environ.get("werkzeug.socket")
        wanted = length if length is not None else self.max_bytes + 1
        # A single recv where the stream offers it: a trickle then returns byte by byte
        # and the deadline is checked between them.
        read = getattr(stream, "read1", None) if length is not None else None
        deadline = time.monotonic() + self.timeout
        before = sock.gettimeout() if isinstance(sock, socket.socket) else None
        parts: list[bytes] = []
        got = 0
        try:
            while got < wanted:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _TooSlow
                if isinstance(sock, socket.socket):
                    sock.settimeout(left)
                size = min(READ_CHUNK, wanted - got)
                chunk = read(size) if read is not None else stream.read(size)
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
        except TimeoutError as exc:
            raise _TooSlow from exc
        finally:
            if isinstance(sock, socket.socket):
                sock.settimeout(before)
        if length is None and got > self.max_bytes:
            return None
        return b"".join(parts)


class _TooSlow(Exception):
    pass


def _too_large(start_response: Callable[..., Any], limit: int) -> list[bytes]:
    return _answer(
        start_response,
        413,
        "payload_too_large",
        f"body larger than the limit of {limit} bytes (MAX_PAYLOAD_BYTES)",
        limit_bytes=limit,
    )


def _answer(
    start_response: Callable[..., Any], status: int, name: str, reason: str, **extra: Any
) -> list[bytes]:
    body = json.dumps({"error": name, "reason": reason, **extra}).encode()
    lines = {400: "400 BAD REQUEST", 408: "408 REQUEST TIMEOUT", 413: "413 REQUEST ENTITY TOO LARGE"}
    # The rest of the body is not read: the connection cannot be reused.
    start_response(
        lines[status],
        [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Connection", "close")],
    )
    return [body]
