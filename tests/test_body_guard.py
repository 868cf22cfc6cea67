"""Request bodies on the real server `iras run` uses (werkzeug's threaded server with
IRAS's handler): over the limit is 413 however the body is framed, and slow
senders neither stall other requests nor hold their connection past the body
timeout (issue 19)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from iras.config import reset_settings
from iras.db import new_session
from iras.models import DeadLetter, Incident

LIMIT = 1024 * 1024


@pytest.fixture
def server(iras_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from iras.embedded import make_web_server
    from iras.web import create_app

    monkeypatch.setenv("BODY_READ_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("WEBHOOK_RATE_LIMIT_PER_SECOND", "0")
    reset_settings()
    srv = make_web_server("127.0.0.1", 0, create_app(), 2.0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{srv.server_port}"
    srv.shutdown()
    reset_settings()


def _raw(address: str, request: bytes, timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body or b"{}")


def _chunked(path: str, body: bytes, chunk: int = 64 * 1024) -> bytes:
    parts = [
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
    ]
    for i in range(0, len(body), chunk):
        piece = body[i : i + chunk]
        parts.append(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)


def _rows() -> tuple[int, int]:
    with new_session() as s:
        return (
            int(s.scalar(select(func.count()).select_from(Incident)) or 0),
            int(s.scalar(select(func.count()).select_from(DeadLetter)) or 0),
        )


def _alert(size: int) -> bytes:
    doc = {"title": "t", "timestamp": "2026-11-25T10:00:00Z", "service": "api", "pad": ""}
    base = len(json.dumps(doc))
    doc["pad"] = "x" * (size - base)
    return json.dumps(doc).encode()


def test_a_chunked_body_valid_for_its_first_mebibyte_and_longer_is_413(server: str) -> None:
    body = _alert(LIMIT - 10) + b" " * 5000  # valid JSON up to the limit, more bytes after it
    status, doc = _raw(server, _chunked("/webhook/alert", body))
    assert status == 413, doc
    assert doc["limit_bytes"] == LIMIT
    assert _rows() == (0, 0)


def test_a_1_1_mb_chunked_body_is_413_without_a_dead_letter(server: str) -> None:
    status, doc = _raw(server, _chunked("/webhook/alert", _alert(1_100_000)))
    assert status == 413, doc
    assert _rows() == (0, 0)


def test_a_chunked_body_within_the_limit_is_ingested(server: str) -> None:
    status, doc = _raw(server, _chunked("/webhook/alert", _alert(2000), chunk=100))
    assert status == 202, doc
    assert _rows() == (1, 0)


def test_a_declared_length_over_the_limit_is_413_before_reading(server: str) -> None:
    request = (
        f"POST /webhook/alert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {LIMIT + 1}\r\nConnection: close\r\n\r\n{{"
    ).encode()
    status, _ = _raw(server, request)
    assert status == 413


SLOW_PATHS = ["/slack/actions", "/ui/login", "/webhook/alert"]


def _slow_client(address: str, path: str) -> socket.socket:
    host, port = address.split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        "Content-Length: 1000\r\n\r\nab".encode()  # 2 of the 1,000 declared bytes, then nothing
    )
    return sock


def test_health_answers_within_a_second_while_200_slow_clients_hold_bodies(server: str) -> None:
    clients = [_slow_client(server, SLOW_PATHS[i % len(SLOW_PATHS)]) for i in range(200)]
    try:
        time.sleep(0.3)
        worst = 0.0
        for _ in range(5):
            started = time.monotonic()
            response = requests.get(f"http://{server}/health", timeout=5)
            worst = max(worst, time.monotonic() - started)
            assert response.status_code == 200
        assert worst < 1.0, f"/health took {worst:.2f} s"
        # Each slow client is answered 408 and closed once the body timeout (2 s) passes.
        deadline = time.monotonic() + 10
        answered = 0
        for sock in clients:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            data = sock.recv(4096)
            if data.startswith(b"HTTP/1.1 408") or data.startswith(b"HTTP/1.0 408") or data == b"":
                answered += 1
        assert answered == len(clients)
        assert time.monotonic() < deadline
    finally:
        for sock in clients:
            sock.close()


def test_a_trickling_body_is_cut_at_the_body_timeout(server: str) -> None:
    host, port = server.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /webhook/alert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\nConnection: close\r\n\r\n"
        )
        started = time.monotonic()
        answer = b""
        # One byte every 0.5 s: never idle long enough for the socket timeout alone.
        while time.monotonic() - started < 8:
            try:
                sock.sendall(b" ")
            except OSError:
                break
            sock.settimeout(0.5)
            try:
                answer = sock.recv(4096)
                if answer:
                    break
            except TimeoutError:
                continue
        assert answer.split(b"\r\n", 1)[0].endswith(b"408 REQUEST TIMEOUT"), answer[:100]
        assert time.monotonic() - started < 4
