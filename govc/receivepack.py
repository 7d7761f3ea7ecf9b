"""Serving pushes in Git's order: quarantine, checks, then visibility, then compare-and-swap.

The received pack is indexed into a quarantine that the repository cannot see; only when the pack
is sound and every new ref value is connected does it join the object store, and only then do the
refs move. A rejected push leaves neither objects nor refs behind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from govc.hooks import hook_paths, object_directory, run_hook
from govc.protection import check, installed_validators
from govc.repository import Repository
from govc.validation import Change, ValidationError, run_validators
from protocol.pktline import FLUSH_PKT
from protocol.receive import Declined, PushRequest, RefCommand, RefResult, report_status
from protocol.sideband import BAND_DATA, BAND_PROGRESS, MAX_SIDEBAND_DATA, sideband
from storage.errors import CorruptObject, ObjectNotFound, RefError, StorageError
from storage.fsck import FsckError, GitmodulesTracker
from storage.graph import LinkCollector
from storage.interfaces import RefUpdate
from storage.objects import QuarantineView
from storage.packs import OBJ_COMMIT, OBJ_TREE, PackFormatError, StoredPack
from storage.refnames import is_valid_ref_name
from storage.treeparse import canonical_entries

log = logging.getLogger("govc.receive")


@dataclass(slots=True)
class PushOutcome:
    unpack_error: str | None
    results: list[tuple[str, RefResult | Declined]]
    messages: list[str] = field(default_factory=list)  # band-2 lines, e.g. "error: ..."


def _unpack(repo: Repository, pack_data: bytes, collected: LinkCollector) -> StoredPack:
    """Index the pack into quarantine, fsck-ing and collecting links of every object on the way
    (the one moment each object is inflated anyway)."""
    fsck = GitmodulesTracker()

    def visit(oid: bytes, type_num: int, content: bytes) -> None:
        # A tree is parsed once for both fsck and the connectivity check.
        entries = canonical_entries(content) if type_num == OBJ_TREE else None
        fsck.check(oid, type_num, content, entries)
        collected(oid, type_num, content, entries)

    pack = repo.objects.index_pack(pack_data, visit)
    view = QuarantineView(repo.objects, pack)

    def lookup(oid: bytes) -> tuple[int, bytes] | None:
        try:
            return view.get(oid)
        except ObjectNotFound:
            return None

    fsck.finish(lookup)
    return pack


def _check_command(
    repo: Repository, pack: StoredPack | None, collected: LinkCollector, cmd: RefCommand,
    connected: bool,
) -> RefResult:
    """Git's per-command checks; ``connected`` says one walk already proved every tip complete."""
    # receive-pack's rule: under refs/, and at least two levels below it.
    if not is_valid_ref_name(cmd.name) or cmd.name.count("/") < 2:
        return RefResult.FUNNY_REFNAME
    if cmd.is_delete:
        if repo.head_target == cmd.name and repo.refs.get(cmd.name) is not None:
            return RefResult.DELETE_CURRENT
        return RefResult.OK
    if not connected and collected.first_missing([cmd.new], repo.objects) is not None:
        return RefResult.MISSING_OBJECTS
    try:
        pos = pack.by_oid.get(cmd.new) if pack is not None else None
        type_num = pack.types[pos] if pack is not None and pos is not None else repo.objects.type_of(cmd.new)
    except ObjectNotFound:
        return RefResult.MISSING_OBJECTS
    if cmd.name.startswith("refs/heads/") and type_num != OBJ_COMMIT:
        return RefResult.LOCK_FAILED  # git's ref backend refuses non-commits on branches this way
    return RefResult.OK


def _to_update(cmd: RefCommand) -> RefUpdate:
    return RefUpdate(cmd.name, None if cmd.is_delete else cmd.new, None if cmd.is_create else cmd.old)


def receive(repo: Repository, req: PushRequest, pack_data: bytes, who: str, *, source: str = "push",
            message: str = "push") -> PushOutcome:
    """Run one push through quarantine, checks and the ref transaction. ``source``/``message`` name
    what the events and reflog record (a fetch from another server takes this path too)."""
    messages: list[str] = []
    pack: StoredPack | None = None
    unpack_error: str | None = None
    collected = LinkCollector(repo.graph)
    if req.expects_pack or pack_data:
        try:
            pack = _unpack(repo, pack_data, collected)
        except FsckError as e:
            # As git with receive.fsckObjects: the object's fault on band 2, then a failed unpack.
            unpack_error = "index-pack abnormal exit"
            messages += [f"error: {e}", "fatal: fsck error in packed object"]
        except (PackFormatError, CorruptObject) as e:
            unpack_error = "index-pack abnormal exit"
            messages.append(f"fatal: {e}")
    if unpack_error is not None:
        return PushOutcome(unpack_error, _named(req, [RefResult.UNPACKER_ERROR] * len(req.commands)),
                           messages)

    tips = [c.new for c in req.commands if not c.is_delete]
    connected = collected.first_missing(tips, repo.objects) is None
    if connected and pack is not None and collected.covers_all and len(pack) == len(collected.kinds):
        pack.closure = frozenset(tips)  # the pack is exactly what its tips reach: clones reuse it
    results: list[RefResult | Declined] = []
    for cmd in req.commands:
        result = _check_command(repo, pack, collected, cmd, connected)
        results.append(result)
        if result is RefResult.MISSING_OBJECTS:
            messages.append(f"error: missing necessary objects for {cmd.name}")
    _protect(repo, req, collected, results, messages, who)
    _validate(repo, req, pack, results, messages, source)
    _run_pre_hooks(repo, req, pack, results, messages)
    atomic = req.has("atomic")
    if atomic and any(r is not RefResult.OK for r in results):
        # As git: the first command that fails keeps its reason, every other one is refused
        # with "atomic push failure".
        first = next(i for i, r in enumerate(results) if r is not RefResult.OK)
        results = [r if i == first else RefResult.ATOMIC_FAILURE for i, r in enumerate(results)]
        return PushOutcome(None, _named(req, results), messages)

    todo = [i for i, r in enumerate(results) if r is RefResult.OK]
    if pack is not None and todo and len(pack):
        try:
            repo.add_pack(pack)
        except StorageError as e:  # disk full, permissions: nothing became visible
            log.error("push to %s: %s", repo.name, e)
            return PushOutcome("unable to store objects", _named(req, [RefResult.UNPACKER_ERROR] * len(
                req.commands)), [*messages, f"error: {e}"])
        repo.graph.adopt(collected)

    was_empty = repo.is_empty()
    options = tuple(req.push_options)
    batches = [todo] if atomic else [[i] for i in todo]
    for batch in batches:
        if not batch:
            continue
        try:
            repo.update_refs(
                [_to_update(req.commands[i]) for i in batch], who=who, message=message,
                source=source, push_options=options,
            )
        except (RefError, StorageError) as e:  # a stale value, or the durable write failed
            messages.append(f"error: {e}")
            failed = RefResult.ATOMIC_TRANSACTION_FAILED if atomic else RefResult.LOCK_FAILED
            for i in batch:
                results[i] = failed
    applied = [c for c, r in zip(req.commands, results, strict=True) if r is RefResult.OK]
    if was_empty:
        _choose_head(repo, applied)
    if applied:
        for hook in hook_paths(repo.hooks_dir, repo.name, "post-receive"):
            outcome = run_hook(hook, [], _hook_stdin(applied), repo_dir=repo.repo_dir, object_dir=None,
                               push_options=req.push_options)
            messages += outcome.output  # never changes the push's status, as in git
    return PushOutcome(None, _named(req, results), messages)


def _hook_stdin(commands: list[RefCommand]) -> bytes:
    return b"".join(f"{c.old.decode()} {c.new.decode()} {c.name}\n".encode() for c in commands)


def _run_pre_hooks(
    repo: Repository, req: PushRequest, pack: StoredPack | None, results: list[RefResult | Declined],
    messages: list[str],
) -> None:
    """git's pre-receive (all or nothing) and update (per ref) hook executables, run against the
    quarantined objects, after git's own checks and the validators."""
    pre = hook_paths(repo.hooks_dir, repo.name, "pre-receive")
    update = hook_paths(repo.hooks_dir, repo.name, "update")
    pending = [i for i, r in enumerate(results) if r is RefResult.OK]
    if not pending or not (pre or update):
        return
    alternates = repo.repo_dir / "objects" if repo.repo_dir is not None else None
    with object_directory(pack, alternates) as objects:
        for hook in pre:
            outcome = run_hook(hook, [], _hook_stdin([req.commands[i] for i in pending]),
                               repo_dir=repo.repo_dir, object_dir=objects, push_options=req.push_options)
            messages += outcome.output
            if not outcome.ok:
                for i in pending:
                    results[i] = RefResult.HOOK_DECLINED
                return
        for i in pending:
            cmd = req.commands[i]
            for hook in update:
                outcome = run_hook(hook, [cmd.name, cmd.old.decode(), cmd.new.decode()], b"",
                                   repo_dir=repo.repo_dir, object_dir=objects, push_options=req.push_options)
                messages += outcome.output
                if not outcome.ok:
                    results[i] = RefResult.UPDATE_HOOK_DECLINED
                    break


def _contains(repo: Repository, collected: LinkCollector, tip: bytes, old: bytes) -> bool:
    """Is ``old`` reachable from ``tip``, looking through the received commits too?"""
    seen: set[bytes] = set()
    stack = [tip]
    while stack:
        oid = stack.pop()
        if oid == old:
            return True
        if oid in seen:
            continue
        seen.add(oid)
        info = collected.commits.get(oid)
        if info is None:
            try:
                info = repo.graph.commit(oid)
            except (ObjectNotFound, CorruptObject):
                continue
        stack.extend(info.parents)
    return False


def _protect(
    repo: Repository, req: PushRequest, collected: LinkCollector, results: list[RefResult | Declined],
    messages: list[str], who: str,
) -> None:
    """Protected branches and namespaces (govc.protection): no force-push, no delete, writers."""
    try:
        rules = repo.protection_rules()
    except StorageError as e:  # the rules live in a database that is away: refuse, never guess
        reason = f"cannot read the protected-ref rules: {e}"
        for i, result in enumerate(results):
            if result is RefResult.OK:
                results[i] = Declined(reason)
        messages.append(f"error: {reason}")
        return
    if not rules:
        return
    installed = installed_validators(repo)
    for i, cmd in enumerate(req.commands):
        if results[i] is not RefResult.OK:
            continue
        fast_forward = cmd.is_create or cmd.is_delete or _contains(repo, collected, cmd.new, cmd.old)
        reason = check(rules, cmd.name, who=who, deleting=cmd.is_delete, fast_forward=fast_forward,
                       installed=installed)
        if reason is not None:
            results[i] = Declined(reason)
            messages.append(f"error: {reason}")


def _validate(
    repo: Repository, req: PushRequest, pack: StoredPack | None, results: list[RefResult | Declined],
    messages: list[str], source: str = "push",
) -> None:
    """Run the repository's validators on each ref that passed git's checks, against the
    quarantine (git's ``update`` hook): a refusal becomes that ref's reason and ``remote:`` text."""
    if not repo.validators:
        return
    view = QuarantineView(repo.objects, pack) if pack is not None else repo.objects
    reader = repo.trees_for(view)
    for i, cmd in enumerate(req.commands):
        if results[i] is not RefResult.OK:
            continue
        change = Change(cmd.name, None if cmd.is_create else cmd.old, None if cmd.is_delete else cmd.new,
                        source, view, reader)
        try:
            run_validators(repo.validators, change)
        except ValidationError as e:
            results[i] = Declined(str(e))
            messages.append(f"error: {cmd.name}: {e}")


def _named(req: PushRequest, results: list[RefResult | Declined]) -> list[tuple[str, RefResult | Declined]]:
    return [(c.name, r) for c, r in zip(req.commands, results, strict=True)]


def _choose_head(repo: Repository, applied: list[RefCommand]) -> None:
    """A repository born from a push points HEAD at main, else at the first branch pushed."""
    target = repo.head_target
    if target and repo.refs.get(target) is not None:
        return
    branches = [c.name for c in applied if c.name.startswith("refs/heads/") and not c.is_delete]
    if branches and "refs/heads/main" not in branches:
        repo.set_head(branches[0])


def encode_outcome(req: PushRequest, outcome: PushOutcome) -> Iterator[bytes]:
    """The response body: band-2 messages first, then the status report (in band 1 if
    side-band was asked for), as git's receive-pack orders them."""
    report = report_status(outcome.unpack_error, outcome.results)
    wants_report = req.has("report-status") or req.has("report-status-v2")
    if req.has("side-band-64k"):
        for msg in outcome.messages:
            yield sideband(BAND_PROGRESS, (msg + "\n").encode("utf-8", "surrogateescape"),
                           MAX_SIDEBAND_DATA)
        if wants_report:
            yield sideband(BAND_DATA, report, MAX_SIDEBAND_DATA)
        yield FLUSH_PKT
    elif wants_report:
        yield report
