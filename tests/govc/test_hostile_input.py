"""Property tests: whatever bytes a client sends, the server answers with an error it can name,
and no ref moves and no object appears unless a push was valid.

Each property drives the real parsing and receive path (no HTTP) with arbitrary or mutated input.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govc.receivepack import encode_outcome, receive
from govc.repository import Repository
from govc.uploadpack import upload_pack_v0, upload_pack_v2
from protocol.errors import ProtocolError
from protocol.pktline import FLUSH_PKT, encode
from protocol.receive import PushRequestParser, RefResult
from storage.errors import StorageError
from storage.interfaces import RefUpdate
from storage.packs import encode_object_header, object_id

ZERO = b"0" * 40
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _pack(objects: list[tuple[int, bytes]]) -> bytes:
    body = b"PACK" + struct.pack(">II", 2, len(objects))
    for type_num, content in objects:
        body += encode_object_header(type_num, len(content)) + zlib.compress(content)
    return body + hashlib.sha1(body).digest()


def _commit(tree: bytes, parent: bytes | None = None, msg: bytes = b"m") -> bytes:
    head = b"tree " + tree + b"\n"
    if parent:
        head += b"parent " + parent + b"\n"
    ident = b"A U Thor <a@example.com> 1700000000 +0000"
    return head + b"author " + ident + b"\ncommitter " + ident + b"\n\n" + msg + b"\n"


EMPTY_TREE = object_id(2, b"")


def _seeded_repo() -> tuple[Repository, bytes]:
    """A repository with one commit on main, made through the real push path."""
    repo = Repository("prop")
    commit = _commit(EMPTY_TREE)
    oid = object_id(1, commit)
    pack = repo.objects.index_pack(_pack([(2, b""), (1, commit)]))
    repo.add_pack(pack)
    repo.update_refs([RefUpdate("refs/heads/main", oid, None)], who="t", message="seed", source="test")
    return repo, oid


def _valid_push(base: bytes) -> tuple[bytes, bytes]:
    commit = _commit(EMPTY_TREE, base, b"next")
    new = object_id(1, commit)
    head = encode(base + b" " + new + b" refs/heads/main\x00report-status side-band-64k\n") + FLUSH_PKT
    return head + _pack([(1, commit)]), new


def _run_push(repo: Repository, body: bytes) -> bytes | None:
    """Feed a push body through the parser and receive; return the response or None when the
    request is refused before anything is received (what the HTTP layer turns into a 400)."""
    parser = PushRequestParser()
    try:
        parser.feed(body)
    except ProtocolError:
        return None
    if not parser.request.commands or not parser.done:
        return None
    outcome = receive(repo, parser.request, parser.take_pack_data(), "prop")
    return b"".join(encode_outcome(parser.request, outcome))


@SETTINGS
@given(st.binary(max_size=600))
def test_arbitrary_push_bodies_change_nothing(body: bytes) -> None:
    repo, tip = _seeded_repo()
    objects_before = len(repo.objects)
    _run_push(repo, body)
    assert repo.refs.items() == [("refs/heads/main", tip)]
    assert len(repo.objects) == objects_before


@SETTINGS
@given(st.data())
def test_mutated_valid_push_is_all_or_nothing(data: st.DataObject) -> None:
    """Flip, cut or splice bytes of a valid push: either it still applies exactly (main moves to
    the pushed commit, every object readable), or nothing changes."""
    repo, tip = _seeded_repo()
    body, new = _valid_push(tip)
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    at = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    if kind == "flip":
        body = body[:at] + bytes([body[at] ^ data.draw(st.integers(1, 255))]) + body[at + 1 :]
    elif kind == "truncate":
        body = body[:at]
    else:
        body = body[:at] + data.draw(st.binary(min_size=1, max_size=40)) + body[at:]
    objects_before = len(repo.objects)
    response = _run_push(repo, body)
    refs = dict(repo.refs.items())
    if refs["refs/heads/main"] == tip:
        assert response is None or b"ok refs/heads/main" not in response
        if response is not None and b"unpack ok" not in response:
            assert len(repo.objects) == objects_before
    else:
        assert refs["refs/heads/main"] == new
        # The report may be absent (a flipped byte can drop the report-status capability).
        assert response is not None and b"ng refs/heads/main" not in response
        assert repo.objects.get(new)[0] == 1
    assert set(refs) == {"refs/heads/main"}


@SETTINGS
@given(st.binary(max_size=400), st.sampled_from([0, 2]))
def test_arbitrary_fetch_bodies_give_a_protocol_error_or_an_answer(body: bytes, version: int) -> None:
    repo, tip = _seeded_repo()
    handler = upload_pack_v2 if version == 2 else upload_pack_v0
    with contextlib.suppress(ProtocolError, StorageError):
        b"".join(handler(repo, body))
    assert repo.refs.items() == [("refs/heads/main", tip)]


@SETTINGS
@given(st.lists(st.binary(min_size=0, max_size=120), min_size=1, max_size=8))
def test_packets_of_arbitrary_payloads_never_crash_receive(payloads: list[bytes]) -> None:
    """Well-framed pkt-lines with arbitrary payloads (the part the framing check cannot catch)."""
    repo, tip = _seeded_repo()
    body = b"".join(encode(p) for p in payloads) + FLUSH_PKT + b"PACK"
    _run_push(repo, body)
    assert repo.refs.items() == [("refs/heads/main", tip)]


def test_zlib_bomb_is_refused_without_inflating_it() -> None:
    """A blob that claims 10 bytes but inflates to 64 MiB is an unpack error, not 64 MiB of RAM."""
    repo, tip = _seeded_repo()
    bomb = zlib.compress(b"\0" * (64 << 20), 9)
    body = b"PACK" + struct.pack(">II", 2, 1) + encode_object_header(3, 10) + bomb
    body += hashlib.sha1(body).digest()
    blob = object_id(3, b"x" * 10)
    head = encode(ZERO + b" " + blob + b" refs/tags/bomb\x00report-status\n") + FLUSH_PKT
    response = _run_push(repo, head + body)
    assert response is not None and b"unpack " in response and b"unpack ok" not in response
    assert RefResult.UNPACKER_ERROR.value.encode() in response
    assert repo.refs.items() == [("refs/heads/main", tip)]


def test_delta_whose_base_is_itself_is_refused() -> None:
    """OFS_DELTA with offset 0 (its own start) would loop; it must be a clean unpack error."""
    repo, tip = _seeded_repo()
    body = b"PACK" + struct.pack(">II", 2, 1)
    delta = b"\x05\x05\x90\x05"  # base size 5, result size 5, copy 5 bytes
    body += encode_object_header(6, len(delta)) + b"\x00" + zlib.compress(delta)
    body += hashlib.sha1(body).digest()
    head = encode(ZERO + b" " + object_id(3, b"hello") + b" refs/tags/loop\x00report-status\n") + FLUSH_PKT
    response = _run_push(repo, head + body)
    assert response is not None and b"unpack ok" not in response
    assert repo.refs.items() == [("refs/heads/main", tip)]
