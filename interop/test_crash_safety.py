"""Crash safety: ``kill -9`` the real server while clients push, restart it, check what survived.

The issue asks for exactly this: kill the server process at random moments during a stream of
concurrent pushes, restart it on the same data directory, and check that

1. every acknowledged update is still there: a branch is never older than its last acknowledged
   push, an acknowledged tag creation or deletion holds, an acknowledged compare-and-swap is on
   the ref's history, an acknowledged repository creation holds;
2. nothing unacknowledged is half-present: an interrupted atomic push landed wholly or not at all,
   a refused push did not land, no ref names an object whose closure is missing, no ref appears
   that no client wrote;
3. ``git fsck --strict`` on a fresh mirror clone is clean, and every acknowledged commit is in it;
4. the restarted server serves normally (a new push, a new repository, a clone).

Words used below. A push is **acked** when git exits 0 and its ``--porcelain`` report shows the
ref updated; **refused** when the report says ``[rejected]`` or ``[remote rejected]`` (a definite
no: it must never land); **unknown** otherwise (connection refused or reset, timeout, no report).
An unknown push may or may not have landed. Once the server is dead no unknown push can land any
more, so after each restart every unknown outcome is *resolved* by what the server shows, and the
resolved state must hold in every later round as if it had been acknowledged (a state the server
has served after a restart is durable state).

Only govc can be killed like this: with ``GOVC_INTEROP_TARGET=http-backend`` the tests skip.

Knobs: ``GOVC_CRASH_ROUNDS`` (default 8) for soak runs, ``GOVC_CRASH_SEED`` to repeat a run's
random choices (kill delays, blob sizes, rewrite decisions; thread timing still varies).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, NoReturn

import pytest

from interop.conftest import REPO_ROOT, Git, GitError, GitResult, Server, free_port, http_request

ROUNDS = int(os.environ.get("GOVC_CRASH_ROUNDS", "8"))
SEED = int(os.environ.get("GOVC_CRASH_SEED") or random.SystemRandom().randrange(1 << 31))
BRANCH_WORKERS = 4
CAS_WORKERS = 2
KILL_DELAY = (0.2, 1.5)  # seconds of pushing before the kill, drawn uniformly each round
#: What sets off the kill, drawn each round: the delay alone, or (after the delay) the first change
#: in the repository's pack directory (a pack being written or renamed into place: objects on disk,
#: refs perhaps not yet moved) or in the SQLite write-ahead log (a ref transaction committing,
#: its answer perhaps not yet sent). The last two aim at the windows that matter most; they rely
#: on the data directory's layout (storage/disk.py) and fall back to the delay without it.
KILL_TRIGGERS = ("delay", "pack directory change", "WAL change")
TRIGGER_WAIT = 1.0  # how long after the delay a disk trigger may take before the kill happens anyway
BIG_BLOB_CHANCE = 0.25
BIG_BLOB_SIZES = (40_000, 250_000, 1_200_000)  # > 1 MiB makes git use a chunked upload
PUSH_TIMEOUT = 60.0
JOIN_TIMEOUT = 3 * PUSH_TIMEOUT
START_TIMEOUT = 60.0  # start-up reads the data directory, which grows round by round
REPO = "crash"
SHARED = "refs/heads/shared"
TAGS_KEPT = 3  # the tag worker deletes its oldest tag once this many are known to exist

Outcome = Literal["acked", "refused", "unknown"]

#: Soak runs take longer than the suite's default per-test timeout.
pytestmark = pytest.mark.timeout(max(300, 60 + 40 * ROUNDS))


# --------------------------------------------------------------------------------------------
# The server, as a process we may kill


class GovcProcess:
    """``python -m govc serve`` on a fixed data directory; each start takes a new port."""

    def __init__(self, data: Path, log_path: Path) -> None:
        self.data = data
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.starts = 0
        self.kills = 0
        self._log_offsets: list[int] = []

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}.git"

    def start(self) -> float:
        """Start the server and wait for ``/healthz``; return how long that took (seconds)."""
        assert self.process is None or self.process.poll() is not None, "server already running"
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "govc",
            "serve",
            "--data",
            str(self.data),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        self.starts += 1
        with self.log_path.open("ab") as log:
            self._log_offsets.append(log.tell())
            log.write(f"\n=== start #{self.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.base_url = f"http://127.0.0.1:{port}"
        began = time.monotonic()
        last = "no answer yet"
        while time.monotonic() - began < START_TIMEOUT:
            if self.process.poll() is not None:
                last = f"process exited with status {self.process.returncode}"
                break
            try:
                status, _ = http_request("GET", f"{self.base_url}/healthz", timeout=2.0)
                if status == 200:
                    return time.monotonic() - began
                last = f"HTTP {status}"
            except OSError as err:
                last = repr(err)
            time.sleep(0.05)
        self.close()
        raise AssertionError(
            f"govc did not come back up on data directory {self.data} (start #{self.starts}, "
            f"after {self.kills} kill -9): {last}\n{self.log_tail()}"
        )

    def kill(self) -> None:
        """``kill -9`` the server and reap it (its files are released once it is reaped)."""
        assert self.process is not None
        status = self.process.poll()
        if status is not None:
            raise AssertionError(
                f"govc exited by itself (status {status}) before it was killed\n{self.log_tail(1)}"
            )
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.kills += 1

    def close(self) -> None:
        """Stop the server if it runs (a kill: nothing graceful is owed to it here)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)

    def log_tail(self, starts: int = 2, limit: int = 12_000) -> str:
        """The server log of the last ``starts`` runs (the run before a kill is usually wanted)."""
        offset = self._log_offsets[-starts] if len(self._log_offsets) >= starts else 0
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                text = fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return "(no server log)"
        if len(text) > limit:
            text = "...\n" + text[-limit:]
        return f"--- server log ({self.log_path}, last {starts} runs) ---\n{text}"


def skip_unless_govc(server: Server) -> None:
    if server.is_reference:
        pytest.skip("kill -9 and restart is a test of govc's own persistence; the reference runs as CGI")


# --------------------------------------------------------------------------------------------
# Pushing and reading what git reported


def push_report(result: GitResult) -> dict[str, tuple[str, str]]:
    """``{destination ref: (flag, summary)}`` from the stdout of ``git push --porcelain``."""
    report: dict[str, tuple[str, str]] = {}
    for line in result.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and len(parts[0]) == 1 and ":" in parts[1]:
            report[parts[1].rsplit(":", 1)[1]] = (parts[0], parts[2])
    return report


def outcome_of(result: GitResult | None, ref: str, ok_flags: str) -> Outcome:
    """What a push did to ``ref``: acked, refused (a definite no) or unknown."""
    if result is None:  # git timed out
        return "unknown"
    flag, summary = push_report(result).get(ref, ("", ""))
    if result.returncode == 0 and flag and flag in ok_flags:
        return "acked"
    if flag == "!" and summary.startswith(("[rejected]", "[remote rejected]")):
        return "refused"
    # "[remote failure] (remote failed to report status)", "RPC failed", connection refused...
    return "unknown"


def push(git: Git, cwd: Path, *args: str) -> GitResult | None:
    """``git push --porcelain args...``; None when it timed out."""
    try:
        return git("push", "--porcelain", *args, cwd=cwd, check=False, timeout=PUSH_TIMEOUT)
    except GitError:
        return None


def describe(result: GitResult | None) -> str:
    return "(git timed out)" if result is None else result.describe()


def remote_refs(git: Git, url: str) -> tuple[dict[str, str] | None, str]:
    """(``{ref: oid}`` without HEAD and peeled entries, or None when ls-remote failed; its output)."""
    try:
        result = git("ls-remote", url, check=False, timeout=PUSH_TIMEOUT)
    except GitError as err:
        return None, str(err)
    if result.returncode != 0:
        return None, result.describe()
    refs: dict[str, str] = {}
    for line in result.stdout.splitlines():
        oid, name = line.split("\t", 1)
        if name != "HEAD" and not name.endswith("^{}"):
            refs[name] = oid
    return refs, result.describe()


def write_commit(git: Git, clone: Path, files: dict[str, bytes], message: str) -> str:
    """Write ``files`` in the work tree of ``clone``, commit everything, return the commit id."""
    for path, content in files.items():
        (clone / path).write_bytes(content)
    git("add", "-A", cwd=clone)
    git("commit", "-q", "--allow-empty", "-m", message, cwd=clone)
    return git.rev_parse(clone, "HEAD")


class InFlight:
    """How many pushes are running right now (to report how many a kill interrupted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def __enter__(self) -> None:
        with self._lock:
            self.count += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.count -= 1


# --------------------------------------------------------------------------------------------
# Workers. Each runs in its own thread during a round and owns its own local clone.


@dataclass
class BranchWorker:
    """Pushes commit after commit to its own branch ``refs/heads/w<i>`` (fast-forwards only).

    Its local history is linear and every commit is pushed once as a tip, so whatever the server
    holds for the branch must be one of ``attempts``, at or after ``floor`` (the last acked or
    resolved one).
    """

    git: Git
    index: int
    clone: Path
    rng: random.Random
    attempts: list[str] = field(default_factory=list)
    attempt_round: dict[str, int] = field(default_factory=dict)
    acked: list[str] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)
    floor: int = -1  # index in attempts the server must be at or past; -1: branch may be absent
    floor_why: str = ""
    counter: int = 0
    tally: Counter[str] = field(default_factory=Counter)
    landed: int = 0  # unknown pushes the server turned out to have taken

    @property
    def ref(self) -> str:
        return f"refs/heads/w{self.index}"

    def step(self, url: str, flight: InFlight, rnd: int) -> None:
        self.counter += 1
        files = {f"w{self.index}.txt": f"worker {self.index} commit {self.counter}\n".encode()}
        if self.rng.random() < BIG_BLOB_CHANCE:
            files[f"w{self.index}.bin"] = self.rng.randbytes(self.rng.choice(BIG_BLOB_SIZES))
        oid = write_commit(self.git, self.clone, files, f"w{self.index} commit {self.counter}")
        self.attempts.append(oid)
        self.attempt_round[oid] = rnd
        with flight:
            result = push(self.git, self.clone, url, f"HEAD:{self.ref}")
        outcome = outcome_of(result, self.ref, " *")
        self.tally[outcome] += 1
        if outcome == "acked":
            self.acked.append(oid)
            self.floor = len(self.attempts) - 1
            self.floor_why = f"acknowledged in round {rnd}"
        elif outcome == "refused":
            self.refused.add(oid)

    def check(self, refs: dict[str, str], rnd: int) -> list[str]:
        """Problems with this branch after a restart; resolve the floor to what the server shows."""
        value = refs.get(self.ref)
        name = f"w{self.index}"
        if value is None:
            if self.floor >= 0:
                return [
                    f"acknowledged commit {self.attempts[self.floor]} on {name} lost after restart "
                    f"{rnd}: the branch is gone ({self.floor_why})"
                ]
            return []
        if value not in self.attempt_round:
            return [f"{name} is at {value}, which worker {self.index} never pushed (after restart {rnd})"]
        if value in self.refused:
            return [f"{name} is at {value}, whose push was refused (after restart {rnd})"]
        position = self.attempts.index(value)
        if position < self.floor:
            lost = self.attempts[self.floor]
            return [
                f"acknowledged commit {lost} on {name} lost after restart {rnd}: the server has "
                f"{value}, {self.floor - position} commit(s) older ({lost} was {self.floor_why})"
            ]
        if position > self.floor:
            if value not in self.acked:
                self.landed += 1
            self.floor = position
            self.floor_why = (
                f"an unknown push of round {self.attempt_round[value]} that the server "
                f"showed after restart {rnd}"
            )
        return []


@dataclass
class CasPush:
    worker: int
    lease: str
    new: str
    outcome: Outcome


@dataclass
class CasWorker:
    """Moves the shared branch with ``--force-with-lease`` (compare-and-swap), racing the others.

    Every new value is a fresh commit, so the ref's history during a round is a unique walk
    back from its final value through the pushes' ``lease -> new`` edges.
    """

    git: Git
    index: int
    clone: Path
    rng: random.Random
    known: str  # the value this worker believes the server holds
    counter: int = 0
    tally: Counter[str] = field(default_factory=Counter)

    def has(self, oid: str) -> bool:
        return self.git("cat-file", "-e", f"{oid}^{{commit}}", cwd=self.clone, check=False).returncode == 0

    def refresh(self, url: str) -> None:
        try:
            result = self.git("ls-remote", url, SHARED, check=False, timeout=PUSH_TIMEOUT)
        except GitError:
            return
        if result.returncode == 0 and result.stdout.strip():
            self.known = result.stdout.split("\t", 1)[0]

    def step(self, url: str, flight: InFlight, log: list[CasPush], lock: threading.Lock) -> None:
        if not self.has(self.known):
            with contextlib.suppress(GitError):
                self.git(
                    "fetch",
                    "-q",
                    "--no-tags",
                    url,
                    f"+{SHARED}:refs/cas/seen",
                    cwd=self.clone,
                    check=False,
                    timeout=PUSH_TIMEOUT,
                )
            if not self.has(self.known):
                self.refresh(url)
                time.sleep(0.05)
                return
        base = self.known
        if self.rng.random() < 0.3:  # rewrite: a forced, non-fast-forward update
            parent = self.git("rev-parse", "-q", "--verify", f"{base}^", cwd=self.clone, check=False)
            if parent.returncode == 0:
                base = parent.stdout.strip()
        self.git("reset", "-q", "--hard", base, cwd=self.clone)
        self.counter += 1
        new = write_commit(
            self.git,
            self.clone,
            {f"cas{self.index}.txt": f"cas {self.index} {self.counter}\n".encode()},
            f"cas{self.index} commit {self.counter}",
        )
        lease = self.known
        with flight:
            result = push(self.git, self.clone, f"--force-with-lease={SHARED}:{lease}", url, f"HEAD:{SHARED}")
        outcome = outcome_of(result, SHARED, " +*")
        self.tally[outcome] += 1
        with lock:
            log.append(CasPush(self.index, lease, new, outcome))
        if outcome == "acked":
            self.known = new
        else:
            self.refresh(url)


@dataclass
class TagState:
    oid: str  # what refs/tags/<name> must point at (a tag object when annotated)
    status: Literal["present", "absent", "maybe"]


@dataclass
class TagPush:
    create: str
    delete: str | None
    outcome: Outcome


@dataclass
class TagWorker:
    """Each step makes a commit, tags it, and pushes ``--atomic``: the new tag plus the deletion
    of its oldest existing tag. An interrupted push must have landed wholly or not at all."""

    git: Git
    clone: Path
    rng: random.Random
    tags: dict[str, TagState] = field(default_factory=dict)
    pending: list[TagPush] = field(default_factory=list)  # unknown pushes of this round
    counter: int = 0
    tally: Counter[str] = field(default_factory=Counter)
    landed: int = 0  # unknown pushes the server turned out to have taken

    def step(self, url: str, flight: InFlight) -> None:
        self.counter += 1
        name = f"tag-{self.counter:05d}"
        write_commit(
            self.git,
            self.clone,
            {"tagged.txt": f"tagged {self.counter}\n".encode()},
            f"tagged commit {self.counter}",
        )
        if self.rng.random() < 0.5:
            self.git("tag", "-a", "-m", f"annotated {name}", name, cwd=self.clone)
        else:
            self.git("tag", name, cwd=self.clone)
        oid = self.git.rev_parse(self.clone, f"refs/tags/{name}")
        existing = [tag for tag, state in self.tags.items() if state.status == "present"]
        victim = existing[0] if len(existing) >= TAGS_KEPT else None
        specs = [f"refs/tags/{name}:refs/tags/{name}"] + ([f":refs/tags/{victim}"] if victim else [])
        with flight:
            result = push(self.git, self.clone, "--atomic", url, *specs)
        outcome = outcome_of(result, f"refs/tags/{name}", "*")
        if outcome == "acked" and victim and outcome_of(result, f"refs/tags/{victim}", "-") != "acked":
            outcome = "unknown"  # exit 0 but the deletion not reported: should not happen
        self.tally[outcome] += 1
        if outcome == "acked":
            self.tags[name] = TagState(oid, "present")
            if victim:
                self.tags[victim].status = "absent"
        elif outcome == "refused":
            self.tags[name] = TagState(oid, "absent")
        else:
            self.tags[name] = TagState(oid, "maybe")
            if victim:
                self.tags[victim].status = "maybe"
            self.pending.append(TagPush(name, victim, outcome))

    def check(self, refs: dict[str, str], rnd: int) -> list[str]:
        """Problems with the tags after restart ``rnd``; resolve every "maybe" to what is there."""
        problems: list[str] = []
        on_server = {
            name.removeprefix("refs/tags/"): oid
            for name, oid in refs.items()
            if name.startswith("refs/tags/")
        }
        for name in sorted(set(on_server) - set(self.tags)):
            problems.append(f"tag {name} ({on_server[name]}) is on the server but was never pushed")
        for group in self.pending:
            created = group.create in on_server
            self.landed += created
            deleted = group.delete is not None and group.delete not in on_server
            if group.delete is not None and created != deleted:
                problems.append(
                    f"interrupted atomic push half-applied after restart {rnd}: creation of tag "
                    f"{group.create} {'landed' if created else 'did not land'} but deletion of tag "
                    f"{group.delete} {'landed' if deleted else 'did not land'}"
                )
        for name, state in self.tags.items():
            there = on_server.get(name)
            if there is not None and there != state.oid:
                problems.append(f"tag {name} is {there} on the server, but was pushed as {state.oid}")
            if state.status == "present" and there is None:
                problems.append(f"acknowledged tag {name} ({state.oid}) lost after restart {rnd}")
            elif state.status == "absent" and there is not None:
                problems.append(
                    f"tag {name} is present after restart {rnd}, but its acknowledged state is "
                    f"deleted (or its creation was refused)"
                )
            state.status = "present" if there is not None else "absent"
        self.pending.clear()
        return problems


def check_cas(pushes: Sequence[CasPush], start: str, value: str | None, rnd: int) -> tuple[list[str], int]:
    """Is ``value`` the end of a history that starts at ``start`` and contains every acked push?

    Returns the problems and how many unknown pushes are on that history (landed).
    """
    if value is None:
        return [f"{SHARED} is gone after restart {rnd} (it was {start} when the round began)"], 0
    by_new = {p.new: p for p in pushes}
    path: list[CasPush] = []
    cursor = value
    while cursor != start:
        step = by_new.get(cursor)
        if step is None:
            return [
                f"{SHARED} is at {cursor} after restart {rnd}: no push of this round produced it and "
                f"the round began at {start} (history walked back from {value}: "
                f"{[p.new[:12] for p in path]})"
            ], 0
        if step.outcome == "refused":
            return [
                f"{SHARED}: the refused push {step.lease[:12]} -> {step.new[:12]} (worker {step.worker}) "
                f"landed (found on the history of {value} after restart {rnd})"
            ], 0
        path.append(step)
        cursor = step.lease
        if len(path) > len(pushes):
            return [f"{SHARED}: the history walked back from {value} loops"], 0
    on_path = {p.new for p in path}
    problems = [
        f"acknowledged compare-and-swap {p.lease} -> {p.new} on {SHARED} (worker {p.worker}) lost after "
        f"restart {rnd}: the server's {SHARED} is {value}, whose history does not contain it"
        for p in pushes
        if p.outcome == "acked" and p.new not in on_path
    ]
    return problems, sum(p.outcome == "unknown" for p in path)


# --------------------------------------------------------------------------------------------
# The crash rounds


class CrashRun:
    def __init__(self, git: Git, govc: GovcProcess, work: Path, rng: random.Random) -> None:
        self.git = git
        self.govc = govc
        self.work = work
        self.rng = rng
        self.seed_commit = ""
        self.shared = ""  # the shared branch's value, as verified after the last restart
        self.branch_workers: list[BranchWorker] = []
        self.cas_workers: list[CasWorker] = []
        self.tag_worker: TagWorker | None = None
        self.probe = work / "probe"
        self.exact: dict[str, str] = {}  # refs of the main repository whose value is fixed
        self.repos: dict[str, dict[str, str]] = {}  # other repositories: name -> exact refs
        self.log: list[str] = []
        self.cas_landed_total = 0

    @property
    def url(self) -> str:
        return self.govc.url(REPO)

    def clone(self, name: str) -> Path:
        dest = self.work / name
        self.git("clone", "-q", self.url, dest, timeout=PUSH_TIMEOUT)
        return dest

    def setup(self) -> None:
        """Seed the repository (created by the push) and give every worker a clone."""
        self.git("init", "-q", "-b", "main", self.probe)
        self.seed_commit = write_commit(self.git, self.probe, {"README": b"crash test\n"}, "seed")
        result = push(self.git, self.probe, self.url, "HEAD:refs/heads/main", f"HEAD:{SHARED}")
        assert result is not None and result.returncode == 0, describe(result)
        self.exact["refs/heads/main"] = self.seed_commit
        self.shared = self.seed_commit
        for i in range(BRANCH_WORKERS):
            clone = self.clone(f"w{i}")
            self.git("checkout", "-q", "-b", f"w{i}", cwd=clone)
            self.branch_workers.append(BranchWorker(self.git, i, clone, random.Random(self.rng.random())))
        for i in range(CAS_WORKERS):
            self.cas_workers.append(
                CasWorker(
                    self.git, i, self.clone(f"cas{i}"), random.Random(self.rng.random()), self.seed_commit
                )
            )
        self.tag_worker = TagWorker(self.git, self.clone("tags"), random.Random(self.rng.random()))

    def run_round(self, rnd: int) -> None:
        url = self.url
        stop = threading.Event()
        flight = InFlight()
        errors: list[BaseException] = []
        cas_log: list[CasPush] = []
        cas_lock = threading.Lock()
        assert self.tag_worker is not None
        tag_worker = self.tag_worker
        for worker in self.cas_workers:
            worker.known = self.shared

        def loop(step: Callable[[], None]) -> None:
            try:
                while not stop.is_set():
                    step()
            except BaseException as err:  # reported by the main thread
                errors.append(err)

        steps: list[Callable[[], None]] = [
            *(partial(w.step, url, flight, rnd) for w in self.branch_workers),
            *(partial(w.step, url, flight, cas_log, cas_lock) for w in self.cas_workers),
            partial(tag_worker.step, url, flight),
        ]
        threads = [
            threading.Thread(target=loop, args=(s,), daemon=True, name=f"crash-{n}")
            for n, s in enumerate(steps)
        ]
        delay = self.rng.uniform(*KILL_DELAY)
        trigger = self.rng.choice(KILL_TRIGGERS)
        before = self.tallies()
        started = time.monotonic()
        try:
            for thread in threads:
                thread.start()
            fired = self.wait_for_trigger(trigger, delay)
            interrupted = flight.count
            self.govc.kill()
            delay = time.monotonic() - started
        finally:
            stop.set()
            for thread in threads:
                thread.join(JOIN_TIMEOUT)
        stuck = [t.name for t in threads if t.is_alive()]
        assert not stuck, f"round {rnd}: workers {stuck} still running {JOIN_TIMEOUT}s after the kill"
        if errors:
            raise AssertionError(
                f"round {rnd}: a worker failed outside its pushes: {errors[0]!r}"
            ) from errors[0]
        took = self.govc.start()
        done = self.tallies() - before
        self.log.append(
            f"round {rnd}: killed after {delay:.2f}s ({fired}) with {interrupted} push(es) in flight; "
            f"acked {done['acked']}, unknown {done['unknown']}, refused {done['refused']}; "
            f"restart took {took:.2f}s"
        )
        self.verify(rnd, cas_log, delay)
        self.serve_normally(rnd)

    def wait_for_trigger(self, trigger: str, delay: float) -> str:
        """Sleep ``delay``, then for a disk trigger poll until it fires; say what set off the kill."""
        time.sleep(delay)
        if trigger == "pack directory change":
            pack_dir = self.govc.data / "repos" / f"{REPO}.git" / "objects" / "pack"

            def probe() -> object:
                return sorted(os.listdir(pack_dir))

        elif trigger == "WAL change":
            wal = self.govc.data / "govc.db-wal"

            def probe() -> object:
                info = wal.stat()
                return (info.st_mtime_ns, info.st_size)

        else:
            return "delay"
        try:
            base = probe()
        except OSError:
            return f"delay: no {trigger} to watch"
        deadline = time.monotonic() + TRIGGER_WAIT
        while time.monotonic() < deadline:
            try:
                if probe() != base:
                    return trigger
            except OSError:
                return trigger
            time.sleep(0.0005)
        return f"delay: no {trigger} within {TRIGGER_WAIT}s"

    def landed(self) -> int:
        """How many unknown pushes turned out, after a restart, to have landed (all rounds)."""
        assert self.tag_worker is not None
        return sum(w.landed for w in self.branch_workers) + self.tag_worker.landed + self.cas_landed_total

    def tallies(self) -> Counter[str]:
        total: Counter[str] = Counter()
        workers: list[BranchWorker | CasWorker | TagWorker] = [*self.branch_workers, *self.cas_workers]
        if self.tag_worker is not None:
            workers.append(self.tag_worker)
        for worker in workers:
            total.update(worker.tally)
        return total

    def fail(self, rnd: int, problems: Sequence[str], delay: float | None = None) -> NoReturn:
        when = f" (killed {delay:.2f}s into the round)" if delay is not None else ""
        raise AssertionError(
            f"after kill -9 #{self.govc.kills} and restart{when}, round {rnd} of {ROUNDS}, "
            f"GOVC_CRASH_SEED={SEED}:\n  - "
            + "\n  - ".join(problems)
            + "\n\nrounds so far:\n  "
            + "\n  ".join(self.log)
            + "\n\n"
            + self.govc.log_tail()
        )

    def verify(self, rnd: int, cas_log: Sequence[CasPush], delay: float) -> None:
        problems: list[str] = []
        refs, listing = remote_refs(self.git, self.url)
        if refs is None:
            # Go on as if it were empty, so that the report names what was lost.
            problems.append(f"repository {REPO} cannot be listed after restart {rnd}:\n{listing}")
            refs = {}
        landed_before = self.landed()
        known_prefixes = ("refs/heads/w", "refs/tags/tag-", "refs/heads/probe/")
        for name in sorted(refs):
            if name not in self.exact and name != SHARED and not name.startswith(known_prefixes):
                problems.append(f"unexpected ref {name} ({refs[name]}) on the server")
        for name, oid in self.exact.items():
            if refs.get(name) != oid:
                problems.append(
                    f"acknowledged {name} = {oid} lost after restart {rnd}: server has {refs.get(name)}"
                )
        for worker in self.branch_workers:
            problems += worker.check(refs, rnd)
        cas_problems, cas_landed = check_cas(cas_log, self.shared, refs.get(SHARED), rnd)
        problems += cas_problems
        self.cas_landed_total += cas_landed
        if SHARED in refs:
            self.shared = refs[SHARED]
        assert self.tag_worker is not None
        problems += self.tag_worker.check(refs, rnd)
        problems += self.check_repositories(rnd)
        if problems:
            self.fail(rnd, problems, delay)
        self.log[-1] += f"; {self.landed() - landed_before} unknown push(es) had landed"

        # A fresh mirror clone: every object reachable from every ref, checked as it arrives
        # (transfer.fsckObjects) and again by fsck --strict.
        mirror = self.work / f"mirror-{rnd}.git"
        try:
            cloned = self.git("clone", "-q", "--mirror", self.url, mirror, check=False, timeout=PUSH_TIMEOUT)
        except GitError as err:
            self.fail(rnd, [f"git clone --mirror timed out after restart: {err}"], delay)
        if cloned.returncode != 0:
            self.fail(
                rnd,
                [f"git clone --mirror failed after restart (missing objects?):\n{cloned.describe()}"],
                delay,
            )
        fsck = self.git(
            "fsck", "--strict", "--full", "--no-progress", "--no-dangling", cwd=mirror, check=False
        )
        if fsck.returncode != 0 or fsck.stdout.strip() or fsck.stderr.strip():
            problems.append(f"git fsck --strict of a fresh mirror clone is not clean:\n{fsck.describe()}")
        mirrored = self.git.refs(mirror)
        if mirrored != refs:
            problems.append(f"the mirror clone's refs differ from ls-remote's: {mirrored} != {refs}")
        acked = [(w.index, oid) for w in self.branch_workers for oid in w.acked]
        if acked:
            batch = self.git(
                "cat-file",
                "--batch-check=%(objectname) %(objecttype)",
                cwd=mirror,
                input="".join(f"{oid}\n" for _, oid in acked),
            ).stdout.splitlines()
            for (index, oid), line in zip(acked, batch, strict=True):
                if line != f"{oid} commit":
                    problems.append(
                        f"acknowledged commit {oid} on w{index} missing from a fresh clone "
                        f"after restart {rnd} ({line})"
                    )
        if problems:
            self.fail(rnd, problems, delay)
        # Keep the disk use flat: each round's mirror is only needed while it is checked.
        for old in self.work.glob("mirror-*.git"):
            if old != mirror:
                _remove_tree(old)

    def check_repositories(self, rnd: int) -> list[str]:
        """Repositories created in earlier rounds (by the API or by a push) are all still there."""
        problems: list[str] = []
        status, body = http_request("GET", f"{self.govc.base_url}/api/v1/repos", timeout=10.0)
        listed = set(json.loads(body).get("repositories", [])) if status == 200 else set()
        if status != 200:
            problems.append(f"GET /api/v1/repos answered {status} after restart {rnd}: {body[:300]!r}")
        for name in [REPO, *self.repos]:
            if name not in listed and status == 200:
                problems.append(
                    f"acknowledged repository {name} not listed after restart {rnd}: {sorted(listed)}"
                )
        names = list(self.repos)
        for name in names[-3:] + self.rng.sample(names[:-3], min(2, len(names[:-3]))):
            refs, listing = remote_refs(self.git, self.govc.url(name))
            if refs != self.repos[name]:
                problems.append(
                    f"repository {name} lost acknowledged refs after restart {rnd}: expected "
                    f"{self.repos[name]}, got {refs}\n{listing if refs is None else ''}"
                )
        return problems

    def serve_normally(self, rnd: int) -> None:
        """After a restart the server takes a new push, creates repositories, and serves a clone."""
        problems: list[str] = []
        oid = write_commit(self.git, self.probe, {"probe.txt": f"probe {rnd}\n".encode()}, f"probe {rnd}")
        ref = f"refs/heads/probe/r{rnd}"
        result = push(self.git, self.probe, self.url, f"HEAD:{ref}")
        if outcome_of(result, ref, "*") != "acked":
            self.fail(rnd, [f"a push after restart {rnd} failed:\n{describe(result)}"])
        self.exact[ref] = oid
        dest = self.work / f"probe-clone-{rnd}"
        self.git("clone", "-q", "--branch", f"probe/r{rnd}", self.url, dest, timeout=PUSH_TIMEOUT)
        if self.git.rev_parse(dest, "HEAD") != oid:
            problems.append(f"a clone after restart {rnd} does not check out the pushed {oid}")
        _remove_tree(dest)

        api_name = f"crash-api-r{rnd}"
        status, body = http_request(
            "POST",
            f"{self.govc.base_url}/api/v1/repos",
            json.dumps({"name": api_name}).encode(),
            {"Content-Type": "application/json"},
        )
        if status != 201:
            problems.append(
                f"POST /api/v1/repos {api_name} answered {status} after restart {rnd}: {body[:300]!r}"
            )
        else:
            self.repos[api_name] = {}
        auto_name = f"crash-auto-r{rnd}"
        result = push(self.git, self.probe, self.govc.url(auto_name), "HEAD:refs/heads/main")
        if outcome_of(result, "refs/heads/main", "*") != "acked":
            problems.append(f"a push creating {auto_name} after restart {rnd} failed:\n{describe(result)}")
        else:
            self.repos[auto_name] = {"refs/heads/main": oid}
        if problems:
            self.fail(rnd, problems)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def test_kill_9_during_concurrent_pushes(server: Server, git_home: Path, tmp_path: Path) -> None:
    """Rounds of: concurrent pushes, kill -9 at a random moment, restart, check what survived.

    Four workers fast-forward their own branches (sometimes with large blobs, so packs vary and
    some uploads are chunked), two race on one branch with ``--force-with-lease``, one creates
    and deletes tags in atomic pushes. The data directory carries over from round to round.
    """
    skip_unless_govc(server)
    git = Git(git_home, 2)
    govc = GovcProcess(tmp_path / "data", tmp_path / "govc.log")
    run = CrashRun(git, govc, tmp_path, random.Random(SEED))
    try:
        govc.start()
        run.setup()
        for rnd in range(1, ROUNDS + 1):
            run.run_round(rnd)
    finally:
        govc.close()
    print(f"GOVC_CRASH_SEED={SEED}, {ROUNDS} rounds:\n" + "\n".join(run.log))
    totals = run.tallies()
    branches = sum((w.tally for w in run.branch_workers), Counter[str]())
    cas = sum((w.tally for w in run.cas_workers), Counter[str]())
    print(
        f"pushes: {dict(totals)}; own branches {dict(branches)}, compare-and-swap {dict(cas)}, "
        f"atomic tag pushes {dict(run.tag_worker.tally if run.tag_worker else {})}; "
        f"{run.landed()} unknown pushes had landed"
    )
    assert totals["acked"] > ROUNDS, f"too few acknowledged pushes to mean anything: {dict(totals)}"


# --------------------------------------------------------------------------------------------
# kill -9 right after an acknowledgement


def test_acknowledged_update_survives_immediate_kill(server: Server, git_home: Path, tmp_path: Path) -> None:
    """Each step does one acknowledged change, then the server is killed at once and restarted:
    every change acknowledged so far must be there, exactly, and a mirror clone must fsck clean."""
    skip_unless_govc(server)
    git = Git(git_home, 2)
    govc = GovcProcess(tmp_path / "data", tmp_path / "govc.log")
    work = tmp_path / "work"
    rng = random.Random(SEED)
    expected: dict[str, dict[str, str]] = {}  # repository -> exact refs
    git("init", "-q", "-b", "main", work)

    def commit(label: str, big: bool = False) -> str:
        files = {"step.txt": f"{label}\n".encode()}
        if big:
            files["big.bin"] = rng.randbytes(1_300_000)  # a chunked upload
        return write_commit(git, work, files, label)

    def pushed(repo: str, *specs: str, ok: dict[str, str]) -> None:
        result = push(git, work, "--atomic", govc.url(repo), *specs)
        for ref, flags in ok.items():
            assert outcome_of(result, ref, flags) == "acked", describe(result)

    def create_via_push() -> None:
        c = commit("a1")
        pushed("kill-a", "HEAD:refs/heads/main", ok={"refs/heads/main": "*"})
        expected["kill-a"] = {"refs/heads/main": c}

    def fast_forward_big() -> None:
        c = commit("a2", big=True)
        pushed("kill-a", "HEAD:refs/heads/main", ok={"refs/heads/main": " "})
        expected["kill-a"]["refs/heads/main"] = c

    def branch_and_tag() -> None:
        c = commit("a3")
        git("tag", "-a", "-m", "v1", "v1", cwd=work)
        pushed(
            "kill-a",
            "HEAD:refs/heads/topic",
            "refs/tags/v1:refs/tags/v1",
            ok={"refs/heads/topic": "*", "refs/tags/v1": "*"},
        )
        expected["kill-a"]["refs/heads/topic"] = c
        expected["kill-a"]["refs/tags/v1"] = git.rev_parse(work, "refs/tags/v1")

    def rewrite_and_delete() -> None:
        git("reset", "-q", "--hard", "HEAD~2", cwd=work)
        c = commit("a4")
        pushed(
            "kill-a",
            "+HEAD:refs/heads/main",
            ":refs/heads/topic",
            ok={"refs/heads/main": "+", "refs/heads/topic": "-"},
        )
        expected["kill-a"]["refs/heads/main"] = c
        del expected["kill-a"]["refs/heads/topic"]

    def create_via_api() -> None:
        status, body = http_request(
            "POST",
            f"{govc.base_url}/api/v1/repos",
            json.dumps({"name": "kill-b"}).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 201, (status, body)
        expected["kill-b"] = {}

    def first_push_into_api_repo() -> None:
        c = commit("b1", big=True)
        pushed("kill-b", "HEAD:refs/heads/main", ok={"refs/heads/main": "*"})
        expected["kill-b"]["refs/heads/main"] = c

    def delete_tag() -> None:
        pushed("kill-a", ":refs/tags/v1", ok={"refs/tags/v1": "-"})
        del expected["kill-a"]["refs/tags/v1"]

    steps = [
        create_via_push,
        fast_forward_big,
        branch_and_tag,
        rewrite_and_delete,
        create_via_api,
        first_push_into_api_repo,
        delete_tag,
    ]
    try:
        govc.start()
        for n, step in enumerate(steps, 1):
            step()
            govc.kill()  # at once: the acknowledgement is all the client has
            govc.start()
            problems = check_exact(git, govc, expected, work.parent / f"mirror-{n}")
            if problems:
                raise AssertionError(
                    f"after step {n} ({step.__name__}), kill -9 and restart:\n  - "
                    + "\n  - ".join(problems)
                    + "\n\n"
                    + govc.log_tail()
                )
    finally:
        govc.close()


def check_exact(git: Git, govc: GovcProcess, expected: dict[str, dict[str, str]], scratch: Path) -> list[str]:
    """Every repository in ``expected`` exists with exactly its refs; clones of them fsck clean."""
    problems: list[str] = []
    status, body = http_request("GET", f"{govc.base_url}/api/v1/repos", timeout=10.0)
    listed = set(json.loads(body).get("repositories", [])) if status == 200 else set()
    for name, want in expected.items():
        if name not in listed:
            problems.append(
                f"acknowledged repository {name} is not listed after restart ({status}: {sorted(listed)})"
            )
        refs, listing = remote_refs(git, govc.url(name))
        if refs is None:
            problems.append(f"repository {name} cannot be listed after restart:\n{listing}")
            continue
        for ref in sorted(set(want) | set(refs)):
            if want.get(ref) != refs.get(ref):
                what = "lost" if ref not in refs else "wrong" if ref in want else "back from the dead"
                problems.append(
                    f"{name}: acknowledged {ref} {what} after restart: expected {want.get(ref)}, "
                    f"server has {refs.get(ref)}"
                )
        if "refs/heads/main" in refs:
            head = git("ls-remote", "--symref", govc.url(name), "HEAD", check=False).stdout
            if "ref: refs/heads/main\tHEAD" not in head:
                problems.append(f"{name}: HEAD no longer points at refs/heads/main after restart: {head!r}")
        if refs:
            mirror = scratch.with_name(f"{scratch.name}-{name}.git")
            cloned = git("clone", "-q", "--mirror", govc.url(name), mirror, check=False, timeout=PUSH_TIMEOUT)
            if cloned.returncode != 0:
                problems.append(f"git clone --mirror of {name} failed after restart:\n{cloned.describe()}")
                continue
            try:
                git.fsck(mirror)
            except GitError as err:
                problems.append(str(err))
    return problems
