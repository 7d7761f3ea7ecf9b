"""Work-tree commands of the ``govc`` CLI: init, add, commit, branch, checkout, status, log, diff, show,
merge, reality (create/list/promote/drop), at (time travel), clone, push and pull.

A govc work tree is an ordinary git repository: a directory with a ``.git`` directory in git's
own format, so stock ``git log``, ``git status``, ``git show`` and ``git fsck`` work in the same
directory and see the same history. Each command loads the repository into a
:class:`govc.Repository` held in memory (every pack under ``.git/objects/pack`` and every loose
object, the refs from ``.git/refs`` and ``packed-refs``, ``HEAD``), does its work through the
Python API (commits are :meth:`Repository.transaction` commits, branches are ref updates), then
writes back what changed.

What is written, all in git's format:

- new objects as loose objects (``.git/objects/xx/yyyy…``, zlib-compressed, written to a
  temporary file and renamed into place); ``git gc`` may pack them later, govc reads packs too;
- refs as files (``.git/refs/heads/<name>``: the hex id and a newline), ``HEAD`` as
  ``ref: refs/heads/<branch>``, ``.git/config`` with ``repositoryformatversion = 0`` and
  ``bare = false``;
- ``.git/index``, rewritten (with dulwich) after init, add, commit and checkout as HEAD's tree
  plus the paths staged with ``govc add``, so that ``git status`` agrees with ``govc status``.

Where it differs from git:

- The staging area is ``.git/govc-staged`` (JSON: path to ``[blob id, mode]``, or ``null`` for a
  staged deletion); the blobs are written at ``govc add`` time, as git does. govc never reads
  ``.git/index``: changes staged with ``git add`` are invisible to govc (``govc status`` shows
  them as unstaged), and ``govc add`` / ``commit`` / ``checkout`` overwrite git's index.
- ``govc status`` compares the work tree with HEAD's tree plus the staged paths directly, by
  content; ``.gitignore`` is not read (everything outside ``.git`` that is not tracked is
  untracked), and there are no submodules.
- No reflogs are written (``git reflog`` stays empty); a detached HEAD is not supported.
- Commits are dated now in UTC (``+0000``); author and committer are the same identity
  (``--author``, else ``GIT_AUTHOR_NAME``/``GIT_AUTHOR_EMAIL``, else ``user.name``/``user.email``
  from ``.git/config`` then ``~/.gitconfig``).
- ``govc init`` commits whatever the directory already holds (an empty commit if nothing) so that
  branches can be made at once, as in the quick start; ``--no-commit`` leaves the branch unborn.
- Realities are refs under ``refs/realities/`` written to ``.git`` like branches; ephemeral
  realities (memory only) are refused, since each command is its own process.
- ``govc merge`` needs a clean work tree and writes nothing on conflicts (no conflict markers,
  no MERGE_HEAD): the conflicting paths are listed and the exit status is 1.
- ``govc at`` finds the state at a time from commit (committer) dates along the first-parent
  history, not from reflogs; "who changed it" is the newest first-parent commit that changed a path.
- ``clone``, ``push`` and ``pull`` run the ``git`` binary for the transport against ``.git``;
  ``pull`` fetches into a temporary ``refs/govc-pull/<branch>`` (removed afterwards) and merges.
- Revisions are a branch or ref name, ``HEAD``, a full or abbreviated (at least 4 digits) object
  id, optionally followed by ``~N`` or ``^`` (first parents).
"""

from __future__ import annotations

import difflib
import json
import os
import stat
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import click

from govc.repository import Repository
from govc.trees import (
    MODE_EXEC,
    MODE_FILE,
    MODE_GITLINK,
    MODE_LINK,
    Commit,
    Identity,
    load_commit,
    serialize_commit,
)
from storage.disk import write_durably
from storage.errors import StorageError
from storage.interfaces import RefUpdate
from storage.packs import OBJ_BLOB, OBJ_COMMIT, OBJ_TREE, TYPE_NAMES, TYPE_NUMS, index_pack, object_id

Snapshot = dict[str, tuple[bytes, int]]  # path -> (blob id, mode)
HEADS = "refs/heads/"
REALITIES = "refs/realities/"


class WorkTreeError(click.ClickException):
    """One clear ``Error: ...`` line and exit status 1."""


def _info(message: str) -> None:
    """Chatter for people: printed only when stdout is a terminal."""
    if sys.stdout.isatty():
        click.echo(message)


# -- the repository on disk ------------------------------------------------------------------


def find_root(start: Path) -> Path:
    for candidate in (start, *start.parents):
        if (candidate / ".git").is_dir():
            return candidate
    raise WorkTreeError("not a govc repository (no .git here or in any parent directory); run 'govc init'")


class WorkTree:
    """A work tree and its ``.git`` directory, loaded into a memory :class:`Repository`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.git = root / ".git"
        self.repo = Repository(root.name)
        self._load_objects()
        self.disk_refs = self._read_refs()
        head = (self.git / "HEAD").read_text().strip()
        if not head.startswith("ref: refs/"):
            raise WorkTreeError("detached HEAD is not supported; switch to a branch with 'git switch'")
        self.head_ref = head[5:].strip()
        self.repo.refs.load(self.disk_refs, {"HEAD": self.head_ref})
        self._known = set(self.repo.objects.iter_oids())

    @classmethod
    def here(cls) -> WorkTree:
        return cls(find_root(Path.cwd().resolve()))

    def _load_objects(self) -> None:
        objects = self.git / "objects"
        for pack_path in sorted((objects / "pack").glob("*.pack")):
            self.repo.objects.add_pack(index_pack(pack_path.read_bytes(), self.repo.objects.get))
        for sub in sorted(objects.glob("[0-9a-f][0-9a-f]")):
            for loose in sub.iterdir():
                if len(loose.name) != 38:
                    continue
                raw = zlib.decompress(loose.read_bytes())
                header, _, content = raw.partition(b"\x00")
                type_name = header.split(b" ", 1)[0]
                if type_name not in TYPE_NUMS:
                    raise WorkTreeError(f"corrupt loose object {sub.name}{loose.name}")
                self.repo.objects.add_object(TYPE_NUMS[type_name], content)

    def _read_refs(self) -> dict[str, bytes]:
        refs: dict[str, bytes] = {}
        packed = self.git / "packed-refs"
        if packed.exists():
            for line in packed.read_bytes().splitlines():
                if line and not line.startswith((b"#", b"^")):
                    oid, name = line.split(b" ", 1)
                    refs[name.decode()] = oid
        for path in sorted((self.git / "refs").rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                value = path.read_bytes().strip()
                if len(value) == 40:
                    refs[path.relative_to(self.git).as_posix()] = value
        return refs

    def save(self) -> None:
        """Write new objects, then moved refs, then HEAD: a crash leaves at worst unreferenced objects."""
        for oid in set(self.repo.objects.iter_oids()) - self._known:
            path = self.git / "objects" / oid[:2].decode() / oid[2:].decode()
            if path.exists():
                continue
            type_num, content = self.repo.objects.get(oid)
            path.parent.mkdir(exist_ok=True)
            write_durably(path, zlib.compress(b"%s %d\x00" % (TYPE_NAMES[type_num], len(content)) + content))
            path.chmod(0o444)
        self._known = set(self.repo.objects.iter_oids())
        for name, oid in self.repo.refs.items():
            if self.disk_refs.get(name) != oid:
                path = self.git / name
                path.parent.mkdir(parents=True, exist_ok=True)
                write_durably(path, oid + b"\n")
        gone = [name for name in self.disk_refs if self.repo.refs.get(name) is None]
        for name in gone:
            (self.git / name).unlink(missing_ok=True)
        packed = self.git / "packed-refs"
        if gone and packed.exists():
            lines, skip = [], False
            for line in packed.read_bytes().splitlines(keepends=True):
                if line.startswith(b"^") and skip:
                    continue
                skip = not line.startswith((b"#", b"^")) and line.split(b" ", 1)[-1].strip().decode() in gone
                if not skip:
                    lines.append(line)
            write_durably(packed, b"".join(lines))
        self.disk_refs = dict(self.repo.refs.items())
        if self.repo.head_target != self.head_ref:
            self.head_ref = self.repo.head_target or self.head_ref
        write_durably(self.git / "HEAD", f"ref: {self.head_ref}\n".encode())

    # -- refs and revisions ----------------------------------------------------------------

    @property
    def branch(self) -> str:
        return self.head_ref.removeprefix(HEADS)

    def head(self) -> bytes | None:
        return self.repo.refs.get(self.head_ref)

    def resolve(self, rev: str) -> bytes:
        """A commit id for ``rev`` (see the module docstring); WorkTreeError if there is none."""
        base, steps = rev, 0
        while base.endswith("^") or "~" in base:
            if base.endswith("^"):
                base, steps = base[:-1], steps + 1
            else:
                base, _, count = base.rpartition("~")
                steps += int(count) if count.isdigit() else 1 if count == "" else -10**9
        if steps < 0:
            raise WorkTreeError(f"bad revision '{rev}'")
        oid = self._resolve_base(base)
        for _ in range(steps):
            parents = self.commit(oid).parents
            if not parents:
                raise WorkTreeError(f"bad revision '{rev}': history is shorter")
            oid = parents[0].encode()
        return oid

    def _resolve_base(self, name: str) -> bytes:
        if name in ("HEAD", "@", ""):
            head = self.head()
            if head is None:
                raise WorkTreeError(f"{self.branch} has no commits yet")
            return head
        for ref in (name, f"{HEADS}{name}", f"refs/tags/{name}", f"refs/{name}", f"{REALITIES}{name}",
                    f"refs/remotes/{name}"):
            oid = self.repo.refs.get(ref) if ref.startswith("refs/") else None
            if oid is not None:
                return self._peel(oid)
        lowered = name.lower()
        if 4 <= len(lowered) <= 40 and all(c in "0123456789abcdef" for c in lowered):
            matches = [o for o in set(self.repo.objects.iter_oids()) if o.decode().startswith(lowered)]
            commits = [o for o in matches if self.repo.objects.type_of(o) == OBJ_COMMIT]
            if len(commits) == 1:
                return commits[0]
            if len(commits) > 1:
                raise WorkTreeError(f"ambiguous revision '{name}'")
        raise WorkTreeError(f"unknown revision '{name}'")

    def _peel(self, oid: bytes) -> bytes:
        type_num, content = self.repo.objects.get(oid)
        while type_num != OBJ_COMMIT:
            if type_num != TYPE_NUMS[b"tag"]:
                raise WorkTreeError(f"{oid.decode()} is not a commit")
            oid = content.split(b"\n", 1)[0].split(b" ", 1)[1]
            type_num, content = self.repo.objects.get(oid)
        return oid

    def commit(self, oid: bytes) -> Commit:
        return load_commit(self.repo.objects, oid)

    # -- snapshots -------------------------------------------------------------------------

    def tree_files(self, commit: bytes | None) -> Snapshot:
        if commit is None:
            return {}
        tree = self.commit(commit).tree.encode()
        return {path: (entry.oid, entry.mode) for path, entry in self.repo.trees.walk(tree)
                if entry.mode != MODE_GITLINK}

    def read_file(self, rel: str) -> tuple[bytes, int]:
        path = self.root / rel
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            return os.fsencode(os.readlink(path)), MODE_LINK
        return path.read_bytes(), MODE_EXEC if st.st_mode & 0o100 else MODE_FILE

    def work_paths(self, under: str = "") -> Iterator[str]:
        start = self.root / under if under else self.root
        if start.is_symlink() or start.is_file():
            yield under
            return
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            if rel_dir == ".":
                dirnames[:] = [d for d in dirnames if d != ".git"]
                rel_dir = ""
            for name in dirnames[:]:
                if (Path(dirpath) / name).is_symlink():
                    dirnames.remove(name)
                    filenames.append(name)
            for name in filenames:
                yield f"{rel_dir}/{name}" if rel_dir else name

    def work_files(self, under: str = "") -> Snapshot:
        out: Snapshot = {}
        for rel in self.work_paths(under):
            content, mode = self.read_file(rel)
            out[rel] = (object_id(OBJ_BLOB, content), mode)
        return out

    def content(self, oid: bytes) -> bytes:
        return self.repo.objects.get(oid)[1]

    # -- staging ---------------------------------------------------------------------------

    @property
    def _staged_path(self) -> Path:
        return self.git / "govc-staged"

    def staged(self) -> dict[str, tuple[bytes, int] | None]:
        if not self._staged_path.exists():
            return {}
        raw = json.loads(self._staged_path.read_text())
        return {p: None if v is None else (v[0].encode(), int(v[1])) for p, v in raw.items()}

    def set_staged(self, staged: dict[str, tuple[bytes, int] | None]) -> None:
        if not staged:
            self._staged_path.unlink(missing_ok=True)
            return
        data = {p: None if v is None else [v[0].decode(), v[1]] for p, v in sorted(staged.items())}
        write_durably(self._staged_path, json.dumps(data, indent=1).encode())

    def index_view(self) -> Snapshot:
        """HEAD's files with the staged changes applied: what the next commit will hold."""
        view = self.tree_files(self.head())
        for path, value in self.staged().items():
            if value is None:
                view.pop(path, None)
            else:
                view[path] = value
        return view

    def write_git_index(self) -> None:
        """Rewrite ``.git/index`` as :meth:`index_view`, with stat data only for files whose
        content matches (git rehashes the others and reports them modified)."""
        from dulwich.index import Index, IndexEntry, index_entry_from_stat

        index = Index(str(self.git / "index"), read=False)
        for path, (oid, mode) in sorted(self.index_view().items()):
            entry = None
            try:
                content, work_mode = self.read_file(path)
                if object_id(OBJ_BLOB, content) == oid and work_mode == mode:
                    entry = index_entry_from_stat((self.root / path).lstat(), oid, mode)
            except OSError:
                pass
            if entry is None:
                entry = IndexEntry(ctime=(0, 0), mtime=(0, 0), dev=0, ino=0, mode=mode, uid=0, gid=0,
                                   size=0, sha=oid, flags=0, extended_flags=0)
            index[path.encode()] = entry
        index.write()

    def status(self) -> dict[str, list[dict[str, str]] | list[str] | str]:
        head = self.tree_files(self.head())
        staged = self.staged()
        view = self.index_view()
        work = self.work_files()
        to_commit = [{"path": p, "change": _kind(head.get(p), v)} for p, v in sorted(staged.items())
                     if head.get(p) != v]
        unstaged = [{"path": p, "change": _kind(v, work.get(p))} for p, v in sorted(view.items())
                    if work.get(p) != v]
        untracked = sorted(p for p in work if p not in view)
        return {"branch": self.branch, "head": (self.head() or b"").decode(), "staged": to_commit,
                "unstaged": unstaged, "untracked": untracked}


def _kind(old: tuple[bytes, int] | None, new: tuple[bytes, int] | None) -> str:
    return "added" if old is None else "deleted" if new is None else "modified"


def _relative(tree: WorkTree, path: str) -> str:
    """``path`` (relative to the current directory) as a path from the work tree's root."""
    full = Path(os.path.abspath(path))
    try:
        rel = full.relative_to(tree.root).as_posix()
    except ValueError:
        raise WorkTreeError(f"{path} is outside the repository at {tree.root}") from None
    if rel == ".":
        return ""
    if rel == ".git" or rel.startswith(".git/"):
        raise WorkTreeError(f"{path} is inside .git")
    return rel


def _under(path: str, prefix: str) -> bool:
    return not prefix or path == prefix or path.startswith(prefix + "/")


def _author(tree: WorkTree, given: str | None) -> str:
    if given:
        return given
    name, email = os.environ.get("GIT_AUTHOR_NAME"), os.environ.get("GIT_AUTHOR_EMAIL")
    if not (name and email):
        from dulwich.config import ConfigFile

        for config_path in (tree.git / "config", Path.home() / ".gitconfig"):
            try:
                config = ConfigFile.from_path(str(config_path))
            except (OSError, ValueError):
                continue
            for key in ("name", "email"):
                try:
                    value = config.get(("user",), key).decode()
                except KeyError:
                    continue
                if key == "name":
                    name = name or value
                else:
                    email = email or value
    if name and email:
        return f"{name} <{email}>"
    if name:
        return name
    return "govc <govc@govc.invalid>"


def _fail(e: Exception) -> WorkTreeError:
    return WorkTreeError(str(e) or type(e).__name__)


def _completions(prefixes: tuple[str, ...]) -> Callable[[click.Context, click.Parameter, str], list[str]]:
    """A click ``shell_complete`` callback offering the names of refs under ``prefixes``."""
    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        try:
            root = find_root(Path.cwd().resolve())
            names = WorkTree(root).repo.refs.items()
        except Exception:  # completion must never fail loudly
            return []
        out = {n.removeprefix(p) for n, _ in names for p in prefixes if n.startswith(p)}
        return sorted(n for n in out if n.startswith(incomplete))
    return complete


BRANCH_NAMES = _completions((HEADS,))
MERGE_SOURCES = _completions((HEADS, REALITIES, "refs/remotes/"))
REALITY_NAMES = _completions((REALITIES,))


# -- commands ----------------------------------------------------------------------------------

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.command("init", context_settings=CONTEXT)
@click.option("-b", "--branch", "branch", default="main", show_default=True, help="Name of the first branch.")
@click.option("--no-commit", is_flag=True, help="Do not commit the files already in the directory.")
@click.option("--author", help='Author of the first commit, "Name <email>".')
def init_command(branch: str, no_commit: bool, author: str | None) -> None:
    """Make the current directory a repository (git-compatible: a .git directory in git's format).

    Files already in the directory become the first commit on BRANCH (an empty commit if there
    are none), so branches can be made at once.

    \b
    Examples:
      govc init
      govc init --branch trunk --no-commit
    """
    root = Path.cwd().resolve()
    git = root / ".git"
    if git.exists():
        raise WorkTreeError(f"{root} is already a repository (.git exists)")
    try:
        for sub in ("objects/pack", "objects/info", "refs/heads", "refs/tags"):
            (git / sub).mkdir(parents=True, exist_ok=True)
        write_durably(git / "config", b"[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n"
                                      b"\tbare = false\n\tlogallrefupdates = true\n")
        write_durably(git / "HEAD", f"ref: {HEADS}{branch}\n".encode())
        write_durably(git / "description", b"Unnamed repository; edit this file to name it.\n")
        tree = WorkTree(root)
        tree.repo.refs.set_symref("HEAD", f"{HEADS}{branch}")
        if not no_commit:
            files: dict[str, tuple[bytes, int] | None] = {}
            for path in tree.work_paths():
                content, mode = tree.read_file(path)
                files[path] = (tree.repo.objects.add_object(OBJ_BLOB, content), mode)
            _commit_snapshot(tree, files, "Initial commit", _author(tree, author), allow_empty=True)
        tree.save()
        tree.write_git_index()
    except (StorageError, OSError, ValueError) as e:
        import shutil

        shutil.rmtree(git, ignore_errors=True)
        raise _fail(e) from None
    _info(f"Initialized govc repository in {git}")


def _commit_snapshot(tree: WorkTree, changes: dict[str, tuple[bytes, int] | None], message: str,
                     author: str, *, allow_empty: bool = False) -> Commit:
    """Commit ``changes`` on the current branch through the Python API (a transaction)."""
    head = tree.head()
    current = tree.tree_files(head)
    real = {p: v for p, v in changes.items() if current.get(p) != v and (v is not None or p in current)}
    if not real:
        if not allow_empty:
            raise WorkTreeError("nothing to commit (use 'govc add PATH' to stage changes)")
        ident = Identity.parse(author)
        tree_id = object_id(OBJ_TREE, b"") if head is None else tree.commit(head).tree.encode()
        raw = serialize_commit(tree_id, [head] if head else [], ident, ident, int(time.time()), message)
        oid = object_id(OBJ_COMMIT, raw)
        objects = [(OBJ_TREE, b""), (OBJ_COMMIT, raw)] if head is None else [(OBJ_COMMIT, raw)]
        tree.repo.update_refs([RefUpdate(tree.head_ref, oid, head)], who=author, message=message,
                              source="cli", objects=objects)
        return tree.commit(oid)
    with tree.repo.transaction(tree.head_ref, author=author) as tx:
        for path, value in sorted(real.items()):
            if value is None:
                tx.remove(path)
            else:
                tx.write(path, tree.content(value[0]), mode=value[1])
        return tx.commit(message)


@click.command("add", context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True)
def add_command(paths: tuple[str, ...]) -> None:
    """Stage files (and deletions) below each PATH for the next commit.

    \b
    Examples:
      govc add configs/
      govc add app.conf README.md
      govc add .
    """
    tree = WorkTree.here()
    head = tree.tree_files(tree.head())
    staged = tree.staged()
    for given in paths:
        rel = _relative(tree, given)
        exists = (tree.root / rel).exists() or (tree.root / rel).is_symlink()
        tracked = [p for p in head if _under(p, rel)] + [p for p in staged if _under(p, rel)]
        if not exists and not tracked:
            raise WorkTreeError(f"pathspec '{given}' did not match any files")
        found = set()
        for path in tree.work_paths(rel) if exists else ():
            content, mode = tree.read_file(path)
            value = (tree.repo.objects.add_object(OBJ_BLOB, content), mode)
            found.add(path)
            if head.get(path) == value:
                staged.pop(path, None)
            else:
                staged[path] = value
        for path in tracked:
            if path not in found:
                if path in head:
                    staged[path] = None
                else:
                    staged.pop(path, None)
    try:
        tree.save()
        tree.set_staged(staged)
        tree.write_git_index()
    except (StorageError, OSError) as e:
        raise _fail(e) from None


@click.command("commit", context_settings=CONTEXT)
@click.option("-m", "--message", required=True, help="The commit message.")
@click.option("--author", help='"Name <email>" (default: GIT_AUTHOR_NAME/EMAIL, then user.name/email).')
def commit_command(message: str, author: str | None) -> None:
    """Commit the staged changes on the current branch.

    \b
    Examples:
      govc add configs/ && govc commit -m "Test new load balancer config"
      govc commit -m "Fix" --author "Ops <ops@example.com>"
    """
    tree = WorkTree.here()
    try:
        commit = _commit_snapshot(tree, tree.staged(), message, _author(tree, author))
        tree.save()
        tree.set_staged({})
        tree.write_git_index()
    except (StorageError, OSError, ValueError) as e:
        raise _fail(e) from None
    _info(f"[{tree.branch} {commit.oid[:7]}] {message.splitlines()[0] if message else ''}")


@click.command("branch", context_settings=CONTEXT)
@click.argument("name", required=False)
@click.argument("start", required=False)
@click.option("--json", "as_json", is_flag=True, help="List branches as JSON.")
def branch_command(name: str | None, start: str | None, as_json: bool) -> None:
    """Create branch NAME at START (default HEAD), or list branches (the current one marked *).

    \b
    Examples:
      govc branch staging
      govc branch canary main
      govc branch --json
    """
    tree = WorkTree.here()
    if name is None:
        branches = sorted(n.removeprefix(HEADS) for n, _ in tree.repo.refs.items() if n.startswith(HEADS))
        if as_json:
            click.echo(json.dumps({"current": tree.branch, "branches": [
                {"name": b, "commit": (tree.repo.refs.get(HEADS + b) or b"").decode(),
                 "current": b == tree.branch}
                for b in branches]}, indent=2))
            return
        for b in branches:
            click.echo(f"{'*' if b == tree.branch else ' '} {b}")
        return
    ref = f"{HEADS}{name}"
    if tree.repo.refs.get(ref) is not None:
        raise WorkTreeError(f"a branch named '{name}' already exists")
    oid = tree.resolve(start or "HEAD")
    try:
        tree.repo.update_refs([RefUpdate(ref, oid, None)], who="govc", message=f"branch: created from "
                              f"{start or tree.branch}", source="cli")
        tree.save()
    except (StorageError, OSError) as e:
        raise _fail(e) from None
    _info(f"Created branch {name} at {oid.decode()[:7]}")


@click.command("checkout", context_settings=CONTEXT)
@click.argument("name", shell_complete=BRANCH_NAMES)
def checkout_command(name: str) -> None:
    """Switch to branch NAME, rewriting the work tree to its files.

    Refuses (exit 1) while there are staged or unstaged changes to tracked files, or untracked
    files the switch would overwrite.

    \b
    Examples:
      govc checkout staging
      govc checkout main
    """
    tree = WorkTree.here()
    ref = f"{HEADS}{name}"
    target = tree.repo.refs.get(ref)
    if target is None:
        raise WorkTreeError(f"no branch named '{name}'")
    state = tree.status()
    if state["staged"] or state["unstaged"]:
        raise WorkTreeError("you have uncommitted changes; commit or undo them before switching branches")
    current = tree.tree_files(tree.head())
    wanted = tree.tree_files(target)
    work = _check_clobber(tree, state, wanted, f"checking out {name}")
    try:
        _switch_files(tree, current, wanted, work)
        tree.repo.refs.set_symref("HEAD", ref)
        tree.save()
        tree.write_git_index()
    except (StorageError, OSError) as e:
        raise _fail(e) from None
    _info(f"Switched to branch '{name}'")


def _check_clobber(tree: WorkTree, state: dict, wanted: Snapshot, doing: str) -> Snapshot:
    """The work tree's files; WorkTreeError if an untracked file would be overwritten."""
    work = tree.work_files()
    clobbered = [p for p in state["untracked"] if p in wanted and work[p] != wanted[p]]
    if clobbered:
        raise WorkTreeError(f"untracked file {clobbered[0]} would be overwritten by {doing}")
    return work


def _switch_files(tree: WorkTree, current: Snapshot, wanted: Snapshot, work: Snapshot) -> None:
    """Rewrite the work tree from ``current``'s files to ``wanted``'s (both tracked snapshots)."""
    for path in sorted(set(current) - set(wanted)):
        full = tree.root / path
        full.unlink(missing_ok=True)
        _prune_dirs(full.parent, tree.root)
    for path, (oid, mode) in sorted(wanted.items()):
        if current.get(path) == (oid, mode) and work.get(path) == (oid, mode):
            continue
        _write_work_file(tree.root / path, tree.content(oid), mode)


def _prune_dirs(directory: Path, root: Path) -> None:
    while directory != root and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent


def _write_work_file(path: Path, content: bytes, mode: int) -> None:
    for parent in reversed(path.relative_to(path.anchor).parents):
        full = Path(path.anchor) / parent
        if full.is_file() or full.is_symlink():
            full.unlink()  # a file where a directory must now be
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        import shutil

        shutil.rmtree(path)
    if mode == MODE_LINK:
        os.symlink(os.fsdecode(content), path)
        return
    path.write_bytes(content)
    path.chmod(0o755 if mode == MODE_EXEC else 0o644)


@click.command("status", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_command(as_json: bool) -> None:
    """Show the branch, staged changes, unstaged changes and untracked files.

    \b
    Examples:
      govc status
      govc status --json | jq .untracked
    """
    tree = WorkTree.here()
    state = tree.status()
    if as_json:
        click.echo(json.dumps(state, indent=2))
        return
    click.echo(f"On branch {state['branch']}")
    if not state["head"]:
        click.echo("No commits yet")
    sections = (("Changes to be committed:", state["staged"]),
                ("Changes not staged for commit:", state["unstaged"]))
    for title, items in sections:
        if items:
            click.echo(title)
            for item in items:  # type: ignore[union-attr]
                click.echo(f"\t{item['change']}:  {item['path']}")  # type: ignore[index]
    if state["untracked"]:
        click.echo("Untracked files:")
        for path in state["untracked"]:
            click.echo(f"\t{path}")
    if not (state["staged"] or state["unstaged"] or state["untracked"]):
        click.echo("nothing to commit, working tree clean")


@click.command("log", context_settings=CONTEXT)
@click.argument("rev", required=False, default="HEAD")
@click.option("--oneline", is_flag=True, help="One line per commit: short id and subject.")
@click.option("-n", "--max-count", "limit", type=click.IntRange(min=0), help="Show at most N commits.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def log_command(rev: str, oneline: bool, limit: int | None, as_json: bool) -> None:
    """Show the first-parent history of REV (default HEAD), newest first.

    \b
    Examples:
      govc log
      govc log --oneline -n 5
      govc log staging --json
    """
    tree = WorkTree.here()
    if rev == "HEAD" and tree.head() is None:
        raise WorkTreeError(f"your current branch '{tree.branch}' does not have any commits yet")
    commits: list[Commit] = []
    oid: bytes | None = tree.resolve(rev)
    while oid is not None and (limit is None or len(commits) < limit):
        commit = tree.commit(oid)
        commits.append(commit)
        oid = commit.parents[0].encode() if commit.parents else None
    if as_json:
        click.echo(json.dumps([{"id": c.oid, "tree": c.tree, "parents": list(c.parents), "author": c.author,
                                "time": c.time, "message": c.message} for c in commits], indent=2))
        return
    for c in commits:
        subject = c.message.split("\n", 1)[0]
        if oneline:
            click.echo(f"{c.oid[:7]} {subject}")
        else:
            click.echo(f"commit {c.oid}\nAuthor: {c.author}\nDate:   {_date(c.time)}\n")
            for line in c.message.rstrip("\n").split("\n"):
                click.echo(f"    {line}")
            click.echo("")


def _date(when: int) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%a %b %d %H:%M:%S %Y +0000")


def _unified(tree: WorkTree, old: Snapshot, new: Snapshot,
             new_content: dict[str, bytes] | None = None) -> str:
    out: list[str] = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        a_data = tree.content(a[0]) if a else b""
        b_data = (new_content or {}).get(path) if b else b""
        if b and b_data is None:
            b_data = tree.content(b[0])
        assert b_data is not None
        out.append(f"diff --git a/{path} b/{path}\n")
        if a is None and b is not None:
            out.append(f"new file mode {b[1]:o}\n")
        elif b is None and a is not None:
            out.append(f"deleted file mode {a[1]:o}\n")
        elif a is not None and b is not None and a[1] != b[1]:
            out.append(f"old mode {a[1]:o}\nnew mode {b[1]:o}\n")
        if a_data == b_data:
            continue
        if b"\x00" in a_data or b"\x00" in b_data:
            left, right = f"a/{path}" if a else "/dev/null", f"b/{path}" if b else "/dev/null"
            out.append(f"Binary files {left} and {right} differ\n")
            continue
        a_lines = a_data.decode("utf-8", "replace").splitlines(keepends=True)
        b_lines = b_data.decode("utf-8", "replace").splitlines(keepends=True)
        for line in difflib.unified_diff(a_lines, b_lines, f"a/{path}" if a else "/dev/null",
                                         f"b/{path}" if b else "/dev/null"):
            out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


@click.command("diff", context_settings=CONTEXT)
@click.argument("a", required=False)
@click.argument("b", required=False)
def diff_command(a: str | None, b: str | None) -> None:
    """Unified diff of file contents: work tree against HEAD, against A, or A against B.

    \b
    Examples:
      govc diff                 # uncommitted changes (staged or not) to tracked files
      govc diff main            # work tree against main
      govc diff main staging    # main's files against staging's
    """
    tree = WorkTree.here()
    old = tree.tree_files(tree.resolve(a) if a else tree.head())
    if b is not None:
        click.echo(_unified(tree, old, tree.tree_files(tree.resolve(b))), nl=False)
        return
    tracked = set(tree.index_view()) | set(old)
    contents: dict[str, bytes] = {}
    new: Snapshot = {}
    for path in tracked:
        try:
            content, mode = tree.read_file(path)
        except OSError:
            continue
        contents[path] = content
        new[path] = (object_id(OBJ_BLOB, content), mode)
    click.echo(_unified(tree, old, new, contents), nl=False)


@click.command("show", context_settings=CONTEXT)
@click.argument("spec", default="HEAD", required=False)
def show_command(spec: str) -> None:
    """Show a commit (header and diff against its first parent), or a file at a commit with REV:PATH.

    \b
    Examples:
      govc show
      govc show staging
      govc show main:configs/lb.conf
    """
    tree = WorkTree.here()
    rev, sep, path = spec.partition(":")
    oid = tree.resolve(rev or "HEAD")
    commit = tree.commit(oid)
    if sep:
        root = commit.tree.encode()
        try:
            entry = tree.repo.trees.lookup(root, path) if path.strip("/") else None
        except ValueError as e:
            raise _fail(e) from None
        if path.strip("/") and entry is None:
            raise WorkTreeError(f"path '{path}' does not exist in '{rev or 'HEAD'}'")
        if entry is None or entry.is_tree:
            for name, item in sorted(tree.repo.trees.entries(entry.oid if entry else root).items()):
                click.echo(name.decode("utf-8", "replace") + ("/" if item.is_tree else ""))
            return
        click.echo(tree.content(entry.oid), nl=False)
        return
    click.echo(f"commit {commit.oid}\nAuthor: {commit.author}\nDate:   {_date(commit.time)}\n")
    for line in commit.message.rstrip("\n").split("\n"):
        click.echo(f"    {line}")
    click.echo("")
    parent = commit.parents[0].encode() if commit.parents else None
    click.echo(_unified(tree, tree.tree_files(parent), tree.tree_files(oid)), nl=False)


# -- merge, realities, time travel -------------------------------------------------------------


def _require_clean(tree: WorkTree, doing: str) -> dict:
    if tree.head() is None:
        raise WorkTreeError(f"{tree.branch} has no commits yet")
    state = tree.status()
    if state["staged"] or state["unstaged"]:
        raise WorkTreeError(f"you have uncommitted changes; commit or undo them before {doing}")
    return state


def _source_ref(tree: WorkTree, name: str) -> str:
    """The ref a merge or promotion takes commits from: a branch, a reality or a remote-tracking ref."""
    candidates = [name] if name.startswith("refs/") else [f"{HEADS}{name}", f"{REALITIES}{name}",
                                                          f"refs/remotes/{name}"]
    for ref in candidates:
        if tree.repo.refs.get(ref) is not None:
            return ref
    raise WorkTreeError(f"no branch or reality named '{name}'")


def _move_head_files(tree: WorkTree, before: bytes | None, state: dict, doing: str) -> None:
    """After HEAD's branch moved in memory from ``before``: rewrite the work tree, then save.

    An untracked file in the way aborts before anything is written (the move stays in memory)."""
    current = tree.tree_files(before)
    wanted = tree.tree_files(tree.head())
    work = _check_clobber(tree, state, wanted, doing)
    try:
        tree.save()
        _switch_files(tree, current, wanted, work)
        tree.write_git_index()
    except (StorageError, OSError) as e:
        raise _fail(e) from None


def _merge_into_head(tree: WorkTree, source: str, label: str, author: str, message: str | None,
                     quiet: bool) -> None:
    from govc.validation import ConflictError, ValidationError

    state = _require_clean(tree, "merging")
    before = tree.head()
    try:
        outcome = tree.repo.merge(source, into=tree.head_ref, author=author,
                                  message=message or f"Merge {label} into {tree.branch}")
    except (KeyError, ValueError, ConflictError, ValidationError, StorageError) as e:
        raise _fail(e) from None
    if outcome.conflicts:
        for conflict in outcome.conflicts:
            click.echo(f"CONFLICT ({conflict.kind}): {conflict.path}")
        raise WorkTreeError(f"merging {label} into {tree.branch}: {len(outcome.conflicts)} conflicting "
                            f"path(s); nothing was changed")
    if outcome.up_to_date or tree.head() == before:
        if not quiet:
            _info("Already up to date.")
        return
    _move_head_files(tree, before, state, f"merging {label}")
    assert outcome.commit is not None
    if not quiet:
        how = "Fast-forward to" if outcome.fast_forward else "Merge commit"
        _info(f"{how} {outcome.commit.oid[:7]} ({label} into {tree.branch})")


@click.command("merge", context_settings=CONTEXT)
@click.argument("name", shell_complete=MERGE_SOURCES)
@click.option("-m", "--message", help="Message of the merge commit.")
@click.option("--author", help='"Name <email>" (default: as for commit).')
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def merge_command(name: str, message: str | None, author: str | None, quiet: bool) -> None:
    """Three-way merge branch or reality NAME into the current branch.

    Fast-forwards when possible, else makes a two-parent commit. On conflicts the conflicting
    paths are listed (CONFLICT (kind): path), the exit status is 1 and nothing is written: refs,
    work tree and index stay as they were. Needs a clean work tree (no staged or unstaged changes).

    \b
    Examples:
      govc merge staging
      govc merge canary -m "Promote canary fixes"
      govc merge origin/main
    """
    tree = WorkTree.here()
    _merge_into_head(tree, _source_ref(tree, name), name, _author(tree, author), message, quiet)


@click.group("reality", context_settings=CONTEXT)
def reality_group() -> None:
    """Realities: named lines of history under refs/realities/ (git sees them as ordinary refs).

    \b
    Examples:
      govc reality create canary              # at HEAD
      govc reality create canary --from staging
      govc reality list --json
      govc reality promote canary             # the current branch := canary's tip
      govc reality drop canary
    """


@reality_group.command("create", context_settings=CONTEXT)
@click.argument("name")
@click.option("--from", "base", default="HEAD", show_default=True, help="Revision the reality starts at.")
@click.option("--ephemeral", is_flag=True,
              help="Create it in the memory of the govc server REMOTE points at (never on any disk).")
@click.option("--remote", default="origin", show_default=True, help="With --ephemeral: the govc server.")
def reality_create(name: str, base: str, ephemeral: bool, remote: str) -> None:
    """Create reality NAME (refs/realities/NAME) at BASE.

    An ephemeral reality lives in one process's memory only, and a work-tree command ends with its
    process; so --ephemeral creates it on the govc server the remote points at (from the server's
    BASE branch), where `git fetch REMOTE refs/realities/NAME` and pushes reach it.

    \b
    Examples:
      govc reality create canary
      govc reality create canary --from staging
      govc reality create try-1 --ephemeral --from main     # on origin, in memory only
    """
    if ephemeral:
        _create_remote_reality(name, "main" if base == "HEAD" else base, remote)
        return
    tree = WorkTree.here()
    ref = f"{REALITIES}{name}"
    if tree.repo.refs.get(ref) is not None:
        raise WorkTreeError(f"a reality named '{name}' already exists")
    oid = tree.resolve(base)
    try:
        tree.repo.update_refs([RefUpdate(ref, oid, None)], who="govc", message=f"reality from {base}",
                              source="cli")
        tree.save()
    except (StorageError, OSError, ValueError) as e:
        raise _fail(e) from None
    _info(f"Created reality {name} at {oid.decode()[:7]}")


def _create_remote_reality(name: str, base: str, remote: str) -> None:
    """POST /api/v1/repos/<repo>/realities on the govc server behind ``remote``."""
    import json
    import subprocess
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    tree = WorkTree.here()
    found = subprocess.run(["git", "-C", str(tree.root), "config", "--get", f"remote.{remote}.url"],
                           capture_output=True, text=True, check=False)
    url = found.stdout.strip()
    parts = urlsplit(url)
    if found.returncode != 0 or parts.scheme not in ("http", "https"):
        raise WorkTreeError(f"remote '{remote}' is not a govc server URL ({url or 'not set'}); ephemeral "
                            "realities live in a running govc server")
    repo = parts.path.strip("/").removesuffix(".git")
    api = f"{parts.scheme}://{parts.netloc}/api/v1/repos/{repo}/realities"
    body = json.dumps({"name": name, "base": base, "ephemeral": True}).encode()
    request = urllib.request.Request(api, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            made = json.loads(response.read())
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read()).get("message", e.reason)
        except ValueError:
            message = e.reason
        raise WorkTreeError(f"{remote} refused the reality: {message}") from None
    except OSError as e:
        raise WorkTreeError(f"cannot reach {remote} ({url}): {e}") from None
    click.echo(f"Created ephemeral reality {name} on {remote} at {str(made['head'])[:7]} "
               f"(fetch it with: git fetch {remote} refs/realities/{name})")


@reality_group.command("list", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def reality_list(as_json: bool) -> None:
    """List realities: name, commit and subject.

    \b
    Examples:
      govc reality list
      govc reality list --json | jq '.[].name'
    """
    tree = WorkTree.here()
    rows = []
    for ref, oid in sorted(tree.repo.refs.items()):
        if ref.startswith(REALITIES):
            commit = tree.commit(tree._peel(oid))
            rows.append({"name": ref.removeprefix(REALITIES), "ref": ref, "commit": commit.oid,
                         "subject": commit.message.split("\n", 1)[0], "ephemeral": False})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']}\t{row['commit'][:7]} {row['subject']}")


@reality_group.command("promote", context_settings=CONTEXT)
@click.argument("name", shell_complete=REALITY_NAMES)
@click.option("--into", "branch", help="Branch to move (default: the current branch).")
def reality_promote(name: str, branch: str | None) -> None:
    """Move a branch (default the current one) to reality NAME's tip, like Repository.set_main.

    Commits on the branch that the reality lacks leave it (merge first to keep them). Promoting
    into the current branch rewrites the work tree and needs it clean.

    \b
    Examples:
      govc reality promote canary
      govc reality promote canary --into main
    """
    from govc.validation import ConflictError, ValidationError

    tree = WorkTree.here()
    source = f"{REALITIES}{name}"
    if tree.repo.refs.get(source) is None:
        raise WorkTreeError(f"no reality named '{name}'")
    target = f"{HEADS}{branch or tree.branch}"
    if tree.repo.refs.get(target) is None:
        raise WorkTreeError(f"no branch named '{branch or tree.branch}'")
    on_head = target == tree.head_ref
    state = _require_clean(tree, "promoting into the current branch") if on_head else {}
    before = tree.head()
    try:
        tip = tree.repo.set_main(tree.repo.reality(source), branch=target)
    except (KeyError, ConflictError, ValidationError, StorageError) as e:
        raise _fail(e) from None
    if on_head:
        _move_head_files(tree, before, state, f"promoting {name}")
    else:
        try:
            tree.save()
        except (StorageError, OSError) as e:
            raise _fail(e) from None
    _info(f"{target.removeprefix(HEADS)} is now {tip.oid[:7]} (promoted from reality {name})")


@reality_group.command("drop", context_settings=CONTEXT)
@click.argument("name", shell_complete=REALITY_NAMES)
def reality_drop(name: str) -> None:
    """Delete reality NAME (its commits stay reachable from wherever else they are).

    \b
    Examples:
      govc reality drop canary
    """
    tree = WorkTree.here()
    ref = f"{REALITIES}{name}"
    current = tree.repo.refs.get(ref)
    if current is None:
        raise WorkTreeError(f"no reality named '{name}'")
    try:
        tree.repo.update_refs([RefUpdate(ref, None, current)], who="govc", message="drop reality",
                              source="cli")
        tree.save()
    except (StorageError, OSError, ValueError) as e:
        raise _fail(e) from None
    _info(f"Dropped reality {name} (was {current.decode()[:7]})")


def _parse_when(text: str) -> float:
    value = text.strip()
    if value.startswith("@"):
        try:
            return float(value[1:])
        except ValueError:
            pass
    elif value == "now":
        return time.time()
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return (moment.astimezone() if moment.tzinfo is None else moment).timestamp()
    raise WorkTreeError(f"cannot read the time '{text}'; use 'YYYY-MM-DD[ HH:MM[:SS]][+HH:MM]' "
                        "(local time without an offset), @EPOCH_SECONDS or now")


def _changed_by(tree: WorkTree, start: bytes, paths: set[str]) -> dict[str, Commit]:
    """For each path, the newest commit on ``start``'s first-parent line that changed it."""
    found: dict[str, Commit] = {}
    oid: bytes | None = start
    files = tree.tree_files(start)
    while oid is not None and len(found) < len(paths):
        commit = tree.commit(oid)
        parent = commit.parents[0].encode() if commit.parents else None
        parent_files = tree.tree_files(parent)
        for path in paths - set(found):
            if files.get(path) != parent_files.get(path):
                found[path] = commit
        oid, files = parent, parent_files
    return found


def _who(commit: Commit) -> dict[str, object]:
    return {"commit": commit.oid, "author": commit.author, "time": commit.time,
            "subject": commit.message.split("\n", 1)[0]}


@click.command("at", context_settings=CONTEXT)
@click.argument("when")
@click.argument("path", required=False)
@click.option("-r", "--rev", default="HEAD", show_default=True, shell_complete=MERGE_SOURCES,
              help="Branch (or reality) to travel on.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def at_command(when: str, path: str | None, rev: str, as_json: bool) -> None:
    """Time travel: the files (or the file PATH) of REV as they were at WHEN, and who changed them.

    WHEN is 'YYYY-MM-DD HH:MM[:SS]' in local time, optionally with an offset (+00:00 or Z),
    @EPOCH_SECONDS, or now. The state at WHEN is the newest commit on REV's first-parent history
    dated (committer time) at or before WHEN. Without PATH: one line per file (the commit that last
    changed it, its date and author, the path). With PATH (from the repository root): the file's
    content on stdout and who last changed it on stderr; a directory is listed as without PATH.

    \b
    Examples:
      govc at "2024-01-15 03:42"
      govc at "2024-01-15 03:42" configs/lb.conf
      govc at @1705290120 --rev staging --json
    """
    tree = WorkTree.here()
    moment = _parse_when(when)
    oid: bytes | None = tree.resolve(rev)
    while oid is not None:
        commit = tree.commit(oid)
        if commit.time <= moment:
            break
        oid = commit.parents[0].encode() if commit.parents else None
    if oid is None:
        raise WorkTreeError(f"{rev} had no commits yet at {when}")
    files = tree.tree_files(oid)
    prefix = path.strip("/") if path else ""
    if prefix and prefix in files:
        blob, mode = files[prefix]
        who = _changed_by(tree, oid, {prefix})[prefix]
        if as_json:
            click.echo(json.dumps({"commit": commit.oid, "path": prefix, "blob": blob.decode(),
                                   "mode": f"{mode:o}",
                                   "content": tree.content(blob).decode("utf-8", "replace"),
                                   "changed": _who(who)}, indent=2))
            return
        click.echo(tree.content(blob), nl=False)
        click.echo(f"{prefix} as of {_date(int(moment))} (commit {commit.oid[:7]}): last changed in "
                   f"{who.oid[:7]} by {who.author} on {_date(who.time)}: {who.message.splitlines()[0]}",
                   err=True)
        return
    chosen = {p: v for p, v in files.items() if _under(p, prefix)}
    if prefix and not chosen:
        raise WorkTreeError(f"path '{prefix}' did not exist in {rev} at {when}")
    changed = _changed_by(tree, oid, set(chosen))
    if as_json:
        click.echo(json.dumps({"commit": commit.oid, "time": commit.time, "files": [
            {"path": p, "blob": b.decode(), "mode": f"{m:o}", "changed": _who(changed[p])}
            for p, (b, m) in sorted(chosen.items())]}, indent=2))
        return
    click.echo(f"# {rev} as of {_date(int(moment))}: commit {commit.oid[:7]} "
               f"{commit.message.splitlines()[0] if commit.message else ''}")
    for p in sorted(chosen):
        c = changed[p]
        day = datetime.fromtimestamp(c.time, UTC).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{c.oid[:7]} {day} {c.author.split(' <')[0]}\t{p}")


# -- push, pull, clone: the real git binary does the transport -----------------------------------


def _run_git(args: list[str], cwd: Path | None, quiet: bool) -> None:
    """Run git; on a terminal (and without -q) its progress shows, otherwise it runs quietly."""
    import shutil
    import subprocess

    if shutil.which("git") is None:
        raise WorkTreeError("push, pull and clone need the git binary on PATH")
    show = not quiet and sys.stderr.isatty()
    env = dict(os.environ)
    if not show:
        env.setdefault("GIT_TERMINAL_PROMPT", "0")
    command = ["git", *args[:1], *(["--progress"] if show else ["-q"]), *args[1:]]
    done = subprocess.run(command, cwd=cwd, env=env, stdin=None if show else subprocess.DEVNULL,
                          stdout=None if show else subprocess.PIPE, stderr=None if show else subprocess.PIPE)
    if done.returncode != 0:
        detail = "" if show else (done.stderr or b"").decode("utf-8", "replace").strip()
        raise WorkTreeError(f"git {args[0]} failed" + (f": {detail}" if detail else ""))


@click.command("clone", context_settings=CONTEXT)
@click.argument("url")
@click.argument("directory", required=False)
@click.option("-b", "--branch", help="Branch to check out (default: the remote's HEAD).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def clone_command(url: str, directory: str | None, branch: str | None, quiet: bool) -> None:
    """Clone URL (a govc server or any git smart-HTTP/ssh/file URL) into DIRECTORY.

    The transport is the git binary's; the result is an ordinary git work tree govc works in.

    \b
    Examples:
      govc clone http://localhost:8417/infra.git
      govc clone http://localhost:8417/infra.git infra-copy -b staging
    """
    _run_git(["clone", *(["--branch", branch] if branch else []), "--", url,
              *([directory] if directory else [])], None, quiet)
    if directory:
        target = Path(directory)
    else:
        name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        target = Path(name.removesuffix(".git") or name)
    if (target / ".git").is_dir() and (target / ".git" / "HEAD").read_text().startswith("ref: "):
        tree = WorkTree(target.resolve())  # checks that govc reads what git fetched
        if not quiet:
            _info(f"Cloned {url} into {target} ({tree.branch})")


def _branch_and_remote(tree: WorkTree, remote: str | None, branch: str | None) -> tuple[str, str]:
    return remote or "origin", branch or tree.branch


@click.command("push", context_settings=CONTEXT)
@click.argument("remote", required=False)
@click.argument("branch", required=False)
@click.option("--realities", is_flag=True, help="Push every reality (refs/realities/*) too.")
@click.option("-f", "--force", is_flag=True, help="Allow a non-fast-forward update.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def push_command(remote: str | None, branch: str | None, realities: bool, force: bool, quiet: bool) -> None:
    """Push BRANCH (default the current one) to REMOTE (a remote name, default origin, or a URL).

    \b
    Examples:
      govc push
      govc push origin staging
      govc push http://localhost:8417/infra.git main --realities
    """
    tree = WorkTree.here()
    remote, branch = _branch_and_remote(tree, remote, branch)
    if tree.repo.refs.get(f"{HEADS}{branch}") is None:
        raise WorkTreeError(f"no branch named '{branch}' (or it has no commits)")
    plus = "+" if force else ""
    specs = [f"{plus}{HEADS}{branch}:{HEADS}{branch}"]
    if realities:
        specs.append(f"{plus}{REALITIES}*:{REALITIES}*")
    _run_git(["push", "--", remote, *specs], tree.root, quiet)
    if not quiet:
        _info(f"Pushed {branch} to {remote}")


@click.command("pull", context_settings=CONTEXT)
@click.argument("remote", required=False)
@click.argument("branch", required=False)
@click.option("--author", help='Author of a merge commit, "Name <email>".')
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def pull_command(remote: str | None, branch: str | None, author: str | None, quiet: bool) -> None:
    """Fetch BRANCH (default: the current branch's name) from REMOTE (default origin, or a URL)
    and merge it into the current branch as 'govc merge' does (fast-forward when possible).

    \b
    Examples:
      govc pull
      govc pull origin staging
    """
    tree = WorkTree.here()
    remote, branch = _branch_and_remote(tree, remote, branch)
    _require_clean(tree, "pulling")
    _run_git(["fetch", "--no-write-fetch-head", "--", remote, f"+{HEADS}{branch}:refs/govc-pull/{branch}"],
             tree.root, quiet)
    temp = tree.git / "refs" / "govc-pull" / branch
    try:
        tree = WorkTree(tree.root)  # reload: git wrote new objects
        fetched = f"refs/govc-pull/{branch}"
        _merge_into_head(tree, fetched, f"{remote}/{branch}", _author(tree, author), None, quiet)
    finally:
        temp.unlink(missing_ok=True)
        _prune_dirs(temp.parent, tree.git / "refs")


COMMANDS = (init_command, add_command, commit_command, branch_command, checkout_command, status_command,
            log_command, diff_command, show_command, merge_command, reality_group, at_command,
            clone_command, push_command, pull_command)


def register(group: click.Group) -> None:
    """Add the work-tree commands to the ``govc`` group."""
    for command in COMMANDS:
        group.add_command(command)
