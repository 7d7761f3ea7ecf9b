"""Files, commits and branches over HTTP, on top of the Python API (so every write goes through
a transaction: validators, compare-and-swap, one event).

    GET    /api/v1/repos/<repo>/files/<path>?ref=main[&at=<time>]   content (base64) at a ref or a time
    PUT    /api/v1/repos/<repo>/files/<path>    {"content" | "content_base64", "branch", "message",
                                                 "author", "expected_commit"}   write through a transaction
    DELETE /api/v1/repos/<repo>/files/<path>    {"branch", "message", "author", "expected_commit"}
    GET    /api/v1/repos/<repo>/commits?ref=main&limit=20                      first-parent log
    GET    /api/v1/repos/<repo>/commits/<rev>[?patch=true]          one commit and what it changed
    GET    /api/v1/repos/<repo>/diff?from=<rev>&to=<rev>[&patch=true]           files that differ
    GET    /api/v1/repos/<repo>/branches                                        branches and their tips
    POST   /api/v1/repos/<repo>/branches          {"name", "from": <rev>}       create a branch
    DELETE /api/v1/repos/<repo>/branches/<name>[?expected_commit=<id>]           delete one
    GET    /api/v1/repos/<repo>/snapshot?at=<time>[&ref=main]   time travel: every ref (and the
                                                                files of ``ref``) as they were then

A ``<rev>`` is a commit id, a branch, a reality, a tag or a full ref name.
"""

from __future__ import annotations

import asyncio
import base64
import difflib
from dataclasses import asdict
from datetime import datetime
from typing import Any

from aiohttp import web

from govc.api_common import actor, json_body, json_error, repository_or_404
from govc.registry import Registry
from govc.repository import Repository
from govc.trees import Entry, FileChange, load_commit
from govc.validation import ConflictError, ValidationError
from storage.errors import RefError, StaleRef
from storage.interfaces import RefUpdate
from storage.packs import OBJ_COMMIT, OBJ_TAG
from storage.refnames import is_valid_ref_name


def _when(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text).timestamp()


_MAX_PATCH_BLOB = 1 << 20  # larger files are listed, not diffed


def resolve(repo: Repository, rev: str) -> bytes:
    """The commit ``rev`` names (tags peeled); KeyError when it names none."""
    candidates: list[bytes | None] = []
    if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev):
        candidates.append(rev.encode())
    for ref in (rev, f"refs/heads/{rev}", f"refs/tags/{rev}", f"{repo.ephemeral_namespace}{rev}"):
        if ref.startswith("refs/"):
            candidates.append(repo.refs.get(ref))
    for oid in candidates:
        for _ in range(16):  # a tag of a tag of ... a commit
            if oid is None or not repo.objects.has(oid):
                break
            type_num, raw = repo.objects.get(oid)
            if type_num == OBJ_COMMIT:
                return oid
            if type_num != OBJ_TAG:
                break
            oid = raw.split(b"\n", 1)[0].removeprefix(b"object ").strip()
    raise KeyError(rev)


def _patch(repo: Repository, change: FileChange) -> str:
    def text(entry: Entry | None) -> list[str] | None:
        if entry is None:
            return []
        if repo.objects.size_of(entry.oid) > _MAX_PATCH_BLOB:
            return None
        data = repo.objects.get(entry.oid)[1]
        if b"\0" in data[:8000]:
            return None
        return data.decode("utf-8", "replace").splitlines(keepends=True)

    old, new = text(change.old), text(change.new)
    a = "/dev/null" if change.old is None else f"a/{change.path}"
    b = "/dev/null" if change.new is None else f"b/{change.path}"
    if old is None or new is None:
        return f"Binary files {a} and {b} differ\n"
    return "".join(difflib.unified_diff(old, new, a, b))


def _entry(entry: Entry | None) -> dict[str, str] | None:
    return None if entry is None else {"oid": entry.oid.decode(), "mode": f"{entry.mode:06o}"}


def changes(repo: Repository, old: bytes | None, new: bytes, patch: bool) -> list[dict[str, Any]]:
    """What changed between two commits (``old`` None: everything in ``new``)."""
    old_tree = repo.graph.commit(old).tree if old is not None else None
    out = []
    for change in repo.trees.diff(old_tree, repo.graph.commit(new).tree):
        item: dict[str, Any] = {"path": change.path, "status": change.kind,
                                "old": _entry(change.old), "new": _entry(change.new)}
        if patch:
            item["patch"] = _patch(repo, change)
        out.append(item)
    return out


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() in ("1", "true", "yes")


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
        body = await json_body(request)
        try:
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

    async def show_commit(request: web.Request) -> web.Response:
        repo = repository(request)
        rev = request.match_info["rev"]
        patch = _flag(request, "patch")

        def work() -> dict[str, Any]:
            oid = resolve(repo, rev)
            commit = load_commit(repo.objects, oid)
            parent = commit.parents[0].encode() if commit.parents else None
            return {**asdict(commit), "files": changes(repo, parent, oid, patch)}

        try:
            return web.json_response(await asyncio.to_thread(work))
        except KeyError:
            return json_error(404, "not_found", f"no commit {rev!r}")

    async def diff(request: web.Request) -> web.Response:
        repo = repository(request)
        to = request.query.get("to")
        if to is None or "from" not in request.query:
            return json_error(400, "bad_request", "expected ?from=<rev>&to=<rev>")
        frm = request.query["from"]
        patch = _flag(request, "patch")

        def work() -> dict[str, Any]:
            a, b = resolve(repo, frm), resolve(repo, to)
            return {"from": a.decode(), "to": b.decode(), "files": changes(repo, a, b, patch)}

        try:
            return web.json_response(await asyncio.to_thread(work))
        except KeyError as e:
            return json_error(404, "not_found", f"no commit {e.args[0]!r}")

    async def create_branch(request: web.Request) -> web.Response:
        repo = repository(request)
        payload = await json_body(request)
        name, start = payload.get("name"), payload.get("from", "main")
        if not isinstance(name, str) or not isinstance(start, str):
            return json_error(400, "bad_request", 'expected {"name": ..., "from": "main"}')
        ref = f"refs/heads/{name}"
        if not is_valid_ref_name(ref):
            return json_error(422, "invalid_name", f"invalid branch name {name!r}")
        try:
            oid = resolve(repo, start)
        except KeyError:
            return json_error(422, "no_base", f"no commit {start!r}")
        try:
            await asyncio.to_thread(repo.update_refs, [RefUpdate(ref, oid, None)], who=actor(request),
                                    message=f"branch: created from {start}", source="api")
        except StaleRef:
            return json_error(409, "exists", f"branch {name!r} exists")
        except RefError as e:
            return json_error(409, "conflict", str(e))
        return web.json_response({"name": name, "commit": oid.decode()}, status=201)

    async def delete_branch(request: web.Request) -> web.Response:
        repo = repository(request)
        name = request.match_info["name"]
        ref = f"refs/heads/{name}"
        current = repo.refs.get(ref)
        if current is None:
            return json_error(404, "not_found", f"no branch {name!r}")
        expected = request.query.get("expected_commit")
        if expected is not None and expected.encode() != current:
            return json_error(409, "stale", f"{name} is at {current.decode()}, not {expected}")
        try:
            await asyncio.to_thread(repo.update_refs, [RefUpdate(ref, None, current)], who=actor(request),
                                    message="branch: deleted", source="api")
        except ValidationError as e:
            return json_error(422, "rejected", str(e))
        except StaleRef:
            return json_error(409, "stale", f"{name} moved meanwhile")
        except RefError as e:
            return json_error(409, "conflict", str(e))
        return web.Response(status=204)

    async def snapshot(request: web.Request) -> web.Response:
        repo = repository(request)
        if "at" not in request.query:
            return json_error(400, "bad_request", "expected ?at=<seconds since the epoch or ISO 8601 time>")
        try:
            when = _when(request.query["at"])
        except ValueError:
            return json_error(400, "bad_request", f"bad time {request.query['at']!r}")
        ref = request.query.get("ref")

        def work() -> dict[str, Any]:
            snap = repo.time_travel(when)
            body: dict[str, Any] = {"at": snap.when, "refs": {n: v.decode() for n, v in snap.refs().items()}}
            if ref is not None:
                tip = snap.ref(ref)
                body["ref"] = ref
                body["commit"] = tip.decode() if tip is not None else None
                body["files"] = snap.files(ref)
            return body

        return web.json_response(await asyncio.to_thread(work))

    base = "/api/v1/repos/{repo:.+?}"
    app.router.add_get(base + "/files/{path:.+}", read_file)
    app.router.add_put(base + "/files/{path:.+}", change_file)
    app.router.add_delete(base + "/files/{path:.+}", change_file)
    app.router.add_get(base + "/commits", commits)
    app.router.add_get(base + "/commits/{rev:.+}", show_commit)
    app.router.add_get(base + "/diff", diff)
    app.router.add_get(base + "/branches", branches)
    app.router.add_post(base + "/branches", create_branch)
    app.router.add_delete(base + "/branches/{name:.+}", delete_branch)
    app.router.add_get(base + "/snapshot", snapshot)
