"""Load: several processes clone, fetch and push against one ``govc serve`` for a bounded time.

Each worker process is a CI client with its own access token (the server runs ``--auth`` with its
default limits, which such a fan-out must never trip). A worker repeats, until the time is up:

* push a commit to its own branch (always a fast-forward);
* fetch into a separate clone that never pushes (so there is always something new: that push);
* clone the repository afresh;
* push a commit to the one branch every worker shares; when another worker got there first,
  fetch, rebase and push again.

Zero errors are allowed. The report (operations per second, latency percentiles per kind) is
printed and written to ``benchmarks/results/load.md``. Finally ``/metrics`` is scraped and its
clone, fetch and push counters must equal what the workers did — every git command that moved
a pack is counted once, on both sides.

``GOVC_LOAD_SECONDS`` (default 20) and ``GOVC_LOAD_WORKERS`` (default 4) lengthen or widen it.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import re
import shutil
import statistics
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from interop.conftest import BASE_CONFIG, IDENTITY, REPO_ROOT, TARGET_ENV, Git
from interop.test_persistence import GovcServe

pytestmark = pytest.mark.skipif(
    (os.environ.get(TARGET_ENV, "govc").strip() or "govc") != "govc",
    reason="the load test reads govc's own metrics",
)

SECONDS = float(os.environ.get("GOVC_LOAD_SECONDS", "20"))
WORKERS = int(os.environ.get("GOVC_LOAD_WORKERS", "4"))
SHARED = "shared"
MAX_SHARED_ATTEMPTS = 50
REPORT = REPO_ROOT / "benchmarks" / "results" / "load.md"
#: Seed content: real source files (the standard library's), so packs look like real ones.
CORPUS = ("json", "email", "http", "urllib", "logging")


@dataclass
class Op:
    kind: str  # clone, fetch, push, push-shared
    seconds: float
    result: str  # ok, rejected (by the server), stale (refused by git before sending: fetch first)


@dataclass
class WorkerResult:
    ops: list[Op] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    began: float = 0.0  # wall clock, comparable across processes
    ended: float = 0.0


def _git_env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
            "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", **IDENTITY}


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    config = [arg for option in BASE_CONFIG for arg in ("-c", option)]
    return subprocess.run(["git", *config, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def worker(index: int, url: str, workdir: str, seconds: float) -> WorkerResult:
    """One client: runs in its own process (multiprocessing, spawn)."""
    root = Path(workdir)
    root.mkdir(parents=True)
    env = _git_env(root)
    out = WorkerResult(began=time.time())

    def git(kind: str | None, argv: list[str], cwd: Path = root) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        done = _run(argv, cwd, env)
        if kind is not None and done.returncode == 0:
            out.ops.append(Op(kind, time.monotonic() - started, "ok"))
        elif kind is not None and kind != "push-shared":
            out.errors.append(f"worker {index}: git {' '.join(argv)}: {done.stderr.strip()[-500:]}")
        return done

    mine = f"w{index}"
    pusher, fetcher, shared = root / "pusher", root / "fetcher", root / "shared"
    for where in (pusher, fetcher, shared):
        git("clone", ["clone", "-q", url, str(where)])
    git(None, ["checkout", "-q", "-b", mine], pusher)
    git(None, ["checkout", "-q", "-B", SHARED, f"origin/{SHARED}"], shared)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline and not out.errors:
        n += 1
        (pusher / f"{mine}.txt").write_text(f"{mine} change {n}\n" * (n % 7 + 1))
        git(None, ["commit", "-q", "-a" if n > 1 else "--allow-empty", "-m", f"{mine} {n}"], pusher)
        if n == 1:
            git(None, ["add", f"{mine}.txt"], pusher)
            git(None, ["commit", "-q", "-m", f"{mine} file"], pusher)
        git("push", ["push", "-q", "origin", mine], pusher)
        git("fetch", ["fetch", "-q", "origin"], fetcher)
        clone = root / f"clone-{n}"
        git("clone", ["clone", "-q", url, str(clone)])
        shutil.rmtree(clone, ignore_errors=True)
        (shared / f"{mine}.log").write_text(f"{n}\n")
        git(None, ["add", f"{mine}.log"], shared)
        git(None, ["commit", "-q", "-m", f"{mine} shared {n}"], shared)
        for _attempt in range(MAX_SHARED_ATTEMPTS):
            started = time.monotonic()
            done = _run(["push", "-q", "--porcelain", "origin", SHARED], shared, env)
            took = time.monotonic() - started
            if done.returncode == 0:
                out.ops.append(Op("push-shared", took, "ok"))
                break
            text = done.stdout + done.stderr
            if "[remote rejected]" in text or re.search(r"^!.*\(failed to update ref\)", text, re.M):
                out.ops.append(Op("push-shared", took, "rejected"))
            elif "[rejected]" in text or re.search(r"^!.*(fetch first|non-fast-forward)", text, re.M):
                out.ops.append(Op("push-shared", took, "stale"))
            else:
                out.errors.append(f"worker {index}: push to {SHARED}: {text.strip()[-500:]}")
                break
            git("fetch", ["fetch", "-q", "origin", SHARED], shared)
            rebased = git(None, ["rebase", "-q", f"origin/{SHARED}"], shared)
            if rebased.returncode != 0:
                out.errors.append(f"worker {index}: rebase: {rebased.stderr.strip()[-500:]}")
                break
        else:
            out.errors.append(f"worker {index}: {SHARED} still behind after {MAX_SHARED_ATTEMPTS} attempts")
    out.ended = time.time()
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _scrape(base: str, token: str) -> dict[str, float]:
    import base64

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    auth = base64.b64encode(f"x:{token}".encode()).decode()
    request = urllib.request.Request(f"{base}/metrics", headers={"Authorization": f"Basic {auth}"})
    with opener.open(request, timeout=30) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            values[series] = float(value)
    return values


def _tokens(data: Path, names: list[str]) -> list[str]:
    """Write tokens for ``names`` (what ``govc token create`` does) before the server starts."""
    from govc.auth import TokenStore
    from storage.disk import DataDirectory

    store = TokenStore(DataDirectory(data))
    return [store.create(name, access="write")[1] for name in names]


def _seed(git: Git, work: Path, url: str) -> None:
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    git("init", "-q", "-b", "main", work)
    for package in CORPUS:
        for source in sorted((stdlib / package).glob("*.py")):
            target = work / package / source.name
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(source.read_bytes())
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "seed: a slice of the standard library", cwd=work)
    git("push", "-q", url, "main", f"main:{SHARED}", cwd=work)


def _row(name: str, times: list[float], elapsed: float) -> str:
    ms = [t * 1000 for t in times]
    cells = [f"{_percentile(ms, q):.0f}" for q in (0.5, 0.9, 0.99)]
    return f"| {name} | {len(ms)} | {len(ms) / elapsed:.1f} | {' | '.join(cells)} | {max(ms):.0f} |"


def _counted(metrics: dict[str, float], op: str, result: str = "ok") -> int:
    return int(metrics.get(f'govc_git_operations_total{{operation="{op}",result="{result}"}}', 0))


def _report(ops: list[Op], elapsed: float, workers: int, metrics: dict[str, float], size: int,
            load: float) -> str:
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    limited = sum(v for k, v in metrics.items() if k.startswith("govc_limited_requests_total"))
    shared = [o for o in ops if o.kind == "push-shared"]
    lines = [
        "# Load test", "",
        f"`interop/test_load.py`: {workers} worker processes, each a client with its own token, against "
        f"one `govc serve --auth` (default limits) on 127.0.0.1 for {elapsed:.1f} s. Every worker loops: "
        "push to its own branch, fetch into a clone that never pushes, clone afresh, push to a branch all "
        "workers share (fetch + rebase + push again when another worker got there first). Zero errors "
        "allowed.", "",
        f"Machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}, {git_version}. Repository: {size} files of the standard library "
        f"({', '.join(CORPUS)}). Load average when the run began: {load:.1f} (other work "
        "on the machine slows every number here). Latencies are whole git commands (process start "
        "included), as the client sees them.", "",
        "| operation | count | per second | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in ("clone", "fetch", "push", "push-shared"):
        times = [o.seconds for o in ops if o.kind == kind]
        if times:
            lines.append(_row(kind, times, elapsed))
    lines.append(_row("**all**", [o.seconds for o in ops], elapsed))
    server = ", ".join(f"{op} {_counted(metrics, op)} ({_mean(metrics, op) * 1000:.0f} ms mean)"
                       for op in ("clone", "fetch", "push"))
    lines += [
        "",
        f"Shared-branch pushes: {sum(o.result == 'ok' for o in shared)} landed, "
        f"{sum(o.result == 'stale' for o in shared)} refused by git itself (fetch first), "
        f"{sum(o.result == 'rejected' for o in shared)} lost the compare-and-swap on the server.",
        "",
        f"Server side (`/metrics` after the run, time inside the server): {server}; resident memory "
        f"{metrics.get('process_resident_memory_bytes', 0) / 2**20:.0f} MiB; requests refused by the "
        f"limits: {int(limited)}.",
        "",
    ]
    return "\n".join(lines)


def _mean(metrics: dict[str, float], op: str) -> float:
    count = metrics.get(f'govc_git_operation_seconds_count{{operation="{op}"}}', 0)
    return metrics.get(f'govc_git_operation_seconds_sum{{operation="{op}"}}', 0) / count if count else 0.0


def test_load(git_home: Path, tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("needs the git binary")
    data = tmp_path / "data"
    tokens = _tokens(data, [f"ci-{i}" for i in range(WORKERS + 1)])
    server = GovcServe(tmp_path / "server.log", "--data", str(data), "--auth", "--quiet")
    server.start()
    try:
        url = server.url("load")
        seeder = Git(git_home, 0)
        _seed(seeder, tmp_path / "seed", url.replace("http://", f"http://seed:{tokens[-1]}@"))
        size = sum(1 for p in (tmp_path / "seed").rglob("*.py"))
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        context = multiprocessing.get_context("spawn")
        with context.Pool(WORKERS) as pool:
            jobs = [pool.apply_async(worker, (i, url.replace("http://", f"http://ci-{i}:{tokens[i]}@"),
                                              str(tmp_path / f"worker-{i}"), SECONDS))
                    for i in range(WORKERS)]
            results = [job.get(timeout=SECONDS + 240) for job in jobs]
        elapsed = max(r.ended for r in results) - min(r.began for r in results)
        metrics = _scrape(server.base_url, tokens[-1])
        assert server.stop() == 0
    finally:
        if server.process is not None:
            server.stop()
    errors = [e for r in results for e in r.errors]
    assert not errors, "\n".join(errors) + "\n" + server.output()[-5000:]
    ops = [o for r in results for o in r.ops]
    report = _report(ops, elapsed, WORKERS, metrics, size, load)
    print("\n" + report)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(report)

    def did(kind: str, result: str = "ok") -> int:
        return sum(1 for o in ops if o.kind == kind and o.result == result)

    def counted(op: str, result: str = "ok") -> int:
        return _counted(metrics, op, result)

    assert counted("clone") == did("clone")
    assert counted("fetch") == did("fetch")
    assert counted("push") == did("push") + did("push-shared") + 1  # and the seeding push
    assert counted("push", "rejected") == did("push-shared", "rejected")
    assert counted("push", "error") == 0 and counted("clone", "error") == 0 and counted("fetch", "error") == 0
    assert sum(v for k, v in metrics.items() if k.startswith("govc_limited_requests_total")) == 0
    assert did("clone") >= WORKERS * 2 and did("push-shared") >= WORKERS  # it did real work
    assert statistics.mean(o.seconds for o in ops) < 30
