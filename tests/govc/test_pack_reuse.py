"""Full clones answered with a stored pack as it is, and identical fetches answered from the pack
cache: the bytes must be a pack git accepts with exactly the objects git would send, and nothing
may survive a ref update that changes the answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from govc.receivepack import receive
from govc.repository import Repository
from govc.uploadpack import upload_pack_v2
from protocol.pktline import DELIM_PKT, FLUSH_PKT, encode
from protocol.receive import PushRequest, RefCommand
from storage.packcache import SHARED_PACK_CACHE
from storage.packs import index_pack
from tests.helpers import demux, git, pkts

ZERO = b"0" * 40
PUSH_CAPS: dict[str, str | None] = {"report-status": None, "ofs-delta": None}


def refs_of(repo: Path) -> dict[str, bytes]:
    out = git("-C", repo, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags")
    return {line.split()[1].decode(): line.split()[0] for line in out.stdout.splitlines()}


def push_all(target: Repository, source: Path, old: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """What ``git push --all --tags`` sends: the objects the server lacks, then the commands."""
    refs = refs_of(source)
    old = old or {}
    revs = "\n".join([*(o.decode() for o in refs.values()), *("^" + o.decode() for o in old.values())])
    pack = git("-C", source, "pack-objects", "--stdout", "--revs", "--thin", "--delta-base-offset", "-q",
               input=revs.encode() + b"\n").stdout
    commands = [RefCommand(old.get(n, ZERO), o, n) for n, o in refs.items() if old.get(n) != o]
    outcome = receive(target, PushRequest(commands, dict(PUSH_CAPS)), pack, "tester")
    assert outcome.unpack_error is None, outcome.messages
    return refs


def clone_request(wants: list[bytes], haves: list[bytes] = (), caps: tuple[bytes, ...] = ()) -> bytes:
    body = encode(b"command=fetch\n") + DELIM_PKT
    for cap in (b"ofs-delta", b"thin-pack", b"no-progress", *caps):
        body += encode(cap + b"\n")
    body += b"".join(encode(b"want " + w + b"\n") for w in sorted(set(wants)))
    body += b"".join(encode(b"have " + h + b"\n") for h in haves)
    return body + encode(b"done\n") + FLUSH_PKT


def pack_of(repo: Repository, body: bytes) -> bytes:
    return demux(pkts(b"".join(upload_pack_v2(repo, body)))).bands[1]


def rev_list(source: Path, *args: str) -> set[bytes]:
    out = git("-C", source, "rev-list", "--objects", *args).stdout
    return {line.split()[0] for line in out.splitlines() if line}


def objects_in(pack: bytes) -> set[bytes]:
    return set(index_pack(pack).oids)


@pytest.fixture
def source(git_history: Path) -> Path:
    return git_history


def test_push_into_an_empty_repository_marks_the_pack_as_the_closure(source: Path) -> None:
    repo = Repository("r")
    refs = push_all(repo, source)
    (pack,) = repo.objects.packs
    assert pack.closure == frozenset(refs.values())
    assert pack.serves_whole(set(refs.values()))
    assert not pack.serves_whole(set(refs.values()) - {refs["refs/heads/main"]})


def test_a_full_clone_is_the_stored_pack_itself_with_every_object(source: Path) -> None:
    repo = Repository("r")
    refs = push_all(repo, source)
    sent = pack_of(repo, clone_request(list(refs.values())))
    assert sent == repo.objects.packs[0].data  # byte for byte: nothing re-framed
    assert objects_in(sent) == rev_list(source, "--all")


def test_a_clone_of_fewer_refs_is_generated_and_exact(source: Path) -> None:
    repo = Repository("r")
    refs = push_all(repo, source)
    sent = pack_of(repo, clone_request([refs["refs/heads/feature"]]))
    assert sent != repo.objects.packs[0].data
    assert objects_in(sent) == rev_list(source, refs["refs/heads/feature"].decode())


def test_after_a_second_push_clones_carry_the_new_objects(source: Path) -> None:
    repo = Repository("r")
    before = push_all(repo, source)
    (source / "new.txt").write_text("new\n")
    git("-C", source, "add", "new.txt")
    git("-C", source, "commit", "-q", "-m", "c6: new")
    after = push_all(repo, source, before)
    assert repo.objects.packs[1].closure is None  # the new pack is not everything: never reused
    sent = pack_of(repo, clone_request(list(after.values())))
    assert objects_in(sent) == rev_list(source, "--all")


def test_the_closure_survives_a_restart(source: Path, tmp_path: Path) -> None:
    repo = Repository.open(tmp_path / "data", "r")
    refs = push_all(repo, source)
    assert list((tmp_path / "data").rglob("pack-*.tips"))
    again = Repository.open(tmp_path / "data", "r")
    (pack,) = again.objects.packs
    assert pack.closure == frozenset(refs.values())
    assert pack_of(again, clone_request(list(refs.values()))) == pack.data


def test_a_damaged_closure_sidecar_is_ignored(source: Path, tmp_path: Path) -> None:
    repo = Repository.open(tmp_path / "data", "r")
    refs = push_all(repo, source)
    (tips,) = (tmp_path / "data").rglob("pack-*.tips")
    raw = bytearray(tips.read_bytes())
    raw[40] ^= 1
    tips.write_bytes(bytes(raw))
    again = Repository.open(tmp_path / "data", "r")
    assert again.objects.packs[0].closure is None
    assert objects_in(pack_of(again, clone_request(list(refs.values())))) == rev_list(source, "--all")


def test_include_tag_after_a_ref_update_is_not_served_from_the_cache(source: Path) -> None:
    """The same fetch before and after an annotated tag of the fetched commit is pushed: the
    second answer must carry the tag (include-tag), so the first may not be reused."""
    repo = Repository("r")
    refs = push_all(repo, source)
    main, parent = refs["refs/heads/main"], git("-C", source, "rev-parse", "main~1").stdout.strip()
    body = clone_request([main], [parent], (b"include-tag",))
    first = objects_in(pack_of(repo, body))
    assert SHARED_PACK_CACHE.get(SHARED_PACK_CACHE.key(_owner(repo), _any_key(repo, body))) is not None
    git("-C", source, "tag", "-a", "v2.0", "-m", "Version 2.0", "main")
    tag = git("-C", source, "rev-parse", "v2.0").stdout.strip()
    push_all(repo, source, refs)
    second = objects_in(pack_of(repo, body))
    assert tag not in first
    assert second == first | {tag}


def _owner(repo: Repository) -> int:
    from govc.uploadpack import _cache_owner

    return _cache_owner(repo)


def _any_key(repo: Repository, body: bytes) -> object:
    """The cache key upload-pack builds for a v2 fetch body (recomputed the same way)."""
    from govc.uploadpack import _request_key, plan_fetch
    from protocol.upload import parse_v2_command, parse_v2_fetch

    cmd = parse_v2_command(body)
    assert cmd is not None
    req = parse_v2_fetch(cmd)
    plan = plan_fetch(repo, req)
    return _request_key(req, plan, [h for h in req.haves if repo.objects.has(h)])
