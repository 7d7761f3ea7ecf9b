"""/metrics: Prometheus text with request counts by kind and status, and repository gauges."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer

import govc
from govc.metrics import request_kind
from govc.registry import Registry
from govc.server import ServerConfig, make_app


def test_metrics_count_requests_and_describe_repositories() -> None:
    repo = govc.Repository("infra")
    with repo.transaction("main", author="ops <ops@example.com>") as tx:
        tx.write("app.conf", "workers = 4\n")
        tx.commit("base")
    registry = Registry()
    registry.add("infra", repo)

    async def scenario() -> str:
        app = make_app(registry, ServerConfig(maintenance_interval=0))
        async with TestClient(TestServer(app)) as client:
            await client.get("/infra.git/info/refs?service=git-upload-pack")
            await client.get("/infra.git/info/refs?service=git-upload-pack")
            await client.get("/missing.git/info/refs?service=git-upload-pack")
            response = await client.get("/metrics")
            assert response.headers["Content-Type"].startswith("text/plain")
            return await response.text()

    text = asyncio.run(scenario())
    assert 'govc_http_requests_total{kind="advertise:git-upload-pack",status="200"} 2.0' in text
    assert 'govc_http_requests_total{kind="advertise:git-upload-pack",status="404"} 1.0' in text
    assert "govc_repositories 1.0" in text
    assert "govc_objects 3.0" in text  # a blob, a tree and a commit
    assert "govc_http_request_seconds_bucket" in text


def test_request_kinds_never_carry_repository_names() -> None:
    from aiohttp.test_utils import make_mocked_request

    assert request_kind(make_mocked_request("POST", "/team/app.git/git-receive-pack")) == "git-receive-pack"
    assert request_kind(make_mocked_request("GET", "/team/app.git/events")) == "events"
    assert request_kind(make_mocked_request("GET", "/api/v1/repos/team/app/hooks")) == "api"
    assert request_kind(make_mocked_request("GET", "/team/app.git/whatever")) == "other"
