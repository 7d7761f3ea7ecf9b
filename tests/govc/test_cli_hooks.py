"""``govc hooks set|list``: scripts land where the receive path looks for them, executable."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from govc.cli import main
from govc.hooks import hook_paths


def test_hooks_set_installs_an_executable_the_push_path_finds(tmp_path: Path) -> None:
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    data = tmp_path / "data"
    runner = CliRunner()
    result = runner.invoke(main, ["hooks", "set", "team/app", "pre-receive", str(script),
                                  "--data", str(data)])
    assert result.exit_code == 0, result.output
    installed = data / "hooks" / "team/app" / "pre-receive"
    assert installed.read_text() == script.read_text()
    assert os.access(installed, os.X_OK)
    assert hook_paths(data / "hooks", "team/app", "pre-receive") == [installed]
    result = runner.invoke(main, ["hooks", "set", "_global", "post-receive", str(script),
                                  "--data", str(data)])
    assert result.exit_code == 0
    listed = runner.invoke(main, ["hooks", "list", "--data", str(data)])
    assert listed.output.split() == ["_global/post-receive", "team/app/pre-receive"]


def test_hooks_set_refuses_unknown_hooks_and_bad_names(tmp_path: Path) -> None:
    script = tmp_path / "x.sh"
    script.write_text("#!/bin/sh\n")
    runner = CliRunner()
    data = str(tmp_path / "d")
    bad_hook = runner.invoke(main, ["hooks", "set", "app", "pre-commit", str(script), "--data", data])
    assert bad_hook.exit_code == 2  # usage: not a hook govc runs
    bad_repo = runner.invoke(main, ["hooks", "set", "../x", "update", str(script), "--data", data])
    assert bad_repo.exit_code == 1 and "Error:" in bad_repo.output


def test_webhooks_add_list_remove(tmp_path: Path) -> None:
    """The CLI writes hooks where the server's delivery worker reads them."""
    from govc.registry import Registry
    from govc.webhooks import WebhookManager
    from storage.disk import DataDirectory

    data = tmp_path / "data"
    Registry(DataDirectory(data)).create("infra")
    runner = CliRunner()
    added = runner.invoke(main, ["webhooks", "add", "infra", "https://ci.example.com/hook", "--secret", "s",
                                 "--branch", "main", "--data", str(data)])
    assert added.exit_code == 0, added.output
    refused = runner.invoke(main, ["webhooks", "add", "infra", "http://127.0.0.1:9/x", "--data", str(data)])
    assert refused.exit_code == 1 and "loopback" in refused.output
    missing = runner.invoke(main, ["webhooks", "add", "nope", "https://x.example.com/", "--data", str(data)])
    assert missing.exit_code == 1
    hooks = WebhookManager(Registry(DataDirectory(data))).list()
    assert [(h.repository, h.url, h.secret, h.branches) for h in hooks] == [
        ("infra", "https://ci.example.com/hook", "s", ("main",))]
    listed = runner.invoke(main, ["webhooks", "list", "--data", str(data)])
    assert "https://ci.example.com/hook" in listed.output
    removed = runner.invoke(main, ["webhooks", "remove", str(hooks[0].id), "--data", str(data)])
    assert removed.exit_code == 0
    assert WebhookManager(Registry(DataDirectory(data))).list() == []


def test_serve_reads_a_toml_config_file(tmp_path: Path, monkeypatch) -> None:
    """Settings come from the file, flags still win, and unknown settings are a usage error."""
    import govc.cli as cli

    seen: dict[str, object] = {}

    def fake_run_app(app, **kwargs) -> None:  # type: ignore[no-untyped-def]
        from govc.server import CONFIG

        seen.update(host=kwargs["host"], port=kwargs["port"], config=app[CONFIG])

    monkeypatch.setattr(cli.web, "run_app", fake_run_app)
    config = tmp_path / "govc.toml"
    config.write_text(f'data = "{tmp_path / "data"}"\nport = 9999\nauto_create = false\n'
                      f'admin_token = "t0k"\n[webhooks]\nallow = ["127.0.0.0/8"]\n')
    result = CliRunner().invoke(main, ["serve", "--config", str(config), "--port", "9998"])
    assert result.exit_code == 0, result.output
    assert seen["port"] == 9998  # the flag wins over the file
    server_config = seen["config"]
    assert server_config.auto_create is False  # type: ignore[attr-defined]
    assert server_config.admin_token == "t0k"  # type: ignore[attr-defined]
    assert server_config.webhook_allow == ["127.0.0.0/8"]  # type: ignore[attr-defined]
    assert (tmp_path / "data" / "govc.json").exists()
    config.write_text("colour = 'blue'\n")
    assert CliRunner().invoke(main, ["serve", "--config", str(config)]).exit_code == 2


def test_admin_token_guards_webhook_management() -> None:
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from govc.registry import Registry
    from govc.server import ServerConfig, make_app

    async def scenario() -> list[int]:
        registry = Registry()
        registry.create("infra")
        app = make_app(registry, ServerConfig(admin_token="s3cret", maintenance_interval=0))
        async with TestClient(TestServer(app)) as client:
            body = {"config": {"url": "https://ci.example.com/x"}, "events": ["push"]}
            statuses = [(await client.post("/api/v1/repos/infra/hooks", json=body)).status]
            statuses.append((await client.get("/api/v1/repos/infra/hooks",
                                              headers={"Authorization": "Bearer nope"})).status)
            ok = await client.post("/api/v1/repos/infra/hooks", json=body,
                                   headers={"Authorization": "Bearer s3cret"})
            statuses.append(ok.status)
            statuses.append((await client.get("/healthz")).status)  # everything else is open
            return statuses

    assert asyncio.run(scenario()) == [401, 401, 201, 200]
