"""govc: a memory-first Git server and library.

Repositories live in memory in genuine Git format and are served over Git's smart HTTP protocol.
"""

from govc.registry import Registry
from govc.repository import RefChange, RefEvent, Repository

__all__ = ["RefChange", "RefEvent", "Registry", "Repository"]
__version__ = "0.1.0"
