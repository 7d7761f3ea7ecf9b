"""Protocol v2 features beyond ls-refs and fetch: server options, session ids, object-info and
``wait-for-done``.

Where git 2.39 has no porcelain that exercises a feature, the test speaks the protocol itself
(pkt-lines over ``urllib``), checking the answer's structure against what stock git's server
sends (see the recorded transcripts in ``protocol-transcripts/``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from interop.conftest import (
    FLUSH_PKT,
    Git,
    Served,
    parse_pkt_lines,
    pkt_line,
    upload_pack_v2,
    v2_capabilities,
)

v2_only = pytest.mark.parametrize("proto", [pytest.param(2, id="v2")], indirect=True)


def _request(command: str, capabilities: list[str], arguments: list[str]) -> bytes:
    """A v2 request: ``command=...``, capability lines, delim, arguments, flush."""
    body = pkt_line(f"command={command}\n")
    body += b"".join(pkt_line(f"{line}\n") for line in capabilities)
    body += b"0001" + b"".join(pkt_line(f"{line}\n") for line in arguments) + b"0000"
    return body


def _answer(url: str, body: bytes) -> list[bytes | int]:
    status, data = upload_pack_v2(url, body)
    assert status == 200, (status, data[:1000])
    return [item.rstrip(b"\n") if isinstance(item, bytes) else item for item in parse_pkt_lines(data)]


@v2_only
def test_ls_remote_and_fetch_with_server_options(git: Git, served: Served, tmp_path: Path) -> None:
    """``ls-remote -o`` and ``fetch -o`` send ``server-option=...`` lines the server accepts."""
    trace = tmp_path / "packet.txt"
    env = {"GIT_TRACE_PACKET": str(trace)}
    listed = git("ls-remote", "-o", "foo", "-o", "key=a value", served.url, env=env).stdout
    refs = {name: oid for oid, name in (line.split("\t") for line in listed.splitlines())}
    assert refs["refs/heads/main"] == git.rev_parse(served.source, "main")
    text = trace.read_text("utf-8", "replace")
    assert re.search(r"> server-option=foo$", text, re.M), text[-3000:]
    assert re.search(r"> server-option=key=a value$", text, re.M), text[-3000:]

    work = tmp_path / "work"
    git("clone", "-q", "--server-option=clone-opt", served.url, work)
    tip = git.commit_file(served.source, "opt.txt", "o\n", "with options")
    git("push", "-q", served.url, "main", cwd=served.source)
    git("fetch", "-q", "-o", "fetch-opt", "-o", "x=y", "origin", cwd=work)
    assert git.rev_parse(work, "origin/main") == tip
    git.fsck(work)


def test_client_advertising_a_session_id(git: Git, served: Served, tmp_path: Path) -> None:
    """``transfer.advertiseSID=true`` on the client does not disturb clone or fetch.

    git sends its ``session-id`` only to a server that advertises one (the reference does not
    by default); when the trace shows the server advertised it, the client's requests carried
    it and the server must have accepted them.
    """
    work = tmp_path / "work"
    trace = tmp_path / "packet.txt"
    env = {"GIT_TRACE_PACKET": str(trace)}
    git("-c", "transfer.advertiseSID=true", "clone", "-q", served.url, work, env=env)
    tip = git.commit_file(served.source, "sid.txt", "s\n", "sid")
    git("push", "-q", served.url, "main", cwd=served.source)
    git("-c", "transfer.advertiseSID=true", "fetch", "-q", "origin", cwd=work, env=env)
    assert git.rev_parse(work, "origin/main") == tip
    git.fsck(work)
    text = trace.read_text("utf-8", "replace")
    if re.search(r"< (.*\\0.* )?session-id=\S+", text):
        assert re.search(r"> (.*\\0.* )?session-id=\S+", text), text[-3000:]


@v2_only
def test_ls_refs_request_with_agent_and_session_id(git: Git, served: Served) -> None:
    """A v2 request may carry ``agent=`` and, when advertised, ``session-id=`` capability lines.

    Stock git dies on a ``session-id`` it did not advertise (``unknown capability``), and does
    not advertise it unless ``transfer.advertiseSID`` is set on the server; so the line is only
    sent to a server that offers it.
    """
    caps = v2_capabilities(served.url)
    lines = ["agent=interop-test/1.0", "object-format=sha1"]
    if any(cap == "session-id" or cap.startswith("session-id=") for cap in caps):
        lines.append("session-id=interop-1234")
    answer = _answer(served.url, _request("ls-refs", lines, ["ref-prefix refs/heads/main"]))
    assert answer == [f"{git.rev_parse(served.source, 'main')} refs/heads/main".encode(), FLUSH_PKT], answer


@v2_only
def test_object_info_sizes(git: Git, served: Served) -> None:
    """``command=object-info`` with ``size``: one ``<oid> <size>`` line per requested object.

    git 2.39 has no porcelain for object-info, so the request is made by hand. Stock git
    advertises the command (see transcript 01-clone-v2); the answer is ``size``, the lines in
    request order, then a flush.
    """
    caps = v2_capabilities(served.url)
    if "object-info" not in caps:
        pytest.skip(f"the server does not advertise object-info: {caps}")
    src = served.source
    oids = [
        git.rev_parse(src, "main:data/big.txt"),
        git.rev_parse(src, "main:README.md"),
        git.rev_parse(src, "main"),
        git.rev_parse(src, "main^{tree}"),
        git.rev_parse(src, "refs/tags/v1.0"),
    ]
    body = _request("object-info", ["object-format=sha1"], ["size", *(f"oid {oid}" for oid in oids)])
    answer = _answer(served.url, body)
    sizes = [git("cat-file", "-s", oid, cwd=src).stdout.strip() for oid in oids]
    assert answer == [
        b"size",
        *(f"{oid} {size}".encode() for oid, size in zip(oids, sizes, strict=True)),
        FLUSH_PKT,
    ]


@v2_only
def test_object_info_of_an_unknown_object(git: Git, served: Served) -> None:
    """An id the server lacks is answered with the id and an empty size (``<oid> ``), as stock
    git 2.39 does, and the request as a whole still succeeds."""
    caps = v2_capabilities(served.url)
    if "object-info" not in caps:
        pytest.skip(f"the server does not advertise object-info: {caps}")
    readme = git.rev_parse(served.source, "main:README.md")
    unknown = "1234567890" * 4
    body = _request("object-info", ["object-format=sha1"], ["size", f"oid {unknown}", f"oid {readme}"])
    answer = _answer(served.url, body)
    size = git("cat-file", "-s", readme, cwd=served.source).stdout.strip()
    assert answer == [b"size", f"{unknown} ".encode(), f"{readme} {size}".encode(), FLUSH_PKT]


@v2_only
def test_wait_for_done_without_done_gets_acknowledgments_only(git: Git, served: Served) -> None:
    """``wait-for-done`` with haves and no ``done``: acknowledgments, no ``ready``, no pack.

    Even though c4 alone would let the server stop negotiating, ``wait-for-done`` means it must
    wait for the client's ``done``; the same request with ``done`` then gets the pack.
    """
    src = served.source
    main, c4 = git.rev_parse(src, "main"), git.rev_parse(src, "main~2")
    arguments = [f"want {main}", f"have {c4}", "wait-for-done", "no-progress"]
    answer = _answer(served.url, _request("fetch", ["object-format=sha1"], arguments))
    assert answer == [b"acknowledgments", f"ACK {c4}".encode(), FLUSH_PKT], answer

    done = _answer(served.url, _request("fetch", ["object-format=sha1"], [*arguments, "done"]))
    assert done[0] == b"packfile", done[:5]
    assert done[1][:1] == b"\x01" and b"PACK" in done[1], done[1][:20]  # type: ignore[index]
    assert done[-1] == FLUSH_PKT
