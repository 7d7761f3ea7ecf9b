"""Access tokens and the ``govc serve --auth`` middleware.

Tokens are random (``secrets.token_urlsafe(32)``), shown once when created and stored only as their
SHA-256 hash, in the site database (table ``tokens``: the data directory's SQLite, or the
PostgreSQL database a cluster's nodes share, so a token works on every node). Each has a name, a scope
(one repository, or every repository), an access level (``read`` < ``write`` < ``admin``), a creation
time, an optional expiry and, once revoked, the time it was revoked.

With authentication on, every request but ``/healthz`` needs a token, given either as HTTP Basic
credentials (any user name, the token as the password: what git and its credential helpers send) or
as ``Authorization: Bearer <token>``. What a request needs:

* fetching (``info/refs?service=git-upload-pack``, ``git-upload-pack``, ``events``): ``read``;
* pushing (``info/refs?service=git-receive-pack``, ``git-receive-pack``): ``write``;
* the JSON API (``/api/v1/...``): ``read`` for GET; ``write`` to change content (files, branches,
  realities); ``admin`` for the rest (settings, deletion, protections) and for anything under
  ``permissions`` or ``hooks``, reads included;
* anything not about one repository (``/events``, ``GET /api/v1/repos``): access on every
  repository; creating repositories and managing tokens: ``admin`` on every repository.

What a token may do is the highest of its own grant and its name's grants (govc.permissions).
``/healthz``, ``/readyz`` and ``/api/v1/openapi.json`` are open.

No or bad credentials (unknown, expired, revoked) answer 401 with ``WWW-Authenticate: Basic
realm="govc"``, so git asks its credential helper; a valid token without the permission answers 403
with a message git shows as ``remote: ...``. ``anonymous_read`` lets requests without credentials
read, as does a repository opened for anonymous reading (``govc permission anonymous``). A
configured ``admin_token`` still works, as a Bearer token with admin access to everything.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import BasicAuth, web

from govc.limits import TokenBuckets
from govc.permissions import ACCESS_LEVELS, Permissions
from govc.registry import RepositoryNameError, normalize_name
from storage.sitedb import SiteDatabase

REALM = 'Basic realm="govc"'

_SCHEMA = """CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    repo TEXT,
    access TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    revoked REAL
)"""
_COLUMNS = "id, name, repo, access, created, expires, revoked"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,100}$")
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class TokenError(ValueError):
    """A token that cannot be created or found (bad name, duplicate name, unknown access...)."""


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def parse_duration(text: str) -> float:
    """``30d`` -> seconds (units s, m, h, d, w)."""
    match = _DURATION.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise TokenError(f"bad duration {text!r}: expected a number and a unit, e.g. 90m, 12h, 30d, 2w")
    return int(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    name: str
    repo: str | None  # None: every repository
    access: str
    created: float
    expires: float | None = None
    revoked: float | None = None

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (now if now is not None else time.time()) >= self.expires

    def valid(self, now: float | None = None) -> bool:
        return self.revoked is None and not self.expired(now)

    def own_level(self, repo: str | None) -> str | None:
        """The access the token itself carries on ``repo`` (None: something not about one
        repository); grants to its name may add more (govc.permissions)."""
        return self.access if self.repo is None or self.repo == repo else None

    def allows(self, access: str, repo: str | None) -> bool:
        """Whether the token by itself may do ``access`` on ``repo``."""
        level = self.own_level(repo)
        return level is not None and ACCESS_LEVELS.index(level) >= ACCESS_LEVELS.index(access)

    @property
    def scope(self) -> str:
        return self.repo if self.repo is not None else "*"

    def status(self, now: float | None = None) -> str:
        if self.revoked is not None:
            return "revoked"
        return "expired" if self.expired(now) else "active"


#: Where the middleware leaves the authenticated token for handlers (``request.get(TOKEN_KEY)``).
TOKEN_KEY: Any = web.RequestKey("govc_token", Token) if hasattr(web, "RequestKey") else "govc.token"


def _token(row: tuple[object, ...]) -> Token:
    id_, name, repo, access, created, expires, revoked = row
    return Token(int(id_), str(name), None if repo is None else str(repo), str(access),  # type: ignore[call-overload]
                 float(created), None if expires is None else float(expires),  # type: ignore[arg-type]
                 None if revoked is None else float(revoked))  # type: ignore[arg-type]


class TokenStore:
    """The tokens of one site database (see :mod:`storage.sitedb`)."""

    def __init__(self, directory: SiteDatabase) -> None:
        self.db = directory
        directory.create_tables([_SCHEMA])

    def create(self, name: str, *, repo: str | None = None, access: str = "read",
               expires_in: float | None = None) -> tuple[Token, str]:
        """A new token and its secret (the only time the secret is available)."""
        if not _NAME.match(name) or name.isdigit():
            raise TokenError(f"bad token name {name!r}: 1-100 of A-Z a-z 0-9 _ . @ -, not only digits")
        if access not in ACCESS_LEVELS:
            raise TokenError(f"bad access {access!r}: one of {', '.join(ACCESS_LEVELS)}")
        if repo is not None:
            try:
                repo = normalize_name(repo)
            except RepositoryNameError as e:
                raise TokenError(str(e)) from None
        secret = secrets.token_urlsafe(32)
        now = time.time()
        expires = now + expires_in if expires_in is not None else None
        with self.db.transaction() as db:
            if db.execute("SELECT 1 FROM tokens WHERE name = ? AND revoked IS NULL", (name,)).fetchone():
                raise TokenError(f"a token named {name!r} exists; revoke it first")
            row = db.execute(
                "INSERT INTO tokens (name, hash, repo, access, created, expires) VALUES (?, ?, ?, ?, ?, ?) "
                "RETURNING id", (name, hash_token(secret), repo, access, now, expires)).fetchone()
            token_id = int(row[0])
        return Token(token_id, name, repo, access, now, expires), secret

    def verify(self, secret: str) -> Token | None:
        """The valid (known, unexpired, unrevoked) token ``secret`` is, or None."""
        digest = hash_token(secret)
        rows = self.db.query(f"SELECT {_COLUMNS}, hash FROM tokens WHERE hash = ?", (digest,))
        for row in rows:
            if hmac.compare_digest(str(row[-1]), digest):
                token = _token(row[:-1])
                return token if token.valid() else None
        return None

    def list(self) -> list[Token]:
        return [_token(r) for r in self.db.query(f"SELECT {_COLUMNS} FROM tokens ORDER BY id", ())]

    def revoke(self, name_or_id: str) -> list[Token]:
        """Revoke the active token with this name (or this id); the tokens revoked (none: no such token)."""
        now = time.time()
        column = "id" if name_or_id.isdigit() else "name"
        key: object = int(name_or_id) if column == "id" else name_or_id
        with self.db.transaction() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM tokens WHERE {column} = ? AND revoked IS NULL",
                              (key,)).fetchall()
            db.execute(f"UPDATE tokens SET revoked = ? WHERE {column} = ? AND revoked IS NULL", (now, key))
        return [_token(r) for r in rows]


# -- the middleware ----------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


#: JSON API paths (below ``/api/v1/repos/<repo>``) whose every method, reads included, is for
#: administrators: who has access, and webhook configurations (targets, filters).
_ADMIN_PARTS = ("/permissions", "/hooks", "/hook-scripts")
#: JSON API writes that change a repository's content (as a push would): ``write`` access.
_WRITE_PARTS = ("/files/", "/branches", "/realities", "/transactions")


def required(request: web.Request) -> tuple[str, str | None] | None:
    """``(access, repository or None)`` a request needs; None for the open endpoints."""
    path = request.path
    if path in ("/healthz", "/readyz", "/api/v1/openapi.json"):
        return None
    raw = request.match_info.get("repo")
    repo: str | None = None
    if raw is not None:
        try:
            repo = normalize_name(raw)
        except RepositoryNameError:
            repo = None
    if path.startswith("/api/"):
        if repo is None:  # about every repository (tokens, the repository list, creation)
            admin_only = path.startswith(("/api/v1/tokens", "/api/v1/hooks", "/api/v1/permissions"))
            if admin_only or request.method not in ("GET", "HEAD"):
                return "admin", None
            return "read", None
        rest = path.split(f"/{raw}", 1)[1] if raw else ""
        if any(rest.startswith(part) for part in _ADMIN_PARTS):
            return "admin", repo
        if request.method in ("GET", "HEAD"):
            return "read", repo
        if any(rest.startswith(part) for part in _WRITE_PARTS):
            return "write", repo
        return "admin", repo  # settings, deletion, protections
    if path.endswith("/git-receive-pack") or (
            path.endswith("/info/refs") and request.query.get("service") == "git-receive-pack"):
        return "write", repo
    return "read", repo


def _credential(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return BasicAuth.decode(header).password or None
        except ValueError:
            return None
    return None


def _unauthorized(request: web.Request, message: str) -> web.Response:
    headers = {"WWW-Authenticate": REALM, "Cache-Control": "no-cache, max-age=0, must-revalidate"}
    if request.path.startswith("/api/"):
        return web.json_response({"error": "unauthorized", "message": message}, status=401, headers=headers)
    return web.Response(status=401, text=message + "\n", headers=headers)


def _forbidden(request: web.Request, message: str) -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"error": "forbidden", "message": message}, status=403)
    return web.Response(status=403, text=message + "\n",
                        headers={"Cache-Control": "no-cache, max-age=0, must-revalidate"})


_VERBS = {"read": "reading", "write": "pushing to", "admin": "administering"}


Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

#: Failed authentications an address may make at once before they are refused (429), one per
#: second after that.
FAILURE_BURST = 20


def make_middleware(store: TokenStore, *, anonymous_read: bool = False,
                    admin_token: str | None = None, permissions: Permissions | None = None) -> Middleware:
    """The aiohttp middleware enforcing the rules in this module's docstring."""
    admin_hash = hash_token(admin_token) if admin_token else None
    failures = TokenBuckets(rate=1.0, burst=FAILURE_BURST)
    grants = permissions if permissions is not None else Permissions(store.db)

    def anonymous_may(access: str, repo: str | None) -> bool:
        if access != "read":
            return False
        return anonymous_read or (repo is not None and grants.anonymous_read(repo))

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        need = required(request)
        if need is None:
            return await handler(request)
        access, repo = need
        secret = _credential(request)
        if secret is None:
            if anonymous_may(access, repo):
                return await handler(request)
            return _unauthorized(request, "govc: authentication required (a token as the password)")
        token: Token | None
        if admin_hash is not None and hmac.compare_digest(hash_token(secret), admin_hash):
            token = Token(0, "admin-token", None, "admin", 0.0)
        else:
            token = store.verify(secret)
        if token is None:
            # Guessing is hopeless against 256-bit tokens, but a flood of guesses still costs
            # database reads: each address gets FAILURE_BURST failures, then one per second.
            wait = failures.take(request.remote or "unknown")
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                text = f"govc: too many failed authentications; retry in {seconds} s"
                if request.path.startswith("/api/"):
                    return web.json_response({"error": "too_many_requests", "message": text}, status=429,
                                             headers={"Retry-After": str(seconds)})
                return web.Response(status=429, text=text + "\n", headers={"Retry-After": str(seconds)})
            return _unauthorized(request, "govc: invalid, expired or revoked token")
        if not grants.allows(token, access, repo):
            what = f"repository '{repo}'" if repo is not None else "this resource (every repository)"
            level = grants.level(token, repo)
            if level is None and token.repo is not None:
                reason = f"token '{token.name}' is limited to repository '{token.repo}'"
            else:
                reason = f"token '{token.name}' has {level or 'no'} access"
            return _forbidden(request, f"govc: {reason}; {_VERBS[access]} {what} needs {access} access")
        request[TOKEN_KEY] = token
        return await handler(request)

    return authenticate
