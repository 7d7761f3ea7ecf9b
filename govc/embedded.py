"""Serving in-process repositories over smart HTTP from Python code.

    server = govc.Server({"infra": repo})
    server.run(host="127.0.0.1", port=8417)          # blocking

    async with server.running(port=0) as url:        # inside asyncio; port 0 picks a free one
        ...                                          # git clone f"{url}/infra.git"
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from aiohttp import web

from govc.registry import Registry
from govc.repository import Repository
from govc.server import STRAGGLERS, ServerConfig, graceful_signals, make_app


class Server:
    """A smart-HTTP server for repositories you already hold in Python."""

    def __init__(
        self,
        repositories: Mapping[str, Repository] | Registry | None = None,
        *,
        auto_create: bool = False,
        config: ServerConfig | None = None,
    ) -> None:
        if isinstance(repositories, Registry):
            self.registry = repositories
        else:
            self.registry = Registry()
            for name, repo in (repositories or {}).items():
                self.registry.add(name, repo)
        self.config = config or ServerConfig(auto_create=auto_create)
        self.url: str | None = None

    def add(self, name: str, repo: Repository) -> None:
        """Serve another repository (also while running)."""
        self.registry.add(name, repo)

    def app(self) -> web.Application:
        return make_app(self.registry, self.config)

    def run(self, host: str = "127.0.0.1", port: int = 8417) -> None:
        """Serve until interrupted (Ctrl-C or SIGTERM: requests in flight finish first, for up to
        ``config.shutdown_timeout`` seconds)."""
        app = self.app()
        graceful_signals(app)  # SIGTERM/SIGINT: requests in flight finish first
        web.run_app(app, host=host, port=port, print=None, handle_signals=False, shutdown_timeout=STRAGGLERS)

    @asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve for the duration of the block; yields the base URL (``http://host:port``)."""
        runner = web.AppRunner(self.app())
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        server = site._server
        bound = port
        if server is not None and getattr(server, "sockets", None):
            bound = server.sockets[0].getsockname()[1]
        self.url = f"http://{host}:{bound}"
        try:
            yield self.url
        finally:
            self.url = None
            await runner.cleanup()

    def serve_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving on a background thread (scripts, notebooks, tests); returns the URL.
        Stop with :meth:`stop`."""
        import threading

        ready = threading.Event()
        state: dict[str, object] = {}

        def main() -> None:
            loop = asyncio.new_event_loop()
            state["loop"] = loop

            async def serve() -> None:
                async with self.running(host, port) as url:
                    state["url"] = url
                    stop = asyncio.Event()
                    state["stop"] = stop
                    ready.set()
                    await stop.wait()

            loop.run_until_complete(serve())
            loop.close()

        thread = threading.Thread(target=main, name="govc-server", daemon=True)
        thread.start()
        if not ready.wait(10):
            raise RuntimeError("govc server did not start")
        self._thread_state = state
        self._thread = thread
        return str(state["url"])

    def stop(self) -> None:
        state = getattr(self, "_thread_state", None)
        if not state:
            return
        loop: asyncio.AbstractEventLoop = state["loop"]  # type: ignore[assignment]
        stop: asyncio.Event = state["stop"]  # type: ignore[assignment]
        loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=10)
        self._thread_state = {}
