"""Prometheus metrics at ``GET /metrics``: what a server is doing, in the format every
monitoring stack scrapes.

Each application gets its own collector registry (several test servers can live in one process);
request counts and latencies come from one middleware, repository gauges are read at scrape time.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("govc_http_requests_total", "HTTP requests by kind and status",
                                ["kind", "status"], registry=self.registry)
        self.latency = Histogram("govc_http_request_seconds", "HTTP request time by kind", ["kind"],
                                 registry=self.registry,
                                 buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.repositories = Gauge("govc_repositories", "Repositories held", registry=self.registry)
        self.objects = Gauge("govc_objects", "Objects held across repositories", registry=self.registry)
        self.packs = Gauge("govc_packs", "Packs held across repositories", registry=self.registry)
        self.last_event = Gauge("govc_event_log_last_id", "Id of the newest logged ref update",
                                registry=self.registry)


METRICS = web.AppKey("metrics", Metrics)


def request_kind(request: web.Request) -> str:
    """A low-cardinality label: the service, not the repository."""
    path = request.path
    if path.endswith("/info/refs"):
        return f"advertise:{request.query.get('service', '-')}"
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
    try:
        response: web.StreamResponse = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        metrics.requests.labels(kind, str(status)).inc()
        metrics.latency.labels(kind).observe(time.monotonic() - started)


async def metrics_handler(request: web.Request) -> web.Response:
    from govc.server import REGISTRY

    metrics = request.app[METRICS]
    registry = request.app[REGISTRY]
    names = registry.names()
    repos = [registry.get(n) for n in names]
    metrics.repositories.set(len(names))
    metrics.objects.set(sum(len(r.objects) for r in repos if r is not None))
    metrics.packs.set(sum(len(r.objects.packs) for r in repos if r is not None))
    metrics.last_event.set(registry.events.last_id())
    return web.Response(body=generate_latest(metrics.registry),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})
