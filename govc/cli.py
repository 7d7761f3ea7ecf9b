"""The ``govc`` command line (``govc serve`` for now)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from aiohttp import web

from govc.registry import Registry
from govc.server import ServerConfig, make_app
from storage.disk import DataDirectory
from storage.errors import StorageError

DEFAULT_PORT = 4870
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs "%{User-Agent}i"'


@contextlib.contextmanager
def progress_bar(label: str, quiet: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A ``(done, total)`` callback drawing a bar with counts and a rate on a terminal; silent when
    stderr is not a terminal or with ``-q``."""
    if quiet or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    started = time.monotonic()
    state: dict[str, Any] = {"bar": None, "done": 0}

    def rate(_item: object) -> str:
        elapsed = max(time.monotonic() - started, 1e-6)
        return f"{state['done'] / elapsed:,.0f}/s"

    def update(done: int, total: int) -> None:
        if state["bar"] is None:
            state["bar"] = click.progressbar(length=max(total, 1), label=label, file=sys.stderr,
                                             show_pos=True, item_show_func=rate)
            state["bar"].__enter__()
        state["bar"].update(done - state["done"])
        state["done"] = done

    try:
        yield update
    finally:
        if state["bar"] is not None:
            state["bar"].__exit__(None, None, None)


def default_data_dir() -> Path:
    """``$GOVC_DATA``, else the XDG data directory (``~/.local/share/govc``)."""
    env = os.environ.get("GOVC_DATA")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "govc"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="govc")
def main() -> None:
    """govc: a memory-first Git server and library."""


def _cidrs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    import ipaddress

    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a CIDR such as 127.0.0.0/8") from None
    return values


def _load_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    """``--config FILE`` (TOML) supplies defaults for serve's options; flags still win."""
    if value is None:
        return None
    import tomllib

    try:
        config = tomllib.loads(value.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise click.BadParameter(f"cannot read {value}: {e}") from None
    known = {"data": "data_dir", "memory": "memory", "host": "host", "port": "port", "quiet": "quiet",
             "admin_token": "admin_token", "auth": "auth", "anonymous_read": "anonymous_read"}
    defaults: dict[str, Any] = {}
    for key, item in config.items():
        if key in known:
            defaults[known[key]] = item
        elif key == "auto_create":
            defaults["no_auto_create"] = not item
        elif key == "webhooks" and isinstance(item, dict):
            defaults["webhook_allow"] = list(item.get("allow", []))
        else:
            raise click.BadParameter(f"{value}: unknown setting {key!r}")
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


@main.command()
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              envvar="GOVC_CONFIG", is_eager=True, expose_value=False, callback=_load_config,
              help="TOML settings file (data, memory, host, port, auto_create, admin_token, auth, "
                   "anonymous_read, [webhooks] allow); $GOVC_CONFIG.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data directory (default: $GOVC_DATA or ~/.local/share/govc).")
@click.option("--memory", is_flag=True, help="Keep everything in memory; no disk at all.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="Port to listen on.")
@click.option("--no-auto-create", is_flag=True, help="Refuse pushes to repositories that do not exist.")
@click.option("-q", "--quiet", is_flag=True, help="Do not log each request.")
@click.option("--webhook-allow", "webhook_allow", multiple=True, metavar="CIDR", callback=_cidrs,
              help="Let webhooks reach this private/loopback range (repeatable), e.g. 127.0.0.0/8.")
@click.option("--admin-token", envvar="GOVC_ADMIN_TOKEN", default=None,
              help="Require this bearer token for the webhook management API ($GOVC_ADMIN_TOKEN).")
@click.option("--auth", is_flag=True,
              help="Require an access token (see 'govc token') for everything but /healthz.")
@click.option("--anonymous-read", is_flag=True, help="With --auth: let clients without a token fetch.")
def serve(data_dir: Path | None, memory: bool, host: str, port: int, no_auto_create: bool,
          quiet: bool, webhook_allow: tuple[str, ...], admin_token: str | None, auth: bool,
          anonymous_read: bool) -> None:
    """Serve every repository over Git's smart HTTP protocol.

    \b
    Examples:
      govc serve                              # embedded default data directory
      govc serve --data /srv/govc --host 0.0.0.0 --port 8080
      govc serve --config /etc/govc.toml
      govc serve --auth --data /srv/govc      # tokens from 'govc token create'
      git clone http://127.0.0.1:4870/infra.git
    """
    if memory and auth:
        raise click.ClickException("--auth needs a data directory (tokens live in its database); "
                                   "it cannot be combined with --memory")
    if anonymous_read and not auth:
        raise click.UsageError("--anonymous-read only makes sense with --auth")
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    directory: DataDirectory | None = None
    where = "memory only, nothing is written to disk"
    started = time.monotonic()
    if not memory:
        data_dir = data_dir or default_data_dir()
        try:
            directory = DataDirectory(data_dir)
            with progress_bar("loading repositories", quiet) as progress:
                registry = Registry(directory, progress)
        except StorageError as e:
            raise click.ClickException(str(e)) from None
        where = f"data directory {data_dir}"
    else:
        registry = Registry()
    loaded = time.monotonic() - started
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        app = make_app(registry, ServerConfig(auto_create=not no_auto_create,
                                              webhook_allow=list(webhook_allow),
                                              public_url=f"http://{shown}:{port}",
                                              admin_token=admin_token or None,
                                              auth=auth, anonymous_read=anonymous_read))
    except ValueError as e:  # e.g. a malformed $GOVC_WEBHOOK_BACKOFF
        raise click.ClickException(str(e)) from None
    if directory is not None:
        click.echo(f"loaded {len(registry)} repositories ({registry.object_count()} objects) "
                   f"in {loaded:.2f}s")
    click.echo(f"govc serving http://{shown}:{port}/ ({where})")
    click.echo(f"  clone with: git clone http://{shown}:{port}/<name>.git")
    click.echo(f"  a push to http://{shown}:{port}/<name>.git creates the repository")
    if auth:
        click.echo("  authentication on: a token from 'govc token create' as the password"
                   + (" (anonymous clients may fetch)" if anonymous_read else ""))
    sys.stdout.flush()
    web.run_app(app, host=host, port=port, print=None,
                access_log=None if quiet else logging.getLogger("govc.access"),
                access_log_format=ACCESS_LOG_FORMAT)


def _directory(data_dir: Path | None) -> DataDirectory:
    try:
        return DataDirectory(data_dir or default_data_dir())
    except StorageError as e:
        raise click.ClickException(str(e)) from None


@main.command("import")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data directory (default: $GOVC_DATA or ~/.local/share/govc).")
@click.option("--name", default=None, help="Repository name (default: from PATH).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def import_command(path: Path, data_dir: Path | None, name: str | None, quiet: bool) -> None:
    """Load an existing git repository (bare or not) into a data directory.

    \b
    Examples:
      govc import ~/src/infra                 # becomes infra.git
      govc import /srv/git/app.git --name team/app --data /srv/govc

    A running server sees the repository after a restart.
    """
    from govc.portability import import_repository

    directory = _directory(data_dir)
    started = time.monotonic()
    try:
        with progress_bar("indexing objects", quiet) as progress:
            repo = import_repository(directory, path, name, progress)
    except (StorageError, ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"imported {repo.name}: {len(repo.refs)} refs, {len(repo.objects)} objects "
               f"in {time.monotonic() - started:.2f}s")


@main.command("export")
@click.argument("name")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data directory (default: $GOVC_DATA or ~/.local/share/govc).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def export_command(name: str, dest: Path, data_dir: Path | None, quiet: bool) -> None:
    """Write repository NAME as a bare git repository at DEST.

    \b
    Examples:
      govc export infra /tmp/infra.git && git -C /tmp/infra.git log --oneline
    """
    from govc.portability import export_repository
    from govc.registry import normalize_name
    from govc.repository import Repository

    directory = _directory(data_dir)
    try:
        key = normalize_name(name)
        if key not in directory.repo_names():
            raise click.ClickException(f"no repository '{key}' in {directory.path}")
        repo = Repository.restore(key, directory.backend(key))
        with progress_bar("writing objects", quiet) as progress:
            export_repository(repo, dest, progress)
    except (StorageError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"exported {key} to {dest}")


@main.group()
def hooks() -> None:
    """Manage git hook executables (pre-receive, update, post-receive).

    \b
    Hooks live in DATA/hooks/<repo>/<hook> (DATA/hooks/_global/<hook> for every repository) and
    are picked up on the next push, without a restart.
    """


@hooks.command("set")
@click.argument("repo")
@click.argument("hook_name", type=click.Choice(["pre-receive", "update", "post-receive"]))
@click.argument("script", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data directory (default: $GOVC_DATA or ~/.local/share/govc).")
def hooks_set(repo: str, hook_name: str, script: Path, data_dir: Path | None) -> None:
    """Install SCRIPT as REPO's HOOK_NAME hook (REPO "_global": every repository).

    \b
    Examples:
      govc hooks set infra pre-receive ./check-terraform.sh
      govc hooks set _global post-receive ./notify.sh --data /srv/govc
    """
    from govc.hooks import GLOBAL, install_hook
    from govc.registry import normalize_name

    directory = _directory(data_dir)
    try:
        name = GLOBAL if repo == GLOBAL else normalize_name(repo)
        target = install_hook(directory.path / "hooks", name, hook_name, script)
    except (OSError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"installed {target}")


@hooks.command("list")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data directory (default: $GOVC_DATA or ~/.local/share/govc).")
def hooks_list(data_dir: Path | None) -> None:
    """List installed hook executables."""
    root = _directory(data_dir).path / "hooks"
    for path in sorted(root.rglob("*")) if root.exists() else []:
        if path.is_file():
            click.echo(str(path.relative_to(root)))


@main.command()
@click.argument("repo", required=False)
@click.option("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}", show_default=True,
              help="The govc server.")
@click.option("--since", type=int, default=None, help="Replay events after this id first.")
@click.option("--branch", multiple=True, help="Only these branches (glob; repeatable).")
@click.option("--path", "paths", multiple=True, help="Only changes touching these paths (glob; repeatable).")
@click.option("--exec", "command", default=None,
              help="Run this shell command per event, with the event as JSON in $GOVC_EVENT.")
@click.option("--json", "as_json", is_flag=True, help="Print each event as one JSON line.")
def watch(repo: str | None, url: str, since: int | None, branch: tuple[str, ...], paths: tuple[str, ...],
          command: str | None, as_json: bool) -> None:
    """Print ref updates live (follows the server's event stream, reconnecting as needed).

    \b
    Examples:
      govc watch infra --branch main --path '*.tf'
      govc watch --since 0 --json | jq .
      govc watch infra --exec 'echo "$GOVC_EVENT" | ./deploy.sh'
    """
    import asyncio
    import json as jsonlib
    import subprocess
    from urllib.parse import urlencode

    import aiohttp

    base = url.rstrip("/")
    path = f"/{repo.removesuffix('.git')}.git/events" if repo else "/events"
    query = urlencode([("branch", b) for b in branch] + [("path", p) for p in paths])

    def show(data: dict[str, object]) -> None:
        if as_json:
            click.echo(jsonlib.dumps(data))
        else:
            for change in data.get("changes", []):  # type: ignore[union-attr]
                click.echo(f"#{data['id']} {data['repository']} {change['ref']} "
                           f"{change['old'][:8]}..{change['new'][:8]} {data['source']} by {data['who']}")
        if command:
            subprocess.run(command, shell=True, env=dict(os.environ, GOVC_EVENT=jsonlib.dumps(data)),
                           check=False)
        sys.stdout.flush()

    async def follow() -> None:
        last = since
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=60)) as session:
            while True:
                headers = {"Last-Event-ID": str(last)} if last is not None else {}
                try:
                    async with session.get(f"{base}{path}?{query}", headers=headers) as response:
                        if response.status != 200:
                            raise click.ClickException(f"{base}{path}: HTTP {response.status}")
                        data_line = ""
                        async for raw in response.content:
                            line = raw.decode().rstrip("\n")
                            if line.startswith("data: "):
                                data_line = line[6:]
                            elif not line and data_line:
                                event = jsonlib.loads(data_line)
                                last = int(event["id"])
                                show(event)
                                data_line = ""
                except (aiohttp.ClientError, TimeoutError):
                    await asyncio.sleep(1)  # the server restarted or the network blinked: resume

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow())


@main.group()
def webhooks() -> None:
    """Manage webhooks (GitHub-compatible push payloads, signed, delivered at least once).

    \b
    Works on the data directory, also while a server runs on it: the server's delivery worker
    picks new hooks up. The same is available as a JSON API (/api/v1/repos/<repo>/hooks).
    """


def _webhook_manager(data_dir: Path | None, allow: tuple[str, ...] = ()) -> Any:
    from govc.webhooks import WebhookManager

    return WebhookManager(Registry(_directory(data_dir)), allow=allow)


@webhooks.command("add")
@click.argument("repo")
@click.argument("url")
@click.option("--secret", default="", help="Shared secret for X-Hub-Signature-256.")
@click.option("--content-type", type=click.Choice(["json", "form"]), default="json", show_default=True)
@click.option("--branch", "branches", multiple=True, help="Only these branches (glob; repeatable).")
@click.option("--path", "paths", multiple=True, help="Only pushes touching these paths (glob; repeatable).")
@click.option("--allow", multiple=True, metavar="CIDR",
              help="Accept a private/loopback target in this range (the server needs --webhook-allow too).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data directory (default: $GOVC_DATA or ~/.local/share/govc).")
def webhooks_add(repo: str, url: str, secret: str, content_type: str, branches: tuple[str, ...],
                 paths: tuple[str, ...], allow: tuple[str, ...], data_dir: Path | None) -> None:
    """Send REPO's push events to URL (REPO "_global": every repository).

    \b
    Examples:
      govc webhooks add infra https://ci.example.com/hooks/govc --secret s3cr3t --branch main
      govc webhooks add _global https://audit.example.com/events --path '*.tf'
    """
    manager = _webhook_manager(data_dir, allow)
    try:
        hook = manager.create(url, repository=None if repo == "_global" else repo, secret=secret,
                              content_type=content_type, branches=branches, paths=paths)
    except (LookupError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"webhook {hook.id}: {hook.repository or 'every repository'} -> {hook.url}")


@webhooks.command("list")
@click.argument("repo", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hook.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data directory (default: $GOVC_DATA or ~/.local/share/govc).")
def webhooks_list(repo: str | None, as_json: bool, data_dir: Path | None) -> None:
    """List webhooks (all of them, or REPO's)."""
    import json as jsonlib

    manager = _webhook_manager(data_dir)
    hooks = manager.list() if repo is None else manager.list(None if repo == "_global" else repo)
    for hook in hooks:
        if as_json:
            click.echo(jsonlib.dumps({"id": hook.id, "repository": hook.repository, "url": hook.url,
                                      "active": hook.active, "branches": list(hook.branches),
                                      "paths": list(hook.paths)}))
        else:
            state = "" if hook.active else " (inactive)"
            click.echo(f"{hook.id}\t{hook.repository or '_global'}\t{hook.url}{state}")


@webhooks.command("remove")
@click.argument("hook_id", type=int)
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data directory (default: $GOVC_DATA or ~/.local/share/govc).")
def webhooks_remove(hook_id: int, data_dir: Path | None) -> None:
    """Delete webhook HOOK_ID."""
    if not _webhook_manager(data_dir).delete(hook_id):
        raise click.ClickException(f"no webhook {hook_id}")
    click.echo(f"removed webhook {hook_id}")


@main.group()
def token() -> None:
    """Manage access tokens for 'govc serve --auth'.

    \b
    A token is shown once, when created; only its SHA-256 hash is stored (in DATA/govc.db).
    Git sends it as the password (any user name), API clients as 'Authorization: Bearer <token>'.
    Access: read (fetch, GET API), write (also push), admin (also every other API call).
    Works on the data directory, also while a server runs on it.
    """


_DATA_OPTION = click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path),
                            default=None, help="Data directory (default: $GOVC_DATA or ~/.local/share/govc).")


def _tokens(data_dir: Path | None) -> Any:
    from govc.auth import TokenStore

    return TokenStore(_directory(data_dir))


@token.command("create")
@click.argument("name")
@click.option("--repo", default=None, help="Limit the token to this repository (default: every one).")
@click.option("--access", type=click.Choice(["read", "write", "admin"]), default="read", show_default=True)
@click.option("--expires", default=None, metavar="DURATION",
              help="Expire after e.g. 12h, 30d, 2w (default: never).")
@_DATA_OPTION
def token_create(name: str, repo: str | None, access: str, expires: str | None,
                 data_dir: Path | None) -> None:
    """Create token NAME and print it (the only time it is shown).

    \b
    Examples:
      govc token create ci --repo infra --access write --expires 30d --data /srv/govc
      TOKEN=$(govc token create reader)
      git clone http://x:$TOKEN@127.0.0.1:4870/infra.git
    """
    from govc.auth import TokenError, parse_duration

    try:
        seconds = parse_duration(expires) if expires is not None else None
        created, secret = _tokens(data_dir).create(name, repo=repo, access=access, expires_in=seconds)
    except TokenError as e:
        raise click.ClickException(str(e)) from None
    until = f", expires {_when(created.expires)}" if created.expires is not None else ""
    click.echo(f"token {created.id} '{created.name}': {created.access} access to "
               f"{created.repo or 'every repository'}{until}. Store it now; it is not shown again:", err=True)
    click.echo(secret)


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per token.")
@_DATA_OPTION
def token_list(as_json: bool, data_dir: Path | None) -> None:
    """List tokens (never their secrets).

    \b
    Examples:
      govc token list --data /srv/govc
    """
    import json as jsonlib

    for item in _tokens(data_dir).list():
        if as_json:
            click.echo(jsonlib.dumps({"id": item.id, "name": item.name, "repo": item.repo,
                                      "access": item.access, "created": item.created, "expires": item.expires,
                                      "revoked": item.revoked, "status": item.status()}))
        else:
            click.echo(f"{item.id}\t{item.name}\t{item.scope}\t{item.access}\tcreated {_when(item.created)}"
                       f"\texpires {_when(item.expires)}\t{item.status()}")


@token.command("revoke")
@click.argument("name_or_id")
@_DATA_OPTION
def token_revoke(name_or_id: str, data_dir: Path | None) -> None:
    """Revoke the active token NAME_OR_ID; it stops working at once, also on a running server.

    \b
    Examples:
      govc token revoke ci --data /srv/govc
      govc token revoke 3
    """
    revoked = _tokens(data_dir).revoke(name_or_id)
    if not revoked:
        raise click.ClickException(f"no active token {name_or_id!r}")
    for item in revoked:
        click.echo(f"revoked token {item.id} '{item.name}'")


from govc import worktree as _worktree  # noqa: E402  (the work-tree commands: init, add, commit, ...)

for _command in _worktree.COMMANDS:
    main.add_command(_command)


@main.group()
def protect() -> None:
    """Protect branches and ref namespaces against force-pushes, deletion or unlisted writers.

    \b
    Rules take effect on a running server at once (they are read on each push).
    """


@protect.command("add")
@click.argument("repo")
@click.argument("pattern")
@click.option("--allow-force", is_flag=True, help="Allow force-pushes (default: refused).")
@click.option("--allow-delete", is_flag=True, help="Allow deletion (default: refused).")
@click.option("--writer", "writers", multiple=True,
              help="Only this token name may update the refs (repeatable; needs `govc serve --auth`).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data directory (default: $GOVC_DATA or ~/.local/share/govc).")
def protect_add(repo: str, pattern: str, allow_force: bool, allow_delete: bool, writers: tuple[str, ...],
                data_dir: Path | None) -> None:
    """Protect refs matching PATTERN in REPO (REPO "_global": every repository).

    \b
    Examples:
      govc protect add infra refs/heads/main                  # no force-push, no delete
      govc protect add _global 'refs/tags/v*' --writer ci     # only the "ci" token makes releases
    """
    from govc.protection import ProtectionStore
    from govc.registry import normalize_name

    try:
        name = None if repo == "_global" else normalize_name(repo)
        rule = ProtectionStore(_directory(data_dir)).add(name, pattern, no_force=not allow_force,
                                                         no_delete=not allow_delete, writers=writers)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"rule {rule.id}: {rule.repository or '_global'} {rule.pattern}")


@protect.command("list")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data directory (default: $GOVC_DATA or ~/.local/share/govc).")
def protect_list(data_dir: Path | None) -> None:
    """List protection rules."""
    from govc.protection import ProtectionStore

    for r in ProtectionStore(_directory(data_dir)).rules():
        what = [w for w, on in (("no-force", r.no_force), ("no-delete", r.no_delete)) if on]
        if r.writers:
            what.append("writers=" + ",".join(r.writers))
        click.echo(f"{r.id}\t{r.repository or '_global'}\t{r.pattern}\t{' '.join(what)}")


@protect.command("remove")
@click.argument("rule_id", type=int)
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data directory (default: $GOVC_DATA or ~/.local/share/govc).")
def protect_remove(rule_id: int, data_dir: Path | None) -> None:
    """Delete protection rule RULE_ID."""
    from govc.protection import ProtectionStore

    if not ProtectionStore(_directory(data_dir)).remove(rule_id):
        raise click.ClickException(f"no rule {rule_id}")
    click.echo(f"removed rule {rule_id}")
