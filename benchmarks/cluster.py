"""Clone and push throughput of one, two and three govc nodes sharing one PostgreSQL database.

For each configuration a fresh database is made, N ``govc serve --backend DSN`` processes are
started on loopback, and the deterministic stdlib corpus (benchmarks/corpus.py) is pushed to the
first node. Then, with every node serving it:

* clones: ``--clients`` concurrent ``git clone --bare`` processes, ``--clones`` in all, spread
  round-robin over the nodes (what a load balancer does);
* pushes: ``--clients`` concurrent writers, each on its own branch, pushing one new commit at a
  time, ``--pushes`` in all, each push to the next node round-robin — so every push after the
  first lands on a node that must already have followed the writer's previous push (a push that
  arrives before the node caught up is refused as stale, and counted as such);
* at the end every node must show every writer's last commit (checked, not timed).

For reference the same workload runs against one node on the embedded backend (SQLite and pack
files, ``--data``). Everything — PostgreSQL, the nodes and the git clients — shares this machine,
so more nodes cannot add CPU here: the numbers show what the shared database and the following
cost, not how a cluster on several machines scales.

    .venv/bin/python benchmarks/cluster.py [--dsn postgresql://...] [--nodes 1,2,3]

Without ``--dsn`` a throw-away PostgreSQL server is started from the machine's binaries
(tests/pgserver.py). Results go to benchmarks/results/cluster.md (and .json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # sibling modules when run as a script
sys.path.insert(1, str(ROOT))

import corpus as corpus_mod  # noqa: E402
from gitcmd import CommandError, clean_env, git, run  # noqa: E402

RESULTS = HERE / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


class Node:
    """One ``govc serve`` process (PostgreSQL with ``dsn``, else an embedded data directory)."""

    def __init__(self, workdir: Path, name: str, dsn: str | None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"{name}.log"
        store = ["--backend", dsn] if dsn else ["--data", str(workdir / f"{name}-data")]
        cmd = [sys.executable, "-m", "govc", "serve", *store, "--host", "127.0.0.1", "--port", str(self.port),
               "--rate-limit", "0", "--git-concurrency", "0", "--client-concurrency", "0"]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL,
                                            env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while http_status(f"{self.base}/readyz") != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@dataclass
class Result:
    setup: str
    nodes: int
    seed_seconds: float
    clones: int
    clone_seconds: float
    clone_bytes: int
    pushes: int
    push_seconds: float
    push_p50_ms: float
    push_p95_ms: float
    stale: int

    @property
    def clones_per_s(self) -> float:
        return self.clones / self.clone_seconds

    @property
    def clone_mib_per_s(self) -> float:
        return self.clone_bytes * self.clones / self.clone_seconds / (1 << 20)

    @property
    def pushes_per_s(self) -> float:
        return self.pushes / self.push_seconds


def refs_of(url: str) -> dict[str, str]:
    out = git("ls-remote", url)
    return {name: oid for oid, name in (line.split("\t", 1) for line in out.splitlines())}


def prepare_writer(source: Path, work: Path, branch: str, count: int) -> list[str]:
    """``count`` commits on top of the corpus's main, made locally before anything is timed."""
    git("clone", "-q", "--bare", str(source), str(work))
    tip = git("rev-parse", "refs/heads/main", cwd=work).strip()
    tree = git("rev-parse", f"{tip}^{{tree}}", cwd=work).strip()
    commits = []
    for i in range(count):
        blob = run(["git", "hash-object", "-w", "--stdin"], cwd=work, env=clean_env(),
                   stdin=f"{branch} {i}\n").stdout.strip()
        tree_text = git("ls-tree", tree, cwd=work)
        listing = tree_text + f"100644 blob {blob}\t{branch.replace('/', '-')}.txt\n"
        new_tree = run(["git", "mktree"], cwd=work, env=clean_env(), stdin=listing).stdout.strip()
        tip = git("commit-tree", new_tree, "-p", tip, "-m", f"{branch} {i}", cwd=work,
                  env={"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "bench",
                       "GIT_COMMITTER_EMAIL": "b@x", "GIT_AUTHOR_DATE": f"{1_700_000_000 + i} +0000",
                       "GIT_COMMITTER_DATE": f"{1_700_000_000 + i} +0000"}).strip()
        commits.append(tip)
    return commits


def measure(setup: str, nodes: list[Node], source: Path, workdir: Path, args: argparse.Namespace) -> Result:
    urls = [f"{n.base}/bench.git" for n in nodes]
    started = time.perf_counter()
    git("push", "-q", "--mirror", urls[0], cwd=source)
    want = refs_of(urls[0])
    for url in urls[1:]:
        deadline = time.monotonic() + 60
        while refs_of(url) != want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} never showed the seeded repository")
            time.sleep(0.05)
    seed = time.perf_counter() - started

    # Clones, round-robin over the nodes.
    def clone(i: int) -> int:
        dest = workdir / f"clone-{i}"
        run(["git", "clone", "-q", "--bare", urls[i % len(urls)], str(dest)], env=clean_env(), timeout=600)
        size = sum(p.stat().st_size for p in (dest / "objects" / "pack").glob("*.pack"))
        subprocess.run(["rm", "-rf", str(dest)], check=True)
        return size

    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        sizes = list(pool.map(clone, range(args.clones)))
    clone_seconds = time.perf_counter() - started

    # Pushes: one branch per writer, each push to the next node.
    per_writer = max(1, args.pushes // args.clients)
    writers = [prepare_writer(source, workdir / f"writer-{w}", f"bench/w{w}", per_writer)
               for w in range(args.clients)]
    latencies: list[float] = []
    stale = [0]
    lock = threading.Lock()

    def write(w: int) -> None:
        for i, tip in enumerate(writers[w]):
            url = urls[(w + i) % len(urls)]
            for _attempt in range(20):
                t0 = time.perf_counter()
                try:
                    run(["git", "push", "-q", url, f"{tip}:refs/heads/bench/w{w}"],
                        cwd=workdir / f"writer-{w}", env=clean_env(), timeout=120)
                except CommandError:
                    with lock:
                        stale[0] += 1
                    time.sleep(0.01)
                    continue
                with lock:
                    latencies.append(time.perf_counter() - t0)
                break
            else:
                raise RuntimeError(f"writer {w} could not push {tip}")

    started = time.perf_counter()
    threads = [threading.Thread(target=write, args=(w,)) for w in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    push_seconds = time.perf_counter() - started
    for url in urls:  # every node shows every writer's last commit
        deadline = time.monotonic() + 30
        while any(refs_of(url).get(f"refs/heads/bench/w{w}") != writers[w][-1] for w in range(args.clients)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} does not show every push")
            time.sleep(0.05)
    ms = sorted(x * 1000 for x in latencies)
    return Result(setup, len(nodes), seed, args.clones, clone_seconds, int(statistics.median(sizes)),
                  len(latencies), push_seconds, statistics.median(ms), ms[int(0.95 * (len(ms) - 1))],
                  stale[0])


@contextmanager
def cluster(workdir: Path, count: int, dsn: str | None) -> Iterator[list[Node]]:
    nodes = [Node(workdir, f"node{i}", dsn) for i in range(count)]
    try:
        for node in nodes:
            node.wait_ready()
        yield nodes
    except Exception:
        for i, node in enumerate(nodes):
            print(f"--- node{i} log ---\n{node.log.read_text('utf-8', 'replace')[-4000:]}", file=sys.stderr)
        raise
    finally:
        for node in nodes:
            node.stop()


@contextmanager
def postgres(dsn: str | None) -> Iterator[tuple[object | None, str | None]]:
    if dsn:
        yield None, dsn
        return
    from tests.pgserver import PostgresServer

    server = PostgresServer()
    try:
        server.start()
        yield server, None
    finally:
        server.destroy()


def fresh_database(server: object | None, dsn: str | None, n: int) -> str:
    if server is None:
        assert dsn is not None
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:  # start from an empty govc schema
            conn.execute("DROP SCHEMA IF EXISTS govc CASCADE")
        return dsn
    return server.create_database(f"bench_{n}_{os.getpid()}")  # type: ignore[attr-defined]


def markdown(results: list[Result], args: argparse.Namespace, corpus: tuple[int, int]) -> str:
    lines = [
        "# Several nodes on one PostgreSQL",
        "",
        f"`benchmarks/cluster.py` on {platform.node()} ({os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}), {time.strftime('%Y-%m-%d')}; "
        f"load average before the run: {args.load_before}.",
        "",
        f"Corpus: the stdlib history of benchmarks/corpus.py, {args.commits} commits "
        f"({corpus[0]} objects). {args.clients} concurrent clients; {args.clones} clones and "
        f"{args.pushes} pushes per configuration, spread round-robin over the nodes (each push of a "
        "writer goes to the next node, which must have followed the writer's previous push).",
        "",
        "PostgreSQL, every node and every git client run on this one machine, so adding nodes adds no "
        "CPU: the table shows what sharing the database and following each other costs, not how "
        "nodes on separate machines scale.",
        "",
        "| setup | nodes | clones/s | clone MiB/s | pushes/s | push p50 ms | push p95 ms | stale pushes "
        "retried | seed s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.setup} | {r.nodes} | {r.clones_per_s:.2f} | {r.clone_mib_per_s:.1f} | "
                     f"{r.pushes_per_s:.2f} | {r.push_p50_ms:.0f} | {r.push_p95_ms:.0f} | {r.stale} | "
                     f"{r.seed_seconds:.1f} |")
    lines += [
        "",
        "*stale pushes retried*: pushes that reached a node before it had applied the same writer's "
        "previous push (made through another node a moment before), refused by the compare-and-swap in "
        "the database as git's ordinary `failed to update ref`, and pushed again by the client.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dsn", default=os.environ.get("GOVC_BACKEND"),
                        help="PostgreSQL to use (its govc schema is DROPPED); default: a throw-away server")
    parser.add_argument("--nodes", default="1,2,3", help="node counts to measure")
    parser.add_argument("--commits", type=int, default=300, help="corpus size")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--clones", type=int, default=24)
    parser.add_argument("--pushes", type=int, default=48)
    parser.add_argument("--no-embedded", action="store_true", help="skip the single embedded node")
    parser.add_argument("--out", type=Path, default=RESULTS / "cluster.md")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.nodes.split(",")]
    args.load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="govc-cluster-bench-") as tmp:
        root = Path(tmp)
        source = root / "corpus.git"
        corpus = corpus_mod.build(source, commits=args.commits)
        print(f"corpus: {corpus[0]} objects", flush=True)
        if not args.no_embedded:
            work = root / "embedded"
            work.mkdir()
            with cluster(work, 1, None) as nodes:
                results.append(measure("embedded (SQLite + packs)", nodes, source, work, args))
            print(results[-1], flush=True)
        with postgres(args.dsn) as (server, dsn):
            for n in counts:
                work = root / f"pg{n}"
                work.mkdir()
                with cluster(work, n, fresh_database(server, dsn, n)) as nodes:
                    results.append(measure("PostgreSQL", nodes, source, work, args))
                print(results[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(results, args, corpus))
    args.out.with_suffix(".json").write_text(json.dumps(
        [{**asdict(r), "clones_per_s": r.clones_per_s, "clone_mib_per_s": r.clone_mib_per_s,
          "pushes_per_s": r.pushes_per_s} for r in results], indent=2) + "\n")
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
