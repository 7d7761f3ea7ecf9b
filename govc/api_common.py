"""What every JSON endpoint shares: errors as ``{"error": code, "message": ...}`` and the
repository named in the path (404 as JSON when there is none)."""

from __future__ import annotations

import json

from aiohttp import web

from govc.registry import Registry, RepositoryNameError, normalize_name
from govc.repository import Repository


def json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def repository_or_404(request: web.Request, registry: Registry) -> Repository:
    """The repository ``{repo}`` names; raises a JSON 404 for a bad or unknown name."""
    try:
        name = normalize_name(request.match_info["repo"])
    except RepositoryNameError as e:
        raise web.HTTPNotFound(content_type="application/json",
                               text=json.dumps({"error": "invalid_name", "message": str(e)})) from None
    repo = registry.get(name)
    if repo is None:
        raise web.HTTPNotFound(content_type="application/json",
                               text=json.dumps({"error": "not_found", "message": f"no repository {name}"}))
    return repo
