"""Where repositories live: objects kept compressed in memory, refs with compare-and-swap.

Each storage role has one small interface (:mod:`storage.interfaces`); the in-memory stores are the
working set and a durable backend plugs in beneath them.
"""

from storage.errors import (
    InvalidRefName,
    ObjectNotFound,
    RefConflict,
    RefDirectoryConflict,
    RefError,
    StaleRef,
    StorageError,
)
from storage.interfaces import ANY, ZERO_OID, Backend, ObjectStore, ReflogEntry, RefStore, RefUpdate
from storage.objects import MemoryObjectStore
from storage.refs import MemoryRefStore

__all__ = [
    "ANY",
    "ZERO_OID",
    "Backend",
    "InvalidRefName",
    "MemoryObjectStore",
    "MemoryRefStore",
    "ObjectNotFound",
    "ObjectStore",
    "RefConflict",
    "RefDirectoryConflict",
    "RefError",
    "RefStore",
    "RefUpdate",
    "ReflogEntry",
    "StaleRef",
    "StorageError",
]
