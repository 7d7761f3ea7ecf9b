"""The smart-HTTP server: a thin aiohttp adapter over the protocol and repository code.

Request bodies are read from ``request.content`` (never ``request.read()`` for a pack), CPU-bound
work runs in worker threads, and responses are streamed as the pack is produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from govc.api_access import add_routes as add_access_routes
from govc.api_files import add_routes as add_file_routes
from govc.api_realities import add_routes as add_reality_routes
from govc.api_repos import add_routes as add_repo_routes
from govc.auth import TOKEN_KEY, TokenStore, make_middleware
from govc.maintenance import PACK_THRESHOLD, compact
from govc.metrics import METRICS, Metrics, measure, metrics_handler
from govc.receivepack import encode_outcome, receive
from govc.registry import Registry, RepositoryNameError, normalize_name
from govc.repository import Repository
from govc.stream import repository_name, stream_events
from govc.uploadpack import upload_pack_v0, upload_pack_v2, v0_advertisement, v2_advertisement
from govc.webhooks import Backoff, setup_webhooks
from protocol.errors import ProtocolError
from protocol.receive import PushRequestParser
from protocol.upload import error_line

log = logging.getLogger("govc.server")

NO_CACHE = {
    "Expires": "Fri, 01 Jan 1980 00:00:00 GMT",
    "Pragma": "no-cache",
    "Cache-Control": "no-cache, max-age=0, must-revalidate",
}
RECEIVE_RESULT_HEADERS = {**NO_CACHE, "Content-Type": "application/x-git-receive-pack-result"}
SERVICES = ("git-upload-pack", "git-receive-pack")
#: Upload-pack requests are lists of ids; anything larger than this is not a fetch.
MAX_UPLOAD_REQUEST = 64 << 20
#: The largest push accepted in one request.
MAX_PUSH = 4 << 30
READ_CHUNK = 1 << 18
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


REGISTRY = web.AppKey("registry", Registry)
CONFIG = web.AppKey("config", ServerConfig)
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)


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
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(request.app[EXECUTOR], v0_advertisement, repo, service)
    return web.Response(body=body, headers=headers)


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it arrives (``Content-Encoding: gzip`` already undone by aiohttp),
    giving up on a client that stalls."""
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
    loop = asyncio.get_running_loop()
    executor = request.app[EXECUTOR]
    first = await loop.run_in_executor(executor, next, chunks, None)
    response = web.StreamResponse(headers={**NO_CACHE, "Content-Type": content_type})
    await response.prepare(request)
    chunk = first
    try:
        while chunk is not None:
            await response.write(chunk)
            chunk = await loop.run_in_executor(executor, next, chunks, None)
    except ProtocolError as e:
        await response.write(error_line(str(e)))
    except (ConnectionResetError, asyncio.CancelledError):
        chunks.close()
        raise
    await response.write_eof()
    return response


async def upload_pack(request: web.Request) -> web.StreamResponse:
    name, repo = _lookup(request)
    if repo is None:
        return _text(404, f"repository '{name}' not found")
    body = await _read_body(request, MAX_UPLOAD_REQUEST)
    gen = upload_pack_v2(repo, body) if _git_protocol_version(request) == 2 else upload_pack_v0(repo, body)
    try:
        return await _stream(request, "application/x-git-upload-pack-result", gen)
    except ProtocolError as e:
        log.info("upload-pack %s: %s", name, e)
        return web.Response(
            status=200, body=error_line(str(e)),
            headers={**NO_CACHE, "Content-Type": "application/x-git-upload-pack-result"},
        )


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
    parser = PushRequestParser()
    pack_parts: list[bytes] = []
    size = 0
    try:
        async for chunk in _body_chunks(request):
            data = chunk
            size += len(data)
            if size > MAX_PUSH:
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_PUSH, actual_size=size)
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
    loop = asyncio.get_running_loop()
    outcome = await loop.run_in_executor(
        request.app[EXECUTOR], receive, repo, req, b"".join(pack_parts), who
    )
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


async def _close_streams(app: web.Application) -> None:
    app[REGISTRY].events.close()


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """Ready: repositories loaded (the app exists only after that) and the backend answers."""
    registry = request.app[REGISTRY]
    if registry.directory is not None:
        try:
            await asyncio.to_thread(registry.directory.last_event_id)
        except Exception as e:  # the database is unreachable or damaged
            return web.Response(status=503, text=f"not ready: data directory: {e}\n")
    return web.Response(text=f"ready: {len(registry)} repositories\n")


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
    middlewares: list[Any] = [measure, _admin_only]
    if config.auth:
        if registry.directory is None:
            raise ValueError("authentication needs a data directory (tokens live in its database); "
                             "it cannot be used with an in-memory registry (--memory)")
        middlewares.insert(1, make_middleware(TokenStore(registry.directory),
                                              anonymous_read=config.anonymous_read,
                                              admin_token=config.admin_token))
    app = web.Application(client_max_size=MAX_UPLOAD_REQUEST, middlewares=middlewares)
    app[REGISTRY] = registry
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app.on_shutdown.append(_close_streams)
    app.cleanup_ctx.append(_executor_ctx)
    app.cleanup_ctx.append(_maintenance_ctx)
    setup_webhooks(app, app[REGISTRY], allow=app[CONFIG].webhook_allow, public_url=app[CONFIG].public_url,
                   backoff=app[CONFIG].webhook_backoff)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/events", all_events)
    app.router.add_get("/{repo:.+}/events", repo_events)
    add_repo_routes(app, REGISTRY)
    add_access_routes(app, REGISTRY)
    add_reality_routes(app, REGISTRY)
    add_file_routes(app, REGISTRY)
    app.router.add_get("/{repo:.+}/info/refs", info_refs)
    app.router.add_post("/{repo:.+}/git-upload-pack", upload_pack)
    app.router.add_post("/{repo:.+}/git-receive-pack", receive_pack)
    return app
