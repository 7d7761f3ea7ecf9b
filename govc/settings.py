"""``govc serve`` settings: one name each, given as a flag, an environment variable or a key of
the TOML config file.

Every option ``--some-name`` of ``govc serve`` is also ``GOVC_SOME_NAME`` in the environment and
``some_name = ...`` in the file (``--config FILE`` or ``$GOVC_CONFIG``). Precedence, highest
first: the command line, the environment, the config file, the built-in default. Only
``--config`` itself, ``--print-config`` and ``--help`` are flags alone.

The file's keys are checked: a key no option has is an error, not silently ignored (a typo in
``rate_limit`` must not leave a server unprotected). The file may also hold the webhook range
list as ``[webhooks] allow = [...]``, the spelling earlier versions used.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from govc.limits import format_size, parse_size

ENV_PREFIX = "GOVC_"
#: Options that are actions or the file itself, not settings.
NOT_SETTINGS = frozenset({"config_file", "print_config", "help"})
_SECRET = frozenset({"admin_token"})
_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")

F = TypeVar("F", bound=Callable[..., Any])


def key_of(option: click.Option) -> str:
    """The file key (and, upper-cased, the environment name) of an option: its long name."""
    long = next(o for o in option.opts if o.startswith("--"))
    return long[2:].replace("-", "_")


def setting(*decls: str, **kwargs: Any) -> Callable[[F], F]:
    """``click.option`` that also reads ``GOVC_<NAME>`` and shows it in ``--help``."""
    long = next(d for d in decls if d.startswith("--")).split("/")[0]
    kwargs.setdefault("envvar", ENV_PREFIX + long[2:].replace("-", "_").upper())
    kwargs.setdefault("show_envvar", True)
    return click.option(*decls, **kwargs)


class Size(click.ParamType):
    """A byte count: ``64MiB``, ``4G``, ``512k`` or a plain number."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return parse_size(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


SIZE = Size()


def _settings(command: click.Command) -> dict[str, click.Option]:
    return {key_of(p): p for p in command.params
            if isinstance(p, click.Option) and p.name not in NOT_SETTINGS}


def load_config_file(ctx: click.Context, path: Path) -> None:
    """Make the file's values the defaults of ``ctx``'s options (flags and environment still win)."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise click.BadParameter(f"cannot read {path}: {e}") from None
    assert ctx.command is not None
    options = _settings(ctx.command)
    defaults: dict[str, Any] = {}
    for key, value in data.items():
        if key == "webhooks" and isinstance(value, dict):
            unknown = set(value) - {"allow"}
            if unknown:
                raise click.BadParameter(f"{path}: unknown setting 'webhooks.{sorted(unknown)[0]}'")
            key, value = "webhook_allow", value.get("allow", [])
        option = options.get(key)
        if option is None:
            raise click.BadParameter(f"{path}: unknown setting {key!r} (known: {', '.join(sorted(options))})")
        if option.multiple and isinstance(value, str):
            value = value.split()
        assert option.name is not None
        defaults[option.name] = value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


_SOURCES = {
    ParameterSource.COMMANDLINE: "command line",
    ParameterSource.ENVIRONMENT: "environment",
    ParameterSource.DEFAULT_MAP: "config file",
    ParameterSource.DEFAULT: "default",
}


def describe(ctx: click.Context, values: dict[str, Any]) -> str:
    """The effective settings as TOML, each with where it came from (for ``--print-config``):
    valid as a config file, secrets masked."""
    assert ctx.command is not None
    lines = ["# govc serve: effective settings (command line > environment > config file > default)"]
    for key, option in sorted(_settings(ctx.command).items()):
        assert option.name is not None
        value = values.get(option.name)
        source = _SOURCES.get(ctx.get_parameter_source(option.name), "default")  # type: ignore[arg-type]
        where = f"{source}: ${option.envvar}" if source == "environment" else source
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, Path):
            value = str(value)
        if value is None:
            lines.append(f"# {key} is not set  ({where})")
            continue
        if key in _SECRET:
            value = "***"
        elif isinstance(value, str):
            value = _PASSWORD_IN_URL.sub(r"\1***@", value)  # e.g. a database DSN
        if isinstance(option.type, Size):
            value = format_size(int(value))
        lines.append(f"{key} = {json.dumps(value)}  # {where}")
    return "\n".join(lines)
