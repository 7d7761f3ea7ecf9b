"""What the benchmark measures: stock ``git`` client operations against each server.

Each workload prepares whatever it needs once (untimed), then per (server, round) sets up a fresh
client state (untimed), times exactly one git command, and verifies the result (untimed), so a
server that answers fast but wrongly is reported as failed, not as fast.
"""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from gitcmd import CommandError, clean_env, git, run, tail
from servers import ALL_REFS, LOG_MARKER, Server

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
    """One timed run: seconds on success, the error tail on failure."""

    seconds: float | None
    error: str | None = None
    bytes_received: int | None = None


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


class FullClone(Workload):
    """``git clone --bare`` of the whole corpus into an empty directory."""

    name = "clone"
    description = "full bare clone of the corpus (all branches and tags), protocol v2 requested"

    def measure(self, ctx: Context, server: Server, rnd: int, work: Path) -> Sample:
        """Time the clone, then check every branch and tag arrived."""
        seconds = timed_git(ctx, "clone", "--bare", "--quiet", server.url("corpus"), str(work))
        got = local_refs(work, "refs/heads", "refs/tags")
        if got != ctx.refs:
            raise VerifyError(f"clone refs differ from corpus: {diff_refs(ctx.refs, got)}")
        return Sample(seconds, bytes_received=pack_bytes(work))


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
        seconds = timed_git(ctx, "fetch", "--quiet", "origin", cwd=work)
        got = local_refs(work, "refs/remotes/origin/main")
        if got.get("refs/remotes/origin/main") != ctx.main:
            raise VerifyError(f"after fetch origin/main is {got}, expected {ctx.main}")
        return Sample(seconds)


class FullPush(Workload):
    """Push every branch and tag of the corpus into a new, empty repository."""

    name = "push-full"
    description = "push all branches and tags of the corpus into a new empty repository"

    def measure(self, ctx: Context, server: Server, rnd: int, work: Path) -> Sample:
        """Create the empty target (untimed), time the push, compare the server's refs."""
        repo = f"full-r{rnd}"
        server.create_empty(repo)
        seconds = run(
            ["git", "push", "--quiet", server.url(repo), *ALL_REFS],
            cwd=ctx.corpus,
            timeout=ctx.timeout,
        ).seconds
        got = parse_ls_remote(git("ls-remote", server.url(repo)))
        if got != ctx.refs:
            raise VerifyError(f"server refs after push differ: {diff_refs(ctx.refs, got)}")
        return Sample(seconds)


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
        seconds = run(["git", "push", "--quiet", url, f"{commit}:{ref}"], cwd=work,
                      timeout=ctx.timeout).seconds  # fmt: skip
        got = parse_ls_remote(git("ls-remote", url, ref)).get(ref)
        if got != commit:
            raise VerifyError(f"server has {ref} at {got}, pushed {commit}")
        return Sample(seconds)


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


def all_workloads() -> list[Workload]:
    """Every workload, in the order each round runs them."""
    return [FullClone(), Fetch(100), Fetch(1), Fetch(0), FullPush(), SmallPush()]


def select(only: str | None) -> list[Workload]:
    """Filter by ``--only``: names or prefixes, e.g. ``clone,fetch`` or ``fetch-1,push-small``."""
    workloads = all_workloads()
    if not only:
        return workloads
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen = [w for w in workloads if any(w.name == x or w.name.startswith(x + "-") for x in wanted)]
    if not chosen:
        names = ", ".join(w.name for w in workloads)
        raise SystemExit(f"--only {only!r} matches no workload (have: {names})")
    return chosen
