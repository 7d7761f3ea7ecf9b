"""The ``govc`` command line (``govc serve`` for now)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from aiohttp import web

from govc.limits import Limits
from govc.logs import ACCESS_LOG_FORMAT, access_logger_class, setup_logging, teardown_logging
from govc.registry import Registry
from govc.server import STRAGGLERS, ServerConfig, graceful_signals, make_app
from govc.settings import SIZE, setting
from storage.disk import DataDirectory
from storage.errors import StorageError

if TYPE_CHECKING:
    from storage.postgres import PostgresDirectory

DEFAULT_PORT = 4870


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
    """``--config FILE`` (TOML): defaults for every serve option (see govc.settings)."""
    if value is not None:
        from govc.settings import load_config_file

        load_config_file(ctx, value)
    return value


_LIMITS = Limits()
_SERVER_DEFAULTS = ServerConfig()


@main.command()
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              envvar="GOVC_CONFIG", show_envvar=True, is_eager=True, expose_value=False,
              callback=_load_config,
              help="TOML file setting any option below by its long name with '_' for '-' "
                   "(port = 8080, log_format = \"json\", auto_create = false...).")
@setting("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
         help="Data directory (default: ~/.local/share/govc).")
@setting("--memory", is_flag=True, help="Keep everything in memory; no disk at all.")
@setting("--backend", default=None, metavar="DSN",
         help="Keep repositories in this PostgreSQL database (postgresql://...), shared with other "
              "nodes; --data then only holds node-local files (hook scripts).")
@setting("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@setting("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535),
         help="Port to listen on.")
@setting("--public-url", default=None,
         help="The server's URL as clients see it, for webhook payloads (default: http://HOST:PORT).")
@setting("--auto-create/--no-auto-create", default=True, show_default=True,
         help="Create a repository on the first push to it.")
@setting("-q", "--quiet", is_flag=True, help="Do not log each request.")
@setting("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
         help="Log lines as text, or as one JSON object each (with request ids).")
@setting("--webhook-allow", "webhook_allow", multiple=True, metavar="CIDR", callback=_cidrs,
         help="Let webhooks reach this private/loopback range (repeatable), e.g. 127.0.0.0/8.")
@setting("--admin-token", default=None, help="Require this bearer token for the webhook management API.")
@setting("--auth", is_flag=True,
         help="Require an access token (see 'govc token') for everything but /healthz.")
@setting("--anonymous-read", is_flag=True, help="With --auth: let clients without a token fetch.")
@setting("--workers", type=click.IntRange(1, 1024), default=_SERVER_DEFAULTS.workers, show_default=True,
         help="Threads for packing, unpacking and other CPU-bound work.")
@setting("--shutdown-timeout", type=click.FloatRange(0), default=_SERVER_DEFAULTS.shutdown_timeout,
         show_default=True, metavar="SECONDS",
         help="On SIGTERM/SIGINT, time for requests in flight and due webhooks to finish.")
@setting("--rate-limit", type=click.FloatRange(0), default=_LIMITS.rate, show_default=True,
         metavar="PER_SECOND", help="Requests per second per client (token, else address); 0: off.")
@setting("--rate-burst", type=click.IntRange(1), default=_LIMITS.burst, show_default=True,
         help="Requests a client may make at once before --rate-limit applies.")
@setting("--client-concurrency", type=click.IntRange(0), default=_LIMITS.client_concurrency,
         show_default=True, help="Requests in progress per client; 0: unlimited.")
@setting("--git-concurrency", type=click.IntRange(0), default=_LIMITS.git_concurrency, show_default=True,
         help="Clones, fetches and pushes in progress across all clients (more wait, fairly); 0: unlimited.")
@setting("--queue-timeout", type=click.FloatRange(0), default=_LIMITS.queue_timeout, show_default=True,
         metavar="SECONDS", help="How long a clone/fetch/push waits for --git-concurrency before a 503.")
@setting("--max-fetch-request", type=SIZE, default=_LIMITS.max_fetch_request, metavar="SIZE",
         help="Largest upload-pack (fetch) request body [default: 64MiB].")
@setting("--max-push-size", type=SIZE, default=_LIMITS.max_push, metavar="SIZE",
         help="Largest push [default: 4GiB].")
@click.option("--print-config", is_flag=True,
              help="Print the effective settings as TOML (and where each came from), then exit.")
@click.pass_context
def serve(ctx: click.Context, data_dir: Path | None, memory: bool, backend: str | None, host: str, port: int,
          public_url: str | None, auto_create: bool, quiet: bool, log_format: str,
          webhook_allow: tuple[str, ...], admin_token: str | None, auth: bool, anonymous_read: bool,
          workers: int, shutdown_timeout: float, rate_limit: float, rate_burst: int,
          client_concurrency: int, git_concurrency: int, queue_timeout: float, max_fetch_request: int,
          max_push_size: int, print_config: bool) -> None:
    """Serve every repository over Git's smart HTTP protocol.

    Every option is also an environment variable (shown below) and a key of the --config file;
    the command line wins over the environment, which wins over the file.

    \b
    Examples:
      govc serve                              # embedded default data directory
      govc serve --data /srv/govc --host 0.0.0.0 --port 8080
      govc serve --config /etc/govc.toml --log-format json
      GOVC_PORT=8080 GOVC_RATE_LIMIT=0 govc serve
      govc serve --auth --data /srv/govc      # tokens from 'govc token create'
      govc serve --backend postgresql://govc@db/govc --port 8080   # one of several nodes
      git clone http://127.0.0.1:4870/infra.git
    """
    if print_config:
        from govc.settings import describe

        shown_data = data_dir or (None if memory else default_data_dir())
        click.echo(describe(ctx, {**ctx.params, "data_dir": shown_data}))
        return
    if memory and auth:
        raise click.ClickException("--auth needs a data directory (tokens live in its database); "
                                   "it cannot be combined with --memory")
    if anonymous_read and not auth:
        raise click.UsageError("--anonymous-read only makes sense with --auth")
    setup_logging(log_format, logging.WARNING if quiet else logging.INFO)
    ctx.call_on_close(teardown_logging)  # matters when serve is called in-process (tests, embedding)
    announce = logging.getLogger("govc.serve").info if log_format == "json" else click.echo
    directory: DataDirectory | PostgresDirectory | None = None
    where = "memory only, nothing is written to disk"
    started = time.monotonic()
    if backend:
        if memory:
            raise click.UsageError("--backend and --memory exclude each other")
        from storage.postgres import PostgresDirectory

        try:
            directory = PostgresDirectory(backend)
            with progress_bar("loading repositories", quiet) as progress:
                registry = Registry(directory, progress,
                                    hooks_dir=data_dir / "hooks" if data_dir is not None else None)
        except StorageError as e:
            raise click.ClickException(str(e)) from None
        where = f"shared PostgreSQL database {directory.name}"
    elif not memory:
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
    limits = Limits(rate=rate_limit, burst=rate_burst, client_concurrency=client_concurrency,
                    git_concurrency=git_concurrency, queue_timeout=queue_timeout,
                    max_fetch_request=max_fetch_request, max_push=max_push_size)
    try:
        app = make_app(registry, ServerConfig(auto_create=auto_create, workers=workers,
                                              webhook_allow=list(webhook_allow),
                                              public_url=(public_url or f"http://{shown}:{port}").rstrip("/"),
                                              admin_token=admin_token or None,
                                              auth=auth, anonymous_read=anonymous_read,
                                              limits=limits, shutdown_timeout=shutdown_timeout))
    except ValueError as e:  # e.g. a malformed $GOVC_WEBHOOK_BACKOFF
        raise click.ClickException(str(e)) from None
    if directory is not None:
        announce(f"loaded {len(registry)} repositories ({registry.object_count()} objects) "
                 f"in {loaded:.2f}s")
    announce(f"govc serving http://{shown}:{port}/ ({where})")
    announce(f"  clone with: git clone http://{shown}:{port}/<name>.git")
    if auto_create:
        announce(f"  a push to http://{shown}:{port}/<name>.git creates the repository")
    if auth:
        announce("  authentication on: a token from 'govc token create' as the password"
                 + (" (anonymous clients may fetch)" if anonymous_read else ""))
    sys.stdout.flush()
    graceful_signals(app)  # SIGTERM/SIGINT: drain for up to --shutdown-timeout, then stop
    web.run_app(app, host=host, port=port, print=None, handle_signals=False, shutdown_timeout=STRAGGLERS,
                access_log=None if quiet else logging.getLogger("govc.access"),
                access_log_class=access_logger_class(log_format), access_log_format=ACCESS_LOG_FORMAT)
    logging.getLogger("govc.serve").info("govc stopped")


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
@click.option("--token", envvar="GOVC_TOKEN", default=None,
              help="Access token for a server running with --auth ($GOVC_TOKEN).")
def watch(repo: str | None, url: str, since: int | None, branch: tuple[str, ...], paths: tuple[str, ...],
          command: str | None, as_json: bool, token: str | None) -> None:
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
                if token:
                    headers["Authorization"] = f"Bearer {token}"
                try:
                    async with session.get(f"{base}{path}?{query}", headers=headers) as response:
                        if response.status != 200:
                            reason = (await response.text()).strip()
                            raise click.ClickException(f"{base}{path}: HTTP {response.status} {reason}")
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


def _remember_backend(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    ctx.meta["govc.backend"] = value


_BACKEND_OPTION = click.option(
    "--backend", envvar="GOVC_BACKEND", default=None, expose_value=False, callback=_remember_backend,
    metavar="postgresql://...",
    help="The cluster's PostgreSQL database instead of a data directory ($GOVC_BACKEND).")


def _DATA_OPTION(command: Any) -> Any:
    """``--data DIR`` or ``--backend URL``: where tokens, grants and protections live."""
    command = _BACKEND_OPTION(command)
    return click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Data directory (default: $GOVC_DATA or ~/.local/share/govc).")(command)


def _site(data_dir: Path | None) -> Any:
    """The site database a command works on: the cluster's PostgreSQL (``--backend``) or the
    data directory's SQLite."""
    backend = click.get_current_context().meta.get("govc.backend")
    if not backend:
        return _directory(data_dir)
    from storage.postgres import PostgresDirectory

    try:
        return PostgresDirectory(backend)
    except StorageError as e:
        raise click.ClickException(str(e)) from None


def _tokens(data_dir: Path | None) -> Any:
    from govc.auth import TokenStore

    return TokenStore(_site(data_dir))


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
@click.option("--require-validator", "validators", multiple=True, metavar="NAME",
              help="Refuse pushes unless this validator is installed: a Python validator's name, or "
                   "the pre-receive/update hook script (repeatable).")
@_DATA_OPTION
def protect_add(repo: str, pattern: str, allow_force: bool, allow_delete: bool, writers: tuple[str, ...],
                validators: tuple[str, ...], data_dir: Path | None) -> None:
    """Protect refs matching PATTERN in REPO (REPO "_global": every repository).

    \b
    Examples:
      govc protect add infra refs/heads/main                  # no force-push, no delete
      govc protect add _global 'refs/tags/v*' --writer ci     # only the "ci" token makes releases
      govc protect add infra refs/heads/main --require-validator pre-receive
    """
    from govc.protection import ProtectionStore
    from govc.registry import normalize_name

    try:
        name = None if repo == "_global" else normalize_name(repo)
        rule = ProtectionStore(_site(data_dir)).add(name, pattern, no_force=not allow_force,
                                                         no_delete=not allow_delete, writers=writers,
                                                         validators=validators)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"rule {rule.id}: {rule.repository or '_global'} {rule.pattern}")


@protect.command("list")
@_DATA_OPTION
def protect_list(data_dir: Path | None) -> None:
    """List protection rules."""
    from govc.protection import ProtectionStore

    for r in ProtectionStore(_site(data_dir)).rules():
        what = [w for w, on in (("no-force", r.no_force), ("no-delete", r.no_delete)) if on]
        if r.writers:
            what.append("writers=" + ",".join(r.writers))
        if r.validators:
            what.append("validators=" + ",".join(r.validators))
        click.echo(f"{r.id}\t{r.repository or '_global'}\t{r.pattern}\t{' '.join(what)}")


@protect.command("remove")
@click.argument("rule_id", type=int)
@_DATA_OPTION
def protect_remove(rule_id: int, data_dir: Path | None) -> None:
    """Delete protection rule RULE_ID."""
    from govc.protection import ProtectionStore

    if not ProtectionStore(_site(data_dir)).remove(rule_id):
        raise click.ClickException(f"no rule {rule_id}")
    click.echo(f"removed rule {rule_id}")


@main.group()
def permission() -> None:
    """Grant access to repositories, and open repositories for anonymous reading.

    \b
    A token's access is the highest of its own (from 'govc token create') and the grants to
    its name. Changes take effect on a running server at once.
    """


def _permissions(data_dir: Path | None) -> Any:
    from govc.permissions import Permissions

    return Permissions(_site(data_dir))


@contextlib.contextmanager
def _grant_errors() -> Iterator[None]:
    """A bad principal, repository or access level as a command-line error, not a traceback."""
    from govc.permissions import GrantError

    try:
        yield
    except GrantError as e:
        raise click.ClickException(str(e)) from None


@permission.command("grant")
@click.argument("principal")
@click.argument("repo")
@click.argument("access", type=click.Choice(["read", "write", "admin"]))
@_DATA_OPTION
def permission_grant(principal: str, repo: str, access: str, data_dir: Path | None) -> None:
    """Give PRINCIPAL (a token name) ACCESS to REPO ("*": every repository).

    \b
    Examples:
      govc permission grant alice infra write --data /srv/govc
      govc permission grant auditor '*' read
    """
    with _grant_errors():
        grant = _permissions(data_dir).grant(principal, repo, access)
    click.echo(f"{grant.principal}: {grant.access} access to {grant.repo or 'every repository'}")


@permission.command("revoke")
@click.argument("principal")
@click.argument("repo")
@_DATA_OPTION
def permission_revoke(principal: str, repo: str, data_dir: Path | None) -> None:
    """Take back what PRINCIPAL was granted on REPO ("*": the every-repository grant)."""
    with _grant_errors():
        removed = _permissions(data_dir).revoke(principal, repo)
    if not removed:
        raise click.ClickException(f"{principal} has no grant on {repo}")
    click.echo(f"revoked {principal}'s grant on {repo}")


@permission.command("list")
@click.option("--repo", default=None, help="Only grants that apply to this repository.")
@_DATA_OPTION
def permission_list(repo: str | None, data_dir: Path | None) -> None:
    """List grants (principal, repository, access)."""
    with _grant_errors():
        grants = _permissions(data_dir).grants(repo)
    for g in grants:
        click.echo(f"{g.principal}\t{g.scope}\t{g.access}")


@permission.command("anonymous")
@click.argument("repo")
@click.argument("state", type=click.Choice(["on", "off"]))
@_DATA_OPTION
def permission_anonymous(repo: str, state: str, data_dir: Path | None) -> None:
    """Let clients without a token clone and fetch REPO (on) or not (off), with 'govc serve --auth'.

    \b
    Examples:
      govc permission anonymous docs on --data /srv/govc
    """
    with _grant_errors():
        _permissions(data_dir).set_anonymous_read(repo, state == "on")
    click.echo(f"anonymous read of {repo}: {state}")


@main.command("follow")
@click.argument("url")
@click.argument("reality")
@click.option("--into", default=None, metavar="URL",
              help=f"The govc repository to keep in step [default: http://127.0.0.1:{DEFAULT_PORT}/<the "
                   "repository name in URL>.git].")
@click.option("--as", "local", default=None, metavar="NAME",
              help="The reality's name on --into [default: its name on URL].")
@click.option("--token", envvar="GOVC_FOLLOW_TOKEN", default=None,
              help="Access token for URL (or put user:token@ in URL); $GOVC_FOLLOW_TOKEN.")
@click.option("--into-token", envvar="GOVC_INTO_TOKEN", default=None,
              help="Access token (write access) for --into; $GOVC_INTO_TOKEN.")
@click.option("--poll", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Also fetch this often (seconds), events or not.")
@click.option("--once", is_flag=True, help="Sync once and exit: status 0 when in step, 1 otherwise.")
def follow(url: str, reality: str, into: str | None, local: str | None, token: str | None,
           into_token: str | None, poll: float, once: bool) -> None:
    """Keep REALITY on a govc server in step with REALITY on another one (at URL).

    REALITY is a branch or reality name (a branch of that name wins) or a full ref. Changes are
    fetched with Git's own protocol as soon as URL's event stream announces them (and every
    --poll seconds); the stream is resumed from the last event after a disconnect, and a fetch
    catches up on reconnect. Each change reaches --into as a fast-forward push with
    compare-and-swap. If the reality on --into has commits URL lacks, nothing is overwritten: the
    conflict is printed and following goes on; it resumes once the conflict is resolved there
    (publish, merge or reset).

    The local side is a server URL rather than a data directory on purpose: a running
    'govc serve' holds its repositories in memory and owns its data directory, so refs written
    underneath it would go unseen and be lost. A push goes through its validators, protected refs,
    hooks and event stream like any other. Serve the data directory, then follow into it.

    Prints one line per update or conflict on stdout, connection changes on stderr. Python code
    gets the same with repo.subscribe(URL, REALITY) into a Repository it holds.

    \b
    Examples:
      govc serve --data /srv/govc &                          # this node
      govc follow http://node-a:4870/infra.git experiment
      govc follow http://node-a:4870/infra.git experiment --as node-a-experiment \\
          --into http://127.0.0.1:4870/infra.git
      GOVC_FOLLOW_TOKEN=$TOKEN govc follow https://node-a/infra.git staging --once
    """
    from govc.follow import FollowConflict, Remote, follow_into

    try:
        remote = Remote.parse(url, token)
        into = into or f"http://127.0.0.1:{DEFAULT_PORT}/{remote.repository}.git"
        Remote.parse(into)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)

    def updated(change: Any) -> None:
        old, new = change.old, change.new.decode()[:8]
        click.echo(f"created {change.name} at {new}" if old is None
                   else f"updated {change.name} {old.decode()[:8]}..{new}")
        sys.stdout.flush()

    def conflicted(conflict: FollowConflict) -> None:
        click.echo(f"conflict: {conflict}")
        sys.stdout.flush()

    try:
        follower = follow_into(url, reality, into, local=local, token=token, into_token=into_token,
                               poll=poll, on_update=updated, on_conflict=conflicted, start=not once)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    where = f"{into}" + (f" as {local}" if local else "")
    if once:
        state = follower.sync()
        if state == "synced":
            click.echo(f"in step: {follower.local_ref} ({where})")
            return
        if state == "waiting":
            raise click.ClickException(f"{remote.url} has no branch or reality {reality!r}")
        if state == "error":
            raise click.ClickException(str(follower.error))
        sys.exit(1)  # a conflict, already printed
    click.echo(f"following {reality} of {remote.url} into {where} (Ctrl-C stops)", err=True)
    shown: tuple[str, bool, str] = ("", False, "")
    try:
        while True:
            now = (follower.state, follower.connected, str(follower.error or ""))
            if now != shown:
                if now[0] == "synced" and shown[0] != "synced":
                    click.echo(f"in step: {follower.local_ref} on {into} with {follower.remote_ref} on "
                               f"{remote.url}", err=True)
                if now[0] == "waiting" and shown[0] != "waiting":
                    click.echo(f"waiting: {remote.url} has no branch or reality {reality!r} yet", err=True)
                if now[2] and now[2] != shown[2]:
                    click.echo(f"error: {now[2]} (retrying)", err=True)
                if now[1] != shown[1] and (now[1] or shown[0]):
                    click.echo("event stream " + ("connected" if now[1] else "lost; reconnecting"), err=True)
                shown = now
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        follower.close()
