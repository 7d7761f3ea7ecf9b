"""/metrics: Prometheus text with request counts by kind and status, and repository gauges."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

import govc
from govc.metrics import request_kind
from govc.registry import Registry
from govc.server import ServerConfig, make_app


def test_metrics_count_requests_and_describe_repositories() -> None:
    repo = govc.Repository("infra")
    with repo.transaction("main", author="ops <ops@example.com>") as tx:
        tx.write("app.conf", "workers = 4\n")
        tx.commit("base")
    registry = Registry()
    registry.add("infra", repo)

    async def scenario() -> str:
        app = make_app(registry, ServerConfig(maintenance_interval=0))
        async with TestClient(TestServer(app)) as client:
            await client.get("/infra.git/info/refs?service=git-upload-pack")
            await client.get("/infra.git/info/refs?service=git-upload-pack")
            await client.get("/missing.git/info/refs?service=git-upload-pack")
            response = await client.get("/metrics")
            assert response.headers["Content-Type"].startswith("text/plain")
            return await response.text()

    text = asyncio.run(scenario())
    assert 'govc_http_requests_total{kind="advertise:git-upload-pack",status="200"} 2.0' in text
    assert 'govc_http_requests_total{kind="advertise:git-upload-pack",status="404"} 1.0' in text
    assert "govc_repositories 1.0" in text
    assert "govc_objects 3.0" in text  # a blob, a tree and a commit
    assert "govc_http_request_seconds_bucket" in text


def test_request_kinds_never_carry_repository_names() -> None:
    from aiohttp.test_utils import make_mocked_request

    assert request_kind(make_mocked_request("POST", "/team/app.git/git-receive-pack")) == "git-receive-pack"
    assert request_kind(make_mocked_request("GET", "/team/app.git/events")) == "events"
    assert request_kind(make_mocked_request("GET", "/api/v1/repos/team/app/hooks")) == "api"
    assert request_kind(make_mocked_request("GET", "/team/app.git/whatever")) == "other"


# -- Git operations, process and webhook series, through a real server and the real git ---------


def _scrape(base: str) -> str:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{base}/metrics", timeout=10) as response:
        return response.read().decode()


def _post_json(url: str, body: dict[str, object]) -> None:
    import json
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with opener.open(request, timeout=10) as response:
        assert response.status == 201


def _value(text: str, series: str) -> float:
    """The value of one exact series line (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")
def test_clones_fetches_pushes_webhooks_and_memory_are_measured(tmp_path: Path) -> None:
    import http.server
    import threading

    from govc.validation import ValidationError
    from govc.webhooks import Backoff
    from tests.helpers import git

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(400)  # not retried: the delivery fails for good
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens here once the socket is closed

    repo = govc.Repository("infra")
    with repo.transaction("main", author="ops <ops@example.com>") as tx:
        tx.write("app.conf", "workers = 4\n")
        tx.commit("base")
    repo.set_head("refs/heads/main")

    @repo.validator(branches="locked")
    def no(change: govc.Change) -> None:
        raise ValidationError("locked is read-only")

    config = ServerConfig(maintenance_interval=0, webhook_allow=["127.0.0.0/8"],
                          webhook_backoff=Backoff(base=60, max_attempts=5))
    server = govc.Server({"infra": repo}, config=config)
    base = server.serve_in_thread()
    try:
        url = f"{base}/infra.git"
        for target in (dead, receiver.server_address[1]):  # the first is retried later
            _post_json(f"{base}/api/v1/repos/infra/hooks", {"config": {"url": f"http://127.0.0.1:{target}/h"}})

        a, b = tmp_path / "a", tmp_path / "b"
        git("-c", "protocol.version=2", "clone", "-q", url, a)
        git("-c", "protocol.version=0", "clone", "-q", url, b)
        (a / "app.conf").write_text("workers = 8\n")
        git("-C", a, "commit", "-q", "-am", "more workers")
        git("-C", a, "push", "-q", "origin", "main")
        git("-C", b, "-c", "protocol.version=2", "fetch", "-q", "origin")
        git("-C", a, "commit", "-q", "--allow-empty", "-m", "again")
        git("-C", a, "push", "-q", "origin", "main")
        git("-C", b, "-c", "protocol.version=0", "fetch", "-q", "origin")
        git("-C", b, "fetch", "-q", "origin")  # up to date: no pack, no fetch counted
        refused = git("-C", a, "push", "-q", "origin", "HEAD:refs/heads/locked", check=False)
        assert refused.returncode != 0 and b"locked is read-only" in refused.stderr

        deadline = time.monotonic() + 10
        text = _scrape(base)
        while (_value(text, 'govc_webhook_attempts_total{result="failed"}') < 2
               or _value(text, 'govc_webhook_attempts_total{result="retry"}') < 2):
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
            text = _scrape(base)
    finally:
        server.stop()
        receiver.shutdown()

    ops = "govc_git_operations_total"
    assert _value(text, f'{ops}{{operation="clone",result="ok"}}') == 2
    assert _value(text, f'{ops}{{operation="fetch",result="ok"}}') == 2
    assert _value(text, f'{ops}{{operation="push",result="ok"}}') == 2
    assert _value(text, f'{ops}{{operation="push",result="rejected"}}') == 1
    assert _value(text, 'govc_git_operation_seconds_count{operation="push"}') == 3
    assert _value(text, 'govc_git_transfer_bytes_count{operation="clone"}') == 2
    assert _value(text, 'govc_git_transfer_bytes_sum{operation="clone"}') > 200
    assert _value(text, 'govc_http_request_bytes_total{kind="git-receive-pack"}') > 0
    assert _value(text, 'govc_http_response_bytes_total{kind="git-upload-pack"}') > 0
    assert _value(text, "govc_http_requests_in_flight") == 1  # the scrape itself
    assert _value(text, "process_resident_memory_bytes") > 10 << 20
    # Two pushes to main, one delivery per hook each: the dead target's wait for a retry, the
    # refusing receiver's failed for good.
    assert _value(text, "govc_webhook_queue_depth") == 2
    assert _value(text, 'govc_webhook_attempts_total{result="delivered"}') == 0
    assert "infra" not in "".join(line for line in text.splitlines() if not line.startswith("#"))
