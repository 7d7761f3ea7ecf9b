"""isomorphic-git (pure JavaScript, run by node) against the server: clone, fetch, push, delete.

``interop/isomorphic/client.js`` does one isomorphic-git operation per run (with node's ``fs``
and isomorphic-git's ``http/node`` transport) and prints JSON; file contents travel as base64 so
bytes are compared exactly. The repository starts as the sample history pushed by stock git,
and stock git checks what isomorphic-git pushed (``git fsck --strict``, refs, ``git log``, bytes).

``make test`` installs the node project (``npm ci --prefix interop/isomorphic``); without node
or without that install these tests are skipped with the reason.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from interop.conftest import Git, Served, server_refs, source_refs, verify_pushed

PROJECT = Path(__file__).resolve().parent / "isomorphic"
SCRIPT = PROJECT / "client.js"
NODE_TIMEOUT = 60.0
WHEN = 1_740_000_000
PAYLOAD = "isomorphic-git was here: \u00fcber \U0001f600\nbinary-ish \x00\x01\x02 bytes".encode()

#: The checking git's protocol version does not matter: isomorphic-git picks its own.
pytestmark = pytest.mark.parametrize("proto", [2])

Iso = Callable[..., dict[str, Any]]


def b64(files: Mapping[str, bytes]) -> dict[str, str]:
    return {path: base64.b64encode(data).decode() for path, data in files.items()}


def unb64(files: Mapping[str, str]) -> dict[str, bytes]:
    return {path: base64.b64decode(data) for path, data in files.items()}


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, and a check that isomorphic-git is installed next to the script."""
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not installed (apt-get install nodejs); isomorphic-git needs it")
    if not (PROJECT / "node_modules" / "isomorphic-git" / "package.json").is_file():
        pytest.skip(f"isomorphic-git is not installed: run `npm ci --prefix {PROJECT}` (make test does)")
    return found


@pytest.fixture
def iso(node: str, git_home: Path) -> Iso:
    """Run ``client.js COMMAND`` with keyword arguments as JSON; return its JSON answer."""

    def run(command: str, **args: object) -> dict[str, Any]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(git_home),
            "NO_PROXY": "*",
            "no_proxy": "*",
        }
        done = subprocess.run(
            [node, str(SCRIPT), command, json.dumps(args)],
            capture_output=True,
            text=True,
            env=env,
            timeout=NODE_TIMEOUT,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"isomorphic-git {command} failed [exit {done.returncode}]\n"
                f"--- stderr ---\n{done.stderr[-8000:]}\n--- stdout ---\n{done.stdout[-2000:]}"
            )
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    return run


def listed(entries: list[dict[str, Any]]) -> dict[str, str]:
    """isomorphic-git's ``listServerRefs`` answer in ``git ls-remote`` form (with ``^{}``)."""
    out: dict[str, str] = {}
    for entry in entries:
        out[entry["ref"]] = entry["oid"]
        if entry.get("peeled"):
            out[entry["ref"] + "^{}"] = entry["peeled"]
    return out


def assert_pushed(result: dict[str, Any], ref: str) -> None:
    assert result["ok"] is True and result["error"] is None, result
    assert result["refs"].get(ref, {}).get("ok") is True, result


def packs(repo: Path) -> set[Path]:
    return set((repo / ".git" / "objects" / "pack").glob("*.pack"))


def pack_objects(git: Git, pack: Path) -> dict[str, str]:
    """``{oid: type}`` of the objects in ``pack`` (``git verify-pack -v`` on its index)."""
    out = git("verify-pack", "-v", pack.with_suffix(".idx"), cwd=pack.parent).stdout
    rows = (line.split() for line in out.splitlines())
    return {row[0]: row[1] for row in rows if len(row) > 2 and len(row[0]) == 40}


def test_isomorphic_clone_commit_push(git: Git, served: Served, iso: Iso, tmp_path: Path) -> None:
    """isomorphic-git clones the history git pushed, sees refs and bytes, commits and pushes main."""
    expected = source_refs(git, served.source)
    work = tmp_path / "iso"
    paths = ["src/hello.txt", "data/big.txt", "tools/run.sh"]
    cloned = iso("clone", url=served.url, dir=str(work), paths=paths)

    assert cloned["branch"] == "refs/heads/main"
    assert cloned["head"] == expected["refs/heads/main"]
    want_local = {
        name.replace("refs/heads/", "refs/remotes/origin/", 1): oid for name, oid in expected.items()
    }
    want_local["refs/heads/main"] = expected["refs/heads/main"]
    assert cloned["refs"] == want_local
    assert cloned["tags"]["refs/tags/v1.0"] == {
        "object": git.rev_parse(served.source, "v1.0^{commit}"),
        "type": "commit",
        "tag": "v1.0",
        "message": "Version 1.0\n",
    }
    assert cloned["tags"]["refs/tags/blob-tag"]["type"] == "blob"
    for path, data in unb64(cloned["files"]).items():
        assert data == (served.source / path).read_bytes(), path
        assert (work / path).read_bytes() == data, path

    # The refs isomorphic-git lists over both protocol versions are the ones git lists.
    remote = git.ls_remote(served.url)
    for version in ("serverRefsV1", "serverRefsV2"):
        seen = listed(cloned[version])
        assert seen == remote, version
        head = next(entry for entry in cloned[version] if entry["ref"] == "HEAD")
        assert head.get("target") == "refs/heads/main", (version, head)

    files = {"isomorphic.txt": PAYLOAD, "src/hello.txt": b"Hello from isomorphic-git!\n"}
    message = "isomorphic-git: add isomorphic.txt, edit hello"
    new = iso("commit", dir=str(work), files=b64(files), message=message + "\n", timestamp=WHEN)["oid"]
    assert_pushed(iso("push", dir=str(work), ref="main"), "refs/heads/main")

    expected["refs/heads/main"] = new
    assert server_refs(git, served.url) == expected
    verify_pushed(
        git,
        served.url,
        tmp_path / "check",
        branch="main",
        commit=new,
        files={**files, "data/big.txt": (served.source / "data/big.txt").read_bytes()},
        message=message,
        parent=git.rev_parse(served.source, "main"),
    )


def test_isomorphic_fetch_branch_push_and_delete(git: Git, served: Served, iso: Iso, tmp_path: Path) -> None:
    """isomorphic-git fetches what git pushed since, pushes a new branch, then deletes two branches."""
    expected = source_refs(git, served.source)
    work = tmp_path / "iso"
    iso("clone", url=served.url, dir=str(work))
    before_packs = packs(work)

    new_main = git.commit_file(served.source, "src/hello.txt", "Hello once more\n", "git: edit hello again")
    git("push", "-q", served.url, "main", cwd=served.source)
    fetched = iso("fetch", dir=str(work), paths=["src/hello.txt"])
    assert fetched["fetchHead"] == new_main
    assert fetched["refs"]["refs/remotes/origin/main"] == new_main
    assert unb64(fetched["files"]) == {"src/hello.txt": b"Hello once more\n"}
    new_packs = packs(work) - before_packs
    assert len(new_packs) == 1, new_packs
    # Incremental: the pack holds exactly the objects git itself would send (the commit, the
    # root and src/ trees, the blob), nothing the client already had or said it had.
    new_objects = git("rev-list", "--objects", new_main, "--not", *expected.values(), cwd=served.source)
    wanted = {line.split(" ", 1)[0] for line in new_objects.stdout.splitlines()}
    assert len(wanted) == 4, new_objects.stdout
    sent = pack_objects(git, next(iter(new_packs)))
    extra = {oid: kind for oid, kind in sent.items() if oid not in wanted}
    assert set(sent) == wanted, f"the pack holds {len(sent)} objects, git sends {len(wanted)}; extra: {extra}"

    files = {"topic/isomorphic.txt": PAYLOAD}
    message = "isomorphic-git: topic"
    made = iso(
        "commit",
        dir=str(work),
        files=b64(files),
        message=message + "\n",
        timestamp=WHEN + 60,
        branch="topic",
        **{"from": new_main},
    )
    assert made["branch"] == "refs/heads/topic"
    topic = made["oid"]
    assert_pushed(iso("push", dir=str(work), ref="topic"), "refs/heads/topic")
    expected |= {"refs/heads/main": new_main, "refs/heads/topic": topic}
    assert server_refs(git, served.url) == expected
    verify_pushed(
        git,
        served.url,
        tmp_path / "check",
        branch="topic",
        commit=topic,
        files={**files, "src/hello.txt": b"Hello once more\n"},
        message=message,
        parent=new_main,
    )

    # isomorphic-git wants a local ref to name even for a delete: the branch it made, and the
    # remote-tracking branch of one stock git pushed.
    for local, branch in (("topic", "topic"), ("refs/remotes/origin/release/1.x", "release/1.x")):
        deleted = iso("push", dir=str(work), ref=local, remoteRef=f"refs/heads/{branch}", delete=True)
        assert_pushed(deleted, f"refs/heads/{branch}")
        del expected[f"refs/heads/{branch}"]
    assert server_refs(git, served.url) == expected
    fresh = tmp_path / "fresh"
    git("clone", "-q", "--mirror", served.url, fresh)
    git.fsck(fresh)
    assert git.refs(fresh) == expected
