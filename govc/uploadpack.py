"""Serving fetches: the protocol module's requests answered from a :class:`Repository`.

Everything here is synchronous and CPU-bound; the HTTP layer runs it in worker threads and
streams the chunks it yields.
"""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field

from govc.repository import Repository
from protocol import advertise, capabilities
from protocol.errors import NotOurRef
from protocol.packwriter import CHUNK_SIZE, PackStats, generate_pack
from protocol.pktline import FLUSH_PKT
from protocol.sideband import (
    BAND_DATA,
    BAND_ERROR,
    BAND_PROGRESS,
    MAX_SIDEBAND_DATA,
    MAX_SIDEBAND_SMALL,
    sideband,
    sideband_packets,
)
from protocol.upload import (
    INFINITE_DEPTH,
    FetchRequest,
    LsRefsEntry,
    Negotiation,
    V2Command,
    check_command,
    error_line,
    ls_refs_response,
    negotiate,
    object_info_response,
    packfile_header,
    parse_v0_request,
    parse_v2_command,
    parse_v2_fetch,
    parse_v2_ls_refs,
    parse_v2_object_info,
    ref_matches,
    v0_acks,
    v0_shallow_section,
    v2_acknowledgments,
    v2_shallow_info,
)
from storage.errors import CorruptObject, ObjectNotFound, StorageError
from storage.filters import FilterSpecError, ObjectFilter
from storage.graph import parse_tag_target
from storage.packcache import SHARED_PACK_CACHE, CachedPack
from storage.packs import OBJ_COMMIT, OBJ_TAG, StoredPack

V2_COMMANDS = ("ls-refs", "fetch", "object-info")
log = logging.getLogger("govc.upload")


def peeled_tags(repo: Repository) -> dict[str, bytes]:
    """Peeled values of refs that point at annotated tags."""
    out: dict[str, bytes] = {}
    for name, oid in repo.refs.items():
        try:
            if repo.objects.type_of(oid) == OBJ_TAG:
                out[name] = repo.graph.peel(oid)[0]
        except (KeyError, CorruptObject):
            continue
    return out


def v0_advertisement(repo: Repository, service: str, *, smart_http: bool = True) -> bytes:
    refs = repo.refs.items()
    if service == "git-upload-pack":
        head_target = repo.head_target
        head = repo.refs.get("HEAD")
        body = advertise.v0_refs(
            refs, capabilities.UPLOAD_PACK_V0, head=head, head_target=head_target,
            peeled=peeled_tags(repo),
        )
    else:
        body = advertise.v0_refs(refs, capabilities.RECEIVE_PACK)
    return (advertise.service_header(service) if smart_http else b"") + body


def v2_advertisement() -> bytes:
    return advertise.v2_capabilities(capabilities.UPLOAD_PACK_V2)


def _ok_to_give_up(repo: Repository, wants: list[bytes], common: list[bytes]) -> bool:
    """Git's ``ok_to_give_up``: every wanted commit reaches something the client has."""
    graph = repo.graph
    targets: set[bytes] = set()
    cutoff: int | None = None
    for oid in common:
        try:
            peeled, type_num = graph.peel(oid)
            if type_num != OBJ_COMMIT:
                continue
            info = graph.commit(peeled)
        except (KeyError, CorruptObject):
            continue
        targets.add(peeled)
        targets.update(info.parents)
        cutoff = info.time if cutoff is None else min(cutoff, info.time)
    if not targets:
        return False
    for want in wants:
        try:
            peeled, type_num = graph.peel(want)
        except (KeyError, CorruptObject):
            return False
        if type_num != OBJ_COMMIT:
            continue
        if not graph.reaches_any(peeled, targets, cutoff or 0):
            return False
    return True


def _negotiate(repo: Repository, req: FetchRequest) -> Negotiation:
    return negotiate(
        req,
        is_common=repo.objects.has,
        ok_to_give_up=lambda common: _ok_to_give_up(repo, req.wants, common),
    )


def _refuse_wants(repo: Repository, req: FetchRequest) -> bytes | None:
    """The ``ERR`` line for the first want the repository does not hold, as git words it."""
    for oid in req.wants:
        if not repo.objects.has(oid):
            return error_line(str(NotOurRef(f"upload-pack: not our ref {oid.decode()}")))
    return None


def _with_auto_followed_tags(repo: Repository, objects: list[bytes], client_has: set[bytes]) -> None:
    """include-tag: annotated tags whose target is in the pack go in it too."""
    sending = set(objects)
    for _name, oid in repo.refs.items():
        if oid in sending or oid in client_has:
            continue
        try:
            if repo.objects.type_of(oid) != OBJ_TAG:
                continue
            chain = [oid]
            target = oid
            while repo.objects.type_of(target) == OBJ_TAG:
                target, _ = parse_tag_target(repo.objects.get(target)[1])
                chain.append(target)
        except (KeyError, CorruptObject):
            continue
        if target in sending:
            for t in chain[:-1]:
                if t not in sending:
                    sending.add(t)
                    objects.append(t)


class FetchRefused(Exception):
    """A fetch request the server declines; the message becomes an ``ERR`` line."""


@dataclass(slots=True)
class FetchPlan:
    """What a fetch request means for this repository, decided before any answer is written:
    the shallow boundary it asks for and the filter it applies."""

    client_shallow: set[bytes] = field(default_factory=set)
    shallow: set[bytes] = field(default_factory=set)  # commits whose parents are not sent
    new_shallow: set[bytes] = field(default_factory=set)  # told to the client as "shallow"
    unshallow: list[bytes] = field(default_factory=list)  # told as "unshallow"
    extra_wants: list[bytes] = field(default_factory=list)
    object_filter: ObjectFilter | None = None
    sends_shallow_info: bool = False


def _resolve_deepen_not(repo: Repository, names: list[bytes]) -> list[bytes]:
    tips: list[bytes] = []
    for raw in names:
        name = raw.decode("utf-8", "replace")
        for candidate in (name, f"refs/{name}", f"refs/tags/{name}", f"refs/heads/{name}"):
            oid = repo.refs.get(candidate)
            if oid is not None:
                tips.append(repo.graph.peel(oid)[0])
                break
        else:
            raise FetchRefused(f"git upload-pack: ambiguous deepen-not: {name}")
    return tips


def plan_fetch(repo: Repository, req: FetchRequest) -> FetchPlan:
    """Git's ``send_shallow_list`` and filter parsing, as one decision."""
    plan = FetchPlan()
    if req.filter is not None:
        try:
            plan.object_filter = ObjectFilter.parse(req.filter)
        except FilterSpecError as e:
            raise FetchRefused(str(e)) from None
    graph = repo.graph
    plan.client_shallow = {
        oid for oid in req.shallows
        if repo.objects.has(oid) and repo.objects.type_of(oid) == OBJ_COMMIT
    }
    plan.sends_shallow_info = req.deepens or bool(req.shallows)
    if not req.deepens:
        plan.shallow = set(plan.client_shallow)
        return plan
    if req.depth and (req.deepen_since is not None or req.deepen_not):
        raise FetchRefused("git upload-pack: deepen and deepen-since (or deepen-not) cannot be used together")
    within: set[bytes]
    if req.depth and req.depth >= INFINITE_DEPTH:
        shallow, within = set(), set(plan.client_shallow)
    elif req.depth:
        if req.deepen_relative:
            shallow, within = graph.shallow_by_depth(plan.client_shallow, req.depth + 1)
        else:
            starts = []
            for oid in req.wants:
                peeled, type_num = graph.peel(oid)
                if type_num == OBJ_COMMIT:
                    starts.append(peeled)
            shallow, within = graph.shallow_by_depth(starts, req.depth)
    else:
        starts = [graph.peel(oid)[0] for oid in req.wants]
        excluded = _resolve_deepen_not(repo, req.deepen_not)
        shallow, within = graph.shallow_by_rev_list(starts, req.deepen_since, excluded)
        if not shallow and not within:
            raise FetchRefused("no commits selected for shallow requests")
    plan.shallow = shallow | (plan.client_shallow - within)
    plan.new_shallow = shallow - plan.client_shallow
    plan.unshallow = sorted(c for c in plan.client_shallow if c in within)
    for c in plan.unshallow:
        plan.extra_wants.extend(graph.commit(c).parents)
    return plan


def _pack_stream(
    repo: Repository, req: FetchRequest, plan: FetchPlan, common: list[bytes], band_limit: int | None
) -> Iterator[bytes]:
    """The pack, framed in side-band packets (or raw when ``band_limit`` is None).

    Three ways to the same bytes, cheapest first: a stored pack that is exactly the answer is
    sent as it is (a full clone); an identical earlier request's pack comes from the cache; else
    the graph is walked and the pack generated (and kept for the next identical request).
    """
    progress = band_limit is not None and not req.has("no-progress")
    stored = _reusable_pack(repo, req, plan, common)
    if stored is not None:
        n, deltas = len(stored), stored.delta_count()
        view = memoryview(stored.data)
        pieces = (view[i : i + CHUNK_SIZE] for i in range(0, len(view), CHUNK_SIZE))
        yield from _framed(pieces, n, (n, deltas, n, deltas), band_limit, progress, reused_pack=n)
        return
    cache = SHARED_PACK_CACHE
    # No waiting for an identical request in flight: waiting would hold a worker thread the
    # other request may need to make progress. Each computes; the first to finish is kept.
    key = cache.key(_cache_owner(repo), _request_key(req, plan, common)) if cache.max_bytes else None
    hit = cache.get(key) if key is not None else None
    if hit is not None:
        counts = (hit.objects, hit.deltas, hit.reused, hit.reused_deltas)
        yield from _framed(iter(hit.chunks), hit.objects, counts, band_limit, progress)
        return
    yield from _generated(repo, req, plan, common, band_limit, progress, key)


def _generated(
    repo: Repository, req: FetchRequest, plan: FetchPlan, common: list[bytes], band_limit: int | None,
    progress: bool, cache_key: tuple[int, int, Hashable] | None,
) -> Iterator[bytes]:
    """Walk, generate and stream the pack; with ``cache_key``, keep it for identical requests
    (as long as it fits in one cache entry: past that the pieces are let go)."""
    objects, client_has = repo.graph.objects_to_send(
        [*req.wants, *plan.extra_wants], common, shallow=plan.shallow,
        client_shallow=plan.client_shallow, object_filter=plan.object_filter,
        sizes=repo.objects.size_of,
    )
    if req.has("include-tag"):
        _with_auto_followed_tags(repo, objects, client_has)
    if progress:
        assert band_limit is not None
        yield sideband(BAND_PROGRESS, f"Enumerating objects: {len(objects)}, done.\n".encode(), band_limit)
    stats = PackStats()
    thin = client_has if req.has("thin-pack") else set()
    chunks = generate_pack(
        repo.objects, objects, ofs_delta=req.has("ofs-delta"), client_has=thin, stats=stats
    )
    kept: list[bytes] | None = [] if cache_key is not None else None
    kept_size = 0
    cache = SHARED_PACK_CACHE

    def keep(chunk: bytes) -> bytes:
        nonlocal kept, kept_size
        if kept is not None:
            kept_size += len(chunk)
            if kept_size > cache.max_entry:
                kept = None  # too big to keep: let the pieces go
            else:
                kept.append(chunk)
        return chunk

    counts = lambda: (stats.objects, stats.deltas, stats.reused, stats.reused_deltas)  # noqa: E731
    yield from _framed(map(keep, chunks), None, counts, band_limit, progress)
    if kept is not None and cache_key is not None:
        cache.put(cache_key, CachedPack(tuple(kept), *counts()))


def _framed(
    pieces: Iterator[bytes] | Iterator[memoryview], enumerated: int | None,
    counts: tuple[int, int, int, int] | Callable[[], tuple[int, int, int, int]],
    band_limit: int | None, progress: bool, reused_pack: int = 0,
) -> Iterator[bytes]:
    """Frame pack pieces for the wire; the "Total" progress line goes just before the last piece,
    as git sends it. ``counts`` (objects, deltas, reused, reused deltas) may be a function, read
    once the pieces are exhausted."""
    if progress and enumerated is not None:
        assert band_limit is not None
        yield sideband(BAND_PROGRESS, f"Enumerating objects: {enumerated}, done.\n".encode(), band_limit)
    pending: bytes | memoryview | None = None
    for chunk in pieces:
        if pending is not None:
            yield _frame(pending, band_limit)
        pending = chunk
    if progress:
        assert band_limit is not None
        objects, deltas, reused, reused_deltas = counts() if callable(counts) else counts
        yield sideband(
            BAND_PROGRESS,
            f"Total {objects} (delta {deltas}), reused {reused} "
            f"(delta {reused_deltas}), pack-reused {reused_pack}\n".encode(),
            band_limit,
        )
    if pending is not None:
        yield _frame(pending, band_limit)


def _reusable_pack(
    repo: Repository, req: FetchRequest, plan: FetchPlan, common: list[bytes]
) -> StoredPack | None:
    """A stored pack whose objects are exactly the answer (a full clone of the refs a push
    brought into an empty repository), or None. Only for a plain request: no haves, no shallow
    boundary, no filter, offset deltas understood, and no annotated tag outside the pack that
    include-tag would add."""
    if common or plan.shallow or plan.client_shallow or plan.extra_wants or plan.object_filter is not None:
        return None
    if req.deepens or not req.has("ofs-delta"):
        return None
    wants = set(req.wants)
    for pack in repo.objects.packs:
        if pack.serves_whole(wants):
            break
    else:
        return None
    if req.has("include-tag"):
        for _name, oid in repo.refs.items():
            if oid not in pack.by_oid and oid not in wants:
                try:
                    if repo.objects.type_of(oid) == OBJ_TAG:
                        return None  # it might point into the pack: let the general path decide
                except ObjectNotFound:
                    continue
    return pack


_owners: weakref.WeakKeyDictionary[Repository, int] = weakref.WeakKeyDictionary()
_owners_lock = threading.Lock()
_next_owner = itertools.count(1)


def _cache_owner(repo: Repository) -> int:
    """The pack cache's token for ``repo``; the first call subscribes to its ref events, so every
    ref update (push, API, CLI: they all go through one path) drops the repository's entries."""
    owner = _owners.get(repo)
    if owner is None:
        with _owners_lock:
            owner = _owners.get(repo)
            if owner is None:
                owner = next(_next_owner)
                token = owner
                repo.subscribe(lambda _event: SHARED_PACK_CACHE.invalidate(token))
                _owners[repo] = owner
    return owner


def _request_key(req: FetchRequest, plan: FetchPlan, common: list[bytes]) -> Hashable:
    """Everything that decides the pack's bytes, in a canonical form (order and repeats in the
    request do not matter). Side-band size and progress only change the framing."""
    return (
        tuple(sorted({*req.wants, *plan.extra_wants})),
        tuple(sorted(set(common))),
        tuple(sorted(plan.shallow)),
        tuple(sorted(plan.client_shallow)),
        plan.object_filter,
        req.has("ofs-delta"),
        req.has("thin-pack"),
        req.has("include-tag"),
    )


def _guarded(chunks: Iterator[bytes], band_limit: int | None) -> Iterator[bytes]:
    """Turn a storage failure half-way through a pack into Git's fatal band-3 message, so the
    client stops with a readable error instead of a truncated pack."""
    try:
        yield from chunks
    except StorageError as e:
        log.error("upload-pack failed while sending a pack: %s", e)
        if band_limit is None:
            raise
        yield sideband(BAND_ERROR, f"upload-pack: {e}\n".encode(), band_limit)


def _frame(data: bytes | memoryview, band_limit: int | None) -> bytes:
    if band_limit is None:
        return bytes(data)
    return b"".join(sideband_packets(BAND_DATA, data, band_limit))


def _prepare(repo: Repository, req: FetchRequest) -> tuple[FetchPlan | None, bytes]:
    """The fetch plan, or the ``ERR`` line refusing the request (unknown wants, bad filters,
    contradictory deepen arguments) — the same for v0 and v2."""
    refusal = _refuse_wants(repo, req)
    if refusal is not None:
        return None, refusal
    try:
        return plan_fetch(repo, req), b""
    except FetchRefused as e:
        return None, error_line(str(e))


def upload_pack_v0(repo: Repository, body: bytes) -> Iterator[bytes]:
    """Answer one stateless v0/v1 upload-pack request."""
    req = parse_v0_request(body)
    if not req.wants:
        return
    plan, refusal = _prepare(repo, req)
    if plan is None:
        yield refusal
        return
    if req.deepens:  # unlike v2, a v0 client that only lists its shallow commits expects no section
        yield v0_shallow_section(plan.new_shallow, plan.unshallow)
    neg = _negotiate(repo, req)
    acks, send_pack = v0_acks(req, neg)
    yield acks
    if not send_pack:
        return
    if req.has("side-band-64k"):
        limit: int | None = MAX_SIDEBAND_DATA
    elif req.has("side-band"):
        limit = MAX_SIDEBAND_SMALL
    else:
        limit = None
    yield from _guarded(_pack_stream(repo, req, plan, neg.common, limit), limit)
    if limit is not None:
        yield FLUSH_PKT


def upload_pack_v2(repo: Repository, body: bytes) -> Iterator[bytes]:
    """Answer one protocol v2 command (``ls-refs`` or ``fetch``)."""
    cmd = parse_v2_command(body)
    if cmd is None:
        return
    check_command(cmd, V2_COMMANDS)
    if cmd.name == "ls-refs":
        yield ls_refs(repo, cmd)
    elif cmd.name == "object-info":
        yield object_info(repo, cmd)
    else:
        yield from fetch_v2(repo, cmd)


def object_info(repo: Repository, cmd: V2Command) -> bytes:
    req = parse_v2_object_info(cmd)
    sizes: list[int | None] = []
    for oid in req.oids:
        try:
            sizes.append(repo.objects.size_of(oid))
        except ObjectNotFound:
            sizes.append(None)
    return object_info_response(req, sizes)


def ls_refs(repo: Repository, cmd: V2Command) -> bytes:
    req = parse_v2_ls_refs(cmd)
    entries: list[LsRefsEntry] = []
    if ref_matches("HEAD", req.prefixes):
        target = repo.head_target
        head = repo.refs.get("HEAD")
        if head is not None:
            entries.append(LsRefsEntry("HEAD", head, target if req.symrefs else None))
        elif req.unborn and req.symrefs and target:
            entries.append(LsRefsEntry("HEAD", None, target if req.symrefs else None))
    peeled = peeled_tags(repo) if req.peel else {}
    for name, oid in repo.refs.items():
        if ref_matches(name, req.prefixes):
            entries.append(LsRefsEntry(name, oid, None, peeled.get(name)))
    return ls_refs_response(entries)


def fetch_v2(repo: Repository, cmd: V2Command) -> Iterator[bytes]:
    req = parse_v2_fetch(cmd)
    plan, refusal = _prepare(repo, req)
    if plan is None:
        yield refusal
        return
    neg = _negotiate(repo, req)
    acks, send_pack = v2_acknowledgments(req, neg)
    if acks:
        yield acks
    if not send_pack:
        return
    if plan.sends_shallow_info:
        yield v2_shallow_info(plan.new_shallow, plan.unshallow)
    yield packfile_header()
    yield from _guarded(_pack_stream(repo, req, plan, neg.common, MAX_SIDEBAND_DATA), MAX_SIDEBAND_DATA)
    yield FLUSH_PKT
