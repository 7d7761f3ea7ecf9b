"""Several git clients at once against one repository.

A memory-first server shares one in-memory repository between requests, so these tests look
for torn reads (a clone seeing half an update) and lost or doubled writes (two pushes both
"winning" from the same base).
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from interop.conftest import Git, GitResult, Served

CLIENTS = 8
BARRIER_TIMEOUT = 60.0

#: Ways git reports that a push lost the race: refused by the client after it saw the new tip
#: ("fetch first", "non-fast-forward"), or by the server when the ref moved under it (git's own
#: server says "cannot lock ref ...: is at X but expected Y" / "failed to update ref").
LOST_RACE = re.compile(
    r"fetch first|non-fast-forward|failed to lock|cannot lock ref|failed to update ref"
    r"|stale info|but expected|reference has changed|ref changed",
)


def test_concurrent_clones_are_identical_and_clean(git: Git, served: Served, tmp_path: Path) -> None:
    """Eight clones started together all succeed and each is a complete, identical copy."""
    barrier = threading.Barrier(CLIENTS, timeout=BARRIER_TIMEOUT)

    def clone(i: int) -> Path:
        dest = tmp_path / f"clone-{i}.git"
        barrier.wait()
        git("clone", "-q", "--mirror", served.url, dest)
        return dest

    with ThreadPoolExecutor(CLIENTS) as pool:
        clones = list(pool.map(clone, range(CLIENTS)))

    expected_refs = git.refs(served.source)
    expected_objects = git.all_objects(served.source)
    for dest in clones:
        assert git.refs(dest) == expected_refs, dest
        assert git.all_objects(dest) == expected_objects, dest
        git.fsck(dest)


def test_racing_pushes_to_one_branch_have_exactly_one_winner(
    git: Git, served: Served, tmp_path: Path
) -> None:
    """Eight clones push different commits onto the same base of main at the same moment.

    Exactly one push may win; each loser must be told so in git's usual words, main must end
    at the winner's commit (no lost update, no mixture), and the server must keep serving.
    """
    workers = [tmp_path / f"racer-{i}" for i in range(CLIENTS)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(lambda dest: git("clone", "-q", served.url, dest), workers))
    base = git.rev_parse(served.source, "main")
    tips = [git.commit_file(w, f"racer-{i}.txt", f"racer {i}\n", f"racer {i}") for i, w in enumerate(workers)]
    assert len(set(tips)) == CLIENTS

    barrier = threading.Barrier(CLIENTS, timeout=BARRIER_TIMEOUT)

    def push(worker: Path) -> GitResult:
        barrier.wait()
        return git("push", "origin", "main", cwd=worker, check=False)

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(push, workers))

    report = "\n\n".join(r.describe() for r in results)
    winners = [i for i, r in enumerate(results) if r.returncode == 0]
    assert len(winners) == 1, report
    for i, result in enumerate(results):
        if i in winners:
            continue
        assert re.search(r"\[(remote )?rejected\]", result.stderr), result.describe()
        assert LOST_RACE.search(result.stderr), result.describe()

    winner_tip = tips[winners[0]]
    assert git.ls_remote(served.url, patterns=["refs/heads/main"]) == {"refs/heads/main": winner_tip}
    after = tmp_path / "after"
    git("clone", "-q", served.url, after)
    assert git.rev_parse(after, "HEAD") == winner_tip
    assert git.rev_parse(after, "HEAD~1") == base
    git.fsck(after)
