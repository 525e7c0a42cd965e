"""Test harness: a real PostgreSQL with the real extensions.

The schema is built once per test session into a template database (alembic upgrade head
on `rs_tpl_<pid>`), and each test module gets its own clone (`CREATE DATABASE ... TEMPLATE`),
so tests are isolated and fast (pytest-postgresql's template pattern, done with plain SQL
because its process fixture cannot start PostgreSQL as root). The server is the cluster
that `make db` starts, or REELSCORE_DATABASE_URL."""
from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plpy"))  # the reelpy package, for unit tests
sys.path.insert(0, str(ROOT))

from reelscore.config import database_url

_counter = itertools.count()
TEST_ROLES = {"rs_test_read": "reelscore_read", "rs_test_write": "reelscore_write",
              "rs_test_admin": "reelscore_admin"}


def url_for_db(url: str, dbname: str, user: str | None = None) -> str:
    """The same server URL pointing at another database (and optionally another user)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if user:
        host = netloc.split("@", 1)[-1]
        netloc = f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, "/" + dbname, parts.query, parts.fragment))


def admin_conn() -> psycopg.Connection:
    return psycopg.connect(url_for_db(database_url(), "postgres"), autocommit=True)


def create_clone(template: str, name: str) -> None:
    with admin_conn() as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))


def drop_db(name: str) -> None:
    with admin_conn() as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def migrate(url: str, target: str = "head", down: bool = False) -> None:
    from alembic import command

    from reelscore.commands.migrate import alembic_config
    cfg = alembic_config(url)
    (command.downgrade if down else command.upgrade)(cfg, target)


@pytest.fixture(scope="session")
def server_url() -> str:
    try:
        with admin_conn():
            pass
    except psycopg.OperationalError as exc:
        pytest.exit(f"no PostgreSQL at {database_url()}: {exc}. Run 'make db' first.", returncode=2)
    return database_url()


@pytest.fixture(scope="session")
def template_db(server_url) -> str:
    """Name of a database holding the full schema at head; cloned by `db_url`."""
    name = f"rs_tpl_{os.getpid()}"
    drop_db(name)
    with admin_conn() as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate(url_for_db(server_url, name))
    with admin_conn() as c:
        for login, group in TEST_ROLES.items():
            c.execute(f"""DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{login}') THEN
                  CREATE ROLE {login} LOGIN;
                END IF; END $$""")
            c.execute(f"GRANT {group} TO {login}")
        # TimescaleDB's scheduler keeps a connection to every database with the extension;
        # a template must have none, so close it for connections before cloning.
        c.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    yield name
    drop_db(name)


_clones: list[str] = []


@pytest.fixture(scope="module")
def db_url(server_url, template_db) -> str:
    """URL of a fresh database (a clone of the template) for this test module. Clones are
    dropped at the end of the session, not per module: DROP DATABASE forces a checkpoint,
    which costs minutes on a busy server when paid once per module."""
    name = f"rs_t_{os.getpid()}_{next(_counter)}"
    create_clone(template_db, name)
    _clones.append(name)
    with admin_conn() as c:  # a finished module's clone has no reason to keep connections
        for old in _clones[:-1]:
            c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (old,))
    yield url_for_db(server_url, name)


def pytest_sessionfinish(session, exitstatus):
    for name in _clones:
        try:
            drop_db(name)
        except psycopg.Error:
            pass


@pytest.fixture()
def conn(db_url):
    """A superuser connection in autocommit mode, with pgvector types registered."""
    from pgvector.psycopg import register_vector
    with psycopg.connect(db_url, autocommit=True) as c:
        register_vector(c)
        yield c


@pytest.fixture()
def role_conn(db_url):
    """Factory: role_conn('read'|'write'|'admin') connects as a login member of that group."""
    opened = []

    def _open(kind: str) -> psycopg.Connection:
        user = f"rs_test_{kind}"
        c = psycopg.connect(url_for_db(db_url, urlsplit(db_url).path.lstrip("/"), user=user), autocommit=True)
        opened.append(c)
        return c
    yield _open
    for c in opened:
        c.close()


@pytest.fixture(scope="session")
def fresh_db(server_url):
    """Factory for an empty database (no schema), dropped at the end of the session."""
    made = []

    def _make() -> str:
        name = f"rs_e_{os.getpid()}_{next(_counter)}"
        drop_db(name)
        with admin_conn() as c:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return url_for_db(server_url, name)
    yield _make
    for name in made:
        drop_db(name)
