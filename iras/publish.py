"""Ready-made Celery messages, LPUSHed straight onto a Redis broker.

With a Redis broker a Celery (protocol 2) message is one JSON document LPUSHed to
its queue's list. kombu's publish path (routing, the producer pool, the publish
signals, a round trip per message) costs ~1 ms of CPU per message: a quarter of an
approval's web CPU in py-spy. `RedisPublisher` builds the document kombu would
build (same headers and properties as `celery.app.amqp.AMQP.as_task_v2`, the
route Celery's router gives the task) and pushes it, one message or a whole batch
in one round trip.

Only what this app's configuration uses is handled: a task routed to a queue of a
direct exchange, JSON, no compression, priority 0, no ETA. For any other route
`send`/`publish` return False and the caller publishes through kombu.
`before_task_publish` is not sent: its one receiver (iras.metrics) stamps
`iras_sent_at`, which the message carries here.

A failed push raises (redis.RedisError), as kombu's publish did: the callers log
it and the stuck-incident sweeper re-sends.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

REDIS_SCHEMES = ("redis://", "rediss://")
# kombu's delivery modes (kombu.entity.DELIVERY_MODES).
_DELIVERY_MODES = {"transient": 1, "persistent": 2}
_NO_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def is_redis_url(url: str) -> bool:
    return url.startswith(REDIS_SCHEMES)


@dataclass(frozen=True)
class Route:
    """Where kombu would put a task's messages: the Redis list (the queue's name at
    priority 0) and the delivery_info kombu records (anonymous exchange for a direct
    route, routing key = queue), plus the task's header defaults."""

    queue: str
    exchange: str
    routing_key: str
    delivery_mode: int
    ignore_result: bool | None


class RedisPublisher:
    """Builds and pushes ready-made Celery messages for one Redis broker URL.

    Thread-safe (redis-py's client draws connections from its pool). One per process:
    use `publisher_for`, which makes a new one after a fork."""

    def __init__(self, broker_url: str, app: Celery | None = None) -> None:
        import redis
        from celery.utils.nodenames import anon_nodename

        if app is None:
            from iras.celery_app import celery_app

            app = celery_app
        self.broker_url = broker_url
        self.app: Celery = app
        # The timeouts of the kombu transport (iras.celery_app): a publish during a
        # Redis outage fails fast instead of hanging the request that committed.
        self.redis: Any = redis.Redis.from_url(broker_url, socket_timeout=5, socket_connect_timeout=3)
        self.origin = anon_nodename()
        self._routes: dict[str, Route | None] = {}
        conf = app.conf
        self._plain = (
            int(conf.task_protocol) == 2
            and conf.task_serializer == "json"
            and not conf.task_compression
            and not (conf.broker_transport_options or {}).get("global_keyprefix")
        )

    # ------------------------------------------------------------------ routing

    def route(self, task_name: str) -> Route | None:
        """The task's route (resolved once per name: this app's routes do not depend on
        the arguments), or None when kombu must publish it (see the module doc)."""
        try:
            return self._routes[task_name]
        except KeyError:
            route = self._routes[task_name] = self._resolve(task_name) if self._plain else None
            return route

    def _resolve(self, task_name: str) -> Route | None:
        """What `celery.app.amqp` `send_task_message` does with the router's answer."""
        from kombu import Queue
        from kombu.common import Broadcast

        app = self.app
        options = app.amqp.router.route({}, task_name, (), {})
        queue = options.get("queue")
        if not isinstance(queue, Queue) or isinstance(queue, Broadcast):  # a Broadcast fans out
            return None
        exchange_type = options.get("exchange_type") or getattr(queue.exchange, "type", None) or "direct"
        if exchange_type != "direct" or (options.get("exchange") and options.get("routing_key")):
            return None  # kombu looks the queues up in the exchange's bindings
        if options.get("priority") or queue.expires:
            return None  # another list (priority), or a PEXPIRE with each push
        mode: Any = queue.exchange.delivery_mode or app.conf.task_default_delivery_mode
        task = app.tasks.get(task_name)
        return Route(
            queue=queue.name,
            exchange="",
            routing_key=queue.name,
            delivery_mode=_DELIVERY_MODES.get(mode, mode) if isinstance(mode, str) else int(mode),
            ignore_result=bool(task.ignore_result) if task is not None else None,
        )

    # ------------------------------------------------------------------ messages

    def message(self, task_name: str, args: Sequence[Any], sent_at: float) -> str:
        """One protocol-2 message for `task_name(*args)`, as kombu encodes it.

        `args` as the kombu caller passed them (a tuple for `task.delay`, a list for
        `app.send_task`: the `argsrepr` header is their repr). Raises ValueError for a
        task `route` answers None for."""
        route = self.route(task_name)
        if route is None:
            raise ValueError(f"{task_name}: not a route a ready-made message can take")
        return self._encode(task_name, args, sent_at, route)

    def _encode(self, task_name: str, args: Sequence[Any], sent_at: float, route: Route) -> str:
        task_id = str(uuid.uuid4())
        root_id, parent_id = task_id, None
        parent = self.app.current_worker_task  # sent from a task: Celery records the lineage
        if parent is not None:
            root_id = parent.request.root_id or parent.request.id
            parent_id = parent.request.id
        body = json.dumps([list(args), {}, _NO_EMBED])
        argsrepr = repr(args)
        if len(argsrepr) > self.app.amqp.argsrepr_maxsize:
            from celery.utils.saferepr import saferepr

            argsrepr = saferepr(args, self.app.amqp.argsrepr_maxsize)
        return json.dumps(
            {
                "body": base64.b64encode(body.encode()).decode("ascii"),
                "content-encoding": "utf-8",
                "content-type": "application/json",
                "headers": {
                    "lang": "py",
                    "task": task_name,
                    "id": task_id,
                    "shadow": None,
                    "eta": None,
                    "expires": None,
                    "group": None,
                    "group_index": None,
                    "retries": 0,
                    "timelimit": [None, None],
                    "root_id": root_id,
                    "parent_id": parent_id,
                    "argsrepr": argsrepr,
                    "kwargsrepr": "{}",
                    "origin": self.origin,
                    "ignore_result": route.ignore_result,
                    "replaced_task_nesting": 0,
                    "stamped_headers": None,
                    "stamps": {},
                    # iras.metrics measures queue lag from this stamp (before_task_publish).
                    "iras_sent_at": sent_at,
                },
                "properties": {
                    "correlation_id": task_id,
                    "reply_to": self.app.thread_oid,
                    "delivery_mode": route.delivery_mode,
                    "delivery_info": {"exchange": route.exchange, "routing_key": route.routing_key},
                    "priority": 0,
                    "body_encoding": "base64",
                    "delivery_tag": str(uuid.uuid4()),
                },
            }
        )

    # ------------------------------------------------------------------ sending

    def send(self, task_name: str, args: Sequence[Any]) -> bool:
        """Push one message. False (nothing sent) when kombu must publish this task;
        raises when Redis does not take it."""
        return self.publish(task_name, (args,))

    def publish(self, task_name: str, many: Iterable[Sequence[Any]]) -> bool:
        """Push one message per argument tuple in `many`, all in ONE LPUSH (in order: the
        worker pops from the other end, so the first is delivered first). False (nothing
        sent) when kombu must publish this task; raises when Redis does not take them."""
        route = self.route(task_name)
        if route is None:
            return False
        now = time.time()
        messages = [self._encode(task_name, args, now, route) for args in many]
        if messages:
            self.redis.lpush(route.queue, *messages)
        return True


# --------------------------------------------------------------------------- one per process

_lock = threading.Lock()
_held: tuple[tuple[int, str], RedisPublisher] | None = None


def publisher_for(broker_url: str) -> RedisPublisher | None:
    """This process's publisher for `broker_url`, None unless it is a Redis URL.

    Re-created after a fork (a child must not share its parent's sockets) and when
    the URL changes (tests, a reconfigured process)."""
    global _held
    if not is_redis_url(broker_url):
        return None
    ident = (os.getpid(), broker_url)
    held = _held
    if held is not None and held[0] == ident:
        return held[1]
    with _lock:
        if _held is None or _held[0] != ident:
            _held = (ident, RedisPublisher(broker_url))
        return _held[1]


def configured_publisher() -> RedisPublisher | None:
    """The publisher for the configured broker (CELERY_BROKER_URL), None unless Redis."""
    from iras.config import get_settings

    return publisher_for(get_settings().celery_broker_url)
