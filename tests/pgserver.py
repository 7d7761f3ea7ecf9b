"""A real PostgreSQL server for the tests, started from the machine's own binaries.

Tests that exercise the PostgreSQL backend need the genuine server: compare-and-swap under
concurrent transactions, durability across a restart and the failure of a dead connection are
exactly the behaviours a stand-in would get wrong. :class:`PostgresServer` runs ``initdb`` into a
temporary directory and ``pg_ctl`` on it, listening on 127.0.0.1 at a free port (and on a unix
socket inside the directory) with trust authentication and ``fsync`` left on, so a test can also
stop, restart or SIGKILL it.

PostgreSQL refuses to run as root, so when the tests run as root the cluster directory is handed to
the ``postgres`` user and the server's programs run as that user.

Fixtures: ``postgres`` (one cluster per session) and ``pg_dsn`` (a fresh database per test).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Where Debian and Ubuntu install the server's programs (not on PATH by default).
DEBIAN_BIN_DIRS = "/usr/lib/postgresql/*/bin"
SUPERUSER = "govc"
START_TIMEOUT = 60


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, newest version first.

    ``pg_ctl`` on PATH may be a symlink (Debian's wrappers, or a link in /usr/local/bin); it
    starts the ``postgres`` found beside its real path, so the resolved directory is the one used.
    """
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)

    def version(p: Path) -> tuple[int, ...]:
        name = p.parent.name
        return tuple(int(x) for x in name.split(".") if x.isdigit()) or (0,)

    candidates += sorted(Path("/").glob(DEBIAN_BIN_DIRS.lstrip("/")), key=version, reverse=True)
    for directory in candidates:
        if all((directory / prog).is_file() for prog in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresUnavailableForTests(RuntimeError):
    """No usable PostgreSQL installation: the tests that need one are skipped with this reason."""


class PostgresServer:
    """One throw-away PostgreSQL cluster: ``start()``, ``stop()``, ``kill()``, ``create_database()``."""

    def __init__(self, bin_dir: Path | None = None, root: Path | None = None) -> None:
        found = bin_dir or find_bin_dir()
        if found is None:
            raise PostgresUnavailableForTests(
                "PostgreSQL server binaries not found (looked for pg_ctl on PATH and in "
                f"{DEBIAN_BIN_DIRS}); install Debian's postgresql package to run these tests"
            )
        self.bin_dir = found
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            try:
                self._account = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailableForTests(
                    "running as root, and PostgreSQL refuses root: a 'postgres' user is needed"
                ) from None
        # Not under pytest's tmp_path: that lives in a root-only directory the postgres user
        # cannot traverse. /tmp is world-searchable, and the short path keeps the unix socket's
        # name under the kernel's 107-byte limit.
        self.root = Path(tempfile.mkdtemp(prefix="govc-pg-", dir=root))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_file = self.root / "server.log"
        self.port = 0
        self.host = "127.0.0.1"
        self._databases = itertools.count(1)
        self.socket_dir.mkdir()
        if self._as_postgres:
            for path in (self.root, self.socket_dir):
                os.chown(path, self._account.pw_uid, self._account.pw_gid)
        self._initdb()

    # -- running the server's programs ----------------------------------------------------

    def _run(self, program: str, *args: str, timeout: float = START_TIMEOUT) -> None:
        command = [str(self.bin_dir / program), *args]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        extra: dict[str, object] = {}
        if self._as_postgres:
            env["HOME"] = self._account.pw_dir
            extra = {"user": self._account.pw_uid, "group": self._account.pw_gid, "extra_groups": []}
        done = subprocess.run(command, env=env, cwd=self.root, capture_output=True, text=True,
                              timeout=timeout, check=False, **extra)  # type: ignore[call-overload]
        if done.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-4000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n{log}"
            )

    def _initdb(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                  "--no-locale", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# govc tests\n"
                f"listen_addresses = '{self.host}'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "fsync = on\n"
                "synchronous_commit = on\n"
                "max_connections = 100\n"
                "shared_buffers = 32MB\n"
                "log_min_messages = warning\n"
            )

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start (or restart) on the same data; the port is kept once chosen, so DSNs stay valid."""
        if not self.port:
            self.port = free_port()
        for attempt in range(3):
            log_size = self.log_file.stat().st_size if self.log_file.exists() else 0
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_file), "-w",
                          "-t", str(START_TIMEOUT), "-o", f"-p {self.port}", "start")
                return
            except RuntimeError:
                with open(self.log_file, "rb") as f:
                    f.seek(log_size)
                    taken = b"already in use" in f.read()
                if attempt == 2 or not taken:
                    raise
                self.port = free_port()  # another process took the port between our check and now

    def stop(self) -> None:
        """A clean, fast shutdown: open connections are cut, the data is kept."""
        if self.running():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would, and wait until its backends are gone too
        (they notice its death and exit; a restart before then finds their shared memory)."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        children = [p for p in _all_pids() if _parent_of(p) == pid]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in [pid, *children]):
            time.sleep(0.05)
        if _exists(pid):
            # A zombie nobody has reaped yet (the postmaster's parent, pg_ctl, is long gone and a
            # container's init may be slow to reap): PostgreSQL would take its pid for a running
            # postmaster and refuse to start, so the stale lock files go, as an admin would do.
            (self.data / "postmaster.pid").unlink(missing_ok=True)
            for lock in self.socket_dir.glob(".s.PGSQL.*.lock"):
                lock.unlink(missing_ok=True)

    def postmaster_pid(self) -> int | None:
        try:
            first = (self.data / "postmaster.pid").read_text().splitlines()[0]
        except (OSError, IndexError):
            return None
        pid = int(first)
        return pid if _alive(pid) else None

    def running(self) -> bool:
        return self.postmaster_pid() is not None

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        if self.running():
            self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases -----------------------------------------------------------------------

    def dsn_for(self, database: str) -> str:
        return f"host={self.host} port={self.port} user={SUPERUSER} dbname={database} connect_timeout=5"

    @property
    def dsn(self) -> str:
        """The cluster's default database (``postgres``)."""
        return self.dsn_for("postgres")

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; returns its DSN."""
        import psycopg

        name = name or f"govc_test_{os.getpid()}_{next(self._databases)}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _alive(pid: int) -> bool:
    """Running and not a zombie (a killed postmaster may linger unreaped under a container's init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return _exists(pid)
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the whole session (started once: initdb costs seconds)."""
    try:
        server = PostgresServer()
    except PostgresUnavailableForTests as e:
        pytest.skip(str(e))
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_dsn(postgres: PostgresServer) -> Iterator[str]:
    """A fresh database of the session's cluster for one test, dropped afterwards."""
    if not postgres.running():
        postgres.start()  # an earlier test stopped or killed it and failed before restarting
    dsn = postgres.create_database()
    name = dsn.split("dbname=", 1)[1].split()[0]
    yield dsn
    if not postgres.running():
        postgres.start()
    postgres.drop_database(name)
