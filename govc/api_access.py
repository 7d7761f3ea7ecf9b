"""Tokens, permissions, protected refs and hook scripts over HTTP (administrators only; the
rules are in govc.auth).

    GET    /api/v1/tokens                      tokens (never their secrets)
    POST   /api/v1/tokens                      {"name", "repo", "access", "expires": "30d"} -> secret, once
    DELETE /api/v1/tokens/<name or id>         revoke
    GET    /api/v1/permissions                 every grant
    GET    /api/v1/repos/<repo>/permissions    grants that apply to the repository, anonymous read
    PUT    /api/v1/repos/<repo>/permissions/<principal>   {"access"}   (``/api/v1/permissions/<p>``:
    DELETE /api/v1/repos/<repo>/permissions/<principal>                 every repository)
    GET    /api/v1/protections                 every rule
    POST   /api/v1/protections                 a rule for every repository
    GET    /api/v1/repos/<repo>/protections    rules that apply to the repository
    POST   /api/v1/repos/<repo>/protections    {"pattern", "allow_force", "allow_delete", "writers",
                                                "validators"}
    DELETE /api/v1/protections/<id>, /api/v1/repos/<repo>/protections/<id>
    GET    /api/v1/repos/<repo>/hook-scripts   installed hook executables (see govc.hooks)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from govc.api_common import json_body, json_error, repository_or_404
from govc.auth import TokenError, TokenStore, parse_duration
from govc.hooks import GLOBAL, HOOK_NAMES, hook_paths
from govc.permissions import Grant, GrantError, Permissions
from govc.protection import Rule
from govc.registry import Registry

Handler = Callable[[web.Request], Awaitable[web.Response]]


def _grant(g: Grant) -> dict[str, Any]:
    return {"principal": g.principal, "repository": g.repo, "access": g.access}


def _rule(r: Rule) -> dict[str, Any]:
    return {"id": r.id, "repository": r.repository, "pattern": r.pattern, "allow_force": not r.no_force,
            "allow_delete": not r.no_delete, "writers": list(r.writers), "validators": list(r.validators)}


def _names(payload: dict[str, Any], key: str) -> tuple[str, ...]:
    value = payload.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{key} must be a list of names")
    return tuple(value)


def add_routes(app: web.Application, registry_key: web.AppKey[Registry]) -> None:
    def durable(request: web.Request) -> tuple[TokenStore, Permissions]:
        registry = request.app[registry_key]
        if registry.directory is None or registry.permissions is None:
            raise web.HTTPConflict(content_type="application/json", text=(
                '{"error": "no_data_directory", "message": "tokens and permissions live in the data '
                'directory; this server keeps everything in memory"}'))
        return TokenStore(registry.directory), registry.permissions

    # -- tokens ----------------------------------------------------------------------------------

    async def list_tokens(request: web.Request) -> web.Response:
        store, _ = durable(request)
        tokens = await asyncio.to_thread(store.list)
        return web.json_response({"tokens": [
            {"id": t.id, "name": t.name, "repository": t.repo, "access": t.access, "created": t.created,
             "expires": t.expires, "revoked": t.revoked, "status": t.status()} for t in tokens]})

    async def create_token(request: web.Request) -> web.Response:
        store, _ = durable(request)
        payload = await json_body(request)
        name, repo, access = payload.get("name"), payload.get("repository"), payload.get("access", "read")
        expires = payload.get("expires")
        if not isinstance(name, str) or not isinstance(access, str) or not (
                repo is None or isinstance(repo, str)) or not (expires is None or isinstance(expires, str)):
            return json_error(400, "bad_request", 'expected {"name": ..., "repository": null, '
                                                  '"access": "read", "expires": "30d"}')
        try:
            seconds = parse_duration(expires) if expires is not None else None
            token, secret = await asyncio.to_thread(store.create, name, repo=repo, access=access,
                                                    expires_in=seconds)
        except TokenError as e:
            return json_error(400 if "exists" not in str(e) else 409,
                              "exists" if "exists" in str(e) else "bad_request", str(e))
        return web.json_response({"id": token.id, "name": token.name, "repository": token.repo,
                                  "access": token.access, "expires": token.expires, "token": secret},
                                 status=201)

    async def revoke_token(request: web.Request) -> web.Response:
        store, _ = durable(request)
        which = request.match_info["token"]
        revoked = await asyncio.to_thread(store.revoke, which)
        if not revoked:
            return json_error(404, "not_found", f"no active token {which!r}")
        return web.json_response({"revoked": [t.id for t in revoked]})

    # -- permissions -----------------------------------------------------------------------------

    def scope(request: web.Request) -> str | None:
        if "repo" not in request.match_info:
            return None
        return repository_or_404(request, request.app[registry_key]).name

    async def list_grants(request: web.Request) -> web.Response:
        _, permissions = durable(request)
        repo = scope(request)
        grants = await asyncio.to_thread(permissions.grants, repo)
        body: dict[str, Any] = {"grants": [_grant(g) for g in grants]}
        if repo is not None:
            body["anonymous_read"] = await asyncio.to_thread(permissions.anonymous_read, repo)
        return web.json_response(body)

    async def put_grant(request: web.Request) -> web.Response:
        _, permissions = durable(request)
        repo = scope(request)
        access = (await json_body(request)).get("access")
        if not isinstance(access, str):
            return json_error(400, "bad_request", 'expected {"access": "read" | "write" | "admin"}')
        try:
            grant = await asyncio.to_thread(permissions.grant, request.match_info["principal"], repo, access)
        except GrantError as e:
            return json_error(400, "bad_request", str(e))
        return web.json_response(_grant(grant))

    async def delete_grant(request: web.Request) -> web.Response:
        _, permissions = durable(request)
        repo = scope(request)
        principal = request.match_info["principal"]
        if not await asyncio.to_thread(permissions.revoke, principal, repo):
            return json_error(404, "not_found", f"{principal} has no grant on {repo or 'every repository'}")
        return web.Response(status=204)

    # -- protections -----------------------------------------------------------------------------

    async def list_rules(request: web.Request) -> web.Response:
        store = request.app[registry_key].protections
        repo = scope(request)
        rules = await asyncio.to_thread(store.rules if repo is None else lambda: store.rules_for(repo))
        return web.json_response({"protections": [_rule(r) for r in rules]})

    async def add_rule(request: web.Request) -> web.Response:
        store = request.app[registry_key].protections
        repo = scope(request)
        payload = await json_body(request)
        pattern = payload.get("pattern")
        flags = [payload.get(k, False) for k in ("allow_force", "allow_delete")]
        try:
            if not isinstance(pattern, str) or not all(isinstance(f, bool) for f in flags):
                raise ValueError('expected {"pattern": "refs/heads/main", "allow_force": false, '
                                 '"allow_delete": false, "writers": [], "validators": []}')
            rule = await asyncio.to_thread(store.add, repo, pattern, no_force=not flags[0],
                                           no_delete=not flags[1], writers=_names(payload, "writers"),
                                           validators=_names(payload, "validators"))
        except ValueError as e:
            return json_error(400, "bad_request", str(e))
        return web.json_response(_rule(rule), status=201)

    async def delete_rule(request: web.Request) -> web.Response:
        store = request.app[registry_key].protections
        repo = scope(request)
        rule_id = int(request.match_info["id"])
        rules = await asyncio.to_thread(store.rules)
        if not any(r.id == rule_id and r.repository == repo for r in rules):
            return json_error(404, "not_found", f"no rule {rule_id} for {repo or 'every repository'}")
        await asyncio.to_thread(store.remove, rule_id)
        return web.Response(status=204)

    # -- hook scripts ----------------------------------------------------------------------------

    async def hook_scripts(request: web.Request) -> web.Response:
        repo = repository_or_404(request, request.app[registry_key])
        found = []
        for name in HOOK_NAMES:
            for path in hook_paths(repo.hooks_dir, repo.name, name):
                found.append({"name": name, "scope": "global" if path.parent.name == GLOBAL else "repository",
                              "size": path.stat().st_size})
        return web.json_response({"hook_scripts": found})

    r = app.router
    r.add_get("/api/v1/tokens", list_tokens)
    r.add_post("/api/v1/tokens", create_token)
    r.add_delete("/api/v1/tokens/{token}", revoke_token)
    for base in ("/api/v1", "/api/v1/repos/{repo:.+}"):
        r.add_get(base + "/permissions", list_grants)
        r.add_put(base + "/permissions/{principal}", put_grant)
        r.add_delete(base + "/permissions/{principal}", delete_grant)
        r.add_get(base + "/protections", list_rules)
        r.add_post(base + "/protections", add_rule)
        r.add_delete(base + r"/protections/{id:\d{1,18}}", delete_rule)
    r.add_get("/api/v1/repos/{repo:.+}/hook-scripts", hook_scripts)
