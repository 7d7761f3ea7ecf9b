"""Defence (govc.limits): per-client rate and concurrency, the fair global cap on Git transfers,
request sizes and upload-pack bounds — the pieces alone, then through a real server on
127.0.0.1 with the real git client.

Clients are told apart by source address: the whole of 127.0.0.0/8 is loopback on Linux, so a
flood from 127.0.0.2 and a clone from 127.0.0.1 are two clients of the same server.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

import govc
from govc.limits import FairSlots, Limits, TokenBuckets, UploadBounds, parse_size, upload_refusal
from govc.server import ServerConfig
from protocol.pktline import DELIM_PKT, FLUSH_PKT, encode, encode_line
from protocol.upload import PackSniffer, RequestCounts, count_request
from tests.helpers import git

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")


# -- the pieces -------------------------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [100.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # empty: the next token is half a second away
    assert buckets.take("b") == 0.0  # another client has its own bucket
    now[0] += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    now[0] += 60
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # refilled, but only to the burst
    assert buckets.take("a") > 0
    assert TokenBuckets(rate=0, burst=1).take("a") == 0.0  # 0: off


def test_idle_buckets_are_forgotten() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=1.0, burst=1, clock=lambda: now[0])
    buckets.PRUNE_AT = 10  # type: ignore[misc]
    for n in range(10):
        buckets.take(f"c{n}")
    now[0] += 5  # everyone's bucket is full again: the same as having none
    buckets.take("new")
    assert len(buckets._buckets) == 1


def test_fair_slots_serve_the_other_client_before_the_flooder() -> None:
    async def scenario() -> list[str]:
        slots = FairSlots(1)
        order: list[str] = []
        assert await slots.acquire("flood", 1)

        async def one(client: str) -> None:
            assert await slots.acquire(client, 5)
            order.append(client)
            await asyncio.sleep(0)
            slots.release(client)

        tasks = [asyncio.create_task(one("flood")) for _ in range(3)]
        await asyncio.sleep(0.01)
        tasks.append(asyncio.create_task(one("other")))  # queued last
        await asyncio.sleep(0.01)
        assert slots.queued == 4
        slots.release("flood")
        await asyncio.gather(*tasks)
        assert slots.total == 0 and not slots.held and not slots._served
        return order

    assert asyncio.run(scenario()) == ["other", "flood", "flood", "flood"]


def test_fair_slots_time_out_and_leave_the_queue_clean() -> None:
    async def scenario() -> None:
        slots = FairSlots(1)
        assert await slots.acquire("a", 1)
        assert not await slots.acquire("b", 0.05)
        assert slots.queued == 0
        waiter = asyncio.create_task(slots.acquire("c", 5))
        await asyncio.sleep(0.01)
        waiter.cancel()  # the request went away while queued
        with pytest.raises(asyncio.CancelledError):
            await waiter
        slots.release("a")
        assert slots.total == 0 and slots.queued == 0
        assert await FairSlots(0).acquire("x", 0)  # 0: unlimited

    asyncio.run(scenario())


def test_count_request_v0_and_v2() -> None:
    oid = b"a" * 40
    v0 = (encode_line(b"want " + oid + b" multi_ack_detailed side-band-64k") + encode_line(b"want " + oid)
          + encode_line(b"shallow " + oid) + encode_line(b"deepen 3") + FLUSH_PKT
          + encode_line(b"have " + oid) * 5 + FLUSH_PKT + encode_line(b"have " + oid) + encode_line(b"done"))
    counts = count_request(v0, 0)
    assert (counts.command, counts.wants, counts.haves, counts.shallows, counts.rounds, counts.done) == (
        "fetch", 2, 6, 1, 1, True)
    assert count_request(FLUSH_PKT, 0).command == ""
    v2 = (encode_line(b"command=fetch") + encode_line(b"agent=git/2.39") + DELIM_PKT
          + encode_line(b"want " + oid) * 3 + encode_line(b"have " + oid) + encode_line(b"deepen-not main")
          + encode_line(b"done") + FLUSH_PKT)
    counts = count_request(v2, 2)
    assert (counts.command, counts.wants, counts.haves, counts.deepen_nots, counts.done) == (
        "fetch", 3, 1, 1, True)
    ls = encode_line(b"command=ls-refs") + DELIM_PKT + encode_line(b"ref-prefix refs/heads/") * 2 + FLUSH_PKT
    assert count_request(ls, 2).ref_prefixes == 2


def test_upload_bounds_grow_with_the_repository() -> None:
    small = UploadBounds.for_repository(refs=2, objects=10)
    assert (small.wants, small.haves) == (1000, 50_000)
    big = UploadBounds.for_repository(refs=5000, objects=2_000_000)
    assert big.wants == 2_010_000 and big.haves == 4_000_000  # a blobless clone's backfill still fits
    assert upload_refusal(RequestCounts(wants=1000), 2, 10) is None
    message = upload_refusal(RequestCounts(wants=1001), 2, 10)
    assert message is not None and "1001 wanted objects (at most 1000 for 2 refs and 10 objects)" in message
    assert "haves" in (upload_refusal(RequestCounts(haves=60_000), 2, 10) or "")
    assert upload_refusal(RequestCounts(haves=60_000), 2, 40_000) is None
    assert "rounds" in (upload_refusal(RequestCounts(rounds=1000), 2, 10) or "")


@pytest.mark.parametrize(("chunks", "pack", "error"), [
    ([encode_line(b"NAK"), encode(b"\x02Enumerating objects: 3\n"), encode(b"\x01PACK\x00\x00\x00\x02")],
     True, None),
    ([encode_line(b"acknowledgments") + encode_line(b"NAK") + FLUSH_PKT], False, None),
    ([encode_line(b"packfile")[:5], encode_line(b"packfile")[5:]], True, None),  # split anywhere
    ([encode_line(b"NAK"), b"PACK\x00\x00\x00\x02"], True, None),  # no side-band: the raw pack
    ([encode(b"ERR upload-pack: not our ref " + b"a" * 40)], False, "upload-pack: not our ref " + "a" * 40),
    ([b""], False, None),
])
def test_pack_sniffer(chunks: list[bytes], pack: bool, error: str | None) -> None:
    sniffer = PackSniffer()
    for chunk in chunks:
        sniffer.feed(chunk)
    assert (sniffer.pack, sniffer.error) == (pack, error)


def test_parse_size() -> None:
    assert parse_size("64MiB") == 64 << 20
    assert parse_size("4G") == 4 << 30
    assert parse_size("1.5k") == 1536
    assert parse_size(" 2 MB ") == 2_000_000
    assert parse_size(123) == 123
    for bad in ("lots", "12 parsecs", "-1", "", "MiB"):
        with pytest.raises(ValueError):
            parse_size(bad)


# -- through a real server ---------------------------------------------------------------------


def _repo() -> govc.Repository:
    repo = govc.Repository()
    with repo.transaction("main", author="ops <ops@example.com>") as tx:
        tx.write("app.conf", "workers = 4\n")
        tx.commit("initial")
    repo.set_head("refs/heads/main")
    return repo


@pytest.fixture
def serve() -> Iterator[object]:
    """``serve(limits) -> base URL`` of an in-process server holding ``infra``; stopped after."""
    servers: list[govc.Server] = []

    def start(limits: Limits) -> str:
        server = govc.Server({"infra": _repo()}, config=ServerConfig(limits=limits, maintenance_interval=0))
        servers.append(server)
        return server.serve_in_thread()

    yield start
    for server in servers:
        server.stop()


def _session(source: str) -> aiohttp.ClientSession:
    """An HTTP client whose connections come from ``source`` (another loopback address)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0), force_close=True),
                                 trust_env=False)


def _clone(url: str, dest: Path) -> None:
    git("clone", "-q", url, dest)
    assert (dest / "app.conf").read_text() == "workers = 4\n"


@needs_git
def test_a_flood_gets_429_while_another_client_clones(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = serve(Limits(rate=1, burst=10))  # slow refill: the flood may take seconds on a busy machine
    url = f"{base}/infra.git/info/refs?service=git-upload-pack"

    async def flood() -> tuple[list[int], str, str | None, int]:
        async with _session("127.0.0.2") as http:
            statuses, text, retry = [], "", None
            for _ in range(40):
                async with http.get(url) as response:
                    statuses.append(response.status)
                    if response.status == 429:
                        text, retry = await response.text(), response.headers.get("Retry-After")
            async with http.get(f"{base}/healthz") as health:  # probes are never limited
                return statuses, text, retry, health.status

    statuses, text, retry, health = asyncio.run(flood())
    assert statuses[:10] == [200] * 10  # the burst
    assert statuses.count(429) >= 25
    assert text.startswith("govc: too many requests from 127.0.0.2; retry in ") and text.endswith(" s\n")
    assert retry is not None and int(retry) >= 1
    assert health == 200
    _clone(f"{base}/infra.git", tmp_path / "clone")  # 127.0.0.1 has its own allowance

    async def metrics() -> str:
        async with _session("127.0.0.2") as http, http.get(f"{base}/metrics") as response:
            return await response.text()

    assert 'govc_limited_requests_total{reason="rate"}' in asyncio.run(metrics())


@needs_git
def test_concurrent_requests_per_client_are_capped(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = serve(Limits(client_concurrency=2))

    async def scenario() -> tuple[int, str, int]:
        release = asyncio.Event()
        async with _session("127.0.0.2") as http:
            # Two fetch requests whose bodies stay unfinished until released are in progress.
            held = [asyncio.create_task(http.post(f"{base}/infra.git/git-upload-pack",
                                                  data=_held_body(FLUSH_PKT, release))) for _ in range(2)]
            await _until_in_flight(base, 2)
            async with http.get(f"{base}/infra.git/info/refs?service=git-upload-pack") as third:
                status, text = third.status, await third.text()
            await asyncio.to_thread(_clone, f"{base}/infra.git", tmp_path / "clone")
            release.set()
            for response in await asyncio.gather(*held):
                assert response.status == 200
                response.close()
            async with http.get(f"{base}/infra.git/info/refs?service=git-upload-pack") as again:
                return status, text, again.status

    status, text, again = asyncio.run(scenario())
    assert status == 429
    assert "too many requests in progress from 127.0.0.2 (at most 2)" in text
    assert again == 200


async def _held_body(first: bytes, release: asyncio.Event) -> AsyncIterator[bytes]:
    """A request body that sends ``first`` and then nothing until ``release`` is set."""
    yield first
    await release.wait()


async def _until_in_flight(base: str, n: int) -> None:
    """Wait until the server handles ``n`` requests besides the scrape that asks."""
    async with _session("127.0.0.9") as http:
        for _ in range(500):
            async with http.get(f"{base}/metrics") as response:
                text = await response.text()
            if f"govc_http_requests_in_flight {n + 1}.0" in text:
                return
            await asyncio.sleep(0.02)
    raise AssertionError(f"the server never had {n} requests in flight")


def test_git_transfers_beyond_the_global_cap_wait_then_get_503(serve) -> None:  # type: ignore[no-untyped-def]
    base = serve(Limits(git_concurrency=1, queue_timeout=0.3))

    async def scenario() -> tuple[int, int, str, str | None, int]:
        release = asyncio.Event()
        async with _session("127.0.0.2") as slow_client, _session("127.0.0.3") as other:
            # A push whose command list stops half-way until released holds the only slot.
            slow = asyncio.create_task(slow_client.post(
                f"{base}/infra.git/git-receive-pack", data=_held_body(b"0098" + b"0" * 40, release),
                headers={"Content-Type": "application/x-git-receive-pack-request"}))
            await _until_in_flight(base, 1)
            async with other.post(f"{base}/infra.git/git-upload-pack", data=FLUSH_PKT,
                                  headers={"Content-Type": "application/x-git-upload-pack-request"}) as busy:
                busy_status, text, retry = busy.status, await busy.text(), busy.headers.get("Retry-After")
            release.set()
            slow_response = await slow
            slow_status = slow_response.status
            slow_response.close()
            async with other.post(f"{base}/infra.git/git-upload-pack", data=FLUSH_PKT) as after:
                return slow_status, busy_status, text, retry, after.status

    slow_status, busy_status, text, retry, after = asyncio.run(scenario())
    assert slow_status == 400  # the trickled body was not a push; what matters is that it held the slot
    assert busy_status == 503 and retry == "5"
    assert text.startswith("govc: server busy (1 git transfers in progress, 0 waiting)")
    assert after == 200


def test_request_sizes_are_configurable(serve) -> None:  # type: ignore[no-untyped-def]
    base = serve(Limits(max_fetch_request=1000, max_push=2000))

    async def scenario() -> tuple[int, int, int]:
        async with _session("127.0.0.1") as http:
            fetch = await http.post(f"{base}/infra.git/git-upload-pack", data=encode_line(b"x" * 100) * 10)
            push = await http.post(f"{base}/infra.git/git-receive-pack", data=b"0" * 3000)
            small = await http.post(f"{base}/infra.git/git-upload-pack", data=FLUSH_PKT)
            return fetch.status, push.status, small.status

    assert asyncio.run(scenario()) == (413, 413, 200)


@needs_git
@pytest.mark.parametrize("proto", ["0", "2"])
def test_a_want_list_out_of_proportion_is_refused_and_the_server_goes_on(
        serve, tmp_path: Path, proto: str) -> None:  # type: ignore[no-untyped-def]
    base = serve(Limits())
    work = tmp_path / "work"
    git("init", "-q", work)
    fake = [f"{n:040x}" for n in range(1, 1202)]  # valid ids the repository does not have
    result = git("-C", work, "-c", f"protocol.version={proto}", "fetch", "-q", f"{base}/infra.git", *fake,
                 check=False)
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "remote error: govc: upload-pack request too large for this repository: 1201 wanted objects" in err
    _clone(f"{base}/infra.git", tmp_path / "clone")
