"""What the benchmark measures: stock ``git`` client operations against each server.

Each workload prepares whatever it needs once (untimed), then per (server, round) sets up a fresh
client state (untimed), times exactly one git command, and verifies the result (untimed), so a
server that answers fast but wrongly is reported as failed, not as fast.
"""

from __future__ import annotations

import http.client
import shutil
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gitcmd import CommandError, clean_env, git, kill_group, run, tail
from servers import ALL_REFS, LOG_MARKER, GovcServer, Server, ServerError

T = TypeVar("T")
#: After a command returns, lighttpd may not have reaped its CGI children yet; their CPU time
#: only reaches its counters once it has, so the "after" reading waits this long.
REAP_GRACE = 0.05

# Client-side housekeeping would add noise unrelated to the server under test.
CLIENT_CONFIG = ("-c", "gc.auto=0", "-c", "maintenance.auto=false", "-c", "protocol.version=2")
FETCH_REFSPEC = "+refs/heads/*:refs/remotes/origin/*"
COMMIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench Pusher",
    "GIT_AUTHOR_EMAIL": "pusher@bench.invalid",
    "GIT_AUTHOR_DATE": "1700000000 +0000",
    "GIT_COMMITTER_NAME": "Bench Pusher",
    "GIT_COMMITTER_EMAIL": "pusher@bench.invalid",
    "GIT_COMMITTER_DATE": "1700000000 +0000",
}


class VerifyError(RuntimeError):
    """The command succeeded but the repository it produced is not what the server holds."""


@dataclass
class Sample:
    """One timed run: seconds on success, the error tail on failure, and what else was seen:
    server CPU seconds spent on the operation, bytes received, resident memory (KiB)."""

    seconds: float | None
    error: str | None = None
    bytes_received: int | None = None
    cpu_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """Shared, read-only facts about the corpus and where scratch files go."""

    corpus: Path
    scratch: Path
    timeout: float
    refs: dict[str, str] = field(default_factory=dict)  # refs/heads/* and refs/tags/* -> id

    @property
    def main(self) -> str:
        """Object id of the corpus' main branch."""
        return self.refs["refs/heads/main"]

    def load(self) -> None:
        """Read the corpus refs once; every verification compares against them."""
        self.refs = local_refs(self.corpus, "refs/heads", "refs/tags")


def parse_ls_remote(text: str) -> dict[str, str]:
    """Branches and tags from ``git ls-remote`` output (peeled ``^{}`` lines dropped)."""
    refs: dict[str, str] = {}
    for line in text.splitlines():
        oid, _, name = line.partition("\t")
        if name.startswith(("refs/heads/", "refs/tags/")) and not name.endswith("^{}"):
            refs[name] = oid
    return refs


def local_refs(repo: Path, *prefixes: str) -> dict[str, str]:
    """Refs of a local repository under ``prefixes``, as refname -> id."""
    out = git("for-each-ref", "--format=%(objectname) %(refname)", *prefixes, cwd=repo)
    return {name: oid for oid, name in (line.split(" ", 1) for line in out.splitlines())}


def pack_bytes(repo: Path) -> int:
    """Size of the packs in a fresh clone: what was received over the wire, minus HTTP framing."""
    return sum(p.stat().st_size for p in (repo / "objects" / "pack").glob("*.pack"))


def timed_git(ctx: Context, *args: str, cwd: Path | None = None) -> float:
    """Run one client git command with the benchmark's client config and return wall seconds."""
    return run(["git", *CLIENT_CONFIG, *args], cwd=cwd, timeout=ctx.timeout).seconds


def with_cpu(server: Server, operation: Callable[[], T]) -> tuple[T, float | None]:
    """Run ``operation`` and return its result with the server CPU seconds it cost."""
    before = server.cpu_seconds()
    result = operation()
    time.sleep(REAP_GRACE)
    after = server.cpu_seconds()
    cpu = None if before is None or after is None else round(after - before, 3)
    return result, cpu


class Workload(ABC):
    """A named client operation measured against every server."""

    name = "workload"
    description = ""

    def prepare(self, ctx: Context) -> None:
        """Build client-side templates once, before any timing (default: nothing)."""
        return None  # optional hook

    @abstractmethod
    def measure(self, ctx: Context, server: Server, rnd: int, work: Path) -> Sample:
        """Set up in ``work``, time the operation, verify; raise on failure."""

    def execute(self, ctx: Context, server: Server, rnd: int) -> Sample:
        """Run :meth:`measure`, turning any failure into a 'failed' sample with context."""
        if server.error is not None:
            return Sample(None, server.error)
        work = ctx.scratch / f"{self.name}-{server.name}-r{rnd}"
        try:
            return self.measure(ctx, server, rnd, work)
        except (CommandError, VerifyError, OSError, ValueError, KeyError) as exc:
            state = server.alive() or "server still running"
            return Sample(None, f"{exc}\n[{state}]\n{LOG_MARKER}\n{server.log_tail()}")
        finally:
            shutil.rmtree(work, ignore_errors=True)


def clone_into(ctx: Context, url: str, work: Path) -> float:
    """Time a bare clone of ``url`` into ``work`` and check every branch and tag arrived."""
    seconds = timed_git(ctx, "clone", "--bare", "--quiet", url, str(work))
    got = local_refs(work, "refs/heads", "refs/tags")
    if got != ctx.refs:
        raise VerifyError(f"clone refs differ from corpus: {diff_refs(ctx.refs, got)}")
    return seconds


class WarmClone(Workload):
    """``git clone --bare`` of the whole corpus from a server that has served the same clone
    before (CI fan-out: many runners cloning the same refs)."""

    name = "clone-warm"
    description = "full bare clone (all branches and tags), the same clone served before"

    def __init__(self) -> None:
        """Servers that have already served one clone in this run."""
        self.warmed: set[str] = set()

    def measure(self, ctx: Context, server: Server, rnd: int, work: Path) -> Sample:
        """An untimed clone first if this server never served one, then the timed clone."""
        if server.name not in self.warmed:
            clone_into(ctx, server.url("corpus"), work.with_name(work.name + "-first"))
            shutil.rmtree(work.with_name(work.name + "-first"), ignore_errors=True)
            self.warmed.add(server.name)
        seconds, cpu = with_cpu(server, lambda: clone_into(ctx, server.url("corpus"), work))
        return Sample(seconds, bytes_received=pack_bytes(work), cpu_seconds=cpu)


class ColdClone(Workload):
    """``git clone --bare`` from a server process started just before (data loaded, nothing
    served yet), a new process every round. For govc this also measures the resident memory
    the loaded repository adds: RSS of the loaded server minus RSS of one with no data."""

    name = "clone-cold"
    description = "full bare clone from a freshly started server process (data loaded, no request served)"

    def __init__(self) -> None:
        """Cold copies are made on first use, one per server, and restarted every round."""
        self.copies: dict[str, Server] = {}
        self.empty_rss: dict[str, int | None] = {}

    def cold(self, ctx: Context, server: Server) -> Server:
        """The cold sibling of ``server`` (made once; it serves the same corpus)."""
        if server.name not in self.copies:
            self.copies[server.name] = server.cold_copy(ctx.scratch / "cold")
            self.empty_rss[server.name] = empty_rss(ctx, server)
        return self.copies[server.name]

    def measure(self, ctx: Context, server: Server, rnd: int, work: Path) -> Sample:
        """Start the cold copy (untimed), read its RSS, time the clone, read RSS again, stop."""
        cold = self.cold(ctx, server)
        cold.start()
        try:
            if cold.error is not None:
                raise ServerError(cold.error)
            loaded = cold.memory_kib("VmRSS")
            seconds, cpu = with_cpu(cold, lambda: clone_into(ctx, cold.url("corpus"), work))
            after = cold.memory_kib("VmRSS")
        finally:
            cold.stop()
        extra = {"rss_loaded_kib": loaded, "rss_after_clone_kib": after,
                 "rss_empty_kib": self.empty_rss.get(server.name)}  # fmt: skip
        return Sample(seconds, bytes_received=pack_bytes(work), cpu_seconds=cpu, extra=extra)


def empty_rss(ctx: Context, server: Server) -> int | None:
    """RSS (KiB) of the same server started with no repository at all (govc only: the others
    load nothing at start-up, so the difference would say nothing)."""
    if not isinstance(server, GovcServer):
        return None
    empty = GovcServer(ctx.scratch / "cold", server.corpus, server.timeout, server.python,
                       label="govc-empty", seed_repos=())  # fmt: skip
    empty.start()
    try:
        return empty.memory_kib("VmRSS") if empty.error is None else None
    finally:
        empty.stop()


class ConcurrentClones(Workload):
    """``n`` bare clones of the corpus started at once; the time is until the last one ends."""

    def __init__(self, n: int) -> None:
        """``n`` simultaneous clients."""
        self.n = n
        self.name = f"clone-{n}"
        self.description = f"{n} concurrent full bare clones, total wall time"

    def measure(self, ctx: Context, server: Server, rnd: int, work: Path) -> Sample:
        """Start every clone, wait for all, verify each."""
        work.mkdir(parents=True)
        dests = [work / f"c{i}" for i in range(self.n)]

        def all_clones() -> float:
            started = time.perf_counter()
            procs = [
                subprocess.Popen(
                    ["git", *CLIENT_CONFIG, "clone", "--bare", "--quiet", server.url("corpus"), str(d)],
                    env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, start_new_session=True,
                )
                for d in dests
            ]  # fmt: skip
            errors = []
            deadline = started + ctx.timeout
            for proc in procs:
                try:
                    _, err = proc.communicate(timeout=max(deadline - time.perf_counter(), 1))
                except subprocess.TimeoutExpired:
                    errors.append("timed out")
                    continue
                finally:
                    kill_group(proc, grace=1.0)
                if proc.returncode != 0:
                    errors.append(tail(err.decode(errors="replace")))
            if errors:
                raise CommandError(f"{len(errors)}/{self.n} clones failed: {errors[0]}")
            return time.perf_counter() - started

        seconds, cpu = with_cpu(server, all_clones)
        for dest in dests:
            got = local_refs(dest, "refs/heads", "refs/tags")
            if got != ctx.refs:
                raise VerifyError(f"{dest.name}: refs differ from corpus: {diff_refs(ctx.refs, got)}")
        return Sample(seconds, bytes_received=pack_bytes(dests[0]), cpu_seconds=cpu)


def pkt(payload: bytes) -> bytes:
    """One pkt-line."""
    return b"%04x" % (len(payload) + 4) + payload


def first_pack_byte(url: str, wants: list[str], v2: bool, timeout: float) -> tuple[float, float, int]:
    """Send a full-clone fetch request like git's and read the answer; return the seconds until
    the first byte of pack data (side-band 1) arrived, until the whole answer had, and the
    bytes of the answer. Protocol v2 where the server speaks it, else v0."""
    caps = ["thin-pack", "ofs-delta", "no-progress", "include-tag"]
    if v2:
        body = pkt(b"command=fetch\n") + pkt(b"agent=git/2.39.5\n") + b"0001"
        body += b"".join(pkt(f"{c}\n".encode()) for c in caps)
        body += b"".join(pkt(f"want {w}\n".encode()) for w in wants) + pkt(b"done\n") + b"0000"
    else:
        first = f"want {wants[0]} multi_ack_detailed side-band-64k {' '.join(caps)} agent=git/2.39.5\n"
        body = pkt(first.encode()) + b"".join(pkt(f"want {w}\n".encode()) for w in wants[1:])
        body += b"0000" + pkt(b"done\n")
    host, _, rest = url.removeprefix("http://").partition("/")
    conn = http.client.HTTPConnection(host, timeout=timeout)
    headers = {"Content-Type": "application/x-git-upload-pack-request",
               "Accept": "application/x-git-upload-pack-result"}  # fmt: skip
    if v2:
        headers["Git-Protocol"] = "version=2"
    started = time.perf_counter()
    conn.request("POST", f"/{rest}/git-upload-pack", body=body, headers=headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise CommandError(f"upload-pack answered HTTP {resp.status}")
    first_data: float | None = None
    total = 0
    while True:
        head = resp.read(4)
        if len(head) < 4:
            break
        total += 4
        size = int(head, 16)
        if size <= 4:
            continue
        payload = resp.read(size - 4)
        total += len(payload)
        if first_data is None and payload[:1] == b"\x01" and len(payload) > 1:
            first_data = time.perf_counter() - started
    elapsed = time.perf_counter() - started
    conn.close()
    if first_data is None:
        raise VerifyError("the answer held no pack data")
    return first_data, elapsed, total


class TimeToFirstByte(Workload):
    """Seconds from sending a full-clone request to the first byte of pack data."""

    def __init__(self, cold: ColdClone | None) -> None:
        """With ``cold`` (the cold-clone workload, whose cold copies it reuses) the request goes
        to a server started just before; else to the long-running one."""
        self.cold_clone = cold
        self.name = "ttfb-cold" if cold else "ttfb-warm"
        self.description = (
            "time to the first pack byte of a full clone, from a freshly started server"
            if cold
            else "time to the first pack byte of a full clone served before"
        )

    def measure(self, ctx: Context, server: Server, rnd: int, work: Path) -> Sample:
        """The raw request; total time and bytes of the answer go in ``extra``."""
        wants = sorted(set(ctx.refs.values()))
        v2 = server.protocol() == "v2"
        if self.cold_clone is None:
            (ttfb, total, size), cpu = with_cpu(
                server, lambda: first_pack_byte(server.url("corpus"), wants, v2, ctx.timeout))
            return Sample(ttfb, cpu_seconds=cpu, extra={"answer_s": total, "answer_bytes": size})
        cold = self.cold_clone.cold(ctx, server)
        cold.start()
        try:
            if cold.error is not None:
                raise ServerError(cold.error)
            (ttfb, total, size), cpu = with_cpu(
                cold, lambda: first_pack_byte(cold.url("corpus"), wants, v2, ctx.timeout))
        finally:
            cold.stop()
        return Sample(ttfb, cpu_seconds=cpu, extra={"answer_s": total, "answer_bytes": size})


class Fetch(Workload):
    """``git fetch`` from a client that is ``behind`` commits behind the server's main."""

    def __init__(self, behind: int) -> None:
        """``behind=0`` is the no-op fetch: refs are already current."""
        self.behind = behind
        self.name = f"fetch-{behind}" if behind else "fetch-noop"
        self.description = (
            f"fetch into a clone whose main is {behind} commit(s) behind"
            if behind
            else "fetch into an up-to-date clone (ref negotiation only)"
        )
        self.template: Path | None = None

    def prepare(self, ctx: Context) -> None:
        """Make a client repository holding only what a clone taken N commits ago holds."""
        self.template = make_client_template(ctx, self.behind)

    def measure(self, ctx: Context, server: Server, rnd: int, work: Path) -> Sample:
        """Copy the template, point it at the server, time ``git fetch origin``."""
        assert self.template is not None
        shutil.copytree(self.template, work, symlinks=True)
        git("config", "remote.origin.url", server.url("corpus"), cwd=work)
        seconds, cpu = with_cpu(server, lambda: timed_git(ctx, "fetch", "--quiet", "origin", cwd=work))
        got = local_refs(work, "refs/remotes/origin/main")
        if got.get("refs/remotes/origin/main") != ctx.main:
            raise VerifyError(f"after fetch origin/main is {got}, expected {ctx.main}")
        return Sample(seconds, cpu_seconds=cpu)


class FullPush(Workload):
    """Push every branch and tag of the corpus into a new, empty repository."""

    name = "push-full"
    description = "push all branches and tags of the corpus into a new empty repository"

    def measure(self, ctx: Context, server: Server, rnd: int, work: Path) -> Sample:
        """Create the empty target (untimed), time the push, compare the server's refs."""
        repo = f"full-r{rnd}"
        server.create_empty(repo)
        args = ["git", "push", "--quiet", server.url(repo), *ALL_REFS]
        seconds, cpu = with_cpu(server, lambda: run(args, cwd=ctx.corpus, timeout=ctx.timeout).seconds)
        got = parse_ls_remote(git("ls-remote", server.url(repo)))
        if got != ctx.refs:
            raise VerifyError(f"server refs after push differ: {diff_refs(ctx.refs, got)}")
        return Sample(seconds, cpu_seconds=cpu)


class SmallPush(Workload):
    """Push one new commit (one edited file) as a new branch of a repository holding the corpus."""

    name = "push-small"
    description = "push 1 new commit (1 file changed) as a new branch to a repo holding the corpus"

    def __init__(self) -> None:
        """The template is an up-to-date clone; the edited file is fixed at prepare time."""
        self.template: Path | None = None
        self.path = ""

    def prepare(self, ctx: Context) -> None:
        """Reuse an up-to-date client and pick a deterministic file to edit."""
        self.template = make_client_template(ctx, 0, name="push-small")
        files = git("ls-tree", "-r", "--name-only", "main", cwd=ctx.corpus).splitlines()
        self.path = sorted(f for f in files if f.endswith(".py"))[0]

    def measure(self, ctx: Context, server: Server, rnd: int, work: Path) -> Sample:
        """Build a commit unique to (server, round) untimed, time its push, check the ref."""
        assert self.template is not None
        shutil.copytree(self.template, work, symlinks=True)
        commit = make_commit(work, self.path, f"{server.name} round {rnd}")
        ref = f"refs/heads/small/{server.name}-r{rnd}"
        url = server.url("small")
        args = ["git", "push", "--quiet", url, f"{commit}:{ref}"]
        seconds, cpu = with_cpu(server, lambda: run(args, cwd=work, timeout=ctx.timeout).seconds)
        got = parse_ls_remote(git("ls-remote", url, ref)).get(ref)
        if got != commit:
            raise VerifyError(f"server has {ref} at {got}, pushed {commit}")
        return Sample(seconds, cpu_seconds=cpu)


def make_client_template(ctx: Context, behind: int, name: str | None = None) -> Path:
    """A bare client repo with the corpus' refs as remote-tracking refs, main ``behind`` back.

    Built by pushing from the corpus so it holds exactly the objects reachable from its refs;
    a copy of the whole corpus would let ``git fetch`` find every object locally and skip the
    transfer we want to measure.  Tags newer than the client's main are left out, as they would
    be for a clone taken back then.
    """
    path = ctx.scratch / f"template-{name or behind}.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(path))
    tip = git("rev-parse", f"main~{behind}" if behind else "main", cwd=ctx.corpus).strip()
    specs = [f"{tip}:refs/remotes/origin/main"]
    for ref in ctx.refs:
        if ref.startswith("refs/heads/") and ref != "refs/heads/main":
            specs.append(f"{ref}:refs/remotes/origin/{ref.removeprefix('refs/heads/')}")
    tags = git("for-each-ref", f"--merged={tip}", "--format=%(refname)", "refs/tags",
               cwd=ctx.corpus).split()  # fmt: skip
    specs += [f"{tag}:{tag}" for tag in tags]
    git("push", "--quiet", str(path), *specs, cwd=ctx.corpus, timeout=ctx.timeout)
    git("config", "remote.origin.fetch", FETCH_REFSPEC, cwd=path)
    git("config", "remote.origin.url", "http://127.0.0.1:9/unset.git", cwd=path)
    return path


def make_commit(repo: Path, path: str, stamp: str) -> str:
    """One commit on top of ``origin/main`` appending a line to ``path`` (plumbing only)."""
    parent = "refs/remotes/origin/main"
    content = git("cat-file", "blob", f"{parent}:{path}", cwd=repo) + f"# pushed by {stamp}\n"
    blob = run(["git", "hash-object", "-w", "--stdin"], cwd=repo, stdin=content).stdout.strip()
    index = {"GIT_INDEX_FILE": str(repo / "bench-index")}
    git("read-tree", parent, cwd=repo, env=index)
    git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", cwd=repo, env=index)
    tree = git("write-tree", cwd=repo, env=index).strip()
    env = clean_env(COMMIT_ENV)
    args = ["git", "commit-tree", tree, "-p", parent, "-m", f"Benchmark push ({stamp})"]
    return run(args, cwd=repo, env=env).stdout.strip()


def diff_refs(want: dict[str, str], got: dict[str, str]) -> str:
    """Short human description of how two ref maps differ."""
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(r for r in set(want) & set(got) if want[r] != got[r])
    return tail(f"missing={missing[:5]} extra={extra[:5]} wrong={wrong[:5]}", 3)


def all_workloads(concurrency: tuple[int, ...] = (8, 32)) -> list[Workload]:
    """Every workload, in the order each round runs them."""
    cold = ColdClone()
    return [
        cold, WarmClone(), *(ConcurrentClones(n) for n in concurrency),
        TimeToFirstByte(cold), TimeToFirstByte(None),
        Fetch(100), Fetch(1), Fetch(0), FullPush(), SmallPush(),
    ]  # fmt: skip


def select(only: str | None, concurrency: tuple[int, ...] = (8, 32)) -> list[Workload]:
    """Filter by ``--only``: names or prefixes, e.g. ``clone,fetch`` or ``fetch-1,push-small``."""
    workloads = all_workloads(concurrency)
    if not only:
        return workloads
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen = [w for w in workloads if any(w.name == x or w.name.startswith(x + "-") for x in wanted)]
    if not chosen:
        names = ", ".join(w.name for w in workloads)
        raise SystemExit(f"--only {only!r} matches no workload (have: {names})")
    return chosen
