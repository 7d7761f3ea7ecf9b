"""Access tokens (govc.auth): the store, the ``--auth`` middleware's decisions through aiohttp's test
client, and the ``govc token`` commands."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner, Result

from govc.auth import TokenError, TokenStore, hash_token, parse_duration
from govc.cli import main
from govc.registry import Registry
from govc.server import ServerConfig, make_app
from storage.disk import DataDirectory


@pytest.fixture
def directory(tmp_path: Path) -> DataDirectory:
    return DataDirectory(tmp_path / "data")


@pytest.fixture
def store(directory: DataDirectory) -> TokenStore:
    return TokenStore(directory)


# -- the store ---------------------------------------------------------------------------------


def test_create_and_verify(store: TokenStore) -> None:
    token, secret = store.create("ci", repo="team/infra.git", access="write")
    assert len(secret) >= 43
    assert token.repo == "team/infra" and token.access == "write" and token.expires is None
    found = store.verify(secret)
    assert found is not None and found.id == token.id and found.name == "ci"
    assert store.verify(secret + "x") is None
    assert store.verify("") is None
    other, secret2 = store.create("reader")
    assert secret2 != secret and other.repo is None and other.access == "read"


def test_only_the_hash_is_stored(store: TokenStore, directory: DataDirectory) -> None:
    _, secret = store.create("ci", access="admin")
    db = sqlite3.connect(directory.path / "govc.db")
    rows = db.execute("SELECT * FROM tokens").fetchall()
    db.close()
    assert rows and all(secret not in str(value) for row in rows for value in row)
    assert hash_token(secret) in rows[0]
    assert not any(secret.encode() in p.read_bytes() for p in directory.path.rglob("*") if p.is_file())


def test_expiry(store: TokenStore) -> None:
    token, secret = store.create("short", expires_in=3600)
    assert token.expires is not None and token.expires > time.time()
    assert store.verify(secret) is not None
    assert token.expired(now=time.time() + 3601) and token.status(time.time() + 3601) == "expired"
    store.db.query("UPDATE tokens SET expires = ? WHERE id = ?", (time.time() - 1, token.id))
    assert store.verify(secret) is None
    assert parse_duration("30d") == 30 * 86400 and parse_duration("12h") == 43200
    for bad in ("30", "d", "0d", "-1d", "3y"):
        with pytest.raises(TokenError):
            parse_duration(bad)


def test_revoke_by_name_and_id(store: TokenStore) -> None:
    a, secret_a = store.create("a")
    b, secret_b = store.create("b")
    assert [t.id for t in store.revoke("a")] == [a.id]
    assert store.verify(secret_a) is None and store.verify(secret_b) is not None
    assert store.revoke("a") == []
    assert [t.name for t in store.revoke(str(b.id))] == ["b"]
    assert store.verify(secret_b) is None
    assert [t.status() for t in store.list()] == ["revoked", "revoked"]
    again, secret = store.create("a")  # the name is free again once revoked
    assert store.verify(secret) is not None and again.id != a.id


def test_bad_tokens(store: TokenStore) -> None:
    store.create("ci")
    for kwargs in ({"name": "ci"}, {"name": "12"}, {"name": "a b"}, {"name": "x", "access": "root"},
                   {"name": "x", "repo": "../etc"}):
        with pytest.raises(TokenError):
            store.create(**kwargs)  # type: ignore[arg-type]


def test_permissions(store: TokenStore) -> None:
    token, _ = store.create("w", repo="infra", access="write")
    assert token.allows("read", "infra") and token.allows("write", "infra")
    assert not token.allows("admin", "infra") and not token.allows("read", "other")
    assert not token.allows("read", None)
    admin, _ = store.create("root", access="admin")
    assert admin.allows("admin", None) and admin.allows("write", "anything")


# -- the middleware ----------------------------------------------------------------------------


def basic(secret: str, user: str = "x") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def run_app(directory: DataDirectory, scenario, **config) -> object:  # type: ignore[no-untyped-def]
    registry = Registry(directory)
    app = make_app(registry, ServerConfig(auth=True, maintenance_interval=0, **config))

    async def go():  # type: ignore[no-untyped-def]
        async with TestClient(TestServer(app)) as client:
            return await scenario(client)

    return asyncio.run(go())


UPLOAD_ADV = "/infra.git/info/refs?service=git-upload-pack"
RECEIVE_ADV = "/infra.git/info/refs?service=git-receive-pack"


def test_middleware_decisions(directory: DataDirectory, store: TokenStore) -> None:
    Registry(directory).create("infra")
    _, reader = store.create("reader", access="read")
    _, writer = store.create("writer", repo="infra", access="write")
    _, admin = store.create("admin", access="admin")
    _, revoked = store.create("gone", access="admin")
    store.revoke("gone")
    expired_token, expired = store.create("old", access="admin", expires_in=60)
    store.db.query("UPDATE tokens SET expires = ? WHERE id = ?", (time.time() - 1, expired_token.id))

    async def scenario(client: TestClient) -> None:
        async def status(method: str, path: str, headers: dict[str, str] | None = None, **kw) -> int:  # type: ignore[no-untyped-def]
            async with client.request(method, path, headers=headers or {}, **kw) as r:
                await r.read()
                return r.status

        assert await status("GET", "/healthz") == 200
        for headers in ({}, basic("nope"), basic(revoked), basic(expired), bearer("nope"),
                        {"Authorization": "Basic !!!"}):
            async with client.get(UPLOAD_ADV, headers=headers) as r:
                assert r.status == 401, headers
                assert r.headers["WWW-Authenticate"] == 'Basic realm="govc"'
        async with client.get("/api/v1/repos") as r:
            assert r.status == 401 and (await r.json())["error"] == "unauthorized"
            assert r.headers["WWW-Authenticate"] == 'Basic realm="govc"'
        # read token: fetch yes, push no
        assert await status("GET", UPLOAD_ADV, basic(reader)) == 200
        assert await status("GET", UPLOAD_ADV, basic(reader, user="")) == 200
        async with client.get(RECEIVE_ADV, headers=basic(reader)) as r:
            assert r.status == 403
            text = await r.text()
            assert r.content_type == "text/plain" and "has read access" in text and "needs write" in text
        assert await status("POST", "/infra.git/git-receive-pack", basic(reader), data=b"0000") == 403
        assert await status("GET", "/api/v1/repos", bearer(reader)) == 200
        async with client.post("/api/v1/repos", json={"name": "new"}, headers=bearer(reader)) as r:
            assert r.status == 403 and (await r.json())["error"] == "forbidden"
        # write token limited to infra
        assert await status("GET", RECEIVE_ADV, basic(writer)) == 200
        assert await status("POST", "/infra.git/git-receive-pack", basic(writer), data=b"0000") == 200
        async with client.get("/other.git/info/refs?service=git-upload-pack", headers=basic(writer)) as r:
            assert r.status == 403 and "limited to repository 'infra'" in await r.text()
        assert await status("GET", "/events", bearer(writer)) == 403
        assert await status("POST", "/api/v1/repos", bearer(writer), json={"name": "new"}) == 403
        # admin token
        assert await status("POST", "/api/v1/repos", bearer(admin), json={"name": "new"}) == 201
        assert await status("GET", "/api/v1/repos/infra/hooks", bearer(admin)) == 200

    run_app(directory, scenario)


def test_anonymous_read(directory: DataDirectory, store: TokenStore) -> None:
    Registry(directory).create("infra")

    async def scenario(client: TestClient) -> None:
        async with client.get(UPLOAD_ADV) as r:
            assert r.status == 200
        async with client.get(RECEIVE_ADV) as r:
            assert r.status == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="govc"'
        async with client.get(UPLOAD_ADV, headers=basic("wrong")) as r:
            assert r.status == 401

    run_app(directory, scenario, anonymous_read=True)


def test_admin_token_still_works_with_auth(directory: DataDirectory, store: TokenStore) -> None:
    Registry(directory).create("infra")
    _, reader = store.create("reader")

    async def scenario(client: TestClient) -> None:
        async with client.get("/api/v1/repos/infra/hooks", headers=bearer("s3cret")) as r:
            assert r.status == 200
        async with client.get("/api/v1/repos/infra/hooks", headers=bearer(reader)) as r:
            assert r.status == 403  # webhook configurations are for administrators, reads included
        async with client.post("/api/v1/repos/infra/hooks", headers=bearer(reader),
                               json={"url": "http://example.com/"}) as r:
            assert r.status == 403

    run_app(directory, scenario, admin_token="s3cret")


def test_auth_needs_a_data_directory() -> None:
    with pytest.raises(ValueError, match="data directory"):
        make_app(Registry(), ServerConfig(auth=True))


# -- the command line --------------------------------------------------------------------------


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_create_list_revoke(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = invoke("token", "create", "ci", "--data", data, "--repo", "infra", "--access", "write",
                     "--expires", "30d")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert len(secret.splitlines()) == 1 and len(secret) >= 43
    assert "not shown again" in created.stderr
    store = TokenStore(DataDirectory(data))
    token = store.verify(secret)
    assert token is not None and token.repo == "infra" and token.access == "write"
    assert token.expires is not None and abs(token.expires - time.time() - 30 * 86400) < 60

    listed = invoke("token", "list", "--data", data)
    assert listed.exit_code == 0 and "ci" in listed.output and "infra" in listed.output
    assert secret not in listed.output and "active" in listed.output
    as_json = invoke("token", "list", "--json", "--data", data)
    row = json.loads(as_json.output.splitlines()[0])
    assert row["name"] == "ci" and row["status"] == "active" and "hash" not in row

    assert invoke("token", "revoke", "ci", "--data", data).exit_code == 0
    assert store.verify(secret) is None
    gone = invoke("token", "revoke", "ci", "--data", data)
    assert gone.exit_code == 1 and gone.output.startswith("Error: ") and "no active token" in gone.output
    assert "revoked" in invoke("token", "list", "--data", data).output


def test_cli_errors_and_help(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert invoke("token", "create", "ci", "--access", "root", "--data", data).exit_code == 2
    bad = invoke("token", "create", "ci", "--expires", "soon", "--data", data)
    assert bad.exit_code == 1 and "bad duration" in bad.output
    invoke("token", "create", "ci", "--data", data)
    dup = invoke("token", "create", "ci", "--data", data)
    assert dup.exit_code == 1 and "exists" in dup.output
    for sub in ("create", "list", "revoke"):
        helped = invoke("token", sub, "--help")
        assert helped.exit_code == 0 and "Examples:" in helped.output
    refused = invoke("serve", "--memory", "--auth")
    assert refused.exit_code == 1 and "--memory" in refused.output
    assert invoke("serve", "--memory", "--anonymous-read").exit_code == 2


def test_config_file_auth_keys(tmp_path: Path) -> None:
    config = tmp_path / "govc.toml"
    config.write_text("memory = true\nauth = true\nanonymous_read = true\n")
    refused = invoke("serve", "--config", config)
    assert refused.exit_code == 1 and "--auth needs a data directory" in refused.output


def test_failed_authentications_are_throttled_per_address(directory: DataDirectory,
                                                          store: TokenStore) -> None:
    from govc.auth import FAILURE_BURST

    Registry(directory).create("infra")
    _, good = store.create("reader")

    async def scenario(client: TestClient) -> None:
        for _ in range(FAILURE_BURST):
            async with client.get(UPLOAD_ADV, headers=basic("guess")) as r:
                assert r.status == 401
        async with client.get(UPLOAD_ADV, headers=basic("guess")) as r:
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
            assert "too many failed authentications" in await r.text()
        async with client.get("/api/v1/repos", headers=bearer("guess")) as r:
            assert r.status == 429 and (await r.json())["error"] == "too_many_requests"
        async with client.get(UPLOAD_ADV, headers=basic(good)) as r:
            assert r.status == 200  # a valid token is never held back by others' failures

    run_app(directory, scenario)
