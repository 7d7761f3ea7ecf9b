"""The server's event log: every acknowledged ref update with a monotonically increasing id.

With a data directory the log is the ``events`` table, written in the same SQLite transaction as
the ref update (an outbox: nothing acknowledged is missing from it, nothing in it was not
acknowledged). In memory it is a bounded list. Live streams and webhook workers read it with
:meth:`EventLog.since` and sleep in :meth:`EventLog.wait` until something new arrives.

With a database several nodes share, the table holds every node's events, and a node may only
hand out those it has caught up with (their objects loaded, their refs moved in its memory), or a
stream filtering by path, or a webhook payload listing commits, would look for objects the node
does not have yet. The node's follower (govc.cluster) sets :attr:`EventLog.horizon`: the log then
ends, for this node, at the last event the follower has applied, and grows as it applies more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from govc.repository import RefEvent
    from storage.disk import DataDirectory
    from storage.postgres import PostgresDirectory

#: Events an in-memory log keeps for replay.
MEMORY_LOG_SIZE = 100_000


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    id: int
    repository: str
    time: float
    payload: dict[str, object]


class EventLog:
    def __init__(self, directory: DataDirectory | PostgresDirectory | None = None) -> None:
        self.directory = directory
        #: The newest event this node has applied, when it follows a shared log (else None).
        self.horizon: Callable[[], int] | None = None
        self._memory: deque[LoggedEvent] = deque(maxlen=MEMORY_LOG_SIZE)
        self._next = 1
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.closed = False

    def close(self) -> None:
        """Server shutdown: wake every waiting stream so it can end."""
        self.closed = True
        self._wake()

    def record(self, event: RefEvent) -> None:
        """A repository listener: log in-memory events, then wake everyone waiting."""
        if self.directory is None:
            with self._lock:
                self._memory.append(LoggedEvent(self._next, event.repository, event.time, event.record()))
                self._next += 1
        elif event.id is None:
            return  # an ephemeral reality's update in a durable repository: never logged
        self._wake()

    def wake(self) -> None:
        """Something new may be in the log (the follower applied other nodes' events)."""
        self._wake()

    def _wake(self) -> None:
        for loop, flag in list(self._waiters):
            try:
                loop.call_soon_threadsafe(flag.set)
            except RuntimeError:  # that loop is closed
                self._waiters.discard((loop, flag))

    def last_id(self) -> int:
        if self.horizon is not None:
            return self.horizon()
        if self.directory is not None:
            return self.directory.last_event_id()
        with self._lock:
            return self._next - 1

    def since(self, after: int, repository: str | None = None, limit: int = 1000) -> list[LoggedEvent]:
        """Events with an id above ``after`` (optionally of one repository), oldest first."""
        if self.horizon is not None:
            top = self.horizon()
            if top <= after:
                return []
            rows = self.directory.events_since(after, repository, limit, upto=top)  # type: ignore[union-attr, call-arg]
            return [LoggedEvent(i, r, t, json.loads(p)) for i, r, t, p in rows]
        if self.directory is not None:
            return [LoggedEvent(i, r, t, json.loads(p))
                    for i, r, t, p in self.directory.events_since(after, repository, limit)]
        with self._lock:
            items = [e for e in self._memory if e.id > after
                     and (repository is None or e.repository == repository)]
        return items[:limit]

    async def wait(self, after: int, timeout: float) -> None:
        """Return when an event newer than ``after`` may exist, or after ``timeout`` seconds."""
        flag = asyncio.Event()
        key = (asyncio.get_running_loop(), flag)
        self._waiters.add(key)
        try:
            if self.last_id() > after:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(flag.wait(), timeout)
        finally:
            self._waiters.discard(key)
