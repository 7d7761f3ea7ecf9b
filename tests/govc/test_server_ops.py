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
