"""Webhooks: every ref update, delivered to subscribed URLs as GitHub ``push`` events.

Subscriptions ("hooks") belong to one repository or to the whole server. They live in the site
database (:mod:`storage.sitedb`; tables ``webhooks``, ``webhook_cursor``, ``deliveries``): the data
directory's SQLite, the PostgreSQL database a cluster's nodes share, or a private in-memory SQLite
database when the server has no data directory, so every mode shares one code path.

How an update reaches a receiver::

    ref update ──(same transaction)──> events table (govc.events.EventLog)
        worker: for each active hook, read the log after the hook's cursor, build one GitHub
        ``push`` payload per ref change that passes the hook's filters, and insert the
        deliveries and the advanced cursor in ONE transaction (no gaps, no double enqueue)
        worker: claim due deliveries (a lease: ``claimed`` moves past the attempt's timeout, by
        one conditional UPDATE that only one node can win), send them (at most ``concurrency``
        at once, ``per_hook`` per hook), record every attempt (which ends the lease); retry with
        exponential backoff on connection errors, timeouts and 5xx, after ``Retry-After`` on
        429; 2xx delivers, any other status fails for good.

With several nodes every worker runs these same steps against the shared database: the cursor's
compare-and-set lets exactly one node enqueue each event, and the claim lets exactly one node
send each attempt, so a push is delivered once by the cluster, not once per node. A node that
dies holding a claim leaves the delivery to be retried by another once the lease runs out.

The worker is off the push path: pushes only write the event row they write anyway, so a slow or
dead receiver never slows a push. Delivery is at least once: a delivery sent but not yet recorded
when the process dies is sent again after the restart (receivers deduplicate on
``X-GitHub-Delivery``, which stays the same across retries and redeliveries).

Targets are checked on the addresses they resolve to, at delivery time, by the resolver the HTTP
client connects with (so a name cannot resolve to one address for the check and another for the
connection): loopback, private (RFC 1918), link-local, unique-local and similar ranges are refused
unless the operator allowed them (``ServerConfig.webhook_allow``, ``govc serve --webhook-allow``).

The Python API (``WebhookManager``)::

    hooks = WebhookManager(registry, allow=["10.0.0.0/8"])
    hook = hooks.create("https://ci.example.com/hook", repository="infra", secret="s3cret",
                        branches=["main", "release/*"], paths=["*.tf"])
    infra = hooks.for_repository("infra")        # the same calls, bound to one repository
    infra.list(); infra.deliveries(hook.id); infra.redeliver(hook.id, delivery_id)
    await hooks.start() ... await hooks.stop()   # the delivery worker (the server does this)

``Repository.webhooks`` can later be ``manager.for_repository(repo.name)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import fnmatch
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import random
import re
import socket
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from govc.api_common import json_body, json_error
from govc.events import LoggedEvent
from govc.registry import RepositoryNameError, normalize_name
from govc.watch import short_name
from storage.errors import StorageError
from storage.packs import OBJ_COMMIT
from storage.sitedb import SQLITE, SiteDatabase

if TYPE_CHECKING:
    from govc.registry import Registry
    from govc.repository import Repository

log = logging.getLogger("govc.webhooks")

USER_AGENT = "govc-Hookshot/0.1"
ZERO = "0" * 40
#: GitHub lists at most this many commits in a push payload (the newest ones, oldest first).
MAX_COMMITS = 20
#: How much of a receiver's answer is read (and how much of it the delivery log keeps).
MAX_RESPONSE = 64 << 10
KEPT_RESPONSE = 4 << 10
#: Seconds one attempt may take, connection to last byte read.
TIMEOUT = 10.0
#: The largest ``Retry-After`` honoured; a longer one is cut to this.
MAX_RETRY_AFTER = 3600.0
#: Finished deliveries kept per hook in the delivery log.
KEEP_DELIVERIES = 1000
EVENT_BATCH = 500
#: The worker looks at the log at least this often even when nothing wakes it.
IDLE_POLL = 5.0
EVENTS = ("push",)
CONTENT_TYPES = {"json": "application/json", "form": "application/x-www-form-urlencoded"}
BACKOFF_ENV = "GOVC_WEBHOOK_BACKOFF"
DEFAULT_CAP = 300.0

#: Refused unless allowed: loopback, RFC 1918, link-local, unique-local, and the other ranges
#: that reach the server itself or its private network ("this network", CGNAT, multicast).
BLOCKED_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
))

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS webhooks (
        id INTEGER PRIMARY KEY AUTOINCREMENT, repo TEXT, url TEXT NOT NULL,
        content_type TEXT NOT NULL, secret TEXT NOT NULL, insecure_ssl INTEGER NOT NULL,
        events TEXT NOT NULL, active INTEGER NOT NULL, branches TEXT NOT NULL, paths TEXT NOT NULL,
        created REAL NOT NULL, updated REAL NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS webhook_cursor (hook INTEGER PRIMARY KEY, event INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT, hook INTEGER NOT NULL, guid TEXT NOT NULL,
        event_id INTEGER NOT NULL, repo TEXT NOT NULL, ref TEXT NOT NULL, event TEXT NOT NULL,
        payload TEXT NOT NULL, redelivery INTEGER NOT NULL, status TEXT NOT NULL,
        attempts INTEGER NOT NULL, next_attempt REAL, response_code INTEGER, latency_ms REAL,
        last_error TEXT, response_body TEXT, created REAL NOT NULL, updated REAL NOT NULL,
        delivered REAL, claimed REAL)""",
    "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt)",
    "CREATE INDEX IF NOT EXISTS deliveries_by_hook ON deliveries (hook, id)",
)


class WebhookError(ValueError):
    """A hook that cannot be created or changed as asked (the API answers 422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class TargetRefused(Exception):
    """A delivery target that resolves to an address the operator has not allowed."""


# -- target allow-list ---------------------------------------------------------------------------


def _networks(cidrs: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)
    except ValueError as e:
        raise WebhookError("webhook_allow", f"not a CIDR: {e}") from None


def refusal(address: str, allow: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str | None:
    """Why a delivery to ``address`` is refused, or None when it may go ahead."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    blocked = next((n for n in BLOCKED_NETWORKS if ip.version == n.version and ip in n), None)
    if blocked is None or any(ip.version == n.version and ip in n for n in allow):
        return None
    kind = ("loopback" if ip.is_loopback else "link-local" if ip.is_link_local
            else "private" if ip.is_private else "reserved")
    return (f"{ip} is a {kind} address ({blocked}); allow it with "
            f"`govc serve --webhook-allow CIDR` (ServerConfig.webhook_allow)")


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses if ANY address is not allowed.
    The connection uses exactly the addresses checked here."""

    def __init__(self, allow: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        self.allow = allow
        self._inner: AbstractResolver | None = None  # made on first use, inside the running loop

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        for result in results:
            reason = refusal(result["host"], self.allow)
            if reason is not None:
                raise TargetRefused(f"refused: {host} resolves to {reason}")
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


# -- signatures ----------------------------------------------------------------------------------


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: compare the header with the HMAC of the raw body, in constant time."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


# -- backoff -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry schedule: ``base * factor**(n-1)`` seconds before retry ``n``, at most ``cap``,
    each spread by ±``jitter``; a delivery fails for good after ``max_attempts`` attempts or
    ``give_up_after`` seconds, whichever comes first."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = DEFAULT_CAP
    jitter: float = 0.2
    max_attempts: int = 1000  # with the default cap, give_up_after decides
    give_up_after: float = 24 * 3600.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first)."""
        exact = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, exact * (1 + spread))

    def exhausted(self, attempts: int, elapsed: float) -> bool:
        return attempts >= self.max_attempts or elapsed >= self.give_up_after

    @classmethod
    def from_env(cls, value: str | None = None) -> Backoff:
        """``$GOVC_WEBHOOK_BACKOFF`` = ``BASE[,CAP]`` seconds (e.g. ``0.05,1`` in tests)."""
        text = os.environ.get(BACKOFF_ENV, "") if value is None else value
        if not text.strip():
            return cls()
        try:
            parts = [float(p) for p in text.split(",")]
            if not 1 <= len(parts) <= 2 or any(p <= 0 for p in parts):
                raise ValueError
        except ValueError:
            raise WebhookError(BACKOFF_ENV, f"{BACKOFF_ENV} must be BASE[,CAP] in seconds, not {text!r}") \
                from None
        return cls(base=parts[0], cap=parts[1] if len(parts) == 2 else max(parts[0], DEFAULT_CAP))


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


# -- records -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hook:
    id: int
    repository: str | None  # None: a server-wide hook, for every repository
    url: str
    content_type: str  # "json" or "form"
    secret: str
    insecure_ssl: bool
    events: tuple[str, ...]
    active: bool
    branches: tuple[str, ...]
    paths: tuple[str, ...]
    created: float
    updated: float

    def wants(self, event: str) -> bool:
        return "*" in self.events or event in self.events

    def selects_ref(self, ref: str) -> bool:
        return not self.branches or any(
            fnmatch.fnmatchcase(short_name(ref), g) or fnmatch.fnmatchcase(ref, g) for g in self.branches)

    def selects_paths(self, paths: Iterable[str]) -> bool:
        return any(fnmatch.fnmatchcase(p, g) or fnmatch.fnmatchcase(p.rsplit("/", 1)[-1], g)
                   for p in paths for g in self.paths)


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    hook_id: int
    guid: str
    event_id: int
    repository: str
    ref: str
    event: str
    redelivery: bool
    status: str  # "pending", "delivered" or "failed"
    attempts: int
    next_attempt: float | None
    response_code: int | None
    latency_ms: float | None
    last_error: str | None
    response_body: str | None
    created: float
    updated: float
    delivered: float | None
    payload: str | None = None  # the JSON body; left out of listings


_SET_CURSOR = ("INSERT INTO webhook_cursor (hook, event) VALUES (?, ?) "
               "ON CONFLICT (hook) DO UPDATE SET event = excluded.event")
_HOOK_COLUMNS = ("id, repo, url, content_type, secret, insecure_ssl, events, active, branches, paths, "
                 "created, updated")
_DELIVERY_COLUMNS = ("id, hook, guid, event_id, repo, ref, event, redelivery, status, attempts, "
                     "next_attempt, response_code, latency_ms, last_error, response_body, created, "
                     "updated, delivered")


def _hook(row: Sequence[Any]) -> Hook:
    return Hook(int(row[0]), row[1], row[2], row[3], row[4], bool(row[5]), tuple(json.loads(row[6])),
                bool(row[7]), tuple(json.loads(row[8])), tuple(json.loads(row[9])), row[10], row[11])


def _delivery(row: Sequence[Any]) -> Delivery:
    return Delivery(int(row[0]), int(row[1]), row[2], int(row[3]), row[4], row[5], row[6], bool(row[7]),
                    row[8], int(row[9]), row[10], row[11], row[12], row[13], row[14], row[15], row[16],
                    row[17], row[18] if len(row) > 18 else None)


# -- storage -------------------------------------------------------------------------------------


#: Seconds beyond an attempt's timeout that a claim on a delivery lasts: only a node that died
#: mid-attempt lets one run out, and another node then sends the delivery again.
CLAIM_MARGIN = 20.0
#: When a pending delivery is next due: its next attempt, or the end of a claim on it.
_DUE_AT = ("CASE WHEN d.claimed IS NOT NULL AND d.claimed > d.next_attempt THEN d.claimed "
           "ELSE d.next_attempt END")


class _MemoryDatabase:
    """A :class:`storage.sitedb.SiteDatabase` over a private SQLite ``:memory:``."""

    dialect = SQLITE
    shared = False

    def __init__(self) -> None:
        self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()

    def query(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def create_tables(self, statements: Sequence[str]) -> None:
        with self.transaction() as db:
            for statement in statements:
                db.execute(statement)


class WebhookStore:
    """Hooks, their cursors and the delivery log, in a site database (see the module docstring).
    Every method is synchronous and thread-safe; the worker calls them from threads so the event
    loop never waits on a database."""

    def __init__(self, directory: SiteDatabase | None = None) -> None:
        self.db: SiteDatabase = directory if directory is not None else _MemoryDatabase()
        self.db.create_tables(_SCHEMA)
        if self.db.dialect == SQLITE:
            with self.db.transaction() as db:
                columns = {row[1] for row in db.execute("PRAGMA table_info(deliveries)").fetchall()}
                if "claimed" not in columns:  # a data directory from before claims
                    db.execute("ALTER TABLE deliveries ADD COLUMN claimed REAL")
        if not self.db.shared:
            # Only this process uses these records: a claim left behind is a killed predecessor's
            # attempt, to be made again now rather than when its lease runs out.
            self.db.query("UPDATE deliveries SET claimed = NULL WHERE claimed IS NOT NULL", ())

    # hooks

    def create_hook(self, repository: str | None, fields: Mapping[str, Any], cursor: int) -> Hook:
        now = time.time()
        with self.db.transaction() as db:
            row = db.execute(
                "INSERT INTO webhooks (repo, url, content_type, secret, insecure_ssl, events, active, "
                "branches, paths, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                f"RETURNING {_HOOK_COLUMNS}",
                (repository, fields["url"], fields["content_type"], fields["secret"],
                 int(fields["insecure_ssl"]), json.dumps(list(fields["events"])), int(fields["active"]),
                 json.dumps(list(fields["branches"])), json.dumps(list(fields["paths"])), now, now),
            ).fetchone()
            db.execute(_SET_CURSOR, (row[0], cursor))
        return _hook(row)

    def hook(self, hook_id: int) -> Hook | None:
        rows = self.db.query(f"SELECT {_HOOK_COLUMNS} FROM webhooks WHERE id = ?", (hook_id,))
        return _hook(rows[0]) if rows else None

    def hooks(self, repository: str | None, *, every: bool = False) -> list[Hook]:
        if every:
            rows = self.db.query(f"SELECT {_HOOK_COLUMNS} FROM webhooks ORDER BY id", ())
        elif repository is None:
            rows = self.db.query(f"SELECT {_HOOK_COLUMNS} FROM webhooks WHERE repo IS NULL ORDER BY id", ())
        else:
            rows = self.db.query(f"SELECT {_HOOK_COLUMNS} FROM webhooks WHERE repo = ? ORDER BY id",
                                 (repository,))
        return [_hook(r) for r in rows]

    def update_hook(self, hook_id: int, fields: Mapping[str, Any], cursor: int | None) -> Hook | None:
        columns = {"url": str, "content_type": str, "secret": str, "insecure_ssl": int, "active": int,
                   "events": lambda v: json.dumps(list(v)), "branches": lambda v: json.dumps(list(v)),
                   "paths": lambda v: json.dumps(list(v))}
        sets = [(k, columns[k](v)) for k, v in fields.items() if k in columns]
        with self.db.transaction() as db:
            row = db.execute(
                f"UPDATE webhooks SET {''.join(f'{k} = ?, ' for k, _ in sets)}updated = ? WHERE id = ? "
                f"RETURNING {_HOOK_COLUMNS}", (*[v for _, v in sets], time.time(), hook_id)).fetchone()
            if row is not None and cursor is not None:
                db.execute(_SET_CURSOR, (hook_id, cursor))
        return _hook(row) if row is not None else None

    def delete_hook(self, hook_id: int) -> bool:
        with self.db.transaction() as db:
            gone = db.execute("DELETE FROM webhooks WHERE id = ?", (hook_id,)).rowcount
            db.execute("DELETE FROM webhook_cursor WHERE hook = ?", (hook_id,))
            db.execute("DELETE FROM deliveries WHERE hook = ?", (hook_id,))
        return bool(gone)

    def cursor(self, hook_id: int) -> int:
        rows = self.db.query("SELECT event FROM webhook_cursor WHERE hook = ?", (hook_id,))
        return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]

    # deliveries

    def enqueue(self, hook_id: int, expected: int, cursor: int,
                items: Sequence[tuple[int, str, str, str]]) -> bool:
        """Insert deliveries (event id, repository, ref, payload) and move the hook's cursor from
        ``expected`` to ``cursor``, all or nothing; False if the hook went or the cursor moved
        (another node enqueued these events first)."""
        now = time.time()
        with self.db.transaction() as db:
            # The compare-and-set first: a second node waits here for the first to commit, then
            # finds the cursor moved and inserts nothing.
            moved = db.execute("UPDATE webhook_cursor SET event = ? WHERE hook = ? AND event = ?",
                               (cursor, hook_id, expected)).rowcount
            if moved != 1:
                return False
            if not items:
                return True
            db.executemany(
                "INSERT INTO deliveries (hook, guid, event_id, repo, ref, event, payload, redelivery, "
                "status, attempts, next_attempt, created, updated) "
                "VALUES (?, ?, ?, ?, ?, 'push', ?, 0, 'pending', 0, ?, ?, ?)",
                [(hook_id, str(uuid.uuid4()), e, r, ref, p, now, now, now) for e, r, ref, p in items])
        return True

    def due(self, now: float, exclude: set[int], limit: int) -> list[Delivery]:
        """Pending deliveries of active hooks whose time has come and that nobody has claimed,
        soonest first."""
        rows = self.db.query(
            f"SELECT {', '.join('d.' + c.strip() for c in _DELIVERY_COLUMNS.split(','))}, d.payload "
            "FROM deliveries d JOIN webhooks w ON w.id = d.hook "
            f"WHERE d.status = 'pending' AND w.active = 1 AND {_DUE_AT} <= ? "
            "ORDER BY d.next_attempt, d.id LIMIT ?", (now, limit + len(exclude)))
        return [d for d in map(_delivery, rows) if d.id not in exclude][:limit]

    def claim(self, delivery_ids: Sequence[int], now: float, until: float) -> set[int]:
        """Take the right to attempt these deliveries until ``until``; returns those this caller
        won (the others went to another node, or are no longer due)."""
        if not delivery_ids:
            return set()
        marks = ", ".join("?" for _ in delivery_ids)
        rows = self.db.query(
            f"UPDATE deliveries SET claimed = ? WHERE id IN ({marks}) AND status = 'pending' "
            "AND next_attempt <= ? AND (claimed IS NULL OR claimed <= ?) RETURNING id",
            (until, *delivery_ids, now, now))
        return {int(r[0]) for r in rows}  # type: ignore[call-overload]

    def next_due(self, exclude: set[int]) -> float | None:
        rows = self.db.query(
            f"SELECT d.id, {_DUE_AT} FROM deliveries d JOIN webhooks w ON w.id = d.hook "
            f"WHERE d.status = 'pending' AND w.active = 1 ORDER BY {_DUE_AT}, d.id LIMIT ?",
            (len(exclude) + 1,))
        return next((float(t) for i, t in rows if i not in exclude), None)  # type: ignore[arg-type]

    def record_attempt(self, delivery_id: int, *, status: str, attempts: int, next_attempt: float | None,
                       code: int | None, latency_ms: float, error: str | None, body: str | None) -> None:
        now = time.time()
        self.db.query(
            "UPDATE deliveries SET status = ?, attempts = ?, next_attempt = ?, response_code = ?, "
            "latency_ms = ?, last_error = ?, response_body = ?, updated = ?, claimed = NULL, "
            "delivered = CASE WHEN ? = 'delivered' THEN ? ELSE delivered END WHERE id = ?",
            (status, attempts, next_attempt, code, latency_ms, error, body, now, status, now, delivery_id))

    def deliveries(self, hook_id: int, limit: int = 30, before: int | None = None) -> list[Delivery]:
        """The delivery log of one hook, newest first."""
        rows = self.db.query(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE hook = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (hook_id, before if before is not None else 1 << 62, limit))
        return [_delivery(r) for r in rows]

    def delivery(self, hook_id: int, delivery_id: int) -> Delivery | None:
        rows = self.db.query(f"SELECT {_DELIVERY_COLUMNS}, payload FROM deliveries WHERE hook = ? AND id = ?",
                             (hook_id, delivery_id))
        return _delivery(rows[0]) if rows else None

    def redeliver(self, hook_id: int, delivery_id: int) -> Delivery | None:
        """A new pending delivery of the same payload (and the same guid, as GitHub does)."""
        now = time.time()
        with self.db.transaction() as db:
            row = db.execute(
                "INSERT INTO deliveries (hook, guid, event_id, repo, ref, event, payload, redelivery, "
                "status, attempts, next_attempt, created, updated) "
                "SELECT hook, guid, event_id, repo, ref, event, payload, 1, 'pending', 0, ?, ?, ? "
                f"FROM deliveries WHERE hook = ? AND id = ? RETURNING {_DELIVERY_COLUMNS}",
                (now, now, now, hook_id, delivery_id)).fetchone()
        return _delivery(row) if row is not None else None

    def pending_count(self) -> int:
        """Deliveries of active hooks still waiting to go out (the outbox's depth)."""
        rows = self.db.query("SELECT COUNT(*) FROM deliveries d JOIN webhooks w ON w.id = d.hook "
                             "WHERE d.status = 'pending' AND w.active = 1", ())
        return int(rows[0][0])  # type: ignore[call-overload]

    def prune(self, keep: int = KEEP_DELIVERIES) -> None:
        """Forget finished deliveries beyond the newest ``keep`` of each hook."""
        with self.db.transaction() as db:
            for (hook_id,) in db.execute("SELECT id FROM webhooks", ()).fetchall():
                row = db.execute("SELECT id FROM deliveries WHERE hook = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                                 (hook_id, keep)).fetchone()
                if row is not None:
                    db.execute("DELETE FROM deliveries WHERE hook = ? AND id <= ? AND status != 'pending'",
                               (hook_id, row[0]))


# -- payloads ------------------------------------------------------------------------------------

_PERSON = re.compile(rb"^(.*?) ?<([^>]*)> (-?\d+) ([+-])(\d\d)(\d\d)$")


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _person(value: bytes) -> tuple[dict[str, str], str]:
    """``Name <email> 1700000000 +0200`` -> ({name, email}, ISO 8601 time with its offset)."""
    m = _PERSON.match(value)
    if m is None:
        return {"name": value.decode("utf-8", "replace"), "email": ""}, _iso(0).replace("Z", "+00:00")
    name, mail, when, sign_, hours, minutes = m.groups()
    offset = timedelta(hours=int(hours), minutes=int(minutes)) * (-1 if sign_ == b"-" else 1)
    try:
        stamp = datetime.fromtimestamp(int(when), timezone(offset)).isoformat()
    except (OverflowError, OSError, ValueError):
        stamp = _iso(0).replace("Z", "+00:00")
    return {"name": name.decode("utf-8", "replace"), "email": mail.decode("utf-8", "replace")}, stamp


def _zero(oid: str) -> bool:
    return not oid or set(oid) == {"0"}


class PushPayloads:
    """GitHub ``push`` payloads for the ref changes of one repository's logged events."""

    def __init__(self, repo: Repository | None, name: str, public_url: str) -> None:
        self.repo = repo
        self.name = name
        self.base = public_url.rstrip("/") or "http://localhost"
        self._commits: dict[bytes, dict[str, Any]] = {}

    # objects

    def _commit_oid(self, oid: str) -> bytes | None:
        """``oid`` peeled to a commit present in the repository, or None."""
        if self.repo is None or _zero(oid):
            return None
        raw = oid.encode()
        try:
            if not self.repo.objects.has(raw):
                return None
            peeled, type_num = self.repo.graph.peel(raw)
        except (StorageError, KeyError, ValueError):
            return None
        return peeled if type_num == OBJ_COMMIT else None

    def _tree(self, commit: bytes | None) -> bytes | None:
        return self.repo.graph.commit(commit).tree if commit is not None and self.repo is not None else None

    def changed_paths(self, old: str, new: str) -> list[str]:
        if self.repo is None:
            return []
        try:
            return [c.path for c in self.repo.trees.diff(self._tree(self._commit_oid(old)),
                                                          self._tree(self._commit_oid(new)))]
        except (StorageError, KeyError, ValueError):
            return []

    def commit(self, oid: bytes) -> dict[str, Any]:
        """One commit as GitHub shows it in ``commits[]`` and ``head_commit``."""
        cached = self._commits.get(oid)
        if cached is not None:
            return cached
        assert self.repo is not None
        _type, raw = self.repo.objects.get(oid)
        head, _, message = raw.partition(b"\n\n")
        fields: dict[bytes, bytes] = {}
        for line in head.split(b"\n"):
            key, _, value = line.partition(b" ")
            fields.setdefault(key, value)
        author, stamp = _person(fields.get(b"author", b""))
        committer, _ = _person(fields.get(b"committer", b""))
        info = self.repo.graph.commit(oid)
        parent_tree = self._tree(info.parents[0]) if info.parents else None
        changes: dict[str, list[str]] = {"added": [], "removed": [], "modified": []}
        for change in self.repo.trees.diff(parent_tree, info.tree):
            changes[change.kind].append(change.path)
        hexid = oid.decode()
        result = self._commits[oid] = {
            "id": hexid, "tree_id": info.tree.decode(), "distinct": True,
            "message": message.decode("utf-8", "replace").rstrip("\n"), "timestamp": stamp,
            "url": f"{self.base}/{self.name}/commit/{hexid}",
            "author": author, "committer": committer, **changes,
        }
        return result

    def _new_commits(self, ref: str, old: bytes | None, new: bytes) -> tuple[list[bytes], bool]:
        """Commits reachable from ``new`` but not from ``old`` (or, for a created ref, from any
        other branch), oldest first; and whether the update was forced (``old`` is not an
        ancestor of ``new``)."""
        assert self.repo is not None
        graph = self.repo.graph
        if old is not None:
            base = graph.ancestors([old])
        else:
            others = [self._commit_oid(v.decode()) for n, v in self.repo.refs.list("refs/heads/").items()
                      if n != ref]
            base = graph.ancestors([o for o in others if o is not None])
        fresh = graph.ancestors([new], stop=base)
        # old is an ancestor of new iff a path leads there; its first commit outside ``fresh``
        # is an ancestor of old, so it can only be old itself: old is a parent of a fresh commit.
        forced = old is not None and old != new and not any(old in graph.commit(c).parents for c in fresh)
        return graph.oldest_first(new, fresh), forced

    def build(self, event: LoggedEvent, change: Mapping[str, Any]) -> dict[str, Any]:
        ref, before, after = str(change["ref"]), str(change["old"]), str(change["new"])
        created, deleted = _zero(before), _zero(after)
        commits: list[dict[str, Any]] = []
        head_commit: dict[str, Any] | None = None
        forced = False
        try:
            new = self._commit_oid(after)
            if new is not None:
                head_commit = self.commit(new)
                old = self._commit_oid(before)
                if not ref.startswith("refs/tags/"):
                    fresh, forced = self._new_commits(ref, old, new)
                    commits = [self.commit(c) for c in fresh[-MAX_COMMITS:]]
                elif old is not None:
                    forced = old not in self.repo.graph.ancestors([new])  # type: ignore[union-attr]
        except (StorageError, KeyError, ValueError):
            log.warning("webhook payload for %s %s: objects unreadable; sending it without commits",
                        self.name, ref, exc_info=True)
        base_of = before[:12] if not created else ZERO[:12]
        owner = self.name.split("/", 1)[0] if "/" in self.name else "govc"
        head = self.repo.refs.read_symref("HEAD") if self.repo is not None else None
        return {
            "ref": ref, "before": before, "after": after,
            "created": created, "deleted": deleted, "forced": forced, "base_ref": None,
            "compare": f"{self.base}/{self.name}/compare/{base_of}...{after[:12]}",
            "commits": commits, "head_commit": head_commit,
            "repository": {
                "name": self.name.rsplit("/", 1)[-1], "full_name": self.name,
                "owner": {"name": owner, "login": owner},
                "private": False, "html_url": f"{self.base}/{self.name}", "url": f"{self.base}/{self.name}",
                "clone_url": f"{self.base}/{self.name}.git",
                "default_branch": short_name(head) if head else "main",
            },
            "pusher": {"name": str(event.payload.get("who", "")), "email": None},
            "sender": {"login": str(event.payload.get("who", ""))},
            "push_options": list(event.payload.get("push_options") or []),  # type: ignore[call-overload]
            "govc": {"event_id": event.id, "source": event.payload.get("source"),
                     "message": event.payload.get("message"), "time": event.time},
        }


def render(hook: Hook, delivery: Delivery) -> tuple[bytes, dict[str, str]]:
    """The request body and headers of one attempt of ``delivery`` to ``hook``."""
    text = delivery.payload or "{}"
    body = urlencode({"payload": text}).encode() if hook.content_type == "form" else text.encode()
    headers = {
        "Content-Type": CONTENT_TYPES[hook.content_type], "User-Agent": USER_AGENT,
        "X-GitHub-Event": delivery.event, "X-Govc-Event": delivery.event,
        "X-GitHub-Delivery": delivery.guid, "X-Govc-Delivery": delivery.guid,
        "X-GitHub-Hook-ID": str(hook.id), "X-Govc-Hook-ID": str(hook.id),
    }
    if hook.secret:
        headers["X-Hub-Signature-256"] = sign(hook.secret, body)
    return body, headers


# -- validation ----------------------------------------------------------------------------------


def _flag(value: object, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1, "0", "1"):
        return value in (1, "1")
    raise WebhookError(field, f"{field} must be true/false or \"0\"/\"1\"")


def _strings(value: object, field: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise WebhookError(field, f"{field} must be a list of non-empty strings")
    return tuple(value)


def validate(fields: Mapping[str, Any], allow: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
             ) -> dict[str, Any]:
    """Check and normalise hook fields (any subset of the :class:`Hook` fields)."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "url":
            if not isinstance(value, str) or len(value) > 2048:
                raise WebhookError("url", "url must be a string of at most 2048 characters")
            try:
                url = URL(value)
            except (ValueError, TypeError):
                raise WebhookError("url", f"{value!r} is not a URL") from None
            if url.scheme not in ("http", "https") or not url.host:
                raise WebhookError("url", "url must be an absolute http:// or https:// URL")
            try:
                ipaddress.ip_address(url.host)  # a literal address can be judged now
            except ValueError:
                pass
            else:
                reason = refusal(url.host, allow)
                if reason is not None:
                    raise WebhookError("url", f"refused: {reason}")
            out[key] = value
        elif key == "content_type":
            aliases = {"json": "json", "form": "form", "application/json": "json",
                       "application/x-www-form-urlencoded": "form"}
            if value not in aliases:
                raise WebhookError("content_type", "content_type must be \"json\" or \"form\"")
            out[key] = aliases[value]
        elif key == "secret":
            if not isinstance(value, str):
                raise WebhookError("secret", "secret must be a string")
            out[key] = value
        elif key in ("insecure_ssl", "active"):
            out[key] = _flag(value, key)
        elif key == "events":
            events = _strings(value, "events")
            unknown = [e for e in events if e not in (*EVENTS, "*")]
            if not events or unknown:
                raise WebhookError("events", f"events must list some of {[*EVENTS, '*']}; unknown: {unknown}")
            out[key] = tuple(dict.fromkeys(events))
        elif key in ("branches", "paths"):
            out[key] = _strings(value, key)
        else:
            raise WebhookError(key, f"unknown hook field {key!r}")
    return out


# -- the manager and its delivery worker ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Outcome:
    code: int | None
    error: str | None
    retry: bool
    retry_after: float | None = None
    body: str | None = None

    @property
    def ok(self) -> bool:
        return self.code is not None and 200 <= self.code < 300


_ALL: Any = object()  # hooks(): every hook, of any scope


class WebhookManager:
    """Hooks (per repository and server-wide), their delivery log, and the delivery worker."""

    def __init__(self, registry: Registry, *, allow: Iterable[str] = (), public_url: str = "",
                 backoff: Backoff | None = None, concurrency: int = 16, per_hook: int = 4,
                 timeout: float = TIMEOUT, max_response: int = MAX_RESPONSE) -> None:
        self.registry = registry
        self.store = WebhookStore(registry.directory)
        self.allow = _networks(allow)
        self.public_url = public_url
        self.backoff = backoff if backoff is not None else Backoff.from_env()
        self.concurrency = concurrency
        self.per_hook = per_hook
        self.timeout = timeout
        self.max_response = max_response
        self._inflight: dict[int, tuple[int, asyncio.Task[None]]] = {}
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._seen = 0
        self._last_prune = 0.0
        self._pass_starts = 0
        self._passes = 0
        #: Attempts by result (delivered, retry, failed, error), for the server's metrics.
        self.outcomes: Counter[str] = Counter()

    # -- the Python API ----------------------------------------------------------------------

    def _check_repository(self, repository: str | None) -> str | None:
        if repository is None:
            return None
        try:
            name = normalize_name(repository)
        except RepositoryNameError as e:
            raise LookupError(str(e)) from None
        if self.registry.get(name) is None:
            raise LookupError(f"repository '{name}' not found")
        return name

    def create(self, url: str, *, repository: str | None = None, secret: str = "", content_type: str = "json",
               events: Sequence[str] = ("push",), active: bool = True, branches: Sequence[str] = (),
               paths: Sequence[str] = (), insecure_ssl: bool = False) -> Hook:
        """A new hook for ``repository`` (None: every repository). It sees updates from now on."""
        name = self._check_repository(repository)
        fields = validate({"url": url, "secret": secret, "content_type": content_type, "events": events,
                           "active": active, "branches": branches, "paths": paths,
                           "insecure_ssl": insecure_ssl}, self.allow)
        hook = self.store.create_hook(name, fields, self.registry.events.last_id())
        self._wake()
        return hook

    def get(self, hook_id: int, repository: str | None = _ALL) -> Hook | None:
        hook = self.store.hook(hook_id)
        if hook is None or (repository is not _ALL and hook.repository != repository):
            return None
        return hook

    def list(self, repository: str | None = _ALL) -> list[Hook]:
        """Hooks of ``repository`` (None: the server-wide ones; default: all of them)."""
        if repository is _ALL:
            return self.store.hooks(None, every=True)
        return self.store.hooks(self._check_repository(repository))

    def update(self, hook_id: int, **changes: Any) -> Hook:
        """Change fields of a hook (url, secret, content_type, events, active, branches, paths,
        insecure_ssl). A hook made active again sees updates from now on, as on GitHub."""
        current = self.store.hook(hook_id)
        if current is None:
            raise LookupError(f"no hook {hook_id}")
        fields = validate(changes, self.allow)
        cursor = self.registry.events.last_id() if fields.get("active") and not current.active else None
        hook = self.store.update_hook(hook_id, fields, cursor)
        if hook is None:
            raise LookupError(f"no hook {hook_id}")
        self._wake()
        return hook

    def delete(self, hook_id: int) -> bool:
        return self.store.delete_hook(hook_id)

    def deliveries(self, hook_id: int, limit: int = 30, before: int | None = None) -> list[Delivery]:
        return self.store.deliveries(hook_id, limit, before)

    def delivery(self, hook_id: int, delivery_id: int) -> Delivery | None:
        return self.store.delivery(hook_id, delivery_id)

    def redeliver(self, hook_id: int, delivery_id: int) -> Delivery:
        delivery = self.store.redeliver(hook_id, delivery_id)
        if delivery is None:
            raise LookupError(f"no delivery {delivery_id} of hook {hook_id}")
        self._wake()
        return delivery

    def for_repository(self, repository: str) -> RepositoryHooks:
        return RepositoryHooks(self, self._check_repository(repository) or "")

    # -- turning events into deliveries ------------------------------------------------------

    def enqueue_pending(self, batch: int = EVENT_BATCH) -> bool:
        """Read the event log after each active hook's cursor and queue its deliveries.
        Returns True when some hook had a full batch (call again)."""
        more = False
        builders: dict[str, PushPayloads] = {}
        payloads: dict[tuple[int, str], str] = {}
        paths: dict[tuple[int, str], list[str]] = {}
        for hook in self.store.hooks(None, every=True):
            if not hook.active:
                continue
            cursor = self.store.cursor(hook.id)
            events = self.registry.events.since(cursor, hook.repository, batch)
            if not events:
                continue
            more = more or len(events) == batch
            items: list[tuple[int, str, str, str]] = []
            for event in events if hook.wants("push") else ():
                builder = builders.get(event.repository)
                if builder is None:
                    builder = builders[event.repository] = PushPayloads(
                        self._repository(event.repository), event.repository, self.public_url)
                for change in event.payload.get("changes", []):  # type: ignore[attr-defined]
                    key = (event.id, str(change["ref"]))
                    if not hook.selects_ref(key[1]):
                        continue
                    if hook.paths:
                        if key not in paths:
                            paths[key] = builder.changed_paths(str(change["old"]), str(change["new"]))
                        if not hook.selects_paths(paths[key]):
                            continue
                    if key not in payloads:
                        payloads[key] = self._payload(builder, event, change)
                    items.append((event.id, event.repository, key[1], payloads[key]))
            self.store.enqueue(hook.id, cursor, events[-1].id, items)
        if time.monotonic() - self._last_prune > 600:
            self._last_prune = time.monotonic()
            self.store.prune()
        return more

    def _payload(self, builder: PushPayloads, event: LoggedEvent, change: Mapping[str, Any]) -> str:
        """The JSON body of one change's delivery."""
        try:
            payload = builder.build(event, change)
        except Exception:  # one unreadable event must not hold up every later one
            log.exception("webhook payload for event %s %s; sending it without commits", event.id,
                          change.get("ref"))
            payload = PushPayloads(None, builder.name, builder.base).build(event, change)
        return json.dumps(payload, separators=(",", ":"))

    def _repository(self, name: str) -> Repository | None:
        try:
            return self.registry.get(name)
        except RepositoryNameError:
            return None

    # -- the worker --------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._loop is not None and self._wakeup is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wakeup.set)

    async def start(self) -> None:
        """Start the delivery worker on the running loop."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.allow), use_dns_cache=False,
                                         limit=self.concurrency)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False,
                                              headers={"User-Agent": USER_AGENT})
        self._task = asyncio.create_task(self._run(), name="govc-webhooks")

    async def stop(self) -> None:
        """Stop the worker; deliveries in flight stay pending and go out after the next start."""
        tasks = [t for _, t in self._inflight.values()]
        if self._task is not None:
            tasks.append(self._task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()
        self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def drain(self, timeout: float) -> None:
        """At shutdown: let deliveries in flight finish and send those already due (including
        the ones for updates made just now), for at most ``timeout`` seconds. Whatever is left,
        and whatever failed and waits for a retry, stays pending in the outbox (durable with a
        data directory) and goes out after the next start."""
        if self._task is None or timeout <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        need = self._pass_starts + 1  # the next pass to start sees every update made until now
        self._wake()
        try:
            while loop.time() < deadline and self._task is not None and not self._task.done():
                if self._passes >= need and not self._inflight:
                    due = await asyncio.to_thread(self.store.due, time.time(), set(), 1)
                    if not due:
                        return
                    need = self._pass_starts + 1
                    self._wake()
                await asyncio.sleep(0.02)
        except Exception:
            log.exception("webhook worker: draining failed; pending deliveries stay in the outbox")
            return
        log.info("webhook worker: stopping with deliveries still pending (kept for the next start)")

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            self._wakeup.clear()
            self._pass_starts += 1
            try:
                self._seen = self.registry.events.last_id()
                more = await asyncio.to_thread(self.enqueue_pending)
                blocked = await self._dispatch()
                next_due = await asyncio.to_thread(self.store.next_due, set(self._inflight) | blocked)
            except Exception:
                log.exception("webhook worker: pass failed; trying again")
                more, next_due = False, time.time() + 1.0
            self._passes += 1
            if more:
                continue
            timeout = IDLE_POLL if next_due is None else min(IDLE_POLL, next_due - time.time())
            if timeout > 0:
                await self._sleep(timeout)

    async def _sleep(self, timeout: float) -> None:
        assert self._wakeup is not None
        waits = [asyncio.ensure_future(self._wakeup.wait()),
                 asyncio.ensure_future(self.registry.events.wait(self._seen, timeout))]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _dispatch(self) -> set[int]:
        """Start due deliveries up to the limits; returns the due ones that had to wait."""
        room = self.concurrency - len(self._inflight)
        if room <= 0:
            return set()
        now = time.time()
        due = await asyncio.to_thread(self.store.due, now, set(self._inflight), room * 4)
        per_hook: dict[int, int] = {}
        for hook_id, _ in self._inflight.values():
            per_hook[hook_id] = per_hook.get(hook_id, 0) + 1
        blocked: set[int] = set()
        chosen: list[Delivery] = []
        for delivery in due:
            if (len(self._inflight) + len(chosen) >= self.concurrency
                    or per_hook.get(delivery.hook_id, 0) >= self.per_hook):
                blocked.add(delivery.id)
                continue
            per_hook[delivery.hook_id] = per_hook.get(delivery.hook_id, 0) + 1
            chosen.append(delivery)
        # Claimed first, so that of several nodes (or a CLI redelivery racing the worker) one
        # attempts each delivery; what another node won is simply not ours to send.
        won = await asyncio.to_thread(self.store.claim, [d.id for d in chosen], now,
                                      now + self.timeout + CLAIM_MARGIN)
        for delivery in chosen:
            if delivery.id not in won:
                continue
            task = asyncio.create_task(self._attempt(delivery))
            self._inflight[delivery.id] = (delivery.hook_id, task)
            task.add_done_callback(lambda _t, i=delivery.id: self._finished(i))
        return blocked

    def _finished(self, delivery_id: int) -> None:
        self._inflight.pop(delivery_id, None)
        if self._wakeup is not None:
            self._wakeup.set()

    async def _attempt(self, delivery: Delivery) -> None:
        try:
            await self._attempt_once(delivery)
        except Exception as e:  # a bug or a storage error: never let it spin on this delivery
            log.exception("webhook delivery %s: attempt failed unexpectedly", delivery.id)
            self.outcomes["error"] += 1
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    self.store.record_attempt, delivery.id, status="pending", attempts=delivery.attempts + 1,
                    next_attempt=time.time() + self.backoff.delay(delivery.attempts + 1), code=None,
                    latency_ms=0.0, error=f"internal error: {type(e).__name__}: {e}", body=None)

    async def _attempt_once(self, delivery: Delivery) -> None:
        hook = await asyncio.to_thread(self.store.hook, delivery.hook_id)
        if hook is None:
            return
        body, headers = render(hook, delivery)
        started = time.monotonic()
        outcome = await self._post(hook, body, headers)
        latency = (time.monotonic() - started) * 1000
        attempts = delivery.attempts + 1
        now = time.time()
        next_attempt: float | None = None
        error = outcome.error
        if outcome.ok:
            status = "delivered"
        elif outcome.retry and not self.backoff.exhausted(attempts, now - delivery.created):
            status = "pending"
            wait = outcome.retry_after if outcome.retry_after is not None else self.backoff.delay(attempts)
            next_attempt = now + wait
            log.info("webhook %s delivery %s to %s: %s; retry %d in %.2fs", hook.id, delivery.id, hook.url,
                     error, attempts, wait)
        else:
            status = "failed"
            if outcome.retry:
                error = f"{error} (gave up after {attempts} attempts)"
            log.warning("webhook %s delivery %s to %s failed: %s", hook.id, delivery.id, hook.url, error)
        await asyncio.to_thread(
            self.store.record_attempt, delivery.id, status=status, attempts=attempts,
            next_attempt=next_attempt, code=outcome.code, latency_ms=round(latency, 3), error=error,
            body=outcome.body)
        self.outcomes["retry" if status == "pending" else status] += 1

    async def _post(self, hook: Hook, body: bytes, headers: dict[str, str]) -> _Outcome:
        assert self._session is not None
        url = URL(hook.url)
        host = url.host or ""
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(host)  # literal addresses bypass the resolver: judge them here
            reason = refusal(host, self.allow)
            if reason is not None:
                return _Outcome(None, f"refused: {reason}", retry=False)
        try:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                ssl=not hook.insecure_ssl,
            ) as response:
                data = bytearray()
                while len(data) < self.max_response:
                    chunk = await response.content.read(self.max_response - len(data))
                    if not chunk:
                        break
                    data += chunk
                code = response.status
                text = bytes(data[:KEPT_RESPONSE]).decode("utf-8", "replace")
                wait = retry_after(response.headers.get("Retry-After")) if code == 429 else None
        except TargetRefused as e:
            return _Outcome(None, str(e), retry=False)
        except TimeoutError:
            return _Outcome(None, f"timed out after {self.timeout:g}s", retry=True)
        except aiohttp.ClientError as e:
            return _Outcome(None, f"{type(e).__name__}: {e}", retry=True)
        except OSError as e:
            return _Outcome(None, f"{type(e).__name__}: {e}", retry=True)
        if 200 <= code < 300:
            return _Outcome(code, None, retry=False, body=text)
        if code == 429 or code >= 500:
            return _Outcome(code, f"HTTP {code}", retry=True, retry_after=wait, body=text)
        reason = "redirects are not followed" if 300 <= code < 400 else "not retried"
        return _Outcome(code, f"HTTP {code} ({reason})", retry=False, body=text)


class RepositoryHooks:
    """A :class:`WebhookManager` seen from one repository (what ``Repository.webhooks`` can be)."""

    def __init__(self, manager: WebhookManager, repository: str) -> None:
        self.manager = manager
        self.repository = repository

    def create(self, url: str, **options: Any) -> Hook:
        return self.manager.create(url, repository=self.repository, **options)

    def list(self) -> list[Hook]:
        return self.manager.list(self.repository)

    def get(self, hook_id: int) -> Hook | None:
        return self.manager.get(hook_id, self.repository)

    def _own(self, hook_id: int) -> None:
        if self.get(hook_id) is None:
            raise LookupError(f"no hook {hook_id} on {self.repository}")

    def update(self, hook_id: int, **changes: Any) -> Hook:
        self._own(hook_id)
        return self.manager.update(hook_id, **changes)

    def delete(self, hook_id: int) -> bool:
        return self.get(hook_id) is not None and self.manager.delete(hook_id)

    def deliveries(self, hook_id: int, limit: int = 30) -> list[Delivery]:
        self._own(hook_id)
        return self.manager.deliveries(hook_id, limit)

    def redeliver(self, hook_id: int, delivery_id: int) -> Delivery:
        self._own(hook_id)
        return self.manager.redeliver(hook_id, delivery_id)


# -- the HTTP API (GitHub's REST shape) ----------------------------------------------------------

WEBHOOKS = web.AppKey("webhooks", WebhookManager)


def _scope(request: web.Request) -> tuple[str | None, str]:
    """(repository or None, the API path of its hooks); 404 for an unknown repository."""
    raw = request.match_info.get("repo")
    if raw is None:
        return None, "/api/v1/hooks"
    try:
        name = normalize_name(raw)
    except RepositoryNameError as e:
        raise web.HTTPNotFound(text=json.dumps({"error": "not_found", "message": str(e)}),
                               content_type="application/json") from None
    if request.app[WEBHOOKS].registry.get(name) is None:
        raise web.HTTPNotFound(text=json.dumps({"error": "not_found",
                                                "message": f"repository '{name}' not found"}),
                               content_type="application/json")
    return name, f"/api/v1/repos/{name}/hooks"


def _hook_json(request: web.Request, hook: Hook, base: str) -> dict[str, Any]:
    origin = str(request.url.origin())
    config: dict[str, Any] = {"url": hook.url, "content_type": hook.content_type,
                              "insecure_ssl": "1" if hook.insecure_ssl else "0"}
    if hook.secret:
        config["secret"] = "********"
    last = request.app[WEBHOOKS].store.deliveries(hook.id, 1)
    last_response: dict[str, Any] = {"code": None, "status": "unused", "message": None}
    if last:
        d = last[0]
        last_response = {"code": d.response_code, "status": d.status, "message": d.last_error}
    return {
        "type": "Repository" if hook.repository is not None else "Server",
        "id": hook.id, "name": "web", "active": hook.active, "events": list(hook.events),
        "config": config, "branches": list(hook.branches), "paths": list(hook.paths),
        "created_at": _iso(hook.created), "updated_at": _iso(hook.updated),
        "url": f"{origin}{base}/{hook.id}", "deliveries_url": f"{origin}{base}/{hook.id}/deliveries",
        "repository": hook.repository, "last_response": last_response,
    }


def _delivery_json(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id, "guid": d.guid, "event": d.event, "action": None, "redelivery": d.redelivery,
        "status": d.status, "status_code": d.response_code, "attempts": d.attempts,
        "duration": None if d.latency_ms is None else d.latency_ms / 1000, "latency_ms": d.latency_ms,
        "last_error": d.last_error, "repository": d.repository, "ref": d.ref, "event_id": d.event_id,
        "created_at": _iso(d.created), "updated_at": _iso(d.updated),
        "delivered_at": None if d.delivered is None else _iso(d.delivered),
        "next_attempt_at": None if d.status != "pending" or d.next_attempt is None else _iso(d.next_attempt),
    }


def _fields(body: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """GitHub's request shape -> hook fields (``config`` holds url/content_type/secret/insecure_ssl)."""
    fields: dict[str, Any] = {}
    config = body.get("config", {})
    if not isinstance(config, dict):
        raise WebhookError("config", "config must be an object")
    for key in ("url", "content_type", "secret", "insecure_ssl"):
        if key in config:
            fields[key] = config[key]
    if "name" in body and body["name"] != "web":
        raise WebhookError("name", 'name must be "web"')
    for key in ("events", "active", "branches", "paths"):
        if key in body:
            fields[key] = body[key]
    if creating and "url" not in fields:
        raise WebhookError("url", "config.url is required")
    return fields


def _hook_id(request: web.Request, key: str = "id") -> int:
    try:
        return int(request.match_info[key])
    except ValueError:
        raise web.HTTPNotFound(text=json.dumps({"error": "not_found", "message": "no such hook"}),
                               content_type="application/json") from None


def _owned(request: web.Request, repository: str | None) -> Hook:
    hook = request.app[WEBHOOKS].get(_hook_id(request), repository)
    if hook is None:
        raise web.HTTPNotFound(text=json.dumps({"error": "not_found",
                                                "message": f"no hook {request.match_info['id']}"}),
                               content_type="application/json")
    return hook


async def create_hook(request: web.Request) -> web.Response:
    repository, base = _scope(request)
    manager = request.app[WEBHOOKS]
    body = await json_body(request)
    try:
        fields = _fields(body, creating=True)
        fields.setdefault("events", ["push"])
        hook = await asyncio.to_thread(lambda: manager.create(repository=repository, **fields))
    except WebhookError as e:
        return json_error(422, "invalid", f"{e.field}: {e}")
    return web.json_response(_hook_json(request, hook, base), status=201)


async def list_hooks(request: web.Request) -> web.Response:
    repository, base = _scope(request)
    hooks = request.app[WEBHOOKS].store.hooks(repository)
    return web.json_response([_hook_json(request, h, base) for h in hooks])


async def get_hook(request: web.Request) -> web.Response:
    repository, base = _scope(request)
    return web.json_response(_hook_json(request, _owned(request, repository), base))


async def update_hook(request: web.Request) -> web.Response:
    repository, base = _scope(request)
    hook = _owned(request, repository)
    body = await json_body(request)
    manager = request.app[WEBHOOKS]
    try:
        fields = _fields(body, creating=False)
        events = list(fields.get("events", hook.events))
        for key, add in (("add_events", True), ("remove_events", False)):
            if key in body:
                for e in _strings(body[key], key):
                    if add and e not in events:
                        events.append(e)
                    elif not add and e in events:
                        events.remove(e)
                fields["events"] = events
        updated = await asyncio.to_thread(lambda: manager.update(hook.id, **fields))
    except WebhookError as e:
        return json_error(422, "invalid", f"{e.field}: {e}")
    except LookupError as e:
        return json_error(404, "not_found", str(e))
    return web.json_response(_hook_json(request, updated, base))


async def delete_hook(request: web.Request) -> web.Response:
    repository, _ = _scope(request)
    hook = _owned(request, repository)
    await asyncio.to_thread(request.app[WEBHOOKS].delete, hook.id)
    return web.Response(status=204)


async def list_deliveries(request: web.Request) -> web.Response:
    repository, _ = _scope(request)
    hook = _owned(request, repository)
    try:
        per_page = max(1, min(100, int(request.query.get("per_page", "30"))))
        before = int(request.query["before"]) if "before" in request.query else None
    except ValueError:
        return json_error(400, "bad_request", "per_page and before must be integers")
    items = await asyncio.to_thread(request.app[WEBHOOKS].deliveries, hook.id, per_page, before)
    return web.json_response([_delivery_json(d) for d in items])


def _owned_delivery(request: web.Request, hook: Hook) -> Delivery:
    delivery = request.app[WEBHOOKS].delivery(hook.id, _hook_id(request, "delivery_id"))
    if delivery is None:
        raise web.HTTPNotFound(text=json.dumps({"error": "not_found", "message": "no such delivery"}),
                               content_type="application/json")
    return delivery


async def get_delivery(request: web.Request) -> web.Response:
    repository, _ = _scope(request)
    hook = _owned(request, repository)
    delivery = _owned_delivery(request, hook)
    _, headers = render(hook, delivery)
    headers.pop("X-Hub-Signature-256", None)
    return web.json_response({
        **_delivery_json(delivery),
        "request": {"headers": headers, "payload": json.loads(delivery.payload or "null")},
        "response": {"payload": delivery.response_body},
    })


async def redeliver(request: web.Request) -> web.Response:
    repository, _ = _scope(request)
    hook = _owned(request, repository)
    delivery = _owned_delivery(request, hook)
    again = await asyncio.to_thread(request.app[WEBHOOKS].redeliver, hook.id, delivery.id)
    return web.json_response(_delivery_json(again), status=202)


def add_routes(app: web.Application) -> None:
    for prefix in ("/api/v1/hooks", "/api/v1/repos/{repo:.+}/hooks"):
        app.router.add_post(prefix, create_hook)
        app.router.add_get(prefix, list_hooks)
        app.router.add_get(prefix + r"/{id:\d+}", get_hook)
        app.router.add_patch(prefix + r"/{id:\d+}", update_hook)
        app.router.add_delete(prefix + r"/{id:\d+}", delete_hook)
        app.router.add_get(prefix + r"/{id:\d+}/deliveries", list_deliveries)
        app.router.add_get(prefix + r"/{id:\d+}/deliveries/{delivery_id:\d+}", get_delivery)
        app.router.add_post(prefix + r"/{id:\d+}/deliveries/{delivery_id:\d+}/attempts", redeliver)


def setup_webhooks(app: web.Application, registry: Registry, *, allow: Iterable[str] = (),
                   public_url: str = "", backoff: Backoff | None = None,
                   drain_timeout: Callable[[], float] | None = None) -> WebhookManager:
    """Webhooks for an aiohttp app: the manager (``app[WEBHOOKS]``), the API routes, and the
    delivery worker, started and stopped with the app. ``drain_timeout()`` says, when the app
    stops, how many seconds the worker may still spend delivering (see ``drain``)."""
    manager = WebhookManager(registry, allow=allow, public_url=public_url, backoff=backoff)
    app[WEBHOOKS] = manager

    async def worker(app: web.Application) -> AsyncIterator[None]:
        await manager.start()
        yield
        if drain_timeout is not None:
            await manager.drain(drain_timeout())
        await manager.stop()

    app.cleanup_ctx.append(worker)
    add_routes(app)
    return manager


__all__ = [
    "WEBHOOKS", "Backoff", "Delivery", "Hook", "PushPayloads", "RepositoryHooks", "TargetRefused",
    "WebhookError", "WebhookManager", "WebhookStore", "refusal", "render", "retry_after",
    "setup_webhooks", "sign", "verify_signature",
]
