"""Repositories over HTTP: ``/api/v1/repos`` (create, list) and ``/api/v1/repos/<repo>``
(describe, change settings, delete)."""

from __future__ import annotations

from aiohttp import web

from govc.api_common import json_error
from govc.registry import Registry, RepositoryExists, RepositoryNameError


def add_routes(app: web.Application, registry_key: web.AppKey[Registry]) -> None:
    async def create_repo(request: web.Request) -> web.Response:
        try:
            payload = await request.json()
            name = payload["name"]
            if not isinstance(name, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):  # bad JSON, bad UTF-8, wrong shape
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

    app.router.add_post("/api/v1/repos", create_repo)
    app.router.add_get("/api/v1/repos", list_repos)
