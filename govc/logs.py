"""Logs an operator can search: a request id on every request, and optionally one JSON object
per line.

Every request gets an id: the client's ``X-Request-Id`` when it is sane (a proxy or CI system
already named the request), else a fresh one. It is echoed in the ``X-Request-Id`` response
header and attached, through a context variable, to every log record made while the request is
handled, so one grep finds the access line and whatever the request caused.

``--log-format json`` writes records as single-line JSON objects::

    {"time": "2024-05-01T12:00:00.123Z", "level": "INFO", "logger": "govc.access",
     "message": "POST /infra.git/git-receive-pack 200", "request_id": "4f1c...", "method": "POST",
     "path": "/infra.git/git-receive-pack", "status": 200, "bytes": 412, "duration": 0.031,
     "remote": "10.0.0.7", "user_agent": "git/2.39.5", "user": "ci"}

``bytes`` is what was sent, headers included (as the text log's ``%b``); ``bytes_in`` the request
body read by the Git endpoints. The default text format is unchanged (``time logger message``).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

#: The id of the request being handled (None outside requests).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("govc_request_id", default=None)
#: Where the id is kept on the request itself: the access log runs after the handler's context.
REQUEST_ID_KEY = web.RequestKey("govc_request_id", str) if hasattr(web, "RequestKey") else "govc.request_id"
#: Request body bytes read by the server's streaming readers (pushes, fetch requests).
BYTES_IN_KEY = web.RequestKey("govc_bytes_in", int) if hasattr(web, "RequestKey") else "govc.bytes_in"
HEADER = "X-Request-Id"
#: Ids we accept from clients: short, printable, nothing that could forge a log line.
_SANE_ID = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")
TEXT_FORMAT = "%(asctime)s %(name)s %(message)s"
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs "%{User-Agent}i"'
FORMATS = ("text", "json")
_HANDLER_NAME = "govc-serve"

# Fields a record may carry (``extra=``) that the JSON formatter writes out.
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_REQUEST_FIELDS = ("request_id", "method", "path", "status", "bytes", "bytes_in", "duration", "remote",
                   "user_agent", "user")


def request_id_for(header: str | None) -> str:
    """The client's id when sane, else a new random one."""
    if header and _SANE_ID.match(header):
        return header
    return uuid.uuid4().hex


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request its id, for the handler's log records and the response header."""
    rid = request_id_for(request.headers.get(HEADER))
    request[REQUEST_ID_KEY] = rid
    token = REQUEST_ID.set(rid)
    try:
        return await handler(request)
    finally:
        REQUEST_ID.reset(token)


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every response (errors and streams included) names its request."""
    rid = request.get(REQUEST_ID_KEY)
    if rid is not None:
        response.headers[HEADER] = rid


class RequestIdFilter(logging.Filter):
    """Stamp each record with the id of the request being handled, if any."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        out: dict[str, Any] = {
            "time": stamp.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _REQUEST_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(fmt: str = "text", level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Configure the root logger for ``govc serve``: text (the default) or JSON lines."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:  # ours from an earlier call; others' are left alone
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def teardown_logging() -> None:
    """Remove what :func:`setup_logging` installed (for callers that outlive a server run)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)


class JsonAccessLogger(AbstractAccessLogger):
    """aiohttp's access log as structured fields (the JSON formatter writes them out)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_taken: float) -> None:
        from govc.auth import TOKEN_KEY

        token = request.get(TOKEN_KEY)
        path = request.path
        self.logger.info(
            "%s %s %s", request.method, path, response.status,
            extra={
                "request_id": request.get(REQUEST_ID_KEY), "method": request.method, "path": path,
                "status": response.status, "bytes": response.body_length,
                "bytes_in": request.get(BYTES_IN_KEY), "duration": round(time_taken, 6),
                "remote": request.remote, "user_agent": request.headers.get("User-Agent"),
                "user": getattr(token, "name", None),
            },
        )


def access_logger_class(fmt: str) -> type[AbstractAccessLogger]:
    if fmt == "json":
        return JsonAccessLogger
    return web.AccessLogger
