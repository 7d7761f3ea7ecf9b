"""storage.fsck against git itself.

Every case is a handful of hand-built objects. govc checks them (``GitmodulesTracker`` over the
objects in pack order, then ``finish``); git gets the same objects as a pack through
``index-pack --strict`` and ``unpack-objects --strict``, the two commands ``receive-pack`` runs when
``receive.fsckObjects`` is on. Both must refuse the same cases, for the same reason: git's stderr
names the message id govc raised (and prints govc's exact line), or, for the objects git refuses
while parsing them before fsck runs, the parse error it prints instead.

Each pack is complete (commits carry their tree, trees their blobs), since strict mode also
refuses a pack that points at objects it does not hold. The expectations were recorded with git
2.39.5; the few behaviours newer git changed are in ``VERSION_SENSITIVE``.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import storage.fsck as fsck
from storage.fsck import FsckError, GitmodulesTracker, check_object
from tests.helpers import git, git_oid, have_git, make_pack, whole_entry

COMMIT, TREE, BLOB, TAG = 1, 2, 3, 4
Obj = tuple[int, bytes]

EMPTY: Obj = (TREE, b"")
ET = git_oid(TREE, b"")
X: Obj = (BLOB, b"x\n")
XO = git_oid(BLOB, b"x\n")
GITLINK = b"1234567890123456789012345678901234567890"
AUTHOR = b"author A U Thor <author@example.com> 1112912000 -0700"
COMMITTER = b"committer C O Mitter <committer@example.com> 1112912000 -0700"
TAGGER = b"tagger T A Gger <tagger@example.com> 1112912000 -0700"


def tree(*entries: tuple[bytes, bytes, bytes]) -> Obj:
    """A tree from ``(mode, name, hex oid)`` entries, kept in the order given."""
    return TREE, b"".join(m + b" " + n + b"\0" + bytes.fromhex(o.decode()) for m, n, o in entries)


def commit(*lines: bytes, tree_line: bytes = b"tree " + ET, body: bytes = b"\nmsg\n") -> Obj:
    return COMMIT, b"".join(line + b"\n" for line in (tree_line, *lines)) + body


def ident_commit(author: bytes) -> list[Obj]:
    return [commit(b"author " + author, COMMITTER), EMPTY]


def tag(*lines: bytes, body: bytes = b"\nmsg\n") -> Obj:
    return TAG, b"".join(line + b"\n" for line in lines) + body


TAG_HEAD = (b"object " + ET, b"type tree", b"tag v1.0")
BAD_COMMIT, BAD_TAG = "fatal: invalid commit", "fatal: invalid tag"  # git's parse errors


def gitmodules(content: bytes, name: bytes = b".gitmodules", mode: bytes = b"100644") -> list[Obj]:
    """A tree naming ``content`` as ``name``, then the blob (git's pack order: trees first)."""
    return [tree((mode, name, git_oid(BLOB, content))), (BLOB, content)]


def submodule(key: bytes, value: bytes, name: bytes = b"a") -> bytes:
    return b'[submodule "' + name + b'"]\n\t' + key + b" = " + value + b"\n"


SUB = gitmodules(submodule(b"url", b"-x"))


@dataclass(frozen=True)
class Case:
    name: str
    objects: Sequence[Obj]
    expect: str | None  # the msg id both refuse with; None: both accept
    git_says: str | None = None  # git refuses while parsing, before fsck, with this message
    tools: tuple[str, ...] = ("index-pack", "unpack-objects")


def ok(name: str, objects: Sequence[Obj]) -> Case:
    return Case(name, objects, None)


def bad(name: str, objects: Sequence[Obj], expect: str, git_says: str | None = None,
        tools: tuple[str, ...] = ("index-pack", "unpack-objects")) -> Case:
    return Case(name, objects, expect, git_says, tools)


CASES = [
    # -- commits -------------------------------------------------------------------------------
    ok("commit", [commit(AUTHOR, COMMITTER), EMPTY]),
    ok("commit-without-body", [(COMMIT, b"tree " + ET + b"\n" + AUTHOR + b"\n" + COMMITTER + b"\n"), EMPTY]),
    ok("commit-more-headers", [commit(AUTHOR, COMMITTER, b"encoding ISO-8859-1", b"gpgsig x\n y"), EMPTY]),
    ok("commit-parent", [commit(b"parent " + git_oid(*commit(AUTHOR, COMMITTER)), AUTHOR, COMMITTER),
                         commit(AUTHOR, COMMITTER), EMPTY]),
    ok("commit-uppercase-tree-id", [commit(AUTHOR, COMMITTER, tree_line=b"tree " + ET.upper()), EMPTY]),
    ok("ident-space-for-name", ident_commit(b" <a@b> 1 +0000")),
    ok("ident-date-blanks", ident_commit(b"A <a@b> \t 5 +0000")),
    ok("ident-date-plus-sign", ident_commit(b"A <a@b> +5 +0000")),
    ok("ident-date-blank-then-zero", ident_commit(b"A <a@b>  05 +0000")),
    ok("ident-date-minus-zero", ident_commit(b"A <a@b> -0 +0000")),
    ok("ident-date-max", ident_commit(b"A <a@b> 9223372036854775807 +0000")),
    ok("ident-date-wraps-to-small", ident_commit(b"A <a@b> -18446744073709551615 +0000")),
    bad("missingTree", [commit(AUTHOR, COMMITTER, tree_line=b"parent " + ET)], "missingTree", BAD_COMMIT),
    bad("missingTree-empty", [(COMMIT, b"")], "unterminatedHeader", BAD_COMMIT),
    bad("badTreeSha1", [commit(AUTHOR, COMMITTER, tree_line=b"tree " + ET[:39] + b"g")], "badTreeSha1",
        BAD_COMMIT),
    bad("badTreeSha1-short", [commit(AUTHOR, COMMITTER, tree_line=b"tree " + ET[:39])], "badTreeSha1",
        BAD_COMMIT),
    bad("badParentSha1", [commit(b"parent 1234", AUTHOR, COMMITTER), EMPTY], "badParentSha1", BAD_COMMIT),
    bad("missingAuthor", [commit(COMMITTER), EMPTY], "missingAuthor"),
    bad("missingAuthor-after-blank", [commit(body=b"\n" + AUTHOR + b"\n" + COMMITTER + b"\n"), EMPTY],
        "missingAuthor"),
    bad("multipleAuthors", [commit(AUTHOR, AUTHOR, COMMITTER), EMPTY], "multipleAuthors"),
    bad("missingCommitter", [commit(AUTHOR), EMPTY], "missingCommitter"),
    bad("missingCommitter-not-next", [commit(AUTHOR, b"encoding x", COMMITTER), EMPTY], "missingCommitter"),
    bad("nulInHeader", [commit(AUTHOR, COMMITTER + b"\0"), EMPTY], "nulInHeader"),
    bad("unterminatedHeader", [(COMMIT, b"tree " + ET + b"\n" + AUTHOR + b"\n" + COMMITTER), EMPTY],
        "unterminatedHeader"),
    bad("nulInCommit", [commit(AUTHOR, COMMITTER, body=b"\nm\0sg\n"), EMPTY], "nulInCommit"),
    bad("missingNameBeforeEmail", ident_commit(b"<a@b> 1 +0000"), "missingNameBeforeEmail"),
    bad("badName", ident_commit(b"A> <a@b> 1 +0000"), "badName"),
    bad("missingEmail", ident_commit(b"A U Thor 1 +0000"), "missingEmail"),
    bad("missingSpaceBeforeEmail", ident_commit(b"A<a@b> 1 +0000"), "missingSpaceBeforeEmail"),
    bad("badEmail", ident_commit(b"A <a@b 1 +0000"), "badEmail"),
    bad("badEmail-two-opens", ident_commit(b"A <a<b> 1 +0000"), "badEmail"),
    bad("missingSpaceBeforeDate", ident_commit(b"A <a@b>1 +0000"), "missingSpaceBeforeDate"),
    bad("zeroPaddedDate", ident_commit(b"A <a@b> 01 +0000"), "zeroPaddedDate"),
    bad("badDateOverflow", ident_commit(b"A <a@b> 9223372036854775808 +0000"), "badDateOverflow"),
    bad("badDateOverflow-negative", ident_commit(b"A <a@b> -1 +0000"), "badDateOverflow"),
    bad("badDateOverflow-huge", ident_commit(b"A <a@b> 99999999999999999999999 +0000"), "badDateOverflow"),
    bad("badDate", ident_commit(b"A <a@b> x +0000"), "badDate"),
    bad("badDate-suffix", ident_commit(b"A <a@b> 1x +0000"), "badDate"),
    bad("badDate-missing", ident_commit(b"A <a@b> "), "badDate"),
    bad("badTimezone", ident_commit(b"A <a@b> 1 +000"), "badTimezone"),
    bad("badTimezone-sign", ident_commit(b"A <a@b> 1 0000"), "badTimezone"),
    bad("badTimezone-two-blanks", ident_commit(b"A <a@b> 1  +0000"), "badTimezone"),
    bad("badTimezone-trailing", ident_commit(b"A <a@b> 1 +0000 "), "badTimezone"),
    bad("missingCommitter-date-read-past-newline", [commit(b"author A <a@b> \n5 +0000", COMMITTER), EMPTY],
        "missingCommitter"),
    bad("badTimezone-committer", [commit(AUTHOR, b"committer C <c@d> 1 +00"), EMPTY], "badTimezone"),
    # -- tags ----------------------------------------------------------------------------------
    ok("tag", [tag(*TAG_HEAD, TAGGER), EMPTY]),
    ok("tag-without-tagger", [tag(*TAG_HEAD), EMPTY]),  # missingTaggerEntry: info
    ok("tag-bad-name", [tag(b"object " + ET, b"type tree", b"tag a..b", TAGGER), EMPTY]),  # badTagName: info
    ok("tag-extra-header", [tag(*TAG_HEAD, TAGGER, b"x y"), EMPTY]),  # extraHeaderEntry: ignored
    ok("tag-bad-tagger-then-extra-header", [tag(*TAG_HEAD, b"tagger T <t@t> x +0000", b"x y"), EMPTY]),
    ok("tag-nul-in-body", [tag(*TAG_HEAD, TAGGER, body=b"\nm\0sg\n"), EMPTY]),
    ok("tag-64-bytes", [tag(b"object " + XO, b"type blob", b"tag v", body=b""), X]),
    bad("badTagObject", [tag(b"object " + XO, b"type blob", b"tag ", body=b""), X], "badTagObject", BAD_TAG),
    bad("missingObject", [tag(*TAG_HEAD[1:], TAGGER)], "missingObject", BAD_TAG),
    bad("badObjectSha1", [tag(b"object " + ET[:39], *TAG_HEAD[1:], TAGGER)], "badObjectSha1", BAD_TAG),
    bad("missingTypeEntry", [tag(TAG_HEAD[0], TAG_HEAD[2], TAGGER), EMPTY], "missingTypeEntry", BAD_TAG),
    bad("badType", [tag(TAG_HEAD[0], b"type tre", TAG_HEAD[2], TAGGER), EMPTY], "badType", BAD_TAG),
    bad("badType-empty", [tag(TAG_HEAD[0], b"type ", TAG_HEAD[2], TAGGER), EMPTY], "badType", BAD_TAG),
    bad("missingTagEntry", [tag(*TAG_HEAD[:2], TAGGER), EMPTY], "missingTagEntry", BAD_TAG),
    bad("tag-nulInHeader", [tag(*TAG_HEAD, TAGGER + b"\0"), EMPTY], "nulInHeader"),
    bad("tag-unterminatedHeader", [(TAG, b"\n".join((*TAG_HEAD, TAGGER))), EMPTY], "unterminatedHeader"),
    bad("tagger-badDate", [tag(*TAG_HEAD, b"tagger T <t@t> x +0000"), EMPTY], "badDate"),
    bad("tagger-missingEmail", [tag(*TAG_HEAD, b"tagger T"), EMPTY], "missingEmail"),
    # -- trees ---------------------------------------------------------------------------------
    ok("tree", [tree((b"100644", b"a", XO), (b"100755", b"b", XO), (b"120000", b"c", XO),
                     (b"40000", b"d", ET), (b"160000", b"e", GITLINK)), X, EMPTY]),
    ok("tree-empty", [EMPTY]),
    ok("tree-file-sorts-before-dir", [tree((b"100644", b"a.c", XO), (b"40000", b"a", ET)), X, EMPTY]),
    ok("tree-mode-100664", [tree((b"100664", b"a", XO)), X]),  # badFilemode: info
    ok("tree-mode-1", [tree((b"1", b"a", XO)), X]),
    ok("tree-high-bytes", [tree((b"100644", "é.txt".encode(), XO), (b"100644", b"\xff", XO)), X]),
    ok("tree-gitattributes-symlink", [tree((b"120000", b".gitattributes", XO)), X]),  # info
    ok("tree-not-dotgit", [tree(*((b"100644", n, XO) for n in sorted([
        b".gitx", b"git~2", b".git~1", b"git~1x", b".gi", b"..git", ".g\u200bit".encode(), b"git",
        b".gitmodules", b"a.git", b"git~1.txt"]))), X]),
    bad("badTree-truncated", [(TREE, b"100644 a\0" + bytes(10)), X], "badTree"),
    bad("badTree-empty-name", [tree((b"100644", b"", XO)), X], "badTree"),
    bad("badTree-bad-mode", [tree((b"100944", b"a", XO)), X], "badTree"),
    bad("badTree-empty-mode", [tree((b"", b"a", XO)), X], "badTree"),
    bad("badTree-no-space", [(TREE, b"100644a\0" + bytes.fromhex(XO.decode())), X], "badTree"),
    bad("badTree-trailing-bytes", [(TREE, tree((b"100644", b"a", XO))[1] + b"1"), X], "badTree"),
    bad("badTree-second-entry", [(TREE, tree((b"100644", b"a", XO))[1] + b"1 b\0" + bytes(25)), X],
        "badTree"),
    bad("nullSha1", [tree((b"100644", b"a", b"0" * 40))], "nullSha1"),
    bad("fullPathname", [tree((b"100644", b"a/b", XO)), X], "fullPathname"),
    bad("hasDot", [tree((b"100644", b".", XO)), X], "hasDot"),
    bad("hasDotdot", [tree((b"40000", b"..", ET)), EMPTY], "hasDotdot"),
    *(bad(f"hasDotgit-{i}", [tree((b"100644", n, XO)), X], "hasDotgit") for i, n in enumerate([
        b".git", b".GIT", b".Git", b"git~1", b"GIT~1", b".git.", b".git ", b".git. . ", b"git~1 .",
        b".git::$INDEX_ALLOCATION", b"a\\.git", b"a\\b\\GIT~1\\c", ".g\u200cit".encode(),
        "\u200c.git".encode(), ".git\u200d".encode(), ".gi\ufefft".encode(), ".\u206aGIT".encode(),
        b".git\xff", b".git\xc0",
    ])),
    bad("hasDotgit-dir", [tree((b"40000", b".git", ET)), EMPTY], "hasDotgit"),
    bad("zeroPaddedFilemode", [tree((b"040000", b"a", ET)), EMPTY], "zeroPaddedFilemode"),
    bad("duplicateEntries", [tree((b"100644", b"a", XO), (b"100644", b"a", XO)), X], "duplicateEntries"),
    bad("duplicateEntries-file-dir", [tree((b"100644", b"a", XO), (b"40000", b"a", ET)), X, EMPTY],
        "duplicateEntries"),
    bad("duplicateEntries-apart", [tree((b"100644", b"a", XO), (b"100644", b"a.c", XO), (b"40000", b"a", ET)),
                                   X, EMPTY], "duplicateEntries"),
    bad("treeNotSorted", [tree((b"100644", b"b", XO), (b"100644", b"a", XO)), X], "treeNotSorted"),
    bad("treeNotSorted-dir", [tree((b"40000", b"a", ET), (b"100644", b"a.c", XO)), X, EMPTY],
        "treeNotSorted"),
    bad("tree-first-error-wins", [tree((b"100644", b"b", XO), (b"100644", b".git", XO)), X], "hasDotgit"),
    *(bad(f"gitmodulesSymlink-{i}", [tree((b"120000", n, XO)), X], "gitmodulesSymlink")
      for i, n in enumerate([
        b".gitmodules", b".GITMODULES", b"GITMOD~1", b".gitmodules. ", b"gi7eba~1", b"gi7eb~12",
        b"x\\.gitmodules", ".gitmodul\u200ces".encode(), b"~1234567",
    ])),
    # -- .gitmodules ---------------------------------------------------------------------------
    ok("gitmodules", gitmodules(b'[submodule "a"]\n\tpath = a\n\turl = https://example.com/a.git\n')),
    ok("gitmodules-no-subsection", gitmodules(b"[submodule]\n\turl = -x\n")),
    ok("gitmodules-url-without-value", gitmodules(b'[submodule "a"]\n\turl\n')),
    ok("gitmodules-parse-error-first", gitmodules(b'[submodule "a"\n\turl = -x\n')),
    ok("gitmodules-bom", gitmodules(b"\xef\xbb\xbf" + submodule(b"url", b"-x"))),
    ok("gitmodules-0xff-is-eof", gitmodules(submodule(b"path", b"x\xff") + b"\turl = -x\n")),
    ok("gitmodules-bad-escape", gitmodules(b'[submodule "a"]\n\tpath = a\\q\n\turl = -x\n')),
    ok("gitmodules-url-colon-hides-newline", gitmodules(submodule(b"url", b"./a%0a:b"))),
    ok("gitmodules-url-host-before-colon", gitmodules(submodule(b"url", b"https://h%0a:80/a"))),
    ok("gitmodules-url-odd-but-allowed", gitmodules(submodule(b"url", b"https://h:xx/a b"))),
    ok("gitmodules-url-relative", gitmodules(submodule(b"url", b"../../a/b.git"))),
    ok("gitmodules-url-ssh", gitmodules(submodule(b"url", b"git@example.com:a%0a.git"))),
    ok("gitmodules-url-pct00", gitmodules(submodule(b"url", b"./a%00b"))),
    ok("gitmodules-update-ok", gitmodules(submodule(b"update", b"rebase"))),
    ok("gitmodules-name-dots", gitmodules(submodule(b"path", b"a", name=b"a..b/...c"))),
    ok("gitmodules-url-pct00-host", gitmodules(submodule(b"url", b"http://%00/"))),
    bad("gitmodulesUrl", gitmodules(submodule(b"url", b"-x")), "gitmodulesUrl"),
    bad("gitmodulesUrl-quoted", gitmodules(submodule(b"url", b'"-x"')), "gitmodulesUrl"),
    bad("gitmodulesUrl-escaped-newline", gitmodules(submodule(b"url", b"./a\\n")), "gitmodulesUrl"),
    bad("gitmodulesUrl-relative-newline", gitmodules(submodule(b"url", b"./a%0a")), "gitmodulesUrl"),
    bad("gitmodulesUrl-pct00-then-newline", gitmodules(submodule(b"url", b"./%00%0a")), "gitmodulesUrl"),
    bad("gitmodulesUrl-backslash-relative", gitmodules(submodule(b"url", b".\\\\a%0A")), "gitmodulesUrl"),
    bad("gitmodulesUrl-in-subdirectory", [tree((b"40000", b"sub", git_oid(*SUB[0]))), *SUB], "gitmodulesUrl"),
    bad("gitmodulesUrl-climbs-to-scheme", gitmodules(submodule(b"url", b"../../:x")), "gitmodulesUrl"),
    bad("gitmodulesUrl-climbs-to-host", gitmodules(submodule(b"url", b"./../..//x")), "gitmodulesUrl"),
    bad("gitmodulesUrl-git-newline", gitmodules(submodule(b"url", b"git://h/a%0a")), "gitmodulesUrl"),
    bad("gitmodulesUrl-http-no-host", gitmodules(submodule(b"url", b"https:///a")), "gitmodulesUrl"),
    bad("gitmodulesUrl-http-newline", gitmodules(submodule(b"url", b"https://h/a%0a")), "gitmodulesUrl"),
    bad("gitmodulesUrl-http-user-newline", gitmodules(submodule(b"url", b"ftp://u%0a@h/")), "gitmodulesUrl"),
    bad("gitmodulesUrl-http-password", gitmodules(submodule(b"url", b"ftps://u:p:%0a@h/")), "gitmodulesUrl"),
    bad("gitmodulesUrl-curl-no-scheme", gitmodules(submodule(b"url", b"http::h/a")), "gitmodulesUrl"),
    bad("gitmodulesUrl-before-parse-error", gitmodules(submodule(b"url", b"-x") + b"[bad\n"),
        "gitmodulesUrl"),
    bad("gitmodulesUrl-old-style-section", gitmodules(b"[submodule.A]\n\turl = -x\n"), "gitmodulesUrl"),
    bad("gitmodulesUrl-crlf", gitmodules(b'[submodule "a"]\r\n\turl = -x\r\n'), "gitmodulesUrl"),
    bad("gitmodulesUrl-no-final-newline", gitmodules(b'[Submodule "a"]\n\tURL = -x'), "gitmodulesUrl"),
    bad("gitmodulesUrl-continued", gitmodules(b'[submodule "a"]\n\turl = "-\\\n x" ; c\n'), "gitmodulesUrl"),
    bad("gitmodulesUrl-same-line", gitmodules(b'[submodule "a"] url=-x # c\n'), "gitmodulesUrl"),
    bad("gitmodulesUrl-escaped-quote-name", gitmodules(b'[submodule "a\\"b"]\n\turl = -x\n'),
        "gitmodulesUrl"),
    ok("gitmodules-0xff-in-quotes", gitmodules(b'[submodule "a"]\n\tpath = "x\xff"\n\turl = -x\n')),
    ok("gitmodules-0xff-in-name", gitmodules(b'[submodule "a\xff"]\n\turl = -x\n')),
    bad("gitmodulesUrl-cr-swallows-0xff", gitmodules(b'[submodule "a"]\n\tpath = x\r\xff\n\turl = -x\n'),
        "gitmodulesUrl"),
    bad("gitmodulesPath", gitmodules(submodule(b"path", b"-x")), "gitmodulesPath"),
    bad("gitmodulesUpdate", gitmodules(submodule(b"update", b"!rm -rf")), "gitmodulesUpdate"),
    bad("gitmodulesUpdate-blanks", gitmodules(submodule(b"update", b"  !x  ")), "gitmodulesUpdate"),
    *(bad(f"gitmodulesName-{i}", gitmodules(submodule(b"path", b"a", name=n)), "gitmodulesName")
      for i, n in enumerate([b"..", b"../a", b"a/../b", b"a\\\\..", b"", b'a\\"/..'])),
    *(bad(f"gitmodules-alias-{i}", gitmodules(submodule(b"url", b"-x"), name=n), "gitmodulesUrl")
      for i, n in enumerate([b".GITMODULES", b"GITMOD~4", b".gitmodules. :x", b"x\\.gitmodules",
                             b"gi7eba~9", ".git\u200cmodules".encode(), b"gItMoD~1"])),
    bad("gitmodulesUrl-blob-first", gitmodules(submodule(b"url", b"-x"))[::-1], "gitmodulesUrl"),
    bad("gitmodulesBlob", [tree((b"40000", b".gitmodules", ET)), EMPTY], "gitmodulesBlob"),
    # index-pack leaves a missing .gitmodules to its caller (fetch checks it); unpack-objects refuses.
    bad("gitmodulesMissing", [tree((b"160000", b".gitmodules", GITLINK))], "gitmodulesMissing",
        tools=("unpack-objects",)),
    # -- .gitattributes ------------------------------------------------------------------------
    ok("gitattributes", gitmodules(b"*.c diff=cpp\n" + b"a" * 2047 + b"\n", b".gitattributes")),
    ok("gitattributes-long-after-nul", gitmodules(b"a\0" + b"a" * 3000, b".gitattributes")),
    ok("gitattributes-backslash-not-alias", gitmodules(b"a" * 3000, b"x\\.gitattributes")),
    bad("gitattributesLineLength", gitmodules(b"a\n" + b"a" * 2048 + b"\n", b".gitattributes"),
        "gitattributesLineLength"),
    bad("gitattributesLineLength-last", gitmodules(b"a" * 2048, b".gitattributes"),
        "gitattributesLineLength"),
    *(bad(f"gitattributes-alias-{i}", gitmodules(b"a" * 3000, n), "gitattributesLineLength")
      for i, n in enumerate([b".GITATTRIBUTES", b"gitatt~1", b"gi7d29~1", b".gitattributes .",
                             ".gitattributes\u200c".encode()])),
    bad("gitattributesBlob", [tree((b"40000", b".gitattributes", ET)), EMPTY], "gitattributesBlob"),
    bad("gitattributesMissing", [tree((b"160000", b".gitattributes", GITLINK))], "gitattributesMissing"),
]

# Accepted by git 2.39 but refused by later versions (dates read without strtoumax, stricter URLs).
VERSION_SENSITIVE = {"ident-date-plus-sign", "ident-date-blank-then-zero", "ident-date-minus-zero",
                     "ident-date-wraps-to-small", "gitmodules-url-odd-but-allowed",
                     "missingCommitter-date-read-past-newline"}


def govc_verdict(objects: Sequence[Obj]) -> FsckError | None:
    """What govc says about a push of these objects, in this order."""
    received = {git_oid(t, c): (t, c) for t, c in objects}
    tracker = GitmodulesTracker()
    try:
        for type_num, content in objects:
            tracker.check(git_oid(type_num, content), type_num, content)
        tracker.finish(received.get)
    except FsckError as e:
        return e
    return None


@pytest.fixture(scope="module")
def git_version() -> str:
    if not have_git():
        pytest.skip("git is not installed")
    return git("--version").stdout.decode().split()[2]


@pytest.fixture(scope="module")
def run_git(tmp_path_factory: pytest.TempPathFactory, git_version: str) -> Iterator[
        Callable[[Sequence[Obj], str], subprocess.CompletedProcess[bytes]]]:
    """Feed objects as a pack to a fresh empty repository with ``git <tool> --strict``."""
    base = tmp_path_factory.mktemp("fsck")
    template = base / "template.git"
    git("init", "-q", "--bare", template)
    counter = itertools.count()

    def run(objects: Sequence[Obj], tool: str) -> subprocess.CompletedProcess[bytes]:
        repo = base / f"{next(counter)}.git"
        shutil.copytree(template, repo)
        try:
            args: list[str | Path] = ["--git-dir", repo, tool, "--strict"]
            if tool == "index-pack":
                args.append("--stdin")
            return git(*args, input=make_pack([whole_entry(t, c, level=1) for t, c in objects]), check=False)
        finally:
            shutil.rmtree(repo)

    yield run


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_govc_agrees_with_git(case: Case, run_git, git_version: str) -> None:
    if case.name in VERSION_SENSITIVE and not git_version.startswith("2.39."):
        pytest.skip(f"git {git_version} judges this differently from 2.39")
    assert_agree(case, run_git)


def test_gitattributes_large(run_git) -> None:
    """Over 100 MiB git does not read a .gitattributes blob at all (built here, not at import)."""
    assert_agree(bad("gitattributesLarge", gitmodules(b"a\n" * (50 * 1024 * 1024 + 1), b".gitattributes"),
                     "gitattributesLarge", tools=("index-pack",)), run_git)


def assert_agree(case: Case, run_git) -> None:
    err = govc_verdict(case.objects)
    assert (err.msg_id if err else None) == case.expect, err
    for tool in case.tools:
        result = run_git(case.objects, tool)
        stderr = result.stderr.decode(errors="replace")
        if case.expect is None:
            assert result.returncode == 0, f"{tool}: {stderr}"
            continue
        assert err is not None
        assert result.returncode != 0, f"{tool} accepted what govc refuses with {err}"
        if case.git_says is not None and case.git_says in stderr:
            continue  # refused while parsing, before fsck could name it
        assert f"error: {err}\n" in stderr, f"{tool}: {stderr}"


def test_every_refusing_id_is_covered() -> None:
    """Each id that can refuse a push has a case, except the ones git cannot reach."""
    unreachable = {
        "emptyName",  # git's tree reader refuses an empty name first: badTree
        "missingType", "missingTag",  # the header check already requires the newline they look for
        "unknownType",  # packs only carry the four types (tested below without git)
        "gitmodulesLarge",  # needs a blob over 512 MiB (tested below without git)
    }
    covered = {c.expect for c in CASES} | {"gitattributesLarge"}  # test_gitattributes_large
    assert (fsck.RECEIVE_REJECTS | fsck.PARSE_REJECTS) - unreachable <= covered
    assert unreachable.isdisjoint(covered)


# --------------------------------------------------------------------------------------------
# without git


def test_error_carries_id_oid_and_gits_wording() -> None:
    obj = tree((b"100644", b".git", XO))
    oid = git_oid(*obj)
    with pytest.raises(FsckError) as info:
        check_object(oid, TREE, obj[1])
    assert (info.value.msg_id, info.value.oid) == ("hasDotgit", oid)
    assert str(info.value) == f"object {oid.decode()}: hasDotgit: contains '.git'"


def test_unknown_type() -> None:
    with pytest.raises(FsckError, match="unknownType: unknown type '7'"):
        check_object(XO, 7, b"")


def test_blobs_pass_alone() -> None:
    check_object(XO, BLOB, submodule(b"url", b"-x"))


def test_gitmodules_blob_from_the_store() -> None:
    """A new tree naming a .gitmodules blob the repository already has: finish reads it."""
    content = submodule(b"url", b"-x")
    tracker = GitmodulesTracker()
    obj = gitmodules(content)[0]
    tracker.check(git_oid(*obj), TREE, obj[1])
    with pytest.raises(FsckError, match="gitmodulesUrl") as info:
        tracker.finish(lambda oid: content if oid == git_oid(BLOB, content) else None)
    assert info.value.oid == git_oid(BLOB, content)


def test_gitmodules_missing_and_not_a_blob() -> None:
    obj = gitmodules(b"")[0]
    tracker = GitmodulesTracker()
    tracker.note_tree(git_oid(*obj), obj[1])
    with pytest.raises(FsckError, match=r"gitmodulesMissing: unable to read \.gitmodules blob"):
        tracker.finish(lambda oid: None)
    tracker.note_tree(git_oid(*obj), obj[1])
    with pytest.raises(FsckError, match=r"gitmodulesBlob: non-blob found at \.gitmodules"):
        tracker.finish(lambda oid: (COMMIT, b""))


def test_finish_forgets() -> None:
    obj = gitmodules(b"")[0]
    tracker = GitmodulesTracker()
    tracker.note_tree(git_oid(*obj), obj[1])
    with pytest.raises(FsckError):
        tracker.finish(lambda oid: None)
    tracker.finish(lambda oid: None)


def test_a_blob_is_checked_once() -> None:
    content = submodule(b"url", b"-x")
    objects = gitmodules(content)
    tracker = GitmodulesTracker()
    tracker.check(git_oid(*objects[0]), TREE, objects[0][1])
    with pytest.raises(FsckError):
        tracker.check(git_oid(*objects[1]), BLOB, content)
    tracker.finish(lambda oid: pytest.fail("already checked"))


def test_gitmodules_large(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over core.bigFileThreshold index-pack does not read a blob and refuses it as too large."""
    monkeypatch.setattr(fsck, "_GITMODULES_LARGE", 10)
    content = submodule(b"path", b"a")
    objects = gitmodules(content)
    tracker = GitmodulesTracker()
    tracker.check(git_oid(*objects[0]), TREE, objects[0][1])
    with pytest.raises(FsckError, match=r"gitmodulesLarge: \.gitmodules too large to parse"):
        tracker.check(git_oid(BLOB, content), BLOB, content)


def test_memoryview_content() -> None:
    obj = commit(AUTHOR, COMMITTER)
    check_object(git_oid(*obj), COMMIT, memoryview(obj[1]))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# generated cases, still judged by git

_SPECIAL = [b".git", b"git~1", b"git", b".gitmodules", b"gitmod~1", b"gi7eba~1", b"~1234567",
            b".gitattributes", b"gitatt~3", b"gi7d29~9", b".gitignore", b"gitmodules"]
_ODD_CHARS = ["\u200c".encode(), "\ufeff".encode(), "\u206f".encode(), "\u200b".encode(), b"\xe2\x80", b"."]


@st.composite
def names(draw: st.DrawFn) -> bytes:
    """Spellings around .git, .gitmodules and .gitattributes: case, HFS+-ignored code points,
    NTFS trailing dots, spaces and streams, backslash-separated parts."""
    out = bytearray()
    for c in draw(st.sampled_from(_SPECIAL)):
        out.append(c - 0x20 if 0x61 <= c <= 0x7A and draw(st.booleans()) else c)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(out)))
        out[at:at] = draw(st.sampled_from(_ODD_CHARS))
    prefix = draw(st.sampled_from([b"", b"", b"a\\", b"\\", b"x"]))
    suffix = draw(st.sampled_from([b"", b"", b".", b" ", b" . ", b":x", b"x", b"~1", b"\\", b"\\x", b"\xff"]))
    return prefix + bytes(out) + suffix


GENERATED = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@GENERATED
@given(name=names())
def test_generated_names(name: bytes, run_git) -> None:
    """Whether a name is .git, .gitmodules, .gitattributes or none, in any spelling: as git decides.

    The blob has a bad url and a too long line, so each reading of the name refuses differently.
    """
    objects = gitmodules(submodule(b"url", b"-x") + b"a" * 3000, name=name)
    err = govc_verdict(objects)
    result = run_git(objects, "index-pack")
    if err is None:
        assert result.returncode == 0, result.stderr
    else:
        assert f"error: {err}\n" in result.stderr.decode(errors="replace")


entries = st.lists(st.tuples(st.sampled_from([b"a", b"a.c", b"a-", b"a.c.d", b"b", b"a0", b"a.c-"]),
                             st.booleans()), min_size=2, max_size=6)


@GENERATED
@given(entries=entries, in_order=st.booleans())
def test_generated_tree_order(entries: list[tuple[bytes, bool]], in_order: bool, run_git) -> None:
    """Sorting and duplicate detection, with files and directories of nearly equal names."""
    if in_order:  # git's order: a directory sorts as if its name ended in '/'
        entries.sort(key=lambda e: e[0] + b"/" if e[1] else e[0])
    obj = tree(*((b"40000", n, ET) if is_dir else (b"100644", n, XO) for n, is_dir in entries))
    objects = [obj, X, EMPTY]
    err = govc_verdict(objects)
    result = run_git(objects, "index-pack")
    if err is None:
        assert result.returncode == 0, result.stderr
    else:
        assert f"error: {err}\n" in result.stderr.decode(errors="replace")
