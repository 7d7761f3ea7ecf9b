"""Hostile and broken requests against the running server: each gets a clear error, the repository
is unchanged, and the server keeps serving real git clients afterwards.

Stock git's server answers some of these differently (it is a CGI that dies); these tests assert
what a client must be able to rely on, so they run against govc only.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import time
import zlib
from pathlib import Path

import pytest

from interop.conftest import Git, Served, Server, http_request, pkt_line

ZERO = "0" * 40
FLUSH = b"0000"


@pytest.fixture(autouse=True)
def _govc_only(server: Server) -> None:
    if server.is_reference:
        pytest.skip("asserts govc's answers to malformed requests")


def _push_body(old: str, new: str, ref: str, pack: bytes) -> bytes:
    return pkt_line(f"{old} {new} {ref}\0report-status side-band-64k agent=test\n") + FLUSH + pack


def _pack(objects: list[tuple[int, bytes]], *, fix_checksum: bool = True) -> bytes:
    body = b"PACK" + struct.pack(">II", 2, len(objects))
    for type_num, content in objects:
        size = len(content)
        header = bytearray([(type_num << 4) | (size & 0x0F) | (0x80 if size > 15 else 0)])
        size >>= 4
        while size:
            header.append((size & 0x7F) | (0x80 if size > 0x7F else 0))
            size >>= 7
        body += bytes(header) + zlib.compress(content)
    return body + (hashlib.sha1(body).digest() if fix_checksum else b"\0" * 20)


def _post(url: str, service: str, body: bytes, **headers: str) -> tuple[int, bytes]:
    return http_request(
        "POST", f"{url}/{service}", body,
        {"Content-Type": f"application/x-{service}-request", **headers},
    )


def _still_serving(git: Git, served: Served, tmp_path: Path, before: dict[str, str]) -> None:
    assert git.ls_remote(served.url) == before, "a refused request changed the repository"
    clone = tmp_path / f"clone-{time.monotonic_ns()}"
    git("clone", "-q", "--mirror", served.url, str(clone))
    git.fsck(clone)


def test_garbage_truncated_and_corrupt_packs_are_unpack_errors(git: Git, served: Served,
                                                              tmp_path: Path) -> None:
    before = git.ls_remote(served.url)
    main = before["refs/heads/main"]
    blob = b"hello\n"
    new = hashlib.sha1(b"blob %d\0" % len(blob) + blob).hexdigest()
    good = _pack([(3, blob)])
    cases = {
        "garbage": b"this is not a pack at all, not even close" * 10,
        "truncated": good[:-25],
        "bad checksum": _pack([(3, blob)], fix_checksum=False),
        "bad zlib": good[:12] + good[12:14] + b"\xff" * (len(good) - 34) + good[-20:],
        "count lies": good[:8] + struct.pack(">I", 5) + good[12:],
    }
    for what, pack in cases.items():
        status, body = _post(served.url, "git-receive-pack",
                             _push_body(ZERO, new, f"refs/heads/bad-{what.replace(' ', '-')}", pack))
        assert status == 200, what
        assert b"unpack ok" not in body and b"unpack " in body, (what, body[:300])
        assert b"unpacker error" in body, (what, body[:300])
    # and a stale command that names a missing commit
    status, body = _post(served.url, "git-receive-pack", _push_body(main, new, "refs/heads/main", b""))
    assert status == 200 and b"ng refs/heads/main" in body
    _still_serving(git, served, tmp_path, before)


def test_malformed_pkt_lines_and_commands(git: Git, served: Served, tmp_path: Path) -> None:
    before = git.ls_remote(served.url)
    for body in (b"00", b"0003", b"zzzz", b"ffff" + b"x" * 100, b"0009want\n"):
        status, answer = _post(served.url, "git-receive-pack", body)
        assert status == 400, (body, status, answer[:200])
        assert answer, "an error must say what is wrong"
    for body in (b"0003", b"zzzz", pkt_line("want not-an-id\n") + FLUSH):
        status, answer = _post(served.url, "git-upload-pack", body)
        assert status in (200, 400)
        assert b"ERR " in answer or status == 400, (body, answer[:200])
    status, answer = _post(served.url, "git-upload-pack",
                           pkt_line("command=frobnicate\n") + FLUSH, **{"Git-Protocol": "version=2"})
    assert b"ERR " in answer and b"frobnicate" in answer
    status, answer = http_request("GET", f"{served.url}/info/refs?service=git-frob")
    assert status == 403
    _still_serving(git, served, tmp_path, before)


def test_client_that_vanishes_mid_push_changes_nothing(git: Git, served: Served, server: Server,
                                                       tmp_path: Path) -> None:
    """Promise a large body, send part of it and hang up: the server drops the request."""
    before = git.ls_remote(served.url)
    host, port = server.base_url.removeprefix("http://").split("/")[0].split(":")
    path = served.url.removeprefix(server.base_url) + "/git-receive-pack"
    blob = b"x" * 100_000
    new = hashlib.sha1(b"blob %d\0" % len(blob) + blob).hexdigest()
    body = _push_body(ZERO, new, "refs/heads/vanished", _pack([(3, blob)]))
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-git-receive-pack-request"
            f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2]
        )
    time.sleep(0.3)
    _still_serving(git, served, tmp_path, before)
    assert "refs/heads/vanished" not in git.ls_remote(served.url)
