"""Files, commits and branches over HTTP: reads at a ref or a time, writes through transactions
with an expected old commit, validators and errors as JSON."""

from __future__ import annotations

import asyncio
import base64
import time

from aiohttp.test_utils import TestClient, TestServer

import govc
from govc.registry import Registry
from govc.server import ServerConfig, make_app


def test_files_api() -> None:
    repo = govc.Repository("team/app")
    with repo.transaction("main", author="ops <ops@example.com>") as tx:
        tx.write("conf/app.conf", "workers = 4\n")
        first = tx.commit("base")
    moment = time.time() + 0.5

    @repo.validator
    def no_secrets(change: govc.Change) -> None:
        if any(data and b"SECRET" in data for data in change.files.values()):
            raise govc.ValidationError("no secrets, please")

    registry = Registry()
    registry.add("team/app", repo)

    async def scenario() -> list[object]:
        app = make_app(registry, ServerConfig(maintenance_interval=0))
        base = "/api/v1/repos/team/app"
        out: list[object] = []
        async with TestClient(TestServer(app)) as client:
            got = await (await client.get(f"{base}/files/conf/app.conf")).json()
            out.append((base64.b64decode(got["content"]), got["commit"] == first.oid))
            out.append((await client.get(f"{base}/files/nope.txt")).status)
            await asyncio.sleep(1.1)
            put = await client.put(f"{base}/files/conf/app.conf", json={
                "content": "workers = 8\n", "message": "scale", "author": "bot <bot@example.com>",
                "expected_commit": first.oid})
            written = await put.json()
            out.append((put.status, written["commit"] == repo.refs.get("refs/heads/main").decode()))
            stale = await client.put(f"{base}/files/conf/app.conf", json={
                "content": "workers = 9\n", "expected_commit": first.oid})
            out.append(stale.status)
            refused = await client.put(f"{base}/files/secret.txt", json={"content": "SECRET"})
            out.append((refused.status, (await refused.json())["message"]))
            then = await (await client.get(f"{base}/files/conf/app.conf", params={"at": str(moment)})).json()
            out.append(base64.b64decode(then["content"]))
            out.append((await client.delete(f"{base}/files/conf/app.conf", json={"message": "rm"})).status)
            log = await (await client.get(f"{base}/commits")).json()
            out.append([c["message"].strip() for c in log["commits"]])
            branches = await (await client.get(f"{base}/branches")).json()
            out.append([b["name"] for b in branches["branches"]])
        return out

    assert asyncio.run(scenario()) == [
        (b"workers = 4\n", True), 404, (200, True), 409, (422, "no secrets, please"),
        b"workers = 4\n", 200, ["rm", "scale", "base"], ["main"],
    ]
    assert repo.log()[1].author == "bot <bot@example.com>"
