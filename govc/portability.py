"""Moving repositories between govc and stock git: ``govc import`` and ``govc export``.

Import asks the git binary for one pack of everything reachable (git knows its own object
store best, loose objects, alternates and all) and takes it through the same indexing and
connectivity checks as a push. Export writes a bare repository git reads as its own: one pack of
everything reachable with its ``.idx``, ``packed-refs`` with peeled tags, and ``HEAD``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from govc.registry import normalize_name
from govc.repository import Repository
from protocol.packwriter import PackStats, generate_pack
from storage.disk import DataDirectory, git_index, write_durably
from storage.errors import StorageError
from storage.graph import LinkCollector
from storage.interfaces import RefUpdate
from storage.packs import OBJ_TAG, index_pack


class PortabilityError(StorageError):
    """An import or export that cannot be done; the message says why."""


def _git(path: Path, *args: str, stdin: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(
            ["git", "-C", str(path), *args], input=stdin, capture_output=True, check=False,
            env={"GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "PATH": "/usr/bin:/bin"},
        )
    except FileNotFoundError:
        raise PortabilityError("import needs the git binary on PATH") from None
    if done.returncode != 0:
        raise PortabilityError(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


Progress = Callable[[int, int], None]  # (done, total), for progress bars


def import_repository(
    directory: DataDirectory, source: Path, name: str | None = None, progress: Progress | None = None
) -> Repository:
    """Load the git repository at ``source`` (bare or not) into ``directory`` as ``name``."""
    source = Path(source)
    if not source.exists():
        raise PortabilityError(f"{source} does not exist")
    git_dir = Path(_git(source, "rev-parse", "--absolute-git-dir").decode().strip())
    if name is None:
        base = git_dir.name if git_dir.name != ".git" else git_dir.parent.name
        name = base[:-4] if base.endswith(".git") else base
    name = normalize_name(name)
    if name in directory.repo_names():
        raise PortabilityError(f"repository '{name}' already exists in {directory.path}")
    refs: dict[str, bytes] = {}
    for line in _git(source, "for-each-ref", "--format=%(objectname) %(refname)").splitlines():
        oid, ref = line.split(b" ", 1)
        refs[ref.decode()] = oid
    try:
        head = _git(source, "symbolic-ref", "-q", "HEAD").decode().strip()
    except PortabilityError:
        head = ""  # a detached HEAD: keep the default

    try:
        directory.create_repo(name)
        return _fill(directory, name, source, refs, head, progress)
    except BaseException:
        directory.delete_repo(name)  # a failed import leaves nothing behind
        raise


def _fill(
    directory: DataDirectory, name: str, source: Path, refs: dict[str, bytes], head: str,
    progress: Progress | None,
) -> Repository:
    repo = Repository.restore(name, directory.backend(name))
    if refs:
        pack_data = _git(source, "pack-objects", "--all", "--stdout", "--delta-base-offset", "-q",
                         stdin=b"")
        collected = LinkCollector(repo.graph)
        total = int.from_bytes(pack_data[8:12], "big") if len(pack_data) >= 12 else 0
        seen = [0]

        def visit(oid: bytes, type_num: int, content: bytes) -> None:
            collected(oid, type_num, content)
            seen[0] += 1
            if progress is not None and (seen[0] % 1024 == 0 or seen[0] == total):
                progress(seen[0], total)

        pack = index_pack(pack_data, repo.objects.get, visit)
        missing = collected.first_missing(refs.values(), repo.objects)
        if missing is not None:
            raise PortabilityError(f"{source} is incomplete: object {missing.decode()} is missing")
        repo.add_pack(pack)
        repo.graph.adopt(collected)
        repo.update_refs([RefUpdate(r, oid, None) for r, oid in refs.items()],
                         who="govc import", message=f"import from {source}", source="import")
    if head.startswith("refs/"):
        repo.set_head(head)
    return repo


def export_repository(repo: Repository, dest: Path, progress: Progress | None = None) -> Path:
    """Write ``repo`` as a bare git repository at ``dest`` (which must not exist or be empty)."""
    try:
        return _export(repo, Path(dest), progress)
    except OSError as e:
        raise PortabilityError(f"cannot write {dest}: {e.strerror or e}") from None


def _export(repo: Repository, dest: Path, progress: Progress | None) -> Path:
    if dest.exists() and any(dest.iterdir()):
        raise PortabilityError(f"{dest} exists and is not empty")
    pack_dir = dest / "objects" / "pack"
    for sub in (pack_dir, dest / "objects" / "info", dest / "refs" / "heads", dest / "refs" / "tags"):
        sub.mkdir(parents=True, exist_ok=True)
    refs = repo.refs.items()
    if refs:
        objects, _ = repo.graph.objects_to_send([oid for _, oid in refs], [])
        stats = PackStats()
        chunks = []
        for chunk in generate_pack(repo.objects, objects, stats=stats):
            chunks.append(chunk)
            if progress is not None:
                progress(stats.objects, len(objects))
        data = b"".join(chunks)
        pack = index_pack(data)
        write_durably(pack_dir / f"pack-{pack.name}.idx", git_index(pack))
        write_durably(pack_dir / f"pack-{pack.name}.pack", pack.data)
    lines = [b"# pack-refs with: peeled fully-peeled sorted \n"]
    for ref, oid in refs:
        lines.append(oid + b" " + ref.encode() + b"\n")
        if repo.objects.type_of(oid) == OBJ_TAG:
            lines.append(b"^" + repo.graph.peel(oid)[0] + b"\n")
    write_durably(dest / "packed-refs", b"".join(lines))
    write_durably(dest / "HEAD", f"ref: {repo.head_target or 'refs/heads/main'}\n".encode())
    write_durably(dest / "config", b"[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n"
                                   b"\tbare = true\n")
    write_durably(dest / "description", f"govc export of {repo.name}\n".encode())
    return dest
