"""The smart-HTTP server: a thin aiohttp adapter over the protocol and repository code.

Request bodies are read from ``request.content`` (never ``request.read()`` for a pack), CPU-bound
work runs in worker threads, and responses are streamed as the pack is produced.

Middlewares, outermost first: request id (govc.logs), a shared database being unreachable as 503
(govc.cluster), metrics (govc.metrics), the shutdown gate (below), authentication (govc.auth, with
``auth``), limits (govc.limits), the webhook API's admin token.

Graceful shutdown (SIGTERM or SIGINT with :func:`graceful_signals`, as ``govc serve`` does):

1. event streams end, ``/readyz`` answers 503, and requests on connections opened from now on
   get 503 "shutting down" (a load balancer retries them elsewhere);
2. requests in flight finish — a push whose pack is still arriving included — and so may the
   next request on a connection that was already open (a push's POST after its ``info/refs``);
   responses close their connections;
3. once nothing is in flight, or ``shutdown_timeout`` seconds have passed, the server stops and
   the webhook worker sends what is due with the time left; undelivered webhooks stay in the
   outbox for the next start. A second signal skips the waiting.

aiohttp's own graceful stop cannot do step 2 for a push: it stops reading request bodies the
moment it begins, so a pack still in transit would time out. Hence the draining happens first.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import logging
import signal
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from govc.api_access import add_routes as add_access_routes
from govc.api_files import add_routes as add_file_routes
from govc.api_realities import add_routes as add_reality_routes
from govc.api_repos import add_item_routes as add_repo_item_routes
from govc.api_repos import add_routes as add_repo_routes
from govc.auth import TOKEN_KEY, TokenStore, make_middleware
from govc.cluster import unavailable as database_unavailable
from govc.limits import MAX_FETCH_REQUEST, Limits, upload_refusal
from govc.limits import MAX_PUSH as DEFAULT_MAX_PUSH
from govc.limits import make_middleware as make_limits
from govc.logs import BYTES_IN_KEY, echo_request_id, request_context
from govc.maintenance import PACK_THRESHOLD, compact
from govc.metrics import METRICS, Metrics, measure, metrics_handler
from govc.receivepack import encode_outcome, receive
from govc.registry import Registry, RepositoryNameError, normalize_name
from govc.repository import Repository
from govc.stream import repository_name, stream_events
from govc.uploadpack import upload_pack_v0, upload_pack_v2, v0_advertisement, v2_advertisement
from govc.webhooks import Backoff, setup_webhooks
from protocol.errors import ProtocolError
from protocol.receive import PushRequestParser, RefResult
from protocol.upload import PackSniffer, count_request, error_line

log = logging.getLogger("govc.server")

NO_CACHE = {
    "Expires": "Fri, 01 Jan 1980 00:00:00 GMT",
    "Pragma": "no-cache",
    "Cache-Control": "no-cache, max-age=0, must-revalidate",
}
RECEIVE_RESULT_HEADERS = {**NO_CACHE, "Content-Type": "application/x-git-receive-pack-result"}
SERVICES = ("git-upload-pack", "git-receive-pack")
#: Upload-pack requests are lists of ids; anything larger than this is not a fetch (the default;
#: ``Limits.max_fetch_request`` is what applies). Also the JSON API's body limit.
MAX_UPLOAD_REQUEST = MAX_FETCH_REQUEST
#: The largest push accepted in one request (the default; ``Limits.max_push`` applies).
MAX_PUSH = DEFAULT_MAX_PUSH
READ_CHUNK = 1 << 18
#: Upload-pack bodies up to this size are counted on the event loop (microseconds); larger ones,
#: which may hold a million ids, in a worker thread.
INLINE_COUNT = 1 << 16
#: A client that sends nothing for this long is gone; its request is dropped, others go on.
BODY_IDLE_TIMEOUT = 60.0


@dataclass(slots=True)
class ServerConfig:
    auto_create: bool = True
    workers: int = 8
    body_idle_timeout: float = BODY_IDLE_TIMEOUT
    maintenance_interval: float = 15.0  # seconds between compaction sweeps (0: never)
    pack_threshold: int = PACK_THRESHOLD
    #: CIDRs webhook targets may resolve to although private/loopback/link-local (see govc.webhooks).
    webhook_allow: list[str] = field(default_factory=list)
    #: Webhook retry schedule; None: $GOVC_WEBHOOK_BACKOFF ("BASE[,CAP]" seconds) or 1s doubling to 300s.
    webhook_backoff: Backoff | None = None
    #: The server's URL as receivers should see it (clone_url, compare links in webhook payloads).
    public_url: str = ""
    #: When set, the webhook management API answers only to ``Authorization: Bearer <token>``.
    admin_token: str | None = None
    #: Require an access token (see govc.auth) for everything but /healthz; needs a data directory.
    auth: bool = False
    #: With ``auth``: let requests without credentials fetch (read), never push.
    anonymous_read: bool = False
    #: Per-client rate and concurrency, the global cap on Git transfers, request sizes.
    limits: Limits = field(default_factory=Limits)
    #: Seconds a shutdown may take: requests in flight finish, then webhooks due are sent.
    shutdown_timeout: float = 30.0


REGISTRY = web.AppKey("registry", Registry)
CONFIG = web.AppKey("config", ServerConfig)
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)


@dataclass(slots=True)
class Shutdown:
    """When the app began to stop (None while it runs), so later stages share one time budget,
    and the connections that were open before (their requests are still served)."""

    timeout: float
    began: float | None = None
    known: weakref.WeakSet[asyncio.BaseTransport] = field(default_factory=weakref.WeakSet)
    drain: asyncio.Task[None] | None = None

    @property
    def draining(self) -> bool:
        return self.began is not None

    def remaining(self) -> float:
        if self.began is None:
            return 0.0
        return max(0.0, self.began + self.timeout - time.monotonic())


SHUTDOWN = web.AppKey("shutdown", Shutdown)
#: Seconds aiohttp still waits, after the drain, for handlers that outlived the grace period.
STRAGGLERS = 1.0
#: How a push ended ("ok", "rejected", "error"), for the metrics.
_PUSH_RESULT = web.RequestKey("govc_push_result", str)


T = TypeVar("T")


async def _in_worker(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a worker thread, in a copy of the request's context, so that log records
    written there carry the request id as the handler's do."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(request.app[EXECUTOR], context.run, fn, *args)


def _git_protocol_version(request: web.Request) -> int:
    for item in request.headers.get("Git-Protocol", "").split(":"):
        if item.strip() == "version=2":
            return 2
        if item.strip() == "version=1":
            return 1
    return 0


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n", headers=NO_CACHE)


def _lookup(request: web.Request) -> tuple[str, Repository | None]:
    raw = request.match_info["repo"]
    try:
        name = normalize_name(raw)
    except RepositoryNameError as e:
        raise web.HTTPNotFound(text=f"{e}\n") from None
    return name, request.app[REGISTRY].get(name)


async def info_refs(request: web.Request) -> web.StreamResponse:
    service = request.query.get("service")
    if service not in SERVICES:
        return _text(403, "govc serves Git's smart HTTP protocol only (service=git-upload-pack "
                          "or git-receive-pack)")
    name, repo = _lookup(request)
    if repo is None:
        if service == "git-receive-pack" and request.app[CONFIG].auto_create:
            repo = Repository(name)  # advertise as empty; created for real by the push
        else:
            return _text(404, f"repository '{name}' not found")
    headers = {**NO_CACHE, "Content-Type": f"application/x-{service}-advertisement"}
    if service == "git-upload-pack" and _git_protocol_version(request) == 2:
        body = v2_advertisement()
    else:
        body = await _in_worker(request, v0_advertisement, repo, service)
    return web.Response(body=body, headers=headers)


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it arrives (``Content-Encoding: gzip`` already undone by aiohttp),
    giving up on a client that stalls. Counts what it read, for metrics and the access log."""
    request[BYTES_IN_KEY] = request.get(BYTES_IN_KEY, 0)
    while True:
        try:
            async with asyncio.timeout(request.app[CONFIG].body_idle_timeout):
                chunk = await request.content.read(READ_CHUNK)
        except TimeoutError:
            raise web.HTTPRequestTimeout(text="request body stalled; giving up\n") from None
        except RequestPayloadError as e:  # e.g. a corrupt gzip body (aiohttp inflates it for us)
            raise web.HTTPBadRequest(text=f"unreadable request body: {e}\n") from None
        if not chunk:
            return
        request[BYTES_IN_KEY] += len(chunk)
        yield chunk


async def _read_body(request: web.Request, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in _body_chunks(request):
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        parts.append(chunk)
    return b"".join(parts)


async def _stream(request: web.Request, content_type: str, chunks: Iterator[bytes]) -> web.StreamResponse:
    """Pull chunks from a synchronous generator in a worker thread and write them as they come."""
    first = await _in_worker(request, next, chunks, None)
    response = web.StreamResponse(headers={**NO_CACHE, "Content-Type": content_type})
    await response.prepare(request)
    chunk = first
    try:
        while chunk is not None:
            await response.write(chunk)
            chunk = await _in_worker(request, next, chunks, None)
    except ProtocolError as e:
        await response.write(error_line(str(e)))
    except (ConnectionResetError, asyncio.CancelledError):
        chunks.close()
        raise
    await response.write_eof()
    return response


def _sniffed(chunks: Iterator[bytes], sniffer: PackSniffer, sent: list[int]) -> Iterator[bytes]:
    """Pass the response through, noting whether it carries a pack and how many bytes went."""
    with contextlib.closing(chunks):
        for chunk in chunks:
            sniffer.feed(chunk)
            sent[0] += len(chunk)
            yield chunk


def _bounded(repo: Repository, body: bytes, version: int) -> tuple[str | None, int]:
    """(why the request is refused, or None; how many haves it has) — off the event loop."""
    counts = count_request(body, version)
    return upload_refusal(counts, len(repo.refs), len(repo.objects)), counts.haves


async def upload_pack(request: web.Request) -> web.StreamResponse:
    name, repo = _lookup(request)
    if repo is None:
        return _text(404, f"repository '{name}' not found")
    started = time.monotonic()
    body = await _read_body(request, request.app[CONFIG].limits.max_fetch_request)
    version = _git_protocol_version(request)
    headers = {**NO_CACHE, "Content-Type": "application/x-git-upload-pack-result"}
    try:
        if len(body) <= INLINE_COUNT:
            refusal, haves = _bounded(repo, body, version)
        else:
            refusal, haves = await _in_worker(request, _bounded, repo, body, version)
        if refusal is not None:
            log.warning("upload-pack %s refused: %s", name, refusal)
            return web.Response(status=200, body=error_line(refusal), headers=headers)
        gen = upload_pack_v2(repo, body) if version == 2 else upload_pack_v0(repo, body)
        sniffer, sent = PackSniffer(), [0]
        result = "error"
        try:
            response = await _stream(request, headers["Content-Type"], _sniffed(gen, sniffer, sent))
            result = "ok"
            return response
        finally:
            if sniffer.pack:
                request.app[METRICS].operation("fetch" if haves else "clone", result,
                                               time.monotonic() - started, sent[0])
    except ProtocolError as e:
        log.info("upload-pack %s: %s", name, e)
        return web.Response(status=200, body=error_line(str(e)), headers=headers)


async def receive_pack(request: web.Request) -> web.StreamResponse:
    name, repo = _lookup(request)
    registry = request.app[REGISTRY]
    created = False
    if repo is None:
        if not request.app[CONFIG].auto_create:
            return _text(404, f"repository '{name}' not found")
        repo, created = registry.get_or_create(name)
    try:
        return await _receive(request, repo)
    finally:
        if created:  # an implicit creation only sticks if the push moved a ref
            registry.discard_if_empty(name, repo)


async def _receive(request: web.Request, repo: Repository) -> web.Response:
    """Count the push in the metrics whatever happens to it (a probe with no commands is none)."""
    started = time.monotonic()
    parser = PushRequestParser()
    try:
        return await _receive_body(request, repo, parser, [])
    finally:
        if parser.done and parser.request.commands:
            request.app[METRICS].operation("push", request.get(_PUSH_RESULT, "error"),
                                           time.monotonic() - started, request.get(BYTES_IN_KEY, 0))


async def _receive_body(request: web.Request, repo: Repository, parser: PushRequestParser,
                        pack_parts: list[bytes]) -> web.Response:
    size = 0
    limit = request.app[CONFIG].limits.max_push
    try:
        async for chunk in _body_chunks(request):
            data = chunk
            size += len(data)
            if size > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
            if parser.done:
                pack_parts.append(data)
            else:
                parser.feed(data)
                if parser.done:
                    pack_parts.append(parser.take_pack_data())
    except ProtocolError as e:
        return _text(400, f"bad receive-pack request: {e}")
    req = parser.request
    if not parser.done:
        return _text(400, "bad receive-pack request: the command list was cut short")
    if not req.commands:  # git's probe ("0000"): nothing to do, and nothing wrong
        return web.Response(body=b"", headers=RECEIVE_RESULT_HEADERS)
    token = request.get(TOKEN_KEY)  # with --auth: the pusher is the token's name
    who = getattr(token, "name", None) or request.remote or "anonymous"
    outcome = await _in_worker(request, receive, repo, req, b"".join(pack_parts), who)
    if outcome.unpack_error is not None:
        request[_PUSH_RESULT] = "error"
    elif all(result is RefResult.OK for _, result in outcome.results):
        request[_PUSH_RESULT] = "ok"
    else:
        request[_PUSH_RESULT] = "rejected"
    body = b"".join(encode_outcome(req, outcome))
    return web.Response(body=body, headers=RECEIVE_RESULT_HEADERS)


async def repo_events(request: web.Request) -> web.StreamResponse:
    registry = request.app[REGISTRY]
    name = repository_name(request)
    if registry.get(name) is None:
        return _text(404, f"repository '{name}' not found")
    return await stream_events(request, registry, name)


async def all_events(request: web.Request) -> web.StreamResponse:
    return await stream_events(request, request.app[REGISTRY], None)


def begin_shutdown(app: web.Application) -> None:
    """Step 1 of the shutdown (see the module docstring); idempotent."""
    shutdown = app[SHUTDOWN]
    if shutdown.began is not None:
        return
    shutdown.began = time.monotonic()
    log.info("shutting down: new connections get 503; waiting up to %gs for %d request(s) in flight, "
             "then for webhook deliveries", shutdown.timeout, app[METRICS].active)
    app[REGISTRY].events.close()


async def _close_streams(app: web.Application) -> None:
    begin_shutdown(app)


async def _drain_then_exit(app: web.Application) -> None:
    begin_shutdown(app)
    shutdown, metrics = app[SHUTDOWN], app[METRICS]
    while metrics.active > 0 and shutdown.remaining() > 0:
        await asyncio.sleep(0.05)
    if metrics.active:
        log.warning("shutting down with %d request(s) still in flight after %gs", metrics.active,
                    shutdown.timeout)
    asyncio.get_running_loop().call_soon(_exit_now)


def _exit_now() -> None:
    raise web.GracefulExit()  # from a loop callback: ends web.run_app, which then cleans up


async def _install_signals(app: web.Application) -> None:
    loop = asyncio.get_running_loop()

    def first_signal() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _exit_now)  # a second signal: stop without waiting
        app[SHUTDOWN].drain = asyncio.ensure_future(_drain_then_exit(app))

    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, first_signal)
    except (NotImplementedError, RuntimeError):  # no signal handlers here (Windows, a thread)
        log.warning("graceful shutdown unavailable: signals cannot be handled on this loop")


def graceful_signals(app: web.Application) -> None:
    """SIGTERM/SIGINT drain the server before it stops; for ``web.run_app(app,
    handle_signals=False)``. The grace period is ``ServerConfig.shutdown_timeout``."""
    app.on_startup.append(_install_signals)


#: Answered even on new connections while shutting down (/readyz then says it is not ready).
_ALWAYS_ANSWERED = frozenset({"/healthz", "/readyz", "/metrics"})


@web.middleware
async def _shutdown_gate(request: web.Request, handler: Any) -> web.StreamResponse:
    """Remember which connections predate a shutdown; once it began, refuse the others."""
    shutdown = request.app[SHUTDOWN]
    transport = request.transport
    if not shutdown.draining:
        if transport is not None:
            shutdown.known.add(transport)
        return await handler(request)
    if request.path not in _ALWAYS_ANSWERED and (transport is None or transport not in shutdown.known):
        return web.Response(status=503, text="govc: shutting down; retry in 5 s\n",
                            headers={"Retry-After": "5", "Connection": "close"})
    return await handler(request)


async def _close_after_response(request: web.Request, response: web.StreamResponse) -> None:
    """While shutting down, a connection serves nothing after the response in progress."""
    if request.app[SHUTDOWN].draining:
        response.force_close()
        response.headers["Connection"] = "close"  # the headers are not written yet: tell the client


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """Ready: repositories loaded (the app exists only after that), the backend answers, and
    the server is not shutting down."""
    if request.app[SHUTDOWN].draining:
        return web.Response(status=503, text="not ready: shutting down\n")
    registry = request.app[REGISTRY]
    if registry.directory is not None:
        try:
            await asyncio.to_thread(registry.directory.last_event_id)
        except Exception as e:  # the database is unreachable or damaged
            return web.Response(status=503, text=f"not ready: data directory: {e}\n")
    if registry.cluster is not None and registry.cluster.error is not None:
        return web.Response(status=503, text=f"not ready: following other nodes: {registry.cluster.error}\n")
    return web.Response(text=f"ready: {len(registry)} repositories\n")


async def _cluster_ctx(app: web.Application) -> AsyncIterator[None]:
    """With a shared database: follow the other nodes while the app runs (govc.cluster)."""
    cluster = app[REGISTRY].cluster
    if cluster is not None:
        await asyncio.to_thread(cluster.start)
    yield
    if cluster is not None:
        await asyncio.to_thread(cluster.close)


async def _executor_ctx(app: web.Application):  # type: ignore[no-untyped-def]
    executor = ThreadPoolExecutor(max_workers=app[CONFIG].workers, thread_name_prefix="govc")
    app[EXECUTOR] = executor
    yield
    executor.shutdown(wait=False, cancel_futures=True)


async def _maintenance_ctx(app: web.Application) -> AsyncIterator[None]:
    """Compact repositories with many packs in the background, one at a time, off the loop."""
    config = app[CONFIG]

    async def sweep() -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(config.maintenance_interval)
            for name in app[REGISTRY].names():
                repo = app[REGISTRY].get(name)
                if repo is None or len(repo.objects.packs) < config.pack_threshold:
                    continue
                try:
                    await loop.run_in_executor(app[EXECUTOR], compact, repo, config.pack_threshold)
                except Exception:
                    log.exception("compaction of %s failed; its packs are untouched", name)

    task = asyncio.create_task(sweep()) if config.maintenance_interval > 0 else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@web.middleware
async def _admin_only(request: web.Request, handler: Any) -> web.StreamResponse:
    """Webhook management needs the admin token when the operator configured one."""
    token = request.app[CONFIG].admin_token
    authenticated = request.get(TOKEN_KEY)  # by govc.auth's middleware, which checked the access
    if (token and authenticated is None and request.path.startswith("/api/v1/")
            and "/hooks" in request.path):
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return web.json_response(
                {"error": "unauthorized", "message": "this endpoint needs the admin token"}, status=401,
                headers={"WWW-Authenticate": 'Bearer realm="govc"'},
            )
    return await handler(request)


def make_app(registry: Registry | None = None, config: ServerConfig | None = None) -> web.Application:
    registry = registry if registry is not None else Registry()
    config = config if config is not None else ServerConfig()

    def refused(request: web.Request, reason: str) -> None:
        request.app[METRICS].limited.labels(reason).inc()

    middlewares: list[Any] = [request_context, database_unavailable, measure, _shutdown_gate,
                              make_limits(config.limits, TOKEN_KEY, on_refusal=refused), _admin_only]
    if config.auth:
        if registry.directory is None:
            raise ValueError("authentication needs a data directory (tokens live in its database); "
                             "it cannot be used with an in-memory registry (--memory)")
        middlewares.insert(4, make_middleware(TokenStore(registry.directory),
                                              anonymous_read=config.anonymous_read,
                                              admin_token=config.admin_token))
    app = web.Application(client_max_size=MAX_UPLOAD_REQUEST, middlewares=middlewares)
    app[REGISTRY] = registry
    app[CONFIG] = config
    app[METRICS] = Metrics(app)
    app[SHUTDOWN] = Shutdown(config.shutdown_timeout)
    app.on_response_prepare.append(echo_request_id)
    app.on_response_prepare.append(_close_after_response)
    app.on_shutdown.append(_close_streams)
    app.cleanup_ctx.append(_executor_ctx)
    app.cleanup_ctx.append(_maintenance_ctx)
    app.cleanup_ctx.append(_cluster_ctx)
    setup_webhooks(app, app[REGISTRY], allow=app[CONFIG].webhook_allow, public_url=app[CONFIG].public_url,
                   backoff=app[CONFIG].webhook_backoff, drain_timeout=app[SHUTDOWN].remaining)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/events", all_events)
    app.router.add_get("/{repo:.+}/events", repo_events)
    add_repo_routes(app, REGISTRY)
    add_access_routes(app, REGISTRY)
    add_reality_routes(app, REGISTRY)
    add_file_routes(app, REGISTRY)
    add_repo_item_routes(app)  # last of the /api/v1/repos/<repo>... routes (see there)
    app.router.add_get("/{repo:.+}/info/refs", info_refs)
    app.router.add_post("/{repo:.+}/git-upload-pack", upload_pack)
    app.router.add_post("/{repo:.+}/git-receive-pack", receive_pack)
    return app
