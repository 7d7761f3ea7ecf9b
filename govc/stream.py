"""The live event stream: ``GET /<repo>.git/events`` and ``GET /events`` as server-sent events.

Each event carries its event-log id; a client that reconnects with ``Last-Event-ID`` (or
``?since=<id>``) first receives everything it missed, replayed from the log, then live events.
``?branch=<glob>`` and ``?path=<glob>`` (repeatable) filter what is sent.
"""

from __future__ import annotations

import fnmatch
import json

from aiohttp import web

from govc.events import EventLog, LoggedEvent
from govc.registry import Registry, RepositoryNameError, normalize_name
from govc.watch import short_name
from storage.errors import StorageError
from storage.packs import OBJ_COMMIT

KEEPALIVE = 15.0
BATCH = 500


def _changed_paths(registry: Registry, event: LoggedEvent, ref: str, old: str, new: str) -> list[str]:
    repo = registry.get(event.repository)
    if repo is None:
        return []

    def tree(oid: str) -> bytes | None:
        raw = oid.encode()
        if set(oid) == {"0"} or not repo.objects.has(raw) or repo.objects.type_of(raw) != OBJ_COMMIT:
            return None
        return repo.graph.commit(raw).tree

    try:
        return [c.path for c in repo.trees.diff(tree(old), tree(new))]
    except (StorageError, KeyError):
        return []


def _matches(registry: Registry, event: LoggedEvent, branches: list[str], paths: list[str]) -> bool:
    if not branches and not paths:
        return True
    for change in event.payload.get("changes", []):  # type: ignore[union-attr]
        ref = str(change["ref"])
        if branches and not any(fnmatch.fnmatchcase(short_name(ref), b) or fnmatch.fnmatchcase(ref, b)
                                for b in branches):
            continue
        if not paths:
            return True
        changed = _changed_paths(registry, event, ref, str(change["old"]), str(change["new"]))
        if any(fnmatch.fnmatchcase(p, g) or fnmatch.fnmatchcase(p.rsplit("/", 1)[-1], g)
               for p in changed for g in paths):
            return True
    return False


def _frame(event: LoggedEvent) -> bytes:
    data = json.dumps({"id": event.id, **event.payload}, separators=(",", ":"))
    return f"id: {event.id}\nevent: ref-update\ndata: {data}\n\n".encode()


async def stream_events(
    request: web.Request, registry: Registry, repository: str | None
) -> web.StreamResponse:
    log: EventLog = registry.events
    header = request.headers.get("Last-Event-ID") or request.query.get("since")
    try:
        cursor = int(header) if header is not None else log.last_id()
    except ValueError:
        raise web.HTTPBadRequest(text="Last-Event-ID must be an event id\n") from None
    branches = request.query.getall("branch", [])
    paths = request.query.getall("path", [])
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
    })
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    try:
        while not log.closed:
            top = log.last_id()  # read first: every event up to it is already in the log
            batch = log.since(cursor, repository, BATCH)
            for event in batch:
                cursor = event.id
                if _matches(registry, event, branches, paths):
                    await response.write(_frame(event))
            if len(batch) == BATCH:
                continue
            # Events of other repositories also advance the log: skip past them, or waiting
            # for "something newer than the cursor" would return at once, forever.
            cursor = max(cursor, top)
            before = cursor
            await log.wait(cursor, KEEPALIVE)
            if log.last_id() <= before:
                await response.write(b": keepalive\n\n")
    except (ConnectionResetError, RuntimeError):
        pass
    return response


def repository_name(request: web.Request) -> str:
    try:
        return normalize_name(request.match_info["repo"])
    except RepositoryNameError as e:
        raise web.HTTPNotFound(text=f"{e}\n") from None
