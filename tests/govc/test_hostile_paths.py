"""No request reaches outside the data directory, whatever its path spells: encoded dot segments,
encoded slashes and backslashes, absolute paths, NUL bytes, overlong UTF-8 — sent raw (no client
normalisation) and through real ``git push``, against a real server with a data directory and
repository creation on push turned on."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yarl

import govc
from govc.registry import Registry
from govc.server import ServerConfig
from storage.disk import DataDirectory
from tests.helpers import git

HOSTILE = [
    "/%2e%2e/%2e%2e/escape",
    "/..%2f..%2fescape",
    "/%2E%2E%2F%2E%2E%2Fescape",
    "/a/%2e%2e/%2e%2e/%2e%2e/escape",
    "/..%5c..%5cescape",
    "/%252e%252e/%252e%252e/escape",  # double-encoded
    "/%C0%AE%C0%AE/escape",  # overlong UTF-8 for "."
    "/escape%00",
    "/%2e%2e",
    "/.",
    "/~root/escape",
    "/a//b",
    "/.hidden",
    "/a/.git/escape",
]
#: Absolute paths lose their leading slash: they name a repository inside the data directory.
ABSOLUTE = ["/%2Fetc%2Fescape", "//etc/escape2"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    data = tmp_path / "srv" / "data"
    data.mkdir(parents=True)
    config = ServerConfig(auto_create=True, maintenance_interval=0)
    srv = govc.Server(Registry(DataDirectory(data)), config=config)
    base = srv.serve_in_thread()
    try:
        yield base, data
    finally:
        srv.stop()


def _outside(root: Path, data: Path) -> set[str]:
    """Every path under ``root`` that is not in the data directory."""
    found = set()
    for top, dirs, files in os.walk(root):
        if Path(top) == data:
            dirs.clear()
            continue
        found.update(os.path.join(top, n) for n in dirs + files)
    return found


def test_raw_hostile_paths_answer_404_and_touch_nothing(server: tuple[str, Path], tmp_path: Path) -> None:
    base, data = server
    before = _outside(tmp_path, data)

    async def probe() -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        async with aiohttp.ClientSession(trust_env=False) as http:
            for path in HOSTILE:
                statuses = []
                for method, suffix, body in (
                    ("GET", "/info/refs?service=git-receive-pack", None),
                    ("POST", "/git-receive-pack", b"0000"),
                    ("GET", "/info/refs?service=git-upload-pack", None),
                    ("POST", "/git-upload-pack", b"0000"),
                    ("GET", "/events", None),
                ):
                    for name in (path, path + ".git"):
                        url = yarl.URL(f"{base}{name}{suffix}", encoded=True)
                        async with http.request(method, url, data=body) as response:
                            statuses.append(response.status)
                out[path] = statuses
            return out

    for path, statuses in asyncio.run(probe()).items():
        assert set(statuses) <= {400, 404}, (path, statuses)
    assert _outside(tmp_path, data) == before
    assert list((data / "repos").rglob("*.pack")) == []


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")
def test_git_push_to_hostile_urls_stays_inside_the_data_directory(server: tuple[str, Path],
                                                                  tmp_path: Path) -> None:
    base, data = server
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", work)
    (work / "f").write_text("x\n")
    git("-C", work, "add", "f")
    git("-C", work, "commit", "-q", "-m", "x")
    before = _outside(tmp_path, data)
    for path in HOSTILE:
        result = git("-C", work, "push", "-q", f"{base}{path}.git", "main", check=False)
        assert result.returncode != 0, path
    for path in ABSOLUTE:
        git("-C", work, "push", "-q", f"{base}{path}.git", "main")
    assert _outside(tmp_path, data) == before
    packs = sorted(p.relative_to(data).parts[:3] for p in (data / "repos").rglob("*.pack"))
    assert {p[:2] for p in packs} == {("repos", "etc")}  # "/etc/escape" became the repository etc/escape
    assert Registry(DataDirectory(data)).names() == ["etc/escape", "etc/escape2"]
