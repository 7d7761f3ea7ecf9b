"""Benchmarks of the Python API: realities, transactions and time travel.

    .venv/bin/python benchmarks/api.py [--commits 2000] [--rounds 3] [--realities 1000] [--history 1000]

Three questions, each answered against a goal the project set itself:

(a) How cheap is a reality? 1000 ephemeral realities created in one ``parallel_realities`` call,
    and 1000 separate ``parallel_reality`` calls (ephemeral and durable-style refs), each on a fresh
    repository; stock git's ``git update-ref --stdin`` creating 1000 refs in one transaction on
    tmpfs is shown for context. Goal: 1000 realities well under 10 ms, ideally under 1 ms.
(b) How fast do transactions commit? N small commits (one file of a 100-file tree changed each)
    through ``repo.transaction`` on a memory repository, side by side with the same commits written
    by ``git fast-import`` into a bare repository on tmpfs (/dev/shm; the stream is generated first,
    the timing is the whole ``git fast-import`` process, start to exit) and by dulwich's
    ``MemoryRepo`` (objects added to its store, the ref moved with ``set_if_equals``). Rounds are
    interleaved; the ratios are medians of per-round ratios. Goal: govc at least 2x fast-import.
(c) How fast is time travel? On a repository with 1000 commits: ``snapshot.read(path)`` on a
    snapshot already made (median, p99), and ``repo.time_travel(t)`` plus a first read at a random
    past moment, the cost of a cold question about the past. Goal: read <= 10 us.

Machines are noisy; the ratios are what to compare across machines. Results go to stdout as a
Markdown table and to ``benchmarks/results/api.json`` and ``api.md``. A default run takes well
under a minute.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules when run as a script

from gitcmd import clean_env
from report import machine_info

import govc

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AUTHOR = "bench <bench@example.com>"
DIRS, FILES_PER_DIR = 10, 10  # the tree every commit benchmark starts from: 100 files in 10 dirs


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def no_gc() -> Iterator[None]:
    """Keep the cyclic collector out of timed loops: it would charge a random iteration for garbage
    made by all of them, which inflates p99 without saying anything about the code measured."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def tmpfs_dir(prefix: str) -> Path:
    """A scratch directory in memory (/dev/shm) where there is one, so git is not measured on disk."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


GIT_IDENTITY = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
                "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}


def git_cmd(*args: str, cwd: Path, stdin: bytes | None = None) -> bytes:
    """Stock git with no user or system configuration and a fixed identity."""
    return subprocess.run(["git", *args], cwd=cwd, input=stdin, env=clean_env(GIT_IDENTITY), check=True,
                          capture_output=True, timeout=300).stdout


def seeded_repository() -> govc.Repository:
    repo = govc.Repository("bench")
    with repo.transaction("main", author=AUTHOR) as tx:
        tx.write("README.md", "# bench\n")
        tx.commit("root")
    return repo


# ----------------------------------------------------------------------------------------------
# (a) realities


def bench_realities(count: int, rounds: int) -> dict[str, Any]:
    names = [f"candidate-{i:04d}" for i in range(count)]

    def one_call() -> float:
        repo = seeded_repository()
        with no_gc():
            began = time.perf_counter()
            created = repo.parallel_realities(names, ephemeral=True)
            elapsed = time.perf_counter() - began
        assert len(created) == count and created[-1].head == repo.reality("main").head
        return elapsed

    def separate(ephemeral: bool) -> Callable[[], float]:
        def run() -> float:
            repo = seeded_repository()
            with no_gc():
                began = time.perf_counter()
                for name in names:
                    repo.parallel_reality(name, ephemeral=ephemeral)
                elapsed = time.perf_counter() - began
            assert len(repo.realities()) == count
            return elapsed
        return run

    def git_update_ref() -> float:
        scratch = tmpfs_dir("govc-bench-refs-")
        try:
            git_cmd("init", "-q", "--bare", str(scratch), cwd=scratch)
            empty_tree = git_cmd("mktree", cwd=scratch, stdin=b"").decode().strip()
            root = git_cmd("commit-tree", "-m", "root", empty_tree, cwd=scratch).decode().strip()
            stdin = "start\n" + "".join(f"create refs/realities/{n} {root}\n" for n in names) + "commit\n"
            began = time.perf_counter()
            git_cmd("update-ref", "--stdin", cwd=scratch, stdin=stdin.encode())
            elapsed = time.perf_counter() - began
            assert len(git_cmd("for-each-ref", "refs/realities/", cwd=scratch).splitlines()) == count
            return elapsed
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    cases: dict[str, Callable[[], float]] = {
        "one_call_ephemeral": one_call,
        "separate_calls_ephemeral": separate(True),
        "separate_calls_branch_refs": separate(False),
    }
    if shutil.which("git"):
        cases["git_update_ref_stdin"] = git_update_ref
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():
        fn()  # warm-up: imports, caches, first allocation of the ref store's structures
    for _ in range(rounds):
        for key, fn in cases.items():
            samples[key].append(fn())
    out: dict[str, Any] = {"count": count, "rounds": rounds}
    for key, values in samples.items():
        med = statistics.median(values)
        out[key] = {"median_ms": med * 1e3, "min_ms": min(values) * 1e3, "per_second": count / med,
                    "samples_ms": [v * 1e3 for v in values]}
    return out


# ----------------------------------------------------------------------------------------------
# (b) transactions


def base_files() -> dict[str, bytes]:
    padding = "# padding\n" * 12  # ~200-byte files, like small config files
    return {f"svc{d}/conf{f}.yaml": f"service: svc{d}\nfile: {f}\nreplicas: 1\n{padding}".encode()
            for d in range(DIRS) for f in range(FILES_PER_DIR)}


def workload(n: int) -> list[tuple[str, bytes, str]]:
    """N commits, each changing one file (round robin over the tree) to a new, unique content."""
    paths = sorted(base_files())
    out = []
    for i in range(n):
        path = paths[i % len(paths)]
        out.append((path, f"service: {path}\nreplicas: {i % 7 + 1}\nrevision: {i}\n".encode()
                    + b"# padding\n" * 12, f"change {i}: {path}"))
    return out


def run_govc(commits: list[tuple[str, bytes, str]]) -> float:
    repo = govc.Repository("bench")
    with repo.transaction("main", author=AUTHOR) as tx:
        for path, content in base_files().items():
            tx.write(path, content)
        tx.commit("base")
    with no_gc():
        began = time.perf_counter()
        for path, content, message in commits:
            with repo.transaction("main", author=AUTHOR) as tx:
                tx.write(path, content)
                tx.commit(message)
        elapsed = time.perf_counter() - began
    last_path, last_content, last_message = commits[-1]
    assert repo.reality("main").read(last_path) == last_content
    assert repo.log("main", limit=1)[0].message.strip() == last_message
    return elapsed


def fast_import_stream(commits: list[tuple[str, bytes, str]] | None, when: int) -> bytes:
    """The base commit (``commits`` None) or the measured commits, as a git fast-import stream."""
    out = bytearray()

    def data(blob: bytes) -> None:
        out.extend(b"data %d\n" % len(blob))
        out.extend(blob)
        out.extend(b"\n")

    header = f"committer {AUTHOR} {when} +0000\n".encode()
    if commits is None:
        out += b"commit refs/heads/main\n" + header
        data(b"base")
        for path, content in base_files().items():
            out += f"M 100644 inline {path}\n".encode()
            data(content)
        return bytes(out)
    for i, (path, content, message) in enumerate(commits):
        out += b"commit refs/heads/main\n" + header
        data(message.encode())
        if i == 0:
            out += b"from refs/heads/main^0\n"
        out += f"M 100644 inline {path}\n".encode()
        data(content)
    out += b"done\n"
    return bytes(out)


def run_fast_import(commits: list[tuple[str, bytes, str]]) -> float:
    scratch = tmpfs_dir("govc-bench-fi-")
    try:
        git_cmd("init", "-q", "--bare", str(scratch), cwd=scratch)
        git_cmd("fast-import", "--quiet", cwd=scratch, stdin=fast_import_stream(None, 1_700_000_000))
        stream = fast_import_stream(commits, 1_700_000_000)
        began = time.perf_counter()
        subprocess.run(["git", "fast-import", "--quiet", "--done"], cwd=scratch, input=stream,
                       env=clean_env(), check=True, capture_output=True, timeout=300)
        elapsed = time.perf_counter() - began
        count = git_cmd("rev-list", "--count", "main", cwd=scratch).decode().strip()
        assert int(count) == len(commits) + 1, count
        return elapsed
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_dulwich(commits: list[tuple[str, bytes, str]]) -> float:
    """The same commits with dulwich's in-memory repository, trees maintained by hand (the fastest
    way dulwich offers: no index, no working tree)."""
    from dulwich.objects import Blob, Commit, Tree
    from dulwich.repo import MemoryRepo

    repo = MemoryRepo()
    store = repo.object_store
    ref = b"refs/heads/main"
    author = AUTHOR.encode()
    subtrees: dict[bytes, Tree] = {}
    root = Tree()

    def make_commit(tree: bytes, parents: list[bytes], message: str) -> bytes:
        commit = Commit()
        commit.tree = tree
        commit.parents = parents
        commit.author = commit.committer = author
        commit.author_time = commit.commit_time = int(time.time())
        commit.author_timezone = commit.commit_timezone = 0
        commit.message = message.encode()
        store.add_object(commit)
        return commit.id

    for path, content in base_files().items():
        directory, name = path.encode().split(b"/")
        blob = Blob.from_string(content)
        store.add_object(blob)
        subtrees.setdefault(directory, Tree())[name] = (0o100644, blob.id)
    for directory, tree in subtrees.items():
        store.add_object(tree)
        root[directory] = (0o040000, tree.id)
    store.add_object(root)
    head = make_commit(root.id, [], "base")
    repo.refs[ref] = head

    with no_gc():
        began = time.perf_counter()
        for path, content, message in commits:
            directory, name = path.encode().split(b"/")
            blob = Blob.from_string(content)
            store.add_object(blob)
            sub = subtrees[directory]
            sub[name] = (0o100644, blob.id)
            store.add_object(sub)
            root[directory] = (0o040000, sub.id)
            store.add_object(root)
            new = make_commit(root.id, [head], message)
            if not repo.refs.set_if_equals(ref, head, new):
                raise RuntimeError("ref moved")
            head = new
        elapsed = time.perf_counter() - began
    assert repo.refs[ref] == head
    return elapsed


def bench_transactions(n: int, rounds: int) -> dict[str, Any]:
    commits = workload(n)
    runners: dict[str, Callable[[list[tuple[str, bytes, str]]], float]] = {
        "govc": run_govc, "dulwich": run_dulwich,
    }
    if shutil.which("git"):
        runners["fast-import"] = run_fast_import
    for fn in runners.values():
        fn(commits[: max(50, n // 20)])  # warm-up
    samples: dict[str, list[float]] = {k: [] for k in runners}
    order = list(runners)
    for rnd in range(rounds):
        for key in order[rnd % len(order):] + order[: rnd % len(order)]:  # rotate who goes first
            log(f"  transactions round {rnd + 1}/{rounds}: {key}")
            samples[key].append(runners[key](commits))
    out: dict[str, Any] = {"commits": n, "rounds": rounds}
    for key, values in samples.items():
        med = statistics.median(values)
        out[key] = {"median_s": med, "commits_per_s": n / med, "samples_s": values}
    for baseline in ("fast-import", "dulwich"):
        if baseline in samples:
            # rate ratio govc / baseline = baseline time / govc time, per round
            ratios = [b / g for g, b in zip(samples["govc"], samples[baseline], strict=True)]
            out[f"govc_over_{baseline.replace('-', '_')}"] = statistics.median(ratios)
    return out


# ----------------------------------------------------------------------------------------------
# (c) time travel


def bench_time_travel(history: int, reads: int) -> dict[str, Any]:
    repo = govc.Repository("history")
    with repo.transaction("main", author=AUTHOR) as tx:
        for path, content in base_files().items():
            tx.write(path, content)
        tx.commit("base")
    moments: list[tuple[float, bytes]] = []
    for path, content, message in workload(history):
        with repo.transaction("main", author=AUTHOR) as tx:
            tx.write("app.conf", content)  # one file rewritten every commit: a deep history for it
            tx.write(path, content)
            tx.commit(message)
        moments.append((time.time(), content))
    rng = random.Random(7)

    # Warm snapshot: what a debugging session does — one moment, many reads.
    when, expected = moments[history // 2]
    snapshot = repo.time_travel(when)
    assert snapshot.read("app.conf") == expected
    warm: list[int] = []
    with no_gc():
        for _ in range(reads):
            began = time.perf_counter_ns()
            snapshot.read("app.conf")
            warm.append(time.perf_counter_ns() - began)

    # A new moment each time: construct the snapshot, find where main pointed then, read. First
    # every moment once, in random order: nothing about that commit has been read before, so its
    # trees are parsed from the store (inflated) — the first question about a moment.
    order = list(range(history))
    rng.shuffle(order)
    first: list[int] = []
    with no_gc():
        for i in order:
            when, _ = moments[i]
            began = time.perf_counter_ns()
            repo.time_travel(when).read("app.conf")
            first.append(time.perf_counter_ns() - began)
    # Then random moments again: the trees are cached, the snapshot itself is new every time.
    picks = [rng.randrange(history) for _ in range(reads // 4)]
    again: list[int] = []
    with no_gc():
        for i in picks:
            when, _ = moments[i]
            began = time.perf_counter_ns()
            repo.time_travel(when).read("app.conf")
            again.append(time.perf_counter_ns() - began)
    for i in picks[:100]:  # the answers are right (checked outside the timing)
        when, expected = moments[i]
        assert repo.time_travel(when).read("app.conf") == expected

    # For context: reading the same file at the current tip.
    tip = repo.reality("main")
    current: list[int] = []
    with no_gc():
        for _ in range(reads):
            began = time.perf_counter_ns()
            tip.read("app.conf")
            current.append(time.perf_counter_ns() - began)

    def stats(values: list[int]) -> dict[str, float]:
        ordered = sorted(values)
        return {"median_us": statistics.median(ordered) / 1e3, "p99_us": percentile(ordered, 0.99) / 1e3,
                "samples": len(values)}

    return {"history": history, "snapshot_read": stats(warm), "time_travel_and_first_read": stats(first),
            "time_travel_and_read": stats(again), "reality_read_at_tip": stats(current)}


# ----------------------------------------------------------------------------------------------
# report


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def markdown(result: dict[str, Any]) -> str:
    m, r, t, h = result["machine"], result["realities"], result["transactions"], result["time_travel"]
    n = r["count"]
    lines = [
        f"# govc Python API benchmark — {m['date']}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}; {m['git']}; Python {m['python']}; "
        f"dulwich {m['dulwich']}; govc {m['govc_revision']}.",
        "",
        "| measurement | result | goal | met |",
        "|---|---|---|---|",
    ]

    def reality_row(key: str, label: str, goal: str, limit: float | None) -> None:
        if key not in r:
            return
        row = r[key]
        met = "" if limit is None else verdict(row["median_ms"] < limit)
        lines.append(f"| {label} | {row['median_ms']:.2f} ms ({row['per_second']:,.0f}/s; best "
                     f"{row['min_ms']:.2f} ms) | {goal} | {met} |")

    reality_row("one_call_ephemeral", f"{n} ephemeral realities, one `parallel_realities` call",
                "< 10 ms (ideally < 1 ms)", 10.0)
    reality_row("separate_calls_ephemeral", f"{n} `parallel_reality` calls (ephemeral)",
                "< 10 ms (ideally < 1 ms)", 10.0)
    reality_row("separate_calls_branch_refs", f"{n} `parallel_reality` calls (kept refs)", "context", None)
    reality_row("git_update_ref_stdin", f"stock git: `git update-ref --stdin`, {n} refs in one transaction "
                "(tmpfs)", "context", None)

    lines.append(f"| {t['commits']} one-file commits, `repo.transaction` (memory) | "
                 f"{t['govc']['commits_per_s']:,.0f} commits/s | | |")
    if "fast-import" in t:
        lines.append(f"| same commits, `git fast-import` on tmpfs (whole process) | "
                     f"{t['fast-import']['commits_per_s']:,.0f} commits/s | | |")
    lines.append(f"| same commits, dulwich `MemoryRepo` | {t['dulwich']['commits_per_s']:,.0f} commits/s "
                 "| | |")
    if "govc_over_fast_import" in t:
        ratio = t["govc_over_fast_import"]
        lines.append(f"| govc ÷ fast-import (commit rate) | {ratio:.2f}x | ≥ 2x | {verdict(ratio >= 2)} |")
    lines.append(f"| govc ÷ dulwich (commit rate) | {t['govc_over_dulwich']:.2f}x | context | |")

    s, f, c, cur = (h["snapshot_read"], h["time_travel_and_first_read"], h["time_travel_and_read"],
                    h["reality_read_at_tip"])
    lines.append(f"| `snapshot.read(path)`, {h['history']}-commit history | median {s['median_us']:.1f} µs, "
                 f"p99 {s['p99_us']:.1f} µs | ≤ 10 µs | {verdict(s['median_us'] <= 10)} |")
    lines.append(f"| `repo.time_travel(t)` + read, each moment for the first time (trees inflated) | "
                 f"median {f['median_us']:.1f} µs, p99 {f['p99_us']:.1f} µs | context | |")
    lines.append(f"| `repo.time_travel(t)` + read, random t again (trees cached) | "
                 f"median {c['median_us']:.1f} µs, p99 {c['p99_us']:.1f} µs | context | |")
    lines.append(f"| `Reality.read(path)` at the tip | median {cur['median_us']:.1f} µs, "
                 f"p99 {cur['p99_us']:.1f} µs | context | |")
    lines += [
        "",
        f"Realities: median of {r['rounds']} rounds, each on a fresh repository. Commits: median of "
        f"{t['rounds']} interleaved rounds; ratios are medians of per-round ratios of commit rates "
        "(> 1: govc is faster). fast-import's time includes starting the process and writing its pack "
        "and index; govc's and dulwich's commits stay in memory. Latencies are per call "
        "(`perf_counter_ns`), the garbage collector paused while timing.",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--commits", type=int, default=2000, help="commits per transaction run (default 2000)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the commit benchmark")
    p.add_argument("--reality-rounds", type=int, default=25, help="rounds of each reality benchmark")
    p.add_argument("--realities", type=int, default=1000, help="realities per run (default 1000)")
    p.add_argument("--history", type=int, default=1000, help="commits in the time-travel history")
    p.add_argument("--reads", type=int, default=20000, help="timed reads per latency figure")
    p.add_argument("--out", type=Path, default=HERE / "results", help="where api.json and api.md go")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    log("(a) realities")
    realities = bench_realities(args.realities, args.reality_rounds)
    log("(b) transactions")
    transactions = bench_transactions(args.commits, args.rounds)
    log("(c) time travel")
    time_travel = bench_time_travel(args.history, args.reads)
    params = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result = {"machine": machine_info(ROOT), "params": params, "realities": realities,
              "transactions": transactions, "time_travel": time_travel,
              "seconds": round(time.monotonic() - started, 1)}
    text = markdown(result)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "api.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "api.md").write_text(text)
    log(f"wrote {args.out / 'api.json'} and {args.out / 'api.md'} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
