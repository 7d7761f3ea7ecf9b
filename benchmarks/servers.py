"""The three servers under comparison, each started on a free port of 127.0.0.1.

* ``govc``: this project, ``python -m govc serve``; the corpus is loaded by pushing it, because a
  memory-first server has no directory of repositories to copy into.
* ``http-backend``: stock Git's ``git http-backend`` CGI behind lighttpd, the setup Git's own
  documentation describes; repositories are plain bare directories.
* ``dulwich``: dulwich's smart-HTTP WSGI application (``benchmarks/dulwich_server.py``).

Every server holds two repositories after :meth:`Server.start`: ``corpus`` (read workloads) and
``small`` (the 1-commit push target, kept apart so pushes never change what fetches see).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from pathlib import Path

from gitcmd import CommandError, clean_env, git, kill_group, run, tail

BENCH_DIR = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REPO_ROOT = BENCH_DIR.parent
READY_TIMEOUT = 60.0
SEED_REPOS = ("corpus", "small")
LOG_MARKER = "--- server log ---"
ALL_REFS = ("refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerError(RuntimeError):
    """The server could not be started or seeded; every workload on it is then 'failed'."""


def free_port() -> int:
    """Ask the kernel for an unused port (tiny race before the server binds it; acceptable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, body: dict[str, str] | None = None, timeout: float = 5.0) -> int:
    """Minimal HTTP request returning the status code (errors become their status, or 0)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


class Server(ABC):
    """A server process we own: start, seed, address repositories, stop."""

    name = "server"
    seeds_by_push = False  # whether seed() pushes the corpus (worth reporting how long it took)
    rss_note = ""  # what the peak RSS figure covers, when not the whole server

    def __init__(self, workdir: Path, corpus: Path, timeout: float, label: str | None = None) -> None:
        """Keep all server state (repositories, config, logs) under ``workdir/<label or name>``."""
        self.dir = workdir / (label or self.name)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.corpus = corpus
        self.timeout = timeout
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "server.log"
        self.error: str | None = None  # set when start-up failed
        self.seed_seconds: float | None = None
        self._protocol: str | None = None

    @abstractmethod
    def command(self) -> list[str]:
        """The server's command line."""

    @abstractmethod
    def ready_url(self) -> str:
        """A URL answering 200 once the server can serve."""

    @abstractmethod
    def url(self, repo: str) -> str:
        """Clone URL of repository ``repo`` (without ``.git``)."""

    def env(self) -> dict[str, str]:
        """Environment for the server process."""
        return clean_env()

    def cwd(self) -> Path:
        """Working directory for the server process."""
        return self.dir

    def prepare(self) -> None:
        """Lay out files the server needs before it starts (default: nothing)."""
        return None  # optional hook

    def seed(self) -> None:
        """Give the server the ``corpus`` and ``small`` repositories (after it is ready)."""
        return None  # optional hook

    def create_empty(self, repo: str) -> None:
        """Create an empty repository ``repo`` for a full push."""
        return None  # optional hook

    def start(self) -> None:
        """Start, wait until ready, then seed; on failure record the error instead of raising."""
        try:
            self.prepare()
            log = self.log_path.open("wb")
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.cwd(),
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            self.wait_ready()
            started = time.perf_counter()
            self.seed()
            if self.seeds_by_push:
                self.seed_seconds = time.perf_counter() - started
        except (ServerError, CommandError, OSError) as exc:
            self.error = f"server setup failed: {exc}\n{LOG_MARKER}\n{self.log_tail()}"

    def wait_ready(self) -> None:
        """Poll the readiness URL; fail fast if the process exits."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with status {self.proc.returncode}")
            if http("GET", self.ready_url(), timeout=2.0) == 200:
                return
            time.sleep(0.1)
        raise ServerError(f"{self.name} not ready after {READY_TIMEOUT:.0f}s ({self.ready_url()})")

    def alive(self) -> str | None:
        """``None`` while running, else a description of how the process ended."""
        if self.proc is None:
            return "not started"
        code = self.proc.poll()
        return None if code is None else f"{self.name} process exited with status {code}"

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of the server's own output, attached to failure reports."""
        try:
            return tail(self.log_path.read_text(errors="replace"), lines)
        except OSError:
            return ""

    def memory_kib(self, field: str) -> int | None:
        """A /proc memory figure (``VmHWM`` peak, ``VmRSS`` current) of the server process."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def cpu_seconds(self) -> float | None:
        """CPU seconds (user + system) the server has used so far, its reaped children included.

        For lighttpd the children are the ``git http-backend`` CGI processes and the
        ``git upload-pack``/``pack-objects`` they run: each adds its time to its parent's
        ``cutime``/``cstime`` when reaped, so the figure covers the whole server. Clock-tick
        resolution (10 ms).
        """
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        return ticks / CLOCK_TICKS

    def cold_copy(self, workdir: Path) -> Server:
        """A second, not yet started instance serving the same corpus from the same data (a
        fresh process: the "cold" server of the cold-clone workloads)."""
        raise NotImplementedError

    def protocol(self) -> str:
        """Which protocol version the server actually speaks when a client asks for v2 (asked
        once, then remembered)."""
        if self.error is not None:
            return "unknown"
        if self._protocol is None:
            self._protocol = self._ask_protocol()
        return self._protocol

    def _ask_protocol(self) -> str:
        """One ``ls-remote`` with packet tracing: does the server answer ``version 2``?"""
        try:
            trace = run(
                ["git", "-c", "protocol.version=2", "ls-remote", "--heads", self.url("corpus")],
                env=clean_env({"GIT_TRACE_PACKET": "1"}),
                timeout=30,
            ).stderr
        except CommandError:
            return "unknown"
        return "v2" if "git< version 2" in trace else "v0"

    def stop(self) -> None:
        """Kill the server and its children (lighttpd's CGI processes, for instance)."""
        if self.proc is not None:
            kill_group(self.proc)


class DirectoryServer(Server):
    """A server reading bare repositories from a directory: seeding is a copy."""

    shared_root: Path | None = None  # a cold copy serves its original's repositories

    def root(self) -> Path:
        """Directory holding ``<name>.git`` repositories."""
        return self.shared_root or self.dir / "repos"

    def prepare(self) -> None:
        """Copy the corpus in as ``corpus.git`` and ``small.git`` before starting."""
        if self.shared_root is not None:
            return
        self.root().mkdir(parents=True, exist_ok=True)
        for repo in SEED_REPOS:
            shutil.copytree(self.corpus, self.root() / f"{repo}.git", symlinks=True)

    def cold_copy(self, workdir: Path) -> Server:
        """Same class, same repositories directory, its own port and process."""
        copy = type(self)(workdir, self.corpus, self.timeout, label=f"{self.name}-cold")
        copy.shared_root = self.root()
        return copy

    def create_empty(self, repo: str) -> None:
        """``git init --bare``: these servers never create repositories on push."""
        git("init", "--quiet", "--bare", "--initial-branch=main", str(self.root() / f"{repo}.git"))

    def ready_url(self) -> str:
        """The ref advertisement of the corpus proves the whole stack works."""
        return self.url("corpus") + "/info/refs?service=git-upload-pack"


class HttpBackendServer(DirectoryServer):
    """``git http-backend`` as CGI under lighttpd, configured as Git's documentation shows."""

    name = "http-backend"
    rss_note = "lighttpd only; git runs as a new process per request"

    def url(self, repo: str) -> str:
        """Repositories live below the ``/git`` alias."""
        return f"http://127.0.0.1:{self.port}/git/{repo}.git"

    def prepare(self) -> None:
        """Write the lighttpd config (foreground, CGI, per-run paths) and copy repositories."""
        ensure_lighttpd()
        super().prepare()
        (self.dir / "www").mkdir(exist_ok=True)
        (self.dir / "upload").mkdir(exist_ok=True)
        backend = Path(git("--exec-path").strip()) / "git-http-backend"
        (self.dir / "lighttpd.conf").write_text(self.config(backend))

    def config(self, backend: Path) -> str:
        """lighttpd config; request bodies are buffered because CGI needs a Content-Length."""
        return f"""\
server.modules = ("mod_alias", "mod_setenv", "mod_cgi")
server.bind = "127.0.0.1"
server.port = {self.port}
server.document-root = "{self.dir / "www"}"
server.errorlog = "{self.dir / "error.log"}"
server.upload-dirs = ("{self.dir / "upload"}")
server.stream-response-body = 2
alias.url = ("/git" => "{backend}")
$HTTP["url"] =~ "^/git" {{
  cgi.assign = ("" => "")
  setenv.add-environment = (
    "GIT_PROJECT_ROOT" => "{self.root()}",
    "GIT_HTTP_EXPORT_ALL" => "",
    "GIT_HTTP_MAX_REQUEST_BUFFER" => "1000M",
    "GIT_CONFIG_NOSYSTEM" => "1",
    "GIT_CONFIG_COUNT" => "1",
    "GIT_CONFIG_KEY_0" => "http.receivepack",
    "GIT_CONFIG_VALUE_0" => "true",
  )
}}
"""

    def command(self) -> list[str]:
        """lighttpd in the foreground (``-D``) so we own and can kill it."""
        return [ensure_lighttpd(), "-D", "-f", str(self.dir / "lighttpd.conf")]


class DulwichServer(DirectoryServer):
    """dulwich's WSGI smart-HTTP app under a threading wsgiref server."""

    name = "dulwich"

    def url(self, repo: str) -> str:
        """Repositories are served at the root."""
        return f"http://127.0.0.1:{self.port}/{repo}.git"

    def command(self) -> list[str]:
        """Our small launcher around ``dulwich.web.make_wsgi_chain``."""
        return [
            sys.executable,
            str(BENCH_DIR / "dulwich_server.py"),
            "--root",
            str(self.root()),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]


class GovcServer(Server):
    """``python -m govc serve``: empty data directory, corpus loaded by ``git push``."""

    name = "govc"
    seeds_by_push = True

    def __init__(
        self, workdir: Path, corpus: Path, timeout: float, python: str, label: str | None = None,
        data: Path | None = None, seed_repos: tuple[str, ...] = SEED_REPOS,
    ) -> None:
        """``python`` is the interpreter of the venv govc is installed in; ``data`` an existing
        data directory to serve (default: a new one under the server's directory), and
        ``seed_repos`` the repositories :meth:`seed` pushes the corpus into."""
        super().__init__(workdir, corpus, timeout, label)
        self.python = python
        self.data = data or self.dir / "data"
        self.seed_repos = seed_repos
        self.api_create: str | None = None  # how create_empty behaved, for the report

    def cold_copy(self, workdir: Path) -> Server:
        """A new ``govc serve`` on a data directory that already holds the corpus (pushed once,
        by a throw-away server, when first asked for): start-up loads it from disk, as after a
        restart."""
        data = workdir / "govc-cold-data"
        if not data.exists():
            seeder = GovcServer(workdir, self.corpus, self.timeout, self.python, label="govc-seeder",
                                data=data, seed_repos=("corpus",))
            try:
                seeder.start()
            finally:
                seeder.stop()
            if seeder.error is not None:
                shutil.rmtree(data, ignore_errors=True)
                raise ServerError(seeder.error)
        return GovcServer(workdir, self.corpus, self.timeout, self.python, label="govc-cold", data=data,
                          seed_repos=())

    def command(self) -> list[str]:
        """The serve contract: ``--data DIR --host H --port P``."""
        data = self.data
        data.mkdir(parents=True, exist_ok=True)
        return [
            self.python, "-m", "govc", "serve",
            "--data", str(data), "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip

    def cwd(self) -> Path:
        """Run from the repository so ``-m govc`` resolves even without an install."""
        return REPO_ROOT

    def env(self) -> dict[str, str]:
        """Unbuffered output so the log tail is current when something fails."""
        return clean_env({"PYTHONUNBUFFERED": "1"})

    def ready_url(self) -> str:
        """The contract's health endpoint."""
        return f"http://127.0.0.1:{self.port}/healthz"

    def url(self, repo: str) -> str:
        """Repositories at ``/<name>.git``."""
        return f"http://127.0.0.1:{self.port}/{repo}.git"

    def seed(self) -> None:
        """Push every branch and tag of the corpus into ``corpus`` and ``small``."""
        for repo in self.seed_repos:
            self.create_empty(repo)
            run(
                ["git", "push", "--quiet", self.url(repo), *ALL_REFS],
                cwd=self.corpus,
                timeout=self.timeout,
            )

    def create_empty(self, repo: str) -> None:
        """``POST /api/v1/repos``; if that is missing, rely on push-to-create instead."""
        status = http("POST", f"http://127.0.0.1:{self.port}/api/v1/repos", {"name": repo})
        self.api_create = "201" if status == 201 else f"status {status}, relying on push-to-create"


SERVER_NAMES = ("govc", "http-backend", "dulwich")


def make_servers(
    names: list[str], workdir: Path, corpus: Path, timeout: float, govc_python: str
) -> list[Server]:
    """Instantiate the requested servers (not yet started), in canonical order."""
    servers: list[Server] = []
    for name in SERVER_NAMES:
        if name not in names:
            continue
        if name == "govc":
            servers.append(GovcServer(workdir, corpus, timeout, govc_python))
        elif name == "http-backend":
            servers.append(HttpBackendServer(workdir, corpus, timeout))
        else:
            servers.append(DulwichServer(workdir, corpus, timeout))
    return servers


def default_govc_python() -> str:
    """The project venv's interpreter if present, else the one running the benchmark."""
    venv = REPO_ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def lighttpd_path() -> str | None:
    """Where lighttpd is installed (Debian puts it in /usr/sbin, often not on PATH)."""
    exe = shutil.which("lighttpd") or "/usr/sbin/lighttpd"
    return exe if os.path.exists(exe) else None


def ensure_lighttpd() -> str:
    """Install Debian's lighttpd on first use; the comparison needs stock Git's own server."""
    exe = lighttpd_path()
    if exe is not None:
        return exe
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ServerError("lighttpd is missing: apt-get install -y lighttpd")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "lighttpd"]
    for attempt in ([install], [["apt-get", "update", "-q"], install]):  # update only if needed
        for step in attempt:
            subprocess.run(step, env=env, capture_output=True, check=False, timeout=600)
        exe = lighttpd_path()
        if exe is not None:
            return exe
    raise ServerError("could not install lighttpd with apt-get")


def lighttpd_version() -> str:
    """First line of ``lighttpd -v`` (or 'missing')."""
    exe = lighttpd_path()
    if exe is None:
        return "missing"
    try:
        return run([exe, "-v"], timeout=10).stdout.strip().splitlines()[0]
    except (CommandError, IndexError):
        return "unknown"
