"""Running git (and other child processes) for the benchmarks, isolated and killable.

Every client command runs with the user's and the system's git configuration switched off and
with HTTP proxies removed, so the numbers do not depend on whoever runs them.  Commands run in
their own process group: git's HTTP transport forks ``git-remote-http``, and a timeout must kill
that helper too, or a hung server would leave processes behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
TAIL_LINES = 15


class CommandError(RuntimeError):
    """A command failed or timed out; the message carries the tail of its output."""


@dataclass(frozen=True)
class Timed:
    """Result of a timed command: wall seconds and captured output."""

    seconds: float
    stdout: str
    stderr: str


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment without proxies or personal git config, so runs are comparable."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS and not k.startswith("GIT_")}
    env.update(
        {
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "LC_ALL": "C",
            "TZ": "UTC",
        }
    )
    env.update(extra or {})
    return env


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """Last few lines of a command's output: enough to see the error, short enough to report."""
    return "\n".join(text.strip().splitlines()[-lines:])


def kill_group(proc: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 5.0) -> None:
    """Terminate a process we started and everything in its process group, then reap it."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run(
    args: Sequence[str],
    cwd: Path | None = None,
    timeout: float = 300.0,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> Timed:
    """Run a command, time it, raise :class:`CommandError` on failure or timeout."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(args),
        cwd=cwd,
        env=env or clean_env(),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(input=stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc, grace=1.0)
        out, err = proc.communicate()
        raise CommandError(f"timed out after {timeout:.0f}s: {' '.join(args)}\n{tail(err)}") from None
    finally:
        kill_group(proc, grace=1.0)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise CommandError(f"exit {proc.returncode}: {' '.join(args)}\n{tail(err or out)}")
    return Timed(seconds, out, err)


def git(
    *args: str, cwd: Path | None = None, timeout: float = 300.0, env: dict[str, str] | None = None
) -> str:
    """Run an untimed helper git command (``env`` adds variables) and return its stdout."""
    return run(["git", *args], cwd=cwd, timeout=timeout, env=clean_env(env)).stdout
