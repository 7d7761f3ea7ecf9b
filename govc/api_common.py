"""What every JSON endpoint shares: errors as ``{"error": code, "message": ...}`` and the
repository named in the path (404 as JSON when there is none)."""

from __future__ import annotations

import json
from typing import Any

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


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object ({} for an empty body); raises a JSON 400 for anything else."""
    if not request.can_read_body:
        return {}
    try:
        payload = await request.json()
    except (ValueError, UnicodeDecodeError):
        payload = None
    if not isinstance(payload, dict):
        raise web.HTTPBadRequest(content_type="application/json",
                                 text=json.dumps({"error": "bad_request",
                                                  "message": "the body must be a JSON object"}))
    return payload


def actor(request: web.Request) -> str:
    """Who a JSON API change is recorded as: the token's name with --auth, else "api"."""
    from govc.auth import TOKEN_KEY

    token = request.get(TOKEN_KEY)
    return str(getattr(token, "name", None) or "api")


_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 408: "timeout", 409: "conflict", 413: "too_large",
          415: "unsupported_media_type", 422: "invalid", 429: "too_many_requests"}


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Errors raised below ``/api/`` (aiohttp's own 404/405/413 included) answer as JSON with a
    stable code, like every error the handlers produce themselves."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400 or e.content_type == "application/json":
            raise
        message = (e.text or e.reason or "").strip()
        if message.startswith(f"{e.status}: "):
            message = message.split(": ", 1)[1]
        response = json_error(e.status, _CODES.get(e.status, "error" if e.status < 500 else "server_error"),
                              message or e.reason)
        for name in ("Allow", "Retry-After", "WWW-Authenticate"):
            if name in e.headers:
                response.headers[name] = e.headers[name]
        return response
