"""Reality sync between independent govc servers: follow a remote reality, publish a local one.

A :class:`Follower` keeps a reality in a local :class:`~govc.repository.Repository` in step with a
branch or reality on another server. It uses nothing but what every govc server already offers:

* **Git's own fetch** (smart HTTP, protocol v2, through dulwich's client) brings the remote tip and
  only the objects the local repository lacks. They enter through the same ingest a ``git push``
  takes (:func:`govc.receivepack.receive`: quarantine, fsck, connectivity, protected refs,
  validators, hook executables, then compare-and-swap in :meth:`Repository.update_refs`), so a
  followed update can be refused locally exactly as a push could.
* As ``git fetch`` does, it first moves a **remote-tracking ref**,
  ``refs/remotes/<remote>/<name>`` (``<remote>`` defaults to ``<host>-<port>/<repo>``), to the
  remote's tip, whatever it is. Then it fast-forwards the local reality to it by compare-and-swap
  (two ref updates, two events, as ``git fetch`` then ``git merge --ff-only``). The tracking ref
  always shows what the remote has, also while the two disagree, so a conflict can be resolved
  with an ordinary ``repo.merge(tracking_ref, into=...)``.
* The remote's **event stream** (``GET /<repo>.git/events``, filtered to the followed ref) says when
  to fetch again; after a disconnect it reconnects with ``Last-Event-ID`` (the events it missed are
  replayed) and fetches at once, so nothing that happened while it was away is missed. A periodic
  poll (``poll`` seconds) covers what a stream cannot announce: updates to an *ephemeral* reality
  on a durable server (never logged), and a restarted ``--memory`` server whose event ids began
  again at 1.

Which remote ref: a full name (``refs/realities/x``) is taken as it is; a short name is the remote's
branch ``refs/heads/<name>`` if it has one, else its reality ``refs/realities/<name>`` (the order
:meth:`Repository.resolve_reality_ref` uses). Every ref is advertised by a govc server, ephemeral
realities included, so both kinds can be followed. Until the remote has the ref, and after the
remote deleted it, the follower waits (state ``waiting``; the local reality is left as it is).
The local ref has the remote's name unless ``local=`` says otherwise (a short ``local`` stays
in the remote ref's namespace).

Local changes are never overwritten. When the local reality has commits the remote's tip does not
contain (it is ahead, or the two diverged), the follower reports a :class:`FollowConflict` (the
``conflict`` attribute, the ``on_conflict`` callback, a warning in the ``govc.follow`` log, and
:meth:`Follower.wait_synced` raises it), keeps the tracking ref current, and goes on following:
once the local reality is again an ancestor of (or equal to) the remote's tip — published, merged
or reset — it fast-forwards again.

:func:`publish` is the other direction: a push of the local reality with the remote's current value
as the expected old value (receive-pack's compare-and-swap). A remote that has commits the local
reality lacks, or that moved during the push, is a :class:`PublishConflict`; ``force=True`` replaces
it anyway.

Credentials: ``http://user:token@host/repo.git`` or ``token=...``; both are sent as HTTP Basic
(``govc serve --auth`` takes a token as the Basic password), to Git requests and the event stream.

:func:`follow_into` (``govc follow``) keeps the reality on another govc *server* in step instead,
pushing each change to it, since a running server owns its repositories.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import logging
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from dulwich.client import HTTPUnauthorized, Urllib3HttpGitClient
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
from dulwich.object_store import ObjectStoreGraphWalker
from dulwich.pack import UnpackedObject

from govc.receivepack import receive
from govc.repository import RefChange
from govc.validation import ConflictError
from protocol.receive import Declined, PushRequest, RefCommand, RefResult
from storage.errors import CorruptObject, ObjectNotFound, StorageError
from storage.packs import OBJ_COMMIT
from storage.refnames import is_valid_ref_name

if TYPE_CHECKING:
    from govc.repository import RefEvent, Repository

log = logging.getLogger("govc.follow")

ZERO = b"0" * 40
#: A pack with no objects: what git sends when the receiver already has everything.
EMPTY_PACK = b"PACK" + struct.pack(">II", 2, 0)
EMPTY_PACK += hashlib.sha1(EMPTY_PACK).digest()
#: Seconds a Git request may take before the remote counts as unreachable.
HTTP_TIMEOUT = 60.0
#: The server sends a keepalive every 15 s; three missed ones mean the connection is dead.
STREAM_READ_TIMEOUT = 45.0
MAX_RECONNECT_DELAY = 2.0


class FollowError(Exception):
    """The remote could not be reached or read, or refused, or the local repository refused the
    update (validators, protected refs, hooks); the message says which."""


class FollowConflict(ConflictError):
    """The local reality has commits the remote's tip does not contain; nothing was overwritten."""

    def __init__(self, message: str, *, local_ref: str, remote_ref: str, url: str, local: bytes,
                 remote: bytes, tracking_ref: str | None, ahead: bool) -> None:
        super().__init__(message)
        self.local_ref = local_ref
        self.remote_ref = remote_ref
        self.url = url
        self.local = local
        self.remote = remote
        self.tracking_ref = tracking_ref
        #: True when the remote's tip is in the local history (local only has more commits: a
        #: publish would fast-forward the remote); False when the two diverged.
        self.ahead = ahead


class PublishConflict(ConflictError):
    """The remote ref has commits the local reality lacks, or moved during the push."""

    def __init__(self, message: str, *, ref: str, remote: bytes | None, local: bytes) -> None:
        super().__init__(message)
        self.ref = ref
        self.remote = remote
        self.local = local


@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish` did: ``status`` is ``created``, ``updated``, ``forced`` or ``up-to-date``."""

    url: str
    ref: str
    old: bytes | None
    new: bytes
    status: str


# -- remotes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Remote:
    """A repository URL split into the credential-free URL and the credentials."""

    url: str  # scheme://host[:port]/path, no credentials, no trailing slash
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str, token: str | None = None) -> Remote:
        """Credentials come from ``user:password@`` in the URL; ``token``, if given, is the
        password (with the URL's user name, else ``govc``: govc only reads the password)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) repository URL")
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        clean = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if token is not None:
            username, password = username or "govc", token
        return cls(clean, username, password)

    @property
    def repository(self) -> str:
        """The repository's name on its server (``infra`` for ``.../infra.git``)."""
        path = urlsplit(self.url).path.strip("/")
        return path.removesuffix(".git") or "repository"

    def auth_headers(self) -> dict[str, str]:
        """HTTP Basic, as git sends it (``govc serve --auth`` reads the token from the password)."""
        if self.username is None and self.password is None:
            return {}
        pair = f"{self.username or 'govc'}:{self.password or ''}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}

    @property
    def events_url(self) -> str:
        return f"{self.url}/events"

    def default_name(self) -> str:
        """``<host>-<port>/<repo>``: a remote-tracking namespace no other remote shares."""
        parts = urlsplit(self.url)
        host = f"{parts.hostname}-{parts.port}" if parts.port else str(parts.hostname)
        return "/".join(_ref_safe(p) for p in (host, *self.repository.split("/")))

    @contextlib.contextmanager
    def client(self) -> Iterator[tuple[_HttpClient, str]]:
        """A dulwich client and the repository's path, for one exchange: its idle keep-alive
        connections are closed afterwards (a server that shuts down waits for those)."""
        parts = urlsplit(self.url)
        base = urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
        client = _HttpClient(base, username=self.username, password=self.password, timeout=HTTP_TIMEOUT)
        try:
            yield client, parts.path or "/"
        finally:
            client.pool_manager.clear()


def _ref_safe(part: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", part).lstrip(".")
    cleaned = re.sub(r"\.\.+", ".", cleaned).removesuffix(".lock")
    return cleaned or "-"


class _HttpClient(Urllib3HttpGitClient):
    """dulwich's urllib3 client, reading each response to its end before dulwich parses it: the
    server then never writes to a connection its client already dropped, and a refusal (403)
    keeps the server's reason instead of a bare status code."""

    def _http_request(  # type: ignore[override]
        self, url: str, headers: dict[str, str] | None = None, data: Any = None,
        raise_for_status: bool = True,
    ) -> tuple[Any, Callable[..., bytes]]:
        resp, read = super()._http_request(url, headers, data, raise_for_status=False)
        try:
            body = read()
        finally:
            resp.close()
        if raise_for_status and resp.status != 200:
            if resp.status == 404:
                raise NotGitRepository(f"{url}: no such repository (HTTP 404)")
            if resp.status == 401:
                raise HTTPUnauthorized(resp.headers.get("WWW-Authenticate"), url)
            reason = body.decode("utf-8", "replace").strip()[:300]
            raise GitProtocolError(f"HTTP {resp.status} from {url}" + (f": {reason}" if reason else ""))
        return resp, io.BytesIO(body).read


def _transport_error(remote: Remote, e: BaseException) -> FollowError:
    if isinstance(e, HTTPUnauthorized):
        return FollowError(f"{remote.url}: authentication required or the token is invalid "
                           "(pass token=, or user:token@ in the URL)")
    if isinstance(e, NotGitRepository):
        return FollowError(f"{remote.url}: no such repository")
    cause: BaseException | None = e
    while cause is not None:  # urllib3 wraps the socket's error twice, in long messages
        if type(cause).__module__ == "builtins" and isinstance(cause, OSError):
            return FollowError(f"{remote.url}: unreachable ({cause.strerror or cause})")
        cause = cause.__cause__ or cause.__context__
    return FollowError(f"{remote.url}: {e}")


_TRANSPORT_ERRORS = (GitProtocolError, HangupException, HTTPUnauthorized, NotGitRepository, OSError)


def ls_remote(remote: Remote, prefixes: Sequence[str]) -> dict[str, bytes]:
    """The remote's refs that start with one of ``prefixes`` (ls-refs: only those travel)."""
    try:
        with remote.client() as (client, path):
            found = client.get_refs(path, ref_prefix=[p.encode() for p in prefixes]).refs
    except _TRANSPORT_ERRORS as e:
        raise _transport_error(remote, e) from e
    return {k.decode(): v for k, v in found.items() if v is not None
            and any(k.decode().startswith(p) for p in prefixes)}


def _candidates(spec: str) -> list[str]:
    return [spec] if spec.startswith("refs/") else [f"refs/heads/{spec}", f"refs/realities/{spec}"]


def _pick(spec: str, refs: dict[str, bytes]) -> str | None:
    return next((c for c in _candidates(spec) if c in refs), None)


# -- the local side -------------------------------------------------------------------------------


class _Stale(Exception):
    """A compare-and-swap lost: the ref moved since it was read. Look again."""


class _Closed(Exception):
    """The follower was closed during a sync: write nothing more."""


def _is_ancestor(repo: Repository, old: bytes, new: bytes) -> bool:
    """Does ``new``'s history contain ``old`` (so that moving old -> new loses nothing)?"""
    if old == new:
        return True
    try:
        if not repo.objects.has(old) or repo.objects.type_of(old) != OBJ_COMMIT:
            return False
        return repo.graph.reaches_any(new, {old}, 0)
    except (ObjectNotFound, CorruptObject):
        return False


def _ingest(repo: Repository, pack: bytes, moves: Sequence[tuple[str, bytes | None, bytes]], who: str,
            message: str) -> None:
    """Objects and ref moves into ``repo`` by the path a push takes (checks, validators, hooks,
    compare-and-swap, one event), all moves or none."""
    commands = [RefCommand(old or ZERO, new, name) for name, old, new in moves]
    req = PushRequest(commands, {"atomic": None} if len(commands) > 1 else {})
    outcome = receive(repo, req, pack or EMPTY_PACK, who, source="follow", message=message)
    if outcome.unpack_error is not None:
        raise FollowError(f"the fetched pack was refused ({outcome.unpack_error}): "
                          + "; ".join(outcome.messages))
    failed = [(name, r) for name, r in outcome.results if r is not RefResult.OK]
    if not failed:
        return
    if any(repo.refs.get(name) != old for name, old, _ in moves):
        raise _Stale()
    reasons = [f"{name}: {r.reason if isinstance(r, Declined) else r.value}" for name, r in failed
               if r is not RefResult.ATOMIC_FAILURE] or [f"{n}: {r.value}" for n, r in failed]
    raise FollowError("refused locally: " + "; ".join(reasons))


def _local_haves(repo: Repository) -> list[bytes]:
    """Commits to offer as "have" so the remote sends only what is missing: every ref's tip."""
    out: list[bytes] = []
    for _name, oid in repo.refs.items():
        try:
            if repo.objects.type_of(oid) == OBJ_COMMIT:
                out.append(oid)
        except (ObjectNotFound, KeyError):
            continue
    return list(dict.fromkeys(out))


def fetch(repo: Repository, remote: Remote, spec: str) -> tuple[str | None, bytes | None, bytes]:
    """Ask the remote for the ref ``spec`` names and the objects ``repo`` lacks to reach it:
    ``(ref, tip, pack)`` with ref and tip None when the remote has no such ref. Nothing is stored."""
    seen: dict[str, Any] = {"ref": None, "tip": None}

    def determine_wants(refs: dict[bytes, bytes], depth: int | None = None) -> list[bytes]:
        decoded = {k.decode(): v for k, v in refs.items() if v is not None}
        ref = _pick(spec, decoded)
        if ref is None:
            return []
        tip = decoded[ref]
        seen.update(ref=ref, tip=tip)
        return [] if repo.objects.has(tip) else [tip]

    def parents(oid: bytes) -> list[bytes]:
        try:
            return list(repo.graph.commit(oid).parents)
        except (ObjectNotFound, CorruptObject, KeyError):
            return []

    pack = bytearray()

    def take(data: bytes) -> int:
        pack.extend(data)
        return len(data)

    walker = ObjectStoreGraphWalker(_local_haves(repo), parents)  # type: ignore[arg-type]
    try:
        with remote.client() as (client, path):
            client.fetch_pack(path, determine_wants, walker, take, progress=lambda _b: None,  # type: ignore[arg-type]
                              ref_prefix=[c.encode() for c in _candidates(spec)])
    except _TRANSPORT_ERRORS as e:
        raise _transport_error(remote, e) from e
    return seen["ref"], seen["tip"], bytes(pack)


# -- pushing -------------------------------------------------------------------------------------


def _push(repo: Repository, remote: Remote, ref: str, new: bytes, *, expect: object,
          force: bool) -> PublishResult:
    """One receive-pack request moving ``ref`` on the remote to ``new``; the old value sent (and
    compared-and-swapped by the server) is the one the remote advertised. ``expect`` (unless
    :data:`_ANY`) is the old value the caller based its decision on."""
    state: dict[str, Any] = {"old": None, "refusal": None}

    def update_refs(refs: dict[bytes, bytes]) -> dict[bytes, bytes] | None:
        old = refs.get(ref.encode())
        old = None if old == ZERO else old
        state["old"] = old
        if old == new:
            return None
        if expect is not _ANY and old != expect:
            state["refusal"] = PublishConflict(
                f"{remote.url} {ref} moved (now {_short(old)}, expected {_short(expect)})",  # type: ignore[arg-type]
                ref=ref, remote=old, local=new)
            return None
        if old is not None and not force and not _is_ancestor(repo, old, new):
            lacks = "has commits this repository has not fetched" if not repo.objects.has(old) else \
                "has commits the local reality lacks (the two diverged)"
            state["refusal"] = PublishConflict(
                f"{remote.url} {ref} {lacks}: remote at {_short(old)}, local at {_short(new)}; "
                "follow or merge it first, or publish with force=True", ref=ref, remote=old, local=new)
            return None
        return {ref.encode(): new}

    def generate_pack_data(have: Any, want: Any, *args: Any, **kwargs: Any) -> tuple[int, Iterator[Any]]:
        haves = [h for h in have if repo.objects.has(h)]
        oids, _ = repo.graph.objects_to_send(list(want), haves)

        def records() -> Iterator[UnpackedObject]:
            for oid in oids:
                type_num, content = repo.objects.get(oid)
                yield UnpackedObject(type_num, decomp_chunks=[content], sha=bytes.fromhex(oid.decode()))

        return len(oids), records()

    try:
        with remote.client() as (client, path):
            result = client.send_pack(path, update_refs, generate_pack_data,  # type: ignore[arg-type]
                                      progress=lambda _b: None)
    except _TRANSPORT_ERRORS as e:
        raise _transport_error(remote, e) from e
    if state["refusal"] is not None:
        raise state["refusal"]
    old = state["old"]
    if old == new:
        return PublishResult(remote.url, ref, old, new, "up-to-date")
    status = (result.ref_status or {}).get(ref.encode())
    if status is not None:
        now = ls_remote(remote, [ref]).get(ref)
        if now != old:
            raise PublishConflict(f"{remote.url} {ref} moved during the push (now {_short(now)})",
                                  ref=ref, remote=now, local=new)
        raise FollowError(f"{remote.url} refused {ref}: {status}")
    kind = "created" if old is None else "updated" if _is_ancestor(repo, old, new) else "forced"
    return PublishResult(remote.url, ref, old, new, kind)


_ANY = object()


def _short(oid: bytes | None) -> str:
    return "nothing" if oid is None else oid.decode()[:12]


def publish(repo: Repository, url: str, reality: str = "main", *, remote_ref: str | None = None,
            token: str | None = None, force: bool = False) -> PublishResult:
    """Push the local reality to the same ref (or ``remote_ref``) on the server at ``url``.

    Only a fast-forward is sent unless ``force``: the remote must not have commits the local
    reality lacks. The server compares-and-swaps against the value it advertised, so a remote that
    moves in between is reported too. Raises :class:`PublishConflict` for both, and
    :class:`FollowError` when the remote refuses (its validators, protected refs, permissions) or
    cannot be reached."""
    remote = Remote.parse(url, token)
    local_ref = repo.resolve_reality_ref(reality)
    new = repo.refs.get(local_ref)
    if new is None:
        raise KeyError(f"{reality} has no commits")
    target = remote_ref or local_ref
    if not is_valid_ref_name(target):
        raise ValueError(f"invalid ref name {target!r}")
    return _push(repo, remote, target, new, expect=_ANY, force=force)


# -- where the followed reality lives ------------------------------------------------------------


class _Target(Protocol):
    ref: str

    def tip(self) -> bytes | None: ...

    def move(self, old: bytes | None, new: bytes) -> None: ...

    def describe(self) -> str: ...


class _LocalTarget:
    """The reality in the follower's own repository."""

    def __init__(self, repo: Repository, ref: str, who: str) -> None:
        self.repo, self.ref, self.who = repo, ref, who

    def tip(self) -> bytes | None:
        return self.repo.refs.get(self.ref)

    def move(self, old: bytes | None, new: bytes) -> None:
        _ingest(self.repo, EMPTY_PACK, [(self.ref, old, new)], self.who, "follow: fast-forward")

    def describe(self) -> str:
        return self.ref


class _RemoteTarget:
    """The reality on another govc server (``govc follow --into``), moved by a push whose old
    value is the one the decision was based on. ``repo`` (the mirror) holds the followed history,
    so "is the target's tip an ancestor of the remote's" needs nothing from the target."""

    def __init__(self, repo: Repository, remote: Remote, ref: str) -> None:
        self.repo, self.remote, self.ref = repo, remote, ref

    def tip(self) -> bytes | None:
        return ls_remote(self.remote, [self.ref]).get(self.ref)

    def move(self, old: bytes | None, new: bytes) -> None:
        try:
            _push(self.repo, self.remote, self.ref, new, expect=old, force=False)
        except PublishConflict:
            raise _Stale() from None

    def describe(self) -> str:
        return f"{self.remote.url} {self.ref}"


# -- the follower --------------------------------------------------------------------------------


class Follower:
    """Keeps a local reality in step with one on another server (see the module docstring).

    Made by ``repo.subscribe(url, reality, ...)``. Runs on its own thread (with its own asyncio
    loop for the event stream) from construction until :meth:`close`; ``start=False`` makes one
    that only syncs when :meth:`sync` is called. Callbacks run on the follower's thread.
    """

    def __init__(
        self,
        repo: Repository,
        url: str,
        reality: str,
        *,
        local: str | None = None,
        token: str | None = None,
        remote_name: str | None = None,
        poll: float = 30.0,
        ephemeral: bool = False,
        on_update: Callable[[RefChange], object] | None = None,
        on_conflict: Callable[[FollowConflict], object] | None = None,
        start: bool = True,
        _into: Remote | None = None,
    ) -> None:
        self.repo = repo
        self.remote = Remote.parse(url, token)
        self.url = self.remote.url
        self.reality = reality
        if poll <= 0:
            raise ValueError("poll must be a positive number of seconds")
        self.poll = poll
        self.ephemeral = ephemeral
        self.on_update = on_update
        self.on_conflict = on_conflict
        #: The remote-tracking namespace: ``refs/remotes/<remote_name>/...``.
        self.remote_name = remote_name or self.remote.default_name()
        self._local_spec = local
        self._into = _into
        self._who = f"follow {self.url}"
        #: The followed ref on the remote (None until the remote has it).
        self.remote_ref: str | None = reality if reality.startswith("refs/") else None
        self.local_ref: str | None = None
        self.tracking_ref: str | None = None
        self._target: _Target | None = None
        if self.remote_ref is not None:
            self._resolve(self.remote_ref)
        #: "starting", "synced", "waiting" (the remote has no such ref), "conflict", "error", "closed".
        self.state = "starting"
        self.conflict: FollowConflict | None = None
        self.error: Exception | None = None
        #: Whether the event stream is connected now.
        self.connected = False
        self._stream_problem: str | None = None
        #: The id of the last event received; a reconnect resumes after it.
        self.last_event_id: int | None = None
        #: Fast-forwards applied to the local reality so far.
        self.updates = 0
        self._cond = threading.Condition()
        self._sync_lock = threading.Lock()  # one sync at a time
        self._write_lock = threading.Lock()  # held by each write; close() takes it to end writing
        self._started = 0  # syncs begun
        self._finished = 0  # the number of the last sync that finished
        self._closed = False
        self._wake = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None  # the event stream's
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None  # syncs (and callbacks) run here
        self._stream_thread: threading.Thread | None = None
        self._unsubscribe = repo.subscribe(self._local_event) if _into is None else (lambda: None)
        if start:
            self.start()

    def __repr__(self) -> str:
        return (f"<Follower {self.url} {self.remote_ref or self.reality} -> "
                f"{self._target.describe() if self._target else '?'}: {self.state}>")

    # -- resolution ----------------------------------------------------------------------------

    def _resolve(self, remote_ref: str) -> None:
        self.remote_ref = remote_ref
        spec = self._local_spec
        if spec is None:
            local = remote_ref
        elif spec.startswith("refs/"):
            local = spec
        else:
            namespace = "refs/heads/" if remote_ref.startswith("refs/heads/") else "refs/realities/"
            local = f"{namespace}{spec}"
        short = remote_ref
        for prefix in ("refs/heads/", "refs/realities/", "refs/"):
            if short.startswith(prefix):
                short = short[len(prefix):]
                break
        tracking = f"refs/remotes/{self.remote_name}/{short}"
        for name in (local, tracking):
            if not is_valid_ref_name(name):
                raise ValueError(f"invalid ref name {name!r}")
        if self.ephemeral and not local.startswith(self.repo.ephemeral_namespace):
            raise ValueError(f"an ephemeral follow needs a reality under {self.repo.ephemeral_namespace}, "
                             f"not {local}")
        self.local_ref, self.tracking_ref = local, tracking
        if self._into is not None:
            self._target = _RemoteTarget(self.repo, self._into, local)
        else:
            self._target = _LocalTarget(self.repo, local, self._who)
            if self.ephemeral:
                # Marked before creation, as parallel_realities does, so they never reach the backend.
                for name in (local, tracking):
                    if self.repo.refs.get(name) is None:
                        self.repo.ephemeral_refs.add(name)

    # -- one sync ------------------------------------------------------------------------------

    def sync(self) -> str:
        """Fetch now and fast-forward if possible; returns the new :attr:`state`. Never raises for
        remote or conflict trouble: those are the state (``error``, ``conflict``) and attributes."""
        with self._sync_lock:
            with self._cond:
                self._started += 1
                number = self._started
            try:
                if self._closed:
                    return self.state
                self._sync_once()
                self.error = None
            except _Closed:
                pass
            except FollowError as e:
                self._fail(e)
            except (StorageError, ValueError) as e:
                self._fail(FollowError(str(e)))
            except Exception as e:  # a bug must not kill the follower thread; it is logged
                log.exception("following %s %s failed", self.url, self.reality)
                self._fail(FollowError(f"{type(e).__name__}: {e}"))
            finally:
                if self._closed:
                    self.state = "closed"
                with self._cond:
                    self._finished = number
                    self._cond.notify_all()
            return self.state

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Around every write: none starts once close() has begun, and close() waits for one in
        progress, so nothing changes after close() returns."""
        with self._write_lock:
            if self._closed:
                raise _Closed()
            yield

    def _fail(self, error: FollowError) -> None:
        if self.error is None or str(self.error) != str(error):
            log.warning("following %s %s: %s", self.url, self.reality, error)
        self.error = error
        self.state = "error"

    def _sync_once(self) -> None:
        ref, remote_tip, pack = fetch(self.repo, self.remote, self.remote_ref or self.reality)
        if ref is None or remote_tip is None:
            if self.state != "waiting":
                log.info("following %s: %s does not exist there (yet); waiting", self.url, self.reality)
            self.state = "waiting"
            return
        if self.remote_ref != ref or self._target is None:
            self._resolve(ref)
        assert self._target is not None and self.tracking_ref is not None
        for _attempt in range(5):
            tracked = self.repo.refs.get(self.tracking_ref)
            if tracked != remote_tip:
                try:
                    with self._writing():
                        _ingest(self.repo, pack, [(self.tracking_ref, tracked, remote_tip)], self._who,
                                "follow: fetch")
                except _Stale:
                    continue
            current = self._target.tip()
            if current == remote_tip:
                self._synced()
                return
            if current is None or _is_ancestor(self.repo, current, remote_tip):
                try:
                    with self._writing():
                        self._target.move(current, remote_tip)
                except _Stale:
                    continue  # the local reality moved meanwhile: decide again
                self.updates += 1
                log.info("following %s: %s %s..%s", self.url, self._target.describe(), _short(current),
                         _short(remote_tip))
                self._synced()
                self._call(self.on_update, RefChange(self._target.ref, current, remote_tip))
                return
            self._conflicted(current, remote_tip)
            return
        raise FollowError(f"{self._target.describe()} kept moving during the sync; will retry")

    def _synced(self) -> None:
        if self.conflict is not None:
            log.info("following %s: the conflict on %s is resolved", self.url, self.local_ref)
        self.conflict = None
        self.state = "synced"

    def _conflicted(self, local: bytes, remote: bytes) -> None:
        assert self._target is not None and self.remote_ref is not None
        previous = self.conflict
        if previous is not None and previous.local == local and previous.remote == remote:
            self.state = "conflict"
            return
        known = self.repo.objects.has(local)  # unknown: commits made only on the local side
        ahead = known and _is_ancestor(self.repo, remote, local)
        how = "and the remote have diverged" if known and not ahead else "has commits the remote lacks"
        tracking = f" ({self.tracking_ref})" if self._into is None else ""
        message = (f"{self._target.describe()} {how}: local {_short(local)}, remote {self.url} "
                   f"{self.remote_ref} {_short(remote)}. Not overwritten: publish the local commits, "
                   f"or merge or reset to the remote's tip{tracking}")
        self.conflict = FollowConflict(message, local_ref=self._target.ref, remote_ref=self.remote_ref,
                                       url=self.url, local=local, remote=remote,
                                       tracking_ref=self.tracking_ref if self._into is None else None,
                                       ahead=ahead)
        self.state = "conflict"
        log.warning("conflict: %s", message)
        self._call(self.on_conflict, self.conflict)

    def _call(self, callback: Callable[[Any], object] | None, arg: object) -> None:
        if callback is None:
            return
        try:
            callback(arg)
        except Exception:  # a callback's failure must not stop the following
            log.exception("follower callback %r failed", callback)

    # -- waiting -------------------------------------------------------------------------------

    def wait_synced(self, timeout: float = 10.0) -> bool:
        """Block until a sync begun after this call finds the local reality at the remote's tip:
        True; False after ``timeout`` seconds. Raises the :class:`FollowConflict` if the local
        reality conflicts, and :class:`FollowError` if the follower is closed."""
        if self._thread is not None and threading.current_thread() is self._thread:
            raise RuntimeError("wait_synced() in a follower callback would wait for itself")
        deadline = time.monotonic() + timeout
        while True:
            if self._closed:
                raise FollowError("the follower is closed")
            with self._cond:
                mark = self._started
            if self._thread is None:
                self.sync()
            else:
                self.wake()
                with self._cond:
                    while self._finished <= mark and not self._closed:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return False
                        self._cond.wait(remaining)
            if self.state == "synced":
                return True
            if self.state == "conflict" and self.conflict is not None:
                raise self.conflict
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(0.2, remaining))

    async def wait_synced_async(self, timeout: float = 10.0) -> bool:
        """:meth:`wait_synced` on a worker thread (for asyncio code)."""
        return await asyncio.to_thread(self.wait_synced, timeout)

    # -- the thread ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start following on background threads (done by the constructor unless ``start=False``):
        one syncs, one listens to the event stream."""
        if self._thread is not None or self._closed:
            return
        ready = threading.Event()
        self._wake.set()  # the first sync: catch up with whatever happened before
        self._thread = threading.Thread(target=self._sync_worker, daemon=True,
                                        name=f"govc-follow-{self.reality}")
        self._stream_thread = threading.Thread(target=self._stream_main, args=(ready,), daemon=True,
                                               name=f"govc-follow-{self.reality}-events")
        self._thread.start()
        self._stream_thread.start()
        ready.wait(10)

    def wake(self) -> None:
        """Sync soon (several wake-ups before the sync starts make one sync)."""
        self._wake.set()

    def _local_event(self, event: RefEvent) -> None:
        """The local reality moved (a local commit, a reset): look at once, conflicts included."""
        if event.who == self._who or self.local_ref is None:
            return
        if any(change.name == self.local_ref for change in event.changes):
            self.wake()

    def _sync_worker(self) -> None:
        """Sync whenever woken (events, reconnects, local changes), at least every ``poll``
        seconds, and sooner after an error (1, 2, 4 ... seconds, up to ``poll``)."""
        failures = 0
        while not self._closed:
            delay = self.poll if self.state != "error" else min(self.poll, 2.0 ** min(failures, 6))
            self._wake.wait(delay)
            self._wake.clear()
            if self._closed:
                break
            state = self.sync()
            failures = failures + 1 if state == "error" else 0

    def _stream_main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._stream_run(ready))
        finally:
            loop.close()

    async def _stream_run(self, ready: threading.Event) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        if self._closed:
            return
        task = asyncio.create_task(self._stream_loop())
        await self._stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _stream_loop(self) -> None:
        """Listen to the remote's event stream; each event about the followed ref wakes a sync.
        Reconnects forever with ``Last-Event-ID``, and syncs after each (re)connect."""
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=STREAM_READ_TIMEOUT)
        delay = 0.25
        async with aiohttp.ClientSession(timeout=timeout, trust_env=True) as session:
            while True:
                headers = {"Accept": "text/event-stream", **self.remote.auth_headers()}
                if self.last_event_id is not None:
                    headers["Last-Event-ID"] = str(self.last_event_id)
                params = {"branch": self.remote_ref or self.reality}
                refused = False  # an HTTP refusal (auth, no such repository): retry slowly
                try:
                    async with session.get(self.remote.events_url, headers=headers, params=params) as resp:
                        if resp.status != 200:
                            text = (await resp.text()).strip()[:200]
                            problem = f"event stream: HTTP {resp.status} {text}"
                            refused = True
                            if problem != self._stream_problem:
                                log.warning("following %s: %s", self.url, problem)
                        else:
                            if not self.connected:
                                log.info("following %s: event stream connected", self.url)
                            self.connected = True
                            delay = 0.25
                            self.wake()  # catch up with what happened while not listening
                            await self._read_events(resp.content)
                            problem = "event stream ended"
                except (aiohttp.ClientError, TimeoutError, ConnectionError) as e:
                    problem = f"event stream: {type(e).__name__}: {e}"
                if self.connected:
                    log.info("following %s: %s; reconnecting", self.url, problem)
                self.connected = False
                self._stream_problem = problem
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0 if refused else MAX_RECONNECT_DELAY)

    async def _read_events(self, content: Any) -> None:
        data: list[str] = []
        event_id: str | None = None
        async for raw in content:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                if event_id is not None:
                    with contextlib.suppress(ValueError):
                        self.last_event_id = int(event_id)
                if data and self._concerns_us("\n".join(data)):
                    self.wake()
                data, event_id = [], None
            elif line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())

    def _concerns_us(self, data: str) -> bool:
        try:
            changes = json.loads(data).get("changes", [])
        except (ValueError, AttributeError):
            return True
        wanted = {self.remote_ref} if self.remote_ref else set(_candidates(self.reality))
        return any(str(c.get("ref")) in wanted for c in changes) or not changes

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop following. Once it returns nothing more is written (a write in progress is
        waited for); a fetch still waiting for the remote ends on its own. Idempotent."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
        self._unsubscribe()
        self._wake.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        for thread in (self._stream_thread, self._thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=2.0)
        self.state = "closed"
        self.connected = False
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> Follower:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.to_thread(self.close)


def follow_into(url: str, reality: str, into: str, *, local: str | None = None, token: str | None = None,
                into_token: str | None = None, poll: float = 30.0,
                on_update: Callable[[RefChange], object] | None = None,
                on_conflict: Callable[[FollowConflict], object] | None = None,
                start: bool = True) -> Follower:
    """A follower whose local reality lives on another govc server (``into``, a repository URL),
    moved by pushes: what ``govc follow`` uses, since a running ``govc serve`` owns its data
    directory and must make every change itself (its memory is the truth, its validators and
    protected refs apply). The followed history is kept in an in-memory mirror repository."""
    from govc.repository import Repository

    mirror = Repository("mirror")
    return Follower(mirror, url, reality, local=local, token=token, poll=poll, on_update=on_update,
                    on_conflict=on_conflict, start=start, _into=Remote.parse(into, into_token))
