"""Shared test helpers: an independent pkt-line reader, pack building blocks, git as an oracle.

Everything here is written from Git's documented formats, not from govc's code, so that tests
compare govc against an independent reading of the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The recordings of stock git talking to stock git's server, kept in the repository so that a fresh
# clone tests against them; GOVC_TRANSCRIPTS points elsewhere if needed.
TRANSCRIPTS = Path(
    os.environ.get("GOVC_TRANSCRIPTS", REPO_ROOT / "tests" / "vectors" / "protocol-transcripts")
)
ZERO = b"0" * 40

# Object ids of the transcript repository (protocol-transcripts/README.md).
C1 = b"fa6ceadd62db5f6a980e7ec74bc525e255f733f7"
C2 = b"a9dba0076cbd62f015cd05f224c1750159e2e2a8"
C3 = b"6c4505d6461fbd36f33e77d74dfdf69c79ad91cb"
C4 = b"3f85a37f9d9ceb23ed030f99f495badb2a3ca55d"
M5 = b"90d2de5d6fbe3697e729b29bd1f9549baedcca5e"
V1_0 = b"cec2693e9639a0f8a82f26ac8411312862470857"
C6 = b"938d1683b98c7e45d8eadb36ffea6ccbcdaaad50"
C7 = b"68dd860dac2c4b11fd47a6a62b9aa7da24fb86e0"
C8 = b"82bdd13ddc529e12c4cc38dc70e671aa60a7717a"
BIG_V1 = b"363c17922619d25f68fd67b8c92297bd1247afc9"
BIG_V2 = b"3020613d2b8d66d85e3c8674bbe7b4d37b949e40"
TRANSCRIPT_PACK_NAME = "3ff5697eb8932def7a0e18d6c4582eeb24ebee95"

TYPE_NUMS = {"commit": 1, "tree": 2, "blob": 3, "tag": 4}
TYPE_NAMES = {v: k for k, v in TYPE_NUMS.items()}


# --------------------------------------------------------------------------------------------
# transcripts


def transcript(scenario: str, exchange: int, kind: str) -> bytes:
    """``kind``: request, response or request.inflated."""
    return (TRANSCRIPTS / scenario / f"exchange-{exchange}.{kind}.bin").read_bytes()


# --------------------------------------------------------------------------------------------
# pkt-lines, read independently of protocol.pktline

FLUSH = "flush"
DELIM = "delim"
RESPONSE_END = "response-end"
_SPECIAL = {0: FLUSH, 1: DELIM, 2: RESPONSE_END}
_HEXDIGITS = frozenset(b"0123456789abcdefABCDEF")


def split_pkts(data: bytes) -> tuple[list[bytes | str], bytes]:
    """Payloads (bytes) and specials (str) up to the first bytes that are not a pkt-line (a raw
    pack); returns them and those trailing bytes."""
    out: list[bytes | str] = []
    i = 0
    while i + 4 <= len(data) and _HEXDIGITS.issuperset(data[i : i + 4]):
        n = int(data[i : i + 4], 16)
        if n in _SPECIAL:
            out.append(_SPECIAL[n])
            i += 4
            continue
        assert n >= 4, f"invalid pkt-line length {n} at {i}"
        assert i + n <= len(data), f"truncated pkt-line at {i}"
        out.append(data[i + 4 : i + n])
        i += n
    return out, data[i:]


def pkts(data: bytes) -> list[bytes | str]:
    """A body that is pkt-lines only."""
    out, rest = split_pkts(data)
    assert rest == b"", f"unframed bytes after the pkt-lines: {rest[:40]!r}"
    return out


def frame(payload: bytes) -> bytes:
    return b"%04x" % (len(payload) + 4) + payload


def frame_line(text: bytes) -> bytes:
    return frame(text + b"\n")


@dataclass
class Demuxed:
    """A side-band response taken apart."""

    lines: list[bytes | str] = field(default_factory=list)  # packets before the first band packet
    bands: dict[int, bytes] = field(default_factory=lambda: {1: b"", 2: b"", 3: b""})
    band_packets: list[tuple[int, int]] = field(default_factory=list)  # (band, packet length)
    trailer: list[bytes | str] = field(default_factory=list)  # packets after the last band packet


def demux(packets: Sequence[bytes | str]) -> Demuxed:
    d = Demuxed()
    seen_band = False
    for p in packets:
        if isinstance(p, bytes) and p[:1] in (b"\x01", b"\x02", b"\x03"):
            seen_band = True
            d.bands[p[0]] += p[1:]
            d.band_packets.append((p[0], len(p) + 4))
            d.trailer = []
        elif seen_band:
            d.trailer.append(p)
        else:
            d.lines.append(p)
    return d


# --------------------------------------------------------------------------------------------
# objects and packs, built from the format description


def git_oid(type_num: int, content: bytes) -> bytes:
    h = hashlib.sha1(b"%s %d\x00" % (TYPE_NAMES[type_num].encode(), len(content)))
    h.update(content)
    return h.hexdigest().encode()


def obj_header(type_num: int, size: int) -> bytes:
    out = bytearray()
    byte = (type_num << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def whole_entry(type_num: int, content: bytes, level: int = 6) -> bytes:
    return obj_header(type_num, len(content)) + zlib.compress(content, level)


def ref_delta_entry(base: bytes, delta: bytes) -> bytes:
    return obj_header(7, len(delta)) + bytes.fromhex(base.decode()) + zlib.compress(delta)


def ofs_delta_entry(distance: int, delta: bytes) -> bytes:
    enc = bytearray([distance & 0x7F])
    distance >>= 7
    while distance:
        distance -= 1
        enc.append(0x80 | (distance & 0x7F))
        distance >>= 7
    enc.reverse()
    return obj_header(6, len(delta)) + bytes(enc) + zlib.compress(delta)


def make_pack(entries: Sequence[bytes], count: int | None = None, version: int = 2) -> bytes:
    body = b"PACK" + struct.pack(">II", version, len(entries) if count is None else count)
    body += b"".join(entries)
    return body + hashlib.sha1(body).digest()


def reseal(pack_without_trailer: bytes) -> bytes:
    """Append a correct trailing checksum (to corrupt a pack's body yet keep the checksum valid)."""
    return pack_without_trailer + hashlib.sha1(pack_without_trailer).digest()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _copy_op(offset: int, size: int) -> bytes:
    op = 0x80
    args = bytearray()
    for i in range(4):
        b = (offset >> (8 * i)) & 0xFF
        if b:
            op |= 1 << i
            args.append(b)
    for i in range(3):
        b = (size >> (8 * i)) & 0xFF
        if b:
            op |= 0x10 << i
            args.append(b)
    return bytes([op]) + bytes(args)


def make_delta(base: bytes, target: bytes) -> bytes:
    """A valid Git delta: copy the common prefix from ``base``, insert the rest."""
    prefix = 0
    while prefix < min(len(base), len(target)) and base[prefix] == target[prefix]:
        prefix += 1
    out = bytearray(_varint(len(base)) + _varint(len(target)))
    pos = 0
    while pos < prefix:
        n = min(0xFFFF, prefix - pos)
        out += _copy_op(pos, n)
        pos += n
    rest = target[prefix:]
    for i in range(0, len(rest), 127):
        piece = rest[i : i + 127]
        out.append(len(piece))
        out += piece
    return bytes(out)


def commit_object(
    tree: bytes, parents: Iterable[bytes] = (), message: bytes = b"test\n", when: int = 1112912000
) -> bytes:
    lines = [b"tree " + tree]
    lines += [b"parent " + p for p in parents]
    lines.append(b"author A U Thor <author@example.com> %d -0700" % when)
    lines.append(b"committer C O Mitter <committer@example.com> %d -0700" % when)
    return b"\n".join(lines) + b"\n\n" + message


def tree_object(entries: Iterable[tuple[bytes, bytes, bytes]]) -> bytes:
    """``(mode, name, hex oid)`` entries, sorted as git sorts them."""

    def key(e: tuple[bytes, bytes, bytes]) -> bytes:
        return e[1] + (b"/" if e[0] == b"40000" else b"")

    return b"".join(
        m + b" " + n + b"\x00" + bytes.fromhex(o.decode()) for m, n, o in sorted(entries, key=key)
    )


# --------------------------------------------------------------------------------------------
# git, run in isolation


def git_env(home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL="/dev/null",
        LC_ALL="C",
        GIT_AUTHOR_NAME="A U Thor",
        GIT_AUTHOR_EMAIL="author@example.com",
        GIT_COMMITTER_NAME="C O Mitter",
        GIT_COMMITTER_EMAIL="committer@example.com",
    )
    if home is not None:
        env["HOME"] = str(home)
    return env


def git(
    *args: str | Path, input: bytes | None = None, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    full_env = git_env()
    if env:
        full_env.update(env)
    result = subprocess.run(
        ["git", *map(str, args)], input=input, capture_output=True, env=full_env, timeout=60
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {args} failed: {result.stderr.decode(errors='replace')}")
    return result


def have_git() -> bool:
    return shutil.which("git") is not None


def bare_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def git_index_pack(repo: Path, pack: bytes, *extra: str) -> subprocess.CompletedProcess[bytes]:
    """Feed ``pack`` to ``git index-pack --stdin`` inside ``repo`` (not checked)."""
    return git("--git-dir", repo, "index-pack", "--stdin", *extra, input=pack, check=False)


# --------------------------------------------------------------------------------------------
# a bare git repository, read so that a govc Repository can be built from it


@dataclass(frozen=True)
class GitSnapshot:
    packs: tuple[bytes, ...]
    loose: tuple[tuple[int, bytes], ...]
    refs: tuple[tuple[str, bytes], ...]
    head: str


def read_git_repo(gitdir: Path) -> GitSnapshot:
    packs = tuple(p.read_bytes() for p in sorted((gitdir / "objects" / "pack").glob("*.pack")))
    listing = git("--git-dir", gitdir, "cat-file", "--batch-all-objects", "--batch").stdout
    objects: list[tuple[bytes, int, bytes]] = []
    i = 0
    while i < len(listing):
        nl = listing.index(b"\n", i)
        oid, type_name, size = listing[i:nl].split()
        start = nl + 1
        data = listing[start : start + int(size)]
        objects.append((oid, TYPE_NUMS[type_name.decode()], data))
        i = start + int(size) + 1
    packed: set[bytes] = set()
    for idx in sorted((gitdir / "objects" / "pack").glob("*.idx")):
        shown = git("show-index", input=idx.read_bytes()).stdout.decode().split("\n")
        packed.update(line.split()[1].encode() for line in shown if line)
    loose = tuple((t, data) for oid, t, data in objects if oid not in packed)
    refs_out = git("--git-dir", gitdir, "for-each-ref", "--format=%(objectname) %(refname)").stdout
    refs = tuple((line.split()[1].decode(), line.split()[0]) for line in refs_out.splitlines())
    head = git("--git-dir", gitdir, "symbolic-ref", "HEAD").stdout.decode().strip()
    return GitSnapshot(packs, loose, refs, head)


def fill_repository(repo, snapshot: GitSnapshot) -> None:
    """Load a git repository's packs (indexed as they are), loose objects, refs and HEAD."""
    from storage.interfaces import RefUpdate

    for data in snapshot.packs:
        repo.add_pack(repo.objects.index_pack(data))
    for type_num, data in snapshot.loose:
        repo.objects.add_object(type_num, data)
    if snapshot.refs:
        repo.update_refs(
            [RefUpdate(n, o) for n, o in snapshot.refs], who="test", message="load", source="test"
        )
    repo.set_head(snapshot.head)


def build_repository(snapshot: GitSnapshot, name: str = "test"):  # -> govc.Repository
    from govc.repository import Repository

    repo = Repository(name)
    fill_repository(repo, snapshot)
    return repo


def rev_list_objects(gitdir: Path, wants: Iterable[bytes], haves: Iterable[bytes] = ()) -> set[bytes]:
    args = [w.decode() for w in wants] + ["--not"] + [h.decode() for h in haves]
    out = git("--git-dir", gitdir, "rev-list", "--objects", *args).stdout
    return {line.split()[0] for line in out.splitlines() if line}
