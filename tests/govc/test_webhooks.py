"""Webhooks: GitHub push payloads from real commits, signatures, the target allow-list, the retry
schedule, Retry-After, durability of hooks/cursors/deliveries, and the JSON API's shapes."""

from __future__ import annotations

import asyncio
import json
import random
import time
from email.utils import formatdate
from urllib.parse import parse_qs

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from govc.registry import Registry
from govc.server import ServerConfig, make_app
from govc.webhooks import (
    WEBHOOKS,
    Backoff,
    GuardedResolver,
    TargetRefused,
    WebhookError,
    WebhookManager,
    refusal,
    render,
    retry_after,
    sign,
    verify_signature,
)
from storage.disk import DataDirectory
from storage.interfaces import RefUpdate

OPS = "Ops Person <ops@example.com>"
ZERO = "0" * 40
FAST = Backoff(base=0.01, cap=0.05, jitter=0.0)
LOOPBACK = ["127.0.0.0/8", "::1/128"]


def commit(repo, files: dict[str, str | None], message: str, branch: str = "main") -> str:
    with repo.transaction(branch, author=OPS) as tx:
        for path, data in files.items():
            if data is None:
                tx.remove(path)
            else:
                tx.write(path, data)
        return tx.commit(message).oid


def payloads(manager: WebhookManager, hook_id: int) -> list[dict]:
    """The queued payloads of a hook, oldest first."""
    manager.enqueue_pending()
    items = manager.deliveries(hook_id, limit=1000)
    return [json.loads(manager.delivery(hook_id, d.id).payload) for d in reversed(items)]


@pytest.fixture
def registry() -> Registry:
    return Registry()


# -- payload format ------------------------------------------------------------------------------


def test_push_payload_matches_githubs_format(registry: Registry) -> None:
    repo = registry.create("team/app")
    manager = WebhookManager(registry, public_url="http://git.example:4870/")
    hook = manager.create("https://ci.example.com/hook", repository="team/app")
    c1 = commit(repo, {"a.txt": "one\n", "lib/b.py": "x = 1\n"}, "First\n\nwith a body")
    c2 = commit(repo, {"a.txt": "two\n", "lib/b.py": None, "docs/c.md": "# c\n"}, "Second")
    first, second = payloads(manager, hook.id)

    assert first["ref"] == "refs/heads/main"
    assert (first["before"], first["after"]) == (ZERO, c1)
    assert (first["created"], first["deleted"], first["forced"]) == (True, False, False)
    assert [c["id"] for c in first["commits"]] == [c1]
    assert first["commits"][0]["added"] == ["a.txt", "lib/b.py"]
    assert first["commits"][0]["message"] == "First\n\nwith a body"

    assert (second["before"], second["after"]) == (c1, c2)
    assert (second["created"], second["deleted"], second["forced"]) == (False, False, False)
    [entry] = second["commits"]
    assert entry["id"] == c2
    assert entry["message"] == "Second"
    assert entry["added"] == ["docs/c.md"]
    assert entry["removed"] == ["lib/b.py"]
    assert entry["modified"] == ["a.txt"]
    assert entry["author"] == {"name": "Ops Person", "email": "ops@example.com"}
    assert entry["committer"] == {"name": "Ops Person", "email": "ops@example.com"}
    assert entry["timestamp"].endswith("+00:00") and entry["timestamp"][:2] == "20"
    assert entry["tree_id"] == repo.graph.commit(c2.encode()).tree.decode()
    assert second["head_commit"] == entry
    assert second["pusher"] == {"name": OPS, "email": None}
    assert second["repository"]["name"] == "app"
    assert second["repository"]["full_name"] == "team/app"
    assert second["repository"]["clone_url"] == "http://git.example:4870/team/app.git"
    assert second["compare"] == f"http://git.example:4870/team/app/compare/{c1[:12]}...{c2[:12]}"
    assert second["push_options"] == []
    assert second["base_ref"] is None


def test_forced_deleted_tag_and_commit_cap(registry: Registry) -> None:
    repo = registry.create("infra")
    manager = WebhookManager(registry)
    hook = manager.create("https://ci.example.com/hook", repository="infra")
    base = commit(repo, {"f": "0\n"}, "base")
    tips = [commit(repo, {"f": f"{i}\n"}, f"c{i}") for i in range(1, 26)]
    side = commit(repo, {"g": "side\n"}, "side", branch="side")  # side starts at main's tip
    repo.update_refs([RefUpdate("refs/heads/main", base.encode(), tips[-1].encode())],
                     who="admin", message="rewind", source="api", push_options=["ci.skip"])
    repo.update_refs([RefUpdate("refs/tags/v1", tips[3].encode(), None)], who="admin", message="tag",
                     source="api")
    repo.update_refs([RefUpdate("refs/heads/side", None, side.encode())], who="admin", message="delete",
                     source="api")
    got = payloads(manager, hook.id)
    created = got[26]  # after base and 25 commits pushed one by one
    assert created["ref"] == "refs/heads/side" and created["created"]
    assert [c["id"] for c in created["commits"]] == [side]  # only what no other branch has

    rewind, tag, deleted = got[-3:]
    assert rewind["forced"] is True and rewind["commits"] == []
    assert rewind["head_commit"]["id"] == base
    assert rewind["push_options"] == ["ci.skip"]
    assert tag["ref"] == "refs/tags/v1" and tag["created"] and tag["commits"] == []
    assert tag["head_commit"]["id"] == tips[3]
    assert deleted["deleted"] is True and deleted["after"] == ZERO
    assert deleted["head_commit"] is None and deleted["commits"] == []

    # One update carrying 25 new commits lists the newest 20, oldest first.
    repo.update_refs([RefUpdate("refs/heads/main", tips[-1].encode(), base.encode())],
                     who="admin", message="forward", source="api")
    forward = payloads(manager, hook.id)[-1]
    assert forward["forced"] is False
    assert [c["id"] for c in forward["commits"]] == tips[-20:]
    assert forward["head_commit"]["id"] == tips[-1]


def test_branch_and_path_filters(registry: Registry) -> None:
    repo = registry.create("infra")
    manager = WebhookManager(registry)
    only_tf = manager.create("https://ci.example.com/tf", repository="infra", paths=["*.tf"])
    releases = manager.create("https://ci.example.com/rel", repository="infra", branches=["release/*"])
    everything = manager.create("https://ci.example.com/all")  # server-wide
    commit(repo, {"README.md": "hi\n"}, "docs")
    commit(repo, {"env/prod/main.tf": "x\n"}, "tf")
    commit(repo, {"other.txt": "y\n"}, "rel", branch="release/1.0")
    other = registry.create("other")
    commit(other, {"z": "z\n"}, "elsewhere")
    assert [p["head_commit"]["message"] for p in payloads(manager, only_tf.id)] == ["tf"]
    assert [p["ref"] for p in payloads(manager, releases.id)] == ["refs/heads/release/1.0"]
    assert [p["repository"]["full_name"] for p in payloads(manager, everything.id)] == [
        "infra", "infra", "infra", "other"]


def test_inactive_hooks_miss_updates_and_resume_with_new_ones(registry: Registry) -> None:
    repo = registry.create("r")
    manager = WebhookManager(registry)
    hook = manager.create("https://ci.example.com/hook", repository="r", active=False)
    commit(repo, {"a": "1\n"}, "while inactive")
    assert payloads(manager, hook.id) == []
    manager.update(hook.id, active=True)
    commit(repo, {"a": "2\n"}, "after")
    assert [p["head_commit"]["message"] for p in payloads(manager, hook.id)] == ["after"]


# -- signatures and bodies -----------------------------------------------------------------------


def test_signature_headers_and_form_bodies(registry: Registry) -> None:
    repo = registry.create("r")
    manager = WebhookManager(registry)
    signed = manager.create("https://ci.example.com/j", repository="r", secret="It's a Secret to Everybody")
    form = manager.create("https://ci.example.com/f", repository="r", content_type="form", secret="s")
    plain = manager.create("https://ci.example.com/p", repository="r")
    commit(repo, {"a": "1\n"}, "one")
    manager.enqueue_pending()

    def first(hook):
        [d] = manager.deliveries(hook.id)
        return render(hook, manager.delivery(hook.id, d.id))

    body, headers = first(signed)
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "govc-Hookshot/0.1"
    assert headers["X-GitHub-Event"] == headers["X-Govc-Event"] == "push"
    assert headers["X-GitHub-Delivery"] == headers["X-Govc-Delivery"]
    assert len(headers["X-GitHub-Delivery"]) == 36
    assert verify_signature("It's a Secret to Everybody", body, headers["X-Hub-Signature-256"])
    assert not verify_signature("wrong", body, headers["X-Hub-Signature-256"])
    assert json.loads(body)["ref"] == "refs/heads/main"

    body, headers = first(form)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert json.loads(parse_qs(body.decode())["payload"][0])["ref"] == "refs/heads/main"
    assert verify_signature("s", body, headers["X-Hub-Signature-256"])

    _, headers = first(plain)
    assert "X-Hub-Signature-256" not in headers


def test_signature_matches_githubs_documented_example() -> None:
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign("It's a Secret to Everybody", b"Hello, World!") == expected


# -- the target allow-list -----------------------------------------------------------------------


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "169.254.169.254", "0.0.0.0", "100.64.0.1", "::1", "::", "fd00::1", "fc00::1", "fe80::1",
    "fe80::1%lo", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
])
def test_private_and_local_addresses_are_refused(address: str) -> None:
    reason = refusal(address, ())
    assert reason is not None and "--webhook-allow" in reason


@pytest.mark.parametrize("address", ["8.8.8.8", "172.32.0.1", "192.169.0.1", "2001:4860:4860::8888"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(address, ()) is None


def test_operator_allowed_ranges() -> None:
    from ipaddress import ip_network
    allow = [ip_network("127.0.0.0/8"), ip_network("10.1.0.0/16")]
    assert refusal("127.0.0.1", allow) is None
    assert refusal("10.1.2.3", allow) is None
    assert refusal("10.2.0.1", allow) is not None
    assert refusal("::ffff:127.0.0.1", allow) is None  # IPv4-mapped: judged as the IPv4 address
    assert refusal("::1", allow) is not None  # IPv6 loopback is not in an IPv4 range


def test_hostnames_are_judged_by_every_resolved_address() -> None:
    from ipaddress import ip_network

    class Fake:
        def __init__(self, addresses: list[str]) -> None:
            self.addresses = addresses

        async def resolve(self, host, port=0, family=0):
            return [{"hostname": host, "host": a, "port": port, "family": 2, "proto": 0, "flags": 0}
                    for a in self.addresses]

        async def close(self) -> None:
            pass

    async def resolve(addresses, allow=()):
        resolver = GuardedResolver(allow)
        resolver._inner = Fake(addresses)
        return await resolver.resolve("hooks.example.com", 443)

    with pytest.raises(TargetRefused, match=r"hooks.example.com resolves to 127.0.0.1 is a loopback"):
        asyncio.run(resolve(["127.0.0.1"]))
    with pytest.raises(TargetRefused, match=r"10\.0\.0\.5"):  # one bad address among good ones is enough
        asyncio.run(resolve(["93.184.216.34", "10.0.0.5"]))
    assert len(asyncio.run(resolve(["93.184.216.34"]))) == 1
    assert len(asyncio.run(resolve(["127.0.0.1"], [ip_network("127.0.0.0/8")]))) == 1

    # The real system resolver: "localhost" is loopback.
    with pytest.raises(TargetRefused, match="loopback"):
        asyncio.run(GuardedResolver(()).resolve("localhost", 80))


def test_literal_private_url_is_refused_at_creation(registry: Registry) -> None:
    registry.create("r")
    with pytest.raises(WebhookError, match="loopback"):
        WebhookManager(registry).create("http://127.0.0.1:9/hook", repository="r")
    WebhookManager(registry, allow=["127.0.0.0/8"]).create("http://127.0.0.1:9/hook", repository="r")


# -- retry schedule ------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    exact = Backoff(base=1.0, cap=30.0, jitter=0.0)
    assert [exact.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    rng = random.Random(7)
    jittered = Backoff(base=1.0, cap=30.0, jitter=0.2)
    for n in range(1, 10):
        want = min(30.0, 2 ** (n - 1))
        delays = {jittered.delay(n, rng) for _ in range(50)}
        assert all(0.8 * want <= d <= 1.2 * want for d in delays)
        assert len(delays) > 1
    assert Backoff(max_attempts=3).exhausted(3, 0) and not Backoff(max_attempts=3).exhausted(2, 0)
    assert Backoff(give_up_after=60).exhausted(1, 61)


def test_backoff_from_env() -> None:
    assert Backoff.from_env("") == Backoff()
    assert (Backoff.from_env("0.05").base, Backoff.from_env("0.05").cap) == (0.05, 300.0)
    assert (Backoff.from_env("0.05,1").base, Backoff.from_env("0.05,1").cap) == (0.05, 1.0)
    for bad in ("x", "0", "1,2,3", "-1"):
        with pytest.raises(WebhookError):
            Backoff.from_env(bad)


def test_retry_after_values() -> None:
    now = time.time()
    assert retry_after("1") == 1.0
    assert retry_after("120") == 120.0
    assert retry_after("999999") == 3600.0
    assert retry_after(None) is None and retry_after("soon") is None
    assert 9 <= retry_after(formatdate(now + 10, usegmt=True), now) <= 10
    assert retry_after(formatdate(now - 10, usegmt=True), now) == 0.0


# -- delivery against a real HTTP receiver -------------------------------------------------------


class Receiver:
    """An aiohttp receiver on loopback answering from a script of (status, headers) per request."""

    def __init__(self, script: list[tuple[int, dict[str, str]]] | None = None, delay: float = 0.0) -> None:
        self.script = list(script or [])
        self.delay = delay
        self.requests: list[tuple[float, dict[str, str], bytes]] = []
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((time.monotonic(), dict(request.headers), await request.read()))
        if self.delay:
            await asyncio.sleep(self.delay)
        status, headers = self.script.pop(0) if self.script else (200, {})
        return web.Response(status=status, headers=headers, text="thanks")

    @property
    def url(self) -> str:
        return str(self.server.make_url("/hook"))

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"only {len(self.requests)} of {count} requests arrived"
            await asyncio.sleep(0.01)


async def settled(manager: WebhookManager, hook_id: int, count: int, timeout: float = 10.0) -> list:
    """Wait until ``count`` deliveries of the hook are no longer pending; return them, oldest first."""
    deadline = time.monotonic() + timeout
    while True:
        items = manager.deliveries(hook_id, 100)
        if len(items) >= count and all(d.status != "pending" for d in items):
            return list(reversed(items))
        assert time.monotonic() < deadline, f"deliveries still pending: {items}"
        await asyncio.sleep(0.02)


def run_with_worker(registry: Registry, scenario, **options):
    async def main():
        manager = WebhookManager(registry, allow=LOOPBACK, backoff=options.pop("backoff", FAST), **options)
        await manager.start()
        try:
            return await scenario(manager)
        finally:
            await manager.stop()

    return asyncio.run(main())


def test_delivery_succeeds_and_is_logged(registry: Registry) -> None:
    repo = registry.create("r")

    async def scenario(manager):
        receiver = Receiver()
        await receiver.server.start_server()
        try:
            hook = manager.create(receiver.url, repository="r", secret="k")
            sha = commit(repo, {"a": "1\n"}, "one")
            [done] = await settled(manager, hook.id, 1)
            _, headers, body = receiver.requests[0]
            assert verify_signature("k", body, headers["X-Hub-Signature-256"])
            assert json.loads(body)["after"] == sha
            assert headers["X-GitHub-Delivery"] == done.guid
            assert (done.status, done.response_code, done.attempts, done.last_error) == ("delivered", 200,
                                                                                        1, None)
            assert done.latency_ms is not None and done.latency_ms >= 0 and done.delivered is not None
            assert done.response_body == "thanks"
        finally:
            await receiver.server.close()

    run_with_worker(registry, scenario)


def test_5xx_and_connection_errors_are_retried_4xx_is_not(registry: Registry) -> None:
    repo = registry.create("r")

    async def scenario(manager):
        flaky = Receiver([(503, {}), (502, {}), (200, {})])
        gone = Receiver([(404, {})])
        await flaky.server.start_server()
        await gone.server.start_server()
        try:
            h_flaky = manager.create(flaky.url, repository="r")
            h_gone = manager.create(gone.url, repository="r")
            h_down = manager.create("http://127.0.0.1:9/nothing-listens", repository="r")
            commit(repo, {"a": "1\n"}, "one")
            [ok] = await settled(manager, h_flaky.id, 1)
            assert (ok.status, ok.attempts, ok.response_code) == ("delivered", 3, 200)
            assert len({r[1]["X-GitHub-Delivery"] for r in flaky.requests}) == 1  # same guid each time
            [failed] = await settled(manager, h_gone.id, 1)
            assert (failed.status, failed.attempts, failed.response_code) == ("failed", 1, 404)
            assert "not retried" in failed.last_error
            await asyncio.sleep(0.2)
            [down] = manager.deliveries(h_down.id)
            assert down.status == "pending" and down.attempts >= 2
            assert "Connect" in down.last_error
        finally:
            await flaky.server.close()
            await gone.server.close()

    run_with_worker(registry, scenario)


def test_gives_up_after_max_attempts(registry: Registry) -> None:
    repo = registry.create("r")

    async def scenario(manager):
        hook = manager.create("http://127.0.0.1:9/down", repository="r")
        commit(repo, {"a": "1\n"}, "one")
        [d] = await settled(manager, hook.id, 1)
        assert d.status == "failed" and d.attempts == 3 and "gave up after 3 attempts" in d.last_error

    run_with_worker(registry, scenario, backoff=Backoff(base=0.01, cap=0.01, max_attempts=3))


def test_429_retry_after_is_honoured(registry: Registry) -> None:
    repo = registry.create("r")

    async def scenario(manager):
        receiver = Receiver([(429, {"Retry-After": "1"}), (200, {})])
        await receiver.server.start_server()
        try:
            hook = manager.create(receiver.url, repository="r")
            commit(repo, {"a": "1\n"}, "one")
            [d] = await settled(manager, hook.id, 1)
            assert d.status == "delivered" and d.attempts == 2
            gap = receiver.requests[1][0] - receiver.requests[0][0]
            assert 1.0 <= gap < 3.0, gap
        finally:
            await receiver.server.close()

    run_with_worker(registry, scenario)


def test_refused_target_fails_with_a_clear_error(registry: Registry) -> None:
    repo = registry.create("r")

    async def main():
        receiver = Receiver()
        await receiver.server.start_server()
        manager = WebhookManager(registry, backoff=FAST)  # nothing allowed
        await manager.start()
        try:
            hook = manager.create(f"http://localhost:{receiver.server.port}/hook", repository="r")
            commit(repo, {"a": "1\n"}, "one")
            [d] = await settled(manager, hook.id, 1)
            assert d.status == "failed" and d.attempts == 1
            assert "refused: localhost resolves to" in d.last_error and "--webhook-allow" in d.last_error
            assert receiver.requests == []
        finally:
            await manager.stop()
            await receiver.server.close()

    asyncio.run(main())


def test_slow_receiver_is_cut_off_by_the_timeout(registry: Registry) -> None:
    repo = registry.create("r")

    async def scenario(manager):
        receiver = Receiver(delay=2.0)
        await receiver.server.start_server()
        try:
            hook = manager.create(receiver.url, repository="r")
            started = time.monotonic()
            commit(repo, {"a": "1\n"}, "one")
            assert time.monotonic() - started < 0.5  # the push never waits for the receiver
            await receiver.wait_for(1)
            await asyncio.sleep(0.5)
            [d] = manager.deliveries(hook.id)
            assert "timed out" in d.last_error and d.status == "pending"
        finally:
            await receiver.server.close()

    run_with_worker(registry, scenario, timeout=0.3)


def test_hooks_cursor_and_pending_deliveries_survive_a_restart(tmp_path) -> None:
    directory = DataDirectory(tmp_path / "data")
    registry = Registry(directory)
    repo = registry.create("r")
    manager = WebhookManager(registry)
    hook = manager.create("https://ci.example.com/hook", repository="r", secret="k", paths=["*.txt"])
    commit(repo, {"a.txt": "1\n"}, "queued")
    manager.enqueue_pending()
    commit(repo, {"b.txt": "2\n"}, "not yet read")  # logged, not yet turned into a delivery
    directory.close()

    directory = DataDirectory(tmp_path / "data")
    registry = Registry(directory)
    manager = WebhookManager(registry)
    [again] = manager.list("r")
    assert again == hook
    messages = [p["head_commit"]["message"] for p in payloads(manager, hook.id)]
    assert messages == ["queued", "not yet read"]  # no gap, and the first not queued twice
    assert all(d.status == "pending" for d in manager.deliveries(hook.id))
    directory.close()


# -- the HTTP API --------------------------------------------------------------------------------


def api(registry: Registry, scenario, config: ServerConfig | None = None):
    async def main():
        app = make_app(registry, config or ServerConfig(maintenance_interval=0, webhook_allow=LOOPBACK,
                                                        webhook_backoff=FAST))
        async with TestClient(TestServer(app)) as client:
            return await scenario(client, app[WEBHOOKS])

    return asyncio.run(main())


HOOK = {"config": {"url": "https://ci.example.com/hook", "content_type": "json", "secret": "shh",
                   "insecure_ssl": "0"}, "events": ["push"], "active": True,
        "branches": ["main"], "paths": ["*.tf"]}


def test_api_create_list_get_update_delete(registry: Registry) -> None:
    registry.create("team/app")

    async def scenario(client, manager):
        resp = await client.post("/api/v1/repos/team/app/hooks", json=HOOK)
        assert resp.status == 201
        hook = await resp.json()
        assert hook["id"] >= 1 and hook["type"] == "Repository" and hook["name"] == "web"
        assert hook["config"] == {"url": "https://ci.example.com/hook", "content_type": "json",
                                  "insecure_ssl": "0", "secret": "********"}
        assert hook["events"] == ["push"] and hook["active"] is True
        assert hook["branches"] == ["main"] and hook["paths"] == ["*.tf"]
        assert hook["created_at"].endswith("Z")
        assert hook["url"].endswith(f"/api/v1/repos/team/app/hooks/{hook['id']}")
        assert hook["last_response"]["status"] == "unused"
        path = f"/api/v1/repos/team/app/hooks/{hook['id']}"

        listed = await (await client.get("/api/v1/repos/team/app/hooks")).json()
        assert [h["id"] for h in listed] == [hook["id"]]
        assert (await (await client.get(path)).json()) == hook
        assert (await client.get(f"/api/v1/repos/team/app.git/hooks/{hook['id']}")).status == 200

        resp = await client.patch(path, json={"active": False, "config": {"url": "https://ci2.example/h"},
                                              "add_events": ["*"]})
        assert resp.status == 200
        patched = await resp.json()
        assert patched["active"] is False and patched["events"] == ["push", "*"]
        assert patched["config"]["url"] == "https://ci2.example/h"
        assert patched["config"]["secret"] == "********"  # kept: PATCH without a secret keeps it
        assert manager.get(hook["id"]).secret == "shh"

        # The hook belongs to team/app only: not visible server-wide nor from another repository.
        assert (await client.get(f"/api/v1/hooks/{hook['id']}")).status == 404
        assert await (await client.get("/api/v1/hooks")).json() == []

        assert (await client.delete(path)).status == 204
        assert (await client.get(path)).status == 404
        assert (await client.delete(path)).status == 404

    api(registry, scenario)


def test_api_server_wide_hooks(registry: Registry) -> None:
    async def scenario(client, manager):
        resp = await client.post("/api/v1/hooks", json={"config": {"url": "https://ci.example.com/all"}})
        assert resp.status == 201
        hook = await resp.json()
        assert hook["type"] == "Server" and hook["events"] == ["push"]
        assert hook["config"]["content_type"] == "json" and "secret" not in hook["config"]
        assert [h["id"] for h in await (await client.get("/api/v1/hooks")).json()] == [hook["id"]]
        assert (await client.get(f"/api/v1/hooks/{hook['id']}")).status == 200

    api(registry, scenario)


@pytest.mark.parametrize(("body", "status", "error"), [
    (b"not json", 400, "bad_request"),
    (b"[1, 2]", 400, "bad_request"),
    (json.dumps({"events": ["push"]}).encode(), 422, "invalid"),
    (json.dumps({"config": {"url": "ftp://x/"}}).encode(), 422, "invalid"),
    (json.dumps({"config": {"url": "https://x/", "content_type": "xml"}}).encode(), 422, "invalid"),
    (json.dumps({"config": {"url": "https://x/"}, "events": ["issues"]}).encode(), 422, "invalid"),
    (json.dumps({"config": {"url": "https://x/"}, "events": []}).encode(), 422, "invalid"),
    (json.dumps({"config": {"url": "https://x/"}, "branches": "main"}).encode(), 422, "invalid"),
    (json.dumps({"config": {"url": "https://x/"}, "active": "yes"}).encode(), 422, "invalid"),
    (json.dumps({"config": {"url": "http://10.0.0.1/"}}).encode(), 422, "invalid"),
])
def test_api_rejects_bad_hooks(registry: Registry, body: bytes, status: int, error: str) -> None:
    registry.create("r")

    async def scenario(client, manager):
        resp = await client.post("/api/v1/repos/r/hooks", data=body,
                                 headers={"Content-Type": "application/json"})
        assert resp.status == status
        answer = await resp.json()
        assert answer["error"] == error and answer["message"]

    api(registry, scenario)


def test_api_not_found(registry: Registry) -> None:
    registry.create("r")

    async def scenario(client, manager):
        for method, path in [("GET", "/api/v1/repos/missing/hooks"), ("POST", "/api/v1/repos/missing/hooks"),
                             ("GET", "/api/v1/repos/r/hooks/99"), ("PATCH", "/api/v1/repos/r/hooks/99"),
                             ("GET", "/api/v1/repos/r/hooks/99/deliveries"),
                             ("POST", "/api/v1/repos/r/hooks/99/deliveries/1/attempts"),
                             ("GET", "/api/v1/repos/../etc/hooks")]:
            resp = await client.request(method, path, json=HOOK)
            assert resp.status == 404, (method, path)
            if resp.content_type == "application/json":
                assert (await resp.json())["error"] == "not_found"

    api(registry, scenario)


def test_api_deliveries_and_redelivery(registry: Registry) -> None:
    repo = registry.create("team/app")

    async def scenario(client, manager):
        receiver = Receiver()
        await receiver.server.start_server()
        try:
            resp = await client.post("/api/v1/repos/team/app/hooks",
                                     json={"config": {"url": receiver.url, "secret": "k"}})
            hook = await resp.json()
            base = f"/api/v1/repos/team/app/hooks/{hook['id']}"
            first = commit(repo, {"a": "1\n"}, "one")
            second = commit(repo, {"a": "2\n"}, "two")
            await settled(manager, hook["id"], 2)
            items = await (await client.get(f"{base}/deliveries")).json()
            assert [d["ref"] for d in items] == ["refs/heads/main"] * 2
            assert items[0]["id"] > items[1]["id"]  # newest first
            d = items[0]
            assert (d["status"], d["status_code"], d["attempts"], d["event"]) == ("delivered", 200, 1, "push")
            assert d["redelivery"] is False and d["delivered_at"].endswith("Z") and d["latency_ms"] >= 0
            assert len(await (await client.get(f"{base}/deliveries?per_page=1")).json()) == 1

            one = await (await client.get(f"{base}/deliveries/{d['id']}")).json()
            assert one["request"]["payload"]["after"] == second
            assert one["request"]["headers"]["X-GitHub-Delivery"] == d["guid"]
            assert one["response"]["payload"] == "thanks"

            resp = await client.post(f"{base}/deliveries/{items[1]['id']}/attempts")
            assert resp.status == 202
            again = await resp.json()
            assert again["redelivery"] is True and again["guid"] == items[1]["guid"]
            assert again["status"] == "pending"
            await settled(manager, hook["id"], 3)
            afters = [json.loads(b)["after"] for _, _, b in receiver.requests]
            # Deliveries of one hook run concurrently, so the first two may arrive in either order
            # (as on GitHub); the redelivery comes after both.
            assert sorted(afters[:2]) == sorted([first, second]) and afters[2] == first
            assert receiver.requests[2][1]["X-GitHub-Delivery"] == items[1]["guid"]
            hook_now = await (await client.get(base)).json()
            assert hook_now["last_response"] == {"code": 200, "status": "delivered", "message": None}
        finally:
            await receiver.server.close()

    api(registry, scenario)
