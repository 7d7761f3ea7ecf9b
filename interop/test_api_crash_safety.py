"""Acknowledged API commits survive kill -9: a process committing through the Python API on a
durable repository is killed at random moments, reopened, and every commit it reported as done
must be there, with a repository stock git finds complete."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from interop.conftest import Git, Server

WRITER = textwrap.dedent("""
    import sys, threading
    import govc

    repo = govc.Repository.open(sys.argv[1], name="api")
    out = open(sys.argv[2], "a", buffering=1)

    def work(branch: str) -> None:
        n = 0
        while True:
            n += 1
            with repo.transaction(branch, author="bot <bot@example.com>", rebase=True) as tx:
                tx.write(f"{branch}/file-{n % 7}.txt", f"{branch} {n}\\n" * (1 + n % 50))
                commit = tx.commit(f"{branch} {n}")
            out.write(f"{branch} {commit.oid}\\n")  # acknowledged: the call returned

    threads = [threading.Thread(target=work, args=(b,), daemon=True) for b in ("main", "ops", "dev")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
""")

ROUNDS = int(os.environ.get("GOVC_CRASH_ROUNDS", "6"))


@pytest.fixture(autouse=True)
def _govc_only(server: Server) -> None:
    if server.is_reference:
        pytest.skip("drives govc's Python API")


@pytest.mark.parametrize("proto", [2], indirect=True)
def test_api_commits_survive_kill_9(git: Git, tmp_path: Path) -> None:
    data = tmp_path / "data"
    acks = tmp_path / "acks.txt"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(os.environ.get("GOVC_CRASH_SEED", "api"))
    for round_no in range(ROUNDS):
        before = acks.read_text().count("\n") if acks.exists() else 0
        proc = subprocess.Popen([sys.executable, str(script), str(data), str(acks)],
                                cwd=Path(__file__).resolve().parent.parent)
        # Kill at a random moment once the writer is at work (on a loaded machine its start-up
        # alone can take longer than any fixed delay).
        deadline = time.monotonic() + 60
        while (not acks.exists() or acks.read_text().count("\n") <= before) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

        acknowledged: dict[str, list[str]] = {}
        for line in acks.read_text().splitlines():
            branch, oid = line.split()
            acknowledged.setdefault(branch, []).append(oid)
        assert acknowledged, "the writer acknowledged nothing; the test proves nothing"

        check = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(f"""
                import govc
                from govc.portability import export_repository
                repo = govc.Repository.open({str(data)!r}, name="api")
                for branch in ("main", "ops", "dev"):
                    tip = repo.refs.get("refs/heads/" + branch)
                    print(branch, tip.decode() if tip else "-")
                export_repository(repo, {str(tmp_path / f"export-{round_no}.git")!r})
            """)], capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent, timeout=60,
        )
        assert check.returncode == 0, check.stderr
        exported = tmp_path / f"export-{round_no}.git"
        git.fsck(exported)
        tips = dict(line.split() for line in check.stdout.splitlines())
        for branch, oids in acknowledged.items():
            history = set(git("rev-list", tips[branch], cwd=exported).stdout.split())
            lost = [oid for oid in oids if oid not in history]
            assert not lost, (f"round {round_no}: {len(lost)} acknowledged commit(s) on {branch} lost "
                              f"after kill -9, e.g. {lost[0]}")
