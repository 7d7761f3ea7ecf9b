"""Two govc nodes sharing their repositories through one PostgreSQL database.

Each node is what ``govc serve --backend postgresql://...`` runs: a registry of repositories held
in memory, kept durable in the shared database, and a follower that applies what the other nodes
commit (see govc/cluster.py). Here both nodes run in this process, each with its own connection
pool and its own HTTP server, so the script can show, step by step:

1. a ``git push`` to node A is clonable from node B straight away;
2. a watcher on node B hears of node A's push exactly once;
3. two writers racing on ``main`` through different nodes: one wins, the other is refused (a
   compare-and-swap in the database), and both nodes show the winner;
4. a protected-branch rule made on node A refuses a force-push to node B (tokens, grants,
   protections and webhooks live in the shared database too).

The database: the DSN given as the first argument or in ``$GOVC_BACKEND``; without one the script
starts a throw-away PostgreSQL server from the machine's binaries (the test suite's helper) and
removes it at the end. The output has no object ids, ports or times.

    .venv/bin/python examples/distributed/two_nodes.py [postgresql://user@host/db]
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from govc import Server
from govc.registry import Registry
from govc.validation import ConflictError
from storage.postgres import PostgresDirectory

ROOT = Path(__file__).resolve().parents[2]
AUTHOR = "ops <ops@example.com>"


@contextlib.contextmanager
def database() -> Iterator[str]:
    """The DSN to use: the caller's, or a throw-away server's."""
    given = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("GOVC_BACKEND")
    if given:
        yield given
        return
    sys.path.insert(0, str(ROOT))
    from tests.pgserver import PostgresServer

    server = PostgresServer()
    try:
        server.start()
        print("(no DSN given: using a throw-away PostgreSQL server)")
        yield server.create_database("two_nodes")
    finally:
        server.destroy()


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd or Path.cwd()),
           "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C", "GIT_AUTHOR_NAME": "ops",
           "GIT_AUTHOR_EMAIL": "ops@example.com", "GIT_COMMITTER_NAME": "ops",
           "GIT_COMMITTER_EMAIL": "ops@example.com"}
    done = subprocess.run(["git", "-c", "init.defaultBranch=main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed:\n{done.stderr}")
    return done


def main() -> None:
    if shutil.which("git") is None:
        print("git is not installed: nothing to show")
        return
    with database() as dsn, tempfile.TemporaryDirectory(prefix="govc-two-nodes-") as tmp:
        work = Path(tmp)
        print("== 1. Two nodes on one database; a push to node A, a clone from node B")
        directories = [PostgresDirectory(dsn), PostgresDirectory(dsn)]
        node_a, node_b = (Registry(d) for d in directories)
        server_a, server_b = Server(node_a, auto_create=True), Server(node_b, auto_create=True)
        url_a, url_b = f"{server_a.serve_in_thread()}/infra.git", f"{server_b.serve_in_thread()}/infra.git"
        try:
            git("init", "-q", str(work / "laptop"))
            (work / "laptop" / "app.conf").write_text("workers = 4\n")
            git("add", "app.conf", cwd=work / "laptop")
            git("commit", "-q", "-m", "Baseline", cwd=work / "laptop")
            git("push", "-q", url_a, "main", cwd=work / "laptop")
            assert node_b.cluster is not None and node_b.cluster.catch_up()  # milliseconds
            git("clone", "-q", url_b, str(work / "from-b"))
            print(f"  cloned from node B: app.conf = {(work / 'from-b' / 'app.conf').read_text().strip()!r}")

            print("\n== 2. A watcher on node B hears of a push to node A, once")
            infra_a, infra_b = node_a.get("infra"), node_b.get("infra")
            assert infra_a is not None and infra_b is not None
            heard: list[str] = []
            watcher = infra_b.watch(lambda e: heard.append(f"{e.branch}: {', '.join(e.paths)} ({e.source})"))
            (work / "laptop" / "app.conf").write_text("workers = 8\n")
            git("commit", "-q", "-am", "Eight workers", cwd=work / "laptop")
            git("push", "-q", url_a, "main", cwd=work / "laptop")
            assert node_b.cluster is not None and node_b.cluster.catch_up()
            watcher.drain()
            print(f"  node B's watcher: {heard}")
            watcher.close()

            print("\n== 3. Two writers race on main, one through each node")
            outcome = {}
            for name, repo in (("alice via node A", infra_a), ("bob via node B", infra_b)):
                tx = repo.transaction("main", author=AUTHOR)
                tx.write("app.conf", f"workers = {len(outcome) + 12}\n")
                outcome[name] = tx
            for name, tx in outcome.items():
                try:
                    tx.commit(f"{name}'s change")
                    print(f"  {name}: committed")
                except ConflictError as e:
                    print(f"  {name}: refused ({e})")
            assert node_a.cluster is not None and node_a.cluster.catch_up() and node_b.cluster.catch_up()
            same = infra_a.refs.get("refs/heads/main") == infra_b.refs.get("refs/heads/main")
            print(f"  both nodes show the same main: {same}; app.conf = "
                  f"{infra_b.reality('main').read('app.conf').decode().strip()!r}")

            print("\n== 4. A protected-branch rule made on node A applies on node B")
            node_a.protections.add("infra", "refs/heads/main")
            git("commit", "-q", "--amend", "-m", "Rewritten history", cwd=work / "laptop")
            refused = git("push", "--force", url_b, "main", cwd=work / "laptop", check=False)
            reason = next(line for line in refused.stderr.splitlines() if "[remote rejected]" in line)
            print(f"  force-push to node B: {reason.split('(', 1)[1].rstrip(')')}")
        finally:
            server_a.stop()
            server_b.stop()
            for directory in directories:
                directory.close()


if __name__ == "__main__":
    main()
