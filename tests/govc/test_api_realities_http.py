"""The realities JSON API: list, create (ephemeral or kept), drop and promote, with the API's
validators and compare-and-swap behind it."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer

import govc
from govc.registry import Registry
from govc.server import ServerConfig, make_app


def test_realities_over_http() -> None:
    repo = govc.Repository("infra")
    with repo.transaction("main", author="ops <ops@example.com>") as tx:
        tx.write("app.conf", "workers = 4\n")
        tx.commit("base")

    @repo.validator(branches="main")
    def no_debug(change: govc.Change) -> None:
        if any(data and b"debug" in data for data in change.files.values()):
            raise govc.ValidationError("debug must not reach main")

    registry = Registry()
    registry.add("infra", repo)

    async def scenario() -> list[object]:
        app = make_app(registry, ServerConfig(maintenance_interval=0))
        async with TestClient(TestServer(app)) as client:
            base = "/api/v1/repos/infra/realities"
            out: list[object] = []
            made = await client.post(base, json={"name": "canary", "ephemeral": True})
            out.append((made.status, (await made.json())["ephemeral"]))
            out.append((await client.post(base, json={"name": "canary"})).status)  # exists
            out.append((await client.post(base, json={"name": "bad..name"})).status)
            out.append((await client.post(base, json={"name": "x", "base": "nope"})).status)
            listed = await (await client.get(base)).json()
            out.append([r["name"] for r in listed["realities"]])
            repo.reality("canary").apply({"app.conf": "workers = 8\n"})
            promoted = await client.post(f"{base}/canary/promote", json={"into": "main"})
            out.append((promoted.status, (await promoted.json())["commit"] == repo.refs.get(
                "refs/heads/main").decode()))
            repo.reality("canary").apply({"app.conf": "debug = true\n"})
            refused = await client.post(f"{base}/canary/promote")
            out.append((refused.status, (await refused.json())["message"]))
            out.append((await client.delete(f"{base}/canary")).status)
            out.append((await client.delete(f"{base}/canary")).status)
            out.append((await client.get("/api/v1/repos/nope/realities")).status)
            return out

    assert asyncio.run(scenario()) == [
        (201, True), 409, 422, 422, ["canary"], (200, True), (422, "debug must not reach main"),
        204, 404, 404,
    ]
    assert repo.reality("main").read("app.conf") == b"workers = 8\n"
    assert repo.refs.get("refs/realities/canary") is None
