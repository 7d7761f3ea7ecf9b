"""Structured logs and request ids (govc.logs), read from a real ``govc serve`` process."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from govc.logs import REQUEST_ID, JsonFormatter, RequestIdFilter, request_id_for, setup_logging
from tests.helpers import REPO_ROOT, git

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class Serve:
    """``govc serve`` in a subprocess, its stderr (the log) collected in a file."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"serve-{self.port}.log"
        self.out = tmp / f"serve-{self.port}.out"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOVC_")}
        with self.log.open("wb") as err, self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "govc", "serve", "--port", str(self.port), *args],
                cwd=REPO_ROOT, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if _get(f"{self.base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def records(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.lines()]

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=20)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    started: list[Serve] = []

    def start(*args: str) -> Serve:
        started.append(Serve(tmp_path, *args))
        return started[-1]

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def _wait_for(serve: Serve, predicate, timeout: float = 5.0) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """The access log is written after the response: wait for the record to appear."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in serve.records() if predicate(r)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@needs_git
def test_json_logs_carry_request_ids_users_and_handler_records(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    made = subprocess.run([sys.executable, "-m", "govc", "token", "create", "ci", "--access", "write",
                           "--data", str(data)], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    secret = made.stdout.strip()
    server = serve("--data", str(data), "--auth", "--log-format", "json")

    status, headers, _ = _get(f"{server.base}/healthz", {"X-Request-Id": "ci-job-42.step/3"})
    assert status == 200 and headers["X-Request-Id"] == "ci-job-42.step/3"
    status, headers, _ = _get(f"{server.base}/healthz", {"X-Request-Id": "not sane; " + "x" * 200})
    generated = headers["X-Request-Id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    status, headers, _ = _get(f"{server.base}/infra.git/info/refs?service=git-upload-pack")
    assert status == 401 and len(headers["X-Request-Id"]) == 32  # errors carry ids too

    work = tmp_path / "work"
    git("init", "-q", "-b", "main", work)
    (work / "f").write_text("x\n")
    git("-C", work, "add", "f")
    git("-C", work, "commit", "-q", "-m", "x")
    url = f"http://ci:{secret}@127.0.0.1:{server.port}/infra.git"
    git("-C", work, "push", "-q", url, "main")
    fake = [f"{n:040x}" for n in range(1, 1202)]
    assert git("-C", work, "fetch", "-q", url, *fake, check=False).returncode != 0  # refused: too many wants

    mine = _wait_for(server, lambda r: r.get("request_id") == "ci-job-42.step/3")
    assert len(mine) == 1
    access = mine[0]
    assert access["logger"] == "govc.access" and access["level"] == "INFO"
    assert {k: access[k] for k in ("method", "path", "status", "remote")} == {
        "method": "GET", "path": "/healthz", "status": 200, "remote": "127.0.0.1"}
    assert int(access["bytes"]) > 3 and isinstance(access["duration"], float)  # type: ignore[call-overload]
    assert str(access["user_agent"]).startswith("Python-urllib/")
    assert access["time"].endswith("Z") and "user" not in access  # type: ignore[union-attr]

    pushes = _wait_for(server, lambda r: r.get("path") == "/infra.git/git-receive-pack")
    assert pushes and pushes[0]["user"] == "ci" and str(pushes[0]["user_agent"]).startswith("git/")
    assert int(pushes[0]["bytes_in"]) > 0  # type: ignore[call-overload]
    refused = _wait_for(server, lambda r: "refused" in str(r["message"]) and r["logger"] == "govc.server")
    assert refused and refused[0]["level"] == "WARNING"
    same = [r for r in server.records() if r.get("request_id") == refused[0]["request_id"]]
    assert {r["logger"] for r in same} == {"govc.server", "govc.access"}  # one id ties them together
    assert server.stop() == 0
    records = server.records()  # every line, start-up and shutdown included, is one JSON object
    assert any("govc serving" in str(r["message"]) for r in records)
    assert records[-1]["message"] == "govc stopped"
    assert server.out.read_text() == ""


def test_text_logs_stay_the_default(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = serve("--memory")
    _get(f"{server.base}/healthz", {"X-Request-Id": "abc"})
    deadline = time.monotonic() + 5
    while not any("/healthz" in line for line in server.lines()) and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(line for line in server.lines() if "/healthz" in line)
    assert ' govc.access 127.0.0.1 "GET /healthz HTTP/1.1" 200 ' in line
    assert '"Python-urllib/' in line and not line.startswith("{")
    assert server.stop() == 0
    assert "govc serving" in server.out.read_text()


def test_request_ids_and_the_formatter() -> None:
    assert request_id_for("abc-1") == "abc-1"
    assert request_id_for(None) != request_id_for(None)
    assert len(request_id_for("with\nnewline")) == 32
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("govc.test_logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        token = REQUEST_ID.set("r-1")
        try:
            logger.warning("inside %s", "a request")
        finally:
            REQUEST_ID.reset(token)
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("outside")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "inside a request" and first["request_id"] == "r-1"
    assert "request_id" not in second and "ValueError: boom" in second["exception"]
    with pytest.raises(ValueError):
        setup_logging("xml")
