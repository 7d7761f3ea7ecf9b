"""Watchers: callbacks that hear about ref updates after they happen, off the update path.

Each watcher has its own worker thread and queue, so events arrive in commit order, a slow or
failing watcher delays only itself, and a push never waits for one. Coroutine callbacks run on
the event loop that was running when they were registered (or on the worker's own loop).
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from govc.trees import Commit, FileChange, TreeReader, load_commit
from storage.packs import OBJ_COMMIT

if TYPE_CHECKING:
    from govc.repository import RefEvent, Repository

log = logging.getLogger("govc.watch")


def short_name(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/realities/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


@dataclass
class Event:
    """One ref's update, as a watcher sees it. Changed paths and commits are computed on first
    use, in the watcher's thread."""

    repository: str
    ref: str
    old: str | None
    new: str | None
    pusher: str
    source: str  # "push", "api", "merge", "import"
    push_options: tuple[str, ...]
    message: str
    time: float
    _repo: Repository = field(repr=False)

    @property
    def branch(self) -> str:
        return short_name(self.ref)

    def _commit_tree(self, oid: str | None) -> bytes | None:
        if oid is None:
            return None
        objects = self._repo.objects
        if objects.type_of(oid.encode()) != OBJ_COMMIT:
            return None
        return self._repo.graph.commit(oid.encode()).tree

    @cached_property
    def _changes(self) -> list[FileChange]:
        reader: TreeReader = self._repo.trees
        return list(reader.diff(self._commit_tree(self.old), self._commit_tree(self.new)))

    def changes(self, pattern: str | None = None) -> list[FileChange]:
        """Changed files, optionally only those matching a glob (``"*.tf"``)."""
        if pattern is None:
            return list(self._changes)
        return [c for c in self._changes if c.matches(pattern)]

    @property
    def paths(self) -> list[str]:
        return [c.path for c in self._changes]

    @cached_property
    def commits(self) -> list[Commit]:
        """Commits new on this ref (reachable from ``new``, not from ``old``), newest first."""
        if self.new is None or self._commit_tree(self.new) is None:
            return []
        graph = self._repo.graph
        stop = graph.ancestors([self.old.encode()]) if self.old and self._commit_tree(self.old) else set()
        new = graph.ancestors([self.new.encode()], stop=stop)
        order = graph.oldest_first(self.new.encode(), new)  # reversed: newest first, children first
        return [load_commit(self._repo.objects, c) for c in reversed(order)]

    @property
    def author(self) -> str | None:
        if self.new is None or self._commit_tree(self.new) is None:
            return None
        return load_commit(self._repo.objects, self.new.encode()).author


def _as_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


class Watcher:
    """A registered callback with its filters, queue and worker thread."""

    def __init__(
        self,
        repo: Repository,
        fn: Callable[[Event], Any],
        *,
        paths: str | Sequence[str] | None = None,
        branches: str | Sequence[str] | None = None,
    ) -> None:
        self.repo = repo
        self.fn = fn
        self.paths = _as_list(paths)
        self.branches = _as_list(branches)
        self.is_async = inspect.iscoroutinefunction(fn)
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._queue: queue.SimpleQueue[Event | _Marker | None] = queue.SimpleQueue()
        self._unsubscribe = repo.subscribe(self._deliver)
        self._thread = threading.Thread(target=self._work, name=f"govc-watch-{fn.__name__}", daemon=True)
        self._thread.start()
        self.delivered = 0
        self._closed = False

    def _deliver(self, event: RefEvent) -> None:
        for change in event.changes:
            if self.branches is not None and not any(
                fnmatch.fnmatchcase(short_name(change.name), b) or fnmatch.fnmatchcase(change.name, b)
                for b in self.branches
            ):
                continue
            self._queue.put(Event(
                event.repository, change.name,
                change.old.decode() if change.old else None,
                change.new.decode() if change.new else None,
                event.who, event.source, event.push_options, event.message, event.time, self.repo,
            ))

    def _work(self) -> None:
        own_loop: asyncio.AbstractEventLoop | None = None
        while True:
            event = self._queue.get()
            if event is None:
                break
            if isinstance(event, _Marker):
                event.done.set()
                continue
            try:
                if self.paths is not None and not any(event.changes(p) for p in self.paths):
                    continue
                result = self.fn(event)
                if inspect.isawaitable(result):
                    if self._loop is not None and self._loop.is_running():
                        asyncio.run_coroutine_threadsafe(result, self._loop).result()  # type: ignore[arg-type]
                    else:
                        own_loop = own_loop or asyncio.new_event_loop()
                        own_loop.run_until_complete(result)
                self.delivered += 1
            except Exception:
                log.exception("watcher %s failed on %s", getattr(self.fn, "__name__", self.fn), event.ref)
        if own_loop is not None:
            own_loop.close()

    def close(self, wait: bool = True) -> None:
        """Stop receiving events; with ``wait``, let queued ones finish first. Idempotent."""
        self._unsubscribe()
        if self in self.repo.watchers:
            self.repo.watchers.remove(self)
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        if wait and threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)

    def drain(self, timeout: float = 10.0) -> bool:
        """Block until every event queued so far has been handled (useful in tests and scripts);
        False if that took longer than ``timeout``."""
        done = threading.Event()
        self._queue.put(_Marker(done))
        return done.wait(timeout)

    def __call__(self, event: Event) -> Any:
        return self.fn(event)


class _Marker:
    """A queue item that only signals that everything before it was handled."""

    def __init__(self, done: threading.Event) -> None:
        self.done = done
