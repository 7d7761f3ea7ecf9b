"""Git's fsck rules for received objects, as ``receive.fsckObjects=true`` applies them.

With that setting git runs ``index-pack --strict`` (or ``unpack-objects --strict`` for small pushes)
on every pushed object. "Strict" turns each check git rates *warn* into an error, so a push is
refused for every fatal, error or warn finding; *info* and *ignore* findings are only printed. This
module reimplements those checks from git's ``fsck.c``, ``Documentation/fsck-msgids.txt`` and the
helpers they use (``verify_headers``, ``fsck_ident``, ``decode_tree_entry``, ``is_hfs_dotgit``,
``is_ntfs_dotgit``, the config-file parser for ``.gitmodules``), and is checked against the real git
by ``tests/storage/test_fsck.py``.

The reference is git 2.39.5 on x86-64 (the version the rest of govc is tested against). Where git
quirks decide whether a push is accepted, the quirk is kept, because the goal is to accept and
refuse exactly what git does:

* dates are read with ``strtoumax`` (leading blanks, ``+`` and ``-`` accepted, ``-1`` overflows);
* a tag whose tagger line is bad but which has another header after it is accepted (git resets its
  error when it looks at the extra header, which it ignores);
* a ``.gitmodules`` blob is parsed the way git parses config held in memory, where bytes are signed
  chars: a UTF-8 byte-order mark is a parse error and a ``0xff`` byte reads as end of file;
* an empty name in a tree is ``badTree`` (git's tree reader refuses it before ``emptyName``);
* ``badFilemode`` is info: odd modes such as ``100664`` never refuse a push.

Besides fsck proper, git parses commits and tags before checking them; the only parse failure that
fsck itself would pass is a tag object shorter than 64 bytes, reported here as ``badTagObject``
(git says ``fatal: invalid tag``).

Checks that need another object (a ``.gitmodules`` or ``.gitattributes`` blob named by a tree) live
in :class:`GitmodulesTracker`. Checks on links between objects (a commit's tree being a tree, a
tag's ``type`` line matching its target's type, a tree entry's mode matching its object) belong to
the connectivity check: git refuses those too, but not in fsck.

:class:`FsckError` is a :class:`~storage.errors.CorruptObject`, so code that refuses a pack with
undecodable objects refuses one with objects git would not accept the same way.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import re
from collections.abc import Callable

from storage.errors import CorruptObject
from storage.packs import OBJ_BLOB, OBJ_COMMIT, OBJ_TAG, OBJ_TREE
from storage.treeparse import CanonicalEntries, canonical_entries

FATAL, ERROR, WARN, INFO, IGNORE = "fatal", "error", "warn", "info", "ignore"

#: Every message id git 2.39.5 knows, with its default severity (``git help --config``).
SEVERITY: dict[str, str] = {
    "nulInHeader": FATAL,
    "unterminatedHeader": FATAL,
    "badDate": ERROR,
    "badDateOverflow": ERROR,
    "badEmail": ERROR,
    "badName": ERROR,
    "badObjectSha1": ERROR,
    "badParentSha1": ERROR,
    "badTimezone": ERROR,
    "badTree": ERROR,
    "badTreeSha1": ERROR,
    "badType": ERROR,
    "duplicateEntries": ERROR,
    "missingAuthor": ERROR,
    "missingCommitter": ERROR,
    "missingEmail": ERROR,
    "missingNameBeforeEmail": ERROR,
    "missingObject": ERROR,
    "missingSpaceBeforeDate": ERROR,
    "missingSpaceBeforeEmail": ERROR,
    "missingTag": ERROR,
    "missingTagEntry": ERROR,
    "missingTree": ERROR,
    "missingType": ERROR,
    "missingTypeEntry": ERROR,
    "multipleAuthors": ERROR,
    "treeNotSorted": ERROR,
    "unknownType": ERROR,
    "zeroPaddedDate": ERROR,
    "gitmodulesMissing": ERROR,
    "gitmodulesBlob": ERROR,
    "gitmodulesLarge": ERROR,
    "gitmodulesName": ERROR,
    "gitmodulesSymlink": ERROR,
    "gitmodulesUrl": ERROR,
    "gitmodulesPath": ERROR,
    "gitmodulesUpdate": ERROR,
    "gitattributesMissing": ERROR,
    "gitattributesLarge": ERROR,
    "gitattributesLineLength": ERROR,
    "gitattributesBlob": ERROR,
    "emptyName": WARN,
    "fullPathname": WARN,
    "hasDot": WARN,
    "hasDotdot": WARN,
    "hasDotgit": WARN,
    "nullSha1": WARN,
    "zeroPaddedFilemode": WARN,
    "nulInCommit": WARN,
    "badFilemode": INFO,
    "gitmodulesParse": INFO,
    "gitattributesSymlink": INFO,
    "gitignoreSymlink": INFO,
    "mailmapSymlink": INFO,
    "badTagName": INFO,
    "missingTaggerEntry": INFO,
    "extraHeaderEntry": IGNORE,
}

#: The ids that make git refuse a push under ``receive.fsckObjects`` (strict: warn counts).
RECEIVE_REJECTS: frozenset[str] = frozenset(k for k, v in SEVERITY.items() if v in (FATAL, ERROR, WARN))

#: Not a git fsck id: git refuses these while parsing, before fsck runs ("fatal: invalid tag").
PARSE_REJECTS: frozenset[str] = frozenset({"badTagObject"})

_HEX = frozenset(b"0123456789abcdefABCDEF")
_NULL_OID = bytes(20)
_S_IFMT, _S_IFDIR, _S_IFLNK = 0o170000, 0o040000, 0o120000
_GITMODULES_LARGE = 512 * 1024 * 1024  # core.bigFileThreshold: index-pack streams bigger blobs
_ATTR_MAX_FILE_SIZE = 100 * 1024 * 1024
_ATTR_MAX_LINE_LENGTH = 2048
_ATTR_LONG_LINE = re.compile(rb"[^\n]{%d}" % _ATTR_MAX_LINE_LENGTH)


class FsckError(CorruptObject):
    """A received object git would refuse; ``str()`` is git's own wording.

    ``msg_id`` is git's camelCase id (``hasDotgit``), ``oid`` the hex id of the object at fault
    (for ``.gitmodules`` content, the blob), ``message`` the text after the id.
    """

    def __init__(self, msg_id: str, oid: bytes, message: str) -> None:
        self.msg_id = msg_id
        self.oid = oid
        self.message = message
        super().__init__(f"object {oid.decode(errors='replace')}: {msg_id}: {message}")


class _Findings:
    """Collects findings in git's report order; only those that would refuse the push count."""

    __slots__ = ("errors", "oid")

    def __init__(self, oid: bytes) -> None:
        self.oid = oid
        self.errors: list[FsckError] = []

    def report(self, msg_id: str, message: str) -> bool:
        """Git's ``report()``: true when the finding is an error (the caller then stops, as git does)."""
        if msg_id not in RECEIVE_REJECTS and msg_id not in PARSE_REJECTS:
            return False
        self.errors.append(FsckError(msg_id, self.oid, message))
        return True

    def raise_first(self) -> None:
        if self.errors:
            raise self.errors[0]


def check_object(oid: bytes, type_num: int, content: bytes) -> None:
    """Raise :class:`FsckError` if git's receive-time fsck would refuse this object.

    ``oid`` is the object's hex id, ``content`` its inflated body (no ``"<type> <size>\\0"``
    header). Blobs pass here; their ``.gitmodules``/``.gitattributes`` rules need the tree that names
    them, see :class:`GitmodulesTracker`.
    """
    found = _Findings(oid)
    if type_num == OBJ_COMMIT:
        _fsck_commit(bytes(content), found)
    elif type_num == OBJ_TREE:
        _fsck_tree(bytes(content), found, None)
    elif type_num == OBJ_TAG:
        _fsck_tag(bytes(content), found)
    elif type_num != OBJ_BLOB:
        found.report("unknownType", f"unknown type '{type_num}' (internal fsck error)")
    found.raise_first()


# --------------------------------------------------------------------------------------------
# commits and tags


def _tolower(c: int) -> int:
    """ASCII-only, like git's sane ctype (bytes above 0x7f are never letters)."""
    return c | 0x20 if 0x41 <= c <= 0x5A else c


def _at(buf: bytes, i: int) -> int:
    """``buf[i]``, or 0 past the end: git's object buffers carry a NUL after their last byte."""
    return buf[i] if i < len(buf) else 0


def _verify_headers(buf: bytes, found: _Findings) -> bool:
    """Headers end at the first blank line, hold no NUL, and the last one ends with a newline.

    Git stops parsing an object that fails this: the rest of its checks rely on it.
    """
    end = buf.find(b"\n\n")
    header = buf if end < 0 else buf[:end]
    nul = header.find(b"\0")
    if nul >= 0:
        return found.report("nulInHeader", f"unterminated header: NUL at offset {nul}")
    if end >= 0 or buf.endswith(b"\n"):
        return False
    return found.report("unterminatedHeader", "unterminated header")


def _oid_line(buf: bytes, pos: int) -> bool:
    """40 hex digits (either case, as ``parse_oid_hex``) then a newline at ``pos``."""
    return len(buf) >= pos + 41 and _HEX.issuperset(buf[pos : pos + 40]) and buf[pos + 40] == 0x0A


def _strtoumax(buf: bytes, p: int) -> tuple[int, int]:
    """C's ``strtoumax(buf + p, &end, 10)``: (value, end). Git reads ident dates with it."""
    i = p
    while _at(buf, i) in b" \t\n\v\f\r":
        i += 1
    negative = False
    if _at(buf, i) in (0x2B, 0x2D):
        negative = _at(buf, i) == 0x2D
        i += 1
    start = i
    while 0x30 <= _at(buf, i) <= 0x39:
        i += 1
    if i == start:
        return 0, p
    value = int(buf[start:i])
    if value > 2**64 - 1:
        return 2**64 - 1, i
    return ((-value) % 2**64 if negative else value), i


_IDENT_STOP = re.compile(rb"[\0<>\n]")


def _fsck_ident(buf: bytes, p: int, found: _Findings) -> tuple[int, bool]:
    """Check the "Name <email> date zone" at ``p``; returns (start of the next line, error)."""
    eol = buf.find(b"\n", p)
    next_line = len(buf) if eol < 0 else eol + 1

    def scan(i: int) -> int:  # strcspn(buf + i, "<>\n"), stopping at NUL too
        m = _IDENT_STOP.search(buf, i)
        return len(buf) if m is None else m.start()

    if _at(buf, p) == 0x3C:
        return next_line, found.report("missingNameBeforeEmail",
                                       "invalid author/committer line - missing space before email")
    p = scan(p)
    if _at(buf, p) == 0x3E:
        return next_line, found.report("badName", "invalid author/committer line - bad name")
    if _at(buf, p) != 0x3C:
        return next_line, found.report("missingEmail", "invalid author/committer line - missing email")
    if buf[p - 1] != 0x20:
        return next_line, found.report("missingSpaceBeforeEmail",
                                       "invalid author/committer line - missing space before email")
    p = scan(p + 1)
    if _at(buf, p) != 0x3E:
        return next_line, found.report("badEmail", "invalid author/committer line - bad email")
    p += 1
    if _at(buf, p) != 0x20:
        return next_line, found.report("missingSpaceBeforeDate",
                                       "invalid author/committer line - missing space before date")
    p += 1
    if _at(buf, p) == 0x30 and _at(buf, p + 1) != 0x20:
        return next_line, found.report("zeroPaddedDate", "invalid author/committer line - zero-padded date")
    value, end = _strtoumax(buf, p)
    if value >= 2**63:  # date_overflows(): must fit a signed 64-bit time_t
        return next_line, found.report("badDateOverflow",
                                       "invalid author/committer line - date causes integer overflow")
    if end == p or _at(buf, end) != 0x20:
        return next_line, found.report("badDate", "invalid author/committer line - bad date")
    p = end + 1
    zone = buf[p : p + 6]
    if len(zone) != 6 or zone[0] not in b"+-" or not zone[1:5].isdigit() or zone[5] != 0x0A:
        return next_line, found.report("badTimezone", "invalid author/committer line - bad time zone")
    return next_line, False


def _fsck_commit(buf: bytes, found: _Findings) -> None:
    if _verify_headers(buf, found):
        return
    if not buf.startswith(b"tree "):
        found.report("missingTree", "invalid format - expected 'tree' line")
        return
    if not _oid_line(buf, 5):
        found.report("badTreeSha1", "invalid 'tree' line format - bad sha1")
        return
    pos = 46
    while buf.startswith(b"parent ", pos):
        if not _oid_line(buf, pos + 7):
            found.report("badParentSha1", "invalid 'parent' line format - bad sha1")
            return
        pos += 48
    authors = 0
    while buf.startswith(b"author ", pos):
        authors += 1
        pos, err = _fsck_ident(buf, pos + 7, found)
        if err:
            return
    if authors < 1:
        found.report("missingAuthor", "invalid format - expected 'author' line")
        return
    if authors > 1:
        found.report("multipleAuthors", "invalid format - multiple 'author' lines")
        return
    if not buf.startswith(b"committer ", pos):
        found.report("missingCommitter", "invalid format - expected 'committer' line")
        return
    _, err = _fsck_ident(buf, pos + 10, found)
    if err:
        return
    if b"\0" in buf:
        found.report("nulInCommit", "NUL byte in the commit object body")


_TAG_TYPES = frozenset({b"commit", b"tree", b"blob", b"tag"})


def _fsck_tag(buf: bytes, found: _Findings) -> None:
    if _verify_headers(buf, found):
        return
    if not buf.startswith(b"object "):
        found.report("missingObject", "invalid format - expected 'object' line")
        return
    if not _oid_line(buf, 7):
        found.report("badObjectSha1", "invalid 'object' line format - bad sha1")
        return
    pos = 48
    if not buf.startswith(b"type ", pos):
        found.report("missingTypeEntry", "invalid format - expected 'type' line")
        return
    eol = buf.find(b"\n", pos + 5)
    if eol < 0:
        found.report("missingType", "invalid format - unexpected end after 'type' line")
        return
    if buf[pos + 5 : eol] not in _TAG_TYPES:
        found.report("badType", "invalid 'type' value")
        return
    pos = eol + 1
    if not buf.startswith(b"tag ", pos):
        found.report("missingTagEntry", "invalid format - expected 'tag' line")
        return
    eol = buf.find(b"\n", pos + 4)
    if eol < 0:
        found.report("missingTag", "invalid format - unexpected end after 'type' line")
        return
    # badTagName (info) is not checked: it never refuses a push.
    pos = eol + 1
    err = False
    if buf.startswith(b"tagger ", pos):
        pos, err = _fsck_ident(buf, pos + 7, found)
    # missingTaggerEntry is info. An extra header after the tagger line is reported at "ignore"
    # level, and git then overwrites its error status with that report's 0: keep the quirk.
    if pos < len(buf) and buf[pos] not in (0, 0x0A):
        found.errors.clear()
        err = False
    if err:
        return
    if len(buf) < 64:  # parse_tag_buffer() refuses any tag shorter than hex id + 24
        found.report("badTagObject", "invalid tag")


# --------------------------------------------------------------------------------------------
# names git refuses in trees: is_hfs_dot*, is_ntfs_dot*


def _utf8_char(name: bytes, i: int) -> tuple[int, int]:
    """(code point, next index) like git's ``pick_one_utf8_char``; (-1, i) for invalid UTF-8."""
    s0 = _at(name, i)
    if s0 < 0x80:
        return s0, i + 1
    s1, s2, s3 = _at(name, i + 1), _at(name, i + 2), _at(name, i + 3)
    if (s0 & 0xE0) == 0xC0:
        if (s1 & 0xC0) != 0x80 or (s0 & 0xFE) == 0xC0:
            return -1, i
        return ((s0 & 0x1F) << 6) | (s1 & 0x3F), i + 2
    if (s0 & 0xF0) == 0xE0:
        if ((s1 & 0xC0) != 0x80 or (s2 & 0xC0) != 0x80
                or (s0 == 0xE0 and (s1 & 0xE0) == 0x80)
                or (s0 == 0xED and (s1 & 0xE0) == 0xA0)
                or (s0 == 0xEF and s1 == 0xBF and (s2 & 0xFE) == 0xBE)):
            return -1, i
        return ((s0 & 0x0F) << 12) | ((s1 & 0x3F) << 6) | (s2 & 0x3F), i + 3
    if (s0 & 0xF8) == 0xF0:
        if ((s1 & 0xC0) != 0x80 or (s2 & 0xC0) != 0x80 or (s3 & 0xC0) != 0x80
                or (s0 == 0xF0 and (s1 & 0xF0) == 0x80)
                or (s0 == 0xF4 and s1 > 0x8F) or s0 > 0xF4):
            return -1, i
        return (((s0 & 0x07) << 18) | ((s1 & 0x3F) << 12) | ((s2 & 0x3F) << 6) | (s3 & 0x3F)), i + 4
    return -1, i


# Code points HFS+ ignores when comparing names, so ".g\u200cit" opens ".git" on a Mac.
_HFS_IGNORED = frozenset([*range(0x200C, 0x2010), *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF])


def _is_hfs_dot(name: bytes, needle: bytes) -> bool:
    """``name`` is "." + ``needle`` once HFS+ drops ignorable code points and folds ASCII case."""
    i = 0

    def next_char() -> int:
        nonlocal i
        while True:
            c, i = _utf8_char(name, i)
            if c < 0:
                return 0  # invalid UTF-8 reads as the end of the name, as in git
            if c not in _HFS_IGNORED:
                return c

    if next_char() != 0x2E:
        return False
    for want in needle:
        c = next_char()
        if c > 127 or _tolower(c) != want:
            return False
    c = next_char()
    return c == 0 or c == 0x2F


def _ntfs_tail(name: bytes, i: int) -> bool:
    """Only spaces and periods (which NTFS strips) until the end or an alternate stream's ':'."""
    while True:
        c = _at(name, i)
        i += 1
        if c == 0 or c == 0x3A:
            return True
        if c not in (0x20, 0x2E):
            return False


def _is_ntfs_dotgit(name: bytes) -> bool:
    """".git" or its 8.3 short name "git~1", as NTFS would open them (any case, trailing dots)."""
    head = name[:5].lower()
    if head[:4] == b".git":
        i = 4
    elif head == b"git~1":
        i = 5
    else:
        return False
    while True:
        c = _at(name, i)
        i += 1
        if c in (0, 0x5C, 0x2F, 0x3A):
            return True
        if c not in (0x2E, 0x20):
            return False


def _is_ntfs_dot(name: bytes, dotname: bytes, short_prefix: bytes) -> bool:
    """"." + ``dotname``, its short name (first six letters + "~1".."~4"), or NTFS's hashed
    fallback short name (``short_prefix`` + "~<digit>"), ignoring case and trailing dots/spaces."""
    if name[:1] == b"." and name[1 : 1 + len(dotname)].lower() == dotname:
        return _ntfs_tail(name, len(dotname) + 1)
    if name[:6].lower() == dotname[:6] and _at(name, 6) == 0x7E and 0x31 <= _at(name, 7) <= 0x34:
        return _ntfs_tail(name, 8)
    i = 0
    saw_tilde = False
    while i < 8:
        c = _at(name, i)
        if c == 0:
            return False
        if saw_tilde:
            if not 0x30 <= c <= 0x39:
                return False
        elif c == 0x7E:
            i += 1
            if not 0x31 <= _at(name, i) <= 0x39:
                return False
            saw_tilde = True
        elif i >= 6 or c & 0x80 or _tolower(c) != short_prefix[i]:
            return False
        i += 1
    return _ntfs_tail(name, i)


def _is_dotgit(name: bytes) -> bool:
    return _is_hfs_dot(name, b"git") or _is_ntfs_dotgit(name)


def _is_dotgitmodules(name: bytes) -> bool:
    return _is_hfs_dot(name, b"gitmodules") or _is_ntfs_dot(name, b"gitmodules", b"gi7eba")


def _is_dotgitattributes(name: bytes) -> bool:
    return _is_hfs_dot(name, b"gitattributes") or _is_ntfs_dot(name, b"gitattributes", b"gi7d29")


# A name can only alias .git, .gitmodules or .gitattributes if it starts with '.', 'g', '~' (NTFS
# short names) or an HFS+-ignored code point (UTF-8 lead bytes 0xe2 and 0xef).
_SPECIAL_START = frozenset(b".gG~\xe2\xef")


# --------------------------------------------------------------------------------------------
# trees

_TREE_UNORDERED, _TREE_HAS_DUPS = -1, -2


def _less_than_slash(c: int) -> bool:
    return 0 < c < 0x2F


def _verify_ordered(mode1: int, name1: bytes, mode2: int, name2: bytes, candidates: list[bytes]) -> int:
    """Tree order compares names as if directories ended in '/'; also finds a file and a
    directory of the same name that other entries keep apart ("a", "a.c", "a/")."""
    if name1 < name2:
        if not name2.startswith(name1):
            return 0  # they differ before either ends (the common case)
    elif not name1.startswith(name2):
        return _TREE_UNORDERED
    n = min(len(name1), len(name2))
    c1, c2 = _at(name1, n), _at(name2, n)
    if not c1 and not c2:
        return _TREE_HAS_DUPS
    if not c1 and (mode1 & _S_IFMT) == _S_IFDIR:
        c1 = 0x2F
    if not c2 and (mode2 & _S_IFMT) == _S_IFDIR:
        c2 = 0x2F
    if not c1 and _less_than_slash(c2):
        candidates.append(name1)
    elif c2 == 0x2F and _less_than_slash(c1):
        while candidates:
            f_name = candidates.pop()
            if not name2.startswith(f_name):
                continue
            if len(name2) == len(f_name):
                return _TREE_HAS_DUPS
            if _less_than_slash(name2[len(f_name)]):
                candidates.append(f_name)
                break
    return 0 if c1 < c2 else _TREE_UNORDERED


_MODES = {m: int(m, 8) for m in (b"100644", b"100755", b"40000", b"120000", b"160000")}


def _tree_entry(buf: bytes, start: int) -> tuple[int, int, int] | None:
    """Git's ``decode_tree_entry``: (mode, name start, name end) or None when unreadable.

    The caller has checked that the buffer's 21st byte from the end is the NUL every last entry
    has. The mode is kept raw (not canonicalised) and cut to 16 bits, as fsck sees it.
    """
    if len(buf) - start < 23:
        return None  # too-short tree object
    space = buf.find(b" ", start)
    if space < 0:
        return None  # malformed mode in tree entry
    mode = _MODES.get(buf[start:space])
    if mode is None:
        if space <= start or buf[start:space].strip(b"01234567"):
            return None  # malformed mode in tree entry
        mode = int(buf[start:space], 8) & 0xFFFF
    if buf[space + 1] == 0:
        return None  # empty filename in tree entry
    return mode, space + 1, buf.index(b"\0", space + 1)


def _special_names(name: bytes) -> tuple[bool, bool, bool]:
    """(aliases .git, aliases .gitmodules, aliases .gitattributes), as fsck_tree tests them. What
    follows each backslash is tested too for .git and .gitmodules (a separator on Windows)."""
    dotgit = dotgitmodules = dotgitattributes = False
    if name[0] in _SPECIAL_START:
        dotgit = _is_dotgit(name)
        dotgitmodules = _is_dotgitmodules(name)
        dotgitattributes = _is_dotgitattributes(name)
    backslash = name.find(b"\\")
    while backslash >= 0:
        rest = name[backslash + 1 :]
        dotgit = dotgit or _is_ntfs_dotgit(rest)
        dotgitmodules = dotgitmodules or _is_ntfs_dot(rest, b"gitmodules", b"gi7eba")
        backslash = name.find(b"\\", backslash + 1)
    return dotgit, dotgitmodules, dotgitattributes


# Where names that may alias .git, .gitmodules or .gitattributes (see _SPECIAL_START) sort: the
# names starting with each of those bytes. One starting with 'g' or 'G' can only as an NTFS short
# name, which has a '~' ("git~1", "gitmod~1", "gi7eba~1").
_SPECIAL_RANGES = ((b".", b"/"), (b"~", b"\x7f"), (b"\xe2", b"\xe3"), (b"\xef", b"\xf0"))
_SHORT_NAME_RANGES = ((b"G", b"H"), (b"g", b"h"))


def _plainly_fine(buf: bytes, entries: CanonicalEntries | None = None) -> bool:
    """The common case, decided with bulk operations: canonical modes, names without '/',
    sorted, no duplicates, no null ids and no name that could alias a special file. Anything
    else takes the entry-by-entry path that mirrors git and names the problem.

    ``entries`` is the tree as :func:`~storage.treeparse.canonical_entries` parsed it (shared
    with the connectivity check); it is parsed here if not given.
    """
    if _NULL_OID in buf:
        return False
    if entries is None:
        entries = canonical_entries(buf)
        if entries is None:
            return False  # not in canonical form
    names, _modes, _ids, dirs = entries
    n = len(names)
    keys = names
    if dirs:  # git's order: a directory sorts as if its name ended in '/'
        keys = list(names)
        for i in dirs:
            keys[i] += b"/"
    if not all(map(operator.lt, keys, itertools.islice(keys, 1, None))):  # sorted, no equal keys
        return False
    bisect_left = bisect.bisect_left
    for i in dirs:  # a file of the same name as a directory (sorted apart from it: "a", "a.c", "a/")
        j = bisect_left(keys, names[i])
        if j < n and keys[j] == names[i]:
            return False
    if b"\\" in b"\0".join(names):
        return False
    # The keys are sorted, so the names starting with a given byte are a slice of them.
    for lo, hi in _SPECIAL_RANGES:
        for j in range(bisect_left(keys, lo), bisect_left(keys, hi)):
            name = names[j]
            if name in (b".", b"..") or any(_special_names(name)):
                return False
    for lo, hi in _SHORT_NAME_RANGES:
        for j in range(bisect_left(keys, lo), bisect_left(keys, hi)):
            name = names[j]
            if b"~" in name and any(_special_names(name)):
                return False
    return True


def _fsck_tree(
    buf: bytes, found: _Findings, note: Callable[[str, bytes], None] | None,
    entries: CanonicalEntries | None = None,
) -> None:
    """Git's ``fsck_tree``; ``note(kind, blob oid)`` hears of non-symlink entries named
    ``.gitmodules``/``.gitattributes`` (``kind`` is "gitmodules" or "gitattributes").
    ``entries``, if given, is the tree as :func:`~storage.treeparse.canonical_entries` parsed it."""
    if not buf or _plainly_fine(buf, entries):
        return
    null_sha1 = full_path = dot = dotdot = dotgit = zero_pad = dups = unsorted = False
    o_mode, o_name = 0, b""
    candidates: list[bytes] = []
    pos, size = 0, len(buf)
    entry = _tree_entry(buf, 0) if size >= 21 and not buf[size - 21] else None
    if entry is None:
        found.report("badTree", "cannot be parsed as a tree")
        return
    while entry is not None:
        mode, name_start, name_end = entry
        name = buf[name_start:name_end]
        next_pos = name_end + 21
        null_sha1 = null_sha1 or buf.startswith(_NULL_OID, name_end + 1)
        full_path = full_path or b"/" in name
        if name[0] == 0x2E:
            dot = dot or name == b"."
            dotdot = dotdot or name == b".."
        zero_pad = zero_pad or buf[pos] == 0x30
        if name[0] in _SPECIAL_START or b"\\" in name:
            is_git, is_modules, is_attributes = _special_names(name)
            dotgit = dotgit or is_git
            symlink = (mode & _S_IFMT) == _S_IFLNK
            blob = buf[name_end + 1 : next_pos].hex().encode()
            if is_modules:
                if symlink:
                    found.report("gitmodulesSymlink", ".gitmodules is a symbolic link")
                elif note is not None:
                    note("gitmodules", blob)
            if is_attributes and not symlink and note is not None:
                note("gitattributes", blob)  # as a symlink it is only info
        next_entry = _tree_entry(buf, next_pos) if next_pos < size else None
        if next_entry is None and next_pos < size:
            found.report("badTree", "cannot be parsed as a tree")
            break
        # badFilemode is only info in the reference git: odd modes never refuse a push.
        if pos:
            order = _verify_ordered(o_mode, o_name, mode, name, candidates)
            if order == _TREE_UNORDERED:
                unsorted = True
            elif order == _TREE_HAS_DUPS:
                dups = True
        o_mode, o_name = mode, name
        pos, entry = next_pos, next_entry
    for flag, msg_id, message in (
        (null_sha1, "nullSha1", "contains entries pointing to null sha1"),
        (full_path, "fullPathname", "contains full pathnames"),
        (dot, "hasDot", "contains '.'"),
        (dotdot, "hasDotdot", "contains '..'"),
        (dotgit, "hasDotgit", "contains '.git'"),
        (zero_pad, "zeroPaddedFilemode", "contains zero-padded file modes"),
        (dups, "duplicateEntries", "contains duplicate file entries"),
        (unsorted, "treeNotSorted", "not properly sorted"),
    ):
        if flag:
            found.report(msg_id, message)


# --------------------------------------------------------------------------------------------
# .gitmodules: git's config parser, as it reads a blob held in memory


_EOF = -1
_NL, _CR, _TAB, _SP = 0x0A, 0x0D, 0x09, 0x20


def _isspace(c: int) -> bool:  # git's sane ctype: only these four
    return c in (_SP, _TAB, _NL, _CR)


def _isalpha(c: int) -> bool:
    return 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def _iskeychar(c: int) -> bool:
    return _isalpha(c) or 0x30 <= c <= 0x39 or c == 0x2D


class _ConfigReader:
    """``git_config_from_mem``: bytes are signed chars (x86-64), so 0x80-0xff are negative and
    never match a letter or a byte-order mark, and 0xff equals EOF."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0
        self.eof = False

    def _getc(self) -> int:
        if self.pos < len(self.buf):
            c = self.buf[self.pos]
            self.pos += 1
            return c - 256 if c >= 0x80 else c
        return _EOF

    def next_char(self) -> int:
        c = self._getc()
        if c == _CR:
            c = self._getc()
            if c != _NL:
                if c != _EOF:
                    self.pos -= 1
                c = _CR
        if c == _EOF:
            self.eof = True
            c = _NL
        return c

    def parse(self, fn: Callable[[bytes, bytes | None], None]) -> bool:
        """Call ``fn(name, value)`` per entry; False on a syntax error (git stops there too)."""
        var = bytearray()
        baselen = 0
        comment = False
        while True:
            c = self.next_char()
            if c == _NL:
                if self.eof:
                    return True
                comment = False
                continue
            if comment:
                continue
            if _isspace(c):
                continue
            if c in (0x23, 0x3B):  # '#', ';'
                comment = True
                continue
            if c == 0x5B:  # '['
                var.clear()
                if not self._base_var(var) or not var:
                    return False
                var.append(0x2E)
                baselen = len(var)
                continue
            if not _isalpha(c):
                return False
            del var[baselen:]
            var.append(_tolower(c))
            if not self._value(var, fn):
                return False

    def _base_var(self, name: bytearray) -> bool:
        while True:
            c = self.next_char()
            if self.eof:
                return False
            if c == 0x5D:  # ']'
                return True
            if _isspace(c):
                return self._extended_base_var(name, c)
            if not _iskeychar(c) and c != 0x2E:
                return False
            name.append(_tolower(c))

    def _extended_base_var(self, name: bytearray, c: int) -> bool:
        while True:  # [section "subsection"]: blanks, then a quoted, case-kept subsection
            if c == _NL:
                return False
            c = self.next_char()
            if not _isspace(c):
                break
        if c != 0x22:
            return False
        name.append(0x2E)
        while True:
            c = self.next_char()
            if c == _NL:
                return False
            if c == 0x22:
                break
            if c == 0x5C:
                c = self.next_char()
                if c == _NL:
                    return False
            name.append(c & 0xFF)
        return self.next_char() == 0x5D

    def _value(self, name: bytearray, fn: Callable[[bytes, bytes | None], None]) -> bool:
        while True:
            c = self.next_char()
            if self.eof or not _iskeychar(c):
                break
            name.append(_tolower(c))
        while c in (_SP, _TAB):
            c = self.next_char()
        value: bytes | None = None
        if c != _NL:
            if c != 0x3D:  # '='
                return False
            value = self._parse_value()
            if value is None:
                return False
        # The callback gets C strings: anything after a NUL is invisible to it.
        fn(bytes(name).split(b"\0", 1)[0], None if value is None else value.split(b"\0", 1)[0])
        return True

    def _parse_value(self) -> bytes | None:
        quote = comment = False
        space = 0
        value = bytearray()
        while True:
            c = self.next_char()
            if c == _NL:
                return None if quote else bytes(value)
            if comment:
                continue
            if _isspace(c) and not quote:
                if value:
                    space += 1
                continue
            if not quote and c in (0x3B, 0x23):
                comment = True
                continue
            value += b" " * space
            space = 0
            if c == 0x5C:
                c = self.next_char()
                if c == _NL:
                    continue
                escaped = {0x74: _TAB, 0x62: 0x08, 0x6E: _NL, 0x5C: 0x5C, 0x22: 0x22}.get(c)
                if escaped is None:
                    return None
                value.append(escaped)
                continue
            if c == 0x22:
                quote = not quote
                continue
            value.append(c & 0xFF)


def _check_submodule_name(name: bytes) -> bool:
    """Names become paths under .git/modules: no empty name, no ".." component ('/' or '\\')."""
    if not name:
        return False
    parts = re.split(rb"[/\\]", name)
    return b".." not in parts


def _url_decode_mem(url: bytes) -> bytes:
    """Git's ``url_decode_mem``: %XX decoded (not %00) after the first ':'; before it, kept as is."""
    colon = url.find(b":")
    head, rest = (url[:colon], url[colon:]) if colon > 0 else (b"", url)

    def decode(m: re.Match[bytes]) -> bytes:
        value = int(m.group(1), 16)
        return bytes([value]) if value else m.group(0)

    return head + re.sub(rb"%([0-9a-fA-F]{2})", decode, rest)


def _is_dot_slash(url: bytes, i: int) -> bool:
    return url[i : i + 1] == b"." and url[i + 1 : i + 2] in (b"/", b"\\")


def _credential_url_ok(url: bytes) -> bool:
    """``credential_from_url_gently`` succeeds and yields a host: a scheme, a non-empty host,
    and no newline in any decoded part."""
    proto_end = url.find(b"://")
    if proto_end <= 0:
        return False
    cp = proto_end + 3
    at = url.find(b"@", cp)
    colon = url.find(b":", cp)
    slash = cp
    while slash < len(url) and url[slash] not in b"/?#":
        slash += 1
    parts = [url[:proto_end]]
    if at < 0 or slash <= at:
        host = cp
    elif colon < 0 or at <= colon:
        parts.append(_url_decode_mem(url[cp:at]))
        host = at + 1
    else:
        parts.append(_url_decode_mem(url[cp:colon]))
        parts.append(_url_decode_mem(url[colon + 1 : at]))
        host = at + 1
    host_part = _url_decode_mem(url[host:slash])
    parts.append(host_part)
    path = url[slash:].lstrip(b"/")
    if path:
        parts.append(_url_decode_mem(path))
    return all(b"\n" not in p for p in parts) and bool(host_part)


def _check_submodule_url(url: bytes) -> bool:
    """Git 2.39's ``check_submodule_url``: no option-like URL, no newline smuggled into what git
    passes to a helper, no relative URL climbing out to a scheme or host."""
    if url.startswith(b"-"):
        return False
    if _is_dot_slash(url, 0) or (url[:1] == b"." and _is_dot_slash(url, 1)) or url.startswith(b"git://"):
        if b"\n" in _url_decode_mem(url):
            return False
        i = dotdots = 0
        while True:
            if url[i : i + 1] == b"." and _is_dot_slash(url, i + 1):
                dotdots += 1
                i += 3
            elif _is_dot_slash(url, i):
                i += 2
            else:
                break
        return not (dotdots > 0 and url[i : i + 1] in (b":", b"/"))
    for prefix in (b"http::", b"https::", b"ftp::", b"ftps::"):
        if url.startswith(prefix):
            return _credential_url_ok(url[len(prefix) :])
    if url.startswith((b"http://", b"https://", b"ftp://", b"ftps://")):
        return _credential_url_ok(url)
    return True


def _show(value: bytes) -> str:
    return value.decode(errors="replace")


def _fsck_gitmodules(buf: bytes, found: _Findings) -> None:
    def entry(var: bytes, value: bytes | None) -> None:
        if not var.startswith(b"submodule.") or var.count(b".") < 2:
            return
        subsection, key = var[len(b"submodule.") :].rsplit(b".", 1)
        if not _check_submodule_name(subsection):
            found.report("gitmodulesName", f"disallowed submodule name: {_show(subsection)}")
        if value is None:
            return
        if key == b"url" and not _check_submodule_url(value):
            found.report("gitmodulesUrl", f"disallowed submodule url: {_show(value)}")
        if key == b"path" and value.startswith(b"-"):
            found.report("gitmodulesPath", f"disallowed submodule path: {_show(value)}")
        if key == b"update" and value.startswith(b"!"):  # "!command": run by submodule update
            found.report("gitmodulesUpdate", f"disallowed submodule update setting: {_show(value)}")

    if not _ConfigReader(buf).parse(entry):
        found.report("gitmodulesParse", "could not parse gitmodules blob")


def _fsck_gitattributes(buf: bytes, found: _Findings) -> None:
    if len(buf) > _ATTR_MAX_FILE_SIZE:
        found.report("gitattributesLarge", ".gitattributes too large to parse")
        return
    if _ATTR_LONG_LINE.search(buf.split(b"\0", 1)[0]):  # git reads it as a C string
        found.report("gitattributesLineLength", ".gitattributes has too long lines to parse")


class GitmodulesTracker:
    """Checks the blobs that trees name ``.gitmodules`` or ``.gitattributes``, wherever they are.

    Git's fsck remembers such blob ids while checking trees, checks those blobs when they arrive
    later in the pack, and at the end (``fsck_finish``) reads the rest from the repository: blobs
    that came before their tree, or that the repository already had. Feed every received object
    to :meth:`check` (or trees to :meth:`note_tree` and blobs to :meth:`check_blob`), then call
    :meth:`finish` once the whole pack is in.
    """

    def __init__(self) -> None:
        self._wanted: dict[bytes, set[str]] = {}  # blob oid -> {"gitmodules", "gitattributes"}
        self._done: set[bytes] = set()
        self._seen_types: dict[bytes, int] = {}  # received objects that are not blobs

    def check(
        self, oid: bytes, type_num: int, content: bytes, entries: CanonicalEntries | None = None
    ) -> None:
        """:func:`check_object` plus this tracker's bookkeeping: one call per received object.
        For a tree, ``entries`` may carry its parse (:func:`~storage.treeparse.canonical_entries`),
        shared with the connectivity check so that it is parsed once."""
        if type_num == OBJ_TREE:
            self._seen_types[oid] = type_num
            found = _Findings(oid)
            _fsck_tree(bytes(content), found, self._want, entries)
            found.raise_first()
            return
        check_object(oid, type_num, content)
        if type_num == OBJ_BLOB:
            self.check_blob(oid, content)
        else:
            self._seen_types[oid] = type_num

    def note_tree(self, oid: bytes, content: bytes) -> None:
        """Remember which entries of this tree are ``.gitmodules``/``.gitattributes`` blobs."""
        self._seen_types[oid] = OBJ_TREE
        _fsck_tree(bytes(content), _Findings(oid), self._want)

    def _want(self, kind: str, blob: bytes) -> None:
        self._wanted.setdefault(blob, set()).add(kind)

    def check_blob(self, oid: bytes, content: bytes) -> None:
        """Check a blob some tree already named; any other blob waits for :meth:`finish`."""
        kinds = self._wanted.get(oid)
        if kinds is None or oid in self._done:
            return
        self._done.add(oid)
        found = _Findings(oid)
        if "gitmodules" in kinds and len(content) > _GITMODULES_LARGE:
            # index-pack streams such a blob without looking at it, then reports it so.
            found.report("gitmodulesLarge", ".gitmodules too large to parse")
        else:
            _check_named_blob(kinds, bytes(content), found)
        found.raise_first()

    def finish(self, lookup: Callable[[bytes], tuple[int, bytes] | bytes | None]) -> None:
        """Check every named blob not checked yet, then forget them all.

        ``lookup(oid)`` gets an object from the push or the store: ``(type_num, content)``, plain
        ``bytes`` for a blob, or None when neither has it.
        """
        try:
            for kind in ("gitmodules", "gitattributes"):
                for oid, kinds in self._wanted.items():
                    if kind not in kinds or oid in self._done:
                        continue
                    self._done.add(oid)
                    found = _Findings(oid)
                    got = None if oid in self._seen_types else lookup(oid)
                    if isinstance(got, tuple):
                        type_num, content = got
                    elif got is None:
                        type_num, content = self._seen_types.get(oid, 0), b""
                    else:
                        type_num, content = OBJ_BLOB, got
                    if not type_num:
                        found.report(f"{kind}Missing", f"unable to read .{kind} blob")
                    elif type_num != OBJ_BLOB:
                        found.report(f"{kind}Blob", f"non-blob found at .{kind}")
                    else:
                        _check_named_blob(kinds, bytes(content), found)
                    found.raise_first()
        finally:
            self._wanted.clear()
            self._done.clear()
            self._seen_types.clear()


def _check_named_blob(kinds: set[str], content: bytes, found: _Findings) -> None:
    if "gitmodules" in kinds:
        _fsck_gitmodules(content, found)
    if "gitattributes" in kinds:
        _fsck_gitattributes(content, found)
