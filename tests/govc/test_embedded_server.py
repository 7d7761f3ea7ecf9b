"""govc.Server: serving repositories held in Python over smart HTTP — in asyncio (``running``), on a
background thread (``serve_in_thread``) and blocking (``run``)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

import govc
from tests.helpers import REPO_ROOT, git

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def advertised(body: bytes) -> dict[str, str]:
    """``{ref: oid}`` from a v0 info/refs answer (read with a minimal pkt-line parser)."""
    refs: dict[str, str] = {}
    i = 0
    while i + 4 <= len(body):
        size = int(body[i:i + 4], 16)
        if size < 4:
            i += 4
            continue
        line = body[i + 4:i + size].rstrip(b"\n").split(b"\x00")[0]
        i += size
        if line.startswith(b"#"):
            continue
        oid, _, name = line.partition(b" ")
        if len(oid) == 40 and name:
            refs[name.decode()] = oid.decode()
    return refs


def make_repo() -> govc.Repository:
    repo = govc.Repository()
    with repo.transaction("main", author="ops <ops@example.com>") as tx:
        tx.write("nginx.conf", "server { listen 443 ssl; }\n")
        tx.write("env/prod.tf", 'region = "eu"\n')
        tx.commit("initial")
    return repo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- asyncio -----------------------------------------------------------------------------------


def test_running_serves_healthz_and_refs() -> None:
    repo = make_repo()
    repo.parallel_reality("canary", ephemeral=True).apply({"app.conf": "workers = 8\n"})
    server = govc.Server({"infra": repo})

    async def main() -> None:
        assert server.url is None
        async with server.running(port=0) as url:
            assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
            assert server.url == url
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/healthz") as r:
                    assert r.status == 200
                async with http.get(f"{url}/infra.git/info/refs", params={"service": "git-upload-pack"}) as r:
                    assert r.status == 200
                    assert r.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
                    refs = advertised(await r.read())
                async with http.get(f"{url}/api/v1/repos") as r:
                    assert (await r.json())["repositories"] == ["infra"]
            assert refs["refs/heads/main"] == repo.reality("main").head.decode()
            assert refs["refs/realities/canary"] == repo.reality("canary").head.decode()
        assert server.url is None

    asyncio.run(main())


def test_running_sees_later_commits_but_not_open_transactions() -> None:
    repo = make_repo()
    server = govc.Server({"infra": repo})

    async def refs(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
        async with http.get(f"{url}/infra.git/info/refs?service=git-upload-pack") as r:
            return advertised(await r.read())

    async def main() -> None:
        async with server.running() as url, aiohttp.ClientSession() as http:
            first = repo.reality("main").head.decode()
            assert (await refs(http, url))["refs/heads/main"] == first
            with repo.transaction("main") as tx:
                tx.write("nginx.conf", "changed\n")
                assert (await refs(http, url))["refs/heads/main"] == first
                commit = tx.commit("change")
            assert (await refs(http, url))["refs/heads/main"] == commit.oid
            repo.parallel_reality("late")
            assert "refs/realities/late" in await refs(http, url)

    asyncio.run(main())


def test_running_can_serve_api_work_from_tasks() -> None:
    """The loop keeps serving while tasks use the API (realities made from several tasks)."""
    repo = make_repo()
    server = govc.Server({"infra": repo})

    async def experiment(n: int) -> None:
        reality = repo.parallel_reality(f"exp-{n}", ephemeral=True)
        await asyncio.to_thread(reality.apply, {"n": f"{n}\n"})

    async def main() -> dict[str, str]:
        async with server.running() as url:
            await asyncio.gather(*(experiment(n) for n in range(16)))
            async with aiohttp.ClientSession() as http, http.get(
                f"{url}/infra.git/info/refs?service=git-upload-pack"
            ) as r:
                return advertised(await r.read())

    refs = asyncio.run(main())
    for n in range(16):
        assert refs[f"refs/realities/exp-{n}"] == repo.reality(f"exp-{n}").head.decode()


def test_add_while_running_and_registry() -> None:
    registry = govc.Registry()
    registry.add("first", make_repo())
    server = govc.Server(registry)

    async def main() -> None:
        async with server.running() as url, aiohttp.ClientSession() as http:
            server.add("team/second", make_repo())
            for name in ("first", "team/second"):
                async with http.get(f"{url}/{name}.git/info/refs?service=git-upload-pack") as r:
                    assert r.status == 200, name
            async with http.get(f"{url}/missing.git/info/refs?service=git-upload-pack") as r:
                assert r.status == 404
            async with http.get(f"{url}/api/v1/repos") as r:
                assert (await r.json())["repositories"] == ["first", "team/second"]

    asyncio.run(main())


def test_unnamed_repository_takes_the_served_name() -> None:
    repo = govc.Repository()
    govc.Server({"infra": repo})
    assert repo.name == "infra"


def test_app_is_an_aiohttp_application() -> None:
    from aiohttp import web

    assert isinstance(govc.Server({"infra": make_repo()}).app(), web.Application)


# -- a background thread -----------------------------------------------------------------------


def test_serve_in_thread_and_stop() -> None:
    repo = make_repo()
    server = govc.Server({"infra": repo})
    url = server.serve_in_thread()
    try:
        assert url.startswith("http://127.0.0.1:")
        assert get(f"{url}/healthz")[0] == 200
        status, body = get(f"{url}/infra.git/info/refs?service=git-upload-pack")
        assert status == 200
        assert advertised(body)["refs/heads/main"] == repo.reality("main").head.decode()
    finally:
        server.stop()
    with pytest.raises(OSError):
        get(f"{url}/healthz", timeout=1)
    server.stop()  # stopping twice is harmless


def test_two_servers_side_by_side_share_a_repository() -> None:
    repo = make_repo()
    a, b = govc.Server({"x": repo}), govc.Server({"y": repo})
    url_a, url_b = a.serve_in_thread(), b.serve_in_thread()
    try:
        assert url_a != url_b
        refs_a = advertised(get(f"{url_a}/x.git/info/refs?service=git-upload-pack")[1])
        refs_b = advertised(get(f"{url_b}/y.git/info/refs?service=git-upload-pack")[1])
        assert refs_a == refs_b
    finally:
        a.stop()
        b.stop()


@needs_git
def test_clone_and_push_through_an_embedded_server(tmp_path: Path) -> None:
    repo = make_repo()
    events: list[govc.Event] = []
    watcher = repo.watch(events.append)
    server = govc.Server({"infra": repo})
    url = server.serve_in_thread()
    try:
        work = tmp_path / "work"
        git("clone", "-q", f"{url}/infra.git", work)
        assert (work / "nginx.conf").read_text() == "server { listen 443 ssl; }\n"
        cloned = git("-C", work, "rev-parse", "HEAD").stdout.decode().strip()
        assert cloned == repo.reality("main").head.decode()
        (work / "env" / "prod.tf").write_text('region = "us"\n')
        git("-C", work, "commit", "-q", "-am", "move region")
        git("-C", work, "push", "-q", "origin", "main")
        pushed = git("-C", work, "rev-parse", "HEAD").stdout.decode().strip()
        assert repo.reality("main").head.decode() == pushed
        assert repo.reality("main").read("env/prod.tf") == b'region = "us"\n'
        watcher.drain()
        assert [(e.source, e.new) for e in events] == [("push", pushed)]
        assert [c.path for c in events[0].changes("*.tf")] == ["env/prod.tf"]
    finally:
        server.stop()
        watcher.close()


@needs_git
def test_auto_create_makes_repositories_on_push(tmp_path: Path) -> None:
    server = govc.Server(auto_create=True)
    url = server.serve_in_thread()
    try:
        work = tmp_path / "work"
        git("init", "-q", "-b", "main", work)
        (work / "a").write_text("a\n")
        git("-C", work, "add", "a")
        git("-C", work, "commit", "-q", "-m", "a")
        git("-C", work, "push", "-q", f"{url}/fresh.git", "main")
        repo = server.registry.get("fresh")
        assert repo is not None
        assert repo.reality("main").read("a") == b"a\n"
    finally:
        server.stop()


# -- blocking ----------------------------------------------------------------------------------


def test_run_blocks_and_serves_until_interrupted(tmp_path: Path) -> None:
    port = free_port()
    script = textwrap.dedent(f"""
        import govc
        repo = govc.Repository()
        repo.reality("main").apply({{"a": "1\\n"}})
        print(repo.reality("main").head.decode(), flush=True)
        govc.Server({{"infra": repo}}).run(host="127.0.0.1", port={port})
    """)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        head = proc.stdout.readline().decode().strip()
        deadline = time.monotonic() + 15
        while True:
            try:
                if get(f"http://127.0.0.1:{port}/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "server.run() never answered"
            time.sleep(0.05)
        status, body = get(f"http://127.0.0.1:{port}/infra.git/info/refs?service=git-upload-pack")
        assert status == 200
        assert advertised(body)["refs/heads/main"] == head
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_post_creates_an_in_memory_repository() -> None:
    server = govc.Server()

    async def main() -> None:
        async with server.running() as url, aiohttp.ClientSession() as http, http.post(
            f"{url}/api/v1/repos", data=json.dumps({"name": "made"}),
            headers={"Content-Type": "application/json"},
        ) as r:
            assert r.status == 201

    asyncio.run(main())
    repo = server.registry.get("made")
    assert isinstance(repo, govc.Repository)
    assert not repo.durable
