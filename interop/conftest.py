"""Fixtures for the end-to-end suite: a running server, an isolated ``git``, and sample histories.

Two servers can sit behind the same tests:

* ``govc`` (default): ``python -m govc serve --data DIR --host 127.0.0.1 --port P``.
* ``http-backend`` (``GOVC_INTEROP_TARGET=http-backend``): stock ``git http-backend`` run as CGI by
  lighttpd. Stock git is the reference implementation, so every test must pass in this mode; a
  test that fails here is a wrong test, not a server bug.

Tests only ever see a base URL and the ``new_repo``/``push_target`` factories, so nothing in a
test depends on which server answers.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Literal

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TARGET_ENV = "GOVC_INTEROP_TARGET"
READY_TIMEOUT = 20.0
GIT_TIMEOUT = 120.0

#: Fixed identity for every commit and tag the suite makes, so that object ids only depend on
#: content and dates.
IDENTITY = {
    "GIT_AUTHOR_NAME": "A U Thor",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "C O Mitter",
    "GIT_COMMITTER_EMAIL": "committer@example.com",
}

#: ``-c`` options given to every git invocation. ``transfer.fsckObjects`` makes the client check
#: every object it receives, so a malformed object from the server fails the fetch itself.
#: Automatic gc/maintenance is off so that nothing runs in the background of a test.
BASE_CONFIG = (
    "init.defaultBranch=main",
    "transfer.fsckObjects=true",
    "gc.auto=0",
    "maintenance.auto=false",
    "advice.detachedHead=false",
    "advice.nestedTag=false",
    "advice.skippedCherryPicks=false",
    "fetch.writeCommitGraph=false",
)

ServerKind = Literal["govc", "http-backend"]


# --------------------------------------------------------------------------------------------
# HTTP without proxies


def http_request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """Make one HTTP request straight to ``url`` (no proxy) and return (status, body).

    Error statuses are returned, not raised: tests assert on them.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------
# The server under test


@dataclass
class Server:
    """A running server: how to reach it, how to create repositories, where its log is."""

    kind: ServerKind
    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]
    project_root: Path | None = None  # http-backend only: GIT_PROJECT_ROOT

    @property
    def is_reference(self) -> bool:
        """True when the server is stock git (the tests' own validation mode)."""
        return self.kind == "http-backend"

    def url(self, name: str) -> str:
        """The clone URL of repository ``name`` (which may contain '/')."""
        return f"{self.base_url}/{name}.git"

    def create_repo(self, name: str) -> str:
        """Create an empty repository (HEAD -> unborn main) and return its URL."""
        if self.kind == "govc":
            status, body = http_request(
                "POST",
                f"{self.base_url}/api/v1/repos",
                json.dumps({"name": name}).encode(),
                {"Content-Type": "application/json"},
            )
            if status != 201:
                raise AssertionError(
                    f"POST /api/v1/repos {name!r} answered {status}, expected 201: {body[:500]!r}"
                )
        else:
            assert self.project_root is not None
            bare_init(self.project_root / f"{name}.git")
        return self.url(name)

    def log_size(self) -> int:
        """Current size of the server log, used to show only a test's own part of it."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int, limit: int = 20_000) -> str:
        """The server log from ``offset`` on (its last ``limit`` characters)."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                text = fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return "(no server log)"
        if len(text) > limit:
            text = "...\n" + text[-limit:]
        status = self.process.poll()
        if status is not None:
            text += f"\n[server process has exited with status {status}]"
        return text or "(server log is empty)"


def bare_init(path: Path) -> None:
    """``git init --bare`` with HEAD -> refs/heads/main, without reading any user config."""
    path.parent.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "LC_ALL": "C",
    }
    subprocess.run(
        ["git", "init", "-q", "--bare", "-b", "main", str(path)],
        check=True,
        env=env,
        capture_output=True,
        timeout=GIT_TIMEOUT,
    )


def _wait_ready(
    process: subprocess.Popen[bytes],
    url: str,
    ready: Callable[[int], bool],
    log_path: Path,
    what: str,
    timeout: float = READY_TIMEOUT,
) -> None:
    """Poll ``url`` until ``ready(status)`` holds; fail with the log if it never does."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            status, _ = http_request("GET", url, timeout=2.0)
            if ready(status):
                return
            last = f"HTTP {status}"
        except OSError as err:
            last = repr(err)
        time.sleep(0.1)
    exited = process.poll()
    _stop(process)
    log = log_path.read_text("utf-8", "replace") if log_path.exists() else "(no log)"
    state = f"exited with status {exited}" if exited is not None else "did not become ready"
    pytest.fail(
        f"{what} {state} within {timeout:.0f}s (last probe of {url}: {last}).\n"
        f"--- server log ({log_path}) ---\n{log[-20_000:]}",
        pytrace=False,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a server process we started, killing it if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class GovcProcess:
    """A ``govc serve`` process that can be killed and started again on the same port and log
    (the restart, crash and several-node tests)."""

    def __init__(self, log_path: Path, *args: str, env: Mapping[str, str] | None = None,
                 ready_path: str = "/healthz", timeout: float = READY_TIMEOUT) -> None:
        self.log_path = log_path
        self.args = args
        self.env = dict(env or {})
        self.ready_path = ready_path
        self.timeout = timeout
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        cmd = [sys.executable, "-m", "govc", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               *self.args]
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)

    def wait_ready(self) -> None:
        assert self.process is not None, "spawn() first"
        _wait_ready(self.process, self.base + self.ready_path, lambda s: s == 200, self.log_path,
                    f"govc on port {self.port}", self.timeout)

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")[-8000:] if self.log_path.exists() else ""


def _start_govc(workdir: Path) -> Iterator[Server]:
    data = workdir / "data"
    data.mkdir()
    log_path = workdir / "server.log"
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "govc",
        "serve",
        "--data",
        str(data),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log_path.open("wb") as log:
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        log.flush()
        process = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, f"{base}/healthz", lambda status: status == 200, log_path, "govc")
        yield Server("govc", base, log_path, process)
    finally:
        _stop(process)


def _lighttpd_conf(root: Path, port: int, workdir: Path) -> str:
    backend = (
        subprocess.run(["git", "--exec-path"], check=True, capture_output=True, text=True).stdout.strip()
        + "/git-http-backend"
    )
    config = {
        "http.receivepack": "true",
        "uploadpack.allowFilter": "true",
        "uploadpack.allowAnySHA1InWant": "true",
        "receive.advertiseAtomic": "true",
        "receive.advertisePushOptions": "true",
    }
    env: dict[str, str] = {
        "GIT_PROJECT_ROOT": str(root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_COUNT": str(len(config)),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    for n, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{n}"] = key
        env[f"GIT_CONFIG_VALUE_{n}"] = value
    env_lines = ",\n".join(f'  "{k}" => "{v}"' for k, v in env.items())
    # Every URL goes to git-http-backend: the alias maps "/" onto the CGI program, and lighttpd
    # passes the rest of the path as PATH_INFO (e.g. "/team/app.git/info/refs").
    return f"""\
server.modules = ("mod_alias", "mod_setenv", "mod_cgi")
server.document-root = "{root}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{workdir / "lighttpd-error.log"}"
server.upload-dirs = ("{workdir}")
server.max-request-size = 0
alias.url = ("/" => "{backend}/")
cgi.assign = ("" => "")
setenv.add-environment = (
{env_lines}
)
"""


def _start_http_backend(workdir: Path) -> Iterator[Server]:
    lighttpd = shutil.which("lighttpd") or next(
        (p for p in ("/usr/sbin/lighttpd", "/sbin/lighttpd") if os.access(p, os.X_OK)), None
    )
    if lighttpd is None:
        pytest.skip("GOVC_INTEROP_TARGET=http-backend needs lighttpd (apt-get install lighttpd)")
    root = workdir / "repos"
    root.mkdir()
    port = free_port()
    conf = workdir / "lighttpd.conf"
    conf.write_text(_lighttpd_conf(root, port, workdir))
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [lighttpd, "-D", "-f", str(conf)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    base = f"http://127.0.0.1:{port}"
    try:
        # lighttpd has no health endpoint; any HTTP answer (git-http-backend says 404) means up.
        _wait_ready(process, f"{base}/healthz", lambda status: status > 0, log_path, "lighttpd")
        # git-http-backend reports per-request errors on lighttpd's error log; point the log
        # shown on failure at that file.
        yield Server("http-backend", base, workdir / "lighttpd-error.log", process, root)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server under test, started once per session on a free loopback port."""
    target = os.environ.get(TARGET_ENV, "govc").strip() or "govc"
    workdir = tmp_path_factory.mktemp("server")
    if target == "govc":
        yield from _start_govc(workdir)
    elif target == "http-backend":
        yield from _start_http_backend(workdir)
    else:
        raise pytest.UsageError(f"{TARGET_ENV} must be 'govc' or 'http-backend', not {target!r}")


_LOG_MARK = pytest.StashKey[tuple[Server, int]]()


@pytest.fixture(autouse=True)
def _server_log_mark(request: pytest.FixtureRequest, server: Server) -> None:
    """Remember where the server log stood when the test began (shown if the test fails)."""
    request.node.stash[_LOG_MARK] = (server, server.log_size())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the server's log lines written during a failed test to its report."""
    report = yield
    mark = item.stash.get(_LOG_MARK, None)
    if report.failed and mark is not None:
        srv, offset = mark
        report.sections.append((f"server log ({srv.kind})", srv.log_since(offset)))
    return report


_names = count(1)


def _slug(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60]


@pytest.fixture
def new_repo(server: Server, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Factory: ``new_repo(name=None) -> url`` creates an empty repository on the server.

    govc creates it through ``POST /api/v1/repos``; the reference through ``git init --bare``.
    Without a name, a unique one derived from the test's name is used.
    """

    def make(name: str | None = None) -> str:
        return server.create_repo(name or f"{_slug(request)}-{next(_names)}")

    return make


@pytest.fixture
def push_target(server: Server, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Factory: ``push_target(name=None) -> url`` for a repository that a push will create.

    govc creates repositories on first push, so nothing is created here. Stock git-http-backend
    cannot do that, so in reference mode an empty bare repository (HEAD -> main) stands in.
    """

    def make(name: str | None = None) -> str:
        name = name or f"{_slug(request)}-{next(_names)}"
        if server.is_reference:
            return server.create_repo(name)
        return server.url(name)

    return make


# --------------------------------------------------------------------------------------------
# Running git


class GitError(AssertionError):
    """A git command failed (or succeeded when it should not have)."""


@dataclass(frozen=True)
class GitResult:
    """What one git invocation did."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout and stderr together, for matching messages wherever git printed them."""
        return self.stdout + self.stderr

    def describe(self) -> str:
        """A readable account of the command, for assertion messages."""
        return (
            f"$ git {' '.join(self.args)}\n[exit {self.returncode}]\n"
            f"--- stdout ---\n{self.stdout[-8000:]}\n--- stderr ---\n{self.stderr[-8000:]}"
        )


@dataclass
class Git:
    """Runs the real git with an isolated environment and ``-c protocol.version=<proto>``.

    No user or system configuration is read (empty HOME, GIT_CONFIG_NOSYSTEM), the locale is C
    so messages can be matched, and author/committer are fixed.
    """

    home: Path
    proto: int
    timeout: float = GIT_TIMEOUT
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "LC_ALL": "C",
            "LANG": "C",
            "TZ": "UTC",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",
            **IDENTITY,
        }

    def command(self, *args: str) -> list[str]:
        """The full argv for ``git args...`` with the suite's ``-c`` options."""
        argv = ["git", "-c", f"protocol.version={self.proto}"]
        for option in BASE_CONFIG:
            argv += ["-c", option]
        return argv + list(args)

    def __call__(
        self,
        *args: str | Path,
        cwd: Path | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout: float | None = None,
    ) -> GitResult:
        """Run git; with ``check`` (default) a non-zero exit raises with the full output."""
        str_args = tuple(str(a) for a in args)
        try:
            done = subprocess.run(
                self.command(*str_args),
                cwd=cwd,
                env={**self.env, **(env or {})},
                input=input,
                capture_output=True,
                text=True,
                errors="surrogateescape",
                timeout=timeout or self.timeout,
            )
        except subprocess.TimeoutExpired as err:
            raise GitError(
                f"$ git {' '.join(str_args)} timed out after {err.timeout}s\n"
                f"--- stdout ---\n{err.stdout!r}\n--- stderr ---\n{err.stderr!r}"
            ) from None
        result = GitResult(str_args, done.returncode, done.stdout, done.stderr)
        if check and result.returncode != 0:
            raise GitError(f"git failed (cwd={cwd})\n{result.describe()}")
        return result

    def fails(
        self, *args: str | Path, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> GitResult:
        """Run git expecting a non-zero exit; raise if it succeeded."""
        result = self(*args, cwd=cwd, env=env, check=False)
        if result.returncode == 0:
            raise GitError(f"git unexpectedly succeeded (cwd={cwd})\n{result.describe()}")
        return result

    # ---- queries used by many tests -------------------------------------------------------

    def rev_parse(self, repo: Path, rev: str) -> str:
        """The object id ``rev`` names in ``repo``."""
        return self("rev-parse", "--verify", "--end-of-options", rev, cwd=repo).stdout.strip()

    def refs(self, repo: Path, *patterns: str) -> dict[str, str]:
        """``{refname: oid}`` of ``repo`` (``for-each-ref``), optionally limited to patterns."""
        out = self("for-each-ref", "--format=%(refname) %(objectname)", *patterns, cwd=repo).stdout
        return {name: oid for name, oid in (line.split(" ", 1) for line in out.splitlines())}

    def show_ref_d(self, repo: Path) -> dict[str, str]:
        """``{refname: oid}`` from ``git show-ref -d``: every ref plus peeled ``^{}`` entries."""
        out = self("show-ref", "-d", cwd=repo).stdout
        return {name: oid for oid, name in (line.split(" ", 1) for line in out.splitlines())}

    def ls_remote(self, url: str, *options: str, patterns: Sequence[str] = ()) -> dict[str, str]:
        """``{refname: oid}`` as ``git ls-remote [options] URL [patterns]`` prints it.

        HEAD and the peeled ``^{}`` entries are included as git prints them. A name listed
        twice (a server advertising a ref more than once) fails here rather than collapsing.
        """
        out = self("ls-remote", *options, url, *patterns).stdout
        pairs = [line.split("\t", 1) for line in out.splitlines()]
        listed = {name: oid for oid, name in pairs}
        if len(listed) != len(pairs):
            raise GitError(f"ls-remote {url} lists some ref more than once:\n{out}")
        return listed

    def remote_head_symref(self, url: str) -> str | None:
        """What the server's HEAD points at, from ``git ls-remote --symref URL HEAD``."""
        out = self("ls-remote", "--symref", url, "HEAD").stdout
        for line in out.splitlines():
            if line.startswith("ref: ") and line.endswith("\tHEAD"):
                return line[len("ref: ") : -len("\tHEAD")]
        return None

    def all_objects(self, repo: Path) -> list[str]:
        """Sorted ids of every object reachable from any ref (``rev-list --all --objects``).

        Only ids are compared: the path git prints beside a blob depends on traversal order,
        which differs between a source repo and a clone whose refs have other names.
        """
        out = self("rev-list", "--all", "--objects", cwd=repo).stdout
        return sorted(line.split(" ", 1)[0] for line in out.splitlines())

    def fsck(self, repo: Path) -> None:
        """Assert ``git fsck --strict --full`` finds nothing at all (not even warnings)."""
        result = self("fsck", "--strict", "--full", "--no-progress", "--no-dangling", cwd=repo, check=False)
        if result.returncode != 0 or result.stdout.strip() or result.stderr.strip():
            raise GitError(f"fsck is not clean in {repo}\n{result.describe()}")

    def commit_file(
        self,
        repo: Path,
        path: str,
        content: str | bytes,
        message: str,
        date: int | None = None,
    ) -> str:
        """Write ``path`` in the work tree of ``repo``, commit it, and return the commit id."""
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
        self("add", "--", path, cwd=repo)
        self("commit", "-q", "-m", message, cwd=repo, env=dates(date) if date else None)
        return self.rev_parse(repo, "HEAD")

    def fast_commits(
        self, repo: Path, n: int, branch: str = "main", tag: str = "local", start: int = 1_750_000_000
    ) -> list[str]:
        """Append ``n`` small commits to ``branch`` with one ``git fast-import`` run.

        Returns the new commit ids, oldest first. Much faster than ``n`` ``git commit`` runs,
        which matters for the many-haves negotiation test. The work tree is reset to the new
        tip afterwards when ``branch`` is checked out.
        """
        parent = self.rev_parse(repo, f"refs/heads/{branch}")
        chunks: list[str] = []
        for i in range(1, n + 1):
            msg = f"{tag} commit {i}\n"
            body = f"{tag} {i}\n"
            when = f"{start + 60 * i} +0000"
            chunks.append(
                f"commit refs/heads/{branch}\nmark :{i}\n"
                f"author {IDENTITY['GIT_AUTHOR_NAME']} <{IDENTITY['GIT_AUTHOR_EMAIL']}> {when}\n"
                f"committer {IDENTITY['GIT_COMMITTER_NAME']} "
                f"<{IDENTITY['GIT_COMMITTER_EMAIL']}> {when}\n"
                f"data {len(msg)}\n{msg}"
                + (f"from {parent}\n" if i == 1 else "")
                + f"M 100644 inline {tag}.txt\ndata {len(body)}\n{body}\n"
            )
        self("fast-import", "--quiet", "--force", input="".join(chunks), cwd=repo)
        out = self("rev-list", "--reverse", f"{parent}..refs/heads/{branch}", cwd=repo).stdout
        current = self("symbolic-ref", "-q", "HEAD", cwd=repo, check=False).stdout.strip()
        bare = self("rev-parse", "--is-bare-repository", cwd=repo).stdout.strip() == "true"
        if current == f"refs/heads/{branch}" and not bare:
            self("reset", "-q", "--hard", cwd=repo)
        return out.split()


def dates(epoch: int) -> dict[str, str]:
    """Environment that pins author and committer (and tagger) date to ``epoch``."""
    stamp = f"{epoch} +0000"
    return {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}


@pytest.fixture(scope="session")
def git_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty HOME shared by all git runs: nothing in it, so no user config is read."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(params=[0, 2], ids=["v0", "v2"])
def proto(request: pytest.FixtureRequest) -> int:
    """The wire protocol version the client asks for (``-c protocol.version=N``).

    Pushes always use v0 (git 2.39 has no v2 push); the parameter still matters for the
    ``ls-remote``/fetch/clone calls around a push. Override with
    ``@pytest.mark.parametrize("proto", [2])`` where one version is enough.
    """
    return int(request.param)


@pytest.fixture
def git(git_home: Path, proto: int) -> Git:
    """The git runner for this test, speaking protocol ``proto``."""
    return Git(git_home, proto)


# --------------------------------------------------------------------------------------------
# Sample histories

BIG_LINES = 2000  # data/big.txt: 2000 lines of 80 bytes (160 KB), poorly compressible


def big_text(variant: int) -> str:
    """Deterministic pseudo-random text; each variant changes a handful of lines.

    Successive variants differ in a few lines only, so git stores them as deltas of one
    another, and packs in both directions carry deltas.
    """
    rng = random.Random(20050407)
    letters = "abcdefghijklmnopqrstuvwxyz"
    lines = []
    for i in range(1, BIG_LINES + 1):
        text = "".join(rng.choice(letters) for _ in range(74))
        if variant and i % 250 == variant % 250:
            text = f"changed in variant {variant}".ljust(74)
        lines.append(f"{i:04d} {text}\n")
    return "".join(lines)


def build_history(git: Git, work: Path) -> Path:
    """Build, in a new non-bare repository ``work``, the sample history the tests push around.

    ::

        c1 -- c1b -- c2 -- c4 -------- M5 -- c6    main   (M5 merges feature; HEAD -> main)
                      \\     \\        /
                       \\     c8      /           release/1.x
                        c3 ----------+-- c7       feature

    Tags: ``light`` (lightweight, c2), ``v1.0`` (annotated, M5), ``v0.9`` (annotated, c8),
    ``v1.0-nested`` (annotated tag of the tag v1.0: peels through two tag objects) and
    ``blob-tag`` (annotated tag of a blob, so peeling must not assume a commit).
    ``data/big.txt`` (160 KB) changes in c2, c4 and c6, so packs hold deltas; ``tools/run.sh`` is
    executable. Dates are fixed, so every object id is the same on every run.
    """
    git("init", "-q", "-b", "main", work)
    clock = count(1_700_000_000, 60)

    def commit(message: str, files: Mapping[str, str]) -> None:
        for path, content in files.items():
            target = work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            git("add", "--", path, cwd=work)
        git("commit", "-q", "-m", message, cwd=work, env=dates(next(clock)))

    def tag(*args: str) -> None:
        git("tag", *args, cwd=work, env=dates(next(clock)))

    commit(
        "c1: initial commit",
        {
            "README.md": "# sample\n\nA repository for govc's interop tests.\n",
            "src/hello.txt": "Hello, world!\n",
            "src/colors.txt": "red\ngreen\nblue\n",
            "tools/run.sh": "#!/bin/sh\necho run\n",
        },
    )
    (work / "tools/run.sh").chmod(0o755)
    git("add", "tools/run.sh", cwd=work)
    commit("c1b: make tools/run.sh executable", {})
    commit("c2: add data/big.txt", {"data/big.txt": big_text(0)})
    tag("light")
    git("checkout", "-q", "-b", "feature", cwd=work)
    commit("c3: add the feature", {"src/feature.txt": "feature flag: on\n"})
    git("checkout", "-q", "main", cwd=work)
    commit(
        "c4: greet politely, edit big",
        {
            "src/hello.txt": "Hello, world! How are you?\n",
            "data/big.txt": big_text(1),
        },
    )
    git("checkout", "-q", "-b", "release/1.x", cwd=work)
    commit("c8: release colors", {"src/colors.txt": "red\ngreen\nblue\ncyan\n"})
    tag("-a", "v0.9", "-m", "Version 0.9")
    git("checkout", "-q", "main", cwd=work)
    git(
        "merge",
        "-q",
        "--no-ff",
        "-m",
        "M5: merge branch 'feature'",
        "feature",
        cwd=work,
        env=dates(next(clock)),
    )
    tag("-a", "v1.0", "-m", "Version 1.0")
    tag("-a", "v1.0-nested", "-m", "A tag of the tag v1.0", "v1.0")
    tag("-a", "blob-tag", "-m", "A tag of a blob", git.rev_parse(work, "HEAD:README.md"))
    commit("c6: edit big again", {"data/big.txt": big_text(2)})
    git("checkout", "-q", "feature", cwd=work)
    commit("c7: extend the feature", {"src/feature.txt": "feature flag: on\nlevel: 2\n"})
    git("checkout", "-q", "main", cwd=work)
    return work


@pytest.fixture(scope="session")
def history_template(git_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample history, built once per session (tests get copies)."""
    return build_history(Git(git_home, 2), tmp_path_factory.mktemp("template") / "work")


@pytest.fixture
def history(history_template: Path, tmp_path: Path) -> Path:
    """A private copy of the sample history (a non-bare repository with main checked out)."""
    dest = tmp_path / "src"
    shutil.copytree(history_template, dest, symlinks=True)
    return dest


ALL_REFSPECS: Sequence[str] = ("refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*")


@dataclass(frozen=True)
class Served:
    """A server repository holding the sample history, and the local repo it was pushed from."""

    url: str
    source: Path


@pytest.fixture
def served(git: Git, history: Path, new_repo: Callable[..., str]) -> Served:
    """The sample history pushed (all branches and tags) into a new repository."""
    url = new_repo()
    git("push", "-q", url, *ALL_REFSPECS, cwd=history)
    return Served(url, history)


# --------------------------------------------------------------------------------------------
# Checking, with stock git, what another client pushed


def server_refs(git: Git, url: str) -> dict[str, str]:
    """``{refname: oid}`` of every ref the server lists, without HEAD and peeled entries."""
    listed = git.ls_remote(url)
    return {name: oid for name, oid in listed.items() if name != "HEAD" and not name.endswith("^{}")}


def source_refs(git: Git, source: Path) -> dict[str, str]:
    """``{refname: oid}`` of the branches and tags of a local repository (what it pushed)."""
    return git.refs(source, "refs/heads/", "refs/tags/")


def verify_pushed(
    git: Git,
    url: str,
    dest: Path,
    *,
    branch: str,
    commit: str,
    files: Mapping[str, bytes],
    message: str,
    parent: str | None = None,
) -> Path:
    """Assert, with the real git, that the server's ``branch`` is exactly ``commit``.

    Clones ``url`` into ``dest`` with ``branch`` checked out (``transfer.fsckObjects`` checks
    every object received), runs ``git fsck --strict``, and checks the ref, the commit's
    subject and first parent (``git log``) and the bytes of ``files`` in the work tree.
    Returns the clone.
    """
    git("clone", "-q", "--branch", branch, url, dest)
    git.fsck(dest)
    assert git.rev_parse(dest, f"refs/remotes/origin/{branch}") == commit
    assert git.rev_parse(dest, "HEAD") == commit
    log = git("log", "-n", "1", "--format=%H%x00%P%x00%s", "HEAD", cwd=dest).stdout.strip()
    oid, parents, subject = log.split("\0")
    assert oid == commit, log
    assert subject == message.splitlines()[0], log
    if parent is not None:
        assert parents.split()[:1] == [parent], f"{commit} should have first parent {parent}: {log}"
    for path, content in files.items():
        assert (dest / path).read_bytes() == content, f"{path} differs in a git clone of {url}"
    return dest


# --------------------------------------------------------------------------------------------
# Shallow and partial clones; raw protocol v2 requests


def shallow_commits(repo: Path) -> set[str]:
    """The commit ids listed in the shallow file of ``repo`` (empty when it has full history)."""
    git_dir = repo / ".git" if (repo / ".git").is_dir() else repo
    path = git_dir / "shallow"
    return set(path.read_text().split()) if path.exists() else set()


def objects_present_and_missing(git: Git, repo: Path, *revs: str) -> tuple[set[str], set[str]]:
    """(present, missing) object ids reachable from ``revs`` (default ``--all``) in ``repo``.

    ``rev-list --missing=print`` never fetches lazily, so this shows what a partial clone holds
    without changing it. Objects below a missing tree are in neither set (git cannot see them).
    """
    out = git("rev-list", "--objects", "--missing=print", *(revs or ("--all",)), cwd=repo).stdout
    present: set[str] = set()
    missing: set[str] = set()
    for line in out.splitlines():
        oid = line.split(" ", 1)[0]
        if oid.startswith("?"):
            missing.add(oid[1:])
        else:
            present.add(oid)
    return present, missing


def object_types(git: Git, repo: Path, oids: Sequence[str] | set[str]) -> dict[str, str]:
    """``{oid: type}`` for objects that ``repo`` holds (never ask for a missing one: it would be
    fetched lazily in a partial clone)."""
    if not oids:
        return {}
    out = git(
        "cat-file", "--batch-check=%(objectname) %(objecttype)", cwd=repo, input="\n".join(oids) + "\n"
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def stock_upload_pack_url(git: Git, source: Path) -> str:
    """A ``file://`` URL to ``source`` served by stock git's own upload-pack, as an oracle.

    Running the same clone or fetch against it shows what stock git hands out for the same
    request. Filters and wants by id are enabled as on the reference server (the client's
    ``-c`` options do not reach a local upload-pack, so they go in the repository's config).
    """
    for key in ("uploadpack.allowFilter", "uploadpack.allowAnySHA1InWant"):
        git("config", key, "true", cwd=source)
    return source.resolve().as_uri()


FLUSH_PKT, DELIM_PKT, RESPONSE_END_PKT = 0, 1, 2


def pkt_line(payload: str | bytes) -> bytes:
    """One pkt-line carrying ``payload`` (a str is encoded as UTF-8)."""
    data = payload.encode() if isinstance(payload, str) else payload
    return b"%04x" % (len(data) + 4) + data


def parse_pkt_lines(data: bytes) -> list[bytes | int]:
    """Split a pkt-line stream: payloads as bytes, special packets as ``FLUSH_PKT`` (0),
    ``DELIM_PKT`` (1) or ``RESPONSE_END_PKT`` (2). Trailing bytes that are not a whole
    pkt-line (e.g. a pack) are returned as one last bytes item."""
    items: list[bytes | int] = []
    pos = 0
    while pos < len(data):
        head = data[pos : pos + 4]
        try:
            size = int(head, 16)
        except ValueError:
            items.append(data[pos:])
            break
        if size < 4:
            items.append(size)
            pos += 4
            continue
        items.append(data[pos + 4 : pos + size])
        pos += size
    return items


def upload_pack_v2(url: str, body: bytes) -> tuple[int, bytes]:
    """POST a protocol v2 request to ``url``'s ``git-upload-pack`` and return (status, body)."""
    return http_request(
        "POST",
        f"{url}/git-upload-pack",
        body,
        {
            "Content-Type": "application/x-git-upload-pack-request",
            "Accept": "application/x-git-upload-pack-result",
            "Git-Protocol": "version=2",
        },
    )


def v2_capabilities(url: str) -> list[str]:
    """The capability lines of ``url``'s protocol v2 advertisement (``version 2`` excluded)."""
    status, body = http_request(
        "GET", f"{url}/info/refs?service=git-upload-pack", headers={"Git-Protocol": "version=2"}
    )
    assert status == 200, (status, body[:500])
    lines = [item for item in parse_pkt_lines(body) if isinstance(item, bytes)]
    text = [line.decode().rstrip("\n") for line in lines]
    assert "version 2" in text, f"no v2 advertisement: {text}"
    return [line for line in text if line != "version 2" and not line.startswith("# service=")]


@pytest.fixture(scope="session")
def stock_server(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Stock git's own server (git http-backend under lighttpd), started beside the server under
    test for tests that must pass against both; skipped where lighttpd is not installed."""
    if server.is_reference:
        yield server
        return
    yield from _start_http_backend(tmp_path_factory.mktemp("stock-server"))

from tests.pgserver import pg_dsn, postgres  # noqa: E402, F401  (a real PostgreSQL server)
