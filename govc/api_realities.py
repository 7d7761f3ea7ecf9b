"""Realities over HTTP: ``/api/v1/repos/<repo>/realities`` (list, create, drop, promote).

A reality created here with ``"ephemeral": true`` lives in the server's memory only — the way
a command-line user gets an ephemeral reality, since a CLI process ends with its command.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from govc.api_common import json_body, json_error, repository_or_404
from govc.reality import Reality
from govc.registry import Registry
from govc.repository import Repository
from govc.validation import ConflictError, ValidationError
from storage.errors import RefError
from storage.interfaces import RefUpdate
from storage.refnames import is_valid_ref_name


def _describe(reality: Reality) -> dict[str, Any]:
    head = reality.head
    return {"name": reality.name, "ref": reality.ref, "head": head.decode() if head else None,
            "ephemeral": reality.ephemeral}


def add_routes(app: web.Application, registry_key: web.AppKey[Registry]) -> None:
    def repository(request: web.Request) -> Repository:
        return repository_or_404(request, request.app[registry_key])

    async def list_realities(request: web.Request) -> web.Response:
        return web.json_response({"realities": [_describe(r) for r in repository(request).realities()]})

    async def create(request: web.Request) -> web.Response:
        repo = repository(request)
        body = await json_body(request)
        try:
            name, base = str(body["name"]), str(body.get("base", "main"))
            ephemeral = bool(body.get("ephemeral", False))
        except (ValueError, KeyError, TypeError):
            return json_error(400, "bad_request",
                              'expected {"name": ..., "base": "main", "ephemeral": false}')
        if not is_valid_ref_name(f"{repo.ephemeral_namespace}{name}"):
            return json_error(422, "invalid_name", f"invalid reality name {name!r}")
        if repo.refs.get(f"{repo.ephemeral_namespace}{name}") is not None:
            return json_error(409, "exists", f"reality {name!r} exists")
        if repo.refs.get(repo.resolve_reality_ref(base)) is None:
            return json_error(422, "no_base", f"{base!r} has no commits")
        reality = await asyncio.to_thread(repo.parallel_reality, name, base=base, ephemeral=ephemeral)
        return web.json_response(_describe(reality), status=201)

    async def drop(request: web.Request) -> web.Response:
        repo = repository(request)
        ref = f"{repo.ephemeral_namespace}{request.match_info['name']}"
        current = repo.refs.get(ref)
        if current is None:
            return json_error(404, "not_found", f"no reality {request.match_info['name']!r}")
        try:
            await asyncio.to_thread(repo.update_refs, [RefUpdate(ref, None, current)], who="api",
                                    message="drop reality", source="api")
        except RefError as e:
            return json_error(409, "conflict", str(e))
        return web.Response(status=204)

    async def promote(request: web.Request) -> web.Response:
        repo = repository(request)
        name = request.match_info["name"]
        if repo.refs.get(f"{repo.ephemeral_namespace}{name}") is None:
            return json_error(404, "not_found", f"no reality {name!r}")
        into = (await json_body(request)).get("into", "main")
        if not isinstance(into, str):
            return json_error(400, "bad_request", 'expected {"into": "main"}')
        try:
            commit = await asyncio.to_thread(repo.set_main, repo.reality(name), branch=into)
        except ValidationError as e:
            return json_error(422, "rejected", str(e))
        except ConflictError as e:
            return json_error(409, "conflict", str(e))
        return web.json_response({"promoted": name, "into": into, "commit": commit.oid})

    base = "/api/v1/repos/{repo:.+}/realities"
    app.router.add_get(base, list_realities)
    app.router.add_post(base, create)
    app.router.add_delete(base + "/{name:[^/]+}", drop)
    app.router.add_post(base + "/{name:[^/]+}/promote", promote)
