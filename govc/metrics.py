"""Prometheus metrics at ``GET /metrics``: what a server is doing, in the format every
monitoring stack scrapes.

Each application gets its own collector registry (several test servers can live in one process).
Labels are low-cardinality on purpose: the kind of route, the Git operation, a result — never a
repository name or a raw path, which would grow the series without bound.

=====================================  ==========================================================
``govc_http_requests_total``           requests by route kind and status
``govc_http_request_seconds``          request time by route kind (histogram)
``govc_http_requests_in_flight``       requests being handled now
``govc_http_response_bytes_total``     bytes sent (headers included), by route kind
``govc_http_request_bytes_total``      body bytes received by the Git endpoints, by route kind
``govc_git_operations_total``          clones, fetches and pushes by result (see below)
``govc_git_operation_seconds``         time per Git operation (histogram)
``govc_git_transfer_bytes``            pack bytes per operation: sent for clone/fetch, received
                                       for push (histogram)
``govc_limited_requests_total``        requests refused by govc.limits, by reason
``govc_repositories``, ``govc_objects``, ``govc_packs``   what memory holds
``govc_event_log_last_id``             id of the newest logged ref update
``govc_webhook_queue_depth``           webhook deliveries waiting in the outbox
``govc_webhook_attempts_total``        delivery attempts by result (delivered, retry, failed)
``process_resident_memory_bytes``      and the other ``process_*`` series (Linux)
=====================================  ==========================================================

A clone is an upload-pack request that got a pack and had no ``have`` lines; a fetch got a pack
and had some. Negotiation rounds that end without a pack, and ``ls-refs``, are only HTTP requests.
A push counts once per receive-pack request with commands: ``ok`` when every ref moved,
``rejected`` when some did not, ``error`` when the pack could not be used or the request failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from govc.logs import BYTES_IN_KEY

LATENCY_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BYTE_BUCKETS = tuple(float(1 << n) for n in range(10, 34, 2))  # 1 KiB .. 8 GiB, x4 steps
OPERATIONS = ("clone", "fetch", "push")


class _WebhookAttempts(Collector):
    """Reads the delivery worker's attempt tallies at scrape time (they live in the manager)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def collect(self) -> Iterator[CounterMetricFamily]:
        from govc.webhooks import WEBHOOKS

        family = CounterMetricFamily("govc_webhook_attempts", "Webhook delivery attempts by result",
                                     labels=["result"])
        manager = self.app.get(WEBHOOKS)
        outcomes = getattr(manager, "outcomes", {}) if manager is not None else {}
        for result in ("delivered", "retry", "failed", "error"):
            family.add_metric([result], float(outcomes.get(result, 0)))
        yield family


class Metrics:
    def __init__(self, app: web.Application | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("govc_http_requests_total", "HTTP requests by kind and status",
                                ["kind", "status"], registry=r)
        self.latency = Histogram("govc_http_request_seconds", "HTTP request time by kind", ["kind"],
                                 registry=r, buckets=LATENCY_BUCKETS)
        self.active = 0
        self.in_flight = Gauge("govc_http_requests_in_flight", "HTTP requests being handled", registry=r)
        self.in_flight.set_function(lambda: self.active)
        self.response_bytes = Counter("govc_http_response_bytes_total", "Response bytes sent by kind",
                                      ["kind"], registry=r)
        self.request_bytes = Counter("govc_http_request_bytes_total",
                                     "Request body bytes received by the Git endpoints, by kind",
                                     ["kind"], registry=r)
        self.operations = Counter("govc_git_operations_total", "Git clones, fetches and pushes by result",
                                  ["operation", "result"], registry=r)
        self.operation_seconds = Histogram("govc_git_operation_seconds", "Time per Git operation",
                                           ["operation"], registry=r, buckets=LATENCY_BUCKETS)
        self.transfer_bytes = Histogram("govc_git_transfer_bytes",
                                        "Pack bytes per operation (sent for clone/fetch, received for push)",
                                        ["operation"], registry=r, buckets=BYTE_BUCKETS)
        self.limited = Counter("govc_limited_requests_total", "Requests refused by the limits, by reason",
                               ["reason"], registry=r)
        self.repositories = Gauge("govc_repositories", "Repositories held", registry=r)
        self.objects = Gauge("govc_objects", "Objects held across repositories", registry=r)
        self.packs = Gauge("govc_packs", "Packs held across repositories", registry=r)
        self.last_event = Gauge("govc_event_log_last_id", "Id of the newest logged ref update", registry=r)
        self.webhook_queue = Gauge("govc_webhook_queue_depth", "Webhook deliveries waiting in the outbox",
                                   registry=r)
        ProcessCollector(registry=r)  # resident memory, CPU, open files (reads /proc on Linux)
        if app is not None:
            r.register(_WebhookAttempts(app))
        for op in OPERATIONS:  # present from the start, so rates work from the first scrape
            self.operations.labels(op, "ok")
        for reason in ("rate", "concurrency", "busy"):
            self.limited.labels(reason)

    def operation(self, operation: str, result: str, seconds: float, size: int) -> None:
        """Record one finished clone, fetch or push."""
        self.operations.labels(operation, result).inc()
        self.operation_seconds.labels(operation).observe(seconds)
        if result != "error":
            self.transfer_bytes.labels(operation).observe(size)


METRICS = web.AppKey("metrics", Metrics)


def request_kind(request: web.Request) -> str:
    """A low-cardinality label: the service, not the repository."""
    path = request.path
    if path.endswith("/info/refs"):
        service = request.query.get("service", "-")
        return f"advertise:{service if service in ('git-upload-pack', 'git-receive-pack') else '-'}"
    for suffix in ("/git-upload-pack", "/git-receive-pack", "/events"):
        if path.endswith(suffix):
            return suffix.lstrip("/")
    if path.startswith("/api/"):
        return "api"
    return path if path in ("/healthz", "/readyz", "/metrics") else "other"


@web.middleware
async def measure(request: web.Request, handler: Any) -> web.StreamResponse:
    metrics = request.app[METRICS]
    kind = request_kind(request)
    started = time.monotonic()
    status = 500
    metrics.active += 1
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        metrics.active -= 1
        metrics.requests.labels(kind, str(status)).inc()
        metrics.latency.labels(kind).observe(time.monotonic() - started)
        if response is not None and response.body_length:
            metrics.response_bytes.labels(kind).inc(response.body_length)
        received = request.get(BYTES_IN_KEY)
        if received:
            metrics.request_bytes.labels(kind).inc(received)


async def metrics_handler(request: web.Request) -> web.Response:
    from govc.server import REGISTRY
    from govc.webhooks import WEBHOOKS

    metrics = request.app[METRICS]
    registry = request.app[REGISTRY]
    names = registry.names()
    repos = [registry.get(n) for n in names]
    metrics.repositories.set(len(names))
    metrics.objects.set(sum(len(r.objects) for r in repos if r is not None))
    metrics.packs.set(sum(len(r.objects.packs) for r in repos if r is not None))
    metrics.last_event.set(registry.events.last_id())
    manager = request.app.get(WEBHOOKS)
    if manager is not None:
        metrics.webhook_queue.set(await asyncio.to_thread(manager.store.pending_count))
    body = await asyncio.to_thread(generate_latest, metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
