"""The OpenAPI description: valid OpenAPI 3.1, covering every JSON route the server has, and
honoured by the server — schemathesis generates requests for every operation (valid and invalid
ones) against a live server with a data directory and checks that none answers 5xx and that
statuses, content types and bodies match the description."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

import govc
from govc.limits import Limits
from govc.openapi import description
from govc.registry import Registry
from govc.server import ServerConfig, make_app
from storage.disk import DataDirectory


def test_the_description_is_valid_openapi() -> None:
    validate(description())


def _template(path: str) -> str:
    """aiohttp's ``/api/v1/repos/{repo:.+}/files/{path:.+}`` -> ``/api/v1/repos/{repo}/files/{path}``."""
    return re.sub(r"\{(\w+)(:[^{}]*(\{[^{}]*\}[^{}]*)*)?\}", r"{\1}", path)


def test_every_json_route_is_described() -> None:
    app = make_app(Registry(), ServerConfig(maintenance_interval=0))
    described = {(path, method.upper()) for path, item in description()["paths"].items()
                 for method in item if method != "parameters"}
    served = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path") or ""
        if path.startswith("/api/") and route.method != "HEAD":
            served.add((_template(path), route.method))
    assert served == described | {("/api/v1/openapi.json", "GET")}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data: Path = tmp_path_factory.mktemp("openapi") / "data"
    registry = Registry(DataDirectory(data))
    repo = registry.create("infra")
    with repo.transaction("main", author="ops <ops@example.com>") as tx:
        tx.write("conf/app.conf", "workers = 4\n")
        tx.commit("base")
    repo.parallel_reality("canary")
    server = govc.Server(registry, config=ServerConfig(  # no rate limit: the test is a flood on purpose
        maintenance_interval=0, webhook_allow=["127.0.0.0/8"], limits=Limits(rate=0)))
    url = server.serve_in_thread()
    try:
        yield url
    finally:
        server.stop()


# schemathesis' own pytest plugin does not support this pytest; its strategies are used directly.
#: Path parameters steered towards what exists on the live server, so that the generated
#: requests reach the handlers' real work and not only their 404s (bodies and queries stay free).
KNOWN = {"repo": ["infra"], "rev": ["main", "refs/heads/main", "canary"], "path": ["conf/app.conf"],
         "name": ["canary", "main"], "principal": ["alice"], "token": ["alice"]}


def _steered() -> dict[str, object]:
    doc = description()
    for item in doc["paths"].values():
        for operation in [item, *(v for k, v in item.items() if k != "parameters")]:
            for param in operation.get("parameters", []):
                if param["in"] == "path" and param["name"] in KNOWN:
                    param["schema"] = {"enum": [*KNOWN[param["name"]], "missing"]}
    return doc


SCHEMA = schemathesis.openapi.from_dict(_steered())
OPERATIONS = {op.label: op for op in (result.ok() for result in SCHEMA.get_all_operations())}


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_server_errors_and_the_description_holds(live: str, label: str) -> None:
    operation = OPERATIONS[label]

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=live, timeout=30, checks=[
            not_a_server_error, status_code_conformance, content_type_conformance,
            response_schema_conformance])

    check()


@pytest.fixture(scope="module")
def live_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    registry = Registry(DataDirectory(tmp_path_factory.mktemp("openapi-auth") / "data"))
    registry.create("infra")
    config = ServerConfig(maintenance_interval=0, auth=True, limits=Limits(rate=0))
    server = govc.Server(registry, config=config)
    url = server.serve_in_thread()
    try:
        yield url
    finally:
        server.stop()


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_without_a_token_every_operation_answers_a_documented_401(live_with_auth: str, label: str) -> None:
    operation = OPERATIONS[label]

    @given(case=operation.as_strategy())
    @settings(max_examples=5, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        response = case.call(base_url=live_with_auth, timeout=30)
        assert response.status_code in (400, 401), (label, response.status_code, response.text)
        if response.status_code == 401:
            assert response.json()["error"] == "unauthorized"
            headers = {name.lower(): value for name, value in response.headers.items()}
            assert headers["www-authenticate"] in ('Basic realm="govc"', ['Basic realm="govc"'])
        case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                                 response_schema_conformance])

    check()
