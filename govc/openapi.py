"""The OpenAPI 3.1 description of the JSON API, served at ``GET /api/v1/openapi.json``.

Written out by hand from the handlers (govc.api_repos, api_files, api_realities, api_access,
webhooks) rather than generated: the description is a contract that clients are written against,
so a change to it should be a deliberate edit. ``tests/govc/test_openapi.py`` validates it and has
schemathesis call every operation against a live server, checking statuses and bodies against it.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

_REF = "#/components/schemas/"
_NAME = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,60}$"
_OID = r"^[0-9a-f]{40}$"


def _schema(name: str) -> dict[str, Any]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_schema("Error"), description)


_ERRORS = {
    "400": "The request is malformed (bad JSON, a missing or wrongly typed field, a bad parameter).",
    "401": "No, or an invalid, expired or revoked, token (with ``govc serve --auth``).",
    "403": "The token lacks the access this needs.",
    "404": "No such repository or resource.",
    "409": "A conflict with the current state: exists already, stale expected commit, no data directory.",
    "413": "The request body is larger than the server accepts.",
    "422": "Well-formed but refused: an invalid name, a validator's veto, a missing base.",
    "429": "Too many requests from this client; retry after the Retry-After header's seconds.",
}


def _op(
    summary: str,
    ok: dict[str, dict[str, Any]],
    *,
    errors: str = "",
    tag: str,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    operation_id: str,
) -> dict[str, Any]:
    responses = dict(ok)
    for code in ("401", "403", "429", *errors.split()):
        responses[code] = _error(_ERRORS[code])
    op: dict[str, Any] = {
        "summary": summary,
        "operationId": operation_id,
        "tags": [tag],
        "responses": responses,
    }
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _path_param(name: str, description: str, pattern: str = _NAME) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": pattern},
    }


def _query(
    name: str, description: str, schema: dict[str, Any] | None = None, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _object(
    properties: dict[str, Any], required: list[str] | None = None, additional: bool = True
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    if not additional:
        out["additionalProperties"] = False
    return out


_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_INT = {"type": "integer"}
_NUM = {"type": "number"}
_NULL_STR = {"type": ["string", "null"]}
_NAMES = {"type": "array", "items": _STR}
_ACCESS = {"type": "string", "enum": ["read", "write", "admin"]}
_REPO = _path_param("repo", "Repository name (without ``.git``).")
_REV = {"type": "string", "description": "A commit id, branch, reality, tag or full ref name."}
_AT = {"type": "string", "description": "Seconds since the epoch, or an ISO 8601 time."}

SCHEMAS: dict[str, Any] = {
    "Error": _object(
        {"error": {"type": "string", "description": "A stable code, e.g. not_found."}, "message": _STR},
        ["error", "message"],
    ),
    "Repository": _object(
        {
            "name": _STR,
            "path": _STR,
            "default_branch": _NULL_STR,
            "head": _NULL_STR,
            "branches": _INT,
            "tags": _INT,
            "realities": _INT,
            "refs": _INT,
            "objects": _INT,
            "packs": _INT,
            "pack_bytes": _INT,
            "durable": _BOOL,
            "anonymous_read": _BOOL,
        },
        ["name", "path", "default_branch", "refs", "objects", "durable", "anonymous_read"],
    ),
    "Commit": _object(
        {
            "oid": _STR,
            "tree": _STR,
            "parents": _NAMES,
            "author": _STR,
            "committer": _STR,
            "time": _INT,
            "message": _STR,
        },
        ["oid", "tree", "parents", "message"],
    ),
    "FileChange": _object(
        {
            "path": _STR,
            "status": {"type": "string", "enum": ["added", "modified", "removed"]},
            "old": {"type": ["object", "null"]},
            "new": {"type": ["object", "null"]},
            "patch": _STR,
        },
        ["path", "status", "old", "new"],
    ),
    "Reality": _object(
        {"name": _STR, "ref": _STR, "head": _NULL_STR, "ephemeral": _BOOL},
        ["name", "ref", "head", "ephemeral"],
    ),
    "Token": _object(
        {
            "id": _INT,
            "name": _STR,
            "repository": _NULL_STR,
            "access": _ACCESS,
            "created": _NUM,
            "expires": {"type": ["number", "null"]},
            "revoked": {"type": ["number", "null"]},
            "status": {"type": "string", "enum": ["active", "expired", "revoked"]},
        },
        ["id", "name", "repository", "access", "status"],
    ),
    "Grant": _object(
        {"principal": _STR, "repository": _NULL_STR, "access": _ACCESS}, ["principal", "repository", "access"]
    ),
    "Protection": _object(
        {
            "id": _INT,
            "repository": _NULL_STR,
            "pattern": _STR,
            "allow_force": _BOOL,
            "allow_delete": _BOOL,
            "writers": _NAMES,
            "validators": _NAMES,
        },
        ["id", "repository", "pattern", "allow_force", "allow_delete", "writers", "validators"],
    ),
    "ProtectionRequest": _object(
        {
            "pattern": {
                "type": "string",
                "description": "A full ref name or glob: refs/heads/main, refs/tags/v*",
            },
            "allow_force": _BOOL,
            "allow_delete": _BOOL,
            "writers": _NAMES,
            "validators": _NAMES,
        },
        ["pattern"],
    ),
    "Webhook": _object(
        {
            "id": _INT,
            "type": _STR,
            "name": _STR,
            "active": _BOOL,
            "events": _NAMES,
            "config": {"type": "object"},
            "url": _STR,
        },
        ["id", "active", "events", "config"],
    ),
    "WebhookRequest": _object(
        {
            "name": {"type": "string", "enum": ["web"]},
            "config": _object(
                {
                    "url": _STR,
                    "content_type": {"type": "string", "enum": ["json", "form"]},
                    "secret": _STR,
                    "insecure_ssl": {"type": ["string", "integer"]},
                }
            ),
            "events": _NAMES,
            "active": _BOOL,
            "branches": _NAMES,
            "paths": _NAMES,
            "add_events": _NAMES,
            "remove_events": _NAMES,
        }
    ),
    "Delivery": _object(
        {
            "id": _INT,
            "guid": _STR,
            "event": _STR,
            "status": _STR,
            "status_code": {"type": ["integer", "null"]},
            "attempts": _INT,
            "redelivery": _BOOL,
        },
        ["id", "guid", "event", "status"],
    ),
}


def _paths() -> dict[str, Any]:
    repo = "/api/v1/repos/{repo}"
    tag_repo, tag_files, tag_realities = "repositories", "files and commits", "realities"
    tag_access, tag_hooks = "access", "webhooks"
    paths: dict[str, Any] = {
        "/api/v1/repos": {
            "get": _op(
                "List repositories",
                {"200": _json(_object({"repositories": _NAMES}, ["repositories"]), "Repository names")},
                tag=tag_repo,
                operation_id="listRepositories",
            ),
            "post": _op(
                "Create an empty repository",
                {"201": _json(_object({"name": _STR, "path": _STR}, ["name", "path"]), "Created")},
                errors="400 409",
                tag=tag_repo,
                operation_id="createRepository",
                body=_object({"name": _STR}, ["name"]),
            ),
        },
        repo: {
            "parameters": [_REPO],
            "get": _op(
                "Describe a repository",
                {"200": _json(_schema("Repository"), "The repository")},
                errors="404",
                tag=tag_repo,
                operation_id="getRepository",
            ),
            "patch": _op(
                "Change a repository's settings",
                {"200": _json(_schema("Repository"), "The repository, changed")},
                errors="400 404 409 422",
                tag=tag_repo,
                operation_id="updateRepository",
                body=_object({"anonymous_read": _BOOL, "default_branch": _STR}, additional=False),
            ),
            "delete": _op(
                "Delete a repository, its data, protections, grants and settings",
                {"204": {"description": "Deleted"}},
                errors="404",
                tag=tag_repo,
                operation_id="deleteRepository",
            ),
        },
        repo + "/files/{path}": {
            "parameters": [_REPO, _path_param("path", "File path (may contain /).", r"^[^\x00]+$")],
            "get": _op(
                "Read a file at a ref or a moment",
                {
                    "200": _json(
                        _object(
                            {
                                "path": _STR,
                                "ref": _STR,
                                "commit": _NULL_STR,
                                "encoding": {"type": "string", "enum": ["base64"]},
                                "content": _STR,
                                "size": _INT,
                            },
                            ["path", "ref", "content", "size"],
                        ),
                        "The content, base64",
                    )
                },
                errors="400 404",
                tag=tag_files,
                operation_id="readFile",
                params=[_query("ref", "Branch or reality (default main)."), _query("at", "A moment", _AT)],
            ),
            "put": _op(
                "Write a file through a transaction",
                {"200": _json(_object({"path": _STR, "branch": _STR, "commit": _STR}), "Committed")},
                errors="400 404 409 422",
                tag=tag_files,
                operation_id="writeFile",
                body=_object(
                    {
                        "content": _STR,
                        "content_base64": _STR,
                        "branch": _STR,
                        "message": _STR,
                        "author": _STR,
                        "expected_commit": _STR,
                    }
                ),
            ),
            "delete": _op(
                "Remove a file through a transaction",
                {"200": _json(_object({"path": _STR, "branch": _STR, "commit": _STR}), "Committed")},
                errors="400 404 409 422",
                tag=tag_files,
                operation_id="deleteFile",
                body=_object({"branch": _STR, "message": _STR, "author": _STR, "expected_commit": _STR}),
            ),
        },
        repo + "/commits": {
            "parameters": [_REPO],
            "get": _op(
                "First-parent history of a ref, newest first",
                {
                    "200": _json(
                        _object({"commits": {"type": "array", "items": _schema("Commit")}}, ["commits"]),
                        "Commits",
                    )
                },
                errors="400 404",
                tag=tag_files,
                operation_id="listCommits",
                params=[
                    _query("ref", "Branch or reality (default main)."),
                    _query(
                        "limit",
                        "At most this many (default 20, up to 1000).",
                        {"type": "integer", "minimum": 0},
                    ),
                ],
            ),
        },
        repo + "/commits/{rev}": {
            "parameters": [_REPO, _path_param("rev", "Commit id or ref name.", r"^[^\x00]+$")],
            "get": _op(
                "One commit and the files it changed (against its first parent)",
                {
                    "200": _json(
                        {
                            "allOf": [
                                _schema("Commit"),
                                _object(
                                    {"files": {"type": "array", "items": _schema("FileChange")}}, ["files"]
                                ),
                            ]
                        },
                        "The commit",
                    )
                },
                errors="404",
                tag=tag_files,
                operation_id="getCommit",
                params=[_query("patch", "Include unified diffs.", _BOOL)],
            ),
        },
        repo + "/diff": {
            "parameters": [_REPO],
            "get": _op(
                "Files that differ between two commits",
                {
                    "200": _json(
                        _object(
                            {
                                "from": _STR,
                                "to": _STR,
                                "files": {"type": "array", "items": _schema("FileChange")},
                            },
                            ["from", "to", "files"],
                        ),
                        "The differences",
                    )
                },
                errors="400 404",
                tag=tag_files,
                operation_id="diff",
                params=[
                    _query("from", "Old revision", _REV, True),
                    _query("to", "New revision", _REV, True),
                    _query("patch", "Include unified diffs.", _BOOL),
                ],
            ),
        },
        repo + "/branches": {
            "parameters": [_REPO],
            "get": _op(
                "Branches and their tips",
                {
                    "200": _json(
                        _object(
                            {
                                "branches": {
                                    "type": "array",
                                    "items": _object({"name": _STR, "commit": _STR}, ["name", "commit"]),
                                }
                            },
                            ["branches"],
                        ),
                        "Branches",
                    )
                },
                errors="404",
                tag=tag_realities,
                operation_id="listBranches",
            ),
            "post": _op(
                "Create a branch",
                {"201": _json(_object({"name": _STR, "commit": _STR}), "Created")},
                errors="400 404 409 422",
                tag=tag_realities,
                operation_id="createBranch",
                body=_object({"name": _STR, "from": _REV}, ["name"]),
            ),
        },
        repo + "/branches/{name}": {
            "parameters": [_REPO, _path_param("name", "Branch name (may contain /).", r"^[^\x00]+$")],
            "delete": _op(
                "Delete a branch",
                {"204": {"description": "Deleted"}},
                errors="404 409 422",
                tag=tag_realities,
                operation_id="deleteBranch",
                params=[_query("expected_commit", "Refuse unless the branch is here.")],
            ),
        },
        repo + "/snapshot": {
            "parameters": [_REPO],
            "get": _op(
                "Time travel: every ref, and optionally the files of one, as they were at a moment",
                {
                    "200": _json(
                        _object(
                            {
                                "at": _NUM,
                                "refs": {"type": "object", "additionalProperties": _STR},
                                "ref": _STR,
                                "commit": _NULL_STR,
                                "files": _NAMES,
                            },
                            ["at", "refs"],
                        ),
                        "The snapshot",
                    )
                },
                errors="400 404",
                tag=tag_files,
                operation_id="snapshot",
                params=[_query("at", "The moment", _AT, True), _query("ref", "Also list this ref's files.")],
            ),
        },
        repo + "/realities": {
            "parameters": [_REPO],
            "get": _op(
                "List realities",
                {
                    "200": _json(
                        _object({"realities": {"type": "array", "items": _schema("Reality")}}, ["realities"]),
                        "Realities",
                    )
                },
                errors="404",
                tag=tag_realities,
                operation_id="listRealities",
            ),
            "post": _op(
                "Create a reality from a branch",
                {"201": _json(_schema("Reality"), "Created")},
                errors="400 404 409 422",
                tag=tag_realities,
                operation_id="createReality",
                body=_object({"name": _STR, "base": _STR, "ephemeral": _BOOL}, ["name"]),
            ),
        },
        repo + "/realities/{name}": {
            "parameters": [_REPO, _path_param("name", "Reality name.")],
            "delete": _op(
                "Drop a reality",
                {"204": {"description": "Dropped"}},
                errors="404 409",
                tag=tag_realities,
                operation_id="deleteReality",
            ),
        },
        repo + "/realities/{name}/promote": {
            "parameters": [_REPO, _path_param("name", "Reality name.")],
            "post": _op(
                "Promote a reality into a branch (validators run)",
                {"200": _json(_object({"promoted": _STR, "into": _STR, "commit": _STR}), "Promoted")},
                errors="400 404 409 422",
                tag=tag_realities,
                operation_id="promoteReality",
                body=_object({"into": _STR}),
            ),
        },
        "/api/v1/tokens": {
            "get": _op(
                "List tokens (never their secrets)",
                {
                    "200": _json(
                        _object({"tokens": {"type": "array", "items": _schema("Token")}}, ["tokens"]),
                        "Tokens",
                    )
                },
                errors="409",
                tag=tag_access,
                operation_id="listTokens",
            ),
            "post": _op(
                "Create a token; the secret is in this response only",
                {
                    "201": _json(
                        _object(
                            {
                                "id": _INT,
                                "name": _STR,
                                "repository": _NULL_STR,
                                "access": _ACCESS,
                                "expires": {"type": ["number", "null"]},
                                "token": _STR,
                            },
                            ["id", "name", "token"],
                        ),
                        "Created",
                    )
                },
                errors="400 409",
                tag=tag_access,
                operation_id="createToken",
                body=_object(
                    {
                        "name": _STR,
                        "repository": _NULL_STR,
                        "access": _ACCESS,
                        "expires": {"type": "string", "description": "e.g. 90m, 12h, 30d, 2w"},
                    },
                    ["name"],
                ),
            ),
        },
        "/api/v1/tokens/{token}": {
            "parameters": [_path_param("token", "Token name or id.")],
            "delete": _op(
                "Revoke a token",
                {
                    "200": _json(
                        _object({"revoked": {"type": "array", "items": _INT}}, ["revoked"]), "Revoked"
                    )
                },
                errors="404 409",
                tag=tag_access,
                operation_id="revokeToken",
            ),
        },
    }
    for prefix, scope, suffix in (("/api/v1", [], "Everywhere"), (repo, [_REPO], "")):
        paths[prefix + "/permissions"] = {
            **({"parameters": scope} if scope else {}),
            "get": _op(
                "List grants",
                {
                    "200": _json(
                        _object(
                            {"grants": {"type": "array", "items": _schema("Grant")}, "anonymous_read": _BOOL},
                            ["grants"],
                        ),
                        "Grants",
                    )
                },
                errors="404 409",
                tag=tag_access,
                operation_id=f"listGrants{suffix}",
            ),
        }
        paths[prefix + "/permissions/{principal}"] = {
            "parameters": [*scope, _path_param("principal", "A token name.")],
            "put": _op(
                "Grant access to a principal",
                {"200": _json(_schema("Grant"), "Granted")},
                errors="400 404 409",
                tag=tag_access,
                operation_id=f"putGrant{suffix}",
                body=_object({"access": _ACCESS}, ["access"]),
            ),
            "delete": _op(
                "Revoke a grant",
                {"204": {"description": "Revoked"}},
                errors="400 404 409",
                tag=tag_access,
                operation_id=f"deleteGrant{suffix}",
            ),
        }
        paths[prefix + "/protections"] = {
            **({"parameters": scope} if scope else {}),
            "get": _op(
                "List protected-ref rules",
                {
                    "200": _json(
                        _object(
                            {"protections": {"type": "array", "items": _schema("Protection")}},
                            ["protections"],
                        ),
                        "Rules",
                    )
                },
                errors="404",
                tag=tag_access,
                operation_id=f"listProtections{suffix}",
            ),
            "post": _op(
                "Protect refs",
                {"201": _json(_schema("Protection"), "Created")},
                errors="400 404",
                tag=tag_access,
                operation_id=f"addProtection{suffix}",
                body=_schema("ProtectionRequest"),
            ),
        }
        paths[prefix + "/protections/{id}"] = {
            "parameters": [*scope, _path_param("id", "Rule id.", r"^[0-9]{1,9}$")],
            "delete": _op(
                "Delete a rule",
                {"204": {"description": "Deleted"}},
                errors="404",
                tag=tag_access,
                operation_id=f"deleteProtection{suffix}",
            ),
        }
        hooks = prefix + "/hooks"
        paths[hooks] = {
            **({"parameters": scope} if scope else {}),
            "get": _op(
                "List webhooks",
                {"200": _json({"type": "array", "items": _schema("Webhook")}, "Webhooks")},
                errors="404",
                tag=tag_hooks,
                operation_id=f"listWebhooks{suffix}",
            ),
            "post": _op(
                "Create a webhook (GitHub's request shape)",
                {"201": _json(_schema("Webhook"), "Created")},
                errors="400 404 422",
                tag=tag_hooks,
                operation_id=f"createWebhook{suffix}",
                body=_schema("WebhookRequest"),
            ),
        }
        hook_id = _path_param("id", "Webhook id.", r"^[0-9]{1,9}$")
        paths[hooks + "/{id}"] = {
            "parameters": [*scope, hook_id],
            "get": _op(
                "A webhook",
                {"200": _json(_schema("Webhook"), "The webhook")},
                errors="404",
                tag=tag_hooks,
                operation_id=f"getWebhook{suffix}",
            ),
            "patch": _op(
                "Change a webhook",
                {"200": _json(_schema("Webhook"), "Changed")},
                errors="400 404 422",
                tag=tag_hooks,
                operation_id=f"updateWebhook{suffix}",
                body=_schema("WebhookRequest"),
            ),
            "delete": _op(
                "Delete a webhook",
                {"204": {"description": "Deleted"}},
                errors="404",
                tag=tag_hooks,
                operation_id=f"deleteWebhook{suffix}",
            ),
        }
        paths[hooks + "/{id}/deliveries"] = {
            "parameters": [*scope, hook_id],
            "get": _op(
                "Recent deliveries, newest first",
                {"200": _json({"type": "array", "items": _schema("Delivery")}, "Deliveries")},
                errors="400 404",
                tag=tag_hooks,
                operation_id=f"listDeliveries{suffix}",
                params=[
                    _query("per_page", "1-100", {"type": "integer"}),
                    _query("before", "Only deliveries older than this id", {"type": "integer"}),
                ],
            ),
        }
        delivery = _path_param("delivery_id", "Delivery id.", r"^[0-9]{1,9}$")
        paths[hooks + "/{id}/deliveries/{delivery_id}"] = {
            "parameters": [*scope, hook_id, delivery],
            "get": _op(
                "One delivery with its request and response",
                {"200": _json(_schema("Delivery"), "The delivery")},
                errors="404",
                tag=tag_hooks,
                operation_id=f"getDelivery{suffix}",
            ),
        }
        paths[hooks + "/{id}/deliveries/{delivery_id}/attempts"] = {
            "parameters": [*scope, hook_id, delivery],
            "post": _op(
                "Deliver again",
                {"202": _json(_schema("Delivery"), "Queued")},
                errors="404",
                tag=tag_hooks,
                operation_id=f"redeliver{suffix}",
            ),
        }
    paths[repo + "/hook-scripts"] = {
        "parameters": [_REPO],
        "get": _op(
            "Installed hook executables (pre-receive, update, post-receive)",
            {
                "200": _json(
                    _object(
                        {
                            "hook_scripts": {
                                "type": "array",
                                "items": _object({"name": _STR, "scope": _STR, "size": _INT}),
                            }
                        },
                        ["hook_scripts"],
                    ),
                    "Hook scripts",
                )
            },
            errors="404",
            tag=tag_hooks,
            operation_id="listHookScripts",
        ),
    }
    return paths


def description(server_url: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "govc JSON API",
            "version": "1",
            "description": (
                "Repositories, files, commits, branches, realities, time travel, webhooks, tokens, "
                "permissions and protected refs of a govc server. Git itself is served over smart "
                "HTTP at /<repo>.git. With `govc serve --auth`, send a token as "
                '`Authorization: Bearer <token>`. Every error is JSON: {"error": code, "message": text}.'
            ),
        },
        "security": [{"bearer": []}, {}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": _paths(),
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return copy.deepcopy(doc)  # the module's schemas are shared; a caller may edit its copy


async def openapi_handler(request: web.Request) -> web.Response:
    return web.json_response(description())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/openapi.json", openapi_handler)
