"""``govc token``, ``permission`` and ``protect`` against a cluster's PostgreSQL database
(``--backend``), as an operator of several nodes manages access without a data directory."""

from __future__ import annotations

from click.testing import CliRunner

from govc.auth import TokenStore
from govc.cli import main
from govc.permissions import Permissions
from govc.protection import ProtectionStore
from storage.postgres import PostgresDirectory


def test_access_commands_on_the_cluster_database(pg_dsn: str) -> None:
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, [*args, "--backend", pg_dsn], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    secret = run("token", "create", "ci", "--access", "write").strip().splitlines()[-1]
    run("permission", "grant", "alice", "infra", "admin")
    run("permission", "anonymous", "docs", "on")
    run("protect", "add", "infra", "refs/heads/main", "--require-validator", "lint")
    assert "ci" in run("token", "list") and "alice\tinfra\tadmin" in run("permission", "list")
    assert "validators=lint" in run("protect", "list")

    site = PostgresDirectory(pg_dsn)  # what every node reads
    try:
        token = TokenStore(site).verify(secret)
        assert token is not None and token.name == "ci" and token.access == "write"
        assert [g.access for g in Permissions(site).grants("infra")] == ["admin"]
        assert Permissions(site).anonymous_read("docs")
        assert [r.validators for r in ProtectionStore(site).rules_for("infra")] == [("lint",)]
    finally:
        site.close()
    run("token", "revoke", "ci")
    bad = runner.invoke(main, ["token", "list", "--backend", "postgresql://127.0.0.1:1/nothing"])
    assert bad.exit_code != 0 and "PostgreSQL" in bad.output, bad.output
