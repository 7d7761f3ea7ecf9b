"""Defence against one client starving the others: request rate and concurrency per client, a
fair global cap on Git transfers, request sizes, and upload-pack requests bounded by the size of
the repository they ask about.

What is limited, and what a client sees when it hits the limit::

    per client (token name when authenticated, else remote address)
        rate         token bucket, ``rate`` requests/s with bursts of ``burst``   -> 429 + Retry-After
        concurrency  at most ``client_concurrency`` requests at once              -> 429 + Retry-After
    all clients
        git work     at most ``git_concurrency`` upload-pack/receive-pack POSTs at once; the rest
                     queue, and a freed slot goes to the waiting client holding the fewest slots
                     and served longest ago, so a flood from one client cannot keep everyone
                     else's single request waiting;
                     after ``queue_timeout`` in the queue                         -> 503 + Retry-After
    per request
        sizes        upload-pack body ``max_fetch_request``, push ``max_push``    -> 413
        upload-pack  wants/haves/shallows/... against the repository's size      -> ``ERR`` pkt-line

Negotiation rounds: over stateless HTTP each request carries one round (git replays only the
common haves), so the rounds within a request are bounded above and the rounds a client may make
one after another by its request rate.

Health, readiness and metrics endpoints are never limited: monitoring must see a server under
attack. Zero turns a limit off. Behind a reverse proxy every client shares the proxy's address;
authenticate clients (``--auth``) so each token gets its own allowance, or raise the limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import count
from typing import Any

from aiohttp import web

from protocol.upload import RequestCounts

#: Never limited, so that probes and scrapes answer while a client misbehaves.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
GIT_WORK_SUFFIXES = ("/git-upload-pack", "/git-receive-pack")
#: An upload-pack body is a list of ids; anything larger is not a fetch.
MAX_FETCH_REQUEST = 64 << 20
#: The largest push accepted in one request.
MAX_PUSH = 4 << 30


@dataclass(slots=True)
class Limits:
    """Operator-tunable bounds. The defaults let one client (an address, or a token) start 200
    requests at once, sustain 50 a second and have 32 in progress — a CI fan-out of dozens of jobs
    behind one address passes — and stop floods. Larger fan-outs raise them, or use tokens."""

    rate: float = 50.0  # requests per second per client (0: no rate limit)
    burst: int = 200  # requests a client may make at once before the rate applies
    client_concurrency: int = 32  # requests in progress per client (0: unlimited)
    git_concurrency: int = 32  # upload-pack/receive-pack POSTs in progress, all clients (0: unlimited)
    queue_timeout: float = 30.0  # seconds a Git request waits for a slot before 503
    max_fetch_request: int = MAX_FETCH_REQUEST
    max_push: int = MAX_PUSH


# -- per-client rate ------------------------------------------------------------------------------


class TokenBuckets:
    """One token bucket per client: ``burst`` tokens, refilled at ``rate`` per second."""

    #: Buckets kept before full (idle) ones are forgotten; a full bucket is the same as none.
    PRUNE_AT = 10_000

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when)

    def take(self, client: str) -> float:
        """Spend one token; 0.0 when allowed, else the seconds until a token is there."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens, when = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate
        if len(self._buckets) >= self.PRUNE_AT and client not in self._buckets:
            self._prune(now)
        self._buckets[client] = (tokens - 1.0, now)
        return 0.0

    def _prune(self, now: float) -> None:
        full = [c for c, (t, w) in self._buckets.items() if t + (now - w) * self.rate >= self.burst]
        for client in full:
            del self._buckets[client]


# -- fair global slots ----------------------------------------------------------------------------


class FairSlots:
    """At most ``capacity`` holders at once. When full, waiters queue per client and each freed
    slot goes to the waiting client holding the fewest slots, and among those to the one served
    longest ago (round robin): a client with a hundred queued clones gets every other slot at
    most, never all of them, while anyone else waits."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.total = 0
        self.held: Counter[str] = Counter()
        self._waiting: dict[str, deque[tuple[int, asyncio.Future[None]]]] = {}
        self._order = count()
        self._served: dict[str, int] = {}  # client -> when it last got a slot (grant number)
        self._grants = count()

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    async def acquire(self, client: str, timeout: float) -> bool:
        """Take a slot, waiting at most ``timeout`` seconds; False when none came in time."""
        if self.capacity <= 0:
            return True
        if self.total < self.capacity and not self._waiting:
            self._grant(client)
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (next(self._order), future)
        self._waiting.setdefault(client, deque()).append(entry)
        try:
            async with asyncio.timeout(timeout):
                await future
            return True
        except TimeoutError:
            return self._abandon(client, entry)
        except asyncio.CancelledError:
            if self._abandon(client, entry):
                self.release(client)  # granted just as the request went away: pass it on
            raise

    def _abandon(self, client: str, entry: tuple[int, asyncio.Future[None]]) -> bool:
        """Leave the queue; True if the slot had been granted meanwhile (it is then ours)."""
        if entry[1].done() and not entry[1].cancelled():
            return True
        queue = self._waiting.get(client)
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(entry)
            if not queue:
                del self._waiting[client]
                self._forget(client)
        return False

    def _forget(self, client: str) -> None:
        if client not in self.held and client not in self._waiting:
            self._served.pop(client, None)

    def release(self, client: str) -> None:
        if self.capacity <= 0:
            return
        self.total -= 1
        self.held[client] -= 1
        if self.held[client] <= 0:
            del self.held[client]
        while self._waiting and self.total < self.capacity:
            chosen = min(self._waiting, key=lambda c: (self.held.get(c, 0), self._served.get(c, -1),
                                                       self._waiting[c][0][0]))
            queue = self._waiting[chosen]
            _, future = queue.popleft()
            if not queue:
                del self._waiting[chosen]
            if not future.done():
                self._grant(chosen)
                future.set_result(None)
        self._forget(client)

    def _grant(self, client: str) -> None:
        self.total += 1
        self.held[client] += 1
        self._served[client] = next(self._grants)


# -- the middleware -------------------------------------------------------------------------------


def client_identity(request: web.Request, token_key: Any) -> tuple[str, str]:
    """(key the limits count under, how a refusal names the client)."""
    token = request.get(token_key)
    name = getattr(token, "name", None)
    if name:
        return f"token:{name}", f"token '{name}'"
    remote = request.remote or "unknown"
    return f"addr:{remote}", remote


def _refuse(status: int, retry: float, message: str) -> web.Response:
    seconds = max(1, math.ceil(retry))
    return web.Response(status=status, text=f"govc: {message}; retry in {seconds} s\n",
                        headers={"Retry-After": str(seconds), "Cache-Control": "no-cache"})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_middleware(limits: Limits, token_key: Any,
                    on_refusal: Callable[[web.Request, str], None] | None = None) -> Any:
    """The aiohttp middleware enforcing ``limits``. It runs after authentication, so a request
    with a token is counted under the token's name; ``on_refusal(request, reason)`` is told of
    every refusal (metrics)."""
    buckets = TokenBuckets(limits.rate, limits.burst)
    active: Counter[str] = Counter()
    slots = FairSlots(limits.git_concurrency)

    def refused(request: web.Request, reason: str) -> None:
        if on_refusal is not None:
            on_refusal(request, reason)

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in EXEMPT_PATHS:
            return await handler(request)
        client, shown = client_identity(request, token_key)
        wait = buckets.take(client)
        if wait > 0:
            refused(request, "rate")
            return _refuse(429, wait, f"too many requests from {shown}")
        if limits.client_concurrency > 0 and active[client] >= limits.client_concurrency:
            refused(request, "concurrency")
            return _refuse(429, 1, f"too many requests in progress from {shown} "
                                   f"(at most {limits.client_concurrency})")
        active[client] += 1
        try:
            git_work = request.method == "POST" and request.path.endswith(GIT_WORK_SUFFIXES)
            if not git_work:
                return await handler(request)
            if not await slots.acquire(client, limits.queue_timeout):
                refused(request, "busy")
                return _refuse(503, 5, f"server busy ({slots.total} git transfers in progress, "
                                       f"{slots.queued} waiting)")
            try:
                return await handler(request)
            finally:
                slots.release(client)
        finally:
            active[client] -= 1
            if active[client] <= 0:
                del active[client]

    limit.slots = slots  # type: ignore[attr-defined]  # for metrics and tests
    return limit


# -- upload-pack bounds -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UploadBounds:
    """The most of each kind of line one upload-pack request may carry for a repository of a
    given size. Generous for any real client (a blobless clone's backfill wants many objects; a
    fetch from an unrelated history sends many haves), yet a 64 MiB request of ids against a
    ten-object repository is refused before any graph walk."""

    wants: int
    haves: int
    shallows: int
    deepen_nots: int
    want_refs: int
    ref_prefixes: int
    oids: int
    rounds: int

    @classmethod
    def for_repository(cls, refs: int, objects: int) -> UploadBounds:
        return cls(
            wants=max(1000, 2 * refs + objects),  # anything more repeats itself or names nothing
            haves=max(50_000, 2 * objects),
            shallows=max(1000, objects),
            deepen_nots=max(100, 2 * refs),
            want_refs=max(1000, 2 * refs),
            ref_prefixes=max(1000, 2 * refs),
            oids=max(1000, objects),
            rounds=256,  # git replays only common haves, so one request holds a round or two
        )


_LABELS = {
    "wants": "wanted objects", "haves": "haves", "shallows": "shallow lines",
    "deepen_nots": "deepen-not refs",
    "want_refs": "want-ref lines", "ref_prefixes": "ref-prefix lines", "oids": "object-info ids",
    "rounds": "negotiation rounds",
}


def upload_refusal(counts: RequestCounts, refs: int, objects: int) -> str | None:
    """Why a request is out of proportion to the repository, as the ``ERR`` text git prints
    (``fatal: remote error: ...``); None when it is within bounds."""
    bounds = UploadBounds.for_repository(refs, objects)
    for field, label in _LABELS.items():
        n, bound = getattr(counts, field), getattr(bounds, field)
        if n > bound:
            return (f"govc: upload-pack request too large for this repository: {n} {label} "
                    f"(at most {bound} for {refs} refs and {objects} objects)")
    return None


# -- sizes ------------------------------------------------------------------------------------------

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 1000**2,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1000**3, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
          "tb": 1000**4}


def parse_size(value: str | int) -> int:
    """``"64MiB"``, ``"4G"``, ``"512k"`` or a number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"size must not be negative: {value}")
        return value
    text = str(value).strip().lower().replace(" ", "").replace("_", "")
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number):]
    if unit not in _UNITS or not number:
        raise ValueError(f"bad size {value!r}: expected bytes or a number with a unit, e.g. 64MiB, 4G")
    try:
        amount = float(number)
    except ValueError:
        raise ValueError(f"bad size {value!r}") from None
    if amount < 0:
        raise ValueError(f"size must not be negative: {value!r}")
    return int(amount * _UNITS[unit])


def format_size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)
