"""Serve every bare repository under a directory with dulwich's smart-HTTP WSGI app.

``python -m dulwich.web`` serves exactly one repository at ``/``, but the benchmark needs
several (the corpus, a repository for small pushes, and fresh empty ones for full pushes), each
at ``/<name>.git`` like the other servers.  ``dulwich.server.FileSystemBackend`` would do, except
that dulwich hands it paths with a leading slash, which ``os.path.join`` treats as absolute, so we
strip it.  A threading WSGI server is used so a slow request never blocks the next one (git's
HTTP client opens a new connection per request with wsgiref's HTTP/1.0 handler).

Usage::

    python benchmarks/dulwich_server.py --root DIR --host 127.0.0.1 --port P
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from socketserver import ThreadingMixIn

from dulwich.server import BackendRepo, FileSystemBackend
from dulwich.web import (
    WSGIRequestHandlerLogger,
    WSGIServerLogger,
    make_server,
    make_wsgi_chain,
)


class RootedBackend(FileSystemBackend):
    """FileSystemBackend that resolves ``/name.git`` below its root instead of at ``/``."""

    def open_repository(self, path: str) -> BackendRepo:
        """Open ``path`` relative to the root (dulwich passes it, as bytes, with a leading /)."""
        return super().open_repository(os.fsdecode(path).lstrip("/"))


class ThreadingWSGIServer(ThreadingMixIn, WSGIServerLogger):
    """One thread per connection, so concurrent clients do not queue behind each other."""

    daemon_threads = True


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve until killed."""
    parser = argparse.ArgumentParser(description="dulwich smart-HTTP server for benchmarks")
    parser.add_argument("--root", required=True, help="directory holding <name>.git repos")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    app = make_wsgi_chain(RootedBackend(args.root))
    server = make_server(
        args.host,
        args.port,
        app,
        handler_class=WSGIRequestHandlerLogger,
        server_class=ThreadingWSGIServer,
    )
    print(f"dulwich serving {args.root} on http://{args.host}:{args.port}/", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
