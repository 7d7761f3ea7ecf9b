"""Repositories, commits, diffs, branches and time travel over the JSON API, against a real
aiohttp server (aiohttp's test client speaks real HTTP on loopback)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

import govc
from govc.registry import Registry
from govc.server import ServerConfig, make_app
from storage.disk import DataDirectory


def run(registry: Registry, scenario: Callable[[TestClient], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        app = make_app(registry, ServerConfig(maintenance_interval=0))
        async with TestClient(TestServer(app)) as client:
            return await scenario(client)

    return asyncio.run(go())


def _history() -> tuple[govc.Repository, list[str], float]:
    repo = govc.Repository("team/app")
    oids = []
    with repo.transaction("main", author="ops <ops@example.com>") as tx:
        tx.write("conf/app.conf", "workers = 4\n")
        tx.write("logo.png", b"\x89PNG\0\0binary")
        oids.append(tx.commit("base").oid)
    moment = time.time()
    time.sleep(0.05)
    with repo.transaction("main", author="ops <ops@example.com>") as tx:
        tx.write("conf/app.conf", "workers = 8\n")
        tx.remove("logo.png")
        tx.write("README", "hello\n")
        oids.append(tx.commit("scale").oid)
    return repo, oids, moment


def test_commit_show_and_diff() -> None:
    repo, (first, second), _ = _history()
    registry = Registry()
    registry.add("team/app", repo)
    base = "/api/v1/repos/team/app"

    async def scenario(client: TestClient) -> None:
        r = await client.get(f"{base}/commits/{second}", params={"patch": "true"})
        assert r.status == 200
        shown = await r.json()
        assert shown["oid"] == second and shown["parents"] == [first] and shown["message"].strip() == "scale"
        files = {f["path"]: f for f in shown["files"]}
        assert {p: f["status"] for p, f in files.items()} == {
            "README": "added", "conf/app.conf": "modified", "logo.png": "removed"}
        assert "-workers = 4\n+workers = 8\n" in files["conf/app.conf"]["patch"]
        assert files["conf/app.conf"]["patch"].startswith("--- a/conf/app.conf\n+++ b/conf/app.conf\n")
        assert files["logo.png"]["patch"] == "Binary files a/logo.png and /dev/null differ\n"
        assert files["README"]["new"]["mode"] == "100644"
        # a branch name is a revision too; without ?patch no patch text
        plain = await (await client.get(f"{base}/commits/main")).json()
        assert plain["oid"] == second and "patch" not in plain["files"][0]
        root = await (await client.get(f"{base}/commits/{first}")).json()
        assert sorted(f["path"] for f in root["files"]) == ["conf/app.conf", "logo.png"]
        diff = await (await client.get(f"{base}/diff", params={"from": first, "to": "main"})).json()
        assert diff["from"] == first and diff["to"] == second and len(diff["files"]) == 3
        back = await (await client.get(f"{base}/diff", params={"from": "main", "to": first})).json()
        assert {f["path"]: f["status"] for f in back["files"]}["README"] == "removed"
        for path, status in ((f"{base}/commits/{'0' * 40}", 404), (f"{base}/commits/nope", 404),
                             (f"{base}/diff?from=main", 400), (f"{base}/diff?from=main&to=x", 404)):
            r = await client.get(path)
            assert r.status == status, path
            assert set(await r.json()) == {"error", "message"}

    run(registry, scenario)


def test_branches_create_delete_and_snapshot() -> None:
    repo, (first, second), moment = _history()
    registry = Registry()
    registry.add("team/app", repo)
    base = "/api/v1/repos/team/app"
    events: list[Any] = []
    repo.subscribe(events.append)

    async def scenario(client: TestClient) -> None:
        r = await client.post(f"{base}/branches", json={"name": "release/1", "from": first})
        assert r.status == 201 and (await r.json())["commit"] == first
        assert repo.refs.get("refs/heads/release/1") == first.encode()
        assert (await client.post(f"{base}/branches", json={"name": "release/1"})).status == 409
        assert (await client.post(f"{base}/branches", json={"name": "bad..name"})).status == 422
        assert (await client.post(f"{base}/branches", json={"name": "x", "from": "nope"})).status == 422
        assert (await client.post(f"{base}/branches", data=b"[1]")).status == 400
        names = [b["name"] for b in (await (await client.get(f"{base}/branches")).json())["branches"]]
        assert names == ["main", "release/1"]
        r = await client.delete(f"{base}/branches/release/1", params={"expected_commit": second})
        assert r.status == 409 and (await r.json())["error"] == "stale"
        r = await client.delete(f"{base}/branches/release/1", params={"expected_commit": first})
        assert r.status == 204
        assert (await client.delete(f"{base}/branches/release/1")).status == 404
        # time travel: the refs (and main's files) as they were
        snap = await (await client.get(f"{base}/snapshot", params={"at": str(moment), "ref": "main"})).json()
        assert snap["refs"]["refs/heads/main"] == first and snap["commit"] == first
        assert snap["files"] == ["conf/app.conf", "logo.png"]
        now = await (await client.get(f"{base}/snapshot", params={"at": str(time.time() + 5)})).json()
        assert now["refs"]["refs/heads/main"] == second and "refs/heads/release/1" not in now["refs"]
        assert (await client.get(f"{base}/snapshot")).status == 400
        assert (await client.get(f"{base}/snapshot", params={"at": "yesterday"})).status == 400

    run(registry, scenario)
    assert [(e.changes[0].name, e.who, e.source) for e in events] == [
        ("refs/heads/release/1", "api", "api"), ("refs/heads/release/1", "api", "api")]


def test_describe_change_and_delete(tmp_path: Path) -> None:
    registry = Registry(DataDirectory(tmp_path / "data"))
    repo = registry.create("team/app")
    with repo.transaction("main") as tx:
        tx.write("a", "1")
        tx.commit("one")
    with repo.transaction("dev") as tx:
        tx.write("b", "2")
        tx.commit("two")
    registry.protections.add("team/app", "refs/heads/main")
    assert registry.permissions is not None
    registry.permissions.grant("alice", "team/app", "write")
    base = "/api/v1/repos/team/app"

    async def scenario(client: TestClient) -> None:
        about = await (await client.get(base)).json()
        assert about["name"] == "team/app" and about["default_branch"] == "main"
        assert about["branches"] == 2 and about["objects"] == len(repo.objects) and about["durable"]
        assert about["anonymous_read"] is False and about["head"] == repo.refs.get("refs/heads/main").decode()
        r = await client.patch(base, json={"anonymous_read": True, "default_branch": "dev"})
        assert r.status == 200
        changed = await r.json()
        assert changed["anonymous_read"] is True and changed["default_branch"] == "dev"
        assert repo.head_target == "refs/heads/dev"
        for body, status in (({"default_branch": "nope"}, 422), ({"anonymous_read": "yes"}, 400),
                             ({"colour": "blue"}, 400), ([1], 400)):
            assert (await client.patch(base, json=body)).status == status, body
        assert (await client.get("/api/v1/repos/team/nope")).status == 404
        assert (await client.delete(base)).status == 204
        assert (await client.get(base)).status == 404
        assert (await client.delete(base)).status == 404
        assert (await (await client.get("/api/v1/repos")).json())["repositories"] == []
        # a new repository by that name starts clean: no rules, grants or settings of the old one
        assert (await client.post("/api/v1/repos", json={"name": "team/app"})).status == 201
        fresh = await (await client.get(base)).json()
        assert fresh["anonymous_read"] is False and fresh["objects"] == 0

    run(registry, scenario)
    assert registry.protections.rules_for("team/app") == []
    assert registry.permissions.grants("team/app") == []
    assert not (tmp_path / "data" / "repos" / "team" / "app.git" / "objects" / "pack").exists() or not any(
        (tmp_path / "data" / "repos" / "team" / "app.git" / "objects" / "pack").iterdir())
    assert DataDirectory(tmp_path / "data").repo_names() == ["team/app"]
