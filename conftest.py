"""Fixtures every test directory shares: one real PostgreSQL cluster per session (started only
when a test asks for it), for the unit tests of the PostgreSQL backend and the multi-node
end-to-end tests alike."""

from tests.pgserver import pg_dsn, postgres  # noqa: F401
