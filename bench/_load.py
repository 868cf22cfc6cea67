"""A lean HTTP/1.1 load generator on asyncio streams (keep-alive, no client
library): at 2,000 requests/s a general-purpose client would itself eat most
of a core on the same machine and distort the numbers.

Two modes, both bounded in request count and in time:
- closed loop: `concurrency` connections each send back to back (max throughput);
- open loop: requests start on a fixed schedule (`rate`/s) whatever the server
  does, and latency is measured from the *scheduled* start, so a stalled server
  shows up in the percentiles instead of silently slowing the load down
  (coordinated omission).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    elapsed_s: float = 0.0
    bodies: list[bytes] = field(default_factory=list)
    # Open loop: (scheduled start in s from the first request, latency in ms) per answer.
    timeline: list[tuple[float, float]] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        k = min(len(data) - 1, max(0, round(p / 100 * len(data) + 0.5) - 1))
        return data[k]

    def rate(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    def stalls(self, over_ms: float = 50.0, window_s: float = 0.1, top: int = 3) -> list[list[float]]:
        """The worst `window_s` windows of an open loop whose slowest request took over
        `over_ms`: [start s, slowest ms], slowest first. One long stall (a disk flush)
        and a steadily slow server give the same p99; this tells them apart."""
        worst: dict[int, float] = {}
        for at, ms in self.timeline:
            slot = int(at / window_s)
            worst[slot] = max(worst.get(slot, 0.0), ms)
        slow = sorted(((ms, slot) for slot, ms in worst.items() if ms > over_ms), reverse=True)
        return [[round(slot * window_s, 1), round(ms, 1)] for ms, slot in slow[:top]]


class _Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes, timeout: float) -> tuple[int, bytes]:
        for attempt in (0, 1):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None and self.writer is not None
            try:
                self.writer.write(raw)
                return await asyncio.wait_for(self._response(), timeout)
            except (ConnectionError, asyncio.IncompleteReadError):
                # The server closed an idle keep-alive connection: reconnect once.
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _response(self) -> tuple[int, bytes]:
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        body = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# Extra request headers for every request (e.g. the webhook bearer token).
HEADERS: dict[str, str] = {}


# A request maker returns the body for request i, or (url, body) to post elsewhere
# than the default url (e.g. /incidents/<id>/approve).
Maker = Callable[[int], "bytes | tuple[str, bytes]"]


def _resolve(url: str, made: bytes | tuple[str, bytes]) -> bytes:
    if isinstance(made, tuple):
        return build_post(made[0], made[1])[2]
    return build_post(url, made)[2]


def build_post(url: str, body: bytes) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    extra = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    raw = (
        f"POST {target or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"{extra}Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode() + body
    return host, port, raw


async def _closed(
    url: str, bodies: Maker, count: int, concurrency: int, max_seconds: float, keep: bool
) -> LoadResult:
    result = LoadResult()
    parts = urlsplit(url)
    counter = iter(range(count))
    deadline = time.perf_counter() + max_seconds

    async def client() -> None:
        conn = _Conn(parts.hostname or "127.0.0.1", parts.port or 80)
        for i in counter:
            if time.perf_counter() > deadline:
                break
            raw = _resolve(url, bodies(i))
            t0 = time.perf_counter()
            result.sent += 1
            try:
                status, body = await conn.request(raw, 30)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1
                conn.close()
                continue
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if keep:
                result.bodies.append(body)
        conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - start
    return result


async def _open(
    url: str, bodies: Maker, rate: float, count: int, max_seconds: float, keep: bool
) -> LoadResult:
    result = LoadResult()
    parts = urlsplit(url)
    idle: list[_Conn] = []
    tasks: list[asyncio.Task[None]] = []

    async def one(i: int, scheduled: float) -> None:
        conn = idle.pop() if idle else _Conn(parts.hostname or "127.0.0.1", parts.port or 80)
        raw = _resolve(url, bodies(i))
        try:
            status, body = await conn.request(raw, 30)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            result.errors += 1
            conn.close()
            return
        latency_ms = (time.perf_counter() - scheduled) * 1000
        result.latencies_ms.append(latency_ms)
        result.timeline.append((scheduled - start, latency_ms))
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if keep:
            result.bodies.append(body)
        idle.append(conn)

    start = time.perf_counter()
    for i in range(count):
        scheduled = start + i / rate
        if scheduled - start > max_seconds:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        result.sent += 1
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    result.elapsed_s = time.perf_counter() - start
    for conn in idle:
        conn.close()
    return result


def closed_loop(
    url: str, bodies: Maker, *, count: int, concurrency: int, max_seconds: float = 60, keep: bool = False
) -> LoadResult:
    with _no_gc_pauses():
        return asyncio.run(_closed(url, bodies, count, concurrency, max_seconds, keep))


def open_loop(
    url: str, bodies: Maker, *, rate: float, count: int, max_seconds: float = 60, keep: bool = False
) -> LoadResult:
    with _no_gc_pauses():
        return asyncio.run(_open(url, bodies, rate, count, max_seconds, keep))


@contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """No cyclic garbage collection in this process while it measures: a full
    collection (the bench's imports plus 10,000 pending requests) paused the event
    loop for 40-50 ms, and the open loop counted that pause as server latency."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# --------------------------------------------------------------------------- wrk

WRK = shutil.which("wrk")

# Each wrk thread sends `quota` requests whose body is the template with the
# placeholder replaced by a key of its own (thread number + counter), then stops.
# done() prints the totals as one JSON line (wrk's own summary goes to stdout too).
_WRK_SCRIPT = r"""
local template = [==[%(template)s]==]
local headers = {}
%(headers)s
local threads = {}
local counter = 0
local thread_id = 0

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  quota = tonumber(args[1])
  prefix = args[2]
  cycle = tonumber(args[3])
end

function request()
  if counter >= quota then
    wrk.thread:stop()
  end
  counter = counter + 1
  local key = prefix .. "-" .. thread_id .. "-" .. counter
  if cycle > 0 then
    key = prefix .. "-" .. (counter %% cycle)
  end
  local body = string.gsub(template, "__KEY__", key)
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  local s = summary
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d, "p50_us": %%d, "p99_us": %%d}\n',
    s.requests, s.duration, s.errors.connect, s.errors.read, s.errors.write, s.errors.status, s.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_closed_loop(
    url: str,
    template: bytes,
    *,
    prefix: str,
    seconds: float,
    max_count: int,
    concurrency: int,
    threads: int = 1,
    cycle: int = 0,
) -> LoadResult:
    """A closed loop driven by wrk (C, epoll) instead of this module's asyncio client,
    for `seconds`: POSTs of `template` with `__KEY__` replaced by a key of their own
    (`{prefix}-{thread}-{n}`; with `cycle`, `{prefix}-{n % cycle}`: duplicates) over
    `concurrency` keep-alive connections; each wrk
    thread stops after `max_count / threads` requests (a bound, not the goal: reaching
    it would make the rate read low, so it raises). The asyncio client costs ~0.22 ms
    of CPU per request on the cores the server shares; wrk a fraction of that, so the
    figure is the server's, not the load generator's. Requests still in flight when
    the time is up are not counted by wrk but may be stored by the server. The result
    has no per-request latencies, only wrk's p50/p99 (`wrk_p50_ms`/`wrk_p99_ms`)."""
    if WRK is None:
        raise RuntimeError("wrk is not installed (Debian package wrk)")
    headers = {"Content-Type": "application/json", **HEADERS}
    lua_headers = "\n".join(f'headers["{k}"] = "{v}"' for k, v in headers.items())
    script = _WRK_SCRIPT % {"template": template.decode(), "headers": lua_headers}
    per_thread = -(-max_count // threads)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        begun = time.perf_counter()
        proc = subprocess.run(
            [
                WRK,
                "-t",
                str(threads),
                "-c",
                str(concurrency),
                "-d",
                f"{int(seconds)}s",
                "--timeout",
                "10s",
                "-s",
                f.name,
                url,
                "--",
                str(per_thread),
                prefix,
                str(cycle),
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        )
        elapsed = time.perf_counter() - begun
    finally:
        os.unlink(f.name)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON "))
    doc = json.loads(line[len("WRKJSON ") :])
    if doc["requests"] >= per_thread * threads - concurrency:
        raise RuntimeError(
            f"wrk reached its bound of {max_count} requests before {seconds}s: raise max_count"
        )
    errors = doc["connect"] + doc["read"] + doc["write"] + doc["timeout"]
    result = LoadResult(sent=doc["requests"], errors=errors, elapsed_s=doc["duration_us"] / 1e6 or elapsed)
    result.statuses = {202: doc["requests"] - doc["status"] - errors}
    if doc["status"]:
        result.statuses[0] = doc["status"]  # non-2xx/3xx: wrk does not say which
    result.wrk_p50_ms = doc["p50_us"] / 1000  # type: ignore[attr-defined]
    result.wrk_p99_ms = doc["p99_us"] / 1000  # type: ignore[attr-defined]
    return result
