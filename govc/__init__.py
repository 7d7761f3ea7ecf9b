"""govc: a memory-first Git server and library.

Repositories live in memory in genuine Git format and are served over Git's smart HTTP protocol.

    import govc
    repo = govc.Repository()
    with repo.transaction("main", author="ops <ops@example.com>") as tx:
        tx.write("app.conf", "workers = 4\n")
        tx.commit("First config")
"""

from govc.embedded import Server
from govc.follow import FollowConflict, Follower, FollowError, PublishConflict, PublishResult
from govc.reality import Reality
from govc.registry import Registry
from govc.repository import MergeOutcome, RefChange, RefEvent, Repository
from govc.timetravel import Snapshot
from govc.transaction import Transaction
from govc.trees import Commit, FileChange
from govc.validation import Change, ConflictError, ValidationError
from govc.watch import Event, Watcher

__all__ = [
    "Change",
    "Commit",
    "ConflictError",
    "Event",
    "FileChange",
    "FollowConflict",
    "FollowError",
    "Follower",
    "MergeOutcome",
    "PublishConflict",
    "PublishResult",
    "Reality",
    "RefChange",
    "RefEvent",
    "Registry",
    "Repository",
    "Server",
    "Snapshot",
    "Transaction",
    "ValidationError",
    "Watcher",
]
__version__ = "0.1.0"
