"""Partial-clone object filters (``git clone --filter=...``), as git's list-objects-filter defines
them: ``blob:none``, ``blob:limit=<n>[kmg]``, ``tree:<depth>``, ``object:type=<type>`` and
``combine:<f>+<f>...`` (each sub-filter URL-encoded). Objects the client names in a ``want`` are
always sent; filters only prune what the walk reaches.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from storage.packs import OBJ_BLOB, OBJ_TREE, TYPE_NUMS

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


class FilterSpecError(ValueError):
    """A filter the server does not understand; git reports it as ``invalid filter-spec``."""


@dataclass(frozen=True, slots=True)
class ObjectFilter:
    """One filter, or (``parts``) the conjunction of several."""

    blob_limit: int | None = None  # omit blobs of at least this size (0: every blob)
    tree_depth: int | None = None  # omit trees and blobs at or below this depth
    only_type: int | None = None
    parts: tuple[ObjectFilter, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> ObjectFilter:
        spec = spec.strip()
        if spec == "blob:none":
            return cls(blob_limit=0)
        if spec.startswith("blob:limit="):
            text = spec[len("blob:limit="):].lower()
            unit = text[-1] if text and text[-1] in "kmg" else ""
            number = text[: len(text) - len(unit)]
            if not number.isdigit():
                raise FilterSpecError(f"invalid filter-spec '{spec}'")
            return cls(blob_limit=int(number) * _UNITS[unit])
        if spec.startswith("tree:"):
            depth = spec[5:]
            if not depth.isdigit():
                raise FilterSpecError(f"invalid filter-spec '{spec}'")
            return cls(tree_depth=int(depth))
        if spec.startswith("object:type="):
            name = spec[len("object:type="):].encode()
            if name not in TYPE_NUMS:
                raise FilterSpecError(f"invalid filter-spec '{spec}'")
            return cls(only_type=TYPE_NUMS[name])
        if spec.startswith("combine:"):
            subs = spec[len("combine:"):].split("+")
            if not all(subs):
                raise FilterSpecError(f"invalid filter-spec '{spec}'")
            return cls(parts=tuple(cls.parse(unquote(s)) for s in subs))
        raise FilterSpecError(f"invalid filter-spec '{spec}'")

    @property
    def needs_sizes(self) -> bool:
        return self.blob_limit not in (None, 0) or any(p.needs_sizes for p in self.parts)

    def include(self, type_num: int, depth: int, size: int) -> bool:
        """Does an object reached by the walk go into the pack?

        ``depth`` counts from a commit's root tree (0); ``size`` is only consulted for blobs by
        ``blob:limit`` filters.
        """
        if self.parts:
            return all(p.include(type_num, depth, size) for p in self.parts)
        if self.blob_limit is not None and type_num == OBJ_BLOB and size >= self.blob_limit:
            return False
        if self.tree_depth is not None and type_num in (OBJ_TREE, OBJ_BLOB) and depth >= self.tree_depth:
            return False
        return self.only_type is None or type_num == self.only_type

    def descend(self, depth: int) -> bool:
        """Is it worth walking into a tree at ``depth`` (can anything below be included)?"""
        if self.parts:
            return all(p.descend(depth) for p in self.parts)
        if self.tree_depth is not None and depth + 1 >= self.tree_depth:
            return False
        return not (self.only_type is not None and self.only_type not in (OBJ_TREE, OBJ_BLOB))
