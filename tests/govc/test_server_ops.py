"""Operations endpoints: /healthz (alive) and /readyz (data loaded, backend reachable)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from govc.registry import Registry
from govc.server import ServerConfig, make_app
from storage.disk import DataDirectory


def _get(registry: Registry, path: str) -> tuple[int, str]:
    async def scenario() -> tuple[int, str]:
        app = make_app(registry, ServerConfig(maintenance_interval=0))
        async with TestClient(TestServer(app)) as client:
            response = await client.get(path)
            return response.status, await response.text()

    return asyncio.run(scenario())


def test_readyz_reports_loaded_repositories(tmp_path: Path) -> None:
    registry = Registry(DataDirectory(tmp_path / "data"))
    registry.create("infra")
    assert _get(registry, "/healthz") == (200, "ok\n")
    assert _get(registry, "/readyz") == (200, "ready: 1 repositories\n")


def test_readyz_fails_when_the_database_is_gone(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    directory = DataDirectory(tmp_path / "data")
    registry = Registry(directory)

    def unreachable() -> int:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(directory, "last_event_id", unreachable)
    status, text = _get(registry, "/readyz")
    assert status == 503 and "not ready" in text
    assert _get(registry, "/healthz")[0] == 200  # alive, but not ready


def test_while_shutting_down_new_connections_are_turned_away_and_readyz_fails() -> None:
    """The first step of a graceful shutdown (govc.server.begin_shutdown), seen from clients: a
    connection that was open before may finish what it does; a new one gets 503."""
    import aiohttp

    from govc.server import begin_shutdown

    registry = Registry()
    registry.create("infra")

    async def scenario() -> tuple[int, str, str | None, int, str, int, int]:
        app = make_app(registry, ServerConfig(maintenance_interval=0))
        async with TestClient(TestServer(app)) as client:
            old = await client.get("/infra.git/info/refs?service=git-upload-pack")  # keeps its connection
            await old.read()
            begin_shutdown(app)
            again = await client.get("/infra.git/info/refs?service=git-upload-pack")
            await again.read()
            closes = again.headers.get("Connection")
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
                url = client.make_url("/infra.git/info/refs?service=git-upload-pack")
                async with fresh.get(url) as new:
                    new_status, new_text = new.status, await new.text()
                async with fresh.get(client.make_url("/readyz")) as ready:
                    ready_status, ready_text = ready.status, await ready.text()
                async with fresh.get(client.make_url("/healthz")) as health:
                    return (again.status, closes or "", new.headers.get("Retry-After"), new_status,
                            new_text + ready_text, ready_status, health.status)

    again, closes, retry, new, texts, ready, health = asyncio.run(scenario())
    assert again == 200 and closes.lower() == "close"  # served, and the connection then closes
    assert new == 503 and retry == "5" and texts.startswith("govc: shutting down; retry in 5 s\n")
    assert ready == 503 and texts.endswith("not ready: shutting down\n")
    assert health == 200
