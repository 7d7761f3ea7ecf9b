"""Deterministic benchmark corpus: a bare Git repository built from the Python stdlib.

Benchmarks need realistic content (real source text, so zlib and delta compression behave as
they do on real projects) and identical object ids on every run, so results from different
days and machines with the same Python version are comparable.  We therefore build a history
from the ``.py`` files of the running interpreter's standard library, with every random choice
drawn from a seeded :class:`random.Random` and every date derived from a commit counter.

The stream is fed to ``git fast-import`` (orders of magnitude faster than ``git commit``) and
the result is repacked into a single pack so servers start from the layout they would have
after ``git gc``.

Usage::

    python benchmarks/corpus.py DEST.git [--commits N] [--seed S] [--big]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

DEFAULT_COMMITS = 3000
BIG_COMMITS = 15000
DEFAULT_SEED = 1
AUTHOR = b"Corpus Author <author@corpus.invalid>"
COMMITTER = b"Corpus Committer <committer@corpus.invalid>"
TAGGER = b"Corpus Release <release@corpus.invalid>"
BASE_TIME = 1_500_000_000  # fixed epoch so commit ids never depend on the wall clock
TIME_STEP = 613  # seconds between two consecutive objects carrying a date
INITIAL_FILES = 300
HOT_FILES = 40
TAG_EVERY = 250
SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+-]+$")
DETERMINISTIC_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "LC_ALL": "C",
    "TZ": "UTC",
}


@dataclass(frozen=True)
class FeatureSpec:
    """A side branch: where it forks from main, how many commits, where (if) it merges."""

    name: str
    fork_at: int
    commits: int
    merge_at: int | None


@dataclass
class Branch:
    """Working state of one branch while the stream is generated."""

    ref: bytes
    files: dict[str, bytes]
    tracked: list[str]
    last_mark: int = 0
    changed: set[str] = field(default_factory=set)  # paths touched since the fork


def stdlib_root() -> Path:
    """Return the stdlib directory of the running interpreter (the corpus' only input)."""
    return Path(sysconfig.get_paths()["stdlib"])


def load_sources(root: Path) -> list[tuple[str, bytes]]:
    """Read every stdlib ``.py`` file, sorted by path, skipping third-party site-packages.

    Sorting by path (never by mtime or directory order) is what makes the corpus reproducible.
    """
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in ("site-packages", "__pycache__")]
        for name in filenames:
            full = Path(dirpath, name)
            if name.endswith(".py") and full.is_file() and not full.is_symlink():
                found.append(full.relative_to(root).as_posix())
    found = [p for p in sorted(found) if SAFE_PATH.match(p)]
    return [("Lib/" + p, (root / p).read_bytes()) for p in found]


def feature_specs(commits: int) -> list[FeatureSpec]:
    """Scale three feature branches (two merged, one still open) with the history length."""
    specs = [
        FeatureSpec("feature/parser", commits * 20 // 100, max(3, commits // 75), commits * 35 // 100),
        FeatureSpec("feature/storage", commits * 50 // 100, max(3, commits // 120), commits * 70 // 100),
        FeatureSpec("feature/experimental", commits * 80 // 100, max(3, commits // 50), None),
    ]
    return [s for s in specs if s.fork_at > 0 and (s.merge_at or commits) - s.fork_at > 2]


def mutate(content: bytes, rng: random.Random, stamp: bytes) -> bytes:
    """Return ``content`` with a few lines changed, inserted, deleted or appended.

    Small, local edits of real text are what make later versions good delta candidates, so the
    repacked corpus contains delta chains like a real project's.
    """
    lines = content.split(b"\n")
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(len(lines))
        op = rng.random()
        if op < 0.4:
            lines[pos] = lines[pos] + b"  # " + stamp
        elif op < 0.65:
            lines.insert(pos, b"# " + stamp + b": " + lines[rng.randrange(len(lines))].strip())
        elif op < 0.85 and len(lines) > 20:
            del lines[pos]
        else:
            start = rng.randrange(len(lines))
            block = lines[start : start + rng.randint(2, 6)]
            lines.extend([b"", b"# copied by " + stamp, *(b"# " + line for line in block)])
    return b"\n".join(lines)


class StreamWriter:
    """Emit the git fast-import command stream and keep the date and mark counters."""

    def __init__(self, out: IO[bytes]) -> None:
        """Write to ``out``; marks and timestamps start at fixed values for reproducibility."""
        self.out = out
        self.mark = 0
        self.clock = 0

    def tick(self) -> bytes:
        """Return the next fixed timestamp, so dates increase but never depend on the clock."""
        self.clock += 1
        return b"%d +0000" % (BASE_TIME + self.clock * TIME_STEP)

    def data(self, payload: bytes) -> None:
        """Write a counted ``data`` block (binary safe, no delimiter scanning)."""
        self.out.write(b"data %d\n" % len(payload))
        self.out.write(payload)
        self.out.write(b"\n")

    def commit(
        self,
        branch: Branch,
        message: str,
        changes: list[tuple[str, bytes | None]],
        parent: int | None = None,
        merge: int | None = None,
    ) -> int:
        """Write one commit on ``branch`` applying ``changes`` (``None`` content = delete)."""
        self.mark += 1
        when = self.tick()
        self.out.write(b"commit %s\nmark :%d\n" % (branch.ref, self.mark))
        self.out.write(b"author %s %s\ncommitter %s %s\n" % (AUTHOR, when, COMMITTER, when))
        self.data(message.encode())
        if parent is not None:
            self.out.write(b"from :%d\n" % parent)
        if merge is not None:
            self.out.write(b"merge :%d\n" % merge)
        for path, content in changes:
            if content is None:
                self.out.write(b"D %s\n" % path.encode())
            else:
                self.out.write(b"M 100644 inline %s\n" % path.encode())
                self.data(content)
        self.out.write(b"\n")
        branch.last_mark = self.mark
        return self.mark

    def tag(self, name: str, target: int, message: str) -> None:
        """Write an annotated tag pointing at commit mark ``target``."""
        self.out.write(b"tag %s\nfrom :%d\n" % (name.encode(), target))
        self.out.write(b"tagger %s %s\n" % (TAGGER, self.tick()))
        self.data(message.encode())  # a tag takes no trailing blank line, unlike a commit

    def lightweight_tag(self, name: str, target: int) -> None:
        """Point ``refs/tags/<name>`` directly at a commit (no tag object)."""
        self.out.write(b"reset refs/tags/%s\nfrom :%d\n\n" % (name.encode(), target))


class HistoryBuilder:
    """Decide, deterministically, what every commit of the corpus does."""

    def __init__(self, sources: list[tuple[str, bytes]], commits: int, seed: int) -> None:
        """Shuffle the source pool with ``seed`` so early history spans the whole stdlib."""
        self.rng = random.Random(seed)
        self.commits = commits
        self.pool = list(sources)
        self.rng.shuffle(self.pool)
        self.pool.reverse()  # pop() from the end takes them in shuffled order
        self.main = Branch(b"refs/heads/main", {}, [])
        self.hot: list[str] = []

    def take_new(self, branch: Branch) -> tuple[str, bytes] | None:
        """Take the next unused stdlib file for ``branch`` (``None`` once all are used)."""
        while self.pool:
            path, content = self.pool.pop()
            if path not in branch.files:
                return path, content
        return None

    def pick_existing(self, branch: Branch, rng: random.Random) -> str:
        """Pick a file to edit; a small hot set is favoured, as in real projects."""
        hot = [p for p in self.hot if p in branch.files]
        if hot and rng.random() < 0.6:
            return rng.choice(hot)
        return rng.choice(branch.tracked)

    @staticmethod
    def apply(branch: Branch, changes: list[tuple[str, bytes | None]]) -> None:
        """Record ``changes`` in the branch state so later edits build on them."""
        for path, content in changes:
            branch.changed.add(path)
            if content is None:
                branch.files.pop(path, None)
                branch.tracked.remove(path)
            else:
                if path not in branch.files:
                    branch.tracked.append(path)
                branch.files[path] = content

    def initial_changes(self) -> list[tuple[str, bytes | None]]:
        """The root commit imports a slice of the stdlib at once, like an initial import."""
        changes: list[tuple[str, bytes | None]] = []
        for _ in range(INITIAL_FILES):
            item = self.take_new(self.main)
            if item is None:
                break
            changes.append(item)
        self.hot = sorted(self.rng.sample([p for p, _ in changes], min(HOT_FILES, len(changes))))
        return changes

    def main_changes(self, index: int) -> tuple[str, list[tuple[str, bytes | None]]]:
        """A regular main commit: maybe add 1-3 files, edit 1-4, rarely delete one."""
        rng, branch = self.rng, self.main
        changes: dict[str, bytes | None] = {}
        if rng.random() < 0.35:
            for _ in range(rng.randint(1, 3)):
                item = self.take_new(branch)
                if item is not None:
                    changes[item[0]] = item[1]
        stamp = b"main-%d" % index
        for _ in range(rng.randint(1, 4)):
            path = self.pick_existing(branch, rng)
            base = changes.get(path) or branch.files[path]
            changes[path] = mutate(base, rng, stamp)
        if rng.random() < 0.02 and len(branch.tracked) > 50:
            victim = rng.choice(branch.tracked)
            if victim not in self.hot and victim not in changes:
                changes[victim] = None
                self.pool.insert(0, (victim, branch.files[victim]))  # may be re-added later
        verb = "Add" if any(p not in branch.files for p in changes) else "Update"
        noun = "file" if len(changes) == 1 else "files"
        return f"{verb} {len(changes)} {noun} (main #{index})", list(changes.items())

    def feature_changes(
        self, feature: Branch, spec: FeatureSpec, step: int
    ) -> tuple[str, list[tuple[str, bytes | None]]]:
        """A feature commit: edit 1-3 existing files, sometimes add a copied stdlib file."""
        rng = self.rng
        changes: dict[str, bytes | None] = {}
        stamp = b"%s-%d" % (spec.name.encode(), step)
        for _ in range(rng.randint(1, 3)):
            path = self.pick_existing(feature, rng)
            changes[path] = mutate(changes.get(path) or feature.files[path], rng, stamp)
        if rng.random() < 0.2:
            src = rng.choice(feature.tracked)
            dest = f"Tools/{spec.name.split('/')[1]}/{step:04d}_{src.rsplit('/', 1)[1]}"
            changes[dest] = feature.files[src]
        return f"{spec.name}: step {step}", list(changes.items())

    def merge_changes(self, feature: Branch) -> list[tuple[str, bytes | None]]:
        """Resolve a merge by taking the feature's version of every path it touched."""
        return [(p, feature.files.get(p)) for p in sorted(feature.changed)]


def schedule(specs: list[FeatureSpec], commits: int) -> dict[int, list[tuple[FeatureSpec, int]]]:
    """Spread each feature's commits evenly between its fork and its merge (or the end)."""
    plan: dict[int, list[tuple[FeatureSpec, int]]] = {}
    for spec in specs:
        end = spec.merge_at if spec.merge_at is not None else commits
        span = end - spec.fork_at - 1
        for step in range(spec.commits):
            at = spec.fork_at + step * span // spec.commits
            plan.setdefault(at, []).append((spec, step))
    return plan


def generate(out: IO[bytes], sources: list[tuple[str, bytes]], commits: int, seed: int) -> None:
    """Write the whole fast-import stream for a corpus of ``commits`` main commits."""
    writer = StreamWriter(out)
    builder = HistoryBuilder(sources, commits, seed)
    specs = feature_specs(commits)
    plan = schedule(specs, commits)
    merges = {s.merge_at: s for s in specs if s.merge_at is not None}
    features: dict[str, Branch] = {}
    out.write(b"feature done\n")
    for index in range(commits):
        main = builder.main
        if index == 0:
            changes = builder.initial_changes()
            message = "Initial import of the standard library"
            writer.commit(main, message, changes)
        elif index in merges:
            spec = merges[index]
            feature = features[spec.name]
            changes = builder.merge_changes(feature)
            writer.commit(main, f"Merge branch '{spec.name}'", changes, merge=feature.last_mark)
        else:
            message, changes = builder.main_changes(index)
            writer.commit(main, message, changes)
        builder.apply(main, changes)
        for spec in specs:
            if spec.fork_at == index:
                ref = f"refs/heads/{spec.name}".encode()
                features[spec.name] = Branch(ref, dict(main.files), list(main.tracked), main.last_mark)
        for spec, step in plan.get(index, []):
            feature = features[spec.name]
            message, changes = builder.feature_changes(feature, spec, step)
            parent = feature.last_mark if step == 0 else None
            writer.commit(feature, message, changes, parent=parent)
            builder.apply(feature, changes)
        if index and index % TAG_EVERY == 0:
            writer.tag(f"v1.{index // TAG_EVERY}", main.last_mark, f"Release 1.{index // TAG_EVERY}\n")
    writer.lightweight_tag("latest", builder.main.last_mark)
    out.write(b"done\n")


def git(*args: str, cwd: Path | None = None, stdin: int | None = None) -> str:
    """Run git with a config-free environment so user settings cannot change the result."""
    env = {**os.environ, **DETERMINISTIC_ENV}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return proc.stdout


def fast_import(dest: Path, sources: list[tuple[str, bytes]], commits: int, seed: int) -> None:
    """Create ``dest`` as a bare repository and stream the generated history into it."""
    git("init", "--quiet", "--bare", "--initial-branch=main", str(dest))
    env = {**os.environ, **DETERMINISTIC_ENV}
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--done"], cwd=dest, env=env, stdin=subprocess.PIPE
    )
    assert proc.stdin is not None
    try:
        generate(proc.stdin, sources, commits, seed)
    finally:
        proc.stdin.close()
        if proc.wait() != 0:
            raise RuntimeError(f"git fast-import failed with status {proc.returncode}")


def repack(dest: Path) -> None:
    """Repack into one pack with fresh delta search, as ``git gc --aggressive``-lite would."""
    git("repack", "-a", "-d", "-f", "-q", "--window=10", "--depth=50", cwd=dest)
    git("pack-refs", "--all", cwd=dest)
    git("prune", "--expire=now", cwd=dest)


def describe(dest: Path) -> tuple[int, int]:
    """Return (object count, pack bytes) of the finished corpus."""
    stats = dict(line.split(": ", 1) for line in git("count-objects", "-v", cwd=dest).splitlines())
    pack_bytes = sum(p.stat().st_size for p in (dest / "objects" / "pack").glob("*.pack"))
    return int(stats["in-pack"]) + int(stats["count"]), pack_bytes


def build(dest: Path, commits: int = DEFAULT_COMMITS, seed: int = DEFAULT_SEED) -> tuple[int, int]:
    """Build the corpus atomically: a half-built repository never appears at ``dest``."""
    if dest.exists():
        raise FileExistsError(f"{dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    sources = load_sources(stdlib_root())
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".corpus-") as tmp:
        work = Path(tmp) / "repo.git"
        fast_import(work, sources, commits, seed)
        repack(work)
        work.rename(dest)
    return describe(dest)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description="Build the deterministic benchmark corpus.")
    parser.add_argument("dest", type=Path, help="bare repository to create (must not exist)")
    parser.add_argument("--commits", type=int, default=None, help="commits on main")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--big", action="store_true", help=f"{BIG_COMMITS} commits (>=100k objects)")
    parser.add_argument("--force", action="store_true", help="replace DEST if it exists")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: build the corpus and print its size."""
    args = parse_args(argv)
    commits = args.commits or (BIG_COMMITS if args.big else DEFAULT_COMMITS)
    if args.force and args.dest.exists():
        shutil.rmtree(args.dest)
    started = time.monotonic()
    objects, pack_bytes = build(args.dest, commits, args.seed)
    head = git("rev-parse", "main", cwd=args.dest).strip()
    print(
        f"{args.dest}: {objects} objects, pack {pack_bytes / 2**20:.1f} MiB, "
        f"{commits} commits on main (tip {head}), {time.monotonic() - started:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
