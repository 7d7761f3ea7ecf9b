"""Git-compatible hook executables: ``pre-receive``, ``update`` and ``post-receive``.

They live where a bare repository keeps them, one directory per repository, plus a server-wide
one: ``<data>/hooks/<repo>/<hook-name>`` and ``<data>/hooks/_global/<hook-name>`` (both run,
global first). They are looked up on every push, so installing one needs no restart. Each gets
git's interface — stdin lines ``<old> <new> <ref>``, ``GIT_PUSH_OPTION_COUNT`` and
``GIT_PUSH_OPTION_<n>``, and a ``GIT_OBJECT_DIRECTORY`` holding the pushed objects with the
repository's own objects as alternates — so existing hook scripts work unchanged. Their output
reaches the pusher as ``remote:`` lines. A hook that runs too long is killed and counts as a
refusal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from storage.disk import git_index, write_durably
from storage.packs import StoredPack

HOOK_NAMES = ("pre-receive", "update", "post-receive")
GLOBAL = "_global"
#: Seconds a hook may run before it is killed (and the push refused).
HOOK_TIMEOUT = 60.0
MAX_OUTPUT = 64 << 10


@dataclass(frozen=True, slots=True)
class HookResult:
    ok: bool
    output: list[str]  # lines for the pusher's terminal


def hook_paths(hooks_dir: Path | None, repo: str, name: str) -> list[Path]:
    """Executable hooks named ``name`` for ``repo``: the server-wide one first."""
    if hooks_dir is None:
        return []
    found = []
    for where in (hooks_dir / GLOBAL / name, hooks_dir / repo / name):
        if where.is_file() and os.access(where, os.X_OK):
            found.append(where)
    return found


def install_hook(hooks_dir: Path, repo: str, name: str, script: Path) -> Path:
    """Copy ``script`` into place as ``name`` for ``repo`` (``_global`` for every repository)."""
    if name not in HOOK_NAMES:
        raise ValueError(f"unknown hook {name!r}; govc runs {', '.join(HOOK_NAMES)}")
    target = hooks_dir / repo / name
    target.parent.mkdir(parents=True, exist_ok=True)
    write_durably(target, script.read_bytes())
    target.chmod(0o755)
    return target


@contextmanager
def object_directory(pack: StoredPack | None, alternates: Path | None) -> Iterator[Path]:
    """A temporary object directory holding the pushed (quarantined) pack, with the repository's
    objects as alternates, so ``git log <new>`` works inside a hook as it does with git."""
    tmp = Path(tempfile.mkdtemp(prefix="govc-quarantine-"))
    try:
        (tmp / "pack").mkdir()
        (tmp / "info").mkdir()
        if pack is not None:
            (tmp / "pack" / f"pack-{pack.name}.pack").write_bytes(pack.data)
            (tmp / "pack" / f"pack-{pack.name}.idx").write_bytes(git_index(pack))
        if alternates is not None and alternates.exists():
            (tmp / "info" / "alternates").write_text(f"{alternates}\n")
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_hook(
    path: Path,
    args: Sequence[str],
    stdin: bytes,
    *,
    repo_dir: Path | None,
    object_dir: Path | None,
    push_options: Sequence[str],
    timeout: float = HOOK_TIMEOUT,
) -> HookResult:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_PUSH_OPTION_COUNT"] = str(len(push_options))
    for i, option in enumerate(push_options):
        env[f"GIT_PUSH_OPTION_{i}"] = option
    if repo_dir is not None:
        env["GIT_DIR"] = str(repo_dir)
    if object_dir is not None:
        env["GIT_OBJECT_DIRECTORY"] = str(object_dir)
        env["GIT_QUARANTINE_PATH"] = str(object_dir)
        if repo_dir is not None:
            env["GIT_ALTERNATE_OBJECT_DIRECTORIES"] = str(repo_dir / "objects")
    try:
        done = subprocess.run(
            [str(path), *args], input=stdin, capture_output=True, timeout=timeout, env=env,
            cwd=str(repo_dir) if repo_dir is not None and repo_dir.exists() else None,
        )
    except subprocess.TimeoutExpired as e:
        text = ((e.stdout or b"") + (e.stderr or b""))[:MAX_OUTPUT].decode("utf-8", "replace")
        late = f"error: {path.name} hook timed out after {timeout:g}s"
        return HookResult(False, [*text.splitlines(), late])
    except OSError as e:
        return HookResult(False, [f"error: cannot run {path.name} hook: {e.strerror or e}"])
    text = (done.stdout + done.stderr)[:MAX_OUTPUT].decode("utf-8", "replace")
    return HookResult(done.returncode == 0, text.splitlines())
