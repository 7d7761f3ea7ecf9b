"""Repositories over HTTP: ``/api/v1/repos`` (create, list) and ``/api/v1/repos/<repo>``
(describe, change settings, delete)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from govc.api_common import json_body, json_error, json_errors, repository_or_404
from govc.openapi import add_routes as add_openapi_route
from govc.registry import Registry, RepositoryExists, RepositoryNameError
from govc.repository import Repository
from storage.refnames import is_valid_ref_name


def describe(registry: Registry, repo: Repository) -> dict[str, Any]:
    refs = repo.refs.list()
    head = repo.head_target
    permissions = registry.permissions
    return {
        "name": repo.name,
        "path": f"/{repo.name}.git",
        "default_branch": head.removeprefix("refs/heads/") if head else None,
        "head": (refs.get(head) or b"").decode() or None if head else None,
        "branches": sum(1 for n in refs if n.startswith("refs/heads/")),
        "tags": sum(1 for n in refs if n.startswith("refs/tags/")),
        "realities": sum(1 for n in refs if n.startswith(repo.ephemeral_namespace)),
        "refs": len(refs),
        "objects": len(repo.objects),
        "packs": len(repo.objects.packs),
        "pack_bytes": sum(len(p.data) for p in repo.objects.packs),
        "durable": repo.durable,
        "anonymous_read": permissions.anonymous_read(repo.name) if permissions is not None else False,
    }


def add_routes(app: web.Application, registry_key: web.AppKey[Registry]) -> None:
    async def create_repo(request: web.Request) -> web.Response:
        payload = await json_body(request)
        name = payload.get("name")
        if not isinstance(name, str):
            return json_error(400, "bad_request", 'expected {"name": "<name>"}')
        try:
            repo = request.app[registry_key].create(name)
        except RepositoryNameError as e:
            return json_error(400, "invalid_name", str(e))
        except RepositoryExists as e:
            return json_error(409, "exists", f"repository '{e}' exists")
        return web.json_response({"name": repo.name, "path": f"/{repo.name}.git"}, status=201)

    async def list_repos(request: web.Request) -> web.Response:
        return web.json_response({"repositories": request.app[registry_key].names()})

    async def show(request: web.Request) -> web.Response:
        registry = request.app[registry_key]
        repo = repository_or_404(request, registry)
        return web.json_response(await asyncio.to_thread(describe, registry, repo))

    async def change(request: web.Request) -> web.Response:
        registry = request.app[registry_key]
        repo = repository_or_404(request, registry)
        payload = await json_body(request)
        unknown = set(payload) - {"anonymous_read", "default_branch"}
        if unknown:
            return json_error(400, "bad_request", f"unknown settings: {', '.join(sorted(unknown))}")
        anonymous = payload.get("anonymous_read")
        branch = payload.get("default_branch")
        if anonymous is not None and not isinstance(anonymous, bool):
            return json_error(400, "bad_request", "anonymous_read must be true or false")
        if branch is not None:
            if not isinstance(branch, str) or not is_valid_ref_name(f"refs/heads/{branch}"):
                return json_error(400, "bad_request", "default_branch must be a branch name")
            if repo.refs.get(f"refs/heads/{branch}") is None:
                return json_error(422, "no_branch", f"no branch {branch!r}")
        if anonymous is not None:
            if registry.permissions is None:
                return json_error(409, "no_data_directory",
                                  "per-repository settings need a data directory (not --memory)")
            await asyncio.to_thread(registry.permissions.set_anonymous_read, repo.name, anonymous)
        if branch is not None:
            await asyncio.to_thread(repo.set_head, f"refs/heads/{branch}")
        return web.json_response(await asyncio.to_thread(describe, registry, repo))

    async def delete(request: web.Request) -> web.Response:
        registry = request.app[registry_key]
        repo = repository_or_404(request, registry)
        try:
            await asyncio.to_thread(registry.delete, repo.name)
        except KeyError:  # deleted meanwhile by another request
            return json_error(404, "not_found", f"no repository {repo.name}")
        return web.Response(status=204)

    app.router.add_post("/api/v1/repos", create_repo)
    app.router.add_get("/api/v1/repos", list_repos)
    add_openapi_route(app)
    app.middlewares.append(json_errors)  # innermost: sees the handlers' and the router's errors
    app[_ITEM_ROUTES] = [show, change, delete]


_ITEM_ROUTES = web.AppKey("repo_item_routes", list)


def add_item_routes(app: web.Application) -> None:
    """``/api/v1/repos/<repo>`` itself: registered after every sub-resource route, since a
    repository name may contain ``/`` and aiohttp takes the first route that matches."""
    show, change, delete = app[_ITEM_ROUTES]
    app.router.add_get(r"/api/v1/repos/{repo:[^{}]+?}", show)
    app.router.add_patch(r"/api/v1/repos/{repo:[^{}]+?}", change)
    app.router.add_delete(r"/api/v1/repos/{repo:[^{}]+?}", delete)
