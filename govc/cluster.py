"""Several nodes, one PostgreSQL database: how a node keeps its memory in step with the others.

Every node holds every repository in memory and serves reads from there; every write goes
through the one write path (``Repository.update_refs``), whose compare-and-swap happens in the
shared database (``PostgresBackend.commit_refs``). What one node must learn from the others is
therefore only what they committed, and that is all in the database: packs (committed before the
refs that need them) and the event log, whose ids are handed out in commit order. A node's
:class:`Cluster` follows it:

* a *listener* thread keeps a ``LISTEN govc_events, govc_repos`` connection, only to wake the
  follower early (a notification may be lost; nothing depends on it);
* a *follower* thread reads the log after the last event it applied (``horizon``) — when woken,
  and every ``poll`` seconds whatever happens — and applies each event in id order: it loads the
  packs the event's new values need (by name, those not held yet; packs another node compacted
  away are dropped once their replacement is in), moves the refs in memory without writing
  anything, appends the reflog entries, and then hands the event to the repository's listeners
  (watchers, the event log's waiting streams). A repository unknown here is loaded whole, one
  deleted elsewhere is forgotten.

Events this node committed itself are not applied again: ``update_refs`` gives them to
:meth:`Cluster.announce` (the repository's ``announce`` hook) under the repository's event lock,
and the follower takes that lock before it looks at an event, so it always knows whether an
event is its own. Every event — local or remote — reaches the listeners from the follower, in the
log's order, exactly once per node. (A commit whose outcome was unknown, the connection lost
during COMMIT, is not announced: if it did commit, the follower finds it in the log and applies it
like another node's.)

A ref change is applied only if it is newer than what memory already holds for that ref: the
loaded state's event (``Repository.loaded_event``) and the newest event applied to the ref, local
or remote. That makes replays harmless and keeps a local update from being overwritten by an
older remote one that the follower reaches later.

The node's event log (``govc.events.EventLog``) ends at ``horizon`` for this node's readers, so an
SSE stream or a webhook payload never names objects the node has not loaded yet. Webhook
deliveries are made once per cluster by the webhook store's compare-and-set and claims (see
``govc.webhooks``); hook scripts run where the push was received.

Failures: while PostgreSQL is unreachable the follower retries with a growing pause (at most
``RETRY_MAX``), ``error`` says why (``/readyz`` answers 503), reads are served from memory, and
anything that must write fails with the backend's clear error. When the database is back the
follower catches up from its horizon, so nothing it missed is lost; a node restarted after a
crash loads the current state and then follows from there.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from govc.repository import RefChange, RefEvent, Repository
from storage.errors import StorageError, StorageUnavailable
from storage.interfaces import ZERO_OID, ReflogEntry

if TYPE_CHECKING:
    from govc.registry import Registry
    from storage.postgres import PostgresDirectory

log = logging.getLogger("govc.cluster")

#: Seconds between looks at the log when no notification arrives (the safety net).
POLL = 2.0
#: Seconds between comparisons of the repository names here and in the database.
RESCAN = 30.0
#: Events read per query.
BATCH = 500
#: Pauses between attempts while the database is unreachable.
RETRY_MIN = 0.2
RETRY_MAX = 5.0
#: Seconds the listener waits for notifications before checking whether it should stop.
LISTEN_TICK = 0.5


@dataclass(slots=True)
class _Followed:
    """What memory already reflects for one repository."""

    floor: int  # every event up to this id is in the loaded state
    latest: dict[str, int] = field(default_factory=dict)  # ref -> newest event applied to it

    def newer(self, ref: str, event_id: int) -> bool:
        return event_id > max(self.floor, self.latest.get(ref, 0))


class Cluster:
    """This node's follower of a shared database (see the module docstring)."""

    def __init__(self, registry: Registry, directory: PostgresDirectory, *, start_after: int,
                 poll: float = POLL, rescan: float = RESCAN) -> None:
        self.registry = registry
        self.directory = directory
        #: The newest event this node has applied and handed to its listeners.
        self.horizon = start_after
        self.poll = poll
        self.rescan = rescan
        #: Why following currently fails (None: it does not).
        self.error: str | None = None
        #: Whether the notification connection is up (following works without it, slower).
        self.listening = False
        #: Other nodes' events applied here, for metrics and tests.
        self.applied = 0
        self.running = False
        self._state: dict[str, _Followed] = {}
        self._local: dict[int, RefEvent] = {}
        self._hints: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._caught_up = threading.Condition()
        self._rescan_at = time.monotonic() + rescan
        self._threads: list[threading.Thread] = []

    def __repr__(self) -> str:
        return f"<Cluster following {self.directory!r} at event {self.horizon}>"

    # -- life cycle --------------------------------------------------------------------------

    def attach(self, repo: Repository) -> None:
        """A repository the registry now serves (loaded, created or adopted)."""
        with self._lock:
            floor = repo.loaded_event if repo.loaded_event is not None else self.horizon
            self._state[repo.name] = _Followed(floor)
        if self.running:
            repo.announce = self.announce

    def start(self) -> None:
        """Start following (the server does this once it is up)."""
        if self.running:
            return
        self.running = True
        self._stop.clear()
        self.registry.events.horizon = lambda: self.horizon
        for repo in self.registry.repositories().values():
            repo.announce = self.announce
        self._threads = [threading.Thread(target=self._listen, name="govc-cluster-listen", daemon=True),
                         threading.Thread(target=self._follow, name="govc-cluster-follow", daemon=True)]
        for thread in self._threads:
            thread.start()
        self._wake.set()

    def close(self) -> None:
        """Stop following; events of this node not yet handed out go to their listeners now."""
        if not self.running:
            return
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=LISTEN_TICK + 5)
        self.running = False
        repos = self.registry.repositories()
        for repo in repos.values():
            repo.announce = None
        with self._lock:
            pending, self._local = sorted(self._local.items()), {}
        for _, event in pending:
            repo = repos.get(event.repository)
            if repo is not None:
                repo.notify_listeners(event)
        self.registry.events.horizon = None

    def poke(self) -> None:
        """Look at the log now rather than at the next notification or poll."""
        self._wake.set()

    def wait_until(self, event_id: int, timeout: float) -> bool:
        """Block until this node has applied ``event_id`` (True), or ``timeout`` seconds passed."""
        deadline = time.monotonic() + timeout
        self.poke()
        with self._caught_up:
            while self.horizon < event_id:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._caught_up.wait(min(left, 0.5))
        return True

    def catch_up(self, timeout: float = 10.0) -> bool:
        """Block until this node has applied every event committed so far."""
        return self.wait_until(self.directory.last_event_id(), timeout)

    # -- this node's own updates --------------------------------------------------------------

    def announce(self, event: RefEvent) -> None:
        """``Repository.announce``: an update this node committed, already in its memory. Called
        under the repository's event lock, which the follower takes before it looks at an event."""
        assert event.id is not None
        with self._lock:
            if event.id <= self.horizon:
                return  # the follower got there first, through another handle on the repository
            self._local[event.id] = event
            state = self._state.get(event.repository)
            if state is not None:
                for change in event.changes:
                    state.latest[change.name] = max(state.latest.get(change.name, 0), event.id)
        self._wake.set()

    # -- the listener ---------------------------------------------------------------------------

    def _listen(self) -> None:
        import psycopg  # here, not at the top: a server without a shared database never needs it

        from storage.postgres import EVENT_CHANNEL, REPO_CHANNEL

        delay = RETRY_MIN
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.directory.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {EVENT_CHANNEL}")
                    conn.execute(f"LISTEN {REPO_CHANNEL}")
                    if not self.listening:
                        log.info("listening for other nodes' updates")
                    self.listening = True
                    delay = RETRY_MIN
                    # Whatever was said while nobody listened: read the log, compare the names.
                    self._rescan_at = 0.0
                    self._wake.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=LISTEN_TICK):
                            if note.channel == REPO_CHANNEL:
                                with self._lock:
                                    self._hints.add(note.payload)
                            self._wake.set()
            except psycopg.Error as e:
                if self.listening:
                    log.warning("lost the notification connection (%s); following by polling until "
                                "it is back", " ".join(str(e).split()))
                self.listening = False
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX)
        self.listening = False

    # -- the follower ---------------------------------------------------------------------------

    def _follow(self) -> None:
        delay = RETRY_MIN
        while not self._stop.is_set():
            self._wake.wait(self.poll)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.step()
            except Exception as e:  # the database is away, or something unexpected: retry later
                reason = " ".join(str(e).split()) or type(e).__name__
                if self.error != reason:
                    if isinstance(e, StorageError):
                        log.warning("following other nodes failed: %s (retrying)", reason)
                    else:
                        log.exception("following other nodes failed (retrying)")
                self.error = reason
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX)
                self._wake.set()
                continue
            if self.error is not None:
                log.info("following other nodes again (at event %d)", self.horizon)
            self.error = None
            delay = RETRY_MIN

    def step(self) -> None:
        """One round: repositories created or deleted elsewhere, then every new event."""
        with self._lock:
            hints, self._hints = self._hints, set()
        if time.monotonic() >= self._rescan_at:
            self._rescan()
            self._rescan_at = time.monotonic() + self.rescan
        for name in sorted(hints):
            self._look_at(name)
        while True:
            rows = self.directory.events_since(self.horizon, None, BATCH)
            for event_id, name, when, payload in rows:
                self._apply(event_id, name, when, json.loads(payload))
            if rows:
                self.registry.events.wake()
                with self._caught_up:
                    self._caught_up.notify_all()
            if len(rows) < BATCH:
                return

    def _rescan(self) -> None:
        stored = set(self.directory.repo_names())
        here = self.registry.repositories()
        changed = (stored - set(here)) | {n for n, r in here.items() if n not in stored and r.durable}
        for name in sorted(changed):
            self._reconcile(name)

    def _look_at(self, name: str) -> None:
        repo, done = self._reconcile(name)
        if done == "unchanged" and repo is not None and hasattr(repo.backend, "read_refs"):
            _refs, symrefs = repo.backend.read_refs()
            repo.refs.replace_symrefs(symrefs)

    def _reconcile(self, name: str) -> tuple[Repository | None, str]:
        repo, done = self.registry.reconcile(name)
        if done == "adopted":
            log.info("serving %s, created on another node", name)
        elif done == "forgotten":
            log.info("no longer serving %s, deleted on another node", name)
            with self._lock:
                self._state.pop(name, None)
        return repo, done

    def _apply(self, event_id: int, name: str, when: float, payload: Mapping[str, Any]) -> None:
        repo = self.registry.get(name)
        if repo is None:
            repo, _ = self._reconcile(name)
            if repo is None:
                self._advance(event_id)  # deleted since: nobody here to tell
                return
        changes = [(str(c["ref"]), str(c["old"]).encode(), str(c["new"]).encode())
                   for c in payload.get("changes", ())]
        # Objects first, outside the repository's locks (loading a pack can take a while).
        if any(new != ZERO_OID and not repo.objects.has(new) for _, _, new in changes):
            self._load_packs(repo)
            missing = [new for _, _, new in changes if new != ZERO_OID and not repo.objects.has(new)]
            if missing:
                # Packs commit before the refs that need them, so this is damage, not a race:
                # say so, and go on rather than stop following everything else.
                log.error("event %d of %s names %s, which no stored pack holds", event_id, name,
                          missing[0].decode())
        with repo._event_lock:
            with self._lock:
                event = self._local.pop(event_id, None)
            if event is None:
                event = self._apply_remote(repo, event_id, when, payload, changes)
            self._advance(event_id)
            repo.notify_listeners(event)

    def _advance(self, event_id: int) -> None:
        with self._lock:
            self.horizon = max(self.horizon, event_id)

    def _apply_remote(self, repo: Repository, event_id: int, when: float, payload: Mapping[str, Any],
                      changes: list[tuple[str, bytes, bytes]]) -> RefEvent:
        who, message = str(payload.get("who", "")), str(payload.get("message", ""))
        stamp = float(payload.get("time", when))
        with self._lock:
            state = self._state.setdefault(repo.name, _Followed(repo.loaded_event or 0))
            moves: list[tuple[str, bytes | None]] = []
            entries: list[tuple[str, ReflogEntry]] = []
            for ref, old, new in changes:
                if not state.newer(ref, event_id):
                    continue  # memory already holds this or a later value
                state.latest[ref] = event_id
                moves.append((ref, None if new == ZERO_OID else new))
                entries.append((ref, ReflogEntry(old, new, who, stamp, message)))
        if moves:
            repo.refs.apply_followed(moves, entries)
            self.applied += 1
        return RefEvent(
            repo.name,
            tuple(RefChange(ref, None if old == ZERO_OID else old, None if new == ZERO_OID else new)
                  for ref, old, new in changes),
            who, message, str(payload.get("source", "")), stamp,
            tuple(str(o) for o in payload.get("push_options") or ()), event_id,
        )

    def _load_packs(self, repo: Repository) -> None:
        """Load the repository's stored packs this node lacks; drop held ones that are no longer
        stored (another node compacted them into a pack loaded here now or before)."""
        backend = repo.backend
        if not hasattr(backend, "pack_names"):
            return
        with repo.maintenance_lock:
            held = repo.objects.packs  # before listing: every one of these was stored already
            names = backend.pack_names()
            have = {p.name for p in repo.objects.packs}
            missing = [n for n in names if n not in have]
            for pack in backend.read_packs(missing):
                repo.objects.add_pack(pack)
            stored = set(names)
            gone = [p for p in held if p.name not in stored]
            if gone and stored:  # (nothing stored at all: deleted meanwhile, keep serving what is held)
                repo.objects.drop_packs(gone)


# -- the HTTP side ---------------------------------------------------------------------------------


@web.middleware
async def unavailable(request: web.Request, handler: Any) -> web.StreamResponse:
    """A request that needed the database while it was unreachable: 503 with the reason (git
    shows a text/plain body as ``remote:`` lines), so clients retry rather than give up."""
    try:
        return await handler(request)
    except StorageUnavailable as e:
        message = f"govc: the database is unreachable, try again shortly ({e})"
        headers = {"Retry-After": "5", "Cache-Control": "no-cache"}
        if request.path.startswith("/api/"):
            return web.json_response({"error": "unavailable", "message": message}, status=503,
                                     headers=headers)
        return web.Response(status=503, text=message + "\n", headers=headers)
