"""Bodies against production's web tier: granian as the Procfile runs it, alone
(chunked bodies over the limit are 413) and behind the buffering nginx of
docker-compose (deploy/nginx.conf, issue 19).

granian hands a request to a WSGI thread before its body has arrived and has no
body timeout; nginx reads each body first. With 200 connections that sent their
headers and 2 of 1,000 declared bytes, /health still answers within a second, and
nginx answers each of them 408 once its client_body_timeout passes."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration._require import missing
from tests.support.services import ROOT, IrasProcess, free_port, wait_for_http

pytestmark = pytest.mark.integration

BODY_TIMEOUT_SECONDS = 3  # the shipped 10 s, shortened so the test waits less


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[int]:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        missing("nginx (Debian package nginx-light) not installed")
    from iras.migrate import upgrade

    database = f"sqlite:///{tmp_path / 'iras.db'}"
    upgrade(database)
    web_port, proxy_port = free_port(), free_port()
    web = IrasProcess(
        "web",
        {"DATABASE_URL": database, "CELERY_BROKER_URL": "memory://", "WEBHOOK_RATE_LIMIT_PER_SECOND": "0"},
        port=web_port,
        web_workers=2,
        web_threads=16,
        log_dir=tmp_path,
    ).start()
    # The shipped configuration, pointed at this granian, with its files in tmp_path.
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    conf = conf.replace("server web:8080;", f"server 127.0.0.1:{web_port};")
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{proxy_port};")
    conf = re.sub(r"client_body_timeout \d+s;", f"client_body_timeout {BODY_TIMEOUT_SECONDS}s;", conf)
    conf = conf.replace("worker_processes auto;", "worker_processes 1;")
    conf = (
        f"pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'nginx-error.log'};\ndaemon off;\n"
        + conf.replace(
            "access_log off;",
            "access_log off;\n"
            + "".join(
                f"    {kind}_temp_path {tmp_path / kind};\n"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            ),
        )
    )
    (tmp_path / "nginx.conf").write_text(conf)
    proxy = subprocess.Popen(
        [nginx, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{proxy_port}/health", 15)
        yield proxy_port
    finally:
        proxy.terminate()
        proxy.wait(10)
        web.stop()


def _slow_client(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        "Content-Length: 1000\r\n\r\nab".encode()
    )
    return sock


def test_health_answers_within_a_second_while_200_slow_clients_hold_bodies(proxied: int) -> None:
    paths = ["/slack/actions", "/ui/login", "/webhook/alert"]
    clients = [_slow_client(proxied, paths[i % len(paths)]) for i in range(200)]
    try:
        time.sleep(0.5)
        worst = 0.0
        for _ in range(5):
            started = time.monotonic()
            response = requests.get(f"http://127.0.0.1:{proxied}/health", timeout=10)
            worst = max(worst, time.monotonic() - started)
            assert response.status_code == 200
        print(f"slow clients behind the proxy: /health worst {worst * 1000:.0f} ms with 200 slow bodies open")
        assert worst < 1.0, f"/health took {worst:.2f} s"
        deadline = time.monotonic() + BODY_TIMEOUT_SECONDS + 10
        timed_out = 0
        for sock in clients:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            data = sock.recv(4096)
            if data.startswith(b"HTTP/1.1 408") or data == b"":
                timed_out += 1
        assert timed_out == len(clients)
        # A complete request still goes through to IRAS.
        alert = {"title": "t", "timestamp": "2026-11-25T10:00:00Z", "service": "api"}
        assert (
            requests.post(f"http://127.0.0.1:{proxied}/webhook/alert", json=alert, timeout=10).status_code
            == 202
        )
    finally:
        for sock in clients:
            sock.close()


@pytest.fixture
def granian_web(tmp_path: Path) -> Iterator[int]:
    from iras.migrate import upgrade

    database = f"sqlite:///{tmp_path / 'iras.db'}"
    upgrade(database)
    port = free_port()
    web = IrasProcess(
        "web",
        {"DATABASE_URL": database, "CELERY_BROKER_URL": "memory://", "WEBHOOK_RATE_LIMIT_PER_SECOND": "0"},
        port=port,
        web_workers=1,
        web_threads=4,
        log_dir=tmp_path,
    ).start()
    try:
        yield port
    finally:
        web.stop()


def _chunked_post(port: int, body: bytes) -> tuple[int, bytes]:
    request = (
        b"POST /webhook/alert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    for i in range(0, len(body), 65536):
        piece = body[i : i + 65536]
        request += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    request += b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split()[1]), answer.partition(b"\r\n\r\n")[2]


def test_granian_answers_413_to_chunked_bodies_over_the_limit_however_they_start(granian_web: int) -> None:
    import json

    alert = {"title": "t", "timestamp": "2026-11-25T10:00:00Z", "service": "api", "pad": ""}
    valid_mib = json.dumps({**alert, "pad": "x" * (1024 * 1024 - 100)}).encode()
    for body in (valid_mib + b" " * 5000, json.dumps({**alert, "pad": "x" * 1_100_000}).encode()):
        status, answer = _chunked_post(granian_web, body)
        assert status == 413, answer[:200]
        assert json.loads(answer)["limit_bytes"] == 1024 * 1024
    status, answer = _chunked_post(granian_web, json.dumps(alert).encode())
    assert status == 202, answer[:200]
