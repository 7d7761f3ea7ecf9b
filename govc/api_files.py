"""Files, commits and branches over HTTP, on top of the Python API (so every write goes through
a transaction: validators, compare-and-swap, one event).

    GET    /api/v1/repos/<repo>/files/<path>?ref=main[&at=<time>]   content (base64) at a ref or a time
    PUT    /api/v1/repos/<repo>/files/<path>    {"content" | "content_base64", "branch", "message",
                                                 "author", "expected_commit"}   write through a transaction
    DELETE /api/v1/repos/<repo>/files/<path>    {"branch", "message", "author", "expected_commit"}
    GET    /api/v1/repos/<repo>/commits?ref=main&limit=20                      first-parent log
    GET    /api/v1/repos/<repo>/branches                                        branches and their tips
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import asdict
from datetime import datetime
from typing import Any

from aiohttp import web

from govc.api_common import json_error, repository_or_404
from govc.registry import Registry
from govc.repository import Repository
from govc.validation import ConflictError, ValidationError


def _when(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text).timestamp()


def add_routes(app: web.Application, registry_key: web.AppKey[Registry]) -> None:
    def repository(request: web.Request) -> Repository:
        return repository_or_404(request, request.app[registry_key])

    async def read_file(request: web.Request) -> web.Response:
        repo = repository(request)
        path = request.match_info["path"]
        ref = request.query.get("ref", "main")
        try:
            if "at" in request.query:
                snapshot = repo.time_travel(_when(request.query["at"]))
                content = snapshot.read(path, ref)
                commit = snapshot.last_commit(ref).oid
            else:
                reality = repo.reality(ref)
                content = reality.read(path)
                commit = reality.head.decode() if reality.head else None
        except KeyError:
            return json_error(404, "not_found", f"no file {path!r} at {ref}")
        except ValueError as e:
            return json_error(400, "bad_request", str(e))
        return web.json_response({"path": path, "ref": ref, "commit": commit, "encoding": "base64",
                                  "content": base64.b64encode(content).decode(), "size": len(content)})

    async def change_file(request: web.Request) -> web.Response:
        repo = repository(request)
        path = request.match_info["path"]
        try:
            body: dict[str, Any] = await request.json() if request.can_read_body else {}
            branch = str(body.get("branch", "main"))
            message = str(body.get("message") or f"{request.method.lower()} {path}")
            author = body.get("author")
            expected = body.get("expected_commit")
            if request.method == "PUT":
                if "content_base64" in body:
                    data: bytes | None = base64.b64decode(body["content_base64"], validate=True)
                else:
                    data = str(body["content"]).encode()
            else:
                data = None
        except (ValueError, KeyError, TypeError):
            return json_error(400, "bad_request",
                              'expected {"content": ..., "branch": "main", "message": ...}')

        def write() -> str:
            with repo.transaction(branch, author=author) as tx:
                if expected is not None and (tx.base_commit() or b"").decode() != expected:
                    raise ConflictError(f"{branch} is not at {expected}")
                if data is None:
                    tx.remove(path)
                else:
                    tx.write(path, data)
                return tx.commit(message).oid

        try:
            commit = await asyncio.to_thread(write)
        except KeyError:
            return json_error(404, "not_found", f"no file {path!r} on {branch}")
        except ValidationError as e:
            return json_error(422, "rejected", str(e))
        except ConflictError as e:
            return json_error(409, "stale", str(e))
        except ValueError as e:
            return json_error(400, "bad_request", str(e))
        return web.json_response({"path": path, "branch": branch, "commit": commit})

    async def commits(request: web.Request) -> web.Response:
        repo = repository(request)
        try:
            limit = min(int(request.query.get("limit", "20")), 1000)
        except ValueError:
            return json_error(400, "bad_request", "limit must be a number")
        log = repo.log(request.query.get("ref", "main"), limit=limit)
        return web.json_response({"commits": [asdict(c) for c in log]})

    async def branches(request: web.Request) -> web.Response:
        repo = repository(request)
        return web.json_response({"branches": [
            {"name": n, "commit": (repo.refs.get(f"refs/heads/{n}") or b"").decode()}
            for n in repo.branches()]})

    base = "/api/v1/repos/{repo:.+?}"
    app.router.add_get(base + "/files/{path:.+}", read_file)
    app.router.add_put(base + "/files/{path:.+}", change_file)
    app.router.add_delete(base + "/files/{path:.+}", change_file)
    app.router.add_get(base + "/commits", commits)
    app.router.add_get(base + "/branches", branches)
