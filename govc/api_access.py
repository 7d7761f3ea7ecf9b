"""Tokens, permissions and protected refs over HTTP (admin only)."""

from __future__ import annotations

from aiohttp import web

from govc.registry import Registry


def add_routes(app: web.Application, registry_key: web.AppKey[Registry]) -> None:
    pass
