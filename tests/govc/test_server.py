"""The smart-HTTP server through aiohttp's test client: routes, statuses, headers, gzip bodies,
repository creation by push and over the API."""

from __future__ import annotations

import asyncio
import gzip
import json

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from govc.registry import Registry
from govc.server import ServerConfig, make_app
from protocol.pktline import FLUSH_PKT, encode
from tests.helpers import (
    C6,
    C7,
    TRANSCRIPTS,
    ZERO,
    demux,
    fill_repository,
    make_pack,
    pkts,
    split_pkts,
    transcript,
)

UPLOAD_RESULT = "application/x-git-upload-pack-result"
RECEIVE_RESULT = "application/x-git-receive-pack-result"


def run(app, scenario):
    """Run ``scenario(client)`` against ``app`` on a fresh event loop."""

    async def main():
        async with TestClient(TestServer(app)) as client:
            return await scenario(client)

    return asyncio.run(main())


def recorded_headers(scenario: str, exchange: int) -> dict[str, str]:
    meta = json.loads((TRANSCRIPTS / scenario / "exchanges.json").read_text())
    ex = next(e for e in meta["exchanges"] if e["exchange"] == exchange)
    return dict(ex["response"]["headers"])


def no_cache(headers) -> dict[str, str]:
    return {k: headers.get(k) for k in ("Expires", "Pragma", "Cache-Control")}


@pytest.fixture
def registry(served) -> Registry:
    """A registry serving the transcript repository (main at c6) as /repo.git."""
    reg = Registry()
    fill_repository(reg.create("repo"), served.repo_snapshot)
    return reg


# -- health, routes, statuses -----------------------------------------------------------------


def test_healthz() -> None:
    async def scenario(client):
        resp = await client.get("/healthz")
        return resp.status, await resp.text()

    assert run(make_app(), scenario) == (200, "ok\n")


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/repo.git/info/refs", 403),  # the dumb protocol is not served
        ("/repo.git/info/refs?service=git-frobnicate", 403),
        ("/missing.git/info/refs?service=git-upload-pack", 404),
        ("/team/missing.git/info/refs?service=git-upload-pack", 404),
        ("/repo.git/info/refs?service=git-upload-pack", 200),
        ("/repo/info/refs?service=git-upload-pack", 200),  # .git is optional
        ("/repo.git/info/refs?service=git-receive-pack", 200),
    ],
)
def test_info_refs_statuses(registry, path: str, status: int) -> None:
    async def scenario(client):
        resp = await client.get(path)
        await resp.read()
        return resp.status

    assert run(make_app(registry), scenario) == status


def test_missing_repository_posts_are_404(registry) -> None:
    async def scenario(client):
        resp = await client.post("/missing.git/git-upload-pack", data=FLUSH_PKT)
        await resp.read()
        return resp.status

    assert run(make_app(registry), scenario) == 404


@pytest.mark.parametrize("name", ["..", "a/../b", ".hidden", "x%2F..%2Fy"])
def test_bad_repository_names_are_not_found(registry, name: str) -> None:
    async def scenario(client):
        resp = await client.get(f"/{name}/info/refs?service=git-upload-pack")
        await resp.read()
        return resp.status

    assert run(make_app(registry), scenario) in (400, 404)


# -- headers and bodies as git-http-backend sends them ----------------------------------------


def test_v0_advertisement_over_http(transcripts, registry) -> None:
    async def scenario(client):
        resp = await client.get("/repo.git/info/refs?service=git-upload-pack")
        return resp.status, resp.headers, await resp.read()

    status, headers, body = run(make_app(registry), scenario)
    recorded = recorded_headers("02-clone-v0", 1)
    assert status == 200
    assert no_cache(headers) == no_cache(recorded)
    assert (
        headers["Content-Type"] == recorded["Content-Type"] == "application/x-git-upload-pack-advertisement"
    )
    assert pkts(body)[:2] == [b"# service=git-upload-pack\n", "flush"]


def test_v2_advertisement_over_http(transcripts, registry) -> None:
    async def scenario(client):
        resp = await client.get(
            "/repo.git/info/refs?service=git-upload-pack", headers={"Git-Protocol": "version=2"}
        )
        return resp.headers, await resp.read()

    headers, body = run(make_app(registry), scenario)
    assert no_cache(headers) == no_cache(recorded_headers("01-clone-v2", 1))
    assert body.startswith(b"000eversion 2\n")  # no "# service=" line in v2


def test_receive_pack_advertisement_over_http(transcripts, registry) -> None:
    async def scenario(client):
        resp = await client.get(
            "/repo.git/info/refs?service=git-receive-pack", headers={"Git-Protocol": "version=2"}
        )
        return resp.headers, await resp.read()

    headers, body = run(make_app(registry), scenario)
    assert headers["Content-Type"] == "application/x-git-receive-pack-advertisement"
    assert no_cache(headers) == no_cache(recorded_headers("12-push-new-branch", 1))
    assert pkts(body)[0] == b"# service=git-receive-pack\n"  # pushes stay v0


def test_ls_refs_over_http(transcripts, registry) -> None:
    async def scenario(client):
        resp = await client.post(
            "/repo.git/git-upload-pack",
            data=transcript("01-clone-v2", 2, "request"),
            headers={"Git-Protocol": "version=2", "Content-Type": "application/x-git-upload-pack-request"},
        )
        return resp.status, resp.headers, await resp.read()

    status, headers, body = run(make_app(registry), scenario)
    assert status == 200
    assert headers["Content-Type"] == UPLOAD_RESULT
    assert no_cache(headers) == no_cache(recorded_headers("01-clone-v2", 2))
    assert body == transcript("01-clone-v2", 2, "response")


def test_v0_clone_over_http(transcripts, registry) -> None:
    async def scenario(client):
        resp = await client.post("/repo.git/git-upload-pack", data=transcript("02-clone-v0", 2, "request"))
        return resp.status, await resp.read()

    status, body = run(make_app(registry), scenario)
    assert status == 200
    d = demux(pkts(body))
    assert d.lines == [b"NAK\n"]
    assert d.bands[1][:4] == b"PACK"
    assert d.trailer == ["flush"]


def test_gzip_request_body(transcripts, served) -> None:
    """21 exchange 4: git gzips fetch bodies over 1 KB; the answer is the one to the inflated body."""
    reg = Registry()
    fill_repository(reg.create("repo"), served.advanced_snapshot)
    raw = transcript("21-fetch-many-haves-v2", 4, "request")
    assert raw[:2] == b"\x1f\x8b"

    async def scenario(client):
        resp = await client.post(
            "/repo.git/git-upload-pack",
            data=raw,
            headers={
                "Git-Protocol": "version=2",
                "Content-Encoding": "gzip",
                "Content-Type": "application/x-git-upload-pack-request",
            },
        )
        return resp.status, await resp.read()

    status, body = run(make_app(reg), scenario)
    assert status == 200
    mine = demux(pkts(body))
    theirs = demux(pkts(transcript("21-fetch-many-haves-v2", 4, "response")))
    assert mine.lines == theirs.lines  # acknowledgments, 4 ACK, ready, delim, packfile
    assert mine.bands[1][:4] == b"PACK"


def test_gzip_push_body(transcripts) -> None:
    reg = Registry()
    body = gzip.compress(transcript("20-push-to-empty-repo", 2, "request"))

    async def scenario(client):
        resp = await client.post(
            "/fresh.git/git-receive-pack", data=body, headers={"Content-Encoding": "gzip"}
        )
        return resp.status, await resp.read()

    status, response = run(make_app(reg), scenario)
    assert status == 200
    assert response == transcript("20-push-to-empty-repo", 2, "response")
    assert reg.get("fresh").refs.get("refs/heads/main") == C6


def test_bad_gzip_push_body_changes_nothing(transcripts, registry) -> None:
    repo_c6 = registry.get("repo")
    body = gzip.compress(transcript("12-push-new-branch", 2, "request"))
    corrupt = body[:20] + bytes(b ^ 0x5A for b in body[20:60]) + body[60:]
    refs_before = repo_c6.refs.items()

    async def scenario(client):
        out = []
        for path in ("/repo.git/git-receive-pack", "/new.git/git-receive-pack"):
            try:
                resp = await client.post(path, data=corrupt, headers={"Content-Encoding": "gzip"})
                out.append((resp.status, await resp.read()))
            except aiohttp.ServerDisconnectedError:
                # aiohttp answers 400 and closes; the test client can lose the race to read it.
                out.append((400, b""))
        return out

    for status, response in run(make_app(registry), scenario):
        assert status in (200, 400)
        assert b"ok refs/heads/topic" not in response
    assert repo_c6.refs.items() == refs_before
    assert registry.names() == ["repo"]


def test_malformed_upload_pack_request_gets_err(registry) -> None:
    async def scenario(client):
        resp = await client.post("/repo.git/git-upload-pack", data=b"zzzz")
        return resp.status, await resp.read()

    status, body = run(make_app(registry), scenario)
    assert status == 200
    assert pkts(body)[0].startswith(b"ERR ")


# -- pushes -----------------------------------------------------------------------------------


def post_push(app, path: str, body: bytes):
    async def scenario(client):
        resp = await client.post(
            path, data=body, headers={"Content-Type": "application/x-git-receive-pack-request"}
        )
        return resp.status, resp.headers, await resp.read()

    return run(app, scenario)


def test_push_creates_the_repository(transcripts) -> None:
    reg = Registry()
    status, headers, body = post_push(
        make_app(reg), "/team/app.git/git-receive-pack", transcript("20-push-to-empty-repo", 2, "request")
    )
    assert status == 200
    assert headers["Content-Type"] == RECEIVE_RESULT
    assert no_cache(headers) == no_cache(recorded_headers("20-push-to-empty-repo", 2))
    assert body == transcript("20-push-to-empty-repo", 2, "response")
    repo = reg.get("team/app")
    assert repo is not None
    assert repo.head_target == "refs/heads/main"
    assert repo.refs.get("HEAD") == C6


def test_push_of_another_branch_sets_head_to_it(transcripts) -> None:
    reg = Registry()
    body = transcript("20-push-to-empty-repo", 2, "request").replace(
        b" refs/heads/main\x00", b" refs/heads/dev\x00"
    )
    body = b"%04x" % (int(body[:4], 16) - 1) + body[4:]  # the line got one byte shorter
    status, _, response = post_push(make_app(reg), "/x.git/git-receive-pack", body)
    assert status == 200
    assert pkts(demux(pkts(response)).bands[1])[1] == b"ok refs/heads/dev\n"
    assert reg.get("x").head_target == "refs/heads/dev"


def test_failed_push_creates_no_repository(transcripts) -> None:
    reg = Registry()
    body = transcript("20-push-to-empty-repo", 2, "request")[:-1]  # pack checksum cut short
    status, _, response = post_push(make_app(reg), "/nope.git/git-receive-pack", body)
    assert status == 200
    assert pkts(demux(pkts(response)).bands[1])[0] != b"unpack ok\n"
    assert reg.names() == []


def test_push_creation_can_be_turned_off(transcripts) -> None:
    reg = Registry()
    app = make_app(reg, ServerConfig(auto_create=False))
    status, _, _ = post_push(
        app, "/new.git/git-receive-pack", transcript("20-push-to-empty-repo", 2, "request")
    )
    assert status == 404
    assert reg.names() == []
    app = make_app(reg, ServerConfig(auto_create=False))

    async def scenario(client):
        resp = await client.get("/new.git/info/refs?service=git-receive-pack")
        await resp.read()
        return resp.status

    assert run(app, scenario) == 404


def test_advertisement_for_a_repository_a_push_would_create() -> None:
    reg = Registry()

    async def scenario(client):
        resp = await client.get("/later.git/info/refs?service=git-receive-pack")
        return resp.status, await resp.read()

    status, body = run(make_app(reg), scenario)
    assert status == 200
    assert pkts(body)[2].startswith(ZERO + b" capabilities^{}\x00")
    assert reg.names() == []  # only a push creates it


def test_atomic_push_with_a_failing_ref_changes_nothing(transcripts, registry) -> None:
    repo_c6 = registry.get("repo")
    _, rest = split_pkts(transcript("14-push-atomic-two-refs", 2, "request"))
    body = (
        encode(C6 + b" fc3b85588b06b9fd80f112800e91e4be9983b442 refs/heads/main\x00report-status atomic")
        + encode(C7 + b" 8073ea47b725bbaa211108d9aa3a001597523758 refs/heads/topic")  # stale: no topic
        + FLUSH_PKT
        + rest
    )
    refs_before = repo_c6.refs.items()
    status, _, response = post_push(make_app(registry), "/repo.git/git-receive-pack", body)
    assert status == 200
    lines = pkts(response)
    assert lines[0] == b"unpack ok\n"
    assert all(line.startswith(b"ng ") for line in lines[1:-1])
    assert repo_c6.refs.items() == refs_before


def test_rejected_push_leaves_no_objects_and_no_refs(transcripts, registry) -> None:
    repo_c6 = registry.get("repo")
    before = (repo_c6.refs.items(), len(repo_c6.objects))
    missing = encode(ZERO + b" " + b"7" * 40 + b" refs/heads/x\x00report-status") + FLUSH_PKT + make_pack([])
    status, _, response = post_push(make_app(registry), "/repo.git/git-receive-pack", missing)
    assert status == 200
    assert pkts(response)[1] == b"ng refs/heads/x missing necessary objects\n"
    body = transcript("12-push-new-branch", 2, "request")
    status, _, response = post_push(make_app(registry), "/repo.git/git-receive-pack", body[:-5] + b"xxxxx")
    assert status == 200
    assert pkts(demux(pkts(response)).bands[1])[1] == b"ng refs/heads/topic unpacker error\n"
    assert (repo_c6.refs.items(), len(repo_c6.objects)) == before


def test_malformed_push_is_400(registry) -> None:
    status, _, _ = post_push(make_app(registry), "/repo.git/git-receive-pack", b"0010not a command0000")
    assert status == 400


def test_push_cut_short_is_400(registry) -> None:
    repo_c6 = registry.get("repo")
    line = encode(ZERO + b" " + C6 + b" refs/heads/x\x00report-status")
    status, _, _ = post_push(make_app(registry), "/repo.git/git-receive-pack", line)  # no flush, no pack
    assert status == 400
    assert repo_c6.refs.get("refs/heads/x") is None


def test_empty_push_body(registry) -> None:
    status, _, body = post_push(make_app(registry), "/repo.git/git-receive-pack", FLUSH_PKT)
    assert (status, body) == (200, b"")


# -- the repository API -----------------------------------------------------------------------


def api(app, *requests):
    async def scenario(client):
        out = []
        for method, path, kwargs in requests:
            resp = await client.request(method, path, **kwargs)
            text = await resp.text()
            try:
                payload = json.loads(text) if text else None
            except json.JSONDecodeError:
                payload = text
            out.append((resp.status, payload))
        return out

    return run(app, scenario)


def test_create_repository_201_then_409() -> None:
    reg = Registry()
    (created, again, listed) = api(
        make_app(reg),
        ("POST", "/api/v1/repos", {"json": {"name": "team/app"}}),
        ("POST", "/api/v1/repos", {"json": {"name": "team/app.git"}}),
        ("GET", "/api/v1/repos", {}),
    )
    assert created == (201, {"name": "team/app", "path": "/team/app.git"})
    assert again[0] == 409
    assert listed == (200, {"repositories": ["team/app"]})
    assert reg.get("team/app") is not None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"json": {"name": "../etc"}},
        {"json": {"name": "a/../b"}},
        {"json": {"name": ""}},
        {"json": {"name": ".hidden"}},
        {"json": {"name": 5}},
        {"json": {"nom": "x"}},
        {"json": ["x"]},
        {"json": "x"},
        {"data": b"{not json"},
        {"data": b""},
        {"data": b"\xff\xfe\x00not utf-8", "headers": {"Content-Type": "application/json"}},
    ],
    ids=[
        "dotdot",
        "inner-dotdot",
        "empty",
        "hidden",
        "not-a-string",
        "no-name",
        "list",
        "string",
        "bad-json",
        "no-body",
        "not-utf8",
    ],
)
def test_create_repository_400(kwargs) -> None:
    reg = Registry()
    ((status, payload),) = api(make_app(reg), ("POST", "/api/v1/repos", kwargs))
    assert status == 400, payload
    assert "error" in payload
    assert reg.names() == []


def test_created_repository_is_served_empty(transcripts) -> None:
    reg = Registry()
    app = make_app(reg)
    api(app, ("POST", "/api/v1/repos", {"json": {"name": "blank"}}))

    async def scenario(client):
        resp = await client.post(
            "/blank.git/git-upload-pack",
            headers={"Git-Protocol": "version=2"},
            data=encode(b"command=ls-refs\n")
            + b"0001"
            + encode(b"symrefs\n")
            + encode(b"unborn\n")
            + FLUSH_PKT,
        )
        return resp.status, await resp.read()

    assert run(make_app(reg), scenario) == (200, transcript("19-clone-empty-v2", 2, "response"))
