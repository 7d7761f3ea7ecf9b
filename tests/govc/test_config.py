"""``govc serve`` settings: every flag also from the environment and from the TOML file, with
the command line over the environment over the file (govc.settings). Table-driven: one row per
option, each tried through all three sources."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from govc.cli import main, serve
from govc.settings import ENV_PREFIX, NOT_SETTINGS, key_of


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No GOVC_ variable from the outside; the root logger as it was."""
    import os

    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:], root.level = handlers, level


# key, flag arguments, environment value, TOML value, the value --print-config then shows
ROWS: list[tuple[str, list[str], str, str, Any]] = [
    ("data", ["--data", "/srv/x"], "/srv/x", '"/srv/x"', "/srv/x"),
    ("memory", ["--memory"], "1", "true", True),
    ("backend", ["--backend", "postgresql://govc@db/govc"], "postgresql://govc@db/govc",
     '"postgresql://govc@db/govc"', "postgresql://govc@db/govc"),
    ("host", ["--host", "0.0.0.0"], "0.0.0.0", '"0.0.0.0"', "0.0.0.0"),
    ("port", ["--port", "8081"], "8081", "8081", 8081),
    ("public_url", ["--public-url", "https://git.example.com"], "https://git.example.com",
     '"https://git.example.com"', "https://git.example.com"),
    ("auto_create", ["--no-auto-create"], "false", "false", False),
    ("quiet", ["--quiet"], "yes", "true", True),
    ("log_format", ["--log-format", "json"], "json", '"json"', "json"),
    ("webhook_allow", ["--webhook-allow", "10.0.0.0/8", "--webhook-allow", "127.0.0.0/8"],
     "10.0.0.0/8 127.0.0.0/8", '["10.0.0.0/8", "127.0.0.0/8"]', ["10.0.0.0/8", "127.0.0.0/8"]),
    ("admin_token", ["--admin-token", "s3cret"], "s3cret", '"s3cret"', "***"),  # never printed
    ("auth", ["--auth"], "true", "true", True),
    ("anonymous_read", ["--anonymous-read"], "1", "true", True),
    ("workers", ["--workers", "3"], "3", "3", 3),
    ("shutdown_timeout", ["--shutdown-timeout", "2.5"], "2.5", "2.5", 2.5),
    ("rate_limit", ["--rate-limit", "0"], "0", "0", 0.0),
    ("rate_burst", ["--rate-burst", "7"], "7", "7", 7),
    ("client_concurrency", ["--client-concurrency", "4"], "4", "4", 4),
    ("git_concurrency", ["--git-concurrency", "0"], "0", "0", 0),
    ("queue_timeout", ["--queue-timeout", "1.5"], "1.5", "1.5", 1.5),
    ("max_fetch_request", ["--max-fetch-request", "1MiB"], "1MiB", '"1MiB"', "1MiB"),
    ("max_push_size", ["--max-push-size", "2G"], "2147483648", "2147483648", "2GiB"),
]


def _printed(args: list[str], env: dict[str, str] | None = None) -> dict[str, tuple[Any, str]]:
    """``{key: (value, source)}`` from ``govc serve --print-config``."""
    import tomllib

    result = CliRunner().invoke(main, ["serve", *args, "--print-config"], env=env)
    assert result.exit_code == 0, result.output
    out: dict[str, tuple[Any, str]] = {}
    for line in result.output.splitlines():
        match = re.match(r"^(\w+) = (.*)  # (.*)$", line)
        if match:
            key, value, source = match.groups()
            out[key] = (tomllib.loads(f"v = {value}")["v"], source)
    return out


def test_the_table_covers_every_option_and_each_has_its_variable() -> None:
    options = {key_of(p): p for p in serve.params if p.name not in NOT_SETTINGS and p.opts[0].startswith("-")}
    assert {row[0] for row in ROWS} == set(options)
    for key, option in options.items():
        assert option.envvar == ENV_PREFIX + key.upper(), key


@pytest.mark.parametrize(("key", "flags", "env", "toml", "shown"), ROWS, ids=[r[0] for r in ROWS])
def test_each_setting_from_flag_environment_and_file(key: str, flags: list[str], env: str, toml: str,
                                                     shown: Any, tmp_path: Path) -> None:
    assert _printed(flags)[key] == (shown, "command line")
    variable = ENV_PREFIX + key.upper()
    assert _printed([], {variable: env})[key] == (shown, f"environment: ${variable}")
    config = tmp_path / "govc.toml"
    config.write_text(f"{key} = {toml}\n")
    assert _printed(["--config", str(config)])[key] == (shown, "config file")
    assert _printed([], {"GOVC_CONFIG": str(config)})[key] == (shown, "config file")


def test_the_command_line_wins_over_the_environment_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "govc.toml"
    config.write_text("port = 1111\nrate_limit = 5\nlog_format = \"json\"\n")
    env = {"GOVC_PORT": "2222", "GOVC_RATE_LIMIT": "6"}
    shown = _printed(["--config", str(config), "--port", "3333"], env)
    assert shown["port"] == (3333, "command line")
    assert shown["rate_limit"] == (6.0, "environment: $GOVC_RATE_LIMIT")
    assert shown["log_format"] == ("json", "config file")
    assert shown["workers"] == (8, "default")


def test_the_file_keeps_its_older_spellings_and_refuses_unknown_keys(tmp_path: Path) -> None:
    config = tmp_path / "govc.toml"
    config.write_text('auto_create = false\n[webhooks]\nallow = ["127.0.0.0/8"]\n')
    shown = _printed(["--config", str(config)])
    assert shown["auto_create"] == (False, "config file")
    assert shown["webhook_allow"] == (["127.0.0.0/8"], "config file")
    for bad, message in (("rate_limt = 5\n", "unknown setting 'rate_limt'"),
                         ("[webhooks]\ndeny = []\n", "unknown setting 'webhooks.deny'"),
                         ("port = 'many'\n", "'many' is not a valid integer"),
                         ("max_push_size = 'huge'\n", "bad size 'huge'"),
                         ("port = [\n", "cannot read")):
        config.write_text(bad)
        result = CliRunner().invoke(main, ["serve", "--config", str(config), "--print-config"])
        assert result.exit_code == 2 and message in result.output, (bad, result.output)
    bad_env = CliRunner().invoke(main, ["serve", "--print-config"], env={"GOVC_LOG_FORMAT": "xml"})
    assert bad_env.exit_code == 2 and "GOVC_LOG_FORMAT" in bad_env.output


def test_settings_reach_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``serve`` hands aiohttp and the app, from a mix of sources (aiohttp's run_app is the
    seam: the server itself is exercised by the process-level tests)."""
    import govc.cli as cli
    from govc.logs import JsonAccessLogger
    from govc.server import CONFIG

    seen: dict[str, Any] = {}

    def run_app(app: Any, **kwargs: Any) -> None:
        seen.update(kwargs, config=app[CONFIG])

    monkeypatch.setattr(cli.web, "run_app", run_app)
    config = tmp_path / "govc.toml"
    config.write_text(f'data = "{tmp_path / "data"}"\nshutdown_timeout = 4\nmax_push_size = "1GiB"\n'
                      'rate_burst = 9\npublic_url = "https://git.example.com/"\n')
    env = {"GOVC_LOG_FORMAT": "json", "GOVC_GIT_CONCURRENCY": "3", "GOVC_WORKERS": "2"}
    result = CliRunner().invoke(main, ["serve", "--config", str(config), "--rate-limit", "12",
                                       "--client-concurrency", "5", "--queue-timeout", "7",
                                       "--max-fetch-request", "2MiB", "--no-auto-create"], env=env)
    assert result.exit_code == 0, result.output
    server = seen["config"]
    assert server.shutdown_timeout == 4.0 and seen["handle_signals"] is False  # govc drains itself
    assert seen["access_log_class"] is JsonAccessLogger
    assert (server.workers, server.auto_create, server.public_url) == (2, False, "https://git.example.com")
    limits = server.limits
    assert (limits.rate, limits.burst, limits.client_concurrency, limits.git_concurrency) == (12.0, 9, 5, 3)
    assert (limits.queue_timeout, limits.max_fetch_request, limits.max_push) == (7.0, 2 << 20, 1 << 30)
